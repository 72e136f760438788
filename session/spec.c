/* Sessions as text: a list of steps holding statements, prompts and model
 * names (plain data, so it travels as JSON), and the one builder that makes
 * a gb_session of it, for the CLI and the server alike: the same spec
 * gives the same graphs, run by the same code, locally or remotely. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

#include "../io/json.h"
#include "session_impl.h"

typedef enum gb__ses_spec_kind {
    GB__SPEC_TRACE,
    GB__SPEC_LOG,
    GB__SPEC_STOP,
    GB__SPEC_ITER,
    GB__SPEC_END,
} gb__ses_spec_kind;

typedef struct gb__ses_spec_prompt {
    char *text;    /* or ids */
    int64_t *ids;  /* stb_ds array */
    char *item;    /* or the item of the enclosing loop over prompts of that name */
    int first;     /* the first statement after it */
} gb__ses_spec_prompt;

typedef struct gb__ses_spec_step {
    gb__ses_spec_kind kind;
    char *model;               /* TRACE */
    gb__ses_spec_prompt *prompts;  /* TRACE: stb_ds array; ITER over prompts: its items */
    char **stmts;              /* TRACE: stb_ds array */
    int max_new;               /* TRACE: 0: one forward pass */
    gb_sampling sampling;      /* TRACE: its generation's; its seed is torch.randint's too (gb_trace_set_seed) */
    char *text;                /* LOG: the text; ITER: the name */
    char *over;                /* ITER over an enclosing loop's item */
    float *values;             /* ITER: stb_ds array, n x max(width, 1) */
    int64_t n, width;
} gb__ses_spec_step;

struct gb_spec {
    gb__ses_spec_step *steps; /* stb_ds array */
    int cur;              /* the trace being defined, or -1 */
    int depth;            /* open loops */
    char **models;        /* stb_ds array of distinct model names */
};

gb_spec *gb_spec_new(void) {
    gb_spec *sp = gb__calloc(1, sizeof *sp, "spec_new");
    if (sp) sp->cur = -1;
    return sp;
}

void gb_spec_free(gb_spec *sp) {
    if (!sp) return;
    for (ptrdiff_t i = 0; i < arrlen(sp->steps); i++) {
        gb__ses_spec_step *st = &sp->steps[i];
        free(st->model), free(st->text), free(st->over);
        for (ptrdiff_t k = 0; k < arrlen(st->prompts); k++)
            free(st->prompts[k].text), free(st->prompts[k].item), arrfree(st->prompts[k].ids);
        for (ptrdiff_t k = 0; k < arrlen(st->stmts); k++) free(st->stmts[k]);
        arrfree(st->prompts), arrfree(st->stmts), arrfree(st->values);
    }
    arrfree(sp->steps), arrfree(sp->models);
    free(sp);
}

/* The new step, or NULL when out of memory. */
static gb__ses_spec_step *gb__ses_spec_push(gb_spec *sp, gb__ses_spec_kind kind, const char *op) {
    if (!GB_ARR_PUT(sp->steps, ((gb__ses_spec_step){.kind = kind}), op)) return NULL;
    sp->cur = kind == GB__SPEC_TRACE ? (int)arrlen(sp->steps) - 1 : -1;
    return &arrlast(sp->steps);
}

static char *gb__ses_spec_dup(const char *s, const char *op) { return s ? gb__strdup(s, op) : NULL; }

gb_status gb_spec_trace(gb_spec *sp, const char *model) {
    if (!model || !*model) return gb__fail(GB_ERR_ARG, "spec_trace: a trace needs a model name");
    char *m = gb__ses_spec_dup(model, "spec_trace");
    gb__ses_spec_step *st = m ? gb__ses_spec_push(sp, GB__SPEC_TRACE, "spec_trace") : NULL;
    if (!st) return free(m), GB_ERR_ALLOC;
    st->model = m;
    st->sampling = (gb_sampling){.top_p = 1, .repetition_penalty = 1}; /* greedy */
    for (ptrdiff_t i = 0; i < arrlen(sp->models); i++)
        if (!strcmp(sp->models[i], model)) return GB_OK;
    return GB_ARR_PUT(sp->models, m, "spec_trace") ? GB_OK : GB_ERR_ALLOC;
}

const char *const *gb_spec_models(const gb_spec *sp, int *n) {
    *n = (int)arrlen(sp->models);
    return (const char *const *)sp->models;
}

static gb__ses_spec_step *gb__ses_spec_cur(gb_spec *sp, const char *op) {
    if (sp->cur < 0) return gb__fail_null(GB_ERR_STATE, "%s: no trace to add to (start one with a model)", op);
    return &sp->steps[sp->cur];
}

gb_status gb_spec_prompt(gb_spec *sp, const char *text) {
    gb__ses_spec_step *st = gb__ses_spec_cur(sp, "spec_prompt");
    char *t = st ? gb__ses_spec_dup(text ? text : "", "spec_prompt") : NULL;
    if (!t) return gb_last_status();
    if (!GB_ARR_PUT(st->prompts, ((gb__ses_spec_prompt){.text = t, .first = (int)arrlen(st->stmts)}), "spec_prompt"))
        return free(t), GB_ERR_ALLOC;
    return GB_OK;
}

gb_status gb_spec_ids(gb_spec *sp, int64_t n, const int64_t *ids) {
    gb__ses_spec_step *st = gb__ses_spec_cur(sp, "spec_ids");
    if (!st) return gb_last_status();
    if (n < 1) return gb__fail(GB_ERR_ARG, "spec_ids: a prompt needs at least one id");
    gb__ses_spec_prompt p = {.first = (int)arrlen(st->stmts)};
    int64_t *at = GB_ARR_ADDN(p.ids, (size_t)n, "spec_ids");
    if (!at || !GB_ARR_PUT(st->prompts, p, "spec_ids")) return arrfree(p.ids), GB_ERR_ALLOC;
    memcpy(at, ids, (size_t)n * sizeof *ids);
    return GB_OK;
}

gb_status gb_spec_item(gb_spec *sp, const char *loop) {
    gb__ses_spec_step *st = gb__ses_spec_cur(sp, "spec_item");
    char *t = st ? gb__ses_spec_dup(loop ? loop : "", "spec_item") : NULL;
    if (!t) return gb_last_status();
    if (!GB_ARR_PUT(st->prompts, ((gb__ses_spec_prompt){.item = t, .first = (int)arrlen(st->stmts)}), "spec_item"))
        return free(t), GB_ERR_ALLOC;
    return GB_OK;
}

gb_status gb_spec_statement(gb_spec *sp, const char *text) {
    gb__ses_spec_step *st = gb__ses_spec_cur(sp, "spec_statement");
    char *t = st ? gb__ses_spec_dup(text ? text : "", "spec_statement") : NULL;
    if (!t) return gb_last_status();
    return GB_ARR_PUT(st->stmts, t, "spec_statement") ? GB_OK : (free(t), GB_ERR_ALLOC);
}

gb_status gb_spec_generate(gb_spec *sp, int n) {
    gb__ses_spec_step *st = gb__ses_spec_cur(sp, "spec_generate");
    if (!st) return gb_last_status();
    if (n < 1) return gb__fail(GB_ERR_ARG, "spec_generate: the number of new tokens must be >= 1, got %d", n);
    st->max_new = n;
    return GB_OK;
}

gb_status gb_spec_seed(gb_spec *sp, uint64_t seed) {
    gb__ses_spec_step *st = gb__ses_spec_cur(sp, "spec_seed");
    if (!st) return gb_last_status();
    st->sampling.seed = seed;
    return GB_OK;
}

gb_status gb_spec_sampling(gb_spec *sp, const gb_sampling *sampling) {
    gb__ses_spec_step *st = gb__ses_spec_cur(sp, "spec_sampling");
    if (!st) return gb_last_status();
    uint64_t seed = st->sampling.seed;
    st->sampling = *sampling;
    st->sampling.seed = seed;
    return GB_OK;
}

gb_status gb_spec_log(gb_spec *sp, const char *text) {
    char *t = gb__ses_spec_dup(text ? text : "", "spec_log");
    gb__ses_spec_step *st = t ? gb__ses_spec_push(sp, GB__SPEC_LOG, "spec_log") : NULL;
    if (!st) return free(t), GB_ERR_ALLOC;
    st->text = t;
    return GB_OK;
}

gb_status gb_spec_stop(gb_spec *sp) {
    return gb__ses_spec_push(sp, GB__SPEC_STOP, "spec_stop") ? GB_OK : GB_ERR_ALLOC;
}

gb_status gb_spec_iter(gb_spec *sp, const char *name, int64_t n, int64_t width, const float *values, const char *over) {
    if (!name || !*name) return gb__fail(GB_ERR_ARG, "spec_iter: a loop needs a name");
    if (!values && (!over || !*over)) return gb__fail(GB_ERR_ARG, "spec_iter: loop '%s' needs items or a loop to walk", name);
    if (values && (n < 0 || width < 0)) return gb__fail(GB_ERR_ARG, "spec_iter: loop '%s': negative sizes", name);
    for (int64_t i = 0; values && i < n * (width ? width : 1); i++) /* JSON has no inf or NaN to send them as */
        if (!isfinite(values[i]))
            return gb__fail(GB_ERR_ARG, "spec_iter: loop '%s': item value %lld is %g; items are finite float32 numbers",
                            name, (long long)i, (double)values[i]);
    char *t = gb__ses_spec_dup(name, "spec_iter"), *o = values ? NULL : gb__ses_spec_dup(over, "spec_iter");
    if (!t || (!values && !o)) {
        free(t), free(o);
        return GB_ERR_ALLOC;
    }
    gb__ses_spec_step *st = gb__ses_spec_push(sp, GB__SPEC_ITER, "spec_iter");
    if (!st) {
        free(t), free(o);
        return GB_ERR_ALLOC;
    }
    st->text = t, st->over = o, st->n = n, st->width = width;
    sp->depth++;
    size_t count = values ? (size_t)(n * (width ? width : 1)) : 0;
    float *at = count ? GB_ARR_ADDN(st->values, count, "spec_iter") : NULL;
    if (count && !at) return GB_ERR_ALLOC; /* the loop stays open, without items: the spec is freed */
    if (count) memcpy(at, values, count * sizeof *values);
    return GB_OK;
}

gb_status gb_spec_iter_prompts(gb_spec *sp, const char *name, int n, const char *const *texts,
                               const int64_t *const *ids, const int64_t *lens) {
    if (!name || !*name) return gb__fail(GB_ERR_ARG, "spec_iter_prompts: a loop needs a name");
    if (n < 1) return gb__fail(GB_ERR_ARG, "spec_iter_prompts: loop '%s' needs at least one prompt", name);
    gb__ses_spec_prompt *items = NULL;
    gb_status r = GB_OK;
    for (int k = 0; r == GB_OK && k < n; k++) {
        gb__ses_spec_prompt p = {0};
        if (texts && texts[k]) {
            if (!(p.text = gb__ses_spec_dup(texts[k], "spec_iter_prompts"))) r = GB_ERR_ALLOC;
        } else if (!ids || !lens || lens[k] < 1) {
            r = gb__fail(GB_ERR_ARG, "spec_iter_prompts: loop '%s': item %d is neither a text nor a non-empty id list",
                         name, k);
        } else {
            int64_t *at = GB_ARR_ADDN(p.ids, (size_t)lens[k], "spec_iter_prompts");
            if (at) memcpy(at, ids[k], (size_t)lens[k] * sizeof *at);
            else r = GB_ERR_ALLOC;
        }
        if (r == GB_OK && !GB_ARR_PUT(items, p, "spec_iter_prompts")) r = GB_ERR_ALLOC;
        if (r != GB_OK) free(p.text), arrfree(p.ids);
    }
    char *t = r == GB_OK ? gb__ses_spec_dup(name, "spec_iter_prompts") : NULL;
    if (!t) {
        for (ptrdiff_t k = 0; k < arrlen(items); k++) free(items[k].text), arrfree(items[k].ids);
        arrfree(items);
        return r == GB_OK ? GB_ERR_ALLOC : r;
    }
    gb__ses_spec_step *st = gb__ses_spec_push(sp, GB__SPEC_ITER, "spec_iter_prompts");
    if (!st) {
        free(t);
        for (ptrdiff_t k = 0; k < arrlen(items); k++) free(items[k].text), arrfree(items[k].ids);
        arrfree(items);
        return GB_ERR_ALLOC;
    }
    st->text = t, st->prompts = items, st->n = n;
    sp->depth++;
    return GB_OK;
}

gb_status gb_spec_end(gb_spec *sp) {
    if (!sp->depth) return gb__fail(GB_ERR_STATE, "spec_end: no loop is open");
    if (!gb__ses_spec_push(sp, GB__SPEC_END, "spec_end")) return GB_ERR_ALLOC;
    sp->depth--;
    return GB_OK;
}

/* ---- JSON ----------------------------------------------------------------- */

static gb__json_json *gb__ses_spec_strings(char *const *s, ptrdiff_t from, ptrdiff_t to) {
    gb__json_json *a = gb__json_new_array();
    for (ptrdiff_t i = from; a && i < to; i++) gb__json_push(a, gb__json_new_string(s[i]));
    return a;
}

static gb__json_json *gb__ses_spec_ids_json(const gb__ses_spec_prompt *p) {
    gb__json_json *ids = gb__json_new_array();
    for (ptrdiff_t j = 0; j < arrlen(p->ids); j++) gb__json_push(ids, gb__json_new_number((double)p->ids[j]));
    return ids;
}

/* {"prompt": TEXT}, {"ids": [...]} or {"item": LOOP}. */
static gb__json_json *gb__ses_spec_prompt_json(const gb__ses_spec_prompt *p) {
    gb__json_json *o = gb__json_new_object();
    if (p->text) gb__json_set(o, "prompt", gb__json_new_string(p->text));
    else if (p->item) gb__json_set(o, "item", gb__json_new_string(p->item));
    else gb__json_set(o, "ids", gb__ses_spec_ids_json(p));
    return o;
}

/* Steps [*i, end of the list or the END that closes it) as a JSON array. */
static gb__json_json *gb__ses_spec_steps_json(const gb_spec *sp, ptrdiff_t *i) {
    gb__json_json *arr = gb__json_new_array();
    for (; arr && *i < arrlen(sp->steps); (*i)++) {
        const gb__ses_spec_step *st = &sp->steps[*i];
        gb__json_json *step = gb__json_new_object(), *body = gb__json_new_object();
        switch (st->kind) {
        case GB__SPEC_END: gb__json_free(step), gb__json_free(body); return arr;
        case GB__SPEC_TRACE: {
            gb__json_set(body, "model", gb__json_new_string(st->model));
            ptrdiff_t np = arrlen(st->prompts), ns = arrlen(st->stmts);
            int first = np ? st->prompts[0].first : (int)ns;
            if (first) gb__json_set(body, "statements", gb__ses_spec_strings(st->stmts, 0, first));
            gb__json_json *inv = gb__json_new_array();
            for (ptrdiff_t k = 0; k < np; k++) {
                const gb__ses_spec_prompt *p = &st->prompts[k];
                gb__json_json *o = gb__ses_spec_prompt_json(p);
                gb__json_set(o, "statements", gb__ses_spec_strings(st->stmts, p->first, k + 1 < np ? st->prompts[k + 1].first : ns));
                gb__json_push(inv, o);
            }
            gb__json_set(body, "invokes", inv);
            if (st->max_new) gb__json_set(body, "max_new_tokens", gb__json_new_number(st->max_new));
            const gb_sampling *smp = &st->sampling;
            if (smp->seed) gb__json_set(body, "seed", gb__json_new_number((double)smp->seed));
            if (smp->temperature != 0) gb__json_set(body, "temperature", gb__json_new_number(smp->temperature));
            if (smp->top_k) gb__json_set(body, "top_k", gb__json_new_number(smp->top_k));
            if (smp->top_p != 1) gb__json_set(body, "top_p", gb__json_new_number(smp->top_p));
            if (smp->repetition_penalty != 1)
                gb__json_set(body, "repetition_penalty", gb__json_new_number(smp->repetition_penalty));
            gb__json_set(step, "trace", body);
            break;
        }
        case GB__SPEC_LOG: gb__json_free(body), gb__json_set(step, "log", gb__json_new_string(st->text)); break;
        case GB__SPEC_STOP: gb__json_free(body), gb__json_set(step, "stop", gb__json_new_bool(true)); break;
        case GB__SPEC_ITER: {
            gb__json_set(body, "name", gb__json_new_string(st->text));
            if (st->over) {
                gb__json_set(body, "over", gb__json_new_string(st->over));
            } else if (st->prompts) { /* texts as strings, id lists as arrays */
                gb__json_json *prompts = gb__json_new_array();
                for (ptrdiff_t k = 0; k < arrlen(st->prompts); k++)
                    gb__json_push(prompts, st->prompts[k].text ? gb__json_new_string(st->prompts[k].text)
                                                               : gb__ses_spec_ids_json(&st->prompts[k]));
                gb__json_set(body, "prompts", prompts);
            } else {
                gb__json_json *items = gb__json_new_array();
                for (int64_t r = 0; r < st->n; r++) {
                    if (!st->width) {
                        gb__json_push(items, gb__json_new_number(st->values[r]));
                        continue;
                    }
                    gb__json_json *row = gb__json_new_array();
                    for (int64_t c = 0; c < st->width; c++) gb__json_push(row, gb__json_new_number(st->values[r * st->width + c]));
                    gb__json_push(items, row);
                }
                gb__json_set(body, "items", items);
            }
            (*i)++;
            gb__json_set(body, "body", gb__ses_spec_steps_json(sp, i));
            gb__json_set(step, "iter", body);
            break;
        }
        }
        gb__json_push(arr, step);
    }
    return arr;
}

char *gb_spec_json(const gb_spec *sp) {
    ptrdiff_t i = 0;
    gb__json_json *root = gb__json_new_object();
    if (root) gb__json_set(root, "session", gb__ses_spec_steps_json(sp, &i));
    char *text = root ? gb__json_print(root) : NULL;
    gb__json_free(root);
    if (!text) gb__fail(GB_ERR_ALLOC, "spec_json: out of memory");
    return text;
}

static gb_status gb__ses_spec_bad(const char *where, const char *what) {
    return gb__fail(GB_ERR_ARG, "session: %s: %s", where, what);
}

static gb_status gb__ses_spec_stmts(gb_spec *sp, const gb__json_json *a, const char *where) {
    if (!a) return GB_OK;
    if (!gb__json_is_array(a)) return gb__ses_spec_bad(where, "\"statements\" must be an array of strings");
    for (int k = 0; k < gb__json_size(a); k++) {
        const char *s = gb__json_string(gb__json_at(a, k));
        if (!s) return gb__ses_spec_bad(where, "\"statements\" must be an array of strings");
        gb_status r = gb_spec_statement(sp, s);
        if (r != GB_OK) return r;
    }
    return GB_OK;
}

/* A non-empty list of token ids, malloc'd into *ids. */
static gb_status gb__ses_spec_ids_from(const gb__json_json *a, const char *where, int64_t **ids, int64_t *n) {
    *ids = NULL, *n = 0;
    if (!gb__json_is_array(a) || gb__json_size(a) < 1)
        return gb__ses_spec_bad(where, "a prompt is \"prompt\": TEXT, \"ids\": [non-empty list] or \"item\": LOOP");
    int64_t *v = malloc(sizeof *v * (size_t)gb__json_size(a));
    if (!v) return gb__fail(GB_ERR_ALLOC, "session: out of memory");
    for (int j = 0; j < gb__json_size(a); j++) {
        long long x;
        if (!gb__json_int(gb__json_at(a, j), &x) || x < 0) {
            free(v);
            return gb__ses_spec_bad(where, "\"ids\" must be non-negative integers");
        }
        v[j] = x;
    }
    *ids = v, *n = gb__json_size(a);
    return GB_OK;
}

static gb_status gb__ses_spec_trace_from(gb_spec *sp, const gb__json_json *t, const char *where) {
    const char *model = gb__json_string(gb__json_get(t, "model"));
    if (!gb__json_is_object(t) || !model) return gb__ses_spec_bad(where, "a trace needs \"model\": a name");
    gb_status r = gb_spec_trace(sp, model);
    if (r == GB_OK) r = gb__ses_spec_stmts(sp, gb__json_get(t, "statements"), where);
    const gb__json_json *inv = gb__json_get(t, "invokes");
    if (r == GB_OK && (!gb__json_is_array(inv) || gb__json_size(inv) < 1))
        return gb__ses_spec_bad(where, "a trace needs \"invokes\": [{\"prompt\": TEXT or \"ids\": [...], \"statements\": [...]}, ...]");
    for (int k = 0; r == GB_OK && k < gb__json_size(inv); k++) {
        const gb__json_json *o = gb__json_at(inv, k), *ids = gb__json_get(o, "ids");
        const char *prompt = gb__json_string(gb__json_get(o, "prompt")), *item = gb__json_string(gb__json_get(o, "item"));
        int64_t n, *v;
        if (prompt) {
            r = gb_spec_prompt(sp, prompt);
        } else if (item) {
            r = gb_spec_item(sp, item);
        } else if ((r = gb__ses_spec_ids_from(ids, where, &v, &n)) == GB_OK) {
            r = gb_spec_ids(sp, n, v);
            free(v);
        }
        if (r == GB_OK) r = gb__ses_spec_stmts(sp, gb__json_get(o, "statements"), where);
    }
    const gb__json_json *n = gb__json_get(t, "max_new_tokens");
    long long m = 0;
    if (r == GB_OK && n && (!gb__json_int(n, &m) || m < 0 || m > 1 << 30))
        return gb__ses_spec_bad(where, "\"max_new_tokens\" must be a non-negative integer");
    if (r == GB_OK && m) r = gb_spec_generate(sp, (int)m);
    const gb__json_json *seed = gb__json_get(t, "seed");
    long long sd = 0; /* at most 2^53: exact as a JSON number */
    if (r == GB_OK && seed && (!gb__json_int(seed, &sd) || sd < 0 || sd > 9007199254740992LL))
        return gb__ses_spec_bad(where, "\"seed\" must be an integer from 0 to 2^53");
    if (r == GB_OK && sd) r = gb_spec_seed(sp, (uint64_t)sd);
    /* sampling: floats (as the CLI's options hold them), checked by the decoder when the trace generates */
    gb_sampling smp = {.top_p = 1, .repetition_penalty = 1};
    static const char *const knobs[] = {"temperature", "top_p", "repetition_penalty"};
    float *at[] = {&smp.temperature, &smp.top_p, &smp.repetition_penalty};
    for (int k = 0; r == GB_OK && k < 3; k++) {
        const gb__json_json *j = gb__json_get(t, knobs[k]);
        double x;
        if (j && !gb__json_number(j, &x)) return gb__ses_spec_bad(where, "\"temperature\", \"top_p\" and \"repetition_penalty\" are numbers");
        if (j) *at[k] = (float)x;
    }
    const gb__json_json *tk = gb__json_get(t, "top_k");
    long long k = 0;
    if (r == GB_OK && tk && (!gb__json_int(tk, &k) || k < 0 || k > 1 << 30))
        return gb__ses_spec_bad(where, "\"top_k\" must be a non-negative integer");
    smp.top_k = (int)k;
    if (r == GB_OK) r = gb_spec_sampling(sp, &smp);
    return r;
}

static gb_status gb__ses_spec_steps_from(gb_spec *sp, const gb__json_json *arr, int depth);

/* "prompts": texts, or lists of ids. */
static gb_status gb__ses_spec_prompts_from(gb_spec *sp, const char *name, const gb__json_json *a, const char *where) {
    int n = gb__json_size(a);
    const char **texts = calloc((size_t)n + 1, sizeof *texts);
    int64_t **ids = calloc((size_t)n + 1, sizeof *ids), *lens = calloc((size_t)n + 1, sizeof *lens);
    gb_status r = texts && ids && lens ? GB_OK : gb__fail(GB_ERR_ALLOC, "session: out of memory");
    for (int k = 0; r == GB_OK && k < n; k++)
        if (!(texts[k] = gb__json_string(gb__json_at(a, k))))
            r = gb__ses_spec_ids_from(gb__json_at(a, k), where, &ids[k], &lens[k]);
    if (r == GB_OK) r = gb_spec_iter_prompts(sp, name, n, texts, (const int64_t *const *)ids, lens);
    for (int k = 0; ids && k < n; k++) free(ids[k]);
    free(texts), free(ids), free(lens);
    return r;
}

static gb_status gb__ses_spec_iter_from(gb_spec *sp, const gb__json_json *it, const char *where, int depth) {
    const char *name = gb__json_string(gb__json_get(it, "name")), *over = gb__json_string(gb__json_get(it, "over"));
    const gb__json_json *items = gb__json_get(it, "items"), *body = gb__json_get(it, "body");
    const gb__json_json *prompts = gb__json_get(it, "prompts");
    if (!name || !gb__json_is_array(body) || (!over && !gb__json_is_array(items) && !gb__json_is_array(prompts)))
        return gb__ses_spec_bad(where, "a loop needs \"name\", \"items\" (numbers, or lists of numbers of one length), "
                                   "\"prompts\" (texts or lists of ids) or \"over\" (an enclosing loop's name, or a "
                                   "name an earlier trace bound), and \"body\" (steps)");
    if (depth >= 16) return gb__ses_spec_bad(where, "loops nest 16 deep at most");
    if (!over && !items) {
        gb_status st = gb__json_size(prompts) > 0 ? gb__ses_spec_prompts_from(sp, name, prompts, where)
                                                  : gb_spec_iter_prompts(sp, name, 0, NULL, NULL, NULL); /* its error */
        if (st == GB_OK) st = gb__ses_spec_steps_from(sp, body, depth + 1);
        return st == GB_OK ? gb_spec_end(sp) : st;
    }
    float *values = NULL;
    int64_t n = items ? gb__json_size(items) : 0, width = 0;
    for (int64_t r = 0; !over && r < n; r++) {
        const gb__json_json *row = gb__json_at(items, (int)r);
        int64_t w = gb__json_is_array(row) ? gb__json_size(row) : 0;
        if (r == 0) width = w;
        if (w != width || (w == 0 && gb__json_is_array(row))) {
            arrfree(values);
            return gb__ses_spec_bad(where, "loop items must be all numbers, or all lists of numbers of one (non-zero) length");
        }
        for (int64_t c = 0; c < (w ? w : 1); c++) {
            double x;
            if (!gb__json_number(w ? gb__json_at(row, (int)c) : row, &x)) {
                arrfree(values);
                return gb__ses_spec_bad(where, "loop items must be numbers");
            }
            if (!GB_ARR_PUT(values, (float)x, "spec_from_json")) return arrfree(values), GB_ERR_ALLOC;
        }
    }
    gb_status st = gb_spec_iter(sp, name, n, width, over ? NULL : values ? values : (float[]){0}, over);
    arrfree(values);
    if (st == GB_OK) st = gb__ses_spec_steps_from(sp, body, depth + 1);
    return st == GB_OK ? gb_spec_end(sp) : st;
}

static gb_status gb__ses_spec_steps_from(gb_spec *sp, const gb__json_json *arr, int depth) {
    for (int i = 0; i < gb__json_size(arr); i++) {
        const gb__json_json *step = gb__json_at(arr, i), *t;
        char where[32];
        snprintf(where, sizeof where, "step %d", i + 1);
        bool stop = false;
        gb_status r;
        if ((t = gb__json_get(step, "trace"))) r = gb__ses_spec_trace_from(sp, t, where);
        else if ((t = gb__json_get(step, "log")) && gb__json_string(t)) r = gb_spec_log(sp, gb__json_string(t));
        else if ((t = gb__json_get(step, "stop")) && gb__json_bool(t, &stop) && stop) r = gb_spec_stop(sp);
        else if ((t = gb__json_get(step, "iter"))) r = gb__ses_spec_iter_from(sp, t, where, depth);
        else r = gb__ses_spec_bad(where, "a step is {\"trace\": {...}}, {\"log\": TEXT}, {\"stop\": true} or {\"iter\": {...}}");
        if (r != GB_OK) return r;
    }
    return GB_OK;
}

gb_spec *gb_spec_from_json(const char *text, size_t len) {
    gb__json_json *root = gb__json_parse(text, len, "session");
    if (!root) return NULL;
    const gb__json_json *steps = gb__json_get(root, "session");
    gb_spec *sp = NULL;
    if (!gb__json_is_array(steps) || gb__json_size(steps) < 1)
        gb__ses_spec_bad("request", "expected {\"session\": [steps]} with at least one step");
    else if ((sp = gb_spec_new()) && gb__ses_spec_steps_from(sp, steps, 0) != GB_OK) {
        gb_spec_free(sp);
        sp = NULL;
    }
    gb__json_free(root);
    return sp;
}

/* ---- building a session --------------------------------------------------- */

/* What the builder keeps of each trace to report its runs. */
typedef struct gb__ses_spec_built {
    gb_lm *lm;
    int nstmts;
    gb_val **vals;  /* each statement's value */
    char *const *stmts; /* each statement's text (the spec's) */
    char **names;   /* each statement's reported name */
    bool generated;
} gb__ses_spec_built;

typedef struct gb__ses_spec_report {
    gb__ses_spec_built *traces; /* stb_ds array, by trace number - 1 */
    gb_spec_result_fn fn;
    void *ctx;
} gb__ses_spec_report;

static void gb__ses_spec_report_free(void *ctx) {
    gb__ses_spec_report *rep = ctx;
    for (ptrdiff_t i = 0; i < arrlen(rep->traces); i++) {
        for (int k = 0; rep->traces[i].names && k < rep->traces[i].nstmts; k++) free(rep->traces[i].names[k]);
        free(rep->traces[i].names), free(rep->traces[i].vals);
    }
    arrfree(rep->traces);
    free(rep);
}

/* Each saved statement's value under its name, then generator.output. */
static gb_status gb__ses_spec_result(void *ctx, gb_trace *tr, int number, int depth, const int64_t *items, bool scan,
                                     int64_t new_tokens) {
    gb__ses_spec_report *rep = ctx;
    gb__ses_spec_built *b = &rep->traces[number - 1];
    /* a block (a multi-line statement) reports the names its lines bind,
     * each with the value bound last, as glassbox trace prints them */
    char ***bound = calloc((size_t)b->nstmts + 1, sizeof *bound);
    int *nbound = calloc((size_t)b->nstmts + 1, sizeof *nbound), cap = 1;
    bool oom = !bound || !nbound;
    for (int i = 0; !oom && i < b->nstmts; i++) {
        if (strchr(b->stmts[i], '\n') && !(bound[i] = gb_statement_names(b->stmts[i], &nbound[i]))) oom = true;
        cap += bound[i] ? nbound[i] : 1;
    }
    const char **names = oom ? NULL : calloc((size_t)cap, sizeof *names);
    gb_tensor **values = oom ? NULL : calloc((size_t)cap, sizeof *values);
    gb_status st = names && values ? GB_OK : gb__fail(GB_ERR_ALLOC, "session: out of memory");
    int n = 0;
    for (int i = 0; st == GB_OK && !scan && i < b->nstmts; i++) {
        for (int k = 0; bound[i] && k < nbound[i]; k++) {
            gb_val *v = gb_trace_name(tr, bound[i][k]);
            if (v && gb_val_saved(v) && (values[n] = gb_value(v))) names[n++] = bound[i][k];
            else gb_clear_error(); /* saved in a branch that did not run: not reported */
        }
        if (!bound[i] && b->vals[i] && (values[n] = gb_value(b->vals[i]))) names[n++] = b->names[i];
    }
    /* saved values never produced, under the names their values would have */
    int nmiss = scan ? 0 : gb_exec_unproduced(gb_trace_exec(tr), NULL, 0);
    gb_val **miss = calloc((size_t)nmiss + 1, sizeof *miss);
    const char **missing = calloc((size_t)nmiss + 1, sizeof *missing);
    if ((!miss || !missing) && st == GB_OK) st = gb__fail(GB_ERR_ALLOC, "session: out of memory");
    if (miss && nmiss) gb_exec_unproduced(gb_trace_exec(tr), miss, nmiss);
    for (int j = 0; miss && missing && bound && j < nmiss; j++) {
        for (int i = 0; !missing[j] && i < b->nstmts; i++) {
            for (int k = 0; bound[i] && k < nbound[i] && !missing[j]; k++)
                if (gb_trace_name(tr, bound[i][k]) == miss[j]) missing[j] = bound[i][k];
            if (!bound[i] && b->vals[i] == miss[j]) missing[j] = b->names[i];
        }
        if (!missing[j]) missing[j] = gb_val_text(miss[j]);
    }
    gb_tensor *gen = st == GB_OK && !scan && b->generated ? gb_trace_generated(tr) : NULL;
    if (gen) values[n] = gen, names[n++] = "generator.output";
    int64_t rows = gen && gb_lm_tokenizer(b->lm) ? gb_tensor_dim(gen, 0) : 0;
    char **texts = calloc((size_t)rows + 1, sizeof *texts);
    if (!texts && st == GB_OK) st = gb__fail(GB_ERR_ALLOC, "session: out of memory");
    for (int64_t i = 0; texts && i < rows; i++)
        if (gb_lm_text(b->lm, gen, i, 0, &texts[i]) != GB_OK) rows = i;
    /* a scan's graph and each statement's shape, as plain data a server sends */
    char *graph = scan ? gb_trace_graph(tr) : NULL;
    int *ndims = scan ? calloc((size_t)b->nstmts + 1, sizeof *ndims) : NULL;
    int64_t *shapes = scan ? calloc((size_t)b->nstmts * GB_MAX_DIMS + 1, sizeof *shapes) : NULL;
    for (int i = 0; ndims && shapes && i < b->nstmts; i++) {
        bool named = b->names[i] && strncmp(b->names[i], "statement.", 10); /* the trace command reports these */
        if (!b->vals[i] || gb_val_shape(b->vals[i], &ndims[i], shapes + (size_t)i * GB_MAX_DIMS) != GB_OK)
            ndims[i] = named || (b->vals[i] && gb_val_saved(b->vals[i])) ? -1 : -2;
    }
    if (st == GB_OK) gb_clear_error(); /* the shapes' errors: unknown shapes, not failures */
    if (st == GB_OK && scan && (!graph || !ndims || !shapes)) st = gb__fail(GB_ERR_ALLOC, "session: out of memory");
    gb_spec_result r = {number, depth, items, n, names, values, texts ? (int)rows : 0, (const char *const *)texts,
                        miss && missing ? nmiss : 0, missing, gen ? new_tokens : -1, scan, tr, b->nstmts, (const char *const *)b->stmts, b->vals, graph, ndims, shapes};
    if (st == GB_OK && rep->fn) st = rep->fn(rep->ctx, &r);
    for (int64_t i = 0; texts && i < rows; i++) free(texts[i]);
    for (int i = 0; bound && i < b->nstmts; i++) {
        for (int k = 0; bound[i] && k < nbound[i]; k++) free(bound[i][k]);
        free(bound[i]);
    }
    free(bound), free(nbound), free(names), free(values), free(texts), free(graph), free(ndims), free(shapes);
    free(miss), free(missing);
    return st;
}

static bool gb__ses_spec_eos(int64_t id, void *lm) { return gb_lm_is_eos(lm, id); }

static gb_status gb__ses_spec_limit(gb_spec_limits *lim, const char *fmt, long long got, long long max) {
    if (lim) lim->exceeded = true;
    char msg[256];
    snprintf(msg, sizeof msg, fmt, got, max);
    return gb__fail(GB_ERR_ARG, "limit: %s", msg);
}

/* One trace of the spec into s: its prompts encoded, its statements parsed
 * as the CLI's trace command does (each prompt after the first opens an
 * invoke; statements apply to the last prompt's invoke). */
static gb_status gb__ses_spec_build_trace(gb_session *s, const gb__ses_spec_step *st, gb_lm *lm, gb_spec_limits *lim,
                                      gb__ses_spec_built *b, const gb__ses_spec_step *sp_steps, const int *open) {
    int np = (int)arrlen(st->prompts), ns = (int)arrlen(st->stmts);
    if (np < 1) return gb__fail(GB_ERR_ARG, "give a prompt with --ids 1,2,3 or -p TEXT (several: invokes)");
    if (lim && lim->max_batch && np > lim->max_batch)
        return gb__ses_spec_limit(lim, "%lld invokes, at most %lld", np, lim->max_batch);
    if (lim && lim->max_new_tokens && st->max_new > lim->max_new_tokens)
        return gb__ses_spec_limit(lim, "%lld new tokens, at most %lld", st->max_new, lim->max_new_tokens);
    /* a prompt that is a loop's item: that loop's prompts, each the input of one run */
    const gb__ses_spec_step *loop = NULL;
    for (int i = 0; i < np; i++) {
        if (!st->prompts[i].item) continue;
        for (ptrdiff_t k = arrlen(open) - 1; k >= 0 && !loop; k--)
            if (!strcmp(sp_steps[open[k]].text, st->prompts[i].item) && sp_steps[open[k]].prompts) loop = &sp_steps[open[k]];
        if (!loop)
            return gb__fail(GB_ERR_ARG, "session: the prompt is the item of loop '%s', and no enclosing loop over "
                                        "prompts is called so", st->prompts[i].item);
        if (np > 1)
            return gb__fail(GB_ERR_ARG, "session: a trace whose prompt is loop '%s''s item takes no other prompt",
                            st->prompts[i].item);
    }
    const gb__ses_spec_prompt *prompts = loop ? loop->prompts : st->prompts;
    int ninputs = loop ? (int)arrlen(loop->prompts) : np;
    gb_tensor **inputs = gb__calloc((size_t)ninputs, sizeof *inputs, "session");
    if (!inputs) return GB_ERR_ALLOC;
    gb_status r = GB_OK;
    int64_t tokens = 0;
    for (int i = 0; r == GB_OK && i < ninputs; i++) {
        const gb__ses_spec_prompt *p = &prompts[i];
        if (loop) tokens = 0; /* each item is one run's prompt */
        if (p->text) {
            gb_tensor *mask = NULL;
            r = gb_lm_encode(lm, 1, (const char *const *)&p->text, &inputs[i], &mask);
            gb_tensor_free(mask);
        } else if (!(inputs[i] = gb_from_data(p->ids, 2, (int64_t[]){1, arrlen(p->ids)}, GB_DTYPE_I64))) {
            r = gb_last_status();
        }
        if (r == GB_OK) tokens += gb_tensor_dim(inputs[i], 1);
        if (r == GB_OK && lim && lim->max_tokens && tokens > lim->max_tokens)
            r = gb__ses_spec_limit(lim, "%lld prompt tokens in one trace, at most %lld", tokens, lim->max_tokens);
    }
    bool batched = np > 1;
    gb_trace *tr = r == GB_OK ? gb_session_trace(s, gb_lm_module(lm), batched || loop ? NULL : inputs[0]) : NULL;
    if (r == GB_OK && !tr) r = gb_last_status();
    if (r == GB_OK && loop) r = gb_session_input(s, tr, loop->text, ninputs, inputs);
    b->lm = lm;
    b->nstmts = ns;
    b->stmts = st->stmts;
    b->vals = gb__calloc((size_t)ns + 1, sizeof *b->vals, "session");
    b->names = gb__calloc((size_t)ns + 1, sizeof *b->names, "session");
    if (r == GB_OK && (!b->vals || !b->names)) r = GB_ERR_ALLOC;
    for (int i = 0, p = 0; r == GB_OK && i < ns; i++) {
        while (batched && p < np && st->prompts[p].first == i) {
            gb_invoke_end(tr);
            r = gb_invoke(tr, inputs[p++]);
        }
        if (r == GB_OK) r = gb_trace_statement(tr, st->stmts[i], "-e", i + 1, &b->vals[i]);
        if (r == GB_OK && !(b->names[i] = gb_statement_name(st->stmts[i]))) {
            if ((b->names[i] = gb__malloc(32, "session"))) snprintf(b->names[i], 32, "statement.%d", i + 1);
            else r = GB_ERR_ALLOC;
        }
    }
    if (tr) gb_invoke_end(tr);
    for (int p = 0; tr && batched && r == GB_OK && p < np; p++) /* prompts after the last statement */
        if (st->prompts[p].first == ns) {
            r = gb_invoke(tr, inputs[p]);
            gb_invoke_end(tr);
        }
    if (tr) { /* the language model's policy: its EOS ends rows, its pad id pads invokes and finished rows */
        gb_trace_set_stop_tokens(tr, gb__ses_spec_eos, lm);
        gb_trace_set_pad_id(tr, gb_lm_pad_id(lm));
        gb_trace_set_seed(tr, st->sampling.seed);
    }
    if (r == GB_OK && st->max_new) {
        gb_decode_opts o = gb_lm_decode_defaults(lm);
        o.max_new_tokens = st->max_new;
        o.sampling = st->sampling;
        b->generated = true;
        r = gb_session_generate(s, tr, &o);
    }
    for (int i = 0; i < ninputs; i++) gb_tensor_free(inputs[i]);
    free(inputs);
    return r;
}

gb_session *gb_spec_session(const gb_spec *sp, gb_lm *(*lm_of)(void *ctx, const char *name), void *lm_ctx,
                            gb_spec_limits *limits, gb_spec_result_fn result, void *result_ctx) {
    if (limits) limits->exceeded = false;
    if (sp->depth) return gb__fail_null(GB_ERR_STATE, "session: a loop is still open");
    gb_session *s = gb_session_new();
    gb__ses_spec_report *rep = s ? gb__calloc(1, sizeof *rep, "session") : NULL;
    if (!rep) {
        gb_session_free(s);
        return NULL;
    }
    *rep = (gb__ses_spec_report){.fn = result, .ctx = result_ctx};
    s->result = gb__ses_spec_result, s->result_ctx = rep, s->result_free = gb__ses_spec_report_free;
    int ntraces = 0;
    for (ptrdiff_t i = 0; i < arrlen(sp->steps); i++)
        ntraces += sp->steps[i].kind == GB__SPEC_TRACE;
    int64_t runs = 0, *mult = NULL; /* trace runs: loop sizes multiplied */
    int *open = NULL;                /* the spec's open loops, innermost last */
    gb_status r = GB_ARR_PUT(mult, 1, "spec_session") ? GB_OK : GB_ERR_ALLOC;
    for (ptrdiff_t i = 0; r == GB_OK && i < arrlen(sp->steps); i++) {
        const gb__ses_spec_step *st = &sp->steps[i];
        switch (st->kind) {
        case GB__SPEC_TRACE: {
            if (!GB_ARR_PUT(rep->traces, ((gb__ses_spec_built){0}), "spec_session")) {
                r = GB_ERR_ALLOC;
                break;
            }
            gb_lm *lm = lm_of(lm_ctx, st->model);
            if (!lm) {
                r = gb_last_status();
                break;
            }
            r = gb__ses_spec_build_trace(s, st, lm, limits, &arrlast(rep->traces), sp->steps, open);
            if (r != GB_OK && ntraces > 1) r = gb__ses_sess_fail(r, (int)arrlen(rep->traces));
            runs += arrlast(mult);
            break;
        }
        case GB__SPEC_LOG: r = gb_session_log(s, st->text, NULL); break;
        case GB__SPEC_STOP: r = gb_session_stop(s); break;
        case GB__SPEC_ITER: {
            gb_tensor *items = NULL;
            int64_t n = st->n;
            if (!GB_ARR_PUT(open, (int)i, "spec_session")) {
                r = GB_ERR_ALLOC;
                break;
            }
            if (st->prompts) { /* the item in statements: the prompt's number */
                items = gb_arange(0, (double)n, 1);
                if (!items) {
                    r = gb_last_status();
                    break;
                }
            } else if (!st->over) {
                int64_t shape[2] = {st->n, st->width};
                items = gb_from_data(st->values ? st->values : (float[]){0}, st->width ? 2 : 1, shape, GB_DTYPE_F32);
                if (!items) {
                    r = gb_last_status();
                    break;
                }
            } else {
                n = 1; /* the outer item's rows: known when it runs; counted once */
            }
            r = gb_session_iter(s, st->text, items, st->over);
            gb_tensor_free(items);
            if (r == GB_OK && !GB_ARR_PUT(mult, arrlast(mult) * n, "spec_session")) r = GB_ERR_ALLOC;
            break;
        }
        case GB__SPEC_END:
            r = gb_session_iter_end(s);
            (void)arrpop(mult), (void)arrpop(open);
            break;
        }
        if (r == GB_OK && limits && limits->max_runs && runs > limits->max_runs)
            r = gb__ses_spec_limit(limits, "%lld trace runs, at most %lld", runs, limits->max_runs);
    }
    arrfree(mult), arrfree(open);
    if (r != GB_OK) {
        gb_session_free(s);
        return NULL;
    }
    return s;
}
