/* io/'s private safetensors entry points, for its tests and the fuzzer. */
#ifndef GB_IO_SAFETENSORS_IMPL_H
#define GB_IO_SAFETENSORS_IMPL_H

#include "io.h"

/* Open len bytes of a safetensors file held in memory (copied); `what`
 * names it in errors. */
gb_safetensors *gb__st_safetensors_open_memory(const void *data, size_t len, const char *what);

/* Tensor `name`'s bytes are no longer needed (a parameter copied them
 * into a layout of its own): the pages wholly inside them leave the
 * process's resident memory. They would come back from the file if read
 * again; nothing is written to them at open. */
void gb__st_drop(gb_safetensors *st, const char *name);

#endif
