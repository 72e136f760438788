/* nnsight walkthrough, "Conditional Interventions": interventions that run
 * only when a value computed during the run says so.
 *
 * `with tracer.cond(c):` (or a Python `if` on a proxy) becomes
 * gb_if(tr, c) ... gb_end_if(tr): every node defined in between runs only if
 * c's value (one element) is nonzero when it exists. Conditions nest. A
 * condition can be any deferred value: a model value, an operation on one
 * (gb_val_remainder is Python's %, gb_val_eq its ==), or the result of a
 * custom function through gb_apply. A value saved inside a false condition
 * is never produced, and reading it says so. (As statements, the cells run
 * word for word: docs/walkthrough.md.)
 *
 * Run: build/examples/conditions (see examples/walkthrough.h for the options). */
#include "walkthrough.h"

/* x % 2 == parity, with Python's % (-5 % 2 == 1). */
static gb_val *mod2_is(gb_trace *tr, gb_val *x, int parity) {
    return gb_val_eq(gb_val_remainder(x, gb_scalar_i64(tr, 2)), gb_scalar_i64(tr, parity));
}

/* x > 0, as a bool [1]: a condition through a custom function. */
static gb_tensor *is_positive(gb_tensor *const *args, int nargs, void *ctx) {
    (void)nargs, (void)ctx;
    double x;
    if (gb_item(args[0], &x) != GB_OK) return NULL;
    uint8_t b = x > 0;
    return gb_from_data(&b, 1, (int64_t[]){1}, GB_DTYPE_BOOL);
}

/* with tiny_model.trace(input) as tracer:
 *     rand_int = torch.randint(low=-10, high=10, size=(1,))
 *     with tracer.cond(rand_int % 2 == 0):
 *         tracer.log("Random Integer ", rand_int, " is Even")
 *     with tracer.cond(rand_int % 2 == 1):
 *         tracer.log("Random Integer ", rand_int, " is Odd") */
static bool cell_random(wt_ctx *wt) {
    gb_rng rng = gb_rng_seed(3);
    gb_tensor *r = wt_tensor(wt, "rand_int", gb_randint(&rng, 1, (int64_t[]){1}, -10, 10));
    if (!r) return false;
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *rand_int = gb_const(tr, r);
    gb_tensor_free(r);

    gb_if(tr, mod2_is(tr, rand_int, 0));
    gb_trace_log("Random Integer is Even:", rand_int);
    gb_end_if(tr);

    gb_if(tr, mod2_is(tr, rand_int, 1));
    gb_trace_log("Random Integer is Odd:", rand_int);
    gb_end_if(tr);

    bool ok = gb_trace_run(tr) == GB_OK;
    gb_trace_free(tr);
    return ok;
}

/* with tiny_model.trace(input) as tracer:
 *     non_rand_int = 8
 *     with tracer.cond(non_rand_int > 0):
 *         with tracer.cond(non_rand_int % 2 == 0):
 *             tracer.log("Rand Int ", non_rand_int, " is Positive and Even") */
static bool cell_nested(wt_ctx *wt) {
    gb_tensor *eight = gb_from_data(&(int64_t){8}, 0, NULL, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *non_rand_int = gb_const(tr, eight);
    gb_tensor_free(eight);

    gb_if(tr, gb_val_gt(non_rand_int, gb_scalar_i64(tr, 0)));
    gb_if(tr, mod2_is(tr, non_rand_int, 0));
    gb_trace_log("Rand Int is Positive and Even:", non_rand_int);
    gb_end_if(tr);
    gb_end_if(tr);

    bool ok = gb_trace_run(tr) == GB_OK;
    gb_trace_free(tr);
    return ok;
}

/* Conditions on the model's own values, decided during the run:
 *     if tiny_model.layer1.output.sum() > 0:      # through apply
 *         tiny_model.layer1.output[:] = 0
 *     if tiny_model.layer2.output.argmax(dim=1):  # the prediction itself: nonzero is class 1
 *         tracer.log("Predicts class 1:", tiny_model.layer2.output)
 *         class1 = tiny_model.layer2.output.clone().save()
 *     output = tiny_model.output.save() */
static bool cell_model(wt_ctx *wt) {
    gb_trace *tr = gb_trace_new(wt->net, wt->input);
    gb_val *layer1_output = gb_output(tr, "layer1");
    gb_val *l1_sum = gb_val_sum_all(layer1_output);
    gb_val *l1_sum_copy = gb_save(gb_val_clone(l1_sum)); /* to show which way it went */
    gb_if(tr, gb_apply(tr, is_positive, NULL, 1, &l1_sum));
    gb_set_index(layer1_output, "[:]", gb_scalar(tr, 0));
    gb_end_if(tr);

    gb_val *layer2_output = gb_output(tr, "layer2");
    gb_if(tr, gb_val_argmax(layer2_output, 1, false));
    gb_trace_log("Predicts class 1:", layer2_output);
    gb_val *class1 = gb_save(gb_val_clone(layer2_output));
    gb_end_if(tr);
    gb_val *output = gb_save(gb_output(tr, ""));

    bool ok = gb_trace_run(tr) == GB_OK && wt_show(wt, "l1_sum", "layer1 sum:", gb_value(l1_sum_copy)) &&
              wt_show(wt, "output", "Output:", gb_value(output));
    if (ok) {
        gb_tensor *c = gb_value(class1); /* NULL when the condition was false */
        if (c) ok = wt_keep(wt, "class1", c);
        else printf("class1: not produced (%s)\n", gb_last_error());
    }
    gb_trace_free(tr);
    return ok;
}

int main(int argc, char **argv) {
    static const wt_cell cells[] = {
        {"random", cell_random},
        {"nested", cell_nested},
        {"model", cell_model},
    };
    return wt_main(argc, argv, (int)(sizeof cells / sizeof cells[0]), cells);
}
