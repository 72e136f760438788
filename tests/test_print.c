/* gb_tensor_str against PyTorch's str(t), byte for byte (tests/oracle/print.py). */
#include <stdlib.h>

#include "gbtest.h"
#include "tensor/tensor_impl.h"

/* Undo print.py's escaping (\\ and \n) in place. */
static void unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 'n' ? '\n' : *r;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

/* The tensor a case prints, made from the stored one as VIEW says. */
static gb_tensor *shown(gb_tensor *t, const char *view) {
    if (!strcmp(view, "-")) return gb_tensor_ref(t);
    if (!strcmp(view, "T")) return gb_transpose(t, -2, -1);
    if (!strcmp(view, "meta")) {
        gb__meta_push();
        gb_tensor *m = gb_empty(gb_tensor_ndim(t), gb_tensor_shape(t), gb_tensor_dtype(t));
        gb__meta_pop();
        return m;
    }
    return gb_index(t, view);
}

START_TEST(test_str_matches_torch) {
    gbt_oracle *o = gbt_oracle_load("print");
    const char *dir = getenv("GB_ORACLE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/print.txt", dir ? dir : "build/oracle");
    FILE *fp = fopen(path, "r");
    ck_assert_msg(fp != NULL, "oracle file %s is missing", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int cases = 0;
    while ((len = getline(&line, &cap, fp)) > 0) {
        if (strncmp(line, "#str\t", 5) != 0) continue;
        if (line[len - 1] == '\n') line[len - 1] = 0;
        char *name = line + 5, *view = strchr(name, '\t');
        ck_assert(view != NULL);
        *view++ = 0;
        char *want = strchr(view, '\t');
        ck_assert(want != NULL);
        *want++ = 0;
        unescape(want);
        gb_tensor *t = gbt_get(o, name), *s = shown(t, view);
        gbt_ok(s);
        char *got = gb_tensor_str(s);
        gbt_ok(got);
        ck_assert_msg(!strcmp(got, want), "case %s (%s):\n got: %s\nwant: %s", name, view, got, want);
        free(got);
        gb_tensor_free(s);
        gb_tensor_free(t);
        cases++;
    }
    free(line);
    fclose(fp);
    ck_assert_int_ge(cases, 100);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_str_header_example) {
    /* tensor.h's usage example: [0..5] as [2, 3], last column plus 1 -> [3., 6.] */
    gb_tensor *x = gb_arange(0, 6, 1);
    gb_tensor *m = gb_reshape(x, 2, (int64_t[]){2, 3});
    gb_tensor *r = gb_index(m, "[:, -1]");
    gb_tensor *s = gb_add_scalar(r, 1.0f);
    char *text = gb_tensor_str(s);
    ck_assert_str_eq(text, "tensor([3., 6.])");
    free(text);
    gb_tensor_free(s), gb_tensor_free(r), gb_tensor_free(m), gb_tensor_free(x);
}
END_TEST

Suite *gb_suite_print(void) {
    Suite *s = suite_create("print");
    TCase *tc = tcase_create("print");
    tcase_add_test(tc, test_str_matches_torch);
    tcase_add_test(tc, test_str_header_example);
    suite_add_tcase(s, tc);
    return s;
}
