/* `glassbox lens`, `patch`, `attn` and the pictures on the bundled model.
 * Expected numbers: tests/oracle/lens.py (PyTorch with forward hooks on the
 * same checkpoint: the logit lens, the textbook patching loop, attention
 * patterns); known answers derived beside the checks. PNG files are read
 * back with Debian's stb_image, a decoder glassbox does not use. */
#include <math.h>
#include <stdlib.h>

#include "gbtest.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STBI_ONLY_PNG
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#pragma GCC diagnostic pop

#define EIFFEL "'The Eiffel Tower is in the city of'"
#define COLOSSEUM "'The Colosseum is in the city of'"

/* ---- reading CSV -------------------------------------------------------- */

enum { CSV_MAX_FIELDS = 16 };

/* The next record of *p (fields in buf, unquoted); false at the end. */
static bool csv_record(const char **p, char *buf, size_t size, const char **fields, int *n) {
    const char *s = *p;
    size_t k = 0;
    *n = 0;
    if (!*s) return false;
    while (*s && *s != '\n') {
        fields[(*n)++] = buf + k;
        ck_assert_int_le(*n, CSV_MAX_FIELDS);
        if (*s == '"') {
            for (s++; *s && !(*s == '"' && s[1] != '"'); s++) {
                if (*s == '"') s++; /* a doubled quote */
                buf[k++] = *s;
            }
            s++;
        } else {
            while (*s && *s != ',' && *s != '\n') buf[k++] = *s++;
        }
        buf[k++] = 0;
        ck_assert_uint_lt(k, size);
        if (*s == ',') s++;
    }
    *p = *s ? s + 1 : s;
    return true;
}

/* f32 or i64 element i of t as a double. */
static double at(const gb_tensor *t, int64_t i) {
    gb_tensor *flat = gb_reshape((gb_tensor *)t, 1, (int64_t[]){gb_tensor_numel(t)});
    double v = NAN;
    gb_tensor_get(flat, (int64_t[]){i}, &v);
    gb_tensor_free(flat);
    return v;
}

/* ---- pictures ----------------------------------------------------------- */

/* The "picture: PATH (W x H pixels)" line decodes as a PNG of that size,
 * with at least min_colours colours and a quarter of its pixels not white. */
static void check_png(const char *out, const char *path, int min_colours) {
    char want[600];
    const char *line = strstr(out, "picture: ");
    ck_assert_msg(line != NULL, "no picture line in '%s'", out);
    int w = 0, h = 0;
    snprintf(want, sizeof want, "picture: %s (%%d x %%d pixels)", path);
    ck_assert_int_eq(sscanf(line, want, &w, &h), 2);
    int dw, dh, ch;
    unsigned char *px = stbi_load(path, &dw, &dh, &ch, 3);
    ck_assert_msg(px != NULL, "%s does not decode: %s", path, stbi_failure_reason());
    ck_assert_int_eq(dw, w);
    ck_assert_int_eq(dh, h);
    int64_t n = (int64_t)w * h, white = 0;
    static unsigned char seen[1 << 15]; /* colours at 5 bits a channel */
    memset(seen, 0, sizeof seen);
    int colours = 0;
    for (int64_t i = 0; i < n; i++) {
        unsigned char *p = px + 3 * i;
        white += p[0] == 255 && p[1] == 255 && p[2] == 255;
        int key = (p[0] >> 3) << 10 | (p[1] >> 3) << 5 | p[2] >> 3;
        colours += !seen[key];
        seen[key] = 1;
    }
    ck_assert_msg(white < n * 3 / 4, "%s is %lld%% white", path, (long long)(100 * white / n));
    ck_assert_msg(colours >= min_colours, "%s has %d colours", path, colours);
    stbi_image_free(px);
}

/* ---- the logit lens ------------------------------------------------------- */

/* Every layer's top 3 at every position, in the CSV and the table, are
 * PyTorch's; the picture decodes. */
START_TEST(test_lens_csv_table_png) {
    gbt_oracle *o = gbt_oracle_load_or_skip("lens", "test_lens_csv_table_png");
    if (!o) return;
    gb_tensor *top = gbt_get(o, "lens.top"), *prob = gbt_get(o, "lens.prob");
    int64_t L = gb_tensor_dim(top, 0), T = gb_tensor_dim(top, 1), K = gb_tensor_dim(top, 2);
    char args[1200], csv[512], png[512];
    snprintf(csv, sizeof csv, "%s/lens.csv", gbt_tmp_dir());
    snprintf(png, sizeof png, "%s/lens.png", gbt_tmp_dir());
    snprintf(args, sizeof args, "lens " GBT_BUNDLED " -p " EIFFEL " --top %lld --csv %s --png %s", (long long)K, csv, png);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "lens failed: %s", r.err);
    char *text = gbt_read_file(csv, NULL), buf[1024];
    gbt_ok(text);
    const char *p = text, *f[CSV_MAX_FIELDS];
    int n, rows = 0;
    ck_assert(csv_record(&p, buf, sizeof buf, f, &n));
    ck_assert_str_eq(f[0], "layer"); /* the header */
    while (csv_record(&p, buf, sizeof buf, f, &n)) {
        ck_assert_int_eq(n, 7); /* layer,position,input,rank,token_id,token,probability */
        int l = atoi(f[0]), t = atoi(f[1]), k = atoi(f[3]);
        int64_t i = (l * T + t) * K + k;
        ck_assert_msg(atoll(f[4]) == (long long)at(top, i), "layer %d position %d rank %d: token %s, PyTorch's %lld", l,
                      t, k, f[4], (long long)at(top, i));
        ck_assert_msg(fabs(atof(f[6]) - at(prob, i)) < 1e-5, "layer %d position %d rank %d: p = %s, PyTorch's %.9g", l,
                      t, k, f[6], at(prob, i));
        /* the table shows the same token and probability, to 4 decimals */
        char cell[300];
        snprintf(cell, sizeof cell, "'%s' %.4f", f[5], at(prob, i));
        if (!strpbrk(f[5], "'\\\n\t")) ck_assert_msg(strstr(r.out, cell) != NULL, "no %s in the table", cell);
        rows++;
    }
    ck_assert_int_eq(rows, L * T * K);
    check_png(r.out, png, 20);
    free(text);
    gbt_cli_free(&r);
    gb_tensor_free(top), gb_tensor_free(prob);
    gbt_oracle_free(o);
}
END_TEST

/* Known answer: the last layer's output through the final norm and the
 * unembedding is the model's own forward, so the lens's last layer is the
 * model's prediction at every position (PyTorch's own logits, and
 * `glassbox run --top` at the last position). */
START_TEST(test_lens_last_layer_is_prediction) {
    gbt_oracle *o = gbt_oracle_load_or_skip("lens", "test_lens_last_layer_is_prediction");
    if (!o) return;
    gb_tensor *own = gbt_get(o, "model.top"), *own_p = gbt_get(o, "model.prob");
    int64_t T = gb_tensor_dim(own, 0), K = gb_tensor_dim(own, 1);
    char args[1200], csv[512];
    snprintf(csv, sizeof csv, "%s/lens_last.csv", gbt_tmp_dir());
    snprintf(args, sizeof args, "lens " GBT_BUNDLED " -p " EIFFEL " --top %lld --csv %s", (long long)K, csv);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "lens failed: %s", r.err);
    char *text = gbt_read_file(csv, NULL), buf[1024], line[300];
    const char *p = text, *f[CSV_MAX_FIELDS];
    int n, last = -1, checked = 0;
    csv_record(&p, buf, sizeof buf, f, &n);
    while (csv_record(&p, buf, sizeof buf, f, &n)) last = atoi(f[0]) > last ? atoi(f[0]) : last;
    gbt_cli_result run = gbt_cli("run " GBT_BUNDLED " -p " EIFFEL " --top 3");
    ck_assert_msg(run.status == 0, "run failed: %s", run.err);
    /* trace --top prints the same block after the statements' values */
    gbt_cli_result tr = gbt_cli("trace " GBT_BUNDLED " -p " EIFFEL " --top 3");
    ck_assert_msg(tr.status == 0, "trace failed: %s", tr.err);
    ck_assert_str_eq(tr.out, run.out);
    gbt_cli_free(&tr);
    /* with -n, the decoded text too: the prompt comes back as it was */
    tr = gbt_cli("trace " GBT_BUNDLED " -p " EIFFEL " -n 1");
    ck_assert_msg(strstr(tr.out, "\ngenerator.text = " EIFFEL) == NULL, "the text has no new token:\n%s", tr.out);
    ck_assert_msg(strstr(tr.out, "\ngenerator.text = 'The Eiffel Tower is in the city of ") != NULL, "%s", tr.out);
    gbt_cli_free(&tr);
    for (p = text, csv_record(&p, buf, sizeof buf, f, &n); csv_record(&p, buf, sizeof buf, f, &n);) {
        if (atoi(f[0]) != last) continue;
        int64_t i = atoi(f[1]) * K + atoi(f[3]);
        ck_assert_int_eq(atoll(f[4]), (long long)at(own, i));
        ck_assert_msg(fabs(atof(f[6]) - at(own_p, i)) < 1e-5, "position %s: %s vs %.9g", f[1], f[6], at(own_p, i));
        if (atoi(f[1]) == T - 1) { /* run --top prints "  'TOKEN'  ID  p = P" */
            snprintf(line, sizeof line, "%lld  p = %.4f\n", (long long)at(own, i), at(own_p, i));
            ck_assert_msg(strstr(run.out, line) != NULL, "run --top has no '%s':\n%s", line, run.out);
        }
        checked++;
    }
    ck_assert_int_eq(checked, T * K);
    free(text);
    gbt_cli_free(&r), gbt_cli_free(&run);
    gb_tensor_free(own), gb_tensor_free(own_p);
    gbt_oracle_free(o);
}
END_TEST

/* ---- activation patching ---------------------------------------------------- */

/* Each kind of patching in CSV and table against PyTorch's loop; batches of
 * 16 invokes: 44 patches take 3 forward passes. */
START_TEST(test_patch_against_pytorch) {
    gbt_oracle *o = gbt_oracle_load_or_skip("lens", "test_patch_against_pytorch");
    if (!o) return;
    const char *whats[] = {"resid", "attn", "mlp"};
    gb_tensor *clean = gbt_get(o, "patch.clean"), *corrupt = gbt_get(o, "patch.corrupt");
    gb_tensor *target = gbt_get(o, "patch.target"), *foil = gbt_get(o, "patch.foil");
    for (int w = 0; w < 3; w++) {
        gb_tensor *diff = gbt_getf(o, "patch.%s.diff", whats[w]), *rec = gbt_getf(o, "patch.%s.recovered", whats[w]);
        int64_t L = gb_tensor_dim(diff, 0), T = gb_tensor_dim(diff, 1);
        char args[1200], csv[512], want[256];
        snprintf(csv, sizeof csv, "%s/patch_%s.csv", gbt_tmp_dir(), whats[w]);
        snprintf(args, sizeof args, "patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " COLOSSEUM " --what %s --batch 16 --csv %s",
                 whats[w], csv);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "patch --what %s failed: %s", whats[w], r.err);
        /* the metric's tokens are ids PyTorch chose; the tokenizer names them */
        /* printed to 4 decimals: PyTorch's value within a rounding step and
         * float32's summation-order differences */
        snprintf(want, sizeof want, "(tokens %lld and %lld) at the last position: clean ", (long long)at(target, 0),
                 (long long)at(foil, 0));
        const char *metric = strstr(r.out, want);
        double got_clean, got_corrupt;
        ck_assert_msg(metric && sscanf(metric + strlen(want), "%lf, corrupted %lf", &got_clean, &got_corrupt) == 2,
                      "no '%s<clean>, corrupted <corrupted>' in:\n%s", want, r.out);
        ck_assert_msg(fabs(got_clean - at(clean, 0)) <= 2e-4 && fabs(got_corrupt - at(corrupt, 0)) <= 2e-4,
                      "metric: clean %.4f, corrupted %.4f; PyTorch's %.6f, %.6f", got_clean, got_corrupt, at(clean, 0),
                      at(corrupt, 0));
        snprintf(want, sizeof want, "%lld layers x %lld positions = %lld patches in 3 batched forward passes", (long long)L,
                 (long long)T, (long long)(L * T));
        ck_assert_msg(strstr(r.out, want) != NULL, "no '%s' in:\n%s", want, r.out);
        char *text = gbt_read_file(csv, NULL), buf[1024];
        const char *p = text, *f[CSV_MAX_FIELDS];
        int n, rows = 0;
        csv_record(&p, buf, sizeof buf, f, &n);
        while (csv_record(&p, buf, sizeof buf, f, &n)) {
            ck_assert_int_eq(n, 7); /* what,layer,position,clean_token,corrupted_token,logit_diff,recovered */
            ck_assert_str_eq(f[0], whats[w]);
            int64_t i = atoi(f[1]) * T + atoi(f[2]);
            ck_assert_msg(fabs(atof(f[5]) - at(diff, i)) < 1e-4, "%s layer %s position %s: %s, PyTorch's %.9g", whats[w],
                          f[1], f[2], f[5], at(diff, i));
            ck_assert_msg(fabs(atof(f[6]) - at(rec, i)) < 1e-5, "%s layer %s position %s: recovered %s, PyTorch's %.9g",
                          whats[w], f[1], f[2], f[6], at(rec, i));
            rows++;
        }
        ck_assert_int_eq(rows, L * T);
        /* the table: position T-1's row ends with every layer's recovered value */
        char row[256] = "";
        for (int64_t l = 0; l < L; l++) {
            size_t k = strlen(row);
            double v = at(rec, l * T + T - 1);
            snprintf(row + k, sizeof row - k, " %10.4f", v);
        }
        strcat(row, "\n");
        ck_assert_msg(strstr(r.out, row) != NULL, "no row '%s' in:\n%s", row, r.out);
        free(text);
        gbt_cli_free(&r);
        gb_tensor_free(diff), gb_tensor_free(rec);
    }
    gb_tensor_free(clean), gb_tensor_free(corrupt), gb_tensor_free(target), gb_tensor_free(foil);
    gbt_oracle_free(o);
}
END_TEST

/* Known answers without an oracle: the last block's output at the last
 * position is everything the last logits depend on, so patching it from the
 * clean run recovers 100% (the clean run's metric exactly) and patching any
 * other position of the last layer recovers nothing; position 0 is the same
 * token ("The") in both prompts, so under causal attention its values are
 * the same and patching them recovers nothing at any layer. Also --target
 * and --foil name the tokens, and the picture decodes. */
START_TEST(test_patch_known_answers) {
    char args[1200], csv[512], png[512];
    snprintf(csv, sizeof csv, "%s/patch_known.csv", gbt_tmp_dir());
    snprintf(png, sizeof png, "%s/patch.png", gbt_tmp_dir());
    snprintf(args, sizeof args,
             "patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " COLOSSEUM " --target ' Paris' --foil '#465' --csv %s --png %s",
             csv, png);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "patch failed: %s", r.err);
    ck_assert_msg(strstr(r.out, "logit(' Paris') - logit(' Rome')") != NULL, "%s", r.out); /* #465 is ' Rome' */
    ck_assert_msg(strstr(r.out, "in 2 batched forward passes") != NULL, "%s", r.out); /* 44 patches, batches of 32 */
    char *text = gbt_read_file(csv, NULL), buf[1024];
    const char *p = text, *f[CSV_MAX_FIELDS];
    int n, L = 4, T = 0;
    csv_record(&p, buf, sizeof buf, f, &n);
    for (const char *q = p; csv_record(&q, buf, sizeof buf, f, &n);) T = atoi(f[2]) + 1 > T ? atoi(f[2]) + 1 : T;
    while (csv_record(&p, buf, sizeof buf, f, &n)) {
        int l = atoi(f[1]), t = atoi(f[2]);
        double rec = atof(f[6]);
        /* to 1e-6: a batch of 32 rows adds in another order than one row */
        if (l == L - 1 && t == T - 1) ck_assert_msg(fabs(rec - 1) < 1e-6, "last layer, last position: %g", rec);
        else if (l == L - 1 || t == 0) ck_assert_msg(fabs(rec) < 1e-6, "layer %d position %d: %g, expected 0", l, t, rec);
    }
    check_png(r.out, png, 20);
    free(text);
    gbt_cli_free(&r);
}
END_TEST

START_TEST(test_patch_errors) {
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt 'The Colosseum is located in the city of'", 1,
                  "glassbox patch: the clean prompt has 11 tokens and the corrupted one 12; patching position by position "
                  "needs prompts of the same length");
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " EIFFEL, 1,
                  "glassbox patch: the target and the foil are both token");
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " EIFFEL " --target ' Paris' --foil ' Rome'", 1,
                  "glassbox patch: the logit difference is");
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " COLOSSEUM " --target ' Paris Rome'", 1,
                  "glassbox patch: --target: ' Paris Rome' is 2 tokens, not one (or give the id: #ID)");
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " COLOSSEUM " --foil '#1024'", 1,
                  "glassbox patch: --foil: '#1024' is not a token id from #0 to #1023");
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " COLOSSEUM " --what heads", 2,
                  "glassbox patch: --what: 'heads' is not one of resid|attn|mlp (see glassbox patch --help)");
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL, 2, "glassbox patch: give both prompts");
    gbt_cli_fails("patch " GBT_BUNDLED " --clean " EIFFEL " --corrupt " COLOSSEUM " --batch 0", 2,
                  "glassbox patch: --batch: 0 is out of range (1 to 100000) (see glassbox patch --help)");
    gbt_cli_fails("lens " GBT_BUNDLED " -p " EIFFEL " --layer 1", 2, "glassbox lens: unknown option '--layer' (see glassbox lens --help)");
    gbt_cli_fails("lens " GBT_BUNDLED " -p " EIFFEL " --png /nonexistent/dir/x.png", 1,
                  "glassbox lens: cannot write the picture /nonexistent/dir/x.png");
}
END_TEST

/* ---- attention patterns ------------------------------------------------------ */

/* One head's table against PyTorch's pattern; every head's picture decodes. */
START_TEST(test_attn) {
    gbt_oracle *o = gbt_oracle_load_or_skip("lens", "test_attn");
    if (!o) return;
    gb_tensor *w = gbt_get(o, "attn.1");
    int64_t H = gb_tensor_dim(w, 0), T = gb_tensor_dim(w, 1);
    for (int64_t h = 0; h < H; h++) {
        char args[600];
        snprintf(args, sizeof args, "attn " GBT_BUNDLED " -p " EIFFEL " --layer 1 --head %lld", (long long)h);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "attn failed: %s", r.err);
        /* after the header lines, row i ends with T numbers: the pattern's row i */
        const char *line = strchr(strchr(r.out, '\n') + 1, '\n') + 1;
        for (int64_t i = 0; i < T; i++) {
            const char *end = strchr(line, '\n'), *s = end;
            for (int64_t k = T - 1; k >= 0; k--) {
                while (s[-1] == ' ') s--;
                while (s[-1] != ' ') s--;
                double v = atof(s), want = at(w, (h * T + i) * T + k);
                ck_assert_msg(fabs(v - want) <= 5e-4 + 1e-6, "head %lld query %lld key %lld: %g, PyTorch's %.6f",
                              (long long)h, (long long)i, (long long)k, v, want);
            }
            line = end + 1;
        }
        gbt_cli_free(&r);
    }
    char png[512], args[1200];
    snprintf(png, sizeof png, "%s/attn.png", gbt_tmp_dir());
    snprintf(args, sizeof args, "attn " GBT_BUNDLED " -p " EIFFEL " --layer -1 --png %s", png);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "attn failed: %s", r.err);
    check_png(r.out, png, 20);
    gbt_cli_free(&r);
    gbt_cli_fails("attn " GBT_BUNDLED " -p " EIFFEL " --layer 4", 1,
                  "glassbox attn: --layer 4: the model has 4 layers (0 to 3, or -1 for the last)");
    gbt_cli_fails("attn " GBT_BUNDLED " -p " EIFFEL " --layer 0 --head 4", 1, "glassbox attn: --head 4: layer 0 has 4 heads");
    gbt_cli_fails("attn " GBT_BUNDLED " -p " EIFFEL, 2, "glassbox attn: give the layer: --layer L");
    gb_tensor_free(w);
    gbt_oracle_free(o);
}
END_TEST

/* --scores: each head's table against PyTorch's scores before softmax
 * (q k^T / sqrt(d)), '-' exactly where PyTorch's causal mask removes a key;
 * the picture decodes and shows the masked cells grey. */
START_TEST(test_attn_scores) {
    gbt_oracle *o = gbt_oracle_load_or_skip("lens", "test_attn_scores");
    if (!o) return;
    gb_tensor *w = gbt_get(o, "attn_scores.1");
    int64_t H = gb_tensor_dim(w, 0), T = gb_tensor_dim(w, 1);
    for (int64_t h = 0; h < H; h++) {
        char args[600];
        snprintf(args, sizeof args, "attn " GBT_BUNDLED " -p " EIFFEL " --layer 1 --scores --head %lld", (long long)h);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "attn failed: %s", r.err);
        ck_assert_msg(strstr(r.out, "scores before softmax (-: masked)"), "%s", r.out);
        const char *line = strchr(strchr(r.out, '\n') + 1, '\n') + 1;
        for (int64_t i = 0; i < T; i++) {
            const char *end = strchr(line, '\n'), *s = end;
            for (int64_t k = T - 1; k >= 0; k--) {
                while (s[-1] == ' ') s--;
                while (s[-1] != ' ') s--;
                double want = at(w, (h * T + i) * T + k);
                if (isinf(want)) {
                    ck_assert_msg(s[0] == '-' && (s[1] == ' ' || s[1] == '\n'), "head %lld query %lld key %lld: '%.8s', masked in PyTorch",
                                  (long long)h, (long long)i, (long long)k, s);
                } else {
                    double v = atof(s);
                    ck_assert_msg(fabs(v - want) <= 5e-4 + 1e-4 * fabs(want), "head %lld query %lld key %lld: %g, PyTorch's %.6f",
                                  (long long)h, (long long)i, (long long)k, v, want);
                }
            }
            line = end + 1;
        }
        gbt_cli_free(&r);
    }
    char png[512], args[1200];
    snprintf(png, sizeof png, "%s/attn_scores.png", gbt_tmp_dir());
    snprintf(args, sizeof args, "attn " GBT_BUNDLED " -p " EIFFEL " --layer 1 --scores --png %s", png);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "attn failed: %s", r.err);
    check_png(r.out, png, 20);
    int pw, ph, ch;
    unsigned char *px = stbi_load(png, &pw, &ph, &ch, 3);
    int64_t grey = 0; /* the heatmap's colour of a cell with no value */
    for (int64_t i = 0; px && i < (int64_t)pw * ph; i++) grey += px[3 * i] == 200 && px[3 * i + 1] == 200 && px[3 * i + 2] == 200;
    /* each head: T (T - 1) / 2 masked cells of 32 x 32 pixels (T <= 12) */
    ck_assert_msg(grey >= H * T * (T - 1) / 2 * 32 * 32 * 9 / 10, "%lld grey pixels", (long long)grey);
    stbi_image_free(px);
    gbt_cli_free(&r);
    gb_tensor_free(w);
    gbt_oracle_free(o);
}
END_TEST

/* On a Llama (stories260k, ../shared): the lens's last layer at each
 * position of "Once upon a time" is the next token of ../shared's known
 * greedy continuation from BOS (1, 403, 407, 261, 378, 432, ...); an
 * attention pattern is causal and each query's row sums to 1. */
START_TEST(test_lens_llama) {
    char *dir = gbt_shared_path("models/stories260k", "test_lens_llama");
    if (!dir) return;
    const long long next[] = {403, 407, 261, 378, 432};
    char args[4400], csv[512], buf[1024];
    snprintf(csv, sizeof csv, "%s/lens_llama.csv", gbt_tmp_dir());
    snprintf(args, sizeof args, "lens %s --ids 1,403,407,261,378 --top 1 --csv %s", dir, csv);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "lens failed: %s", r.err);
    ck_assert_msg(strstr(r.out, "through model.norm and lm_head") != NULL, "%s", r.out);
    char *text = gbt_read_file(csv, NULL);
    const char *p = text, *f[CSV_MAX_FIELDS];
    int n, checked = 0;
    csv_record(&p, buf, sizeof buf, f, &n);
    while (csv_record(&p, buf, sizeof buf, f, &n))
        if (atoi(f[0]) == 4) { /* 5 layers */
            ck_assert_int_eq(atoll(f[4]), next[atoi(f[1])]);
            checked++;
        }
    ck_assert_int_eq(checked, 5);
    free(text);
    gbt_cli_free(&r);

    snprintf(args, sizeof args, "attn %s --ids 1,403,407,261,378 --layer -1 --head 0", dir);
    r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "attn failed: %s", r.err);
    const char *line = strchr(strchr(r.out, '\n') + 1, '\n') + 1;
    for (int i = 0; i < 5; i++) {
        const char *end = strchr(line, '\n'), *s = end;
        double sum = 0;
        for (int k = 4; k >= 0; k--) {
            while (s[-1] == ' ') s--;
            while (s[-1] != ' ') s--;
            double v = atof(s);
            if (k > i) ck_assert_msg(v == 0, "query %d attends to the later key %d: %g", i, k, v);
            sum += v;
        }
        ck_assert_msg(fabs(sum - 1) <= 5 * 5e-4, "query %d: the row sums to %g", i, sum); /* 5 values rounded to 3 decimals */
        line = end + 1;
    }
    gbt_cli_free(&r);
    free(dir);
}
END_TEST

/* trace --png draws the statements' saved values, one row each: the
 * attribution of docs/recipes.md (rows of T values, the tokens below). */
START_TEST(test_trace_png) {
    char png[512], args[1600];
    snprintf(png, sizeof png, "%s/trace.png", gbt_tmp_dir());
    snprintf(args, sizeof args,
             "trace " GBT_BUNDLED " -p " EIFFEL " -e 'transformer.wte.output.requires_grad_()'"
             " -e 'a0 = (transformer.h[0].input * transformer.h[0].input.grad).sum(-1).save()'"
             " -e 'a1 = (transformer.h[1].input * transformer.h[1].input.grad).sum(-1).save()'"
             " -e 'lm_head.output[0, -1, 498].backward()' --png %s --title 'input x gradient'", png);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "trace --png failed: %s", r.err);
    check_png(r.out, png, 20);
    gbt_cli_free(&r);
    snprintf(args, sizeof args,
             "trace " GBT_BUNDLED " -p " EIFFEL " -e 'a = lm_head.output[0, -1].save()' -e 'b = lm_head.output[0, :, 0].save()' --png %s",
             png);
    gbt_cli_fails(args, 1, "glassbox trace: --png: the saved values must be rows of one length (vectors or matrices); b is not");
    snprintf(args, sizeof args, "trace " GBT_BUNDLED " -p " EIFFEL " --png %s", png);
    gbt_cli_fails(args, 1, "glassbox trace: --png: no saved values to draw");
}
END_TEST

/* trace --top with two prompts (invokes): each row's top token is
 * PyTorch's prediction for that row of the left-padded batch
 * (tests/oracle/bundled.py, padded.next). */
START_TEST(test_trace_top_rows) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_trace_top_rows");
    if (!o) return;
    gb_tensor *next = gbt_get(o, "padded.next");
    gbt_cli_result r = gbt_cli("trace " GBT_BUNDLED " -p " EIFFEL " -p 'Vatican is located in the city of' --top 1");
    ck_assert_msg(r.status == 0, "trace failed: %s", r.err);
    char want[64];
    for (int row = 0; row < 2; row++) {
        const char *at_row = strstr(r.out, row ? "row 1:\n" : "row 0:\n");
        ck_assert_msg(at_row != NULL, "%s", r.out);
        snprintf(want, sizeof want, " %6lld  p = ", (long long)gbt_i64(next, row));
        const char *hit = strstr(at_row, want);
        ck_assert_msg(hit && (row || hit < strstr(r.out, "row 1:")), "row %d: no '%s' in:\n%s", row, want, r.out);
    }
    gbt_cli_free(&r);
    gb_tensor_free(next);
    gbt_oracle_free(o);
}
END_TEST

/* ---- examples/recipes.c ------------------------------------------------------ */

/* The numbers on the line of out starting with prefix, after its ':' (n of
 * them) into v. */
static void numbers_after(const char *out, const char *prefix, int n, double *v) {
    const char *line = strstr(out, prefix);
    ck_assert_msg(line != NULL, "no line '%s' in:\n%s", prefix, out);
    const char *s = strchr(line + strlen(prefix), ':') + 1;
    for (int i = 0; i < n; i++) {
        char *end;
        v[i] = strtod(s, &end);
        ck_assert_msg(end != s, "line '%s': %d numbers, expected %d", prefix, i, n);
        s = end;
    }
}

/* The C recipes of docs/recipes.md print PyTorch's numbers (to the 4
 * decimals they print): the lens's top token per layer at the last
 * position, the patching sweep, steering, attribution and one head's
 * attention pattern. */
START_TEST(test_recipes_example) {
    gbt_oracle *o = gbt_oracle_load_or_skip("lens", "test_recipes_example");
    if (!o) return;
    const char *b = getenv("GB_BUILD_DIR");
    char cmd[1200], outpath[512];
    snprintf(outpath, sizeof outpath, "%s/recipes.out", gbt_tmp_dir());
    snprintf(cmd, sizeof cmd, "'%s/examples/recipes' " GBT_BUNDLED " >'%s'", b ? b : "build", outpath);
    ck_assert_int_eq(system(cmd), 0);
    char *out = gbt_read_file(outpath, NULL), prefix[64];
    gbt_ok(out);
    gb_tensor *prob = gbt_get(o, "lens.prob"), *rec = gbt_get(o, "patch.resid.recovered"), *attr = gbt_get(o, "attr");
    gb_tensor *w = gbt_get(o, "attn.1");
    int64_t L = gb_tensor_dim(rec, 0), T = gb_tensor_dim(rec, 1), K = gb_tensor_dim(prob, 2);
    double v[64], tol = 5e-5 + 1e-6;
    for (int64_t l = 0; l < L; l++) {
        snprintf(prefix, sizeof prefix, "lens: layer %lld:", (long long)l);
        const char *line = strstr(out, prefix), *end = line ? strchr(line, '\n') : NULL;
        ck_assert(end != NULL);
        while (end[-1] != ' ') end--; /* the line's last word: the probability */
        double p = atof(end);
        ck_assert_msg(fabs(p - at(prob, (l * T + T - 1) * K)) < tol, "%s %g", prefix, p);
        snprintf(prefix, sizeof prefix, "patch: layer %lld", (long long)l);
        numbers_after(out, prefix, (int)T, v);
        for (int64_t t = 0; t < T; t++) ck_assert_msg(fabs(v[t] - at(rec, l * T + t)) < tol, "%s position %lld", prefix, (long long)t);
        snprintf(prefix, sizeof prefix, "attr: layer %lld", (long long)l);
        numbers_after(out, prefix, (int)T, v);
        for (int64_t t = 0; t < T; t++) ck_assert_msg(fabs(v[t] - at(attr, l * T + t)) < tol, "%s position %lld", prefix, (long long)t);
    }
    for (int64_t i = 0; i < T; i++) { /* head 0 of block 1 */
        snprintf(prefix, sizeof prefix, "attn: query %lld", (long long)i);
        numbers_after(out, prefix, (int)T, v);
        for (int64_t k = 0; k < T; k++) ck_assert_msg(fabs(v[k] - at(w, i * T + k)) < tol, "%s key %lld", prefix, (long long)k);
    }
    char want[200];
    gb_tensor *pp = gbt_get(o, "steer.plain.prob"), *sp = gbt_get(o, "steer.steered.prob");
    snprintf(want, sizeof want, "steer: plain ' Paris' %.4f, steered ' Rome' %.4f\n", at(pp, 0), at(sp, 0));
    ck_assert_msg(strstr(out, want) != NULL, "no '%s' in:\n%s", want, out);
    gb_tensor *pt = gbt_get(o, "steer.plain.top"), *st = gbt_get(o, "steer.steered.top"), *tg = gbt_get(o, "patch.target"),
              *fo = gbt_get(o, "patch.foil");
    /* ' Paris' and ' Rome' are the patching oracle's target and foil */
    ck_assert(at(pt, 0) == at(tg, 0) && at(st, 0) == at(fo, 0));
    gb_tensor_free(pt), gb_tensor_free(st), gb_tensor_free(tg), gb_tensor_free(fo), gb_tensor_free(pp), gb_tensor_free(sp);
    gb_tensor_free(prob), gb_tensor_free(rec), gb_tensor_free(attr), gb_tensor_free(w);
    free(out);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_lens(void) {
    Suite *s = suite_create("lens");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_lens_csv_table_png);
    tcase_add_test(tc, test_lens_last_layer_is_prediction);
    tcase_add_test(tc, test_patch_against_pytorch);
    tcase_add_test(tc, test_patch_known_answers);
    tcase_add_test(tc, test_patch_errors);
    tcase_add_test(tc, test_attn);
    tcase_add_test(tc, test_attn_scores);
    tcase_add_test(tc, test_lens_llama);
    tcase_add_test(tc, test_recipes_example);
    tcase_add_test(tc, test_trace_png);
    tcase_add_test(tc, test_trace_top_rows);
    suite_add_tcase(s, tc);
    return s;
}
