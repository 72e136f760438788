/* Private to serve/: the wire format shared by the server and the client. */
#ifndef GB_SERVE_IMPL_H
#define GB_SERVE_IMPL_H

#include "../io/json.h"
#include "../tensor/base.h"
#include "serve.h"

/* base64 (RFC 4648, padded): a malloc'd string / n bytes decoded into a
 * malloc'd buffer (NULL on a malformed text). */
char *gb__srv_b64(const void *data, size_t n);
void *gb__srv_unb64(const char *text, size_t *n);

/* A tensor as {"name", "dtype", "shape", "data": base64 of its bytes}, and
 * back (NULL with an error). */
gb__json_json *gb__srv_tensor_json(const char *name, gb_tensor *t);
gb_tensor *gb__srv_json_tensor(const gb__json_json *j, const char **name);

/* The status called name (gb_status_name), GB_ERR_STATE if none is. */
gb_status gb__srv_status(const char *name);

#endif
