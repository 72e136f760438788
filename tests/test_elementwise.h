/* Helpers shared by tests/test_elementwise.c and tests/test_reduce.c: the
 * same values stored in different layouts, and gradient checks through them. */
#ifndef GB_TEST_ELEMENTWISE_H
#define GB_TEST_ELEMENTWISE_H

#include <string.h>

#include "gbtest.h"

#define RTOL 1e-5
#define ATOL 1e-6

/* ---- layouts: the same values, stored three ways ------------------------ */

enum { LAYOUT_CONTIGUOUS, LAYOUT_TRANSPOSED, LAYOUT_SLICED, NLAYOUTS };
static const char *const LAYOUT_NAME[NLAYOUTS] = {"contiguous", "transposed", "sliced"};

/* The view of base that layout k presents: base itself, base with its
 * first and last dims swapped, or every other element of base's last dim. */
static inline gb_tensor *layout_view(gb_tensor *base, int k) {
    int nd = gb_tensor_ndim(base);
    if (k == LAYOUT_TRANSPOSED && nd >= 2) return gb_transpose(base, 0, -1);
    if (k == LAYOUT_SLICED && nd >= 1) return gb_slice(base, -1, 0, GB_END, 2);
    return gb_tensor_ref(base);
}

/* A new contiguous tensor (a leaf) whose layout_view(.., k) holds t's values.
 * The sliced layout's other elements hold 99, which no op should read. */
static inline gb_tensor *layout_base(gb_tensor *t, int k) {
    int nd = gb_tensor_ndim(t);
    if (k == LAYOUT_TRANSPOSED && nd >= 2) {
        gb_tensor *tt = gb_transpose(t, 0, -1);
        gb_tensor *c = gb_clone(tt);
        gb_tensor_free(tt);
        return c;
    }
    if (k == LAYOUT_SLICED && nd >= 1) {
        int64_t shape[GB_MAX_DIMS];
        memcpy(shape, gb_tensor_shape(t), sizeof(int64_t) * (size_t)nd);
        shape[nd - 1] *= 2;
        gb_tensor *base = gb_full(nd, shape, 99.0f, gb_tensor_dtype(t));
        gb_tensor *v = layout_view(base, k);
        gbt_ok_status(gb_copy_(v, t));
        gb_tensor_free(v);
        return base;
    }
    return gb_clone(t);
}

/* The elements of a sliced-layout gradient that the view skips must be 0. */
static inline void assert_skipped_zero(gb_tensor *grad_base, int k, const char *what) {
    if (k != LAYOUT_SLICED || gb_tensor_ndim(grad_base) == 0) return;
    gb_tensor *odd = gb_slice(grad_base, -1, 1, GB_END, 2);
    gb_tensor *z = gb_zeros(gb_tensor_ndim(odd), gb_tensor_shape(odd), GB_DTYPE_F32);
    gbt_assert_close(odd, z, 0, 0, what);
    gb_tensor_free(z);
    gb_tensor_free(odd);
}

/* gb_tensor_grad(base) seen through layout k, compared with want. */
static inline void assert_grad(gb_tensor *base, int k, gb_tensor *want, const char *what) {
    gb_tensor *g = gb_tensor_grad(base);
    ck_assert_msg(g != NULL, "%s: no gradient", what);
    gb_tensor *gv = layout_view(g, k);
    gbt_assert_close(gv, want, RTOL, ATOL, what);
    assert_skipped_zero(g, k, what);
    gb_tensor_free(gv);
}

static inline gb_tensor *leaf_randn(int ndim, const int64_t *shape, uint64_t seed) {
    gb_rng r = gb_rng_seed(seed);
    gb_tensor *t = gb_randn(&r, ndim, shape, 0.0f, 1.0f);
    gb_requires_grad_(t, true);
    return t;
}

/* In place, without autograd seeing it: what a user's in-place write does. */
static inline void overwrite(gb_tensor *t) {
    gb_grad_mode m = gb_no_grad_begin();
    gbt_ok_status(gb_fill_(t, 7.0f));
    gb_grad_mode_end(m);
}

/* What a backward reads: its inputs a, b (a: the input of one-input ops) and
 * its output y. */
enum { SAVES_A = 1, SAVES_B = 2, SAVES_Y = 4 };

#endif
