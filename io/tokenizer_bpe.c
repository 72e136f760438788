/* The BPE model: a pre-token's characters become vocabulary ids, then the
 * adjacent pair with the lowest merge rank is merged until none is left
 * (a min-heap of candidate merges; stale entries are skipped when popped),
 * exactly as Hugging Face's Word::merge_all. Results are cached per
 * pre-token. */
#include "tokenizer_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

/* The cache is dropped whole when it grows past these sizes. */
#define GB__CACHE_MAX_ENTRIES 65536
#define GB__CACHE_MAX_KEY 256

/* ---- vocabulary and merges ---------------------------------------------- */

int32_t gb__tok_bpe_id(const gb__tok_bpe *m, const char *tok) {
    struct gb__tok_vocab_kv *map = m->vocab; /* stb_ds lookups write to the map variable */
    ptrdiff_t i = GB_SH_GETI(map, tok);
    return i < 0 ? -1 : map[i].value;
}

const char *gb__tok_bpe_str(const gb__tok_bpe *m, int32_t id) {
    struct gb__tok_id_str_kv *map = m->id_str; /* stb_ds lookups write to the map variable */
    ptrdiff_t i = GB_HM_GETI(map, id);
    return i < 0 ? NULL : map[i].value;
}

size_t gb__tok_bpe_count(const gb__tok_bpe *m) { return (size_t)shlen(m->vocab); }

static gb_status gb__tok_bpe_add_token(gb__tok_bpe *m, const char *tok, const gb__json_json *v, const char *ctx) {
    long long id;
    if (!gb__json_int(v, &id) || id < 0 || id >= INT32_MAX)
        return gb__fail(GB_ERR_FORMAT, "%s: vocab: token '%s' has no valid id (a non-negative integer)", ctx, tok);
    return GB_SH_PUT(m->vocab, tok, (int32_t)id, ctx) ? GB_OK : GB_ERR_ALLOC;
}

/* After the vocabulary is in: id -> string and the byte-fallback ids. */
static gb_status gb__tok_bpe_index(gb__tok_bpe *m, const char *ctx) {
    for (ptrdiff_t i = 0; i < shlen(m->vocab); i++) {
        int32_t id = m->vocab[i].value;
        if (!GB_HM_PUT(m->id_str, id, m->vocab[i].key, ctx)) return GB_ERR_ALLOC;
        if (id >= m->id_end) m->id_end = id + 1;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        m->byte_id[b] = gb__tok_bpe_id(m, name);
    }
    return GB_OK;
}

/* Merge number rank joins a and b (both NUL-terminated). */
static gb_status gb__tok_bpe_add_merge(gb__tok_bpe *m, const char *a, const char *b, size_t rank, const char *ctx) {
    int32_t ia = gb__tok_bpe_id(m, a), ib = gb__tok_bpe_id(m, b);
    size_t pl = m->prefix ? strlen(m->prefix) : 0;
    const char *missing = ia < 0 ? a : ib < 0 ? b : NULL;
    if (missing)
        return gb__fail(GB_ERR_FORMAT, "%s: merges: merge %zu ('%s' '%s') uses '%s', which is not in the vocabulary",
                        ctx, rank, a, b, missing);
    if (strlen(b) < pl)
        return gb__fail(GB_ERR_FORMAT, "%s: merges: merge %zu: '%s' is shorter than continuing_subword_prefix", ctx,
                        rank, b);
    char *joined = NULL;
    if (!gb__tok_bytes_add(&joined, a, strlen(a)) || !gb__tok_bytes_add(&joined, b + pl, strlen(b + pl) + 1)) {
        arrfree(joined);
        return GB_ERR_ALLOC;
    }
    int32_t id = gb__tok_bpe_id(m, joined);
    if (id < 0) {
        gb__fail(GB_ERR_FORMAT, "%s: merges: merge %zu ('%s' '%s') makes '%s', which is not in the vocabulary", ctx,
                 rank, a, b, joined);
        arrfree(joined);
        return GB_ERR_FORMAT;
    }
    arrfree(joined);
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    /* a repeated pair keeps its last rank */
    return GB_HM_PUT(m->merges, key, (uint64_t)rank << 32 | (uint32_t)id, ctx) ? GB_OK : GB_ERR_ALLOC;
}

/* A merge written "a b" (legacy): exactly one space. */
static gb_status gb__tok_bpe_add_merge_line(gb__tok_bpe *m, const char *line, size_t len, size_t rank, const char *ctx) {
    const char *sp = memchr(line, ' ', len);
    if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line)))
        return gb__fail(GB_ERR_FORMAT, "%s: merges: merge %zu ('%.*s') is not two tokens separated by one space", ctx,
                        rank + 1, (int)(len > 200 ? 200 : len), line);
    char *a = strndup(line, (size_t)(sp - line)), *b = strndup(sp + 1, len - (size_t)(sp + 1 - line));
    gb_status st = a && b ? gb__tok_bpe_add_merge(m, a, b, rank, ctx) : gb__fail(GB_ERR_ALLOC, "%s: out of memory", ctx);
    free(a);
    free(b);
    return st;
}

static gb_status gb__tok_bpe_init(gb__tok_bpe *m, const char *ctx) {
    memset(m, 0, sizeof *m);
    return GB_SH_NEW_ARENA(m->vocab, ctx) && GB_SH_NEW_STRDUP(m->cache, ctx) ? GB_OK : GB_ERR_ALLOC;
}

gb_status gb__tok_bpe_parse(gb__tok_bpe *m, const gb__json_json *j, const char *ctx) {
    if (gb__tok_bpe_init(m, ctx) != GB_OK) return GB_ERR_ALLOC;
    const char *type = gb__json_string(gb__json_get(j, "type"));
    if (type && strcmp(type, "BPE"))
        return gb__fail(GB_ERR_UNSUPPORTED, "%s: model '%s' is not supported (only BPE)", ctx, type);
    const gb__json_json *vocab = gb__json_get(j, "vocab"), *merges = gb__json_get(j, "merges");
    if (!gb__json_is_object(vocab) || !gb__json_is_array(merges))
        return gb__fail(GB_ERR_FORMAT, "%s: model: BPE needs a \"vocab\" object and a \"merges\" array", ctx);
    double dropout = 0;
    if (gb__json_number(gb__json_get(j, "dropout"), &dropout) && dropout > 0)
        return gb__fail(GB_ERR_UNSUPPORTED, "%s: model: BPE dropout %g is not supported (encoding would be random)",
                        ctx, dropout);
    gb__json_bool(gb__json_get(j, "fuse_unk"), &m->fuse_unk);
    gb__json_bool(gb__json_get(j, "byte_fallback"), &m->byte_fallback);
    gb__json_bool(gb__json_get(j, "ignore_merges"), &m->ignore_merges);
    const char *unk = gb__json_string(gb__json_get(j, "unk_token"));
    const char *prefix = gb__json_string(gb__json_get(j, "continuing_subword_prefix"));
    const char *suffix = gb__json_string(gb__json_get(j, "end_of_word_suffix"));
    if ((unk && !(m->unk_token = gb__strdup(unk, ctx))) || (prefix && prefix[0] && !(m->prefix = gb__strdup(prefix, ctx))) ||
        (suffix && suffix[0] && !(m->suffix = gb__strdup(suffix, ctx))))
        return GB_ERR_ALLOC;
    for (gb__json_json *e = gb__json_first(vocab); e; e = gb__json_next(e)) {
        gb_status st = gb__tok_bpe_add_token(m, gb__json_key(e), e, ctx);
        if (st != GB_OK) return st;
    }
    if (gb__tok_bpe_index(m, ctx) != GB_OK) return GB_ERR_ALLOC;
    size_t rank = 0;
    for (gb__json_json *e = gb__json_first(merges); e; e = gb__json_next(e)) {
        gb_status st;
        const char *line = gb__json_string(e);
        if (line) {
            if (!strncmp(line, "#version", 8)) continue;
            st = gb__tok_bpe_add_merge_line(m, line, strlen(line), rank, ctx);
        } else {
            const char *a = gb__json_string(gb__json_at(e, 0)), *b = gb__json_string(gb__json_at(e, 1));
            if (!gb__json_is_array(e) || gb__json_size(e) != 2 || !a || !b)
                return gb__fail(GB_ERR_FORMAT, "%s: merges: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", ctx, rank);
            st = gb__tok_bpe_add_merge(m, a, b, rank, ctx);
        }
        if (st != GB_OK) return st;
        rank++;
    }
    return GB_OK;
}

gb_status gb__tok_bpe_from_files(gb__tok_bpe *m, const gb__json_json *vocab, const char *merges, size_t n, const char *vctx,
                             const char *ctx) {
    if (gb__tok_bpe_init(m, ctx) != GB_OK) return GB_ERR_ALLOC;
    if (!gb__json_is_object(vocab)) return gb__fail(GB_ERR_FORMAT, "%s: not a JSON object of token: id", vctx);
    for (gb__json_json *e = gb__json_first(vocab); e; e = gb__json_next(e)) {
        gb_status st = gb__tok_bpe_add_token(m, gb__json_key(e), e, vctx);
        if (st != GB_OK) return st;
    }
    if (gb__tok_bpe_index(m, vctx) != GB_OK) return GB_ERR_ALLOC;
    size_t rank = 0;
    for (size_t at = 0; at < n;) {
        const char *nl = memchr(merges + at, '\n', n - at);
        size_t end = nl ? (size_t)(nl - merges) : n, len = end - at;
        if (len && merges[at + len - 1] == '\r') len--;
        if (!(len >= 8 && !memcmp(merges + at, "#version", 8))) {
            gb_status st = gb__tok_bpe_add_merge_line(m, merges + at, len, rank, ctx);
            if (st != GB_OK) return st;
            rank++;
        }
        at = end + 1;
    }
    return GB_OK;
}

static bool gb__tok_bpe_cache_clear(gb__tok_bpe *m) {
    shfree(m->cache);
    arrfree(m->cache_ids);
    return GB_SH_NEW_STRDUP(m->cache, "tokenizer_encode");
}

void gb__tok_bpe_free(gb__tok_bpe *m) {
    shfree(m->vocab);
    hmfree(m->id_str);
    hmfree(m->merges);
    shfree(m->cache);
    arrfree(m->cache_ids);
    arrfree(m->syms);
    arrfree(m->heap);
    arrfree(m->key);
    free(m->unk_token);
    free(m->prefix);
    free(m->suffix);
    memset(m, 0, sizeof *m);
}

/* ---- one word ----------------------------------------------------------- */

static bool gb__tok_merge_less(const struct gb__tok_bpe_merge *a, const struct gb__tok_bpe_merge *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

/* A 4-ary min-heap: half the depth of a binary one, and the four children
 * share a cache line, which matters for words of a million symbols (a
 * tokenizer without pre-tokenizer sees the whole text as one word). */
static bool gb__tok_heap_push(gb__tok_bpe *m, struct gb__tok_bpe_merge x) {
    if (!GB_ARR_PUT(m->heap, x, "tokenizer_encode")) return false;
    size_t i = arrlenu(m->heap) - 1;
    while (i > 0 && gb__tok_merge_less(&x, &m->heap[(i - 1) / 4])) {
        m->heap[i] = m->heap[(i - 1) / 4];
        i = (i - 1) / 4;
    }
    m->heap[i] = x;
    return true;
}

static struct gb__tok_bpe_merge gb__tok_heap_pop(gb__tok_bpe *m) {
    struct gb__tok_bpe_merge top = m->heap[0], x = arrpop(m->heap);
    size_t n = arrlenu(m->heap), i = 0;
    if (n == 0) return top;
    for (;;) {
        size_t c = 4 * i + 1, best = c;
        if (c >= n) break;
        for (size_t k = c + 1; k < c + 4 && k < n; k++)
            if (gb__tok_merge_less(&m->heap[k], &m->heap[best])) best = k;
        if (!gb__tok_merge_less(&m->heap[best], &x)) break;
        m->heap[i] = m->heap[best];
        i = best;
    }
    m->heap[i] = x;
    return top;
}

/* Queue the merge of symbol pos with its right neighbour, if the pair has one. */
static bool gb__tok_queue_pair(gb__tok_bpe *m, int32_t pos) {
    int32_t next = m->syms[pos].next;
    if (next < 0) return true;
    uint64_t key = (uint64_t)(uint32_t)m->syms[pos].id << 32 | (uint32_t)m->syms[next].id;
    ptrdiff_t k = GB_HM_GETI(m->merges, key);
    return k < 0 || gb__tok_heap_push(m, (struct gb__tok_bpe_merge){(uint32_t)(m->merges[k].value >> 32), (uint32_t)pos,
                                                                    (int32_t)(uint32_t)m->merges[k].value});
}

static bool gb__tok_add_sym(gb__tok_bpe *m, int32_t id, size_t len) {
    int32_t n = (int32_t)arrlen(m->syms);
    if (!GB_ARR_PUT(m->syms, ((struct gb__tok_bpe_sym){id, n - 1, -1, (uint32_t)len}), "tokenizer_encode")) return false;
    if (n > 0) m->syms[n - 1].next = n;
    return true;
}

/* The lookup key of the character s[i, i+len): with the subword prefix
 * unless first, with the word suffix when last. */
/* NULL when out of memory. */
static const char *gb__tok_char_key(gb__tok_bpe *m, const char *s, size_t len, bool first, bool last) {
    GB_ARR_TRUNC(m->key, 0);
    if ((!first && m->prefix && !gb__tok_bytes_add(&m->key, m->prefix, strlen(m->prefix))) ||
        !gb__tok_bytes_add(&m->key, s, len) || (last && m->suffix && !gb__tok_bytes_add(&m->key, m->suffix, strlen(m->suffix))) ||
        !GB_ARR_PUT(m->key, 0, "tokenizer_encode"))
        return NULL;
    return m->key;
}

static gb_status gb__tok_bpe_word(gb__tok_bpe *m, const char *s, size_t n, int32_t **ids) {
    GB_ARR_TRUNC(m->syms, 0);
    GB_ARR_TRUNC(m->heap, 0);
    int32_t unk_id = -1;
    size_t unk_len = 0; /* a pending unknown run (fuse_unk joins them) */
    bool ok = true;
    for (size_t i = 0; ok && i < n;) {
        size_t bad = 0;
        int cl = gb__tok_utf8_char((const unsigned char *)s + i, n - i, &bad);
        if (!cl) cl = 1; /* not for well-formed pieces */
        const char *key = gb__tok_char_key(m, s + i, (size_t)cl, i == 0, i + (size_t)cl == n);
        if (!key) return GB_ERR_ALLOC;
        size_t keylen = arrlenu(m->key) - 1;
        /* a NUL in the piece cannot be a vocabulary key */
        int32_t id = memchr(s + i, 0, (size_t)cl) ? -1 : gb__tok_bpe_id(m, key);
        i += (size_t)cl;
        if (id >= 0) {
            ok = (unk_id < 0 || gb__tok_add_sym(m, unk_id, unk_len)) && gb__tok_add_sym(m, id, (size_t)cl);
            unk_id = -1;
            continue;
        }
        if (m->byte_fallback) {
            bool all = true;
            for (size_t b = 0; b < keylen; b++) all = all && m->byte_id[(unsigned char)key[b]] >= 0;
            if (all) { /* as Hugging Face: a pending unknown is not flushed first */
                for (size_t b = 0; ok && b < keylen; b++) ok = gb__tok_add_sym(m, m->byte_id[(unsigned char)key[b]], 1);
                continue;
            }
        }
        if (!m->unk_token) continue; /* no unk token: the character is dropped */
        int32_t uid = gb__tok_bpe_id(m, m->unk_token);
        if (uid < 0)
            return gb__fail(GB_ERR_FORMAT, "tokenizer encode: unk_token '%s' is not in the vocabulary", m->unk_token);
        if (unk_id >= 0 && m->fuse_unk) {
            unk_len += (size_t)cl;
            continue;
        }
        if (unk_id >= 0) ok = gb__tok_add_sym(m, unk_id, unk_len);
        unk_id = uid;
        unk_len = (size_t)cl;
    }
    if (ok && unk_id >= 0) ok = gb__tok_add_sym(m, unk_id, unk_len);

    for (int32_t p = 0; ok && p + 1 < (int32_t)arrlen(m->syms); p++) ok = gb__tok_queue_pair(m, p);
    while (ok && arrlen(m->heap) > 0) {
        struct gb__tok_bpe_merge top = gb__tok_heap_pop(m);
        struct gb__tok_bpe_sym *cur = &m->syms[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        struct gb__tok_bpe_sym right = m->syms[cur->next];
        uint64_t key = (uint64_t)(uint32_t)cur->id << 32 | (uint32_t)right.id;
        ptrdiff_t k = GB_HM_GETI(m->merges, key);
        if (k < 0 || (int32_t)(uint32_t)m->merges[k].value != top.id) continue; /* stale */
        m->syms[cur->next].len = 0;
        cur->id = top.id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0) m->syms[right.next].prev = (int32_t)top.pos;
        ok = (cur->prev < 0 || gb__tok_queue_pair(m, cur->prev)) && gb__tok_queue_pair(m, (int32_t)top.pos);
    }
    for (size_t i = 0; ok && i < arrlenu(m->syms); i++)
        if (m->syms[i].len) ok = GB_ARR_PUT(*ids, m->syms[i].id, "tokenizer_encode");
    return ok ? GB_OK : GB_ERR_ALLOC;
}

gb_status gb__tok_bpe_tokenize(gb__tok_bpe *m, const char *s, size_t n, int32_t **ids) {
    if (n == 0) return GB_OK;
    /* a piece of n bytes is at most n symbols, n ids and a key of n bytes
     * and the affixes: grown here, checked, so that the loops need not */
    size_t affixes = (m->prefix ? strlen(m->prefix) : 0) + (m->suffix ? strlen(m->suffix) : 0) + 1;
    if (!GB_ARR_RESERVE(*ids, n, "tokenizer_encode") || !GB_ARR_RESERVE(m->syms, n, "tokenizer_encode") ||
        !GB_ARR_RESERVE(m->key, n + affixes, "tokenizer_encode"))
        return GB_ERR_ALLOC;
    bool has_nul = memchr(s, 0, n) != NULL;
    bool cacheable = m->cache && n < GB__CACHE_MAX_KEY && !has_nul; /* none: emptying it ran out of memory */
    char key[GB__CACHE_MAX_KEY];
    if (cacheable || (m->ignore_merges && !has_nul)) {
        char *k = cacheable ? key : NULL;
        if (!k) { /* long piece: ignore_merges still needs a lookup key */
            GB_ARR_TRUNC(m->key, 0);
            if (!gb__tok_bytes_add(&m->key, s, n) || !GB_ARR_PUT(m->key, 0, "tokenizer_encode")) return GB_ERR_ALLOC;
            k = m->key;
        } else {
            memcpy(key, s, n);
            key[n] = 0;
        }
        if (m->ignore_merges) {
            int32_t id = gb__tok_bpe_id(m, k);
            if (id >= 0) return GB_ARR_PUT(*ids, id, "tokenizer_encode") ? GB_OK : GB_ERR_ALLOC;
        }
        if (cacheable) {
            ptrdiff_t c = GB_SH_GETI(m->cache, key);
            if (c >= 0) {
                size_t off = (size_t)(m->cache[c].value >> 32), cnt = (size_t)(uint32_t)m->cache[c].value;
                int32_t *at = GB_ARR_ADDN(*ids, cnt, "tokenizer_encode");
                if (!at) return GB_ERR_ALLOC;
                if (cnt) memcpy(at, m->cache_ids + off, cnt * sizeof(int32_t)); /* none: no offset on NULL */
                return GB_OK;
            }
        }
    }
    size_t before = arrlenu(*ids);
    gb_status st = gb__tok_bpe_word(m, s, n, ids);
    if (st != GB_OK || !cacheable) return st;
    /* the cache only saves work: when it cannot grow, it is emptied */
    if (shlen(m->cache) >= GB__CACHE_MAX_ENTRIES && !gb__tok_bpe_cache_clear(m)) return GB_ERR_ALLOC;
    size_t cnt = arrlenu(*ids) - before, off = arrlenu(m->cache_ids);
    int32_t *at = GB_ARR_ADDN(m->cache_ids, cnt, "tokenizer_encode");
    if (!at || !GB_SH_PUT(m->cache, key, (uint64_t)off << 32 | cnt, "tokenizer_encode"))
        return gb__tok_bpe_cache_clear(m) ? GB_OK : GB_ERR_ALLOC;
    if (cnt) memcpy(at, *ids + before, cnt * sizeof(int32_t));
    return GB_OK;
}
