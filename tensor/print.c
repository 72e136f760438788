/* Printing tensors: gb_tensor_describe (one line) and gb_tensor_str (torch's format). */
#include "tensor_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *gb_tensor_describe(const gb_tensor *t) {
    char shape[160], *out = malloc(256);
    if (!out) return gb__fail_null(GB_ERR_ALLOC, "tensor_describe: out of memory");
    snprintf(out, 256, "%s%s%s%s%s", gb_dtype_name(t->dtype), gb__shape_str(shape, sizeof shape, t->ndim, t->shape),
             gb_tensor_is_contiguous(t) ? "" : " strided", gb__is_meta(t) ? " meta" : "",
             t->requires_grad ? " requires_grad" : "");
    return out;
}
