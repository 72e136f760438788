/* glassbox nn: modules shaped exactly like PyTorch / Hugging Face modules,
 * and the events they emit while they run.
 *
 * Usage (compiled as a test, tests/test_header_examples.c):
 *
 *     gb_module *net = gb_sequential(2, (const char *[]){"layer1", "layer2"},
 *                                    (gb_module *[]){gb_nn_linear(5, 10, true), gb_nn_linear(10, 2, true)});
 *     gb_module_init(net, 0);                           // PyTorch's default init, seeded
 *     char *text = gb_module_repr(net);                 // exactly print(net)
 *     free(text);
 *     gb_tensor *x = gb_ones(2, (int64_t[]){1, 5}, GB_DTYPE_F32), *y = NULL;
 *     if (gb_module_run(net, NULL, x, &y) != GB_OK) fprintf(stderr, "%s\n", gb_last_error());
 *     gb_module *l1 = gb_module_find(net, "layer1");   // borrowed; NULL + message if unknown
 *     gb_tensor_free(y); gb_tensor_free(x);
 *     gb_module_free(net);
 *
 * Modules. A module has a name (its attribute name in the parent), a type
 * name ("Linear"), named parameters and buffers, ordered children and a
 * forward function. Paths are Hugging Face's dotted names
 * ("transformer.h.11.mlp.c_fc", "model.layers.0.self_attn.q_proj"); list
 * indices may be negative ("transformer.h.-1" is the last block).
 *
 * Ownership. Builders return a new module tree; gb_sequential and friends
 * take ownership of the children passed in (also on failure). Free only the
 * root, with gb_module_free. Modules, parameters and buffers returned by
 * accessors are borrowed from the tree.
 *
 * Values. Modules take and return tuples of tensors (gb_values), like
 * Hugging Face modules that return tuples: a GPT-2 or Llama block returns
 * (hidden_states,) and, when a KV cache is in use, (hidden_states, key,
 * value) — so "h.-1.output[0]" is the hidden state, as in nnsight.
 *
 * Events. While a module runs under a gb_run that has an observer, it emits
 * GB_EVENT_INPUT before its forward (the observer may replace the inputs, or
 * supply the output and skip the forward), GB_EVENT_OUTPUT after it (the
 * observer may replace the outputs, or stop the run), and GB_EVENT_POINT for
 * named intermediate values inside the forward (e.g. "attn_weights"). With no
 * observer the cost is one branch per module call. Gradient events are built
 * on these by the hooks layer (hooks/hooks.h).
 *
 * Threads. A built module tree (a loaded model) may be run by any number of
 * threads at once, each with its own gb_run (call counters, KV cache,
 * observer): a run reads the tree and its parameters and writes nothing
 * in them. Building a tree, setting or tying parameters, gb_module_init and
 * gb_module_requires_grad_ write it: do them before sharing it. A gb_run is
 * used by one thread at a time.
 */
#ifndef GB_NN_H
#define GB_NN_H

#include "../autograd/autograd.h"
#include "../tensor/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- values ------------------------------------------------------------- */

#define GB_MAX_VALUES 8
/* A tuple of tensors; holds one reference to each non-NULL entry. */
typedef struct gb_values {
    int n;
    gb_tensor *v[GB_MAX_VALUES];
} gb_values;

/* Release every entry and set n = 0. */
void gb_values_clear(gb_values *vs);
/* Append a tensor, taking over the caller's reference (fails when full). */
gb_status gb_values_push(gb_values *vs, gb_tensor *t);
/* Replace entry i, taking over the caller's reference to t. */
void gb_values_set(gb_values *vs, int i, gb_tensor *t);

/* ---- modules ------------------------------------------------------------ */

typedef struct gb_module gb_module;
typedef struct gb_run gb_run;

void gb_module_free(gb_module *root);

const char *gb_module_name(const gb_module *m); /* "c_fc"; "" for a root */
const char *gb_module_path(const gb_module *m); /* "transformer.h.0.mlp.c_fc"; "" for a root */
const char *gb_module_type(const gb_module *m); /* "Conv1D" */
gb_module *gb_module_parent(const gb_module *m);
/* Whether m returns a tuple in Hugging Face (GPT2Block, LlamaDecoderLayer
 * return (hidden_states, ...)): its output is indexed with [0]. */
bool gb_module_returns_tuple(const gb_module *m);
int gb_module_num_children(const gb_module *m);
gb_module *gb_module_child(const gb_module *m, int i);
/* The module at a dotted path below m ("" is m itself). Unknown paths fail
 * with GB_ERR_NOT_FOUND and a message listing the nearest valid names; list
 * indices out of range fail with GB_ERR_INDEX. */
gb_module *gb_module_find(gb_module *m, const char *path);
/* print(model) exactly as PyTorch, including ModuleList runs of identical
 * blocks collapsed as "(0-11): 12 x GPT2Block(". Caller frees. */
char *gb_module_repr(const gb_module *m);

/* Parameters and buffers of m itself (not its children), by local name. */
int gb_module_num_params(const gb_module *m);
const char *gb_module_param_name(const gb_module *m, int i);
gb_tensor *gb_module_param(const gb_module *m, const char *name); /* borrowed, NULL if none */
/* Replace a parameter's tensor (same shape; the module takes a new reference).
 * A parameter kept transposed in memory (Conv1D's weight: a view of an
 * [nf, nx] storage) keeps its layout: float32 values are copied into a new
 * tensor of that layout rather than adopted; f16/bf16 ones are adopted.
 * Fails with GB_ERR_SHAPE naming the parameter path and both shapes. */
gb_status gb_module_set_param(gb_module *m, const char *name, gb_tensor *t);
/* Make two parameters one tensor (Hugging Face's tied embeddings). */
gb_status gb_module_tie_param(gb_module *m, const char *name, gb_module *src, const char *src_name);

/* Every parameter below m with its full dotted name ("layer1.weight"), in
 * PyTorch's named_parameters() order (tied parameters once). Returns the
 * count; *names and *params are malloc'd arrays (names point into the tree)
 * that the caller frees with free(). */
int gb_module_parameters(gb_module *m, const char ***names, gb_tensor ***params);
int64_t gb_module_num_parameters(gb_module *m); /* total elements, tied once */
/* requires_grad on every parameter below m (nnsight models default to off). */
gb_status gb_module_requires_grad_(gb_module *m, bool on);
/* Re-initialise every parameter below m as PyTorch's reset_parameters()
 * would, from a seeded glassbox generator (values differ from PyTorch's RNG). */
void gb_module_init(gb_module *m, uint64_t seed);

/* ---- building blocks ---------------------------------------------------- */

/* Containers (take ownership of children; names are copied). */
gb_module *gb_sequential(int n, const char *const *names, gb_module *const *children);
gb_module *gb_module_list(int n, gb_module *const *children);

gb_module *gb_nn_linear(int64_t in_features, int64_t out_features, bool bias);
/* Hugging Face's Conv1D: a linear layer whose weight is stored [nx, nf]. */
gb_module *gb_nn_conv1d(int64_t nf, int64_t nx);
gb_module *gb_nn_embedding(int64_t num_embeddings, int64_t embedding_dim);
gb_module *gb_nn_layer_norm(int64_t n, float eps, bool elementwise_affine);
/* Hugging Face LlamaRMSNorm (computed in f32). */
gb_module *gb_nn_rms_norm(int64_t n, float eps);
gb_module *gb_nn_dropout(float p); /* identity: glassbox runs modules in eval mode */

/* Activations, by Hugging Face's ACT2FN names: "gelu" (GELUActivation),
 * "gelu_new" (NewGELUActivation), "silu"/"swish" (SiLU), "relu" (ReLU).
 * Unknown names fail with GB_ERR_UNSUPPORTED. */
gb_module *gb_nn_activation(const char *hf_name);

/* ---- transformer models ------------------------------------------------- */

typedef struct gb_gpt2_config {
    int64_t vocab_size, n_positions, n_embd, n_layer, n_head, n_inner; /* n_inner 0 = 4*n_embd */
    float layer_norm_epsilon;
    char activation_function[32]; /* "gelu_new" */
    float attn_pdrop, embd_pdrop, resid_pdrop; /* only printed: eval mode */
} gb_gpt2_config;

typedef struct gb_llama_config {
    int64_t vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, head_dim, max_position_embeddings; /* head_dim 0 = hidden/heads */
    float rms_norm_eps;
    double rope_theta;
    bool tie_word_embeddings, attention_bias, mlp_bias;
    char hidden_act[32]; /* "silu" */
    /* rope_scaling: type "" (none) or "llama3" */
    char rope_type[16];
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_original_max_position_embeddings;
} gb_llama_config;

/* GPT2LMHeadModel / LlamaForCausalLM with zero parameters (load or init them).
 * Trees and parameter names match Hugging Face transformers (>= 4.48). */
gb_module *gb_gpt2_new(const gb_gpt2_config *cfg);
gb_module *gb_llama_new(const gb_llama_config *cfg);

/* The parts of a language model that tools working on any architecture
 * name (the logit lens, activation patching, attention maps), as module
 * paths; each architecture's descriptor gives its own (gb_model_part).
 * ATTN, MLP and ATTN_WEIGHTS are relative to a block: the block's path, a
 * dot, then the part ("transformer.h.3" "." "attn"). */
#define GB_PART_LIST(X)                                                                          \
    X(GB_PART_EMBED, "embed")               /* transformer.wte, model.embed_tokens */           \
    X(GB_PART_LAYERS, "layers")             /* the blocks: transformer.h, model.layers */       \
    X(GB_PART_ATTN, "attn")                 /* in a block: attn, self_attn */                   \
    X(GB_PART_MLP, "mlp")                   /* in a block: mlp */                               \
    X(GB_PART_ATTN_WEIGHTS, "attn_weights") /* in a block: the softmaxed pattern [B, H, T, S] */ \
    X(GB_PART_NORM, "norm")                 /* the final norm: transformer.ln_f, model.norm */  \
    X(GB_PART_UNEMBED, "unembed")           /* the unembedding: lm_head */

typedef enum gb_part {
#define GB__X(e, n) e,
    GB_PART_LIST(GB__X)
#undef GB__X
    GB_PART_COUNT
} gb_part;

/* ---- running ------------------------------------------------------------ */

/* Event kinds (see the file comment). Observers may number kinds of their
 * own from GB_EVENT_COUNT up (hooks/hooks.h's gradient events). */
#define GB_EVENT_LIST(X)                                                   \
    X(GB_EVENT_INPUT, "input")                                             \
    X(GB_EVENT_OUTPUT, "output")                                           \
    X(GB_EVENT_POINT, "point")

typedef enum gb_event_kind {
#define GB__X(e, n) e,
    GB_EVENT_LIST(GB__X)
#undef GB__X
    GB_EVENT_COUNT
} gb_event_kind;
/* The named points of modules' forwards (GB_EVENT_POINT, path
 * "<module path>.<name>"): an attention module's scores [B, H, T, S] after
 * scaling and masking, before softmax, and its weights after softmax (what
 * Hugging Face returns as attentions). Replacing one changes what follows. */
#define GB_POINT_ATTN_SCORES "attn_scores"
#define GB_POINT_ATTN_WEIGHTS "attn_weights"
#define GB_POINT_NAMES {GB_POINT_ATTN_SCORES, GB_POINT_ATTN_WEIGHTS}

/* "input", "output", "point"; "unknown" for any other value. */
const char *gb_event_name(gb_event_kind k);

typedef struct gb_event {
    gb_event_kind kind;
    gb_module *module;
    const char *path;   /* module path, or "<module path>.<point>" for points */
    int call;           /* n-th call of this module (or point) in this run, from 0 */
    gb_values *values;  /* inputs / outputs / the point's value; replaceable in place */
    /* GB_EVENT_INPUT only: put the module's output here and set skip to
     * run nothing (the module's forward and its children's events). */
    gb_values *output;
    bool skip;
} gb_event;

/* Return GB_OK to continue, GB_STOPPED to end the run after this event, or
 * an error (which ends the run with that error). */
typedef gb_status (*gb_observer_fn)(gb_event *ev, void *ctx);

/* Per-forward state: call counters, observer, attention inputs, KV cache.
 * One run may be used for several forward passes (generation): call
 * counters keep counting until gb_run_reset_calls. */
gb_run *gb_run_new(void);
void gb_run_free(gb_run *run);
void gb_run_set_observer(gb_run *run, gb_observer_fn fn, void *ctx);
void gb_run_reset_calls(gb_run *run);
/* [B, T] mask, 1 = attend, 0 = padding (Hugging Face's attention_mask), and
 * [B, T] position ids (i64). NULL: no padding, positions from the cache
 * length. The run takes new references. */
void gb_run_set_attention_mask(gb_run *run, gb_tensor *mask);
void gb_run_set_position_ids(gb_run *run, gb_tensor *pos);
/* Keep keys and values for generation: later forwards of the same run feed
 * only the new tokens. */
void gb_run_use_cache(gb_run *run, bool on);
int64_t gb_run_cache_length(const gb_run *run);
/* The NaN guard: after each module call, look at its outputs (f32 values)
 * and fail with GB_ERR_NONFINITE at the first module whose output holds a
 * NaN or an infinity, naming the module's path and class, its call index
 * (the generation step in a run of several passes), the output element and
 * the position of the first such value, and how many there are. Modules
 * finish inner first, so the module named is the innermost whose result
 * went bad (a norm over a negative eps, a weight holding NaN). The check
 * reads every output once: a forward costs a little more. Off by default. */
void gb_run_set_nan_check(gb_run *run, bool on);

/* Call a module (with events). out receives new references. Returns GB_OK,
 * GB_STOPPED (not an error: an observer ended the run; everything computed
 * so far is valid) or an error. */
gb_status gb_module_call(gb_module *m, gb_run *run, const gb_values *in, gb_values *out);
/* One tensor in, first output out; run may be NULL (a fresh run, no events). */
gb_status gb_module_run(gb_module *m, gb_run *run, gb_tensor *x, gb_tensor **y);

#ifdef __cplusplus
}
#endif

#endif
