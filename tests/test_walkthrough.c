/* The walkthrough examples (examples/NAME.c) against PyTorch: each example
 * binary ($GB_BUILD_DIR/examples/NAME, built by make check) runs on the
 * weights and input that tests/oracle/walkthrough.py wrote
 * (--weights walkthrough.safetensors) and writes what its cells show
 * (--out); every value must match the oracle's plain-PyTorch experiment
 * (forward and tensor hooks, no nnsight) and nothing else may be written.
 * Exit statuses, the exact error lines (call site included: the line is
 * found from a marker comment in the example's source) and the text the
 * examples print (logs, print(model), conditional logs) are checked too. */
#include <stdlib.h>
#include <sys/wait.h>

#include "gbtest.h"

static const char *build_dir(void) {
    const char *b = getenv("GB_BUILD_DIR");
    return b && *b ? b : "build";
}

static const char *weights_path(void) {
    static char path[4096];
    const char *o = getenv("GB_ORACLE_DIR");
    snprintf(path, sizeof path, "%s/walkthrough.safetensors", o && *o ? o : "build/oracle");
    return path;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (int c; (c = fgetc(f)) != EOF;) {
        if (n + 2 > cap) buf = realloc(buf, cap = cap ? 2 * cap : 4096);
        buf[n++] = (char)c;
    }
    fclose(f);
    if (!buf) buf = malloc(1);
    buf[n] = 0;
    return buf;
}

/* A uint8 text of the oracle as a C string (caller frees). */
static char *oracle_text(gbt_oracle *o, const char *key) {
    gb_tensor *t = gbt_get(o, key);
    ck_assert_int_eq(gb_tensor_dtype(t), GB_DTYPE_U8);
    size_t n = (size_t)gb_tensor_numel(t);
    char *s = malloc(n + 1);
    if (n) memcpy(s, gb_tensor_data(t), n);
    s[n] = 0;
    gb_tensor_free(t);
    return s;
}

typedef struct {
    int status;
    char *out, *err;  /* stdout, stderr */
    char values[4096]; /* the --out file */
} run_result;

/* Run build/examples/NAME with args ("" for the seeded demo); tag names the
 * scratch files. */
static void run_example(const char *name, const char *tag, const char *args, run_result *r) {
    char so[4096], se[4096], cmd[16384];
    snprintf(r->values, sizeof r->values, "%s/wt_%s_%s.safetensors", gbt_tmp_dir(), name, tag);
    snprintf(so, sizeof so, "%s/wt_%s_%s.stdout", gbt_tmp_dir(), name, tag);
    snprintf(se, sizeof se, "%s/wt_%s_%s.stderr", gbt_tmp_dir(), name, tag);
    remove(r->values);
    snprintf(cmd, sizeof cmd, "'%s/examples/%s' %s >'%s' 2>'%s'", build_dir(), name, args, so, se);
    int st = system(cmd);
    ck_assert_msg(st != -1 && WIFEXITED(st), "%s did not exit normally (status %d)", cmd, st);
    r->status = WEXITSTATUS(st);
    r->out = slurp(so);
    r->err = slurp(se);
}

static void run_free(run_result *r) {
    free(r->out);
    free(r->err);
}

/* Run NAME on the oracle's weights, writing its values. */
static void run_on_oracle(const char *name, const char *tag, const char *extra, run_result *r) {
    char args[8192];
    snprintf(args, sizeof args, "--weights '%s' --out '%s/wt_%s_%s.safetensors' %s", weights_path(), gbt_tmp_dir(),
             name, tag, extra);
    FILE *f = fopen(weights_path(), "rb");
    ck_assert_msg(f != NULL, "%s is missing (make writes it with tests/oracle/walkthrough.py)", weights_path());
    fclose(f);
    run_example(name, tag, args, r);
}

/* The line of examples/NAME.c holding the comment marker, e.g. "walkthrough:set". */
static int marker_line(const char *name, const char *marker) {
    char path[512], needle[128];
    snprintf(path, sizeof path, "examples/%s.c", name);
    snprintf(needle, sizeof needle, "/* %s */", marker);
    char *src = slurp(path);
    int line = 1, found = 0, count = 0;
    for (char *p = src; *p; p++) {
        if (!strncmp(p, needle, strlen(needle))) found = line, count++;
        if (*p == '\n') line++;
    }
    free(src);
    ck_assert_msg(count == 1, "%s: marker %s found %d times", path, needle, count);
    return found;
}

/* What an example must print on stderr: one line per failing cell. */
static char *expected_stderr(const char *name, gbt_oracle *o) {
    char *msg = malloc(2048);
    msg[0] = 0;
    if (!strcmp(name, "getting")) {
        snprintf(msg, 2048,
                 "examples/getting.c:%d: value: model.output was not saved; call gb_save on it inside the trace "
                 "(unsaved values are freed during the run)\n",
                 marker_line(name, "walkthrough:unsaved"));
    } else if (!strcmp(name, "setting") || !strcmp(name, "scan_validate")) {
        /* PyTorch's own IndexError text, then the index and the intervention. */
        char *torch_msg = oracle_text(o, "message.index_oob");
        snprintf(msg, 2048, "examples/%s.c:%d: %s (indexing shape [1, 10] with [:, 10]) (layer1.output[:, 10] = 0)\n",
                 name, marker_line(name, !strcmp(name, "setting") ? "walkthrough:set" : "walkthrough:validate"),
                 torch_msg);
        free(torch_msg);
    } else if (!strcmp(name, "early_stop")) {
        snprintf(msg, 2048,
                 "examples/early_stop.c:%d: value: layer2.output was never produced (the run stopped before it, its "
                 "module never ran, or a condition was false)\n",
                 marker_line(name, "walkthrough:never"));
    }
    return msg;
}

/* Every value the oracle expects of NAME, and nothing else, in the --out file. */
static void check_values(const char *name, const char *path, gbt_oracle *o) {
    char key[256];
    snprintf(key, sizeof key, "keys.%s", name);
    char *keys = oracle_text(o, key);
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    int n = 0;
    char *save = NULL;
    for (char *k = strtok_r(keys, ",", &save); k; k = strtok_r(NULL, ",", &save), n++) {
        ck_assert_msg(gb_safetensors_has(st, k), "%s: %s wrote no value %s", name, path, k);
        gb_tensor *got = gb_safetensors_get(st, k), *want = gbt_getf(o, "%s.%s", name, k);
        snprintf(key, sizeof key, "%s.%s", name, k);
        ck_assert_msg(gb_tensor_dtype(got) == gb_tensor_dtype(want), "%s: dtype %s, expected %s", key,
                      gb_dtype_name(gb_tensor_dtype(got)), gb_dtype_name(gb_tensor_dtype(want)));
        gbt_assert_close(got, want, 1e-5, 1e-6, key);
        gb_tensor_free(got);
        gb_tensor_free(want);
    }
    ck_assert_msg(gb_safetensors_count(st) == n, "%s: wrote %d values, the oracle knows %d", name,
                  gb_safetensors_count(st), n);
    gb_safetensors_free(st);
    free(keys);
}

/* The text blocks stdout.NAME must appear in what NAME printed, absent.NAME
 * must not. A block starting with a newline must start a line. */
static void check_stdout(const char *name, const char *printed, gbt_oracle *o) {
    char *out = malloc(strlen(printed) + 2);
    sprintf(out, "\n%s", printed);
    for (int absent = 0; absent < 2; absent++) {
        char key[256];
        snprintf(key, sizeof key, "%s.%s", absent ? "absent" : "stdout", name);
        char *blocks = oracle_text(o, key);
        char *save = NULL;
        for (char *b = strtok_r(blocks, "\x1f", &save); b; b = strtok_r(NULL, "\x1f", &save)) {
            if (absent) ck_assert_msg(!strstr(out, b), "%s printed '%s', which it must not:\n%s", name, b, out);
            else ck_assert_msg(strstr(out, b) != NULL, "%s did not print\n%s\nIt printed:\n%s", name, b, out);
        }
        free(blocks);
    }
    free(out);
}

static const struct {
    const char *name;
    int status; /* 1: one of its cells shows an error */
} examples[] = {
    {"getting", 1},   {"operations", 0}, {"apply", 0},      {"setting", 1},
    {"scan_validate", 1}, {"gradients", 0}, {"early_stop", 1}, {"conditions", 0},
};
#define NEXAMPLES ((int)(sizeof examples / sizeof examples[0]))

START_TEST(test_example_against_torch) {
    const char *name = examples[_i].name;
    gbt_oracle *o = gbt_oracle_load("walkthrough");
    run_result r;
    run_on_oracle(name, "oracle", "", &r);
    char *err = expected_stderr(name, o);
    ck_assert_msg(r.status == examples[_i].status, "%s exited %d, expected %d; stderr:\n%s", name, r.status,
                  examples[_i].status, r.err);
    ck_assert_str_eq(r.err, err);
    check_values(name, r.values, o);
    check_stdout(name, r.out, o);
    free(err);
    run_free(&r);
    gbt_oracle_free(o);
}
END_TEST

/* Without flags an example is a self-contained demo on seeded weights: it
 * runs the same cells, and the errors it shows do not depend on weights. */
START_TEST(test_example_seeded_demo) {
    const char *name = examples[_i].name;
    gbt_oracle *o = gbt_oracle_load("walkthrough");
    run_result r;
    run_example(name, "demo", "", &r);
    char *err = expected_stderr(name, o);
    ck_assert_msg(r.status == examples[_i].status, "%s exited %d, expected %d; stderr:\n%s", name, r.status,
                  examples[_i].status, r.err);
    ck_assert_str_eq(r.err, err);
    ck_assert_msg(strstr(r.out, "tensor(") || !strcmp(name, "conditions"), "%s printed no tensor:\n%s", name,
                  r.out);
    free(err);
    run_free(&r);
    gbt_oracle_free(o);
}
END_TEST

/* --cell runs one cell: its exit status is that cell's alone. */
START_TEST(test_example_one_cell) {
    gbt_oracle *o = gbt_oracle_load("walkthrough");
    run_result r;
    run_on_oracle("setting", "last", "--cell last", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.err, "");
    gb_safetensors *st = gb_safetensors_open(r.values);
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), 2);
    const char *keys[] = {"last.before", "last.after"};
    for (int i = 0; i < 2; i++) {
        gb_tensor *got = gb_safetensors_get(st, keys[i]), *want = gbt_getf(o, "setting.%s", keys[i]);
        gbt_assert_close(got, want, 1e-5, 1e-6, keys[i]);
        gb_tensor_free(got);
        gb_tensor_free(want);
    }
    gb_safetensors_free(st);
    run_free(&r);

    run_on_oracle("setting", "oob", "--cell out_of_bounds", &r);
    char *err = expected_stderr("setting", o);
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err, err);
    ck_assert_str_eq(r.out, "");
    free(err);
    run_free(&r);
    gbt_oracle_free(o);
}
END_TEST

/* Usage and file problems exit 2 with a message. */
START_TEST(test_example_usage_errors) {
    run_result r;
    run_example("getting", "nocell", "--cell nope", &r);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "no cell named nope") != NULL, "stderr: %s", r.err);
    run_free(&r);

    run_example("getting", "usage", "--bogus", &r);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "usage:") != NULL, "stderr: %s", r.err);
    run_free(&r);

    char args[4200];
    snprintf(args, sizeof args, "--weights '%s/wt_missing.safetensors'", gbt_tmp_dir());
    run_example("getting", "missing", args, &r);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strstr(r.err, "wt_missing.safetensors") != NULL, "stderr: %s", r.err);
    ck_assert_str_eq(r.out, "");
    run_free(&r);
}
END_TEST

Suite *gb_suite_walkthrough(void) {
    Suite *s = suite_create("walkthrough");
    TCase *tc = tcase_create("examples");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_example_against_torch, 0, NEXAMPLES);
    tcase_add_loop_test(tc, test_example_seeded_demo, 0, NEXAMPLES);
    tcase_add_test(tc, test_example_one_cell);
    tcase_add_test(tc, test_example_usage_errors);
    suite_add_tcase(s, tc);
    return s;
}
