/* glassbox lm: a language model, i.e. a checkpoint with its tokenizer (nnsight's
 * LanguageModel): text to the [B, T] int64 ids a model takes, one padding
 * policy, and the one decoding loop that every generation goes through.
 *
 * Usage (compiled as a test, tests/test_header_examples.c):
 *
 *     gb_lm *lm = gb_lm_open("models/gpt2-facts", NULL);     // model + tokenizer.json beside it
 *     if (!lm) { fprintf(stderr, "%s\n", gb_last_error()); return 1; }
 *     gb_tensor *ids = NULL, *mask = NULL;
 *     const char *prompts[] = {"The Eiffel Tower is in the city of"};
 *     gb_decode_opts o = gb_lm_decode_defaults(lm);         // greedy, stops at EOS
 *     o.max_new_tokens = 3;
 *     gb_tensor *out = NULL;                                // [1, T + 3] int64
 *     char *text = NULL;
 *     if (gb_lm_encode(lm, 1, prompts, &ids, &mask) == GB_OK &&
 *         gb_lm_generate(lm, ids, mask, &o, &out) == GB_OK &&
 *         gb_lm_text(lm, out, 0, gb_tensor_dim(ids, 1), &text) == GB_OK)
 *         printf("%s\n", text);                             // " Paris. The"
 *     free(text);
 *     gb_tensor_free(out), gb_tensor_free(mask), gb_tensor_free(ids);
 *     gb_lm_free(lm);
 *
 * Token ids are int64 from the tokenizer to the model and back: a batch is
 * an i64 tensor [B, T] with an i64 attention mask [B, T] (1 = token, 0 =
 * padding). Padding is on the left, so every row ends at its last real
 * token and generation appends to all rows at once; the pad id is the
 * tokenizer's pad token, else its EOS, else 0 (gb_lm_pad_id).
 *
 * The decoding loop (gb_decode) runs a prompt pass, then one pass of one
 * token per row with the model's KV cache, so module call k is generation
 * step k; it chooses tokens greedily or by sampling (gb_sampling), pads rows
 * that produced a stop token and ends when every row has, or at
 * max_new_tokens, or at the model's last position. It calls the model
 * through a forward function: gb_lm_generate gives it a plain run; traced
 * generation (gb_trace_generate) gives it a trace's run, so interventions
 * apply at every step.
 *
 * Threads. One gb_lm may be shared by any number of threads:
 * gb_lm_generate, traces and executions on its model run at once (each
 * generation has its own run and KV cache); gb_lm_encode and gb_lm_text
 * take turns on the tokenizer's lock.
 */
#ifndef GB_LM_H
#define GB_LM_H

#include "../io/io.h"
#include "../trace/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gb_lm gb_lm;

/* Open a model (gb_model_open: a directory, a file or a Hub id) and the
 * tokenizer in its directory. A checkpoint without tokenizer files opens
 * too (it generates from ids; encoding and text fail with GB_ERR_NOT_FOUND);
 * a corrupt tokenizer is an error. opts may be NULL. */
gb_lm *gb_lm_open(const char *path, const gb_model_opts *opts);
void gb_lm_free(gb_lm *lm);
gb_model *gb_lm_model(const gb_lm *lm);         /* borrowed */
gb_module *gb_lm_module(const gb_lm *lm);       /* the model's root module, borrowed */
gb_tokenizer *gb_lm_tokenizer(const gb_lm *lm); /* borrowed; NULL when the model has none */
/* Use tok instead of the tokenizer found beside the model (lm takes it
 * over and frees it; NULL: none). The pad id follows the new tokenizer. */
void gb_lm_set_tokenizer(gb_lm *lm, gb_tokenizer *tok);
/* The id that pads shorter prompts and finished rows. */
int64_t gb_lm_pad_id(const gb_lm *lm);
/* Whether id ends a sequence (the model's EOS ids). */
bool gb_lm_is_eos(const gb_lm *lm, int64_t id);

/* n >= 1 prompts as ids [n, T] (left-padded to the longest) and the
 * attention mask [n, T]; special tokens (Llama's BOS) are added as the
 * tokenizer's post-processor says. */
gb_status gb_lm_encode(gb_lm *lm, int n, const char *const *texts, gb_tensor **ids, gb_tensor **mask);
/* Row `row` of ids [B, T] from position `from` on, as text (special tokens
 * and padding skipped; malloc'd, caller frees). */
gb_status gb_lm_text(gb_lm *lm, gb_tensor *ids, int64_t row, int64_t from, char **text);

/* ---- the decoding loop ---------------------------------------------------- */

/* How the next token is chosen, with Hugging Face's generate semantics and
 * order: repetition penalty, then temperature, top-k, top-p, then a draw
 * from the softmax (a gb_rng seeded with seed, one uniform per row per
 * step). temperature 0 is greedy (argmax after the penalty). */
typedef struct gb_sampling {
    float temperature;        /* 0: greedy */
    int top_k;                /* 0: no limit */
    float top_p;              /* 1: no limit */
    float repetition_penalty; /* 1: none; seen tokens' logits divided (> 0) or multiplied (< 0) by it */
    uint64_t seed;
} gb_sampling;

typedef struct gb_decode_opts {
    int max_new_tokens;
    gb_sampling sampling;
    /* Tokens that end a row (NULL: none); finished rows get pad_id. */
    bool (*is_stop)(int64_t id, void *ctx);
    void *stop_ctx;
    int64_t pad_id;
    /* Positions the model has (0: no limit): generation stops when the
     * sequence fills them. */
    int64_t max_length;
    /* Called after each step with the chosen ids [B] (may be NULL). A
     * status other than GB_OK ends generation with it. */
    gb_status (*on_step)(int step, const int64_t *ids, int64_t batch, void *ctx);
    void *step_ctx;
    /* gb_lm_generate: the NaN guard in its run (nn/nn.h,
     * gb_run_set_nan_check); a traced generation takes the trace's
     * (gb_trace_set_nan_check). */
    bool nan_check;
    /* If not NULL, set to the number of steps whose logits (at the last
     * position) held NaN or Inf in some row: the tokens chosen there mean
     * nothing, and the caller may say so (the library prints nothing). */
    int *nonfinite_steps;
} gb_decode_opts;

/* Greedy, 20 new tokens, no stop tokens, pad 0. */
gb_decode_opts gb_decode_defaults(void);

/* One pass of the model for the loop: ids [B, t] are the prompt (step 0) or
 * the tokens just chosen (t = 1), mask the attention mask over everything
 * so far ([B, T_so_far], or NULL), pos the position ids of ids (or NULL:
 * the model counts from its cache). *logits: [B, t, V], a new reference.
 * GB_STOPPED ends generation without an error. */
typedef gb_status (*gb_forward_fn)(void *ctx, int step, gb_tensor *ids, gb_tensor *mask, gb_tensor *pos,
                                   gb_tensor **logits);

/* The loop: prompt [B, T] i64, mask [B, T] or NULL, pos [B, T] or NULL
 * (with a mask and no positions, positions count real tokens, as Hugging
 * Face's generate does). *out: prompt and new tokens, [B, T + n] i64, also
 * when a forward stopped generation (GB_STOPPED is returned then). */
gb_status gb_decode(gb_forward_fn forward, void *ctx, gb_tensor *prompt, gb_tensor *mask, gb_tensor *pos,
                    const gb_decode_opts *opts, gb_tensor **out);

/* gb_decode_defaults with lm's EOS ids as stop tokens, its pad id and its
 * number of positions. */
gb_decode_opts gb_lm_decode_defaults(const gb_lm *lm);
/* gb_decode on a plain run of lm's model (no hooks). opts NULL:
 * gb_lm_decode_defaults(lm). */
gb_status gb_lm_generate(gb_lm *lm, gb_tensor *ids, gb_tensor *mask, const gb_decode_opts *opts, gb_tensor **out);

/* ---- generation with interventions ----------------------------------------- */

/* Generation in a trace (nnsight's model.generate): greedy, the prompt pass
 * then max_new_tokens - 1 more passes of one token each with a KV cache,
 * in the trace's own execution. Module call k is step k:
 * gb_output_call(tr, path, k) (a statement's .next()) reads or edits step
 * k, gb_output_all every step, plain getters the prompt pass. With an
 * attention mask and no position ids, positions come from the mask, as in
 * Hugging Face's generate. A stop ends generation, and so do the trace's
 * stop tokens (gb_trace_set_stop_tokens; finished rows get the trace's pad
 * id). The ids are read with gb_trace_generated. Scans first when the
 * trace validates. */
gb_status gb_trace_generate(gb_trace *tr, int max_new_tokens);
/* The same, sampling (nnsight's model.generate(..., do_sample=True,
 * temperature=...)): s NULL or temperature 0 is greedy; a seed repeats its
 * ids. Interventions apply per step as in gb_trace_generate. */
gb_status gb_trace_sample(gb_trace *tr, int max_new_tokens, const gb_sampling *s);
/* A scan of gb_trace_generate: the prompt pass and max_new_tokens - 1
 * passes of one token, on shapes only, so values of every generation step
 * (.next(), .all()) get their shapes (gb_val_shape) and every
 * intervention is checked at its step. The tokens fed are placeholders. */
gb_status gb_trace_scan_generate(gb_trace *tr, int max_new_tokens);
/* The same in an execution, on input (NULL: the trace's). */
gb_status gb_exec_scan_generate(gb_exec *ex, gb_tensor *input, int max_new_tokens);
/* The same in an execution (gb_exec_new), on input or the trace's. */
gb_status gb_exec_generate(gb_exec *ex, gb_tensor *input, int max_new_tokens);
/* The same with every decoding option (sampling, stop tokens, pad id,
 * max_length, a per-step callback) given by opts. */
gb_status gb_exec_decode(gb_exec *ex, gb_tensor *input, const gb_decode_opts *opts);

#ifdef __cplusplus
}
#endif

#endif
