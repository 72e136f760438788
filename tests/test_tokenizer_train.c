/* Training byte-level BPE tokenizers (gb_tokenizer_train_bpe, glassbox
 * train-tokenizer) and the corpus they are trained on (build/corpus):
 * merges derived by hand on tiny texts, the tokenizer trained on the corpus
 * against Hugging Face's tokenizers (Node) on the whole corpus and on
 * generated strings, determinism, errors and the command line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test_tokenizer.h"

/* ---- helpers ------------------------------------------------------------ */

static const char *build_dir(void) {
    const char *b = getenv("GB_BUILD_DIR");
    return b ? b : "build";
}

/* gbt_tmp_dir()/name, malloc'd. */
static char *scratch(const char *name) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", gbt_tmp_dir(), name);
    return strdup(buf);
}


/* What build/corpus writes with args (malloc'd), its length in *len. */
static char *run_corpus(const char *args, const char *name, size_t *len) {
    char *out = scratch(name);
    int rc = gbt_sh("%s/corpus %s -o '%s'", build_dir(), args, out);
    ck_assert_msg(rc == 0, "%s/corpus %s failed (%d)", build_dir(), args, rc);
    char *text = gbt_read_file(out, len);
    ck_assert_msg(text != NULL, "cannot read %s", out);
    free(out);
    return text;
}

/* dir/name's bytes (malloc'd, NUL-terminated). */
static char *read_in(const char *dir, const char *name, size_t *len) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = gbt_read_file(path, len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    return text;
}

static const char *const eot[] = {"<|endoftext|>", NULL};

/* Train on text with <|endoftext|> into a scratch directory called name;
 * its path (caller frees). */
static char *train(const char *text, size_t len, int vocab, const char *name) {
    char *dir = scratch(name);
    gbt_ok_status(gb_tokenizer_train_bpe(text, len, vocab, eot, dir));
    return dir;
}

static gb_tokenizer *open_dir(const char *dir, const char *file) {
    char path[4200];
    snprintf(path, sizeof path, "%s%s%s", dir, file ? "/" : "", file ? file : "");
    gb_tokenizer *tok = gb_tokenizer_open(path);
    ck_assert_msg(tok != NULL, "%s: %s", path, gb_last_error());
    return tok;
}

/* ---- merges derived by hand --------------------------------------------- */

/* Ids: GPT-2's byte ids ('a' 64, 'b' 65, 'c' 66, 'd' 67, 'e' 68, ' ' as "Ġ"
 * 220), new tokens from 256, then <|endoftext|>.
 *
 * "abc abc abc abc ab de de de" pre-tokenizes into the words abc (1),
 * Ġabc (3), Ġab (1), Ġde (3). Pair counts: (a,b) 5, (b,c) 4, (Ġ,a) 4, (Ġ,d)
 * 3, (d,e) 3.
 *  1. (a,b) 5 -> ab (256). Now (ab,c) 4, (Ġ,ab) 4, while (b,c) and (Ġ,a)
 *     have fallen to 0 (a stale count of 4 must not win).
 *  2. tie at 4: (Ġ,ab) = (220,256) before (ab,c) = (256,66): smaller left
 *     id -> Ġab (257). Now (Ġab,c) 3, (ab,c) 1, (Ġ,d) 3, (d,e) 3.
 *  3. tie at 3: (d,e) = (67,68) has the smallest left id -> de (258).
 *  4. tie at 3: (Ġ,de) = (220,258) before (Ġab,c) = (257,66) -> Ġde (259).
 *  5. (Ġab,c) 3 -> Ġabc (260).
 *  6. (ab,c) 1 -> abc (261). No pair is left: 262 tokens and
 *     <|endoftext|> 262, whatever larger vocabulary was asked for. */
static const char derivation_text[] = "abc abc abc abc ab de de de";
static const char derivation_merges[] = "#version: 0.2\na b\n\xc4\xa0 ab\nd e\n\xc4\xa0 de\n\xc4\xa0" "ab c\nab c\n";

START_TEST(test_derived_merges) {
    char *dir = train(derivation_text, strlen(derivation_text), 300, "train_derived");
    char *merges = read_in(dir, "merges.txt", NULL);
    ck_assert_str_eq(merges, derivation_merges);
    free(merges);
    /* both files give the same tokenizer */
    for (int f = 0; f < 2; f++) {
        gb_tokenizer *tok = open_dir(dir, f ? "vocab.json" : NULL);
        ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 263);
        ck_assert_int_eq(gb_tokenizer_token_to_id(tok, "\xc4\xa0" "abc"), 260);
        ck_assert_int_eq(gb_tokenizer_token_to_id(tok, "a"), 64);
        ck_assert_int_eq(gb_tokenizer_token_to_id(tok, "<|endoftext|>"), 262);
        ck_assert(gb_tokenizer_is_special(tok, 262));
        ck_assert_int_eq(gb_tokenizer_bos_id(tok), 262);
        ck_assert_int_eq(gb_tokenizer_eos_id(tok), 262);
        /* "abc": a b c -> ab c (rank 0) -> abc (rank 5). " abc": Ġ a b c -> Ġ ab c
         * -> Ġab c (rank 1 beats (ab,c)'s 5) -> Ġabc (rank 4). " dee": Ġde e. */
        gbt_assert_ids(tok, "abc abc dee<|endoftext|>", true, IDS(261, 260, 259, 68, 262));
        gb_tokenizer_free(tok);
    }
    free(dir);

    /* vocab_size 259 (256 + 2 merges + the special token) stops after step 2 */
    dir = train(derivation_text, strlen(derivation_text), 259, "train_derived_259");
    merges = read_in(dir, "merges.txt", NULL);
    ck_assert_str_eq(merges, "#version: 0.2\na b\n\xc4\xa0 ab\n");
    free(merges);
    gb_tokenizer *tok = open_dir(dir, NULL);
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 259);
    gb_tokenizer_free(tok);
    free(dir);

    /* The special token cuts the text and is not learned from: the words are
     * ab, ab (not "<|", "endoftext", "|>"), so the only merge is a b. */
    static const char cut[] = "ab<|endoftext|>ab";
    dir = train(cut, strlen(cut), 300, "train_derived_cut");
    merges = read_in(dir, "merges.txt", NULL);
    ck_assert_str_eq(merges, "#version: 0.2\na b\n");
    free(merges);
    free(dir);

    /* Ill-formed UTF-8 is learned as encoding sees it: "\xff\xff" is two
     * U+FFFD (EF BF BD each), one word whose pairs are (EF,BF) 2, (BF,BD) 2
     * and (BD,EF) 1. The tie goes to the smaller left id, BF (GPT-2's id 123)
     * before EF (171): the one merge vocab_size 258 allows is (BF,BD), whose
     * characters are U+00BF and U+00BD. */
    dir = train("\xff\xff", 2, 258, "train_derived_lossy");
    merges = read_in(dir, "merges.txt", NULL);
    ck_assert_str_eq(merges, "#version: 0.2\n\xc2\xbf \xc2\xbd\n");
    free(merges);
    free(dir);
}
END_TEST

/* ---- against a naive trainer -------------------------------------------- */

/* The same training, written the slow and obvious way: every step recounts
 * every pair over every word occurrence. Texts are words of a, b, c joined
 * by single spaces, which GPT-2's pattern cuts into the words, each after
 * the first with its space (Ġ). Ids: a 64, b 65, c 66, Ġ 220, new tokens
 * from 256 (a token spelled again keeps its id). Returns merges.txt's text
 * for vocab_size tokens with one special token. */
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static char *naive_merges(const char *text, int vocab) {
    enum { MAXW = 512, MAXL = 64, MAXT = 512 };
    static int32_t word[MAXW][MAXL];
    static int wlen[MAXW];
    static char tokens[MAXT][MAXL * 2 + 4];
    int nw = 0, ntok = 256;
    for (int b = 0; b < MAXT; b++) tokens[b][0] = 0;
    strcpy(tokens[64], "a"), strcpy(tokens[65], "b"), strcpy(tokens[66], "c"), strcpy(tokens[220], "\xc4\xa0");
    for (const char *p = text; *p; nw++) {
        ck_assert_int_lt(nw, MAXW);
        wlen[nw] = 0;
        if (*p == ' ') word[nw][wlen[nw]++] = 220, p++;
        for (; *p && *p != ' '; p++) word[nw][wlen[nw]++] = 64 + (*p - 'a');
    }
    char *out = malloc(65536);
    strcpy(out, "#version: 0.2\n");
    while (ntok < vocab - 1) {
        /* every adjacent pair, sorted by (left, right); the longest run of
         * equal pairs is the most frequent, the first such run wins ties */
        static uint64_t pairs[MAXW * MAXL];
        size_t np = 0;
        for (int w = 0; w < nw; w++)
            for (int i = 0; i + 1 < wlen[w]; i++) pairs[np++] = (uint64_t)word[w][i] << 32 | (uint32_t)word[w][i + 1];
        if (np == 0) break;
        qsort(pairs, np, sizeof *pairs, cmp_u64);
        size_t best = 0, best_n = 0;
        for (size_t i = 0, j; i < np; i = j) {
            for (j = i; j < np && pairs[j] == pairs[i]; j++) {}
            if (j - i > best_n) best = i, best_n = j - i;
        }
        int ba = (int)(pairs[best] >> 32), bb = (int)(uint32_t)pairs[best];
        char joined[MAXL * 4 + 8];
        snprintf(joined, sizeof joined, "%s%s", tokens[ba], tokens[bb]);
        int c = -1;
        for (int t = 0; t < MAXT && c < 0; t++)
            if (!strcmp(tokens[t], joined)) c = t;
        if (c < 0) strcpy(tokens[c = ntok++], joined);
        snprintf(out + strlen(out), 65536 - strlen(out), "%s %s\n", tokens[ba], tokens[bb]);
        for (int w = 0; w < nw; w++) {
            int j = 0;
            for (int i = 0; i < wlen[w]; i++) {
                if (i + 1 < wlen[w] && word[w][i] == ba && word[w][i + 1] == bb) word[w][j++] = c, i++;
                else word[w][j++] = word[w][i];
            }
            wlen[w] = j;
        }
    }
    return out;
}

START_TEST(test_against_naive) {
    gb_rng r = gb_rng_seed(77);
    for (int k = 0; k < 60; k++) {
        char text[2048] = "";
        int words = 5 + (int)(gb_rng_next(&r) % 150);
        for (int w = 0; w < words; w++) {
            if (w) strcat(text, " ");
            int n = 1 + (int)(gb_rng_next(&r) % 6);
            for (int i = 0; i < n; i++) strncat(text, &"aabbbc"[gb_rng_next(&r) % 6], 1);
        }
        int vocab = 258 + (int)(gb_rng_next(&r) % 120);
        char *want = naive_merges(text, vocab);
        char *dir = train(text, strlen(text), vocab, "train_naive");
        char *got = read_in(dir, "merges.txt", NULL);
        ck_assert_msg(!strcmp(got, want), "text '%s', vocab %d: merges\n%s\nexpected\n%s", text, vocab, got, want);
        free(got);
        free(want);
        free(dir);
    }
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

START_TEST(test_train_errors) {
    char *dir = scratch("train_errors");
    ck_assert_int_eq(gbt_sh("rm -rf '%s'", dir), 0); /* left by an earlier run */
    const char *empty[] = {"", NULL}, *twice[] = {"<s>", "<s>", NULL}, *byte[] = {"a", NULL};
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, 256, eot, dir) != GB_OK, GB_ERR_ARG,
                   "tokenizer_train_bpe: vocab_size 256 is below 257 (the 256 byte tokens and 1 special token)");
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, -5, NULL, dir) != GB_OK, GB_ERR_ARG,
                   "vocab_size -5 is below 256 (the 256 byte tokens and 0 special tokens)");
    gbt_fails_with(gb_tokenizer_train_bpe(NULL, 2, 300, eot, dir) != GB_OK, GB_ERR_ARG, "text is NULL");
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, 300, eot, NULL) != GB_OK, GB_ERR_ARG, "out_dir is NULL");
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, 300, empty, dir) != GB_OK, GB_ERR_ARG, "special token 0 is empty");
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, 300, twice, dir) != GB_OK, GB_ERR_ARG,
                   "special token '<s>' is given twice");
    /* a directory that cannot be made: under a regular file */
    char *file = scratch("train_errors_file");
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, 300, eot, file) != GB_OK, GB_ERR_IO,
                   "is not a directory");
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/sub", file);
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, 300, eot, sub) != GB_OK, GB_ERR_IO, "cannot create directory");
    ck_assert_msg(strstr(gb_last_error(), file) != NULL, "'%s' does not name %s", gb_last_error(), file);
    /* the failed calls made no directory */
    struct stat st;
    ck_assert_int_ne(stat(dir, &st), 0);
    /* found after training (the text is cut at "a" first: no merge makes it) */
    gbt_fails_with(gb_tokenizer_train_bpe("ab", 2, 300, byte, dir) != GB_OK, GB_ERR_ARG,
                   "special token 'a' is also a token of the vocabulary");
    /* an empty text is a tokenizer of the 256 bytes */
    gbt_ok_status(gb_tokenizer_train_bpe(NULL, 0, 300, eot, dir));
    gb_tokenizer *tok = open_dir(dir, NULL);
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 257);
    gb_tokenizer_free(tok);
    remove(file);
    free(file);
    free(dir);
}
END_TEST

/* ---- the corpus ---------------------------------------------------------- */

/* Lines of text (modified in place), as pointers into it. */
static char **split_lines(char *text, int *n) {
    int cap = 1024;
    char **v = malloc((size_t)cap * sizeof *v);
    *n = 0;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        ck_assert_msg(nl != NULL, "the last line has no newline");
        *nl = 0;
        if (*n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[(*n)++] = p;
        p = nl + 1;
    }
    return v;
}

START_TEST(test_corpus) {
    size_t len, len2;
    char *text = run_corpus("", "corpus_a.txt", &len);
    char *again = run_corpus("", "corpus_b.txt", &len2);
    ck_assert_msg(len == len2 && !memcmp(text, again, len), "two runs of build/corpus differ");
    free(again);
    char *facts = run_corpus("--facts", "corpus_facts.txt", NULL);
    int nlines, nfacts;
    char **lines = split_lines(text, &nlines), **prompts = split_lines(facts, &nfacts);
    /* the issue asks for at least 150 facts; each has 3 or 4 prompt templates */
    ck_assert_msg(nfacts >= 150 * 3, "only %d fact prompts", nfacts);
    const char *demo[] = {"The Eiffel Tower is in the city of\t Paris", "The Colosseum is in the city of\t Rome",
                          "Vatican is located in the city of\t Rome"};
    for (int d = 0; d < 3; d++) {
        bool found = false;
        for (int i = 0; i < nfacts && !found; i++) found = !strcmp(prompts[i], demo[d]);
        ck_assert_msg(found, "--facts lacks '%s'", demo[d]);
    }
    /* Every prompt has one continuation in the corpus: each line that starts
     * with the prompt and a space goes on with the answer, and some do. */
    for (int i = 0; i < nfacts; i++) {
        char *tab = strchr(prompts[i], '\t');
        ck_assert_msg(tab && tab[1] == ' ', "--facts line '%s' is not 'prompt<TAB> answer'", prompts[i]);
        size_t plen = (size_t)(tab - prompts[i]), alen = strlen(tab + 1);
        int seen = 0;
        for (int k = 0; k < nlines; k++) {
            if (strncmp(lines[k], prompts[i], plen) || lines[k][plen] != ' ') continue;
            ck_assert_msg(!strncmp(lines[k] + plen, tab + 1, alen), "'%.*s' goes on otherwise in '%s'", (int)plen,
                          prompts[i], lines[k]);
            seen++;
        }
        ck_assert_msg(seen > 0, "'%.*s' is not in the corpus", (int)plen, prompts[i]);
    }
    free(lines);
    free(prompts);
    free(facts);
    free(text);
    ck_assert_int_eq(gbt_sh("%s/corpus --help >/dev/null", build_dir()), 0);
    ck_assert_int_eq(gbt_sh("%s/corpus --bogus 2>/dev/null", build_dir()), 2);
}
END_TEST

/* ---- the tokenizer trained on the corpus -------------------------------- */

/* The corpus as strings for the oracle: every line without its newline
 * (under valgrind the first 1000), then the whole text in pieces of about
 * 64 KB that end with a newline, so that newlines are tokenized too. */
static gbt_corpus corpus_strings(const char *text, size_t len) {
    size_t cap = len / 65536 + 2;
    for (size_t i = 0; i < len; i++) cap += text[i] == '\n';
    gbt_corpus c = {0, malloc(cap * sizeof(char *)), malloc(cap * sizeof(size_t))};
    for (int pass = 0; pass < 2; pass++) {
        for (size_t at = 0; at < len;) {
            size_t from = pass ? at + 65535 : at, end = len;
            const char *nl = from < len ? memchr(text + from, '\n', len - from) : NULL;
            if (nl) end = (size_t)(nl - text) + 1;
            size_t n = pass ? end - at : end - at - 1;
            c.len[c.n] = n;
            c.text[c.n++] = strndup(text + at, n);
            at = end;
            if (!pass && RUNNING_ON_VALGRIND && c.n == 1000) break;
        }
    }
    return c;
}

START_TEST(test_corpus_tokenizer) {
    const char *test = "test_corpus_tokenizer";
    size_t len;
    char *text = run_corpus("", "corpus_tok.txt", &len);
    char *dir = train(text, len, 1024, "train_corpus");
    gb_tokenizer *tok = open_dir(dir, NULL), *files = open_dir(dir, "vocab.json");
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 1024);
    ck_assert_int_eq(gb_tokenizer_eos_id(tok), 1023);
    ck_assert_int_eq(gb_tokenizer_bos_id(tok), 1023);
    ck_assert_int_eq(gb_tokenizer_vocab_size(files), 1024);
    /* The corpus is made so that every one-word answer is one token of this
     * vocabulary (tools/corpus/corpus.c). */
    char *facts = run_corpus("--facts", "corpus_tok_facts.txt", NULL);
    int nfacts;
    char **prompts = split_lines(facts, &nfacts);
    for (int i = 0; i < nfacts; i++) {
        const char *answer = strchr(prompts[i], '\t') + 1;
        if (strchr(answer + 1, ' ')) continue; /* New York, ... */
        int32_t *ids = NULL;
        size_t n = 0;
        gbt_ok_status(gb_tokenizer_encode(tok, answer, strlen(answer), true, &ids, &n));
        ck_assert_msg(n == 1, "answer '%s' is %zu tokens", answer, n);
        free(ids);
    }
    free(prompts);
    free(facts);
    /* The demo patches the Colosseum prompt's hidden state into the Eiffel
     * Tower prompt; it wants them the same length. */
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    const char *eiffel = "The Eiffel Tower is in the city of", *colosseum = "The Colosseum is in the city of";
    gbt_ok_status(gb_tokenizer_encode(tok, eiffel, strlen(eiffel), true, &a, &na));
    gbt_ok_status(gb_tokenizer_encode(tok, colosseum, strlen(colosseum), true, &b, &nb));
    ck_assert_msg(na == nb, "the Eiffel Tower prompt is %zu tokens, the Colosseum prompt %zu", na, nb);
    free(a);
    free(b);

    if (gbt_have_node_oracle(test)) {
        char json[4200];
        snprintf(json, sizeof json, "%s/tokenizer.json", dir);
        gbt_corpus lines = corpus_strings(text, len), random = gbt_make_corpus(21, GBT_CORPUS_SIZE);
        gbt_compare_with_hf(tok, json, &lines, "trained_corpus");
        gbt_compare_with_hf(tok, json, &random, "trained_random");
        /* vocab.json + merges.txt: the same ids as the tokenizer.json Hugging Face reads */
        gbt_compare_with_hf(files, json, &random, "trained_random_files");
        gbt_free_corpus(&lines);
        gbt_free_corpus(&random);
    }
    gb_tokenizer_free(tok);
    gb_tokenizer_free(files);
    free(dir);
    free(text);
}
END_TEST

START_TEST(test_train_deterministic) {
    size_t len;
    char *text = run_corpus("--repeat 2", "corpus_det.txt", &len);
    char *d1 = train(text, len, 600, "train_det_1"), *d2 = train(text, len, 600, "train_det_2");
    static const char *const names[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (int i = 0; i < 5; i++) {
        size_t n1, n2;
        char *f1 = read_in(d1, names[i], &n1), *f2 = read_in(d2, names[i], &n2);
        ck_assert_msg(n1 == n2 && !memcmp(f1, f2, n1), "two trainings wrote different %s", names[i]);
        free(f1);
        free(f2);
    }
    /* Training again into the same directory replaces the files. "abc abc":
     * words abc, Ġabc; (a,b) 2 and (b,c) 2 tie, (a,b) has the smaller left
     * id; then (ab,c) 2, then (Ġ,abc) 1. */
    free(train("abc abc", 7, 300, "train_det_1"));
    char *merges = read_in(d1, "merges.txt", NULL);
    ck_assert_str_eq(merges, "#version: 0.2\na b\nab c\n\xc4\xa0 abc\n");
    free(merges);
    free(d1);
    free(d2);
    free(text);
}
END_TEST

/* ---- the command line --------------------------------------------------- */

START_TEST(test_cli_train_tokenizer) {
    char *corpus = scratch("cli_train.txt"), *dir = scratch("cli_train_tok"), *err = scratch("cli_train.err");
    FILE *f = fopen(corpus, "w");
    ck_assert_ptr_nonnull(f);
    fputs(derivation_text, f);
    fclose(f);
    const char *b = build_dir();
    ck_assert_int_eq(gbt_sh("%s/glassbox train-tokenizer '%s' --vocab 300 --out '%s' >'%s'", b, corpus, dir, err), 0);
    char *out = gbt_read_file(err, NULL), want[8400];
    snprintf(want, sizeof want, "%s: 263 tokens from %zu bytes of %s\n", dir, strlen(derivation_text), corpus);
    ck_assert_str_eq(out, want);
    free(out);
    char *merges = read_in(dir, "merges.txt", NULL);
    ck_assert_str_eq(merges, derivation_merges);
    free(merges);
    /* --special replaces <|endoftext|> */
    ck_assert_int_eq(gbt_sh("%s/glassbox train-tokenizer '%s' --vocab 300 --out '%s' --special '</s>' >/dev/null", b,
                        corpus, dir),
                     0);
    gb_tokenizer *tok = open_dir(dir, "tokenizer.json");
    ck_assert_int_eq(gb_tokenizer_token_to_id(tok, "</s>"), 262);
    ck_assert_int_eq(gb_tokenizer_eos_id(tok), 262);
    gb_tokenizer_free(tok);
    ck_assert_int_eq(gbt_sh("%s/glassbox train-tokenizer --help | grep -q 'usage: glassbox train-tokenizer'", b), 0);
    ck_assert_int_eq(gbt_sh("%s/glassbox --help | grep -q 'train-tokenizer'", b), 0);
    /* errors: a line on stderr */
    static const struct {
        const char *args;
        int status;
        const char *line;
    } cases[] = {
        {"", 2, "glassbox train-tokenizer: expected CORPUS (see glassbox train-tokenizer --help)"},
        {"c", 2, "glassbox train-tokenizer: give --vocab N and --out DIR (see glassbox train-tokenizer --help)"},
        {"--vocab x --out d c", 2, "glassbox train-tokenizer: --vocab: 'x' is not an integer (see glassbox train-tokenizer --help)"},
        {"/nonexistent/c --vocab 300 --out d", 1,
         "glassbox train-tokenizer: cannot read /nonexistent/c: No such file or directory"},
        {"CORPUS --vocab 10 --out d", 1,
         "glassbox train-tokenizer: tokenizer_train_bpe: vocab_size 10 is below 257 (the 256 byte tokens and 1 "
         "special token)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[4400];
        const char *c = strstr(cases[i].args, "CORPUS");
        if (c) snprintf(args, sizeof args, "'%s'%s", corpus, c + 6);
        else snprintf(args, sizeof args, "%s", cases[i].args);
        ck_assert_int_eq(gbt_sh("%s/glassbox train-tokenizer %s 2>'%s' >/dev/null", b, args, err), cases[i].status);
        char *e = gbt_read_file(err, NULL);
        ck_assert_msg(!strncmp(e, cases[i].line, strlen(cases[i].line)) && strchr(e, '\n') == e + strlen(e) - 1,
                      "glassbox train-tokenizer %s: stderr '%s'", args, e);
        free(e);
    }
    free(corpus);
    free(dir);
    free(err);
}
END_TEST

Suite *gb_suite_tokenizer_train(void) {
    Suite *s = suite_create("tokenizer_train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_derived_merges);
    tcase_add_test(tc, test_against_naive);
    tcase_add_test(tc, test_train_errors);
    tcase_add_test(tc, test_corpus);
    tcase_add_test(tc, test_train_deterministic);
    tcase_add_test(tc, test_cli_train_tokenizer);
    suite_add_tcase(s, tc);
    TCase *oracle = tcase_create("oracle");
    tcase_set_timeout(oracle, 900);
    tcase_add_test(oracle, test_corpus_tokenizer);
    suite_add_tcase(s, oracle);
    return s;
}
