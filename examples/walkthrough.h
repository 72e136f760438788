/* What the walkthrough examples (examples/getting.c, operations.c, apply.c,
 * setting.c, scan_validate.c, gradients.c, early_stop.c, conditions.c) share:
 * the tiny network of nnsight's walkthrough, its weights, the cells, and
 * where the values a cell shows go. An example is a table of cells run in
 * order, like the notebook it mirrors:
 *
 *     build/examples/NAME                 seeded weights and input: a self-contained demo
 *     ... --weights FILE.safetensors      weights and input from a file: layer1.weight,
 *                                         layer1.bias, layer2.weight, layer2.bias, input,
 *                                         and the extra tensors some cells use (noise, rand_int)
 *     ... --out FILE.safetensors          also write every value a cell shows, as "CELL.NAME"
 *     ... --cell CELL                     run that cell only
 *
 * A cell that fails prints its error on stderr, one line, as the notebook's
 * cell raises, and the next cells still run. Exit status: 0 when no cell
 * failed, 1 when one did (the examples of errors exit 1 on purpose), 2 for a
 * usage or file problem. tests/test_walkthrough.c runs every example this
 * way and compares with PyTorch (tests/oracle/walkthrough.py).
 */
#ifndef GB_EXAMPLES_WALKTHROUGH_H
#define GB_EXAMPLES_WALKTHROUGH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glassbox.h"

enum { WT_INPUT_SIZE = 5, WT_HIDDEN_DIMS = 10, WT_OUTPUT_SIZE = 2 };

typedef struct wt_ctx {
    gb_module *net;         /* Sequential(layer1: Linear(5, 10), layer2: Linear(10, 2)) */
    gb_tensor *input;       /* [1, 5] */
    gb_safetensors *file;   /* --weights, or NULL: seeded */
    const char *cell;       /* the cell running */
    char **names;           /* what --out will hold */
    gb_tensor **values;
    int n;
} wt_ctx;

/* A cell returns false when it ended in an error (left in gb_last_error()). */
typedef bool (*wt_cell_fn)(wt_ctx *wt);
typedef struct wt_cell {
    const char *name;
    wt_cell_fn fn;
} wt_cell;

/* Keep t for --out as "CELL.key". t == NULL means the call producing it
 * failed: returns false. */
static inline bool wt_keep(wt_ctx *wt, const char *key, gb_tensor *t) {
    if (!t) return false;
    char *name = malloc(strlen(wt->cell) + strlen(key) + 2);
    if (!name) return false;
    sprintf(name, "%s.%s", wt->cell, key);
    wt->names = realloc(wt->names, sizeof *wt->names * (size_t)(wt->n + 1));
    wt->values = realloc(wt->values, sizeof *wt->values * (size_t)(wt->n + 1));
    wt->names[wt->n] = name;
    wt->values[wt->n++] = gb_tensor_ref(t);
    return true;
}

/* print(label, t) as the notebook does, and keep t (wt_keep). */
static inline bool wt_show(wt_ctx *wt, const char *key, const char *label, gb_tensor *t) {
    char *s = t ? gb_tensor_str(t) : NULL;
    if (!s) return false;
    printf("%s%s%s\n", label ? label : "", label && *label ? " " : "", s);
    free(s);
    return wt_keep(wt, key, t);
}

/* An extra tensor a cell uses (noise, a random integer): the file's when
 * --weights was given, else the seeded one passed in (a new reference,
 * consumed). */
static inline gb_tensor *wt_tensor(wt_ctx *wt, const char *name, gb_tensor *seeded) {
    if (!wt->file) return seeded;
    gb_tensor_free(seeded);
    return gb_safetensors_get(wt->file, name);
}

/* The walkthrough's network. Weights come from the file ("layer1.weight" is
 * parameter "weight" of module "layer1"), or PyTorch's default init, seeded. */
static inline bool wt_setup(wt_ctx *wt, const char *weights) {
    wt->net = gb_sequential(2, (const char *[]){"layer1", "layer2"},
                            (gb_module *[]){gb_nn_linear(WT_INPUT_SIZE, WT_HIDDEN_DIMS, true),
                                            gb_nn_linear(WT_HIDDEN_DIMS, WT_OUTPUT_SIZE, true)});
    if (!wt->net) return false;
    if (!weights) {
        gb_module_init(wt->net, 0);
        gb_rng rng = gb_rng_seed(1);
        wt->input = gb_rand(&rng, 2, (int64_t[]){1, WT_INPUT_SIZE}, 0.0f, 1.0f); /* torch.rand((1, input_size)) */
        return wt->input != NULL;
    }
    if (!(wt->file = gb_safetensors_open(weights))) return false;
    bool ok = gb_module_load_from(wt->net, wt->file, true) == GB_OK; /* the file holds the input too */
    return ok && (wt->input = gb_safetensors_get(wt->file, "input")) != NULL;
}

static inline void wt_teardown(wt_ctx *wt) {
    for (int i = 0; i < wt->n; i++) {
        free(wt->names[i]);
        gb_tensor_free(wt->values[i]);
    }
    free(wt->names);
    free(wt->values);
    gb_tensor_free(wt->input);
    gb_module_free(wt->net);
    gb_safetensors_free(wt->file);
}

static inline int wt_main(int argc, char **argv, int ncells, const wt_cell *cells) {
    const char *weights = NULL, *out = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char **opt = !strcmp(argv[i], "--weights") ? &weights
                           : !strcmp(argv[i], "--out")   ? &out
                           : !strcmp(argv[i], "--cell")  ? &only
                                                         : NULL;
        if (!opt || i + 1 >= argc) {
            fprintf(stderr, "usage: %s [--weights FILE.safetensors] [--out FILE.safetensors] [--cell NAME]\n",
                    argv[0]);
            return 2;
        }
        *opt = argv[++i];
    }
    wt_ctx wt = {0};
    if (!wt_setup(&wt, weights)) {
        fprintf(stderr, "%s: %s\n", argv[0], gb_last_error());
        wt_teardown(&wt);
        return 2;
    }
    int status = only ? 2 : 0;
    for (int i = 0; i < ncells; i++) {
        if (only && strcmp(only, cells[i].name)) continue;
        if (only) status = 0;
        wt.cell = cells[i].name;
        gb_clear_error();
        if (!cells[i].fn(&wt)) {
            fprintf(stderr, "%s\n", gb_last_error());
            status = 1;
        }
        fflush(stdout);
    }
    if (status == 2) fprintf(stderr, "%s: no cell named %s\n", argv[0], only);
    if (out && gb_safetensors_save(out, wt.n, (const char *const *)wt.names, wt.values, GB_DTYPE_F32, NULL) != GB_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], gb_last_error());
        status = 2;
    }
    wt_teardown(&wt);
    return status;
}

#endif
