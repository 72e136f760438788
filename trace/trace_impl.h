/* Private to trace/: the graph's layout (trace.c defines and runs it;
 * batch.c batches invokes and generates; statement.c parses statements). */
#ifndef GB_TRACE_IMPL_H
#define GB_TRACE_IMPL_H

#include "../tensor/tensor_impl.h"
#include "trace.h"

#define GB__MAX_ARGS 8

typedef enum gb__state {
    GB__STATE_PENDING,
    GB__STATE_DONE,
    GB__STATE_SKIPPED, /* a condition was false, an input was skipped, or apply during scan */
    GB__STATE_RUNNING,
} gb__state;

typedef struct gb__point gb__point;

struct gb_val {
    gb_trace *tr;
    int id;
    gb_trace_op op;
    gb_val *arg[GB__MAX_ARGS];
    int nargs;
    gb_val *cond;      /* innermost enclosing gb_if */
    char *text;        /* module path, index expression or log label */
    gb_module *module; /* getters and skips: the module text names */
    int invoke;        /* getters: the invoke whose batch rows they see, -1 for all */
    gb_index_expr *index; /* INDEX and SET_INDEX */
    int pick;          /* INDEX on a tuple: the element, else -1 */
    int call, dim;
    bool keepdim;
    gb_tensor *constant;
    gb_apply_fn fn;
    void *ctx;
    const char *file;
    int line;
    bool saved, poisoned;
    bool repeats;      /* downstream of a getter of every call (GB_CALL_ALL): runs again at each */
    bool pinned;       /* read by a node that repeats: kept for it */
    char *desc;        /* gb_val_text's, made when first asked */
    gb_val **users;    /* nodes reading this one (as input or condition): nusers in the trace's user list */
    int nusers;

    /* run state */
    gb__state state;
    gb_values value;
    bool is_tuple;
    int uses, uses_left;
    gb__point *point;      /* getters and skips: their point */
    gb_val *next_getter;   /* the next getter or skip of the same point */
    gb_tensor *armed;      /* GRAD: the tensor whose gradient it waits for */
    gb_tensor **live_grad; /* GRAD: the gradient slot while its hook runs */
    int ndim;
    int64_t shape[GB_MAX_DIMS];
    bool has_shape;
};

/* A point of the model that getters name: one hook serves all its getters. */
typedef struct gb__point_key {
    gb_module *module;
    int kind, call;
} gb__point_key;

struct gb__point {
    gb_trace *tr;
    gb_module *module;
    char *path;           /* for named points */
    gb_event_kind kind;
    int call;
    gb_val *getters, *last; /* its getters and skips, definition order (next_getter) */
    gb_values *live;      /* the event's values while it is being handled */
};

/* Nodes, and the small things they own (paths, index expressions), are
 * carved from blocks freed with the trace: a trace often defines hundreds,
 * and a malloc each was most of a definition's cost. */
enum { GB__BLOCK_NODES = 64, GB__CHUNK_BYTES = 8192 };
typedef struct gb__block {
    struct gb__block *next;
    int used;
    gb_val node[GB__BLOCK_NODES];
} gb__block;
typedef struct gb__chunk {
    struct gb__chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} gb__chunk;

struct gb_trace {
    gb_module *model;
    gb_tensor *input, *mask, *pos;
    gb_tensor **invokes;  /* stb_ds array: each invoke's ids [b, t] (referenced) */
    int64_t *invoke_start; /* stb_ds array: each invoke's first row in the batch */
    int cur_invoke;       /* the open invoke, or -1 */
    int64_t pad_id;       /* left padding of shorter invokes */
    gb_tensor *run_input, *run_mask; /* what the current run feeds: the input, or the invokes batched */
    int64_t batch;        /* rows of run_input */
    gb_val **nodes;       /* stb_ds array, definition order */
    gb__block *blocks;    /* the nodes' storage, newest first */
    gb__chunk *chunks;    /* the nodes' strings and index expressions, newest first */
    gb_val **user_list;   /* every node's users, one run of it per node (built per run) */
    gb_val **ready;       /* stb_ds array: binary min-heap by id of nodes to look at */
    gb_val **conds;       /* stb_ds stack of open gb_if */
    gb__point *points;    /* [npoints], rebuilt per run */
    int npoints;
    struct {
        gb__point_key key;
        gb__point *value;
    } *point_at;          /* stb_ds hash map: the module points among them */
    gb_tensor **armed;    /* stb_ds array: tensors carrying our gradient hook (referenced) */
    int *armed_hook;      /* stb_ds array: the hook id on each */
    bool validate, scanning, stop;
    FILE *log;
    struct {
        char *key;
        gb_val *value;
    } *names;             /* stb_ds string map: names bound by statements */
    gb_status def_status; /* first definition error */
    char *def_error;
    gb_trace *edits;      /* an editor whose interventions run first (gb_trace_use_edits) */
    int max_new;          /* gb_trace_generate: tokens to add */
    bool (*is_stop)(int64_t id, void *ctx); /* end-of-sequence tokens, or NULL */
    void *stop_ctx;
    gb_tensor *generated; /* its result, [B, T + max_new] i64 */
    gb_status run_status; /* first error during a run */
    char *run_error;      /* its message: the model's own error paths may overwrite the thread's */
};

/* ---- batch.c: inputs of a run, and generation ---------------------------- */

/* The run's input: the trace's, or its invokes' stacked (left-padded token
 * ids with a mask). Sets run_input, run_mask and batch. */
gb_status gb__batch_inputs(gb_trace *tr);
/* Invoke i's rows of a batch value (a new reference; t itself when t is not
 * batched or i < 0). */
gb_tensor *gb__invoke_view(const gb_trace *tr, int i, gb_tensor *t);
/* live with invoke i's rows replaced by value, as a new tensor. */
gb_tensor *gb__invoke_replace(const gb_trace *tr, int i, gb_tensor *live, gb_tensor *value);
/* Position ids counted from a [B, T] attention mask, as Hugging Face's generate. */
gb_tensor *gb__positions_from_mask(gb_tensor *mask);
/* Greedy decoding after the prompt pass whose outputs are in *out. */
gb_status gb__generate(gb_trace *tr, gb_run *run, gb_values *out);

/* ---- statement.c ------------------------------------------------------------ */


/* The value bound to a name by an earlier statement ("h = ..."), or NULL. */
gb_val *gb__trace_name(gb_trace *tr, const char *name, size_t len);
gb_status gb__trace_set_name(gb_trace *tr, const char *name, gb_val *v);
gb_module *gb__trace_model(const gb_trace *tr);
/* The trace's first definition error (GB_OK if none), and that error made
 * the thread's current one again (returns its status). */
gb_status gb__trace_def_status(const gb_trace *tr);
gb_status gb__trace_def_error(const gb_trace *tr);

#endif
