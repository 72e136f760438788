/* matmul and linear (values and gradients against PyTorch, strided operands,
 * errors), OpenBLAS loading and its kernel choice, threads.
 *
 * Tolerance. A matmul element is a sum of K products in f32. OpenBLAS and
 * PyTorch add them in different orders (blocking, FMA, kernel), so each
 * result carries a rounding error of up to about K * 2^-24 * sum|a_i b_i|,
 * which relative to the result itself is unbounded when the sum cancels.
 * Hence rtol 1e-4 with an atol of 1e-5 per unit of K-scaled magnitude: for the
 * randn operands here (|a_i b_i| ~ 1) an atol of 1e-4 covers K up to 200 with
 * margin, and a wrong index or transpose still shows up as an O(1) error. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <strings.h>

#include "gbtest.h"
#include "tensor/blas.h"

#define MM_RTOL 1e-4
#define MM_ATOL 1e-4

/* ---- oracle cases ------------------------------------------------------- */

/* Loaded once, before the tests fork (an unchecked fixture runs in the
 * runner's process): parsing it per test is slow under valgrind. */
static gbt_oracle *oracle;
static void oracle_setup(void) { oracle = gbt_oracle_load("matmul"); }
static void oracle_teardown(void) {
    gbt_oracle_free(oracle);
    oracle = NULL;
}

/* Builds the case's output from its leaves x[] (the same views as the oracle). */
typedef gb_tensor *(*recipe_fn)(gb_tensor **x);

static gb_tensor *r_matmul(gb_tensor **x) { return gb_matmul(x[0], x[1]); }

static gb_tensor *r_at(gb_tensor **x) {
    gb_tensor *a = gb_transpose(x[0], 0, 1), *y = gb_matmul(a, x[1]);
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_bt(gb_tensor **x) {
    gb_tensor *b = gb_transpose(x[1], -1, -2), *y = gb_matmul(x[0], b);
    gb_tensor_free(b);
    return y;
}

static gb_tensor *r_batch_t(gb_tensor **x) {
    gb_tensor *a = gb_transpose(x[0], -1, -2), *b = gb_transpose(x[1], -1, -2), *y = gb_matmul(a, b);
    gb_tensor_free(a), gb_tensor_free(b);
    return y;
}

static gb_tensor *r_strided(gb_tensor **x) { /* x[:, ::2]: neither stride is 1, so a copy */
    gb_tensor *a = gb_slice(x[0], 1, 0, GB_END, 2), *y = gb_matmul(a, x[1]);
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_expand(gb_tensor **x) { /* batch stride 0 */
    gb_tensor *a = gb_expand(x[0], 3, (int64_t[]){2, 3, 4}), *y = gb_matmul(a, x[1]);
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_perm(gb_tensor **x) { /* batches that cannot fold into rows */
    gb_tensor *a = gb_permute(x[0], (int[]){1, 0, 2}), *y = gb_matmul(a, x[1]);
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_perm_t(gb_tensor **x) { /* the last dim is not the source's contiguous one */
    gb_tensor *a = gb_permute(x[0], (int[]){2, 0, 1}), *y = gb_matmul(a, x[1]);
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_linear(gb_tensor **x) { return gb_linear(x[0], x[1], x[2]); }
static gb_tensor *r_linear_nobias(gb_tensor **x) { return gb_linear(x[0], x[1], NULL); }

static gb_tensor *r_linear_xt(gb_tensor **x) {
    gb_tensor *a = gb_transpose(x[0], 0, 1), *y = gb_linear(a, x[1], x[2]);
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_linear_wt(gb_tensor **x) {
    gb_tensor *w = gb_transpose(x[1], 0, 1), *y = gb_linear(x[0], w, NULL);
    gb_tensor_free(w);
    return y;
}

static gb_tensor *r_linear_wt_bias(gb_tensor **x) {
    gb_tensor *w = gb_transpose(x[1], 0, 1), *y = gb_linear(x[0], w, x[2]);
    gb_tensor_free(w);
    return y;
}

static gb_tensor *r_linear_perm(gb_tensor **x) {
    gb_tensor *a = gb_permute(x[0], (int[]){1, 0, 2}), *y = gb_linear(a, x[1], x[2]);
    gb_tensor_free(a);
    return y;
}

typedef struct mm_case {
    const char *key;
    recipe_fn fn;
    const char *leaves[3];
} mm_case;

static const mm_case mm_cases[] = {
    {"mm", r_matmul, {"a", "b"}},
    {"vm", r_matmul, {"a", "b"}},
    {"mv", r_matmul, {"a", "b"}},
    {"dot", r_matmul, {"a", "b"}},
    {"bcast", r_matmul, {"a", "b"}},
    {"fold", r_matmul, {"a", "b"}},
    {"vbatch", r_matmul, {"a", "b"}},
    {"batchv", r_matmul, {"a", "b"}},
    {"bcast_a", r_matmul, {"a", "b"}},
    {"par", r_matmul, {"a", "b"}},
    {"k0", r_matmul, {"a", "b"}},
    {"at", r_at, {"at", "b"}},
    {"bt", r_bt, {"a", "bt"}},
    {"batch_t", r_batch_t, {"at", "bt"}},
    {"fold_bt", r_bt, {"a", "bt"}},
    {"strided", r_strided, {"x", "b"}},
    {"expand", r_expand, {"x", "b"}},
    {"perm", r_perm, {"x", "b"}},
    {"gemv_rows", r_matmul, {"a", "b"}},
    {"gemv_rows_par", r_matmul, {"a", "b"}},
    {"gemv_dots_par", r_linear, {"x", "w", "bias"}},
    {"gemv_dots", r_linear_nobias, {"x", "w"}},
    {"gemv_rows_blocked", r_matmul, {"a", "b"}},
    {"gemv_rows_blocked_bias", r_linear_wt_bias, {"x", "wt", "bias"}},
    {"wgemm_linear", r_linear, {"x", "w", "bias"}},
    {"wgemm_kblocks_bias", r_linear, {"x", "w", "bias"}},
    {"wgemm_rows5", r_linear_nobias, {"x", "w"}},
    {"wgemm_bt", r_bt, {"a", "bt"}},
    {"wgemm_kn", r_matmul, {"a", "b"}},
    {"wgemm_kn_bias", r_linear_wt_bias, {"x", "wt", "bias"}},
    {"view_t", r_at, {"at", "b"}},
    {"perm_t", r_perm_t, {"x", "b"}},
    {"big", r_matmul, {"a", "b"}},
    {"linear", r_linear, {"x", "w", "bias"}},
    {"linear_nobias", r_linear_nobias, {"x", "w"}},
    {"linear_xt", r_linear_xt, {"xt", "w", "bias"}},
    {"linear_wt", r_linear_wt, {"x", "wt"}},
    {"linear_perm", r_linear_perm, {"x", "w", "bias"}},
    {"linear_big", r_linear, {"x", "w", "bias"}},
};
#define NCASES ((int)(sizeof mm_cases / sizeof mm_cases[0]))

/* y against the oracle, then the gradients of sum(y * r) for every leaf. */
static void run_case(gbt_oracle *o, const mm_case *c) {
    gb_tensor *x[3] = {0};
    int n = 0;
    for (; n < 3 && c->leaves[n]; n++) {
        gb_tensor *shared = gbt_getf(o, "%s.%s", c->key, c->leaves[n]);
        x[n] = gb_detach(shared); /* a leaf of our own: .grad must not outlive this case */
        gb_tensor_free(shared);
        gbt_ok_status(gb_requires_grad_(x[n], true));
    }
    gb_tensor *y = c->fn(x), *want = gbt_getf(o, "%s.y", c->key), *r = gbt_getf(o, "%s.r", c->key);
    gbt_assert_close(y, want, MM_RTOL, MM_ATOL, c->key);
    gbt_ok_status(gb_backward(y, r, false));
    for (int i = 0; i < n; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s.d%s", c->key, c->leaves[i]);
        gb_tensor *dwant = gbt_get(o, what);
        gbt_assert_close(gb_tensor_grad(x[i]), dwant, MM_RTOL, MM_ATOL, what);
        gb_tensor_free(dwant);
    }
    gb_tensor_free(y), gb_tensor_free(want), gb_tensor_free(r);
    for (int i = 0; i < n; i++) gb_tensor_free(x[i]);
}

START_TEST(test_oracle_case) {
    gbt_oracle *o = oracle;
    run_case(o, &mm_cases[_i]);
}
END_TEST

/* The same batched products with one thread (sequential batch loop) and
 * with the default count. */
START_TEST(test_threads) {
    int before = gb_get_num_threads();
    ck_assert_int_ge(before, 1);
    gb_set_num_threads(1);
    ck_assert_int_eq(gb_get_num_threads(), 1);
    gbt_oracle *o = oracle;
    for (int i = 0; i < NCASES; i++)
        if (!strcmp(mm_cases[i].key, "par") || !strcmp(mm_cases[i].key, "bcast") ||
            !strncmp(mm_cases[i].key, "gemv_", 5))
            run_case(o, &mm_cases[i]);
    gb_set_num_threads(0); /* 0: all cores */
    ck_assert_int_eq(gb_get_num_threads(), omp_get_num_procs());
    gb_set_num_threads(before);
    ck_assert_int_eq(gb_get_num_threads(), before);
}
END_TEST

/* Products of few rows (the matrix-vector kernels) give the same bits at 1
 * and 2 threads: each output element is summed by one thread in one order. */
START_TEST(test_gemv_threads_identical) {
    int before = gb_get_num_threads();
    gb_rng r = gb_rng_seed(11);
    gb_tensor *x = gb_randn(&r, 2, (int64_t[]){3, 203}, 0.0f, 1.0f);
    gb_tensor *b = gb_randn(&r, 2, (int64_t[]){203, 1001}, 0.0f, 1.0f);
    gb_tensor *w = gb_randn(&r, 2, (int64_t[]){1001, 203}, 0.0f, 1.0f);
    gb_tensor *bias = gb_randn(&r, 1, (int64_t[]){1001}, 0.0f, 1.0f);
    gb_tensor *x3 = gb_randn(&r, 2, (int64_t[]){3, 300}, 0.0f, 1.0f); /* B by blocks of rows */
    gb_tensor *b3 = gb_randn(&r, 2, (int64_t[]){300, 1001}, 0.0f, 1.0f);
    gb_tensor *y[2][3];
    for (int t = 0; t < 2; t++) {
        gb_set_num_threads(t + 1);
        y[t][0] = gb_matmul(x, b);
        y[t][1] = gb_linear(x, w, bias);
        y[t][2] = gb_matmul(x3, b3);
        ck_assert(y[t][0] && y[t][1] && y[t][2]);
    }
    gb_set_num_threads(before);
    gb_tensor_free(x3), gb_tensor_free(b3);
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(gb_tensor_numel(y[0][k]), 3 * 1001);
        ck_assert(!memcmp(gb_tensor_data(y[0][k]), gb_tensor_data(y[1][k]), 3 * 1001 * sizeof(float)));
        gb_tensor_free(y[0][k]), gb_tensor_free(y[1][k]);
    }
    gb_tensor_free(x), gb_tensor_free(b), gb_tensor_free(w), gb_tensor_free(bias);
}
END_TEST

/* The weight-in-place kernels (wgemm.c) against a plain loop in double, at
 * sizes that leave partial tiles (rows not a multiple of 12 or 32, weight
 * rows not of 12, columns not of 32, K not of 256; K over 1 MB of A^T, in
 * two blocks), with strides wider than the rows (C and W as slices of
 * larger buffers), beta 0, 1 and 0.5, the
 * weight stored [N, K] (W^T: nn.Linear's) and [K, N] (Conv1D's); then
 * where they must decline. Bound: K * 2^-24 * sum |a_i w_i| per element,
 * the f32 rounding of any summation order. */
static float wg_val(int64_t i, int64_t salt) { return (float)((i * 7919 + salt * 104729) % 2001 - 1000) / 1000.0f; }

START_TEST(test_wgemm_reference) {
    if (!(gb__ts_cpu_features() & GB__CPU(AVX512F))) {
        gbt_skip("test_wgemm_reference", "this CPU has no AVX-512: sgemm takes every product");
        return;
    }
    static const struct {
        int64_t m, k, n, pad; /* pad: extra floats at the end of each row of C and W */
        float beta;
        bool kn; /* W stored [K, N] */
    } cases[] = {{5, 256, 256, 0, 0.0f, false},          {37, 257, 263, 3, 1.0f, false},
                 {64, 300, 1000, 0, 0.0f, false},        {128, 768, 97 * 12 + 1, 5, 1.0f, false},
                 {5, 256, 256, 0, 0.0f, true},           {37, 257, 263, 3, 1.0f, true},
                 {64, 300, 1000, 0, 0.5f, true},         {128, 768, 97 * 32 + 7, 5, 1.0f, true},
                 {13, 1000, 70, 2, 0.0f, true},          {100, 3001, 200, 1, 1.0f, false}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t m = cases[ci].m, k = cases[ci].k, n = cases[ci].n, ldc = n + cases[ci].pad;
        bool kn = cases[ci].kn;
        int64_t ldw = (kn ? n : k) + cases[ci].pad, wrows = kn ? k : n;
        float *a = malloc((size_t)(m * k) * sizeof(float));       /* [m, k] */
        float *w = malloc((size_t)(wrows * ldw) * sizeof(float)); /* [n, ldw] or [k, ldw] */
        float *c = malloc((size_t)(m * ldc) * sizeof(float));     /* [m, ldc] */
        ck_assert(a && w && c);
        for (int64_t i = 0; i < m * k; i++) a[i] = wg_val(i, 1);
        for (int64_t i = 0; i < wrows * ldw; i++) w[i] = wg_val(i, 2);
        for (int64_t i = 0; i < m * ldc; i++) c[i] = wg_val(i, 3);
        float *c0 = malloc((size_t)(m * ldc) * sizeof(float));
        ck_assert(c0);
        memcpy(c0, c, (size_t)(m * ldc) * sizeof(float));
        gb__ts_mat am = {.p = a, .rows = m, .cols = k, .rs = k, .cs = 1};
        gb__ts_mat bm = {.p = w, .rows = k, .cols = n, .rs = kn ? ldw : 1, .cs = kn ? 1 : ldw};
        gb__ts_mat cm = {.p = c, .rows = m, .cols = n, .rs = ldc, .cs = 1};
        ck_assert(gb__ts_wgemm(&cm, &am, &bm, cases[ci].beta));
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < ldc; j++) {
                if (j >= n) { /* the padding is not written */
                    ck_assert_float_eq(c[i * ldc + j], c0[i * ldc + j]);
                    continue;
                }
                double s = cases[ci].beta * (double)c0[i * ldc + j], mag = fabs(s);
                for (int64_t p = 0; p < k; p++) {
                    double wv = kn ? w[p * ldw + j] : w[j * ldw + p];
                    s += (double)a[i * k + p] * wv;
                    mag += fabs((double)a[i * k + p] * wv);
                }
                double err = fabs((double)c[i * ldc + j] - s);
                if (err > (double)k * 0x1p-24 * mag + 1e-6)
                    ck_abort_msg("wgemm case %zu: C[%lld, %lld] = %.9g, want %.9g", ci, (long long)i, (long long)j,
                                 (double)c[i * ldc + j], s);
            }
        free(a), free(w), free(c), free(c0);
    }
    /* A's transpose stored, a short sum (a weight's gradient, dY^T X): C
     * [m, n] = A [m, k] @ B [k, n], A read from at [k, lda], B [k, ldb]:
     * partial row groups and column panels, beta 0, 1 and 0.5, the longest
     * sum taken; a longer one declined */
    static const struct {
        int64_t m, k, n, pad;
        float beta;
    } outer[] = {{263, 37, 300, 3, 0.0f}, {70, 128, 1000, 0, 1.0f}, {12, 512, 5462, 1, 0.5f}};
    for (size_t ci = 0; ci < sizeof outer / sizeof outer[0]; ci++) {
        int64_t m = outer[ci].m, k = outer[ci].k, n = outer[ci].n, pad = outer[ci].pad;
        int64_t lda = m + pad, ldb = n + pad, ldc = n + pad;
        float *at = malloc((size_t)(k * lda) * sizeof(float)); /* [k, lda] */
        float *b = malloc((size_t)(k * ldb) * sizeof(float));  /* [k, ldb] */
        float *c = malloc((size_t)(m * ldc) * sizeof(float));  /* [m, ldc] */
        float *c0 = malloc((size_t)(m * ldc) * sizeof(float));
        ck_assert(at && b && c && c0);
        for (int64_t i = 0; i < k * lda; i++) at[i] = wg_val(i, 4);
        for (int64_t i = 0; i < k * ldb; i++) b[i] = wg_val(i, 5);
        for (int64_t i = 0; i < m * ldc; i++) c[i] = c0[i] = wg_val(i, 6);
        gb__ts_mat am = {.p = at, .rows = m, .cols = k, .rs = 1, .cs = lda};
        gb__ts_mat bm = {.p = b, .rows = k, .cols = n, .rs = ldb, .cs = 1};
        gb__ts_mat cm = {.p = c, .rows = m, .cols = n, .rs = ldc, .cs = 1};
        ck_assert(gb__ts_wgemm(&cm, &am, &bm, outer[ci].beta));
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < ldc; j++) {
                if (j >= n) {
                    ck_assert_float_eq(c[i * ldc + j], c0[i * ldc + j]);
                    continue;
                }
                double s = outer[ci].beta * (double)c0[i * ldc + j], mag = fabs(s);
                for (int64_t p = 0; p < k; p++) {
                    s += (double)at[p * lda + i] * (double)b[p * ldb + j];
                    mag += fabs((double)at[p * lda + i] * (double)b[p * ldb + j]);
                }
                if (fabs((double)c[i * ldc + j] - s) > (double)k * 0x1p-24 * mag + 1e-6)
                    ck_abort_msg("wgemm outer case %zu: C[%lld, %lld] = %.9g, want %.9g", ci, (long long)i, (long long)j,
                                 (double)c[i * ldc + j], s);
            }
        free(at), free(b), free(c), free(c0);
    }
    float *obuf = calloc((size_t)513 * 300, sizeof(float));
    ck_assert(obuf);
    gb__ts_mat at513 = {.p = obuf, .rows = 263, .cols = 513, .rs = 1, .cs = 263};
    gb__ts_mat b513 = {.p = obuf, .rows = 513, .cols = 300, .rs = 300, .cs = 1};
    gb__ts_mat c513 = {.p = obuf, .rows = 263, .cols = 300, .rs = 300, .cs = 1};
    ck_assert(!gb__ts_wgemm(&c513, &at513, &b513, 0.0f));
    free(obuf);
    /* declined: 4 rows (matrix-vector kernels), a strided A, a weight of
     * fewer than 64K elements, over 256 rows with W^T, C over 2 MB with W,
     * a W with neither unit stride */
    float *buf = calloc((size_t)600 * 768, sizeof(float));
    ck_assert(buf);
    gb__ts_mat a4 = {.p = buf, .rows = 4, .cols = 256, .rs = 256, .cs = 1};
    gb__ts_mat c4 = {.p = buf, .rows = 4, .cols = 256, .rs = 256, .cs = 1};
    gb__ts_mat w256 = {.p = buf, .rows = 256, .cols = 256, .rs = 1, .cs = 256};
    ck_assert(!gb__ts_wgemm(&c4, &a4, &w256, 0.0f));
    gb__ts_mat as = {.p = buf, .rows = 8, .cols = 256, .rs = 1, .cs = 8};
    gb__ts_mat c8 = {.p = buf, .rows = 8, .cols = 256, .rs = 256, .cs = 1};
    ck_assert(!gb__ts_wgemm(&c8, &as, &w256, 0.0f));
    gb__ts_mat a8 = {.p = buf, .rows = 8, .cols = 256, .rs = 256, .cs = 1};
    gb__ts_mat c8s = {.p = buf, .rows = 8, .cols = 255, .rs = 255, .cs = 1};
    gb__ts_mat w255 = {.p = buf, .rows = 256, .cols = 255, .rs = 1, .cs = 256};
    ck_assert(!gb__ts_wgemm(&c8s, &a8, &w255, 0.0f));
    gb__ts_mat abig = {.p = buf, .rows = 512, .cols = 768, .rs = 768, .cs = 1};
    gb__ts_mat cbig = {.p = buf, .rows = 512, .cols = 96, .rs = 96, .cs = 1};
    gb__ts_mat wbig = {.p = buf, .rows = 768, .cols = 96, .rs = 1, .cs = 768};
    ck_assert(!gb__ts_wgemm(&cbig, &abig, &wbig, 0.0f));
    gb__ts_mat a700 = {.p = buf, .rows = 700, .cols = 96, .rs = 96, .cs = 1};
    gb__ts_mat c700 = {.p = buf, .rows = 700, .cols = 768, .rs = 768, .cs = 1};
    gb__ts_mat wkn = {.p = buf, .rows = 96, .cols = 768, .rs = 768, .cs = 1};
    ck_assert(!gb__ts_wgemm(&c700, &a700, &wkn, 0.0f));
    gb__ts_mat wstr = {.p = buf, .rows = 256, .cols = 256, .rs = 512, .cs = 2};
    ck_assert(!gb__ts_wgemm(&c8, &a8, &wstr, 0.0f));
    free(buf);
}
END_TEST

/* Each element is one tile's sum in k order: the same bits at 1, 2 and 3
 * threads, whichever thread takes a row group, as for the matrix-vector
 * kernels. (sgemm, split over threads in
 * blocks, promises no such thing: without AVX-512 there is nothing to test.) */
START_TEST(test_wgemm_threads_identical) {
    if (!(gb__ts_cpu_features() & GB__CPU(AVX512F))) {
        gbt_skip("test_wgemm_threads_identical", "this CPU has no AVX-512: sgemm takes every product");
        return;
    }
    int before = gb_get_num_threads();
    gb_rng r = gb_rng_seed(12);
    gb_tensor *x = gb_randn(&r, 2, (int64_t[]){45, 300}, 0.0f, 1.0f);
    gb_tensor *w = gb_randn(&r, 2, (int64_t[]){1001, 300}, 0.0f, 1.0f);  /* nn.Linear's [N, K] */
    gb_tensor *wkn = gb_randn(&r, 2, (int64_t[]){300, 1001}, 0.0f, 1.0f); /* Conv1D's [K, N] */
    gb_tensor *bias = gb_randn(&r, 1, (int64_t[]){1001}, 0.0f, 1.0f);
    gb_tensor *y[2], *ykn[2];
    for (int t = 0; t < 2; t++) {
        gb_set_num_threads(t + 1);
        y[t] = gb_linear(x, w, bias);
        ykn[t] = gb_matmul(x, wkn);
        ck_assert(y[t] && ykn[t]);
    }
    /* three threads on two cores; and a product's region inside another
     * region, which gets one thread: it takes its own share of the row
     * groups, then the others' from their ends (gb__ts_wg_take) */
    gb_set_num_threads(3);
    gb_tensor *y3 = gb_linear(x, w, bias), *ynest = NULL;
    gb_set_num_threads(2);
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        ynest = gb_linear(x, w, bias);
    }
    gb_set_num_threads(before);
    ck_assert(y3 && ynest);
    ck_assert(!memcmp(gb_tensor_data(y[0]), gb_tensor_data(y[1]), 45 * 1001 * sizeof(float)));
    ck_assert(!memcmp(gb_tensor_data(y[0]), gb_tensor_data(y3), 45 * 1001 * sizeof(float)));
    ck_assert(!memcmp(gb_tensor_data(y[0]), gb_tensor_data(ynest), 45 * 1001 * sizeof(float)));
    ck_assert(!memcmp(gb_tensor_data(ykn[0]), gb_tensor_data(ykn[1]), 45 * 1001 * sizeof(float)));
    /* the weight's gradient (dY^T X, the short-sum kernel), accumulated
     * over two uses: the same bits at 1, 2 and 3 threads */
    gb_tensor *dw[3] = {0}, *x2 = gb_randn(&r, 2, (int64_t[]){45, 300}, 0.0f, 1.0f);
    for (int t = 0; t < 3; t++) {
        gb_set_num_threads(t + 1);
        gb_tensor *wl = gb_detach(w);
        ck_assert(wl && gb_requires_grad_(wl, true) == GB_OK);
        gb_tensor *y1 = gb_linear(x, wl, NULL), *y2 = gb_linear(x2, wl, NULL), *s = y1 && y2 ? gb_add(y1, y2) : NULL;
        ck_assert(s && gb_backward(s, y1, false) == GB_OK); /* d s = y1: nothing special about the values */
        dw[t] = gb_tensor_ref(gb_tensor_grad(wl));
        gb_tensor_free(y1), gb_tensor_free(y2), gb_tensor_free(s), gb_tensor_free(wl);
    }
    gb_set_num_threads(before);
    for (int t = 1; t < 3; t++) ck_assert(!memcmp(gb_tensor_data(dw[0]), gb_tensor_data(dw[t]), 1001 * 300 * sizeof(float)));
    for (int t = 0; t < 3; t++) gb_tensor_free(dw[t]);
    gb_tensor_free(x2);
    /* weights sharing their input: the same bits as one at a time */
    gb_tensor *w2 = gb_randn(&r, 2, (int64_t[]){250, 300}, 0.0f, 1.0f), *out[2] = {0};
    gb_tensor *y2 = gb_linear(x, w2, NULL), *y1 = gb_linear(x, w, NULL);
    ck_assert(gb__ts_linear_shared(x, 2, (gb_tensor *[]){w, w2}, out));
    ck_assert(!memcmp(gb_tensor_data(out[0]), gb_tensor_data(y1), 45 * 1001 * sizeof(float)));
    ck_assert(!memcmp(gb_tensor_data(out[1]), gb_tensor_data(y2), 45 * 250 * sizeof(float)));
    gb_tensor_free(out[0]), gb_tensor_free(out[1]), gb_tensor_free(y1), gb_tensor_free(y2), gb_tensor_free(w2);
    gb_tensor_free(y[0]), gb_tensor_free(y[1]), gb_tensor_free(ykn[0]), gb_tensor_free(ykn[1]);
    gb_tensor_free(y3), gb_tensor_free(ynest);
    gb_tensor_free(x), gb_tensor_free(w), gb_tensor_free(wkn), gb_tensor_free(bias);
}
END_TEST

/* ---- gradcheck: finite differences on small random shapes --------------- */

static gb_tensor *leaf(int ndim, const int64_t *shape, uint64_t seed) {
    gb_rng r = gb_rng_seed(seed);
    gb_tensor *t = gb_randn(&r, ndim, shape, 0.0f, 1.0f);
    gb_requires_grad_(t, true);
    return t;
}

static gb_tensor *g_matmul(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    return gb_matmul(in[0], in[1]);
}

/* a^T @ b^T with the transposes as views, batch dims broadcasting. */
static gb_tensor *g_matmul_tt(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    gb_tensor *a = gb_transpose(in[0], -1, -2), *b = gb_transpose(in[1], -1, -2), *y = gb_matmul(a, b);
    gb_tensor_free(a), gb_tensor_free(b);
    return y;
}

static gb_tensor *g_linear(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    return gb_linear(in[0], in[1], in[2]);
}

START_TEST(test_gradcheck) {
    struct {
        int na, nb;
        int64_t sa[4], sb[4];
        bool transposed;
    } cases[] = {
        {4, 3, {2, 1, 3, 4}, {5, 4, 2}, false}, /* broadcast both ways */
        {2, 3, {3, 4}, {2, 4, 2}, false},       /* a shared by the batches of b */
        {3, 2, {2, 3, 4}, {4, 2}, false},       /* folds into one product */
        {1, 3, {4}, {2, 4, 3}, false},
        {3, 1, {2, 3, 4}, {4}, false},
        {3, 3, {2, 4, 3}, {1, 2, 4}, true},     /* transposed operands, b broadcast */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gb_tensor *in[2] = {leaf(cases[i].na, cases[i].sa, 10 + i), leaf(cases[i].nb, cases[i].sb, 20 + i)};
        gbt_gradcheck(cases[i].transposed ? g_matmul_tt : g_matmul, 2, in, NULL, 1e-2, 1e-3, 1e-3, "matmul");
        gb_tensor_free(in[0]), gb_tensor_free(in[1]);
    }
    gb_tensor *in[3] = {leaf(3, (int64_t[]){2, 3, 4}, 1), leaf(2, (int64_t[]){5, 4}, 2), leaf(1, (int64_t[]){5}, 3)};
    gbt_gradcheck(g_linear, 3, in, NULL, 1e-2, 1e-3, 1e-3, "linear");
    for (int i = 0; i < 3; i++) gb_tensor_free(in[i]);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_matmul_errors) {
    gb_tensor *s = gb_scalar_tensor(1.0f), *v3 = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32),
              *v4 = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F32), *m23 = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_F32),
              *m45 = gb_zeros(2, (int64_t[]){4, 5}, GB_DTYPE_F32),
              *b1023 = gb_zeros(3, (int64_t[]){10, 2, 3}, GB_DTYPE_F32),
              *b1045 = gb_zeros(3, (int64_t[]){10, 4, 5}, GB_DTYPE_F32),
              *c2334 = gb_zeros(4, (int64_t[]){2, 3, 3, 4}, GB_DTYPE_F32),
              *c542 = gb_zeros(3, (int64_t[]){5, 4, 2}, GB_DTYPE_F32), *i34 = gb_zeros(2, (int64_t[]){3, 4}, GB_DTYPE_I64);
    gbt_fails_with(gb_matmul(s, v3) == NULL, GB_ERR_SHAPE,
                   "matmul: both arguments to matmul need to be at least 1D, but they are 0D and 1D");
    gbt_fails_with(gb_matmul(v3, v4) == NULL, GB_ERR_SHAPE,
                   "inconsistent tensor size, expected tensor [3] and src [4] to have the same number of elements, but "
                   "got 3 and 4 elements respectively");
    gbt_fails_with(gb_matmul(m23, m45) == NULL, GB_ERR_SHAPE, "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)");
    gbt_fails_with(gb_matmul(v3, m45) == NULL, GB_ERR_SHAPE, "mat1 and mat2 shapes cannot be multiplied (1x3 and 4x5)");
    gbt_fails_with(gb_matmul(m23, v4) == NULL, GB_ERR_SHAPE, "mat1 and mat2 shapes cannot be multiplied (2x3 and 4x1)");
    gbt_fails_with(gb_matmul(b1023, b1045) == NULL, GB_ERR_SHAPE, "(2x3 and 4x5) (shapes [10, 2, 3] and [10, 4, 5])");
    gbt_fails_with(gb_matmul(c2334, c542) == NULL, GB_ERR_SHAPE,
                   "the size of tensor a (3) must match the size of tensor b (5) at non-singleton dimension 1");
    gbt_fails_with(gb_matmul(i34, m45) == NULL, GB_ERR_DTYPE, "matmul: expected mat1 of dtype float32 (or float16, bfloat16), got int64");
    /* linear */
    gb_tensor *x234 = gb_zeros(3, (int64_t[]){2, 3, 4}, GB_DTYPE_F32), *w53 = gb_zeros(2, (int64_t[]){5, 3}, GB_DTYPE_F32),
              *w54 = gb_zeros(2, (int64_t[]){5, 4}, GB_DTYPE_F32);
    gbt_fails_with(gb_linear(x234, w53, NULL) == NULL, GB_ERR_SHAPE,
                   "linear: mat1 and mat2 shapes cannot be multiplied (6x4 and 3x5)");
    gbt_fails_with(gb_linear(x234, v4, NULL) == NULL, GB_ERR_SHAPE, "linear: weight must be 2-D");
    gbt_fails_with(gb_linear(x234, w54, v4) == NULL, GB_ERR_SHAPE,
                   "linear: bias of shape [4] does not match weight of shape [5, 4] (expected [5])");
    gbt_fails_with(gb_linear(s, w54, NULL) == NULL, GB_ERR_SHAPE, "linear: input must be at least 1-D");
    gbt_fails_with(gb_linear(i34, w54, NULL) == NULL, GB_ERR_DTYPE, "linear: expected input of dtype float32");
    gb_tensor *all[] = {s, v3, v4, m23, m45, b1023, b1045, c2334, c542, i34, x234, w53, w54};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

/* Shapes only (meta mode): no data is touched and the result shape follows
 * torch.matmul's rules. */
START_TEST(test_matmul_meta_shapes) {
    gb__meta_push();
    gb_tensor *a = gb_empty(4, (int64_t[]){2, 1, 3, 4}, GB_DTYPE_F32), *b = gb_empty(3, (int64_t[]){5, 4, 2}, GB_DTYPE_F32);
    gb_tensor *y = gb_matmul(a, b);
    gb__meta_pop();
    gbt_ok(y);
    ck_assert_int_eq(gb_tensor_ndim(y), 4);
    int64_t want[4] = {2, 5, 3, 2};
    for (int i = 0; i < 4; i++) ck_assert_int_eq(gb_tensor_dim(y, i), want[i]);
    gb_tensor_free(y), gb_tensor_free(a), gb_tensor_free(b);
}
END_TEST

/* ---- sgemm layouts ------------------------------------------------------ */

START_TEST(test_blas_layout) {
    CBLAS_TRANSPOSE t;
    int ld;
    /* contiguous [3, 4]: N, ld 4 */
    ck_assert(gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 3, .cols = 4, .rs = 4, .cs = 1}, &t, &ld));
    ck_assert(t == CblasNoTrans && ld == 4);
    /* a row of a wider matrix: N, ld 10 */
    ck_assert(gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 3, .cols = 4, .rs = 10, .cs = 1}, &t, &ld));
    ck_assert(t == CblasNoTrans && ld == 10);
    /* the transpose of a contiguous [4, 3]: T, ld 3, no copy */
    gb_tensor *m = gb_zeros(2, (int64_t[]){4, 3}, GB_DTYPE_F32), *mt = gb_transpose(m, 0, 1);
    gb__ts_mat v = {.rows = gb_tensor_dim(mt, 0), .cols = gb_tensor_dim(mt, 1), .rs = gb_tensor_strides(mt)[0],
                 .cs = gb_tensor_strides(mt)[1]};
    ck_assert(gb__ts_mat_blas_layout(&v, &t, &ld));
    ck_assert(t == CblasTrans && ld == 3);
    gb_tensor_free(mt), gb_tensor_free(m);
    /* x[:, ::2] and a broadcast row: no unit stride, sgemm cannot read them */
    ck_assert(!gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 3, .cols = 4, .rs = 8, .cs = 2}, &t, &ld));
    ck_assert(!gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 3, .cols = 4, .rs = 0, .cs = 1}, &t, &ld));
    /* rows overlapping (ld < cols) would alias: not N */
    ck_assert(!gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 3, .cols = 4, .rs = 2, .cs = 1}, &t, &ld));
    /* size-1 dims: their strides do not matter */
    ck_assert(gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 1, .cols = 4, .rs = 0, .cs = 1}, &t, &ld));
    ck_assert(t == CblasNoTrans && ld == 4);
    ck_assert(gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 4, .cols = 1, .rs = 7, .cs = 0}, &t, &ld));
    ck_assert(t == CblasNoTrans && ld == 7);
    ck_assert(gb__ts_mat_blas_layout(&(gb__ts_mat){.rows = 4, .cols = 1, .rs = 1, .cs = 0}, &t, &ld));
}
END_TEST

/* ---- OpenBLAS loading and the kernel table ------------------------------ */

START_TEST(test_coretype_table) {
    const unsigned avx = GB__CPU(AVX), hsw = avx | GB__CPU(AVX2) | GB__CPU(FMA),
                   skx = hsw | GB__CPU(AVX512F) | GB__CPU(AVX512CD) | GB__CPU(AVX512BW) | GB__CPU(AVX512DQ) |
                         GB__CPU(AVX512VL);
    ck_assert_str_eq(gb__ts_blas_coretype_for(skx | GB__CPU(AVX512BF16)), "Cooperlake");
    ck_assert_str_eq(gb__ts_blas_coretype_for(skx), "SkylakeX");
    ck_assert_str_eq(gb__ts_blas_coretype_for(hsw), "Haswell");
    ck_assert_str_eq(gb__ts_blas_coretype_for(avx), "Sandybridge");
    ck_assert_ptr_null(gb__ts_blas_coretype_for(0));
    /* Never a kernel the CPU cannot run: one missing feature drops a row. */
    ck_assert_str_eq(gb__ts_blas_coretype_for(skx & ~GB__CPU(AVX512VL)), "Haswell");  /* Knights Landing style */
    ck_assert_str_eq(gb__ts_blas_coretype_for(hsw | GB__CPU(AVX512BF16)), "Haswell"); /* bf16 alone is not AVX-512 */
    ck_assert_str_eq(gb__ts_blas_coretype_for(avx | GB__CPU(AVX2)), "Sandybridge");   /* AVX2 without FMA */
    ck_assert_ptr_null(gb__ts_blas_coretype_for(GB__CPU(FMA) | GB__CPU(AVX2)));        /* no AVX: OS off */
    ck_assert_str_eq(gb__ts_blas_coretype_for(~0u), "Cooperlake");
}
END_TEST

START_TEST(test_kernel_matches_cpu) {
    const char *kernel = gb_blas_kernel();
    ck_assert_msg(kernel != NULL, "OpenBLAS did not load: %s", gb_last_error());
    const gb__ts_blas *b = gb__ts_blas_get();
    gbt_ok(b);
    const char *env = getenv("OPENBLAS_CORETYPE");
    const char *want = gb__ts_blas_coretype_for(gb__ts_cpu_features());
    if (b->coretype_set[0]) {
        /* glassbox chose: the table's row for this CPU, now running, and the
         * environment is left as the user had it (unset or empty). */
        ck_assert_str_eq(b->coretype_set, want);
        ck_assert_msg(!strcasecmp(kernel, want), "OpenBLAS runs %s, glassbox asked for %s", kernel, want);
        ck_assert_msg(!env || !*env, "OPENBLAS_CORETYPE left set to %s", env);
    } else if (env && *env) {
        ck_assert_msg(!strcasecmp(kernel, env), "OpenBLAS runs %s, the user asked for %s", kernel, env);
    } else {
        ck_assert_ptr_null(want); /* a CPU without AVX: OpenBLAS chose */
    }
    ck_assert_ptr_nonnull(b->get_config());
}
END_TEST

START_TEST(test_blas_open_errors) {
    gb__ts_blas b;
    gbt_fails_with(gb__ts_blas_open((const char *[]){"libglassbox-no-such-blas.so.0", NULL}, &b) != GB_OK,
                   GB_ERR_UNSUPPORTED, "blas: cannot load OpenBLAS (tried libglassbox-no-such-blas.so.0)");
    ck_assert_ptr_null(b.handle);
    gbt_fails_with(gb__ts_blas_open((const char *[]){"libm.so.6", NULL}, &b) != GB_OK, GB_ERR_UNSUPPORTED,
                   "blas: libm.so.6 has no symbol cblas_sgemm");
    ck_assert_ptr_null(b.handle);
    /* The fallback name is tried after the first fails. */
    gbt_ok_status(gb__ts_blas_open((const char *[]){"libglassbox-no-such-blas.so.0", "libopenblas.so.0", NULL}, &b));
    ck_assert_str_eq(b.path, "libopenblas.so.0");
    ck_assert_ptr_nonnull(b.sgemm);
    gb__ts_blas_close(&b);
}
END_TEST

Suite *gb_suite_matmul(void) {
    Suite *s = suite_create("matmul");
    TCase *tc = tcase_create("matmul");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, oracle_setup, oracle_teardown);
    tcase_add_loop_test(tc, test_oracle_case, 0, NCASES);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_gemv_threads_identical);
    tcase_add_test(tc, test_wgemm_reference);
    tcase_add_test(tc, test_wgemm_threads_identical);
    tcase_add_test(tc, test_gradcheck);
    tcase_add_test(tc, test_matmul_errors);
    tcase_add_test(tc, test_matmul_meta_shapes);
    tcase_add_test(tc, test_blas_layout);
    tcase_add_test(tc, test_coretype_table);
    tcase_add_test(tc, test_kernel_matches_cpu);
    tcase_add_test(tc, test_blas_open_errors);
    suite_add_tcase(s, tc);
    return s;
}
