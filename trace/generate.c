/* What generation (the decoding loop of lm/, above trace) reads from a
 * trace and leaves in an execution: stop tokens, pad id, the validation
 * setting, and the generated ids (nnsight's generator.output). */
#include "trace_impl.h"

void gb_trace_set_stop_tokens(gb_trace *tr, bool (*is_stop)(int64_t id, void *ctx), void *ctx) {
    tr->is_stop = is_stop;
    tr->stop_ctx = ctx;
}

void gb_trace_stop_tokens(const gb_trace *tr, bool (**is_stop)(int64_t id, void *ctx), void **ctx) {
    *is_stop = tr->is_stop;
    *ctx = tr->stop_ctx;
}

int64_t gb_trace_pad_id(const gb_trace *tr) { return tr->pad_id; }
bool gb_trace_validates(const gb_trace *tr) { return tr->validate; }
gb_trace *gb_exec_trace(const gb_exec *ex) { return ex->tr; }
gb_module *gb_trace_module(const gb_trace *tr) { return tr->model; }

void gb_exec_set_generated(gb_exec *ex, gb_tensor *ids) {
    gb_tensor_free(ex->generated);
    ex->generated = ids;
}

gb_tensor *gb_exec_generated(const gb_exec *ex) {
    if (!ex->generated) return gb__fail_null(GB_ERR_STATE, "trace_generated: no gb_trace_generate has completed");
    return ex->generated;
}

gb_tensor *gb_trace_generated(const gb_trace *tr) { return gb_exec_generated(&tr->own); }
