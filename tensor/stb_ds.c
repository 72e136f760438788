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
