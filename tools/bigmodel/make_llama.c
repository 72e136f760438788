/* A random Llama-3-8B-shaped bf16 checkpoint in Hugging Face's layout,
 * written tensor by tensor in chunks (never held in memory): config.json,
 * model-0000N-of-0000M.safetensors shards of about 5 GB and
 * model.safetensors.index.json, as save_pretrained writes them. For
 * `make bench-big` (tools/bigmodel/bench_big.c); not part of `make check`.
 *
 *     make_llama OUT_DIR [--layers N]
 *
 * Shape: vocabulary 128256, hidden 4096, 32 layers, 32 heads, 8 KV heads,
 * head_dim 128, intermediate 14336, untied lm_head, rope_theta 500000 with
 * llama3 rope scaling: 8.03e9 parameters, 16.06 GB. --layers makes fewer
 * layers (a quicker, smaller file with the same per-layer shapes).
 * Weights: uniform with standard deviation 0.02 (norm weights 1), from a
 * fixed xorshift generator: every run writes the same bytes. A directory
 * that already holds a complete checkpoint of the same shape is kept. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { MAX_TENSORS = 1024, MAX_SHARDS = 16 };
#define SHARD_BYTES ((uint64_t)5 << 30)

typedef struct tensor {
    char name[128];
    int64_t shape[2];
    int ndim;
    bool norm;      /* filled with 1.0 */
    int shard;      /* 0-based */
    uint64_t begin; /* byte offset within the shard's data */
} tensor;

static tensor T[MAX_TENSORS];
static int NT;

static void add(const char *name, int64_t rows, int64_t cols, bool norm) {
    tensor *t = &T[NT++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->shape[0] = rows, t->shape[1] = cols;
    t->ndim = cols ? 2 : 1;
    t->norm = norm;
}

static uint64_t nbytes(const tensor *t) { return (uint64_t)t->shape[0] * (uint64_t)(t->ndim == 2 ? t->shape[1] : 1) * 2; }

static void die(const char *what, const char *path) {
    fprintf(stderr, "make_llama: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const tensor *const *)a)->name, (*(const tensor *const *)b)->name);
}

/* bf16 of uniform(-a, a), a = 0.02 * sqrt(3): standard deviation 0.02. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t next64(void) {
    uint64_t x = rng_state;
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return rng_state = x;
}
static inline uint16_t bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void write_data(FILE *f, const tensor *t, const char *path) {
    static uint16_t buf[1 << 22]; /* 8 MB */
    uint64_t n = nbytes(t) / 2;
    const float a = 0.02f * 1.7320508f;
    while (n) {
        size_t len = n < (1u << 22) ? (size_t)n : (1u << 22);
        for (size_t i = 0; i < len; i += 4) {
            uint64_t r = next64();
            for (size_t j = 0; j < 4 && i + j < len; j++) {
                float u = ((float)((r >> (16 * j)) & 0xffff) - 32767.5f) / 32767.5f;
                buf[i + j] = t->norm ? 0x3f80 /* 1.0 */ : bf16_of(u * a);
            }
        }
        if (fwrite(buf, 2, len, f) != len) die("cannot write", path);
        n -= len;
    }
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) die("cannot write", path);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: make_llama OUT_DIR [--layers N]\n");
        return 2;
    }
    const char *dir = argv[1];
    int layers = 32;
    if (argc == 4 && !strcmp(argv[2], "--layers")) layers = atoi(argv[3]);
    const int64_t V = 128256, E = 4096, I = 14336, H = 32, KV = 8, D = 128;
    char name[128], path[4096];

    add("model.embed_tokens.weight", V, E, false);
    for (int l = 0; l < layers; l++) {
        static const struct {
            const char *suffix;
            int rows, cols; /* 0 = E, 1 = I, 2 = H*D, 3 = KV*D */
        } per[] = {{"self_attn.q_proj.weight", 2, 0}, {"self_attn.k_proj.weight", 3, 0},
                   {"self_attn.v_proj.weight", 3, 0}, {"self_attn.o_proj.weight", 0, 2},
                   {"mlp.gate_proj.weight", 1, 0},    {"mlp.up_proj.weight", 1, 0},
                   {"mlp.down_proj.weight", 0, 1}};
        const int64_t dim[4] = {E, I, H * D, KV * D};
        for (size_t i = 0; i < sizeof per / sizeof per[0]; i++) {
            snprintf(name, sizeof name, "model.layers.%d.%s", l, per[i].suffix);
            add(name, dim[per[i].rows], dim[per[i].cols], false);
        }
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        add(name, E, 0, true);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        add(name, E, 0, true);
    }
    add("model.norm.weight", E, 0, true);
    add("lm_head.weight", V, E, false);

    /* Shards in order, a new one when the next tensor would pass 5 GB. */
    int nshards = 1;
    uint64_t used = 0, shard_bytes[MAX_SHARDS] = {0}, total = 0;
    for (int i = 0; i < NT; i++) {
        if (used && used + nbytes(&T[i]) > SHARD_BYTES) nshards++, used = 0;
        T[i].shard = nshards - 1, T[i].begin = used;
        used += nbytes(&T[i]);
        shard_bytes[nshards - 1] = used;
        total += nbytes(&T[i]);
    }

    /* A complete checkpoint of this shape is kept: the index is written last. */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat sb;
    char stamp[64];
    snprintf(stamp, sizeof stamp, "\"total_size\": %" PRIu64, total);
    FILE *idx = fopen(path, "r");
    if (idx) {
        char head[256] = "";
        size_t got = fread(head, 1, sizeof head - 1, idx);
        head[got] = 0;
        fclose(idx);
        if (strstr(head, stamp)) {
            printf("make_llama: %s already holds the checkpoint (%.2f GB)\n", dir, (double)total / 1e9);
            return 0;
        }
    }
    if (stat(dir, &sb) != 0 && mkdir(dir, 0777) != 0) die("cannot create", dir);

    char *text = malloc(1 << 20);
    int len = snprintf(
        text, 1 << 20,
        "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"vocab_size\": %" PRId64
        ",\n  \"hidden_size\": %" PRId64 ",\n  \"intermediate_size\": %" PRId64 ",\n  \"num_hidden_layers\": %d,\n"
        "  \"num_attention_heads\": %" PRId64 ",\n  \"num_key_value_heads\": %" PRId64 ",\n  \"head_dim\": %" PRId64
        ",\n  \"hidden_act\": \"silu\",\n  \"max_position_embeddings\": 131072,\n  \"rms_norm_eps\": 1e-05,\n"
        "  \"rope_theta\": 500000.0,\n  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, "
        "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192},\n"
        "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"tie_word_embeddings\": false,\n"
        "  \"bos_token_id\": 128000,\n  \"eos_token_id\": [128001, 128008, 128009],\n"
        "  \"torch_dtype\": \"bfloat16\"\n}\n",
        V, E, I, layers, H, KV, D);
    (void)len;
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, text);

    for (int s = 0; s < nshards; s++) {
        /* header: the shard's tensors by name (the writer's order does not matter) */
        tensor *mine[MAX_TENSORS];
        int n = 0;
        for (int i = 0; i < NT; i++)
            if (T[i].shard == s) mine[n++] = &T[i];
        qsort(mine, (size_t)n, sizeof mine[0], cmp_name);
        int hl = snprintf(text, 1 << 20, "{\"__metadata__\":{\"format\":\"pt\"}");
        for (int i = 0; i < n; i++) {
            char shape[64];
            if (mine[i]->ndim == 2)
                snprintf(shape, sizeof shape, "%" PRId64 ",%" PRId64, mine[i]->shape[0], mine[i]->shape[1]);
            else
                snprintf(shape, sizeof shape, "%" PRId64, mine[i]->shape[0]);
            hl += snprintf(text + hl, (size_t)((1 << 20) - hl),
                           ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%s],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                           mine[i]->name, shape, mine[i]->begin, mine[i]->begin + nbytes(mine[i]));
        }
        text[hl++] = '}';
        while (hl % 8) text[hl++] = ' '; /* data 8-byte aligned, as the reference writer pads */
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, nshards);
        FILE *f = fopen(path, "wb");
        uint64_t hlen = (uint64_t)hl;
        if (!f || fwrite(&hlen, 8, 1, f) != 1 || fwrite(text, 1, (size_t)hl, f) != (size_t)hl) die("cannot write", path);
        for (int i = 0; i < NT; i++)
            if (T[i].shard == s) write_data(f, &T[i], path);
        if (fclose(f) != 0) die("cannot write", path);
        printf("make_llama: %s (%.2f GB)\n", path, (double)shard_bytes[s] / 1e9);
        fflush(stdout);
    }

    tensor *all[MAX_TENSORS];
    for (int i = 0; i < NT; i++) all[i] = &T[i];
    qsort(all, (size_t)NT, sizeof all[0], cmp_name);
    len = snprintf(text, 1 << 20, "{\n  \"metadata\": {%s},\n  \"weight_map\": {\n", stamp);
    for (int i = 0; i < NT; i++)
        len += snprintf(text + len, (size_t)((1 << 20) - len), "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n",
                        all[i]->name, all[i]->shard + 1, nshards, i + 1 < NT ? "," : "");
    snprintf(text + len, (size_t)((1 << 20) - len), "  }\n}\n");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_text(path, text);
    free(text);
    printf("make_llama: %d tensors, %.2f GB in %d shards\n", NT, (double)total / 1e9, nshards);
    return 0;
}
