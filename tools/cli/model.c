/* `glassbox info | run | generate | trace`: a model from the command line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- shared ------------------------------------------------------------- */

/* Hugging Face's sampling options (generate, trace -n); temperature 0 is
 * greedy. */
#define SAMPLING_OPTS(X, P)                                                                                           \
    X(P##_TEMPERATURE, "temperature", 0, NUM, 0, 1e30, "0", false, 0, "T", "sample at temperature T (0: greedy)")    \
    X(P##_TOP_K, "top-k", 0, INT, 0, 1000000000, "0", false, 0, "K", "sample among the K most likely (0: all)")      \
    X(P##_TOP_P, "top-p", 0, NUM, 0, 1, "1", false, 0, "P", "sample within probability mass P")                     \
    X(P##_PENALTY, "repetition-penalty", 0, NUM, 1e-30, 1e30, "1", false, 0, "R",                                  \
      "divide (or multiply, when negative) seen tokens' logits by R")                                              \
    X(P##_SEED, "seed", 0, INT, 0, 9007199254740992.0, "0", false, 0, "S", "the sampling seed (trace: also torch.randint's, as torch.manual_seed(S))")
#define NAN_CHECK_OPT(X, ID)                                                                                          \
    X(ID, "nan-check", 0, FLAG, 0, 0, NULL, false, 0, NULL,                                                        \
      "fail at the first module whose output holds NaN or Inf, naming it (docs/errors/nonfinite.md)")

/* The sampling options from their first id (P_TEMPERATURE) on. */
static gb_sampling sampling_of(const gb_cli_args *a, int first) {
    return (gb_sampling){.temperature = (float)gb_cli_num(a, first), .top_k = (int)gb_cli_int(a, first + 1),
                         .top_p = (float)gb_cli_num(a, first + 2), .repetition_penalty = (float)gb_cli_num(a, first + 3),
                         .seed = (uint64_t)gb_cli_int(a, first + 4)};
}

/* The root's block list and its number of blocks. */
static const char *blocks_of(gb_model *m, int64_t *layers) {
    const char *blocks = gb_model_part(m, GB_PART_LAYERS);
    *layers = gb_module_num_children(gb_module_find(gb_model_module(m), blocks));
    return blocks;
}

static void print_ids(FILE *f, gb_tensor *ids, int64_t row) {
    const int64_t *p = (const int64_t *)gb_tensor_data(ids) + row * gb_tensor_dim(ids, 1); /* [T] */
    fputc('[', f);
    for (int64_t i = 0; i < gb_tensor_dim(ids, 1); i++) fprintf(f, "%s%lld", i ? ", " : "", (long long)p[i]);
    fputc(']', f);
}

/* ---- info --------------------------------------------------------------- */

#define INFO_OPTS(X) GB_CLI_OPT_DTYPE(X, INFO_DTYPE) GB_CLI_OPT_JSON(X, INFO_JSON)
enum { INFO_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt info_opts[] = {INFO_OPTS(GB_CLI_OPT_INIT)};

static int info(const gb_cli_args *a) {
    const char *path = gb_cli_model("info", a->npos ? a->pos[0] : NULL);
    if (!path) return GB_CLI_ERROR;
    gb_model_opts opts = {.f32_weights = gb_cli_f32(a, INFO_DTYPE)};
    gb_model *m = gb_model_open(path, &opts);
    if (!m) return gb_cli_fail("info", "%s", gb_last_error());
    char *repr = gb_module_repr(gb_model_module(m)), *config = gb_model_config_str(m);
    long long nparams = (long long)gb_module_num_parameters(gb_model_module(m));
    int rc = repr && config ? GB_CLI_OK : gb_cli_fail("info", "%s", gb_last_error());
    if (!rc && gb_cli_given(a, INFO_JSON)) {
        printf("{\"model\": ");
        gb_cli_json_string(stdout, path);
        printf(", \"model_type\": ");
        gb_cli_json_string(stdout, gb_model_type(m));
        printf(", \"parameters\": %lld, \"config\": {", nparams);
        /* config_str's "key: value" lines */
        int k = 0;
        for (char *line = config, *nl; *line; line = nl + 1) {
            if (!(nl = strchr(line, '\n'))) nl = line + strlen(line) - 1;
            char *colon = strstr(line, ": ");
            if (!colon || colon > nl) continue;
            *colon = 0, *nl = 0;
            printf("%s", k++ ? ", " : "");
            gb_cli_json_string(stdout, line);
            printf(": ");
            gb_cli_json_string(stdout, colon + 2);
        }
        printf("}, \"modules\": ");
        gb_cli_json_string(stdout, repr);
        printf("}\n");
    } else if (!rc) {
        printf("%s\n\nparameters: %lld\n%s", repr, nparams, config);
    }
    free(repr), free(config);
    gb_model_free(m);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_info = {
    "info", info, "[MODEL]", 0, 1, "print the module tree, parameter count and config",
    "The tree is PyTorch's print(model) of the Hugging Face model; the config is what glassbox read from "
    "config.json.",
    info_opts, sizeof info_opts / sizeof *info_opts};

/* ---- run ---------------------------------------------------------------- */

#define RUN_OPTS(X)                                                                                                  \
    GB_CLI_OPT_PROMPT(X, RUN_IDS, RUN_TEXT, false, 1)                                                                \
    X(RUN_OUT, "out", 'o', STR, 0, 0, NULL, false, 0, "F.safetensors",                                             \
      "write the logits (and hidden states) there, with the model, prompt and ids as metadata")                    \
    X(RUN_HIDDEN, "hidden", 0, FLAG, 0, 0, NULL, false, 0, NULL,                                                   \
      "also the hidden states, named as Hugging Face's output_hidden_states: hidden_states.0 is the embeddings, "   \
      "hidden_states.I the input of block I, hidden_states.L the final norm's output")                             \
    X(RUN_TOP, "top", 0, INT, 1, 100000, NULL, false, 0, "K", "print the K most likely next tokens with probabilities") \
    NAN_CHECK_OPT(X, RUN_NAN_CHECK)                                                                                  \
    GB_CLI_OPT_DTYPE(X, RUN_DTYPE)                                                                                   \
    GB_CLI_OPT_TOKENIZER(X, RUN_TOKENIZER)                                                                           \
    GB_CLI_OPT_JSON(X, RUN_JSON)
enum { RUN_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt run_opts[] = {RUN_OPTS(GB_CLI_OPT_INIT)};

/* The summary of a run without --out: each value's shape and the next-token
 * prediction. */
static int run_summary(gb_lm *lm, gb_tensor *ids, int n, char **names, gb_tensor **ts, bool json) {
    gb_tensor *last = gb_index(ts[0], "[0, -1]"), *top = last ? gb_argmax(last, -1, false) : NULL;
    if (!top) return gb_cli_fail("run", "%s", gb_last_error());
    int64_t next = *(const int64_t *)gb_tensor_data(top);
    char *text = NULL;
    gb_tensor *one = gb_from_data(&next, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    if (!one || (gb_lm_tokenizer(lm) && gb_lm_text(lm, one, 0, 0, &text) != GB_OK)) text = NULL;
    gb_tensor_free(one), gb_tensor_free(top), gb_tensor_free(last);
    if (json) printf("{\"ids\": "), print_ids(stdout, ids, 0), printf(", \"next_id\": %lld, \"next_text\": ", (long long)next);
    else printf("ids: "), print_ids(stdout, ids, 0), printf("\nnext token: %lld", (long long)next);
    if (json) text ? gb_cli_json_string(stdout, text) : (void)printf("null"), printf(", \"values\": {");
    else if (text) printf(" ('%s')\n", text);
    else printf("\n");
    for (int i = 0; i < n; i++) {
        if (json) printf("%s\"%s\": {\"shape\": [", i ? ", " : "", names[i]);
        else printf("%s: [", names[i]);
        for (int d = 0; d < gb_tensor_ndim(ts[i]); d++) printf("%s%lld", d ? ", " : "", (long long)gb_tensor_dim(ts[i], d));
        printf(json ? "]}" : "]\n");
    }
    if (json) printf("}}\n");
    free(text);
    return GB_CLI_OK;
}

/* The logits and (--hidden) Hugging Face's hidden_states, through a trace. */
static int run(const gb_cli_args *a) {
    const char *text = gb_cli_str(a, RUN_TEXT), *out = gb_cli_str(a, RUN_OUT);
    if (!text && !gb_cli_given(a, RUN_IDS)) return gb_cli_usage_error("run", "give a prompt with --ids 1,2,3 or -p TEXT");
    gb_lm *lm = gb_cli_open_lm("run", a->npos ? a->pos[0] : NULL, gb_cli_str(a, RUN_TOKENIZER), gb_cli_f32(a, RUN_DTYPE));
    if (!lm) return GB_CLI_ERROR;
    gb_model *m = gb_lm_model(lm);
    gb_tensor *input = gb_cli_prompt_ids("run", lm, gb_cli_get(a, RUN_IDS), text, false);
    if (!input || !gb_cli_check_positions("run", lm, gb_tensor_dim(input, 1), NULL)) {
        gb_tensor_free(input);
        gb_lm_free(lm);
        return GB_CLI_ERROR;
    }
    int64_t layers;
    const char *blocks = blocks_of(m, &layers), *norm = gb_model_part(m, GB_PART_NORM);
    bool hidden = gb_cli_given(a, RUN_HIDDEN);
    int nvals = 1 + (hidden ? (int)layers + 1 : 0);
    gb_trace *tr = gb_trace_new(gb_model_module(m), input);
    gb_val **vals = calloc((size_t)nvals, sizeof *vals);
    char **names = calloc((size_t)nvals, sizeof *names);
    gb_tensor **ts = calloc((size_t)nvals, sizeof *ts);
    int rc = GB_CLI_OK;
    if (!tr || !vals || !names || !ts) {
        rc = gb_cli_fail("run", "out of memory");
        goto done;
    }
    gb_trace_set_nan_check(tr, gb_cli_given(a, RUN_NAN_CHECK));
    vals[0] = gb_save(gb_output(tr, gb_model_part(m, GB_PART_UNEMBED)));
    names[0] = strdup("logits");
    for (int i = 0; hidden && i <= layers; i++) { /* HF: the input of each block, then the final norm's output */
        char path[64];
        snprintf(path, sizeof path, "%s.%d", blocks, i);
        vals[1 + i] = gb_save(i < layers ? gb_input(tr, path) : gb_output(tr, norm));
        names[1 + i] = malloc(32);
        if (names[1 + i]) snprintf(names[1 + i], 32, "hidden_states.%d", i);
    }
    gb_status st = gb_trace_run(tr);
    for (int i = 0; st == GB_OK && i < nvals; i++) ts[i] = gb_value(vals[i]);
    int64_t bad = st == GB_OK ? gb_count_nonfinite(ts[0], NULL) : 0;
    if (bad)
        fprintf(stderr, "glassbox run: warning: %lld of the %lld logits are NaN or Inf; --nan-check names the first "
                        "module whose output is\n", (long long)bad, (long long)gb_tensor_numel(ts[0]));
    if (st == GB_OK && out) {
        char *ids_text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&ids_text, &len);
        if (f) print_ids(f, input, 0), fclose(f);
        const char *model = gb_cli_model("run", a->npos ? a->pos[0] : NULL);
        const char *meta[] = {"model", model, "model_type", gb_model_type(m), "ids", ids_text ? ids_text : "",
                              text ? "prompt" : NULL, text, NULL};
        st = gb_safetensors_save(out, nvals, (const char *const *)names, ts, GB_DTYPE_F32, meta);
        free(ids_text);
    }
    if (st != GB_OK) rc = gb_cli_fail("run", "%s", gb_last_error());
    else if ((!out && !gb_cli_given(a, RUN_TOP)) || gb_cli_given(a, RUN_JSON)) rc = run_summary(lm, input, nvals, names, ts, gb_cli_given(a, RUN_JSON));
    if (!rc && gb_cli_given(a, RUN_TOP)) {
        gb_tensor *last = gb_select(ts[0], 1, -1);
        printf("top %lld next tokens:\n", gb_cli_int(a, RUN_TOP));
        if (last) gb_cli_print_top(gb_lm_tokenizer(lm), last, (int)gb_cli_int(a, RUN_TOP));
        else rc = gb_cli_fail("run", "%s", gb_last_error());
        gb_tensor_free(last);
    }
done:
    for (int i = 0; names && i < nvals; i++) free(names[i]);
    free(names), free(vals), free(ts);
    gb_trace_free(tr);
    gb_tensor_free(input);
    gb_lm_free(lm);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_run = {
    "run", run, "[MODEL]", 0, 1, "one forward pass: the logits, and with --hidden the hidden states",
    "Without --out or --top, prints the ids, the predicted next token and the shape of each value; --top prints "
    "the K most likely next tokens instead.",
    run_opts, sizeof run_opts / sizeof *run_opts};

/* ---- generate ------------------------------------------------------------ */

#define GEN_OPTS(X)                                                                                                  \
    GB_CLI_OPT_PROMPT(X, GEN_IDS, GEN_TEXT, false, 1)                                                                \
    X(GEN_N, "max-new-tokens", 'n', INT, 0, 1000000, "20", false, 0, "N", "new tokens at most")                    \
    X(GEN_IDS_OUT, "ids-out", 0, FLAG, 0, 0, NULL, false, 0, NULL, "print the ids (prompt and new tokens), not text") \
    SAMPLING_OPTS(X, GEN)                                                                                            \
    NAN_CHECK_OPT(X, GEN_NAN_CHECK)                                                                                  \
    GB_CLI_OPT_DTYPE(X, GEN_DTYPE)                                                                                   \
    GB_CLI_OPT_TOKENIZER(X, GEN_TOKENIZER)                                                                           \
    GB_CLI_OPT_JSON(X, GEN_JSON)
enum { GEN_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt gen_opts[] = {GEN_OPTS(GB_CLI_OPT_INIT)};

/* Tokens per second on a terminal's stderr, once per step. */
typedef struct {
    struct timespec start;
    int total;
} progress;

static double seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static gb_status on_step(int step, const int64_t *ids, int64_t batch, void *ctx) {
    (void)ids, (void)batch;
    progress *p = ctx;
    double s = seconds_since(&p->start);
    fprintf(stderr, "\rgenerating: %d/%d tokens, %.1f tokens/s", step + 1, p->total, s > 0 ? (step + 1) / s : 0.0);
    return GB_OK;
}

static int generate(const gb_cli_args *a) {
    gb_lm *lm = gb_cli_open_lm("generate", a->npos ? a->pos[0] : NULL, gb_cli_str(a, GEN_TOKENIZER), gb_cli_f32(a, GEN_DTYPE));
    if (!lm) return GB_CLI_ERROR;
    bool json = gb_cli_given(a, GEN_JSON), ids_out = gb_cli_given(a, GEN_IDS_OUT);
    int rc = GB_CLI_OK;
    if (!gb_lm_tokenizer(lm) && (!ids_out || json || gb_cli_given(a, GEN_TEXT)))
        rc = gb_cli_fail("generate", "the model in %s has no tokenizer: give --tokenizer PATH, or --ids with --ids-out",
                         gb_model_dir(gb_lm_model(lm)));
    gb_tensor *prompt = rc ? NULL : gb_cli_prompt_ids("generate", lm, gb_cli_get(a, GEN_IDS), gb_cli_str(a, GEN_TEXT), true);
    gb_tensor *out = NULL;
    long long n = gb_cli_int(a, GEN_N);
    if (!rc && (!prompt || !gb_cli_check_positions("generate", lm, gb_tensor_dim(prompt, 1), &n))) rc = GB_CLI_ERROR;
    gb_decode_opts d = gb_lm_decode_defaults(lm);
    int bad_steps = 0;
    d.max_new_tokens = (int)n;
    d.nan_check = gb_cli_given(a, GEN_NAN_CHECK);
    d.nonfinite_steps = &bad_steps;
    d.sampling = sampling_of(a, GEN_TEMPERATURE);
    progress p = {.total = (int)n};
    if (isatty(STDERR_FILENO) && n > 0) {
        clock_gettime(CLOCK_MONOTONIC, &p.start);
        d.on_step = on_step, d.step_ctx = &p;
    }
    if (!rc && gb_lm_generate(lm, prompt, NULL, &d, &out) != GB_OK) rc = gb_cli_fail("generate", "%s", gb_last_error());
    if (d.on_step) fputc('\n', stderr);
    if (!rc && bad_steps)
        fprintf(stderr, "glassbox generate: warning: the logits held NaN or Inf at %d of the %lld steps, so the "
                        "tokens chosen there mean nothing; --nan-check names the first module whose output did\n",
                bad_steps, (long long)(gb_tensor_dim(out, 1) - gb_tensor_dim(prompt, 1)));
    char *text = NULL;
    if (!rc && (json || !ids_out) && gb_lm_text(lm, out, 0, 0, &text) != GB_OK)
        rc = gb_cli_fail("generate", "%s", gb_last_error());
    if (!rc && json) {
        printf("{\"ids\": "), print_ids(stdout, out, 0);
        printf(", \"prompt_tokens\": %lld, \"text\": ", (long long)gb_tensor_dim(prompt, 1));
        gb_cli_json_string(stdout, text);
        printf("}\n");
    } else if (!rc && ids_out) {
        print_ids(stdout, out, 0), printf("\n");
    } else if (!rc) {
        printf("%s\n", text);
    }
    free(text);
    gb_tensor_free(out), gb_tensor_free(prompt);
    gb_lm_free(lm);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_generate = {
    "generate", generate, "[MODEL]", 0, 1, "greedy decoding with a KV cache, or sampling",
    "Stops at the model's EOS, after -n tokens, or at the model's last position. Without a prompt, generation "
    "starts from the BOS token. On a terminal, progress (tokens per second) goes to standard error.",
    gen_opts, sizeof gen_opts / sizeof *gen_opts};

/* ---- trace -------------------------------------------------------------- */

#define TRACE_OPTS(X)                                                                                                \
    GB_CLI_OPT_PROMPT(X, TRACE_IDS, TRACE_TEXT, true, 0)                                                             \
    X(TRACE_STMT, "exec", 'e', STR, 0, 0, NULL, true, 0, "STATEMENT",                                              \
      "an intervention in nnsight's syntax, for the prompt before it (several lines: a block with if/elif/else "    \
      "and with tracer.cond(...):)")                                                                               \
    X(TRACE_FILE, "file", 'f', STR, 0, 0, NULL, true, 0, "FILE",                                                   \
      "the statements of FILE, lines as -e takes them, for the prompt before it ('-': standard input)")            \
    X(TRACE_N, "max-new-tokens", 'n', INT, 0, 1000000, "0", false, 0, "N",                                         \
      "generate N tokens greedily with the interventions (0: one forward pass)")                                   \
    X(TRACE_SCAN, "scan", 0, FLAG, 0, 0, NULL, false, 0, NULL, "shapes only: print each statement's shape")        \
    X(TRACE_GRAPH, "graph", 0, FLAG, 0, 0, NULL, false, 0, NULL, "print the intervention graph first")             \
    X(TRACE_OUT, "out", 'o', STR, 0, 0, NULL, false, 0, "F.safetensors", "write the saved values there")           \
    X(TRACE_TOP, "top", 0, INT, 1, 100000, NULL, false, 0, "K",                                                     \
      "print the K most likely next tokens of every row (with -n: at the last step)")                              \
    X(TRACE_PNG, "png", 0, STR, 0, 0, NULL, false, 0, "F.png", "draw the saved values as a heatmap, a row per value") \
    X(TRACE_TITLE, "title", 0, STR, 0, 0, NULL, false, 0, "TEXT", "the heatmap's title")                            \
    X(TRACE_EDIT, "edit", 0, STR, 0, 0, NULL, true, 0, "STATEMENT",                                                 \
      "a persistent edit every run of the trace sees (nnsight's model.edit())")                                    \
    X(TRACE_TENSOR, "tensor", 0, STR, 0, 0, NULL, true, 0, "NAME=F.safetensors[:KEY]",                              \
      "bind a stored tensor to NAME for the statements")                                                           \
    SAMPLING_OPTS(X, TRACE)                                                                                          \
    NAN_CHECK_OPT(X, TRACE_NAN_CHECK)                                                                                \
    X(TRACE_REMOTE, "remote", 0, STR, 0, 0, NULL, false, 0, "URL", "run the trace on a glassbox server (docs/remote.md)") \
    X(TRACE_KEY, "key", 0, STR, 0, 0, NULL, false, 0, "KEY", "the API key for --remote")                           \
    GB_CLI_OPT_DTYPE(X, TRACE_DTYPE)                                                                                 \
    GB_CLI_OPT_TOKENIZER(X, TRACE_TOKENIZER)                                                                         \
    GB_CLI_OPT_JSON(X, TRACE_JSON)
enum { TRACE_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt trace_opts[] = {TRACE_OPTS(GB_CLI_OPT_INIT)};

static bool lm_eos(int64_t id, void *lm) { return gb_lm_is_eos(lm, id); }

/* --tensor NAME=FILE.safetensors[:KEY]: the tensor KEY of FILE (by
 * default the one named NAME, or the file's only tensor) bound to NAME in
 * tr and in the editor, if any. Returns 0, or 1 after printing the error. */
static int bind_tensor(gb_trace *tr, gb_trace *editor, const char *spec) {
    const char *eq = strchr(spec, '=');
    char name[64], file[1024];
    if (!eq || eq == spec || eq - spec >= (ptrdiff_t)sizeof name)
        return gb_cli_fail("trace", "--tensor takes NAME=FILE.safetensors[:KEY], got '%s'", spec);
    snprintf(name, sizeof name, "%.*s", (int)(eq - spec), spec);
    snprintf(file, sizeof file, "%s", eq + 1);
    char *key = strstr(file, ".safetensors:");
    if (key) {
        key += strlen(".safetensors");
        *key++ = 0;
    }
    gb_safetensors *st = gb_safetensors_open(file);
    if (!st) return gb_cli_fail("trace", "%s", gb_last_error());
    if (!key && gb_safetensors_has(st, name)) key = name;
    else if (!key && gb_safetensors_count(st) == 1) key = (char *)gb_safetensors_name(st, 0);
    gb_tensor *t = key ? gb_safetensors_get(st, key) : NULL;
    int rc = 0;
    if (!key)
        rc = gb_cli_fail("trace", "--tensor %s: %s holds %d tensors and none named '%s'; pick one with FILE:KEY", name, file,
                         gb_safetensors_count(st), name);
    else if (!t || !gb_trace_tensor(tr, name, t) || (editor && !gb_trace_tensor(editor, name, t)))
        rc = gb_cli_fail("trace", "%s", gb_last_error());
    gb_tensor_free(t);
    gb_safetensors_free(st);
    return rc;
}

/* One saved value, printed as text or as a JSON member. */
static void print_value(const char *name, gb_tensor *t, bool json, bool *first) {
    if (json) {
        printf("%s", *first ? "" : ", ");
        gb_cli_json_string(stdout, name);
        printf(": ");
        gb_cli_json_tensor(stdout, t);
    } else {
        char *str = gb_tensor_str(t);
        printf("%s = %s\n", name, str);
        free(str);
    }
    *first = false;
}

/* A value trace prints: the statement it comes from (index into stmts),
 * the name it is bound to (malloc'd, or NULL), the text to print without
 * one. */
typedef struct trace_entry {
    int stmt;
    char *name;
    const char *text;
    gb_val *val;
} trace_entry;

/* The entries of the statements: one per one-line statement (its value),
 * one per name a block binds (the value bound last). NULL when out of memory. */
static trace_entry *trace_entries(gb_trace *tr, int nstmts, const char **stmts, gb_val **vals, int *n) {
    trace_entry *e = NULL;
    int cap = 0;
    *n = 0;
    for (int i = 0; i < nstmts; i++) {
        int k = 1;
        char **names = NULL;
        if (strchr(stmts[i], '\n') && !(names = gb_statement_names(stmts[i], &k))) goto oom;
        if (*n + k + 1 > cap) {
            trace_entry *ne = realloc(e, sizeof *e * (size_t)(cap = 2 * (*n + k + 1)));
            if (!ne) {
                for (int j = 0; names && j < k; j++) free(names[j]);
                free(names);
                goto oom;
            }
            e = ne;
        }
        if (!names) e[(*n)++] = (trace_entry){i, gb_statement_name(stmts[i]), stmts[i], vals[i]};
        for (int j = 0; names && j < k; j++) e[(*n)++] = (trace_entry){i, names[j], names[j], gb_trace_name(tr, names[j])};
        free(names);
    }
    return e ? e : calloc(1, sizeof *e);
oom:
    for (int j = 0; j < *n; j++) free(e[j].name);
    free(e);
    *n = 0;
    return NULL;
}

/* Interventions written as nnsight statements, run with one forward pass
 * (or, with -n N, greedy generation of N tokens); saved values are printed
 * (or written with --out). Several prompts are batched as invokes, each
 * prompt's statements applying to its rows. */
static int trace(const gb_cli_args *a) {
    if (gb_cli_given(a, TRACE_REMOTE)) return gb_cli_trace_remote(a);
    /* the prompts in order, each with the index of the first statement after it */
    int nprompts = 0, nstmts = 0;
    const gb_cli_arg **prompts = calloc((size_t)a->nseq + 1, sizeof *prompts);
    int *first = calloc((size_t)a->nseq + 1, sizeof *first);
    const char **stmts = calloc((size_t)a->nseq + 1, sizeof *stmts);
    char **files = calloc((size_t)a->nseq + 1, sizeof *files); /* -f texts, freed at the end */
    const char **sites = calloc((size_t)a->nseq + 1, sizeof *sites); /* "-e", or -f's file */
    int nfiles = 0, rc = !prompts || !first || !stmts || !files || !sites ? gb_cli_fail("trace", "out of memory") : GB_CLI_OK;
    for (int i = 0; !rc && i < a->nseq; i++) {
        int o = a->seq[i].opt;
        if (o == TRACE_IDS || o == TRACE_TEXT) first[nprompts] = nstmts, prompts[nprompts++] = &a->seq[i];
        else if (o == TRACE_STMT) sites[nstmts] = "-e", stmts[nstmts++] = a->seq[i].str;
        else if (o == TRACE_FILE) {
            bool in = !strcmp(a->seq[i].str, "-");
            FILE *f = in ? stdin : fopen(a->seq[i].str, "r");
            size_t len;
            char *text = f ? gb_cli_slurp(f, &len) : NULL;
            if (f && !in) fclose(f);
            if (!text) rc = gb_cli_fail("trace", "-f %s: %s", a->seq[i].str, f ? "cannot read it" : strerror(errno));
            else sites[nstmts] = a->seq[i].str, stmts[nstmts++] = files[nfiles++] = text;
        }
    }
    bool json = gb_cli_given(a, TRACE_JSON), scan = gb_cli_given(a, TRACE_SCAN);
    const char *out = gb_cli_str(a, TRACE_OUT);
    long long n = gb_cli_int(a, TRACE_N);
    if (!rc && !nprompts) rc = gb_cli_usage_error("trace", "give a prompt with --ids 1,2,3 or -p TEXT (several: invokes)");
    gb_lm *lm = rc ? NULL : gb_cli_open_lm("trace", a->npos ? a->pos[0] : NULL, gb_cli_str(a, TRACE_TOKENIZER), gb_cli_f32(a, TRACE_DTYPE));
    if (!rc && !lm) rc = GB_CLI_ERROR;
    gb_model *m = lm ? gb_lm_model(lm) : NULL;
    gb_tensor **inputs = calloc((size_t)nprompts + 1, sizeof *inputs);
    for (int i = 0; !rc && i < nprompts; i++) {
        const gb_cli_arg *p = prompts[i];
        if (!(inputs[i] = gb_cli_prompt_ids("trace", lm, p->opt == TRACE_IDS ? p : NULL, p->opt == TRACE_TEXT ? p->str : NULL, false)) ||
            !gb_cli_check_positions("trace", lm, gb_tensor_dim(inputs[i], 1), &n))
            rc = GB_CLI_ERROR;
    }
    bool batched = nprompts > 1;
    gb_trace *tr = rc ? NULL : gb_trace_new(gb_model_module(m), batched ? NULL : inputs[0]);
    gb_val **vals = calloc((size_t)nstmts + 1, sizeof *vals);
    gb_status st = GB_OK;
    /* --edit: an editor every run of the trace sees (nnsight's model.edit()); --tensor: named constants */
    gb_trace *editor = tr && gb_cli_given(a, TRACE_EDIT) ? gb_trace_new(gb_model_module(m), NULL) : NULL;
    for (int i = 0; tr && !rc && i < a->nseq; i++)
        if (a->seq[i].opt == TRACE_TENSOR) rc = bind_tensor(tr, editor, a->seq[i].str);
    if (rc) st = GB_ERR_ARG; /* printed */
    for (int i = 0, k = 0; editor && st == GB_OK && i < a->nseq; i++)
        if (a->seq[i].opt == TRACE_EDIT) st = gb_trace_statement(editor, a->seq[i].str, "--edit", ++k, NULL);
    if (editor && st == GB_OK) st = gb_trace_use_edits(tr, editor);
    for (int i = 0, p = 0; tr && st == GB_OK && i < nstmts; i++) {
        while (batched && p < nprompts && first[p] == i) {
            gb_invoke_end(tr);
            st = gb_invoke(tr, inputs[p++]);
        }
        bool file = strcmp(sites[i], "-e") != 0; /* a file's lines are numbered from 1 */
        if (st == GB_OK) st = gb_trace_statement(tr, stmts[i], sites[i], file ? 1 : i + 1, &vals[i]);
    }
    if (tr) gb_invoke_end(tr);
    /* What is printed: a one-line statement's value under the name it binds
     * or its text; a block's values under the names its lines bind (its
     * unnamed values, as in nnsight, have no name to be read by) */
    int nent = 0;
    trace_entry *ents = NULL;
    if (tr && st == GB_OK && !(ents = trace_entries(tr, nstmts, stmts, vals, &nent))) st = GB_ERR_ALLOC;
    for (int p = 0; tr && batched && st == GB_OK && p < nprompts; p++) /* prompts after the last statement */
        if (first[p] == nstmts) {
            st = gb_invoke(tr, inputs[p]);
            gb_invoke_end(tr);
        }
    /* --top: the last position's logits of every row (of the last step, with -n) */
    gb_val *top = NULL;
    long long ntop = gb_cli_int(a, TRACE_TOP);
    if (tr && st == GB_OK && ntop) {
        const char *unembed = gb_model_part(m, GB_PART_UNEMBED);
        top = gb_save(gb_val_index(n > 0 ? gb_output_all(tr, unembed) : gb_output(tr, unembed), "[:, -1]"));
    }
    if (tr) { /* the language model's policy: its EOS ends rows, its pad id pads invokes and finished rows */
        gb_trace_set_stop_tokens(tr, lm_eos, lm);
        gb_trace_set_pad_id(tr, gb_lm_pad_id(lm));
        gb_trace_set_nan_check(tr, gb_cli_given(a, TRACE_NAN_CHECK));
        gb_trace_set_seed(tr, (uint64_t)gb_cli_int(a, TRACE_SEED)); /* torch.randint's, as torch.manual_seed(S) */
    }
    if (tr && st == GB_OK && gb_cli_given(a, TRACE_GRAPH)) {
        char *g = gb_trace_graph(tr);
        printf("%s", g);
        free(g);
    }
    gb_sampling sampling = sampling_of(a, TRACE_TEMPERATURE);
    if (tr && st == GB_OK)
        st = scan && n > 0 ? gb_trace_scan_generate(tr, (int)n)
             : scan        ? gb_trace_scan(tr)
             : n > 0       ? gb_trace_sample(tr, (int)n, &sampling)
                           : gb_trace_run(tr);
    if (tr && st != GB_OK && !rc) rc = gb_cli_fail("trace", "%s", gb_last_error());

    /* Each entry's saved value, under its name or its text. */
    const char **names = calloc((size_t)nent + 2, sizeof *names);
    gb_tensor **ts = calloc((size_t)nent + 2, sizeof *ts);
    int nsaved = 0;
    bool first_value = true;
    if (!rc && json) printf("{");
    for (int i = 0; tr && !rc && i < nent; i++) {
        const char *name = ents[i].name, *label = name ? name : ents[i].text;
        gb_val *v = ents[i].val;
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if (scan && v && gb_val_shape(v, &nd, shape) == GB_OK) {
            if (json) printf("%s", first_value ? "" : ", "), gb_cli_json_string(stdout, label), printf(": [");
            else printf("%s: [", label);
            for (int d = 0; d < nd; d++) printf("%s%lld", d ? ", " : "", (long long)shape[d]);
            printf(json ? "]" : "]\n");
            first_value = false;
        } else if (scan && (name || gb_val_saved(v))) { /* a value the scan did not reach: say so */
            if (!json)
                printf("%s: no shape (the scan did not reach it: a stop, a false condition or a generation step "
                       "beyond -n before it)\n", label);
        } else if (!scan && v && gb_val_saved(v) && !gb_value(v)) {
            gb_clear_error(); /* saved but never produced: warned about below, with the reason */
        } else if (!scan && v && (ts[nsaved] = gb_value(v))) {
            if (!out) print_value(label, ts[nsaved], json, &first_value);
            char *key = name ? strdup(name) : malloc(32);
            if (!name && key) snprintf(key, 32, "statement.%d", ents[i].stmt + 1);
            names[nsaved++] = key;
        }
    }
    if (!rc && !scan) { /* saved values the run never produced: said, not dropped */
        int k = gb_exec_unproduced(gb_trace_exec(tr), NULL, 0);
        gb_val **missing = calloc((size_t)k + 1, sizeof *missing);
        k = missing ? gb_exec_unproduced(gb_trace_exec(tr), missing, k) : 0;
        int64_t steps = -1; /* new tokens: past the longest prompt (invokes are padded to it) */
        if (n > 0 && gb_trace_generated(tr)) {
            int64_t longest = 0;
            for (int p = 0; p < nprompts; p++)
                if (gb_tensor_dim(inputs[p], 1) > longest) longest = gb_tensor_dim(inputs[p], 1);
            steps = gb_tensor_dim(gb_trace_generated(tr), 1) - longest;
        }
        for (int j = 0; j < k; j++) {
            int i = 0;
            while (i < nent && ents[i].val != missing[j]) i++;
            const char *what = i < nent ? (ents[i].name ? ents[i].name : ents[i].text) : gb_val_text(missing[j]);
            gb_cli_warn_unproduced("trace", what, (long long)steps);
        }
        free(missing);
    }
    if (!rc && !scan && n > 0 && gb_trace_generated(tr)) { /* nnsight's generator.output (none after a stop) */
        ts[nsaved] = gb_trace_generated(tr);
        if (!out) print_value("generator.output", ts[nsaved], json, &first_value);
        names[nsaved++] = strdup("generator.output");
        for (int64_t r = 0; !out && !json && gb_lm_tokenizer(lm) && r < gb_tensor_dim(ts[nsaved - 1], 0); r++) {
            char *text = NULL;
            size_t len = 0;
            if (gb_lm_text(lm, ts[nsaved - 1], r, 0, &text) != GB_OK) {
                rc = gb_cli_fail("trace", "%s", gb_last_error());
                break;
            }
            char *q = malloc((len = 2 * strlen(text) + 3));
            if (gb_tensor_dim(ts[nsaved - 1], 0) > 1) printf("generator.text[%lld] = ", (long long)r);
            else printf("generator.text = ");
            printf("%s\n", q ? gb_cli_quoted(text, q, len) : text);
            free(q), free(text);
        }
    }
    if (!rc && json) printf("}\n");
    if (!rc && !scan && top && gb_value(top)) { /* never produced (a stop before the logits): warned about above */
        printf("top %lld next tokens%s:\n", ntop, n > 0 ? " at the last step" : "");
        gb_cli_print_top(gb_lm_tokenizer(lm), gb_value(top), (int)ntop);
    }
    if (!rc && gb_cli_given(a, TRACE_PNG) && !scan) /* the statements' values only, labelled with the last prompt's tokens */
        rc = gb_cli_plot_values("trace", gb_lm_tokenizer(lm), gb_cli_str(a, TRACE_PNG), gb_cli_str(a, TRACE_TITLE), nsaved - (n > 0), names,
                                ts, inputs[nprompts - 1]);
    if (!rc && out && gb_safetensors_save(out, nsaved, names, ts, GB_DTYPE_F32, NULL) != GB_OK)
        rc = gb_cli_fail("trace", "%s", gb_last_error());
    for (int i = 0; i < nsaved; i++) free((char *)names[i]);
    for (int i = 0; i < nent; i++) free(ents[i].name);
    for (int i = 0; i < nfiles; i++) free(files[i]);
    free(ents), free(files), free(sites);
    free(names), free(ts), free(vals), free(stmts), free(prompts), free(first);
    gb_trace_free(tr);
    gb_trace_free(editor);
    for (int i = 0; i < nprompts; i++) gb_tensor_free(inputs[i]);
    free(inputs);
    gb_lm_free(lm);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_trace = {
    "trace", trace, "[MODEL]", 0, 1, "interventions in nnsight's syntax",
    "Each -e statement (or -f file of them; a block of lines with if/elif/else or with tracer.cond(...): "
    "is one) applies to the prompt (--ids or -p) before it; several prompts are batched as invokes "
    "(left-padded, each with its statements). Values saved with .save() are printed, or written with --out "
    "under the name a statement binds (statement.K otherwise). With -n, generation runs with the "
    "interventions at every step; generator.output holds the ids and generator.text their text.",
    trace_opts, sizeof trace_opts / sizeof *trace_opts};
