/* The hook registry: the observer of runs, dispatching module events to
 * registered hooks and turning autograd's tensor hooks into gradient events. */
#include "hooks.h"

#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "../nn/observer.h"
#include "../tensor/base.h"

typedef struct gb__hk_hook {
    int id;
    bool removed;       /* removed during a dispatch: freed when it ends */
    gb_module *module;  /* NULL for point hooks */
    char *point;        /* point hooks: full path */
    gb_event_kind kind;
    unsigned flags;
    gb_hook_fn fn;
    void *ctx;
} gb__hk_hook;

/* Every kind a hook may be registered for: nn's and our gradient events. */
#define GB__HOOK_KINDS (GB_EVENT_COUNT + 2)

/* What a gradient trampoline needs to rebuild its event in backward. */
typedef struct gb__hk_grad_site {
    gb_hooks *h;
    gb_module *module;
    gb_event_kind kind;
    int call, index;
} gb__hk_grad_site;

/* The event a gradient hook receives: nn's event, and which tensor of the
 * tuple the gradient is of (gb_hook_grad_index reads it). */
typedef struct gb__hk_grad_event {
    gb_event ev; /* first: hooks get &ge->ev */
    int index;
} gb__hk_grad_event;

/* One list of hooks; a dispatch holds a pointer to it while appends may
 * move its array. */
typedef struct gb__hk_hook_list {
    gb__hk_hook **v; /* stb_ds array, registration order */
} gb__hk_hook_list;

/* Hooks are indexed so that an event costs the hooks that may match it, not
 * every hook registered: a module's own hooks (by tree position), subtree
 * hooks, point hooks. Every list is in registration order and only grows
 * while a dispatch walks it (a hook added by a hook is appended; a removed
 * hook is only marked until the dispatch ends), so a dispatch walks lists by
 * index while hooks run. The interest mask, built with the index, tells
 * runs which module events to build at all (and us which modules have
 * gradient hooks). Events of a module outside the indexed tree (another
 * model, or the tree changed shape during a dispatch) walk every hook. */
struct gb_hooks {
    gb_module *root;
    gb__hk_hook_list all;         /* every hook, registration order, owned */
    gb__hk_hook_list *at;         /* [interest.size] (or NULL): hooks on exactly that module */
    gb__hk_hook_list subtree;     /* GB_HOOK_SUBTREE hooks */
    gb__hk_hook_list points;      /* point hooks */
    gb__hk_grad_site **sites;     /* stb_ds array of owned trampoline contexts */
    int next_id;
    int dispatching;           /* nesting depth of dispatches */
    bool dirty;                /* hooks were removed during a dispatch */
    gb__nn_interest interest;     /* what runs must build for us */
};

gb_hooks *gb_hooks_new(gb_module *root) {
    gb_hooks *h = gb__calloc(1, sizeof *h, "hooks_new");
    if (h) {
        h->root = root;
        h->next_id = 1;
    }
    return h;
}

static void gb__hk_index_free(gb_hooks *h) {
    for (int i = 0; h->at && i < h->interest.size; i++) arrfree(h->at[i].v);
    free(h->at);
    h->at = NULL;
    arrfree(h->subtree.v);
    arrfree(h->points.v);
    free(h->interest.mask);
    h->interest = (gb__nn_interest){0};
}

static void gb__hk_hook_free(gb__hk_hook *hk) {
    free(hk->point);
    free(hk);
}

void gb_hooks_free(gb_hooks *h) {
    if (!h) return;
    gb__hk_index_free(h);
    for (ptrdiff_t i = 0; i < arrlen(h->all.v); i++) gb__hk_hook_free(h->all.v[i]);
    arrfree(h->all.v);
    for (ptrdiff_t i = 0; i < arrlen(h->sites); i++) free(h->sites[i]);
    arrfree(h->sites);
    free(h);
}

/* ---- the index ---------------------------------------------------------- */

/* The mask bits a hook sets: its own kind (so that we know which modules
 * have gradient hooks) and the module event a run must build for it
 * (gradient events are armed in the forward events of the same module). */
static uint8_t gb__hk_wants_bits(gb_event_kind kind) {
    unsigned forward = kind == GB_EVENT_GRAD_INPUT ? GB_EVENT_INPUT : kind == GB_EVENT_GRAD_OUTPUT ? GB_EVENT_OUTPUT : kind;
    return (uint8_t)(1u << kind | 1u << forward);
}

static bool gb__hk_index_stale(const gb_hooks *h) { return !gb__nn_interest_current(&h->interest); }

/* Whether m is a module of the indexed tree (at its current shape). */
static bool gb__hk_indexed(const gb_hooks *h, const gb_module *m) {
    return h->at && gb__nn_tree_root(m) == h->interest.root && !gb__hk_index_stale(h);
}

/* Index one hook: append it to its list and mark what it needs. While the
 * index is stale the hook waits for the rebuild, which takes every hook. */
static gb_status gb__hk_index_add(gb_hooks *h, gb__hk_hook *hk) {
    gb__nn_interest *in = &h->interest;
    if (gb__hk_index_stale(h)) return GB_OK;
    uint8_t bits = gb__hk_wants_bits(hk->kind);
    if (hk->kind == GB_EVENT_POINT) {
        if (!GB_ARR_PUT(h->points.v, hk, "hook_add")) return GB_ERR_ALLOC;
        in->all |= bits;
        return GB_OK;
    }
    /* A module of another tree: its events come from runs of that tree,
     * which never use this mask (their root differs) and walk every hook. */
    if (gb__nn_tree_root(hk->module) != in->root) return GB_OK;
    if (!h->at) {
        h->at = calloc((size_t)in->size, sizeof *h->at);
        in->mask = calloc((size_t)in->size, 1);
        if (!h->at || !in->mask) {
            free(h->at), free(in->mask);
            h->at = NULL, in->mask = NULL;
            return gb__fail(GB_ERR_ALLOC, "hook_add: out of memory indexing the hook");
        }
    }
    int i = gb__nn_tree_index(hk->module), end = i + 1;
    if (hk->flags & GB_HOOK_SUBTREE) {
        if (!GB_ARR_PUT(h->subtree.v, hk, "hook_add")) return GB_ERR_ALLOC;
        end = gb__nn_tree_end(hk->module);
    } else if (!GB_ARR_PUT(h->at[i].v, hk, "hook_add")) {
        return GB_ERR_ALLOC;
    }
    for (; i < end; i++) in->mask[i] |= bits;
    return GB_OK;
}

/* Index every hook again: after removals, or when the tree changed shape. */
static void gb__hk_index_build(gb_hooks *h) {
    gb__hk_index_free(h);
    gb_module *root = gb__nn_tree_root(h->root);
    h->interest = (gb__nn_interest){root, gb__nn_tree_gen(root), gb__nn_tree_number(root), NULL, 0};
    for (ptrdiff_t i = 0; i < arrlen(h->all.v); i++)
        if (gb__hk_index_add(h, h->all.v[i]) != GB_OK) { /* runs deliver every event; we walk every hook */
            gb__hk_index_free(h);
            h->interest.all = 0xff;
            return;
        }
}

/* Free hooks removed during a dispatch, once no dispatch walks the lists,
 * and index the rest again. */
static void gb__hk_collect(gb_hooks *h) {
    if (h->dispatching || !h->dirty) return;
    ptrdiff_t k = 0;
    for (ptrdiff_t i = 0; i < arrlen(h->all.v); i++) {
        if (h->all.v[i]->removed) gb__hk_hook_free(h->all.v[i]);
        else h->all.v[k++] = h->all.v[i];
    }
    GB_ARR_TRUNC(h->all.v, k);
    h->dirty = false;
    gb__hk_index_build(h);
}

static int gb__hk_add(gb_hooks *h, gb__hk_hook proto) {
    gb__hk_hook *hk = gb__malloc(sizeof *hk, "hook_add");
    if (!hk) {
        free(proto.point);
        return 0;
    }
    *hk = proto;
    hk->id = h->next_id++;
    if (gb__hk_index_stale(h) && !h->dispatching) gb__hk_index_build(h);
    if (!GB_ARR_PUT(h->all.v, hk, "hook_add")) {
        gb__hk_hook_free(hk);
        return 0;
    }
    if (gb__hk_index_add(h, hk) != GB_OK) {
        (void)arrpop(h->all.v);
        gb__hk_hook_free(hk); /* in no list: its one append is what failed */
        return 0;
    }
    return hk->id;
}

int gb_hook_add(gb_hooks *h, gb_module *m, gb_event_kind kind, unsigned flags, gb_hook_fn fn, void *ctx) {
    if (!m || !fn || kind == GB_EVENT_POINT || (unsigned)kind >= GB__HOOK_KINDS) {
        gb__fail(GB_ERR_ARG, "hook_add: needs a module, a function and a module event kind (got %s)",
                 gb_event_name(kind));
        return 0;
    }
    return gb__hk_add(h, (gb__hk_hook){0, false, m, NULL, kind, flags, fn, ctx});
}

int gb_hook_add_point(gb_hooks *h, const char *path, gb_hook_fn fn, void *ctx) {
    char *p = path && fn ? strdup(path) : NULL;
    if (!p) {
        gb__fail(GB_ERR_ARG, "hook_add_point: needs a point path and a function");
        return 0;
    }
    return gb__hk_add(h, (gb__hk_hook){0, false, NULL, p, GB_EVENT_POINT, 0, fn, ctx});
}

gb_status gb_hook_remove(gb_hooks *h, int id) {
    for (ptrdiff_t i = 0; i < arrlen(h->all.v); i++) {
        gb__hk_hook *hk = h->all.v[i];
        if (hk->id != id || hk->removed) continue;
        hk->removed = true;
        h->dirty = true;
        gb__hk_collect(h);
        return GB_OK;
    }
    return gb__fail(GB_ERR_NOT_FOUND, "hook_remove: no hook with handle %d (already removed?)", id);
}

/* ---- dispatch ----------------------------------------------------------- */

static bool gb__hk_matches(const gb__hk_hook *hk, const gb_event *ev) {
    if (hk->removed || hk->kind != ev->kind) return false;
    if (hk->kind == GB_EVENT_POINT) return !strcmp(hk->point, ev->path);
    for (const gb_module *m = ev->module; m; m = (hk->flags & GB_HOOK_SUBTREE) ? gb_module_parent(m) : NULL)
        if (m == hk->module) return true;
    return false;
}

/* The two lists that may hold hooks matching an event (the second may be
 * NULL): point hooks; m's own hooks and the subtree hooks; or, for a module
 * the index does not cover, every hook. */
static void gb__hk_candidates(gb_hooks *h, gb_module *m, gb_event_kind kind, gb__hk_hook_list **a, gb__hk_hook_list **b) {
    static gb__hk_hook_list none;
    *b = NULL;
    if (kind == GB_EVENT_POINT && !gb__hk_index_stale(h)) *a = &h->points;
    else if (kind == GB_EVENT_POINT || !gb__hk_indexed(h, m)) *a = &h->all;
    else if (h->interest.mask[gb__nn_tree_index(m)] & (1u << kind)) *a = &h->subtree, *b = &h->at[gb__nn_tree_index(m)];
    else *a = &none; /* nothing on m or above it wants this kind */
}

/* Run every matching hook in registration order (merging the two lists by
 * id). Hooks added meanwhile (appended past the lengths taken here) wait
 * for the next event. */
static gb_status gb__hk_dispatch(gb_hooks *h, gb_event *ev) {
    gb__hk_hook_list *la, *lb;
    gb__hk_candidates(h, ev->module, ev->kind, &la, &lb);
    ptrdiff_t na = arrlen(la->v), nb = lb ? arrlen(lb->v) : 0, i = 0, j = 0;
    gb_status st = GB_OK;
    h->dispatching++;
    while (st == GB_OK && (i < na || j < nb)) {
        gb__hk_hook *a = i < na ? la->v[i] : NULL, *b = j < nb ? lb->v[j] : NULL;
        gb__hk_hook *hk = !b || (a && a->id < b->id) ? (i++, a) : (j++, b);
        if (gb__hk_matches(hk, ev)) st = hk->fn(ev, hk->ctx);
    }
    h->dispatching--;
    gb__hk_collect(h);
    return st;
}

static gb_status gb__hk_grad_trampoline(gb_tensor *t, gb_tensor **grad, void *ctx) {
    (void)t;
    gb__hk_grad_site *s = ctx;
    gb_values vs = {1, {*grad}};
    gb__hk_grad_event ge = {{.kind = s->kind, .module = s->module, .path = gb_module_path(s->module), .call = s->call,
                          .values = &vs},
                         s->index};
    gb_status st = gb__hk_dispatch(s->h, &ge.ev);
    *grad = vs.v[0];
    return st;
}

int gb_hook_grad_index(const gb_event *ev) {
    bool grad = ev->kind == GB_EVENT_GRAD_OUTPUT || ev->kind == GB_EVENT_GRAD_INPUT;
    return grad ? ((const gb__hk_grad_event *)ev)->index : -1;
}

static bool gb__hk_any_match(gb_hooks *h, gb_event_kind kind, const gb_event *ev) {
    gb_event probe = *ev;
    probe.kind = kind;
    gb__hk_hook_list *l[2];
    gb__hk_candidates(h, ev->module, kind, &l[0], &l[1]);
    for (int k = 0; k < 2; k++)
        for (ptrdiff_t i = 0; l[k] && i < arrlen(l[k]->v); i++)
            if (gb__hk_matches(l[k]->v[i], &probe)) return true;
    return false;
}

static gb_status gb__hk_watch_grad(gb_hooks *h, const gb_event *ev, gb_event_kind kind, int index, gb_tensor *t) {
    gb__hk_grad_site *s = gb__malloc(sizeof *s, "hooks: gradient event");
    if (!s) return GB_ERR_ALLOC;
    *s = (gb__hk_grad_site){h, ev->module, kind, ev->call, index};
    if (!GB_ARR_PUT(h->sites, s, "hooks: gradient event")) return free(s), GB_ERR_ALLOC;
    return gb_grad_hook_add(t, gb__hk_grad_trampoline, s) ? GB_OK : gb_last_status();
}

static gb_status gb__hk_observe(gb_event *ev, void *ctx) {
    gb_hooks *h = ctx;
    /* The run delivers every event while our mask is out of date. */
    if (gb__hk_index_stale(h) && !h->dispatching) gb__hk_index_build(h);
    gb_status st = gb__hk_dispatch(h, ev);
    if (st != GB_OK) return st;
    if (ev->kind == GB_EVENT_INPUT && !ev->skip && gb__hk_any_match(h, GB_EVENT_GRAD_INPUT, ev)) {
        /* The gradient of an input "through this module" is the gradient of
         * an identity view that only this module consumes. */
        for (int i = 0; i < ev->values->n && st == GB_OK; i++) {
            gb_tensor *x = ev->values->v[i];
            if (!x || !gb_tensor_requires_grad(x)) continue;
            gb_tensor *view = gb_reshape(x, gb_tensor_ndim(x), gb_tensor_shape(x));
            if (!view) return gb_last_status();
            gb_values_set(ev->values, i, view);
            st = gb__hk_watch_grad(h, ev, GB_EVENT_GRAD_INPUT, i, view);
        }
    } else if (ev->kind == GB_EVENT_OUTPUT && gb__hk_any_match(h, GB_EVENT_GRAD_OUTPUT, ev)) {
        for (int i = 0; i < ev->values->n && st == GB_OK; i++)
            if (ev->values->v[i] && gb_tensor_requires_grad(ev->values->v[i]))
                st = gb__hk_watch_grad(h, ev, GB_EVENT_GRAD_OUTPUT, i, ev->values->v[i]);
    }
    return st;
}

void gb_hooks_attach(gb_hooks *h, gb_run *run) {
    gb_run_set_observer(run, gb__hk_observe, h);
    if (gb__hk_index_stale(h) && !h->dispatching) gb__hk_index_build(h);
    gb__nn_run_set_interest(run, &h->interest);
}
