/* matmul and linear: strided batched sgemm through OpenBLAS.
 *
 * Every operand is described as a gb__ts_mat: a [rows, cols] matrix with element
 * strides, repeated over the broadcast batch shape. sgemm takes a matrix whose
 * column stride is 1 ("N") or whose row stride is 1 ("T", a transposed view),
 * so transposed views (x.mT, the weight of linear) go to OpenBLAS without a
 * copy; anything else is copied once with gb__ts_dense. When the right operand
 * has no batch dims and the left one's batch dims are laid out like more rows
 * ([B, S, in] @ [in, out]), the batch folds into a single large sgemm, which
 * is what makes linear on activations fast. Backward is two more products:
 * dA += dout @ B^T and dB += A^T @ dout, with beta = 1 accumulating both the
 * gradient and, over broadcast batch dims, the batch reduction.
 *
 * Threads are glassbox's, not OpenBLAS's (which runs on one; blas.c says
 * why): gb__ts_gemm hands each OpenMP thread whole products of a batch, or a
 * block of rows or columns of one product, each one single-threaded sgemm. */
#include "lowp.h"
#include "simd.h"

#include <limits.h>
#include <omp.h>
#include <string.h>

gb_tensor *gb__ts_dense(const gb_tensor *t) {
    if (gb_tensor_is_contiguous(t)) return gb_tensor_ref((gb_tensor *)t);
    gb_tensor *d = gb_empty(t->ndim, t->shape, t->dtype);
    if (!d) return NULL;
    gb__ts_copy_into(d, t);
    return d;
}

gb_tensor *gb__ts_dense_f32(const gb_tensor *t) {
    if (t->dtype == GB_DTYPE_F32) return gb__ts_dense(t);
    gb_tensor *d = gb_empty(t->ndim, t->shape, GB_DTYPE_F32);
    if (!d) return NULL;
    gb__ts_copy_into(d, t);
    return d;
}

int gb__ts_blas_pin(const gb__ts_blas *blas, bool par) {
    if (par || !blas->openmp || omp_in_parallel()) return 0;
    int icv = omp_get_max_threads();
    omp_set_num_threads(1);
    return icv;
}

void gb__ts_blas_unpin(int pinned) {
    if (pinned > 0) omp_set_num_threads(pinned);
}

/* ---- strided batched gemm ----------------------------------------------- */

gb__ts_mat gb__ts_mat_t(gb__ts_mat m) {
    int64_t r = m.rows, s = m.rs;
    m.rows = m.cols, m.rs = m.cs;
    m.cols = r, m.cs = s;
    return m;
}

bool gb__ts_mat_blas_layout(const gb__ts_mat *m, CBLAS_TRANSPOSE *trans, int *ld) {
    int64_t r = m->rows, c = m->cols, l;
    /* Strides of size-1 dims are never followed, so they do not matter. */
    if ((c <= 1 || m->cs == 1) && (r <= 1 || m->rs >= (c > 1 ? c : 1))) {
        *trans = CblasNoTrans;
        l = r <= 1 ? (c > 1 ? c : 1) : m->rs;
    } else if ((r <= 1 || m->rs == 1) && (c <= 1 || m->cs >= (r > 1 ? r : 1))) {
        *trans = CblasTrans; /* memory holds the row-major [cols, rows] matrix */
        l = c <= 1 ? (r > 1 ? r : 1) : m->cs;
    } else {
        return false;
    }
    if (l > INT_MAX) return false;
    *ld = (int)l;
    return true;
}

/* Products below this many multiply-adds (m*n*k over the whole batch) run
 * on the calling thread: waking a second thread costs about as much as
 * they take. OpenBLAS 0.3.21's own cut-off is the same (SMP_THRESHOLD_MIN *
 * GEMM_MULTITHREAD_THRESHOLD). */
#define GB__GEMM_PAR_MIN (65536.0 * 4)
/* Blocks of a split product are multiples of this many rows or columns: a
 * 64-byte line of C, and a multiple of OpenBLAS's sgemm unrolls. */
#define GB__GEMM_BLOCK 16

static int64_t gb__ts_batch_offset(int64_t i, int nbd, const int64_t *bshape, const int64_t *bstride) {
    int64_t off = 0;
    for (int d = nbd - 1; d >= 0; d--) {
        off += (i % bshape[d]) * bstride[d];
        i /= bshape[d];
    }
    return off;
}

/* Whether batch i is the first to write its C: every dim that C broadcasts
 * over (a reduction) is at index 0. Later batches add to what it wrote. */
static bool gb__ts_batch_first(int64_t i, int nbd, const int64_t *bshape, const int64_t *cstride) {
    for (int d = nbd - 1; d >= 0; d--) {
        if (cstride[d] == 0 && i % bshape[d] != 0) return false;
        i /= bshape[d];
    }
    return true;
}

/* A product split into tasks: task t is block t % nsplit (of nsplit along
 * M when by_rows, else along N) of batch t / nsplit, or, when the batches
 * reduce into one C, of every batch in order. Blocks of C are disjoint, so
 * tasks run in parallel. */
typedef struct gb__ts_gemm_job {
    const gb__ts_blas *blas;
    CBLAS_TRANSPOSE ta, tb;
    int lda, ldb, ldc;
    int64_t m, n, k;
    gb__ts_mat a, b, c;
    float beta;
    int nbd;
    const int64_t *bshape;
    int64_t nb;
    bool reduces, by_rows;
    int64_t nsplit;
} gb__ts_gemm_job;

/* Block s of batch i: one sgemm. */
static void gb__ts_gemm_block(const gb__ts_gemm_job *j, int64_t i, int64_t s) {
    int64_t len = j->by_rows ? j->m : j->n, nblk = (len + GB__GEMM_BLOCK - 1) / GB__GEMM_BLOCK;
    int64_t lo = s * nblk / j->nsplit * GB__GEMM_BLOCK, hi = (s + 1) * nblk / j->nsplit * GB__GEMM_BLOCK;
    if (hi > len) hi = len;
    if (lo >= hi) return;
    const float *a = j->a.p + gb__ts_batch_offset(i, j->nbd, j->bshape, j->a.bstride);
    const float *b = j->b.p + gb__ts_batch_offset(i, j->nbd, j->bshape, j->b.bstride);
    float *c = j->c.p + gb__ts_batch_offset(i, j->nbd, j->bshape, j->c.bstride);
    int64_t m = j->m, n = j->n;
    if (j->by_rows) { /* rows lo..hi of A and C; a transposed A holds them as columns */
        a += j->ta == CblasNoTrans ? lo * j->lda : lo;
        c += lo * j->ldc;
        m = hi - lo;
    } else { /* columns lo..hi of B and C; a transposed B holds them as rows */
        b += j->tb == CblasNoTrans ? lo : lo * j->ldb;
        c += lo;
        n = hi - lo;
    }
    float beta = j->beta == 1.0f || gb__ts_batch_first(i, j->nbd, j->bshape, j->c.bstride) ? j->beta : 1.0f;
    j->blas->sgemm(CblasRowMajor, j->ta, j->tb, (int)m, (int)n, (int)j->k, 1.0f, a, j->lda, b, j->ldb, beta, c,
                   j->ldc);
}

static void gb__ts_gemm_run(const gb__ts_gemm_job *j, int64_t t) {
    int64_t i0 = j->reduces ? 0 : t / j->nsplit, i1 = j->reduces ? j->nb : i0 + 1;
    for (int64_t i = i0; i < i1; i++) gb__ts_gemm_block(j, i, t % j->nsplit);
}

/* ---- few rows: matrix-vector products ------------------------------------ */

/* Products of at most this many rows (a token per sequence while decoding)
 * read B directly instead of through sgemm: OpenBLAS 0.3.21 packs all of B
 * for every call, which for one row costs twice the product itself (84% of
 * GPT-2 124M's decoding time went to packing). */
#define GB__GEMV_ROWS 4
/* Columns of C per task, a multiple of 16 floats: one contiguous span of B
 * per thread and row (narrower interleaved spans defeat the prefetchers,
 * lowp.c found). */
#define GB__GEMV_LANES 16

/* C[m, n0..n1] = beta C + A[m, k] @ B[k, n0..n1] with B row-major (unit
 * column stride): rows of B scaled and added, each C element summed over k
 * in order. */
GB__CLONES static void gb__ts_gemv_rows(float *c, int64_t ldc, const float *a, int64_t lda, const float *b, int64_t ldb,
                                     int64_t m, int64_t k, int64_t n0, int64_t n1, float beta) {
    for (int64_t i = 0; i < m; i++) {
        float *ci = c + i * ldc; /* [n] */
        if (beta == 0.0f)
            for (int64_t j = n0; j < n1; j++) ci[j] = 0.0f;
        else if (beta != 1.0f)
            for (int64_t j = n0; j < n1; j++) ci[j] *= beta;
    }
    /* Four rows of B per pass over C: C's elements stay in registers, and
     * the additions keep their order (p ascending). */
    int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
        const float *b0 = b + p * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb; /* [n] each */
        for (int64_t i = 0; i < m; i++) {
            const float *ai = a + i * lda + p;
            float x0 = ai[0], x1 = ai[1], x2 = ai[2], x3 = ai[3], *ci = c + i * ldc;
            for (int64_t j = n0; j < n1; j++) ci[j] = (((ci[j] + x0 * b0[j]) + x1 * b1[j]) + x2 * b2[j]) + x3 * b3[j];
        }
    }
    for (; p < k; p++) {
        const float *bp = b + p * ldb; /* [n] */
        for (int64_t i = 0; i < m; i++) {
            float x = a[i * lda + p], *ci = c + i * ldc;
            for (int64_t j = n0; j < n1; j++) ci[j] += x * bp[j];
        }
    }
}

/* Rows of B per block of gb__ts_gemv_rows_blocked. */
#define GB__GEMV_KBLOCK 64

/* gb__ts_gemv_rows for a large B, by blocks of GB__GEMV_KBLOCK rows of B
 * rather than spans of its columns: each thread reads whole rows, one
 * contiguous stretch of B, where a span of columns is a few KB of every row
 * (N floats apart), too short a stream for the hardware prefetchers
 * (GPT-2's Conv1D weights decoded at 69% of the read bandwidth, nn.Linear's
 * [N, K] weights, read row by row, at 100%). Each block's sums go to a
 * buffer of its own; then C = beta C + the blocks' sums added in block
 * order. The blocks do not depend on the thread count, so neither do the
 * results. False when the buffer cannot be had (the caller falls back). */
static bool gb__ts_gemv_rows_blocked(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta) {
    int64_t m = c->rows, n = c->cols, k = a->cols, nkb = (k + GB__GEMV_KBLOCK - 1) / GB__GEMV_KBLOCK;
    gb_tensor *sums = gb_empty(1, (int64_t[]){nkb * m * n}, GB_DTYPE_F32);
    if (!sums) return false;
    float *s = gb_tensor_data(sums); /* [nkb, m, n] */
    int threads = gb__threads();
    if (threads > nkb) threads = (int)nkb;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
#pragma omp for schedule(static)
        for (int64_t kb = 0; kb < nkb; kb++) {
            int64_t p0 = kb * GB__GEMV_KBLOCK, kn = k - p0 < GB__GEMV_KBLOCK ? k - p0 : GB__GEMV_KBLOCK;
            gb__ts_gemv_rows(s + kb * m * n, n, a->p + p0 * a->cs, a->rs, b->p + p0 * b->rs, b->rs, m, kn, 0, n, 0.0f);
        }
        int64_t spans = (n + GB__GEMV_LANES - 1) / GB__GEMV_LANES;
#pragma omp for schedule(static)
        for (int64_t sp = 0; sp < spans; sp++) {
            int64_t j0 = sp * GB__GEMV_LANES, j1 = j0 + GB__GEMV_LANES < n ? j0 + GB__GEMV_LANES : n;
            for (int64_t i = 0; i < m; i++) {
                float *ci = c->p + i * c->rs; /* [n] */
                for (int64_t j = j0; j < j1; j++) ci[j] = beta == 0.0f ? 0.0f : beta * ci[j];
                for (int64_t kb = 0; kb < nkb; kb++)
                    for (int64_t j = j0; j < j1; j++) ci[j] += s[(kb * m + i) * n + j];
            }
        }
    }
    gb_tensor_free(sums);
    return true;
}

/* The same with B^T stored (unit row stride: rows of W = columns of B, as
 * linear's weight): dot products of A's rows with W's, in GB__GEMV_LANES
 * partial sums added in a fixed order. */
GB__CLONES static void gb__ts_gemv_dots(float *c, int64_t ldc, const float *a, int64_t lda, const float *w, int64_t ldw,
                                     int64_t m, int64_t k, int64_t n0, int64_t n1, float beta) {
    enum { L = GB__GEMV_LANES };
    int64_t kv = k / L * L;
    for (int64_t j = n0; j < n1; j++) {
        const float *wj = w + j * ldw; /* [k] */
        for (int64_t i = 0; i < m; i++) {
            const float *ai = a + i * lda; /* [k] */
            float acc[L] = {0};
            for (int64_t p = 0; p < kv; p += L)
                for (int l = 0; l < L; l++) acc[l] += ai[p + l] * wj[p + l];
            for (int64_t p = kv; p < k; p++) acc[p - kv] += ai[p] * wj[p];
            for (int h = L / 2; h > 0; h /= 2)
                for (int l = 0; l < h; l++) acc[l] += acc[l + h];
            float *cij = c + i * ldc + j;
            *cij = beta == 0.0f ? acc[0] : beta * *cij + acc[0];
        }
    }
}

/* C = beta C + A @ B for few rows and one product, or false when the
 * operands' strides do not suit (sgemm takes it then). Each element of C
 * is computed by one thread in one order: results do not depend on the
 * thread count. */
static bool gb__ts_gemv(const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b, float beta) {
    int64_t m = c->rows, n = c->cols, k = a->cols;
    bool rows = b->cs == 1 || n == 1, dots = !rows && (b->rs == 1 || k == 1);
    if (m > GB__GEMV_ROWS || (a->cs != 1 && k > 1) || (c->cs != 1 && n > 1) || (!rows && !dots)) return false;
    if (rows && k >= 2 * GB__GEMV_KBLOCK && (double)n * (double)k >= GB__GEMM_PAR_MIN && n > 1 &&
        gb__ts_gemv_rows_blocked(c, a, b, beta))
        return true;
    int64_t spans = (n + GB__GEMV_LANES - 1) / GB__GEMV_LANES;
    int threads = gb__threads();
    if (threads > spans) threads = (int)spans;
    if ((double)m * (double)n * (double)k < GB__GEMM_PAR_MIN) threads = 1;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static)
    for (int t = 0; t < threads; t++) {
        int64_t n0 = spans * t / threads * GB__GEMV_LANES, n1 = spans * (t + 1) / threads * GB__GEMV_LANES;
        if (n1 > n) n1 = n;
        if (n0 >= n1) continue;
        if (rows)
            gb__ts_gemv_rows(c->p, c->rs, a->p, a->rs, b->p, b->rs, m, k, n0, n1, beta);
        else
            gb__ts_gemv_dots(c->p, c->rs, a->p, a->rs, b->p, b->cs, m, k, n0, n1, beta);
    }
    return true;
}

gb_status gb__ts_gemm(const char *op, const gb__ts_mat *c_, const gb__ts_mat *a_, const gb__ts_mat *b_, float beta, int nbd,
                   const int64_t *bshape) {
    gb__ts_mat c = *c_, a = *a_, b = *b_;
    if (c.cols > 1 && c.cs != 1) { /* C^T = B^T A^T writes a column-major C row by row */
        c = gb__ts_mat_t(*c_);
        a = gb__ts_mat_t(*b_);
        b = gb__ts_mat_t(*a_);
    }
    int64_t m = c.rows, n = c.cols, k = a.cols, nb = gb__ts_numel(nbd, bshape);
    if (m == 0 || n == 0 || nb == 0) return GB_OK;
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return gb__fail(GB_ERR_UNSUPPORTED, "%s: a %lldx%lld @ %lldx%lld product exceeds OpenBLAS's 32-bit sizes", op,
                        (long long)m, (long long)k, (long long)k, (long long)n);
    if (k == 0) { /* an empty sum: C = beta * C */
        for (int64_t i = 0; i < nb && beta == 0; i++) {
            float *cp = c.p + gb__ts_batch_offset(i, nbd, bshape, c.bstride);
            for (int64_t r = 0; r < m; r++) memset(cp + r * c.rs, 0, (size_t)n * sizeof(float));
        }
        return GB_OK;
    }
    if (nb == 1 && (gb__ts_gemv(&c, &a, &b, beta) || gb__ts_wgemm(&c, &a, &b, beta))) return GB_OK;
    const gb__ts_blas *blas = gb__ts_blas_get();
    if (!blas) {
        gb__error_prefix("%s", op);
        return gb_last_status();
    }
    gb__ts_gemm_job j = {.blas = blas, .m = m, .n = n, .k = k, .a = a, .b = b, .c = c, .beta = beta, .nbd = nbd,
                      .bshape = bshape, .nb = nb, .by_rows = m > n, .nsplit = 1};
    CBLAS_TRANSPOSE tc;
    if (!gb__ts_mat_blas_layout(&a, &j.ta, &j.lda) || !gb__ts_mat_blas_layout(&b, &j.tb, &j.ldb) ||
        !gb__ts_mat_blas_layout(&c, &tc, &j.ldc) || tc != CblasNoTrans)
        return gb__fail(GB_ERR_STATE, "%s: internal error: operand strides not usable by sgemm", op);

    /* Tasks: whole products when the batch shares out evenly (or nearly)
     * over the threads, else each product in blocks along its larger side
     * (OpenBLAS packs the operand that every block reads whole once per
     * block: the smaller one). Batches that reduce into one C run in order. */
    int threads = gb__threads();
    for (int d = 0; d < nbd; d++) j.reduces |= bshape[d] > 1 && c.bstride[d] == 0;
    int64_t nbatch_tasks = j.reduces ? 1 : nb, blocks = ((m > n ? m : n) + GB__GEMM_BLOCK - 1) / GB__GEMM_BLOCK;
    bool par = threads > 1 && (double)nb * (double)m * (double)n * (double)k > GB__GEMM_PAR_MIN;
    if (par && (nbatch_tasks < threads || (nbatch_tasks % threads != 0 && nbatch_tasks < 8 * threads)))
        j.nsplit = blocks < threads ? blocks : threads;
    int64_t ntasks = nbatch_tasks * j.nsplit;
    par &= ntasks > 1;
    int pinned = gb__ts_blas_pin(blas, par);
#pragma omp parallel for num_threads(threads) if (par) schedule(static)
    for (int64_t t = 0; t < ntasks; t++) gb__ts_gemm_run(&j, t);
    gb__ts_blas_unpin(pinned);
    return GB_OK;
}

/* A product's backward into a gradient buffer (GB__WRITES_SRC): written
 * whole (beta 0) while the buffer is blank, added into after. With beta 0
 * every kernel leaves C's old contents unread; the sums are those added to
 * zeros (make model at one thread wrote the same bytes either way). */
static gb_status gb__ts_gemm_grad(const char *op, const gb__ts_mat *c, const gb__ts_mat *a, const gb__ts_mat *b,
                                  int nbd, const int64_t *bshape, gb_tensor *grad) {
    float beta = grad->blank ? 0.0f : 1.0f;
    grad->blank = false;
    return gb__ts_gemm(op, c, a, b, beta, nbd, bshape);
}

/* ---- planning a (batched) product --------------------------------------- */

/* One operand: its values' geometry and its gradient buffer's strides. */
typedef struct gb__ts_mm_arg {
    int ndim;
    int64_t shape[GB_MAX_DIMS], stride[GB_MAX_DIMS], gstride[GB_MAX_DIMS];
    float *data, *grad;
} gb__ts_mm_arg;

static gb__ts_mm_arg gb__ts_mm_arg_of(const gb_tensor *t, gb_tensor *grad) {
    gb__ts_mm_arg x = {.ndim = t->ndim, .data = gb_tensor_data(t), .grad = grad ? gb_tensor_data(grad) : NULL};
    memcpy(x.shape, t->shape, sizeof x.shape);
    memcpy(x.stride, t->stride, sizeof x.stride);
    gb__ts_contiguous_strides(t->ndim, t->shape, x.gstride);
    return x;
}

/* w^T of a 2-D w, as a view (linear's weight); its gradient is dw^T. */
static gb__ts_mm_arg gb__ts_mm_arg_t(const gb_tensor *w, gb_tensor *grad) {
    gb__ts_mm_arg x = gb__ts_mm_arg_of(w, grad);
    int64_t s;
    s = x.shape[0], x.shape[0] = x.shape[1], x.shape[1] = s;
    s = x.stride[0], x.stride[0] = x.stride[1], x.stride[1] = s;
    s = x.gstride[0], x.gstride[0] = x.gstride[1], x.gstride[1] = s;
    return x;
}

typedef struct gb__ts_mm_plan {
    int nbd;                      /* broadcast batch dims */
    int64_t bshape[GB_MAX_DIMS];
    gb__ts_mat a, b, c, da, db;      /* c: the output, or dout in backward */
} gb__ts_mm_plan;

/* A as [M, K] (1-D: [1, K]) or B as [K, N] (1-D: [K, 1]), batch dims aligned
 * right against the nbd broadcast batch dims; `grad` picks gstride. */
static gb__ts_mat gb__ts_mm_mat(const gb__ts_mm_arg *x, bool left, bool grad, int nbd, const int64_t *bshape) {
    const int64_t *st = grad ? x->gstride : x->stride;
    int n = x->ndim;
    gb__ts_mat m = {.p = grad ? x->grad : x->data};
    if (n >= 2) {
        m.rows = x->shape[n - 2], m.cols = x->shape[n - 1], m.rs = st[n - 2], m.cs = st[n - 1];
    } else if (left) {
        m.rows = 1, m.cols = x->shape[0], m.rs = 0, m.cs = st[0];
    } else {
        m.rows = x->shape[0], m.cols = 1, m.rs = st[0], m.cs = 0;
    }
    int xb = n >= 2 ? n - 2 : 0;
    for (int d = 0; d < nbd; d++) {
        int i = d - (nbd - xb);
        m.bstride[d] = i < 0 || (x->shape[i] == 1 && bshape[d] != 1) ? 0 : st[i];
    }
    return m;
}

/* Merge the batch dims of m into its rows, if its memory allows: the batch
 * and row strides must form one arithmetic sequence. */
static bool gb__ts_fold_rows(gb__ts_mat *m, int nbd, const int64_t *bshape) {
    int64_t size[GB_MAX_DIMS + 1], stride[GB_MAX_DIMS + 1];
    int np = 0;
    for (int d = 0; d < nbd; d++)
        if (bshape[d] > 1) size[np] = bshape[d], stride[np++] = m->bstride[d];
    if (m->rows > 1) size[np] = m->rows, stride[np++] = m->rs;
    for (int i = 0; i + 1 < np; i++)
        if (stride[i] != stride[i + 1] * size[i + 1]) return false;
    m->rows *= gb__ts_numel(nbd, bshape);
    if (np > 0) m->rs = stride[np - 1];
    memset(m->bstride, 0, sizeof m->bstride);
    return true;
}

static void gb__ts_mm_plan_init(gb__ts_mm_plan *p, const gb__ts_mm_arg *a, const gb__ts_mm_arg *b, float *c) {
    int xa = a->ndim >= 2 ? a->ndim - 2 : 0, xb = b->ndim >= 2 ? b->ndim - 2 : 0;
    p->nbd = xa > xb ? xa : xb;
    for (int d = 0; d < p->nbd; d++) {
        int ia = d - (p->nbd - xa), ib = d - (p->nbd - xb);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        p->bshape[d] = sa == 1 ? sb : sa; /* gb_matmul checked they broadcast */
    }
    p->a = gb__ts_mm_mat(a, true, false, p->nbd, p->bshape);
    p->da = gb__ts_mm_mat(a, true, true, p->nbd, p->bshape);
    p->b = gb__ts_mm_mat(b, false, false, p->nbd, p->bshape);
    p->db = gb__ts_mm_mat(b, false, true, p->nbd, p->bshape);
    p->c = (gb__ts_mat){.p = c, .rows = p->a.rows, .cols = p->b.cols, .rs = p->b.cols, .cs = 1};
    int64_t s = p->c.rows * p->c.cols;
    for (int d = p->nbd - 1; d >= 0; d--) {
        p->c.bstride[d] = p->bshape[d] == 1 ? 0 : s;
        s *= p->bshape[d];
    }
    /* Fold when B is the same matrix in every batch and A, dA, C all fold. */
    bool b_shared = true;
    for (int d = 0; d < p->nbd; d++) b_shared &= p->bshape[d] == 1 || p->b.bstride[d] == 0;
    if (p->nbd == 0 || !b_shared) return;
    gb__ts_mat fa = p->a, fda = p->da, fc = p->c;
    CBLAS_TRANSPOSE t;
    int ld;
    if (!gb__ts_fold_rows(&fa, p->nbd, p->bshape) || !gb__ts_fold_rows(&fda, p->nbd, p->bshape) ||
        !gb__ts_fold_rows(&fc, p->nbd, p->bshape) || !gb__ts_mat_blas_layout(&fa, &t, &ld))
        return;
    p->a = fa, p->da = fda, p->c = fc;
    p->nbd = 0;
}

/* Plan a @ b (b_t: b is a 2-D weight used as b^T), copying an operand with
 * gb__ts_dense only when sgemm cannot read its strides. *ad, *bd receive the
 * tensors the plan points into (free them after use). */
static gb_status gb__ts_mm_prepare(gb__ts_mm_plan *p, gb_tensor *a, gb_tensor *b, bool b_t, float *c, gb_tensor *da,
                                gb_tensor *db, gb_tensor **ad, gb_tensor **bd) {
    *ad = gb_tensor_ref(a);
    *bd = gb_tensor_ref(b);
    for (int pass = 0;; pass++) {
        gb__ts_mm_arg xa = gb__ts_mm_arg_of(*ad, da), xb = b_t ? gb__ts_mm_arg_t(*bd, db) : gb__ts_mm_arg_of(*bd, db);
        gb__ts_mm_plan_init(p, &xa, &xb, c);
        CBLAS_TRANSPOSE t;
        int ld;
        bool ok_a = gb__ts_mat_blas_layout(&p->a, &t, &ld), ok_b = gb__ts_mat_blas_layout(&p->b, &t, &ld);
        if ((ok_a && ok_b) || pass == 1) return GB_OK; /* dense operands always pass */
        gb_tensor **fix[2] = {ok_a ? NULL : ad, ok_b ? NULL : bd};
        for (int i = 0; i < 2; i++) {
            if (!fix[i]) continue;
            gb_tensor *d = gb__ts_dense(*fix[i]);
            if (!d) return gb_last_status();
            gb_tensor_free(*fix[i]);
            *fix[i] = d;
        }
    }
}

/* y [rows, n] = the bias [n] (any float dtype) in every row: the product
 * then adds x @ w^T. */
static gb_status gb__ts_fill_bias(float *y, const gb_tensor *bias, int64_t rows, int64_t n) {
    gb_tensor *bd = gb__ts_dense_f32(bias);
    if (!bd) return gb_last_status();
    const float *bv = gb_tensor_data(bd); /* [n] */
    for (int64_t r = 0; r < rows; r++) memcpy(y + r * n, bv, (size_t)n * sizeof(float));
    gb_tensor_free(bd);
    return GB_OK;
}

/* y = x @ w^T + bias in one pass of the W^T kernel, for one product (no
 * batch dims) whose weight it takes: *done false, nothing written, when it
 * does not apply. The sums are those of the bias filled in first and the
 * product added (the same bits). */
static gb_status gb__ts_gemm_bias(const gb__ts_mm_plan *p, const gb_tensor *bias, bool *done) {
    *done = false;
    if (gb__ts_numel(p->nbd, p->bshape) != 1 || p->c.cs != 1) return GB_OK;
    gb_tensor *bd = gb__ts_dense_f32(bias);
    if (!bd) return gb_last_status();
    *done = gb__ts_wgemm_bias(&p->c, &p->a, &p->b, gb_tensor_data(bd));
    gb_tensor_free(bd);
    return GB_OK;
}

static bool gb__ts_mm_any_lowp(const gb_tensor *a, const gb_tensor *b, const gb_tensor *bias) {
    return gb__ts_is_lowp(a->dtype) || gb__ts_is_lowp(b->dtype) || (bias && gb__ts_is_lowp(bias->dtype));
}

static gb_status gb__ts_mm_lowp_forward(const char *op, gb_tensor *out, gb_tensor *a, gb_tensor *b, bool b_t,
                                     gb_tensor *bias);
static gb_status gb__ts_mm_lowp_backward(const char *op, const gb_tensor *dout, gb_tensor *a, gb_tensor *b, bool b_t,
                                      gb_tensor *da, gb_tensor *db);

static gb_status gb__ts_mm_forward(const char *op, gb_tensor *out, gb_tensor *a, gb_tensor *b, bool b_t,
                                gb_tensor *bias) {
    if (gb__ts_mm_any_lowp(a, b, bias)) return gb__ts_mm_lowp_forward(op, out, a, b, b_t, bias);
    gb__ts_mm_plan p;
    gb_tensor *ad = NULL, *bd = NULL;
    float *y = gb_tensor_data(out); /* [..., M, N] */
    gb_status st = gb__ts_mm_prepare(&p, a, b, b_t, y, NULL, NULL, &ad, &bd);
    int64_t n = p.b.cols, rows = n ? gb_tensor_numel(out) / n : 0;
    bool done = false;
    if (!st && bias) st = gb__ts_gemm_bias(&p, bias, &done);
    if (!st && bias && !done) st = gb__ts_fill_bias(y, bias, rows, n);
    if (!st && !done) st = gb__ts_gemm(op, &p.c, &p.a, &p.b, bias ? 1.0f : 0.0f, p.nbd, p.bshape);
    gb_tensor_free(ad);
    gb_tensor_free(bd);
    return st;
}

static gb_status gb__ts_mm_backward(const char *op, const gb_tensor *dout, gb_tensor *a, gb_tensor *b, bool b_t,
                                 gb_tensor *da, gb_tensor *db) {
    if (gb__ts_mm_any_lowp(a, b, NULL)) return gb__ts_mm_lowp_backward(op, dout, a, b, b_t, da, db);
    gb__ts_mm_plan p;
    gb_tensor *ad = NULL, *bd = NULL;
    gb_status st = gb__ts_mm_prepare(&p, a, b, b_t, gb_tensor_data(dout), da, db, &ad, &bd);
    /* da may be db (x @ x): the second product sees the first's write */
    if (!st && da) st = gb__ts_gemm_grad(op, &p.da, &p.c, (gb__ts_mat[]){gb__ts_mat_t(p.b)}, p.nbd, p.bshape, da);
    if (!st && db) st = gb__ts_gemm_grad(op, &p.db, (gb__ts_mat[]){gb__ts_mat_t(p.a)}, &p.c, p.nbd, p.bshape, db);
    gb_tensor_free(ad);
    gb_tensor_free(bd);
    return st;
}

/* ---- f16/bf16 operands ------------------------------------------------- */

/* The product of an f32 input with a 2-D f16/bf16 weight that has a unit
 * stride (linear's w [N, K], or matmul's b [K, N], its transpose) reads the
 * weight as stored (lowp.c); any other product with an f16/bf16 operand
 * converts it to f32 and takes the sgemm path. */
static bool gb__ts_mm_lowp_weight(const gb_tensor *a, const gb_tensor *b, bool b_t, gb__ts_lmat *w) {
    if (gb__ts_is_lowp(a->dtype) || !gb__ts_lowp_mat_of(b, w)) return false;
    if (!b_t) *w = gb__ts_lmat_t(*w);
    return true;
}

static gb_status gb__ts_mm_lowp_forward(const char *op, gb_tensor *out, gb_tensor *a, gb_tensor *b, bool b_t,
                                     gb_tensor *bias) {
    gb__ts_lmat w;
    gb_tensor *d[3] = {0}, *src[3] = {a, b, bias};
    gb_status st = GB_OK;
    if (gb__ts_mm_lowp_weight(a, b, b_t, &w)) {
        float *y = gb_tensor_data(out); /* [M, N] */
        int64_t n = w.rows, k = w.cols, m = n ? gb_tensor_numel(out) / n : 0;
        if (!(d[0] = gb__ts_dense(a))) return gb_last_status();
        if (bias) st = gb__ts_fill_bias(y, bias, m, n);
        if (!st) st = gb__ts_lowp_gemm(op, y, n, gb_tensor_data(d[0]) /* [M, K] */, k, m, &w, bias != NULL);
    } else {
        for (int i = 0; i < 3 && !st; i++)
            if (src[i] && !(d[i] = gb__ts_dense_f32(src[i]))) st = gb_last_status();
        if (!st) st = gb__ts_mm_forward(op, out, d[0], d[1], b_t, d[2]);
    }
    for (int i = 0; i < 3; i++) gb_tensor_free(d[i]);
    return st;
}

static gb_status gb__ts_mm_lowp_backward(const char *op, const gb_tensor *dout, gb_tensor *a, gb_tensor *b, bool b_t,
                                      gb_tensor *da, gb_tensor *db) {
    gb_status st = gb__ts_lowp_frozen(op, "mat1", a, da != NULL);
    if (!st) st = gb__ts_lowp_frozen(op, "weight", b, db != NULL);
    if (st) return st;
    gb__ts_lmat w;
    if (gb__ts_mm_lowp_weight(a, b, b_t, &w)) { /* dx += dy @ W; no dW (b is f16/bf16) */
        int64_t n = w.rows, k = w.cols, m = k ? gb_tensor_numel(da) / k : 0;
        if (!da) return GB_OK;
        gb__ts_grad_settle(da);
        gb__ts_lmat wt = gb__ts_lmat_t(w);
        return gb__ts_lowp_gemm(op, gb_tensor_data(da) /* [M, K] */, k, gb_tensor_data(dout) /* [M, N] */, n, m, &wt,
                             true);
    }
    gb_tensor *af = gb__ts_dense_f32(a), *bf = af ? gb__ts_dense_f32(b) : NULL;
    st = bf ? gb__ts_mm_backward(op, dout, af, bf, b_t, da, db) : gb_last_status();
    gb_tensor_free(af);
    gb_tensor_free(bf);
    return st;
}

/* ---- matmul ------------------------------------------------------------- */

/* Strides of t's dims as seen from out's batch dims (0 where t broadcasts),
 * and of its matrix dims: a 1-D a is one row, a 1-D b one column. */
static void gb__ts_mm_i64_strides(const gb_tensor *t, const gb_tensor *out, int nbd, bool is_a, int64_t *bs,
                                  int64_t *s_outer, int64_t *s_k) {
    int xt = t->ndim >= 2 ? t->ndim - 2 : 0;
    for (int d = 0; d < nbd; d++) {
        int it = d - (nbd - xt);
        bs[d] = it >= 0 && t->shape[it] == out->shape[d] ? t->stride[it] : 0;
    }
    if (t->ndim == 1) *s_outer = 0, *s_k = t->stride[0];
    else if (is_a) *s_outer = t->stride[t->ndim - 2], *s_k = t->stride[t->ndim - 1];
    else *s_outer = t->stride[t->ndim - 1], *s_k = t->stride[t->ndim - 2];
}

/* int64 products: exact, in uint64 so that overflow wraps as torch's. A
 * plain loop: integer products are ids and counts, not activations. */
static gb_status gb__ts_mm_i64_forward(gb_tensor *out) {
    const gb_tensor *a = out->src[0], *b = out->src[1];
    const int64_t *x = gb_tensor_data(a), *w = gb_tensor_data(b); /* their strides */
    int64_t *y = gb_tensor_data(out);                              /* [batch, m, n] */
    int nbd = out->ndim - (a->ndim >= 2) - (b->ndim >= 2);
    int64_t m = a->ndim >= 2 ? a->shape[a->ndim - 2] : 1, k = a->shape[a->ndim - 1];
    int64_t n = b->ndim >= 2 ? b->shape[b->ndim - 1] : 1;
    int64_t as[GB_MAX_DIMS], bs[GB_MAX_DIMS], am, ak, bn, bk;
    gb__ts_mm_i64_strides(a, out, nbd, true, as, &am, &ak);
    gb__ts_mm_i64_strides(b, out, nbd, false, bs, &bn, &bk);
    int64_t batch = gb__ts_numel(nbd, out->shape);
    for (int64_t bi = 0; bi < batch; bi++) {
        int64_t oa = 0, ob = 0, rest = bi;
        for (int d = nbd - 1; d >= 0; d--) {
            oa += rest % out->shape[d] * as[d], ob += rest % out->shape[d] * bs[d];
            rest /= out->shape[d];
        }
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                uint64_t s = 0;
                for (int64_t q = 0; q < k; q++) s += (uint64_t)x[oa + i * am + q * ak] * (uint64_t)w[ob + q * bk + j * bn];
                y[(bi * m + i) * n + j] = (int64_t)s;
            }
    }
    return GB_OK;
}

gb_status gb__ts_op_MATMUL_forward(gb_tensor *out) {
    if (out->dtype == GB_DTYPE_I64) return gb__ts_mm_i64_forward(out);
    return gb__ts_mm_forward("matmul", out, out->src[0], out->src[1], false, NULL);
}

gb_status gb__ts_op_MATMUL_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    return gb__ts_mm_backward("matmul", dout, out->src[0], out->src[1], false, dsrc[0], dsrc[1]);
}

/* Operands are f32, or f16/bf16 read as f32 (weights as stored) that no
 * gradient is asked of. */
static gb_status gb__ts_check_float(const char *op, const char *what, const gb_tensor *t) {
    if (t->dtype != GB_DTYPE_F32 && !gb__ts_is_lowp(t->dtype))
        return gb__fail(GB_ERR_DTYPE, "%s: expected %s of dtype float32 (or float16, bfloat16), got %s %s", op, what,
                        gb_dtype_name(t->dtype), GB__SHAPE_STR(t));
    return gb__ts_lowp_frozen(op, what, t, t->requires_grad && gb__ts_grad_mode());
}

gb_tensor *gb_matmul(gb_tensor *a, gb_tensor *b) {
    char s1[160], s2[160];
    bool ints = a && b && a->dtype == GB_DTYPE_I64 && b->dtype == GB_DTYPE_I64;
    if (!ints && (gb__ts_check_float("matmul", "mat1", a) || gb__ts_check_float("matmul", "mat2", b))) return NULL;
    int na = a->ndim, nb = b->ndim;
    if (na == 0 || nb == 0)
        return gb__fail_null(GB_ERR_SHAPE, "matmul: both arguments to matmul need to be at least 1D, but they are %dD and %dD",
                             na, nb);
    int64_t m = na >= 2 ? a->shape[na - 2] : 1, k = a->shape[na - 1];
    int64_t kb = nb >= 2 ? b->shape[nb - 2] : b->shape[0], n = nb >= 2 ? b->shape[nb - 1] : 1;
    if (na == 1 && nb == 1 && k != kb)
        return gb__fail_null(GB_ERR_SHAPE,
                             "matmul: inconsistent tensor size, expected tensor [%lld] and src [%lld] to have the same "
                             "number of elements, but got %lld and %lld elements respectively",
                             (long long)k, (long long)kb, (long long)k, (long long)kb);
    if (k != kb)
        return gb__fail_null(GB_ERR_SHAPE, "matmul: mat1 and mat2 shapes cannot be multiplied (%lldx%lld and %lldx%lld) (shapes %s and %s)",
                             (long long)m, (long long)k, (long long)kb, (long long)n, GB__SHAPE_STR(a),
                             GB__SHAPE_STR(b));
    int xa = na >= 2 ? na - 2 : 0, xb = nb >= 2 ? nb - 2 : 0, nbd = xa > xb ? xa : xb, nd = 0;
    int64_t shape[GB_MAX_DIMS];
    for (int d = 0; d < nbd; d++) {
        int ia = d - (nbd - xa), ib = d - (nbd - xb);
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            return gb__fail_null(GB_ERR_SHAPE,
                                 "matmul: the size of tensor a (%lld) must match the size of tensor b (%lld) at "
                                 "non-singleton dimension %d of the batch dimensions (shapes %s and %s)",
                                 (long long)sa, (long long)sb, d, gb__shape_str(s1, 160, na, a->shape),
                                 gb__shape_str(s2, 160, nb, b->shape));
        shape[nd++] = sa == 1 ? sb : sa;
    }
    if (na >= 2) shape[nd++] = m;
    if (nb >= 2) shape[nd++] = n;
    gb_tensor *out = gb__ts_op_new(GB_OP_MATMUL, "matmul", ints ? GB_DTYPE_I64 : GB_DTYPE_F32, nd, shape, 2, (gb_tensor *[]){a, b});
    return out ? gb__ts_op_run(out) : NULL;
}

/* ---- linear ------------------------------------------------------------- */

/* iparam[0] set: src[1] is the weight's transpose as stored, [in, out]
 * (gb_linear says when). */
gb_status gb__ts_op_LINEAR_forward(gb_tensor *out) {
    return gb__ts_mm_forward("linear", out, out->src[0], out->src[1], !out->iparam[0],
                          out->nsrc > 2 ? out->src[2] : NULL);
}

gb_status gb__ts_op_LINEAR_backward(gb_tensor *out, const gb_tensor *dout, gb_tensor **dsrc) {
    gb_status st = gb__ts_mm_backward("linear", dout, out->src[0], out->src[1], !out->iparam[0], dsrc[0], dsrc[1]);
    if (st || out->nsrc < 3 || !dsrc[2]) return st;
    if ((st = gb__ts_lowp_frozen("linear", "bias", out->src[2], true))) return st;
    float *db = gb_tensor_data(dsrc[2]);     /* [N] */
    const float *dy = gb_tensor_data(dout);  /* [R, N] */
    int64_t n = out->shape[out->ndim - 1], rows = n ? gb_tensor_numel(out) / n : 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < n; j++) db[j] += dy[r * n + j];
    return GB_OK;
}

/* The tensor w is the recorded transpose of, when it is one: a 2-D view
 * over all of a dense 2-D source (contiguous, or itself kept transposed)
 * with the two dims swapped (GPT-2's Conv1D passes its weight [in, out]
 * so). Recorded through the view, the product's weight gradient came out
 * transposed and the view's backward transposed it back into the weight's
 * layout: 30% of GPT-2 124M's training step at 128 tokens. Linear records
 * the source instead and reads it as matmul's B; its gradient lands in the
 * gradient's own (contiguous) layout. */
static gb_tensor *gb__ts_linear_stored_t(const gb_tensor *w) {
    if (w->op != GB_OP_VIEW || w->nsrc != 1 || w->ndim != 2) return NULL;
    gb_tensor *s = w->src[0];
    bool dense = s->ndim == 2 && (gb_tensor_is_contiguous(s) || gb__ts_is_transposed(s));
    bool t = dense && s->dtype == w->dtype && s->storage == w->storage && s->offset == w->offset &&
             w->shape[0] == s->shape[1] && w->shape[1] == s->shape[0] && w->stride[0] == s->stride[1] &&
             w->stride[1] == s->stride[0];
    return t ? s : NULL;
}

bool gb__ts_linear_shared(gb_tensor *x, int n, gb_tensor *const *w, gb_tensor **out) {
    for (int i = 0; i < n; i++) out[i] = NULL;
    if (n <= 0 || n > 8 || x->dtype != GB_DTYPE_F32 || x->ndim == 0 || gb__is_meta(x) || !gb_tensor_is_contiguous(x))
        return false;
    int64_t k = x->shape[x->ndim - 1], m = k ? gb_tensor_numel(x) / k : 0;
    bool recording = gb__ts_grad_mode() && x->requires_grad;
    for (int i = 0; i < n; i++) {
        const gb_tensor *wi = w[i];
        if (wi->dtype != GB_DTYPE_F32 || wi->ndim != 2 || wi->shape[1] != k || wi->stride[1] != 1 ||
            gb__is_meta(wi))
            return false;
        recording |= gb__ts_grad_mode() && wi->requires_grad;
    }
    if (recording) return false;
    gb__ts_mat a = {.p = gb_tensor_data(x), .rows = m, .cols = k, .rs = k, .cs = 1}, c[8], b[8];
    int64_t shape[GB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    for (int i = 0; i < n; i++) {
        shape[x->ndim - 1] = w[i]->shape[0];
        if (!(out[i] = gb_empty(x->ndim, shape, GB_DTYPE_F32))) break;
        c[i] = (gb__ts_mat){.p = gb_tensor_data(out[i]), .rows = m, .cols = w[i]->shape[0], .rs = w[i]->shape[0], .cs = 1};
        b[i] = (gb__ts_mat){.p = gb_tensor_data(w[i]), .rows = k, .cols = w[i]->shape[0], .rs = 1, .cs = w[i]->stride[0]};
    }
    if (out[n - 1] && gb__ts_wgemm_shared(n, c, &a, b)) return true;
    for (int i = 0; i < n; i++) gb_tensor_free(out[i]), out[i] = NULL;
    return false;
}

gb_tensor *gb_linear(gb_tensor *x, gb_tensor *w, gb_tensor *bias) {
    if (gb__ts_check_float("linear", "input", x) || gb__ts_check_float("linear", "weight", w) ||
        (bias && gb__ts_check_float("linear", "bias", bias)))
        return NULL;
    if (w->ndim != 2)
        return gb__fail_null(GB_ERR_SHAPE, "linear: weight must be 2-D [out_features, in_features], got shape %s",
                             GB__SHAPE_STR(w));
    if (x->ndim == 0) return gb__fail_null(GB_ERR_SHAPE, "linear: input must be at least 1-D, got a 0-dim tensor");
    int64_t in = x->shape[x->ndim - 1], rows = gb__ts_numel(x->ndim - 1, x->shape);
    if (in != w->shape[1])
        return gb__fail_null(GB_ERR_SHAPE, "linear: mat1 and mat2 shapes cannot be multiplied (%lldx%lld and %lldx%lld) (input %s, weight %s)",
                             (long long)rows, (long long)in, (long long)w->shape[1], (long long)w->shape[0],
                             GB__SHAPE_STR(x), GB__SHAPE_STR(w));
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        return gb__fail_null(GB_ERR_SHAPE, "linear: bias of shape %s does not match weight of shape %s (expected [%lld])",
                             GB__SHAPE_STR(bias), GB__SHAPE_STR(w), (long long)w->shape[0]);
    int64_t shape[GB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = w->shape[0];
    gb_tensor *stored = gb__ts_linear_stored_t(w);
    gb_tensor *out = gb__ts_op_new(GB_OP_LINEAR, "linear", GB_DTYPE_F32, x->ndim, shape, bias ? 3 : 2,
                                (gb_tensor *[]){x, stored ? stored : w, bias});
    if (!out) return NULL;
    out->iparam[0] = stored != NULL;
    return gb__ts_op_run(out);
}
