/* Llama as Hugging Face transformers (>= 4.48) builds it: LlamaForCausalLM >
 * LlamaModel > LlamaDecoderLayer > LlamaAttention / LlamaMLP, with
 * LlamaRMSNorm and LlamaRotaryEmbedding (default and "llama3" rope
 * scaling), grouped-query attention and the KV cache (modeling_llama.py's
 * eager attention). */
#include "modules_impl.h"
#include "../tensor/tensor_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Children, in Hugging Face's registration order (GB__CHILDREN). */
#define GB__LLAMA_ATTN_CHILDREN(X)                                                                                     \
    X(GB__LATTN_Q, "q_proj")                                                                                           \
    X(GB__LATTN_K, "k_proj")                                                                                           \
    X(GB__LATTN_V, "v_proj")                                                                                           \
    X(GB__LATTN_O, "o_proj")
#define GB__LLAMA_MLP_CHILDREN(X)                                                                                      \
    X(GB__LMLP_GATE, "gate_proj")                                                                                      \
    X(GB__LMLP_UP, "up_proj")                                                                                          \
    X(GB__LMLP_DOWN, "down_proj")                                                                                      \
    X(GB__LMLP_ACT, "act_fn")
#define GB__LLAMA_LAYER_CHILDREN(X)                                                                                    \
    X(GB__LAYER_ATTN, "self_attn")                                                                                     \
    X(GB__LAYER_MLP, "mlp")                                                                                            \
    X(GB__LAYER_IN_NORM, "input_layernorm")                                                                            \
    X(GB__LAYER_POST_NORM, "post_attention_layernorm")
#define GB__LLAMA_MODEL_CHILDREN(X)                                                                                    \
    X(GB__LMODEL_EMBED, "embed_tokens")                                                                                \
    X(GB__LMODEL_LAYERS, "layers")                                                                                     \
    X(GB__LMODEL_NORM, "norm")                                                                                         \
    X(GB__LMODEL_ROTARY, "rotary_emb")
GB__CHILDREN(GB__LLAMA_ATTN_CHILDREN, GB__LATTN_COUNT, gb__nn_llama_attn_children);
GB__CHILDREN(GB__LLAMA_MLP_CHILDREN, GB__LMLP_COUNT, gb__nn_llama_mlp_children);
GB__CHILDREN(GB__LLAMA_LAYER_CHILDREN, GB__LAYER_COUNT, gb__nn_llama_layer_children);
GB__CHILDREN(GB__LLAMA_MODEL_CHILDREN, GB__LMODEL_COUNT, gb__nn_llama_model_children);

const gb__nn_tie gb__nn_llama_tie = {"lm_head.weight", "model.embed_tokens.weight"};

typedef struct gb__nn_llama_attn_settings {
    int64_t heads, kv_heads, head_dim;
    int64_t sliding_window; /* 0: every earlier key (nn/modules_impl.h, gb__nn_attention) */
} gb__nn_llama_attn_settings;

/* ---- LlamaRotaryEmbedding ----------------------------------------------- */

/* (x, position_ids [B|1, T]) -> (cos, sin), each [B|1, T, head_dim]:
 * freqs = inv_freq * position in f32, emb = cat(freqs, freqs), as
 * LlamaRotaryEmbedding.forward (attention_scaling is 1 for the default and
 * llama3 rope types). */
static gb_status gb__nn_rotary_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run;
    gb_tensor *x = gb__nn_input(m, in, 0, "(hidden_states, position_ids)");
    gb_tensor *pos = x ? gb__nn_input(m, in, 1, "(hidden_states, position_ids)") : NULL;
    if (!pos) return gb_last_status();
    gb_dtype dt = gb_tensor_dtype(pos);
    if ((dt != GB_DTYPE_I64 && dt != GB_DTYPE_I32) || gb_tensor_ndim(pos) != 2)
        return gb__fail(GB_ERR_ARG, "%s: position_ids must be [batch, seq_len] int64 or int32, got %s %s", GB__LABEL(m),
                        gb_dtype_name(dt), GB__SHAPE_STR(pos));
    gb_tensor *inv = gb_module_param(m, "inv_freq"); /* [D/2] */
    int64_t half = gb_tensor_dim(inv, 0), D = 2 * half;
    int64_t B = gb_tensor_dim(pos, 0), T = gb_tensor_dim(pos, 1), shape[3] = {B, T, D};
    bool meta = gb__nn_meta(x) || gb__is_meta(pos) || gb__is_meta(inv);
    gb_tensor *c = gb__nn_empty(3, shape, GB_DTYPE_F32, meta), *s = gb__nn_empty(3, shape, GB_DTYPE_F32, meta);
    gb_tensor *p64 = !meta && c && s ? gb_to_dtype(pos, GB_DTYPE_I64) : NULL;
    gb_tensor *pc = p64 ? gb_contiguous(p64) : NULL;
    gb_tensor_free(p64);
    if (!c || !s || (!meta && !pc)) {
        gb_tensor_free(c), gb_tensor_free(s), gb_tensor_free(pc);
        return gb_last_status();
    }
    if (!meta) {
        const int64_t *p = gb_tensor_data(pc);                  /* [B, T] */
        const float *f = gb_tensor_data(inv);                   /* [D/2] */
        float *cv = gb_tensor_data(c), *sv = gb_tensor_data(s); /* [B, T, D] */
        for (int64_t bt = 0; bt < B * T; bt++)
            for (int64_t i = 0; i < half; i++) {
                float a = f[i] * (float)p[bt];
                cv[bt * D + i] = cv[bt * D + half + i] = cosf(a);
                sv[bt * D + i] = sv[bt * D + half + i] = sinf(a);
            }
    }
    gb_tensor_free(pc);
    gb_status st = gb_values_push(out, c);
    gb_status st2 = gb_values_push(out, s);
    return st ? st : st2;
}

/* inv_freq in f32 as transformers' rope init functions compute it:
 * 1 / theta^(2i/dim), then for "llama3" (_compute_llama3_parameters) low
 * frequencies (wavelength > original_max / low_freq_factor) divided by
 * factor, high ones (wavelength < original_max / high_freq_factor) kept, and
 * the band between interpolated smoothly. */
static void gb__nn_rope_inv_freq(float *inv, int64_t dim, const gb_llama_config *c) {
    for (int64_t i = 0; i < dim / 2; i++) {
        float f = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)dim);
        if (!strcmp(c->rope_type, "llama3")) {
            double old = (double)c->rope_original_max_position_embeddings;
            float factor = (float)c->rope_factor, low = (float)c->rope_low_freq_factor;
            float low_wavelen = (float)(old / c->rope_low_freq_factor);
            float high_wavelen = (float)(old / c->rope_high_freq_factor);
            float wavelen = (float)(2.0 * M_PI) / f;
            float fl = wavelen > low_wavelen ? f / factor : f;
            float smooth = ((float)old / wavelen - low) / (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
            float smoothed = (1.0f - smooth) * fl / factor + smooth * fl;
            bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            f = medium ? smoothed : fl;
        }
        inv[i] = f;
    }
}

/* The rotary module's settings are the model's config (defaults filled in). */
static void gb__nn_rotary_buffers(gb_module *m) {
    const gb_llama_config *c = GB__SETTINGS(m, gb_llama_config);
    gb__nn_rope_inv_freq(gb_tensor_data(gb_module_param(m, "inv_freq")), c->head_dim, c);
}

static const gb__nn_module_type gb__nn_type_rotary = {.name = "LlamaRotaryEmbedding",
                                                .forward = gb__nn_rotary_forward,
                                                .buffers = gb__nn_rotary_buffers,
                                                .returns_tuple = true,
                                                .settings = sizeof(gb_llama_config)};

/* ---- LlamaAttention ----------------------------------------------------- */

/* x * cos + rotate_half(x) * sin for x [B, H, T, D] and cos, sin
 * [B|1, T, D] (apply_rotary_pos_emb with unsqueeze_dim=1), one op (gb_rope). */
static gb_tensor *gb__nn_apply_rope(gb_tensor *x, gb_tensor *cos, gb_tensor *sin) {
    gb_tensor *c = gb_unsqueeze(cos, 1), *s = gb_unsqueeze(sin, 1);
    gb_tensor *y = c && s ? gb_rope(x, c, s) : NULL;
    gb_tensor_free(c), gb_tensor_free(s);
    return y;
}

/* (hidden_states [B, T, hidden], cos, sin) -> (attn_output [B, T, hidden])
 * and, with a KV cache, (attn_output, key, value), key/value
 * [B, kv_heads, S, head_dim] (before repeat_kv). */
static gb_status gb__nn_llama_attn_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    const char *expect = "(hidden_states, cos, sin) (cos and sin from LlamaRotaryEmbedding)";
    const gb__nn_llama_attn_settings *s = GB__SETTINGS(m, gb__nn_llama_attn_settings);
    int64_t H = s->heads, KV = s->kv_heads, D = s->head_dim;
    gb_tensor *x = gb__nn_input(m, in, 0, expect);
    gb_tensor *cos = x ? gb__nn_input(m, in, 1, expect) : NULL;
    gb_tensor *sin = cos ? gb__nn_input(m, in, 2, expect) : NULL;
    if (!sin) return gb_last_status();
    if (gb_tensor_ndim(x) != 3)
        return gb__fail(GB_ERR_SHAPE, "%s: hidden_states must be [batch, seq_len, hidden_size], got shape %s",
                        GB__LABEL(m), GB__SHAPE_STR(x));
    if (gb_tensor_ndim(cos) != 3 || gb_tensor_dim(cos, 1) != gb_tensor_dim(x, 1) || gb_tensor_dim(cos, 2) != D ||
        !(gb_tensor_dim(cos, 0) == 1 || gb_tensor_dim(cos, 0) == gb_tensor_dim(x, 0)))
        return gb__fail(GB_ERR_SHAPE,
                        "%s: cos has shape %s, expected [%lld, %lld, %lld] (or batch 1) for hidden_states %s",
                        GB__LABEL(m), GB__SHAPE_STR(cos), (long long)gb_tensor_dim(x, 0),
                        (long long)gb_tensor_dim(x, 1), (long long)D, GB__SHAPE_STR(x));
    gb_tensor *qkv[3] = {0}, *proj[3];
    const int64_t heads[3] = {H, KV, KV};
    gb_status st = gb__nn_linear_siblings(run, 3, m->children + GB__LATTN_Q, x, proj);
    if (st) return st;
    for (int i = 0; i < 3; i++) { /* q_proj, k_proj, v_proj, then split into heads */
        gb_values r = {0};
        if (proj[0]) r = (gb_values){1, {proj[i]}}; /* computed together: the run sees none of the calls */
        else st = gb__nn_call(m->children[GB__LATTN_Q + i], run, 1, &x, &r);
        if (st) {
            gb__nn_values_move(out, &r);
            for (int j = 0; j < i; j++) gb_tensor_free(qkv[j]);
            return st;
        }
        qkv[i] = gb__nn_split_heads(r.v[0], heads[i], D);
        gb_values_clear(&r);
        if (!qkv[i]) break; /* gb__nn_attn_finish reports it */
    }
    for (int i = 0; i < 2 && qkv[2]; i++) { /* queries and keys */
        gb_tensor *rot = gb__nn_apply_rope(qkv[i], cos, sin);
        gb_tensor_free(qkv[i]);
        qkv[i] = rot;
        if (!rot) break;
    }
    return gb__nn_attn_finish(m, run, qkv, GB__ATTN_SCALE_MUL_RSQRT, s->sliding_window, NULL, 1,
                           (const int[]){GB__LATTN_O}, out);
}

static const gb__nn_module_type gb__nn_type_llama_attn = {.name = "LlamaAttention",
                                                    .forward = gb__nn_llama_attn_forward,
                                                    .returns_tuple = true,
                                                    .settings = sizeof(gb__nn_llama_attn_settings)};

/* ---- LlamaMLP ----------------------------------------------------------- */

/* down_proj(act_fn(gate_proj(x)) * up_proj(x)), children called in that
 * order (Python evaluates act_fn(gate_proj(x)) before up_proj(x)). */
static gb_status gb__nn_llama_mlp_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    gb_tensor *x = gb__nn_input(m, in, 0, "(hidden_states,)");
    if (!x) return gb_last_status();
    gb_values g = {0}, a = {0}, u = {0};
    gb_tensor *prod = NULL, *proj[2];
    gb_values *stopped = &g;
    gb_status st = gb__nn_linear_siblings(run, 2, (gb_module *[]){m->children[GB__LMLP_GATE], m->children[GB__LMLP_UP]},
                                          x, proj);
    if (st) return st;
    gb_module *act = m->children[GB__LMLP_ACT];
    if (proj[0]) { /* computed together: the run sees neither call */
        g = (gb_values){1, {proj[0]}}, u = (gb_values){1, {proj[1]}};
        stopped = &a;
        /* nor act_fn's: silu(gate) * up in one pass, in gate's buffer */
        if (gb__nn_is_silu(act) && gb__nn_call_unseen(run, act) && gb__ts_silu_mul_(g.v[0], u.v[0])) {
            st = gb__nn_count_call(run, act);
            prod = st ? NULL : gb_tensor_ref(g.v[0]);
        } else {
            st = gb__nn_call(act, run, 1, &g.v[0], &a);
        }
    } else {
        st = gb__nn_call(m->children[GB__LMLP_GATE], run, 1, &x, &g);
        if (st == GB_OK) stopped = &a, st = gb__nn_call(act, run, 1, &g.v[0], &a);
        if (st == GB_OK) stopped = &u, st = gb__nn_call(m->children[GB__LMLP_UP], run, 1, &x, &u);
    }
    if (st) {
        gb__nn_values_move(out, stopped);
        goto done;
    }
    if (!prod) prod = gb_mul(a.v[0], u.v[0]);
    if (!prod) {
        st = gb__nn_op_failed(m);
        goto done;
    }
    st = gb__nn_call(m->children[GB__LMLP_DOWN], run, 1, &prod, out);
done:
    gb_values_clear(&g), gb_values_clear(&a), gb_values_clear(&u);
    gb_tensor_free(prod);
    return st;
}

static const gb__nn_module_type gb__nn_type_llama_mlp = {.name = "LlamaMLP", .forward = gb__nn_llama_mlp_forward};

/* ---- LlamaDecoderLayer -------------------------------------------------- */

/* (hidden_states, cos, sin) -> h + self_attn(input_layernorm(h)), then
 * + mlp(post_attention_layernorm(.)); returns (hidden_states,) or, with a
 * KV cache, (hidden_states, key, value). */
static gb_status gb__nn_llama_layer_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    const char *expect = "(hidden_states, cos, sin) (cos and sin from LlamaRotaryEmbedding)";
    gb_tensor *h = gb__nn_input(m, in, 0, expect);
    gb_tensor *cos = h ? gb__nn_input(m, in, 1, expect) : NULL;
    gb_tensor *sin = cos ? gb__nn_input(m, in, 2, expect) : NULL;
    if (!sin) return gb_last_status();
    return gb__nn_prenorm_block(m, run, h, 2, (gb_tensor *[]){cos, sin},
                             (const int[]){GB__LAYER_IN_NORM, GB__LAYER_ATTN, GB__LAYER_POST_NORM, GB__LAYER_MLP}, out);
}

static const gb__nn_module_type gb__nn_type_llama_layer = {
    .name = "LlamaDecoderLayer", .forward = gb__nn_llama_layer_forward, .returns_tuple = true};

/* ---- LlamaModel and LlamaForCausalLM ------------------------------------ */

/* (input_ids [B, T]) -> (hidden_states [B, T, hidden]) after norm. The
 * rotary embedding runs once and every layer gets (h, cos, sin); the cache
 * length advances by T once every layer has run. */
static gb_status gb__nn_llama_model_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    gb_tensor *ids = gb__nn_input(m, in, 0, "(input_ids,)");
    if (!ids || gb__nn_check_ids(m, ids)) return gb_last_status();
    int64_t B = gb_tensor_dim(ids, 0), T = gb_tensor_dim(ids, 1);
    gb_values cur = {0}, rope = {0};
    gb_tensor *pos = gb__nn_positions(m, run, B, T);
    gb_status st = pos ? GB_OK : gb_last_status();
    if (st) goto done;
    st = gb__nn_call(m->children[GB__LMODEL_EMBED], run, 1, &ids, &cur);
    if (st == GB_OK) {
        st = gb__nn_call(m->children[GB__LMODEL_ROTARY], run, 2, (gb_tensor *[]){cur.v[0], pos}, &rope);
        if (st) {
            gb__nn_values_move(&cur, &rope);
        } else if (rope.n < 2 || !rope.v[1]) {
            st = gb__fail(GB_ERR_STATE, "%s returned %d tensor(s), expected (cos, sin)",
                          GB__LABEL(m->children[GB__LMODEL_ROTARY]), rope.n);
        }
    }
    gb_module *layers = m->children[GB__LMODEL_LAYERS];
    for (int i = 0; st == GB_OK && i < gb_module_num_children(layers); i++)
        st = gb__nn_call_into(gb_module_child(layers, i), run, &cur, 2, rope.v); /* (h, cos, sin) */
    if (st == GB_OK) st = gb__nn_call_into(m->children[GB__LMODEL_NORM], run, &cur, 0, NULL);
    if (st == GB_OK) gb__nn_run_cache_advance(run, T);
    gb__nn_values_move(out, &cur);
done:
    gb_values_clear(&cur), gb_values_clear(&rope);
    gb_tensor_free(pos);
    return st;
}

static const gb__nn_module_type gb__nn_type_llama_model = {
    .name = "LlamaModel", .forward = gb__nn_llama_model_forward, .returns_tuple = true};

static const gb__nn_module_type gb__nn_type_llama_lm = {.name = "LlamaForCausalLM",
                                                  .forward = gb__nn_causal_lm_forward,
                                                  .returns_tuple = true,
                                                  .settings = sizeof(gb_llama_config)};

/* ---- building ----------------------------------------------------------- */

/* The config with defaults filled in (num_key_value_heads, head_dim);
 * errors start with op. */
static gb_status gb__nn_llama_check(const char *op, const gb_llama_config *in, gb_llama_config *c) {
    *c = *in;
    if (c->num_key_value_heads == 0) c->num_key_value_heads = c->num_attention_heads;
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->num_hidden_layers < 0 ||
        c->num_attention_heads <= 0 || c->num_key_value_heads <= 0 || c->head_dim < 0 ||
        c->max_position_embeddings <= 0)
        return gb__fail(GB_ERR_ARG,
                        "%s: sizes must be positive (vocab_size=%lld, hidden_size=%lld, intermediate_size=%lld, "
                        "num_hidden_layers=%lld, num_attention_heads=%lld, num_key_value_heads=%lld, head_dim=%lld, "
                        "max_position_embeddings=%lld)", op,
                        (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->intermediate_size,
                        (long long)c->num_hidden_layers, (long long)c->num_attention_heads,
                        (long long)c->num_key_value_heads, (long long)c->head_dim,
                        (long long)c->max_position_embeddings);
    if (c->head_dim == 0) {
        if (c->hidden_size % c->num_attention_heads)
            return gb__fail(
                GB_ERR_ARG,
                "%s: hidden_size (%lld) is not divisible by num_attention_heads (%lld); set head_dim", op,
                (long long)c->hidden_size, (long long)c->num_attention_heads);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    }
    if (c->num_attention_heads % c->num_key_value_heads)
        return gb__fail(GB_ERR_ARG,
                        "%s: num_attention_heads (%lld) is not a multiple of num_key_value_heads (%lld)", op,
                        (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    if (c->head_dim % 2)
        return gb__fail(GB_ERR_ARG, "%s: head_dim (%lld) must be even for rotary embeddings", op,
                        (long long)c->head_dim);
    if (!(c->rope_theta > 0))
        return gb__fail(GB_ERR_ARG, "%s: rope_theta must be positive, got %g", op, c->rope_theta);
    if (!strcmp(c->rope_type, "llama3")) {
        if (!(c->rope_factor >= 1.0) || !(c->rope_low_freq_factor > 0) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_position_embeddings <= 0)
            return gb__fail(GB_ERR_ARG,
                            "%s: rope_scaling llama3 needs factor >= 1, 0 < low_freq_factor < high_freq_factor "
                            "and original_max_position_embeddings > 0 (got factor=%g, low_freq_factor=%g, "
                            "high_freq_factor=%g, original_max_position_embeddings=%lld)", op,
                            c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                            (long long)c->rope_original_max_position_embeddings);
    } else if (c->rope_type[0] && strcmp(c->rope_type, "default")) {
        return gb__fail(GB_ERR_UNSUPPORTED,
                        "%s: rope_scaling type '%s' is not supported (glassbox has 'default' and 'llama3')", op,
                        c->rope_type);
    }
    return GB_OK;
}

/* What every builder of a family member's modules needs. */
typedef struct gb__nn_llama_build {
    const gb__nn_llama_family *f;
    const gb_llama_config *c; /* defaults filled in */
    int64_t sliding_window;
} gb__nn_llama_build;

/* A module of type under the family's name for class cls. */
static gb_module *gb__nn_llama_module(const gb__nn_llama_build *b, const gb__nn_module_type *type, int cls) {
    return gb__nn_module_class(gb__nn_module_new(type), b->f->cls[cls]);
}

static gb_module *gb__nn_rotary_new(const gb__nn_llama_build *b) {
    const gb_llama_config *c = b->c;
    gb_module *m = gb__nn_llama_module(b, &gb__nn_type_rotary, GB__LLAMA_ROTARY);
    if (!m) return NULL;
    *GB__SETTINGS(m, gb_llama_config) = *c;
    gb_status st = gb__nn_module_add_param(m, "inv_freq", 1, (int64_t[]){c->head_dim / 2}, true);
    if (st == GB_OK && !gb__is_meta(gb_module_param(m, "inv_freq"))) gb__nn_rotary_buffers(m);
    return gb__nn_module_done(m, st);
}

static gb_module *gb__nn_llama_attn_new(const gb__nn_llama_build *b) {
    const gb_llama_config *c = b->c;
    gb_module *m = gb__nn_llama_module(b, &gb__nn_type_llama_attn, GB__LLAMA_ATTN);
    int64_t hd = c->head_dim, q = c->num_attention_heads * hd, kv = c->num_key_value_heads * hd;
    if (m)
        *GB__SETTINGS(m, gb__nn_llama_attn_settings) =
            (gb__nn_llama_attn_settings){c->num_attention_heads, c->num_key_value_heads, hd, b->sliding_window};
    gb_module *kids[GB__LATTN_COUNT] = {
        [GB__LATTN_Q] = gb_nn_linear(c->hidden_size, q, c->attention_bias),
        [GB__LATTN_K] = gb_nn_linear(c->hidden_size, kv, c->attention_bias),
        [GB__LATTN_V] = gb_nn_linear(c->hidden_size, kv, c->attention_bias),
        [GB__LATTN_O] = gb_nn_linear(q, c->hidden_size, c->attention_bias),
    };
    return gb__nn_module_with(m, GB__LATTN_COUNT, gb__nn_llama_attn_children, kids);
}

static gb_module *gb__nn_llama_mlp_new(const gb__nn_llama_build *b) {
    const gb_llama_config *c = b->c;
    gb_module *kids[GB__LMLP_COUNT] = {
        [GB__LMLP_GATE] = gb_nn_linear(c->hidden_size, c->intermediate_size, c->mlp_bias),
        [GB__LMLP_UP] = gb_nn_linear(c->hidden_size, c->intermediate_size, c->mlp_bias),
        [GB__LMLP_DOWN] = gb_nn_linear(c->intermediate_size, c->hidden_size, c->mlp_bias),
        [GB__LMLP_ACT] = gb_nn_activation(c->hidden_act),
    };
    return gb__nn_module_with(gb__nn_llama_module(b, &gb__nn_type_llama_mlp, GB__LLAMA_MLP), GB__LMLP_COUNT,
                           gb__nn_llama_mlp_children, kids);
}

static gb_module *gb__nn_llama_norm_new(const gb__nn_llama_build *b) {
    return gb__nn_module_class(gb_nn_rms_norm(b->c->hidden_size, b->c->rms_norm_eps), b->f->cls[GB__LLAMA_NORM]);
}

static gb_module *gb__nn_llama_layer_new(const void *ctx) {
    const gb__nn_llama_build *b = ctx;
    gb_module *kids[GB__LAYER_COUNT] = {
        [GB__LAYER_ATTN] = gb__nn_llama_attn_new(b),
        [GB__LAYER_MLP] = gb__nn_llama_mlp_new(b),
        [GB__LAYER_IN_NORM] = gb__nn_llama_norm_new(b),
        [GB__LAYER_POST_NORM] = gb__nn_llama_norm_new(b),
    };
    return gb__nn_module_with(gb__nn_llama_module(b, &gb__nn_type_llama_layer, GB__LLAMA_LAYER), GB__LAYER_COUNT,
                           gb__nn_llama_layer_children, kids);
}

gb_module *gb__nn_llama_family_new(const gb__nn_llama_family *f, const gb_llama_config *cfg, int64_t sliding_window) {
    if (!cfg) return gb__fail_null(GB_ERR_ARG, "%s: config is NULL", f->op);
    gb_llama_config c;
    if (gb__nn_llama_check(f->op, cfg, &c)) return NULL;
    gb__nn_llama_build b = {f, &c, sliding_window};
    gb_module *kids[GB__LMODEL_COUNT] = {
        [GB__LMODEL_EMBED] = gb_nn_embedding(c.vocab_size, c.hidden_size),
        [GB__LMODEL_LAYERS] = gb__nn_module_repeat(c.num_hidden_layers, gb__nn_llama_layer_new, &b),
        [GB__LMODEL_NORM] = gb__nn_llama_norm_new(&b),
        [GB__LMODEL_ROTARY] = gb__nn_rotary_new(&b),
    };
    gb_module *body = gb__nn_module_with(gb__nn_llama_module(&b, &gb__nn_type_llama_model, GB__LLAMA_MODEL), GB__LMODEL_COUNT,
                                      gb__nn_llama_model_children, kids);
    return gb__nn_module_class(gb__nn_causal_lm(&gb__nn_type_llama_lm, &c, "model", body, c.hidden_size, c.vocab_size,
                                          c.tie_word_embeddings ? &gb__nn_llama_tie : NULL, f->op),
                            f->cls[GB__LLAMA_LM]);
}

static const gb__nn_llama_family gb__nn_llama = {
    .op = "llama_new",
#define GB__X(slot, suffix) [slot] = "Llama" suffix,
    .cls = {GB__LLAMA_CLASSES(GB__X)},
#undef GB__X
};

gb_module *gb_llama_new(const gb_llama_config *cfg) { return gb__nn_llama_family_new(&gb__nn_llama, cfg, 0); }

/* ---- the architecture: config.json, checkpoints, info ------------------- */

/* LlamaConfig's defaults, except that the sizes are required; rope_scaling
 * must be llama3 (under "rope_type" or the older "type") or absent. */
void gb__nn_llama_read_config(gb__nn_config *c, gb_llama_config *l) {
    l->vocab_size = gb__nn_cfg_int(c, "vocab_size", &(int64_t){32000});
    l->hidden_size = gb__nn_cfg_int(c, "hidden_size", NULL);
    l->intermediate_size = gb__nn_cfg_int(c, "intermediate_size", NULL);
    l->num_hidden_layers = gb__nn_cfg_int(c, "num_hidden_layers", NULL);
    l->num_attention_heads = gb__nn_cfg_int(c, "num_attention_heads", NULL);
    /* 0 means "as many as query heads" to gb_llama_new, but in a config.json
     * it is a mistake that would otherwise surface as k_proj's shape */
    l->num_key_value_heads = gb__nn_cfg_count(c, "num_key_value_heads", &l->num_attention_heads);
    int64_t hd = l->num_attention_heads ? l->hidden_size / l->num_attention_heads : 0;
    l->head_dim = gb__nn_cfg_int(c, "head_dim", &hd);
    l->max_position_embeddings = gb__nn_cfg_int(c, "max_position_embeddings", &(int64_t){2048});
    l->rms_norm_eps = (float)gb__nn_cfg_num(c, "rms_norm_eps", 1e-6);
    l->rope_theta = gb__nn_cfg_num(c, "rope_theta", 10000.0);
    l->tie_word_embeddings = gb__nn_cfg_bool(c, "tie_word_embeddings", false);
    l->attention_bias = gb__nn_cfg_bool(c, "attention_bias", false);
    l->mlp_bias = gb__nn_cfg_bool(c, "mlp_bias", false);
    gb__nn_cfg_str(c, "hidden_act", "silu", l->hidden_act, sizeof l->hidden_act);
    gb__nn_cfg_value rs = gb__nn_cfg_get(c, "rope_scaling");
    if (rs.kind == GB__CFG_ABSENT || rs.kind == GB__CFG_NULL || c->st != GB_OK) return;
    gb__nn_config sub = {c->get, rs.obj, c->path, GB_OK};
    gb__nn_cfg_value type = gb__nn_cfg_get(&sub, "rope_type");
    if (type.kind != GB__CFG_STRING) type = gb__nn_cfg_get(&sub, "type");
    if (type.kind != GB__CFG_STRING || strcmp(type.s, "llama3") != 0) {
        c->st = gb__fail(GB_ERR_UNSUPPORTED,
                         "model: %s: rope_scaling of type '%s' is not supported (glassbox supports 'llama3')", c->path,
                         type.kind == GB__CFG_STRING ? type.s : "(none)");
        return;
    }
    snprintf(l->rope_type, sizeof l->rope_type, "llama3");
    l->rope_factor = gb__nn_cfg_num(&sub, "factor", 8.0);
    l->rope_low_freq_factor = gb__nn_cfg_num(&sub, "low_freq_factor", 1.0);
    l->rope_high_freq_factor = gb__nn_cfg_num(&sub, "high_freq_factor", 4.0);
    l->rope_original_max_position_embeddings = gb__nn_cfg_int(&sub, "original_max_position_embeddings", &(int64_t){8192});
    if (sub.st != GB_OK) c->st = sub.st;
}

static void gb__nn_llama_read(gb__nn_config *c, void *cfg) { gb__nn_llama_read_config(c, cfg); }
static gb_module *gb__nn_llama_new_from(const void *cfg) { return gb_llama_new(cfg); }
bool gb__nn_llama_tied(const void *cfg) { return ((const gb_llama_config *)cfg)->tie_word_embeddings; }

static const gb__nn_config_field gb__nn_llama_fields[] = {
#define GB__X(name, kind, field, unset) {name, GB__FIELD_##kind, offsetof(gb_llama_config, field), unset},
    GB__LLAMA_PRINTED(GB__X)
#undef GB__X
};

const char *const gb__nn_llama_parts[GB_PART_COUNT] = {
    [GB_PART_EMBED] = "model.embed_tokens", [GB_PART_LAYERS] = "model.layers", [GB_PART_ATTN] = "self_attn",
    [GB_PART_MLP] = "mlp", [GB_PART_ATTN_WEIGHTS] = "self_attn.attn_weights", [GB_PART_NORM] = "model.norm",
    [GB_PART_UNEMBED] = "lm_head",
};

const gb__nn_arch gb__nn_arch_llama = {
    .model_type = "llama",
    .config_size = sizeof(gb_llama_config),
    .read = gb__nn_llama_read,
    .build = gb__nn_llama_new_from,
    .layers = "model.layers",
    .layers_field = "num_hidden_layers",
    .layers_at = offsetof(gb_llama_config, num_hidden_layers),
    .ignored = (const char *const[]){"rotary_emb.inv_freq", NULL},
    .tie = &gb__nn_llama_tie,
    .tied = gb__nn_llama_tied,
    .fields = gb__nn_llama_fields,
    .nfields = sizeof gb__nn_llama_fields / sizeof gb__nn_llama_fields[0],
    .public_config = GB__ARCH_CONFIG_LLAMA,
    .vocab_at = offsetof(gb_llama_config, vocab_size),
    .positions_at = offsetof(gb_llama_config, max_position_embeddings),
    .parts = gb__nn_llama_parts,
};
