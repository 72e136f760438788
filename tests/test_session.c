/* Sessions (session/session.h): the walkthrough's session cell (a value of
 * one trace replacing a layer's output in the next, unsaved), a swap
 * between two checkpoints of one architecture, generation in a session,
 * loops (nested too), session-level log and stop, the JSON form and the
 * errors. Expected values: PyTorch with forward hooks on the same
 * checkpoints (tests/oracle/session.py, which also writes the second
 * checkpoint), and derivations written beside the checks. */
#include <stdlib.h>

#include "gbtest.h"

typedef struct models {
    gb_lm *a, *b;
} models;

static gb_lm *lm_of(void *ctx, const char *name) {
    models *m = ctx;
    if (!strcmp(name, "a")) return m->a;
    if (!strcmp(name, "b") && m->b) return m->b;
    return gb_lm_open(name, NULL); /* fails: no such directory or Hub id */
}

/* The bundled model as "a", the oracle's second checkpoint as "b". */
static bool open_models(models *m, bool with_b) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/session_b", getenv("GB_ORACLE_DIR") ? getenv("GB_ORACLE_DIR") : "build/oracle");
    m->a = gb_lm_open(GBT_BUNDLED, NULL);
    m->b = with_b ? gb_lm_open(dir, NULL) : NULL;
    gbt_ok(m->a);
    if (with_b) gbt_ok(m->b);
    return true;
}

static void close_models(models *m) { gb_lm_free(m->a), gb_lm_free(m->b); }

/* Build and run sp on m, collecting what it reports. */
static gb_status run_spec(gb_spec *sp, models *m, gbt_results *res) { return gbt_run_spec(sp, lm_of, m, res); }

static const char *const EIFFEL = "The Eiffel Tower is in the city of";

/* nnsight's session cell: hs from trace 1, not saved, replaces block 1's
 * output at the last position in trace 2. */
START_TEST(test_session_walkthrough) {
    gbt_oracle *o = gbt_oracle_load_or_skip("session", "test_session_walkthrough");
    if (!o) return;
    models m = {0};
    open_models(&m, false);
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "hs = model.transformer.h[3].output[0][:, -1, :]");
    gb_spec_statement(sp, "t1_tokens_out = model.lm_head.output.argmax(dim=-1).save()");
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, "Vatican is located in the city of");
    gb_spec_statement(sp, "model.transformer.h[1].output[0][:, -1, :] = hs[:]");
    gb_spec_statement(sp, "t2_tokens_out = model.lm_head.output.argmax(dim=-1).save()");
    gbt_results res = {0};
    gbt_ok_status(run_spec(sp, &m, &res));
    ck_assert_int_eq(res.n, 2); /* hs was not saved: only the two saved values come back */
    gb_tensor *t1 = gbt_get(o, "swap.t1"), *t2 = gbt_get(o, "swap.t2");
    gbt_assert_close(gbt_result(&res, "t1.t1_tokens_out"), t1, 0, 0, "trace 1's tokens");
    gbt_assert_close(gbt_result(&res, "t2.t2_tokens_out"), t2, 0, 0, "trace 2's tokens, block 1 patched");
    gb_tensor_free(t1), gb_tensor_free(t2);
    gbt_results_free(&res);
    gb_spec_free(sp);
    close_models(&m);
    gbt_oracle_free(o);
}
END_TEST

/* The same session with each trace's statements as one block (a
 * multi-line statement, as a file gives them): an if/else whose true
 * branch patches, names bound in the block reported, PyTorch's numbers. */
START_TEST(test_session_blocks) {
    gbt_oracle *o = gbt_oracle_load_or_skip("session", "test_session_blocks");
    if (!o) return;
    models m = {0};
    open_models(&m, false);
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "hs = model.transformer.h[3].output[0][:, -1, :]\n"
                          "t1_tokens_out = model.lm_head.output.argmax(dim=-1).save()");
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, "Vatican is located in the city of");
    gb_spec_statement(sp, "if hs.sum() == hs.sum():\n"
                          "    model.transformer.h[1].output[0][:, -1, :] = hs[:]\n"
                          "    t2_tokens_out = model.lm_head.output.argmax(dim=-1).save()\n"
                          "else:\n"
                          "    model.transformer.h[1].output[0][:, -1, :] = 0\n"
                          "    never = model.lm_head.output.save()");
    gbt_results res = {0};
    gbt_ok_status(run_spec(sp, &m, &res));
    ck_assert_int_eq(res.n, 2); /* never was in the branch that did not run */
    gb_tensor *t1 = gbt_get(o, "swap.t1"), *t2 = gbt_get(o, "swap.t2");
    gbt_assert_close(gbt_result(&res, "t1.t1_tokens_out"), t1, 0, 0, "trace 1's tokens");
    gbt_assert_close(gbt_result(&res, "t2.t2_tokens_out"), t2, 0, 0, "trace 2's tokens, block 1 patched");
    gb_tensor_free(t1), gb_tensor_free(t2);
    gbt_results_free(&res);
    gb_spec_free(sp);
    close_models(&m);
    gbt_oracle_free(o);
}
END_TEST

/* Two checkpoints of one architecture: model A's block 2 output replaces
 * model B's, in a forward pass and in generation (the prompt pass). */
START_TEST(test_session_cross_model) {
    gbt_oracle *o = gbt_oracle_load_or_skip("session", "test_session_cross_model");
    if (!o) return;
    models m = {0};
    open_models(&m, true);
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "h = transformer.h[2].output[0]");
    gb_spec_trace(sp, "b");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "plain = lm_head.output[0, -1].save()");
    gb_spec_trace(sp, "b");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "transformer.h[2].output[0][:] = h");
    gb_spec_statement(sp, "swapped = lm_head.output[0, -1].save()");
    gb_spec_trace(sp, "b");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "transformer.h[2].output[0][:] = h");
    gb_spec_generate(sp, 3);
    gbt_results res = {0};
    gbt_ok_status(run_spec(sp, &m, &res));
    gb_tensor *b = gbt_get(o, "cross.b"), *sw = gbt_get(o, "cross.swapped"), *gen = gbt_get(o, "gen.t2");
    gbt_assert_close(gbt_result(&res, "t2.plain"), b, 1e-4, 1e-4, "model B's logits");
    gbt_assert_close(gbt_result(&res, "t3.swapped"), sw, 1e-4, 1e-4, "model B's logits with A's block 2");
    gb_tensor *out = gbt_result(&res, "t4.generator.output");
    gbt_ok(out);
    int64_t T = gb_tensor_dim(out, 1) - gb_tensor_numel(gen);
    for (int64_t i = 0; i < gb_tensor_numel(gen); i++) ck_assert_int_eq(gbt_i64(out, T + i), gbt_i64(gen, i));
    gb_tensor_free(b), gb_tensor_free(sw), gb_tensor_free(gen);
    gbt_results_free(&res);
    gb_spec_free(sp);
    close_models(&m);
    gbt_oracle_free(o);
}
END_TEST

/* session.iter: one trace body per item, the item a value of the body. */
START_TEST(test_session_iter) {
    gbt_oracle *o = gbt_oracle_load_or_skip("session", "test_session_iter");
    if (!o) return;
    models m = {0};
    open_models(&m, false);
    gb_spec *sp = gb_spec_new();
    gb_spec_iter(sp, "x", 3, 0, (float[]){0.5f, 2.0f, -1.0f}, NULL); /* session.py's ITEMS */
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "transformer.h[0].output[0][:] = transformer.h[0].output[0] * x");
    gb_spec_statement(sp, "last = lm_head.output[0, -1].save()");
    gb_spec_end(sp);
    gbt_results res = {0};
    gbt_ok_status(run_spec(sp, &m, &res));
    ck_assert_int_eq(res.n, 3);
    for (int k = 0; k < 3; k++) {
        char key[64];
        snprintf(key, sizeof key, "t1[%d].last", k);
        gb_tensor *want = gbt_getf(o, "iter.%d", k);
        gbt_assert_close(gbt_result(&res, key), want, 1e-4, 1e-4, key);
        gb_tensor_free(want);
    }
    gbt_results_free(&res);
    gb_spec_free(sp);
    close_models(&m);
    gbt_oracle_free(o);
}
END_TEST

/* The values one trace of each prompt gives, under the loop's keys "t1[k].NAME". */
static void expect_unrolled(models *m, const gbt_results *looped, const char *const *texts, const int64_t *const *ids,
                            const int64_t *lens, int n, int new_tokens, const char *stmt, const char *name) {
    for (int k = 0; k < n; k++) {
        gb_spec *one = gb_spec_new();
        gb_spec_trace(one, "a");
        if (texts[k]) gb_spec_prompt(one, texts[k]);
        else gb_spec_ids(one, lens[k], ids[k]);
        gb_spec_statement(one, stmt);
        if (new_tokens) gb_spec_generate(one, new_tokens);
        gbt_results want = {0};
        gbt_ok_status(run_spec(one, m, &want));
        char key[64], one_key[64];
        snprintf(key, sizeof key, "t1[%d].%s", k, name);
        snprintf(one_key, sizeof one_key, "t1.%s", name);
        gb_tensor *got = gbt_result(looped, key), *w = gbt_result(&want, one_key);
        ck_assert_msg(got && w, "%s", key);
        gbt_assert_close(got, w, 0, 0, key); /* the same run: bitwise */
        if (new_tokens) {
            snprintf(key, sizeof key, "t1[%d].generator.output", k);
            gbt_assert_close(gbt_result(looped, key), gbt_result(&want, "t1.generator.output"), 0, 0, key);
        }
        gbt_results_free(&want);
        gb_spec_free(one);
    }
}

/* session.iter over prompts (texts and id lists): each item is the input
 * of its run, which is the run of a trace of that prompt alone (the
 * derivation: the unrolled session); the JSON form carries it; nested in a
 * loop over numbers, each run sees both items. */
START_TEST(test_session_iter_prompts) {
    models m = {0};
    open_models(&m, false);
    const char *texts[] = {EIFFEL, NULL, "Vatican is located in the city of"};
    const int64_t id1[] = {464, 412, 733};
    const int64_t *ids[] = {NULL, id1, NULL}, lens[] = {0, 3, 0};
    const char *stmt = "top = lm_head.output[0, -1].softmax(-1).save()";
    gb_spec *sp = gb_spec_new();
    gbt_ok_status(gb_spec_iter_prompts(sp, "p", 3, texts, ids, lens));
    gb_spec_trace(sp, "a");
    gbt_ok_status(gb_spec_item(sp, "p"));
    gb_spec_statement(sp, stmt);
    gb_spec_generate(sp, 2);
    gb_spec_end(sp);
    char *json = gb_spec_json(sp);
    ck_assert_msg(strstr(json, "{\"iter\":{\"name\":\"p\",\"prompts\":[\"The Eiffel Tower is in the city of\",[464,412,733],"
                               "\"Vatican is located in the city of\"],\"body\":[{\"trace\":{\"model\":\"a\",\"invokes\":"
                               "[{\"item\":\"p\",") != NULL, "%s", json);
    gb_spec *back = gb_spec_from_json(json, strlen(json));
    gbt_ok(back);
    char *again = gb_spec_json(back);
    ck_assert_str_eq(json, again);
    free(json), free(again);
    gbt_results res = {0};
    gbt_ok_status(run_spec(back, &m, &res));
    ck_assert_int_eq(res.n, 6); /* top and generator.output per item */
    expect_unrolled(&m, &res, texts, ids, lens, 3, 2, stmt, "top");
    gbt_results_free(&res);
    gb_spec_free(back), gb_spec_free(sp);

    /* nested: a loop over numbers around the loop over prompts; the prompt loop's item is its number */
    sp = gb_spec_new();
    gb_spec_iter(sp, "s", 2, 0, (float[]){1.0f, 0.5f}, NULL);
    gb_spec_iter_prompts(sp, "p", 2, (const char *[]){EIFFEL, "Vatican is located in the city of"}, NULL, NULL);
    gb_spec_trace(sp, "a");
    gb_spec_item(sp, "p");
    gb_spec_statement(sp, "transformer.h[1].output[0][:] = transformer.h[1].output[0] * s");
    gb_spec_statement(sp, "k = (lm_head.output[0, -1, :1] * 0 + p).save()");
    gb_spec_end(sp);
    gb_spec_end(sp);
    gbt_ok_status(run_spec(sp, &m, &res));
    ck_assert_int_eq(res.n, 4);
    double v;
    gbt_ok_status(gb_item(gbt_result(&res, "t1[1.1].k"), &v));
    ck_assert(v == 1.0);
    gbt_ok_status(gb_item(gbt_result(&res, "t1[0.0].k"), &v));
    ck_assert(v == 0.0);
    gbt_results_free(&res);
    gb_spec_free(sp);

    /* a block of statements that binds no name (the spec fuzzer's: its names were copied from NULL, UBSan) */
    sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 2, (int64_t[]){5, 6});
    gb_spec_statement(sp, "lm_head.output[0, -1, :2].save()\nlm_head.output[0, -1, :1].save()");
    gbt_ok_status(run_spec(sp, &m, &res));
    gbt_results_free(&res);
    gb_spec_free(sp);
    /* errors: no such loop, another prompt beside the item */
    sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_item(sp, "q");
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_ARG, "no enclosing loop over prompts is called so");
    gb_spec_free(sp);
    sp = gb_spec_new();
    gb_spec_iter_prompts(sp, "p", 1, (const char *[]){EIFFEL}, NULL, NULL);
    gb_spec_trace(sp, "a");
    gb_spec_item(sp, "p");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_end(sp);
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_ARG, "takes no other prompt");
    gb_spec_free(sp);
    gbt_fails_with(gb_spec_iter_prompts(sp = gb_spec_new(), "p", 0, NULL, NULL, NULL) != GB_OK, GB_ERR_ARG,
                   "needs at least one prompt");
    gb_spec_free(sp);
    gbt_results_free(&res);
    close_models(&m);
}
END_TEST

/* session.iter over a value of an earlier trace: its rows, as that trace's
 * run left them. The derivation: the same session unrolled, each run
 * taking one row of the value by index. */
START_TEST(test_session_iter_value) {
    models m = {0};
    open_models(&m, false);
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, EIFFEL);
    gb_spec_statement(sp, "hs = transformer.h[3].output[0][0, -3:, :]");
    gb_spec_iter(sp, "x", 0, 0, NULL, "hs");
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, "Vatican is located in the city of");
    gb_spec_statement(sp, "transformer.h[1].output[0][:, -1, :] = x");
    gb_spec_statement(sp, "y = lm_head.output[0, -1].save()");
    gb_spec_end(sp);
    gbt_results res = {0};
    gbt_ok_status(run_spec(sp, &m, &res));
    ck_assert_int_eq(res.n, 3);
    for (int k = 0; k < 3; k++) {
        gb_spec *one = gb_spec_new();
        gb_spec_trace(one, "a");
        gb_spec_prompt(one, EIFFEL);
        char stmt[128], key[32];
        snprintf(stmt, sizeof stmt, "h = transformer.h[3].output[0][0, %d, :]", k - 3);
        gb_spec_statement(one, stmt);
        gb_spec_trace(one, "a");
        gb_spec_prompt(one, "Vatican is located in the city of");
        gb_spec_statement(one, "transformer.h[1].output[0][:, -1, :] = h");
        gb_spec_statement(one, "y = lm_head.output[0, -1].save()");
        gbt_results want = {0};
        gbt_ok_status(run_spec(one, &m, &want));
        snprintf(key, sizeof key, "t2[%d].y", k);
        gbt_assert_close(gbt_result(&res, key), gbt_result(&want, "t2.y"), 0, 0, key);
        gbt_results_free(&want);
        gb_spec_free(one);
    }
    gbt_results_free(&res);
    gb_spec_free(sp);
    /* a name nobody bound */
    sp = gb_spec_new();
    gb_spec_iter(sp, "x", 0, 0, NULL, "nothing");
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_end(sp);
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_ARG, "is neither an enclosing loop nor a name bound by an earlier trace");
    gb_spec_free(sp);
    close_models(&m);
}
END_TEST

/* The walkthrough's nested loops: over [[0], [1], [2]], then over each
 * item's rows: the inner item takes the values 0, 1, 2 in turn. Session
 * log and stop: the log line comes in order, nothing after the stop runs. */
START_TEST(test_session_nested_log_stop) {
    models m = {0};
    open_models(&m, false);
    gb_spec *sp = gb_spec_new();
    gb_spec_log(sp, "-- start --");
    gb_spec_iter(sp, "item", 3, 1, (float[]){0, 1, 2}, NULL);
    gb_spec_iter(sp, "item_2", 0, 0, NULL, "item");
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 2, (int64_t[]){5, 6});
    gb_spec_statement(sp, "log(\"item_2\", item_2)");
    gb_spec_end(sp);
    gb_spec_end(sp);
    gb_spec_log(sp, "-- Early Stop --");
    gb_spec_stop(sp);
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_statement(sp, "log(\"never\", lm_head.output.sum())");
    gbt_results res = {0};
    gbt_ok_status(run_spec(sp, &m, &res));
    ck_assert_str_eq(res.log, "-- start --\nitem_2 tensor(0.)\nitem_2 tensor(1.)\nitem_2 tensor(2.)\n-- Early Stop --\n");
    gbt_results_free(&res);
    gb_spec_free(sp);
    close_models(&m);
}
END_TEST

/* The JSON form carries the same session: printed, parsed and printed
 * again gives the same text; malformed requests name what is wrong. */
START_TEST(test_spec_json) {
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_prompt(sp, "one");
    gb_spec_statement(sp, "x = lm_head.output.save()");
    gb_spec_ids(sp, 2, (int64_t[]){1, 2});
    gb_spec_statement(sp, "y = lm_head.output.save()");
    gb_spec_generate(sp, 2);
    gb_spec_iter(sp, "i", 2, 2, (float[]){1, 2, 3, 4}, NULL);
    gb_spec_iter(sp, "j", 0, 0, NULL, "i");
    gb_spec_log(sp, "in");
    gb_spec_end(sp);
    gb_spec_end(sp);
    gb_spec_stop(sp);
    char *a = gb_spec_json(sp);
    gbt_ok(a);
    ck_assert_str_eq(a, "{\"session\":[{\"trace\":{\"model\":\"a\",\"invokes\":[{\"prompt\":\"one\",\"statements\":"
                        "[\"x = lm_head.output.save()\"]},{\"ids\":[1,2],\"statements\":[\"y = lm_head.output.save()\"]}],"
                        "\"max_new_tokens\":2}},{\"iter\":{\"name\":\"i\",\"items\":[[1,2],[3,4]],\"body\":[{\"iter\":"
                        "{\"name\":\"j\",\"over\":\"i\",\"body\":[{\"log\":\"in\"}]}}]}},{\"stop\":true}]}");
    gb_spec *back = gb_spec_from_json(a, strlen(a));
    gbt_ok(back);
    char *b = gb_spec_json(back);
    ck_assert_str_eq(a, b);
    free(a), free(b);
    gb_spec_free(back), gb_spec_free(sp);

    const char *bad[][2] = {
        {"{\"session\": [", "invalid JSON"},
        {"{\"trace\": {}}", "expected {\"session\": [steps]}"},
        {"{\"session\": [{\"trace\": {\"invokes\": []}}]}", "step 1: a trace needs \"model\""},
        {"{\"session\": [{\"trace\": {\"model\": \"a\"}}]}", "a trace needs \"invokes\""},
        {"{\"session\": [{\"log\": \"x\"}, {\"trace\": {\"model\": \"a\", \"invokes\": [{\"ids\": [1, -2]}]}}]}",
         "step 2: \"ids\" must be non-negative integers"},
        {"{\"session\": [{\"iter\": {\"name\": \"i\", \"items\": [1, [2]], \"body\": []}}]}", "loop items must be"},
        {"{\"session\": [{\"jump\": 1}]}", "a step is"},
        /* the fuzzer's: a number past float32 became inf, which JSON cannot carry back */
        {"{\"session\": [{\"iter\": {\"name\": \"x\", \"items\": [0.5, 5e55], \"body\": []}}]}",
         "spec_iter: loop 'x': item value 1 is inf; items are finite float32 numbers"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        gb_spec *s = gb_spec_from_json(bad[i][0], strlen(bad[i][0]));
        ck_assert_msg(!s && strstr(gb_last_error(), bad[i][1]), "%s: got '%s'", bad[i][0], gb_last_error());
    }
}
END_TEST

/* Errors: each names the trace and what is wrong, and nothing runs. */
START_TEST(test_session_errors) {
    models m = {0};
    open_models(&m, false);
    gbt_results res = {0};
    /* a name bound by a later trace is not visible: it is a module path */
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_statement(sp, "lm_head.output[:] = later");
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_statement(sp, "later = lm_head.output");
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_ARG, "session: trace 1: -e:1: a module is not a value");
    gb_spec_free(sp);
    /* an unknown model */
    sp = gb_spec_new();
    gb_spec_trace(sp, "nope");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_NOT_FOUND, "nope: not a local path");
    gb_spec_free(sp);
    /* a value that its trace never produced (it stopped before) */
    sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_statement(sp, "transformer.h[0].output.stop()");
    gb_spec_statement(sp, "h = transformer.h[1].output[0]");
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_statement(sp, "transformer.h[1].output[0][:] = h");
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_STATE, "of trace 1, was never produced");
    gb_spec_free(sp);
    /* a function outside the statement language */
    sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_statement(sp, "x = torch.nn.functional.frobnicate(lm_head.output)");
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_ARG,
                   "function `torch.nn.functional.frobnicate` is not in the function whitelist");
    gb_spec_free(sp);
    /* a loop left open, a loop over a scalar item */
    sp = gb_spec_new();
    gb_spec_iter(sp, "i", 1, 0, (float[]){1}, NULL);
    gbt_fails_with(!gb_spec_session(sp, lm_of, &m, NULL, NULL, NULL), GB_ERR_STATE, "a loop is still open");
    gb_spec_iter(sp, "j", 0, 0, NULL, "i");
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 1, (int64_t[]){5});
    gb_spec_end(sp);
    gb_spec_end(sp);
    gbt_fails_with(run_spec(sp, &m, &res) != GB_OK, GB_ERR_ARG, "loop 'j' walks dim 0 of i, which has none");
    gb_spec_free(sp);
    /* limits */
    sp = gb_spec_new();
    gb_spec_trace(sp, "a");
    gb_spec_ids(sp, 3, (int64_t[]){5, 6, 7});
    gb_spec_generate(sp, 4);
    gb_spec_limits lim = {.max_new_tokens = 3};
    gbt_fails_with(!gb_spec_session(sp, lm_of, &m, &lim, NULL, NULL), GB_ERR_ARG, "limit: 4 new tokens, at most 3");
    ck_assert(lim.exceeded);
    lim = (gb_spec_limits){.max_tokens = 2};
    gbt_fails_with(!gb_spec_session(sp, lm_of, &m, &lim, NULL, NULL), GB_ERR_ARG, "limit: 3 prompt tokens");
    gb_spec_free(sp);
    ck_assert_int_eq(res.n, 0);
    gbt_results_free(&res);
    close_models(&m);
}
END_TEST

/* The C API on the walkthrough's tiny network: gb_session_use between
 * traces, gb_session_item in a loop; a value of a later trace is refused.
 * Derivation: trace 2 sets layer1's output to trace 1's (the same input,
 * so the same values) times the item, and layer2 is linear: its output
 * minus its bias scales with the item. */
START_TEST(test_session_c_api) {
    gb_module *net = gb_sequential(2, (const char *[]){"layer1", "layer2"},
                                   (gb_module *[]){gb_nn_linear(5, 10, true), gb_nn_linear(10, 2, true)});
    gb_module_init(net, 0);
    gb_tensor *x = gb_ones(2, (int64_t[]){1, 5}, GB_DTYPE_F32), *items = gb_from_data((float[]){1, 3}, 1, (int64_t[]){2},
                                                                                      GB_DTYPE_F32);
    gb_session *s = gb_session_new();
    gb_trace *t1 = gb_session_trace(s, net, x);
    gb_val *h = gb_output(t1, "layer1");
    gb_val *y1 = gb_save(gb_output(t1, "layer2"));
    gbt_ok_status(gb_session_iter(s, "k", items, NULL));
    gb_trace *t2 = gb_session_trace(s, net, x);
    gb_val *k = gb_session_item(s, t2, NULL);
    gb_set(gb_output(t2, "layer1"), gb_val_mul(gb_session_use(s, t2, h), k));
    gb_val *y2 = gb_save(gb_output(t2, "layer2"));
    gbt_fails_with(!gb_session_use(s, t1, y2), GB_ERR_ARG, "is not a value of an earlier trace");
    gbt_fails_with(!gb_session_item(s, t1, NULL), GB_ERR_ARG, "the trace is in no loop");
    gbt_ok_status(gb_session_iter_end(s));
    gbt_ok_status(gb_session_run(s));
    /* the last item, 3: y2 - b = 3 (y1 - b) */
    gb_tensor *bias = gb_module_param(gb_module_find(net, "layer2"), "bias");
    gb_tensor *d1 = gb_sub(gb_value(y1), bias), *d2 = gb_sub(gb_value(y2), bias), *want = gb_mul_scalar(d1, 3);
    gbt_assert_close(d2, want, 1e-5, 1e-6, "layer2 on 3 x layer1's output");
    gb_tensor_free(d1), gb_tensor_free(d2), gb_tensor_free(want);
    ck_assert_ptr_null(gb_value(h)); /* used across traces, yet not saved for the user */
    gb_session_free(s);
    gb_tensor_free(items), gb_tensor_free(x);
    gb_module_free(net);
}
END_TEST

Suite *gb_suite_session(void) {
    Suite *s = suite_create("session");
    TCase *tc = tcase_create("session");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_session_walkthrough);
    tcase_add_test(tc, test_session_blocks);
    tcase_add_test(tc, test_session_cross_model);
    tcase_add_test(tc, test_session_iter);
    tcase_add_test(tc, test_session_iter_prompts);
    tcase_add_test(tc, test_session_iter_value);
    tcase_add_test(tc, test_session_nested_log_stop);
    tcase_add_test(tc, test_spec_json);
    tcase_add_test(tc, test_session_errors);
    tcase_add_test(tc, test_session_c_api);
    suite_add_tcase(s, tc);
    return s;
}
