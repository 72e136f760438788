#include "gbtest.h"
#include "tensor/tensor_impl.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb/stb_ds.h>

struct gbt_oracle {
    struct {
        char *key;
        gb_tensor *value;
    } *map; /* stb_ds string hash map */
};

char *gbt_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

static gb_dtype gbt_dtype(const char *name) {
    for (int d = 0; d < GB_DTYPE_COUNT; d++)
        if (!strcmp(gb_dtype_name((gb_dtype)d), name)) return (gb_dtype)d;
    ck_abort_msg("oracle: unknown dtype %s", name);
    return GB_DTYPE_F32;
}

gbt_oracle *gbt_oracle_load(const char *name) {
    const char *dir = getenv("GB_ORACLE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", dir ? dir : "build/oracle", name);
    char *text = gbt_read_file(path, NULL);
    ck_assert_msg(text != NULL, "oracle file %s is missing (make builds it from tests/oracle/%s.py)", path, name);
    gbt_oracle *o = calloc(1, sizeof *o);
    sh_new_strdup(o->map);
    char *save_line = NULL;
    for (char *line = strtok_r(text, "\n", &save_line); line; line = strtok_r(NULL, "\n", &save_line)) {
        if (line[0] == '#' || line[0] == 0) continue;
        char *save = NULL;
        char *key = strtok_r(line, " ", &save);
        gb_dtype dt = gbt_dtype(strtok_r(NULL, " ", &save));
        int ndim = atoi(strtok_r(NULL, " ", &save));
        int64_t shape[GB_MAX_DIMS];
        for (int i = 0; i < ndim; i++) shape[i] = strtoll(strtok_r(NULL, " ", &save), NULL, 10);
        gb_tensor *t = gb_zeros(ndim, shape, dt);
        ck_assert_msg(t != NULL, "oracle %s: %s", key, gb_last_error());
        int64_t n = gb_tensor_numel(t);
        void *data = gb_tensor_data(t);
        bool short_line = false;
        for (int64_t i = 0; i < n && !short_line; i++) {
            char *tok = strtok_r(NULL, " ", &save);
            if (!tok) {
                short_line = true; /* reported once, below: one assertion per value would be slow */
                break;
            }
            if (dt == GB_DTYPE_I64) ((int64_t *)data)[i] = strtoll(tok, NULL, 10);
            else if (dt == GB_DTYPE_I32) ((int32_t *)data)[i] = (int32_t)strtol(tok, NULL, 10);
            else if (dt == GB_DTYPE_F32) ((float *)data)[i] = strtof(tok, NULL);
            else gb__ts_store_f32(data, dt, i, strtof(tok, NULL));
        }
        ck_assert_msg(!short_line, "oracle %s: %s has fewer values than its shape", path, key);
        shput(o->map, key, t);
    }
    free(text);
    return o;
}

gb_tensor *gbt_get(gbt_oracle *o, const char *key) {
    ptrdiff_t i = shgeti(o->map, key);
    ck_assert_msg(i >= 0, "oracle has no tensor named %s", key);
    return gb_tensor_ref(o->map[i].value);
}

gb_tensor *gbt_getf(gbt_oracle *o, const char *fmt, ...) {
    char key[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    return gbt_get(o, key);
}

char *gbt_get_str(gbt_oracle *o, const char *key) {
    gb_tensor *t = gbt_get(o, key);
    int64_t n = gb_tensor_numel(t);
    char *s = malloc((size_t)n + 1);
    memcpy(s, gb_tensor_data(t), (size_t)n);
    s[n] = 0;
    gb_tensor_free(t);
    return s;
}

void gbt_oracle_free(gbt_oracle *o) {
    if (!o) return;
    for (ptrdiff_t i = 0; i < shlen(o->map); i++) gb_tensor_free(o->map[i].value);
    shfree(o->map);
    free(o);
}

void gbt_assert_close_at(const gb_tensor *got, const gb_tensor *want, double rtol, double atol, const char *what,
                         const char *file, int line) {
    ck_assert_msg(got != NULL, "%s:%d: %s: result is NULL: %s", file, line, what, gb_last_error());
    char *dg = gb_tensor_describe(got), *dw = gb_tensor_describe(want);
    int nd = gb_tensor_ndim(got);
    bool same = nd == gb_tensor_ndim(want);
    for (int i = 0; same && i < nd; i++) same = gb_tensor_dim(got, i) == gb_tensor_dim(want, i);
    ck_assert_msg(same, "%s:%d: %s: shape %s, expected %s", file, line, what, dg, dw);
    if (gb_tensor_dtype(got) == GB_DTYPE_I64 && gb_tensor_dtype(want) == GB_DTYPE_I64) {
        /* integers exactly: doubles would tie 2^53 and 2^53 + 1 */
        gb_tensor *g = gb_contiguous((gb_tensor *)got), *w = gb_contiguous((gb_tensor *)want);
        for (int64_t i = 0; i < gb_tensor_numel(g); i++) {
            int64_t a = ((const int64_t *)gb_tensor_data(g))[i], b = ((const int64_t *)gb_tensor_data(w))[i];
            ck_assert_msg(a == b, "%s:%d: %s: element %lld is %lld, expected %lld (%s vs %s)", file, line, what,
                          (long long)i, (long long)a, (long long)b, dg, dw);
        }
        gb_tensor_free(g), gb_tensor_free(w);
    }
    int64_t n = gb_tensor_numel(got), idx[GB_MAX_DIMS];
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i;
        for (int d = nd - 1; d >= 0; d--) {
            idx[d] = r % gb_tensor_dim(got, d);
            r /= gb_tensor_dim(got, d);
        }
        double a, b;
        gb_tensor_get(got, idx, &a);
        gb_tensor_get(want, idx, &b);
        bool ok = (isnan(a) && isnan(b)) || a == b || fabs(a - b) <= atol + rtol * fabs(b);
        ck_assert_msg(ok, "%s:%d: %s: element %lld is %.9g, expected %.9g (%s vs %s)", file, line, what,
                      (long long)i, a, b, dg, dw);
    }
    free(dg);
    free(dw);
}

/* Tests run in forked children: the names go through a file. */
static const char *gbt_skips_file(void) {
    static char path[4096];
    const char *b = getenv("GB_BUILD_DIR");
    snprintf(path, sizeof path, "%s/tmp/skipped.txt", b ? b : "build");
    return path;
}

void gbt_skip(const char *test_name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "SKIP %s: ", test_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    gbt_tmp_dir();
    FILE *f = fopen(gbt_skips_file(), "a");
    ck_assert_msg(f != NULL, "cannot append to %s", gbt_skips_file());
    fprintf(f, "%s\n", test_name);
    fclose(f);
}

void gbt_skips_reset(void) { unlink(gbt_skips_file()); }

int gbt_skips_report(void) {
    char *text = gbt_read_file(gbt_skips_file(), NULL); /* NULL: no test skipped */
    char **names = NULL; /* stb_ds array, first appearances in order */
    char *save = NULL;
    for (char *name = text ? strtok_r(text, "\n", &save) : NULL; name; name = strtok_r(NULL, "\n", &save)) {
        bool seen = false;
        for (ptrdiff_t i = 0; i < arrlen(names) && !seen; i++) seen = !strcmp(names[i], name);
        if (!seen) arrput(names, name);
    }
    int n = (int)arrlen(names);
    printf("Skipped: %d test%s%s", n, n == 1 ? "" : "s", n ? " (" : "\n");
    for (int i = 0; i < n; i++) printf("%s%s", i ? ", " : "", names[i]);
    if (n) printf(")\n");
    arrfree(names);
    free(text);
    return n;
}

char *gbt_shared_path(const char *rel, const char *test_name) {
    const char *dir = getenv("GB_SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir ? dir : "../shared", rel);
    struct stat st;
    if (stat(path, &st) != 0) {
        gbt_skip(test_name, "fixture %s is missing", path);
        return NULL;
    }
    return strdup(path);
}

gbt_oracle *gbt_oracle_load_or_skip(const char *name, const char *test_name) {
    const char *dir = getenv("GB_ORACLE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", dir ? dir : "build/oracle", name);
    char *text = gbt_read_file(path, NULL);
    bool empty = !text || !*text;
    free(text);
    if (empty) {
        gbt_skip(test_name, "tests/oracle/%s.py wrote nothing: no %s, or no Node tokenizers (sh tools/install-deps.sh --test)",
                 name, GBT_BUNDLED);
        return NULL;
    }
    return gbt_oracle_load(name);
}

int64_t gbt_i64(const gb_tensor *t, int64_t i) {
    ck_assert_msg(gb_tensor_dtype(t) == GB_DTYPE_I64 && i >= 0 && i < gb_tensor_numel(t),
                  "gbt_i64: element %lld of a %s tensor of %lld", (long long)i, gb_dtype_name(gb_tensor_dtype(t)),
                  (long long)gb_tensor_numel(t));
    return ((const int64_t *)gb_tensor_data(t))[i];
}

void gbt_save_params(gb_module *net, const char *path, const char *drop, int nextra, const char **extra_names,
                     gb_tensor **extra) {
    const char **names;
    gb_tensor **params;
    int n = gb_module_parameters(net, &names, &params);
    const char **nm = malloc(sizeof *nm * (size_t)(n + nextra));
    gb_tensor **ts = malloc(sizeof *ts * (size_t)(n + nextra));
    for (int i = 0; i < n; i++) {
        size_t k = drop ? strlen(drop) : 0;
        nm[i] = drop && !strncmp(names[i], drop, k) ? names[i] + k : names[i];
        ts[i] = params[i];
    }
    for (int i = 0; i < nextra; i++) nm[n + i] = extra_names[i], ts[n + i] = extra[i];
    gbt_ok_status(gb_safetensors_save(path, n + nextra, nm, ts, GB_DTYPE_F32, NULL));
    free(nm), free(ts), free(names), free(params);
}

const char *gbt_tmp_dir(void) {
    static char dir[4096];
    if (!dir[0]) {
        const char *b = getenv("GB_BUILD_DIR");
        snprintf(dir, sizeof dir, "%s/tmp", b ? b : "build");
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) ck_abort_msg("cannot create %s", dir);
    }
    return dir;
}

gbt_cli_result gbt_cli(const char *args) {
    const char *b = getenv("GB_BUILD_DIR");
    size_t n = strlen(args) + 2 * 4096 + 64;
    char *cmd = malloc(n), out[4200], err[4200];
    snprintf(out, sizeof out, "%s/cli.out", gbt_tmp_dir());
    snprintf(err, sizeof err, "%s/cli.err", gbt_tmp_dir());
    snprintf(cmd, n, "%s/glassbox %s >%s 2>%s", b ? b : "build", args, out, err);
    int st = system(cmd);
    free(cmd);
    gbt_cli_result r = {WIFEXITED(st) ? WEXITSTATUS(st) : -1, gbt_read_file(out, NULL), gbt_read_file(err, NULL)};
    ck_assert_msg(r.out && r.err, "cannot read the output of glassbox %s", args);
    return r;
}

void gbt_cli_free(gbt_cli_result *r) { free(r->out), free(r->err); }

void gbt_one_error_line(const gbt_cli_result *r, const char *prefix) {
    ck_assert_msg(!strncmp(r->err, prefix, strlen(prefix)), "stderr '%s' does not start with '%s'", r->err, prefix);
    char *nl = strchr(r->err, '\n');
    ck_assert_msg(nl && nl[1] == 0, "stderr is not one line: '%s'", r->err);
}

int gbt_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

void gbt_cli_fails(const char *args, int status, const char *prefix) {
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == status, "glassbox %s: exit status %d, expected %d (stderr: %s)", args, r.status, status,
                  r.err);
    gbt_one_error_line(&r, prefix);
    gbt_cli_free(&r);
}

/* L = sum(out * R) in double. */
static double gbt_weighted_sum(const gb_tensor *out, const gb_tensor *r) {
    gb_tensor *c = gb_contiguous((gb_tensor *)out);
    const float *o = gb_tensor_f32(c), *w = gb_tensor_f32(r);
    double s = 0;
    for (int64_t i = 0; i < gb_tensor_numel(c); i++) s += (double)o[i] * (double)w[i];
    gb_tensor_free(c);
    return s;
}

void gbt_gradcheck_at(gbt_fn f, int n, gb_tensor *const *inputs, void *ctx, double eps, double rtol, double atol,
                      const char *what, const char *file, int line) {
    for (int i = 0; i < n; i++) gb_zero_grad(inputs[i]);
    gb_tensor *out = f(inputs, ctx);
    ck_assert_msg(out != NULL, "%s:%d: %s: forward failed: %s", file, line, what, gb_last_error());
    gb_rng rng = gb_rng_seed(1234);
    gb_tensor *r = gb_randn(&rng, gb_tensor_ndim(out), gb_tensor_shape(out), 0.0f, 1.0f);
    ck_assert_msg(gb_backward(out, r, false) == GB_OK, "%s:%d: %s: backward failed: %s", file, line, what,
                  gb_last_error());
    gb_tensor_free(out);
    gb_grad_mode m = gb_no_grad_begin();
    for (int i = 0; i < n; i++) {
        gb_tensor *x = inputs[i];
        if (!gb_tensor_requires_grad(x)) continue;
        ck_assert_msg(gb_tensor_is_contiguous(x) && gb_tensor_dtype(x) == GB_DTYPE_F32,
                      "%s:%d: gradcheck inputs must be contiguous f32", file, line);
        const gb_tensor *g = gb_tensor_grad(x);
        ck_assert_msg(g != NULL, "%s:%d: %s: input %d received no gradient", file, line, what, i);
        float *p = gb_tensor_data(x);
        const float *ga = gb_tensor_data(g);
        for (int64_t j = 0; j < gb_tensor_numel(x); j++) {
            float keep = p[j];
            p[j] = keep + (float)eps;
            gb_tensor *o1 = f(inputs, ctx);
            p[j] = keep - (float)eps;
            gb_tensor *o2 = f(inputs, ctx);
            p[j] = keep;
            ck_assert_msg(o1 && o2, "%s:%d: %s: forward failed: %s", file, line, what, gb_last_error());
            /* The perturbation is what was actually stored, not eps. */
            double h = (double)(keep + (float)eps) - (double)(keep - (float)eps);
            double num = (gbt_weighted_sum(o1, r) - gbt_weighted_sum(o2, r)) / h;
            gb_tensor_free(o1);
            gb_tensor_free(o2);
            ck_assert_msg(fabs(ga[j] - num) <= atol + rtol * fabs(num),
                          "%s:%d: %s: d/d input %d element %lld: analytic %.7g, numeric %.7g", file, line, what, i,
                          (long long)j, (double)ga[j], num);
        }
    }
    gb_grad_mode_end(m);
    for (int i = 0; i < n; i++) gb_zero_grad(inputs[i]);
    gb_tensor_free(r);
}

gb_module *gbt_tiny_net(gbt_oracle *o) {
    gb_module *net = gb_sequential(2, (const char *[]){"layer1", "layer2"},
                                   (gb_module *[]){gb_nn_linear(5, 10, true), gb_nn_linear(10, 2, true)});
    gbt_ok(net);
    const char *layers[] = {"layer1", "layer2"}, *params[] = {"weight", "bias"};
    for (int l = 0; l < 2; l++)
        for (int p = 0; p < 2; p++) {
            gb_tensor *t = gbt_getf(o, "%s.%s", layers[l], params[p]);
            gbt_ok_status(gb_module_set_param(gb_module_find(net, layers[l]), params[p], t));
            gb_tensor_free(t);
        }
    return net;
}

const char *gbt_fixture_dir(char *buf, size_t size, const char *variant) {
    const char *odir = getenv("GB_ORACLE_DIR");
    snprintf(buf, size, "%s/models/%s", odir ? odir : "build/oracle", variant);
    return buf;
}

void gbt_assert_saved_close_at(const gb_val *v, gbt_oracle *o, const char *key, const char *file, int line) {
    gb_tensor *got = gb_value(v);
    ck_assert_msg(got != NULL, "%s:%d: %s: %s", file, line, key, gb_last_error());
    gb_tensor *want = gbt_get(o, key);
    gbt_assert_close_at(got, want, 1e-5, 1e-6, key, file, line);
    gb_tensor_free(want);
}

gb_status gbt_results_add(void *ctx, const gb_spec_result *r) {
    gbt_results *res = ctx;
    if (r->scan) return GB_OK;
    for (int i = 0; i < r->n; i++) {
        char key[256];
        int k = snprintf(key, sizeof key, "t%d", r->trace);
        for (int d = 0; d < r->depth; d++)
            k += snprintf(key + k, sizeof key - (size_t)k, "%s%lld", d ? "." : "[", (long long)r->items[d]);
        snprintf(key + k, sizeof key - (size_t)k, "%s.%s", r->depth ? "]" : "", r->names[i]);
        res->keys = realloc(res->keys, sizeof *res->keys * (size_t)(res->n + 1));
        res->values = realloc(res->values, sizeof *res->values * (size_t)(res->n + 1));
        res->keys[res->n] = strdup(key);
        res->values[res->n++] = gb_tensor_ref(r->values[i]);
    }
    return GB_OK;
}

void gbt_results_log(void *ctx, const char *line) {
    gbt_results *res = ctx;
    size_t n = strlen(line);
    res->log = realloc(res->log, res->loglen + n + 2);
    memcpy(res->log + res->loglen, line, n);
    res->loglen += n;
    res->log[res->loglen++] = '\n';
    res->log[res->loglen] = 0;
}

gb_status gbt_run_spec(gb_spec *sp, gb_lm *(*lm_of)(void *ctx, const char *name), void *ctx, gbt_results *res) {
    gb_session *s = gb_spec_session(sp, lm_of, ctx, NULL, gbt_results_add, res);
    if (!s) return gb_last_status();
    gb_session_events ev = {.log = gbt_results_log, .ctx = res};
    gb_session_set_events(s, &ev);
    gb_status st = gb_session_scan(s);
    if (st == GB_OK) st = gb_session_run(s);
    gb_session_free(s);
    return st;
}

gb_tensor *gbt_result(const gbt_results *r, const char *key) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->keys[i], key)) return r->values[i];
    return NULL;
}

void gbt_results_free(gbt_results *r) {
    for (int i = 0; i < r->n; i++) free(r->keys[i]), gb_tensor_free(r->values[i]);
    free(r->keys), free(r->values), free(r->log);
    *r = (gbt_results){0};
}
