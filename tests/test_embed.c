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
             "/usr/bin/python3 tools/check_exports.py %s/libglassbox.so glassbox.h >%s/exports.out",
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


/* README's C program, built as an outside program would be, with nothing
 * but pkg-config on the installation make check puts in BUILD/prefix:
 * against the shared library (glassbox) and the archive (glassbox-static,
 * with --static); both print PyTorch's prediction with the first MLP
 * ablated (tests/oracle/demo.py's ablated_first). */
START_TEST(test_readme_program_with_pkg_config) {
    gbt_oracle *o = gbt_oracle_load_or_skip("demo", "test_readme_program_with_pkg_config");
    if (!o) return;
    const char *b = getenv("GB_BUILD_DIR"), *cflags = getenv("GB_TEST_CFLAGS"), *tmp = gbt_tmp_dir();
    char *readme = gbt_read_file("README.md", NULL), *code = readme ? strstr(readme, "```c\n") : NULL, *end;
    ck_assert_msg(code && (end = strstr(code + 5, "```\n")), "README.md has no C block");
    char path[4200], want[64];
    snprintf(path, sizeof path, "%s/readme.c", tmp);
    FILE *f = fopen(path, "w");
    ck_assert(f && fwrite(code + 5, 1, (size_t)(end - code - 5), f) == (size_t)(end - code - 5));
    fclose(f);
    gb_tensor *top = gbt_get(o, "ablated_first");
    snprintf(want, sizeof want, "tensor(%lld)\n", (long long)gbt_i64(top, 0));
    static const char *const how[][2] = {{"shared", "--libs glassbox"}, {"static", "--static --libs glassbox-static"}};
    for (int i = 0; i < 2; i++) {
        const char *pc = "PKG_CONFIG_PATH=%s/prefix/lib/pkgconfig";
        char env[600];
        snprintf(env, sizeof env, pc, b ? b : "build");
        ck_assert_msg(gbt_sh("%s cc -std=c11 -Wall -Werror %s %s/readme.c -o %s/readme_%s $(%s pkg-config --cflags %s) 2>%s/readme.err",
                         env, cflags ? cflags : "", tmp, tmp, how[i][0], env, how[i][1], tmp) == 0,
                      "README's program does not build (%s); see %s/readme.err", how[i][0], tmp);
        /* the shared build needs libglassbox.so.0, the static one does not */
        int linked = gbt_sh("LD_LIBRARY_PATH=%s/prefix/lib ldd %s/readme_%s | grep -q 'libglassbox.so.0 => '", b ? b : "build", tmp,
                        how[i][0]);
        ck_assert_msg(linked == (i == 0 ? 0 : 1), "%s build: libglassbox.so %s", how[i][0], i ? "linked" : "not linked");
        ck_assert_int_eq(gbt_sh("LD_LIBRARY_PATH=%s/prefix/lib %s/readme_%s >%s/readme.out", b ? b : "build", tmp, how[i][0], tmp), 0);
        snprintf(path, sizeof path, "%s/readme.out", tmp);
        char *out = gbt_read_file(path, NULL);
        ck_assert_str_eq(out, want);
        free(out);
    }
    free(readme);
    gb_tensor_free(top);
    gbt_oracle_free(o);
}
END_TEST

Suite *gb_suite_embed(void) {
    Suite *s = suite_create("embed");
    TCase *tc = tcase_create("embed");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cxx_program);
    tcase_add_test(tc, test_exports_and_soname);
    tcase_add_test(tc, test_readme_program_with_pkg_config);
    suite_add_tcase(s, tc);
    return s;
}
