/* Private helpers shared by the elementwise ops (elementwise.c) and the
 * reductions (reduce.c). */
#ifndef GB_ELEMENTWISE_IMPL_H
#define GB_ELEMENTWISE_IMPL_H

#include "tensor_impl.h"

#include <omp.h>

/* Inputs must exist: a NULL usually means an earlier call failed and its
 * result was passed straight on. */
static inline gb_status gb__ts_check_input(const char *op, const char *arg, const gb_tensor *t) {
    if (!t) return gb__fail(GB_ERR_ARG, "%s: input %s is NULL (did an earlier call fail?)", op, arg);
    return GB_OK;
}

/* Compute is f32: other dtypes are storage formats the caller converts. */
static inline gb_status gb__ts_check_f32(const char *op, const char *arg, const gb_tensor *t) {
    if (gb__ts_check_input(op, arg, t)) return GB_ERR_ARG;
    if (t->dtype != GB_DTYPE_F32)
        return gb__fail(GB_ERR_DTYPE,
                        "%s: input %s %s has dtype %s, but %s computes in float32; convert it first with "
                        "gb_to_dtype(t, GB_DTYPE_F32)",
                        op, arg, GB__SHAPE_STR(t), gb_dtype_name(t->dtype), op);
    return GB_OK;
}

/* Element i of any dtype as double: exact for every dtype glassbox stores
 * (integers up to 2^53), so comparisons and argmax need no conversion. */
static inline double gb__ts_load_any(const void *base, gb_dtype dt, int64_t i) {
    switch (dt) {
    case GB_DTYPE_F32: return ((const float *)base)[i];
    case GB_DTYPE_I64: return (double)((const int64_t *)base)[i];
    case GB_DTYPE_I32: return ((const int32_t *)base)[i];
    default: return gb__ts_load_f32(base, dt, i);
    }
}

/* This thread's share [*lo, *hi) of n iterations; all of them outside a
 * parallel region. The split depends only on n and the thread count, and
 * every element is computed by exactly one thread, so results do not depend
 * on the number of threads. */
static inline void gb__ts_thread_range(int64_t n, int64_t *lo, int64_t *hi) {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    *lo = n / nt * t + (t < n % nt ? t : n % nt);
    *hi = *lo + n / nt + (t < n % nt ? 1 : 0);
}

/* gb__ts_iter_init, then position it at the start of this thread's share. */
static inline void gb__ts_iter_share(gb__ts_iter *it, int ndim, const int64_t *shape, int nops,
                                  const int64_t *const *strides, int64_t *lo, int64_t *hi) {
    gb__ts_iter_init(it, ndim, shape, nops, strides);
    gb__ts_thread_range(it->n, lo, hi);
    gb__ts_iter_seek(it, *lo);
}

#endif
