/* `glassbox tokenize` and `glassbox detokenize`: a model's tokenizer from the
 * command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "glassbox.h"

static const char gb__tokenize_usage[] =
    "usage: glassbox tokenize [MODEL] TEXT [--no-special] [--tokens]\n"
    "       glassbox tokenize [MODEL] --file PATH [--no-special] [--tokens]\n"
    "MODEL is a model directory or a tokenizer file (tokenizer.json, or vocab.json with merges.txt);\n"
    "without it, the bundled model's tokenizer.\n"
    "TEXT '-' reads standard input. Prints the ids as a JSON array; --tokens adds a line with the\n"
    "token strings; --no-special leaves out the special tokens the tokenizer adds (e.g. BOS).\n";

static const char gb__detokenize_usage[] =
    "usage: glassbox detokenize [MODEL] IDS [--skip-special]\n"
    "Without MODEL, the bundled model's tokenizer.\n"
    "IDS is a list such as 1,2,3 or \"[1, 2, 3]\". Prints the decoded text.\n";

char *gb_cli_slurp(FILE *f, size_t *len) {
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

/* s as a JSON string literal. */
static void gb__print_json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p == '\n') fputs("\\n", stdout);
        else if (*p == '\t') fputs("\\t", stdout);
        else if (*p == '\r') fputs("\\r", stdout);
        else if (*p < 0x20 || *p == 0x7f) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

/* MODEL as a path (directory or tokenizer file), or else a Hub id in the
 * local Hugging Face cache (its snapshot directory). */
static gb_tokenizer *open_tokenizer(const char *model) {
    struct stat sb;
    if (stat(model, &sb) == 0) return gb_tokenizer_open(model);
    gb_hf_files f;
    if (gb_hf_resolve(model, &f) != GB_OK) return NULL;
    gb_tokenizer *tok = gb_tokenizer_open(f.dir);
    gb_hf_files_free(&f);
    return tok;
}

int gb_cli_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    bool special = true, tokens = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--no-special")) special = false;
        else if (!strcmp(argv[i], "--tokens")) tokens = true;
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(gb__tokenize_usage, stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "glassbox tokenize: unknown option '%s'\n%s", argv[i], gb__tokenize_usage);
            return 2;
        } else if (!model) model = argv[i];
        else if (!text) text = argv[i];
        else {
            fprintf(stderr, "glassbox tokenize: unexpected argument '%s'\n%s", argv[i], gb__tokenize_usage);
            return 2;
        }
    }
    if (model && !text && !file) text = model, model = NULL; /* one argument: the text */
    if (!text == !file) {
        fprintf(stderr, "glassbox tokenize: give one of TEXT or --file PATH\n%s", gb__tokenize_usage);
        return 2;
    }
    if (!(model = gb_cli_model("tokenize", model))) return 1;
    char *input = NULL;
    size_t len = 0;
    if (file || !strcmp(text, "-")) {
        FILE *f = file ? fopen(file, "rb") : stdin;
        if (f) input = gb_cli_slurp(f, &len);
        int e = errno;
        if (f && f != stdin) fclose(f);
        if (!input) {
            fprintf(stderr, "glassbox tokenize: cannot read %s: %s\n", file ? file : "standard input", strerror(e));
            return 1;
        }
    }
    gb_tokenizer *tok = open_tokenizer(model);
    int32_t *ids = NULL;
    size_t n = 0;
    if (!tok || gb_tokenizer_encode(tok, input ? input : text, input ? len : strlen(text), special, &ids, &n) != GB_OK) {
        fprintf(stderr, "glassbox tokenize: %s\n", gb_last_error());
        gb_tokenizer_free(tok);
        free(input);
        return 1;
    }
    putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? ", %d" : "%d", (int)ids[i]);
    puts("]");
    if (tokens) {
        putchar('[');
        for (size_t i = 0; i < n; i++) {
            if (i) fputs(", ", stdout);
            gb__print_json_string(gb_tokenizer_token_to_string(tok, ids[i]));
        }
        puts("]");
    }
    free(ids);
    free(input);
    gb_tokenizer_free(tok);
    return 0;
}

/* Parse "1,2,3", "[1, 2, 3]" or "1 2 3"; NULL (and the bad part) on error. */
static int32_t *gb__parse_ids(const char *s, size_t *n, const char **bad) {
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

int gb_cli_detokenize(int argc, char **argv) {
    const char *model = NULL, *list = NULL;
    bool skip = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--skip-special")) skip = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(gb__detokenize_usage, stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "glassbox detokenize: unknown option '%s'\n%s", argv[i], gb__detokenize_usage);
            return 2;
        } else if (!model) model = argv[i];
        else if (!list) list = argv[i];
        else {
            fprintf(stderr, "glassbox detokenize: unexpected argument '%s'\n%s", argv[i], gb__detokenize_usage);
            return 2;
        }
    }
    if (model && !list) list = model, model = NULL; /* one argument: the ids */
    if (!list) {
        fprintf(stderr, "glassbox detokenize: give IDS\n%s", gb__detokenize_usage);
        return 2;
    }
    if (!(model = gb_cli_model("detokenize", model))) return 1;
    size_t n = 0;
    const char *bad = NULL;
    int32_t *ids = gb__parse_ids(list, &n, &bad);
    if (!ids) {
        fprintf(stderr, "glassbox detokenize: '%s' is not a list of token ids (at '%s')\n", list, bad ? bad : "");
        return 1;
    }
    gb_tokenizer *tok = open_tokenizer(model);
    char *text = NULL;
    size_t len = 0;
    if (!tok || gb_tokenizer_decode(tok, ids, n, skip, &text, &len) != GB_OK) {
        fprintf(stderr, "glassbox detokenize: %s\n", gb_last_error());
        gb_tokenizer_free(tok);
        free(ids);
        return 1;
    }
    fwrite(text, 1, len, stdout);
    putchar('\n');
    free(text);
    free(ids);
    gb_tokenizer_free(tok);
    return 0;
}
