/* softmax, log_softmax, cross_entropy (fused log_softmax + NLL) and
 * scaled_dot_product_attention (fused scores, mask, softmax and values).
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

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

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
static GB__INLINE double gb__ts_row_sum_exp(float *e, const float *x, int64_t n, float mx) { /* e may be x */
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

/* ---- scaled_dot_product_attention -----------------------------------------
 * softmax(scale q k^T over the keys a query sees) v, for q [B, H, T, D],
 * k [B, KV, S, D], v [B, KV, S, Dv], query head h reading key head
 * h / (H / KV) (grouped-query attention without copies of k and v).
 *
 * Written as its ops (a product, a scale, masked_fill, softmax, a product),
 * attention made four passes over [B, H, T, S] scores in five parallel
 * regions: 5% of the Llama-shaped 128-token forward. Here one region takes
 * blocks of GB__ATT_ROWS query rows of one head: their scores [rows, S] in
 * the thread's scratch (it stays in L2), the masked softmax in place, the
 * value product; a block stops at the last key any of its rows sees, so a
 * causal mask halves the products. Each block is one thread's from start
 * to end: results do not depend on the thread count.
 *
 * A row that sees no key averages all S values, as masked_fill with
 * finfo(float32).min followed by softmax does (Hugging Face's eager
 * attention). saved[0] is [B * H * T, 2]: each row's max and
 * log(sum(exp(x - max))), kept apart as cross_entropy keeps them, from which
 * the backward recomputes the probabilities a block at a time instead of
 * keeping [B, H, T, S] of them.
 *
 * src: q, k, v[, hidden]; fparam[0]: scale. */

enum { GB__ATT_ROWS = 32 }; /* query rows per block: scores [32, S] */

typedef struct gb__ts_att {
    const gb__ts_blas *blas;
    int64_t B, H, KV, T, S, D, Dv;
    const float *q, *k, *v; /* rows of D (Dv) floats, ld apart */
    int64_t qs[2], ks[2], vs[2]; /* strides of dims 0 and 1 */
    int ldq, ldk, ldv;
    const bool *hid; /* [B, H, T, S] by hs, or NULL: every key seen */
    int64_t hs[4];
    float scale;
} gb__ts_att;

/* A block of query rows [i0, i0 + rows) of head h: where each row's seen
 * keys end (0: it sees none) and the furthest of them. */
typedef struct gb__ts_att_blk {
    int64_t b, h, i0, rows, jend;
    int64_t end[GB__ATT_ROWS];
    bool holes[GB__ATT_ROWS]; /* the row hides some key before its end */
    bool blind;               /* some row sees no key */
} gb__ts_att_blk;

static const bool *gb__ts_att_hid(const gb__ts_att *a, int64_t b, int64_t h, int64_t i) {
    return a->hid ? a->hid + b * a->hs[0] + h * a->hs[1] + i * a->hs[2] : NULL;
}

static void gb__ts_att_block(const gb__ts_att *a, int64_t b, int64_t h, int64_t i0, gb__ts_att_blk *k) {
    k->b = b, k->h = h, k->i0 = i0, k->jend = 0, k->blind = false;
    k->rows = a->T - i0 < GB__ATT_ROWS ? a->T - i0 : GB__ATT_ROWS;
    for (int64_t r = 0; r < k->rows; r++) {
        const bool *m = gb__ts_att_hid(a, b, h, i0 + r); /* [S] by hs[3] */
        int64_t j = a->S;
        if (m && a->hs[3] == 1) /* 8 hidden keys at a time (a causal row hides S - 1 - i) */
            for (uint64_t w; j >= 8 && (memcpy(&w, m + j - 8, 8), w == 0x0101010101010101u);) j -= 8;
        while (m && j > 0 && m[(j - 1) * a->hs[3]]) j--;
        k->end[r] = j;
        k->holes[r] = false;
        if (m && a->hs[3] == 1) k->holes[r] = memchr(m, true, (size_t)j) != NULL;
        else for (int64_t i = 0; m && i < j && !k->holes[r]; i++) k->holes[r] = m[i * a->hs[3]];
        k->jend = j > k->jend ? j : k->jend;
        k->blind |= j == 0;
    }
}

/* Query rows from i of head h in batch b: [rows, D], ldq apart. */
static const float *gb__ts_att_q(const gb__ts_att *a, int64_t b, int64_t h, int64_t i) {
    return a->q + b * a->qs[0] + h * a->qs[1] + i * a->ldq;
}

/* Keys and values of head h's key head in batch b: [S, D] and [S, Dv]. */
static const float *gb__ts_att_k(const gb__ts_att *a, int64_t b, int64_t h) {
    return a->k + b * a->ks[0] + h / (a->H / a->KV) * a->ks[1];
}
static const float *gb__ts_att_v(const gb__ts_att *a, int64_t b, int64_t h) {
    return a->v + b * a->vs[0] + h / (a->H / a->KV) * a->vs[1];
}

/* The scratch's row length for n keys: whole vectors of 16. */
static int64_t gb__ts_att_ld(int64_t n) { return (n + 15) / 16 * 16; }

/* s [rows, ld] = scale q k^T for the block's rows and keys [0, jend). */
static void gb__ts_att_scores(const gb__ts_att *a, const gb__ts_att_blk *k, float *s, int64_t ld) {
    a->blas->sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)k->rows, (int)k->jend, (int)a->D, a->scale,
                   gb__ts_att_q(a, k->b, k->h, k->i0), a->ldq,
                   gb__ts_att_k(a, k->b, k->h), a->ldk, 0.0f, s, (int)ld);
}

/* A row's probabilities in place over the keys it sees (before end, not
 * hidden: hid[j * hs], hid NULL when none before end is) of its scores
 * times scale, and its max and log-sum-exp when stats is given. The row has
 * n floats, a multiple of 16 (the scratch's rows
 * are padded): the vector loops have no scalar remainder, which rows of
 * ~100 keys spent most of their time in. */
static GB__CLONES void gb__ts_att_softmax_row(float *restrict x /* [n] */, int64_t n, int64_t end, float scale,
                                              const bool *hid /* [end] by hs */, int64_t hs,
                                              float *stats /* [2] or NULL */) {
    float mx = -INFINITY, sum = 0.0f; /* in the vector lanes: at most n / 16 terms each, then a tree */
    for (int64_t j = 0; hid && j < end; j++)
        if (hid[j * hs]) x[j] = -INFINITY;
    for (int64_t j = end; j < n; j++) x[j] = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; j++) {
        x[j] *= scale; /* after the sum over d, as q k^T then * scale rounds */
        mx = x[j] > mx ? x[j] : mx;
    }
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) {
        x[j] = gb__ts_exp(x[j] - mx);
        sum += x[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) x[j] *= inv;
    if (stats) stats[0] = mx, stats[1] = logf(sum);
}

/* o [Dv] = the mean of the S values (a row that sees no key). */
static void gb__ts_att_mean(float *o, const float *v /* [S, ldv] */, int64_t ldv, int64_t S, int64_t Dv) {
    float p = 1.0f / (float)S;
    memset(o, 0, (size_t)Dv * sizeof *o);
    for (int64_t j = 0; j < S; j++)
        for (int64_t d = 0; d < Dv; d++) o[d] += p * v[j * ldv + d];
}

/* A thread's scratch for forward blocks: scores, and on AVX-512 the keys
 * and values of the key head it packed last, as the product tiles read them. */
typedef struct gb__ts_att_scr {
    float *s;       /* [GB__ATT_ROWS, S rounded up to 16] */
    float *kt, *vp; /* [ceil(S / 32), D, 32], [ceil(Dv / 32), S, 32], or NULL: sgemm */
    int64_t b, kv;  /* whose keys and values they hold (-1: none yet) */
} gb__ts_att_scr;

/* Floats of one thread's scratch. */
static int64_t gb__ts_att_scr_size(const gb__ts_att *a, bool tiles) {
    int64_t n = GB__ATT_ROWS * gb__ts_att_ld(a->S);
    if (tiles) n += (a->S + 31) / 32 * 32 * a->D + (a->Dv + 31) / 32 * 32 * a->S;
    return n;
}

static void gb__ts_att_forward_block(const gb__ts_att *a, float *out /* [B, H, T, Dv] */,
                                     float *stats /* [B, H, T, 2] or NULL */, gb__ts_att_scr *w, int64_t b,
                                     int64_t h, int64_t i0) {
    gb__ts_att_blk k;
    gb__ts_att_block(a, b, h, i0, &k);
    int64_t row0 = (b * a->H + h) * a->T + i0, kv = h / (a->H / a->KV);
    float *o = out + row0 * a->Dv, *s = w->s, *st = stats ? stats + row0 * 2 : NULL; /* [rows, Dv], .., [rows, 2] */
    if (k.jend > 0) {
        int64_t ld = gb__ts_att_ld(k.jend);
        float scale = a->scale;
        if (w->kt) { /* the key head's keys as [32-key panels of D], its values as [32-column panels of S] */
            if (w->b != b || w->kv != kv) {
                gb__ts_wg_small_pack_t(w->kt, gb__ts_att_k(a, b, h), a->ldk, a->S, a->D);
                gb__ts_wg_small_pack(w->vp, gb__ts_att_v(a, b, h), a->ldv, a->S, a->Dv);
                w->b = b, w->kv = kv;
            }
            gb__ts_wg_small(s, ld, gb__ts_att_q(a, b, h, i0), a->ldq, w->kt, a->D, k.rows, k.jend, a->D);
        } else {
            gb__ts_att_scores(a, &k, s, ld);
            scale = 1.0f; /* sgemm applied it */
        }
        for (int64_t r = 0; r < k.rows; r++) {
            if (k.end[r])
                gb__ts_att_softmax_row(s + r * ld, ld, k.end[r], scale,
                                       k.holes[r] ? gb__ts_att_hid(a, b, h, i0 + r) : NULL, a->hs[3],
                                       st ? st + 2 * r : NULL);
            else memset(s + r * ld, 0, (size_t)ld * sizeof *s);
        }
        if (w->vp) gb__ts_wg_small(o, a->Dv, s, ld, w->vp, a->S, k.rows, a->Dv, k.jend);
        else
            a->blas->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)k.rows, (int)a->Dv, (int)k.jend, 1.0f, s,
                           (int)ld, gb__ts_att_v(a, b, h), a->ldv, 0.0f, o, (int)a->Dv);
    }
    for (int64_t r = 0; r < k.rows; r++)
        if (!k.end[r]) {
            gb__ts_att_mean(o + r * a->Dv, gb__ts_att_v(a, b, h), a->ldv, a->S, a->Dv);
            if (st) st[2 * r] = st[2 * r + 1] = 0; /* unused: the backward sees the row is blind */
        }
}

/* t itself when sgemm can read its rows where they lie (the last dim unit
 * strided, rows at least their length apart, in int range), else a
 * contiguous copy; *ld is the rows' distance. */
static gb_tensor *gb__ts_att_rows(const gb_tensor *t, int *ld) {
    int64_t n = t->shape[3], rs = t->stride[2];
    if ((n > 1 && t->stride[3] != 1) || (t->shape[2] > 1 && rs < n) || rs > INT_MAX) {
        *ld = n > 1 ? (int)n : 1;
        return gb__ts_dense(t);
    }
    *ld = (int)(rs > n ? rs : n > 1 ? n : 1);
    return gb_tensor_ref((gb_tensor *)t);
}

/* The geometry of out's sources in *a, their readable versions in use[3]
 * (released by the caller). */
static gb_status gb__ts_att_of(const gb_tensor *out, gb__ts_att *a, gb_tensor *use[3]) {
    const gb_tensor *q = out->src[0], *k = out->src[1], *v = out->src[2];
    *a = (gb__ts_att){.B = q->shape[0], .H = q->shape[1], .KV = k->shape[1], .T = q->shape[2], .S = k->shape[2],
                      .D = q->shape[3], .Dv = v->shape[3], .scale = out->fparam[0]};
    int *ld[3] = {&a->ldq, &a->ldk, &a->ldv};
    for (int i = 0; i < 3; i++)
        if (!(use[i] = gb__ts_att_rows(out->src[i], ld[i]))) return gb_last_status();
    a->q = gb_tensor_data(use[0]), a->k = gb_tensor_data(use[1]), a->v = gb_tensor_data(use[2]);
    for (int d = 0; d < 2; d++) a->qs[d] = use[0]->stride[d], a->ks[d] = use[1]->stride[d], a->vs[d] = use[2]->stride[d];
    if (out->nsrc > 3) {
        a->hid = gb_tensor_data(out->src[3]);
        gb__ts_broadcast_strides(out->src[3], 4, (int64_t[]){a->B, a->H, a->T, a->S}, a->hs);
    }
    if (!(a->blas = gb__ts_blas_get())) {
        gb__error_prefix("scaled_dot_product_attention");
        return gb_last_status();
    }
    return GB_OK;
}

/* Threads for `units` blocks of about `work` multiply-adds each. */
static int gb__ts_att_threads(int64_t units, double work) {
    int nt = gb__threads();
    if (nt > units) nt = (int)units;
    return (double)units * work < GB__PAR_MIN_WORK ? 1 : nt;
}

gb_status gb__ts_op_ATTENTION_forward(gb_tensor *out) {
    gb__ts_att a;
    gb_tensor *use[3] = {0}, *stats = NULL, *scratch = NULL;
    gb_status st = gb__ts_att_of(out, &a, use);
    if (st) goto done;
    float *o = gb_tensor_data(out); /* [B, H, T, Dv] */
    /* units in the order (batch, head, block), the heads sharing a key head
     * next to each other: a thread's next unit mostly reads the key head
     * it has packed */
    int64_t nblk = (a.T + GB__ATT_ROWS - 1) / GB__ATT_ROWS, units = a.B * a.H * nblk;
    bool tiles = gb__ts_wg_small_ok();
    int nt = gb__ts_att_threads(units, (double)GB__ATT_ROWS * (double)a.S * (double)(a.D + a.Dv));
    int64_t per = gb__ts_att_scr_size(&a, tiles);
    if ((out->requires_grad && !(stats = gb_empty(2, (int64_t[]){a.B * a.H * a.T, 2}, GB_DTYPE_F32))) ||
        !(scratch = gb_empty(1, (int64_t[]){nt * per}, GB_DTYPE_F32))) {
        st = gb_last_status();
        goto done;
    }
    float *sv = stats ? gb_tensor_data(stats) : NULL, *sc = gb_tensor_data(scratch); /* [rows, 2], [nt, per] */
    if (a.S == 0) { /* softmax over no keys, then a product over none: zeros, as the ops give */
        memset(o, 0, (size_t)gb_tensor_numel(out) * sizeof *o);
        if (sv) memset(sv, 0, (size_t)gb_tensor_numel(stats) * sizeof *sv);
    } else {
        int pinned = gb__ts_blas_pin(a.blas, nt > 1);
#pragma omp parallel num_threads(nt) if (nt > 1)
        {
            float *base = sc + omp_get_thread_num() * per, *kt = base + GB__ATT_ROWS * gb__ts_att_ld(a.S);
            gb__ts_att_scr w = {.s = base, .kt = tiles ? kt : NULL, .b = -1, .kv = -1};
            w.vp = tiles ? kt + (a.S + 31) / 32 * 32 * a.D : NULL;
#pragma omp for schedule(dynamic)
            for (int64_t u = 0; u < units; u++) {
                int64_t b = u / (a.H * nblk), h = u / nblk % a.H; /* h = key head * G + query head of it */
                gb__ts_att_forward_block(&a, o, sv, &w, b, h, u % nblk * GB__ATT_ROWS);
            }
        }
        gb__ts_blas_unpin(pinned);
    }
    out->saved[0] = stats, stats = NULL;
done:
    for (int i = 0; i < 3; i++) gb_tensor_free(use[i]);
    gb_tensor_free(stats), gb_tensor_free(scratch);
    return st;
}

/* p [n] = the probabilities of a row from its scores (in place), max and
 * log-sum-exp (hid as for gb__ts_att_softmax_row); 1/S everywhere for a
 * row that sees no key (end 0). */
static GB__CLONES void gb__ts_att_prob_row(float *restrict x /* [n] */, int64_t n, int64_t end,
                                           const bool *hid /* [n] by hs */, int64_t hs, const float *stats,
                                           int64_t S) {
    if (!end) {
        for (int64_t j = 0; j < n; j++) x[j] = 1.0f / (float)S;
        return;
    }
    float mx = stats[0], ls = stats[1];
#pragma omp simd
    for (int64_t j = 0; j < end; j++) x[j] = gb__ts_exp((x[j] - mx) - ls);
    for (int64_t j = 0; hid && j < end; j++)
        if (hid[j * hs]) x[j] = 0.0f;
    for (int64_t j = end; j < n; j++) x[j] = 0.0f;
}

/* ds [n] = p * (dp - sum(do * o)): softmax's backward, in place of dp (a
 * row that sees no key has no score gradient: masked_fill stops it). */
static GB__CLONES void gb__ts_att_dscores(float *restrict ds /* [n] */, const float *restrict p /* [n] */, int64_t n,
                                          const float *restrict dout /* [Dv] */, const float *restrict o /* [Dv] */,
                                          int64_t Dv, bool blind) {
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t d = 0; d < Dv; d++) dot += (double)dout[d] * o[d];
    float di = blind ? 0.0f : (float)dot;
#pragma omp simd
    for (int64_t j = 0; j < n; j++) ds[j] = blind ? 0.0f : p[j] * (ds[j] - di);
}

/* dq, dk, dv (each NULL when not asked for) of the block's rows. */
static void gb__ts_att_backward_block(const gb__ts_att *a, const float *out, const float *dout, const float *stats,
                                      float *dq, float *dk, float *dv, float *p, float *ds, int64_t b, int64_t h,
                                      int64_t i0) {
    gb__ts_att_blk k;
    gb__ts_att_block(a, b, h, i0, &k);
    if (k.blind) k.jend = a->S; /* its probabilities are 1/S over every key */
    int64_t row0 = (b * a->H + h) * a->T + i0, n = k.jend, kv = h / (a->H / a->KV);
    const float *o = out + row0 * a->Dv, *g = dout + row0 * a->Dv, *st = stats + row0 * 2; /* [rows, Dv] x 2, [rows, 2] */
    const float *q = gb__ts_att_q(a, b, h, i0);                                             /* [rows, D] */
    const float *kk = gb__ts_att_k(a, b, h), *v = gb__ts_att_v(a, b, h);                   /* [S, D], [S, Dv] */
    int rows = (int)k.rows, D = (int)a->D, Dv = (int)a->Dv;
    if (n == 0) return;
    gb__ts_att_scores(a, &k, p, n);
    for (int64_t r = 0; r < k.rows; r++)
        gb__ts_att_prob_row(p + r * n, n, k.end[r], k.holes[r] ? gb__ts_att_hid(a, b, h, i0 + r) : NULL, a->hs[3],
                            st + 2 * r, a->S);
    if (dv) /* dv [n, Dv] += p^T dout */
        a->blas->sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, Dv, rows, 1.0f, p, (int)n, g, Dv, 1.0f,
                       dv + (b * a->KV + kv) * a->S * a->Dv, Dv);
    if (!dq && !dk) return;
    /* ds [rows, n] = dout v^T, then softmax's backward */
    a->blas->sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, (int)n, Dv, 1.0f, g, Dv, v, a->ldv, 0.0f, ds, (int)n);
    for (int64_t r = 0; r < k.rows; r++)
        gb__ts_att_dscores(ds + r * n, p + r * n, n, g + r * a->Dv, o + r * a->Dv, a->Dv, k.end[r] == 0);
    if (dq) /* dq [rows, D] += scale ds k */
        a->blas->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, (int)n, a->scale, ds, (int)n, kk, a->ldk,
                       1.0f, dq + row0 * a->D, D);
    if (dk) /* dk [n, D] += scale ds^T q */
        a->blas->sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, D, rows, a->scale, ds, (int)n, q, a->ldq, 1.0f,
                       dk + (b * a->KV + kv) * a->S * a->D, D);
}

/* A thread per key head (the query heads reading it add into its dk and
 * dv), each head's blocks in order: sums do not depend on the thread count. */
gb_status gb__ts_op_ATTENTION_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb__ts_att a;
    gb_tensor *use[3] = {0}, *scratch = NULL;
    gb_status st = gb__ts_att_of(out, &a, use);
    if (st || a.S == 0 || !(dsrc[0] || dsrc[1] || dsrc[2])) goto done;
    int64_t G = a.H / a.KV, nblk = (a.T + GB__ATT_ROWS - 1) / GB__ATT_ROWS, units = a.B * a.KV;
    int64_t srows = a.T < GB__ATT_ROWS ? a.T : GB__ATT_ROWS;
    int nt = gb__ts_att_threads(units, (double)G * (double)a.T * (double)a.S * (double)(2 * a.D + 3 * a.Dv));
    if (!(scratch = gb_empty(1, (int64_t[]){nt * 2 * srows * a.S}, GB_DTYPE_F32))) {
        st = gb_last_status();
        goto done;
    }
    const float *o = gb_tensor_data(out), *g = gb_tensor_data(dout), *sv = gb_tensor_data(out->saved[0]);
    float *dq = dsrc[0] ? gb_tensor_data(dsrc[0]) : NULL, *dk = dsrc[1] ? gb_tensor_data(dsrc[1]) : NULL;
    float *dv = dsrc[2] ? gb_tensor_data(dsrc[2]) : NULL, *sc = gb_tensor_data(scratch); /* [nt, 2, srows, S] */
    int pinned = gb__ts_blas_pin(a.blas, nt > 1);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *p = sc + omp_get_thread_num() * 2 * srows * a.S, *ds = p + srows * a.S; /* [srows, S] each */
#pragma omp for schedule(dynamic)
        for (int64_t u = 0; u < units; u++)
            for (int64_t h = u % a.KV * G; h < (u % a.KV + 1) * G; h++)
                for (int64_t blk = 0; blk < nblk; blk++)
                    gb__ts_att_backward_block(&a, o, g, sv, dq, dk, dv, p, ds, u / a.KV, h, blk * GB__ATT_ROWS);
    }
    gb__ts_blas_unpin(pinned);
done:
    for (int i = 0; i < 3; i++) gb_tensor_free(use[i]);
    gb_tensor_free(scratch);
    return st;
}

gb_tensor *gb_scaled_dot_product_attention(gb_tensor *q, gb_tensor *k, gb_tensor *v, gb_tensor *hidden, float scale) {
    const char *op = "scaled_dot_product_attention";
    const char *names[3] = {"q", "k", "v"};
    gb_tensor *in[3] = {q, k, v};
    for (int i = 0; i < 3; i++) {
        if (!in[i]) return gb__fail_null(GB_ERR_ARG, "%s: %s is NULL", op, names[i]);
        if (in[i]->dtype != GB_DTYPE_F32)
            return gb__fail_null(GB_ERR_DTYPE, "%s: %s must be float32, got %s %s", op, names[i],
                                 gb_dtype_name(in[i]->dtype), GB__SHAPE_STR(in[i]));
        if (in[i]->ndim != 4)
            return gb__fail_null(GB_ERR_SHAPE,
                                 "%s: expected q [batch, heads, queries, head_dim], k [batch, kv_heads, keys, "
                                 "head_dim] and v [batch, kv_heads, keys, v_dim]; %s has shape %s",
                                 op, names[i], GB__SHAPE_STR(in[i]));
    }
    int64_t B = q->shape[0], H = q->shape[1], T = q->shape[2], KV = k->shape[1], S = k->shape[2];
    if (k->shape[0] != B || v->shape[0] != B || v->shape[1] != KV || v->shape[2] != S || k->shape[3] != q->shape[3])
        return gb__fail_null(GB_ERR_SHAPE,
                             "%s: q %s, k %s and v %s do not fit q [batch, heads, queries, head_dim], k [batch, "
                             "kv_heads, keys, head_dim], v [batch, kv_heads, keys, v_dim]",
                             op, GB__SHAPE_STR(q), GB__SHAPE_STR(k), GB__SHAPE_STR(v));
    if (KV == 0 ? H != 0 : H % KV != 0)
        return gb__fail_null(GB_ERR_SHAPE, "%s: %lld query heads cannot share %lld key/value heads (q %s, k %s)", op,
                             (long long)H, (long long)KV, GB__SHAPE_STR(q), GB__SHAPE_STR(k));
    if (T > INT_MAX || S > INT_MAX || q->shape[3] > INT_MAX || v->shape[3] > INT_MAX)
        return gb__fail_null(GB_ERR_UNSUPPORTED, "%s: q %s, k %s, v %s exceed OpenBLAS's 32-bit sizes", op,
                             GB__SHAPE_STR(q), GB__SHAPE_STR(k), GB__SHAPE_STR(v));
    int64_t full[4] = {B, H, T, S};
    if (hidden) {
        int nd;
        int64_t bs[GB_MAX_DIMS];
        if (hidden->dtype != GB_DTYPE_BOOL)
            return gb__fail_null(GB_ERR_DTYPE, "%s: hidden must be a bool mask (true: the key is hidden), got %s %s",
                                 op, gb_dtype_name(hidden->dtype), GB__SHAPE_STR(hidden));
        if (gb__ts_broadcast_shapes(op, hidden->ndim, hidden->shape, 4, full, &nd, bs) != GB_OK || nd != 4 ||
            memcmp(bs, full, sizeof full))
            return gb__fail_null(GB_ERR_SHAPE, "%s: hidden %s does not broadcast to [batch, heads, queries, keys] %s",
                                 op, GB__SHAPE_STR(hidden), gb__shape_str((char[128]){0}, 128, 4, full));
    }
    gb_tensor *out = gb__ts_op_new(GB_OP_ATTENTION, op, GB_DTYPE_F32, 4, (int64_t[]){B, H, T, v->shape[3]},
                                   hidden ? 4 : 3, (gb_tensor *[]){q, k, v, hidden});
    if (!out) return NULL;
    out->fparam[0] = scale;
    return gb__ts_op_run(out);
}
