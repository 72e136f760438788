/* Private to glassbox: OpenBLAS, loaded at run time (see blas.c for why),
 * the choice of its kernel, and the strided-matrix gemm the nn ops share.
 * Users call gb_blas_kernel / gb_set_num_threads from tensor.h instead. */
#ifndef GB_BLAS_H
#define GB_BLAS_H

#include "tensor_impl.h"

#include <cblas.h> /* types and prototypes only: glassbox does not link -lopenblas */

/* ---- CPU features and the kernel table ---------------------------------- */

/* X-macro: name, the feature string __builtin_cpu_supports takes. */
#define GB__CPU_FEATURE_LIST(X) \
    X(AVX, "avx")               \
    X(AVX2, "avx2")             \
    X(FMA, "fma")               \
    X(F16C, "f16c")             \
    X(AVX512F, "avx512f")       \
    X(AVX512CD, "avx512cd")     \
    X(AVX512BW, "avx512bw")     \
    X(AVX512DQ, "avx512dq")     \
    X(AVX512VL, "avx512vl")     \
    X(AVX512BF16, "avx512bf16") \
    X(AMXTILE, "amx-tile")      \
    X(AMXBF16, "amx-bf16")

enum {
#define GB__X(e, s) GB__CPU_BIT_##e,
    GB__CPU_FEATURE_LIST(GB__X)
#undef GB__X
};
#define GB__CPU(e) (1u << GB__CPU_BIT_##e)

/* The features of this CPU that the OS also enables, as GB__CPU bits. */
unsigned gb__ts_cpu_features(void);
/* The OPENBLAS_CORETYPE glassbox sets for a CPU with `features`, or NULL to
 * leave the choice to OpenBLAS. A pure function of its argument. */
const char *gb__ts_blas_coretype_for(unsigned features);

/* ---- the loaded library ------------------------------------------------- */

typedef struct gb__ts_blas {
    void *handle;
    const char *path; /* the name dlopen accepted */
    __typeof__(cblas_sgemm) *sgemm;
    __typeof__(openblas_set_num_threads) *set_num_threads;
    __typeof__(openblas_get_num_threads) *get_num_threads;
    __typeof__(openblas_get_corename) *get_corename;
    __typeof__(openblas_get_config) *get_config;
    bool openmp;           /* built with USE_OPENMP: threads follow the caller's omp ICV */
    char coretype_set[32]; /* what glassbox put in OPENBLAS_CORETYPE, "" if none */
} gb__ts_blas;

/* The process-wide OpenBLAS, loaded on first call (thread-safe) and kept
 * single-threaded: glassbox splits products over its own OpenMP threads
 * (gb__ts_gemm). NULL with GB_ERR_UNSUPPORTED (naming the library) when it
 * cannot be loaded; every later call fails the same way. */
const gb__ts_blas *gb__ts_blas_get(void);
/* dlopen the first of `names` (NULL-terminated) that loads and resolve the
 * symbols into *out. Only the loader: no environment, no threads. Used by
 * gb__ts_blas_get and by the tests of its error paths. */
gb_status gb__ts_blas_open(const char *const *names, gb__ts_blas *out);
void gb__ts_blas_close(gb__ts_blas *b);

/* ---- strided batched gemm ----------------------------------------------- */

/* One operand of a batched matrix product: a [rows, cols] matrix with element
 * strides rs, cs, repeated over the broadcast batch shape with bstride (0 on
 * a broadcast batch dim). */
typedef struct gb__ts_mat {
    float *p;
    int64_t rows, cols, rs, cs;
    int64_t bstride[GB_MAX_DIMS];
} gb__ts_mat;

/* Whether m can be handed to sgemm as is: as "N" (unit column stride) or "T"
 * (unit row stride), with the leading dimension. */
bool gb__ts_mat_blas_layout(const gb__ts_mat *m, CBLAS_TRANSPOSE *trans, int *ld);
/* The transpose of m (a view: strides swapped). */
gb__ts_mat gb__ts_mat_t(gb__ts_mat m);
/* C[b] = A[b] @ B[b] + beta * C[b] for every index b of the batch shape;
 * batches that share a C (a stride-0 batch dim of C) add up into it, the
 * first with beta. A, B must pass gb__ts_mat_blas_layout; C must have unit
 * column or unit row stride. Runs on gb__threads() threads: whole products,
 * or blocks of C's rows or columns, one sgemm each. */
gb_status gb__ts_gemm(const char *op, const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta, int nbatch_dims,
                   const int64_t *batch_shape);

/* C = beta C + A @ B for one product on AVX-512 by wgemm.c's kernels:
 * B the transpose of a row-major weight (unit row stride: nn.Linear's
 * [N, K] weight in a forward, Conv1D's [K, N] in the gradient to its
 * input) or a weight stored [K, N], read in place, for 5 rows or more,
 * activations A of at most 1 MB and unit column strides in A and C; or A's
 * transpose stored with a sum of at most 512 (a weight's gradient dY^T X).
 * False when none applies: sgemm takes the product then. */
bool gb__ts_wgemm(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta);
/* C = A @ B + bias (bias [C's cols], added to each row) by the same kernel
 * when B is such a weight stored transposed; false, computing nothing,
 * otherwise (then the caller fills C with the bias and adds the product). */
bool gb__ts_wgemm_bias(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, const float *bias);
/* C_i = A @ W_i for nw (at most 8) weights W_i whose transposes are stored
 * (unit row stride) that share A: A packed once, one parallel region for
 * all (q, k and v; gate and up). False, computing nothing, unless
 * gb__ts_wgemm would take each product with the W^T kernel. */
bool gb__ts_wgemm_shared(int nw, const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *w);
/* Small products inside other kernels (attention's blocks), on the calling
 * thread, no allocation, with the same 12 x 32 tiles; only where
 * gb__ts_wg_small_ok (AVX-512). B goes in as panels of 32 columns,
 * bp [ceil(n / 32), k, 32] (zeros past n): gb__ts_wg_small_pack copies
 * them out of b [k, n] (row stride ldb), gb__ts_wg_small_pack_t out of
 * b^T [n, k] (b's transpose stored, row stride ldb). gb__ts_wg_small:
 * c [m, n] (row stride ldc) = a [m, k] (row stride lda) @ b, from the
 * first k rows of panels packed with kp >= k rows. */
bool gb__ts_wg_small_ok(void);
void gb__ts_wg_small_pack(float *bp, const float *b, int64_t ldb, int64_t k, int64_t n);
void gb__ts_wg_small_pack_t(float *bp, const float *b, int64_t ldb, int64_t n, int64_t k);
void gb__ts_wg_small(float *c, int64_t ldc, const float *a, int64_t lda, const float *bp, int64_t kp, int64_t m,
                     int64_t n, int64_t k);

/* OpenBLAS's OpenMP build threads a call made outside a parallel region
 * by the caller's OpenMP thread count: a caller about to call sgemm outside
 * one (par false) holds that count at one with gb__ts_blas_pin, which returns
 * what gb__ts_blas_unpin restores (0: nothing to restore). */
int gb__ts_blas_pin(const gb__ts_blas *blas, bool par);
void gb__ts_blas_unpin(int pinned);

/* A contiguous tensor with t's values (a new reference to t when it already
 * is): plain data for kernels, without recording an op. */
gb_tensor *gb__ts_dense(const gb_tensor *t);
/* The same as a contiguous f32 tensor (f16/bf16 converted). */
gb_tensor *gb__ts_dense_f32(const gb_tensor *t);

#endif
