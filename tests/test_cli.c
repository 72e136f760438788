/* The glassbox command line: info, run, generate, trace, on the real stories260k
 * model; errors exit non-zero with one line on stderr. */
#include <stdlib.h>

#include "gbtest.h"

/* The command succeeds and prints exactly want. */
static void cli_prints(const char *args, const char *want) {
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "glassbox %s: failed: %s", args, r.err);
    ck_assert_str_eq(r.out, want);
    gbt_cli_free(&r);
}

/* ../shared/README.md: greedy decoding from BOS. */
START_TEST(test_generate_ids) {
    char *dir = gbt_shared_path("models/stories260k", "test_generate_ids");
    if (!dir) return;
    char args[4200];
    snprintf(args, sizeof args, "generate %s -n 20 --ids-out", dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "[1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, "
                            "396, 267, 337]\n");
    gbt_cli_free(&r);
    /* The prompt through the tokenizer: "Once upon a time" is [1, 403, 407, 261, 378]. */
    snprintf(args, sizeof args, "generate %s -p 'Once upon a time' -n 3 --ids-out", dir);
    r = gbt_cli(args);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "[1, 403, 407, 261, 378, 432, 383, 286]\n");
    gbt_cli_free(&r);
    free(dir);
}
END_TEST

START_TEST(test_info) {
    char *dir = gbt_shared_path("models/stories260k", "test_info");
    if (!dir) return;
    char args[4200];
    snprintf(args, sizeof args, "info %s", dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_int_eq(r.status, 0);
    gb_model *m = gb_model_open(dir, NULL);
    char *tree = gb_module_repr(gb_model_module(m)), want[256];
    ck_assert_msg(!strncmp(r.out, tree, strlen(tree)), "info does not start with the module tree");
    snprintf(want, sizeof want, "\nparameters: %lld\n", (long long)gb_module_num_parameters(gb_model_module(m)));
    ck_assert_msg(strstr(r.out, want) != NULL, "no '%s' in info", want);
    ck_assert(strstr(r.out, "num_key_value_heads: 4\n") != NULL); /* config.json of stories260k */
    free(tree);
    gb_model_free(m);
    gbt_cli_free(&r);
    free(dir);
}
END_TEST

/* run --hidden writes the logits and every hidden state; the logits equal an
 * in-process forward on the same ids. */
START_TEST(test_run_writes_safetensors) {
    char *dir = gbt_shared_path("models/stories260k", "test_run_writes_safetensors");
    if (!dir) return;
    char args[4400], path[512];
    snprintf(path, sizeof path, "%s/cli_run.safetensors", gbt_tmp_dir());
    snprintf(args, sizeof args, "run %s --ids 1,403,407,261 --out %s --hidden", dir, path);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "run failed: %s", r.err);
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), 1 + 5 + 1); /* logits, hidden.0-4, hidden.final */
    gb_tensor *logits = gb_safetensors_get(st, "logits"), *h4 = gb_safetensors_get(st, "hidden.4"),
              *fin = gb_safetensors_get(st, "hidden.final");
    gbt_ok(logits), gbt_ok(h4), gbt_ok(fin);
    ck_assert(gb_tensor_ndim(h4) == 3 && gb_tensor_dim(h4, 2) == 64);
    gb_model *m = gb_model_open(dir, NULL);
    const int64_t ids[] = {1, 403, 407, 261};
    gb_tensor *in = gb_from_data(ids, 2, (int64_t[]){1, 4}, GB_DTYPE_I64), *want;
    gbt_ok_status(gb_module_run(gb_model_module(m), NULL, in, &want));
    gbt_assert_close(logits, want, 0, 0, "logits written by glassbox run");
    gb_tensor_free(want), gb_tensor_free(in), gb_tensor_free(logits), gb_tensor_free(h4), gb_tensor_free(fin);
    gb_safetensors_free(st);
    gb_model_free(m);
    gbt_cli_free(&r);
    free(dir);
}
END_TEST

/* Interventions as statements. Expected values: the greedy continuation in
 * ../shared/README.md (each position's argmax is the next greedy token:
 * 1 -> 403 -> 407 -> 261 -> 378 -> 432), and a derivation for the edit. */
START_TEST(test_trace_statements) {
    char *dir = gbt_shared_path("models/stories260k", "test_trace_statements");
    if (!dir) return;
    char args[4400], path[512];
    snprintf(args, sizeof args, "trace %s --ids 1,403,407,261,378 -e 'top = lm_head.output[0].argmax(-1).save()'", dir);
    cli_prints(args, "top = tensor([403, 407, 261, 378, 432])\n");

    /* Zeroing the last layer's hidden state zeroes the logits: RMSNorm(0) = 0
     * and lm_head has no bias. nnsight's model.model.layers is the same module. */
    snprintf(args, sizeof args,
             "trace %s --ids 1,403 -e 'model.model.layers[-1].output[0][:] = 0' -e 'lm_head.output.sum().save()'", dir);
    cli_prints(args, "lm_head.output.sum().save() = tensor(0.)\n");

    /* Shapes only: 5 ids, a vocabulary of 512, hidden size 64 (config.json). */
    snprintf(args, sizeof args,
             "trace %s --ids 1,403,407,261,378 --scan -e 'l = lm_head.output' -e 'h = model.layers[0].output[0]'", dir);
    cli_prints(args, "l: [1, 5, 512]\nh: [1, 5, 64]\n");

    snprintf(path, sizeof path, "%s/cli_trace.safetensors", gbt_tmp_dir());
    snprintf(args, sizeof args, "trace %s --ids 1,403 --out %s -e 'top = lm_head.output[0].argmax(-1).save()'", dir, path);
    cli_prints(args, "");
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    gb_tensor *top = gb_safetensors_get(st, "top");
    gbt_ok(top);
    ck_assert_int_eq(gb_tensor_dtype(top), GB_DTYPE_I64); /* ids keep their dtype */
    const int64_t *got = gb_tensor_data(top);
    ck_assert(gb_tensor_numel(top) == 2 && got[0] == 403 && got[1] == 407);
    gb_tensor_free(top);
    gb_safetensors_free(st);

    /* Two prompts are invokes, each with the statements after it: the
     * greedy next tokens of [1, 403, 407] and of [1, 403] (left-padded), and
     * an ablation that zeroes only the first prompt's logits. */
    snprintf(args, sizeof args,
             "trace %s --ids 1,403,407 -e 'a = lm_head.output[0, -1].argmax(-1).save()' "
             "--ids 1,403 -e 'b = lm_head.output[0, -1].argmax(-1).save()'", dir);
    cli_prints(args, "a = tensor(261)\nb = tensor(407)\n");
    snprintf(args, sizeof args,
             "trace %s --ids 1,403 -e 'model.layers[-1].output[0][:] = 0' -e 'x = lm_head.output.sum().save()' "
             "--ids 1,403 -e 'y = lm_head.output.sum().save()'", dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(!strncmp(r.out, "x = tensor(0.)\ny = tensor(", strlen("x = tensor(0.)\ny = tensor(")), "%s", r.out);
    ck_assert_msg(strstr(r.out, "y = tensor(0.)") == NULL, "%s", r.out); /* the second prompt is untouched */
    gbt_cli_free(&r);

    /* Generation, one edit at step 2: step k chooses token k + 1, and a logit
     * of 1e9 wins; step 1 chose 407, as in the greedy run. */
    snprintf(args, sizeof args,
             "trace %s --ids 1 -n 4 -e 'lm_head.next().next().output[0, -1, 42] = 1e9' "
             "-e 'lm_head.next().output[0, -1].argmax(-1).save()'", dir);
    r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "trace -n failed: %s", r.err);
    /* The token after the edit is the model's own business: only its place is checked. */
    const char *want = "lm_head.next().output[0, -1].argmax(-1).save() = tensor(407)\n"
                       "generator.output = tensor([[  1, 403, 407,  42, ";
    ck_assert_msg(!strncmp(r.out, want, strlen(want)), "stdout: %s", r.out);
    ck_assert_msg(strlen(r.out) == strlen(want) + strlen("NNN]])\n"), "stdout: %s", r.out);
    gbt_cli_free(&r);

    snprintf(args, sizeof args, "trace %s --ids 1 -e 'lm_head.output[0' ", dir);
    gbt_cli_fails(args, 1, "glassbox trace: -e:1: unclosed '['");
    snprintf(args, sizeof args, "trace %s --ids 1 -e 'model.layers[9].output.save()' ", dir);
    gbt_cli_fails(args, 1, "glassbox trace: -e:1: module path 'model.layers.9': index 9 is out of range");
    free(dir);
}
END_TEST

/* The demo also runs on a Llama (stories260k): every step, no error. What
 * it shows on the bundled model is checked in test_demo.c. */
START_TEST(test_demo_llama) {
    char *dir = gbt_shared_path("models/stories260k", "test_demo_llama");
    if (!dir) return;
    char args[4200];
    snprintf(args, sizeof args, "demo %s", dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "demo failed: %s", r.err);
    ck_assert_str_eq(r.err, "");
    ck_assert(strstr(r.out, "== 9. A persistent edit\n") != NULL);
    ck_assert(strstr(r.out, ">>> model.layers[-1].mlp.output[0][:] = 0\n") != NULL);
    gbt_cli_free(&r);
    free(dir);
}
END_TEST

START_TEST(test_cli_errors) {
    gbt_cli_fails("info /nonexistent/model", 1, "glassbox info: hub: /nonexistent/model");
    gbt_cli_result r;
    char *dir = gbt_shared_path("models/stories260k", "test_cli_errors");
    if (dir) {
        char args[4200];
        snprintf(args, sizeof args, "run %s --ids 1,x --out /dev/null", dir);
        gbt_cli_fails(args, 1, "glassbox run: --ids: '1,x' is not a comma-separated list of token ids");
        snprintf(args, sizeof args, "run %s --ids 1,2", dir);
        gbt_cli_fails(args, 1, "glassbox run: missing --out");
        snprintf(args, sizeof args, "generate %s --ids 1,600 --ids-out", dir); /* vocabulary is 512 */
        r = gbt_cli(args);
        ck_assert_int_eq(r.status, 1);
        gbt_one_error_line(&r, "glassbox generate: ");
        ck_assert(strstr(r.err, "600") != NULL);
        gbt_cli_free(&r);
        free(dir);
    }
    gbt_cli_fails("generate --bogus", 2, "glassbox generate: unknown or incomplete option '--bogus'");
    r = gbt_cli("frobnicate");
    ck_assert_int_eq(r.status, 2);
    ck_assert(strstr(r.err, "unknown command 'frobnicate'") != NULL);
    gbt_cli_free(&r);
}
END_TEST

Suite *gb_suite_cli(void) {
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_generate_ids);
    tcase_add_test(tc, test_info);
    tcase_add_test(tc, test_run_writes_safetensors);
    tcase_add_test(tc, test_trace_statements);
    tcase_add_test(tc, test_demo_llama);
    tcase_add_test(tc, test_cli_errors);
    suite_add_tcase(s, tc);
    return s;
}
