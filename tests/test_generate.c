/* Generation with interventions per step (gb_trace_generate), on the
 * bundled model (models/gpt2-facts). Expected ids: PyTorch's greedy decoding
 * of the same checkpoint with forward hooks (tests/oracle/bundled.py), and
 * derivations written beside each check (step k's logits choose new token
 * k; a logit of 1e9 wins the argmax). */
#include <stdlib.h>
#include <string.h>

#include "gbtest.h"

static void expect_ids(const gb_tensor *t, int64_t row, int64_t from, int64_t n, const int64_t *want) {
    ck_assert_int_eq(gb_tensor_dtype(t), GB_DTYPE_I64);
    const int64_t *got = gb_tensor_data(t);
    int64_t T = gb_tensor_dim(t, 1);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(got[row * T + from + i] == want[i], "row %lld position %lld: %lld, expected %lld",
                      (long long)row, (long long)(from + i), (long long)got[row * T + from + i], (long long)want[i]);
}

static gb_model *open_bundled(void) {
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    return m;
}

START_TEST(test_generate_matches_greedy_and_reads_each_step) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_generate_matches_greedy_and_reads_each_step");
    if (!o) return;
    gb_model *m = open_bundled();
    gb_tensor *prompt = gbt_get(o, "ids.eiffel"), *greedy = gbt_get(o, "greedy.eiffel");
    int64_t T = gb_tensor_dim(prompt, 1);
    gb_trace *tr = gb_trace_new(gb_model_module(m), prompt);
    gb_val *prompt_logits = gb_save(gb_output(tr, "lm_head"));
    gb_val *step3 = gb_save(gb_val_argmax(gb_val_index(gb_output_call(tr, "lm_head", 3), "[0, -1]"), -1, false));
    gb_val *never = gb_save(gb_output_call(tr, "lm_head", 20)); /* 20 new tokens: calls 0..19 */
    gbt_ok_status(gb_trace_generate(tr, 20));
    gb_tensor *ids = gb_trace_generated(tr);
    gbt_ok(ids);
    ck_assert(gb_tensor_ndim(ids) == 2 && gb_tensor_dim(ids, 0) == 1 && gb_tensor_dim(ids, 1) == T + 20);
    expect_ids(ids, 0, 0, T, gb_tensor_data(prompt));
    expect_ids(ids, 0, T, 20, gb_tensor_data(greedy));
    /* The prompt pass saw the whole prompt; step 3 chose new token 3. */
    ck_assert_int_eq(gb_tensor_dim(gb_value(prompt_logits), 1), T);
    double got;
    gbt_ok_status(gb_item(gb_value(step3), &got));
    ck_assert_int_eq((int64_t)got, gbt_i64(greedy, 3));
    gbt_fails_with(gb_value(never) == NULL, GB_ERR_STATE, "was never produced");
    gb_trace_free(tr);
    gb_tensor_free(greedy), gb_tensor_free(prompt);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_generate_with_an_edit_at_one_step) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_generate_with_an_edit_at_one_step");
    if (!o) return;
    gb_model *m = open_bundled();
    gb_tensor *prompt = gbt_get(o, "ids.eiffel"), *greedy = gbt_get(o, "greedy.eiffel"), *edited = gbt_get(o, "edit2");
    int64_t T = gb_tensor_dim(prompt, 1);
    gb_trace *tr = gb_trace_new(gb_model_module(m), prompt);
    /* Step 2 chooses new token 2: make it 42. Steps before are untouched;
     * after it, PyTorch with the same edit says what follows. */
    gb_set_index(gb_output_call(tr, "lm_head", 2), "[:, -1, 42]", gb_scalar(tr, 1e9f));
    gbt_ok_status(gb_trace_generate(tr, 5));
    gb_tensor *ids = gb_trace_generated(tr);
    ck_assert_int_eq(gb_tensor_dim(ids, 1), T + 5);
    expect_ids(ids, 0, T, 2, gb_tensor_data(greedy));
    expect_ids(ids, 0, T + 2, 1, (int64_t[]){42});
    expect_ids(ids, 0, T, 5, gb_tensor_data(edited));
    gb_trace_free(tr);
    gb_tensor_free(edited), gb_tensor_free(greedy), gb_tensor_free(prompt);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* Left padding: with the attention mask (extended by one real token per
 * step), a padded row continues exactly as the same tokens would alone
 * (positions counted from the mask, as Hugging Face's generate does). */
START_TEST(test_generate_left_padded_batch) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_generate_left_padded_batch");
    if (!o) return;
    gb_model *m = open_bundled();
    gb_tensor *shorter = gbt_get(o, "ids.vatican"), *longer = gbt_get(o, "ids.eiffel");
    gb_tensor *want_short = gbt_get(o, "greedy.vatican"), *want_long = gbt_get(o, "greedy.eiffel");
    int64_t T = gb_tensor_dim(longer, 1), pad = T - gb_tensor_dim(shorter, 1);
    ck_assert_int_gt(pad, 0);
    int64_t *ids = calloc(2 * (size_t)T, sizeof *ids), *mask = calloc(2 * (size_t)T, sizeof *mask);
    memcpy(ids + pad, gb_tensor_data(shorter), (size_t)(T - pad) * sizeof *ids); /* pad id 0 before it */
    memcpy(ids + T, gb_tensor_data(longer), (size_t)T * sizeof *ids);
    for (int64_t i = 0; i < 2 * T; i++) mask[i] = i >= pad;
    gb_tensor *tids = gb_from_data(ids, 2, (int64_t[]){2, T}, GB_DTYPE_I64);
    gb_tensor *tmask = gb_from_data(mask, 2, (int64_t[]){2, T}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), tids);
    gb_trace_set_attention_mask(tr, tmask);
    gbt_ok_status(gb_trace_generate(tr, 4));
    gb_tensor *out = gb_trace_generated(tr);
    ck_assert(gb_tensor_dim(out, 0) == 2 && gb_tensor_dim(out, 1) == T + 4);
    expect_ids(out, 0, T, 4, gb_tensor_data(want_short));
    expect_ids(out, 1, T, 4, gb_tensor_data(want_long));
    gb_trace_free(tr);
    gb_tensor_free(tmask), gb_tensor_free(tids);
    free(mask), free(ids);
    gb_tensor_free(want_long), gb_tensor_free(want_short), gb_tensor_free(longer), gb_tensor_free(shorter);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* The same on GPT-2, whose positions are absolute (on Llama, RoPE makes a
 * uniform shift of positions invisible): a left-padded row must generate
 * what its real tokens generate alone, which needs the positions counted
 * from the mask. The fixture is random (tests/oracle/models.py). */
START_TEST(test_generate_left_padded_gpt2) {
    char dir[4096];
    gb_model *m = gb_model_open(gbt_fixture_dir(dir, sizeof dir, "gpt2"), NULL);
    gbt_ok(m);
    gb_tensor *alone = gb_from_data((int64_t[]){5, 6, 7}, 2, (int64_t[]){1, 3}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), alone);
    gbt_ok_status(gb_trace_generate(tr, 5));
    int64_t want[5];
    memcpy(want, (const int64_t *)gb_tensor_data(gb_trace_generated(tr)) + 3, sizeof want);
    gb_trace_free(tr);

    gb_tensor *ids = gb_from_data((int64_t[]){0, 0, 5, 6, 7, 9, 8, 7, 6, 5}, 2, (int64_t[]){2, 5}, GB_DTYPE_I64);
    gb_tensor *mask = gb_from_data((int64_t[]){0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, 2, (int64_t[]){2, 5}, GB_DTYPE_I64);
    tr = gb_trace_new(gb_model_module(m), ids);
    gb_trace_set_attention_mask(tr, mask);
    gbt_ok_status(gb_trace_generate(tr, 5));
    expect_ids(gb_trace_generated(tr), 0, 5, 5, want);
    gb_trace_free(tr);
    gb_tensor_free(mask), gb_tensor_free(ids), gb_tensor_free(alone);
    gb_model_free(m);
}
END_TEST

static gb_tensor *count_calls(gb_tensor *const *args, int nargs, void *ctx) {
    (void)nargs;
    ++*(int *)ctx;
    return gb_clone(args[0]);
}

/* Getters of every call (nnsight's .all()): an edit at every step makes
 * every new token 42 (a logit of 1e9 wins); what depends on such a getter
 * runs once per forward pass (n new tokens: n passes) and keeps the last
 * pass's value; a value of one call read at every step stays available. */
START_TEST(test_generate_every_step) {
    gb_model *m = open_bundled();
    gb_tensor *bos = gb_from_data((int64_t[]){1023}, 2, (int64_t[]){1, 1}, GB_DTYPE_I64); /* <|endoftext|> */
    gb_trace *tr = gb_trace_new(gb_model_module(m), bos);
    int calls = 0;
    gb_val *all = gb_output_all(tr, "lm_head");
    gb_val *counted = gb_save(gb_apply(tr, count_calls, &calls, 1, &all));
    gb_set_index(all, "[:, -1, 42]", gb_scalar(tr, 1e9f));
    gbt_ok_status(gb_trace_generate(tr, 6));
    expect_ids(gb_trace_generated(tr), 0, 0, 7, (int64_t[]){1023, 42, 42, 42, 42, 42, 42});
    ck_assert_int_eq(calls, 6);
    ck_assert_int_eq(gb_tensor_dim(gb_value(counted), 1), 1); /* the last pass fed one token */
    gb_trace_free(tr);

    tr = gb_trace_new(gb_model_module(m), bos);
    all = gb_output_all(tr, "lm_head");
    gb_val *last = gb_save(gb_val_clone(gb_val_index(all, "[0, -1]")));
    gb_val *prompt = gb_val_index(gb_output(tr, "lm_head"), "[0, -1]"); /* not saved: kept for the repeats */
    gb_val *first = gb_save(gb_val_clone(prompt));
    gb_val *diff = gb_save(gb_val_sub(gb_val_index(all, "[0, -1]"), prompt));
    gbt_ok_status(gb_trace_generate(tr, 4));
    gb_tensor *want = gb_sub(gb_value(last), gb_value(first));
    gbt_assert_close(gb_value(diff), want, 0, 0, "last pass minus prompt pass");
    gb_tensor_free(want);
    gb_trace_free(tr);
    gb_tensor_free(bos);
    gb_model_free(m);
}
END_TEST

static bool is_stop(int64_t id, void *ctx) { return id == *(const int64_t *)ctx; }

/* Stop tokens: a finished row is padded while the others go on, and
 * generation ends when every row has finished. The rows: the Eiffel prompt
 * without its last token and the whole prompt. Greedy decoding after the
 * first chooses that last token (PyTorch's argmax there), so the two go on
 * alike; the stop token is the whole prompt's second greedy token, reached
 * 3 tokens after the first row and 2 after the second. */
START_TEST(test_generate_stop_tokens) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_generate_stop_tokens");
    if (!o) return;
    gb_model *m = open_bundled();
    gb_tensor *prompt = gbt_get(o, "ids.eiffel"), *top = gbt_get(o, "argmax.eiffel"), *greedy = gbt_get(o, "greedy.eiffel");
    int64_t T = gb_tensor_dim(prompt, 1), last = gbt_i64(prompt, T - 1), g0 = gbt_i64(greedy, 0), stop = gbt_i64(greedy, 1);
    ck_assert_int_eq(gbt_i64(top, T - 2), last);
    ck_assert(stop != last && stop != g0);
    gb_tensor *a = gb_from_data(gb_tensor_data(prompt), 2, (int64_t[]){1, T - 1}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), NULL);
    gbt_ok_status(gb_invoke(tr, a));
    gb_invoke_end(tr);
    gbt_ok_status(gb_invoke(tr, prompt));
    gb_invoke_end(tr);
    gb_trace_set_stop_tokens(tr, is_stop, &stop);
    gbt_ok_status(gb_trace_generate(tr, 20));
    gb_tensor *ids = gb_trace_generated(tr);
    ck_assert(gb_tensor_dim(ids, 0) == 2 && gb_tensor_dim(ids, 1) == T + 3); /* T prompt columns + 3 steps */
    expect_ids(ids, 0, 0, 1, (int64_t[]){0});                                /* left-padded by one (pad id 0) */
    expect_ids(ids, 0, 1, T, gb_tensor_data(prompt));
    expect_ids(ids, 0, T + 1, 2, (int64_t[]){g0, stop});
    expect_ids(ids, 1, 0, T, gb_tensor_data(prompt));
    expect_ids(ids, 1, T, 3, (int64_t[]){g0, stop, 0}); /* padded after its stop token */
    gb_trace_free(tr);
    gb_tensor_free(a);
    gb_tensor_free(greedy), gb_tensor_free(top), gb_tensor_free(prompt);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_generate_errors) {
    gb_module *net = gb_nn_linear(2, 2, true);
    gb_tensor *x = gb_zeros(2, (int64_t[]){1, 2}, GB_DTYPE_F32);
    gb_trace *tr = gb_trace_new(net, x);
    gbt_fails_with(gb_trace_generated(tr) == NULL, GB_ERR_STATE, "no gb_trace_generate has completed");
    gbt_fails_with(gb_trace_generate(tr, 0) != GB_OK, GB_ERR_ARG, "max_new_tokens must be >= 1, got 0");
    gb_trace_free(tr);
    gb_tensor_free(x);
    gb_module_free(net);
}
END_TEST

Suite *gb_suite_generate(void) {
    Suite *s = suite_create("generate");
    TCase *tc = tcase_create("generate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_generate_matches_greedy_and_reads_each_step);
    tcase_add_test(tc, test_generate_with_an_edit_at_one_step);
    tcase_add_test(tc, test_generate_left_padded_batch);
    tcase_add_test(tc, test_generate_left_padded_gpt2);
    tcase_add_test(tc, test_generate_stop_tokens);
    tcase_add_test(tc, test_generate_every_step);
    tcase_add_test(tc, test_generate_errors);
    suite_add_tcase(s, tc);
    return s;
}
