/* Rotary position embedding, Hugging Face's apply_rotary_pos_emb as one op:
 *
 *     y = x * cos + rotate_half(x) * sin,
 *     rotate_half(x) = cat(-x[..., h:], x[..., :h]),  h = D / 2,
 *
 * over the last dim D, cos and sin broadcast to x's shape. Written as the
 * five ops of its definition (two views, neg, cat, two products, a sum),
 * each a [B, H, T, D] tensor written and read again, it was 6% of the
 * Llama-shaped model's 128-token forward at one thread. */
#include "elementwise_impl.h"
#include "simd.h"

#include <string.h>

/* With h2 = D - h (D odd: the second half is the longer), rotate_half(x)[j]
 * is -x[h + j] for j < h2 and x[j - h2] after. */
static inline float gb__ts_rope_rot(const float *x, int64_t xs, int64_t j, int64_t h, int64_t h2) {
    return j < h2 ? -x[(h + j) * xs] : x[(j - h2) * xs];
}

/* Strides of x, cos, sin walking out's rows (the last dim's size set to 1,
 * so an iterator over them visits each row once), and along the last dim. */
typedef struct gb__ts_rope_geo {
    int64_t rows_shape[GB_MAX_DIMS], st[3][GB_MAX_DIMS], last[3];
    int64_t d, h, h2, rows;
} gb__ts_rope_geo;

static void gb__ts_rope_geo_of(gb__ts_rope_geo *g, const gb_tensor *out) {
    int nd = out->ndim;
    for (int k = 0; k < 3; k++) {
        gb__ts_broadcast_strides(out->src[k], nd, out->shape, g->st[k]);
        g->last[k] = g->st[k][nd - 1];
    }
    memcpy(g->rows_shape, out->shape, sizeof g->rows_shape);
    g->d = out->shape[nd - 1];
    g->rows_shape[nd - 1] = 1;
    g->h = g->d / 2, g->h2 = g->d - g->d / 2;
    g->rows = g->d ? gb_tensor_numel(out) / g->d : 0;
}

/* One row whose x, cos and sin are contiguous along D: the two halves as
 * vector loops (the strided loop's branch per element kept it scalar: 1%
 * of the Llama-shaped forward). The same expressions, so the same bits. */
static GB__CLONES void gb__ts_rope_row(float *restrict y /* [d] */, const float *restrict x /* [d] */,
                                       const float *restrict c /* [d] */, const float *restrict s /* [d] */,
                                       int64_t d, int64_t h, int64_t h2) {
#pragma omp simd
    for (int64_t j = 0; j < h2; j++) y[j] = x[j] * c[j] + -x[h + j] * s[j];
#pragma omp simd
    for (int64_t j = h2; j < d; j++) y[j] = x[j] * c[j] + x[j - h2] * s[j];
}

gb_status gb__ts_op_ROPE_forward(gb_tensor *out) {
    gb__ts_rope_geo g;
    gb__ts_rope_geo_of(&g, out);
    const float *x = gb_tensor_data(out->src[0]); /* its strides */
    const float *c = gb_tensor_data(out->src[1]); /* its strides, broadcast */
    const float *s = gb_tensor_data(out->src[2]); /* its strides, broadcast */
    float *y = gb_tensor_data(out);               /* [rows, d] */
    int64_t d = g.d, h = g.h, h2 = g.h2, xs = g.last[0], cs = g.last[1], ss = g.last[2];
#pragma omp parallel num_threads(gb__threads()) if (g.rows * d > GB__PAR_MIN_WORK)
    {
        gb__ts_iter it;
        int64_t lo, hi;
        gb__ts_iter_share(&it, out->ndim, g.rows_shape, 3, (const int64_t *[]){g.st[0], g.st[1], g.st[2]}, &lo, &hi);
        for (int64_t r = lo; r < hi; r++, gb__ts_iter_next(&it)) {
            const float *xr = x + it.off[0], *cr = c + it.off[1], *sr = s + it.off[2]; /* [d] by their strides */
            float *yr = y + r * d;                                                     /* [d] */
            if (xs == 1 && cs == 1 && ss == 1)
                gb__ts_rope_row(yr, xr, cr, sr, d, h, h2);
            else
                for (int64_t j = 0; j < d; j++)
                    yr[j] = xr[j * xs] * cr[j * cs] + gb__ts_rope_rot(xr, xs, j, h, h2) * sr[j * ss];
        }
    }
    return GB_OK;
}

/* dx[i] += dy[i] cos[i] + (i < h ? (dy sin)[i + h2] : -(dy sin)[i - h]),
 * the transpose of rotate_half; dcos += dy x and dsin += dy rotate_half(x),
 * summed over the dims they were broadcast along (one thread: broadcast
 * rows add into the same elements). */
gb_status gb__ts_op_ROPE_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb__ts_rope_geo g;
    gb__ts_rope_geo_of(&g, out);
    const float *x = gb_tensor_data(out->src[0]); /* its strides */
    const float *c = gb_tensor_data(out->src[1]); /* its strides, broadcast */
    const float *s = gb_tensor_data(out->src[2]); /* its strides, broadcast */
    const float *dy = gb_tensor_data(dout);       /* [rows, d] */
    int64_t d = g.d, h = g.h, h2 = g.h2, xs = g.last[0], cs = g.last[1], ss = g.last[2];
    const int64_t *st[3] = {g.st[0], g.st[1], g.st[2]};
    if (dsrc[0]) {
        float *dx = gb_tensor_data(dsrc[0]); /* [rows, d]: x has out's shape */
#pragma omp parallel num_threads(gb__threads()) if (g.rows * d > GB__PAR_MIN_WORK)
        {
            gb__ts_iter it;
            int64_t lo, hi;
            gb__ts_iter_share(&it, out->ndim, g.rows_shape, 3, st, &lo, &hi);
            for (int64_t r = lo; r < hi; r++, gb__ts_iter_next(&it)) {
                const float *cr = c + it.off[1], *sr = s + it.off[2], *g0 = dy + r * d; /* [d] */
                float *dxr = dx + r * d;                                                 /* [d] */
                for (int64_t i = 0; i < d; i++) {
                    int64_t j = i < h ? i + h2 : i - h; /* the element of rotate_half that read x[i] */
                    float t = g0[j] * sr[j * ss];
                    dxr[i] += g0[i] * cr[i * cs] + (i < h ? t : -t);
                }
            }
        }
    }
    for (int k = 1; k < 3; k++) {
        if (!dsrc[k]) continue;
        float *dk = gb_tensor_data(dsrc[k]); /* cos's or sin's shape, contiguous */
        gb_tensor shape_of = {.ndim = out->src[k]->ndim};
        memcpy(shape_of.shape, out->src[k]->shape, sizeof shape_of.shape);
        gb__ts_contiguous_strides(shape_of.ndim, shape_of.shape, shape_of.stride);
        int64_t gs[GB_MAX_DIMS];
        gb__ts_broadcast_strides(&shape_of, out->ndim, out->shape, gs);
        int64_t gl = gs[out->ndim - 1];
        gb__ts_iter it;
        gb__ts_iter_init(&it, out->ndim, g.rows_shape, 2, (const int64_t *[]){g.st[0], gs});
        for (int64_t r = 0; r < g.rows; r++, gb__ts_iter_next(&it)) {
            const float *xr = x + it.off[0], *g0 = dy + r * d; /* [d] */
            float *dr = dk + it.off[1];                        /* [d] by gl */
            for (int64_t j = 0; j < d; j++)
                dr[j * gl] += g0[j] * (k == 1 ? xr[j * xs] : gb__ts_rope_rot(xr, xs, j, h, h2));
        }
    }
    return GB_OK;
}

gb_tensor *gb_rope(gb_tensor *x, gb_tensor *cos, gb_tensor *sin) {
    if (gb__ts_check_f32("rope", "x", x) || gb__ts_check_f32("rope", "cos", cos) || gb__ts_check_f32("rope", "sin", sin))
        return NULL;
    if (x->ndim < 1) return gb__fail_null(GB_ERR_SHAPE, "rope: x must have at least one dim, got a 0-dim tensor");
    const gb_tensor *cs[2] = {cos, sin};
    for (int k = 0; k < 2; k++) {
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if (gb__ts_broadcast_shapes("rope", x->ndim, x->shape, cs[k]->ndim, cs[k]->shape, &nd, shape)) return NULL;
        if (nd != x->ndim || memcmp(shape, x->shape, (size_t)nd * sizeof *shape))
            return gb__fail_null(GB_ERR_SHAPE, "rope: %s of shape %s does not broadcast to x's shape %s",
                                 k ? "sin" : "cos", GB__SHAPE_STR(cs[k]), GB__SHAPE_STR(x));
    }
    gb_tensor *out = gb__ts_op_new(GB_OP_ROPE, "rope", GB_DTYPE_F32, x->ndim, x->shape, 3, (gb_tensor *[]){x, cos, sin});
    return out ? gb__ts_op_run(out) : NULL;
}
