/* Autograd engine: recording, backward walk, accumulation, hooks, modes,
 * retain_graph, errors, memory. Op gradients are tested with their ops. */
#include <math.h>

#include "gbtest.h"
#include "tensor/tensor_impl.h"

static gb_tensor *leaf(int ndim, const int64_t *shape, uint64_t seed) {
    gb_rng r = gb_rng_seed(seed);
    gb_tensor *t = gb_randn(&r, ndim, shape, 0.0f, 1.0f);
    gb_requires_grad_(t, true);
    return t;
}

/* A chain of views: permute, slice with step, expand, reshape, select. */
static gb_tensor *view_chain(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    gb_tensor *p = gb_permute(in[0], (int[]){2, 0, 1});     /* [4, 2, 3] */
    gb_tensor *s = gb_slice(p, 0, 1, GB_END, 2);            /* [2, 2, 3] */
    gb_tensor *u = gb_unsqueeze(s, 1);                      /* [2, 1, 2, 3] */
    gb_tensor *e = gb_expand(u, 4, (int64_t[]){2, 5, 2, 3}); /* stride 0: gradients add up */
    gb_tensor *c = gb_clone(e);
    gb_tensor *r = gb_reshape(c, 2, (int64_t[]){10, 6});
    gb_tensor *out = gb_select(r, 1, -2);                   /* [10] */
    gb_tensor_free(p), gb_tensor_free(s), gb_tensor_free(u), gb_tensor_free(e), gb_tensor_free(c), gb_tensor_free(r);
    return out;
}

START_TEST(test_view_gradients) {
    gb_tensor *x = leaf(3, (int64_t[]){2, 3, 4}, 1);
    gbt_gradcheck(view_chain, 1, &x, NULL, 1e-2, 1e-3, 1e-3, "view chain");
    /* A non-contiguous view reshaped (copy path) and a cast round trip. */
    gb_tensor_free(x);
}
END_TEST

/* Expected: out = x[:, 1] viewed, so dL/dx = R scattered into column 1. */
START_TEST(test_select_gradient_exact) {
    gb_tensor *x = leaf(2, (int64_t[]){3, 2}, 2);
    gb_tensor *y = gb_select(x, 1, 1);
    gb_tensor *g = gb_arange(1, 4, 1); /* dL/dy = [1, 2, 3] */
    gbt_ok_status(gb_backward(y, g, false));
    const float *gx = gb_tensor_f32(gb_tensor_grad(x));
    float want[6] = {0, 1, 0, 2, 0, 3};
    for (int i = 0; i < 6; i++) ck_assert_float_eq(gx[i], want[i]);
    gb_tensor_free(g), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

START_TEST(test_accumulates_and_retain_graph) {
    gb_tensor *x = leaf(1, (int64_t[]){3}, 3);
    gb_tensor *y = gb_clone(x);
    gb_tensor *g = gb_ones(1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_ok_status(gb_backward(y, g, true));
    gbt_ok_status(gb_backward(y, g, false)); /* graph kept by the first call */
    ck_assert_float_eq(gb_tensor_f32(gb_tensor_grad(x))[1], 2.0f); /* .grad accumulates */
    gbt_fails_with(gb_backward(y, g, false) != GB_OK, GB_ERR_AUTOGRAD, "backward through the graph a second time");
    gb_tensor_free(g), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

/* Gradient buffers start blank: a product's backward writes its first
 * contribution whole (beta 0) and everything else adds. A weight used by
 * two products and an elementwise op, a matrix used as both operands of a
 * product, and a leaf reached only through an elementwise op, against the
 * gradients written out by hand (d sum(R . (x @ x)) / dx = R x^T + x^T R):
 * a buffer written where it should have been added to (or added to
 * unzeroed) is off by a whole term. */
START_TEST(test_blank_gradients_written_then_added) {
    gb_tensor *x = leaf(2, (int64_t[]){6, 6}, 1), *w = leaf(2, (int64_t[]){6, 6}, 2), *v = leaf(2, (int64_t[]){6, 6}, 3);
    gb_rng r = gb_rng_seed(4);
    gb_tensor *R = gb_randn(&r, 2, (int64_t[]){6, 6}, 0.0f, 1.0f);
    /* L = sum(R . (x @ x)) + sum(R . (x @ w)) + sum(R . (w * v)) + sum(R . linear(x, w)) */
    gb_tensor *xx = gb_matmul(x, x), *xw = gb_matmul(x, w), *wv = gb_mul(w, v), *lin = gb_linear(x, w, NULL);
    gb_tensor *s1 = gb_add(xx, xw), *s2 = gb_add(s1, wv), *s3 = gb_add(s2, lin);
    gbt_ok_status(gb_backward(s3, R, false));
    gb_grad_mode gm = gb_no_grad_begin();
    gb_tensor *xt = gb_transpose(x, 0, 1), *wt = gb_transpose(w, 0, 1), *Rt = gb_transpose(R, 0, 1);
    /* dx = R x^T + x^T R + R w^T + R w;  dw = x^T R + R . v + R^T x;  dv = R . w */
    gb_tensor *a1 = gb_matmul(R, xt), *a2 = gb_matmul(xt, R), *a3 = gb_matmul(R, wt), *a4 = gb_matmul(R, w);
    gb_tensor *b1 = gb_matmul(xt, R), *b2 = gb_mul(R, v), *b3 = gb_matmul(Rt, x);
    gb_tensor *dx12 = gb_add(a1, a2), *dx123 = gb_add(dx12, a3), *dx = gb_add(dx123, a4);
    gb_tensor *dw12 = gb_add(b1, b2), *dw = gb_add(dw12, b3), *dv = gb_mul(R, w);
    gb_grad_mode_end(gm);
    gbt_assert_close(gb_tensor_grad(x), dx, 1e-5, 1e-5, "x: two products, both operands of one");
    gbt_assert_close(gb_tensor_grad(w), dw, 1e-5, 1e-5, "w: two products and a multiply");
    gbt_assert_close(gb_tensor_grad(v), dv, 1e-5, 1e-5, "v: a multiply only");
    gb_tensor *all[] = {x, w, v, R, xx, xw, wv, lin, s1, s2, s3, xt, wt, Rt, a1, a2, a3, a4, b1, b2, b3, dx12, dx123, dx, dw12, dw, dv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gb_tensor_free(all[i]);

    /* sizes glassbox's own kernels take (d x2 = R2 @ w2: the [K, N] kernel on
     * AVX-512), x2 reached through the product only, its buffer (256 KB: a
     * mapping the allocator kept) first holding NaN: written, not added to */
    gb_tensor *x2 = leaf(2, (int64_t[]){16, 4096}, 5), *w2 = leaf(2, (int64_t[]){1001, 4096}, 6);
    gb_tensor *R2 = gb_randn(&r, 2, (int64_t[]){16, 1001}, 0.0f, 1.0f);
    gb_tensor *y2 = gb_linear(x2, w2, NULL), *junk = gb_full(2, (int64_t[]){16, 4096}, NAN, GB_DTYPE_F32);
    gb_tensor_free(junk);
    gbt_ok_status(gb_backward(y2, R2, false));
    gm = gb_no_grad_begin();
    gb_tensor *want = gb_matmul(R2, w2);
    gb_grad_mode_end(gm);
    gbt_assert_close(gb_tensor_grad(x2), want, 1e-5, 1e-5, "x2: a product into a blank buffer");
    gb_tensor *all2[] = {x2, w2, R2, y2, want};
    for (size_t i = 0; i < sizeof all2 / sizeof *all2; i++) gb_tensor_free(all2[i]);
}
END_TEST

START_TEST(test_backward_errors) {
    gb_tensor *x = leaf(1, (int64_t[]){3}, 4);
    gb_tensor *y = gb_clone(x);
    gbt_fails_with(gb_backward(y, NULL, false) != GB_OK, GB_ERR_AUTOGRAD, "only for scalar outputs");
    gb_tensor *bad = gb_ones(1, (int64_t[]){4}, GB_DTYPE_F32);
    gbt_fails_with(gb_backward(y, bad, false) != GB_OK, GB_ERR_SHAPE, "does not match");
    gb_tensor *plain = gb_ones(1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_fails_with(gb_backward(plain, bad, false) != GB_OK, GB_ERR_AUTOGRAD, "does not require grad");
    gbt_fails_with(gb_requires_grad_(y, false) != GB_OK, GB_ERR_AUTOGRAD, "leaf variables");
    gb_tensor *i = gb_arange_i64(0, 3, 1);
    gbt_fails_with(gb_requires_grad_(i, true) != GB_OK, GB_ERR_DTYPE, "floating point");
    gb_tensor_free(i), gb_tensor_free(plain), gb_tensor_free(bad), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

START_TEST(test_no_grad_nests) {
    gb_tensor *x = leaf(1, (int64_t[]){3}, 5);
    gb_grad_mode a = gb_no_grad_begin();
    gb_grad_mode b = gb_enable_grad_begin();
    gb_tensor *y = gb_clone(x); /* recorded: grad re-enabled inside */
    gb_grad_mode_end(b);
    gb_tensor *z = gb_clone(x); /* not recorded */
    gb_grad_mode_end(a);
    ck_assert(gb_is_grad_enabled());
    ck_assert(gb_tensor_requires_grad(y) && !gb_tensor_is_leaf(y));
    ck_assert(!gb_tensor_requires_grad(z) && gb_tensor_is_leaf(z));
    /* Switching on requires_grad mid-forward makes an activation a leaf. */
    gbt_ok_status(gb_requires_grad_(z, true));
    gb_tensor *w = gb_select(z, 0, 0);
    gbt_ok_status(gb_backward(w, NULL, false));
    ck_assert_float_eq(gb_tensor_f32(gb_tensor_grad(z))[0], 1.0f);
    ck_assert_ptr_null(gb_tensor_grad(x)); /* z's history was not recorded */
    gb_tensor_free(w), gb_tensor_free(z), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

typedef struct {
    int calls[2];
    int order[4], n;
} hook_log;

static gb_status hook_zero(gb_tensor *t, gb_tensor **grad, void *ctx) {
    (void)t;
    hook_log *log = ctx;
    log->calls[0]++;
    log->order[log->n++] = 0;
    gb_tensor *z = gb_zeros(gb_tensor_ndim(*grad), gb_tensor_shape(*grad), GB_DTYPE_F32);
    gb_tensor_free(*grad);
    *grad = z;
    return GB_OK;
}

static gb_status hook_count(gb_tensor *t, gb_tensor **grad, void *ctx) {
    (void)t, (void)grad;
    hook_log *log = ctx;
    log->calls[1]++;
    log->order[log->n++] = 1;
    return GB_OK;
}

START_TEST(test_grad_hooks) {
    gb_tensor *x = leaf(1, (int64_t[]){4}, 6);
    gb_tensor *y = gb_clone(x);
    gb_tensor *z = gb_clone(y);
    hook_log log = {0};
    int h1 = gb_grad_hook_add(y, hook_count, &log);
    int h0 = gb_grad_hook_add(y, hook_zero, &log);
    ck_assert(h0 > 0 && h1 > 0 && h0 != h1);
    gb_tensor *g = gb_ones(1, (int64_t[]){4}, GB_DTYPE_F32);
    gbt_ok_status(gb_backward(z, g, true));
    ck_assert_int_eq(log.calls[0], 1); /* once per backward */
    ck_assert_int_eq(log.order[0], 1); /* registration order */
    ck_assert_float_eq(gb_tensor_f32(gb_tensor_grad(x))[2], 0.0f); /* replaced by zeros */
    gbt_ok_status(gb_grad_hook_remove(y, h0));
    gbt_fails_with(gb_grad_hook_remove(y, h0) != GB_OK, GB_ERR_NOT_FOUND, "no hook");
    gb_zero_grad(x);
    gbt_ok_status(gb_backward(z, g, false));
    ck_assert_float_eq(gb_tensor_f32(gb_tensor_grad(x))[2], 1.0f);
    ck_assert_int_eq(log.calls[1], 2);
    gb_tensor_free(g), gb_tensor_free(z), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

START_TEST(test_retain_grad_and_detach) {
    gb_tensor *x = leaf(1, (int64_t[]){3}, 7);
    gb_tensor *y = gb_clone(x);
    gb_tensor *z = gb_clone(y);
    gbt_ok_status(gb_retain_grad(y));
    gb_tensor *g = gb_full(1, (int64_t[]){3}, 2.0f, GB_DTYPE_F32);
    gbt_ok_status(gb_backward(z, g, false));
    ck_assert_ptr_nonnull(gb_tensor_grad(y));
    ck_assert_ptr_null(gb_tensor_grad(z)); /* not retained */
    ck_assert_float_eq(gb_tensor_f32(gb_tensor_grad(y))[0], 2.0f);
    gb_tensor *d = gb_detach(y);
    ck_assert(!gb_tensor_requires_grad(d) && gb_tensor_shares_storage(d, y));
    gb_tensor_free(d), gb_tensor_free(g), gb_tensor_free(z), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

/* Graph memory is released by backward: a 1000-step loop ends with as many
 * live tensors as it started with. */
START_TEST(test_loop_does_not_grow) {
    gb_tensor *x = leaf(2, (int64_t[]){8, 8}, 8);
    gb_tensor *g = gb_ones(1, (int64_t[]){8}, GB_DTYPE_F32);
    int64_t before = gb__ts_live_tensors();
    for (int step = 0; step < 1000; step++) {
        gb_tensor *t = gb_transpose(x, 0, 1);
        gb_tensor *c = gb_clone(t);
        gb_tensor *y = gb_select(c, 0, step % 8);
        gb_tensor_free(t), gb_tensor_free(c);
        gbt_ok_status(gb_backward(y, g, false));
        gb_tensor_free(y);
        gb_zero_grad(x);
    }
    ck_assert_int_eq(gb__ts_live_tensors(), before);
    gb_tensor_free(g), gb_tensor_free(x);
}
END_TEST

/* An op recorded before an in-place write keeps reading the value it saw:
 *   y = 2x; z = y + 1; y[:, 0] = v; L = sum(z * R1) + sum(y * R2)
 * so dL/dx = 2 R1 + 2 R2 with column 0 of the second term zeroed (the write
 * replaced it), and dL/dv = R2[:, 0]. */
START_TEST(test_consumer_before_index_put) {
    gb_tensor *x = leaf(2, (int64_t[]){2, 3}, 9), *v = leaf(1, (int64_t[]){2}, 10);
    gb_tensor *y = gb_mul_scalar(x, 2.0f), *z = gb_add_scalar(y, 1.0f);
    gbt_ok_status(gb_index_put_(y, "[:, 0]", v));
    const float r1d[] = {1, 2, 3, 4, 5, 6}, r2d[] = {10, 20, 30, 40, 50, 60};
    gb_tensor *r1 = gb_from_data(r1d, 2, (int64_t[]){2, 3}, GB_DTYPE_F32), *r2 = gb_from_data(r2d, 2, (int64_t[]){2, 3}, GB_DTYPE_F32);
    gb_tensor *a = gb_mul(z, r1), *b = gb_mul(y, r2), *la = gb_sum_all(a), *lb = gb_sum_all(b), *l = gb_add(la, lb);
    gbt_ok_status(gb_backward(l, NULL, false));
    const float *gx = gb_tensor_f32(gb_tensor_grad(x)), *gv = gb_tensor_f32(gb_tensor_grad(v));
    for (int i = 0; i < 6; i++) ck_assert_float_eq(gx[i], 2 * r1d[i] + (i % 3 ? 2 * r2d[i] : 0));
    ck_assert_float_eq(gv[0], 10);
    ck_assert_float_eq(gv[1], 40);
    gb_tensor *all[] = {x, v, y, z, r1, r2, a, b, la, lb, l};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

Suite *gb_suite_autograd(void) {
    Suite *s = suite_create("autograd");
    TCase *tc = tcase_create("engine");
    tcase_add_test(tc, test_view_gradients);
    tcase_add_test(tc, test_select_gradient_exact);
    tcase_add_test(tc, test_accumulates_and_retain_graph);
    tcase_add_test(tc, test_blank_gradients_written_then_added);
    tcase_add_test(tc, test_backward_errors);
    tcase_add_test(tc, test_no_grad_nests);
    tcase_add_test(tc, test_grad_hooks);
    tcase_add_test(tc, test_retain_grad_and_detach);
    tcase_add_test(tc, test_loop_does_not_grow);
    tcase_add_test(tc, test_consumer_before_index_put);
    suite_add_tcase(s, tc);
    return s;
}
