/* Reductions against PyTorch (tests/oracle/reduce.py and reduce_big.py):
 * every dim (negative too) with and without keepdim, several dims, all dims,
 * strided inputs, ties, NaN, 0-dim and empty inputs, gradients (torch's
 * through gb_backward, and central differences), which saved values a
 * backward may read, and every error path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_elementwise.h"

typedef gb_tensor *(*reduce_fn)(gb_tensor *, int dim, bool keepdim);
static gb_tensor *r_var(gb_tensor *a, int dim, bool keepdim) { return gb_var(a, dim, 1, keepdim); }

/* name (the oracle's), function, oracle input (xi holds small integers: ties),
 * whether it has a gradient, what its backward reads */
static const struct {
    const char *name;
    reduce_fn f;
    const char *input;
    bool grad;
    int saves;
} REDUCE[] = {
    {"sum", gb_sum, "x", true, 0},           {"mean", gb_mean, "x", true, 0},
    {"var", r_var, "x", true, SAVES_A},      {"max", gb_max, "xi", true, SAVES_A},
    {"min", gb_min, "xi", true, SAVES_A},    {"argmax", gb_argmax, "xi", false, 0},
    {"argmin", gb_argmin, "xi", false, 0},
};
#define NREDUCE ((int)(sizeof REDUCE / sizeof REDUCE[0]))

static const int DIMS[] = {0, 1, 2, -1, -2};
#define NDIMS 5

static const char *dname(int d, char *buf) {
    snprintf(buf, 8, d < 0 ? "m%d" : "%d", d < 0 ? -d : d);
    return buf;
}

START_TEST(test_reduce_dim) {
    gbt_oracle *o = gbt_oracle_load("reduce");
    const char *n = REDUCE[_i].name;
    gb_tensor *x = gbt_get(o, REDUCE[_i].input);
    for (int di = 0; di < NDIMS; di++) {
        for (int keep = 0; keep < 2; keep++) {
            char dn[8], key[64];
            snprintf(key, sizeof key, "%s.d%s.k%d", n, dname(DIMS[di], dn), keep);
            gb_tensor *want = gbt_getf(o, "%s.y", key);
            gb_tensor *r = REDUCE[_i].grad ? gbt_getf(o, "%s.r", key) : NULL;
            gb_tensor *dwant = REDUCE[_i].grad ? gbt_getf(o, "%s.dx", key) : NULL;
            for (int k = 0; k < NLAYOUTS; k++) {
                char what[128];
                snprintf(what, sizeof what, "%s on a %s input", key, LAYOUT_NAME[k]);
                gb_tensor *base = layout_base(x, k);
                if (REDUCE[_i].grad) gb_requires_grad_(base, true);
                gb_tensor *v = layout_view(base, k);
                gb_tensor *y = REDUCE[_i].f(v, DIMS[di], keep);
                gbt_assert_close(y, want, RTOL, ATOL, what);
                ck_assert(gb_tensor_dtype(y) == (REDUCE[_i].grad ? GB_DTYPE_F32 : GB_DTYPE_I64));
                ck_assert(gb_tensor_requires_grad(y) == REDUCE[_i].grad);
                if (REDUCE[_i].grad) {
                    gbt_ok_status(gb_backward(y, r, false));
                    assert_grad(base, k, dwant, what);
                }
                gb_tensor_free(y), gb_tensor_free(v), gb_tensor_free(base);
            }
            gb_tensor_free(dwant), gb_tensor_free(r), gb_tensor_free(want);
        }
    }
    gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* Overwriting the input between forward and backward: harmless for sum and
 * mean (they read nothing), an error for the others. */
START_TEST(test_reduce_saves) {
    if (!REDUCE[_i].grad) return;
    gbt_oracle *o = gbt_oracle_load("reduce");
    const char *n = REDUCE[_i].name;
    gb_tensor *x0 = gbt_get(o, REDUCE[_i].input);
    gb_tensor *r = gbt_getf(o, "%s.d1.k0.r", n), *dwant = gbt_getf(o, "%s.d1.k0.dx", n);
    gb_tensor *x = gb_clone(x0);
    gb_requires_grad_(x, true);
    gb_tensor *y = REDUCE[_i].f(x, 1, false);
    overwrite(x);
    if (REDUCE[_i].saves & SAVES_A) {
        gbt_fails_with(gb_backward(y, r, false) != GB_OK, GB_ERR_AUTOGRAD, "modified by an inplace operation");
    } else {
        overwrite(y);
        gbt_ok_status(gb_backward(y, r, false));
        gbt_assert_close(gb_tensor_grad(x), dwant, RTOL, ATOL, n);
    }
    gb_tensor_free(y), gb_tensor_free(x), gb_tensor_free(dwant), gb_tensor_free(r), gb_tensor_free(x0);
    gbt_oracle_free(o);
}
END_TEST

/* Corrections 0 and 2, and 5 = N, where the variance divides by 0 (inf) and
 * torch's backward divides by N - correction unclamped. */
START_TEST(test_var_correction) {
    gbt_oracle *o = gbt_oracle_load("reduce");
    gb_tensor *x = gbt_get(o, "x");
    static const int corrections[] = {0, 2, 5};
    for (int c = 0; c < 3; c++) {
        gb_tensor *want = gbt_getf(o, "var.c%d.y", corrections[c]);
        gb_tensor *r = gbt_getf(o, "var.c%d.r", corrections[c]);
        gb_tensor *dwant = gbt_getf(o, "var.c%d.dx", corrections[c]);
        gb_tensor *xl = gb_clone(x);
        gb_requires_grad_(xl, true);
        gb_tensor *y = gb_var(xl, -1, corrections[c], false);
        gbt_assert_close(y, want, RTOL, ATOL, "var correction");
        gbt_ok_status(gb_backward(y, r, false));
        gbt_assert_close(gb_tensor_grad(xl), dwant, RTOL, ATOL, "d var / dx with a correction");
        gb_tensor_free(y), gb_tensor_free(xl), gb_tensor_free(dwant), gb_tensor_free(r), gb_tensor_free(want);
    }
    gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* sum_dims / mean_dims: {0, 2}, {-1, 0}, {1}, {} (all), keepdim or not. */
static const struct {
    const char *name;
    int n;
    int dims[2];
} DIMLISTS[] = {{"0_2", 2, {0, 2}}, {"m1_0", 2, {-1, 0}}, {"1", 1, {1}}, {"all", 0, {0, 0}}};

START_TEST(test_reduce_dims) {
    gbt_oracle *o = gbt_oracle_load("reduce");
    gb_tensor *x = gbt_get(o, "x");
    for (int op = 0; op < 2; op++) {
        const char *n = op ? "mean_dims" : "sum_dims";
        for (int l = 0; l < 4; l++) {
            for (int keep = 0; keep < 2; keep++) {
                char key[64];
                snprintf(key, sizeof key, "%s.%s.k%d", n, DIMLISTS[l].name, keep);
                gb_tensor *want = gbt_getf(o, "%s.y", key), *r = gbt_getf(o, "%s.r", key);
                gb_tensor *dwant = gbt_getf(o, "%s.dx", key);
                for (int k = 0; k < NLAYOUTS; k++) {
                    gb_tensor *base = layout_base(x, k);
                    gb_requires_grad_(base, true);
                    gb_tensor *v = layout_view(base, k);
                    gb_tensor *y = op ? gb_mean_dims(v, DIMLISTS[l].n, DIMLISTS[l].dims, keep)
                                      : gb_sum_dims(v, DIMLISTS[l].n, DIMLISTS[l].dims, keep);
                    char what[128];
                    snprintf(what, sizeof what, "%s on a %s input", key, LAYOUT_NAME[k]);
                    gbt_assert_close(y, want, RTOL, ATOL, what);
                    gbt_ok_status(gb_backward(y, r, false));
                    assert_grad(base, k, dwant, what);
                    gb_tensor_free(y), gb_tensor_free(v), gb_tensor_free(base);
                }
                gb_tensor_free(dwant), gb_tensor_free(r), gb_tensor_free(want);
            }
        }
    }
    gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* sum_all, mean_all, max_all (0-dim results); max_all's ties share the
 * gradient evenly, as torch's max() does. */
START_TEST(test_reduce_all) {
    gbt_oracle *o = gbt_oracle_load("reduce");
    static const struct {
        const char *name;
        gb_tensor *(*f)(gb_tensor *);
        const char *input;
    } cases[] = {{"sum_all", gb_sum_all, "x"}, {"mean_all", gb_mean_all, "x"}, {"max_all", gb_max_all, "xi"}};
    for (int c = 0; c < 3; c++) {
        gb_tensor *x = gbt_get(o, cases[c].input);
        gb_tensor *want = gbt_getf(o, "%s.y", cases[c].name), *r = gbt_getf(o, "%s.r", cases[c].name);
        gb_tensor *dwant = gbt_getf(o, "%s.dx", cases[c].name);
        for (int k = 0; k < NLAYOUTS; k++) {
            gb_tensor *base = layout_base(x, k);
            gb_requires_grad_(base, true);
            gb_tensor *v = layout_view(base, k);
            gb_tensor *y = cases[c].f(v);
            ck_assert_int_eq(gb_tensor_ndim(y), 0);
            gbt_assert_close(y, want, RTOL, ATOL, cases[c].name);
            gbt_ok_status(gb_backward(y, r, false));
            assert_grad(base, k, dwant, cases[c].name);
            gb_tensor_free(y), gb_tensor_free(v), gb_tensor_free(base);
        }
        gb_tensor_free(dwant), gb_tensor_free(r), gb_tensor_free(want), gb_tensor_free(x);
    }
    gbt_oracle_free(o);
}
END_TEST

static gb_tensor *z_sum(gb_tensor *a) { return gb_sum(a, 0, false); }
static gb_tensor *z_mean(gb_tensor *a) { return gb_mean(a, -1, true); }
static gb_tensor *z_max(gb_tensor *a) { return gb_max(a, 0, false); }
static gb_tensor *z_min(gb_tensor *a) { return gb_min(a, -1, false); }
static gb_tensor *z_argmax(gb_tensor *a) { return gb_argmax(a, 0, false); }
static gb_tensor *z_var0(gb_tensor *a) { return gb_var(a, 0, 0, false); }
static gb_tensor *z_var1(gb_tensor *a) { return gb_var(a, 0, 1, false); }

START_TEST(test_zero_dim) {
    gbt_oracle *o = gbt_oracle_load("reduce");
    static const struct {
        const char *name;
        gb_tensor *(*f)(gb_tensor *);
        bool grad;
    } cases[] = {{"sum", z_sum, true},         {"mean", z_mean, true},       {"max", z_max, true},
                 {"min", z_min, true},         {"argmax", z_argmax, false},  {"var0", z_var0, true},
                 {"var1", z_var1, false},      {"sum_all", gb_sum_all, true}, {"max_all", gb_max_all, true}};
    gb_tensor *x0 = gbt_get(o, "x0");
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        gb_tensor *x = gb_clone(x0);
        if (cases[c].grad) gb_requires_grad_(x, true);
        gb_tensor *y = cases[c].f(x);
        gb_tensor *want = gbt_getf(o, "zero.%s.y", cases[c].name);
        gbt_assert_close(y, want, RTOL, ATOL, cases[c].name);
        if (cases[c].grad) {
            gb_tensor *r = gbt_getf(o, "zero.%s.r", cases[c].name), *dwant = gbt_getf(o, "zero.%s.dx", cases[c].name);
            gbt_ok_status(gb_backward(y, r, false));
            gbt_assert_close(gb_tensor_grad(x), dwant, RTOL, ATOL, cases[c].name);
            gb_tensor_free(dwant), gb_tensor_free(r);
        }
        gb_tensor_free(want), gb_tensor_free(y), gb_tensor_free(x);
    }
    gb_tensor_free(x0);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_empty) {
    gbt_oracle *o = gbt_oracle_load("reduce");
    gb_tensor *e = gb_zeros(2, (int64_t[]){2, 0}, GB_DTYPE_F32);
    struct {
        const char *key;
        gb_tensor *got;
    } cases[] = {{"empty.sum1", gb_sum(e, 1, false)},  {"empty.sum0", gb_sum(e, 0, false)},
                 {"empty.mean1", gb_mean(e, 1, false)}, {"empty.var1", gb_var(e, 1, 1, false)},
                 {"empty.sum_all", gb_sum_all(e)},      {"empty.mean_all", gb_mean_all(e)},
                 {"empty.max0", gb_max(e, 0, false)}};
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        gb_tensor *want = gbt_get(o, cases[c].key);
        gbt_assert_close(cases[c].got, want, RTOL, ATOL, cases[c].key);
        gb_tensor_free(want), gb_tensor_free(cases[c].got);
    }
    gb_tensor_free(e);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_nan) {
    gbt_oracle *o = gbt_oracle_load("reduce");
    gb_tensor *x = gbt_get(o, "xn");
    struct {
        const char *key;
        gb_tensor *got;
    } cases[] = {{"nan.max", gb_max(x, 1, false)},       {"nan.min", gb_min(x, 1, false)},
                 {"nan.argmax", gb_argmax(x, 1, false)}, {"nan.argmin", gb_argmin(x, 1, false)},
                 {"nan.max_all", gb_max_all(x)}};
    for (int c = 0; c < 5; c++) {
        gb_tensor *want = gbt_get(o, cases[c].key);
        gbt_assert_close(cases[c].got, want, 0, 0, cases[c].key);
        gb_tensor_free(want), gb_tensor_free(cases[c].got);
    }
    gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* Central differences: a [3, 4, 5] transposed view of a [5, 4, 3] leaf
 * holding 60 distinct values at least 0.1 apart, so that max and min are
 * differentiable and no perturbation changes which element wins. */
typedef struct {
    int op; /* index into REDUCE, or -1: sum_dims {0, 2}, -2: mean_dims {-1, 0}, -3: max_all */
    int dim;
    bool keepdim;
} gc_case;

static gb_tensor *gc_reduce(gb_tensor *const *in, void *ctx) {
    const gc_case *c = ctx;
    gb_tensor *v = gb_transpose(in[0], 0, 2), *y;
    if (c->op >= 0) y = REDUCE[c->op].f(v, c->dim, c->keepdim);
    else if (c->op == -1) y = gb_sum_dims(v, 2, (int[]){0, 2}, c->keepdim);
    else if (c->op == -2) y = gb_mean_dims(v, 2, (int[]){-1, 0}, c->keepdim);
    else y = gb_max_all(v);
    gb_tensor_free(v);
    return y;
}

START_TEST(test_reduce_gradcheck) {
    gb_tensor *x = leaf_randn(3, (int64_t[]){5, 4, 3}, 500);
    float *p = gb_tensor_f32(x);
    for (int i = 0; i < 60; i++) p[i] = (float)(i * 37 % 60) * 0.1f - 3.0f; /* 37 is prime to 60 */
    for (int op = -3; op < NREDUCE; op++) {
        if (op >= 0 && !REDUCE[op].grad) continue;
        for (int keep = 0; keep < 2; keep++) {
            gc_case c = {op, keep ? -1 : 1, keep};
            char what[64];
            snprintf(what, sizeof what, "%s keepdim %d", op >= 0 ? REDUCE[op].name : "dims/all", keep);
            gbt_gradcheck(gc_reduce, 1, &x, &c, 1e-2, 1e-2, 1e-3, what);
        }
    }
    gb_tensor_free(x);
}
END_TEST

/* Inputs over GB__PAR_MIN_WORK elements: the threaded loops. */
START_TEST(test_large_inputs) {
    gbt_oracle *o = gbt_oracle_load("reduce_big");
    gb_tensor *x = gbt_get(o, "x");
    ck_assert_int_gt(gb_tensor_numel(x), 32768);
    static const struct {
        const char *name;
        int op; /* index into REDUCE, or -1: mean_all, -2: max_all */
        int dim;
    } cases[] = {{"sum0", 0, 0}, {"sum1", 0, 1}, {"mean_all", -1, 0}, {"var0", 2, 0},
                 {"max1", 3, 1}, {"max_all", -2, 0}, {"argmin0", 6, 0}};
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        bool grad = cases[c].op < 0 || REDUCE[cases[c].op].grad;
        gb_tensor *want = gbt_getf(o, "%s.y", cases[c].name);
        gb_tensor *r = grad ? gbt_getf(o, "%s.r", cases[c].name) : NULL;
        gb_tensor *dwant = grad ? gbt_getf(o, "%s.dx", cases[c].name) : NULL;
        for (int k = 0; k < LAYOUT_SLICED; k++) {
            gb_tensor *base = layout_base(x, k);
            if (grad) gb_requires_grad_(base, true);
            gb_tensor *v = layout_view(base, k);
            gb_tensor *y = cases[c].op == -1   ? gb_mean_all(v)
                           : cases[c].op == -2 ? gb_max_all(v)
                                               : REDUCE[cases[c].op].f(v, cases[c].dim, false);
            /* long sums: torch adds in another order */
            gbt_assert_close(y, want, 1e-5, 1e-5, cases[c].name);
            if (grad) {
                gbt_ok_status(gb_backward(y, r, false));
                assert_grad(base, k, dwant, cases[c].name);
            }
            gb_tensor_free(y), gb_tensor_free(v), gb_tensor_free(base);
        }
        gb_tensor_free(dwant), gb_tensor_free(r), gb_tensor_free(want);
    }
    gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* Each output element is summed by one thread in a fixed order: results are
 * bitwise the same with 1 and 2 threads (what PyTorch computes is tested
 * above; this checks determinism only). */
static gb_tensor *reduce_twice(gb_tensor *x, int threads, int which) {
    gb_set_num_threads(threads);
    switch (which) {
    case 0: return gb_sum(x, 0, false);
    case 1: return gb_sum(x, 1, true);
    case 2: return gb_var(x, 0, 1, false);
    case 3: return gb_mean_all(x);
    default: return gb_max(x, 1, false);
    }
}

START_TEST(test_thread_count_independent) {
    gbt_oracle *o = gbt_oracle_load("reduce_big");
    gb_tensor *x = gbt_get(o, "x");
    int saved = gb_get_num_threads();
    for (int which = 0; which < 5; which++) {
        gb_tensor *y[2], *g[2];
        for (int t = 0; t < 2; t++) {
            gb_tensor *xl = gb_clone(x);
            gb_requires_grad_(xl, true);
            y[t] = reduce_twice(xl, t + 1, which);
            gb_tensor *r = gb_ones(gb_tensor_ndim(y[t]), gb_tensor_shape(y[t]), GB_DTYPE_F32);
            gbt_ok_status(gb_backward(y[t], r, false));
            g[t] = gb_tensor_ref(gb_tensor_grad(xl));
            gb_tensor_free(r), gb_tensor_free(xl);
        }
        gbt_assert_close(y[0], y[1], 0, 0, "1 thread vs 2: values");
        gbt_assert_close(g[0], g[1], 0, 0, "1 thread vs 2: gradients");
        gb_tensor_free(y[0]), gb_tensor_free(y[1]), gb_tensor_free(g[0]), gb_tensor_free(g[1]);
    }
    gb_set_num_threads(saved);
    gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* argmax and argmin read any dtype; the values: [3, 9, 2, 9] -> first max
 * at 1, min at 2. */
START_TEST(test_arg_other_dtypes) {
    static const gb_dtype dts[] = {GB_DTYPE_I64, GB_DTYPE_I32, GB_DTYPE_BF16, GB_DTYPE_F16, GB_DTYPE_U8};
    gb_tensor *f = gb_from_data((float[]){3, 9, 2, 9}, 1, (int64_t[]){4}, GB_DTYPE_F32);
    for (int i = 0; i < 5; i++) {
        gb_tensor *t = gb_to_dtype(f, dts[i]);
        gb_tensor *amax = gb_argmax(t, 0, false), *amin = gb_argmin(t, -1, true);
        gbt_ok(amax);
        gbt_ok(amin);
        ck_assert_int_eq(gb_tensor_ndim(amax), 0);
        ck_assert_int_eq(gb_tensor_ndim(amin), 1);
        ck_assert_int_eq(((int64_t *)gb_tensor_data(amax))[0], 1);
        ck_assert_int_eq(((int64_t *)gb_tensor_data(amin))[0], 2);
        gb_tensor_free(amin), gb_tensor_free(amax), gb_tensor_free(t);
    }
    gb_tensor_free(f);
}
END_TEST

START_TEST(test_errors) {
    gb_tensor *x = gb_zeros(3, (int64_t[]){2, 3, 4}, GB_DTYPE_F32);
    gb_tensor *x0 = gb_scalar_tensor(1.0f);
    gb_tensor *e = gb_zeros(2, (int64_t[]){2, 0}, GB_DTYPE_F32);
    gb_tensor *h = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_BF16);
    gb_tensor *i64 = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_I64);

    /* dims out of range */
    gbt_fails_with(gb_sum(x, 3, false) == NULL, GB_ERR_INDEX,
                   "sum: dimension out of range (expected to be in range of [-3, 2], but got 3)");
    gbt_fails_with(gb_max(x, -4, true) == NULL, GB_ERR_INDEX, "max: dimension out of range");
    gbt_fails_with(gb_argmin(x, 5, false) == NULL, GB_ERR_INDEX, "argmin: dimension out of range");
    gbt_fails_with(gb_var(x, -5, 1, false) == NULL, GB_ERR_INDEX, "var: dimension out of range");
    gbt_fails_with(gb_mean(x0, 1, false) == NULL, GB_ERR_INDEX, "[-1, 0], but got 1");
    gbt_fails_with(gb_mean_dims(x, 2, (int[]){0, 3}, false) == NULL, GB_ERR_INDEX, "mean: dimension out of range");

    /* dim lists */
    gbt_fails_with(gb_sum_dims(x, 2, (int[]){0, -3}, false) == NULL, GB_ERR_ARG,
                   "sum: dim 0 appears multiple times in the list of dims");
    gbt_fails_with(gb_sum_dims(x, 9, (int[]){0, 1, 2, 3, 4, 5, 6, 7, 8}, false) == NULL, GB_ERR_ARG,
                   "sum: 9 dims given");
    gbt_fails_with(gb_mean_dims(x, -1, NULL, false) == NULL, GB_ERR_ARG, "mean: -1 dims given");
    gbt_fails_with(gb_sum_dims(x, 2, NULL, false) == NULL, GB_ERR_ARG, "sum: dims is NULL but ndims is 2");

    /* empty reductions that have no value */
    gbt_fails_with(gb_max(e, 1, false) == NULL, GB_ERR_SHAPE,
                   "max: expected reduction dim 1 to have non-zero size (input shape [2, 0])");
    gbt_fails_with(gb_argmin(e, -1, false) == NULL, GB_ERR_SHAPE, "argmin: expected reduction dim 1");
    gbt_fails_with(gb_max_all(e) == NULL, GB_ERR_SHAPE, "max_all: the input [2, 0] is empty");

    /* dtypes */
    gbt_fails_with(gb_sum(h, 0, false) == NULL, GB_ERR_DTYPE,
                   "sum: input a [2, 3] has dtype bfloat16, but sum computes in float32; convert it first with "
                   "gb_to_dtype(t, GB_DTYPE_F32)");
    /* PyTorch's refusals of integer means and variances */
    gbt_fails_with(gb_mean_all(i64) == NULL, GB_ERR_DTYPE,
                   "mean(): could not infer output dtype. Input dtype must be either a floating point or complex "
                   "dtype. Got: Long (input [3])");
    gbt_fails_with(gb_max_all(h) == NULL, GB_ERR_DTYPE, "max_all: input a [2, 3] has dtype bfloat16");
    gbt_fails_with(gb_var(i64, 0, 1, false) == NULL, GB_ERR_DTYPE,
                   "var: std and var only support floating point and complex dtypes, got Long (input [3])");

    /* NULL input */
    gbt_fails_with(gb_sum_all(NULL) == NULL, GB_ERR_ARG, "sum: input a is NULL");
    gbt_fails_with(gb_argmax(NULL, 0, false) == NULL, GB_ERR_ARG, "argmax: input a is NULL");

    gb_tensor_free(i64), gb_tensor_free(h), gb_tensor_free(e), gb_tensor_free(x0), gb_tensor_free(x);
}
END_TEST

/* int64 sums and extremes are int64 and exact beyond 2^53, where doubles
 * tie neighbours (derivation beside each value); sums wrap as torch's. */
START_TEST(test_int64_exact) {
    const int64_t p53 = (int64_t)1 << 53;
    gb_tensor *x = gb_from_data((int64_t[]){p53 + 1, p53, INT64_MAX, 1}, 2, (int64_t[]){2, 2}, GB_DTYPE_I64);
    gb_tensor *s0 = gb_sum(x, 0, false), *s1 = gb_sum(x, 1, false), *mx = gb_max(x, 1, false), *am = gb_argmax(x, 0, false);
    gbt_ok(s0), gbt_ok(s1), gbt_ok(mx), gbt_ok(am);
    ck_assert_int_eq(gb_tensor_dtype(s0), GB_DTYPE_I64);
    ck_assert_int_eq(gbt_i64(s0, 0), INT64_MIN + p53);     /* 2^53 + 1 + 2^63 - 1 wraps to 2^53 - 2^63 */
    ck_assert_int_eq(gbt_i64(s0, 1), p53 + 1);             /* 2^53 + 1 */
    ck_assert_int_eq(gbt_i64(s1, 0), 2 * p53 + 1);         /* 2^54 + 1: a double rounds it to 2^54 */
    ck_assert_int_eq(gbt_i64(mx, 0), p53 + 1);             /* not the tie a double sees */
    ck_assert_int_eq(gbt_i64(am, 0), 1);
    ck_assert_int_eq(gbt_i64(am, 1), 0);
    gb_tensor *y = gb_from_data((int64_t[]){p53 + 1, p53}, 1, (int64_t[]){2}, GB_DTYPE_I64);
    gb_tensor *z = gb_from_data((int64_t[]){p53, p53}, 1, (int64_t[]){2}, GB_DTYPE_I64), *gt = gb_gt(y, z);
    ck_assert(gb_tensor_data(gt) && ((uint8_t *)gb_tensor_data(gt))[0] == 1 && ((uint8_t *)gb_tensor_data(gt))[1] == 0);
    gb_tensor *all[] = {x, s0, s1, mx, am, y, z, gt};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gb_tensor_free(all[i]);
}
END_TEST

/* gb_norm through a transposed view (strided reads): central differences
 * for each order away from ties and zeros (where the derivative jumps);
 * its refusals. Values and the gradients at zeros and ties are checked
 * against PyTorch in trace_ops. */
static gb_tensor *gc_norm(gb_tensor *const *in, void *ctx) {
    const double *p = ctx;
    gb_tensor *v = gb_transpose(in[0], 0, 1), *y = gb_norm(v, *p, 1, (int[]){1}, false);
    gb_tensor_free(v);
    return y;
}

START_TEST(test_norm_gradcheck) {
    gb_tensor *x = leaf_randn(2, (int64_t[]){4, 3}, 501);
    float *px = gb_tensor_f32(x);
    for (int i = 0; i < 12; i++) px[i] = (float)((i * 5 % 12) + 1) * (i % 2 ? -0.25f : 0.25f); /* distinct |x|, none 0 */
    const double orders[] = {1, 2, 3, 0.5, 1.5, INFINITY, -INFINITY};
    for (size_t k = 0; k < sizeof orders / sizeof *orders; k++) {
        char what[32];
        snprintf(what, sizeof what, "norm p=%g", orders[k]);
        gbt_gradcheck(gc_norm, 1, &x, (void *)&orders[k], 1e-3, 1e-2, 1e-3, what);
    }
    gb_tensor *i64 = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_I64);
    gbt_fails_with(gb_norm(i64, 2, 0, NULL, false) == NULL, GB_ERR_DTYPE,
                   "norm: Expected a floating point or complex tensor as input. Got Long (input [3])");
    gbt_fails_with(gb_norm(x, NAN, 0, NULL, false) == NULL, GB_ERR_ARG, "norm: the order p is NaN");
    gbt_fails_with(gb_norm(x, 2, 1, (int[]){5}, false) == NULL, GB_ERR_INDEX, "norm");
    gb_tensor_free(i64), gb_tensor_free(x);
}
END_TEST

Suite *gb_suite_reduce(void) {
    Suite *s = suite_create("reduce");
    TCase *tc = tcase_create("reduce");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_reduce_dim, 0, NREDUCE);
    tcase_add_loop_test(tc, test_reduce_saves, 0, NREDUCE);
    tcase_add_test(tc, test_var_correction);
    tcase_add_test(tc, test_reduce_dims);
    tcase_add_test(tc, test_reduce_all);
    tcase_add_test(tc, test_zero_dim);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_nan);
    tcase_add_test(tc, test_reduce_gradcheck);
    tcase_add_test(tc, test_large_inputs);
    tcase_add_test(tc, test_thread_count_independent);
    tcase_add_test(tc, test_arg_other_dtypes);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_int64_exact);
    tcase_add_test(tc, test_norm_gradcheck);
    suite_add_tcase(s, tc);
    return s;
}
