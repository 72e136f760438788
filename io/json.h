/* Private to glassbox: the one interface to JSON (config.json, safetensors
 * headers, tokenizer.json). Backed by cJSON; nothing else includes cJSON.h. */
#ifndef GB_JSON_H
#define GB_JSON_H

#include <stdbool.h>
#include <stddef.h>

typedef struct gb__json_json gb__json_json; /* a JSON value (object, array, string, ...) */

/* Parse len bytes. On failure returns NULL with GB_ERR_FORMAT:
 * "<what>: invalid JSON at byte N". Free the root with gb__json_free. */
gb__json_json *gb__json_parse(const char *text, size_t len, const char *what);
void gb__json_free(gb__json_json *root);

/* Type tests (false for NULL). */
bool gb__json_is_object(const gb__json_json *j);
bool gb__json_is_array(const gb__json_json *j);
bool gb__json_is_string(const gb__json_json *j);
bool gb__json_is_number(const gb__json_json *j);
bool gb__json_is_bool(const gb__json_json *j);
bool gb__json_is_null(const gb__json_json *j);

/* Member of an object by key (case-sensitive), or NULL. */
gb__json_json *gb__json_get(const gb__json_json *obj, const char *key);
/* Elements of an array, or members of an object, in order. */
int gb__json_size(const gb__json_json *j);
gb__json_json *gb__json_at(const gb__json_json *j, int i);
/* Iterate: for (gb__json_json *m = gb__json_first(obj); m; m = gb__json_next(m)) key = gb__json_key(m); */
gb__json_json *gb__json_first(const gb__json_json *j);
gb__json_json *gb__json_next(const gb__json_json *j);
const char *gb__json_key(const gb__json_json *member);

/* Values: NULL / false when j is absent or of another type. */
const char *gb__json_string(const gb__json_json *j);
bool gb__json_number(const gb__json_json *j, double *out);
/* A number that is an exact integer (rejects 1.5, 1e300). */
bool gb__json_int(const gb__json_json *j, long long *out);
bool gb__json_bool(const gb__json_json *j, bool *out);

/* Building (for writers). Each returns NULL on allocation failure; set/push
 * take ownership of value. */
gb__json_json *gb__json_new_object(void);
gb__json_json *gb__json_new_array(void);
gb__json_json *gb__json_new_string(const char *s);
gb__json_json *gb__json_new_number(double v);
gb__json_json *gb__json_new_bool(bool v);
gb__json_json *gb__json_new_null(void);
bool gb__json_set(gb__json_json *obj, const char *key, gb__json_json *value);
bool gb__json_push(gb__json_json *arr, gb__json_json *value);
/* Compact text, caller frees with free(). */
char *gb__json_print(const gb__json_json *j);

#endif
