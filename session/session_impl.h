/* Private to session/: the steps of a session and what crosses traces. */
#ifndef GB_SESSION_IMPL_H
#define GB_SESSION_IMPL_H

#include "../tensor/base.h"
#include "session.h"

typedef enum gb__ses_sess_kind {
    GB__SESS_TRACE,
    GB__SESS_LOG,
    GB__SESS_STOP,
    GB__SESS_ITER, /* its body is the steps up to `end` */
} gb__ses_sess_kind;

typedef struct gb__ses_sess_step {
    gb__ses_sess_kind kind;
    int parent;             /* the innermost enclosing ITER step, or -1 */
    gb_trace *tr;           /* TRACE */
    int number;             /* TRACE: from 1, definition order */
    bool generate;
    gb_decode_opts opts;
    gb_tensor **inputs;     /* TRACE: its input per item of loop input_loop (gb_session_input), or NULL */
    int ninputs, input_loop;
    char *text;             /* LOG: its label; ITER: its name */
    gb_val *value;          /* LOG: the kept view of the value logged, or NULL; ITER: of the value it walks */
    gb_tensor *items;       /* ITER: its items, or NULL: the rows of `over`'s item or of `value` */
    int over;               /* ITER: the enclosing ITER step whose item it walks, or -1 */
    int end;                /* ITER: the step after its body */
    /* ITER while running: the current item (a row, referenced) and its number */
    gb_tensor *item;
    int64_t index;
} gb__ses_sess_step;

/* A value crossing into trace `to`: the constant c there, bound before each
 * run of `to` to what `kept` holds in its trace's execution, or to the
 * current item of ITER step `iter`. */
typedef struct gb__ses_sess_import {
    gb_trace *to;
    gb_val *c;
    gb_val *source, *kept; /* a value of an earlier trace and the saved view of it the session reads */
    int iter;              /* or an item: the ITER step, else -1 */
} gb__ses_sess_import;

/* A value later steps read, and the saved view of it they read it through. */
typedef struct gb__ses_sess_keep_t {
    gb_val *source, *kept;
} gb__ses_sess_keep_t;

struct gb_session {
    gb__ses_sess_step *steps;   /* stb_ds array */
    gb__ses_sess_import *imports; /* stb_ds array */
    gb__ses_sess_keep_t *keeps;   /* stb_ds array */
    int *open;              /* stb_ds stack of open ITER steps */
    int ntraces;
    gb_session_events ev;
    FILE *log;              /* a stream whose lines go to ev.log (fopencookie) */
    char *logbuf;           /* the unfinished line */
    size_t loglen;
    /* gb_spec_session's per-trace reporting */
    gb_status (*result)(void *ctx, gb_trace *tr, int number, int depth, const int64_t *items, bool scan, int64_t new_tokens);
    void *result_ctx;
    void (*result_free)(void *ctx);
};

/* The session's prefix on trace `number`'s failure, the message kept. */
gb_status gb__ses_sess_fail(gb_status st, int number);

#endif
