/* Opening a model and encoding text.
 *
 * Model: a GPT-2 124M checkpoint in f32 (about 500 MB: gb_safetensors_save
 * of a randomly initialised gb_gpt2_new model's parameters, and a
 * config.json), written once into the data directory and reused by later
 * runs; then gb_model_open + gb_model_free on it, best of a few (the file is
 * in the page cache by then: this measures glassbox, not the disk). The
 * weights are mmapped and used in place, so opening should take
 * milliseconds, not the seconds a read of 500 MB takes.
 *
 * Tokenizer: ~1 MB of English text (sentences from a fixed list, shuffled by
 * a seeded generator, so every run encodes the same bytes), encoded in one
 * gb_tokenizer_encode call with GPT-2's tokenizer.json from ../shared. The
 * text is written to the data directory so that bench.py can time Hugging
 * Face's tokenizers (Node) on the same bytes; the token count and a hash of
 * the ids let it check that both produced the same encoding. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"

static void mkdirs(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p == '/' || end) {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "bench: cannot create %s: %s\n", buf, strerror(errno));
                exit(1);
            }
            if (end) break;
            *p = '/';
        }
    }
}

static void write_file(const char *path, const char *text, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
}

/* ---- model opening ------------------------------------------------------ */

void bench_gpt2_checkpoint(const char *dir, gb_dtype dt) {
    gb_model *m = gb_model_open(dir, NULL); /* a checkpoint of an earlier run? */
    if (m) {
        gb_model_free(m);
        return;
    }
    mkdirs(dir);
    gb_gpt2_config cfg = bench_gpt2_124m();
    char path[1200], json[1024], what[128];
    double t0 = bench_now();
    gb_module *model = gb_gpt2_new(&cfg);
    BENCH_CHECK(model, "open: gb_gpt2_new");
    gb_module_init(model, 5);
    const char **names;
    gb_tensor **params;
    int n = gb_module_parameters(model, &names, &params);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    BENCH_CHECK(gb_safetensors_save(path, n, names, params, dt, (const char *[]){"format", "pt", NULL}) == GB_OK,
                "open: gb_safetensors_save");
    free(names), free(params);
    gb_module_free(model);
    int len = snprintf(json, sizeof json,
                       "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                       "  \"vocab_size\": %lld,\n  \"n_positions\": %lld,\n  \"n_ctx\": %lld,\n  \"n_embd\": %lld,\n"
                       "  \"n_layer\": %lld,\n  \"n_head\": %lld,\n  \"layer_norm_epsilon\": 1e-05,\n"
                       "  \"activation_function\": \"gelu_new\"\n}\n",
                       (long long)cfg.vocab_size, (long long)cfg.n_positions, (long long)cfg.n_positions,
                       (long long)cfg.n_embd, (long long)cfg.n_layer, (long long)cfg.n_head);
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_file(path, json, (size_t)len);
    snprintf(what, sizeof what, "one-time setup: gb_gpt2_new + init + gb_safetensors_save (%s) + config.json",
             gb_dtype_name(dt));
    bench_row(dt == GB_DTYPE_F32 ? "gpt2_124m_write_checkpoint" : "gpt2_124m_bf16_write_checkpoint", "s",
              bench_now() - t0, what);
}

static void open_model(void *ctx) {
    gb_model *m = gb_model_open(ctx, NULL);
    BENCH_CHECK(m, "open: gb_model_open");
    gb_model_free(m);
}

static void bench_open(void) {
    char dir[1024], buf[64];
    snprintf(dir, sizeof dir, "%s/gpt2-124m", bench_data_dir);
    bench_gpt2_checkpoint(dir, GB_DTYPE_F32);
    gb_model *m = gb_model_open(dir, NULL);
    BENCH_CHECK(m, "open: gb_model_open");
    snprintf(buf, sizeof buf, "%.0f", (double)gb_model_file_bytes(m) / 1e6);
    bench_info("checkpoint_mb", buf);
    bench_info("checkpoint", dir);
    gb_model_free(m);
    int reps = bench_reps < 5 ? bench_reps : 5;
    int saved = bench_reps;
    bench_reps = reps;
    bench_row("gpt2_124m_model_open", "ms", bench_best(open_model, dir) * 1e3,
              "gb_model_open + gb_model_free of the 500 MB f32 checkpoint (mmap; Conv1D weights copied transposed), best of 5");
    bench_reps = saved;
}

/* ---- tokenizer ---------------------------------------------------------- */

static const char *const SENTENCES[] = {
    "The quick brown fox jumps over the lazy dog.",
    "In 1969, Apollo 11 landed on the Moon, and 600 million people watched it on television.",
    "She said, \"I don't think we'll make it before the rain starts,\" and reached for her umbrella.",
    "The committee's report, published on 3 March, runs to 412 pages.",
    "Neural networks learn by adjusting millions of weights to reduce a loss function.",
    "It's not what you look at that matters, it's what you see.",
    "The recipe calls for 250 g of flour, two eggs, and a pinch of salt.",
    "Why would anyone build a tensor library from scratch in C?",
    "Interpretability researchers read the activations of a model one layer at a time.",
    "He couldn't remember where he'd parked the car; it was somewhere near the station.",
    "The river, swollen by a week of storms, had burst its banks upstream of the old mill.",
    "Prices rose by 3.2% in the year to June, the fastest rate since 2008.",
    "Our café serves naïve tourists and seasoned locals alike — everyone gets the same coffee.",
    "The train to Edinburgh leaves at 10:45 from platform 9.",
    "A hash map stores each key in a bucket chosen by the key's hash.",
    "They had walked for hours without seeing another soul.",
    "Please send the signed contract to legal@example.com by Friday.",
    "The tokenizer splits words into pieces it has seen often enough during training.",
    "Mount Everest is 8,849 metres tall, according to the 2020 survey.",
    "Wait, what? You're telling me the meeting was yesterday?",
    "Light from the Sun takes about eight minutes to reach the Earth.",
    "The museum's collection includes over 20,000 paintings and drawings.",
    "If the gradient vanishes, the early layers stop learning.",
    "Children were playing football in the street until it got dark.",
    "The function returns NULL and sets an error message on failure.",
    "Her grandmother's garden was full of roses, tulips and lavender.",
    "Attention lets every token look at every earlier token in the sequence.",
    "We'll need at least three volunteers for Saturday's clean-up.",
    "The old lighthouse keeper kept a log of every ship that passed.",
    "Compilers can vectorise a loop only when they can prove it is safe.",
};
#define NSENTENCES (int)(sizeof SENTENCES / sizeof SENTENCES[0])

/* ~1 MB: paragraphs of 5 to 12 sentences, shuffled with a seeded generator. */
static char *make_text(size_t want, size_t *len) {
    size_t cap = want + 4096, n = 0;
    char *text = malloc(cap);
    BENCH_CHECK(text, "tokenizer: text");
    gb_rng r = gb_rng_seed(7);
    int order[NSENTENCES];
    for (int i = 0; i < NSENTENCES; i++) order[i] = i;
    while (n < want) {
        for (int i = NSENTENCES - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(gb_rng_next(&r) % (uint32_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        int k = 5 + (int)(gb_rng_next(&r) % 8);
        for (int i = 0; i < k && n < want; i++) {
            size_t l = strlen(SENTENCES[order[i]]);
            memcpy(text + n, SENTENCES[order[i]], l);
            n += l;
            text[n++] = i + 1 < k ? ' ' : '\n';
        }
        text[n++] = '\n';
    }
    text[n] = '\0';
    *len = n;
    return text;
}

typedef struct enc_ctx {
    gb_tokenizer *tok;
    const char *text;
    size_t len, nids;
    uint64_t hash;
} enc_ctx;

static void encode(void *ctx) {
    enc_ctx *c = ctx;
    int32_t *ids = NULL;
    BENCH_CHECK(gb_tokenizer_encode(c->tok, c->text, c->len, false, &ids, &c->nids) == GB_OK, "tokenizer: encode");
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the ids as decimal text, "id,id,...": bench.py does the same */
    for (size_t i = 0; i < c->nids; i++) {
        char num[16];
        int l = snprintf(num, sizeof num, i ? ",%d" : "%d", ids[i]);
        for (int k = 0; k < l; k++) h = (h ^ (uint8_t)num[k]) * 1099511628211ull;
    }
    c->hash = h;
    free(ids);
}

static void bench_tokenizer(void) {
    char path[1200], buf[64];
    snprintf(path, sizeof path, "%s/tokenizers/gpt2/tokenizer.json", bench_shared_dir);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        snprintf(path, sizeof path, "tokenizer: skipped, %s/tokenizers/gpt2/tokenizer.json is missing",
                 bench_shared_dir);
        bench_note(path);
        return;
    }
    fclose(probe);
    enc_ctx c = {.tok = gb_tokenizer_open(path)};
    BENCH_CHECK(c.tok, "tokenizer: open");
    char *text = make_text(1000000, &c.len);
    c.text = text;
    char file[1200];
    mkdirs(bench_data_dir);
    snprintf(file, sizeof file, "%s/tokenizer_text.txt", bench_data_dir);
    write_file(file, text, c.len);
    bench_info("tokenizer_json", path);
    bench_info("tokenizer_text", file);

    int saved = bench_reps;
    bench_reps = bench_reps < 3 ? bench_reps : 3;
    double t = bench_best(encode, &c);
    bench_reps = saved;
    snprintf(buf, sizeof buf, "%zu", c.nids);
    bench_info("tokenizer_tokens", buf);
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)c.hash);
    bench_info("tokenizer_ids_fnv1a", buf);
    snprintf(path, sizeof path, "gb_tokenizer_encode of %.2f MB of English in one call (GPT-2 BPE), best of 3",
             (double)c.len / 1e6);
    bench_row("tokenizer_gpt2_1MB", "MB/s", (double)c.len / 1e6 / t, path);
    free(text);
    gb_tokenizer_free(c.tok);
}

void bench_io(void) {
    bench_open();
    bench_tokenizer();
}
