/* Tiny GPT-2, Llama and Mistral checkpoints in Hugging Face layout (f32,
 * f16, bf16, single file and sharded, both GPT-2 namings, Llama 3 GQA + rope
 * scaling, Mistral's sliding window), opened with gb_model_open (f16/bf16
 * weights kept as stored) and compared block by block, in activation
 * gradients and in greedy decoding with the PyTorch reference forward of
 * tests/fixtures/make_models.py, which upcasts the stored weights (see
 * docs/fixtures.md); and the f16/bf16 ones through traces, invokes,
 * generation and edits as stored and converted to f32 at opening. */
#include <stdlib.h>
#include <string.h>

#include "gbtest.h"
#include "tensor/tensor_impl.h"

static const char *const variants[] = {"gpt2",  "gpt2-openai",         "gpt2-f16-sharded", "gpt2-bf16",
                                       "llama", "llama3-bf16-sharded", "llama3-f16",       "mistral",
                                       "mistral-nowindow-bf16"};
static const char *const lowp_variants[] = {"gpt2-f16-sharded", "gpt2-bf16", "llama3-bf16-sharded", "llama3-f16",
                                            "mistral-nowindow-bf16"};
enum {
    NVARIANTS = sizeof variants / sizeof variants[0],
    NLOWP = sizeof lowp_variants / sizeof lowp_variants[0],
    NCASES = 3
};
static const char *const cases[NCASES] = {"single", "batch", "batch_nopos"};

/* The stored dtype, as the variant's name says. */
static gb_dtype stored_dtype(const char *variant) {
    return strstr(variant, "bf16") ? GB_DTYPE_BF16 : strstr(variant, "f16") ? GB_DTYPE_F16 : GB_DTYPE_F32;
}

static gb_model *open_variant(const char *variant, bool f32_weights) {
    char dir[4096];
    gb_model *m = gb_model_open(gbt_fixture_dir(dir, sizeof dir, variant), &(gb_model_opts){.f32_weights = f32_weights});
    gbt_ok(m);
    gb_tensor *head = gb_module_param(gb_module_find(gb_model_module(m), "lm_head"), "weight");
    ck_assert_msg(gb_tensor_dtype(head) == (f32_weights ? GB_DTYPE_F32 : stored_dtype(variant)),
                  "%s: lm_head.weight is %s", variant, gb_dtype_name(gb_tensor_dtype(head)));
    return m;
}

static const char *blocks_path(const gb_model *m) { return strcmp(gb_model_type(m), "gpt2") ? "model.layers" : "transformer.h"; }
static int64_t num_layers(const gb_model *m) {
    return gb_model_gpt2_config(m) ? gb_model_gpt2_config(m)->n_layer : gb_model_llama_config(m)->num_hidden_layers;
}

/* The residual streams of these large-weight fixtures grow to ~100, so f32
 * rounding shows up as absolute errors of ~1e-4 there: the absolute
 * tolerance is 1e-5 of the tensor's largest magnitude. For the logits
 * (largest ~12) that is ~1.2e-4, still 20x under the 2.5e-3 that an
 * exact-GELU mistake causes (docs/fixtures.md). */
#define RTOL 1e-5
#define ATOL_SCALE 1e-5

static double max_abs(const gb_tensor *t) {
    gb_tensor *a = gb_abs((gb_tensor *)t), *m = gb_max_all(a);
    double v = 0;
    gb_item(m, &v);
    gb_tensor_free(m), gb_tensor_free(a);
    return v;
}

/* Compare rows: row 0 fully; in batches, row 1 only where the mask is 1
 * (its last 4 positions: padded queries have no meaningful output). */
static void compare_tol(gb_tensor *got, gb_tensor *want, bool batch, double rtol, double atol_scale,
                        const char *what) {
    double atol = atol_scale * max_abs(want);
    if (!batch) {
        gbt_assert_close(got, want, rtol, atol, what);
        return;
    }
    gb_tensor *g0 = gb_narrow(got, 0, 0, 1), *w0 = gb_narrow(want, 0, 0, 1);
    gb_tensor *g1r = gb_narrow(got, 0, 1, 1), *w1r = gb_narrow(want, 0, 1, 1);
    gb_tensor *g1 = gb_narrow(g1r, 1, 3, 4), *w1 = gb_narrow(w1r, 1, 3, 4);
    gbt_assert_close(g0, w0, rtol, atol, what);
    gbt_assert_close(g1, w1, rtol, atol, what);
    gb_tensor *all[] = {g0, w0, g1r, w1r, g1, w1};
    for (int i = 0; i < 6; i++) gb_tensor_free(all[i]);
}

static void compare(gb_tensor *got, gb_tensor *want, bool batch, const char *what) {
    compare_tol(got, want, batch, RTOL, ATOL_SCALE, what);
}

START_TEST(test_fixture_matches_pytorch) {
    const char *variant = variants[_i / NCASES], *cs = cases[_i % NCASES];
    bool gpt2 = !strncmp(variant, "gpt2", 4), batch = strcmp(cs, "single") != 0;
    gbt_oracle *o = gbt_oracle_load("models");
    gb_model *m = open_variant(variant, false);
    gb_tensor *ids = gbt_getf(o, batch ? "%s.batch.ids" : "%s.ids", variant);
    gb_trace *tr = gb_trace_new(gb_model_module(m), ids);
    gb_tensor *mask = NULL, *pos = NULL;
    if (batch) {
        mask = gbt_getf(o, "%s.batch.mask", variant);
        gb_trace_set_attention_mask(tr, mask);
        if (!strcmp(cs, "batch")) {
            pos = gbt_getf(o, "%s.batch.pos", variant);
            gb_trace_set_position_ids(tr, pos);
        }
    }
    const char *blocks = gpt2 ? "transformer.h" : "model.layers";
    int64_t nlayers = gpt2 ? gb_model_gpt2_config(m)->n_layer : gb_model_llama_config(m)->num_hidden_layers;
    char path[64];
    snprintf(path, sizeof path, "%s.0", blocks);
    gb_val *embed = gb_save(gb_input(tr, path));
    gb_val *block[8];
    for (int64_t i = 0; i < nlayers && i < 8; i++) {
        snprintf(path, sizeof path, "%s.%lld", blocks, (long long)i);
        block[i] = gb_save(gb_val_index(gb_output(tr, path), "[0]"));
    }
    gb_val *final = gb_save(gb_output(tr, gpt2 ? "transformer.ln_f" : "model.norm"));
    gb_val *logits = gb_save(gb_output(tr, "lm_head"));
    gbt_ok_status(gb_trace_run(tr));

    char what[128];
    gb_tensor *want = gbt_getf(o, "%s.%s.embed", variant, cs);
    snprintf(what, sizeof what, "%s %s embed", variant, cs);
    compare(gb_value(embed), want, batch, what);
    gb_tensor_free(want);
    for (int64_t i = 0; i < nlayers && i < 8; i++) {
        want = gbt_getf(o, "%s.%s.block.%lld", variant, cs, (long long)i);
        snprintf(what, sizeof what, "%s %s block %lld", variant, cs, (long long)i);
        compare(gb_value(block[i]), want, batch, what);
        gb_tensor_free(want);
    }
    want = gbt_getf(o, "%s.%s.final", variant, cs);
    snprintf(what, sizeof what, "%s %s final norm", variant, cs);
    compare(gb_value(final), want, batch, what);
    gb_tensor_free(want);
    want = gbt_getf(o, "%s.%s.logits", variant, cs);
    snprintf(what, sizeof what, "%s %s logits", variant, cs);
    compare(gb_value(logits), want, batch, what);
    gb_tensor_free(want);

    gb_trace_free(tr);
    gb_tensor_free(pos), gb_tensor_free(mask), gb_tensor_free(ids);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* Gradients of sum(logits * r) with respect to the embeddings (made to
 * require grad inside the trace) and every block's output, through the
 * weights as stored. Each gradient sums over the vocabulary and back
 * through every later block, so its float32 rounding is ~10x the forward's:
 * 1e-4 relative, absolute 1e-5 of the tensor's largest magnitude. */
START_TEST(test_fixture_activation_gradients) {
    const char *variant = variants[_i];
    gbt_oracle *o = gbt_oracle_load("models");
    gb_model *m = open_variant(variant, false);
    gb_tensor *ids = gbt_getf(o, "%s.ids", variant), *r = gbt_getf(o, "%s.grad.r", variant);
    gb_trace *tr = gb_trace_new(gb_model_module(m), ids);
    char path[64], what[128];
    snprintf(path, sizeof path, "%s.0", blocks_path(m));
    gb_val *embed = gb_input(tr, path);
    gb_requires_grad(embed);
    gb_val *grads[9] = {gb_save(gb_grad(embed))};
    int64_t nlayers = num_layers(m);
    for (int64_t i = 0; i < nlayers && i < 8; i++) {
        snprintf(path, sizeof path, "%s.%lld", blocks_path(m), (long long)i);
        grads[i + 1] = gb_save(gb_grad(gb_val_index(gb_output(tr, path), "[0]")));
    }
    gb_val_backward(gb_val_sum_all(gb_val_mul(gb_output(tr, "lm_head"), gb_const(tr, r))));
    gbt_ok_status(gb_trace_run(tr));
    for (int64_t i = 0; i <= nlayers && i < 9; i++) {
        gb_tensor *want = i ? gbt_getf(o, "%s.grad.block.%lld", variant, (long long)(i - 1))
                            : gbt_getf(o, "%s.grad.embed", variant);
        snprintf(what, sizeof what, "%s gradient of %s", variant, i ? "a block's output" : "the embeddings");
        compare_tol(gb_value(grads[i]), want, false, 1e-4, 1e-5, what);
        gb_tensor_free(want);
    }
    gb_trace_free(tr);
    gb_tensor_free(ids), gb_tensor_free(r);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* Greedy decoding with the KV cache gives the tokens PyTorch chooses
 * recomputing the whole sequence at each step. */
START_TEST(test_fixture_greedy_decoding) {
    const char *variant = variants[_i];
    gbt_oracle *o = gbt_oracle_load("models");
    gb_model *m = open_variant(variant, false);
    gb_tensor *ids = gbt_getf(o, "%s.ids", variant), *want = gbt_getf(o, "%s.greedy", variant);
    gb_trace *tr = gb_trace_new(gb_model_module(m), ids);
    gbt_ok_status(gb_trace_generate(tr, (int)(gb_tensor_dim(want, 1) - gb_tensor_dim(ids, 1))));
    gbt_assert_close(gb_trace_generated(tr), want, 0, 0, variant);
    gb_trace_free(tr);
    gb_tensor_free(ids), gb_tensor_free(want);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* One session of everything a user does with a model (an edit attached,
 * two invokes, values saved at the prompt pass, generation with the KV
 * cache), on the f16/bf16 weights as stored and on the same weights
 * converted to f32 at opening: the same values up to float32 rounding, the
 * same tokens. */
typedef struct session {
    gb_tensor *block0, *logits, *other_logits, *generated;
} session;

static session run_session(gb_model *m, gbt_oracle *o, const char *variant) {
    gb_module *net = gb_model_module(m);
    char b0[64], b1[64];
    snprintf(b0, sizeof b0, "%s.0", blocks_path(m));
    snprintf(b1, sizeof b1, "%s.1", blocks_path(m));
    gb_tensor *ids = gbt_getf(o, "%s.ids", variant), *batch = gbt_getf(o, "%s.batch.ids", variant);
    gb_tensor *other = gb_narrow(batch, 0, 0, 1);
    gb_trace *editor = gb_trace_new(net, NULL); /* block 1's output at the last position, halved */
    gb_val *h1 = gb_val_index(gb_output(editor, b1), "[0]");
    gb_set_index(h1, "[:, -1, :]", gb_val_mul(gb_val_index(h1, "[:, -1, :]"), gb_scalar(editor, 0.5f)));
    gb_trace *tr = gb_trace_new(net, NULL);
    gbt_ok_status(gb_trace_use_edits(tr, editor));
    gbt_ok_status(gb_invoke(tr, ids));
    gb_val *block0 = gb_save(gb_val_index(gb_output(tr, b0), "[0]"));
    gb_val *logits = gb_save(gb_output(tr, "lm_head"));
    gb_invoke_end(tr);
    gbt_ok_status(gb_invoke(tr, other));
    gb_val *other_logits = gb_save(gb_output(tr, "lm_head"));
    gb_invoke_end(tr);
    gbt_ok_status(gb_trace_generate(tr, 5));
    session s = {gb_tensor_ref(gb_value(block0)), gb_tensor_ref(gb_value(logits)),
                 gb_tensor_ref(gb_value(other_logits)), gb_tensor_ref(gb_trace_generated(tr))};
    gbt_ok(s.block0), gbt_ok(s.logits), gbt_ok(s.other_logits), gbt_ok(s.generated);
    gb_trace_free(tr), gb_trace_free(editor);
    gb_tensor_free(ids), gb_tensor_free(batch), gb_tensor_free(other);
    return s;
}

START_TEST(test_fixture_lowp_runs_as_f32) {
    const char *variant = lowp_variants[_i];
    gbt_oracle *o = gbt_oracle_load("models");
    gb_model *stored = open_variant(variant, false), *f32 = open_variant(variant, true);
    session a = run_session(stored, o, variant), b = run_session(f32, o, variant);
    compare(a.block0, b.block0, false, variant);
    compare(a.logits, b.logits, false, variant);
    compare(a.other_logits, b.other_logits, false, variant);
    gbt_assert_close(a.generated, b.generated, 0, 0, variant);
    ck_assert_int_eq(gb_tensor_dim(a.generated, 1), 12);
    session all[2] = {a, b};
    for (int i = 0; i < 2; i++)
        gb_tensor_free(all[i].block0), gb_tensor_free(all[i].logits), gb_tensor_free(all[i].other_logits),
            gb_tensor_free(all[i].generated);
    gb_model_free(stored), gb_model_free(f32);
    gbt_oracle_free(o);
}
END_TEST

/* Converting to f32 is refused, before allocating, when it would not fit;
 * the weights as stored need no memory of their own; an address-space
 * limit is checked too, for the mapping and the conversion. */
START_TEST(test_fixture_f32_conversion_checks_memory) {
    char dir[4096];
    gbt_fixture_dir(dir, sizeof dir, "llama3-bf16-sharded");
    /* 68688 weights (docs/fixtures.md: embeddings 128 x 48, per layer q 64 x 48, k and v 32 x 48, o 48 x 64,
     * gate, up, down 80 x 48, two norms 48; final norm 48; tied head): 0.26 MiB in f32, 0.13 MiB in bf16 */
    gb__mem_available_set(4096);
    gbt_fails_with(gb_model_open(dir, &(gb_model_opts){.f32_weights = true}) == NULL, GB_ERR_ALLOC,
                   "converting its float16/bfloat16 weights to float32 needs 0.3 MiB of memory, but 0.0 MiB is "
                   "available; open it without f32_weights (gb_model_opts; on the command line, without --dtype "
                   "f32) to use the 0.1 MiB of weights as stored");
    gb_model *m = gb_model_open(dir, NULL);
    gb__mem_available_set(0);
    gbt_ok(m);
    gb_model_free(m);
    /* Under an address-space limit (ulimit -v) the mapped files count in
     * full, checked before mapping them (two shards, 0.13 MiB); as
     * stored, the weights need nothing more, converted 0.26 MiB more. */
    gb__address_space_set(4096);
    gbt_fails_with(gb_model_open(dir, NULL) == NULL, GB_ERR_ALLOC,
                   "mapping its 0.1 MiB of weight files needs as much address space, but the process's limit "
                   "(ulimit -v) leaves 0.0 MiB; raise the limit");
    gb__address_space_set(200 << 10);
    gbt_ok(m = gb_model_open(dir, NULL));
    gb_model_free(m);
    gbt_fails_with(gb_model_open(dir, &(gb_model_opts){.f32_weights = true}) == NULL, GB_ERR_ALLOC,
                   "needs 0.3 MiB of memory, but 0.2 MiB is available in the process's address space (ulimit -v) "
                   "beside the weight files; open it without f32_weights");
    gb__address_space_set(0);
}
END_TEST

/* The config's token ids, an int or a list, reach the model. */
START_TEST(test_fixture_token_ids) {
    char dir[4096];
    gb_model *m = gb_model_open(gbt_fixture_dir(dir, sizeof dir, "llama3-bf16-sharded"), NULL);
    gbt_ok(m);
    ck_assert_int_eq(gb_model_bos_id(m), 1);
    ck_assert(gb_model_is_eos(m, 2) && gb_model_is_eos(m, 3) && !gb_model_is_eos(m, 4));
    const gb_llama_config *c = gb_model_llama_config(m);
    ck_assert_int_eq(c->num_key_value_heads, 2);
    ck_assert_int_eq(c->head_dim, 16);
    ck_assert_str_eq(c->rope_type, "llama3");
    gb_model_free(m);
}
END_TEST

/* What `glassbox info` prints of a config: the values of the fixtures'
 * config.json (tests/fixtures/make_models.py, docs/fixtures.md). */
static const struct {
    const char *variant, *want;
} config_strs[] = {
    {"gpt2", "model_type: gpt2\nvocab_size: 96\nn_embd: 32\nn_layer: 3\nn_head: 4\nn_positions: 32\n"
             "activation_function: gelu_new\nlayer_norm_epsilon: 1e-05\n"},
    {"llama3-bf16-sharded",
     "model_type: llama\nvocab_size: 128\nhidden_size: 48\nintermediate_size: 80\nnum_hidden_layers: 3\n"
     "num_attention_heads: 4\nnum_key_value_heads: 2\nhead_dim: 16\nrms_norm_eps: 1e-05\nrope_theta: 500000\n"
     "rope_scaling: llama3\nmax_position_embeddings: 128\ntie_word_embeddings: true\n"},
    {"mistral",
     "model_type: mistral\nvocab_size: 128\nhidden_size: 48\nintermediate_size: 80\nnum_hidden_layers: 3\n"
     "num_attention_heads: 4\nnum_key_value_heads: 2\nhead_dim: 12\nrms_norm_eps: 1e-05\nrope_theta: 10000\n"
     "rope_scaling: none\nmax_position_embeddings: 128\ntie_word_embeddings: false\nsliding_window: 4\n"},
    {"mistral-nowindow-bf16",
     "model_type: mistral\nvocab_size: 128\nhidden_size: 48\nintermediate_size: 80\nnum_hidden_layers: 3\n"
     "num_attention_heads: 4\nnum_key_value_heads: 2\nhead_dim: 16\nrms_norm_eps: 1e-05\nrope_theta: 10000\n"
     "rope_scaling: none\nmax_position_embeddings: 128\ntie_word_embeddings: true\nsliding_window: none\n"},
};

START_TEST(test_fixture_config_str) {
    char dir[4096];
    gb_model *m = gb_model_open(gbt_fixture_dir(dir, sizeof dir, config_strs[_i].variant), NULL);
    gbt_ok(m);
    char *got = gb_model_config_str(m);
    gbt_ok(got);
    ck_assert_str_eq(got, config_strs[_i].want);
    free(got);
    gb_model_free(m);
}
END_TEST

/* gb_model_part: Hugging Face's module names of each family
 * (modeling_gpt2.py, modeling_llama.py; Mistral is Llama's tree), every one
 * a module of the opened tree (the attention pattern a point of a run). */
static const struct {
    const char *type, *parts[GB_PART_COUNT];
} part_names[] = {
    {"gpt2", {"transformer.wte", "transformer.h", "attn", "mlp", "attn.attn_weights", "transformer.ln_f", "lm_head"}},
    {"llama", {"model.embed_tokens", "model.layers", "self_attn", "mlp", "self_attn.attn_weights", "model.norm", "lm_head"}},
    {"mistral", {"model.embed_tokens", "model.layers", "self_attn", "mlp", "self_attn.attn_weights", "model.norm", "lm_head"}},
};

START_TEST(test_fixture_parts) {
    char dir[4096], path[256];
    gb_model *m = gb_model_open(gbt_fixture_dir(dir, sizeof dir, config_strs[_i].variant), NULL);
    gbt_ok(m);
    int k = 0;
    while (strcmp(part_names[k].type, gb_model_type(m))) k++;
    gb_module *root = gb_model_module(m);
    gb_trace *tr = gb_trace_new(root, NULL);
    gb_tensor *ids = gb_zeros(2, (int64_t[]){1, 3}, GB_DTYPE_I64);
    gb_invoke(tr, ids);
    gb_val *pattern = NULL;
    for (int p = 0; p < GB_PART_COUNT; p++) {
        const char *got = gb_model_part(m, (gb_part)p);
        ck_assert_str_eq(got, part_names[k].parts[p]);
        bool in_block = p == GB_PART_ATTN || p == GB_PART_MLP || p == GB_PART_ATTN_WEIGHTS;
        if (in_block) snprintf(path, sizeof path, "%s.0.%s", gb_model_part(m, GB_PART_LAYERS), got);
        else snprintf(path, sizeof path, "%s", got);
        if (p == GB_PART_ATTN_WEIGHTS) pattern = gb_save(gb_point(tr, path)); /* a point the scan must reach */
        else ck_assert_msg(gb_module_find(root, path) != NULL, "%s: %s", path, gb_last_error());
    }
    gb_invoke_end(tr);
    gbt_ok_status(gb_trace_scan(tr));
    int nd = 0;
    int64_t shape[GB_MAX_DIMS];
    gbt_ok_status(gb_val_shape(pattern, &nd, shape));
    ck_assert_int_eq(nd, 4); /* [B, H, T, S] */
    ck_assert_int_eq(shape[2], 3);
    ck_assert_ptr_null(gb_model_part(m, GB_PART_COUNT));
    gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_model_free(m);
}
END_TEST

/* MistralForCausalLM as transformers >= 4.48 prints it for the "mistral"
 * fixture's sizes (modular_mistral.py: Llama's modules under Mistral's class
 * names, no biases). */
static const char mistral_repr[] =
    "MistralForCausalLM(\n"
    "  (model): MistralModel(\n"
    "    (embed_tokens): Embedding(128, 48)\n"
    "    (layers): ModuleList(\n"
    "      (0-2): 3 x MistralDecoderLayer(\n"
    "        (self_attn): MistralAttention(\n"
    "          (q_proj): Linear(in_features=48, out_features=48, bias=False)\n"
    "          (k_proj): Linear(in_features=48, out_features=24, bias=False)\n"
    "          (v_proj): Linear(in_features=48, out_features=24, bias=False)\n"
    "          (o_proj): Linear(in_features=48, out_features=48, bias=False)\n"
    "        )\n"
    "        (mlp): MistralMLP(\n"
    "          (gate_proj): Linear(in_features=48, out_features=80, bias=False)\n"
    "          (up_proj): Linear(in_features=48, out_features=80, bias=False)\n"
    "          (down_proj): Linear(in_features=80, out_features=48, bias=False)\n"
    "          (act_fn): SiLU()\n"
    "        )\n"
    "        (input_layernorm): MistralRMSNorm((48,), eps=1e-05)\n"
    "        (post_attention_layernorm): MistralRMSNorm((48,), eps=1e-05)\n"
    "      )\n"
    "    )\n"
    "    (norm): MistralRMSNorm((48,), eps=1e-05)\n"
    "    (rotary_emb): MistralRotaryEmbedding()\n"
    "  )\n"
    "  (lm_head): Linear(in_features=48, out_features=128, bias=False)\n"
    ")";

START_TEST(test_mistral_repr) {
    gbt_oracle *o = gbt_oracle_load("nn_models");
    char *want = gbt_get_str(o, "mistral.repr");
    ck_assert_str_eq(mistral_repr, want); /* the quoted text is torch's print of the reference */
    char dir[4096];
    gb_model *m = gb_model_open(gbt_fixture_dir(dir, sizeof dir, "mistral"), NULL);
    gbt_ok(m);
    char *got = gb_module_repr(gb_model_module(m));
    ck_assert_str_eq(got, mistral_repr);
    ck_assert_str_eq(gb_model_type(m), "mistral");
    free(got), free(want);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* One token at a time with the KV cache, past the sliding window of 4: each
 * step's logits are those of the whole 7-token prompt at that position
 * (where queries 4..6 no longer see the first keys). */
START_TEST(test_mistral_cache_past_window) {
    gbt_oracle *o = gbt_oracle_load("models");
    char dir[4096];
    gb_model *m = gb_model_open(gbt_fixture_dir(dir, sizeof dir, "mistral"), NULL);
    gbt_ok(m);
    gb_tensor *ids = gbt_getf(o, "mistral.ids"), *want = gbt_getf(o, "mistral.single.logits");
    gb_run *run = gb_run_new();
    gb_run_use_cache(run, true);
    for (int64_t t = 0; t < gb_tensor_dim(ids, 1); t++) {
        gb_tensor *x = gb_narrow(ids, 1, t, 1), *y = NULL, *w = gb_narrow(want, 1, t, 1);
        gbt_ok_status(gb_module_run(gb_model_module(m), run, x, &y));
        char what[64];
        snprintf(what, sizeof what, "mistral cached step %lld", (long long)t);
        compare(y, w, false, what);
        gb_tensor_free(x), gb_tensor_free(y), gb_tensor_free(w);
    }
    ck_assert_int_eq(gb_run_cache_length(run), gb_tensor_dim(ids, 1));
    gb_run_free(run);
    gb_tensor_free(ids), gb_tensor_free(want);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_model_fixtures(void) {
    Suite *s = suite_create("model_fixtures");
    TCase *tc = tcase_create("fixtures");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_fixture_matches_pytorch, 0, NVARIANTS * NCASES);
    tcase_add_loop_test(tc, test_fixture_activation_gradients, 0, NVARIANTS);
    tcase_add_loop_test(tc, test_fixture_greedy_decoding, 0, NVARIANTS);
    tcase_add_loop_test(tc, test_fixture_lowp_runs_as_f32, 0, NLOWP);
    tcase_add_test(tc, test_fixture_f32_conversion_checks_memory);
    tcase_add_test(tc, test_fixture_token_ids);
    tcase_add_loop_test(tc, test_fixture_config_str, 0, sizeof config_strs / sizeof config_strs[0]);
    tcase_add_loop_test(tc, test_fixture_parts, 0, sizeof config_strs / sizeof config_strs[0]);
    tcase_add_test(tc, test_mistral_repr);
    tcase_add_test(tc, test_mistral_cache_past_window);
    suite_add_tcase(s, tc);
    return s;
}
