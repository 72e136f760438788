/* nnsight's statement syntax, parsed into the intervention graph through the
 * same functions as the C API (so a statement and its C spelling build the
 * same nodes, and the graph stays plain data).
 *
 *   statement := name '=' expr | target '=' expr | expr
 *   target    := chain ending in .output/.input/.grad, [index] or a tuple pick
 *   expr      := term (('+' | '-') term)*
 *   term      := unary (('*' | '/' | '@') unary)*
 *   unary     := '-' unary | primary
 *   primary   := number | '(' expr ')' | call | chain
 *   call      := ('log' | 'print') '(' [string ','] expr ')'
 *   chain     := ['model' '.'] (module | name) step*   ('model' alone: the root;
 *                on Llama, whose root has a child "model", model.layers is
 *                that child's path and so is nnsight's model.model.layers)
 *   module    := ident ('.' ident | '[' int ']')*     a module path, h[-1] = h.-1
 *   step      := '.next()' | '.all()' | '.output' | '.input' | '.skip(' expr ')'   on a module
 *              | '[' index ']' | '.grad' | '.' method '(' args ')'   on a value
 *
 * Methods: save, clone, sum, mean, max, argmax, softmax (dim, keepdim by
 * position or name), stop, backward, requires_grad_. A statement is parsed
 * twice: once to check its syntax without building anything, then to build
 * its nodes, so a syntax error leaves the graph untouched. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "trace_impl.h"

typedef struct gb__parser {
    gb_trace *tr;
    const char *text, *p; /* the statement, the cursor */
    const char *site;
    int line;
    bool build;           /* false: check syntax only */
    int depth;            /* nesting of unary minus, parentheses and calls */
    gb_status st;
    char error[256];
} gb__parser;

/* Python's own parser stops at 200 nested parentheses; every cycle of the
 * recursive descent passes through gb__unary, which counts its nesting, so
 * no input overflows the stack. */
#define GB__STATEMENT_MAX_DEPTH 200
#define GB__STATEMENT_QUOTED 200 /* characters of a statement quoted in errors */

/* A value in dry runs: never dereferenced. */
static gb_val *const gb__dry = (gb_val *)&gb__dry;

static gb_val *gb__syntax(gb__parser *ps, const char *fmt, const char *what) {
    if (ps->st == GB_OK) {
        ps->st = GB_ERR_ARG;
        snprintf(ps->error, sizeof ps->error, fmt, what);
        size_t n = strlen(ps->error);
        snprintf(ps->error + n, sizeof ps->error - n, " at column %d", (int)(ps->p - ps->text) + 1);
    }
    return NULL;
}

static void gb__skip_space(gb__parser *ps) {
    while (isspace((unsigned char)*ps->p)) ps->p++;
}

static bool gb__accept(gb__parser *ps, char c) {
    gb__skip_space(ps);
    if (*ps->p != c) return false;
    ps->p++;
    return true;
}

static bool gb__expect(gb__parser *ps, char c) {
    if (gb__accept(ps, c)) return true;
    char want[4] = {'\'', c, '\'', 0};
    gb__syntax(ps, "expected %s", want);
    return false;
}

/* An identifier at the cursor: its length (0 if none), not consumed. */
static size_t gb__ident_len(gb__parser *ps) {
    gb__skip_space(ps);
    const char *q = ps->p;
    if (!isalpha((unsigned char)*q) && *q != '_') return 0;
    while (isalnum((unsigned char)*q) || *q == '_') q++;
    return (size_t)(q - ps->p);
}

static bool gb__is_word(const char *s, size_t n, const char *word) { return strlen(word) == n && !strncmp(s, word, n); }

/* The text between brackets, cursor after '[': copied out, nesting allowed. */
static char *gb__bracket_text(gb__parser *ps) {
    const char *start = ps->p;
    int depth = 1;
    for (; *ps->p && depth; ps->p++) depth += *ps->p == '[' ? 1 : *ps->p == ']' ? -1 : 0;
    if (depth) {
        gb__syntax(ps, "%s", "unclosed '['");
        return NULL;
    }
    size_t n = (size_t)(ps->p - start); /* includes the closing ']' */
    char *s = malloc(n + 2);
    if (!s) return (char *)gb__syntax(ps, "%s", "out of memory");
    s[0] = '[';
    memcpy(s + 1, start, n);
    s[n + 1] = 0;
    return s;
}

static gb_val *gb__expr(gb__parser *ps);

static gb_val *gb__number(gb__parser *ps) {
    char *end;
    double x = strtod(ps->p, &end);
    if (end == ps->p) return gb__syntax(ps, "%s", "expected a number");
    ps->p = end;
    return ps->build ? gb_scalar_at(ps->tr, (float)x, ps->site, ps->line) : gb__dry;
}

/* Method arguments: up to two of int dim and bool keepdim, by position or
 * as dim=/keepdim=. Returns the number given, -1 on a syntax error. */
static int gb__dim_args(gb__parser *ps, int *dim, bool *keepdim) {
    int n = 0;
    while (!gb__accept(ps, ')')) {
        if (n && !gb__expect(ps, ',')) return -1;
        if (n == 2) return gb__syntax(ps, "%s", "too many arguments (dim, keepdim)"), -1;
        size_t len = gb__ident_len(ps);
        bool is_keepdim = n == 1;
        if (len && ps->p[len + strspn(ps->p + len, " ")] == '=') {
            if (!gb__is_word(ps->p, len, "dim") && !gb__is_word(ps->p, len, "keepdim"))
                return gb__syntax(ps, "%s", "unknown argument (dim, keepdim)"), -1;
            is_keepdim = gb__is_word(ps->p, len, "keepdim");
            ps->p += len;
            gb__accept(ps, '=');
            gb__skip_space(ps);
            len = gb__ident_len(ps);
        }
        if (is_keepdim) {
            if (!gb__is_word(ps->p, len, "True") && !gb__is_word(ps->p, len, "False"))
                return gb__syntax(ps, "%s", "keepdim is True or False"), -1;
            *keepdim = ps->p[0] == 'T';
            ps->p += len;
        } else {
            char *end;
            long d = strtol(ps->p, &end, 10);
            if (end == ps->p) return gb__syntax(ps, "%s", "expected an integer dim"), -1;
            *dim = (int)d;
            ps->p = end;
        }
        n++;
    }
    return n;
}

/* A method call on v (the cursor after the method name and '('). */
static gb_val *gb__method(gb__parser *ps, gb_val *v, const char *name, size_t len) {
    static const struct {
        const char *name;
        gb_trace_op op;
        bool dim_optional; /* sum(): all elements */
    } reductions[] = {{"sum", GB_TRACE_OP_SUM, true},        {"mean", GB_TRACE_OP_MEAN, false},
                      {"max", GB_TRACE_OP_MAX, false},       {"argmax", GB_TRACE_OP_ARGMAX, false},
                      {"softmax", GB_TRACE_OP_SOFTMAX, false}};
    const char *site = ps->site;
    int line = ps->line;
    for (size_t i = 0; i < sizeof reductions / sizeof *reductions; i++) {
        if (!gb__is_word(name, len, reductions[i].name)) continue;
        int dim = 0;
        bool keepdim = false;
        int n = gb__dim_args(ps, &dim, &keepdim);
        if (n < 0) return NULL;
        if (n == 0 && !reductions[i].dim_optional) return gb__syntax(ps, "%s", "this method needs a dim");
        if (!ps->build) return gb__dry;
        if (n == 0) return gb_val_unary_at(GB_TRACE_OP_SUM_ALL, v, 0, site, line);
        if (reductions[i].op == GB_TRACE_OP_SOFTMAX) return gb_val_unary_at(GB_TRACE_OP_SOFTMAX, v, dim, site, line);
        return gb_val_reduce_at(reductions[i].op, v, dim, keepdim, site, line);
    }
    static const char *const plain[] = {"save", "clone", "stop", "backward", "requires_grad_"};
    size_t k = 0;
    while (k < sizeof plain / sizeof *plain && !gb__is_word(name, len, plain[k])) k++;
    if (k == sizeof plain / sizeof *plain) {
        ps->p = name;
        return gb__syntax(ps, "%s",
                          "unknown method (save, clone, sum, mean, max, argmax, softmax, stop, backward, requires_grad_)");
    }
    if (!gb__expect(ps, ')')) return NULL;
    if (!ps->build) return gb__dry;
    switch (k) {
    case 0: return gb_save(v);
    case 1: return gb_val_unary_at(GB_TRACE_OP_CLONE, v, 0, site, line);
    case 2: return gb_stop_at(v, site, line);
    case 3: return gb_val_backward_at(v, site, line);
    default: return gb_requires_grad_at(v, site, line);
    }
}

/* Where an assignment writes: the last step of its target chain, deferred. */
typedef struct gb__lvalue {
    const char *end; /* where the target ends: its '=' */
    gb_val *base;    /* the value the last index applies to, or the value set */
    char *index;     /* "[...]" of a trailing index, or NULL */
} gb__lvalue;

/* Steps on a value: [index], .grad, .method(...). With lv, the chain is an
 * assignment's target: a trailing index is not applied but returned there,
 * and the last step must be one that can be assigned (assignable says
 * whether v itself can: a module's .output/.input). */
static gb_val *gb__steps(gb__parser *ps, gb_val *v, bool assignable, gb__lvalue *lv) {
    for (;;) {
        gb__skip_space(ps);
        if (gb__accept(ps, '[')) {
            char *idx = gb__bracket_text(ps);
            if (!idx) return NULL;
            gb__skip_space(ps);
            if (lv && ps->p == lv->end) { /* target[...] = value */
                lv->base = v, lv->index = idx;
                return v;
            }
            gb_val *r = ps->build ? gb_val_index_at(v, idx, ps->site, ps->line) : gb__dry;
            free(idx);
            v = r;
            assignable = true; /* a tuple pick, e.g. output[0] = ... */
        } else if (gb__accept(ps, '.')) {
            size_t n = gb__ident_len(ps);
            const char *name = ps->p;
            ps->p += n;
            if (gb__is_word(name, n, "grad")) {
                v = ps->build ? gb_grad_at(v, ps->site, ps->line) : gb__dry;
                assignable = true;
            } else if (n && gb__accept(ps, '(')) {
                v = gb__method(ps, v, name, n);
                assignable = false;
            } else {
                ps->p = name;
                return gb__syntax(ps, "%s", "expected .grad or a method call on a value");
            }
        } else {
            break;
        }
        if (!v) return NULL;
    }
    if (lv && !assignable) return gb__syntax(ps, "%s", "cannot assign to this: assign to .output, .input, .grad or [index]");
    if (lv) lv->base = v, lv->index = NULL;
    return v;
}

static bool gb__has_child(const gb_module *m, const char *name) {
    for (int i = 0; i < gb_module_num_children(m); i++)
        if (!strcmp(gb_module_name(gb_module_child(m, i)), name)) return true;
    return false;
}

/* A chain: a bound name, or a module path ("model" is the root, "h[-1]"
 * indexes a ModuleList) up to .output/.input/.skip(...), then steps. */
static gb_val *gb__chain(gb__parser *ps, gb__lvalue *lv) {
    size_t len = gb__ident_len(ps);
    if (!len) return gb__syntax(ps, "%s", "expected a module path, a name or a number");
    gb_val *named = gb__is_word(ps->p, len, "model") ? NULL : gb__trace_name(ps->tr, ps->p, len);
    char path[512] = "";
    size_t plen = 0;
    if (named) {
        ps->p += len;
        return gb__steps(ps, ps->build ? named : gb__dry, false, lv);
    }
    const char *q = ps->p + len;
    bool root_event = !strncmp(q, ".output", 7) || !strncmp(q, ".input", 6) || !strncmp(q, ".skip", 5);
    if (gb__is_word(ps->p, len, "model") && !root_event && gb__has_child(gb__trace_model(ps->tr), "model")) {
        /* Llama: Hugging Face's paths start with the root's child "model"
         * (model.layers.0), which nnsight spells model.model.layers[0]:
         * both mean it. model.output is still the root's. */
        if (!strncmp(q, ".model", 6) && !isalnum((unsigned char)q[6]) && q[6] != '_') ps->p = q + 1;
    } else if (gb__is_word(ps->p, len, "model")) {
        len = 5; /* the root: path "" */
        ps->p += len;
        len = 0;
    }
    if (len >= sizeof path) return gb__syntax(ps, "%s", "module path too long");
    memcpy(path, ps->p, len);
    path[plen = len] = 0;
    ps->p += len;
    int call = 0; /* .next() per generation step */
    for (;;) {
        if (gb__accept(ps, '[')) {
            char *end;
            long i = strtol(ps->p, &end, 10);
            if (end == ps->p || (ps->p = end, !gb__expect(ps, ']')))
                return gb__syntax(ps, "%s", "expected an integer index into a module list");
            plen += (size_t)snprintf(path + plen, sizeof path - plen, "%s%ld", plen ? "." : "", i);
        } else if (gb__accept(ps, '.')) {
            size_t n = gb__ident_len(ps);
            const char *name = ps->p;
            if (!n) return gb__syntax(ps, "%s", "expected a name after '.'");
            ps->p += n;
            if (gb__is_word(name, n, "next") && gb__accept(ps, '(')) {
                if (!gb__expect(ps, ')')) return NULL;
                if (call != GB_CALL_ALL) call++;
                continue;
            }
            if (gb__is_word(name, n, "all") && gb__accept(ps, '(')) {
                if (!gb__expect(ps, ')')) return NULL;
                call = GB_CALL_ALL;
                continue;
            }
            if (gb__is_word(name, n, "output") || gb__is_word(name, n, "input")) {
                gb_trace_op op = name[0] == 'o' ? GB_TRACE_OP_OUTPUT : GB_TRACE_OP_INPUT;
                gb_val *v = ps->build ? gb_getter_at(ps->tr, path, op, call, ps->site, ps->line) : gb__dry;
                return v ? gb__steps(ps, v, true, lv) : NULL;
            }
            if (gb__is_word(name, n, "skip") && gb__accept(ps, '(')) {
                gb_val *with = gb__expr(ps);
                if (!with || !gb__expect(ps, ')')) return NULL;
                if (lv) return gb__syntax(ps, "%s", "cannot assign to this: assign to .output, .input, .grad or [index]");
                return ps->build ? gb_skip_at(ps->tr, path, with, ps->site, ps->line) : gb__dry;
            }
            plen += (size_t)snprintf(path + plen, sizeof path - plen, "%s%.*s", plen ? "." : "", (int)n, name);
        } else {
            return gb__syntax(ps, "%s", "a module is not a value: add .output or .input");
        }
        if (plen >= sizeof path) return gb__syntax(ps, "%s", "module path too long");
    }
}

/* log("label", expr) and print(...): the cursor after '('. */
static gb_val *gb__log_call(gb__parser *ps) {
    char label[128] = "";
    gb__skip_space(ps);
    if (*ps->p == '"' || *ps->p == '\'') {
        char quote = *ps->p++;
        const char *end = strchr(ps->p, quote);
        if (!end) return gb__syntax(ps, "%s", "unclosed string");
        snprintf(label, sizeof label, "%.*s", (int)(end - ps->p), ps->p);
        ps->p = end + 1;
        if (!gb__expect(ps, ',')) return NULL;
    }
    gb_val *v = gb__expr(ps);
    if (!v || !gb__expect(ps, ')')) return NULL;
    return ps->build ? gb_trace_log_at(label, v, ps->site, ps->line) : gb__dry;
}

static gb_val *gb__primary(gb__parser *ps) {
    gb__skip_space(ps);
    if (isdigit((unsigned char)*ps->p) || (*ps->p == '.' && isdigit((unsigned char)ps->p[1]))) return gb__number(ps);
    if (gb__accept(ps, '(')) {
        gb_val *v = gb__expr(ps);
        return v && gb__expect(ps, ')') ? gb__steps(ps, v, false, NULL) : NULL;
    }
    size_t len = gb__ident_len(ps);
    if ((gb__is_word(ps->p, len, "log") || gb__is_word(ps->p, len, "print")) && ps->p[len] == '(') {
        ps->p += len + 1;
        return gb__log_call(ps);
    }
    return gb__chain(ps, NULL);
}

static gb_val *gb__binary(gb__parser *ps, gb_trace_op op, gb_val *a, gb_val *b) {
    if (!a || !b) return NULL;
    return ps->build ? gb_val_binary_at(op, a, b, ps->site, ps->line) : gb__dry;
}

static gb_val *gb__unary(gb__parser *ps) {
    gb__skip_space(ps);
    if (*ps->p == '-' && (isdigit((unsigned char)ps->p[1]) || ps->p[1] == '.')) return gb__number(ps);
    if (ps->depth == GB__STATEMENT_MAX_DEPTH) {
        char limit[16];
        snprintf(limit, sizeof limit, "%d", GB__STATEMENT_MAX_DEPTH);
        return gb__syntax(ps, "nested deeper than %s levels (unary minus, parentheses, calls)", limit);
    }
    ps->depth++;
    gb_val *v;
    if (!gb__accept(ps, '-')) {
        v = gb__primary(ps);
    } else {
        v = gb__unary(ps);
        gb_val *minus = v && ps->build ? gb_scalar_at(ps->tr, -1.0f, ps->site, ps->line) : gb__dry;
        v = gb__binary(ps, GB_TRACE_OP_MUL, minus, v);
    }
    ps->depth--;
    return v;
}

static gb_val *gb__term(gb__parser *ps) {
    gb_val *v = gb__unary(ps);
    for (;;) {
        gb_trace_op op = gb__accept(ps, '*') ? GB_TRACE_OP_MUL
                         : gb__accept(ps, '/') ? GB_TRACE_OP_DIV
                         : gb__accept(ps, '@') ? GB_TRACE_OP_MATMUL
                                               : GB_TRACE_OP_COUNT;
        if (op == GB_TRACE_OP_COUNT || !v) return v;
        v = gb__binary(ps, op, v, gb__unary(ps));
    }
}

static gb_val *gb__expr(gb__parser *ps) {
    gb_val *v = gb__term(ps);
    for (;;) {
        gb_trace_op op = gb__accept(ps, '+') ? GB_TRACE_OP_ADD : gb__accept(ps, '-') ? GB_TRACE_OP_SUB : GB_TRACE_OP_COUNT;
        if (op == GB_TRACE_OP_COUNT || !v) return v;
        v = gb__binary(ps, op, v, gb__term(ps));
    }
}

/* The '=' of an assignment: at depth 0, outside strings, not part of ==,
 * <=, >= or != (none of which the syntax has, but a clear error beats a
 * strange assignment). NULL for an expression statement. */
static const char *gb__assignment(const char *s) {
    int depth = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '"' || *p == '\'') {
            const char *end = strchr(p + 1, *p);
            if (!end) return NULL;
            p = end;
        } else if (*p == '(' || *p == '[') {
            depth++;
        } else if (*p == ')' || *p == ']') {
            depth--;
        } else if (*p == '=' && depth == 0 && p[1] != '=' && (p == s || !strchr("=<>!", p[-1]))) {
            return p;
        }
    }
    return NULL;
}

/* The whole statement: name = expr, target = expr, or an expression. */
static gb_val *gb__statement(gb__parser *ps) {
    const char *eq = gb__assignment(ps->p);
    if (!eq) return gb__expr(ps);
    size_t len = gb__ident_len(ps);
    const char *after = ps->p + len;
    while (isspace((unsigned char)*after)) after++;
    if (len && after == eq) { /* name = expr: bound for later statements (shadowing a module of that name) */
        char name[64];
        if (len >= sizeof name || gb__is_word(ps->p, len, "model"))
            return gb__syntax(ps, "%s", "cannot assign to this name");
        snprintf(name, sizeof name, "%.*s", (int)len, ps->p);
        ps->p = eq + 1;
        gb_val *v = gb__expr(ps);
        if (v && ps->build && gb__trace_set_name(ps->tr, name, v) != GB_OK) return NULL;
        return v;
    }
    gb__lvalue lv = {.end = eq};
    gb_val *target = gb__chain(ps, &lv);
    gb__skip_space(ps);
    if (target && ps->p != eq) {
        free(lv.index);
        return gb__syntax(ps, "%s", "expected '=' after the assignment's target");
    }
    ps->p = eq + 1;
    gb_val *value = target ? gb__expr(ps) : NULL;
    gb_val *r = NULL;
    if (value && ps->build) r = lv.index ? gb_set_index_at(lv.base, lv.index, value, ps->site, ps->line)
                                         : gb_set_at(lv.base, value, ps->site, ps->line);
    else if (value) r = gb__dry;
    free(lv.index);
    return r;
}

static gb_val *gb__parse(gb__parser *ps) {
    ps->p = ps->text;
    gb_val *v = gb__statement(ps);
    gb__skip_space(ps);
    if (v && *ps->p) return gb__syntax(ps, "unexpected '%.1s'", ps->p);
    return v;
}

gb_status gb_trace_statement(gb_trace *tr, const char *text, const char *site, int line, gb_val **out) {
    if (out) *out = NULL;
    gb__parser ps = {.tr = tr, .text = text, .site = site ? site : "statement", .line = line};
    if (!gb__parse(&ps)) {
        if (ps.st == GB_OK) return gb__fail(GB_ERR_ARG, "%s:%d: statement: %s", ps.site, line, "syntax error");
        return gb__fail(ps.st, "%s:%d: %s in '%.*s%s'", ps.site, line, ps.error, GB__STATEMENT_QUOTED, text,
                        strlen(text) > GB__STATEMENT_QUOTED ? "..." : "");
    }
    ps.build = true;
    ps.st = GB_OK;
    gb_status before = gb__trace_def_status(tr);
    gb_val *v = gb__parse(&ps);
    gb_status after = gb__trace_def_status(tr);
    if (after != GB_OK && before == GB_OK) return gb__trace_def_error(tr); /* e.g. an unknown module path */
    if (!v) return gb_last_status() != GB_OK ? gb_last_status() : GB_ERR_ALLOC;
    if (out) *out = v;
    return GB_OK;
}
