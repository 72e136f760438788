/* The CLI's argument parsing (tools/cli): the first byte picks a command
 * (those that only read: not demo, train or train-tokenizer), the rest are
 * its arguments separated by NUL bytes. The CLI runs as the binary would
 * (its main renamed gb_cli_main) with GLASSBOX_MODEL pointing nowhere, so a
 * command prints its help (exit status 0), refuses its arguments (2), or
 * gets past them and fails to open a model (1): what is fuzzed is the
 * parsing and the messages, never a model. Run with -close_fd_mask=3 (the CLI prints).
 * See tests/fuzz/fuzz.h. */
#include <unistd.h>

#include "fuzz.h"

int gb_cli_main(int argc, char **argv);
int gb_fuzz_cli(const uint8_t *data, size_t size);

int gb_fuzz_cli(const uint8_t *data, size_t size) {
    static const char *const commands[] = {"info",  "run",  "generate", "trace",    "lens",
                                           "patch", "attn", "tokenize", "detokenize"};
    if (size < 1) return 0;
    setenv("GLASSBOX_MODEL", "/nonexistent/glassbox-fuzz-model", 1);
    char *text = gb_fuzz_text(data + 1, size - 1);
    if (!text) return 0;
    size_t n = size - 1, argc = 2;
    for (size_t i = 0; i < n; i++) argc += text[i] == 0;
    if (n) argc++;
    char **argv = calloc(argc + 1, sizeof *argv);
    if (!argv) return free(text), 0;
    argv[0] = "glassbox";
    argv[1] = (char *)commands[data[0] % (sizeof commands / sizeof *commands)];
    for (size_t i = 0, k = 2; n && k < argc; k++) { /* the arguments point into text */
        argv[k] = text + i;
        i += strlen(text + i) + 1;
    }
    optind = 0; /* getopt's state, fresh for each run (glibc) */
    int rc = gb_cli_main((int)argc, argv);
    GB_FUZZ_CHECK(rc >= 0 && rc <= 2); /* 0: help */
    fflush(stdout);
    free(argv);
    free(text);
    return 0;
}

GB_FUZZ_ENTRY(cli)
