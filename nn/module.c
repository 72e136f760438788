/* Module trees: naming and paths, lookup, repr, parameters, the run state,
 * and gb_module_call, where events are emitted. */
#include "nn_impl.h"
#include "arch.h"
#include "../tensor/tensor_impl.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

/* ---- values ------------------------------------------------------------- */

void gb_values_clear(gb_values *vs) {
    for (int i = 0; i < vs->n; i++) gb_tensor_free(vs->v[i]);
    memset(vs, 0, sizeof *vs);
}

gb_status gb_values_push(gb_values *vs, gb_tensor *t) {
    if (vs->n >= GB_MAX_VALUES) {
        gb_tensor_free(t);
        return gb__fail(GB_ERR_ARG, "values: a tuple holds at most %d tensors", GB_MAX_VALUES);
    }
    vs->v[vs->n++] = t;
    return GB_OK;
}

void gb_values_set(gb_values *vs, int i, gb_tensor *t) {
    gb_tensor_free(vs->v[i]);
    vs->v[i] = t;
}

/* ---- tree --------------------------------------------------------------- */

static char *gb__nn_strdup(const char *s, const char *what) {
    char *c = gb__malloc(strlen(s) + 1, what);
    if (c) strcpy(c, s);
    return c;
}

gb_module *gb__nn_module_new(const gb__nn_module_type *type) {
    gb_module *m = gb__calloc(1, sizeof *m + type->settings, type->name);
    if (!m) return NULL;
    m->type = type;
    m->cls = type->name;
    m->root = m;
    m->tree_size = m->tree_end = 1; /* numbered: position 0 of its own tree */
    m->name = gb__nn_strdup("", type->name);
    m->path = gb__nn_strdup("", type->name);
    if (!m->name || !m->path) {
        gb_module_free(m);
        return NULL;
    }
    return m;
}

gb_module *gb__nn_module_done(gb_module *m, gb_status st) {
    if (st == GB_OK) return m;
    gb_module_free(m);
    return NULL;
}

gb_module *gb__nn_module_class(gb_module *m, const char *cls) {
    if (m) m->cls = cls;
    return m;
}

void gb_module_free(gb_module *m) {
    if (!m) return;
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) gb_module_free(m->children[i]);
    arrfree(m->children);
    for (ptrdiff_t i = 0; i < arrlen(m->params); i++) {
        free(m->params[i].name);
        gb_tensor_free(m->params[i].t);
    }
    arrfree(m->params);
    free(m->name);
    free(m->path);
    free(m);
}

/* Recompute the paths and roots of m's subtree (a subtree is built
 * bottom-up, so they are known only once it is attached). */
static gb_status gb__nn_update_paths(gb_module *m) {
    m->root = m->parent ? m->parent->root : m;
    const char *pp = m->parent ? m->parent->path : "";
    size_t n = strlen(pp) + strlen(m->name) + 2;
    char *p = gb__malloc(n, "module path");
    if (!p) return GB_ERR_ALLOC;
    snprintf(p, n, "%s%s%s", pp, *pp ? "." : "", m->name);
    free(m->path);
    m->path = p;
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++)
        if (gb__nn_update_paths(m->children[i]) != GB_OK) return GB_ERR_ALLOC;
    return GB_OK;
}

static int gb__nn_number(gb_module *m, int next);

gb_status gb__nn_module_add_child(gb_module *m, const char *name, gb_module *child) {
    if (!child) return gb_last_status() ? gb_last_status() : GB_ERR_ARG;
    char *nm = gb__nn_strdup(name, "module child");
    if (!nm) {
        gb_module_free(child);
        return GB_ERR_ALLOC;
    }
    free(child->name);
    child->name = nm;
    child->parent = m;
    if (!GB_ARR_PUT(m->children, child, "module child")) {
        gb_module_free(child);
        return GB_ERR_ALLOC;
    }
    gb_status st = gb__nn_update_paths(child);
    gb_module *root = m->root;
    /* Numbered now, not when a run first needs it: runs on other threads
     * read the numbers of a shared tree, and only building writes them. */
    root->tree_size = gb__nn_number(root, 0);
    root->tree_gen++;
    return st;
}

gb_status gb__nn_module_add_param(gb_module *m, const char *name, int ndim, const int64_t *shape, bool buffer) {
    gb_tensor *t = gb_zeros(ndim, shape, GB_DTYPE_F32);
    char *nm = t ? gb__nn_strdup(name, "module parameter") : NULL;
    if (!nm) {
        gb_tensor_free(t);
        return GB_ERR_ALLOC;
    }
    gb__nn_param p = {nm, t, buffer};
    if (!GB_ARR_PUT(m->params, p, "module parameter")) {
        free(nm);
        gb_tensor_free(t);
        return GB_ERR_ALLOC;
    }
    return GB_OK;
}

gb_status gb__nn_module_add_param_t(gb_module *m, const char *name, int64_t rows, int64_t cols) {
    gb_status st = gb__nn_module_add_param(m, name, 2, (int64_t[]){cols, rows}, false);
    if (st != GB_OK) return st;
    gb__nn_param *p = &m->params[arrlen(m->params) - 1];
    gb_tensor *v = gb_transpose(p->t, 0, 1);
    if (!v) return gb_last_status();
    gb_tensor_free(p->t);
    p->t = v;
    return GB_OK;
}

gb_status gb__nn_module_fill_buffers(gb_module *m) {
    bool filled = false;
    for (ptrdiff_t i = 0; i < arrlen(m->params); i++) {
        gb__nn_param *p = &m->params[i];
        if (!p->buffer || !gb__is_meta(p->t)) continue;
        gb_tensor *t = gb_zeros(gb_tensor_ndim(p->t), gb_tensor_shape(p->t), GB_DTYPE_F32);
        if (!t) return GB_ERR_ALLOC;
        gb_tensor_free(p->t);
        p->t = t;
        filled = true;
    }
    if (filled && m->type->buffers) m->type->buffers(m);
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) {
        gb_status st = gb__nn_module_fill_buffers(m->children[i]);
        if (st != GB_OK) return st;
    }
    return GB_OK;
}

const char *gb_module_name(const gb_module *m) { return m->name; }
const char *gb_module_path(const gb_module *m) { return m->path; }
const char *gb_module_type(const gb_module *m) { return m->cls; }
bool gb_module_returns_tuple(const gb_module *m) { return m->type->returns_tuple; }
gb_module *gb_module_parent(const gb_module *m) { return m->parent; }
int gb_module_num_children(const gb_module *m) { return (int)arrlen(m->children); }
gb_module *gb_module_child(const gb_module *m, int i) {
    return i >= 0 && i < arrlen(m->children) ? m->children[i] : NULL;
}

static const gb__nn_module_type gb__nn_type_list;
static bool gb__nn_is_list(const gb_module *m) { return m->type == &gb__nn_type_list; }

/* Levenshtein distance, for "did you mean" lists. */
static int gb__nn_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c) c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c) c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

/* "nearest: mlp, ln_2, attn" — up to three children closest to name. */
static void gb__nn_nearest_names(const gb_module *m, const char *name, char *buf, size_t size) {
    int n = (int)arrlen(m->children), best[3] = {-1, -1, -1};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < n; i++) {
            if (i == best[0] || i == best[1]) continue;
            if (best[k] < 0 || gb__nn_edit_distance(name, m->children[i]->name) <
                                   gb__nn_edit_distance(name, m->children[best[k]]->name))
                best[k] = i;
        }
    size_t len = 0;
    buf[0] = 0;
    for (int k = 0; k < 3 && best[k] >= 0 && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", k ? ", " : "", m->children[best[k]]->name);
}

/* A path component that is a list index: [-]digits, nothing else. */
static bool gb__nn_parse_index_part(const char *p, size_t len, long *out) {
    size_t i = p[0] == '-';
    if (len <= i || len - i > 9) return false;
    long v = 0;
    for (; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = p[0] == '-' ? -v : v;
    return true;
}

gb_module *gb_module_find(gb_module *m, const char *path) {
    gb_module *cur = m;
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0 || len >= 256)
            return gb__fail_null(GB_ERR_ARG, "module path '%s': empty or overlong component", path);
        gb_module *next = NULL;
        long idx;
        if (gb__nn_is_list(cur) && gb__nn_parse_index_part(p, len, &idx)) {
            long n = (long)arrlen(cur->children);
            if (idx < -n || idx >= n)
                return gb__fail_null(GB_ERR_INDEX, "module path '%s': index %ld is out of range for '%s' (%s of %ld)",
                                     path, idx, *cur->path ? cur->path : "<root>", cur->cls, n);
            next = cur->children[idx < 0 ? idx + n : idx];
        } else {
            for (ptrdiff_t i = 0; i < arrlen(cur->children) && !next; i++)
                if (!strncmp(cur->children[i]->name, p, len) && !cur->children[i]->name[len]) next = cur->children[i];
        }
        if (!next) {
            char part[256], near[256];
            memcpy(part, p, len);
            part[len] = 0;
            gb__nn_nearest_names(cur, part, near, sizeof near);
            return gb__fail_null(GB_ERR_NOT_FOUND, "module path '%s': '%s' (%s) has no submodule '%s'%s%s%s", path,
                                 *cur->path ? cur->path : "<root>", cur->cls, part,
                                 *near ? "; nearest: " : "", near, arrlen(cur->children) ? "" : " (it has no children)");
        }
        cur = next;
        p += len + (dot ? 1 : 0);
        if (dot && !*p) return gb__fail_null(GB_ERR_ARG, "module path '%s' ends with '.'", path);
    }
    return cur;
}

/* ---- repr (PyTorch's Module.__repr__ and ModuleList.__repr__) ----------- */

/* Text that remembers running out of memory (SQLite's StrAccum): appends
 * after a failure do nothing, and the end says whether it all went in. */
typedef struct {
    char *s; /* stb_ds char array, NUL-terminated when done */
    bool failed;
} gb__nn_buf;

static void gb__nn_putn(gb__nn_buf *b, const char *s, size_t n) {
    char *at = b->failed ? NULL : GB_ARR_ADDN(b->s, n, "module_repr");
    if (at) memcpy(at, s, n);
    else b->failed = true;
}

static void gb__nn_puts(gb__nn_buf *b, const char *s) { gb__nn_putn(b, s, strlen(s)); }

/* Append s with every line after the first indented by two spaces (_addindent). */
static void gb__nn_put_indented(gb__nn_buf *b, const char *s) {
    for (; *s; s++) {
        gb__nn_putn(b, s, 1);
        if (*s == '\n') gb__nn_puts(b, "  ");
    }
}

/* The text (malloc'd), or NULL when an append failed. */
static char *gb__nn_buf_done(gb__nn_buf *b) {
    gb__nn_putn(b, "", 1);
    char *out = b->failed ? NULL : gb__strdup(b->s, "module_repr");
    arrfree(b->s);
    return out;
}

static char *gb__nn_repr(const gb_module *m);

static char *gb__nn_repr_list(const gb_module *m) {
    gb__nn_buf b = {0};
    int n = (int)arrlen(m->children);
    gb__nn_puts(&b, m->cls);
    gb__nn_puts(&b, "(");
    char **reprs = gb__calloc((size_t)n + 1, sizeof *reprs, "module_repr");
    b.failed |= !reprs;
    for (int i = 0; !b.failed && i < n; i++) b.failed = !(reprs[i] = gb__nn_repr(m->children[i]));
    if (n > 0) gb__nn_puts(&b, "\n  ");
    for (int start = 0; !b.failed && start < n;) {
        int end = start;
        while (end + 1 < n && !strcmp(reprs[end + 1], reprs[start])) end++;
        char head[64];
        if (end == start) snprintf(head, sizeof head, "(%d): ", start);
        else snprintf(head, sizeof head, "(%d-%d): %d x ", start, end, end - start + 1);
        if (start > 0) gb__nn_puts(&b, "\n  ");
        gb__nn_puts(&b, head);
        gb__nn_put_indented(&b, reprs[start]);
        start = end + 1;
    }
    if (n > 0) gb__nn_puts(&b, "\n");
    gb__nn_puts(&b, ")");
    for (int i = 0; reprs && i < n; i++) free(reprs[i]);
    free(reprs);
    return gb__nn_buf_done(&b);
}

static char *gb__nn_repr(const gb_module *m) {
    if (gb__nn_is_list(m)) return gb__nn_repr_list(m);
    gb__nn_buf b = {0};
    char extra[512] = "";
    if (m->type->extra_repr) m->type->extra_repr(m, extra, sizeof extra);
    int nchild = (int)arrlen(m->children);
    gb__nn_puts(&b, m->cls);
    gb__nn_puts(&b, "(");
    if (*extra && nchild == 0 && !strchr(extra, '\n')) {
        gb__nn_puts(&b, extra);
    } else if (*extra || nchild) {
        if (*extra) {
            gb__nn_puts(&b, "\n  ");
            gb__nn_put_indented(&b, extra); /* multi-line extra_repr: each line indented */
        }
        for (int i = 0; i < nchild && !b.failed; i++) {
            char *child = gb__nn_repr(m->children[i]);
            if (!child) b.failed = true;
            gb__nn_puts(&b, "\n  (");
            gb__nn_puts(&b, m->children[i]->name);
            gb__nn_puts(&b, "): ");
            if (child) gb__nn_put_indented(&b, child);
            free(child);
        }
        gb__nn_puts(&b, "\n");
    }
    gb__nn_puts(&b, ")");
    return gb__nn_buf_done(&b);
}

char *gb_module_repr(const gb_module *m) {
    return gb__nn_repr(m); /* NULL: the append that failed said so */
}

/* ---- parameters --------------------------------------------------------- */

int gb_module_num_params(const gb_module *m) { return (int)arrlen(m->params); }
const char *gb_module_param_name(const gb_module *m, int i) {
    return i >= 0 && i < arrlen(m->params) ? m->params[i].name : NULL;
}

static gb__nn_param *gb__nn_find_param(const gb_module *m, const char *name) {
    for (ptrdiff_t i = 0; i < arrlen(m->params); i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

gb_tensor *gb_module_param(const gb_module *m, const char *name) {
    gb__nn_param *p = gb__nn_find_param(m, name);
    return p ? p->t : NULL;
}

gb_status gb_module_set_param(gb_module *m, const char *name, gb_tensor *t) {
    gb__nn_param *p = gb__nn_find_param(m, name);
    if (!p)
        return gb__fail(GB_ERR_NOT_FOUND, "set_param: %s (%s) has no parameter '%s'", *m->path ? m->path : "<root>",
                        m->cls, name);
    const gb_tensor *old = p->t;
    if (gb_tensor_ndim(t) != old->ndim || memcmp(gb_tensor_shape(t), old->shape, sizeof(int64_t) * (size_t)old->ndim)) {
        char b1[160];
        return gb__fail(GB_ERR_SHAPE, "set_param: %s%s%s has shape %s, got a tensor of shape %s", m->path,
                        *m->path ? "." : "", name, GB__SHAPE_STR(old),
                        gb__shape_str(b1, 160, gb_tensor_ndim(t), gb_tensor_shape(t)));
    }
    /* A parameter kept transposed in memory (Conv1D's weight) keeps that
     * layout for float32 values: they are copied in, not adopted (other
     * dtypes are adopted as they lie). */
    if (gb__ts_is_transposed(old) && t->dtype == GB_DTYPE_F32 && !gb__is_meta(t) && !gb__ts_is_transposed(t)) {
        gb_tensor *v = gb__ts_transposed_new(old->shape[0], old->shape[1], false);
        gb_status st = v ? gb__ts_copy_into(v, t) : gb_last_status();
        if (st == GB_OK && t->requires_grad) st = gb_requires_grad_(v, true);
        if (st != GB_OK) {
            gb_tensor_free(v);
            return st;
        }
        gb_tensor_free(p->t);
        p->t = v;
        return GB_OK;
    }
    gb_tensor_ref(t);
    gb_tensor_free(p->t);
    p->t = t;
    return GB_OK;
}

gb_status gb_module_tie_param(gb_module *m, const char *name, gb_module *src, const char *src_name) {
    gb_tensor *t = gb_module_param(src, src_name);
    if (!t)
        return gb__fail(GB_ERR_NOT_FOUND, "tie_param: %s has no parameter '%s'", *src->path ? src->path : "<root>",
                        src_name);
    return gb_module_set_param(m, name, t);
}

typedef struct {
    const char **names;  /* stb_ds */
    gb_tensor **params;  /* stb_ds */
    char **owned_names;  /* stb_ds: full names we allocated */
} gb__nn_plist;

static bool gb__nn_collect(gb_module *m, const char *prefix, gb__nn_plist *l) {
    const char *what = "module_parameters";
    for (ptrdiff_t i = 0; i < arrlen(m->params); i++) {
        if (m->params[i].buffer) continue;
        bool seen = false; /* tied parameters are listed once, as PyTorch does */
        for (ptrdiff_t j = 0; j < arrlen(l->params); j++) seen |= l->params[j] == m->params[i].t;
        if (seen) continue;
        size_t n = strlen(prefix) + strlen(m->params[i].name) + 2;
        char *full = gb__malloc(n, what);
        if (!full) return false;
        snprintf(full, n, "%s%s%s", prefix, *prefix ? "." : "", m->params[i].name);
        if (!GB_ARR_PUT(l->owned_names, full, what)) return free(full), false;
        if (!GB_ARR_PUT(l->names, full, what) || !GB_ARR_PUT(l->params, m->params[i].t, what)) return false;
    }
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) {
        size_t n = strlen(prefix) + strlen(m->children[i]->name) + 2;
        char *p = gb__malloc(n, what);
        if (!p) return false;
        snprintf(p, n, "%s%s%s", prefix, *prefix ? "." : "", m->children[i]->name);
        bool ok = gb__nn_collect(m->children[i], p, l);
        free(p);
        if (!ok) return false;
    }
    return true;
}

/* The names are kept alive in a per-module cache so callers free only the arrays. */
int gb_module_parameters(gb_module *m, const char ***names, gb_tensor ***params) {
    gb__nn_plist l = {0};
    bool ok = gb__nn_collect(m, "", &l);
    int n = (int)arrlen(l.params);
    /* One block: the pointer arrays, then the strings. */
    size_t strbytes = 0;
    for (int i = 0; i < n; i++) strbytes += strlen(l.names[i]) + 1;
    char *block = ok ? gb__malloc(sizeof(char *) * (size_t)n + strbytes + 1, "module_parameters") : NULL;
    gb_tensor **ps = block ? gb__malloc(sizeof(gb_tensor *) * (size_t)(n ? n : 1), "module_parameters") : NULL;
    if (!block || !ps) {
        free(block), free(ps);
        n = -1;
    } else {
        const char **ns = (const char **)(void *)block;
        char *s = block + sizeof(char *) * (size_t)n;
        for (int i = 0; i < n; i++) {
            strcpy(s, l.names[i]);
            ns[i] = s;
            s += strlen(s) + 1;
            ps[i] = l.params[i];
        }
        if (names) *names = ns;
        else free(block);
        if (params) *params = ps;
        else free(ps);
    }
    for (ptrdiff_t i = 0; i < arrlen(l.owned_names); i++) free(l.owned_names[i]);
    arrfree(l.owned_names);
    arrfree(l.names);
    arrfree(l.params);
    return n;
}

int64_t gb_module_num_parameters(gb_module *m) {
    gb_tensor **ps;
    int n = gb_module_parameters(m, NULL, &ps);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += gb_tensor_numel(ps[i]);
    if (n >= 0) free(ps);
    return total;
}

gb_status gb_module_requires_grad_(gb_module *m, bool on) {
    gb_tensor **ps;
    int n = gb_module_parameters(m, NULL, &ps);
    if (n < 0) return GB_ERR_ALLOC;
    gb_status st = GB_OK;
    for (int i = 0; i < n && st == GB_OK; i++) st = gb_requires_grad_(ps[i], on);
    free(ps);
    return st;
}

static void gb__nn_init_rec(gb_module *m, gb_rng *rng) {
    if (m->type->init) m->type->init(m, rng);
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) gb__nn_init_rec(m->children[i], rng);
}

void gb_module_init(gb_module *m, uint64_t seed) {
    gb_rng rng = gb_rng_seed(seed);
    gb__nn_init_rec(m, &rng);
}

/* ---- containers --------------------------------------------------------- */

gb_status gb__nn_forward_sequential(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    gb_values cur = {0}, next = {0};
    for (int i = 0; i < in->n; i++) gb_values_push(&cur, gb_tensor_ref(in->v[i]));
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) {
        gb_status st = gb_module_call(m->children[i], run, &cur, &next);
        gb_values_clear(&cur);
        if (st != GB_OK) {
            *out = next; /* a stopped run keeps what it computed */
            return st;
        }
        cur = next;
        memset(&next, 0, sizeof next);
    }
    *out = cur;
    return GB_OK;
}

static gb_status gb__nn_forward_list(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run, (void)in, (void)out;
    return gb__fail(GB_ERR_STATE, "%s: a ModuleList is not callable; its owner calls its items", m->path);
}

static const gb__nn_module_type gb__nn_type_sequential = {.name = "Sequential", .forward = gb__nn_forward_sequential};
static const gb__nn_module_type gb__nn_type_list = {.name = "ModuleList", .forward = gb__nn_forward_list};

static gb_module *gb__nn_container(const gb__nn_module_type *type, int n, const char *const *names,
                                gb_module *const *children) {
    gb_module *m = gb__nn_module_new(type);
    gb_status st = m ? GB_OK : GB_ERR_ALLOC;
    for (int i = 0; i < n; i++) {
        char idx[24];
        snprintf(idx, sizeof idx, "%d", i);
        if (st == GB_OK) st = gb__nn_module_add_child(m, names ? names[i] : idx, children[i]);
        else gb_module_free(children[i]);
    }
    return gb__nn_module_done(m, st);
}

gb_module *gb_sequential(int n, const char *const *names, gb_module *const *children) {
    return gb__nn_container(&gb__nn_type_sequential, n, names, children);
}

gb_module *gb_module_list(int n, gb_module *const *children) {
    return gb__nn_container(&gb__nn_type_list, n, NULL, children);
}

/* ---- runs --------------------------------------------------------------- */

typedef struct {
    const gb_module *key;
    gb_tensor *k, *v;       /* [B, KV, S, D]: views of kbuf, vbuf when those are set */
    gb_tensor *kbuf, *vbuf; /* [B, KV, capacity, D] or NULL */
} gb__nn_cache_entry;

struct gb_run {
    gb_observer_fn observer;
    void *observer_ctx;
    /* Calls so far per module: an array indexed by tree_index for the tree
     * of the first module called (no hashing on the hot path), and a hash
     * map for modules of any other tree. */
    const gb_module *calls_root;
    int *calls, ncalls;
    struct {
        const gb_module *key;
        int value;
    } *other_calls; /* stb_ds hash map */
    const gb__nn_interest *interest; /* the observer's, or NULL: every event */
    gb_tensor *attention_mask, *position_ids;
    bool use_cache;
    gb__nn_cache_entry *cache; /* stb_ds hash map */
    int64_t cache_len;
    bool nan_check; /* gb_run_set_nan_check */
};

static const char *const gb__nn_event_names[GB_EVENT_COUNT] = {
#define GB__X(e, n) n,
    GB_EVENT_LIST(GB__X)
#undef GB__X
};
const char *gb_event_name(gb_event_kind k) { return (unsigned)k < GB_EVENT_COUNT ? gb__nn_event_names[k] : "unknown"; }

gb_run *gb_run_new(void) { return gb__calloc(1, sizeof(gb_run), "run_new"); }

static void gb__nn_cache_clear(gb_run *run) {
    for (ptrdiff_t i = 0; i < hmlen(run->cache); i++) {
        gb_tensor_free(run->cache[i].k), gb_tensor_free(run->cache[i].v);
        gb_tensor_free(run->cache[i].kbuf), gb_tensor_free(run->cache[i].vbuf);
    }
    hmfree(run->cache);
    run->cache_len = 0;
}

void gb_run_free(gb_run *run) {
    if (!run) return;
    free(run->calls);
    hmfree(run->other_calls);
    gb_tensor_free(run->attention_mask);
    gb_tensor_free(run->position_ids);
    gb__nn_cache_clear(run);
    free(run);
}

void gb_run_set_observer(gb_run *run, gb_observer_fn fn, void *ctx) {
    run->observer = fn;
    run->observer_ctx = ctx;
    run->interest = NULL;
}

void gb__nn_run_set_interest(gb_run *run, const gb__nn_interest *interest) { run->interest = interest; }

void gb_run_reset_calls(gb_run *run) {
    free(run->calls);
    run->calls = NULL;
    run->calls_root = NULL;
    run->ncalls = 0;
    hmfree(run->other_calls);
}

void gb_run_set_attention_mask(gb_run *run, gb_tensor *mask) {
    gb_tensor_free(run->attention_mask);
    run->attention_mask = gb_tensor_ref(mask);
}

void gb_run_set_position_ids(gb_run *run, gb_tensor *pos) {
    gb_tensor_free(run->position_ids);
    run->position_ids = gb_tensor_ref(pos);
}

void gb_run_use_cache(gb_run *run, bool on) {
    if (!on) gb__nn_cache_clear(run);
    run->use_cache = on;
}

int64_t gb_run_cache_length(const gb_run *run) { return run->cache_len; }
void gb_run_set_nan_check(gb_run *run, bool on) { run->nan_check = on; }
gb_tensor *gb__nn_run_attention_mask(const gb_run *run) { return run->attention_mask; }
gb_tensor *gb__nn_run_position_ids(const gb_run *run) { return run->position_ids; }
bool gb__nn_run_use_cache(const gb_run *run) { return run->use_cache; }

void gb__nn_run_cache_get(gb_run *run, const gb_module *attn, gb_tensor **k, gb_tensor **v, gb_tensor **kbuf,
                       gb_tensor **vbuf) {
    ptrdiff_t i = GB_HM_GETI(run->cache, attn);
    gb__nn_cache_entry e = i >= 0 ? run->cache[i] : (gb__nn_cache_entry){0};
    *k = e.k, *v = e.v;
    if (kbuf) *kbuf = e.kbuf, *vbuf = e.vbuf;
}

gb_status gb__nn_run_cache_set(gb_run *run, const gb_module *attn, gb_tensor *k, gb_tensor *v, gb_tensor *kbuf,
                            gb_tensor *vbuf) {
    gb__nn_cache_entry e = {attn, k, v, kbuf, vbuf};
    ptrdiff_t i = GB_HM_GETI(run->cache, attn);
    if (i >= 0) {
        gb_tensor_free(run->cache[i].k), gb_tensor_free(run->cache[i].v);
        gb_tensor_free(run->cache[i].kbuf), gb_tensor_free(run->cache[i].vbuf);
        run->cache[i] = e;
    } else if (!GB_HM_PUTS(run->cache, e, "KV cache")) {
        gb_tensor_free(k), gb_tensor_free(v), gb_tensor_free(kbuf), gb_tensor_free(vbuf);
        return GB_ERR_ALLOC;
    }
    return GB_OK;
}

void gb__nn_run_cache_advance(gb_run *run, int64_t t) {
    if (run->use_cache) run->cache_len += t;
}

/* ---- calling modules ---------------------------------------------------- */

/* Number a subtree depth-first from next; returns one past its last index. */
static int gb__nn_number(gb_module *m, int next) {
    m->tree_index = next++;
    for (ptrdiff_t i = 0; i < arrlen(m->children); i++) next = gb__nn_number(m->children[i], next);
    return m->tree_end = next;
}

int gb__nn_tree_number(gb_module *root) { return root->tree_size; }

gb_module *gb__nn_tree_root(const gb_module *m) { return m->root; }
int gb__nn_tree_index(const gb_module *m) { return m->tree_index; }
int gb__nn_tree_end(const gb_module *m) { return m->tree_end; }
unsigned gb__nn_tree_gen(const gb_module *root) { return root->tree_gen; }

/* The one staleness rule: the mask was built for the root's tree at its
 * present generation and size. Inline here, where every observed call asks. */
static inline bool gb__nn_current(const gb__nn_interest *in) {
    const gb_module *root = in->root;
    return root && in->gen == root->tree_gen && in->size == root->tree_size;
}

bool gb__nn_interest_current(const gb__nn_interest *in) { return gb__nn_current(in); }

/* m's call counter in this run: an array slot for the tree of the first
 * module called, a hash map entry for any other tree (or a changed one). */
static int *gb__nn_call_slot_slow(gb_run *run, gb_module *root, gb_module *m) {
    int size = gb__nn_tree_number(root);
    if (!run->calls_root) {
        int *calls = calloc((size_t)size, sizeof *calls);
        if (calls) {
            run->calls_root = root;
            run->calls = calls;
            run->ncalls = size;
        }
    }
    if (root == run->calls_root && size == run->ncalls) return &run->calls[m->tree_index];
    ptrdiff_t i = GB_HM_GETI(run->other_calls, m);
    if (i < 0) {
        if (!GB_HM_PUT(run->other_calls, m, 0, "module_call: call counters")) return NULL;
        i = GB_HM_GETI(run->other_calls, m);
    }
    return &run->other_calls[i].value;
}

static inline int *gb__nn_call_slot(gb_run *run, gb_module *m) {
    const gb_module *root = m->root;
    if (root == run->calls_root && root->tree_size == run->ncalls) return &run->calls[m->tree_index];
    return gb__nn_call_slot_slow(run, m->root, m);
}

/* Whether the observer wants events of this kind from module m. */
static inline bool gb__nn_wants(const gb_run *run, const gb_module *m, gb_event_kind kind) {
    const gb__nn_interest *in = run->interest;
    if (!in || in->root != m->root || !gb__nn_current(in)) return true;
    return ((in->mask ? in->mask[m->tree_index] : 0) | in->all) & (1u << kind);
}

/* Deliver one event of module m about values; out is the output tuple for
 * input events, where the observer may put an output and skip the forward. */
static gb_status gb__nn_emit(gb_run *run, gb_module *m, gb_event_kind kind, int call, gb_values *values, gb_values *out,
                          bool *skip) {
    gb_event ev = {.kind = kind, .module = m, .path = m->path, .call = call, .values = values, .output = out};
    gb_status st = run->observer(&ev, run->observer_ctx);
    if (skip) *skip = ev.skip;
    return st;
}

/* The NaN guard (gb_run_set_nan_check): the first value of m's outputs that
 * is not finite, as an error naming where it is. Meta values (scans) have
 * no data to look at. */
static gb_status gb__nn_check_finite(const gb_module *m, int call, const gb_values *out) {
    for (int i = 0; i < out->n; i++) {
        const gb_tensor *t = out->v[i];
        int64_t first, bad = t ? gb_count_nonfinite(t, &first) : 0;
        if (!bad) continue;
        const int nd = t->ndim;
        int64_t idx[GB_MAX_DIMS], rest = first; /* element `first`'s position, row-major */
        for (int d = nd - 1; d >= 0; d--) {
            idx[d] = t->shape[d] ? rest % t->shape[d] : 0;
            rest = t->shape[d] ? rest / t->shape[d] : 0;
        }
        double v = 0;
        gb_tensor_get(t, idx, &v);
        char at[160];
        return gb__fail(GB_ERR_NONFINITE,
                        "nan check: %s (%s), call %d: output[%d] %s holds %s at %s (%lld of %lld values are not finite)",
                        *m->path ? m->path : "<root>", m->cls, call, i, GB__SHAPE_STR(t),
                        isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf", gb__shape_str(at, sizeof at, nd, idx),
                        (long long)bad, (long long)gb_tensor_numel(t));
    }
    return GB_OK;
}

gb_status gb_module_call(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    memset(out, 0, sizeof *out);
    if (!run) return gb__fail(GB_ERR_ARG, "module_call: %s: run is NULL (use gb_run_new)", m->path);
    if (!run->observer && !run->nan_check) return m->type->forward(m, run, in, out);

    int *slot = gb__nn_call_slot(run, m);
    if (!slot) return gb_last_status();
    int call = (*slot)++;
    gb_status st;
    if (run->observer && gb__nn_wants(run, m, GB_EVENT_INPUT)) {
        /* The observer may replace the inputs: hand it a tuple of our own. */
        gb_values inputs = {0};
        for (int i = 0; i < in->n; i++) gb_values_push(&inputs, gb_tensor_ref(in->v[i]));
        bool skip = false;
        st = gb__nn_emit(run, m, GB_EVENT_INPUT, call, &inputs, out, &skip);
        if (st == GB_OK && !skip) st = m->type->forward(m, run, &inputs, out);
        gb_values_clear(&inputs);
    } else {
        st = m->type->forward(m, run, in, out);
    }
    if (st == GB_OK && run->nan_check && (st = gb__nn_check_finite(m, call, out)) != GB_OK)
        gb_values_clear(out); /* a failed call returns no values: callers do not free them */
    /* Asked now: a hook added by the input event or inside the forward counts. */
    if (st != GB_OK || !run->observer || !gb__nn_wants(run, m, GB_EVENT_OUTPUT)) return st;
    return gb__nn_emit(run, m, GB_EVENT_OUTPUT, call, out, NULL, NULL);
}

gb_status gb__nn_point(gb_run *run, gb_module *m, const char *name, gb_tensor **t) {
    if (!run->observer) return GB_OK;
    if (!gb__nn_wants(run, m, GB_EVENT_POINT)) return GB_OK;
    char path[512];
    snprintf(path, sizeof path, "%s%s%s", m->path, *m->path ? "." : "", name);
    int *slot = gb__nn_call_slot(run, m);
    if (!slot) return gb_last_status();
    gb_values vs = {1, {*t}};
    gb_event ev = {.kind = GB_EVENT_POINT, .module = m, .path = path, .call = *slot - 1, .values = &vs};
    gb_status st = run->observer(&ev, run->observer_ctx);
    *t = vs.v[0]; /* the observer may have replaced it (and released the old one) */
    return st;
}

bool gb__nn_call_unseen(const gb_run *run, const gb_module *m) {
    if (run->nan_check) return false;
    if (!run->observer) return true;
    const gb__nn_interest *in = run->interest;
    if (!in || in->root != m->root || !gb__nn_current(in)) return false; /* every event is delivered */
    return ((in->mask ? in->mask[m->tree_index] : 0) | in->all) == 0;  /* the observer's own bits too */
}

gb_status gb__nn_count_call(gb_run *run, gb_module *m) {
    if (!run->observer && !run->nan_check) return GB_OK; /* gb_module_call counts nothing then either */
    int *slot = gb__nn_call_slot(run, m);
    if (!slot) return gb_last_status();
    (*slot)++;
    return GB_OK;
}

bool gb__nn_run_watches(const gb_run *run, const gb_module *m, bool calls) {
    return run->observer && (calls || gb__nn_wants(run, m, GB_EVENT_POINT));
}

gb_status gb_module_run(gb_module *m, gb_run *run, gb_tensor *x, gb_tensor **y) {
    *y = NULL;
    gb_run *own = run ? NULL : gb_run_new();
    if (!run && !own) return GB_ERR_ALLOC;
    gb_values in = {1, {x}}, out = {0};
    gb_status st = gb_module_call(m, run ? run : own, &in, &out);
    if (out.n > 0) {
        *y = out.v[0];
        out.v[0] = NULL;
    }
    gb_values_clear(&out);
    gb_run_free(own);
    return st;
}
