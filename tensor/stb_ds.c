/* The one copy of stb_ds's implementation in glassbox. Hidden from the
 * shared library's exports so a program that also uses stb_ds keeps its own.
 * The C library headers come first so that only stb_ds's symbols are hidden. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC visibility push(hidden)
#define STB_DS_IMPLEMENTATION
#include <stb/stb_ds.h>
#pragma GCC visibility pop
