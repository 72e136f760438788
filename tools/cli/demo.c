/* `glassbox demo [MODEL]`: the main demo. Opens a small Llama (by default the
 * stories260k fixture beside the checkout), generates a story, then looks
 * inside: the next-token prediction, an ablation of one MLP, and a gradient
 * attribution over the prompt — each one trace. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "glassbox.h"

#define DEMO_MODEL "../shared/models/stories260k"

static int demo_fail(void) {
    fprintf(stderr, "glassbox demo: %s\n", gb_last_error());
    return 1;
}

/* A token as text, quoted ("' Lily'"), into buf. */
static const char *token_text(gb_tokenizer *tok, int64_t id, char *buf, size_t size) {
    char *t = NULL;
    int32_t i = (int32_t)id;
    if (gb_tokenizer_decode(tok, &i, 1, false, &t, NULL) == GB_OK) snprintf(buf, size, "'%s'", t);
    else snprintf(buf, size, "#%lld", (long long)id);
    free(t);
    return buf;
}

static void show_token(gb_tokenizer *tok, int64_t id, double p) {
    char buf[64];
    printf("  %-10s (id %lld)  p = %.4f\n", token_text(tok, id, buf, sizeof buf), (long long)id, p);
}

/* The probability and id of the most likely next token, from saved logits [1, T, V]. */
static void top_next(gb_tensor *logits, int64_t *id, double *p) {
    gb_tensor *last = gb_select(logits, 1, -1), *probs = gb_softmax(last, -1), *best = gb_argmax(probs, -1, false);
    double v;
    gb_item(best, &v);
    *id = (int64_t)v;
    gb_tensor_get(probs, (int64_t[]){0, *id}, p);
    gb_tensor_free(best), gb_tensor_free(probs), gb_tensor_free(last);
}

int gb_cli_demo(int argc, char **argv) {
    const char *path = argc > 0 ? argv[0] : DEMO_MODEL;
    gb_model *m = gb_model_open(path, NULL);
    if (!m) return demo_fail();
    gb_tokenizer *tok = gb_tokenizer_open(gb_model_dir(m));
    if (!tok) return demo_fail();
    gb_module *net = gb_model_module(m);

    char *tree = gb_module_repr(net);
    printf("== %s: %lld parameters\n%s\n\n", path, (long long)gb_module_num_parameters(net), tree);
    free(tree);

    /* 1. Generation with a KV cache. */
    const char *story = "Once upon a time";
    int32_t *ids32;
    size_t n;
    if (gb_tokenizer_encode(tok, story, strlen(story), true, &ids32, &n) != GB_OK) return demo_fail();
    int64_t seq[64];
    for (size_t i = 0; i < n; i++) seq[i] = ids32[i];
    free(ids32);
    gb_run *run = gb_run_new();
    gb_run_use_cache(run, true);
    int64_t len = (int64_t)n, fed = 0;
    while (len < 48) {
        gb_tensor *in = gb_from_data(seq + fed, 2, (int64_t[]){1, len - fed}, GB_DTYPE_I64), *logits;
        if (gb_module_run(net, run, in, &logits) != GB_OK) return demo_fail();
        int64_t id;
        double p;
        top_next(logits, &id, &p);
        gb_tensor_free(logits), gb_tensor_free(in);
        fed = len;
        seq[len++] = id;
    }
    gb_run_free(run);
    int32_t out32[64];
    for (int64_t i = 0; i < len; i++) out32[i] = (int32_t)seq[i];
    char *text;
    if (gb_tokenizer_decode(tok, out32, (size_t)len, true, &text, NULL) != GB_OK) return demo_fail();
    printf("== greedy story from \"%s\":\n  %s\n\n", story, text);
    free(text);

    /* 2. A trace: the prediction, and the same with one MLP's output zeroed
     *    at the last position (model.layers.2.mlp.output[:, -1, :] = 0). */
    const char *prompt = "Once upon a time, there was a little girl named";
    if (gb_tokenizer_encode(tok, prompt, strlen(prompt), true, &ids32, &n) != GB_OK) return demo_fail();
    int64_t pid[64];
    for (size_t i = 0; i < n; i++) pid[i] = ids32[i];
    free(ids32);
    gb_tensor *input = gb_from_data(pid, 2, (int64_t[]){1, (int64_t)n}, GB_DTYPE_I64);
    printf("== prompt: \"%s\"\n", prompt);
    for (int ablate = 0; ablate < 2; ablate++) {
        gb_trace *tr = gb_trace_new(net, input);
        if (ablate) gb_set_index(gb_output(tr, "model.layers.2.mlp"), "[:, -1, :]", gb_scalar(tr, 0.0f));
        gb_val *logits = gb_save(gb_output(tr, "lm_head"));
        if (gb_trace_run(tr) != GB_OK) return demo_fail();
        int64_t id;
        double p;
        top_next(gb_value(logits), &id, &p);
        printf("%s\n", ablate ? "  with model.layers.2.mlp.output[:, -1, :] = 0, the top next token is:"
                              : "  the top next token is:");
        show_token(tok, id, p);
        gb_trace_free(tr);
    }

    /* 3. Gradient attribution: how much each prompt position's embedding
     *    moves the top logit (|grad . embedding|). */
    gb_trace *tr = gb_trace_new(net, input);
    gb_val *emb = gb_output(tr, "model.embed_tokens");
    gb_requires_grad(emb);
    gb_val *emb_saved = gb_save(gb_val_clone(emb));
    gb_val *grad = gb_save(gb_grad(gb_output(tr, "model.embed_tokens")));
    gb_val *top = gb_val_max(gb_val_index(gb_output(tr, "lm_head"), "[0, -1, :]"), -1, false);
    gb_val_backward(top);
    if (gb_trace_run(tr) != GB_OK) return demo_fail();
    gb_tensor *prod = gb_mul(gb_value(grad), gb_value(emb_saved)), *score = gb_sum(prod, -1, false);
    printf("\n== attribution of the top logit to each prompt token (grad . embedding):\n");
    for (size_t i = 0; i < n; i++) {
        double s;
        gb_tensor_get(score, (int64_t[]){0, (int64_t)i}, &s);
        int bars = (int)fmin(40, fabs(s) * 4);
        char buf[64];
        printf("  %-10s %8.4f %.*s\n", token_text(tok, pid[i], buf, sizeof buf), s, bars,
               "########################################");
    }
    gb_tensor_free(score), gb_tensor_free(prod);
    gb_trace_free(tr);

    /* 4. Generation with an intervention at one step, written as an nnsight
     *    statement: at the step that chooses the name, make it "Tim". */
    if (gb_tokenizer_encode(tok, "Tim", 3, false, &ids32, &n) != GB_OK || n != 1) return demo_fail();
    char stmt[96];
    snprintf(stmt, sizeof stmt, "lm_head.output[0, -1, %d] = 100", (int)ids32[0]);
    free(ids32);
    printf("\n== generation from the prompt, then with %s:\n", stmt);
    for (int steer = 0; steer < 2; steer++) {
        tr = gb_trace_new(net, input);
        if (steer && gb_trace_statement(tr, stmt, "demo", 1, NULL) != GB_OK) return demo_fail();
        if (gb_trace_generate(tr, 16) != GB_OK) return demo_fail();
        gb_tensor *ids = gb_trace_generated(tr);
        const int64_t *p = gb_tensor_data(ids);
        int64_t total = gb_tensor_dim(ids, 1);
        int32_t gen32[128];
        for (int64_t i = 0; i < total && i < 128; i++) gen32[i] = (int32_t)p[i];
        if (gb_tokenizer_decode(tok, gen32, (size_t)(total < 128 ? total : 128), true, &text, NULL) != GB_OK)
            return demo_fail();
        printf("  %s\n", text);
        free(text);
        gb_trace_free(tr);
    }
    gb_tensor_free(input);
    gb_tokenizer_free(tok);
    gb_model_free(m);
    return 0;
}
