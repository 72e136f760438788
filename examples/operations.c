/* nnsight walkthrough, "Functions, Methods, and Operations": compute on
 * deferred values inside the trace.
 *
 * In nnsight, torch functions and operators applied to proxies become nodes
 * of the intervention graph. In glassbox each has a gb_val_* function that
 * returns a new deferred value; it runs during the model's forward pass as
 * soon as its inputs exist. Intermediate values need no gb_save: only what
 * is read after the run does.
 *
 * Run: build/examples/operations (see examples/walkthrough.h for the options). */
#include "walkthrough.h"

/* l1_output = tiny_model.layer1.output
 * l1_amax = torch.argmax(l1_output, dim=1).save()
 * print(l1_amax[0]) */
static bool cell_argmax(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l1_output = gb_output(tr, "layer1");                 /* used inside only: not saved */
    gb_val *l1_amax = gb_save(gb_val_argmax(l1_output, 1, false)); /* read after the run: saved */
    bool ok = gb_trace_run(tr) == GB_OK;
    gb_tensor *first = ok ? gb_index(gb_value(l1_amax), "[0]") : NULL;
    ok = ok && wt_show(wt, "l1_amax", "", first);
    gb_tensor_free(first);
    gb_trace_free(tr);
    return ok;
}

/* value = (tiny_model.layer1.output.sum() + tiny_model.layer2.output.sum()).save()
 * The sum of layer1 waits until layer2 has run too; then they are added. */
static bool cell_sum(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *value = gb_save(gb_val_add(gb_val_sum_all(gb_output(tr, "layer1")),
                                       gb_val_sum_all(gb_output(tr, "layer2"))));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "value", "", gb_value(value));
    gb_trace_free(tr);
    return ok;
}

/* More of the same, beyond the walkthrough: the other operations a handle
 * supports, all computed during the run.
 *
 *   probs    = tiny_model.layer2.output.softmax(dim=-1)
 *   top      = tiny_model.layer1.output.max(dim=1).values
 *   centered = l1 - l1.mean(dim=1, keepdim=True)
 *   scaled   = l1[:, :3] * 2 / 4
 *   manual   = l1 @ layer2.weight.T + layer2.bias       (equals layer2's output) */
static bool cell_more(wt_ctx *wt) {
    gb_module *layer2 = gb_module_find(wt->net, "layer2");
    gb_tensor *w_t = gb_transpose(gb_module_param(layer2, "weight"), 0, 1);
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_val *probs = gb_save(gb_val_softmax(gb_output(tr, "layer2"), -1));
    gb_val *top = gb_save(gb_val_max(l1, 1, false));
    gb_val *centered = gb_save(gb_val_sub(l1, gb_val_mean(l1, 1, true)));
    gb_val *scaled = gb_save(gb_val_div(gb_val_mul(gb_val_index(l1, "[:, :3]"), gb_scalar(tr, 2)), gb_scalar(tr, 4)));
    gb_val *manual = gb_save(gb_val_add(gb_val_matmul(l1, gb_const(tr, w_t)),
                                        gb_const(tr, gb_module_param(layer2, "bias"))));
    gb_tensor_free(w_t); /* gb_const took its own reference */
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "probs", "probs:", gb_value(probs)) &&
              wt_show(wt, "top", "top:", gb_value(top)) && wt_show(wt, "centered", "centered:", gb_value(centered)) &&
              wt_show(wt, "scaled", "scaled:", gb_value(scaled)) && wt_show(wt, "manual", "manual:", gb_value(manual));
    gb_trace_free(tr);
    return ok;
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"argmax", cell_argmax},
        {"sum", cell_sum},
        {"more", cell_more},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
