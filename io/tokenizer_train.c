/* Training a byte-level BPE tokenizer with GPT-2's layout
 * (gb_tokenizer_train_bpe, io.h).
 *
 * 1. Words: the text, made well-formed as encoding makes it, is cut at the
 *    special tokens and pre-tokenized by the ByteLevel pre-tokenizer that
 *    encoding uses (tokenizer_pretok.c: GPT-2's pattern, bytes as GPT-2's
 *    characters). Each distinct piece is a word with a count, spelled as
 *    byte-token ids.
 * 2. Pairs: the count of each adjacent pair of symbols summed over words
 *    (times the word's count), and the words it occurs in.
 * 3. Merges: the pair with the highest count (ties: the smaller left id,
 *    then the smaller right id) becomes a new token; it is merged, left to
 *    right, in the words listed for it, and only the pairs next to each
 *    merge change count. A max-heap holds (count, pair) entries that may be
 *    stale: a merge lowers the counts of pairs without the new token and
 *    raises only pairs with it, which are pushed again after the merge, so
 *    an entry whose count is no longer current is pushed back with its
 *    current count when it reaches the top, and an entry that is current
 *    at the top is the true maximum. This is the algorithm of Hugging
 *    Face's BpeTrainer.
 * 4. Files: tokenizer.json as GPT-2's, vocab.json + merges.txt, and the two
 *    small config files, each written atomically (file.h). */
#include "tokenizer_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_ds.h>

#include "file.h"

#define GB__OP "tokenizer_train_bpe"

/* (left, right) as one key; its numeric order is the tie-break order. */
static inline uint64_t gb__tok_pair(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }
static inline int32_t gb__tok_pair_left(uint64_t p) { return (int32_t)(p >> 32); }
static inline int32_t gb__tok_pair_right(uint64_t p) { return (int32_t)(uint32_t)p; }

typedef struct gb__tok_tword {
    int64_t count;
    size_t off;   /* symbols at syms[off, off + len) */
    uint32_t len;
} gb__tok_tword;

typedef struct gb__tok_pair_info {
    int64_t count;
    int32_t *where; /* stb_ds array: words it occurs in (ascending; may list words it has left) */
} gb__tok_pair_info;

typedef struct gb__tok_heap_item {
    int64_t count;
    uint64_t pair;
} gb__tok_heap_item;

typedef struct gb__tok_trainer {
    gb__tok_tword *words;   /* stb_ds array */
    int32_t *syms;      /* stb_ds array: the words' symbols */
    struct gb__tok_tpair_kv {
        uint64_t key;
        gb__tok_pair_info value;
    } *pairs;           /* stb_ds hash map */
    gb__tok_heap_item *heap; /* stb_ds array, a binary max-heap */
    uint64_t *grown;    /* stb_ds array: pairs whose count the current merge raised (with repeats) */
    char **tokens;      /* stb_ds array: id -> token (malloc'd, GPT-2's characters) */
    struct gb__tok_kv {
        char *key;
        int32_t value;
    } *token_ids;       /* stb_ds string map: token -> id */
    uint64_t *merges;   /* stb_ds array: merged pairs in order */
    int32_t byte_id[256];
} gb__tok_trainer;

/* ---- the heap ----------------------------------------------------------- */

static bool gb__tok_heap_before(gb__tok_heap_item a, gb__tok_heap_item b) {
    return a.count > b.count || (a.count == b.count && a.pair < b.pair);
}

static bool gb__tok_heap_push(gb__tok_trainer *t, int64_t count, uint64_t pair) {
    if (!GB_ARR_PUT(t->heap, ((gb__tok_heap_item){count, pair}), GB__OP)) return false;
    gb__tok_heap_item *h = t->heap;
    for (size_t i = arrlenu(h) - 1; i > 0;) {
        size_t up = (i - 1) / 2;
        if (!gb__tok_heap_before(h[i], h[up])) break;
        gb__tok_heap_item tmp = h[i];
        h[i] = h[up];
        h[up] = tmp;
        i = up;
    }
    return true;
}

static gb__tok_heap_item gb__tok_heap_pop(gb__tok_trainer *t) {
    gb__tok_heap_item *h = t->heap, top = h[0];
    h[0] = arrpop(t->heap);
    size_t n = arrlenu(t->heap);
    for (size_t i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < n && gb__tok_heap_before(h[l], h[best])) best = l;
        if (r < n && gb__tok_heap_before(h[r], h[best])) best = r;
        if (best == i) break;
        gb__tok_heap_item tmp = h[i];
        h[i] = h[best];
        h[best] = tmp;
        i = best;
    }
    return top;
}

/* ---- words and pairs ---------------------------------------------------- */

/* Add delta to pair's count. A positive delta lists word w for the pair
 * (words come in ascending order within a merge, so comparing with the last
 * one listed avoids most repeats; a word listed twice costs a merge that
 * finds nothing) and marks the pair to be pushed on the heap again. */
static bool gb__tok_pair_add(gb__tok_trainer *t, uint64_t pair, int64_t delta, int32_t w) {
    ptrdiff_t k = GB_HM_GETI(t->pairs, pair);
    if (k < 0) {
        if (!GB_HM_PUT(t->pairs, pair, ((gb__tok_pair_info){0, NULL}), GB__OP)) return false;
        k = GB_HM_GETI(t->pairs, pair);
    }
    gb__tok_pair_info *p = &t->pairs[k].value;
    p->count += delta;
    return delta <= 0 || (((arrlenu(p->where) && arrlast(p->where) == w) || GB_ARR_PUT(p->where, w, GB__OP)) &&
                          GB_ARR_PUT(t->grown, pair, GB__OP));
}

static bool gb__tok_pair_drop(gb__tok_trainer *t, uint64_t pair) {
    ptrdiff_t k = GB_HM_GETI(t->pairs, pair);
    if (k < 0) return true;
    arrfree(t->pairs[k].value.where);
    return GB_HM_DEL(t->pairs, pair, GB__OP);
}

/* word (its pre-token, in GPT-2's characters) -> index into words */
typedef struct gb__tok_word_kv {
    char *key;
    int32_t value;
} gb__tok_word_kv;

/* Count the pieces of one stretch of text (no special tokens in it); key is scratch. */
static gb_status gb__tok_count_words(gb__tok_trainer *t, const gb__tok_pre *pre, const char *s, size_t n, gb__tok_word_kv **index,
                                 char **key) {
    gb__tok_strlist in = {0}, out = {0};
    gb_status st = gb__tok_strlist_push(&in, s, n, true) ? gb__tok_pre_apply(pre, &in, &out) : GB_ERR_ALLOC;
    for (size_t i = 0; st == GB_OK && i < gb__tok_strlist_len(&out); i++) {
        const char *piece = gb__tok_strlist_str(&out, i);
        size_t len = out.v[i].len;
        GB_ARR_TRUNC(*key, 0);
        if (!gb__tok_bytes_add(key, piece, len) || !GB_ARR_PUT(*key, 0, GB__OP)) {
            st = GB_ERR_ALLOC;
            break;
        }
        ptrdiff_t k = GB_SH_GETI(*index, *key);
        if (k < 0) {
            /* a new word, spelled in byte tokens (its characters stand for bytes) */
            gb__tok_tword w = {0, arrlenu(t->syms), 0};
            bool ok = true;
            for (size_t at = 0; ok && at < len; w.len++) {
                int clen;
                uint32_t cp = gb__tok_utf8_next(piece, len, &at, &clen);
                ok = GB_ARR_PUT(t->syms, t->byte_id[gb__tok_byte_level_byte(cp)], GB__OP);
            }
            if (!ok || !GB_ARR_PUT(t->words, w, GB__OP) || !GB_SH_PUT(*index, *key, (int32_t)arrlen(t->words) - 1, GB__OP)) {
                st = GB_ERR_ALLOC;
                break;
            }
            k = GB_SH_GETI(*index, *key);
        }
        t->words[(*index)[k].value].count++;
    }
    gb__tok_strlist_free(&in);
    gb__tok_strlist_free(&out);
    return st;
}

/* Words of the whole text: ill-formed UTF-8 replaced, cut at the special
 * tokens (leftmost, then longest, as encoding matches them), each stretch
 * pre-tokenized. */
static gb_status gb__tok_collect_words(gb__tok_trainer *t, const char *text, size_t len, const char *const *special) {
    char *clean = NULL, *key = NULL;
    gb__tok_word_kv *index = NULL;
    gb__tok_pre *pre = NULL;
    gb_status st = gb__tok_utf8_lossy(&clean, text, len) && GB_SH_NEW_ARENA(index, GB__OP) &&
                           (pre = gb__tok_pre_byte_level(GB__OP))
                       ? GB_OK
                       : gb_last_status();
    size_t n = arrlenu(clean);
    /* next[i]: where special token i next occurs at or after pos (n: nowhere) */
    size_t nsp = 0, *next = NULL;
    for (const char *const *sp = special; sp && *sp; sp++) nsp++;
    if (nsp && !(next = gb__malloc(nsp * sizeof *next, GB__OP))) st = GB_ERR_ALLOC;
    for (size_t i = 0; next && i < nsp; i++) next[i] = SIZE_MAX; /* not searched yet */
    for (size_t pos = 0; st == GB_OK && pos < n;) {
        size_t at = n, mlen = 0;
        for (size_t i = 0; i < nsp; i++) {
            size_t sl = strlen(special[i]);
            if (next[i] == SIZE_MAX || next[i] < pos) {
                const char *hit = memmem(clean + pos, n - pos, special[i], sl);
                next[i] = hit ? (size_t)(hit - clean) : n;
            }
            if (next[i] < at || (next[i] == at && at < n && sl > mlen)) at = next[i], mlen = sl;
        }
        if (at > pos) st = gb__tok_count_words(t, pre, clean + pos, at - pos, &index, &key);
        pos = at + mlen;
    }
    free(next);
    gb__tok_pre_free(pre);
    shfree(index);
    arrfree(key);
    arrfree(clean);
    return st;
}

/* ---- training ----------------------------------------------------------- */

/* Takes tok (freed when it cannot be added). */
static bool gb__tok_add_token(gb__tok_trainer *t, char *tok) {
    if (!GB_ARR_PUT(t->tokens, tok, GB__OP)) return free(tok), false;
    return GB_SH_PUT(t->token_ids, tok, (int32_t)arrlen(t->tokens) - 1, GB__OP);
}

/* The 256 byte tokens in GPT-2's order: the bytes whose character is
 * themselves, then the others, each group in byte order (ids 0-255 are
 * GPT-2's). */
static gb_status gb__tok_byte_tokens(gb__tok_trainer *t) {
    for (int pass = 0; pass < 2; pass++)
        for (int b = 0; b < 256; b++) {
            uint32_t cp = gb__tok_byte_level_cp((unsigned char)b);
            if ((cp == (uint32_t)b) != (pass == 0)) continue;
            char *s = gb__calloc(5, 1, GB__OP);
            if (!s) return GB_ERR_ALLOC;
            gb__tok_utf8_encode(cp, s);
            t->byte_id[b] = (int32_t)arrlen(t->tokens);
            if (!gb__tok_add_token(t, s)) return GB_ERR_ALLOC;
        }
    return GB_OK;
}

/* Merge pair (a, b) into c in word w, adjusting the counts of the pairs
 * around each occurrence. */
static bool gb__tok_merge_word(gb__tok_trainer *t, int32_t w, int32_t a, int32_t b, int32_t c) {
    uint64_t merged = gb__tok_pair(a, b);
    int64_t k = t->words[w].count;
    int32_t *s = t->syms + t->words[w].off;
    uint32_t n = t->words[w].len, j = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            /* s[j - 1] is what precedes the pair now (it may be a c just made) */
            if (j > 0 &&
                ((gb__tok_pair(s[j - 1], a) != merged && !gb__tok_pair_add(t, gb__tok_pair(s[j - 1], a), -k, w)) ||
                 !gb__tok_pair_add(t, gb__tok_pair(s[j - 1], c), k, w)))
                return false;
            if (i + 2 < n &&
                ((gb__tok_pair(b, s[i + 2]) != merged && !gb__tok_pair_add(t, gb__tok_pair(b, s[i + 2]), -k, w)) ||
                 !gb__tok_pair_add(t, gb__tok_pair(c, s[i + 2]), k, w)))
                return false;
            s[j++] = c;
            i++;
        } else {
            s[j++] = s[i];
        }
    }
    t->words[w].len = j;
    return true;
}

static int gb__tok_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static gb_status gb__tok_train(gb__tok_trainer *t, int target) {
    for (size_t w = 0; w < arrlenu(t->words); w++) {
        const int32_t *s = t->syms + t->words[w].off;
        for (uint32_t i = 0; i + 1 < t->words[w].len; i++)
            if (!gb__tok_pair_add(t, gb__tok_pair(s[i], s[i + 1]), t->words[w].count, (int32_t)w)) return GB_ERR_ALLOC;
    }
    for (size_t i = 0; i < hmlenu(t->pairs); i++)
        if (!gb__tok_heap_push(t, t->pairs[i].value.count, t->pairs[i].key)) return GB_ERR_ALLOC;
    while ((int)arrlen(t->tokens) < target && arrlenu(t->heap)) {
        gb__tok_heap_item top = gb__tok_heap_pop(t);
        ptrdiff_t k = GB_HM_GETI(t->pairs, top.pair);
        int64_t now = k < 0 ? 0 : t->pairs[k].value.count;
        if (now != top.count) {
            if (!(now > 0 ? gb__tok_heap_push(t, now, top.pair) : gb__tok_pair_drop(t, top.pair))) return GB_ERR_ALLOC;
            continue;
        }
        int32_t a = gb__tok_pair_left(top.pair), b = gb__tok_pair_right(top.pair);
        size_t la = strlen(t->tokens[a]), lb = strlen(t->tokens[b]);
        char *tok = gb__malloc(la + lb + 1, GB__OP);
        if (!tok) return GB_ERR_ALLOC;
        memcpy(tok, t->tokens[a], la);
        memcpy(tok + la, t->tokens[b], lb + 1);
        /* Two merges may spell the same token ("ab"+"c", "a"+"bc"): they
         * share its id. Pairs with it may then exist already and grow. */
        ptrdiff_t same = GB_SH_GETI(t->token_ids, tok);
        int32_t c = same >= 0 ? t->token_ids[same].value : (int32_t)arrlen(t->tokens);
        if (same >= 0) free(tok);
        else if (!gb__tok_add_token(t, tok)) return GB_ERR_ALLOC;
        if (!GB_ARR_PUT(t->merges, top.pair, GB__OP)) return GB_ERR_ALLOC;
        int32_t *where = t->pairs[k].value.where;
        t->pairs[k].value.where = NULL;
        bool ok = gb__tok_pair_drop(t, top.pair);
        GB_ARR_TRUNC(t->grown, 0);
        for (size_t i = 0; ok && i < arrlenu(where); i++) ok = gb__tok_merge_word(t, where[i], a, b, c);
        arrfree(where);
        if (!ok) return GB_ERR_ALLOC;
        /* every pair that grew (each contains c) goes on the heap once, with its count now */
        qsort(t->grown, arrlenu(t->grown), sizeof *t->grown, gb__tok_cmp_u64);
        for (size_t i = 0; i < arrlenu(t->grown); i++) {
            if (i > 0 && t->grown[i] == t->grown[i - 1]) continue;
            ptrdiff_t f = GB_HM_GETI(t->pairs, t->grown[i]);
            if (!(f >= 0 && t->pairs[f].value.count > 0 ? gb__tok_heap_push(t, t->pairs[f].value.count, t->grown[i])
                                                        : gb__tok_pair_drop(t, t->grown[i])))
                return GB_ERR_ALLOC;
        }
    }
    return GB_OK;
}

static void gb__tok_trainer_free(gb__tok_trainer *t) {
    arrfree(t->words);
    arrfree(t->syms);
    for (size_t i = 0; i < hmlenu(t->pairs); i++) arrfree(t->pairs[i].value.where);
    hmfree(t->pairs);
    arrfree(t->heap);
    arrfree(t->grown);
    for (size_t i = 0; i < arrlenu(t->tokens); i++) free(t->tokens[i]);
    arrfree(t->tokens);
    shfree(t->token_ids);
    arrfree(t->merges);
}

/* ---- files -------------------------------------------------------------- */

/* ByteLevel with GPT-2's settings, as GPT-2's tokenizer.json writes its
 * pre-tokenizer, post-processor and decoder. */
static bool gb__tok_set_byte_level(gb__json_json *obj, const char *key) {
    gb__json_json *j = gb__json_new_object();
    return gb__json_set(obj, key, j) && gb__json_set(j, "type", gb__json_new_string("ByteLevel")) &&
           gb__json_set(j, "add_prefix_space", gb__json_new_bool(false)) &&
           gb__json_set(j, "trim_offsets", gb__json_new_bool(true)) &&
           gb__json_set(j, "use_regex", gb__json_new_bool(true));
}

/* Fill v with token -> id for every token and special token, in id order. */
static bool gb__tok_fill_vocab(gb__json_json *v, const gb__tok_trainer *t, const char *const *special) {
    bool ok = v != NULL;
    int32_t id = 0;
    for (; ok && id < (int32_t)arrlen(t->tokens); id++) ok = gb__json_set(v, t->tokens[id], gb__json_new_number(id));
    for (const char *const *sp = special; ok && sp && *sp; sp++, id++)
        ok = gb__json_set(v, *sp, gb__json_new_number(id));
    return ok;
}

/* tokenizer.json with GPT-2's structure and key order. Containers are
 * attached to their parent as soon as they exist, so freeing root frees
 * everything whatever fails. */
static gb__json_json *gb__tok_tokenizer_json(const gb__tok_trainer *t, const char *const *special, bool *ok) {
    gb__json_json *root = gb__json_new_object(), *added = NULL, *model = NULL, *vocab = NULL, *merges = NULL;
    *ok = root && gb__json_set(root, "version", gb__json_new_string("1.0")) &&
          gb__json_set(root, "truncation", gb__json_new_null()) && gb__json_set(root, "padding", gb__json_new_null()) &&
          gb__json_set(root, "added_tokens", added = gb__json_new_array()) &&
          gb__json_set(root, "normalizer", gb__json_new_null()) && gb__tok_set_byte_level(root, "pre_tokenizer") &&
          gb__tok_set_byte_level(root, "post_processor") && gb__tok_set_byte_level(root, "decoder") &&
          gb__json_set(root, "model", model = gb__json_new_object()) &&
          gb__json_set(model, "type", gb__json_new_string("BPE")) &&
          gb__json_set(model, "dropout", gb__json_new_null()) && gb__json_set(model, "unk_token", gb__json_new_null()) &&
          gb__json_set(model, "continuing_subword_prefix", gb__json_new_string("")) &&
          gb__json_set(model, "end_of_word_suffix", gb__json_new_string("")) &&
          gb__json_set(model, "fuse_unk", gb__json_new_bool(false)) &&
          gb__json_set(model, "byte_fallback", gb__json_new_bool(false)) &&
          gb__json_set(model, "ignore_merges", gb__json_new_bool(false)) &&
          gb__json_set(model, "vocab", vocab = gb__json_new_object()) &&
          gb__json_set(model, "merges", merges = gb__json_new_array()) && gb__tok_fill_vocab(vocab, t, special);
    int32_t id = (int32_t)arrlen(t->tokens);
    for (const char *const *sp = special; *ok && sp && *sp; sp++, id++) {
        gb__json_json *a = gb__json_new_object();
        *ok = gb__json_push(added, a) && gb__json_set(a, "id", gb__json_new_number(id)) &&
              gb__json_set(a, "content", gb__json_new_string(*sp)) &&
              gb__json_set(a, "single_word", gb__json_new_bool(false)) &&
              gb__json_set(a, "lstrip", gb__json_new_bool(false)) &&
              gb__json_set(a, "rstrip", gb__json_new_bool(false)) &&
              gb__json_set(a, "normalized", gb__json_new_bool(false)) &&
              gb__json_set(a, "special", gb__json_new_bool(true));
    }
    for (size_t i = 0; *ok && i < arrlenu(t->merges); i++) {
        gb__json_json *m = gb__json_new_array();
        *ok = gb__json_push(merges, m) &&
              gb__json_push(m, gb__json_new_string(t->tokens[gb__tok_pair_left(t->merges[i])])) &&
              gb__json_push(m, gb__json_new_string(t->tokens[gb__tok_pair_right(t->merges[i])]));
    }
    return root;
}

/* transformers' files: the first special token is BOS, EOS and UNK, as
 * GPT-2's <|endoftext|> is (with_class adds the tokenizer's class). */
static gb__json_json *gb__tok_special_map_json(const char *first, bool with_class, bool *ok) {
    gb__json_json *j = gb__json_new_object();
    *ok = j != NULL;
    if (*ok && with_class)
        *ok = gb__json_set(j, "tokenizer_class", gb__json_new_string("GPT2Tokenizer")) &&
              gb__json_set(j, "add_prefix_space", gb__json_new_bool(false));
    static const char *const keys[] = {"bos_token", "eos_token", "unk_token"};
    for (int i = 0; *ok && first && i < 3; i++) *ok = gb__json_set(j, keys[i], gb__json_new_string(first));
    return j;
}

/* Write j (freed) as dir/name. */
static gb_status gb__tok_write_json(const char *dir, const char *name, gb__json_json *j, bool ok) {
    char *text = ok ? gb__json_print(j) : NULL;
    gb__json_free(j);
    if (!text) return gb__fail(GB_ERR_ALLOC, GB__OP ": out of memory writing %s", name);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gb_status st = gb__io_file_write(path, text, strlen(text), 0, GB__OP);
    free(text);
    return st;
}

static gb_status gb__tok_write_merges(const gb__tok_trainer *t, const char *dir) {
    char *text = NULL;
    bool ok = gb__tok_bytes_add(&text, "#version: 0.2\n", 14);
    for (size_t i = 0; ok && i < arrlenu(t->merges); i++) {
        const char *a = t->tokens[gb__tok_pair_left(t->merges[i])], *b = t->tokens[gb__tok_pair_right(t->merges[i])];
        ok = gb__tok_bytes_add(&text, a, strlen(a)) && gb__tok_bytes_add(&text, " ", 1) &&
             gb__tok_bytes_add(&text, b, strlen(b)) && gb__tok_bytes_add(&text, "\n", 1);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    gb_status st = ok ? gb__io_file_write(path, text, arrlenu(text), 0, GB__OP) : GB_ERR_ALLOC;
    arrfree(text);
    return st;
}

/* mkdir -p dir. */
static gb_status gb__tok_make_dirs(const char *dir) {
    char path[4200];
    size_t n = strlen(dir);
    if (n >= sizeof path) return gb__fail(GB_ERR_ARG, GB__OP ": directory name is too long (%zu bytes)", n);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        char keep = path[i];
        path[i] = 0;
        struct stat st;
        if (stat(path, &st) != 0 && mkdir(path, 0755) != 0 && errno != EEXIST)
            return gb__fail(GB_ERR_IO, GB__OP ": cannot create directory %s: %s", path, strerror(errno));
        path[i] = keep;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return gb__fail(GB_ERR_IO, GB__OP ": %s is not a directory", dir);
    if (access(dir, W_OK) != 0)
        return gb__fail(GB_ERR_IO, GB__OP ": cannot write into %s: %s", dir, strerror(errno));
    return GB_OK;
}

/* ---- the entry point ---------------------------------------------------- */

gb_status gb_tokenizer_train_bpe(const char *text, size_t len, int vocab_size, const char *const *special_tokens,
                                 const char *out_dir) {
    if ((!text && len) || !out_dir)
        return gb__fail(GB_ERR_ARG, GB__OP ": %s is NULL", !out_dir ? "out_dir" : "text");
    int nspecial = 0;
    for (const char *const *sp = special_tokens; sp && *sp; sp++, nspecial++) {
        if (!**sp) return gb__fail(GB_ERR_ARG, GB__OP ": special token %d is empty", nspecial);
        for (const char *const *q = special_tokens; q < sp; q++)
            if (!strcmp(*q, *sp)) return gb__fail(GB_ERR_ARG, GB__OP ": special token '%s' is given twice", *sp);
    }
    if (vocab_size < 256 + nspecial)
        return gb__fail(GB_ERR_ARG,
                        GB__OP ": vocab_size %d is below %d (the 256 byte tokens and %d special token%s)",
                        vocab_size, 256 + nspecial, nspecial, nspecial == 1 ? "" : "s");
    gb_status st = gb__tok_make_dirs(out_dir);
    if (st != GB_OK) return st;

    gb__tok_trainer t = {0};
    if (!GB_SH_NEW_STRDUP(t.token_ids, GB__OP)) {
        st = GB_ERR_ALLOC;
        goto done;
    }
    if ((st = gb__tok_byte_tokens(&t)) != GB_OK || (st = gb__tok_collect_words(&t, text ? text : "", len, special_tokens)) !=
                                                     GB_OK ||
        (st = gb__tok_train(&t, vocab_size - nspecial)) != GB_OK)
        goto done;
    for (const char *const *sp = special_tokens; sp && *sp; sp++)
        if (GB_SH_GETI(t.token_ids, *sp) >= 0) {
            st = gb__fail(GB_ERR_ARG, GB__OP ": special token '%s' is also a token of the vocabulary", *sp);
            goto done;
        }

    const char *first = nspecial ? special_tokens[0] : NULL;
    bool ok;
    gb__json_json *j = gb__tok_tokenizer_json(&t, special_tokens, &ok);
    if ((st = gb__tok_write_json(out_dir, "tokenizer.json", j, ok)) != GB_OK) goto done;
    j = gb__json_new_object();
    ok = gb__tok_fill_vocab(j, &t, special_tokens);
    if ((st = gb__tok_write_json(out_dir, "vocab.json", j, ok)) != GB_OK) goto done;
    if ((st = gb__tok_write_merges(&t, out_dir)) != GB_OK) goto done;
    j = gb__tok_special_map_json(first, true, &ok);
    if ((st = gb__tok_write_json(out_dir, "tokenizer_config.json", j, ok)) != GB_OK) goto done;
    j = gb__tok_special_map_json(first, false, &ok);
    st = gb__tok_write_json(out_dir, "special_tokens_map.json", j, ok);
done:
    gb__tok_trainer_free(&t);
    return st;
}
