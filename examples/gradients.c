/* nnsight walkthrough, "Gradients": read and edit gradients inside the
 * trace.
 *
 * gb_grad(v) is the gradient of v's tensor, available while a backward
 * started in the same trace (gb_val_backward) passes through it. Like any
 * value it can be saved, computed on, and edited: gb_set replaces it,
 * gb_set_index edits it in place, and the backward carries the edited
 * gradient on. Model parameters do not require grad (nnsight's models are
 * frozen too), so the activation to differentiate is marked first with
 * gb_requires_grad, as `layer1.output.requires_grad = True` does.
 *
 * Run: build/examples/gradients (see examples/walkthrough.h for the options). */
#include "walkthrough.h"

/* with tiny_model.trace(input):
 *     tiny_model.layer1.output.requires_grad = True
 *     layer1_output_grad = tiny_model.layer1.output.grad.save()
 *     layer2_output_grad = tiny_model.layer2.output.grad.save()
 *     loss = tiny_model.output.sum()
 *     loss.backward() */
static bool cell_read(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_requires_grad(gb_output(tr, "layer1"));
    gb_val *layer1_output_grad = gb_save(gb_grad(gb_output(tr, "layer1")));
    gb_val *layer2_output_grad = gb_save(gb_grad(gb_output(tr, "layer2")));
    gb_val *loss = gb_val_sum_all(gb_output(tr, ""));
    gb_val_backward(loss);
    bool ok = gb_trace_run(tr) == GB_OK &&
              wt_show(wt, "layer1_grad", "Layer 1 output gradient:", gb_value(layer1_output_grad)) &&
              wt_show(wt, "layer2_grad", "Layer 2 output gradient:", gb_value(layer2_output_grad));
    gb_trace_free(tr);
    return ok;
}

/* Zero layer1's gradient, double layer2's:
 *     tiny_model.layer1.output.requires_grad = True
 *     tiny_model.layer1.output.grad[:] = 0
 *     tiny_model.layer2.output.grad = tiny_model.layer2.output.grad * 2
 *     layer1_output_grad = tiny_model.layer1.output.grad.save()
 *     layer2_output_grad = tiny_model.layer2.output.grad.save()
 *     loss = tiny_model.output.sum()
 *     loss.backward()
 * The saved gradients are read after the edits, so they show them. */
static bool cell_edit(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *layer1_output = gb_output(tr, "layer1"), *layer2_output = gb_output(tr, "layer2");
    gb_requires_grad(layer1_output);
    gb_set_index(gb_grad(layer1_output), "[:]", gb_scalar(tr, 0));
    gb_val *layer2_grad = gb_grad(layer2_output);
    gb_set(layer2_grad, gb_val_mul(layer2_grad, gb_scalar(tr, 2)));
    gb_val *layer1_output_grad = gb_save(gb_grad(layer1_output));
    gb_val *layer2_output_grad = gb_save(gb_grad(layer2_output));
    gb_val_backward(gb_val_sum_all(gb_output(tr, "")));
    bool ok = gb_trace_run(tr) == GB_OK &&
              wt_show(wt, "layer1_grad", "Layer 1 output gradient:", gb_value(layer1_output_grad)) &&
              wt_show(wt, "layer2_grad", "Layer 2 output gradient:", gb_value(layer2_output_grad));
    gb_trace_free(tr);
    return ok;
}

/* Beyond the walkthrough: an edited gradient flows on. Doubling layer2's
 * output gradient doubles layer1's too (compare with the first cell). */
static bool cell_propagate(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *layer1_output = gb_output(tr, "layer1"), *layer2_output = gb_output(tr, "layer2");
    gb_requires_grad(layer1_output);
    gb_val *layer2_grad = gb_grad(layer2_output);
    gb_set(layer2_grad, gb_val_mul(layer2_grad, gb_scalar(tr, 2)));
    gb_val *layer1_output_grad = gb_save(gb_grad(layer1_output));
    gb_val_backward(gb_val_sum_all(gb_output(tr, "")));
    bool ok = gb_trace_run(tr) == GB_OK &&
              wt_show(wt, "layer1_grad", "Layer 1 output gradient:", gb_value(layer1_output_grad));
    gb_trace_free(tr);
    return ok;
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"read", cell_read},
        {"edit", cell_edit},
        {"propagate", cell_propagate},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
