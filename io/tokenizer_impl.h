/* Private to glassbox's tokenizer (io/tokenizer*.c): the parts of the
 * pipeline. The stages and their order are Hugging Face tokenizers':
 *
 *   encode: text -> lossy UTF-8 -> added tokens matched on the raw text ->
 *           normalizer (per remaining segment) -> added tokens matched on the
 *           normalized text -> pre-tokenizer -> BPE per piece -> post-processor
 *   decode: ids -> token strings -> decoder chain -> text
 *
 * Strings in flight are gb__tok_strlist: many pieces in one arena. Each stage
 * reads one list and writes a new one, so no pointer into an arena is held
 * across a write to it. Dynamic arrays are stb_ds arrays (declared here as
 * plain pointers; only the .c files include stb_ds). */
#ifndef GB_TOKENIZER_IMPL_H
#define GB_TOKENIZER_IMPL_H

#include <pthread.h>

#include "../tensor/base.h"
#include "io.h"
#include "json.h"

/* Append n bytes to *out (stb_ds char array); n may be 0 with s NULL. */
/* Every bool of this header's growing calls: false when memory ran out,
 * with GB_ERR_ALLOC set. */
bool gb__tok_bytes_add(char **out, const void *s, size_t n) GB__CHECKED;

/* ---- UTF-8 -------------------------------------------------------------- */

/* Length (1-4) of the well-formed UTF-8 character at s[0, n), or 0 when the
 * bytes there are not one; then *bad is the length of the maximal subpart
 * (Unicode's "maximal subpart of an ill-formed subsequence", >= 1), the unit
 * that one U+FFFD replaces (what Rust's from_utf8_lossy and the WHATWG
 * decoder do). */
int gb__tok_utf8_char(const unsigned char *s, size_t n, size_t *bad);
/* The code point at s[*i] (s[0, n) well-formed), advancing *i past it;
 * *len is its length. */
uint32_t gb__tok_utf8_next(const char *s, size_t n, size_t *i, int *len);
/* Code point of the well-formed character at s (length from gb__tok_utf8_char). */
uint32_t gb__tok_utf8_decode(const char *s, int len);
/* Encode cp into out (at least 4 bytes); returns the length. */
int gb__tok_utf8_encode(uint32_t cp, char *out);
/* Append s[0, n) to *out (stb_ds char array) with every ill-formed
 * subsequence replaced by U+FFFD. */
bool gb__tok_utf8_lossy(char **out, const char *s, size_t n) GB__CHECKED;
/* Unicode White_Space (Rust's char::is_whitespace). */
bool gb__tok_is_whitespace(uint32_t cp);
/* Rust regex's \w: alphabetic, marks, decimal digits, connector punctuation. */
bool gb__tr_is_word(uint32_t cp);
/* Rust's char::is_numeric: general category Nd, Nl or No. */
bool gb__tok_is_numeric(uint32_t cp);

/* ---- string lists ------------------------------------------------------- */

/* first: this piece starts at offset 0 of the original text (Metaspace's
 * prepend_scheme "first" prepends only to such a piece). */
typedef struct gb__tok_piece {
    size_t off, len;
    bool first;
} gb__tok_piece;

typedef struct gb__tok_strlist {
    char *arena;   /* stb_ds array */
    gb__tok_piece *v;  /* stb_ds array */
} gb__tok_strlist;

bool gb__tok_strlist_push(gb__tok_strlist *l, const char *s, size_t n, bool first) GB__CHECKED;
/* Append to the last piece (which must exist). */
bool gb__tok_strlist_extend(gb__tok_strlist *l, const char *s, size_t n) GB__CHECKED;
size_t gb__tok_strlist_len(const gb__tok_strlist *l);
/* The arena is NULL while every string is empty: "" then, not NULL + 0. */
static inline const char *gb__tok_strlist_str(const gb__tok_strlist *l, size_t i) { return l->arena ? l->arena + l->v[i].off : ""; }
void gb__tok_strlist_free(gb__tok_strlist *l);

/* ---- regular expressions (PCRE2, UTF + UCP, JIT when available) ---------- */

typedef struct gb__tok_regex gb__tok_regex;
/* Compile pattern (Oniguruma syntax as in tokenizer.json; \s and \S are
 * rewritten to Unicode White_Space, which is what Oniguruma means by them),
 * or a literal string when literal. Fails with GB_ERR_FORMAT naming ctx. */
gb__tok_regex *gb__tok_regex_new(const char *pattern, bool literal, const char *ctx);
void gb__tok_regex_free(gb__tok_regex *re);

/* A part of a string [start, end), flagged when a pattern matched it. */
typedef struct gb__tok_span {
    size_t start, end;
    bool match;
} gb__tok_span;

/* Matches of re in s[0, n) as Rust's find_iter yields them (non-overlapping,
 * leftmost-first; an empty match right after the previous match is skipped),
 * as spans covering all of s, gaps unflagged; appended to *spans (stb_ds).
 * An empty s gives one empty unflagged span. */
gb_status gb__tok_regex_spans(const gb__tok_regex *re, const char *s, size_t n, gb__tok_span **spans);

/* A tokenizer.json pattern, {"String": s} or {"Regex": r}; what names the
 * component in errors. */
gb__tok_regex *gb__tok_pattern_parse(const gb__json_json *j, const char *ctx, const char *what);

/* Hugging Face's SplitDelimiterBehavior. */
typedef enum gb__tok_split_behavior {
    GB__SPLIT_BEHAVIOR_REMOVED,
    GB__SPLIT_BEHAVIOR_ISOLATED,
    GB__SPLIT_BEHAVIOR_MERGED_WITH_PREVIOUS,
    GB__SPLIT_BEHAVIOR_MERGED_WITH_NEXT,
    GB__SPLIT_BEHAVIOR_CONTIGUOUS,
} gb__tok_split_behavior;

/* Turn spans covering a string into the ranges that a split with behavior b
 * keeps (flags cleared); returns the new count. In place. */
size_t gb__tok_split_spans(gb__tok_span *spans, size_t n, gb__tok_split_behavior b);

/* ---- normalizers -------------------------------------------------------- */

typedef enum gb__tok_norm_kind {
    GB__NORM_KIND_SEQUENCE,
    GB__NORM_KIND_NFC,
    GB__NORM_KIND_NFD,
    GB__NORM_KIND_NFKC,
    GB__NORM_KIND_NFKD,
    GB__NORM_KIND_PREPEND,
    GB__NORM_KIND_REPLACE,
    GB__NORM_KIND_LOWERCASE,
    GB__NORM_KIND_STRIP,
} gb__tok_norm_kind;

typedef struct gb__tr_norm {
    gb__tok_norm_kind kind;
    char *text;            /* Prepend: the prefix; Replace: the content */
    gb__tok_regex *re;         /* Replace */
    bool left, right;      /* Strip */
    struct gb__tr_norm *items; /* Sequence */
    int nitems;
} gb__tr_norm;

/* Parse a "normalizer" object; ctx prefixes errors ("tokenizer_open: PATH"). */
gb__tr_norm *gb__tok_norm_parse(const gb__json_json *j, const char *ctx);
void gb__tok_norm_free(gb__tr_norm *n);
/* Normalize s[0, n) into *out (stb_ds char array, replaced). */
gb_status gb__tok_norm_apply(const gb__tr_norm *nm, const char *s, size_t n, char **out);

/* ---- pre-tokenizers ----------------------------------------------------- */

typedef enum gb__tok_pre_kind {
    GB__PRE_KIND_SEQUENCE,
    GB__PRE_KIND_BYTE_LEVEL,
    GB__PRE_KIND_SPLIT,
    GB__PRE_KIND_METASPACE,
    GB__PRE_KIND_DIGITS,
} gb__tok_pre_kind;

typedef enum gb__tok_prepend_scheme {
    GB__PREPEND_SCHEME_ALWAYS,
    GB__PREPEND_SCHEME_FIRST,
    GB__PREPEND_SCHEME_NEVER,
} gb__tok_prepend_scheme;

typedef struct gb__tok_pre {
    gb__tok_pre_kind kind;
    bool add_prefix_space, use_regex; /* ByteLevel */
    gb__tok_regex *re;                    /* Split; ByteLevel's GPT-2 pattern */
    gb__tok_split_behavior behavior;      /* Split */
    bool invert;                      /* Split */
    char replacement[5];              /* Metaspace, UTF-8 */
    gb__tok_prepend_scheme scheme;        /* Metaspace */
    bool split;                       /* Metaspace */
    bool individual_digits;           /* Digits */
    struct gb__tok_pre *items;            /* Sequence */
    int nitems;
} gb__tok_pre;

gb__tok_pre *gb__tok_pre_parse(const gb__json_json *j, const char *ctx);
/* A ByteLevel pre-tokenizer with GPT-2's settings (vocab.json + merges.txt). */
gb__tok_pre *gb__tok_pre_byte_level(const char *ctx);
void gb__tok_pre_free(gb__tok_pre *p);
/* Pre-tokenize the pieces of in into *out (both lists; out is cleared first). */
gb_status gb__tok_pre_apply(const gb__tok_pre *p, const gb__tok_strlist *in, gb__tok_strlist *out);

/* GPT-2's byte-to-unicode map: the code point standing for byte b. */
uint32_t gb__tok_byte_level_cp(unsigned char b);
/* Inverse: the byte a code point stands for, or -1. */
int gb__tok_byte_level_byte(uint32_t cp);

/* ---- decoders ----------------------------------------------------------- */

typedef enum gb__tok_dec_kind {
    GB__DEC_KIND_SEQUENCE,
    GB__DEC_KIND_BYTE_LEVEL,
    GB__DEC_KIND_REPLACE,
    GB__DEC_KIND_BYTE_FALLBACK,
    GB__DEC_KIND_FUSE,
    GB__DEC_KIND_STRIP,
    GB__DEC_KIND_METASPACE,
} gb__tok_dec_kind;

typedef struct gb__tok_dec {
    gb__tok_dec_kind kind;
    gb__tok_regex *re;          /* Replace */
    char *text;             /* Replace: content */
    uint32_t ch;            /* Strip: the character; Metaspace: replacement */
    int start, stop;        /* Strip */
    gb__tok_prepend_scheme scheme; /* Metaspace */
    struct gb__tok_dec *items;  /* Sequence */
    int nitems;
} gb__tok_dec;

gb__tok_dec *gb__tok_dec_parse(const gb__json_json *j, const char *ctx);
gb__tok_dec *gb__tok_dec_byte_level(void);
void gb__tok_dec_free(gb__tok_dec *d);
/* Decoder chain over token strings: in -> out (out cleared first). */
gb_status gb__tok_dec_apply(const gb__tok_dec *d, const gb__tok_strlist *in, gb__tok_strlist *out);

/* ---- post-processors ---------------------------------------------------- */

typedef enum gb__tok_post_kind {
    GB__POST_KIND_SEQUENCE,
    GB__POST_KIND_TEMPLATE, /* also BertProcessing and RobertaProcessing */
    GB__POST_KIND_BYTE_LEVEL,
} gb__tok_post_kind;

/* The single-sequence template as ids, GB__POST_SEQ marking the sequence. */
#define GB__POST_SEQ (-1)

typedef struct gb__tok_post {
    gb__tok_post_kind kind;
    int32_t *tmpl; /* stb_ds array */
    struct gb__tok_post *items;
    int nitems;
} gb__tok_post;

/* lookup resolves a token name to an id for Bert/Roberta processors. */
gb__tok_post *gb__tok_post_parse(const gb__json_json *j, const char *ctx);
void gb__tok_post_free(gb__tok_post *p);
/* Wrap ids (stb_ds array, replaced) with the special tokens. */
gb_status gb__tok_post_apply(const gb__tok_post *p, int32_t **ids) GB__CHECKED;
/* The first special token id the template puts before the sequence, or -1. */
int32_t gb__tok_post_first_special(const gb__tok_post *p);

/* ---- the BPE model ------------------------------------------------------ */

typedef struct gb__tok_bpe {
    struct gb__tok_vocab_kv {
        char *key;
        int32_t value;
    } *vocab;              /* stb_ds string map, arena keys */
    struct gb__tok_id_str_kv {
        int32_t key;
        char *value;       /* into vocab's arena */
    } *id_str;             /* stb_ds hash map id -> token: a file's ids may be sparse, and one
                              huge id must cost no more than a small one */
    int32_t id_end;        /* the largest id + 1 (0: empty) */
    struct gb__tok_merge_kv {
        uint64_t key;      /* left id << 32 | right id */
        uint64_t value;    /* rank << 32 | merged id */
    } *merges;             /* stb_ds hash map */
    char *unk_token;       /* NULL: none */
    char *prefix, *suffix; /* continuing_subword_prefix, end_of_word_suffix, NULL: none */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256];  /* id of "<0xXX>", -1 if absent */
    /* pre-token cache: piece -> ids (cache_ids[off, off + n)) */
    struct gb__tok_cache_kv {
        char *key;
        uint64_t value;    /* off << 32 | n */
    } *cache;
    int32_t *cache_ids;
    /* scratch reused across words */
    struct gb__tok_bpe_sym {
        int32_t id, prev, next;
        uint32_t len;
    } *syms;
    struct gb__tok_bpe_merge {
        uint32_t rank, pos;
        int32_t id;
    } *heap;
    char *key;
} gb__tok_bpe;

/* Parse a tokenizer.json "model" object. */
gb_status gb__tok_bpe_parse(gb__tok_bpe *m, const gb__json_json *j, const char *ctx);
/* vocab.json and merges.txt contents; vctx and mctx prefix errors in each. */
gb_status gb__tok_bpe_from_files(gb__tok_bpe *m, const gb__json_json *vocab, const char *merges, size_t nmerges, const char *vctx,
                             const char *mctx);
void gb__tok_bpe_free(gb__tok_bpe *m);
/* Model vocabulary: id of a token or -1; token of an id or NULL. */
int32_t gb__tok_bpe_id(const gb__tok_bpe *m, const char *tok);
const char *gb__tok_bpe_str(const gb__tok_bpe *m, int32_t id);
/* Number of entries in the model's vocabulary (Hugging Face's model vocab size). */
size_t gb__tok_bpe_count(const gb__tok_bpe *m);
/* Tokenize one pre-token s[0, n), appending ids to *ids (stb_ds). */
gb_status gb__tok_bpe_tokenize(gb__tok_bpe *m, const char *s, size_t n, int32_t **ids);

/* ---- added tokens and the tokenizer ------------------------------------- */

typedef struct gb__tok_added {
    char *content;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
} gb__tok_added;

/* Leftmost-longest matching of a few strings (Aho-Corasick's MatchKind::
 * LeftmostLongest, as Hugging Face uses for added tokens). */
typedef struct gb__tok_matcher {
    struct gb__tok_pattern {
        char *s;
        size_t n;
        int32_t id;
    } *pats;            /* stb_ds array */
    int *by_byte[256];  /* stb_ds arrays of pattern indices, longest first */
} gb__tok_matcher;

/* Truncation from tokenizer.json (single sequences: keep max_len ids,
 * special tokens included, from the left or the right). */
typedef struct gb__tok_truncation {
    bool on, left;
    size_t max_len;
} gb__tok_truncation;

struct gb_tokenizer {
    char *path;
    gb__tok_bpe bpe;
    gb__tr_norm *norm;
    gb__tok_pre *pre;
    gb__tok_dec *dec;
    gb__tok_post *post;
    gb__tok_truncation trunc;
    gb__tok_added *added; /* stb_ds array: Hugging Face's added_tokens_map_r values */
    struct gb__tok_added_id_kv {
        int32_t key;
        int value;    /* index into added */
    } *added_by_id;   /* stb_ds hash map */
    struct gb__tok_added_kv {
        char *key;
        int32_t value;
    } *added_ids;     /* stb_ds string map: content -> id */
    struct gb__tok_special_kv {
        char *key;
        int value;
    } *special;       /* stb_ds string set of special contents */
    gb__tok_matcher raw, normalized;
    int32_t bos, eos, pad, vocab_size;
    /* Held while encoding or decoding: encoding fills the BPE cache and
     * works in scratch arrays kept in the tokenizer, so threads sharing
     * one tokenizer (a server's gb_lm) take turns. */
    pthread_mutex_t lock;
};

#endif
