/* Private to glassbox: module layout, module types, and what module
 * forwards use from a run (attention inputs, KV cache, named points). */
#ifndef GB_NN_IMPL_H
#define GB_NN_IMPL_H

#include <stddef.h>
#include <stdio.h>

#include "../tensor/base.h"
#include "nn.h"
#include "observer.h"

/* What a kind of module does. Each module points at its type (a vtable). */
typedef struct gb__nn_module_type {
    const char *name; /* PyTorch class name, printed by repr: "Linear" */
    /* Compute out from in. Call children through gb_module_call so they
     * emit events; return any non-GB_OK status of a child unchanged. */
    gb_status (*forward)(gb_module *m, gb_run *run, const gb_values *in, gb_values *out);
    /* PyTorch's extra_repr(), e.g. "in_features=5, out_features=10, bias=True";
     * NULL when empty. Writes at most size bytes. */
    void (*extra_repr)(const gb_module *m, char *buf, size_t size);
    /* reset_parameters() for m's own parameters; NULL if none. */
    void (*init)(gb_module *m, gb_rng *rng);
    /* Compute m's buffers (values derived from its settings, never loaded:
     * the rotary frequencies) into their storages; NULL if none. Called
     * when m is built, and by gb__nn_module_fill_buffers for a tree built in
     * meta mode. */
    void (*buffers)(gb_module *m);
    /* The module returns a tuple in Hugging Face (GPT2Block, LlamaDecoderLayer):
     * tracing then treats its output as a tuple, so "output[0]" is the
     * hidden state as in nnsight. Single-tensor modules leave it false. */
    bool returns_tuple;
    /* Bytes of the type's settings: a struct defined beside the type
     * (gb__nn_linear_settings: in_features, out_features, bias, ...), zeroed
     * when a module is made; 0 for none. */
    size_t settings;
} gb__nn_module_type;

typedef struct gb__nn_param {
    char *name;
    gb_tensor *t;
    bool buffer;     /* a buffer, not a parameter (not in named_parameters) */
} gb__nn_param;

struct gb_module {
    const gb__nn_module_type *type;
    /* The class name printed and reported: the type's, or the one a model
     * family gives it (Mistral's modules are Llama's under Mistral's names,
     * as transformers' modular files derive them). A static string. */
    const char *cls;
    char *name;
    char *path;
    gb_module *parent;
    gb_module *root;      /* the root of its tree: itself until attached */
    gb_module **children; /* stb_ds array */
    gb__nn_param *params;    /* stb_ds array, in registration order */
    int tree_index;       /* depth-first position under its root: where runs count its calls */
    int tree_end;         /* one past the last tree_index of m's subtree */
    int tree_size;        /* roots only: modules in the tree (numbered whenever it changes) */
    unsigned tree_gen;    /* roots only: bumped whenever the tree changes shape */
    _Alignas(max_align_t) unsigned char settings[]; /* the type's settings, type->settings bytes (GB__SETTINGS) */
};

/* m's settings as the struct T its type defines: GB__SETTINGS(m, gb__nn_linear_settings)->bias. */
#define GB__SETTINGS(m, T) ((T *)(void *)(m)->settings)

/* Make a module of a type with no parameters and no children. */
gb_module *gb__nn_module_new(const gb__nn_module_type *type);
/* Add a child under name (taking ownership; on failure the child is freed). */
gb_status gb__nn_module_add_child(gb_module *m, const char *name, gb_module *child);
/* Register a zero-filled f32 parameter (or buffer) of the given shape;
 * shape-only in meta mode (how the loader builds a tree). */
gb_status gb__nn_module_add_param(gb_module *m, const char *name, int ndim, const int64_t *shape, bool buffer);
/* A [rows, cols] parameter kept transposed in memory: a view of a
 * [cols, rows] storage (Conv1D's weight, so that its products read it as
 * nn.Linear's; gb_module_set_param copies float32 values into it). */
gb_status gb__nn_module_add_param_t(gb_module *m, const char *name, int64_t rows, int64_t cols);
/* Build helper: frees m and returns NULL when st is not GB_OK. */
gb_module *gb__nn_module_done(gb_module *m, gb_status st);
/* Give m the class name cls (a static string); returns m (NULL stays NULL). */
gb_module *gb__nn_module_class(gb_module *m, const char *cls);

/* ---- run state used by forwards ----------------------------------------- */

gb_tensor *gb__nn_run_attention_mask(const gb_run *run); /* borrowed, may be NULL */
gb_tensor *gb__nn_run_position_ids(const gb_run *run);   /* borrowed, may be NULL */
bool gb__nn_run_use_cache(const gb_run *run);
/* The cached keys and values of an attention module (borrowed; NULL when
 * empty), the buffers with room to append that they are views of (NULL
 * when they are not; kbuf may be NULL to not ask), and their replacement
 * (the run takes the references). */
void gb__nn_run_cache_get(gb_run *run, const gb_module *attn, gb_tensor **k, gb_tensor **v, gb_tensor **kbuf,
                       gb_tensor **vbuf);
gb_status gb__nn_run_cache_set(gb_run *run, const gb_module *attn, gb_tensor *k, gb_tensor *v, gb_tensor *kbuf,
                       gb_tensor *vbuf);
/* Called by the whole-model forward after a pass over T new tokens. */
void gb__nn_run_cache_advance(gb_run *run, int64_t t);

/* A named intermediate value inside m's forward (attention weights, ...).
 * Emits GB_EVENT_POINT "<m's path>.<name>" with m's call index: a forward
 * emits each of its points at most once per call. The observer may replace
 * *t (the old reference is released). */
gb_status gb__nn_point(gb_run *run, gb_module *m, const char *name, gb_tensor **t);
/* Whether an observer may look at m's points (it wants point events) or,
 * when `calls`, at the calls made within m's forward (any observer): a
 * forward may skip computing a point nobody sees. The NaN guard does not
 * count: it checks module outputs, and must not change the numbers. */
bool gb__nn_run_watches(const gb_run *run, const gb_module *m, bool calls);
/* Whether a call of m in this run would be seen by nothing (no event of m
 * wanted, not even the observer's own marks; no NaN guard): a forward may
 * then compute m's result another way and count the call with
 * gb__nn_count_call, as gb_module_call would have. */
bool gb__nn_call_unseen(const gb_run *run, const gb_module *m);
gb_status gb__nn_count_call(gb_run *run, gb_module *m);
/* The outputs of bias-free nn.Linear siblings on one input x (Llama's q, k
 * and v projections; gate and up) as one product that packs x once
 * (gb__ts_linear_shared), their calls counted, when none of the calls is
 * seen and nothing records a gradient. *out all NULL (and GB_OK) when that
 * does not apply: the caller calls them one by one. */
gb_status gb__nn_linear_siblings(gb_run *run, int n, gb_module *const *lin, gb_tensor *x, gb_tensor **out);
/* Whether m is the SiLU activation module ("silu", "swish"). */
bool gb__nn_is_silu(const gb_module *m);

/* Out-of-line forwards reused by several module types. */
gb_status gb__nn_forward_sequential(gb_module *m, gb_run *run, const gb_values *in, gb_values *out);

#endif
