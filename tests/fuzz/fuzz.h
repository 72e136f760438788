/* Shared by the libFuzzer targets (tests/fuzz/fuzz_NAME.c, built by
 * `make fuzz` with clang) and their replay in `make check`
 * (tests/test_fuzz.c includes each target with GB_FUZZ_REPLAY defined and
 * feeds it every file of tests/fuzz/corpus/NAME).
 *
 * A target is `int gb_fuzz_NAME(const uint8_t *data, size_t size)`: it must
 * return 0 for every input; a broken contract (a failure without a status or
 * a message, a success with no result) aborts through GB_FUZZ_CHECK, and
 * crashes, sanitizer reports and leaks are bugs. */
#ifndef GB_FUZZ_H
#define GB_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "glassbox.h"

#define GB_FUZZ_CHECK(cond)                                                                              \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "%s:%d: fuzz contract broken: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    gb_last_error());                                                                    \
            abort();                                                                                     \
        }                                                                                                \
    } while (0)

/* A failed call left a status and a message. */
#define GB_FUZZ_FAILED_CLEANLY() GB_FUZZ_CHECK(gb_last_status() != GB_OK && gb_last_error()[0])

/* The input as a NUL-terminated string (malloc'd; NULL when out of memory). */
static inline char *gb_fuzz_text(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (s) memcpy(s, data, size), s[size] = 0;
    return s;
}

/* A scratch directory of this process, made once, for targets whose entry
 * points read files (left behind: one per fuzzing process, a few KB). The
 * replay defines GB_FUZZ_SCRATCH as the tests' own. */
static inline const char *gb_fuzz_dir(void) {
#ifdef GB_FUZZ_SCRATCH
    return GB_FUZZ_SCRATCH;
#endif
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/gb-fuzz-XXXXXX");
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}

/* Write size bytes to dir/name; the path in path (4096 bytes). */
static inline void gb_fuzz_write(const char *name, const void *data, size_t size, char *path) {
    snprintf(path, 4096, "%s/%s", gb_fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
}

#ifdef GB_FUZZ_REPLAY
#define GB_FUZZ_ENTRY(name)
#else
#define GB_FUZZ_ENTRY(name)                                           \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);     \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {    \
        return gb_fuzz_##name(data, size);                            \
    }
#endif

#endif
