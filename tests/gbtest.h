/* Shared test helpers: PyTorch oracle cases, tensor comparison, fixtures. */
#ifndef GB_TEST_H
#define GB_TEST_H

#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "glassbox.h"

/* Oracle cases. tests/oracle/NAME.py writes $GB_ORACLE_DIR/NAME.txt, one
 * tensor per line: `key dtype ndim d0 .. dn-1 v0 v1 ...` (dtype as in
 * gb_dtype_name; values as decimal text that round-trips f32). */
typedef struct gbt_oracle gbt_oracle;
/* Load NAME.txt; fails the current test if it is missing or malformed. */
gbt_oracle *gbt_oracle_load(const char *name);
/* A new reference to the tensor stored under key; fails the test if absent. */
gb_tensor *gbt_get(gbt_oracle *o, const char *key);
/* Formatted key: gbt_getf(o, "%s.out", case_name). */
gb_tensor *gbt_getf(gbt_oracle *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A string stored under key as the uint8 tensor of its bytes, NUL-terminated
 * (caller frees); fails the test if absent. */
char *gbt_get_str(gbt_oracle *o, const char *key);
void gbt_oracle_free(gbt_oracle *o);

/* Fail the test unless got has want's shape and |got - want| <= atol + rtol*|want|
 * elementwise (NaNs must match). Compares any dtypes by value. `what` names
 * the comparison in the failure message. */
void gbt_assert_close_at(const gb_tensor *got, const gb_tensor *want, double rtol, double atol, const char *what,
                         const char *file, int line);
#define gbt_assert_close(got, want, rtol, atol, what) \
    gbt_assert_close_at((got), (want), (rtol), (atol), (what), __FILE__, __LINE__)

/* Fail unless the saved trace value v is close (rtol 1e-5, atol 1e-6) to
 * the oracle's tensor under key. */
void gbt_assert_saved_close_at(const gb_val *v, gbt_oracle *o, const char *key, const char *file, int line);
#define gbt_assert_saved_close(v, o, key) gbt_assert_saved_close_at((v), (o), (key), __FILE__, __LINE__)

/* Fail unless ptr is non-NULL, printing gb_last_error() when it is NULL. */
#define gbt_ok(ptr) ck_assert_msg((ptr) != NULL, "unexpected failure: %s", gb_last_error())
#define gbt_ok_status(st) ck_assert_msg((st) == GB_OK, "unexpected failure: %s", gb_last_error())
/* Fail unless expr returned NULL/status `status` and the message contains needle. */
#define gbt_fails_with(expr_is_failure, status, needle)                                                      \
    do {                                                                                                      \
        ck_assert_msg((expr_is_failure), "expected a failure");                                               \
        ck_assert_msg(gb_last_status() == (status), "expected status %s, got %s (%s)", gb_status_name(status), \
                      gb_status_name(gb_last_status()), gb_last_error());                                    \
        ck_assert_msg(strstr(gb_last_error(), (needle)) != NULL, "message '%s' does not contain '%s'",         \
                      gb_last_error(), (needle));                                                             \
    } while (0)

/* Gradient check by central differences. f maps the n inputs to one output
 * (a new reference). The analytic gradient of L = sum(f(inputs) * R), R a
 * fixed random tensor, comes from gb_backward; the numeric one perturbs each
 * element of each input that requires grad (contiguous f32 leaves) by +-eps
 * and evaluates L in double. Fails the test when |analytic - numeric| >
 * atol + rtol*|numeric| for any element. Inputs' .grad are dropped after. */
typedef gb_tensor *(*gbt_fn)(gb_tensor *const *inputs, void *ctx);
void gbt_gradcheck_at(gbt_fn f, int n, gb_tensor *const *inputs, void *ctx, double eps, double rtol, double atol,
                      const char *what, const char *file, int line);
#define gbt_gradcheck(f, n, inputs, ctx, eps, rtol, atol, what) \
    gbt_gradcheck_at((f), (n), (inputs), (ctx), (eps), (rtol), (atol), (what), __FILE__, __LINE__)

/* A visible skip: "SKIP test_name: why" on stderr, and test_name added to
 * the runner's list of skipped tests (gbt_skips_report). */
void gbt_skip(const char *test_name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The runner's list: emptied before the suites run; afterwards the number
 * of distinct tests that skipped, printed with their names. */
void gbt_skips_reset(void);
int gbt_skips_report(void);
/* Path of a file under ../shared, or NULL (after gbt_skip) when the
 * fixture is missing. Caller frees. */
char *gbt_shared_path(const char *rel, const char *test_name);
/* The model the repository ships (make model), relative to the root the
 * tests run from; its oracle is tests/oracle/bundled.py. */
#define GBT_BUNDLED "models/gpt2-facts"
/* NAME.txt, or NULL (after gbt_skip) when its script wrote nothing because
 * the bundled model or Node's tokenizers were missing (bundled.py, demo.py). */
gbt_oracle *gbt_oracle_load_or_skip(const char *name, const char *test_name);
/* Element i (row-major) of an int64 oracle tensor. */
int64_t gbt_i64(const gb_tensor *t, int64_t i);
/* The walkthrough's tiny network, Sequential(layer1: Linear(5, 10),
 * layer2: Linear(10, 2)), with the weights an oracle stores under
 * "layer1.weight", ... (tests/oracle/trace.py, walkthrough.py). */
gb_module *gbt_tiny_net(gbt_oracle *o);
/* The directory of a generated Hugging Face fixture (docs/fixtures.md),
 * e.g. "gpt2", written into buf. */
const char *gbt_fixture_dir(char *buf, size_t size, const char *variant);
/* Run the CLI ($GB_BUILD_DIR/glassbox) with args, a shell fragment, and
 * capture its exit status and both streams (free with gbt_cli_free). */
typedef struct {
    int status;
    char *out, *err;
} gbt_cli_result;
gbt_cli_result gbt_cli(const char *args);
void gbt_cli_free(gbt_cli_result *r);
/* Fail unless stderr is exactly one line starting with prefix. */
void gbt_one_error_line(const gbt_cli_result *r, const char *prefix);
/* The command exits with status and one error line starting with prefix. */
void gbt_cli_fails(const char *args, int status, const char *prefix);
/* Save every parameter of net under its name, with `drop` removed from the
 * front when it starts with it (NULL: none), plus nextra extra tensors. */
void gbt_save_params(gb_module *net, const char *path, const char *drop, int nextra, const char **extra_names,
                     gb_tensor **extra);
/* Directory for test scratch files (created). */
const char *gbt_tmp_dir(void);
/* The whole file, NUL-terminated (caller frees), its length in *len when
 * len is not NULL; NULL when it cannot be read. */
char *gbt_read_file(const char *path, size_t *len);

/* What a session reports (gb_spec_result_fn and its log), collected: each
 * value under "tK.NAME", or "tK[i.j].NAME" in loops (the CLI's --out names). */
typedef struct gbt_results {
    int n;
    char **keys;
    gb_tensor **values;
    char *log; /* every log line, each ending in a newline */
    size_t loglen;
} gbt_results;
gb_status gbt_results_add(void *ctx, const gb_spec_result *r);
void gbt_results_log(void *ctx, const char *line);
/* Build sp with lm_of, scan and run it, collecting into res. */
gb_status gbt_run_spec(gb_spec *sp, gb_lm *(*lm_of)(void *ctx, const char *name), void *ctx, gbt_results *res);
/* The value under key (borrowed), or NULL. */
gb_tensor *gbt_result(const gbt_results *r, const char *key);
void gbt_results_free(gbt_results *r);

#endif
