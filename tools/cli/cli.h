/* The glassbox command line: one function per subcommand. */
#ifndef GB_CLI_H
#define GB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "glassbox.h"

/* Each subcommand gets argv after its own name and returns the exit code. On
 * failure it prints one line to stderr ("glassbox NAME: message"). */
typedef int (*gb_cli_fn)(int argc, char **argv);

/* X-macro of subcommands: name, function, one-line help. MODEL, when left
 * out, is the bundled model (gb_cli_default_model). */
#define GB_CLI_COMMANDS(X)                                                   \
    X(demo, gb_cli_demo, "[MODEL]: look inside a model, step by step (nnsight's walkthrough)") \
    X(info, gb_cli_info, "[MODEL] [--dtype f32]: print the module tree, parameter count and config") \
    X(run, gb_cli_run, "[MODEL] (--ids 1,2,3 | -p TEXT) (--out F.safetensors [--hidden] | --top K) [--dtype f32] [--nan-check]: one forward pass") \
    X(generate, gb_cli_generate, "[MODEL] [--ids 1,2,3 | -p TEXT] [-n N] [--ids-out] [--dtype f32] [--temperature T [--top-k K] " \
                                 "[--top-p P] [--repetition-penalty R] [--seed S]] [--nan-check]: greedy decoding, or sampling") \
    X(trace, gb_cli_trace, "[MODEL] (--ids 1,2,3 | -p TEXT) [-e STATEMENT]... [more prompts, each an invoke with its -e] " \
                           "[--edit STATEMENT]... [--tensor NAME=F.safetensors[:KEY]]... [-n N [sampling as generate]] [--top K] [--scan] [--graph] " \
                           "[--out F.safetensors] [--png F [--title T]] [--dtype f32] [--nan-check] " \
                           "[--remote URL [--key KEY]]: interventions in nnsight's syntax") \
    X(session, gb_cli_session, "[--model NAME=DIR]... (STEPS | --json F) [--out F.safetensors] [--remote URL [--key KEY]]: several traces " \
                               "as one unit; STEPS: --trace MODEL (prompts, -e, -n as trace) | --log TEXT | --stop | " \
                               "--iter NAME=1,2,3 ... --end (see docs/remote.md)") \
    X(serve, gb_cli_serve, "--model NAME=DIR... [--host H] [--port N] [--keys FILE] [--workers N] [--queue N] [limits]: " \
                           "run sessions for HTTP clients (docs/remote.md)") \
    X(lens, gb_cli_lens, "[MODEL] (-p TEXT | --ids 1,2,3) [--top K] [--png F] [--csv F] [--dtype f32]: the logit lens, every layer and position") \
    X(patch, gb_cli_patch, "[MODEL] --clean TEXT --corrupt TEXT [--target TOK|#ID] [--foil TOK|#ID] [--what resid|attn|mlp] " \
                           "[--batch N] [--png F] [--csv F] [--dtype f32]: activation patching of every layer and position") \
    X(attn, gb_cli_attn, "[MODEL] (-p TEXT | --ids 1,2,3) --layer L [--head H] [--png F] [--dtype f32]: attention patterns") \
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

/* Shared by the commands on models (model.c). Print "glassbox CMD: msg" on
 * stderr and return 1. */
int gb_cli_fail(const char *cmd, const char *msg);
/* A language model, its f16/bf16 weights as stored or (f32) converted,
 * with a progress bar on a terminal; NULL with the error set. */
gb_lm *gb_cli_open_lm(const char *path, bool f32);
/* --dtype VALUE: "stored" (the default: weights as the files hold them) or
 * "f32" (converted when opening) into *f32; false after printing why. */
bool gb_cli_dtype(const char *cmd, const char *value, bool *f32);
/* The prompt as ids [1, T]: ids_arg ("1,2,3") directly, text through the
 * model's tokenizer, or (allow_empty) the BOS token alone; NULL after
 * printing why. */
gb_tensor *gb_cli_prompt_ids(const char *cmd, gb_lm *lm, const char *ids_arg, const char *text, bool allow_empty);

/* The k most likely next tokens of logits [..., V] (softmaxed here), one
 * block per row, with ids and probabilities (lens.c). */
void gb_cli_print_top(gb_lm *lm, gb_tensor *logits, int k);
/* n saved values as the rows of a heatmap (a value [r, n] gives r rows, each
 * row named after its value), labelled with the tokens of ids [1, T] when
 * rows are T long; prints "picture: ..." and returns 0, or the exit code
 * after printing why (lens.c). */
int gb_cli_plot_values(const char *cmd, gb_lm *lm, const char *path, const char *title, int n, const char *const *names,
                       gb_tensor *const *values, gb_tensor *ids);
/* `trace --remote`: the trace as a one-trace session sent to a server
 * (session.c). */
int gb_cli_trace_remote(int argc, char **argv);

/* text as Python prints a str, into buf: in single quotes, with \n, \t, \\
 * and \' escaped (lens.c). */
const char *gb_cli_quoted(const char *text, char *buf, size_t size);

/* All of f, malloc'd and NUL-terminated, its length in *len; NULL on error
 * (errno set). */
char *gb_cli_slurp(FILE *f, size_t *len);

#endif
