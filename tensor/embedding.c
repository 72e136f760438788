/* embedding: rows of a weight table picked by integer ids; backward
 * scatter-adds the output gradient into the rows it read. An f16/bf16
 * table is read as stored, each row converted to f32 as it is copied. */
#include "lowp.h"

#include <string.h>

static int64_t gb__ts_id(const gb_tensor *ids, const void *data, int64_t i) {
    return ids->dtype == GB_DTYPE_I64 ? ((const int64_t *)data)[i] : ((const int32_t *)data)[i];
}

/* src: [0] weight [V, D], [1] ids (any shape). */
gb_status gb__ts_op_EMBEDDING_forward(gb_tensor *out) {
    gb_tensor *wd = gb__ts_dense(out->src[0]), *idd = wd ? gb__ts_dense(out->src[1]) : NULL;
    gb_status st = GB_OK;
    if (!idd) {
        st = gb_last_status();
        goto done;
    }
    const char *w = gb_tensor_data(wd);   /* [V, D] */
    const void *ids = gb_tensor_data(idd); /* [n] */
    float *y = gb_tensor_data(out);       /* [n, D] */
    int64_t v = wd->shape[0], d = wd->shape[1], n = gb_tensor_numel(idd);
    size_t es = gb_dtype_size(wd->dtype);
    for (int64_t i = 0; i < n; i++) {
        int64_t id = gb__ts_id(idd, ids, i);
        if (id < 0 || id >= v) {
            st = gb__fail(GB_ERR_INDEX,
                          "embedding: id %lld (at flat position %lld of ids %s) is out of range for vocabulary size %lld",
                          (long long)id, (long long)i, GB__SHAPE_STR(idd), (long long)v);
            goto done;
        }
        if (gb__ts_is_lowp(wd->dtype)) gb__ts_lowp_to_f32(y + i * d, (const uint16_t *)(const void *)(w + id * d * es), d, wd->dtype);
        else memcpy(y + i * d, w + id * d * es, (size_t)d * sizeof(float));
    }
done:
    gb_tensor_free(wd);
    gb_tensor_free(idd);
    return st;
}

gb_status gb__ts_op_EMBEDDING_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    if (!dsrc[0]) return GB_OK;
    gb_status st = gb__ts_lowp_frozen("embedding", "weight", out->src[0], true);
    if (st) return st;
    gb_tensor *idd = gb__ts_dense(out->src[1]);
    if (!idd) return gb_last_status();
    float *dw = gb_tensor_data(dsrc[0]);    /* [V, D] */
    const float *dy = gb_tensor_data(dout); /* [n, D] */
    const void *ids = gb_tensor_data(idd);  /* [n] */
    int64_t d = out->src[0]->shape[1], n = gb_tensor_numel(idd);
    /* Repeated ids add up; sequential over ids keeps the sum deterministic. */
    for (int64_t i = 0; i < n; i++) {
        float *row = dw + gb__ts_id(idd, ids, i) * d;
        for (int64_t j = 0; j < d; j++) row[j] += dy[i * d + j];
    }
    gb_tensor_free(idd);
    return GB_OK;
}

gb_tensor *gb_embedding(gb_tensor *weight, gb_tensor *ids) {
    if (weight->dtype != GB_DTYPE_F32 && !gb__ts_is_lowp(weight->dtype))
        return gb__fail_null(GB_ERR_DTYPE, "embedding: expected weight of dtype float32 (or float16, bfloat16), got %s %s",
                             gb_dtype_name(weight->dtype), GB__SHAPE_STR(weight));
    if (gb__ts_lowp_frozen("embedding", "weight", weight, weight->requires_grad && gb__ts_grad_mode())) return NULL;
    if (ids->dtype != GB_DTYPE_I64 && ids->dtype != GB_DTYPE_I32)
        return gb__fail_null(GB_ERR_DTYPE, "embedding: expected ids of dtype int64 or int32, got %s %s",
                             gb_dtype_name(ids->dtype), GB__SHAPE_STR(ids));
    if (weight->ndim != 2)
        return gb__fail_null(GB_ERR_SHAPE, "embedding: weight must be 2-D [num_embeddings, embedding_dim], got %s",
                             GB__SHAPE_STR(weight));
    if (ids->ndim + 1 > GB_MAX_DIMS)
        return gb__fail_null(GB_ERR_SHAPE, "embedding: ids %s have too many dims (the result may have at most %d)",
                             GB__SHAPE_STR(ids), GB_MAX_DIMS);
    int64_t shape[GB_MAX_DIMS];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
    shape[ids->ndim] = weight->shape[1];
    gb_tensor *out = gb__ts_op_new(GB_OP_EMBEDDING, "embedding", GB_DTYPE_F32, ids->ndim + 1, shape, 2,
                                (gb_tensor *[]){weight, ids});
    return out ? gb__ts_op_run(out) : NULL;
}
