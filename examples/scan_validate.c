/* nnsight walkthrough, "Scan and Validate": find shapes and check
 * interventions without running the model.
 *
 * gb_trace_scan runs the model on shape-only (meta) tensors: no arithmetic,
 * no weight reads, no large allocations, but every module event happens, so
 * afterwards gb_val_shape knows the shape of every value and every
 * intervention has been tried on those shapes. gb_trace_set_validate(tr,
 * true) makes gb_trace_run scan first and refuse to run when the scan finds
 * a problem (nnsight's trace(input, scan=True, validate=True)).
 *
 * Run: build/examples/scan_validate (see examples/walkthrough.h for the options). */
#include <math.h>

#include "walkthrough.h"

/* with tiny_model.trace(input, scan=True, validate=True):
 *     l1_output_before = tiny_model.layer1.output.clone().save()
 *     tiny_model.layer1.output[:, hidden_dims] = 0
 *     l1_output_after = tiny_model.layer1.output.save()
 * The same out-of-bounds error as in examples/setting.c, found before the
 * model runs: the log below never prints, although it comes before the
 * faulty edit (a real run would have printed it, then failed). */
static bool cell_validate(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_trace_set_validate(tr, true);
    gb_val *l1_output_before = gb_save(gb_val_clone(gb_output(tr, "layer1")));
    gb_trace_log("layer1 ran:", gb_output(tr, "layer1"));
    gb_set_index(gb_output(tr, "layer1"), "[:, 10]", gb_scalar(tr, 0)); /* walkthrough:validate */
    gb_val *l1_output_after = gb_save(gb_output(tr, "layer1"));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "before", "Before:", gb_value(l1_output_before)) &&
              wt_show(wt, "after", "After:", gb_value(l1_output_after));
    gb_trace_free(tr);
    return ok;
}

/* The last dim of layer1's output, by scanning. */
static bool scan_hidden_shape(wt_ctx *wt, int *ndim, int64_t *shape) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l1_output = gb_output(tr, "layer1");
    bool ok = gb_trace_scan(tr) == GB_OK && gb_val_shape(l1_output, ndim, shape) == GB_OK;
    gb_trace_free(tr);
    return ok;
}

/* with tiny_model.scan(input):
 *     dim = tiny_model.layer1.output.shape[-1]
 * print(dim) */
static bool cell_scan(wt_ctx *wt) {
    int ndim;
    int64_t shape[GB_MAX_DIMS];
    if (!scan_hidden_shape(wt, &ndim, shape)) return false;
    int64_t dim = shape[ndim - 1];
    printf("%lld\n", (long long)dim);
    gb_tensor *t = gb_from_data(shape, 1, (int64_t[]){ndim}, GB_DTYPE_I64);
    bool ok = wt_keep(wt, "shape", t);
    gb_tensor_free(t);
    return ok;
}

/* Replace layer1's output with a noised tensor of the scanned shape:
 *     noise = (0.001 ** 0.5) * torch.randn(shape)
 *     tiny_model.layer1.output = tiny_model.layer1.output + noise
 * gb_set replaces the whole output; layer2 then runs on the noised value. */
static bool cell_noise(wt_ctx *wt) {
    int ndim;
    int64_t shape[GB_MAX_DIMS];
    if (!scan_hidden_shape(wt, &ndim, shape)) return false;
    gb_rng rng = gb_rng_seed(2);
    gb_tensor *noise = wt_tensor(wt, "noise", gb_randn(&rng, ndim, shape, 0.0f, sqrtf(0.001f)));
    if (!noise) return false;

    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *before = gb_save(gb_val_clone(gb_output(tr, "layer1")));
    gb_val *l1_output = gb_output(tr, "layer1");
    gb_set(l1_output, gb_val_add(l1_output, gb_const(tr, noise)));
    gb_val *after = gb_save(gb_output(tr, "layer1")); /* defined after the set: sees the noised value */
    gb_val *output = gb_save(gb_output(tr, ""));
    gb_tensor_free(noise); /* gb_const took its own reference */
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "before", "Before:", gb_value(before)) &&
              wt_show(wt, "after", "After:", gb_value(after)) && wt_show(wt, "output", "Output:", gb_value(output));
    gb_trace_free(tr);
    return ok;
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"validate", cell_validate},
        {"scan", cell_scan},
        {"noise", cell_noise},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
