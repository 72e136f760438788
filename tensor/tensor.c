/* Tensor handles, storage, dtypes, creation, random numbers, and the
 * plumbing every op goes through (gb__ts_op_new / gb__ts_op_run). */
#include "tensor_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <stb/stb_ds.h>

/* ---- dtypes ------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} gb__ts_dtypes[GB_DTYPE_COUNT] = {
#define GB__X(e, n, s) {n, s},
    GB_DTYPE_LIST(GB__X)
#undef GB__X
};

const char *gb_dtype_name(gb_dtype dt) {
    return (unsigned)dt < GB_DTYPE_COUNT ? gb__ts_dtypes[dt].name : "unknown";
}
size_t gb_dtype_size(gb_dtype dt) { return (unsigned)dt < GB_DTYPE_COUNT ? gb__ts_dtypes[dt].size : 0; }

static uint32_t gb__ts_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float gb__ts_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float gb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return gb__ts_bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, nan */
    if (exp == 0) {                                                          /* zero, subnormal */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    return gb__ts_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t gb_f32_to_f16(float f) {
    uint32_t u = gb__ts_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0); /* inf, nan */
    if (a >= 0x477ff000u) return sign | 0x7c00;                                 /* overflow */
    if (a < 0x38800000u) {                                                      /* subnormal or 0 */
        /* Add a magic number whose ulp is 2^-24 so the FPU rounds to even. */
        float r = gb__ts_bits_f32(a) + 0.5f;
        return sign | (uint16_t)(gb__ts_f32_bits(r) - gb__ts_f32_bits(0.5f));
    }
    uint32_t mant_odd = (a >> 13) & 1;
    a += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to nearest even */
    return sign | (uint16_t)(a >> 13);
}

float gb_bf16_to_f32(uint16_t h) { return gb__ts_bits_f32((uint32_t)h << 16); }

uint16_t gb_f32_to_bf16(float f) {
    uint32_t u = gb__ts_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet nan */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float gb__ts_load_f32(const void *base, gb_dtype dt, int64_t i) {
    switch (dt) {
    case GB_DTYPE_F32: return ((const float *)base)[i];
    case GB_DTYPE_F16: return gb_f16_to_f32(((const uint16_t *)base)[i]);
    case GB_DTYPE_BF16: return gb_bf16_to_f32(((const uint16_t *)base)[i]);
    case GB_DTYPE_I64: return (float)((const int64_t *)base)[i];
    case GB_DTYPE_I32: return (float)((const int32_t *)base)[i];
    case GB_DTYPE_U8:
    case GB_DTYPE_BOOL: return (float)((const uint8_t *)base)[i];
    default: return 0;
    }
}

void gb__ts_store_f32(void *base, gb_dtype dt, int64_t i, float v) {
    switch (dt) {
    case GB_DTYPE_F32: ((float *)base)[i] = v; break;
    case GB_DTYPE_F16: ((uint16_t *)base)[i] = gb_f32_to_f16(v); break;
    case GB_DTYPE_BF16: ((uint16_t *)base)[i] = gb_f32_to_bf16(v); break;
    case GB_DTYPE_I64: ((int64_t *)base)[i] = (int64_t)v; break;
    case GB_DTYPE_I32: ((int32_t *)base)[i] = (int32_t)v; break;
    case GB_DTYPE_U8: ((uint8_t *)base)[i] = (uint8_t)v; break;
    case GB_DTYPE_BOOL: ((uint8_t *)base)[i] = v != 0; break;
    default: break;
    }
}

/* ---- shapes ------------------------------------------------------------- */

int64_t gb__ts_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

void gb__ts_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        /* saturates instead of overflowing: shapes too large to hold are
         * refused by the byte count callers check, after the strides */
        if (__builtin_mul_overflow(s, shape[i] > 1 ? shape[i] : 1, &s)) s = INT64_MAX;
    }
}

char *gb__shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, size - n, "[");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
    return buf;
}

gb_status gb__ts_norm_dim(const char *op, int *dim, int ndim) {
    int lo = ndim ? -ndim : -1, hi = ndim ? ndim - 1 : 0;
    if (*dim < lo || *dim > hi)
        return gb__fail(GB_ERR_INDEX, "%s: dimension out of range (expected to be in range of [%d, %d], but got %d)",
                        op, lo, hi, *dim);
    if (*dim < 0) *dim += ndim ? ndim : 1;
    return GB_OK;
}

gb_status gb__ts_broadcast_shapes(const char *op, int na, const int64_t *a, int nb, const int64_t *b,
                               int *nout, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t sa = ia >= 0 ? a[ia] : 1, sb = ib >= 0 ? b[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char bufa[160], bufb[160];
            return gb__fail(GB_ERR_SHAPE,
                            "%s: the size of tensor a (%lld) must match the size of tensor b (%lld) at "
                            "non-singleton dimension %d (shapes %s and %s)",
                            op, (long long)sa, (long long)sb, i, gb__shape_str(bufa, 160, na, a),
                            gb__shape_str(bufb, 160, nb, b));
        }
        out[i] = sa == 1 ? sb : sa;
    }
    *nout = n;
    return GB_OK;
}

void gb__ts_broadcast_strides(const gb_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
    for (int i = 0; i < ndim; i++) {
        int it = t->ndim - ndim + i;
        stride[i] = (it < 0 || (t->shape[it] == 1 && shape[i] != 1)) ? 0 : t->stride[it];
    }
}

/* ---- iteration ---------------------------------------------------------- */

void gb__ts_iter_init(gb__ts_iter *it, int ndim, const int64_t *shape, int nops, const int64_t *const *strides) {
    it->ndim = ndim;
    it->nops = nops;
    it->n = gb__ts_numel(ndim, shape);
    for (int d = 0; d < ndim; d++) {
        it->shape[d] = shape[d];
        it->idx[d] = 0;
        for (int k = 0; k < nops; k++) it->stride[k][d] = strides[k][d];
    }
    for (int k = 0; k < nops; k++) it->off[k] = 0;
}

void gb__ts_iter_seek(gb__ts_iter *it, int64_t i) {
    for (int k = 0; k < it->nops; k++) it->off[k] = 0;
    for (int d = it->ndim - 1; d >= 0; d--) {
        it->idx[d] = it->shape[d] ? i % it->shape[d] : 0;
        i = it->shape[d] ? i / it->shape[d] : 0;
        for (int k = 0; k < it->nops; k++) it->off[k] += it->idx[d] * it->stride[k][d];
    }
}

/* ---- modes -------------------------------------------------------------- */

static _Thread_local bool gb__ts_no_grad;
static _Thread_local int gb__ts_meta_depth;

bool gb__ts_grad_mode(void) { return !gb__ts_no_grad; }
void gb__ts_set_grad_mode(bool on) { gb__ts_no_grad = !on; }
bool gb__meta_mode(void) { return gb__ts_meta_depth > 0; }
void gb__meta_push(void) { gb__ts_meta_depth++; }
void gb__meta_pop(void) {
    if (gb__ts_meta_depth > 0) gb__ts_meta_depth--;
}
bool gb__is_meta(const gb_tensor *t) { return t->storage->data == NULL && t->storage->nbytes != 0; }

/* ---- storage and tensors ------------------------------------------------ */

/* Storages of 2 MB or more get their own 2 MB-aligned anonymous mapping with
 * MADV_HUGEPAGE. From malloc, memory that large is often fresh pages (glibc
 * maps blocks over 32 MB itself and returns a freed top of heap to the OS),
 * faulted in 4 KB at a time: 2.0 ms per 4 MB on this project's VM, 0.12-0.16
 * ms in 2 MB pages. A fresh mapping arrives zeroed, so gb_zeros needs no
 * memset. Without transparent huge pages the advice is ignored and the pages
 * are plain; if mmap fails, malloc.
 *
 * Storages from 256 KB get a mapping of their own too (plain pages, no
 * alignment), for the ring below: from malloc, the per-layer activations of
 * a 128-token forward (GPT-2's [128, 3072] MLP values, 1.5 MB) landed on the
 * heap's top, which glibc trims when they are freed, so every layer of every
 * forward faulted its buffers in afresh (12% of GPT-2's forward at one
 * thread was the kernel clearing those pages). */
#define GB__HUGE_PAGE ((size_t)2 << 20)
#define GB__MAP_MIN ((size_t)256 << 10)

static size_t gb__ts_map_len(size_t nbytes) { return (nbytes + 4095) & ~(size_t)4095; }

static void *gb__ts_map(size_t len) {
    if (len < GB__HUGE_PAGE) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    size_t span = len + GB__HUGE_PAGE;
    char *base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    char *p = (char *)(((uintptr_t)base + GB__HUGE_PAGE - 1) & ~(uintptr_t)(GB__HUGE_PAGE - 1));
    if (p > base) munmap(base, (size_t)(p - base));
    munmap(p + len, (size_t)(base + span - (p + len)));
    madvise(p, len, MADV_HUGEPAGE);
    return p;
}

/* Released mappings wait for the next storage of the same length, as glibc
 * keeps a freed heap block: an op run again on the same shapes then writes
 * into pages already faulted in (16 MB: 0.30 ms to write reused, 0.97 ms
 * fresh in huge pages; softmax over [4096, 1024] ran at half speed without
 * this). The oldest make room: at most GB__MAP_KEEP mappings and
 * GB__MAP_KEEP_BYTES stay mapped unused. A training step of GPT-2 124M at
 * 128 tokens frees more than 512 storages of 256 KB and more (activations,
 * their gradients, the parameters' gradients) that the next step asks for
 * again: with 512 kept, steps took 490-1000 ms as evicted sizes came back
 * as fresh pages for the kernel to clear, with 2048 a steady 490-515 ms
 * from the second step. With 1 GB, the Llama-shaped step (its parameters'
 * gradients alone 476 MB, the embedding's 98 MB freed first and evicted
 * first) cleared fresh pages again, 5% of its time, then zeroed them; with
 * 2 GB its steps are 2-5% faster and its peak resident memory the same
 * (the kept mappings are what the next step takes back). */
#define GB__MAP_KEEP 2048
#define GB__MAP_KEEP_BYTES ((size_t)2 << 30)
static struct {
    void *p;
    size_t len;
} gb__ts_kept[GB__MAP_KEEP]; /* a ring, oldest at gb__ts_kept_next */
static int gb__ts_kept_next;
static size_t gb__ts_kept_bytes;
static pthread_mutex_t gb__ts_kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void *gb__ts_map_reuse(size_t len) {
    void *p = NULL;
    pthread_mutex_lock(&gb__ts_kept_lock);
    for (int i = 0; i < GB__MAP_KEEP && !p; i++)
        if (gb__ts_kept[i].p && gb__ts_kept[i].len == len) {
            p = gb__ts_kept[i].p;
            gb__ts_kept[i].p = NULL;
            gb__ts_kept_bytes -= len;
        }
    pthread_mutex_unlock(&gb__ts_kept_lock);
    return p;
}

static void gb__ts_unmap(void *ctx) {
    gb_storage *s = ctx;
    size_t len = gb__ts_map_len(s->nbytes);
    if (len > GB__MAP_KEEP_BYTES) {
        munmap(s->data, len);
        return;
    }
    pthread_mutex_lock(&gb__ts_kept_lock);
    int i = gb__ts_kept_next;
    for (int k = i; gb__ts_kept[i].p || gb__ts_kept_bytes + len > GB__MAP_KEEP_BYTES; k = (k + 1) % GB__MAP_KEEP)
        if (gb__ts_kept[k].p) {
            munmap(gb__ts_kept[k].p, gb__ts_kept[k].len);
            gb__ts_kept[k].p = NULL;
            gb__ts_kept_bytes -= gb__ts_kept[k].len;
        }
    gb__ts_kept[i].p = s->data, gb__ts_kept[i].len = len;
    gb__ts_kept_bytes += len;
    gb__ts_kept_next = (i + 1) % GB__MAP_KEEP;
    pthread_mutex_unlock(&gb__ts_kept_lock);
}

void gb__mem_trim(void) {
    pthread_mutex_lock(&gb__ts_kept_lock);
    for (int i = 0; i < GB__MAP_KEEP; i++)
        if (gb__ts_kept[i].p) munmap(gb__ts_kept[i].p, gb__ts_kept[i].len), gb__ts_kept[i].p = NULL;
    gb__ts_kept_bytes = 0;
    pthread_mutex_unlock(&gb__ts_kept_lock);
}

/* Linux's estimate of the memory a new allocation can get without
 * swapping (MemAvailable: free memory plus reclaimable caches). */
static _Atomic uint64_t gb__ts_mem_override;

uint64_t gb__mem_available(void) {
    uint64_t v = atomic_load(&gb__ts_mem_override);
    if (v) return v;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb;
    v = UINT64_MAX;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) v = (uint64_t)kb << 10;
    if (f) fclose(f);
    return v;
}

void gb__mem_available_set(uint64_t bytes) { atomic_store(&gb__ts_mem_override, bytes); }

static _Atomic uint64_t gb__ts_space_override;

void gb__address_space_set(uint64_t bytes) { atomic_store(&gb__ts_space_override, bytes); }

uint64_t gb__address_space_left(void) {
    uint64_t v = atomic_load(&gb__ts_space_override);
    if (v) return v;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return UINT64_MAX;
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f || fscanf(f, "%llu", &pages) != 1) pages = 0;
    if (f) fclose(f);
    uint64_t used = (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
    return rl.rlim_cur > used ? (uint64_t)rl.rlim_cur - used : 0;
}

static gb_storage *gb__ts_storage_new(size_t nbytes, bool zero, const char *what) {
    gb_storage *s = gb__calloc(1, sizeof *s, what);
    if (!s) return NULL;
    s->refcount = 1;
    s->nbytes = nbytes;
    s->owned = true;
    if (gb__meta_mode()) return s; /* shape only: no data */
    if (nbytes >= GB__MAP_MIN) {
        size_t len = gb__ts_map_len(nbytes);
        /* Zeros come fresh from the kernel: zeroing a kept mapping would
         * write every page, where a fresh one faults in only the pages used
         * (parameters made as zeros and then loaded are never touched). */
        s->data = zero ? NULL : gb__ts_map_reuse(len);
        if (!s->data) s->data = gb__ts_map(len);
        if (s->data) {
            s->owned = false; /* not malloc's: freed through release */
            s->release = gb__ts_unmap;
            s->release_ctx = s;
            return s;
        }
    }
    /* Zeroed by writing, not by calloc: calloc's fresh pages map the shared
     * zero page on the first read, so a gradient accumulated into (read, then
     * write) took two page faults per page instead of one (a 4x1024 MLP's
     * training step at 2 threads: 12.9 ms with calloc, 12.3 ms with this). */
    s->data = malloc(nbytes ? nbytes : 1);
    if (!s->data) {
        free(s);
        return gb__fail_null(GB_ERR_ALLOC, "%s: out of memory allocating %zu bytes", what, nbytes);
    }
    if (zero) memset(s->data, 0, nbytes);
    return s;
}

static void gb__ts_storage_release(gb_storage *s) {
    if (!s || --s->refcount > 0) return;
    if (s->owned) free(s->data);
    else if (s->release) s->release(s->release_ctx);
    free(s);
}

void gb__ts_bump_version(gb_tensor *t) { t->storage->version++; }

/* Zeroed by writing, on the thread pool: a gradient buffer is a kept
 * mapping of the allocator, faulted in already (a fresh zero mapping would
 * be read first by the kernels, mapping the huge zero page, then written,
 * faulting in and clearing a new page: 70% of GPT-2 124M's training step on
 * this project's VM). */
void gb__ts_grad_settle(gb_tensor *g) {
    if (!g || !g->blank) return;
    g->blank = false;
    char *p = gb_tensor_data(g);
    size_t n = (size_t)gb_tensor_numel(g) * sizeof(float), chunk = (size_t)1 << 20;
    int64_t chunks = (int64_t)((n + chunk - 1) / chunk);
#pragma omp parallel for num_threads(gb__threads()) if (chunks > 1) schedule(static)
    for (int64_t c = 0; c < chunks; c++) {
        size_t lo = (size_t)c * chunk;
        memset(p + lo, 0, n - lo < chunk ? n - lo : chunk);
    }
}

static _Atomic int64_t gb__ts_live;
int64_t gb__ts_live_tensors(void) { return gb__ts_live; }

gb_tensor *gb__ts_tensor_shell(const char *what) {
    gb_tensor *t = gb__calloc(1, sizeof *t, what);
    if (t) {
        gb__ts_live++;
        t->refcount = 1;
    }
    return t;
}

static gb_tensor *gb__ts_tensor_alloc(gb_dtype dt, int ndim, const int64_t *shape, const char *what) {
    if (ndim < 0 || ndim > GB_MAX_DIMS)
        return gb__fail_null(GB_ERR_SHAPE, "%s: %d dimensions requested, at most %d are supported", what, ndim,
                             GB_MAX_DIMS);
    if ((unsigned)dt >= GB_DTYPE_COUNT) return gb__fail_null(GB_ERR_DTYPE, "%s: unknown dtype %d", what, (int)dt);
    int64_t bytes = gb_dtype_size(dt);
    for (int i = 0; i < ndim; i++) {
        char buf[160];
        if (shape[i] < 0)
            return gb__fail_null(GB_ERR_SHAPE, "%s: negative size in shape %s", what,
                                 gb__shape_str(buf, 160, ndim, shape));
        /* sizes from files (a config's n_embd: 2^40) must not overflow the
         * byte count, shape-only tensors included */
        if (shape[i] && bytes > INT64_MAX / shape[i])
            return gb__fail_null(GB_ERR_SHAPE, "%s: shape %s holds more bytes than a 64-bit size can count", what,
                                 gb__shape_str(buf, 160, ndim, shape));
        bytes *= shape[i];
    }
    gb_tensor *t = gb__calloc(1, sizeof *t, what);
    if (!t) return NULL;
    gb__ts_live++;
    t->refcount = 1;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    gb__ts_contiguous_strides(ndim, shape, t->stride);
    return t;
}

/* A new tensor with fresh contiguous storage (no data in meta mode). */
static gb_tensor *gb__ts_tensor_new(gb_dtype dt, int ndim, const int64_t *shape, bool zero, const char *what) {
    gb_tensor *t = gb__ts_tensor_alloc(dt, ndim, shape, what);
    if (!t) return NULL;
    t->storage = gb__ts_storage_new((size_t)gb__ts_numel(ndim, shape) * gb_dtype_size(dt), zero, what);
    if (!t->storage) {
        free(t);
        return NULL;
    }
    return t;
}

gb_tensor *gb_tensor_ref(gb_tensor *t) {
    if (t) t->refcount++;
    return t;
}

static void gb__ts_drop_graph(gb_tensor *t) {
    for (int i = 0; i < t->nsrc; i++) gb_tensor_free(t->src[i]);
    free(t->src);
    free(t->src_version);
    t->src = NULL;
    t->src_version = NULL;
    t->nsrc = 0;
    for (int i = 0; i < 2; i++) {
        gb_tensor_free(t->saved[i]);
        t->saved[i] = NULL;
    }
}

void gb_tensor_free(gb_tensor *t) {
    if (!t || --t->refcount > 0) return;
    gb__ts_drop_graph(t);
    free(t->op_ctx);
    gb_tensor_free(t->grad);
    gb_tensor_free(t->grad_acc);
    arrfree(t->hooks);
    gb__ts_storage_release(t->storage);
    free(t->name);
    free(t);
    gb__ts_live--;
}

/* Release the sources and saved values of t (called when autograd no longer
 * needs them). */
void gb__ts_tensor_drop_graph(gb_tensor *t) { gb__ts_drop_graph(t); }

int gb_tensor_ndim(const gb_tensor *t) { return t->ndim; }
int64_t gb_tensor_dim(const gb_tensor *t, int d) {
    if (d < 0) d += t->ndim;
    return d >= 0 && d < t->ndim ? t->shape[d] : -1;
}
const int64_t *gb_tensor_shape(const gb_tensor *t) { return t->shape; }
const int64_t *gb_tensor_strides(const gb_tensor *t) { return t->stride; }
int64_t gb_tensor_offset(const gb_tensor *t) { return t->offset; }
int64_t gb_tensor_numel(const gb_tensor *t) { return gb__ts_numel(t->ndim, t->shape); }
gb_dtype gb_tensor_dtype(const gb_tensor *t) { return t->dtype; }

bool gb_tensor_is_contiguous(const gb_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool gb__ts_is_transposed(const gb_tensor *t) {
    return t->ndim == 2 && t->shape[0] > 1 && t->shape[1] > 1 && t->stride[0] == 1 && t->stride[1] == t->shape[0];
}

gb_tensor *gb__ts_transposed_new(int64_t rows, int64_t cols, bool zero) {
    int64_t shape[2] = {cols, rows};
    gb_tensor *st = zero ? gb_zeros(2, shape, GB_DTYPE_F32) : gb_empty(2, shape, GB_DTYPE_F32);
    gb_tensor *v = st ? gb_transpose(st, 0, 1) : NULL;
    gb_tensor_free(st);
    return v;
}

void *gb_tensor_data(const gb_tensor *t) {
    if (!t->storage->data) return NULL;
    return (char *)t->storage->data + t->offset * (int64_t)gb_dtype_size(t->dtype);
}

float *gb_tensor_f32(const gb_tensor *t) {
    if (t->dtype != GB_DTYPE_F32)
        return gb__fail_null(GB_ERR_DTYPE, "tensor_f32: tensor %s has dtype %s, expected float32",
                             GB__SHAPE_STR(t), gb_dtype_name(t->dtype));
    if (!t->storage->data)
        return gb__fail_null(GB_ERR_STATE, "tensor_f32: tensor %s is shape-only (meta) and has no data",
                             GB__SHAPE_STR(t));
    return gb_tensor_data(t);
}

bool gb_tensor_shares_storage(const gb_tensor *a, const gb_tensor *b) { return a->storage == b->storage; }

gb_status gb_tensor_set_name(gb_tensor *t, const char *name) {
    char *copy = NULL;
    if (name) {
        copy = gb__malloc(strlen(name) + 1, "tensor_set_name");
        if (!copy) return GB_ERR_ALLOC;
        strcpy(copy, name);
    }
    free(t->name);
    t->name = copy;
    return GB_OK;
}
const char *gb_tensor_name(const gb_tensor *t) { return t->name ? t->name : ""; }

/* ---- creation ----------------------------------------------------------- */

gb_tensor *gb_empty(int ndim, const int64_t *shape, gb_dtype dt) {
    return gb__ts_tensor_new(dt, ndim, shape, false, "empty");
}

gb_tensor *gb_zeros(int ndim, const int64_t *shape, gb_dtype dt) {
    return gb__ts_tensor_new(dt, ndim, shape, true, "zeros");
}

gb_tensor *gb_full(int ndim, const int64_t *shape, float value, gb_dtype dt) {
    gb_tensor *t = gb__ts_tensor_new(dt, ndim, shape, false, "full");
    if (!t || !t->storage->data) return t;
    int64_t n = gb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) gb__ts_store_f32(t->storage->data, dt, i, value);
    return t;
}

gb_tensor *gb_ones(int ndim, const int64_t *shape, gb_dtype dt) { return gb_full(ndim, shape, 1.0f, dt); }

gb_tensor *gb_scalar_tensor(float v) { return gb_full(0, NULL, v, GB_DTYPE_F32); }

gb_tensor *gb_from_data(const void *data, int ndim, const int64_t *shape, gb_dtype dt) {
    gb_tensor *t = gb__ts_tensor_new(dt, ndim, shape, false, "from_data");
    if (t && t->storage->data) memcpy(t->storage->data, data, t->storage->nbytes);
    return t;
}

gb_tensor *gb_from_blob(void *data, int ndim, const int64_t *shape, gb_dtype dt, void (*release)(void *ctx),
                        void *ctx) {
    gb_tensor *t = gb__ts_tensor_alloc(dt, ndim, shape, "from_blob");
    if (!t) return NULL;
    t->storage = gb__calloc(1, sizeof *t->storage, "from_blob");
    if (!t->storage) {
        free(t);
        return NULL;
    }
    t->storage->refcount = 1;
    t->storage->data = data;
    t->storage->nbytes = (size_t)gb__ts_numel(ndim, shape) * gb_dtype_size(dt);
    t->storage->release = release;
    t->storage->release_ctx = ctx;
    return t;
}

gb_tensor *gb_arange(double start, double end, double step) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step) || (end - start) / step < 0)
        return gb__fail_null(GB_ERR_ARG, "arange: invalid range start=%g end=%g step=%g", start, end, step);
    int64_t n = (int64_t)ceil((end - start) / step);
    gb_tensor *t = gb__ts_tensor_new(GB_DTYPE_F32, 1, &n, false, "arange");
    if (!t || !t->storage->data) return t;
    float *p = t->storage->data;
    for (int64_t i = 0; i < n; i++) p[i] = (float)(start + (double)i * step);
    return t;
}

gb_tensor *gb_arange_i64(int64_t start, int64_t end, int64_t step) {
    if (step == 0 || (end - start) / step < 0)
        return gb__fail_null(GB_ERR_ARG, "arange: invalid range start=%lld end=%lld step=%lld", (long long)start,
                             (long long)end, (long long)step);
    int64_t n = (end - start + step + (step > 0 ? -1 : 1)) / step;
    gb_tensor *t = gb__ts_tensor_new(GB_DTYPE_I64, 1, &n, false, "arange");
    if (!t || !t->storage->data) return t;
    int64_t *p = t->storage->data;
    for (int64_t i = 0; i < n; i++) p[i] = start + i * step;
    return t;
}

/* ---- random ------------------------------------------------------------- */

#define GB__PCG_MULT 6364136223846793005ULL
#define GB__PCG_INC 1442695040888963407ULL

gb_rng gb_rng_seed(uint64_t seed) {
    /* state = 0, two steps, state += seed, one step (pcg32_srandom takes one
     * step before adding the seed; this generator has always taken two, and
     * tests/oracle/train.py reproduces it as it is). */
    gb_rng r = {0};
    r.state = GB__PCG_INC;
    r.state = r.state * GB__PCG_MULT + GB__PCG_INC;
    r.state += seed;
    r.state = r.state * GB__PCG_MULT + GB__PCG_INC;
    return r;
}

uint32_t gb_rng_next(gb_rng *r) {
    uint64_t old = r->state;
    r->state = old * GB__PCG_MULT + GB__PCG_INC;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

static float gb__ts_uniform01(gb_rng *r) { return (float)(gb_rng_next(r) >> 8) * (1.0f / 16777216.0f); }

gb_tensor *gb_rand(gb_rng *r, int ndim, const int64_t *shape, float low, float high) {
    gb_tensor *t = gb__ts_tensor_new(GB_DTYPE_F32, ndim, shape, false, "rand");
    if (!t || !t->storage->data) return t;
    float *p = t->storage->data;
    int64_t n = gb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = low + gb__ts_uniform01(r) * (high - low);
    return t;
}

gb_tensor *gb_randn(gb_rng *r, int ndim, const int64_t *shape, float mean, float std) {
    gb_tensor *t = gb__ts_tensor_new(GB_DTYPE_F32, ndim, shape, false, "randn");
    if (!t || !t->storage->data) return t;
    float *p = t->storage->data;
    int64_t n = gb_tensor_numel(t);
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - gb__ts_uniform01(r), u2 = gb__ts_uniform01(r);
        double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        p[i] = mean + std * (float)(rad * cos(th));
        if (i + 1 < n) p[i + 1] = mean + std * (float)(rad * sin(th));
    }
    return t;
}

gb_tensor *gb_randint(gb_rng *r, int ndim, const int64_t *shape, int64_t low, int64_t high) {
    if (high <= low || high - low > UINT32_MAX)
        return gb__fail_null(GB_ERR_ARG, "randint: invalid range [%lld, %lld)", (long long)low, (long long)high);
    gb_tensor *t = gb__ts_tensor_new(GB_DTYPE_I64, ndim, shape, false, "randint");
    if (!t || !t->storage->data) return t;
    int64_t *p = t->storage->data;
    int64_t n = gb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = low + (int64_t)(gb_rng_next(r) % (uint64_t)(high - low));
    return t;
}

/* ---- op plumbing -------------------------------------------------------- */

static bool gb__ts_should_record(int nsrc, gb_tensor *const *src) {
    if (!gb__ts_grad_mode()) return false;
    for (int i = 0; i < nsrc; i++)
        if (src[i] && src[i]->requires_grad) return true;
    return false;
}

static gb_status gb__ts_attach_sources(gb_tensor *out, gb_op op, int nsrc, gb_tensor *const *src, const char *what) {
    out->op = op;
    if (nsrc == 0) return GB_OK;
    out->src = gb__calloc((size_t)nsrc, sizeof *out->src, what);
    out->src_version = gb__calloc((size_t)nsrc, sizeof *out->src_version, what);
    if (!out->src || !out->src_version) return GB_ERR_ALLOC;
    out->nsrc = nsrc;
    for (int i = 0; i < nsrc; i++) out->src[i] = gb_tensor_ref(src[i]);
    out->requires_grad = gb__ts_should_record(nsrc, src);
    return GB_OK;
}

static bool gb__ts_any_meta(int nsrc, gb_tensor *const *src) {
    for (int i = 0; i < nsrc; i++)
        if (src[i] && gb__is_meta(src[i])) return true;
    return false;
}

gb_tensor *gb__ts_op_new(gb_op op, const char *what, gb_dtype dt, int ndim, const int64_t *shape, int nsrc,
                      gb_tensor *const *src) {
    bool meta = gb__ts_any_meta(nsrc, src);
    if (meta) gb__meta_push();
    gb_tensor *out = gb__ts_tensor_new(dt, ndim, shape, false, what);
    if (meta) gb__meta_pop();
    if (!out) return NULL;
    if (gb__ts_attach_sources(out, op, nsrc, src, what) != GB_OK) {
        gb_tensor_free(out);
        return NULL;
    }
    return out;
}

gb_tensor *gb__ts_op_new_view(gb_op op, const char *what, gb_tensor *src, int ndim, const int64_t *shape,
                           const int64_t *stride, int64_t offset) {
    gb_tensor *out = gb__ts_tensor_alloc(src->dtype, ndim, shape, what);
    if (!out) return NULL;
    for (int i = 0; i < ndim; i++) out->stride[i] = stride[i];
    out->offset = offset;
    out->storage = src->storage;
    src->storage->refcount++;
    if (gb__ts_attach_sources(out, op, 1, &src, what) != GB_OK) {
        gb_tensor_free(out);
        return NULL;
    }
    return out;
}

gb_tensor *gb__ts_op_run(gb_tensor *out) {
    if (!gb__is_meta(out)) {
        gb_status st = gb__ts_ops[out->op].forward(out);
        if (st != GB_OK) {
            gb_tensor_free(out);
            return NULL;
        }
    }
    if (!out->requires_grad) {
        gb__ts_drop_graph(out);
        return out;
    }
    for (int i = 0; i < out->nsrc; i++) out->src_version[i] = out->src[i]->storage->version;
    out->out_version = out->storage->version;
    return out;
}

/* The op table: one row per GB_OP_LIST entry, in enum order by construction. */
const gb__ts_op_info gb__ts_ops[GB_OP_COUNT] = {
#define GB__X(e, n, s) [GB_OP_##e] = {n, gb__ts_op_##e##_forward, gb__ts_op_##e##_backward, s},
    GB_OP_LIST(GB__X)
#undef GB__X
};
_Static_assert(sizeof gb__ts_ops / sizeof gb__ts_ops[0] == GB_OP_COUNT, "one op table row per op");

/* GB_OP_NONE: leaves. Never run. */
gb_status gb__ts_op_NONE_forward(gb_tensor *out) {
    (void)out;
    return GB_OK;
}
gb_status gb__ts_op_NONE_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    (void)out, (void)dout, (void)dsrc;
    return GB_OK;
}
