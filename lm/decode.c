/* The decoding loop: prompt pass, then one token per row per pass with the
 * KV cache; greedy or sampled choice; stop tokens; the mask and positions
 * that grow with the sequence. Every generation in glassbox goes through
 * gb_decode (plain runs, traces, the CLI, the demo). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/base.h"
#include "lm_impl.h"

gb_decode_opts gb_decode_defaults(void) {
    return (gb_decode_opts){.max_new_tokens = 20, .sampling = {.temperature = 0, .top_p = 1, .repetition_penalty = 1}};
}

static bool gb__lm_stop(int64_t id, void *lm) { return gb_lm_is_eos(lm, id); }

gb_decode_opts gb_lm_decode_defaults(const gb_lm *lm) {
    gb_decode_opts o = gb_decode_defaults();
    o.is_stop = gb__lm_stop;
    o.stop_ctx = (void *)lm;
    o.pad_id = gb_lm_pad_id(lm);
    o.max_length = gb_model_max_positions(gb_lm_model(lm));
    return o;
}

/* Position ids as Hugging Face's generate makes them from a [B, T] mask:
 * count the real tokens before each one; padding gets 1. */
static gb_tensor *gb__lm_positions_from_mask(gb_tensor *mask) {
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

/* One past the last column of position ids pos [B, T], as [B, 1]. */
static gb_tensor *gb__lm_next_positions(gb_tensor *pos) {
    gb_tensor *c = gb_contiguous(pos);
    int64_t B = c ? gb_tensor_dim(c, 0) : 0, T = c ? gb_tensor_dim(c, 1) : 0;
    gb_tensor *next = c ? gb_empty(2, (int64_t[]){B, 1}, GB_DTYPE_I64) : NULL;
    const int64_t *p = next ? gb_tensor_data(c) : NULL; /* [B, T] */
    int64_t *n = next ? gb_tensor_data(next) : NULL;    /* [B, 1] */
    for (int64_t b = 0; n && b < B; b++) n[b] = p[b * T + T - 1] + 1;
    gb_tensor_free(c);
    return next;
}

/* mask [B, T] with a column of ones appended: the new tokens are real. */
static gb_tensor *gb__lm_grow_mask(gb_tensor *mask) {
    gb_tensor *ones = gb_ones(2, (int64_t[]){gb_tensor_dim(mask, 0), 1}, gb_tensor_dtype(mask));
    gb_tensor *grown = ones ? gb_cat(2, (gb_tensor *[]){mask, ones}, 1) : NULL;
    gb_tensor_free(ones);
    return grown;
}

/* ---- choosing the next token ----------------------------------------------- */

/* Descending probability, then ascending id (qsort_r: the scores are the context). */
static int gb__lm_by_prob(const void *a, const void *b, void *scores) {
    const float *s = scores;
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    return s[i] > s[j] ? -1 : s[i] < s[j] ? 1 : (i > j) - (i < j);
}

/* Hugging Face's order: repetition penalty on the raw scores, then
 * temperature, top-k and top-p, then a draw from what is left.
 * s: [V] scores of one row (rewritten), seen: [T] ids so far, order: [V]
 * and mark: [V] scratch. */
static int64_t gb__lm_sample_row(float *s, int64_t V, const int64_t *seen, int64_t T, const gb_sampling *o,
                              gb_rng *rng, int64_t *order, unsigned char *mark) {
    if (o->repetition_penalty != 1) { /* once per distinct token, as HF's gather/scatter */
        memset(mark, 0, (size_t)V);
        for (int64_t t = 0; t < T; t++) {
            int64_t v = seen[t];
            if (v < 0 || v >= V || mark[v]) continue;
            mark[v] = 1;
            s[v] = s[v] < 0 ? s[v] * o->repetition_penalty : s[v] / o->repetition_penalty;
        }
    }
    int64_t best = 0;
    for (int64_t v = 1; v < V; v++)
        if (s[v] > s[best]) best = v;
    if (o->temperature <= 0) return best;

    /* unnormalised softmax at the temperature, ordered by probability */
    float top = s[best];
    for (int64_t v = 0; v < V; v++) s[v] = expf((s[v] - top) / o->temperature), order[v] = v;
    qsort_r(order, (size_t)V, sizeof *order, gb__lm_by_prob, s);
    int64_t keep = V;
    if (o->top_k > 0 && o->top_k < keep) {
        keep = o->top_k;
        while (keep < V && s[order[keep]] == s[order[keep - 1]]) keep++; /* ties with the k-th stay, as in HF */
    }
    if (o->top_p < 1) { /* the smallest prefix holding top_p of what top-k kept */
        double kept = 0, cum = 0;
        for (int64_t i = 0; i < keep; i++) kept += s[order[i]];
        int64_t n = 0;
        while (n < keep && cum < o->top_p * kept) cum += s[order[n++]];
        keep = n > 0 ? n : 1;
    }
    double mass = 0, acc = 0;
    for (int64_t i = 0; i < keep; i++) mass += s[order[i]];
    double u = (double)gb_rng_next(rng) / 4294967296.0 * mass;
    for (int64_t i = 0; i < keep; i++)
        if ((acc += s[order[i]]) > u) return order[i];
    return order[keep - 1];
}

/* Whether the logits [B, t, V] at the last position hold NaN or Inf. */
static bool gb__lm_last_nonfinite(gb_tensor *logits) {
    gb_tensor *last = gb_select(logits, 1, -1); /* [B, V], a view */
    bool bad = last && gb_count_nonfinite(last, NULL) > 0;
    gb_tensor_free(last);
    return bad;
}

/* The next token of every row from logits [B, t, V]: [B, 1] int64. seq: [B, T] so far. */
static gb_tensor *gb__lm_choose(gb_tensor *logits, gb_tensor *seq, const gb_sampling *o, gb_rng *rng) {
    gb_tensor *last = gb_select(logits, 1, -1); /* [B, V] */
    if (!last) return NULL;
    if (o->temperature <= 0 && o->repetition_penalty == 1) { /* greedy: the tensor op, ties to the first */
        gb_tensor *next = gb_argmax(last, -1, true);
        gb_tensor_free(last);
        return next;
    }
    gb_tensor *scores = gb_to_dtype(last, GB_DTYPE_F32), *c = scores ? gb_clone(scores) : NULL;
    gb_tensor_free(last), gb_tensor_free(scores);
    int64_t B = c ? gb_tensor_dim(c, 0) : 0, V = c ? gb_tensor_dim(c, 1) : 0, T = gb_tensor_dim(seq, 1);
    gb_tensor *next = c ? gb_empty(2, (int64_t[]){B, 1}, GB_DTYPE_I64) : NULL;
    int64_t *order = next ? gb__malloc((sizeof *order + 1) * (size_t)V, "decode") : NULL;
    if (!order) {
        gb_tensor_free(next), gb_tensor_free(c);
        return NULL;
    }
    unsigned char *mark = (unsigned char *)(order + V);
    float *s = gb_tensor_data(c);              /* [B, V] */
    const int64_t *ids = gb_tensor_data(seq);  /* [B, T] */
    int64_t *out = gb_tensor_data(next);       /* [B, 1] */
    for (int64_t b = 0; b < B; b++) out[b] = gb__lm_sample_row(s + b * V, V, ids + b * T, T, o, rng, order, mark);
    free(order);
    gb_tensor_free(c);
    return next;
}

static gb_status gb__lm_check_sampling(const gb_decode_opts *o) {
    const gb_sampling *s = &o->sampling;
    if (o->max_new_tokens < 0) return gb__fail(GB_ERR_ARG, "decode: max_new_tokens must be >= 0, got %d", o->max_new_tokens);
    if (!(s->temperature >= 0) || !isfinite(s->temperature))
        return gb__fail(GB_ERR_ARG, "decode: temperature must be a finite number >= 0, got %g", (double)s->temperature);
    if (s->top_k < 0) return gb__fail(GB_ERR_ARG, "decode: top_k must be >= 0, got %d", s->top_k);
    if (!(s->top_p > 0 && s->top_p <= 1))
        return gb__fail(GB_ERR_ARG, "decode: top_p must be in (0, 1], got %g", (double)s->top_p);
    if (!(s->repetition_penalty > 0) || !isfinite(s->repetition_penalty))
        return gb__fail(GB_ERR_ARG, "decode: repetition_penalty must be a finite number > 0, got %g",
                        (double)s->repetition_penalty);
    return GB_OK;
}

/* ---- the loop --------------------------------------------------------------- */

gb_status gb_decode(gb_forward_fn forward, void *ctx, gb_tensor *prompt, gb_tensor *mask, gb_tensor *pos,
                    const gb_decode_opts *opts, gb_tensor **out) {
    *out = NULL;
    gb_status st = gb__lm_check_sampling(opts);
    if (st != GB_OK) return st;
    if (gb_tensor_ndim(prompt) != 2 || (mask && (gb_tensor_ndim(mask) != 2 || gb_tensor_dim(mask, 0) != gb_tensor_dim(prompt, 0) ||
                                                 gb_tensor_dim(mask, 1) != gb_tensor_dim(prompt, 1))))
        return gb__fail(GB_ERR_SHAPE, "decode: expected prompt ids [B, T] and a mask of the same shape");
    int64_t T = gb_tensor_dim(prompt, 1);
    if (opts->max_length > 0 && opts->max_new_tokens > 0 && T >= opts->max_length)
        return gb__fail(GB_ERR_INDEX, "decode: the prompt's %lld tokens %s the model's %lld positions (max_length): no "
                        "position is left for a new token", (long long)T, T > opts->max_length ? "exceed" : "fill",
                        (long long)opts->max_length);
    gb_tensor *p64 = gb_to_dtype(prompt, GB_DTYPE_I64), *seq = p64 ? gb_contiguous(p64) : NULL;
    gb_tensor_free(p64);
    gb_tensor *m = mask ? gb_tensor_ref(mask) : NULL;
    gb_tensor *p = pos ? gb_tensor_ref(pos) : mask ? gb__lm_positions_from_mask(mask) : NULL;
    int64_t B = gb_tensor_dim(prompt, 0);
    bool *done = gb__calloc((size_t)B + 1, sizeof *done, "decode"); /* rows that produced a stop token */
    st = seq && (!mask || p) && done ? GB_OK : gb_last_status();
    gb_rng rng = gb_rng_seed(opts->sampling.seed);
    gb_tensor *ids = seq ? gb_tensor_ref(seq) : NULL; /* what the next pass feeds */
    if (opts->nonfinite_steps) *opts->nonfinite_steps = 0;
    for (int k = 0; st == GB_OK && k < opts->max_new_tokens; k++) {
        if (opts->max_length > 0 && gb_tensor_dim(seq, 1) >= opts->max_length) break; /* no position left */
        gb_tensor *logits = NULL;
        st = forward(ctx, k, ids, m, p, &logits);
        gb_tensor_free(ids);
        ids = NULL;
        if (st != GB_OK) break;
        if (opts->nonfinite_steps && gb__lm_last_nonfinite(logits)) ++*opts->nonfinite_steps;
        gb_tensor *next = gb__lm_choose(logits, seq, &opts->sampling, &rng); /* [B, 1] */
        gb_tensor_free(logits);
        bool all_done = next != NULL && opts->is_stop;
        int64_t *id = next ? gb_tensor_data(next) : NULL;
        for (int64_t b = 0; opts->is_stop && id && b < B; b++) { /* finished rows are padded, as HF's generate */
            if (done[b]) id[b] = opts->pad_id;
            else done[b] = opts->is_stop(id[b], opts->stop_ctx);
            all_done &= done[b];
        }
        gb_tensor *grown = next ? gb_cat(2, (gb_tensor *[]){seq, next}, 1) : NULL;
        if (!grown) {
            gb_tensor_free(next);
            st = gb_last_status();
            break;
        }
        gb_tensor_free(seq);
        seq = grown;
        if (opts->on_step) st = opts->on_step(k, id, B, opts->step_ctx);
        if (st != GB_OK || all_done || k + 1 == opts->max_new_tokens) { /* the last token needs no pass */
            gb_tensor_free(next);
            break;
        }
        if (m) {
            gb_tensor *m2 = gb__lm_grow_mask(m);
            gb_tensor_free(m);
            if (!(m = m2)) st = gb_last_status();
        }
        if (p && st == GB_OK) {
            gb_tensor *p2 = gb__lm_next_positions(p);
            gb_tensor_free(p);
            if (!(p = p2)) st = gb_last_status();
        }
        ids = next;
    }
    gb_tensor_free(ids), gb_tensor_free(m), gb_tensor_free(p);
    free(done);
    if (st == GB_OK || st == GB_STOPPED) *out = seq;
    else gb_tensor_free(seq);
    return st;
}

/* ---- plain generation ---------------------------------------------------------- */

typedef struct gb__lm_plain {
    gb_run *run;
    gb_module *net;
} gb__lm_plain;

static gb_status gb__lm_plain_forward(void *ctx, int step, gb_tensor *ids, gb_tensor *mask, gb_tensor *pos,
                                   gb_tensor **logits) {
    (void)step;
    gb__lm_plain *pl = ctx;
    gb_run_set_attention_mask(pl->run, mask);
    gb_run_set_position_ids(pl->run, pos);
    return gb_module_run(pl->net, pl->run, ids, logits);
}

/* Roughly what generating holds at its peak (f32 throughout): the prompt
 * pass's attention scores [B, heads, T, T] (one layer at a time), its logits
 * [B, T, vocab], every layer's KV cache over the whole sequence of S, and
 * the ids and mask [B, S] (int64, twice while a step appends to them). A
 * traced generation adds nothing that grows with the steps: its slots are
 * per node, and a value saved from every step (.all()) holds the last
 * step's. In double: the figures from untrusted sizes may overflow 64 bits. */
static double gb__lm_generate_bytes(const gb_model *m, double B, double T, double S) {
    const gb_gpt2_config *g = gb_model_gpt2_config(m);
    const gb_llama_config *l = gb_model_llama_config(m);
    double layers = g ? g->n_layer : l ? l->num_hidden_layers : 0;
    double heads = g ? g->n_head : l ? l->num_attention_heads : 0;
    double kv = g ? g->n_embd : l ? l->num_key_value_heads * (l->head_dim ? l->head_dim : l->hidden_size / l->num_attention_heads) : 0;
    return 4 * (B * heads * T * T + B * T * (double)gb_model_vocab_size(m) + 2 * layers * B * S * kv) + 2 * 2 * 8 * B * S;
}

gb_status gb__lm_check_generate(const gb_model *m, int64_t B, int64_t T, const gb_decode_opts *o) {
    if (!m || o->max_new_tokens < 0) return GB_OK;
    int64_t S = T + o->max_new_tokens;
    if (o->max_length > 0 && S > o->max_length) S = T > o->max_length ? T : o->max_length;
    double need = gb__lm_generate_bytes(m, (double)B, (double)T, (double)S);
    uint64_t avail = gb__mem_available(), space = gb__address_space_left();
    if (space < avail) avail = space;
    if (need <= (double)avail) return GB_OK;
    return gb__fail(GB_ERR_ALLOC, "generate: %lld prompt%s of %lld tokens and %d new tokens need about %.1f MiB "
                    "(attention scores, logits and KV cache), but %.1f MiB is available%s; ask for fewer new tokens%s",
                    (long long)B, B == 1 ? "" : "s", (long long)T, o->max_new_tokens, need / (1 << 20),
                    (double)avail / (1 << 20), space < UINT64_MAX && space == avail ? " under the address-space limit" : "",
                    B > 1 ? " or fewer prompts" : "");
}

gb_status gb_lm_generate(gb_lm *lm, gb_tensor *ids, gb_tensor *mask, const gb_decode_opts *opts, gb_tensor **out) {
    *out = NULL;
    gb_decode_opts o = opts ? *opts : gb_lm_decode_defaults(lm);
    gb_status st = gb_tensor_ndim(ids) == 2 /* sizes from the user, checked before they cost */
                       ? gb__lm_check_generate(gb_lm_model(lm), gb_tensor_dim(ids, 0), gb_tensor_dim(ids, 1), &o)
                       : GB_OK;
    if (st != GB_OK) return st;
    gb_run *run = gb_run_new();
    if (!run) return gb_last_status();
    gb_run_use_cache(run, true);
    gb_run_set_nan_check(run, o.nan_check);
    gb__lm_plain ctx = {run, gb_lm_module(lm)};
    gb_grad_mode gm = gb_no_grad_begin();
    st = gb_decode(gb__lm_plain_forward, &ctx, ids, mask, NULL, &o, out);
    gb_grad_mode_end(gm);
    gb_run_free(run);
    return st;
}
