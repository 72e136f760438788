/* gb__json_json over cJSON: a gb__json_json* is a cJSON*. */
#include "json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "../tensor/base.h"

#define C(j) ((cJSON *)(j))
#define J(c) ((gb__json_json *)(c))

/* Deeper than any config.json, tokenizer.json or safetensors header, and
 * below cJSON's own CJSON_NESTING_LIMIT (1000), whose refusal reads as plain
 * invalid JSON. The walks over parsed JSON (a tokenizer's Sequence of
 * Sequences) recurse with the nesting, so this also bounds their stacks. */
#define GB__JSON_MAX_DEPTH 128

/* Where the text first nests deeper than the limit, or len. */
static size_t gb__json_too_deep(const char *text, size_t len) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > GB__JSON_MAX_DEPTH) return i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return len;
}

gb__json_json *gb__json_parse(const char *text, size_t len, const char *what) {
    size_t deep = gb__json_too_deep(text, len);
    if (deep < len)
        return gb__fail_null(GB_ERR_FORMAT, "%s: JSON nested deeper than %d levels at byte %zu", what,
                             GB__JSON_MAX_DEPTH, deep);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        return gb__fail_null(GB_ERR_FORMAT, "%s: invalid JSON at byte %zu", what, at);
    }
    return J(root);
}

void gb__json_free(gb__json_json *root) { cJSON_Delete(C(root)); }

bool gb__json_is_object(const gb__json_json *j) { return j && cJSON_IsObject(C(j)); }
bool gb__json_is_array(const gb__json_json *j) { return j && cJSON_IsArray(C(j)); }
bool gb__json_is_string(const gb__json_json *j) { return j && cJSON_IsString(C(j)); }
bool gb__json_is_number(const gb__json_json *j) { return j && cJSON_IsNumber(C(j)); }
bool gb__json_is_bool(const gb__json_json *j) { return j && cJSON_IsBool(C(j)); }
bool gb__json_is_null(const gb__json_json *j) { return j && cJSON_IsNull(C(j)); }

gb__json_json *gb__json_get(const gb__json_json *obj, const char *key) {
    return gb__json_is_object(obj) ? J(cJSON_GetObjectItemCaseSensitive(C(obj), key)) : NULL;
}

int gb__json_size(const gb__json_json *j) { return j ? cJSON_GetArraySize(C(j)) : 0; }
gb__json_json *gb__json_at(const gb__json_json *j, int i) { return j ? J(cJSON_GetArrayItem(C(j), i)) : NULL; }
gb__json_json *gb__json_first(const gb__json_json *j) { return j ? J(C(j)->child) : NULL; }
gb__json_json *gb__json_next(const gb__json_json *j) { return j ? J(C(j)->next) : NULL; }
const char *gb__json_key(const gb__json_json *member) { return member ? C(member)->string : NULL; }

const char *gb__json_string(const gb__json_json *j) { return gb__json_is_string(j) ? C(j)->valuestring : NULL; }

bool gb__json_number(const gb__json_json *j, double *out) {
    if (!gb__json_is_number(j)) return false;
    *out = C(j)->valuedouble;
    return true;
}

bool gb__json_int(const gb__json_json *j, long long *out) {
    double v;
    if (!gb__json_number(j, &v) || v != floor(v) || fabs(v) > 9007199254740992.0) return false;
    *out = (long long)v;
    return true;
}

bool gb__json_bool(const gb__json_json *j, bool *out) {
    if (!gb__json_is_bool(j)) return false;
    *out = cJSON_IsTrue(C(j));
    return true;
}

gb__json_json *gb__json_new_object(void) { return J(cJSON_CreateObject()); }
gb__json_json *gb__json_new_array(void) { return J(cJSON_CreateArray()); }
gb__json_json *gb__json_new_string(const char *s) { return J(cJSON_CreateString(s)); }
gb__json_json *gb__json_new_number(double v) { return J(cJSON_CreateNumber(v)); }
gb__json_json *gb__json_new_bool(bool v) { return J(cJSON_CreateBool(v)); }
gb__json_json *gb__json_new_null(void) { return J(cJSON_CreateNull()); }

bool gb__json_set(gb__json_json *obj, const char *key, gb__json_json *value) {
    if (!value) return false;
    if (!cJSON_AddItemToObject(C(obj), key, C(value))) {
        cJSON_Delete(C(value));
        return false;
    }
    return true;
}

bool gb__json_push(gb__json_json *arr, gb__json_json *value) {
    if (!value) return false;
    if (!cJSON_AddItemToArray(C(arr), C(value))) {
        cJSON_Delete(C(value));
        return false;
    }
    return true;
}

char *gb__json_print(const gb__json_json *j) { return cJSON_PrintUnformatted(C(j)); }
