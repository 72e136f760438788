/* The fuzzers' corpora, replayed: every file of tests/fuzz/corpus/NAME is
 * fed to the entry point of tests/fuzz/fuzz_NAME.c, built here without
 * libFuzzer (and with the runner's sanitizers under SANITIZE=1). A target
 * aborts on a broken contract, naming the check; the fuzzer binary run on
 * the corpus directory names the input. Crashes the fuzzers found are kept
 * there as regression inputs (crash-*). */
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "gbtest.h"

#define GB_FUZZ_REPLAY
#define GB_FUZZ_SCRATCH gbt_tmp_dir()
#include "fuzz/fuzz_cli.c"
#include "fuzz/fuzz_config.c"
#include "fuzz/fuzz_index.c"
#include "fuzz/fuzz_safetensors.c"
#include "fuzz/fuzz_spec.c"
#include "fuzz/fuzz_statement.c"
#include "fuzz/fuzz_tokenizer.c"

#define GB_FUZZ_TARGETS(X) X(cli) X(config) X(index) X(safetensors) X(spec) X(statement) X(tokenizer)

static void replay(const char *name, int (*fn)(const uint8_t *, size_t)) {
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", name);
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "cannot open %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        char *data = gbt_read_file(path, &len);
        ck_assert_msg(data != NULL, "cannot read %s", path);
        /* the CLI's target prints what the CLI would: not into the test log */
        fflush(stdout), fflush(stderr);
        int out = dup(1), err = dup(2), null = open("/dev/null", O_WRONLY);
        dup2(null, 1), dup2(null, 2);
        int rc = fn((const uint8_t *)data, len);
        fflush(stdout), fflush(stderr);
        dup2(out, 1), dup2(err, 2);
        close(out), close(err), close(null);
        ck_assert_int_eq(rc, 0);
        free(data);
        n++;
    }
    closedir(d);
    ck_assert_msg(n > 0, "%s is empty", dir);
}

#define GB__X(name) \
    START_TEST(test_replay_##name) { replay(#name, gb_fuzz_##name); } \
    END_TEST
GB_FUZZ_TARGETS(GB__X)
#undef GB__X

Suite *gb_suite_fuzz(void) {
    Suite *s = suite_create("fuzz");
    TCase *tc = tcase_create("fuzz");
    tcase_set_timeout(tc, 120);
#define GB__X(name) tcase_add_test(tc, test_replay_##name);
    GB_FUZZ_TARGETS(GB__X)
#undef GB__X
    suite_add_tcase(s, tc);
    return s;
}
