/* Statements in nnsight's syntax (gb_trace_statement): each builds exactly
 * the graph of its C spelling (the graphs' text, call sites included, must
 * be identical), runs with the PyTorch oracle's numbers on the walkthrough's
 * tiny network (tests/oracle/trace.py), and fails clearly. */
#include <stdlib.h>

#include "gbtest.h"

#define SITE "stmt"

/* A GPT-2 tree small enough to build in a test: paths only, never run. */
static gb_module *small_gpt2(void) {
    gb_gpt2_config cfg = {.vocab_size = 16, .n_positions = 8, .n_embd = 8, .n_layer = 2, .n_head = 2,
                          .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
    gb_module *m = gb_gpt2_new(&cfg);
    gbt_ok(m);
    return m;
}

static void define(gb_trace *tr, int line, const char *text) {
    gb_status st = gb_trace_statement(tr, text, SITE, line, NULL);
    ck_assert_msg(st == GB_OK, "'%s': %s", text, gb_last_error());
}

/* Every construct of the syntax against the C calls it stands for. */
START_TEST(test_statements_build_the_c_graph) {
    gb_module *model = small_gpt2();
    gb_tensor *ids = gb_zeros(2, (int64_t[]){1, 4}, GB_DTYPE_I64);
    gb_trace *s = gb_trace_new(model, ids), *c = gb_trace_new(model, ids);

    define(s, 1, "transformer.h[-1].mlp.output[:, -1, :] = 0");
    /* C leaves the order of argument evaluation open; statements build left
     * to right, so the C side sequences its calls the same way. */
    gb_val *mlp = gb_getter_at(c, "transformer.h.-1.mlp", GB_TRACE_OP_OUTPUT, 0, SITE, 1);
    gb_set_index_at(mlp, "[:, -1, :]", gb_scalar_at(c, 0, SITE, 1), SITE, 1);

    define(s, 2, "h = model.transformer.h[0].output[0]");
    gb_val *h = gb_val_index_at(gb_getter_at(c, "transformer.h.0", GB_TRACE_OP_OUTPUT, 0, SITE, 2), "[0]", SITE, 2);

    define(s, 3, "transformer.h[1].output[0][:] = h * 2 + -1.5");
    gb_val *h1 = gb_val_index_at(gb_getter_at(c, "transformer.h.1", GB_TRACE_OP_OUTPUT, 0, SITE, 3), "[0]", SITE, 3);
    gb_val *twice = gb_val_binary_at(GB_TRACE_OP_MUL, h, gb_scalar_at(c, 2, SITE, 3), SITE, 3);
    gb_val *rhs = gb_val_binary_at(GB_TRACE_OP_ADD, twice, gb_scalar_at(c, -1.5f, SITE, 3), SITE, 3);
    gb_set_index_at(h1, "[:]", rhs, SITE, 3);

    define(s, 4, "p = lm_head.output[:, -1].softmax(dim=-1).save()");
    gb_val *p = gb_save(gb_val_unary_at(
        GB_TRACE_OP_SOFTMAX, gb_val_index_at(gb_getter_at(c, "lm_head", GB_TRACE_OP_OUTPUT, 0, SITE, 4), "[:, -1]", SITE, 4), -1, SITE, 4));

    define(s, 5, "top = p.argmax(-1, keepdim=True).save()");
    gb_save(gb_val_reduce_at(GB_TRACE_OP_ARGMAX, p, -1, true, SITE, 5));

    define(s, 6, "(h.mean(1) - h.max(-1)).sum().save()");
    gb_val *mean = gb_val_reduce_at(GB_TRACE_OP_MEAN, h, 1, false, SITE, 6);
    gb_val *max = gb_val_reduce_at(GB_TRACE_OP_MAX, h, -1, false, SITE, 6);
    gb_save(gb_val_unary_at(GB_TRACE_OP_SUM_ALL, gb_val_binary_at(GB_TRACE_OP_SUB, mean, max, SITE, 6), 0, SITE, 6));

    define(s, 7, "transformer.wte.output.requires_grad_()");
    gb_val *wte = gb_getter_at(c, "transformer.wte", GB_TRACE_OP_OUTPUT, 0, SITE, 7);
    gb_requires_grad_at(wte, SITE, 7);

    define(s, 8, "g = transformer.wte.output.grad.clone().save()");
    gb_save(gb_val_unary_at(GB_TRACE_OP_CLONE, gb_grad_at(gb_getter_at(c, "transformer.wte", GB_TRACE_OP_OUTPUT, 0, SITE, 8), SITE, 8),
                            0, SITE, 8));

    define(s, 9, "transformer.h[0].output[0].grad = -transformer.h[0].output[0].grad");
    gb_val *g0 = gb_grad_at(gb_val_index_at(gb_getter_at(c, "transformer.h.0", GB_TRACE_OP_OUTPUT, 0, SITE, 9), "[0]", SITE, 9), SITE, 9);
    gb_val *g1 = gb_grad_at(gb_val_index_at(gb_getter_at(c, "transformer.h.0", GB_TRACE_OP_OUTPUT, 0, SITE, 9), "[0]", SITE, 9), SITE, 9);
    gb_val *minus = gb_scalar_i64_at(c, -1, SITE, 9);
    gb_set_at(g0, gb_val_binary_at(GB_TRACE_OP_MUL, minus, g1, SITE, 9), SITE, 9);

    define(s, 10, "lm_head.output.sum().backward()");
    gb_val_backward_at(gb_val_unary_at(GB_TRACE_OP_SUM_ALL, gb_getter_at(c, "lm_head", GB_TRACE_OP_OUTPUT, 0, SITE, 10), 0, SITE, 10),
                       SITE, 10);

    define(s, 11, "transformer.h[1].skip(transformer.h[0].output[0] / 4)");
    gb_val *h0 = gb_val_index_at(gb_getter_at(c, "transformer.h.0", GB_TRACE_OP_OUTPUT, 0, SITE, 11), "[0]", SITE, 11);
    gb_skip_at(c, "transformer.h.1", gb_val_binary_at(GB_TRACE_OP_DIV, h0, gb_scalar_at(c, 4, SITE, 11), SITE, 11),
               SITE, 11);

    define(s, 12, "log('hidden', transformer.ln_f.input)");
    gb_trace_log_at("hidden", gb_getter_at(c, "transformer.ln_f", GB_TRACE_OP_INPUT, 0, SITE, 12), SITE, 12);

    define(s, 13, "print(model.output @ model.output)");
    gb_val *left = gb_getter_at(c, "", GB_TRACE_OP_OUTPUT, 0, SITE, 13);
    gb_trace_log_at("", gb_val_binary_at(GB_TRACE_OP_MATMUL, left, gb_getter_at(c, "", GB_TRACE_OP_OUTPUT, 0, SITE, 13), SITE, 13), SITE, 13);

    define(s, 14, "transformer.h[0].attn.c_attn.output.stop()");
    gb_stop_at(gb_getter_at(c, "transformer.h.0.attn.c_attn", GB_TRACE_OP_OUTPUT, 0, SITE, 14), SITE, 14);

    define(s, 15, "transformer.h[0].next().next().output[0].save()");
    gb_save(gb_val_index_at(gb_getter_at(c, "transformer.h.0", GB_TRACE_OP_OUTPUT, 2, SITE, 15), "[0]", SITE, 15));

    define(s, 16, "transformer.h[1].all().output[0][:, 0] = 0");
    gb_val *every = gb_val_index_at(gb_getter_at(c, "transformer.h.1", GB_TRACE_OP_OUTPUT, GB_CALL_ALL, SITE, 16), "[0]", SITE, 16);
    gb_set_index_at(every, "[:, 0]", gb_scalar_at(c, 0, SITE, 16), SITE, 16);

    char *gs = gb_trace_graph(s), *gc = gb_trace_graph(c);
    if (strcmp(gs, gc)) fprintf(stderr, "statements:\n%s\nC:\n%s\n", gs, gc);
    ck_assert_msg(!strcmp(gs, gc), "the graphs differ (printed above)");
    free(gs), free(gc);
    gb_trace_free(s), gb_trace_free(c);
    gb_tensor_free(ids);
    gb_module_free(model);
}
END_TEST

/* The walkthrough's setting steps, written as statements, against PyTorch
 * forward hooks doing the same edits. */
START_TEST(test_statements_run_with_oracle_numbers) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");

    gb_trace *tr = gb_trace_new(net, x);
    gb_val *out;
    define(tr, 1, "layer1.output = layer1.output * 2");
    gbt_ok_status(gb_trace_statement(tr, "model.output.save()", SITE, 2, &out));
    gbt_ok_status(gb_trace_run(tr));
    gbt_assert_saved_close(out, o, "set.out");
    gb_trace_free(tr);

    tr = gb_trace_new(net, x);
    gb_val *l1;
    define(tr, 1, "layer1.output[:, 0:3] = -1");
    gbt_ok_status(gb_trace_statement(tr, "l1 = layer1.output.save()", SITE, 2, &l1));
    gbt_ok_status(gb_trace_statement(tr, "layer2.output.save()", SITE, 3, &out));
    FILE *log = tmpfile();
    gb_trace_set_log(tr, log);
    define(tr, 4, "log(\"layer1:\", l1)");
    gbt_ok_status(gb_trace_run(tr));
    gbt_assert_saved_close(l1, o, "set_index.l1");
    gbt_assert_saved_close(out, o, "set_index.out");
    fclose(log);
    gb_trace_free(tr);

    /* The unedited log line, byte for byte as Python prints it. */
    tr = gb_trace_new(net, x);
    log = tmpfile();
    gb_trace_set_log(tr, log);
    define(tr, 1, "print('layer1:', layer1.output)");
    gbt_ok_status(gb_trace_run(tr));
    fflush(log);
    long n = ftell(log);
    char *text = calloc(1, (size_t)n + 1);
    rewind(log);
    ck_assert_int_eq(fread(text, 1, (size_t)n, log), (size_t)n);
    gb_tensor *want = gbt_get(o, "log");
    ck_assert_int_eq(gb_tensor_numel(want), n);
    ck_assert(!memcmp(text, gb_tensor_data(want), (size_t)n));
    gb_tensor_free(want);
    free(text);
    fclose(log);
    gb_trace_free(tr);

    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* A statement that fails: status, message (site, line, column, what), and
 * for syntax errors an untouched graph. */
static void expect_fails(gb_trace *tr, const char *text, gb_status status, const char *needle) {
    char *before = gb_trace_graph(tr);
    gb_val *v = (gb_val *)1;
    gb_status st = gb_trace_statement(tr, text, SITE, 7, &v);
    ck_assert_msg(st == status, "'%s' returned %s (%s)", text, gb_status_name(st), gb_last_error());
    ck_assert_ptr_null(v);
    ck_assert_msg(!strncmp(gb_last_error(), SITE ":7: ", 8), "'%s' does not start with the site", gb_last_error());
    ck_assert_msg(strstr(gb_last_error(), needle), "'%s' does not contain '%s'", gb_last_error(), needle);
    char *after = gb_trace_graph(tr);
    if (status == GB_ERR_ARG) ck_assert_str_eq(before, after); /* syntax errors define nothing */
    free(before), free(after);
}

START_TEST(test_statement_errors) {
    gb_module *model = small_gpt2();
    gb_tensor *ids = gb_zeros(2, (int64_t[]){1, 4}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(model, ids);
    define(tr, 1, "h = transformer.h[0].output[0]");
    expect_fails(tr, "transformer.h[0].output[0] +", GB_ERR_ARG, "expected a module path, a name or a number at column 29");
    expect_fails(tr, "transformer.h[0]", GB_ERR_ARG, "a module is not a value: add .output or .input");
    expect_fails(tr, "h.frobnicate()", GB_ERR_ARG, "unknown method (save, clone");
    expect_fails(tr, "h.sum(keepdim=1)", GB_ERR_ARG, "keepdim is True or False");
    expect_fails(tr, "h.max()", GB_ERR_ARG, "this method needs one dim");
    expect_fails(tr, "h.softmax()", GB_ERR_ARG, "this method needs a dim");
    expect_fails(tr, "h.exp(1)", GB_ERR_ARG, "this method takes no arguments");
    expect_fails(tr, "h.topk(dim=1, 2)", GB_ERR_ARG, "positional argument follows keyword argument");
    expect_fails(tr, "h.topk(2, dim=1, k=3)", GB_ERR_ARG, "multiple values for an argument");
    expect_fails(tr, "torch.cat([h, h], 0, 1)", GB_ERR_ARG, "too many arguments (tensors, dim)");
    expect_fails(tr, "torch.frob", GB_ERR_ARG, "expected a function call");
    expect_fails(tr, "h.sum(0, True, 1)", GB_ERR_ARG, "too many arguments (dim, keepdim)");
    expect_fails(tr, "h[0, 1", GB_ERR_ARG, "unclosed '['");
    expect_fails(tr, "transformer.h[x].output", GB_ERR_ARG, "expected an integer index into a module list");
    expect_fails(tr, "h.save() h", GB_ERR_ARG, "unexpected 'h' at column 10");
    expect_fails(tr, "h.size", GB_ERR_ARG, "expected .grad, .shape, .values, .indices or a method call on a value at column 3");
    expect_fails(tr, "h.save() = 1", GB_ERR_ARG, "cannot assign to this: assign to .output, .input, .grad or [index]");
    /* Functions outside the language: nnsight's remote whitelist error, naming the function. */
    expect_fails(tr, "x = my_local_fn(h)", GB_ERR_NOT_FOUND,
                 "function `my_local_fn` is not in the function whitelist, nor a module: module path 'my_local_fn'");
    expect_fails(tr, "torch.frobnicate(h)", GB_ERR_ARG, "function `torch.frobnicate` is not in the function whitelist (log, print, modules, torch./F. functions and methods on values) at column 1");
    /* Nesting is bounded (issue 13: 20,000 minus signs or 60,000
     * parentheses overflowed the stack); the limit, 200, is Python's for
     * parentheses, so anything nested less still parses. */
    struct {
        const char *open, *close;
        int n;
    } deep[] = {{"-", "", 20000}, {"(", ")", 60000}, {"log(", ")", 5000}, {"transformer.h[0].skip(", ")", 5000}};
    for (size_t k = 0; k < sizeof deep / sizeof *deep; k++) {
        size_t lo = strlen(deep[k].open), lc = strlen(deep[k].close);
        char *text = malloc((size_t)deep[k].n * (lo + lc) + 16);
        char *w = text + sprintf(text, "x = ");
        for (int i = 0; i < deep[k].n; i++) w += sprintf(w, "%s", deep[k].open);
        w += sprintf(w, "h");
        for (int i = 0; i < deep[k].n; i++) w += sprintf(w, "%s", deep[k].close);
        expect_fails(tr, text, GB_ERR_ARG, "nested deeper than 200 levels (unary minus, parentheses, calls) at column ");
        ck_assert_msg(strlen(gb_last_error()) < 600, "the message quotes %zu characters", strlen(gb_last_error()));
        free(text);
    }
    define(tr, 2, "y = ------------------------------------------------------------------------------------------(((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((h)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))");
    /* Not syntax: the C API's definition errors, which poison the trace. */
    expect_fails(tr, "transformer.hh[0].output.save()", GB_ERR_NOT_FOUND, "has no submodule 'hh'; nearest: h");
    gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_module_free(model);
}
END_TEST

/* Multi-line blocks (nnsight's `with tracer.cond(...):` and Python's
 * if/elif/else with indented bodies, nested) on the walkthrough's network:
 * each block leaves model.output as the oracle's run of the branch it must
 * take (tests/oracle/trace.py: "set.out" doubles layer1's output,
 * "set_index.out" sets its first three columns to -1, "out" is the plain
 * run). layer1.input.sum() is that of a rand input: between 0 and 5. */
START_TEST(test_blocks_take_their_branch) {
    gbt_oracle *o = gbt_oracle_load("trace");
    gb_module *net = gbt_tiny_net(o);
    gb_tensor *x = gbt_get(o, "input");
    static const struct {
        const char *text, *key;
    } cases[] = {
        {"if layer1.input.sum() > 1e9:\n    layer1.output[:, 0:3] = -1\nelse:\n    layer1.output *= 2", "set.out"},
        {"with tracer.cond(layer1.input.sum() < 1e9):\n    h = layer1.output\n    h[:, 0:3] -= h[:, 0:3] + 1",
         "set_index.out"},
        {"if layer1.input.sum() > 1e9:\n  layer1.output[:, 0:3] = 5\nelif layer1.input.sum() > -1e9:  # taken\n"
         "  layer1.output[:, 0:3] = -1\nelse:\n  layer1.output *= 2",
         "set_index.out"},
        {"if layer1.input.sum() > -1e9:\n\tif layer1.input.sum() > 1e9:\n\t\tlayer1.output[:, 0:3] = 5\n\telse:\n"
         "\t\tlayer1.output *= 2\n\n# a comment, and a blank line above",
         "set.out"},
        {"if layer1.input.sum() > 1e9:\n    layer1.output *= 2\nelif layer1.input.sum() > 1e10:\n    layer1.output *= 2",
         "out"},
        {"with tracer.cond(layer1.input.sum() > 0):\n    with tracer.cond(layer1.input.sum() < 1e9):\n"
         "        layer1.output *= 2\n    with tracer.cond(layer1.input.sum() > 1e9):\n        layer1.output[:, 0:3] = 5",
         "set.out"},
        {"if layer1.input.sum() > 1e9: layer1.output[:, 0:3] = -1\nelse: layer1.output *= 2", "set.out"},
        {"  h = layer1.output  # the first line's indentation is the block's\n  if h.sum() == h.sum():\n"
         "    layer1.output[:, 0:3] = -1",
         "set_index.out"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gb_trace *tr = gb_trace_new(net, x);
        gb_status st = gb_trace_statement(tr, cases[i].text, "block", 1, NULL);
        ck_assert_msg(st == GB_OK, "%s: %s", cases[i].text, gb_last_error());
        gb_val *out;
        gbt_ok_status(gb_trace_statement(tr, "model.output.save()", "block", 20, &out));
        ck_assert_msg(gb_trace_run(tr) == GB_OK, "%s: %s", cases[i].text, gb_last_error());
        gbt_assert_saved_close(out, o, cases[i].key);
        gb_trace_free(tr);
    }
    /* a block's names are the trace's afterwards, and *out is its last value */
    gb_trace *tr = gb_trace_new(net, x);
    gb_val *last;
    gbt_ok_status(gb_trace_statement(tr, "a = layer1.output\nif a.sum() > -1e9:\n    b = (a * 2).save()", "block", 1, &last));
    ck_assert_ptr_eq(last, gb_trace_name(tr, "b"));
    ck_assert_ptr_nonnull(gb_trace_name(tr, "a"));
    gb_trace_free(tr);
    gb_tensor_free(x);
    gb_module_free(net);
    gbt_oracle_free(o);
}
END_TEST

/* Errors in blocks name the line (the statement's line plus the line's
 * index in the text), the column and the line itself, as Python does. */
static void expect_block_fails(gb_trace *tr, const char *text, int line, const char *needle) {
    char *before = gb_trace_graph(tr);
    gb_status st = gb_trace_statement(tr, text, SITE, 7, NULL);
    ck_assert_msg(st == GB_ERR_ARG, "'%s' returned %s (%s)", text, gb_status_name(st), gb_last_error());
    char prefix[32];
    snprintf(prefix, sizeof prefix, SITE ":%d: ", line);
    ck_assert_msg(!strncmp(gb_last_error(), prefix, strlen(prefix)), "'%s' does not start with '%s'", gb_last_error(), prefix);
    ck_assert_msg(strstr(gb_last_error(), needle), "'%s' does not contain '%s'", gb_last_error(), needle);
    char *after = gb_trace_graph(tr);
    ck_assert_str_eq(before, after); /* nothing of the block is defined */
    free(before), free(after);
}

START_TEST(test_block_errors) {
    gb_module *model = small_gpt2();
    gb_tensor *ids = gb_zeros(2, (int64_t[]){1, 4}, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(model, ids);
    define(tr, 1, "h = transformer.h[0].output[0]");
    expect_block_fails(tr, "if h.sum() > 0:", 7, "expected an indented block after 'if' statement on line 7 at column 16 in 'if h.sum() > 0:'");
    expect_block_fails(tr, "if h.sum() > 0:\nh.save()", 7, "expected an indented block after 'if' statement on line 7");
    expect_block_fails(tr, "with tracer.cond(h.sum() > 0):\n\n# only a comment", 7,
                       "expected an indented block after 'with' statement on line 7");
    expect_block_fails(tr, "x = h * 2\n    x.save()", 8, "unexpected indent at column 5 in '    x.save()'");
    expect_block_fails(tr, "if h.sum() > 0:\n    x = h\n  x.save()", 9,
                       "unindent does not match any outer indentation level at column 3 in '  x.save()'");
    expect_block_fails(tr, "else:\n    h.save()", 7, "'else' without an 'if' before it at column 1");
    expect_block_fails(tr, "with tracer.cond(h.sum() > 0):\n    h.save()\nelse:\n    h.save()", 9,
                       "'else' without an 'if' before it at column 1 in 'else:'");
    expect_block_fails(tr, "if h.sum() > 0:\n    x = h\nelif h.sum() < 0\n    x = h", 9, "expected ':' at column 17");
    expect_block_fails(tr, "if h.sum() > 0:\n    x = h * 2\n    y = x +\nz = x", 9, "expected a module path, a name or a number at column 12 in '    y = x +'");
    expect_block_fails(tr, "x = h\n\n\ny = x.frobnicate()", 10, "unknown method");
    expect_block_fails(tr, "\n  # nothing\n", 7, "expected a statement (the text is empty or only comments)");
    /* names bound by a block's earlier lines are known to its later ones,
     * also while its syntax is checked; a later error still defines nothing */
    expect_block_fails(tr, "fresh = h * 2\nfresh.save()\nfresh +", 9, "expected a module path");
    ck_assert_ptr_null(gb_trace_name(tr, "fresh"));
    define(tr, 2, "fresh = h * 2\nfresh.save()");
    /* nesting is bounded: 300 levels of if, each indented one more space */
    size_t cap = 300 * 320 + 64;
    char *deep = malloc(cap), *w = deep;
    for (int i = 0; i < 300; i++) w += sprintf(w, "%*sif h.sum() > 0:\n", i, "");
    sprintf(w, "%*sh.save()", 300, "");
    expect_block_fails(tr, deep, 7 + 201, "blocks nested deeper than 200 levels at column 202");
    free(deep);
    gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_module_free(model);
}
END_TEST

Suite *gb_suite_statement(void) {
    Suite *s = suite_create("statement");
    TCase *tc = tcase_create("statement");
    tcase_add_test(tc, test_statements_build_the_c_graph);
    tcase_add_test(tc, test_statements_run_with_oracle_numbers);
    tcase_add_test(tc, test_statement_errors);
    tcase_add_test(tc, test_blocks_take_their_branch);
    tcase_add_test(tc, test_block_errors);
    suite_add_tcase(s, tc);
    return s;
}
