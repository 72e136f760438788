/* tokenizer.json, encoding and decoding (io/tokenizer*.c): the input is a
 * tokenizer.json, then a 0xff byte (which UTF-8 never holds) and a text
 * (else the text is "Hello world"). The file must open or fail cleanly;
 * then the text encodes (with and without special tokens, alone and in a
 * batch) or fails cleanly, what it encodes to decodes, and ids made from the
 * text's bytes decode or fail with GB_ERR_INDEX. See tests/fuzz/fuzz.h. */
#include "fuzz.h"

int gb_fuzz_tokenizer(const uint8_t *data, size_t size);

int gb_fuzz_tokenizer(const uint8_t *data, size_t size) {
    const uint8_t *sep = memchr(data, 0xff, size);
    size_t json_len = sep ? (size_t)(sep - data) : size;
    const char *text = sep ? (const char *)sep + 1 : "Hello world";
    size_t len = sep ? size - json_len - 1 : strlen(text);
    char path[4096];
    gb_fuzz_write("tokenizer.json", data, json_len, path);
    gb_tokenizer *tok = gb_tokenizer_open(path);
    if (!tok) {
        GB_FUZZ_FAILED_CLEANLY();
        return 0;
    }
    int32_t vocab = gb_tokenizer_vocab_size(tok);
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (gb_tokenizer_encode(tok, text, len, special, &ids, &n) != GB_OK) {
            GB_FUZZ_FAILED_CLEANLY();
            GB_FUZZ_CHECK(!ids && !n);
            continue;
        }
        for (size_t i = 0; i < n; i++) GB_FUZZ_CHECK(ids[i] >= 0 && ids[i] < vocab);
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL;
            size_t out_len = 0;
            GB_FUZZ_CHECK(gb_tokenizer_decode(tok, ids, n, skip, &out, &out_len) == GB_OK);
            GB_FUZZ_CHECK(out && strlen(out) <= out_len);
            free(out);
        }
        free(ids);
    }
    /* ids from the text's bytes, some beyond the vocabulary */
    int32_t some[64];
    size_t n = len < 64 ? len : 64;
    for (size_t i = 0; i < n; i++) some[i] = (int32_t)(((uint32_t)(uint8_t)text[i] * 2654435761u) % ((uint32_t)vocab + 2));
    char *out = NULL;
    if (gb_tokenizer_decode(tok, some, n, n % 2, &out, NULL) != GB_OK) GB_FUZZ_CHECK(gb_last_status() == GB_ERR_INDEX);
    free(out);
    for (size_t i = 0; i < n; i++) {
        const char *s = gb_tokenizer_token_to_string(tok, some[i]);
        if (s) GB_FUZZ_CHECK(gb_tokenizer_token_to_id(tok, s) >= 0);
    }
    const char *texts[2] = {text, "a"};
    size_t lens[2] = {len, 1};
    gb_tensor *batch = NULL, *mask = NULL;
    if (gb_tokenizer_encode_batch(tok, 2, texts, lens, true, GB_PAD_SIDE_LEFT, &batch, &mask) != GB_OK)
        GB_FUZZ_FAILED_CLEANLY();
    gb_tensor_free(batch);
    gb_tensor_free(mask);
    gb_tokenizer_free(tok);
    return 0;
}

GB_FUZZ_ENTRY(tokenizer)
