/* `glassbox lens | patch | attn`: the logit lens, activation patching and
 * attention patterns on any GPT-2 or Llama-family checkpoint, as a table,
 * CSV and a picture. Each command is a core function that fills a result
 * through the tracing API (what docs/recipes.md shows), printers for the
 * table, the CSV and the picture, and its option parsing. Module paths come
 * from the architecture (gb_model_part). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "plot.h"

/* ---- shared ------------------------------------------------------------- */

/* The text of token id (as the tokenizer decodes it alone) into buf;
 * "#ID" when the model has no tokenizer or the id does not decode. */
/* A token's text through tok (a model's, or a server's for trace --remote). */
static const char *token_text(gb_tokenizer *tok, int64_t id, char *buf, size_t size) {
    char *t = NULL;
    int32_t i = (int32_t)id;
    if (tok && gb_tokenizer_decode(tok, &i, 1, false, &t, NULL) == GB_OK) snprintf(buf, size, "%s", t);
    else snprintf(buf, size, "#%lld", (long long)id);
    free(t);
    return buf;
}

static const char *token_str(gb_lm *lm, int64_t id, char *buf, size_t size) {
    return token_text(gb_lm_tokenizer(lm), id, buf, size);
}

const char *gb_cli_quoted(const char *text, char *buf, size_t size) {
    size_t n = 0;
    buf[n++] = '\'';
    for (const char *p = text; *p && n + 4 < size; p++) {
        const char *esc = *p == '\n' ? "\\n" : *p == '\t' ? "\\t" : *p == '\\' ? "\\\\" : *p == '\'' ? "\\'" : NULL;
        if (esc) buf[n++] = esc[0], buf[n++] = esc[1];
        else buf[n++] = *p;
    }
    buf[n++] = '\'';
    buf[n] = 0;
    return buf;
}

/* A CSV field: in double quotes, inner quotes doubled. */
static void csv_str(FILE *f, const char *text) {
    fputc('"', f);
    for (const char *p = text; *p; p++) {
        if (*p == '"') fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

/* The path of block l's part (GB_PART_LAYERS alone when part is
 * GB_PART_LAYERS) into buf. */
static const char *block_path(gb_model *m, int l, gb_part part, char *buf, size_t size) {
    if (part == GB_PART_LAYERS) snprintf(buf, size, "%s.%d", gb_model_part(m, GB_PART_LAYERS), l);
    else snprintf(buf, size, "%s.%d.%s", gb_model_part(m, GB_PART_LAYERS), l, gb_model_part(m, part));
    return buf;
}

static int num_layers(gb_lm *lm) {
    gb_module *list = gb_module_find(gb_lm_module(lm), gb_model_part(gb_lm_model(lm), GB_PART_LAYERS));
    return list ? gb_module_num_children(list) : 0;
}

/* The k largest of p[0..n), largest first (ties: the smaller index first). */
static void top_k(const float *p, int64_t n, int k, int64_t *ids, float *probs) {
    for (int r = 0; r < k; r++) {
        int64_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            bool taken = false;
            for (int q = 0; q < r && !taken; q++) taken = ids[q] == i;
            if (!taken && (best < 0 || p[i] > p[best])) best = i;
        }
        ids[r] = best;
        probs[r] = best >= 0 ? p[best] : NAN;
    }
}

/* A progress bar on stderr when it is a terminal: "label [####   ] i/n". */
static void progress(const char *label, int done, int total) {
    if (!isatty(STDERR_FILENO) || total <= 0) return;
    int width = 30, filled = width * done / total;
    fprintf(stderr, "\r%s [%.*s%*s] %d/%d", label, filled, "##############################", width - filled, "", done,
            total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* ---- top-k of logits (run --top, trace --top) ---------------------------- */

void gb_cli_print_top(gb_tokenizer *vocab, gb_tensor *logits, int k) {
    gb_tensor *p = gb_softmax(logits, -1), *c = p ? gb_contiguous(p) : NULL;
    if (!c) {
        fprintf(stderr, "glassbox: top-k: %s\n", gb_last_error());
        gb_tensor_free(p);
        return;
    }
    int64_t v = gb_tensor_dim(c, -1), rows = gb_tensor_numel(c) / v;
    int64_t *ids = malloc(sizeof *ids * (size_t)k);
    float *probs = malloc(sizeof *probs * (size_t)k);
    for (int64_t r = 0; ids && probs && r < rows; r++) {
        top_k((const float *)gb_tensor_data(c) + r * v, v, k, ids, probs);
        if (rows > 1) printf("row %lld:\n", (long long)r);
        for (int i = 0; i < k && ids[i] >= 0; i++) {
            char tok[256], q[520];
            printf("  %-16s %6lld  p = %.4f\n", gb_cli_quoted(token_text(vocab, ids[i], tok, sizeof tok), q, sizeof q),
                   (long long)ids[i], (double)probs[i]);
        }
    }
    free(ids), free(probs);
    gb_tensor_free(c), gb_tensor_free(p);
}

/* ---- the logit lens ------------------------------------------------------- */

typedef struct lens_result {
    int layers, T, k;
    int64_t *input; /* [T] the prompt's ids */
    int64_t *top;   /* [layers, T, k] token ids, most likely first */
    float *prob;    /* [layers, T, k] their probabilities */
} lens_result;

static void lens_free(lens_result *r) {
    free(r->input), free(r->top), free(r->prob);
    *r = (lens_result){0};
}

/* Each block's output (the residual stream after it) through the model's
 * final norm and unembedding, softmaxed: the k most likely tokens at every
 * layer and position of ids [1, T]. nnsight's lens, in one trace: the two
 * modules called on each block's hidden state (gb_call: no hook events). */
static gb_status lens_compute(gb_lm *lm, gb_tensor *ids, int k, lens_result *r) {
    gb_model *m = gb_lm_model(lm);
    const char *norm = gb_model_part(m, GB_PART_NORM), *unembed = gb_model_part(m, GB_PART_UNEMBED);
    *r = (lens_result){.layers = num_layers(lm), .T = (int)gb_tensor_dim(ids, 1), .k = k};
    if (!r->layers) return gb_last_status();
    size_t cells = (size_t)r->layers * (size_t)r->T * (size_t)k;
    r->input = malloc(sizeof *r->input * (size_t)r->T);
    r->top = malloc(sizeof *r->top * cells);
    r->prob = malloc(sizeof *r->prob * cells);
    gb_val **probs = calloc((size_t)r->layers, sizeof *probs);
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    gb_status st = r->input && r->top && r->prob && probs && tr ? GB_OK : GB_ERR_ALLOC;
    for (int64_t t = 0; st == GB_OK && t < r->T; t++) r->input[t] = ((const int64_t *)gb_tensor_data(ids))[t];
    char path[256];
    for (int l = 0; st == GB_OK && l < r->layers; l++) { /* lm_head(transformer.ln_f(h)).softmax(-1) */
        gb_val *h = gb_val_index(gb_output(tr, block_path(m, l, GB_PART_LAYERS, path, sizeof path)), "[0]");
        probs[l] = gb_save(gb_val_softmax(gb_call(tr, unembed, gb_call(tr, norm, h)), -1));
    }
    if (st == GB_OK) st = gb_trace_run(tr);
    for (int l = 0; st == GB_OK && l < r->layers; l++) {
        gb_tensor *p = gb_contiguous(gb_value(probs[l])); /* [1, T, V] */
        int64_t V = p ? gb_tensor_dim(p, -1) : 0;
        if (!p) st = gb_last_status();
        for (int t = 0; st == GB_OK && t < r->T; t++) {
            size_t at = ((size_t)l * (size_t)r->T + (size_t)t) * (size_t)k;
            top_k((const float *)gb_tensor_data(p) + (size_t)t * (size_t)V, V, k, r->top + at, r->prob + at);
        }
        gb_tensor_free(p);
    }
    gb_trace_free(tr);
    free(probs);
    if (st != GB_OK) lens_free(r);
    return st;
}

static void lens_print(gb_lm *lm, const char *prompt, const lens_result *r) {
    gb_model *m = gb_lm_model(lm);
    char tok[256], q[520];
    printf("logit lens of %s: each layer's output through %s and %s, top %d per position\n", gb_model_dir(m),
           gb_model_part(m, GB_PART_NORM), gb_model_part(m, GB_PART_UNEMBED), r->k);
    if (prompt) printf("prompt: %s\n", gb_cli_quoted(prompt, q, sizeof q));
    for (int l = 0; l < r->layers; l++) {
        printf("layer %d\n", l);
        for (int t = 0; t < r->T; t++) {
            printf("  %3d %-16s", t, gb_cli_quoted(token_str(lm, r->input[t], tok, sizeof tok), q, sizeof q));
            for (int i = 0; i < r->k; i++) {
                size_t at = ((size_t)l * (size_t)r->T + (size_t)t) * (size_t)r->k + (size_t)i;
                printf("  %s %.4f", gb_cli_quoted(token_str(lm, r->top[at], tok, sizeof tok), q, sizeof q), (double)r->prob[at]);
            }
            putchar('\n');
        }
    }
}

static bool lens_csv(gb_lm *lm, const char *path, const lens_result *r) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    char tok[256];
    fprintf(f, "layer,position,input,rank,token_id,token,probability\n");
    for (int l = 0; l < r->layers; l++)
        for (int t = 0; t < r->T; t++)
            for (int i = 0; i < r->k; i++) {
                size_t at = ((size_t)l * (size_t)r->T + (size_t)t) * (size_t)r->k + (size_t)i;
                fprintf(f, "%d,%d,", l, t);
                csv_str(f, token_str(lm, r->input[t], tok, sizeof tok));
                fprintf(f, ",%d,%lld,", i, (long long)r->top[at]);
                csv_str(f, token_str(lm, r->top[at], tok, sizeof tok));
                fprintf(f, ",%.9g\n", (double)r->prob[at]);
            }
    return fclose(f) == 0;
}

/* {"input": [{"id", "token"}...], "layers": [[[{"id", "token", "p"}...] per position] per layer]} */
static void lens_json(gb_lm *lm, const lens_result *r) {
    char tok[256];
    printf("{\"input\": [");
    for (int t = 0; t < r->T; t++) {
        printf("%s{\"id\": %lld, \"token\": ", t ? ", " : "", (long long)r->input[t]);
        gb_cli_json_string(stdout, token_str(lm, r->input[t], tok, sizeof tok));
        printf("}");
    }
    printf("], \"layers\": [");
    for (int l = 0; l < r->layers; l++) {
        printf("%s[", l ? ", " : "");
        for (int t = 0; t < r->T; t++) {
            printf("%s[", t ? ", " : "");
            for (int i = 0; i < r->k; i++) {
                size_t at = ((size_t)l * (size_t)r->T + (size_t)t) * (size_t)r->k + (size_t)i;
                printf("%s{\"id\": %lld, \"token\": ", i ? ", " : "", (long long)r->top[at]);
                gb_cli_json_string(stdout, token_str(lm, r->top[at], tok, sizeof tok));
                printf(", \"p\": %.9g}", (double)r->prob[at]);
            }
            printf("]");
        }
        printf("]");
    }
    printf("]}\n");
}

/* Token texts of ids[0..n) as labels, each malloc'd; a token of spaces
 * and newlines alone is quoted (' ', '\n') so that it shows. NULL when out
 * of memory. */
static char **token_names(gb_tokenizer *vocab, const int64_t *ids, int n, int stride) {
    char **names = calloc((size_t)n, sizeof *names);
    char tok[256], q[520];
    for (int i = 0; names && i < n; i++) {
        const char *t = token_text(vocab, ids[(size_t)i * (size_t)stride], tok, sizeof tok);
        names[i] = strdup(t[strspn(t, " \n\t\r")] ? t : gb_cli_quoted(t, q, sizeof q));
    }
    return names;
}

static void free_names(char **names, int n) {
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

/* One row name per layer: "0", "1", ... */
static char **layer_names(int n) {
    char **names = calloc((size_t)n, sizeof *names);
    for (int i = 0; names && i < n; i++)
        if ((names[i] = malloc(16))) snprintf(names[i], 16, "%d", i);
    return names;
}

/* The lens as a picture: cells coloured by the top token's probability and
 * labelled with it. */
static bool lens_png(gb_lm *lm, const char *path, const lens_result *r, int *w, int *h) {
    int n = r->layers * r->T;
    double *v = malloc(sizeof *v * (size_t)n);
    char **cells = token_names(gb_lm_tokenizer(lm), r->top, n, r->k), **cols = token_names(gb_lm_tokenizer(lm), r->input, r->T, 1);
    char **rows = layer_names(r->layers);
    for (int i = 0; v && i < n; i++) v[i] = r->prob[(size_t)i * (size_t)r->k];
    gb_heatmap hm = {.title = "Logit lens: the most likely next token at each layer",
                     .xlabel = "input token (position)",
                     .ylabel = "layer",
                     .scale_label = "probability",
                     .rows = r->layers,
                     .cols = r->T,
                     .v = v,
                     .cells = (const char *const *)cells,
                     .row_names = (const char *const *)rows,
                     .col_names = (const char *const *)cols,
                     .vmin = 0,
                     .vmax = 1,
                     .cmap = GB_CMAP_SEQUENTIAL};
    bool ok = v && cells && cols && rows && gb_plot_heatmap(path, &hm, w, h);
    free(v);
    free_names(cells, n), free_names(cols, r->T), free_names(rows, r->layers);
    return ok;
}

/* ---- activation patching -------------------------------------------------- */

#define PATCH_WHAT(X)                                                                                                  \
    X(resid, GB_PART_LAYERS, "the block's output (the residual stream after it)")                                     \
    X(attn, GB_PART_ATTN, "the attention's output")                                                                   \
    X(mlp, GB_PART_MLP, "the MLP's output")

static const struct {
    const char *name;
    gb_part part;
    const char *what;
} patch_whats[] = {
#define GB__X(name, part, what) {#name, part, what},
    PATCH_WHAT(GB__X)
#undef GB__X
};
enum { PATCH_NWHAT = sizeof patch_whats / sizeof patch_whats[0] };

typedef struct patch_result {
    int layers, T, what;
    int64_t target, foil;
    double clean, corrupt; /* the metric on the clean and the corrupted run */
    double *diff;          /* [layers, T] the metric with (layer, position) patched */
    double *recovered;     /* [layers, T] (diff - corrupt) / (clean - corrupt) */
    int passes;            /* forward passes of the sweep */
} patch_result;

static void patch_free(patch_result *r) {
    free(r->diff), free(r->recovered);
    *r = (patch_result){0};
}

/* The patched value at block l: a block's or attention's output tuple
 * gives its hidden states ([0]); the MLP returns them alone. */
static gb_val *patch_point(gb_trace *tr, gb_model *m, int what, int l) {
    char path[256];
    gb_val *v = gb_output(tr, block_path(m, l, patch_whats[what].part, path, sizeof path));
    return patch_whats[what].part == GB_PART_MLP ? v : gb_val_index(v, "[0]");
}

/* logit[target] - logit[foil] at the last position of the run's logits. */
static gb_val *logit_diff(gb_trace *tr, gb_model *m, int64_t target, int64_t foil) {
    char a[64], b[64];
    gb_val *logits = gb_output(tr, gb_model_part(m, GB_PART_UNEMBED));
    snprintf(a, sizeof a, "[0, -1, %lld]", (long long)target);
    snprintf(b, sizeof b, "[0, -1, %lld]", (long long)foil);
    return gb_save(gb_val_sub(gb_val_index(logits, a), gb_val_index(logits, b)));
}

/* One run of ids saving the last position's logits [V] and, when acts is
 * given, every layer's patched value. */
static gb_status patch_reference(gb_lm *lm, gb_tensor *ids, int what, gb_tensor **last, gb_tensor **acts) {
    gb_model *m = gb_lm_model(lm);
    int L = num_layers(lm);
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    gb_val *logits = gb_save(gb_val_index(gb_output(tr, gb_model_part(m, GB_PART_UNEMBED)), "[0, -1]"));
    gb_val **v = calloc((size_t)L, sizeof *v);
    for (int l = 0; acts && v && l < L; l++) v[l] = gb_save(patch_point(tr, m, what, l));
    gb_status st = v ? gb_trace_run(tr) : GB_ERR_ALLOC;
    if (st == GB_OK) *last = gb_tensor_ref(gb_value(logits));
    for (int l = 0; st == GB_OK && acts && l < L; l++) acts[l] = gb_tensor_ref(gb_value(v[l]));
    free(v);
    gb_trace_free(tr);
    return st;
}

static int64_t argmax_of(gb_tensor *logits) {
    gb_tensor *a = gb_argmax(logits, -1, false);
    double id = -1;
    if (a) gb_item(a, &id);
    gb_tensor_free(a);
    return (int64_t)id;
}

static double logit_at(gb_tensor *logits, int64_t id) {
    double v = NAN;
    gb_tensor_get(logits, (int64_t[]){id}, &v);
    return v;
}

/* Patch `what` of every layer and position from the clean run into the
 * corrupted one, batch invokes of the corrupted prompt per forward pass,
 * and measure logit(target) - logit(foil) at the last position. target < 0:
 * the clean run's prediction; foil < 0: the corrupted run's. On failure,
 * the message is in err. */
static gb_status patch_compute(gb_lm *lm, gb_tensor *clean, gb_tensor *corrupt, int what, int64_t target, int64_t foil,
                               int batch, bool show_progress, patch_result *r, char *err, size_t errsize) {
    gb_model *m = gb_lm_model(lm);
    *r = (patch_result){.layers = num_layers(lm), .T = (int)gb_tensor_dim(clean, 1), .what = what};
    if (gb_tensor_dim(corrupt, 1) != r->T) {
        snprintf(err, errsize, "the clean prompt has %d tokens and the corrupted one %lld; patching position by "
                               "position needs prompts of the same length (reword one)",
                 r->T, (long long)gb_tensor_dim(corrupt, 1));
        return GB_ERR_SHAPE;
    }
    int L = r->layers, n = L * r->T;
    gb_tensor **acts = calloc((size_t)L, sizeof *acts), *clean_last = NULL, *corrupt_last = NULL;
    gb_val **diffs = calloc((size_t)(batch < n ? batch : n), sizeof *diffs);
    r->diff = malloc(sizeof *r->diff * (size_t)n);
    r->recovered = malloc(sizeof *r->recovered * (size_t)n);
    gb_status st = acts && diffs && r->diff && r->recovered ? GB_OK : GB_ERR_ALLOC;
    if (st == GB_OK) st = patch_reference(lm, clean, what, &clean_last, acts);
    if (st == GB_OK) st = patch_reference(lm, corrupt, what, &corrupt_last, NULL);
    if (st == GB_OK) {
        r->target = target >= 0 ? target : argmax_of(clean_last);
        r->foil = foil >= 0 ? foil : argmax_of(corrupt_last);
        r->clean = logit_at(clean_last, r->target) - logit_at(clean_last, r->foil);
        r->corrupt = logit_at(corrupt_last, r->target) - logit_at(corrupt_last, r->foil);
        if (r->target == r->foil) {
            snprintf(err, errsize, "the target and the foil are both token %lld (the clean and corrupted runs "
                                   "predict the same token); choose them with --target and --foil",
                     (long long)r->target);
            st = GB_ERR_ARG;
        } else if (!(fabs(r->clean - r->corrupt) > 1e-6)) {
            snprintf(err, errsize, "the logit difference is %g on both prompts, so nothing can be recovered; "
                                   "choose other prompts or tokens", r->clean);
            st = GB_ERR_ARG;
        }
    }
    for (int start = 0; st == GB_OK && start < n; start += batch) {
        int count = n - start < batch ? n - start : batch;
        gb_trace *tr = gb_trace_new(gb_lm_module(lm), NULL);
        gb_val **src = calloc((size_t)L, sizeof *src); /* each layer's clean values, one constant per trace */
        st = tr && src ? GB_OK : GB_ERR_ALLOC;
        for (int j = 0; st == GB_OK && j < count; j++) {
            int l = (start + j) / r->T, t = (start + j) % r->T;
            char idx[64];
            snprintf(idx, sizeof idx, "[:, %d]", t);
            if (!src[l]) src[l] = gb_const(tr, acts[l]);
            st = gb_invoke(tr, corrupt);
            if (st == GB_OK) gb_set_index(patch_point(tr, m, what, l), idx, gb_val_index(src[l], idx));
            diffs[j] = logit_diff(tr, m, r->target, r->foil);
            gb_invoke_end(tr);
        }
        if (st == GB_OK) st = gb_trace_run(tr);
        for (int j = 0; st == GB_OK && j < count; j++) {
            double d = NAN;
            st = gb_item(gb_value(diffs[j]), &d);
            r->diff[start + j] = d;
            r->recovered[start + j] = (d - r->corrupt) / (r->clean - r->corrupt);
        }
        r->passes++;
        if (show_progress) progress("patching", start + count, n);
        free(src);
        gb_trace_free(tr);
    }
    for (int l = 0; acts && l < L; l++) gb_tensor_free(acts[l]);
    free(acts), free(diffs);
    gb_tensor_free(clean_last), gb_tensor_free(corrupt_last);
    if (st != GB_OK) patch_free(r);
    if (st != GB_OK && !*err) snprintf(err, errsize, "%s", gb_last_error());
    return st;
}

static void patch_print(gb_lm *lm, gb_tensor *clean, gb_tensor *corrupt, const patch_result *r) {
    char a[256], b[256], qa[520], qb[520];
    const int64_t *ci = gb_tensor_data(clean), *xi = gb_tensor_data(corrupt);
    printf("activation patching from the clean run into the corrupted one: %s, %s\n", patch_whats[r->what].name,
           patch_whats[r->what].what);
    printf("metric: logit(%s) - logit(%s) (tokens %lld and %lld) at the last position: clean %.4f, corrupted %.4f\n",
           gb_cli_quoted(token_str(lm, r->target, a, sizeof a), qa, sizeof qa),
           gb_cli_quoted(token_str(lm, r->foil, b, sizeof b), qb, sizeof qb), (long long)r->target, (long long)r->foil,
           r->clean, r->corrupt);
    printf("recovered = (patched - corrupted) / (clean - corrupted): 1 = the clean run's, 0 = the corrupted run's\n");
    printf("%d layers x %d positions = %d patches in %d batched forward passes (and one clean, one corrupted)\n\n",
           r->layers, r->T, r->layers * r->T, r->passes);
    printf("%-4s %-14s %-14s", "pos", "clean", "corrupted");
    for (int l = 0; l < r->layers; l++) printf(" %8s%-2d", "layer ", l);
    putchar('\n');
    for (int t = 0; t < r->T; t++) {
        printf("%-4d %-14s %-14s", t, gb_cli_quoted(token_str(lm, ci[t], a, sizeof a), qa, sizeof qa),
               gb_cli_quoted(token_str(lm, xi[t], b, sizeof b), qb, sizeof qb));
        for (int l = 0; l < r->layers; l++) printf(" %10.4f", r->recovered[l * r->T + t]);
        putchar('\n');
    }
}

/* A JSON number, or null for NaN and infinities (JSON has neither). */
static void json_num(double x) {
    if (isfinite(x)) printf("%.9g", x);
    else printf("null");
}

/* {"what", "target", "foil", "clean", "corrupt", "diff": [[...] per layer], "recovered": [[...]]} */
static void patch_json(const patch_result *r) {
    printf("{\"what\": \"%s\", \"target\": %lld, \"foil\": %lld, \"clean\": ", patch_whats[r->what].name,
           (long long)r->target, (long long)r->foil);
    json_num(r->clean);
    printf(", \"corrupt\": ");
    json_num(r->corrupt);
    for (int k = 0; k < 2; k++) {
        const double *v = k ? r->recovered : r->diff;
        printf(k ? ", \"recovered\": [" : ", \"diff\": [");
        for (int l = 0; l < r->layers; l++) {
            printf("%s[", l ? ", " : "");
            for (int t = 0; t < r->T; t++) printf(t ? ", " : ""), json_num(v[(size_t)l * (size_t)r->T + (size_t)t]);
            printf("]");
        }
        printf("]");
    }
    printf("}\n");
}

static bool patch_csv(gb_lm *lm, const char *path, gb_tensor *clean, gb_tensor *corrupt, const patch_result *r) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    char tok[256];
    fprintf(f, "what,layer,position,clean_token,corrupted_token,logit_diff,recovered\n");
    for (int l = 0; l < r->layers; l++)
        for (int t = 0; t < r->T; t++) {
            fprintf(f, "%s,%d,%d,", patch_whats[r->what].name, l, t);
            csv_str(f, token_str(lm, ((const int64_t *)gb_tensor_data(clean))[t], tok, sizeof tok));
            fputc(',', f);
            csv_str(f, token_str(lm, ((const int64_t *)gb_tensor_data(corrupt))[t], tok, sizeof tok));
            fprintf(f, ",%.9g,%.9g\n", r->diff[l * r->T + t], r->recovered[l * r->T + t]);
        }
    return fclose(f) == 0;
}

static bool patch_png(gb_lm *lm, const char *path, gb_tensor *clean, const patch_result *r, int *w, int *h) {
    int n = r->layers * r->T;
    char **cells = calloc((size_t)n, sizeof *cells), **cols = token_names(gb_lm_tokenizer(lm), gb_tensor_data(clean), r->T, 1);
    char **rows = layer_names(r->layers), title[128];
    double lim = 1;
    for (int i = 0; i < n; i++) lim = fmax(lim, fabs(r->recovered[i]));
    for (int i = 0; cells && i < n; i++)
        if ((cells[i] = malloc(16))) /* no "-0.00" */
            snprintf(cells[i], 16, "%.2f", fabs(r->recovered[i]) < 0.005 ? 0 : r->recovered[i]);
    snprintf(title, sizeof title, "Activation patching (%s): logit difference recovered", patch_whats[r->what].name);
    gb_heatmap hm = {.title = title,
                     .xlabel = "clean token (position)",
                     .ylabel = "layer",
                     .scale_label = "recovered",
                     .rows = r->layers,
                     .cols = r->T,
                     .v = r->recovered,
                     .cells = (const char *const *)cells,
                     .row_names = (const char *const *)rows,
                     .col_names = (const char *const *)cols,
                     .vmin = -lim,
                     .vmax = lim,
                     .cmap = GB_CMAP_DIVERGING};
    bool ok = cells && cols && rows && gb_plot_heatmap(path, &hm, w, h);
    free_names(cells, n), free_names(cols, r->T), free_names(rows, r->layers);
    return ok;
}

/* ---- attention patterns ---------------------------------------------------- */

/* The attention pattern [1, H, T, T] of block `layer` on ids [1, T], or
 * with scores its pre-softmax scores (scaled and masked: a masked
 * position holds float32's lowest value, as in Hugging Face). */
static gb_tensor *attn_compute(gb_lm *lm, gb_tensor *ids, int layer, bool scores) {
    char path[256];
    gb_model *m = gb_lm_model(lm);
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    if (scores) {
        block_path(m, layer, GB_PART_ATTN, path, sizeof path);
        strncat(path, "." GB_POINT_ATTN_SCORES, sizeof path - strlen(path) - 1);
    } else {
        block_path(m, layer, GB_PART_ATTN_WEIGHTS, path, sizeof path);
    }
    gb_val *w = gb_save(gb_point(tr, path));
    gb_tensor *t = tr && gb_trace_run(tr) == GB_OK ? gb_contiguous(gb_value(w)) : NULL;
    gb_trace_free(tr);
    return t;
}

/* A score the mask removed: float32's lowest value (or -inf), not a
 * number a query and a key make. */
static bool attn_masked(float v) { return v <= -1e30f; }

static void attn_print(gb_lm *lm, gb_tensor *ids, gb_tensor *w, int layer, int head, bool scores) {
    int64_t H = gb_tensor_dim(w, 1), T = gb_tensor_dim(w, 2);
    const float *p = gb_tensor_data(w);
    const int64_t *in = gb_tensor_data(ids);
    char tok[256], q[520];
    for (int64_t h = head < 0 ? 0 : head; h < (head < 0 ? H : head + 1); h++) {
        printf("layer %d, head %lld: %srows are queries, columns keys\n%-18s", layer, (long long)h,
               scores ? "scores before softmax (-: masked), " : "", "");
        for (int64_t k = 0; k < T; k++) printf(" %*lld", scores ? 8 : 6, (long long)k);
        putchar('\n');
        for (int64_t i = 0; i < T; i++) {
            printf("%3lld %-14s", (long long)i, gb_cli_quoted(token_str(lm, in[i], tok, sizeof tok), q, sizeof q));
            for (int64_t k = 0; k < T; k++) {
                float v = p[(h * T + i) * T + k];
                if (!scores) printf(" %6.3f", (double)v);
                else if (attn_masked(v)) printf(" %8s", "-");
                else printf(" %8.3f", (double)v);
            }
            putchar('\n');
        }
    }
}

/* One panel per head shown (all, or one), in rows of four, one colour
 * scale: the weights in [0, 1] (sequential colours), or the scores on a
 * diverging scale symmetric about 0, masked positions grey. */
static bool attn_png(gb_lm *lm, const char *path, gb_tensor *ids, gb_tensor *w, int layer, int head, bool scores,
                     int *pw, int *ph) {
    int H = (int)gb_tensor_dim(w, 1), T = (int)gb_tensor_dim(w, 2), first = head < 0 ? 0 : head;
    int shown = head < 0 ? H : 1, per_row = shown < 4 ? shown : 4, nrows = (shown + per_row - 1) / per_row;
    char **names = token_names(gb_lm_tokenizer(lm), gb_tensor_data(ids), T, 1), title[160], panel_title[32];
    double *v = malloc(sizeof *v * (size_t)T * (size_t)T), lim = 0;
    const float *p = gb_tensor_data(w);
    for (int s = 0; scores && s < shown; s++) /* the scale: the largest unmasked |score| shown */
        for (int i = 0; i < T * T; i++) {
            float x = p[(size_t)(first + s) * (size_t)T * (size_t)T + (size_t)i];
            if (!attn_masked(x) && fabs(x) > lim) lim = fabs(x);
        }
    if (lim == 0) lim = 1;
    gb_heatmap hm = {.title = panel_title, .xlabel = "key", .ylabel = "query",
                     .scale_label = scores ? "score (grey: masked)" : "attention", .rows = T, .cols = T, .v = v,
                     .row_names = (const char *const *)names, .col_names = (const char *const *)names,
                     .vmin = scores ? -lim : 0, .vmax = scores ? lim : 1,
                     .cmap = scores ? GB_CMAP_DIVERGING : GB_CMAP_SEQUENTIAL,
                     .cell_w = T <= 12 ? 32 : 20, .cell_h = T <= 12 ? 32 : 20};
    snprintf(panel_title, sizeof panel_title, "head %d", H - 1); /* the widest title sizes every panel */
    int cw, chh, top = 44, grid_y = top;
    gb_heatmap_size(&hm, &cw, &chh);
    cw -= gb_heatmap_scale_width(&hm);
    *pw = per_row * cw + gb_heatmap_scale_width(&hm);
    *ph = top + nrows * chh;
    const char *what = scores ? "Attention scores (before softmax)" : head < 0 ? "Attention patterns" : "Attention pattern";
    if (head < 0) snprintf(title, sizeof title, "%s of layer %d", what, layer);
    else snprintf(title, sizeof title, "%s of layer %d, head %d", what, layer, head);
    gb_canvas *c = v && names ? gb_canvas_new(*pw, *ph, (gb_rgb){255, 255, 255}) : NULL;
    for (int s = 0; c && s < shown; s++) {
        int h = first + s;
        for (int i = 0; i < T * T; i++) {
            float x = p[(size_t)h * (size_t)T * (size_t)T + (size_t)i];
            v[i] = scores && attn_masked(x) ? NAN : x; /* drawn grey */
        }
        snprintf(panel_title, sizeof panel_title, "head %d", h);
        int y = gb_heatmap_draw(c, (s % per_row) * cw, top + (s / per_row) * chh, &hm, false);
        if (s == 0) grid_y = y;
    }
    if (c) {
        if (gb_canvas_text_width(title, 2) > *pw - 8) /* a narrow picture (one head) gets the small font */
            gb_canvas_text(c, (*pw - gb_canvas_text_width(title, 1)) / 2, 16, title, 1, (gb_rgb){0, 0, 0});
        else
            gb_canvas_text(c, (*pw - gb_canvas_text_width(title, 2)) / 2, 12, title, 2, (gb_rgb){0, 0, 0});
        gb_heatmap_scale(c, per_row * cw, grid_y, T * hm.cell_h > 120 ? T * hm.cell_h : 120, &hm);
    }
    bool ok = c && gb_canvas_save_png(c, path);
    gb_canvas_free(c);
    free(v);
    free_names(names, T);
    return ok;
}

/* ---- the commands ---------------------------------------------------------- */

/* The picture's line: "picture: FILE (W x H pixels)". */
static int wrote_png(const char *cmd, bool ok, const char *path, int w, int h, bool json) {
    if (!ok) return gb_cli_fail(cmd, "cannot write the picture %s", path);
    fprintf(json ? stderr : stdout, "picture: %s (%d x %d pixels)\n", path, w, h); /* stdout holds only the JSON */
    return 0;
}

static int wrote_csv(const char *cmd, bool ok, const char *path) {
    return ok ? 0 : gb_cli_fail(cmd, "cannot write %s", path);
}

/* Saved values as a picture (trace --png). */
int gb_cli_plot_values(const char *cmd, gb_tokenizer *vocab, const char *path, const char *title, int n, const char *const *names,
                       gb_tensor *const *values, gb_tensor *ids) {
    int rows = 0, cols = -1, w = 0, h = 0;
    for (int i = 0; i < n; i++) { /* [..., 1, r, c] or [c] after dropping leading ones */
        int nd = gb_tensor_ndim(values[i]), first = 0;
        while (first < nd - 2 && gb_tensor_dim(values[i], first) == 1) first++;
        int64_t c = nd ? gb_tensor_dim(values[i], -1) : 1, r = nd ? gb_tensor_numel(values[i]) / c : 1;
        if (nd - first > 2 || (cols >= 0 && c != cols)) {
            return gb_cli_fail(cmd, "--png: the saved values must be rows of one length (vectors or matrices); %s is not",
                               names[i]);
        }
        cols = (int)c, rows += (int)r;
    }
    if (rows == 0) return gb_cli_fail(cmd, "--png: no saved values to draw (save some with .save())");
    double *v = malloc(sizeof *v * (size_t)rows * (size_t)cols), lo = 0, hi = 0;
    char **row_names = calloc((size_t)rows, sizeof *row_names), **cells = calloc((size_t)rows * (size_t)cols, sizeof *cells);
    char **col_names = gb_tensor_dim(ids, 1) == cols ? token_names(vocab, gb_tensor_data(ids), cols, 1) : NULL;
    for (int i = 0, r = 0; v && row_names && cells && i < n; i++) {
        gb_tensor *f = gb_to_dtype(values[i], GB_DTYPE_F32), *c = f ? gb_contiguous(f) : NULL;
        int64_t nr = gb_tensor_numel(values[i]) / cols;
        for (int64_t k = 0; c && k < nr; k++, r++) {
            if ((row_names[r] = malloc(64))) {
                if (nr > 1) snprintf(row_names[r], 64, "%s[%lld]", names[i], (long long)k);
                else snprintf(row_names[r], 64, "%s", names[i]);
            }
            for (int j = 0; j < cols; j++) {
                double x = ((const float *)gb_tensor_data(c))[k * cols + j];
                v[(size_t)r * (size_t)cols + (size_t)j] = x;
                lo = fmin(lo, x), hi = fmax(hi, x);
                if ((cells[(size_t)r * (size_t)cols + (size_t)j] = malloc(16)))
                    snprintf(cells[(size_t)r * (size_t)cols + (size_t)j], 16, fabs(x) < 0.005 ? "0" : fabs(x) >= 100 ? "%.0f" : "%.2f", x);
            }
        }
        gb_tensor_free(c), gb_tensor_free(f);
    }
    /* values of both signs on a scale centred at 0, others from 0 */
    double lim = fmax(fabs(lo), fabs(hi));
    gb_heatmap hm = {.title = title ? title : "Saved values",
                     .xlabel = col_names ? "token (position)" : "index",
                     .scale_label = "value",
                     .rows = rows,
                     .cols = cols,
                     .v = v,
                     .cells = cols <= 32 ? (const char *const *)cells : NULL,
                     .row_names = (const char *const *)row_names,
                     .col_names = (const char *const *)col_names,
                     .vmin = lo < 0 ? -lim : 0,
                     .vmax = lim > 0 ? lim : 1,
                     .cmap = lo < 0 ? GB_CMAP_DIVERGING : GB_CMAP_SEQUENTIAL};
    bool ok = v && row_names && cells && gb_plot_heatmap(path, &hm, &w, &h);
    free(v);
    free_names(row_names, rows), free_names(cells, rows * cols), free_names(col_names, cols);
    return wrote_png(cmd, ok, path, w, h, false);
}

#define LENS_OPTS(X)                                                                                                 \
    GB_CLI_OPT_PROMPT(X, LENS_IDS, LENS_TEXT, false, 1)                                                               \
    X(LENS_TOP, "top", 0, INT, 1, 100, "3", false, 0, "K", "the K most likely tokens per layer and position")       \
    X(LENS_PNG, "png", 0, STR, 0, 0, NULL, false, 0, "F.png", "draw the lens (the top token's probability)")         \
    X(LENS_CSV, "csv", 0, STR, 0, 0, NULL, false, 0, "F.csv", "write every layer, position and rank")                \
    GB_CLI_OPT_DTYPE(X, LENS_DTYPE)                                                                                  \
    GB_CLI_OPT_JSON(X, LENS_JSON)
enum { LENS_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt lens_opts[] = {LENS_OPTS(GB_CLI_OPT_INIT)};

static int lens(const gb_cli_args *a) {
    const char *text = gb_cli_str(a, LENS_TEXT), *png = gb_cli_str(a, LENS_PNG), *csv = gb_cli_str(a, LENS_CSV);
    if (!text && !gb_cli_given(a, LENS_IDS)) return gb_cli_usage_error("lens", "give a prompt with --ids 1,2,3 or -p TEXT");
    gb_lm *lm = gb_cli_open_lm("lens", a->npos ? a->pos[0] : NULL, NULL, gb_cli_f32(a, LENS_DTYPE));
    if (!lm) return GB_CLI_ERROR;
    gb_tensor *ids = gb_cli_prompt_ids("lens", lm, gb_cli_get(a, LENS_IDS), text, false);
    long long k = gb_cli_int(a, LENS_TOP), V = (long long)gb_model_vocab_size(gb_lm_model(lm)); /* --top beyond V: all */
    lens_result r = {0};
    int w = 0, h = 0, rc = GB_CLI_OK;
    if (!ids || !gb_cli_check_positions("lens", lm, gb_tensor_dim(ids, 1), NULL)) rc = GB_CLI_ERROR;
    else if (lens_compute(lm, ids, (int)(k < V ? k : V), &r) != GB_OK) rc = gb_cli_fail("lens", "%s", gb_last_error());
    else {
        if (gb_cli_given(a, LENS_JSON)) lens_json(lm, &r);
        else lens_print(lm, text, &r);
        if (csv) rc = wrote_csv("lens", lens_csv(lm, csv, &r), csv);
        bool drawn = !rc && png && lens_png(lm, png, &r, &w, &h);
        if (!rc && png) rc = wrote_png("lens", drawn, png, w, h, gb_cli_given(a, LENS_JSON));
    }
    lens_free(&r);
    gb_tensor_free(ids);
    gb_lm_free(lm);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_lens = {
    "lens", lens, "[MODEL]", 0, 1, "the logit lens: every layer's output through the final norm and unembedding",
    "Prints the K most likely next tokens at every layer and position (docs/recipes.md).",
    lens_opts, sizeof lens_opts / sizeof *lens_opts};

/* The one token of text (--target ' Paris'), or the id of "#ID"; -1 after
 * printing why. */
static int64_t one_token(const char *cmd, const char *opt, gb_lm *lm, const char *text) {
    gb_tokenizer *tok = gb_lm_tokenizer(lm);
    int32_t *ids = NULL;
    size_t n = 0;
    char msg[512], *end;
    int64_t id = -1, vocab = gb_model_vocab_size(gb_lm_model(lm));
    if (text[0] == '#') {
        long long v = strtoll(text + 1, &end, 10);
        if (end != text + 1 && !*end && v >= 0 && v < vocab) return v;
        snprintf(msg, sizeof msg, "%s: '%s' is not a token id from #0 to #%lld", opt, text, (long long)vocab - 1);
    } else if (!tok) snprintf(msg, sizeof msg, "%s: the model has no tokenizer (give the id: #ID)", opt);
    else if (gb_tokenizer_encode(tok, text, strlen(text), false, &ids, &n) != GB_OK)
        snprintf(msg, sizeof msg, "%s: %s", opt, gb_last_error());
    else if (n != 1) snprintf(msg, sizeof msg, "%s: '%s' is %zu tokens, not one (or give the id: #ID)", opt, text, n);
    else id = ids[0];
    free(ids);
    if (id < 0) gb_cli_fail(cmd, "%s", msg);
    return id;
}

#define PATCH_OPTS(X)                                                                                                \
    X(PATCH_CLEAN, "clean", 0, STR, 0, 0, NULL, false, 0, "TEXT", "the clean prompt (required)")                    \
    X(PATCH_CORRUPT, "corrupt", 0, STR, 0, 0, NULL, false, 0, "TEXT",                                              \
      "the corrupted prompt, as many tokens as the clean one (required)")                                          \
    X(PATCH_TARGET, "target", 0, STR, 0, 0, NULL, false, 0, "TOK|#ID", "the answer token (default: the clean run's)") \
    X(PATCH_FOIL, "foil", 0, STR, 0, 0, NULL, false, 0, "TOK|#ID", "the foil token (default: the corrupted run's)")  \
    X(PATCH_WHAT_OPT, "what", 0, CHOICE, 0, 0, "resid", false, 0, "resid|attn|mlp",                                    \
      "what is patched: the block's output, the attention's or the MLP's")                                         \
    X(PATCH_BATCH, "batch", 0, INT, 1, 100000, "32", false, 0, "N", "patched runs per forward pass (invokes)")      \
    X(PATCH_PNG, "png", 0, STR, 0, 0, NULL, false, 0, "F.png", "draw the recovered fraction, layer x position")     \
    X(PATCH_CSV, "csv", 0, STR, 0, 0, NULL, false, 0, "F.csv", "write every layer and position")                     \
    GB_CLI_OPT_DTYPE(X, PATCH_DTYPE)                                                                                  \
    GB_CLI_OPT_JSON(X, PATCH_JSON)
enum { PATCH_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt patch_opts[] = {PATCH_OPTS(GB_CLI_OPT_INIT)};

static int patch(const gb_cli_args *a) {
    const char *clean_text = gb_cli_str(a, PATCH_CLEAN), *corrupt_text = gb_cli_str(a, PATCH_CORRUPT);
    const char *png = gb_cli_str(a, PATCH_PNG), *csv = gb_cli_str(a, PATCH_CSV);
    const char *target_text = gb_cli_str(a, PATCH_TARGET), *foil_text = gb_cli_str(a, PATCH_FOIL);
    if (!clean_text || !corrupt_text) return gb_cli_usage_error("patch", "give both prompts: --clean TEXT --corrupt TEXT");
    int what = -1, rc = GB_CLI_OK; /* --what's words are checked by the parser; each must be in PATCH_WHAT */
    for (int i = 0; i < PATCH_NWHAT; i++)
        if (!strcmp(gb_cli_str(a, PATCH_WHAT_OPT), patch_whats[i].name)) what = i;
    if (what < 0) return gb_cli_fail("patch", "--what %s: not in PATCH_WHAT", gb_cli_str(a, PATCH_WHAT_OPT));
    gb_lm *lm = gb_cli_open_lm("patch", a->npos ? a->pos[0] : NULL, NULL, gb_cli_f32(a, PATCH_DTYPE));
    if (!lm) return GB_CLI_ERROR;
    gb_tensor *clean = gb_cli_prompt_ids("patch", lm, NULL, clean_text, false);
    gb_tensor *corrupt = clean ? gb_cli_prompt_ids("patch", lm, NULL, corrupt_text, false) : NULL;
    int64_t target = -1, foil = -1;
    if (!corrupt || !gb_cli_check_positions("patch", lm, gb_tensor_dim(clean, 1), NULL)) rc = GB_CLI_ERROR;
    if (!rc && target_text && (target = one_token("patch", "--target", lm, target_text)) < 0) rc = GB_CLI_ERROR;
    if (!rc && foil_text && (foil = one_token("patch", "--foil", lm, foil_text)) < 0) rc = GB_CLI_ERROR;
    patch_result r = {0};
    char err[512] = "";
    int w = 0, h = 0;
    if (!rc && patch_compute(lm, clean, corrupt, what, target, foil, (int)gb_cli_int(a, PATCH_BATCH), true, &r, err,
                             sizeof err) != GB_OK)
        rc = gb_cli_fail("patch", "%s", err);
    if (!rc) {
        if (gb_cli_given(a, PATCH_JSON)) patch_json(&r);
        else patch_print(lm, clean, corrupt, &r);
        if (csv) rc = wrote_csv("patch", patch_csv(lm, csv, clean, corrupt, &r), csv);
        bool drawn = !rc && png && patch_png(lm, png, clean, &r, &w, &h);
        if (!rc && png) rc = wrote_png("patch", drawn, png, w, h, gb_cli_given(a, PATCH_JSON));
    }
    patch_free(&r);
    gb_tensor_free(clean), gb_tensor_free(corrupt);
    gb_lm_free(lm);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_patch = {
    "patch", patch, "[MODEL]", 0, 1, "activation patching of every layer and position",
    "Patches each layer's and position's value from the clean run into the corrupted one and measures "
    "logit(target) - logit(foil) at the last position, and the fraction of the clean run's difference it "
    "recovers (docs/recipes.md).",
    patch_opts, sizeof patch_opts / sizeof *patch_opts};

#define ATTN_OPTS(X)                                                                                                 \
    GB_CLI_OPT_PROMPT(X, ATTN_IDS, ATTN_TEXT, false, 1)                                                               \
    X(ATTN_LAYER, "layer", 0, INT, -1000, 1000, NULL, false, 0, "L", "the layer (-1: the last; required)")          \
    X(ATTN_HEAD, "head", 0, INT, 0, 100000, NULL, false, 0, "H", "one head (default: every head)")                  \
    X(ATTN_PNG, "png", 0, STR, 0, 0, NULL, false, 0, "F.png", "draw the patterns, a panel per head")               \
    X(ATTN_SCORES, "scores", 0, FLAG, 0, 0, NULL, false, 0, NULL,                                                 \
      "the scores before softmax (scaled and masked) instead of the weights")                                      \
    GB_CLI_OPT_DTYPE(X, ATTN_DTYPE)                                                                                  \
    GB_CLI_OPT_JSON(X, ATTN_JSON)
enum { ATTN_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt attn_opts[] = {ATTN_OPTS(GB_CLI_OPT_INIT)};

static int attn(const gb_cli_args *a) {
    const char *text = gb_cli_str(a, ATTN_TEXT), *png = gb_cli_str(a, ATTN_PNG);
    if (!gb_cli_given(a, ATTN_LAYER)) return gb_cli_usage_error("attn", "give the layer: --layer L");
    if (!text && !gb_cli_given(a, ATTN_IDS)) return gb_cli_usage_error("attn", "give a prompt with --ids 1,2,3 or -p TEXT");
    gb_lm *lm = gb_cli_open_lm("attn", a->npos ? a->pos[0] : NULL, NULL, gb_cli_f32(a, ATTN_DTYPE));
    if (!lm) return GB_CLI_ERROR;
    long long given = gb_cli_int(a, ATTN_LAYER), head = gb_cli_given(a, ATTN_HEAD) ? gb_cli_int(a, ATTN_HEAD) : -1;
    int L = num_layers(lm), layer = (int)(given < 0 ? given + L : given), rc = GB_CLI_OK;
    gb_tensor *ids = NULL, *w = NULL;
    bool scores = gb_cli_given(a, ATTN_SCORES);
    if (layer < 0 || layer >= L) {
        rc = gb_cli_fail("attn", "--layer %lld: the model has %d layers (0 to %d, or -1 for the last)", given, L, L - 1);
    } else if (!(ids = gb_cli_prompt_ids("attn", lm, gb_cli_get(a, ATTN_IDS), text, false)) ||
               !gb_cli_check_positions("attn", lm, gb_tensor_dim(ids, 1), NULL)) {
        rc = GB_CLI_ERROR;
    } else if (!(w = attn_compute(lm, ids, layer, scores))) {
        rc = gb_cli_fail("attn", "%s", gb_last_error());
    } else if (head >= gb_tensor_dim(w, 1)) {
        rc = gb_cli_fail("attn", "--head %lld: layer %d has %lld heads", head, layer, (long long)gb_tensor_dim(w, 1));
    } else {
        int pw = 0, ph = 0;
        gb_tensor *shown = head >= 0 ? gb_slice(w, 1, head, head + 1, 1) : gb_tensor_ref(w); /* [1, H or 1, T, T] */
        if (!gb_cli_given(a, ATTN_JSON)) attn_print(lm, ids, w, layer, (int)head, scores);
        else if (!shown) rc = gb_cli_fail("attn", "%s", gb_last_error());
        else printf("{\"layer\": %d, \"first_head\": %lld, \"%s\": ", layer, head < 0 ? 0 : head, scores ? "scores" : "weights"),
             gb_cli_json_tensor(stdout, shown), printf("}\n");
        gb_tensor_free(shown);
        bool drawn = png && attn_png(lm, png, ids, w, layer, (int)head, scores, &pw, &ph);
        if (png && !rc) rc = wrote_png("attn", drawn, png, pw, ph, gb_cli_given(a, ATTN_JSON));
    }
    gb_tensor_free(w), gb_tensor_free(ids);
    gb_lm_free(lm);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_attn = {
    "attn", attn, "[MODEL]", 0, 1, "attention patterns of one layer",
    "Prints each head's softmaxed attention weights, queries by keys, or with --scores the scores before "
    "softmax (scaled and masked; masked positions print as - and draw grey) (docs/recipes.md).",
    attn_opts, sizeof attn_opts / sizeof *attn_opts};
