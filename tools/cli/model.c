/* `glassbox info | run | generate | trace`: a model from the command line. */
#include <errno.h>
#include <limits.h>
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

/* Opening options: the weights' dtype (--dtype), a progress bar when
 * stderr is a terminal. */
static gb_model_opts open_opts(bool f32) {
    return (gb_model_opts){.f32_weights = f32, .progress = isatty(STDERR_FILENO) ? progress_bar : NULL};
}

static gb_model *open_model(const char *path, bool f32) {
    gb_model_opts opts = open_opts(f32);
    return gb_model_open(path, &opts);
}

gb_lm *gb_cli_open_lm(const char *path, bool f32) {
    gb_model_opts opts = open_opts(f32);
    return gb_lm_open(path, &opts);
}

bool gb_cli_dtype(const char *cmd, const char *value, bool *f32) {
    if (!strcmp(value, "stored") || !strcmp(value, "f32") || !strcmp(value, "float32")) {
        *f32 = strcmp(value, "stored") != 0;
        return true;
    }
    char msg[256];
    snprintf(msg, sizeof msg, "--dtype: '%s' is not a weight dtype (stored or f32)", value);
    gb_cli_fail(cmd, msg);
    return false;
}

int gb_cli_fail(const char *cmd, const char *msg) {
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
gb_tensor *gb_cli_prompt_ids(const char *cmd, gb_lm *lm, const char *ids_arg, const char *text, bool allow_empty) {
    char err[512];
    if (ids_arg) {
        int64_t n = 0, *ids = parse_ids(ids_arg, &n, err, sizeof err);
        gb_tensor *t = ids ? gb_from_data(ids, 2, (int64_t[]){1, n}, GB_DTYPE_I64) : NULL;
        if (!ids) gb_cli_fail(cmd, err);
        else if (!t) gb_cli_fail(cmd, gb_last_error());
        free(ids);
        return t;
    }
    if (text) {
        gb_tensor *ids = NULL, *mask = NULL;
        if (gb_lm_encode(lm, 1, &text, &ids, &mask) != GB_OK) gb_cli_fail(cmd, gb_last_error());
        gb_tensor_free(mask);
        return ids;
    }
    int64_t bos = gb_model_bos_id(gb_lm_model(lm));
    if (allow_empty && bos >= 0) return gb_from_data(&bos, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    gb_cli_fail(cmd, "give a prompt with --ids 1,2,3 or -p TEXT");
    return NULL;
}

int gb_cli_info(int argc, char **argv) {
    const char *given = NULL;
    bool f32 = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            if (!gb_cli_dtype("info", argv[++i], &f32)) return 2;
        } else if (argv[i][0] != '-' && !given) {
            given = argv[i];
        } else {
            gb_cli_fail("info", "usage: glassbox info [MODEL] [--dtype stored|f32]");
            return 2;
        }
    }
    const char *path = gb_cli_model("info", given);
    if (!path) return 1;
    gb_model *m = open_model(path, f32);
    if (!m) return gb_cli_fail("info", gb_last_error());
    char *repr = gb_module_repr(gb_model_module(m));
    printf("%s\n\n", repr);
    free(repr);
    printf("parameters: %lld\n", (long long)gb_module_num_parameters(gb_model_module(m)));
    char *config = gb_model_config_str(m);
    int rc = config ? printf("%s", config) < 0 : gb_cli_fail("info", gb_last_error());
    free(config);
    gb_model_free(m);
    return rc;
}

typedef struct {
    const char *model, *ids, *text, *out, *png, *title; /* trace --png: the saved values as a heatmap */
    bool hidden, ids_out, scan, graph, f32, nan_check;
    long max_new, top; /* -n N; --top K: the K most likely next tokens */
    const char **stmts; /* trace: -e STATEMENT, in order */
    int nstmts;
    const char **edits; /* trace: --edit STATEMENT, persistent edits (nnsight's model.edit()) */
    int nedits;
    const char **tensors; /* trace: --tensor NAME=FILE.safetensors[:KEY] */
    int ntensors;
    gb_sampling sampling; /* generate, trace -n: --temperature, --top-k, --top-p, --repetition-penalty, --seed */
    /* trace: each prompt (--ids or -p) and the index of the first statement
     * after it; several prompts are invokes, each with the statements that
     * follow it. */
    struct {
        const char *ids, *text;
        int first;
    } *prompts;
    int nprompts;
} opts;

/* A number option's value, all of it a number. */
static bool parse_number(const char *cmd, const char *opt, const char *text, double lo, double *out) {
    char *end;
    *out = strtod(text, &end);
    if (end != text && !*end && *out >= lo && *out == *out) return true;
    char msg[256];
    snprintf(msg, sizeof msg, "%s takes a number >= %g, got '%s'", opt, lo, text);
    gb_cli_fail(cmd, msg);
    return false;
}

static int parse_opts(const char *cmd, int argc, char **argv, opts *o) {
    o->sampling = gb_decode_defaults().sampling;
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
        else if (!strcmp(a, "--png") && has_next && o->stmts) o->png = argv[++i];
        else if (!strcmp(a, "--title") && has_next && o->stmts) o->title = argv[++i];
        else if (!strcmp(a, "-n") && has_next) o->max_new = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--top") && has_next) {
            if ((o->top = strtol(argv[++i], NULL, 10)) < 1) {
                gb_cli_fail(cmd, "--top K needs K >= 1");
                return 2;
            }
        }
        else if (!strcmp(a, "--hidden")) o->hidden = true;
        else if (!strcmp(a, "--ids-out")) o->ids_out = true;
        else if (!strcmp(a, "--scan")) o->scan = true;
        else if (!strcmp(a, "--graph")) o->graph = true;
        else if (!strcmp(a, "--nan-check")) o->nan_check = true;
        else if (!strcmp(a, "--dtype") && has_next) {
            if (!gb_cli_dtype(cmd, argv[++i], &o->f32)) return 2;
        }
        else if (!strcmp(a, "-e") && has_next && o->stmts) o->stmts[o->nstmts++] = argv[++i];
        else if (!strcmp(a, "--edit") && has_next && o->edits) o->edits[o->nedits++] = argv[++i];
        else if (!strcmp(a, "--tensor") && has_next && o->tensors) o->tensors[o->ntensors++] = argv[++i];
        else if ((!strcmp(a, "--temperature") || !strcmp(a, "--top-k") || !strcmp(a, "--top-p") ||
                  !strcmp(a, "--repetition-penalty") || !strcmp(a, "--seed")) && has_next) {
            double x;
            if (!parse_number(cmd, a, argv[++i], a[2] == 'r' ? 1e-30 : 0, &x)) return 2;
            /* what the int and uint64 fields hold (beyond: undefined conversions, found by fuzz_cli) */
            bool top_k = !strcmp(a, "--top-k"), seed = !strcmp(a, "--seed");
            if ((top_k && x > INT_MAX) || (seed && x >= 0x1p64)) {
                char msg[256];
                snprintf(msg, sizeof msg, "%s takes a number %s, got '%s'", a,
                         top_k ? "up to 2147483647" : "below 2^64", argv[i]);
                gb_cli_fail(cmd, msg);
                return 2;
            }
            if (a[2] == 't' && a[3] == 'e') o->sampling.temperature = (float)x;
            else if (!strcmp(a, "--top-k")) o->sampling.top_k = (int)x;
            else if (!strcmp(a, "--top-p")) o->sampling.top_p = (float)x;
            else if (a[2] == 'r') o->sampling.repetition_penalty = (float)x;
            else o->sampling.seed = (uint64_t)x;
        }
        else if (a[0] != '-' && !o->model) o->model = a;
        else {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown or incomplete option '%s'", a);
            gb_cli_fail(cmd, msg);
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
    if (!o.out && !o.top) return gb_cli_fail("run", "missing --out FILE.safetensors (or --top K)");
    gb_lm *lm = gb_cli_open_lm(o.model, o.f32);
    if (!lm) return gb_cli_fail("run", gb_last_error());
    gb_model *m = gb_lm_model(lm);
    gb_tensor *input = gb_cli_prompt_ids("run", lm, o.ids, o.text, false);
    if (!input) {
        gb_lm_free(lm);
        return 1;
    }
    const char *blocks = gb_model_part(m, GB_PART_LAYERS);
    int64_t layers = gb_module_num_children(gb_module_find(gb_model_module(m), blocks));
    gb_trace *tr = gb_trace_new(gb_model_module(m), input);
    gb_trace_set_nan_check(tr, o.nan_check);
    gb_val *logits = gb_save(gb_output(tr, gb_model_part(m, GB_PART_UNEMBED)));
    int nvals = 1 + (o.hidden ? (int)layers + 1 : 0);
    gb_val **vals = calloc((size_t)nvals, sizeof *vals);
    char **names = calloc((size_t)nvals, sizeof *names);
    vals[0] = logits;
    names[0] = strdup("logits");
    for (int i = 0; o.hidden && i < layers; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s.%d", blocks, i);
        vals[1 + i] = gb_save(gb_val_index(gb_output(tr, path), "[0]"));
        names[1 + i] = malloc(32);
        snprintf(names[1 + i], 32, "hidden.%d", i);
    }
    if (o.hidden) {
        vals[nvals - 1] = gb_save(gb_output(tr, gb_model_part(m, GB_PART_NORM)));
        names[nvals - 1] = strdup("hidden.final");
    }
    gb_status st = gb_trace_run(tr);
    int64_t bad = st == GB_OK ? gb_count_nonfinite(gb_value(logits), NULL) : 0;
    if (bad)
        fprintf(stderr, "glassbox run: warning: %lld of the %lld logits are NaN or Inf; --nan-check names the first "
                        "module whose output is\n", (long long)bad, (long long)gb_tensor_numel(gb_value(logits)));
    if (st == GB_OK && o.top) {
        gb_tensor *last = gb_select(gb_value(logits), 1, -1);
        printf("top %ld next tokens:\n", o.top);
        if (last) gb_cli_print_top(lm, last, (int)o.top);
        else st = gb_last_status();
        gb_tensor_free(last);
    }
    if (st == GB_OK && o.out) {
        gb_tensor **ts = calloc((size_t)nvals, sizeof *ts);
        for (int i = 0; i < nvals; i++) ts[i] = gb_value(vals[i]);
        st = gb_safetensors_save(o.out, nvals, (const char *const *)names, ts, GB_DTYPE_F32, NULL);
        free(ts);
    }
    rc = st == GB_OK ? 0 : gb_cli_fail("run", gb_last_error());
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
    if (o.max_new < 0) return gb_cli_fail("generate", "-n must be >= 0");
    gb_lm *lm = gb_cli_open_lm(o.model, o.f32);
    if (!lm) return gb_cli_fail("generate", gb_last_error());
    gb_tensor *prompt = gb_cli_prompt_ids("generate", lm, o.ids, o.text, true), *out = NULL;
    gb_decode_opts d = gb_lm_decode_defaults(lm);
    int bad_steps = 0;
    d.max_new_tokens = (int)o.max_new;
    d.nan_check = o.nan_check;
    d.nonfinite_steps = &bad_steps;
    d.sampling = o.sampling;
    if (!prompt) rc = 1;
    else if (gb_lm_generate(lm, prompt, NULL, &d, &out) != GB_OK) rc = gb_cli_fail("generate", gb_last_error());
    if (!rc && bad_steps)
        fprintf(stderr, "glassbox generate: warning: the logits held NaN or Inf at %d of the %lld steps, so the "
                        "tokens chosen there mean nothing; --nan-check names the first module whose output did\n",
                bad_steps, (long long)(gb_tensor_dim(out, 1) - gb_tensor_dim(prompt, 1)));
    if (rc) {
    } else if (o.ids_out) {
        const int64_t *p = gb_tensor_data(out);
        printf("[");
        for (int64_t i = 0; i < gb_tensor_dim(out, 1); i++) printf("%s%lld", i ? ", " : "", (long long)p[i]);
        printf("]\n");
    } else {
        char *text = NULL;
        if (gb_lm_text(lm, out, 0, 0, &text) != GB_OK) rc = gb_cli_fail("generate", gb_last_error());
        else printf("%s\n", text);
        free(text);
    }
    gb_tensor_free(out), gb_tensor_free(prompt);
    gb_lm_free(lm);
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

static bool lm_eos(int64_t id, void *lm) { return gb_lm_is_eos(lm, id); }

/* Interventions written as nnsight statements, run with one forward pass
 * (or, with -n N, greedy generation of N tokens); saved values are printed
 * (or written with --out). Several prompts are batched as invokes, each
 * prompt's statements applying to its rows. */
/* --tensor NAME=FILE.safetensors[:KEY]: the tensor KEY of FILE (by
 * default the one named NAME, or the file's only tensor) bound to NAME in
 * tr and in the editor, if any. Returns 0, or 1 after printing the error. */
static int bind_tensor(gb_trace *tr, gb_trace *editor, const char *spec) {
    const char *eq = strchr(spec, '=');
    char msg[2300], name[64], file[1024];
    if (!eq || eq == spec || eq - spec >= (ptrdiff_t)sizeof name) {
        snprintf(msg, sizeof msg, "--tensor takes NAME=FILE.safetensors[:KEY], got '%s'", spec);
        return gb_cli_fail("trace", msg);
    }
    snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
    snprintf(file, sizeof file, "%s", eq + 1);
    char *key = strstr(file, ".safetensors:");
    if (key) {
        key += strlen(".safetensors");
        *key++ = 0;
    }
    gb_safetensors *st = gb_safetensors_open(file);
    if (!st) return gb_cli_fail("trace", gb_last_error());
    if (!key && gb_safetensors_has(st, name)) key = name;
    else if (!key && gb_safetensors_count(st) == 1) key = (char *)gb_safetensors_name(st, 0);
    gb_tensor *t = key ? gb_safetensors_get(st, key) : NULL;
    int rc = 0;
    if (!key) {
        snprintf(msg, sizeof msg, "--tensor %s: %s holds %d tensors and none named '%s'; pick one with FILE:KEY", name, file,
                 gb_safetensors_count(st), name);
        rc = gb_cli_fail("trace", msg);
    } else if (!t || !gb_trace_tensor(tr, name, t) || (editor && !gb_trace_tensor(editor, name, t))) {
        rc = gb_cli_fail("trace", gb_last_error());
    }
    gb_tensor_free(t);
    gb_safetensors_free(st);
    return rc;
}

int gb_cli_trace(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--remote")) return gb_cli_trace_remote(argc, argv);
    opts o = {.stmts = calloc((size_t)argc + 1, sizeof(char *)), .prompts = calloc((size_t)argc + 1, sizeof *o.prompts),
              .edits = calloc((size_t)argc + 1, sizeof(char *)), .tensors = calloc((size_t)argc + 1, sizeof(char *))};
    int rc = parse_opts("trace", argc, argv, &o);
    if (!rc && !o.nprompts) rc = gb_cli_fail("trace", "give a prompt with --ids 1,2,3 or -p TEXT (several: invokes)");
    gb_lm *lm = rc ? NULL : gb_cli_open_lm(o.model, o.f32);
    if (!rc && !lm) rc = gb_cli_fail("trace", gb_last_error());
    gb_model *m = lm ? gb_lm_model(lm) : NULL;
    gb_tensor **inputs = calloc((size_t)o.nprompts + 1, sizeof *inputs);
    for (int i = 0; !rc && i < o.nprompts; i++)
        if (!(inputs[i] = gb_cli_prompt_ids("trace", lm, o.prompts[i].ids, o.prompts[i].text, false))) rc = 1;
    bool batched = o.nprompts > 1;
    gb_trace *tr = rc ? NULL : gb_trace_new(gb_model_module(m), batched ? NULL : inputs[0]);
    gb_val **vals = calloc((size_t)o.nstmts + 1, sizeof *vals);
    gb_status st = GB_OK;
    /* --edit: an editor every run of the trace sees (nnsight's model.edit()) */
    gb_trace *editor = tr && o.nedits ? gb_trace_new(gb_model_module(m), NULL) : NULL;
    for (int i = 0; tr && !rc && i < o.ntensors; i++) rc = bind_tensor(tr, editor, o.tensors[i]);
    if (rc) st = GB_ERR_ARG; /* printed */
    for (int i = 0; editor && st == GB_OK && i < o.nedits; i++) st = gb_trace_statement(editor, o.edits[i], "--edit", i + 1, NULL);
    if (editor && st == GB_OK) st = gb_trace_use_edits(tr, editor);
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
    /* --top: the last position's logits of every row (of the last step, with -n) */
    gb_val *top = NULL;
    if (tr && st == GB_OK && o.top) {
        const char *unembed = gb_model_part(m, GB_PART_UNEMBED);
        top = gb_save(gb_val_index(o.max_new > 0 ? gb_output_all(tr, unembed) : gb_output(tr, unembed), "[:, -1]"));
    }
    if (tr) { /* the language model's policy: its EOS ends rows, its pad id pads invokes and finished rows */
        gb_trace_set_stop_tokens(tr, lm_eos, lm);
        gb_trace_set_pad_id(tr, gb_lm_pad_id(lm));
        gb_trace_set_nan_check(tr, o.nan_check);
    }
    if (tr && st == GB_OK && o.graph) {
        char *g = gb_trace_graph(tr);
        printf("%s", g);
        free(g);
    }
    if (tr && st == GB_OK)
        st = o.scan && o.max_new > 0 ? gb_trace_scan_generate(tr, (int)o.max_new)
             : o.scan                ? gb_trace_scan(tr)
             : o.max_new > 0         ? gb_trace_sample(tr, (int)o.max_new, &o.sampling)
                                     : gb_trace_run(tr);
    if (tr && st != GB_OK && !rc) rc = gb_cli_fail("trace", gb_last_error());

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
        } else if (o.scan && (name || gb_val_saved(vals[i]))) { /* a value the scan did not reach: say so */
            printf("%s: no shape (the scan did not reach it: a stop, a false condition or a generation step "
                   "beyond -n before it)\n", name ? name : o.stmts[i]);
        } else if (!o.scan && gb_val_saved(vals[i]) && !gb_value(vals[i])) {
            gb_clear_error(); /* saved but never produced: warned about below, with the reason */
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
    if (!rc && !o.scan) { /* saved values the run never produced: said, not dropped */
        int n = gb_exec_unproduced(gb_trace_exec(tr), NULL, 0);
        gb_val **missing = calloc((size_t)n + 1, sizeof *missing);
        n = gb_exec_unproduced(gb_trace_exec(tr), missing, n);
        int64_t steps = -1; /* new tokens: past the longest prompt (invokes are padded to it) */
        if (o.max_new > 0 && gb_trace_generated(tr)) {
            int64_t longest = 0;
            for (int p = 0; p < o.nprompts; p++)
                if (gb_tensor_dim(inputs[p], 1) > longest) longest = gb_tensor_dim(inputs[p], 1);
            steps = gb_tensor_dim(gb_trace_generated(tr), 1) - longest;
        }
        for (int k = 0; k < n; k++) {
            int i = 0;
            while (i < o.nstmts && vals[i] != missing[k]) i++;
            char *name = i < o.nstmts ? bound_name(o.stmts[i]) : NULL;
            const char *what = name ? name : i < o.nstmts ? o.stmts[i] : gb_val_text(missing[k]);
            if (steps >= 0)
                fprintf(stderr, "glassbox trace: warning: %s was never produced: generation made %lld new tokens "
                                "(a .next() beyond them, a stop or a false condition leaves it empty)\n",
                        what, (long long)steps);
            else
                fprintf(stderr, "glassbox trace: warning: %s was never produced (the run stopped before it, its "
                                "module never ran, or a condition was false)\n", what);
            free(name);
        }
        free(missing);
    }
    if (!rc && !o.scan && o.max_new > 0) { /* nnsight's generator.output */
        ts[nsaved] = gb_trace_generated(tr);
        if (!o.out) {
            char *str = gb_tensor_str(ts[nsaved]);
            printf("generator.output = %s\n", str);
            free(str);
        }
        names[nsaved++] = strdup("generator.output");
        for (int64_t r = 0; !o.out && gb_lm_tokenizer(lm) && r < gb_tensor_dim(ts[nsaved - 1], 0); r++) { /* text when it has a tokenizer */
            char *text = NULL;
            size_t n = 0;
            if (gb_lm_text(lm, ts[nsaved - 1], r, 0, &text) != GB_OK) {
                rc = gb_cli_fail("trace", gb_last_error());
                break;
            }
            char *q = malloc((n = 2 * strlen(text) + 3));
            if (gb_tensor_dim(ts[nsaved - 1], 0) > 1) printf("generator.text[%lld] = ", (long long)r);
            else printf("generator.text = ");
            printf("%s\n", q ? gb_cli_quoted(text, q, n) : text);
            free(q), free(text);
        }
    }
    if (!rc && !o.scan && top) {
        printf("top %ld next tokens%s:\n", o.top, o.max_new > 0 ? " at the last step" : "");
        gb_cli_print_top(lm, gb_value(top), (int)o.top);
    }
    if (!rc && o.png && !o.scan) /* the statements' values only, labelled with the last prompt's tokens */
        rc = gb_cli_plot_values("trace", lm, o.png, o.title, nsaved - (o.max_new > 0), names, ts, inputs[o.nprompts - 1]);
    if (!rc && o.out && gb_safetensors_save(o.out, nsaved, names, ts, GB_DTYPE_F32, NULL) != GB_OK)
        rc = gb_cli_fail("trace", gb_last_error());
    for (int i = 0; i < nsaved; i++) free((char *)names[i]);
    free(names), free(ts), free(vals), free(o.stmts), free(o.prompts), free(o.edits), free(o.tensors);
    gb_trace_free(tr);
    gb_trace_free(editor);
    for (int i = 0; i < o.nprompts; i++) gb_tensor_free(inputs[i]);
    free(inputs);
    gb_lm_free(lm);
    return rc;
}
