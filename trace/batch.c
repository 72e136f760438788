/* Invokes (nnsight's tracer.invoke): their definition, the batching of a
 * run's input, and each getter's view of its invoke's rows. */
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "trace_impl.h"

/* ---- invokes ------------------------------------------------------------ */

gb_status gb_invoke_at(gb_trace *tr, gb_tensor *ids, const char *file, int line) {
    gb_status st = GB_OK;
    if (tr->input)
        st = gb__fail(GB_ERR_ARG, "invoke: this trace was made with an input; make it with gb_trace_new(model, NULL) "
                                  "to batch invokes");
    else if (!ids || gb_tensor_ndim(ids) < 1 || gb_tensor_dim(ids, 0) < 1)
        st = gb__fail(GB_ERR_SHAPE, "invoke: an input needs a batch dimension (ids [batch, seq_len]), got %s",
                      ids ? gb__shape_str((char[160]){0}, 160, gb_tensor_ndim(ids), gb_tensor_shape(ids)) : "NULL");
    else if (tr->cur_invoke >= 0)
        st = gb__fail(GB_ERR_STATE, "invoke: invoke %d is still open; end it with gb_invoke_end", tr->cur_invoke);
    if (st != GB_OK) {
        if (tr->def_status == GB_OK) {
            tr->def_status = st;
            gb__error_prefix("%s:%d", file, line);
            tr->def_error = strdup(gb_last_error());
        }
        return st;
    }
    int n = (int)arrlen(tr->invokes);
    int64_t start = n ? arrlast(tr->invoke_start) + gb_tensor_dim(arrlast(tr->invokes), 0) : 0;
    if (!GB_ARR_RESERVE(tr->invoke_start, 1, "invoke") || !GB_ARR_PUT(tr->invokes, ids, "invoke")) return GB_ERR_ALLOC;
    gb_tensor_ref(ids);
    if (!GB_ARR_PUT(tr->invoke_start, start, "invoke")) return GB_ERR_ALLOC; /* reserved: cannot fail */
    tr->cur_invoke = n;
    return GB_OK;
}

void gb_invoke_end(gb_trace *tr) { tr->cur_invoke = -1; }

void gb_trace_set_pad_id(gb_trace *tr, int64_t id) { tr->pad_id = id; }

/* The rows [start, start + n) of the batch that invoke i occupies. */
static void gb__tr_invoke_rows(const gb_trace *tr, int i, int64_t *start, int64_t *n) {
    *start = tr->invoke_start[i];
    *n = gb_tensor_dim(tr->invokes[i], 0);
}

/* A run's input: the trace's, or its invokes' ids stacked along the batch
 * and left-padded to the longest (with a mask of the real tokens, as a
 * tokenizer pads for a language model). */
gb_status gb__tr_batch_inputs(const gb_trace *tr, gb_tensor **input, gb_tensor **maskp, gb_tensor **pos, int64_t *batch) {
    *input = *maskp = *pos = NULL;
    if (!arrlen(tr->invokes)) {
        if (!tr->input) return gb__fail(GB_ERR_ARG, "trace_run: no input: give one to gb_trace_new, or add invokes");
        *input = gb_tensor_ref(tr->input);
        *maskp = gb_tensor_ref(tr->mask);
        *pos = gb_tensor_ref(tr->pos);
        *batch = gb_tensor_ndim(tr->input) ? gb_tensor_dim(tr->input, 0) : 1;
        return GB_OK;
    }
    if (tr->mask || tr->pos)
        return gb__fail(GB_ERR_ARG, "trace_run: invokes make the attention mask themselves; do not set a mask or "
                                    "position ids on a trace with invokes");
    int64_t B = 0, T = 0;
    bool same = true, ids_like = true;
    for (ptrdiff_t i = 0; i < arrlen(tr->invokes); i++) {
        gb_tensor *x = tr->invokes[i];
        B += gb_tensor_dim(x, 0);
        if (gb_tensor_ndim(x) > 1 && gb_tensor_dim(x, 1) > T) T = gb_tensor_dim(x, 1);
        const gb_tensor *x0 = tr->invokes[0];
        same &= gb_tensor_ndim(x) == gb_tensor_ndim(x0) && gb_tensor_dtype(x) == gb_tensor_dtype(x0) &&
                !memcmp(gb_tensor_shape(x) + 1, gb_tensor_shape(x0) + 1, sizeof(int64_t) * (size_t)(gb_tensor_ndim(x) - 1));
        ids_like &= gb_tensor_ndim(x) == 2 && (gb_tensor_dtype(x) == GB_DTYPE_I64 || gb_tensor_dtype(x) == GB_DTYPE_I32);
    }
    if (same) { /* stack as they are: no padding needed */
        *input = gb_cat((int)arrlen(tr->invokes), tr->invokes, 0);
        *batch = B;
        return *input ? GB_OK : gb_last_status();
    }
    if (!ids_like)
        return gb__fail(GB_ERR_SHAPE, "trace_run: invokes of different shapes can be batched only as token ids "
                                      "[batch, seq_len] (left-padded); these differ beyond the batch dimension");
    gb_tensor *ids = gb_full(2, (int64_t[]){B, T}, 0, GB_DTYPE_I64), *mask = gb_zeros(2, (int64_t[]){B, T}, GB_DTYPE_I64);
    if (!ids || !mask) {
        gb_tensor_free(ids), gb_tensor_free(mask);
        return gb_last_status();
    }
    int64_t *pid = gb_tensor_data(ids), *pm = gb_tensor_data(mask); /* [B, T] */
    bool padded = false;
    for (ptrdiff_t i = 0, row = 0; i < arrlen(tr->invokes); i++) {
        gb_tensor *x = gb_to_dtype(tr->invokes[i], GB_DTYPE_I64), *c = x ? gb_contiguous(x) : NULL;
        gb_tensor_free(x);
        if (!c) {
            gb_tensor_free(ids), gb_tensor_free(mask);
            return gb_last_status();
        }
        int64_t b = gb_tensor_dim(c, 0), t = gb_tensor_dim(c, 1);
        const int64_t *px = gb_tensor_data(c); /* [b, t] */
        for (int64_t r = 0; r < b; r++, row++)
            for (int64_t j = 0; j < T; j++) {
                bool real = j >= T - t;
                pid[row * T + j] = real ? px[r * t + j - (T - t)] : tr->pad_id;
                pm[row * T + j] = real;
            }
        padded |= t < T;
        gb_tensor_free(c);
    }
    *input = ids;
    *maskp = padded ? mask : NULL;
    if (!padded) gb_tensor_free(mask);
    *batch = B;
    return GB_OK;
}

/* Invoke i's rows of a batch value: a view, or t itself when t is not
 * batched (its first dimension is not the batch's). */
gb_tensor *gb__tr_invoke_view(const gb_trace *tr, int64_t batch, int i, gb_tensor *t) {
    if (i < 0 || !t || gb_tensor_ndim(t) == 0 || gb_tensor_dim(t, 0) != batch) return gb_tensor_ref(t);
    int64_t start, n;
    gb__tr_invoke_rows(tr, i, &start, &n);
    return gb_narrow(t, 0, start, n);
}

/* live with invoke i's rows replaced by value (broadcast to them): a new
 * tensor, so that values read before the set keep what they read. */
gb_tensor *gb__tr_invoke_replace(const gb_trace *tr, int64_t batch, int i, gb_tensor *live, gb_tensor *value) {
    if (i < 0 || gb_tensor_ndim(live) == 0 || gb_tensor_dim(live, 0) != batch) return gb_tensor_ref(value);
    int64_t start, n;
    gb__tr_invoke_rows(tr, i, &start, &n);
    gb_index_expr rows = {1, {{.kind = GB_INDEX_KIND_SLICE, .start = start, .stop = start + n, .step = 1,
                               .has_start = true, .has_stop = true}}};
    gb_tensor *copy = gb_clone(live);
    if (copy && gb_index_put_expr_(copy, &rows, value) != GB_OK) {
        gb_tensor_free(copy);
        return NULL;
    }
    return copy;
}
