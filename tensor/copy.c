/* Copies, dtype conversion, in-place fill, element access. */
#include "lowp.h"

#include <stdint.h>
#include <string.h>

gb_status gb__ts_copy_into(gb_tensor *dst, const gb_tensor *src) {
    if (!gb_tensor_data(dst) || !gb_tensor_data(src)) return GB_OK; /* meta: shapes only */
    int64_t n = gb_tensor_numel(dst);
    if (dst->dtype == src->dtype && gb_tensor_is_contiguous(dst) && gb_tensor_is_contiguous(src) &&
        gb_tensor_numel(src) == n) {
        memmove(gb_tensor_data(dst), gb_tensor_data(src), (size_t)n * gb_dtype_size(dst->dtype));
        return GB_OK;
    }
    if (dst->dtype == GB_DTYPE_F32 && gb__ts_is_lowp(src->dtype) && gb_tensor_is_contiguous(dst) &&
        gb_tensor_is_contiguous(src) && gb_tensor_numel(src) == n) {
        gb__ts_lowp_to_f32(gb_tensor_data(dst), gb_tensor_data(src), n, src->dtype);
        return GB_OK;
    }
    int64_t sstride[GB_MAX_DIMS];
    gb__ts_broadcast_strides(src, dst->ndim, dst->shape, sstride);
    char *d = gb_tensor_data(dst);
    const char *s = gb_tensor_data(src);
    gb__ts_iter it;
    gb__ts_iter_init(&it, dst->ndim, dst->shape, 2, (const int64_t *[]){dst->stride, sstride});
    if (dst->dtype == src->dtype) {
        size_t es = gb_dtype_size(dst->dtype);
        int nd = dst->ndim;
        if (nd >= 1 && dst->shape[nd - 1] > 1 && dst->stride[nd - 1] == 1 && sstride[nd - 1] == 1) {
            /* rows contiguous on both sides (attention's heads merged back:
             * [B, H, T, D] read as [B, T, H, D]): a memcpy per row, not per
             * element (which ran at 1.8 GB/s) */
            int64_t row = dst->shape[nd - 1];
            gb__ts_iter_init(&it, nd - 1, dst->shape, 2, (const int64_t *[]){dst->stride, sstride});
            for (int64_t i = 0; i < n / row; i++, gb__ts_iter_next(&it))
                memcpy(d + it.off[0] * (int64_t)es, s + it.off[1] * (int64_t)es, (size_t)row * es);
        } else if (nd == 2 && es == 4) {
            /* a transpose (Conv1D's weight into its layout): by 32 x 32
             * blocks, whose rows stay in cache on both sides */
            uint32_t *d4 = (uint32_t *)(void *)d;
            const uint32_t *s4 = (const uint32_t *)(const void *)s;
            int64_t r = dst->shape[0], c = dst->shape[1], ds0 = dst->stride[0], ds1 = dst->stride[1];
            int64_t ss0 = sstride[0], ss1 = sstride[1], nb = (r + 31) / 32;
            /* on the thread pool when large: opening GPT-2 124M copies 340 MB
             * so, most of it the kernel clearing the pages first written
             * (270 ms on one thread) */
#pragma omp parallel for num_threads(gb__threads()) if (n >= ((int64_t)1 << 20)) schedule(static)
            for (int64_t b = 0; b < nb; b++)
                for (int64_t j0 = 0; j0 < c; j0 += 32)
                    for (int64_t i = b * 32; i < b * 32 + 32 && i < r; i++)
                        for (int64_t j = j0; j < j0 + 32 && j < c; j++) d4[i * ds0 + j * ds1] = s4[i * ss0 + j * ss1];
        } else {
            for (int64_t i = 0; i < n; i++, gb__ts_iter_next(&it))
                memcpy(d + it.off[0] * (int64_t)es, s + it.off[1] * (int64_t)es, es);
        }
    } else if (dst->dtype == GB_DTYPE_I64 && src->dtype == GB_DTYPE_I32) {
        for (int64_t i = 0; i < n; i++, gb__ts_iter_next(&it))
            ((int64_t *)(void *)d)[it.off[0]] = ((const int32_t *)(const void *)s)[it.off[1]];
    } else if (dst->dtype == GB_DTYPE_I32 && src->dtype == GB_DTYPE_I64) {
        for (int64_t i = 0; i < n; i++, gb__ts_iter_next(&it))
            ((int32_t *)(void *)d)[it.off[0]] = (int32_t)((const int64_t *)(const void *)s)[it.off[1]];
    } else {
        for (int64_t i = 0; i < n; i++, gb__ts_iter_next(&it))
            gb__ts_store_f32(d, dst->dtype, it.off[0], gb__ts_load_f32(s, src->dtype, it.off[1]));
    }
    return GB_OK;
}

/* CONTIGUOUS: a contiguous copy of src[0] in the same dtype. */
gb_status gb__ts_op_CONTIGUOUS_forward(gb_tensor *out) { return gb__ts_copy_into(out, out->src[0]); }

gb_status gb__ts_op_CONTIGUOUS_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    float *ds = gb_tensor_data(dsrc[0]);      /* [n] */
    const float *dy = gb_tensor_data(dout);   /* [n] */
    int64_t n = gb_tensor_numel(out);
    for (int64_t i = 0; i < n; i++) ds[i] += dy[i];
    return GB_OK;
}

/* CAST: the same values in another dtype; the gradient passes through
 * between floating dtypes. */
gb_status gb__ts_op_CAST_forward(gb_tensor *out) { return gb__ts_copy_into(out, out->src[0]); }

gb_status gb__ts_op_CAST_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_op_CONTIGUOUS_backward(out, dout, dsrc);
}

static bool gb__ts_is_float(gb_dtype dt) { return dt == GB_DTYPE_F32 || dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16; }

gb_tensor *gb_clone(gb_tensor *t) {
    gb_tensor *out = gb__ts_op_new(GB_OP_CONTIGUOUS, "clone", t->dtype, t->ndim, t->shape, 1, &t);
    return out ? gb__ts_op_run(out) : NULL;
}

gb_tensor *gb_contiguous(gb_tensor *t) { return gb_tensor_is_contiguous(t) ? gb_tensor_ref(t) : gb_clone(t); }

gb_tensor *gb_to_dtype(gb_tensor *t, gb_dtype dt) {
    if ((unsigned)dt >= GB_DTYPE_COUNT) return gb__fail_null(GB_ERR_DTYPE, "to: unknown dtype %d", (int)dt);
    if (dt == t->dtype) return gb_tensor_ref(t);
    gb_tensor *out = gb__ts_op_new(GB_OP_CAST, "to", dt, t->ndim, t->shape, 1, &t);
    if (!out) return NULL;
    if (!gb__ts_is_float(dt) || !gb__ts_is_float(t->dtype)) out->requires_grad = false;
    return gb__ts_op_run(out);
}

/* In-place writes that autograd cannot see must not hit a tensor it tracks. */
static gb_status gb__ts_check_inplace(const char *op, const gb_tensor *dst) {
    if (dst->requires_grad && gb__ts_grad_mode())
        return gb__fail(GB_ERR_AUTOGRAD,
                        "%s: tensor %s requires grad and cannot be written in place here; use gb_index_put_ "
                        "(recorded for autograd) or write inside gb_no_grad",
                        op, GB__SHAPE_STR(dst));
    return GB_OK;
}

gb_status gb_copy_(gb_tensor *dst, gb_tensor *src) {
    int n;
    int64_t shape[GB_MAX_DIMS];
    gb_status st = gb__ts_check_inplace("copy_", dst);
    if (st) return st;
    if (gb__ts_broadcast_shapes("copy_", dst->ndim, dst->shape, src->ndim, src->shape, &n, shape)) return GB_ERR_SHAPE;
    if (n != dst->ndim || gb__ts_numel(n, shape) != gb_tensor_numel(dst)) {
        char b1[160], b2[160];
        return gb__fail(GB_ERR_SHAPE, "copy_: source of shape %s cannot be broadcast to destination shape %s",
                        gb__shape_str(b1, 160, src->ndim, src->shape), gb__shape_str(b2, 160, dst->ndim, dst->shape));
    }
    /* A source overlapping the destination would be read after being written. */
    gb_tensor *tmp = NULL;
    if (src->storage == dst->storage && gb_tensor_data(src)) {
        tmp = gb_clone(src);
        if (!tmp) return GB_ERR_ALLOC;
        src = tmp;
    }
    st = gb__ts_copy_into(dst, src);
    gb_tensor_free(tmp);
    gb__ts_bump_version(dst);
    return st;
}

gb_status gb_fill_(gb_tensor *dst, float value) {
    gb_status st = gb__ts_check_inplace("fill_", dst);
    if (st) return st;
    void *d = gb_tensor_data(dst);
    if (d) {
        gb__ts_iter it;
        gb__ts_iter_init(&it, dst->ndim, dst->shape, 1, (const int64_t *[]){dst->stride});
        for (int64_t i = 0; i < it.n; i++, gb__ts_iter_next(&it)) gb__ts_store_f32(d, dst->dtype, it.off[0], value);
    }
    gb__ts_bump_version(dst);
    return GB_OK;
}

static double gb__ts_load_f64(const void *base, gb_dtype dt, int64_t i) {
    if (dt == GB_DTYPE_I64) return (double)((const int64_t *)base)[i];
    if (dt == GB_DTYPE_I32) return (double)((const int32_t *)base)[i];
    return (double)gb__ts_load_f32(base, dt, i);
}

gb_status gb_tensor_get(const gb_tensor *t, const int64_t *idx, double *out) {
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) {
        int64_t i = idx[d], n = t->shape[d];
        if (i < -n || i >= n)
            return gb__fail(GB_ERR_INDEX, "tensor_get: index %lld is out of bounds for dimension %d with size %lld",
                            (long long)i, d, (long long)n);
        off += (i < 0 ? i + n : i) * t->stride[d];
    }
    const void *data = gb_tensor_data(t);
    if (!data) return gb__fail(GB_ERR_STATE, "tensor_get: tensor %s is shape-only (meta)", GB__SHAPE_STR(t));
    *out = gb__ts_load_f64(data, t->dtype, off);
    return GB_OK;
}

gb_status gb_item(const gb_tensor *t, double *out) {
    if (gb_tensor_numel(t) != 1)
        return gb__fail(GB_ERR_SHAPE, "item: a tensor with %lld elements cannot be converted to a scalar (shape %s)",
                        (long long)gb_tensor_numel(t), GB__SHAPE_STR(t));
    int64_t zero[GB_MAX_DIMS] = {0};
    return gb_tensor_get(t, zero, out);
}
