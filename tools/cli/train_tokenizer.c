/* `glassbox train-tokenizer`: a byte-level BPE tokenizer trained on a text
 * file (gb_tokenizer_train_bpe). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define TT_OPTS(X)                                                                                                   \
    X(TT_VOCAB, "vocab", 0, INT, 0, 1 << 30, NULL, false, 0, "N",                                                \
      "tokens in all: the 256 byte tokens, the merged tokens and the special tokens (required)")                   \
    X(TT_OUT, "out", 'o', STR, 0, 0, NULL, false, 0, "DIR", "where the tokenizer files go, created when missing (required)") \
    X(TT_SPECIAL, "special", 0, STR, 0, 0, NULL, true, 0, "TOKEN",                                                 \
      "a special token instead of <|endoftext|>; the first is BOS and EOS")                                        \
    GB_CLI_OPT_JSON(X, TT_JSON)
enum { TT_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt tt_opts[] = {TT_OPTS(GB_CLI_OPT_INIT)};

static int train_tokenizer(const gb_cli_args *a) {
    const char *corpus = a->pos[0], *out = gb_cli_str(a, TT_OUT);
    if (!out || !gb_cli_given(a, TT_VOCAB)) return gb_cli_usage_error("train-tokenizer", "give --vocab N and --out DIR");
    const char **special = calloc((size_t)a->nseq + 2, sizeof *special);
    int nspecial = 0, rc = GB_CLI_ERROR;
    for (int i = 0; special && i < a->nseq; i++)
        if (a->seq[i].opt == TT_SPECIAL) special[nspecial++] = a->seq[i].str;
    if (special && !nspecial) special[nspecial++] = "<|endoftext|>";
    size_t len = 0;
    FILE *f = strcmp(corpus, "-") ? fopen(corpus, "rb") : stdin;
    char *text = f && special ? gb_cli_slurp(f, &len) : NULL;
    int e = errno;
    if (f && f != stdin) fclose(f);
    gb_tokenizer *tok = NULL;
    if (!text) gb_cli_fail("train-tokenizer", "cannot read %s: %s", f == stdin ? "standard input" : corpus, strerror(e));
    else if (gb_tokenizer_train_bpe(text, len, (int)gb_cli_int(a, TT_VOCAB), special, out) != GB_OK ||
             !(tok = gb_tokenizer_open(out)))
        gb_cli_fail("train-tokenizer", "%s", gb_last_error());
    else rc = GB_CLI_OK;
    if (!rc && gb_cli_given(a, TT_JSON)) {
        printf("{\"out\": ");
        gb_cli_json_string(stdout, out);
        printf(", \"vocab_size\": %d, \"corpus_bytes\": %zu}\n", (int)gb_tokenizer_vocab_size(tok), len);
    } else if (!rc) {
        printf("%s: %d tokens from %zu bytes of %s\n", out, (int)gb_tokenizer_vocab_size(tok), len, corpus);
    }
    gb_tokenizer_free(tok);
    free(text);
    free(special);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_train_tokenizer = {
    "train-tokenizer", train_tokenizer, "CORPUS", 1, 1, "train a byte-level BPE tokenizer",
    "Trains a tokenizer with GPT-2's layout on the text file CORPUS ('-' reads standard input) and writes "
    "tokenizer.json, vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into DIR.",
    tt_opts, sizeof tt_opts / sizeof *tt_opts};
