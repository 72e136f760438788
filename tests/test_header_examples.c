/* The usage examples at the top of each public header, compiled and run.
 * make extracts them (tools/extract_examples.py) into header_examples.inc,
 * so an example that no longer compiles fails the build. The globals below
 * are what the examples assume exists around them. */
#include <stdio.h>
#include <stdlib.h>

#include "gbtest.h"

#pragma GCC diagnostic ignored "-Wunused-variable"

static gb_module *net, *model; /* the walkthrough's tiny network */
static gb_tensor *x, *input, *ids;

static gb_status zero_first(gb_event *ev, void *ctx) {
    (void)ctx;
    return gb_index_fill_(ev->values->v[0], "[:, 0]", 0.0f);
}

#include "header_examples.inc"

START_TEST(test_header_example) {
    net = model = gb_sequential(2, (const char *[]){"layer1", "layer2"},
                                (gb_module *[]){gb_nn_linear(5, 10, true), gb_nn_linear(10, 2, true)});
    gb_module_init(net, 0);
    x = input = gb_ones(2, (int64_t[]){1, 5}, GB_DTYPE_F32);
    ids = gb_zeros(2, (int64_t[]){1, 3}, GB_DTYPE_I64);
    setenv("HF_HUB_CACHE", gbt_tmp_dir(), 1); /* Hub ids resolve nowhere: the examples' error paths run */
    gb_clear_error();
    int rc = gb_header_examples[_i].fn();
    /* 0, or 1 from an example's own error branch, which must say why. */
    ck_assert_msg(rc == 0 || (rc == 1 && *gb_last_error()), "%s returned %d (%s)", gb_header_examples[_i].name, rc,
                  gb_last_error());
    gb_tensor_free(ids);
    gb_tensor_free(x);
    gb_module_free(net);
}
END_TEST

Suite *gb_suite_header_examples(void) {
    Suite *s = suite_create("header_examples");
    TCase *tc = tcase_create("examples");
    tcase_add_loop_test(tc, test_header_example, 0, (int)(sizeof gb_header_examples / sizeof gb_header_examples[0]));
    suite_add_tcase(s, tc);
    return s;
}
