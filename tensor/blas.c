/* OpenBLAS, loaded at run time with a kernel chosen from the CPU's features
 * and kept on one thread; the thread count of glassbox's OpenMP loops.
 *
 * Why dlopen and not -lopenblas. Debian's OpenBLAS is built with DYNAMIC_ARCH:
 * it carries kernels for many CPUs and picks one in a constructor that runs
 * when the library is loaded, from OPENBLAS_CORETYPE if set, else from its own
 * CPU detection. 0.3.21 (Debian 12) detects some AVX-512 Xeons as "Prescott"
 * and then runs SSE3 kernels, about 5x slower in sgemm. The choice is fixed
 * once the constructor has run, so glassbox must set OPENBLAS_CORETYPE before
 * the library loads, which only a run-time load can guarantee: a linked
 * library would be loaded (and its kernel fixed) before main. So on first
 * use, glassbox
 *   1. if the user has not set OPENBLAS_CORETYPE, picks a core type from the
 *      table below using __builtin_cpu_supports (which also checks that the
 *      OS enables the AVX/AVX-512 register state, so a kernel the CPU or OS
 *      cannot run is never forced), and if the user has not set
 *      OPENBLAS_NUM_THREADS, sets it to 1 (see Threads); loads the library;
 *      and restores the environment as it was (both are read only at load);
 *   2. dlopens libopenblas.so.0 (or libopenblas.so) and resolves the few
 *      functions it uses, with the prototypes of <cblas.h>.
 * A user's OPENBLAS_CORETYPE always wins. If the process already has OpenBLAS
 * loaded (linked by someone else), dlopen returns that copy and its kernel is
 * what gb_blas_kernel reports. A library that cannot be loaded is an error of
 * the first op that needs it (GB_ERR_UNSUPPORTED), never a crash.
 *
 * Threads: one pool, libgomp's. glassbox's own loops are OpenMP (libgomp).
 * Debian's default OpenBLAS (libopenblas0-pthread) has a thread pool of its
 * own, and on a machine with as many threads as cores the two starve each
 * other: after a parallel region libgomp's idle workers spin for a few
 * milliseconds (OMP_WAIT_POLICY unset) on the cores OpenBLAS's workers need
 * next. Measured on the project's 2-core VM, GPT-2 124M forward of 16 tokens
 * (best of 10-15; interleaved runs):
 *   - both pools, as before: 99-141 ms (55-66 ms with OMP_WAIT_POLICY=passive);
 *   - Debian's OpenMP build of OpenBLAS (libopenblas0-openmp), which threads
 *     on libgomp's pool too: 190-230 ms, worse (not investigated further);
 *   - OpenBLAS on one thread, each large product split by glassbox over its
 *     OpenMP threads into blocks of rows or columns (gb__ts_gemm, matmul.c):
 *     50-58 ms, with no environment variable and no extra package. sgemm
 *     1024^3 at 2 threads: 180-195 GFLOP/s against OpenBLAS's own threading's
 *     193-203 (each block repacks the operand it reads whole); a 4x1024 MLP's
 *     training step at 2 threads: 12-15 ms, was 21-90 ms.
 * glassbox does the last: at load it keeps OpenBLAS from starting workers
 * (OPENBLAS_NUM_THREADS=1 unless the user set it) and sets its thread count
 * to 1, which also holds for the OpenMP build (gb__ts_gemm keeps that build
 * single-threaded outside parallel regions as well; see matmul.c). A user's
 * OPENBLAS_NUM_THREADS still decides how many workers OpenBLAS creates, but
 * glassbox does not use them; an OpenBLAS shared with other code in the
 * process is left on one thread. What remains is OpenMP's own spinning when
 * another process keeps a core busy: the same forward then takes 109-125 ms
 * (104-119 passive, 115-144 on one thread, 127-153 before this change).
 *
 * The count: gb_set_num_threads sets glassbox's count and this thread's
 * OpenMP count (omp_set_num_threads); loops pass num_threads(gb__threads()).
 * The default is OpenMP's (OMP_NUM_THREADS, or all cores). */
#include "blas.h"

#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- CPU features and the kernel table ---------------------------------- */

unsigned gb__ts_cpu_features(void) {
    unsigned f = 0;
    __builtin_cpu_init();
#define GB__X(e, s) \
    if (__builtin_cpu_supports(s)) f |= GB__CPU(e);
    GB__CPU_FEATURE_LIST(GB__X)
#undef GB__X
    return f;
}

/* Each row needs all the features of the rows below it that its kernels
 * also use: OpenBLAS's SkylakeX and Cooperlake targets reuse Haswell's
 * AVX2/FMA kernels for the routines they do not rewrite. First match wins. */
#define GB__CORE_SANDYBRIDGE GB__CPU(AVX)
#define GB__CORE_HASWELL (GB__CORE_SANDYBRIDGE | GB__CPU(AVX2) | GB__CPU(FMA))
#define GB__CORE_SKYLAKEX \
    (GB__CORE_HASWELL | GB__CPU(AVX512F) | GB__CPU(AVX512CD) | GB__CPU(AVX512BW) | GB__CPU(AVX512DQ) | GB__CPU(AVX512VL))
#define GB__CORE_COOPERLAKE (GB__CORE_SKYLAKEX | GB__CPU(AVX512BF16))

static const struct {
    const char *coretype;
    unsigned needs;
} gb__ts_blas_cores[] = {
    {"Cooperlake", GB__CORE_COOPERLAKE},
    {"SkylakeX", GB__CORE_SKYLAKEX},
    {"Haswell", GB__CORE_HASWELL},
    {"Sandybridge", GB__CORE_SANDYBRIDGE},
};

const char *gb__ts_blas_coretype_for(unsigned features) {
    for (size_t i = 0; i < sizeof gb__ts_blas_cores / sizeof gb__ts_blas_cores[0]; i++)
        if ((features & gb__ts_blas_cores[i].needs) == gb__ts_blas_cores[i].needs) return gb__ts_blas_cores[i].coretype;
    return NULL; /* older CPUs: OpenBLAS's own detection is as good as ours */
}

/* ---- loading ------------------------------------------------------------ */

gb_status gb__ts_blas_open(const char *const *names, gb__ts_blas *out) {
    memset(out, 0, sizeof *out);
    char tried[512] = "";
    const char *why = "no library names given";
    for (int i = 0; names[i] && !out->handle; i++) {
        out->handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (out->handle) {
            out->path = names[i];
        } else {
            why = dlerror();
            size_t n = strlen(tried);
            snprintf(tried + n, sizeof tried - n, "%s%s", n ? ", " : "", names[i]);
        }
    }
    if (!out->handle)
        return gb__fail(GB_ERR_UNSUPPORTED,
                        "blas: cannot load OpenBLAS (tried %s): %s; install it (Debian: apt-get install libopenblas0)",
                        tried, why ? why : "unknown dlopen error");
    /* dlsym returns void*; POSIX guarantees it converts to a function pointer. */
#define GB__SYM(field, sym)                                                                                       \
    do {                                                                                                          \
        void *p_ = dlsym(out->handle, sym);                                                                       \
        if (!p_) {                                                                                                \
            gb_status st_ = gb__fail(GB_ERR_UNSUPPORTED, "blas: %s has no symbol %s (is it OpenBLAS?)", out->path, \
                                     sym);                                                                        \
            gb__ts_blas_close(out);                                                                                  \
            return st_;                                                                                           \
        }                                                                                                         \
        memcpy(&out->field, &p_, sizeof p_);                                                                      \
    } while (0)
    GB__SYM(sgemm, "cblas_sgemm");
    GB__SYM(set_num_threads, "openblas_set_num_threads");
    GB__SYM(get_num_threads, "openblas_get_num_threads");
    GB__SYM(get_corename, "openblas_get_corename");
    GB__SYM(get_config, "openblas_get_config");
#undef GB__SYM
    const char *config = out->get_config();
    out->openmp = config && strstr(config, "USE_OPENMP");
    return GB_OK;
}

void gb__ts_blas_close(gb__ts_blas *b) {
    if (b->handle) dlclose(b->handle);
    memset(b, 0, sizeof *b);
}

static pthread_once_t gb__ts_blas_once = PTHREAD_ONCE_INIT;
static gb__ts_blas gb__ts_blas_lib;
static bool gb__ts_blas_ok; /* written once inside pthread_once, read after it */
static gb_status gb__ts_blas_status;
static char gb__ts_blas_error[1024];

/* An environment variable glassbox sets for OpenBLAS's constructor when the
 * user has not (an empty value counts as not set), and puts back after. */
typedef struct gb__ts_env_default {
    const char *name;
    char *user; /* the user's value, restored as it was (even ""), or NULL */
    bool set;
} gb__ts_env_default;

static gb__ts_env_default gb__ts_env_push(const char *name, const char *value) {
    const char *user = getenv(name);
    gb__ts_env_default e = {name, user ? strdup(user) : NULL, false};
    if (value && !(user && *user)) e.set = setenv(name, value, 1) == 0;
    return e;
}

static void gb__ts_env_pop(gb__ts_env_default *e) {
    if (e->set && e->user) setenv(e->name, e->user, 1);
    else if (e->set) unsetenv(e->name);
    free(e->user);
}

static void gb__ts_blas_load(void) {
    static const char *const names[] = {"libopenblas.so.0", "libopenblas.so", NULL};
    const char *core = gb__ts_blas_coretype_for(gb__ts_cpu_features());
    gb__ts_env_default env[] = {gb__ts_env_push("OPENBLAS_CORETYPE", core), gb__ts_env_push("OPENBLAS_NUM_THREADS", "1")};
    gb_status st = gb__ts_blas_open(names, &gb__ts_blas_lib);
    bool core_set = env[0].set;
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++) gb__ts_env_pop(&env[i]);
    if (st != GB_OK) {
        gb__ts_blas_status = st;
        snprintf(gb__ts_blas_error, sizeof gb__ts_blas_error, "%s", gb_last_error());
        return;
    }
    if (core_set) snprintf(gb__ts_blas_lib.coretype_set, sizeof gb__ts_blas_lib.coretype_set, "%s", core);
    /* The OpenMP build's openblas_set_num_threads also sets this thread's
     * OpenMP thread count: put the caller's back. */
    int icv = omp_get_max_threads();
    gb__ts_blas_lib.set_num_threads(1);
    omp_set_num_threads(icv);
    gb__ts_blas_ok = true;
}

const gb__ts_blas *gb__ts_blas_get(void) {
    pthread_once(&gb__ts_blas_once, gb__ts_blas_load);
    if (!gb__ts_blas_ok) return gb__fail_null(gb__ts_blas_status, "%s", gb__ts_blas_error);
    return &gb__ts_blas_lib;
}

const char *gb_blas_kernel(void) {
    const gb__ts_blas *b = gb__ts_blas_get();
    return b ? b->get_corename() : NULL;
}

/* ---- threads ------------------------------------------------------------ */

static atomic_int gb__ts_nthreads; /* 0 until first asked or set */

int gb__threads(void) {
    int n = atomic_load(&gb__ts_nthreads);
    if (n > 0) return n;
    /* Inside a user's parallel region omp_get_max_threads describes that
     * region's nesting, not the machine: answer without remembering it. */
    if (omp_in_parallel()) return omp_get_num_procs();
    n = omp_get_max_threads();
    if (n < 1) n = 1;
    int expected = 0;
    atomic_compare_exchange_strong(&gb__ts_nthreads, &expected, n);
    return atomic_load(&gb__ts_nthreads);
}

void gb_set_num_threads(int n) {
    if (n < 1) n = omp_get_num_procs();
    atomic_store(&gb__ts_nthreads, n);
    omp_set_num_threads(n);
}

int gb_get_num_threads(void) { return gb__threads(); }
