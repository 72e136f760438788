/* Tensor core: storage, views, copies, dtypes, errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gbtest.h"

START_TEST(test_views_share_storage) {
    gb_tensor *x = gb_arange(0, 24, 1);
    gbt_ok(x);
    gb_tensor *m = gb_reshape(x, 3, (int64_t[]){2, 3, 4});
    gbt_ok(m);
    ck_assert(gb_tensor_shares_storage(x, m));
    gb_tensor *p = gb_permute(m, (int[]){2, 0, 1});
    gbt_ok(p);
    ck_assert(!gb_tensor_is_contiguous(p));
    ck_assert_int_eq(gb_tensor_dim(p, 0), 4);
    /* p[3, 1, 2] = m[1, 2, 3] = 1*12 + 2*4 + 3 = 23 */
    double v;
    gbt_ok_status(gb_tensor_get(p, (int64_t[]){3, 1, 2}, &v));
    ck_assert_double_eq(v, 23);
    gb_tensor *c = gb_contiguous(p);
    gbt_ok(c);
    ck_assert(gb_tensor_is_contiguous(c) && !gb_tensor_shares_storage(c, p));
    gbt_ok_status(gb_tensor_get(c, (int64_t[]){3, 1, 2}, &v));
    ck_assert_double_eq(v, 23);
    gb_tensor_free(x); /* views keep the storage alive */
    gbt_ok_status(gb_tensor_get(m, (int64_t[]){1, 2, 3}, &v));
    ck_assert_double_eq(v, 23);
    gb_tensor_free(c);
    gb_tensor_free(p);
    gb_tensor_free(m);
}
END_TEST

START_TEST(test_slice_select_expand) {
    gb_tensor *x = gb_arange(0, 10, 1);
    gb_tensor *s = gb_slice(x, 0, -7, GB_END, 3); /* x[-7::3] = [3, 6, 9] */
    gbt_ok(s);
    ck_assert_int_eq(gb_tensor_dim(s, 0), 3);
    double v;
    gb_tensor_get(s, (int64_t[]){2}, &v);
    ck_assert_double_eq(v, 9);
    gb_tensor *e = gb_expand(gb_tensor_ref(s) ? s : s, 2, (int64_t[]){4, -1});
    gb_tensor_free(s); /* the extra reference taken above */
    gbt_ok(e);
    ck_assert_int_eq(gb_tensor_strides(e)[0], 0);
    gb_tensor_get(e, (int64_t[]){3, 1}, &v);
    ck_assert_double_eq(v, 6);
    gbt_fails_with(gb_select(x, 0, 10) == NULL, GB_ERR_INDEX, "index 10 is out of bounds for dimension 0 with size 10");
    gbt_fails_with(gb_expand(x, 2, (int64_t[]){2, 5}) == NULL, GB_ERR_SHAPE, "must match the existing size");
    gb_tensor_free(e);
    gb_tensor_free(s);
    gb_tensor_free(x);
}
END_TEST

START_TEST(test_reshape_noncontiguous_copies) {
    gb_tensor *x = gb_arange(0, 6, 1);
    gb_tensor *m = gb_reshape(x, 2, (int64_t[]){2, 3});
    gb_tensor *t = gb_transpose(m, 0, 1);
    gbt_fails_with(gb_view(t, 1, (int64_t[]){6}) == NULL, GB_ERR_SHAPE, "view size");
    gb_tensor *r = gb_reshape(t, 1, (int64_t[]){-1});
    gbt_ok(r);
    ck_assert(!gb_tensor_shares_storage(r, x));
    double v; /* t flattened: [0 3 1 4 2 5] */
    gb_tensor_get(r, (int64_t[]){1}, &v);
    ck_assert_double_eq(v, 3);
    gbt_fails_with(gb_reshape(x, 2, (int64_t[]){4, -1}) == NULL, GB_ERR_SHAPE, "is invalid for input of size 6");
    gb_tensor_free(r);
    gb_tensor_free(t);
    gb_tensor_free(m);
    gb_tensor_free(x);
}
END_TEST

START_TEST(test_half_conversions) {
    /* Exact values and rounding cases derived from the IEEE formats. */
    ck_assert_uint_eq(gb_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(gb_f32_to_f16(-2.0f), 0xc000);
    ck_assert_uint_eq(gb_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(gb_f32_to_f16(65520.0f), 0x7c00);         /* rounds up to inf */
    ck_assert_uint_eq(gb_f32_to_f16(5.960464477539063e-08f), 1); /* smallest subnormal */
    ck_assert_uint_eq(gb_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    ck_assert_float_eq(gb_f16_to_f32(0x3555), 0.333251953125f);
    ck_assert_uint_eq(gb_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(gb_f32_to_bf16(1.0f + 1.0f / 256), 0x3f80); /* tie to even */
    ck_assert_uint_eq(gb_f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
    ck_assert_float_eq(gb_bf16_to_f32(0x4049), 3.140625f);
    ck_assert(isnan(gb_f16_to_f32(gb_f32_to_f16(NAN))));
}
END_TEST

START_TEST(test_to_dtype_and_copy) {
    gb_tensor *x = gb_arange(0, 4, 0.5);
    gb_tensor *h = gb_to_dtype(x, GB_DTYPE_F16);
    gb_tensor *i = gb_to_dtype(x, GB_DTYPE_I64);
    gbt_ok(h);
    gbt_ok(i);
    double v;
    gb_tensor_get(h, (int64_t[]){3}, &v);
    ck_assert_double_eq(v, 1.5);
    gb_tensor_get(i, (int64_t[]){3}, &v);
    ck_assert_double_eq(v, 1); /* truncation toward zero, as torch */
    gb_tensor *z = gb_zeros(2, (int64_t[]){3, 8}, GB_DTYPE_F32);
    gbt_ok_status(gb_copy_(z, x)); /* broadcast [8] -> [3, 8] */
    gb_tensor_get(z, (int64_t[]){2, 7}, &v);
    ck_assert_double_eq(v, 3.5);
    gbt_fails_with(gb_copy_(x, z) != GB_OK, GB_ERR_SHAPE, "cannot be broadcast");
    gb_tensor_free(z);
    gb_tensor_free(i);
    gb_tensor_free(h);
    gb_tensor_free(x);
}
END_TEST

START_TEST(test_errors_name_call_site) {
    gb_tensor *x = gb_zeros(2, (int64_t[]){2, 10}, GB_DTYPE_F32);
    gb_tensor *bad = GB_AT(gb_select(x, 1, 10));
    int line = __LINE__ - 1;
    ck_assert_ptr_null(bad);
    char want[256];
    snprintf(want, sizeof want, "%s:%d: index 10 is out of bounds for dimension 1 with size 10", __FILE__, line);
    ck_assert_str_eq(gb_last_error(), want);
    ck_assert_str_eq(gb_status_name(gb_last_status()), "index");
    gb_tensor_free(x);
}
END_TEST

START_TEST(test_rng_repeats) {
    gb_rng a = gb_rng_seed(42), b = gb_rng_seed(42);
    for (int i = 0; i < 100; i++) ck_assert_uint_eq(gb_rng_next(&a), gb_rng_next(&b));
    /* pcg32 reference stream (pcg32_srandom(42, 54) in the PCG paper's demo
     * uses another increment); here: statistics of 100k normals instead. */
    gb_rng r = gb_rng_seed(7);
    gb_tensor *n = gb_randn(&r, 1, (int64_t[]){100000}, 0.0f, 1.0f);
    const float *p = gb_tensor_f32(n);
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) s += p[i], s2 += (double)p[i] * p[i];
    ck_assert(fabs(s / 1e5) < 0.02 && fabs(s2 / 1e5 - 1) < 0.02);
    gb_tensor_free(n);
}
END_TEST

/* Storages of 2 MB or more are 2 MB-aligned mappings, kept for reuse after
 * release: a zeros tensor is zero even after a freed tensor of its size
 * dirtied a kept mapping, an empty one reuses it, views
 * and borrowed (from_blob) tensors of it read and write the same memory, and
 * releasing them all gives the memory back. */
static bool all_equal(const float *p, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++)
        if (p[i] != v) return false;
    return true;
}

static long vm_size_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb;
}

START_TEST(test_large_storage) {
    const int64_t shape[2] = {3, 262145}; /* 3 MB + 12 bytes: not a whole number of pages */
    const int64_t n = shape[0] * shape[1];
    for (int round = 0; round < 2; round++) { /* the second round follows a dirtied, kept mapping */
        gb_tensor *z = gb_zeros(2, shape, GB_DTYPE_F32);
        gbt_ok(z);
        float *p = gb_tensor_f32(z);
        ck_assert_uint_eq((uintptr_t)p % (2u << 20), 0); /* mapped, not the malloc fallback */
        ck_assert(all_equal(p, n, 0.0f));
        for (int64_t i = 0; i < n; i++) p[i] = 7.0f;

        gb_tensor *row = gb_select(z, 0, 2);
        gb_tensor *blob = gb_from_blob(p + n - 4, 1, (int64_t[]){4}, GB_DTYPE_F32, NULL, NULL); /* borrowed */
        gbt_ok(row), gbt_ok(blob);
        ck_assert(gb_tensor_shares_storage(row, z));
        gb_tensor_free(z); /* the view keeps the mapping alive */
        gb_tensor_f32(blob)[3] = -1.0f;
        gb_tensor_free(blob); /* and a borrowed tensor leaves it alone */
        ck_assert_float_eq(gb_tensor_f32(row)[shape[1] - 1], -1.0f);
        ck_assert(all_equal(gb_tensor_f32(row), shape[1] - 1, 7.0f));
        gb_tensor_free(row);
    }
    gb_tensor *e = gb_empty(2, shape, GB_DTYPE_F32);
    gbt_ok(e);
    gbt_ok_status(gb_fill_(e, 2.0f));
    ck_assert(all_equal(gb_tensor_f32(e), n, 2.0f));
    gb_tensor_free(e);

    /* 96 tensors of distinct sizes, 32 MB each, and one of 3 GB (too large
     * to keep): released storages stay mapped for reuse up to the ring's
     * 2 GB, so the address space grows by at most that, not by the 6 GB
     * they would hold if every released storage stayed mapped. */
    long before = vm_size_kb();
    if (before < 0) return; /* no /proc */
    for (int i = 0; i <= 96; i++) {
        gb_tensor *t = gb_zeros(1, (int64_t[]){i < 96 ? (8 << 20) + 1024 * i : (int64_t)768 << 20}, GB_DTYPE_F32);
        gbt_ok(t);
        gb_tensor_f32(t)[1024 * i] = 1.0f;
        gb_tensor_free(t);
    }
    long grown = vm_size_kb() - before;
    ck_assert_msg(grown < (2048 + 64) * 1024, "address space grew by %ld kB over 97 released tensors", grown);
}
END_TEST

/* Every status kind has its page in docs/errors/ and its line in the
 * index page, docs/errors/README.md (tests run from the repo root). */
START_TEST(test_every_status_has_a_doc_page) {
    char *index = gbt_read_file("docs/errors/README.md", NULL);
    ck_assert_msg(index != NULL, "missing docs/errors/README.md");
    for (int s = 0; s < GB_STATUS_COUNT; s++) {
        char path[256], link[128];
        snprintf(path, sizeof path, "docs/errors/%s.md", gb_status_name((gb_status)s));
        FILE *f = fopen(path, "r");
        ck_assert_msg(f != NULL, "missing %s", path);
        fclose(f);
        snprintf(link, sizeof link, "](%s.md)", gb_status_name((gb_status)s));
        ck_assert_msg(strstr(index, link) != NULL, "docs/errors/README.md does not link %s.md", gb_status_name((gb_status)s));
    }
    free(index);
}
END_TEST

Suite *gb_suite_tensor_core(void) {
    Suite *s = suite_create("tensor_core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_views_share_storage);
    tcase_add_test(tc, test_slice_select_expand);
    tcase_add_test(tc, test_reshape_noncontiguous_copies);
    tcase_add_test(tc, test_half_conversions);
    tcase_add_test(tc, test_to_dtype_and_copy);
    tcase_add_test(tc, test_errors_name_call_site);
    tcase_add_test(tc, test_rng_repeats);
    tcase_add_test(tc, test_every_status_has_a_doc_page);
    tcase_add_test(tc, test_large_storage);
    suite_add_tcase(s, tc);
    return s;
}
