/* Hook events: order, replacement, skip, stop, call indices, removal,
 * subtrees, gradient events; a forward's shortcuts where no hook looks. Modules here are test-local types whose
 * forwards are copies (clone), so expected values are exact. */
#include <string.h>

#include "gbtest.h"
#include "nn/nn_impl.h"

static gb_status copy_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)m, (void)run;
    gb_tensor *y = gb_clone(in->v[0]);
    return y ? gb_values_push(out, y) : gb_last_status();
}
static const gb__nn_module_type copy_type = {.name = "Copy", .forward = copy_forward};

/* Sequential(a: Copy, inner: Sequential(b: Copy, c: Copy)) */
static gb_module *make_net(void) {
    gb_module *inner = gb_sequential(2, (const char *[]){"b", "c"},
                                     (gb_module *[]){gb__nn_module_new(&copy_type), gb__nn_module_new(&copy_type)});
    return gb_sequential(2, (const char *[]){"a", "inner"}, (gb_module *[]){gb__nn_module_new(&copy_type), inner});
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

/* Pair: x -> (x, 2x); Sum2: (a, b) -> a + b. */
static gb_status pair_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)m, (void)run;
    gb_status st = gb_values_push(out, gb_clone(in->v[0]));
    return st ? st : gb_values_push(out, gb_mul_scalar(in->v[0], 2.0f));
}
static const gb__nn_module_type pair_type = {.name = "Pair", .forward = pair_forward, .returns_tuple = true};
static gb_status sum2_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)m, (void)run;
    return gb_values_push(out, gb_add(in->v[0], in->v[1]));
}
static const gb__nn_module_type sum2_type = {.name = "Sum2", .forward = sum2_forward};

/* Which tensor of the tuple each gradient event is of, in firing order. */
typedef struct {
    int n, index[4];
    float first[4];
} grad_indices;

static gb_status index_hook(gb_event *ev, void *ctx) {
    grad_indices *g = ctx;
    if (g->n < 4) {
        g->first[g->n] = gb_tensor_f32(ev->values->v[0])[0];
        g->index[g->n++] = gb_hook_grad_index(ev);
    }
    return GB_OK;
}

START_TEST(test_gradient_event_index) {
    gb_module *net = gb_sequential(2, (const char *[]){"p", "s"},
                                   (gb_module *[]){gb__nn_module_new(&pair_type), gb__nn_module_new(&sum2_type)});
    gb_hooks *h = gb_hooks_new(net);
    grad_indices gi = {0}, fwd = {0};
    gb_hook_add(h, gb_module_find(net, "s"), GB_EVENT_GRAD_INPUT, 0, index_hook, &gi);
    gb_hook_add(h, gb_module_find(net, "s"), GB_EVENT_OUTPUT, 0, index_hook, &fwd);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gb_requires_grad_(x, true);
    gbt_ok_status(gb_module_run(net, run, x, &y));
    ck_assert_int_eq(fwd.n, 1);
    ck_assert_int_eq(fwd.index[0], -1); /* not a gradient event */
    gb_tensor *seed = gb_full(1, (int64_t[]){3}, 5.0f, GB_DTYPE_F32);
    gbt_ok_status(gb_backward(y, seed, false));
    /* y = a + b: both inputs of s get the seed; each event names its input */
    ck_assert_int_eq(gi.n, 2);
    ck_assert_int_eq(gi.index[0] + gi.index[1], 1);
    ck_assert_int_ne(gi.index[0], gi.index[1]);
    ck_assert_float_eq(gi.first[0], 5.0f);
    ck_assert_float_eq(gi.first[1], 5.0f);
    ck_assert_float_eq(gb_tensor_f32(gb_tensor_grad(x))[0], 15.0f); /* d(x + 2x)/dx * 5 */
    gb_tensor_free(seed), gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
}
END_TEST

/* A hook that logs with a tag, to see the order hooks of different lists run in. */
typedef struct {
    trail *t;
    const char *tag;
} tagged;

static gb_status tag_hook(gb_event *ev, void *ctx) {
    tagged *g = ctx;
    char item[64];
    snprintf(item, sizeof item, "%s%s#%d", *g->t->log ? " " : "", g->tag, ev->call);
    strncat(g->t->log, item, sizeof g->t->log - strlen(g->t->log) - 1);
    return GB_OK;
}

START_TEST(test_registration_order_across_subtree_and_module_hooks) {
    gb_module *net = make_net();
    gb_module *b = gb_module_find(net, "inner.b");
    gb_hooks *h = gb_hooks_new(net);
    trail t = {0};
    tagged one = {&t, "b1"}, two = {&t, "inner-subtree"}, three = {&t, "b3"}, four = {&t, "root-subtree"};
    gb_hook_add(h, b, GB_EVENT_OUTPUT, 0, tag_hook, &one);
    gb_hook_add(h, gb_module_find(net, "inner"), GB_EVENT_OUTPUT, GB_HOOK_SUBTREE, tag_hook, &two);
    gb_hook_add(h, b, GB_EVENT_OUTPUT, 0, tag_hook, &three);
    gb_hook_add(h, net, GB_EVENT_OUTPUT, GB_HOOK_SUBTREE, tag_hook, &four);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gbt_ok_status(gb_module_run(net, run, x, &y));
    /* Events in model order (a, b, c, inner, root); on b, the four hooks in
     * the order they were registered. */
    ck_assert_str_eq(t.log, "root-subtree#0 b1#0 inner-subtree#0 b3#0 root-subtree#0 inner-subtree#0 root-subtree#0 "
                            "inner-subtree#0 root-subtree#0 root-subtree#0");
    gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
}
END_TEST

/* A hook that, the first time it runs, adds a logging hook on the same event
 * and on a later module, and removes itself. */
typedef struct {
    gb_hooks *h;
    gb_module *later;
    trail *t;
    int self, calls;
} rewirer;

static gb_status rewire_hook(gb_event *ev, void *ctx) {
    rewirer *r = ctx;
    r->calls++;
    ck_assert_int_gt(gb_hook_add(r->h, ev->module, ev->kind, 0, log_hook, r->t), 0);
    ck_assert_int_gt(gb_hook_add(r->h, r->later, GB_EVENT_OUTPUT, 0, log_hook, r->t), 0);
    gbt_ok_status(gb_hook_remove(r->h, r->self));
    return GB_OK;
}

START_TEST(test_hooks_added_and_removed_by_hooks) {
    gb_module *net = make_net();
    gb_hooks *h = gb_hooks_new(net);
    trail t = {0};
    rewirer r = {h, gb_module_find(net, "inner.c"), &t, 0, 0};
    r.self = gb_hook_add(h, gb_module_find(net, "a"), GB_EVENT_OUTPUT, 0, rewire_hook, &r);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gbt_ok_status(gb_module_run(net, run, x, &y));
    /* The hook added on a's output waits for the next event; the one on c
     * fires in this very run. */
    ck_assert_str_eq(t.log, "inner.c:output#0");
    gb_tensor_free(y);
    t.log[0] = 0;
    gbt_ok_status(gb_module_run(net, run, x, &y));
    ck_assert_int_eq(r.calls, 1); /* removed itself */
    ck_assert_str_eq(t.log, "a:output#1 inner.c:output#1");
    gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
}
END_TEST

START_TEST(test_hooks_follow_the_tree) {
    /* A registry made on a lone module that later becomes part of a bigger
     * tree, and a hook on a module of another tree: both still fire. */
    gb_module *leaf = gb__nn_module_new(&copy_type);
    gb_hooks *h = gb_hooks_new(leaf);
    trail t = {0};
    gb_hook_add(h, leaf, GB_EVENT_OUTPUT, 0, log_hook, &t);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gb_tensor *x = input3(), *y;
    gbt_ok_status(gb_module_run(leaf, run, x, &y));
    gb_tensor_free(y);
    gb_module *net = gb_sequential(2, (const char *[]){"first", "leaf"}, (gb_module *[]){gb__nn_module_new(&copy_type), leaf});
    gb_module *other = make_net();
    gb_hook_add(h, gb_module_find(other, "inner.c"), GB_EVENT_OUTPUT, 0, log_hook, &t);
    gbt_ok_status(gb_module_run(net, run, x, &y));
    gb_tensor_free(y);
    gbt_ok_status(gb_module_run(other, run, x, &y));
    ck_assert_str_eq(t.log, ":output#0 leaf:output#0 inner.c:output#0");
    gb_tensor_free(y), gb_tensor_free(x);
    gb_run_free(run), gb_hooks_free(h), gb_module_free(net), gb_module_free(other);
}
END_TEST

static gb_status count_hook(gb_event *ev, void *ctx) {
    (void)ev;
    (*(int *)ctx)++;
    return GB_OK;
}

/* A forward takes shortcuts where nothing would see the difference, and
 * they give what the module calls give: sibling projections (q, k, v;
 * gate, up) as one product packing their input once and act_fn(gate) * up
 * as one pass, bit for bit (the same kernels and order of sums), and
 * attention as one op, within float rounding of the ops it replaces. A
 * hook on a projection, or on an attention point, turns the shortcut off. */
START_TEST(test_shortcuts_match_the_module_calls) {
    /* sizes the AVX-512 product kernels take (weights of 2^17 floats and more) */
    gb_llama_config c = {.vocab_size = 64, .hidden_size = 512, .intermediate_size = 1024, .num_hidden_layers = 2,
                         .num_attention_heads = 4, .num_key_value_heads = 2, .max_position_embeddings = 64,
                         .rms_norm_eps = 1e-5f, .rope_theta = 10000.0, .hidden_act = "silu"};
    gb_module *net = gb_llama_new(&c);
    ck_assert_ptr_nonnull(net);
    gb_module_init(net, 7);
    gb_rng r = gb_rng_seed(3);
    gb_tensor *ids = gb_randint(&r, 2, (int64_t[]){2, 12}, 0, 64), *plain = NULL, *seen = NULL, *ops = NULL;
    gb_grad_mode gm = gb_no_grad_begin();
    gbt_ok_status(gb_module_run(net, NULL, ids, &plain));

    gb_hooks *h = gb_hooks_new(net);
    int calls = 0, points = 0;
    gb_hook_add(h, gb_module_find(net, "model.layers.0.self_attn.q_proj"), GB_EVENT_OUTPUT, 0, count_hook, &calls);
    gb_hook_add(h, gb_module_find(net, "model.layers.1.mlp.up_proj"), GB_EVENT_OUTPUT, 0, count_hook, &calls);
    gb_run *run = gb_run_new();
    gb_hooks_attach(h, run);
    gbt_ok_status(gb_module_run(net, run, ids, &seen));
    ck_assert_int_eq(calls, 2);
    gbt_assert_close(seen, plain, 0, 0, "q, k, v of layer 0 and gate, up of layer 1 one call at a time");

    gb_hook_add_point(h, "model.layers.1.self_attn.attn_weights", count_hook, &points);
    gb_run *run2 = gb_run_new();
    gb_hooks_attach(h, run2);
    gbt_ok_status(gb_module_run(net, run2, ids, &ops));
    ck_assert_int_eq(points, 1);
    gbt_assert_close(ops, plain, 1e-5, 1e-6, "attention through its ops");
    gb_grad_mode_end(gm);
    gb_tensor_free(ops), gb_tensor_free(seen), gb_tensor_free(plain), gb_tensor_free(ids);
    gb_run_free(run2), gb_run_free(run), gb_hooks_free(h), gb_module_free(net);
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
    tcase_add_test(tc, test_gradient_event_index);
    tcase_add_test(tc, test_registration_order_across_subtree_and_module_hooks);
    tcase_add_test(tc, test_hooks_added_and_removed_by_hooks);
    tcase_add_test(tc, test_hooks_follow_the_tree);
    tcase_add_test(tc, test_shortcuts_match_the_module_calls);
    tcase_add_test(tc, test_hook_errors);
    suite_add_tcase(s, tc);
    return s;
}
