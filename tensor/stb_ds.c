/* The one copy of stb_ds's implementation in glassbox. Hidden from the
 * shared library's exports so a program that also uses stb_ds keeps its own.
 * The C library headers come first so that only stb_ds's symbols are hidden.
 * The header is Debian's with its hash seed made thread-local (the Makefile
 * generates it): every new hash map reads and advances that seed, and maps
 * are made on every thread that runs a model. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Every allocation stb_ds makes goes through gb__stb_realloc, which hands
 * over the block a checked call below prepared for it (the map's next hash
 * index, a key's copy) instead of allocating: stb_ds never checks realloc's
 * result, so the checked calls make each allocation first and stb_ds only
 * fills it. */
static void *gb__stb_realloc(void *p, size_t n);
#define STBDS_REALLOC(c, p, s) gb__stb_realloc(p, s)
#define STBDS_FREE(c, p) free(p)

#pragma GCC visibility push(hidden)
#define STB_DS_IMPLEMENTATION
#if __has_include("stb_ds_tls.h")
#include "stb_ds_tls.h"
#else /* a build outside the Makefile (a fuzzer's, one thread): Debian's as it is */
#include <stb/stb_ds.h>
#endif
#pragma GCC visibility pop

#include "base.h"

/* One block, made by gb__stb_prepare for the stb_ds call that follows on
 * this thread, which takes it by its size. */
static _Thread_local struct {
    void *p;
    size_t n;
} gb__stb_ready;

static void *gb__stb_realloc(void *p, size_t n) {
    if (!p && gb__stb_ready.p && gb__stb_ready.n == n) {
        void *r = gb__stb_ready.p;
        gb__stb_ready.p = NULL;
        return r;
    }
    return realloc(p, n);
}

/* A block the stb_ds call did not take (a key already present). */
void gb__stb_settle(void) {
    free(gb__stb_ready.p);
    gb__stb_ready.p = NULL;
}

static bool gb__stb_prepare(size_t n, const char *what, const char *of) {
    gb__stb_settle();
    if (!n) return true;
    if (!(gb__stb_ready.p = malloc(n))) {
        gb__fail(GB_ERR_ALLOC, "%s: out of memory for %s (%zu bytes)", what, of, n);
        return false;
    }
    gb__stb_ready.n = n;
    return true;
}

/* stbds_arrgrowf's growth with realloc's result checked (base.h). */
bool gb__arr_reserve(void **a, size_t elem, size_t n, const char *what) {
    stbds_array_header *h = *a ? stbds_header(*a) : NULL;
    size_t len = h ? h->length : 0, cap = h ? h->capacity : 0;
    if (n <= cap - len) return true;
    size_t max = (SIZE_MAX - sizeof *h) / elem;
    if (n > max - len) {
        gb__fail(GB_ERR_ALLOC, "%s: %zu + %zu elements of %zu bytes do not fit in memory", what, len, n, elem);
        return false;
    }
    size_t want = len + n;
    if (want < 2 * cap) want = 2 * cap < max ? 2 * cap : max;
    if (want < 4) want = 4;
    stbds_array_header *g = realloc(h, elem * want + sizeof *g);
    if (!g) {
        gb__fail(GB_ERR_ALLOC, "%s: out of memory growing a list to %zu elements of %zu bytes", what, want, elem);
        return false;
    }
    if (!h) g->length = 0, g->hash_table = NULL, g->temp = 0;
    g->capacity = want;
    *a = g + 1;
    return true;
}

bool gb__arr_setlen(void **a, size_t elem, size_t n, const char *what) {
    size_t len = *a ? stbds_header(*a)->length : 0;
    if (n > len && !gb__arr_reserve(a, elem, n - len, what)) return false;
    if (*a) stbds_header(*a)->length = n;
    return true;
}

/* A map's array: its default element (zeroed) before the entries, as
 * stbds_hmput_key makes it. */
static bool gb__hm_array(void **t, size_t elem, const char *what) {
    if (*t) return true;
    void *raw = NULL;
    if (!gb__arr_reserve(&raw, elem, 2, what)) return false;
    memset(raw, 0, elem);
    stbds_header(raw)->length = 1;
    *t = STBDS_ARR_TO_HASH(raw, elem);
    return true;
}

/* What stbds_make_hash_index asks for a hash index of `slots`. */
static size_t gb__hm_index_bytes(size_t slots) {
    return (slots >> STBDS_BUCKET_SHIFT) * sizeof(stbds_hash_bucket) + sizeof(stbds_hash_index) + STBDS_CACHE_LINE_SIZE - 1;
}

/* stbds_make_hash_index(slots, old) with its allocation checked. */
static bool gb__hm_index(void *raw, size_t slots, const char *what) {
    stbds_hash_index *old = stbds_header(raw)->hash_table;
    if (!gb__stb_prepare(gb__hm_index_bytes(slots), what, "a hash index")) return false;
    stbds_header(raw)->hash_table = stbds_make_hash_index(slots, old);
    gb__stb_settle();
    free(old);
    return true;
}

/* The bytes a new string key costs in the map's key mode (stbds_strdup,
 * stbds_stralloc's next block), 0 when none. */
static size_t gb__hm_key_bytes(const stbds_hash_index *t, const char *key) {
    size_t len = strlen(key) + 1;
    if (t->string.mode == STBDS_SH_STRDUP) return len;
    if (t->string.mode != STBDS_SH_ARENA || len <= t->string.remaining) return 0;
    size_t block = (size_t)STBDS_STRING_ARENA_BLOCKSIZE_MIN << (t->string.block >> 1);
    return sizeof(stbds_string_block) - 8 + (len > block ? len : block);
}

bool gb__hm_reserve(void **t, size_t elem, const char *key, const char *what) {
    if (!gb__hm_array(t, elem, what)) return false;
    void *raw = STBDS_HASH_TO_ARR(*t, elem);
    if (!gb__arr_reserve(&raw, elem, 1, what)) return false;
    *t = STBDS_ARR_TO_HASH(raw, elem);
    stbds_hash_index *h = stbds_header(raw)->hash_table;
    if (!h || h->used_count >= h->used_count_threshold) { /* as stbds_hmput_key grows it */
        bool made = !h;
        if (!gb__hm_index(raw, h ? h->slot_count * 2 : STBDS_BUCKET_LENGTH, what)) return false;
        h = stbds_header(raw)->hash_table;
        if (made) h->string.mode = key ? STBDS_SH_DEFAULT : 0;
    }
    if (!key || stbds_hm_find_slot(*t, elem, (void *)key, sizeof key, 0, STBDS_HM_STRING) >= 0) return true;
    return gb__stb_prepare(gb__hm_key_bytes(h, key), what, "a key");
}

bool gb__sh_new(void **t, size_t elem, bool arena, const char *what) {
    if (!gb__hm_array(t, elem, what)) return false;
    void *raw = STBDS_HASH_TO_ARR(*t, elem);
    if (!stbds_header(raw)->hash_table && !gb__hm_index(raw, STBDS_BUCKET_LENGTH, what)) return false;
    ((stbds_hash_index *)stbds_header(raw)->hash_table)->string.mode = arena ? STBDS_SH_ARENA : STBDS_SH_STRDUP;
    return true;
}

bool gb__hm_del_reserve(void *t, size_t elem, const void *key, size_t keysize, const char *what) {
    stbds_hash_index *h = t ? stbds_header(STBDS_HASH_TO_ARR(t, elem))->hash_table : NULL;
    if (!h || stbds_hm_find_slot(t, elem, (void *)key, keysize, 0, STBDS_HM_BINARY) < 0) return true;
    size_t slots = 0; /* the index stbds_hmdel_key rebuilds after this deletion */
    if (h->used_count - 1 < h->used_count_shrink_threshold && h->slot_count > STBDS_BUCKET_LENGTH) slots = h->slot_count >> 1;
    else if (h->tombstone_count + 1 > h->tombstone_count_threshold) slots = h->slot_count;
    if (!slots) return true;
    return gb__stb_prepare(gb__hm_index_bytes(slots), what, "a hash index");
}
