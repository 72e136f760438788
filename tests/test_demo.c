/* The README's main command on the bundled model (models/gpt2-facts): every
 * prediction `glassbox demo` prints, before and after each intervention,
 * against the same experiments in plain PyTorch with forward hooks
 * (tests/oracle/demo.py), token by token; and the effects the demo claims
 * (the model knows its facts; the patch and the edit move the answer). */
#include <math.h>
#include <stdlib.h>

#include "gbtest.h"

static gb_tokenizer *tok;
static gb_tensor *got[16]; /* oracle tensors, freed at the end */
static int ngot;

static gb_tensor *get(gbt_oracle *o, const char *key) { return got[ngot++] = gbt_get(o, key); }

/* A token as the demo quotes it: "' Paris'". */
static char *quoted(int64_t id) {
    int32_t i = (int32_t)id;
    char *t = NULL, *q = NULL;
    gbt_ok_status(gb_tokenizer_decode(tok, &i, 1, false, &t, NULL));
    ck_assert(asprintf(&q, "'%s'", t) > 0);
    free(t);
    return q;
}

static int64_t id_at(gb_tensor *t, int64_t i) {
    double v;
    gbt_ok_status(gb_tensor_get(t, gb_tensor_ndim(t) ? (int64_t[]){i} : NULL, &v));
    return (int64_t)v;
}

/* Fail unless out holds the line prefix + quoted(id). */
static void has_prediction(const char *out, const char *prefix, int64_t id) {
    char *q = quoted(id), *line = NULL;
    ck_assert(asprintf(&line, "%s%s\n", prefix, q) > 0);
    ck_assert_msg(strstr(out, line) != NULL, "demo output lacks \"%s\"", line);
    free(line), free(q);
}

/* Fail unless the generated ids decode to the text the demo prints after `label`. */
static void has_generation(const char *out, const char *label, gb_tensor *ids) {
    int32_t buf[16];
    int64_t n = gb_tensor_dim(ids, 0);
    for (int64_t i = 0; i < n; i++) buf[i] = (int32_t)id_at(ids, i);
    char *text = NULL, *want = NULL;
    gbt_ok_status(gb_tokenizer_decode(tok, buf, (size_t)n, true, &text, NULL));
    ck_assert(asprintf(&want, "%s\n      '%s'\n", label, text) > 0);
    ck_assert_msg(strstr(out, want) != NULL, "demo output lacks \"%s\"", want);
    free(want), free(text);
}

START_TEST(test_demo_bundled_model) {
    gbt_oracle *o = gbt_oracle_load_or_skip("demo", "test_demo_bundled_model");
    if (!o) return;
    tok = gb_tokenizer_open(GBT_BUNDLED);
    gbt_ok(tok);
    gbt_cli_result r = gbt_cli("demo"); /* no MODEL: the bundled one */
    int64_t paris = gb_tokenizer_token_to_id(tok, "\xc4\xa0Paris"), rome = gb_tokenizer_token_to_id(tok, "\xc4\xa0Rome");
    ck_assert_msg(r.status == 0, "demo failed: %s", r.err);
    ck_assert_str_eq(r.err, "");

    /* 1. top-3 with probabilities (printed to 3 decimals) */
    gb_tensor *top = get(o, "top_ids"), *probs = get(o, "top_probs");
    for (int k = 0; k < 3; k++) {
        char *q = quoted(id_at(top, k)), *line = NULL;
        double p;
        gbt_ok_status(gb_tensor_get(probs, (int64_t[]){k}, &p));
        ck_assert(asprintf(&line, "      %-12s p = %.3f\n", q, p) > 0);
        ck_assert_msg(strstr(r.out, line) != NULL, "demo output lacks \"%s\"", line);
        free(line), free(q);
    }
    ck_assert_int_eq(id_at(top, 0), paris); /* the model knows its fact */

    /* 2-4. the ablations, the first one also as one invoke of two beside its control */
    gb_tensor *last = get(o, "ablated_last"), *first = get(o, "ablated_first"), *original = get(o, "original");
    has_prediction(r.out, "    prediction with the last MLP ablated: ", id_at(last, 0));
    has_prediction(r.out, "    prediction with the first MLP ablated: ", id_at(first, 0));
    has_prediction(r.out, "    original prediction: ", id_at(original, 0));
    has_prediction(r.out, "    modified prediction: ", id_at(first, 0));
    ck_assert_int_ne(id_at(first, 0), paris); /* the ablation moves the answer */

    /* 5. the patching sweep; at the last layer the answer is the Colosseum's */
    gb_tensor *patched = get(o, "patched");
    int64_t layers = gb_tensor_dim(patched, 0);
    for (int64_t l = 0; l < layers; l++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "    patched at transformer.h[%lld]: ", (long long)l);
        has_prediction(r.out, prefix, id_at(patched, l));
    }
    ck_assert_int_eq(id_at(patched, layers - 1), rome);

    /* 6. gradient norms per layer (printed to 4 decimals) */
    gb_tensor *norms = get(o, "grad_norms");
    for (int64_t l = 0; l < layers; l++) {
        double want, got;
        gbt_ok_status(gb_tensor_get(norms, (int64_t[]){l}, &want));
        char key[48];
        snprintf(key, sizeof key, "|g%lld[0, -1]| = ", (long long)l);
        const char *at = strstr(r.out, key);
        ck_assert_msg(at && sscanf(at + strlen(key), "%lf", &got) == 1, "no %s in the output", key);
        ck_assert_msg(fabs(got - want) <= 1e-4 + 1e-4 * fabs(want), "%s%g, PyTorch %g", key, got, want);
    }

    /* 7. stop: lm_head never ran */
    ck_assert(strstr(r.out, "    logits: value: lm_head.output was never produced") != NULL);

    /* 8. generation: plain, one step steered, every step ablated */
    has_generation(r.out, "    plain:", get(o, "gen_plain"));
    char *q = quoted(rome), *label = NULL;
    ck_assert(asprintf(&label, "    at the second step only, push %s up:\n    >>> lm_head.next().output[0, -1, %lld] = 100",
                       q, (long long)rome) > 0);
    gb_tensor *gen_next = get(o, "gen_next");
    has_generation(r.out, label, gen_next);
    ck_assert_int_eq(id_at(gen_next, 1), rome);
    free(label), free(q);
    has_generation(r.out, "    at every step, ablate the first MLP:\n    >>> transformer.h[0].mlp.all().output[0][:] = 0",
                   get(o, "gen_all"));

    /* 9. the edit: Vatican is Rome, Paris when edited, Rome again once cleared */
    gb_tensor *vatican = get(o, "vatican"), *edited = get(o, "vatican_edited");
    ck_assert_int_eq(id_at(vatican, 0), rome);
    ck_assert_int_eq(id_at(edited, 0), paris);
    has_prediction(r.out, "    original model  ", id_at(vatican, 0));
    has_prediction(r.out, "    edited model    ", id_at(edited, 0));
    has_prediction(r.out, "    edits cleared   ", id_at(vatican, 0));

    gbt_cli_free(&r);
    while (ngot) gb_tensor_free(got[--ngot]);
    gb_tokenizer_free(tok);
    gbt_oracle_free(o);
}
END_TEST

/* The committed checkpoint gives PyTorch's logits (train.py's independent
 * GPT-2 on the same file, tests/oracle/demo.py). */
START_TEST(test_bundled_logits) {
    gbt_oracle *o = gbt_oracle_load_or_skip("demo", "test_bundled_logits");
    if (!o) return;
    gb_lm *lm = gb_lm_open(GBT_BUNDLED, NULL);
    gbt_ok(lm);
    gb_tensor *ids = NULL, *mask = NULL, *logits = NULL, *want = gbt_get(o, "logits");
    gbt_ok_status(gb_lm_encode(lm, 1, (const char *[]){"The Eiffel Tower is in the city of"}, &ids, &mask));
    gbt_ok_status(gb_module_run(gb_lm_module(lm), NULL, ids, &logits));
    gbt_assert_close(logits, want, 1e-5, 1e-5, "bundled model logits vs PyTorch");
    gb_tensor_free(want), gb_tensor_free(logits), gb_tensor_free(mask), gb_tensor_free(ids);
    gb_lm_free(lm);
    gbt_oracle_free(o);
}
END_TEST

/* It knows its facts: greedy completion of every prompt the corpus
 * generator lists (build/corpus --facts: prompt TAB answer) gives the answer
 * for at least 95% of them (issue 11's bar). */
START_TEST(test_bundled_facts) {
    char cmd[512], line[512];
    snprintf(cmd, sizeof cmd, "%s/corpus --facts", getenv("GB_BUILD_DIR") ? getenv("GB_BUILD_DIR") : "build");
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    gb_lm *lm = gb_lm_open(GBT_BUNDLED, NULL);
    gbt_ok(lm);
    int total = 0, right = 0;
    char first_wrong[512] = "";
    while (fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(tab);
        if (nl) *nl = 0;
        *tab = 0;
        const char *prompt = line, *answer = tab + 1;
        gb_tensor *ids = NULL, *mask = NULL, *out = NULL;
        gbt_ok_status(gb_lm_encode(lm, 1, &prompt, &ids, &mask));
        int32_t *aid = NULL;
        size_t na = 0;
        gbt_ok_status(gb_tokenizer_encode(gb_lm_tokenizer(lm), answer, strlen(answer), false, &aid, &na));
        gb_decode_opts o = gb_lm_decode_defaults(lm);
        o.max_new_tokens = (int)na;
        gbt_ok_status(gb_lm_generate(lm, ids, mask, &o, &out));
        char *text = NULL;
        gbt_ok_status(gb_lm_text(lm, out, 0, gb_tensor_dim(ids, 1), &text));
        bool ok = !strcmp(text, answer);
        right += ok;
        if (!ok && !*first_wrong) snprintf(first_wrong, sizeof first_wrong, "%s ->%s (want%s)", prompt, text, answer);
        total++;
        free(text), free(aid);
        gb_tensor_free(out), gb_tensor_free(mask), gb_tensor_free(ids);
    }
    ck_assert_int_eq(pclose(f), 0);
    ck_assert_int_ge(total, 150);
    ck_assert_msg(right * 100 >= total * 95, "%d of %d facts right; first wrong: %s", right, total, first_wrong);
    gb_lm_free(lm);
}
END_TEST

Suite *gb_suite_demo(void) {
    Suite *s = suite_create("demo");
    TCase *tc = tcase_create("demo");
    tcase_set_timeout(tc, 600); /* a bound, not a measure: 761 generations under a sanitizer on a busy machine */
    tcase_add_test(tc, test_demo_bundled_model);
    tcase_add_test(tc, test_bundled_logits);
    tcase_add_test(tc, test_bundled_facts);
    suite_add_tcase(s, tc);
    return s;
}
