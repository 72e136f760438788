/* bf16 weights read as stored (tensor/lowp.c) against the same products
 * with f32 weights: gb_linear at GPT-2's MLP size for a 128-token prompt,
 * and GEMV (one token, what generation runs) at GPT-2's MLP size and at
 * Llama-3-8B's (4096 -> 14336), with the weight row-major (nn.Linear) or
 * transposed (GPT-2's Conv1D, [in, out] read as a transposed view).
 *
 * GEMV rows count the weight bytes read per second. The Llama-sized rows
 * cycle through 16 weight matrices (1.9 GB in bf16, four times the L3
 * cache this machine reports) so that each call reads its weights from
 * memory, as a forward through 32 layers does; the read row measures this
 * machine's memory bandwidth on a 2 GB array, the ceiling of those rows. The GPT-2-sized rows reuse one matrix (4.7 MB in
 * bf16): kernel speed with the weights in cache. */
#include "bench.h"
#include "tensor/lowp.h"

enum { NROT = 16 };

typedef struct lin {
    gb_tensor *x, *w[NROT];
    int nw, next;
    bool transposed;
} lin;

static void run_linear(void *ctx) {
    lin *l = ctx;
    gb_tensor *w = l->w[l->next], *wv = l->transposed ? gb_transpose(w, 0, 1) : gb_tensor_ref(w);
    l->next = (l->next + 1) % l->nw;
    gb_tensor *y = gb_linear(l->x, wv, NULL);
    BENCH_CHECK(y, "lowp: linear");
    gb_tensor_free(y), gb_tensor_free(wv);
}

/* gb_linear of x [m, k] with nw weights [n, k] (stored [k, n] when
 * transposed) of dtype dt: the best time of one call. */
static double time_linear(int64_t m, int64_t k, int64_t n, gb_dtype dt, bool transposed, int nw) {
    gb_rng r = gb_rng_seed(7);
    lin l = {.x = gb_randn(&r, 2, (int64_t[]){m, k}, 0.0f, 1.0f), .nw = nw, .transposed = transposed};
    BENCH_CHECK(l.x, "lowp: randn");
    for (int i = 0; i < nw; i++) {
        gb_tensor *f = gb_randn(&r, 2, transposed ? (int64_t[]){k, n} : (int64_t[]){n, k}, 0.0f, 0.02f);
        BENCH_CHECK(f && (l.w[i] = gb_to_dtype(f, dt)), "lowp: weights");
        gb_tensor_free(f);
    }
    double t = bench_best(run_linear, &l);
    gb_tensor_free(l.x);
    for (int i = 0; i < nw; i++) gb_tensor_free(l.w[i]);
    return t;
}

typedef struct reader {
    const uint64_t *p;
    int64_t n;
    uint64_t sink;
} reader;

/* Eight streams at once per thread, as the GEMV kernels read several
 * weight rows at once: one sequential stream per core measured about half
 * the bandwidth here (the hardware prefetchers keep only so many lines in
 * flight per stream). */
static void run_read(void *ctx) {
    reader *rd = ctx;
    uint64_t s = 0;
    int64_t len = rd->n / 8;
#pragma omp parallel for reduction(+ : s) num_threads(gb_get_num_threads()) schedule(static)
    for (int64_t i = 0; i < len; i += 8)
        for (int64_t j = 0; j < 8; j++)
            for (int64_t k = 0; k < 8; k++) s += rd->p[j * len + i + k];
    rd->sink += s;
}

/* GPT-2 124M from a checkpoint: a 16-token prompt's forward, and greedy
 * decoding with the KV cache after it. */
typedef struct gen {
    gb_module *net;
    gb_tensor *ids;
    int steps;
} gen;

static void run_generate(void *ctx) {
    gen *g = ctx;
    gb_trace *tr = gb_trace_new(g->net, g->ids);
    BENCH_CHECK(tr && gb_trace_generate(tr, g->steps) == GB_OK, "lowp: generate");
    gb_trace_free(tr);
}

/* Both models timed interleaved (each repetition runs every variant once)
 * so that a slow phase of a shared machine hits them alike. */
static void bench_gpt2_dtypes(void) {
    static const gb_dtype dts[2] = {GB_DTYPE_BF16, GB_DTYPE_F32};
    static const char *const dirs[2] = {"gpt2-124m-bf16", "gpt2-124m"}, *const tags[2] = {"bf16", "f32"};
    int64_t tok[16];
    for (int i = 0; i < 16; i++) tok[i] = (i * 7919 + 13) % 50257;
    gb_tensor *ids = gb_from_data(tok, 2, (int64_t[]){1, 16}, GB_DTYPE_I64);
    gb_model *m[2];
    gen g[2][2]; /* [dtype][prompt only, prompt + 32 steps] */
    double best[2][2];
    for (int d = 0; d < 2; d++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", bench_data_dir, dirs[d]);
        bench_gpt2_checkpoint(dir, dts[d]);
        BENCH_CHECK(m[d] = gb_model_open(dir, NULL), "lowp: gb_model_open");
        for (int s = 0; s < 2; s++) {
            g[d][s] = (gen){.net = gb_model_module(m[d]), .ids = ids, .steps = s ? 33 : 1};
            run_generate(&g[d][s]); /* warm up */
            best[d][s] = 1e30;
        }
    }
    for (int r = 0; r < bench_reps; r++)
        for (int d = 0; d < 2; d++)
            for (int s = 0; s < 2; s++) {
                double t0 = bench_now();
                run_generate(&g[d][s]);
                double t = bench_now() - t0;
                if (t < best[d][s]) best[d][s] = t;
            }
    for (int d = 0; d < 2; d++) {
        char name[64], what[160];
        snprintf(name, sizeof name, "gpt2_124m_%s_prompt16", tags[d]);
        snprintf(what, sizeof what, "GPT-2 124M, %s weights as stored: the forward of a 16-token prompt",
                 gb_dtype_name(dts[d]));
        bench_row(name, "ms", best[d][0] * 1e3, what);
        snprintf(name, sizeof name, "gpt2_124m_%s_decode", tags[d]);
        bench_row(name, "ms", (best[d][1] - best[d][0]) / 32 * 1e3,
                  "the same: greedy decoding with the KV cache, per token (32 tokens)");
        gb_model_free(m[d]);
    }
    gb_tensor_free(ids);
}

double bench_memory_bandwidth(void) {
    const int64_t n = (int64_t)2 << 30 >> 3; /* 2 GB */
    reader rd = {.n = n};
    uint64_t *p = malloc((size_t)n * sizeof *p);
    BENCH_CHECK(p, "2 GB for the memory read bandwidth");
    for (int64_t i = 0; i < n; i++) p[i] = (uint64_t)i;
    rd.p = p;
    double bw = (double)n * 8 / bench_best(run_read, &rd) * 1e-9;
    free(p);
    return bw;
}

void bench_lowp(void) {
    char name[64], what[160];
    static const gb_dtype dts[2] = {GB_DTYPE_BF16, GB_DTYPE_F32};
    static const char *const tags[2] = {"_bf16", ""};

    /* a 128-token prompt through GPT-2's MLP up-projection (f32: kernels' linear_128x768x3072) */
    bench_row("linear_bf16_128x768x3072", "GFLOP/s",
              2.0 * 128 * 768 * 3072 / time_linear(128, 768, 3072, GB_DTYPE_BF16, false, 1) * 1e-9,
              gb__ts_lowp_amx_get() ? "gb_linear x [128, 768] f32, w [3072, 768] bfloat16 (AMX on x split in 3 bf16 parts)"
                                 : "gb_linear x [128, 768] f32, w [3072, 768] bfloat16 (f32 panels through sgemm)");
    /* the Llama-3-8B MLP's up-projection for a 128-token prompt */
    bench_row("linear_bf16_128x4096x14336", "GFLOP/s",
              2.0 * 128 * 4096 * 14336 / time_linear(128, 4096, 14336, GB_DTYPE_BF16, false, 1) * 1e-9,
              "gb_linear x [128, 4096] f32, w [14336, 4096] bfloat16 (the same kernel)");
    if (gb__ts_lowp_amx_get()) {
        gb__ts_lowp_amx was = gb__ts_lowp_amx_set(GB__LOWP_AMX_OFF);
        bench_row("linear_bf16_sgemm_128x768x3072", "GFLOP/s",
                  2.0 * 128 * 768 * 3072 / time_linear(128, 768, 3072, GB_DTYPE_BF16, false, 1) * 1e-9,
                  "linear_bf16_128x768x3072 without AMX: f32 panels through sgemm");
        bench_row("linear_t_bf16_sgemm_128x768x3072", "GFLOP/s",
                  2.0 * 128 * 768 * 3072 / time_linear(128, 768, 3072, GB_DTYPE_BF16, true, 1) * 1e-9,
                  "linear_t_bf16_128x768x3072 without AMX: f32 panels through sgemm");
        bench_row("linear_bf16_sgemm_128x4096x14336", "GFLOP/s",
                  2.0 * 128 * 4096 * 14336 / time_linear(128, 4096, 14336, GB_DTYPE_BF16, false, 1) * 1e-9,
                  "linear_bf16_128x4096x14336 without AMX: f32 panels through sgemm");
        gb__ts_lowp_amx_set(was);
    }
    bench_row("linear_t_bf16_128x768x3072", "GFLOP/s",
              2.0 * 128 * 768 * 3072 / time_linear(128, 768, 3072, GB_DTYPE_BF16, true, 1) * 1e-9,
              "the same with Conv1D's weight [768, 3072] read transposed");

    /* one token */
    static const struct {
        int64_t k, n;
        int nw;
        bool transposed;
        const char *name, *what;
    } gemv[] = {
        {768, 3072, 1, false, "gemv%s_768x3072", "x [1, 768] @ w^T, w [3072, 768] %s, in cache"},
        {768, 3072, 1, true, "gemv_t%s_768x3072", "x [1, 768] @ w, Conv1D's w [768, 3072] %s, in cache"},
        {4096, 14336, NROT, false, "gemv%s_4096x14336", "x [1, 4096] @ w^T, w [14336, 4096] %s, from memory"},
        {4096, 14336, NROT, true, "gemv_t%s_4096x14336", "x [1, 4096] @ w, w [4096, 14336] %s, from memory"},
    };
    for (size_t i = 0; i < sizeof gemv / sizeof gemv[0]; i++)
        for (int d = 0; d < 2; d++) {
            if (gemv[i].transposed && d == 1) continue; /* sgemm reads either layout alike */
            double t = time_linear(1, gemv[i].k, gemv[i].n, dts[d], gemv[i].transposed, gemv[i].nw);
            snprintf(name, sizeof name, gemv[i].name, tags[d]);
            snprintf(what, sizeof what, gemv[i].what, gb_dtype_name(dts[d]));
            bench_row(name, "GB/s", (double)gemv[i].k * gemv[i].n * gb_dtype_size(dts[d]) / t * 1e-9, what);
        }
    if (gb__ts_lowp_isa_best() >= GB__LOWP_ISA_AVX512BF16) {
        gb__ts_lowp_isa was = gb__ts_lowp_isa_set(GB__LOWP_ISA_AVX512BF16);
        double t = time_linear(1, 768, 3072, GB_DTYPE_BF16, false, 1);
        bench_row("gemv_dpbf16_768x3072", "GB/s", 768.0 * 3072 * 2 / t * 1e-9,
                  "gemv_bf16_768x3072 with vdpbf16ps on split activations (not the default)");
        t = time_linear(1, 4096, 14336, GB_DTYPE_BF16, false, NROT);
        bench_row("gemv_dpbf16_4096x14336", "GB/s", 4096.0 * 14336 * 2 / t * 1e-9,
                  "gemv_bf16_4096x14336 with vdpbf16ps on split activations (not the default)");
        gb__ts_lowp_isa_set(was);
    }

    bench_gpt2_dtypes();

    bench_row("memory_read_2GB", "GB/s", bench_memory_bandwidth(),
              "sum of 2 GB of uint64 in 8 streams per thread: the memory bandwidth GEMV can reach");
    bench_note("linear_bf16_*, gemv_bf16_*: PyTorch's rows compute in bfloat16 (F.linear on bfloat16 x and w: "
               "oneDNN, activations rounded to bf16); glassbox keeps f32 activations and f32 sums");
}
