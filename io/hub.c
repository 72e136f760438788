/* Finding a model's files: a directory, a .safetensors file, or a Hub id in
 * the local Hugging Face cache (never the network). The cache layout is
 * huggingface_hub's: models--org--name/{refs/<branch>, snapshots/<commit>/}. */
#include "io.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../tensor/base.h"
#include "file.h"

/* printf into a new string (NULL with GB_ERR_ALLOC). */
static char *gb__io_hub_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *gb__io_hub_fmt(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s) return gb__fail_null(GB_ERR_ALLOC, "hub: out of memory");
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static const char *gb__io_hub_env(const char *name) {
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

/* An environment path with a leading "~/" expanded, as huggingface_hub does. */
static char *gb__io_hub_env_path(const char *value, const char *suffix) {
    const char *home = gb__io_hub_env("HOME");
    if (value[0] == '~' && (value[1] == '/' || value[1] == 0) && home)
        return gb__io_hub_fmt("%s%s%s", home, value + 1, suffix);
    return gb__io_hub_fmt("%s%s", value, suffix);
}

char *gb_hf_cache_dir(void) {
    const char *v;
    if ((v = gb__io_hub_env("HF_HUB_CACHE"))) return gb__io_hub_env_path(v, "");
    if ((v = gb__io_hub_env("HUGGINGFACE_HUB_CACHE"))) return gb__io_hub_env_path(v, ""); /* its older name */
    if ((v = gb__io_hub_env("HF_HOME"))) return gb__io_hub_env_path(v, "/hub");
    if ((v = gb__io_hub_env("XDG_CACHE_HOME"))) return gb__io_hub_env_path(v, "/huggingface/hub");
    if ((v = gb__io_hub_env("HOME"))) return gb__io_hub_fmt("%s/.cache/huggingface/hub", v);
    return gb__fail_null(GB_ERR_NOT_FOUND, "hub: no cache directory: HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME and HOME "
                         "are all unset");
}

void gb_hf_files_free(gb_hf_files *f) {
    if (!f) return;
    free(f->dir);
    free(f->config);
    free(f->weights);
    memset(f, 0, sizeof *f);
}

/* Fill out from a model directory; `what` says how it was reached. */
static gb_status gb__io_hub_from_dir(const char *dir, const char *what, gb_hf_files *out) {
    char *single = gb__io_hub_fmt("%s/model.safetensors", dir);
    char *index = gb__io_hub_fmt("%s/model.safetensors.index.json", dir);
    char *config = gb__io_hub_fmt("%s/config.json", dir);
    char *pickle = gb__io_hub_fmt("%s/pytorch_model.bin", dir);
    gb_status s = GB_OK;
    if (!single || !index || !config || !pickle) {
        s = GB_ERR_ALLOC;
        goto done;
    }
    /* Unreadable directories, and directories, FIFOs or broken links where
     * the files should be, are named as what they are, not as missing. */
    if (access(dir, X_OK) != 0) { /* search permission: the files are opened by name */
        s = gb__fail(GB_ERR_IO, "hub: %s: cannot read the model directory %s: %s", what, dir, strerror(errno));
        goto done;
    }
    char why[160];
    const char *bad;
    char *const files[] = {config, single, index}; /* the index is read only without model.safetensors */
    for (size_t i = 0; i < (gb__io_file_is_regular(single) ? 2u : 3u); i++) {
        if ((bad = gb__io_file_not_regular(files[i], why, sizeof why))) {
            s = gb__fail(GB_ERR_IO, "hub: %s: %s is %s (expected a regular file)", what, files[i], bad);
            goto done;
        }
    }
    if (!gb__io_file_is_regular(config)) {
        s = gb__fail(GB_ERR_NOT_FOUND, "hub: %s: no config.json in %s", what, dir);
        goto done;
    }
    char **weights = gb__io_file_is_regular(single) ? &single : gb__io_file_is_regular(index) ? &index : NULL;
    if (!weights) {
        s = gb__fail(GB_ERR_NOT_FOUND, "hub: %s: no model.safetensors or model.safetensors.index.json in %s%s", what,
                     dir, gb__io_file_is_regular(pickle) ? " (only pytorch_model.bin, a pickle, which glassbox does not read)"
                                                  : "");
        goto done;
    }
    out->dir = strdup(dir);
    out->config = config;
    out->weights = *weights;
    config = NULL;
    *weights = NULL;
    if (!out->dir) s = gb__fail(GB_ERR_ALLOC, "hub: out of memory");
done:
    free(single);
    free(index);
    free(config);
    free(pickle);
    return s;
}

/* Letters, digits, '.', '_', '-' and not a dot-only name: safe as one path
 * component (Hub names, branches and commit hashes all are). */
static bool gb__io_hub_component(const char *s, size_t n) {
    if (n == 0 || n > 200 || (s[0] == '.' && (n == 1 || (n == 2 && s[1] == '.')))) return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') && !(s[i] >= '0' && s[i] <= '9') &&
            !strchr("._-", s[i]))
            return false;
    return true;
}

/* Split "org/name@rev" into the cache folder name and the revision. */
static bool gb__io_hub_parse_id(const char *id, char *folder, size_t fsize, char *rev, size_t rsize) {
    const char *at = strchr(id, '@');
    size_t idlen = at ? (size_t)(at - id) : strlen(id);
    const char *slash = memchr(id, '/', idlen);
    if (slash) {
        size_t org = (size_t)(slash - id), name = idlen - org - 1;
        if (!gb__io_hub_component(id, org) || !gb__io_hub_component(slash + 1, name)) return false;
        snprintf(folder, fsize, "models--%.*s--%.*s", (int)org, id, (int)name, slash + 1);
    } else {
        if (!gb__io_hub_component(id, idlen)) return false;
        snprintf(folder, fsize, "models--%.*s", (int)idlen, id);
    }
    const char *r = at ? at + 1 : "main";
    if (!gb__io_hub_component(r, strlen(r))) return false;
    snprintf(rev, rsize, "%s", r);
    return true;
}

/* The snapshot of a revision: the commit that refs/<rev> names, else rev
 * itself when a snapshot has that name (a commit hash). */
static gb_status gb__io_hub_snapshot(const char *model, const char *repo, const char *rev, char **out) {
    *out = NULL;
    char *ref = gb__io_hub_fmt("%s/refs/%s", repo, rev);
    if (!ref) return GB_ERR_ALLOC;
    FILE *fp = fopen(ref, "r");
    char commit[256] = {0};
    bool have = false;
    if (fp) {
        size_t n = fread(commit, 1, sizeof commit - 1, fp);
        fclose(fp);
        while (n && (commit[n - 1] == '\n' || commit[n - 1] == '\r' || commit[n - 1] == ' ')) n--;
        commit[n] = 0;
        if (!gb__io_hub_component(commit, n)) {
            gb_status s = gb__fail(GB_ERR_FORMAT, "hub: %s: %s does not hold a commit hash", model, ref);
            free(ref);
            return s;
        }
        have = true;
    }
    if (!have) {
        char *snap = gb__io_hub_fmt("%s/snapshots/%s", repo, rev);
        if (!snap) {
            free(ref);
            return GB_ERR_ALLOC;
        }
        if (gb__io_file_is_dir(snap)) {
            snprintf(commit, sizeof commit, "%s", rev);
            have = true;
        }
        free(snap);
    }
    if (!have) {
        gb_status s = gb__fail(GB_ERR_NOT_FOUND, "hub: %s: revision '%s' is not in the cache (no %s and no "
                               "%s/snapshots/%s)", model, rev, ref, repo, rev);
        free(ref);
        return s;
    }
    free(ref);
    *out = gb__io_hub_fmt("%s/snapshots/%s", repo, commit);
    if (!*out) return GB_ERR_ALLOC;
    if (!gb__io_file_is_dir(*out)) {
        gb_status s = gb__fail(GB_ERR_NOT_FOUND, "hub: %s: revision '%s' is commit %s, but %s is missing", model, rev,
                               commit, *out);
        free(*out);
        *out = NULL;
        return s;
    }
    return GB_OK;
}

gb_status gb_hf_resolve(const char *model, gb_hf_files *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!out || !model || !model[0]) return gb__fail(GB_ERR_ARG, "hub: %s is NULL or empty", out ? "model" : "out");
    struct stat sb;
    if (stat(model, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return gb__io_hub_from_dir(model, model, out);
        size_t n = strlen(model);
        bool st_file = n >= 12 && !strcmp(model + n - 12, ".safetensors");
        bool index = n >= 23 && !strcmp(model + n - 23, ".safetensors.index.json");
        if (!S_ISREG(sb.st_mode) && (st_file || index)) {
            char why[160];
            return gb__fail(GB_ERR_IO, "hub: %s is %s (expected a regular file)", model,
                            gb__io_file_not_regular(model, why, sizeof why));
        }
        if (!S_ISREG(sb.st_mode) || (!st_file && !index))
            return gb__fail(GB_ERR_ARG, "hub: %s is neither a model directory nor a .safetensors or index file",
                            model);
        const char *slash = strrchr(model, '/');
        char *dir = slash ? strndup(model, slash == model ? 1 : (size_t)(slash - model)) : strdup(".");
        char *config = dir ? gb__io_hub_fmt("%s/config.json", dir) : NULL;
        char *weights = strdup(model);
        if (!dir || !config || !weights) {
            free(dir);
            free(config);
            free(weights);
            return gb__fail(GB_ERR_ALLOC, "hub: out of memory");
        }
        if (!gb__io_file_is_regular(config)) {
            gb_status s = gb__fail(GB_ERR_NOT_FOUND, "hub: %s: no config.json beside it (looked for %s)", model,
                                   config);
            free(dir);
            free(config);
            free(weights);
            return s;
        }
        *out = (gb_hf_files){dir, config, weights};
        return GB_OK;
    }

    char why[160];
    const char *bad = gb__io_file_not_regular(model, why, sizeof why);
    if (bad) return gb__fail(GB_ERR_IO, "hub: %s is %s", model, bad); /* a broken link, a search permission */
    char folder[512], rev[256];
    if (model[0] == '/' || model[0] == '.' || !gb__io_hub_parse_id(model, folder, sizeof folder, rev, sizeof rev))
        return gb__fail(GB_ERR_NOT_FOUND, "hub: %s: no such file or directory, and not a Hub id (org/name)", model);
    char *cache = gb_hf_cache_dir();
    if (!cache) return gb_last_status();
    char *repo = gb__io_hub_fmt("%s/%s", cache, folder);
    free(cache);
    if (!repo) return GB_ERR_ALLOC;
    gb_status s;
    if (!gb__io_file_is_dir(repo)) {
        s = gb__fail(GB_ERR_NOT_FOUND, "hub: %s: not a local path, and not in the Hugging Face cache (looked for %s; "
                     "set HF_HUB_CACHE or HF_HOME, or pass a directory: glassbox does not download)", model, repo);
        free(repo);
        return s;
    }
    char *snap = NULL;
    s = gb__io_hub_snapshot(model, repo, rev, &snap);
    if (s == GB_OK) s = gb__io_hub_from_dir(snap, model, out);
    free(snap);
    free(repo);
    return s;
}
