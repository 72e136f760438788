/* Index expressions (tensor/index.c): the first byte is the tensor's rank
 * (mod 5), the next rank bytes its sizes (mod 5: empty dims too), the rest
 * the expression. A parsed expression must print back to text that parses
 * to the same print; the shape (scan), the view and the in-place fill must
 * agree on success and on the shape; every failure has a status and a
 * message. See tests/fuzz/fuzz.h. */
#include "fuzz.h"

int gb_fuzz_index(const uint8_t *data, size_t size);

int gb_fuzz_index(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int ndim = data[0] % 5;
    if (size < 1 + (size_t)ndim) return 0;
    int64_t shape[GB_MAX_DIMS];
    for (int d = 0; d < ndim; d++) shape[d] = data[1 + d] % 5;
    char *text = gb_fuzz_text(data + 1 + ndim, size - 1 - (size_t)ndim);
    if (!text) return 0;
    gb_index_expr e;
    if (gb_index_parse(text, &e) != GB_OK) {
        GB_FUZZ_FAILED_CLEANLY();
        free(text);
        return 0;
    }
    char printed[1024], again[1024];
    GB_FUZZ_CHECK(gb_index_format(&e, printed, sizeof printed) < (int)sizeof printed);
    gb_index_expr e2;
    GB_FUZZ_CHECK(gb_index_parse(printed, &e2) == GB_OK);
    gb_index_format(&e2, again, sizeof again);
    GB_FUZZ_CHECK(!strcmp(printed, again));

    int out_ndim;
    int64_t out_shape[GB_MAX_DIMS];
    bool shape_ok = gb_index_shape(ndim, shape, &e, &out_ndim, out_shape) == GB_OK;
    if (!shape_ok) GB_FUZZ_FAILED_CLEANLY();
    gb_tensor *t = gb_zeros(ndim, shape, GB_DTYPE_F32);
    GB_FUZZ_CHECK(t);
    gb_tensor *v = gb_index_expr_apply(t, &e);
    GB_FUZZ_CHECK((v != NULL) == shape_ok);
    if (v) {
        GB_FUZZ_CHECK(gb_tensor_ndim(v) == out_ndim);
        for (int d = 0; d < out_ndim; d++) GB_FUZZ_CHECK(gb_tensor_shape(v)[d] == out_shape[d]);
    } else {
        GB_FUZZ_FAILED_CLEANLY();
    }
    gb_status st = gb_index_fill_(t, text, 1.0f);
    GB_FUZZ_CHECK((st == GB_OK) == shape_ok);
    gb_tensor_free(v);
    gb_tensor_free(t);
    free(text);
    return 0;
}

GB_FUZZ_ENTRY(index)
