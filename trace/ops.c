/* What the trace's operations compute: arithmetic with PyTorch's type
 * promotion, the functions of GB_TRACE_FN_LIST, and module calls on values.
 * Everything goes through tensor/'s ops (forward and backward formulas in
 * its op table), so gradients flow through every float result; the
 * promotion, integer arithmetic in int64 (exact, as PyTorch's) and the
 * composition of cosine_similarity are the only logic here. */
#include "trace_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool gb__tr_is_floating(gb_dtype dt) { return dt == GB_DTYPE_F32 || dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16; }

/* t as float32: integers and bools converted (no gradient: they have none),
 * f16/bf16 widened; t itself (a new reference) when it is f32. */
static gb_tensor *gb__tr_f32(gb_tensor *t) { return gb_to_dtype(t, GB_DTYPE_F32); }

/* Broadcast shape of n values (PyTorch's rule), or an error naming op. */
static gb_status gb__tr_broadcast_n(const char *op, int n, gb_tensor *const *in, int *nd, int64_t *shape) {
    *nd = 0;
    for (int k = 0; k < n; k++) {
        int na = *nd, nb = gb_tensor_ndim(in[k]), m = na > nb ? na : nb;
        int64_t prev[GB_MAX_DIMS];
        memcpy(prev, shape, sizeof(int64_t) * (size_t)na);
        for (int i = 0; i < m; i++) {
            int64_t x = i < m - na ? 1 : prev[i - (m - na)];
            int64_t y = i < m - nb ? 1 : gb_tensor_shape(in[k])[i - (m - nb)];
            if (x != y && x != 1 && y != 1)
                return gb__fail(GB_ERR_SHAPE, "%s: The size of tensor a (%lld) must match the size of tensor b (%lld) "
                                              "at non-singleton dimension %d", op, (long long)x, (long long)y, i);
            shape[i] = x == 1 ? y : x;
        }
        *nd = m;
    }
    return GB_OK;
}

/* Offset in elements of flat index i of a view with these strides. */
static int64_t gb__tr_offset_of(int64_t i, int nd, const int64_t *shape, const int64_t *stride) {
    int64_t off = 0;
    for (int d = nd - 1; d >= 0; d--) {
        off += (i % shape[d]) * stride[d];
        i /= shape[d];
    }
    return off;
}

/* Integer element functions, exact in int64 (PyTorch keeps integer
 * arithmetic integer; f32 would round past 2^24). Sums and products wrap
 * around as torch's, so they are computed in uint64. */
typedef enum { GB__INT_ADD, GB__INT_SUB, GB__INT_MUL, GB__INT_POW, GB__INT_ABS, GB__INT_WHERE, GB__INT_REMAINDER,
               GB__INT_FLOOR_DIVIDE } gb__tr_int_fn;

static int64_t gb__tr_int_pow(int64_t a, int64_t b) {
    if (b < 0) return a == 1 ? 1 : a == -1 ? (b % 2 ? -1 : 1) : 0; /* torch's integer pow */
    uint64_t r = 1, x = (uint64_t)a;
    for (; b; b >>= 1, x *= x)
        if (b & 1) r *= x;
    return (int64_t)r;
}

/* Python's a % b and a // b (ATen's integer remainder and div_floor): the
 * remainder takes b's sign, the quotient rounds down. b = -1 is apart
 * because INT64_MIN / -1 overflows in C (PyTorch's process dies of SIGFPE
 * there); the quotient wraps around as the other integer ops do. */
static int64_t gb__tr_int_remainder(int64_t a, int64_t b) {
    if (b == -1) return 0;
    int64_t m = a % b;
    return m != 0 && (b < 0) != (m < 0) ? m + b : m;
}

static int64_t gb__tr_int_floor_divide(int64_t a, int64_t b) {
    if (b == -1) return (int64_t)(0 - (uint64_t)a);
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

static int64_t gb__tr_int_apply(gb__tr_int_fn fn, const int64_t *v) {
    switch (fn) {
    case GB__INT_REMAINDER: return gb__tr_int_remainder(v[0], v[1]);
    case GB__INT_FLOOR_DIVIDE: return gb__tr_int_floor_divide(v[0], v[1]);
    case GB__INT_ADD: return (int64_t)((uint64_t)v[0] + (uint64_t)v[1]);
    case GB__INT_SUB: return (int64_t)((uint64_t)v[0] - (uint64_t)v[1]);
    case GB__INT_MUL: return (int64_t)((uint64_t)v[0] * (uint64_t)v[1]);
    case GB__INT_POW: return gb__tr_int_pow(v[0], v[1]);
    case GB__INT_ABS: return v[0] < 0 ? (int64_t)(0 - (uint64_t)v[0]) : v[0];
    default: return v[0] ? v[1] : v[2]; /* where(cond, a, b) */
    }
}

/* fn of n integer (or bool) values broadcast together, as an int64 value. */
static gb_tensor *gb__tr_int_map(const char *what, gb__tr_int_fn fn, int n, gb_tensor *const *in) {
    int nd;
    int64_t shape[GB_MAX_DIMS];
    gb_tensor *e[3] = {0}, *out = NULL;
    if (gb__tr_broadcast_n(what, n, in, &nd, shape) != GB_OK) return NULL;
    for (int i = 0; i < n; i++) {
        gb_tensor *w = gb_to_dtype(in[i], GB_DTYPE_I64);
        e[i] = w ? gb_expand(w, nd, shape) : NULL;
        gb_tensor_free(w);
        if (!e[i]) goto done;
    }
    out = gb_empty(nd, shape, GB_DTYPE_I64);
    if (out && gb_tensor_data(out)) {
        int64_t *z = gb_tensor_data(out); /* [numel] */
        for (int64_t i = 0; i < gb_tensor_numel(out); i++) {
            int64_t v[3];
            for (int k = 0; k < n; k++)
                v[k] = ((const int64_t *)gb_tensor_data(e[k]))[gb__tr_offset_of(i, nd, shape, gb_tensor_strides(e[k]))];
            if ((fn == GB__INT_REMAINDER || fn == GB__INT_FLOOR_DIVIDE) && v[1] == 0) {
                char sa[160], sb[160];
                gb__shape_str(sa, sizeof sa, gb_tensor_ndim(in[0]), gb_tensor_shape(in[0]));
                gb__shape_str(sb, sizeof sb, gb_tensor_ndim(in[1]), gb_tensor_shape(in[1]));
                gb__fail(GB_ERR_ARG, "%s: ZeroDivisionError: integer division by zero (dividend %s, divisor %s), as "
                                     "PyTorch refuses", what, sa, sb);
                gb_tensor_free(out), out = NULL;
                goto done;
            }
            z[i] = gb__tr_int_apply(fn, v);
        }
    }
done:
    for (int i = 0; i < 3; i++) gb_tensor_free(e[i]);
    return out;
}

/* Integer powers: a Python int exponent (a 0-dim value) may not be
 * negative, as in PyTorch; a tensor of exponents follows torch's rule
 * (1, -1 or 0). */
static gb_tensor *gb__tr_int_pow_values(gb_tensor *a, gb_tensor *b) {
    double e;
    if (gb_tensor_ndim(b) == 0 && gb_tensor_data(b) && gb_item(b, &e) == GB_OK && e < 0) {
        char shape[160];
        gb__shape_str(shape, sizeof shape, gb_tensor_ndim(a), gb_tensor_shape(a));
        return gb__fail_null(GB_ERR_ARG, "pow: Integers to negative integer powers are not allowed (base %s, exponent "
                             "%lld); use .float()", shape, (long long)e);
    }
    return gb__tr_int_map("pow", GB__INT_POW, 2, (gb_tensor *[]){a, b});
}

/* Two bools, as PyTorch: + is or and * is and (bool results), - is
 * refused with its message, % and // are not implemented for them. */
static gb_tensor *gb__tr_bool_arith(gb_trace_op op, gb_tensor *a, gb_tensor *b) {
    char sa[160], sb[160];
    gb__shape_str(sa, sizeof sa, gb_tensor_ndim(a), gb_tensor_shape(a));
    gb__shape_str(sb, sizeof sb, gb_tensor_ndim(b), gb_tensor_shape(b));
    if (op == GB_TRACE_OP_SUB)
        return gb__fail_null(GB_ERR_DTYPE, "sub: Subtraction, the `-` operator, with two bool tensors is not supported "
                                           "(%s and %s). Use the `^` or `logical_xor()` operator instead.", sa, sb);
    if (op != GB_TRACE_OP_ADD && op != GB_TRACE_OP_MUL)
        return gb__fail_null(GB_ERR_DTYPE, "%s: \"%s\" not implemented for 'Bool' (%s and %s), as in PyTorch; convert "
                             "first with .long()", gb__tr_trace_op_names[op],
                             op == GB_TRACE_OP_REMAINDER ? "remainder_cpu" : "div_floor_cpu", sa, sb);
    gb_tensor *sum = gb__tr_int_map(gb__tr_trace_op_names[op], op == GB_TRACE_OP_ADD ? GB__INT_ADD : GB__INT_MUL, 2,
                                    (gb_tensor *[]){a, b});
    gb_tensor *r = sum ? gb_to_dtype(sum, GB_DTYPE_BOOL) : NULL;
    gb_tensor_free(sum);
    return r;
}

gb_tensor *gb__tr_arith(gb_trace_op op, gb_tensor *a, gb_tensor *b) {
    bool fa = gb__tr_is_floating(gb_tensor_dtype(a)), fb = gb__tr_is_floating(gb_tensor_dtype(b));
    if (!fa && !fb && op != GB_TRACE_OP_DIV) { /* integers stay integers, exactly */
        if (op == GB_TRACE_OP_MATMUL) {
            gb_tensor *x = gb_to_dtype(a, GB_DTYPE_I64), *y = x ? gb_to_dtype(b, GB_DTYPE_I64) : NULL;
            gb_tensor *r = y ? gb_matmul(x, y) : NULL;
            gb_tensor_free(x), gb_tensor_free(y);
            return r;
        }
        if (gb_tensor_dtype(a) == GB_DTYPE_BOOL && gb_tensor_dtype(b) == GB_DTYPE_BOOL) return gb__tr_bool_arith(op, a, b);
        gb__tr_int_fn fn = op == GB_TRACE_OP_ADD         ? GB__INT_ADD
                           : op == GB_TRACE_OP_SUB       ? GB__INT_SUB
                           : op == GB_TRACE_OP_MUL       ? GB__INT_MUL
                           : op == GB_TRACE_OP_REMAINDER ? GB__INT_REMAINDER
                                                         : GB__INT_FLOOR_DIVIDE;
        return gb__tr_int_map(gb__tr_trace_op_names[op], fn, 2, (gb_tensor *[]){a, b});
    }
    /* A float meets an integer (or / divides integers): the integers become
     * float32. Float operands stay as they are (matmul reads f16/bf16 weights). */
    gb_tensor *x = fa ? gb_tensor_ref(a) : gb__tr_f32(a), *y = fb ? gb_tensor_ref(b) : gb__tr_f32(b), *r = NULL;
    if (x && y) switch (op) {
        case GB_TRACE_OP_ADD: r = gb_add(x, y); break;
        case GB_TRACE_OP_SUB: r = gb_sub(x, y); break;
        case GB_TRACE_OP_MUL: r = gb_mul(x, y); break;
        case GB_TRACE_OP_DIV: r = gb_div(x, y); break;
        case GB_TRACE_OP_REMAINDER: r = gb_remainder(x, y); break;
        case GB_TRACE_OP_FLOOR_DIVIDE: r = gb_floor_divide(x, y); break;
        default: r = gb_matmul(x, y); break;
        }
    gb_tensor_free(x), gb_tensor_free(y);
    return r;
}

/* Functions PyTorch does not compute on integers (softmax, log_softmax,
 * norm, cross_entropy, cosine_similarity): refused with what it says. */
static gb_tensor *gb__tr_not_for_ints(const char *what, const gb_tensor *x) {
    char shape[160];
    gb__shape_str(shape, sizeof shape, gb_tensor_ndim(x), gb_tensor_shape(x));
    return gb__fail_null(GB_ERR_DTYPE, "%s: not implemented for '%s' (input %s), as in PyTorch; convert it first with "
                         ".float()", what, gb_tensor_dtype(x) == GB_DTYPE_BOOL ? "Bool" : "Long", shape);
}

/* x as float32 (floats) or int64 (integers and bools): the two dtypes the
 * tensor layer computes in. */
static gb_tensor *gb__tr_f32_or_i64(gb_tensor *x) {
    return gb_to_dtype(x, gb__tr_is_floating(gb_tensor_dtype(x)) ? GB_DTYPE_F32 : GB_DTYPE_I64);
}

gb_tensor *gb__tr_reduce(const gb_val *v, gb_tensor *x) {
    int dim = v->u.dim.dim;
    bool keepdim = v->u.dim.keepdim;
    if (v->op == GB_TRACE_OP_ARGMAX) return gb_argmax(x, dim, keepdim); /* any dtype */
    if (v->op == GB_TRACE_OP_SOFTMAX && !gb__tr_is_floating(gb_tensor_dtype(x))) return gb__tr_not_for_ints("softmax", x);
    /* integer sums and maxima are int64, exact; a mean of integers the
     * tensor layer refuses as PyTorch does */
    gb_tensor *a = gb__tr_f32_or_i64(x), *r = NULL;
    if (!a) return NULL;
    switch (v->op) {
    case GB_TRACE_OP_SUM: r = gb_sum(a, dim, keepdim); break;
    case GB_TRACE_OP_MEAN: r = gb_mean(a, dim, keepdim); break;
    case GB_TRACE_OP_MAX: r = gb_max(a, dim, keepdim); break;
    case GB_TRACE_OP_SUM_ALL: r = gb_sum_all(a); break;
    default: r = gb_softmax(a, dim); break;
    }
    gb_tensor_free(a);
    return r;
}

/* ---- functions ------------------------------------------------------------ */

/* The dims of p as ints, for the tensor layer's lists. */
static void gb__tr_dims(const gb_fn_params *p, int *dims) {
    for (int i = 0; i < p->n; i++) dims[i] = (int)p->i[i];
}

/* sum of x over p's dims (all when none). */
static gb_tensor *gb__tr_sum_over(gb_tensor *x, const gb_fn_params *p, bool mean) {
    int dims[GB_MAX_DIMS];
    gb__tr_dims(p, dims);
    return mean ? gb_mean_dims(x, p->n, dims, p->keepdim) : gb_sum_dims(x, p->n, dims, p->keepdim);
}

/* torch's cosine_similarity: sum(a b) / sqrt(max(sum(a a) sum(b b), eps^2))
 * over dim, a and b broadcasting. */
static gb_tensor *gb__tr_cosine(gb_tensor *a, gb_tensor *b, int dim, double eps) {
    gb_tensor *ab = gb_mul(a, b), *aa = gb_mul(a, a), *bb = gb_mul(b, b);
    gb_tensor *sab = ab ? gb_sum(ab, dim, false) : NULL, *saa = aa ? gb_sum(aa, dim, false) : NULL,
              *sbb = bb ? gb_sum(bb, dim, false) : NULL;
    gb_tensor *w = saa && sbb ? gb_mul(saa, sbb) : NULL;
    gb_tensor *wc = w ? gb_clamp(w, (float)(eps * eps), INFINITY) : NULL, *n = wc ? gb_sqrt(wc) : NULL;
    gb_tensor *r = sab && n ? gb_div(sab, n) : NULL;
    gb_tensor *all[] = {ab, aa, bb, sab, saa, sbb, w, wc, n};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gb_tensor_free(all[i]);
    return r;
}

/* x without its size-1 dims (torch's squeeze()). */
static gb_tensor *gb__tr_squeeze_all(gb_tensor *x) {
    int64_t shape[GB_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < gb_tensor_ndim(x); d++)
        if (gb_tensor_shape(x)[d] != 1) shape[nd++] = gb_tensor_shape(x)[d];
    return gb_reshape(x, nd, shape);
}

/* cat/stack of values of several dtypes: PyTorch promotes them to one
 * (float32 when any is a float, else int64). */
static gb_status gb__tr_join(const gb_val *v, gb_tensor *const *x, gb_values *out) {
    gb_tensor *ts[GB__MAX_ARGS] = {0};
    bool same = true, floats = false;
    for (int i = 0; i < v->nargs; i++) {
        same &= gb_tensor_dtype(x[i]) == gb_tensor_dtype(x[0]);
        floats |= gb__tr_is_floating(gb_tensor_dtype(x[i]));
    }
    gb_status st = GB_OK;
    for (int i = 0; i < v->nargs && st == GB_OK; i++)
        if (!(ts[i] = same ? gb_tensor_ref(x[i]) : gb_to_dtype(x[i], floats ? GB_DTYPE_F32 : GB_DTYPE_I64)))
            st = gb_last_status();
    int dim = (int)v->u.fn.p->i[0];
    gb_tensor *r = st != GB_OK ? NULL
                   : v->u.fn.fn == GB_TRACE_FN_CAT ? gb_cat(v->nargs, ts, dim)
                                                   : gb_stack(v->nargs, ts, dim);
    for (int i = 0; i < v->nargs; i++) gb_tensor_free(ts[i]);
    if (!r) return gb_last_status();
    return gb_values_push(out, r);
}

/* Functions computed in float32: integer inputs converted first, as
 * PyTorch's float functions do. */
static gb_tensor *gb__tr_float_fn(const gb_val *v, gb_tensor *const *x) {
    const gb_fn_params *p = v->u.fn.p;
    gb_trace_fn f = v->u.fn.fn;
    bool ints = !gb__tr_is_floating(gb_tensor_dtype(x[0])) && (v->nargs < 2 || !gb__tr_is_floating(gb_tensor_dtype(x[1])));
    if (ints && (f == GB_TRACE_FN_LOG_SOFTMAX || f == GB_TRACE_FN_NORM || f == GB_TRACE_FN_COSINE_SIMILARITY))
        return gb__tr_not_for_ints(gb_trace_fn_name(f), x[0]);
    if (ints && f == GB_TRACE_FN_POW) return gb__tr_int_pow_values(x[0], x[1]);
    gb_tensor *a = gb__tr_f32(x[0]), *b = v->nargs > 1 && a ? gb__tr_f32(x[1]) : NULL, *r = NULL;
    if (!a || (v->nargs > 1 && !b)) goto done;
    switch (v->u.fn.fn) {
    case GB_TRACE_FN_EXP: r = gb_exp(a); break;
    case GB_TRACE_FN_LOG: r = (gb_log)(a); break; /* the tensor function, not the trace macro */
    case GB_TRACE_FN_SQRT: r = gb_sqrt(a); break;
    case GB_TRACE_FN_POW: r = gb_pow(a, b); break;
    case GB_TRACE_FN_LOG_SOFTMAX: r = gb_log_softmax(a, (int)p->i[0]); break;
    case GB_TRACE_FN_NORM: {
        int dims[GB_MAX_DIMS];
        gb__tr_dims(p, dims);
        r = gb_norm(a, p->x, p->n, dims, p->keepdim);
        break;
    }
    case GB_TRACE_FN_COSINE_SIMILARITY: r = gb__tr_cosine(a, b, p->n ? (int)p->i[0] : 1, p->x); break;
    default: gb__fail(GB_ERR_ARG, "%s: not a float function", gb_trace_fn_name(v->u.fn.fn)); break;
    }
done:
    gb_tensor_free(a), gb_tensor_free(b);
    return r;
}

/* F.cross_entropy: logits [N, C] with targets [N], or [C] with one target. */
static gb_tensor *gb__tr_cross_entropy(gb_tensor *logits, gb_tensor *targets) {
    if (gb_tensor_dtype(targets) != GB_DTYPE_I64 && gb_tensor_dtype(targets) != GB_DTYPE_I32)
        return gb__fail_null(GB_ERR_DTYPE, "cross_entropy: expected the targets to be class indices (int64), got %s; "
                                           "use .long()", gb_dtype_name(gb_tensor_dtype(targets)));
    if (!gb__tr_is_floating(gb_tensor_dtype(logits))) return gb__tr_not_for_ints("cross_entropy", logits);
    gb_tensor *l = gb__tr_f32(logits);
    if (!l) return NULL;
    gb_tensor *r;
    if (gb_tensor_ndim(l) == 1 && gb_tensor_ndim(targets) == 0) {
        gb_tensor *l2 = gb_unsqueeze(l, 0), *t2 = l2 ? gb_unsqueeze(targets, 0) : NULL;
        r = t2 ? gb_cross_entropy(l2, t2, -100) : NULL;
        gb_tensor_free(l2), gb_tensor_free(t2);
    } else {
        r = gb_cross_entropy(l, targets, -100);
    }
    gb_tensor_free(l);
    return r;
}

static gb_tensor *gb__tr_where(gb_tensor *c, gb_tensor *a, gb_tensor *b) {
    if (gb_tensor_dtype(c) != GB_DTYPE_BOOL)
        return gb__fail_null(GB_ERR_DTYPE, "where: expected condition to be a boolean tensor, but got a tensor with "
                                           "dtype %s", gb_dtype_name(gb_tensor_dtype(c)));
    if (!gb__tr_is_floating(gb_tensor_dtype(a)) && !gb__tr_is_floating(gb_tensor_dtype(b))) /* integers chosen exactly */
        return gb__tr_int_map("where", GB__INT_WHERE, 3, (gb_tensor *[]){c, a, b});
    gb_tensor *x = gb__tr_f32(a), *y = x ? gb__tr_f32(b) : NULL, *r = y ? gb_where(c, x, y) : NULL;
    gb_tensor_free(x), gb_tensor_free(y);
    return r;
}

/* A comparison in PyTorch's common dtype: an integer meeting a float is
 * compared as float32 (2^24 + 1 equals 2^24.0 there), two integers exactly. */
static gb_tensor *gb__tr_compare(gb_trace_fn fn, gb_tensor *a, gb_tensor *b) {
    bool fa = gb__tr_is_floating(gb_tensor_dtype(a)), fb = gb__tr_is_floating(gb_tensor_dtype(b));
    gb_tensor *x = fa == fb ? gb_tensor_ref(a) : gb__tr_f32(a), *y = fa == fb ? gb_tensor_ref(b) : gb__tr_f32(b), *r = NULL;
    if (x && y) switch (fn) {
        case GB_TRACE_FN_EQ: r = gb_eq(x, y); break;
        case GB_TRACE_FN_NE: r = gb_ne(x, y); break;
        case GB_TRACE_FN_LT: r = gb_lt(x, y); break;
        case GB_TRACE_FN_LE: r = gb_le(x, y); break;
        case GB_TRACE_FN_GT: r = gb_gt(x, y); break;
        default: r = gb_ge(x, y); break;
        }
    gb_tensor_free(x), gb_tensor_free(y);
    return r;
}

gb_status gb__tr_fn(const gb_val *v, gb_tensor *const *x, gb_values *out) {
    const gb_fn_params *p = v->u.fn.p;
    gb_tensor *r = NULL;
    switch (v->u.fn.fn) {
    case GB_TRACE_FN_ABS:
        if (!gb__tr_is_floating(gb_tensor_dtype(x[0]))) { /* integers stay integers, exactly */
            r = gb__tr_int_map("abs", GB__INT_ABS, 1, x);
        } else {
            gb_tensor *a = gb__tr_f32(x[0]);
            r = a ? gb_abs(a) : NULL;
            gb_tensor_free(a);
        }
        break;
    case GB_TRACE_FN_FLOAT: r = gb_to_dtype(x[0], GB_DTYPE_F32); break;
    case GB_TRACE_FN_LONG: r = gb_to_dtype(x[0], GB_DTYPE_I64); break;
    case GB_TRACE_FN_ITEM:
        if (gb_tensor_numel(x[0]) != 1)
            return gb__fail(GB_ERR_SHAPE, "item: a Tensor with %lld elements cannot be converted to Scalar",
                            (long long)gb_tensor_numel(x[0]));
        r = gb_reshape(x[0], 0, NULL);
        break;
    case GB_TRACE_FN_SHAPE: {
        /* nnsight's scan gives real shapes: made outside meta mode */
        int depth = 0;
        for (; gb__meta_mode(); depth++) gb__meta_pop();
        r = gb_from_data(gb_tensor_shape(x[0]), 1, (int64_t[]){gb_tensor_ndim(x[0])}, GB_DTYPE_I64);
        while (depth--) gb__meta_push();
        break;
    }
    case GB_TRACE_FN_SUM:
    case GB_TRACE_FN_MEAN: { /* an integer sum is int64, exact; an integer mean is refused, as in PyTorch */
        gb_tensor *a = gb__tr_f32_or_i64(x[0]);
        r = a ? gb__tr_sum_over(a, p, v->u.fn.fn == GB_TRACE_FN_MEAN) : NULL;
        gb_tensor_free(a);
        break;
    }
    case GB_TRACE_FN_TOPK: {
        gb_tensor *a = gb__tr_f32_or_i64(x[0]), *vals = NULL, *idx = NULL;
        gb_status st = a ? gb_topk(a, p->i[0], (int)p->i[1], &vals, &idx) : gb_last_status();
        gb_tensor_free(a);
        if (st != GB_OK) return st;
        gb_values_push(out, vals);
        return gb_values_push(out, idx);
    }
    case GB_TRACE_FN_RESHAPE: r = gb_reshape(x[0], p->n, p->i); break;
    case GB_TRACE_FN_VIEW: r = gb_view(x[0], p->n, p->i); break;
    case GB_TRACE_FN_TRANSPOSE: r = gb_transpose(x[0], (int)p->i[0], (int)p->i[1]); break;
    case GB_TRACE_FN_PERMUTE: {
        if (p->n != gb_tensor_ndim(x[0]))
            return gb__fail(GB_ERR_ARG, "permute: number of dimensions in the tensor input does not match the length "
                                        "of the desired ordering of dimensions i.e. input.dim() = %d is not equal to "
                                        "len(dims) = %d", gb_tensor_ndim(x[0]), p->n);
        int dims[GB_MAX_DIMS];
        gb__tr_dims(p, dims);
        r = gb_permute(x[0], dims);
        break;
    }
    case GB_TRACE_FN_UNSQUEEZE: r = gb_unsqueeze(x[0], (int)p->i[0]); break;
    case GB_TRACE_FN_SQUEEZE: r = p->n ? gb_squeeze(x[0], (int)p->i[0]) : gb__tr_squeeze_all(x[0]); break;
    case GB_TRACE_FN_CAT:
    case GB_TRACE_FN_STACK: return gb__tr_join(v, x, out);
    case GB_TRACE_FN_EQ:
    case GB_TRACE_FN_NE:
    case GB_TRACE_FN_LT:
    case GB_TRACE_FN_LE:
    case GB_TRACE_FN_GT:
    case GB_TRACE_FN_GE: r = gb__tr_compare(v->u.fn.fn, x[0], x[1]); break;
    case GB_TRACE_FN_WHERE: r = gb__tr_where(x[0], x[1], x[2]); break;
    case GB_TRACE_FN_CROSS_ENTROPY: r = gb__tr_cross_entropy(x[0], x[1]); break;
    default: r = gb__tr_float_fn(v, x); break;
    }
    if (!r) return gb_last_status();
    return gb_values_push(out, r);
}

/* ---- torch.randint ------------------------------------------------------------ */

/* MT19937 (Matsumoto and Nishimura), seeded as at::mt19937 seeds it: the
 * seed's low 32 bits through the reference init_genrand. */
void gb__tr_mt_seed(gb__tr_mt19937 *g, uint64_t seed) {
    g->state[0] = (uint32_t)seed;
    for (uint32_t j = 1; j < 624; j++) g->state[j] = 1812433253u * (g->state[j - 1] ^ (g->state[j - 1] >> 30)) + j;
    g->next = 624;
}

static uint32_t gb__tr_mt_next(gb__tr_mt19937 *g) {
    if (g->next == 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (g->state[k] & 0x80000000u) | (g->state[(k + 1) % 624] & 0x7fffffffu);
            g->state[k] = g->state[(k + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
        }
        g->next = 0;
    }
    uint32_t y = g->state[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* ATen's random_from_to on the CPU: element after element, one 32-bit draw
 * each (two, high word first, when the range reaches 2^32), modulo the range. */
gb_tensor *gb__tr_randint(gb__tr_mt19937 *g, const gb_fn_params *p) {
    gb_tensor *t = gb_empty(p->n - 2, p->i + 2, GB_DTYPE_I64);
    if (!t || !gb_tensor_data(t)) return t;
    int64_t *z = gb_tensor_data(t); /* [numel] */
    uint64_t range = (uint64_t)p->i[1] - (uint64_t)p->i[0];
    for (int64_t k = 0; k < gb_tensor_numel(t); k++) {
        uint64_t r = gb__tr_mt_next(g);
        if (range >= 1ull << 32) r = r << 32 | gb__tr_mt_next(g);
        z[k] = (int64_t)(r % range + (uint64_t)p->i[0]);
    }
    return t;
}

/* ---- module calls ----------------------------------------------------------- */

gb_status gb__tr_call(const gb_val *v, gb_module *model, gb_run *run, gb_tensor *const *x, gb_values *out) {
    gb_module *m = model == gb__tr_trace_model(v->tr) ? v->u.get.module : gb_module_find(model, v->text);
    if (!m) return gb_last_status();
    gb_values in = {.n = v->nargs};
    for (int i = 0; i < v->nargs; i++) in.v[i] = x[i];
    if (run) return gb_module_call(m, run, &in, out);
    /* A run of its own with no observer: no events, no call counted, no KV
     * cache, default mask and positions. */
    gb_run *own = gb_run_new();
    if (!own) return gb_last_status();
    gb_status st = gb_module_call(m, own, &in, out);
    gb_run_free(own);
    return st;
}
