/* `glassbox info | run | generate | trace`: a model from the command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "glassbox.h"

/* A progress bar on stderr while a model over ~100 MB loads. */
static void progress_bar(uint64_t done, uint64_t total, void *ctx) {
    (void)ctx;
    if (total < (100u << 20)) return;
    int width = 40, filled = (int)(width * done / total);
    fprintf(stderr, "\rloading [%.*s%*s] %3d%% of %llu MB", filled, "########################################",
            width - filled, "", (int)(100 * done / total), (unsigned long long)(total >> 20));
    if (done >= total) fputc('\n', stderr);
}

/* Opening options: a progress bar when stderr is a terminal. */
static gb_model_opts open_opts(void) { return (gb_model_opts){.progress = isatty(STDERR_FILENO) ? progress_bar : NULL}; }

static gb_model *open_model(const char *path) {
    gb_model_opts opts = open_opts();
    return gb_model_open(path, &opts);
}

gb_lm *gb_cli_open_lm(const char *path) {
    gb_model_opts opts = open_opts();
    return gb_lm_open(path, &opts);
}

static int fail(const char *cmd, const char *msg) {
    fprintf(stderr, "glassbox %s: %s\n", cmd, msg);
    return 1;
}

/* "1,2,3" -> i64 ids; NULL with a message on a malformed list. */
static int64_t *parse_ids(const char *s, int64_t *n, char *err, size_t errsize) {
    int64_t cap = 16, k = 0;
    int64_t *ids = malloc(sizeof *ids * (size_t)cap);
    for (const char *p = s; ids && *p;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0) {
            snprintf(err, errsize, "--ids: '%s' is not a comma-separated list of token ids", s);
            free(ids);
            return NULL;
        }
        if (k == cap) ids = realloc(ids, sizeof *ids * (size_t)(cap *= 2));
        ids[k++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            snprintf(err, errsize, "--ids: unexpected '%c' in '%s'", *end, s);
            free(ids);
            return NULL;
        }
    }
    *n = k;
    return ids;
}

/* The prompt as ids [1, T]: --ids directly, -p through the model's
 * tokenizer, or (allow_empty) the BOS token alone. */
static gb_tensor *prompt_ids(const char *cmd, gb_lm *lm, const char *ids_arg, const char *text, bool allow_empty) {
    char err[512];
    if (ids_arg) {
        int64_t n = 0, *ids = parse_ids(ids_arg, &n, err, sizeof err);
        gb_tensor *t = ids ? gb_from_data(ids, 2, (int64_t[]){1, n}, GB_DTYPE_I64) : NULL;
        if (!ids) fail(cmd, err);
        else if (!t) fail(cmd, gb_last_error());
        free(ids);
        return t;
    }
    if (text) {
        gb_tensor *ids = NULL, *mask = NULL;
        if (gb_lm_encode(lm, 1, &text, &ids, &mask) != GB_OK) fail(cmd, gb_last_error());
        gb_tensor_free(mask);
        return ids;
    }
    int64_t bos = gb_model_bos_id(gb_lm_model(lm));
    if (allow_empty && bos >= 0) return gb_from_data(&bos, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    fail(cmd, "give a prompt with --ids 1,2,3 or -p TEXT");
    return NULL;
}

int gb_cli_info(int argc, char **argv) {
    if (argc > 1) return fail("info", "usage: glassbox info [MODEL]");
    const char *path = gb_cli_model("info", argc ? argv[0] : NULL);
    if (!path) return 1;
    gb_model *m = open_model(path);
    if (!m) return fail("info", gb_last_error());
    char *repr = gb_module_repr(gb_model_module(m));
    printf("%s\n\n", repr);
    free(repr);
    printf("parameters: %lld\n", (long long)gb_module_num_parameters(gb_model_module(m)));
    char *config = gb_model_config_str(m);
    int rc = config ? printf("%s", config) < 0 : fail("info", gb_last_error());
    free(config);
    gb_model_free(m);
    return rc;
}

typedef struct {
    const char *model, *ids, *text, *out;
    bool hidden, ids_out, scan, graph;
    long max_new;
    const char **stmts; /* trace: -e STATEMENT, in order */
    int nstmts;
    /* trace: each prompt (--ids or -p) and the index of the first statement
     * after it; several prompts are invokes, each with the statements that
     * follow it. */
    struct {
        const char *ids, *text;
        int first;
    } *prompts;
    int nprompts;
} opts;

static int parse_opts(const char *cmd, int argc, char **argv, opts *o) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
        if ((!strcmp(a, "--ids") || !strcmp(a, "-p")) && has_next && o->prompts) {
            bool ids = a[1] == '-';
            o->prompts[o->nprompts].ids = ids ? argv[i + 1] : NULL;
            o->prompts[o->nprompts].text = ids ? NULL : argv[i + 1];
            o->prompts[o->nprompts++].first = o->nstmts;
        }
        if (!strcmp(a, "--ids") && has_next) o->ids = argv[++i];
        else if (!strcmp(a, "-p") && has_next) o->text = argv[++i];
        else if (!strcmp(a, "--out") && has_next) o->out = argv[++i];
        else if (!strcmp(a, "-n") && has_next) o->max_new = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--hidden")) o->hidden = true;
        else if (!strcmp(a, "--ids-out")) o->ids_out = true;
        else if (!strcmp(a, "--scan")) o->scan = true;
        else if (!strcmp(a, "--graph")) o->graph = true;
        else if (!strcmp(a, "-e") && has_next && o->stmts) o->stmts[o->nstmts++] = argv[++i];
        else if (a[0] != '-' && !o->model) o->model = a;
        else {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown or incomplete option '%s'", a);
            fail(cmd, msg);
            return 2;
        }
    }
    o->model = gb_cli_model(cmd, o->model);
    return o->model ? 0 : 1;
}

/* Each block's hidden state and the final norm's output, through a trace. */
int gb_cli_run(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts("run", argc, argv, &o);
    if (rc) return rc;
    if (!o.out) return fail("run", "missing --out FILE.safetensors");
    gb_lm *lm = gb_cli_open_lm(o.model);
    if (!lm) return fail("run", gb_last_error());
    gb_model *m = gb_lm_model(lm);
    gb_tensor *input = prompt_ids("run", lm, o.ids, o.text, false);
    if (!input) {
        gb_lm_free(lm);
        return 1;
    }
    bool gpt2 = !strcmp(gb_model_type(m), "gpt2");
    int64_t layers = gpt2 ? gb_model_gpt2_config(m)->n_layer : gb_model_llama_config(m)->num_hidden_layers;
    gb_trace *tr = gb_trace_new(gb_model_module(m), input);
    gb_val *logits = gb_save(gb_output(tr, "lm_head"));
    int nvals = 1 + (o.hidden ? (int)layers + 1 : 0);
    gb_val **vals = calloc((size_t)nvals, sizeof *vals);
    char **names = calloc((size_t)nvals, sizeof *names);
    vals[0] = logits;
    names[0] = strdup("logits");
    for (int i = 0; o.hidden && i < layers; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s.%d", gpt2 ? "transformer.h" : "model.layers", i);
        vals[1 + i] = gb_save(gb_val_index(gb_output(tr, path), "[0]"));
        names[1 + i] = malloc(32);
        snprintf(names[1 + i], 32, "hidden.%d", i);
    }
    if (o.hidden) {
        vals[nvals - 1] = gb_save(gb_output(tr, gpt2 ? "transformer.ln_f" : "model.norm"));
        names[nvals - 1] = strdup("hidden.final");
    }
    gb_status st = gb_trace_run(tr);
    if (st == GB_OK) {
        gb_tensor **ts = calloc((size_t)nvals, sizeof *ts);
        for (int i = 0; i < nvals; i++) ts[i] = gb_value(vals[i]);
        st = gb_safetensors_save(o.out, nvals, (const char *const *)names, ts, GB_DTYPE_F32, NULL);
        free(ts);
    }
    rc = st == GB_OK ? 0 : fail("run", gb_last_error());
    for (int i = 0; i < nvals; i++) free(names[i]);
    free(names);
    free(vals);
    gb_trace_free(tr);
    gb_tensor_free(input);
    gb_lm_free(lm);
    return rc;
}

/* Greedy decoding with a KV cache: the prompt once, then one token a step. */
int gb_cli_generate(int argc, char **argv) {
    opts o = {.max_new = 20};
    int rc = parse_opts("generate", argc, argv, &o);
    if (rc) return rc;
    if (o.max_new < 0) return fail("generate", "-n must be >= 0");
    gb_lm *lm = gb_cli_open_lm(o.model);
    if (!lm) return fail("generate", gb_last_error());
    gb_tensor *prompt = prompt_ids("generate", lm, o.ids, o.text, true), *out = NULL;
    gb_decode_opts d = gb_lm_decode_defaults(lm);
    d.max_new_tokens = (int)o.max_new;
    if (!prompt) rc = 1;
    else if (gb_lm_generate(lm, prompt, NULL, &d, &out) != GB_OK) rc = fail("generate", gb_last_error());
    else if (o.ids_out) {
        const int64_t *p = gb_tensor_data(out);
        printf("[");
        for (int64_t i = 0; i < gb_tensor_dim(out, 1); i++) printf("%s%lld", i ? ", " : "", (long long)p[i]);
        printf("]\n");
    } else {
        char *text = NULL;
        if (gb_lm_text(lm, out, 0, 0, &text) != GB_OK) rc = fail("generate", gb_last_error());
        else printf("%s\n", text);
        free(text);
    }
    gb_tensor_free(out), gb_tensor_free(prompt);
    gb_lm_free(lm);
    return rc;
}
