/* `glassbox trace` and `glassbox session`: sessions written as options,
 * built into a gb_spec and run locally (gb_spec_session) or on a server
 * (gb_remote_run); both print the same lines and write the same --out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "glassbox.h"

typedef struct cli_session {
    const char *cmd;
    const char *out, *remote, *key;
    bool scan, graph, multi;
    int loops, ntraces_given; /* --iter steps; traces of a --json session */
    bool tty, progress;       /* stderr is a terminal; a token line is on it */
    bool generated;           /* trace --remote -n N */
    bool json, json_open;     /* trace --remote --json; its "{" printed */
    /* --model NAME=DIR pairs and the models opened, by name */
    const char **names, **dirs;
    gb_lm **lms;
    int nmodels;
    /* each trace's statements (argv's), to print an unnamed one's value
     * under its text as the result's "statement.N" */
    const char ***stmts;
    int *nstmts, ntraces;
    char **files; /* -f texts, freed with c */
    int nfiles;
    /* what --out writes (and trace --remote --png draws) */
    char **out_names;
    gb_tensor **out_values;
    int nout;
    /* trace --remote: --top K and --png, with the server's tokenizer; each
     * statement's number among the user's (0: one this file added, the
     * top of each invoke, "__top_K"), and those tops in invoke order */
    long long top;
    const char *png, *title, *model;
    const gb_cli_arg *last_prompt;
    gb_tokenizer *vocab;
    int *user_no;
    gb_tensor **tops;
    int ntops;
    gb_sampling sampling; /* the current trace's --temperature ... (its seed: --seed's) */
} cli_session;

static gb_lm *cli_lm_of(void *ctx, const char *name) {
    cli_session *c = ctx;
    for (int i = 0; i < c->nmodels; i++) {
        if (strcmp(c->names[i], name)) continue;
        if (!c->lms[i]) c->lms[i] = gb_cli_open_lm(NULL, c->dirs[i], NULL, false);
        return c->lms[i];
    }
    return NULL;
}

/* A name for the model: --model NAME=DIR's, or a directory opened as itself. */
static void cli_add_model(cli_session *c, const char *name, const char *dir) {
    for (int i = 0; i < c->nmodels; i++)
        if (!strcmp(c->names[i], name)) return;
    c->names[c->nmodels] = name;
    c->dirs[c->nmodels] = dir;
    c->lms[c->nmodels++] = NULL;
}

/* trace --remote --json: the values as one object, as the local trace
 * prints it; the brace opens at the first member (or at the end). */
static void cli_json_key(cli_session *c, const char *label) {
    printf("%s", c->json_open ? ", " : "{");
    c->json_open = true;
    gb_cli_json_string(stdout, label);
    printf(": ");
}

static gb_status cli_result(void *ctx, const gb_spec_result *r) {
    cli_session *c = ctx;
    if (c->progress) fprintf(stderr, "\r\033[K");
    c->progress = false;
    char prefix[96] = "";
    if (c->multi) {
        int k = snprintf(prefix, sizeof prefix, "t%d", r->trace);
        for (int d = 0; d < r->depth && k < (int)sizeof prefix; d++)
            k += snprintf(prefix + k, sizeof prefix - (size_t)k, "%s%lld", d ? "." : "[", (long long)r->items[d]);
        if (r->depth && k < (int)sizeof prefix) snprintf(prefix + k, sizeof prefix - (size_t)k, "]");
        if (!c->out && !r->scan) printf("[%s]\n", prefix);
    }
    if (r->scan) { /* as the trace command prints them, from what a local or remote scan reports */
        if (c->graph) printf("%s", r->graph ? r->graph : "");
        for (int i = 0; c->scan && r->ndims && i < r->nstmts; i++) {
            char *name = gb_statement_name(r->stmts[i]);
            const char *label = name ? name : r->stmts[i];
            if (r->ndims[i] >= 0 && strncmp(label, "__top_", 6)) {
                if (c->json) cli_json_key(c, label), printf("[");
                else printf("%s: [", label);
                for (int d = 0; d < r->ndims[i]; d++)
                    printf("%s%lld", d ? ", " : "", (long long)r->shapes[(size_t)i * GB_MAX_DIMS + (size_t)d]);
                printf(c->json ? "]" : "]\n");
            } else if (r->ndims[i] == -1 && !c->json) {
                printf("%s: no shape (the scan did not reach it: a stop, a false condition or a generation step beyond "
                       "-n before it)\n", label);
            }
            free(name);
        }
        gb_clear_error();
        return GB_OK;
    }
    for (int i = 0; i < r->n; i++) {
        if (!strncmp(r->names[i], "__top_", 6)) { /* --top's rows of one invoke */
            gb_tensor **grown = realloc(c->tops, sizeof *grown * (size_t)(c->ntops + 1));
            if (!grown) return GB_ERR_ALLOC;
            c->tops = grown;
            c->tops[c->ntops++] = gb_tensor_ref(r->values[i]);
            continue;
        }
        char *end, user[32];
        const char *label = r->names[i], *saved = r->names[i];
        long k = strncmp(label, "statement.", 10) ? 0 : strtol(label + 10, &end, 10);
        if (k > 0 && r->trace <= c->ntraces && k <= c->nstmts[r->trace - 1]) {
            label = c->stmts[r->trace - 1][k - 1];
            if (c->user_no) snprintf(user, sizeof user, "statement.%d", c->user_no[k - 1]), saved = user;
        }
        if (!c->out && c->json) {
            cli_json_key(c, label);
            gb_cli_json_tensor(stdout, r->values[i]);
        } else if (!c->out) {
            char *str = gb_tensor_str(r->values[i]);
            printf("%s = %s\n", label, str ? str : "?");
            free(str);
        }
        if (!c->out && !c->png) continue;
        char **names = realloc(c->out_names, sizeof *names * (size_t)(c->nout + 1));
        gb_tensor **values = names ? realloc(c->out_values, sizeof *values * (size_t)(c->nout + 1)) : NULL;
        if (names) c->out_names = names;
        if (values) c->out_values = values;
        size_t len = strlen(prefix) + strlen(saved) + 2;
        char *name = values ? malloc(len) : NULL;
        if (!name) return GB_ERR_ALLOC;
        snprintf(name, len, "%s%s%s", prefix, *prefix ? "." : "", saved);
        c->out_names[c->nout] = name;
        c->out_values[c->nout++] = gb_tensor_ref(r->values[i]);
    }
    for (int i = 0; i < r->nunproduced; i++) { /* warned about as the local trace does, under the same labels */
        long k = strncmp(r->unproduced[i], "statement.", 10) ? 0 : strtol(r->unproduced[i] + 10, NULL, 10);
        bool known = k > 0 && r->trace <= c->ntraces && k <= c->nstmts[r->trace - 1];
        if (strncmp(r->unproduced[i], "__top_", 6)) /* --top's: locally a value no statement made */
            gb_cli_warn_unproduced(c->cmd, known ? c->stmts[r->trace - 1][k - 1] : r->unproduced[i], (long long)r->new_tokens);
    }
    for (int i = 0; !c->out && !c->json && i < r->ntexts; i++) { /* as the local trace prints generator.output's rows */
        size_t n = 2 * strlen(r->texts[i]) + 3;
        char *q = malloc(n);
        if (r->ntexts > 1) printf("generator.text[%d] = ", i);
        else printf("generator.text = ");
        printf("%s\n", q ? gb_cli_quoted(r->texts[i], q, n) : r->texts[i]);
        free(q);
    }
    fflush(stdout);
    return GB_OK;
}

/* Generated tokens as they arrive (a local generation's steps, or a
 * server's token events): progress on a terminal's stderr, one line
 * redrawn, cleared when the trace's values print. stdout stays what a
 * local trace prints. */
static gb_status cli_token(void *ctx, int trace, int step, const int64_t *ids, int64_t batch) {
    cli_session *c = ctx;
    if (!c->tty) return GB_OK;
    fprintf(stderr, "\r\033[Kt%d: token %d:", trace, step + 1);
    for (int64_t b = 0; b < batch && b < 8; b++) fprintf(stderr, " %lld", (long long)ids[b]);
    fprintf(stderr, "%s", batch > 8 ? " ..." : "");
    c->progress = true;
    return GB_OK;
}

static void cli_log(void *ctx, const char *line) {
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

/* --iter NAME='TEXT','TEXT' (or "TEXT"; \ escapes the quote and itself)
 * and NAME=ids:[1,2],[3]: a loop over prompts. false after printing why. */
static bool cli_iter_prompts(const char *cmd, const char *name, const char *items, gb_spec *sp) {
    bool ids = !strncmp(items, "ids:", 4), ok = true;
    const char *p = ids ? items + 4 : items;
    int n = 0;
    char **texts = calloc(strlen(p) + 1, sizeof *texts); /* an item takes at least two characters */
    int64_t **lists = calloc(strlen(p) + 1, sizeof *lists), *lens = calloc(strlen(p) + 1, sizeof *lens);
    if (!texts || !lists || !lens) ok = false;
    while (ok && *p) {
        char q = *p++, close = q == '[' ? ']' : q;
        if (ids ? q != '[' : q != '\'' && q != '"') {
            ok = false;
            break;
        }
        const char *end = p;
        while (*end && *end != close) end += *end == '\\' && end[1] ? 2 : 1;
        if (!*end) {
            ok = false;
            break;
        }
        char *t = texts[n] = malloc((size_t)(end - p) + 1), *w = t;
        for (const char *c = p; t && c < end; c++) *w++ = *c == '\\' && c + 1 < end ? *++c : *c;
        if (t) *w = 0;
        if (t && ids) { /* the list's numbers, as --ids reads them */
            gb_cli_opt opt = {.name = "iter", .kind = GB_CLI_IDS};
            gb_cli_arg a = {0};
            char err[256];
            ok = gb_cli_parse_value(&opt, t, &a, err, sizeof err);
            lists[n] = a.ids, lens[n] = a.nids;
            free(t), texts[n] = NULL;
        }
        ok = ok && (ids || t);
        n++;
        p = end + 1;
        if (*p == ',') p++;
        else if (*p) ok = false;
    }
    if (ok) ok = gb_spec_iter_prompts(sp, name, n, (const char *const *)texts, (const int64_t *const *)lists, lens) == GB_OK;
    if (!ok)
        gb_cli_fail(cmd, "--iter %s=%s: prompts are 'TEXT','TEXT' (or \"TEXT\") or ids:[1,2],[3]%s%s", name, items,
                    gb_last_error()[0] ? "; " : "", gb_last_error());
    for (int k = 0; k < n; k++) free(texts[k]), free(lists[k]);
    free(texts), free(lists), free(lens);
    return ok;
}

/* --iter NAME=ITEMS: "1,2,3" (numbers), "[0,1],[2,3]" (rows), prompts
 * (cli_iter_prompts), or a name: an enclosing loop (its item's rows) or a
 * value an earlier trace bound (its rows). */
static bool cli_iter(const char *cmd, const char *arg, gb_spec *sp) {
    const char *eq = strchr(arg, '=');
    char name[64];
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof name)
        return gb_cli_usage_error(cmd, "--iter takes NAME=1,2,3 | NAME=[1,2],[3,4] | NAME=OUTER_LOOP, got '%s'", arg), false;
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    const char *items = eq + 1;
    gb_clear_error();
    if (*items == '\'' || *items == '"' || !strncmp(items, "ids:", 4)) return cli_iter_prompts(cmd, name, items, sp);
    if ((*items >= 'a' && *items <= 'z') || (*items >= 'A' && *items <= 'Z') || *items == '_')
        return gb_spec_iter(sp, name, 0, 0, NULL, items) == GB_OK || (gb_cli_fail(cmd, "%s", gb_last_error()), false);
    float *v = NULL;
    int64_t n = 0, width = -1, cap = 0, row = 0;
    bool ok = true, rows = *items == '[';
    for (const char *p = items; ok && *p;) {
        if (rows && *p == '[') p++;
        char *end;
        errno = 0;
        float x = strtof(p, &end);
        if (end == p || errno) {
            ok = false;
            break;
        }
        if (n == cap) {
            float *grown = realloc(v, sizeof *v * (size_t)(cap = cap ? 2 * cap : 16));
            if (!grown) {
                ok = false;
                break;
            }
            v = grown;
        }
        v[n++] = x;
        row++;
        p = end;
        if (rows && *p == ']') {
            if (width >= 0 && width != row) ok = false;
            width = row, row = 0;
            p++;
        }
        if (*p == ',') p++;
        else if (*p) ok = false;
    }
    if (rows && row) ok = false;
    if (ok && n) ok = gb_spec_iter(sp, name, rows ? n / width : n, rows ? width : 0, v, NULL) == GB_OK;
    else if (ok) ok = gb_spec_iter(sp, name, 0, 0, (float[]){0}, NULL) == GB_OK;
    free(v);
    if (!ok) {
        char msg[512];
        snprintf(msg, sizeof msg, "--iter %s: items are numbers (1,2,3) or rows of one length ([1,2],[3,4]); %s", arg,
                 gb_last_error());
        gb_cli_fail(cmd, "%s", msg);
    }
    return ok;
}

static void cli_free(cli_session *c) {
    for (int i = 0; i < c->nfiles; i++) free(c->files[i]);
    free(c->files);
    for (int i = 0; i < c->ntraces; i++) free(c->stmts[i]);
    free(c->stmts), free(c->nstmts);
    free(c->names), free(c->dirs), free(c->lms);
}

/* The server's tokenizer for --top and --png (GET /models/NAME/tokenizer.json),
 * read as a local model's is; NULL after printing why. */
static gb_tokenizer *cli_vocab(cli_session *c) {
    char path[512], dir[] = "/tmp/glassbox-vocab-XXXXXX";
    snprintf(path, sizeof path, "/models/%s/tokenizer.json", c->model);
    long status = 0;
    char *body = gb_remote_get(c->remote, path, c->key, &status);
    if (!body) return gb_cli_fail(c->cmd, "%s", gb_last_error()), NULL;
    if (status != 200) {
        gb_cli_fail(c->cmd, "--top and --png print tokens as the server's tokenizer reads them: %s%s: %ld: %s",
                    c->remote, path, status, body);
        free(body);
        return NULL;
    }
    gb_tokenizer *tok = NULL;
    FILE *f = NULL;
    if (mkdtemp(dir)) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if ((f = fopen(path, "wb")) && fputs(body, f) >= 0 && !fclose(f)) tok = gb_tokenizer_open(dir);
        else if (f) fclose(f);
        unlink(path);
        rmdir(dir);
    }
    free(body);
    if (!tok) gb_cli_fail(c->cmd, "the server's tokenizer: %s", f ? gb_last_error() : strerror(errno));
    return tok;
}

/* After a trace --remote run: --top's block from the tops of its invokes,
 * and --png's picture of the saved values (not generator.output), as the
 * local trace prints and draws them. */
static int cli_top_png(cli_session *c) {
    int rc = 0;
    if (c->top && c->ntops) { /* none: a stop before the logits, as locally */
        gb_tensor *logits = gb_cat(c->ntops, c->tops, 0);
        if (!logits) return gb_cli_fail(c->cmd, "--top: %s", gb_last_error());
        printf("top %lld next tokens%s:\n", c->top, c->generated ? " at the last step" : "");
        gb_cli_print_top(c->vocab, logits, (int)c->top);
        gb_tensor_free(logits);
    }
    if (c->png) {
        const gb_cli_arg *p = c->last_prompt;
        gb_tensor *ids = p->ids ? gb_from_data(p->ids, 2, (int64_t[]){1, p->nids}, GB_DTYPE_I64)
                                : gb_tokenizer_encode_ids(c->vocab, p->str);
        int n = c->nout - (c->nout && !strcmp(c->out_names[c->nout - 1], "generator.output"));
        rc = ids ? gb_cli_plot_values(c->cmd, c->vocab, c->png, c->title, n, (const char *const *)c->out_names,
                                      c->out_values, ids)
                 : gb_cli_fail(c->cmd, "%s", gb_last_error());
        gb_tensor_free(ids);
    }
    return rc;
}

/* The run's error, on a line of its own after a token line. */
static int cli_run_failed(cli_session *c) {
    if (c->progress) fprintf(stderr, "\r\033[K");
    c->progress = false;
    return gb_cli_fail(c->cmd, "%s", gb_last_error());
}

static int cli_run(cli_session *c, gb_spec *sp) {
    int rc = 0;
    c->tty = isatty(STDERR_FILENO);
    if (!c->key) c->key = getenv("GLASSBOX_API_KEY");
    if (c->remote && (c->top || c->png) && !(c->vocab = cli_vocab(c))) {
        rc = GB_CLI_ERROR;
    } else if (c->remote) { /* the server's scan (POST /scan) prints what a local one does */
        gb_remote_events ev = {.log = cli_log, .token = cli_token, .result = cli_result, .ctx = c};
        if ((c->scan || c->graph) && gb_remote_scan(c->remote, c->key, sp, &ev) != GB_OK) rc = cli_run_failed(c);
        else if (!c->scan && gb_remote_run(c->remote, c->key, sp, &ev) != GB_OK) rc = cli_run_failed(c);
    } else {
        gb_session *s = gb_spec_session(sp, cli_lm_of, c, NULL, cli_result, c);
        gb_session_events ev = {.log = cli_log, .token = cli_token, .ctx = c};
        if (s) gb_session_set_events(s, &ev);
        gb_status st = !s ? gb_last_status() : c->scan || c->graph ? gb_session_scan(s) : GB_OK;
        if (st == GB_OK && !c->scan) st = gb_session_run(s);
        if (st != GB_OK) rc = cli_run_failed(c);
        gb_session_free(s);
    }
    if (!rc && c->json) printf("%s}\n", c->json_open ? "" : "{");
    if (!rc && (c->top || c->png)) rc = cli_top_png(c);
    if (!rc && c->out &&
        gb_safetensors_save(c->out, c->nout, (const char *const *)c->out_names, c->out_values, GB_DTYPE_F32, NULL) != GB_OK)
        rc = gb_cli_fail(c->cmd, "%s", gb_last_error());
    for (int i = 0; i < c->nout; i++) free(c->out_names[i]), gb_tensor_free(c->out_values[i]);
    free(c->out_names), free(c->out_values);
    for (int i = 0; i < c->ntops; i++) gb_tensor_free(c->tops[i]);
    free(c->tops), free(c->user_no);
    gb_tokenizer_free(c->vocab);
    for (int i = 0; i < c->nmodels; i++) gb_lm_free(c->lms[i]);
    cli_free(c);
    return rc;
}

static bool cli_alloc(cli_session *c, int n) {
    c->stmts = calloc((size_t)n + 2, sizeof *c->stmts);
    c->nstmts = calloc((size_t)n + 2, sizeof *c->nstmts);
    c->names = calloc((size_t)n + 2, sizeof *c->names);
    c->dirs = calloc((size_t)n + 2, sizeof *c->dirs);
    c->lms = calloc((size_t)n + 2, sizeof *c->lms);
    c->files = calloc((size_t)n + 2, sizeof *c->files);
    return c->stmts && c->nstmts && c->names && c->dirs && c->lms && c->files;
}

/* The steps (from --trace to --end, in this order: cli_step's switch and
 * the check that --json comes alone rely on it), then the run's options. */
#define SES_OPTS(X)                                                                                                  \
    X(SES_MODEL, "model", 0, STR, 0, 0, NULL, true, 0, "NAME=DIR",                                                 \
      "a model under a name the steps use (without it, --trace MODEL opens the directory MODEL)")                  \
    X(SES_SPEC, "json", 0, STR, 0, 0, NULL, false, 0, "F.json",                                                    \
      "the whole session as the server takes it (docs/remote.md), instead of steps")                               \
    X(SES_TRACE, "trace", 0, STR, 0, 0, NULL, true, 0, "MODEL", "step: a new trace of MODEL")                     \
    GB_CLI_OPT_PROMPT(X, SES_IDS, SES_TEXT, true, 0)                                                                 \
    X(SES_ITEM, "item", 0, STR, 0, 0, NULL, true, 0, "LOOP",                                                      \
      "the current trace's prompt is the item of LOOP, a loop over prompts (with model.trace(prompt))")            \
    X(SES_STMT, "exec", 'e', STR, 0, 0, NULL, true, 0, "STATEMENT",                                                \
      "a statement of the current trace, for the prompt before it (several lines: a block)")                      \
    X(SES_FILE, "file", 'f', STR, 0, 0, NULL, true, 0, "FILE",                                                     \
      "the statements of FILE as one -e, for the prompt before it ('-': standard input)")                         \
    X(SES_N, "max-new-tokens", 'n', INT, 0, 1000000, NULL, true, 0, "N",                                           \
      "the current trace generates N tokens (greedily without --temperature; 0: one forward pass)")                                       \
    X(SES_SEED, "seed", 0, INT, 0, 9007199254740992.0, NULL, true, 0, "S",                                          \
      "the current trace's seed: torch.randint's in its statements, as torch.manual_seed(S) (default 0)")          \
    X(SES_TEMPERATURE, "temperature", 0, NUM, 0, 1e30, NULL, true, 0, "T",                                         \
      "the current trace's generation samples at temperature T (0: greedy)")                                      \
    X(SES_TOP_K, "top-k", 0, INT, 0, 1000000000, NULL, true, 0, "K", "... among the K most likely (0: all)")      \
    X(SES_TOP_P, "top-p", 0, NUM, 0, 1, NULL, true, 0, "P", "... within probability mass P")                      \
    X(SES_PENALTY, "repetition-penalty", 0, NUM, 1e-30, 1e30, NULL, true, 0, "R",                                \
      "... with seen tokens' logits penalized by R (1: none)")                                       \
    X(SES_LOG, "log", 0, STR, 0, 0, NULL, true, 0, "TEXT", "step: session.log(TEXT)")                             \
    X(SES_STOP, "stop", 0, FLAG, 0, 0, NULL, true, 0, NULL, "step: the session ends here")                       \
    X(SES_ITER, "iter", 0, STR, 0, 0, NULL, true, 0, "NAME=ITEMS",                                                 \
      "step: the steps up to --end run once per item: 1,2,3, rows [1,2],[3,4], prompts 'TEXT','TEXT' or "          \
      "ids:[1,2],[3] (taken by --item), or NAME=OTHER, the rows of an enclosing loop's item or of a value an "     \
      "earlier trace bound")                                                                                       \
    X(SES_END, "end", 0, FLAG, 0, 0, NULL, true, 0, NULL, "step: the end of the innermost loop")                  \
    X(SES_OUT, "out", 'o', STR, 0, 0, NULL, false, 0, "F.safetensors", "write the saved values there, as tK.NAME") \
    X(SES_SCAN, "scan", 0, FLAG, 0, 0, NULL, false, 0, NULL, "shapes only: print each statement's shape")         \
    X(SES_GRAPH, "graph", 0, FLAG, 0, 0, NULL, false, 0, NULL, "print each trace's intervention graph first")     \
    X(SES_REMOTE, "remote", 0, STR, 0, 0, NULL, false, 0, "URL", "run the session on a glassbox server")           \
    X(SES_KEY, "key", 0, STR, 0, 0, NULL, false, 0, "KEY", "the API key for --remote (else $GLASSBOX_API_KEY)")
enum { SES_OPTS(GB_CLI_OPT_ENUM) SES_NOPTS };
static const gb_cli_opt ses_opts[] = {SES_OPTS(GB_CLI_OPT_INIT)};

/* The session option spelled as arg's option of a's command (trace
 * --remote reads its own table's options as the session's), or -1. */
static int ses_opt_of(const gb_cli_args *a, const gb_cli_arg *arg) {
    for (int i = 0; i < SES_NOPTS; i++)
        if (!strcmp(ses_opts[i].name, a->cmd->opts[arg->opt].name)) return i;
    return -1;
}

/* The option called name of a's command as given (its last), else NULL. */
static const gb_cli_arg *cli_named(const gb_cli_args *a, const char *name) {
    for (int i = 0; i < a->cmd->nopts; i++)
        if (!strcmp(a->cmd->opts[i].name, name)) return gb_cli_given(a, i) ? gb_cli_get(a, i) : NULL;
    return NULL;
}

/* A new trace of model: its statements are recorded from now on. */
static gb_status cli_new_trace(cli_session *c, gb_spec *sp, const char *model, int n) {
    cli_add_model(c, model, model); /* a directory, unless --model named it */
    c->stmts[c->ntraces] = calloc((size_t)n + 1, sizeof **c->stmts);
    c->sampling = (gb_sampling){.top_p = 1, .repetition_penalty = 1};
    c->nstmts[c->ntraces++] = 0;
    return c->stmts[c->ntraces - 1] ? gb_spec_trace(sp, model) : GB_ERR_ALLOC;
}

/* One option (id: the session's) into sp or c, in argv's order. 0, or the
 * exit code after printing why. */
static int cli_step(cli_session *c, gb_spec *sp, int id, const gb_cli_arg *arg, int nseq) {
    gb_status st = GB_OK;
    switch (id) {
    case SES_MODEL: {
        char *eq = strchr(arg->str, '=');
        if (!eq || eq == arg->str) return gb_cli_usage_error(c->cmd, "--model takes NAME=DIR, got '%s'", arg->str);
        *eq = 0; /* argv's own string: the name and the directory stay in it */
        cli_add_model(c, arg->str, eq + 1);
        break;
    }
    case SES_TRACE: st = cli_new_trace(c, sp, arg->str, nseq); break;
    case SES_IDS: st = gb_spec_ids(sp, arg->nids, arg->ids); break;
    case SES_TEXT: st = gb_spec_prompt(sp, arg->str); break;
    case SES_ITEM: st = gb_spec_item(sp, arg->str); break;
    case SES_FILE: {
        bool in = !strcmp(arg->str, "-");
        FILE *f = in ? stdin : fopen(arg->str, "r");
        size_t len;
        char *text = f ? gb_cli_slurp(f, &len) : NULL;
        if (f && !in) fclose(f);
        if (!text) return gb_cli_fail(c->cmd, "-f %s: %s", arg->str, f ? "cannot read it" : strerror(errno));
        c->files[c->nfiles++] = text;
        gb_cli_arg stmt = *arg;
        stmt.str = text;
        return cli_step(c, sp, SES_STMT, &stmt, nseq);
    }
    case SES_STMT:
        st = gb_spec_statement(sp, arg->str);
        if (st == GB_OK && c->ntraces) c->stmts[c->ntraces - 1][c->nstmts[c->ntraces - 1]++] = arg->str;
        break;
    case SES_N: st = arg->i ? gb_spec_generate(sp, (int)arg->i) : GB_OK; break;
    case SES_SEED: st = gb_spec_seed(sp, (uint64_t)arg->i); break;
    case SES_TEMPERATURE: c->sampling.temperature = (float)arg->num; st = gb_spec_sampling(sp, &c->sampling); break;
    case SES_TOP_K: c->sampling.top_k = (int)arg->i; st = gb_spec_sampling(sp, &c->sampling); break;
    case SES_TOP_P: c->sampling.top_p = (float)arg->num; st = gb_spec_sampling(sp, &c->sampling); break;
    case SES_PENALTY: c->sampling.repetition_penalty = (float)arg->num; st = gb_spec_sampling(sp, &c->sampling); break;
    case SES_LOG: st = gb_spec_log(sp, arg->str); break;
    case SES_STOP: st = gb_spec_stop(sp); break;
    case SES_ITER: c->loops++; return cli_iter(c->cmd, arg->str, sp) ? 0 : GB_CLI_ERROR;
    case SES_END: st = gb_spec_end(sp); break;
    case SES_OUT: c->out = arg->str; break;
    case SES_SCAN: c->scan = true; break;
    case SES_GRAPH: c->graph = true; break;
    case SES_REMOTE: c->remote = arg->str; break;
    case SES_KEY: c->key = arg->str; break;
    default: break;
    }
    return st == GB_OK ? 0 : gb_cli_fail(c->cmd, "%s", gb_last_error());
}

/* `trace --remote URL MODEL ...`: the trace as a one-trace session on the
 * server, printed as the local command prints it. trace's options are read
 * as the session's of the same name; the others are local only. */
int gb_cli_trace_remote(const gb_cli_args *a) {
    cli_session c = {.cmd = "trace"};
    gb_spec *sp = gb_spec_new();
    if (!sp || !cli_alloc(&c, 2 * a->nseq) || !(c.user_no = calloc((size_t)(2 * a->nseq + 2), sizeof *c.user_no))) {
        gb_spec_free(sp), cli_free(&c), free(c.user_no);
        return gb_cli_fail("trace", "out of memory");
    }
    c.model = a->npos ? a->pos[0] : gb_cli_model("trace", NULL);
    const gb_cli_arg *n = cli_named(a, "max-new-tokens"), *top = cli_named(a, "top"), *dtype = cli_named(a, "dtype");
    c.generated = n && n->i > 0;
    c.top = top ? top->i : 0;
    c.png = cli_named(a, "png") ? cli_named(a, "png")->str : NULL;
    c.title = cli_named(a, "title") ? cli_named(a, "title")->str : NULL;
    c.json = cli_named(a, "json") != NULL;
    int rc = !c.model ? GB_CLI_ERROR : cli_new_trace(&c, sp, c.model, 2 * a->nseq) != GB_OK ? gb_cli_fail("trace", "%s", gb_last_error()) : 0;
    if (!rc && dtype && dtype->i > 0)
        rc = gb_cli_usage_error("trace", "--dtype f32 converts weights where they are opened: the server's are "
                                         "(glassbox serve --dtype f32)");
    int invokes = 0, users = 0;
    for (int i = 0; !rc && i <= a->nseq; i++) {
        int id = i < a->nseq ? ses_opt_of(a, &a->seq[i]) : -1;
        if (c.top && invokes && (i == a->nseq || id == SES_IDS || id == SES_TEXT)) {
            /* the last position's logits of this invoke's rows (every step's with -n: the last one's stays) */
            char stmt[96];
            snprintf(stmt, sizeof stmt, "__top_%d = model.%soutput[0][:, -1].save()", invokes, c.generated ? "all()." : "");
            c.user_no[c.nstmts[0]] = 0;
            if (gb_spec_statement(sp, stmt) != GB_OK) rc = gb_cli_fail("trace", "%s", gb_last_error());
            else c.stmts[0][c.nstmts[0]++] = "(--top)";
        }
        if (rc || i == a->nseq) break;
        const char *name = a->cmd->opts[a->seq[i].opt].name;
        if (id == SES_IDS || id == SES_TEXT) invokes++, c.last_prompt = &a->seq[i];
        if (id == SES_STMT || id == SES_FILE) c.user_no[c.nstmts[0]] = ++users;
        if (id == SES_IDS || id == SES_TEXT || id == SES_STMT || id == SES_FILE || id == SES_N || (id >= SES_SEED && id <= SES_PENALTY) || id == SES_OUT || id == SES_REMOTE ||
            id == SES_KEY || id == SES_SCAN || id == SES_GRAPH)
            rc = cli_step(&c, sp, id, &a->seq[i], a->nseq);
        else if (strcmp(name, "top") && strcmp(name, "png") && strcmp(name, "title") && strcmp(name, "dtype") &&
                 strcmp(name, "json"))
            rc = gb_cli_usage_error("trace", "--%s is not available with --remote (docs/remote.md)", name);
    }
    if (!rc) rc = cli_run(&c, sp);
    else cli_free(&c), free(c.user_no);
    gb_spec_free(sp);
    return rc;
}

/* --json F: the session written as the server takes it. */
static gb_spec *cli_read_spec(cli_session *c, const char *path) {
    FILE *fp = fopen(path, "rb");
    size_t len = 0;
    char *text = fp ? gb_cli_slurp(fp, &len) : NULL;
    if (fp) fclose(fp);
    gb_spec *sp = text ? gb_spec_from_json(text, len) : NULL;
    free(text);
    if (!sp) {
        gb_cli_fail("session", "%s: %s", path, fp ? gb_last_error() : "cannot be read");
        return NULL;
    }
    int n;
    const char *const *models = gb_spec_models(sp, &n);
    for (int k = 0; k < n; k++) cli_add_model(c, models[k], models[k]);
    c->ntraces_given = n;
    c->loops++; /* printed as a session */
    return sp;
}

static int session_main(const gb_cli_args *a) {
    cli_session c = {.cmd = "session"};
    if (!cli_alloc(&c, a->nseq)) {
        cli_free(&c);
        return gb_cli_fail("session", "out of memory");
    }
    int rc = 0;
    for (int i = 0; !rc && i < a->nseq; i++) /* the names first: --json's models are names unless --model said otherwise */
        if (a->seq[i].opt == SES_MODEL) rc = cli_step(&c, NULL, SES_MODEL, &a->seq[i], a->nseq);
    gb_spec *sp = rc ? NULL : gb_cli_given(a, SES_SPEC) ? cli_read_spec(&c, gb_cli_str(a, SES_SPEC)) : gb_spec_new();
    if (!rc && !sp) rc = GB_CLI_ERROR;
    for (int i = 0; !rc && i < a->nseq; i++) {
        int id = a->seq[i].opt;
        if (id == SES_MODEL || id == SES_SPEC) continue;
        if (gb_cli_given(a, SES_SPEC) && id >= SES_TRACE && id <= SES_END)
            rc = gb_cli_usage_error("session", "--json holds the whole session: give no steps beside it");
        else rc = cli_step(&c, sp, id, &a->seq[i], a->nseq);
    }
    if (!rc && !c.ntraces && !c.ntraces_given) rc = gb_cli_usage_error("session", "give at least one --trace MODEL");
    c.multi = c.ntraces + c.ntraces_given > 1 || c.loops;
    if (!rc) rc = cli_run(&c, sp);
    else cli_free(&c);
    gb_spec_free(sp);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_session = {
    "session", session_main, "", 0, 0, "several traces as one unit, locally or on a server",
    "Steps run in the order given: --trace MODEL starts a trace, and the prompts (-p, --ids; several: invokes), "
    "statements (-e) and -n after it are its own, as in glassbox trace; --log, --stop and --iter NAME=ITEMS ... "
    "--end are the session's. A statement may use a name bound by an earlier trace. Saved values print under "
    "[tK] (tK[i] in a loop), or go to --out as tK.NAME. With --remote, the session runs on a glassbox server "
    "(docs/remote.md).",
    ses_opts, SES_NOPTS};
