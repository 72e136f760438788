/* Private to glassbox: the contract between nn/ and io/'s model loader.
 *
 * An architecture describes itself in one descriptor (gb__nn_arch) defined in
 * its own file beside its modules (nn/gpt2.c, nn/llama.c, nn/mistral.c):
 * how it reads config.json, how it builds its module tree, which other
 * names its parameters may have in a checkpoint, which stored buffers are
 * not parameters, which weight is tied, and which config fields
 * `glassbox info` prints. io/model.c keeps the table of descriptors, finds
 * the files, reads the JSON and the tensors, and hands config.json to the
 * descriptor through gb__nn_config's one callback, so nn/ depends neither on
 * io/ nor on cJSON. */
#ifndef GB_NN_ARCH_H
#define GB_NN_ARCH_H

#include <stddef.h>

#include "nn.h"

/* ---- reading config.json ------------------------------------------------ */

typedef enum gb__nn_cfg_kind {
    GB__CFG_ABSENT,
    GB__CFG_NULL,
    GB__CFG_INT,    /* a number that is an exact integer */
    GB__CFG_NUMBER, /* any other number */
    GB__CFG_BOOL,
    GB__CFG_STRING,
    GB__CFG_OBJECT,
    GB__CFG_OTHER, /* an array */
} gb__nn_cfg_kind;

/* One member of a config.json object. */
typedef struct gb__nn_cfg_value {
    gb__nn_cfg_kind kind;
    long long i;     /* INT */
    double num;      /* INT and NUMBER */
    bool b;          /* BOOL */
    const char *s;   /* STRING, borrowed from the reader */
    const void *obj; /* OBJECT: read it with a gb__nn_config on obj */
} gb__nn_cfg_value;

/* A reader of one object of config.json. */
typedef struct gb__nn_config {
    /* The member key of obj; ABSENT when obj is NULL or not an object.
     * Supplied by io/model.c over its JSON. */
    gb__nn_cfg_value (*get)(const void *obj, const char *key);
    const void *obj;
    const char *path; /* config.json's path, for messages */
    gb_status st;     /* the first error: GB_OK until a read fails */
} gb__nn_config;

/* Typed reads. Absent or null gives the default; a value of another type
 * sets c->st and the thread's error once ("model: PATH: field 'KEY' is not
 * an integer") and gives the default. */
gb__nn_cfg_value gb__nn_cfg_get(const gb__nn_config *c, const char *key);
/* dflt NULL: the field is required ("model: PATH: missing field 'KEY'"). */
int64_t gb__nn_cfg_int(gb__nn_config *c, const char *key, const int64_t *dflt);
/* An int that counts something and must be at least 1 ("field 'KEY' is 0;
 * it must be at least 1"). */
int64_t gb__nn_cfg_count(gb__nn_config *c, const char *key, const int64_t *dflt);
double gb__nn_cfg_num(gb__nn_config *c, const char *key, double dflt);
bool gb__nn_cfg_bool(gb__nn_config *c, const char *key, bool dflt);
/* A string, or dflt when absent or not a string, copied into out. */
void gb__nn_cfg_str(const gb__nn_config *c, const char *key, const char *dflt, char *out, size_t size);

/* ---- the printed config ------------------------------------------------- */

typedef enum gb__nn_field_kind {
    GB__FIELD_INT,    /* int64_t: %lld */
    GB__FIELD_FLOAT,  /* float: %g */
    GB__FIELD_DOUBLE, /* double: %g */
    GB__FIELD_BOOL,   /* bool: true / false */
    GB__FIELD_STRING, /* char[]: as is */
} gb__nn_field_kind;

/* One line "name: value" of the printed config. */
typedef struct gb__nn_config_field {
    const char *name;
    gb__nn_field_kind kind;
    size_t offset; /* of the value in the config struct */
    const char *unset; /* printed instead of 0 or "" (NULL: print the value) */
} gb__nn_config_field;
/* The field of config struct T printed under its own name. */
#define GB__FIELD(T, KIND, field) {#field, GB__FIELD_##KIND, offsetof(T, field), NULL}

/* ---- descriptors -------------------------------------------------------- */

/* Parameter names a checkpoint may use instead: a parameter "<prefix>rest"
 * may be stored as "<stored>rest". */
typedef struct gb__nn_alias {
    const char *prefix, *stored;
} gb__nn_alias;

/* A tied weight: parameter `param` is parameter `source` (full dotted
 * paths), as Hugging Face's tie_weights makes lm_head use the embeddings. */
typedef struct gb__nn_tie {
    const char *param, *source;
} gb__nn_tie;

/* Which public config struct an architecture's config begins with
 * (gb_model_gpt2_config and gb_model_llama_config return it). */
typedef enum gb__nn_arch_config {
    GB__ARCH_CONFIG_GPT2,
    GB__ARCH_CONFIG_LLAMA,
} gb__nn_arch_config;

typedef struct gb__nn_arch {
    const char *model_type; /* config.json's "model_type": "gpt2" */
    size_t config_size;     /* bytes of the config struct */
    /* Read config.json into cfg (config_size zeroed bytes); errors go to
     * c->st. */
    void (*read)(gb__nn_config *c, void *cfg);
    /* The module tree with zero parameters, or NULL with the error set.
     * The loader calls it in meta mode: parameters and buffers are then
     * shape-only (no data), the weights come from the checkpoint and the
     * buffers from gb__nn_module_fill_buffers. */
    gb_module *(*build)(const void *cfg);
    /* The list of layers: the path of the ModuleList ("model.layers"), the
     * config field of its length ("num_hidden_layers") and that field's
     * offset (int64_t) in cfg. The loader checks the length against the
     * layers the checkpoint holds before building: the tree grows with it. */
    const char *layers, *layers_field;
    size_t layers_at;
    /* Other stored names of parameters, ending with {NULL}; or NULL. */
    const gb__nn_alias *aliases;
    /* Suffixes of stored tensors that are buffers, not parameters
     * (non-persistent ones that older files carry), ending with NULL. */
    const char *const *ignored;
    /* The tied weight, or NULL; tied when tied(cfg) says so (NULL: always). */
    const gb__nn_tie *tie;
    bool (*tied)(const void *cfg);
    /* What `glassbox info` prints after "model_type: ...", in order. */
    const gb__nn_config_field *fields;
    int nfields;
    gb__nn_arch_config public_config;
    /* Offsets of the int64_t vocabulary size and maximum positions in cfg. */
    size_t vocab_at, positions_at;
    /* Module paths of the parts tools name (gb_part), GB_PART_COUNT of them. */
    const char *const *parts;
} gb__nn_arch;

/* Give each shape-only buffer of m's tree (built in meta mode) a storage
 * and its values; GB_ERR_ALLOC. */
gb_status gb__nn_module_fill_buffers(gb_module *m);
/* Make parameter t->param of root's tree the tensor of t->source (a Linear
 * whose weight that is leaves it alone at init). GB_ERR_NOT_FOUND naming
 * the path when either is missing. */
gb_status gb__nn_tie_apply(gb_module *root, const gb__nn_tie *t);
/* "model_type: TYPE\n" and one "name: value\n" line per field of a's
 * printed config; malloc'd, NULL with GB_ERR_ALLOC. */
char *gb__nn_arch_config_str(const gb__nn_arch *a, const void *cfg);

#endif
