/* glassbox hooks: callbacks on module events, registered and removed
 * through handles, on one module or a whole subtree, including gradient
 * events in backward.
 *
 * Usage (compiled as a test, tests/test_header_examples.c), with a hook
 * that edits an output in place:
 *
 *   static gb_status zero_first(gb_event *ev, void *ctx) {
 *       (void)ctx;
 *       return gb_index_fill_(ev->values->v[0], "[:, 0]", 0.0f);
 *   }
 *
 *     gb_hooks *hooks = gb_hooks_new(net);
 *     int id = gb_hook_add(hooks, gb_module_find(net, "layer1"), GB_EVENT_OUTPUT, 0, zero_first, NULL);
 *     gb_run *run = gb_run_new();
 *     gb_hooks_attach(hooks, run);
 *     gb_tensor *y;
 *     gb_module_run(net, run, x, &y);                  // layer1's output has column 0 zeroed
 *     gb_hook_remove(hooks, id);
 *     gb_run_free(run); gb_hooks_free(hooks); gb_tensor_free(y);
 *
 * Events: GB_EVENT_INPUT and GB_EVENT_OUTPUT come from the module call
 * itself (nn/nn.h); the registry adds gradient events of its own, made from
 * autograd's tensor hooks: GB_EVENT_GRAD_OUTPUT fires in backward with the
 * gradient of one of the module's outputs and GB_EVENT_GRAD_INPUT with the
 * gradient of one of its inputs that flows through this module (PyTorch's
 * full backward hooks), in ev->values->v[0]; gb_hook_grad_index says which
 * tensor of the tuple it belongs to. Gradient events need the value to
 * require grad when the module runs. In every event a hook may replace the
 * values (free the old reference, store a new one of the same shape);
 * returning GB_STOPPED ends the forward pass after the current event.
 *
 * Several hooks on one event run in registration order. The registry must
 * outlive every run and backward it is attached to.
 *
 * Threads. A registry (and its interest mask) belongs to the runs it is
 * attached to, on one thread at a time; several registries on one shared
 * tree, each with its own runs, may run in as many threads.
 */
#ifndef GB_HOOKS_H
#define GB_HOOKS_H

#include "../nn/nn.h"

typedef struct gb_hooks gb_hooks;

typedef gb_status (*gb_hook_fn)(gb_event *ev, void *ctx);

/* The hook also fires for every module below m. */
#define GB_HOOK_SUBTREE 1u

/* Gradient events: the registry's own event kinds, numbered after nn's
 * (nn/nn.h lets observers do that), carried in gb_event.kind. */
#define GB_EVENT_GRAD_OUTPUT ((gb_event_kind)(GB_EVENT_COUNT + 0))
#define GB_EVENT_GRAD_INPUT ((gb_event_kind)(GB_EVENT_COUNT + 1))

/* In a gradient event, which tensor of the module's output tuple
 * (GB_EVENT_GRAD_OUTPUT) or input tuple (GB_EVENT_GRAD_INPUT) the gradient
 * is of; -1 for any other event. */
int gb_hook_grad_index(const gb_event *ev);

gb_hooks *gb_hooks_new(gb_module *root);
void gb_hooks_free(gb_hooks *h);
/* Register fn for events of one kind on module m (INPUT, OUTPUT,
 * GRAD_OUTPUT or GRAD_INPUT). Returns a handle id > 0, or 0 on failure. */
int gb_hook_add(gb_hooks *h, gb_module *m, gb_event_kind kind, unsigned flags, gb_hook_fn fn, void *ctx);
/* Register fn for a named point inside a module's forward, by full path,
 * e.g. "transformer.h.0.attn.attn_weights" (see docs/modules.md). */
int gb_hook_add_point(gb_hooks *h, const char *path, gb_hook_fn fn, void *ctx);
gb_status gb_hook_remove(gb_hooks *h, int id);
/* Make this registry the observer of run. */
void gb_hooks_attach(gb_hooks *h, gb_run *run);

#endif
