/* Generation with interventions per step (gb_trace_generate), on the real
 * stories260k Llama. Expected ids: the greedy continuation from BOS in
 * ../shared/README.md, and derivations written beside each check (step k's
 * logits choose token k + 1; a logit of 1e9 wins the argmax). */
#include <stdlib.h>
#include <string.h>

#include "gbtest.h"

/* ../shared/README.md: greedy decoding from BOS. */
static const int64_t greedy[21] = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                   315, 421, 395, 317, 426, 338, 401, 396, 267, 337};

static void expect_ids(const gb_tensor *t, int64_t row, int64_t from, int64_t n, const int64_t *want) {
    ck_assert_int_eq(gb_tensor_dtype(t), GB_DTYPE_I64);
    const int64_t *got = gb_tensor_data(t);
    int64_t T = gb_tensor_dim(t, 1);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(got[row * T + from + i] == want[i], "row %lld position %lld: %lld, expected %lld",
                      (long long)row, (long long)(from + i), (long long)got[row * T + from + i], (long long)want[i]);
}

START_TEST(test_generate_matches_greedy_and_reads_each_step) {
    gb_model *m = gbt_open_stories("test_generate_matches_greedy_and_reads_each_step");
    if (!m) return;
    gb_tensor *bos = gb_from_data((int64_t[]){1}, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), bos);
    gb_val *prompt_logits = gb_save(gb_output(tr, "lm_head"));
    gb_val *step3 = gb_save(gb_val_argmax(gb_val_index(gb_output_call(tr, "lm_head", 3), "[0, -1]"), -1, false));
    gb_val *never = gb_save(gb_output_call(tr, "lm_head", 20)); /* 20 new tokens: calls 0..19 */
    gbt_ok_status(gb_trace_generate(tr, 20));
    gb_tensor *ids = gb_trace_generated(tr);
    gbt_ok(ids);
    ck_assert(gb_tensor_ndim(ids) == 2 && gb_tensor_dim(ids, 0) == 1 && gb_tensor_dim(ids, 1) == 21);
    expect_ids(ids, 0, 0, 21, greedy);
    /* The prompt pass saw the one BOS token; step 3 chose token 4. */
    ck_assert_int_eq(gb_tensor_dim(gb_value(prompt_logits), 1), 1);
    double got;
    gbt_ok_status(gb_item(gb_value(step3), &got));
    ck_assert_int_eq((int64_t)got, greedy[4]);
    gbt_fails_with(gb_value(never) == NULL, GB_ERR_STATE, "was never produced");
    gb_trace_free(tr);
    gb_tensor_free(bos);
    gb_model_free(m);
}
END_TEST

START_TEST(test_generate_with_an_edit_at_one_step) {
    gb_model *m = gbt_open_stories("test_generate_with_an_edit_at_one_step");
    if (!m) return;
    gb_tensor *bos = gb_from_data((int64_t[]){1}, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), bos);
    /* Step 2 chooses token 3: make it 42. Steps before are untouched. */
    gb_set_index(gb_output_call(tr, "lm_head", 2), "[:, -1, 42]", gb_scalar(tr, 1e9f));
    gbt_ok_status(gb_trace_generate(tr, 5));
    gb_tensor *ids = gb_trace_generated(tr);
    expect_ids(ids, 0, 0, 3, greedy);
    expect_ids(ids, 0, 3, 1, (int64_t[]){42});
    ck_assert_int_eq(gb_tensor_dim(ids, 1), 6);
    gb_trace_free(tr);
    gb_tensor_free(bos);
    gb_model_free(m);
}
END_TEST

/* Left padding: with the attention mask (extended by one real token per
 * step), a padded row continues exactly as the same tokens would alone. */
START_TEST(test_generate_left_padded_batch) {
    gb_model *m = gbt_open_stories("test_generate_left_padded_batch");
    if (!m) return;
    gb_tensor *ids = gb_from_data((int64_t[]){0, 1, 403, 1, 403, 407}, 2, (int64_t[]){2, 3}, GB_DTYPE_I64);
    gb_tensor *mask = gb_from_data((int64_t[]){0, 1, 1, 1, 1, 1}, 2, (int64_t[]){2, 3}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), ids);
    gb_trace_set_attention_mask(tr, mask);
    gbt_ok_status(gb_trace_generate(tr, 4));
    gb_tensor *out = gb_trace_generated(tr);
    ck_assert(gb_tensor_dim(out, 0) == 2 && gb_tensor_dim(out, 1) == 7);
    expect_ids(out, 0, 3, 4, greedy + 2); /* after [1, 403]: 407, 261, 378, 432 */
    expect_ids(out, 1, 3, 4, greedy + 3); /* after [1, 403, 407]: 261, 378, 432, 383 */
    gb_trace_free(tr);
    gb_tensor_free(mask), gb_tensor_free(ids);
    gb_model_free(m);
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
    gb_model *m = gbt_open_stories("test_generate_every_step");
    if (!m) return;
    gb_tensor *bos = gb_from_data((int64_t[]){1}, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), bos);
    int calls = 0;
    gb_val *all = gb_output_all(tr, "lm_head");
    gb_val *counted = gb_save(gb_apply(tr, count_calls, &calls, 1, &all));
    gb_set_index(all, "[:, -1, 42]", gb_scalar(tr, 1e9f));
    gbt_ok_status(gb_trace_generate(tr, 6));
    expect_ids(gb_trace_generated(tr), 0, 0, 7, (int64_t[]){1, 42, 42, 42, 42, 42, 42});
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

static bool is_261(int64_t id, void *ctx) {
    (void)ctx;
    return id == 261;
}

/* Stop tokens: a finished row is padded while the others go on, and
 * generation ends when every row has finished (here on token 261, which
 * greedy decoding reaches 3 tokens after [1] and 2 after [1, 403]). */
START_TEST(test_generate_stop_tokens) {
    gb_model *m = gbt_open_stories("test_generate_stop_tokens");
    if (!m) return;
    gb_tensor *a = gb_from_data(greedy, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    gb_tensor *b = gb_from_data(greedy, 2, (int64_t[]){1, 2}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), NULL);
    gbt_ok_status(gb_invoke(tr, a));
    gb_invoke_end(tr);
    gbt_ok_status(gb_invoke(tr, b));
    gb_invoke_end(tr);
    gb_trace_set_stop_tokens(tr, is_261, NULL);
    gbt_ok_status(gb_trace_generate(tr, 20));
    gb_tensor *ids = gb_trace_generated(tr);
    ck_assert(gb_tensor_dim(ids, 0) == 2 && gb_tensor_dim(ids, 1) == 5); /* 2 prompt columns + 3 steps */
    expect_ids(ids, 0, 0, 5, (int64_t[]){0, 1, 403, 407, 261});
    expect_ids(ids, 1, 0, 5, (int64_t[]){1, 403, 407, 261, 0}); /* padded after its stop token */
    gb_trace_free(tr);
    gb_tensor_free(a), gb_tensor_free(b);
    gb_model_free(m);
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
