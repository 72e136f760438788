/* Opening Hugging Face checkpoints: config.json -> module tree -> weights. */
#include "io.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>

#include <stb/stb_ds.h>

#include "../nn/arch.h"
#include "safetensors_impl.h"
#include "../tensor/tensor_impl.h"
#include "file.h"
#include "json.h"

/* Every architecture the loader opens, one line each: the descriptors
 * (nn/arch.h) live beside their modules, in nn/<name>.c. */
#define GB__ARCHS(X) X(gpt2) X(llama) X(mistral)

#define GB__X(name) extern const gb__nn_arch gb__nn_arch_##name;
GB__ARCHS(GB__X)
#undef GB__X
static const gb__nn_arch *const gb__io_archs[] = {
#define GB__X(name) &gb__nn_arch_##name,
    GB__ARCHS(GB__X)
#undef GB__X
};
enum { GB__NARCHS = sizeof gb__io_archs / sizeof gb__io_archs[0] };

struct gb_model {
    gb_module *module;
    const gb__nn_arch *arch;
    void *config; /* arch->config_size bytes, as read from config.json */
    char *dir;
    int64_t bos;
    int64_t *eos; /* stb_ds array */
    uint64_t file_bytes;
    gb_model *next_open; /* the list gb_model_of reads */
};

/* Every open model, for gb_model_of: a trace knows its module tree only. */
static gb_model *gb__io_open_models;
static pthread_mutex_t gb__io_open_lock = PTHREAD_MUTEX_INITIALIZER;

const gb_model *gb_model_of(const gb_module *root) {
    pthread_mutex_lock(&gb__io_open_lock);
    const gb_model *m = gb__io_open_models;
    while (m && m->module != root) m = m->next_open;
    pthread_mutex_unlock(&gb__io_open_lock);
    return m;
}

/* The int64_t field of the config at offset. */
static int64_t gb__io_config_int(const gb_model *m, size_t offset) {
    int64_t v;
    memcpy(&v, (const char *)m->config + offset, sizeof v);
    return v;
}

/* ---- config.json -------------------------------------------------------- */

/* The reader architectures read config.json through (nn/arch.h). */
static gb__nn_cfg_value gb__io_cfg_json_get(const void *obj, const char *key) {
    const gb__json_json *j = gb__json_is_object(obj) ? gb__json_get(obj, key) : NULL;
    gb__nn_cfg_value v = {.kind = j ? GB__CFG_OTHER : GB__CFG_ABSENT};
    long long i;
    if (!j) return v;
    if (gb__json_is_null(j)) v.kind = GB__CFG_NULL;
    else if (gb__json_int(j, &i)) v.kind = GB__CFG_INT, v.i = i, v.num = (double)i;
    else if (gb__json_number(j, &v.num)) v.kind = GB__CFG_NUMBER;
    else if (gb__json_bool(j, &v.b)) v.kind = GB__CFG_BOOL;
    else if ((v.s = gb__json_string(j))) v.kind = GB__CFG_STRING;
    else if (gb__json_is_object(j)) v.kind = GB__CFG_OBJECT, v.obj = j;
    return v;
}

/* The architecture of model_type, or NULL with GB_ERR_UNSUPPORTED naming
 * the ones there are. */
static const gb__nn_arch *gb__io_arch_of(const char *type, const char *path) {
    char known[256] = "";
    for (int i = 0; i < GB__NARCHS; i++) {
        if (!strcmp(type, gb__io_archs[i]->model_type)) return gb__io_archs[i];
        size_t n = strlen(known);
        snprintf(known + n, sizeof known - n, "%s%s", i == 0 ? "" : i + 1 < GB__NARCHS ? ", " : " and ",
                 gb__io_archs[i]->model_type);
    }
    return gb__fail_null(GB_ERR_UNSUPPORTED, "model: %s: model_type '%s' is not supported (glassbox loads %s)", path,
                         type, known);
}

/* bos_token_id / eos_token_id: an int, a list of ints, or absent; each
 * must be a token of the vocabulary (an id beyond it would be accepted and
 * never produced, or fed to the embedding at the first step). */
static gb_status gb__io_token_ids(const gb__json_json *root, gb_model *m, const char *config) {
    long long v, vocab = (long long)gb_model_vocab_size(m);
    gb__json_json *b = gb__json_get(root, "bos_token_id");
    m->bos = gb__json_int(b, &v) ? v : -1;
    if (gb__json_int(b, &v) && (v < 0 || v >= vocab))
        return gb__fail(GB_ERR_FORMAT, "model: %s: bos_token_id %lld is outside the vocabulary of %lld tokens", config,
                        v, vocab);
    gb__json_json *e = gb__json_get(root, "eos_token_id");
    int n = gb__json_is_array(e) ? gb__json_size(e) : 1;
    for (int i = 0; i < n; i++) {
        if (!gb__json_int(gb__json_is_array(e) ? gb__json_at(e, i) : e, &v)) continue;
        if (v < 0 || v >= vocab)
            return gb__fail(GB_ERR_FORMAT, "model: %s: eos_token_id %lld is outside the vocabulary of %lld tokens",
                            config, v, vocab);
        if (!GB_ARR_PUT(m->eos, v, "model: eos_token_id")) return GB_ERR_ALLOC;
    }
    return GB_OK;
}

/* ---- weights ------------------------------------------------------------ */

/* Stored buffers of the architecture that are not parameters. */
static bool gb__io_ignored(const gb__nn_arch *a, const char *name) {
    size_t n = strlen(name);
    for (const char *const *suffix = a->ignored; suffix && *suffix; suffix++) {
        size_t k = strlen(*suffix);
        if (n >= k && !strcmp(name + n - k, *suffix)) return true;
    }
    return false;
}

/* The checkpoint's name for a parameter: as is, or one of the
 * architecture's aliases (buf holds it). */
static const char *gb__io_stored_name(gb_safetensors *st, const gb__nn_arch *a, const char *name, char *buf, size_t size) {
    if (gb_safetensors_has(st, name)) return name;
    for (const gb__nn_alias *al = a->aliases; al && al->prefix; al++) {
        size_t k = strlen(al->prefix);
        if (strncmp(name, al->prefix, k)) continue;
        snprintf(buf, size, "%s%s", al->stored, name + k);
        if (gb_safetensors_has(st, buf)) return buf;
    }
    return NULL;
}

/* The index of the layer a parameter's dotted name is in, or -1. */
static int64_t gb__io_layer_of(const gb__nn_arch *a, const char *name) {
    size_t k = strlen(a->layers);
    if (strncmp(name, a->layers, k) || name[k] != '.' || !isdigit((unsigned char)name[k + 1])) return -1;
    char *end;
    long long v = strtoll(name + k + 1, &end, 10);
    return *end == '.' && v < INT64_MAX ? v : -1;
}

/* The layers the checkpoint holds: one more than the largest index under
 * the architecture's layer list, by its own name or an alias ("h.3.attn"
 * for GPT-2's "transformer.h.3.attn"); 0 when none. */
static int64_t gb__io_stored_layers(gb_safetensors *st, const gb__nn_arch *a) {
    int64_t n = 0;
    for (int i = 0; i < gb_safetensors_count(st); i++) {
        const char *name = gb_safetensors_name(st, i);
        int64_t l = gb__io_layer_of(a, name);
        for (const gb__nn_alias *al = a->aliases; al && al->prefix; al++) {
            size_t k = strlen(al->stored);
            char full[512];
            snprintf(full, sizeof full, "%s%s", al->prefix, name + k);
            if (!strncmp(name, al->stored, k) && gb__io_layer_of(a, full) > l) l = gb__io_layer_of(a, full);
        }
        if (l >= n) n = l + 1;
    }
    return n;
}

/* Before anything is built: the config's layer count against the layers
 * the checkpoint holds, since the module tree grows with the count
 * (num_hidden_layers: 1000000000 would build a billion layers' modules
 * before the first tensor was missed). Fewer layers in the config leave
 * tensors over, which the match names. */
static gb_status gb__io_check_layers(const gb_model *m, gb_safetensors *st, const char *config) {
    const gb__nn_arch *a = m->arch;
    int64_t want = gb__io_config_int(m, a->layers_at), have = gb__io_stored_layers(st, a);
    if (want <= have) return GB_OK;
    char held[300] = "no layer";
    if (have) snprintf(held, sizeof held, "%lld layer%s (%s.0 to %s.%lld)", (long long)have, have == 1 ? "" : "s",
                       a->layers, a->layers, (long long)have - 1);
    return gb__fail(GB_ERR_NOT_FOUND, "model: %s: %s is %lld, but the %d tensors of %s hold %s: none of %s.%lld",
                    config, a->layers_field, (long long)want, gb_safetensors_count(st), gb_safetensors_path(st), held,
                    a->layers, (long long)have);
}

/* The tree's parameters and the checkpoint's name for each. */
typedef struct gb__io_weights {
    int n;
    const char **names;
    gb_tensor **params; /* shape-only until loaded */
    char **stored;      /* malloc'd */
} gb__io_weights;

static void gb__io_weights_free(gb__io_weights *w) {
    for (int i = 0; w->stored && i < w->n; i++) free(w->stored[i]);
    free(w->stored);
    free(w->names);
    free(w->params);
}

/* Every parameter of the tree against the checkpoint's tensors, by name
 * and shape, and every tensor against the tree; reads headers only. */
static gb_status gb__io_match_weights(gb_model *m, gb_safetensors *st, gb__io_weights *w) {
    const gb__nn_arch *a = m->arch;
    if ((w->n = gb_module_parameters(m->module, &w->names, &w->params)) < 0) return GB_ERR_ALLOC;
    if (!(w->stored = gb__calloc((size_t)w->n + 1, sizeof *w->stored, "model: weights"))) return GB_ERR_ALLOC;
    struct {
        char *key;
        int value;
    } *used = NULL;
    gb_status s = GB_SH_NEW_ARENA(used, "model: weights") ? GB_OK : GB_ERR_ALLOC;
    for (int i = 0; i < w->n && s == GB_OK; i++) {
        char alias[512];
        const char *stored = gb__io_stored_name(st, a, w->names[i], alias, sizeof alias);
        if (!stored) {
            s = gb__fail(GB_ERR_NOT_FOUND, "model: %s: tensor '%s' is missing (the config asks for it)",
                         gb_safetensors_path(st), w->names[i]);
            break;
        }
        if (!GB_SH_PUT(used, stored, 1, "model: weights")) {
            s = GB_ERR_ALLOC;
            break;
        }
        gb_dtype dt;
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if ((s = gb_safetensors_info(st, stored, &dt, &nd, shape)) != GB_OK) break;
        gb_tensor *p = w->params[i];
        if (nd != gb_tensor_ndim(p) || memcmp(shape, gb_tensor_shape(p), sizeof(int64_t) * (size_t)nd)) {
            char b1[160], b2[160];
            s = gb__fail(GB_ERR_SHAPE, "model: %s: tensor '%s' has shape %s but the config implies %s",
                         gb_safetensors_path(st), stored, gb__shape_str(b1, 160, nd, shape),
                         gb__shape_str(b2, 160, gb_tensor_ndim(p), gb_tensor_shape(p)));
            break;
        }
        if (dt != GB_DTYPE_F32 && dt != GB_DTYPE_F16 && dt != GB_DTYPE_BF16) {
            s = gb__fail(GB_ERR_FORMAT, "model: %s: tensor '%s' has dtype %s; a parameter is float32, float16 or "
                         "bfloat16", gb_safetensors_path(st), stored, gb_dtype_name(dt));
            break;
        }
        size_t len = strlen(stored) + 1;
        if (!(w->stored[i] = gb__malloc(len, "model: weights"))) s = GB_ERR_ALLOC;
        else memcpy(w->stored[i], stored, len);
    }
    /* a stored copy of a tied weight is redundant */
    if (s == GB_OK && a->tie && !GB_SH_PUT(used, a->tie->param, 1, "model: weights")) s = GB_ERR_ALLOC;
    for (int i = 0; s == GB_OK && i < gb_safetensors_count(st); i++) {
        const char *name = gb_safetensors_name(st, i);
        if (GB_SH_GETI(used, name) < 0 && !gb__io_ignored(a, name))
            s = gb__fail(GB_ERR_FORMAT, "model: %s: unexpected tensor '%s' (not part of a %s model with this config)",
                         gb_safetensors_path(st), name, a->model_type);
    }
    shfree(used);
    return s;
}

/* Each parameter becomes its checkpoint tensor: a view of the mapping, or
 * its f32 conversion when asked. */
static gb_status gb__io_load_weights(gb_model *m, gb_safetensors *st, const gb__io_weights *w, const gb_model_opts *opts,
                                  uint64_t total) {
    uint64_t done = 0;
    const gb__nn_arch *a = m->arch;
    gb_status s = GB_OK;
    for (int i = 0; i < w->n && s == GB_OK; i++) {
        gb_tensor *t = opts && opts->f32_weights ? gb_safetensors_get(st, w->stored[i])
                                                 : gb_safetensors_get_stored(st, w->stored[i]);
        if (!t) return gb_last_status();
        /* Find the owning module and local name from the dotted path. */
        const char *name = w->names[i], *dot = strrchr(name, '.');
        char path[512];
        snprintf(path, sizeof path, "%.*s", dot ? (int)(dot - name) : 0, name);
        gb_module *owner = gb_module_find(m->module, path);
        s = owner ? gb_module_set_param(owner, dot ? dot + 1 : name, t) : gb_last_status();
        /* copied into the parameter's own layout (Conv1D's weight, kept
         * transposed): the mapped bytes would be resident twice */
        if (s == GB_OK && gb_tensor_data(gb_module_param(owner, dot ? dot + 1 : name)) != gb_tensor_data(t))
            gb__st_drop(st, w->stored[i]);
        gb_dtype dt;
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if (s == GB_OK) s = gb_safetensors_info(st, w->stored[i], &dt, &nd, shape);
        if (s == GB_OK) done += (uint64_t)gb_tensor_numel(t) * gb_dtype_size(dt);
        if (opts && opts->progress) opts->progress(done < total ? done : total, total, opts->progress_ctx);
        gb_tensor_free(t);
    }
    if (s == GB_OK && opts && opts->progress) opts->progress(total, total, opts->progress_ctx); /* headers too */
    /* A tied weight reads the loaded tensor it is tied to. */
    if (s == GB_OK && a->tie && (!a->tied || a->tied(m->config))) s = gb__nn_tie_apply(m->module, a->tie);
    return s;
}

/* ---- opening ------------------------------------------------------------ */

/* Size of the weights: the file, or for a sharded checkpoint every
 * .safetensors file beside its index. */
static uint64_t gb__io_file_bytes(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && !strstr(path, ".index.json")) return (uint64_t)sb.st_size;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && !S_ISDIR(sb.st_mode)) *slash = 0;
    else if (!slash && !S_ISDIR(sb.st_mode)) snprintf(dir, sizeof dir, ".");
    uint64_t total = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        char file[8192];
        snprintf(file, sizeof file, "%s/%s", dir, e->d_name);
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors") && stat(file, &sb) == 0) total += (uint64_t)sb.st_size;
    }
    if (d) closedir(d);
    return total;
}

static const char *gb__io_bytes_str(char buf[32], uint64_t n) {
    if (n >= (uint64_t)1 << 30) snprintf(buf, 32, "%.1f GiB", (double)n / (1 << 30));
    else snprintf(buf, 32, "%.1f MiB", (double)n / (1 << 20));
    return buf;
}

/* Address space for mapping the weight files, checked before they are
 * mapped: under a limit (ulimit -v) the mappings count in full, though only
 * the pages read become resident. */
static gb_status gb__io_check_mapping(const char *weights, uint64_t bytes) {
    uint64_t left = gb__address_space_left();
    char b1[32], b2[32];
    if (bytes <= left) return GB_OK;
    return gb__fail(GB_ERR_ALLOC,
                    "model: %s: mapping its %s of weight files needs as much address space, but the process's limit "
                    "(ulimit -v) leaves %s; raise the limit (the weights become resident only as they are read)",
                    weights, gb__io_bytes_str(b1, bytes), gb__io_bytes_str(b2, left));
}

/* What the weights need beyond their mapping, against what is available,
 * before any is loaded: a clear failure instead of the kernel's
 * out-of-memory killer halfway. As stored they need nothing more (views of
 * the mapping); converted to f32 (f32_weights) they need 4 bytes an
 * element, resident and in the address space. */
static gb_status gb__io_check_memory(gb_safetensors *st, const gb__io_weights *w, const gb_model_opts *opts) {
    uint64_t convert = 0, stored = 0;
    for (int i = 0; opts && opts->f32_weights && i < w->n; i++) {
        gb_dtype dt;
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if (gb_safetensors_info(st, w->stored[i], &dt, &nd, shape) != GB_OK) return gb_last_status();
        uint64_t n = (uint64_t)gb__ts_numel(nd, shape);
        if (dt == GB_DTYPE_F16 || dt == GB_DTYPE_BF16) convert += n * 4, stored += n * 2;
    }
    char b1[32], b2[32], b3[32];
    uint64_t avail = gb__mem_available(), left = gb__address_space_left();
    if (convert > avail || convert > left)
        return gb__fail(GB_ERR_ALLOC,
                        "model: %s: converting its float16/bfloat16 weights to float32 needs %s of memory, but %s "
                        "is available%s; open it without f32_weights (gb_model_opts; on the command line, without "
                        "--dtype f32) to use the %s of weights as stored, mapped from the files without a copy",
                        gb_safetensors_path(st), gb__io_bytes_str(b1, convert),
                        gb__io_bytes_str(b2, avail < left ? avail : left),
                        avail <= left ? "" : " in the process's address space (ulimit -v) beside the weight files",
                        gb__io_bytes_str(b3, stored));
    return GB_OK;
}

gb_model *gb_model_open(const char *model, const gb_model_opts *opts) {
    gb_hf_files f = {0};
    gb_model *m = NULL;
    gb__json_json *root = NULL;
    gb_safetensors *st = NULL;
    gb__io_weights w = {0};
    char *text = NULL;
    size_t len = 0;
    if (gb_hf_resolve(model, &f) != GB_OK) goto fail;
    if (!(text = gb__io_file_read(f.config, &len, "model"))) goto fail;
    if (!(root = gb__json_parse(text, len, f.config))) goto fail;
    if (!(m = gb__calloc(1, sizeof *m, "model_open"))) goto fail;
    const char *type = gb__json_string(gb__json_get(root, "model_type"));
    if (!type) {
        gb__fail(GB_ERR_FORMAT, "model: %s: no model_type", f.config);
        goto fail;
    }
    if (!(m->arch = gb__io_arch_of(type, f.config))) goto fail;
    if (!(m->config = gb__calloc(1, m->arch->config_size, "model: config"))) goto fail;
    gb__nn_config c = {gb__io_cfg_json_get, root, f.config, GB_OK};
    m->arch->read(&c, m->config);
    if (c.st != GB_OK || gb__io_token_ids(root, m, f.config) != GB_OK) goto fail;
    /* Headers and shapes are checked before anything is allocated: the
     * tree is built shape-only, its parameters become views of the
     * mapping, and only the buffers (rotary frequencies) get storage. */
    m->file_bytes = gb__io_file_bytes(f.weights);
    if (gb__io_check_mapping(f.weights, m->file_bytes) != GB_OK || !(st = gb_safetensors_open(f.weights))) goto fail;
    if (gb__io_check_layers(m, st, f.config) != GB_OK) goto fail;
    gb__meta_push();
    m->module = m->arch->build(m->config);
    gb__meta_pop();
    if (!m->module) {
        gb__error_prefix("model: %s", f.config);
        goto fail;
    }
    if (gb__io_match_weights(m, st, &w) != GB_OK || gb__io_check_memory(st, &w, opts) != GB_OK) goto fail;
    if (gb__io_load_weights(m, st, &w, opts, m->file_bytes) != GB_OK) goto fail;
    if (gb__nn_module_fill_buffers(m->module) != GB_OK) goto fail;
    m->dir = f.dir;
    f.dir = NULL;
    gb__io_weights_free(&w);
    gb_safetensors_free(st); /* the tensors keep their mappings */
    gb__json_free(root);
    free(text);
    gb_hf_files_free(&f);
    pthread_mutex_lock(&gb__io_open_lock);
    m->next_open = gb__io_open_models;
    gb__io_open_models = m;
    pthread_mutex_unlock(&gb__io_open_lock);
    return m;
fail:
    gb__io_weights_free(&w);
    gb_safetensors_free(st);
    gb__json_free(root);
    free(text);
    gb_hf_files_free(&f);
    gb_model_free(m);
    return NULL;
}

void gb_model_free(gb_model *m) {
    if (!m) return;
    pthread_mutex_lock(&gb__io_open_lock);
    gb_model **at = &gb__io_open_models;
    while (*at && *at != m) at = &(*at)->next_open;
    if (*at) *at = m->next_open;
    pthread_mutex_unlock(&gb__io_open_lock);
    gb_module_free(m->module);
    free(m->config);
    free(m->dir);
    arrfree(m->eos);
    free(m);
}

gb_module *gb_model_module(const gb_model *m) { return m->module; }
const char *gb_model_type(const gb_model *m) { return m->arch->model_type; }
const char *gb_model_dir(const gb_model *m) { return m->dir; }
gb_tokenizer *gb_model_tokenizer(const gb_model *m) { return gb_tokenizer_open(m->dir); }
int64_t gb_model_vocab_size(const gb_model *m) { return gb__io_config_int(m, m->arch->vocab_at); }
int64_t gb_model_max_positions(const gb_model *m) { return gb__io_config_int(m, m->arch->positions_at); }
int64_t gb_model_bos_id(const gb_model *m) { return m->bos; }
bool gb_model_is_eos(const gb_model *m, int64_t id) {
    for (ptrdiff_t i = 0; i < arrlen(m->eos); i++)
        if (m->eos[i] == id) return true;
    return false;
}
const gb_gpt2_config *gb_model_gpt2_config(const gb_model *m) {
    return m->arch->public_config == GB__ARCH_CONFIG_GPT2 ? m->config : NULL;
}
const gb_llama_config *gb_model_llama_config(const gb_model *m) {
    return m->arch->public_config == GB__ARCH_CONFIG_LLAMA ? m->config : NULL;
}
char *gb_model_config_str(const gb_model *m) { return gb__nn_arch_config_str(m->arch, m->config); }
const char *gb_model_part(const gb_model *m, gb_part part) {
    return (unsigned)part < GB_PART_COUNT ? m->arch->parts[part] : NULL;
}
uint64_t gb_model_file_bytes(const gb_model *m) { return m->file_bytes; }
