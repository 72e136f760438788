/* nnsight walkthrough, "Custom Functions": put a function of your own into
 * the intervention graph.
 *
 * nnsight.apply(fn, *args) adds a call of fn to the graph. In glassbox,
 * gb_apply(tr, fn, ctx, nargs, args) does the same: when every argument
 * exists, fn receives their tensors (borrowed) and returns a new tensor, or
 * NULL with an error set, which then fails the run at the gb_apply line.
 *
 * Run: build/examples/apply (see examples/walkthrough.h for the options). */
#include "walkthrough.h"

/* def tensor_sum(tensor):
 *     flat = tensor.flatten()
 *     total = 0
 *     for element in flat:
 *         total += element.item()      # Python floats: double
 *     return torch.tensor(total)       # back to float32 */
static gb_tensor *tensor_sum(gb_tensor *const *args, int nargs, void *ctx) {
    (void)nargs, (void)ctx;
    gb_tensor *flat = gb_contiguous(args[0]);
    const float *x = flat ? gb_tensor_f32(flat) : NULL;
    if (!x) {
        gb_tensor_free(flat);
        return NULL;
    }
    double total = 0;
    for (int64_t i = 0; i < gb_tensor_numel(flat); i++) total += x[i];
    gb_tensor_free(flat);
    return gb_scalar_tensor((float)total);
}

/* custom_sum = nnsight.apply(tensor_sum, tiny_model.layer1.output).save()
 * sum = tiny_model.layer1.output.sum().save()
 * print(custom_sum, sum) */
static bool cell_custom_sum(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l1_output = gb_output(tr, "layer1");
    gb_val *custom_sum = gb_save(gb_apply(tr, tensor_sum, NULL, 1, &l1_output));
    gb_val *sum = gb_save(gb_val_sum_all(l1_output));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "custom_sum", "custom_sum:", gb_value(custom_sum)) &&
              wt_show(wt, "sum", "sum:", gb_value(sum));
    gb_trace_free(tr);
    return ok;
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"custom_sum", cell_custom_sum},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
