/* nnsight walkthrough, "Early Stopping": end the forward pass after a
 * module, and what happens to values of modules that never ran.
 *
 * gb_stop(v) ends the run right after v's module event; gb_trace_run still
 * returns GB_OK, since stopping is what was asked. Interventions run when
 * their module runs, not in the order they were written, so a value of a
 * later module is never produced, even if it was defined first: reading it
 * fails.
 *
 * Run: build/examples/early_stop (see examples/walkthrough.h for the options). */
#include "walkthrough.h"

/* with tiny_model.trace(input):
 *     l1_out = tiny_model.layer1.output.save()
 *     tiny_model.layer1.output.stop()
 * print("L1 - Output: ", l1_out)
 * The log on layer2 shows it never runs: nothing is printed for it. */
static bool cell_stop(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l1_out = gb_save(gb_output(tr, "layer1"));
    gb_trace_log("layer2 ran:", gb_output(tr, "layer2"));
    gb_stop(gb_output(tr, "layer1"));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "l1_out", "L1 - Output:", gb_value(l1_out));
    gb_trace_free(tr);
    return ok;
}

/* with tiny_model.trace(input):
 *     l2_out = tiny_model.layer2.output.save()
 *     tiny_model.layer1.output.stop()
 * print("L2 - Output: ", l2_out)     -> an error: layer2 never ran */
static bool cell_later(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *l2_out = gb_save(gb_output(tr, "layer2"));
    gb_stop(gb_output(tr, "layer1"));
    bool ok = gb_trace_run(tr) == GB_OK &&
              wt_show(wt, "l2_out", "L2 - Output:", GB_AT(gb_value(l2_out))); /* walkthrough:never */
    gb_trace_free(tr);
    return ok;
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"stop", cell_stop},
        {"later", cell_later},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
