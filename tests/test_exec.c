/* Executions (gb_exec): one graph run in several states, at once in
 * several threads, or stepped pass by pass.
 *
 * Expected values: on the walkthrough's tiny network, PyTorch's
 * (tests/oracle/trace.py) for its input, and for a zero input the
 * derivation layer1(0) = layer1.bias; on the bundled model, PyTorch's
 * greedy continuation (tests/oracle/bundled.py). The threads test compares each
 * thread's results with the same graph run before on one thread: an
 * execution must give exactly what the trace's own run gives (same model
 * weights, same input, same operations, same thread counts). */
#include <pthread.h>
#include <stdlib.h>

#include "gbtest.h"

/* ---- one graph, several threads -------------------------------------------- */

enum { NTHREADS = 4, NEW_TOKENS = 5 };

static const struct {
    const char *variant; /* generated Hugging Face fixture (docs/fixtures.md) */
    const char *block, *mlp;
} arch[] = {
    {"gpt2", "transformer.h.0", "transformer.h.-1.mlp"},
    {"llama", "model.layers.0", "model.layers.-1.mlp"},
};

/* What one graph computes; its nodes are what every thread reads back. */
typedef struct {
    gb_trace *tr;    /* a forward: an edit with a constant, a saved product, a gradient */
    gb_val *logits, *scaled, *grad;
    gb_trace *gen;   /* a generation with an edit at step 2 */
    gb_val *step2;
} graphs;

static graphs define(gb_model *m, int a, gb_tensor *ids) {
    graphs g;
    gb_module *root = gb_model_module(m);
    g.tr = gb_trace_new(root, ids);
    gb_val *h = gb_val_index(gb_output(g.tr, arch[a].block), "[0]");
    gb_set_index(h, "[:, -1, :]", gb_scalar(g.tr, 0.5f));
    gb_requires_grad(h); /* after the in-place edit: a leaf that requires grad cannot be edited */
    gb_val *mlp = gb_output(g.tr, arch[a].mlp);
    gb_set(mlp, gb_val_mul(mlp, gb_scalar(g.tr, 2)));
    g.logits = gb_save(gb_val_index(gb_output(g.tr, "lm_head"), "[0, -1]"));
    g.scaled = gb_save(gb_val_sum_all(gb_val_mul(g.logits, g.logits)));
    g.grad = gb_save(gb_grad(h));
    gb_val_backward(gb_val_index(g.logits, "[3]"));
    g.gen = gb_trace_new(root, ids);
    g.step2 = gb_save(gb_val_clone(gb_output_call(g.gen, "lm_head", 2)));
    gb_set_index(gb_output_call(g.gen, "lm_head", 2), "[:, -1, 7]", gb_scalar(g.gen, 1e9f));
    return g;
}

typedef struct {
    gb_exec *run, *gen; /* made on the main thread, run on their own */
    gb_status st_run, st_gen;
    char error[512];
} job;

static void *run_job(void *arg) {
    job *j = arg;
    j->st_run = gb_exec_run(j->run, NULL);
    if (j->st_run == GB_OK) j->st_gen = gb_exec_generate(j->gen, NULL, NEW_TOKENS);
    snprintf(j->error, sizeof j->error, "%s", gb_last_error());
    return NULL;
}

START_TEST(test_threads_run_one_graph) {
    char dir[4096];
    gbt_fixture_dir(dir, sizeof dir, arch[_i].variant);
    gb_model *m0 = gb_model_open(dir, NULL), *m[NTHREADS];
    gbt_ok(m0);
    gb_tensor *ids = gb_from_data((int64_t[]){5, 6, 7, 8, 9, 10}, 2, (int64_t[]){1, 6}, GB_DTYPE_I64);
    graphs g = define(m0, _i, ids);

    /* The reference: the trace's own run, on one thread, before any other. */
    gbt_ok_status(gb_trace_run(g.tr));
    gbt_ok_status(gb_trace_generate(g.gen, NEW_TOKENS));
    gb_tensor *want_logits = gb_value(g.logits), *want_scaled = gb_value(g.scaled), *want_grad = gb_value(g.grad);
    gb_tensor *want_step2 = gb_value(g.step2), *want_ids = gb_trace_generated(g.gen);
    gbt_ok(want_logits), gbt_ok(want_grad), gbt_ok(want_step2), gbt_ok(want_ids);
    /* the edit at step 2 chose token 7 */
    ck_assert_int_eq(((const int64_t *)gb_tensor_data(want_ids))[6 + 2], 7);

    job jobs[NTHREADS];
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        gbt_ok(m[t] = gb_model_open(dir, NULL));
        jobs[t] = (job){gb_exec_new(g.tr, gb_model_module(m[t])), gb_exec_new(g.gen, gb_model_module(m[t])), 0, 0, ""};
        gbt_ok(jobs[t].run), gbt_ok(jobs[t].gen);
    }
    for (int t = 0; t < NTHREADS; t++) ck_assert_int_eq(pthread_create(&th[t], NULL, run_job, &jobs[t]), 0);
    for (int t = 0; t < NTHREADS; t++) ck_assert_int_eq(pthread_join(th[t], NULL), 0);

    for (int t = 0; t < NTHREADS; t++) {
        job *j = &jobs[t];
        ck_assert_msg(j->st_run == GB_OK && j->st_gen == GB_OK, "thread %d: %s", t, j->error);
        gbt_assert_close(gb_exec_value(j->run, g.logits), want_logits, 0, 0, "logits");
        gbt_assert_close(gb_exec_value(j->run, g.scaled), want_scaled, 0, 0, "sum of squares");
        gbt_assert_close(gb_exec_value(j->run, g.grad), want_grad, 0, 0, "gradient");
        gbt_assert_close(gb_exec_value(j->gen, g.step2), want_step2, 0, 0, "step 2's logits");
        gbt_assert_close(gb_exec_generated(j->gen), want_ids, 0, 0, "generated ids");
        gb_exec_free(j->run), gb_exec_free(j->gen);
        gb_model_free(m[t]);
    }
    /* the trace's own state is untouched by the executions */
    ck_assert_ptr_eq(gb_value(g.logits), want_logits);
    gb_trace_free(g.gen), gb_trace_free(g.tr);
    gb_tensor_free(ids);
    gb_model_free(m0);
}
END_TEST

/* ---- one graph, several states ---------------------------------------------- */

/* Two executions of one graph on different inputs keep their own values;
 * the trace's own execution is a third. */
START_TEST(test_executions_keep_their_own_values) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *zeros = gb_zeros(2, (int64_t[]){1, 5}, GB_DTYPE_F32);
    gb_tensor *bias = gbt_get(o, "layer1.bias"), *bias2 = gb_reshape(bias, 2, (int64_t[]){1, 10});
    gb_trace *tr = gb_trace_new(net, x);
    gb_val *l1 = gb_save(gb_output(tr, "layer1"));
    gb_exec *a = gb_exec_new(tr, NULL), *b = gb_exec_new(tr, NULL);
    gbt_ok(a), gbt_ok(b);
    gbt_ok_status(gb_exec_run(a, NULL)); /* the trace's input */
    gbt_ok_status(gb_exec_run(b, zeros));
    gb_tensor *want = gbt_get(o, "l1");
    gbt_assert_close(gb_exec_value(a, l1), want, 1e-5, 1e-6, "layer1(x)");
    gbt_assert_close(gb_exec_value(b, l1), bias2, 0, 0, "layer1(0) = layer1.bias");
    gbt_fails_with(gb_value(l1) == NULL, GB_ERR_STATE, "was never produced"); /* the trace's own never ran */
    /* Running a again leaves b's value alone. */
    gbt_ok_status(gb_exec_run(a, zeros));
    gbt_assert_close(gb_exec_value(a, l1), bias2, 0, 0, "a, run again on 0");
    gbt_assert_close(gb_exec_value(b, l1), bias2, 0, 0, "b unchanged");
    gbt_ok_status(gb_exec_run(a, x));
    gbt_assert_close(gb_exec_value(a, l1), want, 1e-5, 1e-6, "a, run again on x");
    gbt_assert_close(gb_exec_value(b, l1), bias2, 0, 0, "b still unchanged");
    gb_exec_free(b), gb_exec_free(a);
    gb_trace_free(tr);
    gb_tensor_free(want), gb_tensor_free(bias2), gb_tensor_free(bias), gb_tensor_free(zeros), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* Validate once (a scan of the trace's own execution), then run many
 * executions: they do not scan, and their runs do not touch the scan's
 * state. A graph that fails validation is refused before any run. */
START_TEST(test_validate_once_run_many) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *want = gbt_get(o, "set_index.out");
    gb_trace *tr = gb_trace_new(net, x);
    gb_set_index(gb_output(tr, "layer1"), "[:, 0:3]", gb_scalar(tr, -1));
    gb_val *out = gb_save(gb_output(tr, "layer2"));
    gbt_ok_status(gb_trace_scan(tr));
    for (int k = 0; k < 3; k++) {
        gb_exec *ex = gb_exec_new(tr, NULL);
        gbt_ok(ex);
        gbt_ok_status(gb_exec_run(ex, NULL));
        gbt_assert_close(gb_exec_value(ex, out), want, 1e-5, 1e-6, "set_index.out");
        gb_exec_free(ex);
    }
    int nd;
    int64_t shape[GB_MAX_DIMS];
    gbt_ok_status(gb_val_shape(out, &nd, shape));
    ck_assert(nd == 2 && shape[0] == 1 && shape[1] == 2);
    gbt_fails_with(gb_value(out) == NULL, GB_ERR_STATE, "comes from a scan");
    gb_trace_free(tr);

    tr = gb_trace_new(net, x);
    gb_set_index(gb_output(tr, "layer1"), "[:, 10]", gb_scalar(tr, 0));
    gbt_fails_with(gb_trace_scan(tr) != GB_OK, GB_ERR_INDEX, "index 10 is out of bounds for dimension 1 with size 10");
    gb_trace_free(tr);
    gb_tensor_free(want), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* An execution runs the trace's edits with its own copy of their state. */
START_TEST(test_execution_with_edits) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    gb_trace *editor = gb_trace_new(net, NULL);
    gb_val *doubled = gb_save(gb_val_mul(gb_output(editor, "layer1"), gb_scalar(editor, 2)));
    gb_set(gb_output(editor, "layer1"), doubled);
    gb_trace *tr = gb_trace_new(net, x);
    gbt_ok_status(gb_trace_use_edits(tr, editor));
    gb_val *out = gb_save(gb_output(tr, "layer2"));
    gb_exec *ex = gb_exec_new(tr, NULL);
    gbt_ok(ex);
    gbt_ok_status(gb_exec_run(ex, NULL));
    gb_tensor *want = gbt_get(o, "set.out");
    gbt_assert_close(gb_exec_value(ex, out), want, 1e-5, 1e-6, "set.out");
    gbt_ok(gb_exec_value(ex, doubled)); /* the editor's saved value, in this execution */
    gbt_fails_with(gb_value(doubled) == NULL, GB_ERR_STATE, "was never produced"); /* not in the editor's own */
    /* Edits changed after the execution was made: it refuses to run. */
    gbt_ok_status(gb_trace_use_edits(tr, NULL));
    gbt_fails_with(gb_exec_run(ex, NULL) != GB_OK, GB_ERR_STATE, "edits changed after this execution was made");
    gb_exec_free(ex);
    gb_trace_free(tr), gb_trace_free(editor);
    gb_tensor_free(want), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_execution_errors) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    gb_module *other = gb_sequential(1, (const char *[]){"layer1"}, (gb_module *[]){gb_nn_linear(5, 10, true)});
    gb_trace *tr = gb_trace_new(net, x);
    gb_val *l2 = gb_save(gb_output(tr, "layer2"));
    gbt_fails_with(gb_exec_new(tr, other) == NULL, GB_ERR_NOT_FOUND, "exec_new: the model has no module layer2");

    gb_exec *ex = gb_exec_new(tr, NULL);
    gbt_ok(ex);
    gbt_fails_with(gb_exec_pass(ex, x, NULL, NULL, NULL) != GB_OK, GB_ERR_STATE, "exec_pass: no run is under way");
    gbt_fails_with(gb_exec_end(ex) != GB_OK, GB_ERR_STATE, "exec_end: no run is under way");
    gbt_ok_status(gb_exec_begin(ex, NULL, false));
    gbt_fails_with(gb_exec_begin(ex, NULL, false) != GB_OK, GB_ERR_STATE, "exec_begin: a run is under way");
    gbt_fails_with(gb_exec_pass(ex, NULL, NULL, NULL, NULL) != GB_OK, GB_ERR_ARG, "exec_pass: no input ids");
    gbt_ok_status(gb_exec_end(ex));
    gbt_fails_with(gb_exec_generate(ex, NULL, 0) != GB_OK, GB_ERR_ARG, "max_new_tokens must be >= 1, got 0");

    /* A node of another trace, and a graph grown after the execution was made. */
    gb_trace *elsewhere = gb_trace_new(net, x);
    gb_val *foreign = gb_save(gb_output(elsewhere, "layer1"));
    gbt_fails_with(gb_exec_value(ex, foreign) == NULL, GB_ERR_ARG, "is a node of another trace");
    gb_save(gb_output(tr, "layer1"));
    gbt_fails_with(gb_exec_run(ex, NULL) != GB_OK, GB_ERR_STATE, "make a new execution after defining more");
    gb_exec_free(ex);
    gbt_ok(ex = gb_exec_new(tr, NULL));
    gbt_ok_status(gb_exec_run(ex, NULL));
    gbt_ok(gb_exec_value(ex, l2));
    gb_exec_free(ex);
    gb_trace_free(elsewhere);

    /* Invokes are the input of their trace. */
    gb_trace *inv = gb_trace_new(net, NULL);
    gbt_ok_status(gb_invoke(inv, x));
    gb_save(gb_output(inv, "layer1"));
    gb_invoke_end(inv);
    gbt_ok(ex = gb_exec_new(inv, NULL));
    gbt_fails_with(gb_exec_run(ex, x) != GB_OK, GB_ERR_ARG, "batches its invokes; it takes no other input");
    gbt_ok_status(gb_exec_run(ex, NULL));
    gb_exec_free(ex);
    gb_trace_free(inv);

    /* Invokes added after the execution was made (no node changed). */
    gb_trace *late = gb_trace_new(net, NULL);
    gb_save(gb_output(late, "layer1"));
    gbt_ok(ex = gb_exec_new(late, NULL));
    gbt_ok_status(gb_invoke(late, x));
    gb_invoke_end(late);
    gbt_fails_with(gb_exec_run(ex, NULL) != GB_OK, GB_ERR_STATE, "invokes changed after this execution was made");
    gb_exec_free(ex);
    gb_trace_free(late);

    /* No input anywhere. */
    gb_trace *bare = gb_trace_new(net, NULL);
    gb_save(gb_output(bare, "layer1"));
    gbt_ok(ex = gb_exec_new(bare, NULL));
    gbt_fails_with(gb_exec_run(ex, NULL) != GB_OK, GB_ERR_ARG, "no input");
    gb_exec_free(ex);
    gb_exec_free(gb_trace_exec(bare)); /* the trace's own is not freed this way */
    gb_trace_free(bare);

    gb_trace_free(tr);
    gb_module_free(other);
    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* ---- stepping ------------------------------------------------------------ */

/* The prompt pass and one pass of one token: PyTorch's first two greedy tokens. */
START_TEST(test_stepping_passes) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_stepping_passes");
    if (!o) return;
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    gb_tensor *prompt = gbt_get(o, "ids.eiffel"), *greedy = gbt_get(o, "greedy.eiffel");
    gb_tensor *tok = gb_from_data(gb_tensor_data(greedy), 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), prompt);
    gb_val *first = gb_save(gb_val_argmax(gb_val_index(gb_output(tr, "lm_head"), "[0, -1]"), -1, false));
    gb_val *second = gb_save(gb_val_argmax(gb_val_index(gb_output_call(tr, "lm_head", 1), "[0, -1]"), -1, false));
    gb_exec *ex = gb_trace_exec(tr); /* the trace's own: gb_value reads it */
    gbt_ok_status(gb_exec_begin(ex, NULL, true));
    gb_tensor *ids;
    gb_exec_batch(ex, &ids, NULL, NULL);
    ck_assert_ptr_eq(ids, prompt);
    gb_values out = {0};
    gbt_ok_status(gb_exec_pass(ex, ids, NULL, NULL, &out));
    ck_assert_int_eq(out.n > 0 ? gb_tensor_dim(out.v[0], 1) : -1, gb_tensor_dim(prompt, 1)); /* the prompt's logits */
    gb_values_clear(&out);
    gbt_ok_status(gb_exec_pass(ex, tok, NULL, NULL, NULL)); /* call 1, the cache holding the prompt */
    gbt_ok_status(gb_exec_end(ex));
    double got;
    gbt_ok_status(gb_item(gb_value(first), &got));
    ck_assert_int_eq((int64_t)got, gbt_i64(greedy, 0));
    gbt_ok_status(gb_item(gb_value(second), &got));
    ck_assert_int_eq((int64_t)got, gbt_i64(greedy, 1));
    gb_trace_free(tr);

    /* A stop ends the run: later passes do not run, and the end is not an error. */
    tr = gb_trace_new(gb_model_module(m), prompt);
    gb_stop(gb_output(tr, "transformer.h.0"));
    gb_val *after = gb_save(gb_output(tr, "lm_head"));
    ex = gb_exec_new(tr, NULL);
    gbt_ok(ex);
    gbt_ok_status(gb_exec_begin(ex, NULL, true));
    ck_assert_int_eq(gb_exec_pass(ex, prompt, NULL, NULL, NULL), GB_STOPPED);
    ck_assert_int_eq(gb_exec_pass(ex, tok, NULL, NULL, NULL), GB_STOPPED);
    gbt_ok_status(gb_exec_end(ex));
    gbt_fails_with(gb_exec_value(ex, after) == NULL, GB_ERR_STATE, "was never produced");
    gb_exec_free(ex);
    gb_trace_free(tr);
    gb_tensor_free(tok), gb_tensor_free(greedy), gb_tensor_free(prompt);
    gb_model_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* ---- cancellation inside a pass ------------------------------------------- */

typedef struct {
    bool raised;   /* the flag gb_exec_set_cancel's function reads */
    int asked;
    bool ran[4];   /* which blocks' interventions ran */
} cancel_state;

typedef struct {
    cancel_state *s;
    int block;
} cancel_site;

/* An intervention at block `block`'s output: notes it ran; block 1 raises the flag. */
static gb_tensor *note_block(gb_tensor *const *args, int nargs, void *ctx) {
    (void)nargs;
    cancel_site *c = ctx;
    c->s->ran[c->block] = true;
    if (c->block == 1) c->s->raised = true;
    return gb_tensor_ref(args[0]);
}

static bool asked_to_cancel(void *ctx) {
    cancel_state *s = ctx;
    s->asked++;
    return s->raised;
}

/* A flag raised inside the pass, at transformer.h.1's output, stops the
 * pass right there: block 1's interventions ran, blocks 2 and 3 never did,
 * the logits were never produced, and the error names the module. The
 * execution then runs again; asking changes no value, and with no function
 * nothing is asked. */
START_TEST(test_cancel_inside_a_pass) {
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    gb_tensor *ids = gb_from_data((int64_t[]){464, 412, 733}, 2, (int64_t[]){1, 3}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), ids);
    cancel_state s = {0};
    cancel_site sites[4];
    for (int b = 0; b < 4; b++) {
        char path[32];
        snprintf(path, sizeof path, "transformer.h.%d", b);
        sites[b] = (cancel_site){&s, b};
        gb_val *h = gb_val_index(gb_output(tr, path), "[0]");
        gb_save(gb_apply(tr, note_block, &sites[b], 1, &h));
    }
    gb_val *logits = gb_save(gb_output(tr, "lm_head"));
    gb_exec *ex = gb_trace_exec(tr);
    gb_exec_set_cancel(ex, asked_to_cancel, &s);
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_STATE, "exec: cancelled after transformer.h.1 (call 0)");
    ck_assert(s.ran[0] && s.ran[1] && !s.ran[2] && !s.ran[3]);
    ck_assert_int_gt(s.asked, 0);
    gbt_fails_with(gb_value(logits) == NULL, GB_ERR_STATE, "was never produced");

    /* lowered again (block 1 raises it once more: this time nobody asks) */
    gb_exec_set_cancel(ex, NULL, NULL);
    memset(s.ran, 0, sizeof s.ran);
    int asked = s.asked;
    gbt_ok_status(gb_trace_run(tr));
    ck_assert(s.ran[0] && s.ran[1] && s.ran[2] && s.ran[3]);
    ck_assert_int_eq(s.asked, asked);
    gb_tensor *plain = gb_contiguous(gb_value(logits));
    gbt_ok(plain);
    /* asked at every module and never cancelling: the same logits, bitwise */
    cancel_state never = {0};
    sites[1].s = &never; /* block 1 raises a flag nobody reads */
    gb_exec_set_cancel(ex, asked_to_cancel, &s);
    s.raised = false;
    gbt_ok_status(gb_trace_run(tr));
    ck_assert_int_gt(s.asked, asked);
    gb_tensor *asked_run = gb_contiguous(gb_value(logits));
    gbt_ok(asked_run);
    ck_assert(!memcmp(gb_tensor_data(plain), gb_tensor_data(asked_run), (size_t)gb_tensor_numel(plain) * sizeof(float)));
    gb_tensor_free(plain), gb_tensor_free(asked_run);
    gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_model_free(m);
}
END_TEST

Suite *gb_suite_exec(void) {
    Suite *s = suite_create("exec");
    TCase *tc = tcase_create("exec");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_threads_run_one_graph, 0, 2);
    tcase_add_test(tc, test_executions_keep_their_own_values);
    tcase_add_test(tc, test_validate_once_run_many);
    tcase_add_test(tc, test_execution_with_edits);
    tcase_add_test(tc, test_execution_errors);
    tcase_add_test(tc, test_stepping_passes);
    tcase_add_test(tc, test_cancel_inside_a_pass);
    suite_add_tcase(s, tc);
    return s;
}
