/* Running out of memory anywhere: the runner is linked with the library's
 * allocation functions wrapped (-Wl,--wrap=malloc,... in the Makefile), so
 * a test can make the n-th allocation of its thread fail. Each test sweeps
 * n over every allocation an operation makes (tokenizer load, model open, a
 * trace of statements, a session with generation): each run either
 * succeeds or fails with a message, never crashes, and leaves nothing
 * behind (ASan's leak check and valgrind's, `make check SANITIZE=1` and
 * VALGRIND=1, see every run of the sweep). */
#include <stdlib.h>

#include "gbtest.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

/* Allocations of this thread left before the one that fails (0: none fails). */
static _Thread_local long gbt_fail_in;
static _Thread_local bool gbt_failed;

static bool gbt_fail_now(void) {
    if (gbt_fail_in <= 0 || --gbt_fail_in) return false;
    gbt_failed = true;
    return true;
}

void *__wrap_malloc(size_t n) { return gbt_fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return gbt_fail_now() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return gbt_fail_now() ? NULL : __real_realloc(p, n); }
char *__wrap_strdup(const char *s) { return gbt_fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return gbt_fail_now() ? NULL : __real_strndup(s, n); }
void *__wrap_aligned_alloc(size_t align, size_t n) { return gbt_fail_now() ? NULL : __real_aligned_alloc(align, n); }

/* Run op with the n-th allocation failing, n = 1, 2, ... until op makes
 * fewer than n (and then must succeed). A failed run must say why. Returns
 * how many allocations op makes. */
static long sweep(const char *what, bool (*op)(void *ctx), void *ctx) {
    for (long n = 1;; n++) {
        gbt_failed = false;
        gbt_fail_in = n;
        bool ok = op(ctx);
        gbt_fail_in = 0;
        if (!gbt_failed) {
            ck_assert_msg(ok, "%s: failed with every allocation made: %s", what, gb_last_error());
            return n - 1;
        }
        ck_assert_msg(ok || gb_last_error()[0], "%s: allocation %ld failed, and the call failed saying nothing", what, n);
    }
}

static bool tokenizer_op(void *ctx) {
    (void)ctx;
    gb_tokenizer *tok = gb_tokenizer_open(GBT_BUNDLED);
    int32_t *ids = NULL;
    size_t n = 0;
    char *text = NULL;
    bool ok = tok && gb_tokenizer_encode(tok, "The Eiffel Tower is in the city of", 34, true, &ids, &n) == GB_OK &&
              gb_tokenizer_decode(tok, ids, n, false, &text, NULL) == GB_OK;
    free(ids), free(text);
    gb_tokenizer_free(tok);
    return ok;
}

START_TEST(test_oom_tokenizer) {
    long n = sweep("tokenizer", tokenizer_op, NULL);
    ck_assert_int_gt(n, 1000); /* a vocabulary of 1024 tokens */
}
END_TEST

static bool model_op(void *ctx) {
    (void)ctx;
    gb_lm *lm = gb_lm_open(GBT_BUNDLED, NULL);
    gb_lm_free(lm);
    return lm != NULL;
}

START_TEST(test_oom_model_open) {
    ck_assert_int_gt(sweep("model open", model_op, NULL), 100);
}
END_TEST

static bool trace_op(void *ctx) {
    gb_module *model = gb_model_module(gb_lm_model(ctx));
    gb_tensor *ids = gb_from_data((int64_t[]){464, 412, 733}, 2, (int64_t[]){1, 3}, GB_DTYPE_I64);
    gb_trace *tr = ids ? gb_trace_new(model, ids) : NULL;
    gb_val *h = NULL, *out = NULL;
    bool ok = tr && gb_trace_statement(tr, "h = transformer.h[0].output[0][:, -1, :].save()", NULL, 0, &h) == GB_OK &&
              gb_trace_statement(tr, "transformer.h[1].output[0][:, -1, :] = h * 2", NULL, 0, NULL) == GB_OK &&
              gb_trace_statement(tr, "out = lm_head.output.argmax(dim=-1).save()", NULL, 0, &out) == GB_OK &&
              gb_trace_run(tr) == GB_OK && gb_value(out);
    gb_trace_free(tr);
    gb_tensor_free(ids);
    return ok;
}

/* The sweep of op on the bundled model, opened once outside it. */
static long sweep_on_model(const char *what, bool (*op)(void *lm)) {
    gb_lm *lm = gb_lm_open(GBT_BUNDLED, NULL);
    gbt_ok(lm);
    long n = sweep(what, op, lm);
    gb_lm_free(lm);
    return n;
}

START_TEST(test_oom_trace) {
    ck_assert_int_gt(sweep_on_model("trace", trace_op), 100);
}
END_TEST

static gb_lm *the_lm(void *ctx, const char *name) {
    (void)name;
    return ctx;
}

/* The test's helpers (gbt_run_spec) would fail themselves: count the results. */
static gb_status count_results(void *ctx, const gb_spec_result *r) {
    *(int *)ctx += r->scan ? 0 : r->n;
    return GB_OK;
}

static bool session_op(void *ctx) {
    gb_spec *sp = gb_spec_new();
    gb_session *s = NULL;
    int nres = 0;
    bool ok = sp && gb_spec_trace(sp, "a") == GB_OK && gb_spec_prompt(sp, "The Eiffel Tower is in the city of") == GB_OK &&
              gb_spec_statement(sp, "hs = transformer.h[3].output[0][:, -1, :]") == GB_OK &&
              gb_spec_trace(sp, "a") == GB_OK && gb_spec_prompt(sp, "The Colosseum is in") == GB_OK &&
              gb_spec_generate(sp, 2) == GB_OK &&
              gb_spec_statement(sp, "transformer.h[1].output[0][:, -1, :] = hs") == GB_OK &&
              gb_spec_statement(sp, "logits = lm_head.all().output.save()") == GB_OK &&
              (s = gb_spec_session(sp, the_lm, ctx, NULL, count_results, &nres)) && gb_session_scan(s) == GB_OK &&
              gb_session_run(s) == GB_OK && nres > 0;
    gb_session_free(s);
    gb_spec_free(sp);
    return ok;
}

START_TEST(test_oom_session) {
    ck_assert_int_gt(sweep_on_model("session", session_op), 100);
}
END_TEST

Suite *gb_suite_oom(void) {
    Suite *s = suite_create("oom");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {{"tokenizer", test_oom_tokenizer},
                 {"model_open", test_oom_model_open},
                 {"trace", test_oom_trace},
                 {"session", test_oom_session}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) { /* one case each: CK_RUN_CASE=trace runs one */
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 900); /* every allocation in turn: long under valgrind */
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}
