/* The inputs of a run and generation: invokes batched into one input
 * (nnsight's tracer.invoke), each getter's view of its rows, and greedy
 * decoding with the trace's interventions at every step (model.generate). */
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
    tr->cur_invoke = (int)arrlen(tr->invokes);
    int64_t start = tr->cur_invoke ? arrlast(tr->invoke_start) + gb_tensor_dim(arrlast(tr->invokes), 0) : 0;
    arrput(tr->invoke_start, start);
    arrput(tr->invokes, gb_tensor_ref(ids));
    return GB_OK;
}

void gb_invoke_end(gb_trace *tr) { tr->cur_invoke = -1; }

void gb_trace_set_pad_id(gb_trace *tr, int64_t id) { tr->pad_id = id; }

/* The rows [start, start + n) of the batch that invoke i occupies. */
static void gb__invoke_rows(const gb_trace *tr, int i, int64_t *start, int64_t *n) {
    *start = tr->invoke_start[i];
    *n = gb_tensor_dim(tr->invokes[i], 0);
}

/* The run's input: the trace's, or its invokes' ids stacked along the batch
 * and left-padded to the longest (with a mask of the real tokens, as a
 * tokenizer pads for a language model). */
gb_status gb__batch_inputs(gb_trace *tr) {
    gb_tensor_free(tr->run_input), gb_tensor_free(tr->run_mask);
    tr->run_input = tr->run_mask = NULL;
    if (!arrlen(tr->invokes)) {
        if (!tr->input) return gb__fail(GB_ERR_ARG, "trace_run: no input: give one to gb_trace_new, or add invokes");
        tr->run_input = gb_tensor_ref(tr->input);
        tr->run_mask = gb_tensor_ref(tr->mask);
        tr->batch = gb_tensor_ndim(tr->input) ? gb_tensor_dim(tr->input, 0) : 1;
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
        tr->run_input = gb_cat((int)arrlen(tr->invokes), tr->invokes, 0);
        tr->batch = B;
        return tr->run_input ? GB_OK : gb_last_status();
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
    tr->run_input = ids;
    tr->run_mask = padded ? mask : NULL;
    if (!padded) gb_tensor_free(mask);
    tr->batch = B;
    return GB_OK;
}

/* Invoke i's rows of a batch value: a view, or t itself when t is not
 * batched (its first dimension is not the batch's). */
gb_tensor *gb__invoke_view(const gb_trace *tr, int i, gb_tensor *t) {
    if (i < 0 || !t || gb_tensor_ndim(t) == 0 || gb_tensor_dim(t, 0) != tr->batch) return gb_tensor_ref(t);
    int64_t start, n;
    gb__invoke_rows(tr, i, &start, &n);
    return gb_narrow(t, 0, start, n);
}

/* live with invoke i's rows replaced by value (broadcast to them): a new
 * tensor, so that values read before the set keep what they read. */
gb_tensor *gb__invoke_replace(const gb_trace *tr, int i, gb_tensor *live, gb_tensor *value) {
    if (i < 0 || gb_tensor_ndim(live) == 0 || gb_tensor_dim(live, 0) != tr->batch) return gb_tensor_ref(value);
    int64_t start, n;
    gb__invoke_rows(tr, i, &start, &n);
    gb_index_expr rows = {1, {{.kind = GB_INDEX_KIND_SLICE, .start = start, .stop = start + n, .step = 1,
                               .has_start = true, .has_stop = true}}};
    gb_tensor *copy = gb_clone(live);
    if (copy && gb_index_put_expr_(copy, &rows, value) != GB_OK) {
        gb_tensor_free(copy);
        return NULL;
    }
    return copy;
}

/* ---- generation --------------------------------------------------------- */

/* Position ids as Hugging Face's generate makes them from a [B, T] mask:
 * count the real tokens before each one; padding gets 1. */
gb_tensor *gb__positions_from_mask(gb_tensor *mask) {
    gb_tensor *m = gb_to_dtype(mask, GB_DTYPE_I64);
    gb_tensor *c = m ? gb_contiguous(m) : NULL;
    gb_tensor_free(m);
    if (!c) return NULL;
    int64_t B = gb_tensor_dim(c, 0), T = gb_tensor_dim(c, 1);
    gb_tensor *pos = gb_empty(2, (int64_t[]){B, T}, GB_DTYPE_I64);
    const int64_t *mk = gb_tensor_data(c); /* [B, T] */
    int64_t *p = pos ? gb_tensor_data(pos) : NULL; /* [B, T] */
    for (int64_t b = 0; p && b < B; b++)
        for (int64_t t = 0, seen = 0; t < T; t++) {
            seen += mk[b * T + t] != 0;
            p[b * T + t] = mk[b * T + t] ? seen - 1 : 1;
        }
    gb_tensor_free(c);
    return pos;
}

/* The last column of position ids x [B, T], plus one, as [B, 1] int64
 * (through f32: exact for positions below 2^24). */
static gb_tensor *gb__next_positions(gb_tensor *x) {
    gb_tensor *last = gb_narrow(x, 1, -1, 1);
    gb_tensor *f = last ? gb_to_dtype(last, GB_DTYPE_F32) : NULL;
    gb_tensor *r = f ? gb_add_scalar(f, 1.0f) : NULL;
    gb_tensor *i = r ? gb_to_dtype(r, GB_DTYPE_I64) : NULL;
    gb_tensor_free(last), gb_tensor_free(f), gb_tensor_free(r);
    return i;
}

/* Rows that produced a stop token get the pad id from then on, as Hugging
 * Face's generate pads finished rows; returns whether every row is done.
 * next: [B, 1] int64, the tokens just chosen (rewritten in place). */
static bool gb__finish_rows(const gb_trace *tr, gb_tensor *next, bool *done) {
    if (!tr->is_stop) return false;
    int64_t *id = gb_tensor_data(next); /* [B, 1] */
    bool all = true;
    for (int64_t b = 0; b < gb_tensor_dim(next, 0); b++) {
        if (done[b]) id[b] = tr->pad_id;
        else done[b] = tr->is_stop(id[b], tr->stop_ctx);
        all &= done[b];
    }
    return all;
}

/* Greedy decoding after the prompt pass (whose outputs are in *out): each
 * chosen token is fed back alone through the same run, the KV cache
 * holding the past, so module call k is generation step k (nnsight's
 * .next()). Stops after max_new tokens, or when a stop ends a pass. */
gb_status gb__generate(gb_trace *tr, gb_run *run, gb_values *out) {
    gb_tensor *seq = gb_to_dtype(tr->run_input, GB_DTYPE_I64);
    gb_tensor *mask = tr->run_mask ? gb_tensor_ref(tr->run_mask) : NULL;
    gb_tensor *pos = tr->pos ? gb_tensor_ref(tr->pos) : mask ? gb__positions_from_mask(mask) : NULL;
    bool *done = calloc((size_t)tr->batch + 1, sizeof *done); /* rows that produced a stop token */
    gb_status st = seq && (!mask || pos) && done ? GB_OK : gb_last_status();
    for (int k = 0; st == GB_OK && k < tr->max_new; k++) {
        gb_tensor *logits = out->n > 0 ? out->v[0] : NULL; /* [B, t, V] */
        gb_tensor *last = logits ? gb_select(logits, 1, -1) : NULL;
        gb_tensor *next = last ? gb_argmax(last, -1, true) : NULL; /* [B, 1] */
        bool all_done = next && gb__finish_rows(tr, next, done);
        gb_tensor *grown = next ? gb_cat(2, (gb_tensor *[]){seq, next}, 1) : NULL;
        gb_tensor_free(last);
        gb_values_clear(out);
        if (!grown) {
            gb_tensor_free(next);
            st = logits ? gb_last_status() : gb__fail(GB_ERR_STATE, "generate: the model returned no logits");
            break;
        }
        gb_tensor_free(seq);
        seq = grown;
        if (k + 1 == tr->max_new || all_done) { /* the last token needs no forward */
            gb_tensor_free(next);
            break;
        }
        if (mask) { /* the new token is real */
            gb_tensor *ones = gb_ones(2, (int64_t[]){gb_tensor_dim(mask, 0), 1}, gb_tensor_dtype(mask));
            gb_tensor *m2 = ones ? gb_cat(2, (gb_tensor *[]){mask, ones}, 1) : NULL;
            gb_tensor_free(ones);
            gb_tensor_free(mask);
            if (!(mask = m2)) st = gb_last_status();
            gb_run_set_attention_mask(run, mask);
        }
        if (pos && st == GB_OK) { /* one past each row's last position */
            gb_tensor *p2 = gb__next_positions(pos);
            gb_tensor_free(pos);
            if (!(pos = p2)) st = gb_last_status();
            gb_run_set_position_ids(run, pos);
        }
        gb_values in = {1, {next}};
        if (st == GB_OK) st = gb_module_call(tr->model, run, &in, out);
        gb_tensor_free(next);
    }
    gb_tensor_free(mask), gb_tensor_free(pos);
    free(done);
    gb_tensor_free(tr->generated);
    tr->generated = st == GB_OK || st == GB_STOPPED ? seq : NULL;
    if (!tr->generated) gb_tensor_free(seq);
    return st;
}

gb_status gb_trace_generate(gb_trace *tr, int max_new_tokens) {
    if (max_new_tokens < 1)
        return gb__fail(GB_ERR_ARG, "trace_generate: max_new_tokens must be >= 1, got %d", max_new_tokens);
    tr->max_new = max_new_tokens;
    gb_status st = gb_trace_run(tr);
    tr->max_new = 0;
    return st;
}

void gb_trace_set_stop_tokens(gb_trace *tr, bool (*is_stop)(int64_t id, void *ctx), void *ctx) {
    tr->is_stop = is_stop;
    tr->stop_ctx = ctx;
}

gb_tensor *gb_trace_generated(const gb_trace *tr) {
    if (!tr->generated) return gb__fail_null(GB_ERR_STATE, "trace_generated: no gb_trace_generate has completed");
    return tr->generated;
}

