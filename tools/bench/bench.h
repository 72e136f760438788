/* Shared by the parts of glassbox's benchmark (the .c files in tools/bench/), which
 * tools/bench/bench.py runs and compares with PyTorch.
 *
 * Output lines on stdout, tab-separated:
 *   info <key> <value>                    configuration and counts
 *   row  <name> <unit> <value> <what>     one measurement
 *   note <text>                           printed under the table
 * A unit that is a time (ns, us, ms, s) is lower-is-better; a rate
 * (GFLOP/s, GB/s, MB/s) is higher-is-better. */
#ifndef GB_BENCH_H
#define GB_BENCH_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "glassbox.h"

/* Timed runs per measurement, after two warmup runs (bench [reps]). */
extern int bench_reps;
/* Where the benchmark keeps generated inputs (checkpoint, text), and ../shared. */
extern const char *bench_data_dir;
extern const char *bench_shared_dir;
/* The big part's checkpoint directory and the CLI it runs (bench --big DIR --cli PATH). */
extern const char *bench_big_dir;
extern const char *bench_cli;

static inline double bench_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A tool, not the library: a failure ends the benchmark with glassbox's message. */
#define BENCH_CHECK(ok, what)                                                                                   \
    do {                                                                                                        \
        if (!(ok)) {                                                                                            \
            fprintf(stderr, "bench: %s: %s\n", (what), gb_last_error());                                        \
            exit(1);                                                                                            \
        }                                                                                                       \
    } while (0)

static inline void bench_row(const char *name, const char *unit, double value, const char *what) {
    printf("row\t%s\t%s\t%.4g\t%s\n", name, unit, value, what);
    fflush(stdout);
}

static inline void bench_info(const char *key, const char *value) {
    printf("info\t%s\t%s\n", key, value);
    fflush(stdout);
}

static inline void bench_note(const char *text) {
    printf("note\t%s\n", text);
    fflush(stdout);
}

/* Best wall time of bench_reps calls of fn(ctx) after two warmup calls. */
static inline double bench_best(void (*fn)(void *ctx), void *ctx) {
    for (int i = 0; i < 2; i++) fn(ctx);
    double best = 1e30;
    for (int i = 0; i < bench_reps; i++) {
        double t0 = bench_now();
        fn(ctx);
        double t = bench_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* GPT-2 124M's configuration (Hugging Face's defaults for "gpt2"). */
static inline gb_gpt2_config bench_gpt2_124m(void) {
    return (gb_gpt2_config){.vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12,
                            .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new", .attn_pdrop = 0.1f,
                            .embd_pdrop = 0.1f, .resid_pdrop = 0.1f};
}

/* A random GPT-2 124M checkpoint (config.json + model.safetensors with its
 * weights in dt) in dir, written unless an earlier run left it there. */
void bench_gpt2_checkpoint(const char *dir, gb_dtype dt);

/* The parts, each printing its rows. */
void bench_kernels(void);
void bench_autograd(void);
void bench_gpt2(void); /* hooks and tracing */
void bench_io(void);   /* model opening and the tokenizer */
void bench_lowp(void); /* bf16 weights as stored */
void bench_big(void);  /* a Llama-3-8B-shaped bf16 checkpoint: only when asked for */
void bench_t128(void); /* GPT-2 124M and a Llama-shaped model at 128 tokens: forward, backward, decoding */
/* Memory read bandwidth (GB/s): the sum of a 2 GB array on glassbox's
 * threads, 8 streams per thread. */
double bench_memory_bandwidth(void);

#endif
