/* The glassbox command line: one function per subcommand. */
#ifndef GB_CLI_H
#define GB_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Each subcommand gets argv after its own name and returns the exit code. On
 * failure it prints one line to stderr ("glassbox NAME: message"). */
typedef int (*gb_cli_fn)(int argc, char **argv);

/* X-macro of subcommands: name, function, one-line help. MODEL, when left
 * out, is the bundled model (gb_cli_default_model). */
#define GB_CLI_COMMANDS(X)                                                   \
    X(demo, gb_cli_demo, "[MODEL]: look inside a model, step by step (nnsight's walkthrough)") \
    X(info, gb_cli_info, "[MODEL]: print the module tree, parameter count and config") \
    X(run, gb_cli_run, "[MODEL] (--ids 1,2,3 | -p TEXT) --out F.safetensors [--hidden]: one forward pass") \
    X(generate, gb_cli_generate, "[MODEL] [--ids 1,2,3 | -p TEXT] [-n N] [--ids-out]: greedy decoding") \
    X(trace, gb_cli_trace, "[MODEL] (--ids 1,2,3 | -p TEXT) [-e STATEMENT]... [more prompts, each an invoke with its -e] " \
                           "[-n N] [--scan] [--graph] [--out F.safetensors] [--remote URL [--key KEY]]: interventions in nnsight's syntax") \
    X(session, gb_cli_session, "[--model NAME=DIR]... STEPS [--out F.safetensors] [--remote URL [--key KEY]]: several traces " \
                               "as one unit; STEPS: --trace MODEL (prompts, -e, -n as trace) | --log TEXT | --stop | " \
                               "--iter NAME=1,2,3 ... --end (see docs/remote.md)") \
    X(serve, gb_cli_serve, "--model NAME=DIR... [--host H] [--port N] [--keys FILE] [--workers N] [--queue N] [limits]: " \
                           "run sessions for HTTP clients (docs/remote.md)") \
    X(tokenize, gb_cli_tokenize, "[MODEL] TEXT: print the token ids of TEXT") \
    X(detokenize, gb_cli_detokenize, "[MODEL] 1,2,3: print the text of token ids") \
    X(train-tokenizer, gb_cli_train_tokenizer, "CORPUS --vocab N --out DIR: train a byte-level BPE tokenizer") \
    X(train, gb_cli_train, "--corpus FILE --tokenizer DIR --out DIR [options]: train a GPT-2 from scratch (--help)")

/* The bundled model's directory name under models/. */
#define GB_CLI_MODEL_NAME "gpt2-facts"

/* The bundled model's directory ($GLASSBOX_MODEL, else found from the
 * executable), or NULL when it is not there. */
const char *gb_cli_default_model(void);
/* given, or the bundled model; NULL after printing why when there is none. */
const char *gb_cli_model(const char *cmd, const char *given);

#define GB__X(name, fn, help) int fn(int argc, char **argv);
GB_CLI_COMMANDS(GB__X)
#undef GB__X

/* A language model opened as every subcommand opens one (a progress bar
 * on a terminal); NULL with gb_last_error() set. */
struct gb_lm *gb_cli_open_lm(const char *path);

/* All of f, malloc'd and NUL-terminated, its length in *len; NULL on error
 * (errno set). */
char *gb_cli_slurp(FILE *f, size_t *len);

#endif
