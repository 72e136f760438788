/* Persistent edits (gb_trace_use_edits, nnsight's model.edit()). Numbers
 * on the walkthrough's tiny network come from PyTorch (tests/oracle/trace.py:
 * the edit and the trace's own intervention as forward hooks in that order);
 * on the bundled model, from a derivation written beside it and PyTorch's
 * next tokens of its prompts (tests/oracle/bundled.py). */
#include <stdlib.h>

#include "gbtest.h"

/* One traced forward of the tiny network: layer2's output, with the
 * editor attached (or not) and the trace's own in-place edit (or not). */
static void run_tiny(gb_module *net, gb_tensor *x, gb_trace *editor, bool own_edit, gbt_oracle *o, const char *key) {
    gb_trace *tr = gb_trace_new(net, x);
    gbt_ok_status(gb_trace_use_edits(tr, editor));
    if (own_edit) gb_set_index(gb_output(tr, "layer1"), "[:, 0:3]", gb_scalar(tr, -1));
    gb_val *out = gb_save(gb_output(tr, "layer2"));
    gbt_ok_status(gb_trace_run(tr));
    gbt_assert_saved_close(out, o, key);
    gb_trace_free(tr);
}

START_TEST(test_edits_apply_to_every_trace_that_uses_them) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    gb_trace *editor = gb_trace_new(net, NULL); /* layer1.output = layer1.output * 2, for good */
    gb_set(gb_output(editor, "layer1"), gb_val_mul(gb_output(editor, "layer1"), gb_scalar(editor, 2)));

    run_tiny(net, x, editor, false, o, "set.out");
    run_tiny(net, x, editor, false, o, "set.out"); /* again: the edit persists */
    run_tiny(net, x, editor, true, o, "edit_then_set.out");
    run_tiny(net, x, NULL, false, o, "out");       /* cleared */

    gb_trace_free(editor);
    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* The walkthrough's example: the last layer's hidden state at the last
 * position of prompt A, written into every later run, makes any prompt
 * predict A's next token (the final norm and lm_head act per position, so
 * equal hidden states give equal logits there). A: the Eiffel Tower's
 * prompt (next token " Paris"), B: the Vatican's (" Rome"). */
START_TEST(test_edit_transplants_a_prediction) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_edit_transplants_a_prediction");
    if (!o) return;
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    gb_module *net = gb_model_module(m);
    gb_tensor *a = gbt_get(o, "ids.eiffel_located"), *b = gbt_get(o, "ids.vatican");
    gb_tensor *greedy_a = gbt_get(o, "greedy.eiffel_located"), *greedy_b = gbt_get(o, "greedy.vatican");
    int64_t next_a = gbt_i64(greedy_a, 0), next_b = gbt_i64(greedy_b, 0);
    ck_assert_int_ne(next_a, next_b);
    gb_trace *tr = gb_trace_new(net, a);
    gb_val *hs =
        gb_save(gb_val_clone(gb_val_index(gb_val_index(gb_output(tr, "transformer.h.-1"), "[0]"), "[:, -1, :]")));
    gbt_ok_status(gb_trace_run(tr));

    gb_trace *editor = gb_trace_new(net, NULL);
    gb_set_index(gb_val_index(gb_output(editor, "transformer.h.-1"), "[0]"), "[:, -1, :]", gb_const(editor, gb_value(hs)));
    gb_trace *tb = gb_trace_new(net, b);
    gbt_ok_status(gb_trace_use_edits(tb, editor));
    gb_val *next = gb_save(gb_val_argmax(gb_val_index(gb_output(tb, "lm_head"), "[0, -1]"), -1, false));
    gbt_ok_status(gb_trace_run(tb));
    double id;
    gbt_ok_status(gb_item(gb_value(next), &id));
    ck_assert_int_eq((int64_t)id, next_a);
    /* Cleared, prompt B predicts its own token again: the edit did the work. */
    gbt_ok_status(gb_trace_use_edits(tb, NULL));
    gbt_ok_status(gb_trace_run(tb));
    gbt_ok_status(gb_item(gb_value(next), &id));
    ck_assert_int_eq((int64_t)id, next_b);

    gb_trace_free(tb), gb_trace_free(editor), gb_trace_free(tr);
    gb_tensor_free(greedy_b), gb_tensor_free(greedy_a), gb_tensor_free(b), gb_tensor_free(a);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_edit_errors) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o), *other = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    gb_trace *tr = gb_trace_new(net, x), *with_input = gb_trace_new(net, x), *elsewhere = gb_trace_new(other, NULL);
    gbt_fails_with(gb_trace_use_edits(tr, with_input) != GB_OK, GB_ERR_ARG, "made without an input");
    gbt_fails_with(gb_trace_use_edits(tr, elsewhere) != GB_OK, GB_ERR_ARG, "a trace of the same model");
    /* An edit that fails at run time fails the run, and says it was an edit. */
    gb_trace *editor = gb_trace_new(net, NULL);
    gb_set_index(gb_output(editor, "layer1"), "[:, 10]", gb_scalar(editor, 0));
    gbt_ok_status(gb_trace_use_edits(tr, editor));
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_INDEX, "edits: ");
    ck_assert(strstr(gb_last_error(), "index 10 is out of bounds for dimension 1 with size 10") != NULL);
    gb_trace_free(editor), gb_trace_free(elsewhere), gb_trace_free(with_input), gb_trace_free(tr);
    gb_tensor_free(x);
    gb_module_free(other), gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_edits(void) {
    Suite *s = suite_create("edits");
    TCase *tc = tcase_create("edits");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_edits_apply_to_every_trace_that_uses_them);
    tcase_add_test(tc, test_edit_transplants_a_prediction);
    tcase_add_test(tc, test_edit_errors);
    suite_add_tcase(s, tc);
    return s;
}
