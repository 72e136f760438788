/* safetensors checkpoints: a header checked as strictly as the reference
 * implementation (huggingface/safetensors) checks it, tensors served lazily
 * from a private memory map (zero-copy when the stored dtype is the one asked
 * for), sharded checkpoints through model.safetensors.index.json, and a
 * writer that lays files out byte for byte as the reference does. */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_ds.h>

#include "../tensor/tensor_impl.h"
#include "file.h"
#include "json.h"
#include "safetensors_impl.h"

/* Tensor bytes are used in place: the format is little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

/* The reference rejects larger headers (its MAX_HEADER_SIZE). */
#define GB__ST_MAX_HEADER 100000000ull
/* An index file is JSON text we read whole; real ones are a few hundred KB. */
#define GB__ST_MAX_INDEX (256u << 20)

/* ---- dtypes --------------------------------------------------------------- */

/* The reference's Dtype enum in its declaration order, which is increasing
 * alignment: the writer sorts tensors by this position, descending, as the
 * reference does. Dtypes glassbox cannot hold (gb < 0) are accepted in
 * headers, where their sizes are checked, and refused when loaded. */
static const struct {
    const char *name;
    int size;
    int gb; /* gb_dtype, or -1 */
} gb__st_dtypes[] = {
    {"BOOL", 1, GB_DTYPE_BOOL}, {"U8", 1, GB_DTYPE_U8},     {"I8", 1, -1},
    {"F8_E5M2", 1, -1},         {"F8_E4M3", 1, -1},         {"F8_E8M0", 1, -1},
    {"I16", 2, -1},             {"U16", 2, -1},             {"F16", 2, GB_DTYPE_F16},
    {"BF16", 2, GB_DTYPE_BF16}, {"I32", 4, GB_DTYPE_I32},   {"U32", 4, -1},
    {"F32", 4, GB_DTYPE_F32},   {"C64", 8, -1},             {"F64", 8, -1},
    {"I64", 8, GB_DTYPE_I64},   {"U64", 8, -1},
};
#define GB__ST_NDTYPES ((int)(sizeof gb__st_dtypes / sizeof gb__st_dtypes[0]))

static int gb__st_dtype_find(const char *name) {
    for (int i = 0; i < GB__ST_NDTYPES; i++)
        if (!strcmp(gb__st_dtypes[i].name, name)) return i;
    return -1;
}

static int gb__st_dtype_of(gb_dtype dt) {
    for (int i = 0; i < GB__ST_NDTYPES; i++)
        if (gb__st_dtypes[i].gb == (int)dt) return i;
    return -1;
}

/* ---- mapped files --------------------------------------------------------- */

/* One file's bytes. Shared by the handle and by every zero-copy tensor cut
 * from it, so the mapping lives until the last of them is freed; the count
 * is atomic because tensors may be freed on other threads. */
typedef struct gb__st_file {
    atomic_int refs;
    bool mapped; /* else malloc'd (gb__st_safetensors_open_memory) */
    uint8_t *base;
    size_t size;
    const uint8_t *data; /* the data section: after the header */
    uint64_t data_len;
} gb__st_file;

static void gb__st_file_unref(gb__st_file *f) {
    if (!f || atomic_fetch_sub(&f->refs, 1) != 1) return;
    if (f->mapped) munmap(f->base, f->size);
    else free(f->base);
    free(f);
}

static void gb__st_file_release(void *ctx) { gb__st_file_unref(ctx); }

/* Map a file privately. Pages are writable copy-on-write so that an in-place
 * op on a zero-copy weight edits this process's copy instead of faulting;
 * the file itself is opened read-only and never changes. */
static gb__st_file *gb__st_map(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gb__fail_null(errno == ENOENT ? GB_ERR_NOT_FOUND : GB_ERR_IO, "safetensors: %s: cannot open: %s",
                             path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return gb__fail_null(GB_ERR_IO, "safetensors: %s: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return gb__fail_null(GB_ERR_IO, "safetensors: %s: not a regular file", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return gb__fail_null(GB_ERR_FORMAT,
                             "safetensors: %s: file is %zu bytes, too short for the 8-byte header length", path, size);
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (base == MAP_FAILED) return gb__fail_null(GB_ERR_IO, "safetensors: %s: cannot map: %s", path, strerror(err));
    gb__st_file *f = gb__calloc(1, sizeof *f, "safetensors");
    if (!f) {
        munmap(base, size);
        return NULL;
    }
    atomic_init(&f->refs, 1);
    f->mapped = true;
    f->base = base;
    f->size = size;
    return f;
}

/* ---- parsed headers ------------------------------------------------------- */

typedef struct gb__st_entry {
    char *name;
    int file;            /* index into the handle's files */
    int dt;              /* row of gb__st_dtypes */
    int ndim;
    size_t dim0;         /* the sizes are dims[dim0 .. dim0+ndim) */
    uint64_t begin, end; /* byte range in the file's data section */
    int order;           /* position in the header, to break ties */
} gb__st_entry;

typedef struct gb__st_header {
    gb__st_entry *entries;                    /* stb_ds array */
    int64_t *dims;                            /* stb_ds array */
    struct { char *key; int value; } *names;  /* name -> entry; keys are entries' names */
    struct { char *key; char *value; } *meta; /* __metadata__, keys copied */
} gb__st_header;

struct gb_safetensors {
    char *path;            /* as opened: file, index or directory */
    gb__st_file **files;   /* stb_ds array; entries point into it */
    char **file_paths;     /* stb_ds array, parallel to files: names them in errors */
    gb__st_header h;
};

static void gb__st_header_free(gb__st_header *h) {
    for (ptrdiff_t i = 0; i < arrlen(h->entries); i++) free(h->entries[i].name);
    arrfree(h->entries);
    arrfree(h->dims);
    shfree(h->names);
    for (ptrdiff_t i = 0; i < shlen(h->meta); i++) free(h->meta[i].value);
    shfree(h->meta);
    memset(h, 0, sizeof *h);
}

static const char *gb__st_json_type_name(const gb__json_json *j) {
    if (gb__json_is_array(j)) return "an array";
    if (gb__json_is_string(j)) return "a string";
    if (gb__json_is_number(j)) return "a number";
    if (gb__json_is_bool(j)) return "a boolean";
    if (gb__json_is_null(j)) return "null";
    return "an object";
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF), and
 * no raw control characters, which JSON allows nowhere but as whitespace.
 * Returns the offset of the first bad byte, or len. */
static size_t gb__st_check_text(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return i;
            i++;
            continue;
        }
        int n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) n = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) n = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) n = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (len - i <= (size_t)n) return i;
        for (int k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += (size_t)n + 1;
    }
    return len;
}

static bool gb__st_is_utf8(const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t bad = gb__st_check_text((const uint8_t *)s + i, n - i);
        if (bad == n - i) return true;
        if ((uint8_t)s[i + bad] >= 0x80) return false;
        i += bad + 1; /* control characters are fine in names; JSON escapes them */
    }
    return true;
}

static bool gb__st_uint(const gb__json_json *j, uint64_t *out) {
    long long v;
    if (!gb__json_int(j, &v) || v < 0) return false;
    *out = (uint64_t)v;
    return true;
}

static int gb__st_cmp_offsets(const void *pa, const void *pb) {
    const gb__st_entry *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return a->order - b->order;
}

/* An entry's sizes (dims is NULL while no tensor has a dim). */
static const int64_t *gb__st_dims(const gb__st_header *h, const gb__st_entry *e) {
    return h->dims ? h->dims + e->dim0 : NULL;
}

/* "[2, 3]" for an entry's shape (truncated past 160 bytes). */
#define GB__ST_SHAPE(h, e) gb__shape_str((char[160]){0}, 160, (e)->ndim, gb__st_dims((h), (e)))

/* Parse one tensor's entry of the header into h. */
static gb_status gb__st_parse_entry(gb__st_header *h, const char *what, const char *name, const gb__json_json *v,
                                    uint64_t data_len, int order) {
    if (!gb__json_is_object(v))
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': entry is %s, not an object", what, name,
                        gb__st_json_type_name(v));
    const char *dts = gb__json_string(gb__json_get(v, "dtype"));
    if (!dts) return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': no \"dtype\" string", what, name);
    int dt = gb__st_dtype_find(dts);
    if (dt < 0) return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': unknown dtype '%s'", what, name, dts);

    gb__json_json *shape = gb__json_get(v, "shape");
    if (!gb__json_is_array(shape))
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': no \"shape\" array", what, name);
    int ndim = gb__json_size(shape);
    size_t dim0 = (size_t)arrlen(h->dims);
    uint64_t numel = 1;
    bool overflow = false;
    for (gb__json_json *d = gb__json_first(shape); d; d = gb__json_next(d)) {
        uint64_t s;
        if (!gb__st_uint(d, &s))
            return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': shape holds %s that is not a non-negative "
                            "integer", what, name, gb__st_json_type_name(d));
        if (!GB_ARR_PUT(h->dims, (int64_t)s, "safetensors")) return GB_ERR_ALLOC;
        overflow |= __builtin_mul_overflow(numel, s, &numel);
    }
    uint64_t nbytes;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)gb__st_dtypes[dt].size, &nbytes);

    gb__json_json *off = gb__json_get(v, "data_offsets");
    uint64_t begin, end;
    if (!gb__json_is_array(off) || gb__json_size(off) != 2 || !gb__st_uint(gb__json_at(off, 0), &begin) ||
        !gb__st_uint(gb__json_at(off, 1), &end))
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': \"data_offsets\" is not a pair of "
                        "non-negative integers", what, name);

    gb__st_entry e = {.name = NULL, .dt = dt, .ndim = ndim, .dim0 = dim0, .begin = begin, .end = end, .order = order};
    if (end < begin)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu) end before they "
                        "begin", what, name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_len)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu) lie outside the "
                        "data section of %llu bytes", what, name, (unsigned long long)begin,
                        (unsigned long long)end, (unsigned long long)data_len);
    if (overflow)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': shape %s x %s overflows 64 bits", what, name,
                        GB__ST_SHAPE(h, &e), dts);
    if (end - begin != nbytes)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu) do not match shape "
                        "%s x %s = %llu bytes", what, name, (unsigned long long)begin, (unsigned long long)end,
                        GB__ST_SHAPE(h, &e), dts, (unsigned long long)nbytes);
    e.name = strdup(name);
    if (!e.name) return gb__fail(GB_ERR_ALLOC, "safetensors: %s: out of memory", what);
    if (!GB_ARR_PUT(h->entries, e, "safetensors")) {
        free(e.name);
        return GB_ERR_ALLOC;
    }
    return GB_OK;
}

static gb_status gb__st_parse_metadata(gb__st_header *h, const char *what, const gb__json_json *m) {
    if (gb__json_is_null(m)) return GB_OK; /* the reference writes None this way in some versions */
    if (!gb__json_is_object(m))
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: __metadata__ is %s, not an object of strings", what,
                        gb__st_json_type_name(m));
    for (gb__json_json *kv = gb__json_first(m); kv; kv = gb__json_next(kv)) {
        const char *key = gb__json_key(kv), *val = gb__json_string(kv);
        if (!val)
            return gb__fail(GB_ERR_FORMAT, "safetensors: %s: __metadata__ value of '%s' is %s, not a string", what,
                            key, gb__st_json_type_name(kv));
        if (GB_SH_GETI(h->meta, key) >= 0)
            return gb__fail(GB_ERR_FORMAT, "safetensors: %s: __metadata__ has key '%s' twice", what, key);
        char *copy = gb__strdup(val, "safetensors: __metadata__");
        if (!copy) return GB_ERR_ALLOC;
        if (!GB_SH_PUT(h->meta, key, copy, "safetensors: __metadata__")) return free(copy), GB_ERR_ALLOC;
    }
    return GB_OK;
}

/* Check everything the header claims against the len bytes of the file in
 * buf, and fill h (entries in data order). `what` names the file in errors.
 * On failure h is left empty. */
static gb_status gb__st_parse(const uint8_t *buf, size_t len, const char *what, gb__st_header *h) {
    memset(h, 0, sizeof *h);
    if (!GB_SH_NEW_STRDUP(h->meta, "safetensors")) return GB_ERR_ALLOC;
    if (len < 8)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: file is %zu bytes, too short for the 8-byte header length",
                        what, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
    if (n > len - 8)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: header length %llu runs past the end of the file (%zu "
                        "bytes)", what, (unsigned long long)n, len);
    if (n > GB__ST_MAX_HEADER)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: header length %llu is over the format's limit of %llu "
                        "bytes", what, (unsigned long long)n, GB__ST_MAX_HEADER);
    const char *text = (const char *)buf + 8;
    size_t bad = gb__st_check_text(buf + 8, (size_t)n);
    if (bad < n)
        return gb__fail(GB_ERR_FORMAT, "safetensors: %s: header is not valid UTF-8 JSON text (byte 0x%02x at "
                        "header offset %zu)", what, buf[8 + bad], bad);
    uint64_t data_len = len - 8 - n;

    char ctx[600];
    snprintf(ctx, sizeof ctx, "safetensors: %s: header", what);
    gb__json_json *root = gb__json_parse(text, (size_t)n, ctx);
    if (!root) return gb_last_status();
    gb_status st = GB_OK;
    /* cJSON stops after the first value; the reference refuses anything but
     * whitespace after it. "[" header "]" holds exactly one value iff so. */
    char *wrapped = gb__malloc((size_t)n + 2, "safetensors");
    if (!wrapped) {
        st = GB_ERR_ALLOC;
        goto done;
    }
    wrapped[0] = '[';
    memcpy(wrapped + 1, text, (size_t)n);
    wrapped[n + 1] = ']';
    gb__json_json *arr = gb__json_parse(wrapped, (size_t)n + 2, ctx);
    free(wrapped);
    int nvalues = arr ? gb__json_size(arr) : 0;
    gb__json_free(arr);
    if (nvalues != 1) {
        st = gb__fail(GB_ERR_FORMAT, "safetensors: %s: header has text after its JSON object", what);
        goto done;
    }
    if (!gb__json_is_object(root)) {
        st = gb__fail(GB_ERR_FORMAT, "safetensors: %s: header is %s, not a JSON object", what,
                      gb__st_json_type_name(root));
        goto done;
    }

    int order = 0;
    bool seen_meta = false;
    for (gb__json_json *m = gb__json_first(root); m; m = gb__json_next(m)) {
        const char *name = gb__json_key(m);
        if (!strcmp(name, "__metadata__")) {
            if (seen_meta) {
                st = gb__fail(GB_ERR_FORMAT, "safetensors: %s: header has __metadata__ twice", what);
                goto done;
            }
            seen_meta = true;
            if ((st = gb__st_parse_metadata(h, what, m)) != GB_OK) goto done;
            continue;
        }
        if ((st = gb__st_parse_entry(h, what, name, m, data_len, order++)) != GB_OK) goto done;
    }

    /* A name given twice is said so before the tiling below would call it
     * a tensor that overlaps itself; the map gets its indices after the sort. */
    for (ptrdiff_t i = 0; i < arrlen(h->entries); i++) {
        if (GB_SH_GETI(h->names, h->entries[i].name) >= 0) {
            st = gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor name '%s' appears twice in the header", what,
                          h->entries[i].name);
            goto done;
        }
        if (!GB_SH_PUT(h->names, h->entries[i].name, -1, "safetensors: names")) {
            st = GB_ERR_ALLOC;
            goto done;
        }
    }
    /* Like the reference: sorted by offset, the tensors must tile the data
     * section exactly, with no overlap, no hole and nothing after them. */
    if (arrlen(h->entries) > 1)
        qsort(h->entries, (size_t)arrlen(h->entries), sizeof *h->entries, gb__st_cmp_offsets);
    uint64_t at = 0;
    for (ptrdiff_t i = 0; i < arrlen(h->entries); i++) {
        gb__st_entry *e = &h->entries[i];
        if (e->begin < at) {
            gb__st_entry *p = &h->entries[i - 1];
            st = gb__fail(GB_ERR_FORMAT, "safetensors: %s: tensor '%s': data_offsets [%llu, %llu) overlap tensor "
                          "'%s' at [%llu, %llu)", what, e->name, (unsigned long long)e->begin,
                          (unsigned long long)e->end, p->name, (unsigned long long)p->begin,
                          (unsigned long long)p->end);
            goto done;
        }
        if (e->begin > at) {
            st = gb__fail(GB_ERR_FORMAT, "safetensors: %s: bytes [%llu, %llu) of the data section belong to no "
                          "tensor (the next is '%s')", what, (unsigned long long)at, (unsigned long long)e->begin,
                          e->name);
            goto done;
        }
        at = e->end;
    }
    if (at != data_len) {
        st = gb__fail(GB_ERR_FORMAT, "safetensors: %s: the data section is %llu bytes but the tensors cover only "
                      "%llu (truncated or padded file?)", what, (unsigned long long)data_len,
                      (unsigned long long)at);
        goto done;
    }
    for (ptrdiff_t i = 0; i < arrlen(h->entries); i++)
        if (!GB_SH_PUT(h->names, h->entries[i].name, (int)i, "safetensors: names")) st = GB_ERR_ALLOC; /* present: no growth */
done:
    gb__json_free(root);
    if (st != GB_OK) gb__st_header_free(h);
    return st;
}

/* ---- opening -------------------------------------------------------------- */

void gb_safetensors_free(gb_safetensors *st) {
    if (!st) return;
    for (ptrdiff_t i = 0; i < arrlen(st->files); i++) {
        gb__st_file_unref(st->files[i]);
        free(st->file_paths[i]);
    }
    arrfree(st->files);
    arrfree(st->file_paths);
    gb__st_header_free(&st->h);
    free(st->path);
    free(st);
}

static gb_safetensors *gb__st_new(const char *path) {
    gb_safetensors *st = gb__calloc(1, sizeof *st, "safetensors");
    if (!st) return NULL;
    st->path = strdup(path);
    if (!st->path) {
        free(st);
        return gb__fail_null(GB_ERR_ALLOC, "safetensors: out of memory");
    }
    return st;
}

/* Parse f's header; on success st owns f (as file number arrlen(files)). */
static gb_status gb__st_adopt(gb_safetensors *st, gb__st_file *f, const char *path, gb__st_header *h) {
    gb_status s = gb__st_parse(f->base, f->size, path, h);
    char *p = s == GB_OK ? strdup(path) : NULL;
    if (s == GB_OK && !p) {
        gb__st_header_free(h);
        s = gb__fail(GB_ERR_ALLOC, "safetensors: out of memory");
    }
    if (s != GB_OK) {
        gb__st_file_unref(f);
        return s;
    }
    uint64_t n = 0; /* the header length, checked by gb__st_parse */
    for (int i = 7; i >= 0; i--) n = n << 8 | f->base[i];
    f->data = f->base + 8 + n;
    f->data_len = f->size - 8 - n;
    int idx = (int)arrlen(st->files);
    for (ptrdiff_t i = 0; i < arrlen(h->entries); i++) h->entries[i].file = idx;
    if (!GB_ARR_PUT(st->file_paths, p, "safetensors") || !GB_ARR_PUT(st->files, f, "safetensors")) {
        if (arrlen(st->file_paths) > idx) (void)arrpop(st->file_paths);
        free(p);
        gb__st_header_free(h);
        gb__st_file_unref(f);
        return GB_ERR_ALLOC;
    }
    return GB_OK;
}

static gb_safetensors *gb__st_open_file(const char *path) {
    gb__st_file *f = gb__st_map(path);
    if (!f) return NULL;
    gb_safetensors *st = gb__st_new(path);
    if (!st) {
        gb__st_file_unref(f);
        return NULL;
    }
    if (gb__st_adopt(st, f, path, &st->h) != GB_OK) {
        gb_safetensors_free(st);
        return NULL;
    }
    return st;
}

gb_safetensors *gb__st_safetensors_open_memory(const void *data, size_t len, const char *what) {
    if (!data && len) return gb__fail_null(GB_ERR_ARG, "safetensors: %s: NULL buffer", what);
    gb__st_file *f = gb__calloc(1, sizeof *f, "safetensors");
    if (!f) return NULL;
    atomic_init(&f->refs, 1);
    f->base = gb__malloc(len, "safetensors");
    if (!f->base) {
        free(f);
        return NULL;
    }
    if (len) memcpy(f->base, data, len);
    f->size = len;
    gb_safetensors *st = gb__st_new(what);
    if (!st) {
        gb__st_file_unref(f);
        return NULL;
    }
    if (gb__st_adopt(st, f, what, &st->h) != GB_OK) {
        gb_safetensors_free(st);
        return NULL;
    }
    return st;
}

/* Read a whole (small) text file. */
static char *gb__st_slurp(const char *path, size_t max, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return gb__fail_null(errno == ENOENT ? GB_ERR_NOT_FOUND : GB_ERR_IO, "safetensors: %s: cannot open: %s",
                             path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                free(buf);
                fclose(fp);
                return gb__fail_null(GB_ERR_FORMAT, "safetensors: %s: larger than %zu bytes", path, max);
            }
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(fp);
                return gb__fail_null(GB_ERR_ALLOC, "safetensors: %s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        return gb__fail_null(GB_ERR_IO, "safetensors: %s: read error", path);
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* A shard named by the index: a relative path that stays in its directory. */
static bool gb__st_safe_shard(const char *s) {
    if (!s[0] || s[0] == '/') return false;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        p += n;
        if (*p) p++;
    }
    return true;
}

static gb_safetensors *gb__st_open_index(const char *path) {
    size_t len = 0;
    char *text = gb__st_slurp(path, GB__ST_MAX_INDEX, &len);
    if (!text) return NULL;
    char ctx[600];
    snprintf(ctx, sizeof ctx, "safetensors: %s", path);
    gb__json_json *root = gb__json_parse(text, len, ctx);
    free(text);
    if (!root) return NULL;

    gb_safetensors *st = gb__st_new(path);
    gb__st_header shard = {0};
    struct { char *key; int value; } *shard_files = NULL; /* shard name -> file index */
    gb__st_header *shard_hdrs = NULL;                       /* stb_ds array, one per file */
    char *dir = NULL;
    gb_status s = GB_OK;
    if (!st || !GB_SH_NEW_STRDUP(shard_files, "safetensors") || !GB_SH_NEW_STRDUP(st->h.meta, "safetensors")) {
        s = gb_last_status();
        goto done;
    }
    gb__json_json *map = gb__json_get(root, "weight_map");
    if (!gb__json_is_object(map)) {
        s = gb__fail(GB_ERR_FORMAT, "safetensors: %s: no \"weight_map\" object", path);
        goto done;
    }
    const char *slash = strrchr(path, '/');
    dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup("");
    if (!dir) {
        s = gb__fail(GB_ERR_ALLOC, "safetensors: out of memory");
        goto done;
    }
    for (gb__json_json *m = gb__json_first(map); m; m = gb__json_next(m)) {
        const char *name = gb__json_key(m), *file = gb__json_string(m);
        if (!file || !gb__st_safe_shard(file)) {
            s = gb__fail(GB_ERR_FORMAT, "safetensors: %s: weight_map entry '%s' is not a file name in the index's "
                         "directory", path, name);
            goto done;
        }
        if (GB_SH_GETI(st->h.names, name) >= 0) {
            s = gb__fail(GB_ERR_FORMAT, "safetensors: %s: weight_map lists '%s' twice", path, name);
            goto done;
        }
        ptrdiff_t fi = GB_SH_GETI(shard_files, file);
        if (fi < 0) {
            size_t plen = strlen(dir) + strlen(file) + 1;
            char *spath = gb__malloc(plen, "safetensors");
            if (!spath) {
                s = GB_ERR_ALLOC;
                goto done;
            }
            snprintf(spath, plen, "%s%s", dir, file);
            gb__st_file *f = gb__st_map(spath);
            s = f ? gb__st_adopt(st, f, spath, &shard) : gb_last_status();
            free(spath);
            if (s != GB_OK) goto done; /* the message names the shard's path */
            if (!GB_ARR_PUT(shard_hdrs, shard, "safetensors")) { /* shard is freed at done */
                s = GB_ERR_ALLOC;
                goto done;
            }
            memset(&shard, 0, sizeof shard);
            if (!GB_SH_PUT(shard_files, file, (int)arrlen(st->files) - 1, "safetensors")) {
                s = GB_ERR_ALLOC;
                goto done;
            }
            fi = GB_SH_GETI(shard_files, file);
            /* every shard's __metadata__, the first value of a key winning */
            gb__st_header *sh = &shard_hdrs[arrlen(shard_hdrs) - 1];
            for (ptrdiff_t k = 0; k < shlen(sh->meta); k++) {
                if (GB_SH_GETI(st->h.meta, sh->meta[k].key) >= 0) continue;
                char *v = gb__strdup(sh->meta[k].value, "safetensors: __metadata__");
                if (!v || !GB_SH_PUT(st->h.meta, sh->meta[k].key, v, "safetensors: __metadata__")) {
                    free(v);
                    s = GB_ERR_ALLOC;
                    goto done;
                }
            }
        }
        int file_idx = shard_files[fi].value;
        gb__st_header *sh = &shard_hdrs[file_idx];
        ptrdiff_t ei = GB_SH_GETI(sh->names, name);
        if (ei < 0) {
            s = gb__fail(GB_ERR_FORMAT, "safetensors: %s: weight_map puts '%s' in '%s', which has no such tensor",
                         path, name, file);
            goto done;
        }
        gb__st_entry e = sh->entries[sh->names[ei].value];
        size_t dim0 = (size_t)arrlen(st->h.dims);
        int64_t *dims = GB_ARR_ADDN(st->h.dims, (size_t)e.ndim, "safetensors");
        if (!dims) {
            s = GB_ERR_ALLOC;
            goto done;
        }
        for (int d = 0; d < e.ndim; d++) dims[d] = sh->dims[e.dim0 + (size_t)d];
        e.dim0 = dim0;
        e.order = (int)arrlen(st->h.entries);
        if (!(e.name = gb__strdup(name, "safetensors"))) {
            s = GB_ERR_ALLOC;
            goto done;
        }
        if (!GB_ARR_PUT(st->h.entries, e, "safetensors")) {
            free(e.name);
            s = GB_ERR_ALLOC;
            goto done;
        }
        if (!GB_SH_PUT(st->h.names, e.name, (int)arrlen(st->h.entries) - 1, "safetensors")) {
            s = GB_ERR_ALLOC;
            goto done;
        }
    }
done:
    for (ptrdiff_t i = 0; i < arrlen(shard_hdrs); i++) gb__st_header_free(&shard_hdrs[i]);
    arrfree(shard_hdrs);
    gb__st_header_free(&shard);
    shfree(shard_files);
    free(dir);
    gb__json_free(root);
    if (s != GB_OK) {
        gb_safetensors_free(st);
        return NULL;
    }
    return st;
}

static bool gb__st_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

gb_safetensors *gb_safetensors_open(const char *path) {
    if (!path) return gb__fail_null(GB_ERR_ARG, "safetensors: path is NULL");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return gb__fail_null(errno == ENOENT ? GB_ERR_NOT_FOUND : GB_ERR_IO, "safetensors: %s: %s", path,
                             strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path) + 48;
        char *single = gb__malloc(n, "safetensors"), *index = gb__malloc(n, "safetensors");
        gb_safetensors *st = NULL;
        if (single && index) {
            const char *sep = path[0] && path[strlen(path) - 1] == '/' ? "" : "/";
            snprintf(single, n, "%s%smodel.safetensors", path, sep);
            snprintf(index, n, "%s%smodel.safetensors.index.json", path, sep);
            if (gb__st_exists(single)) st = gb__st_open_file(single);
            else if (gb__st_exists(index)) st = gb__st_open_index(index);
            else
                gb__fail(GB_ERR_NOT_FOUND, "safetensors: %s: directory has neither model.safetensors nor "
                         "model.safetensors.index.json", path);
        }
        free(single);
        free(index);
        return st;
    }
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return gb__st_open_index(path);
    return gb__st_open_file(path);
}

/* ---- queries -------------------------------------------------------------- */

int gb_safetensors_count(const gb_safetensors *st) { return st ? (int)arrlen(st->h.entries) : 0; }

const char *gb_safetensors_name(const gb_safetensors *st, int i) {
    if (!st || i < 0 || i >= (int)arrlen(st->h.entries)) return NULL;
    return st->h.entries[i].name;
}

const char *gb_safetensors_path(const gb_safetensors *st) { return st ? st->path : NULL; }

/* stb_ds lookups write a scratch slot in the table, hence the casts from
 * const in the queries below; nothing a caller can see changes. */
static ptrdiff_t gb__st_name_index(const gb_safetensors *st, const char *name) {
    return GB_SH_GETI(((gb_safetensors *)st)->h.names, name);
}

static const gb__st_entry *gb__st_find(const gb_safetensors *st, const char *name) {
    if (!st || !name) return gb__fail_null(GB_ERR_ARG, "safetensors: NULL %s", st ? "name" : "handle");
    ptrdiff_t i = gb__st_name_index(st, name);
    if (i < 0)
        return gb__fail_null(GB_ERR_NOT_FOUND, "safetensors: %s: no tensor named '%s' (it holds %d)", st->path, name,
                             (int)arrlen(st->h.entries));
    return &st->h.entries[st->h.names[i].value];
}

bool gb_safetensors_has(const gb_safetensors *st, const char *name) {
    return st && name && gb__st_name_index(st, name) >= 0;
}

const char *gb_safetensors_stored_dtype(const gb_safetensors *st, const char *name) {
    const gb__st_entry *e = gb__st_find(st, name);
    return e ? gb__st_dtypes[e->dt].name : NULL;
}

/* Refuse what a gb_tensor cannot hold. */
static gb_status gb__st_check_loadable(const gb_safetensors *st, const gb__st_entry *e) {
    if (gb__st_dtypes[e->dt].gb < 0)
        return gb__fail(GB_ERR_UNSUPPORTED, "safetensors: %s: tensor '%s' has dtype %s, which glassbox does not "
                        "hold (it reads F32, F16, BF16, I64, I32, U8 and BOOL)", st->file_paths[e->file], e->name,
                        gb__st_dtypes[e->dt].name);
    if (e->ndim > GB_MAX_DIMS)
        return gb__fail(GB_ERR_UNSUPPORTED, "safetensors: %s: tensor '%s' has %d dimensions; glassbox supports at "
                        "most %d", st->file_paths[e->file], e->name, e->ndim, GB_MAX_DIMS);
    return GB_OK;
}

gb_status gb_safetensors_info(const gb_safetensors *st, const char *name, gb_dtype *dtype, int *ndim,
                              int64_t *shape) {
    const gb__st_entry *e = gb__st_find(st, name);
    if (!e) return gb_last_status();
    gb_status s = gb__st_check_loadable(st, e);
    if (s != GB_OK) return s;
    if (dtype) *dtype = (gb_dtype)gb__st_dtypes[e->dt].gb;
    if (ndim) *ndim = e->ndim;
    if (shape && e->ndim) memcpy(shape, gb__st_dims(&st->h, e), (size_t)e->ndim * sizeof *shape);
    return GB_OK;
}

int gb_safetensors_metadata_count(const gb_safetensors *st) { return st ? (int)shlen(st->h.meta) : 0; }

const char *gb_safetensors_metadata_key(const gb_safetensors *st, int i) {
    if (!st || i < 0 || i >= (int)shlen(st->h.meta)) return NULL;
    return st->h.meta[i].key;
}

const char *gb_safetensors_metadata(const gb_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    ptrdiff_t i = GB_SH_GETI(((gb_safetensors *)st)->h.meta, key);
    return i >= 0 ? st->h.meta[i].value : NULL;
}

/* ---- loading -------------------------------------------------------------- */

static gb_tensor *gb__st_load(gb_safetensors *st, const char *name, bool to_f32) {
    const gb__st_entry *e = gb__st_find(st, name);
    if (!e || gb__st_check_loadable(st, e) != GB_OK) return NULL;
    gb__st_file *f = st->files[e->file];
    gb_dtype stored = (gb_dtype)gb__st_dtypes[e->dt].gb;
    gb_dtype dt = to_f32 && (stored == GB_DTYPE_F16 || stored == GB_DTYPE_BF16) ? GB_DTYPE_F32 : stored;
    const int64_t *shape = gb__st_dims(&st->h, e);
    const uint8_t *src = f->data + e->begin;
    gb_tensor *t;
    if (dt == stored && (uintptr_t)src % gb_dtype_size(dt) == 0) {
        /* zero-copy: the tensor keeps the file mapped */
        atomic_fetch_add(&f->refs, 1);
        t = gb_from_blob((void *)src, e->ndim, shape, dt, gb__st_file_release, f);
        if (!t) gb__st_file_unref(f);
    } else if (dt == stored) {
        /* misaligned (the writer did not pad its header): a copy */
        t = gb_from_data(src, e->ndim, shape, dt);
    } else {
        t = gb_empty(e->ndim, shape, GB_DTYPE_F32);
        float *out = t ? gb_tensor_data(t) : NULL; /* [numel] */
        int64_t n = gb__ts_numel(e->ndim, shape);
        float (*cvt)(uint16_t) = stored == GB_DTYPE_F16 ? gb_f16_to_f32 : gb_bf16_to_f32;
        if (out) {
#pragma omp parallel for if (n > GB__PAR_MIN_WORK) num_threads(gb__threads())
            for (int64_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, src + 2 * i, 2); /* the source may be 1-aligned */
                out[i] = cvt(h);
            }
        }
    }
    if (!t) {
        gb__error_prefix("safetensors: %s: tensor '%s'", st->file_paths[e->file], e->name);
        return NULL;
    }
    if (gb_tensor_set_name(t, e->name) != GB_OK) {
        gb_tensor_free(t);
        return NULL;
    }
    return t;
}

gb_tensor *gb_safetensors_get(gb_safetensors *st, const char *name) { return gb__st_load(st, name, true); }

void gb__st_drop(gb_safetensors *st, const char *name) {
    const gb__st_entry *e = gb__st_find(st, name);
    if (!e || !st->files[e->file]->mapped) return;
    gb__st_file *f = st->files[e->file];
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)(f->data + e->begin), hi = (uintptr_t)(f->data + e->end);
    lo = (lo + page - 1) & ~(uintptr_t)(page - 1);
    hi &= ~(uintptr_t)(page - 1);
    if (lo < hi) madvise((void *)lo, hi - lo, MADV_DONTNEED); /* advice: nothing to report if refused */
}

gb_tensor *gb_safetensors_get_stored(gb_safetensors *st, const char *name) { return gb__st_load(st, name, false); }

/* ---- writing -------------------------------------------------------------- */

typedef struct gb__st_out {
    const char *name;
    gb_tensor *t;
    int dt; /* row of gb__st_dtypes */
} gb__st_out;

static int gb__st_cmp_out(const void *pa, const void *pb) {
    const gb__st_out *a = pa, *b = pb;
    if (a->dt != b->dt) return b->dt - a->dt; /* larger alignment first */
    return strcmp(a->name, b->name);          /* bytewise, as Rust compares str */
}

/* Append n bytes of s; false when out of memory. */
static bool gb__st_put(char **buf, const char *s, size_t n) {
    char *at = GB_ARR_ADDN(*buf, n, "safetensors_save: header");
    if (at) memcpy(at, s, n);
    return at != NULL;
}

static bool gb__st_put_raw(char **buf, const char *s) { return gb__st_put(buf, s, strlen(s)); }

/* Append s as a JSON string the way serde_json writes it: ", \ and control
 * characters escaped (short forms where JSON has them), the rest verbatim. */
static bool gb__st_put_string(char **buf, const char *s) {
    bool ok = gb__st_put_raw(buf, "\"");
    for (const unsigned char *p = (const unsigned char *)s; ok && *p; p++) {
        const char *esc = NULL;
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        char u[8];
        if (!esc && *p < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", *p);
            esc = u;
        }
        ok = esc ? gb__st_put_raw(buf, esc) : gb__st_put(buf, (const char *)p, 1);
    }
    return ok && gb__st_put_raw(buf, "\"");
}

static bool gb__st_put_fmt(char **buf, const char *fmt, unsigned long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    return gb__st_put(buf, tmp, (size_t)n);
}

/* The header text, padded with spaces to a multiple of 8 like the
 * reference; NULL when out of memory. */
static char *gb__st_header_text(const gb__st_out *out, int n, const char *const *metadata) {
    char *buf = NULL;
    bool ok = gb__st_put_raw(&buf, "{");
    if (ok && metadata && metadata[0]) {
        ok = gb__st_put_raw(&buf, "\"__metadata__\":{");
        for (int i = 0; ok && metadata[i]; i += 2)
            ok = (!i || gb__st_put_raw(&buf, ",")) && gb__st_put_string(&buf, metadata[i]) && gb__st_put_raw(&buf, ":") &&
                 gb__st_put_string(&buf, metadata[i + 1]);
        ok = ok && gb__st_put_raw(&buf, n ? "}," : "}");
    }
    uint64_t at = 0;
    for (int i = 0; ok && i < n; i++) {
        const gb_tensor *t = out[i].t;
        ok = (!i || gb__st_put_raw(&buf, ",")) && gb__st_put_string(&buf, out[i].name) &&
             gb__st_put_raw(&buf, ":{\"dtype\":\"") && gb__st_put_raw(&buf, gb__st_dtypes[out[i].dt].name) &&
             gb__st_put_raw(&buf, "\",\"shape\":[");
        for (int d = 0; ok && d < gb_tensor_ndim(t); d++)
            ok = gb__st_put_fmt(&buf, d ? ",%llu" : "%llu", (unsigned long long)gb_tensor_dim(t, d));
        uint64_t nbytes = (uint64_t)gb_tensor_numel(t) * (uint64_t)gb__st_dtypes[out[i].dt].size;
        ok = ok && gb__st_put_fmt(&buf, "],\"data_offsets\":[%llu,", at) && gb__st_put_fmt(&buf, "%llu]}", at + nbytes);
        at += nbytes;
    }
    ok = ok && gb__st_put_raw(&buf, "}");
    while (ok && arrlen(buf) % 8) ok = gb__st_put_raw(&buf, " ");
    if (!ok) arrfree(buf);
    return buf;
}

static bool gb__st_is_float(gb_dtype dt) {
    return dt == GB_DTYPE_F32 || dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16;
}

static int gb__st_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Check the arguments of gb_safetensors_save; fill out (unsorted). */
static gb_status gb__st_save_args(const char *path, int n, const char *const *names, gb_tensor *const *tensors,
                                  gb_dtype dtype, const char *const *metadata, gb__st_out *out) {
    if (!path) return gb__fail(GB_ERR_ARG, "safetensors save: path is NULL");
    if (!gb__st_is_float(dtype))
        return gb__fail(GB_ERR_ARG, "safetensors save: %s: dtype must be float32, float16 or bfloat16, not %s "
                        "(integer tensors keep their own dtype)", path, gb_dtype_name(dtype));
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return gb__fail(GB_ERR_ARG, "safetensors save: %s: %d tensors with NULL names or tensors", path, n);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !tensors[i])
            return gb__fail(GB_ERR_ARG, "safetensors save: %s: %s %d is NULL", path, names[i] ? "tensor" : "name",
                            i);
        if (!strcmp(names[i], "__metadata__") || !gb__st_is_utf8(names[i]))
            return gb__fail(GB_ERR_ARG, "safetensors save: %s: tensor name '%s' is %s", path, names[i],
                            gb__st_is_utf8(names[i]) ? "reserved for the metadata" : "not valid UTF-8");
        if (!gb_tensor_data(tensors[i]) && gb_tensor_numel(tensors[i]) > 0)
            return gb__fail(GB_ERR_ARG, "safetensors save: %s: tensor '%s' has no data (a meta tensor)", path,
                            names[i]);
        gb_dtype t = gb_tensor_dtype(tensors[i]);
        out[i] = (gb__st_out){names[i], tensors[i], gb__st_dtype_of(gb__st_is_float(t) ? dtype : t)};
    }
    if (n > 1) {
        const char **sorted = gb__malloc((size_t)n * sizeof *sorted, "safetensors save");
        if (!sorted) return GB_ERR_ALLOC;
        memcpy(sorted, names, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, gb__st_cmp_str);
        for (int i = 1; i < n; i++)
            if (!strcmp(sorted[i - 1], sorted[i])) {
                gb_status s = gb__fail(GB_ERR_ARG, "safetensors save: %s: tensor name '%s' is given twice", path,
                                       sorted[i]);
                free(sorted);
                return s;
            }
        free(sorted);
    }
    for (int i = 0; metadata && metadata[i]; i += 2) {
        if (!metadata[i + 1])
            return gb__fail(GB_ERR_ARG, "safetensors save: %s: metadata key '%s' has a NULL value", path,
                            metadata[i]);
        if (!gb__st_is_utf8(metadata[i]) || !gb__st_is_utf8(metadata[i + 1]))
            return gb__fail(GB_ERR_ARG, "safetensors save: %s: metadata '%s' is not valid UTF-8", path, metadata[i]);
        for (int j = 0; j < i; j += 2)
            if (!strcmp(metadata[j], metadata[i]))
                return gb__fail(GB_ERR_ARG, "safetensors save: %s: metadata key '%s' is given twice", path,
                                metadata[i]);
    }
    return GB_OK;
}

/* Write one tensor's bytes in the dtype of out. */
static gb_status gb__st_write_tensor(FILE *fp, const char *path, const gb__st_out *out) {
    gb_tensor *c = gb_to_dtype(out->t, (gb_dtype)gb__st_dtypes[out->dt].gb);
    gb_tensor *cc = c ? gb_contiguous(c) : NULL;
    gb_tensor_free(c);
    if (!cc) {
        gb__error_prefix("safetensors save: %s: tensor '%s'", path, out->name);
        return gb_last_status();
    }
    size_t nbytes = (size_t)gb_tensor_numel(cc) * gb_dtype_size(gb_tensor_dtype(cc));
    size_t put = nbytes ? fwrite(gb_tensor_data(cc), 1, nbytes, fp) : 0;
    gb_tensor_free(cc);
    if (put != nbytes)
        return gb__fail(GB_ERR_IO, "safetensors save: %s: writing tensor '%s': %s", path, out->name,
                        strerror(errno));
    return GB_OK;
}

gb_status gb_safetensors_save(const char *path, int n, const char *const *names, gb_tensor *const *tensors,
                              gb_dtype dtype, const char *const *metadata) {
    gb__st_out *out = gb__calloc(n > 0 ? (size_t)n : 1, sizeof *out, "safetensors save");
    if (!out) return GB_ERR_ALLOC;
    char *header = NULL;
    gb__io_file_out file = {0};
    bool grad = gb__ts_grad_mode();
    gb__ts_set_grad_mode(false); /* conversions here are not part of any graph */
    gb_status s = gb__st_save_args(path, n, names, tensors, dtype, metadata, out);
    if (s != GB_OK) goto done;
    qsort(out, (size_t)n, sizeof *out, gb__st_cmp_out);
    if (!(header = gb__st_header_text(out, n, metadata))) {
        s = GB_ERR_ALLOC;
        goto done;
    }

    /* Written beside the target and renamed over it: a failed save leaves no
     * half-written file behind. */
    if ((s = gb__io_file_create(&file, path, 0, "safetensors save")) != GB_OK) goto done;
    uint8_t len8[8];
    uint64_t hn = (uint64_t)arrlen(header);
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)(hn >> (8 * i));
    if (fwrite(len8, 1, 8, file.fp) != 8 || fwrite(header, 1, (size_t)hn, file.fp) != hn) {
        s = gb__fail(GB_ERR_IO, "safetensors save: %s: writing the header: %s", path, strerror(errno));
        goto done;
    }
    for (int i = 0; i < n && s == GB_OK; i++) s = gb__st_write_tensor(file.fp, path, &out[i]);
    if (s != GB_OK) goto done;
    s = gb__io_file_commit(&file, "safetensors save");
done:
    gb__io_file_discard(&file);
    arrfree(header);
    free(out);
    gb__ts_set_grad_mode(grad);
    return s;
}
