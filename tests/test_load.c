/* gb_module_load: a module tree built by hand filled from a safetensors
 * file by parameter name, as PyTorch's load_state_dict(strict=True),
 * with its errors (PyTorch's wording) and nothing changed on failure. */
#include <stdlib.h>

#include "gbtest.h"

static gb_module *tiny(uint64_t seed) {
    gb_module *net = gb_sequential(2, (const char *[]){"layer1", "layer2"},
                                   (gb_module *[]){gb_nn_linear(5, 10, true), gb_nn_linear(10, 2, true)});
    gbt_ok(net);
    gb_module_init(net, seed);
    return net;
}

static void assert_same_params(gb_module *a, gb_module *b) {
    const char **na, **nb;
    gb_tensor **pa, **pb;
    int n = gb_module_parameters(a, &na, &pa);
    ck_assert_int_eq(gb_module_parameters(b, &nb, &pb), n);
    for (int i = 0; i < n; i++) gbt_assert_close(pa[i], pb[i], 0, 0, na[i]);
    free(na), free(nb), free(pa), free(pb);
}

START_TEST(test_load_fills_every_parameter) {
    gb_module *src = tiny(1), *dst = tiny(2);
    char path[512];
    snprintf(path, sizeof path, "%s/load_ok.safetensors", gbt_tmp_dir());
    gbt_save_params(src, path, NULL, 0, NULL, NULL);
    gbt_ok_status(gb_module_load(dst, path));
    assert_same_params(src, dst);
    gb_module_free(src), gb_module_free(dst);
}
END_TEST

START_TEST(test_load_errors) {
    gb_module *src = tiny(1), *dst = tiny(2), *before = tiny(2);
    char path[512];
    gb_tensor *w1 = gb_module_param(gb_module_find(src, "layer1"), "weight"),
              *b1 = gb_module_param(gb_module_find(src, "layer1"), "bias"),
              *w2 = gb_module_param(gb_module_find(src, "layer2"), "weight"),
              *b2 = gb_module_param(gb_module_find(src, "layer2"), "bias");
    gb_tensor *odd = gb_zeros(2, (int64_t[]){3, 5}, GB_DTYPE_F32);
    static const struct {
        const char *names[5];
        int n;
        gb_status st;
        const char *needle;
    } cases[] = {
        {{"layer1.weight", "layer1.bias", "layer2.weight"}, 3, GB_ERR_NOT_FOUND, "Missing key(s) in state_dict: \"layer2.bias\"."},
        {{"layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "extra"}, 5, GB_ERR_FORMAT,
         "Unexpected key(s) in state_dict: \"extra\"."},
        {{"layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "odd"}, 4, GB_ERR_SHAPE,
         "size mismatch for layer1.weight: copying a param with shape torch.Size([3, 5]) from checkpoint, the shape in "
         "current model is torch.Size([10, 5])"},
        {{"layer1.bias", "extra"}, 2, GB_ERR_NOT_FOUND,
         "Missing key(s) in state_dict: \"layer1.weight\", \"layer2.weight\", \"layer2.bias\". Unexpected key(s) in "
         "state_dict: \"extra\"."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        gb_tensor *ts[5];
        for (int k = 0; k < cases[i].n; k++) {
            const char *nm = cases[i].names[k];
            ts[k] = !strcmp(nm, "layer1.weight") ? (cases[i].st == GB_ERR_SHAPE ? odd : w1)
                    : !strcmp(nm, "layer1.bias")  ? b1
                    : !strcmp(nm, "layer2.weight") ? w2
                    : !strcmp(nm, "layer2.bias")   ? b2
                                                   : odd;
        }
        snprintf(path, sizeof path, "%s/load_bad%zu.safetensors", gbt_tmp_dir(), i);
        gbt_ok_status(gb_safetensors_save(path, cases[i].n, cases[i].names, ts, GB_DTYPE_F32, NULL));
        gbt_fails_with(gb_module_load(dst, path) != GB_OK, cases[i].st, cases[i].needle);
        ck_assert_msg(strstr(gb_last_error(), "load: ") == gb_last_error(), "%s", gb_last_error());
        assert_same_params(dst, before); /* nothing changed */
    }
    /* an input beside the weights: allowed when asked */
    snprintf(path, sizeof path, "%s/load_extra.safetensors", gbt_tmp_dir());
    gbt_ok_status(gb_safetensors_save(path, 5, (const char *[]){"layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "input"},
                                      (gb_tensor *[]){w1, b1, w2, b2, odd}, GB_DTYPE_F32, NULL));
    gb_safetensors *st = gb_safetensors_open(path);
    gbt_ok(st);
    gbt_ok_status(gb_module_load_from(dst, st, true));
    assert_same_params(src, dst);
    gb_safetensors_free(st);
    gbt_fails_with(gb_module_load(dst, "/nonexistent/x.safetensors") != GB_OK, GB_ERR_NOT_FOUND, "x.safetensors");
    gb_tensor_free(odd);
    gb_module_free(src), gb_module_free(dst), gb_module_free(before);
}
END_TEST

Suite *gb_suite_load(void) {
    Suite *s = suite_create("load");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, test_load_fills_every_parameter);
    tcase_add_test(tc, test_load_errors);
    suite_add_tcase(s, tc);
    return s;
}
