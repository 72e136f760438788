/* The bundled model: what every subcommand opens when no MODEL is given.
 *
 * glassbox ships a small GPT-2 it trained itself (models/gpt2-facts, made by
 * `make model`). The CLI finds it from its own executable rather than the
 * working directory, so `build/glassbox info` works from anywhere: beside a
 * build tree (build/glassbox, build/san/glassbox -> models/) or an
 * installation (PREFIX/bin/glassbox -> PREFIX/share/glassbox/models/).
 * $GLASSBOX_MODEL overrides it. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static char gb__default[PATH_MAX];

static bool is_model_dir(const char *dir) {
    char path[PATH_MAX];
    struct stat sb;
    return snprintf(path, sizeof path, "%s/config.json", dir) < (int)sizeof path && stat(path, &sb) == 0 &&
           S_ISREG(sb.st_mode);
}

const char *gb_cli_default_model(void) {
    const char *env = getenv("GLASSBOX_MODEL");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0; /* the executable's directory */
    static const char *const rel[] = {"../models/", "../../models/", "../share/glassbox/models/"};
    for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
        char path[PATH_MAX];
        int len = snprintf(path, sizeof path, "%s/%s%s", exe, rel[i], GB_CLI_MODEL_NAME);
        if (len < (int)sizeof path && is_model_dir(path) && realpath(path, gb__default)) return gb__default;
    }
    return NULL;
}

const char *gb_cli_model(const char *cmd, const char *given) {
    if (given) return given;
    const char *m = gb_cli_default_model();
    if (!m)
        fprintf(stderr,
                "glassbox %s: no MODEL given, and the bundled model (models/%s, beside the build or installed "
                "under share/glassbox) was not found; give a directory, a .safetensors file or a Hub id, or set "
                "GLASSBOX_MODEL\n",
                cmd, GB_CLI_MODEL_NAME);
    return m;
}
