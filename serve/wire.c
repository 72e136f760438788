/* The wire format: tensors as base64 of their bytes (so a remote value is
 * bitwise the local one), statuses by name. */
#include <stdlib.h>
#include <string.h>

#include "serve_impl.h"

static const char gb__srv_b64_digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *gb__srv_b64(const void *data, size_t n) {
    const unsigned char *p = data;
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = gb__srv_b64_digits[v >> 18 & 63];
        *o++ = gb__srv_b64_digits[v >> 12 & 63];
        *o++ = i + 1 < n ? gb__srv_b64_digits[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? gb__srv_b64_digits[v & 63] : '=';
    }
    *o = 0;
    return out;
}

void *gb__srv_unb64(const char *text, size_t *n) {
    size_t len = strlen(text);
    if (len % 4) return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; out && i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            const char *c = text[i + j] == '=' ? NULL : strchr(gb__srv_b64_digits, text[i + j]);
            if (text[i + j] == '=' && i + 4 == len && j >= 2) pad++;
            else if (!c || !text[i + j] || pad) {
                free(out);
                return NULL;
            }
            v = v << 6 | (c ? (uint32_t)(c - gb__srv_b64_digits) : 0);
        }
        out[k++] = (unsigned char)(v >> 16);
        if (pad < 2) out[k++] = (unsigned char)(v >> 8);
        if (pad < 1) out[k++] = (unsigned char)v;
    }
    *n = k;
    return out;
}

gb__json_json *gb__srv_tensor_json(const char *name, gb_tensor *t) {
    gb_tensor *c = gb_contiguous(t);
    gb__json_json *o = c ? gb__json_new_object() : NULL, *shape = o ? gb__json_new_array() : NULL;
    char *data = shape ? gb__srv_b64(gb_tensor_data(c), (size_t)gb_tensor_numel(c) * gb_dtype_size(gb_tensor_dtype(c)))
                       : NULL;
    if (data) {
        for (int d = 0; d < gb_tensor_ndim(c); d++) gb__json_push(shape, gb__json_new_number((double)gb_tensor_dim(c, d)));
        gb__json_set(o, "name", gb__json_new_string(name));
        gb__json_set(o, "dtype", gb__json_new_string(gb_dtype_name(gb_tensor_dtype(c))));
        gb__json_set(o, "shape", shape);
        gb__json_set(o, "data", gb__json_new_string(data));
    } else {
        gb__json_free(shape), gb__json_free(o);
        o = NULL;
    }
    free(data);
    gb_tensor_free(c);
    return o;
}

gb_tensor *gb__srv_json_tensor(const gb__json_json *j, const char **name) {
    const char *dt = gb__json_string(gb__json_get(j, "dtype")), *b64 = gb__json_string(gb__json_get(j, "data"));
    const gb__json_json *shape = gb__json_get(j, "shape");
    *name = gb__json_string(gb__json_get(j, "name"));
    int nd = gb__json_size(shape);
    if (!dt || !b64 || !*name || !gb__json_is_array(shape) || nd > GB_MAX_DIMS)
        return gb__fail_null(GB_ERR_FORMAT, "remote: a value needs name, dtype, shape and data");
    int d = 0;
    while (d < GB_DTYPE_COUNT && strcmp(gb_dtype_name((gb_dtype)d), dt)) d++;
    int64_t dims[GB_MAX_DIMS], numel = 1;
    for (int i = 0; i < nd; i++) {
        long long x;
        if (!gb__json_int(gb__json_at(shape, i), &x) || x < 0)
            return gb__fail_null(GB_ERR_FORMAT, "remote: value %s: bad shape", *name);
        dims[i] = x, numel *= x;
    }
    size_t n = 0;
    void *bytes = d < GB_DTYPE_COUNT ? gb__srv_unb64(b64, &n) : NULL;
    gb_tensor *t = NULL;
    if (!bytes || n != (size_t)numel * gb_dtype_size((gb_dtype)d))
        gb__fail(GB_ERR_FORMAT, "remote: value %s: data does not match dtype %s and its shape", *name, dt);
    else
        t = gb_from_data(bytes, nd, dims, (gb_dtype)d);
    free(bytes);
    return t;
}

gb_status gb__srv_status(const char *name) {
    for (int s = 0; name && s < GB_STATUS_COUNT; s++)
        if (!strcmp(gb_status_name((gb_status)s), name)) return (gb_status)s;
    return GB_ERR_STATE;
}
