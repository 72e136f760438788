/* Private to trace/. A trace is two things kept apart:
 *
 * - the graph (gb_trace, gb_val, gb__tr_point): what definition calls and
 *   statements build, plus the tables derived from it once per shape of
 *   the graph (users, points, what repeats). A run only reads it, so one
 *   graph can run in several threads at once;
 * - an execution (gb_exec, gb__tr_slot, gb__tr_xpoint): everything one run
 *   writes, indexed by node id. The trace embeds one (`own`), which
 *   gb_trace_run and gb_value use; gb_exec_new makes more.
 *
 * Files, each calling only those before it: graph.c defines and compiles
 * the graph; batch.c holds invokes (their definition, and batching a run's
 * input); ops.c computes the functions on values and module calls; exec.c runs a graph in an execution (binding, pump, point and
 * gradient hooks, the stepping API); generate.c is the decoding loop over
 * the public stepping API; statement.c parses statements into definition
 * calls. */
#ifndef GB_TRACE_IMPL_H
#define GB_TRACE_IMPL_H

#include <stdatomic.h>

#include "../tensor/base.h"
#include "trace.h"

#define GB__MAX_ARGS 8

/* ---- the graph ------------------------------------------------------------ */

/* The payload a node carries, by the third column of GB_TRACE_OP_LIST. */
typedef enum gb__tr_payload {
    GB__PAYLOAD_NONE,
    GB__PAYLOAD_GETTER, /* u.get: the module (NULL for named points) and call */
    GB__PAYLOAD_INDEX,  /* u.index: the parsed index expression */
    GB__PAYLOAD_DIM,    /* u.dim: dimension and keepdim of a reduction or softmax */
    GB__PAYLOAD_CONST,  /* u.constant: a tensor (referenced) */
    GB__PAYLOAD_APPLY,  /* u.apply: the function and its context */
    GB__PAYLOAD_FN,     /* u.fn: a function of GB_TRACE_FN_LIST and its parameters */
} gb__tr_payload;

extern const gb__tr_payload gb__tr_trace_op_payload[GB_TRACE_OP_COUNT];
extern const char *const gb__tr_trace_op_names[GB_TRACE_OP_COUNT];

typedef struct gb__tr_point gb__tr_point;

/* A node. Everything here is set by definition, or derived from it by
 * gb__tr_graph_compile; a run never writes a node. */
struct gb_val {
    gb_trace *tr;
    int id;
    gb_trace_op op;
    int nargs;
    gb_val *arg[GB__MAX_ARGS];
    gb_val *cond;      /* innermost enclosing gb_if */
    char *text;        /* module path, point path or log label */
    const char *file;
    int line;
    int column;        /* in its statement's line, from 1; 0: none (defined in C) */
    int invoke;        /* the invoke open at definition: the batch rows a getter sees, -1 for all */
    int uses;          /* nodes reading this one (as input or condition) */
    bool saved, poisoned;
    bool python;       /* a Python number in nnsight: a statement's literal, or arithmetic of them (printed as such) */
    union {
        struct {
            gb_module *module; /* in the trace's model: getters and skips of a module */
            int call;          /* getters: the call index, or GB_CALL_ALL; module calls: 1 for hook=True */
        } get;
        gb_index_expr *index;
        struct {
            int dim;
            bool keepdim;
        } dim;
        gb_tensor *constant;
        struct {
            gb_apply_fn fn;
            void *ctx;
        } apply;
        struct {
            gb_trace_fn fn;
            gb_fn_params *p; /* carved with the node */
        } fn;
    } u;

    /* derived by gb__tr_graph_compile */
    bool repeats;        /* downstream of a getter of every call (GB_CALL_ALL): runs again at each */
    bool pinned;         /* read by a node that repeats: kept for it */
    gb_val **users;      /* nodes reading this one: nusers in the trace's user list */
    int nusers;
    int point;           /* getters and skips: their point in tr->points */
    gb_val *next_getter; /* the next getter or skip of the same point */
    _Atomic(char *) desc; /* gb_val_text's, made when first asked (by any thread) */
};

/* A point of the model that getters name: one hook serves all its getters. */
struct gb__tr_point {
    gb_module *module;    /* in the trace's model; NULL for named points */
    const char *path;     /* named points: their path; else the first getter's module path */
    gb_event_kind kind;
    int call;
    gb_val *getters, *last; /* its getters and skips, definition order (next_getter) */
};

/* Nodes, and the small things they own (paths, index expressions), are
 * carved from blocks freed with the trace: a trace often defines hundreds,
 * and a malloc each was most of a definition's cost. */
enum { GB__BLOCK_NODES = 64, GB__CHUNK_BYTES = 8192 };
typedef struct gb__tr_block {
    struct gb__tr_block *next;
    int used;
    gb_val node[GB__BLOCK_NODES];
} gb__tr_block;
typedef struct gb__tr_chunk {
    struct gb__tr_chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} gb__tr_chunk;

/* ---- an execution -------------------------------------------------------- */

/* PyTorch's CPU generator (at::mt19937): torch.randint's draws. */
typedef struct gb__tr_mt19937 {
    uint32_t state[624];
    int next; /* the next word of state to temper; 624: regenerate first */
} gb__tr_mt19937;
void gb__tr_mt_seed(gb__tr_mt19937 *g, uint64_t seed);
/* torch.randint(p->i[0], p->i[1], p->i[2 .. p->n - 1]) drawn from g, or in
 * meta mode its shape only (nothing drawn). */
gb_tensor *gb__tr_randint(gb__tr_mt19937 *g, const gb_fn_params *p);

typedef enum gb__tr_state {
    GB__STATE_PENDING,
    GB__STATE_DONE,
    GB__STATE_SKIPPED, /* a condition was false, an input was skipped, or apply during scan */
    GB__STATE_RUNNING,
} gb__tr_state;

/* One node's state in one execution. */
typedef struct gb__tr_slot {
    gb__tr_state state;
    gb_values value;
    int uses_left;
    int pick;              /* INDEX of a tuple: the element picked, else -1 */
    bool is_tuple;         /* getters: the module returned a tuple */
    bool has_shape;        /* shape holds the last scan's or run's */
    int ndim;
    int64_t shape[GB_MAX_DIMS];
    gb_tensor *armed;      /* GRAD: the tensor whose gradient it waits for */
    gb_tensor **live_grad; /* GRAD: the gradient slot while its hook runs */
    gb_tensor *constant;   /* CONST in an exec of gb_exec_new: its own copy */
} gb__tr_slot;

/* A point of the graph in one execution: the hook's context. */
typedef struct gb__tr_xpoint {
    gb_exec *ex;
    const gb__tr_point *p;
    gb_module *module;    /* p's module in the execution's model */
    gb_values *live;      /* the event's values while it is being handled */
} gb__tr_xpoint;

struct gb_exec {
    gb_trace *tr;
    gb_module *model;
    bool own;             /* the trace's own execution (gb_trace_run's) */
    gb_exec *edits;       /* the editor's execution run with this one (owned unless own) */
    ptrdiff_t nslots;     /* nodes [0, nslots) have slots */
    gb__tr_slot *slot;
    gb__tr_xpoint *points;   /* [npoints], one per point of the graph */
    int npoints;
    /* What gb_exec_new copied of the trace's input (runs in other threads
     * must not share tensors with it), and gb_exec_set_*'s. */
    gb_tensor *base_input, *base_mask, *base_pos;
    int64_t base_batch;
    gb_tensor *mask, *pos;
    /* gb_exec_set_cancel's: asked at every module's output event of a run */
    bool (*cancelled)(void *ctx);
    void *cancel_ctx;

    /* a run, from begin to end */
    bool running, scanning, stop;
    bool kv_cache;        /* the run keeps a KV cache (generation) */
    bool meta;            /* begin entered meta mode (a scan), end leaves it */
    gb_hooks *hooks;
    gb_run *run;
    gb_tensor *run_input, *run_mask, *run_pos; /* the input, or the invokes batched */
    int64_t batch;        /* rows of run_input */
    gb_val **ready;       /* stb_ds array: binary min-heap by id of nodes to look at */
    gb_tensor **armed;    /* stb_ds array: tensors carrying our gradient hook (referenced) */
    int *armed_hook;      /* stb_ds array: the hook id on each */
    gb_status run_status; /* first node error */
    char *run_error;      /* its message: the model's own error paths may overwrite the thread's */
    gb_status status;     /* the run's outcome so far: GB_OK, GB_STOPPED or its first error */
    char *error;          /* that error's message */
    gb_tensor *generated; /* the last completed generation, [B, T + n] i64 */
    char skipped[256];    /* the last skip of this pass, named in a failure after it ("" none) */
    gb__tr_mt19937 rng;   /* torch.randint's generator, seeded when a run begins */
};

struct gb_trace {
    gb_module *model;
    gb_tensor *input, *mask, *pos;
    gb_tensor **invokes;  /* stb_ds array: each invoke's ids [b, t] (referenced) */
    int64_t *invoke_start; /* stb_ds array: each invoke's first row in the batch */
    int cur_invoke;       /* the open invoke, or -1 */
    int64_t pad_id;       /* left padding of shorter invokes, and of finished rows */
    gb_val **nodes;       /* stb_ds array, definition order */
    gb__tr_block *blocks;    /* the nodes' storage, newest first */
    gb__tr_chunk *chunks;    /* the nodes' strings and index expressions, newest first */
    gb_val **conds;       /* stb_ds stack of open gb_if */
    struct {
        char *key;
        gb_val *value;
    } *names;             /* stb_ds string map: names bound by statements */
    /* names no statement bound, asked of whoever defines the trace (sessions) */
    gb_val *(*resolve)(gb_trace *tr, const char *name, void *ctx);
    void *resolve_ctx;
    int def_column;       /* the column nodes defined now get (a statement's parser sets it) */
    gb_status def_status; /* first definition error */
    char *def_error;
    gb_trace *edits;      /* an editor whose interventions run first (gb_trace_use_edits) */
    bool validate;
    bool nan_check; /* gb_trace_set_nan_check: every run's gb_run_set_nan_check */
    uint64_t seed;  /* gb_trace_set_seed: torch.randint's */
    FILE *log;
    bool (*is_stop)(int64_t id, void *ctx); /* end-of-sequence tokens, or NULL */
    void *stop_ctx;

    /* derived by gb__tr_graph_compile, for nodes [0, compiled) (-1: not yet) */
    ptrdiff_t compiled;
    gb_val **user_list;   /* every node's users, one run of it per node */
    gb__tr_point *points;    /* [npoints] */
    int npoints;
    gb_val **grads;       /* stb_ds array: the GRAD nodes, definition order */

    gb_exec own;          /* the trace's own execution */
};

/* ---- graph.c -------------------------------------------------------------- */

/* Derive users, points and what repeats, unless done for these nodes. */
gb_status gb__tr_graph_compile(gb_trace *tr);
/* Free what the graph owns (not its execution). */
void gb__tr_graph_free(gb_trace *tr);
/* Whether op's nodes get their value from an event (or are constants);
 * asked per node on the pump's path, hence inline. */
static inline bool gb__tr_is_event_fed(gb_trace_op op) {
    return op == GB_TRACE_OP_OUTPUT || op == GB_TRACE_OP_INPUT || op == GB_TRACE_OP_POINT || op == GB_TRACE_OP_CONST ||
           op == GB_TRACE_OP_SKIP;
}
/* The trace's first definition error (GB_OK if none), and that error made
 * the thread's current one again (returns its status). */
gb_status gb__tr_trace_def_status(const gb_trace *tr);
gb_status gb__tr_trace_def_error(const gb_trace *tr);
/* The value bound to a name by an earlier statement ("h = ..."), or NULL. */
gb_val *gb__tr_trace_name(gb_trace *tr, const char *name, size_t len);
gb_status gb__tr_trace_set_name(gb_trace *tr, const char *name, gb_val *v);
gb_module *gb__tr_trace_model(const gb_trace *tr);
/* The column in its statement's line of the nodes defined from now on (0:
 * none), so that a run's error points at it ("site:line:column: ..."). */
void gb__tr_trace_set_column(gb_trace *tr, int column);

/* ---- ops.c ---------------------------------------------------------------- */

/* a OP b for the arithmetic ops (add, sub, mul, div, matmul), integer and
 * float values promoted as PyTorch does; a new reference or NULL. */
gb_tensor *gb__tr_arith(gb_trace_op op, gb_tensor *a, gb_tensor *b);
/* The reduction or softmax node v on x: integer sums stay integers, other
 * integer inputs become float32 first. */
gb_tensor *gb__tr_reduce(const gb_val *v, gb_tensor *x);
/* Function v->u.fn on the values x[0..v->nargs): its results pushed to out
 * (two for topk). */
gb_status gb__tr_fn(const gb_val *v, gb_tensor *const *x, gb_values *out);
/* The module-call node v run on x in model: in run (its events fire) for
 * hook=True, else in a run of its own (no events). */
gb_status gb__tr_call(const gb_val *v, gb_module *model, gb_run *run, gb_tensor *const *x, gb_values *out);

/* ---- batch.c -------------------------------------------------------------- */

/* The trace's input, mask and position ids, or its invokes' ids stacked
 * (left-padded token ids with a mask), as new references; *batch its rows. */
gb_status gb__tr_batch_inputs(const gb_trace *tr, gb_tensor **input, gb_tensor **mask, gb_tensor **pos, int64_t *batch);
/* Invoke i's rows of a batch value of `batch` rows (a new reference; t
 * itself when t is not batched or i < 0). */
gb_tensor *gb__tr_invoke_view(const gb_trace *tr, int64_t batch, int i, gb_tensor *t);
/* live with invoke i's rows replaced by value, as a new tensor. */
gb_tensor *gb__tr_invoke_replace(const gb_trace *tr, int64_t batch, int i, gb_tensor *live, gb_tensor *value);

#endif
