/* The server and its client (serve/serve.h), on 127.0.0.1 with an
 * ephemeral port, started and stopped inside each test: a session run
 * remotely gives bitwise what it gives locally (getting, setting, invokes,
 * generation with .next()/.all(), gradients, sessions with loops and
 * logs), and every error has its status and message (bad JSON, bad
 * statement, unknown model, keys, whitelist, limits, a full queue, the
 * time limit, a client that goes away, a body that never arrives).
 * Deterministic: workers block on the test hook where a test needs a
 * request to wait, and the time limit reads a test clock; every wait is
 * bounded (WAIT_S) and none is a timing assertion. */
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "gbtest.h"

enum { WAIT_S = 60 };

/* What the server's hook saw, and a gate that holds workers at "start". */
typedef struct hooks {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int queued, start, cancel, end;
    bool hold;  /* workers wait at "start" while set */
    /* with lockstep, a worker that wrote token event k waits at "token"
     * until the client has seen it (seen > k) */
    bool lockstep;
    int tokens, seen;
    int64_t clock, step; /* the test clock: each read advances it by step */
} hooks;

static void on_hook(void *ctx, const char *event) {
    hooks *h = ctx;
    pthread_mutex_lock(&h->mu);
    if (!strcmp(event, "queued")) h->queued++;
    if (!strcmp(event, "start")) h->start++;
    if (!strcmp(event, "cancel")) h->cancel++;
    if (!strcmp(event, "end")) h->end++;
    if (!strcmp(event, "token")) h->tokens++;
    pthread_cond_broadcast(&h->cv);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    while (!strcmp(event, "start") && h->hold)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &ts)) break;
    while (!strcmp(event, "token") && h->lockstep && h->seen < h->tokens)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &ts)) break;
    pthread_mutex_unlock(&h->mu);
}

static int64_t test_clock(void *ctx) {
    hooks *h = ctx;
    pthread_mutex_lock(&h->mu);
    int64_t t = h->clock;
    h->clock += h->step;
    pthread_mutex_unlock(&h->mu);
    return t;
}

/* Wait until *counter >= n (bounded); false if it never got there. */
static bool wait_for(hooks *h, int *counter, int n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_S;
    pthread_mutex_lock(&h->mu);
    while (*counter < n)
        if (pthread_cond_timedwait(&h->cv, &h->mu, &ts)) break;
    bool ok = *counter >= n;
    pthread_mutex_unlock(&h->mu);
    return ok;
}

static void release(hooks *h) {
    pthread_mutex_lock(&h->mu);
    h->hold = false;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

typedef struct fixture {
    gb_lm *served, *local; /* two instances: the server's and the test's own */
    gb_serve_model model;
    gb_server *srv;
    char url[64];
    hooks h;
} fixture;

static const char *const KEYS[] = {"key-one", "second-key"};

/* A server of the bundled model as "facts", keys KEYS, adjusted by tweak. */
/* The CLI tests compare a server in this process with the glassbox binary
 * run as a child. Bitwise equality holds when both pick the same kernels;
 * under valgrind this process sees an emulated CPU without AVX-512 (the
 * kernel's /proc/cpuinfo still lists it), so the server and the child take
 * different product kernels and round differently: skip, saying so. */
static bool cpu_emulated(const char *test) {
    FILE *fp = fopen("/proc/cpuinfo", "r");
    char line[4096];
    bool listed = false;
    while (fp && !listed && fgets(line, sizeof line, fp)) listed = !strncmp(line, "flags", 5) && strstr(line, " avx512f");
    if (fp) fclose(fp);
    __builtin_cpu_init();
    if (listed == (bool)__builtin_cpu_supports("avx512f")) return false;
    gbt_skip(test, "this process runs on an emulated CPU (valgrind?) whose kernels differ from the glassbox child's");
    return true;
}

static void start(fixture *f, void (*tweak)(gb_serve_opts *o)) {
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->h.mu, NULL);
    pthread_cond_init(&f->h.cv, NULL);
    f->served = gb_lm_open(GBT_BUNDLED, NULL);
    f->local = gb_lm_open(GBT_BUNDLED, NULL);
    gbt_ok(f->served);
    gbt_ok(f->local);
    f->model = (gb_serve_model){"facts", f->served};
    gb_serve_opts o = gb_serve_defaults();
    o.models = &f->model, o.nmodels = 1;
    o.keys = KEYS, o.nkeys = 2;
    o.hook = on_hook, o.test_ctx = &f->h;
    if (tweak) tweak(&o);
    f->srv = gb_serve_start(&o);
    gbt_ok(f->srv);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", gb_server_port(f->srv));
}

static void stop(fixture *f) {
    release(&f->h);
    gb_serve_stop(f->srv);
    gb_lm_free(f->served), gb_lm_free(f->local);
}

static gb_lm *local_lm(void *ctx, const char *name) {
    fixture *f = ctx;
    return strcmp(name, "facts") ? gb_lm_open(name, NULL) : f->local;
}

static gb_status run_local(fixture *f, gb_spec *sp, gbt_results *res) { return gbt_run_spec(sp, local_lm, f, res); }

static gb_status run_remote(fixture *f, const char *key, gb_spec *sp, gbt_results *res) {
    gb_remote_events ev = {.log = gbt_results_log, .result = gbt_results_add, .ctx = res};
    return gb_remote_run(f->url, key, sp, &ev);
}

/* The same keys, dtypes, shapes and bytes, and the same log. */
static void assert_same(const gbt_results *a, const gbt_results *b, const char *what) {
    ck_assert_msg(a->n == b->n && a->n > 0, "%s: %d values locally, %d remotely", what, a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        gb_tensor *x = a->values[i], *y = gbt_result(b, a->keys[i]);
        ck_assert_msg(y != NULL, "%s: %s did not come back", what, a->keys[i]);
        ck_assert_int_eq(gb_tensor_dtype(x), gb_tensor_dtype(y));
        ck_assert_int_eq(gb_tensor_ndim(x), gb_tensor_ndim(y));
        for (int d = 0; d < gb_tensor_ndim(x); d++) ck_assert_int_eq(gb_tensor_dim(x, d), gb_tensor_dim(y, d));
        gb_tensor *cx = gb_contiguous(x), *cy = gb_contiguous(y);
        ck_assert_msg(!memcmp(gb_tensor_data(cx), gb_tensor_data(cy),
                              (size_t)gb_tensor_numel(cx) * gb_dtype_size(gb_tensor_dtype(cx))),
                      "%s: %s differs", what, a->keys[i]);
        gb_tensor_free(cx), gb_tensor_free(cy);
    }
    ck_assert_str_eq(a->log ? a->log : "", b->log ? b->log : "");
}

static gb_spec *one_trace(const char *prompt, int n, const char *const *stmts) {
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "facts");
    gb_spec_prompt(sp, prompt);
    for (int i = 0; i < n; i++) gb_spec_statement(sp, stmts[i]);
    return sp;
}

static const char *const EIFFEL = "The Eiffel Tower is in the city of";

START_TEST(test_remote_equals_local) {
    fixture f;
    start(&f, NULL);
    gb_spec *specs[7];
    specs[0] = one_trace(EIFFEL, 3, (const char *[]){"h = transformer.h[1].output[0].save()", "l = lm_head.output.save()",
                                                     "log(\"top\", lm_head.output[0, -1].argmax(-1))"});
    specs[1] = one_trace(EIFFEL, 2, (const char *[]){"transformer.h[2].mlp.output[:, -1, :] = 0",
                                                     "p = lm_head.output[0, -1].softmax(-1).save()"});
    specs[2] = one_trace(EIFFEL, 1, (const char *[]){"transformer.h[-1].mlp.output[:] = 0"}); /* invokes */
    gb_spec_statement(specs[2], "a = lm_head.output[:, -1].argmax(-1).save()");
    gb_spec_prompt(specs[2], "Vatican is located in the city of");
    gb_spec_statement(specs[2], "b = lm_head.output[:, -1].argmax(-1).save()");
    specs[3] = one_trace(EIFFEL, 3, (const char *[]){"lm_head.next().next().output[0, -1, 42] = 1e9",
                                                     "transformer.h[0].all().output[0][:] = transformer.h[0].all().output[0] * 1.5",
                                                     "s1 = lm_head.next().output[0, -1].save()"});
    gb_spec_generate(specs[3], 4);
    specs[4] = one_trace(EIFFEL, 4, (const char *[]){"transformer.h[1].output[0].requires_grad_()",
                                                     "g = transformer.h[1].output[0].grad.clone().save()",
                                                     "transformer.h[2].output[0].grad = transformer.h[2].output[0].grad * 2",
                                                     "lm_head.output[0, -1].max(-1).backward()"});
    specs[5] = one_trace(EIFFEL, 2, (const char *[]){"hs = transformer.h[3].output[0][:, -1, :]",
                                                     "t1 = lm_head.output.argmax(dim=-1).save()"});
    gb_spec_log(specs[5], "-- between --");
    gb_spec_iter(specs[5], "x", 2, 0, (float[]){0.5f, 2}, NULL);
    gb_spec_trace(specs[5], "facts");
    gb_spec_prompt(specs[5], "Vatican is located in the city of");
    gb_spec_statement(specs[5], "transformer.h[1].output[0][:, -1, :] = hs * x");
    gb_spec_statement(specs[5], "t2 = lm_head.output.argmax(dim=-1).save()");
    gb_spec_statement(specs[5], "log(\"x\", x)");
    gb_spec_end(specs[5]);
    /* loops over prompts (a text and ids, generating) and over an earlier trace's value, nested */
    specs[6] = one_trace(EIFFEL, 1, (const char *[]){"hs = transformer.h[3].output[0][0, -2:, :]"});
    gb_spec_iter_prompts(specs[6], "p", 2, (const char *[]){"Vatican is located in the city of", NULL},
                         (const int64_t *[]){NULL, (int64_t[]){464, 412, 733}}, (int64_t[]){0, 3});
    gb_spec_iter(specs[6], "x", 0, 0, NULL, "hs");
    gb_spec_trace(specs[6], "facts");
    gb_spec_item(specs[6], "p");
    gb_spec_statement(specs[6], "transformer.h[1].output[0][:, -1, :] = x");
    gb_spec_statement(specs[6], "y = lm_head.output[0, -1].softmax(-1).save()");
    gb_spec_statement(specs[6], "log(\"p\", p)");
    gb_spec_generate(specs[6], 2);
    gb_spec_end(specs[6]);
    gb_spec_end(specs[6]);
    const char *what[] = {"get and log", "set", "invokes", "generation with .next() and .all()", "gradients", "session",
                          "loops over prompts and a value"};
    for (int i = 0; i < 7; i++) {
        gbt_results l = {0}, r = {0};
        ck_assert_msg(run_local(&f, specs[i], &l) == GB_OK, "%s locally: %s", what[i], gb_last_error());
        ck_assert_msg(run_remote(&f, KEYS[i % 2], specs[i], &r) == GB_OK, "%s remotely: %s", what[i], gb_last_error());
        assert_same(&l, &r, what[i]);
        gbt_results_free(&l), gbt_results_free(&r);
        gb_spec_free(specs[i]);
    }
    stop(&f);
}
END_TEST

/* Raw HTTP: send req, read the response until the server closes (or
 * WAIT_S passes); malloc'd. */
static char *http_raw(int port, const char *req, size_t reqlen) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(send(fd, req, reqlen, 0), (ssize_t)reqlen);
    char *out = calloc(1, 1);
    size_t len = 0;
    for (int rounds = 0; rounds < 10000; rounds++) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, WAIT_S * 1000) <= 0) break;
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out = realloc(out, len + (size_t)n + 1);
        memcpy(out + len, buf, (size_t)n);
        out[len += (size_t)n] = 0;
    }
    close(fd);
    return out;
}

static char *post(int port, const char *key, const char *body) {
    char *req = malloc(strlen(body) + 512);
    int n = sprintf(req, "POST /session HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%sContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n%s", key ? "Authorization: Bearer " : "", key ? key : "",
                    key ? "\r\n" : "", strlen(body), body);
    char *r = http_raw(port, req, (size_t)n);
    free(req);
    return r;
}

static void expect_status(char *resp, const char *status, const char *needle) {
    ck_assert_msg(!strncmp(resp, "HTTP/1.1 ", 9) && !strncmp(resp + 9, status, strlen(status)), "expected %s, got: %s",
                  status, resp);
    ck_assert_msg(strstr(resp, needle), "'%s' not in: %s", needle, resp);
    free(resp);
}

static void limits(gb_serve_opts *o) {
    o->max_body = 4096;
    o->limits.max_new_tokens = 8;
    o->max_result = 20000;
}

START_TEST(test_remote_errors) {
    fixture f;
    start(&f, limits);
    int port = gb_server_port(f.srv);
    expect_status(post(port, KEYS[0], "{\"session\": ["), "400", "\"error\":\"session: invalid JSON");
    expect_status(post(port, NULL, "{}"), "401", "a valid API key is required");
    expect_status(post(port, "key-on", "{}"), "401", "a valid API key is required");
    expect_status(post(port, "key-one-", "{}"), "401", "a valid API key is required");
    const char *get = "GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: key-one\r\n\r\n";
    expect_status(http_raw(port, get, strlen(get)), "404", "no such endpoint");
    /* Statements: the server's message is the local one, word for word. */
    const char *bad[] = {"top = lm_head.outpt", "top = my_local_fn(lm_head.output)", "x = transformer.h[9].output",
                         "transformer.h[0].output[0][:, 99] = 0"};
    for (int i = 0; i < 4; i++) {
        gb_spec *sp = one_trace(EIFFEL, 1, &bad[i]);
        gbt_results l = {0}, r = {0};
        ck_assert(run_local(&f, sp, &l) != GB_OK);
        char local[2048];
        gb_status st = gb_last_status();
        snprintf(local, sizeof local, "%s", gb_last_error());
        ck_assert(run_remote(&f, KEYS[0], sp, &r) != GB_OK);
        ck_assert_int_eq(gb_last_status(), st);
        ck_assert_str_eq(gb_last_error(), local);
        ck_assert_int_eq(r.n, 0);
        gb_spec_free(sp);
    }
    ck_assert(strstr(gb_last_error(), "index 99 is out of bounds")); /* the scan found it before queueing */
    ck_assert_int_eq(f.h.queued, 0);
    /* the whitelist names the function */
    expect_status(post(port, KEYS[1], "{\"session\":[{\"trace\":{\"model\":\"facts\",\"invokes\":[{\"ids\":[1],"
                                      "\"statements\":[\"h = np.save(lm_head.output)\"]}]}}]}"),
                  "400", "function `np.save` is not in the function whitelist");
    expect_status(post(port, KEYS[1], "{\"session\":[{\"trace\":{\"model\":\"gpt5\",\"invokes\":[{\"ids\":[1]}]}}]}"), "400",
                  "unknown model 'gpt5' (this server hosts: facts)");
    /* limits: new tokens, request size (413), returned bytes (the run's error event) */
    expect_status(post(port, KEYS[0], "{\"session\":[{\"trace\":{\"model\":\"facts\",\"invokes\":[{\"ids\":[1]}],"
                                      "\"max_new_tokens\":9}}]}"),
                  "413", "limit: 9 new tokens, at most 8");
    char *big = malloc(8192);
    memset(big, ' ', 8191);
    big[8191] = 0;
    memcpy(big, "{\"session\":[]}", 14);
    expect_status(post(port, KEYS[0], big), "413", "limit: the request is larger than 4096 bytes");
    free(big);
    gb_spec *sp = one_trace(EIFFEL, 1, (const char *[]){"l = lm_head.output.save()"}); /* T x 1024 f32 > 20000 */
    gbt_results r = {0};
    gbt_fails_with(run_remote(&f, KEYS[0], sp, &r) != GB_OK, GB_ERR_ARG, "limit: the saved values come to more than 20000 bytes");
    gb_spec_free(sp);
    gbt_results_free(&r);
    /* the server still answers */
    long status = 0;
    char *health = gb_remote_get(f.url, "/health", NULL, &status);
    ck_assert_int_eq(status, 200);
    ck_assert(strstr(health, "\"status\":\"ok\""));
    free(health);
    stop(&f);
}
END_TEST

static void one_slot(gb_serve_opts *o) {
    o->workers = 1;
    o->queue = 1;
}

typedef struct call {
    fixture *f;
    gb_status st;
    gbt_results res;
} call;

static gb_spec *small_trace(void) {
    gb_spec *sp = one_trace(EIFFEL, 2, (const char *[]){"transformer.h[1].mlp.output[:, -1, :] = 0",
                                                        "top = lm_head.output[0, -1].softmax(-1).save()"});
    gb_spec_generate(sp, 2);
    return sp;
}

static void *remote_thread(void *arg) {
    call *c = arg;
    gb_spec *sp = small_trace();
    c->st = run_remote(c->f, KEYS[0], sp, &c->res);
    gb_spec_free(sp);
    return NULL;
}

static void two_workers(gb_serve_opts *o) { o->workers = 2; }

/* Clients at once, two workers on one shared model: every answer is the
 * local one, bitwise. */
START_TEST(test_remote_concurrent) {
    fixture f;
    start(&f, two_workers);
    gb_spec *sp = small_trace();
    gbt_results want = {0};
    gbt_ok_status(run_local(&f, sp, &want));
    gb_spec_free(sp);
    enum { N = 4 };
    call c[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        c[i] = (call){.f = &f};
        pthread_create(&t[i], NULL, remote_thread, &c[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ck_assert_msg(c[i].st == GB_OK, "client %d failed", i);
        assert_same(&want, &c[i].res, "a concurrent client");
        gbt_results_free(&c[i].res);
    }
    gbt_results_free(&want);
    stop(&f);
}
END_TEST

/* One worker held at start, one request waiting: the next is refused with
 * 429 and a retry hint; released, both held requests complete. */
START_TEST(test_remote_queue_full) {
    fixture f;
    start(&f, one_slot);
    f.h.hold = true;
    call a = {.f = &f}, b = {.f = &f};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, remote_thread, &a);
    ck_assert(wait_for(&f.h, &f.h.start, 1));
    pthread_create(&tb, NULL, remote_thread, &b);
    ck_assert(wait_for(&f.h, &f.h.queued, 2));
    expect_status(post(gb_server_port(f.srv), KEYS[0],
                       "{\"session\":[{\"trace\":{\"model\":\"facts\",\"invokes\":[{\"ids\":[1]}]}}]}"),
                  "429", "Retry-After: 1");
    gb_spec *sp = one_trace(EIFFEL, 0, NULL);
    gbt_results r = {0};
    gbt_fails_with(run_remote(&f, KEYS[0], sp, &r) != GB_OK, GB_ERR_STATE, "remote: 429: serve: the queue is full");
    gb_spec_free(sp);
    release(&f.h);
    pthread_join(ta, NULL), pthread_join(tb, NULL);
    ck_assert_int_eq(a.st, GB_OK);
    ck_assert_int_eq(b.st, GB_OK);
    ck_assert_int_eq(a.res.n, 2); /* top and generator.output */
    ck_assert_int_eq(b.res.n, 2);
    gbt_results_free(&a.res), gbt_results_free(&b.res);
    stop(&f);
}
END_TEST

static void time_limited(gb_serve_opts *o) {
    o->time_limit_ms = 500;
    o->clock_ms = test_clock;
}

/* The time limit: the test clock moves 1000 ms a read, so the first check
 * after the start is over the 500 ms limit; the run is cancelled with its
 * message and the worker takes the next request. */
START_TEST(test_remote_timeout) {
    fixture f;
    start(&f, time_limited);
    f.h.step = 1000;
    gb_spec *sp = one_trace(EIFFEL, 1, (const char *[]){"top = lm_head.output[0, -1].argmax(-1).save()"});
    gbt_results r = {0};
    gbt_fails_with(run_remote(&f, KEYS[0], sp, &r) != GB_OK, GB_ERR_STATE,
                   "time limit: the request ran for more than 500 ms and was cancelled");
    ck_assert_int_eq(r.n, 0);
    pthread_mutex_lock(&f.h.mu);
    f.h.step = 0; /* time stands still: the next request runs */
    pthread_mutex_unlock(&f.h.mu);
    ck_assert_int_eq(run_remote(&f, KEYS[0], sp, &r), GB_OK);
    ck_assert_int_eq(r.n, 1);
    gbt_results_free(&r);
    gb_spec_free(sp);
    stop(&f);
}
END_TEST

static void limit_30(gb_serve_opts *o) {
    o->time_limit_ms = 30;
    o->clock_ms = test_clock;
}

/* The time limit inside one forward pass: the test clock moves 1 ms a
 * read and the server reads it before the session, between steps and
 * after every module, so a one-trace request goes over 30 ms in the
 * middle of its pass (blocks have about a dozen modules each: past block
 * 0, before lm_head). Block 0's log line has streamed, lm_head's never
 * comes, no value comes back, the status is 504 with the documented
 * message, and the worker serves the next request. */
START_TEST(test_remote_timeout_in_a_pass) {
    fixture f;
    start(&f, limit_30);
    f.h.step = 1;
    gb_spec *sp = one_trace(EIFFEL, 3, (const char *[]){"log(\"h0\", transformer.h[0].output[0][0, -1, 0])",
                                                         "log(\"end\", lm_head.output[0, -1, 0])",
                                                         "top = lm_head.output[0, -1].argmax(-1).save()"});
    gbt_results r = {0};
    gbt_fails_with(run_remote(&f, KEYS[0], sp, &r) != GB_OK, GB_ERR_STATE,
                   "time limit: the request ran for more than 30 ms and was cancelled");
    ck_assert_int_eq(r.n, 0);
    ck_assert_msg(r.log && !strncmp(r.log, "h0 tensor(", 10) && !strstr(r.log, "end"), "log: %s", r.log ? r.log : "");
    gbt_results_free(&r);
    pthread_mutex_lock(&f.h.mu);
    f.h.step = 0;
    pthread_mutex_unlock(&f.h.mu);
    r = (gbt_results){0};
    ck_assert_int_eq(run_remote(&f, KEYS[0], sp, &r), GB_OK);
    ck_assert_int_eq(r.n, 1);
    ck_assert_msg(r.log && strstr(r.log, "end tensor("), "log: %s", r.log ? r.log : "");
    gbt_results_free(&r);
    gb_spec_free(sp);
    stop(&f);
}
END_TEST

/* What the client saw, in order: "t" for each token event (checked
 * against the server as it arrives), "r" for each result. */
typedef struct streamed {
    fixture *f;
    char seq[64];
    int n;
    bool in_step; /* each token arrived while the worker waited for it */
} streamed;

static gb_status on_token(void *ctx, int trace, int step, const int64_t *ids, int64_t batch) {
    (void)trace, (void)ids, (void)batch;
    streamed *s = ctx;
    hooks *h = &s->f->h;
    pthread_mutex_lock(&h->mu);
    /* the worker wrote token `step` and waits (after its hook) until we have
     * seen it: it cannot have written token step + 1 yet */
    if (h->tokens > step + 1) s->in_step = false;
    h->seen++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    if (s->n < (int)sizeof s->seq - 1) s->seq[s->n++] = 't';
    return GB_OK;
}

static gb_status on_result(void *ctx, const gb_spec_result *r) {
    (void)r;
    streamed *s = ctx;
    if (s->n < (int)sizeof s->seq - 1) s->seq[s->n++] = 'r';
    return GB_OK;
}

/* Tokens stream: the worker waits after each token event until the
 * client has seen it, so each one reaches the client's per-event callback
 * while the generation is still running, before the result and the end. */
START_TEST(test_remote_tokens_stream) {
    fixture f;
    start(&f, NULL);
    f.h.lockstep = true;
    gb_spec *sp = one_trace(EIFFEL, 1, (const char *[]){"top = lm_head.output[0, -1].argmax(-1).save()"});
    gb_spec_generate(sp, 3);
    streamed s = {.f = &f, .in_step = true};
    gb_remote_events ev = {.token = on_token, .result = on_result, .ctx = &s};
    ck_assert_int_eq(gb_remote_run(f.url, KEYS[0], sp, &ev), GB_OK);
    ck_assert_str_eq(s.seq, "tttr");
    ck_assert(s.in_step);
    ck_assert_int_eq(f.h.tokens, 3);
    gb_spec_free(sp);
    stop(&f);
}
END_TEST

/* A client that goes away while its request waits at the start: the server
 * notices, cancels it, and the worker goes on to serve the next. */
START_TEST(test_remote_disconnect) {
    fixture f;
    start(&f, one_slot);
    f.h.hold = true;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)gb_server_port(f.srv))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *body = "{\"session\":[{\"trace\":{\"model\":\"facts\",\"invokes\":[{\"ids\":[1,2]}],\"max_new_tokens\":5}}]}";
    char req[512];
    int n = snprintf(req, sizeof req, "POST /session HTTP/1.1\r\nHost: x\r\nX-API-Key: key-one\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    ck_assert_int_eq(send(fd, req, (size_t)n, 0), n);
    ck_assert(wait_for(&f.h, &f.h.start, 1));
    close(fd);
    ck_assert(wait_for(&f.h, &f.h.cancel, 1));
    release(&f.h);
    ck_assert(wait_for(&f.h, &f.h.end, 1));
    gb_spec *sp = one_trace(EIFFEL, 1, (const char *[]){"top = lm_head.output[0, -1].argmax(-1).save()"});
    gbt_results r = {0};
    ck_assert_int_eq(run_remote(&f, KEYS[0], sp, &r), GB_OK);
    ck_assert_int_eq(r.n, 1);
    gbt_results_free(&r);
    gb_spec_free(sp);
    stop(&f);
}
END_TEST

static void short_timeout(gb_serve_opts *o) { o->connection_timeout_s = 1; }

/* A body that never finishes arriving: the connection is closed after the
 * idle timeout with nothing queued, and other clients are served meanwhile. */
START_TEST(test_remote_slow_body) {
    fixture f;
    start(&f, short_timeout);
    const char *req = "POST /session HTTP/1.1\r\nHost: x\r\nX-API-Key: key-one\r\nContent-Length: 1000\r\n\r\n{\"session\":";
    long status = 0;
    char *health = gb_remote_get(f.url, "/health", NULL, &status);
    ck_assert_int_eq(status, 200);
    free(health);
    char *resp = http_raw(gb_server_port(f.srv), req, strlen(req));
    ck_assert_msg(strstr(resp, " 200 ") == NULL, "a partial body got: %s", resp);
    free(resp);
    ck_assert_int_eq(f.h.queued, 0);
    stop(&f);
}
END_TEST

START_TEST(test_remote_models_health) {
    fixture f;
    start(&f, NULL);
    long status = 0;
    char *body = gb_remote_get(f.url, "/models", NULL, &status);
    ck_assert_int_eq(status, 401);
    free(body);
    body = gb_remote_get(f.url, "/models", KEYS[1], &status);
    ck_assert_int_eq(status, 200);
    char want[256];
    /* GPT-2's parameter count from config.json: V = 1024, P = 64, E = 128,
     * L = 4: V E + P E + L (12 E^2 + 13 E) + 2 E (lm_head tied) */
    long long E = 128, count = 1024 * E + 64 * E + 4 * (12 * E * E + 13 * E) + 2 * E;
    snprintf(want, sizeof want, "{\"name\":\"facts\",\"model_type\":\"gpt2\",\"root\":\"GPT2LMHeadModel\",\"parameters\":%lld,"
                                "\"dtype\":\"float32\",\"children\":[\"transformer\",\"lm_head\"]}", count);
    ck_assert_msg(strstr(body, want), "%s", body);
    free(body);
    body = gb_remote_get(f.url, "/health", NULL, &status);
    ck_assert_str_eq(body, "{\"status\":\"ok\",\"queued\":0,\"running\":0,\"workers\":1}");
    free(body);
    stop(&f);
}
END_TEST

/* The CLI: `trace --remote` and `session --remote` print what the local
 * commands print and write the same --out bytes; a missing key is one
 * error line. */
START_TEST(test_remote_cli) {
    if (cpu_emulated("test_remote_cli")) return;
    fixture f;
    start(&f, NULL);
    char path[2][512];
    const char *tail[] = {
        "-p 'The Eiffel Tower is in the city of' -e 'transformer.h[1].mlp.output[:] = 0' "
        "-e 'top = lm_head.output[0, -1].argmax(-1).save()' -e 'log(\"top\", top)' -p 'Vatican is located in the city of' "
        "-e 'lm_head.output[0, -1].softmax(-1).max(-1).save()' -n 3",
    };
    for (int remote = 0; remote < 2; remote++)
        snprintf(path[remote], sizeof path[remote], "%s/cli_%d.safetensors", gbt_tmp_dir(), remote);
    char *out[2][2];
    for (int remote = 0; remote < 2; remote++) {
        char args[2048], where[128];
        snprintf(where, sizeof where, remote ? "--remote %s facts" : GBT_BUNDLED, f.url);
        snprintf(args, sizeof args, "trace %s %s", where, tail[0]);
        setenv("GLASSBOX_API_KEY", KEYS[0], 1);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "%s: %s", args, r.err);
        out[remote][0] = strdup(r.out);
        gbt_cli_free(&r);
        snprintf(args, sizeof args, "session --model a=%s --trace %s -p 'The Eiffel Tower is in the city of' "
                 "-e 'hs = transformer.h[3].output[0][:, -1, :]' --log between --iter 'x=0.5,2' --trace %s "
                 "-p 'Vatican is located in the city of' -e 'transformer.h[1].output[0][:, -1, :] = hs * x' "
                 "-e 't2 = lm_head.output.argmax(dim=-1).save()' --end --out %s",
                 GBT_BUNDLED, remote ? "facts" : "a", remote ? "facts" : "a", path[remote]);
        if (remote) {
            char with[2300];
            snprintf(with, sizeof with, "%s --remote %s --key %s", args, f.url, KEYS[1]);
            r = gbt_cli(with);
        } else {
            r = gbt_cli(args);
        }
        ck_assert_msg(r.status == 0, "%s: %s", args, r.err);
        out[remote][1] = strdup(r.out);
        gbt_cli_free(&r);
    }
    ck_assert_str_eq(out[0][0], out[1][0]);
    ck_assert_str_eq(out[0][1], out[1][1]);
    ck_assert_str_eq(out[0][1], "between\n"); /* with --out, only the log prints */
    ck_assert_msg(strstr(out[0][0], "top tensor(") && strstr(out[0][0], "generator.output = "), "%s", out[0][0]);
    size_t n0, n1;
    char *a = gbt_read_file(path[0], &n0), *b = gbt_read_file(path[1], &n1);
    ck_assert_msg(a && b && n0 == n1 && !memcmp(a, b, n0), "--out files differ");
    ck_assert_msg(memmem(a, n0, "t2[1].t2", 8) != NULL, "the second item's value is missing");
    free(a), free(b);
    for (int i = 0; i < 2; i++) free(out[i][0]), free(out[i][1]);
    /* the JSON form of a session, from a file */
    char json[512], args[1200];
    snprintf(json, sizeof json, "%s/session.json", gbt_tmp_dir());
    FILE *fp = fopen(json, "w");
    fputs("{\"session\": [{\"trace\": {\"model\": \"facts\", \"invokes\": [{\"ids\": [5, 6, 7], \"statements\": "
          "[\"h = transformer.h[0].output[0]\"]}]}}, {\"log\": \"next\"}, {\"trace\": {\"model\": \"facts\", \"invokes\": "
          "[{\"ids\": [8, 9, 10], \"statements\": [\"transformer.h[0].output[0][:] = h\", "
          "\"y = lm_head.output[0, -1].argmax(-1).save()\"]}]}}]}", fp);
    fclose(fp);
    snprintf(args, sizeof args, "session --model facts=%s --json %s", GBT_BUNDLED, json);
    gbt_cli_result jl = gbt_cli(args);
    snprintf(args, sizeof args, "session --json %s --remote %s --key %s", json, f.url, KEYS[0]);
    gbt_cli_result jr = gbt_cli(args);
    ck_assert_msg(jl.status == 0 && jr.status == 0, "%s / %s", jl.err, jr.err);
    ck_assert_str_eq(jl.out, jr.out);
    ck_assert_msg(!strncmp(jl.out, "[t1]\nnext\n[t2]\ny = tensor(", 26), "%s", jl.out);
    gbt_cli_free(&jl), gbt_cli_free(&jr);
    snprintf(args, sizeof args, "trace --remote %s facts --ids 1 -e 'x = lm_head.output.save()'", f.url);
    unsetenv("GLASSBOX_API_KEY");
    gbt_cli_fails(args, 1, "glassbox trace: remote: 401: serve: a valid API key is required");
    /* trace's options through the server: --top (the server's tokenizer), --png (the same bytes), --out,
     * --scan and --graph (the server's scan), with invokes, an unnamed value after the first invoke, a
     * generation and a stop, printed as the local run prints them */
    const char *opts[] = {
        "-p 'The Eiffel Tower is in the city of' -e 'h = transformer.h[1].output[0][0, -1, :8].save()' "
        "-p 'Vatican is located in the city of' -e 'transformer.h[2].output[0][:, -1, :8].save()' --top 3 -n 2 "
        "--png %s --out %s",
        "-p 'The Eiffel Tower is in the city of' -e 'h = transformer.h[1].output[0][0, -1, :8].save()' "
        "-e 'g = transformer.h[3].output[0][0, -1, :2]' -e 'transformer.h[2].output.stop()' "
        "-e 'lm_head.next().output.save()' -n 2 --scan --graph%.0s%.0s",
        "--ids 464,412,733 -e 'transformer.h[2].output.stop()' -e 'x = lm_head.output.save()' -n 2 --top 2%.0s%.0s",
        "-p 'The Eiffel Tower is in the city of' -e 'h = transformer.h[1].output[0][0, -1, :3].save()' "
        "-e 'lm_head.output[0, -1, :2].save()' -n 2 --json%.0s%.0s",
        "-p 'The Eiffel Tower is in the city of' -e 'h = transformer.h[1].output[0][0, -1, :3].save()' --scan --json%.0s%.0s",
    };
    for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
        char png[2][512], safet[2][512], *got[2];
        for (int remote = 0; remote < 2; remote++) {
            snprintf(png[remote], sizeof png[remote], "%s/top_%d.png", gbt_tmp_dir(), remote);
            snprintf(safet[remote], sizeof safet[remote], "%s/top_%d.safetensors", gbt_tmp_dir(), remote);
            char tail2[1024], where[128];
            snprintf(tail2, sizeof tail2, opts[k], png[remote], safet[remote]);
            snprintf(where, sizeof where, remote ? "--remote %s --key %s facts" : "%s", remote ? f.url : GBT_BUNDLED,
                     KEYS[0]);
            snprintf(args, sizeof args, "trace %s %s", where, tail2);
            gbt_cli_result r = gbt_cli(args);
            ck_assert_msg(r.status == 0, "%s: %s", args, r.err);
            got[remote] = strdup(r.out);
            gbt_cli_free(&r);
        }
        if (k == 0) { /* the picture line names its own file */
            char *line = strstr(got[1], "picture: ");
            ck_assert_msg(line != NULL, "%s", got[1]);
            ck_assert_msg(strstr(got[0], "top 3 next tokens at the last step:\nrow 0:\n") != NULL, "%s", got[0]);
            size_t n0, n1;
            char *a0 = gbt_read_file(png[0], &n0), *a1 = gbt_read_file(png[1], &n1);
            ck_assert_msg(a0 && a1 && n0 == n1 && !memcmp(a0, a1, n0), "--png files differ");
            free(a0), free(a1);
            a0 = gbt_read_file(safet[0], &n0), a1 = gbt_read_file(safet[1], &n1);
            ck_assert_msg(a0 && a1 && n0 == n1 && !memcmp(a0, a1, n0), "--out files differ");
            ck_assert_msg(memmem(a0, n0, "statement.2", 11) != NULL, "the unnamed value's name");
            free(a0), free(a1);
            char *p0 = strstr(got[0], "picture: ");
            ck_assert_int_eq(p0 - got[0], line - got[1]);
            ck_assert(!strncmp(got[0], got[1], (size_t)(line - got[1])));
        } else {
            ck_assert_str_eq(got[0], got[1]);
        }
        if (k == 1) ck_assert_msg(strstr(got[0], "%0 = output") && strstr(got[0], "h: [8]\ng: no shape"), "%s", got[0]);
        free(got[0]), free(got[1]);
    }
    /* -f FILE: a multi-line block as one statement */
    char block[512];
    snprintf(block, sizeof block, "%s/block.py", gbt_tmp_dir());
    fp = fopen(block, "w");
    fputs("if lm_head.output[0, -1].argmax(-1) == 498:\n    lm_head.output[0, -1, :4].save()\n"
          "x = lm_head.output[0, -1, 4:6].save()\n", fp);
    fclose(fp);
    char *fout[2];
    for (int remote = 0; remote < 2; remote++) {
        snprintf(args, sizeof args, "trace %s%s%s -p 'The Eiffel Tower is in the city of' -f %s -e 'lm_head.output[0, -1, :1].save()'",
                 remote ? "--remote " : GBT_BUNDLED, remote ? f.url : "", remote ? " --key key-one facts" : "", block);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "%s: %s", args, r.err);
        fout[remote] = strdup(r.out);
        gbt_cli_free(&r);
    }
    ck_assert_str_eq(fout[0], fout[1]);
    ck_assert_msg(strstr(fout[0], "x = tensor(") && strstr(fout[0], "lm_head.output[0, -1, :1].save() = tensor("), "%s", fout[0]);
    free(fout[0]), free(fout[1]);
    /* loops over prompts (quoted texts, ids:) and over a value, in the CLI's spelling: local == remote */
    const char *loops = "--trace facts -p 'The Eiffel Tower is in the city of' -e 'hs = transformer.h[3].output[0][0, -2:, :]' "
                        "--iter \"p='Vatican is located in the city of','It\\'s in'\" --trace facts --item p "
                        "-e 'top = lm_head.output[0, -1].argmax(-1).save()' --end "
                        "--iter 'q=ids:[464,412,733],[5]' --iter x=hs --trace facts --item q "
                        "-e 'transformer.h[1].output[0][:, -1, :] = x' -e 'y = lm_head.output[0, -1].argmax(-1).save()' "
                        "-n 2 --end --end";
    char *lout[2];
    for (int remote = 0; remote < 2; remote++) {
        if (remote) snprintf(args, sizeof args, "session %s --remote %s --key %s", loops, f.url, KEYS[0]);
        else snprintf(args, sizeof args, "session --model facts=%s %s", GBT_BUNDLED, loops);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "%s: %s", args, r.err);
        lout[remote] = strdup(r.out);
        gbt_cli_free(&r);
    }
    ck_assert_str_eq(lout[0], lout[1]);
    ck_assert_msg(strstr(lout[0], "[t2[1]]\ntop = tensor(") && strstr(lout[0], "[t3[1.1]]\ny = tensor("), "%s", lout[0]);
    free(lout[0]), free(lout[1]);
    /* the option tables: trace's local-only options, session's steps beside --json, strict numbers */
    snprintf(args, sizeof args, "trace --remote %s facts --ids 1 --edit 'transformer.h[0].output[0][:] = 0'", f.url);
    gbt_cli_fails(args, 2, "glassbox trace: --edit is not available with --remote");
    snprintf(args, sizeof args, "session --json %s --trace facts", json);
    gbt_cli_fails(args, 2, "glassbox session: --json holds the whole session: give no steps beside it");
    snprintf(args, sizeof args, "trace --remote %s facts --ids 1 --dtype f32", f.url);
    gbt_cli_fails(args, 2, "glassbox trace: --dtype f32 converts weights where they are opened");
    gbt_cli_fails("session --trace facts -n 2x", 2, "glassbox session: -n/--max-new-tokens: '2x' is not an integer");
    gbt_cli_fails("session --iter \"p='a\" --trace facts --item p --end", 1,
                  "glassbox session: --iter p='a: prompts are 'TEXT','TEXT' (or \"TEXT\") or ids:[1,2],[3]");
    gbt_cli_fails("session --iter 'p=ids:[1,x],[2]' --trace facts --item p --end", 1,
                  "glassbox session: --iter p=ids:[1,x],[2]: prompts are");
    gbt_cli_fails("session --iter \"p='a'b\" --trace facts --item p --end", 1, "glassbox session: --iter p='a'b: prompts are");
    gbt_cli_fails("session --model facts --trace facts", 2, "glassbox session: --model takes NAME=DIR, got 'facts'");
    gbt_cli_fails("serve --model a=b --workers 0", 2, "glassbox serve: --workers: 0 is out of range");
    gbt_cli_fails("serve --port 80 --time-limit 1.5", 2, "glassbox serve: --time-limit: '1.5' is not an integer");
    stop(&f);
}
END_TEST

/* trace --remote prints the local run's stderr too: the warnings for saved
 * values never produced (a stop before them, an untaken branch, a .next()
 * beyond a generation's steps); --seed (trace's, and session's per trace)
 * reaches the server: torch.randint in statements gives the local values,
 * and so does sampling (--temperature, --top-k, --top-p, --repetition-penalty). */
START_TEST(test_remote_cli_stderr_seed) {
    if (cpu_emulated("test_remote_cli_stderr_seed")) return;
    fixture f;
    start(&f, NULL);
    char block[512], args[2048];
    snprintf(block, sizeof block, "%s/branch.py", gbt_tmp_dir());
    FILE *fp = fopen(block, "w");
    fputs("if lm_head.output[0, -1, 0] > 1e30:\n    y = lm_head.output[0, -1, :4].save()\nelse:\n"
          "    z = lm_head.output[0, -1, 4:6].save()\n", fp);
    fclose(fp);
    const char *tails[] = {
        "--ids 464,412,733 -e 'h = transformer.h[1].output[0][0, -1, :2].save()' -e 'transformer.h[2].output.stop()' "
        "-e 'x = lm_head.output.save()' -e 'lm_head.output[0, -1, :2].save()'",
        "-p 'The Eiffel Tower is in the city of' -f %s",
        "--ids 464,412,733 -e 'a = lm_head.next().next().next().output[0, -1, :2].save()' -n 2",
        "--ids 464,412,733 -e 'r = torch.randint(0, 1000, (6,)).save()' --seed 7",
        "--ids 464,412,733 -e 'r = torch.randint(0, 1000, (6,)).save()'",
        "--ids 464,412,733 -e 'r = torch.randint(0, 1000, (6,)).save()' -n 2 --seed 7",
        "--ids 464,412,733 -n 6 --temperature 1.5 --top-k 50 --top-p 0.95 --repetition-penalty 1.2 --seed 11",
        "--ids 464,412,733 -n 6 --temperature 1.5 --top-k 50 --top-p 0.95 --repetition-penalty 1.2 --seed 12",
    };
    char *outs[8];
    for (size_t k = 0; k < sizeof tails / sizeof *tails; k++) {
        gbt_cli_result r[2];
        for (int remote = 0; remote < 2; remote++) {
            char tail[1024], where[256];
            snprintf(tail, sizeof tail, tails[k], block);
            snprintf(where, sizeof where, remote ? "--remote %s --key %s facts" : "%s", remote ? f.url : GBT_BUNDLED, KEYS[0]);
            snprintf(args, sizeof args, "trace %s %s", where, tail);
            r[remote] = gbt_cli(args);
            ck_assert_msg(r[remote].status == 0, "%s: %s", args, r[remote].err);
        }
        ck_assert_str_eq(r[0].out, r[1].out);
        ck_assert_str_eq(r[0].err, r[1].err);
        outs[k] = strdup(r[0].out);
        if (k == 0)
            ck_assert_msg(strstr(r[0].err, "glassbox trace: warning: x was never produced (the run stopped") &&
                              strstr(r[0].err, "warning: lm_head.output[0, -1, :2].save() was never produced") &&
                              strstr(r[0].out, "h = tensor("),
                          "%s", r[0].err);
        if (k == 1)
            ck_assert_msg(strstr(r[0].err, "glassbox trace: warning: y was never produced") && strstr(r[0].out, "z = tensor(") &&
                              !strstr(r[0].err, "z was"),
                          "%s", r[0].err);
        if (k == 2)
            ck_assert_msg(strstr(r[0].err, "warning: a was never produced: generation made 2 new tokens"), "%s", r[0].err);
        gbt_cli_free(&r[0]), gbt_cli_free(&r[1]);
    }
    ck_assert_str_ne(outs[3], outs[4]); /* the seed was not dropped on the way */
    ck_assert_str_ne(outs[6], outs[7]); /* sampled: the seed and the sampling options reached the server */
    for (size_t k = 0; k < sizeof outs / sizeof *outs; k++) free(outs[k]);
    /* session --seed per trace, locally and on the server */
    const char *ses = "--trace facts --seed 3 --ids 1,2 -e 'a = torch.randint(0, 1000, (4,)).save()' -n 3 --temperature 1.5 "
                      "--trace facts --seed 4 --ids 1,2 -e 'b = torch.randint(0, 1000, (4,)).save()' "
                      "--trace facts --ids 1,2 -e 'c = torch.randint(0, 1000, (4,)).save()'";
    char *sout[2];
    for (int remote = 0; remote < 2; remote++) {
        if (remote) snprintf(args, sizeof args, "session %s --remote %s --key %s", ses, f.url, KEYS[0]);
        else snprintf(args, sizeof args, "session --model facts=%s %s", GBT_BUNDLED, ses);
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0, "%s: %s", args, r.err);
        sout[remote] = strdup(r.out);
        gbt_cli_free(&r);
    }
    ck_assert_str_eq(sout[0], sout[1]);
    /* each trace's own seed: trace --seed S's values */
    const char *want[] = {"3", "4", "0"};
    for (int t = 0; t < 3; t++) {
        snprintf(args, sizeof args, "trace %s --ids 1,2 -e '%c = torch.randint(0, 1000, (4,)).save()' --seed %s%s", GBT_BUNDLED,
                 'a' + t, want[t], t ? "" : " -n 3 --temperature 1.5");
        gbt_cli_result r = gbt_cli(args);
        ck_assert_msg(r.status == 0 && strstr(sout[0], r.out), "%s\n%s", sout[0], r.out);
        gbt_cli_free(&r);
    }
    free(sout[0]), free(sout[1]);
    stop(&f);
}
END_TEST

/* The keys file: one key a line, comments and blank lines skipped. */
START_TEST(test_serve_keys_file) {
    char path[512];
    snprintf(path, sizeof path, "%s/keys.txt", gbt_tmp_dir());
    FILE *fp = fopen(path, "w");
    fputs("# lab keys\nalpha\n\nbeta\r\n", fp);
    fclose(fp);
    char **keys;
    int n;
    gbt_ok_status(gb_serve_read_keys(path, &keys, &n));
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(keys[0], "alpha");
    ck_assert_str_eq(keys[1], "beta");
    gb_serve_keys_free(keys, n);
    fp = fopen(path, "w");
    fputs("# none\n", fp);
    fclose(fp);
    gbt_fails_with(gb_serve_read_keys(path, &keys, &n) != GB_OK, GB_ERR_FORMAT, "has no keys");
    gbt_fails_with(gb_serve_read_keys("/nonexistent/keys", &keys, &n) != GB_OK, GB_ERR_IO, "cannot be read");
    gb_serve_opts o = gb_serve_defaults();
    gbt_fails_with(!gb_serve_start(&o), GB_ERR_ARG, "no models to serve");
}
END_TEST

Suite *gb_suite_remote(void) {
    Suite *s = suite_create("remote");
    TCase *tc = tcase_create("remote");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_remote_equals_local);
    tcase_add_test(tc, test_remote_errors);
    tcase_add_test(tc, test_remote_queue_full);
    tcase_add_test(tc, test_remote_concurrent);
    tcase_add_test(tc, test_remote_timeout);
    tcase_add_test(tc, test_remote_timeout_in_a_pass);
    tcase_add_test(tc, test_remote_tokens_stream);
    tcase_add_test(tc, test_remote_disconnect);
    tcase_add_test(tc, test_remote_slow_body);
    tcase_add_test(tc, test_remote_models_health);
    tcase_add_test(tc, test_serve_keys_file);
    tcase_add_test(tc, test_remote_cli);
    tcase_add_test(tc, test_remote_cli_stderr_seed);
    suite_add_tcase(s, tc);
    return s;
}
