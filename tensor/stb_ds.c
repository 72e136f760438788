/* The one copy of stb_ds's implementation in glassbox. Hidden from the
 * shared library's exports so a program that also uses stb_ds keeps its own.
 * The C library headers come first so that only stb_ds's symbols are hidden.
 * The header is Debian's with its hash seed made thread-local (the Makefile
 * generates it): every new hash map reads and advances that seed, and maps
 * are made on every thread that runs a model. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC visibility push(hidden)
#define STB_DS_IMPLEMENTATION
#if __has_include("stb_ds_tls.h")
#include "stb_ds_tls.h"
#else /* a build outside the Makefile (a fuzzer's, one thread): Debian's as it is */
#include <stb/stb_ds.h>
#endif
#pragma GCC visibility pop

#include "base.h"

/* stbds_arrgrowf's growth with realloc's result checked (base.h). */
bool gb__arr_reserve(void **a, size_t elem, size_t n, const char *what) {
    stbds_array_header *h = *a ? stbds_header(*a) : NULL;
    size_t len = h ? h->length : 0, cap = h ? h->capacity : 0;
    if (n <= cap - len) return true;
    size_t max = (SIZE_MAX - sizeof *h) / elem;
    if (n > max - len) {
        gb__fail(GB_ERR_ALLOC, "%s: %zu + %zu elements of %zu bytes do not fit in memory", what, len, n, elem);
        return false;
    }
    size_t want = len + n;
    if (want < 2 * cap) want = 2 * cap < max ? 2 * cap : max;
    if (want < 4) want = 4;
    stbds_array_header *g = realloc(h, elem * want + sizeof *g);
    if (!g) {
        gb__fail(GB_ERR_ALLOC, "%s: out of memory growing a list to %zu elements of %zu bytes", what, want, elem);
        return false;
    }
    if (!h) g->length = 0, g->hash_table = NULL, g->temp = 0;
    g->capacity = want;
    *a = g + 1;
    return true;
}
