/* Executions: a graph interleaved with forward passes through hook events
 * (hooks/), every value and state a run writes kept in a gb_exec indexed
 * by node id, so the graph itself is only read.
 *
 * Data flow of a run: gb_exec_begin registers one hook per point of the
 * graph (module, event, call) in a fresh registry and runs the nodes that
 * need no model value; each gb_exec_pass runs the model. When a point's
 * event fires, every getter of that point receives the event's values at
 * once (so a node may both read and replace a point), then the pump
 * executes, in definition order, every pending node whose inputs now
 * exist. Gradient getters are armed with one autograd hook per tensor when
 * their tensor exists and fire, the same way, during a backward started by
 * a backward node. gb_exec_end settles what the run left and removes those
 * hooks. */
#include "trace_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

/* ---- slots ---------------------------------------------------------------- */

static gb__tr_slot *gb__tr_slot_of(const gb_exec *ex, const gb_val *v) { return &ex->slot[v->id]; }

static gb_tensor *gb__tr_tensor_of(const gb_exec *ex, const gb_val *v) {
    const gb__tr_slot *s = gb__tr_slot_of(ex, v);
    return s->value.n > 0 ? s->value.v[0] : NULL;
}

/* The one way a node's run state goes back to the start: before a run, and
 * when a getter of every call fires again (gb__tr_rearm). */
static void gb__tr_slot_reset(gb_exec *ex, const gb_val *v) {
    gb__tr_slot *s = gb__tr_slot_of(ex, v);
    gb_values_clear(&s->value);
    s->armed = NULL;
    s->live_grad = NULL;
    s->uses_left = v->uses;
    s->pick = -1;
    s->is_tuple = false;
    s->state = GB__STATE_PENDING;
    if (v->op == GB_TRACE_OP_CONST) {
        s->state = GB__STATE_DONE;
        gb_values_push(&s->value, gb_tensor_ref(s->constant ? s->constant : v->u.constant));
    }
}

/* Record shape (for gb_val_shape) and mark done. */
static void gb__tr_done(gb_exec *ex, const gb_val *v) {
    gb__tr_slot *s = gb__tr_slot_of(ex, v);
    s->state = GB__STATE_DONE;
    gb_tensor *t = gb__tr_tensor_of(ex, v);
    if (t) {
        s->ndim = gb_tensor_ndim(t);
        memcpy(s->shape, gb_tensor_shape(t), sizeof(int64_t) * (size_t)s->ndim);
        s->has_shape = true;
    }
}

/* A node failed: remember the first failure as "site: message (expression)",
 * the site with the column of a statement's node. */
static gb_status gb__tr_node_fail(gb_exec *ex, gb_val *v, gb_status st) {
    if (st == GB_OK) st = GB_ERR_STATE;
    if (ex->run_status == GB_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", gb_last_error());
        if (v->column) gb__fail(st, "%s:%d:%d: %s (%s)", v->file, v->line, v->column, msg, gb_val_text(v));
        else gb__fail(st, "%s:%d: %s (%s)", v->file, v->line, msg, gb_val_text(v));
        ex->run_status = st;
        free(ex->run_error);
        ex->run_error = strdup(gb_last_error());
    }
    return ex->run_status;
}

/* Free a value once nothing later reads it, unless saved. */
static void gb__tr_release_use(gb_exec *ex, const gb_val *v) {
    gb__tr_slot *s = gb__tr_slot_of(ex, v);
    if (--s->uses_left <= 0 && !v->saved && !v->pinned && v->op != GB_TRACE_OP_CONST) gb_values_clear(&s->value);
}

static gb_status gb__tr_set_value(gb_exec *ex, gb_val *v, gb_tensor *t) {
    if (!t) return gb__tr_node_fail(ex, v, gb_last_status());
    gb__tr_slot *s = gb__tr_slot_of(ex, v);
    gb_values_clear(&s->value);
    gb_values_push(&s->value, t);
    gb__tr_done(ex, v);
    return GB_OK;
}

/* ---- running nodes -------------------------------------------------------- */

/* Whether an in-place edit of v still reaches the model: v is (a view of) a
 * module value whose event is being handled, or of a gradient flowing now. */
static bool gb__tr_edit_is_live(const gb_exec *ex, const gb_val *v) {
    while (v->op == GB_TRACE_OP_INDEX) v = v->arg[0];
    if (ex->scanning) return true;
    if (v->op == GB_TRACE_OP_GRAD) return gb__tr_slot_of(ex, v)->live_grad != NULL;
    if (v->op == GB_TRACE_OP_OUTPUT || v->op == GB_TRACE_OP_INPUT || v->op == GB_TRACE_OP_POINT)
        return ex->points[v->point].live != NULL;
    return true; /* a value of the graph's own (a clone, a sum): editing it affects only the graph */
}

/* The live slot a SET writes into: a getter's event value, a tuple element of
 * it, or a gradient being propagated. */
static gb_status gb__tr_set_target(gb_exec *ex, gb_val *set, gb_val *target, gb_tensor *value) {
    gb_val *g = target;
    int elem = 0;
    if (g->op == GB_TRACE_OP_INDEX && gb__tr_slot_of(ex, g)->pick >= 0) {
        elem = gb__tr_slot_of(ex, g)->pick;
        g = g->arg[0];
    } else if ((g->op == GB_TRACE_OP_OUTPUT && gb__tr_slot_of(ex, g)->is_tuple)) {
        gb__fail(GB_ERR_ARG, "set: %s is a tuple; set one of its elements, e.g. [0]", gb_val_text(g));
        return gb__tr_node_fail(ex, set, GB_ERR_ARG);
    }
    gb__tr_slot *gs = gb__tr_slot_of(ex, g);
    if (g->op == GB_TRACE_OP_GRAD && ex->scanning) {
        /* shapes only: nothing flows during a scan */
    } else if (g->op == GB_TRACE_OP_GRAD) {
        if (!gs->live_grad) {
            gb__fail(GB_ERR_STATE, "set: the gradient %s is no longer flowing (value used before it can exist)",
                     gb_val_text(g));
            return gb__tr_node_fail(ex, set, GB_ERR_STATE);
        }
        gb_tensor_free(*gs->live_grad);
        *gs->live_grad = gb_tensor_ref(value);
        /* Gradient getters of the same tensor defined after this set read the new value. */
        for (ptrdiff_t i = 0; i < arrlen(set->tr->grads); i++) {
            gb_val *o = set->tr->grads[i];
            gb__tr_slot *os = gb__tr_slot_of(ex, o);
            if (os->armed == gs->armed && o->id > set->id && os->value.n > 0)
                gb_values_set(&os->value, 0, gb_tensor_ref(value));
        }
    } else if (g->op == GB_TRACE_OP_OUTPUT || g->op == GB_TRACE_OP_INPUT || g->op == GB_TRACE_OP_POINT) {
        gb__tr_xpoint *xp = &ex->points[g->point];
        if (!xp->live) {
            gb__fail(GB_ERR_STATE, "set: %s was already computed when the value became available (value used "
                                   "before it can exist)", gb_val_text(g));
            return gb__tr_node_fail(ex, set, GB_ERR_STATE);
        }
        if (elem >= xp->live->n) {
            gb__fail(GB_ERR_INDEX, "set: %s has %d elements, no element %d", gb_val_text(g), xp->live->n, elem);
            return gb__tr_node_fail(ex, set, GB_ERR_INDEX);
        }
        gb_tensor *whole = gb__tr_invoke_replace(ex->tr, ex->batch, g->invoke, xp->live->v[elem], value);
        if (!whole) return gb__tr_node_fail(ex, set, gb_last_status());
        gb_values_set(xp->live, elem, whole);
        /* Getters of the same point defined after this set read the new value. */
        for (gb_val *o = xp->p->getters; o; o = o->next_getter) {
            gb__tr_slot *os = gb__tr_slot_of(ex, o);
            if (o->id > set->id && os->value.n > elem)
                gb_values_set(&os->value, elem, gb__tr_invoke_view(ex->tr, ex->batch, o->invoke, whole));
        }
    } else {
        gb__fail(GB_ERR_ARG, "set: %s is not a module input, output, tuple element or gradient; use gb_set_index "
                             "to edit a part of a value", gb_val_text(target));
        return gb__tr_node_fail(ex, set, GB_ERR_ARG);
    }
    gb__tr_slot *ts = gb__tr_slot_of(ex, target);
    if (ts->value.n > 0) gb_values_set(&ts->value, 0, gb_tensor_ref(value));
    return GB_OK;
}

static gb_status gb__tr_trace_grad_hook(gb_tensor *t, gb_tensor **grad, void *ctx);

/* The invoke whose rows v reads (through index nodes), or -1. */
static int gb__tr_invoke_of(const gb_val *v) {
    while (v->op == GB_TRACE_OP_INDEX) v = v->arg[0];
    return gb__tr_is_event_fed(v->op) ? v->invoke : -1;
}

/* Arm a gradient getter: one autograd hook per tensor serves all of them. */
static gb_status gb__tr_arm_grad(gb_exec *ex, gb_val *v) {
    gb_tensor *t = gb__tr_tensor_of(ex, v->arg[0]);
    if (!t) {
        gb__fail(GB_ERR_ARG, "grad: %s is not a tensor", gb_val_text(v->arg[0]));
        return gb__tr_node_fail(ex, v, GB_ERR_ARG);
    }
    /* An invoke's value is a view of its rows, which no backward walks
     * through unless requires_grad made the rows a leaf of their own. */
    if (!ex->scanning && gb__tr_invoke_of(v->arg[0]) >= 0 && gb_tensor_requires_grad(t) && !gb_tensor_is_leaf(t)) {
        gb__fail(GB_ERR_UNSUPPORTED, "grad: %s is a view of an invoke's rows of the batch; call gb_requires_grad "
                                     "on it first (x.requires_grad = True) to read its gradient", gb_val_text(v->arg[0]));
        return gb__tr_node_fail(ex, v, GB_ERR_UNSUPPORTED);
    }
    if (ex->scanning) { /* shapes only: the gradient has its tensor's shape */
        gb_tensor *g = gb_empty(gb_tensor_ndim(t), gb_tensor_shape(t), GB_DTYPE_F32);
        return gb__tr_set_value(ex, v, g);
    }
    if (!gb_tensor_requires_grad(t)) {
        gb__fail(GB_ERR_AUTOGRAD,
                 "grad: %s does not require grad; call gb_requires_grad on it first (model parameters are "
                 "frozen by default)", gb_val_text(v->arg[0]));
        return gb__tr_node_fail(ex, v, GB_ERR_AUTOGRAD);
    }
    gb__tr_slot_of(ex, v)->armed = t;
    for (ptrdiff_t i = 0; i < arrlen(ex->armed); i++)
        if (ex->armed[i] == t) return GB_OK;
    int id = gb_grad_hook_add(t, gb__tr_trace_grad_hook, ex);
    if (!id) return gb__tr_node_fail(ex, v, gb_last_status());
    if (!GB_ARR_PUT(ex->armed_hook, id, "grad") || !GB_ARR_PUT(ex->armed, t, "grad")) {
        if (arrlen(ex->armed_hook) > arrlen(ex->armed)) (void)arrpop(ex->armed_hook);
        gb_grad_hook_remove(t, id);
        return gb__tr_node_fail(ex, v, GB_ERR_ALLOC);
    }
    gb_tensor_ref(t);
    return GB_OK;
}

/* Take our gradient hooks off the tensors of the run: they may outlive
 * the execution, and a later backward must not call into it. */
static void gb__tr_disarm(gb_exec *ex) {
    for (ptrdiff_t i = 0; i < arrlen(ex->armed); i++) {
        gb_grad_hook_remove(ex->armed[i], ex->armed_hook[i]);
        gb_tensor_free(ex->armed[i]);
    }
    arrfree(ex->armed);
    arrfree(ex->armed_hook);
}

/* requires_grad on an invoke's value x (a view of its rows of the batch):
 * the rows become a leaf of their own, set back into the batch, so the
 * rest of the model reads them and a backward reaches exactly them. */
static gb_status gb__tr_invoke_requires_grad(gb_exec *ex, gb_val *v, gb_val *a, gb_tensor *x) {
    const gb_val *g = a->op == GB_TRACE_OP_INDEX && gb__tr_slot_of(ex, a)->pick >= 0 ? a->arg[0] : a;
    if (g->op != GB_TRACE_OP_OUTPUT && g->op != GB_TRACE_OP_INPUT && g->op != GB_TRACE_OP_POINT) {
        gb__fail(GB_ERR_UNSUPPORTED, "requires_grad: inside an invoke, only a module's input or output (or a tuple "
                                     "element of one) can require grad, not %s", gb_val_text(a));
        return gb__tr_node_fail(ex, v, GB_ERR_UNSUPPORTED);
    }
    gb_grad_mode m = gb_no_grad_begin();
    gb_tensor *leaf = gb_clone(x);
    gb_grad_mode_end(m);
    if (!leaf || gb_requires_grad_(leaf, true) != GB_OK) {
        gb_tensor_free(leaf);
        return gb__tr_node_fail(ex, v, gb_last_status());
    }
    gb_status st = gb__tr_set_target(ex, v, a, leaf);
    /* Later getters of the invoke's same value read the leaf itself, not a
     * view of the batch made from it, so their gradients are its. */
    int elem = g == a ? 0 : gb__tr_slot_of(ex, a)->pick;
    for (gb_val *o = st == GB_OK ? ex->points[g->point].p->getters : NULL; o; o = o->next_getter) {
        gb__tr_slot *os = gb__tr_slot_of(ex, o);
        if (o->id > v->id && o->invoke == g->invoke && os->value.n > elem)
            gb_values_set(&os->value, elem, gb_tensor_ref(leaf));
    }
    gb_tensor_free(leaf);
    if (st == GB_OK) gb__tr_done(ex, v);
    return st;
}

/* t as Python prints the number it holds (a value that is a Python number
 * in nnsight): 8, True, 0.5 (float32's shortest round trip, with ".0" on
 * integral values as Python's floats). */
static void gb__tr_print_number(FILE *f, const gb_tensor *t) {
    double x = 0;
    gb_item(t, &x);
    if (gb_tensor_dtype(t) == GB_DTYPE_BOOL) {
        fputs(x ? "True" : "False", f);
    } else if (gb_tensor_dtype(t) == GB_DTYPE_I64) {
        fprintf(f, "%lld", (long long)((const int64_t *)gb_tensor_data(t))[0]);
    } else {
        char s[48];
        for (int prec = 1; prec <= 9; prec++) {
            snprintf(s, sizeof s, "%.*g", prec, x);
            if (strtof(s, NULL) == (float)x) break;
        }
        fprintf(f, "%s%s", isfinite(x) ? s : isnan(x) ? "nan" : x > 0 ? "inf" : "-inf",
                isfinite(x) && !strpbrk(s, ".e") ? ".0" : "");
    }
}

/* print(...): the node's format with each "{}" replaced by a value. */
static gb_status gb__tr_log(gb_exec *ex, gb_val *v) {
    if (ex->scanning || !v->tr->log) return GB_OK;
    char *strs[GB__MAX_ARGS] = {0};
    gb_status st = GB_OK;
    for (int i = 0; i < v->nargs && st == GB_OK; i++) {
        const gb_tensor *t = gb__tr_tensor_of(ex, v->arg[i]);
        if (!(v->arg[i]->python && gb_tensor_ndim(t) == 0) && !(strs[i] = gb_tensor_str(t))) st = gb_last_status();
    }
    int k = 0;
    for (const char *f = v->text; st == GB_OK && *f; f++) {
        if (f[0] == '{' && f[1] == '}') {
            if (strs[k]) fputs(strs[k], v->tr->log);
            else gb__tr_print_number(v->tr->log, gb__tr_tensor_of(ex, v->arg[k]));
            k++, f++;
        } else {
            fputc(*f, v->tr->log);
            if ((f[0] == '{' || f[0] == '}') && f[1] == f[0]) f++;
        }
    }
    if (st == GB_OK) fputc('\n', v->tr->log);
    for (int i = 0; i < v->nargs; i++) free(strs[i]);
    return st == GB_OK ? GB_OK : gb__tr_node_fail(ex, v, st);
}

/* Execute one node whose inputs all exist. */
static gb_status gb__tr_exec(gb_exec *ex, gb_val *v) {
    gb__tr_slot *s = gb__tr_slot_of(ex, v);
    gb_val *a = v->nargs > 0 ? v->arg[0] : NULL;
    gb__tr_slot *as = a ? gb__tr_slot_of(ex, a) : NULL;
    gb_tensor *x = a ? gb__tr_tensor_of(ex, a) : NULL, *y = v->nargs > 1 ? gb__tr_tensor_of(ex, v->arg[1]) : NULL;
    /* A tuple (a block's output) must be indexed first, as in nnsight;
     * only picking an element, setting one, logging or stopping take it whole. */
    for (int j = 0; j < v->nargs; j++) {
        bool whole_ok = v->op == GB_TRACE_OP_LOG || (j == 0 && (v->op == GB_TRACE_OP_INDEX || v->op == GB_TRACE_OP_SET ||
                                                                v->op == GB_TRACE_OP_STOP));
        if (gb__tr_slot_of(ex, v->arg[j])->is_tuple && !whole_ok) {
            gb__fail(GB_ERR_ARG, "%s: %s is a tuple; pick an element first, e.g. [0]", gb__tr_trace_op_names[v->op],
                     gb_val_text(v->arg[j]));
            return gb__tr_node_fail(ex, v, GB_ERR_ARG);
        }
    }
    /* Every argument, not just the first: an action (log, stop, backward)
     * used as an operand, 2 * log(h), has no value either. */
    for (int j = 0; j < v->nargs; j++) {
        if (!gb__tr_tensor_of(ex, v->arg[j]) && !(j == 0 && v->op == GB_TRACE_OP_INDEX && as->is_tuple)) {
            gb__fail(GB_ERR_STATE, "trace: %s has no value", gb_val_text(v->arg[j]));
            return gb__tr_node_fail(ex, v, GB_ERR_STATE);
        }
    }
    switch (v->op) {
    case GB_TRACE_OP_INDEX:
        if (as->is_tuple) {
            const gb_index_expr *ix = v->u.index;
            if (ix->n != 1 || ix->item[0].kind != GB_INDEX_KIND_INT) {
                gb__fail(GB_ERR_ARG, "index: %s is a tuple; pick an element with a single integer, e.g. [0]",
                         gb_val_text(a));
                return gb__tr_node_fail(ex, v, GB_ERR_ARG);
            }
            int64_t i = ix->item[0].start, n = as->value.n;
            if (i < -n || i >= n) {
                gb__fail(GB_ERR_INDEX, "tuple index %lld out of range for a tuple of %lld", (long long)i, (long long)n);
                return gb__tr_node_fail(ex, v, GB_ERR_INDEX);
            }
            s->pick = (int)(i < 0 ? i + n : i);
            return gb__tr_set_value(ex, v, gb_tensor_ref(as->value.v[s->pick]));
        }
        return gb__tr_set_value(ex, v, gb_index_expr_apply(x, v->u.index));
    case GB_TRACE_OP_ADD:
    case GB_TRACE_OP_SUB:
    case GB_TRACE_OP_MUL:
    case GB_TRACE_OP_DIV:
    case GB_TRACE_OP_MATMUL:
    case GB_TRACE_OP_REMAINDER:
    case GB_TRACE_OP_FLOOR_DIVIDE: return gb__tr_set_value(ex, v, gb__tr_arith(v->op, x, y));
    case GB_TRACE_OP_SUM:
    case GB_TRACE_OP_MEAN:
    case GB_TRACE_OP_MAX:
    case GB_TRACE_OP_ARGMAX:
    case GB_TRACE_OP_SUM_ALL:
    case GB_TRACE_OP_SOFTMAX: return gb__tr_set_value(ex, v, gb__tr_reduce(v, x));
    case GB_TRACE_OP_CLONE: return gb__tr_set_value(ex, v, gb_clone(x));
    case GB_TRACE_OP_FN:
    case GB_TRACE_OP_CALL: {
        gb_tensor *args[GB__MAX_ARGS];
        for (int i = 0; i < v->nargs; i++)
            if (!(args[i] = gb__tr_tensor_of(ex, v->arg[i]))) {
                gb__fail(GB_ERR_STATE, "trace: %s has no value", gb_val_text(v->arg[i]));
                return gb__tr_node_fail(ex, v, GB_ERR_STATE);
            }
        gb_values_clear(&s->value);
        gb_run *run = NULL; /* a call of its own, no events */
        if (v->op == GB_TRACE_OP_CALL && v->u.get.call) { /* hook=True: through the run's events, as its next call */
            if (ex->kv_cache || v->repeats) {
                gb__fail(GB_ERR_UNSUPPORTED, "call: a module call with hook=True cannot run %s", ex->kv_cache
                         ? "during generation (it would add to the KV cache); call it without hook=True"
                         : "downstream of a getter of every call (.all()): it would fire that getter again");
                return gb__tr_node_fail(ex, v, GB_ERR_UNSUPPORTED);
            }
            run = ex->run;
            s->state = GB__STATE_RUNNING; /* its events pump other nodes meanwhile */
        }
        gb_status st;
        if (v->op == GB_TRACE_OP_CALL) {
            st = gb__tr_call(v, ex->model, run, args, &s->value);
        } else if (v->u.fn.fn == GB_TRACE_FN_RANDINT) { /* the execution's generator */
            gb_tensor *r = gb__tr_randint(&ex->rng, v->u.fn.p);
            st = r ? gb_values_push(&s->value, r) : gb_last_status();
        } else {
            st = gb__tr_fn(v, args, &s->value);
        }
        if (st == GB_STOPPED) st = gb__fail(GB_ERR_STATE, "call: a stop inside the module call's events ended it");
        if (st != GB_OK) {
            gb_values_clear(&s->value);
            return gb__tr_node_fail(ex, v, st);
        }
        /* topk's (values, indices), a module's tuple: picked with [i] */
        s->is_tuple = v->op == GB_TRACE_OP_FN ? s->value.n > 1
                                              : gb_module_returns_tuple(v->u.get.module);
        gb__tr_done(ex, v);
        return GB_OK;
    }
    case GB_TRACE_OP_APPLY: {
        if (ex->scanning) {
            s->state = GB__STATE_SKIPPED;
            return GB_OK;
        }
        gb_tensor *args[GB__MAX_ARGS];
        for (int i = 0; i < v->nargs; i++) args[i] = gb__tr_tensor_of(ex, v->arg[i]);
        gb_clear_error();
        gb_tensor *r = v->u.apply.fn(args, v->nargs, v->u.apply.ctx);
        if (!r && gb_last_status() == GB_OK)
            gb__fail(GB_ERR_STATE, "apply: the function returned NULL without setting an error");
        return gb__tr_set_value(ex, v, r);
    }
    case GB_TRACE_OP_SET: {
        gb_status st = gb__tr_set_target(ex, v, a, y);
        if (st == GB_OK) gb__tr_done(ex, v);
        return st;
    }
    case GB_TRACE_OP_SET_INDEX:
        if (!gb__tr_edit_is_live(ex, a)) {
            gb__fail(GB_ERR_STATE, "set: %s was already computed when the value became available (value used "
                                   "before it can exist)", gb_val_text(a));
            return gb__tr_node_fail(ex, v, GB_ERR_STATE);
        }
        if (gb_index_put_expr_(x, v->u.index, y) != GB_OK) return gb__tr_node_fail(ex, v, gb_last_status());
        gb__tr_done(ex, v);
        return GB_OK;
    case GB_TRACE_OP_LOG: {
        gb_status st = gb__tr_log(ex, v);
        if (st == GB_OK) gb__tr_done(ex, v);
        return st;
    }
    case GB_TRACE_OP_STOP:
        ex->stop = true;
        gb__tr_done(ex, v);
        return GB_OK;
    case GB_TRACE_OP_REQUIRES_GRAD:
        if (gb__tr_invoke_of(a) >= 0 && !ex->scanning) return gb__tr_invoke_requires_grad(ex, v, a, x);
        if (!ex->scanning && gb_requires_grad_(x, true) != GB_OK) return gb__tr_node_fail(ex, v, gb_last_status());
        gb__tr_done(ex, v);
        return GB_OK;
    case GB_TRACE_OP_BACKWARD: {
        if (ex->scanning) {
            gb__tr_done(ex, v);
            return GB_OK;
        }
        s->state = GB__STATE_RUNNING;
        gb_grad_mode m = gb_enable_grad_begin();
        gb_status st = gb_backward(x, NULL, false);
        gb_grad_mode_end(m);
        if (st != GB_OK && ex->run_status == GB_OK) return gb__tr_node_fail(ex, v, st);
        if (st != GB_OK) return ex->run_status;
        gb__tr_done(ex, v);
        return GB_OK;
    }
    case GB_TRACE_OP_IF: {
        double c = 1;
        if (!ex->scanning && gb_item(x, &c) != GB_OK) return gb__tr_node_fail(ex, v, gb_last_status());
        if (c != 0) gb__tr_done(ex, v);
        else s->state = GB__STATE_SKIPPED;
        return GB_OK;
    }
    default: return GB_OK; /* getters, skips and constants get their values elsewhere */
    }
}

/* ---- the pump ------------------------------------------------------------- */

/* The ready heap holds nodes that may have become runnable (an input or
 * their condition finished), smallest id on top: nodes run in definition
 * order, and an event costs the nodes that read what it produced rather
 * than a walk over the whole graph. */
static void gb__tr_ready_push(gb_exec *ex, gb_val *v) {
    if (!GB_ARR_PUT(ex->ready, v, "trace run")) { /* the run stops with this error */
        gb__tr_node_fail(ex, v, GB_ERR_ALLOC);
        return;
    }
    gb_val **h = ex->ready;
    for (ptrdiff_t i = arrlen(h) - 1; i > 0;) {
        ptrdiff_t up = (i - 1) / 2;
        if (h[up]->id <= h[i]->id) break;
        gb_val *t = h[up];
        h[up] = h[i], h[i] = t;
        i = up;
    }
}

static gb_val *gb__tr_ready_pop(gb_exec *ex) {
    gb_val **h = ex->ready, *top = h[0];
    ptrdiff_t n = arrlen(h) - 1;
    h[0] = h[n];
    GB_ARR_TRUNC(ex->ready, n);
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
static void gb__tr_finished(gb_exec *ex, const gb_val *v) {
    for (int i = 0; i < v->nusers; i++) gb__tr_ready_push(ex, v->users[i]);
}

/* Run every woken node whose inputs now exist, in definition order. */
static gb_status gb__tr_pump(gb_exec *ex) {
    while (arrlen(ex->ready) && ex->run_status == GB_OK) {
        gb_val *v = gb__tr_ready_pop(ex);
        gb__tr_slot *s = gb__tr_slot_of(ex, v);
        if (s->state != GB__STATE_PENDING || gb__tr_is_event_fed(v->op) || s->armed) continue;
        bool ready = true, skipped = false;
        for (int j = 0; j < v->nargs; j++) {
            gb__tr_state as = gb__tr_slot_of(ex, v->arg[j])->state;
            ready &= as == GB__STATE_DONE;
            skipped |= as == GB__STATE_SKIPPED;
        }
        if (v->cond) {
            gb__tr_state cs = gb__tr_slot_of(ex, v->cond)->state;
            ready &= cs == GB__STATE_DONE;
            skipped |= cs == GB__STATE_SKIPPED;
        }
        if (skipped) s->state = GB__STATE_SKIPPED;
        else if (!ready) continue;
        else if (v->op == GB_TRACE_OP_GRAD) gb__tr_arm_grad(ex, v);
        else gb__tr_exec(ex, v);
        if (s->state != GB__STATE_PENDING && s->state != GB__STATE_RUNNING) {
            for (int j = 0; j < v->nargs; j++) gb__tr_release_use(ex, v->arg[j]);
            if (v->cond) gb__tr_release_use(ex, v->cond);
            gb__tr_finished(ex, v);
        }
    }
    return ex->run_status;
}

/* During a backward: feed the gradient getters armed on t, then pump. */
static gb_status gb__tr_trace_grad_hook(gb_tensor *t, gb_tensor **grad, void *ctx) {
    gb_exec *ex = ctx;
    gb_val **grads = ex->tr->grads;
    for (ptrdiff_t i = 0; i < arrlen(grads); i++) {
        gb_val *v = grads[i];
        gb__tr_slot *s = gb__tr_slot_of(ex, v);
        if (s->armed != t || s->state != GB__STATE_PENDING) continue;
        s->live_grad = grad;
        gb_values_clear(&s->value);
        gb_values_push(&s->value, gb_tensor_ref(*grad));
        gb__tr_done(ex, v);
        for (int j = 0; j < v->nargs; j++) gb__tr_release_use(ex, v->arg[j]);
        gb__tr_finished(ex, v);
    }
    gb_status st = gb__tr_pump(ex);
    for (ptrdiff_t i = 0; i < arrlen(grads); i++)
        if (gb__tr_slot_of(ex, grads[i])->armed == t) gb__tr_slot_of(ex, grads[i])->live_grad = NULL;
    return st;
}

/* The state of v's condition chain: DONE (true or none), SKIPPED (false) or
 * PENDING (not known yet). */
static gb__tr_state gb__tr_cond_state(const gb_exec *ex, const gb_val *v) {
    if (!v->cond) return GB__STATE_DONE;
    gb__tr_state cs = gb__tr_slot_of(ex, v->cond)->state;
    return cs == GB__STATE_DONE ? GB__STATE_DONE : cs;
}

/* A point of every call fires again: its getters and everything downstream
 * of them go back to pending, to run on this call's values. */
static gb_status gb__tr_rearm(gb_exec *ex, const gb__tr_point *p) {
    bool fired = false;
    for (gb_val *v = p->getters; v; v = v->next_getter) fired |= gb__tr_slot_of(ex, v)->state != GB__STATE_PENDING;
    if (!fired) return GB_OK;
    gb_val **stack = NULL; /* stb_ds array */
    bool ok = true;
    for (gb_val *v = p->getters; ok && v; v = v->next_getter) ok = GB_ARR_PUT(stack, v, "trace run");
    while (ok && arrlen(stack)) {
        gb_val *v = arrpop(stack);
        gb__tr_slot *s = gb__tr_slot_of(ex, v);
        if (s->state == GB__STATE_PENDING && !s->armed && s->value.n == 0) continue; /* already reset */
        gb__tr_slot_reset(ex, v); /* never a constant: constants read nothing */
        for (int i = 0; ok && i < v->nusers; i++) ok = GB_ARR_PUT(stack, v->users[i], "trace run");
    }
    arrfree(stack);
    return ok ? GB_OK : gb__tr_node_fail(ex, p->getters, GB_ERR_ALLOC);
}

/* The hook of one point: feed its getters, honour skips, pump, stop. */
static gb_status gb__tr_point_hook(gb_event *ev, void *ctx) {
    gb__tr_xpoint *xp = ctx;
    const gb__tr_point *p = xp->p;
    gb_exec *ex = xp->ex;
    if (p->call != GB_CALL_ALL && ev->call != p->call) return GB_OK;
    if (p->call == GB_CALL_ALL && gb__tr_rearm(ex, p) != GB_OK) return ex->run_status;
    gb_values *outer = xp->live; /* a hooked module call inside this point's handling fires it again */
    xp->live = ev->values;
    for (gb_val *v = p->getters; v; v = v->next_getter) {
        gb__tr_slot *s = gb__tr_slot_of(ex, v);
        if (s->state != GB__STATE_PENDING) continue;
        if (v->op == GB_TRACE_OP_SKIP) continue;
        if (gb__tr_cond_state(ex, v) == GB__STATE_SKIPPED) { /* under a false condition */
            s->state = GB__STATE_SKIPPED;
            gb__tr_finished(ex, v);
            continue;
        }
        gb_values_clear(&s->value);
        s->is_tuple = v->op == GB_TRACE_OP_OUTPUT && gb_module_returns_tuple(ev->module);
        int n = v->op == GB_TRACE_OP_INPUT ? (ev->values->n > 0) : ev->values->n;
        for (int j = 0; j < n; j++)
            gb_values_push(&s->value, gb__tr_invoke_view(ex->tr, ex->batch, v->invoke, ev->values->v[j]));
        gb__tr_done(ex, v);
        gb__tr_finished(ex, v);
    }
    gb_status st = gb__tr_pump(ex);
    for (gb_val *v = p->getters; v && st == GB_OK; v = v->next_getter) {
        gb__tr_slot *s = gb__tr_slot_of(ex, v);
        if (v->op != GB_TRACE_OP_SKIP || s->state != GB__STATE_PENDING) continue;
        gb__tr_state cs = gb__tr_cond_state(ex, v);
        if (cs == GB__STATE_SKIPPED) {
            s->state = GB__STATE_SKIPPED;
            gb__tr_finished(ex, v);
            continue;
        }
        gb_val *val = v->arg[0];
        if (cs == GB__STATE_PENDING) {
            gb__fail(GB_ERR_STATE, "skip: the condition of %s is not known yet when %s runs (value used before "
                                   "it can exist)", gb_val_text(v), *v->text ? v->text : "model");
            st = gb__tr_node_fail(ex, v, GB_ERR_STATE);
            break;
        }
        if (gb__tr_slot_of(ex, val)->state != GB__STATE_DONE) {
            gb__fail(GB_ERR_STATE, "skip: the replacement value %s does not exist yet when %s runs (value used "
                                   "before it can exist)", gb_val_text(val), *v->text ? v->text : "model");
            st = gb__tr_node_fail(ex, v, GB_ERR_STATE);
            break;
        }
        ev->skip = true;
        char shape[160];
        gb_tensor *with = gb__tr_tensor_of(ex, val);
        snprintf(ex->skipped, sizeof ex->skipped, "%s.skip(...) made its output a tensor of shape %s",
                 *v->text ? v->text : "model", gb__shape_str(shape, sizeof shape, gb_tensor_ndim(with), gb_tensor_shape(with)));
        gb_values_clear(ev->output);
        gb_values_push(ev->output, gb_tensor_ref(gb__tr_tensor_of(ex, val)));
        gb__tr_done(ex, v);
        gb__tr_release_use(ex, val);
        gb__tr_finished(ex, v);
    }
    if (st == GB_OK) st = gb__tr_pump(ex); /* nodes reading a skip's handle */
    xp->live = outer;
    if (st == GB_OK && ex->stop) return GB_STOPPED;
    return st;
}

/* ---- making executions ---------------------------------------------------- */

/* Size ex's slots and points for the graph's nodes [0, tr->compiled), each
 * point's module found in ex's model: one block, slots then points. Slots
 * kept from before keep their state (gb_val_shape reports the last scan's
 * until a run replaces it); new ones are pending, with no value. */
static gb_status gb__tr_exec_fit(gb_exec *ex) {
    gb_trace *tr = ex->tr;
    ptrdiff_t n = tr->compiled > ex->nslots ? tr->compiled : ex->nslots; /* nodes are only ever added */
    size_t bytes = (size_t)n * sizeof *ex->slot + (size_t)tr->npoints * sizeof *ex->points;
    gb__tr_slot *slot = bytes ? realloc(ex->slot, bytes) : ex->slot;
    if (bytes && !slot)
        return gb__fail(GB_ERR_ALLOC, "trace_run: out of memory for the state of %lld nodes", (long long)n);
    for (ptrdiff_t i = ex->nslots; i < n; i++) {
        slot[i].state = GB__STATE_PENDING;
        slot[i].value.n = 0;
        slot[i].has_shape = false;
        slot[i].constant = NULL;
    }
    ex->slot = slot;
    ex->nslots = n;
    ex->points = slot ? (gb__tr_xpoint *)(slot + n) : NULL;
    ex->npoints = 0;
    for (int i = 0; i < tr->npoints; i++) {
        const gb__tr_point *p = &tr->points[i];
        gb_module *m = p->module;
        if (m && ex->model != tr->model && !(m = gb_module_find(ex->model, p->path))) {
            char why[1024];
            snprintf(why, sizeof why, "%s", gb_last_error());
            return gb__fail(gb_last_status(), "exec_new: the model has no module %s, which the trace names (%s)",
                            *p->path ? p->path : "model", why);
        }
        ex->points[i] = (gb__tr_xpoint){ex, p, m, NULL};
    }
    ex->npoints = tr->npoints;
    return GB_OK;
}

/* Release what a run left. */
static void gb__tr_exec_clear_run(gb_exec *ex) {
    gb__tr_disarm(ex);
    gb_tensor_free(ex->run_input), gb_tensor_free(ex->run_mask), gb_tensor_free(ex->run_pos);
    ex->run_input = ex->run_mask = ex->run_pos = NULL;
    free(ex->run_error), free(ex->error);
    ex->run_error = ex->error = NULL;
}

/* Everything an execution owns; it stays usable as an empty one. */
static void gb__tr_exec_clear(gb_exec *ex) {
    gb__tr_exec_clear_run(ex);
    arrfree(ex->ready);
    for (ptrdiff_t i = 0; i < ex->nslots; i++) {
        gb_values_clear(&ex->slot[i].value);
        gb_tensor_free(ex->slot[i].constant);
    }
    free(ex->slot); /* and the points after the slots */
    ex->slot = NULL;
    ex->nslots = 0;
    ex->points = NULL;
    ex->npoints = 0;
    gb_tensor_free(ex->base_input), gb_tensor_free(ex->base_mask), gb_tensor_free(ex->base_pos);
    ex->base_input = ex->base_mask = ex->base_pos = NULL;
    gb_tensor_free(ex->mask), gb_tensor_free(ex->pos), gb_tensor_free(ex->generated);
    ex->mask = ex->pos = ex->generated = NULL;
    if (!ex->own && ex->edits) {
        gb__tr_exec_clear(ex->edits);
        free(ex->edits);
    }
    ex->edits = NULL;
}

void gb_trace_free(gb_trace *tr) {
    if (!tr) return;
    gb__tr_exec_clear(&tr->own);
    gb__tr_graph_free(tr);
}

gb_exec *gb_trace_exec(gb_trace *tr) { return &tr->own; }

/* A copy sharing nothing with t: runs in other threads must not touch its
 * reference counts. Made without history, keeping requires_grad. */
static gb_tensor *gb__tr_private_copy(gb_tensor *t) {
    if (!t) return NULL;
    gb_grad_mode m = gb_no_grad_begin();
    gb_tensor *c = gb_clone(t);
    gb_grad_mode_end(m);
    if (c && gb_tensor_requires_grad(t) && gb_requires_grad_(c, true) != GB_OK) {
        gb_tensor_free(c);
        return NULL;
    }
    return c;
}

/* An execution of gb_exec_new (not the trace's own) of tr on model. */
static gb_exec *gb__tr_exec_make(gb_trace *tr, gb_module *model) {
    gb_exec *ex = gb__calloc(1, sizeof *ex, "exec_new");
    if (!ex) return NULL;
    *ex = (gb_exec){.tr = tr, .model = model};
    gb_status st = gb__tr_graph_compile(tr);
    if (st == GB_OK) st = gb__tr_exec_fit(ex);
    for (ptrdiff_t i = 0; st == GB_OK && i < ex->nslots; i++) {
        gb_val *v = tr->nodes[i];
        if (v->op == GB_TRACE_OP_CONST && !(ex->slot[i].constant = gb__tr_private_copy(v->u.constant)))
            st = gb_last_status();
    }
    if (st == GB_OK && (tr->input || arrlen(tr->invokes))) {
        gb_tensor *in, *mask, *pos;
        st = gb__tr_batch_inputs(tr, &in, &mask, &pos, &ex->base_batch);
        if (st == GB_OK) {
            ex->base_input = gb__tr_private_copy(in);
            ex->base_mask = gb__tr_private_copy(mask);
            ex->base_pos = gb__tr_private_copy(pos);
            if (!ex->base_input || (mask && !ex->base_mask) || (pos && !ex->base_pos)) st = gb_last_status();
        }
        gb_tensor_free(in), gb_tensor_free(mask), gb_tensor_free(pos);
    }
    if (st == GB_OK && tr->edits && !(ex->edits = gb__tr_exec_make(tr->edits, model))) st = gb_last_status();
    if (st != GB_OK) {
        gb__tr_exec_clear(ex);
        free(ex);
        return NULL;
    }
    return ex;
}

gb_exec *gb_exec_new(gb_trace *tr, gb_module *model) {
    if (!tr) return gb__fail_null(GB_ERR_ARG, "exec_new: no trace");
    return gb__tr_exec_make(tr, model ? model : tr->model);
}

void gb_exec_free(gb_exec *ex) {
    if (!ex || ex->own) return;
    if (ex->running) (void)gb_exec_end(ex);
    gb__tr_exec_clear(ex);
    free(ex);
}

void gb_exec_set_attention_mask(gb_exec *ex, gb_tensor *mask) {
    gb_tensor_free(ex->mask);
    ex->mask = gb_tensor_ref(mask);
}

void gb_exec_set_position_ids(gb_exec *ex, gb_tensor *pos) {
    gb_tensor_free(ex->pos);
    ex->pos = gb_tensor_ref(pos);
}

/* ---- runs ----------------------------------------------------------------- */

/* Make ex ready for a run of its graph: definition errors reported, the
 * graph's tables current, every slot reset, nodes that need no event queued. */
static gb_status gb__tr_prepare(gb_exec *ex, bool scanning) {
    gb_trace *tr = ex->tr;
    if (tr->def_status != GB_OK) return gb__tr_trace_def_error(tr);
    if (ex->own) {
        gb_status st = gb__tr_graph_compile(tr);
        if (st == GB_OK && ex->nslots != tr->compiled) st = gb__tr_exec_fit(ex);
        if (st != GB_OK) return st;
    } else if (ex->nslots != arrlen(tr->nodes)) {
        return gb__fail(GB_ERR_STATE, "exec_run: the trace has %lld nodes, this execution was made for %lld; make a "
                                      "new execution after defining more", (long long)arrlen(tr->nodes),
                        (long long)ex->nslots);
    }
    GB_ARR_TRUNC(ex->ready, 0);
    ex->run_status = GB_OK;
    ex->status = GB_OK;
    for (ptrdiff_t i = 0; i < ex->nslots; i++) {
        gb__tr_slot_reset(ex, tr->nodes[i]);
        if (!gb__tr_is_event_fed(tr->nodes[i]->op)) gb__tr_ready_push(ex, tr->nodes[i]);
    }
    ex->scanning = scanning;
    ex->stop = false;
    gb__tr_mt_seed(&ex->rng, tr->seed);
    return ex->run_status;
}

/* After a run: a getter read before its condition was known, which then
 * was false, was never produced. */
static void gb__tr_finish(gb_exec *ex) {
    for (ptrdiff_t i = 0; i < ex->nslots; i++) {
        gb_val *v = ex->tr->nodes[i];
        gb__tr_slot *s = &ex->slot[i];
        if (s->state == GB__STATE_DONE && gb__tr_cond_state(ex, v) != GB__STATE_DONE) {
            s->state = GB__STATE_SKIPPED;
            gb_values_clear(&s->value);
        }
    }
    ex->scanning = false;
}

void gb_exec_set_cancel(gb_exec *ex, bool (*cancelled)(void *ctx), void *ctx) {
    ex->cancelled = cancelled;
    ex->cancel_ctx = cancelled ? ctx : NULL;
}

/* Asked after every module: a long pass stops within one module of being
 * cancelled, with the interventions at that module already run (this hook
 * is registered after theirs). */
static gb_status gb__tr_cancel_hook(gb_event *ev, void *ctx) {
    gb_exec *ex = ctx;
    if (!ex->cancelled(ex->cancel_ctx)) return GB_OK;
    return gb__fail(GB_ERR_STATE, "exec: cancelled after %s (call %d)", *ev->path ? ev->path : "<root>", ev->call);
}

/* Register one hook per point of ex's graph. */
static gb_status gb__tr_bind(gb_exec *ex, gb_hooks *hooks) {
    for (int i = 0; i < ex->npoints; i++) {
        gb__tr_xpoint *xp = &ex->points[i];
        xp->live = NULL;
        int id = xp->p->kind == GB_EVENT_POINT ? gb_hook_add_point(hooks, xp->p->path, gb__tr_point_hook, xp)
                                               : gb_hook_add(hooks, xp->module, xp->p->kind, 0, gb__tr_point_hook, xp);
        if (!id) return gb_last_status();
    }
    return GB_OK;
}

/* The run's input: the one given (with the execution's mask and
 * positions), or the trace's (an execution of gb_exec_new has its own
 * copy), or its invokes batched. */
static gb_status gb__tr_run_input(gb_exec *ex, gb_tensor *input) {
    gb_trace *tr = ex->tr;
    if (input) {
        if (arrlen(tr->invokes))
            return gb__fail(GB_ERR_ARG, "exec_run: this trace batches its invokes; it takes no other input");
        ex->run_input = gb_tensor_ref(input);
        ex->run_mask = gb_tensor_ref(ex->mask);
        ex->run_pos = gb_tensor_ref(ex->pos);
        ex->batch = gb_tensor_ndim(input) ? gb_tensor_dim(input, 0) : 1;
        return GB_OK;
    }
    if (!ex->own && !ex->base_input && (tr->input || arrlen(tr->invokes)))
        return gb__fail(GB_ERR_STATE, "exec_run: the trace's invokes changed after this execution was made; make a "
                                      "new execution");
    if (ex->own || !ex->base_input) /* no input at all fails here without touching the trace's tensors */
        return gb__tr_batch_inputs(tr, &ex->run_input, &ex->run_mask, &ex->run_pos, &ex->batch);
    ex->run_input = gb_tensor_ref(ex->base_input);
    ex->run_mask = gb_tensor_ref(ex->base_mask);
    ex->run_pos = gb_tensor_ref(ex->base_pos);
    ex->batch = ex->base_batch;
    return GB_OK;
}

/* The editor's execution to run with ex: the editor's own for the trace's
 * own execution (its saved values show the last run), else ex's copy. */
static gb_status gb__tr_edits_of(gb_exec *ex) {
    gb_trace *ed = ex->tr->edits;
    if (ex->own) {
        ex->edits = ed ? &ed->own : NULL;
        return GB_OK;
    }
    if ((ex->edits ? ex->edits->tr : NULL) != ed)
        return gb__fail(GB_ERR_STATE, "exec_run: the trace's edits changed after this execution was made; make a "
                                      "new execution");
    return GB_OK;
}

/* The thread's error made the run's, once a node's own message is restored
 * (the model's error paths may have overwritten it). */
static gb_status gb__tr_record(gb_exec *ex, gb_status st) {
    gb_exec *ed = ex->edits;
    if (st != GB_OK && st != GB_STOPPED) {
        if (ed && ed->run_status != GB_OK) gb__fail(ed->run_status, "edits: %s", ed->run_error);
        else if (ex->run_status != GB_OK) gb__fail(ex->run_status, "%s", ex->run_error);
        free(ex->error);
        ex->error = strdup(gb_last_error());
    }
    if (ex->status == GB_OK) ex->status = st;
    return st;
}

static gb_status gb__tr_end(gb_exec *ex);

static gb_status gb__tr_begin(gb_exec *ex, gb_tensor *input, bool kv_cache, bool scanning) {
    if (ex->running) return gb__fail(GB_ERR_STATE, "exec_begin: a run is under way; end it with gb_exec_end");
    gb__tr_exec_clear_run(ex); /* what the last run left: its input, its messages */
    gb_status st = gb__tr_edits_of(ex);
    if (st == GB_OK) st = gb__tr_prepare(ex, scanning);
    if (st == GB_OK && ex->edits) st = gb__tr_prepare(ex->edits, scanning);
    if (st != GB_OK) return st;
    ex->running = true;
    ex->hooks = gb_hooks_new(ex->model);
    ex->run = gb_run_new();
    st = ex->hooks && ex->run ? gb__tr_run_input(ex, input) : GB_ERR_ALLOC;
    if (st == GB_OK && ex->edits) st = gb__tr_bind(ex->edits, ex->hooks); /* first: edits are part of the model */
    if (st == GB_OK) st = gb__tr_bind(ex, ex->hooks);
    if (st == GB_OK && ex->cancelled && !scanning &&
        !gb_hook_add(ex->hooks, ex->model, GB_EVENT_OUTPUT, GB_HOOK_SUBTREE, gb__tr_cancel_hook, ex))
        st = gb_last_status();
    if (st == GB_OK) {
        if ((ex->meta = scanning)) gb__meta_push();
        gb_hooks_attach(ex->hooks, ex->run);
        gb_run_use_cache(ex->run, kv_cache);
        ex->kv_cache = kv_cache;
        gb_run_set_nan_check(ex->run, ex->tr->nan_check);
        /* nodes that need no model value (constants, conditions on them) */
        st = ex->edits ? gb__tr_pump(ex->edits) : GB_OK;
        if (st == GB_OK) st = gb__tr_pump(ex);
    }
    if (st != GB_OK) {
        gb__tr_record(ex, st);
        return gb__tr_end(ex);
    }
    return GB_OK;
}

gb_status gb_exec_begin(gb_exec *ex, gb_tensor *input, bool kv_cache) { return gb__tr_begin(ex, input, kv_cache, false); }
gb_status gb_exec_begin_scan(gb_exec *ex, gb_tensor *input, bool kv_cache) { return gb__tr_begin(ex, input, kv_cache, true); }

void gb_exec_batch(const gb_exec *ex, gb_tensor **ids, gb_tensor **mask, gb_tensor **pos) {
    if (ids) *ids = ex->run_input;
    if (mask) *mask = ex->run_mask;
    if (pos) *pos = ex->run_pos;
}

gb_status gb_exec_pass(gb_exec *ex, gb_tensor *ids, gb_tensor *mask, gb_tensor *pos, gb_values *out) {
    if (!ex->running) return gb__fail(GB_ERR_STATE, "exec_pass: no run is under way; start one with gb_exec_begin");
    if (!ids) return gb__fail(GB_ERR_ARG, "exec_pass: no input ids");
    if (ex->status == GB_STOPPED) return GB_STOPPED;
    if (ex->status != GB_OK) return gb__fail(ex->status, "%s", ex->error);
    gb_run_set_attention_mask(ex->run, mask);
    gb_run_set_position_ids(ex->run, pos);
    gb_values in = {1, {ids}}, dropped = {0};
    ex->skipped[0] = 0;
    gb_status st = gb_module_call(ex->model, ex->run, &in, out ? out : &dropped);
    gb_values_clear(&dropped);
    /* A module's own failure after a skip is most likely the replacement's
     * doing: the failing module cannot know, so say it here. */
    if (st != GB_OK && st != GB_STOPPED && ex->skipped[0] && ex->run_status == GB_OK) {
        char *msg = strdup(gb_last_error());
        if (msg) gb__fail(st, "%s (after %s)", msg, ex->skipped);
        free(msg);
    }
    return st == GB_OK ? GB_OK : gb__tr_record(ex, st);
}

static gb_status gb__tr_end(gb_exec *ex) {
    if (ex->meta) gb__meta_pop();
    ex->meta = false;
    if (ex->edits) gb__tr_finish(ex->edits);
    gb__tr_finish(ex);
    gb__tr_disarm(ex);
    if (ex->edits) gb__tr_disarm(ex->edits);
    gb_run_free(ex->run);
    gb_hooks_free(ex->hooks);
    ex->run = NULL;
    ex->hooks = NULL;
    ex->running = false;
    gb_status st = ex->status == GB_STOPPED ? GB_OK : ex->status;
    if (st != GB_OK) gb__fail(st, "%s", ex->error);
    return st;
}

gb_status gb_exec_end(gb_exec *ex) {
    if (!ex->running) return gb__fail(GB_ERR_STATE, "exec_end: no run is under way");
    return gb__tr_end(ex);
}

/* One pass over the run's input: gb_trace_run and gb_trace_scan. */
static gb_status gb__tr_run(gb_exec *ex, gb_tensor *input, bool scanning) {
    gb_status st = gb__tr_begin(ex, input, false, scanning);
    if (st != GB_OK) return st;
    gb_tensor *in0 = ex->run_input;
    gb_tensor *in = scanning ? gb_empty(gb_tensor_ndim(in0), gb_tensor_shape(in0), gb_tensor_dtype(in0)) : gb_tensor_ref(in0);
    gb_exec_pass(ex, in, ex->run_mask, ex->run_pos, NULL);
    gb_tensor_free(in);
    return gb__tr_end(ex);
}

gb_status gb_exec_run(gb_exec *ex, gb_tensor *input) { return gb__tr_run(ex, input, false); }
gb_status gb_exec_scan(gb_exec *ex, gb_tensor *input) { return gb__tr_run(ex, input, true); }

gb_status gb_trace_scan(gb_trace *tr) { return gb__tr_run(&tr->own, NULL, true); }

gb_status gb_trace_run(gb_trace *tr) {
    if (tr->validate) {
        gb_status st = gb_trace_scan(tr);
        if (st != GB_OK) return st;
    }
    return gb__tr_run(&tr->own, NULL, false);
}

/* ---- results -------------------------------------------------------------- */

/* The execution holding v's state when ex runs: ex, or the editor's run
 * with it; NULL for a node of another trace. */
static const gb_exec *gb__tr_holder(const gb_exec *ex, const gb_val *v) {
    if (v->tr == ex->tr) return ex;
    if (ex->own) return v->tr == ex->tr->edits ? &v->tr->own : NULL;
    return ex->edits && v->tr == ex->edits->tr ? ex->edits : NULL;
}

/* v's slot, or NULL when no run of its execution has seen v. */
static const gb__tr_slot *gb__tr_result_slot(const gb_exec *ex, const gb_val *v) {
    return v->id < ex->nslots ? &ex->slot[v->id] : NULL;
}

static gb_tensor *gb__tr_result(const gb_exec *ex, const gb_val *v, int i, bool meta_ok) {
    if (!(ex = gb__tr_holder(ex, v)))
        return gb__fail_null(GB_ERR_ARG, "value: %s is a node of another trace than the execution's (or its edits')",
                             gb_val_text((gb_val *)v));
    if (!v->saved)
        return gb__fail_null(GB_ERR_STATE, "value: %s was not saved; call gb_save on it inside the trace "
                                           "(unsaved values are freed during the run)", gb_val_text((gb_val *)v));
    const gb__tr_slot *s = gb__tr_result_slot(ex, v);
    if (v->op == GB_TRACE_OP_CONST && !s) return v->u.constant; /* a constant exists before any run */
    if (!s || s->state != GB__STATE_DONE)
        return gb__fail_null(GB_ERR_STATE, "value: %s was never produced (the run stopped before it, its module "
                                           "never ran, or a condition was false)", gb_val_text((gb_val *)v));
    if (i >= s->value.n || !s->value.v[i])
        return gb__fail_null(GB_ERR_INDEX, "value: %s has %d elements, no element %d", gb_val_text((gb_val *)v),
                             s->value.n, i);
    if (!meta_ok && !gb_tensor_data(s->value.v[i]))
        return gb__fail_null(GB_ERR_STATE, "value: %s comes from a scan and has a shape but no data; use "
                                           "gb_val_shape, or gb_trace_run for values", gb_val_text((gb_val *)v));
    return s->value.v[i];
}

gb_tensor *gb_exec_value(const gb_exec *ex, const gb_val *v) { return gb__tr_result(ex, v, 0, false); }
gb_tensor *gb_exec_value_at(const gb_exec *ex, const gb_val *v, int i) { return gb__tr_result(ex, v, i, false); }
gb_tensor *gb_value(const gb_val *v) { return gb__tr_result(&v->tr->own, v, 0, false); }
gb_tensor *gb_value_at(const gb_val *v, int i) { return gb__tr_result(&v->tr->own, v, i, false); }
gb_tensor *gb_exec_held(const gb_exec *ex, const gb_val *v) { return gb__tr_result(ex, v, 0, true); }

gb_status gb_exec_bind(gb_exec *ex, gb_val *c, gb_tensor *t) {
    if (!c || c->op != GB_TRACE_OP_CONST || c->tr != ex->tr)
        return gb__fail(GB_ERR_ARG, "exec_bind: %s is not a constant of the execution's trace",
                        c ? gb_val_text(c) : "NULL");
    if (ex->running) return gb__fail(GB_ERR_STATE, "exec_bind: a run is under way");
    if (c->id >= ex->nslots) { /* the trace's own execution sizes its slots when it first runs */
        gb_status st = gb__tr_graph_compile(ex->tr);
        if (st == GB_OK) st = gb__tr_exec_fit(ex);
        if (st != GB_OK) return st;
    }
    gb_tensor_free(ex->slot[c->id].constant);
    ex->slot[c->id].constant = gb_tensor_ref(t);
    return GB_OK;
}

int gb_exec_unproduced(const gb_exec *ex, gb_val **vals, int max) {
    int n = 0;
    for (ptrdiff_t i = 0; i < arrlen(ex->tr->nodes); i++) {
        gb_val *v = ex->tr->nodes[i];
        if (!v->saved || v->op == GB_TRACE_OP_CONST) continue;
        const gb__tr_slot *s = gb__tr_result_slot(ex, v);
        if (s && s->state == GB__STATE_DONE) continue;
        if (vals && n < max) vals[n] = v;
        n++;
    }
    return n;
}

gb_status gb_exec_shape(const gb_exec *ex, const gb_val *v, int *ndim, int64_t *shape) {
    const gb_exec *holder = gb__tr_holder(ex, v);
    const gb__tr_slot *s = holder ? gb__tr_result_slot(holder, v) : NULL;
    if (!s || !s->has_shape)
        return gb__fail(GB_ERR_STATE, "val_shape: the shape of %s is not known; run gb_trace_scan first",
                        gb_val_text((gb_val *)v));
    *ndim = s->ndim;
    memcpy(shape, s->shape, sizeof(int64_t) * (size_t)s->ndim);
    return GB_OK;
}

gb_status gb_val_shape(const gb_val *v, int *ndim, int64_t *shape) { return gb_exec_shape(&v->tr->own, v, ndim, shape); }
