/* softmax, log_softmax, layer_norm, rms_norm, embedding, cross_entropy, rope,
 * scaled_dot_product_attention, cat, stack, tril, triu: values and
 * gradients against PyTorch (tests/oracle/nn_ops.py, and nn_ops_big.py for
 * the threaded paths of softmax and the norms), finite-difference gradient
 * checks, and every error path.
 *
 * Tolerance: rtol 1e-5 on values. atol 1e-6 absorbs values that are ~0 by
 * cancellation (a normalised element near the mean, a gradient row that sums
 * to zero), where a relative bound means nothing. */
#include <math.h>

#include "gbtest.h"

#define NN_RTOL 1e-5
#define NN_ATOL 1e-6

/* ---- oracle cases ------------------------------------------------------- */

/* Loaded once, before the tests fork (an unchecked fixture runs in the
 * runner's process): parsing it per test is slow under valgrind. */
static gbt_oracle *oracle;
static void oracle_setup(void) { oracle = gbt_oracle_load("nn_ops"); }
static void oracle_teardown(void) {
    gbt_oracle_free(oracle);
    oracle = NULL;
}

typedef gb_tensor *(*recipe_fn)(gb_tensor **x, const void *arg);

typedef struct nn_case {
    const char *key;
    recipe_fn fn;
    const char *inputs[4];
    int iarg;
    float farg;
} nn_case;

#define ARG_INT(arg) (((const nn_case *)(arg))->iarg)
#define ARG_FLOAT(arg) (((const nn_case *)(arg))->farg)

/* A transposed view of x[0] (the oracle's xt.T), or a new reference to it. */
static gb_tensor *first(gb_tensor **x, bool transposed) {
    return transposed ? gb_transpose(x[0], -1, -2) : gb_tensor_ref(x[0]);
}

static gb_tensor *r_softmax(gb_tensor **x, const void *arg) { return gb_softmax(x[0], ARG_INT(arg)); }
/* iarg 1: x[0] is xt [B, T, H, D], used as its view [B, H, T, D]; 2: xt
 * [..., D, T], used as its view [..., T, D] */
static gb_tensor *r_rope(gb_tensor **x, const void *arg) {
    int how = ARG_INT(arg);
    gb_tensor *a = how == 1 ? gb_transpose(x[0], 1, 2) : how == 2 ? gb_transpose(x[0], -1, -2) : gb_tensor_ref(x[0]),
              *y = gb_rope(a, x[1], x[2]);
    gb_tensor_free(a);
    return y;
}
static gb_tensor *r_softmax_t(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, true), *y = gb_softmax(a, ARG_INT(arg));
    gb_tensor_free(a);
    return y;
}
static gb_tensor *r_log_softmax(gb_tensor **x, const void *arg) { return gb_log_softmax(x[0], ARG_INT(arg)); }
static gb_tensor *r_log_softmax_t(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, true), *y = gb_log_softmax(a, ARG_INT(arg));
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_ln_wb(gb_tensor **x, const void *arg) { return gb_layer_norm(x[0], x[1], x[2], ARG_FLOAT(arg)); }
static gb_tensor *r_ln_none(gb_tensor **x, const void *arg) { return gb_layer_norm(x[0], NULL, NULL, ARG_FLOAT(arg)); }
static gb_tensor *r_ln_w(gb_tensor **x, const void *arg) { return gb_layer_norm(x[0], x[1], NULL, ARG_FLOAT(arg)); }
static gb_tensor *r_ln_b(gb_tensor **x, const void *arg) { return gb_layer_norm(x[0], NULL, x[1], ARG_FLOAT(arg)); }
static gb_tensor *r_ln_t(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, true), *y = gb_layer_norm(a, x[1], x[2], ARG_FLOAT(arg));
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_rms_w(gb_tensor **x, const void *arg) { return gb_rms_norm(x[0], x[1], ARG_FLOAT(arg)); }
static gb_tensor *r_rms_none(gb_tensor **x, const void *arg) { return gb_rms_norm(x[0], NULL, ARG_FLOAT(arg)); }
static gb_tensor *r_rms_t(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, true), *y = gb_rms_norm(a, x[1], ARG_FLOAT(arg));
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_embedding(gb_tensor **x, const void *arg) {
    gb_tensor *w = first(x, ARG_INT(arg)), *y = gb_embedding(w, x[1]);
    gb_tensor_free(w);
    return y;
}

static gb_tensor *r_ce(gb_tensor **x, const void *arg) {
    const nn_case *c = arg;
    gb_tensor *l = first(x, c->farg != 0), *y = gb_cross_entropy(l, x[1], c->iarg);
    gb_tensor_free(l);
    return y;
}

/* x: q, k, v[, hidden]; iarg 1: q, k, v given as [B, T, heads, dim], used
 * as their views [B, heads, T, dim] (split heads) */
static gb_tensor *r_attention(gb_tensor **x, const void *arg) {
    gb_tensor *qkv[3] = {0}, *y;
    for (int i = 0; i < 3; i++) qkv[i] = ARG_INT(arg) ? gb_transpose(x[i], 1, 2) : gb_tensor_ref(x[i]);
    y = gb_scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], x[3], ARG_FLOAT(arg));
    for (int i = 0; i < 3; i++) gb_tensor_free(qkv[i]);
    return y;
}

static gb_tensor *r_cat(gb_tensor **x, const void *arg) {
    int n = x[2] ? 3 : 2;
    return gb_cat(n, x, ARG_INT(arg));
}
static gb_tensor *r_cat_t(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, true), *y = gb_cat(2, (gb_tensor *[]){a, x[1]}, ARG_INT(arg));
    gb_tensor_free(a);
    return y;
}
static gb_tensor *r_stack(gb_tensor **x, const void *arg) {
    int n = x[2] ? 3 : 2;
    return gb_stack(n, x, ARG_INT(arg));
}
static gb_tensor *r_stack_t(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, true), *y = gb_stack(2, (gb_tensor *[]){a, x[1]}, ARG_INT(arg));
    gb_tensor_free(a);
    return y;
}

static gb_tensor *r_tril(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, ARG_FLOAT(arg) != 0), *y = gb_tril(a, ARG_INT(arg));
    gb_tensor_free(a);
    return y;
}
static gb_tensor *r_triu(gb_tensor **x, const void *arg) {
    gb_tensor *a = first(x, ARG_FLOAT(arg) != 0), *y = gb_triu(a, ARG_INT(arg));
    gb_tensor_free(a);
    return y;
}

/* iarg / farg: dim, eps, k, ignore_index; farg 1 = "first input transposed"
 * where the op has no float parameter. */
static const nn_case nn_cases[] = {
    {"softmax.last", r_softmax, {"x"}, -1, 0},
    {"softmax.d0", r_softmax, {"x"}, 0, 0},
    {"softmax.d1", r_softmax, {"x"}, 1, 0},
    {"softmax.t", r_softmax_t, {"xt"}, -1, 0},
    {"softmax.large", r_softmax, {"x"}, -1, 0},
    {"softmax.masked", r_softmax, {"x"}, -1, 0},
    {"softmax.s0", r_softmax, {"x"}, 0, 0},
    {"log_softmax.last", r_log_softmax, {"x"}, -1, 0},
    {"log_softmax.d0", r_log_softmax, {"x"}, 0, 0},
    {"log_softmax.d1", r_log_softmax, {"x"}, 1, 0},
    {"log_softmax.t", r_log_softmax_t, {"xt"}, -1, 0},
    {"log_softmax.large", r_log_softmax, {"x"}, -1, 0},
    {"log_softmax.masked", r_log_softmax, {"x"}, -1, 0},
    {"log_softmax.s0", r_log_softmax, {"x"}, 0, 0},
    {"softmax.long", r_softmax, {"x"}, -1, 0},
    {"softmax.long_large", r_softmax, {"x"}, -1, 0},
    {"softmax.long_masked", r_softmax, {"x"}, -1, 0},
    {"softmax.cols", r_softmax, {"x"}, 1, 0},
    {"softmax.cols0", r_softmax, {"x"}, 0, 0},
    {"log_softmax.long", r_log_softmax, {"x"}, -1, 0},
    {"log_softmax.long_large", r_log_softmax, {"x"}, -1, 0},
    {"log_softmax.long_masked", r_log_softmax, {"x"}, -1, 0},
    {"log_softmax.cols", r_log_softmax, {"x"}, 1, 0},
    {"log_softmax.cols0", r_log_softmax, {"x"}, 0, 0},
    {"layer_norm.wb", r_ln_wb, {"x", "w", "b"}, 0, 1e-5f},
    {"layer_norm.none", r_ln_none, {"x"}, 0, 1e-5f},
    {"layer_norm.w", r_ln_w, {"x", "w"}, 0, 1e-5f},
    {"layer_norm.b", r_ln_b, {"x", "b"}, 0, 1e-5f},
    {"layer_norm.t", r_ln_t, {"xt", "w", "b"}, 0, 1e-5f},
    {"layer_norm.shift", r_ln_wb, {"x", "w", "b"}, 0, 1e-5f},
    {"layer_norm.eps", r_ln_none, {"x"}, 0, 0.5f},
    {"rms_norm.w", r_rms_w, {"x", "w"}, 0, 1e-6f},
    {"rms_norm.none", r_rms_none, {"x"}, 0, 1e-6f},
    {"rms_norm.t", r_rms_t, {"xt", "w"}, 0, 1e-5f},
    {"rms_norm.eps", r_rms_w, {"x", "w"}, 0, 0.5f},
    {"layer_norm.long_wb", r_ln_wb, {"x", "w", "b"}, 0, 1e-5f},
    {"layer_norm.long_none", r_ln_none, {"x"}, 0, 1e-5f},
    {"layer_norm.long_w", r_ln_w, {"x", "w"}, 0, 1e-5f},
    {"layer_norm.long_b", r_ln_b, {"x", "b"}, 0, 1e-5f},
    {"layer_norm.long_shift", r_ln_wb, {"x", "w", "b"}, 0, 1e-5f},
    {"rms_norm.long_w", r_rms_w, {"x", "w"}, 0, 1e-6f},
    {"rms_norm.long_none", r_rms_none, {"x"}, 0, 1e-6f},
    {"layer_norm.blocks", r_ln_wb, {"x", "w", "b"}, 0, 1e-5f},
    {"rms_norm.blocks", r_rms_w, {"x", "w"}, 0, 1e-6f},
    {"embedding.i64", r_embedding, {"w", "ids"}, 0, 0},
    {"embedding.i32", r_embedding, {"w", "ids"}, 0, 0},
    {"embedding.s0", r_embedding, {"w", "ids"}, 0, 0},
    {"embedding.wt", r_embedding, {"wt", "ids"}, 1, 0},
    {"ce.basic", r_ce, {"x", "t"}, -100, 0},
    {"ce.ignore3", r_ce, {"x", "t"}, 3, 0},
    {"ce.large", r_ce, {"x", "t"}, -100, 0},
    {"ce.t", r_ce, {"xt", "t"}, -100, 1},
    {"ce.allignored", r_ce, {"x", "t"}, -100, 0},
    {"rope.heads", r_rope, {"xt", "cos", "sin"}, 1, 0},
    {"rope.odd", r_rope, {"x", "cos", "sin"}, 0, 0},
    {"rope.strided", r_rope, {"xt", "cos", "sin"}, 2, 0},
    {"rope.big", r_rope, {"x", "cos", "sin"}, 0, 0},
    {"attn.causal", r_attention, {"q", "k", "v", "h"}, 0, 0.35355339059f},
    {"attn.nomask", r_attention, {"q", "k", "v"}, 0, 0.5f},
    {"attn.pad", r_attention, {"q", "k", "v", "h"}, 0, 0.25f},
    {"attn.window", r_attention, {"q", "k", "v", "h"}, 0, 0.3f},
    {"attn.t", r_attention, {"qt", "kt", "vt", "h"}, 1, 0.5f},
    {"attn.big", r_attention, {"q", "k", "v", "h"}, 0, 0.125f},
    {"attn.decode", r_attention, {"q", "k", "v"}, 0, 0.5f},
    {"cat.d1", r_cat, {"a", "b"}, 1, 0},
    {"cat.d0", r_cat, {"a", "b", "c"}, 0, 0},
    {"cat.neg", r_cat, {"a", "b"}, -1, 0},
    {"cat.mid", r_cat, {"a", "b"}, 1, 0},
    {"cat.legacy", r_cat, {"e", "a"}, 0, 0},
    {"cat.t", r_cat_t, {"at", "b"}, 0, 0},
    {"cat.ids", r_cat, {"a", "b"}, 0, 0},
    {"stack.d0", r_stack, {"a", "b", "c"}, 0, 0},
    {"stack.last", r_stack, {"a", "b"}, 2, 0},
    {"stack.neg", r_stack, {"a", "b"}, -2, 0},
    {"stack.t", r_stack_t, {"at", "b"}, 1, 0},
    {"tril.k0", r_tril, {"x"}, 0, 0},
    {"tril.k1", r_tril, {"x"}, 1, 0},
    {"tril.km2", r_tril, {"x"}, -2, 0},
    {"tril.batch", r_tril, {"x"}, -1, 0},
    {"tril.far", r_tril, {"x"}, 10, 0},
    {"tril.farneg", r_tril, {"x"}, -10, 0},
    {"tril.t", r_tril, {"xt"}, 0, 1},
    {"tril.ids", r_tril, {"x"}, 0, 0},
    {"triu.k0", r_triu, {"x"}, 0, 0},
    {"triu.k1", r_triu, {"x"}, 1, 0},
    {"triu.km2", r_triu, {"x"}, -2, 0},
    {"triu.batch", r_triu, {"x"}, -1, 0},
    {"triu.far", r_triu, {"x"}, 10, 0},
    {"triu.farneg", r_triu, {"x"}, -10, 0},
    {"triu.t", r_triu, {"xt"}, 0, 1},
    {"triu.ids", r_triu, {"x"}, 0, 0},
};
#define NCASES ((int)(sizeof nn_cases / sizeof nn_cases[0]))

START_TEST(test_oracle_case) {
    const nn_case *c = &nn_cases[_i];
    gbt_oracle *o = oracle;
    gb_tensor *x[4] = {0};
    int n = 0;
    for (; n < 4 && c->inputs[n]; n++) {
        gb_tensor *shared = gbt_getf(o, "%s.%s", c->key, c->inputs[n]);
        x[n] = gb_detach(shared); /* a leaf of our own: .grad must not outlive this case */
        gb_tensor_free(shared);
        if (gb_tensor_dtype(x[n]) == GB_DTYPE_F32) gbt_ok_status(gb_requires_grad_(x[n], true));
    }
    gb_tensor *y = c->fn(x, c), *want = gbt_getf(o, "%s.y", c->key);
    gbt_assert_close(y, want, NN_RTOL, NN_ATOL, c->key);
    ck_assert_int_eq(gb_tensor_dtype(y), gb_tensor_dtype(want));
    if (gb_tensor_dtype(y) == GB_DTYPE_F32) {
        gb_tensor *r = gbt_getf(o, "%s.r", c->key);
        gbt_ok_status(gb_backward(y, r, false));
        for (int i = 0; i < n; i++) {
            if (gb_tensor_dtype(x[i]) != GB_DTYPE_F32) continue;
            char what[96];
            snprintf(what, sizeof what, "%s.d%s", c->key, c->inputs[i]);
            gb_tensor *dwant = gbt_get(o, what);
            /* attention's gradients are float sums over every query or
             * key (210 terms of unit total size in attn.big): their
             * rounding reaches 1e-5 absolute where the sum cancels (seen
             * under valgrind, whose CPU has another sgemm kernel) */
            double atol = strncmp(c->key, "attn.", 5) ? NN_ATOL : 1e-5;
            gbt_assert_close(gb_tensor_grad(x[i]), dwant, NN_RTOL, atol, what);
            gb_tensor_free(dwant);
        }
        gb_tensor_free(r);
    }
    gb_tensor_free(y), gb_tensor_free(want);
    for (int i = 0; i < n; i++) gb_tensor_free(x[i]);
}
END_TEST

/* ---- large inputs: the threaded loops ----------------------------------- */

/* The cases of nn_ops_big.py: x [33, 1000], and the weight and bias. */
static const struct {
    const char *key;
    int nparams;
} BIG[] = {{"softmax", 0}, {"softmax0", 0}, {"layer_norm", 2}, {"rms_norm", 1}};
#define NBIG ((int)(sizeof BIG / sizeof BIG[0]))

/* With `threads` threads: out[0] = case c's y, out[1 + k] = the gradient of
 * sum(y * r) for input k (x, then the parameters); new references. */
static void big_run(int c, gb_tensor *const *in, gb_tensor *r, int threads, gb_tensor **out) {
    gb_set_num_threads(threads);
    gb_tensor *leaf[3] = {0};
    for (int k = 0; k < 1 + BIG[c].nparams; k++) {
        leaf[k] = gb_clone(in[k]);
        gbt_ok_status(gb_requires_grad_(leaf[k], true));
    }
    gb_tensor *y = c == 0 ? gb_softmax(leaf[0], -1)
                   : c == 1 ? gb_softmax(leaf[0], 0)
                   : c == 2 ? gb_layer_norm(leaf[0], leaf[1], leaf[2], 1e-5f)
                            : gb_rms_norm(leaf[0], leaf[1], 1e-6f);
    gbt_ok(y);
    gbt_ok_status(gb_backward(y, r, false));
    out[0] = y;
    for (int k = 0; k < 1 + BIG[c].nparams; k++) {
        out[1 + k] = gb_tensor_ref(gb_tensor_grad(leaf[k]));
        gb_tensor_free(leaf[k]);
    }
}

/* Against PyTorch with 3 threads (uneven shares of the rows, and of the
 * blocks of rows whose partial sums make the weight and bias gradients),
 * and bitwise the same with 1 thread: each row, and each partial sum, is
 * computed by one thread in a fixed order. */
START_TEST(test_large_inputs) {
    static const char *const names[] = {"y", "dx", "dw", "db"};
    gbt_oracle *o = gbt_oracle_load("nn_ops_big");
    gb_tensor *in[3] = {gbt_get(o, "x"), gbt_get(o, "w"), gbt_get(o, "b")}, *r = gbt_get(o, "r");
    ck_assert_int_gt(gb_tensor_numel(in[0]), 32768);
    int saved = gb_get_num_threads();
    for (int c = 0; c < NBIG; c++) {
        gb_tensor *got3[4] = {0}, *got1[4] = {0};
        big_run(c, in, r, 3, got3);
        big_run(c, in, r, 1, got1);
        for (int k = 0; k < 2 + BIG[c].nparams; k++) {
            char what[64];
            snprintf(what, sizeof what, "%s.%s", BIG[c].key, names[k]);
            gb_tensor *want = gbt_get(o, what);
            gbt_assert_close(got3[k], want, NN_RTOL, NN_ATOL, what);
            gbt_assert_close(got3[k], got1[k], 0, 0, "3 threads vs 1");
            gb_tensor_free(want), gb_tensor_free(got3[k]), gb_tensor_free(got1[k]);
        }
    }
    gb_set_num_threads(saved);
    for (int k = 0; k < 3; k++) gb_tensor_free(in[k]);
    gb_tensor_free(r);
    gbt_oracle_free(o);
}
END_TEST

/* ---- gradcheck: finite differences -------------------------------------- */

static gb_tensor *leaf(int ndim, const int64_t *shape, uint64_t seed) {
    gb_rng r = gb_rng_seed(seed);
    gb_tensor *t = gb_randn(&r, ndim, shape, 0.0f, 1.0f);
    gb_requires_grad_(t, true);
    return t;
}

static gb_tensor *g_softmax_d1(gb_tensor *const *in, void *ctx) { (void)ctx; return gb_softmax(in[0], 1); }
static gb_tensor *g_log_softmax_d0(gb_tensor *const *in, void *ctx) { (void)ctx; return gb_log_softmax(in[0], 0); }
static gb_tensor *g_layer_norm(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    return gb_layer_norm(in[0], in[1], in[2], 1e-5f);
}
static gb_tensor *g_rms_norm(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    return gb_rms_norm(in[0], in[1], 1e-6f);
}
static gb_tensor *g_embedding(gb_tensor *const *in, void *ctx) { return gb_embedding(in[0], ctx); }
static gb_tensor *g_cross_entropy(gb_tensor *const *in, void *ctx) { return gb_cross_entropy(in[0], ctx, 2); }
static gb_tensor *g_cat(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    return gb_cat(2, in, 1);
}
static gb_tensor *g_stack(gb_tensor *const *in, void *ctx) {
    (void)ctx;
    return gb_stack(2, in, 1);
}
static gb_tensor *g_tril(gb_tensor *const *in, void *ctx) { (void)ctx; return gb_tril(in[0], -1); }
static gb_tensor *g_triu(gb_tensor *const *in, void *ctx) { (void)ctx; return gb_triu(in[0], 1); }

START_TEST(test_gradcheck) {
    /* The numeric derivative of a smooth op with eps 1e-2 is off by O(eps^2)
     * relative, hence 1e-2 here; the oracle test above holds 1e-5. */
    gb_tensor *x = leaf(3, (int64_t[]){2, 3, 4}, 1);
    gbt_gradcheck(g_softmax_d1, 1, &x, NULL, 1e-2, 1e-2, 1e-3, "softmax");
    gbt_gradcheck(g_log_softmax_d0, 1, &x, NULL, 1e-2, 1e-2, 1e-3, "log_softmax");
    gb_tensor *w = leaf(1, (int64_t[]){4}, 2), *b = leaf(1, (int64_t[]){4}, 3);
    gb_tensor *xwb[3] = {x, w, b};
    gbt_gradcheck(g_layer_norm, 3, xwb, NULL, 1e-2, 1e-2, 1e-3, "layer_norm");
    gbt_gradcheck(g_rms_norm, 2, xwb, NULL, 1e-2, 1e-2, 1e-3, "rms_norm");
    gbt_gradcheck(g_tril, 1, &x, NULL, 1e-2, 1e-3, 1e-4, "tril");
    gbt_gradcheck(g_triu, 1, &x, NULL, 1e-2, 1e-3, 1e-4, "triu");
    gb_tensor *y = leaf(3, (int64_t[]){2, 3, 4}, 4);
    gb_tensor *xy[2] = {x, y};
    gbt_gradcheck(g_cat, 2, xy, NULL, 1e-2, 1e-3, 1e-4, "cat");
    gbt_gradcheck(g_stack, 2, xy, NULL, 1e-2, 1e-3, 1e-4, "stack");
    gb_tensor *table = leaf(2, (int64_t[]){5, 3}, 5);
    gb_tensor *ids = gb_from_data((int64_t[]){4, 0, 4, 4, 2, 1}, 2, (int64_t[]){2, 3}, GB_DTYPE_I64);
    gbt_gradcheck(g_embedding, 1, &table, ids, 1e-2, 1e-3, 1e-4, "embedding");
    gb_tensor *logits = leaf(2, (int64_t[]){4, 5}, 6);
    gb_tensor *targets = gb_from_data((int64_t[]){1, 2, 4, 0}, 1, (int64_t[]){4}, GB_DTYPE_I64);
    gbt_gradcheck(g_cross_entropy, 1, &logits, targets, 1e-2, 1e-2, 1e-3, "cross_entropy");
    gb_tensor *all[] = {x, w, b, y, table, ids, logits, targets};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

/* ---- saved values and in-place writes ----------------------------------- */

/* softmax's backward reads its output: writing to it in place (under no-grad)
 * must make backward fail instead of using the changed values. */
START_TEST(test_softmax_saves_output) {
    gb_tensor *x = leaf(2, (int64_t[]){2, 3}, 7);
    gb_tensor *y = gb_softmax(x, -1);
    gbt_ok(y);
    gb_grad_mode m = gb_no_grad_begin();
    gbt_ok_status(gb_fill_(y, 0.5f));
    gb_grad_mode_end(m);
    gb_tensor *g = gb_ones(2, (int64_t[]){2, 3}, GB_DTYPE_F32);
    gbt_fails_with(gb_backward(y, g, false) != GB_OK, GB_ERR_AUTOGRAD, "softmax");
    gb_tensor_free(g), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

/* layer_norm reads x in backward; an in-place write to x is caught. */
START_TEST(test_layer_norm_saves_input) {
    gb_tensor *x0 = leaf(2, (int64_t[]){2, 4}, 8);
    gb_tensor *x = gb_mul_scalar(x0, 2.0f); /* a non-leaf we may overwrite */
    gb_tensor *y = gb_layer_norm(x, NULL, NULL, 1e-5f);
    gbt_ok(y);
    gb_grad_mode m = gb_no_grad_begin();
    gbt_ok_status(gb_fill_(x, 1.0f));
    gb_grad_mode_end(m);
    gb_tensor *g = gb_ones(2, (int64_t[]){2, 4}, GB_DTYPE_F32);
    gbt_fails_with(gb_backward(y, g, false) != GB_OK, GB_ERR_AUTOGRAD, "layer_norm");
    gb_tensor_free(g), gb_tensor_free(y), gb_tensor_free(x), gb_tensor_free(x0);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_softmax_errors) {
    gb_tensor *x = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32), *i = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_I64);
    gbt_fails_with(gb_softmax(x, 1) == NULL, GB_ERR_INDEX,
                   "softmax: dimension out of range (expected to be in range of [-1, 0], but got 1)");
    gbt_fails_with(gb_log_softmax(x, -2) == NULL, GB_ERR_INDEX, "log_softmax: dimension out of range");
    gbt_fails_with(gb_softmax(i, 0) == NULL, GB_ERR_DTYPE, "softmax: expected a float32 tensor, got int64");
    gb_tensor_free(x), gb_tensor_free(i);
}
END_TEST

START_TEST(test_rope_errors) {
    gb_tensor *x = gb_zeros(2, (int64_t[]){2, 4}, GB_DTYPE_F32), *c4 = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F32),
              *c3 = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32), *big = gb_zeros(3, (int64_t[]){3, 1, 4}, GB_DTYPE_F32),
              *s = gb_scalar_tensor(1.0f), *h = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F16);
    gbt_fails_with(gb_rope(x, c3, c4) == NULL, GB_ERR_SHAPE, "rope: the size of tensor");
    gbt_fails_with(gb_rope(x, c4, big) == NULL, GB_ERR_SHAPE,
                   "rope: sin of shape [3, 1, 4] does not broadcast to x's shape [2, 4]");
    gbt_fails_with(gb_rope(s, s, s) == NULL, GB_ERR_SHAPE, "rope: x must have at least one dim");
    gbt_fails_with(gb_rope(x, h, c4) == NULL, GB_ERR_DTYPE, "rope: input cos [4] has dtype float16");
    gbt_fails_with(gb_rope(x, c4, NULL) == NULL, GB_ERR_ARG, "rope: input sin is NULL");
    gb_tensor_free(x), gb_tensor_free(c4), gb_tensor_free(c3), gb_tensor_free(big), gb_tensor_free(s), gb_tensor_free(h);
}
END_TEST

/* The same values and gradients at 1, 2 and 3 threads (blocks of rows are
 * one thread's each; a key head's gradients one thread's), and keys
 * spanning several blocks of rows. */
START_TEST(test_attention_threads) {
    gbt_oracle *o = oracle;
    gb_tensor *x[4];
    const char *names[4] = {"q", "k", "v", "h"};
    for (int i = 0; i < 4; i++) {
        gb_tensor *shared = gbt_getf(o, "attn.big.%s", names[i]);
        x[i] = gb_detach(shared);
        gb_tensor_free(shared);
        if (i < 3) gbt_ok_status(gb_requires_grad_(x[i], true));
    }
    gb_tensor *r = gbt_get(o, "attn.big.r"), *first[4] = {0};
    int before = gb_get_num_threads();
    for (int threads = 1; threads <= 3; threads++) {
        gb_set_num_threads(threads);
        gb_tensor *y = gb_scaled_dot_product_attention(x[0], x[1], x[2], x[3], 0.125f);
        gbt_ok(y);
        gbt_ok_status(gb_backward(y, r, false));
        gb_tensor *got[4] = {y, gb_tensor_grad(x[0]), gb_tensor_grad(x[1]), gb_tensor_grad(x[2])};
        for (int i = 0; i < 4; i++) {
            if (threads == 1) first[i] = gb_clone(got[i]);
            else gbt_assert_close(got[i], first[i], 0, 0, "attention at several threads");
        }
        for (int i = 0; i < 3; i++) gb_zero_grad(x[i]);
        gb_tensor_free(y);
    }
    gb_set_num_threads(before);
    for (int i = 0; i < 4; i++) gb_tensor_free(first[i]), gb_tensor_free(x[i]);
    gb_tensor_free(r);
}
END_TEST

/* No keys: softmax over none, then a product over none, gives zeros (as
 * the ops do), and no gradient. */
START_TEST(test_attention_no_keys) {
    gb_tensor *q = gb_ones(4, (int64_t[]){1, 4, 3, 8}, GB_DTYPE_F32), *k = gb_zeros(4, (int64_t[]){1, 2, 0, 8}, GB_DTYPE_F32);
    gbt_ok_status(gb_requires_grad_(q, true));
    gb_tensor *y = gb_scaled_dot_product_attention(q, k, k, NULL, 1.0f), *zero = gb_zeros(4, (int64_t[]){1, 4, 3, 8}, GB_DTYPE_F32);
    gbt_assert_close(y, zero, 0, 0, "attention over no keys");
    gb_tensor *s = gb_sum_all(y);
    gbt_ok_status(gb_backward(s, NULL, false));
    gbt_assert_close(gb_tensor_grad(q), zero, 0, 0, "its gradient");
    gb_tensor_free(s), gb_tensor_free(y), gb_tensor_free(zero), gb_tensor_free(q), gb_tensor_free(k);
}
END_TEST

START_TEST(test_attention_errors) {
    gb_tensor *q = gb_zeros(4, (int64_t[]){1, 4, 3, 8}, GB_DTYPE_F32), *k = gb_zeros(4, (int64_t[]){1, 2, 5, 8}, GB_DTYPE_F32),
              *k3 = gb_zeros(4, (int64_t[]){1, 3, 5, 8}, GB_DTYPE_F32), *kd = gb_zeros(4, (int64_t[]){1, 2, 5, 4}, GB_DTYPE_F32),
              *kb = gb_zeros(4, (int64_t[]){2, 2, 5, 8}, GB_DTYPE_F32), *h = gb_zeros(4, (int64_t[]){1, 2, 5, 8}, GB_DTYPE_F16),
              *flat = gb_zeros(3, (int64_t[]){4, 3, 8}, GB_DTYPE_F32), *mf = gb_zeros(2, (int64_t[]){3, 5}, GB_DTYPE_F32),
              *mb = gb_zeros(2, (int64_t[]){3, 5}, GB_DTYPE_BOOL), *mbad = gb_zeros(2, (int64_t[]){3, 4}, GB_DTYPE_BOOL);
    gbt_fails_with(gb_scaled_dot_product_attention(NULL, k, k, NULL, 1) == NULL, GB_ERR_ARG, "scaled_dot_product_attention: q is NULL");
    gbt_fails_with(gb_scaled_dot_product_attention(q, k, h, NULL, 1) == NULL, GB_ERR_DTYPE,
                   "scaled_dot_product_attention: v must be float32, got float16 [1, 2, 5, 8]");
    gbt_fails_with(gb_scaled_dot_product_attention(flat, k, k, NULL, 1) == NULL, GB_ERR_SHAPE, "q has shape [4, 3, 8]");
    gbt_fails_with(gb_scaled_dot_product_attention(q, k3, k3, NULL, 1) == NULL, GB_ERR_SHAPE,
                   "4 query heads cannot share 3 key/value heads");
    gbt_fails_with(gb_scaled_dot_product_attention(q, kd, kd, NULL, 1) == NULL, GB_ERR_SHAPE,
                   "q [1, 4, 3, 8], k [1, 2, 5, 4] and v [1, 2, 5, 4] do not fit");
    gbt_fails_with(gb_scaled_dot_product_attention(q, k, kb, NULL, 1) == NULL, GB_ERR_SHAPE, "do not fit");
    gbt_fails_with(gb_scaled_dot_product_attention(q, k, k, mf, 1) == NULL, GB_ERR_DTYPE,
                   "hidden must be a bool mask (true: the key is hidden), got float32 [3, 5]");
    gbt_fails_with(gb_scaled_dot_product_attention(q, k, k, mbad, 1) == NULL, GB_ERR_SHAPE,
                   "hidden [3, 4] does not broadcast to [batch, heads, queries, keys] [1, 4, 3, 5]");
    gb_tensor *ok = gb_scaled_dot_product_attention(q, k, k, mb, 1); /* [3, 5] broadcasts */
    gbt_ok(ok);
    gb_tensor_free(ok);
    gb_tensor *all[] = {q, k, k3, kd, kb, h, flat, mf, mb, mbad};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) gb_tensor_free(all[i]);
}
END_TEST

START_TEST(test_norm_errors) {
    gb_tensor *x = gb_zeros(2, (int64_t[]){2, 4}, GB_DTYPE_F32), *w3 = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32),
              *w4 = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F32), *s = gb_scalar_tensor(1.0f),
              *h = gb_zeros(2, (int64_t[]){2, 4}, GB_DTYPE_F16);
    gbt_fails_with(gb_layer_norm(x, w3, NULL, 1e-5f) == NULL, GB_ERR_SHAPE,
                   "layer_norm: Expected weight to be of same shape as normalized_shape, but got weight of shape [3] "
                   "and normalized_shape = [4]");
    gbt_fails_with(gb_layer_norm(x, w4, w3, 1e-5f) == NULL, GB_ERR_SHAPE,
                   "Expected bias to be of same shape as normalized_shape, but got bias of shape [3]");
    gbt_fails_with(gb_layer_norm(s, NULL, NULL, 1e-5f) == NULL, GB_ERR_SHAPE, "layer_norm: input must be at least 1-D");
    gbt_fails_with(gb_layer_norm(h, NULL, NULL, 1e-5f) == NULL, GB_ERR_DTYPE, "layer_norm: expected float32 tensors, got float16");
    gbt_fails_with(gb_rms_norm(x, w3, 1e-6f) == NULL, GB_ERR_SHAPE, "rms_norm: Expected weight");
    gbt_fails_with(gb_rms_norm(h, w4, 1e-6f) == NULL, GB_ERR_DTYPE, "rms_norm: expected float32");
    gb_tensor *all[] = {x, w3, w4, s, h};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

START_TEST(test_embedding_errors) {
    gb_tensor *w = gb_zeros(2, (int64_t[]){10, 3}, GB_DTYPE_F32), *w1 = gb_zeros(1, (int64_t[]){10}, GB_DTYPE_F32);
    gb_tensor *bad = gb_from_data((int64_t[]){1, 10}, 1, (int64_t[]){2}, GB_DTYPE_I64);
    gb_tensor *neg = gb_from_data((int32_t[]){-1}, 1, (int64_t[]){1}, GB_DTYPE_I32);
    gb_tensor *f = gb_zeros(1, (int64_t[]){2}, GB_DTYPE_F32);
    gbt_fails_with(gb_embedding(w, bad) == NULL, GB_ERR_INDEX,
                   "embedding: id 10 (at flat position 1 of ids [2]) is out of range for vocabulary size 10");
    gbt_fails_with(gb_embedding(w, neg) == NULL, GB_ERR_INDEX, "id -1 (at flat position 0 of ids [1])");
    gbt_fails_with(gb_embedding(w, f) == NULL, GB_ERR_DTYPE, "embedding: expected ids of dtype int64 or int32, got float32");
    gbt_fails_with(gb_embedding(f, bad) == NULL, GB_ERR_SHAPE, "embedding: weight must be 2-D");
    gb_tensor *all[] = {w, w1, bad, neg, f};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

START_TEST(test_cross_entropy_errors) {
    gb_tensor *x = gb_zeros(2, (int64_t[]){3, 4}, GB_DTYPE_F32);
    gb_tensor *t2 = gb_from_data((int64_t[]){1, 2}, 1, (int64_t[]){2}, GB_DTYPE_I64);
    gb_tensor *oob = gb_from_data((int64_t[]){1, 2, 5}, 1, (int64_t[]){3}, GB_DTYPE_I64);
    gb_tensor *neg = gb_from_data((int64_t[]){1, -3, 0}, 1, (int64_t[]){3}, GB_DTYPE_I64);
    gb_tensor *tf = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_fails_with(gb_cross_entropy(x, t2, -100) == NULL, GB_ERR_SHAPE,
                   "cross_entropy: Expected input batch_size (3) to match target batch_size (2).");
    gbt_fails_with(gb_cross_entropy(x, oob, -100) == NULL, GB_ERR_INDEX, "cross_entropy: Target 5 is out of bounds (row 2, 4 classes");
    gbt_fails_with(gb_cross_entropy(x, neg, -100) == NULL, GB_ERR_INDEX, "Target -3 is out of bounds");
    gbt_fails_with(gb_cross_entropy(x, tf, -100) == NULL, GB_ERR_DTYPE, "cross_entropy: expected targets of dtype int64");
    gbt_fails_with(gb_cross_entropy(tf, t2, -100) == NULL, GB_ERR_SHAPE, "expected logits [N, C] and targets [N]");
    /* the ignored index may lie outside [0, C) without being an error */
    gb_tensor *ign = gb_from_data((int64_t[]){1, 7, 0}, 1, (int64_t[]){3}, GB_DTYPE_I64);
    gb_tensor *loss = gb_cross_entropy(x, ign, 7);
    gbt_ok(loss);
    double v; /* uniform logits over 4 classes: -log(1/4) per counted row */
    gbt_ok_status(gb_item(loss, &v));
    ck_assert_double_eq_tol(v, log(4.0), 1e-6);
    gb_tensor *all[] = {x, t2, oob, neg, tf, ign, loss};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) gb_tensor_free(all[i]);
}
END_TEST

START_TEST(test_cat_stack_errors) {
    gb_tensor *a = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_F32), *b = gb_zeros(2, (int64_t[]){3, 3}, GB_DTYPE_F32),
              *c = gb_zeros(3, (int64_t[]){3, 3, 1}, GB_DTYPE_F32), *s = gb_scalar_tensor(1.0f),
              *v = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32), *i = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_I64),
              *d = gb_zeros(2, (int64_t[]){2, 4}, GB_DTYPE_F32);
    gbt_fails_with(gb_cat(2, (gb_tensor *[]){a, b}, 1) == NULL, GB_ERR_SHAPE,
                   "cat: Sizes of tensors must match except in dimension 1. Expected size 2 but got size 3 for tensor "
                   "number 1 in the list.");
    gbt_fails_with(gb_cat(2, (gb_tensor *[]){a, c}, 1) == NULL, GB_ERR_SHAPE,
                   "cat: Tensors must have same number of dimensions: got 2 and 3");
    gbt_fails_with(gb_cat(2, (gb_tensor *[]){s, v}, 0) == NULL, GB_ERR_SHAPE,
                   "cat: zero-dimensional tensor (at position 0) cannot be concatenated");
    gbt_fails_with(gb_cat(0, NULL, 0) == NULL, GB_ERR_ARG, "cat: torch.cat(): expected a non-empty list of Tensors");
    gbt_fails_with(gb_cat(1, (gb_tensor *[]){a}, 2) == NULL, GB_ERR_INDEX,
                   "cat: dimension out of range (expected to be in range of [-2, 1], but got 2)");
    gbt_fails_with(gb_cat(2, (gb_tensor *[]){a, i}, 0) == NULL, GB_ERR_DTYPE, "cat: expected all tensors to have dtype float32");
    gbt_fails_with(gb_cat(2, (gb_tensor *[]){a, NULL}, 0) == NULL, GB_ERR_ARG, "cat: tensor number 1 in the list is NULL");
    gbt_fails_with(gb_stack(2, (gb_tensor *[]){a, d}, 0) == NULL, GB_ERR_SHAPE,
                   "stack: stack expects each tensor to be equal size, but got [2, 3] at entry 0 and [2, 4] at entry 1");
    gbt_fails_with(gb_stack(0, NULL, 0) == NULL, GB_ERR_ARG, "stack: stack expects a non-empty TensorList");
    gbt_fails_with(gb_stack(1, (gb_tensor *[]){a}, 3) == NULL, GB_ERR_INDEX,
                   "stack: dimension out of range (expected to be in range of [-3, 2], but got 3)");
    gbt_fails_with(gb_tril(v, 0) == NULL, GB_ERR_SHAPE, "tril: input tensor must have at least 2 dimensions");
    gbt_fails_with(gb_triu(s, 0) == NULL, GB_ERR_SHAPE, "triu: input tensor must have at least 2 dimensions");
    gb_tensor *all[] = {a, b, c, s, v, i, d};
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) gb_tensor_free(all[k]);
}
END_TEST

Suite *gb_suite_nn_ops(void) {
    Suite *s = suite_create("nn_ops");
    TCase *tc = tcase_create("nn_ops");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, oracle_setup, oracle_teardown);
    tcase_add_loop_test(tc, test_oracle_case, 0, NCASES);
    tcase_add_test(tc, test_large_inputs);
    tcase_add_test(tc, test_gradcheck);
    tcase_add_test(tc, test_softmax_saves_output);
    tcase_add_test(tc, test_layer_norm_saves_input);
    tcase_add_test(tc, test_softmax_errors);
    tcase_add_test(tc, test_norm_errors);
    tcase_add_test(tc, test_rope_errors);
    tcase_add_test(tc, test_attention_threads);
    tcase_add_test(tc, test_attention_no_keys);
    tcase_add_test(tc, test_attention_errors);
    tcase_add_test(tc, test_embedding_errors);
    tcase_add_test(tc, test_cross_entropy_errors);
    tcase_add_test(tc, test_cat_stack_errors);
    suite_add_tcase(s, tc);
    return s;
}
