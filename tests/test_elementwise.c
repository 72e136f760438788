/* Elementwise ops against PyTorch (tests/oracle/elementwise.py and
 * elementwise_big.py): values, broadcasting, strided and expanded inputs,
 * 0-dim tensors, NaN, gradients (torch's through gb_backward, and central
 * differences), which saved values a backward may read, and every error path. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_elementwise.h"

/* Central differences need every input at least 5 steps (eps = 1e-2) from
 * a kink: 0 (abs, relu), the clamp bounds used here, and the other operand
 * of maximum/minimum. Moves the elements of t that are closer. */
static void away_from_kinks(gb_tensor *t, const gb_tensor *other) {
    static const float kinks[] = {0.0f, -0.5f, 0.7f, 0.3f};
    float *p = gb_tensor_f32(t);
    const float *q = other ? gb_tensor_f32(other) : NULL;
    int64_t nq = other ? gb_tensor_numel(other) : 0;
    for (int64_t i = 0; i < gb_tensor_numel(t); i++) {
        for (bool moved = true; moved;) {
            moved = false;
            for (int k = 0; k < 4; k++)
                if (fabsf(p[i] - kinks[k]) < 0.05f) p[i] += 0.1f, moved = true;
            for (int64_t j = 0; j < nq; j++)
                if (fabsf(p[i] - q[j]) < 0.05f) p[i] += 0.1f, moved = true;
        }
    }
}


/* ---- unary ops ---------------------------------------------------------- */

typedef gb_tensor *(*unary_fn)(gb_tensor *);
static gb_tensor *u_clamp(gb_tensor *a) { return gb_clamp(a, -0.5f, 0.7f); }
static gb_tensor *u_clamp_max(gb_tensor *a) { return gb_clamp(a, -INFINITY, 0.3f); }
static gb_tensor *u_clamp_min(gb_tensor *a) { return gb_clamp(a, -0.5f, INFINITY); }
static gb_tensor *u_add_scalar(gb_tensor *a) { return gb_add_scalar(a, 1.5f); }
static gb_tensor *u_sub_scalar(gb_tensor *a) { return gb_sub_scalar(a, 0.25f); }
static gb_tensor *u_rsub_scalar(gb_tensor *a) { return gb_rsub_scalar(a, 2.0f); }
static gb_tensor *u_mul_scalar(gb_tensor *a) { return gb_mul_scalar(a, -3.0f); }
static gb_tensor *u_div_scalar(gb_tensor *a) { return gb_div_scalar(a, 4.0f); }
static gb_tensor *u_pow3(gb_tensor *a) { return gb_pow_scalar(a, 3.0f); }
static gb_tensor *u_pow2(gb_tensor *a) { return gb_pow_scalar(a, 2.0f); }
static gb_tensor *u_pow0(gb_tensor *a) { return gb_pow_scalar(a, 0.0f); }
static gb_tensor *u_pow_half(gb_tensor *a) { return gb_pow_scalar(a, 0.5f); }
static gb_tensor *u_pow_neg(gb_tensor *a) { return gb_pow_scalar(a, -1.5f); }

/* name (the oracle's), function, what its backward reads, whether its
 * domain is x > 0 */
static const struct {
    const char *name;
    unary_fn f;
    int saves;
    bool positive;
} UNARY[] = {
    {"neg", gb_neg, 0, false},
    {"exp", gb_exp, SAVES_Y, false},
    {"log", gb_log, SAVES_A, true},
    {"sqrt", gb_sqrt, SAVES_Y, true},
    {"rsqrt", gb_rsqrt, SAVES_Y, true},
    {"tanh", gb_tanh, SAVES_Y, false},
    {"sigmoid", gb_sigmoid, SAVES_Y, false},
    {"abs", gb_abs, SAVES_A, false},
    {"clamp", u_clamp, SAVES_A, false},
    {"clamp_max", u_clamp_max, SAVES_A, false},
    {"clamp_min", u_clamp_min, SAVES_A, false},
    {"relu", gb_relu, SAVES_Y, false},
    {"gelu", gb_gelu, SAVES_A, false},
    {"gelu_tanh", gb_gelu_tanh, SAVES_A, false},
    {"silu", gb_silu, SAVES_A, false},
    {"add_scalar", u_add_scalar, 0, false},
    {"sub_scalar", u_sub_scalar, 0, false},
    {"rsub_scalar", u_rsub_scalar, 0, false},
    {"mul_scalar", u_mul_scalar, 0, false},
    {"div_scalar", u_div_scalar, 0, false},
    {"pow_scalar3", u_pow3, SAVES_A, false},
    {"pow_scalar2", u_pow2, SAVES_A, false},
    {"pow_scalar0", u_pow0, SAVES_A, false},
    {"pow_scalar_half", u_pow_half, SAVES_A, true},
    {"pow_scalar_neg", u_pow_neg, SAVES_A, true},
};
#define NUNARY ((int)(sizeof UNARY / sizeof UNARY[0]))

START_TEST(test_unary_values) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *x = gbt_getf(o, "unary.%s.x", UNARY[_i].name);
    gb_tensor *want = gbt_getf(o, "unary.%s.y", UNARY[_i].name);
    for (int k = 0; k < NLAYOUTS; k++) {
        gb_tensor *base = layout_base(x, k), *v = layout_view(base, k);
        gb_tensor *y = UNARY[_i].f(v);
        char what[128];
        snprintf(what, sizeof what, "%s on a %s input", UNARY[_i].name, LAYOUT_NAME[k]);
        gbt_assert_close(y, want, RTOL, ATOL, what);
        ck_assert(gb_tensor_dtype(y) == GB_DTYPE_F32 && gb_tensor_is_contiguous(y));
        gb_tensor_free(y), gb_tensor_free(v), gb_tensor_free(base);
    }
    gb_tensor_free(want), gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_unary_grads) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *x = gbt_getf(o, "unary.%s.x", UNARY[_i].name);
    gb_tensor *r = gbt_getf(o, "unary.%s.r", UNARY[_i].name);
    gb_tensor *want = gbt_getf(o, "unary.%s.dx", UNARY[_i].name);
    for (int k = 0; k < NLAYOUTS; k++) {
        gb_tensor *base = layout_base(x, k);
        gbt_ok_status(gb_requires_grad_(base, true));
        gb_tensor *v = layout_view(base, k);
        gb_tensor *y = UNARY[_i].f(v);
        ck_assert(gb_tensor_requires_grad(y));
        gbt_ok_status(gb_backward(y, r, false));
        char what[128];
        snprintf(what, sizeof what, "d %s / dx on a %s input", UNARY[_i].name, LAYOUT_NAME[k]);
        assert_grad(base, k, want, what);
        gb_tensor_free(y), gb_tensor_free(v), gb_tensor_free(base);
    }
    gb_tensor_free(want), gb_tensor_free(r), gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* A backward reads only what its op saves: overwriting anything else between
 * forward and backward leaves torch's gradient; overwriting a saved value
 * makes backward fail instead of returning a wrong gradient. */
START_TEST(test_unary_saves) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *x0 = gbt_getf(o, "unary.%s.x", UNARY[_i].name);
    gb_tensor *r = gbt_getf(o, "unary.%s.r", UNARY[_i].name);
    gb_tensor *want = gbt_getf(o, "unary.%s.dx", UNARY[_i].name);
    int saves = UNARY[_i].saves;

    gb_tensor *x = gb_clone(x0);
    gb_requires_grad_(x, true);
    gb_tensor *y = UNARY[_i].f(x);
    if (!(saves & SAVES_A)) overwrite(x);
    if (!(saves & SAVES_Y)) overwrite(y);
    gbt_ok_status(gb_backward(y, r, false));
    gbt_assert_close(gb_tensor_grad(x), want, RTOL, ATOL, UNARY[_i].name);
    gb_tensor_free(y), gb_tensor_free(x);

    for (int w = 0; w < 2; w++) {
        int which = w == 0 ? SAVES_A : SAVES_Y;
        if (!(saves & which)) continue;
        x = gb_clone(x0);
        gb_requires_grad_(x, true);
        y = UNARY[_i].f(x);
        overwrite(which == SAVES_A ? x : y);
        gbt_fails_with(gb_backward(y, r, false) != GB_OK, GB_ERR_AUTOGRAD, "modified by an inplace operation");
        gb_tensor_free(y), gb_tensor_free(x);
    }
    gb_tensor_free(want), gb_tensor_free(r), gb_tensor_free(x0);
    gbt_oracle_free(o);
}
END_TEST

/* Central differences on a transposed view of a random [4, 3] leaf. */
static gb_tensor *gc_unary(gb_tensor *const *in, void *ctx) {
    gb_tensor *v = gb_transpose(in[0], 0, 1);
    gb_tensor *y = UNARY[*(const int *)ctx].f(v);
    gb_tensor_free(v);
    return y;
}

START_TEST(test_unary_gradcheck) {
    gb_tensor *x = leaf_randn(2, (int64_t[]){4, 3}, 100 + (uint64_t)_i);
    if (UNARY[_i].positive) { /* keep x - eps in the domain and away from the pole */
        float *p = gb_tensor_f32(x);
        for (int i = 0; i < 12; i++) p[i] = fabsf(p[i]) + 0.5f;
    }
    away_from_kinks(x, NULL);
    int i = _i;
    gbt_gradcheck(gc_unary, 1, &x, &i, 1e-2, 1e-2, 1e-3, UNARY[_i].name);
    gb_tensor_free(x);
}
END_TEST

START_TEST(test_unary_zero_dim) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    static const struct {
        const char *name;
        unary_fn f;
    } cases[] = {{"exp", gb_exp}, {"gelu", gb_gelu}};
    for (int c = 0; c < 2; c++) {
        gb_tensor *x = gbt_getf(o, "unary0.%s.x", cases[c].name);
        gb_tensor *r = gbt_getf(o, "unary0.%s.r", cases[c].name);
        gb_tensor *want = gbt_getf(o, "unary0.%s.y", cases[c].name);
        gb_tensor *dwant = gbt_getf(o, "unary0.%s.dx", cases[c].name);
        ck_assert_int_eq(gb_tensor_ndim(x), 0);
        gb_tensor *xl = gb_clone(x);
        gb_requires_grad_(xl, true);
        gb_tensor *y = cases[c].f(xl);
        gbt_assert_close(y, want, RTOL, ATOL, cases[c].name);
        gbt_ok_status(gb_backward(y, r, false));
        gbt_assert_close(gb_tensor_grad(xl), dwant, RTOL, ATOL, cases[c].name);
        gb_tensor_free(y), gb_tensor_free(xl), gb_tensor_free(dwant), gb_tensor_free(want), gb_tensor_free(r),
            gb_tensor_free(x);
    }
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_nan_passes_through) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *x = gbt_get(o, "nan.x");
    gb_tensor *other = gb_from_data((float[]){0.0f, NAN, -3.0f}, 1, (int64_t[]){3}, GB_DTYPE_F32);
    gb_tensor *got[5] = {gb_relu(x), gb_clamp(x, -1.0f, 0.5f), gb_abs(x), gb_maximum(x, other), gb_minimum(x, other)};
    const char *keys[5] = {"nan.relu", "nan.clamp", "nan.abs", "nan.maximum", "nan.minimum"};
    for (int i = 0; i < 5; i++) {
        gb_tensor *want = gbt_get(o, keys[i]);
        gbt_assert_close(got[i], want, RTOL, ATOL, keys[i]);
        gb_tensor_free(want), gb_tensor_free(got[i]);
    }
    gb_tensor_free(other), gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* ---- binary ops --------------------------------------------------------- */

typedef gb_tensor *(*binary_fn)(gb_tensor *, gb_tensor *);
static const struct {
    const char *name;
    binary_fn f;
    int saves;
} BINARY[] = {
    {"add", gb_add, 0},
    {"sub", gb_sub, 0},
    {"mul", gb_mul, SAVES_A | SAVES_B},
    {"div", gb_div, SAVES_A | SAVES_B},
    {"pow", gb_pow, SAVES_A | SAVES_B},
    {"maximum", gb_maximum, SAVES_A | SAVES_B},
    {"minimum", gb_minimum, SAVES_A | SAVES_B},
};
#define NBINARY ((int)(sizeof BINARY / sizeof BINARY[0]))
/* a [3, 4] with b [3, 4]; [2, 1, 4] with [3, 1]; [3, 1] with [2, 1, 4];
 * [3, 4] with a 0-dim b; both 0-dim */
static const char *const CASES[] = {"same", "bcast", "bcast_left", "scalar_b", "scalar_both"};
#define NCASES 5

START_TEST(test_binary_values) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    for (int c = 0; c < NCASES; c++) {
        gb_tensor *a = gbt_getf(o, "%s.%s.a", BINARY[_i].name, CASES[c]);
        gb_tensor *b = gbt_getf(o, "%s.%s.b", BINARY[_i].name, CASES[c]);
        gb_tensor *want = gbt_getf(o, "%s.%s.y", BINARY[_i].name, CASES[c]);
        for (int k = 0; k < NLAYOUTS; k++) {
            gb_tensor *ba = layout_base(a, k), *bb = layout_base(b, NLAYOUTS - 1 - k);
            gb_tensor *va = layout_view(ba, k), *vb = layout_view(bb, NLAYOUTS - 1 - k);
            gb_tensor *y = BINARY[_i].f(va, vb);
            char what[128];
            snprintf(what, sizeof what, "%s %s, a %s", BINARY[_i].name, CASES[c], LAYOUT_NAME[k]);
            gbt_assert_close(y, want, RTOL, ATOL, what);
            gb_tensor_free(y), gb_tensor_free(va), gb_tensor_free(vb), gb_tensor_free(ba), gb_tensor_free(bb);
        }
        gb_tensor_free(want), gb_tensor_free(b), gb_tensor_free(a);
    }
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_binary_grads) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    for (int c = 0; c < NCASES; c++) {
        gb_tensor *a = gbt_getf(o, "%s.%s.a", BINARY[_i].name, CASES[c]);
        gb_tensor *b = gbt_getf(o, "%s.%s.b", BINARY[_i].name, CASES[c]);
        gb_tensor *r = gbt_getf(o, "%s.%s.r", BINARY[_i].name, CASES[c]);
        gb_tensor *da = gbt_getf(o, "%s.%s.da", BINARY[_i].name, CASES[c]);
        gb_tensor *db = gbt_getf(o, "%s.%s.db", BINARY[_i].name, CASES[c]);
        for (int k = 0; k < NLAYOUTS; k++) {
            int kb = NLAYOUTS - 1 - k;
            gb_tensor *ba = layout_base(a, k), *bb = layout_base(b, kb);
            gb_requires_grad_(ba, true);
            gb_requires_grad_(bb, true);
            gb_tensor *va = layout_view(ba, k), *vb = layout_view(bb, kb);
            gb_tensor *y = BINARY[_i].f(va, vb);
            gbt_ok_status(gb_backward(y, r, false));
            char what[128];
            snprintf(what, sizeof what, "d %s %s / da, a %s", BINARY[_i].name, CASES[c], LAYOUT_NAME[k]);
            assert_grad(ba, k, da, what);
            snprintf(what, sizeof what, "d %s %s / db, b %s", BINARY[_i].name, CASES[c], LAYOUT_NAME[kb]);
            assert_grad(bb, kb, db, what);
            gb_tensor_free(y), gb_tensor_free(va), gb_tensor_free(vb), gb_tensor_free(ba), gb_tensor_free(bb);
        }
        /* Only one side requiring grad: the other gets nothing. */
        gb_tensor *la = gb_clone(a), *lb = gb_clone(b);
        gb_requires_grad_(lb, true);
        gb_tensor *y = BINARY[_i].f(la, lb);
        gbt_ok_status(gb_backward(y, r, false));
        ck_assert_ptr_null(gb_tensor_grad(la));
        gbt_assert_close(gb_tensor_grad(lb), db, RTOL, ATOL, "db alone");
        gb_tensor_free(y), gb_tensor_free(la), gb_tensor_free(lb);
        gb_tensor_free(db), gb_tensor_free(da), gb_tensor_free(r), gb_tensor_free(b), gb_tensor_free(a);
    }
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_binary_saves) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    const char *n = BINARY[_i].name;
    gb_tensor *a0 = gbt_getf(o, "%s.same.a", n), *b0 = gbt_getf(o, "%s.same.b", n);
    gb_tensor *r = gbt_getf(o, "%s.same.r", n);
    gb_tensor *da = gbt_getf(o, "%s.same.da", n), *db = gbt_getf(o, "%s.same.db", n);
    int saves = BINARY[_i].saves;

    gb_tensor *a = gb_clone(a0), *b = gb_clone(b0);
    gb_requires_grad_(a, true), gb_requires_grad_(b, true);
    gb_tensor *y = BINARY[_i].f(a, b);
    if (!(saves & SAVES_A)) overwrite(a);
    if (!(saves & SAVES_B)) overwrite(b);
    overwrite(y); /* no binary op reads its output */
    gbt_ok_status(gb_backward(y, r, false));
    gbt_assert_close(gb_tensor_grad(a), da, RTOL, ATOL, n);
    gbt_assert_close(gb_tensor_grad(b), db, RTOL, ATOL, n);
    gb_tensor_free(y), gb_tensor_free(a), gb_tensor_free(b);

    for (int which = SAVES_A; which <= SAVES_B; which <<= 1) {
        if (!(saves & which)) continue;
        a = gb_clone(a0), b = gb_clone(b0);
        gb_requires_grad_(a, true), gb_requires_grad_(b, true);
        y = BINARY[_i].f(a, b);
        overwrite(which == SAVES_A ? a : b);
        gbt_fails_with(gb_backward(y, r, false) != GB_OK, GB_ERR_AUTOGRAD, "modified by an inplace operation");
        gb_tensor_free(y), gb_tensor_free(a), gb_tensor_free(b);
    }
    gb_tensor_free(db), gb_tensor_free(da), gb_tensor_free(r), gb_tensor_free(b0), gb_tensor_free(a0);
    gbt_oracle_free(o);
}
END_TEST

/* Central differences, broadcasting [2, 1, 4] with [3, 1]: a is a
 * transposed view of a [4, 1, 2] leaf; div shifts b away from 0, and the
 * test makes pow's a positive. */
static gb_tensor *gc_binary(gb_tensor *const *in, void *ctx) {
    int i = *(const int *)ctx;
    gb_tensor *va = gb_transpose(in[0], 0, 2);
    gb_tensor *b = strcmp(BINARY[i].name, "div") ? gb_tensor_ref(in[1]) : gb_add_scalar(in[1], 3.0f);
    gb_tensor *y = BINARY[i].f(va, b);
    gb_tensor_free(b), gb_tensor_free(va);
    return y;
}

START_TEST(test_binary_gradcheck) {
    gb_tensor *in[2] = {leaf_randn(3, (int64_t[]){4, 1, 2}, 200 + (uint64_t)_i),
                        leaf_randn(2, (int64_t[]){3, 1}, 300 + (uint64_t)_i)};
    if (!strcmp(BINARY[_i].name, "pow")) { /* a > 0 */
        float *p = gb_tensor_f32(in[0]);
        for (int i = 0; i < 8; i++) p[i] = fabsf(p[i]) + 0.5f;
    }
    away_from_kinks(in[0], in[1]);
    int i = _i;
    gbt_gradcheck(gc_binary, 2, in, &i, 1e-2, 1e-2, 1e-3, BINARY[_i].name);
    gb_tensor_free(in[0]), gb_tensor_free(in[1]);
}
END_TEST

/* Inputs expanded with stride 0 (gb_expand) instead of broadcast by the op:
 * the same values, and the gradients summed back through the expand. */
START_TEST(test_binary_expanded_inputs) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    for (int i = 0; i < NBINARY; i++) {
        gb_tensor *a = gbt_getf(o, "%s.bcast.a", BINARY[i].name), *b = gbt_getf(o, "%s.bcast.b", BINARY[i].name);
        gb_tensor *r = gbt_getf(o, "%s.bcast.r", BINARY[i].name), *want = gbt_getf(o, "%s.bcast.y", BINARY[i].name);
        gb_tensor *da = gbt_getf(o, "%s.bcast.da", BINARY[i].name), *db = gbt_getf(o, "%s.bcast.db", BINARY[i].name);
        gb_tensor *la = gb_clone(a), *lb = gb_clone(b);
        gb_requires_grad_(la, true), gb_requires_grad_(lb, true);
        gb_tensor *ea = gb_expand(la, 3, (int64_t[]){2, 3, 4}), *eb = gb_expand(lb, 3, (int64_t[]){2, 3, 4});
        ck_assert_int_eq(gb_tensor_strides(ea)[1], 0);
        gb_tensor *y = BINARY[i].f(ea, eb);
        gbt_assert_close(y, want, RTOL, ATOL, BINARY[i].name);
        gbt_ok_status(gb_backward(y, r, false));
        gbt_assert_close(gb_tensor_grad(la), da, RTOL, ATOL, BINARY[i].name);
        gbt_assert_close(gb_tensor_grad(lb), db, RTOL, ATOL, BINARY[i].name);
        gb_tensor_free(y), gb_tensor_free(ea), gb_tensor_free(eb), gb_tensor_free(la), gb_tensor_free(lb);
        gb_tensor_free(db), gb_tensor_free(da), gb_tensor_free(want), gb_tensor_free(r), gb_tensor_free(b),
            gb_tensor_free(a);
    }
    gbt_oracle_free(o);
}
END_TEST

/* x * x: both contributions reach x; pow at a = 0 follows torch's rule. */
START_TEST(test_mul_self_and_pow_zero) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *x0 = gbt_get(o, "mul.self.x"), *r = gbt_get(o, "mul.self.r");
    gb_tensor *want = gbt_get(o, "mul.self.y"), *dwant = gbt_get(o, "mul.self.dx");
    gb_tensor *x = gb_clone(x0);
    gb_requires_grad_(x, true);
    gb_tensor *y = gb_mul(x, x);
    gbt_assert_close(y, want, RTOL, ATOL, "x * x");
    gbt_ok_status(gb_backward(y, r, false));
    gbt_assert_close(gb_tensor_grad(x), dwant, RTOL, ATOL, "d(x * x)/dx");
    gb_tensor_free(y), gb_tensor_free(x), gb_tensor_free(dwant), gb_tensor_free(want), gb_tensor_free(r),
        gb_tensor_free(x0);

    gb_tensor *a0 = gbt_get(o, "pow.zero.a"), *b0 = gbt_get(o, "pow.zero.b");
    r = gbt_get(o, "pow.zero.r"), want = gbt_get(o, "pow.zero.y");
    gb_tensor *da = gbt_get(o, "pow.zero.da"), *db = gbt_get(o, "pow.zero.db");
    gb_tensor *a = gb_clone(a0), *b = gb_clone(b0);
    gb_requires_grad_(a, true), gb_requires_grad_(b, true);
    y = gb_pow(a, b);
    gbt_assert_close(y, want, RTOL, ATOL, "pow at 0");
    gbt_ok_status(gb_backward(y, r, false));
    gbt_assert_close(gb_tensor_grad(a), da, RTOL, ATOL, "d pow / da at 0");
    gbt_assert_close(gb_tensor_grad(b), db, RTOL, ATOL, "d pow / db at 0");
    gb_tensor_free(y), gb_tensor_free(a), gb_tensor_free(b), gb_tensor_free(db), gb_tensor_free(da),
        gb_tensor_free(want), gb_tensor_free(r), gb_tensor_free(b0), gb_tensor_free(a0);
    gbt_oracle_free(o);
}
END_TEST

/* ---- comparisons -------------------------------------------------------- */

static const struct {
    const char *name;
    binary_fn f;
} COMPARE[] = {{"eq", gb_eq}, {"ne", gb_ne}, {"lt", gb_lt}, {"le", gb_le}, {"gt", gb_gt}, {"ge", gb_ge}};

START_TEST(test_compare) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *a = gbt_get(o, "cmp.a"), *b = gbt_get(o, "cmp.b"), *c3 = gbt_get(o, "cmp.c3"),
              *c2 = gbt_get(o, "cmp.c2"), *ci = gbt_get(o, "cmp.i");
    ck_assert(gb_tensor_dtype(ci) == GB_DTYPE_I64);
    const char *n = COMPARE[_i].name;
    gb_tensor *want = gbt_getf(o, "cmp.%s.same", n);
    for (int k = 0; k < NLAYOUTS; k++) {
        gb_tensor *ba = layout_base(a, k), *va = layout_view(ba, k);
        gb_tensor *y = COMPARE[_i].f(va, b);
        ck_assert(gb_tensor_dtype(y) == GB_DTYPE_BOOL);
        gbt_assert_close(y, want, 0, 0, n);
        gb_tensor_free(y), gb_tensor_free(va), gb_tensor_free(ba);
    }
    gb_tensor_free(want);
    want = gbt_getf(o, "cmp.%s.bcast", n);
    gb_tensor *y = COMPARE[_i].f(c3, c2);
    gbt_assert_close(y, want, 0, 0, n);
    gb_tensor_free(y), gb_tensor_free(want);
    want = gbt_getf(o, "cmp.%s.mixed", n); /* f32 [3, 4] with i64 [4] */
    y = COMPARE[_i].f(a, ci);
    gbt_assert_close(y, want, 0, 0, n);
    gb_tensor_free(y), gb_tensor_free(want);
    want = gbt_getf(o, "cmp.%s.zero", n); /* 0-dim 1.0 with [3, 4] */
    gb_tensor *one = gb_scalar_tensor(1.0f);
    y = COMPARE[_i].f(one, a);
    gbt_assert_close(y, want, 0, 0, n);
    gb_tensor_free(y), gb_tensor_free(one), gb_tensor_free(want);
    gb_tensor_free(ci), gb_tensor_free(c2), gb_tensor_free(c3), gb_tensor_free(b), gb_tensor_free(a);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_compare_scalar) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *a = gbt_get(o, "cmp.a"), *ci = gbt_get(o, "cmp.i");
    gb_tensor *at = layout_base(a, LAYOUT_TRANSPOSED), *av = layout_view(at, LAYOUT_TRANSPOSED);
    struct {
        const char *key;
        gb_tensor *got;
    } cases[] = {
        {"cmp.eq_scalar", gb_eq_scalar(a, 1.0f)},        {"cmp.gt_scalar", gb_gt_scalar(av, 0.5f)},
        {"cmp.lt_scalar", gb_lt_scalar(a, -1.0f)},       {"cmp.eq_scalar_i64", gb_eq_scalar(ci, 2.0f)},
        {"cmp.gt_scalar_i64", gb_gt_scalar(ci, -0.5f)},
    };
    for (int i = 0; i < 5; i++) {
        gb_tensor *want = gbt_get(o, cases[i].key);
        ck_assert(gb_tensor_dtype(cases[i].got) == GB_DTYPE_BOOL);
        gbt_assert_close(cases[i].got, want, 0, 0, cases[i].key);
        gb_tensor_free(want), gb_tensor_free(cases[i].got);
    }
    gb_tensor_free(av), gb_tensor_free(at), gb_tensor_free(ci), gb_tensor_free(a);
    gbt_oracle_free(o);
}
END_TEST

/* Comparisons and their users do not record: bool results have no gradient. */
START_TEST(test_compare_no_grad) {
    gb_tensor *x = leaf_randn(1, (int64_t[]){5}, 7);
    gb_tensor *y = gb_gt(x, x), *z = gb_lt_scalar(x, 0.0f);
    ck_assert(!gb_tensor_requires_grad(y) && !gb_tensor_requires_grad(z));
    ck_assert(gb_tensor_is_leaf(y) && gb_tensor_is_leaf(z));
    gb_tensor_free(z), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

/* ---- where and masked_fill ---------------------------------------------- */

START_TEST(test_where) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    gb_tensor *cond = gbt_get(o, "where.cond"), *a = gbt_get(o, "where.a"), *b = gbt_get(o, "where.b");
    gb_tensor *r = gbt_get(o, "where.r"), *want = gbt_get(o, "where.y");
    gb_tensor *da = gbt_get(o, "where.da"), *db = gbt_get(o, "where.db");
    for (int k = 0; k < NLAYOUTS; k++) {
        gb_tensor *bc = layout_base(cond, k), *ba = layout_base(a, k), *bb = layout_base(b, k);
        gb_requires_grad_(ba, true), gb_requires_grad_(bb, true);
        gb_tensor *vc = layout_view(bc, k), *va = layout_view(ba, k), *vb = layout_view(bb, k);
        gb_tensor *y = gb_where(vc, va, vb);
        gbt_assert_close(y, want, RTOL, ATOL, LAYOUT_NAME[k]);
        gbt_ok_status(gb_backward(y, r, false));
        assert_grad(ba, k, da, "d where / da");
        assert_grad(bb, k, db, "d where / db");
        gb_tensor_free(y), gb_tensor_free(vc), gb_tensor_free(va), gb_tensor_free(vb);
        gb_tensor_free(bc), gb_tensor_free(ba), gb_tensor_free(bb);
    }
    /* where saves only cond: a and b may change before backward. */
    gb_tensor *la = gb_clone(a), *lb = gb_clone(b), *lc = gb_clone(cond);
    gb_requires_grad_(la, true), gb_requires_grad_(lb, true);
    gb_tensor *y = gb_where(lc, la, lb);
    overwrite(la), overwrite(lb), overwrite(y);
    gbt_ok_status(gb_backward(y, r, false));
    gbt_assert_close(gb_tensor_grad(la), da, RTOL, ATOL, "where, a overwritten");
    gbt_assert_close(gb_tensor_grad(lb), db, RTOL, ATOL, "where, b overwritten");
    gb_tensor_free(y);
    y = gb_where(lc, la, lb);
    overwrite(lc);
    gbt_fails_with(gb_backward(y, r, false) != GB_OK, GB_ERR_AUTOGRAD, "modified by an inplace operation");
    gb_tensor_free(y), gb_tensor_free(la), gb_tensor_free(lb), gb_tensor_free(lc);
    gb_tensor_free(db), gb_tensor_free(da), gb_tensor_free(want), gb_tensor_free(r), gb_tensor_free(b),
        gb_tensor_free(a), gb_tensor_free(cond);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_masked_fill) {
    gbt_oracle *o = gbt_oracle_load("elementwise");
    static const struct {
        const char *key;
        float value;
    } cases[] = {{"masked_fill", -5.0f}, {"masked_fill2", 2.5f}, {"masked_fill3", -3.0f}};
    /* mask [4] to a [3, 4]; [1, 4] with [3, 1]; [37, 38] to [5, 7, 37, 38] */
    for (int c = 0; c < 3; c++) {
        const char *n = cases[c].key;
        gb_tensor *mask = gbt_getf(o, "%s.mask", n), *a = gbt_getf(o, "%s.a", n), *r = gbt_getf(o, "%s.r", n);
        gb_tensor *want = gbt_getf(o, "%s.y", n), *da = gbt_getf(o, "%s.da", n);
        for (int k = 0; k < NLAYOUTS; k++) {
            gb_tensor *ba = layout_base(a, k), *bm = layout_base(mask, k);
            gb_requires_grad_(ba, true);
            gb_tensor *va = layout_view(ba, k), *vm = layout_view(bm, k);
            gb_tensor *y = gb_masked_fill(va, vm, cases[c].value);
            gbt_assert_close(y, want, RTOL, ATOL, n);
            gbt_ok_status(gb_backward(y, r, false));
            assert_grad(ba, k, da, n);
            gb_tensor_free(y), gb_tensor_free(va), gb_tensor_free(vm), gb_tensor_free(ba), gb_tensor_free(bm);
        }
        /* masked_fill saves only the mask. */
        gb_tensor *la = gb_clone(a);
        gb_requires_grad_(la, true);
        gb_tensor *y = gb_masked_fill(la, mask, cases[c].value);
        overwrite(la), overwrite(y);
        gbt_ok_status(gb_backward(y, r, false));
        gbt_assert_close(gb_tensor_grad(la), da, RTOL, ATOL, n);
        gb_tensor_free(y), gb_tensor_free(la);
        gb_tensor_free(da), gb_tensor_free(want), gb_tensor_free(r), gb_tensor_free(a), gb_tensor_free(mask);
    }
    gbt_oracle_free(o);
}
END_TEST

/* ---- large inputs: the threaded loops ----------------------------------- */

START_TEST(test_large_inputs) {
    gbt_oracle *o = gbt_oracle_load("elementwise_big");
    gb_tensor *x = gbt_get(o, "x"), *bias = gbt_get(o, "bias"), *r = gbt_get(o, "r");
    ck_assert_int_gt(gb_tensor_numel(x), 32768);
    gb_tensor *ey = gbt_get(o, "exp.y"), *edx = gbt_get(o, "exp.dx");
    gb_tensor *my = gbt_get(o, "mul.y"), *mda = gbt_get(o, "mul.da"), *mdb = gbt_get(o, "mul.db");
    gb_tensor *gt0 = gbt_get(o, "gt0");
    for (int k = 0; k < LAYOUT_SLICED; k++) {
        gb_tensor *bx = layout_base(x, k);
        gb_requires_grad_(bx, true);
        gb_tensor *vx = layout_view(bx, k);
        gb_tensor *y = gb_exp(vx);
        gbt_assert_close(y, ey, RTOL, ATOL, "big exp");
        gbt_ok_status(gb_backward(y, r, false));
        assert_grad(bx, k, edx, "big d exp / dx");
        gb_tensor_free(y), gb_tensor_free(vx);
        gb_zero_grad(bx);
        vx = layout_view(bx, k); /* the backward above freed the view's graph */

        gb_tensor *lb = gb_clone(bias);
        gb_requires_grad_(lb, true);
        y = gb_mul(vx, lb);
        gbt_assert_close(y, my, RTOL, ATOL, "big mul");
        gbt_ok_status(gb_backward(y, r, false));
        assert_grad(bx, k, mda, "big d mul / da");
        /* db sums 192 products: torch's order differs from ours */
        gbt_assert_close(gb_tensor_grad(lb), mdb, 1e-4, 1e-4, "big d mul / db");
        gb_tensor_free(y), gb_tensor_free(lb);

        gb_tensor *c = gb_gt_scalar(vx, 0.0f);
        gbt_assert_close(c, gt0, 0, 0, "big gt");
        gb_tensor_free(c), gb_tensor_free(vx), gb_tensor_free(bx);
    }
    gb_tensor_free(gt0), gb_tensor_free(mdb), gb_tensor_free(mda), gb_tensor_free(my), gb_tensor_free(edx),
        gb_tensor_free(ey), gb_tensor_free(r), gb_tensor_free(bias), gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_errors) {
    gb_tensor *a = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_F32);
    gb_tensor *b = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F32);
    gb_tensor *h = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_BF16);
    gb_tensor *f16 = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_F16);
    gb_tensor *i64 = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_I64);
    gb_tensor *m = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_BOOL);
    gb_tensor *m3 = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_BOOL);

    /* shapes */
    gbt_fails_with(gb_add(a, b) == NULL, GB_ERR_SHAPE,
                   "add: the size of tensor a (3) must match the size of tensor b (4) at non-singleton dimension 1");
    gbt_fails_with(gb_pow(b, a) == NULL, GB_ERR_SHAPE, "pow: the size of tensor a (4) must match");
    gbt_fails_with(gb_maximum(a, b) == NULL, GB_ERR_SHAPE, "(shapes [2, 3] and [4])");
    gbt_fails_with(gb_eq(a, b) == NULL, GB_ERR_SHAPE, "eq: the size of tensor a (3)");
    gbt_fails_with(gb_ge(b, a) == NULL, GB_ERR_SHAPE, "ge: the size of tensor a (4)");
    gbt_fails_with(gb_where(m3, a, b) == NULL, GB_ERR_SHAPE, "where: the size of tensor a (3)");
    gbt_fails_with(gb_where(m, a, a) == NULL, GB_ERR_SHAPE, "where: the size of tensor a (4)");
    gbt_fails_with(gb_masked_fill(a, m, 0.0f) == NULL, GB_ERR_SHAPE, "masked_fill: the size of tensor a (3)");

    /* dtypes: f32 compute, the message names the dtype and the conversion */
    gbt_fails_with(gb_exp(h) == NULL, GB_ERR_DTYPE,
                   "exp: input a [2, 3] has dtype bfloat16, but exp computes in float32; convert it first with "
                   "gb_to_dtype(t, GB_DTYPE_F32)");
    gbt_fails_with(gb_add(a, f16) == NULL, GB_ERR_DTYPE, "add: input b [2, 3] has dtype float16");
    gbt_fails_with(gb_mul_scalar(i64, 2.0f) == NULL, GB_ERR_DTYPE, "mul_scalar: input a [3] has dtype int64");
    gbt_fails_with(gb_clamp(m, 0, 1) == NULL, GB_ERR_DTYPE, "has dtype bool");
    gbt_fails_with(gb_where(m, h, a) == NULL, GB_ERR_DTYPE, "where: input a [2, 3] has dtype bfloat16");
    gbt_fails_with(gb_where(a, a, a) == NULL, GB_ERR_DTYPE,
                   "where: expected cond to be a bool tensor, but got float32 [2, 3]");
    gbt_fails_with(gb_masked_fill(a, a, 0.0f) == NULL, GB_ERR_DTYPE,
                   "masked_fill: expected mask to be a bool tensor, but got float32");
    gbt_fails_with(gb_masked_fill(h, m3, 0.0f) == NULL, GB_ERR_DTYPE, "masked_fill: input a [2, 3] has dtype bfloat16");

    /* NULL inputs: an earlier failure passed on */
    gbt_fails_with(gb_exp(NULL) == NULL, GB_ERR_ARG, "exp: input a is NULL");
    gbt_fails_with(gb_add(a, NULL) == NULL, GB_ERR_ARG, "add: input b is NULL");
    gbt_fails_with(gb_lt(NULL, a) == NULL, GB_ERR_ARG, "lt: input a is NULL");
    gbt_fails_with(gb_gt_scalar(NULL, 0) == NULL, GB_ERR_ARG, "gt_scalar: input a is NULL");
    gbt_fails_with(gb_where(NULL, a, a) == NULL, GB_ERR_ARG, "where: input cond is NULL");
    gbt_fails_with(gb_masked_fill(a, NULL, 0) == NULL, GB_ERR_ARG, "masked_fill: input mask is NULL");

    /* comparisons take any dtype, f16/bf16 included (exact as double) */
    gb_tensor *c = gb_eq(h, a);
    gbt_ok(c);
    gb_tensor_free(c);

    gb_tensor_free(m3), gb_tensor_free(m), gb_tensor_free(i64), gb_tensor_free(f16), gb_tensor_free(h),
        gb_tensor_free(b), gb_tensor_free(a);
}
END_TEST

Suite *gb_suite_elementwise(void) {
    Suite *s = suite_create("elementwise");
    TCase *tc = tcase_create("elementwise");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_unary_values, 0, NUNARY);
    tcase_add_loop_test(tc, test_unary_grads, 0, NUNARY);
    tcase_add_loop_test(tc, test_unary_saves, 0, NUNARY);
    tcase_add_loop_test(tc, test_unary_gradcheck, 0, NUNARY);
    tcase_add_test(tc, test_unary_zero_dim);
    tcase_add_test(tc, test_nan_passes_through);
    tcase_add_loop_test(tc, test_binary_values, 0, NBINARY);
    tcase_add_loop_test(tc, test_binary_grads, 0, NBINARY);
    tcase_add_loop_test(tc, test_binary_saves, 0, NBINARY);
    tcase_add_loop_test(tc, test_binary_gradcheck, 0, NBINARY);
    tcase_add_test(tc, test_binary_expanded_inputs);
    tcase_add_test(tc, test_mul_self_and_pow_zero);
    tcase_add_loop_test(tc, test_compare, 0, (int)(sizeof COMPARE / sizeof COMPARE[0]));
    tcase_add_test(tc, test_compare_scalar);
    tcase_add_test(tc, test_compare_no_grad);
    tcase_add_test(tc, test_where);
    tcase_add_test(tc, test_masked_fill);
    tcase_add_test(tc, test_large_inputs);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}
