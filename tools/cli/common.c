/* What several subcommands share: opening a model or a tokenizer, reading
 * a file, JSON output. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

char *gb_cli_slurp(FILE *f, size_t *len) {
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb) free(buf);
        buf = nb;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

/* A progress bar on stderr while a model over ~100 MB loads. */
static void progress_bar(uint64_t done, uint64_t total, void *ctx) {
    (void)ctx;
    if (total < (100u << 20)) return;
    int width = 40, filled = (int)(width * done / total);
    fprintf(stderr, "\rloading [%.*s%*s] %3d%% of %llu MB", filled, "########################################",
            width - filled, "", (int)(100 * done / total), (unsigned long long)(total >> 20));
    if (done >= total) fputc('\n', stderr);
}

/* PATH as a path (directory or tokenizer file), or else a Hub id in the
 * local Hugging Face cache (its snapshot directory). */
static gb_tokenizer *tokenizer_at(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0) return gb_tokenizer_open(path);
    gb_hf_files f;
    if (gb_hf_resolve(path, &f) != GB_OK) return NULL;
    gb_tokenizer *tok = gb_tokenizer_open(f.dir);
    gb_hf_files_free(&f);
    return tok;
}

gb_tokenizer *gb_cli_open_tokenizer(const char *cmd, const char *model, const char *tokenizer_path) {
    const char *path = tokenizer_path ? tokenizer_path : gb_cli_model(cmd, model);
    if (!path) return NULL;
    gb_tokenizer *tok = tokenizer_at(path);
    if (!tok) gb_cli_fail(cmd, "%s", gb_last_error());
    return tok;
}

gb_lm *gb_cli_open_lm(const char *cmd, const char *model, const char *tokenizer_path, bool f32) {
    const char *path = cmd ? gb_cli_model(cmd, model) : model;
    if (!path) return NULL;
    gb_model_opts opts = {.f32_weights = f32, .progress = isatty(STDERR_FILENO) ? progress_bar : NULL};
    gb_lm *lm = gb_lm_open(path, &opts);
    gb_tokenizer *tok = lm && tokenizer_path ? tokenizer_at(tokenizer_path) : NULL;
    if (!lm || (tokenizer_path && !tok)) {
        if (cmd) gb_cli_fail(cmd, "%s", gb_last_error());
        gb_lm_free(lm);
        return NULL;
    }
    if (tok) gb_lm_set_tokenizer(lm, tok);
    return lm;
}

bool gb_cli_f32(const gb_cli_args *a, int opt) { return gb_cli_int(a, opt) != 0; }

gb_tensor *gb_cli_prompt_ids(const char *cmd, gb_lm *lm, const gb_cli_arg *ids, const char *text, bool allow_empty) {
    gb_tensor *t = NULL;
    if (ids) {
        if (!(t = gb_from_data(ids->ids, 2, (int64_t[]){1, ids->nids}, GB_DTYPE_I64))) gb_cli_fail(cmd, "%s", gb_last_error());
        return t;
    }
    if (text) {
        gb_tensor *mask = NULL;
        if (gb_lm_encode(lm, 1, &text, &t, &mask) != GB_OK) gb_cli_fail(cmd, "%s", gb_last_error());
        gb_tensor_free(mask);
        return t;
    }
    int64_t bos = gb_model_bos_id(gb_lm_model(lm));
    if (allow_empty && bos >= 0) return gb_from_data(&bos, 2, (int64_t[]){1, 1}, GB_DTYPE_I64);
    gb_cli_fail(cmd, "give a prompt with --ids 1,2,3 or -p TEXT");
    return NULL;
}

bool gb_cli_check_positions(const char *cmd, gb_lm *lm, int64_t T, long long *max_new) {
    int64_t P = gb_model_max_positions(gb_lm_model(lm));
    if (P <= 0) return true;
    if (T > P) {
        gb_cli_fail(cmd, "the prompt has %lld tokens, more than the model's %lld positions", (long long)T, (long long)P);
        return false;
    }
    if (max_new && *max_new > P - T) {
        fprintf(stderr, "glassbox %s: note: %lld new tokens instead of %lld: the prompt's %lld tokens leave %lld of the "
                        "model's %lld positions\n",
                cmd, (long long)(P - T), *max_new, (long long)T, (long long)(P - T), (long long)P);
        *max_new = P - T;
    }
    return true;
}

void gb_cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

gb_status gb_cli_json_tensor(FILE *f, gb_tensor *t) {
    gb_dtype dt = gb_tensor_dtype(t);
    bool floating = dt == GB_DTYPE_F32 || dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16;
    gb_tensor *c = gb_to_dtype(t, floating ? GB_DTYPE_F32 : GB_DTYPE_I64), *cc = c ? gb_contiguous(c) : NULL;
    gb_tensor_free(c);
    if (!cc) return gb_last_status();
    fprintf(f, "{\"dtype\": \"%s\", \"shape\": [", gb_dtype_name(dt));
    for (int d = 0; d < gb_tensor_ndim(t); d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)gb_tensor_dim(t, d));
    fprintf(f, "], \"data\": [");
    const float *x = floating ? gb_tensor_data(cc) : NULL;   /* [numel] */
    const int64_t *k = floating ? NULL : gb_tensor_data(cc); /* [numel] */
    for (int64_t i = 0; i < gb_tensor_numel(cc); i++) {
        if (i) fputs(", ", f);
        if (k) fprintf(f, "%lld", (long long)k[i]);
        else if (isfinite(x[i])) fprintf(f, "%.9g", x[i]);
        else fputs("null", f); /* JSON has no NaN or infinity */
    }
    fputs("]}", f);
    gb_tensor_free(cc);
    return GB_OK;
}

void gb_cli_warn_unproduced(const char *cmd, const char *what, long long steps) {
    if (steps >= 0)
        fprintf(stderr, "glassbox %s: warning: %s was never produced: generation made %lld new tokens (a .next() beyond "
                        "them, a stop or a false condition leaves it empty)\n",
                cmd, what, steps);
    else
        fprintf(stderr, "glassbox %s: warning: %s was never produced (the run stopped before it, its module never ran, "
                        "or a condition was false)\n",
                cmd, what);
}
