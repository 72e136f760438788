/* PyTorch-style basic indexing: x[:, -1, ::2, ..., None] as a view, and the
 * in-place assignment x[expr] = v that autograd records (INDEX_PUT).
 *
 * Every entry point goes through one plan (gb__ts_index_plan_make): it checks the
 * expression against a shape in PyTorch's order and with PyTorch's messages,
 * and describes the result per dim. The view (gb_index_expr_apply), the shape
 * (gb_index_shape), the write and the backward all read that plan, so they
 * cannot disagree. */
#include "tensor_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

/* ---- parsing and formatting --------------------------------------------- */

/* The grammar is Python's subscript restricted to basic indexing:
 *
 *     expr  := '[' list ']' | list          (whitespace anywhere between tokens)
 *     list  := <empty> | item (',' item)* [',']
 *     item  := '...' | 'None' | int | [int] ':' [int] [':' [int]]
 *     int   := ['+' | '-'] digits           (fits in int64)
 *
 * The empty list is Python's x[()]. Errors give 1-based columns in the text
 * exactly as passed. Negative and zero steps parse; applying them fails as
 * in PyTorch. */

#define GB__TEXT_MAX 200 /* characters of the expression quoted in errors */

static gb_status gb__ts_parse_fail_at(const char *text, size_t pos) {
    unsigned char c = (unsigned char)text[pos];
    if (c == 0)
        return gb__fail(GB_ERR_ARG, "index: unexpected end of text at column %zu in '%.*s'", pos + 1, GB__TEXT_MAX,
                        text);
    if (isprint(c))
        return gb__fail(GB_ERR_ARG, "index: unexpected '%c' at column %zu in '%.*s'", c, pos + 1, GB__TEXT_MAX, text);
    return gb__fail(GB_ERR_ARG, "index: unexpected character 0x%02x at column %zu in '%.*s'", c, pos + 1,
                    GB__TEXT_MAX, text);
}

static size_t gb__ts_skip_ws(const char *s, size_t p) {
    while (s[p] && isspace((unsigned char)s[p])) p++;
    return p;
}

/* An optional integer at *p: [+-]digits. Sets *has when one is there. */
static gb_status gb__ts_parse_int(const char *s, size_t *p, int64_t *out, bool *has) {
    size_t q = *p;
    bool neg = false;
    *has = false;
    if (s[q] == '-' || s[q] == '+') neg = s[q++] == '-';
    if (!isdigit((unsigned char)s[q])) {
        if (q != *p) return gb__ts_parse_fail_at(s, q); /* a sign without digits */
        return GB_OK;
    }
    /* Accumulate negatively so that INT64_MIN itself parses. */
    int64_t v = 0;
    for (; isdigit((unsigned char)s[q]); q++) {
        int d = s[q] - '0';
        if (v < (INT64_MIN + d) / 10)
            return gb__fail(GB_ERR_ARG, "index: number out of range at column %zu in '%.*s'", *p + 1, GB__TEXT_MAX, s);
        v = v * 10 - d;
    }
    if (!neg) {
        if (v == INT64_MIN)
            return gb__fail(GB_ERR_ARG, "index: number out of range at column %zu in '%.*s'", *p + 1, GB__TEXT_MAX, s);
        v = -v;
    }
    *out = v;
    *has = true;
    *p = q;
    return GB_OK;
}

static bool gb__ts_word_at(const char *s, size_t p, const char *w) {
    size_t n = strlen(w);
    return strncmp(s + p, w, n) == 0 && !(isalnum((unsigned char)s[p + n]) || s[p + n] == '_');
}

/* One item at *p: "...", "None", an integer or a slice. */
static gb_status gb__ts_parse_item(const char *s, size_t *p, gb_index_item *it) {
    memset(it, 0, sizeof *it);
    it->step = 1;
    if (strncmp(s + *p, "...", 3) == 0) {
        it->kind = GB_INDEX_KIND_ELLIPSIS;
        *p += 3;
        return GB_OK;
    }
    if (gb__ts_word_at(s, *p, "None")) {
        it->kind = GB_INDEX_KIND_NEWAXIS;
        *p += 4;
        return GB_OK;
    }
    size_t start_pos = *p;
    bool has;
    gb_status st = gb__ts_parse_int(s, p, &it->start, &it->has_start);
    if (st) return st;
    size_t q = gb__ts_skip_ws(s, *p);
    if (s[q] != ':') {
        if (!it->has_start) return gb__ts_parse_fail_at(s, start_pos);
        it->kind = GB_INDEX_KIND_INT;
        it->has_start = false; /* INT keeps its index in start */
        return GB_OK;
    }
    it->kind = GB_INDEX_KIND_SLICE;
    q = gb__ts_skip_ws(s, q + 1);
    if ((st = gb__ts_parse_int(s, &q, &it->stop, &it->has_stop))) return st;
    q = gb__ts_skip_ws(s, q);
    if (s[q] == ':') {
        q = gb__ts_skip_ws(s, q + 1);
        int64_t step;
        if ((st = gb__ts_parse_int(s, &q, &step, &has))) return st;
        if (has) it->step = step;
    }
    *p = q;
    return GB_OK;
}

gb_status gb_index_parse(const char *text, gb_index_expr *out) {
    memset(out, 0, sizeof *out);
    if (!text) return gb__fail(GB_ERR_ARG, "index: expression is NULL");
    gb_index_expr e = {0};
    size_t p = gb__ts_skip_ws(text, 0);
    bool bracket = text[p] == '[';
    if (bracket) p = gb__ts_skip_ws(text, p + 1);
    char close = bracket ? ']' : 0;
    if (text[p] != close) { /* not empty: a comma-separated list, Python's trailing comma allowed */
        for (;;) {
            if (e.n == GB_MAX_INDEX_ITEMS)
                return gb__fail(GB_ERR_ARG, "index: too many items (at most %d) at column %zu in '%.*s'",
                                GB_MAX_INDEX_ITEMS, p + 1, GB__TEXT_MAX, text);
            gb_status st = gb__ts_parse_item(text, &p, &e.item[e.n]);
            if (st) return st;
            e.n++;
            p = gb__ts_skip_ws(text, p);
            if (text[p] == close) break;
            if (text[p] != ',') return gb__ts_parse_fail_at(text, p);
            p = gb__ts_skip_ws(text, p + 1);
            if (text[p] == close) break;
        }
    }
    if (bracket) p = gb__ts_skip_ws(text, p + 1); /* past ']' */
    if (text[p] != 0) return gb__ts_parse_fail_at(text, p);
    *out = e;
    return GB_OK;
}

int gb_index_format(const gb_index_expr *e, char *buf, size_t size) {
    char tmp[64];
    size_t n = 0;
#define GB__PUT(str)                                                   \
    do {                                                               \
        const char *s_ = (str);                                        \
        for (; *s_; s_++, n++)                                         \
            if (n + 1 < size) buf[n] = *s_;                            \
    } while (0)
    GB__PUT("[");
    for (int i = 0; e && i < e->n && i < GB_MAX_INDEX_ITEMS; i++) {
        const gb_index_item *it = &e->item[i];
        if (i) GB__PUT(", ");
        switch (it->kind) {
        case GB_INDEX_KIND_INT:
            snprintf(tmp, sizeof tmp, "%lld", (long long)it->start);
            GB__PUT(tmp);
            break;
        case GB_INDEX_KIND_SLICE:
            tmp[0] = 0;
            if (it->has_start) snprintf(tmp, sizeof tmp, "%lld", (long long)it->start);
            GB__PUT(tmp);
            GB__PUT(":");
            tmp[0] = 0;
            if (it->has_stop) snprintf(tmp, sizeof tmp, "%lld", (long long)it->stop);
            GB__PUT(tmp);
            tmp[0] = 0;
            if (it->step != 1) snprintf(tmp, sizeof tmp, ":%lld", (long long)it->step);
            GB__PUT(tmp);
            break;
        case GB_INDEX_KIND_ELLIPSIS: GB__PUT("..."); break;
        case GB_INDEX_KIND_NEWAXIS: GB__PUT("None"); break;
        default: GB__PUT("<invalid>"); break;
        }
    }
    GB__PUT("]");
#undef GB__PUT
    if (size) buf[n < size ? n : size - 1] = 0;
    return (int)n;
}

/* ---- the plan ----------------------------------------------------------- */

typedef struct gb__ts_index_plan {
    int ndim_in;
    /* per input dim */
    bool selected[GB_MAX_DIMS]; /* removed by an integer index */
    bool sliced[GB_MAX_DIMS];
    int64_t first[GB_MAX_DIMS]; /* the integer index, or the slice's clamped start */
    int64_t stop[GB_MAX_DIMS];  /* slice: clamped stop */
    int64_t step[GB_MAX_DIMS];  /* slice: step (1 otherwise) */
    /* the result */
    int ndim;
    int64_t shape[GB_MAX_DIMS];
    int src_dim[GB_MAX_DIMS]; /* input dim behind each result dim, -1 for None */
} gb__ts_index_plan;

/* " (indexing shape [2, 10] with [:, 10])": appended to PyTorch's wording. */
static const char *gb__ts_index_ctx(char *buf, size_t size, int ndim, const int64_t *shape, const gb_index_expr *e) {
    char sh[160], ex[256];
    gb__shape_str(sh, sizeof sh, ndim, shape);
    gb_index_format(e, ex, sizeof ex);
    snprintf(buf, size, " (indexing shape %s with %s)", sh, ex);
    return buf;
}
#define GB__INDEX_CTX gb__ts_index_ctx((char[480]){0}, 480, ndim, shape, e)

/* Check e against a tensor of `shape` the way PyTorch's indexing does (same
 * order of checks, same wording) and describe the result. */
static gb_status gb__ts_index_plan_make(int ndim, const int64_t *shape, const gb_index_expr *e, gb__ts_index_plan *p) {
    memset(p, 0, sizeof *p);
    if (!e || e->n < 0 || e->n > GB_MAX_INDEX_ITEMS)
        return gb__fail(GB_ERR_ARG, "index: an expression has 0 to %d items, got %d", GB_MAX_INDEX_ITEMS,
                        e ? e->n : -1);
    if (ndim < 0 || ndim > GB_MAX_DIMS)
        return gb__fail(GB_ERR_SHAPE, "index: %d dimensions, at most %d are supported", ndim, GB_MAX_DIMS);
    int specified = 0, ellipses = 0;
    for (int i = 0; i < e->n; i++) {
        switch (e->item[i].kind) {
        case GB_INDEX_KIND_INT:
        case GB_INDEX_KIND_SLICE: specified++; break;
        case GB_INDEX_KIND_ELLIPSIS: ellipses++; break;
        case GB_INDEX_KIND_NEWAXIS: break;
        default: return gb__fail(GB_ERR_ARG, "index: item %d has an unknown kind %d", i, (int)e->item[i].kind);
        }
    }
    /* NumPy's wording; PyTorch 1.13 silently accepts a second ellipsis. */
    if (ellipses > 1) return gb__fail(GB_ERR_INDEX, "an index can only have a single ellipsis ('...')%s", GB__INDEX_CTX);
    /* PyTorch takes a shortcut for a lone integer or slice, with its own words for 0-dim tensors. */
    if (ndim == 0 && e->n == 1 && e->item[0].kind == GB_INDEX_KIND_INT)
        return gb__fail(GB_ERR_INDEX, "invalid index of a 0-dim tensor. Use gb_item to convert a 0-dim tensor to a "
                                      "number%s", GB__INDEX_CTX);
    if (ndim == 0 && e->n == 1 && e->item[0].kind == GB_INDEX_KIND_SLICE)
        return gb__fail(GB_ERR_INDEX, "slice() cannot be applied to a 0-dim tensor.%s", GB__INDEX_CTX);
    if (specified > ndim)
        return gb__fail(GB_ERR_INDEX, "too many indices for tensor of dimension %d%s", ndim, GB__INDEX_CTX);

    p->ndim_in = ndim;
    int64_t out_shape[GB_MAX_DIMS + GB_MAX_INDEX_ITEMS];
    int out_src[GB_MAX_DIMS + GB_MAX_INDEX_ITEMS];
    int d = 0, pos = 0;
    for (int i = 0; i < e->n; i++) {
        const gb_index_item *it = &e->item[i];
        if (it->kind == GB_INDEX_KIND_INT) {
            int64_t n = shape[d], idx = it->start;
            /* PyTorch names the item's position in the index as the dimension. */
            if (idx < -n || idx >= n)
                return gb__fail(GB_ERR_INDEX, "index %lld is out of bounds for dimension %d with size %lld%s",
                                (long long)idx, i, (long long)n, GB__INDEX_CTX);
            p->selected[d] = true;
            p->first[d] = idx < 0 ? idx + n : idx;
            d++;
        } else if (it->kind == GB_INDEX_KIND_SLICE) {
            if (it->step == 0) return gb__fail(GB_ERR_ARG, "slice step cannot be zero%s", GB__INDEX_CTX);
            if (it->step < 0) return gb__fail(GB_ERR_ARG, "step must be greater than zero%s", GB__INDEX_CTX);
            int64_t n = shape[d];
            /* Python's slice clamping (step > 0). */
            int64_t s = it->has_start ? it->start : 0, t = it->has_stop ? it->stop : n;
            if (s < 0) s = s + n < 0 ? 0 : s + n;
            if (s > n) s = n;
            if (t < 0) t = t + n < 0 ? 0 : t + n;
            if (t > n) t = n;
            int64_t len = t > s ? (t - s - 1) / it->step + 1 : 0;
            p->sliced[d] = true;
            p->first[d] = s;
            p->stop[d] = t;
            /* A step past the end takes one element; capping it keeps stride
             * arithmetic from overflowing and changes nothing else. */
            p->step[d] = it->step > n ? (n > 0 ? n : 1) : it->step;
            out_src[pos] = d;
            out_shape[pos++] = len;
            d++;
        } else if (it->kind == GB_INDEX_KIND_ELLIPSIS) {
            for (int k = ndim - specified; k > 0; k--, d++) {
                out_src[pos] = d;
                out_shape[pos++] = shape[d];
            }
        } else {
            out_src[pos] = -1;
            out_shape[pos++] = 1;
        }
    }
    for (; d < ndim; d++) {
        out_src[pos] = d;
        out_shape[pos++] = shape[d];
    }
    for (int k = 0; k < ndim; k++)
        if (!p->sliced[k]) p->step[k] = 1;
    if (pos > GB_MAX_DIMS)
        return gb__fail(GB_ERR_SHAPE, "index: the result would have %d dimensions, at most %d are supported%s", pos,
                        GB_MAX_DIMS, GB__INDEX_CTX);
    p->ndim = pos;
    memcpy(p->shape, out_shape, sizeof(int64_t) * (size_t)pos);
    memcpy(p->src_dim, out_src, sizeof(int) * (size_t)pos);
    return GB_OK;
}

/* The region of the plan inside a tensor laid out with `stride` and `offset`. */
static void gb__ts_index_region(const gb__ts_index_plan *p, const int64_t *stride, int64_t offset, int64_t *rstride,
                             int64_t *roffset) {
    for (int d = 0; d < p->ndim_in; d++)
        if (p->selected[d] || p->sliced[d]) offset += p->first[d] * stride[d];
    for (int k = 0; k < p->ndim; k++) rstride[k] = p->src_dim[k] < 0 ? 0 : stride[p->src_dim[k]] * p->step[p->src_dim[k]];
    *roffset = offset;
}

gb_status gb_index_shape(int ndim, const int64_t *shape, const gb_index_expr *e, int *out_ndim, int64_t *out_shape) {
    gb__ts_index_plan p;
    *out_ndim = 0;
    for (int i = 0; i < ndim && i < GB_MAX_DIMS; i++)
        if (shape[i] < 0) {
            char b[160];
            return gb__fail(GB_ERR_SHAPE, "index: negative size in shape %s", gb__shape_str(b, 160, ndim, shape));
        }
    gb_status st = gb__ts_index_plan_make(ndim, shape, e, &p);
    if (st) return st;
    *out_ndim = p.ndim;
    memcpy(out_shape, p.shape, sizeof(int64_t) * (size_t)p.ndim);
    return GB_OK;
}

/* ---- the view ----------------------------------------------------------- */

/* r = call(cur) where cur is the view so far (t before the first step). */
#define GB__STEP(call)                       \
    do {                                     \
        gb_tensor *cur = r ? r : t;          \
        gb_tensor *next_ = (call);           \
        gb_tensor_free(r);                   \
        if (!(r = next_)) return NULL;       \
    } while (0)

gb_tensor *gb_index_expr_apply(gb_tensor *t, const gb_index_expr *e) {
    gb__ts_index_plan p;
    if (gb__ts_index_plan_make(t->ndim, t->shape, e, &p)) return NULL;
    /* Slices keep the dims in place, selects go from the last dim so the
     * earlier numbers stay valid, new axes go in at their final positions in
     * increasing order: no intermediate view has more dims than the input or
     * the result. Each step is an ordinary view, so autograd sees a chain of
     * VIEW ops. */
    gb_tensor *r = NULL;
    for (int d = 0; d < p.ndim_in; d++)
        if (p.sliced[d]) GB__STEP(gb_slice(cur, d, p.first[d], p.stop[d], p.step[d]));
    for (int d = p.ndim_in - 1; d >= 0; d--)
        if (p.selected[d]) GB__STEP(gb_select(cur, d, p.first[d]));
    for (int k = 0; k < p.ndim; k++)
        if (p.src_dim[k] < 0) GB__STEP(gb_unsqueeze(cur, k));
    if (!r) r = gb_expand(t, t->ndim, t->shape); /* t[...] and t[()] are views too */
    return r;
}
#undef GB__STEP

gb_tensor *gb_index(gb_tensor *t, const char *expr) {
    gb_index_expr e;
    if (gb_index_parse(expr, &e)) return NULL;
    return gb_index_expr_apply(t, &e);
}

/* ---- assignment --------------------------------------------------------- */

static bool gb__ts_is_float(gb_dtype dt) { return dt == GB_DTYPE_F32 || dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16; }

/* v's shape without leading 1s (PyTorch's setitem drops them), checked to
 * broadcast to the region; PyTorch's expand wording. */
static gb_status gb__ts_index_value_shape(const gb__ts_index_plan *p, const gb_tensor *v, int *vnd, int64_t *vshape) {
    int lead = 0;
    while (lead < v->ndim && v->shape[lead] == 1) lead++;
    *vnd = v->ndim - lead;
    memcpy(vshape, v->shape + lead, sizeof(int64_t) * (size_t)*vnd);
    char b1[160], b2[160];
    if (*vnd > p->ndim)
        return gb__fail(GB_ERR_SHAPE,
                        "index_put_: expand(%s%s, size=%s): the number of sizes provided (%d) must be greater or "
                        "equal to the number of dimensions in the tensor (%d)",
                        gb_dtype_name(v->dtype), gb__shape_str(b1, 160, v->ndim, v->shape),
                        gb__shape_str(b2, 160, p->ndim, p->shape), p->ndim, *vnd);
    for (int i = p->ndim - 1; i >= 0; i--) {
        int j = i - (p->ndim - *vnd);
        int64_t have = j >= 0 ? vshape[j] : 1;
        if (have != p->shape[i] && have != 1)
            return gb__fail(GB_ERR_SHAPE,
                            "index_put_: The expanded size of the tensor (%lld) must match the existing size (%lld) at "
                            "non-singleton dimension %d.  Target sizes: %s.  Tensor sizes: %s",
                            (long long)p->shape[i], (long long)have, i, gb__shape_str(b1, 160, p->ndim, p->shape),
                            gb__shape_str(b2, 160, *vnd, vshape));
    }
    return GB_OK;
}

/* Write v (broadcast) into t's region. The region and the value are read
 * through stack copies of the handles with another geometry: they never own
 * anything, and the write needs no allocation that could fail halfway. */
static gb_status gb__ts_index_write(gb_tensor *t, const gb__ts_index_plan *p, const gb_tensor *v, int vnd) {
    gb_tensor region = *t, value = *v;
    region.ndim = p->ndim;
    memcpy(region.shape, p->shape, sizeof region.shape);
    gb__ts_index_region(p, t->stride, t->offset, region.stride, &region.offset);
    int lead = v->ndim - vnd;
    value.ndim = vnd;
    memmove(value.shape, v->shape + lead, sizeof(int64_t) * (size_t)vnd);
    memmove(value.stride, v->stride + lead, sizeof(int64_t) * (size_t)vnd);
    return gb__ts_copy_into(&region, &value);
}

/* A set of tensor pointers (open addressing) for walking a graph once. */
typedef struct gb__ts_ptr_set {
    size_t cap, len;
    const void **slot;
} gb__ts_ptr_set;

/* Insert p: 1 when new, 0 when it was already there, -1 when out of memory. */
static int gb__ts_ptr_set_add(gb__ts_ptr_set *s, const void *p) {
    if (2 * (s->len + 1) > s->cap) {
        gb__ts_ptr_set bigger = {s->cap ? 2 * s->cap : 64, 0, NULL};
        bigger.slot = gb__calloc(bigger.cap, sizeof *bigger.slot, "index_put_: walking the graph");
        if (!bigger.slot) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) gb__ts_ptr_set_add(&bigger, s->slot[i]);
        free(s->slot);
        *s = bigger;
    }
    size_t i = ((uintptr_t)p >> 4) * 0x9e3779b97f4a7c15ull % s->cap;
    for (; s->slot[i]; i = (i + 1) % s->cap)
        if (s->slot[i] == p) return false;
    s->slot[i] = p;
    s->len++;
    return 1;
}

/* The nodes reachable from `start` with an edge to `from` (*hits, stb_ds),
 * found before the write so that redirecting them cannot fail. */
static gb_status gb__ts_edges_into(gb_tensor *start, const gb_tensor *from, gb_tensor ***hits) {
    const char *what = "index_put_: walking the graph";
    gb__ts_ptr_set seen = {0};
    gb_tensor **stack = NULL;
    bool ok = GB_ARR_PUT(stack, start, what) && gb__ts_ptr_set_add(&seen, start) >= 0;
    while (ok && arrlen(stack) > 0) {
        gb_tensor *n = arrpop(stack);
        bool hit = false;
        for (int i = 0; ok && i < n->nsrc; i++) {
            if (n->src[i] == from) {
                hit = true;
                continue;
            }
            int added = gb__ts_ptr_set_add(&seen, n->src[i]);
            ok = added >= 0 && (!added || GB_ARR_PUT(stack, n->src[i], what));
        }
        ok = ok && (!hit || GB_ARR_PUT(*hits, n, what));
    }
    arrfree(stack);
    free(seen.slot);
    return ok ? GB_OK : GB_ERR_ALLOC;
}

static gb_status gb__ts_check_record(const gb_tensor *t) {
    if (t->requires_grad && t->nsrc == 0 && !t->graph_freed)
        return gb__fail(GB_ERR_AUTOGRAD,
                        "index_put_: a leaf Variable that requires grad is being used in an in-place operation "
                        "(tensor %s); write under gb_no_grad_begin, or into a clone",
                        GB__SHAPE_STR(t));
    if (t->op == GB_OP_VIEW && t->requires_grad) {
        const gb_tensor *base = t;
        while (base->op == GB_OP_VIEW && base->nsrc > 0) base = base->src[0];
        if (base->nsrc == 0 && !base->graph_freed)
            return gb__fail(GB_ERR_AUTOGRAD,
                            "index_put_: a view of a leaf Variable that requires grad is being used in an in-place "
                            "operation (view %s); write under gb_no_grad_begin, or into a clone",
                            GB__SHAPE_STR(t));
        return gb__fail(GB_ERR_AUTOGRAD,
                        "index_put_: in-place assignment into a view (%s) of a tensor that requires grad is not "
                        "supported: autograd would not see the write through the base tensor; index the base "
                        "tensor itself, or assign into a clone of the view",
                        GB__SHAPE_STR(t));
    }
    return GB_OK;
}

gb_status gb_index_put_expr_(gb_tensor *t, const gb_index_expr *e, gb_tensor *v) {
    gb__ts_index_plan p;
    int vnd;
    int64_t vshape[GB_MAX_DIMS];
    gb_status st = gb__ts_index_plan_make(t->ndim, t->shape, e, &p);
    if (st) return st;
    if ((st = gb__ts_index_value_shape(&p, v, &vnd, vshape))) return st;
    bool record = gb__ts_grad_mode() && (t->requires_grad || v->requires_grad) && gb__ts_is_float(t->dtype);
    if (record && (st = gb__ts_check_record(t))) return st;

    /* Everything that can fail happens before the write. */
    gb_tensor *old = NULL, **src = NULL, *tmp = NULL, **hits = NULL;
    uint32_t *src_version = NULL;
    gb_index_expr *ctx = NULL;
    if (record) {
        old = gb__ts_tensor_shell("index_put_");
        src = gb__calloc(2, sizeof *src, "index_put_");
        src_version = gb__calloc(2, sizeof *src_version, "index_put_");
        ctx = gb__malloc(sizeof *ctx, "index_put_");
        if (!old || !src || !src_version || !ctx) {
            st = GB_ERR_ALLOC;
            goto fail;
        }
        /* A value computed from t (t[:, 0] = t[:, 1]) read t before the
         * write: its history must lead to `old`, or the graph would loop
         * through t. */
        if (v != t && v->requires_grad && (st = gb__ts_edges_into(v, t, &hits)) != GB_OK) goto fail;
    }
    const gb_tensor *value = v;
    if (v->storage == t->storage && gb_tensor_data(v)) { /* read before written: copy first */
        bool was = gb__ts_grad_mode();
        gb__ts_set_grad_mode(false);
        tmp = gb_clone(v);
        gb__ts_set_grad_mode(was);
        if (!tmp) {
            st = gb_last_status();
            goto fail;
        }
        value = tmp;
    }
    gb__ts_index_write(t, &p, value, vnd);
    gb_tensor_free(tmp);
    gb__ts_bump_version(t);
    if (!record) return GB_OK;

    /* Rebase: `old` takes over t's history and shares its storage (the
     * backward never reads it); t becomes the INDEX_PUT node over {old, v}. */
    old->refcount = 1;
    old->dtype = t->dtype;
    old->ndim = t->ndim;
    memcpy(old->shape, t->shape, sizeof old->shape);
    memcpy(old->stride, t->stride, sizeof old->stride);
    old->offset = t->offset;
    old->storage = t->storage;
    old->storage->refcount++;
    old->op = t->op;
    old->nsrc = t->nsrc;
    old->src = t->src;
    old->src_version = t->src_version;
    old->out_version = t->out_version;
    memcpy(old->iparam, t->iparam, sizeof old->iparam);
    memcpy(old->fparam, t->fparam, sizeof old->fparam);
    old->op_ctx = t->op_ctx;
    memcpy(old->saved, t->saved, sizeof old->saved);
    old->requires_grad = t->requires_grad;
    old->graph_freed = t->graph_freed;

    *ctx = *e;
    src[0] = old;
    src[1] = v == t ? gb_tensor_ref(old) : gb_tensor_ref(v);
    t->op = GB_OP_INDEX_PUT;
    t->nsrc = 2;
    t->src = src;
    t->src_version = src_version;
    memset(t->iparam, 0, sizeof t->iparam);
    memset(t->fparam, 0, sizeof t->fparam);
    t->op_ctx = ctx;
    t->saved[0] = t->saved[1] = NULL;
    t->requires_grad = true;
    t->graph_freed = false;
    for (ptrdiff_t h = 0; h < arrlen(hits); h++)
        for (int i = 0; i < hits[h]->nsrc; i++)
            if (hits[h]->src[i] == t) {
                hits[h]->src[i] = gb_tensor_ref(old);
                gb_tensor_free(t); /* the caller still holds t */
            }
    arrfree(hits);
    for (int i = 0; i < 2; i++) src_version[i] = src[i]->storage->version;
    t->out_version = t->storage->version;
    return GB_OK;

fail:
    arrfree(hits);
    gb_tensor_free(old);
    free(src);
    free(src_version);
    free(ctx);
    return st;
}

gb_status gb_index_put_(gb_tensor *t, const char *expr, gb_tensor *v) {
    gb_index_expr e;
    gb_status st = gb_index_parse(expr, &e);
    return st ? st : gb_index_put_expr_(t, &e, v);
}

gb_status gb_index_fill_(gb_tensor *t, const char *expr, float value) {
    gb_index_expr e;
    gb_status st = gb_index_parse(expr, &e);
    if (st) return st;
    gb_tensor *v = gb_scalar_tensor(value);
    if (!v) return gb_last_status();
    st = gb_index_put_expr_(t, &e, v);
    gb_tensor_free(v);
    return st;
}

/* ---- INDEX_PUT ---------------------------------------------------------- */

/* The write is done by gb_index_put_expr_ before the node exists (the node is
 * the written tensor itself, rebased), so gb__ts_op_run never runs this. */
gb_status gb__ts_op_INDEX_PUT_forward(gb_tensor *out) {
    (void)out;
    return GB_OK;
}

/* d(old) = dout with the region zeroed; d(v) = dout[region] summed over the
 * dims v was broadcast along. No data is read but dout. */
gb_status gb__ts_op_INDEX_PUT_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    const gb_index_expr *e = out->op_ctx;
    gb__ts_index_plan p;
    gb_status st = gb__ts_index_plan_make(out->ndim, out->shape, e, &p);
    if (st) return st;
    int64_t cstride[GB_MAX_DIMS], rstride[GB_MAX_DIMS], roff;
    gb__ts_contiguous_strides(out->ndim, out->shape, cstride);
    gb__ts_index_region(&p, cstride, 0, rstride, &roff);
    const float *dy = gb_tensor_data(dout); /* [out numel] */
    int64_t n = gb_tensor_numel(out);
    if (dsrc[0]) {
        float *dold = gb_tensor_data(dsrc[0]); /* [out numel] */
        unsigned char *written = gb__calloc((size_t)(n ? n : 1), 1, "index_put_ backward"); /* [out numel] */
        if (!written) return GB_ERR_ALLOC;
        gb__ts_iter it;
        gb__ts_iter_init(&it, p.ndim, p.shape, 1, (const int64_t *[]){rstride});
        for (int64_t i = 0; i < it.n; i++, gb__ts_iter_next(&it)) written[roff + it.off[0]] = 1;
        for (int64_t i = 0; i < n; i++)
            if (!written[i]) dold[i] += dy[i];
        free(written);
    }
    if (dsrc[1]) {
        const gb_tensor *v = out->src[1];
        float *dv = gb_tensor_data(dsrc[1]); /* [v numel] */
        int vnd;
        int64_t vshape[GB_MAX_DIMS], vcs[GB_MAX_DIMS], vstride[GB_MAX_DIMS];
        if ((st = gb__ts_index_value_shape(&p, v, &vnd, vshape))) return st;
        gb__ts_contiguous_strides(vnd, vshape, vcs);
        for (int k = 0; k < p.ndim; k++) { /* 0 where v was broadcast: the scatter sums */
            int j = k - (p.ndim - vnd);
            vstride[k] = (j < 0 || vshape[j] != p.shape[k]) ? 0 : vcs[j];
        }
        gb__ts_iter it;
        gb__ts_iter_init(&it, p.ndim, p.shape, 2, (const int64_t *[]){rstride, vstride});
        for (int64_t i = 0; i < it.n; i++, gb__ts_iter_next(&it)) dv[it.off[1]] += dy[roff + it.off[0]];
    }
    return GB_OK;
}
