/* Shared by tests/test_tokenizer.c (which defines these) and
 * tests/test_tokenizer_train.c: generated strings, and the differential
 * test against Hugging Face's tokenizers (Node binding, hf_oracle.js). */
#ifndef GB_TEST_TOKENIZER_H
#define GB_TEST_TOKENIZER_H

#include "gbtest.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* Strings per differential test. Under valgrind (make check VALGRIND=1),
 * which looks for memory errors rather than wrong ids, a smaller corpus
 * walks the same code paths in a few minutes instead of a quarter hour. */
#define GBT_CORPUS_SIZE (RUNNING_ON_VALGRIND ? 400 : 2000)

/* n strings of len[i] bytes each (malloc'd). */
typedef struct gbt_corpus {
    int n;
    char **text;
    size_t *len;
} gbt_corpus;

/* n strings from seed: prose, code, whitespace runs, digits, punctuation,
 * accented, CJK and emoji text, control characters, ill-formed UTF-8, text
 * spelling special tokens. The first is empty, a few are long, the rest mix
 * 1-10 pieces, joined by a space or nothing. */
gbt_corpus gbt_make_corpus(uint64_t seed, int n);
void gbt_free_corpus(gbt_corpus *c);

/* Fail unless text encodes (with special tokens when special) as the nwant
 * ids want; IDS(1, 2, 3) gives both arguments. */
void gbt_assert_ids(gb_tokenizer *tok, const char *text, bool special, const int32_t *want, size_t nwant);
#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

/* Whether node and Hugging Face's binding are installed; a SKIP line naming
 * test if not. */
bool gbt_have_node_oracle(const char *test);

/* Encode and decode every string of c with tok and require hf_oracle.js's
 * exact line for it (ids with and without special tokens, decoded text with
 * and without them, token strings); oracle_json is the file Hugging Face
 * loads, name names the scratch files and the failures. */
void gbt_compare_with_hf(gb_tokenizer *tok, const char *oracle_json, const gbt_corpus *c, const char *name);

#endif
