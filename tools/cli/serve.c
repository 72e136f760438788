/* `glassbox serve`: host models for `glassbox trace --remote` and
 * `glassbox session --remote` (docs/remote.md). Runs until SIGINT or
 * SIGTERM; the access log goes to stderr. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "glassbox.h"

static void access_log(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}

#define SERVE_OPTS(X)                                                                                                \
    X(SRV_MODEL, "model", 0, STR, 0, 0, NULL, true, 0, "NAME=DIR", "host the model in DIR under NAME")            \
    GB_CLI_OPT_DTYPE(X, SRV_DTYPE)                                                                                   \
    X(SRV_HOST, "host", 0, STR, 0, 0, "127.0.0.1", false, 0, "ADDR", "the IPv4 address to listen on")             \
    X(SRV_PORT, "port", 0, INT, 0, 65535, "8080", false, 0, "N", "the port (0: any free one)")                    \
    X(SRV_KEYS, "keys", 0, STR, 0, 0, NULL, false, 0, "FILE", "API keys, one a line; without it, no key is needed") \
    X(SRV_WORKERS, "workers", 0, INT, 1, 256, "1", false, 0, "N", "threads running sessions")                     \
    X(SRV_QUEUE, "queue", 0, INT, 1, 1 << 20, "16", false, 0, "N", "requests waiting at most (then 429)")         \
    X(SRV_MAX_TOKENS, "max-tokens", 0, INT, 0, 1e12, "0", false, 0, "N", "prompt tokens of a trace at most (0: no limit)") \
    X(SRV_MAX_NEW, "max-new-tokens", 0, INT, 0, 1 << 30, "0", false, 0, "N", "new tokens of a trace at most")     \
    X(SRV_MAX_BATCH, "max-batch", 0, INT, 0, 1 << 20, "0", false, 0, "N", "invokes of a trace at most")           \
    X(SRV_MAX_RUNS, "max-runs", 0, INT, 0, 1e12, "0", false, 0, "N", "trace runs of a request at most (loops count each item)") \
    X(SRV_MAX_BODY, "max-body", 0, INT, 1, 1e12, "1048576", false, 0, "BYTES", "request bytes at most (413)")     \
    X(SRV_MAX_RESULT, "max-result", 0, INT, 0, 1e15, "67108864", false, 0, "BYTES",                               \
      "bytes of saved values a request returns at most")                                                           \
    X(SRV_TIME_LIMIT, "time-limit", 0, INT, 0, 1e15, "0", false, 0, "MS",                                         \
      "cancel a request running longer, inside a forward pass too (0: none)")                                      \
    X(SRV_CONN_TIMEOUT, "connection-timeout", 0, INT, 1, 1 << 20, "30", false, 0, "S",                             \
      "drop a connection silent this long (a body that never arrives)")
enum { SERVE_OPTS(GB_CLI_OPT_ENUM) SRV_NOPTS };
static const gb_cli_opt serve_opts[] = {SERVE_OPTS(GB_CLI_OPT_INIT)};

static int serve_main(const gb_cli_args *a) {
    gb_serve_opts o = gb_serve_defaults();
    gb_serve_model *models = calloc((size_t)a->nseq + 1, sizeof *models);
    char **keys = NULL;
    int nkeys = 0, rc = 0;
    if (!models) return gb_cli_fail("serve", "out of memory");
    o.host = gb_cli_str(a, SRV_HOST);
    o.port = (int)gb_cli_int(a, SRV_PORT);
    o.workers = (int)gb_cli_int(a, SRV_WORKERS);
    o.queue = (int)gb_cli_int(a, SRV_QUEUE);
    o.limits.max_tokens = gb_cli_int(a, SRV_MAX_TOKENS);
    o.limits.max_new_tokens = (int)gb_cli_int(a, SRV_MAX_NEW);
    o.limits.max_batch = (int)gb_cli_int(a, SRV_MAX_BATCH);
    o.limits.max_runs = gb_cli_int(a, SRV_MAX_RUNS);
    o.max_body = (size_t)gb_cli_int(a, SRV_MAX_BODY);
    o.max_result = (size_t)gb_cli_int(a, SRV_MAX_RESULT);
    o.time_limit_ms = gb_cli_int(a, SRV_TIME_LIMIT);
    o.connection_timeout_s = (unsigned)gb_cli_int(a, SRV_CONN_TIMEOUT);
    if (!gb_cli_given(a, SRV_MODEL)) rc = gb_cli_usage_error("serve", "give a model to host with --model NAME=DIR");
    for (int i = 0; !rc && i < a->nseq; i++) {
        if (a->seq[i].opt != SRV_MODEL) continue;
        char *eq = strchr(a->seq[i].str, '=');
        if (!eq || eq == a->seq[i].str) {
            rc = gb_cli_usage_error("serve", "--model takes NAME=DIR, got '%s'", a->seq[i].str);
            break;
        }
        *eq = 0; /* argv's own string: the name and the directory stay in it */
        models[o.nmodels].name = a->seq[i].str;
        if (!(models[o.nmodels++].lm = gb_cli_open_lm(NULL, eq + 1, NULL, gb_cli_f32(a, SRV_DTYPE))))
            rc = gb_cli_fail("serve", "%s", gb_last_error());
    }
    if (!rc && gb_cli_given(a, SRV_KEYS) && gb_serve_read_keys(gb_cli_str(a, SRV_KEYS), &keys, &nkeys) != GB_OK)
        rc = gb_cli_fail("serve", "%s", gb_last_error());
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
    if (!rc && !srv) rc = gb_cli_fail("serve", "%s", gb_last_error());
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

const gb_cli_cmd gb_cli_cmd_serve = {
    "serve", serve_main, "", 0, 0, "run sessions for HTTP clients",
    "Hosts each --model under its name for glassbox trace --remote and session --remote, until SIGINT or "
    "SIGTERM; one access-log line per request on standard error (never a key). Limits over which a request is "
    "refused (413) are 0 for none. docs/remote.md has the protocol and the security model.",
    serve_opts, SRV_NOPTS};
