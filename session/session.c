/* Sessions: traces run in order as a unit, values crossing traces as
 * constants bound when the later trace runs, loops, session-level log and
 * stop. Each trace runs in its own execution (the trace's own), so the
 * values a user saved read as in a lone trace. */
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "session_impl.h"

/* The log stream: every line the traces and the session log goes to the
 * events' log callback, or to stdout as a lone trace's would. */
static ssize_t gb__ses_sess_log_write(void *cookie, const char *buf, size_t n) {
    gb_session *s = cookie;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n') {
            char *grown = realloc(s->logbuf, s->loglen + 2);
            if (!grown) return -1;
            s->logbuf = grown;
            s->logbuf[s->loglen++] = buf[i];
            continue;
        }
        if (!s->logbuf && !(s->logbuf = calloc(1, 1))) return -1;
        s->logbuf[s->loglen] = 0;
        if (s->ev.log) s->ev.log(s->ev.ctx, s->logbuf);
        else printf("%s\n", s->logbuf);
        s->loglen = 0;
    }
    return (ssize_t)n;
}

gb_session *gb_session_new(void) {
    gb_session *s = gb__calloc(1, sizeof *s, "session_new");
    if (!s) return NULL;
    s->log = fopencookie(s, "w", (cookie_io_functions_t){.write = gb__ses_sess_log_write});
    if (!s->log) {
        free(s);
        return gb__fail_null(GB_ERR_ALLOC, "session_new: cannot make the log stream");
    }
    setvbuf(s->log, NULL, _IONBF, 0);
    return s;
}

void gb_session_free(gb_session *s) {
    if (!s) return;
    for (ptrdiff_t i = 0; i < arrlen(s->steps); i++) {
        gb__ses_sess_step *st = &s->steps[i];
        gb_trace_free(st->tr);
        for (int k = 0; k < st->ninputs; k++) gb_tensor_free(st->inputs[k]);
        free(st->inputs);
        free(st->text);
        gb_tensor_free(st->items), gb_tensor_free(st->item);
    }
    if (s->result_free) s->result_free(s->result_ctx);
    arrfree(s->steps), arrfree(s->imports), arrfree(s->keeps), arrfree(s->open);
    fclose(s->log);
    free(s->logbuf);
    free(s);
}

void gb_session_set_events(gb_session *s, const gb_session_events *e) { s->ev = e ? *e : (gb_session_events){0}; }

static int gb__ses_sess_parent(const gb_session *s) { return arrlen(s->open) ? arrlast(s->open) : -1; }

static gb__ses_sess_step *gb__ses_sess_push(gb_session *s, gb__ses_sess_kind kind) {
    gb__ses_sess_step st = {.kind = kind, .parent = gb__ses_sess_parent(s), .over = -1};
    return GB_ARR_PUT(s->steps, st, "session") ? &arrlast(s->steps) : NULL;
}

/* The step that runs tr, or -1. */
static int gb__ses_sess_step_of(const gb_session *s, const gb_trace *tr) {
    for (ptrdiff_t i = 0; i < arrlen(s->steps); i++)
        if (s->steps[i].kind == GB__SESS_TRACE && s->steps[i].tr == tr) return (int)i;
    return -1;
}

/* The latest value bound to name by a trace among the steps before step `before`, or NULL. */
static gb_val *gb__ses_sess_bound(const gb_session *s, const char *name, ptrdiff_t before) {
    for (ptrdiff_t i = before - 1; i >= 0; i--) {
        gb_val *v = s->steps[i].kind == GB__SESS_TRACE ? gb_trace_name(s->steps[i].tr, name) : NULL;
        if (v) return v;
    }
    return NULL;
}

/* A name used in tr: an enclosing loop's item, else a name bound by an
 * earlier trace (the latest binding). */
static gb_val *gb__ses_sess_resolve(gb_trace *tr, const char *name, void *ctx) {
    gb_session *s = ctx;
    int at = gb__ses_sess_step_of(s, tr);
    for (int p = at >= 0 ? s->steps[at].parent : -1; p >= 0; p = s->steps[p].parent)
        if (!strcmp(s->steps[p].text, name)) return gb_session_item(s, tr, name);
    gb_val *v = gb__ses_sess_bound(s, name, at);
    return v ? gb_session_use(s, tr, v) : NULL;
}

gb_trace *gb_session_trace(gb_session *s, gb_module *model, gb_tensor *input) {
    gb_trace *tr = gb_trace_new(model, input);
    if (!tr) return NULL;
    gb_trace_set_resolver(tr, gb__ses_sess_resolve, s);
    gb_trace_set_log(tr, s->log);
    gb__ses_sess_step *st = gb__ses_sess_push(s, GB__SESS_TRACE);
    if (!st) {
        gb_trace_free(tr);
        return NULL;
    }
    st->tr = tr;
    st->number = ++s->ntraces;
    return tr;
}

gb_status gb_session_generate(gb_session *s, gb_trace *tr, const gb_decode_opts *opts) {
    int at = gb__ses_sess_step_of(s, tr);
    if (at < 0) return gb__fail(GB_ERR_ARG, "session_generate: the trace is not one of the session's");
    s->steps[at].generate = opts != NULL;
    if (opts) s->steps[at].opts = *opts;
    return GB_OK;
}

/* A constant of tr that the session binds before each run (a scalar until then). */
static gb_val *gb__ses_sess_importer(gb_session *s, gb_trace *tr, gb_val *source, gb_val *kept, int iter) {
    for (ptrdiff_t i = 0; i < arrlen(s->imports); i++)
        if (s->imports[i].to == tr && s->imports[i].source == source && s->imports[i].iter == iter)
            return s->imports[i].c;
    gb_tensor *zero = gb_scalar_tensor(0);
    gb_val *c = zero ? gb_const_at(tr, zero, "session", 0) : NULL;
    gb_tensor_free(zero);
    if (!c) return NULL;
    gb__ses_sess_import imp = {tr, c, source, kept, iter};
    return GB_ARR_PUT(s->imports, imp, "session") ? c : NULL;
}

/* The saved view of v through which later steps read it (one per value). */
static gb_val *gb__ses_sess_keep(gb_session *s, gb_val *v) {
    for (ptrdiff_t i = 0; i < arrlen(s->keeps); i++)
        if (s->keeps[i].source == v) return s->keeps[i].kept;
    gb_val *kept = gb_save(gb_val_index_at(v, "[...]", "session", 0));
    return kept && GB_ARR_PUT(s->keeps, ((gb__ses_sess_keep_t){v, kept}), "session") ? kept : NULL;
}

gb_val *gb_session_use(gb_session *s, gb_trace *tr, gb_val *v) {
    int to = gb__ses_sess_step_of(s, tr), from = v ? gb__ses_sess_step_of(s, gb_val_trace(v)) : -1;
    if (to < 0 || from < 0 || from >= to)
        return gb__fail_null(GB_ERR_ARG, "session_use: %s is not a value of an earlier trace of the session",
                             v ? gb_val_text(v) : "NULL");
    gb_val *kept = gb__ses_sess_keep(s, v);
    return kept ? gb__ses_sess_importer(s, tr, v, kept, -1) : NULL;
}

gb_status gb_session_log(gb_session *s, const char *label, gb_val *v) {
    gb_val *kept = NULL;
    if (v && gb__ses_sess_step_of(s, gb_val_trace(v)) < 0)
        return gb__fail(GB_ERR_ARG, "session_log: %s is not a value of a trace of the session", gb_val_text(v));
    if (v && !(kept = gb__ses_sess_keep(s, v))) return gb_last_status();
    char *text = gb__strdup(label ? label : "", "session_log");
    if (!text) return GB_ERR_ALLOC;
    gb__ses_sess_step *st = gb__ses_sess_push(s, GB__SESS_LOG);
    if (!st) return free(text), GB_ERR_ALLOC;
    st->text = text;
    st->value = kept;
    return GB_OK;
}

gb_status gb_session_stop(gb_session *s) {
    return gb__ses_sess_push(s, GB__SESS_STOP) ? GB_OK : GB_ERR_ALLOC;
}

/* The open loop called name (NULL: the innermost), or -1. */
static int gb__ses_sess_loop(const gb_session *s, const char *name) {
    for (ptrdiff_t i = arrlen(s->open) - 1; i >= 0; i--)
        if (!name || !strcmp(s->steps[s->open[i]].text, name)) return s->open[i];
    return -1;
}

gb_status gb_session_iter(gb_session *s, const char *name, gb_tensor *items, const char *over) {
    int outer = items ? -1 : gb__ses_sess_loop(s, over ? over : "");
    gb_val *v = items || outer >= 0 || !over ? NULL : gb__ses_sess_bound(s, over, arrlen(s->steps)), *kept = NULL;
    if (!name || !*name) return gb__fail(GB_ERR_ARG, "session_iter: a loop needs a name");
    if (!items && outer < 0 && !v)
        return gb__fail(GB_ERR_ARG, "session_iter: loop '%s' has no items, and '%s' is neither an enclosing loop nor "
                                    "a name bound by an earlier trace", name, over ? over : "");
    if (v && !(kept = gb__ses_sess_keep(s, v))) return gb_last_status();
    if (items && gb_tensor_ndim(items) < 1)
        return gb__fail(GB_ERR_ARG, "session_iter: loop '%s' walks dim 0 of its items, which have none", name);
    char *text = gb__strdup(name, "session_iter");
    if (!text) return GB_ERR_ALLOC;
    if (!GB_ARR_RESERVE(s->open, 1, "session_iter")) return free(text), GB_ERR_ALLOC;
    gb__ses_sess_step *st = gb__ses_sess_push(s, GB__SESS_ITER);
    if (!st) return free(text), GB_ERR_ALLOC;
    st->text = text;
    st->items = gb_tensor_ref(items);
    st->over = outer;
    st->value = kept;
    return GB_ARR_PUT(s->open, (int)(st - s->steps), "session_iter") ? GB_OK : GB_ERR_ALLOC; /* reserved */
}

gb_status gb_session_input(gb_session *s, gb_trace *tr, const char *loop, int n, gb_tensor *const *inputs) {
    int at = gb__ses_sess_step_of(s, tr), it = -1;
    for (int p = at >= 0 ? s->steps[at].parent : -1; p >= 0 && it < 0; p = s->steps[p].parent)
        if (loop && !strcmp(s->steps[p].text, loop)) it = p;
    if (it < 0)
        return gb__fail(GB_ERR_ARG, "session_input: the trace is in no loop called %s", loop ? loop : "NULL");
    gb_tensor **in = gb__calloc((size_t)n + 1, sizeof *in, "session_input");
    if (!in) return GB_ERR_ALLOC;
    for (int k = 0; k < n; k++) in[k] = gb_tensor_ref(inputs[k]);
    gb__ses_sess_step *st = &s->steps[at];
    for (int k = 0; k < st->ninputs; k++) gb_tensor_free(st->inputs[k]);
    free(st->inputs);
    st->inputs = in, st->ninputs = n, st->input_loop = it;
    return GB_OK;
}

gb_status gb_session_iter_end(gb_session *s) {
    if (!arrlen(s->open)) return gb__fail(GB_ERR_STATE, "session_iter_end: no loop is open");
    s->steps[arrpop(s->open)].end = (int)arrlen(s->steps);
    return GB_OK;
}

gb_val *gb_session_item(gb_session *s, gb_trace *tr, const char *name) {
    int at = gb__ses_sess_step_of(s, tr), loop = -1;
    for (int p = at >= 0 ? s->steps[at].parent : -1; p >= 0 && loop < 0; p = s->steps[p].parent)
        if (!name || !strcmp(s->steps[p].text, name)) loop = p;
    if (loop < 0)
        return gb__fail_null(GB_ERR_ARG, "session_item: the trace is in no loop%s%s of the session",
                             name ? " called " : "", name ? name : "");
    return gb__ses_sess_importer(s, tr, NULL, NULL, loop);
}

/* ---- running -------------------------------------------------------------- */

/* The session's prefix on a step's failure, the step's own message kept. */
gb_status gb__ses_sess_fail(gb_status st, int number) {
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", gb_last_error());
    return gb__fail(st, "session: trace %d: %s", number, msg);
}

static gb_status gb__ses_sess_bind(gb_session *s, const gb__ses_sess_step *st, bool scanning) {
    for (ptrdiff_t i = 0; i < arrlen(s->imports); i++) {
        const gb__ses_sess_import *imp = &s->imports[i];
        if (imp->to != st->tr) continue;
        gb_tensor *t;
        if (imp->iter >= 0) {
            t = s->steps[imp->iter].item;
        } else {
            gb_exec *from = gb_trace_exec(gb_val_trace(imp->kept));
            t = scanning ? gb_exec_held(from, imp->kept) : gb_exec_value(from, imp->kept);
            if (!t)
                return gb__fail(GB_ERR_STATE, "session: trace %d: %s, of trace %d, was never produced (its trace "
                                              "stopped before it, or a condition was false)",
                                st->number, gb_val_text(imp->source),
                                s->steps[gb__ses_sess_step_of(s, gb_val_trace(imp->source))].number);
        }
        gb_status r = gb_exec_bind(gb_trace_exec(st->tr), imp->c, t);
        if (r != GB_OK) return r;
    }
    return GB_OK;
}

static bool gb__ses_sess_cancelled(const gb_session *s) { return s->ev.cancelled && s->ev.cancelled(s->ev.ctx); }
static bool gb__ses_sess_cancel_cb(void *ctx) { return gb__ses_sess_cancelled(ctx); }

typedef struct gb__ses_sess_decode {
    gb_session *s;
    const gb__ses_sess_step *st;
    int64_t steps; /* made so far: the new tokens a result reports */
} gb__ses_sess_decode;

static gb_status gb__ses_sess_on_step(int step, const int64_t *ids, int64_t batch, void *ctx) {
    gb__ses_sess_decode *d = ctx;
    d->steps++;
    if (gb__ses_sess_cancelled(d->s)) return gb__fail(GB_ERR_STATE, "session: cancelled");
    gb_status r = d->s->ev.token ? d->s->ev.token(d->s->ev.ctx, d->st->number, step, ids, batch) : GB_OK;
    if (r == GB_OK && d->st->opts.on_step) r = d->st->opts.on_step(step, ids, batch, d->st->opts.step_ctx);
    return r;
}

/* The item numbers of the loops around step i, outermost first; their count. */
static int gb__ses_sess_items(const gb_session *s, int i, int64_t *items, int cap) {
    int n = 0;
    for (int p = s->steps[i].parent; p >= 0; p = s->steps[p].parent) n++;
    int k = n < cap ? n : cap;
    for (int p = s->steps[i].parent; p >= 0; p = s->steps[p].parent)
        if (--k < cap && k >= 0) items[k] = s->steps[p].index;
    return n < cap ? n : cap;
}

static gb_status gb__ses_sess_trace(gb_session *s, int i, bool scanning) {
    gb__ses_sess_step *st = &s->steps[i];
    gb_status r = gb__ses_sess_bind(s, st, scanning);
    if (r != GB_OK) return r;
    /* its loop's item's input, or (NULL) the trace's own */
    int64_t k = st->inputs ? s->steps[st->input_loop].index : 0;
    if (st->inputs && (k < 0 || k >= st->ninputs))
        return gb__fail(GB_ERR_INDEX, "session: trace %d: loop '%s' is at item %lld, and the trace has inputs for %d",
                        st->number, s->steps[st->input_loop].text, (long long)k, st->ninputs);
    gb_tensor *in = st->inputs ? st->inputs[k] : NULL;
    gb_exec *ex = gb_trace_exec(st->tr);
    gb__ses_sess_decode d = {s, st, 0};
    /* asked inside the forward passes too, at every module: a long pass is
     * not waited out (no cost when nobody asks) */
    gb_exec_set_cancel(ex, s->ev.cancelled ? gb__ses_sess_cancel_cb : NULL, s);
    if (scanning) { /* a generation's scan steps through its passes, so .next() getters are checked too */
        r = st->generate ? gb_exec_scan_generate(ex, in, st->opts.max_new_tokens) : gb_exec_scan(ex, in);
    } else if (st->generate) {
        gb_decode_opts o = st->opts;
        o.on_step = gb__ses_sess_on_step;
        o.step_ctx = &d;
        r = gb_exec_decode(ex, in, &o);
    } else {
        r = in ? gb_exec_run(ex, in) : gb_trace_run(st->tr);
    }
    if (r != GB_OK && r != GB_STOPPED) return s->ntraces > 1 ? gb__ses_sess_fail(r, st->number) : r;
    int64_t items[16];
    int depth = gb__ses_sess_items(s, i, items, 16);
    if (!scanning && s->ev.trace && (r = s->ev.trace(s->ev.ctx, st->tr, st->number, depth, items)) != GB_OK) return r;
    if (s->result && (r = s->result(s->result_ctx, st->tr, st->number, depth, items, scanning, d.steps)) != GB_OK) return r;
    return GB_OK;
}

static gb_status gb__ses_sess_log(gb_session *s, const gb__ses_sess_step *st) {
    if (!st->value) {
        fprintf(s->log, "%s\n", st->text);
        return GB_OK;
    }
    gb_tensor *t = gb_exec_value(gb_trace_exec(gb_val_trace(st->value)), st->value);
    char *str = t ? gb_tensor_str(t) : NULL;
    if (!str) return gb__fail(gb_last_status(), "session: log '%s': %s", st->text, gb_last_error());
    fprintf(s->log, "%s%s%s\n", st->text, *st->text ? " " : "", str);
    free(str);
    return GB_OK;
}

/* Steps [from, to): GB_OK, GB_STOPPED after a session-level stop, or an error. */
static gb_status gb__ses_sess_steps(gb_session *s, int from, int to, bool scanning) {
    for (int i = from; i < to; i++) {
        if (!scanning && gb__ses_sess_cancelled(s)) return gb__fail(GB_ERR_STATE, "session: cancelled");
        gb__ses_sess_step *st = &s->steps[i];
        gb_status r = GB_OK;
        switch (st->kind) {
        case GB__SESS_TRACE: r = gb__ses_sess_trace(s, i, scanning); break;
        case GB__SESS_LOG: r = scanning ? GB_OK : gb__ses_sess_log(s, st); break;
        case GB__SESS_STOP: r = scanning ? GB_OK : GB_STOPPED; break;
        case GB__SESS_ITER: {
            gb_tensor *items = st->items ? st->items : st->over >= 0 ? s->steps[st->over].item : NULL;
            if (st->value) { /* an earlier trace's value, as its execution holds it now */
                gb_exec *from = gb_trace_exec(gb_val_trace(st->value));
                if (!(items = scanning ? gb_exec_held(from, st->value) : gb_exec_value(from, st->value)))
                    return gb__fail(GB_ERR_STATE, "session: loop '%s': %s was never produced (its trace stopped "
                                                  "before it, or a condition was false)",
                                    st->text, gb_val_text(st->value));
            }
            if (!items || gb_tensor_ndim(items) < 1)
                return gb__fail(GB_ERR_ARG, "session: loop '%s' walks dim 0 of %s, which has none", st->text,
                                st->over >= 0 ? s->steps[st->over].text : st->value ? gb_val_text(st->value) : "its items");
            items = gb_tensor_ref(items); /* an earlier trace run again in the body must not free it under us */
            int64_t n = gb_tensor_dim(items, 0);
            if (scanning && n > 1) n = 1; /* every item has the first's shape */
            for (int64_t k = 0; r == GB_OK && k < n; k++) {
                gb_tensor_free(st->item);
                if (!(st->item = gb_select(items, 0, k))) {
                    gb_tensor_free(items);
                    return gb_last_status();
                }
                st->index = k;
                r = gb__ses_sess_steps(s, i + 1, st->end, scanning);
            }
            gb_tensor_free(st->item), gb_tensor_free(items);
            st->item = NULL;
            i = st->end - 1;
            break;
        }
        }
        if (r != GB_OK) return r;
    }
    return GB_OK;
}

static gb_status gb__ses_sess_check(const gb_session *s, const char *op) {
    if (arrlen(s->open)) return gb__fail(GB_ERR_STATE, "%s: loop '%s' is still open", op, s->steps[arrlast(s->open)].text);
    return GB_OK;
}

gb_status gb_session_scan(gb_session *s) {
    gb_status r = gb__ses_sess_check(s, "session_scan");
    return r == GB_OK ? gb__ses_sess_steps(s, 0, (int)arrlen(s->steps), true) : r;
}

gb_status gb_session_run(gb_session *s) {
    gb_status r = gb__ses_sess_check(s, "session_run");
    if (r == GB_OK) r = gb__ses_sess_steps(s, 0, (int)arrlen(s->steps), false);
    return r == GB_STOPPED ? GB_OK : r;
}
