/* Optimisers (SGD with momentum, AdamW) and gradient clipping, following
 * torch.optim's update rules step for step: scalars are computed in double,
 * the per-element arithmetic in f32, as PyTorch does for f32 parameters. */
#include "autograd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tensor/tensor_impl.h"

typedef enum gb__ag_optim_kind { GB__OPTIM_KIND_SGD, GB__OPTIM_KIND_ADAMW } gb__ag_optim_kind;

struct gb_optim {
    gb__ag_optim_kind kind;
    int n;
    gb_tensor **params;
    gb_tensor **buf1; /* SGD momentum buffer / Adam first moment (NULL until first step) */
    gb_tensor **buf2; /* Adam second moment */
    int64_t step;
    gb_sgd_opts sgd;
    gb_adamw_opts adamw;
};

gb_adamw_opts gb_adamw_defaults(void) { return (gb_adamw_opts){1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f}; }

/* Parameters are updated element by element in memory order, the state
 * laid out like them: a parameter is contiguous or kept transposed
 * (gb__ts_is_transposed: Conv1D's weight). Zeros laid out like p: */
static gb_tensor *gb__ag_zeros_like(const gb_tensor *p) {
    return gb__ts_is_transposed(p) ? gb__ts_transposed_new(p->shape[0], p->shape[1], true)
                                   : gb_zeros(p->ndim, p->shape, GB_DTYPE_F32);
}

static gb_optim *gb__ag_optim_new(gb__ag_optim_kind kind, int n, gb_tensor *const *params, const char *what) {
    for (int i = 0; i < n; i++)
        if (params[i]->dtype != GB_DTYPE_F32 || !(gb_tensor_is_contiguous(params[i]) || gb__ts_is_transposed(params[i])) ||
            !params[i]->requires_grad || !gb_tensor_is_leaf(params[i]))
            return gb__fail_null(GB_ERR_ARG,
                                 "%s: parameter %d (%s %s) must be a contiguous (or transposed) float32 leaf that "
                                 "requires grad", what, i, gb_dtype_name(params[i]->dtype), GB__SHAPE_STR(params[i]));
    gb_optim *o = gb__calloc(1, sizeof *o, what);
    if (!o) return NULL;
    o->kind = kind;
    o->n = n;
    o->params = gb__calloc((size_t)n, sizeof *o->params, what);
    o->buf1 = gb__calloc((size_t)n, sizeof *o->buf1, what);
    o->buf2 = gb__calloc((size_t)n, sizeof *o->buf2, what);
    if (!o->params || !o->buf1 || !o->buf2) {
        gb_optim_free(o);
        return NULL;
    }
    for (int i = 0; i < n; i++) o->params[i] = gb_tensor_ref(params[i]);
    return o;
}

gb_optim *gb_sgd_new(int nparams, gb_tensor *const *params, gb_sgd_opts opts) {
    if (opts.nesterov && (opts.momentum <= 0 || opts.dampening != 0))
        return gb__fail_null(GB_ERR_ARG, "sgd: nesterov momentum requires a momentum and zero dampening");
    gb_optim *o = gb__ag_optim_new(GB__OPTIM_KIND_SGD, nparams, params, "sgd");
    if (o) o->sgd = opts;
    return o;
}

gb_optim *gb_adamw_new(int nparams, gb_tensor *const *params, gb_adamw_opts opts) {
    if (!(opts.beta1 >= 0 && opts.beta1 < 1 && opts.beta2 >= 0 && opts.beta2 < 1 && opts.eps >= 0))
        return gb__fail_null(GB_ERR_ARG, "adamw: invalid betas (%g, %g) or eps %g", opts.beta1, opts.beta2, opts.eps);
    gb_optim *o = gb__ag_optim_new(GB__OPTIM_KIND_ADAMW, nparams, params, "adamw");
    if (o) o->adamw = opts;
    return o;
}

void gb_optim_set_lr(gb_optim *o, float lr) {
    if (o->kind == GB__OPTIM_KIND_SGD) o->sgd.lr = lr;
    else o->adamw.lr = lr;
}

/* One SGD update of p [n] with gradient g [n] and momentum buffer b [n]. */
static void gb__ag_sgd_update(float *p, float *b, const float *g, int64_t n, const gb_sgd_opts *o, bool first) {
    float wd = o->weight_decay, mom = o->momentum, damp = 1.0f - o->dampening, lr = o->lr;
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * p[i];
        if (mom != 0) {
            b[i] = first ? d : mom * b[i] + damp * d;
            d = o->nesterov ? d + mom * b[i] : b[i];
        }
        p[i] -= lr * d;
    }
}

/* One AdamW update of p [n]: m, v [n] moments, g [n] gradient. */
static void gb__ag_adamw_update(float *p, float *m, float *v, const float *g, int64_t n, const gb_adamw_opts *o,
                             int64_t step) {
    float decay = (float)(1.0 - (double)o->lr * o->weight_decay);
    float b1 = o->beta1, b2 = o->beta2, one_b1 = (float)(1.0 - b1), one_b2 = (float)(1.0 - b2);
    double bc1 = 1.0 - pow(o->beta1, (double)step), bc2 = 1.0 - pow(o->beta2, (double)step);
    float step_size = (float)(o->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    for (int64_t i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] = m[i] * b1 + one_b1 * g[i];
        v[i] = v[i] * b2 + one_b2 * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + o->eps;
        p[i] += -step_size * (m[i] / denom);
    }
}

/* One update of n elements, in the optimiser's own rule. */
static void gb__ag_update(gb_optim *o, float *p, float *b1, float *b2, const float *g, int64_t n, bool first) {
    if (o->kind == GB__OPTIM_KIND_SGD) gb__ag_sgd_update(p, b1, g, n, &o->sgd, first);
    else gb__ag_adamw_update(p, b1, b2, g, n, &o->adamw, o->step);
}

gb_status gb_optim_step(gb_optim *o) {
    o->step++;
    for (int i = 0; i < o->n; i++) {
        gb_tensor *p = o->params[i], *g = p->grad;
        if (!g) continue;
        int64_t n = gb_tensor_numel(p);
        bool first = o->buf1[i] == NULL;
        if (first && !(o->kind == GB__OPTIM_KIND_SGD && o->sgd.momentum == 0)) {
            o->buf1[i] = gb__ag_zeros_like(p);
            if (!o->buf1[i]) return GB_ERR_ALLOC;
            if (o->kind == GB__OPTIM_KIND_ADAMW && !(o->buf2[i] = gb__ag_zeros_like(p))) return GB_ERR_ALLOC;
        }
        float *pd = gb_tensor_data(p), *b1 = o->buf1[i] ? gb_tensor_data(o->buf1[i]) : NULL;
        float *b2 = o->buf2[i] ? gb_tensor_data(o->buf2[i]) : NULL;
        const float *gd = gb_tensor_data(g); /* [n], contiguous */
        if (!gb__ts_is_transposed(p)) {
            gb__ag_update(o, pd, b1, b2, gd, n, first);
        } else {
            /* g in p's memory order (g^T), 16 of p's stored rows at a time,
             * each block updated as it is ready: no transposed copy of the
             * whole gradient (340 MB a step for GPT-2 124M's Conv1D) */
            int64_t rows = p->shape[0], cols = p->shape[1];
            float *gt = gb__malloc((size_t)(16 * rows) * sizeof(float), "optim_step"); /* [16, rows] */
            if (!gt) return GB_ERR_ALLOC;
            for (int64_t j0 = 0; j0 < cols; j0 += 16) {
                int64_t nj = cols - j0 < 16 ? cols - j0 : 16, off = j0 * rows;
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t j = 0; j < nj; j++) gt[j * rows + r] = gd[r * cols + j0 + j];
                gb__ag_update(o, pd + off, b1 ? b1 + off : NULL, b2 ? b2 + off : NULL, gt, nj * rows, first);
            }
            free(gt);
        }
        gb__ts_bump_version(p);
    }
    return GB_OK;
}

/* The state torch's state_dict() keeps per parameter, by its names. */
static const struct {
    gb__ag_optim_kind kind;
    const char *name;
    bool second; /* buf2, else buf1 */
} gb__ag_optim_states[] = {
    {GB__OPTIM_KIND_SGD, "momentum_buffer", false},
    {GB__OPTIM_KIND_ADAMW, "exp_avg", false},
    {GB__OPTIM_KIND_ADAMW, "exp_avg_sq", true},
};

/* Where parameter i's state `name` lives, or NULL with an error. */
static gb_tensor **gb__ag_optim_slot(gb_optim *o, int i, const char *name, const char *what) {
    if (i < 0 || i >= o->n)
        return gb__fail_null(GB_ERR_INDEX, "%s: parameter %d is out of range (the optimiser has %d)", what, i, o->n);
    for (size_t k = 0; k < sizeof gb__ag_optim_states / sizeof gb__ag_optim_states[0]; k++)
        if (gb__ag_optim_states[k].kind == o->kind && name && !strcmp(gb__ag_optim_states[k].name, name))
            return gb__ag_optim_states[k].second ? &o->buf2[i] : &o->buf1[i];
    return gb__fail_null(GB_ERR_NOT_FOUND, "%s: %s has no state named '%s'", what,
                         o->kind == GB__OPTIM_KIND_SGD ? "SGD" : "AdamW", name ? name : "(null)");
}

int64_t gb_optim_steps(const gb_optim *o) { return o->step; }
void gb_optim_set_steps(gb_optim *o, int64_t steps) { o->step = steps; }

gb_tensor *gb_optim_state(gb_optim *o, int i, const char *name) {
    gb_tensor **slot = gb__ag_optim_slot(o, i, name, "optim_state");
    if (slot && !*slot)
        return gb__fail_null(GB_ERR_STATE, "optim_state: parameter %d has no '%s' yet (no step has updated it)", i,
                             name);
    return slot ? *slot : NULL;
}

gb_status gb_optim_set_state(gb_optim *o, int i, const char *name, gb_tensor *value) {
    gb_tensor **slot = gb__ag_optim_slot(o, i, name, "optim_set_state");
    if (!slot) return gb_last_status();
    gb_tensor *p = o->params[i];
    if (value->ndim != p->ndim || memcmp(value->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim))
        return gb__fail(GB_ERR_SHAPE, "optim_set_state: '%s' of parameter %d must have its shape %s, got %s", name, i,
                        GB__SHAPE_STR(p), GB__SHAPE_STR(value));
    /* Adam's two moments come into being together (a step tests the first). */
    gb_tensor **both[2] = {&o->buf1[i], o->kind == GB__OPTIM_KIND_ADAMW ? &o->buf2[i] : NULL};
    for (int k = 0; k < 2; k++)
        if (both[k] && !*both[k] && !(*both[k] = gb__ag_zeros_like(p))) return GB_ERR_ALLOC;
    return gb_copy_(*slot, value);
}

void gb_optim_zero_grad(gb_optim *o) {
    for (int i = 0; i < o->n; i++) gb_zero_grad(o->params[i]);
}

void gb_optim_free(gb_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        if (o->params) gb_tensor_free(o->params[i]);
        if (o->buf1) gb_tensor_free(o->buf1[i]);
        if (o->buf2) gb_tensor_free(o->buf2[i]);
    }
    free(o->params);
    free(o->buf1);
    free(o->buf2);
    free(o);
}

gb_status gb_clip_grad_norm(int nparams, gb_tensor *const *params, float max_norm, float *total_norm) {
    /* torch: total = ||(||g_1||, ..., ||g_n||)||, coef = min(max_norm / (total + 1e-6), 1). */
    double sq = 0;
    for (int i = 0; i < nparams; i++) {
        gb_tensor *g = params[i]->grad;
        if (!g) continue;
        const float *d = gb_tensor_data(g);
        float norm_i = 0;
        double s = 0;
        for (int64_t j = 0; j < gb_tensor_numel(g); j++) s += (double)d[j] * d[j];
        norm_i = (float)sqrt(s);
        sq += (double)norm_i * norm_i;
    }
    float total = (float)sqrt(sq);
    if (total_norm) *total_norm = total;
    if (!isfinite(total))
        return gb__fail(GB_ERR_ARG, "clip_grad_norm: the total norm of the gradients is %g", (double)total);
    float coef = (float)(max_norm / (total + 1e-6));
    if (coef > 1.0f) coef = 1.0f;
    for (int i = 0; i < nparams; i++) {
        gb_tensor *g = params[i]->grad;
        if (!g) continue;
        float *d = gb_tensor_data(g);
        for (int64_t j = 0; j < gb_tensor_numel(g); j++) d[j] *= coef;
    }
    return GB_OK;
}
