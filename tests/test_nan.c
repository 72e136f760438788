/* The NaN guard (gb_run_set_nan_check, gb_trace_set_nan_check,
 * gb_decode_opts.nan_check, the CLI's --nan-check): the first module whose
 * output holds NaN or Inf, named with its call and position; the CLI's
 * warnings about non-finite logits; saved values never produced.
 *
 * Expected values are derivations on the GPT-2 fixture (docs/fixtures.md:
 * n_embd 32, MLP width 128) with one weight element made non-finite:
 * Conv1D computes out[b, t, j] = sum_k x[b, t, k] W[k, j] + bias[j], so a
 * NaN at W[3, 5] makes column 5 NaN at every token and nothing else; a
 * LayerNorm's weight w[j] = inf multiplies column j of the normalised input
 * (nonzero), making it infinite at every token; an intervention writing
 * NaN into one element of a block's MLP output at one step spoils exactly
 * that element of the block's output (the residual sum) at that step. */
#include <math.h>
#include <stdlib.h>

#include "gbtest.h"

enum { T = 6 };

static gb_lm *open_gpt2(void) {
    char dir[4096];
    gb_lm *lm = gb_lm_open(gbt_fixture_dir(dir, sizeof dir, "gpt2"), NULL);
    gbt_ok(lm);
    return lm;
}

static gb_tensor *prompt(void) {
    return gb_from_data((int64_t[]){5, 6, 7, 8, 9, 10}, 2, (int64_t[]){1, T}, GB_DTYPE_I64);
}

/* Set one element of a parameter to x, in place (the file's mapping is private). */
static void spoil(gb_lm *lm, const char *module, const char *param, const char *index, float x) {
    gb_module *m = gb_module_find(gb_lm_module(lm), module);
    gbt_ok(m);
    gbt_ok_status(gb_index_fill_(gb_module_param(m, param), index, x));
}

static int64_t count_nonfinite(const gb_tensor *t) {
    const float *x = gb_tensor_data(t);
    int64_t n = 0;
    for (int64_t i = 0; i < gb_tensor_numel(t); i++) n += !isfinite(x[i]);
    return n;
}

/* gb_count_nonfinite, which the guard uses: counted by hand on a small
 * tensor, its transposed view and its f16 copy. */
START_TEST(test_count_nonfinite) {
    gb_tensor *a = gb_from_data((float[]){1, NAN, INFINITY, 2, -INFINITY, 3}, 2, (int64_t[]){2, 3}, GB_DTYPE_F32);
    gb_tensor *at = gb_transpose(a, 0, 1), *h = gb_to_dtype(a, GB_DTYPE_F16);
    gb_tensor *ids = gb_from_data((int64_t[]){1, 2}, 1, (int64_t[]){2}, GB_DTYPE_I64);
    int64_t first;
    ck_assert_int_eq(gb_count_nonfinite(a, &first), 3);
    ck_assert_int_eq(first, 1); /* [0, 1] */
    ck_assert_int_eq(gb_count_nonfinite(at, &first), 3);
    ck_assert_int_eq(first, 2); /* at = [[1, 2], [nan, -inf], [inf, 3]]: [1, 0] */
    ck_assert_int_eq(gb_count_nonfinite(h, NULL), 3);
    ck_assert_int_eq(gb_count_nonfinite(ids, &first), 0);
    ck_assert_int_eq(first, -1);
    gb_tensor_free(ids), gb_tensor_free(h), gb_tensor_free(at), gb_tensor_free(a);
}
END_TEST

START_TEST(test_nan_guard_names_module_call_and_position) {
    gb_lm *lm = open_gpt2();
    gb_tensor *ids = prompt(), *clean_off = NULL, *clean_on = NULL, *y = NULL;
    gb_module *root = gb_lm_module(lm);
    gb_run *run = gb_run_new();
    gb_run_set_nan_check(run, true);

    /* A clean model: the guard changes nothing. */
    gbt_ok_status(gb_module_run(root, NULL, ids, &clean_off));
    gbt_ok_status(gb_module_run(root, run, ids, &clean_on));
    gbt_assert_close(clean_on, clean_off, 0, 0, "logits with and without the guard");

    spoil(lm, "transformer.h.1.mlp.c_fc", "weight", "[3, 5]", NAN);
    /* Without the guard the NaN reaches the logits silently... */
    gbt_ok_status(gb_module_run(root, NULL, ids, &y));
    ck_assert_int_gt(count_nonfinite(y), 0);
    gb_tensor_free(y), y = NULL;
    /* ...with it, the run fails at the module that made it. */
    gb_run_free(run);
    run = gb_run_new();
    gb_run_set_nan_check(run, true);
    gbt_fails_with(gb_module_run(root, run, ids, &y) == GB_ERR_NONFINITE, GB_ERR_NONFINITE,
                   "nan check: transformer.h.1.mlp.c_fc (Conv1D), call 0: output[0] [1, 6, 128] holds NaN at [0, 0, 5] "
                   "(6 of 768 values are not finite)");
    ck_assert_str_eq(gb_status_name(GB_ERR_NONFINITE), "nonfinite");
    gb_tensor_free(y);
    gb_run_free(run);
    gb_tensor_free(clean_on), gb_tensor_free(clean_off), gb_tensor_free(ids);
    gb_lm_free(lm);
}
END_TEST

/* Generation: an intervention at step 2 is caught at the next module whose
 * output it spoils, with that step's call index. */
START_TEST(test_nan_guard_in_a_traced_generation) {
    gb_lm *lm = open_gpt2();
    gb_tensor *ids = prompt();
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    gb_set_index(gb_output_call(tr, "transformer.h.0.mlp", 2), "[:, -1, 5]", gb_scalar(tr, NAN));
    gbt_ok_status(gb_trace_generate(tr, 4)); /* no guard: it generates from NaN logits */
    gb_trace_set_nan_check(tr, true);
    gbt_fails_with(gb_trace_generate(tr, 4) == GB_ERR_NONFINITE, GB_ERR_NONFINITE,
                   "nan check: transformer.h.0 (GPT2Block), call 2: output[0] [1, 1, 32] holds NaN at [0, 0, 5] "
                   "(1 of 32 values are not finite)");
    /* a scan has no values to look at: the guard lets it through */
    gbt_ok_status(gb_trace_scan(tr));
    gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_lm_free(lm);
}
END_TEST

/* A plain generation with the guard, and an infinity rather than a NaN. */
START_TEST(test_nan_guard_in_lm_generate) {
    gb_lm *lm = open_gpt2();
    gb_tensor *ids = prompt(), *out = NULL;
    spoil(lm, "transformer.ln_f", "weight", "[7]", INFINITY);
    gb_decode_opts o = gb_lm_decode_defaults(lm);
    o.max_new_tokens = 3;
    gbt_ok_status(gb_lm_generate(lm, ids, NULL, &o, &out));
    gb_tensor_free(out), out = NULL;
    o.nan_check = true;
    gbt_fails_with(gb_lm_generate(lm, ids, NULL, &o, &out) == GB_ERR_NONFINITE, GB_ERR_NONFINITE,
                   "nan check: transformer.ln_f (LayerNorm), call 0: output[0] [1, 6, 32] holds ");
    ck_assert_msg(strstr(gb_last_error(), "inf at [0, 0, 7] (6 of 192 values are not finite)"), "%s", gb_last_error());
    ck_assert_ptr_null(out);
    gb_tensor_free(ids);
    gb_lm_free(lm);
}
END_TEST

/* A GPT-2 checkpoint like the fixture with W[3, 5] of h.1's c_fc NaN, in
 * a directory of its own (config.json copied). */
static const char *spoiled_checkpoint(char *dir, size_t size) {
    char src[4096], path[4300];
    gbt_fixture_dir(src, sizeof src, "gpt2");
    snprintf(dir, size, "%s/nan-gpt2-XXXXXX", gbt_tmp_dir());
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config.json", src);
    size_t len;
    char *config = gbt_read_file(path, &len);
    ck_assert_ptr_nonnull(config);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(config, 1, len, f);
    fclose(f);
    free(config);
    gb_lm *lm = gb_lm_open(src, NULL);
    gbt_ok(lm);
    spoil(lm, "transformer.h.1.mlp.c_fc", "weight", "[3, 5]", NAN);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gbt_save_params(gb_lm_module(lm), path, NULL, 0, NULL, NULL);
    gb_lm_free(lm);
    return dir;
}

/* The CLI: warnings without the guard, the guard's error with --nan-check.
 * A NaN in one column of layer 1's MLP reaches every logit (layer norms mix
 * a row's features, attention mixes positions): 3 tokens x 96 = 288. */
START_TEST(test_nan_guard_in_the_cli) {
    char dir[4096], args[8600];
    spoiled_checkpoint(dir, sizeof dir);
    snprintf(args, sizeof args, "run %s --ids 1,2,3 --out %s/acts.safetensors", dir, dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_int_eq(r.status, 0);
    gbt_one_error_line(&r, "glassbox run: warning: 288 of the 288 logits are NaN or Inf; --nan-check names");
    gbt_cli_free(&r);
    snprintf(args, sizeof args, "run %s --ids 1,2,3 --out %s/acts.safetensors --nan-check", dir, dir);
    r = gbt_cli(args);
    ck_assert_int_eq(r.status, 1);
    gbt_one_error_line(&r, "glassbox run: nan check: transformer.h.1.mlp.c_fc (Conv1D), call 0: output[0] [1, 3, 128] "
                           "holds NaN at [0, 0, 5] (3 of 384 values are not finite)");
    gbt_cli_free(&r);

    snprintf(args, sizeof args, "generate %s --ids 1,2,3 -n 2 --ids-out", dir);
    r = gbt_cli(args);
    ck_assert_int_eq(r.status, 0);
    gbt_one_error_line(&r, "glassbox generate: warning: the logits held NaN or Inf at 2 of the 2 steps");
    gbt_cli_free(&r);
    snprintf(args, sizeof args, "generate %s --ids 1,2,3 -n 2 --nan-check", dir);
    gbt_cli_fails(args, 1, "glassbox generate: nan check: transformer.h.1.mlp.c_fc (Conv1D), call 0:");

    /* trace: an intervention's NaN, caught at the block it spoils */
    char fixture[4096];
    gbt_fixture_dir(fixture, sizeof fixture, "gpt2");
    snprintf(args, sizeof args, "trace %s --ids 1,2,3 --nan-check -e 'transformer.h[0].mlp.output[0, -1, 5] = 0 / 0'",
             fixture);
    gbt_cli_fails(args, 1, "glassbox trace: nan check: transformer.h.0 (GPT2Block), call 0: output[0] [1, 3, 32] "
                           "holds NaN at [0, 2, 5] (1 of 96 values are not finite)");
}
END_TEST

/* Saved values a run never produced are reported, by the library and the CLI. */
START_TEST(test_unproduced_values_are_reported) {
    gb_lm *lm = open_gpt2();
    gb_tensor *ids = prompt();
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    gb_val *step1 = gb_save(gb_output_call(tr, "lm_head", 1));
    gb_val *step5 = gb_save(gb_output_call(tr, "lm_head", 5));
    gb_val *first = gb_save(gb_output(tr, "lm_head"));
    gb_val *got[4] = {0};
    ck_assert_int_eq(gb_exec_unproduced(gb_trace_exec(tr), got, 4), 3); /* before any run: all of them */
    gbt_ok_status(gb_trace_generate(tr, 3)); /* calls 0, 1, 2: step 5 never comes */
    ck_assert_int_eq(gb_exec_unproduced(gb_trace_exec(tr), got, 4), 1);
    ck_assert_ptr_eq(got[0], step5);
    gbt_ok(gb_value(step1)), gbt_ok(gb_value(first));
    gbt_fails_with(gb_value(step5) == NULL, GB_ERR_STATE, "was never produced");
    gb_trace_free(tr);
    gb_tensor_free(ids);
    gb_lm_free(lm);

    char fixture[4096], args[4400];
    gbt_fixture_dir(fixture, sizeof fixture, "gpt2");
    snprintf(args, sizeof args, "trace %s --ids 1,2,3 -n 2 -e 'late = lm_head.next().next().next().output.save()'",
             fixture);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_int_eq(r.status, 0);
    gbt_one_error_line(&r, "glassbox trace: warning: late was never produced: generation made 2 new tokens");
    gbt_cli_free(&r);
}
END_TEST

Suite *gb_suite_nan(void) {
    Suite *s = suite_create("nan");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_count_nonfinite);
    tcase_add_test(tc, test_nan_guard_names_module_call_and_position);
    tcase_add_test(tc, test_nan_guard_in_a_traced_generation);
    tcase_add_test(tc, test_nan_guard_in_lm_generate);
    tcase_add_test(tc, test_nan_guard_in_the_cli);
    tcase_add_test(tc, test_unproduced_values_are_reported);
    suite_add_tcase(s, tc);
    return s;
}
