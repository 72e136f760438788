/* glassbox benchmark (run through `make bench`, which compares it with
 * PyTorch in tools/bench/bench.py).
 *
 * Prints tab-separated lines on stdout:
 *   info <key> <value>                   kernel, threads, OpenBLAS config
 *   row  <name> <unit> <value> <what>    best of N timed runs after warmup
 * Units: GFLOP/s (2*M*N*K per product) or GB/s (bytes read + written once).
 *
 * usage: bench [reps]    (default 10)
 *
 * "raw" rows call the same OpenBLAS cblas_sgemm glassbox loaded (with the
 * kernel it chose) on preallocated buffers: the ceiling for gb_matmul, which
 * also allocates its output each call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "glassbox.h"
#include "tensor/blas.h"

static int reps = 10;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* One timed call; fails the whole bench (this is a tool) on error. */
typedef struct job {
    gb_tensor *(*op)(struct job *j); /* returns the result to free */
    void (*raw)(struct job *j);      /* or a plain call */
    gb_tensor *a, *b, *c;
    int m, n, k;
    float *pa, *pb, *pc;
} job;

static void run_once(job *j) {
    if (j->raw) {
        j->raw(j);
        return;
    }
    gb_tensor *y = j->op(j);
    if (!y) {
        fprintf(stderr, "bench: %s\n", gb_last_error());
        exit(1);
    }
    gb_tensor_free(y);
}

/* Best wall time of `reps` runs after two warmup runs. */
static double best_time(job *j) {
    for (int i = 0; i < 2; i++) run_once(j);
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        run_once(j);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

static void row(const char *name, const char *unit, double value, const char *what) {
    printf("row\t%s\t%s\t%.2f\t%s\n", name, unit, value, what);
    fflush(stdout);
}

static gb_tensor *op_matmul(job *j) { return gb_matmul(j->a, j->b); }
static gb_tensor *op_linear(job *j) { return gb_linear(j->a, j->b, NULL); }
static gb_tensor *op_add(job *j) { return gb_add(j->a, j->b); }
static gb_tensor *op_mul(job *j) { return gb_mul(j->a, j->b); }
static gb_tensor *op_gelu(job *j) { return gb_gelu(j->a); }
static gb_tensor *op_exp(job *j) { return gb_exp(j->a); }
static gb_tensor *op_softmax(job *j) { return gb_softmax(j->a, -1); }
static gb_tensor *op_layer_norm(job *j) { return gb_layer_norm(j->a, j->b, j->c, 1e-5f); }

static const gb__blas *blas;

static void raw_sgemm(job *j) {
    blas->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->m, j->n, j->k, 1.0f, j->pa, j->k, j->pb, j->n, 0.0f,
                j->pc, j->n);
}

static gb_tensor *randn(gb_rng *r, int nd, const int64_t *shape) {
    gb_tensor *t = gb_randn(r, nd, shape, 0.0f, 1.0f);
    if (!t) {
        fprintf(stderr, "bench: %s\n", gb_last_error());
        exit(1);
    }
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
    row(name, "GFLOP/s", flop / best_time(&j) * 1e-9, what);

    j.c = gb_empty(2, (int64_t[]){m, n}, GB_DTYPE_F32);
    j.pa = gb_tensor_f32(j.a), j.pb = gb_tensor_f32(j.b), j.pc = gb_tensor_f32(j.c);
    j.raw = raw_sgemm;
    snprintf(name, sizeof name, "raw_sgemm_%dx%dx%d", m, k, n);
    snprintf(what, sizeof what, "cblas_sgemm, same kernel, preallocated C");
    row(name, "GFLOP/s", flop / best_time(&j) * 1e-9, what);
    j.raw = NULL;
    gb_tensor_free(j.b), gb_tensor_free(j.c);
    j.b = j.c = NULL;

    if (linear) {
        j.op = op_linear;
        j.b = randn(r, 2, (int64_t[]){n, k});
        snprintf(name, sizeof name, "linear_%dx%dx%d", m, k, n);
        snprintf(what, sizeof what, "gb_linear x [%d, %d], w [%d, %d] (w^T as sgemm T)", m, k, n, k);
        row(name, "GFLOP/s", flop / best_time(&j) * 1e-9, what);
        gb_tensor_free(j.b);
    }
    gb_tensor_free(j.a);
}

int main(int argc, char **argv) {
    if (argc > 1) reps = atoi(argv[1]) > 0 ? atoi(argv[1]) : reps;
    blas = gb__blas_get();
    if (!blas) {
        fprintf(stderr, "bench: %s\n", gb_last_error());
        return 1;
    }
    printf("info\tkernel\t%s\n", gb_blas_kernel());
    printf("info\tthreads\t%d\n", gb_get_num_threads());
    printf("info\topenblas\t%s\n", blas->get_config());
    printf("info\treps\t%d\n", reps);
    fflush(stdout);

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
        {"exp_16M", op_exp, 2, "gb_exp, 16M floats"},
    };
    for (size_t i = 0; i < sizeof ew / sizeof ew[0]; i++) {
        j.op = ew[i].op;
        row(ew[i].name, "GB/s", (double)ew[i].arrays * (double)n * 4 / best_time(&j) * 1e-9, ew[i].what);
    }
    gb_tensor_free(j.a), gb_tensor_free(j.b);

    const int64_t rows = 4096, cols = 1024;
    j = (job){.op = op_softmax};
    j.a = randn(&r, 2, (int64_t[]){rows, cols});
    row("softmax_4096x1024", "GB/s", 2.0 * rows * cols * 4 / best_time(&j) * 1e-9, "gb_softmax over rows of 1024");
    j.op = op_layer_norm;
    j.b = randn(&r, 1, &cols);
    j.c = randn(&r, 1, &cols);
    row("layer_norm_4096x1024", "GB/s", 2.0 * rows * cols * 4 / best_time(&j) * 1e-9,
        "gb_layer_norm over rows of 1024, weight and bias");
    gb_tensor_free(j.a), gb_tensor_free(j.b), gb_tensor_free(j.c);
    return 0;
}
