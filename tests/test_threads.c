/* One model shared by several threads (docs/ARCHITECTURE.md, "Threads").
 *
 * A model is opened once; every thread defines and runs its own traces on
 * it (a getter, an in-place edit, a replaced output, requires_grad, a
 * gradient and backward; a generation with an edit at step 2; two invokes
 * batched), its own plain forwards and its own plain generations, several
 * times over. Expected values: what the same definitions give when run on
 * one thread before any other starts. Determinism is the derivation: the
 * same weights, input, operations and thread counts give the same bits, so
 * any difference is one thread's run seeing another's state. The
 * single-threaded reference itself is checked against PyTorch in
 * test_exec.c and test_nn_models.c (fixtures) and test_demo.c (bundled
 * model); here the bundled model's greedy continuation is also checked
 * against its oracle (tests/oracle/bundled.py). */
#include <pthread.h>
#include <stdlib.h>

#include "gbtest.h"
#include "tensor/tensor_impl.h" /* gb__ts_live_tensors */

enum { NTHREADS = 4, ROUNDS = 3, NEW_TOKENS = 4 };

static const struct {
    const char *variant; /* generated Hugging Face fixture (docs/fixtures.md), or NULL: the bundled model */
    const char *block, *mlp;
} arch[] = {
    {"gpt2", "transformer.h.0", "transformer.h.-1.mlp"},
    {"llama", "model.layers.0", "model.layers.-1.mlp"},
    {NULL, "transformer.h.0", "transformer.h.-1.mlp"},
};

/* What one thread computes on the shared model: the tensors it reads back
 * (new references), compared across threads. */
enum {
    R_LOGITS, R_SCALED, R_GRAD, R_STEP2, R_GENERATED, R_INVOKE_A, R_INVOKE_B, R_PLAIN, R_GREEDY, R_SAMPLED,
    R_ENCODED, R_TEXT, R_COUNT
};
static const char *const result_names[R_COUNT] = {
    "edited logits", "sum of squares", "gradient", "step 2's logits", "generated ids", "invoke A's hidden",
    "invoke B's logits", "plain forward", "greedy ids", "sampled ids", "encoded prompts", "decoded text"};

typedef struct {
    gb_lm *lm; /* shared by every thread */
    int arch;
    gb_tensor *ids, *ids_b; /* [1, 6] and [1, 4] */
    gb_tensor *got[R_COUNT];
    gb_status st;
    char error[512];
} job;

static gb_tensor *keep(gb_tensor *t) { return gb_tensor_ref(t); }

/* Everything one thread does; also the single-threaded reference. */
static gb_status work(job *j) {
    const int a = j->arch;
    gb_module *root = gb_lm_module(j->lm);
    gb_status st = GB_ERR_ALLOC;
    gb_trace *tr = gb_trace_new(root, j->ids), *gen = gb_trace_new(root, j->ids), *inv = gb_trace_new(root, NULL);
    if (!tr || !gen || !inv) goto done;

    /* a forward: an in-place edit, a replaced output, a gradient */
    gb_val *h = gb_val_index(gb_output(tr, arch[a].block), "[0]");
    gb_set_index(h, "[:, -1, :]", gb_scalar(tr, 0.5f));
    gb_requires_grad(h);
    gb_val *mlp = gb_output(tr, arch[a].mlp);
    gb_set(mlp, gb_val_mul(mlp, gb_scalar(tr, 2)));
    gb_val *logits = gb_save(gb_val_index(gb_output(tr, "lm_head"), "[0, -1]"));
    gb_val *scaled = gb_save(gb_val_sum_all(gb_val_mul(logits, logits)));
    gb_val *grad = gb_save(gb_grad(h));
    gb_val_backward(gb_val_index(logits, "[3]"));
    if ((st = gb_trace_run(tr)) != GB_OK) goto done;

    /* a generation with an edit at step 2 (KV cache, .next()) */
    gb_val *step2 = gb_save(gb_val_clone(gb_output_call(gen, "lm_head", 2)));
    gb_set_index(gb_output_call(gen, "lm_head", 2), "[:, -1, 7]", gb_scalar(gen, 1e9f));
    if ((st = gb_trace_generate(gen, NEW_TOKENS)) != GB_OK) goto done;

    /* two invokes batched (left padding under a mask) */
    gb_invoke(inv, j->ids);
    gb_val *hid = gb_save(gb_val_index(gb_val_index(gb_output(inv, arch[a].block), "[0]"), "[:, -1]"));
    gb_invoke_end(inv);
    gb_invoke(inv, j->ids_b);
    gb_val *lb = gb_save(gb_output(inv, "lm_head"));
    gb_invoke_end(inv);
    if ((st = gb_trace_run(inv)) != GB_OK) goto done;

    j->got[R_LOGITS] = keep(gb_value(logits));
    j->got[R_SCALED] = keep(gb_value(scaled));
    j->got[R_GRAD] = keep(gb_value(grad));
    j->got[R_STEP2] = keep(gb_value(step2));
    j->got[R_GENERATED] = keep(gb_trace_generated(gen));
    j->got[R_INVOKE_A] = keep(gb_value(hid));
    j->got[R_INVOKE_B] = keep(gb_value(lb));

    /* a plain forward (no observer), a greedy and a sampled plain generation */
    if ((st = gb_module_run(root, NULL, j->ids, &j->got[R_PLAIN])) != GB_OK) goto done;
    gb_decode_opts o = gb_lm_decode_defaults(j->lm);
    o.max_new_tokens = NEW_TOKENS;
    if ((st = gb_lm_generate(j->lm, j->ids, NULL, &o, &j->got[R_GREEDY])) != GB_OK) goto done;
    o.sampling = (gb_sampling){.temperature = 0.9f, .top_k = 20, .top_p = 0.95f, .repetition_penalty = 1.1f, .seed = 7};
    if ((st = gb_lm_generate(j->lm, j->ids, NULL, &o, &j->got[R_SAMPLED])) != GB_OK) goto done;

    /* the shared tokenizer (the bundled model has one; the fixtures none) */
    if (gb_lm_tokenizer(j->lm)) {
        const char *texts[] = {"The Eiffel Tower is in the city of", "Rome"};
        gb_tensor *mask = NULL;
        char *text = NULL;
        if ((st = gb_lm_encode(j->lm, 2, texts, &j->got[R_ENCODED], &mask)) != GB_OK) goto done;
        gb_tensor_free(mask);
        if ((st = gb_lm_text(j->lm, j->got[R_GREEDY], 0, 0, &text)) != GB_OK) goto done;
        j->got[R_TEXT] = gb_from_data(text, 1, (int64_t[]){(int64_t)strlen(text)}, GB_DTYPE_U8);
        free(text);
    } else {
        j->got[R_ENCODED] = keep(j->ids), j->got[R_TEXT] = keep(j->ids);
    }

    for (int r = 0; r < R_COUNT; r++)
        if (!j->got[r]) st = GB_ERR_STATE;
done:
    gb_trace_free(inv), gb_trace_free(gen), gb_trace_free(tr);
    return st;
}

static void clear(job *j) {
    for (int r = 0; r < R_COUNT; r++) gb_tensor_free(j->got[r]), j->got[r] = NULL;
}

typedef struct {
    job *ref; /* the single-threaded results */
    job mine;
    int rounds;
    char failure[512];
} worker;

/* Rounds of work, each compared bit for bit with the reference. */
static void *run_worker(void *arg) {
    worker *w = arg;
    for (int round = 0; round < w->rounds && !w->failure[0]; round++) {
        gb_status st = work(&w->mine);
        if (st != GB_OK) snprintf(w->failure, sizeof w->failure, "round %d: %s", round, gb_last_error());
        for (int r = 0; r < R_COUNT && !w->failure[0]; r++) {
            const gb_tensor *got = w->mine.got[r], *want = w->ref->got[r];
            if (gb_tensor_ndim(got) != gb_tensor_ndim(want) || gb_tensor_numel(got) != gb_tensor_numel(want) ||
                gb_tensor_dtype(got) != gb_tensor_dtype(want) ||
                memcmp(gb_tensor_data(got), gb_tensor_data(want),
                       (size_t)gb_tensor_numel(got) * gb_dtype_size(gb_tensor_dtype(got))))
                snprintf(w->failure, sizeof w->failure, "round %d: %s differs from the single-threaded run", round,
                         result_names[r]);
        }
        clear(&w->mine);
    }
    return NULL;
}

/* All threads on one model; every result identical to the reference. */
static void run_threads(job *ref, int nthreads, int rounds) {
    worker w[NTHREADS];
    pthread_t th[NTHREADS];
    for (int t = 0; t < nthreads; t++) {
        w[t] = (worker){.ref = ref, .mine = *ref, .rounds = rounds};
        memset(w[t].mine.got, 0, sizeof w[t].mine.got);
        ck_assert_int_eq(pthread_create(&th[t], NULL, run_worker, &w[t]), 0);
    }
    for (int t = 0; t < nthreads; t++) ck_assert_int_eq(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < nthreads; t++) ck_assert_msg(!w[t].failure[0], "thread %d: %s", t, w[t].failure);
}

static gb_tensor *ids_of(int n, const int64_t *v) { return gb_from_data(v, 2, (int64_t[]){1, n}, GB_DTYPE_I64); }

START_TEST(test_threads_share_one_model) {
    char dir[4096];
    gbt_oracle *o = NULL;
    if (arch[_i].variant) gbt_fixture_dir(dir, sizeof dir, arch[_i].variant);
    else if (!(o = gbt_oracle_load_or_skip("bundled", "test_threads_share_one_model"))) return;
    else snprintf(dir, sizeof dir, "%s", GBT_BUNDLED);
    job ref = {.lm = gb_lm_open(dir, NULL), .arch = _i};
    gbt_ok(ref.lm);
    ref.ids = o ? gbt_get(o, "ids.eiffel") : ids_of(6, (int64_t[]){5, 6, 7, 8, 9, 10});
    ref.ids_b = ids_of(4, (int64_t[]){11, 3, 12, 4});
    gbt_ok_status(work(&ref));
    const int64_t T = gb_tensor_dim(ref.ids, 1);
    /* the edit at step 2 chose token 7 (the derivation of the edit) */
    ck_assert_int_eq(((const int64_t *)gb_tensor_data(ref.got[R_GENERATED]))[T + 2], 7);
    if (o) { /* the reference's greedy tokens are PyTorch's */
        gb_tensor *greedy = gbt_get(o, "eos.eiffel"); /* greedy up to and with EOS, as lm_generate stops */
        for (int64_t k = 0; k < NEW_TOKENS && k < gb_tensor_numel(greedy); k++)
            ck_assert_int_eq(((const int64_t *)gb_tensor_data(ref.got[R_GREEDY]))[T + k], gbt_i64(greedy, k));
        gb_tensor_free(greedy);
        gbt_oracle_free(o);
    }
    int64_t live = gb__ts_live_tensors();
    run_threads(&ref, NTHREADS, ROUNDS);
    /* every thread's tensors went with its traces: none leaked, none freed twice */
    ck_assert_int_eq(gb__ts_live_tensors(), live);
    clear(&ref);
    gb_tensor_free(ref.ids), gb_tensor_free(ref.ids_b);
    gb_lm_free(ref.lm);
}
END_TEST

/* The server's pattern: one graph defined once, its executions made on one
 * thread, then run at once by several on the one shared model. */
typedef struct {
    gb_exec *run, *gen;
    gb_status st;
    char error[512];
} exec_job;

static void *run_execs(void *arg) {
    exec_job *j = arg;
    j->st = gb_exec_run(j->run, NULL);
    if (j->st == GB_OK) j->st = gb_exec_generate(j->gen, NULL, NEW_TOKENS);
    snprintf(j->error, sizeof j->error, "%s", gb_last_error());
    return NULL;
}

START_TEST(test_threads_run_executions_of_one_graph) {
    char dir[4096];
    gbt_fixture_dir(dir, sizeof dir, arch[_i].variant);
    gb_model *m = gb_model_open(dir, NULL);
    gbt_ok(m);
    gb_tensor *ids = ids_of(6, (int64_t[]){5, 6, 7, 8, 9, 10});
    gb_trace *tr = gb_trace_new(gb_model_module(m), ids), *gen = gb_trace_new(gb_model_module(m), ids);
    gb_val *h = gb_val_index(gb_output(tr, arch[_i].block), "[0]");
    gb_requires_grad(h);
    gb_val *logits = gb_save(gb_val_index(gb_output(tr, "lm_head"), "[0, -1]"));
    gb_val *grad = gb_save(gb_grad(h));
    gb_val_backward(gb_val_index(logits, "[3]"));
    gb_val *step1 = gb_save(gb_val_clone(gb_output_call(gen, "lm_head", 1)));
    gbt_ok_status(gb_trace_run(tr));
    gbt_ok_status(gb_trace_generate(gen, NEW_TOKENS));

    exec_job jobs[NTHREADS];
    pthread_t th[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t] = (exec_job){gb_exec_new(tr, NULL), gb_exec_new(gen, NULL), GB_OK, ""};
        gbt_ok(jobs[t].run), gbt_ok(jobs[t].gen);
    }
    for (int t = 0; t < NTHREADS; t++) ck_assert_int_eq(pthread_create(&th[t], NULL, run_execs, &jobs[t]), 0);
    for (int t = 0; t < NTHREADS; t++) ck_assert_int_eq(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < NTHREADS; t++) {
        ck_assert_msg(jobs[t].st == GB_OK, "thread %d: %s", t, jobs[t].error);
        gbt_assert_close(gb_exec_value(jobs[t].run, logits), gb_value(logits), 0, 0, "logits");
        gbt_assert_close(gb_exec_value(jobs[t].run, grad), gb_value(grad), 0, 0, "gradient");
        gbt_assert_close(gb_exec_value(jobs[t].gen, step1), gb_value(step1), 0, 0, "step 1's logits");
        gbt_assert_close(gb_exec_generated(jobs[t].gen), gb_trace_generated(gen), 0, 0, "generated ids");
        gb_exec_free(jobs[t].run), gb_exec_free(jobs[t].gen);
    }
    gb_trace_free(gen), gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_model_free(m);
}
END_TEST

Suite *gb_suite_threads(void) {
    Suite *s = suite_create("threads");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_threads_share_one_model, 0, 3);
    tcase_add_loop_test(tc, test_threads_run_executions_of_one_graph, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}
