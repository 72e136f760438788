/* glassbox session: nnsight's model.session(). Several traces, of one model
 * or of several, run one after another as a unit; a value of an earlier
 * trace is used in a later one without saving it; loops run a body of
 * traces once per item (nnsight's session.iter); log and stop work at
 * session level.
 *
 * Usage (compiled as a test, tests/test_header_examples.c):
 *
 *     gb_session *s = gb_session_new();
 *     gb_trace *t1 = gb_session_trace(s, model, input);        // with model.trace(input) as t1:
 *     gb_val *h = gb_val_clone(gb_output(t1, "layer1"));         //     h = model.layer1.output.clone()  (no save)
 *     gb_trace *t2 = gb_session_trace(s, model, input);        // with model.trace(input) as t2:
 *     gb_set(gb_output(t2, "layer1"), gb_session_use(s, t2, h)); //     model.layer1.output = h
 *     gb_val *y = gb_save(gb_output(t2, "layer2"));
 *     if (gb_session_run(s) != GB_OK) fprintf(stderr, "%s\n", gb_last_error());
 *     gb_tensor *t = gb_value(y);                                // borrowed until gb_session_free
 *     gb_session_free(s);
 *
 * Traces of a session are ordinary traces (define on them with every call
 * of trace/trace.h, and statements) that the session owns and runs in the
 * order they were made. A statement of a session trace may name a value
 * bound by a statement of an earlier trace ("hs = ..." in trace 1, "...
 * = hs" in trace 2): the name resolves to it, as it does in nnsight.
 * Such a value is kept by the session (the earlier trace holds a view of
 * it, not saved for the user) and enters the later trace as a constant
 * bound when that trace runs, so traces of different models (two
 * checkpoints of one architecture) exchange values alike. Values that
 * cross traces are tensors: index a block's tuple output with [0] first.
 *
 * Loops: the steps defined between gb_session_iter and gb_session_iter_end
 * (traces, logs, inner loops) run once per item, an item being a row of
 * the items tensor (dim 0), or of an enclosing loop's item; in the body,
 * the loop's name (statements) or gb_session_item (C) is the item. Saved
 * values of a trace in a loop hold the last item's; gb_session_on_trace
 * sees each run.
 */
#ifndef GB_SESSION_H
#define GB_SESSION_H

#include "../lm/lm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gb_session gb_session;

gb_session *gb_session_new(void);
/* Frees the session and its traces. */
void gb_session_free(gb_session *s);

/* A trace of the session on model (borrowed: it must outlive the
 * session), on input as gb_trace_new (NULL: its invokes). Owned by the
 * session. NULL with an error on allocation failure. */
gb_trace *gb_session_trace(gb_session *s, gb_module *model, gb_tensor *input);
/* Run tr by generation (gb_exec_decode with a copy of opts) instead of
 * one forward pass. */
gb_status gb_session_generate(gb_session *s, gb_trace *tr, const gb_decode_opts *opts);
/* v, a value of an earlier trace of s, as a value of tr (what a statement
 * naming it gets). NULL with an error when v's trace is not an earlier
 * trace of s. */
gb_val *gb_session_use(gb_session *s, gb_trace *tr, gb_val *v);

/* session.log(label, v): when the session gets there, the log receives
 * "label" and, when v (a value of an earlier trace, or NULL) is given,
 * " " and its value. */
gb_status gb_session_log(gb_session *s, const char *label, gb_val *v);
/* The session ends here: later steps do not run (gb_session_run: GB_OK). */
gb_status gb_session_stop(gb_session *s);

/* session.iter(items) as name: a loop over the rows of items (the session
 * takes a reference), or, when items is NULL, over the rows of the item
 * of the enclosing loop called over (nested loops), or else of the value
 * an earlier trace bound to the name over (session.iter(hs) over a value
 * of trace 1: its rows as that trace's run left them, read when the loop
 * starts). */
gb_status gb_session_iter(gb_session *s, const char *name, gb_tensor *items, const char *over);
/* session.iter(prompts) as p: with model.trace(p): tr (in the loop called
 * loop) runs on inputs[k] ([1, T] ids, the session takes references) at
 * the loop's item k instead of its own input; n the loop's items. tr was
 * made with no input (gb_session_trace(s, model, NULL)) and has no
 * invokes. */
gb_status gb_session_input(gb_session *s, gb_trace *tr, const char *loop, int n, gb_tensor *const *inputs);
gb_status gb_session_iter_end(gb_session *s);
/* The item of the innermost open loop (or of the loop called name, when
 * not NULL) as a value of tr. */
gb_val *gb_session_item(gb_session *s, gb_trace *tr, const char *name);

/* Scan every trace in order (values of earlier traces enter later ones
 * as shape-only tensors; a loop's body is scanned on its first item), so
 * a session is checked completely before it runs. */
gb_status gb_session_scan(gb_session *s);
/* Run the steps in order. GB_OK (also after a session-level stop), or the
 * first error, its message naming the trace ("session: trace 2: ..."). */
gb_status gb_session_run(gb_session *s);

/* What the session tells as it runs (all optional). log receives each
 * line of the traces' logs and the session's own, without the newline;
 * token each generation step's chosen ids [batch]; trace each trace's
 * completed run (number from 1 in definition order; the enclosing loops'
 * item numbers, outermost first); cancelled is asked between steps and
 * generation steps, and inside each forward pass after every module
 * (gb_exec_set_cancel), and ends the run with GB_ERR_STATE when true
 * ("session: cancelled", or "exec: cancelled after MODULE (call K)" in a
 * pass, with "session: trace N: " in front when the session has several). A status other than GB_OK from token or trace
 * ends the run with it. */
typedef struct gb_session_events {
    void (*log)(void *ctx, const char *line);
    gb_status (*token)(void *ctx, int trace, int step, const int64_t *ids, int64_t batch);
    gb_status (*trace)(void *ctx, gb_trace *tr, int trace, int depth, const int64_t *items);
    bool (*cancelled)(void *ctx);
    void *ctx;
} gb_session_events;
void gb_session_set_events(gb_session *s, const gb_session_events *e);

/* ---- sessions as text: what the CLI and the server take ------------------ */

/* A session written as statements: traces (a model name, prompts or ids
 * (several: invokes, each with the statements that follow it), statements,
 * optionally a generation length), session logs, stops and loops. It is
 * plain data: gb_spec_json and gb_spec_from_json carry it over the wire,
 * and gb_spec_session builds the same session from it anywhere. */
typedef struct gb_spec gb_spec;

gb_spec *gb_spec_new(void);
void gb_spec_free(gb_spec *sp);
/* A new trace of the model called model (a name the builder resolves). */
gb_status gb_spec_trace(gb_spec *sp, const char *model);
/* A prompt (text, through the model's tokenizer) or ids of the current
 * trace: the first is the trace's input, each further one an invoke. */
gb_status gb_spec_prompt(gb_spec *sp, const char *text);
gb_status gb_spec_ids(gb_spec *sp, int64_t n, const int64_t *ids);
/* A statement of the current trace (of its last prompt's invoke). */
gb_status gb_spec_statement(gb_spec *sp, const char *text);
/* Generate n >= 1 new tokens in the current trace (greedy unless
 * gb_spec_sampling; the model's EOS ends rows) instead of one forward pass. */
gb_status gb_spec_generate(gb_spec *sp, int n);
/* The current trace's seed (default 0): torch.randint's in its statements
 * (gb_trace_set_seed) and its generation's sampling seed. */
gb_status gb_spec_seed(gb_spec *sp, uint64_t seed);
/* The current trace's generation samples with sampling (its seed aside:
 * gb_spec_seed's) instead of greedily. */
gb_status gb_spec_sampling(gb_spec *sp, const gb_sampling *sampling);
gb_status gb_spec_log(gb_spec *sp, const char *text);
gb_status gb_spec_stop(gb_spec *sp);
/* A loop named name over n items: scalars (width 0: values [n]) or rows
 * of width numbers (values [n, width], row by row); or, with values NULL,
 * over the rows of the item of the enclosing loop called over, or else of
 * the value an earlier trace bound to that name. Steps up to gb_spec_end
 * are its body. */
gb_status gb_spec_iter(gb_spec *sp, const char *name, int64_t n, int64_t width, const float *values, const char *over);
/* A loop named name over n prompts (nnsight's session.iter(prompts)):
 * texts[k], or when texts or texts[k] is NULL the lens[k] ids of ids[k].
 * A trace in its body takes the item as its prompt with gb_spec_item; in
 * statements, name is the item's number. */
gb_status gb_spec_iter_prompts(gb_spec *sp, const char *name, int n, const char *const *texts,
                               const int64_t *const *ids, const int64_t *lens);
/* The current trace's prompt is the item of the enclosing loop over
 * prompts called loop (with model.trace(prompt)); it takes no other. */
gb_status gb_spec_item(gb_spec *sp, const char *loop);
gb_status gb_spec_end(gb_spec *sp);
/* The model names the spec's traces use, in order of first use (borrowed
 * from sp; *n their number). */
const char *const *gb_spec_models(const gb_spec *sp, int *n);

/* JSON (docs/remote.md): a new string the caller frees, and back. Parsing
 * checks the structure and names what is wrong ("session: step 2: ..."). */
char *gb_spec_json(const gb_spec *sp);
gb_spec *gb_spec_from_json(const char *text, size_t len);

/* The limits a builder enforces (0: none); exceeded says whether it
 * failed for one of them (a server's 413). */
typedef struct gb_spec_limits {
    int64_t max_tokens;     /* prompt tokens of one trace, all invokes */
    int max_new_tokens;
    int max_batch;          /* invokes of one trace */
    int64_t max_runs;       /* trace runs, a loop's body counted once per item */
    bool exceeded;
} gb_spec_limits;

/* What a built spec reports of each trace run: its saved statements'
 * values, named by the name a statement binds ("top = ...") or
 * "statement.N", then "generator.output" after a generation. Borrowed
 * during the call. */
typedef struct gb_spec_result {
    int trace;               /* from 1 */
    int depth;
    const int64_t *items;    /* the enclosing loops' item numbers */
    int n;
    const char *const *names;
    gb_tensor *const *values;
    /* After a generation: each row of generator.output as text (special
     * tokens skipped), ntexts of them (0 without a tokenizer). */
    int ntexts;
    const char *const *texts;
    /* The saved values the run never produced (gb_exec_unproduced), named
     * as values are (else by gb_val_text), and the new tokens a generation
     * made (-1: none ran, or it stopped), from which a caller says why. */
    int nunproduced;
    const char *const *unproduced;
    int64_t new_tokens;
    /* Locally only (NULL/0 from a server): the trace, and each statement's
     * text and value (gb_val_shape after a scan). scan: reported by
     * gb_session_scan, with n = 0. */
    bool scan;
    gb_trace *tr;
    int nstmts;
    const char *const *stmts;
    gb_val *const *vals;
    /* A scan's, locally and from a server (gb_remote_scan): the trace's
     * graph as gb_trace_graph prints it, and each statement's shape:
     * ndims[i] dims in shapes[i * GB_MAX_DIMS ...], or -1 for a value the
     * scan did not reach that is named or saved, -2 for another. */
    const char *graph;
    const int *ndims;
    const int64_t *shapes;
} gb_spec_result;
typedef gb_status (*gb_spec_result_fn)(void *ctx, const gb_spec_result *r);

/* The session sp describes, on the models lm_of names (NULL with an error
 * for an unknown name). Prompts are encoded, statements parsed (the first
 * error is returned as gb_trace_statement's, with the trace's number in
 * front), limits checked (GB_ERR_ARG naming the limit, limits->exceeded).
 * Each completed trace run calls result (may be NULL) after the session's
 * own trace event, and so does each trace's scan. NULL with an error. */
gb_session *gb_spec_session(const gb_spec *sp, gb_lm *(*lm_of)(void *ctx, const char *name), void *lm_ctx,
                            gb_spec_limits *limits, gb_spec_result_fn result, void *result_ctx);

#ifdef __cplusplus
}
#endif

#endif
