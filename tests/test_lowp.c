/* f16/bf16 weights read as stored (tensor/lowp.c): linear, matmul,
 * embedding, layer_norm and rms_norm against PyTorch on the same weights
 * upcast (tests/oracle/lowp.py), with every kernel level the CPU runs;
 * thread-count independence and larger products against the f32 path;
 * conversion of every bit pattern; gradients of the weights refused.
 *
 * Tolerance. The oracle is the float64 product of the stored values, so
 * what is compared is glassbox's float32 rounding: sums of up to 300 terms
 * of magnitude <= 0.3 here, whose rounding stays under 1e-5 absolute. */
#include <math.h>
#include <stdlib.h>

#include "gbtest.h"
#include "tensor/lowp.h"

#define RTOL 1e-5
#define ATOL 1e-5

static gbt_oracle *oracle;
static void oracle_setup(void) { oracle = gbt_oracle_load("lowp"); }
static void oracle_teardown(void) {
    gbt_oracle_free(oracle);
    oracle = NULL;
}

/* ---- oracle cases ------------------------------------------------------- */

/* Builds a case's output from its stored weights w[] and float32 inputs x[]
 * (the same views as the oracle); absent entries are NULL. */
typedef gb_tensor *(*recipe_fn)(gb_tensor **w, gb_tensor **x);

static gb_tensor *r_linear(gb_tensor **w, gb_tensor **x) { return gb_linear(x[0], w[0], w[1]); }

static gb_tensor *r_conv1d(gb_tensor **w, gb_tensor **x) { /* Conv1D: x @ wt + b, as linear with wt^T */
    gb_tensor *t = gb_transpose(w[0], 0, 1), *y = gb_linear(x[0], t, w[1]);
    gb_tensor_free(t);
    return y;
}

static gb_tensor *r_linear_perm(gb_tensor **w, gb_tensor **x) {
    gb_tensor *p = gb_permute(x[0], (int[]){1, 0, 2}), *y = gb_linear(p, w[0], w[1]);
    gb_tensor_free(p);
    return y;
}

static gb_tensor *r_linear_xt(gb_tensor **w, gb_tensor **x) {
    gb_tensor *t = gb_transpose(x[0], 0, 1), *y = gb_linear(t, w[0], NULL);
    gb_tensor_free(t);
    return y;
}

static gb_tensor *r_conv1d_perm(gb_tensor **w, gb_tensor **x) {
    gb_tensor *p = gb_permute(x[0], (int[]){1, 0, 2}), *t = gb_transpose(w[0], 0, 1), *y = gb_linear(p, t, NULL);
    gb_tensor_free(p), gb_tensor_free(t);
    return y;
}

static gb_tensor *r_mm_b(gb_tensor **w, gb_tensor **x) { return gb_matmul(x[0], w[0]); }
static gb_tensor *r_mm_a(gb_tensor **w, gb_tensor **x) { return gb_matmul(w[0], x[0]); }
static gb_tensor *r_embedding(gb_tensor **w, gb_tensor **x) {
    (void)x;
    return gb_embedding(w[0], w[1]);
}
static gb_tensor *r_layer_norm(gb_tensor **w, gb_tensor **x) { return gb_layer_norm(x[0], w[0], w[1], 1e-5f); }
static gb_tensor *r_rms_norm(gb_tensor **w, gb_tensor **x) { return gb_rms_norm(x[0], w[0], 1e-6f); }

typedef struct lowp_case {
    const char *key;
    recipe_fn fn;
    const char *weights[2], *input;
} lowp_case;

static const lowp_case cases[] = {
    {"linear_1", r_linear, {"w", "b"}, "x"},     {"linear_2", r_linear, {"w", "b"}, "x"},
    {"linear_3", r_linear, {"w", "b"}, "x"},     {"linear_5", r_linear, {"w", "b"}, "x"},
    {"linear_17", r_linear, {"w", "b"}, "x"},    {"linear_32", r_linear, {"w", "b"}, "x"},
    {"linear_33", r_linear, {"w", "b"}, "x"},    {"linear_70", r_linear, {"w", "b"}, "x"},
    {"conv1d_1", r_conv1d, {"wt", "b"}, "x"},    {"conv1d_3", r_conv1d, {"wt", "b"}, "x"},
    {"conv1d_16", r_conv1d, {"wt", "b"}, "x"},   {"conv1d_17", r_conv1d, {"wt", "b"}, "x"},
    {"conv1d_40", r_conv1d, {"wt", "b"}, "x"},   {"linear_perm", r_linear_perm, {"w", "b"}, "x"},
    {"linear_xt", r_linear_xt, {"w"}, "xt"},     {"conv1d_perm", r_conv1d_perm, {"wt"}, "x"},
    {"rows7", r_linear, {"w"}, "x"},             {"rows7_t", r_conv1d, {"wt"}, "x"},
    {"panels", r_linear, {"w", "b"}, "x"},       {"panels_t", r_conv1d, {"wt"}, "x"},
    {"mm_b", r_mm_b, {"b"}, "a"},                {"mm_vec", r_mm_b, {"b"}, "a"},
    {"mm_a", r_mm_a, {"a"}, "b"},                {"mm_batched", r_mm_b, {"b"}, "a"},
    {"embedding", r_embedding, {"w", "ids"}, NULL}, {"layer_norm", r_layer_norm, {"w", "b"}, "x"},
    {"rms_norm", r_rms_norm, {"w"}, "x"},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))
static const char *const dtypes[2] = {"bf16", "f16"};

static void run_case(const char *dt, const lowp_case *c, gb__ts_lowp_isa isa) {
    char what[128];
    snprintf(what, sizeof what, "%s.%s (%s%s)", dt, c->key, gb__ts_lowp_isa_name(isa),
             gb__ts_lowp_amx_get() == GB__LOWP_AMX_ALL ? ", AMX for many rows" : "");
    gb_tensor *w[2] = {0}, *x[1] = {0};
    for (int i = 0; i < 2 && c->weights[i]; i++) w[i] = gbt_getf(oracle, "%s.%s.%s", dt, c->key, c->weights[i]);
    ck_assert_msg(gb_tensor_dtype(w[0]) == (strcmp(dt, "bf16") ? GB_DTYPE_F16 : GB_DTYPE_BF16), "%s: stored dtype",
                  what);
    if (c->input) {
        gb_tensor *shared = gbt_getf(oracle, "%s.%s.%s", dt, c->key, c->input);
        x[0] = gb_detach(shared); /* a leaf of our own: .grad must not outlive the case */
        gb_tensor_free(shared);
        gbt_ok_status(gb_requires_grad_(x[0], true));
    }
    gb_tensor *y = c->fn(w, x), *want = gbt_getf(oracle, "%s.%s.y", dt, c->key);
    gbt_ok(y);
    ck_assert_int_eq(gb_tensor_dtype(y), GB_DTYPE_F32);
    gbt_assert_close(y, want, RTOL, ATOL, what);
    if (c->input) {
        gb_tensor *r = gbt_getf(oracle, "%s.%s.r", dt, c->key);
        gbt_ok_status(gb_backward(y, r, false));
        gb_tensor *dwant = gbt_getf(oracle, "%s.%s.d%s", dt, c->key, c->input);
        strcat(what, " grad");
        gbt_assert_close(gb_tensor_grad(x[0]), dwant, RTOL, ATOL, what);
        gb_tensor_free(dwant), gb_tensor_free(r);
    }
    gb_tensor_free(y), gb_tensor_free(want), gb_tensor_free(x[0]), gb_tensor_free(w[0]), gb_tensor_free(w[1]);
}

/* Every case at every kernel level this CPU runs (the baseline C, AVX2,
 * AVX-512, AVX512_BF16's vdpbf16ps), with sgemm's panels for many rows;
 * then, where AMX runs, with tdpbf16ps for every product of many rows
 * (by default only for large ones). */
START_TEST(test_oracle_case) {
    const char *dt = dtypes[_i / NCASES];
    const lowp_case *c = &cases[_i % NCASES];
    gb__ts_lowp_isa was = gb__ts_lowp_isa_get();
    gb__ts_lowp_amx amx = gb__ts_lowp_amx_set(GB__LOWP_AMX_OFF);
    for (int isa = 0; isa <= (int)gb__ts_lowp_isa_best(); isa++) {
        gb__ts_lowp_isa_set((gb__ts_lowp_isa)isa);
        ck_assert_int_eq(gb__ts_lowp_isa_get(), isa);
        run_case(dt, c, (gb__ts_lowp_isa)isa);
    }
    if (gb__ts_lowp_amx_ok()) {
        gb__ts_lowp_amx_set(GB__LOWP_AMX_ALL);
        run_case(dt, c, gb__ts_lowp_isa_get());
    }
    gb__ts_lowp_amx_set(amx);
    gb__ts_lowp_isa_set(was);
}
END_TEST

/* ---- larger products: threads, and the f32 path ------------------------- */

static gb_tensor *randn(int nd, const int64_t *shape, float std, uint64_t seed) {
    gb_rng r = gb_rng_seed(seed);
    gb_tensor *t = gb_randn(&r, nd, shape, 0.0f, std);
    gbt_ok(t);
    return t;
}

/* y = x @ w^T and dx for the weight stored as w (transposed: stored as
 * w^T [K, N], Conv1D's layout); *y and *dx are new references. */
static void product(gb_tensor *x, gb_tensor *w, bool transposed, gb_tensor *dy, gb_tensor **y, gb_tensor **dx) {
    gb_tensor *xl = gb_detach(x), *wv = transposed ? gb_transpose(w, 0, 1) : gb_tensor_ref(w);
    gbt_ok_status(gb_requires_grad_(xl, true));
    *y = gb_linear(xl, wv, NULL);
    gbt_ok(*y);
    gbt_ok_status(gb_backward(*y, dy, true));
    *dx = gb_tensor_ref(gb_tensor_grad(xl));
    gb_tensor_free(xl), gb_tensor_free(wv);
}

static void assert_same_bits(const gb_tensor *a, const gb_tensor *b, const char *what) {
    ck_assert_int_eq(gb_tensor_numel(a), gb_tensor_numel(b));
    ck_assert_msg(!memcmp(gb_tensor_data(a), gb_tensor_data(b), (size_t)gb_tensor_numel(a) * sizeof(float)),
                  "%s: results differ between 1 and 2 threads", what);
}

/* GEMV and a few rows in the direct kernels and many in the panels (and
 * in AMX's kernel where it runs: bf16 in nn.Linear's layout), both
 * layouts, both dtypes: the same bits on 1 and 2 threads, and within
 * float32 rounding of the f32 path (test_matmul.c checks that one against
 * PyTorch) on the converted weights. */
START_TEST(test_threads_and_f32_path) {
    static const int64_t rows[] = {1, 7, 40};
    const int64_t n = 600, k = 1000;
    int before = gb_get_num_threads();
    gb__ts_lowp_amx was = gb__ts_lowp_amx_get();
    for (int amx = 0; amx < (gb__ts_lowp_amx_ok() ? 2 : 1); amx++) {
        for (int d = 0; d < 2; d++)
            for (int lay = 0; lay < 2; lay++)
                for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
                    char what[96];
                    snprintf(what, sizeof what, "%s %s M=%lld%s", dtypes[d], lay ? "transposed" : "row-major",
                             (long long)rows[r], amx ? " (AMX)" : "");
                    gb__ts_lowp_amx_set(amx ? GB__LOWP_AMX_ALL : GB__LOWP_AMX_OFF);
                    gb_tensor *wf = randn(2, lay ? (int64_t[]){k, n} : (int64_t[]){n, k}, 0.03f, 40 + (uint64_t)d);
                    gb_tensor *w = gb_to_dtype(wf, d ? GB_DTYPE_F16 : GB_DTYPE_BF16), *wf32 = gb_to_dtype(w, GB_DTYPE_F32);
                    gb_tensor *x = randn(2, (int64_t[]){rows[r], k}, 1.0f, 50), *dy = randn(2, (int64_t[]){rows[r], n}, 1.0f, 51);
                    gb_tensor *y1, *dx1, *y2, *dx2, *yf, *dxf;
                    gb_set_num_threads(1);
                    product(x, w, lay, dy, &y1, &dx1);
                    gb_set_num_threads(2);
                    product(x, w, lay, dy, &y2, &dx2);
                    gb_set_num_threads(before);
                    assert_same_bits(y1, y2, what);
                    assert_same_bits(dx1, dx2, what);
                    product(x, wf32, lay, dy, &yf, &dxf);
                    gbt_assert_close(y1, yf, 1e-4, 1e-4, what);
                    gbt_assert_close(dx1, dxf, 1e-4, 1e-4, what);
                    gb_tensor *all[] = {wf, w, wf32, x, dy, y1, dx1, y2, dx2, yf, dxf};
                    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
                }
    }
    gb__ts_lowp_amx_set(was);
}
END_TEST

/* ---- conversion --------------------------------------------------------- */

/* All 65536 bit patterns of both dtypes, at every kernel level, against
 * the scalar conversions (tested on known values in test_tensor_core.c):
 * zeros, subnormals, infinities and nan payloads included. */
START_TEST(test_convert_every_value) {
    uint16_t *src = malloc(65536 * sizeof *src);
    float *dst = malloc(65536 * sizeof *dst);
    for (int i = 0; i < 65536; i++) src[i] = (uint16_t)i;
    gb__ts_lowp_isa was = gb__ts_lowp_isa_get();
    for (int isa = 0; isa <= (int)gb__ts_lowp_isa_best(); isa++)
        for (int d = 0; d < 2; d++) {
            gb__ts_lowp_isa_set((gb__ts_lowp_isa)isa);
            gb__ts_lowp_to_f32(dst, src, 65535, d ? GB_DTYPE_F16 : GB_DTYPE_BF16); /* odd: a tail too */
            for (int i = 0; i < 65535; i++) {
                float want = d ? gb_f16_to_f32(src[i]) : gb_bf16_to_f32(src[i]);
                ck_assert_msg(!memcmp(&dst[i], &want, 4) || (isnan(want) && isnan(dst[i])),
                              "%s 0x%04x at level %s: got %a, want %a", dtypes[d], i,
                              gb__ts_lowp_isa_name((gb__ts_lowp_isa)isa), dst[i], want);
            }
        }
    gb__ts_lowp_isa_set(was);
    /* and through the public conversion, on a strided view too */
    gb_tensor *h = gb_from_data(src, 2, (int64_t[]){256, 256}, GB_DTYPE_BF16), *ht = gb_transpose(h, 0, 1);
    gb_tensor *f = gb_to_dtype(h, GB_DTYPE_F32), *ft = gb_to_dtype(ht, GB_DTYPE_F32);
    double v;
    gbt_ok_status(gb_tensor_get(f, (int64_t[]){0x3f, 0x80}, &v));
    ck_assert_double_eq(v, 1.0); /* 0x3f80 */
    gbt_ok_status(gb_tensor_get(ft, (int64_t[]){0x80, 0x3f}, &v));
    ck_assert_double_eq(v, 1.0);
    gb_tensor_free(h), gb_tensor_free(ht), gb_tensor_free(f), gb_tensor_free(ft);
    free(src), free(dst);
}
END_TEST

/* ---- gradients of stored weights, dtypes, shapes only ------------------- */

START_TEST(test_weight_gradients_refused) {
    gb_tensor *x = randn(2, (int64_t[]){3, 4}, 1.0f, 1), *wf = randn(2, (int64_t[]){5, 4}, 1.0f, 2);
    gb_tensor *w = gb_to_dtype(wf, GB_DTYPE_BF16), *nw = gb_ones(1, (int64_t[]){4}, GB_DTYPE_F16);
    gb_tensor *ids = gb_from_data((int64_t[]){1, 0}, 1, (int64_t[]){2}, GB_DTYPE_I64);
    gbt_ok_status(gb_tensor_set_name(w, "model.layers.0.mlp.up_proj.weight"));
    gbt_ok_status(gb_requires_grad_(w, true));
    gbt_ok_status(gb_requires_grad_(nw, true));
    gbt_fails_with(gb_linear(x, w, NULL) == NULL, GB_ERR_AUTOGRAD,
                   "linear: weight 'model.layers.0.mlp.up_proj.weight' (bfloat16 [5, 4]) requires grad, but "
                   "gradients of float16 and bfloat16 tensors are not computed; open the model with float32 weights");
    gbt_fails_with(gb_matmul(x, w) == NULL, GB_ERR_AUTOGRAD, "matmul: mat2 'model.layers.0.mlp.up_proj.weight'");
    gbt_fails_with(gb_embedding(w, ids) == NULL, GB_ERR_AUTOGRAD, "embedding: weight 'model.layers.0.mlp");
    gbt_fails_with(gb_layer_norm(x, NULL, nw, 1e-5f) == NULL, GB_ERR_AUTOGRAD, "layer_norm: bias (float16 [4])");
    gbt_fails_with(gb_rms_norm(x, nw, 1e-5f) == NULL, GB_ERR_AUTOGRAD, "rms_norm: weight (float16 [4])");
    /* without grad mode nothing records: the weights are read */
    gb_grad_mode saved = gb_no_grad_begin();
    gb_tensor *y = gb_linear(x, w, NULL), *e = gb_embedding(w, ids), *r = gb_rms_norm(x, nw, 1e-5f);
    gbt_ok(y), gbt_ok(e), gbt_ok(r);
    gb_grad_mode_end(saved);
    gb_tensor_free(y), gb_tensor_free(e), gb_tensor_free(r);
    /* asked for after the op recorded: backward refuses, never a wrong .grad */
    gbt_ok_status(gb_requires_grad_(w, false));
    gbt_ok_status(gb_requires_grad_(x, true));
    y = gb_linear(x, w, NULL);
    gbt_ok(y);
    gbt_ok_status(gb_requires_grad_(w, true));
    gb_tensor *s = gb_sum_all(y);
    gbt_fails_with(gb_backward(s, NULL, false) != GB_OK, GB_ERR_AUTOGRAD, "linear: weight 'model.layers.0.mlp");
    gb_tensor_free(s), gb_tensor_free(y);
    gb_tensor *all[] = {x, wf, w, ids, nw};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

START_TEST(test_dtypes_and_meta) {
    gb_tensor *x = gb_zeros(2, (int64_t[]){3, 4}, GB_DTYPE_F32), *w = gb_zeros(2, (int64_t[]){5, 4}, GB_DTYPE_BF16);
    gb_tensor *wi = gb_zeros(2, (int64_t[]){5, 4}, GB_DTYPE_I32), *h = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F16);
    gbt_fails_with(gb_linear(x, wi, NULL) == NULL, GB_ERR_DTYPE,
                   "linear: expected weight of dtype float32 (or float16, bfloat16), got int32 [5, 4]");
    gbt_fails_with(gb_embedding(wi, wi) == NULL, GB_ERR_DTYPE, "embedding: expected weight of dtype float32 (or");
    gbt_fails_with(gb_layer_norm(h, NULL, NULL, 1e-5f) == NULL, GB_ERR_DTYPE, "layer_norm: expected float32 tensors");
    /* a weight that is not 2-D with a unit stride still works (as f32) */
    gb_tensor *ws = gb_slice(w, 1, 0, GB_END, 2), *xs = gb_slice(x, 1, 0, GB_END, 2), *y = gb_linear(xs, ws, h);
    gbt_fails_with(y == NULL, GB_ERR_SHAPE, "linear: bias of shape [4] does not match weight of shape [5, 2]");
    gb_tensor *b = gb_zeros(1, (int64_t[]){5}, GB_DTYPE_F16);
    y = gb_linear(xs, ws, b);
    gbt_ok(y);
    ck_assert_int_eq(gb_tensor_dtype(y), GB_DTYPE_F32);
    gb_tensor_free(y);
    /* shapes only */
    gb__meta_push();
    gb_tensor *xm = gb_empty(3, (int64_t[]){2, 7, 4}, GB_DTYPE_F32), *ym = gb_linear(xm, w, b);
    gb__meta_pop();
    gbt_ok(ym);
    ck_assert(gb__is_meta(ym) && gb_tensor_dim(ym, 2) == 5 && gb_tensor_dtype(ym) == GB_DTYPE_F32);
    gb_tensor *all[] = {x, w, wi, h, ws, xs, b, xm, ym};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

Suite *gb_suite_lowp(void) {
    Suite *s = suite_create("lowp");
    TCase *tc = tcase_create("oracle");
    tcase_add_unchecked_fixture(tc, oracle_setup, oracle_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_oracle_case, 0, 2 * NCASES);
    suite_add_tcase(s, tc);
    tc = tcase_create("kernels");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_threads_and_f32_path);
    tcase_add_test(tc, test_convert_every_value);
    tcase_add_test(tc, test_weight_gradients_refused);
    tcase_add_test(tc, test_dtypes_and_meta);
    suite_add_tcase(s, tc);
    return s;
}
