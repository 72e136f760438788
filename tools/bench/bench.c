/* glassbox benchmark (run through `make bench`, which compares it with
 * PyTorch in tools/bench/bench.py). Output format: tools/bench/bench.h.
 *
 * usage: bench [--data DIR] [--shared DIR] [--big DIR] [--cli PATH] [reps] [part ...]
 *   reps   timed runs per measurement, best taken (default 10)
 *   parts  kernels lowp autograd gpt2 io (default: all), big (only when
 *          named: `make bench-big`)
 *   DIR    generated inputs (default build/bench-data), fixtures (../shared),
 *          the big part's checkpoint (/tmp/glassbox-llama8b); PATH the CLI
 *
 * This file holds the kernels: sgemm, elementwise ops, softmax,
 * log_softmax, layer_norm and rms_norm, in GFLOP/s (2*M*N*K per product) or
 * GB/s (bytes read + written once). "raw" rows call the same OpenBLAS
 * cblas_sgemm glassbox loaded (with the kernel it chose) on preallocated
 * buffers: the ceiling for gb_matmul, which also allocates its output each
 * call. "_bwd" rows call the op's backward kernel as autograd does, into
 * preallocated gradients it accumulates into, without autograd's own work
 * (copying the output gradient, zeroing, storing .grad), as PyTorch's rows
 * call its backward kernels directly. */
#include <string.h>

#include "bench.h"
#include "tensor/blas.h"

int bench_reps = 10;
const char *bench_data_dir = "build/bench-data";
const char *bench_shared_dir = "../shared";

/* One timed call. */
typedef struct job {
    gb_tensor *(*op)(struct job *j); /* returns the result to free */
    void (*raw)(struct job *j);      /* or a plain call */
    gb_tensor *a, *b, *c;
    int m, n, k, dim;
    float *pa, *pb, *pc;
    gb_tensor *y, *dy, *d[3]; /* backward: a recorded result, its gradient, the sources' gradients */
} job;

static void run_once(void *ctx) {
    job *j = ctx;
    if (j->raw) {
        j->raw(j);
        return;
    }
    gb_tensor *y = j->op(j);
    BENCH_CHECK(y, "kernels");
    gb_tensor_free(y);
}

static double best_time(job *j) { return bench_best(run_once, j); }

static gb_tensor *op_matmul(job *j) { return gb_matmul(j->a, j->b); }
static gb_tensor *op_linear(job *j) { return gb_linear(j->a, j->b, NULL); }
static gb_tensor *op_add(job *j) { return gb_add(j->a, j->b); }
static gb_tensor *op_mul(job *j) { return gb_mul(j->a, j->b); }
static gb_tensor *op_gelu(job *j) { return gb_gelu(j->a); }
static gb_tensor *op_gelu_tanh(job *j) { return gb_gelu_tanh(j->a); }
static gb_tensor *op_silu(job *j) { return gb_silu(j->a); }
static gb_tensor *op_tanh(job *j) { return gb_tanh(j->a); }
static gb_tensor *op_sigmoid(job *j) { return gb_sigmoid(j->a); }
static gb_tensor *op_exp(job *j) { return gb_exp(j->a); }
static gb_tensor *op_softmax(job *j) { return gb_softmax(j->a, j->dim); }
static gb_tensor *op_log_softmax(job *j) { return gb_log_softmax(j->a, j->dim); }
static gb_tensor *op_layer_norm(job *j) { return gb_layer_norm(j->a, j->b, j->c, 1e-5f); }
static gb_tensor *op_rms_norm(job *j) { return gb_rms_norm(j->a, j->b, 1e-6f); }

/* The backward kernel of j->y's op, called as autograd calls it. */
static void raw_backward(job *j) {
    BENCH_CHECK(gb__ts_ops[j->y->op].backward(j->y, j->dy, j->d) == GB_OK, "kernels: backward");
}

/* glassbox's product without the tensor around it: OpenBLAS's sgemm split
 * over glassbox's threads into a preallocated C. */
static void raw_sgemm(job *j) {
    gb__ts_mat a = {.p = j->pa, .rows = j->m, .cols = j->k, .rs = j->k, .cs = 1};
    gb__ts_mat b = {.p = j->pb, .rows = j->k, .cols = j->n, .rs = j->n, .cs = 1};
    gb__ts_mat c = {.p = j->pc, .rows = j->m, .cols = j->n, .rs = j->n, .cs = 1};
    BENCH_CHECK(gb__ts_gemm("raw_sgemm", &c, &a, &b, 0.0f, 0, NULL) == GB_OK, "raw_sgemm");
}

static gb_tensor *randn(gb_rng *r, int nd, const int64_t *shape) {
    gb_tensor *t = gb_randn(r, nd, shape, 0.0f, 1.0f);
    BENCH_CHECK(t, "randn");
    return t;
}

/* sgemm M x K @ K x N three ways: gb_matmul, raw cblas_sgemm, and (when
 * `linear`) gb_linear with the weight [N, K] read as a transposed operand. */
static void bench_gemm(gb_rng *r, int m, int k, int n, bool linear) {
    char name[64], what[128];
    double flop = 2.0 * m * n * k;
    job j = {.op = op_matmul, .m = m, .n = n, .k = k};
    j.a = randn(r, 2, (int64_t[]){m, k});
    j.b = randn(r, 2, (int64_t[]){k, n});
    snprintf(name, sizeof name, "sgemm_%dx%dx%d", m, k, n);
    snprintf(what, sizeof what, "gb_matmul [%d, %d] @ [%d, %d]", m, k, k, n);
    bench_row(name, "GFLOP/s", flop / best_time(&j) * 1e-9, what);

    j.c = gb_empty(2, (int64_t[]){m, n}, GB_DTYPE_F32);
    j.pa = gb_tensor_f32(j.a), j.pb = gb_tensor_f32(j.b), j.pc = gb_tensor_f32(j.c);
    j.raw = raw_sgemm;
    snprintf(name, sizeof name, "raw_sgemm_%dx%dx%d", m, k, n);
    snprintf(what, sizeof what, "gb__ts_gemm (OpenBLAS sgemm split over glassbox's threads), preallocated C");
    bench_row(name, "GFLOP/s", flop / best_time(&j) * 1e-9, what);
    j.raw = NULL;
    gb_tensor_free(j.b), gb_tensor_free(j.c);
    j.b = j.c = NULL;

    if (linear) {
        j.op = op_linear;
        j.b = randn(r, 2, (int64_t[]){n, k});
        snprintf(name, sizeof name, "linear_%dx%dx%d", m, k, n);
        snprintf(what, sizeof what, "gb_linear x [%d, %d], w [%d, %d] (w^T as sgemm T)", m, k, n, k);
        bench_row(name, "GFLOP/s", flop / best_time(&j) * 1e-9, what);
        gb_tensor_free(j.b);
    }
    gb_tensor_free(j.a);
}

/* softmax and the norms over [4096, 1024]: each op forward (the public
 * call, on an input that does not require grad), then backward (raw_backward
 * on a result recorded from inputs that do). GB/s counts 2 arrays forward
 * (x, y) and 3 backward (dy and x or y read, dx written). */
static void bench_softmax_norm(gb_rng *r) {
    const int64_t rows = 4096, cols = 1024;
    const struct {
        const char *name;
        gb_tensor *(*op)(job *);
        int dim, params; /* softmax dim; weight (and bias) */
        const char *what, *what_bwd;
    } ops[] = {
        {"softmax", op_softmax, -1, 0, "gb_softmax over rows of 1024", "its backward kernel (dx)"},
        {"softmax_dim0", op_softmax, 0, 0, "gb_softmax over dim 0 (columns of 4096, 1024 apart)",
         "its backward kernel (dx)"},
        {"log_softmax", op_log_softmax, -1, 0, "gb_log_softmax over rows of 1024", "its backward kernel (dx)"},
        {"layer_norm", op_layer_norm, 0, 2, "gb_layer_norm over rows of 1024, weight and bias",
         "its backward kernel (dx, dweight, dbias)"},
        {"rms_norm", op_rms_norm, 0, 1, "gb_rms_norm over rows of 1024, weight", "its backward kernel (dx, dweight)"},
    };
    gb_tensor *x = randn(r, 2, (int64_t[]){rows, cols}), *dy = randn(r, 2, (int64_t[]){rows, cols});
    gb_tensor *p[2] = {randn(r, 1, &cols), randn(r, 1, &cols)};
    double bytes = (double)rows * cols * 4;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char name[64];
        job j = {.op = ops[i].op, .dim = ops[i].dim, .a = x, .dy = dy};
        j.b = ops[i].params > 0 ? p[0] : NULL;
        j.c = ops[i].params > 1 ? p[1] : NULL;
        snprintf(name, sizeof name, "%s_%lldx%lld", ops[i].name, (long long)rows, (long long)cols);
        bench_row(name, "GB/s", 2.0 * bytes / best_time(&j) * 1e-9, ops[i].what);

        gb_tensor *in[3] = {x, j.b, j.c};
        int nin = 1 + ops[i].params;
        for (int k = 0; k < nin; k++) {
            BENCH_CHECK(gb_requires_grad_(in[k], true) == GB_OK, "kernels: requires_grad");
            j.d[k] = gb_zeros(in[k]->ndim, in[k]->shape, GB_DTYPE_F32);
            BENCH_CHECK(j.d[k], "kernels: zeros");
        }
        j.y = ops[i].op(&j);
        BENCH_CHECK(j.y, "kernels: forward");
        j.raw = raw_backward;
        snprintf(name, sizeof name, "%s_bwd_%lldx%lld", ops[i].name, (long long)rows, (long long)cols);
        bench_row(name, "GB/s", 3.0 * bytes / best_time(&j) * 1e-9, ops[i].what_bwd);
        gb_tensor_free(j.y);
        for (int k = 0; k < nin; k++) {
            gb_tensor_free(j.d[k]);
            BENCH_CHECK(gb_requires_grad_(in[k], false) == GB_OK, "kernels: requires_grad");
        }
    }
    gb_tensor_free(x), gb_tensor_free(dy), gb_tensor_free(p[0]), gb_tensor_free(p[1]);
    bench_note("*_bwd_4096x1024: the op's backward kernel alone on both sides (PyTorch's aten *_backward op, "
               "which writes a new gradient; glassbox's adds into one, reading it too)");
    bench_note("rms_norm_*: PyTorch 1.13 has no rms_norm; the reference is Hugging Face's LlamaRMSNorm "
               "arithmetic (pow, mean, rsqrt, two multiplies) and autograd's backward through it");
}

void bench_kernels(void) {
    gb_rng r = gb_rng_seed(1);
    bench_gemm(&r, 1024, 1024, 1024, false);
    bench_gemm(&r, 128, 768, 3072, true);

    const int64_t n = 16 * 1024 * 1024;
    job j = {0};
    j.a = randn(&r, 1, &n);
    j.b = randn(&r, 1, &n);
    struct {
        const char *name;
        gb_tensor *(*op)(job *);
        int arrays; /* read + written */
        const char *what;
    } ew[] = {
        {"add_16M", op_add, 3, "gb_add, 16M floats"},
        {"mul_16M", op_mul, 3, "gb_mul, 16M floats"},
        {"gelu_16M", op_gelu, 2, "gb_gelu (erf), 16M floats"},
        {"gelu_tanh_16M", op_gelu_tanh, 2, "gb_gelu_tanh (gelu_new), 16M floats"},
        {"silu_16M", op_silu, 2, "gb_silu, 16M floats"},
        {"tanh_16M", op_tanh, 2, "gb_tanh, 16M floats"},
        {"sigmoid_16M", op_sigmoid, 2, "gb_sigmoid, 16M floats"},
        {"exp_16M", op_exp, 2, "gb_exp, 16M floats"},
    };
    for (size_t i = 0; i < sizeof ew / sizeof ew[0]; i++) {
        j.op = ew[i].op;
        bench_row(ew[i].name, "GB/s", (double)ew[i].arrays * (double)n * 4 / best_time(&j) * 1e-9, ew[i].what);
    }
    gb_tensor_free(j.a), gb_tensor_free(j.b);

    bench_softmax_norm(&r);
}

static const struct {
    const char *name;
    void (*run)(void);
    bool asked; /* run only when named */
} PARTS[] = {{"kernels", bench_kernels, false}, {"lowp", bench_lowp, false}, {"autograd", bench_autograd, false},
             {"gpt2", bench_gpt2, false},       {"io", bench_io, false},       {"t128", bench_t128, false},
             {"big", bench_big, true}};
#define NPARTS (int)(sizeof PARTS / sizeof PARTS[0])

int main(int argc, char **argv) {
    bool want[NPARTS] = {0}, any = false;
    for (int i = 1; i < argc; i++) {
        int p = 0;
        if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            bench_data_dir = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--shared") && i + 1 < argc) {
            bench_shared_dir = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--big") && i + 1 < argc) {
            bench_big_dir = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--cli") && i + 1 < argc) {
            bench_cli = argv[++i];
            continue;
        }
        if (atoi(argv[i]) > 0) {
            bench_reps = atoi(argv[i]);
            continue;
        }
        while (p < NPARTS && strcmp(argv[i], PARTS[p].name)) p++;
        if (p == NPARTS || !strcmp(argv[i], "--help")) {
            fprintf(stderr, "usage: bench [--data DIR] [--shared DIR] [--big DIR] [--cli PATH] [reps] "
                            "[kernels|lowp|autograd|gpt2|io|t128|big ...]\n");
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
        want[p] = any = true;
    }
    const gb__ts_blas *blas = gb__ts_blas_get();
    BENCH_CHECK(blas, "loading OpenBLAS");
    char buf[32];
    bench_info("kernel", gb_blas_kernel());
    snprintf(buf, sizeof buf, "%d", gb_get_num_threads());
    bench_info("threads", buf);
    bench_info("openblas", blas->get_config());
    snprintf(buf, sizeof buf, "%d", bench_reps);
    bench_info("reps", buf);
    for (int p = 0; p < NPARTS; p++)
        if (want[p] || (!any && !PARTS[p].asked)) {
            bench_info("part", PARTS[p].name);
            PARTS[p].run();
        }
    return 0;
}
