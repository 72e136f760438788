/* `glassbox train-tokenizer`: a byte-level BPE tokenizer trained on a text
 * file (gb_tokenizer_train_bpe). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "glassbox.h"

static const char gb__train_tokenizer_usage[] =
    "usage: glassbox train-tokenizer CORPUS --vocab N --out DIR [--special TOKEN]...\n"
    "Trains a byte-level BPE tokenizer with GPT-2's layout on the text file CORPUS ('-' reads standard\n"
    "input) and writes tokenizer.json, vocab.json, merges.txt, tokenizer_config.json and\n"
    "special_tokens_map.json into DIR (created when missing). N counts every token: the 256 byte\n"
    "tokens, the merged tokens and the special tokens. --special replaces the default special token,\n"
    "<|endoftext|> (the first one given is BOS and EOS); repeat it for more.\n";

int gb_cli_train_tokenizer(int argc, char **argv) {
    const char *corpus = NULL, *out = NULL;
    const char **special = calloc((size_t)argc + 2, sizeof *special);
    int nspecial = 0, vocab = -1, rc = 2;
    char *text = NULL;
    if (!special) {
        fputs("glassbox train-tokenizer: out of memory\n", stderr);
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(gb__train_tokenizer_usage, stdout);
            rc = 0;
            goto done;
        } else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) {
            char *end;
            errno = 0;
            long v = strtol(argv[++i], &end, 10);
            if (errno || end == argv[i] || *end || v < 0 || v > 1 << 30) {
                fprintf(stderr, "glassbox train-tokenizer: --vocab '%s' is not a vocabulary size\n%s", argv[i],
                        gb__train_tokenizer_usage);
                goto done;
            }
            vocab = (int)v;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--special") && i + 1 < argc) {
            special[nspecial++] = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "glassbox train-tokenizer: unknown option '%s'\n%s", argv[i], gb__train_tokenizer_usage);
            goto done;
        } else if (!corpus) {
            corpus = argv[i];
        } else {
            fprintf(stderr, "glassbox train-tokenizer: unexpected argument '%s'\n%s", argv[i],
                    gb__train_tokenizer_usage);
            goto done;
        }
    }
    if (!corpus || !out || vocab < 0) {
        fprintf(stderr, "glassbox train-tokenizer: give CORPUS, --vocab N and --out DIR\n%s",
                gb__train_tokenizer_usage);
        goto done;
    }
    if (!nspecial) special[nspecial++] = "<|endoftext|>";
    rc = 1;
    size_t len = 0;
    FILE *f = strcmp(corpus, "-") ? fopen(corpus, "rb") : stdin;
    if (f) text = gb_cli_slurp(f, &len);
    int e = errno;
    if (f && f != stdin) fclose(f);
    if (!text) {
        fprintf(stderr, "glassbox train-tokenizer: cannot read %s: %s\n", f == stdin ? "standard input" : corpus,
                strerror(e));
        goto done;
    }
    if (gb_tokenizer_train_bpe(text, len, vocab, special, out) != GB_OK) {
        fprintf(stderr, "glassbox train-tokenizer: %s\n", gb_last_error());
        goto done;
    }
    gb_tokenizer *tok = gb_tokenizer_open(out);
    if (!tok) {
        fprintf(stderr, "glassbox train-tokenizer: %s\n", gb_last_error());
        goto done;
    }
    printf("%s: %d tokens from %zu bytes of %s\n", out, (int)gb_tokenizer_vocab_size(tok), len, corpus);
    gb_tokenizer_free(tok);
    rc = 0;
done:
    free(text);
    free(special);
    return rc;
}
