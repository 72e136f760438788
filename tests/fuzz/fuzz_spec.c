/* A session as JSON: the body of a server's POST /session (session/spec.c),
 * built and scanned as the server does before queueing it. The request
 * must parse or fail cleanly; a parsed one prints as JSON that parses back
 * into the same text; building it on the bundled model (as "facts", under
 * the server's kind of limits) and scanning it succeed or fail cleanly.
 * Nothing runs. See tests/fuzz/fuzz.h. */
#include "fuzz.h"

int gb_fuzz_spec(const uint8_t *data, size_t size);

static gb_lm *gb_fuzz_spec_lm_of(void *ctx, const char *name) {
    gb_lm *lm = ctx;
    if (lm && !strcmp(name, "facts")) return lm;
    gb_clear_error();
    GB_FUZZ_CHECK(gb_lm_open("/nonexistent/glassbox-fuzz-model", NULL) == NULL); /* a clean failure to pass on */
    return NULL;
}

static gb_status gb_fuzz_spec_result(void *ctx, const gb_spec_result *r) {
    (void)ctx, (void)r;
    return GB_OK;
}

int gb_fuzz_spec(const uint8_t *data, size_t size) {
    static gb_lm *lm;
    static bool opened;
    if (!opened) lm = gb_lm_open("models/gpt2-facts", NULL), opened = true; /* absent: every trace fails cleanly */
    gb_spec *sp = gb_spec_from_json((const char *)data, size);
    if (!sp) {
        GB_FUZZ_FAILED_CLEANLY();
        return 0;
    }
    char *a = gb_spec_json(sp);
    GB_FUZZ_CHECK(a);
    gb_spec *back = gb_spec_from_json(a, strlen(a));
    GB_FUZZ_CHECK(back);
    char *b = gb_spec_json(back);
    GB_FUZZ_CHECK(b && !strcmp(a, b));
    free(a), free(b);
    gb_spec_free(back);
    gb_spec_limits lim = {.max_tokens = 64, .max_new_tokens = 4, .max_batch = 4, .max_runs = 16};
    gb_session *s = gb_spec_session(sp, gb_fuzz_spec_lm_of, lm, &lim, gb_fuzz_spec_result, NULL);
    if (!s) GB_FUZZ_FAILED_CLEANLY();
    else if (gb_session_scan(s) != GB_OK) GB_FUZZ_FAILED_CLEANLY();
    gb_session_free(s);
    gb_spec_free(sp);
    return 0;
}

GB_FUZZ_ENTRY(spec)
