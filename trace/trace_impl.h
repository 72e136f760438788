/* Private to trace/: what the statement parser (statement.c) needs of a
 * trace beyond the public API. */
#ifndef GB_TRACE_IMPL_H
#define GB_TRACE_IMPL_H

#include "trace.h"

/* The value bound to a name by an earlier statement ("h = ..."), or NULL. */
gb_val *gb__trace_name(gb_trace *tr, const char *name, size_t len);
gb_status gb__trace_set_name(gb_trace *tr, const char *name, gb_val *v);
gb_module *gb__trace_model(const gb_trace *tr);
/* The trace's first definition error (GB_OK if none), and that error made
 * the thread's current one again (returns its status). */
gb_status gb__trace_def_status(const gb_trace *tr);
gb_status gb__trace_def_error(const gb_trace *tr);

#endif
