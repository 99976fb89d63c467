/* make bench, sections "linalg" and "builds": the built-in linear algebra
 * (src/linalg/builtin*.c, the library's own with make BLAS=none) against
 * OpenBLAS, measured in the same run.
 *
 * linalg: GFLOP/s of the built-in SGEMM on the products GPTQ and AWQ make,
 * of SYRK, Cholesky and the triangular inverse, against OpenBLAS's (cblas_*,
 * LAPACK's spotrf/strtri), one thread each, median of 5 after a warm-up, in
 * the thread's CPU time.
 *
 * builds: qlib_quantize with GPTQ and AWQ in the OpenBLAS build (this
 * program's qlib) and in the BLAS=none build, linked in with every global
 * symbol renamed nb_<name> (Makefile: qlib_noblas.o), on 1 and 2 threads;
 * the two builds' runs alternate, median of 3, wall clock and the process's
 * CPU time. In a BLAS=none bench (no peer linked) it says so. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qlib.h"
#include "linalg/builtin.h"
#include "linalg.h"
#include "rng.h"

#ifndef QLIB_BENCH_PEER
#define QLIB_BENCH_PEER 0
#endif

/* LAPACK as gfortran compiles it (OpenBLAS exports these). */
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
extern void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda,
                    int *info, size_t uplo_len, size_t diag_len);

#define REPS 5
#define QREPS 3

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    return t[n / 2];
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t rng = 0x6c696e616c67ull;
static float normal(void) { return (float)rng_normal(&rng); }

static float *random_floats(size_t n)
{
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = normal();
    return p;
}

/* ---- linalg ---- */

typedef struct op {
    int ta, tb;
    size_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    float *c;
    size_t lda, ldb, ldc;
    float *mat;          /* factorizations: the matrix, restored from src before each run */
    const float *src;
} op;

typedef void (*op_fn)(const op *o);

static void gemm_builtin(const op *o)
{
    qlib_lb_sgemm(o->ta, o->tb, o->m, o->n, o->k, o->alpha, o->a, o->lda, o->b, o->ldb, o->beta,
                  o->c, o->ldc);
}

static void gemm_generic(const op *o)
{
    qlib_lb_gemm_generic.gemm(o->ta, o->tb, o->m, o->n, o->k, o->alpha, o->a, o->lda, o->b, o->ldb,
                              o->c, o->ldc, o->beta != 0.0f);
}

static void gemm_openblas(const op *o)
{
    cblas_sgemm(CblasRowMajor, o->ta ? CblasTrans : CblasNoTrans, o->tb ? CblasTrans : CblasNoTrans,
                (int)o->m, (int)o->n, (int)o->k, o->alpha, o->a, (int)o->lda, o->b, (int)o->ldb,
                o->beta, o->c, (int)o->ldc);
}

static void syrk_builtin(const op *o)
{
    qlib_lb_syrk_upper(o->n, o->k, o->alpha, o->a, o->lda, o->beta, o->c, o->ldc);
}

static void syrk_openblas(const op *o)
{
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)o->n, (int)o->k, o->alpha, o->a,
                (int)o->lda, o->beta, o->c, (int)o->ldc);
}

static void chol_builtin(const op *o)
{
    if (qlib_lb_cholesky_lower(o->n, o->mat, o->n)) fprintf(stderr, "bench: cholesky failed\n");
}

static void chol_openblas(const op *o)
{
    int n = (int)o->n, info = 0;
    spotrf_("U", &n, o->mat, &n, &info, 1);
    if (info) fprintf(stderr, "bench: spotrf failed\n");
}

static void inv_builtin(const op *o)
{
    if (qlib_lb_tri_inverse_lower(o->n, o->mat, o->n)) fprintf(stderr, "bench: inverse failed\n");
}

static void inv_openblas(const op *o)
{
    int n = (int)o->n, info = 0;
    strtri_("U", "N", &n, o->mat, &n, &info, 1, 1);
    if (info) fprintf(stderr, "bench: strtri failed\n");
}

/* Median thread CPU seconds of REPS runs after a warm-up; the matrix of a
 * factorization is restored before each run, outside the timing. */
static double time_op(op_fn f, const op *o)
{
    double t[REPS];
    for (int r = -1; r < REPS; r++) {
        if (o->mat) memcpy(o->mat, o->src, o->n * o->n * sizeof(float));
        double t0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        f(o);
        if (r >= 0) t[r] = clock_s(CLOCK_THREAD_CPUTIME_ID) - t0;
    }
    return median(t, REPS);
}

static void linalg_row(const char *what, const char *shape, double flops, op_fn mine, op_fn theirs,
                       const op *o)
{
    double tm = time_op(mine, o), tt = time_op(theirs, o);
    printf("| %s | %s | %.1f | %.1f | %.2f |\n", what, shape, flops / tm * 1e-9, flops / tt * 1e-9,
           tt / tm);
    fflush(stdout);
}

/* A k x k Cholesky factor's input: X^T X / rows + I from rows of normal
 * values (positive definite, condition number in the hundreds), and its
 * Cholesky factor for the inverse. */
static void spd(size_t k, float *a, float *l)
{
    size_t rows = k + 64;
    float *x = random_floats(rows * k);
    qlib_lb_syrk_upper(k, rows, 1.0f / (float)rows, x, k, 0.0f, a, k);
    for (size_t i = 0; i < k; i++) {
        a[i * k + i] += 1.0f;
        for (size_t j = 0; j < i; j++) a[i * k + j] = a[j * k + i];
    }
    memcpy(l, a, k * k * sizeof(float));
    if (qlib_lb_cholesky_lower(k, l, k)) fprintf(stderr, "bench: cholesky failed\n");
    free(x);
}

void bench_linalg_table(void)
{
    const qlib_lb_gemm_kernel *best = qlib_lb_gemm_best();
    printf("\n## Built-in linear algebra (make BLAS=none) against OpenBLAS, 1 thread\n\n"
           "GEMM microkernel %s (and %s, the baseline-ISA compile); median of %d runs, thread CPU "
           "time. x = OpenBLAS time / built-in time.\n\n| operation | shape | built-in GFLOP/s | "
           "OpenBLAS GFLOP/s | x |\n|---|---|---|---|---|\n",
           best->name, qlib_lb_gemm_generic.name, REPS);
    size_t big = 4096;
    float *a = random_floats(big * big), *b = random_floats(big * big), *c = random_floats(big * big);
    static const struct { const char *what; int ta, tb; size_t m, n, k; float alpha, beta; } g[] = {
        { "SGEMM NN", 0, 0, 1024, 1024, 1024, 1.0f, 0.0f },
        { "SGEMM NN, GPTQ block update", 0, 0, 4096, 3968, 128, -1.0f, 1.0f },
        { "SGEMM NT, AWQ D X^T", 0, 1, 256, 512, 4096, 1.0f, 0.0f },
        { "SGEMM NN, AWQ D G", 0, 0, 256, 4096, 4096, 1.0f, 0.0f },
        { "SGEMM TN, AWQ Gram X^T X", 1, 0, 4096, 4096, 512, 1.0f, 0.0f },
        { "SGEMM TT", 1, 1, 1024, 1024, 1024, 1.0f, 0.0f },
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
        op o = { g[i].ta, g[i].tb, g[i].m, g[i].n, g[i].k, g[i].alpha, g[i].beta, a, b, c,
                 g[i].ta ? g[i].m : g[i].k, g[i].tb ? g[i].k : g[i].n, g[i].n, NULL, NULL };
        char shape[64];
        snprintf(shape, sizeof shape, "%zux%zux%zu", g[i].m, g[i].n, g[i].k);
        linalg_row(g[i].what, shape, 2.0 * (double)g[i].m * (double)g[i].n * (double)g[i].k,
                   gemm_builtin, gemm_openblas, &o);
        if (i == 0)
            linalg_row("SGEMM NN, baseline-ISA kernel", shape, 2.0 * 1024 * 1024 * 1024,
                       gemm_generic, gemm_openblas, &o);
    }
    op s = { 1, 0, big, big, 2048, 2.0f / 2048.0f, 0.5f, a, NULL, c, big, 0, big, NULL, NULL };
    linalg_row("SYRK, calibration Hessian", "4096, 2048 tokens", (double)big * big * 2048.0,
               syrk_builtin, syrk_openblas, &s);
    float *src = xmalloc(big * big * sizeof(float)), *lsrc = xmalloc(big * big * sizeof(float));
    spd(big, src, lsrc);
    op f = { 0, 0, 0, big, 0, 0.0f, 0.0f, NULL, NULL, NULL, 0, 0, 0, c, src };
    double third = (double)big * big * big / 3.0;
    linalg_row("Cholesky", "4096", third, chol_builtin, chol_openblas, &f);
    f.src = lsrc;
    linalg_row("triangular inverse", "4096", third, inv_builtin, inv_openblas, &f);
    free(a);
    free(b);
    free(c);
    free(src);
    free(lsrc);
}

/* ---- builds ---- */

#if QLIB_BENCH_PEER
/* The public functions the comparison calls, from either build. */
#define BENCH_API(X) X(qlib_ctx_create) X(qlib_ctx_set_threads) X(qlib_ctx_destroy) \
    X(qlib_config_create) X(qlib_config_set_int) X(qlib_config_destroy) X(qlib_calib_create) \
    X(qlib_calib_add) X(qlib_calib_destroy) X(qlib_quantize) X(qlib_tensor_destroy) \
    X(qlib_last_error)

typedef struct bench_api {
    const char *name;
#define FIELD(f) __typeof__(f) *f;
    BENCH_API(FIELD)
#undef FIELD
} bench_api;

#define DECLARE(f) extern __typeof__(f) nb_##f;
BENCH_API(DECLARE)
#undef DECLARE

typedef struct build_state {
    const bench_api *api;
    qlib_ctx *ctx[2];              /* 1 and 2 threads */
    qlib_calib *hessian, *awq;
    double calib_s;                /* seconds of the Hessian's calib_add */
} build_state;

static void check(const bench_api *api, qlib_status s, const char *what)
{
    if (s == QLIB_OK) return;
    fprintf(stderr, "bench: %s build: %s: %s\n", api->name, what, api->qlib_last_error());
    exit(1);
}

/* Activations of rank 64 with channel scales that vary, outliers every 64th. */
static float *acts(size_t m, size_t k)
{
    size_t rank = 64;
    float *basis = random_floats(rank * k), *x = xmalloc(m * k * sizeof(float));
    for (size_t i = 0; i < m; i++) {
        float z[64];
        for (size_t r = 0; r < rank; r++) z[r] = normal() / 8.0f;
        for (size_t j = 0; j < k; j++) {
            float v = 0.3f * normal();
            for (size_t r = 0; r < rank; r++) v += z[r] * basis[r * k + j];
            x[i * k + j] = v * (0.3f + (float)(j % 10) * 0.1f) * (j % 64 == 11 ? 6.0f : 1.0f);
        }
    }
    free(basis);
    return x;
}

static void build_init(build_state *b, const bench_api *api, size_t k, const float *xh,
                       size_t tokens, const float *xa, size_t samples)
{
    b->api = api;
    for (int t = 0; t < 2; t++) {
        check(api, api->qlib_ctx_create(&b->ctx[t]), "ctx");
        check(api, api->qlib_ctx_set_threads(b->ctx[t], t + 1), "threads");
    }
    check(api, api->qlib_calib_create(b->ctx[0], k, QLIB_CALIB_HESSIAN, 0, &b->hessian), "calib");
    double t0 = clock_s(CLOCK_MONOTONIC);
    check(api, api->qlib_calib_add(b->hessian, xh, tokens, k), "calib_add");
    b->calib_s = clock_s(CLOCK_MONOTONIC) - t0;
    check(api, api->qlib_calib_create(b->ctx[0], k, QLIB_CALIB_ALL, samples, &b->awq), "calib");
    check(api, api->qlib_calib_add(b->awq, xa, samples, k), "calib_add");
}

static void build_free(build_state *b)
{
    b->api->qlib_calib_destroy(b->hessian);
    b->api->qlib_calib_destroy(b->awq);
    for (int t = 0; t < 2; t++) b->api->qlib_ctx_destroy(b->ctx[t]);
}

/* One timed quantize: wall and process CPU seconds. */
static void quantize_once(const build_state *b, qlib_method m, int threads, const float *w,
                          size_t n, size_t k, double *wall, double *cpu)
{
    const bench_api *api = b->api;
    qlib_config *cfg;
    check(api, api->qlib_config_create(m, &cfg), "config");
    check(api, api->qlib_config_set_int(cfg, QLIB_PARAM_BITS, 4), "bits");
    check(api, api->qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 128), "group");
    qlib_tensor *t;
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    check(api, api->qlib_quantize(b->ctx[threads - 1], w, n, k, k, cfg,
                                  m == QLIB_METHOD_GPTQ ? b->hessian : b->awq, &t), "quantize");
    *wall = clock_s(CLOCK_MONOTONIC) - w0;
    *cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    api->qlib_tensor_destroy(t);
    api->qlib_config_destroy(cfg);
}

void bench_builds_table(void)
{
    printf("\n## GPTQ and AWQ quantize time, OpenBLAS build against BLAS=none build\n\n");
    static const bench_api openblas = { "OpenBLAS",
#define REF(f) f,
                                        BENCH_API(REF)
#undef REF
    };
    static const bench_api none = { "BLAS=none",
#define PEER(f) nb_##f,
                                    BENCH_API(PEER)
#undef PEER
    };
    size_t n = 4096, k = 4096, tokens = 2048, samples = 512;
    printf("INT4, groups of 128, %zux%zu; GPTQ from %zu calibration tokens, AWQ from %zu samples. "
           "Runs of the two builds alternate; median of %d; wall-clock seconds (process CPU "
           "seconds). OpenBLAS on 1 thread (its own threads are not the context's).\n\n",
           n, k, tokens, samples, QREPS);
    float *w = random_floats(n * k), *xh = acts(tokens, k), *xa = acts(samples, k);
    for (size_t i = 0; i < n * k; i++) w[i] *= 0.02f;
    build_state b[2];
    build_init(&b[0], &openblas, k, xh, tokens, xa, samples);
    build_init(&b[1], &none, k, xh, tokens, xa, samples);
    printf("| | threads | OpenBLAS | BLAS=none | BLAS=none / OpenBLAS |\n|---|---|---|---|---|\n");
    printf("| calibration Hessian (calib_add, %zu tokens) | 1 | %.3f s | %.3f s | %.2f |\n", tokens,
           b[0].calib_s, b[1].calib_s, b[1].calib_s / b[0].calib_s);
    static const struct { qlib_method m; const char *name; } methods[] = {
        { QLIB_METHOD_GPTQ, "GPTQ" }, { QLIB_METHOD_AWQ, "AWQ" } };
    for (size_t mi = 0; mi < 2; mi++)
        for (int threads = 1; threads <= 2; threads++) {
            double wall[2][QREPS], cpu[2][QREPS];
            for (int r = 0; r < QREPS; r++)
                for (int bi = 0; bi < 2; bi++)
                    quantize_once(&b[bi], methods[mi].m, threads, w, n, k, &wall[bi][r], &cpu[bi][r]);
            double mw[2], mc[2];
            for (int bi = 0; bi < 2; bi++) {
                mw[bi] = median(wall[bi], QREPS);
                mc[bi] = median(cpu[bi], QREPS);
            }
            printf("| %s quantize | %d | %.2f s (%.2f) | %.2f s (%.2f) | %.2f |\n",
                   methods[mi].name, threads, mw[0], mc[0], mw[1], mc[1], mw[1] / mw[0]);
            fflush(stdout);
        }
    build_free(&b[0]);
    build_free(&b[1]);
    free(w);
    free(xh);
    free(xa);
}
#else
void bench_builds_table(void)
{
    printf("\n## GPTQ and AWQ quantize time, OpenBLAS build against BLAS=none build\n\n"
           "This bench is the BLAS=none build's: `make bench` (the OpenBLAS build's) links both "
           "and compares them.\n");
}
#endif
