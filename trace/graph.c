/* The intervention graph: definition calls build plain nodes (an op,
 * argument nodes, text, a call site and a payload per op), and
 * gb__tr_graph_compile derives once per shape of the graph what every run
 * needs (each node's users, the points getters wait on, what repeats).
 * Nothing here runs a node: exec.c does, in an execution of its own, so
 * that one graph can run in several threads at once. */
#include "trace_impl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

const char *const gb__tr_trace_op_names[GB_TRACE_OP_COUNT] = {
#define GB__X(e, n, payload) n,
    GB_TRACE_OP_LIST(GB__X)
#undef GB__X
};

const gb__tr_payload gb__tr_trace_op_payload[GB_TRACE_OP_COUNT] = {
#define GB__X(e, n, payload) GB__PAYLOAD_##payload,
    GB_TRACE_OP_LIST(GB__X)
#undef GB__X
};

/* ---- the trace ---------------------------------------------------------- */

gb_trace *gb_trace_new(gb_module *model, gb_tensor *input) {
    gb_trace *tr = gb__calloc(1, sizeof *tr, "trace_new");
    if (!tr) return NULL;
    tr->model = model;
    tr->input = gb_tensor_ref(input);
    tr->cur_invoke = -1;
    tr->log = stdout;
    tr->compiled = -1;
    tr->own = (gb_exec){.tr = tr, .model = model, .own = true};
    return tr;
}

static void gb__tr_free_compiled(gb_trace *tr) {
    free(tr->points); /* the user list shares its block */
    tr->user_list = NULL;
    tr->points = NULL;
    tr->npoints = 0;
    arrfree(tr->grads);
    tr->compiled = -1;
}

void gb__tr_graph_free(gb_trace *tr) {
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) {
        gb_val *v = tr->nodes[i];
        if (gb__tr_trace_op_payload[v->op] == GB__PAYLOAD_CONST) gb_tensor_free(v->u.constant);
        free(atomic_load_explicit(&v->desc, memory_order_relaxed));
    }
    arrfree(tr->nodes);
    for (gb__tr_block *b = tr->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    for (gb__tr_chunk *c = tr->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    arrfree(tr->conds);
    gb__tr_free_compiled(tr);
    gb_tensor_free(tr->input);
    for (ptrdiff_t i = 0; i < arrlen(tr->invokes); i++) gb_tensor_free(tr->invokes[i]);
    arrfree(tr->invokes);
    arrfree(tr->invoke_start);
    gb_tensor_free(tr->mask);
    gb_tensor_free(tr->pos);
    shfree(tr->names);
    free(tr->def_error);
    free(tr);
}

void gb_trace_set_validate(gb_trace *tr, bool on) { tr->validate = on; }
void gb_trace_set_nan_check(gb_trace *tr, bool on) { tr->nan_check = on; }

gb_val *gb__tr_trace_name(gb_trace *tr, const char *name, size_t len) {
    char key[64];
    if (len >= sizeof key) return NULL;
    memcpy(key, name, len);
    key[len] = 0;
    gb_val *v = gb_trace_name(tr, key);
    if (!v && tr->resolve && (v = tr->resolve(tr, key, tr->resolve_ctx)) && gb__tr_trace_set_name(tr, key, v) != GB_OK)
        return NULL;
    return v;
}

gb_val *gb_trace_name(gb_trace *tr, const char *name) {
    ptrdiff_t i = GB_SH_GETI(tr->names, name);
    return i < 0 ? NULL : tr->names[i].value;
}
gb_trace *gb_val_trace(const gb_val *v) { return v->tr; }

void gb_trace_set_resolver(gb_trace *tr, gb_val *(*resolve)(gb_trace *tr, const char *name, void *ctx), void *ctx) {
    tr->resolve = resolve;
    tr->resolve_ctx = ctx;
}

gb_status gb__tr_trace_set_name(gb_trace *tr, const char *name, gb_val *v) {
    if (!tr->names && !GB_SH_NEW_STRDUP(tr->names, "trace: names")) return GB_ERR_ALLOC;
    return GB_SH_PUT(tr->names, name, v, "trace: names") ? GB_OK : GB_ERR_ALLOC;
}

gb_module *gb__tr_trace_model(const gb_trace *tr) { return tr->model; }
void gb__tr_trace_set_column(gb_trace *tr, int column) { tr->def_column = column; }
gb_status gb__tr_trace_def_status(const gb_trace *tr) { return tr->def_status; }
gb_status gb__tr_trace_def_error(const gb_trace *tr) {
    return gb__fail(tr->def_status, "%s", tr->def_error ? tr->def_error : "trace: out of memory keeping an error");
}

void gb_trace_set_attention_mask(gb_trace *tr, gb_tensor *mask) {
    gb_tensor_free(tr->mask);
    tr->mask = gb_tensor_ref(mask);
}

void gb_trace_set_position_ids(gb_trace *tr, gb_tensor *pos) {
    gb_tensor_free(tr->pos);
    tr->pos = gb_tensor_ref(pos);
}
void gb_trace_set_log(gb_trace *tr, FILE *f) { tr->log = f; }
void gb_trace_set_seed(gb_trace *tr, uint64_t seed) { tr->seed = seed; }

/* ---- describing nodes --------------------------------------------------- */

static const char *gb__tr_getter_event(const gb_val *v) {
    return v->op == GB_TRACE_OP_INPUT ? "input" : v->op == GB_TRACE_OP_OUTPUT ? "output" : NULL;
}

static const struct {
    const char *name;
    int nargs;
} gb__tr_fns[GB_TRACE_FN_COUNT] = {
#define GB__X(e, n, nargs) {n, nargs},
    GB_TRACE_FN_LIST(GB__X)
#undef GB__X
};

const char *gb_trace_fn_name(gb_trace_fn fn) { return (unsigned)fn < GB_TRACE_FN_COUNT ? gb__tr_fns[fn].name : "?"; }

gb_trace_fn gb_trace_fn_find(const char *name, size_t len) {
    for (int i = 0; i < GB_TRACE_FN_COUNT; i++)
        if (strlen(gb__tr_fns[i].name) == len && !strncmp(gb__tr_fns[i].name, name, len)) return (gb_trace_fn)i;
    return GB_TRACE_FN_COUNT;
}

/* A function node as PyTorch spells it: a method with its parameters,
 * torch.cat([...]) for lists. */
static void gb__tr_fn_text(const gb_val *v, char *d, size_t n, const char *a, const char *b) {
    const gb_fn_params *p = v->u.fn.p;
    char params[160] = "";
    size_t k = 0;
    if (p && v->u.fn.fn == GB_TRACE_FN_NORM && p->x != 2) /* the order, when not the default */
        k += (size_t)snprintf(params, sizeof params, "p=%g%s", p->x, p->n ? ", " : "");
    for (int i = 0; p && i < p->n && k < sizeof params; i++)
        k += (size_t)snprintf(params + k, sizeof params - k, "%s%lld", i ? ", " : "", (long long)p->i[i]);
    if (p && p->keepdim && k < sizeof params) snprintf(params + k, sizeof params - k, ", keepdim=True");
    const char *name = gb_trace_fn_name(v->u.fn.fn);
    if (v->u.fn.fn == GB_TRACE_FN_RANDINT && p) {
        char size[96] = "";
        for (int i = 2, k2 = 0; i < p->n && k2 < (int)sizeof size; i++)
            k2 += snprintf(size + k2, sizeof size - (size_t)k2, "%s%lld%s", i > 2 ? ", " : "", (long long)p->i[i], p->n == 3 ? "," : "");
        snprintf(d, n, "torch.randint(%lld, %lld, (%s))", (long long)p->i[0], (long long)p->i[1], size);
        return;
    }
    switch (gb__tr_fns[v->u.fn.fn].nargs) {
    case -1: snprintf(d, n, "torch.%s([%s%s], %s)", name, a, v->nargs > 1 ? ", ..." : "", params); break;
    case 1: snprintf(d, n, "%s.%s(%s)", a, name, params); break;
    case 2: snprintf(d, n, "%s.%s(%s%s%s)", a, name, b, *params ? ", " : "", params); break;
    default: snprintf(d, n, "torch.%s(%s, %s, ...)", name, a, b); break;
    }
}

/* A Python-like expression for v, used in errors and graph dumps. */
const char *gb_val_text(gb_val *v) {
    char *have = atomic_load_explicit(&v->desc, memory_order_acquire);
    if (have) return have;
    char d[256];
    size_t n = sizeof d;
    const char *a = v->nargs > 0 ? gb_val_text(v->arg[0]) : "", *b = v->nargs > 1 ? gb_val_text(v->arg[1]) : "";
    char idx[128] = "";
    if (gb__tr_trace_op_payload[v->op] == GB__PAYLOAD_INDEX && v->u.index) gb_index_format(v->u.index, idx, sizeof idx);
    switch (v->op) {
    case GB_TRACE_OP_OUTPUT:
    case GB_TRACE_OP_INPUT:
        if (v->u.get.call == GB_CALL_ALL)
            snprintf(d, n, "%s.%s[every call]", *v->text ? v->text : "model", gb__tr_getter_event(v));
        else if (v->u.get.call)
            snprintf(d, n, "%s%s%s[call %d]", *v->text ? v->text : "model", ".", gb__tr_getter_event(v), v->u.get.call);
        else snprintf(d, n, "%s.%s", *v->text ? v->text : "model", gb__tr_getter_event(v));
        break;
    case GB_TRACE_OP_POINT: snprintf(d, n, "%s", v->text); break;
    case GB_TRACE_OP_GRAD: snprintf(d, n, "%s.grad", a); break;
    case GB_TRACE_OP_CONST: {
        const gb_tensor *t = v->u.constant;
        double x;
        if (gb_tensor_numel(t) == 1 && gb_tensor_ndim(t) == 0 && gb_item(t, &x) == GB_OK) snprintf(d, n, "%g", x);
        else snprintf(d, n, "tensor%s", gb__shape_str((char[160]){0}, 160, gb_tensor_ndim(t), gb_tensor_shape(t)));
        break;
    }
    case GB_TRACE_OP_INDEX: snprintf(d, n, "%s%s", a, idx); break;
    case GB_TRACE_OP_ADD: snprintf(d, n, "(%s + %s)", a, b); break;
    case GB_TRACE_OP_SUB: snprintf(d, n, "(%s - %s)", a, b); break;
    case GB_TRACE_OP_MUL: snprintf(d, n, "(%s * %s)", a, b); break;
    case GB_TRACE_OP_DIV: snprintf(d, n, "(%s / %s)", a, b); break;
    case GB_TRACE_OP_MATMUL: snprintf(d, n, "(%s @ %s)", a, b); break;
    case GB_TRACE_OP_REMAINDER: snprintf(d, n, "(%s %% %s)", a, b); break;
    case GB_TRACE_OP_FLOOR_DIVIDE: snprintf(d, n, "(%s // %s)", a, b); break;
    case GB_TRACE_OP_SUM:
    case GB_TRACE_OP_MEAN:
    case GB_TRACE_OP_MAX:
    case GB_TRACE_OP_ARGMAX:
        snprintf(d, n, "%s.%s(dim=%d%s)", a, gb__tr_trace_op_names[v->op], v->u.dim.dim,
                 v->u.dim.keepdim ? ", keepdim=True" : "");
        break;
    case GB_TRACE_OP_SUM_ALL: snprintf(d, n, "%s.sum()", a); break;
    case GB_TRACE_OP_SOFTMAX: snprintf(d, n, "%s.softmax(dim=%d)", a, v->u.dim.dim); break;
    case GB_TRACE_OP_CLONE: snprintf(d, n, "%s.clone()", a); break;
    case GB_TRACE_OP_APPLY: snprintf(d, n, "apply(%s%s)", a, v->nargs > 1 ? ", ..." : ""); break;
    case GB_TRACE_OP_CALL:
        snprintf(d, n, "%s(%s%s%s)", *v->text ? v->text : "model", a, v->nargs > 1 ? ", ..." : "",
                 v->u.get.call ? ", hook=True" : "");
        break;
    case GB_TRACE_OP_FN: gb__tr_fn_text(v, d, n, a, b); break;
    case GB_TRACE_OP_SET: snprintf(d, n, "%s = %s", a, b); break;
    case GB_TRACE_OP_SET_INDEX: snprintf(d, n, "%s%s = %s", a, idx, b); break;
    case GB_TRACE_OP_LOG: snprintf(d, n, "print(\"%s\"%s%s%s)", v->text ? v->text : "", v->nargs ? ", " : "", a,
                                   v->nargs > 1 ? ", ..." : ""); break;
    case GB_TRACE_OP_STOP: snprintf(d, n, "%s.stop()", a); break;
    case GB_TRACE_OP_SKIP: snprintf(d, n, "%s.skip(%s)", *v->text ? v->text : "model", a); break;
    case GB_TRACE_OP_REQUIRES_GRAD: snprintf(d, n, "%s.requires_grad = True", a); break;
    case GB_TRACE_OP_BACKWARD: snprintf(d, n, "%s.backward()", a); break;
    case GB_TRACE_OP_IF: snprintf(d, n, "if %s", a); break;
    default: snprintf(d, n, "?"); break;
    }
    /* Runs in several threads may ask at once: the first copy made wins. */
    char *mine = strdup(d);
    if (!mine) return "(out of memory)";
    if (atomic_compare_exchange_strong_explicit(&v->desc, &have, mine, memory_order_acq_rel, memory_order_acquire))
        return mine;
    free(mine);
    return have;
}

char *gb_trace_graph(const gb_trace *tr) {
    char *out = NULL; /* stb_ds char array */
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) {
        gb_val *v = tr->nodes[i];
        char line[512];
        int k = snprintf(line, sizeof line, "%%%d = %s", v->id, gb__tr_trace_op_names[v->op]);
        for (int j = 0; j < v->nargs && k < (int)sizeof line; j++) k += snprintf(line + k, sizeof line - (size_t)k, " %%%d", v->arg[j]->id);
        if (k < (int)sizeof line && v->cond) k += snprintf(line + k, sizeof line - (size_t)k, " if %%%d", v->cond->id);
        if (k < (int)sizeof line)
            k += snprintf(line + k, sizeof line - (size_t)k, "%s  # %s  (%s:%d)\n", v->saved ? " saved" : "",
                          gb_val_text(v), v->file, v->line);
        char *at = GB_ARR_ADDN(out, strlen(line), "trace_graph");
        if (!at) return arrfree(out), NULL;
        memcpy(at, line, strlen(line));
    }
    char *s = GB_ARR_PUT(out, 0, "trace_graph") ? gb__strdup(out, "trace_graph") : NULL;
    arrfree(out);
    return s;
}

/* ---- definition --------------------------------------------------------- */

/* Record the first definition error, with its site. */
static void gb__tr_def_fail(gb_val *v) {
    gb_trace *tr = v->tr;
    v->poisoned = true;
    if (tr->def_status != GB_OK) return;
    tr->def_status = gb_last_status() != GB_OK ? gb_last_status() : GB_ERR_ARG;
    gb__error_prefix("%s:%d", v->file, v->line);
    tr->def_error = strdup(gb_last_error());
}

/* n bytes (16-aligned) that live as long as the trace. */
static void *gb__tr_trace_alloc(gb_trace *tr, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!tr->chunks || tr->chunks->size - tr->chunks->used < n) {
        size_t size = n > GB__CHUNK_BYTES ? n : GB__CHUNK_BYTES;
        gb__tr_chunk *c = gb__malloc(sizeof *c + size, "trace");
        if (!c) return NULL;
        *c = (gb__tr_chunk){tr->chunks, 0, size};
        tr->chunks = c;
    }
    void *p = tr->chunks->data + tr->chunks->used;
    tr->chunks->used += n;
    return p;
}

/* v's text: a copy of s that lives as long as the trace ("" and a
 * definition error when out of memory). */
static void gb__tr_node_text(gb_val *v, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = gb__tr_trace_alloc(v->tr, n);
    v->text = d ? memcpy(d, s, n) : "";
    if (!d) gb__tr_def_fail(v);
}

static gb_val *gb__tr_node(gb_trace *tr, gb_trace_op op, int nargs, gb_val *const *args, const char *file, int line) {
    if (!tr->blocks || tr->blocks->used == GB__BLOCK_NODES) {
        gb__tr_block *b = gb__malloc(sizeof *b, "trace: a node");
        if (!b) return NULL;
        b->next = tr->blocks;
        b->used = 0;
        tr->blocks = b;
    }
    if (!GB_ARR_PUT(tr->nodes, NULL, "trace: a node")) return NULL;
    gb_val *v = &tr->blocks->node[tr->blocks->used++];
    memset(v, 0, sizeof *v);
    v->tr = tr;
    v->id = (int)arrlen(tr->nodes) - 1;
    v->op = op;
    v->file = file;
    v->line = line;
    v->column = tr->def_column;
    v->invoke = tr->cur_invoke;
    v->cond = arrlen(tr->conds) ? arrlast(tr->conds) : NULL;
    v->nargs = nargs;
    for (int i = 0; i < nargs; i++) {
        v->arg[i] = args[i];
        args[i]->uses++;
        if (args[i]->poisoned) v->poisoned = true;
    }
    if (v->cond) v->cond->uses++;
    tr->nodes[v->id] = v;
    return v;
}

/* Values combine only within one trace; NULL (with an error) otherwise. */
static bool gb__tr_same_trace(gb_val *a, gb_val *b) {
    if (a && b && a->tr == b->tr) return true;
    gb__fail(GB_ERR_ARG, "trace: %s", !a || !b ? "a value handle is NULL (an earlier definition failed to allocate)"
                                                : "values of two different traces cannot be combined");
    return false;
}

gb_val *gb_getter_at(gb_trace *tr, const char *path, gb_trace_op op, int call, const char *file, int line) {
    if (op != GB_TRACE_OP_OUTPUT && op != GB_TRACE_OP_INPUT && op != GB_TRACE_OP_POINT) {
        gb__fail(GB_ERR_ARG, "trace: getter op %d is none of output, input and point", (int)op);
        return NULL;
    }
    gb_val *v = gb__tr_node(tr, op, 0, NULL, file, line);
    if (!v) return NULL;
    gb__tr_node_text(v, path);
    v->u.get.call = call;
    if (call < 0 && call != GB_CALL_ALL) {
        gb__fail(GB_ERR_INDEX, "trace: call index %d is negative (GB_CALL_ALL is every call)", call);
        gb__tr_def_fail(v);
    } else if (op != GB_TRACE_OP_POINT) {
        /* Unknown paths fail here, at the user's line, not during the run. */
        if (!(v->u.get.module = gb_module_find(tr->model, path))) gb__tr_def_fail(v);
    } else if (strrchr(path, '.')) { /* a point's module must exist too */
        char owner[512];
        snprintf(owner, sizeof owner, "%.*s", (int)(strrchr(path, '.') - path), path);
        if (!gb_module_find(tr->model, owner)) gb__tr_def_fail(v);
    }
    return v;
}

static gb_status gb__tr_parse_index(gb_val *v, const char *expr) {
    v->u.index = gb__tr_trace_alloc(v->tr, sizeof *v->u.index);
    if (!v->u.index) return gb__fail(GB_ERR_ALLOC, "trace: out of memory for an index expression");
    return gb_index_parse(expr, v->u.index);
}

gb_val *gb_grad_at(gb_val *x, const char *file, int line) { return gb__tr_node(x->tr, GB_TRACE_OP_GRAD, 1, &x, file, line); }

gb_val *gb_val_index_at(gb_val *x, const char *expr, const char *file, int line) {
    gb_val *v = gb__tr_node(x->tr, GB_TRACE_OP_INDEX, 1, &x, file, line);
    if (v && gb__tr_parse_index(v, expr) != GB_OK) gb__tr_def_fail(v);
    return v;
}

gb_val *gb_val_binary_at(gb_trace_op op, gb_val *a, gb_val *b, const char *file, int line) {
    if (!gb__tr_same_trace(a, b)) return NULL;
    return gb__tr_node(a->tr, op, 2, (gb_val *[]){a, b}, file, line);
}

gb_val *gb_val_reduce_at(gb_trace_op op, gb_val *x, int dim, bool keepdim, const char *file, int line) {
    gb_val *v = gb__tr_node(x->tr, op, 1, &x, file, line);
    if (v && gb__tr_trace_op_payload[op] == GB__PAYLOAD_DIM) {
        v->u.dim.dim = dim;
        v->u.dim.keepdim = keepdim;
    }
    return v;
}

gb_val *gb_val_unary_at(gb_trace_op op, gb_val *x, int dim, const char *file, int line) {
    return gb_val_reduce_at(op, x, dim, false, file, line);
}

gb_val *gb_const_at(gb_trace *tr, gb_tensor *t, const char *file, int line) {
    gb_val *v = gb__tr_node(tr, GB_TRACE_OP_CONST, 0, NULL, file, line);
    if (!v) return NULL;
    v->u.constant = gb_tensor_ref(t);
    return v;
}

gb_val *gb_scalar_at(gb_trace *tr, float x, const char *file, int line) {
    gb_tensor *t = gb_scalar_tensor(x);
    gb_val *v = t ? gb_const_at(tr, t, file, line) : NULL;
    gb_tensor_free(t);
    return v;
}

gb_val *gb_scalar_i64_at(gb_trace *tr, int64_t x, const char *file, int line) {
    gb_tensor *t = gb_from_data(&x, 0, NULL, GB_DTYPE_I64);
    gb_val *v = t ? gb_const_at(tr, t, file, line) : NULL;
    gb_tensor_free(t);
    return v;
}

gb_val *gb_trace_tensor_at(gb_trace *tr, const char *name, gb_tensor *t, const char *file, int line) {
    if (!name || !(isalpha((unsigned char)*name) || *name == '_') || strlen(name) >= 64 ||
        name[strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")] || !strcmp(name, "model"))
        return gb__fail_null(GB_ERR_ARG, "trace_tensor: '%s' is not a name statements can use (letters, digits and _, "
                                         "under 64 characters, not 'model')", name ? name : "(null)");
    if (!t) return gb__fail_null(GB_ERR_ARG, "trace_tensor: no tensor for '%s'", name);
    gb_val *v = gb_const_at(tr, t, file, line);
    if (v && gb__tr_trace_set_name(tr, name, v) != GB_OK) return NULL;
    return v;
}

gb_val *gb_apply_at(gb_trace *tr, gb_apply_fn fn, void *ctx, int nargs, gb_val *const *args, const char *file,
                    int line) {
    if (nargs < 0 || nargs > GB__MAX_ARGS) nargs = GB__MAX_ARGS + 1;
    gb_val *v = gb__tr_node(tr, GB_TRACE_OP_APPLY, nargs <= GB__MAX_ARGS ? nargs : 0, args, file, line);
    if (!v) return NULL;
    v->u.apply.fn = fn;
    v->u.apply.ctx = ctx;
    if (nargs > GB__MAX_ARGS || !fn) {
        gb__fail(GB_ERR_ARG, "apply: needs a function and at most %d arguments", GB__MAX_ARGS);
        gb__tr_def_fail(v);
    }
    return v;
}

gb_val *gb_val_fn_at(gb_trace_fn fn, int nargs, gb_val *const *args, const gb_fn_params *p, const char *file, int line) {
    if (nargs < 1 || nargs > GB__MAX_ARGS || !args || !args[0]) {
        gb__fail(GB_ERR_ARG, "%s: needs 1 to %d values, got %d", gb_trace_fn_name(fn), GB__MAX_ARGS, nargs);
        return NULL;
    }
    for (int i = 1; i < nargs; i++)
        if (!gb__tr_same_trace(args[0], args[i])) return NULL;
    gb_val *v = gb__tr_node(args[0]->tr, GB_TRACE_OP_FN, nargs, args, file, line);
    if (!v) return NULL;
    v->u.fn.fn = fn;
    v->u.fn.p = gb__tr_trace_alloc(v->tr, sizeof *v->u.fn.p);
    if (!v->u.fn.p) {
        gb__fail(GB_ERR_ALLOC, "trace: out of memory for a function's parameters");
        gb__tr_def_fail(v);
        return v;
    }
    *v->u.fn.p = p ? *p : (gb_fn_params){0};
    int want = (unsigned)fn < GB_TRACE_FN_COUNT ? gb__tr_fns[fn].nargs : 0;
    if ((unsigned)fn >= GB_TRACE_FN_COUNT || (want >= 0 && nargs != want) || v->u.fn.p->n < 0 ||
        v->u.fn.p->n > GB_MAX_DIMS) {
        gb__fail(GB_ERR_ARG, "%s: takes %d values and up to %d integer parameters, got %d and %d",
                 gb_trace_fn_name(fn), want, GB_MAX_DIMS, nargs, v->u.fn.p->n);
        gb__tr_def_fail(v);
    }
    return v;
}

gb_val *gb_randint_at(gb_trace *tr, int64_t low, int64_t high, int ndim, const int64_t *size, const char *file, int line) {
    gb_val *v = gb__tr_node(tr, GB_TRACE_OP_FN, 0, NULL, file, line);
    if (!v) return NULL;
    v->u.fn.fn = GB_TRACE_FN_RANDINT;
    if (!(v->u.fn.p = gb__tr_trace_alloc(tr, sizeof *v->u.fn.p))) {
        gb__fail(GB_ERR_ALLOC, "trace: out of memory for a function's parameters");
        gb__tr_def_fail(v);
        return v;
    }
    *v->u.fn.p = (gb_fn_params){.n = 2 + (ndim > 0 ? ndim : 0), .i = {low, high}};
    if (ndim < 0 || ndim > GB_MAX_DIMS - 2 || (ndim && !size)) {
        gb__fail(GB_ERR_ARG, "randint: a size of 0 to %d dims, got %d", GB_MAX_DIMS - 2, ndim);
        gb__tr_def_fail(v);
        return v;
    }
    if (ndim) memcpy(v->u.fn.p->i + 2, size, sizeof(int64_t) * (size_t)ndim);
    for (int d = 0; d < ndim; d++)
        if (size[d] < 0) {
            gb__fail(GB_ERR_ARG, "randint: Trying to create tensor with negative dimension %lld: %s", (long long)size[d],
                     gb__shape_str((char[160]){0}, 160, ndim, size));
            gb__tr_def_fail(v);
            return v;
        }
    if (low >= high) {
        gb__fail(GB_ERR_ARG, "randint: random_ expects 'from' to be less than 'to', but got from=%lld >= to=%lld",
                 (long long)low, (long long)high);
        gb__tr_def_fail(v);
    }
    return v;
}

gb_val *gb_val_ints_at(gb_trace_fn fn, gb_val *x, int n, const int64_t *ints, bool keepdim, const char *file, int line) {
    gb_fn_params p = {.n = n, .keepdim = keepdim};
    if (n > 0 && n <= GB_MAX_DIMS) memcpy(p.i, ints, sizeof(int64_t) * (size_t)n);
    return gb_val_fn_at(fn, 1, &x, &p, file, line);
}

gb_val *gb_call_at(gb_trace *tr, const char *path, int nargs, gb_val *const *args, const char *file, int line) {
    return gb_call_hooked_at(tr, path, nargs, args, false, file, line);
}

gb_val *gb_call_hooked_at(gb_trace *tr, const char *path, int nargs, gb_val *const *args, bool hook, const char *file,
                          int line) {
    for (int i = 0; i < nargs && nargs <= GB__MAX_ARGS; i++)
        if (!gb__tr_same_trace(args[i], args[0])) return NULL;
    if (nargs >= 1 && args[0] && args[0]->tr != tr) return gb__fail_null(GB_ERR_ARG, "call: the value belongs to another trace");
    gb_val *v = gb__tr_node(tr, GB_TRACE_OP_CALL, nargs >= 1 && nargs <= GB__MAX_ARGS ? nargs : 0, args, file, line);
    if (!v) return NULL;
    gb__tr_node_text(v, path ? path : "");
    v->u.get.call = hook;
    if (nargs < 1 || nargs > GB__MAX_ARGS) {
        gb__fail(GB_ERR_ARG, "call: a module call takes 1 to %d values, got %d", GB__MAX_ARGS, nargs);
        gb__tr_def_fail(v);
    } else if (!(v->u.get.module = gb_module_find(tr->model, v->text))) {
        gb__tr_def_fail(v);
    }
    return v;
}

bool gb_val_saved(const gb_val *v) { return v && v->saved; }

gb_val *gb_save(gb_val *v) {
    if (v) v->saved = true;
    return v;
}

gb_val *gb_set_at(gb_val *target, gb_val *value, const char *file, int line) {
    if (!gb__tr_same_trace(target, value)) return NULL;
    return gb__tr_node(target->tr, GB_TRACE_OP_SET, 2, (gb_val *[]){target, value}, file, line);
}

gb_val *gb_set_index_at(gb_val *target, const char *expr, gb_val *value, const char *file, int line) {
    if (!gb__tr_same_trace(target, value)) return NULL;
    gb_val *v = gb__tr_node(target->tr, GB_TRACE_OP_SET_INDEX, 2, (gb_val *[]){target, value}, file, line);
    if (v && gb__tr_parse_index(v, expr) != GB_OK) gb__tr_def_fail(v);
    return v;
}

gb_val *gb_trace_print_at(gb_trace *tr, const char *format, int nargs, gb_val *const *args, const char *file, int line) {
    int holes = 0;
    for (const char *f = format ? format : ""; *f; f++) {
        if ((f[0] == '{' && f[1] == '{') || (f[0] == '}' && f[1] == '}')) f++;
        else if (f[0] == '{' && f[1] == '}') holes++, f++;
        else if (*f == '{' || *f == '}') holes = -1000;
    }
    if (nargs < 0 || nargs > GB__MAX_ARGS || holes != nargs)
        return gb__fail_null(GB_ERR_ARG, "print: the format '%s' needs one {} per value (%d values, at most %d), and "
                                         "{{ or }} for a brace", format ? format : "(null)", nargs, GB__MAX_ARGS);
    for (int i = 0; i < nargs; i++)
        if (!args[i] || args[i]->tr != tr)
            return gb__fail_null(GB_ERR_ARG, "print: %s", !args[i] ? "a value handle is NULL (an earlier definition "
                                 "failed to allocate)" : "a value of another trace");
    gb_val *v = gb__tr_node(tr, GB_TRACE_OP_LOG, nargs, args, file, line);
    if (v) gb__tr_node_text(v, format);
    return v;
}

gb_val *gb_trace_log_at(const char *label, gb_val *x, const char *file, int line) {
    if (!x) return gb__fail_null(GB_ERR_ARG, "trace_log: a value handle is NULL (an earlier definition failed to allocate)");
    /* print(label, x): the label's braces doubled, then " {}" */
    size_t n = strlen(label ? label : "");
    char stack[256], *format = 2 * n + 4 <= sizeof stack ? stack : gb__malloc(2 * n + 4, "trace_log");
    if (!format) return NULL;
    char *o = format;
    for (const char *c = label ? label : ""; *c; c++) {
        if (*c == '{' || *c == '}') *o++ = *c;
        *o++ = *c;
    }
    if (n) *o++ = ' ';
    memcpy(o, "{}", 3);
    gb_val *v = gb_trace_print_at(x->tr, format, 1, &x, file, line);
    if (format != stack) free(format);
    return v;
}

gb_val *gb_stop_at(gb_val *x, const char *file, int line) { return gb__tr_node(x->tr, GB_TRACE_OP_STOP, 1, &x, file, line); }

gb_val *gb_skip_at(gb_trace *tr, const char *path, gb_val *value, const char *file, int line) {
    gb_val *v = gb__tr_node(tr, GB_TRACE_OP_SKIP, 1, &value, file, line);
    if (!v) return NULL;
    gb__tr_node_text(v, path);
    if (!(v->u.get.module = gb_module_find(tr->model, path))) gb__tr_def_fail(v);
    return v;
}

gb_val *gb_requires_grad_at(gb_val *x, const char *file, int line) {
    return gb__tr_node(x->tr, GB_TRACE_OP_REQUIRES_GRAD, 1, &x, file, line);
}

gb_val *gb_val_backward_at(gb_val *x, const char *file, int line) {
    return gb__tr_node(x->tr, GB_TRACE_OP_BACKWARD, 1, &x, file, line);
}

gb_val *gb_if_at(gb_trace *tr, gb_val *cond, const char *file, int line) {
    gb_val *v = gb__tr_node(tr, GB_TRACE_OP_IF, 1, &cond, file, line);
    return v && GB_ARR_PUT(tr->conds, v, "if") ? v : NULL;
}

void gb_end_if(gb_trace *tr) {
    if (arrlen(tr->conds)) (void)arrpop(tr->conds);
}


gb_status gb_trace_use_edits(gb_trace *tr, gb_trace *edits) {
    if (edits && (edits->input || arrlen(edits->invokes) || edits->model != tr->model || edits == tr || edits->edits))
        return gb__fail(GB_ERR_ARG, "trace_use_edits: an editor is a trace of the same model made without an input, "
                                    "with no invokes and no edits of its own");
    tr->edits = edits;
    return GB_OK;
}

/* ---- compiling: what every run needs, derived once ------------------------ */

static bool gb__tr_is_getter(gb_trace_op op) { return gb__tr_is_event_fed(op) && op != GB_TRACE_OP_CONST; }

/* Each node's users (the nodes reading it as an input or a condition), as
 * runs of tr->user_list (sized by the caller) in definition order, for the
 * pump's wake-ups; and what repeats at every call of a GB_CALL_ALL getter. */
static void gb__tr_link_users(gb_trace *tr) {
    ptrdiff_t n = arrlen(tr->nodes);
    for (ptrdiff_t i = 0; i < n; i++) tr->nodes[i]->nusers = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        for (int j = 0; j < v->nargs; j++) v->arg[j]->nusers++;
        if (v->cond) v->cond->nusers++;
    }
    gb_val **next = tr->user_list;
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        v->users = v->nusers ? next : NULL; /* no edges, no list */
        if (v->nusers) next += v->nusers;
        v->nusers = 0;
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        for (int j = 0; j < v->nargs; j++) v->arg[j]->users[v->arg[j]->nusers++] = v;
        if (v->cond) v->cond->users[v->cond->nusers++] = v;
    }
    /* Nodes read only earlier nodes: one pass in definition order finds
     * what repeats, and pins what a repeating node reads. */
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        v->repeats = gb__tr_is_getter(v->op) && v->u.get.call == GB_CALL_ALL; /* a skip's call is 0 */
        for (int j = 0; j < v->nargs; j++) v->repeats |= v->arg[j]->repeats;
        if (v->cond) v->repeats |= v->cond->repeats;
        v->pinned = false;
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        if (!v->repeats) continue;
        for (int j = 0; j < v->nargs; j++) v->arg[j]->pinned = true;
        if (v->cond) v->cond->pinned = true;
    }
}

/* A point of the model that getters name: one per (module, event, call), or
 * per named point path. */
typedef struct gb__tr_point_key {
    gb_module *module;
    int kind, call;
} gb__tr_point_key;
typedef struct gb__tr_point_entry {
    gb__tr_point_key key;
    int value;
} gb__tr_point_entry;

/* The point a getter or skip waits on, made when first named; -1 when out
 * of memory. */
static int gb__tr_point_for(gb_trace *tr, gb_val *v, gb__tr_point_entry **point_at) {
    gb__tr_point_key key;
    memset(&key, 0, sizeof key); /* hashed as bytes */
    key.module = v->u.get.module;
    key.kind = v->op == GB_TRACE_OP_OUTPUT ? GB_EVENT_OUTPUT : v->op == GB_TRACE_OP_POINT ? GB_EVENT_POINT : GB_EVENT_INPUT;
    key.call = v->op == GB_TRACE_OP_SKIP ? 0 : v->u.get.call;
    bool named = v->op == GB_TRACE_OP_POINT;
    if (!named) {
        ptrdiff_t i = GB_HM_GETI(*point_at, key);
        if (i >= 0) return (*point_at)[i].value;
    } else {
        for (int i = 0; i < tr->npoints; i++) {
            gb__tr_point *p = &tr->points[i];
            if (p->kind == GB_EVENT_POINT && p->call == key.call && !strcmp(p->path, v->text)) return i;
        }
    }
    tr->points[tr->npoints] = (gb__tr_point){key.module, v->text, key.kind, key.call, NULL, NULL}; /* sized by the caller */
    if (!named && !GB_HM_PUT(*point_at, key, tr->npoints, "trace_run: points")) return -1;
    return tr->npoints++;
}

/* Group getters (and skips) by point, in definition order, into
 * tr->points (sized by the caller for one point per getter). */
static gb_status gb__tr_group_points(gb_trace *tr) {
    gb__tr_point_entry *point_at = NULL; /* stb_ds hash map: the module points among them */
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) {
        gb_val *v = tr->nodes[i];
        if (!gb__tr_is_getter(v->op)) continue;
        if ((v->point = gb__tr_point_for(tr, v, &point_at)) < 0) {
            hmfree(point_at);
            return GB_ERR_ALLOC;
        }
        gb__tr_point *p = &tr->points[v->point];
        v->next_getter = NULL;
        if (p->last) p->last->next_getter = v;
        else p->getters = v;
        p->last = v;
    }
    hmfree(point_at);
    return GB_OK;
}

gb_status gb__tr_graph_compile(gb_trace *tr) {
    if (tr->compiled == arrlen(tr->nodes)) return GB_OK;
    gb__tr_free_compiled(tr);
    ptrdiff_t n = arrlen(tr->nodes), edges = 0, getters = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        edges += v->nargs + (v->cond != NULL);
        getters += gb__tr_is_getter(v->op);
        if (v->op == GB_TRACE_OP_GRAD && !GB_ARR_PUT(tr->grads, v, "trace_run")) {
            gb__tr_free_compiled(tr);
            return GB_ERR_ALLOC;
        }
    }
    /* One block: at most a point per getter, then the users lists. */
    size_t bytes = (size_t)getters * sizeof *tr->points + (size_t)edges * sizeof *tr->user_list;
    if (bytes && !(tr->points = malloc(bytes))) {
        gb__tr_free_compiled(tr);
        return gb__fail(GB_ERR_ALLOC, "trace_run: out of memory linking %lld nodes", (long long)n);
    }
    tr->user_list = tr->points ? (gb_val **)(tr->points + getters) : NULL;
    gb__tr_link_users(tr);
    if (gb__tr_group_points(tr) != GB_OK) {
        gb__tr_free_compiled(tr);
        return GB_ERR_ALLOC;
    }
    tr->compiled = n;
    return GB_OK;
}
