/* Tokenizer pre-tokenizers: ByteLevel (GPT-2), Split (a regex, e.g. Llama 3's
 * pattern), Metaspace (SentencePiece's "▁"), Digits and Sequence. Each cuts
 * the pieces of a string list into smaller pieces, as Hugging Face's do. */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

/* GPT-2's pre-tokenizer pattern (ByteLevel with use_regex). */
static const char gb__tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- GPT-2's byte-to-unicode map ---------------------------------------- */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes take
 * 256, 257, ... in byte order: 0..32 -> 256..288, 127..160 -> 289..322,
 * 173 -> 323. */
uint32_t gb__tok_byte_level_cp(unsigned char b) {
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 162u + b;
    if (b == 173) return 323;
    return b;
}

int gb__tok_byte_level_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 162);
    if (cp == 323) return 173;
    return -1;
}

/* ---- parsing ------------------------------------------------------------ */

static const char *const gb__tok_behavior_names[] = {
    [GB__SPLIT_BEHAVIOR_REMOVED] = "Removed",
    [GB__SPLIT_BEHAVIOR_ISOLATED] = "Isolated",
    [GB__SPLIT_BEHAVIOR_MERGED_WITH_PREVIOUS] = "MergedWithPrevious",
    [GB__SPLIT_BEHAVIOR_MERGED_WITH_NEXT] = "MergedWithNext",
    [GB__SPLIT_BEHAVIOR_CONTIGUOUS] = "Contiguous",
};

static const char *const gb__tok_scheme_names[] = {
    [GB__PREPEND_SCHEME_ALWAYS] = "always",
    [GB__PREPEND_SCHEME_FIRST] = "first",
    [GB__PREPEND_SCHEME_NEVER] = "never",
};

/* Index of name in names[n], or -1. */
static int gb__tok_lookup(const char *const *names, int n, const char *name) {
    for (int i = 0; name && i < n; i++)
        if (!strcmp(names[i], name)) return i;
    return -1;
}

static bool gb__tok_bool_or(const gb__json_json *j, const char *key, bool dflt) {
    bool v = dflt;
    gb__json_bool(gb__json_get(j, key), &v);
    return v;
}

/* Metaspace's "replacement": one character. */
gb_status gb__tok_parse_replacement(const gb__json_json *j, const char *ctx, const char *what, char out[5]);
gb_status gb__tok_parse_replacement(const gb__json_json *j, const char *ctx, const char *what, char out[5]) {
    const char *r = gb__json_string(gb__json_get(j, "replacement"));
    size_t bad = 0;
    if (!r || !r[0] || (size_t)gb__tok_utf8_char((const unsigned char *)r, strlen(r), &bad) != strlen(r))
        return gb__fail(GB_ERR_FORMAT, "%s: %s: \"replacement\" must be one character", ctx, what);
    strcpy(out, r);
    return GB_OK;
}

/* prepend_scheme, or the older add_prefix_space flag. */
gb_status gb__tok_parse_scheme(const gb__json_json *j, const char *ctx, const char *what, gb__tok_prepend_scheme *out);
gb_status gb__tok_parse_scheme(const gb__json_json *j, const char *ctx, const char *what, gb__tok_prepend_scheme *out) {
    const gb__json_json *s = gb__json_get(j, "prepend_scheme");
    if (s) {
        int k = gb__tok_lookup(gb__tok_scheme_names, 3, gb__json_string(s));
        if (k < 0)
            return gb__fail(GB_ERR_FORMAT, "%s: %s: prepend_scheme must be \"always\", \"first\" or \"never\"", ctx,
                            what);
        *out = (gb__tok_prepend_scheme)k;
    } else {
        *out = gb__tok_bool_or(j, "add_prefix_space", true) ? GB__PREPEND_SCHEME_ALWAYS : GB__PREPEND_SCHEME_NEVER;
    }
    return GB_OK;
}

static gb_status gb__tok_pre_parse_into(gb__tok_pre *p, const gb__json_json *j, const char *ctx) {
    const char *type = gb__json_string(gb__json_get(j, "type"));
    if (!type) return gb__fail(GB_ERR_FORMAT, "%s: pre_tokenizer has no \"type\"", ctx);
    if (!strcmp(type, "Sequence")) {
        const gb__json_json *items = gb__json_get(j, "pretokenizers");
        if (!gb__json_is_array(items))
            return gb__fail(GB_ERR_FORMAT, "%s: pre_tokenizer Sequence has no \"pretokenizers\" array", ctx);
        p->kind = GB__PRE_KIND_SEQUENCE;
        p->items = gb__calloc((size_t)gb__json_size(items), sizeof *p->items, ctx);
        if (!p->items) return GB_ERR_ALLOC;
        for (int i = 0; i < gb__json_size(items); i++) {
            p->nitems = i + 1;
            gb_status st = gb__tok_pre_parse_into(&p->items[i], gb__json_at(items, i), ctx);
            if (st != GB_OK) return st;
        }
        return GB_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        p->kind = GB__PRE_KIND_BYTE_LEVEL;
        p->add_prefix_space = gb__tok_bool_or(j, "add_prefix_space", true);
        p->use_regex = gb__tok_bool_or(j, "use_regex", true);
        if (p->use_regex && !(p->re = gb__tok_regex_new(gb__tok_gpt2_pattern, false, ctx))) return gb_last_status();
        return GB_OK;
    }
    if (!strcmp(type, "Split")) {
        p->kind = GB__PRE_KIND_SPLIT;
        const char *b = gb__json_string(gb__json_get(j, "behavior"));
        int k = gb__tok_lookup(gb__tok_behavior_names, 5, b);
        if (k < 0)
            return gb__fail(GB_ERR_FORMAT,
                            "%s: pre_tokenizer Split: behavior '%s' is not one of Removed, Isolated, "
                            "MergedWithPrevious, MergedWithNext, Contiguous",
                            ctx, b ? b : "(missing)");
        p->behavior = (gb__tok_split_behavior)k;
        p->invert = gb__tok_bool_or(j, "invert", false);
        p->re = gb__tok_pattern_parse(gb__json_get(j, "pattern"), ctx, "pre_tokenizer Split");
        return p->re ? GB_OK : gb_last_status();
    }
    if (!strcmp(type, "Metaspace")) {
        p->kind = GB__PRE_KIND_METASPACE;
        p->split = gb__tok_bool_or(j, "split", true);
        gb_status st = gb__tok_parse_replacement(j, ctx, "pre_tokenizer Metaspace", p->replacement);
        return st == GB_OK ? gb__tok_parse_scheme(j, ctx, "pre_tokenizer Metaspace", &p->scheme) : st;
    }
    if (!strcmp(type, "Digits")) {
        p->kind = GB__PRE_KIND_DIGITS;
        p->individual_digits = gb__tok_bool_or(j, "individual_digits", false);
        return GB_OK;
    }
    return gb__fail(GB_ERR_UNSUPPORTED,
                    "%s: pre_tokenizer '%s' is not supported (supported: ByteLevel, Split, Metaspace, Digits, "
                    "Sequence)",
                    ctx, type);
}

static void gb__tok_pre_clear(gb__tok_pre *p) {
    for (int i = 0; i < p->nitems; i++) gb__tok_pre_clear(&p->items[i]);
    free(p->items);
    gb__tok_regex_free(p->re);
}

void gb__tok_pre_free(gb__tok_pre *p) {
    if (!p) return;
    gb__tok_pre_clear(p);
    free(p);
}

gb__tok_pre *gb__tok_pre_parse(const gb__json_json *j, const char *ctx) {
    gb__tok_pre *p = gb__calloc(1, sizeof *p, ctx);
    if (p && gb__tok_pre_parse_into(p, j, ctx) != GB_OK) {
        gb__tok_pre_free(p);
        return NULL;
    }
    return p;
}

gb__tok_pre *gb__tok_pre_byte_level(const char *ctx) {
    gb__tok_pre *p = gb__calloc(1, sizeof *p, ctx);
    if (!p) return NULL;
    p->kind = GB__PRE_KIND_BYTE_LEVEL;
    p->use_regex = true;
    if (!(p->re = gb__tok_regex_new(gb__tok_gpt2_pattern, false, ctx))) {
        free(p);
        return NULL;
    }
    return p;
}

/* ---- applying ----------------------------------------------------------- */

/* Spans of s where each character for which pred holds is a match. */
static gb_status gb__tok_char_spans(const char *s, size_t n, bool (*pred)(uint32_t, const void *), const void *ctx,
                                    gb__tok_span **spans) {
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        size_t bad = 0;
        int len = gb__tok_utf8_char((const unsigned char *)s + i, n - i, &bad);
        if (pred(gb__tok_utf8_decode(s + i, len), ctx)) {
            if ((last < i && !GB_ARR_PUT(*spans, ((gb__tok_span){last, i, false}), "tokenizer_encode")) ||
                !GB_ARR_PUT(*spans, ((gb__tok_span){i, i + (size_t)len, true}), "tokenizer_encode"))
                return GB_ERR_ALLOC;
            last = i + (size_t)len;
        }
        i += (size_t)len;
    }
    if (last < n && !GB_ARR_PUT(*spans, ((gb__tok_span){last, n, false}), "tokenizer_encode")) return GB_ERR_ALLOC;
    return GB_OK;
}

static bool gb__tok_pred_numeric(uint32_t cp, const void *ctx) {
    (void)ctx;
    return gb__tok_is_numeric(cp);
}

static bool gb__tok_pred_equal(uint32_t cp, const void *ctx) { return cp == *(const uint32_t *)ctx; }

/* Push the non-empty pieces of s that spans keep after a split. */
static gb_status gb__tok_push_split(gb__tok_strlist *out, const char *s, gb__tok_span *sp, size_t nsp,
                                    gb__tok_split_behavior b, bool first) {
    size_t k = gb__tok_split_spans(sp, nsp, b);
    for (size_t i = 0; i < k; i++)
        if (sp[i].end > sp[i].start &&
            !gb__tok_strlist_push(out, s + sp[i].start, sp[i].end - sp[i].start, first && sp[i].start == 0))
            return GB_ERR_ALLOC;
    return GB_OK;
}

static gb_status gb__tok_pre_one(const gb__tok_pre *p, const char *s, size_t n, bool first, gb__tok_strlist *out,
                             char **tmp, gb__tok_span **sp) {
    GB_ARR_TRUNC(*tmp, 0);
    GB_ARR_TRUNC(*sp, 0);
    switch (p->kind) {
    case GB__PRE_KIND_BYTE_LEVEL: {
        if ((p->add_prefix_space && !(n > 0 && s[0] == ' ') && !gb__tok_bytes_add(tmp, " ", 1)) ||
            !gb__tok_bytes_add(tmp, s, n))
            return GB_ERR_ALLOC;
        const char *t = *tmp;
        size_t tn = arrlenu(*tmp);
        if (p->use_regex) {
            gb_status st = gb__tok_regex_spans(p->re, t, tn, sp);
            if (st != GB_OK) return st;
        } else if (!GB_ARR_PUT(*sp, ((gb__tok_span){0, tn, false}), "tokenizer_encode")) {
            return GB_ERR_ALLOC;
        }
        /* Each piece becomes the characters standing for its bytes. */
        for (size_t i = 0; i < arrlenu(*sp); i++) {
            if ((*sp)[i].end == (*sp)[i].start) continue;
            bool ok = gb__tok_strlist_push(out, NULL, 0, first && (*sp)[i].start == 0);
            for (size_t b = (*sp)[i].start; ok && b < (*sp)[i].end; b++) {
                char buf[4];
                int m = gb__tok_utf8_encode(gb__tok_byte_level_cp((unsigned char)t[b]), buf);
                ok = gb__tok_strlist_extend(out, buf, (size_t)m);
            }
            if (!ok) return GB_ERR_ALLOC;
        }
        return GB_OK;
    }
    case GB__PRE_KIND_SPLIT: {
        gb_status st = gb__tok_regex_spans(p->re, s, n, sp);
        if (st != GB_OK) return st;
        if (p->invert)
            for (size_t i = 0; i < arrlenu(*sp); i++) (*sp)[i].match = !(*sp)[i].match;
        return gb__tok_push_split(out, s, *sp, arrlenu(*sp), p->behavior, first);
    }
    case GB__PRE_KIND_METASPACE: {
        size_t rl = strlen(p->replacement);
        bool starts = n >= 1 && (s[0] == ' ' || (n >= rl && !memcmp(s, p->replacement, rl)));
        bool ok = true;
        if (!starts && (p->scheme == GB__PREPEND_SCHEME_ALWAYS || (p->scheme == GB__PREPEND_SCHEME_FIRST && first)))
            ok = gb__tok_bytes_add(tmp, p->replacement, rl);
        for (size_t i = 0; ok && i < n; i++)
            ok = s[i] == ' ' ? gb__tok_bytes_add(tmp, p->replacement, rl) : gb__tok_bytes_add(tmp, s + i, 1);
        if (!ok) return GB_ERR_ALLOC;
        size_t tn = arrlenu(*tmp);
        if (!p->split) return !tn || gb__tok_strlist_push(out, *tmp, tn, first) ? GB_OK : GB_ERR_ALLOC;
        size_t bad = 0;
        uint32_t cp = gb__tok_utf8_decode(p->replacement, gb__tok_utf8_char((const unsigned char *)p->replacement, rl, &bad));
        if (tn == 0) return GB_OK;
        gb_status st = gb__tok_char_spans(*tmp, tn, gb__tok_pred_equal, &cp, sp);
        return st ? st : gb__tok_push_split(out, *tmp, *sp, arrlenu(*sp), GB__SPLIT_BEHAVIOR_MERGED_WITH_NEXT, first);
    }
    case GB__PRE_KIND_DIGITS: {
        gb_status st = gb__tok_char_spans(s, n, gb__tok_pred_numeric, NULL, sp);
        return st ? st
                  : gb__tok_push_split(out, s, *sp, arrlenu(*sp),
                                       p->individual_digits ? GB__SPLIT_BEHAVIOR_ISOLATED : GB__SPLIT_BEHAVIOR_CONTIGUOUS,
                                       first);
    }
    case GB__PRE_KIND_SEQUENCE: break;
    }
    /* Sequence: each pre-tokenizer cuts the previous one's pieces. */
    gb__tok_strlist a = {0}, b = {0};
    gb_status st = gb__tok_strlist_push(&a, s, n, first) ? GB_OK : GB_ERR_ALLOC;
    for (int i = 0; st == GB_OK && i < p->nitems; i++) {
        st = gb__tok_pre_apply(&p->items[i], &a, &b);
        gb__tok_strlist t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; st == GB_OK && i < gb__tok_strlist_len(&a); i++)
        if (!gb__tok_strlist_push(out, gb__tok_strlist_str(&a, i), a.v[i].len, a.v[i].first)) st = GB_ERR_ALLOC;
    gb__tok_strlist_free(&a);
    gb__tok_strlist_free(&b);
    return st;
}

gb_status gb__tok_pre_apply(const gb__tok_pre *p, const gb__tok_strlist *in, gb__tok_strlist *out) {
    GB_ARR_TRUNC(out->arena, 0);
    GB_ARR_TRUNC(out->v, 0);
    char *tmp = NULL;
    gb__tok_span *sp = NULL;
    gb_status st = GB_OK;
    for (size_t i = 0; st == GB_OK && i < gb__tok_strlist_len(in); i++)
        if (in->v[i].len) st = gb__tok_pre_one(p, gb__tok_strlist_str(in, i), in->v[i].len, in->v[i].first, out, &tmp, &sp);
    arrfree(tmp);
    arrfree(sp);
    return st;
}
