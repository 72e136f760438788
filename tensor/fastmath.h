/* Private to glassbox: exp, tanh, sigmoid, silu and the two gelus in plain
 * arithmetic that GCC vectorises. A call to libm's expf, tanhf or erff per
 * element stops the vectoriser (it made gelu 3x and softmax 5x slower than
 * PyTorch); these inline into the elementwise and softmax loops instead.
 *
 * Accuracy: the largest error over every one of the 2^32 floats, against
 * the exact value (double-precision libm), in ulp of the result, subnormal
 * results included: exp 0.99, tanh 1.51, gelu_tanh 1.77, gelu 1.96,
 * sigmoid 2.40, silu 3.39; the derivatives silu_dx 1.65, gelu_dx 1.72,
 * gelu_tanh_dx 1.70 (in ulp of the larger of the result and the terms that
 * cancel near its zero). tests/test_fastmath.c checks a dense sample of the
 * whole range, through the ops, against these bounds. NaN in gives NaN out;
 * +-inf give libm's limits (exp: inf, 0; tanh: +-1; sigmoid: 1, 0) and, for
 * silu and the gelus, what the formula x * cdf(x) gives in IEEE arithmetic,
 * as PyTorch does: inf at +inf, NaN at -inf.
 *
 * Style rules that keep the loops vectorised: special cases are bit masks
 * and selects on computed values, not branches (under GCC's default
 * -ftrapping-math a float comparison in a branch keeps the loop from being
 * if-converted); no integer conversion of a value that may be out of range
 * (undefined behaviour); rounding by the 1.5 * 2^23 trick, not floorf.
 * Results do not depend on the vector width or the instruction set: no FMA
 * contraction happens (-std=c11 implies -ffp-contract=off), so a vectorised
 * loop, each AVX2/AVX-512 version of a GB__CLONES function (simd.h) and a
 * scalar call give the same bits. */
#ifndef GB_FASTMATH_H
#define GB_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* Forced inline: a loop only vectorises when every call in it is inlined,
 * and GCC's -O2 heuristics stop inlining gb__ts_exp_parts after a few callers. */
#define GB__FASTMATH static inline __attribute__((always_inline))

GB__FASTMATH uint32_t gb__ts_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

GB__FASTMATH float gb__ts_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* mask ? a : b, for a mask of all ones or all zeros. */
GB__FASTMATH float gb__ts_select(uint32_t mask, float a, float b) {
    return gb__ts_u2f((gb__ts_f2u(a) & mask) | (gb__ts_f2u(b) & ~mask));
}

/* exp(hi + lo) = *m * *s, where lo is a small correction to hi (it lets the
 * gelus pass -x^2/2 exactly, as two floats). Cephes' expf: hi + lo =
 * n ln2 + r with |r| <= ln2/2 (ln2 in two parts, the first with 9 bits so
 * that hi - n*C1 is exact), exp(r) by its degree-7 polynomial, and 2^n in two
 * halves, 2^n1 folded into *m and 2^n2 left in *s: m stays a normal number
 * and the single rounding of m * s gives subnormal results, 0 and overflow
 * to inf correctly (one 2^n factor alone would be subnormal or overflow for
 * |n| > 126). Callers that multiply exp by something first do it on m, then
 * scale by s: exp(-120) is 0 in float, but x * exp(-120) with x = 1e10 is not.
 *
 * Past |hi| > 128 (inf included) *m is the limit, 0 or inf, and NaN gives a
 * quiet NaN, with *s = 1. Those lanes compute exp(0) and then replace the
 * result, so no float to int conversion sees an out-of-range value. */
GB__FASTMATH void gb__ts_exp_parts(float hi, float lo, float *m, float *s) {
    uint32_t ux = gb__ts_f2u(hi);
    int32_t ax = (int32_t)(ux & 0x7fffffffu);          /* signed compares: one instruction each */
    uint32_t special = -(uint32_t)(ax > 0x43000000);   /* |hi| > 128 or NaN */
    uint32_t nan = -(uint32_t)(ax > 0x7f800000);
    uint32_t limit = (nan & (ux | 0x00400000u)) | (~nan & ((ux >> 31) - 1u) & 0x7f800000u); /* NaN, 0 or inf */
    float xh = gb__ts_u2f(ux & ~special), xl = gb__ts_u2f(gb__ts_f2u(lo) & ~special);
    float fn = (xh * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round(x / ln2) */
    float r = (xh - fn * 0.693359375f) + (xl + fn * 2.12194440e-4f);
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t n = (int32_t)fn, n1 = n >> 1, n2 = n - n1; /* |n| <= 185: 2^n1, 2^n2 normal */
    float mm = p * gb__ts_u2f((uint32_t)(n1 + 127) << 23), ss = gb__ts_u2f((uint32_t)(n2 + 127) << 23);
    *m = gb__ts_u2f((gb__ts_f2u(mm) & ~special) | (limit & special));
    *s = gb__ts_u2f((gb__ts_f2u(ss) & ~special) | (0x3f800000u & special));
}

/* exp(x), within 1 ulp of the exact value for every float. */
GB__FASTMATH float gb__ts_exp(float x) {
    float m, s;
    gb__ts_exp_parts(x, 0.0f, &m, &s);
    return m * s;
}

/* x * sigmoid(v), given exp(-|v|) = m * s and neg = all ones when v < 0:
 * x / (1 + e) for v >= 0 and x e / (1 + e) for v < 0, e = exp(-|v|) <= 1,
 * so nothing overflows and there is no cancellation; x * m is formed before
 * the scaling by s so that a subnormal result is rounded once. In float:
 * up to four roundings on top of exp's error (sigmoid 2.4 ulp, silu 3.4),
 * at little more than the cost of exp; in double (below) they would be
 * within 1.5 and 1.7 ulp but cost 70% more arithmetic, which left both
 * slower than PyTorch's on large tensors. */
GB__FASTMATH float gb__ts_mul_sigmoid(float x, float m, float s, uint32_t neg) {
    float e = m * s;
    float num = gb__ts_select(neg, x * m, x), scale = gb__ts_select(neg, s, 1.0f);
    return num / (1.0f + e) * scale;
}

/* The same in double, where x * m and m * s are exact and the result is
 * rounded once (then scaled by s, exactly unless it is subnormal).
 * gelu_tanh uses it: its argument is computed in double anyway, and it
 * stays faster than PyTorch's. */
GB__FASTMATH float gb__ts_mul_sigmoid_double(float x, float m, float s, uint32_t neg) {
    double e = (double)m * (double)s, num = (double)x * (double)gb__ts_select(neg, m, 1.0f);
    return (float)(num / (1.0 + e)) * gb__ts_select(neg, s, 1.0f);
}

GB__FASTMATH float gb__ts_sigmoid(float x) {
    uint32_t ux = gb__ts_f2u(x);
    float m, s;
    gb__ts_exp_parts(gb__ts_u2f(ux | 0x80000000u), 0.0f, &m, &s);
    return gb__ts_mul_sigmoid(1.0f, m, s, -(ux >> 31));
}

GB__FASTMATH float gb__ts_silu(float x) {
    uint32_t ux = gb__ts_f2u(x);
    float m, s;
    gb__ts_exp_parts(gb__ts_u2f(ux | 0x80000000u), 0.0f, &m, &s);
    return gb__ts_mul_sigmoid(x, m, s, -(ux >> 31));
}

/* d silu / dx = sigmoid(x) (1 + x sigmoid(-x)), in the same two halves,
 * in double (like gb__ts_mul_sigmoid_double). */
GB__FASTMATH float gb__ts_silu_dx(float x) {
    uint32_t ux = gb__ts_f2u(x);
    float m, s;
    gb__ts_exp_parts(gb__ts_u2f(ux | 0x80000000u), 0.0f, &m, &s);
    double xd = x, md = m, e = md * (double)s, inv = 1.0 / (1.0 + e);
    float pos = (float)((1.0 + xd * e * inv) * inv);       /* x >= 0: s(x) = 1/(1+e), s(-x) = e/(1+e) */
    float neg = (float)(md * inv * (1.0 + xd * inv)) * s;  /* x < 0:  s(x) = e/(1+e), s(-x) = 1/(1+e) */
    return gb__ts_select(-(ux >> 31), neg, pos);
}

/* tanh: odd, so computed on |x| with x's sign put back (tanh(-0) = -0).
 * Below 0.625, Cephes' tanhf polynomial (relative error 1.3e-7); above,
 * (1 - e) / (1 + e) with e = exp(-2|x|) <= 0.29, which has no cancellation
 * there and reaches exactly 1 from 9.01 on. */
GB__FASTMATH float gb__ts_tanh(float x) {
    uint32_t ux = gb__ts_f2u(x), ax = ux & 0x7fffffffu;
    float a = gb__ts_u2f(ax), z = a * a;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = a + a * (z * p);
    float m, s;
    gb__ts_exp_parts(-2.0f * a, 0.0f, &m, &s);
    float e = m * s, large = (1.0f - e) / (1.0f + e);
    float t = gb__ts_select(-(uint32_t)((int32_t)ax < 0x3f200000), small, large); /* |x| < 0.625 */
    return gb__ts_u2f(gb__ts_f2u(t) | (ux & 0x80000000u));
}

/* ---- gelu (erf) ----------------------------------------------------------
 *
 * gelu(x) = x Phi(x), Phi the standard normal cdf. Written with the
 * complementary tail Phi(-a), a = |x|, so that negative x have no
 * cancellation (1 + erf(x / sqrt 2) loses every digit from x < -5 on):
 *     x < 0:  x Phi(-a)          x >= 0:  x (1 - Phi(-a))
 *     Phi(-a) = exp(-a^2/2) Q(a) / 2,  Q(a) = erfc(a / sqrt 2) exp(a^2/2),
 * Q smooth and decreasing from 1 to ~sqrt(2/pi)/a. exp's argument -a^2/2 is
 * passed exactly as two floats (a split into 12-bit halves), because exp
 * multiplies an error in its argument by the argument's size (about 100
 * where the tail ends).
 * Q is a rational minimax fit of degree 4/5 on [0, 15] (relative error
 * 6.4e-9; Lawson's algorithm against mpmath), evaluated in double: in float
 * the Horner steps alone would cost 3 ulp. */
GB__FASTMATH double gb__ts_gelu_q(float a) {
    /* past 15 (and for NaN) gelu's tail is far below the smallest float */
    double t = gb__ts_select(-(uint32_t)((int32_t)gb__ts_f2u(a) > 0x41700000), 15.0f, a);
    double num = 8.306856267e-03;
    num = num * t + 8.176522702e-02;
    num = num * t + 3.679474890e-01;
    num = num * t + 8.785798550e-01;
    num = num * t + 1.0;
    double den = 1.041098870e-02;
    den = den * t + 1.024836302e-01;
    den = den * t + 4.714207947e-01;
    den = den * t + 1.205567837e+00;
    den = den * t + 1.676464915e+00;
    den = den * t + 1.0;
    return num / den;
}

/* exp(-x^2/2) = *m * *s (see gb__ts_exp_parts), exactly in its argument. */
GB__FASTMATH void gb__ts_exp_half_square(float x, float *m, float *s) {
    float a = gb__ts_u2f(gb__ts_f2u(x) & 0x7fffffffu);
    float ah = gb__ts_u2f(gb__ts_f2u(a) & 0xfffff000u), al = a - ah; /* ah*ah, ah*al exact */
    gb__ts_exp_parts(-0.5f * (ah * ah), -(ah * al + 0.5f * (al * al)), m, s);
}

GB__FASTMATH float gb__ts_gelu(float x) {
    uint32_t neg = -(gb__ts_f2u(x) >> 31);
    float m, s;
    gb__ts_exp_half_square(x, &m, &s);
    double q = gb__ts_gelu_q(gb__ts_u2f(gb__ts_f2u(x) & 0x7fffffffu));
    float yneg = (float)(0.5 * (double)x * (double)m * q) * s; /* x Phi(-a) */
    float ypos = (float)((double)x * (1.0 - 0.5 * (double)m * (double)s * q)); /* x (1 - Phi(-a)) */
    return gb__ts_select(neg, yneg, ypos);
}

/* d gelu / dx = Phi(x) + x phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi). */
GB__FASTMATH float gb__ts_gelu_dx(float x) {
    const double c = 0.3989422804014327; /* 1 / sqrt(2 pi) */
    uint32_t neg = -(gb__ts_f2u(x) >> 31);
    float m, s;
    gb__ts_exp_half_square(x, &m, &s);
    double q = gb__ts_gelu_q(gb__ts_u2f(gb__ts_f2u(x) & 0x7fffffffu));
    float dneg = (float)((double)m * (0.5 * q + (double)x * c)) * s;
    float dpos = (float)(1.0 + (double)m * (double)s * ((double)x * c - 0.5 * q));
    return gb__ts_select(neg, dneg, dpos);
}

/* ---- gelu_tanh (Hugging Face's gelu_new) ---------------------------------
 *
 * 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), which is
 * x sigmoid(v) with v = 2u: no cancellation for negative x. v is computed in
 * double and passed to exp as two floats, because its rounding in float
 * would be multiplied by |v| (about 100 where the tail ends) in the result. */
GB__FASTMATH void gb__ts_gelu_tanh_v(float x, float *m, float *s) {
    /* |x| clamped to 64 (NaN too), where exp(-|v|) is long 0: keeps -|v| in
     * float range; x itself is used in the product, so +-inf and NaN give
     * what the formula gives. */
    uint32_t ax = gb__ts_f2u(x) & 0x7fffffffu;
    double a = gb__ts_select(-(uint32_t)((int32_t)ax > 0x42800000), 64.0f, gb__ts_u2f(ax));
    double nv = -1.5957691216057308 * a * (1.0 + 0.044715 * a * a); /* -|v|, 2 sqrt(2/pi) */
    float hi = (float)nv;
    gb__ts_exp_parts(hi, (float)(nv - (double)hi), m, s);
}

GB__FASTMATH float gb__ts_gelu_tanh(float x) {
    float m, s;
    gb__ts_gelu_tanh_v(x, &m, &s);
    return gb__ts_mul_sigmoid_double(x, m, s, -(gb__ts_f2u(x) >> 31));
}

/* d/dx x sigmoid(v) = sigmoid(v) (1 + x v' sigmoid(-v)), v' = 2 sqrt(2/pi)
 * (1 + 3 * 0.044715 x^2); in double, where x v' cannot overflow. */
GB__FASTMATH float gb__ts_gelu_tanh_dx(float x) {
    float m, s;
    gb__ts_gelu_tanh_v(x, &m, &s);
    double xd = x, xv = xd * 1.5957691216057308 * (1.0 + 3.0 * 0.044715 * xd * xd);
    double e = (double)m * (double)s, inv = 1.0 / (1.0 + e);
    float pos = (float)((1.0 + xv * e * inv) * inv);
    float negv = (float)((double)m * inv * (1.0 + xv * inv)) * s;
    return gb__ts_select(-(gb__ts_f2u(x) >> 31), negv, pos);
}

#endif
