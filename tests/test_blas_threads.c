/* Threads and buffers of the fast paths: OpenBLAS kept on one thread with
 * products split over glassbox's OpenMP threads (gb__ts_gemm), and the backward
 * engine's gradient buffers (large ones mapped on their own, a first
 * gradient adopted as .grad rather than copied).
 *
 * Expected values of gb__ts_gemm come from a double-precision triple loop over
 * the same operands (the definition of the product). Tolerance: each f32
 * result sums k products in some order, so its error is at most about
 * k * 2^-24 * sum|a_i b_i|; the check allows 1e-5 * sum|a_i b_i| (k <= 1000
 * here: k * 2^-24 < 6e-5 is the worst case, random rounding is far below),
 * while a wrong block, offset or transpose gives errors of order sum|a_i b_i|. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

#include "gbtest.h"
#include "tensor/blas.h"
#include "tensor/tensor_impl.h"

/* ---- gb__ts_gemm against a reference ---------------------------------------- */

/* One product to check: C[b] (+)= A[b] @ B[b] over a batch of nb. */
typedef struct gemm_case {
    const char *name;
    int64_t m, n, k, nb;
    bool a_t, b_t; /* operand stored transposed (sgemm "T") */
    bool c_t;      /* C stored column-major (gb__ts_gemm transposes the product) */
    bool c_shared; /* one C for every batch: the batch is a reduction */
    float beta;
} gemm_case;

static const gemm_case cases[] = {
    /* m*n*k over the batch is above the parallel threshold in all but "small" */
    {"columns", 24, 1000, 40, 1, false, false, false, false, 0.0f},
    {"rows", 1000, 24, 40, 1, true, true, false, false, 0.0f},
    {"columns_t", 20, 700, 30, 1, true, false, false, false, 1.0f},
    {"rows_ragged", 333, 17, 60, 1, false, true, false, false, 1.0f},
    {"two_blocks", 17, 20, 1000, 1, false, false, false, false, 0.0f}, /* n = 16 + 4 */
    {"c_colmajor", 300, 40, 50, 1, false, false, true, false, 0.0f},
    {"batch3", 40, 64, 50, 3, false, true, false, false, 0.0f},
    {"batch8", 40, 64, 50, 8, true, false, false, false, 1.0f},
    {"reduce_beta1", 64, 48, 40, 4, false, false, false, true, 1.0f},
    {"reduce_beta0", 64, 48, 40, 4, true, false, false, true, 0.0f},
    {"reduce_colmajor", 48, 64, 40, 5, false, true, true, true, 0.0f},
    {"small", 4, 5, 6, 2, false, false, false, false, 0.0f},
};
#define NCASES (int)(sizeof cases / sizeof cases[0])

static float uniform(uint64_t *s) { /* in [-1, 1) */
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / (double)(1ULL << 23) - 1.0);
}

/* A [rows, cols] operand per batch, stored row-major or (t) column-major. */
static gb__ts_mat operand(float *p, int64_t rows, int64_t cols, bool t, int64_t bstride) {
    gb__ts_mat m = {.p = p, .rows = rows, .cols = cols, .rs = t ? 1 : cols, .cs = t ? rows : 1};
    m.bstride[0] = bstride;
    return m;
}

static double at(const gb__ts_mat *m, int64_t b, int64_t i, int64_t j) {
    return m->p[b * m->bstride[0] + i * m->rs + j * m->cs];
}

/* Runs case g at 1, 2 and 3 threads against one reference. */
static void check_case(const gemm_case *g) {
    int64_t m = g->m, n = g->n, k = g->k, nb = g->nb, ncb = g->c_shared ? 1 : nb, nc = ncb * m * n;
    float *a = malloc(sizeof(float) * (size_t)(nb * m * k)), *b = malloc(sizeof(float) * (size_t)(nb * k * n));
    float *c = malloc(sizeof(float) * (size_t)nc), *c0 = malloc(sizeof(float) * (size_t)nc);
    double *want = malloc(sizeof(double) * (size_t)nc), *mag = malloc(sizeof(double) * (size_t)nc);
    ck_assert(a && b && c && c0 && want && mag);
    uint64_t s = 42;
    for (int64_t i = 0; i < nb * m * k; i++) a[i] = uniform(&s);
    for (int64_t i = 0; i < nb * k * n; i++) b[i] = uniform(&s);
    /* beta = 0 must overwrite whatever C held, NaN included */
    for (int64_t i = 0; i < nc; i++) c0[i] = g->beta == 0.0f ? NAN : uniform(&s);
    gb__ts_mat ma = operand(a, m, k, g->a_t, m * k), mb = operand(b, k, n, g->b_t, k * n);
    gb__ts_mat mc = operand(c, m, n, g->c_t, g->c_shared ? 0 : m * n), mc0 = mc;
    mc0.p = c0;
    for (int64_t cb = 0, e = 0; cb < ncb; cb++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++, e++) {
                double w = g->beta == 0.0f ? 0.0 : g->beta * at(&mc0, cb, i, j), mg = fabs(w);
                for (int64_t bb = g->c_shared ? 0 : cb; bb < (g->c_shared ? nb : cb + 1); bb++)
                    for (int64_t l = 0; l < k; l++) {
                        double p = at(&ma, bb, i, l) * at(&mb, bb, l, j);
                        w += p, mg += fabs(p);
                    }
                want[e] = w, mag[e] = mg;
            }

    for (int threads = 1; threads <= 3; threads++) {
        memcpy(c, c0, sizeof(float) * (size_t)nc);
        gb_set_num_threads(threads);
        gbt_ok_status(gb__ts_gemm("test", &mc, &ma, &mb, g->beta, 1, (int64_t[]){nb}));
        ck_assert_int_eq(omp_get_max_threads(), threads); /* the caller's OpenMP count is left alone */
        /* the first bad element, if any (one ck_assert per element is slow) */
        int64_t bad = -1, e = 0;
        for (int64_t cb = 0; cb < ncb; cb++)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++, e++)
                    if (bad < 0 && !(fabs(at(&mc, cb, i, j) - want[e]) <= 1e-5 * mag[e] + 1e-6)) bad = e;
        ck_assert_msg(bad < 0, "%s at %d threads: C[%lld][%lld][%lld] = %.7g, expected %.7g", g->name, threads,
                      (long long)(bad / (m * n)), (long long)(bad / n % m), (long long)(bad % n),
                      bad < 0 ? 0.0 : at(&mc, bad / (m * n), bad / n % m, bad % n), bad < 0 ? 0.0 : want[bad]);
    }
    free(a), free(b), free(c), free(c0), free(want), free(mag);
}

START_TEST(test_gemm_split) {
    int before = gb_get_num_threads();
    check_case(&cases[_i]);
    gb_set_num_threads(before);
}
END_TEST

/* ---- OpenBLAS's own threads ---------------------------------------------- */

/* Loading leaves the environment and this thread's OpenMP count as they
 * were; OpenBLAS stays on one thread whatever glassbox's count. (When an
 * earlier test in this process loaded OpenBLAS, the before/after checks hold
 * trivially; each test runs in a fresh fork under plain `make check`.) */
START_TEST(test_openblas_one_thread) {
    const char *nt = getenv("OPENBLAS_NUM_THREADS"), *ct = getenv("OPENBLAS_CORETYPE");
    char *nt0 = nt ? strdup(nt) : NULL, *ct0 = ct ? strdup(ct) : NULL;
    int icv = omp_get_max_threads(), before = gb_get_num_threads();
    const gb__ts_blas *b = gb__ts_blas_get();
    gbt_ok(b);
    nt = getenv("OPENBLAS_NUM_THREADS"), ct = getenv("OPENBLAS_CORETYPE");
    ck_assert_msg(nt0 ? nt && !strcmp(nt, nt0) : !nt, "OPENBLAS_NUM_THREADS changed from %s to %s",
                  nt0 ? nt0 : "(unset)", nt ? nt : "(unset)");
    ck_assert_msg(ct0 ? ct && !strcmp(ct, ct0) : !ct, "OPENBLAS_CORETYPE changed");
    ck_assert_int_eq(omp_get_max_threads(), icv);
    ck_assert_int_eq(b->get_num_threads(), 1);

    /* x @ x is split over the threads; u @ v (one 16x16 block, k large) is
     * one sgemm on the calling thread, big enough for OpenBLAS to thread. */
    gb_rng r = gb_rng_seed(7);
    gb_tensor *x = gb_randn(&r, 2, (int64_t[]){256, 256}, 0.0f, 1.0f);
    gb_tensor *u = gb_randn(&r, 2, (int64_t[]){16, 4096}, 0.0f, 1.0f), *v = gb_randn(&r, 2, (int64_t[]){4096, 16}, 0.0f, 1.0f);
    gbt_ok(x), gbt_ok(u), gbt_ok(v);
    for (int threads = 1; threads <= 3; threads++) {
        gb_set_num_threads(threads);
        ck_assert_int_eq(gb_get_num_threads(), threads);
        ck_assert_int_eq(omp_get_max_threads(), threads);
        gb_tensor *y = gb_matmul(x, x), *z = gb_matmul(u, v);
        gbt_ok(y), gbt_ok(z);
        gb_tensor_free(y), gb_tensor_free(z);
        ck_assert_int_eq(b->get_num_threads(), 1);
        ck_assert_int_eq(omp_get_max_threads(), threads);
    }
    gb_tensor_free(x), gb_tensor_free(u), gb_tensor_free(v);
    gb_set_num_threads(before);
    ck_assert_int_eq(b->get_config() && strstr(b->get_config(), "USE_OPENMP") != NULL, b->openmp);
    free(nt0), free(ct0);
}
END_TEST

/* Debian's OpenMP build, when installed (libopenblas0-openmp), is recognised
 * as one; glassbox works with either build (`make check` with
 * LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp runs everything
 * on it). */
START_TEST(test_openmp_build_detected) {
    static const char path[] = "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0";
    if (access(path, R_OK) != 0) {
        gbt_skip("test_openmp_build_detected", "%s is not installed", path);
        return;
    }
    gb__ts_blas b;
    gbt_ok_status(gb__ts_blas_open((const char *[]){path, NULL}, &b));
    ck_assert(b.openmp);
    gb__ts_blas_close(&b);
    gbt_ok_status(gb__ts_blas_open((const char *[]){"libglassbox-no-such-blas.so.0", path, NULL}, &b));
    ck_assert_str_eq(b.path, path);
    gb__ts_blas_close(&b);
}
END_TEST

/* ---- gradient buffers ---------------------------------------------------- */

static gb_tensor *sum_of_squares(gb_tensor *w) {
    int dims[] = {0, 1};
    gb_tensor *sq = gb_mul(w, w), *s = sq ? gb_sum_dims(sq, gb_tensor_ndim(w), dims, false) : NULL;
    gb_tensor_free(sq);
    return s;
}

/* A 2 MB weight gets its gradient in a buffer of its own mapping: right
 * values, accumulation over two backwards, and zero_grad frees it. For
 * loss = sum(x @ w^T), dloss/dw[i][j] = x[j], exact in f32. */
START_TEST(test_large_grad) {
    int64_t out = 512, in = 1024; /* 2 MB of f32 */
    gb_rng r = gb_rng_seed(3);
    gb_tensor *w = gb_rand(&r, 2, (int64_t[]){out, in}, -1.0f, 1.0f), *x = gb_rand(&r, 2, (int64_t[]){1, in}, -1.0f, 1.0f);
    gbt_ok(w), gbt_ok(x);
    gbt_ok_status(gb_requires_grad_(w, true));
    const float *xv = gb_tensor_f32(x);
    for (int pass = 1; pass <= 2; pass++) {
        gb_tensor *y = gb_linear(x, w, NULL), *loss = y ? gb_sum_dims(y, 2, (int[]){0, 1}, false) : NULL;
        gbt_ok(loss);
        gbt_ok_status(gb_backward(loss, NULL, false));
        gb_tensor_free(y), gb_tensor_free(loss);
        const float *g = gb_tensor_f32(gb_tensor_grad(w));
        gbt_ok(g);
        int64_t bad = 0;
        while (bad < out * in && g[bad] == (float)pass * xv[bad % in]) bad++;
        ck_assert_msg(bad == out * in, "grad[%lld] = %g after %d backwards, expected %g", (long long)bad,
                      bad < out * in ? g[bad] : 0.0f, pass, (float)pass * xv[bad % in]);
    }
    gb_zero_grad(w);
    ck_assert_ptr_null(gb_tensor_grad(w));
    gb_tensor_free(w), gb_tensor_free(x);
}
END_TEST

static gb_tensor *kept; /* the tensor the hook below hands back and keeps */

static gb_status replace_and_keep(gb_tensor *t, gb_tensor **grad, void *ctx) {
    (void)t, (void)ctx;
    kept = gb_mul_scalar(*grad, 3.0f);
    if (!kept) return gb_last_status();
    gb_tensor_free(*grad);
    *grad = gb_tensor_ref(kept);
    return GB_OK;
}

/* A first gradient becomes .grad without a copy only when nothing else holds
 * it: a hook's tensor that the hook kept is copied, so a later backward's
 * accumulation into .grad leaves the hook's tensor alone. */
START_TEST(test_grad_adopted_only_when_unshared) {
    gb_tensor *w = gb_from_data((float[]){1, 2, 3}, 1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_ok(w);
    gbt_ok_status(gb_requires_grad_(w, true));
    ck_assert_int_gt(gb_grad_hook_add(w, replace_and_keep, NULL), 0);
    gb_tensor *loss = sum_of_squares(w);
    gbt_ok_status(gb_backward(loss, NULL, false));
    gb_tensor_free(loss);
    gb_tensor *g = gb_tensor_grad(w);
    ck_assert_ptr_nonnull(kept);
    ck_assert(!gb_tensor_shares_storage(g, kept));
    const float *gv = gb_tensor_f32(g), *kv = gb_tensor_f32(kept);
    for (int i = 0; i < 3; i++) {
        ck_assert_float_eq(gv[i], 6.0f * (float)(i + 1)); /* d/dw sum w^2, times 3 by the hook */
        ck_assert_float_eq(kv[i], gv[i]);
    }
    gb_tensor_free(kept);
    kept = NULL;

    loss = sum_of_squares(w); /* the hook keeps a new tensor; .grad adds it up */
    gbt_ok_status(gb_backward(loss, NULL, false));
    gb_tensor_free(loss);
    gv = gb_tensor_f32(gb_tensor_grad(w)), kv = gb_tensor_f32(kept);
    for (int i = 0; i < 3; i++) {
        ck_assert_float_eq(gv[i], 12.0f * (float)(i + 1));
        ck_assert_float_eq(kv[i], 6.0f * (float)(i + 1));
    }
    gb_tensor_free(kept);
    kept = NULL;
    gb_tensor_free(w);
}
END_TEST

static gb_tensor *seen;          /* the gradient the hook below was given (borrowed) */
static float user_buf[3];        /* memory a hook lends without a release */

static gb_status note_grad(gb_tensor *t, gb_tensor **grad, void *ctx) {
    (void)t, (void)ctx;
    seen = *grad;
    return GB_OK;
}

static gb_status lend_buffer(gb_tensor *t, gb_tensor **grad, void *ctx) {
    (void)t, (void)ctx;
    memcpy(user_buf, gb_tensor_f32(*grad), sizeof user_buf);
    gb_tensor *lent = gb_from_blob(user_buf, 1, (int64_t[]){3}, GB_DTYPE_F32, NULL, NULL);
    if (!lent) return gb_last_status();
    gb_tensor_free(*grad);
    *grad = lent;
    return GB_OK;
}

/* The engine's own accumulator becomes .grad as it is; a hook's gradient in
 * memory the caller lent (gb_from_blob without a release) is copied, since
 * the caller may free that memory while .grad lives on. */
START_TEST(test_grad_adopted_when_owned) {
    gb_tensor *w = gb_from_data((float[]){1, 2, 3}, 1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_ok(w);
    gbt_ok_status(gb_requires_grad_(w, true));
    int id = gb_grad_hook_add(w, note_grad, NULL);
    ck_assert_int_gt(id, 0);
    gb_tensor *loss = sum_of_squares(w);
    gbt_ok_status(gb_backward(loss, NULL, false));
    gb_tensor_free(loss);
    ck_assert_ptr_eq(gb_tensor_grad(w), seen);
    gb_zero_grad(w);
    gbt_ok_status(gb_grad_hook_remove(w, id));

    ck_assert_int_gt(gb_grad_hook_add(w, lend_buffer, NULL), 0);
    loss = sum_of_squares(w);
    gbt_ok_status(gb_backward(loss, NULL, false));
    gb_tensor_free(loss);
    const float *g = gb_tensor_f32(gb_tensor_grad(w));
    ck_assert_ptr_ne(g, user_buf);
    for (int i = 0; i < 3; i++) ck_assert_float_eq(g[i], 2.0f * (float)(i + 1));
    gb_tensor_free(w);
}
END_TEST

Suite *gb_suite_blas_threads(void) {
    Suite *s = suite_create("blas_threads");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_gemm_split, 0, NCASES);
    tcase_add_test(tc, test_openblas_one_thread);
    tcase_add_test(tc, test_openmp_build_detected);
    suite_add_tcase(s, tc);
    tc = tcase_create("grad_buffers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_large_grad);
    tcase_add_test(tc, test_grad_adopted_only_when_unshared);
    tcase_add_test(tc, test_grad_adopted_when_owned);
    suite_add_tcase(s, tc);
    return s;
}
