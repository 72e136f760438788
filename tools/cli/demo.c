/* `glassbox demo [MODEL]`: the main demo, nnsight's walkthrough ("Bigger")
 * step by step on a real model: by default the GPT-2 glassbox trained itself
 * on facts (models/gpt2-facts), any GPT-2 or Llama checkpoint otherwise.
 *
 * Every step prints the nnsight statement (or, where statements cannot say
 * it, the C call) it defines, then what the model did. docs/walkthrough.md
 * follows this file step by step; tests/test_demo.c checks every prediction
 * it prints. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"


static const char EIFFEL[] = "The Eiffel Tower is in the city of";
static const char COLOSSEUM[] = "The Colosseum is in the city of";
static const char EIFFEL_LOCATED[] = "The Eiffel Tower is located in the city of";
static const char VATICAN[] = "Vatican is located in the city of";

typedef struct demo {
    gb_lm *lm;
    gb_module *net;
    gb_tokenizer *tok; /* the lm's */
    const char *layers; /* the block list: "transformer.h" or "model.layers" */
    const char *embed;  /* the token embedding */
    int nlayers;
    int line;   /* statements are numbered in errors: "demo:12: ..." */
    bool quiet; /* define statements without printing them */
    int step;   /* the demo's sections are numbered as they print */
} demo;

static int demo_fail(void) {
    fprintf(stderr, "glassbox demo: %s\n", gb_last_error());
    return 1;
}

/* One token as quoted text ("' Paris'") into buf. */
static const char *token_text(demo *d, int64_t id, char *buf, size_t size) {
    char *t = NULL;
    int32_t i = (int32_t)id;
    if (gb_tokenizer_decode(d->tok, &i, 1, false, &t, NULL) == GB_OK) snprintf(buf, size, "'%s'", t);
    else snprintf(buf, size, "#%lld", (long long)id);
    free(t);
    return buf;
}

/* The first token of text (" Paris" -> its id), or -1. */
static int64_t first_token(demo *d, const char *text) {
    int32_t *ids = NULL;
    size_t n = 0;
    int64_t id = -1;
    if (gb_tokenizer_encode(d->tok, text, strlen(text), false, &ids, &n) == GB_OK && n > 0) id = ids[0];
    free(ids);
    return id;
}

/* text as ids [1, T], i64. */
static gb_tensor *encode(demo *d, const char *text) {
    gb_tensor *ids = NULL, *mask = NULL;
    gb_lm_encode(d->lm, 1, &text, &ids, &mask);
    gb_tensor_free(mask);
    return ids;
}

/* Print and define one statement; its value in *out (may be NULL). */
static gb_status stmt(demo *d, gb_trace *tr, gb_val **out, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static gb_status stmt(demo *d, gb_trace *tr, gb_val **out, const char *fmt, ...) {
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (!d->quiet) printf("    >>> %s\n", text);
    return gb_trace_statement(tr, text, "demo", ++d->line, out);
}

/* A numbered section header. */
static void section(demo *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void section(demo *d, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    d->step++;
    printf("%s== %d. ", d->step > 1 ? "\n" : "", d->step);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* The last position's prediction of saved argmax ids [1, T] as text. */
static const char *last_prediction(demo *d, gb_val *ids, char *buf, size_t size) {
    gb_tensor *t = gb_value(ids);
    double id = -1;
    if (!t || gb_tensor_get(t, (int64_t[]){0, gb_tensor_dim(t, 1) - 1}, &id) != GB_OK) return "(none)";
    return token_text(d, (int64_t)id, buf, size);
}

/* The k most likely next tokens of saved logits [V], with probabilities. */
static void show_top(demo *d, gb_tensor *logits, int k) {
    gb_tensor *p = gb_softmax(logits, -1);
    const float *pv = gb_tensor_data(p);
    int64_t v = gb_tensor_dim(p, 0);
    for (int r = 0, prev = -1; r < k; r++) {
        int best = -1;
        for (int64_t i = 0; i < v; i++)
            if ((prev < 0 || pv[i] < pv[prev] || (pv[i] == pv[prev] && i > prev)) && (best < 0 || pv[i] > pv[best]))
                best = (int)i;
        char buf[64];
        printf("      %-12s p = %.3f\n", token_text(d, best, buf, sizeof buf), (double)pv[best]);
        prev = best;
    }
    gb_tensor_free(p);
}

/* Decode generated ids [1, T] from position `from` on. */
static void show_ids(demo *d, gb_tensor *ids, int64_t from) {
    char *text = NULL;
    if (gb_lm_text(d->lm, ids, 0, from, &text) == GB_OK) printf("'%s'\n", text);
    else printf("(cannot decode: %s)\n", gb_last_error());
    free(text);
}

static bool lm_eos(int64_t id, void *lm) { return gb_lm_is_eos(lm, id); }

/* 1-2. The prediction, and an MLP ablated (walkthrough cell 90). */
static gb_status step_predict(demo *d, gb_tensor *eiffel) {
    section(d, "What comes next? \"%s\"", EIFFEL);
    gb_trace *tr = gb_trace_new(d->net, eiffel);
    gb_val *logits = NULL;
    gb_status st = stmt(d, tr, &logits, "logits = lm_head.output[0, -1].save()");
    if (st == GB_OK) st = gb_trace_run(tr);
    if (st == GB_OK) show_top(d, gb_value(logits), 3);
    gb_trace_free(tr);
    if (st != GB_OK) return st;

    /* The walkthrough ablates the last MLP; on the bundled model the fact is
     * stored earlier, and ablating the first MLP is what moves it. */
    static const char *const which[] = {"-1", "0"};
    for (int i = 0; st == GB_OK && i < 2; i++) {
        section(d, "Ablate the %s layer's MLP", i ? "first" : "last");
        tr = gb_trace_new(d->net, eiffel);
        gb_val *ids = NULL;
        st = stmt(d, tr, NULL, "%s[%s].mlp.output[0][:] = 0", d->layers, which[i]);
        if (st == GB_OK) st = stmt(d, tr, &ids, "token_ids = lm_head.output.argmax(dim=-1).save()");
        if (st == GB_OK) st = gb_trace_run(tr);
        char buf[64];
        if (st == GB_OK)
            printf("    prediction with the %s MLP ablated: %s\n", i ? "first" : "last", last_prediction(d, ids, buf, sizeof buf));
        gb_trace_free(tr);
    }
    return st;
}

/* 3. Two invokes in one batch: the ablation and its control (cell 91). */
static gb_status step_invokes(demo *d, gb_tensor *eiffel) {
    section(d, "Two invokes, one forward pass: the first MLP ablated, and a control");
    gb_trace *tr = gb_trace_new(d->net, NULL);
    gb_val *ablated = NULL, *original = NULL;
    printf("    with tracer.invoke(\"%s\"):\n", EIFFEL);
    gb_status st = gb_invoke(tr, eiffel);
    if (st == GB_OK) st = stmt(d, tr, NULL, "%s[0].mlp.output[0][:] = 0", d->layers);
    if (st == GB_OK) st = stmt(d, tr, &ablated, "token_ids_intervention = lm_head.output.argmax(dim=-1).save()");
    gb_invoke_end(tr);
    printf("    with tracer.invoke(\"%s\"):\n", EIFFEL);
    if (st == GB_OK) st = gb_invoke(tr, eiffel);
    if (st == GB_OK) st = stmt(d, tr, &original, "token_ids_original = lm_head.output.argmax(dim=-1).save()");
    gb_invoke_end(tr);
    if (st == GB_OK) st = gb_trace_run(tr);
    char buf[64];
    if (st == GB_OK) {
        printf("    original prediction: %s\n", last_prediction(d, original, buf, sizeof buf));
        printf("    modified prediction: %s\n", last_prediction(d, ablated, buf, sizeof buf));
    }
    gb_trace_free(tr);
    return st;
}

/* 4. Activation patching across invokes: the Colosseum prompt's last hidden
 *    state at layer L written into the Eiffel Tower prompt's, for each L. */
static gb_status step_patch(demo *d, gb_tensor *eiffel) {
    gb_tensor *colosseum = encode(d, COLOSSEUM);
    if (!colosseum) return gb_last_status();
    section(d, "Patch \"%s\" into \"%s\", one layer at a time", COLOSSEUM, EIFFEL);
    gb_status st = GB_OK;
    char buf[64];
    for (int layer = 0; st == GB_OK && layer < d->nlayers; layer++) {
        d->quiet = layer > 0; /* the statements are the same for every layer but its number */
        gb_trace *tr = gb_trace_new(d->net, NULL);
        gb_val *patched = NULL;
        if (!d->quiet) printf("    with tracer.invoke(\"%s\"):\n", COLOSSEUM);
        st = gb_invoke(tr, colosseum);
        if (st == GB_OK) st = stmt(d, tr, NULL, "h = %s[%d].output[0][:, -1, :]", d->layers, layer);
        gb_invoke_end(tr);
        if (!d->quiet) printf("    with tracer.invoke(\"%s\"):\n", EIFFEL);
        if (st == GB_OK) st = gb_invoke(tr, eiffel);
        if (st == GB_OK) st = stmt(d, tr, NULL, "%s[%d].output[0][:, -1, :] = h", d->layers, layer);
        if (st == GB_OK) st = stmt(d, tr, &patched, "patched = lm_head.output.argmax(dim=-1).save()");
        gb_invoke_end(tr);
        if (!d->quiet) printf("    (and the same for every layer)\n");
        if (st == GB_OK) st = gb_trace_run(tr);
        if (st == GB_OK) printf("    patched at %s[%d]: %s\n", d->layers, layer, last_prediction(d, patched, buf, sizeof buf));
        gb_trace_free(tr);
    }
    d->quiet = false;
    gb_tensor_free(colosseum);
    return st;
}

/* 5. Gradients of the answer's logit with respect to each layer's output. */
static gb_status step_gradients(demo *d, gb_tensor *eiffel, int64_t answer) {
    char buf[64];
    section(d, "Gradient of the logit of %s with respect to each layer's output",
           token_text(d, answer, buf, sizeof buf));
    gb_trace *tr = gb_trace_new(d->net, eiffel);
    gb_val **grads = calloc((size_t)d->nlayers, sizeof *grads);
    gb_status st = grads ? stmt(d, tr, NULL, "%s.output.requires_grad_()", d->embed) : GB_ERR_ALLOC;
    for (int l = 0; st == GB_OK && l < d->nlayers; l++)
        st = stmt(d, tr, &grads[l], "g%d = %s[%d].output[0].grad.save()", l, d->layers, l);
    if (st == GB_OK) st = stmt(d, tr, NULL, "lm_head.output[0, -1, %lld].backward()", (long long)answer);
    if (st == GB_OK) st = gb_trace_run(tr);
    for (int l = 0; st == GB_OK && l < d->nlayers; l++) {
        gb_tensor *g = gb_value(grads[l]), *last = gb_select(g, 1, -1), *sq = gb_mul(last, last), *s = gb_sum_all(sq);
        double v = 0;
        gb_item(s, &v);
        printf("    |g%d[0, -1]| = %.4f\n", l, sqrt(v));
        gb_tensor_free(s), gb_tensor_free(sq), gb_tensor_free(last);
    }
    free(grads);
    gb_trace_free(tr);
    return st;
}

/* 6. Early stop: run up to layer 0 only. */
static gb_status step_stop(demo *d, gb_tensor *eiffel) {
    section(d, "Stop after the first layer");
    gb_trace *tr = gb_trace_new(d->net, eiffel);
    gb_val *h0 = NULL, *logits = NULL;
    gb_status st = stmt(d, tr, &h0, "h0 = %s[0].output[0].save()", d->layers);
    if (st == GB_OK) st = stmt(d, tr, NULL, "%s[0].output.stop()", d->layers);
    if (st == GB_OK) st = stmt(d, tr, &logits, "logits = lm_head.output.save()");
    if (st == GB_OK) st = gb_trace_run(tr);
    if (st == GB_OK) {
        gb_tensor *h = gb_value(h0);
        printf("    h0: [%lld, %lld, %lld]\n", (long long)gb_tensor_dim(h, 0), (long long)gb_tensor_dim(h, 1),
               (long long)gb_tensor_dim(h, 2));
        printf("    logits: %s\n", gb_value(logits) ? "computed" : gb_last_error());
    }
    gb_trace_free(tr);
    return st;
}

/* 7. Generation with interventions at one step (.next()) and at every step (.all()). */
static gb_status step_generate(demo *d, gb_tensor *eiffel, int64_t forced) {
    enum { NEW = 6 };
    int64_t prompt_len = gb_tensor_dim(eiffel, 1);
    char buf[64];
    section(d, "Generation, up to %d new tokens", NEW);
    gb_status st = GB_OK;
    for (int variant = 0; st == GB_OK && variant < 3; variant++) {
        gb_trace *tr = gb_trace_new(d->net, eiffel);
        gb_trace_set_stop_tokens(tr, lm_eos, d->lm);
        if (variant == 0) printf("    plain:\n");
        if (variant == 1) {
            printf("    at the second step only, push %s up:\n", token_text(d, forced, buf, sizeof buf));
            st = stmt(d, tr, NULL, "lm_head.next().output[0, -1, %lld] = 100", (long long)forced);
        }
        if (variant == 2) {
            printf("    at every step, ablate the first MLP:\n");
            st = stmt(d, tr, NULL, "%s[0].mlp.all().output[0][:] = 0", d->layers);
        }
        if (st == GB_OK) st = gb_trace_generate(tr, NEW);
        if (st == GB_OK) {
            printf("      ");
            show_ids(d, gb_trace_generated(tr), prompt_len);
        }
        gb_trace_free(tr);
    }
    return st;
}

/* 8. Persistent edits (cells 96-98): the last hidden state of a Paris
 *    prompt written into every run of the edited model. */
static gb_status step_edit(demo *d) {
    section(d, "A persistent edit");
    gb_tensor *located = encode(d, EIFFEL_LOCATED), *vatican = encode(d, VATICAN);
    gb_trace *src = located ? gb_trace_new(d->net, located) : NULL, *editor = NULL, *tr = NULL;
    gb_val *hs = NULL, *ids = NULL;
    char buf[64], path[64];
    snprintf(path, sizeof path, "%s.%d", d->layers, d->nlayers - 1);
    printf("    with model.trace(\"%s\"):\n", EIFFEL_LOCATED);
    gb_status st = src && vatican ? stmt(d, src, &hs, "hs = %s[-1].output[0][:, -1, :].save()", d->layers)
                                  : gb_last_status();
    if (st == GB_OK) st = gb_trace_run(src);
    if (st == GB_OK) {
        printf("    with model.edit() as edited:  (hs comes from outside the editor: a C call)\n");
        printf("    >>> gb_set_index(gb_val_index(gb_output(editor, \"%s\"), \"[0]\"), \"[:, -1, :]\", "
               "gb_const(editor, hs))\n", path);
        editor = gb_trace_new(d->net, NULL);
        gb_set_index(gb_val_index(gb_output(editor, path), "[0]"), "[:, -1, :]", gb_const(editor, gb_value(hs)));
        tr = gb_trace_new(d->net, vatican);
        printf("    with model.trace(\"%s\"):\n", VATICAN);
        st = stmt(d, tr, &ids, "token_ids = lm_head.output.argmax(dim=-1).save()");
    }
    static const char *const label[] = {"original model", "edited model", "edits cleared"};
    for (int pass = 0; st == GB_OK && pass < 3; pass++) {
        if (pass == 1) printf("    >>> gb_trace_use_edits(tr, editor)\n");
        if (pass == 2) printf("    >>> gb_trace_use_edits(tr, NULL)\n");
        st = gb_trace_use_edits(tr, pass == 1 ? editor : NULL);
        if (st == GB_OK) st = gb_trace_run(tr);
        if (st == GB_OK) printf("    %-15s %s\n", label[pass], last_prediction(d, ids, buf, sizeof buf));
    }
    gb_trace_free(tr);
    gb_trace_free(editor);
    gb_trace_free(src);
    gb_tensor_free(vatican);
    gb_tensor_free(located);
    return st;
}

#define DEMO_OPTS(X) GB_CLI_OPT_TOKENIZER(X, DEMO_TOKENIZER)
enum { DEMO_OPTS(GB_CLI_OPT_ENUM) };
static const gb_cli_opt demo_opts[] = {DEMO_OPTS(GB_CLI_OPT_INIT)};

static int demo_main(const gb_cli_args *a) {
    const char *path = gb_cli_model("demo", a->npos ? a->pos[0] : NULL);
    if (!path) return GB_CLI_ERROR;
    demo d = {.lm = gb_cli_open_lm("demo", path, gb_cli_str(a, DEMO_TOKENIZER), false)};
    if (!d.lm) return GB_CLI_ERROR;
    if (!(d.tok = gb_lm_tokenizer(d.lm))) {
        fprintf(stderr, "glassbox demo: the model in %s has no tokenizer (tokenizer.json, or vocab.json with merges.txt)\n",
                gb_model_dir(gb_lm_model(d.lm)));
        gb_lm_free(d.lm);
        return 1;
    }
    int rc = 1;
    gb_tensor *eiffel = NULL;
    d.net = gb_lm_module(d.lm);
    d.layers = gb_model_part(gb_lm_model(d.lm), GB_PART_LAYERS);
    d.embed = gb_model_part(gb_lm_model(d.lm), GB_PART_EMBED);
    d.nlayers = gb_module_num_children(gb_module_find(d.net, d.layers));

    char *tree = gb_module_repr(d.net);
    printf("== %s: %lld parameters\n%s\n\n", path, (long long)gb_module_num_parameters(d.net), tree);
    free(tree);

    int64_t paris = first_token(&d, " Paris"), rome = first_token(&d, " Rome");
    if (!(eiffel = encode(&d, EIFFEL)) || paris < 0 || rome < 0) goto done;
    if (step_predict(&d, eiffel) != GB_OK || step_invokes(&d, eiffel) != GB_OK || step_patch(&d, eiffel) != GB_OK ||
        step_gradients(&d, eiffel, paris) != GB_OK || step_stop(&d, eiffel) != GB_OK ||
        step_generate(&d, eiffel, rome) != GB_OK || step_edit(&d) != GB_OK)
        goto done;
    rc = 0;
done:
    if (rc) demo_fail();
    gb_tensor_free(eiffel);
    gb_lm_free(d.lm);
    return rc;
}

const gb_cli_cmd gb_cli_cmd_demo = {
    "demo", demo_main, "[MODEL]", 0, 1, "look inside a model, step by step (nnsight's walkthrough)",
    "Each step prints the statement it runs and what it shows. MODEL may be any GPT-2 or Llama checkpoint with "
    "a tokenizer; it defaults to the bundled GPT-2 trained on facts (models/" GB_CLI_MODEL_NAME ").",
    demo_opts, sizeof demo_opts / sizeof *demo_opts};
