/* `glassbox demo`: what the engine can do today, end to end. */
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "glassbox.h"

static void show(const char *label, gb_tensor *t) {
    char *d = gb_tensor_describe(t);
    printf("%-28s %s\n", label, d);
    free(d);
}

int gb_cli_demo(int argc, char **argv) {
    (void)argc, (void)argv;
    gb_rng rng = gb_rng_seed(0);
    gb_tensor *x = gb_randn(&rng, 2, (int64_t[]){2, 3}, 0.0f, 1.0f);
    gb_tensor *xt = gb_transpose(x, 0, 1);
    gb_tensor *col = gb_select(x, 1, -1);
    if (!x || !xt || !col) {
        fprintf(stderr, "glassbox demo: %s\n", gb_last_error());
        return 1;
    }
    show("x = randn(2, 3)", x);
    show("x.transpose(0, 1) (a view)", xt);
    show("x[:, -1]", col);
    gb_tensor *bad = GB_AT(gb_select(x, 1, 3));
    if (!bad) printf("x[:, 3] fails: %s\n", gb_last_error());
    gb_tensor_free(col);
    gb_tensor_free(xt);
    gb_tensor_free(x);
    return 0;
}
