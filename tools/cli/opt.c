/* The option layer of cli.h: getopt_long over a command's table, strict
 * values, --help from the same table. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const kind_what[] = {
#define GB__X(kind, what) what,
    GB_CLI_KINDS(GB__X)
#undef GB__X
};

static void vline(const char *cmd, const char *hint, const char *fmt, va_list ap) {
    fprintf(stderr, "glassbox %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    if (hint) fprintf(stderr, " (see glassbox %s --help)", hint);
    fputc('\n', stderr);
}

int gb_cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vline(cmd, NULL, fmt, ap);
    va_end(ap);
    return GB_CLI_ERROR;
}

int gb_cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vline(cmd, cmd, fmt, ap);
    va_end(ap);
    return GB_CLI_USAGE;
}

/* "--name" or "-s, --name" as the user would write it. */
static const char *spelled(const gb_cli_opt *o, char *buf, size_t size) {
    if (o->short_name) snprintf(buf, size, "-%c/--%s", o->short_name, o->name);
    else snprintf(buf, size, "--%s", o->name);
    return buf;
}

/* "1,2,3" -> ids (malloc'd). */
static bool parse_ids(const char *s, int64_t **out, int64_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int64_t *ids = malloc(cap * sizeof *ids), k = 0;
    const char *p = s;
    while (ids && *p) {
        char *end;
        errno = 0;
        long long v = *p >= '0' && *p <= '9' ? strtoll(p, &end, 10) : -1;
        if (v < 0 || errno || (*end && *end != ',') || (*end == ',' && !end[1])) {
            free(ids);
            return false;
        }
        ids[k++] = v;
        p = *end ? end + 1 : end;
    }
    if (!ids || !k) {
        free(ids);
        return false;
    }
    *out = ids, *n = k;
    return true;
}

/* The argument of option `opt` into arg; false with the message in err. */
bool gb_cli_parse_value(const gb_cli_opt *o, const char *value, gb_cli_arg *arg, char *err, size_t errsize) {
    char name[64], *end = NULL;
    arg->str = value;
    if (o->kind == GB_CLI_FLAG || o->kind == GB_CLI_STR) return true;
    bool ok = false;
    errno = 0;
    /* strtoll/strtod skip leading space and take a prefix: the whole string must be the number */
    bool starts = value[0] && value[0] != ' ' && value[0] != '\t' && value[0] != '\n';
    if (o->kind == GB_CLI_INT) {
        arg->i = strtoll(value, &end, 10);
        ok = starts && end != value && !*end && !errno;
        arg->num = (double)arg->i;
    } else if (o->kind == GB_CLI_NUM) {
        arg->num = strtod(value, &end);
        ok = starts && end != value && !*end && !errno && isfinite(arg->num);
    } else if (o->kind == GB_CLI_IDS) {
        ok = parse_ids(value, &arg->ids, &arg->nids);
    } else { /* CHOICE: a word of meta, "a|b|c" */
        size_t n = strlen(value);
        arg->i = 0;
        for (const char *w = o->meta; !ok && w; w = strchr(w, '|') ? strchr(w, '|') + 1 : NULL, arg->i += !ok)
            ok = n && !strncmp(w, value, n) && (w[n] == '|' || !w[n]);
    }
    if (!ok) {
        snprintf(err, errsize, "%s: '%s' is not %s%s%s", spelled(o, name, sizeof name), value, kind_what[o->kind],
                 o->kind == GB_CLI_CHOICE ? " " : "", o->kind == GB_CLI_CHOICE ? o->meta : "");
        return false;
    }
    if ((o->kind == GB_CLI_INT || o->kind == GB_CLI_NUM) && (arg->num < o->min || arg->num > o->max)) {
        snprintf(err, errsize, "%s: %s is out of range (%.17g to %.17g)", spelled(o, name, sizeof name), value, o->min,
                 o->max);
        return false;
    }
    return true;
}

void gb_cli_args_free(gb_cli_args *a) {
    for (int i = 0; a->seq && i < a->nseq; i++) free(a->seq[i].ids);
    for (int i = 0; a->dflts && a->cmd && i < a->cmd->nopts; i++) free(a->dflts[i].ids);
    free(a->seq), free(a->last), free(a->dflts), free(a->count), free(a->pos);
    memset(a, 0, sizeof *a);
}

int gb_cli_parse(const gb_cli_cmd *cmd, int argc, char **argv, gb_cli_args *a) {
    int n = cmd->nopts, rc = GB_CLI_OK;
    char err[512], name[64];
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    struct option *longopts = calloc((size_t)n + 2, sizeof *longopts);
    char *shorts = malloc(3 * (size_t)n + 4);
    a->seq = calloc((size_t)argc + 1, sizeof *a->seq);
    a->last = calloc((size_t)n + 1, sizeof *a->last);
    a->dflts = calloc((size_t)n + 1, sizeof *a->dflts);
    a->count = calloc((size_t)n + 1, sizeof *a->count);
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    if (!longopts || !shorts || !a->seq || !a->last || !a->dflts || !a->count || !a->pos) {
        rc = gb_cli_fail(cmd->name, "out of memory");
        goto done;
    }
    /* ':' first: a missing argument is reported as ':', not '?' */
    char *s = shorts;
    *s++ = ':', *s++ = 'h';
    for (int i = 0; i < n; i++) {
        const gb_cli_opt *o = &cmd->opts[i];
        longopts[i] = (struct option){o->name, o->kind == GB_CLI_FLAG ? no_argument : required_argument, NULL, 256 + i};
        if (o->short_name) {
            *s++ = o->short_name;
            if (o->kind != GB_CLI_FLAG) *s++ = ':';
        }
        /* defaults go through the same parser: a table with a bad default fails every run, in the tests */
        if (o->dflt && !gb_cli_parse_value(o, o->dflt, &a->dflts[i], err, sizeof err)) {
            rc = gb_cli_fail(cmd->name, "bad default of %s", err);
            goto done;
        }
        a->dflts[i].opt = i;
        if (o->dflt) a->last[i] = &a->dflts[i];
    }
    *s = 0;
    longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
    optind = 0; /* glibc: reinitialise (tests and fuzzers parse more than once) */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
        if (c == 'h') {
            gb_cli_help(stdout, cmd);
            rc = -1;
            goto done;
        }
        if (c == '?' || c == ':') {
            if (optopt >= 256) snprintf(name, sizeof name, "--%s", cmd->opts[optopt - 256].name);
            else if (optopt) snprintf(name, sizeof name, "-%c", optopt);
            else snprintf(name, sizeof name, "%s", argv[optind - 1]);
            if (c == ':') rc = gb_cli_usage_error(cmd->name, "option '%s' needs an argument", name);
            else if (optopt >= 256 || optopt == 'h') rc = gb_cli_usage_error(cmd->name, "option '%s' takes no argument", name);
            else rc = gb_cli_usage_error(cmd->name, "unknown option '%s'", name);
            goto done;
        }
        int i = c >= 256 ? c - 256 : -1;
        for (int k = 0; i < 0 && k < n; k++)
            if (cmd->opts[k].short_name == c) i = k;
        const gb_cli_opt *o = &cmd->opts[i];
        if (a->count[i] && !o->repeat) {
            rc = gb_cli_usage_error(cmd->name, "%s is given twice", spelled(o, name, sizeof name));
            goto done;
        }
        for (int k = 0; o->group && k < n; k++)
            if (k != i && cmd->opts[k].group == o->group && a->count[k]) {
                char other[64];
                rc = gb_cli_usage_error(cmd->name, "%s and %s exclude each other", spelled(&cmd->opts[k], other, sizeof other),
                                        spelled(o, name, sizeof name));
                goto done;
            }
        gb_cli_arg *arg = &a->seq[a->nseq++];
        arg->opt = i;
        if (!gb_cli_parse_value(o, o->kind == GB_CLI_FLAG ? NULL : optarg, arg, err, sizeof err)) {
            rc = gb_cli_usage_error(cmd->name, "%s", err);
            goto done;
        }
        a->count[i]++;
    }
    for (int i = optind; i < argc; i++) a->pos[a->npos++] = argv[i];
    a->argc = argc - 1, a->argv = argv + 1;
    for (int i = 0; i < a->nseq; i++) a->last[a->seq[i].opt] = &a->seq[i];
    if (a->npos < cmd->min_args || a->npos > cmd->max_args) {
        if (a->npos > cmd->max_args) rc = gb_cli_usage_error(cmd->name, "unexpected argument '%s'", a->pos[cmd->max_args]);
        else rc = gb_cli_usage_error(cmd->name, "expected %s", cmd->args);
    }
done:
    free(longopts), free(shorts);
    if (rc) gb_cli_args_free(a);
    return rc;
}

bool gb_cli_given(const gb_cli_args *a, int opt) { return a->count[opt] > 0; }
const gb_cli_arg *gb_cli_get(const gb_cli_args *a, int opt) { return a->last[opt]; }
const char *gb_cli_str(const gb_cli_args *a, int opt) { return a->last[opt] ? a->last[opt]->str : NULL; }
long long gb_cli_int(const gb_cli_args *a, int opt) { return a->last[opt] ? a->last[opt]->i : 0; }
double gb_cli_num(const gb_cli_args *a, int opt) { return a->last[opt] ? a->last[opt]->num : 0; }

/* Help text wrapped at 100 columns after a left column of `indent`. */
static void wrap(FILE *f, const char *text, int indent, int col) {
    int width = 100;
    for (const char *p = text; *p;) {
        const char *end = p, *brk = NULL;
        while (*end && *end != '\n' && (end - p < width - col || !brk)) {
            if (*end == ' ') brk = end;
            end++;
        }
        if (*end && *end != '\n' && brk) end = brk;
        fprintf(f, "%.*s\n", (int)(end - p), p);
        p = *end ? end + 1 : end;
        if (*p) fprintf(f, "%*s", indent, "");
        col = indent;
    }
}

void gb_cli_help(FILE *f, const gb_cli_cmd *cmd) {
    fprintf(f, "usage: glassbox %s%s%s [options]\n", cmd->name, *cmd->args ? " " : "", cmd->args);
    wrap(f, cmd->summary, 0, 0);
    if (cmd->description) {
        fputc('\n', f);
        wrap(f, cmd->description, 0, 0);
    }
    fprintf(f, "\noptions:\n");
    for (int i = 0; i <= cmd->nopts; i++) {
        static const gb_cli_opt help = {"help", 'h', GB_CLI_FLAG, 0, 0, NULL, false, 0, NULL, "this text"};
        const gb_cli_opt *o = i < cmd->nopts ? &cmd->opts[i] : &help;
        char left[96], extra[160] = "";
        int k = o->short_name ? snprintf(left, sizeof left, "  -%c, --%s", o->short_name, o->name)
                              : snprintf(left, sizeof left, "      --%s", o->name);
        if (o->meta) snprintf(left + k, sizeof left - (size_t)k, " %s", o->meta);
        if (o->kind == GB_CLI_INT || o->kind == GB_CLI_NUM) {
            int e = snprintf(extra, sizeof extra, " (%.17g to %.17g", o->min, o->max);
            snprintf(extra + e, sizeof extra - (size_t)e, "%s%s)", o->dflt ? ", default " : "", o->dflt ? o->dflt : "");
        } else if (o->dflt) {
            snprintf(extra, sizeof extra, " (default %s)", o->dflt);
        }
        if (o->repeat) strncat(extra, " (repeatable)", sizeof extra - strlen(extra) - 1);
        char text[600];
        snprintf(text, sizeof text, "%s%s", o->help, extra);
        int col = fprintf(f, "%-28s", left);
        if (col > 28) fprintf(f, "\n%28s", ""), col = 28;
        wrap(f, text, 28, col);
    }
}
