/* Thread-local error state, GB_AT call sites, and checked allocation. */
#include "tensor_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GB__ERR_MAX 2048
#define GB__SITE_MAX 32

static _Thread_local char gb__ts_err_msg[GB__ERR_MAX];
static _Thread_local gb_status gb__ts_err_status = GB_OK;

/* GB_AT sites currently being evaluated, innermost last. An error raised
 * while a site is open is prefixed with it once, when the site closes. */
static _Thread_local struct {
    const char *file;
    int line;
    unsigned seq_at_enter; /* failures counted when the site opened */
} gb__ts_sites[GB__SITE_MAX];
static _Thread_local int gb__ts_nsites;
static _Thread_local unsigned gb__ts_err_seq; /* counts failures on this thread */
static _Thread_local unsigned gb__ts_err_sited_seq; /* failure already given a site */

static const char *const gb__ts_status_names[GB_STATUS_COUNT] = {
#define GB__X(e, n) n,
    GB_STATUS_LIST(GB__X)
#undef GB__X
};

const char *gb_last_error(void) { return gb__ts_err_msg; }
gb_status gb_last_status(void) { return gb__ts_err_status; }
void gb_clear_error(void) {
    gb__ts_err_msg[0] = 0;
    gb__ts_err_status = GB_OK;
}

#define GB__STR(x) #x
#define GB__VERSION_STR(a, b, c) GB__STR(a) "." GB__STR(b) "." GB__STR(c)
const char *gb_version(void) { return GB__VERSION_STR(GB_VERSION_MAJOR, GB_VERSION_MINOR, GB_VERSION_PATCH); }

const char *gb_status_name(gb_status s) {
    return (unsigned)s < GB_STATUS_COUNT ? gb__ts_status_names[s] : "unknown";
}

/* Formatted aside first: a message may quote the one it replaces
 * (gb__fail(..., "%s", gb_last_error())). */
static void gb__ts_vset(gb_status s, const char *fmt, va_list ap) {
    char msg[sizeof gb__ts_err_msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    memcpy(gb__ts_err_msg, msg, sizeof msg);
    gb__ts_err_status = s;
    gb__ts_err_seq++;
}

gb_status gb__fail(gb_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    gb__ts_vset(s, fmt, ap);
    va_end(ap);
    return s;
}

void *gb__fail_null(gb_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    gb__ts_vset(s, fmt, ap);
    va_end(ap);
    return NULL;
}

void gb__error_prefix(const char *fmt, ...) {
    char pre[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre - 2, fmt, ap);
    va_end(ap);
    strcat(pre, ": ");
    size_t lp = strlen(pre), lm = strlen(gb__ts_err_msg);
    if (lp + lm + 1 > GB__ERR_MAX) lm = GB__ERR_MAX - lp - 1; /* keep the start of the message */
    memmove(gb__ts_err_msg + lp, gb__ts_err_msg, lm);
    memcpy(gb__ts_err_msg, pre, lp);
    gb__ts_err_msg[lp + lm] = 0;
}

void gb__ts_site_enter(const char *file, int line) {
    if (gb__ts_nsites < GB__SITE_MAX) {
        gb__ts_sites[gb__ts_nsites].file = file;
        gb__ts_sites[gb__ts_nsites].line = line;
        gb__ts_sites[gb__ts_nsites].seq_at_enter = gb__ts_err_seq;
    }
    gb__ts_nsites++;
}

/* Close the innermost site; if a failure happened inside it that no inner
 * site has claimed, prefix "file:line: ". */
static void gb__ts_site_leave(void) {
    if (gb__ts_nsites <= 0) return;
    gb__ts_nsites--;
    if (gb__ts_nsites >= GB__SITE_MAX) return;
    unsigned seq = gb__ts_sites[gb__ts_nsites].seq_at_enter;
    if (gb__ts_err_seq != seq && gb__ts_err_sited_seq != gb__ts_err_seq) {
        gb__error_prefix("%s:%d", gb__ts_sites[gb__ts_nsites].file, gb__ts_sites[gb__ts_nsites].line);
        gb__ts_err_sited_seq = gb__ts_err_seq;
    }
}

gb_status gb__ts_site_leave_status(gb_status s) {
    gb__ts_site_leave();
    return s;
}

void *gb__ts_site_leave_ptr(const void *p) {
    gb__ts_site_leave();
    return (void *)p;
}

void *gb__malloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) gb__fail(GB_ERR_ALLOC, "%s: out of memory allocating %zu bytes", what, n);
    return p;
}

void *gb__calloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) gb__fail(GB_ERR_ALLOC, "%s: out of memory allocating %zu x %zu bytes", what, n, size);
    return p;
}

char *gb__strdup(const char *s, const char *what) {
    size_t n = strlen(s) + 1;
    char *p = gb__malloc(n, what);
    return p ? memcpy(p, s, n) : NULL;
}
