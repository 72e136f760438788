/* The glassbox command line: info, run, generate, trace, on the bundled
 * model (models/gpt2-facts), and demo on a Llama; errors exit non-zero with
 * one line on stderr. Expected values: PyTorch on the same checkpoint with
 * Hugging Face's tokenizer (tests/oracle/bundled.py: printed values as
 * PyTorch's own repr), and derivations written beside the checks. */
#include <stdlib.h>
#include <sys/stat.h>

#include "gbtest.h"

/* The command succeeds and prints exactly want. */
static void cli_prints(const char *args, const char *want) {
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "glassbox %s: failed: %s", args, r.err);
    ck_assert_str_eq(r.out, want);
    gbt_cli_free(&r);
}

/* The ids of a and then the first nb of b, as sep-separated decimals (caller frees). */
static char *id_list(const gb_tensor *a, const gb_tensor *b, int64_t nb, const char *sep) {
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    for (int64_t i = 0; i < gb_tensor_numel(a); i++) fprintf(f, "%s%lld", i ? sep : "", (long long)gbt_i64(a, i));
    for (int64_t i = 0; b && i < nb; i++) fprintf(f, "%s%lld", sep, (long long)gbt_i64(b, i));
    fclose(f);
    return s;
}

/* Greedy decoding stops at the model's EOS (config.json's eos_token_id):
 * PyTorch's greedy ids up to and with the first EOS. */
START_TEST(test_generate_ids) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_generate_ids");
    if (!o) return;
    gb_tensor *prompt = gbt_get(o, "ids.eiffel"), *eos = gbt_get(o, "eos.eiffel");
    ck_assert_int_lt(gb_tensor_numel(eos), 6); /* EOS comes before -n 6 runs out */
    char args[4200], want[4200], *ids = id_list(prompt, NULL, 0, ","), *all = id_list(prompt, eos, gb_tensor_numel(eos), ", ");
    snprintf(args, sizeof args, "generate " GBT_BUNDLED " --ids %s -n 6 --ids-out", ids);
    snprintf(want, sizeof want, "[%s]\n", all);
    cli_prints(args, want);
    free(all);
    /* The prompt as text: the tokenizer gives Hugging Face's ids; -n 2 ends before EOS. */
    all = id_list(prompt, eos, 2, ", ");
    snprintf(want, sizeof want, "[%s]\n", all);
    cli_prints("generate " GBT_BUNDLED " -p 'The Eiffel Tower is in the city of' -n 2 --ids-out", want);
    free(all), free(ids);
    gb_tensor_free(eos), gb_tensor_free(prompt);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_info) {
    gbt_cli_result r = gbt_cli("info " GBT_BUNDLED);
    ck_assert_int_eq(r.status, 0);
    gb_model *m = gb_model_open(GBT_BUNDLED, NULL);
    gbt_ok(m);
    char *tree = gb_module_repr(gb_model_module(m));
    ck_assert_msg(!strncmp(r.out, tree, strlen(tree)), "info does not start with the module tree");
    /* GPT-2's parameters from config.json (vocabulary V = 1024, P = 64
     * positions, width E = 128, L = 4 layers): wte V*E + wpe P*E + per block
     * 12*E^2 + 13*E (ln_1, c_attn, c_proj, ln_2, c_fc, c_proj) + ln_f 2*E;
     * lm_head is tied to wte and counted once. */
    const long long V = 1024, P = 64, E = 128, L = 4;
    char want[256];
    snprintf(want, sizeof want, "\nparameters: %lld\n", V * E + P * E + L * (12 * E * E + 13 * E) + 2 * E);
    ck_assert_msg(strstr(r.out, want) != NULL, "no '%s' in info", want);
    ck_assert(strstr(r.out, "n_layer: 4\n") != NULL); /* config.json of the bundled model */
    free(tree);
    gb_model_free(m);
    gbt_cli_free(&r);
}
END_TEST

/* run --hidden writes the logits, every block's hidden state and the final
 * norm's output: PyTorch's, from forward hooks on the same modules. */
START_TEST(test_run_writes_safetensors) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_run_writes_safetensors");
    if (!o) return;
    gb_tensor *prompt = gbt_get(o, "ids.eiffel");
    char args[4400], path[512], *ids = id_list(prompt, NULL, 0, ",");
    snprintf(path, sizeof path, "%s/cli_run.safetensors", gbt_tmp_dir());
    snprintf(args, sizeof args, "run " GBT_BUNDLED " --ids %s --out %s --hidden", ids, path);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "run failed: %s", r.err);
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), 1 + 4 + 1); /* logits, hidden.0-3, hidden.final */
    const char *names[] = {"logits", "hidden.0", "hidden.1", "hidden.2", "hidden.3", "hidden.final"};
    const char *keys[] = {"logits.eiffel", "hidden.eiffel.0", "hidden.eiffel.1", "hidden.eiffel.2", "hidden.eiffel.3",
                          "hidden.eiffel.final"};
    for (int i = 0; i < 6; i++) {
        gb_tensor *got = gb_safetensors_get(st, names[i]), *want = gbt_get(o, keys[i]);
        gbt_ok(got);
        gbt_assert_close(got, want, 1e-5, 1e-5, names[i]);
        gb_tensor_free(want), gb_tensor_free(got);
    }
    gb_safetensors_free(st);
    gbt_cli_free(&r);
    free(ids);
    gb_tensor_free(prompt);
    gbt_oracle_free(o);
}
END_TEST

/* --dtype stored (the default) keeps a bf16 checkpoint's weights as
 * stored, --dtype f32 converts them: both give PyTorch's logits on the
 * weights upcast to f32 (tests/fixtures/make_models.py), to 1e-5. */
START_TEST(test_run_dtype) {
    gbt_oracle *o = gbt_oracle_load_or_skip("models", "test_run_dtype");
    if (!o) return;
    char dir[4096], path[512], args[9000];
    gbt_fixture_dir(dir, sizeof dir, "llama3-bf16-sharded");
    gb_tensor *ids = gbt_get(o, "llama3-bf16-sharded.ids"), *want = gbt_get(o, "llama3-bf16-sharded.single.logits");
    char *list = id_list(ids, NULL, 0, ",");
    const char *flags[] = {"", "--dtype stored", "--dtype f32", "--dtype float32"};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/cli_run_dtype.safetensors", gbt_tmp_dir());
        snprintf(args, sizeof args, "run %s --ids %s --out %s %s", dir, list, path, flags[i]);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "glassbox %s: failed: %s", args, r.err);
        gb_safetensors *st = gb_safetensors_open(path);
        gbt_ok(st);
        gb_tensor *got = gb_safetensors_get(st, "logits");
        gbt_ok(got);
        gbt_assert_close(got, want, 1e-5, 1e-5, flags[i]);
        gb_tensor_free(got);
        gb_safetensors_free(st);
        gbt_cli_free(&r);
    }
    snprintf(args, sizeof args, "info %s --dtype f32", dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0 && strstr(r.out, "parameters: 68688\n"), "glassbox %s: %s", args, r.err);
    gbt_cli_free(&r);
    free(list);
    gb_tensor_free(ids), gb_tensor_free(want);
    gbt_oracle_free(o);
}
END_TEST

/* Interventions as statements. Printed values are PyTorch's repr of what
 * PyTorch computes with forward hooks (bundled.py); the rest are
 * derivations written beside them. */
START_TEST(test_trace_statements) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_trace_statements");
    if (!o) return;
    gb_tensor *eiffel = gbt_get(o, "ids.eiffel"), *vatican = gbt_get(o, "ids.vatican"), *top = gbt_get(o, "argmax.eiffel");
    char *e = id_list(eiffel, NULL, 0, ","), *v = id_list(vatican, NULL, 0, ","), *repr = gbt_get_str(o, "argmax.eiffel.repr");
    char args[4400], want[4400], path[512];
    snprintf(args, sizeof args, "trace " GBT_BUNDLED " --ids %s -e 'top = lm_head.output[0].argmax(-1).save()'", e);
    snprintf(want, sizeof want, "top = %s\n", repr);
    cli_prints(args, want);

    /* Zeroing the final norm's output zeroes the logits: lm_head has no
     * bias. nnsight's model.transformer.ln_f is the same module. */
    snprintf(args, sizeof args,
             "trace " GBT_BUNDLED " --ids %s -e 'model.transformer.ln_f.output[:] = 0' -e 'lm_head.output.sum().save()'", e);
    cli_prints(args, "lm_head.output.sum().save() = tensor(0.)\n");

    /* Shapes only: the prompt's T ids, a vocabulary of 1024, width 128 (config.json). */
    snprintf(args, sizeof args,
             "trace " GBT_BUNDLED " --ids %s --scan -e 'l = lm_head.output' -e 'h = transformer.h[0].output[0]'", e);
    snprintf(want, sizeof want, "l: [1, %lld, 1024]\nh: [1, %lld, 128]\n", (long long)gb_tensor_numel(eiffel),
             (long long)gb_tensor_numel(eiffel));
    cli_prints(args, want);

    snprintf(path, sizeof path, "%s/cli_trace.safetensors", gbt_tmp_dir());
    snprintf(args, sizeof args, "trace " GBT_BUNDLED " --ids %s --out %s -e 'top = lm_head.output[0].argmax(-1).save()'",
             e, path);
    cli_prints(args, "");
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    gb_tensor *saved = gb_safetensors_get(st, "top");
    gbt_ok(saved);
    ck_assert_int_eq(gb_tensor_dtype(saved), GB_DTYPE_I64); /* ids keep their dtype */
    gbt_assert_close(saved, top, 0, 0, "top written by trace --out");
    gb_tensor_free(saved);
    gb_safetensors_free(st);

    /* Two prompts are invokes, each with the statements after it: the next
     * tokens of the Eiffel prompt and of the shorter Vatican prompt, which
     * is left-padded by one under the mask and keeps positions 0..T-1 (as
     * Hugging Face's GPT-2 without position_ids); and an ablation that
     * zeroes only the first prompt's logits. */
    char *a = gbt_get_str(o, "padded.next.a.repr"), *b = gbt_get_str(o, "padded.next.b.repr");
    snprintf(args, sizeof args,
             "trace " GBT_BUNDLED " --ids %s -e 'a = lm_head.output[0, -1].argmax(-1).save()' "
             "--ids %s -e 'b = lm_head.output[0, -1].argmax(-1).save()'", e, v);
    snprintf(want, sizeof want, "a = %s\nb = %s\n", a, b);
    cli_prints(args, want);
    free(a), free(b);
    snprintf(args, sizeof args,
             "trace " GBT_BUNDLED " --ids %s -e 'transformer.ln_f.output[:] = 0' -e 'x = lm_head.output.sum().save()' "
             "--ids %s -e 'y = lm_head.output.sum().save()'", e, e);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(!strncmp(r.out, "x = tensor(0.)\ny = tensor(", strlen("x = tensor(0.)\ny = tensor(")), "%s", r.out);
    ck_assert_msg(strstr(r.out, "y = tensor(0.)") == NULL, "%s", r.out); /* the second prompt is untouched */
    gbt_cli_free(&r);

    /* Generation, one edit at step 2 (a logit of 1e9 wins); PyTorch's
     * step-1 token and ids with the same edit, 4 new tokens. */
    char *step1 = gbt_get_str(o, "edit2.step1.repr"), *ids = gbt_get_str(o, "edit2.cli.repr");
    snprintf(args, sizeof args,
             "trace " GBT_BUNDLED " --ids %s -n 4 -e 'lm_head.next().next().output[0, -1, 42] = 1e9' "
             "-e 'lm_head.next().output[0, -1].argmax(-1).save()'", e);
    /* then the decoded text: the prompt's text and the new tokens' */
    snprintf(want, sizeof want,
             "lm_head.next().output[0, -1].argmax(-1).save() = %s\ngenerator.output = %s\n"
             "generator.text = 'The Eiffel Tower is in the city of",
             step1, ids);
    r = gbt_cli(args);
    ck_assert_msg(r.status == 0 && !strncmp(r.out, want, strlen(want)), "trace -n 4 printed:\n%s\nnot:\n%s", r.out, want);
    ck_assert_msg(strchr(r.out + strlen(want), '\n')[1] == 0, "one line of text: %s", r.out); /* and nothing else */
    gbt_cli_free(&r);
    free(step1), free(ids);

    snprintf(args, sizeof args, "trace " GBT_BUNDLED " --ids %s -e 'lm_head.output[0' ", e);
    gbt_cli_fails(args, 1, "glassbox trace: -e:1: unclosed '['");
    snprintf(args, sizeof args, "trace " GBT_BUNDLED " --ids %s -e 'transformer.h[9].output.save()' ", e);
    gbt_cli_fails(args, 1, "glassbox trace: -e:1: module path 'transformer.h.9': index 9 is out of range");
    free(repr), free(v), free(e);
    gb_tensor_free(top), gb_tensor_free(vatican), gb_tensor_free(eiffel);
    gbt_oracle_free(o);
}
END_TEST

/* The demo also runs on a Llama: every step, no error (what it shows on
 * the bundled model is checked in test_demo.c). The Llama is a random one
 * written here, with the bundled model's tokenizer, whose words the demo's
 * prompts use. */
START_TEST(test_demo_llama) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/cli_llama", gbt_tmp_dir());
    mkdir(dir, 0755);
    gb_llama_config cfg = {.vocab_size = 1024, .hidden_size = 32, .intermediate_size = 64, .num_hidden_layers = 2,
                           .num_attention_heads = 4, .num_key_value_heads = 2, .max_position_embeddings = 64,
                           .rms_norm_eps = 1e-5f, .rope_theta = 10000.0, .hidden_act = "silu"};
    gb_module *net = gb_llama_new(&cfg);
    gbt_ok(net);
    gb_module_init(net, 11);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    gbt_save_params(net, path, NULL, 0, NULL, NULL);
    gb_module_free(net);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"model_type\": \"llama\", \"vocab_size\": 1024, \"hidden_size\": 32, \"intermediate_size\": 64,"
          " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
          " \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5, \"tie_word_embeddings\": false,"
          " \"bos_token_id\": 1023, \"eos_token_id\": 1023}", f);
    fclose(f);
    size_t len = 0;
    char *tokenizer = gbt_read_file(GBT_BUNDLED "/tokenizer.json", &len);
    ck_assert_ptr_nonnull(tokenizer);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    f = fopen(path, "wb");
    ck_assert(f && fwrite(tokenizer, 1, len, f) == len);
    fclose(f);
    free(tokenizer);

    char args[4400];
    snprintf(args, sizeof args, "demo %s", dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "demo failed: %s", r.err);
    ck_assert_str_eq(r.err, "");
    ck_assert(strstr(r.out, "== 9. A persistent edit\n") != NULL);
    ck_assert(strstr(r.out, ">>> model.layers[-1].mlp.output[0][:] = 0\n") != NULL);
    gbt_cli_free(&r);
}
END_TEST

START_TEST(test_cli_errors) {
    gbt_cli_fails("info /nonexistent/model", 1, "glassbox info: hub: /nonexistent/model");
    gbt_cli_fails("run " GBT_BUNDLED " --ids 1,x --out /dev/null", 1,
                  "glassbox run: --ids: '1,x' is not a comma-separated list of token ids");
    gbt_cli_fails("run " GBT_BUNDLED " --ids 1,2", 1, "glassbox run: missing --out");
    gbt_cli_result r = gbt_cli("generate " GBT_BUNDLED " --ids 1,2000 --ids-out"); /* vocabulary is 1024 */
    ck_assert_int_eq(r.status, 1);
    gbt_one_error_line(&r, "glassbox generate: ");
    ck_assert(strstr(r.err, "2000") != NULL);
    gbt_cli_free(&r);
    gbt_cli_fails("generate --bogus", 2, "glassbox generate: unknown or incomplete option '--bogus'");
    gbt_cli_fails("run " GBT_BUNDLED " --ids 1,2 --out /dev/null --dtype bf16", 2,
                  "glassbox run: --dtype: 'bf16' is not a weight dtype (stored or f32)");
    gbt_cli_fails("lens " GBT_BUNDLED " -p Paris --dtype f16", 2,
                  "glassbox lens: --dtype: 'f16' is not a weight dtype (stored or f32)");
    gbt_cli_fails("info " GBT_BUNDLED " --dtype", 2, "glassbox info: usage: glassbox info [MODEL] [--dtype stored|f32]");
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
    tcase_add_test(tc, test_run_dtype);
    tcase_add_test(tc, test_trace_statements);
    tcase_add_test(tc, test_demo_llama);
    tcase_add_test(tc, test_cli_errors);
    suite_add_tcase(s, tc);
    return s;
}
