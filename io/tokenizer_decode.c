/* Tokenizer decoders (token strings back to text) and post-processors (the
 * special tokens wrapped around an encoding), as Hugging Face's. */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

gb_status gb__tok_parse_replacement(const gb__json_json *j, const char *ctx, const char *what, char out[5]);
gb_status gb__tok_parse_scheme(const gb__json_json *j, const char *ctx, const char *what, gb__tok_prepend_scheme *out);

/* ---- decoders: parsing -------------------------------------------------- */

static gb_status gb__tok_dec_parse_into(gb__tok_dec *d, const gb__json_json *j, const char *ctx) {
    const char *type = gb__json_string(gb__json_get(j, "type"));
    if (!type) return gb__fail(GB_ERR_FORMAT, "%s: decoder has no \"type\"", ctx);
    if (!strcmp(type, "Sequence")) {
        const gb__json_json *items = gb__json_get(j, "decoders");
        if (!gb__json_is_array(items)) return gb__fail(GB_ERR_FORMAT, "%s: decoder Sequence has no \"decoders\" array", ctx);
        d->kind = GB__DEC_KIND_SEQUENCE;
        d->items = gb__calloc((size_t)gb__json_size(items), sizeof *d->items, ctx);
        if (!d->items) return GB_ERR_ALLOC;
        for (int i = 0; i < gb__json_size(items); i++) {
            d->nitems = i + 1;
            gb_status st = gb__tok_dec_parse_into(&d->items[i], gb__json_at(items, i), ctx);
            if (st != GB_OK) return st;
        }
        return GB_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        d->kind = GB__DEC_KIND_BYTE_LEVEL;
        return GB_OK;
    }
    if (!strcmp(type, "ByteFallback")) {
        d->kind = GB__DEC_KIND_BYTE_FALLBACK;
        return GB_OK;
    }
    if (!strcmp(type, "Fuse")) {
        d->kind = GB__DEC_KIND_FUSE;
        return GB_OK;
    }
    if (!strcmp(type, "Replace")) {
        d->kind = GB__DEC_KIND_REPLACE;
        const char *s = gb__json_string(gb__json_get(j, "content"));
        if (!s) return gb__fail(GB_ERR_FORMAT, "%s: decoder Replace has no \"content\" string", ctx);
        d->text = strdup(s);
        d->re = gb__tok_pattern_parse(gb__json_get(j, "pattern"), ctx, "decoder Replace");
        return d->re ? GB_OK : gb_last_status();
    }
    if (!strcmp(type, "Strip")) {
        d->kind = GB__DEC_KIND_STRIP;
        const char *c = gb__json_string(gb__json_get(j, "content"));
        long long start, stop;
        size_t bad = 0;
        if (!c || !c[0] || (size_t)gb__tok_utf8_char((const unsigned char *)c, strlen(c), &bad) != strlen(c) ||
            !gb__json_int(gb__json_get(j, "start"), &start) || !gb__json_int(gb__json_get(j, "stop"), &stop) ||
            start < 0 || stop < 0 || start > 1 << 20 || stop > 1 << 20)
            return gb__fail(GB_ERR_FORMAT,
                            "%s: decoder Strip needs \"content\" (one character) and \"start\", \"stop\" (counts)", ctx);
        d->ch = gb__tok_utf8_decode(c, (int)strlen(c));
        d->start = (int)start;
        d->stop = (int)stop;
        return GB_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        d->kind = GB__DEC_KIND_METASPACE;
        char rep[5];
        gb_status st = gb__tok_parse_replacement(j, ctx, "decoder Metaspace", rep);
        if (st != GB_OK) return st;
        d->ch = gb__tok_utf8_decode(rep, (int)strlen(rep));
        return gb__tok_parse_scheme(j, ctx, "decoder Metaspace", &d->scheme);
    }
    return gb__fail(GB_ERR_UNSUPPORTED,
                    "%s: decoder '%s' is not supported (supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, "
                    "Metaspace, Sequence)",
                    ctx, type);
}

static void gb__tok_dec_clear(gb__tok_dec *d) {
    for (int i = 0; i < d->nitems; i++) gb__tok_dec_clear(&d->items[i]);
    free(d->items);
    free(d->text);
    gb__tok_regex_free(d->re);
}

void gb__tok_dec_free(gb__tok_dec *d) {
    if (!d) return;
    gb__tok_dec_clear(d);
    free(d);
}

gb__tok_dec *gb__tok_dec_parse(const gb__json_json *j, const char *ctx) {
    gb__tok_dec *d = gb__calloc(1, sizeof *d, ctx);
    if (d && gb__tok_dec_parse_into(d, j, ctx) != GB_OK) {
        gb__tok_dec_free(d);
        return NULL;
    }
    return d;
}

gb__tok_dec *gb__tok_dec_byte_level(void) {
    gb__tok_dec *d = gb__calloc(1, sizeof *d, "tokenizer_open");
    if (d) d->kind = GB__DEC_KIND_BYTE_LEVEL;
    return d;
}

/* ---- decoders: applying ------------------------------------------------- */

/* The byte a ByteFallback token "<0xAB>" stands for, or -1. Like Rust's
 * u8::from_str_radix on the two characters, a leading '+' is accepted. */
static int gb__tok_fallback_byte(const char *t, size_t n) {
    if (n != 6 || memcmp(t, "<0x", 3) || t[5] != '>') return -1;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = t[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) {
            if (i == 3 && c == '+') continue;
            return -1;
        }
        v = v * 16 + d;
        digits++;
    }
    return digits ? v : -1;
}

static bool gb__tok_flush_bytes(gb__tok_strlist *out, char **bytes) {
    size_t n = arrlenu(*bytes), pos = 0;
    if (!n) return true;
    bool ok = true;
    while (pos < n) {
        size_t bad = 0;
        int len = gb__tok_utf8_char((const unsigned char *)*bytes + pos, n - pos, &bad);
        if (!len) {
            ok = false;
            break;
        }
        pos += (size_t)len;
    }
    if (ok) {
        ok = gb__tok_strlist_push(out, *bytes, n, false);
    } else { /* one U+FFFD per byte when the bytes are not valid UTF-8 together */
        ok = true;
        for (size_t i = 0; ok && i < n; i++) ok = gb__tok_strlist_push(out, "\xef\xbf\xbd", 3, false);
    }
    GB_ARR_TRUNC(*bytes, 0);
    return ok;
}

static gb_status gb__tok_dec_one(const gb__tok_dec *d, const gb__tok_strlist *in, gb__tok_strlist *out) {
    size_t n = gb__tok_strlist_len(in);
    switch (d->kind) {
    case GB__DEC_KIND_BYTE_LEVEL: {
        char *bytes = NULL, *text = NULL;
        bool ok = true;
        for (size_t t = 0; ok && t < n; t++) {
            const char *s = gb__tok_strlist_str(in, t);
            size_t len = in->v[t].len, mark = arrlenu(bytes);
            bool all = true;
            for (size_t i = 0; ok && all && i < len;) {
                int cl;
                int b = gb__tok_byte_level_byte(gb__tok_utf8_next(s, len, &i, &cl));
                if (b < 0) all = false;
                else ok = GB_ARR_PUT(bytes, (char)b, "tokenizer_decode");
            }
            if (ok && !all) { /* a token with a character outside the map passes through as it is */
                GB_ARR_TRUNC(bytes, mark);
                ok = gb__tok_bytes_add(&bytes, s, len);
            }
        }
        ok = ok && gb__tok_utf8_lossy(&text, bytes, arrlenu(bytes)) && gb__tok_strlist_push(out, text, arrlenu(text), false);
        arrfree(bytes);
        arrfree(text);
        return ok ? GB_OK : GB_ERR_ALLOC;
    }
    case GB__DEC_KIND_REPLACE: {
        gb__tok_span *sp = NULL;
        gb_status st = GB_OK;
        for (size_t t = 0; st == GB_OK && t < n; t++) {
            GB_ARR_TRUNC(sp, 0);
            const char *s = gb__tok_strlist_str(in, t);
            st = gb__tok_regex_spans(d->re, s, in->v[t].len, &sp);
            if (st == GB_OK && !gb__tok_strlist_push(out, NULL, 0, false)) st = GB_ERR_ALLOC;
            for (size_t i = 0; st == GB_OK && i < arrlenu(sp); i++) {
                bool ok = sp[i].match ? gb__tok_strlist_extend(out, d->text, strlen(d->text))
                                      : gb__tok_strlist_extend(out, s + sp[i].start, sp[i].end - sp[i].start);
                if (!ok) st = GB_ERR_ALLOC;
            }
        }
        arrfree(sp);
        return st;
    }
    case GB__DEC_KIND_BYTE_FALLBACK: {
        char *bytes = NULL;
        bool ok = true;
        for (size_t t = 0; ok && t < n; t++) {
            int b = gb__tok_fallback_byte(gb__tok_strlist_str(in, t), in->v[t].len);
            if (b >= 0) ok = GB_ARR_PUT(bytes, (char)b, "tokenizer_decode");
            else ok = gb__tok_flush_bytes(out, &bytes) &&
                      gb__tok_strlist_push(out, gb__tok_strlist_str(in, t), in->v[t].len, false);
        }
        ok = ok && gb__tok_flush_bytes(out, &bytes);
        arrfree(bytes);
        return ok ? GB_OK : GB_ERR_ALLOC;
    }
    case GB__DEC_KIND_FUSE: {
        bool ok = gb__tok_strlist_push(out, NULL, 0, false);
        for (size_t t = 0; ok && t < n; t++) ok = gb__tok_strlist_extend(out, gb__tok_strlist_str(in, t), in->v[t].len);
        return ok ? GB_OK : GB_ERR_ALLOC;
    }
    case GB__DEC_KIND_STRIP:
        for (size_t t = 0; t < n; t++) {
            const char *s = gb__tok_strlist_str(in, t);
            size_t len = in->v[t].len, a = 0, b = len;
            /* up to start leading and stop trailing copies of the character */
            for (int k = 0; k < d->start && a < len; k++) {
                size_t i = a;
                int cl;
                if (gb__tok_utf8_next(s, len, &i, &cl) != d->ch) break;
                a = i;
            }
            for (int k = 0; k < d->stop && b > a; k++) {
                size_t c = b - 1;
                while (c > a && ((unsigned char)s[c] & 0xc0) == 0x80) c--;
                if (gb__tok_utf8_decode(s + c, (int)(b - c)) != d->ch) break;
                b = c;
            }
            if (!gb__tok_strlist_push(out, s + a, b - a, false)) return GB_ERR_ALLOC;
        }
        return GB_OK;
    case GB__DEC_KIND_METASPACE:
        for (size_t t = 0; t < n; t++) {
            const char *s = gb__tok_strlist_str(in, t);
            bool ok = gb__tok_strlist_push(out, NULL, 0, false);
            for (size_t i = 0; ok && i < in->v[t].len;) {
                int cl;
                size_t at = i;
                if (gb__tok_utf8_next(s, in->v[t].len, &i, &cl) != d->ch) ok = gb__tok_strlist_extend(out, s + at, (size_t)cl);
                else if (t > 0 || d->scheme == GB__PREPEND_SCHEME_NEVER) ok = gb__tok_strlist_extend(out, " ", 1);
            }
            if (!ok) return GB_ERR_ALLOC;
        }
        return GB_OK;
    case GB__DEC_KIND_SEQUENCE: break;
    }
    gb__tok_strlist a = {0}, b = {0};
    gb_status st = GB_OK;
    for (size_t t = 0; st == GB_OK && t < n; t++)
        if (!gb__tok_strlist_push(&a, gb__tok_strlist_str(in, t), in->v[t].len, false)) st = GB_ERR_ALLOC;
    for (int i = 0; st == GB_OK && i < d->nitems; i++) {
        st = gb__tok_dec_apply(&d->items[i], &a, &b);
        gb__tok_strlist t = a;
        a = b;
        b = t;
    }
    for (size_t t = 0; st == GB_OK && t < gb__tok_strlist_len(&a); t++)
        if (!gb__tok_strlist_push(out, gb__tok_strlist_str(&a, t), a.v[t].len, false)) st = GB_ERR_ALLOC;
    gb__tok_strlist_free(&a);
    gb__tok_strlist_free(&b);
    return st;
}

gb_status gb__tok_dec_apply(const gb__tok_dec *d, const gb__tok_strlist *in, gb__tok_strlist *out) {
    GB_ARR_TRUNC(out->arena, 0);
    GB_ARR_TRUNC(out->v, 0);
    return gb__tok_dec_one(d, in, out);
}

/* ---- post-processors ---------------------------------------------------- */

/* Bert/Roberta's ["[CLS]", 101] pairs. */
static gb_status gb__tok_token_pair(const gb__json_json *j, const char *key, const char *ctx, const char *type, int32_t *id) {
    long long v;
    const gb__json_json *p = gb__json_get(j, key);
    if (!gb__json_is_array(p) || gb__json_size(p) != 2 || !gb__json_int(gb__json_at(p, 1), &v) || v < 0 ||
        v > INT32_MAX)
        return gb__fail(GB_ERR_FORMAT, "%s: post_processor %s: \"%s\" must be [token, id]", ctx, type, key);
    *id = (int32_t)v;
    return GB_OK;
}

static gb_status gb__tok_template_parse(gb__tok_post *p, const gb__json_json *j, const char *ctx) {
    const gb__json_json *single = gb__json_get(j, "single"), *specials = gb__json_get(j, "special_tokens");
    if (!gb__json_is_array(single))
        return gb__fail(GB_ERR_FORMAT, "%s: post_processor TemplateProcessing has no \"single\" template", ctx);
    for (int i = 0; i < gb__json_size(single); i++) {
        const gb__json_json *piece = gb__json_at(single, i), *sp = gb__json_get(piece, "SpecialToken"),
                       *seq = gb__json_get(piece, "Sequence");
        if (seq) {
            const char *which = gb__json_string(gb__json_get(seq, "id"));
            if (which && !strcmp(which, "A") && !GB_ARR_PUT(p->tmpl, GB__POST_SEQ, ctx)) return GB_ERR_ALLOC;
            continue; /* $B has no place in a single sequence */
        }
        const char *name = gb__json_string(gb__json_get(sp, "id"));
        const gb__json_json *ids = gb__json_get(gb__json_get(specials, name ? name : ""), "ids");
        if (!name || !gb__json_is_array(ids))
            return gb__fail(GB_ERR_FORMAT,
                            "%s: post_processor TemplateProcessing: piece %d names special token '%s' with no ids "
                            "in \"special_tokens\"",
                            ctx, i, name ? name : "(missing)");
        for (int k = 0; k < gb__json_size(ids); k++) {
            long long v;
            if (!gb__json_int(gb__json_at(ids, k), &v) || v < 0 || v > INT32_MAX)
                return gb__fail(GB_ERR_FORMAT, "%s: post_processor TemplateProcessing: bad id for '%s'", ctx, name);
            if (!GB_ARR_PUT(p->tmpl, (int32_t)v, ctx)) return GB_ERR_ALLOC;
        }
    }
    return GB_OK;
}

static gb_status gb__tok_post_parse_into(gb__tok_post *p, const gb__json_json *j, const char *ctx) {
    const char *type = gb__json_string(gb__json_get(j, "type"));
    if (!type) return gb__fail(GB_ERR_FORMAT, "%s: post_processor has no \"type\"", ctx);
    if (!strcmp(type, "Sequence")) {
        const gb__json_json *items = gb__json_get(j, "processors");
        if (!gb__json_is_array(items))
            return gb__fail(GB_ERR_FORMAT, "%s: post_processor Sequence has no \"processors\" array", ctx);
        p->kind = GB__POST_KIND_SEQUENCE;
        p->items = gb__calloc((size_t)gb__json_size(items), sizeof *p->items, ctx);
        if (!p->items) return GB_ERR_ALLOC;
        for (int i = 0; i < gb__json_size(items); i++) {
            p->nitems = i + 1;
            gb_status st = gb__tok_post_parse_into(&p->items[i], gb__json_at(items, i), ctx);
            if (st != GB_OK) return st;
        }
        return GB_OK;
    }
    if (!strcmp(type, "ByteLevel")) { /* only moves offsets, which glassbox does not report */
        p->kind = GB__POST_KIND_BYTE_LEVEL;
        return GB_OK;
    }
    p->kind = GB__POST_KIND_TEMPLATE;
    if (!strcmp(type, "TemplateProcessing")) return gb__tok_template_parse(p, j, ctx);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        int32_t cls, sep;
        gb_status st = gb__tok_token_pair(j, "cls", ctx, type, &cls);
        if (st == GB_OK) st = gb__tok_token_pair(j, "sep", ctx, type, &sep);
        if (st != GB_OK) return st;
        int32_t *t = GB_ARR_ADDN(p->tmpl, 3, ctx);
        if (!t) return GB_ERR_ALLOC;
        t[0] = cls, t[1] = GB__POST_SEQ, t[2] = sep;
        return GB_OK;
    }
    return gb__fail(GB_ERR_UNSUPPORTED,
                    "%s: post_processor '%s' is not supported (supported: TemplateProcessing, ByteLevel, "
                    "BertProcessing, RobertaProcessing, Sequence)",
                    ctx, type);
}

static void gb__tok_post_clear(gb__tok_post *p) {
    for (int i = 0; i < p->nitems; i++) gb__tok_post_clear(&p->items[i]);
    free(p->items);
    arrfree(p->tmpl);
}

void gb__tok_post_free(gb__tok_post *p) {
    if (!p) return;
    gb__tok_post_clear(p);
    free(p);
}

gb__tok_post *gb__tok_post_parse(const gb__json_json *j, const char *ctx) {
    gb__tok_post *p = gb__calloc(1, sizeof *p, ctx);
    if (p && gb__tok_post_parse_into(p, j, ctx) != GB_OK) {
        gb__tok_post_free(p);
        return NULL;
    }
    return p;
}

gb_status gb__tok_post_apply(const gb__tok_post *p, int32_t **ids) {
    if (p->kind == GB__POST_KIND_SEQUENCE) {
        for (int i = 0; i < p->nitems; i++)
            if (gb__tok_post_apply(&p->items[i], ids) != GB_OK) return GB_ERR_ALLOC;
        return GB_OK;
    }
    if (p->kind != GB__POST_KIND_TEMPLATE) return GB_OK;
    int32_t *out = NULL, *at;
    for (size_t i = 0; i < arrlenu(p->tmpl); i++) {
        bool seq = p->tmpl[i] == GB__POST_SEQ;
        if (!(at = GB_ARR_ADDN(out, seq ? arrlenu(*ids) : 1, "tokenizer_encode"))) {
            arrfree(out);
            return GB_ERR_ALLOC;
        }
        if (!seq) *at = p->tmpl[i];
        else if (arrlenu(*ids)) memcpy(at, *ids, arrlenu(*ids) * sizeof **ids);
    }
    arrfree(*ids);
    *ids = out;
    return GB_OK;
}

int32_t gb__tok_post_first_special(const gb__tok_post *p) {
    if (!p) return -1;
    if (p->kind == GB__POST_KIND_SEQUENCE) {
        for (int i = 0; i < p->nitems; i++) {
            int32_t id = gb__tok_post_first_special(&p->items[i]);
            if (id >= 0) return id;
        }
        return -1;
    }
    return arrlenu(p->tmpl) > 1 && p->tmpl[0] != GB__POST_SEQ ? p->tmpl[0] : -1;
}
