/* Views: tensors that share their source's storage with a new geometry.
 *
 * Every view is one op, GB_OP_VIEW. Besides its real geometry (strides and
 * offset into the shared storage) a view records its "logical" geometry: the
 * same view taken of a contiguous copy of its source. Backward scatters the
 * output gradient through the logical geometry into a zero gradient of the
 * source's shape, so one backward serves reshape, permute, slice, select,
 * expand (stride 0 makes the scatter accumulate) and any composition. */
#include "tensor_impl.h"

#include <string.h>

typedef struct gb__ts_geom {
    int ndim;
    int64_t shape[GB_MAX_DIMS];
    int64_t stride[GB_MAX_DIMS];
    int64_t offset;
} gb__ts_geom;

/* iparam layout of a view: logical strides, then the logical offset. */
#define GB__VIEW_LOFF GB_MAX_DIMS

static gb__ts_geom gb__ts_geom_real(const gb_tensor *t) {
    gb__ts_geom g = {.ndim = t->ndim, .offset = t->offset};
    memcpy(g.shape, t->shape, sizeof g.shape);
    memcpy(g.stride, t->stride, sizeof g.stride);
    return g;
}

static gb__ts_geom gb__ts_geom_logical(const gb_tensor *t) {
    gb__ts_geom g = {.ndim = t->ndim, .offset = 0};
    memcpy(g.shape, t->shape, sizeof g.shape);
    gb__ts_contiguous_strides(t->ndim, t->shape, g.stride);
    return g;
}

/* Make the view whose real geometry is `real` and logical geometry `logical`. */
static gb_tensor *gb__ts_make_view(gb_tensor *t, const char *what, const gb__ts_geom *real, const gb__ts_geom *logical) {
    gb_tensor *out = gb__ts_op_new_view(GB_OP_VIEW, what, t, real->ndim, real->shape, real->stride, real->offset);
    if (!out) return NULL;
    for (int i = 0; i < logical->ndim; i++) out->iparam[i] = logical->stride[i];
    out->iparam[GB__VIEW_LOFF] = logical->offset;
    return gb__ts_op_run(out);
}

gb_status gb__ts_op_VIEW_forward(gb_tensor *out) {
    (void)out; /* the data is already there */
    return GB_OK;
}

/* A view whose last dim is not the source's contiguous one (a transposed
 * matrix) scatters element by element, each write a cache line apart: 30%
 * of GPT-2 124M's training step went there while linear recorded Conv1D's
 * transposed weight through its view (gb_linear now skips that view). When another dim p has source stride 1 and no dim is
 * expanded (so each source element receives one addition, in any order),
 * add 32 x 32 tiles of the (p, last) plane instead: the tile's rows of dy
 * stay in cache while the source is written along its rows. */
static bool gb__ts_view_backward_transposed(float *ds, const float *dy, int nd, const int64_t *shape,
                                         const int64_t *lstride) {
    enum { TILE = 32 };
    int p = -1;
    int64_t dstride[GB_MAX_DIMS], n = 1; /* dy's strides: contiguous in the view's shape */
    for (int d = nd - 1; d >= 0; d--) {
        if (lstride[d] == 0) return false;
        if (lstride[d] == 1 && shape[d] > 1) p = d;
        dstride[d] = n;
        n *= shape[d];
    }
    if (p < 0 || p == nd - 1 || n == 0) return false;
    int64_t oshape[GB_MAX_DIMS], os[GB_MAX_DIMS], od[GB_MAX_DIMS];
    int no = 0;
    for (int d = 0; d < nd - 1; d++)
        if (d != p) oshape[no] = shape[d], os[no] = lstride[d], od[no] = dstride[d], no++;
    int64_t rows = shape[p], cols = shape[nd - 1], dp = dstride[p], sl = lstride[nd - 1];
    gb__ts_iter it;
    gb__ts_iter_init(&it, no, oshape, 2, (const int64_t *[]){os, od});
    for (int64_t o = 0; o < it.n; o++, gb__ts_iter_next(&it)) {
        float *d0 = ds + it.off[0];       /* [cols (stride sl), rows (stride 1)] */
        const float *g0 = dy + it.off[1]; /* [rows (stride dp), cols (stride 1)] */
        for (int64_t i0 = 0; i0 < rows; i0 += TILE)
            for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
                int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows, j1 = j0 + TILE < cols ? j0 + TILE : cols;
                for (int64_t j = j0; j < j1; j++)
                    for (int64_t i = i0; i < i1; i++) d0[j * sl + i] += g0[i * dp + j];
            }
    }
    return true;
}

gb_status gb__ts_op_VIEW_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    float *ds = gb_tensor_data(dsrc[0]);                 /* [src numel] */
    const float *dy = gb_tensor_data(dout);              /* [out numel] */
    const int64_t *lstride = out->iparam;
    int nd = out->ndim;
    int64_t inner = nd > 0 && lstride[nd - 1] == 1 ? out->shape[nd - 1] : 1;
    gb__ts_iter it;
    ds += out->iparam[GB__VIEW_LOFF];
    if (inner == 1 && gb__ts_view_backward_transposed(ds, dy, nd, out->shape, lstride)) return GB_OK;
    /* Rows of the last dim are contiguous in the source too (head splits,
     * transposes of them, narrow): walk the outer dims only and add whole
     * rows, the same additions in the same order as element by element. */
    gb__ts_iter_init(&it, inner > 1 ? nd - 1 : nd, out->shape, 1, (const int64_t *[]){lstride});
    for (int64_t r = 0; r < it.n; r++, gb__ts_iter_next(&it)) {
        float *d = ds + it.off[0];          /* [inner] */
        const float *g = dy + r * inner;    /* [inner] */
        for (int64_t j = 0; j < inner; j++) d[j] += g[j];
    }
    return GB_OK;
}

/* ---- the view functions ------------------------------------------------- */

typedef gb_status (*gb__ts_geom_fn)(gb__ts_geom *g, const void *arg);

/* Apply one geometric transform to both the real and the logical geometry. */
static gb_tensor *gb__ts_view_by(gb_tensor *t, const char *what, gb__ts_geom_fn fn, const void *arg) {
    gb__ts_geom real = gb__ts_geom_real(t), logical = gb__ts_geom_logical(t);
    if (fn(&real, arg) != GB_OK) return NULL;
    fn(&logical, arg);
    return gb__ts_make_view(t, what, &real, &logical);
}

/* permute */
static gb_status gb__ts_geom_permute(gb__ts_geom *g, const void *arg) {
    const int *dims = arg;
    gb__ts_geom old = *g;
    bool seen[GB_MAX_DIMS] = {0};
    for (int i = 0; i < g->ndim; i++) {
        int d = dims[i];
        if (gb__ts_norm_dim("permute", &d, old.ndim) != GB_OK) return GB_ERR_INDEX;
        if (seen[d]) return gb__fail(GB_ERR_ARG, "permute: repeated dim %d in permutation", dims[i]);
        seen[d] = true;
        g->shape[i] = old.shape[d];
        g->stride[i] = old.stride[d];
    }
    return GB_OK;
}

gb_tensor *gb_permute(gb_tensor *t, const int *dims) { return gb__ts_view_by(t, "permute", gb__ts_geom_permute, dims); }

gb_tensor *gb_transpose(gb_tensor *t, int d0, int d1) {
    if (gb__ts_norm_dim("transpose", &d0, t->ndim) || gb__ts_norm_dim("transpose", &d1, t->ndim)) return NULL;
    int dims[GB_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = i;
    dims[d0] = d1;
    dims[d1] = d0;
    return gb_permute(t, dims);
}

/* slice: dim, start, stop, step (already clamped) */
typedef struct {
    int dim;
    int64_t start, len, step;
} gb__ts_slice_arg;

static gb_status gb__ts_geom_slice(gb__ts_geom *g, const void *arg) {
    const gb__ts_slice_arg *a = arg;
    g->offset += a->start * g->stride[a->dim];
    g->stride[a->dim] *= a->step;
    g->shape[a->dim] = a->len;
    return GB_OK;
}

gb_tensor *gb_slice(gb_tensor *t, int dim, int64_t start, int64_t stop, int64_t step) {
    if (gb__ts_norm_dim("slice", &dim, t->ndim)) return NULL;
    if (t->ndim == 0) return gb__fail_null(GB_ERR_INDEX, "slice: cannot slice a 0-dim tensor");
    if (step <= 0) return gb__fail_null(GB_ERR_ARG, "slice: step must be greater than zero, got %lld", (long long)step);
    int64_t n = t->shape[dim];
    /* Python's slice clamping. */
    if (start < 0) start += n;
    if (start < 0) start = 0;
    if (start > n) start = n;
    if (stop != GB_END && stop < 0) stop += n;
    if (stop < 0) stop = 0;
    if (stop == GB_END || stop > n) stop = n;
    int64_t len = stop > start ? (stop - start + step - 1) / step : 0;
    gb__ts_slice_arg a = {dim, start, len, step};
    return gb__ts_view_by(t, "slice", gb__ts_geom_slice, &a);
}

gb_tensor *gb_narrow(gb_tensor *t, int dim, int64_t start, int64_t length) {
    if (gb__ts_norm_dim("narrow", &dim, t->ndim)) return NULL;
    if (t->ndim == 0) return gb__fail_null(GB_ERR_INDEX, "narrow: cannot narrow a 0-dim tensor");
    int64_t n = t->shape[dim];
    if (start < -n || start > n)
        return gb__fail_null(GB_ERR_INDEX, "narrow: start %lld out of range for dimension %d with size %lld",
                             (long long)start, dim, (long long)n);
    if (start < 0) start += n;
    if (length < 0 || start + length > n)
        return gb__fail_null(GB_ERR_INDEX, "narrow: start (%lld) + length (%lld) exceeds dimension %d with size %lld",
                             (long long)start, (long long)length, dim, (long long)n);
    gb__ts_slice_arg a = {dim, start, length, 1};
    return gb__ts_view_by(t, "narrow", gb__ts_geom_slice, &a);
}

/* select: removes dim */
static gb_status gb__ts_geom_select(gb__ts_geom *g, const void *arg) {
    const gb__ts_slice_arg *a = arg;
    g->offset += a->start * g->stride[a->dim];
    for (int i = a->dim; i < g->ndim - 1; i++) {
        g->shape[i] = g->shape[i + 1];
        g->stride[i] = g->stride[i + 1];
    }
    g->ndim--;
    return GB_OK;
}

gb_tensor *gb_select(gb_tensor *t, int dim, int64_t index) {
    if (t->ndim == 0) return gb__fail_null(GB_ERR_INDEX, "select: invalid index of a 0-dim tensor");
    if (gb__ts_norm_dim("select", &dim, t->ndim)) return NULL;
    int64_t n = t->shape[dim];
    if (index < -n || index >= n)
        return gb__fail_null(GB_ERR_INDEX, "index %lld is out of bounds for dimension %d with size %lld",
                             (long long)index, dim, (long long)n);
    gb__ts_slice_arg a = {dim, index < 0 ? index + n : index, 1, 1};
    return gb__ts_view_by(t, "select", gb__ts_geom_select, &a);
}

/* unsqueeze / squeeze */
static gb_status gb__ts_geom_unsqueeze(gb__ts_geom *g, const void *arg) {
    int dim = *(const int *)arg;
    for (int i = g->ndim; i > dim; i--) {
        g->shape[i] = g->shape[i - 1];
        g->stride[i] = g->stride[i - 1];
    }
    g->shape[dim] = 1;
    g->stride[dim] = dim < g->ndim ? g->stride[dim + 1] * g->shape[dim + 1] : 1; /* any value works for size 1 */
    g->ndim++;
    return GB_OK;
}

gb_tensor *gb_unsqueeze(gb_tensor *t, int dim) {
    if (t->ndim >= GB_MAX_DIMS)
        return gb__fail_null(GB_ERR_SHAPE, "unsqueeze: tensor already has %d dimensions", GB_MAX_DIMS);
    if (gb__ts_norm_dim("unsqueeze", &dim, t->ndim + 1)) return NULL;
    return gb__ts_view_by(t, "unsqueeze", gb__ts_geom_unsqueeze, &dim);
}

static gb_status gb__ts_geom_identity(gb__ts_geom *g, const void *arg) {
    (void)g, (void)arg;
    return GB_OK;
}

/* Like torch.squeeze(dim): a dim whose size is not 1 is left alone. */
gb_tensor *gb_squeeze(gb_tensor *t, int dim) {
    if (gb__ts_norm_dim("squeeze", &dim, t->ndim)) return NULL;
    if (t->ndim == 0 || t->shape[dim] != 1) return gb__ts_view_by(t, "squeeze", gb__ts_geom_identity, NULL);
    gb__ts_slice_arg a = {dim, 0, 1, 1};
    return gb__ts_view_by(t, "squeeze", gb__ts_geom_select, &a);
}

/* expand */
typedef struct {
    int ndim;
    const int64_t *shape;
} gb__ts_expand_arg;

static gb_status gb__ts_geom_expand(gb__ts_geom *g, const void *arg) {
    const gb__ts_expand_arg *a = arg;
    gb__ts_geom old = *g;
    if (a->ndim < old.ndim || a->ndim > GB_MAX_DIMS) {
        char b1[160], b2[160];
        return gb__fail(GB_ERR_SHAPE,
                        "expand: the number of sizes provided (%d) must be greater or equal to the number of "
                        "dimensions in the tensor (%d) (shape %s to %s)",
                        a->ndim, old.ndim, gb__shape_str(b1, 160, old.ndim, old.shape),
                        gb__shape_str(b2, 160, a->ndim, a->shape));
    }
    g->ndim = a->ndim;
    for (int i = 0; i < a->ndim; i++) {
        int io = old.ndim - a->ndim + i;
        int64_t want = a->shape[i];
        if (io < 0) {
            if (want < 0) return gb__fail(GB_ERR_SHAPE, "expand: -1 is not allowed in a new leading dimension");
            g->shape[i] = want;
            g->stride[i] = 0;
        } else if (want == -1 || want == old.shape[io]) {
            g->shape[i] = old.shape[io];
            g->stride[i] = old.stride[io];
        } else if (old.shape[io] == 1) {
            g->shape[i] = want;
            g->stride[i] = 0;
        } else {
            char b1[160], b2[160];
            return gb__fail(GB_ERR_SHAPE,
                            "expand: the expanded size of the tensor (%lld) must match the existing size (%lld) at "
                            "non-singleton dimension %d (shape %s to %s)",
                            (long long)want, (long long)old.shape[io], i, gb__shape_str(b1, 160, old.ndim, old.shape),
                            gb__shape_str(b2, 160, a->ndim, a->shape));
        }
    }
    return GB_OK;
}

gb_tensor *gb_expand(gb_tensor *t, int ndim, const int64_t *shape) {
    gb__ts_expand_arg a = {ndim, shape};
    return gb__ts_view_by(t, "expand", gb__ts_geom_expand, &a);
}

/* reshape / view */

/* Resolve one -1 in shape against numel; checks the element count. */
static gb_status gb__ts_infer_shape(const char *op, const gb_tensor *t, int ndim, const int64_t *shape, int64_t *out) {
    if (ndim < 0 || ndim > GB_MAX_DIMS)
        return gb__fail(GB_ERR_SHAPE, "%s: %d dimensions requested, at most %d are supported", op, ndim, GB_MAX_DIMS);
    int infer = -1;
    int64_t known = 1, numel = gb_tensor_numel(t);
    char b1[160], b2[160];
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) return gb__fail(GB_ERR_SHAPE, "%s: only one dimension can be inferred", op);
            infer = i;
        } else if (shape[i] < 0) {
            return gb__fail(GB_ERR_SHAPE, "%s: invalid shape dimension %lld", op, (long long)shape[i]);
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0 && known != 0 && numel % known == 0) out[infer] = numel / known;
    if (gb__ts_numel(ndim, out) != numel || (infer >= 0 && known == 0))
        return gb__fail(GB_ERR_SHAPE, "%s: shape '%s' is invalid for input of size %lld (input shape %s)", op,
                        gb__shape_str(b1, 160, ndim, shape), (long long)numel, gb__shape_str(b2, 160, t->ndim, t->shape));
    return GB_OK;
}

/* PyTorch's computeStride: strides viewing t's memory with a new shape, or
 * false when the existing strides cannot express it without a copy. */
static bool gb__ts_view_strides(const gb_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    int64_t numel = gb_tensor_numel(t);
    if (numel == 0 || t->ndim == 0) {
        gb__ts_contiguous_strides(ndim, shape, stride);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base_stride = t->stride[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
        tensor_numel *= t->shape[td];
        if (td == 0 || (t->shape[td - 1] != 1 && t->stride[td - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                stride[view_d] = view_numel * chunk_base_stride;
                view_numel *= shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (td > 0) {
                chunk_base_stride = t->stride[td - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

static gb_tensor *gb__ts_reshape_impl(gb_tensor *t, int ndim, const int64_t *shape, bool may_copy, const char *what) {
    gb__ts_geom real = {.ndim = ndim, .offset = t->offset}, logical = {.ndim = ndim, .offset = 0};
    if (gb__ts_infer_shape(what, t, ndim, shape, real.shape) != GB_OK) return NULL;
    memcpy(logical.shape, real.shape, sizeof real.shape);
    gb__ts_contiguous_strides(ndim, real.shape, logical.stride);
    if (gb__ts_view_strides(t, ndim, real.shape, real.stride)) return gb__ts_make_view(t, what, &real, &logical);
    if (!may_copy) {
        char b1[160], b2[160];
        return gb__fail_null(GB_ERR_SHAPE,
                             "view: view size %s is not compatible with input tensor's size %s and stride (at least "
                             "one dimension spans across two contiguous subspaces); use reshape instead",
                             gb__shape_str(b1, 160, ndim, real.shape), gb__shape_str(b2, 160, t->ndim, t->shape));
    }
    gb_tensor *c = gb_contiguous(t);
    if (!c) return NULL;
    gb_tensor *out = gb__ts_reshape_impl(c, ndim, real.shape, false, what);
    gb_tensor_free(c);
    return out;
}

gb_tensor *gb_reshape(gb_tensor *t, int ndim, const int64_t *shape) {
    return gb__ts_reshape_impl(t, ndim, shape, true, "reshape");
}

gb_tensor *gb_view(gb_tensor *t, int ndim, const int64_t *shape) {
    return gb__ts_reshape_impl(t, ndim, shape, false, "view");
}

gb_tensor *gb_flatten(gb_tensor *t, int start_dim, int end_dim) {
    if (t->ndim == 0) return gb_reshape(t, 1, (int64_t[]){1});
    if (gb__ts_norm_dim("flatten", &start_dim, t->ndim) || gb__ts_norm_dim("flatten", &end_dim, t->ndim)) return NULL;
    if (start_dim > end_dim)
        return gb__fail_null(GB_ERR_ARG, "flatten: start_dim (%d) cannot come after end_dim (%d)", start_dim, end_dim);
    int64_t shape[GB_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < start_dim; i++) shape[n++] = t->shape[i];
    int64_t m = 1;
    for (int i = start_dim; i <= end_dim; i++) m *= t->shape[i];
    shape[n++] = m;
    for (int i = end_dim + 1; i < t->ndim; i++) shape[n++] = t->shape[i];
    return gb_reshape(t, n, shape);
}
