/* Generation with interventions (nnsight's model.generate): the decoding
 * loop (gb_decode) driving a trace's execution pass by pass, so module call
 * k is generation step k and .next()/.all() interventions fire per step. */
#include "../tensor/base.h"
#include "lm_impl.h"

typedef struct gb__lm_traced {
    gb_exec *ex;
    bool prompt_ran; /* the prompt pass completed */
} gb__lm_traced;

static gb_status gb__lm_traced_forward(void *ctx, int step, gb_tensor *ids, gb_tensor *mask, gb_tensor *pos,
                                    gb_tensor **logits) {
    gb__lm_traced *t = ctx;
    gb_values out = {0};
    gb_status st = gb_exec_pass(t->ex, ids, mask, pos, &out);
    if (st == GB_OK && step == 0) t->prompt_ran = true;
    if (st == GB_OK && out.n < 1) st = gb__fail(GB_ERR_STATE, "generate: the model returned no logits");
    *logits = st == GB_OK ? gb_tensor_ref(out.v[0]) : NULL;
    gb_values_clear(&out);
    return st;
}

gb_status gb_exec_decode(gb_exec *ex, gb_tensor *input, const gb_decode_opts *opts) {
    gb_status st = gb_exec_begin(ex, input, true);
    if (st != GB_OK) return st;
    gb_tensor *ids, *mask, *pos, *seq = NULL;
    gb_exec_batch(ex, &ids, &mask, &pos);
    gb__lm_traced t = {ex, false};
    /* the batch of every invoke, checked before the first pass spends it */
    const gb_model *m = gb_model_of(gb_trace_module(gb_exec_trace(ex)));
    st = opts && gb_tensor_ndim(ids) == 2 ? gb__lm_check_generate(m, gb_tensor_dim(ids, 0), gb_tensor_dim(ids, 1), opts) : GB_OK;
    if (st == GB_OK) st = gb_decode(gb__lm_traced_forward, &t, ids, mask, pos, opts, &seq);
    /* a generation that failed leaves none; one whose prompt pass stopped leaves the last one */
    if (t.prompt_ran && seq) gb_exec_set_generated(ex, seq);
    else gb_tensor_free(seq);
    gb_status end = gb_exec_end(ex);
    /* The loop's own failures (no logits, bad options) are not the run's. */
    return st != GB_OK && st != GB_STOPPED && end == GB_OK ? st : end;
}

/* The trace's decoding policy (stop tokens, pad id) with n new tokens and
 * sampling s (NULL: greedy). */
static gb_status gb__lm_exec_sample(gb_exec *ex, gb_tensor *input, int max_new_tokens, const gb_sampling *s) {
    gb_decode_opts o = gb_decode_defaults();
    gb_trace *tr = gb_exec_trace(ex);
    o.max_new_tokens = max_new_tokens;
    if (s) o.sampling = *s;
    gb_trace_stop_tokens(tr, &o.is_stop, &o.stop_ctx);
    o.pad_id = gb_trace_pad_id(tr);
    return gb_exec_decode(ex, input, &o);
}

gb_status gb_exec_generate(gb_exec *ex, gb_tensor *input, int max_new_tokens) {
    if (max_new_tokens < 1)
        return gb__fail(GB_ERR_ARG, "exec_generate: max_new_tokens must be >= 1, got %d", max_new_tokens);
    return gb__lm_exec_sample(ex, input, max_new_tokens, NULL);
}

gb_status gb_trace_sample(gb_trace *tr, int max_new_tokens, const gb_sampling *s) {
    if (max_new_tokens < 1)
        return gb__fail(GB_ERR_ARG, "trace_generate: max_new_tokens must be >= 1, got %d", max_new_tokens);
    if (gb_trace_validates(tr)) { /* the prompt pass's shapes */
        gb_status st = gb_trace_scan(tr);
        if (st != GB_OK) return st;
    }
    return gb__lm_exec_sample(gb_trace_exec(tr), NULL, max_new_tokens, s);
}

gb_status gb_trace_generate(gb_trace *tr, int max_new_tokens) { return gb_trace_sample(tr, max_new_tokens, NULL); }

gb_status gb_trace_scan_generate(gb_trace *tr, int max_new_tokens) {
    return gb_exec_scan_generate(gb_trace_exec(tr), NULL, max_new_tokens);
}

gb_status gb_exec_scan_generate(gb_exec *ex, gb_tensor *input, int max_new_tokens) {
    if (max_new_tokens < 1)
        return gb__fail(GB_ERR_ARG, "trace_scan_generate: max_new_tokens must be >= 1, got %d", max_new_tokens);
    gb_status st = gb_exec_begin_scan(ex, input, true);
    if (st != GB_OK) return st;
    gb_tensor *ids, *mask, *pos;
    gb_exec_batch(ex, &ids, &mask, &pos);
    int64_t B = gb_tensor_dim(ids, 0);
    gb_tensor *in = gb_tensor_ref(ids), *m = gb_tensor_ref(mask), *p = gb_tensor_ref(pos);
    /* As gb_decode's passes: the prompt, then one token a step (the last
     * token needs no pass); shapes are all a scan reads, so the tokens and
     * positions fed are zeros of their shapes (meta tensors here). */
    for (int k = 0; st == GB_OK && k < max_new_tokens; k++) {
        st = gb_exec_pass(ex, in, m, p, NULL);
        gb_tensor_free(in), gb_tensor_free(p);
        in = p = NULL;
        if (st != GB_OK || k + 1 == max_new_tokens) break;
        in = gb_zeros(2, (int64_t[]){B, 1}, GB_DTYPE_I64);
        if (m || pos) p = gb_zeros(2, (int64_t[]){B, 1}, GB_DTYPE_I64);
        if (m) {
            gb_tensor *one = gb_ones(2, (int64_t[]){B, 1}, gb_tensor_dtype(m));
            gb_tensor *grown = one ? gb_cat(2, (gb_tensor *[]){m, one}, 1) : NULL;
            gb_tensor_free(one), gb_tensor_free(m);
            m = grown;
        }
        if (!in || ((mask || pos) && !p) || (mask && !m)) st = gb_last_status();
    }
    gb_tensor_free(in), gb_tensor_free(m), gb_tensor_free(p);
    gb_status end = gb_exec_end(ex);
    return st != GB_OK && st != GB_STOPPED && end == GB_OK ? st : end;
}
