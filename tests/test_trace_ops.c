/* The trace's functions on values and module calls on values, against
 * PyTorch (tests/oracle/trace_ops.py). Each case is one expression that
 * PyTorch evaluated as Python and glassbox defines as a statement, on the
 * same named tensors (gb_trace_tensor): values, dtypes (PyTorch's type
 * promotion) and the gradients of (out * out).sum() must agree. */
#include <math.h>
#include <stdlib.h>

#include "gbtest.h"

static const char *const names[] = {"a", "b", "p", "c", "t", "ids", "z", "big"};
enum { NNAMES = sizeof names / sizeof *names };

static char *case_str(gbt_oracle *o, int64_t i, const char *what) {
    char key[64];
    snprintf(key, sizeof key, "case.%lld.%s", (long long)i, what);
    return gbt_get_str(o, key);
}

static void define(gb_trace *tr, const char *text) {
    gb_status st = gb_trace_statement(tr, text, "case", 1, NULL);
    ck_assert_msg(st == GB_OK, "'%s': %s", text, gb_last_error());
}

/* Every case of the oracle, one trace each on the tiny network. */
START_TEST(test_functions_match_pytorch) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *n = gbt_get(o, "ncases");
    for (int64_t i = 0; i < gbt_i64(n, 0); i++) {
        char *expr = case_str(o, i, "expr"), *grads = case_str(o, i, "grads");
        gb_tensor *in[NNAMES];
        gb_trace *tr = gb_trace_new(net, x);
        for (int k = 0; k < NNAMES; k++) {
            gb_tensor *t = gbt_getf(o, "in.%s", names[k]);
            in[k] = gb_clone(t); /* a leaf of this case's own */
            gb_tensor_free(t);
            if (gb_tensor_dtype(in[k]) == GB_DTYPE_F32) gbt_ok_status(gb_requires_grad_(in[k], true));
            gbt_ok(gb_trace_tensor(tr, names[k], in[k]));
        }
        char text[512];
        snprintf(text, sizeof text, "out = %s", expr);
        define(tr, text);
        gb_val *out;
        ck_assert_int_eq(gb_trace_statement(tr, "out.save()", "case", 2, &out), GB_OK);
        if (*grads) define(tr, "(out * out).sum().backward()");
        ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s: %s", expr, gb_last_error());
        gb_tensor *want = gbt_getf(o, "case.%lld.out", (long long)i), *got = gb_value(out);
        gbt_ok(got);
        ck_assert_msg(gb_tensor_dtype(got) == gb_tensor_dtype(want), "%s: dtype %s, PyTorch's %s", expr,
                      gb_dtype_name(gb_tensor_dtype(got)), gb_dtype_name(gb_tensor_dtype(want)));
        gbt_assert_close(got, want, 1e-5, 1e-6, expr);
        gb_tensor_free(want);
        for (int k = 0; k < NNAMES; k++) {
            char key[64];
            snprintf(key, sizeof key, " %s ", names[k]);
            char padded[64];
            snprintf(padded, sizeof padded, " %s ", grads);
            if (strstr(padded, key)) {
                gb_tensor *g = gbt_getf(o, "case.%lld.grad.%s", (long long)i, names[k]);
                ck_assert_msg(gb_tensor_grad(in[k]) != NULL, "%s: no gradient for %s", expr, names[k]);
                gbt_assert_close(gb_tensor_grad(in[k]), g, 1e-4, 1e-5, expr);
                gb_tensor_free(g);
            } else if (gb_tensor_dtype(in[k]) == GB_DTYPE_F32) {
                ck_assert_msg(gb_tensor_grad(in[k]) == NULL, "%s: a gradient for %s, PyTorch has none", expr, names[k]);
            }
        }
        gb_trace_free(tr);
        for (int k = 0; k < NNAMES; k++) gb_tensor_free(in[k]);
        free(expr), free(grads);
    }
    gb_tensor_free(n), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* A scan gives every case's shape without computing. */
START_TEST(test_functions_scan_shapes) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *n = gbt_get(o, "ncases");
    for (int64_t i = 0; i < gbt_i64(n, 0); i++) {
        char *expr = case_str(o, i, "expr");
        gb_trace *tr = gb_trace_new(net, x);
        for (int k = 0; k < NNAMES; k++) {
            gb_tensor *t = gbt_getf(o, "in.%s", names[k]);
            gbt_ok(gb_trace_tensor(tr, names[k], t));
            gb_tensor_free(t);
        }
        gb_val *out;
        ck_assert_int_eq(gb_trace_statement(tr, expr, "case", 1, &out), GB_OK);
        ck_assert_msg(gb_trace_scan(tr) == GB_OK, "%s: %s", expr, gb_last_error());
        int nd;
        int64_t shape[GB_MAX_DIMS];
        gbt_ok_status(gb_val_shape(out, &nd, shape));
        gb_tensor *want = gbt_getf(o, "case.%lld.out", (long long)i);
        ck_assert_msg(nd == gb_tensor_ndim(want), "%s: %d dims, PyTorch %d", expr, nd, gb_tensor_ndim(want));
        for (int d = 0; d < nd; d++) ck_assert_int_eq(shape[d], gb_tensor_shape(want)[d]);
        gb_tensor_free(want);
        gb_trace_free(tr);
        free(expr);
    }
    gb_tensor_free(n), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* nnsight's module call on a value: layer2 run on twice layer1's output,
 * in C and as a statement; the model's own layer2 is untouched, its
 * getters see one call, and the gradient flows back through the call. */
START_TEST(test_module_call_on_a_value) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    for (int form = 0; form < 2; form++) {
        gb_trace *tr = gb_trace_new(net, x);
        gb_val *h = gb_output(tr, "layer1"), *y, *nested;
        gb_requires_grad(h);
        if (form == 0) {
            y = gb_save(gb_call(tr, "layer2", gb_val_mul(h, gb_scalar(tr, 2))));
            nested = gb_save(gb_call(tr, "layer2", gb_call(tr, "layer1", gb_val_mul(gb_input(tr, "layer1"), gb_scalar(tr, 3)))));
        } else {
            ck_assert_int_eq(gb_trace_statement(tr, "y = layer2(layer1.output * 2).save()", "s", 1, &y), GB_OK);
            ck_assert_int_eq(gb_trace_statement(tr, "model.layer2(model.layer1(layer1.input * 3)).save()", "s", 2, &nested), GB_OK);
        }
        gb_val *g = gb_save(gb_grad(gb_output(tr, "layer1")));
        gb_val *model_out = gb_save(gb_output(tr, "layer2"));
        gb_val *second = gb_save(gb_output_call(tr, "layer2", 1)); /* the call is not a call of the model's */
        gb_val_backward(gb_val_sum_all(gb_val_mul(y, y)));
        ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s", gb_last_error());
        gbt_assert_saved_close(y, o, "call.out");
        gbt_assert_saved_close(nested, o, "call.nested");
        gbt_assert_saved_close(model_out, o, "call.model_out");
        gbt_assert_saved_close(g, o, "call.grad");
        gbt_fails_with(gb_value(second) == NULL, GB_ERR_STATE, "was never produced");
        char *graph = gb_trace_graph(tr);
        ck_assert_msg(strstr(graph, "layer2((layer1.output * 2))"), "%s", graph);
        free(graph);
        ck_assert_int_eq(gb_trace_scan(tr), GB_OK);
        int nd;
        int64_t shape[GB_MAX_DIMS];
        gbt_ok_status(gb_val_shape(y, &nd, shape));
        ck_assert_int_eq(nd, 2);
        ck_assert_int_eq(shape[1], 2);
        gb_trace_free(tr);
    }
    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* hook=True: the call goes through the run's events as the module's next
 * call. Called when layer1's output exists, it is layer2's call 0 (the
 * model's own becomes call 1); an edit of call 0 changes its result only. */
START_TEST(test_module_call_hooked) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    gb_trace *tr = gb_trace_new(net, x);
    gb_val *y, *first, *model_out, *zeroed;
    gbt_ok_status(gb_trace_statement(tr, "y = layer2(layer1.output * 2, hook=True).save()", "s", 1, &y));
    gbt_ok_status(gb_trace_statement(tr, "first = layer2.output.clone().save()", "s", 2, &first));
    gbt_ok_status(gb_trace_statement(tr, "model_out = layer2.next().output.save()", "s", 3, &model_out));
    ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s", gb_last_error());
    gbt_assert_saved_close(y, o, "call.out");
    gbt_assert_saved_close(first, o, "call.out");
    gbt_assert_saved_close(model_out, o, "call.model_out");
    gb_trace_free(tr);

    tr = gb_trace_new(net, x);
    zeroed = gb_save(gb_call_hooked(tr, "layer2", gb_val_mul(gb_output(tr, "layer1"), gb_scalar(tr, 2))));
    gb_set_index(gb_output(tr, "layer2"), "[:]", gb_scalar(tr, 0));
    model_out = gb_save(gb_output(tr, ""));
    ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s", gb_last_error());
    double sum;
    gb_tensor *s0 = gb_sum_all(gb_value(zeroed));
    gbt_ok_status(gb_item(s0, &sum));
    ck_assert(sum == 0);
    gb_tensor_free(s0);
    gbt_assert_saved_close(model_out, o, "call.model_out");
    char *graph = gb_trace_graph(tr);
    ck_assert_msg(strstr(graph, "layer2((layer1.output * 2), hook=True)"), "%s", graph);
    free(graph);
    gb_trace_free(tr);

    /* downstream of a getter of every call it would fire that getter again */
    tr = gb_trace_new(net, x);
    gb_call_hooked(tr, "layer2", gb_output_all(tr, "layer1"));
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_UNSUPPORTED, "downstream of a getter of every call");
    gb_trace_free(tr);
    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* What PyTorch refuses on integer values (its messages in the oracle),
 * glassbox refuses at the run, naming the function, the input's shape and
 * the statement. */
START_TEST(test_integer_refusals) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *n = gbt_get(o, "nrefused");
    static const struct {
        const char *torch; /* in PyTorch's message */
        const char *needle; /* in glassbox's */
        int column;         /* of the operator in the statement; 0: the method's '.' or F's */
    } want[] = {
        {"mean(): could not infer output dtype", "mean(): could not infer output dtype. Input dtype must be either a floating point or complex dtype. Got: Long (input [2, 2])", 0},
        {"mean(): could not infer output dtype", "mean(): could not infer output dtype", 0},
        {"mean(): could not infer output dtype", "mean(): could not infer output dtype", 0},
        {"not implemented for 'Long'", "softmax: not implemented for 'Long' (input [2, 2])", 0},
        {"not implemented for 'Long'", "log_softmax: not implemented for 'Long'", 0},
        {"Got Long", "norm: not implemented for 'Long'", 0},
        {"not implemented for 'Long'", "cross_entropy: not implemented for 'Long'", 0},
        {"common dtype is Long", "cosine_similarity: not implemented for 'Long'", 0},
        {"Integers to negative integer powers are not allowed", "pow: Integers to negative integer powers are not allowed (base [2, 2], exponent -1)", 0},
        {"ZeroDivisionError", "remainder: ZeroDivisionError: integer division by zero (dividend [2, 2], divisor [])", 5},
        {"ZeroDivisionError", "floor_divide: ZeroDivisionError: integer division by zero (dividend [2, 2], divisor [2, 2])", 5},
        {"\"remainder_cpu\" not implemented for 'Bool'", "remainder: \"remainder_cpu\" not implemented for 'Bool' ([2, 2] and [2, 2])", 11},
        {"\"div_floor_cpu\" not implemented for 'Bool'", "floor_divide: \"div_floor_cpu\" not implemented for 'Bool'", 11},
        {"Subtraction, the `-` operator, with two bool tensors is not supported", "sub: Subtraction, the `-` operator, with two bool tensors is not supported ([2, 2] and [2, 2])", 11},
    };
    ck_assert_int_eq(gbt_i64(n, 0), (int64_t)(sizeof want / sizeof *want));
    for (int64_t i = 0; i < gbt_i64(n, 0); i++) {
        char key[64];
        snprintf(key, sizeof key, "refused.%lld.expr", (long long)i);
        char *expr = gbt_get_str(o, key);
        snprintf(key, sizeof key, "refused.%lld.msg", (long long)i);
        char *msg = gbt_get_str(o, key);
        ck_assert_msg(strstr(msg, want[i].torch), "%s: PyTorch says %s", expr, msg);
        gb_trace *tr = gb_trace_new(net, x);
        for (int k = 0; k < NNAMES; k++) {
            gb_tensor *t = gbt_getf(o, "in.%s", names[k]);
            gbt_ok(gb_trace_tensor(tr, names[k], t));
            gb_tensor_free(t);
        }
        gbt_ok_status(gb_trace_statement(tr, expr, "ints", 3, NULL));
        gb_status st = gb_trace_run(tr);
        ck_assert_msg(st != GB_OK, "%s: computed, PyTorch refuses (%s)", expr, msg);
        /* the site points at the method's '.' or the function's name in the statement */
        char site[32];
        snprintf(site, sizeof site, "ints:3:%d: ", want[i].column ? want[i].column : expr[0] == 'F' ? 1 : 4);
        ck_assert_msg(!strncmp(gb_last_error(), site, strlen(site)) && strstr(gb_last_error(), want[i].needle), "%s: %s",
                      expr, gb_last_error());
        gb_trace_free(tr);
        free(expr), free(msg);
    }
    /* the tensor layer's own refusal, and its gather of negative indices */
    gb_tensor *ids = gbt_get(o, "in.ids");
    gbt_fails_with(gb_mean_all(ids) == NULL, GB_ERR_DTYPE, "mean(): could not infer output dtype");
    /* a backward through floor_divide fails, as PyTorch's (its message in the oracle) */
    char *msg = gbt_get_str(o, "floor_divide_grad.msg");
    ck_assert_msg(strstr(msg, "derivative for aten::floor_divide is not implemented"), "PyTorch: %s", msg);
    free(msg);
    gb_trace *tr = gb_trace_new(net, x);
    gb_tensor *a = gbt_get(o, "in.a"), *a_leaf = gb_clone(a);
    gbt_ok_status(gb_requires_grad_(a_leaf, true));
    gbt_ok(gb_trace_tensor(tr, "a", a_leaf));
    gbt_ok_status(gb_trace_statement(tr, "(a // 0.5).sum().backward()", "fd", 1, NULL));
    gbt_fails_with(gb_trace_run(tr) != GB_OK, GB_ERR_AUTOGRAD,
                   "floor_divide: derivative for aten::floor_divide is not implemented (result [3, 4])");
    gb_trace_free(tr);
    gb_tensor_free(a), gb_tensor_free(a_leaf);
    gb_tensor_free(ids), gb_tensor_free(n), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* Mistakes: at definition (an unknown module, bad arguments) or at the run
 * (PyTorch's messages), each naming its statement. */
START_TEST(test_function_errors) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *a = gbt_get(o, "in.a"), *t = gbt_get(o, "in.t");
    static const struct {
        const char *text;
        gb_status st;
        const char *needle;
        bool at_run;
    } cases[] = {
        {"layer3(a)", GB_ERR_NOT_FOUND, "has no submodule 'layer3'", false}, /* a mistyped module: named, with the whitelist */
        {"layer1()", GB_ERR_ARG, "a module call needs a value", false},
        {"a.topk()", GB_ERR_ARG, "topk needs k", false},
        {"a.frobnicate()", GB_ERR_ARG, "unknown method", false},
        {"a.norm(p=a)", GB_ERR_ARG, "p is a number, float('inf'), float('-inf') or 'fro'", false},
        {"torch.cat(a)", GB_ERR_ARG, "expected a list of values", false},
        {"a.sum(dim=1.5)", GB_ERR_ARG, "dim must be an integer", false},
        {"a.transpose(0)", GB_ERR_ARG, "transpose needs two dims", false},
        {"a.topk(9, 1)", GB_ERR_INDEX, "selected index k out of range", true},
        {"a.permute(1, 0, 2)", GB_ERR_ARG, "does not match the length of the desired ordering", true},
        {"a.item()", GB_ERR_SHAPE, "a Tensor with 12 elements cannot be converted to Scalar", true},
        {"torch.where(a, a, a)", GB_ERR_DTYPE, "expected condition to be a boolean tensor", true},
        {"F.cross_entropy(a, a)", GB_ERR_DTYPE, "class indices", true},
        {"layer2(a)", GB_ERR_SHAPE, "", true},
        {"a + t.unsqueeze(0).reshape(1, 3)", GB_ERR_SHAPE, "must match the size of tensor b", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gb_trace *tr = gb_trace_new(net, x);
        gbt_ok(gb_trace_tensor(tr, "a", a));
        gbt_ok(gb_trace_tensor(tr, "t", t));
        gb_status st = gb_trace_statement(tr, cases[i].text, "bad", 7, NULL);
        if (cases[i].at_run) {
            ck_assert_msg(st == GB_OK, "%s: %s", cases[i].text, gb_last_error());
            st = gb_trace_run(tr);
            ck_assert_msg(strstr(gb_last_error(), "bad:7:"), "%s: %s", cases[i].text, gb_last_error());
        }
        ck_assert_msg(st == cases[i].st, "%s: status %s: %s", cases[i].text, gb_status_name(st), gb_last_error());
        ck_assert_msg(strstr(gb_last_error(), cases[i].needle), "%s: %s", cases[i].text, gb_last_error());
        gb_trace_free(tr);
    }
    gb_trace *tr = gb_trace_new(net, x);
    gbt_fails_with(gb_trace_tensor(tr, "model", a) == NULL, GB_ERR_ARG, "not a name");
    gbt_fails_with(gb_trace_tensor(tr, "x y", a) == NULL, GB_ERR_ARG, "not a name");
    gb_trace_free(tr);
    gb_tensor_free(x), gb_tensor_free(a), gb_tensor_free(t);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* The rest of nnsight's statement forms, on the walkthrough's network with
 * tests/oracle/trace.py's numbers: x op= v, conditions (if / tracer.cond),
 * x.requires_grad = True, .shape after a scan. */
START_TEST(test_statement_forms) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    static const struct {
        const char *stmt[2];
        const char *key; /* what model.output must be */
    } cases[] = {
        {{"layer1.output *= 2", NULL}, "set.out"},
        {{"h = layer1.output", "h[:, 0:3] -= h[:, 0:3] + 1"}, "set_index.out"},
        {{"if layer1.input.sum() > -1e9: layer1.output[:, 0:3] = -1", NULL}, "set_index.out"},
        {{"if layer1.input.sum() > 1e9: layer1.output[:, 0:3] = -1", NULL}, "out"},
        {{"with tracer.cond(layer1.input.sum() < 1e9): layer1.output *= 2", NULL}, "set.out"},
        {{"c = layer1.input.amax() if 0 else layer1.input.sum() == 12345", NULL}, NULL}, /* no ternaries */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gb_trace *tr = gb_trace_new(net, x);
        gb_status st = GB_OK;
        for (int k = 0; k < 2 && cases[i].stmt[k] && st == GB_OK; k++)
            st = gb_trace_statement(tr, cases[i].stmt[k], "s", k + 1, NULL);
        if (!cases[i].key) {
            ck_assert_int_eq(st, GB_ERR_ARG);
            gb_trace_free(tr);
            continue;
        }
        ck_assert_msg(st == GB_OK, "%s: %s", cases[i].stmt[0], gb_last_error());
        gb_val *out;
        gbt_ok_status(gb_trace_statement(tr, "model.output.save()", "s", 3, &out));
        ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s: %s", cases[i].stmt[0], gb_last_error());
        gbt_assert_saved_close(out, o, cases[i].key);
        gb_trace_free(tr);
    }

    /* requires_grad = True is requires_grad_(); the graphs are the same */
    gb_trace *a = gb_trace_new(net, x), *b = gb_trace_new(net, x);
    gbt_ok_status(gb_trace_statement(a, "layer1.output.requires_grad = True", "s", 1, NULL));
    gbt_ok_status(gb_trace_statement(b, "layer1.output.requires_grad_()", "s", 1, NULL));
    char *ga = gb_trace_graph(a), *gb = gb_trace_graph(b);
    ck_assert_str_eq(ga, gb);
    free(ga), free(gb);
    gbt_fails_with(gb_trace_statement(a, "layer1.output.requires_grad = False", "s", 2, NULL) != GB_OK, GB_ERR_ARG,
                   "requires_grad can only be set to True");
    gb_trace_free(a), gb_trace_free(b);

    /* .shape is real after a scan, as in nnsight's scan */
    gb_trace *tr = gb_trace_new(net, x);
    gb_val *dim, *shape;
    gbt_ok_status(gb_trace_statement(tr, "dim = layer1.output.shape[-1].save()", "s", 1, &dim));
    gbt_ok_status(gb_trace_statement(tr, "shape = layer2.input.shape.save()", "s", 2, &shape));
    gbt_ok_status(gb_trace_scan(tr));
    gbt_ok(gb_value(dim));
    ck_assert_int_eq(gbt_i64(gb_value(dim), 0), 10);
    ck_assert_int_eq(gb_tensor_numel(gb_value(shape)), 2);
    ck_assert_int_eq(gbt_i64(gb_value(shape), 0), 1);
    ck_assert_int_eq(gbt_i64(gb_value(shape), 1), 10);
    gb_trace_free(tr);

    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* Attention as named points, from statements: the weights are the softmax
 * of the scores (masked above the diagonal with float32's lowest value, as
 * Hugging Face), and editing the scores changes the weights. */
START_TEST(test_attention_points) {
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    gb_module *model = gb_model_module(m);
    gb_tensor *ids = gb_from_data((int64_t[]){46, 319, 28, 481}, 2, (int64_t[]){1, 4}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(model, ids);
    static const char *const text[] = {"w = transformer.h[0].attn.attn_weights.clone().save()",
                                       "s = transformer.h[0].attn.attn_scores.clone().save()",
                                       "s.softmax(-1).save()",
                                       "transformer.h[1].attn.attn_scores[:, :, 1:, 0] = -1e9",
                                       "transformer.h[1].attn.attn_weights[0, :, 1:, 0].sum().save()"};
    gb_val *w, *s, *sm, *w1;
    gb_val **out[] = {&w, &s, &sm, NULL, &w1};
    for (int i = 0; i < 5; i++) gbt_ok_status(gb_trace_statement(tr, text[i], "a", i + 1, out[i]));
    ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s", gb_last_error());
    gb_tensor *tw = gb_value(w), *ts = gb_value(s);
    ck_assert_int_eq(gb_tensor_ndim(tw), 4);
    ck_assert_int_eq(gb_tensor_dim(tw, 2), 4);
    ck_assert_int_eq(gb_tensor_dim(tw, 3), 4);
    gbt_assert_close(gb_value(sm), tw, 1e-6, 1e-7, "softmax(attn_scores) = attn_weights");
    double above, below;
    gbt_ok_status(gb_tensor_get(ts, (int64_t[]){0, 0, 0, 1}, &above));
    gbt_ok_status(gb_tensor_get(ts, (int64_t[]){0, 0, 1, 0}, &below));
    ck_assert(above == -3.4028234663852886e38 && below > -1e30); /* torch.finfo(torch.float32).min above the diagonal */
    double zeroed;
    gbt_ok_status(gb_item(gb_value(w1), &zeroed));
    ck_assert_msg(zeroed < 1e-30, "the edited scores left weight %g on position 0", zeroed);
    gb_trace_free(tr);
    tr = gb_trace_new(model, ids);
    gbt_fails_with(gb_trace_statement(tr, "transformer.h[0].mlpx.attn_weights", "a", 6, NULL) != GB_OK,
                   GB_ERR_NOT_FOUND, "has no submodule 'mlpx'");
    gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_model_free(m);
}
END_TEST

/* gather and topk in the tensor layer: their refusals, and topk's order
 * (ties by index, NaN largest, as torch). */
START_TEST(test_gather_topk_tensor_errors) {
    float x[] = {1, 3, 3, NAN, 0, 2};
    gb_tensor *a = gb_from_data(x, 2, (int64_t[]){2, 3}, GB_DTYPE_F32), *v, *i;
    gbt_ok_status(gb_topk(a, 2, 1, &v, &i));
    int64_t want_i[] = {1, 2, 0, 2}; /* row 0: the tie 3, 3 by index; row 1: NaN first */
    for (int k = 0; k < 4; k++) ck_assert_int_eq(gbt_i64(i, k), want_i[k]);
    ck_assert(isnan(gb_tensor_f32(v)[2]) && gb_tensor_f32(v)[3] == 2);
    gb_tensor_free(v), gb_tensor_free(i);
    gbt_fails_with(gb_topk(a, 4, 1, &v, &i) != GB_OK && !v && !i, GB_ERR_INDEX, "topk: selected index k out of range");
    gbt_fails_with(gb_topk(a, 1, 2, &v, &i) != GB_OK, GB_ERR_INDEX, "topk");
    gb_tensor *f = gb_zeros(2, (int64_t[]){2, 1}, GB_DTYPE_F32), *bad = gb_full(2, (int64_t[]){2, 1}, 3, GB_DTYPE_I64),
              *wrong = gb_zeros(2, (int64_t[]){1, 1}, GB_DTYPE_I64), *neg = gb_full(2, (int64_t[]){2, 1}, -1, GB_DTYPE_I64);
    gbt_fails_with(gb_gather(a, 1, f) == NULL, GB_ERR_DTYPE, "gather: Expected dtype int64 for index");
    gbt_fails_with(gb_gather(a, 1, bad) == NULL, GB_ERR_INDEX, "gather: index 3 is out of bounds for dimension 1 with size 3");
    gbt_fails_with(gb_gather(a, 1, wrong) == NULL, GB_ERR_SHAPE, "must have the shape of the input");
    /* torch.gather refuses negative indices: its message is in the oracle */
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    char *msg = gbt_get_str(o, "gather_neg.msg");
    ck_assert_msg(strstr(msg, "index -1 is out of bounds for dimension 1 with size 3"), "PyTorch: %s", msg);
    free(msg);
    gbt_oracle_free(o);
    gbt_fails_with(gb_gather(a, 1, neg) == NULL, GB_ERR_INDEX,
                   "gather: index -1 is out of bounds for dimension 1 with size 3 (input [2, 3], index [2, 1])");
    gb_tensor_free(f), gb_tensor_free(bad), gb_tensor_free(wrong), gb_tensor_free(neg), gb_tensor_free(a);
}
END_TEST

/* torch.randint in statements draws what PyTorch draws after
 * torch.manual_seed(S) (gb_trace_set_seed), in definition order and again
 * from the seed at each run; a scan draws nothing. */
START_TEST(test_randint_matches_pytorch) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *n = gbt_get(o, "nseeds");
    for (int64_t i = 0; i < gbt_i64(n, 0); i++) {
        gb_tensor *seed = gbt_getf(o, "seed.%lld", (long long)i);
        gb_trace *tr = gb_trace_new(net, x);
        gb_trace_set_seed(tr, (uint64_t)gbt_i64(seed, 0));
        gb_val *v[3];
        static const char *const text[] = {"torch.randint(low=-10, high=10, size=(1,)).save()",
                                           "torch.randint(-1099511627776, 1099511627776, (2, 3)).save()",
                                           "torch.randint(5, size=(4,)).save()"};
        static const char *const keys[] = {"small", "wide", "high"};
        for (int k = 0; k < 3; k++) gbt_ok_status(gb_trace_statement(tr, text[k], "r", k + 1, &v[k]));
        gbt_ok_status(gb_trace_scan(tr));
        int nd;
        int64_t shape[GB_MAX_DIMS];
        gbt_ok_status(gb_val_shape(v[1], &nd, shape));
        ck_assert(nd == 2 && shape[0] == 2 && shape[1] == 3);
        for (int run = 0; run < 2; run++) { /* each run starts from the seed */
            ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s", gb_last_error());
            for (int k = 0; k < 3; k++) {
                gb_tensor *want = gbt_getf(o, "randint.%lld.%s", (long long)i, keys[k]), *got = gb_value(v[k]);
                ck_assert_int_eq(gb_tensor_dtype(got), GB_DTYPE_I64);
                ck_assert_int_eq(gb_tensor_numel(got), gb_tensor_numel(want));
                for (int64_t e = 0; e < gb_tensor_numel(want); e++)
                    ck_assert_msg(gbt_i64(got, e) == gbt_i64(want, e), "seed %lld, %s[%lld]: %lld, PyTorch %lld",
                                  (long long)gbt_i64(seed, 0), text[k], (long long)e, (long long)gbt_i64(got, e),
                                  (long long)gbt_i64(want, e));
                gb_tensor_free(want);
            }
        }
        gb_trace_free(tr);
        gb_tensor_free(seed);
    }
    /* its refusals, at definition */
    static const struct {
        const char *text, *needle;
    } bad[] = {
        {"torch.randint(10, 10, (1,))", "randint: random_ expects 'from' to be less than 'to', but got from=10 >= to=10"},
        {"torch.randint(3, (-1,))", "randint: Trying to create tensor with negative dimension -1"},
        {"torch.randint(low=0, high=3)", "randint needs high and size"},
        {"torch.randint(0, 3, 4)", "size must be a tuple of integers"},
        {"torch.randint(0, 3, (1,), dtype=1)", "unknown argument (low, high, size)"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        gb_trace *tr = gb_trace_new(net, x);
        gbt_fails_with(gb_trace_statement(tr, bad[k].text, "bad", 1, NULL) != GB_OK, GB_ERR_ARG, bad[k].needle);
        gb_trace_free(tr);
    }
    gb_tensor_free(n), gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* nnsight's walkthrough, "Conditional Interventions" ([84], [21], [85],
 * [86]): each cell, word for word, as the statements of one trace on the
 * tiny network, prints what the cell does in plain Python after
 * torch.manual_seed(S) (tracer.log as print, tracer.cond as if), for
 * several seeds: the same integers, parities and lines. */
START_TEST(test_conditional_cells) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input"), *n = gbt_get(o, "nseeds"), *cells = gbt_get(o, "ncells");
    int printed_odd = 0, printed_even = 0;
    for (int64_t c = 0; c < gb_tensor_numel(cells); c++) {
        char key[64];
        snprintf(key, sizeof key, "cell.%lld.text", (long long)gbt_i64(cells, c));
        char *text = gbt_get_str(o, key);
        for (int64_t i = 0; i < gbt_i64(n, 0); i++) {
            gb_tensor *seed = gbt_getf(o, "seed.%lld", (long long)i);
            snprintf(key, sizeof key, "cell.%lld.%lld", (long long)gbt_i64(cells, c), (long long)i);
            char *want = gbt_get_str(o, key), *got = NULL;
            size_t len = 0;
            FILE *log = open_memstream(&got, &len);
            gb_trace *tr = gb_trace_new(net, x);
            gb_trace_set_seed(tr, (uint64_t)gbt_i64(seed, 0));
            gb_trace_set_log(tr, log);
            gbt_ok_status(gb_trace_statement(tr, text, "cell", 1, NULL));
            ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s", gb_last_error());
            fclose(log);
            ck_assert_msg(!strcmp(got, want), "cell [%lld], seed %lld: printed\n%s\nPython printed\n%s",
                          (long long)gbt_i64(cells, c), (long long)gbt_i64(seed, 0), got, want);
            printed_odd += strstr(got, "is Odd") != NULL, printed_even += strstr(got, "is Even") != NULL;
            gb_trace_free(tr);
            free(got), free(want);
            gb_tensor_free(seed);
        }
        free(text);
    }
    ck_assert_msg(printed_odd && printed_even, "the seeds cover both branches (%d odd, %d even)", printed_odd, printed_even);
    gb_tensor_free(n), gb_tensor_free(x), gb_tensor_free(cells);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* print's format and Python numbers: literals (and arithmetic on them
 * only) print as Python prints them, values as tensors; braces doubled. */
START_TEST(test_print_python_numbers) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    char *got = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&got, &len);
    gb_trace *tr = gb_trace_new(net, x);
    gb_trace_set_log(tr, log);
    /* print("x", 0.5, 2.0, 7 / 2, 8 > 3, "{b}", -3 // 2, 0.1, 1e20, -5 % 3) in Python:
     * x 0.5 2.0 3.5 True {b} -2 0.1 1e+20 1 */
    gbt_ok_status(gb_trace_statement(tr, "tracer.log(\"x\", 0.5, 2.0, 7 / 2, 8 > 3, \"{b}\", -3 // 2, 0.1, 1e20, -5 % 3)\n"
                                         "print(\"l1 sum\", layer1.output.sum() * 0 + 2)\n"
                                         "log(layer1.output[:, :1] * 0 + 7)", "p", 1, NULL));
    gb_val *r = gb_scalar_i64(tr, 4);
    gbt_ok(gb_trace_print(tr, "{{r}} = {}", 1, &r));
    gbt_fails_with(gb_trace_print(tr, "{} {}", 1, &r) == NULL, GB_ERR_ARG, "print: the format '{} {}' needs one {} per value");
    gbt_fails_with(gb_trace_print(tr, "{", 0, NULL) == NULL, GB_ERR_ARG, "print: the format '{'");
    ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s", gb_last_error());
    fclose(log);
    /* each when its values exist: the constants' before the forward pass */
    ck_assert_str_eq(got, "x 0.5 2.0 3.5 True {b} -2 0.1 1e+20 1\n{r} = tensor(4)\nl1 sum tensor(2.)\ntensor([[7.]])\n");
    char *graph = gb_trace_graph(tr);
    ck_assert_msg(strstr(graph, "print(\"l1 sum {}\", ((layer1.output.sum() * 0) + 2))"), "%s", graph);
    free(graph);
    gb_trace_free(tr);
    /* the strings of one log fit in 500 characters; something must be printed */
    char text[1200] = "tracer.log(\"";
    for (int i = 0; i < 4; i++) strcat(text, "{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}");
    strcat(text, "\", 1)");
    tr = gb_trace_new(net, x);
    gbt_fails_with(gb_trace_statement(tr, text, "p", 1, NULL) != GB_OK, GB_ERR_ARG, "strings of a log too long");
    gbt_fails_with(gb_trace_statement(tr, "tracer.log()", "p", 1, NULL) != GB_OK, GB_ERR_ARG, "a log needs something to print");
    gbt_fails_with(gb_trace_statement(tr, "tracer.log(1 2)", "p", 1, NULL) != GB_OK, GB_ERR_ARG, "expected ','");
    gb_trace_free(tr);
    free(got);
    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_trace_ops(void) {
    Suite *s = suite_create("trace_ops");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_functions_match_pytorch);
    tcase_add_test(tc, test_functions_scan_shapes);
    tcase_add_test(tc, test_module_call_on_a_value);
    tcase_add_test(tc, test_module_call_hooked);
    tcase_add_test(tc, test_function_errors);
    tcase_add_test(tc, test_integer_refusals);
    tcase_add_test(tc, test_statement_forms);
    tcase_add_test(tc, test_attention_points);
    tcase_add_test(tc, test_gather_topk_tensor_errors);
    tcase_add_test(tc, test_randint_matches_pytorch);
    tcase_add_test(tc, test_conditional_cells);
    tcase_add_test(tc, test_print_python_numbers);
    suite_add_tcase(s, tc);
    return s;
}
