/* The attention core shared by GPT-2 and Llama: heads, the KV cache, the
 * causal and padding mask, scaled dot-product softmax (with the
 * "attn_weights" point), positions and token-id checks. */
#include "modules_impl.h"

#include <float.h>
#include <math.h>
#include <string.h>

gb_tensor *gb__nn_split_heads(gb_tensor *x, int64_t heads, int64_t head_dim) {
    gb_tensor *r = gb_reshape(x, 4, (int64_t[]){gb_tensor_dim(x, 0), gb_tensor_dim(x, 1), heads, head_dim});
    gb_tensor *p = r ? gb_permute(r, (int[]){0, 2, 1, 3}) : NULL;
    gb_tensor_free(r);
    return p;
}

gb_tensor *gb__nn_merge_heads(gb_tensor *x) {
    int64_t B = gb_tensor_dim(x, 0), H = gb_tensor_dim(x, 1), T = gb_tensor_dim(x, 2), D = gb_tensor_dim(x, 3);
    gb_tensor *p = gb_permute(x, (int[]){0, 2, 1, 3}); /* [B, T, H, D] */
    gb_tensor *r = p ? gb_reshape(p, 3, (int64_t[]){B, T, H * D}) : NULL;
    gb_tensor_free(p);
    return r;
}

/* Keys (or values) [B, KV, S, D] with room: a buffer [B, KV, cap, D] whose
 * first S0 positions hold *prev (when given) and the next T new's, and its
 * view of the S = S0 + T filled ones. Appending in place costs the new
 * token's keys per step instead of a copy of the whole cache (gb_cat). */
static gb_status gb__nn_cache_append(gb_tensor **buf, gb_tensor *prev, gb_tensor *new, gb_tensor **view) {
    int64_t B = gb_tensor_dim(new, 0), KV = gb_tensor_dim(new, 1), T = gb_tensor_dim(new, 2), D = gb_tensor_dim(new, 3);
    int64_t S0 = prev ? gb_tensor_dim(prev, 2) : 0, S = S0 + T;
    gb_status st = GB_OK;
    if (!*buf || gb_tensor_dim(*buf, 2) < S) { /* grow: twice what is needed, at least 64 positions */
        int64_t cap = S < 32 ? 64 : 2 * S;
        gb_tensor *nb = gb_empty(4, (int64_t[]){B, KV, cap, D}, GB_DTYPE_F32);
        gb_tensor *head = nb && prev ? gb_slice(nb, 2, 0, S0, 1) : NULL;
        if (!nb || (prev && (!head || gb_copy_(head, prev) != GB_OK))) st = gb_last_status();
        gb_tensor_free(head);
        gb_tensor_free(*buf);
        *buf = nb;
        if (st) return st;
    }
    gb_tensor *tail = gb_slice(*buf, 2, S0, S, 1);
    if (!tail || gb_copy_(tail, new) != GB_OK) st = gb_last_status();
    gb_tensor_free(tail);
    *view = st ? NULL : gb_slice(*buf, 2, 0, S, 1);
    return *view ? GB_OK : gb_last_status();
}

gb_status gb__nn_attn_cache(gb_run *run, gb_module *attn, gb_tensor **k, gb_tensor **v) {
    if (!gb__nn_run_use_cache(run)) return GB_OK;
    gb_tensor *pk, *pv, *kb, *vb;
    gb__nn_run_cache_get(run, attn, &pk, &pv, &kb, &vb);
    gb_tensor *nk = NULL, *nv = NULL;
    bool recording = gb_is_grad_enabled() && (gb_tensor_requires_grad(*k) || gb_tensor_requires_grad(*v) ||
                                              (pk && (gb_tensor_requires_grad(pk) || gb_tensor_requires_grad(pv))));
    /* In place when nothing records through the cache (generation runs
     * without grad) and the cache is still the buffers' own view. */
    if (!recording && !gb__nn_meta(*k) && (!pk || (kb && vb && !gb__nn_meta(pk)))) {
        gb_tensor *bk = kb ? gb_tensor_ref(kb) : NULL, *bv = vb ? gb_tensor_ref(vb) : NULL;
        gb_status st = gb__nn_cache_append(&bk, pk, *k, &nk);
        if (st == GB_OK) st = gb__nn_cache_append(&bv, pv, *v, &nv);
        if (st) {
            gb_tensor_free(bk), gb_tensor_free(bv), gb_tensor_free(nk);
            gb__error_prefix("%s: appending to the KV cache (new keys %s)", GB__LABEL(attn), GB__SHAPE_STR(*k));
            return st;
        }
        if ((st = gb__nn_run_cache_set(run, attn, gb_tensor_ref(nk), gb_tensor_ref(nv), bk, bv)) != GB_OK) {
            gb_tensor_free(nk), gb_tensor_free(nv);
            return st;
        }
    } else {
        nk = gb_tensor_ref(*k), nv = gb_tensor_ref(*v);
        if (pk && pv) {
            gb_tensor_free(nk), gb_tensor_free(nv);
            nk = gb_cat(2, (gb_tensor *[]){pk, *k}, 2);
            nv = nk ? gb_cat(2, (gb_tensor *[]){pv, *v}, 2) : NULL;
            if (!nk || !nv) {
                gb_tensor_free(nk), gb_tensor_free(nv);
                gb__error_prefix("%s: appending to the KV cache (cached keys %s, new keys %s)", GB__LABEL(attn),
                                 GB__SHAPE_STR(pk), GB__SHAPE_STR(*k));
                return gb_last_status();
            }
        }
        gb_status st = gb__nn_run_cache_set(run, attn, gb_tensor_ref(nk), gb_tensor_ref(nv), NULL, NULL);
        if (st != GB_OK) {
            gb_tensor_free(nk), gb_tensor_free(nv);
            return st;
        }
    }
    gb_tensor_free(*k), gb_tensor_free(*v);
    *k = nk, *v = nv;
    return GB_OK;
}

/* The mask [B or 1, 1, T, S] (bool, true = hidden) for T queries at the end
 * of S keys, seeing at most window keys each (0: all), or NULL with GB_OK
 * when nothing is hidden. */
static gb_status gb__nn_attn_mask(gb_module *attn, gb_run *run, int64_t B, int64_t T, int64_t S, int64_t window, bool meta,
                               gb_tensor **mask) {
    *mask = NULL;
    gb_tensor *pad = gb__nn_run_attention_mask(run);
    if (pad && (gb_tensor_ndim(pad) != 2 || gb_tensor_dim(pad, 0) != B || gb_tensor_dim(pad, 1) != S))
        return gb__fail(GB_ERR_SHAPE,
                        "%s: attention_mask has shape %s, expected [%lld, %lld] (batch, cached + new tokens)",
                        GB__LABEL(attn), GB__SHAPE_STR(pad), (long long)B, (long long)S);
    if (!pad && T == 1 && (!window || S <= window)) return GB_OK; /* one new query sees every key it has */
    int64_t bm = pad ? B : 1;
    gb_tensor *m = gb__nn_empty(4, (int64_t[]){bm, 1, T, S}, GB_DTYPE_BOOL, meta || (pad && gb__is_meta(pad)));
    if (!m) return gb_last_status();
    if (!gb__is_meta(m)) {
        gb_tensor *pf = NULL; /* the padding mask as contiguous f32 */
        if (pad) {
            gb_tensor *c = gb_to_dtype(pad, GB_DTYPE_F32);
            pf = c ? gb_contiguous(c) : NULL;
            gb_tensor_free(c);
            if (!pf) {
                gb_tensor_free(m);
                return gb_last_status();
            }
        }
        const float *p = pf ? gb_tensor_data(pf) : NULL; /* [B, S] */
        bool *h = gb_tensor_data(m);                     /* [bm, 1, T, S] */
        for (int64_t b = 0; b < bm; b++)
            for (int64_t i = 0; i < T; i++) {
                int64_t q = S - T + i, old = window ? q - window : -1; /* the query's index; the last key too old */
                for (int64_t j = 0; j < S; j++)
                    h[(b * T + i) * S + j] = j > q || j <= old || (p && p[b * S + j] == 0.0f);
            }
        gb_tensor_free(pf);
    }
    *mask = m;
    return GB_OK;
}

gb_status gb__nn_attention(gb_module *attn, gb_run *run, gb_tensor *q, gb_tensor *k, gb_tensor *v, gb__nn_attn_scale scale,
                        int64_t window, gb_module *dropout, gb_tensor **out) {
    *out = NULL;
    int64_t B = gb_tensor_dim(q, 0), H = gb_tensor_dim(q, 1), T = gb_tensor_dim(q, 2), D = gb_tensor_dim(q, 3);
    int64_t KV = gb_tensor_dim(k, 1), S = gb_tensor_dim(k, 2);
    if (KV <= 0 || H % KV)
        return gb__fail(GB_ERR_SHAPE, "%s: %lld query heads cannot share %lld key/value heads", GB__LABEL(attn),
                        (long long)H, (long long)KV);
    gb_status st = GB_OK;
    /* One op when nobody looks at the scores and probabilities (they are
     * never stored), training included (its backward recomputes them).
     * Dropout (GPT-2's, the identity in eval mode) is a module call an
     * observer may hook; the NaN guard then checks the attention's output
     * in its place. */
    if (!gb__nn_run_watches(run, attn, dropout != NULL)) {
        gb_tensor *mask = NULL;
        st = gb__nn_attn_mask(attn, run, B, T, S, window, gb__nn_meta(q), &mask);
        if (st) return st;
        float sc = scale == GB__ATTN_SCALE_DIV_SQRT ? (float)(1.0 / sqrt((double)D)) : (float)pow((double)D, -0.5);
        *out = gb_scaled_dot_product_attention(q, k, v, mask, sc);
        gb_tensor_free(mask);
        return *out ? GB_OK : gb__nn_op_failed(attn);
    }
    /* Grouped-query attention without repeat_kv's copies of the keys and
     * values (Hugging Face's repeat_kv copied the whole cache per layer and
     * token: 15% of decoding): the G = H/KV query heads sharing a key head
     * are rows of one product, [B, KV, G*T, D] @ [B, KV, D, S], and the
     * scores are viewed back as [B, H, T, S]. */
    int64_t G = H / KV;
    gb_tensor *qg = NULL, *kt = NULL, *raw = NULL, *rawg = NULL, *scores = NULL, *mask = NULL, *probs = NULL;
    gb_tensor *pg = NULL, *og = NULL;
    gb_values dr = {0};
    qg = G > 1 ? gb_reshape(q, 4, (int64_t[]){B, KV, G * T, D}) : gb_tensor_ref(q);
    kt = qg ? gb_transpose(k, -1, -2) : NULL;
    rawg = kt ? gb_matmul(qg, kt) : NULL; /* [B, KV, G*T, S] */
    raw = rawg && G > 1 ? gb_reshape(rawg, 4, (int64_t[]){B, H, T, S}) : gb_tensor_ref(rawg); /* [B, H, T, S] */
    if (!raw) goto op_failed;
    scores = scale == GB__ATTN_SCALE_DIV_SQRT ? gb_div_scalar(raw, (float)sqrt((double)D))
                                              : gb_mul_scalar(raw, (float)pow((double)D, -0.5));
    if (!scores) goto op_failed;
    st = gb__nn_attn_mask(attn, run, B, T, S, window, gb__nn_meta(scores), &mask);
    if (st) goto done;
    if (mask) {
        gb_tensor *filled = gb_masked_fill(scores, mask, -FLT_MAX); /* torch.finfo(float32).min */
        if (!filled) goto op_failed;
        gb_tensor_free(scores);
        scores = filled;
    }
    st = gb__nn_point(run, attn, GB_POINT_ATTN_SCORES, &scores); /* HF's attn_weights before softmax */
    if (st) goto done;
    probs = gb_softmax(scores, -1);
    if (!probs) goto op_failed;
    st = gb__nn_point(run, attn, GB_POINT_ATTN_WEIGHTS, &probs);
    if (st) goto done;
    if (dropout) {
        st = gb__nn_call(dropout, run, 1, &probs, &dr);
        if (st) goto done;
        gb_tensor_free(probs);
        probs = gb_tensor_ref(dr.v[0]);
    }
    pg = G > 1 ? gb_reshape(probs, 4, (int64_t[]){B, KV, G * T, S}) : gb_tensor_ref(probs);
    og = pg ? gb_matmul(pg, v) : NULL; /* [B, KV, G*T, D] */
    *out = og && G > 1 ? gb_reshape(og, 4, (int64_t[]){B, H, T, D}) : gb_tensor_ref(og); /* [B, H, T, D] */
    if (!*out) goto op_failed;
    goto done;
op_failed:
    st = gb__nn_op_failed(attn);
done:
    gb_values_clear(&dr);
    gb_tensor_free(qg), gb_tensor_free(kt), gb_tensor_free(rawg), gb_tensor_free(raw);
    gb_tensor_free(pg), gb_tensor_free(og);
    gb_tensor_free(scores), gb_tensor_free(mask), gb_tensor_free(probs);
    return st;
}

gb_status gb__nn_attn_finish(gb_module *attn, gb_run *run, gb_tensor *qkv[3], gb__nn_attn_scale scale, int64_t window,
                          gb_module *dropout, int nproj, const int *proj, gb_values *out) {
    gb_values cur = {0};
    gb_tensor *a = NULL;
    gb_status st = qkv[0] && qkv[1] && qkv[2] ? GB_OK : gb__nn_op_failed(attn);
    if (st == GB_OK) st = gb__nn_attn_cache(run, attn, &qkv[1], &qkv[2]);
    if (st == GB_OK) st = gb__nn_attention(attn, run, qkv[0], qkv[1], qkv[2], scale, window, dropout, &a);
    if (st) goto done;
    gb_tensor *merged = gb__nn_merge_heads(a);
    if (!merged) {
        st = gb__nn_op_failed(attn);
        goto done;
    }
    cur.v[cur.n++] = merged;
    for (int i = 0; st == GB_OK && i < nproj; i++) st = gb__nn_call_into(attn->children[proj[i]], run, &cur, 0, NULL);
    if (st) { /* a child stopped or failed: pass on what it returned */
        gb__nn_values_move(out, &cur);
        goto done;
    }
    st = gb_values_push(out, gb_tensor_ref(cur.v[0]));
    if (st == GB_OK && gb__nn_run_use_cache(run)) {
        st = gb_values_push(out, gb_tensor_ref(qkv[1]));
        if (st == GB_OK) st = gb_values_push(out, gb_tensor_ref(qkv[2]));
    }
done:
    gb_values_clear(&cur);
    for (int i = 0; i < 3; i++) gb_tensor_free(qkv[i]), qkv[i] = NULL;
    gb_tensor_free(a);
    return st;
}

gb_tensor *gb__nn_positions(gb_module *model, gb_run *run, int64_t B, int64_t T) {
    gb_tensor *pos = gb__nn_run_position_ids(run);
    if (pos) {
        gb_dtype dt = gb_tensor_dtype(pos);
        if (dt != GB_DTYPE_I64 && dt != GB_DTYPE_I32)
            return gb__fail_null(GB_ERR_DTYPE, "%s: position_ids must be int64 or int32, got %s", GB__LABEL(model),
                                 gb_dtype_name(dt));
        if (gb_tensor_ndim(pos) != 2 || gb_tensor_dim(pos, 1) != T ||
            (gb_tensor_dim(pos, 0) != B && gb_tensor_dim(pos, 0) != 1))
            return gb__fail_null(GB_ERR_SHAPE,
                                 "%s: position_ids has shape %s, expected [%lld, %lld] (batch, new tokens)",
                                 GB__LABEL(model), GB__SHAPE_STR(pos), (long long)B, (long long)T);
        return gb_tensor_ref(pos);
    }
    int64_t past = gb_run_cache_length(run);
    gb_tensor *a = gb_arange_i64(past, past + T, 1);
    gb_tensor *r = a ? gb_reshape(a, 2, (int64_t[]){1, T}) : NULL;
    gb_tensor_free(a);
    return r;
}

gb_status gb__nn_check_ids(gb_module *m, const gb_tensor *ids) {
    gb_dtype dt = gb_tensor_dtype(ids);
    if (dt != GB_DTYPE_I64 && dt != GB_DTYPE_I32)
        return gb__fail(GB_ERR_DTYPE, "%s: input_ids must be int64 or int32 token ids, got %s %s", GB__LABEL(m),
                        gb_dtype_name(dt), GB__SHAPE_STR(ids));
    if (gb_tensor_ndim(ids) != 2 || gb_tensor_dim(ids, 1) < 1)
        return gb__fail(GB_ERR_SHAPE, "%s: input_ids must be [batch, seq_len] with seq_len >= 1, got shape %s",
                        GB__LABEL(m), GB__SHAPE_STR(ids));
    return GB_OK;
}
