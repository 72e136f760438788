/* Loading weights into a module tree built by hand, PyTorch's
 * load_state_dict(strict=True): every parameter by its dotted name. All
 * problems are collected and reported at once (PyTorch's wording), and
 * nothing is changed unless everything fits. */
#include "../tensor/base.h"
#include "io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_ds.h>

/* Append ", name" (or "name") to a growing stb_ds char list. */
static bool gb__io_list_add(char **list, const char *fmt, const char *a, const char *b, const char *c) {
    char item[640];
    int n = snprintf(item, sizeof item, fmt, a, b, c);
    if (n < 0) return true;
    size_t len = (size_t)n < sizeof item ? (size_t)n : sizeof item - 1, sep = arrlen(*list) ? 2 : 0;
    char *at = GB_ARR_ADDN(*list, sep + len, "load");
    if (!at) return false;
    memcpy(at, ", ", sep);
    memcpy(at + sep, item, len);
    return true;
}

gb_status gb_module_load_from(gb_module *m, gb_safetensors *st, bool allow_unexpected) {
    if (!m || !st) return gb__fail(GB_ERR_ARG, "load: no module or no file");
    const char **names = NULL;
    gb_tensor **params = NULL;
    int n = gb_module_parameters(m, &names, &params);
    if (n < 0) return gb_last_status();
    char *missing = NULL, *unexpected = NULL, *mismatch = NULL; /* stb_ds char lists */
    bool ok = true;
    for (int i = 0; ok && i < n; i++) {
        gb_dtype dt;
        int nd;
        int64_t shape[GB_MAX_DIMS];
        if (!gb_safetensors_has(st, names[i])) {
            ok = gb__io_list_add(&missing, "\"%s\"%s%s", names[i], "", "");
        } else if (gb_safetensors_info(st, names[i], &dt, &nd, shape) == GB_OK &&
                   (nd != gb_tensor_ndim(params[i]) || memcmp(shape, gb_tensor_shape(params[i]), sizeof(int64_t) * (size_t)nd))) {
            char b1[160], b2[160];
            ok = gb__io_list_add(&mismatch, "size mismatch for %s: copying a param with shape torch.Size(%s) from checkpoint, "
                                    "the shape in current model is torch.Size(%s)", names[i], gb__shape_str(b1, 160, nd, shape),
                         gb__shape_str(b2, 160, gb_tensor_ndim(params[i]), gb_tensor_shape(params[i])));
        }
    }
    for (int j = 0; ok && !allow_unexpected && j < gb_safetensors_count(st); j++) {
        const char *name = gb_safetensors_name(st, j);
        bool known = false;
        for (int i = 0; i < n && !known; i++) known = !strcmp(names[i], name);
        if (!known) ok = gb__io_list_add(&unexpected, "\"%s\"%s%s", name, "", "");
    }
    gb_status s = ok ? GB_OK : GB_ERR_ALLOC;
    if (s == GB_OK && (missing || unexpected || mismatch)) {
        if (!GB_ARR_PUT(missing, 0, "load") || !GB_ARR_PUT(unexpected, 0, "load") || !GB_ARR_PUT(mismatch, 0, "load"))
            s = GB_ERR_ALLOC;
    }
    if (s == GB_OK && (missing || unexpected || mismatch)) {
        s = gb__fail(mismatch[0] ? GB_ERR_SHAPE : missing[0] ? GB_ERR_NOT_FOUND : GB_ERR_FORMAT,
                     "load: %s: Error(s) in loading state_dict for %s:%s%s%s%s%s%s%s%s",
                     gb_safetensors_path(st), gb_module_type(m), missing[0] ? " Missing key(s) in state_dict: " : "",
                     missing, missing[0] ? "." : "", unexpected[0] ? " Unexpected key(s) in state_dict: " : "",
                     unexpected, unexpected[0] ? "." : "", mismatch[0] ? " " : "", mismatch);
    }
    /* Everything fits: set each parameter on its owning module. */
    for (int i = 0; i < n && s == GB_OK; i++) {
        const char *dot = strrchr(names[i], '.');
        char path[512];
        snprintf(path, sizeof path, "%.*s", dot ? (int)(dot - names[i]) : 0, names[i]);
        gb_module *owner = gb_module_find(m, path);
        gb_tensor *t = owner ? gb_safetensors_get(st, names[i]) : NULL;
        s = t ? gb_module_set_param(owner, dot ? dot + 1 : names[i], t) : gb_last_status();
        gb_tensor_free(t);
    }
    arrfree(missing), arrfree(unexpected), arrfree(mismatch);
    free(names);
    free(params);
    return s;
}

gb_status gb_module_load(gb_module *m, const char *path) {
    gb_safetensors *st = gb_safetensors_open(path);
    if (!st) return gb_last_status();
    gb_status s = gb_module_load_from(m, st, false);
    gb_safetensors_free(st);
    return s;
}
