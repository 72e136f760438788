/* nnsight's statement syntax, parsed into the intervention graph through the
 * same functions as the C API (so a statement and its C spelling build the
 * same nodes, and the graph stays plain data).
 *
 *   text      := line ('\n' line)*    blank lines and # comments dropped
 *   line      := statement | header ':' (statement | NEWLINE indented lines)
 *   header    := 'if' expr | 'elif' expr | 'else' | 'with tracer.cond(' expr ')'
 *   statement := name '=' expr | target '=' expr | expr
 *   target    := chain ending in .output/.input/.grad, [index] or a tuple pick
 *   expr      := sum [('==' | '!=' | '<=' | '>=' | '<' | '>') sum]
 *   sum       := term (('+' | '-') term)*
 *   term      := unary (('*' | '/' | '//' | '%' | '@') unary)*
 *   unary     := '-' unary | primary
 *   primary   := number | '(' expr ')' step* | call | function step* | chain
 *   call      := ('log' | 'print' | 'tracer.log') '(' (string | expr) (',' (string | expr))* ')'
 *   function  := ('torch.' | 'F.' | 'torch.nn.functional.') ident '(' args ')'
 *   args      := [arg (',' arg)*]   arg := [ident '='] (True | False | None |
 *                number | '(' int, ... ')' | '[' expr, ... ']' | expr)
 *   chain     := ['model' '.'] (module | name) step*   ('model' alone: the root;
 *                on Llama, whose root has a child "model", model.layers is
 *                that child's path and so is nnsight's model.model.layers)
 *   module    := ident ('.' ident | '[' int ']')*     a module path, h[-1] = h.-1
 *   step      := '.next()' | '.all()' | '.output' | '.input' | '.skip(' expr ')'
 *              | '.' point | '(' args ')'                  on a module (a call: no events)
 *              | '[' index ']' | '.grad' | '.values' | '.indices' | '.' method '(' args ')'   on a value
 *
 * Methods: save, clone, sum, mean, max, argmax, softmax, the functions of
 * GB_TRACE_FN_LIST (PyTorch's argument names), stop, backward,
 * requires_grad_. A text is parsed
 * twice: once to check its syntax without building anything (names its
 * earlier lines bind are remembered), then to build its nodes, so a syntax
 * error on any line leaves the graph untouched. A block's lines are split
 * first (gb__tr_split), each parsed on its own by the expression parser;
 * gb__tr_lines_block walks their indentation, Python's way. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <stb/stb_ds.h>
#include <string.h>

#include "trace_impl.h"

typedef struct gb__tr_parser {
    gb_trace *tr;
    const char *text, *p; /* the line being parsed (without its indentation), the cursor */
    int col0;             /* columns of indentation before text, for errors */
    const char *site;
    int line;             /* the current line's number, for nodes and errors */
    const char *quote;    /* the current line as written, for errors */
    size_t quote_len;
    bool build;           /* false: check syntax only */
    int depth;            /* nesting of unary minus, parentheses and calls */
    int open_ifs;         /* gb_if calls not yet ended */
    char (*dry_names)[64]; /* stb_ds: names bound so far while checking syntax */
    gb_val *last;         /* the last statement's value */
    gb_status st;
    char error[600];
} gb__tr_parser;

/* Python's own parser stops at 200 nested parentheses; every cycle of the
 * recursive descent passes through gb__tr_unary, which counts its nesting, so
 * no input overflows the stack. */
#define GB__STATEMENT_MAX_DEPTH 200
#define GB__STATEMENT_QUOTED 200 /* characters of a statement quoted in errors */

/* A value in dry runs: never dereferenced. */
static gb_val *const gb__tr_dry = (gb_val *)&gb__tr_dry;

static gb_val *gb__tr_syntax(gb__tr_parser *ps, const char *fmt, const char *what) {
    if (ps->st == GB_OK) {
        ps->st = GB_ERR_ARG;
        snprintf(ps->error, sizeof ps->error, fmt, what);
        size_t n = strlen(ps->error);
        snprintf(ps->error + n, sizeof ps->error - n, " at column %d", ps->col0 + (int)(ps->p - ps->text) + 1);
    }
    return NULL;
}

/* Nodes built from here on point at column `at` of the line in run errors. */
static void gb__tr_col(gb__tr_parser *ps, const char *at) {
    if (ps->build) gb__tr_trace_set_column(ps->tr, ps->col0 + (int)(at - ps->text) + 1);
}

static void gb__tr_skip_space(gb__tr_parser *ps) {
    while (isspace((unsigned char)*ps->p)) ps->p++;
}

static bool gb__tr_accept(gb__tr_parser *ps, char c) {
    gb__tr_skip_space(ps);
    if (*ps->p != c) return false;
    ps->p++;
    return true;
}

static bool gb__tr_expect(gb__tr_parser *ps, char c) {
    if (gb__tr_accept(ps, c)) return true;
    char want[4] = {'\'', c, '\'', 0};
    gb__tr_syntax(ps, "expected %s", want);
    return false;
}

/* An identifier at the cursor: its length (0 if none), not consumed. */
static size_t gb__tr_ident_len(gb__tr_parser *ps) {
    gb__tr_skip_space(ps);
    const char *q = ps->p;
    if (!isalpha((unsigned char)*q) && *q != '_') return 0;
    while (isalnum((unsigned char)*q) || *q == '_') q++;
    return (size_t)(q - ps->p);
}

static bool gb__tr_is_word(const char *s, size_t n, const char *word) { return strlen(word) == n && !strncmp(s, word, n); }

/* The value a name is bound to: by the trace, or, while a block is only
 * checked for syntax, by one of its earlier lines (a dry value). */
static gb_val *gb__tr_name(gb__tr_parser *ps, const char *name, size_t len) {
    gb_val *v = gb__tr_trace_name(ps->tr, name, len);
    for (ptrdiff_t i = 0; !v && !ps->build && i < arrlen(ps->dry_names); i++)
        if (gb__tr_is_word(name, len, ps->dry_names[i])) v = gb__tr_dry;
    return v;
}

/* The text between brackets, cursor after '[': copied out, nesting allowed. */
static char *gb__tr_bracket_text(gb__tr_parser *ps) {
    const char *start = ps->p;
    int depth = 1;
    for (; *ps->p && depth; ps->p++) depth += *ps->p == '[' ? 1 : *ps->p == ']' ? -1 : 0;
    if (depth) {
        gb__tr_syntax(ps, "%s", "unclosed '['");
        return NULL;
    }
    size_t n = (size_t)(ps->p - start); /* includes the closing ']' */
    char *s = malloc(n + 2);
    if (!s) return (char *)gb__tr_syntax(ps, "%s", "out of memory");
    s[0] = '[';
    memcpy(s + 1, start, n);
    s[n + 1] = 0;
    return s;
}

static gb_val *gb__tr_expr(gb__tr_parser *ps);

/* A literal number: integers (no '.', no exponent) are int64 constants as
 * Python's ints are, so argmax - 432 stays int64; others float32. */
static gb_val *gb__tr_number(gb__tr_parser *ps) {
    char *end;
    double x = strtod(ps->p, &end);
    if (end == ps->p) return gb__tr_syntax(ps, "%s", "expected a number");
    bool integral = !memchr(ps->p, '.', (size_t)(end - ps->p)) && !memchr(ps->p, 'e', (size_t)(end - ps->p)) &&
                    !memchr(ps->p, 'E', (size_t)(end - ps->p)) && fabs(x) < 9.2e18;
    int64_t ix = integral ? strtoll(ps->p, NULL, 10) : 0; /* exact past 2^53, where the double is not */
    gb__tr_col(ps, ps->p);
    ps->p = end;
    if (!ps->build) return gb__tr_dry;
    gb_val *v = integral ? gb_scalar_i64_at(ps->tr, ix, ps->site, ps->line) : gb_scalar_at(ps->tr, (float)x, ps->site, ps->line);
    if (v) v->python = true;
    return v;
}

/* ---- call arguments ------------------------------------------------------- */

/* One argument of a method or function call, as written: a keyword, and a
 * literal (True/False/None, a number, a tuple of ints), a list of values
 * [a, b], or an expression. */
typedef struct gb__tr_arg {
    const char *kw; /* keyword=, or NULL */
    size_t kwlen;
    enum { GB__ARG_VALUE, GB__ARG_NUMBER, GB__ARG_INTS, GB__ARG_BOOL, GB__ARG_NONE, GB__ARG_LIST } kind;
    gb_val *v;              /* VALUE */
    double x;               /* NUMBER */
    int64_t ix;             /* NUMBER, integral: exactly */
    const char *at;         /* NUMBER: its text, made a constant if used as a value */
    bool integral;          /* NUMBER */
    int n;                  /* INTS, LIST */
    int64_t ints[GB_MAX_DIMS];
    gb_val *list[GB__MAX_ARGS];
} gb__tr_arg;

#define GB__MAX_CALL_ARGS 8
typedef struct gb__tr_args {
    int n;
    gb__tr_arg a[GB__MAX_CALL_ARGS];
} gb__tr_args;

/* "( int, int, ... )" at the cursor: a tuple of ints, consumed; else the
 * cursor is left alone (a parenthesised expression). */
static bool gb__tr_int_tuple(gb__tr_parser *ps, gb__tr_arg *a) {
    const char *q = ps->p + 1;
    int n = 0;
    for (;;) {
        while (isspace((unsigned char)*q)) q++;
        if (*q == ')' && n > 0) break;
        char *end;
        long long x = strtoll(q, &end, 10);
        if (end == q || n == GB_MAX_DIMS) return false;
        a->ints[n++] = x;
        q = end;
        while (isspace((unsigned char)*q)) q++;
        if (*q == ',') q++;
        else if (*q != ')') return false;
    }
    a->kind = GB__ARG_INTS;
    a->n = n;
    ps->p = q + 1;
    return true;
}

/* A literal number ending the argument (followed by ',' or ')'), consumed. */
static bool gb__tr_literal_number(gb__tr_parser *ps, gb__tr_arg *a) {
    char *end;
    double x = strtod(ps->p, &end);
    if (end == ps->p || isalpha((unsigned char)*ps->p)) return false; /* "inf", "nan": names here */
    const char *q = end;
    while (isspace((unsigned char)*q)) q++;
    if (*q != ',' && *q != ')') return false;
    a->kind = GB__ARG_NUMBER;
    a->x = x;
    a->at = ps->p;
    a->integral = x == floor(x) && !memchr(ps->p, '.', (size_t)(end - ps->p)) && !memchr(ps->p, 'e', (size_t)(end - ps->p));
    a->ix = a->integral && fabs(x) < 9.2e18 ? strtoll(ps->p, NULL, 10) : 0;
    ps->p = end;
    return true;
}

/* Spellings of the numbers a norm's order takes beyond literals, ending
 * the argument: infinities, and 'fro' (the 2-norm of a vector). */
static bool gb__tr_special_number(gb__tr_parser *ps, gb__tr_arg *a) {
    static const struct {
        const char *text;
        double x;
    } specials[] = {{"float('inf')", INFINITY}, {"float(\"inf\")", INFINITY}, {"float('-inf')", -INFINITY},
                    {"float(\"-inf\")", -INFINITY}, {"torch.inf", INFINITY}, {"math.inf", INFINITY},
                    {"-torch.inf", -INFINITY}, {"-math.inf", -INFINITY}, {"'fro'", 2}, {"\"fro\"", 2}};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) {
        size_t n = strlen(specials[i].text);
        if (strncmp(ps->p, specials[i].text, n)) continue;
        const char *q = ps->p + n;
        while (isspace((unsigned char)*q)) q++;
        if (*q != ',' && *q != ')') continue;
        a->kind = GB__ARG_NUMBER;
        a->x = specials[i].x;
        a->at = ps->p;
        ps->p += n;
        return true;
    }
    return false;
}

/* Arguments up to the closing ')' (the cursor after '('). */
static bool gb__tr_parse_args(gb__tr_parser *ps, gb__tr_args *args) {
    args->n = 0;
    while (!gb__tr_accept(ps, ')')) {
        if (args->n && !gb__tr_expect(ps, ',')) return false;
        if (gb__tr_accept(ps, ')')) break; /* a trailing comma */
        if (args->n == GB__MAX_CALL_ARGS) return gb__tr_syntax(ps, "%s", "too many arguments"), false;
        gb__tr_arg *a = &args->a[args->n++];
        memset(a, 0, sizeof *a);
        size_t len = gb__tr_ident_len(ps);
        const char *after = ps->p + len + strspn(ps->p + len, " \t");
        if (len && *after == '=' && after[1] != '=') {
            a->kw = ps->p, a->kwlen = len;
            ps->p = after + 1;
            gb__tr_skip_space(ps);
            len = gb__tr_ident_len(ps);
        }
        if (gb__tr_is_word(ps->p, len, "True") || gb__tr_is_word(ps->p, len, "False")) {
            a->kind = GB__ARG_BOOL;
            a->x = ps->p[0] == 'T';
            ps->p += len;
        } else if (gb__tr_is_word(ps->p, len, "None")) {
            a->kind = GB__ARG_NONE;
            ps->p += len;
        } else if (*ps->p == '[') {
            ps->p++;
            a->kind = GB__ARG_LIST;
            while (!gb__tr_accept(ps, ']')) {
                if (a->n && !gb__tr_expect(ps, ',')) return false;
                if (gb__tr_accept(ps, ']')) break;
                if (a->n == GB__MAX_ARGS) return gb__tr_syntax(ps, "%s", "too many values in a list (8 at most)"), false;
                if (!(a->list[a->n++] = gb__tr_expr(ps))) return false;
            }
        } else if (!(*ps->p == '(' && gb__tr_int_tuple(ps, a)) && !gb__tr_literal_number(ps, a) &&
                   !gb__tr_special_number(ps, a)) {
            a->kind = GB__ARG_VALUE;
            if (!(a->v = gb__tr_expr(ps))) return false;
        }
    }
    return true;
}

/* The argument at position pos or named kw; NULL when absent. */
static gb__tr_arg *gb__tr_arg_get(gb__tr_args *args, int pos, const char *kw) {
    for (int i = 0; i < args->n; i++) {
        gb__tr_arg *a = &args->a[i];
        if (a->kw ? gb__tr_is_word(a->kw, a->kwlen, kw) : i == pos) return a;
    }
    return NULL;
}

/* Only the arguments known to a call: kws lists the names allowed, in
 * positional order; also checks no positional argument follows a keyword. */
static bool gb__tr_args_fit(gb__tr_parser *ps, gb__tr_args *args, const char *const *kws, int nkws, const char *what) {
    int npos = 0;
    for (int i = 0; i < args->n; i++) {
        gb__tr_arg *a = &args->a[i];
        if (!a->kw) {
            if (npos < i) return gb__tr_syntax(ps, "%s", "positional argument follows keyword argument"), false;
            if (i >= nkws) return gb__tr_syntax(ps, "too many arguments (%s)", what), false;
            npos++;
            continue;
        }
        int k = 0;
        while (k < nkws && !gb__tr_is_word(a->kw, a->kwlen, kws[k])) k++;
        if (k == nkws) return gb__tr_syntax(ps, "unknown argument (%s)", what), false;
        if (k < npos) return gb__tr_syntax(ps, "%s", "multiple values for an argument"), false;
    }
    return true;
}

/* An integer argument (default def when absent). */
static bool gb__tr_int_arg(gb__tr_parser *ps, gb__tr_args *args, int pos, const char *kw, int64_t def, int64_t *out) {
    gb__tr_arg *a = gb__tr_arg_get(args, pos, kw);
    *out = def;
    if (!a) return true;
    if (a->kind != GB__ARG_NUMBER || !a->integral) return gb__tr_syntax(ps, "%s must be an integer", kw), false;
    *out = a->ix;
    return true;
}

/* An argument as a value: literal numbers become constants. */
static gb_val *gb__tr_arg_value(gb__tr_parser *ps, gb__tr_arg *a) {
    if (!a) return gb__tr_syntax(ps, "%s", "missing a value argument");
    if (a->kind == GB__ARG_VALUE) return a->v;
    if (a->kind != GB__ARG_NUMBER) return gb__tr_syntax(ps, "%s", "expected a value or a number");
    if (!ps->build) return gb__tr_dry;
    return a->integral ? gb_scalar_i64_at(ps->tr, a->ix, ps->site, ps->line)
                       : gb_scalar_at(ps->tr, (float)a->x, ps->site, ps->line);
}

/* dims for sum/mean/norm/squeeze: an int, a tuple of ints, or absent/None
 * (n = 0). Returns false on a syntax error. */
static bool gb__tr_dims_arg(gb__tr_parser *ps, gb__tr_args *args, int pos, gb_fn_params *p, bool *is_tuple) {
    gb__tr_arg *a = gb__tr_arg_get(args, pos, "dim");
    p->n = 0;
    *is_tuple = false;
    if (!a || a->kind == GB__ARG_NONE) return true;
    if (a->kind == GB__ARG_INTS) {
        p->n = a->n;
        memcpy(p->i, a->ints, sizeof(int64_t) * (size_t)a->n);
        *is_tuple = true;
        return true;
    }
    if (a->kind != GB__ARG_NUMBER || !a->integral) return gb__tr_syntax(ps, "%s", "dim must be an integer or a tuple of integers"), false;
    p->n = 1;
    p->i[0] = a->ix;
    return true;
}

static bool gb__tr_keepdim_arg(gb__tr_parser *ps, gb__tr_args *args, int pos, bool *keepdim) {
    gb__tr_arg *a = gb__tr_arg_get(args, pos, "keepdim");
    *keepdim = false;
    if (!a) return true;
    if (a->kind != GB__ARG_BOOL) return gb__tr_syntax(ps, "%s", "keepdim is True or False"), false;
    *keepdim = a->x != 0;
    return true;
}

/* Ints given one by one (x.reshape(2, -1)) or as one tuple (x.reshape((2, -1))). */
static bool gb__tr_shape_args(gb__tr_parser *ps, gb__tr_args *args, gb_fn_params *p) {
    p->n = 0;
    if (args->n == 1 && args->a[0].kind == GB__ARG_INTS && !args->a[0].kw) {
        p->n = args->a[0].n;
        memcpy(p->i, args->a[0].ints, sizeof(int64_t) * (size_t)p->n);
        return true;
    }
    for (int i = 0; i < args->n; i++) {
        gb__tr_arg *a = &args->a[i];
        if (a->kw || a->kind != GB__ARG_NUMBER || !a->integral || i == GB_MAX_DIMS)
            return gb__tr_syntax(ps, "%s", "expected integers, or one tuple of integers"), false;
        p->i[p->n++] = a->ix;
    }
    return true;
}

/* ---- methods and functions ------------------------------------------------ */

#define GB__METHODS                                                                                            \
    "save, clone, sum, mean, max, argmax, softmax, log_softmax, exp, log, abs, sqrt, pow, norm, topk, reshape, " \
    "view, transpose, permute, unsqueeze, squeeze, eq, ne, lt, le, gt, ge, float, long, item, stop, backward, "  \
    "requires_grad_"
/* What a statement may call: the rest is refused as outside nnsight's
 * remote function whitelist. */
#define GB__WHITELIST "log, print, modules, torch./F. functions and methods on values"

/* self.name(args): the methods of a value, and torch.name(self, args). */
static gb_val *gb__tr_method_call(gb__tr_parser *ps, gb_val *v, const char *name, size_t len, gb__tr_args *args) {
    const char *site = ps->site;
    int line = ps->line;
    gb_fn_params p = {0};
    bool tuple = false, keepdim = false;
    int64_t dim = 0;
    gb_trace_fn fn = gb_trace_fn_find(name, len);
    static const struct {
        const char *name;
        gb_trace_op op;
    } reductions[] = {{"sum", GB_TRACE_OP_SUM}, {"mean", GB_TRACE_OP_MEAN}, {"max", GB_TRACE_OP_MAX},
                      {"argmax", GB_TRACE_OP_ARGMAX}};
    for (size_t i = 0; i < sizeof reductions / sizeof *reductions; i++) {
        if (!gb__tr_is_word(name, len, reductions[i].name)) continue;
        if (!gb__tr_args_fit(ps, args, (const char *[]){"dim", "keepdim"}, 2, "dim, keepdim") ||
            !gb__tr_dims_arg(ps, args, 0, &p, &tuple) || !gb__tr_keepdim_arg(ps, args, 1, &keepdim))
            return NULL;
        bool several = tuple || p.n == 0; /* sum(), mean(), sum((0, 1)) */
        if (several && reductions[i].op != GB_TRACE_OP_SUM && reductions[i].op != GB_TRACE_OP_MEAN)
            return gb__tr_syntax(ps, "%s", "this method needs one dim");
        if (!ps->build) return gb__tr_dry;
        if (p.n == 0 && !keepdim && reductions[i].op == GB_TRACE_OP_SUM) return gb_val_unary_at(GB_TRACE_OP_SUM_ALL, v, 0, site, line);
        p.keepdim = keepdim;
        if (several) return gb_val_fn_at(fn, 1, &v, &p, site, line);
        return gb_val_reduce_at(reductions[i].op, v, (int)p.i[0], keepdim, site, line);
    }
    if (gb__tr_is_word(name, len, "softmax") || gb__tr_is_word(name, len, "log_softmax")) {
        if (!gb__tr_args_fit(ps, args, (const char *[]){"dim"}, 1, "dim") || !gb__tr_int_arg(ps, args, 0, "dim", INT64_MIN, &dim))
            return NULL;
        if (dim == INT64_MIN) return gb__tr_syntax(ps, "%s", "this method needs a dim");
        if (!ps->build) return gb__tr_dry;
        if (name[0] == 's') return gb_val_unary_at(GB_TRACE_OP_SOFTMAX, v, (int)dim, site, line);
        p = (gb_fn_params){1, {dim}, false, 0};
        return gb_val_fn_at(fn, 1, &v, &p, site, line);
    }
    static const char *const plain[] = {"save", "clone", "stop", "backward", "requires_grad_"};
    for (size_t k = 0; k < sizeof plain / sizeof *plain; k++) {
        if (!gb__tr_is_word(name, len, plain[k])) continue;
        if (args->n) return gb__tr_syntax(ps, "%s", "this method takes no arguments");
        if (!ps->build) return gb__tr_dry;
        switch (k) {
        case 0: return gb_save(v);
        case 1: return gb_val_unary_at(GB_TRACE_OP_CLONE, v, 0, site, line);
        case 2: return gb_stop_at(v, site, line);
        case 3: return gb_val_backward_at(v, site, line);
        default: return gb_requires_grad_at(v, site, line);
        }
    }
    gb_val *vals[3] = {v, NULL, NULL};
    int nvals = 1;
    switch (fn) {
    case GB_TRACE_FN_EXP:
    case GB_TRACE_FN_LOG:
    case GB_TRACE_FN_ABS:
    case GB_TRACE_FN_SQRT:
    case GB_TRACE_FN_FLOAT:
    case GB_TRACE_FN_LONG:
    case GB_TRACE_FN_ITEM:
        if (args->n) return gb__tr_syntax(ps, "%s", "this method takes no arguments");
        break;
    case GB_TRACE_FN_POW:
    case GB_TRACE_FN_EQ:
    case GB_TRACE_FN_NE:
    case GB_TRACE_FN_LT:
    case GB_TRACE_FN_LE:
    case GB_TRACE_FN_GT:
    case GB_TRACE_FN_GE:
        if (!gb__tr_args_fit(ps, args, (const char *[]){fn == GB_TRACE_FN_POW ? "exponent" : "other"}, 1, "one value") ||
            !(vals[nvals++] = gb__tr_arg_value(ps, args->n ? &args->a[0] : NULL)))
            return NULL;
        break;
    case GB_TRACE_FN_NORM: {
        gb__tr_arg *pa = gb__tr_arg_get(args, 0, "p");
        if (!gb__tr_args_fit(ps, args, (const char *[]){"p", "dim", "keepdim"}, 3, "p, dim, keepdim") ||
            !gb__tr_dims_arg(ps, args, 1, &p, &tuple) || !gb__tr_keepdim_arg(ps, args, 2, &keepdim))
            return NULL;
        if (pa && pa->kind != GB__ARG_NONE && pa->kind != GB__ARG_NUMBER)
            return gb__tr_syntax(ps, "%s", "p is a number, float('inf'), float('-inf') or 'fro'");
        p.keepdim = keepdim;
        p.x = pa && pa->kind == GB__ARG_NUMBER ? pa->x : 2;
        break;
    }
    case GB_TRACE_FN_TOPK:
        if (!gb__tr_args_fit(ps, args, (const char *[]){"k", "dim"}, 2, "k, dim") || !gb__tr_int_arg(ps, args, 0, "k", -1, &p.i[0]) ||
            !gb__tr_int_arg(ps, args, 1, "dim", -1, &p.i[1]))
            return NULL;
        if (p.i[0] < 0) return gb__tr_syntax(ps, "%s", "topk needs k");
        p.n = 2;
        break;
    case GB_TRACE_FN_RESHAPE:
    case GB_TRACE_FN_VIEW:
    case GB_TRACE_FN_PERMUTE:
        if (!gb__tr_shape_args(ps, args, &p)) return NULL;
        break;
    case GB_TRACE_FN_TRANSPOSE:
        if (!gb__tr_args_fit(ps, args, (const char *[]){"dim0", "dim1"}, 2, "dim0, dim1") ||
            !gb__tr_int_arg(ps, args, 0, "dim0", INT64_MIN, &p.i[0]) || !gb__tr_int_arg(ps, args, 1, "dim1", INT64_MIN, &p.i[1]))
            return NULL;
        if (p.i[0] == INT64_MIN || p.i[1] == INT64_MIN) return gb__tr_syntax(ps, "%s", "transpose needs two dims");
        p.n = 2;
        break;
    case GB_TRACE_FN_UNSQUEEZE:
    case GB_TRACE_FN_SQUEEZE:
        if (!gb__tr_args_fit(ps, args, (const char *[]){"dim"}, 1, "dim") || !gb__tr_dims_arg(ps, args, 0, &p, &tuple)) return NULL;
        if (tuple || (fn == GB_TRACE_FN_UNSQUEEZE && p.n != 1)) return gb__tr_syntax(ps, "%s", "this method needs one dim");
        break;
    default:
        ps->p = name;
        return gb__tr_syntax(ps, "%s", "unknown method (" GB__METHODS ")");
    }
    if (!ps->build) return gb__tr_dry;
    return gb_val_fn_at(fn, nvals, vals, &p, site, line);
}

/* A method call on v (the cursor after the method name and '('); its
 * nodes point at `at`, the '.' before the name. */
static gb_val *gb__tr_method(gb__tr_parser *ps, gb_val *v, const char *name, size_t len, const char *at) {
    gb__tr_args args;
    if (!gb__tr_parse_args(ps, &args)) return NULL;
    gb__tr_col(ps, at);
    return gb__tr_method_call(ps, v, name, len, &args);
}

/* torch.randint(high, size) or torch.randint(low, high, size), by position
 * or by name; size a tuple of ints. */
static gb_val *gb__tr_randint_call(gb__tr_parser *ps, gb__tr_args *args) {
    static const char *const kws[] = {"low", "high", "size"};
    int nints = 0; /* integers by position: (high, size) has one */
    for (int i = 0; i < args->n; i++) nints += !args->a[i].kw && args->a[i].kind == GB__ARG_NUMBER;
    int first = nints == 1 && !gb__tr_arg_get(args, -1, "low") && !gb__tr_arg_get(args, -1, "high"); /* kws from "high" */
    int64_t low = 0, high = INT64_MIN;
    if (!gb__tr_args_fit(ps, args, kws + first, 3 - first, "low, high, size") ||
        (!first && !gb__tr_int_arg(ps, args, 0, "low", 0, &low)) || !gb__tr_int_arg(ps, args, 1 - first, "high", INT64_MIN, &high))
        return NULL;
    gb__tr_arg *size = gb__tr_arg_get(args, 2 - first, "size");
    if (high == INT64_MIN || !size) return gb__tr_syntax(ps, "%s", "randint needs high and size, e.g. torch.randint(low=-10, high=10, size=(1,))");
    if (size->kind != GB__ARG_INTS) return gb__tr_syntax(ps, "%s", "size must be a tuple of integers, e.g. (1,)");
    if (size->n > GB_MAX_DIMS - 2) return gb__tr_syntax(ps, "%s", "randint: a size of at most 6 dims");
    return ps->build ? gb_randint_at(ps->tr, low, high, size->n, size->ints, ps->site, ps->line) : gb__tr_dry;
}

/* torch.name(...), F.name(...), torch.nn.functional.name(...): the
 * functions of several values, or a method with its value first. The
 * cursor after '('. */
static gb_val *gb__tr_function(gb__tr_parser *ps, const char *name, size_t len, const char *at) {
    gb__tr_args args;
    if (!gb__tr_parse_args(ps, &args)) return NULL;
    gb__tr_col(ps, at);
    gb_trace_fn fn = gb_trace_fn_find(name, len);
    gb_fn_params p = {0};
    if (fn == GB_TRACE_FN_CAT || fn == GB_TRACE_FN_STACK) {
        gb__tr_arg *list = gb__tr_arg_get(&args, 0, "tensors");
        if (!gb__tr_args_fit(ps, &args, (const char *[]){"tensors", "dim"}, 2, "tensors, dim") ||
            !gb__tr_int_arg(ps, &args, 1, "dim", 0, &p.i[0]))
            return NULL;
        if (!list || list->kind != GB__ARG_LIST || list->n == 0)
            return gb__tr_syntax(ps, "%s", "expected a list of values, e.g. torch.cat([a, b], dim=0)");
        p.n = 1;
        return ps->build ? gb_val_fn_at(fn, list->n, list->list, &p, ps->site, ps->line) : gb__tr_dry;
    }
    if (fn == GB_TRACE_FN_WHERE || fn == GB_TRACE_FN_CROSS_ENTROPY || fn == GB_TRACE_FN_COSINE_SIMILARITY) {
        static const char *const where_kws[] = {"condition", "input", "other"}, *const ce_kws[] = {"input", "target"},
                                 *const cos_kws[] = {"x1", "x2", "dim", "eps"};
        int nv = fn == GB_TRACE_FN_WHERE ? 3 : 2;
        const char *const *kws = fn == GB_TRACE_FN_WHERE ? where_kws : fn == GB_TRACE_FN_CROSS_ENTROPY ? ce_kws : cos_kws;
        if (!gb__tr_args_fit(ps, &args, kws, fn == GB_TRACE_FN_COSINE_SIMILARITY ? 4 : nv, "the function's arguments"))
            return NULL;
        gb_val *vals[3];
        for (int i = 0; i < nv; i++)
            if (!(vals[i] = gb__tr_arg_value(ps, gb__tr_arg_get(&args, i, kws[i])))) return NULL;
        if (fn == GB_TRACE_FN_COSINE_SIMILARITY) {
            gb__tr_arg *eps = gb__tr_arg_get(&args, 3, "eps");
            if (!gb__tr_int_arg(ps, &args, 2, "dim", 1, &p.i[0])) return NULL;
            if (eps && eps->kind != GB__ARG_NUMBER) return gb__tr_syntax(ps, "%s", "eps must be a number");
            p.n = 1;
            p.x = eps ? eps->x : 1e-8;
        }
        return ps->build ? gb_val_fn_at(fn, nv, vals, &p, ps->site, ps->line) : gb__tr_dry;
    }
    if (fn == GB_TRACE_FN_RANDINT) return gb__tr_randint_call(ps, &args);
    /* torch.exp(x, ...) is x.exp(...) */
    if (args.n == 0 || args.a[0].kw || args.a[0].kind != GB__ARG_VALUE)
        return gb__tr_syntax(ps, "%s", "expected a value as the first argument");
    gb_val *self = args.a[0].v;
    args.n--;
    memmove(args.a, args.a + 1, sizeof *args.a * (size_t)args.n);
    if (gb__tr_is_word(name, len, "vector_norm")) { /* torch.linalg.vector_norm(x, ord, dim, keepdim) is x.norm(p, ...) */
        for (int i = 0; i < args.n; i++)
            if (args.a[i].kw && gb__tr_is_word(args.a[i].kw, args.a[i].kwlen, "ord")) args.a[i].kw = "p", args.a[i].kwlen = 1;
        name = "norm", len = 4;
    }
    return gb__tr_method_call(ps, self, name, len, &args);
}

/* Where an assignment writes: the last step of its target chain, deferred. */
typedef struct gb__tr_lvalue {
    const char *end; /* where the target ends: its '=' */
    gb_val *base;    /* the value the last index applies to, or the value set */
    char *index;     /* "[...]" of a trailing index, or NULL */
    bool requires_grad; /* x.requires_grad = True */
} gb__tr_lvalue;

/* Steps on a value: [index], .grad, .method(...). With lv, the chain is an
 * assignment's target: a trailing index is not applied but returned there,
 * and the last step must be one that can be assigned (assignable says
 * whether v itself can: a module's .output/.input). */
static gb_val *gb__tr_steps(gb__tr_parser *ps, gb_val *v, bool assignable, gb__tr_lvalue *lv) {
    for (;;) {
        gb__tr_skip_space(ps);
        if (*ps->p == '[' || *ps->p == '.') gb__tr_col(ps, ps->p); /* the step's */
        if (gb__tr_accept(ps, '[')) {
            char *idx = gb__tr_bracket_text(ps);
            if (!idx) return NULL;
            gb__tr_skip_space(ps);
            if (lv && ps->p == lv->end) { /* target[...] = value */
                lv->base = v, lv->index = idx;
                return v;
            }
            gb_val *r = ps->build ? gb_val_index_at(v, idx, ps->site, ps->line) : gb__tr_dry;
            free(idx);
            v = r;
            assignable = true; /* a tuple pick, e.g. output[0] = ... */
        } else if (gb__tr_accept(ps, '.')) {
            size_t n = gb__tr_ident_len(ps);
            const char *name = ps->p;
            ps->p += n;
            if (gb__tr_is_word(name, n, "grad")) {
                v = ps->build ? gb_grad_at(v, ps->site, ps->line) : gb__tr_dry;
                assignable = true;
            } else if (lv && gb__tr_is_word(name, n, "requires_grad") && (gb__tr_skip_space(ps), ps->p == lv->end)) {
                lv->base = v, lv->index = NULL, lv->requires_grad = true;
                return v;
            } else if (gb__tr_is_word(name, n, "shape")) { /* real after a scan too */
                v = ps->build ? gb_val_fn_at(GB_TRACE_FN_SHAPE, 1, &v, &(gb_fn_params){0}, ps->site, ps->line) : gb__tr_dry;
                assignable = false;
            } else if (gb__tr_is_word(name, n, "values") || gb__tr_is_word(name, n, "indices")) { /* topk's tuple */
                v = ps->build ? gb_val_index_at(v, name[0] == 'v' ? "[0]" : "[1]", ps->site, ps->line) : gb__tr_dry;
                assignable = false;
            } else if (n && gb__tr_accept(ps, '(')) {
                v = gb__tr_method(ps, v, name, n, name - 1);
                assignable = false;
            } else {
                ps->p = name;
                return gb__tr_syntax(ps, "%s", "expected .grad, .shape, .values, .indices or a method call on a value");
            }
        } else {
            break;
        }
        if (!v) return NULL;
    }
    if (lv && !assignable) return gb__tr_syntax(ps, "%s", "cannot assign to this: assign to .output, .input, .grad or [index]");
    if (lv) lv->base = v, lv->index = NULL;
    return v;
}

static bool gb__tr_has_child(const gb_module *m, const char *name) {
    for (int i = 0; i < gb_module_num_children(m); i++)
        if (!strcmp(gb_module_name(gb_module_child(m, i)), name)) return true;
    return false;
}

/* A chain: a bound name, or a module path ("model" is the root, "h[-1]"
 * indexes a ModuleList) up to .output/.input/.skip(...), then steps. */
static gb_val *gb__tr_chain(gb__tr_parser *ps, gb__tr_lvalue *lv) {
    size_t len = gb__tr_ident_len(ps);
    const char *chain_at = ps->p; /* getters and module calls point here */
    if (!len) return gb__tr_syntax(ps, "%s", "expected a module path, a name or a number");
    gb_val *named = gb__tr_is_word(ps->p, len, "model") ? NULL : gb__tr_name(ps, ps->p, len);
    char path[512] = "";
    size_t plen = 0;
    if (named) {
        ps->p += len;
        return gb__tr_steps(ps, ps->build ? named : gb__tr_dry, false, lv);
    }
    const char *q = ps->p + len;
    bool root_event = !strncmp(q, ".output", 7) || !strncmp(q, ".input", 6) || !strncmp(q, ".skip", 5);
    if (gb__tr_is_word(ps->p, len, "model") && !root_event && gb__tr_has_child(gb__tr_trace_model(ps->tr), "model")) {
        /* Llama: Hugging Face's paths start with the root's child "model"
         * (model.layers.0), which nnsight spells model.model.layers[0]:
         * both mean it. model.output is still the root's. */
        if (!strncmp(q, ".model", 6) && !isalnum((unsigned char)q[6]) && q[6] != '_') ps->p = q + 1;
    } else if (gb__tr_is_word(ps->p, len, "model")) {
        len = 5; /* the root: path "" */
        ps->p += len;
        len = 0;
    }
    if (len >= sizeof path) return gb__tr_syntax(ps, "%s", "module path too long");
    memcpy(path, ps->p, len);
    path[plen = len] = 0;
    ps->p += len;
    int call = 0; /* .next() per generation step */
    for (;;) {
        if (gb__tr_accept(ps, '(')) { /* lm_head(h): the module run on values, no events */
            gb__tr_args args;
            if (!gb__tr_parse_args(ps, &args)) return NULL;
            gb_val *vals[GB__MAX_ARGS];
            bool hook = false;
            int n = 0;
            for (int i = 0; i < args.n; i++) {
                if (args.a[i].kw && gb__tr_is_word(args.a[i].kw, args.a[i].kwlen, "hook") && args.a[i].kind == GB__ARG_BOOL) {
                    hook = args.a[i].x != 0;
                    continue;
                }
                if (args.a[i].kw) return gb__tr_syntax(ps, "%s", "a module call takes values by position (and hook=True)");
                if (!(vals[n++] = gb__tr_arg_value(ps, &args.a[i]))) return NULL;
            }
            if (n == 0) return gb__tr_syntax(ps, "%s", "a module call needs a value");
            gb__tr_col(ps, chain_at);
            gb_val *v = ps->build ? gb_call_hooked_at(ps->tr, path, n, vals, hook, ps->site, ps->line) : gb__tr_dry;
            return v ? gb__tr_steps(ps, v, false, lv) : NULL;
        }
        if (gb__tr_accept(ps, '[')) {
            char *end;
            long i = strtol(ps->p, &end, 10);
            if (end == ps->p || (ps->p = end, !gb__tr_expect(ps, ']')))
                return gb__tr_syntax(ps, "%s", "expected an integer index into a module list");
            plen += (size_t)snprintf(path + plen, sizeof path - plen, "%s%ld", plen ? "." : "", i);
        } else if (gb__tr_accept(ps, '.')) {
            size_t n = gb__tr_ident_len(ps);
            const char *name = ps->p;
            if (!n) return gb__tr_syntax(ps, "%s", "expected a name after '.'");
            ps->p += n;
            if (gb__tr_is_word(name, n, "next") && gb__tr_accept(ps, '(')) {
                if (!gb__tr_expect(ps, ')')) return NULL;
                if (call != GB_CALL_ALL) call++;
                continue;
            }
            if (gb__tr_is_word(name, n, "all") && gb__tr_accept(ps, '(')) {
                if (!gb__tr_expect(ps, ')')) return NULL;
                call = GB_CALL_ALL;
                continue;
            }
            static const char *const points[] = GB_POINT_NAMES;
            for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
                if (!gb__tr_is_word(name, n, points[i])) continue;
                plen += (size_t)snprintf(path + plen, sizeof path - plen, "%s%.*s", plen ? "." : "", (int)n, name);
                if (plen >= sizeof path) return gb__tr_syntax(ps, "%s", "module path too long");
                gb__tr_col(ps, chain_at);
                gb_val *v = ps->build ? gb_getter_at(ps->tr, path, GB_TRACE_OP_POINT, call, ps->site, ps->line)
                                      : gb__tr_dry;
                return v ? gb__tr_steps(ps, v, true, lv) : NULL;
            }
            if (gb__tr_is_word(name, n, "output") || gb__tr_is_word(name, n, "input")) {
                gb_trace_op op = name[0] == 'o' ? GB_TRACE_OP_OUTPUT : GB_TRACE_OP_INPUT;
                gb__tr_col(ps, chain_at);
                gb_val *v = ps->build ? gb_getter_at(ps->tr, path, op, call, ps->site, ps->line) : gb__tr_dry;
                return v ? gb__tr_steps(ps, v, true, lv) : NULL;
            }
            if (gb__tr_is_word(name, n, "skip") && gb__tr_accept(ps, '(')) {
                gb_val *with = gb__tr_expr(ps);
                if (!with || !gb__tr_expect(ps, ')')) return NULL;
                if (lv) return gb__tr_syntax(ps, "%s", "cannot assign to this: assign to .output, .input, .grad or [index]");
                gb__tr_col(ps, chain_at);
                return ps->build ? gb_skip_at(ps->tr, path, with, ps->site, ps->line) : gb__tr_dry;
            }
            plen += (size_t)snprintf(path + plen, sizeof path - plen, "%s%.*s", plen ? "." : "", (int)n, name);
        } else {
            return gb__tr_syntax(ps, "%s", "a module is not a value: add .output or .input");
        }
        if (plen >= sizeof path) return gb__tr_syntax(ps, "%s", "module path too long");
    }
}

/* log(...), print(...), tracer.log(...): strings and values, printed as
 * Python's print does (joined by spaces) when the values exist. The cursor
 * after '('. */
static gb_val *gb__tr_log_call(gb__tr_parser *ps, const char *at) {
    char format[512];
    size_t n = 0;
    gb_val *vals[GB__MAX_ARGS];
    int nvals = 0;
    while (!gb__tr_accept(ps, ')')) {
        if ((n || nvals) && !gb__tr_expect(ps, ',')) return NULL;
        if (n + 2 >= sizeof format) return gb__tr_syntax(ps, "%s", "strings of a log too long (500 characters at most)");
        if (n || nvals) format[n++] = ' ';
        gb__tr_skip_space(ps);
        if (*ps->p == '"' || *ps->p == '\'') { /* a string: its braces doubled for the format */
            char quote = *ps->p++;
            const char *end = strchr(ps->p, quote);
            if (!end) return gb__tr_syntax(ps, "%s", "unclosed string");
            for (; ps->p < end && n + 2 < sizeof format; ps->p++) {
                if (*ps->p == '{' || *ps->p == '}') format[n++] = *ps->p;
                format[n++] = *ps->p;
            }
            if (ps->p < end) return gb__tr_syntax(ps, "%s", "strings of a log too long (500 characters at most)");
            ps->p = end + 1;
            continue;
        }
        if (nvals == GB__MAX_ARGS) return gb__tr_syntax(ps, "%s", "too many values in a log (8 at most)");
        if (!(vals[nvals++] = gb__tr_expr(ps))) return NULL;
        if (n + 2 >= sizeof format) return gb__tr_syntax(ps, "%s", "strings of a log too long (500 characters at most)");
        format[n++] = '{', format[n++] = '}';
    }
    format[n] = 0;
    if (!nvals && !n) return gb__tr_syntax(ps, "%s", "a log needs something to print");
    gb__tr_col(ps, at);
    return ps->build ? gb_trace_print_at(ps->tr, format, nvals, vals, ps->site, ps->line) : gb__tr_dry;
}

static gb_val *gb__tr_primary(gb__tr_parser *ps) {
    gb__tr_skip_space(ps);
    if (isdigit((unsigned char)*ps->p) || (*ps->p == '.' && isdigit((unsigned char)ps->p[1]))) return gb__tr_number(ps);
    if (gb__tr_accept(ps, '(')) {
        gb_val *v = gb__tr_expr(ps);
        return v && gb__tr_expect(ps, ')') ? gb__tr_steps(ps, v, false, NULL) : NULL;
    }
    size_t len = gb__tr_ident_len(ps);
    if ((gb__tr_is_word(ps->p, len, "log") || gb__tr_is_word(ps->p, len, "print")) && ps->p[len] == '(') {
        const char *at = ps->p;
        ps->p += len + 1;
        return gb__tr_log_call(ps, at);
    }
    if (!strncmp(ps->p, "tracer.log(", 11)) { /* nnsight's */
        const char *at = ps->p;
        ps->p += 11;
        return gb__tr_log_call(ps, at);
    }
    static const char *const prefixes[] = {"torch.nn.functional.", "torch.linalg.", "torch.", "F."};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        size_t k = strlen(prefixes[i]);
        if (strncmp(ps->p, prefixes[i], k)) continue;
        const char *start = ps->p, *name = ps->p + k;
        ps->p = name;
        size_t n = gb__tr_ident_len(ps);
        if (!n || name[n] != '(') return gb__tr_syntax(ps, "%s", "expected a function call, e.g. torch.cat([a, b], dim=0)");
        ps->p = name + n + 1;
        gb_val *v = gb__tr_function(ps, name, n, start);
        if (!v && ps->st == GB_ERR_ARG && !strncmp(ps->error, "unknown method", 14)) { /* nnsight's remote error */
            ps->st = GB_OK;
            ps->p = start;
            char fn[128];
            snprintf(fn, sizeof fn, "%.*s", (int)(k + n < sizeof fn ? k + n : sizeof fn - 1), start);
            return gb__tr_syntax(ps, "function `%s` is not in the function whitelist (" GB__WHITELIST ")", fn);
        }
        return v ? gb__tr_steps(ps, v, false, NULL) : NULL;
    }
    /* A call of anything else that is neither a name nor the model's
     * (my_fn(x), np.save(x)) is outside the language: nnsight's remote
     * whitelist error, here and on a server alike. */
    size_t dotted = len;
    while (len && (ps->p[dotted] == '.' && (isalpha((unsigned char)ps->p[dotted + 1]) || ps->p[dotted + 1] == '_')))
        for (dotted++; isalnum((unsigned char)ps->p[dotted]) || ps->p[dotted] == '_'; dotted++) {}
    if (len && ps->p[dotted] == '(' && !gb__tr_is_word(ps->p, len, "model") && !gb__tr_name(ps, ps->p, len)) {
        char first[64];
        snprintf(first, sizeof first, "%.*s", (int)(len < sizeof first ? len : sizeof first - 1), ps->p);
        if (!gb__tr_has_child(gb__tr_trace_model(ps->tr), first)) {
            char fn[128];
            snprintf(fn, sizeof fn, "%.*s", (int)(dotted < sizeof fn ? dotted : sizeof fn - 1), ps->p);
            if (dotted != len) return gb__tr_syntax(ps, "function `%s` is not in the function whitelist (" GB__WHITELIST ")", fn);
            /* a bare name may be a module's, mistyped: say both, with its nearest names */
            char why[320], msg[512];
            if (gb_module_find(gb__tr_trace_model(ps->tr), first)) return gb__tr_chain(ps, NULL);
            snprintf(why, sizeof why, "%s", gb_last_error());
            snprintf(msg, sizeof msg, "function `%s` is not in the function whitelist, nor a module: %s", fn, why);
            gb__tr_syntax(ps, "%s", msg);
            if (ps->st == GB_ERR_ARG) ps->st = GB_ERR_NOT_FOUND;
            return NULL;
        }
    }
    return gb__tr_chain(ps, NULL);
}

/* a op b, its node pointing at `at` (the operator). */
static gb_val *gb__tr_binary(gb__tr_parser *ps, gb_trace_op op, gb_val *a, gb_val *b, const char *at) {
    if (!a || !b) return NULL;
    gb__tr_col(ps, at);
    if (!ps->build) return gb__tr_dry;
    gb_val *v = gb_val_binary_at(op, a, b, ps->site, ps->line);
    if (v) v->python = a->python && b->python; /* 8 % 2 is Python's too */
    return v;
}

static gb_val *gb__tr_unary(gb__tr_parser *ps) {
    gb__tr_skip_space(ps);
    if (*ps->p == '-' && (isdigit((unsigned char)ps->p[1]) || ps->p[1] == '.')) return gb__tr_number(ps);
    if (ps->depth == GB__STATEMENT_MAX_DEPTH) {
        char limit[16];
        snprintf(limit, sizeof limit, "%d", GB__STATEMENT_MAX_DEPTH);
        return gb__tr_syntax(ps, "nested deeper than %s levels (unary minus, parentheses, calls)", limit);
    }
    ps->depth++;
    gb_val *v;
    const char *at = ps->p;
    if (!gb__tr_accept(ps, '-')) {
        v = gb__tr_primary(ps);
    } else {
        v = gb__tr_unary(ps);
        /* an int -1: -x keeps x's dtype, integers included, as PyTorch's negation */
        gb__tr_col(ps, at);
        gb_val *minus = v && ps->build ? gb_scalar_i64_at(ps->tr, -1, ps->site, ps->line) : gb__tr_dry;
        if (minus && ps->build) minus->python = true;
        v = gb__tr_binary(ps, GB_TRACE_OP_MUL, minus, v, at);
    }
    ps->depth--;
    return v;
}

static gb_val *gb__tr_term(gb__tr_parser *ps) {
    gb_val *v = gb__tr_unary(ps);
    for (;;) {
        gb__tr_skip_space(ps);
        const char *at = ps->p;
        bool floor = ps->p[0] == '/' && ps->p[1] == '/';
        if (floor) ps->p++;
        gb_trace_op op = gb__tr_accept(ps, '*') ? GB_TRACE_OP_MUL
                         : gb__tr_accept(ps, '/') ? (floor ? GB_TRACE_OP_FLOOR_DIVIDE : GB_TRACE_OP_DIV)
                         : gb__tr_accept(ps, '@') ? GB_TRACE_OP_MATMUL
                         : gb__tr_accept(ps, '%') ? GB_TRACE_OP_REMAINDER
                                                  : GB_TRACE_OP_COUNT;
        if (op == GB_TRACE_OP_COUNT || !v) return v;
        gb_val *w = gb__tr_unary(ps);
        v = gb__tr_binary(ps, op, v, w, at);
    }
}

static gb_val *gb__tr_sum(gb__tr_parser *ps) {
    gb_val *v = gb__tr_term(ps);
    for (;;) {
        gb__tr_skip_space(ps);
        const char *at = ps->p;
        gb_trace_op op = gb__tr_accept(ps, '+') ? GB_TRACE_OP_ADD : gb__tr_accept(ps, '-') ? GB_TRACE_OP_SUB : GB_TRACE_OP_COUNT;
        if (op == GB_TRACE_OP_COUNT || !v) return v;
        gb_val *w = gb__tr_term(ps);
        v = gb__tr_binary(ps, op, v, w, at);
    }
}

/* expr := sum [('==' | '!=' | '<=' | '>=' | '<' | '>') sum]: bool values. */
static gb_val *gb__tr_expr(gb__tr_parser *ps) {
    gb_val *v = gb__tr_sum(ps);
    static const struct {
        const char *op;
        gb_trace_fn fn;
    } cmps[] = {{"==", GB_TRACE_FN_EQ}, {"!=", GB_TRACE_FN_NE}, {"<=", GB_TRACE_FN_LE},
                {">=", GB_TRACE_FN_GE}, {"<", GB_TRACE_FN_LT},  {">", GB_TRACE_FN_GT}};
    gb__tr_skip_space(ps);
    for (size_t i = 0; v && i < sizeof cmps / sizeof *cmps; i++) {
        size_t k = strlen(cmps[i].op);
        if (strncmp(ps->p, cmps[i].op, k)) continue;
        const char *at = ps->p;
        ps->p += k;
        gb_val *w = gb__tr_sum(ps);
        if (!w) return NULL;
        gb__tr_col(ps, at);
        if (!ps->build) return gb__tr_dry;
        gb_val *r = gb_val_fn_at(cmps[i].fn, 2, (gb_val *[]){v, w}, &(gb_fn_params){0}, ps->site, ps->line);
        if (r) r->python = v->python && w->python;
        return r;
    }
    return v;
}

/* The '=' of an assignment: at depth 0, outside strings, not part of ==,
 * <=, >= or != (none of which the syntax has, but a clear error beats a
 * strange assignment). NULL for an expression statement. */
static const char *gb__tr_assignment(const char *s) {
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

/* A simple statement: name = expr, target = expr, or an expression. */
static gb_val *gb__tr_statement(gb__tr_parser *ps) {
    const char *eq = gb__tr_assignment(ps->p);
    if (!eq) return gb__tr_expr(ps);
    /* x op= v: x = x op v (on a name, it rebinds the name) */
    bool floor = eq - 1 > ps->p && eq[-1] == '/' && eq[-2] == '/';
    gb_trace_op augmented = eq > ps->p && strchr("+-*/%", eq[-1]) ? (eq[-1] == '+'   ? GB_TRACE_OP_ADD
                                                                  : eq[-1] == '-' ? GB_TRACE_OP_SUB
                                                                  : eq[-1] == '*' ? GB_TRACE_OP_MUL
                                                                  : eq[-1] == '%' ? GB_TRACE_OP_REMAINDER
                                                                  : floor         ? GB_TRACE_OP_FLOOR_DIVIDE
                                                                                  : GB_TRACE_OP_DIV)
                                                               : GB_TRACE_OP_COUNT;
    const char *target_end = augmented == GB_TRACE_OP_COUNT ? eq : floor ? eq - 2 : eq - 1;
    size_t len = gb__tr_ident_len(ps);
    const char *after = ps->p + len;
    while (isspace((unsigned char)*after)) after++;
    if (len && after == target_end) { /* name = expr: bound for later statements (shadowing a module of that name) */
        char name[64];
        if (len >= sizeof name || gb__tr_is_word(ps->p, len, "model"))
            return gb__tr_syntax(ps, "%s", "cannot assign to this name");
        snprintf(name, sizeof name, "%.*s", (int)len, ps->p);
        gb_val *old = augmented != GB_TRACE_OP_COUNT ? gb__tr_name(ps, ps->p, len) : NULL;
        if (augmented != GB_TRACE_OP_COUNT && !old) return gb__tr_syntax(ps, "%s", "name is not defined");
        ps->p = eq + 1;
        gb_val *v = gb__tr_expr(ps);
        if (v && old) v = gb__tr_binary(ps, augmented, old, v, target_end);
        if (v && ps->build && gb__tr_trace_set_name(ps->tr, name, v) != GB_OK) return NULL;
        if (v && !ps->build) {
            char entry[64];
            memcpy(entry, name, sizeof entry);
            void *slot = GB_ARR_ADDN(ps->dry_names, 1, "statement names");
            if (!slot) return gb__tr_syntax(ps, "%s", "out of memory");
            memcpy(slot, entry, sizeof entry);
        }
        return v;
    }
    gb__tr_lvalue lv = {.end = target_end};
    const char *target_at = ps->p;
    gb_val *target = gb__tr_chain(ps, &lv);
    gb__tr_skip_space(ps);
    if (target && ps->p != target_end) {
        free(lv.index);
        return gb__tr_syntax(ps, "%s", "expected '=' after the assignment's target");
    }
    ps->p = eq + 1;
    if (lv.requires_grad) { /* x.requires_grad = True */
        size_t n = gb__tr_ident_len(ps);
        if (!gb__tr_is_word(ps->p, n, "True") || augmented != GB_TRACE_OP_COUNT)
            return gb__tr_syntax(ps, "%s", "requires_grad can only be set to True");
        ps->p += n;
        gb__tr_col(ps, target_at);
        return ps->build ? gb_requires_grad_at(lv.base, ps->site, ps->line) : gb__tr_dry;
    }
    gb_val *value = target ? gb__tr_expr(ps) : NULL;
    gb__tr_col(ps, target_at); /* the set, and a compound assignment's read of the target */
    if (value && augmented != GB_TRACE_OP_COUNT) { /* the target's current value, op, value */
        gb_val *cur = !ps->build ? gb__tr_dry
                      : lv.index ? gb_val_index_at(lv.base, lv.index, ps->site, ps->line) : lv.base;
        value = cur ? gb__tr_binary(ps, augmented, cur, value, target_end) : NULL;
        gb__tr_col(ps, target_at);
    }
    gb_val *r = NULL;
    if (value && ps->build) r = lv.index ? gb_set_index_at(lv.base, lv.index, value, ps->site, ps->line)
                                         : gb_set_at(lv.base, value, ps->site, ps->line);
    else if (value) r = gb__tr_dry;
    free(lv.index);
    return r;
}

/* ---- lines and blocks ---------------------------------------------------- */

/* A line of a statement's text: what the parser reads (its indentation and
 * comment removed, NUL-terminated) and where it came from. */
typedef struct gb__tr_line {
    char *text;
    int indent; /* columns: a tab moves to the next multiple of 8, as Python */
    int lead;   /* bytes of indentation, for error columns */
    int number; /* 0 for the text's first line */
    const char *raw;
    size_t rawlen;
} gb__tr_line;

typedef struct gb__tr_lines {
    gb__tr_line *v; /* stb_ds */
    int i;          /* the next line to parse */
} gb__tr_lines;

static void gb__tr_lines_free(gb__tr_lines *b) {
    for (ptrdiff_t i = 0; i < arrlen(b->v); i++) free(b->v[i].text);
    arrfree(b->v);
}

/* text's lines that hold a statement (blank lines and comments dropped). */
static gb_status gb__tr_split(const char *text, gb__tr_lines *b) {
    b->v = NULL, b->i = 0;
    int number = 0;
    for (const char *raw = text; raw; number++) {
        const char *nl = strchr(raw, '\n'), *end = nl ? nl : raw + strlen(raw);
        gb__tr_line l = {.number = number, .raw = raw, .rawlen = (size_t)(end - raw)};
        if (l.rawlen && raw[l.rawlen - 1] == '\r') l.rawlen--;
        const char *q = raw;
        for (; q < raw + l.rawlen && (*q == ' ' || *q == '\t'); q++) l.indent = *q == '\t' ? (l.indent / 8 + 1) * 8 : l.indent + 1;
        l.lead = (int)(q - raw);
        const char *stop = q; /* a comment starts at a '#' outside quotes */
        for (char quote = 0; stop < raw + l.rawlen && (quote || *stop != '#'); stop++)
            quote = quote ? (*stop == quote ? 0 : quote) : (*stop == '"' || *stop == '\'') ? *stop : 0;
        while (stop > q && isspace((unsigned char)stop[-1])) stop--;
        raw = nl ? nl + 1 : NULL;
        if (stop == q) continue;
        if (!(l.text = strndup(q, (size_t)(stop - q))) || !GB_ARR_PUT(b->v, l, "statement lines")) {
            free(l.text);
            gb__tr_lines_free(b);
            return gb__fail(GB_ERR_ALLOC, "statement: out of memory splitting %zu bytes into lines", strlen(text));
        }
    }
    return GB_OK;
}

/* The parser reads line l from its start. */
static void gb__tr_at_line(gb__tr_parser *ps, const gb__tr_line *l, int base) {
    ps->text = ps->p = l->text;
    ps->col0 = l->lead;
    ps->line = base + l->number;
    ps->quote = l->raw, ps->quote_len = l->rawlen;
}

/* The kinds of line that open a block, by their first word. */
typedef enum { GB__LINE_SIMPLE, GB__LINE_IF, GB__LINE_ELIF, GB__LINE_ELSE, GB__LINE_WITH } gb__tr_line_kind;

static gb__tr_line_kind gb__tr_kind(const char *t) {
    static const char with_cond[] = "with tracer.cond(";
    size_t n = 0;
    while (isalpha((unsigned char)t[n])) n++;
    bool sep = t[n] == ' ' || t[n] == '\t' || t[n] == '(';
    if (gb__tr_is_word(t, n, "if") && sep) return GB__LINE_IF;
    if (gb__tr_is_word(t, n, "elif") && sep) return GB__LINE_ELIF;
    if (gb__tr_is_word(t, n, "else") && t[n + strspn(t + n, " \t")] == ':') return GB__LINE_ELSE;
    if (!strncmp(t, with_cond, sizeof with_cond - 1)) return GB__LINE_WITH;
    return GB__LINE_SIMPLE;
}

/* A simple statement from the cursor to the end of its line. */
static bool gb__tr_simple(gb__tr_parser *ps) {
    gb_val *v = gb__tr_statement(ps);
    gb__tr_skip_space(ps);
    if (v && *ps->p) v = gb__tr_syntax(ps, "unexpected '%.1s'", ps->p);
    if (v) ps->last = v;
    return v != NULL;
}

static bool gb__tr_lines_block(gb__tr_parser *ps, gb__tr_lines *b, int base, int indent, int depth);

/* A conditional's body under cond (NULL: none, an else's), the cursor
 * after the header's ':': the rest of the line ("if c: x = 1"), or the
 * indented lines that follow it. */
static bool gb__tr_body(gb__tr_parser *ps, gb__tr_lines *b, int base, gb_val *cond, const char *what, int depth) {
    const gb__tr_line *head = &b->v[b->i];
    gb__tr_skip_space(ps);
    bool inline_body = *ps->p != 0;
    if (!inline_body && (b->i + 1 >= arrlen(b->v) || b->v[b->i + 1].indent <= head->indent)) {
        ps->p += strlen(ps->p);
        char msg[96];
        snprintf(msg, sizeof msg, "expected an indented block after '%s' statement on line %d", what, base + head->number);
        return gb__tr_syntax(ps, "%s", msg), false;
    }
    if (cond && ps->build) {
        gb__tr_col(ps, ps->text);
        if (!gb_if_at(ps->tr, cond, ps->site, ps->line)) return false;
        ps->open_ifs++;
    }
    bool ok;
    if (inline_body) {
        ok = gb__tr_simple(ps);
        b->i++;
    } else {
        b->i++;
        ok = gb__tr_lines_block(ps, b, base, b->v[b->i].indent, depth + 1);
    }
    if (cond && ps->build && ok) gb_end_if(ps->tr), ps->open_ifs--;
    return ok;
}

/* "if c:" / "elif c:" (the cursor after the word) or "with tracer.cond(c):"
 * (after its '('): the condition, the cursor after the ':'. */
static gb_val *gb__tr_header(gb__tr_parser *ps, bool with) {
    gb_val *cond = gb__tr_expr(ps);
    if (!cond || (with && !gb__tr_expect(ps, ')')) || !gb__tr_expect(ps, ':')) return NULL;
    return cond;
}

/* Not cond (its value is zero), for elif and else: the branches before. */
static gb_val *gb__tr_not(gb__tr_parser *ps, gb_val *cond) {
    if (!ps->build) return gb__tr_dry;
    gb__tr_col(ps, ps->text);
    gb_val *zero = gb_scalar_i64_at(ps->tr, 0, ps->site, ps->line);
    return zero ? gb_val_fn_at(GB_TRACE_FN_EQ, 2, (gb_val *[]){cond, zero}, &(gb_fn_params){0}, ps->site, ps->line) : NULL;
}

/* The lines from b->i on at exactly this indentation, with the blocks
 * they open, up to a line indented less (the enclosing block's) or the end.
 * An if's elif and else branches run under the negations of the conditions
 * before them (each nested in the last), as Python's if statement. */
static bool gb__tr_lines_block(gb__tr_parser *ps, gb__tr_lines *b, int base, int indent, int depth) {
    if (depth > GB__STATEMENT_MAX_DEPTH) {
        gb__tr_at_line(ps, &b->v[b->i], base);
        char limit[16];
        snprintf(limit, sizeof limit, "%d", GB__STATEMENT_MAX_DEPTH);
        return gb__tr_syntax(ps, "blocks nested deeper than %s levels", limit), false;
    }
    bool after_block = false;
    while (b->i < arrlen(b->v)) {
        const gb__tr_line *l = &b->v[b->i];
        if (l->indent < indent) return true;
        gb__tr_at_line(ps, l, base);
        if (l->indent > indent)
            return gb__tr_syntax(ps, "%s", after_block ? "unindent does not match any outer indentation level"
                                                       : "unexpected indent"), false;
        gb__tr_line_kind kind = gb__tr_kind(l->text);
        if (kind == GB__LINE_ELIF || kind == GB__LINE_ELSE)
            return gb__tr_syntax(ps, "%s", kind == GB__LINE_ELSE ? "'else' without an 'if' before it"
                                                                : "'elif' without an 'if' before it"), false;
        if (kind == GB__LINE_SIMPLE) {
            if (!gb__tr_simple(ps)) return false;
            b->i++;
            after_block = false;
            continue;
        }
        bool with = kind == GB__LINE_WITH;
        ps->p += with ? strlen("with tracer.cond(") : 2;
        gb_val *cond = gb__tr_header(ps, with);
        if (!cond || !gb__tr_body(ps, b, base, cond, with ? "with" : "if", depth)) return false;
        int negations = 0;
        while (!with && b->i < arrlen(b->v) && b->v[b->i].indent == indent &&
               (kind = gb__tr_kind(b->v[b->i].text)) != GB__LINE_SIMPLE && kind != GB__LINE_IF && kind != GB__LINE_WITH) {
            gb__tr_at_line(ps, &b->v[b->i], base);
            gb_val *not_before = gb__tr_not(ps, cond);
            if (!not_before || (ps->build && !gb_if_at(ps->tr, not_before, ps->site, ps->line))) return false;
            if (ps->build) ps->open_ifs++;
            negations++;
            bool ok;
            if (kind == GB__LINE_ELIF) {
                ps->p += 4;
                ok = (cond = gb__tr_header(ps, false)) && gb__tr_body(ps, b, base, cond, "elif", depth);
            } else {
                ps->p = strchr(ps->p, ':') + 1;
                ok = gb__tr_body(ps, b, base, NULL, "else", depth);
            }
            if (!ok) return false;
            if (kind == GB__LINE_ELSE) break;
        }
        for (; ps->build && negations; negations--) gb_end_if(ps->tr), ps->open_ifs--;
        after_block = true;
    }
    return true;
}

/* The whole text, once: syntax only, or building. */
static bool gb__tr_parse(gb__tr_parser *ps, gb__tr_lines *b, int base) {
    b->i = 0;
    ps->last = NULL;
    if (!arrlen(b->v)) {
        ps->text = ps->p = "";
        ps->quote = "", ps->quote_len = 0;
        return gb__tr_syntax(ps, "%s", "expected a statement (the text is empty or only comments)"), false;
    }
    bool ok = gb__tr_lines_block(ps, b, base, b->v[0].indent, 0);
    for (; ps->open_ifs; ps->open_ifs--) gb_end_if(ps->tr); /* after a definition error */
    return ok;
}

gb_status gb_trace_statement(gb_trace *tr, const char *text, const char *site, int line, gb_val **out) {
    if (out) *out = NULL;
    gb__tr_parser ps = {.tr = tr, .site = site ? site : "statement", .line = line};
    gb__tr_lines b;
    if (gb__tr_split(text, &b) != GB_OK) return gb_last_status();
    bool ok = gb__tr_parse(&ps, &b, line);
    arrfree(ps.dry_names);
    if (!ok) {
        gb_status st = ps.st;
        if (st == GB_OK) st = gb__fail(GB_ERR_ARG, "%s:%d: statement: %s", ps.site, ps.line, "syntax error");
        else st = gb__fail(st, "%s:%d: %s in '%.*s%s'", ps.site, ps.line, ps.error,
                           (int)(ps.quote_len < GB__STATEMENT_QUOTED ? ps.quote_len : GB__STATEMENT_QUOTED), ps.quote,
                           ps.quote_len > GB__STATEMENT_QUOTED ? "..." : "");
        gb__tr_lines_free(&b);
        return st;
    }
    ps.build = true;
    ps.st = GB_OK;
    gb_status before = gb__tr_trace_def_status(tr);
    ok = gb__tr_parse(&ps, &b, line);
    gb__tr_trace_set_column(tr, 0); /* nodes defined in C have none */
    gb__tr_lines_free(&b);
    gb_status after = gb__tr_trace_def_status(tr);
    if (after != GB_OK && before == GB_OK) return gb__tr_trace_def_error(tr); /* e.g. an unknown module path */
    if (!ok || !ps.last) return gb_last_status() != GB_OK ? gb_last_status() : GB_ERR_ALLOC;
    if (out) *out = ps.last;
    return GB_OK;
}

char *gb_statement_name(const char *text) {
    const char *p = text + strspn(text, " "), *start = p;
    while (*p == '_' || isalpha((unsigned char)*p) || (p > start && isdigit((unsigned char)*p))) p++;
    size_t n = (size_t)(p - start);
    p += strspn(p, " ");
    if (!n || *p != '=' || p[1] == '=') return NULL;
    return strndup(start, n);
}

/* The text after a block header's ':' ("if c: x = 1" gives "x = 1"): its
 * first ':' outside brackets and strings (a condition has none). */
static const char *gb__tr_after_header(const char *t) {
    int depth = 0;
    for (char quote = 0; *t; t++) {
        if (quote) quote = *t == quote ? 0 : quote;
        else if (*t == '"' || *t == '\'') quote = *t;
        else if (*t == '(' || *t == '[') depth++;
        else if (*t == ')' || *t == ']') depth--;
        else if (*t == ':' && depth == 0) return t + 1;
    }
    return t;
}

char **gb_statement_names(const char *text, int *n) {
    *n = 0;
    gb__tr_lines b;
    if (gb__tr_split(text, &b) != GB_OK) return NULL;
    char **names = NULL; /* stb_ds */
    bool ok = true;
    for (ptrdiff_t i = 0; ok && i < arrlen(b.v); i++) {
        const char *t = b.v[i].text;
        char *name = gb_statement_name(gb__tr_kind(t) == GB__LINE_SIMPLE ? t : gb__tr_after_header(t));
        for (ptrdiff_t k = 0; name && k < arrlen(names); k++)
            if (!strcmp(names[k], name)) free(name), name = NULL;
        if (name && !(ok = GB_ARR_PUT(names, name, "statement names"))) free(name);
    }
    gb__tr_lines_free(&b);
    char **out = ok ? malloc(sizeof *out * (size_t)(arrlen(names) + 1)) : NULL;
    if (out) {
        if (names) memcpy(out, names, sizeof *out * (size_t)arrlen(names)); /* none: names is NULL (UBSan) */
        *n = (int)arrlen(names);
    } else
        for (ptrdiff_t k = 0; k < arrlen(names); k++) free(names[k]);
    arrfree(names);
    return out;
}
