/* The "big" part (`make bench-big`, not in `make bench`): glassbox on a
 * Llama-3-8B-shaped bf16 checkpoint written by tools/bigmodel/make_llama.c
 * (16 GB, under /tmp by default: bench --big DIR). In order: gb_model_open;
 * `glassbox info` as a child process (time and its peak resident memory);
 * a forward of 7 tokens; a trace saving every layer's output at the last
 * position; greedy decoding with the KV cache. Each row after the first
 * reports this process's peak resident memory so far (getrusage), which
 * counts the pages of the mapped weights a forward reads; the decoding rows
 * give the weight bytes read per token over the time per token, against
 * the memory read bandwidth measured here. One measurement each (a
 * forward reads 16 GB): no repetitions. */
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

const char *bench_big_dir = "/tmp/glassbox-llama8b";
const char *bench_cli = "build/glassbox";

static double peak_gib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / (1 << 20); /* KiB -> GiB */
}

static void row_mem(const char *name, const char *what) {
    char w[256];
    snprintf(w, sizeof w, "peak resident memory after: %s", what);
    bench_row(name, "GiB", peak_gib(), w);
}

/* `glassbox info DIR` in a child: its wall time and peak resident memory. */
static void bench_info_cli(void) {
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout)) _exit(126);
        execl(bench_cli, bench_cli, "info", bench_big_dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    BENCH_CHECK(pid > 0 && wait4(pid, &status, 0, &ru) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "big: glassbox info (is the CLI built?)");
    bench_row("llama8b_info", "s", bench_now() - t0, "glassbox info DIR (a child process): open and print the tree");
    bench_row("llama8b_info_peak", "GiB", (double)ru.ru_maxrss / (1 << 20), "its peak resident memory");
}

void bench_big(void) {
    char buf[128];
    double t0 = bench_now();
    gb_model *m = gb_model_open(bench_big_dir, NULL);
    BENCH_CHECK(m, "big: gb_model_open (run tools/bigmodel's make_llama first: make bench-big)");
    bench_row("llama8b_open", "s", bench_now() - t0, "gb_model_open of the bf16 checkpoint (weights mapped)");
    row_mem("llama8b_open_peak", "opening");
    snprintf(buf, sizeof buf, "%.2f", (double)gb_model_file_bytes(m) / 1e9);
    bench_info("big_checkpoint_gb", buf);
    bench_info_cli();

    gb_module *net = gb_model_module(m);
    const gb_llama_config *c = gb_model_llama_config(m);
    int64_t tok[7] = {128000, 791, 6864, 315, 9822, 374, 12366};
    gb_tensor *ids = gb_from_data(tok, 2, (int64_t[]){1, 7}, GB_DTYPE_I64), *logits = NULL;
    t0 = bench_now();
    BENCH_CHECK(gb_module_run(net, NULL, ids, &logits) == GB_OK, "big: forward");
    bench_row("llama8b_forward7", "s", bench_now() - t0, "a forward of 7 tokens (gb_module_run)");
    row_mem("llama8b_forward7_peak", "the forward");
    gb_tensor_free(logits);

    gb_trace *tr = gb_trace_new(net, ids);
    BENCH_CHECK(tr, "big: trace");
    char path[64];
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        snprintf(path, sizeof path, "model.layers.%lld", (long long)l);
        gb_save(gb_val_index(gb_val_index(gb_output(tr, path), "[0]"), "[:, -1, :]"));
    }
    t0 = bench_now();
    BENCH_CHECK(gb_trace_run(tr) == GB_OK, "big: trace run");
    bench_row("llama8b_trace_layers", "s", bench_now() - t0, "a trace saving every layer's output at the last position");
    gb_trace_free(tr);
    row_mem("llama8b_trace_peak", "the trace");

    /* Decoding: 1 then 1 + 8 new tokens; the difference is 8 steps. */
    double t[2];
    for (int i = 0; i < 2; i++) {
        tr = gb_trace_new(net, ids);
        t0 = bench_now();
        BENCH_CHECK(tr && gb_trace_generate(tr, i ? 9 : 1) == GB_OK, "big: generate");
        t[i] = bench_now() - t0;
        gb_trace_free(tr);
    }
    double per = (t[1] - t[0]) / 8;
    /* Bytes a step reads: every weight but the embedding table's unused rows. */
    double bytes = (double)gb_model_file_bytes(m) - (double)c->vocab_size * c->hidden_size * 2;
    bench_row("llama8b_decode", "tokens/s", 1.0 / per, "greedy decoding with the KV cache (8 steps after the prompt)");
    bench_row("llama8b_decode_bw", "GB/s", bytes / per * 1e-9, "weight bytes read per token / time per token");
    row_mem("llama8b_decode_peak", "decoding");
    double bw = bench_memory_bandwidth();
    bench_row("memory_read_2GB", "GB/s", bw, "the memory read bandwidth measured here (as in the lowp part)");
    snprintf(buf, sizeof buf, "decoding streamed weights at %.0f%% of the measured memory bandwidth",
             100.0 * bytes / per * 1e-9 / bw);
    bench_note(buf);
    gb_tensor_free(ids);
    gb_model_free(m);
}
