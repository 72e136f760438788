/* Invokes: several inputs batched in one forward pass, each with its own
 * interventions (nnsight's tracer.invoke). Numbers on the walkthrough's tiny
 * network come from PyTorch (tests/oracle/trace.py: each experiment run on
 * its own with forward hooks), so an invoke must give exactly what its
 * input gives alone; on the bundled model (models/gpt2-facts), PyTorch's
 * next tokens and greedy continuations (tests/oracle/bundled.py). */
#include <stdlib.h>

#include "gbtest.h"

START_TEST(test_invokes_edit_only_their_rows) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    gb_trace *tr = gb_trace_new(net, NULL);

    gbt_ok_status(gb_invoke(tr, x)); /* layer1.output = layer1.output * 2 */
    gb_set(gb_output(tr, "layer1"), gb_val_mul(gb_output(tr, "layer1"), gb_scalar(tr, 2)));
    gb_val *doubled = gb_save(gb_output(tr, "layer2"));
    gb_invoke_end(tr);

    gbt_ok_status(gb_invoke(tr, x)); /* layer1.output[:, 0:3] = -1 */
    gb_set_index(gb_output(tr, "layer1"), "[:, 0:3]", gb_scalar(tr, -1));
    gb_val *edited_l1 = gb_save(gb_output(tr, "layer1"));
    gb_val *edited = gb_save(gb_output(tr, "layer2"));
    gb_invoke_end(tr);

    gbt_ok_status(gb_invoke(tr, x)); /* untouched */
    gb_val *plain_l1 = gb_save(gb_output(tr, "layer1"));
    gb_val *plain = gb_save(gb_output(tr, "layer2"));
    gb_invoke_end(tr);

    gbt_ok_status(gb_trace_run(tr));
    gbt_assert_saved_close(doubled, o, "set.out");
    gbt_assert_saved_close(edited_l1, o, "set_index.l1");
    gbt_assert_saved_close(edited, o, "set_index.out");
    gbt_assert_saved_close(plain_l1, o, "l1");
    gbt_assert_saved_close(plain, o, "out");
    ck_assert_int_eq(gb_tensor_dim(gb_value(plain), 0), 1); /* its own row only */
    gb_trace_free(tr);
    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* The walkthrough's transfer: a value of one invoke replaces a value of
 * another, which then computes what the first input computes. */
START_TEST(test_values_cross_invokes) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *zeros = gb_zeros(2, (int64_t[]){1, 5}, GB_DTYPE_F32);
    gb_trace *tr = gb_trace_new(net, NULL);
    gbt_ok_status(gb_invoke(tr, x));
    gb_val *h = gb_output(tr, "layer1");
    gb_invoke_end(tr);
    gbt_ok_status(gb_invoke(tr, zeros));
    gb_set(gb_output(tr, "layer1"), h);
    gb_val *out = gb_save(gb_output(tr, "layer2"));
    gb_invoke_end(tr);
    gbt_ok_status(gb_trace_run(tr));
    gbt_assert_saved_close(out, o, "out");
    gb_trace_free(tr);
    gb_tensor_free(zeros), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* Two prompts of different lengths in one pass: the shorter is left-padded
 * under the mask and, as in Hugging Face's GPT-2 without position_ids (and
 * nnsight), keeps positions 0..T-1; PyTorch computes the same batch. In
 * generation, positions come from the mask, so each row continues as its
 * prompt does alone. */
START_TEST(test_invokes_of_different_lengths) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_invokes_of_different_lengths");
    if (!o) return;
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    gb_tensor *a = gbt_get(o, "ids.eiffel"), *b = gbt_get(o, "ids.vatican"), *next = gbt_get(o, "padded.next");
    gb_tensor *greedy_a = gbt_get(o, "greedy.eiffel"), *greedy_b = gbt_get(o, "greedy.vatican");
    int64_t T = gb_tensor_dim(a, 1), pad = T - gb_tensor_dim(b, 1);
    ck_assert_int_gt(pad, 0);
    gb_trace *tr = gb_trace_new(gb_model_module(m), NULL);
    gbt_ok_status(gb_invoke(tr, a));
    gb_val *last_a = gb_save(gb_val_index(gb_output(tr, "lm_head"), "[0, -1]"));
    gb_val *next_a = gb_save(gb_val_argmax(last_a, -1, false));
    gb_invoke_end(tr);
    gbt_ok_status(gb_invoke(tr, b)); /* left-padded to T under the mask */
    gb_val *last_b = gb_save(gb_val_index(gb_output(tr, "lm_head"), "[0, -1]"));
    gb_val *next_b = gb_save(gb_val_argmax(last_b, -1, false));
    gb_invoke_end(tr);
    gbt_ok_status(gb_trace_run(tr));
    gb_tensor *logits = gbt_get(o, "padded.logits"), *want_a = gb_select(logits, 0, 0), *want_b = gb_select(logits, 0, 1);
    gbt_assert_close(gb_value(last_a), want_a, 1e-5, 1e-5, "first invoke's last logits");
    gbt_assert_close(gb_value(last_b), want_b, 1e-5, 1e-5, "padded invoke's last logits"); /* shifted positions count */
    gb_tensor_free(want_b), gb_tensor_free(want_a), gb_tensor_free(logits);
    double got;
    gbt_ok_status(gb_item(gb_value(next_a), &got));
    ck_assert_int_eq((int64_t)got, gbt_i64(next, 0));
    gbt_ok_status(gb_item(gb_value(next_b), &got));
    ck_assert_int_eq((int64_t)got, gbt_i64(next, 1));
    gb_trace_free(tr);

    /* Generation continues each invoke's row on its own. */
    tr = gb_trace_new(gb_model_module(m), NULL);
    gbt_ok_status(gb_invoke(tr, b));
    gb_invoke_end(tr);
    gbt_ok_status(gb_invoke(tr, a));
    gb_invoke_end(tr);
    gbt_ok_status(gb_trace_generate(tr, 3));
    gb_tensor *ids = gb_trace_generated(tr);
    ck_assert(gb_tensor_dim(ids, 0) == 2 && gb_tensor_dim(ids, 1) == T + 3);
    const int64_t *p = gb_tensor_data(ids); /* [2, T + 3]: row 0 is b left-padded */
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(p[T + k], gbt_i64(greedy_b, k));
        ck_assert_int_eq(p[(T + 3) + T + k], gbt_i64(greedy_a, k));
    }
    gb_trace_free(tr);
    gb_tensor_free(greedy_b), gb_tensor_free(greedy_a), gb_tensor_free(next), gb_tensor_free(b), gb_tensor_free(a);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* Gradients of each invoke's values: requires_grad makes an invoke's rows
 * a leaf of their own. With layer2 frozen, the gradient of
 * sum(layer2(h)) with respect to h is the column sums of layer2.weight
 * (d/dh_j sum_i (W h + b)_i = sum_i W_ij), times 3 for the second invoke's
 * share of the loss. */
START_TEST(test_invoke_gradients) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *w2 = gbt_get(o, "layer2.weight");
    gb_tensor *colsum = gb_sum(w2, 0, true), *thrice = gb_mul_scalar(colsum, 3);
    for (int form = 0; form < 2; form++) {
        gb_trace *tr = gb_trace_new(net, NULL);
        gb_val *ga, *gb, *ya;
        gbt_ok_status(gb_invoke(tr, x));
        if (form == 0) {
            gb_requires_grad(gb_output(tr, "layer1"));
            ga = gb_save(gb_grad(gb_output(tr, "layer1")));
            ya = gb_val_sum_all(gb_output(tr, "layer2"));
        } else {
            gbt_ok_status(gb_trace_statement(tr, "layer1.output.requires_grad = True", "s", 1, NULL));
            gbt_ok_status(gb_trace_statement(tr, "ga = layer1.output.grad.save()", "s", 2, &ga));
            gbt_ok_status(gb_trace_statement(tr, "ya = layer2.output.sum()", "s", 3, &ya));
        }
        gb_invoke_end(tr);
        gbt_ok_status(gb_invoke(tr, x));
        gb_requires_grad(gb_output(tr, "layer1"));
        gb = gb_save(gb_grad(gb_output(tr, "layer1")));
        gb_val_backward(gb_val_add(ya, gb_val_mul(gb_val_sum_all(gb_output(tr, "layer2")), gb_scalar(tr, 3))));
        gb_invoke_end(tr);
        gbt_ok_status(gb_trace_run(tr));
        gbt_assert_close(gb_value(ga), colsum, 1e-5, 1e-6, "first invoke's gradient");
        gbt_assert_close(gb_value(gb), thrice, 1e-5, 1e-6, "second invoke's gradient");
        gb_trace_free(tr);
    }
    gb_tensor_free(colsum), gb_tensor_free(thrice), gb_tensor_free(w2), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_invoke_errors) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");

    gb_trace *tr = gb_trace_new(net, x);
    gbt_fails_with(gb_invoke(tr, x) != GB_OK, GB_ERR_ARG, "this trace was made with an input");
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_ARG, "test_invoke.c:");
    gb_trace_free(tr);

    tr = gb_trace_new(net, NULL);
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_ARG, "no input: give one to gb_trace_new, or add invokes");
    gbt_fails_with(gb_invoke(tr, NULL) != GB_OK, GB_ERR_SHAPE, "invoke: an input needs a batch dimension");
    gb_trace_free(tr);

    tr = gb_trace_new(net, NULL);
    gbt_ok_status(gb_invoke(tr, x));
    gb_val *g = gb_save(gb_grad(gb_output(tr, "layer1")));
    gb_val_backward(gb_val_sum_all(gb_output(tr, "layer2")));
    gb_invoke_end(tr);
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_AUTOGRAD, "does not require grad; call gb_requires_grad on it first");
    (void)g;
    gb_trace_free(tr);

    tr = gb_trace_new(net, NULL); /* requires_grad on a part of an invoke's value */
    gbt_ok_status(gb_invoke(tr, x));
    gb_requires_grad(gb_val_index(gb_output(tr, "layer1"), "[:, 0]"));
    gb_invoke_end(tr);
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_UNSUPPORTED, "only a module's input or output");
    gb_trace_free(tr);

    tr = gb_trace_new(net, NULL);
    gbt_ok_status(gb_invoke(tr, x));
    gb_invoke_end(tr);
    gb_trace_set_attention_mask(tr, x);
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_ARG, "invokes make the attention mask themselves");
    gb_trace_free(tr);

    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_invoke(void) {
    Suite *s = suite_create("invoke");
    TCase *tc = tcase_create("invoke");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_invokes_edit_only_their_rows);
    tcase_add_test(tc, test_values_cross_invokes);
    tcase_add_test(tc, test_invokes_of_different_lengths);
    tcase_add_test(tc, test_invoke_gradients);
    tcase_add_test(tc, test_invoke_errors);
    suite_add_tcase(s, tc);
    return s;
}
