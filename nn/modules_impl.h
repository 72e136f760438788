/* Private to nn/'s module files (layers.c, attention.c, gpt2.c, llama.c):
 * helpers for calling children, initialising parameters, printing like
 * Python, and the attention core shared by GPT-2 and Llama. */
#ifndef GB_MODULES_IMPL_H
#define GB_MODULES_IMPL_H

#include "arch.h"
#include "nn_impl.h"

/* ---- calling children --------------------------------------------------- */

/* Call child with the n tensors xs (borrowed) through gb_module_call, so it
 * emits events. On GB_OK, *out holds at least one tensor and out->v[0] is
 * non-NULL (an observer that replaced the output with nothing is an error
 * naming the child). Any other status is returned unchanged, with whatever
 * the child produced left in *out. */
gb_status gb__nn_call(gb_module *child, gb_run *run, int n, gb_tensor *const *xs, gb_values *out);
/* One step of a chain of modules: call child on cur->v[0] and the nextra
 * tensors extra (borrowed), then replace *cur by what the child returned,
 * whatever the status (a stopped run keeps the child's output). */
gb_status gb__nn_call_into(gb_module *child, gb_run *run, gb_values *cur, int nextra, gb_tensor *const *extra);
/* The status of a tensor op that just failed inside m's forward, its
 * message prefixed with m's label. */
gb_status gb__nn_op_failed(gb_module *m);
/* ---- building ----------------------------------------------------------- */

/* A module type's children, from one X-macro list X(SLOT, "name") in
 * Hugging Face's registration order (the order print(model) and
 * named_parameters() follow): GB__CHILDREN(LIST, COUNT, NAMES) declares the
 * enum of slots ending with COUNT and NAMES[COUNT]. A builder fills
 * kids[SLOT] and hands them to gb__nn_module_with; forwards call
 * m->children[SLOT]. */
#define GB__CHILD_SLOT(slot, name) slot,
#define GB__CHILD_NAME(slot, name) name,
#define GB__CHILDREN(LIST, COUNT, NAMES)                                                                               \
    enum { LIST(GB__CHILD_SLOT) COUNT };                                                                               \
    static const char *const NAMES[COUNT] = {LIST(GB__CHILD_NAME)}
/* The end of a builder: m with kids[0..n) added under names[0..n), in that
 * order. When m or a kid is NULL (a failed build, whose error stands) or
 * adding fails, m and every kid are freed and the result is NULL. */
gb_module *gb__nn_module_with(gb_module *m, int n, const char *const *names, gb_module *const *kids);
/* A ModuleList of n modules made by make(ctx), named "0", "1", ...; NULL
 * (and everything freed) when one fails. */
gb_module *gb__nn_module_repeat(int64_t n, gb_module *(*make)(const void *ctx), const void *ctx);
/* The pre-norm residual block of GPT2Block and LlamaDecoderLayer:
 * h + attn(ln1(h), extra...), then + mlp(ln2(.)). child[] gives the indices of
 * ln1, attn, ln2 and mlp among m's children. Returns (hidden_states,) plus
 * the attention's further outputs (key, value when a KV cache is in use). */
gb_status gb__nn_prenorm_block(gb_module *m, gb_run *run, gb_tensor *h, int nextra, gb_tensor *const *extra,
                            const int child[4], gb_values *out);
/* The children of GPT2LMHeadModel and LlamaForCausalLM, in order: the body
 * (named by the model: "transformer", "model") and lm_head. */
enum { GB__LM_BODY, GB__LM_HEAD, GB__LM_COUNT };
/* The forward of GPT2LMHeadModel and LlamaForCausalLM: the body, then
 * lm_head on its hidden state: (input_ids [B, T]) -> (logits [B, T, vocab]). */
gb_status gb__nn_causal_lm_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out);
/* GPT2LMHeadModel or LlamaForCausalLM: a module of type (whose settings
 * are the model's config, copied from config) with the body under
 * body_name and lm_head = Linear(hidden, vocab, bias=False), its weight
 * tied as tie says (NULL: untied). When body is NULL or this fails,
 * everything is freed, the error is prefixed with op, and the result is
 * NULL. */
gb_module *gb__nn_causal_lm(const gb__nn_module_type *type, const void *config, const char *body_name, gb_module *body,
                         int64_t hidden, int64_t vocab, const gb__nn_tie *tie, const char *op);
/* Move src into dst (dst is cleared first; src is left empty). */
void gb__nn_values_move(gb_values *dst, gb_values *src);
/* in->v[i] when present, else an error naming m ("expects (hidden_states, cos, sin)"). */
gb_tensor *gb__nn_input(gb_module *m, const gb_values *in, int i, const char *expected);
/* "transformer.h.0.attn (GPT2Attention)"; "<root> (Linear)" for a root. */
const char *gb__nn_module_label(const gb_module *m, char *buf, size_t size);
#define GB__LABEL(m) gb__nn_module_label((m), (char[320]){0}, 320)

/* Whether tensors a module makes itself (masks, rotary tables) must be
 * shape-only: meta mode is on, or the input they go with is meta. */
bool gb__nn_meta(const gb_tensor *like);
/* gb_empty that is shape-only when meta is true. */
gb_tensor *gb__nn_empty(int ndim, const int64_t *shape, gb_dtype dt, bool meta);

/* ---- parameters --------------------------------------------------------- */

/* Overwrite m's parameter in place (ties stay tied) with values from the
 * generator: uniform in [low, high), normal(mean, std), or a constant.
 * Shape-only parameters are left alone. */
void gb__nn_param_uniform(gb_module *m, const char *name, gb_rng *rng, float low, float high);
void gb__nn_param_normal(gb_module *m, const char *name, gb_rng *rng, float mean, float std);
void gb__nn_param_fill(gb_module *m, const char *name, float value);

/* Python's repr() of a float that was given as f32 (1e-05, 0.1, 1.0, 1e+16). */
char *gb__nn_py_float(char *buf, size_t size, float v);

/* ---- layer internals used by the models --------------------------------- */

/* Mark a Linear whose weight is tied to an embedding: its init leaves the
 * weight alone (Hugging Face ties after initialising, so the embedding's
 * values win). */
void gb__nn_linear_mark_tied(gb_module *linear);

/* ---- attention ---------------------------------------------------------- */

/* [B, T, heads*head_dim] -> [B, heads, T, head_dim] (a view when possible). */
gb_tensor *gb__nn_split_heads(gb_tensor *x, int64_t heads, int64_t head_dim);
/* [B, heads, T, head_dim] -> [B, T, heads*head_dim], contiguous. */
gb_tensor *gb__nn_merge_heads(gb_tensor *x);

/* With a KV cache in use: append the new keys/values [B, kv_heads, T, D] to
 * attn's cached ones and store the result; *k and *v are replaced by the
 * full keys/values [B, kv_heads, S, D] (S = past + T). Without a cache they
 * are left as they are. */
gb_status gb__nn_attn_cache(gb_run *run, gb_module *attn, gb_tensor **k, gb_tensor **v);

/* How the scores are scaled: GPT-2 divides by sqrt(head_dim) (a tensor in
 * Hugging Face's eager code), Llama multiplies by head_dim^-0.5. */
typedef enum gb__nn_attn_scale {
    GB__ATTN_SCALE_DIV_SQRT,
    GB__ATTN_SCALE_MUL_RSQRT,
} gb__nn_attn_scale;

/* softmax(q k^T * scale + mask) v for q [B, H, T, D] and k, v [B, H, S, D]
 * (H a multiple of k's heads: grouped-query attention repeats each key/value
 * head H/kv_heads times, as repeat_kv). The mask is causal (query i sits at
 * key index S - T + i), with a sliding window of window > 0 keys also hides
 * keys window or more places back (a query sees itself and the window - 1
 * keys before it, as Hugging Face's sliding_window does), and, when the run
 * has an attention mask [B, S], hides padded keys; hidden scores are set to float32's lowest value,
 * as Hugging Face's 4-D masks do, so a query that sees nothing attends
 * uniformly. The probabilities are emitted as point "attn_weights" of attn
 * and, when dropout is not NULL, passed through that module (an event).
 * *out gets [B, H, T, D]. */
gb_status gb__nn_attention(gb_module *attn, gb_run *run, gb_tensor *q, gb_tensor *k, gb_tensor *v, gb__nn_attn_scale scale,
                        int64_t window, gb_module *dropout, gb_tensor **out);

/* The rest of GPT2Attention's and LlamaAttention's forwards once the
 * queries, keys and values are split into heads, qkv [B, heads, T, D] (the
 * references are taken; a NULL among them means making it failed, and that
 * error is returned prefixed with attn's label): keys and values go through
 * the KV cache (gb__nn_attn_cache), then gb__nn_attention; the merged heads pass
 * through attn's children proj[0..nproj) in turn. *out gets
 * (attn_output,) or, with a KV cache, (attn_output, key, value), key and
 * value [B, kv_heads, S, D] (before repeat_kv). A child's stop or error is
 * returned with what it produced in *out. */
gb_status gb__nn_attn_finish(gb_module *attn, gb_run *run, gb_tensor *qkv[3], gb__nn_attn_scale scale, int64_t window,
                          gb_module *dropout, int nproj, const int *proj, gb_values *out);

/* ---- the Llama family (llama.c; mistral.c is a member) ----------------- */

/* The classes of a Llama-family model, by what follows the family's name
 * ("Llama" "ForCausalLM"). */
#define GB__LLAMA_CLASSES(X)                                                                                           \
    X(GB__LLAMA_LM, "ForCausalLM")                                                                                     \
    X(GB__LLAMA_MODEL, "Model")                                                                                        \
    X(GB__LLAMA_LAYER, "DecoderLayer")                                                                                 \
    X(GB__LLAMA_ATTN, "Attention")                                                                                     \
    X(GB__LLAMA_MLP, "MLP")                                                                                            \
    X(GB__LLAMA_NORM, "RMSNorm")                                                                                       \
    X(GB__LLAMA_ROTARY, "RotaryEmbedding")
enum { GB__LLAMA_CLASSES(GB__CHILD_SLOT) GB__LLAMA_NCLASSES };

/* A member of the family: Llama's modules, tree and arithmetic under the
 * member's class names (transformers' modular files derive Mistral's
 * classes from Llama's in the same way). */
typedef struct gb__nn_llama_family {
    const char *op;                      /* "llama_new": errors start with it */
    const char *cls[GB__LLAMA_NCLASSES]; /* "LlamaForCausalLM", ... */
} gb__nn_llama_family;

/* A member's model from a Llama config (checked and completed as
 * gb_llama_new does), with sliding-window attention over sliding_window
 * keys (0: none; see gb__nn_attention). */
gb_module *gb__nn_llama_family_new(const gb__nn_llama_family *f, const gb_llama_config *cfg, int64_t sliding_window);
/* LlamaConfig's fields of config.json (the sizes required, rope_scaling
 * llama3 or absent). */
void gb__nn_llama_read_config(gb__nn_config *c, gb_llama_config *l);
/* lm_head.weight is model.embed_tokens.weight when tied(cfg), for cfg a
 * config that begins with a gb_llama_config. */
extern const gb__nn_tie gb__nn_llama_tie;
bool gb__nn_llama_tied(const void *cfg);
/* The family's module paths (gb__nn_arch.parts): its members share the tree's names. */
extern const char *const gb__nn_llama_parts[GB_PART_COUNT];
/* What `glassbox info` prints of a Llama config, in order:
 * X(name, GB__FIELD kind, gb_llama_config field, printed when unset). */
#define GB__LLAMA_PRINTED(X)                                                                                           \
    X("vocab_size", INT, vocab_size, NULL)                                                                             \
    X("hidden_size", INT, hidden_size, NULL)                                                                           \
    X("intermediate_size", INT, intermediate_size, NULL)                                                               \
    X("num_hidden_layers", INT, num_hidden_layers, NULL)                                                               \
    X("num_attention_heads", INT, num_attention_heads, NULL)                                                           \
    X("num_key_value_heads", INT, num_key_value_heads, NULL)                                                           \
    X("head_dim", INT, head_dim, NULL)                                                                                 \
    X("rms_norm_eps", FLOAT, rms_norm_eps, NULL)                                                                       \
    X("rope_theta", DOUBLE, rope_theta, NULL)                                                                          \
    X("rope_scaling", STRING, rope_type, "none")                                                                       \
    X("max_position_embeddings", INT, max_position_embeddings, NULL)                                                   \
    X("tie_word_embeddings", BOOL, tie_word_embeddings, NULL)

/* Positions for a model forward over T new tokens of a batch of B: the run's
 * position ids ([B, T] or [1, T]) or arange(past, past + T) as [1, T] (i64),
 * past being the run's cache length. */
gb_tensor *gb__nn_positions(gb_module *model, gb_run *run, int64_t B, int64_t T);

/* Check token ids [B, T] (i64 or i32) given to model m. */
gb_status gb__nn_check_ids(gb_module *m, const gb_tensor *ids);

#endif
