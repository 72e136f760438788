/* io/'s private safetensors entry points, for its tests and the fuzzer. */
#ifndef GB_IO_SAFETENSORS_IMPL_H
#define GB_IO_SAFETENSORS_IMPL_H

#include "io.h"

/* Open len bytes of a safetensors file held in memory (copied); `what`
 * names it in errors. */
gb_safetensors *gb__st_safetensors_open_memory(const void *data, size_t len, const char *what);

#endif
