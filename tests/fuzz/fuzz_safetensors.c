/* The safetensors reader: the input is a whole file. Every input must
 * either open (then every tensor loads, in both dtype modes, or fails
 * cleanly) or fail with GB_ERR_FORMAT (GB_ERR_ALLOC for sizes beyond
 * memory). See tests/fuzz/fuzz.h. */
#include "fuzz.h"

#include "io/safetensors_impl.h"

int gb_fuzz_safetensors(const uint8_t *data, size_t size);

int gb_fuzz_safetensors(const uint8_t *data, size_t size) {
    gb_safetensors *st = gb__st_safetensors_open_memory(data, size, "<fuzz>");
    if (!st) {
        GB_FUZZ_CHECK(gb_last_status() == GB_ERR_FORMAT || gb_last_status() == GB_ERR_ALLOC);
        return 0;
    }
    for (int i = 0; i < gb_safetensors_count(st); i++) {
        const char *name = gb_safetensors_name(st, i);
        gb_tensor_free(gb_safetensors_get(st, name));
        gb_tensor_free(gb_safetensors_get_stored(st, name));
        int64_t shape[GB_MAX_DIMS];
        (void)gb_safetensors_info(st, name, NULL, NULL, shape);
    }
    for (int i = 0; i < gb_safetensors_metadata_count(st); i++)
        (void)gb_safetensors_metadata(st, gb_safetensors_metadata_key(st, i));
    gb_safetensors_free(st);
    return 0;
}

GB_FUZZ_ENTRY(safetensors)
