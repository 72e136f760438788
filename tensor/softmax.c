/* softmax, log_softmax and cross_entropy (fused log_softmax + NLL).
 *
 * Softmax works on "rows": the n elements along dim, which sit `inner`
 * elements apart in a contiguous tensor viewed as [outer, n, inner]. Each row
 * subtracts its max before exp, so large logits do not overflow; sums are
 * kept in double. */
#include "blas.h"
#include "fastmath.h" /* gb__exp: vectorisable, unlike a call to expf (5x slower) */

#include <math.h>

static gb_status gb__check_f32(const char *op, const gb_tensor *t) {
    if (t->dtype == GB_DTYPE_F32) return GB_OK;
    return gb__fail(GB_ERR_DTYPE, "%s: expected a float32 tensor, got %s %s", op, gb_dtype_name(t->dtype),
                    GB__SHAPE_STR(t));
}

/* [outer, n, inner] around dim (a 0-dim tensor is one row of one). */
static void gb__split_dim(const gb_tensor *t, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = t->ndim ? gb__numel(dim, t->shape) : 1;
    *n = t->ndim ? t->shape[dim] : 1;
    *inner = t->ndim ? gb__numel(t->ndim - dim - 1, t->shape + dim + 1) : 1;
}

/* y[j] = softmax(x)[j] or log_softmax(x)[j] of one row of n, `s` apart.
 * Inlined with s = 1 for rows along the last dim, where the loops vectorise;
 * sums run in double lanes. A NaN anywhere in a row makes the row NaN. */
static inline void gb__softmax_row(float *y, const float *x, int64_t n, int64_t s, bool logsm) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mx = x[j * s] > mx ? x[j * s] : mx;
    double sum = 0;
    if (logsm) {
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < n; j++) sum += gb__exp(x[j * s] - mx);
        float ls = (float)log(sum); /* x - max is exact for nearby values; adding max back would round */
#pragma omp simd
        for (int64_t j = 0; j < n; j++) y[j * s] = (x[j * s] - mx) - ls;
    } else {
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < n; j++) {
            float e = gb__exp(x[j * s] - mx);
            y[j * s] = e;
            sum += e;
        }
        float inv = (float)(1.0 / sum);
#pragma omp simd
        for (int64_t j = 0; j < n; j++) y[j * s] *= inv;
    }
}

static gb_status gb__softmax_forward(gb_tensor *out, bool logsm) {
    gb_tensor *xd = gb__dense(out->src[0]);
    if (!xd) return gb_last_status();
    const float *x = gb_tensor_data(xd); /* [outer, n, inner] */
    float *y = gb_tensor_data(out);      /* [outer, n, inner] */
    int64_t outer, n, inner;
    gb__split_dim(out, (int)out->iparam[0], &outer, &n, &inner);
    int64_t rows = outer * inner;
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = (r / inner) * n * inner + r % inner;
        if (inner == 1) gb__softmax_row(y + base, x + base, n, 1, logsm);
        else gb__softmax_row(y + base, x + base, n, inner, logsm);
    }
    gb_tensor_free(xd);
    return GB_OK;
}

/* softmax: dx = y * (dy - sum(dy * y)); log_softmax: dx = dy - exp(y) * sum(dy). */
static inline void gb__softmax_row_backward(float *dx, const float *y, const float *dy, int64_t n, int64_t s,
                                            bool logsm) {
    double dot = 0;
    if (logsm) {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < n; j++) dot += dy[j * s];
#pragma omp simd
        for (int64_t j = 0; j < n; j++) dx[j * s] += dy[j * s] - gb__exp(y[j * s]) * (float)dot;
    } else {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < n; j++) dot += (double)dy[j * s] * y[j * s];
#pragma omp simd
        for (int64_t j = 0; j < n; j++) dx[j * s] += y[j * s] * (dy[j * s] - (float)dot);
    }
}

static gb_status gb__softmax_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc, bool logsm) {
    if (!dsrc[0]) return GB_OK;
    float *dx = gb_tensor_data(dsrc[0]);    /* [outer, n, inner] */
    const float *y = gb_tensor_data(out);   /* [outer, n, inner] */
    const float *dy = gb_tensor_data(dout); /* [outer, n, inner] */
    int64_t outer, n, inner;
    gb__split_dim(out, (int)out->iparam[0], &outer, &n, &inner);
    int64_t rows = outer * inner;
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = (r / inner) * n * inner + r % inner;
        if (inner == 1) gb__softmax_row_backward(dx + base, y + base, dy + base, n, 1, logsm);
        else gb__softmax_row_backward(dx + base, y + base, dy + base, n, inner, logsm);
    }
    return GB_OK;
}

gb_status gb__op_SOFTMAX_forward(gb_tensor *out) { return gb__softmax_forward(out, false); }
gb_status gb__op_SOFTMAX_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__softmax_backward(out, dout, dsrc, false);
}
gb_status gb__op_LOG_SOFTMAX_forward(gb_tensor *out) { return gb__softmax_forward(out, true); }
gb_status gb__op_LOG_SOFTMAX_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__softmax_backward(out, dout, dsrc, true);
}

static gb_tensor *gb__softmax_new(gb_op op, const char *what, gb_tensor *a, int dim) {
    if (gb__check_f32(what, a) || gb__norm_dim(what, &dim, a->ndim)) return NULL;
    gb_tensor *out = gb__op_new(op, what, GB_DTYPE_F32, a->ndim, a->shape, 1, &a);
    if (!out) return NULL;
    out->iparam[0] = dim;
    return gb__op_run(out);
}

gb_tensor *gb_softmax(gb_tensor *a, int dim) { return gb__softmax_new(GB_OP_SOFTMAX, "softmax", a, dim); }
gb_tensor *gb_log_softmax(gb_tensor *a, int dim) { return gb__softmax_new(GB_OP_LOG_SOFTMAX, "log_softmax", a, dim); }

/* ---- cross_entropy ------------------------------------------------------ */

/* iparam: [0] ignore_index, [1] number of counted targets (set by forward).
 * saved: [0] max and [1] log(sum(exp(x - max))) of each row [N], for
 * backward (kept apart: their sum, rounded to f32, would lose the digits of
 * x - lse that large logits need). */

static int64_t gb__target(const gb_tensor *t, const void *data, int64_t i) {
    return t->dtype == GB_DTYPE_I64 ? ((const int64_t *)data)[i] : ((const int32_t *)data)[i];
}

gb_status gb__op_CROSS_ENTROPY_forward(gb_tensor *out) {
    gb_tensor *xd = gb__dense(out->src[0]), *td = xd ? gb__dense(out->src[1]) : NULL, *st_t[2] = {0};
    gb_status st = GB_OK;
    if (!td) {
        st = gb_last_status();
        goto done;
    }
    const float *x = gb_tensor_data(xd); /* [N, C] */
    const void *tg = gb_tensor_data(td); /* [N] */
    int64_t nrow = xd->shape[0], c = xd->shape[1], ignore = out->iparam[0], count = 0;
    for (int64_t i = 0; i < nrow; i++) {
        int64_t t = gb__target(td, tg, i);
        if (t == ignore) continue;
        if (t < 0 || t >= c) {
            st = gb__fail(GB_ERR_INDEX, "cross_entropy: Target %lld is out of bounds (row %lld, %lld classes, logits %s)",
                          (long long)t, (long long)i, (long long)c, GB__SHAPE_STR(xd));
            goto done;
        }
        count++;
    }
    for (int k = 0; k < 2; k++)
        if (!(st_t[k] = gb_empty(1, (int64_t[]){nrow}, GB_DTYPE_F32))) {
            st = gb_last_status();
            goto done;
        }
    float *mx = gb_tensor_data(st_t[0]), *ls = gb_tensor_data(st_t[1]); /* [N], [N] */
#pragma omp parallel for num_threads(gb__threads()) if (nrow * c >= GB__PAR_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < nrow; i++) {
        const float *xr = x + i * c;
        float m = -INFINITY;
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < c; j++) m = xr[j] > m ? xr[j] : m;
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < c; j++) sum += gb__exp(xr[j] - m);
        mx[i] = m, ls[i] = (float)log(sum);
    }
    double loss = 0;
    for (int64_t i = 0; i < nrow; i++) {
        int64_t t = gb__target(td, tg, i);
        if (t != ignore) loss += (double)(mx[i] - x[i * c + t]) + ls[i];
    }
    *(float *)gb_tensor_data(out) = count ? (float)(loss / (double)count) : NAN; /* torch: 0/0 */
    out->iparam[1] = count;
    if (out->requires_grad)
        for (int k = 0; k < 2; k++) out->saved[k] = st_t[k], st_t[k] = NULL;
done:
    gb_tensor_free(xd);
    gb_tensor_free(td);
    gb_tensor_free(st_t[0]);
    gb_tensor_free(st_t[1]);
    return st;
}

/* d loss / d x[i, j] = (softmax(x_i)[j] - [j == t_i]) / count for counted rows. */
gb_status gb__op_CROSS_ENTROPY_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0] || out->iparam[1] == 0) return GB_OK;
    gb_tensor *xd = gb__dense(out->src[0]), *td = xd ? gb__dense(out->src[1]) : NULL;
    if (!td) {
        gb_tensor_free(xd);
        return gb_last_status();
    }
    const float *x = gb_tensor_data(xd);              /* [N, C] */
    const void *tg = gb_tensor_data(td);              /* [N] */
    const float *mx = gb_tensor_data(out->saved[0]);  /* [N] */
    const float *ls = gb_tensor_data(out->saved[1]);  /* [N] */
    float *dx = gb_tensor_data(dsrc[0]);              /* [N, C] */
    int64_t nrow = xd->shape[0], c = xd->shape[1], ignore = out->iparam[0];
    float g = *(const float *)gb_tensor_data(dout) / (float)out->iparam[1];
#pragma omp parallel for num_threads(gb__threads()) if (nrow * c >= GB__PAR_MIN_WORK) schedule(static)
    for (int64_t i = 0; i < nrow; i++) {
        int64_t t = gb__target(td, tg, i);
        if (t == ignore) continue;
        float *dxr = dx + i * c;
        const float *xr = x + i * c;
#pragma omp simd
        for (int64_t j = 0; j < c; j++) dxr[j] += g * gb__exp((xr[j] - mx[i]) - ls[i]);
        dxr[t] -= g;
    }
    gb_tensor_free(xd);
    gb_tensor_free(td);
    return GB_OK;
}

gb_tensor *gb_cross_entropy(gb_tensor *logits, gb_tensor *targets, int64_t ignore_index) {
    if (gb__check_f32("cross_entropy", logits)) return NULL;
    if (targets->dtype != GB_DTYPE_I64 && targets->dtype != GB_DTYPE_I32)
        return gb__fail_null(GB_ERR_DTYPE, "cross_entropy: expected targets of dtype int64, got %s %s",
                             gb_dtype_name(targets->dtype), GB__SHAPE_STR(targets));
    if (logits->ndim != 2 || targets->ndim != 1)
        return gb__fail_null(GB_ERR_SHAPE, "cross_entropy: expected logits [N, C] and targets [N], got %s and %s",
                             GB__SHAPE_STR(logits), GB__SHAPE_STR(targets));
    if (logits->shape[0] != targets->shape[0])
        return gb__fail_null(GB_ERR_SHAPE,
                             "cross_entropy: Expected input batch_size (%lld) to match target batch_size (%lld).",
                             (long long)logits->shape[0], (long long)targets->shape[0]);
    gb_tensor *out = gb__op_new(GB_OP_CROSS_ENTROPY, "cross_entropy", GB_DTYPE_F32, 0, NULL, 2,
                                (gb_tensor *[]){logits, targets});
    if (!out) return NULL;
    out->iparam[0] = ignore_index;
    return gb__op_run(out);
}
