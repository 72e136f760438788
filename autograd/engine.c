/* The backward engine: topological walk, gradient accumulation, hooks,
 * version checks, graph release. The per-op gradient formulas live beside
 * their forwards in tensor/ (see the op table in tensor/tensor_impl.h). */
#include "autograd.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "../tensor/tensor_impl.h"

struct gb__ts_grad_hook {
    int id;
    gb_grad_hook_fn fn;
    void *ctx;
};

/* ---- flags -------------------------------------------------------------- */

bool gb_tensor_requires_grad(const gb_tensor *t) { return t->requires_grad; }

bool gb_tensor_is_leaf(const gb_tensor *t) { return t->nsrc == 0 && !t->graph_freed; }

gb_status gb_requires_grad_(gb_tensor *t, bool on) {
    if (!gb_tensor_is_leaf(t)) {
        if (on) return GB_OK;
        return gb__fail(GB_ERR_AUTOGRAD,
                        "requires_grad_: you can only change requires_grad flags of leaf variables (tensor %s was "
                        "made by '%s'); use gb_detach for a copy without history",
                        GB__SHAPE_STR(t), gb__ts_ops[t->op].name);
    }
    if (on && t->dtype != GB_DTYPE_F32 && t->dtype != GB_DTYPE_F16 && t->dtype != GB_DTYPE_BF16)
        return gb__fail(GB_ERR_DTYPE, "requires_grad_: only floating point tensors can require gradients (got %s)",
                        gb_dtype_name(t->dtype));
    t->requires_grad = on;
    return GB_OK;
}

gb_status gb_retain_grad(gb_tensor *t) {
    if (!t->requires_grad)
        return gb__fail(GB_ERR_AUTOGRAD, "retain_grad: can't retain_grad on a tensor %s that has requires_grad=False",
                        GB__SHAPE_STR(t));
    t->retain_grad = true;
    return GB_OK;
}

gb_tensor *gb_tensor_grad(const gb_tensor *t) { return t->grad; }

void gb_zero_grad(gb_tensor *t) {
    gb_tensor_free(t->grad);
    t->grad = NULL;
}

gb_status gb_set_grad(gb_tensor *t, gb_tensor *g) {
    gb_tensor *copy = NULL;
    if (g) {
        if (g->ndim != t->ndim || memcmp(g->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) != 0) {
            char b1[160];
            return gb__fail(GB_ERR_SHAPE, "set_grad: assigned grad has shape %s but the tensor has shape %s",
                            gb__shape_str(b1, 160, g->ndim, g->shape), GB__SHAPE_STR(t));
        }
        copy = gb_empty(t->ndim, t->shape, GB_DTYPE_F32);
        if (!copy || gb__ts_copy_into(copy, g) != GB_OK) {
            gb_tensor_free(copy);
            return gb_last_status();
        }
    }
    gb_tensor_free(t->grad);
    t->grad = copy;
    return GB_OK;
}

gb_tensor *gb_detach(gb_tensor *t) {
    gb_grad_mode m = gb_no_grad_begin();
    gb_tensor *out = gb__ts_op_new_view(GB_OP_VIEW, "detach", t, t->ndim, t->shape, t->stride, t->offset);
    if (out) out = gb__ts_op_run(out);
    gb_grad_mode_end(m);
    return out;
}

const char *gb_tensor_op_name(const gb_tensor *t) { return gb__ts_ops[t->op].name; }

/* ---- grad mode ---------------------------------------------------------- */

gb_grad_mode gb_no_grad_begin(void) {
    gb_grad_mode m = {gb__ts_grad_mode()};
    gb__ts_set_grad_mode(false);
    return m;
}

gb_grad_mode gb_enable_grad_begin(void) {
    gb_grad_mode m = {gb__ts_grad_mode()};
    gb__ts_set_grad_mode(true);
    return m;
}

void gb_grad_mode_end(gb_grad_mode saved) { gb__ts_set_grad_mode(saved.was_enabled); }

bool gb_is_grad_enabled(void) { return gb__ts_grad_mode(); }

/* ---- hooks -------------------------------------------------------------- */

static _Atomic int gb__ag_next_hook_id = 1;

int gb_grad_hook_add(gb_tensor *t, gb_grad_hook_fn fn, void *ctx) {
    if (!t->requires_grad) {
        gb__fail(GB_ERR_AUTOGRAD, "grad_hook_add: cannot register a hook on a tensor %s that doesn't require gradient",
                 GB__SHAPE_STR(t));
        return 0;
    }
    gb__ts_grad_hook h = {gb__ag_next_hook_id++, fn, ctx};
    return GB_ARR_PUT(t->hooks, h, "grad_hook_add") ? h.id : 0;
}

gb_status gb_grad_hook_remove(gb_tensor *t, int id) {
    for (ptrdiff_t i = 0; i < arrlen(t->hooks); i++)
        if (t->hooks[i].id == id) {
            arrdel(t->hooks, i);
            return GB_OK;
        }
    return gb__fail(GB_ERR_NOT_FOUND, "grad_hook_remove: no hook with id %d on this tensor", id);
}

/* ---- backward ----------------------------------------------------------- */

static _Atomic uint64_t gb__ag_walk_epoch = 1;

/* The node a recorded edge really points at. gb_index_put_ turns the written
 * tensor itself into an INDEX_PUT node and moves its earlier history to a
 * new node (src[0]); an op recorded before the write (its source version is
 * older than the write) must reach that earlier history, not the write. Views
 * share storage and see the written value, so they keep the edge as is. */
static gb_tensor *gb__ag_edge_target(const gb_tensor *t, int i) {
    gb_tensor *s = t->src[i];
    if (t->op == GB_OP_VIEW) return s;
    while (s->op == GB_OP_INDEX_PUT && s->nsrc > 0 && t->src_version[i] < s->out_version) s = s->src[0];
    return s;
}

/* Nodes reachable from root through tensors that require grad, in
 * topological order (every node after all of its sources). Iterative DFS so
 * deep graphs (long generations) cannot overflow the stack. The order holds
 * a reference to each node: releasing the graph during the walk must not
 * free a node still to be visited. */
static gb_status gb__ag_topo_sort(gb_tensor *root, gb_tensor ***order) {
    uint64_t epoch = gb__ag_walk_epoch++;
    struct frame {
        gb_tensor *t;
        int next_src;
    } *stack = NULL;
    const char *what = "backward: ordering the graph";
    root->topo_mark = epoch;
    bool ok = GB_ARR_PUT(stack, ((struct frame){root, 0}), what);
    while (ok && arrlen(stack) > 0) {
        struct frame *f = &arrlast(stack);
        if (f->next_src < f->t->nsrc) {
            int i = f->next_src++;
            gb_tensor *s = gb__ag_edge_target(f->t, i);
            if (s != f->t->src[i]) { /* rewrite the edge for good: the graph may be released as we go */
                gb_tensor_ref(s);
                gb_tensor_free(f->t->src[i]);
                f->t->src[i] = s;
            }
            if (s->requires_grad && s->topo_mark != epoch) {
                s->topo_mark = epoch;
                ok = GB_ARR_PUT(stack, ((struct frame){s, 0}), what);
            }
        } else if ((ok = GB_ARR_PUT(*order, f->t, what))) {
            gb_tensor_ref(f->t);
            (void)arrpop(stack);
        }
    }
    arrfree(stack);
    return ok ? GB_OK : GB_ERR_ALLOC;
}

/* An op whose backward reads a value that was overwritten in place since the
 * forward would compute a wrong gradient: refuse, as PyTorch does. */
static gb_status gb__ag_check_versions(gb_tensor *t) {
    unsigned saves = gb__ts_ops[t->op].saves;
    for (int i = 0; i < t->nsrc && i < 7; i++)
        if ((saves & GB__SAVES_SRC(i)) && t->src[i]->storage->version != t->src_version[i])
            return gb__fail(GB_ERR_AUTOGRAD,
                            "backward: one of the variables needed for gradient computation has been modified by an "
                            "inplace operation: input %d %s of '%s' is at version %u; expected version %u instead",
                            i, GB__SHAPE_STR(t->src[i]), gb__ts_ops[t->op].name, t->src[i]->storage->version,
                            t->src_version[i]);
    if ((saves & GB__SAVES_OUT) && t->storage->version != t->out_version)
        return gb__fail(GB_ERR_AUTOGRAD,
                        "backward: one of the variables needed for gradient computation has been modified by an "
                        "inplace operation: the output %s of '%s' is at version %u; expected version %u instead",
                        GB__SHAPE_STR(t), gb__ts_ops[t->op].name, t->storage->version, t->out_version);
    return GB_OK;
}

/* ---- gradient buffers --------------------------------------------------- */

/* The accumulating gradient of t for this backward, blank on first use
 * (tensor_impl.h, GB__WRITES_SRC): a large one (a weight's, written all over
 * and, with set-to-none zero_grad, allocated again every step) takes memory
 * the storage allocator kept from an earlier step (tensor.c), and is zeroed
 * (gb__ts_grad_settle) only if something adds into it before a product's
 * backward has written it. */
static gb_tensor *gb__ag_grad_acc(gb_tensor *t) {
    if (!t->grad_acc && (t->grad_acc = gb_empty(t->ndim, t->shape, GB_DTYPE_F32))) t->grad_acc->blank = true;
    return t->grad_acc;
}

/* Whether g, a finished gradient, can become a .grad as it is rather than
 * be copied: no one else holds it or its memory (the engine's own
 * accumulator, or a fresh tensor a hook made), its storage decides when its
 * memory goes (not a gb_from_blob view of a caller's buffer without a
 * release), and it is plain data. */
static bool gb__ag_grad_can_adopt(const gb_tensor *g) {
    const gb_storage *s = g->storage;
    return g->refcount == 1 && s->refcount == 1 && (s->owned || s->release) && g->nsrc == 0 && !g->requires_grad &&
           !g->grad;
}

/* Add g into *dst; a first gradient is adopted rather than copied when it
 * can be (PyTorch's AccumulateGrad does the same): copying a weight's
 * gradient into fresh memory cost a quarter of a small MLP's training step. */
static gb_status gb__ag_accumulate(gb_tensor **dst, gb_tensor *g) {
    if (!*dst) {
        *dst = gb__ag_grad_can_adopt(g) ? gb_tensor_ref(g) : gb_clone(g);
        return *dst ? GB_OK : gb_last_status();
    }
    float *d = gb_tensor_f32(*dst);
    const float *s = gb_tensor_f32(g);
    int64_t n = gb_tensor_numel(g);
    for (int64_t i = 0; i < n; i++) d[i] += s[i];
    return GB_OK;
}

static gb_status gb__ag_run_hooks(gb_tensor *t) {
    for (ptrdiff_t i = 0; i < arrlen(t->hooks); i++) {
        gb_tensor *g = t->grad_acc;
        gb_status st = t->hooks[i].fn(t, &t->grad_acc, t->hooks[i].ctx);
        if (st != GB_OK) return st;
        if (!t->grad_acc) return gb__fail(GB_ERR_STATE, "backward: a gradient hook on %s left no gradient", GB__SHAPE_STR(t));
        if (t->grad_acc != g) { /* replaced: must still fit, and be contiguous f32 for the kernels */
            gb_tensor *r = t->grad_acc;
            if (r->ndim != t->ndim || memcmp(r->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) != 0) {
                char b1[160];
                return gb__fail(GB_ERR_SHAPE, "backward: a gradient hook returned shape %s for tensor of shape %s",
                                gb__shape_str(b1, 160, r->ndim, r->shape), GB__SHAPE_STR(t));
            }
            if (r->dtype != GB_DTYPE_F32 || !gb_tensor_is_contiguous(r)) {
                t->grad_acc = gb_empty(t->ndim, t->shape, GB_DTYPE_F32);
                if (!t->grad_acc) {
                    t->grad_acc = r;
                    return GB_ERR_ALLOC;
                }
                gb__ts_copy_into(t->grad_acc, r);
                gb_tensor_free(r);
            }
        }
    }
    return GB_OK;
}

static gb_status gb__ag_backward_node(gb_tensor *t, bool retain_graph) {
    gb__ts_grad_settle(t->grad_acc); /* no contribution wrote it: zero */
    gb_status st = gb__ag_run_hooks(t);
    if (st != GB_OK) return st;
    gb_tensor *g = t->grad_acc;
    if (gb_tensor_is_leaf(t) || t->retain_grad) {
        st = gb__ag_accumulate(&t->grad, g);
        if (st != GB_OK) return st;
    }
    if (t->nsrc > 0) {
        gb_tensor *dsrc[64] = {0}, **ds = t->nsrc <= 64 ? dsrc : calloc((size_t)t->nsrc, sizeof *ds);
        if (!ds) return gb__fail(GB_ERR_ALLOC, "backward: out of memory");
        for (int i = 0; i < t->nsrc && st == GB_OK; i++) {
            if (t->src[i]->requires_grad && !(ds[i] = gb__ag_grad_acc(t->src[i]))) st = GB_ERR_ALLOC;
            if (ds[i] && !(i < 24 && (gb__ts_ops[t->op].saves & GB__WRITES_SRC(i)))) gb__ts_grad_settle(ds[i]);
        }
        if (st == GB_OK) st = gb__ts_ops[t->op].backward(t, g, ds);
        if (ds != dsrc) free(ds);
        if (st != GB_OK) return st;
    }
    if (!retain_graph && t->nsrc > 0) {
        gb__ts_tensor_drop_graph(t);
        t->graph_freed = true;
    }
    return GB_OK;
}

gb_status gb_backward(gb_tensor *root, gb_tensor *grad, bool retain_graph) {
    if (root->graph_freed)
        return gb__fail(GB_ERR_AUTOGRAD,
                        "backward: trying to backward through the graph a second time (or directly access saved "
                        "tensors after they have already been freed); pass retain_graph=true to the first backward");
    if (!root->requires_grad)
        return gb__fail(GB_ERR_AUTOGRAD, "backward: element 0 of tensors does not require grad and does not have a "
                                         "grad_fn (was it computed under no-grad, or from tensors that don't require grad?)");
    if (gb__is_meta(root)) return gb__fail(GB_ERR_STATE, "backward: tensor %s is shape-only (meta)", GB__SHAPE_STR(root));
    if (!grad && gb_tensor_numel(root) != 1)
        return gb__fail(GB_ERR_AUTOGRAD, "backward: grad can be implicitly created only for scalar outputs (got shape %s)",
                        GB__SHAPE_STR(root));
    if (grad && (grad->ndim != root->ndim ||
                 memcmp(grad->shape, root->shape, sizeof(int64_t) * (size_t)root->ndim) != 0)) {
        char b1[160];
        return gb__fail(GB_ERR_SHAPE, "backward: grad of shape %s does not match the output's shape %s",
                        gb__shape_str(b1, 160, grad->ndim, grad->shape), GB__SHAPE_STR(root));
    }

    gb_tensor **order = NULL;
    gb_status st = gb__ag_topo_sort(root, &order);
    for (ptrdiff_t i = 0; i < arrlen(order) && st == GB_OK; i++) {
        gb_tensor *t = order[i];
        if (t->graph_freed)
            st = gb__fail(GB_ERR_AUTOGRAD,
                          "backward: trying to backward through the graph a second time: the graph of '%s' %s was "
                          "freed by an earlier backward; pass retain_graph=true to the first backward",
                          gb__ts_ops[t->op].name, GB__SHAPE_STR(t));
        else
            st = gb__ag_check_versions(t);
    }
    if (st == GB_OK) {
        root->grad_acc = gb_empty(root->ndim, root->shape, GB_DTYPE_F32);
        if (!root->grad_acc) st = GB_ERR_ALLOC;
        else if (grad) st = gb__ts_copy_into(root->grad_acc, grad);
        else *gb_tensor_f32(root->grad_acc) = 1.0f;
    }
    /* Hooks may compute with tensors; nothing they do is recorded. Each node
     * is released as soon as it is done (its consumers came before it); after
     * a failure the rest only drop their partial sums. */
    gb_grad_mode m = gb_no_grad_begin();
    for (ptrdiff_t i = arrlen(order) - 1; i >= 0; i--) {
        gb_tensor *t = order[i];
        if (st == GB_OK && t->grad_acc) st = gb__ag_backward_node(t, retain_graph);
        gb_tensor_free(t->grad_acc);
        t->grad_acc = NULL;
        gb_tensor_free(t);
    }
    gb_grad_mode_end(m);
    arrfree(order);
    return st;
}
