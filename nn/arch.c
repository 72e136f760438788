/* What every architecture descriptor (nn/arch.h) shares: typed reads of
 * config.json through the loader's callback, tying weights by path, and
 * printing the config. */
#include "arch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "modules_impl.h"

/* ---- reading config.json ------------------------------------------------ */

gb__nn_cfg_value gb__nn_cfg_get(const gb__nn_config *c, const char *key) { return c->get(c->obj, key); }

/* Record the first malformed field. */
static void gb__nn_cfg_bad(gb__nn_config *c, const char *key, const char *what) {
    if (c->st == GB_OK) c->st = gb__fail(GB_ERR_FORMAT, "model: %s: field '%s' %s", c->path, key, what);
}

static bool gb__nn_cfg_unset(gb__nn_cfg_value v) { return v.kind == GB__CFG_ABSENT || v.kind == GB__CFG_NULL; }

int64_t gb__nn_cfg_int(gb__nn_config *c, const char *key, const int64_t *dflt) {
    gb__nn_cfg_value v = gb__nn_cfg_get(c, key);
    if (gb__nn_cfg_unset(v) && dflt) return *dflt;
    if (v.kind == GB__CFG_ABSENT) {
        if (c->st == GB_OK) c->st = gb__fail(GB_ERR_FORMAT, "model: %s: missing field '%s'", c->path, key);
        return 0;
    }
    if (v.kind == GB__CFG_NUMBER && v.num == floor(v.num)) { /* beyond what a double holds exactly */
        char what[96];
        snprintf(what, sizeof what, "is %.6g, beyond the integers a JSON number holds exactly (2^53)", v.num);
        gb__nn_cfg_bad(c, key, what);
        return 0;
    }
    if (v.kind != GB__CFG_INT) {
        gb__nn_cfg_bad(c, key, "is not an integer");
        return 0;
    }
    return v.i;
}

int64_t gb__nn_cfg_count(gb__nn_config *c, const char *key, const int64_t *dflt) {
    int64_t n = gb__nn_cfg_int(c, key, dflt);
    if (n < 1 && c->st == GB_OK) {
        char what[64];
        snprintf(what, sizeof what, "is %lld; it must be at least 1", (long long)n);
        gb__nn_cfg_bad(c, key, what);
    }
    return n;
}

double gb__nn_cfg_num(gb__nn_config *c, const char *key, double dflt) {
    gb__nn_cfg_value v = gb__nn_cfg_get(c, key);
    if (gb__nn_cfg_unset(v)) return dflt;
    if (v.kind != GB__CFG_INT && v.kind != GB__CFG_NUMBER) {
        gb__nn_cfg_bad(c, key, "is not a number");
        return dflt;
    }
    return v.num;
}

bool gb__nn_cfg_bool(gb__nn_config *c, const char *key, bool dflt) {
    gb__nn_cfg_value v = gb__nn_cfg_get(c, key);
    if (gb__nn_cfg_unset(v)) return dflt;
    if (v.kind != GB__CFG_BOOL) {
        gb__nn_cfg_bad(c, key, "is not a boolean");
        return dflt;
    }
    return v.b;
}

void gb__nn_cfg_str(const gb__nn_config *c, const char *key, const char *dflt, char *out, size_t size) {
    gb__nn_cfg_value v = gb__nn_cfg_get(c, key);
    snprintf(out, size, "%s", v.kind == GB__CFG_STRING ? v.s : dflt);
}

/* ---- tied weights ------------------------------------------------------- */

/* The module holding parameter path ("lm_head.weight" -> lm_head) and the
 * parameter's local name. */
static gb_module *gb__nn_param_owner(gb_module *root, const char *path, const char **name) {
    const char *dot = strrchr(path, '.');
    char owner[512];
    snprintf(owner, sizeof owner, "%.*s", dot ? (int)(dot - path) : 0, path);
    *name = dot ? dot + 1 : path;
    return gb_module_find(root, owner);
}

gb_status gb__nn_tie_apply(gb_module *root, const gb__nn_tie *t) {
    const char *name, *src_name;
    gb_module *m = gb__nn_param_owner(root, t->param, &name);
    gb_module *src = m ? gb__nn_param_owner(root, t->source, &src_name) : NULL;
    if (!src) return gb_last_status();
    gb_status st = gb_module_tie_param(m, name, src, src_name);
    if (st == GB_OK) gb__nn_linear_mark_tied(m);
    return st;
}

/* ---- the printed config ------------------------------------------------- */

char *gb__nn_arch_config_str(const gb__nn_arch *a, const void *cfg) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return gb__fail_null(GB_ERR_ALLOC, "model: out of memory printing the config");
    fprintf(f, "model_type: %s\n", a->model_type);
    for (int i = 0; i < a->nfields; i++) {
        const gb__nn_config_field *fd = &a->fields[i];
        const void *p = (const char *)cfg + fd->offset;
        fprintf(f, "%s: ", fd->name);
        switch (fd->kind) {
        case GB__FIELD_INT: {
            int64_t v = *(const int64_t *)p;
            if (fd->unset && !v) fputs(fd->unset, f);
            else fprintf(f, "%lld", (long long)v);
            break;
        }
        case GB__FIELD_FLOAT: fprintf(f, "%g", (double)*(const float *)p); break;
        case GB__FIELD_DOUBLE: fprintf(f, "%g", *(const double *)p); break;
        case GB__FIELD_BOOL: fputs(*(const bool *)p ? "true" : "false", f); break;
        case GB__FIELD_STRING: fputs(fd->unset && !*(const char *)p ? fd->unset : (const char *)p, f); break;
        }
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        free(text);
        return gb__fail_null(GB_ERR_ALLOC, "model: out of memory printing the config");
    }
    return text;
}
