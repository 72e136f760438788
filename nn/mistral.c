/* Mistral as Hugging Face transformers (>= 4.48) builds it:
 * MistralForCausalLM > MistralModel > MistralDecoderLayer >
 * MistralAttention / MistralMLP, with MistralRMSNorm and
 * MistralRotaryEmbedding. modular_mistral.py derives every class from
 * Llama's, so this is the Llama family (llama.c) under Mistral's class
 * names, with no biases and with sliding-window attention: a query sees
 * itself and the sliding_window - 1 keys before it. */
#include "modules_impl.h"

typedef struct gb__nn_mistral_config {
    gb_llama_config llama;  /* first: Llama's reads, prints and tie apply to it */
    int64_t sliding_window; /* 0: none (null in config.json) */
} gb__nn_mistral_config;

static const gb__nn_llama_family gb__nn_mistral = {
    .op = "mistral_new",
#define GB__X(slot, suffix) [slot] = "Mistral" suffix,
    .cls = {GB__LLAMA_CLASSES(GB__X)},
#undef GB__X
};

/* MistralConfig: Llama's fields without attention_bias and mlp_bias (its
 * projections never have biases), max_position_embeddings 4096 * 32 by
 * default, and sliding_window: 4096 when absent, none when null. */
static void gb__nn_mistral_read(gb__nn_config *c, void *cfg) {
    gb__nn_mistral_config *m = cfg;
    gb__nn_llama_read_config(c, &m->llama);
    m->llama.attention_bias = m->llama.mlp_bias = false;
    m->llama.max_position_embeddings = gb__nn_cfg_int(c, "max_position_embeddings", &(int64_t){4096 * 32});
    gb__nn_cfg_value w = gb__nn_cfg_get(c, "sliding_window");
    if (w.kind == GB__CFG_ABSENT) m->sliding_window = 4096;
    else if (w.kind == GB__CFG_INT && w.i > 0) m->sliding_window = w.i;
    else if (w.kind != GB__CFG_NULL && c->st == GB_OK)
        c->st = gb__fail(GB_ERR_FORMAT, "model: %s: field 'sliding_window' must be a positive integer or null",
                         c->path);
}

static gb_module *gb__nn_mistral_new_from(const void *cfg) {
    const gb__nn_mistral_config *m = cfg;
    return gb__nn_llama_family_new(&gb__nn_mistral, &m->llama, m->sliding_window);
}

static const gb__nn_config_field gb__nn_mistral_fields[] = {
#define GB__X(name, kind, field, unset) {name, GB__FIELD_##kind, offsetof(gb__nn_mistral_config, llama.field), unset},
    GB__LLAMA_PRINTED(GB__X)
#undef GB__X
    {"sliding_window", GB__FIELD_INT, offsetof(gb__nn_mistral_config, sliding_window), "none"},
};

const gb__nn_arch gb__nn_arch_mistral = {
    .model_type = "mistral",
    .config_size = sizeof(gb__nn_mistral_config),
    .read = gb__nn_mistral_read,
    .build = gb__nn_mistral_new_from,
    .layers = "model.layers",
    .layers_field = "num_hidden_layers",
    .layers_at = offsetof(gb__nn_mistral_config, llama.num_hidden_layers),
    .ignored = (const char *const[]){"rotary_emb.inv_freq", NULL},
    .tie = &gb__nn_llama_tie,
    .tied = gb__nn_llama_tied,
    .fields = gb__nn_mistral_fields,
    .nfields = sizeof gb__nn_mistral_fields / sizeof gb__nn_mistral_fields[0],
    .public_config = GB__ARCH_CONFIG_LLAMA,
    .vocab_at = offsetof(gb__nn_mistral_config, llama.vocab_size),
    .positions_at = offsetof(gb__nn_mistral_config, llama.max_position_embeddings),
    .parts = gb__nn_llama_parts,
};
