/* Reductions: sum, mean, var, max, min, argmax, argmin over dims, and
 * max_all.
 *
 * A reduction splits the input's dims into kept dims (one output element
 * each) and reduced dims (walked in row-major order for each output element).
 * One thread computes an output element from start to end in that fixed
 * order, summing in double, so results are deterministic and independent of
 * the thread count. Max, min and their arg versions take the first extreme
 * element in that order, and a NaN wins, as in torch.
 *
 * The reduced dims of an op are a bitmask in iparam[0] (keepdim in
 * iparam[1], var's correction in iparam[2]). */
#include "elementwise_impl.h"

#include <math.h>
#include <stdlib.h>

#define GB__RED_MASK 0
#define GB__RED_KEEPDIM 1
#define GB__RED_CORRECTION 2

typedef struct gb__ts_reduction {
    int nkeep, nred;
    int64_t kshape[GB_MAX_DIMS], kstride[GB_MAX_DIMS]; /* kept dims */
    int64_t rshape[GB_MAX_DIMS], rstride[GB_MAX_DIMS]; /* reduced dims */
    int64_t nout, nin;
} gb__ts_reduction;

/* Append a dim to (n, shape, stride). Size-1 dims are dropped and a dim that
 * continues the previous one in memory is merged into it: the row-major
 * numbering of the elements stays the same, the loops get shorter. */
static void gb__ts_push_dim(int *n, int64_t *shape, int64_t *stride, int64_t size, int64_t st) {
    if (size == 1) return;
    if (*n > 0 && stride[*n - 1] == size * st) {
        shape[*n - 1] *= size;
        stride[*n - 1] = st;
        return;
    }
    shape[*n] = size;
    stride[*n] = st;
    (*n)++;
}

/* Plan the reduction of t (read through `stride`) over the dims in mask. */
static void gb__ts_reduction_plan(gb__ts_reduction *r, const gb_tensor *t, const int64_t *stride, uint32_t mask) {
    r->nkeep = r->nred = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (mask >> d & 1u) gb__ts_push_dim(&r->nred, r->rshape, r->rstride, t->shape[d], stride[d]);
        else gb__ts_push_dim(&r->nkeep, r->kshape, r->kstride, t->shape[d], stride[d]);
    }
    r->nout = gb__ts_numel(r->nkeep, r->kshape);
    r->nin = gb__ts_numel(r->nred, r->rshape);
}

/* Offset of row-major element i of a shape under stride. */
static int64_t gb__ts_offset(int n, const int64_t *shape, const int64_t *stride, int64_t i) {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
        off += i % shape[d] * stride[d];
        i /= shape[d];
    }
    return off;
}

static int64_t gb__ts_out_offset(const gb__ts_reduction *r, int64_t o) {
    return gb__ts_offset(r->nkeep, r->kshape, r->kstride, o);
}

/* Strides that read the gradient of the output (contiguous, keepdim or not:
 * the same layout) while walking the input's shape: 0 on reduced dims. */
static void gb__ts_dout_strides(const gb_tensor *src, uint32_t mask, int64_t *stride) {
    int64_t s = 1;
    for (int d = src->ndim - 1; d >= 0; d--) {
        if (mask >> d & 1u) {
            stride[d] = 0;
        } else {
            stride[d] = s;
            s *= src->shape[d];
        }
    }
}

/* Sum (in double) of the reduced elements of output o. */
static double gb__ts_sum_of(const float *x, const gb__ts_reduction *r, int64_t o) {
    const float *xo = x + gb__ts_out_offset(r, o);
    double s = 0;
    if (r->nred <= 1) {
        int64_t st = r->nred ? r->rstride[0] : 0;
        for (int64_t k = 0; k < r->nin; k++) s += xo[k * st];
        return s;
    }
    gb__ts_iter it;
    gb__ts_iter_init(&it, r->nred, r->rshape, 1, (const int64_t *[]){r->rstride});
    for (int64_t k = 0; k < r->nin; k++, gb__ts_iter_next(&it)) s += xo[it.off[0]];
    return s;
}

/* Sum of squared deviations from the mean m of output o's elements. */
static double gb__ts_sqdev_of(const float *x, const gb__ts_reduction *r, int64_t o, double m) {
    const float *xo = x + gb__ts_out_offset(r, o);
    double s = 0;
    gb__ts_iter it;
    gb__ts_iter_init(&it, r->nred, r->rshape, 1, (const int64_t *[]){r->rstride});
    for (int64_t k = 0; k < r->nin; k++, gb__ts_iter_next(&it)) s += (xo[it.off[0]] - m) * (xo[it.off[0]] - m);
    return s;
}

/* Row-major position among output o's reduced elements of the first max
 * (or min); the first NaN wins. Its value goes to *value (*ivalue for
 * int64, which compares as int64: a double would tie 2^53 and 2^53 + 1).
 * x is of any dtype. */
static int64_t gb__ts_arg_extreme(const void *x, gb_dtype dt, const gb__ts_reduction *r, int64_t o, bool want_max,
                               double *value, int64_t *ivalue) {
    int64_t base = gb__ts_out_offset(r, o), best_k = 0;
    double best = 0;
    gb__ts_iter it;
    gb__ts_iter_init(&it, r->nred, r->rshape, 1, (const int64_t *[]){r->rstride});
    if (dt == GB_DTYPE_I64) {
        const int64_t *xi = x;
        int64_t ibest = 0;
        for (int64_t k = 0; k < r->nin; k++, gb__ts_iter_next(&it)) {
            int64_t v = xi[base + it.off[0]];
            if (k == 0 || (want_max ? v > ibest : v < ibest)) ibest = v, best_k = k;
        }
        *value = (double)ibest, *ivalue = ibest;
        return best_k;
    }
    for (int64_t k = 0; k < r->nin; k++, gb__ts_iter_next(&it)) {
        double v = gb__ts_load_any(x, dt, base + it.off[0]);
        if (k == 0 || isnan(v) || (want_max ? v > best : v < best)) {
            best = v;
            best_k = k;
            if (isnan(v)) break;
        }
    }
    *value = best;
    return best_k;
}

/* ---- sum and mean ------------------------------------------------------- */

/* Sums over leading rows of contiguous columns (dim 0 of [N, D]): walking
 * the rows in order and adding each into D running sums reads memory in
 * order, where gb__ts_sum_of would stride down each column; each sum still
 * adds its elements in the same order. False when the layout is not that,
 * or without memory for the sums (the general loop then runs). */
static bool gb__ts_sum_rows(const float *x, const gb__ts_reduction *r, float *y, bool mean) {
    if (r->nkeep != 1 || r->kstride[0] != 1 || r->nred != 1) return false;
    int64_t D = r->nout, N = r->nin, row_stride = r->rstride[0];
    double *acc = calloc((size_t)D, sizeof *acc); /* [D] */
    if (!acc) return false;
#pragma omp parallel num_threads(gb__threads()) if (D > 1 && D * N > GB__PAR_MIN_WORK)
    {
        int64_t lo, hi;
        gb__ts_thread_range(D, &lo, &hi);
        for (int64_t k = 0; k < N; k++) {
            const float *row = x + k * row_stride;
            for (int64_t j = lo; j < hi; j++) acc[j] += row[j];
        }
    }
    for (int64_t j = 0; j < D; j++) y[j] = (float)(mean ? acc[j] / (double)N : acc[j]);
    free(acc);
    return true;
}

/* An int64 sum is exact and wraps around as torch's (in uint64). */
static void gb__ts_sum_i64(const gb_tensor *src, const gb__ts_reduction *r, int64_t *y) {
    const int64_t *x = gb_tensor_data(src); /* src's strides */
#pragma omp parallel for num_threads(gb__threads()) if (r->nout > 1 && r->nout * r->nin > GB__PAR_MIN_WORK)
    for (int64_t o = 0; o < r->nout; o++) {
        const int64_t *xo = x + gb__ts_out_offset(r, o);
        uint64_t s = 0;
        gb__ts_iter it;
        gb__ts_iter_init(&it, r->nred, r->rshape, 1, (const int64_t *[]){r->rstride});
        for (int64_t k = 0; k < r->nin; k++, gb__ts_iter_next(&it)) s += (uint64_t)xo[it.off[0]];
        y[o] = (int64_t)s;
    }
}

static gb_status gb__ts_sum_forward(gb_tensor *out, bool mean) {
    const gb_tensor *src = out->src[0];
    if (out->dtype == GB_DTYPE_I64) {
        gb__ts_reduction r;
        gb__ts_reduction_plan(&r, src, src->stride, (uint32_t)out->iparam[GB__RED_MASK]);
        gb__ts_sum_i64(src, &r, gb_tensor_data(out));
        return GB_OK;
    }
    const float *x = gb_tensor_data(src); /* src's strides */
    float *y = gb_tensor_data(out);       /* [nout] */
    gb__ts_reduction r;
    gb__ts_reduction_plan(&r, src, src->stride, (uint32_t)out->iparam[GB__RED_MASK]);
    if (gb__ts_sum_rows(x, &r, y, mean)) return GB_OK;
#pragma omp parallel for num_threads(gb__threads()) if (r.nout > 1 && r.nout * r.nin > GB__PAR_MIN_WORK)
    for (int64_t o = 0; o < r.nout; o++) {
        double s = gb__ts_sum_of(x, &r, o);
        y[o] = (float)(mean ? s / (double)r.nin : s);
    }
    return GB_OK;
}

/* dx[i] += dy[j] / div, j the output element that x[i] went into. */
static gb_status gb__ts_sum_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc, float div) {
    if (!dsrc[0]) return GB_OK;
    const gb_tensor *src = out->src[0];
    const float *dy = gb_tensor_data(dout); /* [nout] */
    float *dx = gb_tensor_data(dsrc[0]);    /* [numel src] */
    int64_t sy[GB_MAX_DIMS];
    gb__ts_dout_strides(src, (uint32_t)out->iparam[GB__RED_MASK], sy);
    int64_t n = gb_tensor_numel(src);
#pragma omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)
    {
        gb__ts_iter it;
        int64_t lo, hi;
        gb__ts_iter_share(&it, src->ndim, src->shape, 1, (const int64_t *[]){sy}, &lo, &hi);
        for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it)) dx[i] += dy[it.off[0]] / div;
    }
    return GB_OK;
}

gb_status gb__ts_op_SUM_forward(gb_tensor *out) { return gb__ts_sum_forward(out, false); }
gb_status gb__ts_op_SUM_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_sum_backward(out, dout, dsrc, 1.0f);
}

gb_status gb__ts_op_MEAN_forward(gb_tensor *out) { return gb__ts_sum_forward(out, true); }
gb_status gb__ts_op_MEAN_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb__ts_reduction r;
    gb__ts_reduction_plan(&r, out->src[0], out->src[0]->stride, (uint32_t)out->iparam[GB__RED_MASK]);
    return gb__ts_sum_backward(out, dout, dsrc, (float)r.nin);
}

/* ---- var ---------------------------------------------------------------- */

/* Two passes (mean, then squared deviations), divided by N - correction
 * clamped at 0 as torch does (0 gives inf or nan). */
gb_status gb__ts_op_VAR_forward(gb_tensor *out) {
    const gb_tensor *src = out->src[0];
    const float *x = gb_tensor_data(src); /* src's strides */
    float *y = gb_tensor_data(out);       /* [nout] */
    gb__ts_reduction r;
    gb__ts_reduction_plan(&r, src, src->stride, (uint32_t)out->iparam[GB__RED_MASK]);
    double dof = (double)(r.nin - out->iparam[GB__RED_CORRECTION]);
    if (dof < 0) dof = 0;
#pragma omp parallel for num_threads(gb__threads()) if (r.nout > 1 && r.nout * r.nin > GB__PAR_MIN_WORK)
    for (int64_t o = 0; o < r.nout; o++) {
        double m = gb__ts_sum_of(x, &r, o) / (double)r.nin;
        y[o] = (float)(gb__ts_sqdev_of(x, &r, o, m) / dof);
    }
    return GB_OK;
}

/* dx = 2 (x - mean) / (N - correction) * dy; torch does not clamp N - correction here. */
gb_status gb__ts_op_VAR_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    const gb_tensor *src = out->src[0];
    const float *x = gb_tensor_data(src);   /* src's strides */
    const float *dy = gb_tensor_data(dout); /* [nout] */
    float *dx = gb_tensor_data(dsrc[0]);    /* [numel src] */
    uint32_t mask = (uint32_t)out->iparam[GB__RED_MASK];
    gb__ts_reduction r;
    gb__ts_reduction_plan(&r, src, src->stride, mask);
    float *mean = gb__malloc((size_t)(r.nout ? r.nout : 1) * sizeof *mean, "var backward"); /* [nout] */
    if (!mean) return GB_ERR_ALLOC;
    for (int64_t o = 0; o < r.nout; o++) mean[o] = (float)(gb__ts_sum_of(x, &r, o) / (double)r.nin);
    float scale = (float)(2.0 / (double)(r.nin - out->iparam[GB__RED_CORRECTION]));
    int64_t sy[GB_MAX_DIMS];
    gb__ts_dout_strides(src, mask, sy);
    int64_t n = gb_tensor_numel(src);
#pragma omp parallel num_threads(gb__threads()) if (n > GB__PAR_MIN_WORK)
    {
        gb__ts_iter it;
        int64_t lo, hi;
        gb__ts_iter_share(&it, src->ndim, src->shape, 2, (const int64_t *[]){src->stride, sy}, &lo, &hi);
        for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&it))
            dx[i] += scale * dy[it.off[1]] * (x[it.off[0]] - mean[it.off[1]]);
    }
    free(mean);
    return GB_OK;
}

/* ---- max, min, argmax, argmin ------------------------------------------- */

static gb_status gb__ts_extreme_forward(gb_tensor *out, bool want_max) {
    const gb_tensor *src = out->src[0];
    const void *x = gb_tensor_data(src); /* src's strides, any dtype for arg ops */
    gb__ts_reduction r;
    gb__ts_reduction_plan(&r, src, src->stride, (uint32_t)out->iparam[GB__RED_MASK]);
    bool values = out->op != GB_OP_ARGMAX && out->op != GB_OP_ARGMIN;
    float *y = gb_tensor_data(out);    /* [nout], f32 values */
    int64_t *yi = gb_tensor_data(out); /* [nout], indices or int64 values */
#pragma omp parallel for num_threads(gb__threads()) if (r.nout > 1 && r.nout * r.nin > GB__PAR_MIN_WORK)
    for (int64_t o = 0; o < r.nout; o++) {
        double v;
        int64_t iv, k = gb__ts_arg_extreme(x, src->dtype, &r, o, want_max, &v, &iv);
        if (!values) yi[o] = k;
        else if (out->dtype == GB_DTYPE_I64) yi[o] = iv;
        else y[o] = (float)v;
    }
    return GB_OK;
}

/* The whole gradient of each output goes to the element the forward chose
 * (found again: src is saved). */
static gb_status gb__ts_extreme_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc, bool want_max) {
    if (!dsrc[0]) return GB_OK;
    const gb_tensor *src = out->src[0];
    const float *x = gb_tensor_data(src);   /* src's strides */
    const float *dy = gb_tensor_data(dout); /* [nout] */
    float *dx = gb_tensor_data(dsrc[0]);    /* [numel src] */
    uint32_t mask = (uint32_t)out->iparam[GB__RED_MASK];
    int64_t cstride[GB_MAX_DIMS];
    gb__ts_contiguous_strides(src->ndim, src->shape, cstride);
    gb__ts_reduction r, rc; /* reading src; writing dx */
    gb__ts_reduction_plan(&r, src, src->stride, mask);
    gb__ts_reduction_plan(&rc, src, cstride, mask);
#pragma omp parallel for num_threads(gb__threads()) if (r.nout > 1 && r.nout * r.nin > GB__PAR_MIN_WORK)
    for (int64_t o = 0; o < r.nout; o++) {
        double v;
        int64_t iv, k = gb__ts_arg_extreme(x, GB_DTYPE_F32, &r, o, want_max, &v, &iv);
        dx[gb__ts_out_offset(&rc, o) + gb__ts_offset(rc.nred, rc.rshape, rc.rstride, k)] += dy[o];
    }
    return GB_OK;
}

gb_status gb__ts_op_MAX_forward(gb_tensor *out) { return gb__ts_extreme_forward(out, true); }
gb_status gb__ts_op_MAX_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_extreme_backward(out, dout, dsrc, true);
}
gb_status gb__ts_op_MIN_forward(gb_tensor *out) { return gb__ts_extreme_forward(out, false); }
gb_status gb__ts_op_MIN_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_extreme_backward(out, dout, dsrc, false);
}

/* argmax/argmin results never record (integer results have no gradient), so
 * autograd cannot reach these backwards. */
static gb_status gb__ts_arg_backward(const gb_tensor *out) {
    return gb__fail(GB_ERR_AUTOGRAD, "%s: the result %s (indices) is not differentiable", gb__ts_ops[out->op].name,
                    GB__SHAPE_STR(out));
}
gb_status gb__ts_op_ARGMAX_forward(gb_tensor *out) { return gb__ts_extreme_forward(out, true); }
gb_status gb__ts_op_ARGMAX_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    (void)dout, (void)dsrc;
    return gb__ts_arg_backward(out);
}
gb_status gb__ts_op_ARGMIN_forward(gb_tensor *out) { return gb__ts_extreme_forward(out, false); }
gb_status gb__ts_op_ARGMIN_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    (void)dout, (void)dsrc;
    return gb__ts_arg_backward(out);
}

/* MAX_ALL: as torch's max() without a dim, the gradient is shared evenly by
 * all elements equal to the max (by all NaNs when the max is NaN). */
gb_status gb__ts_op_MAX_ALL_forward(gb_tensor *out) { return gb__ts_extreme_forward(out, true); }

static inline bool gb__ts_is_max(float v, float max) { return v == max || (isnan(v) && isnan(max)); }

gb_status gb__ts_op_MAX_ALL_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    const gb_tensor *src = out->src[0];
    const float *x = gb_tensor_data(src);   /* src's strides */
    const float *y = gb_tensor_data(out);   /* [1] */
    const float *dy = gb_tensor_data(dout); /* [1] */
    float *dx = gb_tensor_data(dsrc[0]);    /* [numel src] */
    gb__ts_iter it;
    gb__ts_iter_init(&it, src->ndim, src->shape, 1, (const int64_t *[]){src->stride});
    int64_t ties = 0;
    for (int64_t i = 0; i < it.n; i++, gb__ts_iter_next(&it)) ties += gb__ts_is_max(x[it.off[0]], y[0]);
    float g = dy[0] / (float)ties;
#pragma omp parallel num_threads(gb__threads()) if (it.n > GB__PAR_MIN_WORK)
    {
        gb__ts_iter jt;
        int64_t lo, hi;
        gb__ts_iter_share(&jt, src->ndim, src->shape, 1, (const int64_t *[]){src->stride}, &lo, &hi);
        for (int64_t i = lo; i < hi; i++, gb__ts_iter_next(&jt))
            if (gb__ts_is_max(x[jt.off[0]], y[0])) dx[i] += g;
    }
    return GB_OK;
}

/* ---- vector norms ---------------------------------------------------------- */

/* torch.linalg.vector_norm of order p (fparam[0]): sum(|x|^p)^(1/p), with
 * p = inf the largest |x|, -inf the smallest, 0 the count of nonzeros;
 * summed in double as the other reductions. */
static double gb__ts_norm_of(const float *x, const gb__ts_reduction *r, int64_t o, double p) {
    const float *xo = x + gb__ts_out_offset(r, o);
    double s = isinf(p) && p < 0 ? INFINITY : 0;
    gb__ts_iter it;
    gb__ts_iter_init(&it, r->nred, r->rshape, 1, (const int64_t *[]){r->rstride});
    for (int64_t k = 0; k < r->nin; k++, gb__ts_iter_next(&it)) {
        double a = fabs((double)xo[it.off[0]]);
        if (isnan(a)) return NAN;
        if (isinf(p)) s = p > 0 ? (a > s ? a : s) : (a < s ? a : s);
        else if (p == 0) s += a != 0;
        else if (p == 1) s += a;
        else if (p == 2) s += a * a;
        else s += pow(a, p);
    }
    return isinf(p) || p == 0 || p == 1 ? s : p == 2 ? sqrt(s) : pow(s, 1 / p);
}

gb_status gb__ts_op_NORM_forward(gb_tensor *out) {
    const gb_tensor *src = out->src[0];
    const float *x = gb_tensor_data(src); /* src's strides */
    float *y = gb_tensor_data(out);       /* [nout] */
    gb__ts_reduction r;
    gb__ts_reduction_plan(&r, src, src->stride, (uint32_t)out->iparam[GB__RED_MASK]);
#pragma omp parallel for num_threads(gb__threads()) if (r.nout > 1 && r.nout * r.nin > GB__PAR_MIN_WORK)
    for (int64_t o = 0; o < r.nout; o++) y[o] = (float)gb__ts_norm_of(x, &r, o, out->fparam[0]);
    return GB_OK;
}

static double gb__ts_sgn(double v) { return (v > 0) - (v < 0); }

/* PyTorch's norm_backward, case by case: p = 0 has none; 1: sgn(x) dy;
 * 2: x / norm dy, 0 where the norm is 0 (not NaN); +-inf: sgn(x) dy shared
 * by the elements whose |x| is the norm; other p: sgn(x) |x|^(p-1) dy /
 * norm^(p-1), 0 where the norm is 0 (for p < 1, where x is 0). */
gb_status gb__ts_op_NORM_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    const gb_tensor *src = out->src[0];
    const float *x = gb_tensor_data(src);   /* src's strides */
    const float *y = gb_tensor_data(out);   /* [nout] */
    const float *dy = gb_tensor_data(dout); /* [nout] */
    float *dx = gb_tensor_data(dsrc[0]);    /* [numel src] */
    double p = out->fparam[0];
    if (p == 0) return GB_OK;
    uint32_t mask = (uint32_t)out->iparam[GB__RED_MASK];
    int64_t cstride[GB_MAX_DIMS];
    gb__ts_contiguous_strides(src->ndim, src->shape, cstride);
    gb__ts_reduction r, rc; /* reading src; writing dx */
    gb__ts_reduction_plan(&r, src, src->stride, mask);
    gb__ts_reduction_plan(&rc, src, cstride, mask);
#pragma omp parallel for num_threads(gb__threads()) if (r.nout > 1 && r.nout * r.nin > GB__PAR_MIN_WORK)
    for (int64_t o = 0; o < r.nout; o++) {
        const float *xo = x + gb__ts_out_offset(&r, o);
        float *dxo = dx + gb__ts_out_offset(&rc, o);
        double norm = y[o], g = dy[o], ties = 0;
        gb__ts_iter it;
        if (isinf(p)) { /* how many elements share the gradient */
            gb__ts_iter_init(&it, r.nred, r.rshape, 1, (const int64_t *[]){r.rstride});
            for (int64_t k = 0; k < r.nin; k++, gb__ts_iter_next(&it)) {
                double a = fabs((double)xo[it.off[0]]);
                ties += a == norm || isnan(a);
            }
        }
        gb__ts_iter_init(&it, r.nred, r.rshape, 1, (const int64_t *[]){r.rstride});
        for (int64_t k = 0; k < r.nin; k++, gb__ts_iter_next(&it)) {
            double v = xo[it.off[0]], a = fabs(v), d;
            if (p == 1) d = gb__ts_sgn(v) * g;
            else if (p == 2) d = norm == 0 ? 0 : v / norm * g;
            else if (isinf(p)) d = a == norm || isnan(a) ? gb__ts_sgn(v) * g / ties : 0;
            else if (p < 1) d = v == 0 ? 0 : gb__ts_sgn(v) * pow(a, p - 1) * g * pow(norm, 1 - p);
            else d = norm == 0 ? 0 : gb__ts_sgn(v) * pow(a, p - 1) * g / pow(norm, p - 1);
            dxo[gb__ts_offset(rc.nred, rc.rshape, rc.rstride, k)] += (float)d;
        }
    }
    return GB_OK;
}

/* ---- entry points ------------------------------------------------------- */

/* The reduced dims as a bitmask: ndims = 0 means all; negative dims count
 * from the end; a repeated dim is an error (torch's wording). */
static gb_status gb__ts_dims_mask(const char *op, const gb_tensor *a, int ndims, const int *dims, uint32_t *mask) {
    *mask = 0;
    if (ndims < 0 || ndims > GB_MAX_DIMS)
        return gb__fail(GB_ERR_ARG, "%s: %d dims given, expected 0 (all) to %d", op, ndims, GB_MAX_DIMS);
    if (ndims > 0 && !dims) return gb__fail(GB_ERR_ARG, "%s: dims is NULL but ndims is %d", op, ndims);
    if (ndims == 0) {
        *mask = (1u << a->ndim) - 1u;
        return GB_OK;
    }
    for (int i = 0; i < ndims; i++) {
        int d = dims[i];
        if (gb__ts_norm_dim(op, &d, a->ndim)) return GB_ERR_INDEX;
        if (*mask >> d & 1u)
            return gb__fail(GB_ERR_ARG, "%s: dim %d appears multiple times in the list of dims", op, d);
        *mask |= 1u << d;
    }
    return GB_OK;
}

/* fp: a float parameter of the op (norm's order p). */
static gb_tensor *gb__ts_reduce(gb_op op, gb_tensor *a, int ndims, const int *dims, bool keepdim, int correction,
                               float fp) {
    const char *what = gb__ts_ops[op].name;
    bool arg = op == GB_OP_ARGMAX || op == GB_OP_ARGMIN;
    /* int64 sums and extremes are int64, exact, as torch's; a mean or a
     * variance of integers torch refuses */
    bool ints = a && a->dtype == GB_DTYPE_I64 && op != GB_OP_MEAN && op != GB_OP_VAR;
    if (a && a->dtype == GB_DTYPE_I64 && op == GB_OP_MEAN)
        return gb__fail_null(GB_ERR_DTYPE, "mean(): could not infer output dtype. Input dtype must be either a floating "
                             "point or complex dtype. Got: Long (input %s); convert it first with .float()",
                             GB__SHAPE_STR(a));
    if (a && a->dtype == GB_DTYPE_I64 && op == GB_OP_VAR)
        return gb__fail_null(GB_ERR_DTYPE, "var: std and var only support floating point and complex dtypes, got Long "
                             "(input %s)", GB__SHAPE_STR(a));
    if (arg || ints ? gb__ts_check_input(what, "a", a) : gb__ts_check_f32(what, "a", a)) return NULL;
    uint32_t mask;
    if (gb__ts_dims_mask(what, a, ndims, dims, &mask)) return NULL;
    bool one_dim_extreme = arg || op == GB_OP_MAX || op == GB_OP_MIN;
    int dim = mask ? __builtin_ctz(mask) : 0; /* their one dim */
    if (one_dim_extreme && a->ndim > 0 && a->shape[dim] == 0)
        return gb__fail_null(GB_ERR_SHAPE, "%s: expected reduction dim %d to have non-zero size (input shape %s)", what,
                             dim, GB__SHAPE_STR(a));
    if (op == GB_OP_MAX_ALL && gb_tensor_numel(a) == 0)
        return gb__fail_null(GB_ERR_SHAPE, "max_all: the input %s is empty and has no max; reduce over a dim of "
                             "non-zero size with gb_max instead", GB__SHAPE_STR(a));
    int nd = 0;
    int64_t shape[GB_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) {
        if (!(mask >> d & 1u)) shape[nd++] = a->shape[d];
        else if (keepdim) shape[nd++] = 1;
    }
    gb_tensor *out = gb__ts_op_new(op, what, arg || ints ? GB_DTYPE_I64 : GB_DTYPE_F32, nd, shape, 1, &a);
    if (!out) return NULL;
    out->iparam[GB__RED_MASK] = mask;
    out->iparam[GB__RED_KEEPDIM] = keepdim;
    out->iparam[GB__RED_CORRECTION] = correction;
    out->fparam[0] = fp;
    if (arg) out->requires_grad = false;
    return gb__ts_op_run(out);
}

gb_tensor *gb_sum(gb_tensor *a, int dim, bool keepdim) { return gb__ts_reduce(GB_OP_SUM, a, 1, &dim, keepdim, 0, 0); }
gb_tensor *gb_mean(gb_tensor *a, int dim, bool keepdim) { return gb__ts_reduce(GB_OP_MEAN, a, 1, &dim, keepdim, 0, 0); }
gb_tensor *gb_max(gb_tensor *a, int dim, bool keepdim) { return gb__ts_reduce(GB_OP_MAX, a, 1, &dim, keepdim, 0, 0); }
gb_tensor *gb_min(gb_tensor *a, int dim, bool keepdim) { return gb__ts_reduce(GB_OP_MIN, a, 1, &dim, keepdim, 0, 0); }
gb_tensor *gb_argmax(gb_tensor *a, int dim, bool keepdim) { return gb__ts_reduce(GB_OP_ARGMAX, a, 1, &dim, keepdim, 0, 0); }
gb_tensor *gb_argmin(gb_tensor *a, int dim, bool keepdim) { return gb__ts_reduce(GB_OP_ARGMIN, a, 1, &dim, keepdim, 0, 0); }
gb_tensor *gb_var(gb_tensor *a, int dim, int correction, bool keepdim) {
    return gb__ts_reduce(GB_OP_VAR, a, 1, &dim, keepdim, correction, 0);
}
gb_tensor *gb_sum_dims(gb_tensor *a, int ndims, const int *dims, bool keepdim) {
    return gb__ts_reduce(GB_OP_SUM, a, ndims, dims, keepdim, 0, 0);
}
gb_tensor *gb_mean_dims(gb_tensor *a, int ndims, const int *dims, bool keepdim) {
    return gb__ts_reduce(GB_OP_MEAN, a, ndims, dims, keepdim, 0, 0);
}
gb_tensor *gb_sum_all(gb_tensor *a) { return gb__ts_reduce(GB_OP_SUM, a, 0, NULL, false, 0, 0); }
gb_tensor *gb_mean_all(gb_tensor *a) { return gb__ts_reduce(GB_OP_MEAN, a, 0, NULL, false, 0, 0); }
gb_tensor *gb_max_all(gb_tensor *a) { return gb__ts_reduce(GB_OP_MAX_ALL, a, 0, NULL, false, 0, 0); }

gb_tensor *gb_norm(gb_tensor *a, double p, int ndims, const int *dims, bool keepdim) {
    if (a && a->dtype == GB_DTYPE_I64)
        return gb__fail_null(GB_ERR_DTYPE, "norm: Expected a floating point or complex tensor as input. Got Long "
                             "(input %s); convert it first with .float()", GB__SHAPE_STR(a));
    if (isnan(p)) return gb__fail_null(GB_ERR_ARG, "norm: the order p is NaN");
    return gb__ts_reduce(GB_OP_NORM, a, ndims, dims, keepdim, 0, (float)p);
}

/* ---- finiteness ------------------------------------------------------------ */

int64_t gb_count_nonfinite(const gb_tensor *t, int64_t *first) {
    if (first) *first = -1;
    gb_dtype dt = t->dtype;
    if ((dt != GB_DTYPE_F32 && dt != GB_DTYPE_F16 && dt != GB_DTYPE_BF16) || gb__is_meta(t)) return 0;
    const void *base = t->storage->data;
    int64_t bad = 0;
    gb__ts_iter it;
    gb__ts_iter_init(&it, t->ndim, t->shape, 1, (const int64_t *[]){t->stride});
    for (int64_t i = 0; i < it.n; i++, gb__ts_iter_next(&it))
        if (!isfinite(gb__ts_load_f32(base, dt, t->offset + it.off[0])) && bad++ == 0 && first) *first = i;
    return bad;
}
