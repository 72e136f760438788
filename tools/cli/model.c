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

/* Open a model, with a progress bar when stderr is a terminal. */
static gb_model *open_model(const char *path) {
    gb_model_opts opts = {.progress = isatty(STDERR_FILENO) ? progress_bar : NULL};
    return gb_model_open(path, &opts);
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

/* The prompt as ids: --ids directly, -p through the model's tokenizer, or
 * (allow_empty) the BOS token alone. */
static int64_t *prompt_ids(const char *cmd, gb_model *m, const char *ids_arg, const char *text, bool allow_empty,
                           int64_t *n) {
    char err[512];
    if (ids_arg) {
        int64_t *ids = parse_ids(ids_arg, n, err, sizeof err);
        if (!ids) fail(cmd, err);
        return ids;
    }
    if (text) {
        gb_tokenizer *tok = gb_tokenizer_open(gb_model_dir(m));
        int32_t *t32 = NULL;
        size_t k = 0;
        if (!tok || gb_tokenizer_encode(tok, text, strlen(text), true, &t32, &k) != GB_OK) {
            fail(cmd, gb_last_error());
            gb_tokenizer_free(tok);
            return NULL;
        }
        int64_t *ids = malloc(sizeof *ids * (k ? k : 1));
        for (size_t i = 0; i < k; i++) ids[i] = t32[i];
        free(t32);
        gb_tokenizer_free(tok);
        *n = (int64_t)k;
        return ids;
    }
    if (allow_empty && gb_model_bos_id(m) >= 0) {
        int64_t *ids = malloc(sizeof *ids);
        ids[0] = gb_model_bos_id(m);
        *n = 1;
        return ids;
    }
    fail(cmd, "give a prompt with --ids 1,2,3 or -p TEXT");
    return NULL;
}

int gb_cli_info(int argc, char **argv) {
    if (argc != 1) return fail("info", "usage: glassbox info MODEL");
    gb_model *m = open_model(argv[0]);
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
    if (!o->model) {
        fail(cmd, "missing MODEL (a directory, a .safetensors file or a Hub id in the local cache)");
        return 2;
    }
    return 0;
}

/* Each block's hidden state and the final norm's output, through a trace. */
int gb_cli_run(int argc, char **argv) {
    opts o = {0};
    int rc = parse_opts("run", argc, argv, &o);
    if (rc) return rc;
    if (!o.out) return fail("run", "missing --out FILE.safetensors");
    gb_model *m = open_model(o.model);
    if (!m) return fail("run", gb_last_error());
    int64_t n = 0, *ids = prompt_ids("run", m, o.ids, o.text, false, &n);
    if (!ids) {
        gb_model_free(m);
        return 1;
    }
    gb_tensor *input = gb_from_data(ids, 2, (int64_t[]){1, n}, GB_DTYPE_I64);
    free(ids);
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
    gb_model_free(m);
    return rc;
}

/* Greedy decoding with a KV cache: the prompt once, then one token a step. */
int gb_cli_generate(int argc, char **argv) {
    opts o = {.max_new = 20};
    int rc = parse_opts("generate", argc, argv, &o);
    if (rc) return rc;
    if (o.max_new < 0) return fail("generate", "-n must be >= 0");
    gb_model *m = open_model(o.model);
    if (!m) return fail("generate", gb_last_error());
    int64_t n = 0, *prompt = prompt_ids("generate", m, o.ids, o.text, true, &n);
    if (!prompt) {
        gb_model_free(m);
        return 1;
    }
    int64_t total = n + o.max_new, max_pos = gb_model_max_positions(m);
    if (total > max_pos) total = max_pos > n ? max_pos : n;
    int64_t *seq = malloc(sizeof *seq * (size_t)total);
    memcpy(seq, prompt, sizeof *seq * (size_t)n);
    free(prompt);
    gb_run *run = gb_run_new();
    gb_run_use_cache(run, true);
    gb_status st = GB_OK;
    int64_t len = n, fed = 0;
    gb_grad_mode gm = gb_no_grad_begin();
    while (st == GB_OK && len < total) {
        gb_tensor *input = gb_from_data(seq + fed, 2, (int64_t[]){1, len - fed}, GB_DTYPE_I64), *logits = NULL;
        st = gb_module_run(gb_model_module(m), run, input, &logits);
        gb_tensor_free(input);
        if (st != GB_OK) break;
        fed = len;
        gb_tensor *last = gb_select(logits, 1, -1);
        gb_tensor *next = last ? gb_argmax(last, -1, false) : NULL;
        double id = 0;
        st = next ? gb_item(next, &id) : gb_last_status();
        gb_tensor_free(next), gb_tensor_free(last), gb_tensor_free(logits);
        if (st != GB_OK) break;
        seq[len++] = (int64_t)id;
        if (gb_model_is_eos(m, (int64_t)id)) break;
    }
    gb_grad_mode_end(gm);
    if (st != GB_OK) rc = fail("generate", gb_last_error());
    else if (o.ids_out) {
        printf("[");
        for (int64_t i = 0; i < len; i++) printf("%s%lld", i ? ", " : "", (long long)seq[i]);
        printf("]\n");
    } else {
        gb_tokenizer *tok = gb_tokenizer_open(gb_model_dir(m));
        int32_t *ids = malloc(sizeof *ids * (size_t)len);
        for (int64_t i = 0; i < len; i++) ids[i] = (int32_t)seq[i];
        char *text = NULL;
        if (!tok || gb_tokenizer_decode(tok, ids, (size_t)len, true, &text, NULL) != GB_OK)
            rc = fail("generate", gb_last_error());
        else printf("%s\n", text);
        free(text), free(ids);
        gb_tokenizer_free(tok);
    }
    gb_run_free(run);
    free(seq);
    gb_model_free(m);
    return rc;
}

/* The name a statement binds ("logits = ..."), or NULL. */
static char *bound_name(const char *stmt) {
    const char *p = stmt;
    while (*p == ' ') p++;
    const char *start = p;
    while (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (p > start && *p >= '0' && *p <= '9')) p++;
    size_t n = (size_t)(p - start);
    while (*p == ' ') p++;
    if (!n || *p != '=' || p[1] == '=') return NULL;
    return strndup(start, n);
}

static bool model_eos(int64_t id, void *ctx) { return gb_model_is_eos(ctx, id); }

/* Interventions written as nnsight statements, run with one forward pass
 * (or, with -n N, greedy generation of N tokens); saved values are printed
 * (or written with --out). Several prompts are batched as invokes, each
 * prompt's statements applying to its rows. */
int gb_cli_trace(int argc, char **argv) {
    opts o = {.stmts = calloc((size_t)argc + 1, sizeof(char *)), .prompts = calloc((size_t)argc + 1, sizeof *o.prompts)};
    int rc = parse_opts("trace", argc, argv, &o);
    if (!rc && !o.nprompts) rc = fail("trace", "give a prompt with --ids 1,2,3 or -p TEXT (several: invokes)");
    gb_model *m = rc ? NULL : open_model(o.model);
    if (!rc && !m) rc = fail("trace", gb_last_error());
    gb_tensor **inputs = calloc((size_t)o.nprompts + 1, sizeof *inputs);
    for (int i = 0; !rc && i < o.nprompts; i++) {
        int64_t n = 0, *ids = prompt_ids("trace", m, o.prompts[i].ids, o.prompts[i].text, false, &n);
        if (!ids) rc = 1;
        else inputs[i] = gb_from_data(ids, 2, (int64_t[]){1, n}, GB_DTYPE_I64);
        free(ids);
    }
    bool batched = o.nprompts > 1;
    gb_trace *tr = rc ? NULL : gb_trace_new(gb_model_module(m), batched ? NULL : inputs[0]);
    gb_val **vals = calloc((size_t)o.nstmts + 1, sizeof *vals);
    gb_status st = GB_OK;
    for (int i = 0, p = 0; tr && st == GB_OK && i < o.nstmts; i++) {
        while (batched && p < o.nprompts && o.prompts[p].first == i) {
            gb_invoke_end(tr);
            st = gb_invoke(tr, inputs[p++]);
        }
        if (st == GB_OK) st = gb_trace_statement(tr, o.stmts[i], "-e", i + 1, &vals[i]);
    }
    if (tr) gb_invoke_end(tr);
    for (int p = 0; tr && batched && st == GB_OK && p < o.nprompts; p++) /* prompts after the last statement */
        if (o.prompts[p].first == o.nstmts) {
            st = gb_invoke(tr, inputs[p]);
            gb_invoke_end(tr);
        }
    if (tr) gb_trace_set_stop_tokens(tr, model_eos, m);
    if (tr && st == GB_OK && o.graph) {
        char *g = gb_trace_graph(tr);
        printf("%s", g);
        free(g);
    }
    if (tr && st == GB_OK)
        st = o.scan ? gb_trace_scan(tr) : o.max_new > 0 ? gb_trace_generate(tr, (int)o.max_new) : gb_trace_run(tr);
    if (tr && st != GB_OK) rc = fail("trace", gb_last_error());

    /* Each statement's saved value, under its name or its text. */
    const char **names = calloc((size_t)o.nstmts + 2, sizeof *names);
    gb_tensor **ts = calloc((size_t)o.nstmts + 2, sizeof *ts);
    int nsaved = 0;
    for (int i = 0; tr && !rc && i < o.nstmts; i++) {
        char *name = bound_name(o.stmts[i]);
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if (o.scan && vals[i] && gb_val_shape(vals[i], &nd, shape) == GB_OK) {
            printf("%s: [", name ? name : o.stmts[i]);
            for (int d = 0; d < nd; d++) printf("%s%lld", d ? ", " : "", (long long)shape[d]);
            printf("]\n");
        } else if (!o.scan && (ts[nsaved] = gb_value(vals[i]))) {
            if (!o.out) {
                char *str = gb_tensor_str(ts[nsaved]);
                printf("%s = %s\n", name ? name : o.stmts[i], str);
                free(str);
            }
            if (!name) {
                name = malloc(32);
                snprintf(name, 32, "statement.%d", i + 1);
            }
            names[nsaved++] = name;
            continue;
        }
        free(name);
    }
    if (!rc && !o.scan && o.max_new > 0) { /* nnsight's generator.output */
        ts[nsaved] = gb_trace_generated(tr);
        if (!o.out) {
            char *str = gb_tensor_str(ts[nsaved]);
            printf("generator.output = %s\n", str);
            free(str);
        }
        names[nsaved++] = strdup("generator.output");
    }
    if (!rc && o.out && gb_safetensors_save(o.out, nsaved, names, ts, GB_DTYPE_F32, NULL) != GB_OK)
        rc = fail("trace", gb_last_error());
    for (int i = 0; i < nsaved; i++) free((char *)names[i]);
    free(names), free(ts), free(vals), free(o.stmts), free(o.prompts);
    gb_trace_free(tr);
    for (int i = 0; i < o.nprompts; i++) gb_tensor_free(inputs[i]);
    free(inputs);
    gb_model_free(m);
    return rc;
}
