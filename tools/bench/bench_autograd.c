/* Autograd: one training step's forward and backward of a 4-layer MLP
 * (width 1024, batch 64, gelu between the layers, cross-entropy loss) at one
 * and at two threads. bench.py runs the same step in PyTorch
 * (torch.set_num_threads) with the same shapes and the same operations. */
#include <string.h>

#include "bench.h"

enum { MLP_LAYERS = 4, MLP_WIDTH = 1024, MLP_BATCH = 64 };

typedef struct mlp {
    gb_tensor *w[MLP_LAYERS], *b[MLP_LAYERS]; /* [out, in], [out]: leaves that require grad */
    gb_tensor *x, *target;                    /* [batch, width], [batch] i64 */
} mlp;

/* Forward, loss, backward; then the gradients are dropped (set_to_none), as
 * an optimiser's zero_grad would. */
static void mlp_step(void *ctx) {
    mlp *m = ctx;
    gb_tensor *h = gb_tensor_ref(m->x);
    for (int l = 0; l < MLP_LAYERS; l++) {
        gb_tensor *z = gb_linear(h, m->w[l], m->b[l]);
        gb_tensor_free(h);
        BENCH_CHECK(z, "mlp: linear");
        if (l == MLP_LAYERS - 1) {
            h = z;
            break;
        }
        h = gb_gelu(z);
        gb_tensor_free(z);
        BENCH_CHECK(h, "mlp: gelu");
    }
    gb_tensor *loss = gb_cross_entropy(h, m->target, -100);
    gb_tensor_free(h);
    BENCH_CHECK(loss, "mlp: cross_entropy");
    BENCH_CHECK(gb_backward(loss, NULL, false) == GB_OK, "mlp: backward");
    gb_tensor_free(loss);
    for (int l = 0; l < MLP_LAYERS; l++) gb_zero_grad(m->w[l]), gb_zero_grad(m->b[l]);
}

void bench_autograd(void) {
    gb_rng r = gb_rng_seed(2);
    mlp m = {0};
    const float bound = 1.0f / 32.0f; /* nn.Linear's init: U(-1/sqrt(in), 1/sqrt(in)) */
    for (int l = 0; l < MLP_LAYERS; l++) {
        m.w[l] = gb_rand(&r, 2, (int64_t[]){MLP_WIDTH, MLP_WIDTH}, -bound, bound);
        m.b[l] = gb_rand(&r, 1, (int64_t[]){MLP_WIDTH}, -bound, bound);
        BENCH_CHECK(m.w[l] && m.b[l], "mlp: init");
        BENCH_CHECK(!gb_requires_grad_(m.w[l], true) && !gb_requires_grad_(m.b[l], true), "mlp: requires_grad");
    }
    m.x = gb_randn(&r, 2, (int64_t[]){MLP_BATCH, MLP_WIDTH}, 0.0f, 1.0f);
    m.target = gb_randint(&r, 1, (int64_t[]){MLP_BATCH}, 0, MLP_WIDTH);
    BENCH_CHECK(m.x && m.target, "mlp: inputs");

    int saved = gb_get_num_threads();
    for (int threads = 1; threads <= 2; threads++) {
        char name[32], what[160];
        gb_set_num_threads(threads);
        snprintf(name, sizeof name, "mlp_fwd_bwd_%dt", threads);
        snprintf(what, sizeof what,
                 "4x gb_linear %dx%d + gelu, cross_entropy, gb_backward; batch %d, %d thread%s", MLP_WIDTH,
                 MLP_WIDTH, MLP_BATCH, threads, threads > 1 ? "s" : "");
        bench_row(name, "ms", bench_best(mlp_step, &m) * 1e3, what);
    }
    gb_set_num_threads(saved);

    for (int l = 0; l < MLP_LAYERS; l++) gb_tensor_free(m.w[l]), gb_tensor_free(m.b[l]);
    gb_tensor_free(m.x), gb_tensor_free(m.target);
}
