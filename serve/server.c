/* The server: libmicrohttpd with a thread per connection, a bounded queue
 * of validated sessions, and worker threads that run them. A request's
 * session is built and scanned once, in its connection's thread, before
 * it is queued; a worker runs that same session and appends NDJSON events
 * to the request's buffer, which the connection's thread streams.
 *
 * Workers share each hosted model (ARCHITECTURE.md, Threads): building,
 * scanning and running sessions need no lock of the server's (a gb_lm
 * serialises its own tokenizer). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "serve_impl.h"

typedef struct gb__srv_job gb__srv_job;

struct gb_server {
    gb_serve_opts o;
    char **keys;
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;     /* the queue and counters */
    pthread_cond_t cv;
    gb__srv_job **queue;        /* ring of o.queue */
    int qhead, qlen, running;
    atomic_bool stopping;   /* read by workers' cancellation checks without the lock */
    pthread_t *workers;
    int nworkers;
    atomic_ullong next_id;
};

struct gb__srv_job {
    gb_server *srv;
    unsigned long long id;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;               /* the connection's and the worker's */
    char *out;              /* NDJSON written so far */
    size_t len, cap, sent;
    bool done, cancelled, timed_out, too_big;
    bool scan_only;         /* POST /scan: the scan's events are the answer */
    gb_spec *sp;
    gb_session *s;
    char models[256];
    int64_t t0, started;
    size_t result_bytes;
    int status;             /* for the access log: 200, or the event's equivalent */
};

/* One connection's request while its body arrives. */
typedef struct gb__srv_conn {
    char *body;
    size_t len;
    bool too_big;
    unsigned long long id;
    int64_t t0;
} gb__srv_conn;

static int64_t gb__srv_now(const gb_server *srv) {
    if (srv->o.clock_ms) return srv->o.clock_ms(srv->o.test_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double gb__srv_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void gb__srv_hook(const gb_server *srv, const char *event) {
    if (srv->o.hook) srv->o.hook(srv->o.test_ctx, event);
}

static void gb__srv_log(const gb_server *srv, unsigned long long id, const char *method, const char *url,
                        const char *models, int status, double ms, const char *what) {
    if (!srv->o.log) return;
    char line[512];
    snprintf(line, sizeof line, "id=%llu %s %s models=%s status=%d ms=%.1f%s%s", id, method, url,
             models && *models ? models : "-", status, ms, what ? " " : "", what ? what : "");
    srv->o.log(srv->o.log_ctx, line);
}

gb_serve_opts gb_serve_defaults(void) {
    return (gb_serve_opts){.host = "127.0.0.1", .workers = 1, .queue = 16, .max_body = 1 << 20,
                           .max_result = 64u << 20, .connection_timeout_s = 30, .max_connections = 64};
}

/* ---- keys ---------------------------------------------------------------- */

gb_status gb_serve_read_keys(const char *path, char ***keys, int *n) {
    *keys = NULL, *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return gb__fail(GB_ERR_IO, "serve: keys file %s cannot be read", path);
    char line[1024];
    gb_status st = GB_OK;
    while (st == GB_OK && fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = 0;
        if (!len || line[0] == '#') continue;
        char **grown = realloc(*keys, sizeof **keys * (size_t)(*n + 1));
        char *k = grown ? strdup(line) : NULL;
        if (grown) *keys = grown;
        if (!k) st = gb__fail(GB_ERR_ALLOC, "serve: out of memory reading keys");
        else (*keys)[(*n)++] = k;
    }
    fclose(f);
    if (st == GB_OK && !*n) st = gb__fail(GB_ERR_FORMAT, "serve: keys file %s has no keys", path);
    if (st != GB_OK) gb_serve_keys_free(*keys, *n), *keys = NULL, *n = 0;
    return st;
}

void gb_serve_keys_free(char **keys, int n) {
    for (int i = 0; i < n; i++) free(keys[i]);
    free(keys);
}

/* Whether key is one of the server's, in time that depends on neither
 * which key matched nor where a wrong key differs. */
static bool gb__srv_key_ok(const gb_server *srv, const char *key) {
    if (!srv->o.nkeys) return true;
    size_t klen = key ? strlen(key) : 0;
    unsigned ok = 0;
    for (int i = 0; i < srv->o.nkeys; i++) {
        const char *k = srv->keys[i];
        size_t len = strlen(k);
        unsigned diff = (unsigned)(len ^ klen);
        for (size_t j = 0; j < len; j++) diff |= (unsigned char)k[j] ^ (unsigned char)(j < klen ? key[j] : 0);
        ok |= diff == 0;
    }
    return key && ok;
}

static const char *gb__srv_request_key(struct MHD_Connection *c) {
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (auth && !strncmp(auth, "Bearer ", 7)) return auth + 7;
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
}

/* ---- responses ----------------------------------------------------------- */

/* len bytes of body (which need not end in a NUL). */
static enum MHD_Result gb__srv_reply_n(struct MHD_Connection *c, unsigned status, const char *body, size_t len,
                                       const char *type, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result gb__srv_reply(struct MHD_Connection *c, unsigned status, const char *body, const char *type,
                                     const char *retry_after) {
    return gb__srv_reply_n(c, status, body, strlen(body), type, retry_after);
}

/* {"error": message, "status": name} */
static enum MHD_Result gb__srv_error(gb_server *srv, struct MHD_Connection *c, gb__srv_conn *cn, const char *method,
                                     const char *url, unsigned status, gb_status st, const char *msg,
                                     const char *retry_after) {
    gb__json_json *o = gb__json_new_object();
    gb__json_set(o, "error", gb__json_new_string(msg));
    gb__json_set(o, "status", gb__json_new_string(gb_status_name(st)));
    char *text = gb__json_print(o);
    gb__json_free(o);
    enum MHD_Result r = gb__srv_reply(c, status, text ? text : "{}", "application/json", retry_after);
    free(text);
    gb__srv_log(srv, cn->id, method, url, NULL, (int)status, gb__srv_ms() - (double)cn->t0 / 1e3, NULL);
    return r;
}

static char *gb__srv_models_json(gb_server *srv) {
    gb__json_json *arr = gb__json_new_array();
    for (int i = 0; arr && i < srv->o.nmodels; i++) {
        gb_lm *lm = srv->o.models[i].lm;
        gb_module *root = gb_lm_module(lm);
        const char **names = NULL;
        gb_tensor **params = NULL;
        int np = gb_module_parameters(root, &names, &params);
        gb__json_json *m = gb__json_new_object();
        gb__json_set(m, "name", gb__json_new_string(srv->o.models[i].name));
        gb__json_set(m, "model_type", gb__json_new_string(gb_model_type(gb_lm_model(lm))));
        gb__json_set(m, "root", gb__json_new_string(gb_module_type(root)));
        gb__json_set(m, "parameters", gb__json_new_number((double)gb_module_num_parameters(root)));
        gb__json_set(m, "dtype", gb__json_new_string(np > 0 ? gb_dtype_name(gb_tensor_dtype(params[0])) : "none"));
        gb__json_json *kids = gb__json_new_array();
        for (int k = 0; k < gb_module_num_children(root); k++)
            gb__json_push(kids, gb__json_new_string(gb_module_name(gb_module_child(root, k))));
        gb__json_set(m, "children", kids);
        gb__json_push(arr, m);
        free(names), free(params);
    }
    gb__json_json *o = gb__json_new_object();
    gb__json_set(o, "models", arr);
    char *text = gb__json_print(o);
    gb__json_free(o);
    return text;
}

/* GET /models/NAME/tokenizer.json: the file the model's tokenizer was read
 * from, so that a client prints token text as a local run does (--top,
 * --png). */
static enum MHD_Result gb__srv_tokenizer(gb_server *srv, struct MHD_Connection *c, gb__srv_conn *cn, const char *url) {
    const char *name = url + strlen("/models/"), *tail = strchr(name, '/');
    gb_lm *lm = NULL;
    for (int i = 0; tail && !strcmp(tail, "/tokenizer.json") && i < srv->o.nmodels; i++)
        if (strlen(srv->o.models[i].name) == (size_t)(tail - name) && !strncmp(srv->o.models[i].name, name, (size_t)(tail - name)))
            lm = srv->o.models[i].lm;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", lm ? gb_model_dir(gb_lm_model(lm)) : "");
    int fd = lm && gb_lm_tokenizer(lm) ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        return gb__srv_error(srv, c, cn, "GET", url, MHD_HTTP_NOT_FOUND, GB_ERR_NOT_FOUND,
                             lm ? "serve: this model's tokenizer is not a tokenizer.json the server can send"
                                : "serve: no such endpoint (GET /models/NAME/tokenizer.json names a hosted model)",
                             NULL);
    }
    struct MHD_Response *r = MHD_create_response_from_fd((uint64_t)sb.st_size, fd); /* owns fd */
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    gb__srv_log(srv, cn->id, "GET", url, NULL, MHD_HTTP_OK, gb__srv_ms() - (double)cn->t0 / 1e3, NULL);
    return ret;
}

/* ---- jobs ---------------------------------------------------------------- */

/* Append one event line (takes j's lock). */
static void gb__srv_job_emit(gb__srv_job *job, gb__json_json *ev) {
    char *text = gb__json_print(ev);
    gb__json_free(ev);
    if (!text) return;
    size_t n = strlen(text);
    pthread_mutex_lock(&job->mu);
    if (job->len + n + 2 > job->cap) {
        size_t cap = (job->len + n + 2) * 2;
        char *grown = realloc(job->out, cap);
        if (grown) job->out = grown, job->cap = cap;
    }
    if (job->len + n + 2 <= job->cap) {
        memcpy(job->out + job->len, text, n);
        job->out[job->len + n] = '\n';
        job->len += n + 1;
    }
    pthread_cond_broadcast(&job->cv);
    pthread_mutex_unlock(&job->mu);
    free(text);
}

static void gb__srv_job_release(gb__srv_job *job) {
    pthread_mutex_lock(&job->mu);
    bool last = --job->refs == 0;
    pthread_mutex_unlock(&job->mu);
    if (!last) return;
    gb_session_free(job->s);
    gb_spec_free(job->sp);
    pthread_mutex_destroy(&job->mu);
    pthread_cond_destroy(&job->cv);
    free(job->out);
    free(job);
}

static bool gb__srv_job_cancelled(void *ctx) {
    gb__srv_job *job = ctx;
    gb_server *srv = job->srv;
    pthread_mutex_lock(&job->mu);
    bool c = job->cancelled;
    pthread_mutex_unlock(&job->mu);
    if (!c && srv->o.time_limit_ms && gb__srv_now(srv) - job->started > srv->o.time_limit_ms) job->timed_out = c = true;
    return c || srv->stopping;
}

static void gb__srv_job_log(void *ctx, const char *line) {
    gb__json_json *ev = gb__json_new_object();
    gb__json_set(ev, "event", gb__json_new_string("log"));
    gb__json_set(ev, "line", gb__json_new_string(line));
    gb__srv_job_emit(ctx, ev);
}

static gb_status gb__srv_job_token(void *ctx, int trace, int step, const int64_t *ids, int64_t batch) {
    gb__json_json *ev = gb__json_new_object(), *a = gb__json_new_array();
    for (int64_t i = 0; i < batch; i++) gb__json_push(a, gb__json_new_number((double)ids[i]));
    gb__json_set(ev, "event", gb__json_new_string("token"));
    gb__json_set(ev, "trace", gb__json_new_number(trace));
    gb__json_set(ev, "step", gb__json_new_number(step));
    gb__json_set(ev, "ids", a);
    gb__srv_job_emit(ctx, ev);
    gb__srv_hook(((gb__srv_job *)ctx)->srv, "token");
    return GB_OK;
}

/* {"event": kind, "trace": N, "items": [...]}: an event about one trace run. */
static gb__json_json *gb__srv_run_event(const char *kind, const gb_spec_result *r) {
    gb__json_json *ev = gb__json_new_object(), *items = gb__json_new_array();
    gb__json_set(ev, "event", gb__json_new_string(kind));
    gb__json_set(ev, "trace", gb__json_new_number(r->trace));
    for (int d = 0; d < r->depth; d++) gb__json_push(items, gb__json_new_number((double)r->items[d]));
    gb__json_set(ev, "items", items);
    return ev;
}

/* {"event":"scan","trace":N,"items":[...],"graph":TEXT,"statements":[{"text":S,"ndim":D,"shape":[...]}]}:
 * what a local scan reports of one trace (gb_spec_result's scan fields). */
static gb_status gb__srv_job_scan(gb__srv_job *job, const gb_spec_result *r) {
    gb__json_json *ev = gb__srv_run_event("scan", r), *stmts = gb__json_new_array();
    gb__json_set(ev, "graph", gb__json_new_string(r->graph ? r->graph : ""));
    for (int i = 0; i < r->nstmts; i++) {
        gb__json_json *o = gb__json_new_object(), *shape = gb__json_new_array();
        gb__json_set(o, "text", gb__json_new_string(r->stmts[i]));
        gb__json_set(o, "ndim", gb__json_new_number(r->ndims ? r->ndims[i] : -2));
        for (int d = 0; r->ndims && d < r->ndims[i]; d++)
            gb__json_push(shape, gb__json_new_number((double)r->shapes[(size_t)i * GB_MAX_DIMS + (size_t)d]));
        gb__json_set(o, "shape", shape);
        gb__json_push(stmts, o);
    }
    gb__json_set(ev, "statements", stmts);
    gb__srv_job_emit(job, ev);
    return GB_OK;
}

static gb_status gb__srv_job_result(void *ctx, const gb_spec_result *r) {
    gb__srv_job *job = ctx;
    if (r->scan) return job->scan_only ? gb__srv_job_scan(job, r) : GB_OK;
    gb__json_json *ev = gb__srv_run_event("result", r), *vals = gb__json_new_array();
    for (int i = 0; i < r->n; i++) {
        job->result_bytes += (size_t)gb_tensor_numel(r->values[i]) * gb_dtype_size(gb_tensor_dtype(r->values[i]));
        if (job->result_bytes > job->srv->o.max_result) {
            gb__json_free(ev), gb__json_free(vals);
            job->too_big = true;
            return gb__fail(GB_ERR_ARG, "limit: the saved values come to more than %zu bytes (the server's limit)",
                            job->srv->o.max_result);
        }
        gb__json_json *t = gb__srv_tensor_json(r->names[i], r->values[i]);
        if (!t) {
            gb__json_free(ev), gb__json_free(vals);
            return gb__fail(GB_ERR_ALLOC, "serve: out of memory encoding %s", r->names[i]);
        }
        gb__json_push(vals, t);
    }
    gb__json_set(ev, "values", vals);
    if (r->ntexts) {
        gb__json_json *texts = gb__json_new_array();
        for (int i = 0; i < r->ntexts; i++) gb__json_push(texts, gb__json_new_string(r->texts[i]));
        gb__json_set(ev, "texts", texts);
    }
    if (r->nunproduced) { /* the client's warnings, as a local run's */
        gb__json_json *miss = gb__json_new_array();
        for (int i = 0; i < r->nunproduced; i++) gb__json_push(miss, gb__json_new_string(r->unproduced[i]));
        gb__json_set(ev, "unproduced", miss);
        gb__json_set(ev, "new_tokens", gb__json_new_number((double)r->new_tokens));
    }
    gb__srv_job_emit(job, ev);
    return GB_OK;
}

/* The last event: done, or the error with the status a client reports. */
static void gb__srv_job_finish(gb__srv_job *job, gb_status st, const char *msg) {
    gb__json_json *ev = gb__json_new_object();
    if (st == GB_OK) {
        gb__json_set(ev, "event", gb__json_new_string("done"));
        job->status = 200;
    } else {
        pthread_mutex_lock(&job->mu);
        bool gone = job->cancelled;
        pthread_mutex_unlock(&job->mu);
        job->status = job->timed_out ? 504 : job->too_big ? 413 : gone ? 499 : 500;
        gb__json_set(ev, "event", gb__json_new_string("error"));
        gb__json_set(ev, "status", gb__json_new_string(gb_status_name(st)));
        gb__json_set(ev, "http", gb__json_new_number(job->status));
        gb__json_set(ev, "message", gb__json_new_string(msg));
    }
    gb__srv_job_emit(job, ev);
    pthread_mutex_lock(&job->mu);
    job->done = true;
    pthread_cond_broadcast(&job->cv);
    pthread_mutex_unlock(&job->mu);
}

static void gb__srv_job_run(gb_server *srv, gb__srv_job *job) {
    gb__srv_hook(srv, "start");
    job->started = gb__srv_now(srv);
    gb_status st;
    char msg[2048];
    if (gb__srv_job_cancelled(job)) {
        st = gb__fail(GB_ERR_STATE, "session: cancelled");
    } else {
        gb_session_events ev = {gb__srv_job_log, gb__srv_job_token, NULL, gb__srv_job_cancelled, job};
        gb_session_set_events(job->s, &ev);
        st = gb_session_run(job->s);
    }
    if (job->timed_out)
        snprintf(msg, sizeof msg, "time limit: the request ran for more than %lld ms and was cancelled",
                 (long long)srv->o.time_limit_ms);
    else
        snprintf(msg, sizeof msg, "%s", st == GB_OK ? "" : gb_last_error());
    gb__srv_job_finish(job, st, msg);
    gb__srv_log(srv, job->id, "POST", "/session", job->models, job->status, gb__srv_ms() - (double)job->t0 / 1e3,
                NULL);
    gb__srv_hook(srv, "end");
}

static void *gb__srv_worker(void *arg) {
    gb_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    for (;;) {
        while (!srv->qlen && !srv->stopping) pthread_cond_wait(&srv->cv, &srv->mu);
        if (!srv->qlen) break;
        gb__srv_job *job = srv->queue[srv->qhead];
        srv->qhead = (srv->qhead + 1) % srv->o.queue;
        srv->qlen--;
        srv->running++;
        pthread_mutex_unlock(&srv->mu);
        gb__srv_job_run(srv, job);
        gb__srv_job_release(job);
        pthread_mutex_lock(&srv->mu);
        srv->running--;
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* The streamed body: events as the worker writes them; a newline every
 * second of silence, so that a client that went away is noticed. */
static ssize_t gb__srv_stream(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    gb__srv_job *job = cls;
    pthread_mutex_lock(&job->mu);
    while (job->sent == job->len && !job->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (pthread_cond_timedwait(&job->cv, &job->mu, &ts) != 0 && job->sent == job->len && !job->done) {
            pthread_mutex_unlock(&job->mu);
            buf[0] = '\n';
            return 1;
        }
    }
    ssize_t n;
    if (job->sent == job->len) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        n = (ssize_t)(job->len - job->sent < max ? job->len - job->sent : max);
        memcpy(buf, job->out + job->sent, (size_t)n);
        job->sent += (size_t)n;
    }
    pthread_mutex_unlock(&job->mu);
    return n;
}

/* The connection is done with the response: if the job is not, its client
 * went away, and the job is cancelled. */
static void gb__srv_stream_free(void *cls) {
    gb__srv_job *job = cls;
    pthread_mutex_lock(&job->mu);
    bool gone = !job->done;
    if (gone) job->cancelled = true;
    pthread_mutex_unlock(&job->mu);
    if (gone) gb__srv_hook(job->srv, "cancel");
    gb__srv_job_release(job);
}

/* ---- requests ------------------------------------------------------------ */

static gb_lm *gb__srv_lm_of(void *ctx, const char *name) {
    gb_server *srv = ctx;
    for (int i = 0; i < srv->o.nmodels; i++)
        if (!strcmp(srv->o.models[i].name, name)) return srv->o.models[i].lm;
    char list[512] = "";
    size_t k = 0;
    for (int i = 0; i < srv->o.nmodels && k < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", srv->o.models[i].name);
    return gb__fail_null(GB_ERR_NOT_FOUND, "unknown model '%s' (this server hosts: %s)", name, list);
}

static enum MHD_Result gb__srv_session(gb_server *srv, struct MHD_Connection *c, gb__srv_conn *cn, const char *url) {
    bool scan_only = !strcmp(url, "/scan");
    const char *method = "POST";
    if (cn->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "limit: the request is larger than %zu bytes", srv->o.max_body);
        return gb__srv_error(srv, c, cn, method, url, MHD_HTTP_CONTENT_TOO_LARGE, GB_ERR_ARG, msg, NULL);
    }
    gb__srv_job *job = calloc(1, sizeof *job);
    if (!job) return gb__srv_error(srv, c, cn, method, url, 500, GB_ERR_ALLOC, "serve: out of memory", NULL);
    *job = (gb__srv_job){.srv = srv, .id = cn->id, .refs = 2, .t0 = cn->t0, .scan_only = scan_only};
    pthread_mutex_init(&job->mu, NULL);
    pthread_cond_init(&job->cv, NULL);
    job->sp = gb_spec_from_json(cn->body ? cn->body : "", cn->len);
    gb_spec_limits lim = srv->o.limits;
    gb_status st = job->sp ? GB_OK : gb_last_status();
    if (st == GB_OK) {
        int n;
        const char *const *models = gb_spec_models(job->sp, &n);
        size_t k = 0;
        for (int i = 0; i < n && k < sizeof job->models; i++)
            k += (size_t)snprintf(job->models + k, sizeof job->models - k, "%s%s", i ? "," : "", models[i]);
        /* parse, resolve, limit and scan before queueing: a bad request is a 400 now */
        job->s = gb_spec_session(job->sp, gb__srv_lm_of, srv, &lim, gb__srv_job_result, job);
        st = job->s ? gb_session_scan(job->s) : gb_last_status();
    }
    if (st != GB_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", gb_last_error());
        job->refs = 1;
        gb__srv_job_release(job);
        return gb__srv_error(srv, c, cn, method, url, lim.exceeded ? MHD_HTTP_CONTENT_TOO_LARGE : MHD_HTTP_BAD_REQUEST, st, msg,
                             NULL);
    }
    if (scan_only) { /* answered here: the scan that validated it is what was asked for */
        gb__srv_job_finish(job, GB_OK, "");
        enum MHD_Result ret = gb__srv_reply_n(c, MHD_HTTP_OK, job->out ? job->out : "", job->len, "application/x-ndjson", NULL);
        gb__srv_log(srv, job->id, method, url, job->models, MHD_HTTP_OK, gb__srv_ms() - (double)job->t0 / 1e3, NULL);
        job->refs = 1;
        gb__srv_job_release(job);
        return ret;
    }
    pthread_mutex_lock(&srv->mu);
    bool full = srv->qlen >= srv->o.queue || srv->stopping;
    if (!full) {
        srv->queue[(srv->qhead + srv->qlen++) % srv->o.queue] = job;
        pthread_cond_signal(&srv->cv);
    }
    pthread_mutex_unlock(&srv->mu);
    if (full) {
        job->refs = 1;
        gb__srv_job_release(job);
        return gb__srv_error(srv, c, cn, method, url, MHD_HTTP_TOO_MANY_REQUESTS, GB_ERR_STATE,
                             "serve: the queue is full; retry later", "1");
    }
    gb__srv_hook(srv, "queued");
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, gb__srv_stream, job,
                                                               gb__srv_stream_free);
    if (!r) {
        gb__srv_stream_free(job);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/x-ndjson");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result gb__srv_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                       const char *version, const char *upload, size_t *upload_size, void **state) {
    (void)version;
    gb_server *srv = cls;
    gb__srv_conn *cn = *state;
    bool post = !strcmp(method, "POST");
    if (!cn) { /* the headers: answer what needs no body now */
        cn = calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        cn->id = atomic_fetch_add(&srv->next_id, 1);
        cn->t0 = (int64_t)(gb__srv_ms() * 1e3);
        *state = cn;
        if (!strcmp(url, "/health") && !strcmp(method, "GET")) {
            char body[160];
            pthread_mutex_lock(&srv->mu);
            snprintf(body, sizeof body, "{\"status\":\"ok\",\"queued\":%d,\"running\":%d,\"workers\":%d}", srv->qlen,
                     srv->running, srv->nworkers);
            pthread_mutex_unlock(&srv->mu);
            gb__srv_log(srv, cn->id, method, url, NULL, MHD_HTTP_OK, gb__srv_ms() - (double)cn->t0 / 1e3, NULL);
            return gb__srv_reply(c, MHD_HTTP_OK, body, "application/json", NULL);
        }
        if (!gb__srv_key_ok(srv, gb__srv_request_key(c)))
            return gb__srv_error(srv, c, cn, method, url, MHD_HTTP_UNAUTHORIZED, GB_ERR_ARG,
                                 "serve: a valid API key is required (Authorization: Bearer KEY)", NULL);
        if (!strcmp(url, "/models") && !strcmp(method, "GET")) {
            char *body = gb__srv_models_json(srv);
            enum MHD_Result r = gb__srv_reply(c, MHD_HTTP_OK, body ? body : "{}", "application/json", NULL);
            free(body);
            gb__srv_log(srv, cn->id, method, url, NULL, MHD_HTTP_OK, gb__srv_ms() - (double)cn->t0 / 1e3, NULL);
            return r;
        }
        if (!strncmp(url, "/models/", 8) && !strcmp(method, "GET")) return gb__srv_tokenizer(srv, c, cn, url);
        if (!post || (strcmp(url, "/session") && strcmp(url, "/scan")))
            return gb__srv_error(srv, c, cn, method, url, MHD_HTTP_NOT_FOUND, GB_ERR_NOT_FOUND,
                                 "serve: no such endpoint (GET /health, GET /models, GET /models/NAME/tokenizer.json, "
                                 "POST /session, POST /scan)", NULL);
        const char *clen = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (clen && strtoull(clen, NULL, 10) > srv->o.max_body) cn->too_big = true;
        if (cn->too_big) return gb__srv_session(srv, c, cn, url);
        return MHD_YES;
    }
    if (*upload_size) { /* more of the body */
        if (!cn->too_big && cn->len + *upload_size <= srv->o.max_body) {
            char *grown = realloc(cn->body, cn->len + *upload_size + 1);
            if (!grown) return MHD_NO;
            cn->body = grown;
            memcpy(cn->body + cn->len, upload, *upload_size);
            cn->len += *upload_size;
            cn->body[cn->len] = 0;
        } else {
            cn->too_big = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return gb__srv_session(srv, c, cn, url);
}

static void gb__srv_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode code) {
    (void)cls, (void)c, (void)code;
    gb__srv_conn *cn = *state;
    if (cn) free(cn->body);
    free(cn);
    *state = NULL;
}

/* ---- start and stop ---------------------------------------------------------- */

gb_server *gb_serve_start(const gb_serve_opts *o) {
    if (!o || o->nmodels < 1) return gb__fail_null(GB_ERR_ARG, "serve: no models to serve (--model NAME=DIR)");
    if (o->workers < 1 || o->queue < 1) return gb__fail_null(GB_ERR_ARG, "serve: workers and queue must be >= 1");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (o->port < 0 || o->port > 65535 || inet_pton(AF_INET, o->host ? o->host : "127.0.0.1", &addr.sin_addr) != 1)
        return gb__fail_null(GB_ERR_ARG, "serve: cannot listen on %s:%d (an IPv4 address and a port)",
                             o->host ? o->host : "127.0.0.1", o->port);
    gb_server *srv = gb__calloc(1, sizeof *srv, "serve");
    if (!srv) return NULL;
    srv->o = *o;
    srv->queue = calloc((size_t)o->queue, sizeof *srv->queue);
    srv->workers = calloc((size_t)o->workers, sizeof *srv->workers);
    srv->keys = o->nkeys ? calloc((size_t)o->nkeys, sizeof *srv->keys) : NULL;
    bool ok = srv->queue && srv->workers && (!o->nkeys || srv->keys);
    for (int i = 0; ok && i < o->nkeys; i++) ok = (srv->keys[i] = strdup(o->keys[i])) != NULL;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    atomic_init(&srv->next_id, 1);
    if (!ok) {
        gb_serve_stop(srv);
        return gb__fail_null(GB_ERR_ALLOC, "serve: out of memory");
    }
    srv->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
                              gb__srv_request, srv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                              MHD_OPTION_CONNECTION_TIMEOUT, o->connection_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
                              (unsigned)(o->max_connections > 0 ? o->max_connections : 64),
                              MHD_OPTION_NOTIFY_COMPLETED, gb__srv_completed, srv, MHD_OPTION_END);
    const union MHD_DaemonInfo *info = srv->d ? MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
    if (!info) {
        gb_serve_stop(srv);
        return gb__fail_null(GB_ERR_IO, "serve: cannot listen on %s:%d (in use, or not an address of this machine)",
                             o->host ? o->host : "127.0.0.1", o->port);
    }
    srv->port = info->port;
    /* Loading BLAS sets environment variables for its constructor: done
     * here, before the workers, not by a worker while the application's
     * threads read the environment (ARCHITECTURE.md, Threads). */
    (void)gb_blas_kernel();
    for (int i = 0; i < o->workers; i++) {
        if (pthread_create(&srv->workers[i], NULL, gb__srv_worker, srv)) {
            gb_serve_stop(srv);
            return gb__fail_null(GB_ERR_ALLOC, "serve: cannot start worker %d", i);
        }
        srv->nworkers++;
    }
    return srv;
}

int gb_server_port(const gb_server *srv) { return srv->port; }

void gb_serve_stop(gb_server *srv) {
    if (!srv) return;
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < srv->nworkers; i++) pthread_join(srv->workers[i], NULL);
    if (srv->d) MHD_stop_daemon(srv->d);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    if (srv->keys) gb_serve_keys_free(srv->keys, srv->o.nkeys);
    free(srv->queue), free(srv->workers);
    free(srv);
}
