/* glassbox autograd: reverse-mode gradients over the tensor ops.
 *
 * Usage (compiled as a test, tests/test_header_examples.c):
 *
 *     gb_tensor *w = gb_ones(1, (int64_t[]){3}, GB_DTYPE_F32);
 *     gb_requires_grad_(w, true);                      // a leaf to differentiate
 *     gb_tensor *y = gb_mul_scalar(w, 2.0f);           // recorded: y knows MUL_SCALAR and w
 *     gb_tensor *loss = gb_sum_all(y);
 *     if (gb_backward(loss, NULL, false) != GB_OK) fprintf(stderr, "%s\n", gb_last_error());
 *     const gb_tensor *g = gb_tensor_grad(w);          // [2, 2, 2], borrowed
 *     gb_tensor_free(loss); gb_tensor_free(y); gb_tensor_free(w);
 *
 * Recording. An op records its op and sources (the tape) when grad mode is on
 * and one of its sources requires grad; its result then requires grad too.
 * Tensors made otherwise are leaves. gb_backward walks the graph from a root
 * in reverse topological order, calls each op's backward (which accumulates
 * into its sources' gradients) and stores the result in .grad of leaves that
 * require grad and of tensors marked with gb_retain_grad. Unless
 * retain_graph is true, each node's sources and saved values are released as
 * soon as its backward has run, and a second backward fails clearly.
 *
 * In-place writes. Storage carries a version counter; an op whose backward
 * reads a value records that value's version, and backward fails with
 * GB_ERR_AUTOGRAD if it changed in between (as PyTorch does).
 *
 * Pointer rules: gb_tensor_grad returns a borrowed pointer, valid until the
 * next backward or gb_zero_grad on that tensor; everything else follows
 * tensor.h (returned tensors are new references).
 *
 * Threads. Grad mode is per thread. A backward writes the gradients of the
 * graph it walks (and .grad of its leaves): two threads may run backward at
 * once on graphs that share only tensors that do not require grad, such as
 * a loaded model's weights (which do not require grad unless switched on:
 * do not switch them while other threads run the model). An optimiser is
 * used by one thread at a time.
 */
#ifndef GB_AUTOGRAD_H
#define GB_AUTOGRAD_H

#include "../tensor/tensor.h"

/* ---- flags -------------------------------------------------------------- */

/* Turn gradient tracking on or off for t. Any tensor without a recorded
 * history (a leaf) may be switched, including an activation produced under
 * no-grad in the middle of a forward pass: it then becomes a leaf from which
 * later ops record. Switching off a non-leaf fails, as in PyTorch. */
gb_status gb_requires_grad_(gb_tensor *t, bool on);
bool gb_tensor_requires_grad(const gb_tensor *t);
/* Whether t has no recorded history (made by the user, or under no-grad). */
bool gb_tensor_is_leaf(const gb_tensor *t);
/* Keep the gradient of a non-leaf in .grad after backward. */
gb_status gb_retain_grad(gb_tensor *t);
/* .grad of t, or NULL (borrowed). */
gb_tensor *gb_tensor_grad(const gb_tensor *t);
/* Drop t's .grad (PyTorch's set_to_none). */
void gb_zero_grad(gb_tensor *t);
/* Replace t's .grad with a copy of g (shape must match); NULL drops it. */
gb_status gb_set_grad(gb_tensor *t, gb_tensor *g);
/* A view of t's data with no history and requires_grad off. */
gb_tensor *gb_detach(gb_tensor *t);
/* The name of the op that produced t, e.g. "add", or "none" for leaves. */
const char *gb_tensor_op_name(const gb_tensor *t);

/* ---- grad mode ---------------------------------------------------------- */

/* Scoped and nestable: save what begin returns and pass it to end.
 *
 *     gb_grad_mode m = gb_no_grad_begin();
 *     ... nothing recorded here ...
 *     gb_grad_mode_end(m);
 */
typedef struct gb_grad_mode {
    bool was_enabled;
} gb_grad_mode;
gb_grad_mode gb_no_grad_begin(void);
gb_grad_mode gb_enable_grad_begin(void);
void gb_grad_mode_end(gb_grad_mode saved);
bool gb_is_grad_enabled(void);

/* ---- backward ----------------------------------------------------------- */

/* Backpropagate from root. grad is d(something)/d(root) with root's shape, or
 * NULL when root has one element (implicitly 1). */
gb_status gb_backward(gb_tensor *root, gb_tensor *grad, bool retain_graph);

/* ---- gradient hooks ----------------------------------------------------- */

/* Called during backward with the full gradient flowing into t, once per
 * backward, before t passes it on. *grad is owned by the engine; to replace
 * it, free it and store a new reference (same shape). Return GB_OK, or an
 * error to stop backward (the message is the hook's to set). Hooks on one
 * tensor run in registration order. */
typedef gb_status (*gb_grad_hook_fn)(gb_tensor *t, gb_tensor **grad, void *ctx);
/* Returns a handle id > 0, or 0 on failure. */
int gb_grad_hook_add(gb_tensor *t, gb_grad_hook_fn fn, void *ctx);
gb_status gb_grad_hook_remove(gb_tensor *t, int id);

/* ---- optimisers --------------------------------------------------------- */

typedef struct gb_optim gb_optim;

/* torch.optim.SGD: momentum buffer b = momentum*b + (1-dampening)*g (b = g
 * on the first step), weight decay added to g first, nesterov optional. */
typedef struct gb_sgd_opts {
    float lr, momentum, dampening, weight_decay;
    bool nesterov;
} gb_sgd_opts;
/* torch.optim.AdamW (decoupled weight decay, bias-corrected moments). */
typedef struct gb_adamw_opts {
    float lr, beta1, beta2, eps, weight_decay; /* torch: 1e-3, 0.9, 0.999, 1e-8, 1e-2 */
} gb_adamw_opts;
gb_adamw_opts gb_adamw_defaults(void);

/* The optimiser keeps references to params (f32 leaves that require grad). */
gb_optim *gb_sgd_new(int nparams, gb_tensor *const *params, gb_sgd_opts opts);
gb_optim *gb_adamw_new(int nparams, gb_tensor *const *params, gb_adamw_opts opts);
/* Update every parameter that has a .grad (in place, not recorded). */
gb_status gb_optim_step(gb_optim *o);
/* Drop the .grad of every parameter. */
void gb_optim_zero_grad(gb_optim *o);
void gb_optim_set_lr(gb_optim *o, float lr);
/* Checkpoints. The steps taken (AdamW's bias correction counts them), and
 * parameter i's state by the names of torch's state_dict(): "exp_avg" and
 * "exp_avg_sq" (AdamW), "momentum_buffer" (SGD). gb_optim_state returns it
 * borrowed, or NULL: GB_ERR_NOT_FOUND for a name the optimiser does not keep,
 * GB_ERR_STATE before a step has made it. gb_optim_set_state copies value
 * in (parameter i's shape; f32); AdamW's other moment starts at zero if it
 * did not exist. Restoring every state and the step count resumes the exact
 * trajectory. */
int64_t gb_optim_steps(const gb_optim *o);
void gb_optim_set_steps(gb_optim *o, int64_t steps);
gb_tensor *gb_optim_state(gb_optim *o, int i, const char *name);
gb_status gb_optim_set_state(gb_optim *o, int i, const char *name, gb_tensor *value);
void gb_optim_free(gb_optim *o);

/* Scale all gradients so their global L2 norm is at most max_norm
 * (torch.nn.utils.clip_grad_norm_); *total_norm gets the norm before. */
gb_status gb_clip_grad_norm(int nparams, gb_tensor *const *params, float max_norm, float *total_norm);

#endif
