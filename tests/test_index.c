/* Indexing: parsing and formatting index strings, views, errors, in-place
 * assignment and its gradients. Expected values, error wording and gradients
 * come from tests/oracle/index.py (PyTorch evaluating the same strings);
 * syntax errors, which Python cannot report in glassbox's terms, are derived
 * by hand next to each case. */
#include <stdlib.h>

#include "gbtest.h"
#include "tensor/tensor_impl.h"

/* ---- the case lines of index.txt ---------------------------------------- */

/* Tab-separated lines "#TAG\tfield\t..." that gbt_oracle_load skips. */
typedef struct gbt_row {
    char *line;
    char *f[8];
    int n;
} gbt_row;

static gbt_row *rows_load(const char *file, const char *tag, int *count) {
    const char *dir = getenv("GB_ORACLE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", dir ? dir : "build/oracle", file);
    FILE *fp = fopen(path, "r");
    ck_assert_msg(fp != NULL, "oracle file %s is missing", path);
    gbt_row *rows = NULL;
    int n = 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    size_t taglen = strlen(tag);
    while ((len = getline(&buf, &cap, fp)) > 0) {
        if (buf[len - 1] == '\n') buf[--len] = 0;
        if (strncmp(buf, tag, taglen) != 0 || buf[taglen] != '\t') continue;
        rows = realloc(rows, sizeof *rows * (size_t)(n + 1));
        gbt_row *r = &rows[n++];
        r->line = strdup(buf);
        r->n = 0;
        for (char *p = r->line; p && r->n < 8;) {
            r->f[r->n++] = p;
            p = strchr(p, '\t');
            if (p) *p++ = 0;
        }
    }
    free(buf);
    fclose(fp);
    ck_assert_msg(n > 0, "oracle %s has no %s lines", path, tag);
    *count = n;
    return rows;
}

static void rows_free(gbt_row *rows, int n) {
    for (int i = 0; i < n; i++) free(rows[i].line);
    free(rows);
}

static gb_status status_named(const char *name) {
    for (int s = 0; s < GB_STATUS_COUNT; s++)
        if (!strcmp(gb_status_name((gb_status)s), name)) return (gb_status)s;
    ck_abort_msg("unknown status %s", name);
    return GB_OK;
}

/* ---- parsing and formatting --------------------------------------------- */

START_TEST(test_parse_items) {
    gb_index_expr e;
    gbt_ok_status(gb_index_parse("[:, -1, ::2, ..., None, 3:5]", &e));
    ck_assert_int_eq(e.n, 6);
    ck_assert_int_eq(e.item[0].kind, GB_INDEX_KIND_SLICE);
    ck_assert(!e.item[0].has_start && !e.item[0].has_stop && e.item[0].step == 1);
    ck_assert_int_eq(e.item[1].kind, GB_INDEX_KIND_INT);
    ck_assert_int_eq(e.item[1].start, -1);
    ck_assert_int_eq(e.item[2].kind, GB_INDEX_KIND_SLICE);
    ck_assert(!e.item[2].has_start && !e.item[2].has_stop && e.item[2].step == 2);
    ck_assert_int_eq(e.item[3].kind, GB_INDEX_KIND_ELLIPSIS);
    ck_assert_int_eq(e.item[4].kind, GB_INDEX_KIND_NEWAXIS);
    ck_assert_int_eq(e.item[5].kind, GB_INDEX_KIND_SLICE);
    ck_assert(e.item[5].has_start && e.item[5].has_stop && e.item[5].start == 3 && e.item[5].stop == 5);
    /* The extremes of int64 parse; one past them does not. */
    gbt_ok_status(gb_index_parse("-9223372036854775808:9223372036854775807", &e));
    ck_assert(e.item[0].start == INT64_MIN && e.item[0].stop == INT64_MAX);
}
END_TEST

START_TEST(test_format_round_trip) {
    /* text -> canonical form (derived from the grammar by hand) */
    static const char *cases[][2] = {
        {"[:, -1, ::2, ..., None, 3:5]", "[:, -1, ::2, ..., None, 3:5]"},
        {" :,-1 ", "[:, -1]"},
        {"[ 1 : 5 : 2 ]", "[1:5:2]"},
        {"[::1]", "[:]"},
        {"[3:4:]", "[3:4]"},
        {"[+7, -0]", "[7, 0]"},
        {"[1,]", "[1]"},
        {"", "[]"},
        {"[ ]", "[]"},
        {"[None,...]", "[None, ...]"},
        {"[-3::-2]", "[-3::-2]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gb_index_expr e, e2;
        char buf[128], buf2[128];
        gbt_ok_status(gb_index_parse(cases[i][0], &e));
        int n = gb_index_format(&e, buf, sizeof buf);
        ck_assert_str_eq(buf, cases[i][1]);
        ck_assert_int_eq(n, (int)strlen(cases[i][1]));
        gbt_ok_status(gb_index_parse(buf, &e2)); /* the canonical form reads back the same */
        gb_index_format(&e2, buf2, sizeof buf2);
        ck_assert_str_eq(buf2, buf);
    }
    /* Like snprintf: the needed length, truncated output, size 0 allowed. */
    gb_index_expr e;
    gb_index_parse("[:, -1]", &e);
    char small[4];
    ck_assert_int_eq(gb_index_format(&e, small, sizeof small), 7);
    ck_assert_str_eq(small, "[:,");
    ck_assert_int_eq(gb_index_format(&e, NULL, 0), 7);
}
END_TEST

START_TEST(test_parse_errors) {
    /* text, message; columns count from 1 over the text as given */
    static const char *cases[][2] = {
        {"[:, 1:]]", "index: unexpected ']' at column 8 in '[:, 1:]]'"},
        {"[1", "index: unexpected end of text at column 3 in '[1'"},
        {"[a]", "index: unexpected 'a' at column 2 in '[a]'"},
        {"[1 2]", "index: unexpected '2' at column 4 in '[1 2]'"},
        {"[,]", "index: unexpected ',' at column 2 in '[,]'"},
        {"[1,,2]", "index: unexpected ',' at column 4 in '[1,,2]'"},
        {"[-]", "index: unexpected ']' at column 3 in '[-]'"},
        {"[..]", "index: unexpected '.' at column 2 in '[..]'"},
        {"[Nonex]", "index: unexpected 'N' at column 2 in '[Nonex]'"},
        {"[1:2:3:4]", "index: unexpected ':' at column 7 in '[1:2:3:4]'"},
        {"[1:2 3]", "index: unexpected '3' at column 6 in '[1:2 3]'"},
        {"1]", "index: unexpected ']' at column 2 in '1]'"},
        {"[1] x", "index: unexpected 'x' at column 5 in '[1] x'"},
        {"[\x01]", "index: unexpected character 0x01 at column 2 in '[\x01]'"},
        {"[9223372036854775808]", "index: number out of range at column 2 in '[9223372036854775808]'"},
        {"[0:-9223372036854775809]", "index: number out of range at column 4 in '[0:-9223372036854775809]'"},
        /* items start at columns 2, 5, 8, ...: the 17th at 2 + 3*16 = 50 */
        {"[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]",
         "index: too many items (at most 16) at column 50 in '[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gb_index_expr e;
        e.n = 5;
        gbt_fails_with(gb_index_parse(cases[i][0], &e) != GB_OK, GB_ERR_ARG, cases[i][1]);
        ck_assert_str_eq(gb_last_error(), cases[i][1]);
        ck_assert_int_eq(e.n, 0); /* the out-param is cleared */
    }
    gb_index_expr e;
    gbt_fails_with(gb_index_parse(NULL, &e) != GB_OK, GB_ERR_ARG, "index: expression is NULL");
    /* The string entry points report the same syntax errors. */
    gb_tensor *x = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F32);
    gbt_fails_with(gb_index(x, "[1 2]") == NULL, GB_ERR_ARG, "unexpected '2' at column 4");
    gbt_fails_with(gb_index_put_(x, "[1 2]", x) != GB_OK, GB_ERR_ARG, "unexpected '2' at column 4");
    gbt_fails_with(gb_index_fill_(x, "[1 2]", 0) != GB_OK, GB_ERR_ARG, "unexpected '2' at column 4");
    gb_tensor_free(x);
}
END_TEST

/* ---- views -------------------------------------------------------------- */

START_TEST(test_views_match_torch) {
    gbt_oracle *o = gbt_oracle_load("index");
    int n;
    gbt_row *rows = rows_load("index", "#view", &n);
    for (int i = 0; i < n; i++) {
        const char *name = rows[i].f[1], *expr = rows[i].f[3];
        char what[256];
        snprintf(what, sizeof what, "%s[%s] (%s)", rows[i].f[2], expr, name);
        gb_tensor *x = gbt_get(o, rows[i].f[2]);
        gb_tensor *want = gbt_getf(o, "%s.out", name);
        gb_tensor *stride = gbt_getf(o, "%s.stride", name), *offset = gbt_getf(o, "%s.offset", name);
        gb_tensor *r = gb_index(x, expr);
        gbt_assert_close(r, want, 0, 0, what);
        ck_assert_msg(gb_tensor_dtype(r) == gb_tensor_dtype(x), "%s: dtype changed", what);
        ck_assert_msg(gb_tensor_shares_storage(r, x), "%s: not a view", what);
        ck_assert_msg(r != x, "%s: a view is a new handle", what);
        /* The same geometry as PyTorch (strides of size-1 dims are free). */
        const int64_t *ws = gb_tensor_data(stride);
        for (int d = 0; d < gb_tensor_ndim(r); d++)
            if (gb_tensor_dim(r, d) > 1)
                ck_assert_msg(gb_tensor_strides(r)[d] == ws[d], "%s: stride %d is %lld, torch %lld", what, d,
                              (long long)gb_tensor_strides(r)[d], (long long)ws[d]);
        if (gb_tensor_numel(r) > 0)
            ck_assert_msg(gb_tensor_offset(r) == *(int64_t *)gb_tensor_data(offset), "%s: offset %lld, torch %lld",
                          what, (long long)gb_tensor_offset(r), (long long)*(int64_t *)gb_tensor_data(offset));
        /* gb_index_shape and the C form agree with the view. */
        gb_index_expr e;
        gbt_ok_status(gb_index_parse(expr, &e));
        int nd;
        int64_t shape[GB_MAX_DIMS];
        gbt_ok_status(gb_index_shape(gb_tensor_ndim(x), gb_tensor_shape(x), &e, &nd, shape));
        ck_assert_int_eq(nd, gb_tensor_ndim(r));
        for (int d = 0; d < nd; d++) ck_assert_int_eq(shape[d], gb_tensor_dim(r, d));
        gb_tensor *r2 = gb_index_expr_apply(x, &e);
        gbt_assert_close(r2, want, 0, 0, what);
        gb_tensor_free(r2), gb_tensor_free(r), gb_tensor_free(stride), gb_tensor_free(offset);
        gb_tensor_free(want), gb_tensor_free(x);
    }
    rows_free(rows, n);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_errors_match_torch) {
    gbt_oracle *o = gbt_oracle_load("index");
    int n;
    gbt_row *rows = rows_load("index", "#err", &n);
    for (int i = 0; i < n; i++) {
        const char *base = rows[i].f[2], *expr = rows[i].f[4], *needle = rows[i].f[5];
        gb_status st = status_named(rows[i].f[3]);
        gb_tensor *x = gbt_get(o, base);
        gbt_fails_with(gb_index(x, expr) == NULL, st, needle);
        ck_assert_msg(strstr(gb_last_error(), "(indexing shape ") != NULL, "no context in '%s'", gb_last_error());
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", gb_last_error());
        /* gb_index_shape fails the same way, word for word. */
        gb_index_expr e;
        gbt_ok_status(gb_index_parse(expr, &e));
        int nd = 3;
        int64_t shape[GB_MAX_DIMS];
        ck_assert(gb_index_shape(gb_tensor_ndim(x), gb_tensor_shape(x), &e, &nd, shape) == st);
        ck_assert_str_eq(gb_last_error(), msg);
        ck_assert_int_eq(nd, 0);
        gb_tensor_free(x);
    }
    rows_free(rows, n);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_glassbox_limits) {
    /* Derived: 2 dims + 7 new axes = 9 > GB_MAX_DIMS (8); PyTorch allows 64. */
    gb_tensor *x = gb_zeros(2, (int64_t[]){2, 3}, GB_DTYPE_F32);
    gbt_fails_with(gb_index(x, "[None, None, None, None, None, None, None]") == NULL, GB_ERR_SHAPE,
                   "index: the result would have 9 dimensions, at most 8 are supported (indexing shape [2, 3] with "
                   "[None, None, None, None, None, None, None])");
    /* ...but an intermediate never counts: 8 dims in, 8 out. */
    gb_tensor *big = gb_zeros(8, (int64_t[]){1, 2, 1, 2, 1, 2, 1, 2}, GB_DTYPE_F32);
    gb_tensor *r = gb_index(big, "[None, 0, None, 1]");
    gbt_ok(r);
    ck_assert_int_eq(gb_tensor_ndim(r), 8);
    gb_tensor_free(r);
    /* C-form expressions are checked too. */
    gb_index_expr e = {.n = 17};
    gbt_fails_with(gb_index_expr_apply(x, &e) == NULL, GB_ERR_ARG, "0 to 16 items, got 17");
    e = (gb_index_expr){.n = 1, .item = {{.kind = (gb_index_kind)42}}};
    gbt_fails_with(gb_index_expr_apply(x, &e) == NULL, GB_ERR_ARG, "item 0 has an unknown kind 42");
    int nd;
    int64_t shape[GB_MAX_DIMS];
    e = (gb_index_expr){.n = 0};
    gbt_fails_with(gb_index_shape(2, (int64_t[]){2, -1}, &e, &nd, shape) != GB_OK, GB_ERR_SHAPE, "negative size");
    gbt_fails_with(gb_index_shape(9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, &e, &nd, shape) != GB_OK,
                   GB_ERR_SHAPE, "9 dimensions");
    /* Extreme bounds clamp like Python: x[INT64_MIN:INT64_MAX:INT64_MAX] on
     * [2, 3] dim 1 is x[:, 0:1]. */
    e = (gb_index_expr){.n = 2,
                        .item = {{.kind = GB_INDEX_KIND_SLICE, .step = 1},
                                 {.kind = GB_INDEX_KIND_SLICE, .start = INT64_MIN, .stop = INT64_MAX,
                                  .has_start = true, .has_stop = true, .step = INT64_MAX}}};
    gbt_ok_status(gb_index_shape(2, (int64_t[]){2, 3}, &e, &nd, shape));
    ck_assert(nd == 2 && shape[0] == 2 && shape[1] == 1);
    /* A slice whose has_start/has_stop are false ignores start/stop. */
    e.item[1] = (gb_index_item){.kind = GB_INDEX_KIND_SLICE, .start = 2, .stop = 2, .step = 1};
    gbt_ok_status(gb_index_shape(2, (int64_t[]){2, 3}, &e, &nd, shape));
    ck_assert(nd == 2 && shape[1] == 3);
    gb_tensor_free(big), gb_tensor_free(x);
}
END_TEST

START_TEST(test_index_on_meta) {
    gb__meta_push();
    gb_tensor *x = gb_empty(3, (int64_t[]){4, 5, 6}, GB_DTYPE_F32);
    gb__meta_pop();
    ck_assert(gb__is_meta(x));
    gb_tensor *r = gb_index(x, "[1:3, None, ..., -1]");
    gbt_ok(r);
    ck_assert(gb__is_meta(r));
    ck_assert(gb_tensor_ndim(r) == 3 && gb_tensor_dim(r, 0) == 2 && gb_tensor_dim(r, 1) == 1 && gb_tensor_dim(r, 2) == 5);
    gb_tensor *v = gb_zeros(1, (int64_t[]){5}, GB_DTYPE_F32);
    gbt_ok_status(gb_index_put_(x, "[0, :, 1]", v)); /* shapes checked, nothing to write */
    gbt_fails_with(gb_index_put_(x, "[0, 1]", v) != GB_OK, GB_ERR_SHAPE, "must match the existing size (5)");
    gb_tensor_free(v), gb_tensor_free(r), gb_tensor_free(x);
}
END_TEST

/* ---- assignment --------------------------------------------------------- */

START_TEST(test_put_matches_torch) {
    gbt_oracle *o = gbt_oracle_load("index");
    int n;
    gbt_row *rows = rows_load("index", "#put", &n);
    for (int i = 0; i < n; i++) {
        const char *name = rows[i].f[1], *expr = rows[i].f[4];
        char what[256];
        snprintf(what, sizeof what, "%s[%s] = %s (%s)", rows[i].f[2], expr, rows[i].f[3], name);
        gb_tensor *x = gbt_get(o, rows[i].f[2]), *v = gbt_get(o, rows[i].f[3]);
        gb_tensor *want = gbt_getf(o, "%s.out", name);
        gb_tensor *y = gb_clone(x);
        uint32_t version = y->storage->version;
        gbt_ok_status(gb_index_put_(y, expr, v));
        ck_assert_msg(y->storage->version == version + 1, "%s: version not bumped once", what);
        ck_assert_msg(gb_tensor_dtype(y) == gb_tensor_dtype(x), "%s: dtype changed", what);
        gbt_assert_close(y, want, 0, 0, what);
        ck_assert_int_eq(y->op, GB_OP_CONTIGUOUS); /* nothing requires grad: nothing recorded */
        /* Through a strided destination: the transposed copy of x, written
         * through its transpose, gives the same values. */
        if (gb_tensor_ndim(x) == 2) {
            gb_tensor *xt = gb_transpose(x, 0, 1), *ct = gb_clone(xt), *yt = gb_transpose(ct, 0, 1);
            gbt_ok_status(gb_index_put_(yt, expr, v));
            gbt_assert_close(yt, want, 0, 0, what);
            gb_tensor_free(yt), gb_tensor_free(ct), gb_tensor_free(xt);
        }
        gb_tensor_free(y), gb_tensor_free(want), gb_tensor_free(v), gb_tensor_free(x);
    }
    rows_free(rows, n);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_put_errors_match_torch) {
    gbt_oracle *o = gbt_oracle_load("index");
    int n;
    gbt_row *rows = rows_load("index", "#puterr", &n);
    for (int i = 0; i < n; i++) {
        const char *expr = rows[i].f[5], *needle = rows[i].f[6];
        gb_status st = status_named(rows[i].f[4]);
        gb_tensor *x = gbt_get(o, rows[i].f[2]), *v = gbt_get(o, rows[i].f[3]);
        gb_tensor *y = gb_clone(x);
        uint32_t version = y->storage->version;
        gbt_fails_with(gb_index_put_(y, expr, v) != GB_OK, st, needle);
        if (st == GB_ERR_SHAPE) ck_assert_msg(!strncmp(gb_last_error(), "index_put_: ", 12), "%s", gb_last_error());
        ck_assert_int_eq(y->storage->version, version); /* nothing written */
        gbt_assert_close(y, x, 0, 0, "unchanged after a failed index_put_");
        gb_tensor_free(y), gb_tensor_free(v), gb_tensor_free(x);
    }
    rows_free(rows, n);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_fill_matches_torch) {
    gbt_oracle *o = gbt_oracle_load("index");
    int n;
    gbt_row *rows = rows_load("index", "#fill", &n);
    for (int i = 0; i < n; i++) {
        const char *name = rows[i].f[1], *expr = rows[i].f[4];
        gb_tensor *x = gbt_get(o, rows[i].f[2]), *want = gbt_getf(o, "%s.out", name);
        gb_tensor *y = gb_clone(x);
        gbt_ok_status(gb_index_fill_(y, expr, strtof(rows[i].f[3], NULL)));
        gbt_assert_close(y, want, 0, 0, name);
        gb_tensor_free(y), gb_tensor_free(want), gb_tensor_free(x);
    }
    rows_free(rows, n);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_put_overlapping_value) {
    /* t[1:] = t[:-1] reads every value before it is overwritten, as torch's
     * copy_ does: [0 1 2 3 4] -> [0 0 1 2 3] (derived). */
    gb_tensor *x = gb_arange(0, 5, 1);
    gb_tensor *v = gb_index(x, "[:-1]");
    gbt_ok_status(gb_index_put_(x, "[1:]", v));
    const float *p = gb_tensor_f32(x);
    float want[5] = {0, 0, 1, 2, 3};
    for (int i = 0; i < 5; i++) ck_assert_float_eq(p[i], want[i]);
    gb_tensor_free(v), gb_tensor_free(x);
}
END_TEST

/* ---- autograd ----------------------------------------------------------- */

static gb_tensor *leaf_copy(gbt_oracle *o, const char *name, const char *part) {
    gb_tensor *t = gbt_getf(o, "%s.%s", name, part), *c = gb_clone(t);
    gb_tensor_free(t);
    gbt_ok_status(gb_requires_grad_(c, true));
    return c;
}

static void assert_grad(gbt_oracle *o, const gb_tensor *t, const char *name, const char *part) {
    char what[128];
    snprintf(what, sizeof what, "%s.%s", name, part);
    gb_tensor *want = gbt_getf(o, "%s.%s", name, part);
    ck_assert_msg(gb_tensor_grad(t) != NULL, "%s: no gradient", what);
    gbt_assert_close(gb_tensor_grad(t), want, 1e-6, 1e-6, what);
    gb_tensor_free(want);
}

START_TEST(test_grads_match_torch) {
    gbt_oracle *o = gbt_oracle_load("index");
    int n;
    gbt_row *rows = rows_load("index", "#grad", &n);
    for (int i = 0; i < n; i++) {
        const char *name = rows[i].f[1], *kind = rows[i].f[2], *expr = rows[i].f[3];
        bool plain = !strcmp(kind, "plain"), mul = !strcmp(kind, "mul");
        gb_tensor *x = leaf_copy(o, name, "x"), *R = gbt_getf(o, "%s.R", name);
        gb_tensor *y = plain ? gb_zeros(2, (int64_t[]){3, 4}, GB_DTYPE_F32) : mul ? gb_mul_scalar(x, 2) : gb_clone(x);
        gb_tensor *v = NULL, *w = NULL, *v2 = NULL;
        if (!strcmp(kind, "viewof")) {
            w = leaf_copy(o, name, "w");
            v = gb_index(w, "[0]");
        } else if (!strcmp(kind, "self")) {
            v = gb_index(y, "[:, 1]");
        } else if (strcmp(kind, "fill") != 0) {
            v = leaf_copy(o, name, "v");
        }
        if (v) gbt_ok_status(gb_index_put_(y, expr, v));
        else gbt_ok_status(gb_index_fill_(y, expr, 5.0f));
        ck_assert_str_eq(gb_tensor_op_name(y), "index_put_");
        ck_assert(gb_tensor_requires_grad(y) && !gb_tensor_is_leaf(y));
        if (!strcmp(kind, "twice")) {
            v2 = leaf_copy(o, name, "v2");
            gbt_ok_status(gb_index_put_(y, "[1]", v2));
        }
        if (!strcmp(kind, "stale")) { /* INDEX_PUT saves nothing: a later write to v is fine */
            gb_grad_mode m = gb_no_grad_begin();
            gbt_ok_status(gb_fill_(v, 9.0f));
            gb_grad_mode_end(m);
        }
        gb_tensor *want_y = gbt_getf(o, "%s.y", name);
        gbt_assert_close(y, want_y, 0, 0, name);
        gb_tensor_free(want_y);
        if (mul) { /* L = sum(y * R), through other ops */
            gb_tensor *p = gb_mul(y, R), *loss = gb_sum_all(p);
            gbt_ok_status(gb_backward(loss, NULL, false));
            gb_tensor_free(loss), gb_tensor_free(p);
        } else {
            gbt_ok_status(gb_backward(y, R, false));
        }
        if (!plain) assert_grad(o, x, name, "xgrad");
        if (w) assert_grad(o, w, name, "wgrad");
        else if (v && strcmp(kind, "self") != 0) assert_grad(o, v, name, "vgrad");
        else if (v) ck_assert_ptr_null(gb_tensor_grad(v)); /* a view of y is not a leaf */
        if (v2) assert_grad(o, v2, name, "v2grad");
        gb_tensor_free(v2), gb_tensor_free(w), gb_tensor_free(v), gb_tensor_free(y), gb_tensor_free(R), gb_tensor_free(x);
    }
    rows_free(rows, n);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_put_records_versions) {
    gb_tensor *x = gb_ones(2, (int64_t[]){2, 3}, GB_DTYPE_F32);
    gb_requires_grad_(x, true);
    gb_tensor *y = gb_clone(x), *v = gb_zeros(1, (int64_t[]){2}, GB_DTYPE_F32);
    gb_requires_grad_(v, true);
    uint32_t before = y->storage->version;
    gbt_ok_status(gb_index_put_(y, "[:, 1]", v));
    ck_assert_uint_eq(y->storage->version, before + 1);
    ck_assert_uint_eq(y->out_version, y->storage->version);
    ck_assert_int_eq(y->nsrc, 2);
    gb_tensor *old = y->src[0];
    ck_assert(old != y && old->storage == y->storage); /* shares the storage, never read */
    ck_assert_str_eq(gb_tensor_op_name(old), "contiguous"); /* the clone's history moved to old */
    ck_assert(old->nsrc == 1 && old->src[0] == x && old->requires_grad);
    ck_assert(y->src[1] == v);
    ck_assert_uint_eq(y->src_version[0], y->storage->version);
    ck_assert_uint_eq(y->src_version[1], v->storage->version);
    ck_assert(y->saved[0] == NULL && y->saved[1] == NULL);
    ck_assert(gb__ts_ops[GB_OP_INDEX_PUT].saves == GB__SAVES_NONE);
    gb_index_expr *e = y->op_ctx;
    char buf[64];
    gb_index_format(e, buf, sizeof buf);
    ck_assert_str_eq(buf, "[:, 1]");
    /* Under no-grad nothing is recorded, but the version still moves. */
    gb_grad_mode m = gb_no_grad_begin();
    gbt_ok_status(gb_index_fill_(y, "[0]", 2.0f));
    gb_grad_mode_end(m);
    ck_assert_uint_eq(y->storage->version, before + 2);
    ck_assert_int_eq(y->src[0] == old, 1);
    gb_tensor_free(v), gb_tensor_free(y), gb_tensor_free(x);
}
END_TEST

START_TEST(test_put_refuses_untracked_inplace) {
    gbt_oracle *o = gbt_oracle_load("index");
    int n;
    gbt_row *rows = rows_load("index", "#msg", &n);
    const char *leaf_msg = NULL, *viewleaf_msg = NULL;
    for (int i = 0; i < n; i++) {
        if (!strcmp(rows[i].f[1], "leaf")) leaf_msg = rows[i].f[3];
        if (!strcmp(rows[i].f[1], "viewleaf")) viewleaf_msg = rows[i].f[3];
    }
    ck_assert(leaf_msg && viewleaf_msg);
    gb_tensor *x = gb_arange(0, 6, 1);
    gb_requires_grad_(x, true);
    gb_tensor *v = gb_scalar_tensor(-1);
    gbt_fails_with(gb_index_put_(x, "[0]", v) != GB_OK, GB_ERR_AUTOGRAD, leaf_msg);
    gbt_fails_with(gb_index_fill_(x, "[0]", 1) != GB_OK, GB_ERR_AUTOGRAD, leaf_msg);
    gb_tensor *xv = gb_index(x, "[1:]");
    gbt_fails_with(gb_index_put_(xv, "[0]", v) != GB_OK, GB_ERR_AUTOGRAD, viewleaf_msg);
    /* A view of a non-leaf: PyTorch rebases the base; glassbox refuses. */
    gb_tensor *y = gb_clone(x), *yv = gb_index(y, "[2:]");
    gbt_fails_with(gb_index_put_(yv, "[0]", v) != GB_OK, GB_ERR_AUTOGRAD,
                   "index_put_: in-place assignment into a view ([4]) of a tensor that requires grad is not supported");
    double val;
    gb_tensor_get(x, (int64_t[]){0}, &val);
    ck_assert_double_eq(val, 0); /* refused before writing */
    ck_assert_uint_eq(x->storage->version, 0);
    /* Under no-grad the leaf may be written (an optimiser step). */
    gb_grad_mode m = gb_no_grad_begin();
    gbt_ok_status(gb_index_put_(x, "[0]", v));
    gb_grad_mode_end(m);
    gb_tensor_get(x, (int64_t[]){0}, &val);
    ck_assert_double_eq(val, -1);
    ck_assert(gb_tensor_is_leaf(x));
    /* An integer destination is not recorded even when v requires grad (as torch). */
    gb_tensor *i = gb_arange_i64(0, 3, 1), *g = gb_ones(1, (int64_t[]){1}, GB_DTYPE_F32);
    gb_requires_grad_(g, true);
    gbt_ok_status(gb_index_put_(i, "[1:2]", g));
    ck_assert(!gb_tensor_requires_grad(i) && gb_tensor_is_leaf(i));
    gb_tensor_free(g), gb_tensor_free(i), gb_tensor_free(yv), gb_tensor_free(y), gb_tensor_free(xv);
    gb_tensor_free(v), gb_tensor_free(x);
    rows_free(rows, n);
    gbt_oracle_free(o);
}
END_TEST

/* y = clone(x); y[:, 1:3] = v (v [1, 2] broadcast over rows); return y. */
static gb_tensor *put_fn(gb_tensor *const *in, void *ctx) {
    gb_tensor *y = gb_clone(in[0]);
    if (y && gb_index_put_(y, (const char *)ctx, in[1]) != GB_OK) {
        gb_tensor_free(y);
        return NULL;
    }
    return y;
}

START_TEST(test_put_gradcheck) {
    gb_rng r = gb_rng_seed(11);
    gb_tensor *in[2] = {gb_randn(&r, 2, (int64_t[]){3, 4}, 0, 1), gb_randn(&r, 2, (int64_t[]){1, 2}, 0, 1)};
    gb_requires_grad_(in[0], true);
    gb_requires_grad_(in[1], true);
    gbt_gradcheck(put_fn, 2, in, "[:, 1:3]", 1e-2, 1e-3, 1e-3, "index_put_ broadcast");
    gbt_gradcheck(put_fn, 2, in, "[None, -1, ::2]", 1e-2, 1e-3, 1e-3, "index_put_ new axis");
    gb_tensor_free(in[0]), gb_tensor_free(in[1]);
}
END_TEST

START_TEST(test_view_gradient_matches_torch) {
    /* x[None, 1:, ::2] as a chain of views: dL/dx scatters R back. */
    gbt_oracle *o = gbt_oracle_load("index");
    gb_tensor *x = leaf_copy(o, "vg", "x"), *R = gbt_get(o, "vg.R");
    gb_tensor *r = gb_index(x, "[None, 1:, ::2]");
    gbt_ok(r);
    gbt_ok_status(gb_backward(r, R, false));
    assert_grad(o, x, "vg", "xgrad");
    gb_tensor_free(r), gb_tensor_free(R), gb_tensor_free(x);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_index(void) {
    Suite *s = suite_create("index");
    TCase *tc = tcase_create("index");
    tcase_add_test(tc, test_parse_items);
    tcase_add_test(tc, test_format_round_trip);
    tcase_add_test(tc, test_parse_errors);
    tcase_add_test(tc, test_views_match_torch);
    tcase_add_test(tc, test_errors_match_torch);
    tcase_add_test(tc, test_glassbox_limits);
    tcase_add_test(tc, test_index_on_meta);
    tcase_add_test(tc, test_put_matches_torch);
    tcase_add_test(tc, test_put_errors_match_torch);
    tcase_add_test(tc, test_fill_matches_torch);
    tcase_add_test(tc, test_put_overlapping_value);
    tcase_add_test(tc, test_grads_match_torch);
    tcase_add_test(tc, test_put_records_versions);
    tcase_add_test(tc, test_put_refuses_untracked_inplace);
    tcase_add_test(tc, test_put_gradcheck);
    tcase_add_test(tc, test_view_gradient_matches_torch);
    suite_add_tcase(s, tc);
    return s;
}
