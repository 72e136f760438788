/* Private to glassbox: f16 and bf16 weights used as stored, with f32
 * activations and f32 arithmetic (lowp.c says how and why). */
#ifndef GB_LOWP_H
#define GB_LOWP_H

#include "blas.h"

static inline bool gb__ts_is_lowp(gb_dtype dt) { return dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16; }

/* dst[i] = src[i] as f32 for an f16 or bf16 array (exact), vectorised and,
 * for large n, split over threads. */
void gb__ts_lowp_to_f32(float *dst, const uint16_t *src, int64_t n, gb_dtype dt);

/* Gradients of f16/bf16 tensors (a checkpoint's weights as stored) are not
 * computed: when `needed` and t is f16/bf16, fails with GB_ERR_AUTOGRAD
 * naming op, what and t and saying how to get float32 weights. */
gb_status gb__ts_lowp_frozen(const char *op, const char *what, const gb_tensor *t, bool needed);

/* A 2-D f16/bf16 matrix W [rows, cols] with element strides; one of rs, cs
 * must be 1 (gb__ts_lowp_mat_of says whether a tensor qualifies). */
typedef struct gb__ts_lmat {
    const uint16_t *p;
    gb_dtype dt;
    int64_t rows, cols, rs, cs;
} gb__ts_lmat;

/* t as a gb__ts_lmat (a 2-D f16/bf16 tensor with a unit stride), or false. */
bool gb__ts_lowp_mat_of(const gb_tensor *t, gb__ts_lmat *out);
/* The transpose of w (a view: strides swapped). */
gb__ts_lmat gb__ts_lmat_t(gb__ts_lmat w);

/* Y[m, n] (+)= X[m, k] @ W^T for W [n, k] (linear's convention): y has row
 * stride ldy, x row stride ldx and unit column stride. accumulate adds to
 * Y instead of overwriting it. Every product is f32 (W's values are exact
 * in f32) and sums are f32. Results do not depend on the thread count. */
gb_status gb__ts_lowp_gemm(const char *op, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t m,
                        const gb__ts_lmat *w, bool accumulate);

/* Which instruction set the kernels use, chosen once from the CPU's
 * features; tests and benchmarks lower it to reach every path. */
#define GB__LOWP_ISA_LIST(X)                                  \
    X(BASE, "baseline C")                                     \
    X(AVX2, "AVX2 + FMA + F16C")                              \
    X(AVX512, "AVX-512")                                      \
    X(AVX512BF16, "AVX-512 + AVX512_BF16 (vdpbf16ps)")

typedef enum gb__ts_lowp_isa {
#define GB__X(e, s) GB__LOWP_ISA_##e,
    GB__LOWP_ISA_LIST(GB__X)
#undef GB__X
    GB__LOWP_ISA_COUNT
} gb__ts_lowp_isa;

/* The best the CPU runs. */
gb__ts_lowp_isa gb__ts_lowp_isa_best(void);
/* Use at most `cap` (clamped to the best); returns the level in use before. */
gb__ts_lowp_isa gb__ts_lowp_isa_set(gb__ts_lowp_isa cap);
gb__ts_lowp_isa gb__ts_lowp_isa_get(void);
const char *gb__ts_lowp_isa_name(gb__ts_lowp_isa isa);

/* AMX-BF16 (tdpbf16ps) for bf16 products of many rows, either layout:
 * whether this CPU and the OS run it (the first call asks Linux for
 * the tile state), and when it is used: for products large enough
 * (the default), for every product of many rows (tests), or never (tests
 * and benchmarks reaching sgemm's panels). OFF where it does not run. */
typedef enum gb__ts_lowp_amx { GB__LOWP_AMX_OFF, GB__LOWP_AMX_LARGE, GB__LOWP_AMX_ALL } gb__ts_lowp_amx;
bool gb__ts_lowp_amx_ok(void);
gb__ts_lowp_amx gb__ts_lowp_amx_get(void);
/* Returns the mode in use before. */
gb__ts_lowp_amx gb__ts_lowp_amx_set(gb__ts_lowp_amx mode);

#endif
