/* The tracing layer's semantics, one rule per test: getters (output, input,
 * call index), tuples and "[i]" picking, set vs set_index, later getters
 * seeing a set, unsaved and never-produced values, stop, skip, values used
 * before they can exist, definition-time errors, scan and validate,
 * gradients with edits, conditions, log and graph text, repeated runs.
 *
 * Numbers on the walkthrough's tiny network come from PyTorch
 * (tests/oracle/trace.py: forward hooks and tensor hooks, no nnsight).
 * Test-local modules (Twice, AddOne, Pair, Copy) compute exact values whose
 * derivation is written beside each check. */
#include <stdlib.h>

#include <stb/stb_ds.h>

#include "gbtest.h"
#include "nn/nn_impl.h"
#include "tensor/tensor_impl.h" /* tensor layout: what the test inspects */

/* ---- fixtures ----------------------------------------------------------- */

typedef struct {
    gbt_oracle *o;
    gb_module *net;
    gb_tensor *x;
} tiny;

static tiny tiny_open(void) {
    tiny t;
    t.o = gbt_oracle_load("trace");
    t.net = gbt_tiny_net(t.o);
    t.x = gbt_get(t.o, "input");
    return t;
}

static void tiny_close(tiny *t) {
    gb_tensor_free(t->x);
    gb_module_free(t->net);
    gbt_oracle_free(t->o);
}

/* v's saved value against the oracle's key. */
#define expect_value(v, o, key) expect_value_at((v), (o), (key), __LINE__)
static void expect_value_at(const gb_val *v, gbt_oracle *o, const char *key, int line) {
    gb_tensor *got = gb_value(v);
    ck_assert_msg(got != NULL, "line %d: %s: %s", line, key, gb_last_error());
    gb_tensor *want = gbt_get(o, key);
    gbt_assert_close_at(got, want, 1e-5, 1e-6, key, __FILE__, line);
    gb_tensor_free(want);
}

/* The exact value list of a small f32 tensor. */
#define expect_floats(t, n, ...) expect_floats_at((t), (n), (const float[]){__VA_ARGS__}, __LINE__)
static void expect_floats_at(gb_tensor *t, int n, const float *want, int line) {
    ck_assert_msg(t != NULL, "line %d: %s", line, gb_last_error());
    ck_assert_msg(gb_tensor_numel(t) == n, "line %d: %lld elements, expected %d", line,
                  (long long)gb_tensor_numel(t), n);
    gb_tensor *c = gb_contiguous(t);
    const float *p = gb_tensor_f32(c);
    for (int i = 0; i < n; i++) ck_assert_msg(p[i] == want[i], "line %d: [%d] = %g, expected %g", line, i, p[i], want[i]);
    gb_tensor_free(c);
}

/* The run fails with status and a message that starts with this file's
 * line `line` and contains needle. */
static void expect_run_fails_at(gb_status got, gb_status status, int line, const char *needle) {
    char site[128];
    snprintf(site, sizeof site, "%s:%d: ", __FILE__, line);
    ck_assert_msg(got == status, "run returned %s, expected %s (%s)", gb_status_name(got), gb_status_name(status),
                  gb_last_error());
    ck_assert_msg(gb_last_status() == status, "last status %s", gb_status_name(gb_last_status()));
    ck_assert_msg(!strncmp(gb_last_error(), site, strlen(site)), "message '%s' does not start with '%s'",
                  gb_last_error(), site);
    ck_assert_msg(strstr(gb_last_error(), needle) != NULL, "message '%s' does not contain '%s'", gb_last_error(),
                  needle);
}

/* What a log file holds (caller frees). */
static char *file_text(FILE *f) {
    fflush(f);
    long n = ftell(f);
    char *s = calloc(1, (size_t)n + 1);
    rewind(f);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

/* An apply function that counts its calls and returns a copy of its first argument. */
static gb_tensor *counting_copy(gb_tensor *const *args, int nargs, void *ctx) {
    (void)nargs;
    (*(int *)ctx)++;
    return gb_clone(args[0]);
}

/* Test-local modules. AddOne: y = x + 1. Twice: calls its child "f" twice,
 * y = f(f(x)). Pair: returns the tuple (2x, 3x), as Hugging Face blocks
 * return tuples. Copy: y = x (a copy of the first input). */
static gb_status add_one_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)m, (void)run;
    gb_tensor *y = gb_add_scalar(in->v[0], 1.0f);
    return y ? gb_values_push(out, y) : gb_last_status();
}
static const gb__nn_module_type add_one_type = {.name = "AddOne", .forward = add_one_forward};

static gb_status twice_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    gb_values mid;
    gb_status st = gb_module_call(gb_module_child(m, 0), run, in, &mid);
    if (st == GB_OK) st = gb_module_call(gb_module_child(m, 0), run, &mid, out);
    gb_values_clear(&mid);
    return st;
}
static const gb__nn_module_type twice_type = {.name = "Twice", .forward = twice_forward};

static gb_status pair_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)m, (void)run;
    gb_status st = gb_values_push(out, gb_mul_scalar(in->v[0], 2.0f));
    return st == GB_OK ? gb_values_push(out, gb_mul_scalar(in->v[0], 3.0f)) : st;
}
static const gb__nn_module_type pair_type = {.name = "Pair", .forward = pair_forward, .returns_tuple = true};

static gb_status copy_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)m, (void)run;
    gb_tensor *y = gb_clone(in->v[0]);
    return y ? gb_values_push(out, y) : gb_last_status();
}
static const gb__nn_module_type copy_type = {.name = "Copy", .forward = copy_forward};

static gb_module *twice_net(void) {
    gb_module *m = gb__nn_module_new(&twice_type);
    gbt_ok_status(gb__nn_module_add_child(m, "f", gb__nn_module_new(&add_one_type)));
    return m;
}

/* Sequential(pair: Pair, after: Copy) */
static gb_module *pair_net(void) {
    return gb_sequential(2, (const char *[]){"pair", "after"},
                         (gb_module *[]){gb__nn_module_new(&pair_type), gb__nn_module_new(&copy_type)});
}

/* ---- getters ------------------------------------------------------------ */

START_TEST(test_getters) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_save(gb_output(tr, "layer1"));
    gb_val *l2_in = gb_save(gb_input(tr, "layer2"));
    gb_val *out = gb_save(gb_output(tr, ""));
    gb_val *in = gb_save(gb_input(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(l1, t.o, "l1");
    expect_value(l2_in, t.o, "l1"); /* layer2's input is layer1's output */
    expect_value(out, t.o, "out");
    expect_value(in, t.o, "input");
    ck_assert_ptr_eq(gb_value(l1), gb_value(l1)); /* borrowed from the trace */
    ck_assert_str_eq(gb_val_text(l1), "layer1.output");
    ck_assert_str_eq(gb_val_text(l2_in), "layer2.input");
    ck_assert_str_eq(gb_val_text(out), "model.output");
    /* A value kept past the trace: take a reference. */
    gb_tensor *kept = gb_tensor_ref(gb_value(out));
    gb_trace_free(tr);
    gb_tensor *want = gbt_get(t.o, "out");
    gbt_assert_close(kept, want, 1e-5, 1e-6, "output kept after gb_trace_free");
    gb_tensor_free(want);
    gb_tensor_free(kept);
    tiny_close(&t);
}
END_TEST

/* Twice calls f twice: f's call 0 maps x to x + 1, call 1 maps x + 1 to x + 2. */
START_TEST(test_call_index) {
    gb_module *net = twice_net();
    gb_tensor *x = gb_arange(0, 3, 1); /* [0, 1, 2] */
    gb_trace *tr = gb_trace_new(net, x);
    gb_val *first = gb_save(gb_output(tr, "f"));
    gb_val *second = gb_save(gb_output_call(tr, "f", 1));
    gb_val *second_in = gb_save(gb_getter_at(tr, "f", 1, 1, __FILE__, __LINE__));
    gb_val *third = gb_save(gb_output_call(tr, "f", 2)); /* f runs twice only */
    gb_val *out = gb_save(gb_output(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_floats(gb_value(first), 3, 1, 2, 3);
    expect_floats(gb_value(second), 3, 2, 3, 4);
    expect_floats(gb_value(second_in), 3, 1, 2, 3);
    expect_floats(gb_value(out), 3, 2, 3, 4);
    gbt_fails_with(gb_value(third) == NULL, GB_ERR_STATE, "f.output[call 2] was never produced");
    ck_assert_str_eq(gb_val_text(second), "f.output[call 1]");
    gb_trace_free(tr);

    /* A negative call index (other than GB_CALL_ALL, -1) is a definition error, at its line. */
    tr = gb_trace_new(net, x);
    gb_save(gb_output_call(tr, "f", -2)); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_INDEX, line, "call index -2 is negative");
    gb_trace_free(tr);
    gb_tensor_free(x);
    gb_module_free(net);
}
END_TEST

/* Pair returns (2x, 3x) on x = [0, 1, 2]: ([0, 2, 4], [0, 3, 6]). */
START_TEST(test_tuple_outputs) {
    gb_module *net = pair_net();
    gb_tensor *x = gb_arange(0, 3, 1);
    gb_trace *tr = gb_trace_new(net, x);
    gb_val *pair = gb_save(gb_output(tr, "pair"));
    gb_val *first = gb_save(gb_val_index(pair, "[0]"));
    gb_val *last = gb_save(gb_val_index(pair, "[-1]"));
    /* Replace element 0 with 10 * element 1: Copy then copies [0, 30, 60]. */
    gb_set(gb_val_index(gb_output(tr, "pair"), "[0]"), gb_val_mul(last, gb_scalar(tr, 10)));
    gb_val *pair_after = gb_save(gb_output(tr, "pair"));
    gb_val *after = gb_save(gb_output(tr, "after"));
    gbt_ok_status(gb_trace_run(tr));
    expect_floats(gb_value(pair), 3, 0, 2, 4); /* a tuple's gb_value is its element 0 */
    expect_floats(gb_value_at(pair, 1), 3, 0, 3, 6);
    gbt_fails_with(gb_value_at(pair, 2) == NULL, GB_ERR_INDEX, "pair.output has 2 elements, no element 2");
    expect_floats(gb_value(first), 3, 0, 2, 4);
    expect_floats(gb_value(last), 3, 0, 3, 6);
    expect_floats(gb_value(pair_after), 3, 0, 30, 60);
    expect_floats(gb_value_at(pair_after, 1), 3, 0, 3, 6);
    expect_floats(gb_value(after), 3, 0, 30, 60);
    ck_assert_str_eq(gb_val_text(last), "pair.output[-1]");
    gb_trace_free(tr);

    /* A tensor index on a tuple, an element past its end, a set of the whole tuple. */
    tr = gb_trace_new(net, x);
    gb_val_index(gb_output(tr, "pair"), "[:, 0]"); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_ARG, line, "pair.output is a tuple; pick an element");
    gb_trace_free(tr);
    tr = gb_trace_new(net, x);
    gb_val_index(gb_output(tr, "pair"), "[2]"); line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_INDEX, line, "tuple index 2 out of range for a tuple of 2");
    gb_trace_free(tr);
    tr = gb_trace_new(net, x);
    gb_val_sum_all(gb_output(tr, "pair")); line = __LINE__; /* nnsight raises too: a tuple has no sum */
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_ARG, line, "sum_all: pair.output is a tuple; pick an element first");
    gb_trace_free(tr);
    tr = gb_trace_new(net, x);
    gb_set(gb_output(tr, "pair"), gb_scalar(tr, 1)); line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_ARG, line, "set: pair.output is a tuple; set one of its elements");
    gb_trace_free(tr);
    gb_tensor_free(x);
    gb_module_free(net);
}
END_TEST

/* ---- setting ------------------------------------------------------------ */

/* gb_set replaces the value: getters defined before keep the old tensor,
 * the target and getters defined after see the new one, and so does the
 * rest of the model. */
START_TEST(test_set_replaces) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *old = gb_save(gb_output(tr, "layer1"));
    gb_val *target = gb_save(gb_output(tr, "layer1"));
    gb_set(target, gb_val_mul(target, gb_scalar(tr, 2)));
    gb_val *later = gb_save(gb_output(tr, "layer1"));
    gb_val *l2_in = gb_save(gb_input(tr, "layer2"));
    gb_val *out = gb_save(gb_output(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(old, t.o, "l1");
    gb_tensor *l1 = gbt_get(t.o, "l1"), *twice = gb_mul_scalar(l1, 2);
    gbt_assert_close(gb_value(target), twice, 1e-6, 0, "the set target");
    gbt_assert_close(gb_value(later), twice, 1e-6, 0, "a getter defined after the set");
    gbt_assert_close(gb_value(l2_in), twice, 1e-6, 0, "layer2's input");
    expect_value(out, t.o, "set.out");
    gb_tensor_free(twice);
    gb_tensor_free(l1);
    gb_trace_free(tr);

    /* Replacing an input: layer2 runs on ones. */
    tr = gb_trace_new(t.net, t.x);
    gb_tensor *ones = gb_ones(2, (int64_t[]){1, 10}, GB_DTYPE_F32);
    gb_set(gb_input(tr, "layer2"), gb_const(tr, ones));
    gb_tensor_free(ones);
    out = gb_save(gb_output(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(out, t.o, "input_set.out");
    gb_trace_free(tr);

    /* gb_set needs a module value to replace; an operation's result is not one. */
    tr = gb_trace_new(t.net, t.x);
    gb_set(gb_val_sum_all(gb_output(tr, "layer1")), gb_scalar(tr, 0)); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_ARG, line, "is not a module input, output, tuple element or gradient");
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* gb_set_index edits in place: every getter of the point holds the same
 * tensor and shows the edit, a clone taken before does not. */
START_TEST(test_set_index_in_place) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *before = gb_save(gb_output(tr, "layer1"));
    gb_val *clone = gb_save(gb_val_clone(gb_output(tr, "layer1")));
    gb_set_index(gb_output(tr, "layer1"), "[:, 0:3]", gb_scalar(tr, -1));
    gb_val *after = gb_save(gb_output(tr, "layer1"));
    gb_val *out = gb_save(gb_output(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(clone, t.o, "l1");
    expect_value(before, t.o, "set_index.l1");
    expect_value(after, t.o, "set_index.l1");
    expect_value(out, t.o, "set_index.out");
    gb_trace_free(tr);

    /* An index past the end fails during the run, naming the line and the edit. */
    tr = gb_trace_new(t.net, t.x);
    gb_set_index(gb_output(tr, "layer1"), "[:, 10]", gb_scalar(tr, 0)); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_INDEX, line,
                        "index 10 is out of bounds for dimension 1 with size 10");
    ck_assert_msg(strstr(gb_last_error(), "(layer1.output[:, 10] = 0)") != NULL, "%s", gb_last_error());
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* ---- reading values ----------------------------------------------------- */

START_TEST(test_unsaved_value) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_val *sum = gb_save(gb_val_sum_all(l1));
    gbt_ok_status(gb_trace_run(tr));
    gbt_fails_with(gb_value(l1) == NULL, GB_ERR_STATE,
                   "value: layer1.output was not saved; call gb_save on it inside the trace");
    gb_tensor *l1_want = gbt_get(t.o, "l1"), *want = gb_sum_all(l1_want);
    gbt_assert_close(gb_value(sum), want, 1e-5, 1e-6, "saved sum of an unsaved getter");
    gb_tensor_free(want);
    gb_tensor_free(l1_want);
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* ---- stop and skip ------------------------------------------------------ */

START_TEST(test_stop) {
    tiny t = tiny_open();
    FILE *log = tmpfile();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_trace_set_log(tr, log);
    gb_val *l2 = gb_save(gb_output(tr, "layer2")); /* defined first, still never produced */
    gb_val *l1 = gb_save(gb_output(tr, "layer1"));
    gb_trace_log("layer2:", gb_output(tr, "layer2"));
    gb_stop(gb_output(tr, "layer1"));
    gbt_ok_status(gb_trace_run(tr)); /* stopping is not an error */
    expect_value(l1, t.o, "l1");
    gbt_fails_with(gb_value(l2) == NULL, GB_ERR_STATE, "value: layer2.output was never produced");
    char *text = file_text(log);
    ck_assert_str_eq(text, "");
    free(text);
    gb_trace_free(tr);

    /* Stopping at an input event: the module itself does not run. */
    tr = gb_trace_new(t.net, t.x);
    gb_val *l1_in = gb_save(gb_input(tr, "layer1"));
    l1 = gb_save(gb_output(tr, "layer1"));
    gb_stop(gb_input(tr, "layer1"));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(l1_in, t.o, "input");
    gbt_fails_with(gb_value(l1) == NULL, GB_ERR_STATE, "value: layer1.output was never produced");
    gb_trace_free(tr);
    fclose(log);
    tiny_close(&t);
}
END_TEST

START_TEST(test_skip) {
    tiny t = tiny_open();
    gb_tensor *half = gb_full(2, (int64_t[]){1, 10}, 0.5f, GB_DTYPE_F32);
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_skip(tr, "layer1", gb_const(tr, half));
    gb_val *l1_in = gb_save(gb_input(tr, "layer1"));
    gb_val *l1 = gb_save(gb_output(tr, "layer1"));
    gb_val *out = gb_save(gb_output(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(l1_in, t.o, "input");      /* the input event still happens */
    gbt_assert_close(gb_value(l1), half, 0, 0, "a skipped module's output is the value given");
    expect_value(out, t.o, "skip.out");
    gb_trace_free(tr);

    /* The replacement must exist when the module is reached. */
    tr = gb_trace_new(t.net, t.x);
    gb_skip(tr, "layer1", gb_output(tr, "layer2")); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_STATE, line,
                        "skip: the replacement value layer2.output does not exist yet when layer1 runs");
    gb_trace_free(tr);

    /* An unknown module to skip is a definition error. */
    tr = gb_trace_new(t.net, t.x);
    gb_skip(tr, "layer9", gb_const(tr, half)); line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_NOT_FOUND, line, "no submodule 'layer9'");
    gb_trace_free(tr);
    gb_tensor_free(half);
    tiny_close(&t);
}
END_TEST

/* A value computed from layer2 cannot replace layer1's output: layer1 has
 * already run when it exists. */
START_TEST(test_value_used_before_it_exists) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_set(l1, gb_val_mul(gb_output(tr, "layer2"), gb_scalar(tr, 2))); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_STATE, line,
                        "set: layer1.output was already computed when the value became available (value used "
                        "before it can exist)");
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* The same mistake through gb_set_index: the edit would land on layer1's
 * output tensor after layer2 consumed it, changing nothing, so it fails too. */
START_TEST(test_set_index_used_before_it_exists) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_set_index(gb_output(tr, "layer1"), "[:]", gb_val_sum_all(gb_output(tr, "layer2"))); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_STATE, line, "value used before it can exist");
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* ---- definition-time errors ------------------------------------------------ */

START_TEST(test_definition_errors) {
    tiny t = tiny_open();
    int calls = 0;
    FILE *log = tmpfile();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_trace_set_log(tr, log);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_trace_log("layer1:", l1);
    gb_apply(tr, counting_copy, &calls, 1, &l1);
    gb_val *bad = gb_output(tr, "layer3"); int line = __LINE__;
    ck_assert_ptr_nonnull(bad); /* usable handles, so the code that follows needs no checks */
    gb_val *derived = gb_save(gb_val_sum_all(bad));
    ck_assert_ptr_nonnull(derived);
    gb_val_index(l1, "[:, "); /* a second error: the first one is reported */
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_NOT_FOUND, line,
                        "module path 'layer3': '<root>' (Sequential) has no submodule 'layer3'; nearest: layer1, "
                        "layer2");
    expect_run_fails_at(gb_trace_scan(tr), GB_ERR_NOT_FOUND, line, "no submodule 'layer3'");
    ck_assert_int_eq(calls, 0); /* nothing ran */
    char *text = file_text(log);
    ck_assert_str_eq(text, "");
    free(text);
    gbt_fails_with(gb_value(derived) == NULL, GB_ERR_STATE, "never produced");
    gb_trace_free(tr);

    /* Index syntax. */
    tr = gb_trace_new(t.net, t.x);
    gb_val_index(gb_output(tr, "layer1"), "[:, "); line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_ARG, line, "unexpected end of text");
    gb_trace_free(tr);
    tr = gb_trace_new(t.net, t.x);
    gb_set_index(gb_output(tr, "layer1"), "[:, x]", gb_scalar(tr, 0)); line = __LINE__;
    ck_assert_int_ne(gb_trace_run(tr), GB_OK);
    expect_run_fails_at(gb_last_status(), GB_ERR_ARG, line, "[:, x]");
    gb_trace_free(tr);

    /* A path below a leaf. */
    tr = gb_trace_new(t.net, t.x);
    gb_input(tr, "layer2.foo"); line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_NOT_FOUND, line, "'layer2' (Linear) has no submodule 'foo'");
    gb_trace_free(tr);

    /* Too many apply arguments. */
    tr = gb_trace_new(t.net, t.x);
    gb_val *many[9];
    for (int i = 0; i < 9; i++) many[i] = gb_scalar(tr, (float)i);
    gb_apply(tr, counting_copy, &calls, 9, many); line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_ARG, line, "apply: needs a function and at most 8 arguments");
    gb_trace_free(tr);
    fclose(log);
    tiny_close(&t);
}
END_TEST

/* Values of two traces do not combine: NULL with an error, at once. */
START_TEST(test_values_of_two_traces) {
    tiny t = tiny_open();
    gb_trace *a = gb_trace_new(t.net, t.x), *b = gb_trace_new(t.net, t.x);
    gb_val *va = gb_output(a, "layer1"), *vb = gb_output(b, "layer1");
    gbt_fails_with(gb_val_add(va, vb) == NULL, GB_ERR_ARG, "values of two different traces cannot be combined");
    gbt_fails_with(gb_set(va, vb) == NULL, GB_ERR_ARG, "values of two different traces cannot be combined");
    gbt_fails_with(gb_set_index(va, "[:]", vb) == NULL, GB_ERR_ARG, "different traces");
    gb_trace_free(b);
    gb_trace_free(a);
    tiny_close(&t);
}
END_TEST

/* ---- scan and validate -------------------------------------------------- */

START_TEST(test_scan_shapes_without_running) {
    tiny t = tiny_open();
    int calls = 0, ndim;
    int64_t shape[GB_MAX_DIMS];
    FILE *log = tmpfile();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_trace_set_log(tr, log);
    gb_val *l1 = gb_output(tr, "layer1");
    gbt_fails_with(gb_val_shape(l1, &ndim, shape) != GB_OK, GB_ERR_STATE,
                   "val_shape: the shape of layer1.output is not known; run gb_trace_scan first");
    gb_requires_grad(l1);
    gb_val *amax = gb_val_argmax(l1, 1, false);
    gb_val *total = gb_val_sum_all(l1);
    gb_val *part = gb_val_index(l1, "[:, :3]");
    gb_val *grad = gb_grad(l1);
    gb_val *applied = gb_apply(tr, counting_copy, &calls, 1, &l1);
    gb_val *after_apply = gb_val_sum_all(applied);
    gb_trace_log("layer1:", l1);
    gb_val *out = gb_save(gb_output(tr, ""));
    gb_val_backward(gb_val_sum_all(out));
    gbt_ok_status(gb_trace_scan(tr));
    struct {
        gb_val *v;
        int ndim;
        int64_t shape[2];
    } want[] = {{l1, 2, {1, 10}}, {amax, 1, {1}}, {total, 0, {0}}, {part, 2, {1, 3}}, {grad, 2, {1, 10}},
                {out, 2, {1, 2}}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        gbt_ok_status(gb_val_shape(want[i].v, &ndim, shape));
        ck_assert_msg(ndim == want[i].ndim, "%s: ndim %d", gb_val_text(want[i].v), ndim);
        for (int d = 0; d < ndim; d++) ck_assert_int_eq(shape[d], want[i].shape[d]);
    }
    /* No arithmetic: the custom function never ran and the log printed
     * nothing; what depends on apply has no known shape. */
    ck_assert_int_eq(calls, 0);
    gbt_fails_with(gb_val_shape(applied, &ndim, shape) != GB_OK, GB_ERR_STATE, "is not known");
    gbt_fails_with(gb_val_shape(after_apply, &ndim, shape) != GB_OK, GB_ERR_STATE, "is not known");
    char *text = file_text(log);
    ck_assert_str_eq(text, "");
    free(text);

    /* The same trace then runs for real. */
    gbt_ok_status(gb_trace_run(tr));
    ck_assert_int_eq(calls, 1);
    expect_value(out, t.o, "out");
    gb_trace_free(tr);
    fclose(log);
    tiny_close(&t);
}
END_TEST

START_TEST(test_validate) {
    tiny t = tiny_open();
    int calls = 0;
    FILE *log = tmpfile();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_trace_set_log(tr, log);
    gb_trace_set_validate(tr, true);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_trace_log("layer1:", l1);
    gb_apply(tr, counting_copy, &calls, 1, &l1);
    gb_set_index(gb_output(tr, "layer1"), "[:, 10]", gb_scalar(tr, 0)); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_INDEX, line, "index 10 is out of bounds for dimension 1 with size 10");
    ck_assert_int_eq(calls, 0); /* refused before running */
    char *text = file_text(log);
    ck_assert_str_eq(text, "");
    free(text);
    gb_trace_free(tr);

    /* A trace that validates runs normally. */
    tr = gb_trace_new(t.net, t.x);
    gb_trace_set_validate(tr, true);
    gb_set_index(gb_output(tr, "layer1"), "[:, 0:3]", gb_scalar(tr, -1));
    gb_val *out = gb_save(gb_output(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(out, t.o, "set_index.out");
    gb_trace_free(tr);
    fclose(log);
    tiny_close(&t);
}
END_TEST

/* No gradient flows during a scan, yet a gradient edit is valid there: the
 * walkthrough's `layer2.output.grad = layer2.output.grad * 2` validates. */
START_TEST(test_validate_gradient_set) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_trace_set_validate(tr, true);
    gb_val *l2_grad = gb_grad(gb_output(tr, "layer2"));
    gb_requires_grad(gb_output(tr, "layer1"));
    gb_set(l2_grad, gb_val_mul(l2_grad, gb_scalar(tr, 2)));
    gb_val *saved = gb_save(gb_grad(gb_output(tr, "layer2")));
    gb_val_backward(gb_val_sum_all(gb_output(tr, "")));
    gbt_ok_status(gb_trace_run(tr));
    expect_floats(gb_value(saved), 2, 2, 2); /* d sum / d output = 1, doubled */
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* ---- gradients ---------------------------------------------------------- */

/* With the parameters requiring grad: double layer2's output gradient and
 * read layer1's; the parameters' gradients carry the edit. */
START_TEST(test_gradients_with_edits) {
    tiny t = tiny_open();
    gbt_ok_status(gb_module_requires_grad_(t.net, true));
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l2 = gb_output(tr, "layer2");
    gb_val *l2_grad = gb_grad(l2);
    gb_set(l2_grad, gb_val_mul(l2_grad, gb_scalar(tr, 2)));
    gb_val *l1_grad = gb_save(gb_grad(gb_output(tr, "layer1")));
    gb_val_backward(gb_val_sum_all(gb_output(tr, "")));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(l1_grad, t.o, "grad.l1");
    const char **names;
    gb_tensor **params;
    int n = gb_module_parameters(t.net, &names, &params);
    for (int i = 0; i < n; i++) {
        gb_tensor *want = gbt_getf(t.o, "grad.%s", names[i]);
        gbt_assert_close(gb_tensor_grad(params[i]), want, 1e-5, 1e-6, names[i]);
        gb_tensor_free(want);
        gb_zero_grad(params[i]);
    }
    free(names);
    free(params);
    gb_trace_free(tr);
    gbt_ok_status(gb_module_requires_grad_(t.net, false));

    /* Zeroing a gradient in place (grad[:] = 0). */
    tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_requires_grad(l1);
    gb_set_index(gb_grad(l1), "[:]", gb_scalar(tr, 0));
    l1_grad = gb_save(gb_grad(l1));
    gb_val_backward(gb_val_sum_all(gb_output(tr, "")));
    gbt_ok_status(gb_trace_run(tr));
    expect_floats(gb_value(l1_grad), 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

START_TEST(test_gradient_errors) {
    tiny t = tiny_open();
    /* Parameters are frozen and layer1's output was not marked. */
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *g = gb_save(gb_grad(gb_output(tr, "layer1"))); int line = __LINE__;
    gb_val_backward(gb_val_sum_all(gb_output(tr, "")));
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_AUTOGRAD, line,
                        "grad: layer1.output does not require grad; call gb_requires_grad on it first");
    gbt_fails_with(gb_value(g) == NULL, GB_ERR_STATE, "never produced");
    gb_trace_free(tr);

    /* backward needs one element. */
    tr = gb_trace_new(t.net, t.x);
    gb_requires_grad(gb_output(tr, "layer1"));
    gb_val_backward(gb_output(tr, "")); line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_AUTOGRAD, line, "only for scalar outputs");
    gb_trace_free(tr);

    /* Without a backward the gradient never comes. */
    tr = gb_trace_new(t.net, t.x);
    gb_requires_grad(gb_output(tr, "layer1"));
    g = gb_save(gb_grad(gb_output(tr, "layer1")));
    gbt_ok_status(gb_trace_run(tr));
    gbt_fails_with(gb_value(g) == NULL, GB_ERR_STATE, "layer1.output.grad was never produced");
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* The gradient hooks a trace puts on tensors leave with it: a tensor kept
 * past gb_trace_free (a reference to a saved value, as trace.h invites)
 * must not call into the freed trace in a later backward. Checked through
 * the tensor's hook list (an internal), then by that backward (under ASan,
 * a use after free if a hook remained). */
START_TEST(test_grad_hooks_leave_with_the_trace) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_save(gb_output(tr, "layer1"));
    gb_requires_grad(l1);
    gb_save(gb_grad(l1));
    gbt_ok_status(gb_trace_run(tr));
    gb_tensor *kept = gb_tensor_ref(gb_value(l1));
    gb_trace_free(tr);
    ck_assert_msg(arrlen(kept->hooks) == 0, "%d gradient hook(s) of the freed trace remain on layer1's output",
                  (int)arrlen(kept->hooks));
    gb_tensor *total = gb_sum_all(kept);
    gbt_ok_status(gb_backward(total, NULL, false));
    expect_floats(gb_tensor_grad(kept), 10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1); /* d sum / d x = 1 */
    gb_tensor_free(total);
    gb_tensor_free(kept);
    tiny_close(&t);
}
END_TEST

/* ---- conditions --------------------------------------------------------- */

START_TEST(test_conditions) {
    tiny t = tiny_open();
    int calls = 0;
    FILE *log = tmpfile();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_trace_set_log(tr, log);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_if(tr, gb_scalar(tr, 0));
    gb_trace_log("false", l1);
    gb_val *in_false = gb_save(gb_val_sum_all(l1));
    gb_apply(tr, counting_copy, &calls, 1, &l1); /* never called */
    gb_if(tr, gb_scalar(tr, 1));
    gb_trace_log("false>true", l1);
    gb_end_if(tr);
    gb_end_if(tr);
    gb_if(tr, gb_scalar(tr, 1));
    gb_if(tr, gb_scalar(tr, 0));
    gb_trace_log("true>false", l1);
    gb_end_if(tr);
    gb_if(tr, gb_scalar(tr, 2)); /* any nonzero value is true */
    gb_trace_log("true>true", gb_scalar(tr, 7));
    gb_end_if(tr);
    gb_end_if(tr);
    gb_val *after = gb_save(gb_val_sum_all(l1)); /* after gb_end_if: unconditional */
    /* On the model's own value: argmax of layer2's output, nonzero for class 1. */
    gb_if(tr, gb_val_argmax(gb_output(tr, "layer2"), 1, false));
    gb_trace_log("class 1", gb_scalar(tr, 1));
    gb_end_if(tr);
    gbt_ok_status(gb_trace_run(tr));
    gb_tensor *out = gbt_get(t.o, "out");
    double o0, o1;
    gb_tensor_get(out, (int64_t[]){0, 0}, &o0);
    gb_tensor_get(out, (int64_t[]){0, 1}, &o1);
    char *text = file_text(log);
    ck_assert_str_eq(text, o1 > o0 ? "true>true tensor(7.)\nclass 1 tensor(1.)\n" : "true>true tensor(7.)\n");
    free(text);
    ck_assert_int_eq(calls, 0);
    gbt_fails_with(gb_value(in_false) == NULL, GB_ERR_STATE, "was never produced");
    ck_assert_ptr_nonnull(gb_value(after));
    gb_tensor_free(out);
    gb_trace_free(tr);

    /* A condition has one element. */
    tr = gb_trace_new(t.net, t.x);
    gb_if(tr, gb_output(tr, "layer1")); int line = __LINE__;
    gb_end_if(tr);
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_SHAPE, line, "a tensor with 10 elements cannot be converted");
    gb_trace_free(tr);
    fclose(log);
    tiny_close(&t);
}
END_TEST

/* Getters and skips obey their condition too: under a false gb_if a saved
 * getter is never produced and gb_skip does not skip. */
START_TEST(test_false_condition_getters_and_skips) {
    tiny t = tiny_open();
    gb_tensor *half = gb_full(2, (int64_t[]){1, 10}, 0.5f, GB_DTYPE_F32);
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_if(tr, gb_scalar(tr, 0));
    gb_skip(tr, "layer1", gb_const(tr, half));
    gb_val *inside = gb_save(gb_output(tr, "layer2"));
    gb_end_if(tr);
    gb_val *out = gb_save(gb_output(tr, ""));
    gbt_ok_status(gb_trace_run(tr));
    expect_value(out, t.o, "out"); /* layer1 ran: the skip was under a false condition */
    ck_assert_msg(gb_value(inside) == NULL, "a getter under a false condition was produced");
    gb_trace_free(tr);

    /* A condition known only later (from layer2): a getter of layer1 under
     * it is produced only if the condition turns out true ... */
    gb_tensor *out_want = gbt_get(t.o, "out");
    double o0, o1;
    gb_tensor_get(out_want, (int64_t[]){0, 0}, &o0);
    gb_tensor_get(out_want, (int64_t[]){0, 1}, &o1);
    gb_tensor_free(out_want);
    for (int flip = 0; flip < 2; flip++) {
        tr = gb_trace_new(t.net, t.x);
        gb_val *l2 = gb_output(tr, "layer2");
        /* argmax of the output: 1 when class 1 wins; of its negation: 1 when class 0 wins */
        gb_if(tr, gb_val_argmax(flip ? gb_val_mul(l2, gb_scalar(tr, -1)) : l2, 1, false));
        inside = gb_save(gb_output(tr, "layer1"));
        gb_end_if(tr);
        gbt_ok_status(gb_trace_run(tr));
        bool taken = flip ? !(o1 > o0) : o1 > o0;
        if (taken) expect_value(inside, t.o, "l1");
        else gbt_fails_with(gb_value(inside) == NULL, GB_ERR_STATE, "never produced");
        gb_trace_free(tr);
    }

    /* ... but a skip cannot wait for it: the module runs before it is known. */
    tr = gb_trace_new(t.net, t.x);
    gb_if(tr, gb_val_argmax(gb_output(tr, "layer2"), 1, false));
    gb_skip(tr, "layer1", gb_const(tr, half)); int line = __LINE__;
    gb_end_if(tr);
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_STATE, line, "is not known yet when layer1 runs");
    gb_trace_free(tr);
    gb_tensor_free(half);
    tiny_close(&t);
}
END_TEST

/* ---- apply, log, graph, repeated runs ------------------------------------ */

static gb_tensor *returns_null(gb_tensor *const *args, int nargs, void *ctx) {
    (void)args, (void)nargs, (void)ctx;
    return NULL;
}

/* An apply that fails without a message gets one; a scanned value has a
 * shape but no data, and gb_value says so instead of handing it out. */
START_TEST(test_apply_null_and_scanned_values) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_apply(tr, returns_null, NULL, 1, &l1); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_STATE, line, "apply: the function returned NULL without setting an error");
    gb_trace_free(tr);

    tr = gb_trace_new(t.net, t.x);
    gb_val *saved = gb_save(gb_output(tr, "layer1"));
    gbt_ok_status(gb_trace_scan(tr));
    int nd;
    int64_t shape[GB_MAX_DIMS];
    gbt_ok_status(gb_val_shape(saved, &nd, shape));
    ck_assert(nd == 2 && shape[0] == 1 && shape[1] == 10);
    gbt_fails_with(gb_value(saved) == NULL, GB_ERR_STATE, "comes from a scan and has a shape but no data");
    gbt_ok_status(gb_trace_run(tr));
    ck_assert_ptr_nonnull(gb_value(saved));
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* a + k*b: arguments are borrowed, the result is a new reference. */
static gb_tensor *weighted_sum(gb_tensor *const *args, int nargs, void *ctx) {
    ck_assert_int_eq(nargs, 2);
    gb_tensor *kb = gb_mul_scalar(args[1], *(float *)ctx);
    gb_tensor *y = kb ? gb_add(args[0], kb) : NULL;
    gb_tensor_free(kb);
    return y;
}

static gb_tensor *failing(gb_tensor *const *args, int nargs, void *ctx) {
    (void)args, (void)nargs, (void)ctx;
    return gb__fail_null(GB_ERR_UNSUPPORTED, "failing: this function always fails");
}

START_TEST(test_apply) {
    tiny t = tiny_open();
    float k = 10;
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *args[] = {gb_output(tr, "layer2"), gb_val_sum_all(gb_output(tr, "layer1"))};
    gb_val *y = gb_save(gb_apply(tr, weighted_sum, &k, 2, args));
    gbt_ok_status(gb_trace_run(tr));
    gb_tensor *out = gbt_get(t.o, "out"), *l1 = gbt_get(t.o, "l1"), *s = gb_sum_all(l1), *ks = gb_mul_scalar(s, k);
    gb_tensor *want = gb_add(out, ks);
    gbt_assert_close(gb_value(y), want, 1e-5, 1e-6, "apply(layer2.output, layer1.output.sum())");
    gb_tensor_free(want), gb_tensor_free(ks), gb_tensor_free(s), gb_tensor_free(l1), gb_tensor_free(out);
    gb_trace_free(tr);

    /* A failing function fails the run with its message, at its line. */
    tr = gb_trace_new(t.net, t.x);
    gb_val *l1v = gb_output(tr, "layer1");
    gb_apply(tr, failing, NULL, 1, &l1v); int line = __LINE__;
    expect_run_fails_at(gb_trace_run(tr), GB_ERR_UNSUPPORTED, line, "failing: this function always fails");
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

START_TEST(test_log) {
    tiny t = tiny_open();
    FILE *log = tmpfile();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_trace_set_log(tr, log);
    gb_trace_log("layer1:", gb_output(tr, "layer1"));
    gb_trace_log("", gb_scalar(tr, 3)); /* no label, no leading space; a constant: logged before the model runs */
    gbt_ok_status(gb_trace_run(tr));
    char *text = file_text(log);
    gb_tensor *bytes = gbt_get(t.o, "log"); /* "layer1: " + str(layer1 output) + "\n" from PyTorch */
    size_t n = (size_t)gb_tensor_numel(bytes);
    char *want = calloc(1, n + 32);
    strcpy(want, "tensor(3.)\n");
    memcpy(want + strlen(want), gb_tensor_data(bytes), n);
    ck_assert_str_eq(text, want);
    free(want);
    free(text);
    gb_tensor_free(bytes);
    gb_trace_free(tr);
    fclose(log);
    tiny_close(&t);
}
END_TEST

START_TEST(test_graph_text) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_output(tr, "layer1"); int a = __LINE__;
    gb_val *s = gb_save(gb_val_sum_all(l1)); int b = __LINE__;
    gb_if(tr, s); int c = __LINE__;
    gb_set_index(l1, "[:, 0]", gb_scalar(tr, 2)); int d = __LINE__;
    gb_end_if(tr);
    char *g = gb_trace_graph(tr);
    char want[2048];
    snprintf(want, sizeof want,
             "%%0 = output  # layer1.output  (%s:%d)\n"
             "%%1 = sum_all %%0 saved  # layer1.output.sum()  (%s:%d)\n"
             "%%2 = if %%1  # if layer1.output.sum()  (%s:%d)\n"
             "%%3 = const if %%2  # 2  (%s:%d)\n"
             "%%4 = set_index %%0 %%3 if %%2  # layer1.output[:, 0] = 2  (%s:%d)\n",
             __FILE__, a, __FILE__, b, __FILE__, c, __FILE__, d, __FILE__, d);
    ck_assert_str_eq(g, want);
    free(g);
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* One trace runs as often as wanted; each run starts afresh. */
START_TEST(test_run_twice) {
    tiny t = tiny_open();
    gb_trace *tr = gb_trace_new(t.net, t.x);
    gb_val *l1 = gb_output(tr, "layer1");
    gb_set_index(l1, "[:, 0:3]", gb_scalar(tr, -1));
    gb_val *out = gb_save(gb_output(tr, ""));
    gb_requires_grad(l1); /* before gb_grad: nodes run in definition order */
    gb_val *g = gb_save(gb_grad(l1));
    gb_val_backward(gb_val_sum_all(gb_output(tr, "")));
    for (int i = 0; i < 2; i++) {
        gbt_ok_status(gb_trace_run(tr));
        expect_value(out, t.o, "set_index.out");
        ck_assert_ptr_nonnull(gb_value(g));
    }
    gb_trace_free(tr);
    tiny_close(&t);
}
END_TEST

/* ---- GPT-2 and Llama ------------------------------------------------------ */

/* The walkthrough's getting, setting and gradient steps on small random
 * GPT-2 and Llama models, against reference forwards written with
 * torch.nn.functional (tests/oracle/trace_models.py, same configs).
 * Hidden states reach tens, hence the looser tolerances. */
static const gb_gpt2_config trace_gpt2 = {
    .vocab_size = 48, .n_positions = 40, .n_embd = 32, .n_layer = 2, .n_head = 4, .n_inner = 0,
    .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
static const gb_llama_config trace_llama = {
    .vocab_size = 40, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 2,
    .num_attention_heads = 4, .num_key_value_heads = 2, .max_position_embeddings = 64,
    .rms_norm_eps = 1e-5f, .rope_theta = 10000.0, .hidden_act = "silu"};

static const struct {
    const char *prefix;
    const char *first, *last; /* the first block, and the last one by a negative index */
    const char *first_mlp, *last_mlp;
} model_cases[] = {
    {"gpt2", "transformer.h.0", "transformer.h.-1", "transformer.h.0.mlp", "transformer.h.-1.mlp"},
    {"llama", "model.layers.0", "model.layers.-1", "model.layers.0.mlp", "model.layers.-1.mlp"},
};

typedef struct {
    gbt_oracle *o;
    gb_module *model;
    gb_tensor *ids;
    const char *prefix;
} model_fixture;

static model_fixture model_open(int i) {
    model_fixture f = {gbt_oracle_load("trace_models"), NULL, NULL, model_cases[i].prefix};
    f.model = i == 0 ? gb_gpt2_new(&trace_gpt2) : gb_llama_new(&trace_llama);
    gbt_ok(f.model);
    const char **names;
    gb_tensor **params;
    int n = gb_module_parameters(f.model, &names, &params);
    gb_tensor *count = gbt_getf(f.o, "%s.count", f.prefix);
    ck_assert_int_eq(n, ((const int64_t *)gb_tensor_data(count))[0]);
    gb_tensor_free(count);
    for (int k = 0; k < n; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s", names[k]);
        char *dot = strrchr(path, '.');
        *dot = 0;
        gb_tensor *t = gbt_getf(f.o, "%s.param.%s", f.prefix, names[k]);
        gbt_ok_status(gb_module_set_param(gb_module_find(f.model, path), dot + 1, t));
        gb_tensor_free(t);
    }
    free(names);
    free(params);
    if (i == 0) /* GPT-2's lm_head is the token embedding (Hugging Face's tie_weights) */
        gbt_ok_status(gb_module_tie_param(gb_module_find(f.model, "lm_head"), "weight",
                                          gb_module_find(f.model, "transformer.wte"), "weight"));
    f.ids = gbt_getf(f.o, "%s.ids", f.prefix);
    return f;
}

static void model_close(model_fixture *f) {
    gb_tensor_free(f->ids);
    gb_module_free(f->model);
    gbt_oracle_free(f->o);
}

#define expect_model_value(v, f, key) expect_model_value_at((v), (f), (key), __LINE__)
static void expect_model_value_at(const gb_val *v, model_fixture *f, const char *key, int line) {
    gb_tensor *got = gb_value(v);
    ck_assert_msg(got != NULL, "line %d: %s.%s: %s", line, f->prefix, key, gb_last_error());
    char what[128];
    snprintf(what, sizeof what, "%s.%s", f->prefix, key);
    gb_tensor *want = gbt_get(f->o, what);
    gbt_assert_close_at(got, want, 1e-4, 1e-4, what, __FILE__, line);
    gb_tensor_free(want);
}

/* The logits: element 0 of the model's output tuple. */
static gb_val *logits_of(gb_trace *tr) { return gb_val_index(gb_output(tr, ""), "[0]"); }

START_TEST(test_models_getting) {
    model_fixture f = model_open(_i);
    gb_trace *tr = gb_trace_new(f.model, f.ids);
    gb_val *first = gb_save(gb_val_index(gb_output(tr, model_cases[_i].first), "[0]"));
    gb_val *last = gb_save(gb_val_index(gb_output(tr, model_cases[_i].last), "[0]"));
    gb_val *mlp = gb_save(gb_output(tr, model_cases[_i].first_mlp));
    gb_val *logits = gb_save(logits_of(tr));
    gbt_ok_status(gb_trace_run(tr));
    expect_model_value(first, &f, "get.first");
    expect_model_value(last, &f, "get.last");
    expect_model_value(mlp, &f, "get.mlp");
    expect_model_value(logits, &f, "get.logits");
    gb_trace_free(tr);
    model_close(&f);
}
END_TEST

START_TEST(test_models_setting) {
    model_fixture f = model_open(_i);
    /* In place: the first block's hidden state at the last position is zeroed. */
    gb_trace *tr = gb_trace_new(f.model, f.ids);
    gb_set_index(gb_val_index(gb_output(tr, model_cases[_i].first), "[0]"), "[:, -1, :]", gb_scalar(tr, 0));
    gb_val *logits = gb_save(logits_of(tr));
    gbt_ok_status(gb_trace_run(tr));
    expect_model_value(logits, &f, "set_index.logits");
    gb_trace_free(tr);

    /* Replaced: the last block's MLP output doubled. */
    tr = gb_trace_new(f.model, f.ids);
    gb_val *mlp = gb_output(tr, model_cases[_i].last_mlp);
    gb_set(mlp, gb_val_mul(mlp, gb_scalar(tr, 2)));
    logits = gb_save(logits_of(tr));
    gbt_ok_status(gb_trace_run(tr));
    expect_model_value(logits, &f, "set.logits");
    gb_trace_free(tr);
    model_close(&f);
}
END_TEST

START_TEST(test_models_gradients) {
    model_fixture f = model_open(_i);
    for (int edit = 0; edit < 2; edit++) {
        gb_trace *tr = gb_trace_new(f.model, f.ids);
        gb_val *first = gb_val_index(gb_output(tr, model_cases[_i].first), "[0]");
        gb_requires_grad(first);
        if (edit) { /* double the gradient leaving the last MLP */
            gb_val *g = gb_grad(gb_output(tr, model_cases[_i].last_mlp));
            gb_set(g, gb_val_mul(g, gb_scalar(tr, 2)));
        }
        gb_val *grad = gb_save(gb_grad(first));
        gb_val_backward(gb_val_index(logits_of(tr), "[0, -1, 3]"));
        gbt_ok_status(gb_trace_run(tr));
        expect_model_value(grad, &f, edit ? "grad_edit.first" : "grad.first");
        gb_trace_free(tr);
    }
    model_close(&f);
}
END_TEST

Suite *gb_suite_trace(void) {
    Suite *s = suite_create("trace");
    TCase *tc = tcase_create("semantics");
    tcase_add_test(tc, test_getters);
    tcase_add_test(tc, test_call_index);
    tcase_add_test(tc, test_tuple_outputs);
    tcase_add_test(tc, test_set_replaces);
    tcase_add_test(tc, test_set_index_in_place);
    tcase_add_test(tc, test_unsaved_value);
    tcase_add_test(tc, test_stop);
    tcase_add_test(tc, test_skip);
    tcase_add_test(tc, test_value_used_before_it_exists);
    tcase_add_test(tc, test_definition_errors);
    tcase_add_test(tc, test_scan_shapes_without_running);
    tcase_add_test(tc, test_validate);
    tcase_add_test(tc, test_gradients_with_edits);
    tcase_add_test(tc, test_gradient_errors);
    tcase_add_test(tc, test_conditions);
    tcase_add_test(tc, test_apply);
    tcase_add_test(tc, test_log);
    tcase_add_test(tc, test_graph_text);
    tcase_add_test(tc, test_run_twice);
    tcase_add_test(tc, test_set_index_used_before_it_exists);
    tcase_add_test(tc, test_values_of_two_traces);
    tcase_add_test(tc, test_validate_gradient_set);
    tcase_add_test(tc, test_grad_hooks_leave_with_the_trace);
    tcase_add_test(tc, test_false_condition_getters_and_skips);
    tcase_add_test(tc, test_apply_null_and_scanned_values);
    suite_add_tcase(s, tc);
    TCase *models = tcase_create("models");
    tcase_set_timeout(models, 60);
    tcase_add_loop_test(models, test_models_getting, 0, 2);
    tcase_add_loop_test(models, test_models_setting, 0, 2);
    tcase_add_loop_test(models, test_models_gradients, 0, 2);
    suite_add_tcase(s, models);
    return s;
}
