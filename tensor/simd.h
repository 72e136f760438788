/* Private to glassbox: what the vectorised kernels (elementwise.c,
 * softmax.c, norm.c) share to get wide vectors from a default build.
 *
 * GB__CLONES compiles a function three times, for AVX-512 (x86-64-v4),
 * AVX2 (v3) and the build's baseline, and the dynamic loader picks the best
 * the CPU runs (GCC's target_clones, through ifunc resolvers; GB_NO_CLONES,
 * set by `make TSAN=1`, leaves them out: ThreadSanitizer's instrumentation
 * crashes in a resolver, which runs before its runtime starts): the default
 * build targets x86-64-v2
 * (SSE4.2, 4 floats per instruction), where exp runs 3x slower than with
 * AVX-512. A -march=native build with AVX-512 needs no clones.
 *
 * Put it on the function that holds the loops (a row, a span), called from
 * inside the OpenMP region: the region's outlined body is not cloned. Every
 * function such a loop calls must be inlined (GB__INLINE, or fastmath.h's
 * GB__FASTMATH) or the loop does not vectorise; GCC inlines a baseline
 * function into a wider clone. No FMA contraction happens under -std=c11,
 * so elementwise results are the same bits on every path; reductions (sums
 * in double lanes) may differ in the order of their additions. */
#ifndef GB_SIMD_H
#define GB_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX512F__) && !defined(GB_NO_CLONES)
#define GB__CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GB__CLONES
#endif

/* A loop vectorises only if every call in it is inlined; -O2 stops
 * inlining after a few callers. */
#define GB__INLINE inline __attribute__((always_inline))

#endif
