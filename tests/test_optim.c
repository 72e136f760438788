/* Optimisers and gradient clipping against torch.optim trajectories. */
#include "gbtest.h"

static gb_optim *make(const char *name, gb_tensor *p) {
    gb_sgd_opts plain = {.lr = 0.1f};
    gb_sgd_opts mom = {.lr = 0.05f, .momentum = 0.9f, .dampening = 0.1f, .weight_decay = 0.01f};
    gb_sgd_opts nest = {.lr = 0.05f, .momentum = 0.8f, .nesterov = true, .weight_decay = 0.02f};
    gb_adamw_opts custom = {.lr = 0.01f, .beta1 = 0.8f, .beta2 = 0.95f, .eps = 1e-6f, .weight_decay = 0.1f};
    if (!strcmp(name, "sgd_plain")) return gb_sgd_new(1, &p, plain);
    if (!strcmp(name, "sgd_momentum")) return gb_sgd_new(1, &p, mom);
    if (!strcmp(name, "sgd_nesterov")) return gb_sgd_new(1, &p, nest);
    if (!strcmp(name, "adamw_default")) return gb_adamw_new(1, &p, gb_adamw_defaults());
    return gb_adamw_new(1, &p, custom);
}

static const char *const configs[] = {"sgd_plain", "sgd_momentum", "sgd_nesterov", "adamw_default", "adamw_custom"};

/* p0's values in a parameter kept transposed in memory (as Conv1D's
 * weight): a view of a [cols, rows] storage. */
static gb_tensor *transposed_copy(gb_tensor *p0) {
    gb_tensor *st = gb_zeros(2, (int64_t[]){gb_tensor_dim(p0, 1), gb_tensor_dim(p0, 0)}, GB_DTYPE_F32);
    gb_tensor *p = gb_transpose(st, 0, 1);
    gb_tensor_free(st);
    gbt_ok_status(gb_copy_(p, p0));
    ck_assert(gb_tensor_strides(p)[0] == 1);
    return p;
}

/* Every configuration's 10 steps against torch.optim's, for a contiguous
 * parameter and for one kept transposed (updated in memory order, its
 * state laid out alike). */
START_TEST(test_trajectories_match_torch) {
    gbt_oracle *o = gbt_oracle_load("optim");
    const char *name = configs[_i / 2];
    gb_tensor *p0 = gbt_get(o, "p0");
    gb_tensor *p = _i % 2 ? transposed_copy(p0) : gb_clone(p0);
    gbt_ok_status(gb_requires_grad_(p, true));
    gb_optim *opt = make(name, p);
    gbt_ok(opt);
    for (int t = 0; t < 10; t++) {
        gb_tensor *g = gbt_getf(o, "g%d", t);
        gbt_ok_status(gb_set_grad(p, g));
        gbt_ok_status(gb_optim_step(opt));
        gb_tensor *want = gbt_getf(o, "%s.%d", name, t);
        char what[64];
        snprintf(what, sizeof what, "%s%s step %d", name, _i % 2 ? " (transposed)" : "", t);
        gbt_assert_close(p, want, 1e-5, 1e-6, what);
        gb_tensor_free(want);
        gb_tensor_free(g);
    }
    gb_optim_zero_grad(opt);
    ck_assert_ptr_null(gb_tensor_grad(p));
    gb_optim_free(opt);
    gb_tensor_free(p);
    gb_tensor_free(p0);
    gbt_oracle_free(o);
}
END_TEST

/* Kept transposed, a parameter's update is the contiguous one's bit for bit,
 * with 37 stored rows (blocks of 16, the last short) and 3 steps of SGD
 * with momentum and of AdamW. */
START_TEST(test_transposed_equals_contiguous) {
    gb_rng r = gb_rng_seed(3);
    gb_tensor *p0 = gb_randn(&r, 2, (int64_t[]){5, 37}, 0.0f, 1.0f);
    for (int k = 0; k < 2; k++) {
        const char *name = k ? "adamw_custom" : "sgd_momentum";
        gb_tensor *a = gb_clone(p0), *b = transposed_copy(p0);
        gbt_ok_status(gb_requires_grad_(a, true));
        gbt_ok_status(gb_requires_grad_(b, true));
        gb_optim *oa = make(name, a), *ob = make(name, b);
        gbt_ok(oa);
        gbt_ok(ob);
        for (int t = 0; t < 3; t++) {
            gb_tensor *g = gb_randn(&r, 2, (int64_t[]){5, 37}, 0.0f, 1.0f);
            gbt_ok_status(gb_set_grad(a, g));
            gbt_ok_status(gb_set_grad(b, g));
            gbt_ok_status(gb_optim_step(oa));
            gbt_ok_status(gb_optim_step(ob));
            gb_tensor_free(g);
        }
        gb_tensor *bc = gb_contiguous(b);
        ck_assert_msg(!memcmp(gb_tensor_data(a), gb_tensor_data(bc), 5 * 37 * sizeof(float)), "%s", name);
        gb_tensor_free(bc);
        gb_optim_free(oa), gb_optim_free(ob);
        gb_tensor_free(a), gb_tensor_free(b);
    }
    gb_tensor_free(p0);
}
END_TEST

START_TEST(test_clip_grad_norm) {
    gbt_oracle *o = gbt_oracle_load("optim");
    gb_tensor *ga = gbt_get(o, "clip.ga"), *gbv = gbt_get(o, "clip.gb");
    gb_tensor *a = gb_zeros(2, (int64_t[]){3, 3}, GB_DTYPE_F32), *b = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F32);
    gb_requires_grad_(a, true);
    gb_requires_grad_(b, true);
    gb_tensor *ps[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        int max_norm = k ? 100 : 1;
        gb_set_grad(a, ga);
        gb_set_grad(b, gbv);
        float total;
        gbt_ok_status(gb_clip_grad_norm(2, ps, (float)max_norm, &total));
        gb_tensor *wt = gbt_getf(o, "clip%d.total", max_norm), *wa = gbt_getf(o, "clip%d.a", max_norm),
                  *wb = gbt_getf(o, "clip%d.b", max_norm);
        ck_assert_float_eq_tol(total, gb_tensor_f32(wt)[0], 1e-5f * gb_tensor_f32(wt)[0]);
        gbt_assert_close(gb_tensor_grad(a), wa, 1e-5, 1e-7, "clipped a");
        gbt_assert_close(gb_tensor_grad(b), wb, 1e-5, 1e-7, "clipped b");
        gb_tensor_free(wt), gb_tensor_free(wa), gb_tensor_free(wb);
    }
    gb_tensor_free(a), gb_tensor_free(b), gb_tensor_free(ga), gb_tensor_free(gbv);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_optim_errors) {
    gb_tensor *p = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_fails_with(gb_sgd_new(1, &p, (gb_sgd_opts){.lr = 0.1f}) == NULL, GB_ERR_ARG, "requires grad");
    gb_requires_grad_(p, true);
    gbt_fails_with(gb_sgd_new(1, &p, (gb_sgd_opts){.lr = 0.1f, .nesterov = true}) == NULL, GB_ERR_ARG, "nesterov");
    gb_adamw_opts bad = gb_adamw_defaults();
    bad.beta1 = 1.0f;
    gbt_fails_with(gb_adamw_new(1, &p, bad) == NULL, GB_ERR_ARG, "invalid betas");
    gb_tensor_free(p);
}
END_TEST

/* Stopping after 4 steps, restoring the state into a fresh optimiser and
 * going on gives the uninterrupted trajectory bit for bit (SGD's first step
 * differs with dampening, so a restored buffer must not look fresh). */
START_TEST(test_state_resumes_exactly) {
    gbt_oracle *o = gbt_oracle_load("optim");
    const char *name = configs[_i];
    gb_tensor *p0 = gbt_get(o, "p0"), *a = gb_clone(p0), *b = gb_clone(p0);
    gb_requires_grad_(a, true);
    gb_requires_grad_(b, true);
    gb_optim *oa = make(name, a), *ob = make(name, b);
    const char *states[] = {"momentum_buffer", "exp_avg", "exp_avg_sq"};
    for (int t = 0; t < 10; t++) {
        gb_tensor *g = gbt_getf(o, "g%d", t);
        gb_set_grad(a, g), gb_set_grad(b, g);
        gbt_ok_status(gb_optim_step(oa)), gbt_ok_status(gb_optim_step(ob));
        gb_tensor_free(g);
        if (t != 3) continue;
        gb_optim *fresh = make(name, b);
        for (int k = 0; k < 3; k++) {
            gb_tensor *st = gb_optim_state(ob, 0, states[k]);
            bool kept = (k == 0) == (strncmp(name, "sgd", 3) == 0);
            if (!strcmp(name, "sgd_plain")) kept = false; /* no momentum: no buffer */
            if (!kept) {
                ck_assert_ptr_null(st);
                continue;
            }
            gbt_ok(st);
            gbt_ok_status(gb_optim_set_state(fresh, 0, states[k], st));
        }
        gb_optim_set_steps(fresh, gb_optim_steps(ob));
        ck_assert_int_eq(gb_optim_steps(fresh), 4);
        gb_optim_free(ob);
        ob = fresh;
    }
    ck_assert_mem_eq(gb_tensor_f32(a), gb_tensor_f32(b), sizeof(float) * 20);
    gb_optim_free(oa), gb_optim_free(ob);
    gb_tensor_free(a), gb_tensor_free(b), gb_tensor_free(p0);
    gbt_oracle_free(o);
}
END_TEST

START_TEST(test_state_errors) {
    gb_tensor *p = gb_zeros(1, (int64_t[]){3}, GB_DTYPE_F32), *bad = gb_zeros(1, (int64_t[]){4}, GB_DTYPE_F32);
    gb_requires_grad_(p, true);
    gb_optim *o = gb_adamw_new(1, &p, gb_adamw_defaults());
    gbt_fails_with(gb_optim_state(o, 0, "exp_avg") == NULL, GB_ERR_STATE, "has no 'exp_avg' yet");
    gbt_fails_with(gb_optim_state(o, 0, "momentum_buffer") == NULL, GB_ERR_NOT_FOUND,
                   "AdamW has no state named 'momentum_buffer'");
    gbt_fails_with(gb_optim_state(o, 1, "exp_avg") == NULL, GB_ERR_INDEX, "parameter 1 is out of range");
    gbt_fails_with(gb_optim_set_state(o, 0, "exp_avg_sq", bad) != GB_OK, GB_ERR_SHAPE,
                   "'exp_avg_sq' of parameter 0 must have its shape [3], got [4]");
    /* Setting one moment makes the other (zeros): a step then runs. */
    gb_tensor *m = gb_ones(1, (int64_t[]){3}, GB_DTYPE_F32);
    gbt_ok_status(gb_optim_set_state(o, 0, "exp_avg", m));
    double v;
    gbt_ok_status(gb_tensor_get(gb_optim_state(o, 0, "exp_avg_sq"), (int64_t[]){2}, &v));
    ck_assert(v == 0.0);
    gb_set_grad(p, m);
    gbt_ok_status(gb_optim_step(o));
    gb_optim_free(o);
    gb_tensor_free(m), gb_tensor_free(bad), gb_tensor_free(p);
}
END_TEST

Suite *gb_suite_optim(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_loop_test(tc, test_trajectories_match_torch, 0, 2 * (int)(sizeof configs / sizeof configs[0]));
    tcase_add_test(tc, test_transposed_equals_contiguous);
    tcase_add_test(tc, test_clip_grad_norm);
    tcase_add_test(tc, test_optim_errors);
    tcase_add_loop_test(tc, test_state_resumes_exactly, 0, (int)(sizeof configs / sizeof configs[0]));
    tcase_add_test(tc, test_state_errors);
    suite_add_tcase(s, tc);
    return s;
}
