/* The hook registry: the observer of runs, dispatching module events to
 * registered hooks and turning autograd's tensor hooks into gradient events. */
#include "hooks.h"

#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "../nn/nn_impl.h"

typedef struct gb__hook {
    int id;
    gb_module *module;  /* NULL for point hooks */
    char *point;        /* point hooks: full path */
    gb_event_kind kind;
    unsigned flags;
    gb_hook_fn fn;
    void *ctx;
} gb__hook;

/* What a gradient trampoline needs to rebuild its event in backward. */
typedef struct gb__grad_site {
    gb_hooks *h;
    gb_module *module;
    gb_event_kind kind;
    int call, index;
    int64_t batch;
} gb__grad_site;

struct gb_hooks {
    gb_module *root;
    gb__hook *hooks;            /* stb_ds array, registration order */
    gb__grad_site **sites;      /* stb_ds array of owned trampoline contexts */
    int next_id;
    int nkind[GB_EVENT_COUNT];  /* registered hooks per kind: skip work fast */
};

gb_hooks *gb_hooks_new(gb_module *root) {
    gb_hooks *h = gb__calloc(1, sizeof *h, "hooks_new");
    if (h) {
        h->root = root;
        h->next_id = 1;
    }
    return h;
}

void gb_hooks_free(gb_hooks *h) {
    if (!h) return;
    for (ptrdiff_t i = 0; i < arrlen(h->hooks); i++) free(h->hooks[i].point);
    arrfree(h->hooks);
    for (ptrdiff_t i = 0; i < arrlen(h->sites); i++) free(h->sites[i]);
    arrfree(h->sites);
    free(h);
}

static int gb__add(gb_hooks *h, gb__hook hk) {
    hk.id = h->next_id++;
    arrput(h->hooks, hk);
    h->nkind[hk.kind]++;
    return hk.id;
}

int gb_hook_add(gb_hooks *h, gb_module *m, gb_event_kind kind, unsigned flags, gb_hook_fn fn, void *ctx) {
    if (!m || !fn || kind == GB_EVENT_POINT || (unsigned)kind >= GB_EVENT_COUNT) {
        gb__fail(GB_ERR_ARG, "hook_add: needs a module, a function and a module event kind (got %s)",
                 gb_event_name(kind));
        return 0;
    }
    return gb__add(h, (gb__hook){0, m, NULL, kind, flags, fn, ctx});
}

int gb_hook_add_point(gb_hooks *h, const char *path, gb_hook_fn fn, void *ctx) {
    char *p = path && fn ? strdup(path) : NULL;
    if (!p) {
        gb__fail(GB_ERR_ARG, "hook_add_point: needs a point path and a function");
        return 0;
    }
    return gb__add(h, (gb__hook){0, NULL, p, GB_EVENT_POINT, 0, fn, ctx});
}

gb_status gb_hook_remove(gb_hooks *h, int id) {
    for (ptrdiff_t i = 0; i < arrlen(h->hooks); i++)
        if (h->hooks[i].id == id) {
            h->nkind[h->hooks[i].kind]--;
            free(h->hooks[i].point);
            arrdel(h->hooks, i);
            return GB_OK;
        }
    return gb__fail(GB_ERR_NOT_FOUND, "hook_remove: no hook with handle %d (already removed?)", id);
}

static bool gb__matches(const gb__hook *hk, const gb_event *ev) {
    if (hk->kind != ev->kind) return false;
    if (hk->kind == GB_EVENT_POINT) return !strcmp(hk->point, ev->path);
    for (const gb_module *m = ev->module; m; m = (hk->flags & GB_HOOK_SUBTREE) ? gb_module_parent(m) : NULL)
        if (m == hk->module) return true;
    return false;
}

/* Run every matching hook in registration order. A hook may remove hooks;
 * ids make the walk robust to that. */
static gb_status gb__dispatch(gb_hooks *h, gb_event *ev) {
    if (h->nkind[ev->kind] == 0) return GB_OK;
    int last_id = h->next_id;
    for (ptrdiff_t i = 0; i < arrlen(h->hooks); i++) {
        gb__hook hk = h->hooks[i];
        if (hk.id >= last_id || !gb__matches(&hk, ev)) continue;
        gb_status st = hk.fn(ev, hk.ctx);
        if (st != GB_OK) return st;
        while (i >= 0 && (i >= arrlen(h->hooks) || h->hooks[i].id != hk.id)) i--; /* removed: step back */
    }
    return GB_OK;
}

static gb_status gb__grad_trampoline(gb_tensor *t, gb_tensor **grad, void *ctx) {
    (void)t;
    gb__grad_site *s = ctx;
    gb_values vs = {1, {*grad}};
    gb_event ev = {.kind = s->kind, .module = s->module, .path = gb_module_path(s->module), .call = s->call,
                  .batch_len = s->batch, .values = &vs, .index = s->index};
    gb_status st = gb__dispatch(s->h, &ev);
    *grad = vs.v[0];
    return st;
}

static bool gb__any_match(gb_hooks *h, gb_event_kind kind, const gb_event *ev) {
    if (h->nkind[kind] == 0) return false;
    gb_event probe = *ev;
    probe.kind = kind;
    for (ptrdiff_t i = 0; i < arrlen(h->hooks); i++)
        if (gb__matches(&h->hooks[i], &probe)) return true;
    return false;
}

static gb_status gb__watch_grad(gb_hooks *h, const gb_event *ev, gb_event_kind kind, int index, gb_tensor *t) {
    gb__grad_site *s = gb__malloc(sizeof *s, "hooks: gradient event");
    if (!s) return GB_ERR_ALLOC;
    *s = (gb__grad_site){h, ev->module, kind, ev->call, index, ev->batch_len};
    arrput(h->sites, s);
    return gb_grad_hook_add(t, gb__grad_trampoline, s) ? GB_OK : gb_last_status();
}

static gb_status gb__observe(gb_event *ev, void *ctx) {
    gb_hooks *h = ctx;
    gb_status st = gb__dispatch(h, ev);
    if (st != GB_OK) return st;
    if (ev->kind == GB_EVENT_INPUT && !ev->skip && gb__any_match(h, GB_EVENT_GRAD_INPUT, ev)) {
        /* The gradient of an input "through this module" is the gradient of
         * an identity view that only this module consumes. */
        for (int i = 0; i < ev->values->n && st == GB_OK; i++) {
            gb_tensor *x = ev->values->v[i];
            if (!x || !gb_tensor_requires_grad(x)) continue;
            gb_tensor *view = gb_reshape(x, gb_tensor_ndim(x), gb_tensor_shape(x));
            if (!view) return gb_last_status();
            gb_values_set(ev->values, i, view);
            st = gb__watch_grad(h, ev, GB_EVENT_GRAD_INPUT, i, view);
        }
    } else if (ev->kind == GB_EVENT_OUTPUT && gb__any_match(h, GB_EVENT_GRAD_OUTPUT, ev)) {
        for (int i = 0; i < ev->values->n && st == GB_OK; i++)
            if (ev->values->v[i] && gb_tensor_requires_grad(ev->values->v[i]))
                st = gb__watch_grad(h, ev, GB_EVENT_GRAD_OUTPUT, i, ev->values->v[i]);
    }
    return st;
}

void gb_hooks_attach(gb_hooks *h, gb_run *run) { gb_run_set_observer(run, gb__observe, h); }
