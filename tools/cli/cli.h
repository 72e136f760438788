/* The glassbox command line: one function per subcommand. */
#ifndef GB_CLI_H
#define GB_CLI_H

/* Each subcommand gets argv after its own name and returns the exit code. On
 * failure it prints one line to stderr ("glassbox NAME: message"). */
typedef int (*gb_cli_fn)(int argc, char **argv);

/* X-macro of subcommands: name, function, one-line help. */
#define GB_CLI_COMMANDS(X)                                                   \
    X(demo, gb_cli_demo, "[MODEL]: generate, then look inside (default: the stories260k fixture)") \
    X(info, gb_cli_info, "MODEL: print the module tree, parameter count and config") \
    X(run, gb_cli_run, "MODEL (--ids 1,2,3 | -p TEXT) --out F.safetensors [--hidden]: one forward pass") \
    X(generate, gb_cli_generate, "MODEL [--ids 1,2,3 | -p TEXT] [-n N] [--ids-out]: greedy decoding") \
    X(trace, gb_cli_trace, "MODEL (--ids 1,2,3 | -p TEXT) [-e STATEMENT]... [more prompts, each an invoke with its -e] " \
                           "[-n N] [--scan] [--graph] [--out F.safetensors]: interventions in nnsight's syntax") \
    X(tokenize, gb_cli_tokenize, "MODEL TEXT: print the token ids of TEXT") \
    X(detokenize, gb_cli_detokenize, "MODEL 1,2,3: print the text of token ids") \
    X(train, gb_cli_train, "--corpus FILE --tokenizer DIR --out DIR [options]: train a GPT-2 from scratch (--help)")

#define GB__X(name, fn, help) int fn(int argc, char **argv);
GB_CLI_COMMANDS(GB__X)
#undef GB__X

#endif
