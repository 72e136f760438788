/* The CLI's argument parsing (tools/cli): the first byte picks a command of
 * GB_CLI_COMMANDS (its low 7 bits, modulo their number) and a mode (its top
 * bit); the rest are the arguments, separated by NUL bytes.
 *
 * Mode 0 runs the table-driven parser (tools/cli/opt.c, gb_cli_parse) on
 * the command's own option table, every command's, and reads back each
 * option through the accessors the commands use: it parses, prints help
 * (status -1) or refuses the arguments (GB_CLI_USAGE), and never runs the
 * command (session and serve included: their steps are repeatable options
 * read in order).
 *
 * Mode 1 runs the CLI as the binary would (its main renamed gb_cli_main),
 * for the commands that only read (not demo, train, train-tokenizer, which
 * write files, nor serve, which listens), with GLASSBOX_MODEL pointing
 * nowhere: a command prints its help (exit status 0), refuses its arguments
 * (2), or gets past them and fails to open a model (1), so what is fuzzed
 * is what each command checks after parsing, never a model. Run with
 * -close_fd_mask=3 (the CLI prints). See tests/fuzz/fuzz.h. */
#include <unistd.h>

#include "fuzz.h"
#include "tools/cli/cli.h"

int gb_cli_main(int argc, char **argv);
int gb_fuzz_cli(const uint8_t *data, size_t size);

static const gb_cli_cmd *const gb__fuzz_cli_cmds[] = {
#define GB__X(id) &gb_cli_cmd_##id,
    GB_CLI_COMMANDS(GB__X)
#undef GB__X
};

/* Whether mode 1 may run the whole command: it reads, and stops at the model. */
static bool gb__fuzz_cli_reads_only(const gb_cli_cmd *c) {
    static const char *const writers[] = {"demo", "serve", "train", "train-tokenizer"};
    for (size_t i = 0; i < sizeof writers / sizeof *writers; i++)
        if (!strcmp(c->name, writers[i])) return false;
    return true;
}

/* Parse argv with c's table and read every option back as a command would. */
static int gb__fuzz_cli_parse(const gb_cli_cmd *c, int argc, char **argv) {
    gb_cli_args a;
    int rc = gb_cli_parse(c, argc, argv, &a);
    GB_FUZZ_CHECK(rc == GB_CLI_OK || rc == GB_CLI_USAGE || rc == -1);
    if (rc != GB_CLI_OK) return 0; /* freed by the parser */
    GB_FUZZ_CHECK(a.npos >= c->min_args && a.npos <= c->max_args);
    for (int i = 0; i < c->nopts; i++) {
        const gb_cli_arg *g = gb_cli_get(&a, i);
        GB_FUZZ_CHECK(!gb_cli_given(&a, i) || g); /* given: it has a value */
        GB_FUZZ_CHECK(c->opts[i].repeat || a.count[i] <= 1);
        if (!g) continue;
        GB_FUZZ_CHECK(g->opt == i);
        if (c->opts[i].kind == GB_CLI_INT || c->opts[i].kind == GB_CLI_NUM)
            GB_FUZZ_CHECK(gb_cli_num(&a, i) >= c->opts[i].min && gb_cli_num(&a, i) <= c->opts[i].max);
        if (c->opts[i].kind == GB_CLI_IDS) GB_FUZZ_CHECK(g->nids >= 1 && g->ids);
        if (c->opts[i].kind != GB_CLI_FLAG) GB_FUZZ_CHECK(gb_cli_str(&a, i) != NULL);
        (void)gb_cli_int(&a, i);
    }
    for (int i = 0; i < a.nseq; i++) GB_FUZZ_CHECK(a.seq[i].opt >= 0 && a.seq[i].opt < c->nopts);
    gb_cli_args_free(&a);
    return 0;
}

int gb_fuzz_cli(const uint8_t *data, size_t size) {
    enum { NCMDS = sizeof gb__fuzz_cli_cmds / sizeof *gb__fuzz_cli_cmds };
    if (size < 1) return 0;
    const gb_cli_cmd *c = gb__fuzz_cli_cmds[(data[0] & 0x7f) % NCMDS];
    bool whole = data[0] & 0x80;
    if (whole && !gb__fuzz_cli_reads_only(c)) return 0; /* every command parses through its table */
    setenv("GLASSBOX_MODEL", "/nonexistent/glassbox-fuzz-model", 1);
    char *text = gb_fuzz_text(data + 1, size - 1);
    if (!text) return 0;
    size_t n = size - 1, argc = 2;
    for (size_t i = 0; i < n; i++) argc += text[i] == 0;
    if (n) argc++;
    char **argv = calloc(argc + 1, sizeof *argv);
    if (!argv) return free(text), 0;
    argv[0] = "glassbox";
    argv[1] = (char *)c->name;
    for (size_t i = 0, k = 2; n && k < argc; k++) { /* the arguments point into text */
        argv[k] = text + i;
        i += strlen(text + i) + 1;
    }
    optind = 0; /* getopt's state, fresh for each run (glibc) */
    if (whole) {
        int rc = gb_cli_main((int)argc, argv);
        GB_FUZZ_CHECK(rc >= 0 && rc <= 2); /* 0: help */
        fflush(stdout);
    } else {
        gb__fuzz_cli_parse(c, (int)argc - 1, argv + 1); /* argv[0] is the command name, for getopt */
    }
    free(argv);
    free(text);
    return 0;
}

GB_FUZZ_ENTRY(cli)
