/* GPT-2 as Hugging Face transformers (>= 4.48) builds it: GPT2LMHeadModel
 * > GPT2Model > GPT2Block > GPT2Attention / GPT2MLP, with the same module
 * names, parameter names and shapes, printing and forward arithmetic
 * (modeling_gpt2.py's eager attention). */
#include "modules_impl.h"

/* Children, in Hugging Face's registration order (GB__CHILDREN). */
#define GB__GPT2_ATTN_CHILDREN(X)                                                                                      \
    X(GB__ATTN_C_ATTN, "c_attn")                                                                                       \
    X(GB__ATTN_C_PROJ, "c_proj")                                                                                       \
    X(GB__ATTN_DROPOUT, "attn_dropout")                                                                                \
    X(GB__ATTN_RESID_DROPOUT, "resid_dropout")
#define GB__GPT2_MLP_CHILDREN(X)                                                                                       \
    X(GB__MLP_C_FC, "c_fc")                                                                                            \
    X(GB__MLP_C_PROJ, "c_proj")                                                                                        \
    X(GB__MLP_ACT, "act")                                                                                              \
    X(GB__MLP_DROPOUT, "dropout")
#define GB__GPT2_BLOCK_CHILDREN(X)                                                                                     \
    X(GB__BLOCK_LN_1, "ln_1")                                                                                          \
    X(GB__BLOCK_ATTN, "attn")                                                                                          \
    X(GB__BLOCK_LN_2, "ln_2")                                                                                          \
    X(GB__BLOCK_MLP, "mlp")
#define GB__GPT2_MODEL_CHILDREN(X)                                                                                     \
    X(GB__GPT2_WTE, "wte")                                                                                             \
    X(GB__GPT2_WPE, "wpe")                                                                                             \
    X(GB__GPT2_DROP, "drop")                                                                                           \
    X(GB__GPT2_H, "h")                                                                                                 \
    X(GB__GPT2_LN_F, "ln_f")
GB__CHILDREN(GB__GPT2_ATTN_CHILDREN, GB__ATTN_COUNT, gb__nn_gpt2_attn_children);
GB__CHILDREN(GB__GPT2_MLP_CHILDREN, GB__MLP_COUNT, gb__nn_gpt2_mlp_children);
GB__CHILDREN(GB__GPT2_BLOCK_CHILDREN, GB__BLOCK_COUNT, gb__nn_gpt2_block_children);
GB__CHILDREN(GB__GPT2_MODEL_CHILDREN, GB__GPT2_COUNT, gb__nn_gpt2_model_children);

/* lm_head.weight is transformer.wte.weight (GPT-2 always ties them). */
static const gb__nn_tie gb__nn_gpt2_tie = {"lm_head.weight", "transformer.wte.weight"};

typedef struct gb__nn_gpt2_attn_settings {
    int64_t heads, head_dim;
} gb__nn_gpt2_attn_settings;

/* ---- GPT2Attention ------------------------------------------------------ */

/* (hidden_states [B, T, E]) -> (attn_output [B, T, E]) and, with a KV cache,
 * (attn_output, key, value), key/value [B, heads, S, head_dim]. */
static gb_status gb__nn_gpt2_attn_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    const gb__nn_gpt2_attn_settings *s = GB__SETTINGS(m, gb__nn_gpt2_attn_settings);
    int64_t H = s->heads, D = s->head_dim, E = H * D;
    gb_tensor *x = gb__nn_input(m, in, 0, "(hidden_states,)");
    if (!x) return gb_last_status();
    if (gb_tensor_ndim(x) != 3 || gb_tensor_dim(x, 2) != E)
        return gb__fail(GB_ERR_SHAPE, "%s: hidden_states must be [batch, seq_len, %lld], got shape %s", GB__LABEL(m),
                        (long long)E, GB__SHAPE_STR(x));
    gb_values r = {0};
    gb_status st = gb__nn_call(m->children[GB__ATTN_C_ATTN], run, 1, &x, &r);
    if (st) {
        gb__nn_values_move(out, &r);
        return st;
    }
    gb_tensor *qkv[3] = {0};
    for (int i = 0; i < 3; i++) { /* query, key, value = c_attn(x).split(E, dim=2) */
        gb_tensor *part = gb_narrow(r.v[0], -1, i * E, E);
        qkv[i] = part ? gb__nn_split_heads(part, H, D) : NULL;
        gb_tensor_free(part);
        if (!qkv[i]) break; /* gb__nn_attn_finish reports it */
    }
    gb_values_clear(&r);
    return gb__nn_attn_finish(m, run, qkv, GB__ATTN_SCALE_DIV_SQRT, 0, m->children[GB__ATTN_DROPOUT], 2,
                           (const int[]){GB__ATTN_C_PROJ, GB__ATTN_RESID_DROPOUT}, out);
}

static const gb__nn_module_type gb__nn_type_gpt2_attn = {.name = "GPT2Attention",
                                                   .forward = gb__nn_gpt2_attn_forward,
                                                   .returns_tuple = true,
                                                   .settings = sizeof(gb__nn_gpt2_attn_settings)};

/* ---- GPT2MLP ------------------------------------------------------------ */

/* dropout(c_proj(act(c_fc(x)))): registered c_fc, c_proj, act, dropout (the
 * order print shows) but called in this order. */
static gb_status gb__nn_gpt2_mlp_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    static const int order[] = {GB__MLP_C_FC, GB__MLP_ACT, GB__MLP_C_PROJ, GB__MLP_DROPOUT};
    gb_tensor *x = gb__nn_input(m, in, 0, "(hidden_states,)");
    if (!x) return gb_last_status();
    gb_values cur = {0};
    gb_status st = gb_values_push(&cur, gb_tensor_ref(x));
    for (int i = 0; st == GB_OK && i < 4; i++) st = gb__nn_call_into(m->children[order[i]], run, &cur, 0, NULL);
    gb__nn_values_move(out, &cur);
    return st;
}

static const gb__nn_module_type gb__nn_type_gpt2_mlp = {.name = "GPT2MLP", .forward = gb__nn_gpt2_mlp_forward};

/* ---- GPT2Block ---------------------------------------------------------- */

/* h + attn(ln_1(h)), then + mlp(ln_2(.)); returns (hidden_states,) or, with
 * a KV cache, (hidden_states, key, value) from the attention. */
static gb_status gb__nn_gpt2_block_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    gb_tensor *h = gb__nn_input(m, in, 0, "(hidden_states,)");
    if (!h) return gb_last_status();
    return gb__nn_prenorm_block(m, run, h, 0, NULL,
                             (const int[]){GB__BLOCK_LN_1, GB__BLOCK_ATTN, GB__BLOCK_LN_2, GB__BLOCK_MLP}, out);
}

static const gb__nn_module_type gb__nn_type_gpt2_block = {
    .name = "GPT2Block", .forward = gb__nn_gpt2_block_forward, .returns_tuple = true};

/* ---- GPT2Model and GPT2LMHeadModel -------------------------------------- */

/* (input_ids [B, T]) -> (hidden_states [B, T, E]) after ln_f. Positions are
 * the run's position ids or follow the cached tokens; the cache length
 * advances by T once every block has run. */
static gb_status gb__nn_gpt2_model_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    gb_tensor *ids = gb__nn_input(m, in, 0, "(input_ids,)");
    if (!ids || gb__nn_check_ids(m, ids)) return gb_last_status();
    int64_t B = gb_tensor_dim(ids, 0), T = gb_tensor_dim(ids, 1);
    gb_values tok = {0}, pe = {0}, cur = {0};
    gb_tensor *sum = NULL, *pos = NULL;
    /* Positions past wpe's rows: said as such, not as the embedding's "id N
     * out of range for vocabulary size N" (explicit position ids still get
     * the embedding's check). */
    int64_t past = gb_run_cache_length(run);
    gb_tensor *wpe = gb_module_param(m->children[GB__GPT2_WPE], "weight");
    int64_t npos = wpe ? gb_tensor_dim(wpe, 0) : 0;
    if (wpe && !gb__nn_run_position_ids(run) && past + T > npos)
        return gb__fail(GB_ERR_INDEX, "%s: %lld positions (%lld cached + %lld new tokens) exceed n_positions = %lld, "
                        "the positions %s has embeddings for", GB__LABEL(m), (long long)(past + T), (long long)past,
                        (long long)T, (long long)npos, GB__LABEL(m->children[GB__GPT2_WPE]));
    pos = gb__nn_positions(m, run, B, T);
    gb_status st = pos ? GB_OK : gb_last_status();
    if (st) goto done;
    st = gb__nn_call(m->children[GB__GPT2_WTE], run, 1, &ids, &tok);
    if (st) {
        gb__nn_values_move(out, &tok);
        goto done;
    }
    st = gb__nn_call(m->children[GB__GPT2_WPE], run, 1, &pos, &pe);
    if (st) {
        gb__nn_values_move(out, &pe);
        goto done;
    }
    sum = gb_add(tok.v[0], pe.v[0]); /* inputs_embeds + position_embeds */
    if (!sum) {
        st = gb__nn_op_failed(m);
        goto done;
    }
    st = gb__nn_call(m->children[GB__GPT2_DROP], run, 1, &sum, &cur);
    gb_module *h = m->children[GB__GPT2_H];
    for (int i = 0; st == GB_OK && i < gb_module_num_children(h); i++)
        st = gb__nn_call_into(gb_module_child(h, i), run, &cur, 0, NULL);
    if (st == GB_OK) st = gb__nn_call_into(m->children[GB__GPT2_LN_F], run, &cur, 0, NULL);
    if (st == GB_OK) gb__nn_run_cache_advance(run, T);
    gb__nn_values_move(out, &cur);
done:
    gb_values_clear(&tok), gb_values_clear(&pe), gb_values_clear(&cur);
    gb_tensor_free(pos), gb_tensor_free(sum);
    return st;
}

static const gb__nn_module_type gb__nn_type_gpt2_model = {
    .name = "GPT2Model", .forward = gb__nn_gpt2_model_forward, .returns_tuple = true};

static const gb__nn_module_type gb__nn_type_gpt2_lm = {.name = "GPT2LMHeadModel",
                                                 .forward = gb__nn_causal_lm_forward,
                                                 .returns_tuple = true,
                                                 .settings = sizeof(gb_gpt2_config)};

/* ---- building ----------------------------------------------------------- */

static gb_module *gb__nn_gpt2_attn_new(const gb_gpt2_config *c) {
    gb_module *m = gb__nn_module_new(&gb__nn_type_gpt2_attn);
    if (m) *GB__SETTINGS(m, gb__nn_gpt2_attn_settings) = (gb__nn_gpt2_attn_settings){c->n_head, c->n_embd / c->n_head};
    gb_module *kids[GB__ATTN_COUNT] = {
        [GB__ATTN_C_ATTN] = gb_nn_conv1d(3 * c->n_embd, c->n_embd),
        [GB__ATTN_C_PROJ] = gb_nn_conv1d(c->n_embd, c->n_embd),
        [GB__ATTN_DROPOUT] = gb_nn_dropout(c->attn_pdrop),
        [GB__ATTN_RESID_DROPOUT] = gb_nn_dropout(c->resid_pdrop),
    };
    return gb__nn_module_with(m, GB__ATTN_COUNT, gb__nn_gpt2_attn_children, kids);
}

static gb_module *gb__nn_gpt2_mlp_new(const gb_gpt2_config *c) {
    int64_t inner = c->n_inner ? c->n_inner : 4 * c->n_embd;
    gb_module *kids[GB__MLP_COUNT] = {
        [GB__MLP_C_FC] = gb_nn_conv1d(inner, c->n_embd),
        [GB__MLP_C_PROJ] = gb_nn_conv1d(c->n_embd, inner),
        [GB__MLP_ACT] = gb_nn_activation(c->activation_function),
        [GB__MLP_DROPOUT] = gb_nn_dropout(c->resid_pdrop),
    };
    return gb__nn_module_with(gb__nn_module_new(&gb__nn_type_gpt2_mlp), GB__MLP_COUNT, gb__nn_gpt2_mlp_children, kids);
}

static gb_module *gb__nn_gpt2_block_new(const void *cfg) {
    const gb_gpt2_config *c = cfg;
    gb_module *kids[GB__BLOCK_COUNT] = {
        [GB__BLOCK_LN_1] = gb_nn_layer_norm(c->n_embd, c->layer_norm_epsilon, true),
        [GB__BLOCK_ATTN] = gb__nn_gpt2_attn_new(c),
        [GB__BLOCK_LN_2] = gb_nn_layer_norm(c->n_embd, c->layer_norm_epsilon, true),
        [GB__BLOCK_MLP] = gb__nn_gpt2_mlp_new(c),
    };
    return gb__nn_module_with(gb__nn_module_new(&gb__nn_type_gpt2_block), GB__BLOCK_COUNT, gb__nn_gpt2_block_children, kids);
}

static gb_status gb__nn_gpt2_check(const gb_gpt2_config *c) {
    if (c->vocab_size <= 0 || c->n_positions <= 0 || c->n_embd <= 0 || c->n_layer < 0 || c->n_head <= 0 ||
        c->n_inner < 0)
        return gb__fail(
            GB_ERR_ARG,
            "gpt2_new: sizes must be positive (vocab_size=%lld, n_positions=%lld, n_embd=%lld, n_layer=%lld, "
            "n_head=%lld, n_inner=%lld)",
            (long long)c->vocab_size, (long long)c->n_positions, (long long)c->n_embd, (long long)c->n_layer,
            (long long)c->n_head, (long long)c->n_inner);
    if (c->n_embd % c->n_head)
        return gb__fail(
            GB_ERR_ARG,
            "gpt2_new: `embed_dim` must be divisible by num_heads (got `embed_dim`: %lld and `num_heads`: %lld)",
            (long long)c->n_embd, (long long)c->n_head);
    return GB_OK;
}

gb_module *gb_gpt2_new(const gb_gpt2_config *cfg) {
    if (!cfg) return gb__fail_null(GB_ERR_ARG, "gpt2_new: config is NULL");
    if (gb__nn_gpt2_check(cfg)) return NULL;
    gb_module *kids[GB__GPT2_COUNT] = {
        [GB__GPT2_WTE] = gb_nn_embedding(cfg->vocab_size, cfg->n_embd),
        [GB__GPT2_WPE] = gb_nn_embedding(cfg->n_positions, cfg->n_embd),
        [GB__GPT2_DROP] = gb_nn_dropout(cfg->embd_pdrop),
        [GB__GPT2_H] = gb__nn_module_repeat(cfg->n_layer, gb__nn_gpt2_block_new, cfg),
        [GB__GPT2_LN_F] = gb_nn_layer_norm(cfg->n_embd, cfg->layer_norm_epsilon, true),
    };
    gb_module *body =
        gb__nn_module_with(gb__nn_module_new(&gb__nn_type_gpt2_model), GB__GPT2_COUNT, gb__nn_gpt2_model_children, kids);
    return gb__nn_causal_lm(&gb__nn_type_gpt2_lm, cfg, "transformer", body, cfg->n_embd, cfg->vocab_size, &gb__nn_gpt2_tie,
                         "gpt2_new");
}

/* ---- the architecture: config.json, checkpoints, info ------------------- */

/* GPT2Config's defaults; n_positions falls back to the older n_ctx. */
static void gb__nn_gpt2_read(gb__nn_config *c, void *cfg) {
    gb_gpt2_config *g = cfg;
    g->vocab_size = gb__nn_cfg_int(c, "vocab_size", &(int64_t){50257});
    int64_t ctx = gb__nn_cfg_int(c, "n_ctx", &(int64_t){1024});
    g->n_positions = gb__nn_cfg_int(c, "n_positions", &ctx);
    g->n_embd = gb__nn_cfg_int(c, "n_embd", &(int64_t){768});
    g->n_layer = gb__nn_cfg_int(c, "n_layer", &(int64_t){12});
    g->n_head = gb__nn_cfg_int(c, "n_head", &(int64_t){12});
    g->n_inner = gb__nn_cfg_int(c, "n_inner", &(int64_t){0});
    g->layer_norm_epsilon = (float)gb__nn_cfg_num(c, "layer_norm_epsilon", 1e-5);
    gb__nn_cfg_str(c, "activation_function", "gelu_new", g->activation_function, sizeof g->activation_function);
    g->attn_pdrop = (float)gb__nn_cfg_num(c, "attn_pdrop", 0.1);
    g->embd_pdrop = (float)gb__nn_cfg_num(c, "embd_pdrop", 0.1);
    g->resid_pdrop = (float)gb__nn_cfg_num(c, "resid_pdrop", 0.1);
}

static gb_module *gb__nn_gpt2_new_from(const void *cfg) { return gb_gpt2_new(cfg); }

static const gb__nn_config_field gb__nn_gpt2_fields[] = {
    GB__FIELD(gb_gpt2_config, INT, vocab_size),
    GB__FIELD(gb_gpt2_config, INT, n_embd),
    GB__FIELD(gb_gpt2_config, INT, n_layer),
    GB__FIELD(gb_gpt2_config, INT, n_head),
    GB__FIELD(gb_gpt2_config, INT, n_positions),
    GB__FIELD(gb_gpt2_config, STRING, activation_function),
    GB__FIELD(gb_gpt2_config, FLOAT, layer_norm_epsilon),
};

static const char *const gb__nn_gpt2_parts[GB_PART_COUNT] = {
    [GB_PART_EMBED] = "transformer.wte", [GB_PART_LAYERS] = "transformer.h", [GB_PART_ATTN] = "attn",
    [GB_PART_MLP] = "mlp", [GB_PART_ATTN_WEIGHTS] = "attn.attn_weights", [GB_PART_NORM] = "transformer.ln_f",
    [GB_PART_UNEMBED] = "lm_head",
};

const gb__nn_arch gb__nn_arch_gpt2 = {
    .model_type = "gpt2",
    .config_size = sizeof(gb_gpt2_config),
    .read = gb__nn_gpt2_read,
    .build = gb__nn_gpt2_new_from,
    /* files saved before transformers added the "transformer." prefix */
    .layers = "transformer.h",
    .layers_field = "n_layer",
    .layers_at = offsetof(gb_gpt2_config, n_layer),
    .aliases = (const gb__nn_alias[]){{"transformer.", ""}, {NULL, NULL}},
    /* the causal-mask buffers of older files */
    .ignored = (const char *const[]){".attn.bias", ".attn.masked_bias", NULL},
    .tie = &gb__nn_gpt2_tie,
    .fields = gb__nn_gpt2_fields,
    .nfields = sizeof gb__nn_gpt2_fields / sizeof gb__nn_gpt2_fields[0],
    .public_config = GB__ARCH_CONFIG_GPT2,
    .vocab_at = offsetof(gb_gpt2_config, vocab_size),
    .positions_at = offsetof(gb_gpt2_config, n_positions),
    .parts = gb__nn_gpt2_parts,
};
