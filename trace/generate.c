/* Generation (nnsight's model.generate): greedy decoding as a loop of
 * passes of one execution. The loop (gb__decode) uses only the public
 * stepping API (gb_exec_begin/_batch/_pass/_end), so that it can move to a
 * language-model layer above trace/ as it is; the functions after it only
 * read the trace's generation settings and keep the result. */
#include <stdlib.h>
#include <string.h>

#include "trace_impl.h"

/* Position ids as Hugging Face's generate makes them from a [B, T] mask:
 * count the real tokens before each one; padding gets 1. */
static gb_tensor *gb__positions_from_mask(gb_tensor *mask) {
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

/* What a decoding loop is asked for. */
typedef struct gb__decode_opts {
    int max_new;                            /* tokens to add */
    bool (*is_stop)(int64_t id, void *ctx); /* end-of-sequence tokens, or NULL */
    void *stop_ctx;
    int64_t pad_id;                         /* for rows that have finished */
} gb__decode_opts;

/* Rows that produced a stop token get the pad id from then on, as Hugging
 * Face's generate pads finished rows; returns whether every row is done.
 * next: [B, 1] int64, the tokens just chosen (rewritten in place). */
static bool gb__finish_rows(const gb__decode_opts *o, gb_tensor *next, bool *done) {
    if (!o->is_stop) return false;
    int64_t *id = gb_tensor_data(next); /* [B, 1] */
    bool all = true;
    for (int64_t b = 0; b < gb_tensor_dim(next, 0); b++) {
        if (done[b]) id[b] = o->pad_id;
        else done[b] = o->is_stop(id[b], o->stop_ctx);
        all &= done[b];
    }
    return all;
}

/* Greedy decoding in a run begun on ex: the prompt pass, then each chosen
 * token fed back alone through the same run, the KV cache holding the
 * past, so module call k is generation step k (nnsight's .next()). Stops
 * after max_new tokens, or when a stop ends a pass. *seq receives prompt
 * and new tokens when the prompt pass ran and nothing failed (a stop is
 * not a failure), else NULL; *prompt_ran whether the prompt pass ran. */
static gb_status gb__decode(gb_exec *ex, const gb__decode_opts *o, gb_tensor **result, bool *prompt_ran) {
    *result = NULL;
    *prompt_ran = false;
    gb_tensor *prompt, *mask0, *pos0;
    gb_exec_batch(ex, &prompt, &mask0, &pos0);
    gb_tensor *mask = gb_tensor_ref(mask0);
    /* With a mask and no positions, positions come from the mask, as in Hugging Face's generate. */
    gb_tensor *pos = pos0 ? gb_tensor_ref(pos0) : mask ? gb__positions_from_mask(mask) : NULL;
    gb_values out = {0};
    gb_status st = !mask || pos ? gb_exec_pass(ex, prompt, mask, pos, &out) : gb_last_status();
    if (st != GB_OK) {
        gb_tensor_free(mask), gb_tensor_free(pos);
        return st;
    }
    *prompt_ran = true;
    gb_tensor *seq = gb_to_dtype(prompt, GB_DTYPE_I64);
    bool *done = calloc((size_t)(gb_tensor_ndim(prompt) ? gb_tensor_dim(prompt, 0) : 1) + 1, sizeof *done);
    st = seq && done ? GB_OK : seq ? gb__fail(GB_ERR_ALLOC, "generate: out of memory") : gb_last_status();
    for (int k = 0; st == GB_OK && k < o->max_new; k++) {
        gb_tensor *logits = out.n > 0 ? out.v[0] : NULL; /* [B, t, V] */
        gb_tensor *last = logits ? gb_select(logits, 1, -1) : NULL;
        gb_tensor *next = last ? gb_argmax(last, -1, true) : NULL; /* [B, 1] */
        bool all_done = next && gb__finish_rows(o, next, done);
        gb_tensor *grown = next ? gb_cat(2, (gb_tensor *[]){seq, next}, 1) : NULL;
        gb_tensor_free(last);
        gb_values_clear(&out);
        if (!grown) {
            gb_tensor_free(next);
            st = logits ? gb_last_status() : gb__fail(GB_ERR_STATE, "generate: the model returned no logits");
            break;
        }
        gb_tensor_free(seq);
        seq = grown;
        if (k + 1 == o->max_new || all_done) { /* the last token needs no forward */
            gb_tensor_free(next);
            break;
        }
        if (mask) { /* the new token is real */
            gb_tensor *ones = gb_ones(2, (int64_t[]){gb_tensor_dim(mask, 0), 1}, gb_tensor_dtype(mask));
            gb_tensor *m2 = ones ? gb_cat(2, (gb_tensor *[]){mask, ones}, 1) : NULL;
            gb_tensor_free(ones);
            gb_tensor_free(mask);
            if (!(mask = m2)) st = gb_last_status();
        }
        if (pos && st == GB_OK) { /* one past each row's last position */
            gb_tensor *p2 = gb__next_positions(pos);
            gb_tensor_free(pos);
            if (!(pos = p2)) st = gb_last_status();
        }
        if (st == GB_OK) st = gb_exec_pass(ex, next, mask, pos, &out);
        gb_tensor_free(next);
    }
    gb_values_clear(&out);
    gb_tensor_free(mask), gb_tensor_free(pos);
    free(done);
    if (st == GB_OK || st == GB_STOPPED) *result = seq;
    else gb_tensor_free(seq);
    return st;
}

static gb_status gb__generate(gb_exec *ex, gb_tensor *input, int max_new) {
    gb_trace *tr = ex->tr;
    gb_status st = gb_exec_begin(ex, input, true);
    if (st != GB_OK) return st;
    gb__decode_opts o = {max_new, tr->is_stop, tr->stop_ctx, tr->pad_id};
    gb_tensor *seq;
    bool prompt_ran;
    st = gb__decode(ex, &o, &seq, &prompt_ran);
    if (prompt_ran) { /* a generation that failed leaves none; a stopped prompt pass leaves the last one */
        gb_tensor_free(ex->generated);
        ex->generated = seq;
    }
    gb_status end = gb_exec_end(ex);
    /* The loop's own failures (no logits) are not the run's. */
    return st != GB_OK && st != GB_STOPPED && end == GB_OK ? st : end;
}

gb_status gb_exec_generate(gb_exec *ex, gb_tensor *input, int max_new_tokens) {
    if (max_new_tokens < 1)
        return gb__fail(GB_ERR_ARG, "exec_generate: max_new_tokens must be >= 1, got %d", max_new_tokens);
    return gb__generate(ex, input, max_new_tokens);
}

gb_status gb_trace_generate(gb_trace *tr, int max_new_tokens) {
    if (max_new_tokens < 1)
        return gb__fail(GB_ERR_ARG, "trace_generate: max_new_tokens must be >= 1, got %d", max_new_tokens);
    if (tr->validate) { /* the prompt pass's shapes */
        gb_status st = gb_trace_scan(tr);
        if (st != GB_OK) return st;
    }
    return gb__generate(gb_trace_exec(tr), NULL, max_new_tokens);
}

void gb_trace_set_stop_tokens(gb_trace *tr, bool (*is_stop)(int64_t id, void *ctx), void *ctx) {
    tr->is_stop = is_stop;
    tr->stop_ctx = ctx;
}

gb_tensor *gb_exec_generated(const gb_exec *ex) {
    if (!ex->generated) return gb__fail_null(GB_ERR_STATE, "trace_generated: no gb_trace_generate has completed");
    return ex->generated;
}

gb_tensor *gb_trace_generated(const gb_trace *tr) { return gb_exec_generated(&tr->own); }
