/* Products with an nn.Linear weight on AVX-512, without OpenBLAS's packing
 * of it.
 *
 * A forward of 128 tokens multiplies [128, K] activations by [N, K]
 * weights (nn.Linear's [out, in]: Llama's every product, GPT-2's tied
 * lm_head). OpenBLAS copies the weight into its packed layout on every
 * call, a transposing copy of every element, read once and used for only
 * 128 rows: 25-30% of the forward at one thread was that copy
 * (sgemm_incopy) against 45% in its kernel. Here the weight is read where
 * it lies and only the small side is copied: C^T = W @ A^T, each tile 12
 * weight rows as stored (a broadcast per element: 12 sequential streams,
 * prefetched since they come from memory) against 32 columns of A^T,
 * packed once per call into [M/32][K][32] (M x K floats, in L2 at these
 * sizes); the tile's [12 n, 32 m] sums are written transposed into C.
 *
 * The tile is 12 x 32: 24 accumulators of 16 floats, two vector loads and
 * 12 broadcasts per step of k, the whole of K in one pass (no partial sums
 * in C). Threads take spans of weight rows; every element of C is one
 * tile's sum in k order, so results do not depend on the thread count.
 *
 * Measured against OpenBLAS 0.3.21 in the same process at one thread (CPU
 * time, weights cold as in a forward): 1.23-1.38x at 128 x 768 x 768 /
 * 2048 / 3072 / 32000 / 50257 and 128 x 2048 x 768, 1.5-1.9x at 8-32
 * rows, 1.07x at 256 x 768 x 3072, 0.95x at 512 x 768 x 768 (hence the
 * limit on A). The same scheme for Conv1D's
 * [K, N] weight (A broadcast, W copied into [K][32] panels, since its rows
 * N floats apart share cache sets) measured 0.9-1.05x: the panel copy waits
 * on memory as OpenBLAS's does, so Conv1D stays with sgemm. Used for one
 * product (no batch) of at most GB__WG_MAX_A bytes of activations (A^T is
 * read from L2 once per 12 weight rows) on a CPU with AVX-512; the rest,
 * and other CPUs, go to sgemm (gb__ts_gemm). */
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "base.h"
#include "blas.h"

enum { GB__WG_MR = 12, GB__WG_NR = 32 };
#define GB__WG_MAX_A ((double)(1 << 20))
#define GB__WG_MIN_ROWS 5          /* fewer rows take the matrix-vector kernels */
#define GB__WG_MIN_WEIGHT 65536.0 /* smaller weights: sgemm, whose setup costs less */

#define GB__AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma,avx2,f16c")))

/* out[r][0:32] = sum_i w[r * ldw + i] * v[i * 32 + 0:32] for r < mr, i < k:
 * one tile, its sums left in out for the caller's store. mr is a constant
 * in each instantiation below, so the accumulators live in registers. */
static inline __attribute__((always_inline)) GB__AVX512 void gb__ts_wg_tile(int mr, float *out /* [mr, 32] */,
                                                                       const float *w /* [mr, ldw] */,
                                                                       int64_t ldw,
                                                                       const float *v /* [k, 32] */,
                                                                       int64_t k) {
    __m512 acc[GB__WG_MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i++) {
        if ((i & 15) == 0) /* the rows' next lines: 12 streams from memory */
#pragma GCC unroll 12
            for (int r = 0; r < mr; r++) _mm_prefetch((const char *)(w + r * ldw + i + 64), _MM_HINT_T0);
        __m512 v0 = _mm512_loadu_ps(v + i * GB__WG_NR), v1 = _mm512_loadu_ps(v + i * GB__WG_NR + 16);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512 x = _mm512_set1_ps(w[r * ldw + i]);
            acc[r][0] = _mm512_fmadd_ps(x, v0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, v1, acc[r][1]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        _mm512_storeu_ps(out + r * GB__WG_NR, acc[r][0]);
        _mm512_storeu_ps(out + r * GB__WG_NR + 16, acc[r][1]);
    }
}

typedef void (*gb__ts_wg_tile_fn)(float *, const float *, int64_t, const float *, int64_t);
#define GB__WG_TILE(MR)                                                                                  \
    static GB__AVX512 void gb__ts_wg_tile_##MR(float *out, const float *w, int64_t ldw, const float *v, \
                                               int64_t k) {                                             \
        gb__ts_wg_tile(MR, out, w, ldw, v, k);                                                         \
    }
#define GB__WG_TILES(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12)
GB__WG_TILES(GB__WG_TILE)
#define GB__WG_TILE_REF(MR) gb__ts_wg_tile_##MR,
static const gb__ts_wg_tile_fn gb__ts_wg_tiles[GB__WG_MR + 1] = {NULL, GB__WG_TILES(GB__WG_TILE_REF)};

/* C^T = W @ A^T over W's rows [n0, n1): c [m, ldc], w [n, ldw] (rows of k
 * floats), at [ceil(m / 32), k, 32] (A packed, zero past m). */
static GB__AVX512 void gb__ts_wg_rows(float *c, int64_t ldc, const float *w, int64_t ldw, const float *at, int64_t m,
                                      int64_t k, int64_t n0, int64_t n1, float beta) {
    float out[GB__WG_MR * GB__WG_NR];
    const __m512i col = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(GB__WG_NR)); /* out's column: r * 32 */
    for (int64_t n = n0; n < n1; n += GB__WG_MR) {
        int mr = n1 - n < GB__WG_MR ? (int)(n1 - n) : GB__WG_MR;
        __mmask16 mask = (__mmask16)((1u << mr) - 1);
        for (int64_t m0 = 0; m0 < m; m0 += GB__WG_NR) {
            gb__ts_wg_tiles[mr](out, w + n * ldw, ldw, at + m0 * k, k);
            int64_t mv = m - m0 < GB__WG_NR ? m - m0 : GB__WG_NR;
            for (int64_t j = 0; j < mv; j++) { /* column j of the tile is mr floats of C's row m0 + j */
                float *cj = c + (m0 + j) * ldc + n; /* [mr] */
                __m512 s = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, col, out + j, 4);
                if (beta != 0.0f) s = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mask, cj), s);
                _mm512_mask_storeu_ps(cj, mask, s);
            }
        }
    }
}

/* A^T packed for gb__ts_wg_rows: at [ceil(m / 32), k, 32] from a [m, lda],
 * zero past m; panels [q0, q1). */
static void gb__ts_wg_pack_at(float *at, const float *a, int64_t lda, int64_t m, int64_t k, int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; q++) {
        float *aq = at + q * GB__WG_NR * k; /* [k, 32] */
        int64_t mv = m - q * GB__WG_NR < GB__WG_NR ? m - q * GB__WG_NR : GB__WG_NR;
        if (mv < GB__WG_NR) memset(aq, 0, (size_t)(k * GB__WG_NR) * sizeof(float));
        /* written in order, read from mv rows at once (their current lines
         * stay in L1): writing 32 floats apart instead cost 3.5 cycles an
         * element, 5% of the Llama-shaped forward (now 3%) */
        const float *aq0 = a + q * GB__WG_NR * lda; /* [mv, lda] */
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < mv; j++) aq[i * GB__WG_NR + j] = aq0[j * lda + i];
    }
}

bool gb__ts_wgemm(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta) {
    int64_t m = c->rows, n = c->cols, k = a->cols;
    if (!(gb__ts_cpu_features() & GB__CPU(AVX512F)) || m < GB__WG_MIN_ROWS || a->cs != 1 || c->cs != 1 ||
        b->rs != 1 || b->cs < k || 4.0 * (double)m * (double)k > GB__WG_MAX_A ||
        (double)n * (double)k < GB__WG_MIN_WEIGHT)
        return false;
    int64_t units = (n + GB__WG_MR - 1) / GB__WG_MR, mq = (m + GB__WG_NR - 1) / GB__WG_NR;
    int threads = gb__threads();
    if (threads > units) threads = (int)units;
    /* A^T through the tensor allocator: its kept mappings serve the same
     * size again without faulting pages in on every call */
    gb_tensor *scratch = gb_empty(1, (int64_t[]){mq * GB__WG_NR * k}, GB_DTYPE_F32);
    if (!scratch) return false;
    float *at = gb_tensor_data(scratch); /* [mq, k, 32] */
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        gb__ts_wg_pack_at(at, a->p, a->rs, m, k, mq * t / nt, mq * (t + 1) / nt);
#pragma omp barrier
        int64_t n0 = units * t / nt * GB__WG_MR, n1 = units * (t + 1) / nt * GB__WG_MR;
        gb__ts_wg_rows(c->p, c->rs, b->p, b->cs, at, m, k, n0, n1 < n ? n1 : n, beta);
    }
    gb_tensor_free(scratch);
    return true;
}
