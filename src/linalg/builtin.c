/* The built-in linear algebra on top of the GEMM core (builtin_gemm.c): the
 * GEMM with BLAS's alpha/beta rules, the symmetric rank-k update, Cholesky,
 * the triangular solves and inverse, and the product with a float tensor.
 *
 * The factorizations are recursive (split in two, recurse on the halves,
 * join them with one GEMM), so nearly all of their work runs in the GEMM's
 * microkernel; the blocks at the bottom of the recursion (at most LEAF
 * columns) are solved by plain loops. Every result is computed in one fixed
 * order: the same input gives the same bits on every call and GEMM variant;
 * the _ctx entry points split a GEMM or SYRK over the context's threads by
 * blocks of output, which does not change that order. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "builtin.h"

#define LEAF 32          /* order of the blocks solved by plain loops */
#define SOLVE_ROWS 8     /* rows of a right-hand side solved together, across two vectors */
#define SOLVE_COLS 256   /* columns of a left-hand solve's rows kept in cache together */
#define F16_PANEL 64     /* rows of an fp16 tensor converted at a time */
#define TASK_FLOPS 2e6   /* a product smaller than this stays on the calling thread */
#define TASKS_PER_THREAD 4   /* split finer than the threads, so that a late thread stalls less */
#define TASK_MIN 64      /* columns (or rows) of C per task at least */

typedef float v4f __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v4_store(float *p, v4f v) { memcpy(p, &v, sizeof v); }

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* ---- the GEMM variants ---- */

typedef struct gemm_entry {
    const qlib_lb_gemm_kernel *kern;
    unsigned needs;               /* QK_CPU_* bits */
} gemm_entry;

static const gemm_entry gemm_table[] = {   /* fastest first */
#if defined(__x86_64__)
    { &qlib_lb_gemm_avx2, QK_CPU_AVX2 },
#endif
    { &qlib_lb_gemm_generic, 0 },
};
_Static_assert(sizeof gemm_table / sizeof gemm_table[0] <= QLIB_LB_GEMM_MAX,
               "QLIB_LB_GEMM_MAX is below the variants' count");

size_t qlib_lb_gemm_kernels(const qlib_lb_gemm_kernel **out)
{
    unsigned cpu = qlib_cpu_features();
    size_t n = 0;
    for (size_t i = 0; i < sizeof gemm_table / sizeof gemm_table[0]; i++)
        if ((gemm_table[i].needs & cpu) == gemm_table[i].needs) out[n++] = gemm_table[i].kern;
    return n;
}

const qlib_lb_gemm_kernel *qlib_lb_gemm_best(void)
{
    const qlib_lb_gemm_kernel *k[QLIB_LB_GEMM_MAX];
    qlib_lb_gemm_kernels(k);
    return k[0];
}

/* ---- GEMM ---- */

/* c = beta * c on an m x n block; beta = 0 writes zeros without reading. */
static void scale_rows(float *c, size_t m, size_t n, size_t ldc, float beta)
{
    for (size_t i = 0; i < m; i++) {
        float *row = c + i * ldc;
        if (beta == 0.0f)
            memset(row, 0, n * sizeof(float));
        else
            for (size_t j = 0; j < n; j++) row[j] *= beta;
    }
}

void qlib_lb_sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                   size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc)
{
    if (m == 0 || n == 0) return;
    int no_product = k == 0 || alpha == 0.0f;   /* A and B are not read */
    if (beta != 1.0f && (no_product || beta != 0.0f)) scale_rows(c, m, n, ldc, beta);
    if (no_product) return;
    qlib_lb_gemm_best()->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, c, ldc, beta != 0.0f);
}

/* ---- triangles of C += alpha * op(A) op(A)^T ---- */

/* Where the recursions split n > LEAF: near the middle, on a multiple of 16. */
static size_t split(size_t n) { return (n / 2 + 15) / 16 * 16; }

/* One triangle update: the upper or lower triangle (diagonal included) of
 * c, n x n, gets alpha * op(A) op(A)^T, op(A) n x k being the rows of a
 * (a_cols = 0) or its columns (a_cols = 1: a is k x n); acc = 0 overwrites. */
typedef struct tri_update {
    const qlib_lb_gemm_kernel *g;
    int upper, a_cols, acc;
    size_t k;
    float alpha;
    const float *a;
    size_t lda;
    float *c;
    size_t ldc;
} tri_update;

/* Row i of op(A). */
static const float *op_row(const tri_update *t, size_t i)
{
    return t->a_cols ? t->a + i : t->a + i * t->lda;
}

/* The block [i0, i0 + n)^2 of the triangle: its diagonal through a full
 * tile on the stack, of which only the triangle goes back. */
static void tri_leaf(const tri_update *t, size_t i0, size_t n)
{
    float tile[LEAF * LEAF] __attribute__((aligned(64)));
    float *c = t->c + i0 * t->ldc + i0;
    memset(tile, 0, sizeof tile);
    for (size_t i = 0; i < n; i++) {
        size_t j0 = t->upper ? i : 0, j1 = t->upper ? n : i + 1;
        if (t->acc) memcpy(tile + i * LEAF + j0, c + i * t->ldc + j0, (j1 - j0) * sizeof(float));
    }
    t->g->gemm(t->a_cols, !t->a_cols, n, n, t->k, t->alpha, op_row(t, i0), t->lda, op_row(t, i0),
               t->lda, tile, LEAF, t->acc);
    for (size_t i = 0; i < n; i++) {
        size_t j0 = t->upper ? i : 0, j1 = t->upper ? n : i + 1;
        memcpy(c + i * t->ldc + j0, tile + i * LEAF + j0, (j1 - j0) * sizeof(float));
    }
}

static void tri_block(const tri_update *t, size_t i0, size_t n)
{
    if (n <= LEAF) {
        tri_leaf(t, i0, n);
        return;
    }
    size_t h = split(n);
    tri_block(t, i0, h);
    /* the rectangle between the two halves' triangles */
    size_t r0 = t->upper ? i0 : i0 + h, c0 = t->upper ? i0 + h : i0;
    size_t rows = t->upper ? h : n - h, cols = t->upper ? n - h : h;
    t->g->gemm(t->a_cols, !t->a_cols, rows, cols, t->k, t->alpha, op_row(t, r0), t->lda,
               op_row(t, c0), t->lda, t->c + r0 * t->ldc + c0, t->ldc, t->acc);
    tri_block(t, i0 + h, n - h);
}

/* beta applied to the upper triangle; returns 0 when no product remains. */
static int syrk_prologue(size_t n, size_t k, float alpha, float beta, float *c, size_t ldc)
{
    int no_product = k == 0 || alpha == 0.0f;
    if (beta != 1.0f && (no_product || beta != 0.0f))
        for (size_t i = 0; i < n; i++) scale_rows(c + i * ldc + i, 1, n - i, ldc, beta);
    return !no_product;
}

void qlib_lb_syrk_upper(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                        float *c, size_t ldc)
{
    if (n == 0 || !syrk_prologue(n, k, alpha, beta, c, ldc)) return;
    tri_update t = { qlib_lb_gemm_best(), 1, 1, beta != 0.0f, k, alpha, a, lda, c, ldc };
    tri_block(&t, 0, n);
}

/* ---- the same on the context's threads ----
 * Each task computes whole elements of C in the one order, so any split
 * gives the same bits; boundaries fall on multiples of 16. */

static size_t task_count(const qlib_ctx *ctx, double flops, size_t extent)
{
    if (ctx->n_threads <= 1 || flops < TASK_FLOPS) return 1;
    size_t t = (size_t)ctx->n_threads * TASKS_PER_THREAD, most = extent / TASK_MIN;
    return t < most ? t : most ? most : 1;
}

static size_t boundary(size_t extent, size_t i, size_t tasks)
{
    return i >= tasks ? extent : min_size(extent * i / tasks / 16 * 16, extent);
}

typedef struct gemm_job {
    const qlib_lb_gemm_kernel *g;
    int ta, tb, acc, by_rows;
    size_t m, n, k, lda, ldb, ldc, tasks;
    float alpha;
    const float *a, *b;
    float *c;
} gemm_job;

static void gemm_task(void *arg, size_t i)
{
    const gemm_job *j = arg;
    size_t x0 = boundary(j->by_rows ? j->m : j->n, i, j->tasks);
    size_t x1 = boundary(j->by_rows ? j->m : j->n, i + 1, j->tasks);
    if (x1 <= x0) return;
    if (j->by_rows)
        j->g->gemm(j->ta, j->tb, x1 - x0, j->n, j->k, j->alpha, j->ta ? j->a + x0 : j->a + x0 * j->lda,
                   j->lda, j->b, j->ldb, j->c + x0 * j->ldc, j->ldc, j->acc);
    else
        j->g->gemm(j->ta, j->tb, j->m, x1 - x0, j->k, j->alpha, j->a, j->lda,
                   j->tb ? j->b + x0 * j->ldb : j->b + x0, j->ldb, j->c + x0, j->ldc, j->acc);
}

void qlib_lb_sgemm_ctx(qlib_ctx *ctx, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                       const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                       size_t ldc)
{
    int by_rows = m > n;
    size_t tasks = task_count(ctx, 2.0 * (double)m * (double)n * (double)k, by_rows ? m : n);
    if (tasks <= 1 || k == 0 || alpha == 0.0f) {
        qlib_lb_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (beta != 1.0f && beta != 0.0f) scale_rows(c, m, n, ldc, beta);
    gemm_job j = { qlib_lb_gemm_best(), ta, tb, beta != 0.0f, by_rows, m, n, k, lda, ldb, ldc, tasks,
                   alpha, a, b, c };
    qlib_ctx_parallel_for(ctx, gemm_task, &j, tasks);
}

typedef struct syrk_job {
    tri_update t;
    size_t n, tasks;
} syrk_job;

/* Columns of the upper triangle in blocks of about equal area: block i is
 * the rectangle above its diagonal block, then the diagonal block. */
static size_t syrk_boundary(const syrk_job *j, size_t i)
{
    if (i >= j->tasks) return j->n;
    return min_size((size_t)((double)j->n * sqrt((double)i / (double)j->tasks)) / 16 * 16, j->n);
}

static void syrk_task(void *arg, size_t i)
{
    const syrk_job *j = arg;
    const tri_update *t = &j->t;
    size_t c0 = syrk_boundary(j, i), c1 = syrk_boundary(j, i + 1);
    if (c1 <= c0) return;
    if (c0)
        t->g->gemm(1, 0, c0, c1 - c0, t->k, t->alpha, t->a, t->lda, t->a + c0, t->lda, t->c + c0,
                   t->ldc, t->acc);
    tri_block(t, c0, c1 - c0);
}

void qlib_lb_syrk_upper_ctx(qlib_ctx *ctx, size_t n, size_t k, float alpha, const float *a,
                            size_t lda, float beta, float *c, size_t ldc)
{
    size_t tasks = task_count(ctx, (double)n * (double)n * (double)k, n);
    if (tasks <= 1) {
        qlib_lb_syrk_upper(n, k, alpha, a, lda, beta, c, ldc);
        return;
    }
    if (!syrk_prologue(n, k, alpha, beta, c, ldc)) return;
    syrk_job j = { { qlib_lb_gemm_best(), 1, 1, beta != 0.0f, k, alpha, a, lda, c, ldc }, n, tasks };
    qlib_ctx_parallel_for(ctx, syrk_task, &j, tasks);
}

/* ---- triangular solves, L lower (n x n, row stride ldl) ---- */

/* t[j][.] = rows r0 .. r0+nr-1 of b, column j (n columns), transposed;
 * rows past nr are zero. */
static void rows_in(v4f t[][2], const float *b, size_t ldb, size_t nr, size_t n)
{
    memset(t, 0, n * sizeof t[0]);
    for (size_t r = 0; r < nr; r++)
        for (size_t j = 0; j < n; j++) t[j][r / 4][r % 4] = b[r * ldb + j];
}

static void rows_out(v4f t[][2], float *b, size_t ldb, size_t nr, size_t n)
{
    for (size_t r = 0; r < nr; r++)
        for (size_t j = 0; j < n; j++) b[r * ldb + j] = t[j][r / 4][r % 4];
}

/* X L^T = B for n <= LEAF, X over B: each row x_j = (b_j - sum_{p<j} x_p l_jp) / l_jj,
 * SOLVE_ROWS rows at a time. */
static void solve_rlt_leaf(size_t m, size_t n, const float *l, size_t ldl, float *b, size_t ldb)
{
    v4f t[LEAF][2];
    for (size_t r0 = 0; r0 < m; r0 += SOLVE_ROWS) {
        size_t nr = min_size(SOLVE_ROWS, m - r0);
        rows_in(t, b + r0 * ldb, ldb, nr, n);
        for (size_t j = 0; j < n; j++) {
            const float *lj = l + j * ldl;
            v4f s0 = t[j][0], s1 = t[j][1];
            for (size_t p = 0; p < j; p++) {
                s0 -= t[p][0] * lj[p];
                s1 -= t[p][1] * lj[p];
            }
            t[j][0] = s0 / lj[j];
            t[j][1] = s1 / lj[j];
        }
        rows_out(t, b + r0 * ldb, ldb, nr, n);
    }
}

/* X L^T = B: B (m x n) becomes B L^-T. */
static void solve_rlt(const qlib_lb_gemm_kernel *g, size_t m, size_t n, const float *l,
                      size_t ldl, float *b, size_t ldb)
{
    if (n <= LEAF) {
        solve_rlt_leaf(m, n, l, ldl, b, ldb);
        return;
    }
    size_t h = split(n);
    solve_rlt(g, m, h, l, ldl, b, ldb);
    g->gemm(0, 1, m, n - h, h, -1.0f, b, ldb, l + h * ldl, ldl, b + h, ldb, 1);
    solve_rlt(g, m, n - h, l + h * ldl + h, ldl, b + h, ldb);
}

/* X L = B for n <= LEAF: x_j = (b_j - sum_{p>j} x_p l_pj) / l_jj, j from the last. */
static void solve_rln_leaf(size_t m, size_t n, const float *l, size_t ldl, float *b, size_t ldb)
{
    v4f t[LEAF][2];
    for (size_t r0 = 0; r0 < m; r0 += SOLVE_ROWS) {
        size_t nr = min_size(SOLVE_ROWS, m - r0);
        rows_in(t, b + r0 * ldb, ldb, nr, n);
        for (size_t j = n; j-- > 0;) {
            v4f s0 = t[j][0], s1 = t[j][1];
            for (size_t p = j + 1; p < n; p++) {
                float lp = l[p * ldl + j];
                s0 -= t[p][0] * lp;
                s1 -= t[p][1] * lp;
            }
            t[j][0] = s0 / l[j * ldl + j];
            t[j][1] = s1 / l[j * ldl + j];
        }
        rows_out(t, b + r0 * ldb, ldb, nr, n);
    }
}

/* X L = B: B (m x n) becomes B L^-1. */
static void solve_rln(const qlib_lb_gemm_kernel *g, size_t m, size_t n, const float *l,
                      size_t ldl, float *b, size_t ldb)
{
    if (n <= LEAF) {
        solve_rln_leaf(m, n, l, ldl, b, ldb);
        return;
    }
    size_t h = split(n);
    solve_rln(g, m, n - h, l + h * ldl + h, ldl, b + h, ldb);
    g->gemm(0, 0, m, h, n - h, -1.0f, b + h, ldb, l + h * ldl, ldl, b, ldb, 1);
    solve_rln(g, m, h, l, ldl, b, ldb);
}

/* L Y = B for n <= LEAF: row y_i = (b_i - sum_{p<i} l_ip y_p) / l_ii, across
 * the m columns, SOLVE_COLS at a time. */
static void solve_lln_leaf(size_t n, size_t m, const float *l, size_t ldl, float *b, size_t ldb)
{
    for (size_t c0 = 0; c0 < m; c0 += SOLVE_COLS) {
        size_t nc = min_size(SOLVE_COLS, m - c0), n4 = nc & ~(size_t)3;
        for (size_t i = 0; i < n; i++) {
            const float *li = l + i * ldl;
            float *yi = b + i * ldb + c0, d = li[i];
            for (size_t p = 0; p < i; p++) {
                const float *yp = b + p * ldb + c0;
                float lp = li[p];
                size_t c = 0;
                for (; c < n4; c += 4) v4_store(yi + c, v4_load(yi + c) - v4_load(yp + c) * lp);
                for (; c < nc; c++) yi[c] -= yp[c] * lp;
            }
            size_t c = 0;
            for (; c < n4; c += 4) v4_store(yi + c, v4_load(yi + c) / d);
            for (; c < nc; c++) yi[c] /= d;
        }
    }
}

/* L Y = B: B (n x m) becomes L^-1 B. */
static void solve_lln(const qlib_lb_gemm_kernel *g, size_t n, size_t m, const float *l,
                      size_t ldl, float *b, size_t ldb)
{
    if (n <= LEAF) {
        solve_lln_leaf(n, m, l, ldl, b, ldb);
        return;
    }
    size_t h = split(n);
    solve_lln(g, h, m, l, ldl, b, ldb);
    g->gemm(0, 0, n - h, m, h, -1.0f, l + h * ldl, ldl, b, ldb, b + h * ldb, ldb, 1);
    solve_lln(g, n - h, m, l + h * ldl + h, ldl, b + h * ldb, ldb);
}

/* ---- Cholesky ---- */

/* Row by row (Cholesky-Banachiewicz); 1-based order of the first pivot
 * that is not positive (or NaN), else 0. */
static int cholesky_leaf(size_t n, float *a, size_t lda)
{
    for (size_t i = 0; i < n; i++) {
        float *ri = a + i * lda;
        for (size_t j = 0; j <= i; j++) {
            const float *rj = a + j * lda;
            float s = ri[j];
            for (size_t p = 0; p < j; p++) s -= ri[p] * rj[p];
            if (j < i) {
                ri[j] = s / rj[j];
            } else {
                if (!(s > 0.0f)) return (int)i + 1;
                ri[i] = sqrtf(s);
            }
        }
    }
    return 0;
}

/* [A11 .; A21 A22] = [L11 0; L21 L22] [L11 0; L21 L22]^T: L11 from A11,
 * L21 = A21 L11^-T, then L22 from A22 - L21 L21^T. */
static int cholesky(const qlib_lb_gemm_kernel *g, size_t n, float *a, size_t lda)
{
    if (n <= LEAF) return cholesky_leaf(n, a, lda);
    size_t h = split(n);
    int info = cholesky(g, h, a, lda);
    if (info) return info;
    float *a21 = a + h * lda, *a22 = a21 + h;
    solve_rlt(g, n - h, h, a, lda, a21, lda);
    tri_update t = { g, 0, 0, 1, h, -1.0f, a21, lda, a22, lda };
    tri_block(&t, 0, n - h);
    info = cholesky(g, n - h, a22, lda);
    return info ? info + (int)h : 0;
}

int qlib_lb_cholesky_lower(size_t n, float *a, size_t lda)
{
    return n ? cholesky(qlib_lb_gemm_best(), n, a, lda) : 0;
}

/* ---- triangular inverse ---- */

/* Columns from the last: l_jj = 1 / l_jj, then the column below it becomes
 * -l_jj times the already inverted block below-right times the old column
 * (rows from the bottom, so that the old values it reads are still there). */
static void inverse_leaf(size_t n, float *a, size_t lda)
{
    for (size_t j = n; j-- > 0;) {
        float *ajj = a + j * lda + j;
        *ajj = 1.0f / *ajj;
        float neg = -*ajj;
        for (size_t i = n; i-- > j + 1;) {
            const float *ri = a + i * lda;
            float s = 0.0f;
            for (size_t p = j + 1; p <= i; p++) s += ri[p] * a[p * lda + j];
            a[i * lda + j] = neg * s;
        }
    }
}

/* [L11 0; L21 L22]^-1 = [L11^-1 0; -L22^-1 L21 L11^-1  L22^-1]. */
static void inverse(const qlib_lb_gemm_kernel *g, size_t n, float *a, size_t lda)
{
    if (n <= LEAF) {
        inverse_leaf(n, a, lda);
        return;
    }
    size_t h = split(n);
    float *a21 = a + h * lda, *a22 = a21 + h;
    solve_rln(g, n - h, h, a, lda, a21, lda);
    for (size_t i = 0; i < n - h; i++)
        for (size_t j = 0; j < h; j++) a21[i * lda + j] = -a21[i * lda + j];
    solve_lln(g, n - h, h, a22, lda, a21, lda);
    inverse(g, h, a, lda);
    inverse(g, n - h, a22, lda);
}

int qlib_lb_tri_inverse_lower(size_t n, float *a, size_t lda)
{
    for (size_t i = 0; i < n; i++)
        if (a[i * lda + i] == 0.0f) return (int)i + 1;
    if (n) inverse(qlib_lb_gemm_best(), n, a, lda);
    return 0;
}

/* ---- y = x W^T for a float tensor ---- */

/* y_r = sum_p w_rp x_p for nr rows of w (stride k): sixteen running sums
 * (p mod 16) in four vectors, added pairwise, then the last k mod 16 terms:
 * the same operations on every target. */
static void gemv_rows(const float *w, size_t nr, size_t k, const float *x, float *y)
{
    size_t k16 = k & ~(size_t)15;
    for (size_t r = 0; r < nr; r++) {
        const float *wr = w + r * k;
        v4f s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };
        for (size_t p = 0; p < k16; p += 16) {
            s0 += v4_load(wr + p) * v4_load(x + p);
            s1 += v4_load(wr + p + 4) * v4_load(x + p + 4);
            s2 += v4_load(wr + p + 8) * v4_load(x + p + 8);
            s3 += v4_load(wr + p + 12) * v4_load(x + p + 12);
        }
        v4f s = (s0 + s1) + (s2 + s3);
        float acc = (s[0] + s[1]) + (s[2] + s[3]);
        for (size_t p = k16; p < k; p++) acc += wr[p] * x[p];
        y[r] = acc;
    }
}

typedef struct float_job {
    const qlib_lb_gemm_kernel *g;
    const qlib_kernels *kern;
    const qlib_tensor *t;
    const float *x;
    size_t m, ldx;
    float *y;
    size_t ldy, n_tasks;
    float *panels;                 /* fp16: F16_PANEL x k floats per task */
} float_job;

/* Columns [c0, c0 + nr) of y from those rows of W (stride k). */
static void float_product(const float_job *j, const float *w, size_t c0, size_t nr)
{
    size_t k = j->t->d.k;
    if (j->m == 1)
        gemv_rows(w, nr, k, j->x, j->y + c0);
    else
        j->g->gemm(0, 1, j->m, nr, k, 1.0f, j->x, j->ldx, w, k, j->y + c0, j->ldy, 0);
}

static void float_task(void *arg, size_t i)
{
    float_job *j = arg;
    size_t n = j->t->d.n, k = j->t->d.k;
    size_t c0 = n * i / j->n_tasks, c1 = n * (i + 1) / j->n_tasks;
    if (j->t->f32) {
        float_product(j, j->t->f32 + c0 * k, c0, c1 - c0);
        return;
    }
    float *panel = j->panels + i * F16_PANEL * k;
    for (size_t r0 = c0; r0 < c1; r0 += F16_PANEL) {
        size_t nr = min_size(F16_PANEL, c1 - r0);
        j->kern->f16_to_f32(j->t->f16 + r0 * k, nr * k, panel);
        float_product(j, panel, r0, nr);
    }
}

/* Split over output columns among the context's threads: every element is
 * computed the same way whichever task holds it. */
qlib_status qlib_lb_matmul_float(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                                 size_t ldx, float *y, size_t ldy)
{
    size_t n = t->d.n, k = t->d.k, tasks = 1;
    double flops = 2.0 * (double)m * (double)n * (double)k;
    if (ctx->n_threads > 1 && flops >= TASK_FLOPS) tasks = min_size((size_t)ctx->n_threads, n);
    float_job j = { qlib_lb_gemm_best(), ctx->kern, t, x, m, ldx, y, ldy, tasks, NULL };
    if (!t->f32) {
        size_t bytes;
        if (qlib_mul_overflows(tasks * F16_PANEL * sizeof(float), k, &bytes))
            return qlib_fail(QLIB_ERR_ARG, "qlib_matmul: fp16 panels of k=%zu overflow", k);
        j.panels = qlib_ctx_scratch(ctx, bytes, "qlib_matmul");
        if (!j.panels) return QLIB_ERR_NOMEM;
    }
    qlib_ctx_parallel_for(ctx, float_task, &j, tasks);
    return QLIB_OK;
}
