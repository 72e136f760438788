/* cat, stack, tril, triu: ops that move elements without arithmetic, so their
 * forwards work on any dtype (bytes); backwards route slices of dout. */
#include "blas.h"

#include <string.h>

/* ---- cat and stack ------------------------------------------------------ */

/* Both write each source into its slab of out viewed as [outer, total, inner]
 * around dim (iparam[0], a dim of out). A cat source fills shape[dim] entries
 * of the slab, a stack source one. torch's legacy rule: a 1-D empty tensor
 * in a cat of other ranks is skipped (contributes 0 entries). */
static int64_t gb__ts_cat_len(const gb_tensor *out, const gb_tensor *s, bool stack) {
    if (stack) return 1;
    return s->ndim == out->ndim ? s->shape[out->iparam[0]] : 0;
}

static void gb__ts_cat_geom(const gb_tensor *out, int64_t *outer, int64_t *total, int64_t *inner) {
    int dim = (int)out->iparam[0];
    *outer = gb__ts_numel(dim, out->shape);
    *total = out->shape[dim];
    *inner = gb__ts_numel(out->ndim - dim - 1, out->shape + dim + 1);
}

static gb_status gb__ts_cat_forward(gb_tensor *out, bool stack) {
    int64_t outer, total, inner, off = 0;
    gb__ts_cat_geom(out, &outer, &total, &inner);
    size_t es = gb_dtype_size(out->dtype);
    char *y = gb_tensor_data(out); /* [outer, total, inner] */
    for (int i = 0; i < out->nsrc; i++) {
        int64_t len = gb__ts_cat_len(out, out->src[i], stack);
        if (len == 0) continue;
        gb_tensor *sd = gb__ts_dense(out->src[i]);
        if (!sd) return gb_last_status();
        const char *x = gb_tensor_data(sd); /* [outer, len, inner] */
        size_t chunk = (size_t)(len * inner) * es;
        for (int64_t o = 0; o < outer; o++) memcpy(y + (size_t)((o * total + off) * inner) * es, x + o * chunk, chunk);
        off += len;
        gb_tensor_free(sd);
    }
    return GB_OK;
}

static gb_status gb__ts_cat_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc, bool stack) {
    int64_t outer, total, inner, off = 0;
    gb__ts_cat_geom(out, &outer, &total, &inner);
    const float *dy = gb_tensor_data(dout); /* [outer, total, inner] */
    for (int i = 0; i < out->nsrc; i++) {
        int64_t len = gb__ts_cat_len(out, out->src[i], stack), chunk = len * inner;
        if (dsrc[i]) {
            float *dx = gb_tensor_data(dsrc[i]); /* [outer, len, inner] */
            for (int64_t o = 0; o < outer; o++)
                for (int64_t j = 0; j < chunk; j++) dx[o * chunk + j] += dy[(o * total + off) * inner + j];
        }
        off += len;
    }
    return GB_OK;
}

gb_status gb__ts_op_CAT_forward(gb_tensor *out) { return gb__ts_cat_forward(out, false); }
gb_status gb__ts_op_CAT_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_cat_backward(out, dout, dsrc, false);
}
gb_status gb__ts_op_STACK_forward(gb_tensor *out) { return gb__ts_cat_forward(out, true); }
gb_status gb__ts_op_STACK_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_cat_backward(out, dout, dsrc, true);
}

static gb_status gb__ts_check_list(const char *op, int n, gb_tensor *const *ts, const char *empty_msg) {
    if (n <= 0 || !ts) return gb__fail(GB_ERR_ARG, "%s: %s", op, empty_msg);
    for (int i = 0; i < n; i++)
        if (!ts[i]) return gb__fail(GB_ERR_ARG, "%s: tensor number %d in the list is NULL", op, i);
    for (int i = 1; i < n; i++)
        if (ts[i]->dtype != ts[0]->dtype)
            return gb__fail(GB_ERR_DTYPE, "%s: expected all tensors to have dtype %s, but tensor number %d is %s %s", op,
                            gb_dtype_name(ts[0]->dtype), i, gb_dtype_name(ts[i]->dtype), GB__SHAPE_STR(ts[i]));
    return GB_OK;
}

static gb_tensor *gb__ts_cat_new(gb_op op, const char *what, int n, gb_tensor *const *ts, int nd, const int64_t *shape,
                              int dim) {
    gb_tensor *out = gb__ts_op_new(op, what, ts[0]->dtype, nd, shape, n, ts);
    if (!out) return NULL;
    out->iparam[0] = dim;
    return gb__ts_op_run(out);
}

gb_tensor *gb_cat(int n, gb_tensor *const *ts, int dim) {
    if (gb__ts_check_list("cat", n, ts, "torch.cat(): expected a non-empty list of Tensors")) return NULL;
    int ref = 0; /* the first tensor that is not a legacy 1-D empty one */
    while (ref < n && ts[ref]->ndim == 1 && ts[ref]->shape[0] == 0) ref++;
    if (ref == n) ref = 0;
    for (int i = 0; i < n; i++)
        if (ts[i]->ndim == 0)
            return gb__fail_null(GB_ERR_SHAPE, "cat: zero-dimensional tensor (at position %d) cannot be concatenated", i);
    int nd = ts[ref]->ndim;
    if (gb__ts_norm_dim("cat", &dim, nd)) return NULL;
    int64_t shape[GB_MAX_DIMS];
    memcpy(shape, ts[ref]->shape, sizeof shape);
    shape[dim] = 0;
    for (int i = 0; i < n; i++) {
        const gb_tensor *t = ts[i];
        if (i != ref && t->ndim == 1 && t->shape[0] == 0 && nd != 1) continue;
        if (t->ndim != nd)
            return gb__fail_null(GB_ERR_SHAPE, "cat: Tensors must have same number of dimensions: got %d and %d", nd,
                                 t->ndim);
        for (int d = 0; d < nd; d++)
            if (d != dim && t->shape[d] != ts[ref]->shape[d])
                return gb__fail_null(GB_ERR_SHAPE,
                                     "cat: Sizes of tensors must match except in dimension %d. Expected size %lld but "
                                     "got size %lld for tensor number %d in the list.",
                                     dim, (long long)ts[ref]->shape[d], (long long)t->shape[d], i);
        shape[dim] += t->shape[dim];
    }
    return gb__ts_cat_new(GB_OP_CAT, "cat", n, ts, nd, shape, dim);
}

gb_tensor *gb_stack(int n, gb_tensor *const *ts, int dim) {
    if (gb__ts_check_list("stack", n, ts, "stack expects a non-empty TensorList")) return NULL;
    int nd = ts[0]->ndim;
    for (int i = 1; i < n; i++) {
        bool same = ts[i]->ndim == nd;
        for (int d = 0; same && d < nd; d++) same = ts[i]->shape[d] == ts[0]->shape[d];
        if (!same)
            return gb__fail_null(GB_ERR_SHAPE, "stack: stack expects each tensor to be equal size, but got %s at entry 0 and %s at entry %d",
                                 GB__SHAPE_STR(ts[0]), GB__SHAPE_STR(ts[i]), i);
    }
    if (nd + 1 > GB_MAX_DIMS)
        return gb__fail_null(GB_ERR_SHAPE, "stack: tensors of shape %s would give more than %d dimensions",
                             GB__SHAPE_STR(ts[0]), GB_MAX_DIMS);
    if (gb__ts_norm_dim("stack", &dim, nd + 1)) return NULL;
    int64_t shape[GB_MAX_DIMS];
    for (int d = 0, k = 0; d <= nd; d++) shape[d] = d == dim ? n : ts[0]->shape[k++];
    return gb__ts_cat_new(GB_OP_STACK, "stack", n, ts, nd + 1, shape, dim);
}

/* ---- tril and triu ------------------------------------------------------ */

/* Row i of a [rows, cols] matrix keeps columns [lo, hi): tril keeps j <= i + k,
 * triu keeps j >= i + k. k is clamped first so i + k cannot overflow. */
static void gb__ts_tri_range(bool upper, int64_t i, int64_t k, int64_t rows, int64_t cols, int64_t *lo, int64_t *hi) {
    if (k > cols) k = cols;
    if (k < -rows) k = -rows;
    int64_t edge = i + k; /* first kept column of triu; last kept column of tril */
    if (upper) {
        *lo = edge < 0 ? 0 : edge > cols ? cols : edge;
        *hi = cols;
    } else {
        *lo = 0;
        *hi = edge + 1 < 0 ? 0 : edge + 1 > cols ? cols : edge + 1;
    }
}

static gb_status gb__ts_tri_forward(gb_tensor *out, bool upper) {
    gb_tensor *xd = gb__ts_dense(out->src[0]);
    if (!xd) return gb_last_status();
    int64_t rows = out->shape[out->ndim - 2], cols = out->shape[out->ndim - 1], k = out->iparam[0];
    int64_t nmat = rows * cols != 0 ? gb_tensor_numel(out) / (rows * cols) : 0;
    size_t es = gb_dtype_size(out->dtype);
    const char *x = gb_tensor_data(xd); /* [nmat, rows, cols] */
    char *y = gb_tensor_data(out);      /* [nmat, rows, cols] */
    for (int64_t m = 0; m < nmat * rows; m++) {
        int64_t lo, hi, base = m * cols;
        gb__ts_tri_range(upper, m % rows, k, rows, cols, &lo, &hi);
        memset(y + (size_t)base * es, 0, (size_t)cols * es); /* zero bytes are 0 in every dtype */
        if (hi > lo) memcpy(y + (size_t)(base + lo) * es, x + (size_t)(base + lo) * es, (size_t)(hi - lo) * es);
    }
    gb_tensor_free(xd);
    return GB_OK;
}

static gb_status gb__ts_tri_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc, bool upper) {
    if (!dsrc[0]) return GB_OK;
    int64_t rows = out->shape[out->ndim - 2], cols = out->shape[out->ndim - 1], k = out->iparam[0];
    int64_t nmat = rows * cols != 0 ? gb_tensor_numel(out) / (rows * cols) : 0;
    const float *dy = gb_tensor_data(dout); /* [nmat, rows, cols] */
    float *dx = gb_tensor_data(dsrc[0]);    /* [nmat, rows, cols] */
    for (int64_t m = 0; m < nmat * rows; m++) {
        int64_t lo, hi, base = m * cols;
        gb__ts_tri_range(upper, m % rows, k, rows, cols, &lo, &hi);
        for (int64_t j = lo; j < hi; j++) dx[base + j] += dy[base + j];
    }
    return GB_OK;
}

gb_status gb__ts_op_TRIL_forward(gb_tensor *out) { return gb__ts_tri_forward(out, false); }
gb_status gb__ts_op_TRIL_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_tri_backward(out, dout, dsrc, false);
}
gb_status gb__ts_op_TRIU_forward(gb_tensor *out) { return gb__ts_tri_forward(out, true); }
gb_status gb__ts_op_TRIU_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_tri_backward(out, dout, dsrc, true);
}

static gb_tensor *gb__ts_tri_new(gb_op op, const char *what, gb_tensor *a, int64_t k) {
    if (a->ndim < 2)
        return gb__fail_null(GB_ERR_SHAPE, "%s: input tensor must have at least 2 dimensions, got shape %s", what,
                             GB__SHAPE_STR(a));
    gb_tensor *out = gb__ts_op_new(op, what, a->dtype, a->ndim, a->shape, 1, &a);
    if (!out) return NULL;
    out->iparam[0] = k;
    return gb__ts_op_run(out);
}

gb_tensor *gb_tril(gb_tensor *a, int64_t k) { return gb__ts_tri_new(GB_OP_TRIL, "tril", a, k); }
gb_tensor *gb_triu(gb_tensor *a, int64_t k) { return gb__ts_tri_new(GB_OP_TRIU, "triu", a, k); }
