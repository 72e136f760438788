/* glassbox tensor core: n-dimensional tensors, views, ops, errors.
 *
 * Usage (compiled as a test, tests/test_header_examples.c):
 *
 *     gb_tensor *x = gb_arange(0, 6, 1);              // [0 1 2 3 4 5], f32
 *     gb_tensor *m = gb_reshape(x, 2, (int64_t[]){2, 3});
 *     gb_tensor *r = gb_index(m, "[:, -1]");          // view: [2, 5]
 *     gb_tensor *s = GB_AT(gb_add_scalar(r, 1.0f));   // GB_AT: errors name this line
 *     if (!s) fprintf(stderr, "%s\n", gb_last_error());
 *     char *text = gb_tensor_str(s);                  // "tensor([3., 6.])"
 *     free(text);
 *     gb_tensor_free(s); gb_tensor_free(r); gb_tensor_free(m); gb_tensor_free(x);
 *
 * Ownership. Every function that returns a gb_tensor* returns a new reference
 * that the caller releases with gb_tensor_free (NULL is accepted). Views
 * (reshape of contiguous data, permute, transpose, slicing, expand, index)
 * share the storage of their source and keep it alive; freeing the source
 * first is fine. Input tensors are never consumed.
 *
 * Errors. Fallible functions return NULL or a gb_status other than GB_OK and
 * set a thread-local message, read with gb_last_error(), that names the
 * operation and the shapes, indices or paths involved. Wrapping a call in
 * GB_AT(...) prefixes that message with the caller's file and line. No
 * function here aborts, exits or prints.
 *
 * Threads. Any number of threads may read one tensor at once and take and
 * drop references to it (reference counts are atomic): a model's weights
 * are shared so. Writing a tensor in place (the calls ending in _) while
 * another thread reads it is a race, as is any call on one tensor from two
 * threads when one of them writes it. Errors, grad mode and meta mode are
 * per thread. docs/ARCHITECTURE.md (Threads) lists what is shared.
 *
 * Compute is f32. f16/bf16 are storage formats: gb_to_dtype converts, and
 * the ops that read a model's weights (matmul, linear, embedding, the
 * weight and bias of the norms) take f16/bf16 weights as stored, widening
 * them to f32 as they read; they give f32 results, and refuse
 * (GB_ERR_AUTOGRAD) to record a gradient of an f16/bf16 tensor. Ops on
 * other dtypes say so in their comment; the rest reject them with
 * GB_ERR_DTYPE. Unless said otherwise, binary ops broadcast like PyTorch and
 * accept any strides. Dims may be negative (-1 is the last).
 */
#ifndef GB_TENSOR_H
#define GB_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GB_MAX_DIMS 8

/* ---- version -------------------------------------------------------------- */

/* The one place the version is written: the Makefile (the shared library's
 * file names and SONAME, glassbox.pc) reads these three lines. */
#define GB_VERSION_MAJOR 0
#define GB_VERSION_MINOR 1
#define GB_VERSION_PATCH 0
/* The version of the library linked, "MAJOR.MINOR.PATCH" (the macros are the
 * headers' version). */
const char *gb_version(void);

/* ---- status and errors -------------------------------------------------- */

/* X-macro: value, short name. Each kind has a page docs/errors/<name>.md. */
#define GB_STATUS_LIST(X)                                                     \
    X(GB_OK, "ok")                                                            \
    X(GB_ERR_SHAPE, "shape")           /* shapes that do not fit together */  \
    X(GB_ERR_INDEX, "index")           /* index or dim out of range */        \
    X(GB_ERR_DTYPE, "dtype")           /* dtype not supported by the op */    \
    X(GB_ERR_ALLOC, "alloc")           /* out of memory */                    \
    X(GB_ERR_ARG, "argument")          /* malformed argument or syntax */     \
    X(GB_ERR_IO, "io")                 /* file cannot be read or written */   \
    X(GB_ERR_FORMAT, "format")         /* corrupt or unsupported file */      \
    X(GB_ERR_NOT_FOUND, "not-found")   /* unknown name, path or key */        \
    X(GB_ERR_STATE, "state")           /* call not valid in this state */     \
    X(GB_ERR_AUTOGRAD, "autograd")     /* backward cannot be done */          \
    X(GB_ERR_UNSUPPORTED, "unsupported") /* valid, but not implemented */    \
    X(GB_ERR_NONFINITE, "nonfinite")   /* NaN or Inf where the NaN guard looks */ \
    X(GB_STOPPED, "stopped")           /* not an error: a run was stopped */

typedef enum gb_status {
#define GB__X(e, n) e,
    GB_STATUS_LIST(GB__X)
#undef GB__X
    GB_STATUS_COUNT
} gb_status;

/* The message of the last failure on this thread ("" if none). The pointer
 * stays valid until the next failing call on this thread. */
const char *gb_last_error(void);
/* Status of the last failure on this thread (GB_OK if none). */
gb_status gb_last_status(void);
/* Short name of a status, e.g. "shape"; the page docs/errors/<name>.md. */
const char *gb_status_name(gb_status s);
/* Forget the last error. */
void gb_clear_error(void);

/* GB_AT(expr): evaluates expr (a call returning a pointer or gb_status) and,
 * if that call fails, prefixes the error message with this file and line. */
#ifndef __cplusplus
#define GB_AT(expr)                                                           \
    _Generic((expr),                                                          \
        gb_status: gb__ts_site_leave_status,                                     \
        default: gb__ts_site_leave_ptr)((gb__ts_site_enter(__FILE__, __LINE__), (expr)))
#endif
/* GB_AT's expansion (not called directly). */
void gb__ts_site_enter(const char *file, int line);
gb_status gb__ts_site_leave_status(gb_status s);
void *gb__ts_site_leave_ptr(const void *p);

/* ---- dtypes ------------------------------------------------------------- */

/* X-macro: value, name (PyTorch's), size in bytes. */
#define GB_DTYPE_LIST(X)                  \
    X(GB_DTYPE_F32, "float32", 4)         \
    X(GB_DTYPE_F16, "float16", 2)         \
    X(GB_DTYPE_BF16, "bfloat16", 2)       \
    X(GB_DTYPE_I64, "int64", 8)           \
    X(GB_DTYPE_I32, "int32", 4)           \
    X(GB_DTYPE_U8, "uint8", 1)            \
    X(GB_DTYPE_BOOL, "bool", 1)

typedef enum gb_dtype {
#define GB__X(e, n, s) e,
    GB_DTYPE_LIST(GB__X)
#undef GB__X
    GB_DTYPE_COUNT
} gb_dtype;

const char *gb_dtype_name(gb_dtype dt);
size_t gb_dtype_size(gb_dtype dt);
/* IEEE half and bfloat16 conversions (round to nearest even). */
float gb_f16_to_f32(uint16_t h);
uint16_t gb_f32_to_f16(float f);
float gb_bf16_to_f32(uint16_t h);
uint16_t gb_f32_to_bf16(float f);

/* ---- the tensor handle -------------------------------------------------- */

typedef struct gb_tensor gb_tensor;

/* Release a reference (NULL is fine). Storage is freed with its last view. */
void gb_tensor_free(gb_tensor *t);
/* Take another reference to the same tensor; returns t. */
gb_tensor *gb_tensor_ref(gb_tensor *t);

int gb_tensor_ndim(const gb_tensor *t);
/* Size of dim d (negative d counts from the end); -1 if d is out of range. */
int64_t gb_tensor_dim(const gb_tensor *t, int d);
/* Pointer to the ndim sizes / strides (in elements, not bytes). */
const int64_t *gb_tensor_shape(const gb_tensor *t);
const int64_t *gb_tensor_strides(const gb_tensor *t);
int64_t gb_tensor_offset(const gb_tensor *t);
int64_t gb_tensor_numel(const gb_tensor *t);
gb_dtype gb_tensor_dtype(const gb_tensor *t);
bool gb_tensor_is_contiguous(const gb_tensor *t);
/* The first element of t (storage base + offset). Use with the strides, or
 * on a contiguous tensor as a flat array of numel elements. */
void *gb_tensor_data(const gb_tensor *t);
/* gb_tensor_data for an f32 tensor; NULL (with an error) for other dtypes. */
float *gb_tensor_f32(const gb_tensor *t);
/* Whether a and b view the same storage. */
bool gb_tensor_shares_storage(const gb_tensor *a, const gb_tensor *b);

/* A name shown in errors and graph dumps (copied; NULL clears it). */
gb_status gb_tensor_set_name(gb_tensor *t, const char *name);
const char *gb_tensor_name(const gb_tensor *t); /* "" if unnamed */

/* ---- creation ----------------------------------------------------------- */

/* Uninitialised / zero / one / constant tensors of a shape. */
gb_tensor *gb_empty(int ndim, const int64_t *shape, gb_dtype dt);
gb_tensor *gb_zeros(int ndim, const int64_t *shape, gb_dtype dt);
gb_tensor *gb_ones(int ndim, const int64_t *shape, gb_dtype dt);
gb_tensor *gb_full(int ndim, const int64_t *shape, float value, gb_dtype dt);
/* A 0-dim f32 tensor holding v. */
gb_tensor *gb_scalar_tensor(float v);
/* Copy n = prod(shape) elements of dtype dt from data into a new tensor. */
gb_tensor *gb_from_data(const void *data, int ndim, const int64_t *shape, gb_dtype dt);
/* Wrap memory the caller owns, without copying. release(ctx) runs when the
 * last view of it is freed (release may be NULL: the memory outlives it). */
gb_tensor *gb_from_blob(void *data, int ndim, const int64_t *shape, gb_dtype dt,
                        void (*release)(void *ctx), void *ctx);
/* [start, start+step, ...) up to end, f32, like torch.arange. */
gb_tensor *gb_arange(double start, double end, double step);
/* Integer arange (i64). */
gb_tensor *gb_arange_i64(int64_t start, int64_t end, int64_t step);

/* ---- random ------------------------------------------------------------- */

/* The generator is PCG32 (O'Neill's pcg32, XSH-RR 64/32, increment 1442695040888963407).
 * uniform: u = (next() >> 8) * 2^-24 in [0,1), then low + u*(high-low).
 * normal: Box-Muller on two uniforms, u1 taken as 1-u so log() never sees 0;
 * each pair gives two samples (cos, then sin).
 * randint: next() % (high-low) + low (for ranges < 2^32).
 * A gb_rng is a plain value; seeding the same seed repeats the same stream. */
typedef struct gb_rng {
    uint64_t state;
} gb_rng;
gb_rng gb_rng_seed(uint64_t seed);
uint32_t gb_rng_next(gb_rng *r);
gb_tensor *gb_rand(gb_rng *r, int ndim, const int64_t *shape, float low, float high);
gb_tensor *gb_randn(gb_rng *r, int ndim, const int64_t *shape, float mean, float std);
gb_tensor *gb_randint(gb_rng *r, int ndim, const int64_t *shape, int64_t low, int64_t high); /* i64 */

/* ---- copies and conversion ---------------------------------------------- */

/* t itself (a new reference) when contiguous, else a contiguous copy. */
gb_tensor *gb_contiguous(gb_tensor *t);
/* Always a new contiguous copy (torch's clone). */
gb_tensor *gb_clone(gb_tensor *t);
/* A converted copy (or a new reference when dt is already t's dtype). */
gb_tensor *gb_to_dtype(gb_tensor *t, gb_dtype dt);
/* Copy src into dst in place; src broadcasts to dst's shape; dtypes convert. */
gb_status gb_copy_(gb_tensor *dst, gb_tensor *src);
/* Fill dst in place with a constant. */
gb_status gb_fill_(gb_tensor *dst, float value);
/* Element at a multi-index (negative indices allowed), as double. */
gb_status gb_tensor_get(const gb_tensor *t, const int64_t *idx, double *out);
/* The single value of a one-element tensor, as double. */
gb_status gb_item(const gb_tensor *t, double *out);

/* ---- views (share storage) ---------------------------------------------- */

/* shape may hold one -1, inferred. Copies only when t's strides cannot be
 * viewed with the new shape (torch.reshape); gb_view never copies. */
gb_tensor *gb_reshape(gb_tensor *t, int ndim, const int64_t *shape);
gb_tensor *gb_view(gb_tensor *t, int ndim, const int64_t *shape);
gb_tensor *gb_flatten(gb_tensor *t, int start_dim, int end_dim);
gb_tensor *gb_permute(gb_tensor *t, const int *dims); /* dims has ndim entries */
gb_tensor *gb_transpose(gb_tensor *t, int d0, int d1);
gb_tensor *gb_unsqueeze(gb_tensor *t, int dim);
gb_tensor *gb_squeeze(gb_tensor *t, int dim);
/* t.narrow(dim, start, length) */
gb_tensor *gb_narrow(gb_tensor *t, int dim, int64_t start, int64_t length);
/* t.select(dim, i): removes dim. */
gb_tensor *gb_select(gb_tensor *t, int dim, int64_t index);
/* t[..., start:stop:step, ...] on one dim, with Python's clamping rules;
 * step > 0. Use GB_END for an open stop. */
#define GB_END INT64_MAX
gb_tensor *gb_slice(gb_tensor *t, int dim, int64_t start, int64_t stop, int64_t step);
/* t.expand(shape): size-1 dims (and new leading dims) broadcast with stride 0;
 * -1 keeps a size. */
gb_tensor *gb_expand(gb_tensor *t, int ndim, const int64_t *shape);

/* ---- indexing (PyTorch's meaning) --------------------------------------- */

/* One entry of an index expression. */
typedef enum gb_index_kind {
    GB_INDEX_KIND_INT,      /* x[i]: removes the dim, negative counts from end */
    GB_INDEX_KIND_SLICE,    /* x[start:stop:step] */
    GB_INDEX_KIND_ELLIPSIS, /* x[...] */
    GB_INDEX_KIND_NEWAXIS,  /* x[None] */
} gb_index_kind;

typedef struct gb_index_item {
    gb_index_kind kind;
    int64_t start, stop, step; /* INT: start is the index */
    bool has_start, has_stop;  /* SLICE: open ends when false */
} gb_index_item;

#define GB_MAX_INDEX_ITEMS 16
typedef struct gb_index_expr {
    int n;
    gb_index_item item[GB_MAX_INDEX_ITEMS];
} gb_index_expr;

/* Parse "[:, -1, ::2, ..., None, 3:5]": brackets optional, whitespace and
 * a trailing comma allowed, signed integers; "" or "[]" is x[()]. Syntax
 * errors name the column (from 1) in the text as given. One ellipsis at
 * most. */
gb_status gb_index_parse(const char *text, gb_index_expr *out);
/* Print an expression back in the same syntax, e.g. "[:, -1]". Returns the
 * length it needs, like snprintf. */
int gb_index_format(const gb_index_expr *e, char *buf, size_t size);
/* The view t[expr]. Out-of-range integer indices fail with GB_ERR_INDEX, e.g.
 * "index 10 is out of bounds for dimension 1 with size 10 (indexing shape
 * [2, 10] with [:, 10])"; as in torch, the dimension is the item's position
 * in the index. */
gb_tensor *gb_index_expr_apply(gb_tensor *t, const gb_index_expr *e);
/* gb_index_expr_apply after gb_index_parse. */
gb_tensor *gb_index(gb_tensor *t, const char *expr);
/* The result shape of t[expr] without touching data (for scan/validate);
 * *out_ndim = 0 on failure. */
gb_status gb_index_shape(int ndim, const int64_t *shape, const gb_index_expr *e,
                         int *out_ndim, int64_t *out_shape);
/* In place: t[expr] = v, v broadcasting to the indexed shape (leading 1s of
 * v dropped, as torch's setitem). Records the assignment for autograd when t
 * or v requires grad; refuses (GB_ERR_AUTOGRAD) a leaf that requires grad
 * and a view of a tensor that requires grad. Nothing is written on failure. */
gb_status gb_index_put_(gb_tensor *t, const char *expr, gb_tensor *v);
gb_status gb_index_put_expr_(gb_tensor *t, const gb_index_expr *e, gb_tensor *v);
/* In place: t[expr] = value. */
gb_status gb_index_fill_(gb_tensor *t, const char *expr, float value);

/* ---- elementwise -------------------------------------------------------- */

gb_tensor *gb_add(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_sub(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_mul(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_div(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_pow(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_maximum(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_minimum(gb_tensor *a, gb_tensor *b);
/* torch.remainder (the result takes b's sign: -5 % 2 = 1; gradient 1 for a,
 * -floor(a / b) for b) and torch.floor_divide (rounds down: -5 // 2 = -3;
 * records, but its backward fails as PyTorch's). f32, broadcasting. */
gb_tensor *gb_remainder(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_floor_divide(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_add_scalar(gb_tensor *a, float s);
gb_tensor *gb_sub_scalar(gb_tensor *a, float s); /* a - s */
gb_tensor *gb_rsub_scalar(gb_tensor *a, float s); /* s - a */
gb_tensor *gb_mul_scalar(gb_tensor *a, float s);
gb_tensor *gb_div_scalar(gb_tensor *a, float s);
gb_tensor *gb_pow_scalar(gb_tensor *a, float p);
gb_tensor *gb_neg(gb_tensor *a);
gb_tensor *gb_exp(gb_tensor *a);
gb_tensor *gb_log(gb_tensor *a);
gb_tensor *gb_sqrt(gb_tensor *a);
gb_tensor *gb_rsqrt(gb_tensor *a);
gb_tensor *gb_tanh(gb_tensor *a);
gb_tensor *gb_sigmoid(gb_tensor *a);
gb_tensor *gb_abs(gb_tensor *a);
gb_tensor *gb_clamp(gb_tensor *a, float min, float max); /* -INFINITY/INFINITY: open */
gb_tensor *gb_relu(gb_tensor *a);
gb_tensor *gb_gelu(gb_tensor *a);      /* exact: x/2 (1 + erf(x/sqrt 2)) */
gb_tensor *gb_gelu_tanh(gb_tensor *a); /* gelu_new: tanh approximation */
gb_tensor *gb_silu(gb_tensor *a);
/* Comparisons give GB_DTYPE_BOOL tensors (no gradient); any dtypes,
 * compared by value (two i64 tensors exactly). */
gb_tensor *gb_eq(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_ne(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_lt(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_le(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_gt(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_ge(gb_tensor *a, gb_tensor *b);
gb_tensor *gb_eq_scalar(gb_tensor *a, float s);
gb_tensor *gb_gt_scalar(gb_tensor *a, float s);
gb_tensor *gb_lt_scalar(gb_tensor *a, float s);
/* cond ? a : b, cond a bool tensor; all three broadcast. */
gb_tensor *gb_where(gb_tensor *cond, gb_tensor *a, gb_tensor *b);
/* a with value where mask (bool) is true; a and mask broadcast together, as torch. */
gb_tensor *gb_masked_fill(gb_tensor *a, gb_tensor *mask, float value);

/* ---- reductions --------------------------------------------------------- */

/* An i64 input gives an i64 sum, max or min, exact (sums wrap around as
 * torch's); mean and var of i64 are refused as torch refuses them. */
/* Over one dim, keeping it as size 1 when keepdim. */
gb_tensor *gb_sum(gb_tensor *a, int dim, bool keepdim);
gb_tensor *gb_mean(gb_tensor *a, int dim, bool keepdim);
gb_tensor *gb_max(gb_tensor *a, int dim, bool keepdim); /* values; gradient to the first extreme */
gb_tensor *gb_min(gb_tensor *a, int dim, bool keepdim);
gb_tensor *gb_argmax(gb_tensor *a, int dim, bool keepdim); /* i64, first max; any dtype */
gb_tensor *gb_argmin(gb_tensor *a, int dim, bool keepdim);
/* Variance with Bessel's correction when correction = 1 (torch's default);
 * correction >= n gives inf/nan, as torch. */
gb_tensor *gb_var(gb_tensor *a, int dim, int correction, bool keepdim);
/* Over several dims (ndims entries; ndims = 0 means all: a 0-dim result). */
gb_tensor *gb_sum_dims(gb_tensor *a, int ndims, const int *dims, bool keepdim);
gb_tensor *gb_mean_dims(gb_tensor *a, int ndims, const int *dims, bool keepdim);
/* Sum / mean / max of all elements: 0-dim. max_all's gradient is shared
 * evenly by tied maxima, as torch's max() with no dim. */
gb_tensor *gb_sum_all(gb_tensor *a);
gb_tensor *gb_mean_all(gb_tensor *a);
gb_tensor *gb_max_all(gb_tensor *a);
/* torch.linalg.vector_norm(a, p, dims, keepdim) over ndims dims (0: all):
 * sum(|a|^p)^(1/p) for any p > 0 (also below 1), INFINITY the largest |a|,
 * -INFINITY the smallest, 0 the number of nonzeros. Its gradient is
 * PyTorch's, case by case: 0 where the norm is 0 (p = 2 gives no NaN at a
 * zero row), shared by ties for +-INFINITY, none for p = 0. */
gb_tensor *gb_norm(gb_tensor *a, double p, int ndims, const int *dims, bool keepdim);
/* How many elements of t are NaN or infinite (0 for integer and bool
 * dtypes and for shape-only tensors), and in *first, when not NULL, the
 * row-major index of the first of them, or -1. A query, not an op: no
 * result tensor, no autograd; any strides. */
int64_t gb_count_nonfinite(const gb_tensor *t, int64_t *first);

/* ---- linear algebra and nn functions ------------------------------------ */

/* torch.matmul: 1-D and 2-D operands and batched (broadcast batch dims)
 * through OpenBLAS sgemm; transposed views are passed to sgemm as transposes,
 * not copied. An f16/bf16 2-D b (a weight) is read as stored by kernels of
 * glassbox's own (one pass over it for up to 32 rows of a) or converted in
 * panels for sgemm; other f16/bf16 operands are converted. The result is f32;
 * two i64 operands give an exact i64 product (wrapping as torch's). */
gb_tensor *gb_matmul(gb_tensor *a, gb_tensor *b);
/* x @ w^T + b (torch.nn.functional.linear); bias may be NULL. w and bias may
 * be f16/bf16 (as in matmul; w or its transpose needs a unit stride to be
 * read without a copy). */
gb_tensor *gb_linear(gb_tensor *x, gb_tensor *w, gb_tensor *bias);
gb_tensor *gb_softmax(gb_tensor *a, int dim);
gb_tensor *gb_log_softmax(gb_tensor *a, int dim);
/* Over the last dim; weight and bias [n] may be NULL, and f16/bf16. */
gb_tensor *gb_layer_norm(gb_tensor *x, gb_tensor *weight, gb_tensor *bias, float eps);
/* x * rsqrt(mean(x^2) + eps) * weight over the last dim (HF LlamaRMSNorm);
 * weight may be NULL (no scaling), and f16/bf16. */
gb_tensor *gb_rms_norm(gb_tensor *x, gb_tensor *weight, float eps);
/* Rotary position embedding over the last dim D (HF's apply_rotary_pos_emb):
 * x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[..., D/2:],
 * x[..., :D/2]); cos and sin broadcast to x's shape (a shape error names
 * them otherwise). Gradients flow to all three. */
gb_tensor *gb_rope(gb_tensor *x, gb_tensor *cos, gb_tensor *sin);
/* softmax(scale q k^T, hidden keys left out) v as one op, the attention of
 * Hugging Face's eager implementation: q [B, H, T, D], k [B, KV, S, D],
 * v [B, KV, S, Dv] with H a multiple of KV (query head h reads key head
 * h / (H / KV): grouped-query attention without copying k and v); hidden,
 * NULL or bool broadcast to [B, H, T, S], true where a query must not see a
 * key. A query that sees no key gets the mean of all S values (what
 * masked_fill with finfo(float32).min then softmax gives). Result
 * [B, H, T, Dv], f32; gradients flow to q, k and v. The [B, H, T, S]
 * probabilities are never stored (compute them with the ops to look at
 * them): blocks of rows at a time, forward and backward. */
gb_tensor *gb_scaled_dot_product_attention(gb_tensor *q, gb_tensor *k, gb_tensor *v, gb_tensor *hidden, float scale);
/* weight[ids]: ids i64 or i32 of any shape, result shape ids.shape + [dim]
 * (f32; an f16/bf16 weight's rows are converted); an id outside [0, rows)
 * fails with GB_ERR_INDEX naming it. */
gb_tensor *gb_embedding(gb_tensor *weight, gb_tensor *ids);
/* Mean cross-entropy of logits [N, C] against targets [N] (i64 or i32);
 * targets equal to ignore_index do not count (torch's default is -100). */
gb_tensor *gb_cross_entropy(gb_tensor *logits, gb_tensor *targets, int64_t ignore_index);
/* cat, stack, tril and triu work on any dtype; cat needs one dtype for all. */
gb_tensor *gb_cat(int n, gb_tensor *const *ts, int dim);
gb_tensor *gb_stack(int n, gb_tensor *const *ts, int dim);
/* Zero the elements above (tril) / below (triu) diagonal k of the last two dims. */
gb_tensor *gb_tril(gb_tensor *a, int64_t k);
gb_tensor *gb_triu(gb_tensor *a, int64_t k);

/* torch.gather(a, dim, index): out[..i..] = a[..index[..i..]..] along dim;
 * index is i64 with a's shape except in dim, each in [0, size) (a negative
 * one is refused, as torch: "index -1 is out of bounds for dimension 1 with
 * size 5"). a is f32 (the gradient scatter-adds into it) or i64 (exact). */
gb_tensor *gb_gather(gb_tensor *a, int dim, gb_tensor *index);
/* torch.topk(a, k, dim) (largest, sorted): values (a's dtype, f32 or i64;
 * f32 with a gradient through gather) and indices (i64), new references, both NULL on
 * failure. Equal values come in index order; NaN counts as the largest. */
gb_status gb_topk(gb_tensor *a, int64_t k, int dim, gb_tensor **values, gb_tensor **indices);

/* ---- printing ----------------------------------------------------------- */

/* torch's str(t): "tensor([[ 0.2732,  0.2355]])", with torch's default print
 * options: precision 4, the same padding, and summarisation ("..." past 1000
 * elements, 3 items each side). Non-default dtypes add ", dtype=torch.int32"
 * as torch does; autograd suffixes (grad_fn=...) are not printed. Caller
 * frees with free(). */
char *gb_tensor_str(const gb_tensor *t);
/* "f32[2, 3] contiguous" style one-line summary. Caller frees. */
char *gb_tensor_describe(const gb_tensor *t);

/* ---- threads and BLAS --------------------------------------------------- */

/* OpenBLAS and the host's environment. glassbox loads OpenBLAS with dlopen
 * on the first op that needs it (a product, or gb_blas_kernel). OpenBLAS
 * reads two variables once, in its constructor, and offers no call to
 * choose its kernel afterwards, so for the duration of that dlopen only,
 * and only for a variable the process has not set (unset or empty):
 *   OPENBLAS_CORETYPE     is set to the kernel for this CPU's features
 *                         (Debian's 0.3.21 misdetects some AVX-512 Xeons);
 *   OPENBLAS_NUM_THREADS  is set to 1 (glassbox threads products itself);
 * then each is put back as it was (unset again). Nothing else is written,
 * and no variable is touched later; the thread count is then set with
 * openblas_set_num_threads(1). setenv is not thread-safe against getenv in
 * other threads: a host with threads reading the environment at that
 * moment, or that wants no write at all, sets both variables itself before
 * the first op (any value: its values are then used as they are, and
 * glassbox calls no setenv). An OpenBLAS the host loaded first is used as it
 * is, with the kernel it chose. */

/* Name of the BLAS kernel in use, e.g. "SkylakeX" (loads OpenBLAS if needed),
 * or NULL with an error when OpenBLAS cannot be loaded. */
const char *gb_blas_kernel(void);
/* Threads used by BLAS and by glassbox's own loops (default, or n < 1: all
 * cores): the size of the OpenMP team each calling thread opens, so N
 * application threads running ops use up to N times that many. The first
 * product loads OpenBLAS, setting two environment variables for its
 * constructor and putting them back; a program whose other threads read
 * the environment should call gb_blas_kernel first. */
void gb_set_num_threads(int n);
int gb_get_num_threads(void);

#ifdef __cplusplus
}
/* GB_AT in C++: overloads instead of _Generic. */
static inline gb_status gb__ts_site_leave(gb_status s) { return gb__ts_site_leave_status(s); }
template <class T> static inline T *gb__ts_site_leave(T *p) { return (T *)gb__ts_site_leave_ptr(p); }
#define GB_AT(expr) gb__ts_site_leave((gb__ts_site_enter(__FILE__, __LINE__), (expr)))
#endif

#endif
