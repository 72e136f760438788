/* glassbox CLI entry point: dispatches to the subcommand table in cli.h. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    gb_cli_fn fn;
    const char *help;
} gb_commands[] = {
#define GB__X(name, fn, help) {#name, fn, help},
    GB_CLI_COMMANDS(GB__X)
#undef GB__X
};

static void usage(FILE *f) {
    fprintf(f, "usage: glassbox COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof gb_commands / sizeof gb_commands[0]; i++)
        fprintf(f, "  %-12s %s\n", gb_commands[i].name, gb_commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof gb_commands / sizeof gb_commands[0]; i++)
        if (!strcmp(argv[1], gb_commands[i].name)) return gb_commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "glassbox: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
