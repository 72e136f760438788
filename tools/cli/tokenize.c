/* `glassbox tokenize` and `glassbox detokenize`: a model's tokenizer from the
 * command line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define TOK_OPTS(X)                                                                                                  \
    X(TOK_FILE, "file", 'f', STR, 0, 0, NULL, false, 0, "PATH", "read the text from PATH instead of TEXT")         \
    X(TOK_NO_SPECIAL, "no-special", 0, FLAG, 0, 0, NULL, false, 0, NULL,                                           \
      "leave out the special tokens the tokenizer adds (e.g. BOS)")                                                \
    X(TOK_TOKENS, "tokens", 0, FLAG, 0, 0, NULL, false, 0, NULL, "also print the token strings")                   \
    GB_CLI_OPT_TOKENIZER(X, TOK_TOKENIZER)                                                                           \
    GB_CLI_OPT_JSON(X, TOK_JSON)
enum { TOK_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt tok_opts[] = {TOK_OPTS(GB_CLI_OPT_INIT)};

/* The input text: TEXT, standard input ('-') or --file (malloc'd). */
static char *read_text(const char *text, const char *file, size_t *len) {
    if (!file && strcmp(text, "-")) {
        *len = strlen(text);
        return strdup(text);
    }
    FILE *f = file ? fopen(file, "rb") : stdin;
    char *input = f ? gb_cli_slurp(f, len) : NULL;
    int e = errno;
    if (f && f != stdin) fclose(f);
    if (!input) gb_cli_fail("tokenize", "cannot read %s: %s", file ? file : "standard input", strerror(e));
    return input;
}

static int tokenize(const gb_cli_args *a) {
    const char *file = gb_cli_str(a, TOK_FILE), *model = NULL, *text = NULL;
    /* one argument is the text (or, with --file, the model) */
    if (a->npos == 2) model = a->pos[0], text = a->pos[1];
    else if (a->npos == 1 && file) model = a->pos[0];
    else if (a->npos == 1) text = a->pos[0];
    if (!text == !file) return gb_cli_usage_error("tokenize", "give one of TEXT or --file PATH");
    size_t len = 0;
    char *input = read_text(text, file, &len);
    if (!input) return GB_CLI_ERROR;
    gb_tokenizer *tok = gb_cli_open_tokenizer("tokenize", model, gb_cli_str(a, TOK_TOKENIZER));
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = GB_CLI_OK;
    if (!tok) rc = GB_CLI_ERROR;
    else if (gb_tokenizer_encode(tok, input, len, !gb_cli_given(a, TOK_NO_SPECIAL), &ids, &n) != GB_OK)
        rc = gb_cli_fail("tokenize", "%s", gb_last_error());
    bool json = gb_cli_given(a, TOK_JSON), tokens = gb_cli_given(a, TOK_TOKENS) || json;
    if (!rc) {
        printf(json ? "{\"ids\": [" : "[");
        for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", (int)ids[i]);
        printf("]");
    }
    if (!rc && tokens) {
        printf(json ? ", \"tokens\": [" : "\n[");
        for (size_t i = 0; i < n; i++) printf(i ? ", " : ""), gb_cli_json_string(stdout, gb_tokenizer_token_to_string(tok, ids[i]));
        printf("]");
    }
    if (!rc) printf(json ? "}\n" : "\n");
    free(ids);
    free(input);
    gb_tokenizer_free(tok);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_tokenize = {
    "tokenize", tokenize, "[MODEL] [TEXT]", 0, 2, "print the token ids of TEXT",
    "MODEL is a model directory or a tokenizer file (tokenizer.json, or vocab.json with merges.txt); without "
    "it, the bundled model's tokenizer. TEXT '-' reads standard input. Prints the ids as a JSON array "
    "(--tokens adds a line with the token strings).",
    tok_opts, sizeof tok_opts / sizeof *tok_opts};

#define DETOK_OPTS(X)                                                                                                \
    X(DETOK_SKIP, "skip-special", 0, FLAG, 0, 0, NULL, false, 0, NULL, "leave out special tokens")                 \
    GB_CLI_OPT_TOKENIZER(X, DETOK_TOKENIZER)                                                                         \
    GB_CLI_OPT_JSON(X, DETOK_JSON)
enum { DETOK_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt detok_opts[] = {DETOK_OPTS(GB_CLI_OPT_INIT)};

/* Parse "1,2,3", "[1, 2, 3]" or "1 2 3"; NULL (and the bad part) on error. */
static int32_t *parse_id_list(const char *s, size_t *n, const char **bad) {
    int32_t *ids = malloc((strlen(s) / 2 + 1) * sizeof *ids);
    *n = 0;
    const char *p = s;
    while (ids && *p) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX ||
            !(*end == 0 || *end == ',' || *end == ' ' || *end == ']' || *end == '\t' || *end == '\n')) {
            *bad = p;
            free(ids);
            return NULL;
        }
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
    return ids;
}

static int detokenize(const gb_cli_args *a) {
    const char *model = a->npos == 2 ? a->pos[0] : NULL, *list = a->pos[a->npos - 1];
    size_t n = 0;
    const char *bad = NULL;
    int32_t *ids = parse_id_list(list, &n, &bad);
    if (!ids) return gb_cli_usage_error("detokenize", "'%s' is not a list of token ids (at '%s')", list, bad ? bad : "");
    gb_tokenizer *tok = gb_cli_open_tokenizer("detokenize", model, gb_cli_str(a, DETOK_TOKENIZER));
    char *text = NULL;
    size_t len = 0;
    int rc = GB_CLI_OK;
    if (!tok) rc = GB_CLI_ERROR;
    else if (gb_tokenizer_decode(tok, ids, n, gb_cli_given(a, DETOK_SKIP), &text, &len) != GB_OK)
        rc = gb_cli_fail("detokenize", "%s", gb_last_error());
    else if (gb_cli_given(a, DETOK_JSON)) printf("{\"text\": "), gb_cli_json_string(stdout, text), printf("}\n");
    else fwrite(text, 1, len, stdout), putchar('\n');
    free(text);
    free(ids);
    gb_tokenizer_free(tok);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_detokenize = {
    "detokenize", detokenize, "[MODEL] IDS", 1, 2, "print the text of token ids",
    "IDS is a list such as 1,2,3 or \"[1, 2, 3]\". Without MODEL, the bundled model's tokenizer.",
    detok_opts, sizeof detok_opts / sizeof *detok_opts};
