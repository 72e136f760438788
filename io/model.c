/* Opening Hugging Face checkpoints: config.json -> module tree -> weights. */
#include "io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>

#include <stb/stb_ds.h>

#include "../tensor/tensor_impl.h"
#include "file.h"
#include "json.h"

struct gb_model {
    gb_module *module;
    char type[16];
    char *dir;
    gb_gpt2_config *gpt2;
    gb_llama_config *llama;
    int64_t bos;
    int64_t *eos; /* stb_ds array */
    uint64_t file_bytes;
};

/* ---- config.json -------------------------------------------------------- */

typedef struct {
    const gb__json *root;
    const char *path;
    gb_status st;
} gb__cfg;

/* An integer field: required (no default) when dflt is NULL. */
static int64_t gb__cfg_int(gb__cfg *c, const char *key, const int64_t *dflt) {
    gb__json *j = gb__json_get(c->root, key);
    long long v;
    if ((!j || gb__json_is_null(j)) && dflt) return *dflt;
    if (!j) {
        if (c->st == GB_OK) c->st = gb__fail(GB_ERR_FORMAT, "model: %s: missing field '%s'", c->path, key);
        return 0;
    }
    if (!gb__json_int(j, &v)) {
        if (c->st == GB_OK) c->st = gb__fail(GB_ERR_FORMAT, "model: %s: field '%s' is not an integer", c->path, key);
        return 0;
    }
    return v;
}

static double gb__cfg_num(gb__cfg *c, const char *key, double dflt) {
    gb__json *j = gb__json_get(c->root, key);
    double v;
    if (!j || gb__json_is_null(j)) return dflt;
    if (!gb__json_number(j, &v)) {
        if (c->st == GB_OK) c->st = gb__fail(GB_ERR_FORMAT, "model: %s: field '%s' is not a number", c->path, key);
        return dflt;
    }
    return v;
}

static bool gb__cfg_bool(gb__cfg *c, const char *key, bool dflt) {
    gb__json *j = gb__json_get(c->root, key);
    bool v;
    if (!j || gb__json_is_null(j)) return dflt;
    if (!gb__json_bool(j, &v)) {
        if (c->st == GB_OK) c->st = gb__fail(GB_ERR_FORMAT, "model: %s: field '%s' is not a boolean", c->path, key);
        return dflt;
    }
    return v;
}

static void gb__cfg_str(gb__cfg *c, const char *key, const char *dflt, char *out, size_t size) {
    const char *s = gb__json_string(gb__json_get(c->root, key));
    snprintf(out, size, "%s", s ? s : dflt);
}

static gb_gpt2_config *gb__gpt2_config(gb__cfg *c) {
    gb_gpt2_config *g = gb__calloc(1, sizeof *g, "model: gpt2 config");
    if (!g) return NULL;
    int64_t d50257 = 50257, d1024 = 1024, d768 = 768, d12 = 12, d0 = 0;
    g->vocab_size = gb__cfg_int(c, "vocab_size", &d50257);
    int64_t ctx = gb__cfg_int(c, "n_ctx", &d1024);
    g->n_positions = gb__cfg_int(c, "n_positions", &ctx);
    g->n_embd = gb__cfg_int(c, "n_embd", &d768);
    g->n_layer = gb__cfg_int(c, "n_layer", &d12);
    g->n_head = gb__cfg_int(c, "n_head", &d12);
    g->n_inner = gb__cfg_int(c, "n_inner", &d0);
    g->layer_norm_epsilon = (float)gb__cfg_num(c, "layer_norm_epsilon", 1e-5);
    gb__cfg_str(c, "activation_function", "gelu_new", g->activation_function, sizeof g->activation_function);
    g->attn_pdrop = (float)gb__cfg_num(c, "attn_pdrop", 0.1);
    g->embd_pdrop = (float)gb__cfg_num(c, "embd_pdrop", 0.1);
    g->resid_pdrop = (float)gb__cfg_num(c, "resid_pdrop", 0.1);
    return g;
}

static gb_llama_config *gb__llama_config(gb__cfg *c) {
    gb_llama_config *l = gb__calloc(1, sizeof *l, "model: llama config");
    if (!l) return NULL;
    int64_t d32000 = 32000, d2048 = 2048;
    l->vocab_size = gb__cfg_int(c, "vocab_size", &d32000);
    l->hidden_size = gb__cfg_int(c, "hidden_size", NULL);
    l->intermediate_size = gb__cfg_int(c, "intermediate_size", NULL);
    l->num_hidden_layers = gb__cfg_int(c, "num_hidden_layers", NULL);
    l->num_attention_heads = gb__cfg_int(c, "num_attention_heads", NULL);
    l->num_key_value_heads = gb__cfg_int(c, "num_key_value_heads", &l->num_attention_heads);
    int64_t hd = l->num_attention_heads ? l->hidden_size / l->num_attention_heads : 0;
    l->head_dim = gb__cfg_int(c, "head_dim", &hd);
    l->max_position_embeddings = gb__cfg_int(c, "max_position_embeddings", &d2048);
    l->rms_norm_eps = (float)gb__cfg_num(c, "rms_norm_eps", 1e-6);
    l->rope_theta = gb__cfg_num(c, "rope_theta", 10000.0);
    l->tie_word_embeddings = gb__cfg_bool(c, "tie_word_embeddings", false);
    l->attention_bias = gb__cfg_bool(c, "attention_bias", false);
    l->mlp_bias = gb__cfg_bool(c, "mlp_bias", false);
    gb__cfg_str(c, "hidden_act", "silu", l->hidden_act, sizeof l->hidden_act);
    gb__json *rs = gb__json_get(c->root, "rope_scaling");
    if (rs && !gb__json_is_null(rs) && c->st == GB_OK) {
        const char *type = gb__json_string(gb__json_get(rs, "rope_type"));
        if (!type) type = gb__json_string(gb__json_get(rs, "type"));
        if (!type || strcmp(type, "llama3") != 0) {
            c->st = gb__fail(GB_ERR_UNSUPPORTED,
                             "model: %s: rope_scaling of type '%s' is not supported (glassbox supports 'llama3')",
                             c->path, type ? type : "(none)");
        } else {
            gb__cfg sub = {rs, c->path, GB_OK};
            snprintf(l->rope_type, sizeof l->rope_type, "llama3");
            l->rope_factor = gb__cfg_num(&sub, "factor", 8.0);
            l->rope_low_freq_factor = gb__cfg_num(&sub, "low_freq_factor", 1.0);
            l->rope_high_freq_factor = gb__cfg_num(&sub, "high_freq_factor", 4.0);
            int64_t d8192 = 8192;
            l->rope_original_max_position_embeddings = gb__cfg_int(&sub, "original_max_position_embeddings", &d8192);
            if (sub.st != GB_OK) c->st = sub.st;
        }
    }
    return l;
}

/* bos_token_id / eos_token_id: an int, a list of ints, or absent. */
static void gb__token_ids(gb__cfg *c, gb_model *m) {
    long long v;
    gb__json *b = gb__json_get(c->root, "bos_token_id");
    m->bos = gb__json_int(b, &v) ? v : -1;
    gb__json *e = gb__json_get(c->root, "eos_token_id");
    if (gb__json_int(e, &v)) arrput(m->eos, v);
    for (int i = 0; gb__json_is_array(e) && i < gb__json_size(e); i++)
        if (gb__json_int(gb__json_at(e, i), &v)) arrput(m->eos, v);
}

/* ---- weights ------------------------------------------------------------ */

/* Buffers that old GPT-2 checkpoints carry and that are not parameters. */
static bool gb__ignorable(const char *name) {
    static const char *const suffixes[] = {".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && !strcmp(name + n - k, suffixes[i])) return true;
    }
    return false;
}

/* The checkpoint's name for a parameter: as is, or — for GPT-2 files saved
 * before transformers added the prefix — without "transformer.". */
static const char *gb__stored_name(gb_safetensors *st, const char *name, bool gpt2) {
    if (gb_safetensors_has(st, name)) return name;
    if (gpt2 && !strncmp(name, "transformer.", 12) && gb_safetensors_has(st, name + 12)) return name + 12;
    return NULL;
}

static gb_status gb__load_weights(gb_model *m, gb_safetensors *st, const gb_model_opts *opts, uint64_t total) {
    uint64_t done = 0;
    bool gpt2 = m->gpt2 != NULL;
    const char **names = NULL;
    gb_tensor **params = NULL;
    int n = gb_module_parameters(m->module, &names, &params);
    if (n < 0) return GB_ERR_ALLOC;
    struct {
        char *key;
        int value;
    } *used = NULL;
    sh_new_arena(used);
    gb_status s = GB_OK;
    for (int i = 0; i < n && s == GB_OK; i++) {
        const char *stored = gb__stored_name(st, names[i], gpt2);
        if (!stored) {
            s = gb__fail(GB_ERR_NOT_FOUND, "model: %s: tensor '%s' is missing (the config asks for it)",
                         gb_safetensors_path(st), names[i]);
            break;
        }
        shput(used, stored, 1);
        gb_dtype dt;
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if ((s = gb_safetensors_info(st, stored, &dt, &nd, shape)) != GB_OK) break;
        gb_tensor *p = params[i];
        if (nd != gb_tensor_ndim(p) || memcmp(shape, gb_tensor_shape(p), sizeof(int64_t) * (size_t)nd)) {
            char b1[160], b2[160];
            s = gb__fail(GB_ERR_SHAPE, "model: %s: tensor '%s' has shape %s but the config implies %s",
                         gb_safetensors_path(st), stored, gb__shape_str(b1, 160, nd, shape),
                         gb__shape_str(b2, 160, gb_tensor_ndim(p), gb_tensor_shape(p)));
            break;
        }
        gb_tensor *t = opts && opts->keep_dtype ? gb_safetensors_get_stored(st, stored) : gb_safetensors_get(st, stored);
        if (!t) {
            s = gb_last_status();
            break;
        }
        /* Find the owning module and local name from the dotted path. */
        const char *dot = strrchr(names[i], '.');
        char path[512];
        snprintf(path, sizeof path, "%.*s", dot ? (int)(dot - names[i]) : 0, names[i]);
        gb_module *owner = gb_module_find(m->module, path);
        s = owner ? gb_module_set_param(owner, dot ? dot + 1 : names[i], t) : gb_last_status();
        done += (uint64_t)gb__numel(nd, shape) * gb_dtype_size(dt);
        if (opts && opts->progress) opts->progress(done < total ? done : total, total, opts->progress_ctx);
        gb_tensor_free(t);
    }
    if (s == GB_OK && opts && opts->progress) opts->progress(total, total, opts->progress_ctx); /* headers too */
    /* Tied output embeddings read the loaded input embeddings. */
    if (s == GB_OK) {
        gb_module *head = gb_module_find(m->module, "lm_head");
        const char *emb = gpt2 ? "transformer.wte" : "model.embed_tokens";
        if (gpt2 || m->llama->tie_word_embeddings)
            s = head ? gb_module_tie_param(head, "weight", gb_module_find(m->module, emb), "weight") : gb_last_status();
        if (head) shput(used, "lm_head.weight", 1); /* a stored copy of a tied head is redundant */
    }
    for (int i = 0; s == GB_OK && i < gb_safetensors_count(st); i++) {
        const char *name = gb_safetensors_name(st, i);
        if (shgeti(used, name) < 0 && !gb__ignorable(name))
            s = gb__fail(GB_ERR_FORMAT, "model: %s: unexpected tensor '%s' (not part of a %s model with this config)",
                         gb_safetensors_path(st), name, m->type);
    }
    shfree(used);
    free(names);
    free(params);
    return s;
}

/* ---- opening ------------------------------------------------------------ */

/* Size of the weights: the file, or for a sharded checkpoint every
 * .safetensors file beside its index. */
static uint64_t gb__file_bytes(const char *path) {
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

gb_model *gb_model_open(const char *model, const gb_model_opts *opts) {
    gb_hf_files f = {0};
    gb_model *m = NULL;
    gb__json *root = NULL;
    gb_safetensors *st = NULL;
    char *text = NULL;
    size_t len = 0;
    if (gb_hf_resolve(model, &f) != GB_OK) goto fail;
    if (!(text = gb__file_read(f.config, &len, "model"))) goto fail;
    if (!(root = gb__json_parse(text, len, f.config))) goto fail;
    if (!(m = gb__calloc(1, sizeof *m, "model_open"))) goto fail;
    gb__cfg c = {root, f.config, GB_OK};
    const char *type = gb__json_string(gb__json_get(root, "model_type"));
    if (!type) {
        gb__fail(GB_ERR_FORMAT, "model: %s: no model_type", f.config);
        goto fail;
    }
    snprintf(m->type, sizeof m->type, "%s", type);
    if (!strcmp(type, "gpt2")) {
        if (!(m->gpt2 = gb__gpt2_config(&c)) || c.st != GB_OK) goto fail;
        m->module = gb_gpt2_new(m->gpt2);
    } else if (!strcmp(type, "llama")) {
        if (!(m->llama = gb__llama_config(&c)) || c.st != GB_OK) goto fail;
        m->module = gb_llama_new(m->llama);
    } else {
        gb__fail(GB_ERR_UNSUPPORTED, "model: %s: model_type '%s' is not supported (glassbox loads gpt2 and llama)",
                 f.config, type);
        goto fail;
    }
    if (!m->module) {
        gb__error_prefix("model: %s", f.config);
        goto fail;
    }
    gb__token_ids(&c, m);
    if (!(st = gb_safetensors_open(f.weights))) goto fail;
    m->file_bytes = gb__file_bytes(f.weights);
    if (gb__load_weights(m, st, opts, m->file_bytes) != GB_OK) goto fail;
    m->dir = f.dir;
    f.dir = NULL;
    gb_safetensors_free(st); /* the tensors keep their mappings */
    gb__json_free(root);
    free(text);
    gb_hf_files_free(&f);
    return m;
fail:
    gb_safetensors_free(st);
    gb__json_free(root);
    free(text);
    gb_hf_files_free(&f);
    gb_model_free(m);
    return NULL;
}

void gb_model_free(gb_model *m) {
    if (!m) return;
    gb_module_free(m->module);
    free(m->gpt2);
    free(m->llama);
    free(m->dir);
    arrfree(m->eos);
    free(m);
}

gb_module *gb_model_module(const gb_model *m) { return m->module; }
const char *gb_model_type(const gb_model *m) { return m->type; }
const char *gb_model_dir(const gb_model *m) { return m->dir; }
int64_t gb_model_vocab_size(const gb_model *m) { return m->gpt2 ? m->gpt2->vocab_size : m->llama->vocab_size; }
int64_t gb_model_max_positions(const gb_model *m) {
    return m->gpt2 ? m->gpt2->n_positions : m->llama->max_position_embeddings;
}
int64_t gb_model_bos_id(const gb_model *m) { return m->bos; }
bool gb_model_is_eos(const gb_model *m, int64_t id) {
    for (ptrdiff_t i = 0; i < arrlen(m->eos); i++)
        if (m->eos[i] == id) return true;
    return false;
}
const gb_gpt2_config *gb_model_gpt2_config(const gb_model *m) { return m->gpt2; }
const gb_llama_config *gb_model_llama_config(const gb_model *m) { return m->llama; }
uint64_t gb_model_file_bytes(const gb_model *m) { return m->file_bytes; }
