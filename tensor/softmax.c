/* softmax, log_softmax and cross_entropy (fused log_softmax + NLL).
 *
 * Softmax works on "rows": the n elements along dim, which sit `inner`
 * elements apart in a contiguous tensor viewed as [outer, n, inner]. Each row
 * subtracts its max before exp, so large logits do not overflow; sums are
 * kept in double (see GB__STRETCH). A NaN anywhere in a row makes the row
 * NaN.
 *
 * Rows along the last dim (inner == 1) are contiguous: each thread runs the
 * row kernel over its share of them. Along another dim, GB__COLS
 * neighbouring rows are done together, walking dim in the outer loop and the
 * rows in the inner one, so that every loop reads contiguous memory and
 * vectorises across rows, with no transpose. Both kinds of kernel are
 * compiled for AVX-512, AVX2 and the baseline (GB__CLONES) and use
 * fastmath.h's exp (a call to libm's expf per element stops the vectoriser:
 * 5x slower). Each row is computed by one thread from start to end, so
 * results do not depend on the thread count. */
#include "blas.h"
#include "fastmath.h"
#include "simd.h"

#include <math.h>

/* Rows done together along a dim other than the last: 8 AVX-512 vectors
 * per step along dim (the best of 32 to 256 for softmax over dim 0 of
 * [4096, 1024] on this project's Xeon; fewer make more passes over short stretches). */
#define GB__COLS 128

static gb_status gb__ts_check_f32(const char *op, const gb_tensor *t) {
    if (t->dtype == GB_DTYPE_F32) return GB_OK;
    return gb__fail(GB_ERR_DTYPE, "%s: expected a float32 tensor, got %s %s", op, gb_dtype_name(t->dtype),
                    GB__SHAPE_STR(t));
}

/* [outer, n, inner] around dim (a 0-dim tensor is one row of one). */
static void gb__ts_split_dim(const gb_tensor *t, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = t->ndim ? gb__ts_numel(dim, t->shape) : 1;
    *n = t->ndim ? t->shape[dim] : 1;
    *inner = t->ndim ? gb__ts_numel(t->ndim - dim - 1, t->shape + dim + 1) : 1;
}

/* The sums of exp along a row add in float over stretches of GB__STRETCH
 * elements (at most 16 terms per AVX-512 lane, 64 per SSE lane: all
 * positive, so within 4e-6 relative) and in double across stretches: the
 * accuracy of a double sum whatever the row's length, at the cost of a float
 * one (converting every term to double made softmax 15% slower). */
#define GB__STRETCH 256

static GB__INLINE float gb__ts_row_max(const float *x, int64_t n) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

/* sum(exp(x - mx)); e[j] = exp(x[j] - mx) too unless e is NULL. */
static GB__INLINE double gb__ts_row_sum_exp(float *restrict e, const float *restrict x, int64_t n, float mx) {
    double sum = 0;
    for (int64_t j0 = 0; j0 < n; j0 += GB__STRETCH) {
        int64_t j1 = n - j0 < GB__STRETCH ? n : j0 + GB__STRETCH;
        float part = 0;
        if (e) {
#pragma omp simd reduction(+ : part)
            for (int64_t j = j0; j < j1; j++) {
                e[j] = gb__ts_exp(x[j] - mx);
                part += e[j];
            }
        } else {
#pragma omp simd reduction(+ : part)
            for (int64_t j = j0; j < j1; j++) part += gb__ts_exp(x[j] - mx);
        }
        sum += part;
    }
    return sum;
}

/* max(x) and log(sum(exp(x - max))) of a row: log_softmax(x) = (x - max) - lse
 * (x - max is exact for values near the max; adding max back would round). */
static GB__INLINE void gb__ts_row_max_lse(const float *x, int64_t n, float *mx_out, float *lse_out) {
    float mx = gb__ts_row_max(x, n);
    *mx_out = mx, *lse_out = (float)log(gb__ts_row_sum_exp(NULL, x, n, mx));
}

/* ---- along the last dim: rows of n contiguous floats --------------------- */

/* y = softmax(x) or log_softmax(x) of one row. */
static GB__INLINE void gb__ts_softmax_row(float *restrict y,       /* [n] */
                                       const float *restrict x, /* [n] */
                                       int64_t n, bool logsm) {
    if (logsm) {
        float mx, lse;
        gb__ts_row_max_lse(x, n, &mx, &lse);
#pragma omp simd
        for (int64_t j = 0; j < n; j++) y[j] = (x[j] - mx) - lse;
        return;
    }
    float inv = (float)(1.0 / gb__ts_row_sum_exp(y, x, n, gb__ts_row_max(x, n)));
#pragma omp simd
    for (int64_t j = 0; j < n; j++) y[j] *= inv;
}

/* softmax: dx += y * (dy - sum(dy * y)); log_softmax: dx += dy - exp(y) * sum(dy). */
static GB__INLINE void gb__ts_softmax_row_backward(float *restrict dx,       /* [n] */
                                                const float *restrict y,  /* [n] */
                                                const float *restrict dy, /* [n] */
                                                int64_t n, bool logsm) {
    double dot = 0;
    if (logsm) {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < n; j++) dot += dy[j];
        float s = (float)dot;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) dx[j] += dy[j] - gb__ts_exp(y[j]) * s;
    } else {
#pragma omp simd reduction(+ : dot)
        for (int64_t j = 0; j < n; j++) dot += (double)dy[j] * y[j];
        float s = (float)dot;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) dx[j] += y[j] * (dy[j] - s);
    }
}

/* A thread's share of the rows in one call: a call per row, through the
 * clones' dispatch, made rows of 16 (GPT-2's attention on 16 tokens) 15%
 * slower. */
static GB__CLONES void gb__ts_softmax_rows(float *y,       /* [rows, n] */
                                        const float *x, /* [rows, n] */
                                        int64_t rows, int64_t n, bool logsm) {
    for (int64_t r = 0; r < rows; r++) gb__ts_softmax_row(y + r * n, x + r * n, n, logsm);
}

static GB__CLONES void gb__ts_softmax_rows_backward(float *dx,       /* [rows, n] */
                                                 const float *y,  /* [rows, n] */
                                                 const float *dy, /* [rows, n] */
                                                 int64_t rows, int64_t n, bool logsm) {
    for (int64_t r = 0; r < rows; r++) gb__ts_softmax_row_backward(dx + r * n, y + r * n, dy + r * n, n, logsm);
}

/* ---- along another dim: nc <= GB__COLS rows side by side ----------------
 * Element j of row i is at j * inner + i: the pointers point at the block's
 * first row, and each loop over i reads nc contiguous floats. */

static GB__CLONES void gb__ts_softmax_cols(float *restrict y,       /* [n, inner], columns [0, nc) */
                                        const float *restrict x, /* [n, inner], columns [0, nc) */
                                        int64_t n, int64_t inner, int64_t nc, bool logsm) {
    float mx[GB__COLS], scale[GB__COLS];
    double sum[GB__COLS];
    for (int64_t i = 0; i < nc; i++) mx[i] = -INFINITY, sum[i] = 0;
    for (int64_t j = 0; j < n; j++) {
        const float *xj = x + j * inner;
#pragma omp simd
        for (int64_t i = 0; i < nc; i++) mx[i] = xj[i] > mx[i] ? xj[i] : mx[i];
    }
    for (int64_t j = 0; j < n; j++) {
        const float *xj = x + j * inner;
        float *yj = y + j * inner;
        if (logsm) {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) sum[i] += gb__ts_exp(xj[i] - mx[i]);
        } else {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) {
                float e = gb__ts_exp(xj[i] - mx[i]);
                yj[i] = e;
                sum[i] += e;
            }
        }
    }
    for (int64_t i = 0; i < nc; i++) scale[i] = logsm ? (float)log(sum[i]) : (float)(1.0 / sum[i]);
    for (int64_t j = 0; j < n; j++) {
        const float *xj = x + j * inner;
        float *yj = y + j * inner;
        if (logsm) {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) yj[i] = (xj[i] - mx[i]) - scale[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) yj[i] *= scale[i];
        }
    }
}

static GB__CLONES void gb__ts_softmax_cols_backward(float *restrict dx,       /* [n, inner], columns [0, nc) */
                                                 const float *restrict y,  /* [n, inner], columns [0, nc) */
                                                 const float *restrict dy, /* [n, inner], columns [0, nc) */
                                                 int64_t n, int64_t inner, int64_t nc, bool logsm) {
    double dot[GB__COLS];
    float s[GB__COLS];
    for (int64_t i = 0; i < nc; i++) dot[i] = 0;
    for (int64_t j = 0; j < n; j++) {
        const float *yj = y + j * inner, *dyj = dy + j * inner;
        if (logsm) {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) dot[i] += dyj[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) dot[i] += (double)dyj[i] * yj[i];
        }
    }
    for (int64_t i = 0; i < nc; i++) s[i] = (float)dot[i];
    for (int64_t j = 0; j < n; j++) {
        const float *yj = y + j * inner, *dyj = dy + j * inner;
        float *dxj = dx + j * inner;
        if (logsm) {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) dxj[i] += dyj[i] - gb__ts_exp(yj[i]) * s[i];
        } else {
#pragma omp simd
            for (int64_t i = 0; i < nc; i++) dxj[i] += yj[i] * (dyj[i] - s[i]);
        }
    }
}

/* ---- the ops ------------------------------------------------------------- */

static gb_status gb__ts_softmax_forward(gb_tensor *out, bool logsm) {
    gb_tensor *xd = gb__ts_dense(out->src[0]);
    if (!xd) return gb_last_status();
    const float *x = gb_tensor_data(xd); /* [outer, n, inner] */
    float *y = gb_tensor_data(out);      /* [outer, n, inner] */
    int64_t outer, n, inner;
    gb__ts_split_dim(out, (int)out->iparam[0], &outer, &n, &inner);
    bool par = outer * n * inner >= GB__PAR_MIN_WORK;
    if (inner == 1) {
        int nt = par ? gb__threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int t = 0; t < nt; t++) {
            int64_t r0 = outer * t / nt, r1 = outer * (t + 1) / nt;
            gb__ts_softmax_rows(y + r0 * n, x + r0 * n, r1 - r0, n, logsm);
        }
    } else {
        int64_t nb = (inner + GB__COLS - 1) / GB__COLS; /* blocks of rows per slab [n, inner] */
#pragma omp parallel for num_threads(gb__threads()) if (par) schedule(static)
        for (int64_t t = 0; t < outer * nb; t++) {
            int64_t c = t % nb * GB__COLS, off = t / nb * n * inner + c;
            gb__ts_softmax_cols(y + off, x + off, n, inner, inner - c < GB__COLS ? inner - c : GB__COLS, logsm);
        }
    }
    gb_tensor_free(xd);
    return GB_OK;
}

static gb_status gb__ts_softmax_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc, bool logsm) {
    if (!dsrc[0]) return GB_OK;
    float *dx = gb_tensor_data(dsrc[0]);    /* [outer, n, inner] */
    const float *y = gb_tensor_data(out);   /* [outer, n, inner] */
    const float *dy = gb_tensor_data(dout); /* [outer, n, inner] */
    int64_t outer, n, inner;
    gb__ts_split_dim(out, (int)out->iparam[0], &outer, &n, &inner);
    bool par = outer * n * inner >= GB__PAR_MIN_WORK;
    if (inner == 1) {
        int nt = par ? gb__threads() : 1;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int t = 0; t < nt; t++) {
            int64_t r0 = outer * t / nt, r1 = outer * (t + 1) / nt;
            gb__ts_softmax_rows_backward(dx + r0 * n, y + r0 * n, dy + r0 * n, r1 - r0, n, logsm);
        }
    } else {
        int64_t nb = (inner + GB__COLS - 1) / GB__COLS;
#pragma omp parallel for num_threads(gb__threads()) if (par) schedule(static)
        for (int64_t t = 0; t < outer * nb; t++) {
            int64_t c = t % nb * GB__COLS, off = t / nb * n * inner + c;
            gb__ts_softmax_cols_backward(dx + off, y + off, dy + off, n, inner,
                                      inner - c < GB__COLS ? inner - c : GB__COLS, logsm);
        }
    }
    return GB_OK;
}

gb_status gb__ts_op_SOFTMAX_forward(gb_tensor *out) { return gb__ts_softmax_forward(out, false); }
gb_status gb__ts_op_SOFTMAX_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_softmax_backward(out, dout, dsrc, false);
}
gb_status gb__ts_op_LOG_SOFTMAX_forward(gb_tensor *out) { return gb__ts_softmax_forward(out, true); }
gb_status gb__ts_op_LOG_SOFTMAX_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_softmax_backward(out, dout, dsrc, true);
}

static gb_tensor *gb__ts_softmax_new(gb_op op, const char *what, gb_tensor *a, int dim) {
    if (gb__ts_check_f32(what, a) || gb__ts_norm_dim(what, &dim, a->ndim)) return NULL;
    gb_tensor *out = gb__ts_op_new(op, what, GB_DTYPE_F32, a->ndim, a->shape, 1, &a);
    if (!out) return NULL;
    out->iparam[0] = dim;
    return gb__ts_op_run(out);
}

gb_tensor *gb_softmax(gb_tensor *a, int dim) { return gb__ts_softmax_new(GB_OP_SOFTMAX, "softmax", a, dim); }
gb_tensor *gb_log_softmax(gb_tensor *a, int dim) { return gb__ts_softmax_new(GB_OP_LOG_SOFTMAX, "log_softmax", a, dim); }

/* ---- cross_entropy ------------------------------------------------------ */

/* iparam: [0] ignore_index, [1] number of counted targets (set by forward).
 * saved: [0] max and [1] log(sum(exp(x - max))) of each row [N], for
 * backward (kept apart: their sum, rounded to f32, would lose the digits of
 * x - lse that large logits need). */

static GB__CLONES void gb__ts_cross_entropy_row(float *mx, float *lse, const float *x /* [n] */, int64_t n) {
    gb__ts_row_max_lse(x, n, mx, lse);
}

/* dx += g * softmax(x), from the row's max and log-sum-exp. */
static GB__CLONES void gb__ts_cross_entropy_row_backward(float *restrict dx,      /* [n] */
                                                      const float *restrict x, /* [n] */
                                                      float g, float mx, float lse, int64_t n) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++) dx[j] += g * gb__ts_exp((x[j] - mx) - lse);
}

static int64_t gb__ts_target(const gb_tensor *t, const void *data, int64_t i) {
    return t->dtype == GB_DTYPE_I64 ? ((const int64_t *)data)[i] : ((const int32_t *)data)[i];
}

gb_status gb__ts_op_CROSS_ENTROPY_forward(gb_tensor *out) {
    gb_tensor *xd = gb__ts_dense(out->src[0]), *td = xd ? gb__ts_dense(out->src[1]) : NULL, *st_t[2] = {0};
    gb_status st = GB_OK;
    if (!td) {
        st = gb_last_status();
        goto done;
    }
    const float *x = gb_tensor_data(xd); /* [N, C] */
    const void *tg = gb_tensor_data(td); /* [N] */
    int64_t nrow = xd->shape[0], c = xd->shape[1], ignore = out->iparam[0], count = 0;
    for (int64_t i = 0; i < nrow; i++) {
        int64_t t = gb__ts_target(td, tg, i);
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
    for (int64_t i = 0; i < nrow; i++) gb__ts_cross_entropy_row(&mx[i], &ls[i], x + i * c, c);
    double loss = 0;
    for (int64_t i = 0; i < nrow; i++) {
        int64_t t = gb__ts_target(td, tg, i);
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
gb_status gb__ts_op_CROSS_ENTROPY_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0] || out->iparam[1] == 0) return GB_OK;
    gb_tensor *xd = gb__ts_dense(out->src[0]), *td = xd ? gb__ts_dense(out->src[1]) : NULL;
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
        int64_t t = gb__ts_target(td, tg, i);
        if (t == ignore) continue;
        gb__ts_cross_entropy_row_backward(dx + i * c, x + i * c, g, mx[i], ls[i], c);
        dx[i * c + t] -= g;
    }
    gb_tensor_free(xd);
    gb_tensor_free(td);
    return GB_OK;
}

gb_tensor *gb_cross_entropy(gb_tensor *logits, gb_tensor *targets, int64_t ignore_index) {
    if (gb__ts_check_f32("cross_entropy", logits)) return NULL;
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
    gb_tensor *out = gb__ts_op_new(GB_OP_CROSS_ENTROPY, "cross_entropy", GB_DTYPE_F32, 0, NULL, 2,
                                (gb_tensor *[]){logits, targets});
    if (!out) return NULL;
    out->iparam[0] = ignore_index;
    return gb__ts_op_run(out);
}
