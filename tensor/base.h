/* Private to glassbox: what every layer's implementation needs and nothing
 * more (SQLite's sqliteInt.h): setting the thread's error, allocation that
 * names what failed, the memory and thread figures that decide how much to
 * attempt. A layer's .c files include this rather than tensor_impl.h unless
 * they need the tensor layout or the op machinery. */
#ifndef GB_BASE_H
#define GB_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

/* ---- errors ------------------------------------------------------------- */

/* Set the thread's error (printf-style) and return status, so that
 * `return gb__fail(GB_ERR_SHAPE, "add: ...")` reads as one statement. The
 * message starts with the op name; GB_AT sites are prefixed automatically. */
gb_status gb__fail(gb_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, returning NULL for pointer-returning functions. */
void *gb__fail_null(gb_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "ctx: " (used when a lower layer's error
 * should name the higher-level operation too). */
void gb__error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that sets GB_ERR_ALLOC naming `what` on failure. */
void *gb__malloc(size_t n, const char *what);
void *gb__calloc(size_t n, size_t size, const char *what);
char *gb__strdup(const char *s, const char *what);

/* stb_ds with its allocations checked. stb_ds writes through realloc's
 * result unchecked, and even a lookup in an empty (NULL) hash map
 * allocates one. Library code grows stb_ds arrays and maps only through
 * these (tools/check_stb.sh, run by `make check`, refuses the bare
 * macros): each makes the allocation the stb_ds call would make first,
 * checked, so that call allocates nothing; on failure it is false (NULL)
 * with GB_ERR_ALLOC naming `what`, and the array or map is as it was (a map
 * may have become an empty one: free it as before).
 *   GB_ARR_RESERVE(a, n)  room for n more elements (at least doubling)
 *   GB_ARR_PUT(a, v)      arrput;  GB_ARR_INS(a, i, v)  arrins
 *   GB_ARR_ADDN(a, n)     arraddnptr: n new elements at the end, or NULL
 *   GB_ARR_SETLEN(a, n)   arrsetlen;  GB_ARR_TRUNC(a, n)  arrsetlen to n <= the length (never fails)
 *   GB_HM_PUT(t, k, v), GB_HM_PUTS(t, s), GB_HM_DEL(t, k)   hmput, hmputs, hmdel
 *   GB_SH_PUT(t, k, v), GB_SH_NEW_STRDUP(t), GB_SH_NEW_ARENA(t)
 *   GB_HM_GETI(t, k), GB_SH_GETI(t, k)   hmgeti, shgeti: -1 for a NULL map */
#define GB__CHECKED __attribute__((warn_unused_result))
bool gb__arr_reserve(void **a, size_t elem, size_t n, const char *what) GB__CHECKED;
bool gb__arr_setlen(void **a, size_t elem, size_t n, const char *what) GB__CHECKED;
bool gb__hm_reserve(void **t, size_t elem, const char *key, const char *what) GB__CHECKED;
bool gb__hm_del_reserve(void *t, size_t elem, const void *key, size_t keysize, const char *what) GB__CHECKED;
bool gb__sh_new(void **t, size_t elem, bool arena, const char *what) GB__CHECKED;
void gb__stb_settle(void);
#define GB_ARR_RESERVE(a, n, what) gb__arr_reserve((void **)&(a), sizeof *(a), (n), (what))
#define GB_ARR_PUT(a, v, what) (GB_ARR_RESERVE(a, 1, what) ? (arrput(a, v), true) : false)
#define GB_ARR_INS(a, i, v, what) (GB_ARR_RESERVE(a, 1, what) ? (arrins(a, i, v), true) : false)
#define GB_ARR_ADDN(a, n, what) (GB_ARR_RESERVE(a, (n) ? (n) : 1, what) ? arraddnptr(a, n) : NULL)
#define GB_ARR_SETLEN(a, n, what) gb__arr_setlen((void **)&(a), sizeof *(a), (n), (what))
#define GB_ARR_TRUNC(a, n) ((void)((a) ? stbds_header(a)->length = (size_t)(n) : 0))
#define GB_HM_PUT(t, k, v, what) (gb__hm_reserve((void **)&(t), sizeof *(t), NULL, (what)) ? (hmput(t, k, v), true) : false)
#define GB_HM_PUTS(t, s, what) (gb__hm_reserve((void **)&(t), sizeof *(t), NULL, (what)) ? (hmputs(t, s), true) : false)
#define GB_SH_PUT(t, k, v, what)                                                                                     \
    (gb__hm_reserve((void **)&(t), sizeof *(t), (k), (what)) ? (shput(t, k, v), gb__stb_settle(), true) : false)
#define GB_HM_DEL(t, k, what)                                                                                        \
    (gb__hm_del_reserve((t), sizeof *(t), STBDS_ADDRESSOF((t)->key, (k)), sizeof (t)->key, (what))                    \
         ? ((void)hmdel(t, k), gb__stb_settle(), true)                                                               \
         : false)
#define GB_SH_NEW_STRDUP(t, what) gb__sh_new((void **)&(t), sizeof *(t), false, (what))
#define GB_SH_NEW_ARENA(t, what) gb__sh_new((void **)&(t), sizeof *(t), true, (what))
#define GB_HM_GETI(t, k) ((t) ? hmgeti(t, k) : -1)
#define GB_SH_GETI(t, k) ((t) ? shgeti(t, k) : -1)

/* Bytes of memory available to new allocations (Linux's MemAvailable;
 * UINT64_MAX when unknown), for refusing clearly what cannot fit.
 * gb__mem_available_set makes it a fixed figure (tests), 0 the real one. */
uint64_t gb__mem_available(void);
void gb__mem_available_set(uint64_t bytes);
/* Unmaps the released storage mappings kept for reuse (tensor.c's ring of
 * up to 1 GB), so resident memory shows only what is alive: for measuring
 * a run's own peak (the benchmark), or for a host that has freed a model. */
void gb__mem_trim(void);
/* Address space this process may still map under its limit (ulimit -v,
 * RLIMIT_AS), UINT64_MAX without one; gb__address_space_set as above. */
uint64_t gb__address_space_left(void);
void gb__address_space_set(uint64_t bytes);

/* Threads for glassbox's own OpenMP loops. */
int gb__threads(void);
/* Use OpenMP for a loop of n elements of roughly `cost` flops each? */
#define GB__PAR_MIN_WORK 32768

/* "[2, 3]" into buf; GB__SHAPE_STR(t) for a tensor, in a temporary. */
char *gb__shape_str(char *buf, size_t size, int ndim, const int64_t *shape);
#define GB__SHAPE_STR(t) gb__shape_str((char[160]){0}, 160, gb_tensor_ndim(t), gb_tensor_shape(t))

/* Meta mode (thread-local, nestable): ops make shape-only results and run
 * no kernel; how a scan runs a whole model without arithmetic. */
bool gb__meta_mode(void);
void gb__meta_push(void);
void gb__meta_pop(void);
bool gb__is_meta(const gb_tensor *t); /* shape-only storage */

#endif
