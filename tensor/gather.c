/* topk and gather. topk's indices are an integer result (like argmax's)
 * and its values are read through gather, so the values' gradient is
 * gather's: a scatter-add of dout into the source at the indices, which is
 * torch's topk backward. */
#include "blas.h"
#include "elementwise_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Views of t, src and dout as [outer, n, inner] around dim (iparam[0]). */
static void gb__ts_around(const gb_tensor *t, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = gb__ts_numel(dim, t->shape);
    *n = t->ndim ? t->shape[dim] : 1;
    *inner = t->ndim ? gb__ts_numel(t->ndim - dim - 1, t->shape + dim + 1) : 1;
}

/* ---- topk: indices ------------------------------------------------------- */

typedef struct {
    float v;
    int64_t iv; /* the value, for int64 sources */
    int64_t i;
} gb__ts_ranked;

/* torch's order: larger first, NaN larger than everything; equal values by
 * index, so the result does not depend on the sort. */
static int gb__ts_rank_desc(const void *pa, const void *pb) {
    const gb__ts_ranked *a = pa, *b = pb;
    bool na = isnan(a->v), nb = isnan(b->v);
    if (na != nb) return na ? -1 : 1;
    if (!na && a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int gb__ts_rank_desc_i64(const void *pa, const void *pb) {
    const gb__ts_ranked *a = pa, *b = pb;
    if (a->iv != b->iv) return a->iv > b->iv ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

gb_status gb__ts_op_TOPK_forward(gb_tensor *out) {
    const gb_tensor *src = out->src[0];
    int dim = (int)out->iparam[0];
    int64_t k = out->iparam[1], outer, n, inner;
    gb__ts_around(src, dim, &outer, &n, &inner);
    gb_tensor *xd = gb__ts_dense(src);
    if (!xd) return gb_last_status();
    const float *x = gb_tensor_data(xd);    /* [outer, n, inner], f32 */
    const int64_t *xi = gb_tensor_data(xd); /* [outer, n, inner], int64 */
    bool ints = xd->dtype == GB_DTYPE_I64;
    int64_t *y = gb_tensor_data(out);       /* [outer, k, inner] */
    gb_status st = GB_OK;
#pragma omp parallel num_threads(gb__threads()) if (outer * inner * n > GB__PAR_MIN_WORK)
    {
        gb__ts_ranked *row = malloc(sizeof *row * (size_t)(n ? n : 1));
        if (!row) {
#pragma omp atomic write
            st = GB_ERR_ALLOC;
        }
#pragma omp for
        for (int64_t r = 0; r < outer * inner; r++) {
            if (!row) continue;
            int64_t o = r / inner, j = r % inner;
            for (int64_t i = 0; i < n; i++)
                row[i] = ints ? (gb__ts_ranked){0, xi[(o * n + i) * inner + j], i} : (gb__ts_ranked){x[(o * n + i) * inner + j], 0, i};
            qsort(row, (size_t)n, sizeof *row, ints ? gb__ts_rank_desc_i64 : gb__ts_rank_desc);
            for (int64_t i = 0; i < k; i++) y[(o * k + i) * inner + j] = row[i].i;
        }
        free(row);
    }
    gb_tensor_free(xd);
    if (st != GB_OK) return gb__fail(st, "topk: out of memory sorting rows of %lld", (long long)n);
    return GB_OK;
}

/* The indices never record (integer results have no gradient). */
gb_status gb__ts_op_TOPK_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    (void)dout, (void)dsrc;
    return gb__fail(GB_ERR_AUTOGRAD, "topk: the indices %s are not differentiable", GB__SHAPE_STR(out));
}

/* ---- gather ------------------------------------------------------------- */

/* out[o, i, j] = src[o, index[o, i, j], j] around dim; index has out's
 * shape and src's sizes elsewhere (torch allows smaller, not needed here).
 * Indices are in [0, n): torch refuses negative ones. src is f32 or int64
 * (topk's values of int64 values). */
gb_status gb__ts_op_GATHER_forward(gb_tensor *out) {
    const gb_tensor *src = out->src[0], *index = out->src[1];
    int dim = (int)out->iparam[0];
    int64_t outer, n, inner, k, dummy;
    gb__ts_around(src, dim, &outer, &n, &inner);
    gb__ts_around(out, dim, &dummy, &k, &dummy);
    gb_tensor *xd = gb__ts_dense(src), *id = gb__ts_dense(index);
    gb_status st = xd && id ? GB_OK : gb_last_status();
    const float *x = xd ? gb_tensor_data(xd) : NULL;     /* [outer, n, inner], f32 */
    const int64_t *xi = xd ? gb_tensor_data(xd) : NULL;  /* [outer, n, inner], int64 */
    const int64_t *ix = id ? gb_tensor_data(id) : NULL;  /* [outer, k, inner] */
    float *y = gb_tensor_data(out);                      /* [outer, k, inner], f32 */
    int64_t *yi = gb_tensor_data(out);                   /* [outer, k, inner], int64 */
    for (int64_t o = 0; st == GB_OK && o < outer; o++)
        for (int64_t i = 0; st == GB_OK && i < k; i++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t at = ix[(o * k + i) * inner + j];
                if (at < 0 || at >= n) {
                    st = gb__fail(GB_ERR_INDEX, "gather: index %lld is out of bounds for dimension %d with size %lld "
                                  "(input %s, index %s)", (long long)at, dim, (long long)n, GB__SHAPE_STR(src),
                                  GB__SHAPE_STR(index));
                    break;
                }
                if (out->dtype == GB_DTYPE_I64) yi[(o * k + i) * inner + j] = xi[(o * n + at) * inner + j];
                else y[(o * k + i) * inner + j] = x[(o * n + at) * inner + j];
            }
    gb_tensor_free(xd);
    gb_tensor_free(id);
    return st;
}

gb_status gb__ts_op_GATHER_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    const gb_tensor *src = out->src[0];
    int dim = (int)out->iparam[0];
    int64_t outer, n, inner, k, dummy;
    gb__ts_around(src, dim, &outer, &n, &inner);
    gb__ts_around(out, dim, &dummy, &k, &dummy);
    gb_tensor *id = gb__ts_dense(out->src[1]);
    if (!id) return gb_last_status();
    const int64_t *ix = gb_tensor_data(id); /* [outer, k, inner] */
    const float *dy = gb_tensor_data(dout); /* [outer, k, inner] */
    float *dx = gb_tensor_data(dsrc[0]);    /* [outer, n, inner] */
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t at = ix[(o * k + i) * inner + j];
                dx[(o * n + at) * inner + j] += dy[(o * k + i) * inner + j];
            }
    gb_tensor_free(id);
    return GB_OK;
}

/* a of int64: its values, exactly (no gradient). */
static gb_status gb__ts_check_f32_or_i64(const char *op, const gb_tensor *a) {
    return a && a->dtype == GB_DTYPE_I64 ? GB_OK : gb__ts_check_f32(op, "a", a);
}

gb_tensor *gb_gather(gb_tensor *a, int dim, gb_tensor *index) {
    if (gb__ts_check_f32_or_i64("gather", a) || gb__ts_check_input("gather", "index", index)) return NULL;
    if (index->dtype != GB_DTYPE_I64)
        return gb__fail_null(GB_ERR_DTYPE, "gather: Expected dtype int64 for index, got %s", gb_dtype_name(index->dtype));
    if (gb__ts_norm_dim("gather", &dim, a->ndim)) return NULL;
    bool fits = index->ndim == a->ndim;
    for (int d = 0; fits && d < a->ndim; d++) fits = d == dim || index->shape[d] == a->shape[d];
    if (!fits)
        return gb__fail_null(GB_ERR_SHAPE, "gather: index %s must have the shape of the input %s except in dim %d",
                             GB__SHAPE_STR(index), GB__SHAPE_STR(a), dim);
    gb_tensor *out = gb__ts_op_new(GB_OP_GATHER, "gather", a->dtype, index->ndim, index->shape, 2,
                                (gb_tensor *[]){a, index});
    if (!out) return NULL;
    out->iparam[0] = dim;
    return gb__ts_op_run(out);
}

gb_status gb_topk(gb_tensor *a, int64_t k, int dim, gb_tensor **values, gb_tensor **indices) {
    *values = *indices = NULL;
    if (gb__ts_check_f32_or_i64("topk", a)) return gb_last_status();
    if (gb__ts_norm_dim("topk", &dim, a->ndim)) return gb_last_status();
    int64_t n = a->ndim ? a->shape[dim] : 1;
    if (k < 0 || k > n) return gb__fail(GB_ERR_INDEX, "topk: selected index k out of range (k = %lld, input %s, dim %d)",
                                        (long long)k, GB__SHAPE_STR(a), dim);
    int64_t shape[GB_MAX_DIMS];
    memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    if (a->ndim) shape[dim] = k;
    gb_tensor *ix = gb__ts_op_new(GB_OP_TOPK, "topk", GB_DTYPE_I64, a->ndim, shape, 1, &a);
    if (!ix) return gb_last_status();
    ix->iparam[0] = dim;
    ix->iparam[1] = k;
    ix->requires_grad = false;
    if (!(ix = gb__ts_op_run(ix))) return gb_last_status();
    gb_tensor *v = gb_gather(a, dim, ix);
    if (!v) {
        gb_tensor_free(ix);
        return gb_last_status();
    }
    *values = v;
    *indices = ix;
    return GB_OK;
}
