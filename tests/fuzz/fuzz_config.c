/* config.json and model open (io/model.c, the architectures' config readers
 * in nn/): the first byte picks a checkpoint (even: a tiny GPT-2, odd: a
 * tiny Llama, both written once into a scratch directory, the first files
 * mapped from memory-backed /tmp on most systems), the rest is config.json.
 * The model must open or fail cleanly; an open model prints its config and
 * tree and runs two tokens (or fails cleanly). See tests/fuzz/fuzz.h. */
#include "fuzz.h"

int gb_fuzz_config(const uint8_t *data, size_t size);

static void gb_fuzz_config_save(gb_module *m, const char *name) {
    const char **names;
    gb_tensor **params;
    int n = gb_module_parameters(m, &names, &params);
    char path[4096];
    gb_fuzz_write(name, "", 0, path);
    GB_FUZZ_CHECK(gb_safetensors_save(path, n, names, params, GB_DTYPE_F32, NULL) == GB_OK);
    free(names);
    free(params);
    gb_module_free(m);
}

int gb_fuzz_config(const uint8_t *data, size_t size) {
    static char dirs[2][4096];
    if (!dirs[0][0]) {
        /* the sizes of tests/fuzz/corpus/config's seeds */
        gb_gpt2_config g = {.vocab_size = 16, .n_positions = 8, .n_embd = 8, .n_layer = 2, .n_head = 2,
                            .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
        gb_llama_config l = {.vocab_size = 16, .hidden_size = 8, .intermediate_size = 12, .num_hidden_layers = 2,
                             .num_attention_heads = 2, .num_key_value_heads = 1, .max_position_embeddings = 8,
                             .rms_norm_eps = 1e-6f, .rope_theta = 10000, .hidden_act = "silu"};
        snprintf(dirs[0], sizeof dirs[0], "%s/gpt2", gb_fuzz_dir());
        snprintf(dirs[1], sizeof dirs[1], "%s/llama", gb_fuzz_dir());
        for (int i = 0; i < 2; i++) GB_FUZZ_CHECK(mkdir(dirs[i], 0700) == 0 || errno == EEXIST);
        gb_fuzz_config_save(gb_gpt2_new(&g), "gpt2/model.safetensors");
        gb_fuzz_config_save(gb_llama_new(&l), "llama/model.safetensors");
    }
    if (size < 1) return 0;
    const char *dir = dirs[data[0] & 1];
    char path[4096];
    gb_fuzz_write(data[0] & 1 ? "llama/config.json" : "gpt2/config.json", data + 1, size - 1, path);
    gb_model *m = gb_model_open(dir, NULL);
    if (!m) {
        GB_FUZZ_FAILED_CLEANLY();
        return 0;
    }
    free(gb_model_config_str(m));
    gb_module *net = gb_model_module(m);
    free(gb_module_repr(net));
    gb_tensor *ids = gb_zeros(2, (int64_t[]){1, 2}, GB_DTYPE_I64), *logits = NULL;
    GB_FUZZ_CHECK(ids);
    if (gb_module_run(net, NULL, ids, &logits) != GB_OK) GB_FUZZ_FAILED_CLEANLY();
    gb_tensor_free(logits);
    gb_tensor_free(ids);
    gb_model_free(m);
    return 0;
}

GB_FUZZ_ENTRY(config)
