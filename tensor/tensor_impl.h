/* Private to glassbox: the tensor layout, the op table and the helpers that
 * every op implementation shares. Users include tensor.h only. */
#ifndef GB_TENSOR_IMPL_H
#define GB_TENSOR_IMPL_H

#include "base.h"
#include "tensor.h"

#include <stdarg.h>
#include <stdatomic.h>

/* ---- storage and tensor ------------------------------------------------- */

typedef struct gb_storage {
    void *data;                 /* NULL for meta tensors (shape-only runs) */
    size_t nbytes;
    /* Atomic: a model's weights are shared by every thread running it, and
     * each op takes and drops references to them (++ and -- on an _Atomic
     * are single atomic read-modify-writes). */
    atomic_int refcount;
    uint32_t version;           /* bumped by every in-place write: autograd
                                   compares it with the value seen at record time */
    void (*release)(void *ctx); /* memory not from malloc: gb_from_blob, safetensors mmap, large storages */
    void *release_ctx;
    bool owned;                 /* data was malloc'd by glassbox */
} gb_storage;

typedef struct gb__ts_grad_hook gb__ts_grad_hook; /* autograd/, opaque here */

/* The op enum is the concatenation of one X-macro list per op family; each
 * family lives in its own .def file beside the .c file that implements it.
 * An entry X(NAME, "name", SAVES) declares GB_OP_NAME, and the implementing
 * file defines gb__ts_op_NAME_forward and gb__ts_op_NAME_backward (see below).
 * SAVES tells autograd which values the backward reads, so that an in-place
 * write to one of them between forward and backward is an error, not a
 * silently wrong gradient: a bitmask of GB__SAVES_SRC(i) and GB__SAVES_OUT. */
#define GB__SAVES_NONE 0u
#define GB__SAVES_SRC(i) (1u << (i))
#define GB__SAVES_ALL_SRC 0x7fu
#define GB__SAVES_OUT 0x80u
/* In the same mask: the backward writes the whole gradient of src i when
 * its buffer is blank (`blank`, then cleared) instead of adding into it. Autograd
 * zeroes a blank buffer before any other backward adds into it; the
 * products' backwards write theirs with beta 0, which spares writing zeros
 * over every weight's gradient (8% of a Llama-shaped training step). */
#define GB__WRITES_SRC(i) (1u << (8 + (i)))

#define GB_OP_LIST(X)                    \
    X(NONE, "none", GB__SAVES_NONE)      \
    GB__OPS_CORE(X)                      \
    GB__OPS_ELEMENTWISE(X)               \
    GB__OPS_INDEX(X)                     \
    GB__OPS_NN(X)

#include "ops_core.def"
#include "ops_elementwise.def"
#include "ops_index.def"
#include "ops_nn.def"

typedef enum gb_op {
#define GB__X(e, n, s) GB_OP_##e,
    GB_OP_LIST(GB__X)
#undef GB__X
    GB_OP_COUNT
} gb_op;

#define GB__MAX_IPARAM 24
#define GB__MAX_FPARAM 4

struct gb_tensor {
    atomic_int refcount; /* atomic for the same reason as the storage's */
    gb_dtype dtype;
    int ndim;
    int64_t shape[GB_MAX_DIMS];
    int64_t stride[GB_MAX_DIMS]; /* in elements */
    int64_t offset;              /* in elements */
    gb_storage *storage;
    char *name;

    /* How this tensor was made. op is always set; src is kept only while
     * autograd records (some source requires grad and grad mode is on) and
     * until backward frees the graph. */
    gb_op op;
    int nsrc;
    gb_tensor **src;
    uint32_t *src_version; /* storage versions of src at record time */
    uint32_t out_version;  /* own storage version right after forward */
    int64_t iparam[GB__MAX_IPARAM];
    float fparam[GB__MAX_FPARAM];
    void *op_ctx;          /* op-specific data, free()d with the tensor */
    gb_tensor *saved[2];   /* extra tensors a forward keeps for its backward */

    /* autograd state (see autograd/autograd.h) */
    bool requires_grad;
    bool retain_grad;
    bool graph_freed;      /* backward ran without retain_graph */
    gb_tensor *grad;       /* .grad of leaves and retain_grad tensors */
    gb_tensor *grad_acc;   /* accumulating gradient during one backward */
    bool blank;            /* a gradient buffer nothing has written yet: its
                              contents are undefined and mean zero (see
                              GB__WRITES_SRC) */
    gb__ts_grad_hook *hooks;  /* stb_ds array, owned by autograd/ */
    uint64_t topo_mark;    /* visited-marker of the current backward walk */
};

/* ---- op table ----------------------------------------------------------- */

/* forward: compute out's data from out->src and the params. out is allocated,
 *          contiguous unless the op is a view.
 * backward: given dout (contiguous f32, out's shape), ACCUMULATE (+=) the
 *          gradient of each source into dsrc[i] (contiguous f32 of src[i]'s
 *          shape), skipping sources whose dsrc[i] is NULL. Never overwrite:
 *          a source used twice receives two contributions. NULL backward =
 *          not differentiable. */
typedef gb_status (*gb__ts_forward_fn)(gb_tensor *out);
typedef gb_status (*gb__ts_backward_fn)(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc);

typedef struct gb__ts_op_info {
    const char *name;
    gb__ts_forward_fn forward;
    gb__ts_backward_fn backward;
    unsigned saves;
} gb__ts_op_info;

extern const gb__ts_op_info gb__ts_ops[GB_OP_COUNT];

#define GB__X(e, n, s)                                  \
    gb_status gb__ts_op_##e##_forward(gb_tensor *out);     \
    gb_status gb__ts_op_##e##_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc);
GB_OP_LIST(GB__X)
#undef GB__X

/* ---- making op results -------------------------------------------------- */

/* Every op goes through these two calls:
 *
 *     gb_tensor *out = gb__ts_op_new(GB_OP_ADD, "add", GB_DTYPE_F32, nd, shape, 2, (gb_tensor *[]){a, b});
 *     if (!out) return NULL;
 *     out->fparam[0] = alpha;                    // params the forward reads
 *     return gb__ts_op_run(out);
 *
 * gb__ts_op_new allocates the output (contiguous; no data in meta mode or when a
 * source is meta), records op and sources; gb__ts_op_run runs the forward (not in
 * meta mode), then either keeps the sources for autograd or drops them. On
 * failure both free what they made and return NULL with the error set.
 * `what` is the user-facing op name used in error messages. */
gb_tensor *gb__ts_op_new(gb_op op, const char *what, gb_dtype dt, int ndim, const int64_t *shape,
                      int nsrc, gb_tensor *const *src);
/* Like gb__ts_op_new but the output is a view of src[0]'s storage with the given
 * geometry (no allocation). */
gb_tensor *gb__ts_op_new_view(gb_op op, const char *what, gb_tensor *src, int ndim,
                           const int64_t *shape, const int64_t *stride, int64_t offset);
gb_tensor *gb__ts_op_run(gb_tensor *out);

/* Whether ops record for autograd now (grad mode on and some src requires
 * grad). Grad mode is thread-local; autograd/ exposes it to users. */
bool gb__ts_grad_mode(void);
void gb__ts_set_grad_mode(bool on);
/* Meta mode: ops compute shapes only (thread-local, nestable counter). */

/* Copy src (broadcast to dst's shape, any dtypes, any strides) into dst's
 * data. No autograd, no version bump: for op implementations. */
gb_status gb__ts_copy_into(gb_tensor *dst, const gb_tensor *src);
/* t is a dense 2-D matrix stored transposed: the transpose of a contiguous
 * one (a [cols, rows] storage viewed as [rows, cols]: Conv1D's weight). */
bool gb__ts_is_transposed(const gb_tensor *t);
/* A new f32 [rows, cols] matrix stored transposed (zeroed when asked). */
gb_tensor *gb__ts_transposed_new(int64_t rows, int64_t cols, bool zero);
/* x [..., K] times the transposes of several f32 weights w_i [N_i, K]
 * (rows contiguous): out_i [..., N_i], new tensors, as one product that
 * packs x once (Llama's q, k and v projections; gate and up). Only where
 * nothing records a gradient; no bias. False, with out all NULL, when the
 * shared kernel does not take them (other CPUs, shapes, strides, dtypes,
 * memory): the caller runs gb_linear on each. */
bool gb__ts_linear_shared(gb_tensor *x, int n, gb_tensor *const *w, gb_tensor **out);
/* a = silu(a) * b in place (Llama's act_fn(gate) * up in one pass), for a
 * tensor nothing else holds, b of its shape, both f32 and contiguous, when
 * nothing records a gradient; false, touching nothing, otherwise. */
bool gb__ts_silu_mul_(gb_tensor *a, const gb_tensor *b);
/* Zero the gradient buffer g if it is blank (g may be NULL). */
void gb__ts_grad_settle(gb_tensor *g);
/* Release t's sources and saved tensors (autograd frees the graph with it). */
void gb__ts_tensor_drop_graph(gb_tensor *t);

/* Record an in-place write on t's storage (bumps the version). */
void gb__ts_bump_version(gb_tensor *t);

/* A zeroed tensor struct with one reference and no storage (for ops that
 * build a node by hand, like gb_index_put_'s rebase). */
gb_tensor *gb__ts_tensor_shell(const char *what);
/* Number of tensor structs alive in the process (tests check for growth). */
int64_t gb__ts_live_tensors(void);

/* ---- shapes ------------------------------------------------------------- */

int64_t gb__ts_numel(int ndim, const int64_t *shape);
void gb__ts_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
/* Normalise dim into [0, ndim) or fail with GB_ERR_INDEX naming op. */
gb_status gb__ts_norm_dim(const char *op, int *dim, int ndim);
/* Broadcast shapes a and b (PyTorch rules) into out (ndim = max). */
gb_status gb__ts_broadcast_shapes(const char *op, int na, const int64_t *a, int nb, const int64_t *b,
                               int *nout, int64_t *out);
/* Strides for reading t as if expanded to (ndim, shape): 0 on broadcast dims.
 * t must broadcast to the shape (checked by gb__ts_broadcast_shapes). */
void gb__ts_broadcast_strides(const gb_tensor *t, int ndim, const int64_t *shape, int64_t *stride);
/* Format "[2, 3]" into buf (at least 128 bytes recommended); returns buf. */

/* ---- strided iteration -------------------------------------------------- */

/* Walks a shape in row-major order keeping element offsets for up to four
 * operands, each with its own strides (0 = broadcast):
 *
 *     gb__ts_iter it; gb__ts_iter_init(&it, nd, shape, 2, (const int64_t *[]){sa, sb});
 *     for (int64_t i = 0; i < it.n; i++, gb__ts_iter_next(&it)) f(a[it.off[0]], b[it.off[1]]);
 */
typedef struct gb__ts_iter {
    int ndim, nops;
    int64_t n;
    int64_t shape[GB_MAX_DIMS];
    int64_t idx[GB_MAX_DIMS];
    int64_t stride[4][GB_MAX_DIMS];
    int64_t off[4];
} gb__ts_iter;
void gb__ts_iter_init(gb__ts_iter *it, int ndim, const int64_t *shape, int nops, const int64_t *const *strides);
/* Position the iterator at linear element i (for splitting loops across threads). */
void gb__ts_iter_seek(gb__ts_iter *it, int64_t i);
static inline void gb__ts_iter_next(gb__ts_iter *it) {
    for (int d = it->ndim - 1; d >= 0; d--) {
        for (int k = 0; k < it->nops; k++) it->off[k] += it->stride[k][d];
        if (++it->idx[d] < it->shape[d]) return;
        for (int k = 0; k < it->nops; k++) it->off[k] -= it->stride[k][d] * it->shape[d];
        it->idx[d] = 0;
    }
}

/* Load / store one element of any dtype as float (f32 compute). */
float gb__ts_load_f32(const void *base, gb_dtype dt, int64_t i);
void gb__ts_store_f32(void *base, gb_dtype dt, int64_t i, float v);

#endif
