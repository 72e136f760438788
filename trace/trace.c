/* The tracing layer: an intervention graph of plain nodes, interleaved with
 * one forward pass through hook events (hooks/), and a shape-only scan.
 *
 * Data flow of a run: gb_trace_run builds a hook registry with one hook per
 * distinct point (module, event, call) that getters name, and runs the model.
 * When a point's event fires, every getter of that point receives the event's
 * values at once (so a node may both read and replace a point), then the
 * pump executes, in definition order, every pending node whose inputs now
 * exist. Gradient getters are armed with one autograd hook per tensor when
 * their tensor exists and fire, the same way, during a backward started by
 * a backward node. Invokes and generation live in batch.c, statements in
 * statement.c. */
#include "trace_impl.h"

#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

static const char *const gb__trace_op_names[GB_TRACE_OP_COUNT] = {
#define GB__X(e, n) n,
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
    return tr;
}

static void gb__reset_node(gb_val *v) {
    gb_values_clear(&v->value);
    v->state = v->op == GB_TRACE_OP_CONST ? GB__STATE_DONE : GB__STATE_PENDING;
    if (v->op == GB_TRACE_OP_CONST) gb_values_push(&v->value, gb_tensor_ref(v->constant));
    v->armed = NULL;
    v->live_grad = NULL;
    v->uses_left = v->uses;
}

/* Take our gradient hooks off the tensors of an earlier run: they may
 * outlive the trace, and a later backward must not call into it. */
static void gb__disarm(gb_trace *tr) {
    for (ptrdiff_t i = 0; i < arrlen(tr->armed); i++) {
        gb_grad_hook_remove(tr->armed[i], tr->armed_hook[i]);
        gb_tensor_free(tr->armed[i]);
    }
    arrfree(tr->armed);
    arrfree(tr->armed_hook);
}

static void gb__free_points(gb_trace *tr) {
    for (int i = 0; i < tr->npoints; i++) free(tr->points[i].path);
    free(tr->points);
    tr->points = NULL;
    tr->npoints = 0;
    hmfree(tr->point_at);
}

void gb_trace_free(gb_trace *tr) {
    if (!tr) return;
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) {
        gb_val *v = tr->nodes[i];
        gb_values_clear(&v->value);
        gb_tensor_free(v->constant);
        free(v->desc);
    }
    arrfree(tr->nodes);
    for (gb__block *b = tr->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    for (gb__chunk *c = tr->chunks, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(tr->user_list);
    arrfree(tr->ready);
    arrfree(tr->conds);
    gb__disarm(tr);
    gb__free_points(tr);
    gb_tensor_free(tr->input);
    for (ptrdiff_t i = 0; i < arrlen(tr->invokes); i++) gb_tensor_free(tr->invokes[i]);
    arrfree(tr->invokes);
    arrfree(tr->invoke_start);
    gb_tensor_free(tr->run_input);
    gb_tensor_free(tr->run_mask);
    gb_tensor_free(tr->generated);
    gb_tensor_free(tr->mask);
    gb_tensor_free(tr->pos);
    shfree(tr->names);
    free(tr->def_error);
    free(tr->run_error);
    free(tr);
}

void gb_trace_set_validate(gb_trace *tr, bool on) { tr->validate = on; }

gb_val *gb__trace_name(gb_trace *tr, const char *name, size_t len) {
    char key[64];
    if (!tr->names || len >= sizeof key) return NULL;
    memcpy(key, name, len);
    key[len] = 0;
    return shget(tr->names, key);
}

gb_status gb__trace_set_name(gb_trace *tr, const char *name, gb_val *v) {
    if (!tr->names) sh_new_strdup(tr->names);
    shput(tr->names, name, v);
    return GB_OK;
}

gb_module *gb__trace_model(const gb_trace *tr) { return tr->model; }
gb_status gb__trace_def_status(const gb_trace *tr) { return tr->def_status; }
gb_status gb__trace_def_error(const gb_trace *tr) { return gb__fail(tr->def_status, "%s", tr->def_error); }

void gb_trace_set_attention_mask(gb_trace *tr, gb_tensor *mask) {
    gb_tensor_free(tr->mask);
    tr->mask = gb_tensor_ref(mask);
}

void gb_trace_set_position_ids(gb_trace *tr, gb_tensor *pos) {
    gb_tensor_free(tr->pos);
    tr->pos = gb_tensor_ref(pos);
}
void gb_trace_set_log(gb_trace *tr, FILE *f) { tr->log = f; }

/* ---- describing nodes --------------------------------------------------- */

static const char *gb__getter_event(const gb_val *v) {
    return v->op == GB_TRACE_OP_INPUT ? "input" : v->op == GB_TRACE_OP_OUTPUT ? "output" : NULL;
}

/* A Python-like expression for v, used in errors and graph dumps. */
const char *gb_val_text(gb_val *v) {
    if (v->desc) return v->desc;
    char d[256];
    size_t n = sizeof d;
    const char *a = v->nargs > 0 ? gb_val_text(v->arg[0]) : "", *b = v->nargs > 1 ? gb_val_text(v->arg[1]) : "";
    char idx[128] = "";
    if ((v->op == GB_TRACE_OP_INDEX || v->op == GB_TRACE_OP_SET_INDEX) && v->index)
        gb_index_format(v->index, idx, sizeof idx);
    switch (v->op) {
    case GB_TRACE_OP_OUTPUT:
    case GB_TRACE_OP_INPUT:
        if (v->call == GB_CALL_ALL) snprintf(d, n, "%s.%s[every call]", *v->text ? v->text : "model", gb__getter_event(v));
        else if (v->call) snprintf(d, n, "%s%s%s[call %d]", *v->text ? v->text : "model", ".", gb__getter_event(v), v->call);
        else snprintf(d, n, "%s.%s", *v->text ? v->text : "model", gb__getter_event(v));
        break;
    case GB_TRACE_OP_POINT: snprintf(d, n, "%s", v->text); break;
    case GB_TRACE_OP_GRAD: snprintf(d, n, "%s.grad", a); break;
    case GB_TRACE_OP_CONST: {
        const gb_tensor *t = v->constant;
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
    case GB_TRACE_OP_SUM:
    case GB_TRACE_OP_MEAN:
    case GB_TRACE_OP_MAX:
    case GB_TRACE_OP_ARGMAX:
        snprintf(d, n, "%s.%s(dim=%d%s)", a, gb__trace_op_names[v->op], v->dim, v->keepdim ? ", keepdim=True" : "");
        break;
    case GB_TRACE_OP_SUM_ALL: snprintf(d, n, "%s.sum()", a); break;
    case GB_TRACE_OP_SOFTMAX: snprintf(d, n, "%s.softmax(dim=%d)", a, v->dim); break;
    case GB_TRACE_OP_CLONE: snprintf(d, n, "%s.clone()", a); break;
    case GB_TRACE_OP_APPLY: snprintf(d, n, "apply(%s%s)", a, v->nargs > 1 ? ", ..." : ""); break;
    case GB_TRACE_OP_SET: snprintf(d, n, "%s = %s", a, b); break;
    case GB_TRACE_OP_SET_INDEX: snprintf(d, n, "%s%s = %s", a, idx, b); break;
    case GB_TRACE_OP_LOG: snprintf(d, n, "log(\"%s\", %s)", v->text ? v->text : "", a); break;
    case GB_TRACE_OP_STOP: snprintf(d, n, "%s.stop()", a); break;
    case GB_TRACE_OP_SKIP: snprintf(d, n, "%s.skip(%s)", *v->text ? v->text : "model", a); break;
    case GB_TRACE_OP_REQUIRES_GRAD: snprintf(d, n, "%s.requires_grad = True", a); break;
    case GB_TRACE_OP_BACKWARD: snprintf(d, n, "%s.backward()", a); break;
    case GB_TRACE_OP_IF: snprintf(d, n, "if %s", a); break;
    default: snprintf(d, n, "?"); break;
    }
    v->desc = strdup(d);
    return v->desc ? v->desc : "(out of memory)";
}

char *gb_trace_graph(const gb_trace *tr) {
    char *out = NULL; /* stb_ds char array */
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) {
        gb_val *v = tr->nodes[i];
        char line[512];
        int k = snprintf(line, sizeof line, "%%%d = %s", v->id, gb__trace_op_names[v->op]);
        for (int j = 0; j < v->nargs && k < (int)sizeof line; j++) k += snprintf(line + k, sizeof line - (size_t)k, " %%%d", v->arg[j]->id);
        if (k < (int)sizeof line && v->cond) k += snprintf(line + k, sizeof line - (size_t)k, " if %%%d", v->cond->id);
        if (k < (int)sizeof line)
            k += snprintf(line + k, sizeof line - (size_t)k, "%s  # %s  (%s:%d)\n", v->saved ? " saved" : "",
                          gb_val_text(v), v->file, v->line);
        memcpy(arraddnptr(out, strlen(line)), line, strlen(line));
    }
    arrput(out, 0);
    char *s = strdup(out);
    arrfree(out);
    return s;
}

/* ---- definition --------------------------------------------------------- */

/* Record the first definition error, with its site. */
static void gb__def_fail(gb_val *v) {
    gb_trace *tr = v->tr;
    v->poisoned = true;
    if (tr->def_status != GB_OK) return;
    tr->def_status = gb_last_status() != GB_OK ? gb_last_status() : GB_ERR_ARG;
    gb__error_prefix("%s:%d", v->file, v->line);
    tr->def_error = strdup(gb_last_error());
}

/* n bytes (16-aligned) that live as long as the trace. */
static void *gb__trace_alloc(gb_trace *tr, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!tr->chunks || tr->chunks->size - tr->chunks->used < n) {
        size_t size = n > GB__CHUNK_BYTES ? n : GB__CHUNK_BYTES;
        gb__chunk *c = malloc(sizeof *c + size);
        if (!c) return NULL;
        *c = (gb__chunk){tr->chunks, 0, size};
        tr->chunks = c;
    }
    void *p = tr->chunks->data + tr->chunks->used;
    tr->chunks->used += n;
    return p;
}

static char *gb__trace_strdup(gb_trace *tr, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = gb__trace_alloc(tr, n);
    return d ? memcpy(d, s, n) : NULL;
}

static gb_val *gb__node(gb_trace *tr, gb_trace_op op, int nargs, gb_val *const *args, const char *file, int line) {
    if (!tr->blocks || tr->blocks->used == GB__BLOCK_NODES) {
        gb__block *b = malloc(sizeof *b);
        if (!b) return NULL; /* out of memory: callers return NULL, the documented exception */
        b->next = tr->blocks;
        b->used = 0;
        tr->blocks = b;
    }
    gb_val *v = &tr->blocks->node[tr->blocks->used++];
    memset(v, 0, sizeof *v);
    v->tr = tr;
    v->id = (int)arrlen(tr->nodes);
    v->op = op;
    v->file = file;
    v->line = line;
    v->pick = -1;
    v->invoke = tr->cur_invoke;
    v->cond = arrlen(tr->conds) ? arrlast(tr->conds) : NULL;
    v->nargs = nargs;
    for (int i = 0; i < nargs; i++) {
        v->arg[i] = args[i];
        args[i]->uses++;
        if (args[i]->poisoned) v->poisoned = true;
    }
    if (v->cond) v->cond->uses++;
    arrput(tr->nodes, v);
    gb__reset_node(v);
    return v;
}

/* Values combine only within one trace; NULL (with an error) otherwise. */
static bool gb__same_trace(gb_val *a, gb_val *b) {
    if (a && b && a->tr == b->tr) return true;
    gb__fail(GB_ERR_ARG, "trace: %s", !a || !b ? "a value handle is NULL (an earlier definition failed to allocate)"
                                                : "values of two different traces cannot be combined");
    return false;
}

gb_val *gb_getter_at(gb_trace *tr, const char *path, int kind, int call, const char *file, int line) {
    gb_trace_op op = kind == 0 ? GB_TRACE_OP_OUTPUT : kind == 1 ? GB_TRACE_OP_INPUT : GB_TRACE_OP_POINT;
    gb_val *v = gb__node(tr, op, 0, NULL, file, line);
    if (!v) return NULL;
    v->text = gb__trace_strdup(tr, path);
    v->call = call;
    if (call < 0 && call != GB_CALL_ALL) {
        gb__fail(GB_ERR_INDEX, "trace: call index %d is negative (GB_CALL_ALL is every call)", call);
        gb__def_fail(v);
    } else if (op != GB_TRACE_OP_POINT) {
        /* Unknown paths fail here, at the user's line, not during the run. */
        if (!(v->module = gb_module_find(tr->model, path))) gb__def_fail(v);
    }
    return v;
}

static gb_status gb__parse_index(gb_val *v, const char *expr) {
    v->index = gb__trace_alloc(v->tr, sizeof *v->index);
    if (!v->index) return gb__fail(GB_ERR_ALLOC, "trace: out of memory for an index expression");
    return v->index ? gb_index_parse(expr, v->index) : GB_ERR_ALLOC;
}

gb_val *gb_grad_at(gb_val *x, const char *file, int line) { return gb__node(x->tr, GB_TRACE_OP_GRAD, 1, &x, file, line); }

gb_val *gb_val_index_at(gb_val *x, const char *expr, const char *file, int line) {
    gb_val *v = gb__node(x->tr, GB_TRACE_OP_INDEX, 1, &x, file, line);
    if (v && gb__parse_index(v, expr) != GB_OK) gb__def_fail(v);
    return v;
}

gb_val *gb_val_binary_at(gb_trace_op op, gb_val *a, gb_val *b, const char *file, int line) {
    if (!gb__same_trace(a, b)) return NULL;
    return gb__node(a->tr, op, 2, (gb_val *[]){a, b}, file, line);
}

gb_val *gb_val_reduce_at(gb_trace_op op, gb_val *x, int dim, bool keepdim, const char *file, int line) {
    gb_val *v = gb__node(x->tr, op, 1, &x, file, line);
    if (v) {
        v->dim = dim;
        v->keepdim = keepdim;
    }
    return v;
}

gb_val *gb_val_unary_at(gb_trace_op op, gb_val *x, int dim, const char *file, int line) {
    return gb_val_reduce_at(op, x, dim, false, file, line);
}

gb_val *gb_const_at(gb_trace *tr, gb_tensor *t, const char *file, int line) {
    gb_val *v = gb__node(tr, GB_TRACE_OP_CONST, 0, NULL, file, line);
    if (!v) return NULL;
    v->constant = gb_tensor_ref(t);
    gb__reset_node(v);
    return v;
}

gb_val *gb_scalar_at(gb_trace *tr, float x, const char *file, int line) {
    gb_tensor *t = gb_scalar_tensor(x);
    gb_val *v = t ? gb_const_at(tr, t, file, line) : NULL;
    gb_tensor_free(t);
    return v;
}

gb_val *gb_apply_at(gb_trace *tr, gb_apply_fn fn, void *ctx, int nargs, gb_val *const *args, const char *file,
                    int line) {
    if (nargs < 0 || nargs > GB__MAX_ARGS) nargs = GB__MAX_ARGS + 1;
    gb_val *v = gb__node(tr, GB_TRACE_OP_APPLY, nargs <= GB__MAX_ARGS ? nargs : 0, args, file, line);
    if (!v) return NULL;
    v->fn = fn;
    v->ctx = ctx;
    if (nargs > GB__MAX_ARGS || !fn) {
        gb__fail(GB_ERR_ARG, "apply: needs a function and at most %d arguments", GB__MAX_ARGS);
        gb__def_fail(v);
    }
    return v;
}

gb_val *gb_save(gb_val *v) {
    if (v) v->saved = true;
    return v;
}

gb_val *gb_set_at(gb_val *target, gb_val *value, const char *file, int line) {
    if (!gb__same_trace(target, value)) return NULL;
    return gb__node(target->tr, GB_TRACE_OP_SET, 2, (gb_val *[]){target, value}, file, line);
}

gb_val *gb_set_index_at(gb_val *target, const char *expr, gb_val *value, const char *file, int line) {
    if (!gb__same_trace(target, value)) return NULL;
    gb_val *v = gb__node(target->tr, GB_TRACE_OP_SET_INDEX, 2, (gb_val *[]){target, value}, file, line);
    if (v && gb__parse_index(v, expr) != GB_OK) gb__def_fail(v);
    return v;
}

gb_val *gb_log_at(const char *label, gb_val *x, const char *file, int line) {
    gb_val *v = gb__node(x->tr, GB_TRACE_OP_LOG, 1, &x, file, line);
    if (v) v->text = gb__trace_strdup(v->tr, label ? label : "");
    return v;
}

gb_val *gb_stop_at(gb_val *x, const char *file, int line) { return gb__node(x->tr, GB_TRACE_OP_STOP, 1, &x, file, line); }

gb_val *gb_skip_at(gb_trace *tr, const char *path, gb_val *value, const char *file, int line) {
    gb_val *v = gb__node(tr, GB_TRACE_OP_SKIP, 1, &value, file, line);
    if (!v) return NULL;
    v->text = gb__trace_strdup(tr, path);
    if (!(v->module = gb_module_find(tr->model, path))) gb__def_fail(v);
    return v;
}

gb_val *gb_requires_grad_at(gb_val *x, const char *file, int line) {
    return gb__node(x->tr, GB_TRACE_OP_REQUIRES_GRAD, 1, &x, file, line);
}

gb_val *gb_val_backward_at(gb_val *x, const char *file, int line) {
    return gb__node(x->tr, GB_TRACE_OP_BACKWARD, 1, &x, file, line);
}

gb_val *gb_if_at(gb_trace *tr, gb_val *cond, const char *file, int line) {
    gb_val *v = gb__node(tr, GB_TRACE_OP_IF, 1, &cond, file, line);
    if (v) arrput(tr->conds, v);
    return v;
}

void gb_end_if(gb_trace *tr) {
    if (arrlen(tr->conds)) (void)arrpop(tr->conds);
}

/* ---- running nodes ------------------------------------------------------ */

static gb_tensor *gb__tensor_of(gb_val *v) { return v->value.n > 0 ? v->value.v[0] : NULL; }

/* Record shape (for gb_val_shape) and mark done. */
static void gb__done(gb_val *v) {
    v->state = GB__STATE_DONE;
    gb_tensor *t = gb__tensor_of(v);
    if (t) {
        v->ndim = gb_tensor_ndim(t);
        memcpy(v->shape, gb_tensor_shape(t), sizeof(int64_t) * (size_t)v->ndim);
        v->has_shape = true;
    }
}

/* A node failed: remember the first failure as "site: message (expression)". */
static gb_status gb__node_fail(gb_val *v, gb_status st) {
    gb_trace *tr = v->tr;
    if (st == GB_OK) st = GB_ERR_STATE;
    if (tr->run_status == GB_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", gb_last_error());
        gb__fail(st, "%s:%d: %s (%s)", v->file, v->line, msg, gb_val_text(v));
        tr->run_status = st;
        free(tr->run_error);
        tr->run_error = strdup(gb_last_error());
    }
    return tr->run_status;
}

/* Free a value once nothing later reads it, unless saved. */
static void gb__release_use(gb_val *v) {
    if (--v->uses_left <= 0 && !v->saved && !v->pinned && v->op != GB_TRACE_OP_CONST) gb_values_clear(&v->value);
}

static gb_status gb__set_value(gb_val *v, gb_tensor *t) {
    if (!t) return gb__node_fail(v, gb_last_status());
    gb_values_clear(&v->value);
    gb_values_push(&v->value, t);
    gb__done(v);
    return GB_OK;
}

/* Whether an in-place edit of v still reaches the model: v is (a view of) a
 * module value whose event is being handled, or of a gradient flowing now. */
static bool gb__edit_is_live(gb_val *v) {
    while (v->op == GB_TRACE_OP_INDEX) v = v->arg[0];
    if (v->tr->scanning) return true;
    if (v->op == GB_TRACE_OP_GRAD) return v->live_grad != NULL;
    if (v->op == GB_TRACE_OP_OUTPUT || v->op == GB_TRACE_OP_INPUT || v->op == GB_TRACE_OP_POINT)
        return v->point && v->point->live;
    return true; /* a value of the graph's own (a clone, a sum): editing it affects only the graph */
}

/* The live slot a SET writes into: a getter's event value, a tuple element of
 * it, or a gradient being propagated. */
static gb_status gb__set_target(gb_val *set, gb_val *target, gb_tensor *value) {
    gb_val *g = target;
    int elem = 0;
    if (g->op == GB_TRACE_OP_INDEX && g->pick >= 0) {
        elem = g->pick;
        g = g->arg[0];
    } else if ((g->op == GB_TRACE_OP_OUTPUT && g->is_tuple)) {
        gb__fail(GB_ERR_ARG, "set: %s is a tuple; set one of its elements, e.g. [0]", gb_val_text(g));
        return gb__node_fail(set, GB_ERR_ARG);
    }
    if (g->op == GB_TRACE_OP_GRAD && set->tr->scanning) {
        /* shapes only: nothing flows during a scan */
    } else if (g->op == GB_TRACE_OP_GRAD) {
        if (!g->live_grad) {
            gb__fail(GB_ERR_STATE, "set: the gradient %s is no longer flowing (value used before it can exist)",
                     gb_val_text(g));
            return gb__node_fail(set, GB_ERR_STATE);
        }
        gb_tensor_free(*g->live_grad);
        *g->live_grad = gb_tensor_ref(value);
        /* Gradient getters of the same tensor defined after this set read the new value. */
        for (ptrdiff_t i = 0; i < arrlen(set->tr->nodes); i++) {
            gb_val *o = set->tr->nodes[i];
            if (o->op == GB_TRACE_OP_GRAD && o->armed == g->armed && o->id > set->id && o->value.n > 0)
                gb_values_set(&o->value, 0, gb_tensor_ref(value));
        }
    } else if (g->op == GB_TRACE_OP_OUTPUT || g->op == GB_TRACE_OP_INPUT || g->op == GB_TRACE_OP_POINT) {
        if (!g->point || !g->point->live) {
            gb__fail(GB_ERR_STATE, "set: %s was already computed when the value became available (value used "
                                   "before it can exist)", gb_val_text(g));
            return gb__node_fail(set, GB_ERR_STATE);
        }
        if (elem >= g->point->live->n) {
            gb__fail(GB_ERR_INDEX, "set: %s has %d elements, no element %d", gb_val_text(g), g->point->live->n, elem);
            return gb__node_fail(set, GB_ERR_INDEX);
        }
        gb_tensor *whole = gb__invoke_replace(set->tr, g->invoke, g->point->live->v[elem], value);
        if (!whole) return gb__node_fail(set, gb_last_status());
        gb_values_set(g->point->live, elem, whole);
        /* Getters of the same point defined after this set read the new value. */
        for (gb_val *o = g->point->getters; o; o = o->next_getter) {
            if (o->id > set->id && o->value.n > elem)
                gb_values_set(&o->value, elem, gb__invoke_view(set->tr, o->invoke, whole));
        }
    } else {
        gb__fail(GB_ERR_ARG, "set: %s is not a module input, output, tuple element or gradient; use gb_set_index "
                             "to edit a part of a value", gb_val_text(target));
        return gb__node_fail(set, GB_ERR_ARG);
    }
    if (target->value.n > 0) gb_values_set(&target->value, 0, gb_tensor_ref(value));
    return GB_OK;
}

static gb_status gb__trace_grad_hook(gb_tensor *t, gb_tensor **grad, void *ctx);

static bool gb__is_event_fed(gb_trace_op op) {
    return op == GB_TRACE_OP_OUTPUT || op == GB_TRACE_OP_INPUT || op == GB_TRACE_OP_POINT || op == GB_TRACE_OP_CONST ||
           op == GB_TRACE_OP_SKIP;
}

/* The invoke whose rows v reads (through index nodes), or -1. */
static int gb__invoke_of(const gb_val *v) {
    while (v->op == GB_TRACE_OP_INDEX) v = v->arg[0];
    return gb__is_event_fed(v->op) ? v->invoke : -1;
}

/* Arm a gradient getter: one autograd hook per tensor serves all of them. */
static gb_status gb__arm_grad(gb_val *v) {
    gb_trace *tr = v->tr;
    if (gb__invoke_of(v->arg[0]) >= 0) {
        gb__fail(GB_ERR_UNSUPPORTED, "grad: gradients of an invoke's values are not supported yet (%s); trace that "
                                     "input alone", gb_val_text(v->arg[0]));
        return gb__node_fail(v, GB_ERR_UNSUPPORTED);
    }
    gb_tensor *t = gb__tensor_of(v->arg[0]);
    if (!t) {
        gb__fail(GB_ERR_ARG, "grad: %s is not a tensor", gb_val_text(v->arg[0]));
        return gb__node_fail(v, GB_ERR_ARG);
    }
    if (tr->scanning) { /* shapes only: the gradient has its tensor's shape */
        gb_tensor *g = gb_empty(gb_tensor_ndim(t), gb_tensor_shape(t), GB_DTYPE_F32);
        return gb__set_value(v, g);
    }
    if (!gb_tensor_requires_grad(t)) {
        gb__fail(GB_ERR_AUTOGRAD,
                 "grad: %s does not require grad; call gb_requires_grad on it first (model parameters are "
                 "frozen by default)", gb_val_text(v->arg[0]));
        return gb__node_fail(v, GB_ERR_AUTOGRAD);
    }
    v->armed = t;
    for (ptrdiff_t i = 0; i < arrlen(tr->armed); i++)
        if (tr->armed[i] == t) return GB_OK;
    int id = gb_grad_hook_add(t, gb__trace_grad_hook, tr);
    if (!id) return gb__node_fail(v, gb_last_status());
    arrput(tr->armed, gb_tensor_ref(t));
    arrput(tr->armed_hook, id);
    return GB_OK;
}

static gb_status gb__binary(gb_val *v, gb_tensor *a, gb_tensor *b) {
    switch (v->op) {
    case GB_TRACE_OP_ADD: return gb__set_value(v, gb_add(a, b));
    case GB_TRACE_OP_SUB: return gb__set_value(v, gb_sub(a, b));
    case GB_TRACE_OP_MUL: return gb__set_value(v, gb_mul(a, b));
    case GB_TRACE_OP_DIV: return gb__set_value(v, gb_div(a, b));
    default: return gb__set_value(v, gb_matmul(a, b));
    }
}

static gb_status gb__log(gb_val *v, gb_tensor *t) {
    if (v->tr->scanning || !v->tr->log) return GB_OK;
    char *s = gb_tensor_str(t);
    if (!s) return gb__node_fail(v, gb_last_status());
    fprintf(v->tr->log, "%s%s%s\n", v->text, *v->text ? " " : "", s);
    free(s);
    return GB_OK;
}

/* Execute one node whose inputs all exist. */
static gb_status gb__exec(gb_val *v) {
    gb_trace *tr = v->tr;
    gb_val *a = v->nargs > 0 ? v->arg[0] : NULL;
    gb_tensor *x = a ? gb__tensor_of(a) : NULL, *y = v->nargs > 1 ? gb__tensor_of(v->arg[1]) : NULL;
    /* A tuple (a block's output) must be indexed first, as in nnsight;
     * only picking an element, setting one, logging or stopping take it whole. */
    for (int j = 0; j < v->nargs; j++) {
        bool whole_ok = j == 0 && (v->op == GB_TRACE_OP_INDEX || v->op == GB_TRACE_OP_SET ||
                                   v->op == GB_TRACE_OP_LOG || v->op == GB_TRACE_OP_STOP);
        if (v->arg[j]->is_tuple && !whole_ok) {
            gb__fail(GB_ERR_ARG, "%s: %s is a tuple; pick an element first, e.g. [0]", gb__trace_op_names[v->op],
                     gb_val_text(v->arg[j]));
            return gb__node_fail(v, GB_ERR_ARG);
        }
    }
    if (a && !x && !(v->op == GB_TRACE_OP_INDEX && a->is_tuple)) {
        gb__fail(GB_ERR_STATE, "trace: %s has no value", gb_val_text(a));
        return gb__node_fail(v, GB_ERR_STATE);
    }
    switch (v->op) {
    case GB_TRACE_OP_INDEX:
        if (a->is_tuple) {
            if (v->index->n != 1 || v->index->item[0].kind != GB_INDEX_KIND_INT) {
                gb__fail(GB_ERR_ARG, "index: %s is a tuple; pick an element with a single integer, e.g. [0]",
                         gb_val_text(a));
                return gb__node_fail(v, GB_ERR_ARG);
            }
            int64_t i = v->index->item[0].start, n = a->value.n;
            if (i < -n || i >= n) {
                gb__fail(GB_ERR_INDEX, "tuple index %lld out of range for a tuple of %lld", (long long)i, (long long)n);
                return gb__node_fail(v, GB_ERR_INDEX);
            }
            v->pick = (int)(i < 0 ? i + n : i);
            return gb__set_value(v, gb_tensor_ref(a->value.v[v->pick]));
        }
        return gb__set_value(v, gb_index_expr_apply(x, v->index));
    case GB_TRACE_OP_ADD:
    case GB_TRACE_OP_SUB:
    case GB_TRACE_OP_MUL:
    case GB_TRACE_OP_DIV:
    case GB_TRACE_OP_MATMUL: return gb__binary(v, x, y);
    case GB_TRACE_OP_SUM: return gb__set_value(v, gb_sum(x, v->dim, v->keepdim));
    case GB_TRACE_OP_MEAN: return gb__set_value(v, gb_mean(x, v->dim, v->keepdim));
    case GB_TRACE_OP_MAX: return gb__set_value(v, gb_max(x, v->dim, v->keepdim));
    case GB_TRACE_OP_ARGMAX: return gb__set_value(v, gb_argmax(x, v->dim, v->keepdim));
    case GB_TRACE_OP_SUM_ALL: return gb__set_value(v, gb_sum_all(x));
    case GB_TRACE_OP_SOFTMAX: return gb__set_value(v, gb_softmax(x, v->dim));
    case GB_TRACE_OP_CLONE: return gb__set_value(v, gb_clone(x));
    case GB_TRACE_OP_APPLY: {
        if (tr->scanning) {
            v->state = GB__STATE_SKIPPED;
            return GB_OK;
        }
        gb_tensor *args[GB__MAX_ARGS];
        for (int i = 0; i < v->nargs; i++) args[i] = gb__tensor_of(v->arg[i]);
        gb_clear_error();
        gb_tensor *r = v->fn(args, v->nargs, v->ctx);
        if (!r && gb_last_status() == GB_OK)
            gb__fail(GB_ERR_STATE, "apply: the function returned NULL without setting an error");
        return gb__set_value(v, r);
    }
    case GB_TRACE_OP_SET: {
        gb_status st = gb__set_target(v, a, y);
        if (st == GB_OK) gb__done(v);
        return st;
    }
    case GB_TRACE_OP_SET_INDEX:
        if (!gb__edit_is_live(a)) {
            gb__fail(GB_ERR_STATE, "set: %s was already computed when the value became available (value used "
                                   "before it can exist)", gb_val_text(a));
            return gb__node_fail(v, GB_ERR_STATE);
        }
        if (gb_index_put_expr_(x, v->index, y) != GB_OK) return gb__node_fail(v, gb_last_status());
        gb__done(v);
        return GB_OK;
    case GB_TRACE_OP_LOG: {
        gb_status st = gb__log(v, x);
        if (st == GB_OK) gb__done(v);
        return st;
    }
    case GB_TRACE_OP_STOP:
        tr->stop = true;
        gb__done(v);
        return GB_OK;
    case GB_TRACE_OP_REQUIRES_GRAD:
        if (gb__invoke_of(a) >= 0) {
            gb__fail(GB_ERR_UNSUPPORTED, "requires_grad: gradients of an invoke's values are not supported yet (%s); "
                                         "trace that input alone", gb_val_text(a));
            return gb__node_fail(v, GB_ERR_UNSUPPORTED);
        }
        if (!tr->scanning && gb_requires_grad_(x, true) != GB_OK) return gb__node_fail(v, gb_last_status());
        gb__done(v);
        return GB_OK;
    case GB_TRACE_OP_BACKWARD: {
        if (tr->scanning) {
            gb__done(v);
            return GB_OK;
        }
        v->state = GB__STATE_RUNNING;
        gb_grad_mode m = gb_enable_grad_begin();
        gb_status st = gb_backward(x, NULL, false);
        gb_grad_mode_end(m);
        if (st != GB_OK && tr->run_status == GB_OK) return gb__node_fail(v, st);
        if (st != GB_OK) return tr->run_status;
        gb__done(v);
        return GB_OK;
    }
    case GB_TRACE_OP_IF: {
        double c = 1;
        if (!tr->scanning && gb_item(x, &c) != GB_OK) return gb__node_fail(v, gb_last_status());
        if (c != 0) gb__done(v);
        else v->state = GB__STATE_SKIPPED;
        return GB_OK;
    }
    default: return GB_OK; /* getters, skips and constants get their values elsewhere */
    }
}


/* ---- the pump ----------------------------------------------------------- */

/* The ready heap holds nodes that may have become runnable (an input or
 * their condition finished), smallest id on top: nodes run in definition
 * order, and an event costs the nodes that read what it produced rather
 * than a walk over the whole graph. */
static void gb__ready_push(gb_trace *tr, gb_val *v) {
    arrput(tr->ready, v);
    gb_val **h = tr->ready;
    for (ptrdiff_t i = arrlen(h) - 1; i > 0;) {
        ptrdiff_t up = (i - 1) / 2;
        if (h[up]->id <= h[i]->id) break;
        gb_val *t = h[up];
        h[up] = h[i], h[i] = t;
        i = up;
    }
}

static gb_val *gb__ready_pop(gb_trace *tr) {
    gb_val **h = tr->ready, *top = h[0];
    ptrdiff_t n = arrlen(h) - 1;
    h[0] = h[n];
    arrsetlen(tr->ready, n);
    for (ptrdiff_t i = 0;;) {
        ptrdiff_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1]->id < h[c]->id) c++;
        if (h[i]->id <= h[c]->id) break;
        gb_val *t = h[c];
        h[c] = h[i], h[i] = t;
        i = c;
    }
    return top;
}

/* v has its value, or was skipped: wake the nodes that read it. */
static void gb__finished(gb_val *v) {
    for (int i = 0; i < v->nusers; i++) gb__ready_push(v->tr, v->users[i]);
}

/* Run every woken node whose inputs now exist, in definition order. */
static gb_status gb__pump(gb_trace *tr) {
    while (arrlen(tr->ready) && tr->run_status == GB_OK) {
        gb_val *v = gb__ready_pop(tr);
        if (v->state != GB__STATE_PENDING || gb__is_event_fed(v->op) || v->armed) continue;
        bool ready = true, skipped = false;
        for (int j = 0; j < v->nargs; j++) {
            ready &= v->arg[j]->state == GB__STATE_DONE;
            skipped |= v->arg[j]->state == GB__STATE_SKIPPED;
        }
        if (v->cond) {
            ready &= v->cond->state == GB__STATE_DONE;
            skipped |= v->cond->state == GB__STATE_SKIPPED;
        }
        if (skipped) v->state = GB__STATE_SKIPPED;
        else if (!ready) continue;
        else if (v->op == GB_TRACE_OP_GRAD) gb__arm_grad(v);
        else gb__exec(v);
        if (v->state != GB__STATE_PENDING && v->state != GB__STATE_RUNNING) {
            for (int j = 0; j < v->nargs; j++) gb__release_use(v->arg[j]);
            if (v->cond) gb__release_use(v->cond);
            gb__finished(v);
        }
    }
    return tr->run_status;
}

static gb_status gb__trace_grad_hook(gb_tensor *t, gb_tensor **grad, void *ctx) {
    gb_trace *tr = ctx;
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) {
        gb_val *v = tr->nodes[i];
        if (v->op != GB_TRACE_OP_GRAD || v->armed != t || v->state != GB__STATE_PENDING) continue;
        v->live_grad = grad;
        gb_values_clear(&v->value);
        gb_values_push(&v->value, gb_tensor_ref(*grad));
        gb__done(v);
        for (int j = 0; j < v->nargs; j++) gb__release_use(v->arg[j]);
        gb__finished(v);
    }
    gb_status st = gb__pump(tr);
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++)
        if (tr->nodes[i]->armed == t) tr->nodes[i]->live_grad = NULL;
    return st;
}

/* The state of v's condition chain: DONE (true or none), SKIPPED (false) or
 * PENDING (not known yet). */
static gb__state gb__cond_state(const gb_val *v) {
    return v->cond ? v->cond->state == GB__STATE_DONE ? GB__STATE_DONE : v->cond->state : GB__STATE_DONE;
}

/* A point of every call fires again: its getters and everything downstream
 * of them go back to pending, to run on this call's values. */
static void gb__rearm(gb__point *p) {
    bool fired = false;
    for (gb_val *v = p->getters; v; v = v->next_getter) fired |= v->state != GB__STATE_PENDING;
    if (!fired) return;
    gb_val **stack = NULL; /* stb_ds array */
    for (gb_val *v = p->getters; v; v = v->next_getter) arrput(stack, v);
    while (arrlen(stack)) {
        gb_val *v = arrpop(stack);
        if (v->state == GB__STATE_PENDING && !v->armed && v->value.n == 0) continue; /* already reset */
        gb__reset_node(v); /* never a constant: constants read nothing */
        for (int i = 0; i < v->nusers; i++) arrput(stack, v->users[i]);
    }
    arrfree(stack);
}

/* The hook of one point: feed its getters, honour skips, pump, stop. */
static gb_status gb__point_hook(gb_event *ev, void *ctx) {
    gb__point *p = ctx;
    gb_trace *tr = p->tr;
    if (p->call != GB_CALL_ALL && ev->call != p->call) return GB_OK;
    if (p->call == GB_CALL_ALL) gb__rearm(p);
    p->live = ev->values;
    for (gb_val *v = p->getters; v; v = v->next_getter) {
        if (v->state != GB__STATE_PENDING) continue;
        if (v->op == GB_TRACE_OP_SKIP) continue;
        if (gb__cond_state(v) == GB__STATE_SKIPPED) { /* under a false condition */
            v->state = GB__STATE_SKIPPED;
            gb__finished(v);
            continue;
        }
        gb_values_clear(&v->value);
        v->is_tuple = v->op == GB_TRACE_OP_OUTPUT && gb_module_returns_tuple(ev->module);
        int n = v->op == GB_TRACE_OP_INPUT ? (ev->values->n > 0) : ev->values->n;
        for (int j = 0; j < n; j++) gb_values_push(&v->value, gb__invoke_view(tr, v->invoke, ev->values->v[j]));
        gb__done(v);
        gb__finished(v);
    }
    gb_status st = gb__pump(tr);
    for (gb_val *v = p->getters; v && st == GB_OK; v = v->next_getter) {
        if (v->op != GB_TRACE_OP_SKIP || v->state != GB__STATE_PENDING) continue;
        gb__state cs = gb__cond_state(v);
        if (cs == GB__STATE_SKIPPED) {
            v->state = GB__STATE_SKIPPED;
            gb__finished(v);
            continue;
        }
        gb_val *val = v->arg[0];
        if (cs == GB__STATE_PENDING) {
            gb__fail(GB_ERR_STATE, "skip: the condition of %s is not known yet when %s runs (value used before "
                                   "it can exist)", gb_val_text(v), *v->text ? v->text : "model");
            st = gb__node_fail(v, GB_ERR_STATE);
            break;
        }
        if (val->state != GB__STATE_DONE) {
            gb__fail(GB_ERR_STATE, "skip: the replacement value %s does not exist yet when %s runs (value used "
                                   "before it can exist)", gb_val_text(val), *v->text ? v->text : "model");
            st = gb__node_fail(v, GB_ERR_STATE);
            break;
        }
        ev->skip = true;
        gb_values_clear(ev->output);
        gb_values_push(ev->output, gb_tensor_ref(gb__tensor_of(val)));
        gb__done(v);
        gb__release_use(val);
        gb__finished(v);
    }
    if (st == GB_OK) st = gb__pump(tr); /* nodes reading a skip's handle */
    p->live = NULL;
    if (st == GB_OK && tr->stop) return GB_STOPPED;
    return st;
}

/* ---- runs --------------------------------------------------------------- */

/* The point a getter or skip waits on: one per (module, event, call), or
 * per named point path. */
static gb__point *gb__point_for(gb_trace *tr, gb_val *v) {
    gb__point_key key;
    memset(&key, 0, sizeof key); /* hashed as bytes */
    key.module = v->module;
    key.kind = v->op == GB_TRACE_OP_OUTPUT ? GB_EVENT_OUTPUT : v->op == GB_TRACE_OP_POINT ? GB_EVENT_POINT : GB_EVENT_INPUT;
    key.call = v->op == GB_TRACE_OP_SKIP ? 0 : v->call;
    const char *path = v->op == GB_TRACE_OP_POINT ? v->text : NULL;
    if (!path) {
        ptrdiff_t i = hmgeti(tr->point_at, key);
        if (i >= 0) return tr->point_at[i].value;
    } else {
        for (int i = 0; i < tr->npoints; i++) {
            gb__point *p = &tr->points[i];
            if (p->path && p->call == key.call && !strcmp(p->path, path)) return p;
        }
    }
    char *copy = path ? strdup(path) : NULL;
    if (path && !copy) return NULL;
    gb__point *p = &tr->points[tr->npoints++]; /* bind sized the array */
    *p = (gb__point){tr, key.module, copy, key.kind, key.call, NULL, NULL, NULL};
    if (!path) hmput(tr->point_at, key, p);
    return p;
}

/* Group getters (and skips) by point and register one hook per point. */
static bool gb__is_getter(gb_trace_op op) { return gb__is_event_fed(op) && op != GB_TRACE_OP_CONST; }

static gb_status gb__bind(gb_trace *tr, gb_hooks *hooks) {
    gb__free_points(tr);
    ptrdiff_t n = 0;
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) n += gb__is_getter(tr->nodes[i]->op);
    if (n && !(tr->points = gb__malloc((size_t)n * sizeof *tr->points, "trace: points"))) return GB_ERR_ALLOC;
    for (ptrdiff_t i = 0; i < arrlen(tr->nodes); i++) {
        gb_val *v = tr->nodes[i];
        if (!gb__is_getter(v->op)) continue;
        if (!(v->point = gb__point_for(tr, v))) return GB_ERR_ALLOC;
        v->next_getter = NULL;
        if (v->point->last) v->point->last->next_getter = v;
        else v->point->getters = v;
        v->point->last = v;
    }
    for (int i = 0; i < tr->npoints; i++) {
        gb__point *p = &tr->points[i];
        int id = p->kind == GB_EVENT_POINT ? gb_hook_add_point(hooks, p->path, gb__point_hook, p)
                                           : gb_hook_add(hooks, p->module, p->kind, 0, gb__point_hook, p);
        if (!id) return gb_last_status();
    }
    return GB_OK;
}

/* Each node's users (the nodes reading it as an input or a condition), as
 * runs of one array in definition order, for the pump's wake-ups. */
static gb_status gb__link_users(gb_trace *tr) {
    ptrdiff_t n = arrlen(tr->nodes), edges = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        v->nusers = 0;
        edges += v->nargs + (v->cond != NULL);
    }
    free(tr->user_list);
    tr->user_list = malloc(sizeof *tr->user_list * (size_t)(edges ? edges : 1));
    if (!tr->user_list) return gb__fail(GB_ERR_ALLOC, "trace_run: out of memory linking %lld nodes", (long long)n);
    for (ptrdiff_t i = 0; i < n; i++) {
        gb_val *v = tr->nodes[i];
        for (int j = 0; j < v->nargs; j++) v->arg[j]->nusers++;
        if (v->cond) v->cond->nusers++;
    }
    gb_val **next = tr->user_list;
    for (ptrdiff_t i = 0; i < n; i++) {
        tr->nodes[i]->users = next;
        next += tr->nodes[i]->nusers;
        tr->nodes[i]->nusers = 0;
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
        v->repeats = gb__is_event_fed(v->op) && v->op != GB_TRACE_OP_CONST && v->call == GB_CALL_ALL;
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
    return GB_OK;
}

/* Make t's graph ready for a run: definition errors reported, nodes reset,
 * users linked, every node that needs no event queued. */
static gb_status gb__prepare(gb_trace *t, bool scanning) {
    if (t->def_status != GB_OK) return gb__fail(t->def_status, "%s", t->def_error);
    if (gb__link_users(t) != GB_OK) return GB_ERR_ALLOC;
    arrsetlen(t->ready, 0);
    for (ptrdiff_t i = 0; i < arrlen(t->nodes); i++) {
        gb__reset_node(t->nodes[i]);
        if (!gb__is_event_fed(t->nodes[i]->op)) gb__ready_push(t, t->nodes[i]);
    }
    gb__disarm(t);
    t->scanning = scanning;
    t->stop = false;
    t->run_status = GB_OK;
    return GB_OK;
}

/* After a run: a getter read before its condition was known, which then
 * was false, was never produced. */
static void gb__finish(gb_trace *t) {
    for (ptrdiff_t i = 0; i < arrlen(t->nodes); i++) {
        gb_val *v = t->nodes[i];
        if (v->state == GB__STATE_DONE && gb__cond_state(v) != GB__STATE_DONE) {
            v->state = GB__STATE_SKIPPED;
            gb_values_clear(&v->value);
        }
    }
    t->scanning = false;
}

static gb_status gb__run(gb_trace *tr, bool scanning) {
    gb_trace *ed = tr->edits;
    gb_status st = gb__prepare(tr, scanning);
    if (st == GB_OK && ed) st = gb__prepare(ed, scanning);
    if (st != GB_OK) return st;

    gb_hooks *hooks = gb_hooks_new(tr->model);
    gb_run *run = gb_run_new();
    gb_tensor *input = NULL;
    st = hooks && run ? gb__batch_inputs(tr) : GB_ERR_ALLOC;
    if (st == GB_OK && ed) st = gb__bind(ed, hooks); /* first: edits are part of the model */
    if (st == GB_OK) st = gb__bind(tr, hooks);
    if (st == GB_OK) {
        if (scanning) gb__meta_push();
        gb_tensor *in0 = tr->run_input;
        input = scanning ? gb_empty(gb_tensor_ndim(in0), gb_tensor_shape(in0), gb_tensor_dtype(in0)) : gb_tensor_ref(in0);
        gb_hooks_attach(hooks, run);
        bool generating = tr->max_new > 0 && !scanning;
        gb_tensor *pos = generating && tr->run_mask && !tr->pos ? gb__positions_from_mask(tr->run_mask) : NULL;
        gb_run_set_attention_mask(run, tr->run_mask);
        gb_run_set_position_ids(run, pos ? pos : tr->pos);
        gb_tensor_free(pos);
        gb_run_use_cache(run, generating);
        gb_values in = {1, {input}}, out = {0};
        /* nodes that need no model value (constants, conditions on them) */
        st = ed ? gb__pump(ed) : GB_OK;
        if (st == GB_OK) st = gb__pump(tr);
        if (st == GB_OK) st = gb_module_call(tr->model, run, &in, &out);
        if (st == GB_OK && generating) st = gb__generate(tr, run, &out);
        gb_values_clear(&out);
        if (scanning) gb__meta_pop();
    }
    if (st == GB_STOPPED) st = GB_OK;
    if (ed) gb__finish(ed);
    gb__finish(tr);
    if (st != GB_OK && ed && ed->run_status != GB_OK) gb__fail(ed->run_status, "edits: %s", ed->run_error);
    else if (st != GB_OK && tr->run_status != GB_OK) gb__fail(tr->run_status, "%s", tr->run_error);
    gb_tensor_free(input);
    gb_run_free(run);
    gb_hooks_free(hooks);
    return st;
}

gb_status gb_trace_use_edits(gb_trace *tr, gb_trace *edits) {
    if (edits && (edits->input || arrlen(edits->invokes) || edits->model != tr->model || edits == tr || edits->edits))
        return gb__fail(GB_ERR_ARG, "trace_use_edits: an editor is a trace of the same model made without an input, "
                                    "with no invokes and no edits of its own");
    tr->edits = edits;
    return GB_OK;
}

gb_status gb_trace_scan(gb_trace *tr) { return gb__run(tr, true); }

gb_status gb_trace_run(gb_trace *tr) {
    if (tr->validate) {
        gb_status st = gb_trace_scan(tr);
        if (st != GB_OK) return st;
    }
    return gb__run(tr, false);
}

/* ---- results ------------------------------------------------------------ */

static gb_tensor *gb__result(const gb_val *v, int i) {
    if (!v->saved)
        return gb__fail_null(GB_ERR_STATE, "value: %s was not saved; call gb_save on it inside the trace "
                                           "(unsaved values are freed during the run)", gb_val_text((gb_val *)v));
    if (v->state != GB__STATE_DONE)
        return gb__fail_null(GB_ERR_STATE, "value: %s was never produced (the run stopped before it, its module "
                                           "never ran, or a condition was false)", gb_val_text((gb_val *)v));
    if (i >= v->value.n || !v->value.v[i])
        return gb__fail_null(GB_ERR_INDEX, "value: %s has %d elements, no element %d", gb_val_text((gb_val *)v),
                             v->value.n, i);
    if (!gb_tensor_data(v->value.v[i]))
        return gb__fail_null(GB_ERR_STATE, "value: %s comes from a scan and has a shape but no data; use "
                                           "gb_val_shape, or gb_trace_run for values", gb_val_text((gb_val *)v));
    return v->value.v[i];
}

gb_tensor *gb_value(const gb_val *v) { return gb__result(v, 0); }
gb_tensor *gb_value_at(const gb_val *v, int i) { return gb__result(v, i); }

gb_status gb_val_shape(const gb_val *v, int *ndim, int64_t *shape) {
    if (!v->has_shape)
        return gb__fail(GB_ERR_STATE, "val_shape: the shape of %s is not known; run gb_trace_scan first",
                        gb_val_text((gb_val *)v));
    *ndim = v->ndim;
    memcpy(shape, v->shape, sizeof(int64_t) * (size_t)v->ndim);
    return GB_OK;
}
