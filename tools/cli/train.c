/* `glassbox train`: a GPT-2 trained from scratch with glassbox's own autograd,
 * saved as a Hugging Face checkpoint. docs/training.md describes the data
 * order, initialisation, schedule, determinism and resuming. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#include "plot.h"

/* ---- options ------------------------------------------------------------ */

/* X(flag, field, kind, default, lowest, saved, metavar, help). kind is INT,
 * NUM or STR; numbers below `lowest` are refused. Saved options describe the
 * run: checkpoints keep them and --resume takes them back. */
#define TRAIN_OPTIONS(X)                                                                                         \
    X("corpus", corpus, STR, NULL, 0, 1, "FILE", "training text, one sentence per line (required)")             \
    X("tokenizer", tokenizer, STR, NULL, 0, 0, "DIR",                                                            \
      "tokenizer.json or vocab.json + merges.txt with <|endoftext|> (required; --resume: the checkpoint's)")     \
    X("out", out, STR, NULL, 0, 0, "DIR", "where the model is saved (required)")                                 \
    X("layers", layers, INT, 4, 1, 1, "L", "transformer blocks (n_layer)")                                      \
    X("width", width, INT, 128, 1, 1, "D", "embedding width (n_embd)")                                          \
    X("heads", heads, INT, 4, 1, 1, "H", "attention heads (n_head; must divide the width)")                     \
    X("ctx", ctx, INT, 64, 2, 1, "T", "tokens per training window (n_positions)")                               \
    X("batch", batch, INT, 16, 1, 1, "B", "windows per step")                                                   \
    X("steps", steps, INT, 1500, 0, 1, "N", "optimiser steps")                                                  \
    X("lr", lr, NUM, 3e-3, 0, 1, "X", "peak learning rate")                                                     \
    X("warmup", warmup, INT, 100, 0, 1, "N", "steps of linear warmup")                                          \
    X("min-lr", min_lr, NUM, 3e-4, 0, 1, "X", "learning rate at the end of the cosine decay")                   \
    X("weight-decay", weight_decay, NUM, 0.1, 0, 1, "X", "AdamW weight decay of the 2-D weights")               \
    X("clip", clip, NUM, 1.0, 0, 1, "X", "clip the gradients' global norm to X (0: no clipping)")              \
    X("seed", seed, INT, 0, 0, 1, "S", "seed of the initialisation and of the data order")                      \
    X("threads", threads, INT, 0, 0, 0, "N", "threads (0: all cores); runs are bit-identical at one count")     \
    X("log", log, STR, NULL, 0, 0, "F.csv", "write step, lr, loss, grad norm and tokens/s of every step")       \
    X("plot", plot, STR, NULL, 0, 0, "F.png", "draw the loss curve")                                            \
    X("save-every", save_every, INT, 0, 0, 0, "N", "save OUT/checkpoint-STEP every N steps, with optimiser state") \
    X("resume", resume, STR, NULL, 0, 0, "DIR", "continue the run saved in a checkpoint-STEP directory")         \
    X("init", init, STR, NULL, 0, 0, "F.safetensors", "start from these weights instead of the seeded init")

typedef long long opt_INT;
typedef double opt_NUM;
typedef const char *opt_STR;
typedef enum { OPT_INT, OPT_NUM, OPT_STR } opt_kind;

typedef struct {
#define X(flag, field, kind, dflt, lowest, saved, meta, help) opt_##kind field;
    TRAIN_OPTIONS(X)
#undef X
    struct {
#define X(flag, field, kind, dflt, lowest, saved, meta, help) bool field;
        TRAIN_OPTIONS(X)
#undef X
    } given;
} train_opts;

static const struct {
    const char *flag;
    opt_kind kind;
    size_t off, given_off;
    double lowest;
    bool saved;
    const char *meta, *help, *dflt;
} options[] = {
#define X(flag, field, kind, dflt, lowest, saved, meta, help) \
    {flag, OPT_##kind, offsetof(train_opts, field), offsetof(train_opts, given.field), lowest, saved, meta, help, \
     #dflt},
    TRAIN_OPTIONS(X)
#undef X
};
enum { NOPTIONS = sizeof options / sizeof options[0] };

/* AdamW's other hyperparameters (GPT-3's and nanoGPT's betas). */
static const float ADAM_BETA1 = 0.9f, ADAM_BETA2 = 0.95f, ADAM_EPS = 1e-8f;

static void defaults(train_opts *o) {
    memset(o, 0, sizeof *o);
#define X(flag, field, kind, dflt, lowest, saved, meta, help) o->field = dflt;
    TRAIN_OPTIONS(X)
#undef X
}

/* One line on stderr; returns 1 (usage errors return 2 themselves). */
static int failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int failf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("glassbox train: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

/* The command line's view of the same table: numbers at least `lowest`. */
static const gb_cli_opt cli_opts[] = {
#define X(flag, field, kind, dflt, lowest, saved, meta, help)                                                       \
    {flag, 0, GB_CLI_##kind, lowest, 1e15, OPT_##kind == OPT_STR ? NULL : #dflt, false, 0, meta, help},
    TRAIN_OPTIONS(X)
#undef X
};

/* Store one option's value in o, parsed strictly by the command line's
 * rules (also for the values a checkpoint records). */
static bool set_option(train_opts *o, int i, const char *value, char *err, size_t errsize) {
    gb_cli_arg arg = {0};
    char *base = (char *)o;
    if (!gb_cli_parse_value(&cli_opts[i], value, &arg, err, errsize)) return false;
    if (options[i].kind == OPT_STR) *(const char **)(void *)(base + options[i].off) = value;
    else if (options[i].kind == OPT_INT) *(opt_INT *)(void *)(base + options[i].off) = arg.i;
    else *(opt_NUM *)(void *)(base + options[i].off) = arg.num;
    return true;
}

/* An option's value as text, for a checkpoint's metadata. */
static void option_text(const train_opts *o, int i, char *buf, size_t size) {
    const char *base = (const char *)o;
    if (options[i].kind == OPT_INT)
        snprintf(buf, size, "%lld", *(const opt_INT *)(const void *)(base + options[i].off));
    else if (options[i].kind == OPT_NUM)
        snprintf(buf, size, "%.17g", *(const opt_NUM *)(const void *)(base + options[i].off));
    else snprintf(buf, size, "%s", *(const char *const *)(const void *)(base + options[i].off));
}

/* ---- files -------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static bool mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return false;
            *p = '/';
        }
    return !mkdir(buf, 0777) || errno == EEXIST;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;
    if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = 0;
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    if (f) fclose(f);
    return buf;
}

/* Write len bytes beside path and rename into place. */
static bool write_file(const char *path, const char *data, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f) ok &= fclose(f) == 0;
    ok = ok && rename(tmp, path) == 0;
    if (!ok) remove(tmp);
    return ok;
}

/* ---- data --------------------------------------------------------------- */

/* The corpus as one token stream: each non-empty line (a trailing '\r'
 * dropped) encoded without special tokens, then <|endoftext|>. start[i] is
 * where line i begins. */
typedef struct {
    int32_t *tok;
    int64_t ntok, *start, nstart;
} corpus;

static void corpus_free(corpus *c) { free(c->tok), free(c->start); }

/* "N tokens, M lines": what a checkpoint records of its corpus. */
static const char *corpus_size(const corpus *c, char *buf, size_t size) {
    snprintf(buf, size, "%lld tokens, %lld lines", (long long)c->ntok, (long long)c->nstart);
    return buf;
}

static bool corpus_load(corpus *c, const char *path, gb_tokenizer *tok, int32_t eos, char *err, size_t errsize) {
    size_t len = 0, cap = 1024, scap = 64;
    char *text = read_all(path, &len);
    memset(c, 0, sizeof *c);
    if (!text) return snprintf(err, errsize, "cannot read the corpus %s", path), false;
    c->tok = malloc(cap * sizeof *c->tok);
    c->start = malloc(scap * sizeof *c->start);
    bool ok = c->tok && c->start;
    for (char *line = text; ok && line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line)), *end = nl ? nl : text + len;
        size_t n = (size_t)(end - line) - (end > line && end[-1] == '\r');
        int32_t *ids = NULL;
        size_t k = 0;
        if (n > 0) {
            if (gb_tokenizer_encode(tok, line, n, false, &ids, &k) != GB_OK) {
                snprintf(err, errsize, "%s", gb_last_error());
                ok = false;
                break;
            }
            size_t need = (size_t)c->ntok + k + 1, old = cap;
            while (need > cap) cap *= 2;
            int32_t *grown = cap > old ? realloc(c->tok, cap * sizeof *c->tok) : c->tok;
            if (grown) c->tok = grown;
            if ((size_t)c->nstart == scap) {
                int64_t *more = realloc(c->start, 2 * scap * sizeof *c->start);
                if (more) c->start = more, scap *= 2;
            }
            if (!grown || (size_t)c->nstart == scap) ok = false;
            else {
                c->start[c->nstart++] = c->ntok;
                memcpy(c->tok + c->ntok, ids, k * sizeof *ids);
                c->ntok += (int64_t)k;
                c->tok[c->ntok++] = eos;
            }
            free(ids);
        }
        line = end + 1;
    }
    free(text);
    if (ok && c->nstart == 0) snprintf(err, errsize, "the corpus %s has no text", path), ok = false;
    else if (!ok && !*err) snprintf(err, errsize, "out of memory reading %s", path);
    if (!ok) corpus_free(c);
    return ok;
}

/* Windows are numbered k = step * batch + row. Window k is epoch e = k /
 * nstart, position j = k % nstart of that epoch's order: a Fisher-Yates
 * shuffle of the line numbers (i from n-1 down to 1 swaps i with
 * next() % (i + 1)) by PCG32 seeded with seed + (e + 1) * 0x9E3779B97F4A7C15
 * (mod 2^64). The window is ctx + 1 tokens from that line's start, wrapping
 * around the end of the stream. */
#define EPOCH_SEED_STRIDE 0x9E3779B97F4A7C15ull

typedef struct {
    const corpus *c;
    uint64_t seed;
    int64_t epoch, *order; /* order of `epoch`, or epoch = -1 */
} sampler;

static void sampler_window(sampler *s, int64_t k, int64_t T, int64_t *ids, int64_t *targets) {
    int64_t n = s->c->nstart, e = k / n;
    if (e != s->epoch) {
        gb_rng r = gb_rng_seed(s->seed + (uint64_t)(e + 1) * EPOCH_SEED_STRIDE);
        for (int64_t i = 0; i < n; i++) s->order[i] = i;
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(gb_rng_next(&r) % (uint64_t)(i + 1)), t = s->order[i];
            s->order[i] = s->order[j], s->order[j] = t;
        }
        s->epoch = e;
    }
    int64_t at = s->c->start[s->order[k % n]];
    for (int64_t t = 0; t < T; t++) {
        ids[t] = s->c->tok[(at + t) % s->c->ntok];
        targets[t] = s->c->tok[(at + t + 1) % s->c->ntok];
    }
}

/* ---- model -------------------------------------------------------------- */

typedef struct {
    train_opts o;
    gb_gpt2_config cfg;
    gb_tokenizer *tok;
    int32_t eos;
    corpus data;
    gb_module *model;
    int n;             /* parameters, named_parameters() order */
    const char **names;
    gb_tensor **params;
    gb_optim *opt[2];  /* 2-D weights with weight decay, the rest without */
    int *group, *slot; /* parameter i is opt[group[i]]'s parameter slot[i] */
    int64_t step;      /* steps done */
} trainer;

/* GPT-2's _init_weights: every weight normal(0, 0.02) except the residual
 * projections (attn.c_proj, mlp.c_proj), normal(0, 0.02 / sqrt(2 n_layer));
 * biases 0, LayerNorm weights 1. Drawn with gb_randn from one PCG32 seeded
 * with the seed, parameter after parameter in named_parameters() order. */
static gb_status init_gpt2(trainer *t) {
    gb_rng rng = gb_rng_seed((uint64_t)t->o.seed);
    for (int i = 0; i < t->n; i++) {
        gb_tensor *p = t->params[i], *v;
        const char *name = t->names[i];
        size_t len = strlen(name);
        bool bias = len > 5 && !strcmp(name + len - 5, ".bias"), norm = strstr(name, ".ln_") != NULL;
        if (bias) v = gb_zeros(gb_tensor_ndim(p), gb_tensor_shape(p), GB_DTYPE_F32);
        else if (norm) v = gb_ones(gb_tensor_ndim(p), gb_tensor_shape(p), GB_DTYPE_F32);
        else {
            bool proj = len > 13 && !strcmp(name + len - 13, "c_proj.weight");
            float std = proj ? 0.02f / sqrtf(2.0f * (float)t->cfg.n_layer) : 0.02f;
            v = gb_randn(&rng, gb_tensor_ndim(p), gb_tensor_shape(p), 0.0f, std);
        }
        gb_status st = v ? gb_copy_(p, v) : gb_last_status();
        gb_tensor_free(v);
        if (st) return st;
    }
    return GB_OK;
}

/* Weights from a safetensors file with Hugging Face's names (as written by
 * save_checkpoint; GPT-2's older names without "transformer." too). Every
 * parameter must be there with its shape; a stored lm_head.weight (tied) is
 * allowed, anything else is refused. */
static bool load_weights(trainer *t, const char *path, char *err, size_t errsize) {
    gb_safetensors *st = gb_safetensors_open(path);
    if (!st) return snprintf(err, errsize, "%s", gb_last_error()), false;
    int used = 0;
    bool ok = true, lm_head = gb_safetensors_has(st, "lm_head.weight");
    for (int i = 0; ok && i < t->n; i++) {
        const char *name = t->names[i];
        if (!gb_safetensors_has(st, name) && !strncmp(name, "transformer.", 12)) name += 12;
        gb_tensor *v = gb_safetensors_has(st, name) ? gb_safetensors_get(st, name) : NULL;
        if (!v) {
            snprintf(err, errsize, "%s: tensor '%s' is missing", path, t->names[i]);
            ok = false;
        } else if (gb_tensor_ndim(v) != gb_tensor_ndim(t->params[i]) ||
                   memcmp(gb_tensor_shape(v), gb_tensor_shape(t->params[i]),
                          sizeof(int64_t) * (size_t)gb_tensor_ndim(v))) {
            char *a = gb_tensor_describe(v), *b = gb_tensor_describe(t->params[i]);
            snprintf(err, errsize, "%s: tensor '%s' is %s but the model needs %s", path, name, a, b);
            free(a), free(b);
            ok = false;
        } else if (gb_copy_(t->params[i], v) != GB_OK) {
            snprintf(err, errsize, "%s", gb_last_error());
            ok = false;
        }
        used += v != NULL;
        gb_tensor_free(v);
    }
    if (ok && gb_safetensors_count(st) != used + lm_head)
        for (int i = 0; ok && i < gb_safetensors_count(st); i++) {
            const char *name = gb_safetensors_name(st, i);
            bool known = !strcmp(name, "lm_head.weight");
            for (int j = 0; !known && j < t->n; j++)
                known = !strcmp(name, t->names[j]) ||
                        (!strncmp(t->names[j], "transformer.", 12) && !strcmp(name, t->names[j] + 12));
            if (!known) snprintf(err, errsize, "%s: unexpected tensor '%s'", path, name), ok = false;
        }
    gb_safetensors_free(st);
    return ok;
}

static bool build(trainer *t, char *err, size_t errsize) {
    t->cfg = (gb_gpt2_config){.vocab_size = gb_tokenizer_vocab_size(t->tok), .n_positions = t->o.ctx,
                              .n_embd = t->o.width, .n_layer = t->o.layers, .n_head = t->o.heads,
                              .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
    if (!(t->model = gb_gpt2_new(&t->cfg))) return snprintf(err, errsize, "%s", gb_last_error()), false;
    if ((t->n = gb_module_parameters(t->model, &t->names, &t->params)) < 0)
        return snprintf(err, errsize, "%s", gb_last_error()), false;
    return true;
}

/* Weight decay on the 2-D weights (embeddings and projections) only, not on
 * biases and LayerNorm parameters, as nanoGPT and GPT-2 recipes do. */
static bool make_optimisers(trainer *t, char *err, size_t errsize) {
    gb_tensor **g[2] = {malloc(sizeof(gb_tensor *) * (size_t)t->n), malloc(sizeof(gb_tensor *) * (size_t)t->n)};
    int count[2] = {0, 0};
    t->group = malloc(sizeof(int) * (size_t)t->n);
    t->slot = malloc(sizeof(int) * (size_t)t->n);
    bool ok = g[0] && g[1] && t->group && t->slot && gb_module_requires_grad_(t->model, true) == GB_OK;
    for (int i = 0; ok && i < t->n; i++) {
        int k = gb_tensor_ndim(t->params[i]) >= 2 ? 0 : 1;
        t->group[i] = k, t->slot[i] = count[k];
        g[k][count[k]++] = t->params[i];
    }
    for (int k = 0; ok && k < 2; k++) {
        gb_adamw_opts a = {(float)t->o.lr, ADAM_BETA1, ADAM_BETA2, ADAM_EPS, k == 0 ? (float)t->o.weight_decay : 0};
        ok = (t->opt[k] = gb_adamw_new(count[k], g[k], a)) != NULL;
    }
    if (!ok) snprintf(err, errsize, "%s", *gb_last_error() ? gb_last_error() : "out of memory");
    free(g[0]), free(g[1]);
    return ok;
}

static void trainer_free(trainer *t) {
    for (int k = 0; k < 2; k++) gb_optim_free(t->opt[k]);
    free(t->group), free(t->slot), free(t->names), free(t->params);
    gb_module_free(t->model);
    corpus_free(&t->data);
    gb_tokenizer_free(t->tok);
}

/* ---- the schedule ------------------------------------------------------- */

/* Step s (from 0): linear warmup to lr over `warmup` steps ((s+1)/warmup),
 * then cosine decay from lr to min_lr over the remaining steps. The value is
 * computed in double and used as a float. */
static float lr_at(const train_opts *o, int64_t s) {
    if (s < o->warmup) return (float)(o->lr * (double)(s + 1) / (double)o->warmup);
    double span = (double)(o->steps - o->warmup), progress = span > 0 ? (double)(s - o->warmup) / span : 1;
    return (float)(o->min_lr + 0.5 * (o->lr - o->min_lr) * (1 + cos(M_PI * progress)));
}

/* ---- checkpoints -------------------------------------------------------- */

static const char *const TOKENIZER_FILES[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                              "special_tokens_map.json"};

static bool save_text(const char *dir, const char *name, const char *text, char *err, size_t errsize) {
    char *path = path_join(dir, name);
    bool ok = path && write_file(path, text, strlen(text));
    if (!ok) snprintf(err, errsize, "cannot write %s/%s", dir, name);
    free(path);
    return ok;
}

/* config.json as transformers writes it for GPT2LMHeadModel (dropout 0:
 * the model was trained without). */
static void config_json(const trainer *t, char *buf, size_t size) {
    const gb_gpt2_config *c = &t->cfg;
    snprintf(buf, size,
             "{\n"
             "  \"activation_function\": \"gelu_new\",\n"
             "  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n"
             "  \"attn_pdrop\": 0.0,\n"
             "  \"bos_token_id\": %d,\n"
             "  \"embd_pdrop\": 0.0,\n"
             "  \"eos_token_id\": %d,\n"
             "  \"initializer_range\": 0.02,\n"
             "  \"layer_norm_epsilon\": 1e-05,\n"
             "  \"model_type\": \"gpt2\",\n"
             "  \"n_ctx\": %lld,\n"
             "  \"n_embd\": %lld,\n"
             "  \"n_head\": %lld,\n"
             "  \"n_inner\": null,\n"
             "  \"n_layer\": %lld,\n"
             "  \"n_positions\": %lld,\n"
             "  \"reorder_and_upcast_attn\": false,\n"
             "  \"resid_pdrop\": 0.0,\n"
             "  \"scale_attn_by_inverse_layer_idx\": false,\n"
             "  \"scale_attn_weights\": true,\n"
             "  \"tie_word_embeddings\": true,\n"
             "  \"torch_dtype\": \"float32\",\n"
             "  \"use_cache\": true,\n"
             "  \"vocab_size\": %lld\n"
             "}\n",
             t->eos, t->eos, (long long)c->n_positions, (long long)c->n_embd, (long long)c->n_head,
             (long long)c->n_layer, (long long)c->n_positions, (long long)c->vocab_size);
}

static bool copy_tokenizer(const char *from, const char *dir, char *err, size_t errsize) {
    struct stat sb;
    bool is_dir = stat(from, &sb) == 0 && S_ISDIR(sb.st_mode), ok = true;
    for (size_t i = 0; ok && i < sizeof TOKENIZER_FILES / sizeof TOKENIZER_FILES[0]; i++) {
        const char *name = TOKENIZER_FILES[i], *base = strrchr(from, '/');
        if (!is_dir && strcmp(base ? base + 1 : from, name)) continue;
        char *src = is_dir ? path_join(from, name) : strdup(from), *dst = path_join(dir, name);
        size_t len = 0;
        char *data = src && access(src, F_OK) == 0 ? read_all(src, &len) : NULL;
        if (data && !write_file(dst, data, len)) snprintf(err, errsize, "cannot write %s", dst), ok = false;
        free(data), free(src), free(dst);
    }
    return ok;
}

/* A Hugging Face directory: config.json, generation_config.json,
 * model.safetensors (tied lm_head not stored, as save_pretrained does) and
 * the tokenizer's files; with_state adds optimizer.safetensors: both AdamW
 * moments of every parameter ("NAME.exp_avg", "NAME.exp_avg_sq") and, as
 * metadata, the step and the run's options. */
static bool save_checkpoint(const trainer *t, const char *dir, bool with_state, char *err, size_t errsize) {
    char buf[4096];
    if (!mkdirs(dir)) return snprintf(err, errsize, "cannot create the directory %s", dir), false;
    config_json(t, buf, sizeof buf);
    if (!save_text(dir, "config.json", buf, err, errsize)) return false;
    snprintf(buf, sizeof buf,
             "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d\n}\n", t->eos,
             t->eos);
    if (!save_text(dir, "generation_config.json", buf, err, errsize) ||
        !copy_tokenizer(t->o.tokenizer, dir, err, errsize))
        return false;
    char *path = path_join(dir, "model.safetensors");
    gb_status st = gb_safetensors_save(path, t->n, t->names, t->params, GB_DTYPE_F32,
                                       (const char *[]){"format", "pt", NULL});
    free(path);
    if (st) return snprintf(err, errsize, "%s", gb_last_error()), false;
    if (!with_state) return true;
    int nt = 2 * t->n;
    char **names = calloc((size_t)nt, sizeof *names), (*text)[64] = calloc(NOPTIONS + 2, sizeof *text);
    gb_tensor **ts = calloc((size_t)nt, sizeof *ts);
    const char **meta = calloc(2 * (NOPTIONS + 3) + 1, sizeof *meta);
    bool ok = names && text && ts && meta;
    for (int i = 0; ok && i < t->n; i++)
        for (int k = 0; k < 2; k++) {
            const char *what = k ? "exp_avg_sq" : "exp_avg";
            size_t len = strlen(t->names[i]) + 12;
            ts[2 * i + k] = gb_optim_state(t->opt[t->group[i]], t->slot[i], what);
            if (!ts[2 * i + k] || !(names[2 * i + k] = malloc(len))) {
                ok = false;
                break;
            }
            snprintf(names[2 * i + k], len, "%s.%s", t->names[i], what);
        }
    int m = 0;
    if (ok) {
        snprintf(text[NOPTIONS], sizeof text[0], "%lld", (long long)t->step);
        corpus_size(&t->data, text[NOPTIONS + 1], sizeof text[0]);
        meta[m++] = "format", meta[m++] = "glassbox-train", meta[m++] = "step", meta[m++] = text[NOPTIONS];
        meta[m++] = "corpus_size", meta[m++] = text[NOPTIONS + 1];
        for (int i = 0; i < NOPTIONS; i++)
            if (options[i].saved) {
                option_text(&t->o, i, text[i], sizeof text[i]);
                meta[m++] = options[i].flag, meta[m++] = text[i];
            }
        path = path_join(dir, "optimizer.safetensors");
        ok = path && gb_safetensors_save(path, nt, (const char *const *)names, ts, GB_DTYPE_F32, meta) == GB_OK;
        free(path);
    }
    if (!ok) snprintf(err, errsize, "saving the optimiser state in %s: %s", dir, gb_last_error());
    for (int i = 0; names && i < nt; i++) free(names[i]);
    free(names), free(text), free(ts), free(meta);
    return ok;
}

/* Take the run's options (those not given again), the step and both
 * moments from DIR/optimizer.safetensors. */
static gb_safetensors *open_state(train_opts *o, int64_t *step, char *err, size_t errsize) {
    char *path = path_join(o->resume, "optimizer.safetensors");
    gb_safetensors *st = path ? gb_safetensors_open(path) : NULL;
    free(path);
    const char *s = st ? gb_safetensors_metadata(st, "step") : NULL;
    char *end = NULL;
    if (!st || !s) {
        snprintf(err, errsize, "--resume: %s", st ? "optimizer.safetensors has no step" : gb_last_error());
        gb_safetensors_free(st);
        return NULL;
    }
    *step = strtoll(s, &end, 10);
    if (*end || *step < 0) {
        snprintf(err, errsize, "--resume: optimizer.safetensors records the step '%s'", s);
        gb_safetensors_free(st);
        return NULL;
    }
    for (int i = 0; i < NOPTIONS; i++) {
        const char *v = gb_safetensors_metadata(st, options[i].flag);
        if (!options[i].saved || *((bool *)(void *)((char *)o + options[i].given_off))) continue;
        if (!v) {
            snprintf(err, errsize, "--resume: optimizer.safetensors does not record --%s", options[i].flag);
            gb_safetensors_free(st);
            return NULL;
        }
        if (!set_option(o, i, v, err, errsize)) {
            gb_safetensors_free(st);
            return NULL;
        }
    }
    return st;
}

static bool load_state(trainer *t, gb_safetensors *st, char *err, size_t errsize) {
    for (int i = 0; i < t->n; i++)
        for (int k = 0; k < 2; k++) {
            char name[512];
            snprintf(name, sizeof name, "%s.%s", t->names[i], k ? "exp_avg_sq" : "exp_avg");
            gb_tensor *v = gb_safetensors_get(st, name);
            gb_status s = v ? gb_optim_set_state(t->opt[t->group[i]], t->slot[i], k ? "exp_avg_sq" : "exp_avg", v)
                            : gb_last_status();
            gb_tensor_free(v);
            if (s) return snprintf(err, errsize, "--resume: %s", gb_last_error()), false;
        }
    for (int k = 0; k < 2; k++) gb_optim_set_steps(t->opt[k], t->step);
    return true;
}

/* ---- progress ----------------------------------------------------------- */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One line on a terminal, redrawn: bar, step, loss, tokens/s, time left. */
static void progress(int64_t done, int64_t first, int64_t total, double loss, double tps, double elapsed) {
    int width = 24, filled = total ? (int)(width * done / total) : width;
    double left = done > first ? elapsed / (double)(done - first) * (double)(total - done) : 0;
    fprintf(stderr, "\rtrain [%.*s%*s] step %lld/%lld  loss %.4f  %.0f tok/s  %d:%02d left ", filled,
            "########################", width - filled, "", (long long)done, (long long)total, loss, tps,
            (int)left / 60, (int)left % 60);
    fflush(stderr);
}

/* The loss curve: every step, and an exponential moving average (0.95,
 * bias-corrected as Adam's moments are, so it does not lag at the start). */
static bool plot_losses(const char *path, const double *x, const double *loss, int64_t n) {
    double *ema = malloc(sizeof(double) * (size_t)(n ? n : 1)), m = 0, decay = 1;
    if (!ema) return false;
    for (int64_t i = 0; i < n; i++) {
        m = 0.95 * m + 0.05 * loss[i], decay *= 0.95;
        ema[i] = m / (1 - decay);
    }
    gb_series s[2] = {{"loss", x, loss, (int)n, {165, 195, 235}, 1},
                      {"moving average", x, ema, (int)n, {25, 65, 165}, 2}};
    bool ok = gb_plot_lines(path, 800, 500, "glassbox train: training loss", "step", "loss", 2, s);
    free(ema);
    return ok;
}

/* ---- training ----------------------------------------------------------- */

/* One step: forward on the batch, mean cross-entropy over every position,
 * backward, clipping, the scheduled learning rate, AdamW. */
static gb_status train_step(trainer *t, const int64_t *ids, const int64_t *targets, float lr, double *loss,
                            float *norm) {
    int64_t B = t->o.batch, T = t->o.ctx, V = t->cfg.vocab_size;
    gb_tensor *x = gb_from_data(ids, 2, (int64_t[]){B, T}, GB_DTYPE_I64);
    gb_tensor *y = gb_from_data(targets, 1, (int64_t[]){B * T}, GB_DTYPE_I64);
    gb_tensor *logits = NULL, *flat = NULL, *l = NULL;
    gb_status st = x && y ? gb_module_run(t->model, NULL, x, &logits) : gb_last_status();
    if (st == GB_OK) st = (flat = gb_reshape(logits, 2, (int64_t[]){B * T, V})) ? GB_OK : gb_last_status();
    if (st == GB_OK) st = (l = gb_cross_entropy(flat, y, -100)) ? GB_OK : gb_last_status();
    if (st == GB_OK) st = gb_item(l, loss);
    if (st == GB_OK) st = gb_backward(l, NULL, false);
    if (st == GB_OK)
        st = gb_clip_grad_norm(t->n, t->params, t->o.clip > 0 ? (float)t->o.clip : INFINITY, norm);
    for (int k = 0; st == GB_OK && k < 2; k++) {
        gb_optim_set_lr(t->opt[k], lr);
        st = gb_optim_step(t->opt[k]);
    }
    for (int k = 0; k < 2; k++) gb_optim_zero_grad(t->opt[k]);
    gb_tensor_free(l), gb_tensor_free(flat), gb_tensor_free(logits), gb_tensor_free(x), gb_tensor_free(y);
    return st;
}

static int run(trainer *t) {
    train_opts *o = &t->o;
    char err[1024] = "";
    bool tty = isatty(STDERR_FILENO);
    FILE *csv = NULL;
    int64_t B = o->batch, T = o->ctx, first = t->step, n = o->steps > first ? o->steps - first : 0;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(B * T)), *targets = malloc(sizeof(int64_t) * (size_t)(B * T));
    double *xs = malloc(sizeof(double) * (size_t)(n ? n : 1)), *losses = malloc(sizeof(double) * (size_t)(n ? n : 1));
    sampler smp = {&t->data, (uint64_t)o->seed, -1, malloc(sizeof(int64_t) * (size_t)t->data.nstart)};
    int rc = 1;
    if (!ids || !targets || !xs || !losses || !smp.order) {
        failf("out of memory");
        goto done;
    }
    if (o->log && (!(csv = fopen(o->log, "w")) || fprintf(csv, "step,lr,loss,grad_norm,tokens_per_s\n") < 0)) {
        failf("cannot write the log %s", o->log);
        goto done;
    }
    double t0 = now();
    while (t->step < o->steps) {
        int64_t s = t->step;
        double ts = now(), loss = 0;
        float norm = 0, lr = lr_at(o, s);
        for (int64_t b = 0; b < B; b++) sampler_window(&smp, s * B + b, T, ids + b * T, targets + b * T);
        if (train_step(t, ids, targets, lr, &loss, &norm) != GB_OK) {
            snprintf(err, sizeof err, "step %lld: %s", (long long)s + 1, gb_last_error());
            break;
        }
        t->step = s + 1;
        double end = now(), tps = (double)(B * T) / fmax(end - ts, 1e-9);
        xs[s - first] = (double)t->step, losses[s - first] = loss;
        if (csv) fprintf(csv, "%lld,%.9g,%.9g,%.9g,%.1f\n", (long long)t->step, (double)lr, loss, (double)norm, tps);
        if (tty) progress(t->step, first, o->steps, loss, (double)(B * T * (t->step - first)) / (end - t0), end - t0);
        if (o->save_every && t->step % o->save_every == 0) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/checkpoint-%lld", o->out, (long long)t->step);
            if (!save_checkpoint(t, dir, true, err, sizeof err)) break;
        }
    }
    if (tty && n) fputc('\n', stderr);
    if (*err) {
        failf("%s", err);
        goto done;
    }
    if (csv && fclose(csv) != 0) {
        csv = NULL;
        failf("cannot write the log %s", o->log);
        goto done;
    }
    csv = NULL;
    if (!save_checkpoint(t, o->out, false, err, sizeof err)) {
        failf("%s", err);
        goto done;
    }
    if (o->plot && !plot_losses(o->plot, xs, losses, n)) {
        failf("cannot write the plot %s", o->plot);
        goto done;
    }
    rc = 0;
done:
    if (csv) fclose(csv);
    free(ids), free(targets), free(xs), free(losses), free(smp.order);
    return rc;
}

static int train(const gb_cli_args *a) {
    trainer t = {0};
    char err[1024] = "";
    defaults(&t.o);
    for (int k = 0; k < a->nseq; k++) {
        int i = a->seq[k].opt;
        if (!set_option(&t.o, i, a->seq[k].str, err, sizeof err)) return failf("%s", err), 2;
        *((bool *)(void *)((char *)&t.o + options[i].given_off)) = true;
    }
    int rc;
    if (t.o.resume && t.o.init) return failf("--resume and --init exclude each other"), 2;
    train_opts *o = &t.o;
    gb_safetensors *state = NULL;
    if (o->resume && !(state = open_state(o, &t.step, err, sizeof err))) return failf("%s", err);
    if (o->resume && !o->tokenizer) o->tokenizer = o->resume;
    if (!o->corpus || !o->tokenizer || !o->out)
        return failf("missing --%s (see glassbox train --help)",
                     !o->corpus ? "corpus" : !o->tokenizer ? "tokenizer" : "out"),
               2;
    rc = 1;
    if (o->threads > 0) gb_set_num_threads((int)o->threads);
    if (!(t.tok = gb_tokenizer_open(o->tokenizer))) {
        failf("%s", gb_last_error());
        goto done;
    }
    t.eos = gb_tokenizer_eos_id(t.tok);
    if (t.eos < 0) {
        failf("the tokenizer %s has no <|endoftext|> (end-of-text) token", o->tokenizer);
        goto done;
    }
    if (!corpus_load(&t.data, o->corpus, t.tok, t.eos, err, sizeof err) || !build(&t, err, sizeof err)) {
        failf("%s", err);
        goto done;
    }
    if (state) { /* the data order is only the same over the same lines */
        char have[64];
        const char *want = gb_safetensors_metadata(state, "corpus_size");
        if (strcmp(want ? want : "", corpus_size(&t.data, have, sizeof have))) {
            failf("--resume: the corpus %s has %s; the checkpoint was trained on %s", o->corpus, have,
                  want ? want : "(unknown)");
            goto done;
        }
    }
    const char *weights = o->init;
    char *resumed = o->resume ? path_join(o->resume, "model.safetensors") : NULL;
    if (resumed) weights = resumed;
    bool ok = weights ? load_weights(&t, weights, err, sizeof err) : init_gpt2(&t) == GB_OK;
    free(resumed);
    if (ok) ok = make_optimisers(&t, err, sizeof err);
    if (ok && state) ok = load_state(&t, state, err, sizeof err);
    if (!ok) {
        failf("%s", *err ? err : gb_last_error());
        goto done;
    }
    rc = run(&t);
done:
    gb_safetensors_free(state);
    trainer_free(&t);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_train = {
    "train", train, "", 0, 0, "train a GPT-2 from scratch and save it in Hugging Face's layout",
    "Trains a GPT2LMHeadModel with glassbox's own autograd (AdamW, warmup and cosine decay) on a corpus of one "
    "sentence per line; --corpus, --tokenizer and --out are required. docs/training.md describes the data "
    "order, initialisation, schedule, determinism and resuming.",
    cli_opts, sizeof cli_opts / sizeof *cli_opts};
