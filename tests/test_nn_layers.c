/* nn building blocks (nn/layers.c): print() byte for byte, forward and
 * gradients against PyTorch on the same weights (tests/oracle/nn_layers.py),
 * PyTorch's reset_parameters() distributions, and errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gbtest.h"
#include "tensor/tensor_impl.h" /* gb__meta_push/pop: shape-only modules */

/* A string stored by the oracle as the uint8 tensor of its bytes. */
static void assert_repr(gb_module *m, gbt_oracle *o, const char *key) {
    gbt_ok(m);
    char *want = gbt_get_str(o, key), *got = gb_module_repr(m);
    ck_assert_msg(!strcmp(got, want), "%s:\n got: %s\nwant: %s", key, got, want);
    free(want), free(got);
    gb_module_free(m);
}

START_TEST(test_repr_matches_torch) {
    gbt_oracle *o = gbt_oracle_load("nn_layers");
    gb__meta_push(); /* shape-only parameters: GPT-2 sized layers without allocating them */
    /* The walkthrough's tiny model (the oracle's text is real torch's print). */
    assert_repr(gb_sequential(2, (const char *[]){"layer1", "layer2"},
                              (gb_module *[]){gb_nn_linear(5, 10, true), gb_nn_linear(10, 2, true)}),
                o, "repr.sequential");
    assert_repr(gb_nn_linear(5, 10, true), o, "repr.linear");
    assert_repr(gb_nn_linear(768, 50257, false), o, "repr.linear_nobias");
    assert_repr(gb_nn_conv1d(2304, 768), o, "repr.conv1d");
    assert_repr(gb_nn_embedding(50257, 768), o, "repr.embedding");
    assert_repr(gb_nn_layer_norm(768, 1e-5f, true), o, "repr.layer_norm");
    assert_repr(gb_nn_layer_norm(16, 1e-6f, false), o, "repr.layer_norm_plain");
    assert_repr(gb_nn_rms_norm(64, 1e-5f), o, "repr.rms_norm");
    assert_repr(gb_nn_rms_norm(2048, 1e-6f), o, "repr.rms_norm_6");
    assert_repr(gb_nn_dropout(0.1f), o, "repr.dropout");
    assert_repr(gb_nn_dropout(0.0f), o, "repr.dropout_0");
    assert_repr(gb_nn_dropout(0.5f), o, "repr.dropout_half");
    const char *acts[] = {"gelu", "gelu_new", "silu", "swish", "relu"};
    for (int i = 0; i < 5; i++) {
        char key[64];
        snprintf(key, sizeof key, "repr.act_%s", acts[i]);
        assert_repr(gb_nn_activation(acts[i]), o, key);
    }
    gb__meta_pop();
    gbt_oracle_free(o);
}
END_TEST

/* ---- forward and backward against torch --------------------------------- */

typedef struct layer_case {
    const char *key;
    gb_module *(*make)(const struct layer_case *c);
    int64_t a, b;
    float eps;
    const char *act;
} layer_case;

static gb_module *mk_linear(const layer_case *c) { return gb_nn_linear(c->a, c->b, c->eps != 0); }
static gb_module *mk_conv1d(const layer_case *c) { return gb_nn_conv1d(c->a, c->b); }
static gb_module *mk_embedding(const layer_case *c) { return gb_nn_embedding(c->a, c->b); }
static gb_module *mk_layer_norm(const layer_case *c) { return gb_nn_layer_norm(c->a, c->eps, c->b != 0); }
static gb_module *mk_rms_norm(const layer_case *c) { return gb_nn_rms_norm(c->a, c->eps); }
static gb_module *mk_act(const layer_case *c) { return gb_nn_activation(c->act); }

/* Keys and sizes as in tests/oracle/nn_layers.py (Linear: eps != 0 means bias). */
static const layer_case cases[] = {
    {"linear", mk_linear, 5, 10, 1, NULL},
    {"linear_nobias", mk_linear, 4, 3, 0, NULL},
    {"conv1d", mk_conv1d, 6, 4, 0, NULL},
    {"embedding", mk_embedding, 10, 4, 0, NULL},
    {"layer_norm", mk_layer_norm, 8, 1, 1e-5f, NULL},
    {"layer_norm_plain", mk_layer_norm, 8, 0, 1e-6f, NULL},
    {"rms_norm", mk_rms_norm, 8, 0, 1e-6f, NULL},
    {"act_gelu", mk_act, 0, 0, 0, "gelu"},
    {"act_gelu_new", mk_act, 0, 0, 0, "gelu_new"},
    {"act_silu", mk_act, 0, 0, 0, "silu"},
    {"act_swish", mk_act, 0, 0, 0, "swish"},
    {"act_relu", mk_act, 0, 0, 0, "relu"},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

START_TEST(test_forward_and_backward_match_torch) {
    const layer_case *c = &cases[_i];
    gbt_oracle *o = gbt_oracle_load("nn_layers");
    gb_module *m = c->make(c);
    gbt_ok(m);
    for (int i = 0; i < gb_module_num_params(m); i++) {
        const char *name = gb_module_param_name(m, i);
        gb_tensor *p = gbt_getf(o, "%s.%s", c->key, name);
        gbt_ok_status(gb_module_set_param(m, name, p));
        gb_tensor_free(p);
    }
    gbt_ok_status(gb_module_requires_grad_(m, true));
    gb_tensor *x = gbt_getf(o, "%s.x", c->key), *want = gbt_getf(o, "%s.y", c->key);
    gb_tensor *r = gbt_getf(o, "%s.r", c->key), *y = NULL;
    bool float_in = gb_tensor_dtype(x) == GB_DTYPE_F32;
    if (float_in) gbt_ok_status(gb_requires_grad_(x, true));
    gbt_ok_status(gb_module_run(m, NULL, x, &y));
    char what[96];
    snprintf(what, sizeof what, "%s forward", c->key);
    gbt_assert_close(y, want, 1e-5, 1e-5, what);

    gb_tensor *yr = gb_mul(y, r), *loss = gb_sum_all(yr);
    gbt_ok_status(gb_backward(loss, NULL, false));
    if (float_in) {
        gb_tensor *gx = gbt_getf(o, "%s.grad.x", c->key);
        snprintf(what, sizeof what, "%s d/dx", c->key);
        gbt_assert_close(gb_tensor_grad(x), gx, 1e-4, 1e-5, what);
        gb_tensor_free(gx);
    }
    for (int i = 0; i < gb_module_num_params(m); i++) {
        const char *name = gb_module_param_name(m, i);
        gb_tensor *g = gbt_getf(o, "%s.grad.%s", c->key, name);
        snprintf(what, sizeof what, "%s d/d%s", c->key, name);
        gbt_assert_close(gb_tensor_grad(gb_module_param(m, name)), g, 1e-4, 1e-5, what);
        gb_tensor_free(g);
    }
    gb_tensor_free(yr), gb_tensor_free(loss), gb_tensor_free(y), gb_tensor_free(r), gb_tensor_free(want);
    gb_tensor_free(x);
    gb_module_free(m);
    gbt_oracle_free(o);
}
END_TEST

/* Dropout is the identity in eval mode, as torch's module.eval(). */
START_TEST(test_dropout_is_identity) {
    gb_module *d = gb_nn_dropout(0.5f);
    gb_tensor *x = gb_arange(0, 6, 1), *y = NULL;
    gbt_ok_status(gb_module_run(d, NULL, x, &y));
    gbt_assert_close(y, x, 0, 0, "dropout");
    gb_tensor_free(y), gb_tensor_free(x);
    gb_module_free(d);
}
END_TEST

/* ---- init: PyTorch's reset_parameters() distributions -------------------- */

static void stats(const gb_tensor *t, double *mean, double *std, double *maxabs) {
    const float *p = gb_tensor_data(t);
    int64_t n = gb_tensor_numel(t);
    double s = 0, s2 = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        s += p[i], s2 += (double)p[i] * p[i];
        if (fabs(p[i]) > mx) mx = fabs(p[i]);
    }
    *mean = s / n, *std = sqrt(s2 / n - *mean * *mean), *maxabs = mx;
}

START_TEST(test_init_distributions) {
    double mean, std, mx;
    /* Linear(400, 300): weight and bias U(-1/sqrt(400), 1/sqrt(400)) = U(-0.05, 0.05):
     * std 0.05/sqrt(3) = 0.02887. */
    gb_module *lin = gb_nn_linear(400, 300, true);
    gb_module_init(lin, 7);
    stats(gb_module_param(lin, "weight"), &mean, &std, &mx);
    ck_assert_msg(mx <= 0.05 && mx > 0.0499 && fabs(mean) < 1e-3 && fabs(std - 0.02887) < 5e-4,
                  "Linear weight: mean %g std %g max %g", mean, std, mx);
    stats(gb_module_param(lin, "bias"), &mean, &std, &mx);
    ck_assert_msg(mx <= 0.05 && mx > 0.04 && fabs(std - 0.02887) < 4e-3, "Linear bias: std %g max %g", std, mx);
    /* Same seed, same values; another seed, other values. */
    gb_module *lin2 = gb_nn_linear(400, 300, true);
    gb_module_init(lin2, 7);
    gbt_assert_close(gb_module_param(lin2, "weight"), gb_module_param(lin, "weight"), 0, 0, "same seed");
    gb_module_init(lin2, 8);
    ck_assert(gb_tensor_f32(gb_module_param(lin2, "weight"))[0] != gb_tensor_f32(gb_module_param(lin, "weight"))[0]);
    /* Embedding: N(0, 1). Conv1D: N(0, 0.02), bias 0 (Hugging Face's Conv1D.__init__). */
    gb_module *emb = gb_nn_embedding(1000, 64);
    gb_module_init(emb, 1);
    stats(gb_module_param(emb, "weight"), &mean, &std, &mx);
    ck_assert_msg(fabs(mean) < 0.02 && fabs(std - 1.0) < 0.02, "Embedding: mean %g std %g", mean, std);
    gb_module *conv = gb_nn_conv1d(300, 200);
    gb_module_init(conv, 2);
    stats(gb_module_param(conv, "weight"), &mean, &std, &mx);
    ck_assert_msg(fabs(mean) < 5e-4 && fabs(std - 0.02) < 5e-4, "Conv1D: mean %g std %g", mean, std);
    stats(gb_module_param(conv, "bias"), &mean, &std, &mx);
    ck_assert(mx == 0);
    /* LayerNorm: ones and zeros; LlamaRMSNorm: ones (after being set to something else). */
    gb_module *ln = gb_nn_layer_norm(5, 1e-5f, true), *rms = gb_nn_rms_norm(5, 1e-6f);
    gb_fill_(gb_module_param(ln, "bias"), 3.0f);
    gb_module_init(ln, 0);
    gb_module_init(rms, 0);
    gb_tensor *ones = gb_ones(1, (int64_t[]){5}, GB_DTYPE_F32), *zeros = gb_zeros(1, (int64_t[]){5}, GB_DTYPE_F32);
    gbt_assert_close(gb_module_param(ln, "weight"), ones, 0, 0, "LayerNorm weight");
    gbt_assert_close(gb_module_param(ln, "bias"), zeros, 0, 0, "LayerNorm bias");
    gbt_assert_close(gb_module_param(rms, "weight"), ones, 0, 0, "LlamaRMSNorm weight");
    gb_tensor_free(ones), gb_tensor_free(zeros);
    gb_module_free(lin), gb_module_free(lin2), gb_module_free(emb), gb_module_free(conv);
    gb_module_free(ln), gb_module_free(rms);
}
END_TEST

START_TEST(test_parameter_names_and_shapes) {
    gb_module *c = gb_nn_conv1d(6, 4); /* Hugging Face: weight [nx, nf], bias [nf] */
    ck_assert_str_eq(gb_module_param_name(c, 0), "weight");
    ck_assert_str_eq(gb_module_param_name(c, 1), "bias");
    ck_assert_int_eq(gb_tensor_dim(gb_module_param(c, "weight"), 0), 4);
    ck_assert_int_eq(gb_tensor_dim(gb_module_param(c, "weight"), 1), 6);
    ck_assert_int_eq(gb_tensor_dim(gb_module_param(c, "bias"), 0), 6);
    gb_module *l = gb_nn_linear(5, 10, false); /* torch: weight [out, in], no bias */
    ck_assert_int_eq(gb_module_num_params(l), 1);
    ck_assert_int_eq(gb_tensor_dim(gb_module_param(l, "weight"), 0), 10);
    ck_assert_ptr_null(gb_module_param(l, "bias"));
    gb_module *n = gb_nn_layer_norm(8, 1e-5f, false);
    ck_assert_int_eq(gb_module_num_params(n), 0);
    gb_module_free(c), gb_module_free(l), gb_module_free(n);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_errors) {
    gbt_fails_with(gb_nn_activation("gelu_fast") == NULL, GB_ERR_UNSUPPORTED, "'gelu_fast' not found in ACT2FN");
    gbt_fails_with(gb_nn_activation(NULL) == NULL, GB_ERR_UNSUPPORTED, "not found in ACT2FN");
    gbt_fails_with(gb_nn_dropout(1.5f) == NULL, GB_ERR_ARG, "between 0 and 1, but got 1.5");
    gbt_fails_with(gb_nn_linear(-1, 3, true) == NULL, GB_ERR_ARG, "in_features=-1");

    gb_module *net = gb_sequential(2, (const char *[]){"layer1", "layer2"},
                                   (gb_module *[]){gb_nn_linear(5, 10, true), gb_nn_linear(10, 2, true)});
    gb_tensor *y = NULL;
    gb_tensor *x3 = gb_ones(2, (int64_t[]){1, 3}, GB_DTYPE_F32);
    gbt_fails_with(gb_module_run(net, NULL, x3, &y) != GB_OK, GB_ERR_SHAPE,
                   "layer1 (Linear): linear: mat1 and mat2 shapes cannot be multiplied (1x3 and 5x10)");
    ck_assert_ptr_null(y);
    gb_tensor *xi = gb_arange_i64(0, 5, 1);
    gbt_fails_with(gb_module_run(net, NULL, xi, &y) != GB_OK, GB_ERR_DTYPE,
                   "layer1 (Linear): linear: expected input of dtype float32 (or float16, bfloat16), got int64");

    gb_module *conv = gb_nn_conv1d(6, 4);
    gbt_fails_with(gb_module_run(conv, NULL, x3, &y) != GB_OK, GB_ERR_SHAPE,
                   "<root> (Conv1D): input of shape [1, 3] does not end in nx=4 features");
    gb_module *ln = gb_nn_layer_norm(4, 1e-5f, true);
    gbt_fails_with(gb_module_run(ln, NULL, x3, &y) != GB_OK, GB_ERR_SHAPE,
                   "Given normalized_shape=[4], expected input with shape [*, 4], but got input of size[1, 3]");
    gb_module *rms = gb_nn_rms_norm(4, 1e-5f);
    gbt_fails_with(gb_module_run(rms, NULL, x3, &y) != GB_OK, GB_ERR_SHAPE,
                   "<root> (LlamaRMSNorm): Given normalized_shape=[4]");
    gb_module *emb = gb_nn_embedding(5, 2);
    gbt_fails_with(gb_module_run(emb, NULL, x3, &y) != GB_OK, GB_ERR_DTYPE,
                   "<root> (Embedding): embedding: expected ids of dtype int64 or int32");
    gb_tensor *big = gb_full(1, (int64_t[]){2}, 5.0f, GB_DTYPE_I64);
    gbt_fails_with(gb_module_run(emb, NULL, big, &y) != GB_OK, GB_ERR_INDEX, "<root> (Embedding): embedding");
    gb_module *act = gb_nn_activation("relu");
    gbt_fails_with(gb_module_run(act, NULL, xi, &y) != GB_OK, GB_ERR_DTYPE, "<root> (ReLU)");
    /* No input at all. */
    gb_run *run = gb_run_new();
    gb_values none = {0}, out = {0};
    gbt_fails_with(gb_module_call(ln, run, &none, &out) != GB_OK, GB_ERR_ARG,
                   "<root> (LayerNorm): expects one input tensor, got 0 input tensors");
    /* set_param checks the shape. */
    gbt_fails_with(gb_module_set_param(conv, "weight", x3) != GB_OK, GB_ERR_SHAPE, "weight has shape [4, 6]");
    gb_run_free(run);
    gb_tensor_free(x3), gb_tensor_free(xi), gb_tensor_free(big);
    gb_module_free(net), gb_module_free(conv), gb_module_free(ln), gb_module_free(rms), gb_module_free(emb);
    gb_module_free(act);
}
END_TEST

Suite *gb_suite_nn_layers(void) {
    Suite *s = suite_create("nn_layers");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, test_repr_matches_torch);
    tcase_add_loop_test(tc, test_forward_and_backward_match_torch, 0, NCASES);
    tcase_add_test(tc, test_dropout_is_identity);
    tcase_add_test(tc, test_init_distributions);
    tcase_add_test(tc, test_parameter_names_and_shapes);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}
