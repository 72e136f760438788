/* Tokenizer text handling: UTF-8, string lists, regular expressions (PCRE2)
 * and the normalizers (utf8proc for the Unicode forms). */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stb/stb_ds.h>
#include <utf8proc.h>
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

bool gb__tok_bytes_add(char **out, const void *s, size_t n) {
    char *at = GB_ARR_ADDN(*out, n, "tokenizer");
    if (at && n) memcpy(at, s, n);
    return at != NULL;
}

/* ---- UTF-8 -------------------------------------------------------------- */

int gb__tok_utf8_char(const unsigned char *s, size_t n, size_t *bad) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    /* Unicode Table 3-7: the lead byte fixes the length and the range of the
     * second byte; later bytes are 80..BF. */
    int len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) len = 3, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec) len = 3;
    else if (c == 0xed) len = 3, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef) len = 3;
    else if (c == 0xf0) len = 4, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) len = 4, hi = 0x8f;
    else {
        *bad = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < (size_t)len; i++) {
        if (i >= n) break;
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xbf;
        if (s[i] < lo_i || s[i] > hi_i) break;
    }
    if (i == (size_t)len) return len;
    *bad = i;
    return 0;
}

uint32_t gb__tok_utf8_decode(const char *p, int len) {
    const unsigned char *s = (const unsigned char *)p;
    switch (len) {
    case 1: return s[0];
    case 2: return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
    case 3: return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    default:
        return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 |
               (s[3] & 0x3f);
    }
}

uint32_t gb__tok_utf8_next(const char *s, size_t n, size_t *i, int *len) {
    size_t bad = 0;
    *len = gb__tok_utf8_char((const unsigned char *)s + *i, n - *i, &bad);
    if (!*len) { /* not for well-formed text; step one byte rather than stall */
        *len = 1;
        *i += 1;
        return 0xfffd;
    }
    uint32_t cp = gb__tok_utf8_decode(s + *i, *len);
    *i += (size_t)*len;
    return cp;
}

int gb__tok_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

bool gb__tok_utf8_lossy(char **out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0; /* run: start of well-formed bytes not yet copied */
    while (i < n) {
        size_t bad = 0;
        int len = gb__tok_utf8_char(u + i, n - i, &bad);
        if (len) {
            i += (size_t)len;
            continue;
        }
        if (!gb__tok_bytes_add(out, s + run, i - run) || !gb__tok_bytes_add(out, "\xef\xbf\xbd", 3)) return false;
        i += bad;
        run = i;
    }
    return run == n || gb__tok_bytes_add(out, s + run, n - run); /* s is NULL for no bytes: no offset on it */
}

bool gb__tok_is_whitespace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

bool gb__tr_is_word(uint32_t c) {
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        /* Join controls, and the symbols Unicode also calls Alphabetic
         * (circled and squared Latin letters). */
        return c == 0x200c || c == 0x200d || (c >= 0x24b6 && c <= 0x24e9) || (c >= 0x1f130 && c <= 0x1f149) ||
               (c >= 0x1f150 && c <= 0x1f169) || (c >= 0x1f170 && c <= 0x1f189);
    }
}

bool gb__tok_is_numeric(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* ---- string lists ------------------------------------------------------- */

bool gb__tok_strlist_push(gb__tok_strlist *l, const char *s, size_t n, bool first) {
    gb__tok_piece p = {arrlenu(l->arena), n, first};
    return gb__tok_bytes_add(&l->arena, s, n) && GB_ARR_PUT(l->v, p, "tokenizer");
}

bool gb__tok_strlist_extend(gb__tok_strlist *l, const char *s, size_t n) {
    if (!gb__tok_bytes_add(&l->arena, s, n)) return false;
    arrlast(l->v).len += n;
    return true;
}

size_t gb__tok_strlist_len(const gb__tok_strlist *l) { return arrlenu(l->v); }

void gb__tok_strlist_free(gb__tok_strlist *l) {
    arrfree(l->arena);
    arrfree(l->v);
}

/* ---- regular expressions ------------------------------------------------ */

struct gb__tok_regex {
    pcre2_code *code;
    pcre2_match_data *md;
};

/* Oniguruma's \s is Unicode White_Space; PCRE2's (with UCP) adds U+180E. */
#define GB__WS "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static bool gb__tok_puts(char **out, const char *s) { return gb__tok_bytes_add(out, s, strlen(s)); }

/* NULL when out of memory. */
static char *gb__tok_regex_rewrite(const char *p) {
    char *out = NULL;
    bool in_class = false, ok = true;
    for (size_t i = 0; ok && p[i]; i++) {
        char c = p[i];
        if (c == '\\' && p[i + 1]) {
            char e = p[++i];
            if (e == 's') ok = gb__tok_puts(&out, in_class ? GB__WS : "[" GB__WS "]");
            else if (e == 'S' && !in_class) ok = gb__tok_puts(&out, "[^" GB__WS "]");
            else ok = gb__tok_bytes_add(&out, (char[2]){c, e}, 2);
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            size_t n = 1 + (p[i + 1] == '^');
            n += p[i + n] == ']'; /* a leading ] is literal */
            ok = gb__tok_bytes_add(&out, p + i, n);
            i += n - 1;
            continue;
        }
        if (in_class && c == '[' && p[i + 1] == ':') { /* POSIX [:name:] */
            const char *end = strstr(p + i + 2, ":]");
            if (end) {
                size_t n = (size_t)(end + 2 - (p + i));
                ok = gb__tok_bytes_add(&out, p + i, n);
                i += n - 1;
                continue;
            }
        }
        if (in_class && c == ']') in_class = false;
        ok = GB_ARR_PUT(out, c, "tokenizer");
    }
    if (ok && GB_ARR_PUT(out, 0, "tokenizer")) return out;
    arrfree(out);
    return NULL;
}

gb__tok_regex *gb__tok_regex_new(const char *pattern, bool literal, const char *ctx) {
    char *src = literal ? NULL : gb__tok_regex_rewrite(pattern);
    if (!literal && !src) return gb__fail_null(gb_last_status(), "%s: regex '%s': %s", ctx, pattern, gb_last_error());
    const char *pat = literal ? pattern : src;
    int err = 0;
    PCRE2_SIZE off = 0;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP | PCRE2_MULTILINE);
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
    arrfree(src);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return gb__fail_null(GB_ERR_FORMAT, "%s: regex '%s' does not compile: %s", ctx, pattern, (char *)msg);
    }
    /* JIT code reads a little past the subject in wide loads, which valgrind
     * reports as uninitialised reads: under valgrind, use the interpreter
     * (same matches). Without JIT support pcre2_match interprets anyway. */
    if (!RUNNING_ON_VALGRIND) pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
    gb__tok_regex *re = gb__calloc(1, sizeof *re, ctx);
    pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(code, NULL) : NULL;
    if (!md) {
        pcre2_code_free(code);
        free(re);
        return re ? gb__fail_null(GB_ERR_ALLOC, "%s: out of memory for a regex", ctx) : NULL;
    }
    re->code = code;
    re->md = md;
    return re;
}

void gb__tok_regex_free(gb__tok_regex *re) {
    if (!re) return;
    pcre2_match_data_free(re->md);
    pcre2_code_free(re->code);
    free(re);
}

gb_status gb__tok_regex_spans(const gb__tok_regex *re, const char *s, size_t n, gb__tok_span **spans) {
    if (n == 0) return GB_ARR_PUT(*spans, ((gb__tok_span){0, 0, false}), "tokenizer_encode") ? GB_OK : GB_ERR_ALLOC;
    size_t pos = 0, prev = 0, last_match_end = SIZE_MAX;
    while (pos <= n) {
        int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, re->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return gb__fail(GB_ERR_ARG, "tokenizer_encode: regex match failed at byte %zu: %s", pos, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me && last_match_end == me) { /* no empty match right after a match */
            size_t bad = 0;
            int len = pos < n ? gb__tok_utf8_char((const unsigned char *)s + pos, n - pos, &bad) : 1;
            pos += len ? (size_t)len : 1;
            continue;
        }
        if ((prev != ms && !GB_ARR_PUT(*spans, ((gb__tok_span){prev, ms, false}), "tokenizer_encode")) ||
            !GB_ARR_PUT(*spans, ((gb__tok_span){ms, me, true}), "tokenizer_encode"))
            return GB_ERR_ALLOC;
        prev = pos = last_match_end = me;
    }
    if (prev != n && !GB_ARR_PUT(*spans, ((gb__tok_span){prev, n, false}), "tokenizer_encode")) return GB_ERR_ALLOC;
    return GB_OK;
}

size_t gb__tok_split_spans(gb__tok_span *sp, size_t n, gb__tok_split_behavior b) {
    size_t k = 0;
    bool prev_match = false;
    switch (b) {
    case GB__SPLIT_BEHAVIOR_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!sp[i].match) sp[k++] = sp[i];
        break;
    case GB__SPLIT_BEHAVIOR_ISOLATED:
        k = n;
        break;
    case GB__SPLIT_BEHAVIOR_MERGED_WITH_PREVIOUS: /* a match joins the piece before it */
        for (size_t i = 0; i < n; i++) {
            if (sp[i].match && !prev_match && k > 0) sp[k - 1].end = sp[i].end;
            else sp[k++] = sp[i];
            prev_match = sp[i].match;
        }
        break;
    case GB__SPLIT_BEHAVIOR_MERGED_WITH_NEXT: { /* a match joins the piece after it: walk backwards */
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            if (sp[i].match && !prev_match && w < n) sp[w].start = sp[i].start;
            else sp[--w] = sp[i];
            prev_match = sp[i].match;
        }
        memmove(sp, sp + w, (n - w) * sizeof *sp);
        k = n - w;
        break;
    }
    case GB__SPLIT_BEHAVIOR_CONTIGUOUS: /* runs of equal flags join */
        for (size_t i = 0; i < n; i++) {
            if (k > 0 && sp[i].match == prev_match) sp[k - 1].end = sp[i].end;
            else sp[k++] = sp[i];
            prev_match = sp[i].match;
        }
        break;
    }
    for (size_t i = 0; i < k; i++) sp[i].match = false;
    return k;
}

/* ---- normalizers -------------------------------------------------------- */

static const struct {
    const char *name;
    gb__tok_norm_kind kind;
} gb__tok_norm_names[] = {
    {"Sequence", GB__NORM_KIND_SEQUENCE}, {"NFC", GB__NORM_KIND_NFC},         {"NFD", GB__NORM_KIND_NFD},
    {"NFKC", GB__NORM_KIND_NFKC},         {"NFKD", GB__NORM_KIND_NFKD},       {"Prepend", GB__NORM_KIND_PREPEND},
    {"Replace", GB__NORM_KIND_REPLACE},   {"Lowercase", GB__NORM_KIND_LOWERCASE}, {"Strip", GB__NORM_KIND_STRIP},
};

gb__tok_regex *gb__tok_pattern_parse(const gb__json_json *j, const char *ctx, const char *what) {
    const char *lit = gb__json_string(gb__json_get(j, "String"));
    const char *rx = gb__json_string(gb__json_get(j, "Regex"));
    if (!lit && !rx)
        return gb__fail_null(GB_ERR_FORMAT, "%s: %s: pattern must be {\"String\": ...} or {\"Regex\": ...}", ctx, what);
    return gb__tok_regex_new(lit ? lit : rx, lit != NULL, ctx);
}

static gb_status gb__tok_norm_parse_into(gb__tr_norm *n, const gb__json_json *j, const char *ctx) {
    const char *type = gb__json_string(gb__json_get(j, "type"));
    if (!type) return gb__fail(GB_ERR_FORMAT, "%s: normalizer has no \"type\"", ctx);
    size_t k = 0, nk = sizeof gb__tok_norm_names / sizeof gb__tok_norm_names[0];
    while (k < nk && strcmp(gb__tok_norm_names[k].name, type)) k++;
    if (k == nk)
        return gb__fail(GB_ERR_UNSUPPORTED,
                        "%s: normalizer '%s' is not supported (supported: Sequence, NFC, NFD, NFKC, NFKD, Prepend, "
                        "Replace, Lowercase, Strip)",
                        ctx, type);
    n->kind = gb__tok_norm_names[k].kind;
    switch (n->kind) {
    case GB__NORM_KIND_SEQUENCE: {
        const gb__json_json *items = gb__json_get(j, "normalizers");
        if (!gb__json_is_array(items)) return gb__fail(GB_ERR_FORMAT, "%s: normalizer Sequence has no \"normalizers\" array", ctx);
        n->nitems = gb__json_size(items);
        n->items = gb__calloc((size_t)n->nitems, sizeof *n->items, ctx);
        if (!n->items) return GB_ERR_ALLOC;
        for (int i = 0; i < n->nitems; i++) {
            gb_status st = gb__tok_norm_parse_into(&n->items[i], gb__json_at(items, i), ctx);
            if (st != GB_OK) {
                n->nitems = i + 1; /* so that free sees what was made */
                return st;
            }
        }
        return GB_OK;
    }
    case GB__NORM_KIND_PREPEND: {
        const char *s = gb__json_string(gb__json_get(j, "prepend"));
        if (!s) return gb__fail(GB_ERR_FORMAT, "%s: normalizer Prepend has no \"prepend\" string", ctx);
        n->text = strdup(s);
        return GB_OK;
    }
    case GB__NORM_KIND_REPLACE: {
        const char *s = gb__json_string(gb__json_get(j, "content"));
        if (!s) return gb__fail(GB_ERR_FORMAT, "%s: normalizer Replace has no \"content\" string", ctx);
        n->text = strdup(s);
        n->re = gb__tok_pattern_parse(gb__json_get(j, "pattern"), ctx, "normalizer Replace");
        return n->re ? GB_OK : gb_last_status();
    }
    case GB__NORM_KIND_STRIP:
        n->left = n->right = true;
        gb__json_bool(gb__json_get(j, "strip_left"), &n->left);
        gb__json_bool(gb__json_get(j, "strip_right"), &n->right);
        return GB_OK;
    default:
        return GB_OK;
    }
}

static void gb__tok_norm_clear(gb__tr_norm *n) {
    for (int i = 0; i < n->nitems; i++) gb__tok_norm_clear(&n->items[i]);
    free(n->items);
    free(n->text);
    gb__tok_regex_free(n->re);
}

void gb__tok_norm_free(gb__tr_norm *n) {
    if (!n) return;
    gb__tok_norm_clear(n);
    free(n);
}

gb__tr_norm *gb__tok_norm_parse(const gb__json_json *j, const char *ctx) {
    gb__tr_norm *n = gb__calloc(1, sizeof *n, ctx);
    if (!n) return NULL;
    if (gb__tok_norm_parse_into(n, j, ctx) != GB_OK) {
        gb__tok_norm_free(n);
        return NULL;
    }
    return n;
}

/* Replace every match of re in s by text, into *out. */
static gb_status gb__tok_replace(const gb__tok_regex *re, const char *text, const char *s, size_t n, char **out) {
    gb__tok_span *sp = NULL;
    gb_status st = gb__tok_regex_spans(re, s, n, &sp);
    for (size_t i = 0; st == GB_OK && i < arrlenu(sp); i++) {
        const char *src = sp[i].match ? text : s + sp[i].start;
        size_t len = sp[i].match ? strlen(text) : sp[i].end - sp[i].start;
        if (!gb__tok_bytes_add(out, src, len)) st = GB_ERR_ALLOC;
    }
    arrfree(sp);
    return st;
}

static gb_status gb__tok_unicode_map(const char *s, size_t n, int opts, char **out) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                        (utf8proc_option_t)(opts | UTF8PROC_STABLE));
    if (len < 0) return gb__fail(GB_ERR_ARG, "tokenizer_encode: normalization failed: %s", utf8proc_errmsg(len));
    bool ok = gb__tok_bytes_add(out, dst, (size_t)len);
    free(dst);
    return ok ? GB_OK : GB_ERR_ALLOC;
}

static gb_status gb__tok_norm_one(const gb__tr_norm *nm, const char *s, size_t n, char **out) {
    switch (nm->kind) {
    case GB__NORM_KIND_NFC: return gb__tok_unicode_map(s, n, UTF8PROC_COMPOSE, out);
    case GB__NORM_KIND_NFD: return gb__tok_unicode_map(s, n, UTF8PROC_DECOMPOSE, out);
    case GB__NORM_KIND_NFKC: return gb__tok_unicode_map(s, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case GB__NORM_KIND_NFKD: return gb__tok_unicode_map(s, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case GB__NORM_KIND_PREPEND:
        return (!n || gb__tok_puts(out, nm->text)) && gb__tok_bytes_add(out, s, n) ? GB_OK : GB_ERR_ALLOC;
    case GB__NORM_KIND_REPLACE: return gb__tok_replace(nm->re, nm->text, s, n, out);
    case GB__NORM_KIND_LOWERCASE:
        for (size_t i = 0; i < n;) {
            size_t bad = 0;
            int len = gb__tok_utf8_char((const unsigned char *)s + i, n - i, &bad);
            uint32_t cp = gb__tok_utf8_decode(s + i, len);
            char buf[4];
            bool ok;
            if (cp == 0x130) { /* İ lowercases to two characters (Rust's to_lowercase) */
                ok = gb__tok_puts(out, "i\xcc\x87");
            } else {
                int m = gb__tok_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), buf);
                ok = gb__tok_bytes_add(out, buf, (size_t)m);
            }
            if (!ok) return GB_ERR_ALLOC;
            i += (size_t)len;
        }
        return GB_OK;
    case GB__NORM_KIND_STRIP: {
        size_t a = 0, b = n;
        while (nm->left && a < b) {
            size_t bad = 0;
            int len = gb__tok_utf8_char((const unsigned char *)s + a, b - a, &bad);
            if (!gb__tok_is_whitespace(gb__tok_utf8_decode(s + a, len))) break;
            a += (size_t)len;
        }
        while (nm->right && b > a) {
            size_t c = b - 1;
            while (c > a && ((unsigned char)s[c] & 0xc0) == 0x80) c--;
            if (!gb__tok_is_whitespace(gb__tok_utf8_decode(s + c, (int)(b - c)))) break;
            b = c;
        }
        return gb__tok_bytes_add(out, s + a, b - a) ? GB_OK : GB_ERR_ALLOC;
    }
    case GB__NORM_KIND_SEQUENCE: break;
    }
    /* Sequence: each normalizer reads the previous one's output. */
    char *cur = NULL;
    if (!gb__tok_bytes_add(&cur, s, n)) return GB_ERR_ALLOC;
    for (int i = 0; i < nm->nitems; i++) {
        char *next = NULL;
        gb_status st = gb__tok_norm_one(&nm->items[i], cur, arrlenu(cur), &next);
        arrfree(cur);
        cur = next;
        if (st != GB_OK) {
            arrfree(cur);
            return st;
        }
    }
    bool ok = gb__tok_bytes_add(out, cur, arrlenu(cur));
    arrfree(cur);
    return ok ? GB_OK : GB_ERR_ALLOC;
}

gb_status gb__tok_norm_apply(const gb__tr_norm *nm, const char *s, size_t n, char **out) {
    if (!GB_ARR_SETLEN(*out, 0, "tokenizer")) return GB_ERR_ALLOC;
    return gb__tok_norm_one(nm, s, n, out);
}
