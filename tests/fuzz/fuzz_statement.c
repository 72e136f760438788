/* nnsight-syntax statements (trace/statement.c): the input is up to four
 * statements, one per line, defined on a small GPT-2 tree and then scanned
 * (a shape-only run, which executes every node the statements built).
 * Every input must define cleanly or fail with a status and a message. Run
 * with -max_len=65536: deep nesting needs long inputs. See tests/fuzz/fuzz.h. */
#include "fuzz.h"

int gb_fuzz_statement(const uint8_t *data, size_t size);

int gb_fuzz_statement(const uint8_t *data, size_t size) {
    static gb_module *model;
    static gb_tensor *ids;
    if (!model) {
        gb_gpt2_config cfg = {.vocab_size = 16, .n_positions = 8, .n_embd = 8, .n_layer = 2, .n_head = 2,
                              .layer_norm_epsilon = 1e-5f, .activation_function = "gelu_new"};
        model = gb_gpt2_new(&cfg);
        ids = gb_zeros(2, (int64_t[]){1, 4}, GB_DTYPE_I64);
        GB_FUZZ_CHECK(model && ids);
    }
    char *text = gb_fuzz_text(data, size);
    if (!text) return 0;
    gb_trace *tr = gb_trace_new(model, ids);
    gb_trace_set_log(tr, NULL);
    char *line, *save = NULL;
    for (int i = 0; i < 4 && (line = strtok_r(i ? NULL : text, "\n", &save)); i++) {
        gb_val *v = NULL;
        gb_status st = gb_trace_statement(tr, line, "fuzz", i + 1, &v);
        GB_FUZZ_CHECK((st == GB_OK) == (v != NULL));
        if (st != GB_OK) GB_FUZZ_FAILED_CLEANLY();
    }
    free(gb_trace_graph(tr));
    (void)gb_trace_scan(tr);
    gb_trace_free(tr);
    free(text);
    return 0;
}

GB_FUZZ_ENTRY(statement)
