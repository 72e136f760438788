/* Tokenizers: known ids from ../shared, derivations on tiny hand-made
 * tokenizers, every error path, and a differential test against Hugging
 * Face's own library (Node binding) and SentencePiece on thousands of
 * generated strings: on ../shared's tokenizers, and on the bundled model's
 * (models/gpt2-facts) and variants built from it, which need nothing beside
 * the repository.
 *
 * The oracles run as child processes (tests/tokenizer/hf_oracle.js,
 * tests/tokenizer/sp_oracle.py) on a corpus written under gbt_tmp_dir().
 * Ill-formed UTF-8 in the corpus reaches the oracles as U+FFFD (one per
 * maximal ill-formed subsequence, the decoders' standard behaviour), which is
 * exactly what glassbox does with such bytes, so ids and decoded text must
 * match byte for byte. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gbtest.h"
#include "io/json.h" /* to build variant tokenizer.json files from the fixtures */
#include "test_tokenizer.h"

/* ---- small helpers ------------------------------------------------------ */

static char *tmp_path(const char *name) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", gbt_tmp_dir(), name);
    return strdup(buf);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Write text as name in the scratch directory and open it; *path (when
 * not NULL) gets the file's path, for the caller to free. */
static gb_tokenizer *open_written(const char *name, const char *text, char **path) {
    char *p = tmp_path(name);
    write_file(p, text);
    gb_tokenizer *tok = gb_tokenizer_open(p);
    ck_assert_msg(tok != NULL, "%s: %s", p, gb_last_error());
    if (path) *path = p;
    else free(p);
    return tok;
}

/* Open ../shared/rel, or NULL after a visible SKIP line; *path (when not
 * NULL) gets the fixture's path, for the caller to free. */
static gb_tokenizer *open_shared(const char *rel, const char *test, char **path) {
    char *p = gbt_shared_path(rel, test);
    if (!p) return NULL;
    gb_tokenizer *tok = gb_tokenizer_open(p);
    ck_assert_msg(tok != NULL, "%s: %s", p, gb_last_error());
    if (path) *path = p;
    else free(p);
    return tok;
}

void gbt_assert_ids(gb_tokenizer *tok, const char *text, bool special, const int32_t *want, size_t nwant) {
    int32_t *ids = NULL;
    size_t n = 0;
    gbt_ok_status(gb_tokenizer_encode(tok, text, strlen(text), special, &ids, &n));
    bool same = n == nwant;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    char got[2048] = "";
    for (size_t i = 0; i < n && strlen(got) < 2000; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%d", i ? "," : "", (int)ids[i]);
    ck_assert_msg(same, "'%s' encodes as [%s], expected %zu ids starting %d", text, got, nwant, nwant ? want[0] : -1);
    free(ids);
}

static void assert_decodes(gb_tokenizer *tok, const int32_t *ids, size_t n, bool skip, const char *want) {
    char *text = NULL;
    size_t len = 0;
    gbt_ok_status(gb_tokenizer_decode(tok, ids, n, skip, &text, &len));
    ck_assert_msg(len == strlen(want) && !strcmp(text, want), "decoded '%s', expected '%s'", text, want);
    free(text);
}

/* ---- known values (../shared/README.md) --------------------------------- */

static const char eiffel[] = "The Eiffel Tower is in the city of";

START_TEST(test_known_gpt2) {
    /* The same ids from tokenizer.json, from vocab.json + merges.txt, and
     * from the directory (which prefers tokenizer.json). */
    const char *paths[] = {"tokenizers/gpt2/tokenizer.json", "tokenizers/gpt2/vocab.json", "tokenizers/gpt2/merges.txt",
                           "tokenizers/gpt2"};
    for (int p = 0; p < 4; p++) {
        gb_tokenizer *tok = open_shared(paths[p], "test_known_gpt2", NULL);
        if (!tok) return;
        gbt_assert_ids(tok, eiffel, true, IDS(464, 412, 733, 417, 8765, 318, 287, 262, 1748, 286));
        gbt_assert_ids(tok, eiffel, false, IDS(464, 412, 733, 417, 8765, 318, 287, 262, 1748, 286));
        assert_decodes(tok, IDS(464, 412, 733, 417, 8765, 318, 287, 262, 1748, 286), false, eiffel);
        ck_assert_str_eq(gb_tokenizer_token_to_string(tok, 412), "\xc4\xa0" "E"); /* "ĠE": Ġ stands for the space */
        ck_assert_int_eq(gb_tokenizer_token_to_id(tok, "\xc4\xa0" "Tower"), 8765);
        /* <|endoftext|> (50256, README) is GPT-2's one special token, its BOS and EOS. */
        ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 50257);
        ck_assert_int_eq(gb_tokenizer_bos_id(tok), 50256);
        ck_assert_int_eq(gb_tokenizer_eos_id(tok), 50256);
        ck_assert(gb_tokenizer_is_special(tok, 50256) && !gb_tokenizer_is_special(tok, 464));
        gb_tokenizer_free(tok);
    }
}
END_TEST

START_TEST(test_known_llama2) {
    gb_tokenizer *tok = open_shared("tokenizers/llama2", "test_known_llama2", NULL);
    if (!tok) return;
    gbt_assert_ids(tok, eiffel, true, IDS(1, 450, 382, 2593, 295, 23615, 338, 297, 278, 4272, 310));
    /* without special tokens the template's BOS (id 1) is not added */
    gbt_assert_ids(tok, eiffel, false, IDS(450, 382, 2593, 295, 23615, 338, 297, 278, 4272, 310));
    assert_decodes(tok, IDS(1, 450, 382, 2593, 295, 23615, 338, 297, 278, 4272, 310), true, eiffel);
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 32000);
    ck_assert_int_eq(gb_tokenizer_bos_id(tok), 1);
    ck_assert_int_eq(gb_tokenizer_eos_id(tok), 2);
    gb_tokenizer_free(tok);
}
END_TEST

START_TEST(test_known_stories260k) {
    gb_tokenizer *tok = open_shared("models/stories260k", "test_known_stories260k", NULL);
    if (!tok) return;
    gbt_assert_ids(tok, "Once upon a time", true, IDS(1, 403, 407, 261, 378));
    /* The greedy continuation in ../shared/README.md: its sentence is the
     * first 16 ids (the last five go on with " She loved to play"). */
    assert_decodes(tok, IDS(1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426), true,
                   "Once upon a time, there was a little girl named Lily.");
    /* BOS 1 and EOS 2 come from config.json beside the tokenizer */
    ck_assert_int_eq(gb_tokenizer_bos_id(tok), 1);
    ck_assert_int_eq(gb_tokenizer_eos_id(tok), 2);
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 512);
    gb_tokenizer_free(tok);
}
END_TEST

/* ---- tiny hand-made tokenizers (derivations) ---------------------------- */

/* Merges by rank, unknown characters fused into one <unk>, a Split
 * pre-tokenizer on a literal, and no decoder (tokens joined by spaces). */
static const char tiny_json[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,"
    "\"rstrip\":false,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Removed\","
    "\"invert\":false},\"post_processor\":null,\"decoder\":null,"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":false,\"ignore_merges\":false,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"a\":2,\"b\":3,\"c\":4,\"ab\":5,\"bc\":6,\"abc\":7,\"cc\":8},"
    "\"merges\":[\"b c\",\"a b\",\"ab c\",\"c c\"]}}";

/* A subword prefix and a word suffix, unknowns not fused, no pre-tokenizer. */
static const char tiny_affix_json[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],\"normalizer\":null,"
    "\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":\"##\","
    "\"end_of_word_suffix\":\"</w>\",\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
    "\"vocab\":{\"<unk>\":0,\"a\":1,\"##b\":2,\"##c</w>\":3,\"ab\":4,\"abc</w>\":5,\"b</w>\":6,\"c</w>\":7,"
    "\"##b</w>\":8},\"merges\":[[\"a\",\"##b\"],[\"ab\",\"##c</w>\"]]}}";

START_TEST(test_tiny_derivations) {
    gb_tokenizer *tok = open_written("tok_tiny.json", tiny_json, NULL);
    /* "abc": (b,c) has rank 0, (a,b) rank 1: b+c first, then (a,bc) has no merge */
    gbt_assert_ids(tok, "abc", true, IDS(2, 6));
    gbt_assert_ids(tok, "ab", true, IDS(5));
    /* "ccc": both (c,c) pairs have rank 3; the leftmost merges first */
    gbt_assert_ids(tok, "ccc", true, IDS(8, 4));
    /* "xxa": x is not in the vocabulary; with fuse_unk the two x are one <unk> */
    gbt_assert_ids(tok, "xxa", true, IDS(0, 2));
    /* "a b": split on the space, which is removed */
    gbt_assert_ids(tok, "a b", true, IDS(2, 3));
    /* "<s>a": the special token is matched in the text before the model runs */
    gbt_assert_ids(tok, "<s>a", false, IDS(1, 2));
    /* no decoder: tokens joined with spaces; skip_special drops <s> */
    assert_decodes(tok, IDS(1, 2, 6), false, "<s> a bc");
    assert_decodes(tok, IDS(1, 2, 6), true, "a bc");
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 9);
    ck_assert_int_eq(gb_tokenizer_bos_id(tok), 1);   /* by its name, "<s>" */
    ck_assert_int_eq(gb_tokenizer_eos_id(tok), -1);  /* none */
    gb_tokenizer_free(tok);

    tok = open_written("tok_tiny_affix.json", tiny_affix_json, NULL);
    /* a, ##b, ##c</w> -> ab (a + "##b" without its prefix), then abc</w> */
    gbt_assert_ids(tok, "abc", true, IDS(5));
    /* one character: both first and last, so "b</w>" */
    gbt_assert_ids(tok, "b", true, IDS(6));
    /* a, ##b</w>: no merge for that pair */
    gbt_assert_ids(tok, "ab", true, IDS(1, 8));
    /* ##x is unknown; without fuse_unk each unknown is its own <unk> */
    gbt_assert_ids(tok, "axb", true, IDS(1, 0, 8));
    gbt_assert_ids(tok, "xx", true, IDS(0, 0));
    gb_tokenizer_free(tok);
}
END_TEST

/* A sparse id costs nothing (issue 13: "zzz": 1500000000 grew the id table
 * to the largest id, 6 GB, and crashed when that allocation failed): ids
 * index a table of what the file holds. */
START_TEST(test_sparse_ids) {
    const char *at = strstr(tiny_json, "\"a\":2,");
    ck_assert(at != NULL);
    char *text = malloc(sizeof tiny_json + 32);
    sprintf(text, "%.*s\"zzz\":1500000000,%s", (int)(at - tiny_json), tiny_json, at);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    gb_tokenizer *tok = open_written("tok_sparse.json", text, NULL);
    getrusage(RUSAGE_SELF, &after);
    ck_assert_msg(after.ru_maxrss - before.ru_maxrss < 64 * 1024, "opening grew the peak by %ld KB",
                  after.ru_maxrss - before.ru_maxrss);
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 1500000001); /* the largest id + 1, as before */
    gbt_assert_ids(tok, "abc", true, IDS(2, 6));
    assert_decodes(tok, IDS(1500000000, 2), false, "zzz a");
    gb_tokenizer_free(tok);
    free(text);
}
END_TEST

/* ---- errors ------------------------------------------------------------- */

/* Write text as a tokenizer.json and check that opening it fails. */
static void assert_open_fails(const char *text, gb_status st, const char *needle) {
    char *p = tmp_path("tok_bad.json");
    write_file(p, text);
    gbt_fails_with(gb_tokenizer_open(p) == NULL, st, needle);
    ck_assert_msg(strstr(gb_last_error(), p) != NULL, "message '%s' does not name the file", gb_last_error());
    free(p);
}

/* tiny_json with the first occurrence of from replaced by to. */
static char *tiny_with(const char *from, const char *to) {
    const char *at = strstr(tiny_json, from);
    ck_assert_msg(at != NULL, "'%s' not in tiny_json", from);
    size_t n = strlen(tiny_json) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(at - tiny_json), tiny_json, to, at + strlen(from));
    return s;
}

static void assert_variant_fails(const char *from, const char *to, gb_status st, const char *needle) {
    char *s = tiny_with(from, to);
    assert_open_fails(s, st, needle);
    free(s);
}

START_TEST(test_open_errors) {
    gbt_fails_with(gb_tokenizer_open(NULL) == NULL, GB_ERR_ARG, "path is NULL");
    gbt_fails_with(gb_tokenizer_open("/nonexistent/tok.json") == NULL, GB_ERR_IO,
                   "cannot open /nonexistent/tok.json: No such file or directory");
    /* corrupt files */
    char *half = strndup(tiny_json, strlen(tiny_json) / 2);
    assert_open_fails(half, GB_ERR_FORMAT, "invalid JSON at byte");
    free(half);
    assert_open_fails("[1, 2]", GB_ERR_FORMAT, "the top level is not an object");
    /* nesting is bounded before cJSON (and the walks over its tree) recurse:
     * '{' is level 1 at byte 0, so the 128th '[' after {"x": is level 129 */
    char *deep = malloc(10016);
    sprintf(deep, "{\"x\":%0*d}", 10000, 0);
    memset(deep + 5, '[', 5000), memset(deep + 5005, ']', 5000);
    assert_open_fails(deep, GB_ERR_FORMAT, "tok_bad.json: JSON nested deeper than 128 levels at byte 132");
    free(deep);
    assert_open_fails("{\"version\":\"1.0\"}", GB_ERR_FORMAT, "no \"model\" object");
    assert_variant_fails("\"version\":\"1.0\"", "\"version\":\"2.0\"", GB_ERR_UNSUPPORTED, "version '2.0'");
    assert_variant_fails("\"merges\":[\"b c\"", "\"merges\":[\"b z\"", GB_ERR_FORMAT,
                         "merge 0 ('b' 'z') uses 'z', which is not in the vocabulary");
    assert_variant_fails("\"merges\":[\"b c\"", "\"merges\":[\"bc\"", GB_ERR_FORMAT,
                         "is not two tokens separated by one space");
    assert_variant_fails("\"merges\":[\"b c\"", "\"merges\":[[\"b\"]", GB_ERR_FORMAT, "merge 0 is neither");
    assert_variant_fails("\"merges\":[\"b c\",\"a b\"", "\"merges\":[\"c b\",\"a b\"", GB_ERR_FORMAT,
                         "makes 'cb', which is not in the vocabulary");
    assert_variant_fails("\"a\":2,", "\"a\":-2,", GB_ERR_FORMAT, "token 'a' has no valid id");
    assert_variant_fails("\"dropout\":null", "\"dropout\":0.1", GB_ERR_UNSUPPORTED, "dropout");
    assert_variant_fails("\"padding\":null", "\"padding\":{\"strategy\":{\"Fixed\":8}}", GB_ERR_UNSUPPORTED,
                         "padding");
    assert_variant_fails("\"truncation\":null", "\"truncation\":{\"direction\":\"Left\"}", GB_ERR_FORMAT,
                         "max_length");
    assert_variant_fails("\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\"", "\"added_tokens\":[{\"id\":0",
                         GB_ERR_FORMAT, "added_tokens[0] has no \"content\"");
    /* unsupported components name themselves */
    assert_variant_fails("\"type\":\"BPE\"", "\"type\":\"WordPiece\"", GB_ERR_UNSUPPORTED,
                         "model 'WordPiece' is not supported");
    assert_variant_fails("\"normalizer\":null", "\"normalizer\":{\"type\":\"BertNormalizer\"}", GB_ERR_UNSUPPORTED,
                         "normalizer 'BertNormalizer' is not supported");
    assert_variant_fails("\"normalizer\":null", "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Precompiled\"}]}",
                         GB_ERR_UNSUPPORTED, "normalizer 'Precompiled' is not supported");
    assert_variant_fails("\"pre_tokenizer\":{\"type\":\"Split\"", "\"pre_tokenizer\":{\"type\":\"Whitespace\"",
                         GB_ERR_UNSUPPORTED, "pre_tokenizer 'Whitespace' is not supported");
    assert_variant_fails("\"decoder\":null", "\"decoder\":{\"type\":\"WordPiece\"}", GB_ERR_UNSUPPORTED,
                         "decoder 'WordPiece' is not supported");
    assert_variant_fails("\"post_processor\":null", "\"post_processor\":{\"type\":\"Foo\"}", GB_ERR_UNSUPPORTED,
                         "post_processor 'Foo' is not supported");
    assert_variant_fails("\"normalizer\":null", "\"normalizer\":{}", GB_ERR_FORMAT, "normalizer has no \"type\"");
    assert_variant_fails("{\"String\":\" \"}", "{\"Regex\":\"(\"}", GB_ERR_FORMAT, "regex '(' does not compile");
    assert_variant_fails("{\"String\":\" \"}", "{\"Glob\":\" \"}", GB_ERR_FORMAT, "pattern must be");
    assert_variant_fails("\"behavior\":\"Removed\"", "\"behavior\":\"Dropped\"", GB_ERR_FORMAT,
                         "behavior 'Dropped' is not one of");
    assert_variant_fails("\"post_processor\":null",
                         "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"
                         "\"<s>\",\"type_id\":0}}],\"special_tokens\":{}}",
                         GB_ERR_FORMAT, "names special token '<s>' with no ids");
    assert_variant_fails("\"decoder\":null", "\"decoder\":{\"type\":\"Strip\",\"content\":\"ab\",\"start\":1,\"stop\":0}",
                         GB_ERR_FORMAT, "decoder Strip needs");
    assert_variant_fails("\"decoder\":null", "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"sometimes\"}",
                         GB_ERR_FORMAT, "prepend_scheme must be");

    /* directories and file pairs */
    char *dir = tmp_path("tok_empty_dir");
    mkdir(dir, 0755);
    gbt_fails_with(gb_tokenizer_open(dir) == NULL, GB_ERR_NOT_FOUND, "holds no tokenizer.json and no vocab.json");
    char *sp = tmp_path("tok_empty_dir/tokenizer.model");
    write_file(sp, "not really protobuf");
    gbt_fails_with(gb_tokenizer_open(dir) == NULL, GB_ERR_UNSUPPORTED, "holds only tokenizer.model (SentencePiece)");
    gbt_fails_with(gb_tokenizer_open(sp) == NULL, GB_ERR_UNSUPPORTED, "is a SentencePiece model");
    char *vocab = tmp_path("tok_empty_dir/vocab.json");
    write_file(vocab, "{\"a\": 0, \"b\": 1, \"ab\": 2}");
    gbt_fails_with(gb_tokenizer_open(vocab) == NULL, GB_ERR_NOT_FOUND, "merges.txt beside it");
    char *merges = tmp_path("tok_empty_dir/merges.txt");
    write_file(merges, "#version: 0.2\na b\nb a\n");
    gbt_fails_with(gb_tokenizer_open(dir) == NULL, GB_ERR_FORMAT, "merges.txt: merges: merge 1 ('b' 'a') makes 'ba'");
    write_file(merges, "#version: 0.2\na b\n");
    write_file(vocab, "[\"a\"]");
    gbt_fails_with(gb_tokenizer_open(dir) == NULL, GB_ERR_FORMAT, "vocab.json: not a JSON object");
    write_file(vocab, "{\"a\": 0, \"b\": 1, \"ab\": 2}");
    gb_tokenizer *tok = gb_tokenizer_open(dir);
    gbt_ok(tok);
    /* GPT-2 layout: byte-level; "aba" -> ab (merge 0) + a */
    gbt_assert_ids(tok, "aba", true, IDS(2, 0));
    gb_tokenizer_free(tok);
    remove(merges);
    remove(vocab);
    remove(sp);
    rmdir(dir);
    free(merges);
    free(vocab);
    free(sp);
    free(dir);
}
END_TEST

START_TEST(test_call_errors) {
    gb_tokenizer *tok = open_written("tok_tiny.json", tiny_json, NULL);
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    gbt_fails_with(gb_tokenizer_encode(NULL, "a", 1, true, &ids, &n) != GB_OK, GB_ERR_ARG, "the tokenizer is NULL");
    ck_assert(ids == NULL && n == 0); /* out-params cleared on failure */
    gbt_fails_with(gb_tokenizer_encode(tok, NULL, 3, true, &ids, &n) != GB_OK, GB_ERR_ARG, "text is NULL");
    gbt_fails_with(gb_tokenizer_encode(tok, "a", 1, true, NULL, &n) != GB_OK, GB_ERR_ARG, "ids is NULL");
    /* an empty text is fine, even as NULL with length 0 */
    gbt_ok_status(gb_tokenizer_encode(tok, NULL, 0, true, &ids, &n));
    ck_assert_uint_eq(n, 0);
    free(ids);
    char *text = (char *)1;
    size_t len = 5;
    gbt_fails_with(gb_tokenizer_decode(tok, (const int32_t[]){2, 9}, 2, false, &text, &len) != GB_OK, GB_ERR_INDEX,
                   "id 9 at position 1 is not in the vocabulary");
    ck_assert(text == NULL && len == 0);
    gbt_fails_with(gb_tokenizer_decode(tok, (const int32_t[]){-1}, 1, false, &text, NULL) != GB_OK, GB_ERR_INDEX,
                   "id -1 at position 0");
    gbt_fails_with(gb_tokenizer_decode(tok, NULL, 1, false, &text, NULL) != GB_OK, GB_ERR_ARG, "ids is NULL");
    gbt_ok_status(gb_tokenizer_decode(tok, NULL, 0, false, &text, &len));
    ck_assert(text && text[0] == 0 && len == 0);
    free(text);
    gbt_fails_with(gb_tokenizer_token_to_string(tok, 9) == NULL, GB_ERR_INDEX, "id 9 is not in the vocabulary (size 9)");
    gbt_fails_with(gb_tokenizer_token_to_id(tok, "zz") == -1, GB_ERR_NOT_FOUND, "'zz' is not in the vocabulary");
    gbt_fails_with(gb_tokenizer_set_pad_id(tok, 9) != GB_OK, GB_ERR_INDEX, "id 9 is out of range");
    gb_tensor *bi = (gb_tensor *)1, *bm = (gb_tensor *)1;
    const char *texts[] = {"a"};
    gbt_fails_with(gb_tokenizer_encode_batch(tok, 0, texts, NULL, true, GB_PAD_SIDE_LEFT, &bi, &bm) != GB_OK,
                   GB_ERR_ARG, "batch size 0 must be at least 1");
    ck_assert(bi == NULL && bm == NULL);
    gbt_fails_with(gb_tokenizer_encode_batch(tok, 1, (const char *[]){NULL}, NULL, true, GB_PAD_SIDE_LEFT, &bi, &bm) !=
                       GB_OK,
                   GB_ERR_ARG, "texts[0] is NULL");
    gbt_fails_with(gb_tokenizer_encode_batch(tok, 1, texts, NULL, true, (gb_pad_side)7, &bi, &bm) != GB_OK,
                   GB_ERR_ARG, "pad side 7");
    gb_tokenizer_free(tok);

    /* an unk_token missing from the vocabulary fails when it is needed */
    char *s = tiny_with("\"unk_token\":\"<unk>\"", "\"unk_token\":\"<missing>\"");
    tok = open_written("tok_tiny.json", s, NULL);
    free(s);
    gbt_assert_ids(tok, "ab", true, IDS(5));
    gbt_fails_with(gb_tokenizer_encode(tok, "x", 1, true, &ids, &n) != GB_OK, GB_ERR_FORMAT,
                   "unk_token '<missing>' is not in the vocabulary");
    ck_assert(ids == NULL);
    gb_tokenizer_free(tok);
    gb_tokenizer_free(NULL);
}
END_TEST

/* ---- batches ------------------------------------------------------------ */

/* Encode the n texts (lens as gb_tokenizer_encode_batch takes them) as one
 * batch of width T and require the ids and mask want_ids, want_mask
 * ([n, T] i64); `what` names the padding. */
static void assert_batch(gb_tokenizer *tok, int n, const char *const *texts, const size_t *lens, gb_pad_side side,
                         int64_t T, const int64_t *want_ids, const int64_t *want_mask, const char *what) {
    gb_tensor *ids = NULL, *mask = NULL;
    gbt_ok_status(gb_tokenizer_encode_batch(tok, n, texts, lens, true, side, &ids, &mask));
    gb_tensor *wi = gb_from_data(want_ids, 2, (int64_t[]){n, T}, GB_DTYPE_I64);
    gb_tensor *wm = gb_from_data(want_mask, 2, (int64_t[]){n, T}, GB_DTYPE_I64);
    char msg[64];
    ck_assert_int_eq(gb_tensor_dtype(ids), GB_DTYPE_I64);
    snprintf(msg, sizeof msg, "%s ids", what);
    gbt_assert_close(ids, wi, 0, 0, msg);
    snprintf(msg, sizeof msg, "%s mask", what);
    gbt_assert_close(mask, wm, 0, 0, msg);
    gb_tensor_free(ids), gb_tensor_free(mask), gb_tensor_free(wi), gb_tensor_free(wm);
}

START_TEST(test_batch_padding) {
    gb_tokenizer *tok = open_written("tok_tiny.json", tiny_json, NULL);
    const char *texts[] = {"abc ab", "ab", "xx"};
    /* no pad or eos token: pads with 0. Rows: [2,6,5], [5], [0] */
    assert_batch(tok, 3, texts, NULL, GB_PAD_SIDE_LEFT, 3, (int64_t[]){2, 6, 5, 0, 0, 5, 0, 0, 0},
                 (int64_t[]){1, 1, 1, 0, 0, 1, 0, 0, 1}, "left-padded");
    /* right padding with an explicit pad id, lengths given: "abc" and "a" */
    gbt_ok_status(gb_tokenizer_set_pad_id(tok, 8));
    ck_assert_int_eq(gb_tokenizer_pad_id(tok), 8);
    assert_batch(tok, 2, texts, (const size_t[]){3, 1}, GB_PAD_SIDE_RIGHT, 2, (int64_t[]){2, 6, 2, 8},
                 (int64_t[]){1, 1, 1, 0}, "right-padded");
    gb_tokenizer_free(tok);
}
END_TEST

/* ---- the generated corpus ----------------------------------------------- */

static const char *const gbt_words[] = {
    "the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "his", "on", "be", "at", "by",
    "I", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were",
    "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more",
    "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other",
    "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such",
    "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must",
    "through", "back", "years", "where", "much", "your", "way", "well", "down", "should", "because", "each",
    "just", "those", "people", "Mr", "how", "too", "little", "state", "good", "very", "make", "world", "still",
    "own", "see", "men", "work", "long", "get", "here", "between", "both", "life", "being", "under", "never",
    "day", "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come",
    "since", "against", "go", "came", "right", "used", "take", "three", "Eiffel", "Tower", "Paris", "don't",
    "it's", "we'll", "they're", "I've", "she'd", "I'm", "DON'T", "WE'LL", "antidisestablishmentarianism",
    "tokenization", "GPT", "Llama", "Once", "upon", "girl", "named", "Lily", "hello", "HELLO", "Hello",
};

static const char *const gbt_code[] = {
    "int main(void) {", "    return x->y;", "for (i = 0; i < n; i++)", "def f(x):\n\treturn x**2",
    "if (a == b && c != d) {}", "#include <stdio.h>", "std::vector<int> v;", "console.log(`${a}`);",
    "x += 1  # comment", "SELECT * FROM t WHERE id=42;", "<div class=\"a\">", "0x1F", "a_b_c", "camelCaseName",
    "snake_case_name", "}\n\n", "\t\tpass", "/* c */", "// TODO", "=>", "!==", "::", "[[1, 2], [3, 4]]",
    "{\"key\": [1, 2.5e-3, null]}", "$HOME/.bashrc", "C:\\Windows\\", "https://example.com/a?b=c&d=e",
};

static const char *const gbt_spaces[] = {
    " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\x83", "\xe1\xa0\x8e",
    "\v", "\f", "\xc2\x85", "\xe2\x80\xa8", " \n ", "\t \t", "\r",
};

static const char *const gbt_punct[] = {
    "!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/", ":", ";", "<", "=", ">", "?",
    "@", "[", "\\", "]", "^", "_", "`", "{", "|", "}", "~", "...", "--", "\xe2\x80\x94", "\xe2\x80\x9c",
    "\xe2\x80\x9d", "\xc2\xab", "\xc2\xbb", "\xe2\x80\xa6", "\xc2\xb7", "'s", "'T", "'ll", "'RE", "'ve", "'D",
};

static const char *const gbt_scripts[] = {
    "caf\xc3\xa9", "na\xc3\xafve", "Z\xc3\xbcrich", "S\xc3\xa3o Paulo", "fa\xc3\xa7" "ade", "e\xcc\x81",
    "A\xcc\x8a", "\xef\xac\x81", "\xe2\x85\xab", "\xc2\xb2", "Stra\xc3\x9f" "e", "\xc4\xb0stanbul",
    "\xce\x91\xce\x92\xce\x93 \xce\xb1\xce\xb2\xce\xb3", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
    "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7", "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",
    "\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87",
    "\xe0\xb8\xa0\xe0\xb8\xb2\xe0\xb8\xa9\xe0\xb8\xb2", "\xc3\x85ngstr\xc3\xb6m", "O\xcc\x88" "ffnung",
    "\xe1\xba\xa0", "\xc3\x90\xc3\xb0\xc3\x9e\xc3\xbe",
};

static const char *const gbt_cjk[] = {
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97\xe7\xac\xa6",
    "\xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", "\xe3\x81\xb2\xe3\x82\x89\xe3\x81\x8c\xe3\x81\xaa",
    "\xe3\x82\xab\xe3\x82\xbf\xe3\x82\xab\xe3\x83\x8a", "\xe6\xbc\xa2\xe5\xad\x97", "\xef\xbc\x8c\xe3\x80\x82\xe3\x80\x81",
    "\xef\xbd\x86\xef\xbd\x95\xef\xbd\x8c\xef\xbd\x8c", "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x81",
};

static const char *const gbt_emoji[] = {
    "\xf0\x9f\x8e\x89", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd",
    "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", "\xf0\x9f\x87\xab\xf0\x9f\x87\xb7",
    "\xe2\x9d\xa4\xef\xb8\x8f", "\xf0\x9f\x98\x80\xf0\x9f\x98\x83", "\xf0\x9f\xa4\x96",
};

static const char *const gbt_invalid[] = {
    "\xff", "\xfe", "\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xf0\x9f\x8e",
    "\xc3", "\xe0\x80\x80", "\xf8\x88\x80\x80\x80", "\xbf\xbf",
};

static const char *const gbt_special[] = {
    "<|endoftext|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext",
    "<s", "< s>", "<|end|>", "[INST]", "<mask>", " <mask> ", "<mask>\t", "hello", " hello ", "<0x41>",
    "\xe2\x96\x81", "\xe2\x96\x81\xe2\x96\x81", "\xc4\xa0", "\xc4\xa0\xc4\xa0",
};

static const char *const gbt_control[] = {"\x01", "\x1b[0m", "\x7f", "\x08", "\x1f"};

static const char *const gbt_runs[] = {"aaaaaaa", "!!!!!!", "----", "====", "  \n\n  ", "zzzzzzzzzzzz", "0000000"};

#define GBT_LIST(a) a, (int)(sizeof a / sizeof a[0])

static uint32_t rnd(gb_rng *r, uint32_t n) { return gb_rng_next(r) % n; }

static void add(char **s, size_t *n, size_t *cap, const char *p, size_t len) {
    if (*n + len + 1 > *cap) {
        *cap = (*n + len + 1) * 2;
        *s = realloc(*s, *cap);
    }
    memcpy(*s + *n, p, len);
    *n += len;
}

static void add_str(char **s, size_t *n, size_t *cap, const char *p) { add(s, n, cap, p, strlen(p)); }

static void add_pick(gb_rng *r, char **s, size_t *n, size_t *cap, const char *const *list, int k) {
    add_str(s, n, cap, list[rnd(r, (uint32_t)k)]);
}

/* A code point from assorted blocks, encoded. */
static void add_codepoint(gb_rng *r, char **s, size_t *n, size_t *cap) {
    static const uint32_t blocks[][2] = {
        {0x20, 0x7e},      {0xa0, 0xff},       {0x100, 0x17f},   {0x300, 0x36f}, {0x370, 0x3ff},
        {0x400, 0x4ff},    {0x590, 0x5ff},     {0x600, 0x6ff},   {0x900, 0x97f}, {0xe00, 0xe7f},
        {0x2000, 0x206f},  {0x2200, 0x22ff},   {0x3040, 0x30ff}, {0x4e00, 0x9fff}, {0xac00, 0xd7a3},
        {0xe000, 0xe0ff},  {0xff00, 0xffef},   {0x1f300, 0x1f5ff}, {0x1f900, 0x1f9ff}, {0x10000, 0x1007f},
    };
    int b = (int)rnd(r, sizeof blocks / sizeof blocks[0]);
    uint32_t cp = blocks[b][0] + rnd(r, blocks[b][1] - blocks[b][0] + 1);
    char buf[4];
    int len;
    if (cp < 0x80) buf[0] = (char)cp, len = 1;
    else if (cp < 0x800) buf[0] = (char)(0xc0 | cp >> 6), buf[1] = (char)(0x80 | (cp & 0x3f)), len = 2;
    else if (cp < 0x10000)
        buf[0] = (char)(0xe0 | cp >> 12), buf[1] = (char)(0x80 | (cp >> 6 & 0x3f)), buf[2] = (char)(0x80 | (cp & 0x3f)),
        len = 3;
    else
        buf[0] = (char)(0xf0 | cp >> 18), buf[1] = (char)(0x80 | (cp >> 12 & 0x3f)),
        buf[2] = (char)(0x80 | (cp >> 6 & 0x3f)), buf[3] = (char)(0x80 | (cp & 0x3f)), len = 4;
    add(s, n, cap, buf, (size_t)len);
}

/* One piece of a generated string. */
static void add_piece(gb_rng *r, char **s, size_t *n, size_t *cap) {
    switch (rnd(r, 16)) {
    case 0: case 1: case 2: case 3: { /* prose */
        int words = 1 + (int)rnd(r, 12);
        for (int w = 0; w < words; w++) {
            if (w) add_str(s, n, cap, " ");
            const char *word = gbt_words[rnd(r, sizeof gbt_words / sizeof gbt_words[0])];
            if (w == 0 && word[0] >= 'a' && word[0] <= 'z' && rnd(r, 2)) {
                char c = (char)(word[0] - 32);
                add(s, n, cap, &c, 1);
                add_str(s, n, cap, word + 1);
            } else {
                add_str(s, n, cap, word);
            }
        }
        static const char *const ends[] = {".", "!", "?", ",", ";", "", "", " -"};
        add_pick(r, s, n, cap, GBT_LIST(ends));
        break;
    }
    case 4: add_pick(r, s, n, cap, GBT_LIST(gbt_code)); break;
    case 5: {
        int k = 1 + (int)rnd(r, 4);
        for (int i = 0; i < k; i++) add_pick(r, s, n, cap, GBT_LIST(gbt_spaces));
        break;
    }
    case 6: { /* numbers */
        int digits = 1 + (int)rnd(r, 14);
        if (rnd(r, 4) == 0) add_str(s, n, cap, rnd(r, 2) ? "-" : "$");
        for (int i = 0; i < digits; i++) {
            char c = (char)('0' + rnd(r, 10));
            add(s, n, cap, &c, 1);
            if (i + 1 < digits && rnd(r, 8) == 0) add_str(s, n, cap, rnd(r, 2) ? "," : ".");
        }
        if (rnd(r, 5) == 0) add_str(s, n, cap, rnd(r, 2) ? "%" : "st");
        break;
    }
    case 7: {
        int k = 1 + (int)rnd(r, 5);
        for (int i = 0; i < k; i++) add_pick(r, s, n, cap, GBT_LIST(gbt_punct));
        break;
    }
    case 8: add_pick(r, s, n, cap, GBT_LIST(gbt_scripts)); break;
    case 9: add_pick(r, s, n, cap, GBT_LIST(gbt_cjk)); break;
    case 10: add_pick(r, s, n, cap, GBT_LIST(gbt_emoji)); break;
    case 11: /* ill-formed UTF-8: listed cases and random high bytes */
        if (rnd(r, 2)) {
            add_pick(r, s, n, cap, GBT_LIST(gbt_invalid));
        } else {
            int k = 1 + (int)rnd(r, 3);
            for (int i = 0; i < k; i++) {
                char c = (char)(0x80 + rnd(r, 128));
                add(s, n, cap, &c, 1);
            }
        }
        break;
    case 12: add_pick(r, s, n, cap, GBT_LIST(gbt_special)); break;
    case 13: add_pick(r, s, n, cap, GBT_LIST(gbt_control)); break;
    case 14: {
        int k = 1 + (int)rnd(r, 5);
        for (int i = 0; i < k; i++) add_codepoint(r, s, n, cap);
        break;
    }
    default: add_pick(r, s, n, cap, GBT_LIST(gbt_runs)); break;
    }
}

gbt_corpus gbt_make_corpus(uint64_t seed, int n) {
    gb_rng r = gb_rng_seed(seed);
    gbt_corpus c = {n, calloc((size_t)n, sizeof(char *)), calloc((size_t)n, sizeof(size_t))};
    for (int i = 0; i < n; i++) {
        size_t len = 0, cap = 64;
        char *s = malloc(cap);
        int pieces = i == 0 ? 0 : i % 97 == 0 ? 40 : 1 + (int)rnd(&r, 10);
        if (rnd(&r, 8) == 0) add_str(&s, &len, &cap, " ");
        for (int p = 0; p < pieces; p++) {
            if (p && rnd(&r, 5) < 3) add_str(&s, &len, &cap, " ");
            add_piece(&r, &s, &len, &cap);
        }
        if (rnd(&r, 10) == 0) add_str(&s, &len, &cap, rnd(&r, 2) ? " " : "\n");
        c.text[i] = s;
        c.len[i] = len;
    }
    return c;
}

void gbt_free_corpus(gbt_corpus *c) {
    for (int i = 0; i < c->n; i++) free(c->text[i]);
    free(c->text);
    free(c->len);
}

static void put_hex(FILE *f, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%02x", (unsigned char)s[i]);
}

static char *write_corpus(const gbt_corpus *c, const char *name) {
    char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    for (int i = 0; i < c->n; i++) {
        put_hex(f, c->text[i], c->len[i]);
        fputc('\n', f);
    }
    fclose(f);
    return path;
}

/* ---- oracles ------------------------------------------------------------ */

bool gbt_have_node_oracle(const char *test) {
    const char *dir = getenv("GB_NODE_ORACLE");
    char path[4096];
    snprintf(path, sizeof path, "%s/node_modules/tokenizers/package.json", dir ? dir : "build/oracle-node");
    struct stat st;
    if (stat(path, &st) != 0) {
        gbt_skip(test, "Hugging Face tokenizers for Node is not installed (%s; run sh tools/install-deps.sh --test)", path);
        return false;
    }
    if (system("node --version >/dev/null 2>&1") != 0) {
        gbt_skip(test, "node is not on PATH");
        return false;
    }
    return true;
}

static void run(const char *cmd) {
    int rc = system(cmd);
    ck_assert_msg(rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "oracle command failed (%d): %s", rc, cmd);
}

/* Run hf_oracle.js; the output file's lines. Caller frees lines[0] and lines. */
static char **hf_oracle(const char *mode, const char *tokenizer_json, const char *in, const char *extra, int *nlines,
                        const char *out_name) {
    char *out = tmp_path(out_name);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "node tests/tokenizer/hf_oracle.js %s '%s' '%s' '%s' %s", mode, tokenizer_json, in,
             out, extra ? extra : "");
    if (!strcmp(mode, "vocab"))
        snprintf(cmd, sizeof cmd, "node tests/tokenizer/hf_oracle.js vocab '%s' '%s'", tokenizer_json, out);
    run(cmd);
    char *text = gbt_read_file(out, NULL);
    ck_assert_msg(text != NULL, "oracle wrote no %s", out);
    free(out);
    int cap = 1024, n = 0;
    char **lines = malloc((size_t)cap * sizeof *lines);
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        if (!nl) break;
        *nl = 0;
        if (n == cap) lines = realloc(lines, (size_t)(cap *= 2) * sizeof *lines);
        lines[n++] = p;
        p = nl + 1;
    }
    if (n == 0) {
        free(text);
        lines[0] = NULL;
    }
    ck_assert_msg(n == 0 || lines[0] == text, "oracle output parse");
    *nlines = n;
    return lines;
}

static void free_lines(char **lines, int n) {
    if (n) free(lines[0]);
    free(lines);
}

/* A growing text buffer. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *p, size_t len) { add(&b->s, &b->n, &b->cap, p, len); b->s[b->n] = 0; }
static void sb_clear(sbuf *b) {
    b->n = 0;
    sb_add(b, "", 0);
}
static void sb_hex(sbuf *b, const char *s, size_t n) {
    char h[3];
    for (size_t i = 0; i < n; i++) {
        snprintf(h, sizeof h, "%02x", (unsigned char)s[i]);
        sb_add(b, h, 2);
    }
}
static void sb_ids(sbuf *b, const int32_t *ids, size_t n) {
    char num[16];
    for (size_t i = 0; i < n; i++) {
        snprintf(num, sizeof num, i ? ",%d" : "%d", (int)ids[i]);
        sb_add(b, num, strlen(num));
    }
}
static void sb_i64s(sbuf *b, const int64_t *v, int64_t n) {
    char num[24];
    for (int64_t i = 0; i < n; i++) {
        snprintf(num, sizeof num, i ? ",%lld" : "%lld", (long long)v[i]);
        sb_add(b, num, strlen(num));
    }
}

/* glassbox's line in hf_oracle.js's encode format. */
static void glassbox_line(gb_tokenizer *tok, const char *text, size_t len, sbuf *b) {
    sb_clear(b);
    int32_t *ids = NULL, *plain = NULL;
    size_t n = 0, np = 0;
    gbt_ok_status(gb_tokenizer_encode(tok, text, len, true, &ids, &n));
    gbt_ok_status(gb_tokenizer_encode(tok, text, len, false, &plain, &np));
    sb_ids(b, ids, n);
    sb_add(b, "\t", 1);
    sb_ids(b, plain, np);
    for (int skip = 0; skip < 2; skip++) {
        char *dec = NULL;
        size_t dl = 0;
        gbt_ok_status(gb_tokenizer_decode(tok, ids, n, skip, &dec, &dl));
        sb_add(b, "\t", 1);
        sb_hex(b, dec, dl);
        free(dec);
    }
    sb_add(b, "\t", 1);
    for (size_t i = 0; i < n; i++) {
        const char *t = gb_tokenizer_token_to_string(tok, ids[i]);
        ck_assert_msg(t != NULL, "%s", gb_last_error());
        if (i) sb_add(b, ",", 1);
        sb_hex(b, t, strlen(t));
    }
    free(ids);
    free(plain);
}

void gbt_compare_with_hf(gb_tokenizer *tok, const char *oracle_json, const gbt_corpus *c, const char *name) {
    char cname[256], oname[256];
    snprintf(cname, sizeof cname, "tok_corpus_%s.txt", name);
    snprintf(oname, sizeof oname, "tok_oracle_%s.txt", name);
    char *cpath = write_corpus(c, cname);
    int nlines = 0;
    char **lines = hf_oracle("encode", oracle_json, cpath, NULL, &nlines, oname);
    ck_assert_int_eq(nlines, c->n);
    static const char *const fields[] = {"ids with special tokens", "ids without", "decoded text",
                                         "decoded text skipping special tokens", "token strings"};
    sbuf b = {0};
    int bad = 0;
    for (int i = 0; i < c->n; i++) {
        glassbox_line(tok, c->text[i], c->len[i], &b);
        if (!strcmp(b.s, lines[i])) continue;
        if (bad++ < 5) {
            /* name the first field that differs */
            const char *g = b.s, *o = lines[i];
            int f = 0;
            while (*g && *g == *o) {
                if (*g == '\t') f++;
                g++, o++;
            }
            fprintf(stderr, "%s: string %d (hex ", name, i);
            put_hex(stderr, c->text[i], c->len[i]);
            fprintf(stderr, "): %s differ\n  glassbox: %s\n  hf:       %s\n", fields[f < 5 ? f : 4], b.s, lines[i]);
        }
    }
    ck_assert_msg(bad == 0, "%s: %d of %d strings differ from Hugging Face tokenizers (first ones above)", name, bad,
                  c->n);
    free(b.s);
    free_lines(lines, nlines);
    free(cpath);
}

/* gbt_compare_with_hf on n strings generated from seed. */
static void compare_with_hf(gb_tokenizer *tok, const char *oracle_json, uint64_t seed, int n, const char *name) {
    gbt_corpus c = gbt_make_corpus(seed, n);
    gbt_compare_with_hf(tok, oracle_json, &c, name);
    gbt_free_corpus(&c);
}

/* ---- differential tests: the fixtures ----------------------------------- */

/* Every id's token string, and the vocabulary size, as Hugging Face has
 * them for oracle_json. */
static void compare_vocab_with_hf(gb_tokenizer *tok, const char *oracle_json, const char *name) {
    int nlines = 0;
    char **lines = hf_oracle("vocab", oracle_json, NULL, NULL, &nlines, "tok_oracle_vocab.txt");
    ck_assert_int_eq(nlines, gb_tokenizer_vocab_size(tok) + 1);
    ck_assert_int_eq(atoi(lines[0]), gb_tokenizer_vocab_size(tok));
    sbuf b = {0};
    for (int id = 0; id < gb_tokenizer_vocab_size(tok); id++) {
        const char *t = gb_tokenizer_token_to_string(tok, id);
        sb_clear(&b);
        if (t) sb_hex(&b, t, strlen(t));
        else sb_add(&b, "-", 1);
        ck_assert_msg(!strcmp(b.s, lines[id + 1]), "%s: id %d is %s, Hugging Face has %s", name, id, b.s,
                      lines[id + 1]);
    }
    free(b.s);
    free_lines(lines, nlines);
}

/* The tokenizer in path (a tokenizer.json, or a vocab.json beside its
 * merges.txt) against Hugging Face's reading of oracle_json: the strings of
 * seed, and the vocabulary. */
static void diff_tokenizer(const char *path, const char *oracle_json, uint64_t seed, const char *name) {
    gb_tokenizer *tok = gb_tokenizer_open(path);
    ck_assert_msg(tok != NULL, "%s: %s", path, gb_last_error());
    compare_with_hf(tok, oracle_json, seed, GBT_CORPUS_SIZE, name);
    compare_vocab_with_hf(tok, oracle_json, name);
    gb_tokenizer_free(tok);
}

/* diff_tokenizer on ../shared/rel, Hugging Face reading ../shared/oracle_rel. */
static void diff_fixture(const char *rel, const char *oracle_rel, uint64_t seed, const char *name, const char *test) {
    if (!gbt_have_node_oracle(test)) return;
    char *oracle = gbt_shared_path(oracle_rel, test), *path = oracle ? gbt_shared_path(rel, test) : NULL;
    if (path) diff_tokenizer(path, oracle, seed, name);
    free(path);
    free(oracle);
}

START_TEST(test_oracle_gpt2) {
    diff_fixture("tokenizers/gpt2/tokenizer.json", "tokenizers/gpt2/tokenizer.json", 1, "gpt2", "test_oracle_gpt2");
    /* vocab.json + merges.txt must behave as the equivalent tokenizer.json */
    diff_fixture("tokenizers/gpt2/vocab.json", "tokenizers/gpt2/tokenizer.json", 2, "gpt2_files", "test_oracle_gpt2");
}
END_TEST

/* The same on the bundled model's tokenizer (trained by `make model`), in
 * both of its forms. */
START_TEST(test_oracle_bundled) {
    if (!gbt_have_node_oracle("test_oracle_bundled")) return;
    diff_tokenizer(GBT_BUNDLED "/tokenizer.json", GBT_BUNDLED "/tokenizer.json", 11, "bundled");
    diff_tokenizer(GBT_BUNDLED "/vocab.json", GBT_BUNDLED "/tokenizer.json", 12, "bundled_files");
}
END_TEST

START_TEST(test_oracle_llama2) {
    diff_fixture("tokenizers/llama2/tokenizer.json", "tokenizers/llama2/tokenizer.json", 3, "llama2",
                 "test_oracle_llama2");
}
END_TEST

START_TEST(test_oracle_stories260k) {
    diff_fixture("models/stories260k/tokenizer.json", "models/stories260k/tokenizer.json", 4, "stories260k",
                 "test_oracle_stories260k");
}
END_TEST

START_TEST(test_oracle_tiny) {
    if (!gbt_have_node_oracle("test_oracle_tiny")) return;
    const char *jsons[] = {tiny_json, tiny_affix_json};
    for (int k = 0; k < 2; k++) {
        char name[64], *p = NULL;
        snprintf(name, sizeof name, "tok_tiny_%d.json", k);
        gb_tokenizer *tok = open_written(name, jsons[k], &p);
        snprintf(name, sizeof name, "tiny%d", k);
        compare_with_hf(tok, p, 10 + (uint64_t)k, 500, name);
        gb_tokenizer_free(tok);
        free(p);
    }
}
END_TEST

/* ---- differential tests: variants built from the fixtures --------------- */

/* For the differential tests: a variant of the tokenizer.json at fixture
 * written as tok_NAME.json (head, the fixture's vocab, then its merges, as
 * "a b" strings when legacy_merges) and opened; *path gets the file. */
static gb_tokenizer *open_variant(const char *fixture, const char *name, const char *head, bool legacy_merges,
                                  char **path) {
    size_t len = 0;
    char *text = gbt_read_file(fixture, &len);
    ck_assert_msg(text != NULL, "cannot read %s", fixture);
    gb__json_json *root = gb__json_parse(text, len, fixture);
    gbt_ok(root);
    gb__json_json *model = gb__json_get(root, "model"), *merges = gb__json_get(model, "merges");
    char *vocab = gb__json_print(gb__json_get(model, "vocab"));
    gb__json_json *strings = NULL;
    if (legacy_merges) {
        strings = gb__json_new_array();
        for (int i = 0; i < gb__json_size(merges); i++) {
            const gb__json_json *m = gb__json_at(merges, i);
            char buf[1024];
            snprintf(buf, sizeof buf, "%s %s", gb__json_string(gb__json_at(m, 0)), gb__json_string(gb__json_at(m, 1)));
            ck_assert(gb__json_push(strings, gb__json_new_string(buf)));
        }
    }
    char *mtext = gb__json_print(strings ? strings : merges);
    size_t n = strlen(head) + strlen(vocab) + strlen(mtext) + 16;
    char *json = malloc(n), file[256];
    snprintf(json, n, "%s%s,\"merges\":%s}}", head, vocab, mtext);
    snprintf(file, sizeof file, "tok_%s.json", name);
    gb_tokenizer *tok = open_written(file, json, path);
    free(json);
    free(vocab);
    free(mtext);
    gb__json_free(strings);
    gb__json_free(root);
    free(text);
    return tok;
}

/* open_variant on ../shared/rel; NULL after a SKIP line when node or the
 * fixture is missing. */
static gb_tokenizer *open_shared_variant(const char *rel, const char *test, const char *name, const char *head,
                                         bool legacy_merges, char **path) {
    if (!gbt_have_node_oracle(test)) return NULL;
    char *fixture = gbt_shared_path(rel, test);
    if (!fixture) return NULL;
    gb_tokenizer *tok = open_variant(fixture, name, head, legacy_merges, path);
    free(fixture);
    return tok;
}

#define GBT_ADDED(id, content, sw, ls, rs, norm, special)                                                    \
    "{\"id\":" #id ",\"content\":\"" content "\",\"single_word\":" #sw ",\"lstrip\":" #ls ",\"rstrip\":" #rs \
    ",\"normalized\":" #norm ",\"special\":" #special "}"

/* Llama 3's pre-tokenizer pattern, as written in its tokenizer.json. */
#define GBT_LLAMA3_REGEX                                                                                        \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+" \
    "[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

/* Llama 3's layout (Split with its regex, then ByteLevel without regex;
 * ignore_merges; BOS by a template after a ByteLevel post-processor) on
 * the bundled model's GPT-2-style vocabulary (1024 tokens, <|endoftext|>
 * the last), with reserved special tokens after it. */
static const char llama3_head[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":["
    GBT_ADDED(1023, "<|endoftext|>", false, false, false, false, true) ","
    GBT_ADDED(1024, "<|begin_of_text|>", false, false, false, false, true) ","
    GBT_ADDED(1025, "<|end_of_text|>", false, false, false, false, true) ","
    GBT_ADDED(1026, "<|eot_id|>", false, false, false, false, true) ","
    GBT_ADDED(1027, "<|reserved_special_token_0|>", false, false, false, false, true) "],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\""
    GBT_LLAMA3_REGEX "\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\","
    "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
    "\"post_processor\":{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
    "\"trim_offsets\":false,\"use_regex\":true},{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
    "{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":["
    "{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
    "{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
    "\"special_tokens\":{\"<|begin_of_text|>\":{\"id\":\"<|begin_of_text|>\",\"ids\":[1024],\"tokens\":"
    "[\"<|begin_of_text|>\"]}}}]},"
    "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
    "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":true,\"vocab\":";

START_TEST(test_oracle_llama3_style) {
    if (!gbt_have_node_oracle("test_oracle_llama3_style")) return;
    char *path = NULL;
    gb_tokenizer *tok = open_variant(GBT_BUNDLED "/tokenizer.json", "llama3_style", llama3_head, false, &path);
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 1028);
    ck_assert_int_eq(gb_tokenizer_bos_id(tok), 1024); /* the template's first token */
    ck_assert_int_eq(gb_tokenizer_eos_id(tok), 1023); /* <|endoftext|> comes first among the known names */
    compare_with_hf(tok, path, 5, GBT_CORPUS_SIZE, "llama3_style");
    gb_tokenizer_free(tok);
    free(path);
}
END_TEST

#define GBT_LLAMA_SPECIALS                                                                        \
    GBT_ADDED(0, "<unk>", false, false, false, false, true) ","                                   \
    GBT_ADDED(1, "<s>", false, false, false, false, true) ","                                     \
    GBT_ADDED(2, "</s>", false, false, false, false, true)

#define GBT_BOS_TEMPLATE                                                                                        \
    "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"         \
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}}," \
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":1}},"             \
    "{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],"       \
    "\"tokens\":[\"<s>\"]}}}"

START_TEST(test_oracle_metaspace_first) {
    /* transformers' newer Llama layout: Metaspace with prepend_scheme
     * "first" (no "▁" after a special token), an NFC normalizer, merges as
     * "a b" strings, and added tokens with lstrip/rstrip and normalized. */
    const char *head =
        "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[" GBT_LLAMA_SPECIALS ","
        GBT_ADDED(32000, "<mask>", false, true, true, true, false) ","
        GBT_ADDED(32001, "[INST]", false, false, false, false, false) "],"
        "\"normalizer\":{\"type\":\"NFC\"},"
        "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\","
        "\"split\":false},"
        "\"post_processor\":" GBT_BOS_TEMPLATE ","
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\","
        "\"prepend_scheme\":\"first\",\"split\":false},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]},"
        "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
        "\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":true,\"ignore_merges\":false,\"vocab\":";
    char *path = NULL;
    gb_tokenizer *tok = open_shared_variant("tokenizers/llama2/tokenizer.json", "test_oracle_metaspace_first",
                                     "metaspace_first", head, true, &path);
    if (!tok) return;
    ck_assert_int_eq(gb_tokenizer_vocab_size(tok), 32002);
    compare_with_hf(tok, path, 6, GBT_CORPUS_SIZE, "metaspace_first");
    gb_tokenizer_free(tok);
    free(path);
}
END_TEST

START_TEST(test_oracle_metaspace_always) {
    /* Metaspace "always" with split, after Digits; NFKC, Lowercase and a
     * regex Replace normalizer; a single_word added token; BOS and EOS by
     * template; left truncation to 24 ids; ByteFallback then Metaspace
     * decoding. */
    const char *head =
        "{\"version\":\"1.0\",\"truncation\":{\"direction\":\"Left\",\"max_length\":24,\"strategy\":\"LongestFirst\","
        "\"stride\":0},\"padding\":null,\"added_tokens\":[" GBT_LLAMA_SPECIALS ","
        GBT_ADDED(512, "hello", true, false, false, false, false) "],"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\" \"}]},"
        "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
        "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true}]},"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
        "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\","
        "\"type_id\":0}}],\"pair\":[{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"Sequence\":{\"id\":\"B\","
        "\"type_id\":1}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]},"
        "\"</s>\":{\"id\":\"</s>\",\"ids\":[2],\"tokens\":[\"</s>\"]}}},"
        /* Strip's stop must stay 0: Hugging Face's Strip panics on an empty token when stop > 0 */
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Metaspace\","
        "\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true},{\"type\":\"Strip\","
        "\"content\":\" \",\"start\":1,\"stop\":0},{\"type\":\"Fuse\"}]},"
        "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
        "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":true,\"ignore_merges\":false,\"vocab\":";
    char *path = NULL;
    gb_tokenizer *tok = open_shared_variant("models/stories260k/tokenizer.json", "test_oracle_metaspace_always",
                                            "metaspace_always", head, false, &path);
    if (!tok) return;
    compare_with_hf(tok, path, 7, GBT_CORPUS_SIZE, "metaspace_always");
    gb_tokenizer_free(tok);
    free(path);
}
END_TEST

/* ---- batches, vocabularies and SentencePiece against the oracles --------- */

START_TEST(test_oracle_batch_left_padding) {
    const char *test = "test_oracle_batch_left_padding";
    if (!gbt_have_node_oracle(test)) return;
    /* the Llama 3 layout on the bundled vocabulary (BOS by a template),
     * padded with <|endoftext|> */
    char *path = NULL;
    gb_tokenizer *tok = open_variant(GBT_BUNDLED "/tokenizer.json", "batch", llama3_head, false, &path);
    gbt_corpus c = gbt_make_corpus(8, 16);
    char *cpath = write_corpus(&c, "tok_corpus_batch.txt");
    gbt_ok_status(gb_tokenizer_set_pad_id(tok, 1023));
    int nlines = 0;
    char **lines = hf_oracle("batch", path, cpath, "1023", &nlines, "tok_oracle_batch.txt");
    ck_assert_int_eq(nlines, c.n);
    gb_tensor *ids = NULL, *mask = NULL;
    gbt_ok_status(gb_tokenizer_encode_batch(tok, c.n, (const char *const *)c.text, c.len, true, GB_PAD_SIDE_LEFT,
                                            &ids, &mask));
    int64_t T = gb_tensor_dim(ids, 1);
    const int64_t *iv = gb_tensor_data(ids), *mv = gb_tensor_data(mask);
    sbuf b = {0};
    for (int i = 0; i < c.n; i++) {
        sb_clear(&b);
        sb_i64s(&b, iv + i * T, T);
        sb_add(&b, "\t", 1);
        sb_i64s(&b, mv + i * T, T);
        ck_assert_msg(!strcmp(b.s, lines[i]), "batch row %d:\n  glassbox: %s\n  hf:       %s", i, b.s, lines[i]);
    }
    free(b.s);
    gb_tensor_free(ids);
    gb_tensor_free(mask);
    free_lines(lines, nlines);
    free(cpath);
    gbt_free_corpus(&c);
    gb_tokenizer_free(tok);
    free(path);
}
END_TEST

START_TEST(test_sentencepiece_llama2) {
    /* Llama 2's tokenizer.json against Google's SentencePiece on
     * tokenizer.model, the model it was converted from: the same ids. */
    const char *test = "test_sentencepiece_llama2";
    if (system("/usr/bin/python3 -c 'import sentencepiece' >/dev/null 2>&1") != 0) {
        gbt_skip(test, "/usr/bin/python3 cannot import sentencepiece (python3-sentencepiece)");
        return;
    }
    char *model = gbt_shared_path("tokenizers/llama2/tokenizer.model", test);
    if (!model) return;
    gb_tokenizer *tok = open_shared("tokenizers/llama2/tokenizer.json", test, NULL);
    gbt_corpus c = gbt_make_corpus(9, GBT_CORPUS_SIZE);
    char *cpath = write_corpus(&c, "tok_corpus_sp.txt");
    char *out = tmp_path("tok_oracle_sp.txt");
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/tokenizer/sp_oracle.py '%s' '%s' '%s'", model, cpath, out);
    run(cmd);
    char *text = gbt_read_file(out, NULL);
    ck_assert(text != NULL);
    sbuf b = {0};
    int bad = 0, skipped = 0;
    char *line = text;
    for (int i = 0; i < c.n; i++) {
        char *nl = strchr(line, '\n');
        ck_assert(nl != NULL);
        *nl = 0;
        /* SentencePiece reads "<s>" written in the text as characters, where
         * tokenizer.json matches the special token: those strings differ by
         * design and are checked against Hugging Face instead. */
        if (memmem(c.text[i], c.len[i], "<s>", 3) || memmem(c.text[i], c.len[i], "</s>", 4) ||
            memmem(c.text[i], c.len[i], "<unk>", 5)) {
            line = nl + 1;
            skipped++;
            continue;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        gbt_ok_status(gb_tokenizer_encode(tok, c.text[i], c.len[i], true, &ids, &n));
        char *dec = NULL;
        size_t dl = 0;
        gbt_ok_status(gb_tokenizer_decode(tok, ids, n, true, &dec, &dl));
        sb_clear(&b);
        sb_ids(&b, ids, n);
        sb_add(&b, "\t", 1);
        sb_hex(&b, dec, dl);
        if (strcmp(b.s, line) && bad++ < 5) {
            fprintf(stderr, "sentencepiece: string %d (hex ", i);
            put_hex(stderr, c.text[i], c.len[i]);
            fprintf(stderr, ")\n  glassbox: %s\n  sp:       %s\n", b.s, line);
        }
        free(ids);
        free(dec);
        line = nl + 1;
    }
    ck_assert_msg(bad == 0, "%d of %d strings differ from SentencePiece (first ones above)", bad, c.n - skipped);
    ck_assert_msg(skipped < c.n / 2, "only %d strings compared", c.n - skipped);
    free(b.s);
    free(text);
    free(out);
    free(cpath);
    gbt_free_corpus(&c);
    gb_tokenizer_free(tok);
    free(model);
}
END_TEST

/* ---- the command line --------------------------------------------------- */

/* Run the glassbox binary with args; its stdout (malloc'd) and exit code. */
static char *run_cli(const char *args, int *code) {
    const char *bdir = getenv("GB_BUILD_DIR");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s/glassbox %s 2>&1", bdir ? bdir : "build", args);
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    size_t n = 0, cap = 4096;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 >= cap) out = realloc(out, cap *= 2);
    }
    out[n] = 0;
    int rc = pclose(p);
    *code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return out;
}

/* Run the glassbox binary with args (printf-style) and require its exit
 * code and exactly the output want. */
static void assert_cli(int want_code, const char *want, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void assert_cli(int want_code, const char *want, const char *fmt, ...) {
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int code;
    char *out = run_cli(args, &code);
    ck_assert_msg(code == want_code, "glassbox %s: exit code %d, expected %d (output: %s)", args, code, want_code, out);
    ck_assert_str_eq(out, want);
    free(out);
}

/* On the bundled model's tokenizer: Hugging Face's ids and token strings
 * (tests/oracle/bundled.py), and the text back; the special-token flags on
 * tiny_json with a BOS template (derivations as in test_tiny_derivations). */
START_TEST(test_cli) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_cli");
    if (!o) return;
    gb_tensor *ids = gbt_get(o, "ids.eiffel");
    char *tokens = gbt_get_str(o, "tokens.eiffel"), *save = NULL;
    sbuf want = {0}, list = {0};
    sb_add(&want, "[", 1);
    for (int64_t i = 0; i < gb_tensor_numel(ids); i++) {
        char num[24];
        snprintf(num, sizeof num, i ? ", %lld" : "%lld", (long long)gbt_i64(ids, i));
        sb_add(&want, num, strlen(num));
        sb_add(&list, num + (i ? 2 : 0), strlen(num + (i ? 2 : 0)));
        sb_add(&list, ",", 1);
    }
    sb_add(&want, "]\n[", 3);
    int k = 0;
    for (char *t = strtok_r(tokens, "\n", &save); t; t = strtok_r(NULL, "\n", &save), k++) {
        if (k) sb_add(&want, ", ", 2);
        sb_add(&want, "\"", 1);
        sb_add(&want, t, strlen(t));
        sb_add(&want, "\"", 1);
    }
    sb_add(&want, "]\n", 2);
    assert_cli(0, want.s, "tokenize " GBT_BUNDLED " '%s' --tokens", eiffel);
    /* Byte-level BPE gives the text back; --skip-special drops the
     * <|endoftext|> (1023) after it, which is kept otherwise. */
    assert_cli(0, "The Eiffel Tower is in the city of\n", "detokenize " GBT_BUNDLED " %s1023 --skip-special", list.s);
    assert_cli(0, "The Eiffel Tower is in the city of<|endoftext|>\n", "detokenize " GBT_BUNDLED " '[%s1023]'", list.s);
    char *tiny = tiny_with("\"post_processor\":null", "\"post_processor\":" GBT_BOS_TEMPLATE), *path = tmp_path("tok_cli.json");
    write_file(path, tiny);
    assert_cli(0, "[1, 2, 3]\n", "tokenize %s 'a b'", path); /* <s> by the template, then a, b */
    assert_cli(0, "[2, 3]\n", "tokenize %s 'a b' --no-special", path);
    assert_cli(0, "a bc\n", "detokenize %s 1,2,6 --skip-special", path);
    /* errors: one line on stderr, non-zero exit */
    assert_cli(1,
               "glassbox tokenize: hub: /nonexistent/model: no such file or directory, and not a Hub id (org/name)\n",
               "tokenize /nonexistent/model hello");
    assert_cli(2, "glassbox detokenize: '1,x' is not a list of token ids (at 'x') (see glassbox detokenize --help)\n",
               "detokenize " GBT_BUNDLED " 1,x");
    int code;
    char *out = run_cli("detokenize " GBT_BUNDLED " 1024", &code); /* the vocabulary is 0..1023 */
    ck_assert_int_eq(code, 1);
    ck_assert_msg(strstr(out, "glassbox detokenize: tokenizer_decode: id 1024 at position 0 is not in the vocabulary") ==
                      out && strchr(out, '\n') == out + strlen(out) - 1,
                  "got: %s", out);
    free(out);
    out = run_cli("tokenize", &code);
    ck_assert_int_eq(code, 2);
    ck_assert_msg(strncmp(out, "glassbox tokenize: give one of TEXT", 32) == 0, "got: %s", out);
    free(out);
    free(path), free(tiny);
    free(list.s), free(want.s), free(tokens);
    gb_tensor_free(ids);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_tokenizer(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("known");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_known_gpt2);
    tcase_add_test(tc, test_known_llama2);
    tcase_add_test(tc, test_known_stories260k);
    tcase_add_test(tc, test_tiny_derivations);
    tcase_add_test(tc, test_sparse_ids);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_call_errors);
    tcase_add_test(tc, test_batch_padding);
    tcase_add_test(tc, test_cli);
    suite_add_tcase(s, tc);
    TCase *oracle = tcase_create("oracle");
    tcase_set_timeout(oracle, 900);
    tcase_add_test(oracle, test_oracle_tiny);
    tcase_add_test(oracle, test_oracle_gpt2);
    tcase_add_test(oracle, test_oracle_bundled);
    tcase_add_test(oracle, test_oracle_llama2);
    tcase_add_test(oracle, test_oracle_stories260k);
    tcase_add_test(oracle, test_oracle_llama3_style);
    tcase_add_test(oracle, test_oracle_metaspace_first);
    tcase_add_test(oracle, test_oracle_metaspace_always);
    tcase_add_test(oracle, test_oracle_batch_left_padding);
    tcase_add_test(oracle, test_sentencepiece_llama2);
    suite_add_tcase(s, oracle);
    return s;
}
