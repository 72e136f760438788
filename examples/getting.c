/* nnsight walkthrough, "Tracing Context" and "Getting": read the input and
 * output of modules during one forward pass of a tiny network.
 *
 * In nnsight, `with tiny_model.trace(input):` records interventions and runs
 * the model when the block ends. In glassbox the trace is an object:
 * gb_trace_new records, gb_trace_run runs, gb_trace_free ends it. A getter
 * (gb_output, gb_input) is a deferred value that exists once its module ran;
 * only values passed to gb_save are kept after the run.
 *
 * Run: build/examples/getting (see examples/walkthrough.h for the options). */
#include "walkthrough.h"

/* print(tiny_model): the module tree, exactly as PyTorch prints it. */
static bool cell_print(wt_ctx *wt) {
    char *text = gb_module_repr(wt->net);
    if (!text) return false;
    printf("%s\n", text);
    free(text);
    return true;
}

/* with tiny_model.trace(input): pass
 * An empty trace runs the model once and keeps nothing. */
static bool cell_trace(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    bool ok = gb_trace_run(tr) == GB_OK;
    gb_trace_free(tr);
    return ok;
}

/* output = tiny_model.output   (not saved)
 * print(output)                -> an error: values that were not saved are
 *                                 freed during the run, to save memory. */
static bool cell_unsaved(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *output = gb_output(tr, ""); /* "" is the model itself */
    bool ok = gb_trace_run(tr) == GB_OK &&
              wt_show(wt, "output", "", GB_AT(gb_value(output))); /* walkthrough:unsaved */
    gb_trace_free(tr);
    return ok;
}

/* output = tiny_model.output.save() */
static bool cell_output(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *output = gb_save(gb_output(tr, ""));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "output", "", gb_value(output));
    gb_trace_free(tr);
    return ok;
}

/* l1_output = tiny_model.layer1.output.save()
 * Modules are named by their path in the tree, as print(tiny_model) shows. */
static bool cell_layer1_output(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l1_output = gb_save(gb_output(tr, "layer1"));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "l1_output", "", gb_value(l1_output));
    gb_trace_free(tr);
    return ok;
}

/* l2_input = tiny_model.layer2.input.save()
 * layer2's input is layer1's output, so both print the same. */
static bool cell_layer2_input(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l2_input = gb_save(gb_input(tr, "layer2"));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "l2_input", "", gb_value(l2_input));
    gb_trace_free(tr);
    return ok;
}

/* tracer.log("Layer 1 - out: ", tiny_model.layer1.output)
 * Printed during the run, when the value exists; nothing is kept. */
static bool cell_log(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_trace_log("Layer 1 - out:", gb_output(tr, "layer1"));
    bool ok = gb_trace_run(tr) == GB_OK;
    gb_trace_free(tr);
    return ok;
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"print", cell_print},
        {"trace", cell_trace},
        {"unsaved", cell_unsaved},
        {"output", cell_output},
        {"layer1_output", cell_layer1_output},
        {"layer2_input", cell_layer2_input},
        {"log", cell_log},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
