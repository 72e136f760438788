/* nnsight walkthrough, "Setting": edit a module's output while the model
 * runs, and what an error inside the run looks like.
 *
 * `tiny_model.layer1.output[:, 0] = 0` becomes
 * gb_set_index(gb_output(tr, "layer1"), "[:, 0]", gb_scalar(tr, 0)): the
 * index is PyTorch's syntax as a string, and the edit is in place, so a
 * value saved before it must be a clone. Getters of the same point defined
 * after the edit see the edited value. Errors during the run name the line
 * of the intervention that failed.
 *
 * Run: build/examples/setting (see examples/walkthrough.h for the options). */
#include "walkthrough.h"

/* Edit layer1's output at index [:, column] and show it before and after. */
static bool edit_column(wt_ctx *wt, const char *index) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    /* l1_output_before = tiny_model.layer1.output.clone().save()
     * (.clone(): the edit below is in place) */
    gb_val *l1_output_before = gb_save(gb_val_clone(gb_output(tr, "layer1")));
    /* tiny_model.layer1.output[:, column] = 0 */
    gb_set_index(gb_output(tr, "layer1"), index, gb_scalar(tr, 0)); /* walkthrough:set */
    /* l1_output_after = tiny_model.layer1.output.save() */
    gb_val *l1_output_after = gb_save(gb_output(tr, "layer1"));
    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "before", "Before:", gb_value(l1_output_before)) &&
              wt_show(wt, "after", "After:", gb_value(l1_output_after));
    gb_trace_free(tr);
    return ok;
}

/* tiny_model.layer1.output[:, 0] = 0: the first column. */
static bool cell_first(wt_ctx *wt) { return edit_column(wt, "[:, 0]"); }

/* tiny_model.layer1.output[:, hidden_dims] = 0: one past the last column.
 * The run stops with "index 10 is out of bounds for dimension 1 with size
 * 10", naming the line of the gb_set_index above (walkthrough:set). */
static bool cell_out_of_bounds(wt_ctx *wt) {
    char index[32];
    snprintf(index, sizeof index, "[:, %d]", WT_HIDDEN_DIMS);
    return edit_column(wt, index);
}

/* tiny_model.layer1.output[:, hidden_dims - 1] = 0: the last column. */
static bool cell_last(wt_ctx *wt) {
    char index[32];
    snprintf(index, sizeof index, "[:, %d]", WT_HIDDEN_DIMS - 1);
    return edit_column(wt, index);
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"first", cell_first},
        {"out_of_bounds", cell_out_of_bounds},
        {"last", cell_last},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
