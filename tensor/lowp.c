/* f16 and bf16 weights used as stored: conversion to f32, and products of
 * f32 activations with f16/bf16 matrices in f32 arithmetic.
 *
 * A checkpoint's f16/bf16 weights stay in their mapping; activations are
 * f32. A weight element converts to f32 exactly (bf16 is the top half of an
 * f32, f16 widens), so y = x @ W^T computed from the converted weights is
 * the f32 product PyTorch computes on weights upcast with .float(), up to
 * the order of the f32 additions. Two ways, by the number of rows M of x:
 *
 * Few rows (generation: M = 1; short prompts): "direct" kernels read each
 * weight element once per call, convert it in registers and multiply it
 * into every row of x, so a token streams each weight byte once. W comes
 * in either layout a model stores: rows of W contiguous (nn.Linear's
 * [out, in]: dot products, "dot") or columns contiguous (GPT-2's Conv1D
 * weight [in, out], read transposed: "axpy", x[k] times a row of the
 * stored matrix). Threads take chunks of W's rows (y's columns) as they
 * go.
 *
 * Many rows: weights are converted a panel of rows at a time into a
 * per-thread f32 buffer of about 512 KB and each panel goes to OpenBLAS's
 * sgemm (Debian's 0.3.21 has no bf16 GEMM). The conversion is O(N K)
 * against the product's O(M N K); panels are tasks for glassbox's threads,
 * each sgemm single-threaded as in gb__ts_gemm (matmul.c, blas.c: one pool).
 *
 * AVX512_BF16. vdpbf16ps multiplies pairs of bf16 and adds them into f32:
 * both operands are bf16, and rounding the activations to bf16 would cost
 * 3 of f32's decimal digits. Split instead: x = hi + mid + lo with three
 * bf16 parts (8 significant bits each, so exact for normal x), and every
 * product w * part is exact in f32: three vdpbf16ps give the f32 product
 * with the rounding of f32 sums. One instruction does 32 multiply-adds
 * against 16 per fused multiply-add (plus the conversion) on the other
 * path, but three are needed per pair and row: on this project's machine
 * it ran at half the conversion path's speed on weights in cache and at
 * the same speed from memory (tools/bench, lowp: gemv_dpbf16_*), so it is
 * not the default; gb__ts_lowp_isa_set(GB__LOWP_ISA_AVX512BF16) turns it on
 * for bf16 dot-layout products of one or two rows. Inputs and results
 * below 2^-126 flush to zero in vdpbf16ps (its DAZ/FTZ), a difference
 * from the f32 path only at magnitudes no model reaches.
 *
 * AMX-BF16. tdpbf16ps multiplies a 16 x 32 tile of bf16 by a 32 x 16 one
 * into 16 x 16 f32 sums, 8192 multiply-adds an instruction. With x split
 * into the same three parts, each product of many rows runs three of them
 * per block, and the weights need no conversion at all (bf16 only: f16
 * weights are not exact in bf16). This project's machine runs about one
 * tdpbf16ps per 50 cycles per core, so the three parts cap it near 270
 * GFLOP/s of f32-exact products per core. Per core, in CPU time: 2.5x
 * sgemm's panels at GPT-2's MLP in nn.Linear's layout (128 x 768 @ 768 x
 * 3072), 3.2x at Llama-3-8B's (128 x 4096 @ 4096 x 14336); 2.1x and 1.9x
 * in Conv1D's (tools/bench, lowp: linear_bf16_*). It is the default for
 * bf16 products of at least GB__LOWP_AMX_MIN multiply-adds, where the CPU
 * has it and Linux grants the tile state (arch_prctl
 * ARCH_REQ_XCOMP_PERM); both operands are packed into contiguous tiles
 * first (x once per product, 32 of w's rows or columns at a time per
 * thread). tdpbf16ps flushes subnormal inputs and results, as vdpbf16ps
 * does.
 *
 * The kernels exist for AVX-512 (+AVX512_BF16), AVX2 + FMA + F16C and
 * baseline C, picked once from the CPU's features (the default build
 * targets x86-64-v2, so wider code is compiled per function with target
 * attributes, as simd.h does with target_clones). Each y element is
 * computed by one sequence of operations whatever the thread count or the
 * block it falls in, so results do not depend on the number of threads. */
#include "lowp.h"
#include "simd.h"

#include <limits.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GB__LOWP_X86 1
#define GB__T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define GB__T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define GB__T_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))
#endif

/* One product for the kernels: y[m, n] (+)= sum_k x[m, k] * w(n, k). */
typedef struct gb__ts_lowp_task {
    float *y;           /* [m, n], row stride ldy */
    const float *x;     /* [m, k], row stride ldx */
    const uint16_t *w;  /* dot: w(n, k) at n * ldw + k; axpy: at k * ldw + n */
    int64_t ldy, ldx, ldw, m, n, k;
    bool bf16, acc;     /* acc: add into y */
    const uint16_t *xs; /* vdpbf16ps: x split into bf16 parts [3, m, kp] */
    int64_t kp;
} gb__ts_lowp_task;

typedef struct gb__ts_lowp_kernels {
    void (*cvt)(float *dst, const uint16_t *src, int64_t n, bool bf16);
    void (*dot)(const gb__ts_lowp_task *t, int64_t n0, int64_t n1);  /* y columns [n0, n1) */
    void (*axpy)(const gb__ts_lowp_task *t, int64_t n0, int64_t n1);
    void (*dot_bf16)(const gb__ts_lowp_task *t, int64_t n0, int64_t n1); /* vdpbf16ps, m <= 2; or NULL */
    int dot_block, axpy_block;                                        /* columns per block */
} gb__ts_lowp_kernels;

static GB__INLINE float gb__ts_lowp_f32(uint16_t h, bool bf16) { return bf16 ? gb_bf16_to_f32(h) : gb_f16_to_f32(h); }

static GB__INLINE void gb__ts_lowp_store(const gb__ts_lowp_task *t, int64_t m, int64_t n, float s) {
    float *y = t->y + m * t->ldy + n;
    *y = t->acc ? *y + s : s;
}

/* ---- baseline C --------------------------------------------------------- */

static void gb__ts_cvt_base(float *dst, const uint16_t *src, int64_t n, bool bf16) {
    for (int64_t i = 0; i < n; i++) dst[i] = gb__ts_lowp_f32(src[i], bf16);
}

static void gb__ts_dot_base(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; n++)
        for (int64_t m = 0; m < t->m; m++) {
            const float *x = t->x + m * t->ldx;     /* [k] */
            const uint16_t *w = t->w + n * t->ldw; /* [k] */
            float s = 0;
            for (int64_t k = 0; k < t->k; k++) s += x[k] * gb__ts_lowp_f32(w[k], t->bf16);
            gb__ts_lowp_store(t, m, n, s);
        }
}

/* The axpy kernels add into y itself, row of w after row of w (streaming
 * w along its rows): y[m, n0:n1] starts at zero unless accumulating. */
static void gb__ts_axpy_start(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    if (t->acc) return;
    for (int64_t m = 0; m < t->m; m++) memset(t->y + m * t->ldy + n0, 0, (size_t)(n1 - n0) * sizeof(float));
}

static void gb__ts_axpy_base(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    gb__ts_axpy_start(t, n0, n1);
    for (int64_t m = 0; m < t->m; m++)
        for (int64_t k = 0; k < t->k; k++) {
            float xv = t->x[m * t->ldx + k], *y = t->y + m * t->ldy; /* [n] */
            const uint16_t *w = t->w + k * t->ldw;                   /* [n] */
            for (int64_t n = n0; n < n1; n++) y[n] += xv * gb__ts_lowp_f32(w[n], t->bf16);
        }
}

static const gb__ts_lowp_kernels gb__ts_kernels_base = {gb__ts_cvt_base, gb__ts_dot_base, gb__ts_axpy_base, NULL, 1, 16};

#ifdef GB__LOWP_X86
/* ---- AVX2 + FMA + F16C: 8 lanes, 16 registers --------------------------- */

static GB__INLINE GB__T_AVX2 __m256 gb__ts_w8(const uint16_t *p, bool bf16) {
    __m128i h = _mm_loadu_si128((const __m128i *)(const void *)p);
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}

/* The first r < 8 elements, zeros after (AVX2 has no 16-bit masked load). */
static GB__INLINE GB__T_AVX2 __m256 gb__ts_w8_part(const uint16_t *p, int64_t r, bool bf16) {
    uint16_t b[8] = {0};
    memcpy(b, p, (size_t)r * 2);
    return gb__ts_w8(b, bf16);
}

static GB__INLINE GB__T_AVX2 __m256i gb__ts_mask8(int64_t r) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)r), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static GB__INLINE GB__T_AVX2 float gb__ts_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static GB__T_AVX2 void gb__ts_cvt_avx2(float *dst, const uint16_t *src, int64_t n, bool bf16) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, gb__ts_w8(src + i, bf16));
    for (; i < n; i++) dst[i] = gb__ts_lowp_f32(src[i], bf16);
}

/* Rows m0.. (MR of them) of x against rows n0.. (NR) of w. */
static GB__INLINE GB__T_AVX2 void gb__ts_dot_avx2_block(const gb__ts_lowp_task *t, int64_t m0, int64_t n0, int MR, int NR,
                                                     bool bf16) {
    const float *x = t->x + m0 * t->ldx;     /* [MR, k] */
    const uint16_t *w = t->w + n0 * t->ldw; /* [NR, k] */
    int64_t K = t->k, ldx = t->ldx, ldw = t->ldw, k = 0;
    __m256 acc[2][4], wv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) acc[0][j] = acc[1][j] = wv[j] = _mm256_setzero_ps();
    for (; k + 8 <= K; k += 8) {
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) wv[j] = gb__ts_w8(w + j * ldw + k, bf16);
#pragma GCC unroll 2
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (k < K) {
        __m256i mk = gb__ts_mask8(K - k);
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) wv[j] = gb__ts_w8_part(w + j * ldw + k, K - k, bf16);
#pragma GCC unroll 2
        for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_maskload_ps(x + i * ldx + k, mk);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) gb__ts_lowp_store(t, m0 + i, n0 + j, gb__ts_hsum8(acc[i][j]));
}

static GB__INLINE GB__T_AVX2 void gb__ts_dot_avx2_rows(const gb__ts_lowp_task *t, int64_t n0, int NR, bool bf16) {
    int64_t m = 0;
    for (; m + 2 <= t->m; m += 2) gb__ts_dot_avx2_block(t, m, n0, 2, NR, bf16);
    if (m < t->m) gb__ts_dot_avx2_block(t, m, n0, 1, NR, bf16);
}

static GB__INLINE GB__T_AVX2 void gb__ts_dot_avx2_impl(const gb__ts_lowp_task *t, int64_t n0, int64_t n1, bool bf16) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) gb__ts_dot_avx2_rows(t, n, 4, bf16);
    for (; n < n1; n++) gb__ts_dot_avx2_rows(t, n, 1, bf16);
}

static GB__T_AVX2 void gb__ts_dot_avx2(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    if (t->bf16) gb__ts_dot_avx2_impl(t, n0, n1, true);
    else gb__ts_dot_avx2_impl(t, n0, n1, false);
}

/* As gb__ts_axpy512_pass, 8 lanes wide. */
static GB__INLINE GB__T_AVX2 void gb__ts_axpy_avx2_pass(const gb__ts_lowp_task *t, int64_t m0, int MR, int64_t k0, int KB,
                                                     int64_t n0, int64_t n1, bool bf16) {
    const uint16_t *w = t->w + k0 * t->ldw; /* [KB, n] */
    int64_t ldw = t->ldw, n = n0;
    __m256 xb[2][4], wv[4];
#pragma GCC unroll 2
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int kk = 0; kk < KB; kk++) xb[i][kk] = _mm256_broadcast_ss(t->x + (m0 + i) * t->ldx + k0 + kk);
    for (; n + 8 <= n1; n += 8) {
#pragma GCC unroll 4
        for (int kk = 0; kk < KB; kk++) wv[kk] = gb__ts_w8(w + kk * ldw + n, bf16);
#pragma GCC unroll 2
        for (int i = 0; i < MR; i++) {
            float *y = t->y + (m0 + i) * t->ldy + n;
            __m256 a = _mm256_loadu_ps(y);
#pragma GCC unroll 4
            for (int kk = 0; kk < KB; kk++) a = _mm256_fmadd_ps(xb[i][kk], wv[kk], a);
            _mm256_storeu_ps(y, a);
        }
    }
    if (n < n1) {
        __m256i mk = gb__ts_mask8(n1 - n);
#pragma GCC unroll 4
        for (int kk = 0; kk < KB; kk++) wv[kk] = gb__ts_w8_part(w + kk * ldw + n, n1 - n, bf16);
#pragma GCC unroll 2
        for (int i = 0; i < MR; i++) {
            float *y = t->y + (m0 + i) * t->ldy + n;
            __m256 a = _mm256_maskload_ps(y, mk);
#pragma GCC unroll 4
            for (int kk = 0; kk < KB; kk++) a = _mm256_fmadd_ps(xb[i][kk], wv[kk], a);
            _mm256_maskstore_ps(y, mk, a);
        }
    }
}

static GB__INLINE GB__T_AVX2 void gb__ts_axpy_avx2_rows(const gb__ts_lowp_task *t, int64_t k0, int KB, int64_t n0,
                                                     int64_t n1, bool bf16) {
    int64_t m = 0;
    for (; m + 2 <= t->m; m += 2) gb__ts_axpy_avx2_pass(t, m, 2, k0, KB, n0, n1, bf16);
    if (m < t->m) gb__ts_axpy_avx2_pass(t, m, 1, k0, KB, n0, n1, bf16);
}

static GB__INLINE GB__T_AVX2 void gb__ts_axpy_avx2_impl(const gb__ts_lowp_task *t, int64_t n0, int64_t n1, bool bf16) {
    gb__ts_axpy_start(t, n0, n1);
    int64_t k = 0;
    for (; k + 4 <= t->k; k += 4) gb__ts_axpy_avx2_rows(t, k, 4, n0, n1, bf16);
    for (; k < t->k; k++) gb__ts_axpy_avx2_rows(t, k, 1, n0, n1, bf16);
}

static GB__T_AVX2 void gb__ts_axpy_avx2(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    if (t->bf16) gb__ts_axpy_avx2_impl(t, n0, n1, true);
    else gb__ts_axpy_avx2_impl(t, n0, n1, false);
}

static const gb__ts_lowp_kernels gb__ts_kernels_avx2 = {gb__ts_cvt_avx2, gb__ts_dot_avx2, gb__ts_axpy_avx2, NULL, 4, 16};

/* ---- AVX-512: 16 lanes, 32 registers ------------------------------------ */

static GB__INLINE GB__T_AVX512 __m512 gb__ts_w16(__m256i h, bool bf16) {
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}
static GB__INLINE GB__T_AVX512 __m512 gb__ts_w16_load(const uint16_t *p, bool bf16) {
    return gb__ts_w16(_mm256_loadu_si256((const __m256i *)(const void *)p), bf16);
}
static GB__INLINE GB__T_AVX512 __m512 gb__ts_w16_mask(const uint16_t *p, __mmask16 mk, bool bf16) {
    return gb__ts_w16(_mm256_maskz_loadu_epi16(mk, p), bf16);
}
static GB__INLINE GB__T_AVX512 __mmask16 gb__ts_mask16(int64_t r) {
    return r >= 16 ? (__mmask16)0xffff : r <= 0 ? (__mmask16)0 : (__mmask16)((1u << r) - 1);
}

static GB__T_AVX512 void gb__ts_cvt_avx512(float *dst, const uint16_t *src, int64_t n, bool bf16) {
    int64_t i = 0;
    if (bf16)
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, gb__ts_w16_load(src + i, true));
    else
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, gb__ts_w16_load(src + i, false));
    if (i < n) _mm512_mask_storeu_ps(dst + i, gb__ts_mask16(n - i), gb__ts_w16_mask(src + i, gb__ts_mask16(n - i), bf16));
}

static GB__INLINE GB__T_AVX512 void gb__ts_dot512_block(const gb__ts_lowp_task *t, int64_t m0, int64_t n0, int MR, int NR,
                                                     bool bf16) {
    const float *x = t->x + m0 * t->ldx;     /* [MR, k] */
    const uint16_t *w = t->w + n0 * t->ldw; /* [NR, k] */
    int64_t K = t->k, ldx = t->ldx, ldw = t->ldw, k = 0;
    __m512 acc[4][4], wv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) acc[0][j] = acc[1][j] = acc[2][j] = acc[3][j] = wv[j] = _mm512_setzero_ps();
    for (; k + 16 <= K; k += 16) {
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) wv[j] = gb__ts_w16_load(w + j * ldw + k, bf16);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_loadu_ps(x + i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    if (k < K) {
        __mmask16 mk = gb__ts_mask16(K - k);
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) wv[j] = gb__ts_w16_mask(w + j * ldw + k, mk, bf16);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) gb__ts_lowp_store(t, m0 + i, n0 + j, _mm512_reduce_add_ps(acc[i][j]));
}

static GB__INLINE GB__T_AVX512 void gb__ts_dot512_rows(const gb__ts_lowp_task *t, int64_t n0, int NR, bool bf16) {
    int64_t m = 0;
    for (; m + 4 <= t->m; m += 4) gb__ts_dot512_block(t, m, n0, 4, NR, bf16);
    switch (t->m - m) {
    case 3: gb__ts_dot512_block(t, m, n0, 3, NR, bf16); break;
    case 2: gb__ts_dot512_block(t, m, n0, 2, NR, bf16); break;
    case 1: gb__ts_dot512_block(t, m, n0, 1, NR, bf16); break;
    default: break;
    }
}

static GB__INLINE GB__T_AVX512 void gb__ts_dot512_impl(const gb__ts_lowp_task *t, int64_t n0, int64_t n1, bool bf16) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) gb__ts_dot512_rows(t, n, 4, bf16);
    for (; n < n1; n++) gb__ts_dot512_rows(t, n, 1, bf16);
}

static GB__T_AVX512 void gb__ts_dot_avx512(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    if (t->bf16) gb__ts_dot512_impl(t, n0, n1, true);
    else gb__ts_dot512_impl(t, n0, n1, false);
}

/* Rows k0..k0+KB of w times rows m0..m0+MR of x, added into y's columns
 * [n0, n1): y accumulates in memory (L1), w streams along its rows. */
static GB__INLINE GB__T_AVX512 void gb__ts_axpy512_pass(const gb__ts_lowp_task *t, int64_t m0, int MR, int64_t k0, int KB,
                                                     int64_t n0, int64_t n1, bool bf16) {
    const uint16_t *w = t->w + k0 * t->ldw; /* [KB, n] */
    int64_t ldw = t->ldw, n = n0;
    __m512 xb[4][4], wv[4];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int kk = 0; kk < KB; kk++) xb[i][kk] = _mm512_set1_ps(t->x[(m0 + i) * t->ldx + k0 + kk]);
    for (; n + 16 <= n1; n += 16) {
#pragma GCC unroll 4
        for (int kk = 0; kk < KB; kk++) wv[kk] = gb__ts_w16_load(w + kk * ldw + n, bf16);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            float *y = t->y + (m0 + i) * t->ldy + n;
            __m512 a = _mm512_loadu_ps(y);
#pragma GCC unroll 4
            for (int kk = 0; kk < KB; kk++) a = _mm512_fmadd_ps(xb[i][kk], wv[kk], a);
            _mm512_storeu_ps(y, a);
        }
    }
    if (n < n1) {
        __mmask16 mk = gb__ts_mask16(n1 - n);
#pragma GCC unroll 4
        for (int kk = 0; kk < KB; kk++) wv[kk] = gb__ts_w16_mask(w + kk * ldw + n, mk, bf16);
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++) {
            float *y = t->y + (m0 + i) * t->ldy + n;
            __m512 a = _mm512_maskz_loadu_ps(mk, y);
#pragma GCC unroll 4
            for (int kk = 0; kk < KB; kk++) a = _mm512_fmadd_ps(xb[i][kk], wv[kk], a);
            _mm512_mask_storeu_ps(y, mk, a);
        }
    }
}

/* Rows k0..k0+KB of w into every row of y, columns [n0, n1). */
static GB__INLINE GB__T_AVX512 void gb__ts_axpy512_rows(const gb__ts_lowp_task *t, int64_t k0, int KB, int64_t n0,
                                                     int64_t n1, bool bf16) {
    int64_t m = 0;
    for (; m + 4 <= t->m; m += 4) gb__ts_axpy512_pass(t, m, 4, k0, KB, n0, n1, bf16);
    switch (t->m - m) {
    case 3: gb__ts_axpy512_pass(t, m, 3, k0, KB, n0, n1, bf16); break;
    case 2: gb__ts_axpy512_pass(t, m, 2, k0, KB, n0, n1, bf16); break;
    case 1: gb__ts_axpy512_pass(t, m, 1, k0, KB, n0, n1, bf16); break;
    default: break;
    }
}

static GB__INLINE GB__T_AVX512 void gb__ts_axpy512_impl(const gb__ts_lowp_task *t, int64_t n0, int64_t n1, bool bf16) {
    gb__ts_axpy_start(t, n0, n1);
    int64_t k = 0;
    for (; k + 4 <= t->k; k += 4) gb__ts_axpy512_rows(t, k, 4, n0, n1, bf16);
    for (; k < t->k; k++) gb__ts_axpy512_rows(t, k, 1, n0, n1, bf16);
}

static GB__T_AVX512 void gb__ts_axpy_avx512(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    if (t->bf16) gb__ts_axpy512_impl(t, n0, n1, true);
    else gb__ts_axpy512_impl(t, n0, n1, false);
}

static const gb__ts_lowp_kernels gb__ts_kernels_avx512 = {gb__ts_cvt_avx512, gb__ts_dot_avx512, gb__ts_axpy_avx512, NULL, 4, 16};

/* ---- AVX512_BF16: vdpbf16ps on split activations ------------------------ */

/* x [m, k] -> xs [3, m, kp]: hi, mid, lo bf16 parts (x = hi + mid + lo),
 * zero-padded to kp (a multiple of 32). A non-finite x keeps its value in
 * hi (inf - inf would make the other parts nan). */
static GB__T_BF16 void gb__ts_split_bf16(uint16_t *xs, const float *x, int64_t ldx, int64_t m, int64_t k, int64_t kp) {
    for (int64_t i = 0; i < m; i++) {
        uint16_t *hi = xs + i * kp, *mid = xs + (m + i) * kp, *lo = xs + (2 * m + i) * kp;
        for (int64_t j = 0; j < kp; j += 16) {
            __m512 v = _mm512_maskz_loadu_ps(gb__ts_mask16(k - j), x + i * ldx + j);
            __m256bh h = _mm512_cvtneps_pbh(v);
            __m512 r = _mm512_sub_ps(v, gb__ts_w16((__m256i)h, true));
            r = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r, r, _CMP_ORD_Q), r);
            __m256bh md = _mm512_cvtneps_pbh(r);
            __m256bh l = _mm512_cvtneps_pbh(_mm512_sub_ps(r, gb__ts_w16((__m256i)md, true)));
            _mm256_storeu_si256((__m256i *)(void *)(hi + j), (__m256i)h);
            _mm256_storeu_si256((__m256i *)(void *)(mid + j), (__m256i)md);
            _mm256_storeu_si256((__m256i *)(void *)(lo + j), (__m256i)l);
        }
    }
}

/* Rows m0.. (MR <= 2) against rows n0.. (NR) of w: per 32 k, one load of
 * each w row and three vdpbf16ps per pair (hi into one accumulator, mid
 * and lo into another, so that the chains are short). */
static GB__INLINE GB__T_BF16 void gb__ts_dotbf_block(const gb__ts_lowp_task *t, int64_t m0, int64_t n0, int MR, int NR) {
    const uint16_t *w = t->w + n0 * t->ldw; /* [NR, k] */
    int64_t K = t->k, kp = t->kp, M = t->m, ldw = t->ldw, k = 0;
    const uint16_t *xh = t->xs + m0 * kp, *xm = t->xs + (M + m0) * kp, *xl = t->xs + (2 * M + m0) * kp;
    __m512 ah[2][4], al[2][4], am[2][4];
    __m512i wv[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        ah[0][j] = ah[1][j] = al[0][j] = al[1][j] = am[0][j] = am[1][j] = _mm512_setzero_ps();
        wv[j] = _mm512_setzero_si512();
    }
    for (; k < K; k += 32) {
        if (k + 32 <= K) {
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) wv[j] = _mm512_loadu_si512(w + j * ldw + k);
        } else {
            __mmask32 mk = (__mmask32)((1ull << (K - k)) - 1);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) wv[j] = _mm512_maskz_loadu_epi16(mk, w + j * ldw + k);
        }
#pragma GCC unroll 2
        for (int i = 0; i < MR; i++) {
            __m512bh h = (__m512bh)_mm512_loadu_si512(xh + i * kp + k);
            __m512bh md = (__m512bh)_mm512_loadu_si512(xm + i * kp + k);
            __m512bh l = (__m512bh)_mm512_loadu_si512(xl + i * kp + k);
#pragma GCC unroll 4
            for (int j = 0; j < NR; j++) {
                ah[i][j] = _mm512_dpbf16_ps(ah[i][j], (__m512bh)wv[j], h);
                am[i][j] = _mm512_dpbf16_ps(am[i][j], (__m512bh)wv[j], md);
                al[i][j] = _mm512_dpbf16_ps(al[i][j], (__m512bh)wv[j], l);
            }
        }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++)
            gb__ts_lowp_store(t, m0 + i, n0 + j, _mm512_reduce_add_ps(_mm512_add_ps(ah[i][j], _mm512_add_ps(am[i][j], al[i][j]))));
}

static GB__INLINE GB__T_BF16 void gb__ts_dotbf_rows(const gb__ts_lowp_task *t, int64_t n0, int NR) {
    if (t->m == 2) gb__ts_dotbf_block(t, 0, n0, 2, NR);
    else gb__ts_dotbf_block(t, 0, n0, 1, NR);
}

static GB__T_BF16 void gb__ts_dot_bf16(const gb__ts_lowp_task *t, int64_t n0, int64_t n1) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) gb__ts_dotbf_rows(t, n, 4);
    for (; n < n1; n++) gb__ts_dotbf_rows(t, n, 1);
}

static const gb__ts_lowp_kernels gb__ts_kernels_bf16 = {gb__ts_cvt_avx512, gb__ts_dot_avx512, gb__ts_axpy_avx512, gb__ts_dot_bf16, 4,
                                                  16};

/* ---- AMX-BF16: tdpbf16ps on split activations, many rows ----------------- */

#define GB__T_AMX                                                                                        \
    __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))

/* ldtilecfg's 64-byte operand. */
typedef struct gb__ts_amx_cfg {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} gb__ts_amx_cfg;

/* Every tile 16 rows of 64 bytes: C tiles 0-3 hold y^T blocks [16 n][16 m]
 * (n block i, m block j at 2i + j), A tiles 4-5 16 rows of w each (k along
 * a row, 32 bf16), B tiles 6-7 a part of x for 16 rows m (pairs of k: the
 * layout tdpbf16ps takes its second operand in). */
static GB__T_AMX void gb__ts_amx_begin(void) {
    _Alignas(64) gb__ts_amx_cfg c = {.palette = 1};
    for (int i = 0; i < 8; i++) c.rows[i] = 16, c.colsb[i] = 64;
    /* gcc does not see ldtilecfg read c: without this its stores are dropped */
    __asm__ volatile("" : : "r"(&c) : "memory");
    _tile_loadconfig(&c);
}

static GB__T_AMX void gb__ts_amx_end(void) { _tile_release(); }

/* The operands as tiles, each 16 rows of 64 bytes stored contiguously
 * (a tile load then reads 1 KB in a row; strided loads measured 20-30%
 * slower). x [m, k] -> xs [3][mp / 16][kp / 32] tiles of [16 pairs of k]
 * [16 rows of x]: the hi, mid and lo parts of gb__ts_split_bf16, pairs of k
 * together (the layout tdpbf16ps takes its second operand in), zero beyond
 * m rows and k columns. tmp: [3, m, kp]. */
static GB__T_BF16 void gb__ts_amx_pack_x(uint32_t *xs, uint16_t *tmp, const float *x, int64_t ldx, int64_t m, int64_t k,
                                      int64_t mp, int64_t kp) {
    gb__ts_split_bf16(tmp, x, ldx, m, k, kp);
    const uint32_t *t32 = (const uint32_t *)(const void *)tmp; /* [3 * m, kp / 2] */
    int64_t kh = kp / 2, kt = kp / 32;
    memset(xs, 0, (size_t)(3 * kh * mp) * sizeof *xs);
    for (int64_t p = 0; p < 3; p++)
        for (int64_t i = 0; i < m; i++) {
            const uint32_t *row = t32 + (p * m + i) * kh;
            uint32_t *dst = xs + (p * (mp / 16) + i / 16) * kt * 256 + i % 16;
            for (int64_t j = 0; j < kh; j++) dst[j / 16 * 256 + j % 16 * 16] = row[j];
        }
}

/* w's rows n0.. (up to 32) -> wp [kp / 32][32 rows][32 k]: two tiles per
 * 32 k, zero beyond w's rows and k (a tile reads whole 64-byte rows). One
 * masked 64-byte load per row and 32 k (memcpy per row took a fifth of the
 * time at GPT-2's sizes). */
static GB__T_AMX void gb__ts_amx_pack_w(uint16_t *wp, const gb__ts_lowp_task *t, int64_t n0, int64_t kp) {
    int64_t nr = t->n - n0 < 32 ? t->n - n0 : 32, K = t->k;
    for (int64_t k = 0; k < kp; k += 32) {
        __mmask32 mk = K - k >= 32 ? ~(__mmask32)0 : (__mmask32)((1u << (K - k)) - 1);
        uint16_t *dst = wp + k * 32; /* [32, 32] */
        for (int64_t r = 0; r < 32; r++)
            _mm512_store_si512(dst + r * 32, r < nr ? _mm512_maskz_loadu_epi16(mk, t->w + (n0 + r) * t->ldw + k)
                                                    : _mm512_setzero_si512());
    }
}

/* Conv1D's layout (w stored [k, n], n contiguous): the roles swap, y's
 * blocks [16 m][16 n] = x part (rows) times w (pairs of k), so that w's
 * pairs come from two stored rows side by side and y's blocks are stored
 * as they are. x [m, k] -> xs [3][mp / 16][kp / 32] tiles of [16 rows of
 * x][32 k]; tmp: [3, m, kp]. */
static GB__T_BF16 void gb__ts_amx_pack_x_rows(uint16_t *xs, uint16_t *tmp, const float *x, int64_t ldx, int64_t m,
                                           int64_t k, int64_t mp, int64_t kp) {
    gb__ts_split_bf16(tmp, x, ldx, m, k, kp);
    int64_t kt = kp / 32;
    memset(xs, 0, (size_t)(3 * mp * kp) * sizeof *xs);
    for (int64_t p = 0; p < 3; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < kt; j++)
                memcpy(xs + ((p * (mp / 16) + i / 16) * kt + j) * 512 + i % 16 * 32, tmp + (p * m + i) * kp + j * 32,
                       64);
}

/* Stored rows k.. of w, columns n0.. (up to 32) -> wp [kp / 32][2 halves of
 * n][16 pairs of k][16 n] pairs: the pair (k, k + 1) of column n is one
 * uint32, k in its low half; zero beyond w. */
static GB__T_AMX void gb__ts_amx_pack_w_pairs(uint32_t *wp, const gb__ts_lowp_task *t, int64_t n0, int64_t kp) {
    int64_t K = t->k;
    for (int64_t h = 0; h < 2; h++) {
        int64_t c = n0 + 16 * h, nc = t->n - c < 16 ? t->n - c : 16;
        __mmask16 mk = nc <= 0 ? 0 : nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
        for (int64_t k = 0; k < kp; k += 2) {
            __m256i a = k < K && mk ? _mm256_maskz_loadu_epi16(mk, t->w + k * t->ldw + c) : _mm256_setzero_si256();
            __m256i b = k + 1 < K && mk ? _mm256_maskz_loadu_epi16(mk, t->w + (k + 1) * t->ldw + c)
                                        : _mm256_setzero_si256();
            __m512i v = _mm512_or_si512(_mm512_cvtepu16_epi32(a), _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
            _mm512_store_si512(wp + ((k / 32 * 2 + h) * 16 + k % 32 / 2) * 16, v);
        }
    }
}

/* C tile c into y's rows m0.. and columns n0.. (nr of them valid). In
 * Conv1D's layout the tile is a block of y [16 m][16 n], stored in place
 * when whole and not accumulating; in nn.Linear's it is a block of y^T
 * [16 n][16 m], gathered a row of y at a time (scalar stores took a fifth
 * of the time at GPT-2's sizes). */
static GB__INLINE GB__T_AMX void gb__ts_amx_store(const gb__ts_lowp_task *t, bool dot, int c, int64_t m0, int64_t n0,
                                               int64_t nr, float *ct /* [16, 16] */) {
    if (nr <= 0 || m0 >= t->m) return;
    bool direct = !dot && !t->acc && nr >= 16 && m0 + 16 <= t->m;
    float *dst = direct ? t->y + m0 * t->ldy + n0 : ct;
    size_t ld = direct ? (size_t)t->ldy * 4 : 64;
    switch (c) { /* tile numbers are immediates */
    case 0: _tile_stored(0, dst, ld); break;
    case 1: _tile_stored(1, dst, ld); break;
    case 2: _tile_stored(2, dst, ld); break;
    default: _tile_stored(3, dst, ld); break;
    }
    if (direct) return;
    const __m512i col = _mm512_set_epi32(240, 224, 208, 192, 176, 160, 144, 128, 112, 96, 80, 64, 48, 32, 16, 0);
    __mmask16 mk = nr >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nr) - 1);
    for (int64_t j = 0; j < 16 && m0 + j < t->m; j++) {
        float *y = t->y + (m0 + j) * t->ldy + n0; /* [nr] */
        __m512 v = dot ? _mm512_i32gather_ps(col, ct + j, 4) : _mm512_load_ps(ct + j * 16);
        if (t->acc) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, y), v);
        _mm512_mask_storeu_ps(y, mk, v);
    }
}

/* y[:, n0:n0+32] from w packed in wp (gb__ts_amx_pack_w or, in Conv1D's
 * layout, gb__ts_amx_pack_w_pairs) and x's parts in xs: both layouts are
 * tiles of 1 KB, two of w per 32 k, parts of x [3][mp / 16][kp / 32].
 * Tiles: C 0-3 for (m block j, n block i) at 2j + i, w's two blocks in 4-5,
 * a part of x for two blocks of 16 rows in 6-7. Per 32 k, the three parts
 * each into the same accumulators: hi, then mid, then lo, as f32 sums. */
static GB__T_AMX void gb__ts_amx_block(const gb__ts_lowp_task *t, bool dot, const char *xs, int64_t mp, int64_t kp,
                                    int64_t n0, const char *wp) {
    int64_t nr = t->n - n0 < 32 ? t->n - n0 : 32, kt = kp / 32, part = mp / 16 * kt * 1024;
    _Alignas(64) float ct[16 * 16];
    for (int64_t mb = 0; mb < mp; mb += 32) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int64_t k = 0; k < kt; k++) {
            _tile_loadd(4, wp + k * 2048, 64);
            _tile_loadd(5, wp + k * 2048 + 1024, 64);
            const char *x = xs + (mb / 16 * kt + k) * 1024; /* this k's tile of rows mb.. */
            for (int p = 0; p < 3; p++, x += part) {
                _tile_loadd(6, x, 64);
                _tile_loadd(7, x + kt * 1024, 64);
                if (dot) { /* y^T blocks: w rows times x pairs */
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 5, 6);
                    _tile_dpbf16ps(2, 4, 7);
                    _tile_dpbf16ps(3, 5, 7);
                } else { /* y blocks: x rows times w pairs */
                    _tile_dpbf16ps(0, 6, 4);
                    _tile_dpbf16ps(1, 6, 5);
                    _tile_dpbf16ps(2, 7, 4);
                    _tile_dpbf16ps(3, 7, 5);
                }
            }
        }
        gb__ts_amx_store(t, dot, 0, mb, n0, nr, ct);
        gb__ts_amx_store(t, dot, 1, mb, n0 + 16, nr - 16, ct);
        gb__ts_amx_store(t, dot, 2, mb + 16, n0, nr, ct);
        gb__ts_amx_store(t, dot, 3, mb + 16, n0 + 16, nr - 16, ct);
    }
}
#endif /* GB__LOWP_X86 */

/* ---- choosing --------------------------------------------------------- */

static const char *const gb__ts_lowp_isa_names[] = {
#define GB__X(e, s) s,
    GB__LOWP_ISA_LIST(GB__X)
#undef GB__X
};

const char *gb__ts_lowp_isa_name(gb__ts_lowp_isa isa) {
    return (unsigned)isa < GB__LOWP_ISA_COUNT ? gb__ts_lowp_isa_names[isa] : "unknown";
}

gb__ts_lowp_isa gb__ts_lowp_isa_best(void) {
    static atomic_int best = -1;
    int b = atomic_load(&best);
    if (b >= 0) return (gb__ts_lowp_isa)b;
    b = GB__LOWP_ISA_BASE;
#ifdef GB__LOWP_X86
    unsigned f = gb__ts_cpu_features(), avx2 = GB__CPU(AVX2) | GB__CPU(FMA) | GB__CPU(F16C),
             avx512 = avx2 | GB__CPU(AVX512F) | GB__CPU(AVX512BW) | GB__CPU(AVX512VL) | GB__CPU(AVX512DQ);
    if ((f & avx2) == avx2) b = GB__LOWP_ISA_AVX2;
    if ((f & avx512) == avx512) b = GB__LOWP_ISA_AVX512;
    if ((f & avx512) == avx512 && (f & GB__CPU(AVX512BF16))) b = GB__LOWP_ISA_AVX512BF16;
#endif
    atomic_store(&best, b);
    return (gb__ts_lowp_isa)b;
}

/* AVX512_BF16's kernel is not the default: it measured half the speed of
 * the conversion kernel on cached weights and the same from memory
 * (tools/bench: lowp_gemv_*). */
static atomic_int gb__ts_lowp_cap = GB__LOWP_ISA_AVX512;

gb__ts_lowp_isa gb__ts_lowp_isa_get(void) {
    int cap = atomic_load(&gb__ts_lowp_cap), best = (int)gb__ts_lowp_isa_best();
    return (gb__ts_lowp_isa)(cap < best ? cap : best);
}

gb__ts_lowp_isa gb__ts_lowp_isa_set(gb__ts_lowp_isa cap) {
    gb__ts_lowp_isa was = gb__ts_lowp_isa_get();
    atomic_store(&gb__ts_lowp_cap, (int)cap);
    return was;
}

/* AMX: the CPU has it, and Linux lends this process the tile state (it
 * must ask, arch_prctl ARCH_REQ_XCOMP_PERM, once). */
bool gb__ts_lowp_amx_ok(void) {
    static atomic_int ok = -1;
    int v = atomic_load(&ok);
    if (v >= 0) return v;
    v = 0;
#if defined(GB__LOWP_X86) && defined(__linux__)
    unsigned need = GB__CPU(AMXTILE) | GB__CPU(AMXBF16) | GB__CPU(AVX512BF16) | GB__CPU(AVX512F) | GB__CPU(AVX512BW) |
                    GB__CPU(AVX512VL) | GB__CPU(AVX512DQ);
    enum { GB__ARCH_REQ_XCOMP_PERM = 0x1023, GB__XFEATURE_XTILEDATA = 18 };
    v = (gb__ts_cpu_features() & need) == need && syscall(SYS_arch_prctl, GB__ARCH_REQ_XCOMP_PERM, GB__XFEATURE_XTILEDATA) == 0;
#endif
    atomic_store(&ok, v);
    return v;
}

static atomic_int gb__ts_lowp_amx_mode = GB__LOWP_AMX_LARGE;

gb__ts_lowp_amx gb__ts_lowp_amx_get(void) {
    return gb__ts_lowp_amx_ok() ? (gb__ts_lowp_amx)atomic_load(&gb__ts_lowp_amx_mode) : GB__LOWP_AMX_OFF;
}

gb__ts_lowp_amx gb__ts_lowp_amx_set(gb__ts_lowp_amx mode) {
    gb__ts_lowp_amx was = gb__ts_lowp_amx_get();
    atomic_store(&gb__ts_lowp_amx_mode, (int)mode);
    return was;
}

static const gb__ts_lowp_kernels *gb__ts_lowp_kernels_get(void) {
    switch (gb__ts_lowp_isa_get()) {
#ifdef GB__LOWP_X86
    case GB__LOWP_ISA_AVX512BF16: return &gb__ts_kernels_bf16;
    case GB__LOWP_ISA_AVX512: return &gb__ts_kernels_avx512;
    case GB__LOWP_ISA_AVX2: return &gb__ts_kernels_avx2;
#endif
    default: return &gb__ts_kernels_base;
    }
}

/* ---- conversion ---------------------------------------------------------- */

#define GB__LOWP_CVT_CHUNK ((int64_t)1 << 16)

void gb__ts_lowp_to_f32(float *dst, const uint16_t *src, int64_t n, gb_dtype dt) {
    const gb__ts_lowp_kernels *kr = gb__ts_lowp_kernels_get();
    bool bf16 = dt == GB_DTYPE_BF16;
    int64_t nchunk = (n + GB__LOWP_CVT_CHUNK - 1) / GB__LOWP_CVT_CHUNK;
#pragma omp parallel for num_threads(gb__threads()) if (nchunk > 1) schedule(static)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t i = c * GB__LOWP_CVT_CHUNK, len = n - i < GB__LOWP_CVT_CHUNK ? n - i : GB__LOWP_CVT_CHUNK;
        kr->cvt(dst + i, src + i, len, bf16);
    }
}

gb_status gb__ts_lowp_frozen(const char *op, const char *what, const gb_tensor *t, bool needed) {
    if (!needed || !gb__ts_is_lowp(t->dtype)) return GB_OK;
    const char *name = gb_tensor_name(t);
    return gb__fail(GB_ERR_AUTOGRAD,
                    "%s: %s%s%s%s (%s %s) requires grad, but gradients of float16 and bfloat16 tensors are not "
                    "computed; open the model with float32 weights (gb_model_opts.f32_weights) or use a float32 copy "
                    "(gb_to_dtype)",
                    op, what, *name ? " '" : "", name, *name ? "'" : "", gb_dtype_name(t->dtype), GB__SHAPE_STR(t));
}

/* ---- matrices -------------------------------------------------------------- */

bool gb__ts_lowp_mat_of(const gb_tensor *t, gb__ts_lmat *out) {
    if (t->ndim != 2 || !gb__ts_is_lowp(t->dtype) || !gb_tensor_data(t)) return false;
    gb__ts_lmat w = {gb_tensor_data(t), t->dtype, t->shape[0], t->shape[1], t->stride[0], t->stride[1]};
    /* Strides of size-1 dims are never followed: make them unit. */
    if (w.cols <= 1) w.cs = 1;
    else if (w.rows <= 1) w.rs = 1;
    if (w.cs != 1 && w.rs != 1) return false;
    *out = w;
    return true;
}

gb__ts_lmat gb__ts_lmat_t(gb__ts_lmat w) {
    int64_t r = w.rows, s = w.rs;
    w.rows = w.cols, w.rs = w.cs;
    w.cols = r, w.cs = s;
    return w;
}

/* ---- products -------------------------------------------------------------- */

/* Up to this many rows of x a product runs in the direct kernels (which
 * read W once), above it in f32 panels through sgemm: where they measured
 * the same speed on GPT-2's and Llama's MLP shapes (the dot kernel's 4x4
 * register blocks run at sgemm's speed up to 32 rows and more). */
#define GB__LOWP_DOT_MAX 32
#define GB__LOWP_AXPY_MAX 16
/* vdpbf16ps for at most this many rows (it does three instructions per
 * pair and row where the conversion path shares one conversion among rows). */
#define GB__LOWP_DPBF16_MAX 2
/* Bytes of f32 weights per panel: within a core's L2 cache with sgemm's
 * own packed copies. */
#define GB__LOWP_PANEL_BYTES ((int64_t)512 << 10)
/* Chunks of output columns per thread in the direct kernels. */
#define GB__LOWP_CHUNKS 8
/* Products of at least this many multiply-adds go to AMX (where it runs):
 * below it packing x and w costs more than tdpbf16ps saves (a 40 x 100 @
 * 100 x 201 product ran at 0.7x sgemm's panels, 40 x 768 @ 768 x 3072 at
 * 1.4x). */
#define GB__LOWP_AMX_MIN (4.0 * 1024 * 1024)
/* Products below this many multiply-adds stay on the calling thread. */
#define GB__LOWP_PAR_MIN (65536.0 * 4)

static gb_status gb__ts_lowp_direct(const char *op, gb__ts_lowp_task *t, const gb__ts_lowp_kernels *kr, bool dot) {
    void (*kern)(const gb__ts_lowp_task *, int64_t, int64_t) = dot ? kr->dot : kr->axpy;
    uint16_t *xs = NULL;
    if (dot && t->bf16 && kr->dot_bf16 && t->m <= GB__LOWP_DPBF16_MAX) {
#ifdef GB__LOWP_X86
        t->kp = (t->k + 31) / 32 * 32;
        if (!(xs = gb__malloc((size_t)(3 * t->m * t->kp) * sizeof *xs, op))) return gb_last_status();
        gb__ts_split_bf16(xs, t->x, t->ldx, t->m, t->k, t->kp);
        t->xs = xs;
        kern = kr->dot_bf16;
#endif
    }
    /* Threads take chunks of blocks as they go (a thread the machine
     * delays leaves its share to the others): GB__LOWP_CHUNKS per thread of
     * w's rows, but one share each of its columns (axpy), where narrower
     * spans of each stored row defeat the hardware prefetchers (M = 16 on
     * GPT-2's MLP ran at a third of the speed in 16 chunks). */
    int64_t blk = dot ? kr->dot_block : kr->axpy_block, nblk = (t->n + blk - 1) / blk;
    int threads = gb__threads();
    bool par = threads > 1 && nblk > 1 && (double)t->m * (double)t->n * (double)t->k > GB__LOWP_PAR_MIN;
    int64_t per = dot ? GB__LOWP_CHUNKS : 1, nchunk = par ? (nblk < threads * per ? nblk : threads * per) : 1;
#pragma omp parallel for num_threads(threads) if (par) schedule(dynamic)
    for (int64_t c = 0; c < nchunk; c++) {
        int64_t n0 = nblk * c / nchunk * blk, n1 = nblk * (c + 1) / nchunk * blk;
        if (n1 > t->n) n1 = t->n;
        if (n0 < n1) kern(t, n0, n1);
    }
    free(xs);
    return GB_OK;
}

static gb_status gb__ts_lowp_panels(const char *op, const gb__ts_lowp_task *t, const gb__ts_lowp_kernels *kr, bool dot) {
    int64_t M = t->m, N = t->n, K = t->k;
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX || t->ldx > INT_MAX || t->ldy > INT_MAX)
        return gb__fail(GB_ERR_UNSUPPORTED, "%s: a %lldx%lld @ %lldx%lld product exceeds OpenBLAS's 32-bit sizes", op,
                        (long long)M, (long long)K, (long long)K, (long long)N);
    const gb__ts_blas *blas = gb__ts_blas_get();
    if (!blas) {
        gb__error_prefix("%s", op);
        return gb_last_status();
    }
    int64_t np = GB__LOWP_PANEL_BYTES / 4 / K / 16 * 16;
    np = np < 16 ? 16 : np > 512 ? 512 : np;
    if (np > N) np = N;
    int64_t npanel = (N + np - 1) / np;
    int threads = gb__threads();
    bool par = threads > 1 && npanel > 1 && (double)M * (double)N * (double)K > GB__LOWP_PAR_MIN;
    int icv = gb__ts_blas_pin(blas, par);
    atomic_bool failed = false;
#pragma omp parallel num_threads(threads) if (par)
    {
        float *buf = malloc((size_t)(np * K) * sizeof *buf); /* [np, K] (dot) or [K, np] */
        if (!buf) atomic_store(&failed, true);
#pragma omp for schedule(dynamic)
        for (int64_t p = 0; p < npanel; p++) {
            if (!buf) continue;
            int64_t n0 = p * np, nn = N - n0 < np ? N - n0 : np;
            if (dot) {
                for (int64_t r = 0; r < nn; r++) kr->cvt(buf + r * K, t->w + (n0 + r) * t->ldw, K, t->bf16);
                blas->sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nn, (int)K, 1.0f, t->x, (int)t->ldx,
                            buf, (int)K, t->acc ? 1.0f : 0.0f, t->y + n0, (int)t->ldy);
            } else {
                for (int64_t k = 0; k < K; k++) kr->cvt(buf + k * nn, t->w + k * t->ldw + n0, nn, t->bf16);
                blas->sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)nn, (int)K, 1.0f, t->x,
                            (int)t->ldx, buf, (int)nn, t->acc ? 1.0f : 0.0f, t->y + n0, (int)t->ldy);
            }
        }
        free(buf);
    }
    gb__ts_blas_unpin(icv);
    if (atomic_load(&failed))
        return gb__fail(GB_ERR_ALLOC, "%s: out of memory allocating a %lld x %lld float32 weight panel", op,
                        (long long)np, (long long)K);
    return GB_OK;
}

#ifdef GB__LOWP_X86
/* Products of many rows on bf16 weights in w's layout of nn.Linear, with
 * tdpbf16ps: x split into three bf16 parts (exact, as for vdpbf16ps),
 * blocks of 32 of w's rows as tasks for glassbox's threads, each thread
 * configuring its tiles. */
static gb_status gb__ts_lowp_amx_gemm(const char *op, const gb__ts_lowp_task *t, bool dot) {
    int64_t M = t->m, N = t->n, mp = (M + 31) / 32 * 32, kp = (t->k + 31) / 32 * 32, nblk = (N + 31) / 32;
    void *xs = gb__malloc((size_t)(3 * mp * kp) * sizeof(uint16_t), op);
    uint16_t *tmp = xs ? gb__malloc((size_t)(3 * M * kp) * sizeof *tmp, op) : NULL;
    if (!tmp) {
        free(xs);
        return gb_last_status();
    }
    if (dot) gb__ts_amx_pack_x(xs, tmp, t->x, t->ldx, M, t->k, mp, kp);
    else gb__ts_amx_pack_x_rows(xs, tmp, t->x, t->ldx, M, t->k, mp, kp);
    free(tmp);
    int threads = gb__threads();
    bool par = threads > 1 && nblk > 1 && (double)M * (double)N * (double)t->k > GB__LOWP_PAR_MIN;
    atomic_bool failed = false;
#pragma omp parallel num_threads(threads) if (par)
    {
        void *wp = aligned_alloc(64, (size_t)(32 * kp) * sizeof(uint16_t)); /* two tiles per 32 k */
        if (!wp) atomic_store(&failed, true);
        else gb__ts_amx_begin();
#pragma omp for schedule(dynamic)
        for (int64_t b = 0; b < nblk; b++) {
            if (!wp) continue;
            if (dot) gb__ts_amx_pack_w(wp, t, b * 32, kp);
            else gb__ts_amx_pack_w_pairs(wp, t, b * 32, kp);
            gb__ts_amx_block(t, dot, xs, mp, kp, b * 32, wp);
        }
        if (wp) gb__ts_amx_end();
        free(wp);
    }
    free(xs);
    if (atomic_load(&failed))
        return gb__fail(GB_ERR_ALLOC, "%s: out of memory allocating a 32 x %lld bfloat16 weight block", op,
                        (long long)kp);
    return GB_OK;
}
#endif

gb_status gb__ts_lowp_gemm(const char *op, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t m,
                        const gb__ts_lmat *w, bool accumulate) {
    int64_t n = w->rows, k = w->cols;
    if (m == 0 || n == 0) return GB_OK;
    if (k == 0) { /* an empty sum */
        for (int64_t r = 0; r < m && !accumulate; r++) memset(y + r * ldy, 0, (size_t)n * sizeof *y);
        return GB_OK;
    }
    bool dot = w->cs == 1;
    gb__ts_lowp_task t = {.y = y, .x = x, .w = w->p, .ldy = ldy, .ldx = ldx, .ldw = dot ? w->rs : w->cs, .m = m, .n = n,
                       .k = k, .bf16 = w->dt == GB_DTYPE_BF16, .acc = accumulate};
    const gb__ts_lowp_kernels *kr = gb__ts_lowp_kernels_get();
    if (m <= (dot ? GB__LOWP_DOT_MAX : GB__LOWP_AXPY_MAX)) return gb__ts_lowp_direct(op, &t, kr, dot);
#ifdef GB__LOWP_X86
    gb__ts_lowp_amx amx = t.bf16 ? gb__ts_lowp_amx_get() : GB__LOWP_AMX_OFF;
    if (amx == GB__LOWP_AMX_ALL || (amx == GB__LOWP_AMX_LARGE && (double)m * (double)n * (double)k >= GB__LOWP_AMX_MIN))
        return gb__ts_lowp_amx_gemm(op, &t, dot);
#endif
    return gb__ts_lowp_panels(op, &t, kr, dot);
}
