/* glassbox serve: sessions run for HTTP clients (nnsight's NDIF half), and
 * the client that sends them. A server hosts language models under names;
 * a request carries a whole session as JSON (gb_spec_json), is validated
 * completely (JSON, model names, statements, limits, a scan of every
 * trace) before it is queued, waits in a bounded queue, and runs on a
 * worker thread while its log lines, generated tokens and saved values
 * stream back as NDJSON events. docs/remote.md has the protocol.
 *
 * Usage (compiled as a test, tests/test_header_examples.c):
 *
 *     gb_lm *lm = gb_lm_open("models/gpt2-facts", NULL);
 *     gb_serve_model m = {"facts", lm};
 *     gb_serve_opts o = gb_serve_defaults();
 *     o.models = &m, o.nmodels = 1;                      // port 0: any free port
 *     gb_server *srv = lm ? gb_serve_start(&o) : NULL;
 *     if (srv) {
 *         char url[64];
 *         snprintf(url, sizeof url, "http://127.0.0.1:%d", gb_server_port(srv));
 *         gb_spec *sp = gb_spec_new();                   // glassbox trace --remote URL facts -p ... -e ...
 *         gb_spec_trace(sp, "facts");
 *         gb_spec_prompt(sp, "The Eiffel Tower is in the city of");
 *         gb_spec_statement(sp, "top = lm_head.output[0, -1].argmax(-1).save()");
 *         gb_remote_events ev = {0};                     // .result receives top, as a local run's
 *         if (gb_remote_run(url, NULL, sp, &ev) != GB_OK) fprintf(stderr, "%s\n", gb_last_error());
 *         gb_spec_free(sp);
 *         gb_serve_stop(srv);
 *     }
 *     gb_lm_free(lm);
 *
 * Security model: a request names hosted models and carries statements,
 * which are parsed by trace/statement.c into graph nodes: it can read and
 * edit activations and gradients of the models it names, within the
 * limits, and nothing else (no files, no code: any function outside the
 * statement language is refused with nnsight's "function whitelist"
 * error). Keys are compared in constant time and never logged.
 */
#ifndef GB_SERVE_H
#define GB_SERVE_H

#include "../session/session.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the server ------------------------------------------------------------ */

typedef struct gb_server gb_server;

/* A hosted model: its name in requests, and the model (borrowed; it must
 * outlive the server). */
typedef struct gb_serve_model {
    const char *name;
    gb_lm *lm;
} gb_serve_model;

typedef struct gb_serve_opts {
    const char *host;                 /* an IPv4 address to listen on; "127.0.0.1" */
    int port;                         /* 0: any free port (gb_server_port) */
    const gb_serve_model *models;
    int nmodels;
    const char *const *keys;          /* accepted API keys (copied); none: no key needed */
    int nkeys;
    int workers;                      /* threads running sessions; 1 */
    int queue;                        /* requests waiting at most; 16 (then 429) */
    size_t max_body;                  /* request bytes; 1 MB (413) */
    size_t max_result;                /* bytes of saved values returned per request; 64 MB */
    int64_t time_limit_ms;            /* per request, from when it starts running; 0: none */
    unsigned connection_timeout_s;    /* idle connection (a body that never arrives); 30 */
    int max_connections;              /* 64 */
    gb_spec_limits limits;            /* tokens, new tokens, batch, trace runs (413) */
    /* Access log: one line per request ("id=7 POST /session models=facts
     * status=200 ms=12.5 ..."), never a key. NULL: none. */
    void (*log)(void *ctx, const char *line);
    void *log_ctx;
    /* For tests: hook is called with "queued", "start" (on the worker,
     * before the session runs: a test may block there), "token" (on the
     * worker, after a token event is written: a test may block there too),
     * "cancel" (a client went away) and "end"; clock_ms replaces the monotonic clock the time
     * limit reads. */
    void (*hook)(void *ctx, const char *event);
    int64_t (*clock_ms)(void *ctx);
    void *test_ctx;
} gb_serve_opts;

/* Defaults as commented above, no models. */
gb_serve_opts gb_serve_defaults(void);
/* Listen and start the workers. NULL with an error (a port in use, no
 * models, a bad host). */
gb_server *gb_serve_start(const gb_serve_opts *o);
/* The port it listens on. */
int gb_server_port(const gb_server *srv);
/* Refuse new requests, cancel queued and running ones (their clients get
 * an error event), wait for the workers and connections, free. */
void gb_serve_stop(gb_server *srv);
/* Keys from a file, one per line (blank lines and lines starting with #
 * skipped). *keys: malloc'd array of malloc'd strings, free with
 * gb_serve_keys_free. */
gb_status gb_serve_read_keys(const char *path, char ***keys, int *n);
void gb_serve_keys_free(char **keys, int n);

/* ---- the client -------------------------------------------------------------- */

/* What a remote run reports as it streams (all optional): log lines, each
 * generation step's ids, and each trace run's saved values (the same
 * gb_spec_result a local run gives, without its local-only fields). */
typedef struct gb_remote_events {
    void (*log)(void *ctx, const char *line);
    gb_status (*token)(void *ctx, int trace, int step, const int64_t *ids, int64_t batch);
    gb_spec_result_fn result;
    void *ctx;
} gb_remote_events;

/* Run sp on the server at url ("http://host:port"; key NULL: none). GB_OK,
 * or the error the server reports, with the message a local run would
 * give and its status (a 400's, a run's), or "remote: ..." for HTTP and
 * transport errors (401, 413, 429 with its retry hint). */
gb_status gb_remote_run(const char *url, const char *key, const gb_spec *sp, const gb_remote_events *ev);
/* Scan sp on the server without running it (POST /scan): ev->result
 * receives each trace's scan as a local gb_session_scan of gb_spec_session
 * reports it (scan set; graph, statements and shapes, no trace or values),
 * or the error a local scan gives. */
gb_status gb_remote_scan(const char *url, const char *key, const gb_spec *sp, const gb_remote_events *ev);
/* GET url/path (e.g. "/models", "/health", "/models/NAME/tokenizer.json"): the body, malloc'd; *status
 * the HTTP status. NULL with an error on transport failure. */
char *gb_remote_get(const char *url, const char *path, const char *key, long *status);

#ifdef __cplusplus
}
#endif

#endif
