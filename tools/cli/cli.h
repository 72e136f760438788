/* The glassbox command line: one table per subcommand, one parser.
 *
 * A subcommand is a gb_cli_cmd: its name, its function, the positional
 * arguments it takes and a table of options (name, short name, kind of
 * argument with its range and default, help text). gb_cli_parse parses argv
 * with getopt_long from that table, checks every value strictly (a number
 * is the whole string and in range, an option is given at most once unless
 * it repeats, options of one group exclude each other) and answers -h/--help
 * from the same table; `glassbox --man` prints docs/glassbox.1 from all the
 * tables (tests/test_cli.c checks the file is current). Adding an option is
 * one line in its command's table.
 *
 * Exit codes: 0 ok, 1 error (one line on stderr: "glassbox CMD: message"),
 * 2 usage error (the same, with a pointer to --help). */
#ifndef GB_CLI_H
#define GB_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "glassbox.h"

enum { GB_CLI_OK = 0, GB_CLI_ERROR = 1, GB_CLI_USAGE = 2 };

/* What an option's argument is. Numbers are decimal, the whole string, in
 * [min, max]; IDS is a comma-separated list of token ids (integers >= 0);
 * CHOICE is one of the words of meta, "a|b|c" (gb_cli_arg.i: its index). */
#define GB_CLI_KINDS(X)                                                                                              \
    X(FLAG, "")                                                                                                      \
    X(INT, "an integer")                                                                                            \
    X(NUM, "a number")                                                                                              \
    X(STR, "")                                                                                                       \
    X(IDS, "a comma-separated list of token ids")                                                                   \
    X(CHOICE, "one of")

typedef enum {
#define GB__X(kind, what) GB_CLI_##kind,
    GB_CLI_KINDS(GB__X)
#undef GB__X
} gb_cli_kind;

typedef struct gb_cli_opt {
    const char *name; /* long name, without "--" */
    char short_name;  /* 0: none */
    gb_cli_kind kind;
    double min, max;  /* INT and NUM */
    const char *dflt; /* the value when not given, as text (NULL: none); parsed like an argument */
    bool repeat;      /* may be given several times (gb_cli_args.seq keeps them in order) */
    int group;        /* nonzero: the options of one group exclude each other */
    const char *meta; /* the argument's name in help ("N", "PATH") */
    const char *help;
} gb_cli_opt;

/* Options several commands share, spelled once. ID is the command's enum
 * name for it. */
#define GB_CLI_OPT_JSON(X, ID) X(ID, "json", 0, FLAG, 0, 0, NULL, false, 0, NULL, "print the results as JSON")
#define GB_CLI_OPT_TOKENIZER(X, ID)                                                                                 \
    X(ID, "tokenizer", 0, STR, 0, 0, NULL, false, 0, "PATH",                                                       \
      "tokenizer.json, or a directory with it (or vocab.json + merges.txt), instead of the model's")
#define GB_CLI_OPT_DTYPE(X, ID)                                                                                     \
    X(ID, "dtype", 0, CHOICE, 0, 0, "stored", false, 0, "stored|f32|float32",                                        \
      "the weights' dtype: as stored (f16/bf16 used in place), or converted to f32 when opening")
/* --ids and -p: one prompt (group 1: not both). */
#define GB_CLI_OPT_PROMPT(X, ID_IDS, ID_TEXT, REPEAT, GROUP)                                                         \
    X(ID_IDS, "ids", 0, IDS, 0, 0, NULL, REPEAT, GROUP, "1,2,3", "the prompt as token ids")                        \
    X(ID_TEXT, "prompt", 'p', STR, 0, 0, NULL, REPEAT, GROUP, "TEXT", "the prompt as text, through the tokenizer")

/* Expands an option X-macro list into a gb_cli_opt array's initialisers. */
#define GB_CLI_OPT_INIT(id, name, short_name, kind, min, max, dflt, repeat, group, meta, help)                       \
    {name, short_name, GB_CLI_##kind, min, max, dflt, repeat, group, meta, help},
#define GB_CLI_OPT_ENUM(id, name, short_name, kind, min, max, dflt, repeat, group, meta, help) id,

typedef struct gb_cli_args gb_cli_args;
typedef int (*gb_cli_fn)(const gb_cli_args *a);

typedef struct gb_cli_cmd {
    const char *name;
    gb_cli_fn fn;
    const char *args;        /* the positional arguments' synopsis, e.g. "[MODEL]" */
    int min_args, max_args;  /* how many positional arguments */
    const char *summary;     /* one line */
    const char *description; /* paragraphs for --help and the man page (NULL: none) */
    const gb_cli_opt *opts;
    int nopts;
} gb_cli_cmd;

/* One option as given, with its argument parsed by kind. */
typedef struct gb_cli_arg {
    int opt;          /* index in the command's table */
    const char *str;  /* the argument as given (NULL for a FLAG) */
    long long i;      /* INT; CHOICE: the index of the word */
    double num;       /* NUM */
    int64_t *ids;     /* IDS: the list (malloc'd) */
    int64_t nids;
} gb_cli_arg;

struct gb_cli_args {
    const gb_cli_cmd *cmd;
    gb_cli_arg *seq;   /* every option given, in order */
    int nseq;
    gb_cli_arg **last; /* per option of the table: its last occurrence, else its default, else NULL */
    gb_cli_arg *dflts; /* the parsed defaults */
    int *count;        /* per option: times given */
    char **pos;        /* positional arguments */
    int npos;
    int argc;          /* the arguments after the command's name, as given (options first once parsed) */
    char **argv;
};

/* Parse argv (after the command's name). Returns GB_CLI_OK, GB_CLI_USAGE
 * after printing the error, or -1 after printing --help (exit 0). */
int gb_cli_parse(const gb_cli_cmd *cmd, int argc, char **argv, gb_cli_args *a);
void gb_cli_args_free(gb_cli_args *a);
/* One value parsed by opt's rules (what gb_cli_parse does to each
 * argument); false with the message in err. */
bool gb_cli_parse_value(const gb_cli_opt *opt, const char *value, gb_cli_arg *arg, char *err, size_t errsize);
/* Whether the option was given. */
bool gb_cli_given(const gb_cli_args *a, int opt);
/* The option's value (its last occurrence, else its default). */
const char *gb_cli_str(const gb_cli_args *a, int opt);
long long gb_cli_int(const gb_cli_args *a, int opt);
double gb_cli_num(const gb_cli_args *a, int opt);
const gb_cli_arg *gb_cli_get(const gb_cli_args *a, int opt);

/* "glassbox CMD: message" on stderr; returns GB_CLI_ERROR. */
int gb_cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with "(see glassbox CMD --help)"; returns GB_CLI_USAGE. */
int gb_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The --help text of a command. */
void gb_cli_help(FILE *f, const gb_cli_cmd *cmd);

/* The subcommands, in the order --help and the man page list them. */
#define GB_CLI_COMMANDS(X)                                                                                           \
    X(demo) X(info) X(run) X(generate) X(trace) X(session) X(serve) X(lens) X(patch) X(attn) X(tokenize)             \
    X(detokenize) X(train_tokenizer) X(train)

#define GB__X(id) extern const gb_cli_cmd gb_cli_cmd_##id;
GB_CLI_COMMANDS(GB__X)
#undef GB__X

/* The bundled model's directory name under models/. */
#define GB_CLI_MODEL_NAME "gpt2-facts"

/* The bundled model's directory ($GLASSBOX_MODEL, else found from the
 * executable), or NULL when it is not there. */
const char *gb_cli_default_model(void);
/* given, or the bundled model; NULL after printing why when there is none. */
const char *gb_cli_model(const char *cmd, const char *given);

/* A language model for a command: MODEL (or the bundled one), with the
 * tokenizer at tokenizer_path when not NULL, f16/bf16 weights converted
 * when f32 (--dtype), a progress bar on a terminal. NULL after printing why
 * (cmd NULL: MODEL must be given, and the error is left in gb_last_error). */
gb_lm *gb_cli_open_lm(const char *cmd, const char *model, const char *tokenizer_path, bool f32);
/* --dtype's choice: true for f32. */
bool gb_cli_f32(const gb_cli_args *a, int opt);
/* The prompt as ids [1, T]: ids (an IDS option) directly, else text through
 * the model's tokenizer, else (allow_empty) the BOS token alone; NULL after
 * printing why. */
gb_tensor *gb_cli_prompt_ids(const char *cmd, gb_lm *lm, const gb_cli_arg *ids, const char *text, bool allow_empty);
/* Every command refuses a prompt of T tokens longer than the model's
 * positions (false after printing why), and caps *max_new (when not NULL)
 * at what is left of them, with a note on stderr. */
bool gb_cli_check_positions(const char *cmd, gb_lm *lm, int64_t T, long long *max_new);
/* A tokenizer: tokenizer_path when given, else MODEL's (a directory, a
 * tokenizer file, or a Hub id in the local cache). NULL after printing why. */
gb_tokenizer *gb_cli_open_tokenizer(const char *cmd, const char *model, const char *tokenizer_path);

/* The k most likely next tokens of logits [..., V] (softmaxed here), one
 * block per row, with ids and probabilities, their text through vocab (a
 * model's tokenizer, or a server's; NULL: "#id") (lens.c). */
void gb_cli_print_top(gb_tokenizer *vocab, gb_tensor *logits, int k);
/* The warning for a saved value a run never produced (what: its label),
 * with why: steps >= 0, the new tokens a generation made; else a stop, a
 * module that never ran or a false condition. The local trace and the
 * session's results (local or a server's) print it alike. */
void gb_cli_warn_unproduced(const char *cmd, const char *what, long long steps);
/* n saved values as the rows of a heatmap (a value [r, n] gives r rows, each
 * row named after its value), labelled with the tokens of ids [1, T] when
 * rows are T long; prints "picture: ..." and returns 0, or the exit code
 * after printing why (lens.c). */
int gb_cli_plot_values(const char *cmd, gb_tokenizer *vocab, const char *path, const char *title, int n, const char *const *names,
                       gb_tensor *const *values, gb_tensor *ids);
/* text as Python prints a str, into buf: in single quotes, with \n, \t, \\
 * and \' escaped (lens.c). */
const char *gb_cli_quoted(const char *text, char *buf, size_t size);

/* trace --remote: trace's arguments as a one-trace session sent to a
 * server (session.c), its options read as the session command's. */
int gb_cli_trace_remote(const gb_cli_args *a);

/* All of f, malloc'd and NUL-terminated, its length in *len; NULL on error
 * (errno set). */
char *gb_cli_slurp(FILE *f, size_t *len);

/* JSON output: s as a JSON string literal; a tensor as {"shape": [...],
 * "dtype": "...", "data": [...]} (data flat, row-major). */
void gb_cli_json_string(FILE *f, const char *s);
gb_status gb_cli_json_tensor(FILE *f, gb_tensor *t);

#endif
