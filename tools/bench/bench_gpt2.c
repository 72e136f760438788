/* Hooks and tracing on a GPT-2 forward pass: what the machinery costs on
 * top of the model's own arithmetic.
 *
 * Two models with the same module tree (GPT2LMHeadModel, 12 blocks, random
 * init): GPT-2 124M as asked of glassbox, and a tiny one (n_embd 64, vocab
 * 1024) whose forward is short enough that per-event and per-trace costs
 * stand out of the timing noise. Input: one sequence of 16 tokens.
 *
 * Hooks: a forward with a run that has no observer, with a gb_hooks
 * registry attached but no hooks, and with a no-op hook on every module's
 * output (GB_HOOK_SUBTREE on the root; it counts the events). Tracing:
 * gb_trace_new + gb_output/gb_save of 0, 1 or 12 block outputs +
 * gb_trace_run + gb_trace_free, against the plain forward. The variants of
 * one model are timed interleaved (each repetition runs every variant once)
 * so that a slow phase of a shared machine hits all of them alike. */
#include <string.h>

#include "bench.h"
#include "tensor/base.h" /* meta mode: shape-only forwards */

enum { SEQ = 16, NVARIANTS = 10, NREAL = 6 /* the first NREAL variants run real forwards */ };

typedef struct fwd_ctx {
    gb_module *model;
    gb_tensor *ids;  /* [1, SEQ] i64 */
    gb_run *run;     /* plain and registry variants */
    int64_t *events; /* the hooked variant's counter */
    int saves;       /* trace variants */
    bool meta;       /* shape-only forward: no arithmetic, so no arithmetic noise */
} fwd_ctx;

static void forward(void *ctx) {
    fwd_ctx *c = ctx;
    gb_tensor *y = NULL;
    if (c->meta) gb__meta_push();
    gb_run_reset_calls(c->run);
    BENCH_CHECK(gb_module_run(c->model, c->run, c->ids, &y) == GB_OK, "gpt2: forward");
    gb_tensor_free(y);
    if (c->meta) gb__meta_pop();
}

static void traced(void *ctx) {
    fwd_ctx *c = ctx;
    if (c->meta) gb__meta_push();
    gb_trace *tr = gb_trace_new(c->model, c->ids);
    BENCH_CHECK(tr, "gpt2: gb_trace_new");
    /* Paths as a user writes them: literals, not formatted in the timed loop. */
    static const char *const path[12] = {"transformer.h.0", "transformer.h.1", "transformer.h.2",  "transformer.h.3",
                                         "transformer.h.4", "transformer.h.5", "transformer.h.6",  "transformer.h.7",
                                         "transformer.h.8", "transformer.h.9", "transformer.h.10", "transformer.h.11"};
    gb_val *saved[12];
    for (int i = 0; i < c->saves; i++) saved[i] = gb_save(gb_output(tr, path[i]));
    BENCH_CHECK(gb_trace_run(tr) == GB_OK, "gpt2: gb_trace_run");
    int nd;
    int64_t shape[GB_MAX_DIMS];
    for (int i = 0; i < c->saves; i++)
        BENCH_CHECK(c->meta ? gb_val_shape(saved[i], &nd, shape) == GB_OK : gb_value(saved[i]) != NULL,
                    "gpt2: a saved value");
    gb_trace_free(tr);
    if (c->meta) gb__meta_pop();
}

static gb_status noop_hook(gb_event *ev, void *ctx) {
    (void)ev;
    ++*(int64_t *)ctx;
    return GB_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best time of each variant, the variants interleaved (see the file
 * comment); *spread is the median minus the best of the first variant, the
 * size of the noise the differences between variants compete with. */
static void best_interleaved(int n, int reps, void (*const *fn)(void *), void *const *ctx, double *best,
                             double *spread) {
    double *first = malloc((size_t)reps * sizeof *first);
    BENCH_CHECK(first, "gpt2: timings");
    for (int v = 0; v < n; v++) {
        fn[v](ctx[v]);
        best[v] = 1e30;
    }
    for (int rep = 0; rep < reps; rep++)
        for (int v = 0; v < n; v++) {
            double t0 = bench_now();
            fn[v](ctx[v]);
            double t = bench_now() - t0;
            if (t < best[v]) best[v] = t;
            if (v == 0) first[rep] = t;
        }
    qsort(first, (size_t)reps, sizeof *first, cmp_double);
    *spread = first[reps / 2] - best[0];
    free(first);
}

static void bench_model(const char *tag, const char *label, const gb_gpt2_config *cfg) {
    gb_module *model = gb_gpt2_new(cfg);
    BENCH_CHECK(model, "gpt2: gb_gpt2_new");
    gb_module_init(model, 3);
    gb_rng r = gb_rng_seed(4);
    gb_tensor *ids = gb_randint(&r, 2, (int64_t[]){1, SEQ}, 0, cfg->vocab_size);
    gb_run *plain = gb_run_new(), *observed = gb_run_new(), *hooked = gb_run_new();
    gb_hooks *empty = gb_hooks_new(model), *all = gb_hooks_new(model);
    BENCH_CHECK(ids && plain && observed && hooked && empty && all, "gpt2: setup");
    int64_t events = 0;
    BENCH_CHECK(gb_hook_add(all, model, GB_EVENT_OUTPUT, GB_HOOK_SUBTREE, noop_hook, &events) > 0, "gpt2: hook");
    gb_hooks_attach(empty, observed);
    gb_hooks_attach(all, hooked);

    /* events per forward */
    fwd_ctx c[NVARIANTS] = {
        {model, ids, plain, NULL, 0, false},  {model, ids, observed, NULL, 0, false},
        {model, ids, hooked, &events, 0, false}, {model, ids, NULL, NULL, 0, false},
        {model, ids, NULL, NULL, 1, false},   {model, ids, NULL, NULL, 12, false},
        {model, ids, plain, NULL, 0, true},   {model, ids, NULL, NULL, 0, true},
        {model, ids, NULL, NULL, 1, true},    {model, ids, NULL, NULL, 12, true},
    };
    forward(&c[2]);
    int64_t per_forward = events;
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)per_forward);
    char key[64];
    snprintf(key, sizeof key, "%s_events_per_forward", tag);
    bench_info(key, buf);

    void (*const fn[NVARIANTS])(void *) = {forward, forward, forward, traced, traced,
                                           traced,  forward, traced,  traced, traced};
    void *ctx[NVARIANTS];
    for (int v = 0; v < NVARIANTS; v++) ctx[v] = &c[v];
    /* Real and shape-only variants in separate rounds: a shape-only forward
     * timed right after a real 124M forward would pay for the caches that
     * forward evicted. */
    double t[NVARIANTS], spread, meta_spread;
    best_interleaved(NREAL, bench_reps, fn, ctx, t, &spread);
    /* Shape-only passes take tens of microseconds: many more of them, so
     * that the best of each is a sub-microsecond measurement. */
    best_interleaved(NVARIANTS - NREAL, bench_reps * 50, fn + NREAL, ctx + NREAL, t + NREAL, &meta_spread);

    char name[64], what[200];
    static const char *const variant[] = {"fwd",          "fwd_registry",        "fwd_hooked",       "trace_0_saves",
                                          "trace_1_save", "trace_12_saves",      "meta_fwd",         "meta_trace_0_saves",
                                          "meta_trace_1_save", "meta_trace_12_saves"};
    static const char *const desc[] = {
        "gb_module_run, run without observer",
        "run with a gb_hooks registry attached, no hooks",
        "no-op hook on every module's output (GB_HOOK_SUBTREE on the root)",
        "gb_trace_new + gb_trace_run + gb_trace_free, nothing saved",
        "trace saving transformer.h.0's output",
        "trace saving the output of each of the 12 blocks",
        "shape-only forward (meta tensors: every op and event, no arithmetic)",
        "shape-only trace, nothing saved",
        "shape-only trace saving transformer.h.0's output",
        "shape-only trace saving the output of each of the 12 blocks",
    };
    _Static_assert(sizeof variant / sizeof *variant == NVARIANTS, "one name per variant");
    _Static_assert(sizeof desc / sizeof *desc == NVARIANTS, "one description per variant");
    for (int v = 0; v < NVARIANTS; v++) {
        snprintf(name, sizeof name, "%s_%s", tag, variant[v]);
        snprintf(what, sizeof what, "%s, %d tokens: %s", label, SEQ, desc[v]);
        bench_row(name, "ms", t[v] * 1e3, what);
    }
    snprintf(name, sizeof name, "%s_registry_per_call", tag);
    snprintf(what, sizeof what, "(fwd_registry - fwd) / %lld module calls", (long long)per_forward);
    bench_row(name, "ns", (t[1] - t[0]) / (double)per_forward * 1e9, what);
    snprintf(name, sizeof name, "%s_hook_per_event", tag);
    snprintf(what, sizeof what, "(fwd_hooked - fwd) / %lld events", (long long)per_forward);
    bench_row(name, "ns", (t[2] - t[0]) / (double)per_forward * 1e9, what);
    snprintf(name, sizeof name, "%s_trace_overhead", tag);
    bench_row(name, "us", (t[7] - t[6]) * 1e6, "meta_trace_0_saves - meta_fwd: cost of one trace");
    snprintf(name, sizeof name, "%s_trace_per_save", tag);
    bench_row(name, "us", (t[9] - t[7]) / 12.0 * 1e6,
              "(meta_trace_12_saves - meta_trace_0_saves) / 12: cost per saved value");
    snprintf(what, sizeof what,
             "%s: the plain forward's median is %.3f ms above its best; differences between the variants smaller "
             "than that are noise (per event: %.0f ns, per trace: %.0f us); the shape-only forward's, %.1f us.",
             tag, spread * 1e3, spread / (double)per_forward * 1e9, spread * 1e6, meta_spread * 1e6);
    bench_note(what);

    gb_hooks_free(all), gb_hooks_free(empty);
    gb_run_free(hooked), gb_run_free(observed), gb_run_free(plain);
    gb_tensor_free(ids);
    gb_module_free(model);
}

void bench_gpt2(void) {
    gb_gpt2_config big = bench_gpt2_124m(), tiny = big;
    tiny.n_embd = 64, tiny.n_head = 4, tiny.vocab_size = 1024;
    bench_model("gpt2_124m", "GPT-2 124M", &big);
    bench_model("gpt2_tiny", "GPT-2 tree, n_embd 64, vocab 1024", &tiny);
    bench_note("nnsight's published tracing overhead (not measured here): about 300 us per trace plus 30-80 us per "
               "saved value.");
}
