/* Elementwise ops: arithmetic with broadcasting, tensor-scalar arithmetic,
 * activations, comparisons, where and masked_fill.
 *
 * A differentiable op is one table row: its value and its partial
 * derivatives side by side (GB__UNARY, GB__BINARY below). The row expands to
 * the op's gb__ts_op_NAME_forward and gb__ts_op_NAME_backward, each a plain loop
 * over contiguous f32 arrays plus a strided loop (gb__ts_iter) for views and
 * broadcasting. A derivative may read only what the op's SAVES entry in
 * ops_elementwise.def names (x: SRC(0), y: OUT), so that autograd's version
 * check covers every value a backward uses.
 *
 * Gradients of broadcast inputs are summed into the input's shape: the
 * backward walks the output and adds into dsrc through the strides a
 * contiguous tensor of the input's shape would have if expanded to the
 * output (0 on broadcast dims). Those adds collide across elements, so that
 * loop runs on one thread; every other loop splits its elements across
 * threads, each element computed by one thread in a fixed order.
 *
 * The contiguous loops are `omp simd` (GCC's -O2 cost model vectorises
 * nothing without it), compiled for AVX-512, AVX2 and the baseline
 * (GB__CLONES, simd.h), and every function they call is forced inline, so
 * they vectorise; exp, tanh, sigmoid, silu and the gelus come from
 * fastmath.h rather than libm for the same reason. */
#include "elementwise_impl.h"
#include "fastmath.h"
#include "simd.h" /* GB__CLONES: AVX-512 / AVX2 / baseline versions of the contiguous loops */

#include <math.h>
#include <string.h>

/* Strides that walk a contiguous gradient of src's shape while iterating
 * out's shape (0 on broadcast dims). */
static void gb__ts_grad_strides(const gb_tensor *src, const gb_tensor *out, int64_t *stride) {
    gb_tensor c = {.ndim = src->ndim};
    memcpy(c.shape, src->shape, sizeof c.shape);
    gb__ts_contiguous_strides(c.ndim, c.shape, c.stride);
    gb__ts_broadcast_strides(&c, out->ndim, out->shape, stride);
}

/* Whether t is contiguous with out's number of elements (then, being
 * broadcastable to out, it has out's shape up to leading 1s). */
static bool gb__ts_same_flat(const gb_tensor *t, const gb_tensor *out) {
    return gb_tensor_is_contiguous(t) && gb_tensor_numel(t) == gb_tensor_numel(out);
}

/* ---- unary ops and tensor-scalar ops ------------------------------------ */

/* GB__UNARY(NAME, y, dy/dx): the expressions read x (the input element),
 * y (the output element, derivative only) and p (the op's fparam). */
#define GB__UNARY(NAME, Y, DYDX)                                                                                      \
    static GB__INLINE float gb__##NAME##_y(float x, const float *p) {                                                 \
        (void)p;                                                                                                      \
        return (Y);                                                                                                   \
    }                                                                                                                 \
    static GB__INLINE float gb__##NAME##_dydx(float x, float y, const float *p) {                                     \
        (void)x, (void)y, (void)p;                                                                                    \
        return (DYDX);                                                                                                \
    }                                                                                                                 \
    static GB__CLONES void gb__##NAME##_span(float *restrict y, const float *restrict x, const float *p, int64_t n) { \
        _Pragma("omp simd")                                                                                           \
        for (int64_t i = 0; i < n; i++) y[i] = gb__##NAME##_y(x[i], p);                                               \
    }                                                                                                                 \
    static GB__CLONES void gb__##NAME##_span_backward(float *restrict dx, const float *x, const float *y,             \
                                                      const float *dy, const float *p, int64_t n) {                   \
        _Pragma("omp simd")                                                                                           \
        for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * gb__##NAME##_dydx(x[i], y[i], p);                            \
    }                                                                                                                 \
    gb_status gb__ts_op_##NAME##_forward(gb_tensor *out) {                                                               \
        const gb_tensor *src = out->src[0];                                                                           \
        const float *x = gb_tensor_data(src); /* src's strides */                                                     \
        float *y = gb_tensor_data(out);       /* [n] */                                                               \
        const float *p = out->fparam;                                                                                 \
        int64_t n = gb_tensor_numel(out);                                                                             \
        if (gb_tensor_is_contiguous(src)) {                                                                           \
            _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                              \
            {                                                                                                         \
                int64_t lo, hi;                                                                                       \
                gb__ts_thread_range(n, &lo, &hi);                                                                        \
                gb__##NAME##_span(y + lo, x + lo, p, hi - lo);                                                        \
            }                                                                                                         \
            return GB_OK;                                                                                             \
        }                                                                                                             \
        _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                                  \
        {                                                                                                             \
            gb__ts_iter it;                                                                                              \
            int64_t lo, hi;                                                                                           \
            gb__ts_iter_share(&it, src->ndim, src->shape, 1, (const int64_t *[]){src->stride}, &lo, &hi);                \
            for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it)) y[i] = gb__##NAME##_y(x[it.off[0]], p);             \
        }                                                                                                             \
        return GB_OK;                                                                                                 \
    }                                                                                                                 \
    gb_status gb__ts_op_##NAME##_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {                     \
        if (!dsrc[0]) return GB_OK;                                                                                   \
        const gb_tensor *src = out->src[0];                                                                           \
        const float *x = gb_tensor_data(src);   /* src's strides */                                                   \
        const float *y = gb_tensor_data(out);   /* [n] */                                                             \
        const float *dy = gb_tensor_data(dout); /* [n] */                                                             \
        float *dx = gb_tensor_data(dsrc[0]);    /* [n] */                                                             \
        const float *p = out->fparam;                                                                                 \
        int64_t n = gb_tensor_numel(out);                                                                             \
        if (gb_tensor_is_contiguous(src)) {                                                                           \
            _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                              \
            {                                                                                                         \
                int64_t lo, hi;                                                                                       \
                gb__ts_thread_range(n, &lo, &hi);                                                                        \
                gb__##NAME##_span_backward(dx + lo, x + lo, y + lo, dy + lo, p, hi - lo);                             \
            }                                                                                                         \
            return GB_OK;                                                                                             \
        }                                                                                                             \
        _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                                  \
        {                                                                                                             \
            gb__ts_iter it;                                                                                              \
            int64_t lo, hi;                                                                                           \
            gb__ts_iter_share(&it, src->ndim, src->shape, 1, (const int64_t *[]){src->stride}, &lo, &hi);                \
            for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it))                                                     \
                dx[i] += dy[i] * gb__##NAME##_dydx(x[it.off[0]], y[i], p);                                            \
        }                                                                                                             \
        return GB_OK;                                                                                                 \
    }

/* NaN passes through, as torch.clamp does (fmaxf would drop it). */
static GB__INLINE float gb__ts_clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* torch's pow backward: no gradient where the exponent is 0 (even at x = 0). */
static GB__INLINE float gb__ts_pow_dx(float x, float e) { return e == 0.0f ? 0.0f : e * powf(x, e - 1.0f); }

/*        NAME          y                                  dy/dx */
GB__UNARY(ADD_SCALAR,   x + p[0],                          1.0f)
GB__UNARY(SUB_SCALAR,   x - p[0],                          1.0f)
GB__UNARY(RSUB_SCALAR,  p[0] - x,                          -1.0f)
GB__UNARY(MUL_SCALAR,   x * p[0],                          p[0])
GB__UNARY(DIV_SCALAR,   x / p[0],                          1.0f / p[0])
GB__UNARY(POW_SCALAR,   powf(x, p[0]),                     gb__ts_pow_dx(x, p[0]))
GB__UNARY(NEG,          -x,                                -1.0f)
GB__UNARY(EXP,          gb__ts_exp(x),                        y)
GB__UNARY(LOG,          logf(x),                           1.0f / x)
GB__UNARY(SQRT,         sqrtf(x),                          0.5f / y)
GB__UNARY(RSQRT,        1.0f / sqrtf(x),                   -0.5f * y * y * y)
GB__UNARY(TANH,         gb__ts_tanh(x),                       1.0f - y * y)
GB__UNARY(SIGMOID,      gb__ts_sigmoid(x),                    y * (1.0f - y))
GB__UNARY(ABS,          fabsf(x),                          (float)((x > 0.0f) - (x < 0.0f)))
GB__UNARY(CLAMP,        gb__ts_clampf(x, p[0], p[1]),         x >= p[0] && x <= p[1] ? 1.0f : 0.0f)
GB__UNARY(RELU,         x > 0.0f || isnan(x) ? x : 0.0f,   y > 0.0f ? 1.0f : 0.0f)
GB__UNARY(GELU,         gb__ts_gelu(x),                       gb__ts_gelu_dx(x))
GB__UNARY(GELU_TANH,    gb__ts_gelu_tanh(x),                  gb__ts_gelu_tanh_dx(x))
GB__UNARY(SILU,         gb__ts_silu(x),                       gb__ts_silu_dx(x))

static gb_tensor *gb__ts_unary(gb_op op, gb_tensor *a, float p0, float p1) {
    const char *what = gb__ts_ops[op].name;
    if (gb__ts_check_f32(what, "a", a)) return NULL;
    gb_tensor *out = gb__ts_op_new(op, what, GB_DTYPE_F32, a->ndim, a->shape, 1, &a);
    if (!out) return NULL;
    out->fparam[0] = p0;
    out->fparam[1] = p1;
    return gb__ts_op_run(out);
}

gb_tensor *gb_add_scalar(gb_tensor *a, float s) { return gb__ts_unary(GB_OP_ADD_SCALAR, a, s, 0); }
gb_tensor *gb_sub_scalar(gb_tensor *a, float s) { return gb__ts_unary(GB_OP_SUB_SCALAR, a, s, 0); }
gb_tensor *gb_rsub_scalar(gb_tensor *a, float s) { return gb__ts_unary(GB_OP_RSUB_SCALAR, a, s, 0); }
gb_tensor *gb_mul_scalar(gb_tensor *a, float s) { return gb__ts_unary(GB_OP_MUL_SCALAR, a, s, 0); }
gb_tensor *gb_div_scalar(gb_tensor *a, float s) { return gb__ts_unary(GB_OP_DIV_SCALAR, a, s, 0); }
gb_tensor *gb_pow_scalar(gb_tensor *a, float p) { return gb__ts_unary(GB_OP_POW_SCALAR, a, p, 0); }
gb_tensor *gb_neg(gb_tensor *a) { return gb__ts_unary(GB_OP_NEG, a, 0, 0); }
gb_tensor *gb_exp(gb_tensor *a) { return gb__ts_unary(GB_OP_EXP, a, 0, 0); }
gb_tensor *gb_log(gb_tensor *a) { return gb__ts_unary(GB_OP_LOG, a, 0, 0); }
gb_tensor *gb_sqrt(gb_tensor *a) { return gb__ts_unary(GB_OP_SQRT, a, 0, 0); }
gb_tensor *gb_rsqrt(gb_tensor *a) { return gb__ts_unary(GB_OP_RSQRT, a, 0, 0); }
gb_tensor *gb_tanh(gb_tensor *a) { return gb__ts_unary(GB_OP_TANH, a, 0, 0); }
gb_tensor *gb_sigmoid(gb_tensor *a) { return gb__ts_unary(GB_OP_SIGMOID, a, 0, 0); }
gb_tensor *gb_abs(gb_tensor *a) { return gb__ts_unary(GB_OP_ABS, a, 0, 0); }
gb_tensor *gb_clamp(gb_tensor *a, float min, float max) { return gb__ts_unary(GB_OP_CLAMP, a, min, max); }
gb_tensor *gb_relu(gb_tensor *a) { return gb__ts_unary(GB_OP_RELU, a, 0, 0); }
gb_tensor *gb_gelu(gb_tensor *a) { return gb__ts_unary(GB_OP_GELU, a, 0, 0); }
gb_tensor *gb_gelu_tanh(gb_tensor *a) { return gb__ts_unary(GB_OP_GELU_TANH, a, 0, 0); }
gb_tensor *gb_silu(gb_tensor *a) { return gb__ts_unary(GB_OP_SILU, a, 0, 0); }

/* a = silu(a) * b in place, one pass for what silu then mul make in two
 * (the same bits: silu's result is rounded to float before the product). */
static GB__CLONES void gb__ts_silu_mul_span(float *restrict a, const float *restrict b, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) a[i] = gb__SILU_y(a[i], NULL) * b[i];
}

bool gb__ts_silu_mul_(gb_tensor *a, const gb_tensor *b) {
    if (a->dtype != GB_DTYPE_F32 || b->dtype != GB_DTYPE_F32 || !gb__ts_same_flat(b, a) ||
        !gb_tensor_is_contiguous(a) || a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * a->ndim) ||
        gb__is_meta(a) || gb__is_meta(b) || (gb__ts_grad_mode() && (a->requires_grad || b->requires_grad)) ||
        atomic_load(&a->refcount) != 1 || atomic_load(&a->storage->refcount) != 1)
        return false;
    float *x = gb_tensor_data(a);       /* [n] */
    const float *y = gb_tensor_data(b); /* [n] */
    int64_t n = gb_tensor_numel(a);
#pragma omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)
    {
        int64_t lo, hi;
        gb__ts_thread_range(n, &lo, &hi);
        gb__ts_silu_mul_span(x + lo, y + lo, hi - lo);
    }
    gb__ts_bump_version(a);
    return true;
}

/* ---- binary ops, broadcasting ------------------------------------------- */

/* GB__BINARY(NAME, y, dy/da, dy/db): the expressions read a and b.
 * GB__BINARY_FORWARD(NAME, y) is its forward alone, for an op whose
 * backward is written by hand. */
#define GB__BINARY_FORWARD(NAME, Y)                                                                                   \
    static GB__INLINE float gb__##NAME##_y(float a, float b) { return (Y); }                                          \
    static GB__CLONES void gb__##NAME##_span(float *restrict y, const float *a, const float *b, int64_t n) {          \
        _Pragma("omp simd")                                                                                           \
        for (int64_t i = 0; i < n; i++) y[i] = gb__##NAME##_y(a[i], b[i]);                                            \
    }                                                                                                                 \
    gb_status gb__ts_op_##NAME##_forward(gb_tensor *out) {                                                               \
        const gb_tensor *ta = out->src[0], *tb = out->src[1];                                                         \
        const float *a = gb_tensor_data(ta), *b = gb_tensor_data(tb); /* their strides */                             \
        float *y = gb_tensor_data(out);                               /* [n] */                                       \
        int64_t n = gb_tensor_numel(out);                                                                             \
        if (gb__ts_same_flat(ta, out) && gb__ts_same_flat(tb, out)) {                                                       \
            _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                              \
            {                                                                                                         \
                int64_t lo, hi;                                                                                       \
                gb__ts_thread_range(n, &lo, &hi);                                                                        \
                gb__##NAME##_span(y + lo, a + lo, b + lo, hi - lo);                                                   \
            }                                                                                                         \
            return GB_OK;                                                                                             \
        }                                                                                                             \
        int64_t sa[GB_MAX_DIMS], sb[GB_MAX_DIMS];                                                                     \
        gb__ts_broadcast_strides(ta, out->ndim, out->shape, sa);                                                         \
        gb__ts_broadcast_strides(tb, out->ndim, out->shape, sb);                                                         \
        _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                                  \
        {                                                                                                             \
            gb__ts_iter it;                                                                                              \
            int64_t lo, hi;                                                                                           \
            gb__ts_iter_share(&it, out->ndim, out->shape, 2, (const int64_t *[]){sa, sb}, &lo, &hi);                     \
            for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it))                                                     \
                y[i] = gb__##NAME##_y(a[it.off[0]], b[it.off[1]]);                                                    \
        }                                                                                                             \
        return GB_OK;                                                                                                 \
    }
#define GB__BINARY(NAME, Y, DYDA, DYDB)                                                                               \
    GB__BINARY_FORWARD(NAME, Y)                                                                                       \
    static GB__INLINE float gb__##NAME##_dyda(float a, float b) {                                                     \
        (void)a, (void)b;                                                                                             \
        return (DYDA);                                                                                                \
    }                                                                                                                 \
    static GB__INLINE float gb__##NAME##_dydb(float a, float b) {                                                     \
        (void)a, (void)b;                                                                                             \
        return (DYDB);                                                                                                \
    }                                                                                                                 \
    gb_status gb__ts_op_##NAME##_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {                     \
        const gb_tensor *ta = out->src[0], *tb = out->src[1];                                                         \
        const float *a = gb_tensor_data(ta), *b = gb_tensor_data(tb); /* their strides */                             \
        const float *dy = gb_tensor_data(dout);                       /* [n] */                                       \
        float *da = dsrc[0] ? gb_tensor_data(dsrc[0]) : NULL;         /* [numel a] */                                 \
        float *db = dsrc[1] ? gb_tensor_data(dsrc[1]) : NULL;         /* [numel b] */                                 \
        int64_t n = gb_tensor_numel(out);                                                                             \
        if (gb__ts_same_flat(ta, out) && gb__ts_same_flat(tb, out)) {                                                       \
            _Pragma("omp parallel for num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                          \
            for (int64_t i = 0; i < n; i++) {                                                                         \
                if (da) da[i] += dy[i] * gb__##NAME##_dyda(a[i], b[i]);                                               \
                if (db) db[i] += dy[i] * gb__##NAME##_dydb(a[i], b[i]);                                               \
            }                                                                                                         \
            return GB_OK;                                                                                             \
        }                                                                                                             \
        int64_t sa[GB_MAX_DIMS], sb[GB_MAX_DIMS], ga[GB_MAX_DIMS], gb[GB_MAX_DIMS];                                   \
        gb__ts_broadcast_strides(ta, out->ndim, out->shape, sa);                                                         \
        gb__ts_broadcast_strides(tb, out->ndim, out->shape, sb);                                                         \
        gb__ts_grad_strides(ta, out, ga);                                                                                \
        gb__ts_grad_strides(tb, out, gb);                                                                                \
        bool par = n > GB__PAR_MIN_WORK && (!da || gb_tensor_numel(ta) == n) &&                                       \
                   (!db || gb_tensor_numel(tb) == n);                                                                 \
        _Pragma("omp parallel num_threads(gb__threads()) if (par)")                                                   \
        {                                                                                                             \
            gb__ts_iter it;                                                                                              \
            int64_t lo, hi;                                                                                           \
            gb__ts_iter_share(&it, out->ndim, out->shape, 4, (const int64_t *[]){sa, sb, ga, gb}, &lo, &hi);             \
            for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it)) {                                                   \
                float va = a[it.off[0]], vb = b[it.off[1]];                                                           \
                if (da) da[it.off[2]] += dy[i] * gb__##NAME##_dyda(va, vb);                                           \
                if (db) db[it.off[3]] += dy[i] * gb__##NAME##_dydb(va, vb);                                           \
            }                                                                                                         \
        }                                                                                                             \
        return GB_OK;                                                                                                 \
    }

/* NaN wins, as in torch.maximum / torch.minimum. */
static GB__INLINE float gb__ts_maxf(float a, float b) { return isnan(a) || isnan(b) ? a + b : (a > b ? a : b); }
static GB__INLINE float gb__ts_minf(float a, float b) { return isnan(a) || isnan(b) ? a + b : (a < b ? a : b); }

/* torch: the exponent gets no gradient where a = 0 and b >= 0 (the limit of
 * a^b log a there is 0, not the NaN the product gives). */
static GB__INLINE float gb__ts_pow_db(float a, float b) { return a == 0.0f && b >= 0.0f ? 0.0f : powf(a, b) * logf(a); }

/* torch.remainder and torch.floor_divide on floats (ATen's
 * div_floor_floating): fmod is exact, and the remainder takes the
 * divisor's sign; the quotient (a - mod) / b is nearly integral and rounds
 * to the nearest integer, so a // b * b + a % b == a as closely as floats
 * allow. Division by zero gives NaN (remainder) and a / b (quotient). */
static GB__INLINE float gb__ts_remf(float a, float b) {
    float m = fmodf(a, b);
    return m != 0.0f && (b < 0.0f) != (m < 0.0f) ? m + b : m;
}
static GB__INLINE float gb__ts_floordivf(float a, float b) {
    if (b == 0.0f) return a / b;
    float m = fmodf(a, b), q = (a - m) / b;
    if (m != 0.0f && (b < 0.0f) != (m < 0.0f)) q -= 1.0f;
    if (q == 0.0f) return copysignf(0.0f, a / b);
    float f = floorf(q);
    return q - f > 0.5f ? f + 1.0f : f;
}

/* Ties split the gradient in halves, as torch's maximum/minimum backward. */
/*         NAME      y                dy/da                                  dy/db */
GB__BINARY(ADD,      a + b,           1.0f,                                  1.0f)
GB__BINARY(SUB,      a - b,           1.0f,                                  -1.0f)
GB__BINARY(MUL,      a * b,           b,                                     a)
GB__BINARY(DIV,      a / b,           1.0f / b,                              -(a / b) / b)
GB__BINARY(POW,      powf(a, b),      gb__ts_pow_dx(a, b),                      gb__ts_pow_db(a, b))
GB__BINARY(MAXIMUM,  gb__ts_maxf(a, b),  a == b ? 0.5f : (a < b ? 0.0f : 1.0f), a == b ? 0.5f : (a > b ? 0.0f : 1.0f))
GB__BINARY(MINIMUM,  gb__ts_minf(a, b),  a == b ? 0.5f : (a > b ? 0.0f : 1.0f), a == b ? 0.5f : (a < b ? 0.0f : 1.0f))
GB__BINARY(REMAINDER, gb__ts_remf(a, b), 1.0f,                                -gb__ts_floordivf(a, b))
GB__BINARY_FORWARD(FLOOR_DIVIDE, gb__ts_floordivf(a, b))

/* floor_divide records, as in PyTorch, so that a backward through it fails
 * there with PyTorch's words rather than finding no gradient at all. */
gb_status gb__ts_op_FLOOR_DIVIDE_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    (void)dout, (void)dsrc;
    return gb__fail(GB_ERR_AUTOGRAD, "floor_divide: derivative for aten::floor_divide is not implemented (result %s)",
                    GB__SHAPE_STR(out));
}

static gb_tensor *gb__ts_binary(gb_op op, gb_tensor *a, gb_tensor *b) {
    const char *what = gb__ts_ops[op].name;
    if (gb__ts_check_f32(what, "a", a) || gb__ts_check_f32(what, "b", b)) return NULL;
    int nd;
    int64_t shape[GB_MAX_DIMS];
    if (gb__ts_broadcast_shapes(what, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    gb_tensor *out = gb__ts_op_new(op, what, GB_DTYPE_F32, nd, shape, 2, (gb_tensor *[]){a, b});
    return out ? gb__ts_op_run(out) : NULL;
}

gb_tensor *gb_add(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_ADD, a, b); }
gb_tensor *gb_sub(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_SUB, a, b); }
gb_tensor *gb_mul(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_MUL, a, b); }
gb_tensor *gb_div(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_DIV, a, b); }
gb_tensor *gb_pow(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_POW, a, b); }
gb_tensor *gb_maximum(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_MAXIMUM, a, b); }
gb_tensor *gb_minimum(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_MINIMUM, a, b); }
gb_tensor *gb_remainder(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_REMAINDER, a, b); }
gb_tensor *gb_floor_divide(gb_tensor *a, gb_tensor *b) { return gb__ts_binary(GB_OP_FLOOR_DIVIDE, a, b); }

/* ---- comparisons -------------------------------------------------------- */

/* Any dtype compares by value (loaded as double, exact up to 2^53; two
 * int64 tensors compare as int64); the result is a
 * bool tensor without gradient. The backward exists for the op table only:
 * the result never records, so autograd cannot reach it. */
static gb_status gb__ts_not_differentiable(const gb_tensor *out) {
    return gb__fail(GB_ERR_AUTOGRAD, "%s: the result %s is not differentiable", gb__ts_ops[out->op].name,
                    GB__SHAPE_STR(out));
}

#define GB__COMPARE(NAME, OP)                                                                                         \
    gb_status gb__ts_op_##NAME##_forward(gb_tensor *out) {                                                               \
        const gb_tensor *ta = out->src[0], *tb = out->src[1];                                                         \
        const void *a = gb_tensor_data(ta), *b = gb_tensor_data(tb); /* their strides */                              \
        uint8_t *y = gb_tensor_data(out);                            /* [n] */                                        \
        int64_t n = gb_tensor_numel(out);                                                                             \
        if (ta->dtype == GB_DTYPE_F32 && tb->dtype == GB_DTYPE_F32 && gb__ts_same_flat(ta, out) &&                       \
            gb__ts_same_flat(tb, out)) {                                                                                 \
            const float *fa = a, *fb = b;                                                                             \
            _Pragma("omp parallel for num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                          \
            for (int64_t i = 0; i < n; i++) y[i] = fa[i] OP fb[i];                                                    \
            return GB_OK;                                                                                             \
        }                                                                                                             \
        int64_t sa[GB_MAX_DIMS], sb[GB_MAX_DIMS];                                                                     \
        gb__ts_broadcast_strides(ta, out->ndim, out->shape, sa);                                                         \
        gb__ts_broadcast_strides(tb, out->ndim, out->shape, sb);                                                         \
        _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                                  \
        {                                                                                                             \
            gb__ts_iter it;                                                                                              \
            int64_t lo, hi;                                                                                           \
            gb__ts_iter_share(&it, out->ndim, out->shape, 2, (const int64_t *[]){sa, sb}, &lo, &hi);                     \
            if (ta->dtype == GB_DTYPE_I64 && tb->dtype == GB_DTYPE_I64) /* exact past 2^53 */                          \
                for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it))                                                 \
                    y[i] = ((const int64_t *)a)[it.off[0]] OP((const int64_t *)b)[it.off[1]];                          \
            else                                                                                                      \
                for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it))                                                 \
                    y[i] = gb__ts_load_any(a, ta->dtype, it.off[0]) OP gb__ts_load_any(b, tb->dtype, it.off[1]);            \
        }                                                                                                             \
        return GB_OK;                                                                                                 \
    }                                                                                                                 \
    gb_status gb__ts_op_##NAME##_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {                     \
        (void)dout, (void)dsrc;                                                                                       \
        return gb__ts_not_differentiable(out);                                                                           \
    }

/* The scalar (fparam[0]) compares as float, as torch converts a Python
 * number to the tensor's float dtype. */
#define GB__COMPARE_SCALAR(NAME, OP)                                                                                  \
    gb_status gb__ts_op_##NAME##_forward(gb_tensor *out) {                                                               \
        const gb_tensor *ta = out->src[0];                                                                            \
        const void *a = gb_tensor_data(ta); /* its strides */                                                         \
        uint8_t *y = gb_tensor_data(out);   /* [n] */                                                                 \
        double s = out->fparam[0];                                                                                    \
        int64_t n = gb_tensor_numel(out);                                                                             \
        _Pragma("omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)")                                  \
        {                                                                                                             \
            gb__ts_iter it;                                                                                              \
            int64_t lo, hi;                                                                                           \
            gb__ts_iter_share(&it, ta->ndim, ta->shape, 1, (const int64_t *[]){ta->stride}, &lo, &hi);                   \
            for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it)) y[i] = gb__ts_load_any(a, ta->dtype, it.off[0]) OP s;  \
        }                                                                                                             \
        return GB_OK;                                                                                                 \
    }                                                                                                                 \
    gb_status gb__ts_op_##NAME##_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {                     \
        (void)dout, (void)dsrc;                                                                                       \
        return gb__ts_not_differentiable(out);                                                                           \
    }

GB__COMPARE(EQ, ==)
GB__COMPARE(NE, !=)
GB__COMPARE(LT, <)
GB__COMPARE(LE, <=)
GB__COMPARE(GT, >)
GB__COMPARE(GE, >=)
GB__COMPARE_SCALAR(EQ_SCALAR, ==)
GB__COMPARE_SCALAR(GT_SCALAR, >)
GB__COMPARE_SCALAR(LT_SCALAR, <)

static gb_tensor *gb__ts_compare(gb_op op, gb_tensor *a, gb_tensor *b) {
    const char *what = gb__ts_ops[op].name;
    if (gb__ts_check_input(what, "a", a) || gb__ts_check_input(what, "b", b)) return NULL;
    int nd;
    int64_t shape[GB_MAX_DIMS];
    if (gb__ts_broadcast_shapes(what, a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) return NULL;
    gb_tensor *out = gb__ts_op_new(op, what, GB_DTYPE_BOOL, nd, shape, 2, (gb_tensor *[]){a, b});
    if (!out) return NULL;
    out->requires_grad = false;
    return gb__ts_op_run(out);
}

static gb_tensor *gb__ts_compare_scalar(gb_op op, gb_tensor *a, float s) {
    const char *what = gb__ts_ops[op].name;
    if (gb__ts_check_input(what, "a", a)) return NULL;
    gb_tensor *out = gb__ts_op_new(op, what, GB_DTYPE_BOOL, a->ndim, a->shape, 1, &a);
    if (!out) return NULL;
    out->fparam[0] = s;
    out->requires_grad = false;
    return gb__ts_op_run(out);
}

gb_tensor *gb_eq(gb_tensor *a, gb_tensor *b) { return gb__ts_compare(GB_OP_EQ, a, b); }
gb_tensor *gb_ne(gb_tensor *a, gb_tensor *b) { return gb__ts_compare(GB_OP_NE, a, b); }
gb_tensor *gb_lt(gb_tensor *a, gb_tensor *b) { return gb__ts_compare(GB_OP_LT, a, b); }
gb_tensor *gb_le(gb_tensor *a, gb_tensor *b) { return gb__ts_compare(GB_OP_LE, a, b); }
gb_tensor *gb_gt(gb_tensor *a, gb_tensor *b) { return gb__ts_compare(GB_OP_GT, a, b); }
gb_tensor *gb_ge(gb_tensor *a, gb_tensor *b) { return gb__ts_compare(GB_OP_GE, a, b); }
gb_tensor *gb_eq_scalar(gb_tensor *a, float s) { return gb__ts_compare_scalar(GB_OP_EQ_SCALAR, a, s); }
gb_tensor *gb_gt_scalar(gb_tensor *a, float s) { return gb__ts_compare_scalar(GB_OP_GT_SCALAR, a, s); }
gb_tensor *gb_lt_scalar(gb_tensor *a, float s) { return gb__ts_compare_scalar(GB_OP_LT_SCALAR, a, s); }

/* ---- where and masked_fill ---------------------------------------------- */

static gb_status gb__ts_check_bool(const char *op, const char *arg, const gb_tensor *t) {
    if (gb__ts_check_input(op, arg, t)) return GB_ERR_ARG;
    if (t->dtype != GB_DTYPE_BOOL)
        return gb__fail(GB_ERR_DTYPE, "%s: expected %s to be a bool tensor, but got %s %s; make one with a comparison "
                        "(e.g. gb_gt_scalar) or gb_to_dtype(t, GB_DTYPE_BOOL)",
                        op, arg, gb_dtype_name(t->dtype), GB__SHAPE_STR(t));
    return GB_OK;
}

/* WHERE: y = cond ? a : b; each of a and b gets the gradient where it was chosen. */
gb_status gb__ts_op_WHERE_forward(gb_tensor *out) {
    const gb_tensor *tc = out->src[0], *ta = out->src[1], *tb = out->src[2];
    const uint8_t *c = gb_tensor_data(tc);                        /* its strides */
    const float *a = gb_tensor_data(ta), *b = gb_tensor_data(tb); /* their strides */
    float *y = gb_tensor_data(out);                               /* [n] */
    int64_t sc[GB_MAX_DIMS], sa[GB_MAX_DIMS], sb[GB_MAX_DIMS];
    gb__ts_broadcast_strides(tc, out->ndim, out->shape, sc);
    gb__ts_broadcast_strides(ta, out->ndim, out->shape, sa);
    gb__ts_broadcast_strides(tb, out->ndim, out->shape, sb);
    int64_t n = gb_tensor_numel(out);
#pragma omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)
    {
        gb__ts_iter it;
        int64_t lo, hi;
        gb__ts_iter_share(&it, out->ndim, out->shape, 3, (const int64_t *[]){sc, sa, sb}, &lo, &hi);
        for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it)) y[i] = c[it.off[0]] ? a[it.off[1]] : b[it.off[2]];
    }
    return GB_OK;
}

gb_status gb__ts_op_WHERE_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    const gb_tensor *tc = out->src[0], *ta = out->src[1], *tb = out->src[2];
    const uint8_t *c = gb_tensor_data(tc);                /* its strides */
    const float *dy = gb_tensor_data(dout);               /* [n] */
    float *da = dsrc[1] ? gb_tensor_data(dsrc[1]) : NULL; /* [numel a] */
    float *db = dsrc[2] ? gb_tensor_data(dsrc[2]) : NULL; /* [numel b] */
    int64_t sc[GB_MAX_DIMS], ga[GB_MAX_DIMS], gb[GB_MAX_DIMS];
    gb__ts_broadcast_strides(tc, out->ndim, out->shape, sc);
    gb__ts_grad_strides(ta, out, ga);
    gb__ts_grad_strides(tb, out, gb);
    int64_t n = gb_tensor_numel(out);
    bool par = n > GB__PAR_MIN_WORK && (!da || gb_tensor_numel(ta) == n) && (!db || gb_tensor_numel(tb) == n);
#pragma omp parallel num_threads(gb__threads()) if (par)
    {
        gb__ts_iter it;
        int64_t lo, hi;
        gb__ts_iter_share(&it, out->ndim, out->shape, 3, (const int64_t *[]){sc, ga, gb}, &lo, &hi);
        for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it)) {
            if (c[it.off[0]]) {
                if (da) da[it.off[1]] += dy[i];
            } else {
                if (db) db[it.off[2]] += dy[i];
            }
        }
    }
    return GB_OK;
}

gb_tensor *gb_where(gb_tensor *cond, gb_tensor *a, gb_tensor *b) {
    if (gb__ts_check_bool("where", "cond", cond) || gb__ts_check_f32("where", "a", a) || gb__ts_check_f32("where", "b", b))
        return NULL;
    int nab, nd;
    int64_t ab[GB_MAX_DIMS], shape[GB_MAX_DIMS];
    if (gb__ts_broadcast_shapes("where", a->ndim, a->shape, b->ndim, b->shape, &nab, ab) ||
        gb__ts_broadcast_shapes("where", cond->ndim, cond->shape, nab, ab, &nd, shape))
        return NULL;
    gb_tensor *out = gb__ts_op_new(GB_OP_WHERE, "where", GB_DTYPE_F32, nd, shape, 3, (gb_tensor *[]){cond, a, b});
    return out ? gb__ts_op_run(out) : NULL;
}

/* MASKED_FILL: y = mask ? value : a; a gets no gradient where it was replaced. */
gb_status gb__ts_op_MASKED_FILL_forward(gb_tensor *out) {
    const gb_tensor *ta = out->src[0], *tm = out->src[1];
    const float *a = gb_tensor_data(ta);   /* its strides */
    const uint8_t *m = gb_tensor_data(tm); /* its strides */
    float *y = gb_tensor_data(out);        /* [n] */
    float v = out->fparam[0];
    int64_t sa[GB_MAX_DIMS], sm[GB_MAX_DIMS];
    gb__ts_broadcast_strides(ta, out->ndim, out->shape, sa);
    gb__ts_broadcast_strides(tm, out->ndim, out->shape, sm);
    int64_t n = gb_tensor_numel(out);
    int d = out->ndim - 1;
    int64_t da = d >= 0 ? sa[d] : 0, dm = d >= 0 ? sm[d] : 0; /* strides along the last dim */
#pragma omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)
    {
        gb__ts_iter it;
        int64_t lo, hi;
        gb__ts_iter_share(&it, out->ndim, out->shape, 2, (const int64_t *[]){sa, sm}, &lo, &hi);
        /* A run along the last dim at a time: the iterator's step per
         * element cost more than the select (a causal mask over attention
         * scores took 2% of a 128-token forward). */
        for (int64_t i = lo; i < hi;) {
            int64_t run = d >= 0 ? out->shape[d] - it.idx[d] : 1;
            if (run > hi - i) run = hi - i;
            const float *ar = a + it.off[0];   /* [run] by da */
            const uint8_t *mr = m + it.off[1]; /* [run] by dm */
            for (int64_t j = 0; j < run; j++) y[i + j] = mr[j * dm] ? v : ar[j * da];
            i += run;
            if (i < hi) gb__ts_iter_seek(&it, i);
        }
    }
    return GB_OK;
}

gb_status gb__ts_op_MASKED_FILL_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    const gb_tensor *ta = out->src[0], *tm = out->src[1];
    const uint8_t *m = gb_tensor_data(tm);  /* its strides */
    const float *dy = gb_tensor_data(dout); /* [n] */
    float *da = gb_tensor_data(dsrc[0]);    /* [numel a] */
    int64_t sm[GB_MAX_DIMS], ga[GB_MAX_DIMS];
    gb__ts_broadcast_strides(tm, out->ndim, out->shape, sm);
    gb__ts_grad_strides(ta, out, ga);
    int64_t n = gb_tensor_numel(out);
#pragma omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK && gb_tensor_numel(ta) == n)
    {
        gb__ts_iter it;
        int64_t lo, hi;
        gb__ts_iter_share(&it, out->ndim, out->shape, 2, (const int64_t *[]){sm, ga}, &lo, &hi);
        for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it))
            if (!m[it.off[0]]) da[it.off[1]] += dy[i];
    }
    return GB_OK;
}

/* Like torch.masked_fill, a and mask broadcast together (usually the mask to a). */
gb_tensor *gb_masked_fill(gb_tensor *a, gb_tensor *mask, float value) {
    if (gb__ts_check_f32("masked_fill", "a", a) || gb__ts_check_bool("masked_fill", "mask", mask)) return NULL;
    int nd;
    int64_t shape[GB_MAX_DIMS];
    if (gb__ts_broadcast_shapes("masked_fill", a->ndim, a->shape, mask->ndim, mask->shape, &nd, shape)) return NULL;
    gb_tensor *out = gb__ts_op_new(GB_OP_MASKED_FILL, "masked_fill", GB_DTYPE_F32, nd, shape, 2, (gb_tensor *[]){a, mask});
    if (!out) return NULL;
    out->fparam[0] = value;
    return gb__ts_op_run(out);
}
