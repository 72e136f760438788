/* Products with a weight on AVX-512, without OpenBLAS's packing of it.
 *
 * A forward of 128 tokens multiplies [128, K] activations by a weight of
 * K x N, 0.6-9 MB that come from memory once per forward and serve only
 * 128 rows. OpenBLAS copies the whole weight into its packed layout on
 * every call: 25-30% of the forward at one thread was that copy
 * (sgemm_itcopy), waiting on memory, against 45% in its kernel. Two
 * kernels here read the weight as it lies, one per layout:
 *
 * W^T, a weight stored [N, K] (nn.Linear's [out, in]: Llama's every
 * product, GPT-2's tied lm_head, Conv1D's input gradient): C^T = W @ A^T,
 * each tile 12 weight rows as stored (a broadcast per element: 12
 * sequential streams, prefetched since they come from memory) against 32
 * columns of A^T, packed once per call into [M/32][K][32] (M x K floats,
 * in L2 at these sizes); the tile's [12 n, 32 m] sums are written
 * transposed into C. K goes by blocks of at most 1 MB of A^T (one block
 * up to 128 x 2048), added into C after the first, so A^T stays in L2:
 * 1.23-1.38x OpenBLAS 0.3.21 at 128 x 768 x 768 / 2048 / 3072 / 32000 /
 * 50257 and 128 x 2048 x 768, 1.5-1.9x at 8-32 rows, 1.07x at 256 x 768 x
 * 3072, 0.95x at 512 x 768 x 768 (hence the limit of 256 rows) (one
 * thread, CPU time, weights cold as in a forward).
 *
 * W, a weight stored [K, N] (GPT-2's Conv1D in a forward, nn.Linear's
 * weight in the gradient to its input): its rows are N floats apart, so a
 * strip of them shares a handful of cache sets, and read in place it ran
 * at 0.6x OpenBLAS. Instead the weight goes by in memory order, 256 rows at
 * a time: each [256, 32] panel is copied into L1 and serves every 12-row
 * tile of A (read in place), the tile's sums added into C between blocks
 * of rows (C stays in L2: hence the limit on C). The
 * copy would wait on memory as OpenBLAS's does; instead each tile issues
 * its share of prefetches for the next panel, one every 4 steps of its
 * loop, so the loads are spread over the work that hides them (issued
 * together, before the copy or between tiles, they stalled on full fill
 * buffers). 1.1-1.35x OpenBLAS at 128 x 768 x 768 / 2304 / 3072 and 128 x
 * 3072 x 768 (one thread, CPU time, weights cold, with blocks of 64 rows
 * and the prefetches between tiles).
 *
 * A^T stored and a short sum (a weight's gradient dY^T X, summed over the
 * tokens): each 12 x 32 tile of C sums all of it in registers and is
 * stored once, against B packed by panels (gb__ts_wg_outer, below).
 *
 * The tiles are 12 x 32: 24 accumulators of 16 floats, two vector loads
 * and 12 broadcasts per step of k. Threads take spans of N; every element
 * of C is summed in k order by one thread, so results do not depend on
 * the thread count. On other CPUs, and outside the limits, sgemm takes the
 * product (gb__ts_gemm). */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "base.h"
#include "blas.h"

enum { GB__WG_MR = 12, GB__WG_NR = 32 };
#define GB__WG_MAX_A ((double)(1 << 20)) /* bytes of A^T per block of K: it stays in L2 */
#define GB__WG_MAX_ROWS 256                /* 0.95x OpenBLAS at 512 rows */
#define GB__WG_MIN_ROWS 5          /* fewer rows take the matrix-vector kernels */
#define GB__WG_MIN_WEIGHT 65536.0 /* smaller weights: sgemm, whose setup costs less */
#define GB__WG_MAX_SHARED 8        /* weights sharing one A in gb__ts_wgemm_shared */
#define GB__WG_MAX_THREADS 64      /* threads of one product */

#define GB__AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,fma,avx2,f16c")))

/* The lanes of one 16-float vector that hold the first n floats (n may be
 * out of [0, 16]): a panel of 32 columns with nv valid has masks
 * gb__ts_wg_mask(nv) and gb__ts_wg_mask(nv - 16). */
static inline __mmask16 gb__ts_wg_mask(int64_t n) {
    return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1);
}

/* One step of k for both kernels' tiles: acc[r] += x[r * ldx] * v[0:32]
 * for r < mr, mr rows' scalars broadcast against two vectors. */
static inline __attribute__((always_inline)) GB__AVX512 void gb__ts_wg_step(int mr, __m512 acc[][2],
                                                                       const float *x /* [mr, ldx] */,
                                                                       int64_t ldx, const float *v /* [32] */) {
    __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        __m512 b = _mm512_set1_ps(x[r * ldx]);
        acc[r][0] = _mm512_fmadd_ps(b, v0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(b, v1, acc[r][1]);
    }
}

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
    /* 16 steps unrolled, row j's next line prefetched in step j: the rows
     * are 12 streams from memory. With the 12 prefetches together every
     * 16th step, behind a branch in a loop GCC did not unroll, the
     * products ran 8-13% slower (128 x 768 by 768 / 3072 / 32000). */
    int64_t i = 0;
    for (; i + 16 <= k; i += 16)
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) {
            if (j < mr) _mm_prefetch((const char *)(w + j * ldw + i + 64), _MM_HINT_T0);
            gb__ts_wg_step(mr, acc, w + i + j, ldw, v + (i + j) * GB__WG_NR);
        }
    for (; i < k; i++) gb__ts_wg_step(mr, acc, w + i, ldw, v + i * GB__WG_NR);
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

/* r[i][j] = r[j][i]: a 16 x 16 transpose in registers (pairs, then 2 x 2
 * blocks of pairs, then 128-bit lanes: 64 shuffles for 256 floats). */
static inline __attribute__((always_inline)) GB__AVX512 void gb__ts_wg_tr16(__m512 r[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
#pragma GCC unroll 2
    for (int i = 0; i < 16; i += 8)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            t[i + j] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0x88);
            t[i + j + 4] = _mm512_shuffle_f32x4(r[i + j], r[i + j + 4], 0xdd);
        }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

/* C^T = W @ A^T (+ bias) over W's rows [n0, n1): c [m, ldc], w [n, ldw]
 * (rows of k floats), at [ceil(m / 32), k, 32] (A packed, zero past m),
 * bias [n] or NULL (only with beta 0); K by blocks of kb, each added into C
 * after the first. */
static GB__AVX512 void gb__ts_wg_rows(float *c, int64_t ldc, const float *w, int64_t ldw, const float *at, int64_t m,
                                      int64_t k, int64_t kb, int64_t n0, int64_t n1, float beta, const float *bias) {
    float out[GB__WG_MR * GB__WG_NR];
    const __m512i col = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(GB__WG_NR)); /* out's column: r * 32 */
    for (int64_t k0 = 0; k0 < k; k0 += kb) {
        int64_t kl = k - k0 < kb ? k - k0 : kb;
        float bk = k0 == 0 ? beta : 1.0f;
        for (int64_t n = n0; n < n1; n += GB__WG_MR) {
            int mr = n1 - n < GB__WG_MR ? (int)(n1 - n) : GB__WG_MR;
            __mmask16 mask = (__mmask16)((1u << mr) - 1);
            /* the bias added here, not copied into C first: that copy, and
             * reading it back in the store below, were 3% of GPT-2's forward */
            bool add_bias = bias && k0 == 0;
            __m512 bv = add_bias ? _mm512_maskz_loadu_ps(mask, bias + n) : _mm512_setzero_ps();
            for (int64_t m0 = 0; m0 < m; m0 += GB__WG_NR) {
                gb__ts_wg_tiles[mr](out, w + n * ldw + k0, ldw, at + m0 * k + k0 * GB__WG_NR, kl);
                int64_t mv = m - m0 < GB__WG_NR ? m - m0 : GB__WG_NR;
                /* column j of the tile is mr floats of C's row m0 + j; gathered
                 * (transposing the tile in registers instead cost twice as much) */
                for (int64_t j = 0; j < mv; j++) {
                    float *cj = c + (m0 + j) * ldc + n; /* [mr] */
                    __m512 s = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, col, out + j, 4);
                    if (bk != 0.0f) s = _mm512_fmadd_ps(_mm512_set1_ps(bk), _mm512_maskz_loadu_ps(mask, cj), s);
                    if (add_bias) s = _mm512_add_ps(s, bv);
                    _mm512_mask_storeu_ps(cj, mask, s);
                }
            }
        }
    }
}

/* A^T packed for gb__ts_wg_rows: at [ceil(m / 32), k, 32] from a [m, lda],
 * zero past m; panels [q0, q1). */
static GB__AVX512 void gb__ts_wg_pack_at(float *at, const float *a, int64_t lda, int64_t m, int64_t k, int64_t q0,
                                         int64_t q1) {
    /* 16 x 16 blocks transposed in registers: element by element this was
     * 2 cycles an element, 3% of the Llama-shaped forward */
    for (int64_t q = q0; q < q1; q++) {
        float *aq = at + q * GB__WG_NR * k; /* [k, 32] */
        int64_t mv = m - q * GB__WG_NR < GB__WG_NR ? m - q * GB__WG_NR : GB__WG_NR;
        const float *aq0 = a + q * GB__WG_NR * lda; /* [mv, lda] */
        for (int64_t j0 = 0; j0 < GB__WG_NR; j0 += 16)
            for (int64_t i0 = 0; i0 < k; i0 += 16) {
                int64_t kv = k - i0 < 16 ? k - i0 : 16;
                __mmask16 mask = (__mmask16)((1u << kv) - 1);
                __m512 r[16];
#pragma GCC unroll 16
                for (int j = 0; j < 16; j++) { /* rows of A past m read as zeros (a row in range, no lane) */
                    int64_t row = j0 + j < mv ? j0 + j : 0;
                    r[j] = _mm512_maskz_loadu_ps(j0 + j < mv ? mask : 0, aq0 + row * lda + i0);
                    _mm_prefetch((const char *)(aq0 + row * lda + i0 + 64), _MM_HINT_T0);
                }
                gb__ts_wg_tr16(r); /* r[i]: A's column i0 + i, rows j0.. */
                for (int64_t i = 0; i < kv; i++) _mm512_storeu_ps(aq + (i0 + i) * GB__WG_NR + j0, r[i]);
            }
    }
}

/* A thread's share of a region's units, [next, end) packed in one word:
 * the owner takes units from the front, a thread that has run out of its
 * own from the back. Row groups of 12 left to whichever thread is free:
 * with fixed halves the faster thread waited for the slower at the end of
 * each product, 3% of the Llama-shaped forward on this shared VM. Which
 * thread computes a row group does not change its sums. */
typedef struct gb__ts_wg_share {
    _Atomic uint64_t r;
    char pad[64 - sizeof(uint64_t)]; /* a cache line each */
} gb__ts_wg_share;

/* Units [*u, *u + *nu) of share s: the owner takes a quarter of what is
 * left (at least one), a thief one unit from the back. One unit at a time,
 * the locked exchange (a full barrier, waiting for the stores of C just
 * issued) was 1.4% of the Llama-shaped forward; by quarters a share of n
 * units takes about 3.5 ln n exchanges, and what is left to steal at the
 * end is still single units. */
static bool gb__ts_wg_take(gb__ts_wg_share *s, bool back, int64_t *u, int64_t *nu) {
    uint64_t v = atomic_load_explicit(&s->r, memory_order_relaxed);
    for (;;) {
        uint64_t next = v >> 32, end = v & 0xffffffffu, g = back || end - next < 8 ? 1 : (end - next) / 4;
        if (next >= end) return false;
        uint64_t nv = back ? (next << 32 | (end - 1)) : ((next + g) << 32 | end);
        if (atomic_compare_exchange_weak_explicit(&s->r, &v, nv, memory_order_relaxed, memory_order_relaxed)) {
            *u = (int64_t)(back ? end - 1 : next);
            *nu = (int64_t)g;
            return true;
        }
    }
}

/* The share with the most units left, or -1 when all are done. */
static int gb__ts_wg_victim(gb__ts_wg_share *share, int n) {
    int best = -1;
    uint64_t most = 0;
    for (int t = 0; t < n; t++) {
        uint64_t v = atomic_load_explicit(&share[t].r, memory_order_relaxed), next = v >> 32, end = v & 0xffffffffu;
        if (next < end && end - next > most) most = end - next, best = t;
    }
    return best;
}

/* Even shares of units for threads; the region may get fewer threads, who
 * then steal the rest. */
static int gb__ts_wg_shares(gb__ts_wg_share *share, int64_t units) {
    int threads = gb__threads();
    if (threads > units) threads = (int)units;
    if (threads > GB__WG_MAX_THREADS) threads = GB__WG_MAX_THREADS;
    for (int t = 0; t < threads; t++)
        atomic_init(&share[t].r, (uint64_t)(units * t / threads) << 32 | (uint64_t)(units * (t + 1) / threads));
    return threads;
}

/* Thread t's next units [*u0, *u0 + *nu): its own share front to back,
 * then the others' from the back (*v: the share it takes from, t first). */
static bool gb__ts_wg_next(gb__ts_wg_share *share, int threads, int t, int *v, int64_t *u0, int64_t *nu) {
    while (*v >= 0) {
        if (gb__ts_wg_take(&share[*v], *v != t, u0, nu)) return true;
        *v = gb__ts_wg_victim(share, threads);
    }
    return false;
}

/* C_i = beta C_i + A @ W_i (+ bias[i] when bias and bias[i], beta 0) for
 * nw weights W_i^T stored (unit row strides) that share A: A^T packed
 * once, and the threads take spans of the weights' rows laid end to end,
 * so several small products (Llama's k and v projections, 256 rows each,
 * ran at 75% of the rate of q's 768) share one parallel region and balance
 * as one. */
static bool gb__ts_wg_nk(int nw, const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta,
                         const float *const *bias) {
    int64_t m = a->rows, k = a->cols, units = 0, first[GB__WG_MAX_SHARED + 1]; /* weight i's first unit */
    if (m > GB__WG_MAX_ROWS || nw > GB__WG_MAX_SHARED) return false;
    for (int i = 0; i < nw; i++) {
        if (b[i].cs < k) return false;
        first[i] = units;
        units += (c[i].cols + GB__WG_MR - 1) / GB__WG_MR;
    }
    first[nw] = units;
    int64_t mq = (m + GB__WG_NR - 1) / GB__WG_NR;
    /* K in equal blocks of at most GB__WG_MAX_A bytes of A^T, multiples of 16 */
    int64_t nblocks = (int64_t)ceil(4.0 * (double)(mq * GB__WG_NR) * (double)k / GB__WG_MAX_A);
    int64_t kb = ((k + nblocks - 1) / nblocks + 15) / 16 * 16;
    /* A^T through the tensor allocator: its kept mappings serve the same
     * size again without faulting pages in on every call */
    gb_tensor *scratch = gb_empty(1, (int64_t[]){mq * GB__WG_NR * k}, GB_DTYPE_F32);
    if (!scratch) return false;
    float *at = gb_tensor_data(scratch); /* [mq, k, 32] */
    gb__ts_wg_share share[GB__WG_MAX_THREADS];
    int threads = gb__ts_wg_shares(share, units);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        gb__ts_wg_pack_at(at, a->p, a->rs, m, k, mq * t / nt, mq * (t + 1) / nt);
#pragma omp barrier
        int64_t u0, nu;
        for (int v = t; gb__ts_wg_next(share, threads, t, &v, &u0, &nu);) {
            for (int64_t u = u0, i = 0; u < u0 + nu; u++) {
                while (u >= first[i + 1]) i++;
                int64_t n0 = (u - first[i]) * GB__WG_MR, n1 = n0 + GB__WG_MR;
                gb__ts_wg_rows(c[i].p, c[i].rs, b[i].p, b[i].cs, at, m, k, kb, n0, n1 < c[i].cols ? n1 : c[i].cols,
                               beta, bias ? bias[i] : NULL);
            }
        }
    }
    gb_tensor_free(scratch);
    return true;
}

/* ---- W stored [K, N] --------------------------------------------------- */

/* rows of W per block: a [256, 32] panel is 32 KB of L1. Blocks of 64 made
 * C's tiles go through L2 four times as often: the Llama-shaped training
 * step (every linear's input gradient) took 333-357 ms against 316-335 */
enum { GB__WK_KC = 256 };
#define GB__WK_MAX_C ((double)(2 << 20)) /* C is re-read once per block: it stays in L2 */

/* c[0:mr][0:32] = scale * c + a @ bp over kc steps, columns masked by
 * (m0, m1); scale 0 does not read c. On the way, one prefetch every 4
 * steps of the npf lines pf[q / 2 * pfs + q % 2 * 16], q < npf: the next
 * panel's, spread over the work that hides them (issued together between
 * tiles, 40-50 at a time, they waited for fill buffers: 8% of a training
 * step). */
static inline __attribute__((always_inline)) GB__AVX512 void
gb__ts_wk_tile(int mr, float *c /* [mr, ldc] */, int64_t ldc, const float *a /* [mr, lda] */, int64_t lda,
               const float *bp /* [kc, 32] */, int64_t kc, float scale, __mmask16 m0, __mmask16 m1,
               const float *pf, int64_t pfs, int64_t npf) {
    __m512 acc[GB__WG_MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        if (scale == 0.0f) {
            acc[r][0] = acc[r][1] = _mm512_setzero_ps();
            continue;
        }
        acc[r][0] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
        acc[r][1] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
        if (scale != 1.0f) {
            acc[r][0] = _mm512_mul_ps(_mm512_set1_ps(scale), acc[r][0]);
            acc[r][1] = _mm512_mul_ps(_mm512_set1_ps(scale), acc[r][1]);
        }
    }
    int64_t i = 0, q = 0;
    for (; i + 4 <= kc; i += 4) {
        if (q < npf) {
            _mm_prefetch((const char *)(pf + (q >> 1) * pfs + (q & 1) * 16), _MM_HINT_T0);
            q++;
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) gb__ts_wg_step(mr, acc, a + i + j, lda, bp + (i + j) * GB__WG_NR);
    }
    for (; i < kc; i++) gb__ts_wg_step(mr, acc, a + i, lda, bp + i * GB__WG_NR);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
    }
}

typedef void (*gb__ts_wk_tile_fn)(float *, int64_t, const float *, int64_t, const float *, int64_t, float,
                                  __mmask16, __mmask16, const float *, int64_t, int64_t);
#define GB__WK_TILE(MR)                                                                                    \
    static GB__AVX512 void gb__ts_wk_tile_##MR(float *c, int64_t ldc, const float *a, int64_t lda,        \
                                               const float *bp, int64_t kc, float scale, __mmask16 m0,    \
                                               __mmask16 m1, const float *pf, int64_t pfs, int64_t npf) { \
        gb__ts_wk_tile(MR, c, ldc, a, lda, bp, kc, scale, m0, m1, pf, pfs, npf);                         \
    }
GB__WG_TILES(GB__WK_TILE)
#define GB__WK_TILE_REF(MR) gb__ts_wk_tile_##MR,
static const gb__ts_wk_tile_fn gb__ts_wk_tiles[GB__WG_MR + 1] = {NULL, GB__WG_TILES(GB__WK_TILE_REF)};

/* C[:, n0:n1] = beta C + A @ W[:, n0:n1]: c [m, ldc], a [m, lda], w [k, ldw]. */
static GB__AVX512 void gb__ts_wk_cols(float *c, int64_t ldc, const float *a, int64_t lda, const float *w, int64_t ldw,
                                      int64_t m, int64_t k, int64_t n0, int64_t n1, float beta) {
    float bp[GB__WK_KC * GB__WG_NR] __attribute__((aligned(64))); /* [256, 32]: the panel */
    int64_t tiles = (m + GB__WG_MR - 1) / GB__WG_MR;
    for (int64_t k0 = 0; k0 < k; k0 += GB__WK_KC) {
        int64_t kc = k - k0 < GB__WK_KC ? k - k0 : GB__WK_KC;
        for (int64_t j = n0; j < n1; j += GB__WG_NR) {
            int64_t nv = n1 - j < GB__WG_NR ? n1 - j : GB__WG_NR;
            __mmask16 m0 = gb__ts_wg_mask(nv), m1 = gb__ts_wg_mask(nv - 16);
            for (int64_t p = 0; p < kc; p++) { /* zero past n1 */
                const float *wr = w + (k0 + p) * ldw + j; /* [nv] */
                _mm512_store_ps(bp + p * GB__WG_NR, _mm512_maskz_loadu_ps(m0, wr));
                _mm512_store_ps(bp + p * GB__WG_NR + 16, _mm512_maskz_loadu_ps(m1, wr + 16));
            }
            /* the next panel's 2 lines per row, a share in each tile (an even number) */
            int64_t pk = j + GB__WG_NR < n1 ? k0 : k0 + GB__WK_KC, pj = j + GB__WG_NR < n1 ? j + GB__WG_NR : n0;
            int64_t lines = pk < k ? 2 * (k - pk < GB__WK_KC ? k - pk : GB__WK_KC) : 0, done = 0;
            int64_t share = ((lines + tiles - 1) / tiles + 1) & ~(int64_t)1;
            for (int64_t t = 0; t < tiles; t++) {
                int mr = m - t * GB__WG_MR < GB__WG_MR ? (int)(m - t * GB__WG_MR) : GB__WG_MR;
                int64_t npf = lines - done < share ? lines - done : share;
                gb__ts_wk_tiles[mr](c + t * GB__WG_MR * ldc + j, ldc, a + t * GB__WG_MR * lda + k0, lda, bp, kc,
                                    k0 == 0 ? beta : 1.0f, m0, m1, w + (pk + done / 2) * ldw + pj, ldw, npf);
                done += npf;
            }
        }
    }
}

/* C = beta C + A @ W with W stored (b: unit column stride). */
static bool gb__ts_wg_kn(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta) {
    int64_t m = c->rows, n = c->cols, k = a->cols;
    if (b->rs < n || 4.0 * (double)m * (double)n > GB__WK_MAX_C) return false;
    int64_t units = (n + GB__WG_NR - 1) / GB__WG_NR;
    int threads = gb__threads();
    if (threads > units) threads = (int)units;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t n0 = units * t / nt * GB__WG_NR, n1 = units * (t + 1) / nt * GB__WG_NR;
        if (n0 < n1) gb__ts_wk_cols(c->p, c->rs, a->p, a->rs, b->p, b->rs, m, k, n0, n1 < n ? n1 : n, beta);
    }
    return true;
}

/* ---- a short sum: C = A^T-stored @ B (weight gradients) ----------------- */

/* A weight's gradient, dW = dY^T X ([N, M] @ [M, K], M the tokens), is a
 * product whose sum is short (128 tokens) and whose result is large (the
 * weight's size). OpenBLAS packs both operands and, with beta 0, first
 * zeroes C, then adds into it: 28% of the Llama-shaped training step went to
 * those products, a fifth of it in zeroing and copies. Here each 12 x 32
 * tile of C sums over all M in registers, reading dY's 12 columns (rows of
 * the stored A^T, contiguous) and 32 floats of each row of X in place, and
 * is stored once. Threads take row groups of C as in gb__ts_wg_nk. */
#define GB__WO_MAX_SUM 512 /* the tile's columns of A^T stay in L1 over its row of panels */

/* c[0:mr][0:32] (columns masked by m0, m1) = beta c + sum_i at[i][0:mr]^T bp[i][0:32] */
static inline __attribute__((always_inline)) GB__AVX512 void
gb__ts_wo_tile(int mr, float *c /* [mr, ldc] */, int64_t ldc, const float *at /* [red, lda] */, int64_t lda,
               const float *bp /* [red, 32] */, int64_t red, float beta, __mmask16 m0, __mmask16 m1) {
    __m512 acc[GB__WG_MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= red; i += 4)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) gb__ts_wg_step(mr, acc, at + (i + j) * lda, 1, bp + (i + j) * GB__WG_NR);
    for (; i < red; i++) gb__ts_wg_step(mr, acc, at + i * lda, 1, bp + i * GB__WG_NR);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        if (beta != 0.0f) { /* the sum first, as sgemm with beta: beta c + (a b) */
            acc[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m0, c + r * ldc), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m1, c + r * ldc + 16), acc[r][1]);
        }
        _mm512_mask_storeu_ps(c + r * ldc, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc[r][1]);
    }
}

typedef void (*gb__ts_wo_tile_fn)(float *, int64_t, const float *, int64_t, const float *, int64_t, float, __mmask16,
                                  __mmask16);
#define GB__WO_TILE(MR)                                                                                      \
    static GB__AVX512 void gb__ts_wo_tile_##MR(float *c, int64_t ldc, const float *at, int64_t lda,         \
                                               const float *bp, int64_t red, float beta, __mmask16 m0,      \
                                               __mmask16 m1) {                                               \
        gb__ts_wo_tile(MR, c, ldc, at, lda, bp, red, beta, m0, m1);                                        \
    }
GB__WG_TILES(GB__WO_TILE)
#define GB__WO_TILE_REF(MR) gb__ts_wo_tile_##MR,
static const gb__ts_wo_tile_fn gb__ts_wo_tiles[GB__WG_MR + 1] = {NULL, GB__WG_TILES(GB__WO_TILE_REF)};

/* Rows [n0, n1) (at most 12) of C [n, k] = beta C + A @ B: at [red, lda]
 * (A^T as stored), bp [ceil(k / 32), red, 32] (B packed, zeros past k). */
static GB__AVX512 void gb__ts_wo_rows(float *c, int64_t ldc, const float *at, int64_t lda, const float *bp,
                                      int64_t red, int64_t k, int64_t n0, int64_t n1, float beta) {
    int mr = (int)(n1 - n0);
    for (int64_t j = 0; j < k; j += GB__WG_NR) {
        int64_t nv = k - j < GB__WG_NR ? k - j : GB__WG_NR;
        __mmask16 m0 = gb__ts_wg_mask(nv), m1 = gb__ts_wg_mask(nv - 16);
        gb__ts_wo_tiles[mr](c + n0 * ldc + j, ldc, at + n0, lda, bp + j * red, red, beta, m0, m1);
    }
}

/* C = beta C + A @ B, A's transpose stored (a: unit row stride), B with
 * unit column stride, a sum of at most GB__WO_MAX_SUM. B is packed into
 * panels of 32 columns once per call (read in place, its rows' lines came
 * from L2 one step after another, 15% slower). */
static bool gb__ts_wg_outer(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta) {
    int64_t n = c->rows, k = c->cols, red = a->cols, kq = (k + GB__WG_NR - 1) / GB__WG_NR;
    if (red > GB__WO_MAX_SUM || a->cs < n || b->rs < k) return false;
    gb_tensor *scratch = gb_empty(1, (int64_t[]){kq * red * GB__WG_NR}, GB_DTYPE_F32);
    if (!scratch) return false;
    float *bp = gb_tensor_data(scratch); /* [kq, red, 32] */
    int64_t units = (n + GB__WG_MR - 1) / GB__WG_MR;
    gb__ts_wg_share share[GB__WG_MAX_THREADS];
    int threads = gb__ts_wg_shares(share, units);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t q0 = kq * t / nt, q1 = kq * (t + 1) / nt;
        if (q0 < q1)
            gb__ts_wg_small_pack(bp + q0 * red * GB__WG_NR, b->p + q0 * GB__WG_NR, b->rs, red,
                                 (q1 * GB__WG_NR < k ? q1 * GB__WG_NR : k) - q0 * GB__WG_NR);
#pragma omp barrier
        int64_t u0, nu;
        for (int v = t; gb__ts_wg_next(share, threads, t, &v, &u0, &nu);)
            for (int64_t u = u0; u < u0 + nu; u++) {
                int64_t n0 = u * GB__WG_MR, n1 = n0 + GB__WG_MR < n ? n0 + GB__WG_MR : n;
                gb__ts_wo_rows(c->p, c->rs, a->p, a->cs, bp, red, k, n0, n1, beta);
            }
    }
    gb_tensor_free(scratch);
    return true;
}

/* ---- small products inside other kernels ------------------------------- */

bool gb__ts_wg_small_ok(void) { return (gb__ts_cpu_features() & GB__CPU(AVX512F)) != 0; }

void gb__ts_wg_small_pack_t(float *bp, const float *b, int64_t ldb, int64_t n, int64_t k) {
    gb__ts_wg_pack_at(bp, b, ldb, n, k, 0, (n + GB__WG_NR - 1) / GB__WG_NR);
}

GB__AVX512 void gb__ts_wg_small_pack(float *bp, const float *b, int64_t ldb, int64_t k, int64_t n) {
    for (int64_t j = 0; j < n; j += GB__WG_NR) {
        int64_t nv = n - j < GB__WG_NR ? n - j : GB__WG_NR;
        __mmask16 m0 = gb__ts_wg_mask(nv), m1 = gb__ts_wg_mask(nv - 16);
        float *p = bp + j * k; /* [k, 32] */
        for (int64_t i = 0; i < k; i++) {
            _mm512_storeu_ps(p + i * GB__WG_NR, _mm512_maskz_loadu_ps(m0, b + i * ldb + j));
            _mm512_storeu_ps(p + i * GB__WG_NR + 16, _mm512_maskz_loadu_ps(m1, b + i * ldb + j + 16));
        }
    }
}

void gb__ts_wg_small(float *c, int64_t ldc, const float *a, int64_t lda, const float *bp, int64_t kp, int64_t m,
                     int64_t n, int64_t k) {
    for (int64_t j = 0; j < n; j += GB__WG_NR) {
        int64_t nv = n - j < GB__WG_NR ? n - j : GB__WG_NR;
        __mmask16 m0 = gb__ts_wg_mask(nv), m1 = gb__ts_wg_mask(nv - 16);
        for (int64_t i = 0; i < m; i += GB__WG_MR) {
            int mr = m - i < GB__WG_MR ? (int)(m - i) : GB__WG_MR;
            gb__ts_wk_tiles[mr](c + i * ldc + j, ldc, a + i * lda, lda, bp + j * kp, k, 0.0f, m0, m1, NULL, 0, 0);
        }
    }
}

/* A product C = A @ B of matching shapes, C with unit column stride, on a
 * CPU with AVX-512: what every kernel here needs. */
static bool gb__ts_wg_can(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b) {
    return (gb__ts_cpu_features() & GB__CPU(AVX512F)) && c->cs == 1 && c->rows == a->rows && b->rows == a->cols &&
           c->cols == b->cols;
}

/* Whether the weight kernels take C = A @ B at all (either layout). */
static bool gb__ts_wg_fits(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b) {
    return gb__ts_wg_can(c, a, b) && c->rows >= GB__WG_MIN_ROWS && a->cs == 1 &&
           (double)c->cols * (double)a->cols >= GB__WG_MIN_WEIGHT;
}

bool gb__ts_wgemm(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta) {
    if (gb__ts_wg_can(c, a, b) && a->rs == 1 && b->cs == 1 && c->rows >= GB__WG_MR &&
        (double)c->rows * (double)c->cols >= GB__WG_MIN_WEIGHT && gb__ts_wg_outer(c, a, b, beta))
        return true;
    if (!gb__ts_wg_fits(c, a, b)) return false;
    if (b->rs == 1) return gb__ts_wg_nk(1, c, a, b, beta, NULL);
    if (b->cs == 1) return gb__ts_wg_kn(c, a, b, beta);
    return false;
}

bool gb__ts_wgemm_bias(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, const float *bias) {
    return gb__ts_wg_fits(c, a, b) && b->rs == 1 && gb__ts_wg_nk(1, c, a, b, 0.0f, &bias);
}

bool gb__ts_wgemm_shared(int nw, const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *w) {
    for (int i = 0; i < nw; i++)
        if (!gb__ts_wg_fits(&c[i], a, &w[i]) || w[i].rs != 1) return false;
    return nw > 0 && gb__ts_wg_nk(nw, c, a, w, 0.0f, NULL);
}
