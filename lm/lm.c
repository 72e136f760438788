/* A language model: a checkpoint, its tokenizer, and text <-> ids. */
#include <stdlib.h>
#include <string.h>

#include "../tensor/base.h"
#include "lm.h"

struct gb_lm {
    gb_model *model;
    gb_tokenizer *tok;
};

gb_lm *gb_lm_open(const char *path, const gb_model_opts *opts) {
    gb_lm *lm = gb__calloc(1, sizeof *lm, "lm_open");
    if (!lm) return NULL;
    if (!(lm->model = gb_model_open(path, opts))) goto fail;
    /* a checkpoint without tokenizer files still generates from ids */
    if (!(lm->tok = gb_model_tokenizer(lm->model)) && gb_last_status() != GB_ERR_NOT_FOUND) goto fail;
    return lm;
fail:
    gb_lm_free(lm);
    return NULL;
}

void gb_lm_free(gb_lm *lm) {
    if (!lm) return;
    gb_tokenizer_free(lm->tok);
    gb_model_free(lm->model);
    free(lm);
}

gb_model *gb_lm_model(const gb_lm *lm) { return lm->model; }
gb_module *gb_lm_module(const gb_lm *lm) { return gb_model_module(lm->model); }
gb_tokenizer *gb_lm_tokenizer(const gb_lm *lm) { return lm->tok; }
void gb_lm_set_tokenizer(gb_lm *lm, gb_tokenizer *tok) {
    if (tok == lm->tok) return;
    gb_tokenizer_free(lm->tok);
    lm->tok = tok;
}
int64_t gb_lm_pad_id(const gb_lm *lm) { return lm->tok ? gb_tokenizer_padding_id(lm->tok) : 0; }

static gb_status gb__lm_no_tokenizer(const gb_lm *lm, const char *op) {
    return gb__fail(GB_ERR_NOT_FOUND, "%s: the model in %s has no tokenizer (no tokenizer.json, or vocab.json with merges.txt)",
                    op, gb_model_dir(lm->model));
}
bool gb_lm_is_eos(const gb_lm *lm, int64_t id) { return gb_model_is_eos(lm->model, id); }

gb_status gb_lm_encode(gb_lm *lm, int n, const char *const *texts, gb_tensor **ids, gb_tensor **mask) {
    if (!lm->tok) {
        *ids = *mask = NULL;
        return gb__lm_no_tokenizer(lm, "lm_encode");
    }
    return gb_tokenizer_encode_batch(lm->tok, n, texts, NULL, true, GB_PAD_SIDE_LEFT, ids, mask);
}

gb_status gb_lm_text(gb_lm *lm, gb_tensor *ids, int64_t row, int64_t from, char **text) {
    *text = NULL;
    if (!lm->tok) return gb__lm_no_tokenizer(lm, "lm_text");
    if (gb_tensor_ndim(ids) != 2 || gb_tensor_dtype(ids) != GB_DTYPE_I64)
        return gb__fail(GB_ERR_ARG, "lm_text: expected ids [B, T] of dtype int64");
    int64_t B = gb_tensor_dim(ids, 0), T = gb_tensor_dim(ids, 1);
    if (row < 0 || row >= B || from < 0 || from > T)
        return gb__fail(GB_ERR_INDEX, "lm_text: row %lld from %lld is outside ids of shape [%lld, %lld]",
                        (long long)row, (long long)from, (long long)B, (long long)T);
    gb_tensor *c = gb_contiguous(ids);
    int32_t *ids32 = c ? gb__malloc(sizeof *ids32 * (size_t)(T - from + 1), "lm_text") : NULL;
    gb_status st = ids32 ? GB_OK : gb_last_status();
    const int64_t *p = ids32 ? (const int64_t *)gb_tensor_data(c) + row * T : NULL; /* [T] */
    for (int64_t t = from; st == GB_OK && t < T; t++) {
        if (p[t] < 0 || p[t] > INT32_MAX)
            st = gb__fail(GB_ERR_INDEX, "lm_text: id %lld at position %lld is not a token id", (long long)p[t],
                          (long long)t);
        else ids32[t - from] = (int32_t)p[t];
    }
    if (st == GB_OK) st = gb_tokenizer_decode(lm->tok, ids32, (size_t)(T - from), true, text, NULL);
    free(ids32);
    gb_tensor_free(c);
    return st;
}
