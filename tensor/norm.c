/* layer_norm and rms_norm over the last dim.
 *
 * Both view x as [rows, n]. Statistics are accumulated in double and kept per
 * row in out->saved[] (only when a gradient will be asked for), so backward
 * does not recompute them. Sources are compacted (autograd has no NULL
 * sources): iparam says where the optional weight and bias sit.
 *
 * Each kernel is a row function compiled for AVX-512, AVX2 and the baseline
 * (GB__CLONES), specialised for the weight and bias being there or not (a
 * test inside the loop would keep it from vectorising), and rows are split
 * across threads. The weight and bias gradients sum over rows: each block of
 * at most 64 rows adds into partial sums of its own (float) right after its
 * rows' dx, while they are in cache, and the partials are added in block
 * order in double. The blocks depend on the shape only, so results do not
 * depend on the number of threads. (Partials in double made layer_norm's
 * backward 15% slower than PyTorch's, which sums in float throughout.) */
#include "lowp.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>

/* iparam: [0] src index of weight or -1, [1] src index of bias or -1.
 * fparam: [0] eps. saved: [0] mean [rows, 2] (layer_norm only), [1] rstd [rows].
 *
 * The mean is kept as two floats, hi + lo: x - hi is exact when x is near the
 * mean, and subtracting lo after keeps the digits a single f32 mean would
 * lose when |mean| >> std (activations with a large offset). */
#define GB__NORM_W 0
#define GB__NORM_B 1

/* x is f32; the weight and bias may be f16/bf16 (a checkpoint's, as
 * stored: converted to f32 per call, they are [n]) that no gradient is
 * asked of. */
static gb_status gb__ts_check_norm_args(const char *op, const gb_tensor *x, const gb_tensor *w, const gb_tensor *b) {
    const gb_tensor *all[3] = {x, w, b};
    const char *names[2] = {"weight", "bias"};
    for (int i = 0; i < 3; i++) {
        if (!all[i] || all[i]->dtype == GB_DTYPE_F32) continue;
        if (i == 0 || !gb__ts_is_lowp(all[i]->dtype))
            return gb__fail(GB_ERR_DTYPE, "%s: expected float32 tensors, got %s %s", op, gb_dtype_name(all[i]->dtype),
                            GB__SHAPE_STR(all[i]));
        gb_status st = gb__ts_lowp_frozen(op, names[i - 1], all[i], all[i]->requires_grad && gb__ts_grad_mode());
        if (st) return st;
    }
    if (x->ndim == 0) return gb__fail(GB_ERR_SHAPE, "%s: input must be at least 1-D, got a 0-dim tensor", op);
    int64_t n = x->shape[x->ndim - 1];
    for (int i = 0; i < 2; i++) {
        const gb_tensor *p = all[i + 1];
        if (p && (p->ndim != 1 || p->shape[0] != n))
            return gb__fail(GB_ERR_SHAPE,
                            "%s: Expected %s to be of same shape as normalized_shape, but got %s of shape %s and "
                            "normalized_shape = [%lld] (input %s)",
                            op, names[i], names[i], GB__SHAPE_STR(p), (long long)n, GB__SHAPE_STR(x));
    }
    return GB_OK;
}

static gb_tensor *gb__ts_norm_new(gb_op op, const char *what, gb_tensor *x, gb_tensor *w, gb_tensor *b, float eps) {
    if (gb__ts_check_norm_args(what, x, w, b)) return NULL;
    gb_tensor *src[3] = {x};
    int nsrc = 1;
    int64_t wi = w ? nsrc : -1;
    if (w) src[nsrc++] = w;
    int64_t bi = b ? nsrc : -1;
    if (b) src[nsrc++] = b;
    gb_tensor *out = gb__ts_op_new(op, what, GB_DTYPE_F32, x->ndim, x->shape, nsrc, src);
    if (!out) return NULL;
    out->iparam[GB__NORM_W] = wi;
    out->iparam[GB__NORM_B] = bi;
    out->fparam[0] = eps;
    return gb__ts_op_run(out);
}

/* Dense copies of x and the optional weight and bias of a norm op. */
typedef struct gb__ts_norm_in {
    gb_tensor *x, *w, *b;
    int64_t rows, n;
} gb__ts_norm_in;

static void gb__ts_norm_in_free(gb__ts_norm_in *in) {
    gb_tensor_free(in->x);
    gb_tensor_free(in->w);
    gb_tensor_free(in->b);
}

static gb_status gb__ts_norm_in_get(gb__ts_norm_in *in, const gb_tensor *out) {
    *in = (gb__ts_norm_in){0};
    int64_t wi = out->iparam[GB__NORM_W], bi = out->iparam[GB__NORM_B];
    in->x = gb__ts_dense(out->src[0]);
    if (in->x && wi >= 0) in->w = gb__ts_dense_f32(out->src[wi]);
    if (in->x && bi >= 0 && (wi < 0 || in->w)) in->b = gb__ts_dense_f32(out->src[bi]);
    if (!in->x || (wi >= 0 && !in->w) || (bi >= 0 && !in->b)) {
        gb__ts_norm_in_free(in);
        return gb_last_status();
    }
    in->n = out->shape[out->ndim - 1];
    in->rows = in->n ? gb_tensor_numel(out) / in->n : 0;
    return GB_OK;
}

/* The weight and bias gradients asked of f16/bf16 sources are refused. */
static gb_status gb__ts_norm_frozen(const char *op, const gb_tensor *out, gb_tensor **dsrc) {
    int64_t wi = out->iparam[GB__NORM_W], bi = out->iparam[GB__NORM_B];
    gb_status st = wi >= 0 ? gb__ts_lowp_frozen(op, "weight", out->src[wi], dsrc[wi] != NULL) : GB_OK;
    return st || bi < 0 ? st : gb__ts_lowp_frozen(op, "bias", out->src[bi], dsrc[bi] != NULL);
}

/* Per-row statistics tensors for backward, NULL when no gradient is needed. */
static gb_status gb__ts_norm_saved(gb_tensor *out, int64_t rows, bool mean) {
    if (!out->requires_grad) return GB_OK;
    if (mean && !(out->saved[0] = gb_empty(2, (int64_t[]){rows, 2}, GB_DTYPE_F32))) return gb_last_status();
    if (!(out->saved[1] = gb_empty(1, (int64_t[]){rows}, GB_DTYPE_F32))) return gb_last_status();
    return GB_OK;
}

/* Rows per partial sum of the weight and bias gradients: rows / 64 within
 * [8, 64], so that a float partial adds at most 64 terms and small inputs
 * still make blocks to share out. 1 (a task per row) without partials. */
static int64_t gb__ts_norm_block(int64_t rows, bool partials) {
    if (!partials) return 1;
    int64_t b = (rows + 63) / 64;
    return b < 8 ? 8 : b > 64 ? 64 : b;
}

/* Zeroed partial sums [nblk, nsum, n] for the parameter gradients, or NULL
 * (with *st set on failure) when none is asked for. */
static float *gb__ts_norm_partials(const char *op, int64_t nblk, int nsum, int64_t n, gb_status *st) {
    *st = GB_OK;
    if (!nblk || !n) return NULL;
    float *p = gb__calloc((size_t)(nblk * nsum * n), sizeof *p, op);
    if (!p) *st = gb_last_status();
    return p;
}

/* acc[n] += the sum of the nblk partials `stride` apart, added in block
 * order in double. */
static void gb__ts_norm_sum_partials(float *acc, const float *part, int64_t nblk, int64_t stride, int64_t n) {
    if (!acc) return;
    for (int64_t j0 = 0; j0 < n; j0 += 256) {
        int64_t m = n - j0 < 256 ? n - j0 : 256;
        double s[256] = {0};
        for (int64_t k = 0; k < nblk; k++) {
            const float *pk = part + k * stride + j0;
#pragma omp simd
            for (int64_t j = 0; j < m; j++) s[j] += pk[j];
        }
        for (int64_t j = 0; j < m; j++) acc[j0 + j] += (float)s[j];
    }
}

/* ---- layer_norm --------------------------------------------------------- */

static GB__INLINE void gb__ts_layer_norm_row_impl(float *restrict y,       /* [n] */
                                               float *restrict stats,   /* [3]: mean hi, mean lo, rstd */
                                               const float *restrict x, /* [n] */
                                               const float *w,          /* [n] if has_w */
                                               const float *b,          /* [n] if has_b */
                                               int64_t n, double eps, bool has_w, bool has_b) {
    double sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < n; j++) sum += x[j];
    double mean = sum / (double)n;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < n; j++) sq += ((double)x[j] - mean) * ((double)x[j] - mean);
    float hi = (float)mean, lo = (float)(mean - hi), rstd = (float)(1.0 / sqrt(sq / (double)n + eps));
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float v = ((x[j] - hi) - lo) * rstd;
        if (has_w) v *= w[j];
        if (has_b) v += b[j];
        y[j] = v;
    }
    stats[0] = hi, stats[1] = lo, stats[2] = rstd;
}

static GB__CLONES void gb__ts_layer_norm_row(float *y, float *stats, const float *x, const float *w, const float *b,
                                          int64_t n, double eps) {
    if (w && b) gb__ts_layer_norm_row_impl(y, stats, x, w, b, n, eps, true, true);
    else if (w) gb__ts_layer_norm_row_impl(y, stats, x, w, b, n, eps, true, false);
    else if (b) gb__ts_layer_norm_row_impl(y, stats, x, w, b, n, eps, false, true);
    else gb__ts_layer_norm_row_impl(y, stats, x, w, b, n, eps, false, false);
}

gb_status gb__ts_op_LAYER_NORM_forward(gb_tensor *out) {
    gb__ts_norm_in in;
    gb_status st = gb__ts_norm_in_get(&in, out);
    if (st) return st;
    if ((st = gb__ts_norm_saved(out, in.rows, true))) {
        gb__ts_norm_in_free(&in);
        return st;
    }
    const float *x = gb_tensor_data(in.x);                               /* [rows, n] */
    const float *w = in.w ? gb_tensor_data(in.w) : NULL;                 /* [n] */
    const float *b = in.b ? gb_tensor_data(in.b) : NULL;                 /* [n] */
    float *y = gb_tensor_data(out);                                      /* [rows, n] */
    float *smean = out->saved[0] ? gb_tensor_data(out->saved[0]) : NULL; /* [rows, 2] */
    float *srstd = out->saved[1] ? gb_tensor_data(out->saved[1]) : NULL; /* [rows] */
    int64_t rows = in.rows, n = in.n;
    double eps = out->fparam[0];
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float stats[3];
        gb__ts_layer_norm_row(y + r * n, stats, x + r * n, w, b, n, eps);
        if (smean) smean[2 * r] = stats[0], smean[2 * r + 1] = stats[1], srstd[r] = stats[2];
    }
    gb__ts_norm_in_free(&in);
    return GB_OK;
}

/* xhat = (x - mean) * rstd, g = dy * w:
 * dx += rstd * (g - mean(g) - xhat * mean(g * xhat)); pw += dy * xhat; pb += dy. */
static GB__INLINE void gb__ts_layer_norm_row_backward_impl(float *restrict dx,       /* [n] or NULL */
                                                        float *restrict pw,       /* [n] or NULL */
                                                        float *restrict pb,       /* [n] or NULL */
                                                        const float *restrict x,  /* [n] */
                                                        const float *restrict dy, /* [n] */
                                                        const float *w,           /* [n] if has_w */
                                                        const float *mean,        /* [2]: hi, lo */
                                                        float rstd, int64_t n, bool has_w) {
    float hi = mean[0], lo = mean[1];
    if (dx) {
        double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t j = 0; j < n; j++) {
            float g = has_w ? dy[j] * w[j] : dy[j], xh = ((x[j] - hi) - lo) * rstd;
            sg += g;
            sgx += (double)g * xh;
        }
        float mg = (float)(sg / (double)n), mgx = (float)(sgx / (double)n);
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            float g = has_w ? dy[j] * w[j] : dy[j], xh = ((x[j] - hi) - lo) * rstd;
            dx[j] += rstd * (g - mg - xh * mgx);
        }
    }
    if (pw) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) pw[j] += dy[j] * (((x[j] - hi) - lo) * rstd);
    }
    if (pb) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) pb[j] += dy[j];
    }
}

static GB__CLONES void gb__ts_layer_norm_row_backward(float *dx, float *pw, float *pb, const float *x, const float *dy,
                                                   const float *w, const float *mean, float rstd, int64_t n) {
    if (w) gb__ts_layer_norm_row_backward_impl(dx, pw, pb, x, dy, w, mean, rstd, n, true);
    else gb__ts_layer_norm_row_backward_impl(dx, pw, pb, x, dy, w, mean, rstd, n, false);
}

/* dw += sum_rows dy * xhat; db += sum_rows dy: each block of rows sums into
 * its partials (float, at most 64 terms), which are then added in double. */
gb_status gb__ts_op_LAYER_NORM_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb__ts_norm_in in;
    gb_status st = gb__ts_norm_frozen("layer_norm", out, dsrc);
    if (!st) st = gb__ts_norm_in_get(&in, out);
    if (st) return st;
    int64_t wi = out->iparam[GB__NORM_W], bi = out->iparam[GB__NORM_B], rows = in.rows, n = in.n;
    const float *x = gb_tensor_data(in.x);                             /* [rows, n] */
    const float *w = in.w ? gb_tensor_data(in.w) : NULL;               /* [n] */
    const float *dy = gb_tensor_data(dout);                            /* [rows, n] */
    const float *mean = gb_tensor_data(out->saved[0]);                 /* [rows, 2]: hi, lo */
    const float *rstd = gb_tensor_data(out->saved[1]);                 /* [rows] */
    float *dx = dsrc[0] ? gb_tensor_data(dsrc[0]) : NULL;              /* [rows, n] */
    float *dw = wi >= 0 && dsrc[wi] ? gb_tensor_data(dsrc[wi]) : NULL; /* [n] */
    float *db = bi >= 0 && dsrc[bi] ? gb_tensor_data(dsrc[bi]) : NULL; /* [n] */
    int64_t blk = gb__ts_norm_block(rows, dw || db), nblk = (rows + blk - 1) / blk;
    float *part = gb__ts_norm_partials("layer_norm backward", dw || db ? nblk : 0, 2, n, &st); /* [nblk, 2, n] */
    if (st == GB_OK) {
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
        for (int64_t k = 0; k < nblk; k++) {
            float *pw = dw ? part + 2 * k * n : NULL, *pb = db ? part + (2 * k + 1) * n : NULL;
            for (int64_t r = k * blk; r < rows && r < (k + 1) * blk; r++)
                gb__ts_layer_norm_row_backward(dx ? dx + r * n : NULL, pw, pb, x + r * n, dy + r * n, w, mean + 2 * r,
                                            rstd[r], n);
        }
        if (part) {
            gb__ts_norm_sum_partials(dw, part, nblk, 2 * n, n);
            gb__ts_norm_sum_partials(db, part + n, nblk, 2 * n, n);
        }
    }
    free(part);
    gb__ts_norm_in_free(&in);
    return st;
}

gb_tensor *gb_layer_norm(gb_tensor *x, gb_tensor *weight, gb_tensor *bias, float eps) {
    return gb__ts_norm_new(GB_OP_LAYER_NORM, "layer_norm", x, weight, bias, eps);
}

/* ---- rms_norm ----------------------------------------------------------- */

/* HF LlamaRMSNorm in f32: h = x * rsqrt(mean(x^2) + eps); y = weight * h. */
static GB__INLINE void gb__ts_rms_norm_row_impl(float *restrict y,       /* [n] */
                                             float *restrict rstd_out,
                                             const float *restrict x, /* [n] */
                                             const float *w,          /* [n] if has_w */
                                             int64_t n, double eps, bool has_w) {
    double sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t j = 0; j < n; j++) sq += (double)x[j] * x[j];
    float rstd = (float)(1.0 / sqrt((double)(float)(sq / (double)n) + eps)); /* the mean rounds to f32, as in HF */
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float h = x[j] * rstd;
        y[j] = has_w ? w[j] * h : h;
    }
    *rstd_out = rstd;
}

static GB__CLONES void gb__ts_rms_norm_row(float *y, float *rstd, const float *x, const float *w, int64_t n, double eps) {
    if (w) gb__ts_rms_norm_row_impl(y, rstd, x, w, n, eps, true);
    else gb__ts_rms_norm_row_impl(y, rstd, x, w, n, eps, false);
}

gb_status gb__ts_op_RMS_NORM_forward(gb_tensor *out) {
    gb__ts_norm_in in;
    gb_status st = gb__ts_norm_in_get(&in, out);
    if (st) return st;
    if ((st = gb__ts_norm_saved(out, in.rows, false))) {
        gb__ts_norm_in_free(&in);
        return st;
    }
    const float *x = gb_tensor_data(in.x);                               /* [rows, n] */
    const float *w = in.w ? gb_tensor_data(in.w) : NULL;                 /* [n] */
    float *y = gb_tensor_data(out);                                      /* [rows, n] */
    float *srstd = out->saved[1] ? gb_tensor_data(out->saved[1]) : NULL; /* [rows] */
    int64_t rows = in.rows, n = in.n;
    double eps = out->fparam[0];
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float rstd;
        gb__ts_rms_norm_row(y + r * n, &rstd, x + r * n, w, n, eps);
        if (srstd) srstd[r] = rstd;
    }
    gb__ts_norm_in_free(&in);
    return GB_OK;
}

/* g = dy * w: dx += rstd * g - x * rstd^3 * mean(g * x); pw += dy * x * rstd. */
static GB__INLINE void gb__ts_rms_norm_row_backward_impl(float *restrict dx,       /* [n] or NULL */
                                                      float *restrict pw,       /* [n] or NULL */
                                                      const float *restrict x,  /* [n] */
                                                      const float *restrict dy, /* [n] */
                                                      const float *w,           /* [n] if has_w */
                                                      float rstd, int64_t n, bool has_w) {
    if (dx) {
        double sgx = 0;
#pragma omp simd reduction(+ : sgx)
        for (int64_t j = 0; j < n; j++) sgx += (double)(has_w ? dy[j] * w[j] : dy[j]) * x[j];
        float c = (float)(sgx / (double)n) * rstd * rstd * rstd;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) dx[j] += rstd * (has_w ? dy[j] * w[j] : dy[j]) - x[j] * c;
    }
    if (pw) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) pw[j] += dy[j] * (x[j] * rstd);
    }
}

static GB__CLONES void gb__ts_rms_norm_row_backward(float *dx, float *pw, const float *x, const float *dy, const float *w,
                                                 float rstd, int64_t n) {
    if (w) gb__ts_rms_norm_row_backward_impl(dx, pw, x, dy, w, rstd, n, true);
    else gb__ts_rms_norm_row_backward_impl(dx, pw, x, dy, w, rstd, n, false);
}

/* dw += sum_rows dy * x * rstd, through partials as in layer_norm's backward. */
gb_status gb__ts_op_RMS_NORM_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb__ts_norm_in in;
    gb_status st = gb__ts_norm_frozen("rms_norm", out, dsrc);
    if (!st) st = gb__ts_norm_in_get(&in, out);
    if (st) return st;
    int64_t wi = out->iparam[GB__NORM_W], rows = in.rows, n = in.n;
    const float *x = gb_tensor_data(in.x);                             /* [rows, n] */
    const float *w = in.w ? gb_tensor_data(in.w) : NULL;               /* [n] */
    const float *dy = gb_tensor_data(dout);                            /* [rows, n] */
    const float *rstd = gb_tensor_data(out->saved[1]);                 /* [rows] */
    float *dx = dsrc[0] ? gb_tensor_data(dsrc[0]) : NULL;              /* [rows, n] */
    float *dw = wi >= 0 && dsrc[wi] ? gb_tensor_data(dsrc[wi]) : NULL; /* [n] */
    int64_t blk = gb__ts_norm_block(rows, dw), nblk = (rows + blk - 1) / blk;
    float *part = gb__ts_norm_partials("rms_norm backward", dw ? nblk : 0, 1, n, &st); /* [nblk, n] */
    if (st == GB_OK) {
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
        for (int64_t k = 0; k < nblk; k++) {
            float *pw = dw ? part + k * n : NULL;
            for (int64_t r = k * blk; r < rows && r < (k + 1) * blk; r++)
                gb__ts_rms_norm_row_backward(dx ? dx + r * n : NULL, pw, x + r * n, dy + r * n, w, rstd[r], n);
        }
        if (part) gb__ts_norm_sum_partials(dw, part, nblk, n, n);
    }
    free(part);
    gb__ts_norm_in_free(&in);
    return st;
}

gb_tensor *gb_rms_norm(gb_tensor *x, gb_tensor *weight, float eps) {
    return gb__ts_norm_new(GB_OP_RMS_NORM, "rms_norm", x, weight, NULL, eps);
}
