/* layer_norm and rms_norm over the last dim.
 *
 * Both view x as [rows, n]. Statistics are accumulated in double and kept per
 * row in out->saved[] (only when a gradient will be asked for), so backward
 * does not recompute them. Sources are compacted (autograd has no NULL
 * sources): iparam says where the optional weight and bias sit. */
#include "blas.h"

#include <math.h>

/* iparam: [0] src index of weight or -1, [1] src index of bias or -1.
 * fparam: [0] eps. saved: [0] mean [rows, 2] (layer_norm only), [1] rstd [rows].
 *
 * The mean is kept as two floats, hi + lo: x - hi is exact when x is near the
 * mean, and subtracting lo after keeps the digits a single f32 mean would
 * lose when |mean| >> std (activations with a large offset). */
#define GB__NORM_W 0
#define GB__NORM_B 1

static gb_status gb__check_norm_args(const char *op, const gb_tensor *x, const gb_tensor *w, const gb_tensor *b) {
    const gb_tensor *all[3] = {x, w, b};
    for (int i = 0; i < 3; i++)
        if (all[i] && all[i]->dtype != GB_DTYPE_F32)
            return gb__fail(GB_ERR_DTYPE, "%s: expected float32 tensors, got %s %s", op, gb_dtype_name(all[i]->dtype),
                            GB__SHAPE_STR(all[i]));
    if (x->ndim == 0) return gb__fail(GB_ERR_SHAPE, "%s: input must be at least 1-D, got a 0-dim tensor", op);
    int64_t n = x->shape[x->ndim - 1];
    const char *names[2] = {"weight", "bias"};
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

static gb_tensor *gb__norm_new(gb_op op, const char *what, gb_tensor *x, gb_tensor *w, gb_tensor *b, float eps) {
    if (gb__check_norm_args(what, x, w, b)) return NULL;
    gb_tensor *src[3] = {x};
    int nsrc = 1;
    int64_t wi = w ? nsrc : -1;
    if (w) src[nsrc++] = w;
    int64_t bi = b ? nsrc : -1;
    if (b) src[nsrc++] = b;
    gb_tensor *out = gb__op_new(op, what, GB_DTYPE_F32, x->ndim, x->shape, nsrc, src);
    if (!out) return NULL;
    out->iparam[GB__NORM_W] = wi;
    out->iparam[GB__NORM_B] = bi;
    out->fparam[0] = eps;
    return gb__op_run(out);
}

/* Dense copies of x and the optional weight and bias of a norm op. */
typedef struct gb__norm_in {
    gb_tensor *x, *w, *b;
    int64_t rows, n;
} gb__norm_in;

static void gb__norm_in_free(gb__norm_in *in) {
    gb_tensor_free(in->x);
    gb_tensor_free(in->w);
    gb_tensor_free(in->b);
}

static gb_status gb__norm_in_get(gb__norm_in *in, const gb_tensor *out) {
    *in = (gb__norm_in){0};
    int64_t wi = out->iparam[GB__NORM_W], bi = out->iparam[GB__NORM_B];
    in->x = gb__dense(out->src[0]);
    if (in->x && wi >= 0) in->w = gb__dense(out->src[wi]);
    if (in->x && bi >= 0 && (wi < 0 || in->w)) in->b = gb__dense(out->src[bi]);
    if (!in->x || (wi >= 0 && !in->w) || (bi >= 0 && !in->b)) {
        gb__norm_in_free(in);
        return gb_last_status();
    }
    in->n = out->shape[out->ndim - 1];
    in->rows = in->n ? gb_tensor_numel(out) / in->n : 0;
    return GB_OK;
}

/* Per-row statistics tensors for backward, NULL when no gradient is needed. */
static gb_status gb__norm_saved(gb_tensor *out, int64_t rows, bool mean) {
    if (!out->requires_grad) return GB_OK;
    if (mean && !(out->saved[0] = gb_empty(2, (int64_t[]){rows, 2}, GB_DTYPE_F32))) return gb_last_status();
    if (!(out->saved[1] = gb_empty(1, (int64_t[]){rows}, GB_DTYPE_F32))) return gb_last_status();
    return GB_OK;
}

/* ---- layer_norm --------------------------------------------------------- */

gb_status gb__op_LAYER_NORM_forward(gb_tensor *out) {
    gb__norm_in in;
    gb_status st = gb__norm_in_get(&in, out);
    if (st) return st;
    if ((st = gb__norm_saved(out, in.rows, true))) {
        gb__norm_in_free(&in);
        return st;
    }
    const float *x = gb_tensor_data(in.x);                        /* [rows, n] */
    const float *w = in.w ? gb_tensor_data(in.w) : NULL;          /* [n] */
    const float *b = in.b ? gb_tensor_data(in.b) : NULL;          /* [n] */
    float *y = gb_tensor_data(out);                               /* [rows, n] */
    float *smean = out->saved[0] ? gb_tensor_data(out->saved[0]) : NULL; /* [rows, 2] */
    float *srstd = out->saved[1] ? gb_tensor_data(out->saved[1]) : NULL; /* [rows] */
    int64_t rows = in.rows, n = in.n;
    double eps = out->fparam[0];
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < n; j++) sum += xr[j];
        double mean = sum / (double)n;
#pragma omp simd reduction(+ : sq)
        for (int64_t j = 0; j < n; j++) sq += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        float hi = (float)mean, lo = (float)(mean - hi), rstd = (float)(1.0 / sqrt(sq / (double)n + eps));
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            float v = ((xr[j] - hi) - lo) * rstd;
            yr[j] = v * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
        }
        if (smean) smean[2 * r] = hi, smean[2 * r + 1] = lo, srstd[r] = rstd;
    }
    gb__norm_in_free(&in);
    return GB_OK;
}

/* xhat = (x - mean) * rstd, g = dy * w:
 * dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); dw += sum_rows dy * xhat; db += sum_rows dy. */
gb_status gb__op_LAYER_NORM_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb__norm_in in;
    gb_status st = gb__norm_in_get(&in, out);
    if (st) return st;
    int64_t wi = out->iparam[GB__NORM_W], bi = out->iparam[GB__NORM_B], rows = in.rows, n = in.n;
    const float *x = gb_tensor_data(in.x);                 /* [rows, n] */
    const float *w = in.w ? gb_tensor_data(in.w) : NULL;   /* [n] */
    const float *dy = gb_tensor_data(dout);                /* [rows, n] */
    const float *mean = gb_tensor_data(out->saved[0]);     /* [rows, 2]: hi, lo */
    const float *rstd = gb_tensor_data(out->saved[1]);     /* [rows] */
    float *dx = dsrc[0] ? gb_tensor_data(dsrc[0]) : NULL;  /* [rows, n] */
    float *dw = wi >= 0 && dsrc[wi] ? gb_tensor_data(dsrc[wi]) : NULL; /* [n] */
    float *db = bi >= 0 && dsrc[bi] ? gb_tensor_data(dsrc[bi]) : NULL; /* [n] */
    if (dx) {
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n, *dyr = dy + r * n;
            double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
            for (int64_t j = 0; j < n; j++) {
                float g = dyr[j] * (w ? w[j] : 1.0f), xh = ((xr[j] - mean[2 * r]) - mean[2 * r + 1]) * rstd[r];
                sg += g;
                sgx += (double)g * xh;
            }
            float mg = (float)(sg / (double)n), mgx = (float)(sgx / (double)n);
#pragma omp simd
            for (int64_t j = 0; j < n; j++) {
                float g = dyr[j] * (w ? w[j] : 1.0f), xh = ((xr[j] - mean[2 * r]) - mean[2 * r + 1]) * rstd[r];
                dx[r * n + j] += rstd[r] * (g - mg - xh * mgx);
            }
        }
    }
    if (dw || db) { /* columns in parallel: each thread owns its dw[j], db[j] */
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
        for (int64_t j = 0; j < n; j++) {
            double sw = 0, sb = 0;
            for (int64_t r = 0; r < rows; r++) {
                sw += (double)dy[r * n + j] * (((x[r * n + j] - mean[2 * r]) - mean[2 * r + 1]) * rstd[r]);
                sb += dy[r * n + j];
            }
            if (dw) dw[j] += (float)sw;
            if (db) db[j] += (float)sb;
        }
    }
    gb__norm_in_free(&in);
    return GB_OK;
}

gb_tensor *gb_layer_norm(gb_tensor *x, gb_tensor *weight, gb_tensor *bias, float eps) {
    return gb__norm_new(GB_OP_LAYER_NORM, "layer_norm", x, weight, bias, eps);
}

/* ---- rms_norm ----------------------------------------------------------- */

/* HF LlamaRMSNorm in f32: h = x * rsqrt(mean(x^2) + eps); y = weight * h. */
gb_status gb__op_RMS_NORM_forward(gb_tensor *out) {
    gb__norm_in in;
    gb_status st = gb__norm_in_get(&in, out);
    if (st) return st;
    if ((st = gb__norm_saved(out, in.rows, false))) {
        gb__norm_in_free(&in);
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
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sq = 0;
#pragma omp simd reduction(+ : sq)
        for (int64_t j = 0; j < n; j++) sq += (double)xr[j] * xr[j];
        float rstd = (float)(1.0 / sqrt((double)(float)(sq / (double)n) + eps));
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            float h = xr[j] * rstd;
            yr[j] = w ? w[j] * h : h;
        }
        if (srstd) srstd[r] = rstd;
    }
    gb__norm_in_free(&in);
    return GB_OK;
}

/* g = dy * w: dx = rstd * g - x * rstd^3 * mean(g * x); dw += sum_rows dy * x * rstd. */
gb_status gb__op_RMS_NORM_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb__norm_in in;
    gb_status st = gb__norm_in_get(&in, out);
    if (st) return st;
    int64_t wi = out->iparam[GB__NORM_W], rows = in.rows, n = in.n;
    const float *x = gb_tensor_data(in.x);                 /* [rows, n] */
    const float *w = in.w ? gb_tensor_data(in.w) : NULL;   /* [n] */
    const float *dy = gb_tensor_data(dout);                /* [rows, n] */
    const float *rstd = gb_tensor_data(out->saved[1]);     /* [rows] */
    float *dx = dsrc[0] ? gb_tensor_data(dsrc[0]) : NULL;  /* [rows, n] */
    float *dw = wi >= 0 && dsrc[wi] ? gb_tensor_data(dsrc[wi]) : NULL; /* [n] */
    if (dx) {
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n, *dyr = dy + r * n;
            double sgx = 0;
#pragma omp simd reduction(+ : sgx)
            for (int64_t j = 0; j < n; j++) sgx += (double)dyr[j] * (w ? w[j] : 1.0f) * xr[j];
            float rs = rstd[r], c = (float)(sgx / (double)n) * rs * rs * rs;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) dx[r * n + j] += rs * dyr[j] * (w ? w[j] : 1.0f) - xr[j] * c;
        }
    }
    if (dw) {
#pragma omp parallel for num_threads(gb__threads()) if (rows * n >= GB__PAR_MIN_WORK) schedule(static)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t r = 0; r < rows; r++) s += (double)dy[r * n + j] * (x[r * n + j] * rstd[r]);
            dw[j] += (float)s;
        }
    }
    gb__norm_in_free(&in);
    return GB_OK;
}

gb_tensor *gb_rms_norm(gb_tensor *x, gb_tensor *weight, float eps) {
    return gb__norm_new(GB_OP_RMS_NORM, "rms_norm", x, weight, NULL, eps);
}
