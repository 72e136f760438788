/* The experiments of docs/recipes.md in C, on any GPT-2 or Llama checkpoint
 * (the bundled models/gpt2-facts by default): the logit lens, activation
 * patching, steering with a vector, attribution by gradients, attention
 * patterns. Each recipe is one function written with the tracing API only;
 * module paths come from gb_model_part, so the same code runs on both
 * families. tests/test_lens.c checks what it prints against PyTorch.
 *
 * Run: build/examples/recipes [MODEL] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glassbox.h"

static const char EIFFEL[] = "The Eiffel Tower is in the city of";
static const char COLOSSEUM[] = "The Colosseum is in the city of";
static const char LOUVRE[] = "The Louvre is located in the city of";

/* "transformer.h.3" (part = GB_PART_LAYERS) or "transformer.h.3.attn" into buf. */
static const char *block(gb_model *m, int l, gb_part part, char *buf, size_t size) {
    if (part == GB_PART_LAYERS) snprintf(buf, size, "%s.%d", gb_model_part(m, GB_PART_LAYERS), l);
    else snprintf(buf, size, "%s.%d.%s", gb_model_part(m, GB_PART_LAYERS), l, gb_model_part(m, part));
    return buf;
}

static gb_tensor *encode(gb_lm *lm, const char *text) {
    gb_tensor *ids = NULL, *mask = NULL;
    gb_lm_encode(lm, 1, &text, &ids, &mask);
    gb_tensor_free(mask);
    return ids;
}

/* The first token of text (" Paris"). */
static int64_t token_id(gb_lm *lm, const char *text) {
    int32_t *ids = NULL;
    size_t n = 0;
    int64_t id = gb_tokenizer_encode(gb_lm_tokenizer(lm), text, strlen(text), false, &ids, &n) == GB_OK && n ? ids[0] : -1;
    free(ids);
    return id;
}

/* The text of one token, quoted, into buf. */
static const char *token(gb_lm *lm, int64_t id, char *buf, size_t size) {
    char *t = NULL;
    int32_t i = (int32_t)id;
    gb_tokenizer_decode(gb_lm_tokenizer(lm), &i, 1, false, &t, NULL);
    snprintf(buf, size, "'%s'", t ? t : "?");
    free(t);
    return buf;
}

/* The most likely token of logits [V] and its probability. */
static int64_t top1(gb_tensor *logits, double *p) {
    gb_tensor *probs = gb_softmax(logits, -1), *best = gb_argmax(probs, -1, false);
    double id = -1;
    gb_item(best, &id);
    gb_tensor_get(probs, (int64_t[]){(int64_t)id}, p);
    gb_tensor_free(best), gb_tensor_free(probs);
    return (int64_t)id;
}

/* 1. The logit lens: every block's output through the final norm and the
 *    unembedding (the model's modules called on values: gb_call); the
 *    most likely next token at the last position. */
static gb_status logit_lens(gb_lm *lm, int layers) {
    gb_model *m = gb_lm_model(lm);
    const char *norm = gb_model_part(m, GB_PART_NORM), *unembed = gb_model_part(m, GB_PART_UNEMBED);
    gb_tensor *ids = encode(lm, EIFFEL);
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    gb_val *logits[64];
    char path[128], buf[64];
    for (int l = 0; l < layers; l++) { /* lm_head(transformer.ln_f(transformer.h[l].output[0]))[0, -1] */
        gb_val *h = gb_val_index(gb_output(tr, block(m, l, GB_PART_LAYERS, path, sizeof path)), "[0]");
        logits[l] = gb_save(gb_val_index(gb_call(tr, unembed, gb_call(tr, norm, h)), "[0, -1]"));
    }
    gb_status st = gb_trace_run(tr);
    for (int l = 0; st == GB_OK && l < layers; l++) {
        double p = 0;
        int64_t id = top1(gb_value(logits[l]), &p);
        printf("lens: layer %d: %s %.4f\n", l, token(lm, id, buf, sizeof buf), p);
    }
    gb_trace_free(tr);
    gb_tensor_free(ids);
    return st;
}

/* 2. Activation patching: the clean run's residual stream at (layer,
 *    position) written into the corrupted run, one invoke per patch, all
 *    in one forward pass; the logit difference they recover. */
static gb_status patching(gb_lm *lm, int layers) {
    gb_model *m = gb_lm_model(lm);
    gb_module *net = gb_lm_module(lm);
    gb_tensor *clean = encode(lm, EIFFEL), *corrupt = encode(lm, COLOSSEUM);
    int64_t T = gb_tensor_dim(clean, 1), paris = token_id(lm, " Paris"), rome = token_id(lm, " Rome");
    char path[128], idx[64], logit[64];
    gb_trace *tr = gb_trace_new(net, NULL);
    gb_val **diff = calloc((size_t)(layers * T + 2), sizeof *diff), *h[64];
    snprintf(logit, sizeof logit, "[0, -1, %lld]", (long long)paris);
    char foil[64];
    snprintf(foil, sizeof foil, "[0, -1, %lld]", (long long)rome);
    gb_invoke(tr, clean); /* with tracer.invoke(clean): save every layer's output */
    for (int l = 0; l < layers; l++) h[l] = gb_val_index(gb_output(tr, block(m, l, GB_PART_LAYERS, path, sizeof path)), "[0]");
    gb_val *lg = gb_output(tr, gb_model_part(m, GB_PART_UNEMBED));
    diff[layers * T] = gb_save(gb_val_sub(gb_val_index(lg, logit), gb_val_index(lg, foil)));
    gb_invoke_end(tr);
    gb_invoke(tr, corrupt); /* the corrupted run, unpatched */
    lg = gb_output(tr, gb_model_part(m, GB_PART_UNEMBED));
    diff[layers * T + 1] = gb_save(gb_val_sub(gb_val_index(lg, logit), gb_val_index(lg, foil)));
    gb_invoke_end(tr);
    for (int l = 0; l < layers; l++)
        for (int64_t t = 0; t < T; t++) { /* with tracer.invoke(corrupt): one patch */
            gb_invoke(tr, corrupt);
            snprintf(idx, sizeof idx, "[:, %lld]", (long long)t);
            gb_val *hc = gb_val_index(gb_output(tr, block(m, l, GB_PART_LAYERS, path, sizeof path)), "[0]");
            gb_set_index(hc, idx, gb_val_index(h[l], idx));
            lg = gb_output(tr, gb_model_part(m, GB_PART_UNEMBED));
            diff[l * T + t] = gb_save(gb_val_sub(gb_val_index(lg, logit), gb_val_index(lg, foil)));
            gb_invoke_end(tr);
        }
    gb_status st = gb_trace_run(tr);
    double c = 0, x = 0, d = 0;
    if (st == GB_OK) gb_item(gb_value(diff[layers * T]), &c), gb_item(gb_value(diff[layers * T + 1]), &x);
    for (int l = 0; st == GB_OK && l < layers; l++) {
        printf("patch: layer %d:", l);
        for (int64_t t = 0; t < T; t++) {
            gb_item(gb_value(diff[l * T + t]), &d);
            printf(" %.4f", (d - x) / (c - x)); /* 1 = clean, 0 = corrupted */
        }
        printf("\n");
    }
    free(diff);
    gb_trace_free(tr);
    gb_tensor_free(clean), gb_tensor_free(corrupt);
    return st;
}

/* 3. Steering with a vector: the difference of two prompts' residual
 *    streams at layer 1 (Colosseum minus Eiffel Tower, last position),
 *    added to a third prompt's. */
static gb_status steering(gb_lm *lm) {
    gb_model *m = gb_lm_model(lm);
    gb_tensor *rome = encode(lm, COLOSSEUM), *paris = encode(lm, EIFFEL), *prompt = encode(lm, LOUVRE);
    char path[128], buf[64];
    block(m, 1, GB_PART_LAYERS, path, sizeof path);
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), NULL);
    gb_invoke(tr, rome);
    gb_val *a = gb_val_index(gb_val_index(gb_output(tr, path), "[0]"), "[:, -1, :]");
    gb_invoke_end(tr);
    gb_invoke(tr, paris);
    gb_val *b = gb_val_index(gb_val_index(gb_output(tr, path), "[0]"), "[:, -1, :]");
    gb_invoke_end(tr);
    gb_val *steer = gb_val_sub(a, b);
    gb_val *plain = NULL, *steered = NULL;
    for (int i = 0; i < 2; i++) { /* the prompt as it is, then steered */
        gb_invoke(tr, prompt);
        gb_val *h = gb_val_index(gb_output(tr, path), "[0]");
        if (i) gb_set_index(h, "[:, -1, :]", gb_val_add(gb_val_index(h, "[:, -1, :]"), steer));
        gb_val *out = gb_save(gb_val_index(gb_output(tr, gb_model_part(m, GB_PART_UNEMBED)), "[0, -1]"));
        *(i ? &steered : &plain) = out;
        gb_invoke_end(tr);
    }
    gb_status st = gb_trace_run(tr);
    double p = 0, q = 0;
    if (st == GB_OK) {
        int64_t before = top1(gb_value(plain), &p), after = top1(gb_value(steered), &q);
        printf("steer: plain %s %.4f,", token(lm, before, buf, sizeof buf), p);
        printf(" steered %s %.4f\n", token(lm, after, buf, sizeof buf), q);
    }
    gb_trace_free(tr);
    gb_tensor_free(rome), gb_tensor_free(paris), gb_tensor_free(prompt);
    return st;
}

/* 4. Attribution by gradients: gradient x activation of the answer's logit
 *    for the residual stream entering every block, summed over the hidden
 *    size, per position. */
static gb_status attribution(gb_lm *lm, int layers) {
    gb_model *m = gb_lm_model(lm);
    gb_tensor *ids = encode(lm, EIFFEL);
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    char path[128], answer[64];
    snprintf(answer, sizeof answer, "[0, -1, %lld]", (long long)token_id(lm, " Paris"));
    gb_requires_grad(gb_output(tr, gb_model_part(m, GB_PART_EMBED))); /* gradients flow from here on */
    gb_val *attr[64];
    for (int l = 0; l < layers; l++) {
        gb_val *h = gb_input(tr, block(m, l, GB_PART_LAYERS, path, sizeof path)); /* the residual stream into block l */
        attr[l] = gb_save(gb_val_sum(gb_val_mul(h, gb_grad(h)), -1, false));
    }
    gb_val_backward(gb_val_index(gb_output(tr, gb_model_part(m, GB_PART_UNEMBED)), answer));
    gb_status st = gb_trace_run(tr);
    for (int l = 0; st == GB_OK && l < layers; l++) {
        gb_tensor *a = gb_value(attr[l]);
        printf("attr: layer %d:", l);
        for (int64_t t = 0; t < gb_tensor_dim(a, 1); t++) {
            double v = 0;
            gb_tensor_get(a, (int64_t[]){0, t}, &v);
            printf(" %.4f", v);
        }
        printf("\n");
    }
    gb_trace_free(tr);
    gb_tensor_free(ids);
    return st;
}

/* 5. Attention patterns: the softmaxed attention of block 1, head 0. */
static gb_status attention(gb_lm *lm) {
    gb_model *m = gb_lm_model(lm);
    gb_tensor *ids = encode(lm, EIFFEL);
    gb_trace *tr = gb_trace_new(gb_lm_module(lm), ids);
    char path[128];
    gb_val *pattern = gb_save(gb_val_index(gb_point(tr, block(m, 1, GB_PART_ATTN_WEIGHTS, path, sizeof path)), "[0, 0]"));
    gb_status st = gb_trace_run(tr);
    gb_tensor *w = st == GB_OK ? gb_value(pattern) : NULL; /* [T, T]: queries x keys */
    for (int64_t i = 0; w && i < gb_tensor_dim(w, 0); i++) {
        printf("attn: query %lld:", (long long)i);
        for (int64_t k = 0; k < gb_tensor_dim(w, 1); k++) {
            double v = 0;
            gb_tensor_get(w, (int64_t[]){i, k}, &v);
            printf(" %.4f", v);
        }
        printf("\n");
    }
    gb_trace_free(tr);
    gb_tensor_free(ids);
    return st;
}

int main(int argc, char **argv) {
    gb_lm *lm = gb_lm_open(argc > 1 ? argv[1] : "models/gpt2-facts", NULL);
    if (!lm) {
        fprintf(stderr, "recipes: %s\n", gb_last_error());
        return 1;
    }
    gb_module *layers = gb_module_find(gb_lm_module(lm), gb_model_part(gb_lm_model(lm), GB_PART_LAYERS));
    int n = layers ? gb_module_num_children(layers) : 0;
    gb_status st = n > 0 && n <= 64 ? GB_OK : GB_ERR_ARG;
    if (st == GB_OK) st = logit_lens(lm, n);
    if (st == GB_OK) st = patching(lm, n);
    if (st == GB_OK) st = steering(lm);
    if (st == GB_OK) st = attribution(lm, n);
    if (st == GB_OK) st = attention(lm);
    if (st != GB_OK) fprintf(stderr, "recipes: %s\n", gb_last_error());
    gb_lm_free(lm);
    return st == GB_OK ? 0 : 1;
}
