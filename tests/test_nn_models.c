/* GPT-2 and Llama (nn/gpt2.c, nn/llama.c, nn/attention.c): print(model),
 * every block's forward and the whole models against reference modules in
 * PyTorch on the same weights (tests/oracle/nn_models.py), left padding,
 * the KV cache, llama3 rope scaling over 300 positions, gradients, events,
 * stopping, shape-only (meta) runs and errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gbtest.h"
#include "tensor/tensor_impl.h" /* gb__meta_push/pop: shape-only builds and runs */

/* ---- configs (the oracle builds the same) ------------------------------- */

/* What both GPT-2 configs keep of GPT2Config's defaults. */
#define GPT2_DEFAULTS                                                                                                  \
    .n_inner = 0, .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new", .attn_pdrop = 0.1f,                 \
    .embd_pdrop = 0.1f, .resid_pdrop = 0.1f

static const gb_gpt2_config gpt2_small = {
    .vocab_size = 48, .n_positions = 40, .n_embd = 32, .n_layer = 2, .n_head = 4, GPT2_DEFAULTS};

/* openai-community/gpt2's config.json */
static const gb_gpt2_config gpt2_124m = {
    .vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12, GPT2_DEFAULTS};

static const gb_llama_config llama_small = {.vocab_size = 40,
                                            .hidden_size = 32,
                                            .intermediate_size = 48,
                                            .num_hidden_layers = 2,
                                            .num_attention_heads = 4,
                                            .num_key_value_heads = 2,
                                            .head_dim = 0,
                                            .max_position_embeddings = 64,
                                            .rms_norm_eps = 1e-5f,
                                            .rope_theta = 10000.0,
                                            .hidden_act = "silu"};

static const gb_llama_config llama_long = {.vocab_size = 40,
                                           .hidden_size = 64,
                                           .intermediate_size = 64,
                                           .num_hidden_layers = 1,
                                           .num_attention_heads = 4,
                                           .num_key_value_heads = 2,
                                           .max_position_embeddings = 512,
                                           .rms_norm_eps = 1e-6f,
                                           .rope_theta = 10000.0,
                                           .hidden_act = "silu",
                                           .rope_type = "llama3",
                                           .rope_factor = 8.0,
                                           .rope_low_freq_factor = 1.0,
                                           .rope_high_freq_factor = 4.0,
                                           .rope_original_max_position_embeddings = 64};

/* meta-llama/Llama-2-7b-hf's config.json */
static const gb_llama_config llama2_7b = {.vocab_size = 32000,
                                          .hidden_size = 4096,
                                          .intermediate_size = 11008,
                                          .num_hidden_layers = 32,
                                          .num_attention_heads = 32,
                                          .num_key_value_heads = 32,
                                          .max_position_embeddings = 4096,
                                          .rms_norm_eps = 1e-5f,
                                          .rope_theta = 10000.0,
                                          .hidden_act = "silu"};

/* ---- helpers ------------------------------------------------------------ */

static void assert_str(const char *got, const char *want, const char *what) {
    ck_assert_msg(!strcmp(got, want), "%s:\n--- got\n%s\n--- want\n%s", what, got, want);
}

/* Set every parameter from the oracle with gb_module_set_param (the oracle
 * lists tied parameters once, as named_parameters() does). */
static void load_params(gb_module *root, gbt_oracle *o, const char *prefix) {
    const char **names;
    gb_tensor **ps;
    int n = gb_module_parameters(root, &names, &ps);
    gb_tensor *count = gbt_getf(o, "%s.__count", prefix);
    const int64_t *c = gb_tensor_data(count);
    ck_assert_int_eq(n, c[0]);
    ck_assert_int_eq(gb_module_num_parameters(root), c[1]);
    for (int i = 0; i < n; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s", names[i]);
        char *dot = strrchr(path, '.');
        *dot = 0;
        gb_module *m = gb_module_find(root, path);
        gbt_ok(m);
        gb_tensor *t = gbt_getf(o, "%s.%s", prefix, names[i]);
        gbt_ok_status(gb_module_set_param(m, dot + 1, t));
        gb_tensor_free(t);
    }
    free(names), free(ps);
    gb_tensor_free(count);
}

/* Re-tie lm_head to the embedding after loading (Hugging Face's tie_weights()). */
static void retie(gb_module *root, const char *head, const char *embedding) {
    gbt_ok_status(gb_module_tie_param(gb_module_find(root, head), "weight", gb_module_find(root, embedding), "weight"));
}

static gb_module *gpt2_loaded(gbt_oracle *o) {
    gb_module *m = gb_gpt2_new(&gpt2_small);
    gbt_ok(m);
    load_params(m, o, "gpt2");
    retie(m, "lm_head", "transformer.wte");
    return m;
}

static gb_module *llama_loaded(gbt_oracle *o, const gb_llama_config *cfg, const char *prefix) {
    gb_module *m = gb_llama_new(cfg);
    gbt_ok(m);
    load_params(m, o, prefix);
    return m;
}

/* Call m on the given inputs in run; out gets the outputs. */
static gb_status call(gb_module *m, gb_run *run, int n, gb_tensor *const *xs, gb_values *out) {
    gb_values in = {0};
    in.n = n;
    for (int i = 0; i < n; i++) in.v[i] = xs[i];
    return gb_module_call(m, run, &in, out);
}

/* Observer: keep the value of one point (or one module's output) by path. */
typedef struct {
    const char *path;
    gb_event_kind kind;
    gb_tensor *got;
    int nvalues;
    int ninputs;
    char order[4096]; /* paths of INPUT events, '\n'-separated */
} watch;

static gb_status watch_fn(gb_event *ev, void *ctx) {
    watch *w = ctx;
    if (ev->kind == GB_EVENT_INPUT) {
        size_t len = strlen(w->order);
        snprintf(w->order + len, sizeof w->order - len, "%s%s", w->ninputs++ ? "\n" : "", ev->path);
    }
    if (w->path && ev->kind == w->kind && !strcmp(ev->path, w->path)) {
        gb_tensor_free(w->got);
        w->got = gb_tensor_ref(ev->values->v[0]);
        w->nvalues = ev->values->n;
    }
    return GB_OK;
}

/* A new run observed by w. */
static gb_run *watched_run(watch *w) {
    gb_run *run = gb_run_new();
    gb_run_set_observer(run, watch_fn, w);
    return run;
}

/* A block's parts, {module path, oracle key of its output, how many of the
 * inputs xs it takes}, each on xs against the oracle; the first part is the
 * attention, whose probabilities w keeps (the point "attn_weights"):
 * compared with weights_key. */
typedef struct {
    const char *path, *key;
    int n;
} part;

static void check_parts(gb_module *m, gbt_oracle *o, gb_run *run, const watch *w, const char *weights_key,
                        const part *parts, int nparts, gb_tensor *const *xs) {
    gb_values out = {0};
    for (int i = 0; i < nparts; i++) {
        gbt_ok_status(call(gb_module_find(m, parts[i].path), run, parts[i].n, xs, &out));
        ck_assert_int_eq(out.n, 1); /* (hidden_states,) without a cache */
        gb_tensor *want = gbt_get(o, parts[i].key);
        gbt_assert_close(out.v[0], want, 1e-4, 1e-5, parts[i].key);
        gb_tensor_free(want);
        gb_values_clear(&out);
        if (i == 0) { /* the probabilities, [B, heads (not kv heads), T, T] */
            want = gbt_get(o, weights_key);
            gbt_assert_close(w->got, want, 1e-4, 1e-6, "attn_weights point");
            gb_tensor_free(want);
        }
    }
}

/* The whole model on prefix.ids against prefix.logits, every submodule
 * emitting events in the order torch calls them; then with left padding (a
 * [B, T] 1/0 mask; padded rows attend uniformly, as in Hugging Face). */
static void check_model_and_padding(gb_module *m, gbt_oracle *o, const char *prefix, const char *name) {
    gb_tensor *ids = gbt_getf(o, "%s.ids", prefix), *want = gbt_getf(o, "%s.logits", prefix);
    watch w = {0};
    gb_run *run = watched_run(&w);
    gb_values out = {0};
    char what[96];
    gbt_ok_status(call(m, run, 1, &ids, &out));
    ck_assert_int_eq(out.n, 1);
    snprintf(what, sizeof what, "%s logits", name);
    gbt_assert_close(out.v[0], want, 1e-4, 1e-4, what);
    char key[64];
    snprintf(key, sizeof key, "%s.call_order", prefix);
    char *order = gbt_get_str(o, key);
    snprintf(what, sizeof what, "%s module call order", name);
    assert_str(w.order, order, what);
    free(order);
    gb_values_clear(&out);
    gb_tensor_free(want);

    gb_tensor *mask = gbt_getf(o, "%s.pad_mask", prefix);
    want = gbt_getf(o, "%s.pad_logits", prefix);
    gb_run_set_attention_mask(run, mask);
    gbt_ok_status(call(m, run, 1, &ids, &out));
    snprintf(what, sizeof what, "%s logits with left padding", name);
    gbt_assert_close(out.v[0], want, 1e-4, 1e-4, what);
    gb_values_clear(&out);
    gb_tensor_free(mask), gb_tensor_free(want), gb_tensor_free(ids);
    gb_run_free(run);
}

/* ---- print(model) ------------------------------------------------------- */

/* openai-community/gpt2 as printed by transformers >= 4.48 with torch >= 2.0:
 * the structure of GPT2LMHeadModel in modeling_gpt2.py (the same print as
 * the nnsight walkthrough in ../shared/spec, which used an older
 * transformers: there "(attn): GPT2SdpaAttention(" and "Conv1D()"; 4.48
 * has one GPT2Attention class and Conv1D.__repr__ printing nf and nx). */
static const char gpt2_124m_repr[] =
    "GPT2LMHeadModel(\n"
    "  (transformer): GPT2Model(\n"
    "    (wte): Embedding(50257, 768)\n"
    "    (wpe): Embedding(1024, 768)\n"
    "    (drop): Dropout(p=0.1, inplace=False)\n"
    "    (h): ModuleList(\n"
    "      (0-11): 12 x GPT2Block(\n"
    "        (ln_1): LayerNorm((768,), eps=1e-05, elementwise_affine=True)\n"
    "        (attn): GPT2Attention(\n"
    "          (c_attn): Conv1D(nf=2304, nx=768)\n"
    "          (c_proj): Conv1D(nf=768, nx=768)\n"
    "          (attn_dropout): Dropout(p=0.1, inplace=False)\n"
    "          (resid_dropout): Dropout(p=0.1, inplace=False)\n"
    "        )\n"
    "        (ln_2): LayerNorm((768,), eps=1e-05, elementwise_affine=True)\n"
    "        (mlp): GPT2MLP(\n"
    "          (c_fc): Conv1D(nf=3072, nx=768)\n"
    "          (c_proj): Conv1D(nf=768, nx=3072)\n"
    "          (act): NewGELUActivation()\n"
    "          (dropout): Dropout(p=0.1, inplace=False)\n"
    "        )\n"
    "      )\n"
    "    )\n"
    "    (ln_f): LayerNorm((768,), eps=1e-05, elementwise_affine=True)\n"
    "  )\n"
    "  (lm_head): Linear(in_features=768, out_features=50257, bias=False)\n"
    ")";

/* The small test config, written from the same structure (and checked
 * against the oracle's reference modules printed by torch). */
static const char gpt2_small_repr[] =
    "GPT2LMHeadModel(\n"
    "  (transformer): GPT2Model(\n"
    "    (wte): Embedding(48, 32)\n"
    "    (wpe): Embedding(40, 32)\n"
    "    (drop): Dropout(p=0.1, inplace=False)\n"
    "    (h): ModuleList(\n"
    "      (0-1): 2 x GPT2Block(\n"
    "        (ln_1): LayerNorm((32,), eps=1e-05, elementwise_affine=True)\n"
    "        (attn): GPT2Attention(\n"
    "          (c_attn): Conv1D(nf=96, nx=32)\n"
    "          (c_proj): Conv1D(nf=32, nx=32)\n"
    "          (attn_dropout): Dropout(p=0.1, inplace=False)\n"
    "          (resid_dropout): Dropout(p=0.1, inplace=False)\n"
    "        )\n"
    "        (ln_2): LayerNorm((32,), eps=1e-05, elementwise_affine=True)\n"
    "        (mlp): GPT2MLP(\n"
    "          (c_fc): Conv1D(nf=128, nx=32)\n"
    "          (c_proj): Conv1D(nf=32, nx=128)\n"
    "          (act): NewGELUActivation()\n"
    "          (dropout): Dropout(p=0.1, inplace=False)\n"
    "        )\n"
    "      )\n"
    "    )\n"
    "    (ln_f): LayerNorm((32,), eps=1e-05, elementwise_affine=True)\n"
    "  )\n"
    "  (lm_head): Linear(in_features=32, out_features=48, bias=False)\n"
    ")";

/* meta-llama/Llama-2-7b-hf as printed by transformers >= 4.48 (LlamaForCausalLM
 * in modeling_llama.py: one LlamaAttention class, LlamaRMSNorm.extra_repr,
 * the model-level LlamaRotaryEmbedding). */
static const char llama2_7b_repr[] =
    "LlamaForCausalLM(\n"
    "  (model): LlamaModel(\n"
    "    (embed_tokens): Embedding(32000, 4096)\n"
    "    (layers): ModuleList(\n"
    "      (0-31): 32 x LlamaDecoderLayer(\n"
    "        (self_attn): LlamaAttention(\n"
    "          (q_proj): Linear(in_features=4096, out_features=4096, bias=False)\n"
    "          (k_proj): Linear(in_features=4096, out_features=4096, bias=False)\n"
    "          (v_proj): Linear(in_features=4096, out_features=4096, bias=False)\n"
    "          (o_proj): Linear(in_features=4096, out_features=4096, bias=False)\n"
    "        )\n"
    "        (mlp): LlamaMLP(\n"
    "          (gate_proj): Linear(in_features=4096, out_features=11008, bias=False)\n"
    "          (up_proj): Linear(in_features=4096, out_features=11008, bias=False)\n"
    "          (down_proj): Linear(in_features=11008, out_features=4096, bias=False)\n"
    "          (act_fn): SiLU()\n"
    "        )\n"
    "        (input_layernorm): LlamaRMSNorm((4096,), eps=1e-05)\n"
    "        (post_attention_layernorm): LlamaRMSNorm((4096,), eps=1e-05)\n"
    "      )\n"
    "    )\n"
    "    (norm): LlamaRMSNorm((4096,), eps=1e-05)\n"
    "    (rotary_emb): LlamaRotaryEmbedding()\n"
    "  )\n"
    "  (lm_head): Linear(in_features=4096, out_features=32000, bias=False)\n"
    ")";

/* The small test config with grouped-query attention (k/v_proj out 16). */
static const char llama_small_repr[] =
    "LlamaForCausalLM(\n"
    "  (model): LlamaModel(\n"
    "    (embed_tokens): Embedding(40, 32)\n"
    "    (layers): ModuleList(\n"
    "      (0-1): 2 x LlamaDecoderLayer(\n"
    "        (self_attn): LlamaAttention(\n"
    "          (q_proj): Linear(in_features=32, out_features=32, bias=False)\n"
    "          (k_proj): Linear(in_features=32, out_features=16, bias=False)\n"
    "          (v_proj): Linear(in_features=32, out_features=16, bias=False)\n"
    "          (o_proj): Linear(in_features=32, out_features=32, bias=False)\n"
    "        )\n"
    "        (mlp): LlamaMLP(\n"
    "          (gate_proj): Linear(in_features=32, out_features=48, bias=False)\n"
    "          (up_proj): Linear(in_features=32, out_features=48, bias=False)\n"
    "          (down_proj): Linear(in_features=48, out_features=32, bias=False)\n"
    "          (act_fn): SiLU()\n"
    "        )\n"
    "        (input_layernorm): LlamaRMSNorm((32,), eps=1e-05)\n"
    "        (post_attention_layernorm): LlamaRMSNorm((32,), eps=1e-05)\n"
    "      )\n"
    "    )\n"
    "    (norm): LlamaRMSNorm((32,), eps=1e-05)\n"
    "    (rotary_emb): LlamaRotaryEmbedding()\n"
    "  )\n"
    "  (lm_head): Linear(in_features=32, out_features=40, bias=False)\n"
    ")";

START_TEST(test_repr_and_sizes) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    char *want = gbt_get_str(o, "gpt2.repr");
    assert_str(gpt2_small_repr, want, "quoted GPT-2 text vs torch's print of the reference");
    gb_module *m = gb_gpt2_new(&gpt2_small);
    char *got = gb_module_repr(m);
    assert_str(got, gpt2_small_repr, "GPT-2 small");
    free(got), free(want);
    gb_module_free(m);

    want = gbt_get_str(o, "llama.repr");
    assert_str(llama_small_repr, want, "quoted Llama text vs torch's print of the reference");
    m = gb_llama_new(&llama_small);
    got = gb_module_repr(m);
    assert_str(got, llama_small_repr, "Llama small");
    free(got), free(want);
    gb_module_free(m);

    /* The real sizes, shape-only (no 500 MB of zeros). Parameter counts are
     * Hugging Face's num_parameters(): 124,439,808 for GPT-2 (lm_head tied)
     * and 6,738,415,616 for Llama-2-7B (untied). */
    gb__meta_push();
    m = gb_gpt2_new(&gpt2_124m);
    gb_module *l = gb_llama_new(&llama2_7b);
    gb__meta_pop();
    gbt_ok(m), gbt_ok(l);
    got = gb_module_repr(m);
    assert_str(got, gpt2_124m_repr, "GPT-2 124M");
    free(got);
    ck_assert_int_eq(gb_module_num_parameters(m), 124439808);
    got = gb_module_repr(l);
    assert_str(got, llama2_7b_repr, "Llama-2-7B");
    free(got);
    ck_assert_int_eq(gb_module_num_parameters(l), 6738415616LL);
    gb_module_free(m), gb_module_free(l);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_parameter_names_and_ties) {
    gb_module *m = gb_gpt2_new(&gpt2_small);
    const char **names;
    gb_tensor **ps;
    int n = gb_module_parameters(m, &names, &ps);
    /* Hugging Face's state-dict names, lm_head.weight tied (listed once). */
    ck_assert_int_eq(n, 2 + 2 * 12 + 2);
    ck_assert_str_eq(names[0], "transformer.wte.weight");
    ck_assert_str_eq(names[2], "transformer.h.0.ln_1.weight");
    ck_assert_str_eq(names[4], "transformer.h.0.attn.c_attn.weight");
    ck_assert_int_eq(gb_tensor_dim(ps[4], 0), 32); /* Conv1D weight [nx, nf] */
    ck_assert_int_eq(gb_tensor_dim(ps[4], 1), 96);
    ck_assert_str_eq(names[n - 1], "transformer.ln_f.bias");
    ck_assert_ptr_eq(gb_module_param(gb_module_find(m, "lm_head"), "weight"),
                     gb_module_param(gb_module_find(m, "transformer.wte"), "weight"));
    free(names), free(ps);
    /* Init: the tied lm_head keeps the embedding's N(0, 1), not Linear's U(-1/sqrt(32), 1/sqrt(32)). */
    gb_module_init(m, 3);
    const float *w = gb_tensor_f32(gb_module_param(gb_module_find(m, "lm_head"), "weight"));
    float mx = 0;
    for (int i = 0; i < 48 * 32; i++) mx = fabsf(w[i]) > mx ? fabsf(w[i]) : mx;
    ck_assert_msg(mx > 1.0f, "tied lm_head weight was re-initialised as a Linear (max |w| = %g)", mx);
    gb_module_free(m);

    gb_llama_config tied = llama_small;
    tied.tie_word_embeddings = true;
    tied.attention_bias = tied.mlp_bias = true;
    gb_module *l = gb_llama_new(&tied);
    ck_assert_ptr_eq(gb_module_param(gb_module_find(l, "lm_head"), "weight"),
                     gb_module_param(gb_module_find(l, "model.embed_tokens"), "weight"));
    ck_assert_ptr_nonnull(gb_module_param(gb_module_find(l, "model.layers.1.self_attn.k_proj"), "bias"));
    ck_assert_ptr_nonnull(gb_module_param(gb_module_find(l, "model.layers.-1.mlp.down_proj"), "bias"));
    /* embed 40*32; per layer q,o 32*32+32, k,v 32*16+16, mlp 2*(32*48+48) + 48*32+32, norms 2*32; norm 32 */
    int64_t per_layer = 2 * (32 * 32 + 32) + 2 * (32 * 16 + 16) + 2 * (32 * 48 + 48) + (48 * 32 + 32) + 2 * 32;
    ck_assert_int_eq(gb_module_num_parameters(l), 40 * 32 + 2 * per_layer + 32);
    /* The rotary inv_freq is a buffer, not a parameter. */
    gb_module *rot = gb_module_find(l, "model.rotary_emb");
    ck_assert_int_eq(gb_module_num_params(rot), 1);
    ck_assert_ptr_nonnull(gb_module_param(rot, "inv_freq"));
    gb_module_free(l);
}
END_TEST

/* ---- GPT-2 -------------------------------------------------------------- */

START_TEST(test_gpt2_blocks) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = gpt2_loaded(o);
    gb_tensor *x = gbt_get(o, "gpt2.x");
    watch w = {.path = "transformer.h.0.attn.attn_weights", .kind = GB_EVENT_POINT};
    gb_run *run = watched_run(&w);
    static const part parts[] = {{"transformer.h.0.attn", "gpt2.attn_out", 1},
                                 {"transformer.h.0.mlp", "gpt2.mlp_out", 1},
                                 {"transformer.h.0", "gpt2.block_out", 1}};
    check_parts(m, o, run, &w, "gpt2.attn_weights", parts, 3, &x);
    gb_tensor_free(w.got), gb_tensor_free(x);
    gb_run_free(run);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_gpt2_model_and_padding) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = gpt2_loaded(o);
    check_model_and_padding(m, o, "gpt2", "GPT-2");
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* Feed the prompt and then tokens one at a time with the cache; each step's
 * logits equal the full forward's (computed by torch without a cache).
 * With a mask, the mask grows with the tokens. */
static void cache_steps(gb_module *m, gbt_oracle *o, const char *prefix, const char *logits_key, const char *mask_key,
                        int prompt, const char *block_path) {
    gb_tensor *ids = gbt_getf(o, "%s.ids", prefix), *full = gbt_getf(o, "%s.%s", prefix, logits_key);
    gb_tensor *mask = mask_key ? gbt_getf(o, "%s.%s", prefix, mask_key) : NULL;
    int64_t T = gb_tensor_dim(ids, 1);
    watch w = {.path = block_path, .kind = GB_EVENT_OUTPUT};
    gb_run *run = watched_run(&w);
    gb_run_use_cache(run, true);
    for (int64_t t = 0; t < T;) {
        int64_t len = t == 0 ? prompt : 1;
        gb_tensor *sv = gb_narrow(ids, 1, t, len), *step = gb_contiguous(sv);
        gb_tensor *sm = mask ? gb_narrow(mask, 1, 0, t + len) : NULL;
        gb_tensor_free(sv);
        gb_run_set_attention_mask(run, sm);
        gb_values out = {0};
        gbt_ok_status(call(m, run, 1, &step, &out));
        gb_tensor *want = gb_narrow(full, 1, t, len), *got = gb_tensor_ref(out.v[0]);
        if (mask) {
            /* A padded query sees no key: it attends uniformly over all S keys,
             * so its output depends on how many keys exist yet. Real tokens
             * never see padded keys: compare those. */
            gb_tensor *mv = gb_narrow(mask, 1, t, len), *mf = gb_to_dtype(mv, GB_DTYPE_F32), *mu = gb_unsqueeze(mf, -1);
            gb_tensor *w2 = gb_mul(want, mu), *g2 = gb_mul(got, mu);
            gb_tensor_free(want), gb_tensor_free(got), gb_tensor_free(mv), gb_tensor_free(mf), gb_tensor_free(mu);
            want = w2, got = g2;
        }
        char what[96];
        snprintf(what, sizeof what, "%s cached logits at %lld (+%lld)", prefix, (long long)t, (long long)len);
        gbt_assert_close(got, want, 1e-4, 2e-4, what);
        gb_tensor_free(got);
        /* The block returns (hidden_states, key, value) with the whole cache. */
        ck_assert_int_eq(w.nvalues, 3);
        t += len;
        ck_assert_int_eq(gb_run_cache_length(run), t);
        gb_values_clear(&out);
        gb_tensor_free(want), gb_tensor_free(step), gb_tensor_free(sm);
    }
    gb_tensor_free(w.got);
    gb_run_free(run);
    gb_tensor_free(mask), gb_tensor_free(full), gb_tensor_free(ids);
}

/* Observer keeping the key (value 1) of one module's output. */
static gb_status keep_key(gb_event *ev, void *ctx) {
    watch *w = ctx;
    if (ev->kind == GB_EVENT_OUTPUT && !strcmp(ev->path, w->path) && ev->values->n == 3) {
        gb_tensor_free(w->got);
        w->got = gb_tensor_ref(ev->values->v[1]);
    }
    return GB_OK;
}

static void check_cache_shapes(gb_module *m, gbt_oracle *o, const char *prefix, const char *block_path,
                               int64_t kv_heads, int64_t head_dim) {
    gb_tensor *ids = gbt_getf(o, "%s.ids", prefix);
    gb_run *run = gb_run_new();
    watch w = {.path = block_path};
    gb_run_set_observer(run, keep_key, &w);
    gb_run_use_cache(run, true);
    gb_values out = {0};
    gbt_ok_status(call(m, run, 1, &ids, &out));
    gb_values_clear(&out);
    gb_tensor *first = gb_narrow(ids, 1, 0, 1), *one = gb_contiguous(first);
    gb_tensor_free(first);
    gbt_ok_status(call(m, run, 1, &one, &out));
    gb_values_clear(&out);
    gbt_ok(w.got);
    ck_assert_int_eq(gb_tensor_ndim(w.got), 4);
    ck_assert_int_eq(gb_tensor_dim(w.got, 0), gb_tensor_dim(ids, 0));
    ck_assert_int_eq(gb_tensor_dim(w.got, 1), kv_heads);
    ck_assert_int_eq(gb_tensor_dim(w.got, 2), gb_tensor_dim(ids, 1) + 1);
    ck_assert_int_eq(gb_tensor_dim(w.got, 3), head_dim);
    /* Turning the cache off forgets it. */
    gb_run_use_cache(run, false);
    ck_assert_int_eq(gb_run_cache_length(run), 0);
    gb_tensor_free(w.got), gb_tensor_free(one), gb_tensor_free(ids);
    gb_run_free(run);
}

START_TEST(test_gpt2_kv_cache) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = gpt2_loaded(o);
    cache_steps(m, o, "gpt2", "logits", NULL, 1, "transformer.h.1");
    cache_steps(m, o, "gpt2", "logits", NULL, 3, "transformer.h.0");
    cache_steps(m, o, "gpt2", "pad_logits", "pad_mask", 4, "transformer.h.1");
    check_cache_shapes(m, o, "gpt2", "transformer.h.1", 4, 8);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* d/dparams and d/dx of sum(block(x) * r) through a whole block. */
static void block_backward(gb_module *block, gbt_oracle *o, const char *prefix, const char *grad_prefix, int n,
                           gb_tensor *const *extra) {
    gbt_ok_status(gb_module_requires_grad_(block, true));
    gb_tensor *x = gbt_getf(o, "%s.x", prefix), *r = gbt_getf(o, "%s.%s_r", prefix, grad_prefix);
    gbt_ok_status(gb_requires_grad_(x, true));
    gb_tensor *xs[3] = {x, n > 1 ? extra[0] : NULL, n > 2 ? extra[1] : NULL};
    gb_run *run = gb_run_new();
    gb_values out = {0};
    gbt_ok_status(call(block, run, n, xs, &out));
    gb_tensor *yr = gb_mul(out.v[0], r), *loss = gb_sum_all(yr);
    gbt_ok_status(gb_backward(loss, NULL, false));
    char what[160];
    gb_tensor *want = gbt_getf(o, "%s.%s_grad.x", prefix, grad_prefix);
    gbt_assert_close(gb_tensor_grad(x), want, 1e-3, 1e-4, "d/dx");
    gb_tensor_free(want);
    const char **names;
    gb_tensor **ps;
    int np = gb_module_parameters(block, &names, &ps);
    ck_assert_int_gt(np, 5);
    for (int i = 0; i < np; i++) {
        want = gbt_getf(o, "%s.%s_grad.%s", prefix, grad_prefix, names[i]);
        snprintf(what, sizeof what, "%s d/d%s", prefix, names[i]);
        gbt_assert_close(gb_tensor_grad(ps[i]), want, 1e-3, 1e-4, what);
        gb_tensor_free(want);
    }
    free(names), free(ps);
    gb_values_clear(&out);
    gb_tensor_free(yr), gb_tensor_free(loss), gb_tensor_free(x), gb_tensor_free(r);
    gb_run_free(run);
}

START_TEST(test_gpt2_backward) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = gpt2_loaded(o);
    block_backward(gb_module_find(m, "transformer.h.0"), o, "gpt2", "block", 1, NULL);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* ---- Llama -------------------------------------------------------------- */

START_TEST(test_llama_blocks) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = llama_loaded(o, &llama_small, "llama");
    gb_tensor *x = gbt_get(o, "llama.x"), *cos = gbt_get(o, "llama.cos"), *sin = gbt_get(o, "llama.sin");
    watch w = {.path = "model.layers.0.self_attn.attn_weights", .kind = GB_EVENT_POINT};
    gb_run *run = watched_run(&w);
    gb_values out = {0};
    /* LlamaRotaryEmbedding(x, position_ids) -> (cos, sin) */
    gb_tensor *pos = gb_arange_i64(0, 5, 1), *pos2 = gb_reshape(pos, 2, (int64_t[]){1, 5});
    gbt_ok_status(call(gb_module_find(m, "model.rotary_emb"), run, 2, (gb_tensor *[]){x, pos2}, &out));
    ck_assert_int_eq(out.n, 2);
    gbt_assert_close(out.v[0], cos, 1e-5, 1e-6, "cos");
    gbt_assert_close(out.v[1], sin, 1e-5, 1e-6, "sin");
    gb_values_clear(&out);
    static const part parts[] = {{"model.layers.0.self_attn", "llama.attn_out", 3},
                                 {"model.layers.0.mlp", "llama.mlp_out", 1},
                                 {"model.layers.0", "llama.layer_out", 3}};
    check_parts(m, o, run, &w, "llama.attn_weights", parts, 3, (gb_tensor *[]){x, cos, sin});
    gb_tensor_free(w.got);
    gb_tensor_free(pos), gb_tensor_free(pos2), gb_tensor_free(x), gb_tensor_free(cos), gb_tensor_free(sin);
    gb_run_free(run);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_llama_model_and_padding) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = llama_loaded(o, &llama_small, "llama");
    check_model_and_padding(m, o, "llama", "Llama");
    /* Explicit position ids equal to the default arange give the same logits. */
    gb_tensor *ids = gbt_get(o, "llama.ids"), *mask = gbt_get(o, "llama.pad_mask");
    gb_tensor *want = gbt_get(o, "llama.pad_logits");
    gb_tensor *p = gb_arange_i64(0, 6, 1), *p2 = gb_reshape(p, 2, (int64_t[]){1, 6});
    gb_run *run = gb_run_new();
    gb_run_set_attention_mask(run, mask);
    gb_run_set_position_ids(run, p2);
    gb_values out = {0};
    gbt_ok_status(call(m, run, 1, &ids, &out));
    gbt_assert_close(out.v[0], want, 1e-4, 1e-4, "Llama logits with position ids");
    gb_values_clear(&out);
    gb_tensor_free(p), gb_tensor_free(p2);
    gb_tensor_free(mask), gb_tensor_free(want), gb_tensor_free(ids);
    gb_run_free(run);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_llama_kv_cache) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = llama_loaded(o, &llama_small, "llama");
    cache_steps(m, o, "llama", "logits", NULL, 1, "model.layers.1");
    cache_steps(m, o, "llama", "pad_logits", "pad_mask", 4, "model.layers.0");
    check_cache_shapes(m, o, "llama", "model.layers.1", 2, 8); /* kv heads, before repeat_kv */
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_llama_backward) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = llama_loaded(o, &llama_small, "llama");
    gb_tensor *cos = gbt_get(o, "llama.cos"), *sin = gbt_get(o, "llama.sin");
    block_backward(gb_module_find(m, "model.layers.0"), o, "llama", "layer", 3, (gb_tensor *[]){cos, sin});
    gb_tensor_free(cos), gb_tensor_free(sin);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* rope_scaling llama3 over 300 positions (original_max_position_embeddings
 * 64): the buffer, the logits, and the same steps through the cache. */
START_TEST(test_llama3_rope_long) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    gb_module *m = llama_loaded(o, &llama_long, "long");
    gb_tensor *want = gbt_get(o, "long.inv_freq");
    gbt_assert_close(gb_module_param(gb_module_find(m, "model.rotary_emb"), "inv_freq"), want, 1e-6, 0,
                     "llama3 inv_freq");
    gb_tensor_free(want);
    gb_tensor *ids = gbt_get(o, "long.ids"), *y = NULL;
    want = gbt_get(o, "long.logits");
    gbt_ok_status(gb_module_run(m, NULL, ids, &y));
    gbt_assert_close(y, want, 1e-3, 1e-3, "llama3 logits over 300 positions");
    gb_tensor_free(y);
    /* Positions 290.. through the cache after a 290-token prompt. */
    gb_run *run = gb_run_new();
    gb_run_use_cache(run, true);
    for (int64_t t = 0; t < 300;) {
        int64_t len = t == 0 ? 290 : 1;
        gb_tensor *step = gb_narrow(ids, 1, t, len), *w = gb_narrow(want, 1, t, len);
        gbt_ok_status(gb_module_run(m, run, step, &y));
        gbt_assert_close(y, w, 1e-3, 1e-3, "llama3 logits through the cache");
        gb_tensor_free(y), gb_tensor_free(step), gb_tensor_free(w);
        t += len;
    }
    gb_run_free(run);
    gb_tensor_free(want), gb_tensor_free(ids);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* ---- runs: stopping, observer errors, shape-only ------------------------ */

typedef struct {
    const char *path;
    gb_event_kind kind;
    gb_status status;
    int seen;
} stopper;

static gb_status stop_at(gb_event *ev, void *ctx) {
    stopper *s = ctx;
    if (ev->kind != s->kind || strcmp(ev->path, s->path)) return GB_OK;
    s->seen++;
    if (s->status != GB_STOPPED) return gb__fail(s->status, "observer refused %s", ev->path);
    return GB_STOPPED;
}

START_TEST(test_stop_and_observer_errors) {
    gb_module *g = gb_gpt2_new(&gpt2_small), *l = gb_llama_new(&llama_small);
    gb_module_init(g, 1), gb_module_init(l, 1);
    gb_tensor *ids = gb_zeros(2, (int64_t[]){2, 5}, GB_DTYPE_I64);
    static const struct {
        int model;
        const char *path;
        gb_event_kind kind;
        gb_status status;
        int64_t out_dim; /* last dim of what the stopped run returns; 0: nothing */
        int64_t cached;  /* cache length after: the pass advances it only when the body finished */
    } cases[] = {
        {0, "transformer.h.0", GB_EVENT_OUTPUT, GB_STOPPED, 32, 0},
        {0, "transformer.h.1.attn.attn_weights", GB_EVENT_POINT, GB_STOPPED, 0, 0},
        {0, "transformer.h.0.mlp.act", GB_EVENT_OUTPUT, GB_STOPPED, 128, 0},
        {0, "transformer.h.1.attn.resid_dropout", GB_EVENT_INPUT, GB_STOPPED, 0, 0},
        {0, "transformer.wpe", GB_EVENT_OUTPUT, GB_ERR_ARG, 32, 0},
        {0, "lm_head", GB_EVENT_OUTPUT, GB_STOPPED, 48, 5},
        {1, "model.rotary_emb", GB_EVENT_OUTPUT, GB_STOPPED, 8, 0},
        {1, "model.layers.0.self_attn.attn_weights", GB_EVENT_POINT, GB_STOPPED, 0, 0},
        {1, "model.layers.1.mlp.up_proj", GB_EVENT_OUTPUT, GB_STOPPED, 48, 0},
        {1, "model.layers.0.post_attention_layernorm", GB_EVENT_OUTPUT, GB_ERR_NOT_FOUND, 32, 0},
        {1, "model.norm", GB_EVENT_OUTPUT, GB_STOPPED, 32, 0},
        {1, "model", GB_EVENT_OUTPUT, GB_STOPPED, 32, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gb_run *run = gb_run_new();
        stopper s = {cases[i].path, cases[i].kind, cases[i].status, 0};
        gb_run_set_observer(run, stop_at, &s);
        gb_run_use_cache(run, true);
        gb_values out = {0};
        gb_status st = call(cases[i].model ? l : g, run, 1, &ids, &out);
        ck_assert_msg(st == cases[i].status, "%s: status %s (%s)", cases[i].path, gb_status_name(st), gb_last_error());
        ck_assert_int_eq(s.seen, 1);
        if (st != GB_STOPPED) ck_assert_msg(strstr(gb_last_error(), "observer refused") != NULL, "%s", gb_last_error());
        if (cases[i].out_dim) {
            ck_assert_msg(out.n >= 1 && out.v[0], "%s: the stopped run lost its output", cases[i].path);
            ck_assert_int_eq(gb_tensor_dim(out.v[0], -1), cases[i].out_dim);
        }
        ck_assert_int_eq(gb_run_cache_length(run), cases[i].cached);
        gb_values_clear(&out);
        gb_run_free(run);
    }
    gb_tensor_free(ids);
    gb_module_free(g), gb_module_free(l);
}
END_TEST

/* Meta mode (the tracer's scan): the whole forward on shapes only. */
START_TEST(test_meta_run) {
    gb_module *g = gb_gpt2_new(&gpt2_small), *l = gb_llama_new(&llama_long);
    gb_tensor *ids = gb_zeros(2, (int64_t[]){3, 7}, GB_DTYPE_I64);
    gb_tensor *mask = gb_ones(2, (int64_t[]){3, 7}, GB_DTYPE_I64);
    gb_module *models[2] = {g, l};
    int64_t vocab[2] = {48, 40};
    for (int i = 0; i < 2; i++) {
        gb_run *run = gb_run_new();
        gb_run_set_attention_mask(run, mask);
        gb_tensor *y = NULL;
        gb__meta_push();
        gb_status st = gb_module_run(models[i], run, ids, &y);
        gb__meta_pop();
        gbt_ok_status(st);
        ck_assert(gb__is_meta(y));
        ck_assert_int_eq(gb_tensor_ndim(y), 3);
        ck_assert_int_eq(gb_tensor_dim(y, 0), 3);
        ck_assert_int_eq(gb_tensor_dim(y, 1), 7);
        ck_assert_int_eq(gb_tensor_dim(y, 2), vocab[i]);
        gb_tensor_free(y);
        gb_run_free(run);
    }
    gb_tensor_free(ids), gb_tensor_free(mask);
    gb_module_free(g), gb_module_free(l);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_errors) {
    gb_gpt2_config gc = gpt2_small;
    gc.n_head = 5;
    gbt_fails_with(gb_gpt2_new(&gc) == NULL, GB_ERR_ARG,
                   "`embed_dim` must be divisible by num_heads (got `embed_dim`: 32 and `num_heads`: 5)");
    gc = gpt2_small;
    snprintf(gc.activation_function, sizeof gc.activation_function, "gelu_fast");
    gbt_fails_with(gb_gpt2_new(&gc) == NULL, GB_ERR_UNSUPPORTED,
                   "gpt2_new: activation: function 'gelu_fast' not found");
    gc = gpt2_small;
    gc.n_layer = -1;
    gbt_fails_with(gb_gpt2_new(&gc) == NULL, GB_ERR_ARG, "n_layer=-1");
    gbt_fails_with(gb_gpt2_new(NULL) == NULL, GB_ERR_ARG, "config is NULL");

    gb_llama_config lc = llama_small;
    lc.num_attention_heads = 5;
    lc.num_key_value_heads = 5;
    gbt_fails_with(gb_llama_new(&lc) == NULL, GB_ERR_ARG,
                   "hidden_size (32) is not divisible by num_attention_heads (5)");
    lc = llama_small;
    lc.num_key_value_heads = 3;
    gbt_fails_with(gb_llama_new(&lc) == NULL, GB_ERR_ARG,
                   "num_attention_heads (4) is not a multiple of num_key_value_heads (3)");
    lc = llama_small;
    snprintf(lc.rope_type, sizeof lc.rope_type, "yarn");
    gbt_fails_with(gb_llama_new(&lc) == NULL, GB_ERR_UNSUPPORTED, "rope_scaling type 'yarn' is not supported");
    lc = llama_long;
    lc.rope_high_freq_factor = 0.5;
    gbt_fails_with(gb_llama_new(&lc) == NULL, GB_ERR_ARG, "rope_scaling llama3 needs");
    lc = llama_small;
    snprintf(lc.hidden_act, sizeof lc.hidden_act, "tanhh");
    gbt_fails_with(gb_llama_new(&lc) == NULL, GB_ERR_UNSUPPORTED, "'tanhh' not found in ACT2FN");

    gb_module *g = gb_gpt2_new(&gpt2_small), *l = gb_llama_new(&llama_small);
    gb_tensor *y = NULL;
    gb_tensor *fids = gb_zeros(2, (int64_t[]){1, 3}, GB_DTYPE_F32);
    gbt_fails_with(gb_module_run(g, NULL, fids, &y) != GB_OK, GB_ERR_DTYPE,
                   "transformer (GPT2Model): input_ids must be int64 or int32 token ids, got float32 [1, 3]");
    gbt_fails_with(gb_module_run(l, NULL, fids, &y) != GB_OK, GB_ERR_DTYPE,
                   "model (LlamaModel): input_ids must be int64");
    gb_tensor *flat = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_I64);
    gbt_fails_with(gb_module_run(g, NULL, flat, &y) != GB_OK, GB_ERR_SHAPE, "input_ids must be [batch, seq_len]");
    /* Past n_positions: wpe names itself. */
    gb_tensor *long_ids = gb_zeros(2, (int64_t[]){1, 41}, GB_DTYPE_I64);
    gbt_fails_with(gb_module_run(g, NULL, long_ids, &y) != GB_OK, GB_ERR_INDEX, "transformer.wpe (Embedding)");
    /* An attention mask of the wrong length. */
    gb_tensor *ids = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_I64), *mask = gb_ones(2, (int64_t[]){2, 4}, GB_DTYPE_I64);
    gb_run *run = gb_run_new();
    gb_run_set_attention_mask(run, mask);
    gbt_fails_with(gb_module_run(g, run, ids, &y) != GB_OK, GB_ERR_SHAPE,
                   "transformer.h.0.attn (GPT2Attention): attention_mask has shape [2, 4], expected [2, 3]");
    gbt_fails_with(gb_module_run(l, run, ids, &y) != GB_OK, GB_ERR_SHAPE,
                   "model.layers.0.self_attn (LlamaAttention): attention_mask");
    gb_run_set_attention_mask(run, NULL);
    gb_tensor *pos = gb_zeros(2, (int64_t[]){2, 5}, GB_DTYPE_I64);
    gb_run_set_position_ids(run, pos);
    gbt_fails_with(gb_module_run(l, run, ids, &y) != GB_OK, GB_ERR_SHAPE,
                   "position_ids has shape [2, 5], expected [2, 3]");
    gb_run_set_position_ids(run, NULL);
    /* Blocks called with the wrong inputs. */
    gb_tensor *h = gb_zeros(3, (int64_t[]){1, 3, 32}, GB_DTYPE_F32),
              *h7 = gb_zeros(3, (int64_t[]){1, 3, 7}, GB_DTYPE_F32);
    gb_values out = {0};
    gbt_fails_with(call(gb_module_find(l, "model.layers.0"), run, 1, &h, &out) != GB_OK, GB_ERR_ARG,
                   "model.layers.0 (LlamaDecoderLayer): expects (hidden_states, cos, sin)");
    gbt_fails_with(
        call(gb_module_find(g, "transformer.h.0.attn"), run, 1, &h7, &out) != GB_OK, GB_ERR_SHAPE,
        "transformer.h.0.attn (GPT2Attention): hidden_states must be [batch, seq_len, 32], got shape [1, 3, 7]");
    gbt_fails_with(call(gb_module_find(l, "model.layers.0.self_attn"), run, 3, (gb_tensor *[]){h, h7, h7}, &out) !=
                       GB_OK,
                   GB_ERR_SHAPE, "cos has shape [1, 3, 7], expected [1, 3, 8] (or batch 1)");
    gbt_fails_with(gb_module_run(gb_module_find(g, "transformer.h"), run, h, &y) != GB_OK, GB_ERR_STATE,
                   "a ModuleList is not callable");
    ck_assert_int_eq(out.n, 0);
    gb_run_free(run);
    gb_tensor_free(fids), gb_tensor_free(flat), gb_tensor_free(long_ids), gb_tensor_free(ids), gb_tensor_free(mask);
    gb_tensor_free(pos), gb_tensor_free(h), gb_tensor_free(h7);
    gb_module_free(g), gb_module_free(l);
}
END_TEST

Suite *gb_suite_nn_models(void) {
    Suite *s = suite_create("nn_models");
    TCase *tc = tcase_create("models");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_repr_and_sizes);
    tcase_add_test(tc, test_parameter_names_and_ties);
    tcase_add_test(tc, test_gpt2_blocks);
    tcase_add_test(tc, test_gpt2_model_and_padding);
    tcase_add_test(tc, test_gpt2_kv_cache);
    tcase_add_test(tc, test_gpt2_backward);
    tcase_add_test(tc, test_llama_blocks);
    tcase_add_test(tc, test_llama_model_and_padding);
    tcase_add_test(tc, test_llama_kv_cache);
    tcase_add_test(tc, test_llama_backward);
    tcase_add_test(tc, test_llama3_rope_long);
    tcase_add_test(tc, test_stop_and_observer_errors);
    tcase_add_test(tc, test_meta_run);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}
