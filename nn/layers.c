/* Building blocks: Linear, Hugging Face's Conv1D, Embedding, LayerNorm,
 * LlamaRMSNorm, Dropout and the activations of Hugging Face's ACT2FN, each
 * printing and initialising like its PyTorch class; and the helpers the
 * model files share (calling children, parameter init, Python's float repr). */
#include "modules_impl.h"
#include "../tensor/tensor_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers shared by the module files --------------------------------- */

void gb__nn_values_move(gb_values *dst, gb_values *src) {
    gb_values_clear(dst);
    *dst = *src;
    memset(src, 0, sizeof *src);
}

const char *gb__nn_module_label(const gb_module *m, char *buf, size_t size) {
    snprintf(buf, size, "%s (%s)", *gb_module_path(m) ? gb_module_path(m) : "<root>", gb_module_type(m));
    return buf;
}

gb_status gb__nn_call(gb_module *child, gb_run *run, int n, gb_tensor *const *xs, gb_values *out) {
    gb_values in = {0};
    in.n = n;
    for (int i = 0; i < n; i++) in.v[i] = xs[i]; /* borrowed: gb_module_call does not consume */
    gb_status st = gb_module_call(child, run, &in, out);
    if (st == GB_OK && (out->n < 1 || !out->v[0])) {
        gb_values_clear(out);
        return gb__fail(GB_ERR_STATE, "%s returned no tensor (an observer replaced its output with nothing?)",
                        GB__LABEL(child));
    }
    return st;
}

gb_status gb__nn_call_into(gb_module *child, gb_run *run, gb_values *cur, int nextra, gb_tensor *const *extra) {
    gb_tensor *xs[GB_MAX_VALUES] = {cur->v[0]};
    int n = 1;
    for (; n <= nextra && n < GB_MAX_VALUES; n++) xs[n] = extra[n - 1];
    gb_values next = {0};
    gb_status st = gb__nn_call(child, run, n, xs, &next);
    gb__nn_values_move(cur, &next);
    return st;
}

gb_status gb__nn_op_failed(gb_module *m) {
    gb__error_prefix("%s", GB__LABEL(m));
    return gb_last_status();
}

/* Push y, the result of m's tensor op, or report that the op failed. */
static gb_status gb__nn_push_result(gb_module *m, gb_tensor *y, gb_values *out) {
    return y ? gb_values_push(out, y) : gb__nn_op_failed(m);
}

gb_tensor *gb__nn_input(gb_module *m, const gb_values *in, int i, const char *expected) {
    if (i < in->n && in->v[i]) return in->v[i];
    return gb__fail_null(GB_ERR_ARG, "%s: expects %s, got %d input tensor%s", GB__LABEL(m), expected, in->n,
                         in->n == 1 ? "" : "s");
}

bool gb__nn_meta(const gb_tensor *like) { return gb__meta_mode() || (like && gb__is_meta(like)); }

gb_tensor *gb__nn_empty(int ndim, const int64_t *shape, gb_dtype dt, bool meta) {
    if (meta) gb__meta_push();
    gb_tensor *t = gb_empty(ndim, shape, dt);
    if (meta) gb__meta_pop();
    return t;
}

/* Copy the values of src (same shape) into m's parameter `name` in place. */
static void gb__nn_param_overwrite(gb_module *m, const char *name, gb_tensor *src) {
    gb_tensor *p = gb_module_param(m, name);
    if (p && src && !gb__is_meta(p) && !gb__is_meta(src)) { /* p may be a transposed view: by index */
        gb__ts_copy_into(p, src);
        gb__ts_bump_version(p);
    }
    gb_tensor_free(src);
}

void gb__nn_param_uniform(gb_module *m, const char *name, gb_rng *rng, float low, float high) {
    gb_tensor *p = gb_module_param(m, name);
    if (p) gb__nn_param_overwrite(m, name, gb_rand(rng, gb_tensor_ndim(p), gb_tensor_shape(p), low, high));
}

void gb__nn_param_normal(gb_module *m, const char *name, gb_rng *rng, float mean, float std) {
    gb_tensor *p = gb_module_param(m, name);
    if (p) gb__nn_param_overwrite(m, name, gb_randn(rng, gb_tensor_ndim(p), gb_tensor_shape(p), mean, std));
}

void gb__nn_param_fill(gb_module *m, const char *name, float value) {
    gb_tensor *p = gb_module_param(m, name);
    if (p) gb__nn_param_overwrite(m, name, gb_full(gb_tensor_ndim(p), gb_tensor_shape(p), value, GB_DTYPE_F32));
}

/* Python's float repr: the shortest digits that read back as the same f32,
 * positional for exponents in [-4, 16), else d.ddde-XX. */
char *gb__nn_py_float(char *buf, size_t size, float v) {
    if (isnan(v)) return snprintf(buf, size, "nan"), buf;
    if (isinf(v)) return snprintf(buf, size, v < 0 ? "-inf" : "inf"), buf;
    if (v == 0.0f) return snprintf(buf, size, signbit(v) ? "-0.0" : "0.0"), buf;
    char sci[48];
    for (int p = 1; p <= 9; p++) {
        snprintf(sci, sizeof sci, "%.*e", p - 1, (double)v);
        if (strtof(sci, NULL) == v) break;
    }
    /* sci is "[-]d.ddde[+-]XX": split into sign, digits and exponent. */
    const char *s = sci;
    bool neg = *s == '-';
    if (neg) s++;
    char digits[32];
    int nd = 0;
    for (; *s && *s != 'e'; s++)
        if (*s != '.') digits[nd++] = *s;
    int e = atoi(s + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char out[64];
    int len = snprintf(out, sizeof out, "%s", neg ? "-" : "");
    if (e >= -4 && e < 16) {
        if (e >= 0) {
            for (int i = 0; i <= e; i++) out[len++] = i < nd ? digits[i] : '0';
            out[len++] = '.';
            if (nd > e + 1)
                for (int i = e + 1; i < nd; i++) out[len++] = digits[i];
            else
                out[len++] = '0';
        } else {
            out[len++] = '0';
            out[len++] = '.';
            for (int i = 0; i < -e - 1; i++) out[len++] = '0';
            for (int i = 0; i < nd; i++) out[len++] = digits[i];
        }
        out[len] = 0;
    } else {
        out[len++] = digits[0];
        if (nd > 1) {
            out[len++] = '.';
            for (int i = 1; i < nd; i++) out[len++] = digits[i];
        }
        snprintf(out + len, sizeof out - (size_t)len, "e%c%02d", e < 0 ? '-' : '+', abs(e));
    }
    snprintf(buf, size, "%s", out);
    return buf;
}

/* Forward of a module that applies one tensor function to its one input. */
static gb_status gb__nn_unary_forward(gb_module *m, const gb_values *in, gb_values *out, gb_tensor *(*fn)(gb_tensor *)) {
    gb_tensor *x = gb__nn_input(m, in, 0, "one input tensor");
    if (!x) return gb_last_status();
    return gb__nn_push_result(m, fn(x), out);
}

/* ---- Linear ------------------------------------------------------------- */

typedef struct gb__nn_linear_settings {
    int64_t in_features, out_features;
    bool bias;
    bool tied; /* the weight is an embedding's: init leaves it alone */
} gb__nn_linear_settings;

static gb_status gb__nn_linear_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run;
    gb_tensor *x = gb__nn_input(m, in, 0, "one input tensor [..., in_features]");
    if (!x) return gb_last_status();
    gb_tensor *bias = GB__SETTINGS(m, gb__nn_linear_settings)->bias ? gb_module_param(m, "bias") : NULL;
    return gb__nn_push_result(m, gb_linear(x, gb_module_param(m, "weight"), bias), out);
}

static void gb__nn_linear_repr(const gb_module *m, char *buf, size_t size) {
    const gb__nn_linear_settings *s = GB__SETTINGS(m, gb__nn_linear_settings);
    snprintf(buf, size, "in_features=%lld, out_features=%lld, bias=%s", (long long)s->in_features,
             (long long)s->out_features, s->bias ? "True" : "False");
}

/* reset_parameters(): kaiming_uniform_(a=sqrt(5)) gives bound
 * sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in), the bias' bound too. */
static void gb__nn_linear_init(gb_module *m, gb_rng *rng) {
    const gb__nn_linear_settings *s = GB__SETTINGS(m, gb__nn_linear_settings);
    float bound = s->in_features > 0 ? 1.0f / sqrtf((float)s->in_features) : 0.0f;
    if (!s->tied) gb__nn_param_uniform(m, "weight", rng, -bound, bound);
    if (s->bias) gb__nn_param_uniform(m, "bias", rng, -bound, bound);
}

static const gb__nn_module_type gb__nn_type_linear = {.name = "Linear",
                                                .forward = gb__nn_linear_forward,
                                                .extra_repr = gb__nn_linear_repr,
                                                .init = gb__nn_linear_init,
                                                .settings = sizeof(gb__nn_linear_settings)};

gb_module *gb_nn_linear(int64_t in_features, int64_t out_features, bool bias) {
    if (in_features < 0 || out_features < 0)
        return gb__fail_null(GB_ERR_ARG, "Linear: in_features=%lld and out_features=%lld must be >= 0",
                             (long long)in_features, (long long)out_features);
    gb_module *m = gb__nn_module_new(&gb__nn_type_linear);
    if (!m) return NULL;
    *GB__SETTINGS(m, gb__nn_linear_settings) = (gb__nn_linear_settings){in_features, out_features, bias, false};
    gb_status st = gb__nn_module_add_param(m, "weight", 2, (int64_t[]){out_features, in_features}, false);
    if (st == GB_OK && bias) st = gb__nn_module_add_param(m, "bias", 1, (int64_t[]){out_features}, false);
    return gb__nn_module_done(m, st);
}

gb_status gb__nn_linear_siblings(gb_run *run, int n, gb_module *const *lin, gb_tensor *x, gb_tensor **out) {
    gb_tensor *w[8] = {0};
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (n <= 0 || n > 8) return GB_OK;
    for (int i = 0; i < n; i++)
        if (lin[i]->type != &gb__nn_type_linear || GB__SETTINGS(lin[i], gb__nn_linear_settings)->bias ||
            !gb__nn_call_unseen(run, lin[i]) || !(w[i] = gb_module_param(lin[i], "weight")))
            return GB_OK;
    if (!gb__ts_linear_shared(x, n, w, out)) return GB_OK;
    gb_status st = GB_OK;
    for (int i = 0; i < n && st == GB_OK; i++) st = gb__nn_count_call(run, lin[i]);
    for (int i = 0; i < n && st; i++) gb_tensor_free(out[i]), out[i] = NULL;
    return st;
}

void gb__nn_linear_mark_tied(gb_module *linear) {
    if (linear->type == &gb__nn_type_linear) GB__SETTINGS(linear, gb__nn_linear_settings)->tied = true;
}

/* ---- Conv1D (Hugging Face's pytorch_utils.Conv1D) ----------------------- */

typedef struct gb__nn_conv1d_settings {
    int64_t nf, nx;
} gb__nn_conv1d_settings;

/* y = x @ weight + bias with weight [nx, nf]: linear with weight^T. The
 * weight is kept transposed in memory ([nf, nx] storage, the layout of
 * nn.Linear's weight), so weight^T is a plain matrix whose rows the
 * weight-in-place kernel streams (tensor/wgemm.c): 8-9% of GPT-2's
 * forward at 128 tokens against the [nx, nf] layout's panel copies, and
 * batch-1 decoding reads it by rows, as Llama's. */
static gb_status gb__nn_conv1d_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run;
    gb_tensor *x = gb__nn_input(m, in, 0, "one input tensor [..., nx]");
    if (!x) return gb_last_status();
    int64_t nx = GB__SETTINGS(m, gb__nn_conv1d_settings)->nx;
    if (gb_tensor_ndim(x) == 0 || gb_tensor_dim(x, -1) != nx)
        return gb__fail(GB_ERR_SHAPE, "%s: input of shape %s does not end in nx=%lld features", GB__LABEL(m),
                        GB__SHAPE_STR(x), (long long)nx);
    gb_tensor *wt = gb_transpose(gb_module_param(m, "weight"), 0, 1);
    gb_tensor *y = wt ? gb_linear(x, wt, gb_module_param(m, "bias")) : NULL;
    gb_tensor_free(wt);
    return gb__nn_push_result(m, y, out);
}

/* transformers >= 4.48 defines Conv1D.__repr__ as "Conv1D(nf=..., nx=...)";
 * with no children, an extra_repr prints the same. */
static void gb__nn_conv1d_repr(const gb_module *m, char *buf, size_t size) {
    const gb__nn_conv1d_settings *s = GB__SETTINGS(m, gb__nn_conv1d_settings);
    snprintf(buf, size, "nf=%lld, nx=%lld", (long long)s->nf, (long long)s->nx);
}

/* Conv1D.__init__: weight normal(std=0.02), bias zeros. */
static void gb__nn_conv1d_init(gb_module *m, gb_rng *rng) {
    gb__nn_param_normal(m, "weight", rng, 0.0f, 0.02f);
    gb__nn_param_fill(m, "bias", 0.0f);
}

static const gb__nn_module_type gb__nn_type_conv1d = {.name = "Conv1D",
                                                .forward = gb__nn_conv1d_forward,
                                                .extra_repr = gb__nn_conv1d_repr,
                                                .init = gb__nn_conv1d_init,
                                                .settings = sizeof(gb__nn_conv1d_settings)};

gb_module *gb_nn_conv1d(int64_t nf, int64_t nx) {
    if (nf < 0 || nx < 0)
        return gb__fail_null(GB_ERR_ARG, "Conv1D: nf=%lld and nx=%lld must be >= 0", (long long)nf, (long long)nx);
    gb_module *m = gb__nn_module_new(&gb__nn_type_conv1d);
    if (!m) return NULL;
    *GB__SETTINGS(m, gb__nn_conv1d_settings) = (gb__nn_conv1d_settings){nf, nx};
    gb_status st = gb__nn_module_add_param_t(m, "weight", nx, nf);
    if (st == GB_OK) st = gb__nn_module_add_param(m, "bias", 1, (int64_t[]){nf}, false);
    return gb__nn_module_done(m, st);
}

/* ---- Embedding ---------------------------------------------------------- */

typedef struct gb__nn_embedding_settings {
    int64_t num_embeddings, embedding_dim;
} gb__nn_embedding_settings;

static gb_status gb__nn_embedding_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run;
    gb_tensor *ids = gb__nn_input(m, in, 0, "one tensor of ids (int64 or int32)");
    if (!ids) return gb_last_status();
    return gb__nn_push_result(m, gb_embedding(gb_module_param(m, "weight"), ids), out);
}

static void gb__nn_embedding_repr(const gb_module *m, char *buf, size_t size) {
    const gb__nn_embedding_settings *s = GB__SETTINGS(m, gb__nn_embedding_settings);
    snprintf(buf, size, "%lld, %lld", (long long)s->num_embeddings, (long long)s->embedding_dim);
}

static void gb__nn_embedding_init(gb_module *m, gb_rng *rng) { gb__nn_param_normal(m, "weight", rng, 0.0f, 1.0f); }

static const gb__nn_module_type gb__nn_type_embedding = {.name = "Embedding",
                                                   .forward = gb__nn_embedding_forward,
                                                   .extra_repr = gb__nn_embedding_repr,
                                                   .init = gb__nn_embedding_init,
                                                   .settings = sizeof(gb__nn_embedding_settings)};

gb_module *gb_nn_embedding(int64_t num_embeddings, int64_t embedding_dim) {
    if (num_embeddings < 0 || embedding_dim < 0)
        return gb__fail_null(GB_ERR_ARG, "Embedding: num_embeddings=%lld and embedding_dim=%lld must be >= 0",
                             (long long)num_embeddings, (long long)embedding_dim);
    gb_module *m = gb__nn_module_new(&gb__nn_type_embedding);
    if (!m) return NULL;
    *GB__SETTINGS(m, gb__nn_embedding_settings) = (gb__nn_embedding_settings){num_embeddings, embedding_dim};
    return gb__nn_module_done(m, gb__nn_module_add_param(m, "weight", 2, (int64_t[]){num_embeddings, embedding_dim}, false));
}

/* ---- LayerNorm and LlamaRMSNorm ----------------------------------------- */

/* LayerNorm's and LlamaRMSNorm's (which has no affine flag: always a weight). */
typedef struct gb__nn_norm_settings {
    int64_t n; /* normalized_shape (n,) */
    float eps;
    bool affine;
} gb__nn_norm_settings;

/* PyTorch's wording for a normalized_shape that does not fit the input. */
static gb_status gb__nn_norm_check(gb_module *m, const gb_tensor *x) {
    int64_t n = GB__SETTINGS(m, gb__nn_norm_settings)->n;
    if (gb_tensor_ndim(x) > 0 && gb_tensor_dim(x, -1) == n) return GB_OK;
    return gb__fail(GB_ERR_SHAPE,
                    "%s: Given normalized_shape=[%lld], expected input with shape [*, %lld], but got input of size%s",
                    GB__LABEL(m), (long long)n, (long long)n, GB__SHAPE_STR(x));
}

static gb_status gb__nn_layer_norm_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run;
    gb_tensor *x = gb__nn_input(m, in, 0, "one input tensor");
    if (!x || gb__nn_norm_check(m, x)) return gb_last_status();
    const gb__nn_norm_settings *s = GB__SETTINGS(m, gb__nn_norm_settings);
    gb_tensor *y = gb_layer_norm(x, s->affine ? gb_module_param(m, "weight") : NULL,
                                 s->affine ? gb_module_param(m, "bias") : NULL, s->eps);
    return gb__nn_push_result(m, y, out);
}

static void gb__nn_layer_norm_repr(const gb_module *m, char *buf, size_t size) {
    const gb__nn_norm_settings *s = GB__SETTINGS(m, gb__nn_norm_settings);
    char eps[32];
    snprintf(buf, size, "(%lld,), eps=%s, elementwise_affine=%s", (long long)s->n,
             gb__nn_py_float(eps, sizeof eps, s->eps), s->affine ? "True" : "False");
}

static void gb__nn_layer_norm_init(gb_module *m, gb_rng *rng) {
    (void)rng;
    gb__nn_param_fill(m, "weight", 1.0f);
    gb__nn_param_fill(m, "bias", 0.0f);
}

static const gb__nn_module_type gb__nn_type_layer_norm = {.name = "LayerNorm",
                                                    .forward = gb__nn_layer_norm_forward,
                                                    .extra_repr = gb__nn_layer_norm_repr,
                                                    .init = gb__nn_layer_norm_init,
                                                    .settings = sizeof(gb__nn_norm_settings)};

gb_module *gb_nn_layer_norm(int64_t n, float eps, bool elementwise_affine) {
    if (n < 0) return gb__fail_null(GB_ERR_ARG, "LayerNorm: normalized_shape=%lld must be >= 0", (long long)n);
    gb_module *m = gb__nn_module_new(&gb__nn_type_layer_norm);
    if (!m) return NULL;
    *GB__SETTINGS(m, gb__nn_norm_settings) = (gb__nn_norm_settings){n, eps, elementwise_affine};
    gb_status st = GB_OK;
    if (elementwise_affine) {
        st = gb__nn_module_add_param(m, "weight", 1, (int64_t[]){n}, false);
        if (st == GB_OK) st = gb__nn_module_add_param(m, "bias", 1, (int64_t[]){n}, false);
    }
    return gb__nn_module_done(m, st);
}

static gb_status gb__nn_rms_norm_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run;
    gb_tensor *x = gb__nn_input(m, in, 0, "one input tensor");
    if (!x || gb__nn_norm_check(m, x)) return gb_last_status();
    float eps = GB__SETTINGS(m, gb__nn_norm_settings)->eps;
    return gb__nn_push_result(m, gb_rms_norm(x, gb_module_param(m, "weight"), eps), out);
}

/* LlamaRMSNorm.extra_repr (transformers >= 4.48): "(64,), eps=1e-05". */
static void gb__nn_rms_norm_repr(const gb_module *m, char *buf, size_t size) {
    const gb__nn_norm_settings *s = GB__SETTINGS(m, gb__nn_norm_settings);
    char eps[32];
    snprintf(buf, size, "(%lld,), eps=%s", (long long)s->n, gb__nn_py_float(eps, sizeof eps, s->eps));
}

static void gb__nn_rms_norm_init(gb_module *m, gb_rng *rng) {
    (void)rng;
    gb__nn_param_fill(m, "weight", 1.0f);
}

static const gb__nn_module_type gb__nn_type_rms_norm = {.name = "LlamaRMSNorm",
                                                  .forward = gb__nn_rms_norm_forward,
                                                  .extra_repr = gb__nn_rms_norm_repr,
                                                  .init = gb__nn_rms_norm_init,
                                                  .settings = sizeof(gb__nn_norm_settings)};

gb_module *gb_nn_rms_norm(int64_t n, float eps) {
    if (n < 0) return gb__fail_null(GB_ERR_ARG, "LlamaRMSNorm: hidden_size=%lld must be >= 0", (long long)n);
    gb_module *m = gb__nn_module_new(&gb__nn_type_rms_norm);
    if (!m) return NULL;
    *GB__SETTINGS(m, gb__nn_norm_settings) = (gb__nn_norm_settings){n, eps, true};
    return gb__nn_module_done(m, gb__nn_module_add_param(m, "weight", 1, (int64_t[]){n}, false));
}

/* ---- Dropout ------------------------------------------------------------ */

typedef struct gb__nn_dropout_settings {
    float p; /* only printed: eval mode */
} gb__nn_dropout_settings;

/* glassbox runs modules in eval mode, where dropout is the identity. The
 * output is a new reference to the input, as PyTorch returns the input
 * tensor itself in eval mode. */
static gb_status gb__nn_dropout_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    (void)run;
    gb_tensor *x = gb__nn_input(m, in, 0, "one input tensor");
    if (!x) return gb_last_status();
    return gb_values_push(out, gb_tensor_ref(x));
}

static void gb__nn_dropout_repr(const gb_module *m, char *buf, size_t size) {
    char p[32];
    snprintf(buf, size, "p=%s, inplace=False", gb__nn_py_float(p, sizeof p, GB__SETTINGS(m, gb__nn_dropout_settings)->p));
}

static const gb__nn_module_type gb__nn_type_dropout = {.name = "Dropout",
                                                 .forward = gb__nn_dropout_forward,
                                                 .extra_repr = gb__nn_dropout_repr,
                                                 .settings = sizeof(gb__nn_dropout_settings)};

gb_module *gb_nn_dropout(float p) {
    if (!(p >= 0.0f && p <= 1.0f)) {
        char ps[32];
        return gb__fail_null(GB_ERR_ARG, "Dropout: dropout probability has to be between 0 and 1, but got %s",
                             gb__nn_py_float(ps, sizeof ps, p));
    }
    gb_module *m = gb__nn_module_new(&gb__nn_type_dropout);
    if (m) GB__SETTINGS(m, gb__nn_dropout_settings)->p = p;
    return m;
}

/* ---- activations (Hugging Face's ACT2FN) -------------------------------- */

/* X(id, Hugging Face name, PyTorch class printed, tensor function).
 * "gelu" is GELUActivation (exact erf GELU), "gelu_new" NewGELUActivation
 * (the tanh approximation); "silu" and "swish" are both nn.SiLU. */
#define GB__ACTIVATION_LIST(X)                                                                                         \
    X(gelu, "gelu", "GELUActivation", gb_gelu)                                                                         \
    X(gelu_new, "gelu_new", "NewGELUActivation", gb_gelu_tanh)                                                         \
    X(silu, "silu", "SiLU", gb_silu)                                                                                   \
    X(swish, "swish", "SiLU", gb_silu)                                                                                 \
    X(relu, "relu", "ReLU", gb_relu)

#define GB__X(id, hf, cls, fn)                                                                                         \
    static gb_status gb__nn_act_##id##_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {          \
        (void)run;                                                                                                     \
        return gb__nn_unary_forward(m, in, out, fn);                                                                      \
    }                                                                                                                  \
    static const gb__nn_module_type gb__nn_type_act_##id = {.name = cls, .forward = gb__nn_act_##id##_forward};
GB__ACTIVATION_LIST(GB__X)
#undef GB__X

bool gb__nn_is_silu(const gb_module *m) { return m->type == &gb__nn_type_act_silu || m->type == &gb__nn_type_act_swish; }

static const struct {
    const char *hf_name;
    const gb__nn_module_type *type;
} gb__nn_activations[] = {
#define GB__X(id, hf, cls, fn) {hf, &gb__nn_type_act_##id},
    GB__ACTIVATION_LIST(GB__X)
#undef GB__X
};

gb_module *gb_nn_activation(const char *hf_name) {
    size_t n = sizeof gb__nn_activations / sizeof gb__nn_activations[0];
    for (size_t i = 0; hf_name && i < n; i++)
        if (!strcmp(hf_name, gb__nn_activations[i].hf_name)) {
            return gb__nn_module_new(gb__nn_activations[i].type);
        }
    char known[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s'%s'", i ? ", " : "",
                 gb__nn_activations[i].hf_name);
    return gb__fail_null(GB_ERR_UNSUPPORTED, "activation: function '%s' not found in ACT2FN mapping (glassbox has %s)",
                         hf_name ? hf_name : "(null)", known);
}

gb_module *gb__nn_module_with(gb_module *m, int n, const char *const *names, gb_module *const *kids) {
    gb_status st = m ? GB_OK : GB_ERR_ALLOC;
    for (int i = 0; i < n; i++) {
        if (st == GB_OK) st = gb__nn_module_add_child(m, names[i], kids[i]); /* frees the kid on failure */
        else gb_module_free(kids[i]);
    }
    return gb__nn_module_done(m, st);
}

gb_module *gb__nn_module_repeat(int64_t n, gb_module *(*make)(const void *ctx), const void *ctx) {
    gb_module *list = gb_module_list(0, NULL);
    gb_status st = list ? GB_OK : GB_ERR_ALLOC;
    for (int64_t i = 0; st == GB_OK && i < n; i++) {
        char name[24];
        snprintf(name, sizeof name, "%lld", (long long)i);
        st = gb__nn_module_add_child(list, name, make(ctx));
    }
    return gb__nn_module_done(list, st);
}

gb_status gb__nn_causal_lm_forward(gb_module *m, gb_run *run, const gb_values *in, gb_values *out) {
    gb_tensor *ids = gb__nn_input(m, in, 0, "(input_ids,)");
    if (!ids) return gb_last_status();
    gb_values h = {0};
    gb_status st = gb__nn_call(m->children[GB__LM_BODY], run, 1, &ids, &h);
    if (st == GB_OK) st = gb__nn_call(m->children[GB__LM_HEAD], run, 1, &h.v[0], out);
    else gb__nn_values_move(out, &h);
    gb_values_clear(&h);
    return st;
}

gb_module *gb__nn_causal_lm(const gb__nn_module_type *type, const void *config, const char *body_name, gb_module *body,
                         int64_t hidden, int64_t vocab, const gb__nn_tie *tie, const char *op) {
    gb_module *lm = gb__nn_module_new(type);
    if (lm) memcpy(lm->settings, config, type->settings);
    gb_module *kids[GB__LM_COUNT] = {[GB__LM_BODY] = body, [GB__LM_HEAD] = gb_nn_linear(hidden, vocab, false)};
    const char *names[GB__LM_COUNT] = {[GB__LM_BODY] = body_name, [GB__LM_HEAD] = "lm_head"};
    lm = gb__nn_module_with(lm, GB__LM_COUNT, names, kids);
    gb_status st = lm ? GB_OK : gb_last_status();
    if (lm && tie) st = gb__nn_tie_apply(lm, tie);
    if (st == GB_OK) return lm;
    gb__error_prefix("%s", op);
    gb_module_free(lm);
    return NULL;
}

gb_status gb__nn_prenorm_block(gb_module *m, gb_run *run, gb_tensor *h, int nextra, gb_tensor *const *extra,
                            const int child[4], gb_values *out) {
    enum { LN1, ATTN, LN2, MLP };
    gb_values ln = {0}, at = {0}, mlp = {0};
    gb_tensor *h2 = NULL, *h3 = NULL, *ain[GB_MAX_VALUES] = {0}; /* the attention's inputs */
    gb_status st = gb__nn_call(m->children[child[LN1]], run, 1, &h, &ln);
    if (st) goto ln_stopped;
    ain[0] = ln.v[0];
    for (int i = 0; i < nextra && i + 1 < GB_MAX_VALUES; i++) ain[i + 1] = extra[i];
    st = gb__nn_call(m->children[child[ATTN]], run, 1 + nextra, ain, &at);
    if (st) {
        gb__nn_values_move(out, &at);
        goto done;
    }
    h2 = gb_add(h, at.v[0]); /* residual + attention */
    if (!h2) {
        st = gb__nn_op_failed(m);
        goto done;
    }
    gb_values_clear(&ln);
    st = gb__nn_call(m->children[child[LN2]], run, 1, &h2, &ln);
    if (st) goto ln_stopped;
    st = gb__nn_call(m->children[child[MLP]], run, 1, &ln.v[0], &mlp);
    if (st) {
        gb__nn_values_move(out, &mlp);
        goto done;
    }
    h3 = gb_add(h2, mlp.v[0]); /* residual + MLP */
    st = gb__nn_push_result(m, h3, out);
    for (int i = 1; st == GB_OK && i < at.n; i++) st = gb_values_push(out, gb_tensor_ref(at.v[i]));
    goto done;
ln_stopped:
    gb__nn_values_move(out, &ln);
done:
    gb_values_clear(&ln), gb_values_clear(&at), gb_values_clear(&mlp);
    gb_tensor_free(h2);
    return st;
}

