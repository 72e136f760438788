/* `glassbox serve`: host models for `glassbox trace --remote` and
 * `glassbox session --remote` (docs/remote.md). Runs until SIGINT or
 * SIGTERM; the access log goes to stderr. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "glassbox.h"

static int fail(const char *msg) {
    fprintf(stderr, "glassbox serve: %s\n", msg);
    return 1;
}

static void access_log(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

/* A whole non-negative number for option name; false with a message. */
static bool number(const char *name, const char *s, long long max, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < 0 || v > max) {
        fprintf(stderr, "glassbox serve: %s: expected a whole number from 0 to %lld, got '%s'\n", name, max, s);
        return false;
    }
    *out = v;
    return true;
}

int gb_cli_serve(int argc, char **argv) {
    gb_serve_opts o = gb_serve_defaults();
    gb_serve_model *models = calloc((size_t)argc + 1, sizeof *models);
    char **keys = NULL;
    int nkeys = 0, rc = 0;
    if (!models) return fail("out of memory");
    for (int i = 0; !rc && i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x = 0;
        static const struct {
            const char *name;
            long long max;
        } nums[] = {{"--port", 65535}, {"--workers", 256}, {"--queue", 1 << 20}, {"--max-tokens", 1LL << 40},
                    {"--max-new-tokens", 1 << 30}, {"--max-batch", 1 << 20}, {"--max-runs", 1LL << 40},
                    {"--max-body", 1LL << 40}, {"--max-result", 1LL << 50}, {"--time-limit", 1LL << 50},
                    {"--connection-timeout", 1 << 20}};
        int k = 0;
        while (k < (int)(sizeof nums / sizeof *nums) && strcmp(a, nums[k].name)) k++;
        if (k < (int)(sizeof nums / sizeof *nums)) {
            if (!v || !number(a, v, nums[k].max, &x)) rc = v ? 1 : fail("a number must follow a limit option");
            i++;
            switch (k) {
            case 0: o.port = (int)x; break;
            case 1: o.workers = (int)x; break;
            case 2: o.queue = (int)x; break;
            case 3: o.limits.max_tokens = x; break;
            case 4: o.limits.max_new_tokens = (int)x; break;
            case 5: o.limits.max_batch = (int)x; break;
            case 6: o.limits.max_runs = x; break;
            case 7: o.max_body = (size_t)x; break;
            case 8: o.max_result = (size_t)x; break;
            case 9: o.time_limit_ms = x; break;
            default: o.connection_timeout_s = (unsigned)x; break;
            }
        } else if (!strcmp(a, "--model") && v) {
            char *eq = strchr(argv[++i], '=');
            if (!eq || eq == argv[i]) {
                rc = fail("--model NAME=DIR");
                break;
            }
            *eq = 0;
            models[o.nmodels].name = argv[i];
            if (!(models[o.nmodels++].lm = gb_cli_open_lm(eq + 1, false))) rc = fail(gb_last_error());
        } else if (!strcmp(a, "--host") && v) {
            o.host = argv[++i];
        } else if (!strcmp(a, "--keys") && v) {
            if (gb_serve_read_keys(argv[++i], &keys, &nkeys) != GB_OK) rc = fail(gb_last_error());
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "unknown or incomplete option '%s'", a);
            rc = fail(msg) + 1;
        }
    }
    o.models = models;
    o.keys = (const char *const *)keys;
    o.nkeys = nkeys;
    o.log = access_log;
    /* the signals are waited for here, not delivered to the server's threads */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    gb_server *srv = rc ? NULL : gb_serve_start(&o);
    if (!rc && !srv) rc = fail(gb_last_error());
    if (srv) {
        fprintf(stderr, "glassbox serve: listening on http://%s:%d (%d model%s, %d worker%s, %s)\n", o.host,
                gb_server_port(srv), o.nmodels, o.nmodels == 1 ? "" : "s", o.workers, o.workers == 1 ? "" : "s",
                nkeys ? "API keys required" : "no API keys");
        int sig;
        sigwait(&set, &sig);
        fprintf(stderr, "glassbox serve: stopping\n");
        gb_serve_stop(srv);
    }
    for (int i = 0; i < o.nmodels; i++) gb_lm_free(models[i].lm);
    free(models);
    gb_serve_keys_free(keys, nkeys);
    return rc;
}
