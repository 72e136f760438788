/* `glassbox train` against tests/oracle/train.py, a PyTorch run of the same
 * model, initialisation, data order, schedule, clipping and AdamW; resuming,
 * --init, determinism, the saved directory, and errors. */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gbtest.h"

/* The oracle's files and the run's arguments, in buf. */
static const char *oracle_dir(char *buf, size_t size) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/train", gbt_tmp_dir());
    mkdir(tmp, 0755); /* for the runs' outputs */
    const char *d = getenv("GB_ORACLE_DIR");
    snprintf(buf, size, "%s/train_files", d ? d : "build/oracle");
    return buf;
}

/* Blanks out of the oracle's arguments (--name value ...) each option that
 * extra gives again: glassbox refuses an option given twice. */
static void drop_given(char *run, const char *extra) {
    for (const char *p = strstr(extra, "--"); p; p = strstr(p + 2, "--")) {
        char opt[64];
        snprintf(opt, sizeof opt, "%.*s ", (int)strcspn(p, " "), p);
        char *at = strstr(run, opt);
        if (at) memset(at, ' ', strlen(opt) + strcspn(at + strlen(opt), " "));
    }
}

/* Train into $tmp/train/NAME with the oracle's arguments plus extra; the
 * command must succeed and print nothing (stderr is not a terminal). */
static void train(gbt_oracle *o, const char *name, const char *extra) {
    char dir[4200], args[16384];
    char *run = gbt_get_str(o, "args");
    const char *tmp = gbt_tmp_dir(), *d = oracle_dir(dir, sizeof dir);
    drop_given(run, extra);
    snprintf(
        args, sizeof args,
        "train --corpus %s/corpus.txt --tokenizer %s/tok %s --threads 2 --out %s/train/%s --log %s/train/%s.csv %s", d,
        d, run, tmp, name, tmp, name, extra);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0, "glassbox %s: exit %d: %s", args, r.status, r.err);
    ck_assert_msg(!*r.out && !*r.err, "glassbox train printed '%s' '%s'", r.out, r.err);
    gbt_cli_free(&r);
    free(run);
}

static char *tmp_file(const char *fmt, const char *a) {
    char rel[512], *path = malloc(4800);
    snprintf(rel, sizeof rel, fmt, a);
    snprintf(path, 4800, "%s/train/%s", gbt_tmp_dir(), rel);
    return path;
}

static char *read_tmp(const char *fmt, const char *a, size_t *len) {
    char *path = tmp_file(fmt, a), *text = gbt_read_file(path, len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    free(path);
    return text;
}

/* Two files have the same bytes. */
static void same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = read_tmp("%s", a, &na), *y = read_tmp("%s", b, &nb);
    ck_assert_msg(na == nb && !memcmp(x, y, na), "%s and %s differ", a, b);
    free(x), free(y);
}

/* Column col of a --log CSV (steps first+1, ...), as a [rows] f32 tensor. */
static gb_tensor *csv_column(const char *name, int col, int64_t first, int64_t rows) {
    char *text = read_tmp("%s.csv", name, NULL);
    ck_assert_msg(!strncmp(text, "step,lr,loss,grad_norm,tokens_per_s\n", 36), "CSV header: %.60s", text);
    gb_tensor *t = gb_zeros(1, (int64_t[]){rows}, GB_DTYPE_F32);
    float *v = gb_tensor_f32(t);
    char *line = strchr(text, '\n') + 1;
    for (int64_t i = 0; i < rows; i++) {
        ck_assert_msg(*line, "%s.csv has %lld rows, expected %lld", name, (long long)i, (long long)rows);
        ck_assert_int_eq(strtoll(line, NULL, 10), first + i + 1);
        char *p = line;
        for (int c = 0; c < col; c++) p = strchr(p, ',') + 1;
        v[i] = strtof(p, NULL);
        line = strchr(line, '\n') + 1;
    }
    ck_assert_msg(!*line, "%s.csv has more than %lld rows", name, (long long)rows);
    free(text);
    return t;
}

static double rms(gb_tensor *t) {
    gb_tensor *c = gb_contiguous(t);
    const float *v = gb_tensor_f32(c);
    double sq = 0;
    for (int64_t i = 0; i < gb_tensor_numel(c); i++) sq += (double)v[i] * v[i];
    gb_tensor_free(c);
    return sqrt(sq / (double)gb_tensor_numel(t));
}

/* Per-step loss, gradient norm and learning rate, then every parameter after
 * 20 steps, within 1e-4 of the oracle relative to each tensor's scale (its
 * RMS: elements near zero are not held to a relative bound of their own).
 * Attention key biases are the exception: their gradient is zero in exact
 * arithmetic (softmax ignores a constant added to a row of scores), so only
 * rounding noise moves them, which Adam's normalisation blows up; both runs
 * must leave them at zero within 1e-4 (the other biases reach ~1e-2). */
START_TEST(test_matches_pytorch) {
    gbt_oracle *o = gbt_oracle_load("train");
    char extra[4200];
    snprintf(extra, sizeof extra, "--plot %s/train/a.png", gbt_tmp_dir());
    train(o, "a", extra);
    const char *cols[] = {NULL, "lr", "loss", "grad_norm"};
    const double rtol[] = {0, 1e-6, 1e-4, 1e-4};
    for (int c = 1; c <= 3; c++) {
        gb_tensor *got = csv_column("a", c, 0, 20), *want = gbt_get(o, cols[c]);
        gbt_assert_close(got, want, rtol[c], 0, cols[c]);
        gb_tensor_free(got), gb_tensor_free(want);
    }
    char *path = tmp_file("%s/model.safetensors", "a");
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), 4 + 12 * 2); /* wte, wpe, ln_f x2; 12 per block */
    for (int i = 0; i < gb_safetensors_count(st); i++) {
        const char *name = gb_safetensors_name(st, i);
        gb_tensor *got = gb_safetensors_get(st, name), *want = gbt_getf(o, "param.%s", name);
        int64_t n = gb_tensor_numel(want), E = n / 3;
        bool qkv_bias = strstr(name, "c_attn.bias") != NULL;
        for (int part = 0; part < (qkv_bias ? 3 : 1); part++) {
            gb_tensor *g = qkv_bias ? gb_narrow(got, 0, part * E, E) : gb_tensor_ref(got);
            gb_tensor *w = qkv_bias ? gb_narrow(want, 0, part * E, E) : gb_tensor_ref(want);
            gb_tensor *zero = gb_zeros(1, (int64_t[]){E}, GB_DTYPE_F32);
            char what[600];
            snprintf(what, sizeof what, "%s%s", name, qkv_bias ? (const char *[]){"[q]", "[k]", "[v]"}[part] : "");
            if (part == 1) { /* the key bias */
                gbt_assert_close(g, zero, 0, 1e-4, what);
                gbt_assert_close(w, zero, 0, 1e-4, what);
            } else {
                gbt_assert_close(g, w, 0, 1e-4 * rms(w), what);
            }
            gb_tensor_free(zero), gb_tensor_free(g), gb_tensor_free(w);
        }
        gb_tensor_free(got), gb_tensor_free(want);
    }
    gb_safetensors_free(st);
    free(path);
    /* The loss curve: a PNG of 800 x 500 (IHDR's big-endian width and height). */
    size_t len = 0;
    unsigned char *png = (unsigned char *)read_tmp("%s.png", "a", &len);
    ck_assert(len > 24 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8));
    ck_assert_int_eq(png[16] << 24 | png[17] << 16 | png[18] << 8 | png[19], 800);
    ck_assert_int_eq(png[20] << 24 | png[21] << 16 | png[22] << 8 | png[23], 500);
    free(png);
    gbt_oracle_free(o);
}
END_TEST

/* At a fixed thread count two runs give the same bytes, and so does a run
 * that starts from the oracle's copy of the seeded initialisation (--init;
 * the seed still orders the data). */
START_TEST(test_deterministic_and_init) {
    gbt_oracle *o = gbt_oracle_load("train");
    char extra[4300], dir[4200];
    train(o, "d1", "");
    train(o, "d2", "");
    snprintf(extra, sizeof extra, "--init %s/init.safetensors", oracle_dir(dir, sizeof dir));
    train(o, "i", extra);
    same_file("d1/model.safetensors", "d2/model.safetensors");
    same_file("d1/model.safetensors", "i/model.safetensors");
    gb_tensor *l1 = csv_column("d1", 2, 0, 20), *l2 = csv_column("i", 2, 0, 20);
    ck_assert_mem_eq(gb_tensor_f32(l1), gb_tensor_f32(l2), 20 * sizeof(float));
    gb_tensor_free(l1), gb_tensor_free(l2);
    gbt_oracle_free(o);
}
END_TEST

/* A run stopped at a checkpoint and resumed from it (options, step,
 * optimiser state all from the checkpoint) ends with the uninterrupted
 * run's bytes; its log goes on from step 11 with the same losses. */
START_TEST(test_resume) {
    gbt_oracle *o = gbt_oracle_load("train");
    train(o, "r", "--save-every 10");
    same_file("r/checkpoint-20/model.safetensors", "r/model.safetensors");
    char args[16384];
    const char *tmp = gbt_tmp_dir();
    snprintf(args, sizeof args,
             "train --resume %s/train/r/checkpoint-10 --out %s/train/r2 --threads 2 --log %s/train/r2.csv", tmp, tmp,
             tmp);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0 && !*r.err, "glassbox %s: %s", args, r.err);
    gbt_cli_free(&r);
    same_file("r/model.safetensors", "r2/model.safetensors");
    /* Another corpus would change the data order: refused. */
    char *other = tmp_file("%s", "other.txt");
    FILE *f = fopen(other, "w");
    fputs("Another text.\n", f);
    fclose(f);
    snprintf(args, sizeof args, "train --resume %s/train/r/checkpoint-10 --out %s/train/r3 --corpus %s", tmp, tmp,
             other);
    gbt_cli_fails(args, 1, "glassbox train: --resume: the corpus ");
    r = gbt_cli(args);
    ck_assert_msg(strstr(r.err, "has 14 tokens, 1 lines; the checkpoint was trained on 397 tokens, 11 lines"), "%s",
                  r.err);
    gbt_cli_free(&r);
    free(other);
    gb_tensor *all = csv_column("r", 2, 0, 20), *rest = csv_column("r2", 2, 10, 10);
    ck_assert_mem_eq(gb_tensor_f32(all) + 10, gb_tensor_f32(rest), 10 * sizeof(float));
    gb_tensor_free(all), gb_tensor_free(rest);
    gbt_oracle_free(o);
}
END_TEST

/* The saved directory is a Hugging Face GPT-2 checkpoint that glassbox
 * opens: config (sizes, <|endoftext|> = 256 as BOS and EOS), weights under
 * their transformers names without the tied lm_head, tokenizer files;
 * checkpoints add the optimiser state and the run's options. */
START_TEST(test_checkpoint_layout) {
    gbt_oracle *o = gbt_oracle_load("train");
    train(o, "h", "--steps 2 --save-every 1");
    char *dir = tmp_file("%s", "h");
    gb_model *m = gb_model_open(dir, NULL);
    gbt_ok(m);
    const gb_gpt2_config *c = gb_model_gpt2_config(m);
    ck_assert_ptr_nonnull(c);
    ck_assert(c->vocab_size == 257 && c->n_positions == 16 && c->n_embd == 32 && c->n_layer == 2 && c->n_head == 2);
    ck_assert_str_eq(c->activation_function, "gelu_new");
    ck_assert(gb_model_bos_id(m) == 256 && gb_model_is_eos(m, 256));
    gb_model_free(m);
    char *config = read_tmp("%s/config.json", "h", NULL);
    const char *want[] = {"\"architectures\": [\n    \"GPT2LMHeadModel\"\n  ]", "\"model_type\": \"gpt2\"",
                          "\"tie_word_embeddings\": true", "\"n_ctx\": 16", "\"layer_norm_epsilon\": 1e-05"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(config, want[i]), "config.json lacks %s:\n%s", want[i], config);
    free(config);
    char *gen = read_tmp("%s/generation_config.json", "h", NULL);
    ck_assert_msg(strstr(gen, "\"eos_token_id\": 256"), "%s", gen);
    free(gen);
    char src[4200];
    oracle_dir(src, sizeof src);
    strcat(src, "/tok/vocab.json");
    size_t n1 = 0, n2 = 0;
    char *v1 = gbt_read_file(src, &n1), *v2 = read_tmp("%s/vocab.json", "h", &n2);
    ck_assert(v1 && n1 == n2 && !memcmp(v1, v2, n1));
    free(v1), free(v2);
    char *p = tmp_file("%s/model.safetensors", "h");
    gb_safetensors *st = gb_safetensors_open(p);
    gbt_ok(st);
    ck_assert(gb_safetensors_has(st, "transformer.h.1.attn.c_attn.weight") &&
              !gb_safetensors_has(st, "lm_head.weight"));
    ck_assert_str_eq(gb_safetensors_metadata(st, "format"), "pt");
    gb_safetensors_free(st);
    free(p);
    p = tmp_file("%s/optimizer.safetensors", "h");
    ck_assert_msg(access(p, F_OK) != 0, "the final directory has the optimiser state");
    free(p);
    p = tmp_file("%s/checkpoint-1/optimizer.safetensors", "h");
    st = gb_safetensors_open(p);
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), 2 * (4 + 12 * 2));
    ck_assert(gb_safetensors_has(st, "transformer.wte.weight.exp_avg_sq"));
    ck_assert_str_eq(gb_safetensors_metadata(st, "step"), "1");
    ck_assert_str_eq(gb_safetensors_metadata(st, "steps"), "2");
    ck_assert_str_eq(gb_safetensors_metadata(st, "width"), "32");
    ck_assert_double_eq(strtod(gb_safetensors_metadata(st, "lr"), NULL), 3e-3);
    gb_safetensors_free(st);
    free(p);
    char args[4400];
    snprintf(args, sizeof args, "generate %s --ids 84,104 -n 3 --ids-out", dir);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_msg(r.status == 0 && !strncmp(r.out, "[84, 104, ", 10), "%s: %s %s", args, r.out, r.err);
    gbt_cli_free(&r);
    free(dir);
    gbt_oracle_free(o);
}
END_TEST

/* On a terminal (script(1) provides one), a progress line with the step,
 * the loss and tokens/s. */
START_TEST(test_progress_on_terminal) {
    if (system("script -qec true /dev/null >/dev/null 2>&1") != 0) {
        gbt_skip("test_progress_on_terminal", "script(1) cannot run");
        return;
    }
    gbt_oracle *o = gbt_oracle_load("train");
    char dir[4200], cmd[16384], *run = gbt_get_str(o, "args");
    const char *b = getenv("GB_BUILD_DIR"), *tmp = gbt_tmp_dir(), *d = oracle_dir(dir, sizeof dir);
    drop_given(run, "--steps 3");
    snprintf(cmd, sizeof cmd,
             "script -qec '%s/glassbox train --corpus %s/corpus.txt --tokenizer %s/tok %s --steps 3 --out %s/train/t' "
             "/dev/null >%s/train/t.tty 2>&1",
             b ? b : "build", d, d, run, tmp, tmp);
    ck_assert_int_eq(system(cmd), 0);
    char *text = read_tmp("%s.tty", "t", NULL);
    ck_assert_msg(strstr(text, "step 3/3") && strstr(text, "loss ") && strstr(text, " tok/s"), "terminal: %s", text);
    free(text), free(run);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_errors) {
    char dir[4200], base[8600], args[16384];
    const char *d = oracle_dir(dir, sizeof dir);
    snprintf(base, sizeof base, "train --corpus %s/corpus.txt --tokenizer %s/tok --out %s/train/e", d, d,
             gbt_tmp_dir());
    static const struct {
        const char *extra;
        int status;
        const char *msg;
    } cases[] = {
        {"--steps 5x", 2, "--steps: '5x' is not an integer"},
        {"--steps ''", 2, "--steps: '' is not an integer"},
        {"--lr abc", 2, "--lr: 'abc' is not a number"},
        {"--lr inf", 2, "--lr: 'inf' is not a number"},
        {"--layers 0", 2, "--layers: 0 is out of range (1 to 1000000000000000)"},
        {"--bogus 1", 2, "unknown option '--bogus'"},
        {"--seed", 2, "option '--seed' needs an argument"},
        {"--init x --resume y", 2, "--resume and --init exclude each other"},
        {"--width 32 --heads 3", 1, "gpt2_new: `embed_dim` must be divisible by num_heads"},
        {"--resume /nonexistent", 1, "--resume: "},
        {"--init /nonexistent.safetensors", 1, "safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char want[300];
        snprintf(args, sizeof args, "%s%s %s", base, strstr(cases[i].extra, "--steps") ? "" : " --steps 1", cases[i].extra);
        snprintf(want, sizeof want, "glassbox train: %s", cases[i].msg);
        gbt_cli_fails(args, cases[i].status, want);
    }
    /* --init with weights of another shape names the tensor. */
    snprintf(args, sizeof args, "%s --steps 1 --width 64 --init %s/init.safetensors", base, d);
    gbt_cli_result r = gbt_cli(args);
    ck_assert_int_eq(r.status, 1);
    gbt_one_error_line(&r, "glassbox train: ");
    ck_assert_msg(strstr(r.err, "tensor 'transformer.wte.weight' is float32[257, 32]") && strstr(r.err, "[257, 64]"),
                  "%s", r.err);
    gbt_cli_free(&r);
    snprintf(args, sizeof args, "train --corpus /nonexistent --tokenizer %.4000s/tok --out /tmp/x", d);
    gbt_cli_fails(args, 1, "glassbox train: cannot read the corpus /nonexistent");
    gbt_cli_fails("train --corpus x --tokenizer y", 2, "glassbox train: missing --out");
    r = gbt_cli("train --help");
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.out, "usage: glassbox train") && strstr(r.out, "--weight-decay X") && !*r.err, "%s", r.out);
    gbt_cli_free(&r);
}
END_TEST

Suite *gb_suite_train(void) {
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("train");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_matches_pytorch);
    tcase_add_test(tc, test_deterministic_and_init);
    tcase_add_test(tc, test_resume);
    tcase_add_test(tc, test_checkpoint_layout);
    tcase_add_test(tc, test_progress_on_terminal);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return s;
}
