/* Hook events: order, replacement, skip, stop, call indices, removal,
 * subtrees, gradient events. Modules here are test-local types whose
 * forwards are copies (clone), so expected values are exact. */
#include <string.h>

#include "gbtest.h"
#include "nn/nn_impl.h"

static gb_status copy_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)m, (void)run;
    gb_tensor *y = gb_clone(in->v[0]);
    return y ? gb_values_push(out, y) : gb_last_status();
}
static const gb__module_type copy_type = {.name = "Copy", .forward = copy_forward};

/* Sequential(a: Copy, inner: Sequential(b: Copy, c: Copy)) */
static gb_module *make_net(void) {
    gb_module *inner = gb_sequential(2, (const char *[]){"b", "c"},
                                     (gb_module *[]){gb__module_new(&copy_type), gb__module_new(&copy_type)});
    return gb_sequential(2, (const char *[]){"a", "inner"}, (gb_module *[]){gb__module_new(&copy_type), inner});
}

typedef struct {
    char log[512];
} trail;

static gb_status log_hook(gb_event *ev, void *ctx) {
    trail *t = ctx;
    char item[96];
    snprintf(item, sizeof item, "%s%s:%s#%d", *t->log ? " " : "", ev->path, gb_event_name(ev->kind), ev->call);
    strncat(t->log, item, sizeof t->log - strlen(t->log) - 1);
    return GB_OK;
}

static gb_status add_one_output(gb_event *ev, void *ctx) {
    (void)ctx;
    gb_tensor *y = gb_clone(ev->values->v[0]);
    float *p = gb_tensor_f32(y);
    for (int64_t i = 0; i < gb_tensor_numel(y); i++) p[i] += 1.0f;
    gb_values_set(ev->values, 0, y);
    return GB_OK;
}

static gb_status stop_hook(gb_event *ev, void *ctx) {
    (void)ev, (void)ctx;
    return GB_STOPPED;
}

static gb_status skip_with_sevens(gb_event *ev, void *ctx) {
    (void)ctx;
    ev->skip = true;
    gb_tensor *x = ev->values->v[0];
    return gb_values_push(ev->output, gb_full(gb_tensor_ndim(x), gb_tensor_shape(x), 7.0f, GB_DTYPE_F32));
}

static gb_tensor *input3(void) { return gb_arange(0, 3, 1); }

START_TEST(test_order_and_subtree) {
    gb_module *net = make_net();
    gb_hooks *h = gb_hooks_new(net);
    trail t = {0};
    gb_hook_add(h, gb_module_find(net, "inner"), GB_EVENT_OUTPUT, GB_HOOK_SUBTREE, log_hook, &t);
    gb_hook_add(h, gb_module_find(net, "a"), GB_EVENT_INPUT, 0, log_hook, &t);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gbt_ok_status(gb_module_run(net, run, x, &y));
    ck_assert_str_eq(t.log, "a:input#0 inner.b:output#0 inner.c:output#0 inner:output#0");
    /* Call indices count across forwards of the same run. */
    t.log[0] = 0;
    gb_tensor_free(y);
    gbt_ok_status(gb_module_run(net, run, x, &y));
    ck_assert_str_eq(t.log, "a:input#1 inner.b:output#1 inner.c:output#1 inner:output#1");
    gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
}
END_TEST

START_TEST(test_replace_in_registration_order_and_remove) {
    gb_module *net = make_net();
    gb_hooks *h = gb_hooks_new(net);
    trail t = {0};
    gb_module *b = gb_module_find(net, "inner.b");
    int add = gb_hook_add(h, b, GB_EVENT_OUTPUT, 0, add_one_output, NULL);
    gb_hook_add(h, b, GB_EVENT_OUTPUT, 0, add_one_output, NULL);
    gb_hook_add(h, b, GB_EVENT_OUTPUT, 0, log_hook, &t);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gbt_ok_status(gb_module_run(net, run, x, &y));
    ck_assert_float_eq(gb_tensor_f32(y)[2], 4.0f); /* 2 + 1 + 1 */
    gb_tensor_free(y);
    gbt_ok_status(gb_hook_remove(h, add));
    gbt_fails_with(gb_hook_remove(h, add) != GB_OK, GB_ERR_NOT_FOUND, "no hook with handle");
    gbt_ok_status(gb_module_run(net, run, x, &y));
    ck_assert_float_eq(gb_tensor_f32(y)[2], 3.0f);
    ck_assert_str_eq(t.log, "inner.b:output#0 inner.b:output#1");
    gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
}
END_TEST

START_TEST(test_skip_and_stop) {
    gb_module *net = make_net();
    gb_hooks *h = gb_hooks_new(net);
    trail t = {0};
    gb_hook_add(h, gb_module_find(net, "inner"), GB_EVENT_INPUT, 0, skip_with_sevens, NULL);
    gb_hook_add(h, net, GB_EVENT_OUTPUT, GB_HOOK_SUBTREE, log_hook, &t);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gbt_ok_status(gb_module_run(net, run, x, &y));
    ck_assert_float_eq(gb_tensor_f32(y)[0], 7.0f);
    ck_assert_str_eq(t.log, "a:output#0 inner:output#0 :output#0"); /* b and c never ran */
    gb_tensor_free(y);
    gb_hooks_free(h);

    h = gb_hooks_new(net);
    t.log[0] = 0;
    gb_hook_add(h, gb_module_find(net, "inner.b"), GB_EVENT_OUTPUT, 0, stop_hook, NULL);
    gb_hook_add(h, net, GB_EVENT_OUTPUT, GB_HOOK_SUBTREE, log_hook, &t);
    gb_hooks_attach(h, run);
    ck_assert_int_eq(gb_module_run(net, run, x, &y), GB_STOPPED);
    ck_assert_str_eq(t.log, "a:output#1"); /* stopped at b's output: later hooks never fire */
    gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
}
END_TEST

typedef struct {
    int grad_out, grad_in;
    float seen_out, seen_in;
} grad_log;

static gb_status grad_out_hook(gb_event *ev, void *ctx) {
    grad_log *g = ctx;
    g->grad_out++;
    g->seen_out = gb_tensor_f32(ev->values->v[0])[0];
    /* double the gradient flowing back */
    gb_tensor *d = gb_clone(ev->values->v[0]);
    float *p = gb_tensor_f32(d);
    for (int64_t i = 0; i < gb_tensor_numel(d); i++) p[i] *= 2;
    gb_values_set(ev->values, 0, d);
    return GB_OK;
}

static gb_status grad_in_hook(gb_event *ev, void *ctx) {
    grad_log *g = ctx;
    g->grad_in++;
    g->seen_in = gb_tensor_f32(ev->values->v[0])[0];
    return GB_OK;
}

START_TEST(test_gradient_events) {
    gb_module *net = make_net();
    gb_hooks *h = gb_hooks_new(net);
    grad_log g = {0};
    gb_hook_add(h, gb_module_find(net, "inner.b"), GB_EVENT_GRAD_OUTPUT, 0, grad_out_hook, &g);
    gb_hook_add(h, gb_module_find(net, "a"), GB_EVENT_GRAD_INPUT, 0, grad_in_hook, &g);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gb_requires_grad_(x, true);
    gbt_ok_status(gb_module_run(net, run, x, &y));
    gb_tensor *seed = gb_full(1, (int64_t[]){3}, 3.0f, GB_DTYPE_F32);
    gbt_ok_status(gb_backward(y, seed, false));
    ck_assert_int_eq(g.grad_out, 1);
    ck_assert_int_eq(g.grad_in, 1);
    ck_assert_float_eq(g.seen_out, 3.0f); /* b's output gradient, before the hook doubles it */
    ck_assert_float_eq(g.seen_in, 6.0f);  /* what reaches a's input */
    ck_assert_float_eq(gb_tensor_f32(gb_tensor_grad(x))[1], 6.0f);
    gb_tensor_free(seed), gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
}
END_TEST

START_TEST(test_hook_errors) {
    gb_module *net = make_net();
    gb_hooks *h = gb_hooks_new(net);
    ck_assert_int_eq(gb_hook_add(h, NULL, GB_EVENT_OUTPUT, 0, log_hook, NULL), 0);
    ck_assert_int_eq(gb_last_status(), GB_ERR_ARG);
    ck_assert_int_eq(gb_hook_add(h, net, GB_EVENT_POINT, 0, log_hook, NULL), 0);
    gbt_fails_with(gb_module_find(net, "inner.d") == NULL, GB_ERR_NOT_FOUND, "has no submodule 'd'; nearest: b, c");
    gb_hooks_free(h), gb_module_free(net);
}
END_TEST

Suite *gb_suite_hooks(void) {
    Suite *s = suite_create("hooks");
    TCase *tc = tcase_create("events");
    tcase_add_test(tc, test_order_and_subtree);
    tcase_add_test(tc, test_replace_in_registration_order_and_remove);
    tcase_add_test(tc, test_skip_and_stop);
    tcase_add_test(tc, test_gradient_events);
    tcase_add_test(tc, test_hook_errors);
    suite_add_tcase(s, tc);
    return s;
}
