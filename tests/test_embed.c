/* glassbox as a library a host embeds: a C++ program built with g++ on
 * glassbox.h and libglassbox.so (tests/cxx/embed.cpp, built by make check)
 * runs a trace on the bundled model; its prediction is PyTorch's
 * (tests/oracle/bundled.py). */
#include <stdlib.h>

#include "gbtest.h"

START_TEST(test_cxx_program) {
    gbt_oracle *o = gbt_oracle_load_or_skip("bundled", "test_cxx_program");
    if (!o) return;
    gb_tensor *ids = gbt_get(o, "ids.eiffel"), *top = gbt_get(o, "argmax.eiffel");
    const char *b = getenv("GB_BUILD_DIR");
    char cmd[4096], path[600];
    int k = snprintf(cmd, sizeof cmd, "%s/tests/embed_cxx " GBT_BUNDLED, b ? b : "build");
    for (int64_t i = 0; i < gb_tensor_numel(ids); i++) k += snprintf(cmd + k, sizeof cmd - (size_t)k, " %lld", (long long)gbt_i64(ids, i));
    snprintf(path, sizeof path, "%s/embed_cxx.out", gbt_tmp_dir());
    snprintf(cmd + k, sizeof cmd - (size_t)k, " >%s", path);
    ck_assert_int_eq(system(cmd), 0);
    char *out = gbt_read_file(path, NULL), want[256];
    snprintf(want, sizeof want, "top %lld\nlog(1) 0\n%d.%d.%d\n", (long long)gbt_i64(top, gb_tensor_numel(top) - 1),
             GB_VERSION_MAJOR, GB_VERSION_MINOR, GB_VERSION_PATCH);
    ck_assert_str_eq(out, want);
    free(out);
    gb_tensor_free(top), gb_tensor_free(ids);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_embed(void) {
    Suite *s = suite_create("embed");
    TCase *tc = tcase_create("embed");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cxx_program);
    suite_add_tcase(s, tc);
    return s;
}
