/* Tokenizers: opening tokenizer.json or vocab.json + merges.txt, added and
 * special tokens, and the encode/decode API of io.h. The pipeline's stages
 * live in tokenizer_text.c (normalizers), tokenizer_pretok.c,
 * tokenizer_bpe.c and tokenizer_decode.c. */
#include "tokenizer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb/stb_ds.h>

#include "file.h"

/* ---- files -------------------------------------------------------------- */

/* dir/name, malloc'd. */
static char *gb__tok_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = gb__malloc(n, "tokenizer_open");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The directory part of path ("." when there is none), malloc'd. */
static char *gb__tok_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

static const char *gb__tok_basename(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static gb__json_json *gb__tok_read_json(const char *path, const char *ctx) {
    size_t len = 0;
    char *text = gb__io_file_read(path, &len, "tokenizer_open");
    if (!text) return NULL;
    gb__json_json *j = gb__json_parse(text, len, ctx);
    free(text);
    return j;
}

/* ---- added tokens ------------------------------------------------------- */

static gb_status gb__tok_matcher_add(gb__tok_matcher *mt, const char *s, size_t n, int32_t id) {
    if (!n) return GB_OK;
    struct gb__tok_pattern p = {gb__malloc(n, "tokenizer_open: an added token"), n, id};
    if (!p.s) return gb_last_status();
    memcpy(p.s, s, n);
    if (!GB_ARR_PUT(mt->pats, p, "tokenizer_open: added tokens")) return free(p.s), gb_last_status();
    int **list = &mt->by_byte[(unsigned char)s[0]];
    /* longest first, so the first hit at a position is the longest */
    size_t at = arrlenu(*list);
    while (at > 0 && mt->pats[(*list)[at - 1]].n < n) at--;
    if (!GB_ARR_INS(*list, at, (int)arrlen(mt->pats) - 1, "tokenizer_open: added tokens")) return gb_last_status();
    return GB_OK;
}

static void gb__tok_matcher_free(gb__tok_matcher *mt) {
    for (size_t i = 0; i < arrlenu(mt->pats); i++) free(mt->pats[i].s);
    arrfree(mt->pats);
    for (int b = 0; b < 256; b++) arrfree(mt->by_byte[b]);
}

/* The leftmost, then longest, pattern occurring in s[pos, n): its index and
 * *start, or -1. */
static int gb__tok_matcher_find(const gb__tok_matcher *mt, const char *s, size_t n, size_t pos, size_t *start) {
    if (!mt->pats) return -1;
    for (size_t i = pos; i < n; i++) {
        const int *list = mt->by_byte[(unsigned char)s[i]];
        for (size_t k = 0; k < arrlenu(list); k++) {
            const struct gb__tok_pattern *p = &mt->pats[list[k]];
            if (p->n <= n - i && !memcmp(s + i, p->s, p->n)) {
                *start = i;
                return list[k];
            }
        }
    }
    return -1;
}

static bool gb__tok_special(const gb_tokenizer *tok, const char *s) {
    struct gb__tok_special_kv *set = tok->special;
    return GB_SH_GETI(set, s) >= 0;
}

static const gb__tok_added *gb__tok_added_of(const gb_tokenizer *tok, int32_t id) {
    /* stb_ds lookups write to the map variable (and create a missing map);
     * its hash of a 4-byte key shifts the top byte into the sign bit */
    struct gb__tok_added_id_kv *map = tok->added_by_id;
    if (id < 0) return NULL;
    ptrdiff_t k = GB_HM_GETI(map, id);
    return k < 0 ? NULL : &tok->added[map[k].value];
}

static int32_t gb__tok_lookup_id(const gb_tokenizer *tok, const char *s) {
    struct gb__tok_added_kv *map = tok->added_ids;
    ptrdiff_t k = GB_SH_GETI(map, s);
    return k >= 0 ? map[k].value : gb__tok_bpe_id(&tok->bpe, s);
}

static const char *gb__tok_lookup_str(const gb_tokenizer *tok, int32_t id) {
    const gb__tok_added *a = gb__tok_added_of(tok, id);
    return a ? a->content : gb__tok_bpe_str(&tok->bpe, id);
}

/* A part of the text: [start, end), with the added token's id or -1. */
typedef struct gb__tok_seg {
    size_t start, end;
    int32_t id;
} gb__tok_seg;

static bool gb__tok_ends_with_word(const char *s, size_t end) {
    if (end == 0) return false;
    size_t c = end - 1;
    while (c > 0 && ((unsigned char)s[c] & 0xc0) == 0x80) c--;
    return gb__tr_is_word(gb__tok_utf8_decode(s + c, (int)(end - c)));
}

/* Cut s at the added tokens mt finds, with their single_word, lstrip and
 * rstrip rules (Hugging Face's AddedVocabulary::find_matches). */
static gb_status gb__tok_split_added(const gb_tokenizer *tok, const gb__tok_matcher *mt, const char *s, size_t n,
                                     gb__tok_seg **segs) {
    size_t done = 0, pos = 0, ms = 0;
    int k;
    while ((k = gb__tok_matcher_find(mt, s, n, pos, &ms)) >= 0) {
        int32_t id = mt->pats[k].id;
        size_t start = ms, stop = ms + mt->pats[k].n;
        pos = stop; /* the search resumes after the raw match, whatever the strips do */
        const gb__tok_added *a = gb__tok_added_of(tok, id);
        if (a && a->single_word) {
            size_t i = stop;
            int len;
            bool word_after = stop < n && gb__tr_is_word(gb__tok_utf8_next(s, n, &i, &len));
            if (gb__tok_ends_with_word(s, start) || word_after) continue;
        }
        if (a && a->lstrip) {
            size_t b = start;
            while (b > 0) {
                size_t c = b - 1;
                while (c > 0 && ((unsigned char)s[c] & 0xc0) == 0x80) c--;
                if (!gb__tok_is_whitespace(gb__tok_utf8_decode(s + c, (int)(b - c)))) break;
                b = c;
            }
            start = b > done ? b : done;
        }
        if (a && a->rstrip) {
            while (stop < n) {
                size_t i = stop;
                int len;
                if (!gb__tok_is_whitespace(gb__tok_utf8_next(s, n, &i, &len))) break;
                stop = i;
            }
        }
        if ((done < start && !GB_ARR_PUT(*segs, ((gb__tok_seg){done, start, -1}), "encode")) ||
            !GB_ARR_PUT(*segs, ((gb__tok_seg){start, stop, id}), "encode"))
            return gb_last_status();
        done = stop;
    }
    if (done < n && !GB_ARR_PUT(*segs, ((gb__tok_seg){done, n, -1}), "encode")) return gb_last_status();
    return GB_OK;
}

static gb_status gb__tok_parse_added(gb_tokenizer *tok, const gb__json_json *list, const char *ctx) {
    if (!list || gb__json_is_null(list)) return GB_OK;
    if (!gb__json_is_array(list)) return gb__fail(GB_ERR_FORMAT, "%s: added_tokens is not an array", ctx);
    /* Hugging Face adds the tokens one by one: a token already in the
     * vocabulary keeps that id; a new one takes the next free id. */
    gb__tok_added *order = NULL; /* specials, then the others, for matching */
    gb__tok_added *classic = NULL;
    int32_t max_id = -1;     /* the largest id given to an added token */
    gb_status st = GB_OK;
    char *norm = NULL;
    for (int i = 0; i < gb__json_size(list); i++) {
        const gb__json_json *e = gb__json_at(list, i);
        const char *content = gb__json_string(gb__json_get(e, "content"));
        if (!content) {
            st = gb__fail(GB_ERR_FORMAT, "%s: added_tokens[%d] has no \"content\" string", ctx, i);
            goto done;
        }
        gb__tok_added a = {.content = (char *)content};
        gb__json_bool(gb__json_get(e, "special"), &a.special);
        a.normalized = !a.special;
        gb__json_bool(gb__json_get(e, "single_word"), &a.single_word);
        gb__json_bool(gb__json_get(e, "lstrip"), &a.lstrip);
        gb__json_bool(gb__json_get(e, "rstrip"), &a.rstrip);
        gb__json_bool(gb__json_get(e, "normalized"), &a.normalized);
        if (!content[0]) continue;
        if (a.special && GB_SH_GETI(tok->special, content) < 0 &&
            (!GB_SH_PUT(tok->special, content, 1, ctx) || !GB_ARR_PUT(order, a, ctx)))
            goto fail;
        /* an identical token added before is skipped (only the entry under
         * the content's id can be identical) */
        ptrdiff_t prev = GB_SH_GETI(tok->added_ids, content);
        const gb__tok_added *b = prev >= 0 ? gb__tok_added_of(tok, tok->added_ids[prev].value) : NULL;
        if (b && !strcmp(b->content, a.content) && b->special == a.special && b->single_word == a.single_word &&
            b->lstrip == a.lstrip && b->rstrip == a.rstrip && b->normalized == a.normalized)
            continue;
        int32_t id = gb__tok_lookup_id(tok, content);
        if (id < 0) {
            int32_t count = (int32_t)gb__tok_bpe_count(&tok->bpe);
            id = max_id < 0 ? count : (max_id >= count || count == 0) ? max_id + 1 : count;
        }
        if (id > max_id) max_id = id;
        if (!GB_SH_PUT(tok->added_ids, content, id, ctx)) goto fail;
        if (!(a.content = gb__strdup(content, ctx))) goto fail;
        a.id = id;
        ptrdiff_t at = GB_HM_GETI(tok->added_by_id, id);
        if (at >= 0) {
            free(tok->added[tok->added_by_id[at].value].content);
            tok->added[tok->added_by_id[at].value] = a;
        } else if (!GB_ARR_PUT(tok->added, a, ctx)) {
            free(a.content);
            goto fail;
        } else if (!GB_HM_PUT(tok->added_by_id, id, (int)arrlen(tok->added) - 1, ctx)) {
            goto fail; /* freed with tok->added */
        }
        a.content = (char *)content; /* order and classic borrow the JSON's strings */
        if (GB_SH_GETI(tok->special, content) < 0 && !GB_ARR_PUT(classic, a, ctx)) goto fail;
    }
    for (size_t i = 0; i < arrlenu(classic); i++)
        if (!GB_ARR_PUT(order, classic[i], ctx)) goto fail;
    for (size_t i = 0; st == GB_OK && i < arrlenu(order); i++) {
        const char *c = order[i].content;
        int32_t id = gb__tok_lookup_id(tok, c);
        if (!order[i].normalized) {
            st = gb__tok_matcher_add(&tok->raw, c, strlen(c), id);
        } else if (tok->norm) {
            st = gb__tok_norm_apply(tok->norm, c, strlen(c), &norm);
            if (st == GB_OK) st = gb__tok_matcher_add(&tok->normalized, norm, arrlenu(norm), id);
        } else {
            st = gb__tok_matcher_add(&tok->normalized, c, strlen(c), id);
        }
    }
    goto done;
fail:
    st = gb_last_status();
done:
    arrfree(norm);
    arrfree(classic);
    arrfree(order);
    return st;
}

/* ---- opening ------------------------------------------------------------ */

static gb_status gb__tok_parse_truncation(gb_tokenizer *tok, const gb__json_json *j, const char *ctx) {
    if (!j || gb__json_is_null(j)) return GB_OK;
    long long max;
    if (!gb__json_int(gb__json_get(j, "max_length"), &max) || max < 0)
        return gb__fail(GB_ERR_FORMAT, "%s: truncation has no valid \"max_length\"", ctx);
    const char *dir = gb__json_string(gb__json_get(j, "direction"));
    tok->trunc.on = true;
    tok->trunc.max_len = (size_t)max;
    tok->trunc.left = dir && !strcmp(dir, "Left");
    return GB_OK;
}

static gb_status gb__tok_parse_padding(gb_tokenizer *tok, const gb__json_json *j, const char *ctx) {
    if (!j || gb__json_is_null(j)) return GB_OK;
    const gb__json_json *strategy = gb__json_get(j, "strategy");
    if (strategy && !(gb__json_string(strategy) && !strcmp(gb__json_string(strategy), "BatchLongest")))
        return gb__fail(GB_ERR_UNSUPPORTED,
                        "%s: padding: only the BatchLongest strategy is supported (single encodings are not padded)",
                        ctx);
    long long id;
    if (gb__json_int(gb__json_get(j, "pad_id"), &id) && id >= 0 && id <= INT32_MAX) tok->pad = (int32_t)id;
    return GB_OK;
}

static gb_status gb__tok_load_tokenizer_json(gb_tokenizer *tok, const char *file, const char *ctx) {
    gb__json_json *root = gb__tok_read_json(file, ctx);
    if (!root) return gb_last_status();
    gb_status st = GB_OK;
    const char *version = gb__json_string(gb__json_get(root, "version"));
    const gb__json_json *model = gb__json_get(root, "model"), *j;
    if (!gb__json_is_object(root)) {
        st = gb__fail(GB_ERR_FORMAT, "%s: not a tokenizer.json (the top level is not an object)", ctx);
        goto done;
    }
    if (version && strcmp(version, "1.0")) {
        st = gb__fail(GB_ERR_UNSUPPORTED, "%s: tokenizer.json version '%s' is not supported (only 1.0)", ctx, version);
        goto done;
    }
    if (!gb__json_is_object(model)) {
        st = gb__fail(GB_ERR_FORMAT, "%s: no \"model\" object", ctx);
        goto done;
    }
    if ((st = gb__tok_bpe_parse(&tok->bpe, model, ctx)) != GB_OK) goto done;
    if ((j = gb__json_get(root, "normalizer")) && !gb__json_is_null(j) && !(tok->norm = gb__tok_norm_parse(j, ctx)))
        goto fail;
    if ((j = gb__json_get(root, "pre_tokenizer")) && !gb__json_is_null(j) && !(tok->pre = gb__tok_pre_parse(j, ctx)))
        goto fail;
    if ((j = gb__json_get(root, "post_processor")) && !gb__json_is_null(j) && !(tok->post = gb__tok_post_parse(j, ctx)))
        goto fail;
    if ((j = gb__json_get(root, "decoder")) && !gb__json_is_null(j) && !(tok->dec = gb__tok_dec_parse(j, ctx)))
        goto fail;
    if ((st = gb__tok_parse_truncation(tok, gb__json_get(root, "truncation"), ctx)) != GB_OK) goto done;
    if ((st = gb__tok_parse_padding(tok, gb__json_get(root, "padding"), ctx)) != GB_OK) goto done;
    st = gb__tok_parse_added(tok, gb__json_get(root, "added_tokens"), ctx);
    goto done;
fail:
    st = gb_last_status();
done:
    gb__json_free(root);
    return st;
}

static gb_status gb__tok_load_vocab_merges(gb_tokenizer *tok, const char *vocab_path, const char *merges_path) {
    char vctx[4200], mctx[4200];
    snprintf(vctx, sizeof vctx, "tokenizer_open: %s", vocab_path);
    snprintf(mctx, sizeof mctx, "tokenizer_open: %s", merges_path);
    size_t mlen = 0;
    gb__json_json *vocab = gb__tok_read_json(vocab_path, vctx);
    char *merges = vocab ? gb__io_file_read(merges_path, &mlen, "tokenizer_open") : NULL;
    gb_status st = merges ? gb__tok_bpe_from_files(&tok->bpe, vocab, merges, mlen, vctx, mctx) : gb_last_status();
    gb__json_free(vocab);
    free(merges);
    if (st != GB_OK) return st;
    /* GPT-2's layout: byte-level pre-tokenizer and decoder, and its one
     * special token. */
    if (!(tok->pre = gb__tok_pre_byte_level(mctx)) || !(tok->dec = gb__tok_dec_byte_level())) return gb_last_status();
    int32_t eot = gb__tok_bpe_id(&tok->bpe, "<|endoftext|>");
    if (eot >= 0) {
        const char *what = "tokenizer_open: <|endoftext|>";
        gb__tok_added a = {.content = gb__strdup("<|endoftext|>", what), .id = eot, .special = true};
        if (!a.content) return gb_last_status();
        if (!GB_ARR_PUT(tok->added, a, what)) return free(a.content), gb_last_status();
        if (!GB_HM_PUT(tok->added_by_id, eot, 0, what) || !GB_SH_PUT(tok->added_ids, a.content, eot, what) ||
            !GB_SH_PUT(tok->special, a.content, 1, what))
            return gb_last_status();
        return gb__tok_matcher_add(&tok->raw, a.content, strlen(a.content), eot);
    }
    return GB_OK;
}

/* A token named by a config file: "<s>" or {"content": "<s>", ...}. */
static int32_t gb__tok_config_token(const gb_tokenizer *tok, const gb__json_json *cfg, const char *key) {
    const gb__json_json *v = gb__json_get(cfg, key);
    const char *s = gb__json_string(v);
    if (!s) s = gb__json_string(gb__json_get(v, "content"));
    return s ? gb__tok_lookup_id(tok, s) : -1;
}

/* An id named by a config file: 2 or [2, 32000] (the first). */
static int32_t gb__tok_config_id(const gb_tokenizer *tok, const gb__json_json *cfg, const char *key) {
    const gb__json_json *v = gb__json_get(cfg, key);
    if (gb__json_is_array(v)) v = gb__json_at(v, 0);
    long long id;
    return gb__json_int(v, &id) && id >= 0 && id < tok->vocab_size ? (int32_t)id : -1;
}

static int32_t gb__tok_first_special(const gb_tokenizer *tok, const char *const *names) {
    for (; *names; names++)
        if (gb__tok_special(tok, *names)) return gb__tok_lookup_id(tok, *names);
    return -1;
}

/* BOS/EOS/PAD: tokenizer_config.json, then config.json and
 * generation_config.json, then the template's first special token (BOS)
 * and the usual names among the special tokens. Unreadable side files are
 * skipped: they belong to the model, whose loader reports them. */
static void gb__tok_find_special_ids(gb_tokenizer *tok, const char *dir) {
    static const char *const files[] = {"tokenizer_config.json", "generation_config.json", "config.json"};
    for (int f = 0; f < 3; f++) {
        char *path = gb__tok_join(dir, files[f]);
        gb__json_json *cfg = path && gb__io_file_is_regular(path) ? gb__tok_read_json(path, "tokenizer_open") : NULL;
        if (cfg && f == 0) {
            if (tok->bos < 0) tok->bos = gb__tok_config_token(tok, cfg, "bos_token");
            if (tok->eos < 0) tok->eos = gb__tok_config_token(tok, cfg, "eos_token");
            if (tok->pad < 0) tok->pad = gb__tok_config_token(tok, cfg, "pad_token");
        } else if (cfg) {
            if (tok->bos < 0) tok->bos = gb__tok_config_id(tok, cfg, "bos_token_id");
            if (tok->eos < 0) tok->eos = gb__tok_config_id(tok, cfg, "eos_token_id");
            if (tok->pad < 0) tok->pad = gb__tok_config_id(tok, cfg, "pad_token_id");
        }
        gb__json_free(cfg);
        free(path);
    }
    static const char *const bos[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>", NULL};
    static const char *const eos[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", "<|im_end|>", NULL};
    static const char *const pad[] = {"<pad>", "[PAD]", "<|pad|>", NULL};
    if (tok->bos < 0) tok->bos = gb__tok_post_first_special(tok->post);
    if (tok->bos < 0) tok->bos = gb__tok_first_special(tok, bos);
    if (tok->eos < 0) tok->eos = gb__tok_first_special(tok, eos);
    if (tok->pad < 0) tok->pad = gb__tok_first_special(tok, pad);
}

gb_tokenizer *gb_tokenizer_open(const char *path) {
    if (!path) return gb__fail_null(GB_ERR_ARG, "tokenizer_open: path is NULL");
    char *json = NULL, *vocab = NULL, *merges = NULL, *dir = NULL;
    gb_tokenizer *tok = NULL;
    if (gb__io_file_is_dir(path)) {
        dir = strdup(path);
        json = gb__tok_join(path, "tokenizer.json");
        if (json && !gb__io_file_is_regular(json)) {
            free(json);
            json = NULL;
            vocab = gb__tok_join(path, "vocab.json");
            merges = gb__tok_join(path, "merges.txt");
            if (!vocab || !merges) goto fail;
            if (!gb__io_file_is_regular(vocab) || !gb__io_file_is_regular(merges)) {
                char *sp = gb__tok_join(path, "tokenizer.model");
                bool has_sp = sp && gb__io_file_is_regular(sp);
                free(sp);
                if (has_sp)
                    gb__fail(GB_ERR_UNSUPPORTED,
                             "tokenizer_open: %s holds only tokenizer.model (SentencePiece), which glassbox does not "
                             "read; it reads tokenizer.json (transformers' save_pretrained writes one)",
                             path);
                else
                    gb__fail(GB_ERR_NOT_FOUND, "tokenizer_open: %s holds no tokenizer.json and no vocab.json + merges.txt",
                             path);
                goto fail;
            }
        }
    } else if (gb__io_file_is_regular(path)) {
        dir = gb__tok_dirname(path);
        const char *base = gb__tok_basename(path);
        if (!strcmp(base, "vocab.json") || !strcmp(base, "merges.txt")) {
            vocab = gb__tok_join(dir, "vocab.json");
            merges = gb__tok_join(dir, "merges.txt");
            const char *other = !strcmp(base, "vocab.json") ? merges : vocab;
            if (other && !gb__io_file_is_regular(other)) {
                gb__fail(GB_ERR_NOT_FOUND, "tokenizer_open: %s needs %s beside it", path, other);
                goto fail;
            }
        } else if (strlen(base) > 6 && !strcmp(base + strlen(base) - 6, ".model")) {
            gb__fail(GB_ERR_UNSUPPORTED,
                     "tokenizer_open: %s is a SentencePiece model, which glassbox does not read; it reads "
                     "tokenizer.json",
                     path);
            goto fail;
        } else {
            json = strdup(path);
        }
    } else {
        gb__fail(GB_ERR_IO, "tokenizer_open: cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
        goto fail;
    }
    if (!dir || (!json && (!vocab || !merges))) {
        gb__fail(GB_ERR_ALLOC, "tokenizer_open: out of memory");
        goto fail;
    }
    tok = gb__calloc(1, sizeof *tok, "tokenizer_open");
    if (!tok) goto fail;
    pthread_mutex_init(&tok->lock, NULL);
    tok->bos = tok->eos = tok->pad = -1;
    if (!GB_SH_NEW_STRDUP(tok->added_ids, "tokenizer_open") || !GB_SH_NEW_STRDUP(tok->special, "tokenizer_open") ||
        !(tok->path = gb__strdup(json ? json : vocab, "tokenizer_open")))
        goto fail;
    char ctx[4200];
    snprintf(ctx, sizeof ctx, "tokenizer_open: %s", tok->path);
    gb_status st = json ? gb__tok_load_tokenizer_json(tok, json, ctx) : gb__tok_load_vocab_merges(tok, vocab, merges);
    if (st != GB_OK) goto fail;
    tok->vocab_size = tok->bpe.id_end;
    for (size_t i = 0; i < arrlenu(tok->added); i++)
        if (tok->added[i].id >= tok->vocab_size) tok->vocab_size = tok->added[i].id + 1;
    gb__tok_find_special_ids(tok, dir);
    free(json);
    free(vocab);
    free(merges);
    free(dir);
    return tok;
fail:
    gb_tokenizer_free(tok);
    free(json);
    free(vocab);
    free(merges);
    free(dir);
    return NULL;
}

void gb_tokenizer_free(gb_tokenizer *tok) {
    if (!tok) return;
    pthread_mutex_destroy(&tok->lock);
    gb__tok_bpe_free(&tok->bpe);
    gb__tok_norm_free(tok->norm);
    gb__tok_pre_free(tok->pre);
    gb__tok_dec_free(tok->dec);
    gb__tok_post_free(tok->post);
    for (size_t i = 0; i < arrlenu(tok->added); i++) free(tok->added[i].content);
    arrfree(tok->added);
    hmfree(tok->added_by_id);
    shfree(tok->added_ids);
    shfree(tok->special);
    gb__tok_matcher_free(&tok->raw);
    gb__tok_matcher_free(&tok->normalized);
    free(tok->path);
    free(tok);
}

/* ---- encoding ----------------------------------------------------------- */

/* Pre-tokenize and run the model on one stretch of normalized text. */
static gb_status gb__tok_encode_piece(gb_tokenizer *tok, const char *s, size_t n, bool first, gb__tok_strlist *a,
                                  gb__tok_strlist *b, int32_t **ids) {
    GB_ARR_TRUNC(a->arena, 0);
    GB_ARR_TRUNC(a->v, 0);
    if (!gb__tok_strlist_push(a, s, n, first)) return GB_ERR_ALLOC;
    const gb__tok_strlist *pieces = a;
    if (tok->pre) {
        gb_status st = gb__tok_pre_apply(tok->pre, a, b);
        if (st != GB_OK) return st;
        pieces = b;
    }
    for (size_t i = 0; i < gb__tok_strlist_len(pieces); i++) {
        gb_status st = gb__tok_bpe_tokenize(&tok->bpe, gb__tok_strlist_str(pieces, i), pieces->v[i].len, ids);
        if (st != GB_OK) return st;
    }
    return GB_OK;
}

/* text (well-formed UTF-8) -> ids, before post-processing. */
static gb_status gb__tok_encode_text(gb_tokenizer *tok, const char *s, size_t n, int32_t **ids) {
    gb__tok_seg *segs = NULL, *sub = NULL;
    char *norm = NULL;
    gb__tok_strlist a = {0}, b = {0};
    gb_status st = gb__tok_split_added(tok, &tok->raw, s, n, &segs);
    for (size_t i = 0; st == GB_OK && i < arrlenu(segs); i++) {
        if (segs[i].id >= 0) {
            if (!GB_ARR_PUT(*ids, segs[i].id, "tokenizer_encode")) st = GB_ERR_ALLOC;
            continue;
        }
        const char *t = s + segs[i].start;
        size_t tn = segs[i].end - segs[i].start;
        bool first = segs[i].start == 0;
        if (tok->norm) {
            if ((st = gb__tok_norm_apply(tok->norm, t, tn, &norm)) != GB_OK) break;
            t = norm;
            tn = arrlenu(norm);
        }
        GB_ARR_TRUNC(sub, 0);
        st = gb__tok_split_added(tok, &tok->normalized, t, tn, &sub);
        for (size_t j = 0; st == GB_OK && j < arrlenu(sub); j++) {
            if (sub[j].id >= 0) st = GB_ARR_PUT(*ids, sub[j].id, "tokenizer_encode") ? GB_OK : GB_ERR_ALLOC;
            else st = gb__tok_encode_piece(tok, t + sub[j].start, sub[j].end - sub[j].start, first && sub[j].start == 0,
                                       &a, &b, ids);
        }
    }
    arrfree(segs);
    arrfree(sub);
    arrfree(norm);
    gb__tok_strlist_free(&a);
    gb__tok_strlist_free(&b);
    return st;
}

/* Encode into an stb_ds array (post-processed and truncated). */
static gb_status gb__tok_encode(gb_tokenizer *tok, const char *text, size_t len, bool add_special, int32_t **ids) {
    char *s = NULL;
    if (!GB_ARR_RESERVE(s, len, "tokenizer_encode")) return GB_ERR_ALLOC; /* the text's copy, checked */
    gb_status st = gb__tok_utf8_lossy(&s, text, len) ? gb__tok_encode_text(tok, s, arrlenu(s), ids) : GB_ERR_ALLOC;
    arrfree(s);
    if (st != GB_OK) return st;
    bool post = add_special && tok->post;
    if (tok->trunc.on) {
        int32_t *extra = NULL; /* what the post-processor adds counts against max_length */
        if (post && gb__tok_post_apply(tok->post, &extra) != GB_OK) return arrfree(extra), GB_ERR_ALLOC;
        size_t keep = tok->trunc.max_len > arrlenu(extra) ? tok->trunc.max_len - arrlenu(extra) : 0;
        arrfree(extra);
        if (arrlenu(*ids) > keep) {
            if (tok->trunc.left) arrdeln(*ids, 0, arrlenu(*ids) - keep);
            else GB_ARR_TRUNC(*ids, keep);
        }
    }
    return post ? gb__tok_post_apply(tok->post, ids) : GB_OK;
}

gb_status gb_tokenizer_encode(gb_tokenizer *tok, const char *text, size_t len, bool add_special, int32_t **ids,
                              size_t *n) {
    if (ids) *ids = NULL;
    if (n) *n = 0;
    if (!tok || !ids || !n || (!text && len))
        return gb__fail(GB_ERR_ARG, "tokenizer_encode: %s is NULL",
                        !tok ? "the tokenizer" : !ids ? "ids" : !n ? "n" : "text");
    int32_t *out = NULL;
    pthread_mutex_lock(&tok->lock);
    gb_status st = gb__tok_encode(tok, text ? text : "", len, add_special, &out);
    pthread_mutex_unlock(&tok->lock);
    if (st == GB_OK) {
        size_t cnt = arrlenu(out);
        *ids = gb__malloc(cnt * sizeof(int32_t), "tokenizer_encode");
        if (*ids) {
            if (cnt) memcpy(*ids, out, cnt * sizeof(int32_t));
            *n = cnt;
        } else {
            st = GB_ERR_ALLOC;
        }
    }
    arrfree(out);
    return st;
}

int32_t gb_tokenizer_padding_id(const gb_tokenizer *tok) { return tok->pad >= 0 ? tok->pad : tok->eos >= 0 ? tok->eos : 0; }

gb_tensor *gb_tokenizer_encode_ids(gb_tokenizer *tok, const char *text) {
    gb_tensor *ids = NULL, *mask = NULL;
    if (!text) return gb__fail_null(GB_ERR_ARG, "tokenizer_encode_ids: text is NULL");
    gb_status st = gb_tokenizer_encode_batch(tok, 1, &text, NULL, true, GB_PAD_SIDE_LEFT, &ids, &mask);
    gb_tensor_free(mask);
    return st == GB_OK ? ids : NULL;
}

gb_status gb_tokenizer_encode_batch(gb_tokenizer *tok, int n, const char *const *texts, const size_t *lens,
                                    bool add_special, gb_pad_side side, gb_tensor **ids, gb_tensor **mask) {
    if (ids) *ids = NULL;
    if (mask) *mask = NULL;
    if (!tok || !texts || !ids || !mask)
        return gb__fail(GB_ERR_ARG, "tokenizer_encode_batch: %s is NULL",
                        !tok ? "the tokenizer" : !texts ? "texts" : !ids ? "ids" : "mask");
    if (n < 1) return gb__fail(GB_ERR_ARG, "tokenizer_encode_batch: batch size %d must be at least 1", n);
    if (side != GB_PAD_SIDE_LEFT && side != GB_PAD_SIDE_RIGHT)
        return gb__fail(GB_ERR_ARG, "tokenizer_encode_batch: pad side %d is neither left nor right", (int)side);
    for (int i = 0; i < n; i++)
        if (!texts[i] && (!lens || lens[i]))
            return gb__fail(GB_ERR_ARG, "tokenizer_encode_batch: texts[%d] is NULL", i);
    int32_t **rows = gb__calloc((size_t)n, sizeof *rows, "tokenizer_encode_batch");
    if (!rows) return GB_ERR_ALLOC;
    gb_status st = GB_OK;
    size_t T = 0;
    pthread_mutex_lock(&tok->lock);
    for (int i = 0; st == GB_OK && i < n; i++) {
        const char *t = texts[i] ? texts[i] : "";
        st = gb__tok_encode(tok, t, lens ? lens[i] : strlen(t), add_special, &rows[i]);
        if (arrlenu(rows[i]) > T) T = arrlenu(rows[i]);
    }
    pthread_mutex_unlock(&tok->lock);
    int64_t *idv = NULL, *mv = NULL;
    if (st == GB_OK) {
        idv = gb__malloc((size_t)n * T * sizeof *idv, "tokenizer_encode_batch");
        mv = gb__malloc((size_t)n * T * sizeof *mv, "tokenizer_encode_batch");
        if (!idv || !mv) st = GB_ERR_ALLOC;
    }
    if (st == GB_OK) {
        int32_t pad = gb_tokenizer_padding_id(tok);
        for (int i = 0; i < n; i++) {
            size_t len = arrlenu(rows[i]), off = side == GB_PAD_SIDE_LEFT ? T - len : 0;
            for (size_t t = 0; t < T; t++) {
                bool real = t >= off && t < off + len;
                idv[(size_t)i * T + t] = real ? rows[i][t - off] : pad;
                mv[(size_t)i * T + t] = real;
            }
        }
        int64_t shape[2] = {n, (int64_t)T};
        *ids = gb_from_data(idv, 2, shape, GB_DTYPE_I64);
        *mask = *ids ? gb_from_data(mv, 2, shape, GB_DTYPE_I64) : NULL;
        if (!*mask) {
            st = gb_last_status();
            gb_tensor_free(*ids);
            *ids = NULL;
        }
    }
    free(idv);
    free(mv);
    for (int i = 0; i < n; i++) arrfree(rows[i]);
    free(rows);
    return st;
}

/* ---- decoding and lookups ----------------------------------------------- */

gb_status gb_tokenizer_decode(gb_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!tok || !text || (!ids && n))
        return gb__fail(GB_ERR_ARG, "tokenizer_decode: %s is NULL", !tok ? "the tokenizer" : !text ? "text" : "ids");
    gb__tok_strlist toks = {0}, out = {0};
    gb_status st = GB_OK;
    pthread_mutex_lock(&tok->lock);
    for (size_t i = 0; i < n; i++) {
        const char *s = gb__tok_lookup_str(tok, ids[i]);
        if (!s) {
            st = gb__fail(GB_ERR_INDEX, "tokenizer_decode: id %d at position %zu is not in the vocabulary of %s (size %d)",
                          (int)ids[i], i, tok->path, (int)tok->vocab_size);
            goto done;
        }
        if (skip_special && gb__tok_special(tok, s)) continue;
        if (!gb__tok_strlist_push(&toks, s, strlen(s), false)) {
            st = GB_ERR_ALLOC;
            goto done;
        }
    }
    const gb__tok_strlist *res = &toks;
    if (tok->dec) {
        if ((st = gb__tok_dec_apply(tok->dec, &toks, &out)) != GB_OK) goto done;
        res = &out;
    }
    char *joined = NULL; /* without a decoder, Hugging Face joins tokens with spaces */
    bool ok = true;
    for (size_t i = 0; ok && i < gb__tok_strlist_len(res); i++)
        ok = (!i || tok->dec || gb__tok_bytes_add(&joined, " ", 1)) &&
             gb__tok_bytes_add(&joined, gb__tok_strlist_str(res, i), res->v[i].len);
    size_t total = arrlenu(joined);
    *text = ok ? gb__malloc(total + 1, "tokenizer_decode") : NULL;
    if (*text) {
        if (total) memcpy(*text, joined, total);
        (*text)[total] = 0;
        if (len) *len = total;
    } else {
        st = GB_ERR_ALLOC;
    }
    arrfree(joined);
done:
    pthread_mutex_unlock(&tok->lock);
    gb__tok_strlist_free(&toks);
    gb__tok_strlist_free(&out);
    return st;
}

/* stb_ds writes into a map's header even to look a key up: lookups take
 * the tokenizer's lock too. */
static void gb__tok_lock(const gb_tokenizer *tok) { pthread_mutex_lock((pthread_mutex_t *)&tok->lock); }
static void gb__tok_unlock(const gb_tokenizer *tok) { pthread_mutex_unlock((pthread_mutex_t *)&tok->lock); }

const char *gb_tokenizer_token_to_string(const gb_tokenizer *tok, int32_t id) {
    if (!tok) return gb__fail_null(GB_ERR_ARG, "tokenizer_token_to_string: the tokenizer is NULL");
    gb__tok_lock(tok);
    const char *s = gb__tok_lookup_str(tok, id);
    gb__tok_unlock(tok);
    if (!s)
        return gb__fail_null(GB_ERR_INDEX, "tokenizer_token_to_string: id %d is not in the vocabulary (size %d)",
                             (int)id, (int)tok->vocab_size);
    return s;
}

int32_t gb_tokenizer_token_to_id(const gb_tokenizer *tok, const char *token) {
    if (!tok || !token) {
        gb__fail(GB_ERR_ARG, "tokenizer_token_to_id: %s is NULL", !tok ? "the tokenizer" : "token");
        return -1;
    }
    gb__tok_lock(tok);
    int32_t id = gb__tok_lookup_id(tok, token);
    gb__tok_unlock(tok);
    if (id < 0) gb__fail(GB_ERR_NOT_FOUND, "tokenizer_token_to_id: '%s' is not in the vocabulary", token);
    return id;
}

bool gb_tokenizer_is_special(const gb_tokenizer *tok, int32_t id) {
    if (!tok) return false;
    gb__tok_lock(tok);
    const char *s = gb__tok_lookup_str(tok, id);
    bool special = s && gb__tok_special(tok, s);
    gb__tok_unlock(tok);
    return special;
}

int32_t gb_tokenizer_vocab_size(const gb_tokenizer *tok) { return tok ? tok->vocab_size : 0; }
int32_t gb_tokenizer_bos_id(const gb_tokenizer *tok) { return tok ? tok->bos : -1; }
int32_t gb_tokenizer_eos_id(const gb_tokenizer *tok) { return tok ? tok->eos : -1; }
int32_t gb_tokenizer_pad_id(const gb_tokenizer *tok) { return tok ? tok->pad : -1; }

gb_status gb_tokenizer_set_pad_id(gb_tokenizer *tok, int32_t id) {
    if (!tok) return gb__fail(GB_ERR_ARG, "tokenizer_set_pad_id: the tokenizer is NULL");
    if (id < 0 || id >= tok->vocab_size)
        return gb__fail(GB_ERR_INDEX, "tokenizer_set_pad_id: id %d is out of range for vocabulary size %d", (int)id,
                        (int)tok->vocab_size);
    tok->pad = id;
    return GB_OK;
}
