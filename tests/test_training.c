/* Autograd on compositions (against PyTorch) and training small models. */
#include <math.h>

#include "gbtest.h"

static void grad_of(gb_tensor *p) { gb_requires_grad_(p, true); }

/* 1. Two-layer MLP with cross-entropy. */
START_TEST(test_mlp_cross_entropy_grads) {
    gbt_oracle *o = gbt_oracle_load("autograd_compose");
    gb_tensor *x = gbt_get(o, "mlp.x"), *w1 = gbt_get(o, "mlp.w1"), *b1 = gbt_get(o, "mlp.b1"),
              *w2 = gbt_get(o, "mlp.w2"), *b2 = gbt_get(o, "mlp.b2"), *t = gbt_get(o, "mlp.t");
    gb_tensor *ps[] = {x, w1, b1, w2, b2};
    const char *names[] = {"x", "w1", "b1", "w2", "b2"};
    for (int i = 0; i < 5; i++) grad_of(ps[i]);
    gb_tensor *h = gb_linear(x, w1, b1), *a = gb_gelu(h), *z = gb_linear(a, w2, b2);
    gb_tensor *loss = gb_cross_entropy(z, t, -100);
    gbt_ok(loss);
    gb_tensor *want_loss = gbt_get(o, "mlp.loss"), *l1 = gb_reshape(loss, 1, (int64_t[]){1});
    gbt_assert_close(l1, want_loss, 1e-5, 1e-7, "mlp loss");
    gbt_ok_status(gb_backward(loss, NULL, false));
    for (int i = 0; i < 5; i++) {
        gb_tensor *want = gbt_getf(o, "mlp.grad.%s", names[i]);
        gbt_assert_close(gb_tensor_grad(ps[i]), want, 1e-4, 1e-6, names[i]);
        gb_tensor_free(want);
    }
    gb_tensor_free(l1), gb_tensor_free(want_loss), gb_tensor_free(loss), gb_tensor_free(z), gb_tensor_free(a),
        gb_tensor_free(h);
    for (int i = 0; i < 5; i++) gb_tensor_free(ps[i]);
    gb_tensor_free(t);
    gbt_oracle_free(o);
}
END_TEST

/* 2. layer norm -> causal attention -> MLP, with residuals; L = sum(out * r). */
enum { B = 2, T = 5, C = 8, H = 2, D = 4 };

static gb_tensor *heads(gb_tensor *h, gb_tensor *w) { /* [B, T, C] -> [B, H, T, D] */
    gb_tensor *l = gb_linear(h, w, NULL), *v = gb_reshape(l, 4, (int64_t[]){B, T, H, D}), *t = gb_transpose(v, 1, 2);
    gb_tensor_free(l), gb_tensor_free(v);
    return t;
}

START_TEST(test_attention_block_grads) {
    gbt_oracle *o = gbt_oracle_load("autograd_compose");
    const char *names[] = {"x", "ln_w", "ln_b", "wq", "wk", "wv", "wo", "w_fc", "b_fc", "w_proj"};
    enum { N = 10 };
    gb_tensor *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = gbt_getf(o, "blk.%s", names[i]);
        grad_of(p[i]);
    }
    gb_tensor *h = gb_layer_norm(p[0], p[1], p[2], 1e-5f);
    gb_tensor *q = heads(h, p[3]), *k = heads(h, p[4]), *v = heads(h, p[5]);
    gb_tensor *kt = gb_transpose(k, -1, -2), *s = gb_matmul(q, kt), *ss = gb_mul_scalar(s, 1.0f / sqrtf((float)D));
    gb_tensor *ones = gb_ones(2, (int64_t[]){T, T}, GB_DTYPE_F32), *up = gb_triu(ones, 1), *mask = gb_gt_scalar(up, 0.5f);
    gb_tensor *masked = gb_masked_fill(ss, mask, -INFINITY), *att = gb_softmax(masked, -1);
    gb_tensor *y = gb_matmul(att, v), *yt = gb_transpose(y, 1, 2), *yc = gb_reshape(yt, 3, (int64_t[]){B, T, C});
    gb_tensor *proj = gb_linear(yc, p[6], NULL), *x1 = gb_add(p[0], proj);
    gb_tensor *fc = gb_linear(x1, p[7], p[8]), *act = gb_gelu_tanh(fc), *mlp = gb_linear(act, p[9], NULL);
    gb_tensor *out = gb_add(x1, mlp);
    gb_tensor *want_out = gbt_get(o, "blk.out"), *r = gbt_get(o, "blk.r");
    gbt_assert_close(out, want_out, 1e-5, 1e-5, "block output");
    gbt_ok_status(gb_backward(out, r, false));
    for (int i = 0; i < N; i++) {
        gb_tensor *want = gbt_getf(o, "blk.grad.%s", names[i]);
        gbt_assert_close(gb_tensor_grad(p[i]), want, 1e-4, 1e-5, names[i]);
        gb_tensor_free(want);
    }
    gb_tensor *all[] = {h, q, k, v, kt, s, ss, ones, up, mask, masked, att, y, yt, yc, proj, x1, fc, act, mlp, out,
                        want_out, r};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
    for (int i = 0; i < N; i++) gb_tensor_free(p[i]);
    gbt_oracle_free(o);
}
END_TEST

/* 3. The walkthrough's network: frozen weights, layer1's output switched to
 *    requires_grad after it is computed; layer2's output gradient is ones. */
START_TEST(test_walkthrough_tiny_grads) {
    gbt_oracle *o = gbt_oracle_load("autograd_compose");
    gb_tensor *w1 = gbt_get(o, "tiny.w1"), *b1 = gbt_get(o, "tiny.b1"), *w2 = gbt_get(o, "tiny.w2"),
              *b2 = gbt_get(o, "tiny.b2"), *x = gbt_get(o, "tiny.x");
    gb_tensor *l1 = gb_linear(x, w1, b1);
    ck_assert(gb_tensor_is_leaf(l1) && !gb_tensor_requires_grad(l1));
    gbt_ok_status(gb_requires_grad_(l1, true));
    gb_tensor *l2 = gb_linear(l1, w2, b2);
    gbt_ok_status(gb_retain_grad(l2));
    gb_tensor *loss = gb_sum_all(l2);
    gbt_ok_status(gb_backward(loss, NULL, false));
    gb_tensor *g1 = gbt_get(o, "tiny.grad.l1"), *g2 = gbt_get(o, "tiny.grad.l2");
    gbt_assert_close(gb_tensor_grad(l1), g1, 1e-5, 1e-7, "layer1.output.grad");
    gbt_assert_close(gb_tensor_grad(l2), g2, 0, 0, "layer2.output.grad (ones)");
    ck_assert_ptr_null(gb_tensor_grad(w1)); /* frozen */
    gb_tensor *all[] = {w1, b1, w2, b2, x, l1, l2, loss, g1, g2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
    gbt_oracle_free(o);
}
END_TEST

/* 4. AdamW while training the MLP: the parameter trajectory matches torch. */
START_TEST(test_adamw_training_trajectory) {
    gbt_oracle *o = gbt_oracle_load("autograd_compose");
    gb_tensor *x = gbt_get(o, "mlp.x"), *t = gbt_get(o, "mlp.t");
    const char *names[] = {"w1", "b1", "w2", "b2"};
    gb_tensor *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = gbt_getf(o, "mlp.%s", names[i]);
        grad_of(p[i]);
    }
    gb_adamw_opts opts = gb_adamw_defaults();
    opts.lr = 1e-2f;
    opts.weight_decay = 0.05f;
    gb_optim *opt = gb_adamw_new(4, p, opts);
    gbt_ok(opt);
    for (int step = 0; step < 10; step++) {
        gb_optim_zero_grad(opt);
        gb_tensor *h = gb_linear(x, p[0], p[1]), *a = gb_gelu(h), *z = gb_linear(a, p[2], p[3]);
        gb_tensor *loss = gb_cross_entropy(z, t, -100);
        gbt_ok_status(gb_backward(loss, NULL, false));
        gbt_ok_status(gb_optim_step(opt));
        for (int i = 0; i < 4; i++) {
            gb_tensor *want = gbt_getf(o, "adamw.%d.%s", step, names[i]);
            char what[64];
            snprintf(what, sizeof what, "step %d %s", step, names[i]);
            gbt_assert_close(p[i], want, 1e-5, 1e-5, what);
            gb_tensor_free(want);
        }
        gb_tensor_free(loss), gb_tensor_free(z), gb_tensor_free(a), gb_tensor_free(h);
    }
    gb_optim_free(opt);
    for (int i = 0; i < 4; i++) gb_tensor_free(p[i]);
    gb_tensor_free(x), gb_tensor_free(t);
    gbt_oracle_free(o);
}
END_TEST

/* A 2-layer tanh MLP, parameters initialised from a seeded normal. */
typedef struct {
    gb_tensor *w1, *b1, *w2, *b2;
} mlp;

static mlp mlp_new(int in, int hidden, int out, uint64_t seed) {
    gb_rng r = gb_rng_seed(seed);
    mlp m = {gb_randn(&r, 2, (int64_t[]){hidden, in}, 0, 1.0f / sqrtf((float)in)), gb_zeros(1, (int64_t[]){hidden}, GB_DTYPE_F32),
             gb_randn(&r, 2, (int64_t[]){out, hidden}, 0, 1.0f / sqrtf((float)hidden)), gb_zeros(1, (int64_t[]){out}, GB_DTYPE_F32)};
    gb_tensor *ps[] = {m.w1, m.b1, m.w2, m.b2};
    for (int i = 0; i < 4; i++) grad_of(ps[i]);
    return m;
}

static gb_tensor *mlp_forward(mlp *m, gb_tensor *x) {
    gb_tensor *h = gb_linear(x, m->w1, m->b1), *a = gb_tanh(h), *y = gb_linear(a, m->w2, m->b2);
    gb_tensor_free(h), gb_tensor_free(a);
    return y;
}

static void mlp_free(mlp *m) { gb_tensor_free(m->w1), gb_tensor_free(m->b1), gb_tensor_free(m->w2), gb_tensor_free(m->b2); }

/* XOR is not linearly separable: the hidden layer must learn it. Stated
 * target: cross-entropy below 0.05 and all four points right after 300 steps
 * of SGD with momentum (it reaches about 1e-3 in practice). */
START_TEST(test_learns_xor_with_sgd) {
    const float xs[] = {0, 0, 0, 1, 1, 0, 1, 1};
    const int64_t ys[] = {0, 1, 1, 0};
    gb_tensor *x = gb_from_data(xs, 2, (int64_t[]){4, 2}, GB_DTYPE_F32), *y = gb_from_data(ys, 1, (int64_t[]){4}, GB_DTYPE_I64);
    mlp m = mlp_new(2, 8, 2, 3);
    gb_tensor *ps[] = {m.w1, m.b1, m.w2, m.b2};
    gb_optim *opt = gb_sgd_new(4, ps, (gb_sgd_opts){.lr = 0.2f, .momentum = 0.9f});
    double loss_value = 0;
    for (int step = 0; step < 300; step++) {
        gb_optim_zero_grad(opt);
        gb_tensor *z = mlp_forward(&m, x), *loss = gb_cross_entropy(z, y, -100);
        gbt_ok_status(gb_backward(loss, NULL, false));
        gb_item(loss, &loss_value);
        gbt_ok_status(gb_optim_step(opt));
        gb_tensor_free(loss), gb_tensor_free(z);
    }
    ck_assert_msg(loss_value < 0.05, "XOR loss after 300 steps: %g", loss_value);
    gb_tensor *z = mlp_forward(&m, x), *pred = gb_argmax(z, -1, false);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(((int64_t *)gb_tensor_data(pred))[i], ys[i]);
    gb_tensor_free(pred), gb_tensor_free(z);
    gb_optim_free(opt);
    mlp_free(&m);
    gb_tensor_free(x), gb_tensor_free(y);
}
END_TEST

/* Regression of sin on [-3, 3] with AdamW and mean squared error. Stated
 * target: MSE below 5e-3 after 1500 steps (sin has variance ~0.5 here, so
 * this is a fit, not a constant). */
START_TEST(test_learns_regression_with_adamw) {
    enum { N = 64 };
    float xs[N], ys[N];
    for (int i = 0; i < N; i++) xs[i] = -3.0f + 6.0f * (float)i / (N - 1), ys[i] = sinf(xs[i]);
    gb_tensor *x = gb_from_data(xs, 2, (int64_t[]){N, 1}, GB_DTYPE_F32), *y = gb_from_data(ys, 2, (int64_t[]){N, 1}, GB_DTYPE_F32);
    mlp m = mlp_new(1, 32, 1, 4);
    gb_tensor *ps[] = {m.w1, m.b1, m.w2, m.b2};
    gb_adamw_opts opts = gb_adamw_defaults();
    opts.lr = 1e-2f;
    opts.weight_decay = 0;
    gb_optim *opt = gb_adamw_new(4, ps, opts);
    double mse = 0;
    for (int step = 0; step < 1500; step++) {
        gb_optim_zero_grad(opt);
        gb_tensor *z = mlp_forward(&m, x), *d = gb_sub(z, y), *sq = gb_pow_scalar(d, 2), *loss = gb_mean_all(sq);
        gbt_ok_status(gb_backward(loss, NULL, false));
        gb_item(loss, &mse);
        gbt_ok_status(gb_optim_step(opt));
        gb_tensor_free(loss), gb_tensor_free(sq), gb_tensor_free(d), gb_tensor_free(z);
    }
    ck_assert_msg(mse < 5e-3, "sin regression MSE after 1500 steps: %g", mse);
    gb_optim_free(opt);
    mlp_free(&m);
    gb_tensor_free(x), gb_tensor_free(y);
}
END_TEST

Suite *gb_suite_training(void) {
    Suite *s = suite_create("training");
    TCase *tc = tcase_create("training");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_mlp_cross_entropy_grads);
    tcase_add_test(tc, test_attention_block_grads);
    tcase_add_test(tc, test_walkthrough_tiny_grads);
    tcase_add_test(tc, test_adamw_training_trajectory);
    tcase_add_test(tc, test_learns_xor_with_sgd);
    tcase_add_test(tc, test_learns_regression_with_adamw);
    suite_add_tcase(s, tc);
    return s;
}
