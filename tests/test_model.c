/* Opening Hugging Face checkpoints: the real stories260k Llama end to end,
 * the bundled GPT-2, both GPT-2 tensor namings, sharding-independent
 * loading, and every error path of the loader. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gbtest.h"

/* Greedy decoding with the KV cache, as `glassbox generate` does. */
static int64_t greedy(gb_model *m, const int64_t *prompt, int64_t n, int64_t total, int64_t *seq) {
    memcpy(seq, prompt, sizeof *seq * (size_t)n);
    gb_run *run = gb_run_new();
    gb_run_use_cache(run, true);
    int64_t len = n, fed = 0;
    while (len < total) {
        gb_tensor *in = gb_from_data(seq + fed, 2, (int64_t[]){1, len - fed}, GB_DTYPE_I64), *logits;
        gbt_ok_status(gb_module_run(gb_model_module(m), run, in, &logits));
        fed = len;
        gb_tensor *last = gb_select(logits, 1, -1), *next = gb_argmax(last, -1, false);
        double id;
        gbt_ok_status(gb_item(next, &id));
        seq[len++] = (int64_t)id;
        gb_tensor_free(next), gb_tensor_free(last), gb_tensor_free(logits), gb_tensor_free(in);
    }
    gb_run_free(run);
    return len;
}

/* Known values from ../shared/README.md. */
START_TEST(test_stories260k_greedy_from_bos) {
    char *dir = gbt_shared_path("models/stories260k", "test_stories260k_greedy_from_bos");
    if (!dir) return;
    gb_model *m = gb_model_open(dir, NULL);
    gbt_ok(m);
    ck_assert_str_eq(gb_model_type(m), "llama");
    ck_assert_int_eq(gb_model_bos_id(m), 1);
    ck_assert(gb_model_is_eos(m, 2));
    const int64_t want[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                            315, 421, 395, 317, 426, 338, 401, 396, 267, 337};
    int64_t seq[21];
    greedy(m, want, 1, 21, seq);
    for (int i = 0; i < 21; i++) ck_assert_int_eq(seq[i], want[i]);
    /* Back to the known text: the first 16 tokens end at "Lily." (the rest
     * are " She loved to play", as Hugging Face's decoder also says). */
    gb_tokenizer *tok = gb_tokenizer_open(gb_model_dir(m));
    gbt_ok(tok);
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = (int32_t)seq[i];
    char *text;
    gbt_ok_status(gb_tokenizer_decode(tok, ids, 16, true, &text, NULL));
    ck_assert_str_eq(text, "Once upon a time, there was a little girl named Lily.");
    free(text);
    gb_tokenizer_free(tok);
    gb_model_free(m);
    free(dir);
}
END_TEST

typedef struct {
    int calls;
    uint64_t last, total;
    bool monotone;
} progress_log;

static void record_progress(uint64_t done, uint64_t total, void *ctx) {
    progress_log *p = ctx;
    p->monotone &= done >= p->last && done <= total;
    p->calls++, p->last = done, p->total = total;
}

/* The loader reports progress through the callback, ending at the total:
 * the size of the bundled model's model.safetensors. */
START_TEST(test_progress_callback) {
    progress_log p = {.monotone = true};
    gb_model_opts opts = {.progress = record_progress, .progress_ctx = &p};
    gb_model *m = gb_model_open(GBT_BUNDLED, &opts);
    gbt_ok(m);
    struct stat st;
    ck_assert_int_eq(stat(GBT_BUNDLED "/model.safetensors", &st), 0);
    ck_assert(p.calls > 10 && p.monotone);
    ck_assert_uint_eq(p.last, p.total);
    ck_assert_uint_eq(p.total, gb_model_file_bytes(m));
    ck_assert_uint_eq(p.total, (uint64_t)st.st_size);
    gb_model_free(m);
}
END_TEST

/* A full forward over the prefix gives the same next-token logits as the
 * cached step by step path: on the bundled GPT-2 (learned positions) and on
 * the random Llama fixture (rotary positions). */
START_TEST(test_cache_equals_recompute) {
    char fixture[4096];
    const char *dirs[] = {GBT_BUNDLED, gbt_fixture_dir(fixture, sizeof fixture, "llama")};
    const int64_t ids[] = {1, 103, 107, 61, 78, 32, 83, 86}; /* below both vocabularies (1024, 128) */
    for (int d = 0; d < 2; d++) {
        gb_model *m = gb_model_open(dirs[d], NULL);
        gbt_ok(m);
        gb_tensor *all = gb_from_data(ids, 2, (int64_t[]){1, 8}, GB_DTYPE_I64), *full;
        gbt_ok_status(gb_module_run(gb_model_module(m), NULL, all, &full));
        gb_run *run = gb_run_new();
        gb_run_use_cache(run, true);
        for (int t = 0; t < 8; t++) {
            gb_tensor *in = gb_from_data(ids + t, 2, (int64_t[]){1, 1}, GB_DTYPE_I64), *step;
            gbt_ok_status(gb_module_run(gb_model_module(m), run, in, &step));
            gb_tensor *want = gb_narrow(full, 1, t, 1);
            /* One row against T rows sums in another order: rounding only,
             * where a wrong position or a stale cache moves logits by far more. */
            gbt_assert_close(step, want, 1e-4, 1e-4, dirs[d]);
            gb_tensor_free(want), gb_tensor_free(step), gb_tensor_free(in);
        }
        ck_assert_int_eq(gb_run_cache_length(run), 8);
        gb_run_free(run);
        gb_tensor_free(full), gb_tensor_free(all);
        gb_model_free(m);
    }
}
END_TEST

/* ---- synthetic checkpoints ---------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* A fresh scratch directory (files of an earlier run removed). */
static char *scratch(const char *name) {
    char *dir = malloc(4096), path[4200];
    snprintf(dir, 4096, "%s/model_%s", gbt_tmp_dir(), name);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    return dir;
}

static const char *gpt2_config =
    "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 8, \"n_layer\": 2,"
    " \"n_head\": 2, \"layer_norm_epsilon\": 1e-5, \"activation_function\": \"gelu_new\"}";

static gb_tensor *logits_of(gb_model *m) {
    const int64_t ids[] = {3, 14, 15, 9, 26};
    gb_tensor *in = gb_from_data(ids, 2, (int64_t[]){1, 5}, GB_DTYPE_I64), *y;
    gbt_ok_status(gb_module_run(gb_model_module(m), NULL, in, &y));
    gb_tensor_free(in);
    return y;
}

/* The original openai-community/gpt2 files name tensors without the
 * "transformer." prefix and carry attn.bias buffers; both namings load the
 * same weights. */
START_TEST(test_gpt2_both_namings) {
    gb_gpt2_config cfg = {.vocab_size = 50, .n_positions = 16, .n_embd = 8, .n_layer = 2, .n_head = 2,
                          .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
    gb_module *net = gb_gpt2_new(&cfg);
    gbt_ok(net);
    gb_module_init(net, 5);
    char *a = scratch("gpt2_prefixed"), *b = scratch("gpt2_bare"), path[4200];
    snprintf(path, sizeof path, "%s/config.json", a);
    write_text(path, gpt2_config);
    snprintf(path, sizeof path, "%s/config.json", b);
    write_text(path, gpt2_config);
    snprintf(path, sizeof path, "%s/model.safetensors", a);
    gbt_save_params(net, path, NULL, 0, NULL, NULL);
    gb_tensor *mask = gb_ones(4, (int64_t[]){1, 1, 16, 16}, GB_DTYPE_F32);
    snprintf(path, sizeof path, "%s/model.safetensors", b);
    gbt_save_params(net, path, "transformer.", 2, (const char *[]){"h.0.attn.bias", "h.1.attn.bias"},
                (gb_tensor *[]){mask, mask});
    gb_model *ma = gb_model_open(a, NULL), *mb = gb_model_open(b, NULL);
    gbt_ok(ma);
    gbt_ok(mb);
    gb_tensor *ya = logits_of(ma), *yb = logits_of(mb);
    gbt_assert_close(ya, yb, 0, 0, "logits from both namings");
    /* lm_head is tied to wte, as in Hugging Face */
    ck_assert_ptr_eq(gb_module_param(gb_module_find(gb_model_module(ma), "lm_head"), "weight"),
                     gb_module_param(gb_module_find(gb_model_module(ma), "transformer.wte"), "weight"));
    gb_tensor_free(ya), gb_tensor_free(yb), gb_tensor_free(mask);
    gb_model_free(ma), gb_model_free(mb), gb_module_free(net);
    free(a), free(b);
}
END_TEST

/* Resident kilobytes of this process (VmRSS). */
static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

/* Conv1D's weight is kept transposed in memory (nn/layers.c): opening a
 * checkpoint copies each one into that layout. The parameters read back as
 * the file's [nx, nf] values, a state dict saved from the opened model is
 * the file's tensors byte for byte, and the mapped bytes of the copied
 * weights leave resident memory: opening raises the resident size by about
 * the copies (24 MB here), not twice that. */
START_TEST(test_gpt2_conv1d_layout) {
    gb_gpt2_config cfg = {.vocab_size = 64, .n_positions = 16, .n_embd = 512, .n_layer = 2, .n_head = 8,
                          .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
    gb_module *net = gb_gpt2_new(&cfg);
    gbt_ok(net);
    gb_module_init(net, 7);
    char *d = scratch("gpt2_conv1d"), path[4200], again[4300];
    snprintf(path, sizeof path, "%s/config.json", d);
    write_text(path, "{\"model_type\": \"gpt2\", \"vocab_size\": 64, \"n_positions\": 16, \"n_embd\": 512, "
                     "\"n_layer\": 2, \"n_head\": 8}");
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    gbt_save_params(net, path, NULL, 0, NULL, NULL);
    long before = rss_kb();
    gb_model *m = gb_model_open(d, NULL);
    gbt_ok(m);
    long grew = rss_kb() - before;
    double conv = 2.0 * 12 * 512 * 512 * 4 / 1024; /* KB of Conv1D weights: (3 + 1 + 4 + 4) x 512^2 floats a layer */
    ck_assert_msg(before > 0 && grew < 1.25 * conv + 2048, "opening raised resident memory by %ld KB; the Conv1D "
                  "copies are %.0f KB", grew, conv);
    gb_module *opened = gb_model_module(m);
    const char *names[] = {"transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj"};
    for (int i = 0; i < 3; i++) {
        gb_tensor *want = gb_module_param(gb_module_find(net, names[i]), "weight");
        gb_tensor *got = gb_module_param(gb_module_find(opened, names[i]), "weight");
        gbt_assert_close(got, want, 0, 0, names[i]);
    }
    snprintf(again, sizeof again, "%s/again.safetensors", d);
    gbt_save_params(opened, again, NULL, 0, NULL, NULL);
    size_t n1, n2;
    char *a = gbt_read_file(path, &n1), *b = gbt_read_file(again, &n2);
    ck_assert(a && b && n1 == n2 && !memcmp(a, b, n1));
    free(a), free(b);
    gb_model_free(m), gb_module_free(net);
    free(d);
}
END_TEST

START_TEST(test_loader_errors) {
    gb_gpt2_config cfg = {.vocab_size = 50, .n_positions = 16, .n_embd = 8, .n_layer = 2, .n_head = 2,
                          .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
    gb_module *net = gb_gpt2_new(&cfg);
    char *d = scratch("errors"), path[4200], cfgpath[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", d);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_NOT_FOUND, "config.json");

    gbt_save_params(net, path, NULL, 0, NULL, NULL);
    write_text(cfgpath, "{\"model_type\": \"bert\"}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_UNSUPPORTED, "model_type 'bert' is not supported");
    write_text(cfgpath, "{\"model_type\": \"gpt2\", ");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_FORMAT, "invalid JSON");
    write_text(cfgpath, "{\"model_type\": \"llama\", \"hidden_size\": 8, \"intermediate_size\": 16,"
                        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                        " \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_UNSUPPORTED, "rope_scaling of type 'yarn'");

    /* n_embd 16 in the config, 8 in the file */
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 16,"
                        " \"n_layer\": 2, \"n_head\": 2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_SHAPE, "has shape [50, 8] but the config implies [50, 16]");

    /* one layer more in the config than in the file */
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 8,"
                        " \"n_layer\": 3, \"n_head\": 2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_NOT_FOUND,
                   "config.json: n_layer is 3, but the 28 tensors of "); /* 4 + 12 per layer */
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_NOT_FOUND,
                   "model.safetensors hold 2 layers (transformer.h.0 to transformer.h.1): none of transformer.h.2");
    /* a billion: refused before the tree is built (it would take a billion
     * layers' modules), in the same words */
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 8,"
                        " \"n_layer\": 1000000000, \"n_head\": 2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_NOT_FOUND, "n_layer is 1000000000, but the 28 tensors");
    /* one layer fewer: the tensors left over are named */
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 8,"
                        " \"n_layer\": 1, \"n_head\": 2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_FORMAT, "unexpected tensor 'transformer.h.1.");
    /* sizes too large to allocate are shapes like any other: the tree is
     * built shape-only, so the mismatch is found before any allocation */
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16,"
                        " \"n_embd\": 268435456, \"n_layer\": 2, \"n_head\": 2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_SHAPE,
                   "has shape [50, 8] but the config implies [50, 268435456]");
    /* too large even to count in bytes: refused while building, shape-only */
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16,"
                        " \"n_embd\": 1099511627776, \"n_layer\": 2, \"n_head\": 2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_SHAPE,
                   "config.json: gpt2_new: zeros: shape [1099511627776, 4398046511104] holds more bytes than a "
                   "64-bit size can count");
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 1000000000000, \"n_positions\": 16,"
                        " \"n_embd\": 8, \"n_layer\": 2, \"n_head\": 2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_SHAPE,
                   "has shape [50, 8] but the config implies [1000000000000, 8]");

    /* special token ids outside the vocabulary of 50 (0..49) */
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 8,"
                        " \"n_layer\": 2, \"n_head\": 2, \"eos_token_id\": [3, 50]}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_FORMAT, "eos_token_id 50 is outside the vocabulary of 50 tokens");
    write_text(cfgpath, "{\"model_type\": \"gpt2\", \"vocab_size\": 50, \"n_positions\": 16, \"n_embd\": 8,"
                        " \"n_layer\": 2, \"n_head\": 2, \"bos_token_id\": -2}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_FORMAT, "bos_token_id -2 is outside the vocabulary of 50 tokens");

    /* a tensor the model does not have */
    write_text(cfgpath, gpt2_config);
    gb_tensor *extra = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_save_params(net, path, NULL, 1, (const char *[]){"transformer.h.0.mlp.gate.weight"}, &extra);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_FORMAT, "unexpected tensor 'transformer.h.0.mlp.gate.weight'");
    gb_tensor_free(extra);
    gb_module_free(net);
    free(d);
}
END_TEST

/* Mistral's config: sliding_window must be a positive integer, null (none)
 * or absent (4096); what Llama refuses, Mistral refuses too. */
START_TEST(test_mistral_config_errors) {
    char *d = scratch("mistral-errors"), cfgpath[4200], path[4200];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", d);
    snprintf(path, sizeof path, "%s/model.safetensors", d);
    /* a weights file with the config's one layer, so that the config is read */
    gb_tensor *x = gb_zeros(1, (int64_t[]){1}, GB_DTYPE_F32);
    gbt_ok_status(gb_safetensors_save(path, 1, (const char *[]){"model.layers.0.x"}, &x, GB_DTYPE_F32, NULL));
    gb_tensor_free(x);
    const char *sizes = "\"model_type\": \"mistral\", \"hidden_size\": 8, \"intermediate_size\": 16,"
                        " \"num_hidden_layers\": 1, \"num_attention_heads\": 2";
    const char *bad[] = {"0", "-1", "\"4096\"", "2.5", "[4096]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, "{%s, \"sliding_window\": %s}", sizes, bad[i]);
        write_text(cfgpath, text);
        gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_FORMAT,
                       "field 'sliding_window' must be a positive integer or null");
    }
    char text[512];
    snprintf(text, sizeof text, "{%s, \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}", sizes);
    write_text(cfgpath, text);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_UNSUPPORTED, "rope_scaling of type 'dynamic'");
    snprintf(text, sizeof text, "{%s, \"head_dim\": 3}", sizes);
    write_text(cfgpath, text);
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_ARG, "mistral_new: head_dim (3) must be even");
    write_text(cfgpath, "{\"model_type\": \"qwen2\"}");
    gbt_fails_with(gb_model_open(d, NULL) == NULL, GB_ERR_UNSUPPORTED,
                   "model_type 'qwen2' is not supported (glassbox loads gpt2, llama and mistral)");
    free(d);
}
END_TEST

Suite *gb_suite_model(void) {
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_stories260k_greedy_from_bos);
    tcase_add_test(tc, test_cache_equals_recompute);
    tcase_add_test(tc, test_progress_callback);
    tcase_add_test(tc, test_gpt2_both_namings);
    tcase_add_test(tc, test_loader_errors);
    tcase_add_test(tc, test_gpt2_conv1d_layout);
    tcase_add_test(tc, test_mistral_config_errors);
    suite_add_tcase(s, tc);
    return s;
}
