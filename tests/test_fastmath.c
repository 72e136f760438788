/* tensor/fastmath.h (internals, on purpose): the vectorisable exp, tanh,
 * sigmoid, silu and gelus, and the derivatives the backward uses, against
 * double-precision libm over the whole float range.
 *
 * Samples: every 8191st of the 2^32 bit patterns (both signs, every
 * exponent, subnormals, infinities and NaNs), every 4093rd pattern with
 * |x| <= 130 (where every branch, threshold and underflow of these functions
 * lies), and a list of special values. Each function is checked twice
 * against one reference per sample: through its op (the vectorised, threaded
 * loop of tensor/elementwise.c; derivatives through gb_backward) and by
 * direct calls. Every float was checked against the same references when
 * the functions were written (the maxima are quoted in fastmath.h; the
 * bounds below are those maxima rounded up); GB_FASTMATH_EXHAUSTIVE=1 makes
 * this test repeat that check.
 *
 * The references are the functions' definitions evaluated in double with
 * libm; where a textbook form loses digits in double, an equal form that
 * does not is used and derived beside it. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gbtest.h"
#include "tensor/fastmath.h"

/* ---- references (double) ------------------------------------------------ */

#define K2 1.5957691216057308 /* 2 sqrt(2/pi), gelu_tanh: v = K2 (x + 0.044715 x^3) */
#define INV_SQRT_2PI 0.3989422804014327

static double ref_exp(double x) { return exp(x); }
static double ref_tanh(double x) { return tanh(x); }
static double ref_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double ref_silu(double x) { return x / (1.0 + exp(-x)); }
/* x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2: exact in double where
 * 1 + erf(x / sqrt 2) would cancel for negative x. */
static double ref_gelu(double x) { return 0.5 * x * erfc(-x * M_SQRT1_2); }
/* 0.5 x (1 + tanh(v/2)) = x / (1 + exp(-v)), since 1 + tanh(u) = 2 / (1 + exp(-2u));
 * the tanh form is 0 in double below u = -19. */
static double gelu_tanh_v(double x) { return K2 * x * (1.0 + 0.044715 * x * x); }
static double ref_gelu_tanh(double x) { return x / (1.0 + exp(-gelu_tanh_v(x))); }

/* Derivatives of x sigmoid(v(x)): sigmoid(v) (1 + x v' sigmoid(-v)). The
 * scale is the same with the second term's magnitude: near a zero of the
 * derivative the error is measured against the terms that cancel there. */
static double dxsig(double x, double v, double vp, bool scale) {
    double s = 1.0 / (1.0 + exp(-v)), sm = 1.0 / (1.0 + exp(v)), t = x * vp * sm;
    return s * (1.0 + (scale ? fabs(t) : t));
}
static double ref_silu_dx(double x) { return dxsig(x, x, 1.0, false); }
static double scale_silu_dx(double x) { return dxsig(x, x, 1.0, true); }
static double ref_gelu_tanh_dx(double x) {
    return dxsig(x, gelu_tanh_v(x), K2 * (1.0 + 3.0 * 0.044715 * x * x), false);
}
static double scale_gelu_tanh_dx(double x) {
    return dxsig(x, gelu_tanh_v(x), K2 * (1.0 + 3.0 * 0.044715 * x * x), true);
}
/* Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi). */
static double ref_gelu_dx(double x) { return 0.5 * erfc(-x * M_SQRT1_2) + x * exp(-0.5 * x * x) * INV_SQRT_2PI; }
static double scale_gelu_dx(double x) {
    return 0.5 * erfc(-x * M_SQRT1_2) + fabs(x * exp(-0.5 * x * x) * INV_SQRT_2PI);
}

/* ---- the functions under test ------------------------------------------- */

static float fm_exp(float x) { return gb__ts_exp(x); }
static float fm_tanh(float x) { return gb__ts_tanh(x); }
static float fm_sigmoid(float x) { return gb__ts_sigmoid(x); }
static float fm_silu(float x) { return gb__ts_silu(x); }
static float fm_gelu(float x) { return gb__ts_gelu(x); }
static float fm_gelu_tanh(float x) { return gb__ts_gelu_tanh(x); }
static float fm_silu_dx(float x) { return gb__ts_silu_dx(x); }
static float fm_gelu_dx(float x) { return gb__ts_gelu_dx(x); }
static float fm_gelu_tanh_dx(float x) { return gb__ts_gelu_tanh_dx(x); }

/* name, op (for derivatives: the op whose backward uses it), direct call,
 * reference, scale (derivatives only), maximum error in ulp. */
static const struct {
    const char *name;
    gb_tensor *(*op)(gb_tensor *);
    float (*fast)(float);
    double (*ref)(double);
    double (*scale)(double);
    double max_ulp;
} FUNCS[] = {
    {"exp", gb_exp, fm_exp, ref_exp, NULL, 1.0},
    {"tanh", gb_tanh, fm_tanh, ref_tanh, NULL, 1.6},
    {"sigmoid", gb_sigmoid, fm_sigmoid, ref_sigmoid, NULL, 2.5},
    {"silu", gb_silu, fm_silu, ref_silu, NULL, 3.4},
    {"gelu", gb_gelu, fm_gelu, ref_gelu, NULL, 2.0},
    {"gelu_tanh", gb_gelu_tanh, fm_gelu_tanh, ref_gelu_tanh, NULL, 1.8},
    {"silu_dx", gb_silu, fm_silu_dx, ref_silu_dx, scale_silu_dx, 1.7},
    {"gelu_dx", gb_gelu, fm_gelu_dx, ref_gelu_dx, scale_gelu_dx, 1.8},
    {"gelu_tanh_dx", gb_gelu_tanh, fm_gelu_tanh_dx, ref_gelu_tanh_dx, scale_gelu_tanh_dx, 1.7},
};
#define NFUNCS (int)(sizeof FUNCS / sizeof FUNCS[0])

/* ---- samples ------------------------------------------------------------ */

static const float SPECIAL[] = {
    0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, 0x1p-149f, -0x1p-149f,
    1.0f, -1.0f, 0.625f, -0.625f, 0.62499994f, -0.62499994f, /* tanh's switch */
    88.7228f, 88.72284f, 88.7229f, 89.0f, -87.33655f, -87.3366f, -103.97207f, -103.9721f, -104.0f, /* exp's ranges */
    128.0f, 128.00002f, -128.0f, -128.00002f, 15.0f, -15.0f, 64.0f, -64.0f, -14.2f, -16.0f, -10.7f, -108.7f,
};

/* The samples, in chunks: every `step`-th of the 2^32 bit patterns, then
 * (unless step is 1) every 4093rd pattern with |x| <= 130 of each sign,
 * then SPECIAL. */
typedef struct sampler {
    uint64_t step, next;
    int phase;
} sampler;

enum { CHUNK = 1 << 20 };

/* Fill x with up to CHUNK samples; returns how many (0: done). */
static int64_t next_chunk(sampler *sp, float *x) {
    const uint64_t central = 4093, top = 0x43020000u; /* 130.0f */
    int64_t k = 0;
    while (k < CHUNK && sp->phase < 3) {
        if (sp->phase == 0) { /* the whole range */
            for (; k < CHUNK && sp->next < (1ull << 32); sp->next += sp->step) x[k++] = gb__ts_u2f((uint32_t)sp->next);
            if (sp->next >= (1ull << 32)) sp->phase = sp->step == 1 ? 2 : 1, sp->next = 1;
        } else if (sp->phase == 1) { /* denser where the branches are */
            for (; k + 1 < CHUNK && sp->next <= top; sp->next += central) {
                x[k++] = gb__ts_u2f((uint32_t)sp->next);
                x[k++] = gb__ts_u2f((uint32_t)sp->next | 0x80000000u);
            }
            if (sp->next <= top) break; /* full */
            sp->phase = 2;
        } else {
            if (k + (int64_t)(sizeof SPECIAL / sizeof(float)) > CHUNK) break;
            for (size_t i = 0; i < sizeof SPECIAL / sizeof(float); i++) x[k++] = SPECIAL[i];
            sp->phase = 3;
        }
    }
    return k;
}

/* ---- comparison --------------------------------------------------------- */

/* |got - ref| in units of the last place of a float of ref's magnitude
 * (2^-149 below the normal range), where ref is the exact value. NaN must
 * meet NaN, an infinite result must be exactly the float the reference
 * rounds to, and (for values, not derivatives) a zero result must carry the
 * reference's sign. Returns the error, or INFINITY for a mismatch. */
static double ulp_error(float got, double ref, double scale, bool check_zero_sign) {
    if (isnan(ref) || isnan(got)) return isnan(ref) && isnan(got) ? 0.0 : INFINITY;
    float rf = (float)ref;
    if (isinf(rf) || isinf(got)) return rf == got ? 0.0 : INFINITY;
    if (check_zero_sign && got == 0.0f && rf == 0.0f && !signbit(got) != !signbit(ref)) return INFINITY;
    double mag = fmax(fabs(ref), scale);
    int e;
    frexp(mag, &e);
    double ulp = ldexp(1.0, (e - 24 > -149 ? e - 24 : -149));
    return fabs((double)got - ref) / ulp;
}

/* The worst error seen, and where. */
typedef struct worst {
    double err;
    float x, got;
    double ref;
} worst;

static void track(int f, worst *w, const float *x, const float *got, const double *ref, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double sc = FUNCS[f].scale ? FUNCS[f].scale(x[i]) : 0.0;
        double e = ulp_error(got[i], ref[i], sc, FUNCS[f].scale == NULL);
        if (e > w->err) *w = (worst){e, x[i], got[i], ref[i]};
    }
}

static void check(int f, const char *how, const worst *w) {
    ck_assert_msg(w->err <= FUNCS[f].max_ulp,
                  "%s (%s): error %.3f ulp > %.1f at x = %.9g (%a): got %.9g (%a), exact %.17g", FUNCS[f].name,
                  how, w->err, FUNCS[f].max_ulp, w->x, w->x, w->got, w->got, w->ref);
}

/* GB_FASTMATH_EXHAUSTIVE=1 in the environment: every float instead (about
 * an hour for all nine on two cores), with the same bounds. */
static bool exhaustive(void) {
    const char *all = getenv("GB_FASTMATH_EXHAUSTIVE");
    return all && *all && strcmp(all, "0");
}

START_TEST(test_fastmath_accuracy) {
    int f = _i;
    bool deriv = FUNCS[f].scale != NULL;
    sampler sp = {.step = exhaustive() ? 1 : 8191};
    float *x = malloc(CHUNK * sizeof *x), *got = malloc(CHUNK * sizeof *got);
    double *ref = malloc(CHUNK * sizeof *ref);
    ck_assert(x && got && ref);
    worst direct = {0}, op = {0};
    for (int64_t n; (n = next_chunk(&sp, x)) > 0;) {
        for (int64_t i = 0; i < n; i++) ref[i] = FUNCS[f].ref(x[i]);

        /* scalar calls through a pointer: the build's baseline code */
        for (int64_t i = 0; i < n; i++) got[i] = FUNCS[f].fast(x[i]);
        track(f, &direct, x, got, ref, n);

        /* through the op: the threaded loop, vectorised (AVX-512 here) */
        gb_tensor *tx = gb_from_data(x, 1, &n, GB_DTYPE_F32), *ty = NULL, *ones = NULL;
        gbt_ok(tx);
        if (deriv) {
            gbt_ok_status(gb_requires_grad_(tx, true));
            ones = gb_ones(1, &n, GB_DTYPE_F32);
        }
        ty = FUNCS[f].op(tx);
        gbt_ok(ty);
        if (deriv) gbt_ok_status(gb_backward(ty, ones, false));
        const gb_tensor *res = deriv ? gb_tensor_grad(tx) : ty;
        gbt_ok(res);
        track(f, &op, x, gb_tensor_f32(res), ref, n);
        gb_tensor_free(ones), gb_tensor_free(ty), gb_tensor_free(tx);
    }
    free(ref), free(got), free(x);
    check(f, "direct", &direct);
    check(f, deriv ? "through gb_backward" : "through the op", &op);
}
END_TEST

/* The limits that the file comment of fastmath.h promises, spelled out:
 * libm's for exp, tanh and sigmoid; for silu and the gelus, the formula
 * x * cdf(x) in IEEE arithmetic (inf * 1 and -inf * 0), as in PyTorch. */
START_TEST(test_fastmath_limits) {
    ck_assert(gb__ts_exp(-INFINITY) == 0.0f && !signbit(gb__ts_exp(-INFINITY)));
    ck_assert(gb__ts_exp(INFINITY) == INFINITY && isnan(gb__ts_exp(NAN)));
    ck_assert(gb__ts_exp(-103.9f) == 0x1p-149f); /* 7.5e-46 > 2^-150: rounds up to the smallest subnormal */
    ck_assert(gb__ts_exp(-104.0f) == 0.0f);      /* 6.8e-46 < 2^-150 */
    ck_assert(gb__ts_exp(88.72f) < INFINITY && gb__ts_exp(88.73f) == INFINITY);
    ck_assert(gb__ts_tanh(INFINITY) == 1.0f && gb__ts_tanh(-INFINITY) == -1.0f && isnan(gb__ts_tanh(NAN)));
    ck_assert(gb__ts_tanh(-0.0f) == 0.0f && signbit(gb__ts_tanh(-0.0f)));
    ck_assert(gb__ts_tanh(9.1f) == 1.0f);    /* 1 - tanh(9.1) = 2.5e-8 < 2^-25 */
    ck_assert(gb__ts_sigmoid(INFINITY) == 1.0f && gb__ts_sigmoid(-INFINITY) == 0.0f && isnan(gb__ts_sigmoid(NAN)));
    ck_assert(gb__ts_sigmoid(-100.0f) > 0.0f); /* 3.7e-44, subnormal */
    ck_assert(gb__ts_silu(INFINITY) == INFINITY && isnan(gb__ts_silu(-INFINITY)) && isnan(gb__ts_silu(NAN)));
    ck_assert(gb__ts_silu(-100.0f) < 0.0f);  /* -3.7e-42, subnormal */
    ck_assert(gb__ts_gelu(INFINITY) == INFINITY && isnan(gb__ts_gelu(-INFINITY)) && isnan(gb__ts_gelu(NAN)));
    ck_assert(gb__ts_gelu(-14.0f) < 0.0f);   /* -14 Phi(-14) = -1.1e-43, subnormal */
    ck_assert(gb__ts_gelu(6.0f) == 6.0f);    /* Phi(-6) = 1e-9 < 2^-25 */
    ck_assert(gb__ts_gelu_tanh(INFINITY) == INFINITY && isnan(gb__ts_gelu_tanh(-INFINITY)) && isnan(gb__ts_gelu_tanh(NAN)));
    ck_assert(gb__ts_gelu_tanh(-10.0f) < 0.0f); /* -10 sigmoid(-87.3) = -1.2e-37 */
}
END_TEST

/* softmax uses the same exp: a masked -inf logit gets exactly 0, and a row
 * whose max is far above the rest gives subnormals, not 0, where exp does. */
START_TEST(test_softmax_uses_full_range_exp) {
    float v[4] = {0.0f, -INFINITY, -100.0f, -200.0f};
    gb_tensor *x = gb_from_data(v, 1, (int64_t[]){4}, GB_DTYPE_F32), *y = gb_softmax(x, 0);
    gbt_ok(y);
    const float *p = gb_tensor_f32(y);
    ck_assert(p[0] == 1.0f && p[1] == 0.0f && p[3] == 0.0f);
    ck_assert_msg(p[2] == (float)exp(-100.0), "softmax: exp(-100) = %a, libm %a", p[2], (float)exp(-100.0));
    gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

Suite *gb_suite_fastmath(void) {
    Suite *s = suite_create("fastmath");
    TCase *tc = tcase_create("fastmath");
    tcase_set_timeout(tc, exhaustive() ? 4 * 3600 : 120);
    tcase_add_loop_test(tc, test_fastmath_accuracy, 0, NFUNCS);
    tcase_add_test(tc, test_fastmath_limits);
    tcase_add_test(tc, test_softmax_uses_full_range_exp);
    suite_add_tcase(s, tc);
    return s;
}
