/* Printing tensors: gb_tensor_describe (one line) and gb_tensor_str (torch's format). */
#include "tensor_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

char *gb_tensor_describe(const gb_tensor *t) {
    char shape[160], *out = malloc(256);
    if (!out) return gb__fail_null(GB_ERR_ALLOC, "tensor_describe: out of memory");
    snprintf(out, 256, "%s%s%s%s%s", gb_dtype_name(t->dtype), gb__shape_str(shape, sizeof shape, t->ndim, t->shape),
             gb_tensor_is_contiguous(t) ? "" : " strided", gb__is_meta(t) ? " meta" : "",
             t->requires_grad ? " requires_grad" : "");
    return out;
}

/* ---- gb_tensor_str: a port of torch/_tensor_str.py ---------------------- */

/* PyTorch's default print options. */
#define GB__PRINT_PRECISION 4
#define GB__PRINT_THRESHOLD 1000
#define GB__PRINT_EDGEITEMS 3
#define GB__PRINT_LINEWIDTH 80

/* A growing string; `failed` sticks after the first allocation failure. */
typedef struct gb__ts_sbuf {
    char *s;
    size_t len, cap;
    bool failed;
} gb__ts_sbuf;

static void gb__ts_sb_putn(gb__ts_sbuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void gb__ts_sb_puts(gb__ts_sbuf *b, const char *s) { gb__ts_sb_putn(b, s, strlen(s)); }
static void gb__ts_sb_spaces(gb__ts_sbuf *b, int n) {
    for (int i = 0; i < n; i++) gb__ts_sb_putn(b, " ", 1);
}

/* Python's str() of a shape tuple: "()", "(5,)", "(2, 3)". */
static void gb__ts_sb_tuple(gb__ts_sbuf *b, int ndim, const int64_t *shape) {
    char num[32];
    gb__ts_sb_puts(b, "(");
    for (int i = 0; i < ndim; i++) {
        snprintf(num, sizeof num, "%s%lld", i ? ", " : "", (long long)shape[i]);
        gb__ts_sb_puts(b, num);
    }
    gb__ts_sb_puts(b, ndim == 1 ? ",)" : ")");
}

static bool gb__ts_print_is_float(gb_dtype dt) {
    return dt == GB_DTYPE_F32 || dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16;
}

/* One element as a double (floats) or an integer (the rest). */
static double gb__ts_print_f(const gb_tensor *t, int64_t off) {
    return (double)gb__ts_load_f32(gb_tensor_data(t), t->dtype, off);
}
static long long gb__ts_print_i(const gb_tensor *t, int64_t off) {
    const void *d = gb_tensor_data(t);
    switch (t->dtype) {
    case GB_DTYPE_I64: return (long long)((const int64_t *)d)[off];
    case GB_DTYPE_I32: return ((const int32_t *)d)[off];
    default: return ((const uint8_t *)d)[off];
    }
}

/* _Formatter */
typedef struct gb__ts_fmt {
    const gb_tensor *t;
    bool floating, int_mode, sci_mode;
    int max_width;
} gb__ts_fmt;

/* Python's format of a float with 'e', 'f' (precision prec) or ".0f";
 * Python spells every NaN "nan" where C may write "-nan". */
static int gb__ts_fmt_float(char *buf, size_t size, double v, char conv, int prec) {
    if (isnan(v)) return snprintf(buf, size, "nan");
    if (isinf(v)) return snprintf(buf, size, v < 0 ? "-inf" : "inf");
    return conv == 'e' ? snprintf(buf, size, "%.*e", prec, v) : snprintf(buf, size, "%.*f", prec, v);
}

static int gb__ts_fmt_value(const gb__ts_fmt *f, int64_t off, char *buf, size_t size) {
    char s[512];
    int n;
    if (f->floating) {
        double v = gb__ts_print_f(f->t, off);
        if (f->sci_mode) n = gb__ts_fmt_float(s, sizeof s, v, 'e', GB__PRINT_PRECISION);
        else if (f->int_mode) {
            n = gb__ts_fmt_float(s, sizeof s, v, 'f', 0);
            if (isfinite(v)) s[n++] = '.', s[n] = 0;
        } else n = gb__ts_fmt_float(s, sizeof s, v, 'f', GB__PRINT_PRECISION);
    } else if (f->t->dtype == GB_DTYPE_BOOL) {
        n = snprintf(s, sizeof s, "%s", gb__ts_print_i(f->t, off) ? "True" : "False");
    } else {
        n = snprintf(s, sizeof s, "%lld", gb__ts_print_i(f->t, off));
    }
    size_t pad = f->max_width > n ? (size_t)(f->max_width - n) : 0, len = (size_t)n;
    if (pad + len + 1 > size) pad = 0; /* widths come from these same strings: cannot happen */
    memset(buf, ' ', pad);
    memcpy(buf + pad, s, len + 1);
    return (int)(pad + len);
}

/* Offsets of the elements get_summarized_data keeps (all of them unless
 * summarising), in row-major order. */
static bool gb__ts_summarized_offsets(const gb_tensor *t, int dim, int64_t off, bool summarize, int64_t **out) {
    if (dim == t->ndim) return GB_ARR_PUT(*out, off, "tensor_str");
    int64_t n = t->shape[dim];
    for (int64_t i = 0; i < n; i++) {
        if (summarize && n > 2 * GB__PRINT_EDGEITEMS && i == GB__PRINT_EDGEITEMS) i = n - GB__PRINT_EDGEITEMS;
        if (!gb__ts_summarized_offsets(t, dim + 1, off + i * t->stride[dim], summarize, out)) return false;
    }
    return true;
}

static void gb__ts_fmt_init(gb__ts_fmt *f, const gb_tensor *t, const int64_t *offs, int64_t n) {
    *f = (gb__ts_fmt){.t = t, .floating = gb__ts_print_is_float(t->dtype), .int_mode = true, .max_width = 1};
    char s[512];
    if (!f->floating) {
        for (int64_t i = 0; i < n; i++) {
            int w = t->dtype == GB_DTYPE_BOOL ? (gb__ts_print_i(t, offs[i]) ? 4 : 5)
                                              : snprintf(s, sizeof s, "%lld", gb__ts_print_i(t, offs[i]));
            if (w > f->max_width) f->max_width = w;
        }
        return;
    }
    double mn = INFINITY, mx = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = gb__ts_print_f(t, offs[i]);
        if (!isfinite(v) || v == 0) continue;
        count++;
        if (fabs(v) < mn) mn = fabs(v);
        if (fabs(v) > mx) mx = fabs(v);
        if (v != ceil(v)) f->int_mode = false;
    }
    if (count == 0) return; /* no valid number: width 1, int mode */
    f->sci_mode = mx / mn > 1000.0 || mx > 1.0e8 || (!f->int_mode && mn < 1.0e-4);
    for (int64_t i = 0; i < n; i++) {
        double v = gb__ts_print_f(t, offs[i]);
        if (!isfinite(v) || v == 0) continue;
        int w;
        if (f->sci_mode) w = gb__ts_fmt_float(s, sizeof s, v, 'e', GB__PRINT_PRECISION);
        else if (f->int_mode) w = gb__ts_fmt_float(s, sizeof s, v, 'f', 0) + 1;
        else w = gb__ts_fmt_float(s, sizeof s, v, 'f', GB__PRINT_PRECISION);
        if (w > f->max_width) f->max_width = w;
    }
}

/* _vector_str */
static void gb__ts_vector_str(gb__ts_sbuf *b, const gb__ts_fmt *f, int64_t off, int64_t n, int64_t stride, int indent,
                           bool summarize) {
    int element_length = f->max_width + 2;
    int per_line = (GB__PRINT_LINEWIDTH - indent) / element_length;
    if (per_line < 1) per_line = 1;
    char s[512];
    gb__ts_sb_puts(b, "[");
    int64_t k = 0; /* position in the list of printed items, " ..." included */
    for (int64_t i = 0; i < n; i++, k++) {
        if (k > 0) {
            gb__ts_sb_puts(b, ",");
            if (k % per_line == 0) {
                gb__ts_sb_puts(b, "\n");
                gb__ts_sb_spaces(b, indent + 1);
            } else {
                gb__ts_sb_puts(b, " ");
            }
        }
        if (summarize && n > 2 * GB__PRINT_EDGEITEMS && i == GB__PRINT_EDGEITEMS) {
            gb__ts_sb_puts(b, " ...");
            i = n - GB__PRINT_EDGEITEMS - 1;
            continue;
        }
        gb__ts_fmt_value(f, off + i * stride, s, sizeof s);
        gb__ts_sb_puts(b, s);
    }
    gb__ts_sb_puts(b, "]");
}

/* _tensor_str_with_formatter */
static void gb__ts_tensor_str_rec(gb__ts_sbuf *b, const gb__ts_fmt *f, int dim, int64_t off, int indent, bool summarize) {
    const gb_tensor *t = f->t;
    int left = t->ndim - dim;
    if (left == 0) {
        char s[512];
        gb__ts_fmt_value(f, off, s, sizeof s);
        gb__ts_sb_puts(b, s);
        return;
    }
    if (left == 1) {
        gb__ts_vector_str(b, f, off, t->shape[dim], t->stride[dim], indent, summarize);
        return;
    }
    int64_t n = t->shape[dim];
    gb__ts_sb_puts(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (i > 0) {
            gb__ts_sb_puts(b, ",");
            for (int k = 0; k < left - 1; k++) gb__ts_sb_puts(b, "\n");
            gb__ts_sb_spaces(b, indent + 1);
        }
        if (summarize && n > 2 * GB__PRINT_EDGEITEMS && i == GB__PRINT_EDGEITEMS) {
            gb__ts_sb_puts(b, "...");
            i = n - GB__PRINT_EDGEITEMS - 1;
            continue;
        }
        gb__ts_tensor_str_rec(b, f, dim + 1, off + i * t->stride[dim], indent + 1, summarize);
    }
    gb__ts_sb_puts(b, "]");
}

/* _add_suffixes */
static void gb__ts_add_suffixes(gb__ts_sbuf *b, char **suffixes, int n, int indent) {
    const char *nl = b->s ? strrchr(b->s, '\n') : NULL;
    /* Python's len(s) - s.rfind("\n") + 1, with rfind = -1 when absent. */
    long last_line_len = (long)b->len - (nl ? (long)(nl - b->s) : -1) + 1;
    for (int i = 0; i < n; i++) {
        long len = (long)strlen(suffixes[i]);
        if (last_line_len + len + 2 > GB__PRINT_LINEWIDTH) {
            gb__ts_sb_puts(b, ",\n");
            gb__ts_sb_spaces(b, indent);
            last_line_len = indent + len;
        } else {
            gb__ts_sb_puts(b, ", ");
            last_line_len += len + 2;
        }
        gb__ts_sb_puts(b, suffixes[i]);
    }
    gb__ts_sb_puts(b, ")");
}

char *gb_tensor_str(const gb_tensor *t) {
    static const char prefix[] = "tensor(";
    const int indent = (int)sizeof prefix - 1;
    gb__ts_sbuf b = {0}, size = {0};
    char dtype[64], *suffixes[3];
    int nsuf = 0;
    int64_t numel = gb_tensor_numel(t);
    snprintf(dtype, sizeof dtype, "dtype=torch.%s", gb_dtype_name(t->dtype));
    gb__ts_sb_puts(&size, "size=");
    gb__ts_sb_tuple(&size, t->ndim, t->shape);
    gb__ts_sb_puts(&b, prefix);
    if (numel > 0 && (gb__is_meta(t) || !gb_tensor_data(t))) { /* shape only */
        gb__ts_sb_puts(&b, "...");
        suffixes[nsuf++] = "device='meta'";
        suffixes[nsuf++] = size.s;
        if (t->dtype != GB_DTYPE_F32) suffixes[nsuf++] = dtype;
    } else if (numel == 0) {
        gb__ts_sb_puts(&b, "[]");
        if (t->ndim != 1) suffixes[nsuf++] = size.s; /* NumPy shows any shape but (0,) */
        if (t->dtype != GB_DTYPE_F32) suffixes[nsuf++] = dtype;
    } else {
        if (t->dtype != GB_DTYPE_F32 && t->dtype != GB_DTYPE_I64 && t->dtype != GB_DTYPE_BOOL)
            suffixes[nsuf++] = dtype;
        bool summarize = numel > GB__PRINT_THRESHOLD;
        int64_t *offs = NULL;
        if (gb__ts_summarized_offsets(t, 0, 0, summarize, &offs)) {
            gb__ts_fmt f;
            gb__ts_fmt_init(&f, t, offs, arrlen(offs));
            gb__ts_tensor_str_rec(&b, &f, 0, 0, indent, summarize);
        } else {
            b.failed = true;
        }
        arrfree(offs);
    }
    if (size.failed) b.failed = true;
    else gb__ts_add_suffixes(&b, suffixes, nsuf, indent);
    free(size.s);
    if (b.failed) {
        free(b.s);
        return gb__fail_null(GB_ERR_ALLOC, "tensor_str: out of memory printing a tensor of shape %s", GB__SHAPE_STR(t));
    }
    return b.s;
}
