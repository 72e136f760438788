/* safetensors reading, writing and checking; Hugging Face model location.
 *
 * Oracles: tests/oracle/safetensors.py reads files with its own reader
 * (struct + json + numpy.frombuffer), writes files with its own writer, and
 * gives torch's .half()/.bfloat16() roundings; the real safetensors library
 * wrote ../shared/models/stories260k/model.safetensors; the byte layouts in
 * test_writer_matches_reference_bytes are the reference implementation's own
 * expected outputs (its tests test_serialization, test_empty and
 * test_serialization_forced_alignement). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gbtest.h"
#include "io/safetensors_impl.h"

/* ---- helpers ---------------------------------------------------------------- */

/* A path under the scratch directory (static buffer per slot). */
static const char *tmp(const char *name) {
    static char bufs[8][4096];
    static int slot;
    char *b = bufs[slot++ % 8];
    snprintf(b, sizeof bufs[0], "%s/st_%s", gbt_tmp_dir(), name);
    return b;
}

static void mkdirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* rm -rf: scratch trees are rebuilt from nothing on every run. */
static void rmtree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert(len == 0 || fwrite(data, 1, len, f) == len);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

/* A safetensors file whose header is `header` (its length as the prefix)
 * followed by data_len bytes. */
static void write_st(const char *path, const char *header, size_t data_len) {
    size_t n = strlen(header);
    unsigned char *buf = calloc(1, 8 + n + data_len + 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++) buf[8 + n + i] = (unsigned char)i;
    write_bytes(path, buf, 8 + n + data_len);
    free(buf);
}

static unsigned char *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static const char *oracle_dir(void) {
    const char *d = getenv("GB_ORACLE_DIR");
    return d ? d : "build/oracle";
}

/* A file the oracle script wrote with its own writer. */
static const char *oracle_file(const char *rel) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/safetensors_files/%s", oracle_dir(), rel);
    return buf;
}

/* Let the Python reader check the layout of `file` and dump its contents as
 * oracle NAME (see tests/oracle/safetensors.py --dump). */
static gbt_oracle *python_dump(const char *file, const char *name) {
    const char *py = getenv("GB_PYTHON");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s tests/oracle/safetensors.py --dump '%s' '%s/%s.txt'", py ? py : "/usr/bin/python3",
             file, oracle_dir(), name);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "the Python reader rejected %s (exit status %d): %s", file, rc, cmd);
    return gbt_oracle_load(name);
}

static gb_tensor *must_get(gb_safetensors *st, const char *name) {
    gb_tensor *t = gb_safetensors_get(st, name);
    ck_assert_msg(t != NULL, "get %s: %s", name, gb_last_error());
    return t;
}

static void assert_shape(const gb_tensor *t, int ndim, const int64_t *shape) {
    ck_assert_int_eq(gb_tensor_ndim(t), ndim);
    for (int i = 0; i < ndim; i++) ck_assert_int_eq(gb_tensor_dim(t, i), shape[i]);
}

/* Fail unless opening path fails with status, a message holding needle and
 * naming the file. */
static void expect_open_fails(const char *path, gb_status status, const char *needle) {
    gb_safetensors *st = gb_safetensors_open(path);
    if (st) gb_safetensors_free(st);
    gbt_fails_with(st == NULL, status, needle);
    ck_assert_msg(strstr(gb_last_error(), path) != NULL, "message '%s' does not name %s", gb_last_error(), path);
}

/* ---- reading files written by others ------------------------------------- */

START_TEST(test_reads_stories260k) {
    char *path = gbt_shared_path("models/stories260k/model.safetensors", "test_reads_stories260k");
    if (!path) return;
    gbt_oracle *o = gbt_oracle_load("safetensors");
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    gb_tensor *count = gbt_get(o, "stories.count");
    double want_count;
    gb_item(count, &want_count);
    ck_assert_int_eq(gb_safetensors_count(st), (int)want_count);
    for (int i = 0; i < gb_safetensors_count(st); i++) {
        const char *name = gb_safetensors_name(st, i);
        gb_tensor *shape = gbt_getf(o, "stories.shape.%s", name);
        gb_dtype dt;
        int ndim;
        int64_t dims[GB_MAX_DIMS];
        gbt_ok_status(gb_safetensors_info(st, name, &dt, &ndim, dims));
        ck_assert_int_eq(dt, GB_DTYPE_F32);
        ck_assert_str_eq(gb_safetensors_stored_dtype(st, name), "F32");
        gb_tensor *got = gb_from_data(dims, 1, (int64_t[]){ndim}, GB_DTYPE_I64);
        gbt_assert_close(got, shape, 0, 0, name);
        gb_tensor_free(got);
        gb_tensor_free(shape);
    }
    const char *values[] = {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.self_attn.q_proj.weight",
                            "model.layers.2.input_layernorm.weight", "model.layers.4.mlp.down_proj.weight"};
    gb_tensor *kept[5];
    for (int i = 0; i < 5; i++) {
        kept[i] = must_get(st, values[i]);
        ck_assert_str_eq(gb_tensor_name(kept[i]), values[i]);
    }
    ck_assert_str_eq(gb_safetensors_metadata(st, "format"), "pt");
    gb_safetensors_free(st); /* the tensors keep the mapping alive */
    for (int i = 0; i < 5; i++) {
        gb_tensor *want = gbt_getf(o, "stories.value.%s", values[i]);
        gbt_assert_close(kept[i], want, 0, 0, values[i]);
        gb_tensor_free(want);
        gb_tensor_free(kept[i]);
    }
    /* the directory opens the same file */
    char *dir = gbt_shared_path("models/stories260k", "test_reads_stories260k");
    st = gb_safetensors_open(dir);
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), (int)want_count);
    gb_safetensors_free(st);
    gb_tensor_free(count);
    gbt_oracle_free(o);
    free(dir);
    free(path);
}
END_TEST

START_TEST(test_zero_copy_shares_private_pages) {
    /* F32 tensors are views of one private mapping: an in-place edit shows in
     * a later get from the same handle, never in the file. */
    gbt_oracle *o = gbt_oracle_load("safetensors");
    gb_safetensors *st = gb_safetensors_open(oracle_file("mixed.safetensors"));
    gbt_ok(st);
    gb_tensor *a = must_get(st, "a.f32");
    gbt_ok_status(gb_fill_(a, 7.0f));
    gb_tensor *b = must_get(st, "a.f32");
    double v;
    gbt_ok_status(gb_tensor_get(b, (int64_t[]){5, 6}, &v));
    ck_assert_double_eq(v, 7.0);
    gb_safetensors *fresh = gb_safetensors_open(oracle_file("mixed.safetensors"));
    gbt_ok(fresh);
    gb_tensor *c = must_get(fresh, "a.f32"), *x = gbt_get(o, "rt.x");
    gbt_assert_close(c, x, 0, 0, "a.f32 after an edit through another handle");
    /* a converted tensor is a copy: editing it leaves the mapping alone */
    gb_tensor *h = must_get(st, "a.f16");
    gbt_ok_status(gb_fill_(h, 1.0f));
    gb_tensor *h2 = must_get(st, "a.f16"), *want = gbt_get(o, "rt.x_f16");
    gbt_assert_close(h2, want, 0, 0, "a.f16 after editing a converted copy");
    gb_tensor_free(h);
    gb_tensor_free(h2);
    gb_tensor_free(want);
    gb_tensor_free(a);
    gb_tensor_free(b);
    gb_tensor_free(c);
    gb_tensor_free(x);
    gb_safetensors_free(fresh);
    gb_safetensors_free(st);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_reads_every_dtype) {
    gbt_oracle *o = gbt_oracle_load("safetensors");
    gb_safetensors *st = gb_safetensors_open(oracle_file("mixed.safetensors"));
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), 10);
    /* data order, as the reference lays it out: alignment, then name */
    const char *order[] = {"b.i64", "a.f32", "c.empty", "c.scalar", "c.t", "b.i32", "a.bf16", "a.f16", "b.u8", "b.bool"};
    for (int i = 0; i < 10; i++) ck_assert_str_eq(gb_safetensors_name(st, i), order[i]);
    ck_assert_ptr_null(gb_safetensors_name(st, 10));
    ck_assert_ptr_null(gb_safetensors_name(st, -1));
    ck_assert_int_eq(gb_safetensors_metadata_count(st), 2);
    ck_assert_str_eq(gb_safetensors_metadata_key(st, 0), "format");
    ck_assert_str_eq(gb_safetensors_metadata(st, "note"), "written by the oracle");
    ck_assert_ptr_null(gb_safetensors_metadata(st, "nope"));

    static const struct {
        const char *name, *want, *stored;
        gb_dtype get_dt, stored_dt;
    } cases[] = {
        {"a.f32", "rt.x", "F32", GB_DTYPE_F32, GB_DTYPE_F32},
        {"a.f16", "rt.x_f16", "F16", GB_DTYPE_F32, GB_DTYPE_F16},
        {"a.bf16", "rt.x_bf16", "BF16", GB_DTYPE_F32, GB_DTYPE_BF16},
        {"b.i64", "rt.ids", "I64", GB_DTYPE_I64, GB_DTYPE_I64},
        {"b.i32", "rt.i32", "I32", GB_DTYPE_I32, GB_DTYPE_I32},
        {"b.u8", "rt.u8", "U8", GB_DTYPE_U8, GB_DTYPE_U8},
        {"b.bool", "rt.mask", "BOOL", GB_DTYPE_BOOL, GB_DTYPE_BOOL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gb_tensor *want = gbt_get(o, cases[i].want);
        gb_tensor *got = must_get(st, cases[i].name);
        ck_assert_int_eq(gb_tensor_dtype(got), cases[i].get_dt);
        gbt_assert_close(got, want, 0, 0, cases[i].name);
        gb_tensor *raw = gb_safetensors_get_stored(st, cases[i].name);
        gbt_ok(raw);
        ck_assert_int_eq(gb_tensor_dtype(raw), cases[i].stored_dt);
        gbt_assert_close(raw, want, 0, 0, cases[i].name);
        ck_assert_str_eq(gb_safetensors_stored_dtype(st, cases[i].name), cases[i].stored);
        gb_dtype dt;
        gbt_ok_status(gb_safetensors_info(st, cases[i].name, &dt, NULL, NULL));
        ck_assert_int_eq(dt, cases[i].stored_dt);
        gb_tensor_free(raw);
        gb_tensor_free(got);
        gb_tensor_free(want);
    }
    gb_tensor *x = gbt_get(o, "rt.x");
    gb_tensor *xt = gb_transpose(x, 0, 1), *t = must_get(st, "c.t");
    gbt_assert_close(t, xt, 0, 0, "c.t");
    gb_tensor *e = must_get(st, "c.empty");
    assert_shape(e, 2, (int64_t[]){0, 3});
    gb_tensor *s = must_get(st, "c.scalar");
    ck_assert_int_eq(gb_tensor_ndim(s), 0);
    double v;
    gbt_ok_status(gb_item(s, &v));
    ck_assert_double_eq(v, 2.5);
    gb_tensor_free(s);
    gb_tensor_free(e);
    gb_tensor_free(t);
    gb_tensor_free(xt);
    gb_tensor_free(x);
    gb_safetensors_free(st);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_reads_unaligned_data) {
    /* A header not padded to 8 bytes leaves the data at an odd address: the
     * reader must copy instead of handing out misaligned floats. */
    gbt_oracle *o = gbt_oracle_load("safetensors");
    gb_safetensors *st = gb_safetensors_open(oracle_file("unaligned.safetensors"));
    gbt_ok(st);
    gb_tensor *x = gbt_get(o, "rt.x"), *xh = gbt_get(o, "rt.x_f16");
    gb_tensor *u_want = gb_slice(x, 0, 0, 1, 1), *u_want5 = gb_slice(u_want, 1, 0, 5, 1);
    gb_tensor *v_want = gb_select(xh, 0, 1);
    gb_tensor *u = must_get(st, "u"), *v = must_get(st, "v"), *vs = gb_safetensors_get_stored(st, "v");
    gbt_ok(vs);
    ck_assert_uint_eq((uintptr_t)gb_tensor_data(u) % 4, 0);
    ck_assert_uint_eq((uintptr_t)gb_tensor_data(vs) % 2, 0);
    gbt_assert_close(u, u_want5, 0, 0, "u");
    gbt_assert_close(v, v_want, 0, 0, "v");
    gbt_assert_close(vs, v_want, 0, 0, "v stored");
    ck_assert_int_eq(gb_tensor_dtype(vs), GB_DTYPE_F16);
    gb_tensor *t[] = {u, v, vs, u_want, u_want5, v_want, x, xh};
    for (int i = 0; i < 8; i++) gb_tensor_free(t[i]);
    gb_safetensors_free(st);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_reads_sharded_checkpoint) {
    gbt_oracle *o = gbt_oracle_load("safetensors");
    const char *names[] = {"embed", "layers.0.b", "layers.0.w", "layers.1.w"}; /* weight_map order */
    const char *paths[] = {oracle_file("sharded/model.safetensors.index.json"), oracle_file("sharded")};
    for (int p = 0; p < 2; p++) {
        char path[4096];
        snprintf(path, sizeof path, "%s", paths[p]);
        gb_safetensors *st = gb_safetensors_open(path);
        gbt_ok(st);
        ck_assert_int_eq(gb_safetensors_count(st), 4);
        gb_tensor *got[4];
        for (int i = 0; i < 4; i++) {
            ck_assert_str_eq(gb_safetensors_name(st, i), names[i]);
            got[i] = must_get(st, names[i]);
            ck_assert_int_eq(gb_tensor_dtype(got[i]), GB_DTYPE_F32);
        }
        ck_assert_str_eq(gb_safetensors_stored_dtype(st, "layers.0.b"), "BF16");
        ck_assert_str_eq(gb_safetensors_metadata(st, "format"), "pt");
        /* merged from both shards, the first one listed winning */
        ck_assert_str_eq(gb_safetensors_metadata(st, "shard"), "model-00001-of-00002.safetensors");
        gbt_fails_with(gb_safetensors_get(st, "layers.2.w") == NULL, GB_ERR_NOT_FOUND,
                       "model.safetensors.index.json: no tensor named 'layers.2.w'");
        gb_safetensors_free(st); /* both shards stay mapped for the tensors */
        for (int i = 0; i < 4; i++) {
            gb_tensor *want = gbt_getf(o, "sharded.%s", names[i]);
            gbt_assert_close(got[i], want, 0, 0, names[i]);
            gb_tensor_free(want);
            gb_tensor_free(got[i]);
        }
    }
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_reads_generated_hf_checkpoints) {
    /* Every checkpoint tests/fixtures/make_models.py made (through
     * tests/oracle/models.py): found as a model directory, all names and
     * shapes as the generator wrote them, block 0's values exact. */
    gbt_oracle *o = gbt_oracle_load("models");
    char root[4096];
    snprintf(root, sizeof root, "%s/models", oracle_dir());
    DIR *d = opendir(root);
    ck_assert_msg(d != NULL, "%s is missing (tests/oracle/models.py makes it)", root);
    int variants = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        const char *var = de->d_name;
        char dir[8192];
        snprintf(dir, sizeof dir, "%s/%s", root, var);
        gb_hf_files f;
        gbt_ok_status(gb_hf_resolve(dir, &f));
        gb_safetensors *st = gb_safetensors_open(f.weights);
        gbt_ok(st);
        gb_tensor *count = gbt_getf(o, "%s.count", var);
        double n;
        gb_item(count, &n);
        ck_assert_int_eq(gb_safetensors_count(st), (int)n);
        for (int i = 0; i < gb_safetensors_count(st); i++) {
            const char *name = gb_safetensors_name(st, i);
            gb_tensor *shape = gbt_getf(o, "%s.shape.%s", var, name), *t = must_get(st, name);
            ck_assert_int_eq(gb_tensor_dtype(t), GB_DTYPE_F32);
            int64_t dims[GB_MAX_DIMS];
            for (int k = 0; k < gb_tensor_ndim(t); k++) dims[k] = gb_tensor_dim(t, k);
            gb_tensor *got = gb_from_data(dims, 1, (int64_t[]){gb_tensor_ndim(t)}, GB_DTYPE_I64);
            gbt_assert_close(got, shape, 0, 0, name);
            if (strstr(name, ".0.")) {
                gb_tensor *want = gbt_getf(o, "%s.weight.%s", var, name);
                gb_tensor *raw = gb_safetensors_get_stored(st, name);
                gbt_ok(raw);
                ck_assert_int_eq(gb_tensor_dtype(raw), gb_tensor_dtype(want));
                gbt_assert_close(t, want, 0, 0, name);
                gb_tensor_free(raw);
                gb_tensor_free(want);
            }
            gb_tensor_free(got);
            gb_tensor_free(t);
            gb_tensor_free(shape);
        }
        gb_tensor_free(count);
        gb_safetensors_free(st);
        gb_hf_files_free(&f);
        variants++;
    }
    closedir(d);
    ck_assert_int_ge(variants, 6);
    gbt_oracle_free(o);
}
END_TEST

/* ---- writing --------------------------------------------------------------- */

/* Write the round-trip tensors with glassbox in dtype dt, have the Python
 * reader check the layout and decode them, compare with torch's rounding. */
static void roundtrip(gb_dtype dt, const char *tag, const char *want_key) {
    gbt_oracle *o = gbt_oracle_load("safetensors");
    gb_tensor *x = gbt_get(o, "rt.x"), *want = gbt_get(o, want_key);
    gb_tensor *xt = gb_transpose(x, 0, 1), *row = gb_select(x, 0, 2); /* strided views */
    gb_tensor *ids = gbt_get(o, "rt.ids"), *i32 = gbt_get(o, "rt.i32"), *u8 = gbt_get(o, "rt.u8");
    gb_tensor *mask = gbt_get(o, "rt.mask");
    const char *names[] = {"x", "x.t", "row2", "ids", "i32", "u8", "mask", "quote\"back\\slash", "caf\xc3\xa9"};
    gb_tensor *ts[] = {x, xt, row, ids, i32, u8, mask, x, row};
    const char *meta[] = {"format", "pt", "note", "tab\there \"quoted\" caf\xc3\xa9 \x01", NULL};
    const char *file = tmp(tag);
    gbt_ok_status(gb_safetensors_save(file, 9, names, ts, dt, meta));

    char dump_name[64];
    snprintf(dump_name, sizeof dump_name, "safetensors_dump_%s", tag);
    gbt_oracle *py = python_dump(file, dump_name);
    gb_tensor *want_t = gb_transpose(want, 0, 1), *want_row = gb_select(want, 0, 2);
    gb_tensor *wants[] = {want, want_t, want_row, ids, i32, u8, mask, want, want_row};
    gb_safetensors *st = gb_safetensors_open(file);
    gbt_ok(st);
    for (int i = 0; i < 9; i++) {
        gb_tensor *got = gbt_get(py, names[i]);
        gb_dtype stored = i >= 3 && i <= 6 ? gb_tensor_dtype(ts[i]) : dt;
        ck_assert_int_eq(gb_tensor_dtype(got), stored);
        gbt_assert_close(got, wants[i], 0, 0, names[i]);
        gb_tensor *mine = gb_safetensors_get_stored(st, names[i]);
        gbt_ok(mine);
        ck_assert_int_eq(gb_tensor_dtype(mine), stored);
        gbt_assert_close(mine, wants[i], 0, 0, names[i]);
        gb_tensor_free(mine);
        gb_tensor_free(got);
    }
    gb_tensor *note = gbt_get(py, "meta.note");
    ck_assert_int_eq(gb_tensor_numel(note), (int64_t)strlen(meta[3]));
    ck_assert_mem_eq(gb_tensor_data(note), meta[3], strlen(meta[3]));
    ck_assert_str_eq(gb_safetensors_metadata(st, "note"), meta[3]);
    gb_tensor_free(note);
    gb_safetensors_free(st);
    gb_tensor *all[] = {x, want, xt, row, ids, i32, u8, mask, want_t, want_row};
    for (int i = 0; i < 10; i++) gb_tensor_free(all[i]);
    gbt_oracle_free(py);
    gbt_oracle_free(o);
}

START_TEST(test_roundtrip_f32) { roundtrip(GB_DTYPE_F32, "rt_f32", "rt.x"); }
END_TEST

START_TEST(test_roundtrip_f16) { roundtrip(GB_DTYPE_F16, "rt_f16", "rt.x_f16"); }
END_TEST

START_TEST(test_roundtrip_bf16) { roundtrip(GB_DTYPE_BF16, "rt_bf16", "rt.x_bf16"); }
END_TEST

START_TEST(test_writer_matches_reference_bytes) {
    /* From the reference implementation's tests: "attn.0", F32 [1, 2, 3] =
     * 0..5 serializes to exactly these bytes. */
    static const unsigned char attn0[] = {
        64,  0,   0,   0,   0,   0,   0,   0,  123, 34,  97,  116, 116, 110, 46,  48,  34,  58,  123, 34,  100,
        116, 121, 112, 101, 34,  58,  34,  70, 51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,  91,
        49,  44,  50,  44,  51,  93,  44,  34, 100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115, 34,
        58,  91,  48,  44,  50,  52,  93,  125, 125, 0,  0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,
        0,   0,   64,  64,  0,   0,   128, 64,  0,  0,   160, 64};
    /* "attn0", F32 [1, 1, 2, 3]: a shorter name, padded with spaces. */
    static const unsigned char attn0b[] = {
        72,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 48,  34,  58, 123, 34,  100, 116,
        121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34, 58,  91,  49,
        44,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101, 116, 115,
        34,  58,  91,  48,  44,  50,  52,  93,  125, 125, 32,  32,  32,  32,  32,  32,  32, 0,   0,   0,   0,
        0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,   128, 64,  0,  0,   160, 64};
    /* No tensors, without and with metadata {"framework": "pt"}. */
    static const unsigned char empty[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
    static const unsigned char empty_meta[] = {40,  0,   0,   0,  0,   0,   0,   0,   123, 34,  95,  95,
                                               109, 101, 116, 97, 100, 97,  116, 97,  95,  95,  34,  58,
                                               123, 34,  102, 114, 97,  109, 101, 119, 111, 114, 107, 34,
                                               58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
    gb_tensor *r = gb_arange(0, 6, 1);
    gb_tensor *a = gb_reshape(r, 3, (int64_t[]){1, 2, 3}), *b = gb_reshape(r, 4, (int64_t[]){1, 1, 2, 3});
    struct {
        const char *name;
        gb_tensor *t;
        const char *const *meta;
        const unsigned char *want;
        size_t len;
    } cases[] = {
        {"attn.0", a, NULL, attn0, sizeof attn0},
        {"attn0", b, NULL, attn0b, sizeof attn0b},
        {NULL, NULL, NULL, empty, sizeof empty},
        {NULL, NULL, (const char *[]){"framework", "pt", NULL}, empty_meta, sizeof empty_meta},
    };
    for (int i = 0; i < 4; i++) {
        const char *file = tmp("ref_bytes");
        gbt_ok_status(gb_safetensors_save(file, cases[i].name ? 1 : 0, &cases[i].name, &cases[i].t, GB_DTYPE_F32,
                                          cases[i].meta));
        size_t len;
        unsigned char *got = read_bytes(file, &len);
        ck_assert_msg(len == cases[i].len, "case %d: %zu bytes, expected %zu", i, len, cases[i].len);
        ck_assert_mem_eq(got, cases[i].want, len);
        free(got);
        gb_safetensors *st = gb_safetensors_open(file);
        gbt_ok(st);
        ck_assert_int_eq(gb_safetensors_count(st), cases[i].name ? 1 : 0);
        gb_safetensors_free(st);
    }
    gb_tensor_free(a);
    gb_tensor_free(b);
    gb_tensor_free(r);
}
END_TEST

START_TEST(test_save_errors) {
    gb_tensor *x = gb_arange(0, 4, 1), *ids = gb_arange_i64(0, 3, 1);
    const char *file = tmp("save_err");
    unlink(file);
    gbt_fails_with(gb_safetensors_save(file, 1, (const char *[]){"x"}, &x, GB_DTYPE_I64, NULL) != GB_OK, GB_ERR_ARG,
                   "dtype must be float32, float16 or bfloat16, not int64");
    gbt_fails_with(gb_safetensors_save(file, 2, (const char *[]){"x", "x"}, (gb_tensor *[]){x, ids}, GB_DTYPE_F32,
                                       NULL) != GB_OK,
                   GB_ERR_ARG, "tensor name 'x' is given twice");
    gbt_fails_with(gb_safetensors_save(file, 1, (const char *[]){"__metadata__"}, &x, GB_DTYPE_F32, NULL) != GB_OK,
                   GB_ERR_ARG, "reserved for the metadata");
    gbt_fails_with(gb_safetensors_save(file, 1, (const char *[]){"bad\xff"}, &x, GB_DTYPE_F32, NULL) != GB_OK,
                   GB_ERR_ARG, "not valid UTF-8");
    gbt_fails_with(gb_safetensors_save(file, 1, (const char *[]){"x"}, (gb_tensor *[]){NULL}, GB_DTYPE_F32, NULL) !=
                       GB_OK,
                   GB_ERR_ARG, "tensor 0 is NULL");
    gbt_fails_with(gb_safetensors_save(file, 1, (const char *[]){"x"}, &x, GB_DTYPE_F32,
                                       (const char *[]){"k", NULL, NULL}) != GB_OK,
                   GB_ERR_ARG, "metadata key 'k' has a NULL value");
    gbt_fails_with(gb_safetensors_save(file, 1, (const char *[]){"x"}, &x, GB_DTYPE_F32,
                                       (const char *[]){"k", "1", "k", "2", NULL}) != GB_OK,
                   GB_ERR_ARG, "metadata key 'k' is given twice");
    struct stat sb;
    ck_assert_msg(stat(file, &sb) != 0, "a failed save left %s behind", file);
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", gbt_tmp_dir());
    gbt_fails_with(gb_safetensors_save(missing, 1, (const char *[]){"x"}, &x, GB_DTYPE_F32, NULL) != GB_OK, GB_ERR_IO,
                   "cannot create");
    ck_assert(strstr(gb_last_error(), missing) != NULL);
    /* integer tensors keep their dtype whatever dtype says */
    gbt_ok_status(gb_safetensors_save(file, 2, (const char *[]){"x", "ids"}, (gb_tensor *[]){x, ids}, GB_DTYPE_BF16,
                                      NULL));
    gb_safetensors *st = gb_safetensors_open(file);
    gbt_ok(st);
    ck_assert_str_eq(gb_safetensors_stored_dtype(st, "ids"), "I64");
    ck_assert_str_eq(gb_safetensors_stored_dtype(st, "x"), "BF16");
    gb_safetensors_free(st);
    gb_tensor_free(x);
    gb_tensor_free(ids);
}
END_TEST

/* ---- malformed files -------------------------------------------------------- */

#define F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":"

START_TEST(test_rejects_malformed_headers) {
    static const struct {
        const char *file, *header;
        size_t data;
        const char *needle;
    } cases[] = {
        {"bad_json", "{\"a\":{\"dtype\":\"F32\",", 0, "header: invalid JSON at byte"},
        {"not_object", "[1,2]", 0, "header is an array, not a JSON object"},
        {"text_after", "{}  {}", 0, "header has text after its JSON object"},
        {"unknown_dtype", "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': unknown dtype 'F33'"},
        {"size_mismatch",
         "{\"h.0.attn.c_attn.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,100]}}", 100,
         "tensor 'h.0.attn.c_attn.weight': data_offsets [0, 100) do not match shape [2, 3] x F32 = 24 bytes"},
        {"overlap", "{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[4,12]}}", 12,
         "tensor 'b': data_offsets [4, 12) overlap tensor 'a' at [0, 8)"},
        {"out_of_range", "{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[8,16]}}", 12,
         "tensor 'b': data_offsets [8, 16) lie outside the data section of 12 bytes"},
        {"hole", "{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[12,20]}}", 20,
         "bytes [8, 12) of the data section belong to no tensor (the next is 'b')"},
        {"trailing_data", "{\"a\":" F32_2 "[0,8]}}", 12, "the data section is 12 bytes but the tensors cover only 8"},
        {"duplicate", "{\"a\":" F32_2 "[0,8]},\"a\":" F32_2 "[8,16]}}", 16, "tensor name 'a' appears twice"},
        /* the same entry twice: was "overlap tensor 'a'", the tensor itself */
        {"duplicate_same", "{\"a\":" F32_2 "[0,8]},\"a\":" F32_2 "[0,8]}}", 8, "tensor name 'a' appears twice"},
        {"reversed", "{\"a\":" F32_2 "[8,0]}}", 8, "tensor 'a': data_offsets [8, 0) end before they begin"},
        {"negative_dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0,
         "tensor 'a': shape holds a number that is not a non-negative integer"},
        {"fraction", "{\"a\":" F32_2 "[0,7.5]}}", 8, "tensor 'a': \"data_offsets\" is not a pair"},
        {"three_offsets", "{\"a\":" F32_2 "[0,8,9]}}", 8, "tensor 'a': \"data_offsets\" is not a pair"},
        {"overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", 0,
         "tensor 'a': shape [4294967296, 4294967296, 16] x F32 overflows 64 bits"},
        {"no_dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'a': no \"dtype\" string"},
        {"no_shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'a': no \"shape\" array"},
        {"entry_number", "{\"a\":5}", 0, "tensor 'a': entry is a number, not an object"},
        {"meta_value", "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value of 'k' is a number, not a string"},
        {"meta_array", "{\"__metadata__\":[1]}", 0, "__metadata__ is an array, not an object of strings"},
        {"meta_twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "header has __metadata__ twice"},
        {"meta_key_twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "__metadata__ has key 'k' twice"},
        {"not_utf8", "{\"\xff\":" F32_2 "[0,8]}}", 8, "header is not valid UTF-8 JSON text (byte 0xff at header "
                                                     "offset 2)"},
        {"overlong_utf8", "{\"\xc0\xaf\":" F32_2 "[0,8]}}", 8, "not valid UTF-8"},
        {"control_char", "{\"a\x01\":" F32_2 "[0,8]}}", 8, "(byte 0x01 at header offset 3)"},
        {"empty_header", "", 0, "header: invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = tmp(cases[i].file);
        write_st(path, cases[i].header, cases[i].data);
        expect_open_fails(path, GB_ERR_FORMAT, cases[i].needle);
    }
}
END_TEST

START_TEST(test_rejects_bad_lengths) {
    const char *path = tmp("five_bytes");
    write_bytes(path, "\x01\x02\x03\x04\x05", 5);
    expect_open_fails(path, GB_ERR_FORMAT, "file is 5 bytes, too short for the 8-byte header length");
    path = tmp("zero_bytes");
    write_bytes(path, "", 0);
    expect_open_fails(path, GB_ERR_FORMAT, "file is 0 bytes");

    unsigned char buf[18] = {0xe8, 0x03}; /* header length 1000, 10 bytes follow */
    path = tmp("past_end");
    write_bytes(path, buf, sizeof buf);
    expect_open_fails(path, GB_ERR_FORMAT, "header length 1000 runs past the end of the file (18 bytes)");
    memset(buf, 0xff, 8); /* 2^64 - 1: must not wrap around */
    path = tmp("huge_length");
    write_bytes(path, buf, sizeof buf);
    expect_open_fails(path, GB_ERR_FORMAT, "header length 18446744073709551615 runs past the end");
    memset(buf, 0, 8);
    buf[7] = 0x80; /* 2^63 */
    write_bytes(path, buf, sizeof buf);
    expect_open_fails(path, GB_ERR_FORMAT, "header length 9223372036854775808 runs past the end");

    /* Over the reference's 100 MB limit (a sparse file: no disk used). */
    path = tmp("header_limit");
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ck_assert(fd >= 0);
    uint64_t n = 100000001;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    ck_assert(write(fd, len8, 8) == 8);
    ck_assert(ftruncate(fd, (off_t)(8 + n)) == 0);
    close(fd);
    expect_open_fails(path, GB_ERR_FORMAT, "header length 100000001 is over the format's limit of 100000000 bytes");
    unlink(path);

    /* A good file cut short, in its data and in its header. */
    gb_tensor *x = gb_arange(0, 10, 1);
    const char *good = tmp("good");
    gbt_ok_status(gb_safetensors_save(good, 1, (const char *[]){"x"}, &x, GB_DTYPE_F32, NULL));
    size_t len;
    unsigned char *bytes = read_bytes(good, &len);
    path = tmp("truncated");
    write_bytes(path, bytes, len - 3);
    expect_open_fails(path, GB_ERR_FORMAT, "tensor 'x': data_offsets [0, 40) lie outside the data section of 37 bytes");
    write_bytes(path, bytes, 20);
    expect_open_fails(path, GB_ERR_FORMAT, "runs past the end of the file (20 bytes)");
    /* every prefix fails cleanly, in memory too */
    for (size_t cut = 0; cut < len; cut++) {
        gb_safetensors *st = gb__st_safetensors_open_memory(bytes, cut, "<prefix>");
        ck_assert_msg(st == NULL, "a %zu-byte prefix of a %zu-byte file opened", cut, len);
        ck_assert_int_eq(gb_last_status(), GB_ERR_FORMAT);
        ck_assert(strstr(gb_last_error(), "<prefix>") != NULL);
    }
    gb_safetensors *st = gb__st_safetensors_open_memory(bytes, len, "<whole>");
    gbt_ok(st);
    gb_tensor *y = must_get(st, "x");
    gb_safetensors_free(st);
    gbt_assert_close(y, x, 0, 0, "x from memory");
    gb_tensor_free(y);
    free(bytes);
    gb_tensor_free(x);
}
END_TEST

START_TEST(test_mutated_headers_never_crash) {
    /* Every header byte replaced by a few values: each file either opens (and
     * then every tensor loads or fails cleanly) or fails with FORMAT. A small
     * deterministic cousin of tests/fuzz/fuzz_safetensors.c. */
    gb_tensor *x = gb_arange(0, 6, 1), *h = gb_to_dtype(x, GB_DTYPE_F16);
    gb_tensor *ids = gb_arange_i64(0, 3, 1);
    const char *file = tmp("mutate");
    gbt_ok_status(gb_safetensors_save(file, 3, (const char *[]){"x", "h", "ids"}, (gb_tensor *[]){x, h, ids},
                                      GB_DTYPE_F32, (const char *[]){"k", "v", NULL}));
    size_t len;
    unsigned char *bytes = read_bytes(file, &len);
    const unsigned char values[] = {0, '0', '9', '"', '{', ']', ',', 0xff};
    int opened = 0;
    for (size_t at = 0; at < len - 24; at++)
        for (size_t k = 0; k < sizeof values; k++) {
            unsigned char *m = malloc(len);
            memcpy(m, bytes, len);
            m[at] = values[k];
            gb_safetensors *st = gb__st_safetensors_open_memory(m, len, "<mutant>");
            if (!st) {
                ck_assert_msg(gb_last_status() == GB_ERR_FORMAT, "byte %zu = %d: %s", at, values[k], gb_last_error());
            } else {
                opened++;
                for (int i = 0; i < gb_safetensors_count(st); i++) {
                    gb_tensor *t = gb_safetensors_get(st, gb_safetensors_name(st, i));
                    ck_assert(t != NULL || gb_last_status() == GB_ERR_UNSUPPORTED);
                    gb_tensor_free(t);
                }
                gb_safetensors_free(st);
            }
            free(m);
        }
    ck_assert_int_gt(opened, 0); /* some mutations are harmless (inside metadata, say) */
    free(bytes);
    gb_tensor_free(x);
    gb_tensor_free(h);
    gb_tensor_free(ids);
}
END_TEST

START_TEST(test_unsupported_and_missing) {
    /* F64 and 9-dim tensors are valid files; loading them is what fails. */
    const char *path = tmp("f64");
    write_st(path,
             "{\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
             "\"nine\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[24,25]},"
             "\"e4m3\":{\"dtype\":\"F8_E4M3\",\"shape\":[3],\"data_offsets\":[25,28]}}",
             28);
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    ck_assert_int_eq(gb_safetensors_count(st), 4);
    gb_tensor *f = must_get(st, "f");
    gb_tensor_free(f);
    ck_assert_str_eq(gb_safetensors_stored_dtype(st, "d"), "F64");
    gbt_fails_with(gb_safetensors_get(st, "d") == NULL, GB_ERR_UNSUPPORTED,
                   "tensor 'd' has dtype F64, which glassbox does not hold");
    ck_assert(strstr(gb_last_error(), path) != NULL);
    gbt_fails_with(gb_safetensors_get(st, "e4m3") == NULL, GB_ERR_UNSUPPORTED, "has dtype F8_E4M3");
    gbt_fails_with(gb_safetensors_info(st, "d", NULL, NULL, NULL) != GB_OK, GB_ERR_UNSUPPORTED, "dtype F64");
    gbt_fails_with(gb_safetensors_get(st, "nine") == NULL, GB_ERR_UNSUPPORTED,
                   "tensor 'nine' has 9 dimensions; glassbox supports at most 8");
    gbt_fails_with(gb_safetensors_get(st, "missing") == NULL, GB_ERR_NOT_FOUND, "no tensor named 'missing'");
    ck_assert(strstr(gb_last_error(), path) != NULL);
    gbt_fails_with(gb_safetensors_stored_dtype(st, "missing") == NULL, GB_ERR_NOT_FOUND, "no tensor named");
    gbt_fails_with(gb_safetensors_info(st, "missing", NULL, NULL, NULL) != GB_OK, GB_ERR_NOT_FOUND, "no tensor named");
    ck_assert(!gb_safetensors_has(st, "missing") && gb_safetensors_has(st, "d"));
    gb_safetensors_free(st);

    expect_open_fails(tmp("does_not_exist.safetensors"), GB_ERR_NOT_FOUND, "No such file");
    const char *dir = tmp("empty_dir");
    mkdirs(dir);
    expect_open_fails(dir, GB_ERR_NOT_FOUND, "directory has neither model.safetensors nor model.safetensors.index.json");
    gbt_fails_with(gb_safetensors_open(NULL) == NULL, GB_ERR_ARG, "path is NULL");
}
END_TEST

START_TEST(test_rejects_bad_indexes) {
    const char *dir = tmp("badindex");
    rmtree(dir);
    mkdirs(dir);
    char shard[4200], index[4200];
    snprintf(shard, sizeof shard, "%s/a.safetensors", dir);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    gb_tensor *x = gb_arange(0, 3, 1);
    gbt_ok_status(gb_safetensors_save(shard, 1, (const char *[]){"x"}, &x, GB_DTYPE_F32, NULL));
    static const struct {
        const char *json;
        gb_status status;
        const char *needle;
    } cases[] = {
        {"{\"weight_map\": {\"x\": \"a.safetensors\", \"y\": \"a.safetensors\"}}", GB_ERR_FORMAT,
         "weight_map puts 'y' in 'a.safetensors', which has no such tensor"},
        {"{\"weight_map\": {\"x\": \"b.safetensors\"}}", GB_ERR_NOT_FOUND, "b.safetensors: cannot open"},
        {"{\"weight_map\": {\"x\": \"../a.safetensors\"}}", GB_ERR_FORMAT,
         "weight_map entry 'x' is not a file name in the index's directory"},
        {"{\"weight_map\": {\"x\": \"/etc/passwd\"}}", GB_ERR_FORMAT, "is not a file name"},
        {"{\"weight_map\": {\"x\": 3}}", GB_ERR_FORMAT, "is not a file name"},
        {"{\"metadata\": {}}", GB_ERR_FORMAT, "no \"weight_map\" object"},
        {"{\"weight_map\": {\"x\": \"a.safetensors\", \"x\": \"a.safetensors\"}}", GB_ERR_FORMAT,
         "weight_map lists 'x' twice"},
        {"{\"weight_map\": ", GB_ERR_FORMAT, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(index, cases[i].json);
        gb_safetensors *st = gb_safetensors_open(dir);
        gb_safetensors_free(st);
        gbt_fails_with(st == NULL, cases[i].status, cases[i].needle);
    }
    /* a bad shard fails the whole checkpoint, naming the shard */
    write_st(shard, "{\"x\":" F32_2 "[0,9]}}", 9);
    write_text(index, "{\"weight_map\": {\"x\": \"a.safetensors\"}}");
    gb_safetensors *st = gb_safetensors_open(index);
    gb_safetensors_free(st);
    gbt_fails_with(st == NULL, GB_ERR_FORMAT, "a.safetensors: tensor 'x': data_offsets [0, 9) do not match shape [2]");
    gb_tensor_free(x);
}
END_TEST

/* ---- Hugging Face model location --------------------------------------------- */

/* Environment variables the hub code reads, saved and restored so that
 * tests running in one process (CK_FORK=no) do not leak settings. */
static const char *const HUB_ENV[] = {"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"};
#define N_HUB_ENV 5
static char *saved_env[N_HUB_ENV];

static void save_env(void) {
    for (int i = 0; i < N_HUB_ENV; i++) {
        const char *v = getenv(HUB_ENV[i]);
        saved_env[i] = v ? strdup(v) : NULL;
        unsetenv(HUB_ENV[i]);
    }
}

static void restore_env(void) {
    for (int i = 0; i < N_HUB_ENV; i++) {
        if (saved_env[i]) setenv(HUB_ENV[i], saved_env[i], 1);
        else unsetenv(HUB_ENV[i]);
        free(saved_env[i]);
        saved_env[i] = NULL;
    }
}

/* A snapshot directory with config.json and a one-tensor weights file. */
static void fake_snapshot(const char *dir, const char *weights_name) {
    char p[8192];
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_text(p, "{\"model_type\": \"gpt2\"}");
    if (!weights_name) return;
    gb_tensor *w = gb_arange(0, 6, 1), *w2 = gb_reshape(w, 2, (int64_t[]){2, 3});
    snprintf(p, sizeof p, "%s/%s", dir, weights_name);
    gbt_ok_status(gb_safetensors_save(p, 1, (const char *[]){"h.0.attn.c_attn.weight"}, &w2, GB_DTYPE_F32,
                                      (const char *[]){"format", "pt", NULL}));
    gb_tensor_free(w2);
    gb_tensor_free(w);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

START_TEST(test_hub_cache_layout) {
    save_env();
    char cache[4200], p[4400];
    snprintf(p, sizeof p, "%s/st_hub", gbt_tmp_dir());
    rmtree(p);
    snprintf(cache, sizeof cache, "%s/st_hub/cache", gbt_tmp_dir());
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots/abc123", cache);
    fake_snapshot(p, "model.safetensors");
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots/def456", cache);
    fake_snapshot(p, NULL);
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots/def456/model.safetensors.index.json", cache);
    write_text(p, "{\"weight_map\": {}}");
    snprintf(p, sizeof p, "%s/models--org--tiny/refs", cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--tiny/refs/main", cache);
    write_text(p, "abc123\n");
    snprintf(p, sizeof p, "%s/models--org--tiny/refs/dev", cache);
    write_text(p, "def456");
    setenv("HF_HUB_CACHE", cache, 1);

    char *dir = gb_hf_cache_dir();
    ck_assert_str_eq(dir, cache);
    free(dir);
    gb_hf_files f;
    gbt_ok_status(gb_hf_resolve("org/tiny", &f));
    snprintf(p, sizeof p, "%s/models--org--tiny/snapshots/abc123", cache);
    ck_assert_str_eq(f.dir, p);
    ck_assert(ends_with(f.weights, "snapshots/abc123/model.safetensors"));
    ck_assert(ends_with(f.config, "snapshots/abc123/config.json"));
    gb_safetensors *st = gb_safetensors_open(f.weights);
    gbt_ok(st);
    ck_assert(gb_safetensors_has(st, "h.0.attn.c_attn.weight"));
    gb_safetensors_free(st);
    gb_hf_files_free(&f);

    gbt_ok_status(gb_hf_resolve("org/tiny@dev", &f)); /* a branch */
    ck_assert(ends_with(f.weights, "snapshots/def456/model.safetensors.index.json"));
    gb_hf_files_free(&f);
    gbt_ok_status(gb_hf_resolve("org/tiny@abc123", &f)); /* a commit */
    ck_assert(ends_with(f.weights, "snapshots/abc123/model.safetensors"));
    gb_hf_files_free(&f);

    gbt_fails_with(gb_hf_resolve("org/missing", &f) != GB_OK, GB_ERR_NOT_FOUND, "not in the Hugging Face cache");
    ck_assert(strstr(gb_last_error(), "models--org--missing") && strstr(gb_last_error(), cache));
    ck_assert_ptr_null(f.dir);
    gbt_fails_with(gb_hf_resolve("org/tiny@nope", &f) != GB_OK, GB_ERR_NOT_FOUND,
                   "revision 'nope' is not in the cache");
    ck_assert(strstr(gb_last_error(), "refs/nope") != NULL);
    snprintf(p, sizeof p, "%s/models--org--tiny/refs/stale", cache);
    write_text(p, "0000beef");
    gbt_fails_with(gb_hf_resolve("org/tiny@stale", &f) != GB_OK, GB_ERR_NOT_FOUND,
                   "revision 'stale' is commit 0000beef, but");
    snprintf(p, sizeof p, "%s/models--org--tiny/refs/evil", cache);
    write_text(p, "../../..");
    gbt_fails_with(gb_hf_resolve("org/tiny@evil", &f) != GB_OK, GB_ERR_FORMAT, "does not hold a commit hash");
    gbt_fails_with(gb_hf_resolve("org/../x", &f) != GB_OK, GB_ERR_NOT_FOUND, "not a Hub id");
    gbt_fails_with(gb_hf_resolve("", &f) != GB_OK, GB_ERR_ARG, "model is NULL or empty");

    /* a snapshot without config.json, one with only a pickle */
    snprintf(p, sizeof p, "%s/models--org--noconf/snapshots/c1", cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--noconf/refs", cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--org--noconf/refs/main", cache);
    write_text(p, "c1");
    gbt_fails_with(gb_hf_resolve("org/noconf", &f) != GB_OK, GB_ERR_NOT_FOUND, "org/noconf: no config.json in");
    snprintf(p, sizeof p, "%s/models--org--noconf/snapshots/c1", cache);
    fake_snapshot(p, NULL);
    snprintf(p, sizeof p, "%s/models--org--noconf/snapshots/c1/pytorch_model.bin", cache);
    write_text(p, "pickle");
    gbt_fails_with(gb_hf_resolve("org/noconf", &f) != GB_OK, GB_ERR_NOT_FOUND,
                   "no model.safetensors or model.safetensors.index.json in");
    ck_assert(strstr(gb_last_error(), "only pytorch_model.bin") != NULL);

    /* HF_HOME, then XDG_CACHE_HOME, then HOME; a name without an org */
    unsetenv("HF_HUB_CACHE");
    char home[4200];
    snprintf(home, sizeof home, "%s/st_hub/hfhome", gbt_tmp_dir());
    snprintf(p, sizeof p, "%s/hub/models--solo/snapshots/s1", home);
    fake_snapshot(p, "model.safetensors");
    snprintf(p, sizeof p, "%s/hub/models--solo/refs", home);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/hub/models--solo/refs/main", home);
    write_text(p, "s1");
    setenv("HF_HOME", home, 1);
    gbt_ok_status(gb_hf_resolve("solo", &f));
    ck_assert(ends_with(f.weights, "hfhome/hub/models--solo/snapshots/s1/model.safetensors"));
    gb_hf_files_free(&f);
    unsetenv("HF_HOME");
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    dir = gb_hf_cache_dir();
    ck_assert_str_eq(dir, "/xdg/huggingface/hub");
    free(dir);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/someone", 1);
    dir = gb_hf_cache_dir();
    ck_assert_str_eq(dir, "/home/someone/.cache/huggingface/hub");
    free(dir);
    setenv("HF_HOME", "~/hf", 1);
    dir = gb_hf_cache_dir();
    ck_assert_str_eq(dir, "/home/someone/hf/hub");
    free(dir);
    unsetenv("HF_HOME");
    unsetenv("HOME");
    gbt_fails_with(gb_hf_cache_dir() == NULL, GB_ERR_NOT_FOUND, "no cache directory");
    restore_env();
}
END_TEST

START_TEST(test_hub_local_paths) {
    save_env();
    char dir[4200], p[4400];
    snprintf(dir, sizeof dir, "%s/st_local", gbt_tmp_dir());
    rmtree(dir);
    snprintf(dir, sizeof dir, "%s/st_local/model", gbt_tmp_dir());
    fake_snapshot(dir, "model.safetensors");
    gb_hf_files f;
    gbt_ok_status(gb_hf_resolve(dir, &f));
    ck_assert_str_eq(f.dir, dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    ck_assert_str_eq(f.weights, p);
    gb_hf_files_free(&f);
    /* a weights file: config.json beside it */
    gbt_ok_status(gb_hf_resolve(p, &f));
    ck_assert_str_eq(f.dir, dir);
    ck_assert_str_eq(f.weights, p);
    snprintf(p, sizeof p, "%s/config.json", dir);
    ck_assert_str_eq(f.config, p);
    gb_hf_files_free(&f);
    /* a weights file with no config.json beside it */
    snprintf(dir, sizeof dir, "%s/st_local/bare", gbt_tmp_dir());
    mkdirs(dir);
    snprintf(p, sizeof p, "%s/w.safetensors", dir);
    write_st(p, "{}", 0);
    gbt_fails_with(gb_hf_resolve(p, &f) != GB_OK, GB_ERR_NOT_FOUND, "no config.json beside it (looked for");
    ck_assert(strstr(gb_last_error(), "st_local/bare/config.json") != NULL);
    gbt_fails_with(gb_hf_resolve(dir, &f) != GB_OK, GB_ERR_NOT_FOUND, "no config.json in");
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    write_text(p, "hello");
    gbt_fails_with(gb_hf_resolve(p, &f) != GB_OK, GB_ERR_ARG, "neither a model directory nor a .safetensors");
    gbt_fails_with(gb_hf_resolve("/no/such/model", &f) != GB_OK, GB_ERR_NOT_FOUND, "/no/such/model: no such file");
    restore_env();
}
END_TEST

/* The usage example at the top of io.h's safetensors section, verbatim (as
 * tests/test_header_examples.c wraps it, in a function returning int), run
 * against a fake cache holding "openai-community/gpt2" so that its success
 * path runs too (test_header_examples finds no model: its error path). */
static int header_example(void) {
    gb_hf_files f;                                  // config.json + weights
    if (gb_hf_resolve("openai-community/gpt2", &f) != GB_OK) {
        fprintf(stderr, "%s\n", gb_last_error());   // names what it looked for, and where
        return 1;
    }
    gb_safetensors *st = gb_safetensors_open(f.weights); // file, index or directory
    if (!st) { fprintf(stderr, "%s\n", gb_last_error()); gb_hf_files_free(&f); return 1; }
    for (int i = 0; i < gb_safetensors_count(st); i++)
        printf("%s %s\n", gb_safetensors_name(st, i),
               gb_safetensors_stored_dtype(st, gb_safetensors_name(st, i)));
    gb_tensor *w = gb_safetensors_get(st, "h.0.attn.c_attn.weight"); // f32: converted or zero-copy
    const char *format = gb_safetensors_metadata(st, "format");     // "pt", or NULL
    gb_status s = gb_safetensors_save("w.safetensors", 1, (const char *[]){"w"}, &w,
                                      GB_DTYPE_BF16, (const char *[]){"format", "pt", NULL});
    gb_tensor_free(w);          // the file stays mapped while any tensor from it lives
    gb_safetensors_free(st);
    gb_hf_files_free(&f);
    (void)format;
    return s == GB_OK ? 0 : 1;
}

START_TEST(test_header_example_runs) {
    save_env();
    char cache[8400], p[8800], cwd[4096];
    ck_assert(getcwd(cwd, sizeof cwd) != NULL);
    /* absolute, since the example runs in another directory */
    const char *t = gbt_tmp_dir();
    snprintf(p, sizeof p, "%s/st_example", t);
    rmtree(p);
    snprintf(cache, sizeof cache, "%s%s%s/st_example/cache", t[0] == '/' ? "" : cwd, t[0] == '/' ? "" : "/", t);
    snprintf(p, sizeof p, "%s/models--openai-community--gpt2/snapshots/e7da7f2", cache);
    fake_snapshot(p, "model.safetensors");
    snprintf(p, sizeof p, "%s/models--openai-community--gpt2/refs", cache);
    mkdirs(p);
    snprintf(p, sizeof p, "%s/models--openai-community--gpt2/refs/main", cache);
    write_text(p, "e7da7f2");
    setenv("HF_HUB_CACHE", cache, 1);
    snprintf(p, sizeof p, "%s/st_example", gbt_tmp_dir());
    ck_assert(chdir(p) == 0); /* the example writes w.safetensors here */
    unlink("w.safetensors");
    fflush(stdout); /* the example lists tensors on stdout: keep the test log clean */
    int saved = dup(1), null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    int rc = header_example();
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(null);
    gb_safetensors *st = gb_safetensors_open("w.safetensors");
    ck_assert(chdir(cwd) == 0);
    ck_assert_int_eq(rc, 0);
    gbt_ok(st);
    ck_assert_str_eq(gb_safetensors_stored_dtype(st, "w"), "BF16");
    ck_assert_str_eq(gb_safetensors_metadata(st, "format"), "pt");
    gb_safetensors_free(st);
    restore_env();
}
END_TEST

Suite *gb_suite_safetensors(void) {
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("safetensors");
    tcase_set_timeout(tc, 120); /* the round trips start Python */
    tcase_add_test(tc, test_reads_stories260k);
    tcase_add_test(tc, test_zero_copy_shares_private_pages);
    tcase_add_test(tc, test_reads_every_dtype);
    tcase_add_test(tc, test_reads_unaligned_data);
    tcase_add_test(tc, test_reads_sharded_checkpoint);
    tcase_add_test(tc, test_reads_generated_hf_checkpoints);
    tcase_add_test(tc, test_roundtrip_f32);
    tcase_add_test(tc, test_roundtrip_f16);
    tcase_add_test(tc, test_roundtrip_bf16);
    tcase_add_test(tc, test_writer_matches_reference_bytes);
    tcase_add_test(tc, test_save_errors);
    tcase_add_test(tc, test_rejects_malformed_headers);
    tcase_add_test(tc, test_rejects_bad_lengths);
    tcase_add_test(tc, test_mutated_headers_never_crash);
    tcase_add_test(tc, test_unsupported_and_missing);
    tcase_add_test(tc, test_rejects_bad_indexes);
    tcase_add_test(tc, test_hub_cache_layout);
    tcase_add_test(tc, test_hub_local_paths);
    tcase_add_test(tc, test_header_example_runs);
    suite_add_tcase(s, tc);
    return s;
}
