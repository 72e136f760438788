/* The client: a session sent as JSON with libcurl, its NDJSON events read
 * line by line as they arrive and reported as a local run reports them. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "serve_impl.h"

typedef struct gb__srv_rcall {
    CURL *curl;
    const gb_remote_events *ev;
    char *buf;           /* unread bytes: a partial line (200) or the whole body (others) */
    size_t len, cap;
    long http;
    bool finished;       /* a done or error event arrived */
    gb_status st;        /* the first failure: an error event's, or the client's own */
    char *error;
} gb__srv_rcall;

static gb_status gb__srv_rcall_fail(gb__srv_rcall *rc, gb_status st, const char *msg) {
    if (rc->st == GB_OK) {
        rc->st = st;
        rc->error = strdup(msg);
    }
    return st;
}

/* Which trace run an event is of: its number, and the enclosing loops'
 * item numbers (at most 16, the spec's nesting limit); returns their count. */
static int gb__srv_rcall_run(const gb__json_json *ev, long long *trace, int64_t items[16]) {
    const gb__json_json *its = gb__json_get(ev, "items");
    int depth = gb__json_size(its) < 16 ? gb__json_size(its) : 16;
    *trace = 0;
    gb__json_int(gb__json_get(ev, "trace"), trace);
    for (int d = 0; d < depth; d++) {
        long long x = 0;
        gb__json_int(gb__json_at(its, d), &x);
        items[d] = x;
    }
    return depth;
}

/* A scan event: one trace's graph and its statements' shapes. */
static gb_status gb__srv_rcall_scan(gb__srv_rcall *rc, const gb__json_json *ev) {
    const gb_remote_events *e = rc->ev;
    const gb__json_json *sj = gb__json_get(ev, "statements");
    int n = gb__json_size(sj);
    int64_t items[16] = {0};
    long long trace;
    int depth = gb__srv_rcall_run(ev, &trace, items);
    const char **stmts = calloc((size_t)n + 1, sizeof *stmts);
    int *ndims = calloc((size_t)n + 1, sizeof *ndims);
    int64_t *shapes = calloc((size_t)n * GB_MAX_DIMS + 1, sizeof *shapes);
    gb_status st = stmts && ndims && shapes ? GB_OK : gb__srv_rcall_fail(rc, GB_ERR_ALLOC, "remote: out of memory");
    for (int i = 0; st == GB_OK && i < n; i++) {
        const gb__json_json *o = gb__json_at(sj, i), *shape = gb__json_get(o, "shape");
        long long nd = -2;
        gb__json_int(gb__json_get(o, "ndim"), &nd);
        stmts[i] = gb__json_string(gb__json_get(o, "text")) ? gb__json_string(gb__json_get(o, "text")) : "";
        ndims[i] = nd > GB_MAX_DIMS || nd < -2 || (nd >= 0 && nd != gb__json_size(shape)) ? -2 : (int)nd;
        for (int d = 0; d < ndims[i]; d++) {
            long long x = 0;
            gb__json_int(gb__json_at(shape, d), &x);
            shapes[(size_t)i * GB_MAX_DIMS + (size_t)d] = x;
        }
    }
    if (st == GB_OK && e && e->result) {
        gb_spec_result r = {.trace = (int)trace, .depth = depth, .items = items, .scan = true,
                            .nstmts = n, .stmts = stmts, .graph = gb__json_string(gb__json_get(ev, "graph")),
                            .ndims = ndims, .shapes = shapes};
        if ((st = e->result(e->ctx, &r)) != GB_OK) gb__srv_rcall_fail(rc, st, gb_last_error());
    }
    free(stmts), free(ndims), free(shapes);
    return st;
}

/* One event line. */
static gb_status gb__srv_rcall_event(gb__srv_rcall *rc, const char *line, size_t n) {
    if (!n) return GB_OK; /* the server's keep-alive */
    gb__json_json *ev = gb__json_parse(line, n, "remote: event");
    const char *kind = gb__json_string(gb__json_get(ev, "event"));
    gb_status st = GB_OK;
    const gb_remote_events *e = rc->ev;
    if (!kind) {
        st = gb__srv_rcall_fail(rc, GB_ERR_FORMAT, "remote: the server sent an event this client does not understand");
    } else if (!strcmp(kind, "log")) {
        if (e && e->log) e->log(e->ctx, gb__json_string(gb__json_get(ev, "line")) ? gb__json_string(gb__json_get(ev, "line")) : "");
    } else if (!strcmp(kind, "token")) {
        const gb__json_json *ids = gb__json_get(ev, "ids");
        long long trace = 0, step = 0;
        int64_t b = gb__json_size(ids), *v = calloc((size_t)b + 1, sizeof *v);
        gb__json_int(gb__json_get(ev, "trace"), &trace);
        gb__json_int(gb__json_get(ev, "step"), &step);
        for (int64_t i = 0; v && i < b; i++) {
            long long x = 0;
            gb__json_int(gb__json_at(ids, (int)i), &x);
            v[i] = x;
        }
        if (v && e && e->token && (st = e->token(e->ctx, (int)trace, (int)step, v, b)) != GB_OK)
            gb__srv_rcall_fail(rc, st, gb_last_error());
        free(v);
    } else if (!strcmp(kind, "result")) {
        const gb__json_json *vals = gb__json_get(ev, "values");
        int n = gb__json_size(vals);
        const char **names = calloc((size_t)n + 1, sizeof *names);
        gb_tensor **values = calloc((size_t)n + 1, sizeof *values);
        int64_t items[16] = {0};
        long long trace;
        int depth = gb__srv_rcall_run(ev, &trace, items);
        int k = 0;
        for (; names && values && k < n; k++)
            if (!(values[k] = gb__srv_json_tensor(gb__json_at(vals, k), &names[k]))) break;
        if (!names || !values || k < n) {
            st = gb__srv_rcall_fail(rc, names && values ? gb_last_status() : GB_ERR_ALLOC,
                                names && values ? gb_last_error() : "remote: out of memory");
        } else if (e && e->result) {
            const gb__json_json *tj = gb__json_get(ev, "texts");
            int nt = gb__json_size(tj);
            const char **texts = calloc((size_t)nt + 1, sizeof *texts);
            for (int i = 0; texts && i < nt; i++) texts[i] = gb__json_string(gb__json_at(tj, i)) ? gb__json_string(gb__json_at(tj, i)) : "";
            const gb__json_json *mj = gb__json_get(ev, "unproduced");
            int nm = gb__json_size(mj);
            const char **missing = calloc((size_t)nm + 1, sizeof *missing);
            for (int i = 0; missing && i < nm; i++)
                missing[i] = gb__json_string(gb__json_at(mj, i)) ? gb__json_string(gb__json_at(mj, i)) : "";
            long long steps = -1;
            if (gb__json_get(ev, "new_tokens")) gb__json_int(gb__json_get(ev, "new_tokens"), &steps);
            gb_spec_result r = {.trace = (int)trace, .depth = depth, .items = items, .n = n,
                                .names = names, .values = values, .ntexts = texts ? nt : 0, .texts = texts,
                                .nunproduced = missing ? nm : 0, .unproduced = missing, .new_tokens = steps};
            if ((st = e->result(e->ctx, &r)) != GB_OK) gb__srv_rcall_fail(rc, st, gb_last_error());
            free(texts), free(missing);
        }
        for (int i = 0; values && i < k; i++) gb_tensor_free(values[i]);
        free(names), free(values);
    } else if (!strcmp(kind, "scan")) {
        st = gb__srv_rcall_scan(rc, ev);
    } else if (!strcmp(kind, "done")) {
        rc->finished = true;
    } else if (!strcmp(kind, "error")) {
        const char *msg = gb__json_string(gb__json_get(ev, "message"));
        rc->finished = true;
        st = gb__srv_rcall_fail(rc, gb__srv_status(gb__json_string(gb__json_get(ev, "status"))), msg ? msg : "remote: error");
    }
    gb__json_free(ev);
    return st;
}

static size_t gb__srv_rcall_write(char *data, size_t size, size_t nmemb, void *ctx) {
    gb__srv_rcall *rc = ctx;
    size_t n = size * nmemb;
    if (!rc->http) curl_easy_getinfo(rc->curl, CURLINFO_RESPONSE_CODE, &rc->http);
    if (rc->len + n + 1 > rc->cap) {
        size_t cap = (rc->len + n + 1) * 2;
        char *grown = realloc(rc->buf, cap);
        if (!grown) return 0;
        rc->buf = grown, rc->cap = cap;
    }
    memcpy(rc->buf + rc->len, data, n);
    rc->len += n;
    rc->buf[rc->len] = 0;
    if (rc->http != 200) return n; /* an error body: read whole */
    size_t start = 0;
    for (char *nl; (nl = memchr(rc->buf + start, '\n', rc->len - start)); start = (size_t)(nl - rc->buf) + 1)
        if (gb__srv_rcall_event(rc, rc->buf + start, (size_t)(nl - rc->buf) - start) != GB_OK && rc->st != GB_OK &&
            !rc->finished)
            return 0; /* our own callback failed: hang up, which cancels the run */
    memmove(rc->buf, rc->buf + start, rc->len - start);
    rc->len -= start;
    return n;
}

static void gb__srv_curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/* An easy handle for url + path with the key's header (in *headers, freed
 * by the caller). */
static CURL *gb__srv_remote_curl(const char *url, const char *path, const char *key, struct curl_slist **headers) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, gb__srv_curl_init);
    CURL *c = curl_easy_init();
    if (!c) return gb__fail_null(GB_ERR_ALLOC, "remote: cannot start libcurl");
    size_t n = strlen(url);
    while (n && url[n - 1] == '/') n--;
    char *full = malloc(n + strlen(path) + 1);
    if (!full) {
        curl_easy_cleanup(c);
        return gb__fail_null(GB_ERR_ALLOC, "remote: out of memory");
    }
    memcpy(full, url, n);
    strcpy(full + n, path);
    curl_easy_setopt(c, CURLOPT_URL, full);
    free(full);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    *headers = NULL;
    if (key) {
        char *h = malloc(strlen(key) + 32);
        if (h) {
            sprintf(h, "Authorization: Bearer %s", key);
            *headers = curl_slist_append(*headers, h);
            free(h);
        }
    }
    return c;
}

/* A transfer's failure as this client reports it. */
static gb_status gb__srv_remote_done(gb__srv_rcall *rc, CURLcode cc, const char *url) {
    gb_status st;
    if (rc->st != GB_OK) {
        st = gb__fail(rc->st, "%s", rc->error);
    } else if (rc->http && rc->http != 200) {
        gb__json_json *body = gb__json_parse(rc->buf ? rc->buf : "", rc->len, "remote: response");
        const char *msg = gb__json_string(gb__json_get(body, "error"));
        gb_status s = gb__srv_status(gb__json_string(gb__json_get(body, "status")));
        if (rc->http == 400 && msg) st = gb__fail(s, "%s", msg); /* the message a local run gives */
        else if (rc->http == 429) st = gb__fail(GB_ERR_STATE, "remote: 429: %s (retry after a second)", msg ? msg : "busy");
        else st = gb__fail(msg ? s : GB_ERR_IO, "remote: %ld: %s", rc->http, msg ? msg : "the server refused the request");
        gb__json_free(body);
    } else if (cc != CURLE_OK) {
        st = gb__fail(GB_ERR_IO, "remote: %s: %s", url, curl_easy_strerror(cc));
    } else if (!rc->finished) {
        st = gb__fail(GB_ERR_IO, "remote: %s: the response ended before the session did", url);
    } else {
        st = GB_OK;
    }
    return st;
}

/* POST the spec to url + path and report its events. */
static gb_status gb__srv_remote_post(const char *url, const char *path, const char *key, const gb_spec *sp,
                                     const gb_remote_events *ev) {
    char *body = gb_spec_json(sp);
    if (!body) return gb_last_status();
    struct curl_slist *headers;
    gb__srv_rcall rc = {.ev = ev};
    rc.curl = gb__srv_remote_curl(url, path, key, &headers);
    if (!rc.curl) {
        free(body);
        return gb_last_status();
    }
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(rc.curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(rc.curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(rc.curl, CURLOPT_WRITEFUNCTION, gb__srv_rcall_write);
    curl_easy_setopt(rc.curl, CURLOPT_WRITEDATA, &rc);
    CURLcode cc = curl_easy_perform(rc.curl);
    if (!rc.http) curl_easy_getinfo(rc.curl, CURLINFO_RESPONSE_CODE, &rc.http);
    gb_status st = gb__srv_remote_done(&rc, cc, url);
    curl_easy_cleanup(rc.curl);
    curl_slist_free_all(headers);
    free(rc.buf), free(rc.error), free(body);
    return st;
}

gb_status gb_remote_run(const char *url, const char *key, const gb_spec *sp, const gb_remote_events *ev) {
    return gb__srv_remote_post(url, "/session", key, sp, ev);
}

gb_status gb_remote_scan(const char *url, const char *key, const gb_spec *sp, const gb_remote_events *ev) {
    return gb__srv_remote_post(url, "/scan", key, sp, ev);
}

char *gb_remote_get(const char *url, const char *path, const char *key, long *status) {
    struct curl_slist *headers;
    gb__srv_rcall rc = {.http = -1}; /* read the body whole */
    rc.curl = gb__srv_remote_curl(url, path, key, &headers);
    if (!rc.curl) return NULL;
    curl_easy_setopt(rc.curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(rc.curl, CURLOPT_WRITEFUNCTION, gb__srv_rcall_write);
    curl_easy_setopt(rc.curl, CURLOPT_WRITEDATA, &rc);
    CURLcode cc = curl_easy_perform(rc.curl);
    *status = 0;
    curl_easy_getinfo(rc.curl, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(rc.curl);
    curl_slist_free_all(headers);
    if (cc != CURLE_OK) {
        free(rc.buf);
        return gb__fail_null(GB_ERR_IO, "remote: %s%s: %s", url, path, curl_easy_strerror(cc));
    }
    if (!rc.buf) rc.buf = calloc(1, 1);
    return rc.buf;
}
