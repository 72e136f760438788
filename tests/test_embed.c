/* glassbox as a library a host embeds: a C++ program built with g++ on
 * glassbox.h and libglassbox.so (tests/cxx/embed.cpp, built by make check)
 * runs a trace on the bundled model; its prediction is PyTorch's
 * (tests/oracle/bundled.py); the library exports the public API only. */
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

/* The shared library exports the public headers' functions and nothing
 * else (tools/check_exports.py compares nm -D with the headers), under its
 * SONAME, libglassbox.so.MAJOR. */
START_TEST(test_exports_and_soname) {
    const char *b = getenv("GB_BUILD_DIR");
    char cmd[2048], want[64];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tools/check_exports.py %s/libglassbox.so tensor/tensor.h autograd/autograd.h nn/nn.h "
             "hooks/hooks.h trace/trace.h io/io.h lm/lm.h >%s/exports.out",
             b ? b : "build", gbt_tmp_dir());
    int st = system(cmd);
    snprintf(cmd, sizeof cmd, "%s/exports.out", gbt_tmp_dir());
    char *out = gbt_read_file(cmd, NULL);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "readelf -d %s/libglassbox.so | grep -o 'Library soname: \\[[^]]*\\]' >%s/soname.out",
             b ? b : "build", gbt_tmp_dir());
    ck_assert_int_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/soname.out", gbt_tmp_dir());
    out = gbt_read_file(cmd, NULL);
    snprintf(want, sizeof want, "Library soname: [libglassbox.so.%d]\n", GB_VERSION_MAJOR);
    ck_assert_str_eq(out, want);
    free(out);
}
END_TEST

Suite *gb_suite_embed(void) {
    Suite *s = suite_create("embed");
    TCase *tc = tcase_create("embed");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cxx_program);
    tcase_add_test(tc, test_exports_and_soname);
    suite_add_tcase(s, tc);
    return s;
}
