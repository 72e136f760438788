/* Whole models at a realistic length: GPT-2 124M and a Llama-shaped model
 * of similar size (12 layers, hidden 768, 12 query heads sharing 4 KV
 * heads), random f32 weights, one sequence:
 *
 *   fwd     the forward of 128 tokens with the full logits, no autograd;
 *   fwdbwd  the same forward recording, the cross-entropy of each token
 *           against the next, gb_backward into every parameter, the
 *           gradients dropped (an optimiser's zero_grad(set_to_none));
 *   decode  greedy decoding (gb_decode, the loop of `glassbox generate`)
 *           with the KV cache: a prompt of 16 tokens, then 128 new ones;
 *           tokens per second and GB/s of weights read (every weight once
 *           per token).
 *
 * Beside them the machine's limits, measured in the same run: the sgemm
 * rate (gb__ts_gemm at the shape of GPT-2's MLP products) and the memory read
 * bandwidth; "limit" rows give the time the arithmetic (or, for decoding,
 * the weight bytes) would take at those rates. bench.py runs the same
 * workloads in PyTorch with the same shapes (the models written out there,
 * since transformers is not installed). */
#include <malloc.h>
#include <string.h>

#include "bench.h"
#include "tensor/base.h"
#include "tensor/blas.h"

enum { T_FULL = 128, T_PROMPT = 16, N_NEW = 128 };

typedef struct model_case {
    const char *tag;
    gb_module *net;
    int64_t vocab;
    double flop_fwd;    /* multiply-adds x 2 of one forward of T_FULL tokens */
    double weight_bytes; /* parameters read per decoded token */
} model_case;

typedef struct t128 {
    model_case *mc;
    gb_tensor *ids, *prompt; /* [1, T_FULL], [1, T_PROMPT] i64 */
    gb_tensor *targets;      /* [T_FULL - 1] i64: ids shifted left */
    gb_tensor **params;
    int nparams;
} t128;

static void run_fwd(void *ctx) {
    t128 *c = ctx;
    gb_grad_mode gm = gb_no_grad_begin();
    gb_run *run = gb_run_new();
    gb_tensor *y = NULL;
    BENCH_CHECK(run && gb_module_run(c->mc->net, run, c->ids, &y) == GB_OK, "t128: forward");
    gb_tensor_free(y);
    gb_run_free(run);
    gb_grad_mode_end(gm);
}

static void run_fwdbwd(void *ctx) {
    t128 *c = ctx;
    gb_run *run = gb_run_new();
    gb_tensor *y = NULL;
    BENCH_CHECK(run && gb_module_run(c->mc->net, run, c->ids, &y) == GB_OK, "t128: forward");
    gb_run_free(run);
    gb_tensor *s = gb_slice(y, 1, 0, T_FULL - 1, 1); /* logits of each token but the last */
    gb_tensor *l = s ? gb_reshape(s, 2, (int64_t[]){T_FULL - 1, c->mc->vocab}) : NULL;
    gb_tensor *loss = l ? gb_cross_entropy(l, c->targets, -100) : NULL;
    gb_tensor_free(y), gb_tensor_free(s), gb_tensor_free(l);
    BENCH_CHECK(loss, "t128: cross_entropy");
    BENCH_CHECK(gb_backward(loss, NULL, false) == GB_OK, "t128: backward");
    gb_tensor_free(loss);
    for (int i = 0; i < c->nparams; i++) gb_zero_grad(c->params[i]);
}

typedef struct plain {
    gb_run *run;
    gb_module *net;
} plain;

static gb_status plain_forward(void *ctx, int step, gb_tensor *ids, gb_tensor *mask, gb_tensor *pos,
                               gb_tensor **logits) {
    (void)step;
    plain *p = ctx;
    gb_run_set_attention_mask(p->run, mask);
    gb_run_set_position_ids(p->run, pos);
    return gb_module_run(p->net, p->run, ids, logits);
}

static void run_decode(void *ctx) {
    t128 *c = ctx;
    gb_grad_mode gm = gb_no_grad_begin();
    plain p = {gb_run_new(), c->mc->net};
    BENCH_CHECK(p.run, "t128: run");
    gb_run_use_cache(p.run, true);
    gb_decode_opts o = gb_decode_defaults();
    o.max_new_tokens = N_NEW;
    gb_tensor *out = NULL;
    BENCH_CHECK(gb_decode(plain_forward, &p, c->prompt, NULL, NULL, &o, &out) == GB_OK, "t128: decode");
    BENCH_CHECK(gb_tensor_dim(out, 1) == T_PROMPT + N_NEW, "t128: decode length");
    gb_tensor_free(out);
    gb_run_free(p.run);
    gb_grad_mode_end(gm);
}

/* The sgemm rate at GPT-2's MLP shape for 128 tokens, through gb__ts_gemm
 * (OpenBLAS split over glassbox's threads) on preallocated buffers. */
typedef struct gemm_job {
    float *a, *b, *c;
    int m, k, n;
    bool wt; /* B stored transposed ([n, k], nn.Linear's weight), else [k, n] */
} gemm_job;

static void run_gemm(void *ctx) {
    gemm_job *j = ctx;
    gb__ts_mat a = {.p = j->a, .rows = j->m, .cols = j->k, .rs = j->k, .cs = 1};
    gb__ts_mat b = {.p = j->b, .rows = j->k, .cols = j->n, .rs = j->wt ? 1 : j->n, .cs = j->wt ? j->k : 1};
    gb__ts_mat c = {.p = j->c, .rows = j->m, .cols = j->n, .rs = j->n, .cs = 1};
    BENCH_CHECK(gb__ts_gemm("t128 sgemm", &c, &a, &b, 0.0f, 0, NULL) == GB_OK, "t128: sgemm");
}

/* GFLOP/s of gb__ts_gemm at 128 x 768 x 3072 with B stored one way. */
static double sgemm_rate(bool wt) {
    gemm_job j = {.m = T_FULL, .k = 768, .n = 3072, .wt = wt};
    j.a = calloc((size_t)j.m * j.k, 4), j.b = calloc((size_t)j.k * j.n, 4), j.c = calloc((size_t)j.m * j.n, 4);
    BENCH_CHECK(j.a && j.b && j.c, "t128: sgemm buffers");
    for (int i = 0; i < j.m * j.k; i++) j.a[i] = (float)(i % 7) * 0.1f;
    for (int i = 0; i < j.k * j.n; i++) j.b[i] = (float)(i % 5) * 0.1f;
    double rate = 2.0 * j.m * j.k * j.n / bench_best(run_gemm, &j) * 1e-9;
    free(j.a), free(j.b), free(j.c);
    return rate;
}

/* 2 x multiply-adds of the products of one forward over t tokens: every
 * linear layer (params in matrices, the embedding excluded, the lm_head
 * included), and the attention's two products (t^2/2 keys seen on average,
 * counted in full as the kernels compute them). */
static double forward_flop(double linear_params, double layers, double t, double attn_width) {
    return 2.0 * linear_params * t + layers * 2.0 * 2.0 * t * t * attn_width;
}

/* Best wall time of fn(ctx) over reps calls after one warmup call (the
 * long rows: bench_best's two warmups and bench_reps calls of a 128-token
 * decoding take minutes on a loaded machine). */
static double best_of(void (*fn)(void *), void *ctx, int reps) {
    fn(ctx);
    double best = 1e30;
    for (int i = 0; i < (reps > 0 ? reps : 1); i++) {
        double t0 = bench_now();
        fn(ctx);
        double t = bench_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* A line of /proc/self/status in MB (VmRSS, VmHWM), or -1. */
static double status_mb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') v = atof(line + n + 1) / 1024.0;
    if (f) fclose(f);
    return v;
}

/* Peak resident memory of one forward. What earlier work left resident is
 * released first: the allocator's kept mappings (gb__mem_trim: a freed
 * model's weights or the initialisation's temporaries would otherwise count)
 * and malloc's free memory; then the process's peak is reset (clear_refs 5),
 * so the peak is the weights, the code and libraries' buffers at rest, and
 * what the forward itself holds at its fullest. */
static void peak_memory(t128 *c) {
    run_fwd(c); /* warm: OpenBLAS's buffers exist either way */
    gb__mem_trim();
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f);
    fclose(f);
    double before = status_mb("VmRSS");
    run_fwd(c);
    double peak = status_mb("VmHWM");
    if (before < 0 || peak < 0) return;
    double weights = 0, logits = 4.0 * T_FULL * c->mc->vocab / 1048576.0;
    for (int i = 0; i < c->nparams; i++) /* every parameter is resident, Llama's embedding table included */
        weights += (double)gb_tensor_numel(c->params[i]) * (double)gb_dtype_size(gb_tensor_dtype(c->params[i]));
    weights /= 1048576.0;
    char name[64], what[200];
    snprintf(name, sizeof name, "%s_fwd_t128_peak", c->mc->tag);
    snprintf(what, sizeof what, "peak resident in the forward (at rest before it %.0f MB); weights %.0f MB + logits "
             "%.0f MB = %.0f MB; ratio %.2f", before, weights, logits, weights + logits, peak / (weights + logits));
    bench_row(name, "MB", peak, what);
}

static void bench_case(model_case *mc, double gflops, double gbps) {
    gb_rng r = gb_rng_seed(5);
    t128 c = {.mc = mc};
    c.ids = gb_randint(&r, 2, (int64_t[]){1, T_FULL}, 0, mc->vocab);
    BENCH_CHECK(c.ids, "t128: ids");
    c.prompt = gb_slice(c.ids, 1, 0, T_PROMPT, 1);
    gb_tensor *flat = gb_reshape(c.ids, 1, (int64_t[]){T_FULL});
    gb_tensor *next = flat ? gb_slice(flat, 0, 1, T_FULL, 1) : NULL;
    c.targets = next ? gb_contiguous(next) : NULL;
    gb_tensor_free(flat), gb_tensor_free(next);
    BENCH_CHECK(c.prompt && c.targets, "t128: inputs");
    const char **names = NULL;
    c.nparams = gb_module_parameters(mc->net, &names, &c.params);
    BENCH_CHECK(c.nparams > 0, "t128: parameters");
    free(names);

    peak_memory(&c);
    char name[64], what[200];
    double t = best_of(run_fwd, &c, bench_reps);
    snprintf(name, sizeof name, "%s_fwd_t128", mc->tag);
    snprintf(what, sizeof what, "forward of 128 tokens, full logits (%.1f GFLOP: %.0f%% of the sgemm rate)",
             mc->flop_fwd * 1e-9, 100.0 * mc->flop_fwd / t * 1e-9 / gflops);
    bench_row(name, "ms", t * 1e3, what);
    snprintf(name, sizeof name, "%s_fwd_t128_limit", mc->tag);
    bench_row(name, "ms", mc->flop_fwd / gflops * 1e-6, "its products at the sgemm rate (the faster sgemm_t128 row)");

    BENCH_CHECK(gb_module_requires_grad_(mc->net, true) == GB_OK, "t128: requires_grad");
    t = best_of(run_fwdbwd, &c, bench_reps / 2);
    snprintf(name, sizeof name, "%s_fwdbwd_t128", mc->tag);
    snprintf(what, sizeof what, "the same recording, cross-entropy, gb_backward into all parameters "
             "(%.0f%% of the sgemm rate)", 300.0 * mc->flop_fwd / t * 1e-9 / gflops);
    bench_row(name, "ms", t * 1e3, what);
    snprintf(name, sizeof name, "%s_fwdbwd_t128_limit", mc->tag);
    bench_row(name, "ms", 3.0 * mc->flop_fwd / gflops * 1e-6, "3x the forward's products at the sgemm rate");
    BENCH_CHECK(gb_module_requires_grad_(mc->net, false) == GB_OK, "t128: requires_grad");

    t = best_of(run_decode, &c, bench_reps / 4);
    snprintf(name, sizeof name, "%s_decode", mc->tag);
    snprintf(what, sizeof what, "greedy decoding, KV cache: prompt 16, %d new tokens (%.1f GB/s of weights: "
             "%.0f%% of memory_read)", N_NEW, mc->weight_bytes * N_NEW / t * 1e-9,
             100.0 * mc->weight_bytes * N_NEW / t * 1e-9 / gbps);
    bench_row(name, "tok/s", N_NEW / t, what);
    snprintf(name, sizeof name, "%s_decode_limit", mc->tag);
    bench_row(name, "tok/s", gbps * 1e9 / mc->weight_bytes, "every weight read once per token at memory_read");

    free(c.params);
    gb_tensor_free(c.ids), gb_tensor_free(c.prompt), gb_tensor_free(c.targets);
}

void bench_t128(void) {
    /* the limit is the faster layout: either runs one of glassbox's own
     * kernels (tensor/wgemm.c) on AVX-512, OpenBLAS's sgemm elsewhere */
    double kn = sgemm_rate(false), nk = sgemm_rate(true), gflops = kn > nk ? kn : nk, gbps = bench_memory_bandwidth();
    bench_row("sgemm_t128", "GFLOP/s", kn, "gb__ts_gemm [128, 768] @ [768, 3072], B stored [768, 3072], preallocated C");
    bench_row("sgemm_t128_wt", "GFLOP/s", nk, "the same with B stored transposed, [3072, 768] (nn.Linear's weight); "
              "the faster of the two is the sgemm limit");
    bench_row("memory_read", "GB/s", gbps, "sum of 2 GB in 8 streams per thread: the bandwidth limit");

    gb_gpt2_config g = bench_gpt2_124m();
    model_case gpt2 = {.tag = "gpt2_124m", .net = gb_gpt2_new(&g), .vocab = g.vocab_size};
    BENCH_CHECK(gpt2.net, "t128: gb_gpt2_new");
    gb_module_init(gpt2.net, 3);
    double E = (double)g.n_embd, L = (double)g.n_layer;
    gpt2.flop_fwd = forward_flop(L * 12.0 * E * E + E * (double)g.vocab_size, L, T_FULL, E);
    gpt2.weight_bytes = 4.0 * (L * 12.0 * E * E + E * (double)g.vocab_size);
    bench_case(&gpt2, gflops, gbps);
    gb_module_free(gpt2.net);

    gb_llama_config lc = {.vocab_size = 32000, .hidden_size = 768, .intermediate_size = 2048,
                          .num_hidden_layers = 12, .num_attention_heads = 12, .num_key_value_heads = 4,
                          .max_position_embeddings = 2048, .rms_norm_eps = 1e-5f, .rope_theta = 10000.0,
                          .hidden_act = "silu"};
    model_case llama = {.tag = "llama_12x768", .net = gb_llama_new(&lc), .vocab = lc.vocab_size};
    BENCH_CHECK(llama.net, "t128: gb_llama_new");
    gb_module_init(llama.net, 3);
    double H = 768, KVW = 768.0 / 3, FF = 2048, V = 32000, LL = 12;
    double per_layer = H * H * 2 + H * KVW * 2 + 3 * H * FF; /* q, o; k, v; gate, up, down */
    llama.flop_fwd = forward_flop(LL * per_layer + H * V, LL, T_FULL, H);
    llama.weight_bytes = 4.0 * (LL * per_layer + H * V);
    bench_case(&llama, gflops, gbps);
    gb_module_free(llama.net);
    bench_note("t128 rows: GPT-2 124M and a Llama-shaped model (12 layers, hidden 768, 12 heads, 4 KV heads, "
               "intermediate 2048, vocabulary 32000, untied lm_head), random f32 weights, batch 1");
}
