/* Load benchmark of the server (not a test): a server of MODEL on
 * 127.0.0.1 (any free port), C clients each sending N small traces (one
 * prompt, a patched block, the top token saved), every answer checked
 * against the same trace run locally, then /health. Prints requests per
 * second and the latency percentiles. `make bench-remote`.
 *
 *   build/load [MODEL] [--clients C] [--requests N] [--workers W] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "glassbox.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

typedef struct client {
    const char *url;
    int n, id;
    int64_t want[8];   /* the local top token of each prompt */
    double *lat;       /* [n] ms */
    int wrong, failed;
} client;

static const char *const PROMPTS[8] = {
    "The Eiffel Tower is in the city of", "Vatican is located in the city of", "The Colosseum is in the city of",
    "The Eiffel Tower is located in the city of", "Paris is the capital of", "Rome is the capital of",
    "The Louvre is in the city of", "Big Ben is in the city of"};

static gb_spec *spec_of(int k) {
    gb_spec *sp = gb_spec_new();
    gb_spec_trace(sp, "m");
    gb_spec_prompt(sp, PROMPTS[k % 8]);
    gb_spec_statement(sp, "transformer.h[1].mlp.output[:, -1, :] = transformer.h[1].mlp.output[:, -1, :] * 0.5");
    gb_spec_statement(sp, "top = lm_head.output[0, -1].argmax(-1).save()");
    return sp;
}

static gb_status keep_top(void *ctx, const gb_spec_result *r) {
    int64_t *out = ctx;
    if (!r->scan && r->n == 1) *out = *(const int64_t *)gb_tensor_data(r->values[0]);
    return GB_OK;
}

static void *run_client(void *arg) {
    client *c = arg;
    for (int i = 0; i < c->n; i++) {
        int k = c->id + i;
        gb_spec *sp = spec_of(k);
        int64_t top = -1;
        gb_remote_events ev = {.result = keep_top, .ctx = &top};
        double t0 = now_ms();
        gb_status st = gb_remote_run(c->url, NULL, sp, &ev);
        c->lat[i] = now_ms() - t0;
        if (st != GB_OK) c->failed++;
        else if (top != c->want[k % 8]) c->wrong++;
        gb_spec_free(sp);
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static gb_lm *the_lm(void *ctx, const char *name) {
    (void)name;
    return ctx;
}

int main(int argc, char **argv) {
    const char *model = "models/gpt2-facts";
    int clients = 8, requests = 50, workers = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--clients") && i + 1 < argc) clients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--requests") && i + 1 < argc) requests = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc) workers = atoi(argv[++i]);
        else model = argv[i];
    }
    if (clients < 1 || clients > 256 || requests < 1 || workers < 1) {
        fprintf(stderr, "load: --clients 1..256, --requests >= 1, --workers >= 1\n");
        return 2;
    }
    gb_lm *lm = gb_lm_open(model, NULL), *local = gb_lm_open(model, NULL);
    if (!lm || !local) {
        fprintf(stderr, "load: %s\n", gb_last_error());
        return 1;
    }
    int64_t want[8];
    for (int k = 0; k < 8; k++) { /* the answers, locally */
        gb_spec *sp = spec_of(k);
        gb_session *s = gb_spec_session(sp, the_lm, local, NULL, keep_top, &want[k]);
        if (!s || gb_session_run(s) != GB_OK) {
            fprintf(stderr, "load: %s\n", gb_last_error());
            return 1;
        }
        gb_session_free(s);
        gb_spec_free(sp);
    }
    /* the same traces run locally, one after another, for scale */
    double l0 = now_ms();
    int nlocal = clients * requests;
    for (int i = 0; i < nlocal; i++) {
        gb_spec *sp = spec_of(i);
        int64_t top = -1;
        gb_session *s = gb_spec_session(sp, the_lm, local, NULL, keep_top, &top);
        if (!s || gb_session_run(s) != GB_OK || top != want[i % 8]) {
            fprintf(stderr, "load: local run %d: %s\n", i, gb_last_error());
            return 1;
        }
        gb_session_free(s);
        gb_spec_free(sp);
    }
    double local_rate = nlocal / ((now_ms() - l0) / 1e3);
    gb_serve_model m = {"m", lm};
    gb_serve_opts o = gb_serve_defaults();
    o.models = &m, o.nmodels = 1, o.workers = workers, o.queue = clients * 2;
    gb_server *srv = gb_serve_start(&o);
    if (!srv) {
        fprintf(stderr, "load: %s\n", gb_last_error());
        return 1;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", gb_server_port(srv));
    client *cs = calloc((size_t)clients, sizeof *cs);
    pthread_t *ts = calloc((size_t)clients, sizeof *ts);
    double *lat = calloc((size_t)clients * (size_t)requests, sizeof *lat);
    double t0 = now_ms();
    for (int i = 0; i < clients; i++) {
        cs[i] = (client){.url = url, .n = requests, .id = i, .lat = lat + (size_t)i * (size_t)requests};
        memcpy(cs[i].want, want, sizeof want);
        pthread_create(&ts[i], NULL, run_client, &cs[i]);
    }
    int wrong = 0, failed = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(ts[i], NULL);
        wrong += cs[i].wrong, failed += cs[i].failed;
    }
    double secs = (now_ms() - t0) / 1e3;
    int total = clients * requests;
    qsort(lat, (size_t)total, sizeof *lat, cmp);
    long status = 0;
    char *health = gb_remote_get(url, "/health", NULL, &status);
    printf("%d clients x %d requests, %d workers: %.1f req/s, p50 %.1f ms, p99 %.1f ms; wrong %d, failed %d; "
           "/health afterwards: %ld %s\nthe same %d traces run locally one after another: %.1f per second\n",
           clients, requests, workers, total / secs, lat[total / 2], lat[(int)(total * 0.99)], wrong, failed, status,
           health ? health : "", nlocal, local_rate);
    free(health);
    gb_serve_stop(srv);
    free(cs), free(ts), free(lat);
    gb_lm_free(lm), gb_lm_free(local);
    return wrong || failed || status != 200;
}
