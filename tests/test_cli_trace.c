/* glassbox trace's options for issue 17's experiments, on the bundled
 * model: outside tensors (--tensor), persistent edits (--edit), sampling,
 * scans of generations, values never produced, attention and module calls
 * in statements. Expected values are derivations written beside each check
 * (lm_head has no bias, so zero hidden states give zero logits; the logit
 * lens at the last layer is the model's own prediction; attention rows sum
 * to 1; a seed repeats its ids). */
#include <stdlib.h>

#include "gbtest.h"

static gbt_cli_result ok(const char *args) {
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "glassbox %s: failed: %s", args, r.err);
    return r;
}

static void prints(const char *args, const char *want) {
    gbt_cli_result r = ok(args);
    ck_assert_msg(!strcmp(r.out, want), "glassbox %s printed:\n%s\nnot:\n%s", args, r.out, want);
    gbt_cli_free(&r);
}

#define T "trace " GBT_BUNDLED " --ids 11,22,33 "

START_TEST(test_trace_tensor_and_edit) {
    char path[512], path2[512], args[2048];
    snprintf(path, sizeof path, "%s/cli_v.safetensors", gbt_tmp_dir());
    snprintf(path2, sizeof path2, "%s/cli_vw.safetensors", gbt_tmp_dir());
    gb_tensor *zero = gb_zeros(1, (int64_t[]){128}, GB_DTYPE_F32), *one = gb_ones(1, (int64_t[]){128}, GB_DTYPE_F32);
    gbt_ok_status(gb_safetensors_save(path, 1, (const char *[]){"steer"}, &zero, GB_DTYPE_F32, NULL));
    gbt_ok_status(gb_safetensors_save(path2, 2, (const char *[]){"v", "w"}, (gb_tensor *[]){zero, one}, GB_DTYPE_F32, NULL));
    /* the file's only tensor, by any name; lm_head has no bias: zero in, zero out */
    snprintf(args, sizeof args, T "--tensor v=%s -e 'transformer.ln_f.output[0, -1] = v' -e 'x = lm_head.output[0, -1].sum().save()'", path);
    prints(args, "x = tensor(0.)\n");
    /* a named key, and the name itself; += adds it */
    snprintf(args, sizeof args, T "--tensor w=%s:w --tensor v=%s -e 'transformer.ln_f.output[0, -1] = v' "
                                  "-e 'transformer.ln_f.output[0, -1] += w * 0' -e 'x = lm_head.output[0, -1].sum().save()'", path2, path2);
    prints(args, "x = tensor(0.)\n");
    snprintf(args, sizeof args, T "--tensor u=%s -e 'u.save()'", path2);
    gbt_cli_fails(args, 1, "glassbox trace: --tensor u: ");
    snprintf(args, sizeof args, T "--tensor u=%s:nokey -e 'u.save()'", path2);
    gbt_cli_fails(args, 1, "glassbox trace: safetensors: ");
    gbt_cli_fails(T "--tensor =x.safetensors -e 'u.save()'", 1, "glassbox trace: --tensor takes NAME=FILE.safetensors[:KEY]");
    /* --edit: every run of the trace sees it; the trace's own statements come after */
    prints(T "--edit 'transformer.ln_f.output[:] = 0' -e 'x = lm_head.output.sum().save()'", "x = tensor(0.)\n");
    snprintf(args, sizeof args, T "--tensor v=%s --edit 'transformer.ln_f.output[0, -1] = v' -e 'x = lm_head.output[0, -1].sum().save()'", path);
    prints(args, "x = tensor(0.)\n");
    gbt_cli_fails(T "--edit 'transformer.hh.output[:] = 0' -e 'x = lm_head.output.save()'", 1, "glassbox trace: --edit:1: ");
    gb_tensor_free(zero), gb_tensor_free(one);
}
END_TEST

START_TEST(test_trace_reports_and_statements) {
    /* a saved value after a stop is reported, not left out */
    gbt_cli_result r = ok(T "-e 'transformer.h[0].output.stop()' -e 'x = lm_head.output.save()' -e 'y = transformer.h[0].output[0].shape.save()'");
    ck_assert_msg(strstr(r.err, "glassbox trace: warning: x was never produced (the run stopped before it"), "%s", r.err);
    ck_assert_msg(!strstr(r.out, "x ="), "%s", r.out);
    ck_assert_msg(strstr(r.out, "y = tensor([  1,   3, 128])"), "%s", r.out);
    gbt_cli_free(&r);
    /* a scan of a generation shows every step's shapes (one token a step
     * after the prompt), and says what it cannot show */
    prints(T "-n 3 --scan -e 'a = lm_head.next().output' -e 'b = lm_head.output' -e 'c = lm_head.next().next().output' "
             "-e 'k = transformer.h[0].next().next().output[1]' -e 'd = lm_head.next().next().next().output'",
           "a: [1, 1, 1024]\nb: [1, 3, 1024]\nc: [1, 1, 1024]\nk: [1, 4, 5, 32]\n"
           "d: no shape (the scan did not reach it: a stop, a false condition or a generation step beyond -n before it)\n");
    /* the logit lens at the last layer is the model's own prediction */
    r = ok(T "-e 'a = lm_head(transformer.ln_f(transformer.h[-1].output[0]))[0, -1].argmax(-1).save()' "
             "-e 'b = lm_head.output[0, -1].argmax(-1).save()'");
    char *a = strstr(r.out, "a = "), *b = strstr(r.out, "b = ");
    ck_assert_msg(a && b && !strncmp(a + 4, b + 4, strcspn(b + 4, "\n") + 1), "%s", r.out);
    gbt_cli_free(&r);
    /* hook=True cannot add to generation's KV cache */
    gbt_cli_fails(T "-n 2 -e 'a = lm_head(transformer.ln_f.output, hook=True).save()'", 1,
                  "glassbox trace: -e:1:5: call: a module call with hook=True cannot run during generation");
    /* attention weights from statements: each row sums to 1 (within float32's
     * rounding of a softmax, not necessarily exactly) */
    prints(T "-e 'w = ((transformer.h[0].attn.attn_weights[0, 0].sum(-1) - 1).abs() < 1e-6).save()'",
           "w = tensor([True, True, True])\n");
}
END_TEST

/* Sampling from the command line: a seed repeats its ids, temperature 0 is
 * greedy, and trace -n samples as generate does (the same loop). */
/* Blocks: a multi-line -e and a statements file (-f), with if/elif/else
 * and tracer.cond. lm_head has no bias, so the branch that zeroes ln_f's
 * output gives logits summing to 0; the other branch (ones) would not. */
START_TEST(test_trace_blocks) {
    static const char *const zeroing[] = {
        "if transformer.h[0].output[0].sum() != transformer.h[0].output[0].sum():\n"
        "    transformer.ln_f.output[:] = 1\n"
        "else:\n"
        "    transformer.ln_f.output[:] = 0\n"
        "x = lm_head.output.sum().save()",
        "h = transformer.h[0].output[0]\n"
        "if h.sum() > 1e30:\n"
        "    transformer.ln_f.output[:] = 1\n"
        "elif h.sum() < 1e30:  # taken\n"
        "    with tracer.cond(h.mean() == h.mean()):\n"
        "        transformer.ln_f.output[:] = 0\n"
        "        x = lm_head.output.sum().save()\n"
        "else:\n"
        "    transformer.ln_f.output[:] = 1",
    };
    char path[512], args[2048];
    snprintf(path, sizeof path, "%s/cli_block.py", gbt_tmp_dir());
    for (size_t i = 0; i < sizeof zeroing / sizeof *zeroing; i++) {
        snprintf(args, sizeof args, T "-e '%s'", zeroing[i]);
        prints(args, "x = tensor(0.)\n");
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "# statements for glassbox trace -f\n%s\n", zeroing[i]);
        fclose(f);
        snprintf(args, sizeof args, T "-f %s", path);
        prints(args, "x = tensor(0.)\n");
    }
    /* errors name the file, the line in it, the column and the line */
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "h = transformer.h[0].output[0]\nif h.sum() > 0:\n    x = h\n  y = h\n");
    fclose(f);
    snprintf(args, sizeof args, T "-f %s", path);
    char want[1024];
    snprintf(want, sizeof want, "glassbox trace: %s:4: unindent does not match any outer indentation level at column 3 in '  y = h'", path);
    gbt_cli_fails(args, 1, want);
    gbt_cli_fails(T "-e 'if 1:'", 1, "glassbox trace: -e:1: expected an indented block after 'if' statement on line 1");
    /* a run's error points at the line of the block and the column of the failing step */
    gbt_cli_fails(T "-e 'x = lm_head.output.argmax(-1)\nif x.sum() > 0:\n    y = x.softmax(-1).save()'", 1,
                  "glassbox trace: -e:3:10: softmax: not implemented for 'Long' (input [1, 3])");
    gbt_cli_fails(T "-f /nonexistent/statements.py", 1, "glassbox trace: -f /nonexistent/statements.py: No such file or directory");
}
END_TEST

/* The walkthrough's conditional cells ([84], [21], [85], [86]) as files for
 * -f, word for word, with --seed S: each prints what the cell prints in
 * plain Python after torch.manual_seed(S) (tests/oracle/trace_ops.py). */
START_TEST(test_trace_conditional_cells) {
    gbt_oracle *o = gbt_oracle_load("trace_ops");
    gb_tensor *cells = gbt_get(o, "ncells"), *n = gbt_get(o, "nseeds");
    char path[512], args[1024], key[64];
    snprintf(path, sizeof path, "%s/cli_cell.py", gbt_tmp_dir());
    for (int64_t c = 0; c < gb_tensor_numel(cells); c++) {
        snprintf(key, sizeof key, "cell.%lld.text", (long long)gbt_i64(cells, c));
        char *text = gbt_get_str(o, key);
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(text, f);
        fclose(f);
        for (int64_t i = 0; i < gbt_i64(n, 0); i += 3) {
            gb_tensor *seed = gbt_getf(o, "seed.%lld", (long long)i);
            snprintf(key, sizeof key, "cell.%lld.%lld", (long long)gbt_i64(cells, c), (long long)i);
            char *want = gbt_get_str(o, key);
            snprintf(args, sizeof args, T "-f %s --seed %lld", path, (long long)gbt_i64(seed, 0));
            prints(args, want);
            free(want);
            gb_tensor_free(seed);
        }
        free(text);
    }
    gb_tensor_free(cells), gb_tensor_free(n);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_sampling_options) {
    const char *g = "generate " GBT_BUNDLED " --ids 11,22,33 -n 12 --ids-out";
    char args[1024];
    snprintf(args, sizeof args, "%s --temperature 1.3 --top-k 50 --top-p 0.95 --seed 5", g);
    gbt_cli_result a = ok(args), b = ok(args), greedy = ok(g);
    ck_assert_str_eq(a.out, b.out);
    snprintf(args, sizeof args, "%s --temperature 0 --seed 5", g);
    gbt_cli_result zero = ok(args);
    ck_assert_str_eq(zero.out, greedy.out);
    snprintf(args, sizeof args, "%s --temperature 1.3 --top-k 50 --top-p 0.95 --seed 6", g);
    gbt_cli_result c = ok(args);
    ck_assert_msg(strcmp(a.out, c.out) || strcmp(a.out, greedy.out), "seeds 5 and 6 and greedy all gave %s", a.out);
    /* the trace's generator.output holds the same ids as generate's */
    gbt_cli_result t = ok("trace " GBT_BUNDLED " --ids 11,22,33 -n 12 --temperature 1.3 --top-k 50 --top-p 0.95 --seed 5 -e 'x = lm_head.output.sum()'");
    char want[512];
    snprintf(want, sizeof want, "generator.output = tensor([%.*s])", (int)(strchr(a.out, ']') - a.out), a.out);
    ck_assert_msg(strstr(t.out, "generator.output = tensor([["), "%s", t.out);
    char *got = strstr(t.out, "[[") + 2, flat[512];
    size_t k = 0;
    for (const char *q = got; *q && *q != ']' && k + 1 < sizeof flat; q++)
        if (*q != ' ' && *q != '\n') flat[k++] = *q;
    flat[k] = 0;
    char wantflat[512];
    k = 0;
    for (const char *q = a.out + 1; *q && *q != ']' && k + 1 < sizeof wantflat; q++)
        if (*q != ' ') wantflat[k++] = *q;
    wantflat[k] = 0;
    ck_assert_str_eq(flat, wantflat);
    gbt_cli_free(&a), gbt_cli_free(&b), gbt_cli_free(&c), gbt_cli_free(&greedy), gbt_cli_free(&zero), gbt_cli_free(&t);
    gbt_cli_fails("generate " GBT_BUNDLED " --ids 1 --temperature -1", 2, "glassbox generate: --temperature: -1 is out of range (0 to 1e+30) (see glassbox generate --help)");
    gbt_cli_fails("generate " GBT_BUNDLED " --ids 1 --seed x", 2, "glassbox generate: --seed: 'x' is not an integer (see glassbox generate --help)");
}
END_TEST

Suite *gb_suite_cli_trace(void) {
    Suite *s = suite_create("cli_trace");
    TCase *tc = tcase_create("cli_trace");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_trace_tensor_and_edit);
    tcase_add_test(tc, test_trace_reports_and_statements);
    tcase_add_test(tc, test_sampling_options);
    tcase_add_test(tc, test_trace_blocks);
    tcase_add_test(tc, test_trace_conditional_cells);
    suite_add_tcase(s, tc);
    return s;
}
