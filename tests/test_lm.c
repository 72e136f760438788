/* The language-model layer: text <-> ids, and the one decoding loop, greedy
 * (against ../shared's known greedy ids and PyTorch's on the bundled model)
 * and sampled (against the softmax it samples from, by derivation). */
#include <math.h>
#include <stdlib.h>

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gbtest.h"

/* ../shared/README.md: greedy decoding of stories260k from BOS. */
static const int64_t STORY[] = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                315, 421, 395, 317, 426, 338, 401, 396, 267, 337};
enum { STORY_LEN = sizeof STORY / sizeof STORY[0] };

static gb_lm *open_stories_lm(const char *test) {
    char *dir = gbt_shared_path("models/stories260k", test);
    if (!dir) return NULL;
    gb_lm *lm = gb_lm_open(dir, NULL);
    gbt_ok(lm);
    free(dir);
    return lm;
}

START_TEST(test_lm_greedy_story) {
    gb_lm *lm = open_stories_lm("test_lm_greedy_story");
    if (!lm) return;
    gb_tensor *bos = gb_from_data(STORY, 2, (int64_t[]){1, 1}, GB_DTYPE_I64), *out = NULL;
    gb_decode_opts o = gb_lm_decode_defaults(lm);
    o.max_new_tokens = STORY_LEN - 1;
    gbt_ok_status(gb_lm_generate(lm, bos, NULL, &o, &out));
    gb_tensor *want = gb_from_data(STORY, 2, (int64_t[]){1, STORY_LEN}, GB_DTYPE_I64);
    gbt_assert_close(out, want, 0, 0, "greedy ids");
    char *text = NULL;
    gbt_ok_status(gb_lm_text(lm, out, 0, 0, &text));
    ck_assert_str_eq(text, "Once upon a time, there was a little girl named Lily. She loved to play");
    free(text);

    /* The same prompt encoded from text ("Once upon a time": BOS + 4 ids,
     * ../shared/README.md) continues the same story. */
    gb_tensor *ids = NULL, *mask = NULL, *out2 = NULL;
    gbt_ok_status(gb_lm_encode(lm, 1, (const char *[]){"Once upon a time"}, &ids, &mask));
    gb_tensor *want5 = gb_from_data(STORY, 2, (int64_t[]){1, 5}, GB_DTYPE_I64);
    gbt_assert_close(ids, want5, 0, 0, "encoded prompt");
    o.max_new_tokens = STORY_LEN - 5;
    gbt_ok_status(gb_lm_generate(lm, ids, mask, &o, &out2));
    gbt_assert_close(out2, want, 0, 0, "greedy ids from text");
    gb_tensor_free(want5), gb_tensor_free(out2), gb_tensor_free(mask), gb_tensor_free(ids);
    gb_tensor_free(want), gb_tensor_free(out), gb_tensor_free(bos);
    gb_lm_free(lm);
}
END_TEST

/* Left padding on the bundled model: a short prompt batched beside a long
 * one continues exactly as it does alone (the mask hides the padding,
 * positions count real tokens), and a row that has finished is padded.
 * Alone, each prompt continues as PyTorch's greedy decoding up to and with
 * EOS (tests/oracle/bundled.py). */
START_TEST(test_lm_padded_batch) {
    gbt_oracle *oracle = gbt_oracle_load_or_skip("bundled", "test_lm_padded_batch");
    if (!oracle) return;
    gb_lm *lm = gb_lm_open(GBT_BUNDLED, NULL);
    gbt_ok(lm);
    const char *texts[] = {"Vatican is located in the city of", "The Eiffel Tower is in the city of"};
    const char *keys[] = {"eos.vatican", "eos.eiffel"};
    gb_tensor *ids = NULL, *mask = NULL, *both = NULL;
    gbt_ok_status(gb_lm_encode(lm, 2, texts, &ids, &mask));
    ck_assert_int_eq(gb_tensor_dim(ids, 0), 2);
    double m00 = 1, pad = -1;
    gbt_ok_status(gb_tensor_get(mask, (int64_t[]){0, 0}, &m00));
    ck_assert(m00 == 0); /* the short row is padded on the left */
    gbt_ok_status(gb_tensor_get(ids, (int64_t[]){0, 0}, &pad));
    ck_assert(pad == (double)gb_lm_pad_id(lm));
    gb_decode_opts o = gb_lm_decode_defaults(lm);
    o.max_new_tokens = 6;
    gbt_ok_status(gb_lm_generate(lm, ids, mask, &o, &both));
    int64_t T = gb_tensor_dim(ids, 1), nboth = gb_tensor_dim(both, 1) - T;
    const int64_t *pb = gb_tensor_data(both);
    for (int r = 0; r < 2; r++) {
        gb_tensor *one = NULL, *mone = NULL, *alone = NULL, *want = gbt_get(oracle, keys[r]);
        gbt_ok_status(gb_lm_encode(lm, 1, &texts[r], &one, &mone));
        gbt_ok_status(gb_lm_generate(lm, one, mone, &o, &alone));
        int64_t n = gb_tensor_numel(want), t1 = gb_tensor_dim(one, 1);
        ck_assert_int_eq(gb_tensor_dim(alone, 1) - t1, n);
        ck_assert_int_le(n, nboth);
        const int64_t *pa = gb_tensor_data(alone);
        for (int64_t k = 0; k < nboth; k++) {
            int64_t expect = k < n ? gbt_i64(want, k) : gb_lm_pad_id(lm);
            if (k < n) ck_assert_int_eq(pa[t1 + k], expect);
            ck_assert_msg(pb[r * (T + nboth) + T + k] == expect, "row %d new token %lld: %lld, expected %lld", r,
                          (long long)k, (long long)pb[r * (T + nboth) + T + k], (long long)expect);
        }
        gb_tensor_free(want), gb_tensor_free(alone), gb_tensor_free(mone), gb_tensor_free(one);
    }
    gb_tensor_free(both), gb_tensor_free(mask), gb_tensor_free(ids);
    gb_lm_free(lm);
    gbt_oracle_free(oracle);
}
END_TEST

/* ---- the loop on a synthetic model: fixed logits every step ---------------- */

enum { V = 6 };
static const float LOGITS[V] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 1.0f};

typedef struct {
    int calls;
    int64_t fed_len[64]; /* ids' length at each pass */
} fixed_model;

static gb_status fixed_forward(void *ctx, int step, gb_tensor *ids, gb_tensor *mask, gb_tensor *pos,
                               gb_tensor **logits) {
    (void)mask, (void)pos;
    fixed_model *fm = ctx;
    if (fm->calls < 64) fm->fed_len[fm->calls] = gb_tensor_dim(ids, 1);
    ck_assert_int_eq(step, fm->calls);
    fm->calls++;
    int64_t B = gb_tensor_dim(ids, 0), t = gb_tensor_dim(ids, 1);
    gb_tensor *row = gb_from_data(LOGITS, 3, (int64_t[]){1, 1, V}, GB_DTYPE_F32);
    gb_tensor *all = gb_expand(row, 3, (int64_t[]){B, t, V});
    *logits = gb_contiguous(all);
    gb_tensor_free(all), gb_tensor_free(row);
    return GB_OK;
}

static gb_tensor *decode_fixed(const gb_decode_opts *o, fixed_model *fm) {
    int64_t start = 3;
    gb_tensor *prompt = gb_from_data(&start, 2, (int64_t[]){1, 1}, GB_DTYPE_I64), *out = NULL;
    gbt_ok_status(gb_decode(fixed_forward, fm, prompt, NULL, NULL, o, &out));
    gb_tensor_free(prompt);
    return out;
}

/* One prompt pass, then one token per pass; the 4th token needs no pass. */
/* A model gives its tokenizer, and text goes straight to the [1, T] int64
 * ids a trace takes: Hugging Face's ids of the prompt (bundled.py). A
 * checkpoint without tokenizer files says so. */
START_TEST(test_model_tokenizer_ids) {
    gbt_oracle *oracle = gbt_oracle_load_or_skip("bundled", "test_model_tokenizer_ids");
    if (!oracle) return;
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    gb_tokenizer *tok = gb_model_tokenizer(m);
    gbt_ok(tok);
    gb_tensor *ids = gb_tokenizer_encode_ids(tok, "The Eiffel Tower is in the city of"), *want = gbt_get(oracle, "ids.eiffel");
    gbt_ok(ids);
    ck_assert_int_eq(gb_tensor_dtype(ids), GB_DTYPE_I64);
    ck_assert_int_eq(gb_tensor_ndim(ids), 2);
    ck_assert_int_eq(gb_tensor_dim(ids, 0), 1);
    gbt_assert_close(ids, want, 0, 0, "gb_tokenizer_encode_ids");
    gbt_fails_with(gb_tokenizer_encode_ids(tok, NULL) == NULL, GB_ERR_ARG, "tokenizer_encode_ids: text is NULL");
    gb_tensor_free(want), gb_tensor_free(ids);
    gb_tokenizer_free(tok);
    gb_model_free(m);

    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/lm_no_tokenizer", gbt_tmp_dir());
    mkdir(dir, 0755);
    static const char *const files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char target[4300];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        ck_assert_ptr_nonnull(realpath(GBT_BUNDLED, target));
        strcat(target, "/"), strcat(target, files[i]);
        unlink(path);
        ck_assert_int_eq(symlink(target, path), 0);
    }
    gbt_ok(m = gb_model_open(dir, NULL));
    gbt_fails_with(gb_model_tokenizer(m) == NULL, GB_ERR_NOT_FOUND, "");
    gb_model_free(m);
    gbt_oracle_free(oracle);
}
END_TEST

START_TEST(test_decode_passes) {
    fixed_model fm = {0};
    gb_decode_opts o = gb_decode_defaults();
    o.max_new_tokens = 4;
    int64_t start[3] = {3, 4, 2};
    gb_tensor *prompt = gb_from_data(start, 2, (int64_t[]){1, 3}, GB_DTYPE_I64), *out = NULL;
    gbt_ok_status(gb_decode(fixed_forward, &fm, prompt, NULL, NULL, &o, &out));
    ck_assert_int_eq(fm.calls, 4);
    ck_assert_int_eq(fm.fed_len[0], 3);
    for (int k = 1; k < 4; k++) ck_assert_int_eq(fm.fed_len[k], 1);
    const int64_t want[7] = {3, 4, 2, 0, 0, 0, 0}; /* greedy: LOGITS' argmax is 0 */
    ck_assert_int_eq(gb_tensor_dim(out, 1), 7);
    ck_assert(memcmp(gb_tensor_data(out), want, sizeof want) == 0);
    gb_tensor_free(out), gb_tensor_free(prompt);
}
END_TEST

/* Token frequencies follow softmax(LOGITS / T) (a chi-square test at a fixed
 * seed: deterministic, not flaky), top-k and top-p keep only their sets, and
 * the same seed repeats the same ids. */
START_TEST(test_decode_sampling) {
    enum { N = 4000 };
    const float temp = 0.7f;
    gb_decode_opts o = gb_decode_defaults();
    o.max_new_tokens = N;
    o.sampling = (gb_sampling){.temperature = temp, .top_p = 1, .repetition_penalty = 1, .seed = 42};
    fixed_model fm = {0};
    gb_tensor *out = decode_fixed(&o, &fm);
    const int64_t *ids = gb_tensor_data(out);
    double p[V], z = 0, count[V] = {0};
    for (int v = 0; v < V; v++) z += p[v] = exp(LOGITS[v] / temp);
    for (int i = 1; i <= N; i++) count[ids[i]]++;
    double chi2 = 0;
    for (int v = 0; v < V; v++) chi2 += pow(count[v] - N * p[v] / z, 2) / (N * p[v] / z);
    /* 5 degrees of freedom: P(chi2 > 20.5) = 0.001 */
    ck_assert_msg(chi2 < 20.5, "frequencies do not follow the softmax (chi2 %.2f)", chi2);

    fixed_model fm2 = {0};
    gb_tensor *again = decode_fixed(&o, &fm2);
    gbt_assert_close(again, out, 0, 0, "same seed, same ids");
    o.sampling.seed = 43;
    fixed_model fm3 = {0};
    gb_tensor *other = decode_fixed(&o, &fm3);
    ck_assert(memcmp(gb_tensor_data(other), ids, sizeof(int64_t) * (N + 1)) != 0);
    gb_tensor_free(other), gb_tensor_free(again), gb_tensor_free(out);

    /* top-k 2: ids 0 (logit 2) and the tie at 1.0 (ids 1 and 5) stay, as HF keeps ties with the k-th */
    o.max_new_tokens = 500;
    o.sampling.top_k = 2;
    fixed_model fm4 = {0};
    out = decode_fixed(&o, &fm4);
    ids = gb_tensor_data(out);
    bool seen[V] = {0};
    for (int i = 1; i <= 500; i++) seen[ids[i]] = true;
    ck_assert(seen[0] && seen[1] && seen[5] && !seen[2] && !seen[3] && !seen[4]);
    gb_tensor_free(out);

    /* top-p: at T = 1 the probabilities are [.44 .16 .10 .06 .02 .16] (derived
     * from LOGITS); the smallest prefix by probability reaching 0.5 is {0, 1}
     * (ties ordered by id): .44 + .16 = .60 */
    o.sampling = (gb_sampling){.temperature = 1, .top_p = 0.5f, .repetition_penalty = 1, .seed = 7};
    fixed_model fm5 = {0};
    out = decode_fixed(&o, &fm5);
    ids = gb_tensor_data(out);
    memset(seen, 0, sizeof seen);
    for (int i = 1; i <= 500; i++) seen[ids[i]] = true;
    ck_assert(seen[0] && seen[1] && !seen[2] && !seen[3] && !seen[4] && !seen[5]);
    gb_tensor_free(out);
}
END_TEST

/* Greedy with a repetition penalty: the prompt holds id 0 (logit 2); a
 * penalty of 2.5 makes it 0.8, below ids 1 and 5 (1.0): the first of the
 * tie (id 1) wins, and from then on id 1 is penalised to 0.4 too, so id 5. */
START_TEST(test_decode_repetition_penalty) {
    gb_decode_opts o = gb_decode_defaults();
    o.max_new_tokens = 2;
    o.sampling.repetition_penalty = 2.5f;
    int64_t start = 0;
    gb_tensor *prompt = gb_from_data(&start, 2, (int64_t[]){1, 1}, GB_DTYPE_I64), *out = NULL;
    fixed_model fm = {0};
    gbt_ok_status(gb_decode(fixed_forward, &fm, prompt, NULL, NULL, &o, &out));
    const int64_t *ids = gb_tensor_data(out);
    ck_assert_int_eq(ids[1], 1);
    ck_assert_int_eq(ids[2], 5);
    gb_tensor_free(out), gb_tensor_free(prompt);
}
END_TEST

static bool stop_at_1(int64_t id, void *ctx) {
    (void)ctx;
    return id == 1;
}

START_TEST(test_decode_stop_and_errors) {
    /* stop tokens end a row after the token itself, with no further pass */
    gb_decode_opts o = gb_decode_defaults();
    o.max_new_tokens = 5;
    o.is_stop = stop_at_1;
    o.sampling.repetition_penalty = 2.5f; /* 0 is in the prompt: 1 comes first, and stops */
    fixed_model fm = {0};
    int64_t start = 0;
    gb_tensor *prompt = gb_from_data(&start, 2, (int64_t[]){1, 1}, GB_DTYPE_I64), *out = NULL;
    gbt_ok_status(gb_decode(fixed_forward, &fm, prompt, NULL, NULL, &o, &out));
    ck_assert_int_eq(gb_tensor_dim(out, 1), 2);
    ck_assert_int_eq(fm.calls, 1);
    gb_tensor_free(out);

    /* max_length: a sequence that fills the positions stops */
    o = gb_decode_defaults();
    o.max_length = 3;
    fixed_model fm2 = {0};
    gbt_ok_status(gb_decode(fixed_forward, &fm2, prompt, NULL, NULL, &o, &out));
    ck_assert_int_eq(gb_tensor_dim(out, 1), 3);
    gb_tensor_free(out);

    o = gb_decode_defaults();
    o.sampling.temperature = -1;
    gbt_fails_with(gb_decode(fixed_forward, &fm2, prompt, NULL, NULL, &o, &out) != GB_OK, GB_ERR_ARG,
                   "decode: temperature must be a finite number >= 0, got -1");
    ck_assert_ptr_null(out);
    o.sampling.temperature = 1;
    o.sampling.top_p = 0;
    gbt_fails_with(gb_decode(fixed_forward, &fm2, prompt, NULL, NULL, &o, &out) != GB_OK, GB_ERR_ARG,
                   "decode: top_p must be in (0, 1], got 0");
    o.sampling.top_p = 1;
    o.sampling.top_k = -2;
    gbt_fails_with(gb_decode(fixed_forward, &fm2, prompt, NULL, NULL, &o, &out) != GB_OK, GB_ERR_ARG,
                   "decode: top_k must be >= 0, got -2");
    o.sampling.top_k = 0;
    o.sampling.repetition_penalty = 0;
    gbt_fails_with(gb_decode(fixed_forward, &fm2, prompt, NULL, NULL, &o, &out) != GB_OK, GB_ERR_ARG,
                   "decode: repetition_penalty must be a finite number > 0, got 0");
    gb_tensor_free(prompt);
}
END_TEST

Suite *gb_suite_lm(void) {
    Suite *s = suite_create("lm");
    TCase *tc = tcase_create("lm");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lm_greedy_story);
    tcase_add_test(tc, test_lm_padded_batch);
    tcase_add_test(tc, test_model_tokenizer_ids);
    tcase_add_test(tc, test_decode_passes);
    tcase_add_test(tc, test_decode_sampling);
    tcase_add_test(tc, test_decode_repetition_penalty);
    tcase_add_test(tc, test_decode_stop_and_errors);
    suite_add_tcase(s, tc);
    return s;
}
