/* `glassbox trace` and `glassbox session`: sessions written as options,
 * built into a gb_spec and run locally (gb_spec_session) or on a server
 * (gb_remote_run); both print the same lines and write the same --out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "glassbox.h"

typedef struct cli_session {
    const char *cmd;
    const char *out, *remote, *key;
    bool scan, graph, multi;
    /* --model NAME=DIR pairs and the models opened, by name */
    const char **names, **dirs;
    gb_lm **lms;
    int nmodels;
    /* each trace's statements (argv's), to print an unnamed one's value
     * under its text as the result's "statement.N" */
    const char ***stmts;
    int *nstmts, ntraces;
    /* what --out writes */
    char **out_names;
    gb_tensor **out_values;
    int nout;
} cli_session;

static int fail(const char *cmd, const char *msg) {
    fprintf(stderr, "glassbox %s: %s\n", cmd, msg);
    return 1;
}

static gb_lm *cli_lm_of(void *ctx, const char *name) {
    cli_session *c = ctx;
    for (int i = 0; i < c->nmodels; i++) {
        if (strcmp(c->names[i], name)) continue;
        if (!c->lms[i]) c->lms[i] = gb_cli_open_lm(c->dirs[i], false);
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

/* The length of the name a statement binds ("top = ..."), or of the
 * whole statement when it binds none. */
static int bound_len(const char *stmt) {
    const char *p = stmt + strspn(stmt, " "), *start = p;
    while (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (p > start && *p >= '0' && *p <= '9')) p++;
    int n = (int)(p - start);
    p += strspn(p, " ");
    return n && *p == '=' && p[1] != '=' ? n : (int)strlen(start);
}

static gb_status cli_result(void *ctx, const gb_spec_result *r) {
    cli_session *c = ctx;
    char prefix[96] = "";
    if (c->multi) {
        int k = snprintf(prefix, sizeof prefix, "t%d", r->trace);
        for (int d = 0; d < r->depth && k < (int)sizeof prefix; d++)
            k += snprintf(prefix + k, sizeof prefix - (size_t)k, "%s%lld", d ? "." : "[", (long long)r->items[d]);
        if (r->depth && k < (int)sizeof prefix) snprintf(prefix + k, sizeof prefix - (size_t)k, "]");
        if (!c->out && !r->scan) printf("[%s]\n", prefix);
    }
    if (r->scan) {
        if (c->graph) {
            char *g = gb_trace_graph(r->tr);
            printf("%s", g ? g : "");
            free(g);
        }
        for (int i = 0; c->scan && i < r->nstmts; i++) {
            int nd;
            int64_t shape[GB_MAX_DIMS];
            if (!r->vals[i] || gb_val_shape(r->vals[i], &nd, shape) != GB_OK) continue;
            printf("%.*s: [", bound_len(r->stmts[i]), r->stmts[i] + strspn(r->stmts[i], " "));
            for (int d = 0; d < nd; d++) printf("%s%lld", d ? ", " : "", (long long)shape[d]);
            printf("]\n");
        }
        gb_clear_error();
        return GB_OK;
    }
    for (int i = 0; i < r->n; i++) {
        if (!c->out) {
            char *str = gb_tensor_str(r->values[i]), *end;
            const char *label = r->names[i];
            long k = strncmp(label, "statement.", 10) ? 0 : strtol(label + 10, &end, 10);
            if (k > 0 && r->trace <= c->ntraces && k <= c->nstmts[r->trace - 1]) label = c->stmts[r->trace - 1][k - 1];
            printf("%s = %s\n", label, str ? str : "?");
            free(str);
            continue;
        }
        char **names = realloc(c->out_names, sizeof *names * (size_t)(c->nout + 1));
        gb_tensor **values = names ? realloc(c->out_values, sizeof *values * (size_t)(c->nout + 1)) : NULL;
        if (names) c->out_names = names;
        if (values) c->out_values = values;
        size_t len = strlen(prefix) + strlen(r->names[i]) + 2;
        char *name = values ? malloc(len) : NULL;
        if (!name) return GB_ERR_ALLOC;
        snprintf(name, len, "%s%s%s", prefix, *prefix ? "." : "", r->names[i]);
        c->out_names[c->nout] = name;
        c->out_values[c->nout++] = gb_tensor_ref(r->values[i]);
    }
    for (int i = 0; !c->out && i < r->ntexts; i++) { /* as the local trace prints generator.output's rows */
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

static void cli_log(void *ctx, const char *line) {
    (void)ctx;
    printf("%s\n", line);
    fflush(stdout);
}

/* "1,2,3" as ids; false with a message. */
static bool cli_ids(const char *cmd, const char *s, gb_spec *sp) {
    int64_t n = 0, cap = 16, *ids = malloc(sizeof *ids * (size_t)cap);
    bool ok = ids != NULL;
    for (const char *p = s; ok && *p;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || (*end && *end != ',')) ok = false;
        if (ok && n == cap) {
            int64_t *grown = realloc(ids, sizeof *ids * (size_t)(cap *= 2));
            if (!grown) ok = false;
            else ids = grown;
        }
        if (ok) ids[n++] = v;
        p = *end == ',' ? end + 1 : end;
    }
    char msg[512];
    if (!ok || !n) {
        snprintf(msg, sizeof msg, "--ids: '%s' is not a comma-separated list of token ids", s);
        fail(cmd, msg);
    } else if (gb_spec_ids(sp, n, ids) != GB_OK) {
        ok = false;
        fail(cmd, gb_last_error());
    }
    free(ids);
    return ok && n;
}

/* --iter NAME=ITEMS: "1,2,3" (numbers), "[0,1],[2,3]" (rows), or the name
 * of an enclosing loop (its item's rows). */
static bool cli_iter(const char *cmd, const char *arg, gb_spec *sp) {
    const char *eq = strchr(arg, '=');
    char name[64];
    if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof name)
        return fail(cmd, "--iter NAME=1,2,3 | NAME=[1,2],[3,4] | NAME=OUTER_LOOP"), false;
    snprintf(name, sizeof name, "%.*s", (int)(eq - arg), arg);
    const char *items = eq + 1;
    if ((*items >= 'a' && *items <= 'z') || (*items >= 'A' && *items <= 'Z') || *items == '_')
        return gb_spec_iter(sp, name, 0, 0, NULL, items) == GB_OK || (fail(cmd, gb_last_error()), false);
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
        fail(cmd, msg);
    }
    return ok;
}

/* Options shared by trace and session; i is advanced past what was used.
 * 1: used, 0: not ours, -1: failed (message printed). */
static int cli_common(cli_session *c, gb_spec *sp, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    bool has_next = *i + 1 < argc;
    if (!strcmp(a, "-p") && has_next) {
        if (gb_spec_prompt(sp, argv[++*i]) != GB_OK) return fail(c->cmd, gb_last_error()), -1;
    } else if (!strcmp(a, "--ids") && has_next) {
        if (!cli_ids(c->cmd, argv[++*i], sp)) return -1;
    } else if (!strcmp(a, "-e") && has_next) {
        if (gb_spec_statement(sp, argv[++*i]) != GB_OK) return fail(c->cmd, gb_last_error()), -1;
        if (c->ntraces) c->stmts[c->ntraces - 1][c->nstmts[c->ntraces - 1]++] = argv[*i];
    } else if (!strcmp(a, "-n") && has_next) {
        char *end;
        errno = 0;
        long n = strtol(argv[++*i], &end, 10);
        if (*end || errno || n < 0 || n > 1 << 20) return fail(c->cmd, "-n: expected a number of new tokens >= 0"), -1;
        if (n && gb_spec_generate(sp, (int)n) != GB_OK) return fail(c->cmd, gb_last_error()), -1;
    } else if (!strcmp(a, "--out") && has_next) {
        c->out = argv[++*i];
    } else if (!strcmp(a, "--remote") && has_next) {
        c->remote = argv[++*i];
    } else if (!strcmp(a, "--key") && has_next) {
        c->key = argv[++*i];
    } else if (!strcmp(a, "--top") || !strcmp(a, "--png") || !strcmp(a, "--title") || !strcmp(a, "--dtype")) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s is not available with --remote or in sessions yet", a);
        return fail(c->cmd, msg), -1;
    } else if (!strcmp(a, "--scan")) {
        c->scan = true;
    } else if (!strcmp(a, "--graph")) {
        c->graph = true;
    } else {
        return 0;
    }
    return 1;
}

/* A new trace: its statements are recorded from now on. */
static void cli_new_trace(cli_session *c, int argc) {
    c->stmts[c->ntraces] = calloc((size_t)argc + 1, sizeof **c->stmts);
    c->nstmts[c->ntraces++] = 0;
}

static void cli_free(cli_session *c) {
    for (int i = 0; i < c->ntraces; i++) free(c->stmts[i]);
    free(c->stmts), free(c->nstmts);
    free(c->names), free(c->dirs), free(c->lms);
}

static int cli_run(cli_session *c, gb_spec *sp) {
    int rc = 0;
    if (!c->key) c->key = getenv("GLASSBOX_API_KEY");
    if (c->remote && (c->scan || c->graph)) {
        rc = fail(c->cmd, "--scan and --graph are local only (a server scans every request before running it)");
    } else if (c->remote) {
        gb_remote_events ev = {.log = cli_log, .result = cli_result, .ctx = c};
        if (gb_remote_run(c->remote, c->key, sp, &ev) != GB_OK) rc = fail(c->cmd, gb_last_error());
    } else {
        gb_session *s = gb_spec_session(sp, cli_lm_of, c, NULL, cli_result, c);
        gb_session_events ev = {.log = cli_log, .ctx = c};
        if (s) gb_session_set_events(s, &ev);
        gb_status st = !s ? gb_last_status() : c->scan || c->graph ? gb_session_scan(s) : GB_OK;
        if (st == GB_OK && !c->scan) st = gb_session_run(s);
        if (st != GB_OK) rc = fail(c->cmd, gb_last_error());
        gb_session_free(s);
    }
    if (!rc && c->out &&
        gb_safetensors_save(c->out, c->nout, (const char *const *)c->out_names, c->out_values, GB_DTYPE_F32, NULL) != GB_OK)
        rc = fail(c->cmd, gb_last_error());
    for (int i = 0; i < c->nout; i++) free(c->out_names[i]), gb_tensor_free(c->out_values[i]);
    free(c->out_names), free(c->out_values);
    for (int i = 0; i < c->nmodels; i++) gb_lm_free(c->lms[i]);
    cli_free(c);
    return rc;
}

static bool cli_alloc(cli_session *c, int argc) {
    c->stmts = calloc((size_t)argc + 2, sizeof *c->stmts);
    c->nstmts = calloc((size_t)argc + 2, sizeof *c->nstmts);
    c->names = calloc((size_t)argc + 2, sizeof *c->names);
    c->dirs = calloc((size_t)argc + 2, sizeof *c->dirs);
    c->lms = calloc((size_t)argc + 2, sizeof *c->lms);
    return c->stmts && c->nstmts && c->names && c->dirs && c->lms;
}

/* `trace --remote URL MODEL ...`: the trace as a one-trace session on the
 * server, printed as the local command prints it. */
int gb_cli_trace_remote(int argc, char **argv) {
    cli_session c = {.cmd = "trace"};
    gb_spec *sp = gb_spec_new();
    if (!sp || !cli_alloc(&c, argc)) return fail("trace", "out of memory");
    /* MODEL first: the trace is of it; the other options in order */
    const char *model = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool takes = !strcmp(a, "-p") || !strcmp(a, "--ids") || !strcmp(a, "-e") || !strcmp(a, "-n") ||
                     !strcmp(a, "--out") || !strcmp(a, "--remote") || !strcmp(a, "--key");
        if (takes) i++;
        else if (a[0] != '-' && !model) model = a;
    }
    int rc = 0;
    if (!model && !(model = gb_cli_model("trace", NULL))) rc = 1;
    if (!rc) {
        cli_add_model(&c, model, model);
        gb_spec_trace(sp, model);
        cli_new_trace(&c, argc);
    }
    for (int i = 0; !rc && i < argc; i++) {
        int used = cli_common(&c, sp, argc, argv, &i);
        if (used < 0) rc = 1;
        else if (!used && argv[i] != model) {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown or incomplete option '%s'", argv[i]);
            rc = fail("trace", msg) + 1;
        }
    }
    if (!rc) rc = cli_run(&c, sp);
    else cli_free(&c);
    gb_spec_free(sp);
    return rc;
}

int gb_cli_session(int argc, char **argv) {
    cli_session c = {.cmd = "session"};
    gb_spec *sp = gb_spec_new();
    if (!sp || !cli_alloc(&c, argc)) return fail("session", "out of memory");
    int rc = 0, traces = 0, loops = 0;
    for (int i = 0; !rc && i < argc; i++) {
        const char *a = argv[i];
        bool has_next = i + 1 < argc;
        if (!strcmp(a, "--model") && has_next) {
            char *eq = strchr(argv[++i], '=');
            if (!eq || eq == argv[i]) rc = fail("session", "--model NAME=DIR");
            else *eq = 0, cli_add_model(&c, argv[i], eq + 1);
        } else if (!strcmp(a, "--json") && has_next) { /* a session written as the server takes it */
            FILE *fp = fopen(argv[++i], "rb");
            size_t len = 0;
            char *text = fp ? gb_cli_slurp(fp, &len) : NULL;
            if (fp) fclose(fp);
            gb_spec *read = text ? gb_spec_from_json(text, len) : NULL;
            free(text);
            if (!read) {
                char msg[1200];
                snprintf(msg, sizeof msg, "%s: %s", argv[i], fp ? gb_last_error() : "cannot be read");
                rc = fail("session", msg);
            } else {
                gb_spec_free(sp);
                sp = read;
                int n;
                const char *const *models = gb_spec_models(sp, &n);
                for (int k = 0; k < n; k++) cli_add_model(&c, models[k], models[k]);
                traces += n, loops++; /* printed as a session */
            }
        } else if (!strcmp(a, "--trace") && has_next) {
            const char *m = argv[++i];
            cli_add_model(&c, m, m); /* a directory, unless --model named it */
            traces++;
            cli_new_trace(&c, argc);
            if (gb_spec_trace(sp, m) != GB_OK) rc = fail("session", gb_last_error());
        } else if (!strcmp(a, "--log") && has_next) {
            gb_spec_log(sp, argv[++i]);
        } else if (!strcmp(a, "--stop")) {
            gb_spec_stop(sp);
        } else if (!strcmp(a, "--iter") && has_next) {
            loops++;
            if (!cli_iter("session", argv[++i], sp)) rc = 1;
        } else if (!strcmp(a, "--end")) {
            if (gb_spec_end(sp) != GB_OK) rc = fail("session", gb_last_error());
        } else {
            int used = cli_common(&c, sp, argc, argv, &i);
            if (used < 0) rc = 1;
            if (!used) {
                char msg[256];
                snprintf(msg, sizeof msg, "unknown or incomplete option '%s'", a);
                rc = fail("session", msg) + 1;
            }
        }
    }
    if (!rc && !traces) rc = fail("session", "give at least one --trace MODEL");
    c.multi = traces > 1 || loops;
    if (!rc) rc = cli_run(&c, sp);
    else cli_free(&c);
    gb_spec_free(sp);
    return rc;
}
