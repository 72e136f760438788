// A C++ program using glassbox through glassbox.h alone (built with g++ by
// `make check`, run by tests/test_embed.c): the headers' extern "C" guards,
// GB_AT in C++, and the tensor op gb_log beside the trace's gb_trace_log.
// Usage: embed MODEL ID...; prints the top next-token id after the ids, log(1)
// and the library's version.
#include <cstdio>
#include <cstdlib>

#include "glassbox.h"

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *path = argv[1];
    gb_model *m = GB_AT(gb_model_open(path, NULL));
    if (!m) {
        std::fprintf(stderr, "%s\n", gb_last_error());
        return 1;
    }
    int64_t n = argc - 2, *ids = new int64_t[n];
    for (int64_t i = 0; i < n; i++) ids[i] = std::atoll(argv[2 + i]);
    const int64_t shape[] = {1, n};
    gb_tensor *input = gb_from_data(ids, 2, shape, GB_DTYPE_I64);
    gb_trace *tr = gb_trace_new(gb_model_module(m), input);
    gb_val *top = gb_save(gb_val_argmax(gb_val_index(gb_output(tr, "lm_head"), "[0, -1]"), -1, false));
    gb_trace_set_log(tr, NULL);
    gb_trace_log("logits", gb_output(tr, "lm_head"));
    int rc = 1;
    if (GB_AT(gb_trace_run(tr)) == GB_OK) {
        gb_tensor *t = gb_value(top), *one = gb_ones(1, shape + 1, GB_DTYPE_F32), *zero = gb_log(one); // log(1) = 0
        std::printf("top %lld\nlog(1) %g\n%s\n", (long long)*(const int64_t *)gb_tensor_data(t),
                    (double)*(const float *)gb_tensor_data(zero), gb_version());
        gb_tensor_free(zero), gb_tensor_free(one); // t is borrowed from the trace
        rc = 0;
    } else {
        std::fprintf(stderr, "%s\n", gb_last_error());
    }
    gb_trace_free(tr);
    gb_tensor_free(input);
    gb_model_free(m);
    delete[] ids;
    return rc;
}
