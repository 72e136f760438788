/* Bad input named as what it is (issue 13): files that are not files where
 * a model's files should be, unreadable directories, and checkpoint and
 * config errors blamed on the right thing. Each case checks the status and
 * the key parts of the message. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gbtest.h"

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static const char *gpt2_config =
    "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 8, \"n_layer\": 2,"
    " \"n_head\": 2, \"layer_norm_epsilon\": 1e-5, \"activation_function\": \"gelu_new\"}";

/* A fresh model directory NAME under the scratch directory with
 * config.json (config, or none when NULL) and nothing else. */
static char *model_dir(const char *name, const char *config) {
    char *dir = malloc(4096), cmd[4200], path[4200];
    snprintf(dir, 4096, "%s/bad_%s", gbt_tmp_dir(), name);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    if (config) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        write_text(path, config);
    }
    return dir;
}

static void in_dir(char *out, const char *dir, const char *name) { snprintf(out, 4200, "%s/%s", dir, name); }

/* Each of these was "no model.safetensors ... in DIR" (or "no config.json"). */
START_TEST(test_not_regular_files) {
    char *d = model_dir("dir", gpt2_config), p[4200], q[4200], want[4400];
    in_dir(p, d, "model.safetensors");
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(want, sizeof want, "%s is a directory (expected a regular file)", p);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_IO, want);
    free(d);

    d = model_dir("fifo", gpt2_config);
    in_dir(p, d, "model.safetensors");
    ck_assert_int_eq(mkfifo(p, 0644), 0);
    snprintf(want, sizeof want, "%s is a FIFO (expected a regular file)", p);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_IO, want);
    gbt_fails_with(gb_model_open(p, NULL) == NULL, GB_ERR_IO, want); /* named directly */
    free(d);

    d = model_dir("dangling", gpt2_config);
    in_dir(p, d, "model.safetensors");
    ck_assert_int_eq(symlink("nowhere.safetensors", p), 0);
    snprintf(want, sizeof want, "%s is a dangling symbolic link (expected a regular file)", p);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_IO, want);
    snprintf(want, sizeof want, "hub: %s is a dangling symbolic link", p);
    gbt_fails_with(gb_model_open(p, NULL) == NULL, GB_ERR_IO, want); /* not "not a Hub id" */
    free(d);

    d = model_dir("loop", gpt2_config);
    in_dir(p, d, "model.safetensors");
    in_dir(q, d, "other.safetensors");
    ck_assert_int_eq(symlink("other.safetensors", p), 0);
    ck_assert_int_eq(symlink("model.safetensors", q), 0);
    snprintf(want, sizeof want, "%s is a symbolic link loop (expected a regular file)", p);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_IO, want);
    free(d);

    d = model_dir("config_dir", NULL);
    in_dir(p, d, "config.json");
    ck_assert_int_eq(mkdir(p, 0755), 0);
    snprintf(want, sizeof want, "%s is a directory (expected a regular file)", p);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_IO, want);
    free(d);

    /* still "no ...": nothing at all is there */
    d = model_dir("empty", gpt2_config);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_NOT_FOUND, "no model.safetensors or model.safetensors.index.json in");
    free(d);
}
END_TEST

/* Permissions do not apply to root: those cases skip visibly there. */
START_TEST(test_unreadable) {
    if (geteuid() == 0) {
        gbt_skip("test_unreadable", "running as root, for whom every file is readable");
        return;
    }
    char *d = model_dir("unreadable", gpt2_config), p[4200], want[4400];
    in_dir(p, d, "config.json");
    ck_assert_int_eq(chmod(p, 0), 0);
    snprintf(want, sizeof want, "cannot open %s: %s", p, strerror(EACCES));
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_IO, want);
    ck_assert_int_eq(chmod(p, 0644), 0);
    ck_assert_int_eq(chmod(d, 0), 0);
    snprintf(want, sizeof want, "cannot read the model directory %s: %s", d, strerror(EACCES));
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_IO, want);
    ck_assert_int_eq(chmod(d, 0755), 0);
    free(d);
}
END_TEST

Suite *gb_suite_bad_input(void) {
    Suite *s = suite_create("bad_input");
    TCase *tc = tcase_create("bad_input");
    tcase_add_test(tc, test_not_regular_files);
    tcase_add_test(tc, test_unreadable);
    suite_add_tcase(s, tc);
    return s;
}
