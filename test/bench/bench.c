/* make bench: qlib's packed kernels against OpenBLAS on the layers of a 7B
 * model, measured in the same run on the same machine.
 *
 * Every time is the median of several repetitions after one warm-up run.
 * Ratios are OpenBLAS time / qlib time (sgemv for M = 1, sgemm for M > 1),
 * both on one thread unless a row says otherwise. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qlib.h"
#include "ceiling.h"
#include "linalg.h"
#include "host.h"
#include "rng.h"

/* ---- timing ---- */

/* One-thread rows are timed in this thread's CPU time, which other
 * processes on a shared machine do not inflate; rows with 2 threads (and
 * the quantize rows) in wall-clock time. */
static clockid_t bench_clock = CLOCK_THREAD_CPUTIME_ID;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(bench_clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void print_load(void)
{
    char buf[128] = "";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("Load average at start (/proc/loadavg): %s\n", buf);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*bench_fn)(void *arg);

/* Median seconds of reps runs, after one warm-up. */
static double median_time(bench_fn f, void *arg, int reps)
{
    double t[32];
    if (reps > 32) reps = 32;
    f(arg);
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        f(arg);
        t[i] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

static void die(const char *what, qlib_status s)
{
    fprintf(stderr, "bench: %s: %s (%s)\n", what, qlib_status_string(s), qlib_last_error());
    exit(1);
}

/* ---- data ---- */

static uint64_t rng_state = 0x62656e6368ull;
static double uniform01(void) { return rng_uniform01(&rng_state); }
static float normal(void) { return (float)rng_normal(&rng_state); }

/* Weights: normal with a heavy tail (every 97th weight x8), scale 0.02. */
static float *make_weights(size_t n, size_t k)
{
    float *w = malloc(n * k * sizeof *w);
    if (!w) exit(1);
    for (size_t i = 0; i < n * k; i++) w[i] = 0.02f * normal() * (i % 97 == 5 ? 8.0f : 1.0f);
    return w;
}

/* Correlated activations: rank-64 mixture plus noise, channel scales that
 * vary 10x, every 64th channel an outlier (x outlier). */
static float *make_acts(size_t m, size_t k, float outlier)
{
    size_t rank = 64;
    float *basis = malloc(rank * k * sizeof *basis), *x = malloc(m * k * sizeof *x);
    if (!basis || !x) exit(1);
    for (size_t i = 0; i < rank * k; i++) basis[i] = normal();
    for (size_t i = 0; i < m; i++) {
        float c[64];
        for (size_t r = 0; r < rank; r++) c[r] = normal() / 8.0f;
        for (size_t j = 0; j < k; j++) {
            float v = 0.3f * normal();
            for (size_t r = 0; r < rank; r++) v += c[r] * basis[r * k + j];
            float s = 0.3f + (float)(j % 10) * 0.1f;
            x[i * k + j] = v * s * (j % 64 == 11 ? outlier : 1.0f);
        }
    }
    free(basis);
    return x;
}

/* ---- memory read bandwidth: a vectorised sum over 1 GiB ---- */

typedef float v8f __attribute__((vector_size(32)));

#define SUM_BODY                                                                   \
    v8f s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 }, s4 = { 0 }, s5 = { 0 },   \
        s6 = { 0 }, s7 = { 0 };                                                    \
    for (size_t i = 0; i < n; i += 8) {                                            \
        s0 += a[i];     s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3];            \
        s4 += a[i + 4]; s5 += a[i + 5]; s6 += a[i + 6]; s7 += a[i + 7];            \
    }                                                                              \
    v8f s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));                     \
    return s[0] + s[7];

static float sum_plain(const v8f *a, size_t n) { SUM_BODY }
#if defined(__x86_64__)
/* with 256-bit loads, as the kernels and OpenBLAS use */
__attribute__((target("avx2"))) static float sum_avx2(const v8f *a, size_t n) { SUM_BODY }
#endif

/* A plain read on 1 or 2 threads. The second reader is a thread that
 * sleeps between reads; the caller wakes it and waits until it runs before
 * the clock starts, so a read times memory, not a thread's wake-up, and
 * the caller spins until both halves are read, so any clock sees the
 * slower one. */
typedef struct reader {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned long req;   /* under mu */
    int quit;            /* under mu */
    int ready, start, done;   /* atomic */
    float (*sum)(const v8f *, size_t);
    const v8f *a;        /* written under mu, before req */
    size_t n;
    float out;
} reader;

static void *reader_main(void *p)
{
    reader *r = p;
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        while (r->req == seen && !r->quit) pthread_cond_wait(&r->cv, &r->mu);
        seen = r->req;
        int quit = r->quit;
        const v8f *a = r->a;
        size_t n = r->n;
        pthread_mutex_unlock(&r->mu);
        if (quit) return NULL;
        __atomic_store_n(&r->ready, 1, __ATOMIC_RELEASE);
        while (!__atomic_load_n(&r->start, __ATOMIC_ACQUIRE)) {}
        r->out = r->sum(a, n);
        __atomic_store_n(&r->ready, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&r->start, 0, __ATOMIC_RELAXED);
        __atomic_add_fetch(&r->done, 1, __ATOMIC_RELEASE);
    }
}

static void reader_start(reader *r)
{
    memset(r, 0, sizeof *r);
    r->sum = sum_plain;   /* the sum this CPU runs fastest */
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) r->sum = sum_avx2;
#endif
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->th, NULL, reader_main, r) != 0) {
        fprintf(stderr, "bench: cannot start a thread\n");
        exit(1);
    }
}

static void reader_stop(reader *r)
{
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

/* Seconds to sum the n vectors at a (a multiple of 8) on the caller's
 * thread alone, or (two) with r summing the second half. */
static double read_time(reader *r, int two, const v8f *a, size_t n, float *sink)
{
    if (!two) {
        double t0 = now_s();
        *sink += r->sum(a, n);
        return now_s() - t0;
    }
    size_t half = n / 16 * 8;   /* whole groups of 8 vectors */
    int d0 = __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
    pthread_mutex_lock(&r->mu);
    r->a = a + half;
    r->n = n - half;
    r->req++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    while (!__atomic_load_n(&r->ready, __ATOMIC_ACQUIRE)) {}
    double t0 = now_s();
    __atomic_store_n(&r->start, 1, __ATOMIC_RELEASE);
    *sink += r->sum(a, half);
    while (__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) == d0) {}
    double t = now_s() - t0;
    *sink += r->out;
    return t;
}

/* GB/s of a vectorised sum over 1 GiB, on 1 or 2 threads (each its half),
 * best of 3, wall clock. */
static double read_bandwidth(reader *rd, int threads)
{
    size_t n = (size_t)1 << 25;   /* vectors of 8 floats: 1 GiB */
    v8f *a = aligned_alloc(64, n * sizeof(v8f));
    if (!a) return 0.0;
    for (size_t i = 0; i < n; i++) a[i] = (v8f){ 1, 1, 1, 1, 1, 1, 1, 1 };
    clockid_t saved = bench_clock;
    bench_clock = CLOCK_MONOTONIC;
    double best = 1e30;
    float sink = 0.0f;
    for (int rep = 0; rep < 3; rep++) {
        double t = read_time(rd, threads > 1, a, n, &sink);
        if (t < best) best = t;
    }
    bench_clock = saved;
    free(a);
    if (sink < 0.0f) printf("?");
    return (double)n * sizeof(v8f) / best / 1e9;
}

/* ---- the operations timed ---- */

typedef struct mm_arg {
    qlib_ctx *ctx;
    const qlib_tensor *t;
    const float *x, *w;
    float *y;
    size_t m, n, k;
} mm_arg;

static void run_qlib(void *p)
{
    mm_arg *a = p;
    qlib_status s = qlib_matmul(a->ctx, a->t, a->x, a->m, a->k, a->y, a->n);
    if (s != QLIB_OK) die("qlib_matmul", s);
}

static void run_blas(void *p)
{
    mm_arg *a = p;
    if (a->m == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)a->n, (int)a->k, 1.0f, a->w, (int)a->k,
                    a->x, 1, 0.0f, a->y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->m, (int)a->n, (int)a->k,
                    1.0f, a->x, (int)a->k, a->w, (int)a->k, 0.0f, a->y, (int)a->n);
}

static int reps_for(size_t m) { return m >= 512 ? 5 : m >= 128 ? 5 : 9; }

static qlib_tensor *quantize_rtn(qlib_ctx *ctx, const float *w, size_t n, size_t k, int bits,
                                 int group, int sym)
{
    qlib_config *c;
    qlib_tensor *t;
    qlib_status s = qlib_config_create(bits >= 16 ? QLIB_METHOD_NONE : QLIB_METHOD_RTN, &c);
    if (s != QLIB_OK) die("config", s);
    qlib_config_set_int(c, QLIB_PARAM_BITS, bits);
    if (bits < 16) {
        qlib_config_set_int(c, QLIB_PARAM_GROUP_SIZE, group);
        qlib_config_set_int(c, QLIB_PARAM_SYMMETRIC, sym);
    }
    s = qlib_quantize(ctx, w, n, k, k, c, NULL, &t);
    if (s != QLIB_OK) die("quantize", s);
    qlib_config_destroy(c);
    return t;
}

static double time_qlib(qlib_ctx *ctx, const qlib_tensor *t, const float *x, float *y, size_t m,
                        size_t n, size_t k)
{
    mm_arg a = { ctx, t, x, NULL, y, m, n, k };
    return median_time(run_qlib, &a, reps_for(m));
}

static double time_blas(const float *w, const float *x, float *y, size_t m, size_t n, size_t k)
{
    mm_arg a = { NULL, NULL, x, w, y, m, n, k };
    return median_time(run_blas, &a, reps_for(m));
}

/* ---- sections ---- */

static void shapes_table(qlib_ctx *ctx, double bw)
{
    static const size_t shapes[][2] = { { 4096, 4096 }, { 11008, 4096 }, { 4096, 11008 },
                                        { 2048, 2048 } };
    static const size_t ms[] = { 1, 16, 128, 512 };
    float *x = make_acts(512, 11008, 4.0f), *y = malloc(512 * 11008 * sizeof(float));
    if (!y) exit(1);
    printf("\n## qlib_matmul vs OpenBLAS, 1 thread (median; ratio = OpenBLAS time / qlib time)\n\n");
    printf("| N x K | M | fp32 OpenBLAS ms | INT4 g128 ms | x | GFLOP/s | INT8 ms | x | GFLOP/s "
           "| GB/s fp32 | GB/s INT4 | GB/s INT8 |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], k = shapes[s][1];
        float *w = make_weights(n, k);
        qlib_tensor *t4 = quantize_rtn(ctx, w, n, k, 4, 128, 0);
        qlib_tensor *t8 = quantize_rtn(ctx, w, n, k, 8, 0, 1);
        for (size_t mi = 0; mi < 4; mi++) {
            size_t m = ms[mi];
            if (n == 2048 && m != 1 && m != 128) continue;
            double tb = time_blas(w, x, y, m, n, k);
            double t4s = time_qlib(ctx, t4, x, y, m, n, k);
            double t8s = time_qlib(ctx, t8, x, y, m, n, k);
            double flop = 2.0 * (double)m * (double)n * (double)k;
            printf("| %zux%zu | %zu | %.3f | %.3f | %.2f | %.1f | %.3f | %.2f | %.1f |", n, k, m,
                   tb * 1e3, t4s * 1e3, tb / t4s, flop / t4s / 1e9, t8s * 1e3, tb / t8s,
                   flop / t8s / 1e9);
            if (m == 1)
                printf(" %.1f | %.1f | %.1f |\n", (double)(n * k * 4) / tb / 1e9,
                       (double)qlib_tensor_storage_bytes(t4) / t4s / 1e9,
                       (double)qlib_tensor_storage_bytes(t8) / t8s / 1e9);
            else
                printf(" | | |\n");
            fflush(stdout);
        }
        qlib_tensor_destroy(t4);
        qlib_tensor_destroy(t8);
        free(w);
    }
    printf("\nGB/s: bytes of weights (fp32, or packed codes + scales + zeros) per second at "
           "M = 1; read bandwidth measured above: %.1f GB/s\n", bw);
    free(x);
    free(y);
}

/* ---- M = 1 with weights that come from memory, not cache ---- */

/* Each timed call uses the next of several copies of the weights, together
 * at least 4x the 32 MB L3 of this class of machine, so every call streams
 * its weights from DRAM, as a model larger than the cache does token after
 * token. (The table above repeats one matrix: its smaller quantized forms
 * may stay partly in L3 between repetitions.) */
#define COLD_BYTES ((size_t)256 << 20)

typedef struct cold_set {
    size_t count;
    qlib_tensor *t[64];
    float *w[8];
} cold_set;

static size_t copies_for(size_t bytes, size_t cap)
{
    size_t c = COLD_BYTES / bytes + 1;
    return c > cap ? cap : c;
}

static void cold_tensors(qlib_ctx *ctx, const qlib_tensor *t, cold_set *cs)
{
    size_t bytes, written;
    qlib_status s = qlib_tensor_serialized_size(t, &bytes);
    if (s != QLIB_OK) die("serialized_size", s);
    void *buf = malloc(bytes);
    if (!buf) exit(1);
    if ((s = qlib_tensor_serialize(t, buf, bytes, &written)) != QLIB_OK) die("serialize", s);
    cs->count = copies_for(qlib_tensor_storage_bytes(t), 64);
    for (size_t i = 0; i < cs->count; i++)
        if ((s = qlib_tensor_deserialize(ctx, buf, written, 0, &cs->t[i])) != QLIB_OK)
            die("deserialize", s);
    free(buf);
}

static void cold_free(cold_set *cs)
{
    for (size_t i = 0; i < cs->count; i++) {
        if (cs->t[0]) qlib_tensor_destroy(cs->t[i]);
        else free(cs->w[i]);
    }
    cs->count = 0;
}

static double cold_median(qlib_ctx *ctx, const cold_set *cs, const float *x, float *y, size_t n,
                          size_t k, int reps)
{
    double t[64];
    mm_arg a = { ctx, NULL, x, NULL, y, 1, n, k };
    for (int i = -1; i < reps; i++) {
        size_t c = (size_t)(i + 1) % cs->count;
        if (cs->t[0]) a.t = cs->t[c];
        else a.w = cs->w[c];
        double t0 = now_s();
        if (cs->t[0]) run_qlib(&a);
        else run_blas(&a);
        if (i >= 0) t[i] = now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return t[reps / 2];
}

static void cold_gemv_table(qlib_ctx *ctx, double bw)
{
    static const size_t shapes[][2] = { { 4096, 4096 }, { 11008, 4096 } };
    printf("\n## M = 1 with weights streamed from memory, 1 thread (median of 15; every call on "
           "another copy, copies >= 256 MB per format)\n\n");
    printf("| N x K | sgemv ms | GB/s | INT4 g128 ms | x | GB/s | INT8 ms | x | GB/s | fp16 ms | x "
           "| GB/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    float *x = make_acts(1, 11008, 4.0f), *y = malloc(11008 * sizeof(float));
    if (!y) exit(1);
    for (size_t s = 0; s < 2; s++) {
        size_t n = shapes[s][0], k = shapes[s][1];
        float *w = make_weights(n, k);
        cold_set cb = { 0 }, c4 = { 0 }, c8 = { 0 }, c16 = { 0 };
        cb.count = copies_for(n * k * sizeof(float), 8);
        for (size_t i = 0; i < cb.count; i++) {
            cb.w[i] = malloc(n * k * sizeof(float));
            if (!cb.w[i]) exit(1);
            memcpy(cb.w[i], w, n * k * sizeof(float));
        }
        qlib_tensor *t4 = quantize_rtn(ctx, w, n, k, 4, 128, 0);
        qlib_tensor *t8 = quantize_rtn(ctx, w, n, k, 8, 0, 1);
        qlib_tensor *t16 = quantize_rtn(ctx, w, n, k, 16, 0, 0);
        cold_tensors(ctx, t4, &c4);
        cold_tensors(ctx, t8, &c8);
        cold_tensors(ctx, t16, &c16);
        double tb = cold_median(ctx, &cb, x, y, n, k, 15), t4s = cold_median(ctx, &c4, x, y, n, k, 15);
        double t8s = cold_median(ctx, &c8, x, y, n, k, 15), t16s = cold_median(ctx, &c16, x, y, n, k, 15);
        printf("| %zux%zu | %.3f | %.1f | %.3f | %.2f | %.1f | %.3f | %.2f | %.1f | %.3f | %.2f | %.1f |\n",
               n, k, tb * 1e3, (double)(n * k * 4) / tb / 1e9, t4s * 1e3, tb / t4s,
               (double)qlib_tensor_storage_bytes(t4) / t4s / 1e9, t8s * 1e3, tb / t8s,
               (double)qlib_tensor_storage_bytes(t8) / t8s / 1e9, t16s * 1e3, tb / t16s,
               (double)qlib_tensor_storage_bytes(t16) / t16s / 1e9);
        fflush(stdout);
        cold_free(&cb);
        cold_free(&c4);
        cold_free(&c8);
        cold_free(&c16);
        qlib_tensor_destroy(t4);
        qlib_tensor_destroy(t8);
        qlib_tensor_destroy(t16);
        free(w);
    }
    printf("\nRead bandwidth measured above: %.1f GB/s. fp16 is a NONE tensor (bits 16).\n", bw);
    free(x);
    free(y);
}

/* INT4 g32 against g128 (asymmetric) at M = 1, one thread: the two
 * interleaved call by call, on one tensor (hot) and on the next of several
 * copies (from memory); medians. */
static void g32_table(qlib_ctx *ctx)
{
    static const size_t shapes[][2] = { { 4096, 4096 }, { 11008, 4096 }, { 4096, 11008 },
                                        { 1024, 4096 }, { 512, 11008 } };
    enum { R = 101 };
    printf("\n## INT4 g32 against g128, M = 1, 1 thread (interleaved, median of %d)\n\n"
           "| N x K | g128 hot ms | g32 hot ms | g32 / g128 | g128 from memory ms | g32 ms | "
           "g32 / g128 |\n|---|---|---|---|---|---|---|\n", R);
    float *x = make_acts(1, 11008, 4.0f), *y = malloc(11008 * sizeof(float));
    if (!y) exit(1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t n = shapes[s][0], k = shapes[s][1];
        float *w = make_weights(n, k);
        qlib_tensor *t[2] = { quantize_rtn(ctx, w, n, k, 4, 128, 0),
                              quantize_rtn(ctx, w, n, k, 4, 32, 0) };
        cold_set cs[2] = { { 0 }, { 0 } };
        double med[2][2];   /* [hot, memory][g128, g32] */
        for (int f = 0; f < 2; f++) cold_tensors(ctx, t[f], &cs[f]);
        for (int mode = 0; mode < 2; mode++) {
            double tm[2][R];
            for (int r = -1; r < R; r++)
                for (int f = 0; f < 2; f++) {
                    mm_arg a = { ctx, mode ? cs[f].t[(size_t)(r + 1) % cs[f].count] : t[f], x,
                                 NULL, y, 1, n, k };
                    double t0 = now_s();
                    run_qlib(&a);
                    if (r >= 0) tm[f][r] = now_s() - t0;
                }
            for (int f = 0; f < 2; f++) {
                qsort(tm[f], R, sizeof(double), cmp_double);
                med[mode][f] = tm[f][R / 2];
            }
        }
        printf("| %zux%zu | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f |\n", n, k, med[0][0] * 1e3,
               med[0][1] * 1e3, med[0][1] / med[0][0], med[1][0] * 1e3, med[1][1] * 1e3,
               med[1][1] / med[1][0]);
        fflush(stdout);
        for (int f = 0; f < 2; f++) {
            cold_free(&cs[f]);
            qlib_tensor_destroy(t[f]);
        }
        free(w);
    }
    free(x);
    free(y);
}

static void compute_f32_rows(qlib_ctx *ctx)
{
    size_t n = 4096, k = 4096;
    float *w = make_weights(n, k), *x = make_acts(128, k, 4.0f), *y = malloc(128 * n * 4);
    if (!y) exit(1);
    qlib_tensor *t4 = quantize_rtn(ctx, w, n, k, 4, 128, 0);
    printf("\n## COMPUTE_F32 (fp32 arithmetic on dequantized weights), INT4 g128 4096x4096, 1 "
           "thread\n\n| M | fp32 OpenBLAS ms | INT4 F32 ms | x |\n|---|---|---|---|\n");
    qlib_ctx_set_compute(ctx, QLIB_COMPUTE_F32);
    for (size_t m = 1; m <= 128; m *= 128) {
        double tb = time_blas(w, x, y, m, n, k), tq = time_qlib(ctx, t4, x, y, m, n, k);
        printf("| %zu | %.3f | %.3f | %.2f |\n", m, tb * 1e3, tq * 1e3, tb / tq);
    }
    qlib_ctx_set_compute(ctx, QLIB_COMPUTE_AUTO);
    qlib_tensor_destroy(t4);
    free(w);
    free(x);
    free(y);
}

static void thread_scaling(qlib_ctx *ctx1, qlib_ctx *ctx2)
{
    static const size_t cases[][3] = { { 1, 4096, 4096 }, { 1, 11008, 4096 }, { 128, 2048, 2048 },
                                       { 128, 4096, 4096 } };
    bench_clock = CLOCK_MONOTONIC;
    printf("\n## 2-thread scaling (INT4 g128 and INT8, AUTO; OpenBLAS with 2 threads alongside; "
           "wall-clock time)\n\n");
    printf("| M | N x K | INT4 1t ms | INT4 2t ms | speed-up | INT8 1t ms | INT8 2t ms | speed-up "
           "| OpenBLAS 1t ms | OpenBLAS 2t ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t m = cases[c][0], n = cases[c][1], k = cases[c][2];
        float *w = make_weights(n, k), *x = make_acts(m, k, 4.0f), *y = malloc(m * n * 4);
        if (!y) exit(1);
        qlib_tensor *t4 = quantize_rtn(ctx1, w, n, k, 4, 128, 0);
        qlib_tensor *t8 = quantize_rtn(ctx1, w, n, k, 8, 0, 1);
        double a1 = time_qlib(ctx1, t4, x, y, m, n, k), a2 = time_qlib(ctx2, t4, x, y, m, n, k);
        double b1 = time_qlib(ctx1, t8, x, y, m, n, k), b2 = time_qlib(ctx2, t8, x, y, m, n, k);
        double o1 = time_blas(w, x, y, m, n, k);
        openblas_set_num_threads(2);
        double o2 = time_blas(w, x, y, m, n, k);
        openblas_set_num_threads(1);
        printf("| %zu | %zux%zu | %.3f | %.3f | %.2f | %.3f | %.3f | %.2f | %.3f | %.3f |\n", m, n,
               k, a1 * 1e3, a2 * 1e3, a1 / a2, b1 * 1e3, b2 * 1e3, b1 / b2, o1 * 1e3, o2 * 1e3);
        fflush(stdout);
        qlib_tensor_destroy(t4);
        qlib_tensor_destroy(t8);
        free(w);
        free(x);
        free(y);
    }
    bench_clock = CLOCK_THREAD_CPUTIME_ID;
}

/* Decode on 1 and 2 threads with the weights streamed from memory (every
 * call on the next copy), the two thread counts interleaved call by call
 * with a plain read of as many bytes (the next of as many copies, on 1 and
 * on 2 threads), and the latency of a 2-thread call that follows 2 ms of
 * sleep or a 2-thread OpenBLAS call (whose workers then spin on the other
 * CPU) against one that follows another qlib call. Wall clock, medians. */
static void decode_threads(qlib_ctx *ctx1, qlib_ctx *ctx2, reader *rd)
{
    static const size_t shapes[][2] = { { 4096, 4096 }, { 11008, 4096 } };
    enum { R = 31 };
    bench_clock = CLOCK_MONOTONIC;
    printf("\n## Decode (M = 1) on 1 and 2 threads, weights streamed from memory (interleaved "
           "with a plain read of as many bytes, median of %d; wall clock)\n\n", R);
    printf("| N x K | format | 1 thread ms | 2 threads ms | speed-up | GB/s 1t | GB/s 2t "
           "| read GB/s 1t | read GB/s 2t | read speed-up | of read 1t | of read 2t |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    float *x = make_acts(1, 11008, 4.0f), *y = malloc(11008 * sizeof(float));
    if (!y) exit(1);
    float sink = 0.0f;
    for (size_t si = 0; si < 2; si++) {
        size_t n = shapes[si][0], k = shapes[si][1];
        float *w = make_weights(n, k);
        for (int f = 0; f < 2; f++) {
            qlib_tensor *t = f ? quantize_rtn(ctx1, w, n, k, 8, 0, 1) : quantize_rtn(ctx1, w, n, k, 4, 128, 0);
            cold_set cs = { 0 };
            cold_tensors(ctx1, t, &cs);
            /* the plain read: as many copies of the tensor's bytes (whole
             * groups of 8 vectors) */
            size_t nv = qlib_tensor_storage_bytes(t) / (8 * sizeof(v8f)) * 8;
            v8f *buf = aligned_alloc(64, cs.count * nv * sizeof(v8f));
            if (!buf) exit(1);
            for (size_t i = 0; i < cs.count * nv; i++) buf[i] = (v8f){ 1, 1, 1, 1, 1, 1, 1, 1 };
            double t1[R], t2[R], r1[R], r2[R];
            size_t c = 0, cr = 0;
            for (int r = -1; r < R; r++) {
                for (int th = 0; th < 2; th++) {
                    mm_arg a = { th ? ctx2 : ctx1, cs.t[c], x, NULL, y, 1, n, k };
                    c = (c + 1) % cs.count;
                    double t0 = now_s();
                    run_qlib(&a);
                    double dt = now_s() - t0;
                    if (r >= 0) (th ? t2 : t1)[r] = dt;
                }
                for (int th = 0; th < 2; th++) {
                    double dt = read_time(rd, th, buf + cr * nv, nv, &sink);
                    cr = (cr + 1) % cs.count;
                    if (r >= 0) (th ? r2 : r1)[r] = dt;
                }
            }
            qsort(t1, R, sizeof t1[0], cmp_double);
            qsort(t2, R, sizeof t2[0], cmp_double);
            qsort(r1, R, sizeof r1[0], cmp_double);
            qsort(r2, R, sizeof r2[0], cmp_double);
            double b = (double)qlib_tensor_storage_bytes(t), rb = (double)(nv * sizeof(v8f));
            double g1 = b / t1[R / 2] / 1e9, g2 = b / t2[R / 2] / 1e9;
            double b1 = rb / r1[R / 2] / 1e9, b2 = rb / r2[R / 2] / 1e9;
            printf("| %zux%zu | %s | %.3f | %.3f | %.2f | %.1f | %.1f | %.1f | %.1f | %.2f | %.0f%% "
                   "| %.0f%% |\n", n, k, f ? "INT8" : "INT4 g128", t1[R / 2] * 1e3,
                   t2[R / 2] * 1e3, t1[R / 2] / t2[R / 2], g1, g2, b1, b2, r1[R / 2] / r2[R / 2],
                   100.0 * g1 / b1, 100.0 * g2 / b2);
            fflush(stdout);
            free(buf);
            cold_free(&cs);
            qlib_tensor_destroy(t);
        }
        free(w);
    }
    if (sink < 0.0f) printf("?");
    /* first-call latency */
    size_t n = 4096, k = 4096;
    float *w = make_weights(n, k);
    qlib_tensor *t = quantize_rtn(ctx1, w, n, k, 4, 128, 0);
    static const char *const after[3] = { "another qlib call", "2 ms asleep",
                                          "a 2-thread OpenBLAS sgemv" };
    double lat[3][41];
    mm_arg a = { ctx2, t, x, w, y, 1, n, k };
    openblas_set_num_threads(2);
    for (int r = 0; r < 41; r++)
        for (int c = 0; c < 3; c++) {
            if (c == 0) run_qlib(&a);
            if (c == 1) {
                struct timespec ts = { 0, 2000000 };
                nanosleep(&ts, NULL);
            }
            if (c == 2) run_blas(&a);
            double t0 = now_s();
            run_qlib(&a);
            lat[c][r] = now_s() - t0;
        }
    openblas_set_num_threads(1);
    printf("\nFirst call: INT4 g128 GEMV %zux%zu on 2 threads (median of 41, ms)\n\n"
           "| the call follows | ms | x back to back |\n|---|---|---|\n", n, k);
    double base = 0.0;
    for (int c = 0; c < 3; c++) {
        qsort(lat[c], 41, sizeof(double), cmp_double);
        if (c == 0) base = lat[c][20];
        printf("| %s | %.3f | %.2f |\n", after[c], lat[c][20] * 1e3, lat[c][20] / base);
    }
    qlib_tensor_destroy(t);
    free(w);
    free(x);
    free(y);
    bench_clock = CLOCK_THREAD_CPUTIME_ID;
}

/* ---- quantization methods ---- */

typedef struct q_arg {
    qlib_ctx *ctx;
    const float *w;
    size_t n, k;
    qlib_config *cfg;
    const qlib_calib *calib;
    qlib_status status;
} q_arg;

static void run_quantize(void *p)
{
    q_arg *a = p;
    qlib_tensor *t = NULL;
    a->status = qlib_quantize(a->ctx, a->w, a->n, a->k, a->k, a->cfg, a->calib, &t);
    qlib_tensor_destroy(t);
}

static qlib_config *make_config(qlib_method method, int bits, int group)
{
    qlib_config *c;
    qlib_status s = qlib_config_create(method, &c);
    if (s != QLIB_OK) die("config", s);
    qlib_config_set_int(c, QLIB_PARAM_BITS, bits);
    if (method != QLIB_METHOD_LLM_INT8) qlib_config_set_int(c, QLIB_PARAM_GROUP_SIZE, group);
    return c;
}

static qlib_calib *make_calib(qlib_ctx *ctx, size_t k, size_t tokens, unsigned what,
                              size_t samples)
{
    qlib_calib *c;
    qlib_status s = qlib_calib_create(ctx, k, what, samples, &c);
    if (s != QLIB_OK) die("calib", s);
    for (size_t done = 0; done < tokens; done += 256) {
        size_t part = tokens - done < 256 ? tokens - done : 256;
        float *x = make_acts(part, k, 6.0f);
        s = qlib_calib_add(c, x, part, k);
        free(x);
        if (s != QLIB_OK) die("calib_add", s);
    }
    return c;
}

/* One "quantize time" row: a single timed run (these take seconds). */
static void quantize_row(const char *label, qlib_ctx *ctx, const float *w, size_t n, size_t k,
                         qlib_config *cfg, const qlib_calib *calib)
{
    q_arg a = { ctx, w, n, k, cfg, calib, QLIB_OK };
    double t0 = now_s();
    run_quantize(&a);
    double t = now_s() - t0;
    if (a.status == QLIB_OK)
        printf("| %s | %zux%zu | %d | %.3f s |\n", label, n, k, qlib_ctx_threads(ctx), t);
    else if (a.status == QLIB_ERR_UNSUPPORTED)
        printf("| %s | %zux%zu | %d | n/a: %s |\n", label, n, k, qlib_ctx_threads(ctx),
               qlib_last_error());
    else
        printf("| %s | %zux%zu | %d | failed: %s (%s) |\n", label, n, k, qlib_ctx_threads(ctx),
               qlib_status_string(a.status), qlib_last_error());
    fflush(stdout);
}

static void quantize_table(qlib_ctx *ctx1, qlib_ctx *ctx2)
{
    bench_clock = CLOCK_MONOTONIC;
    printf("\n## Quantize time per method (one run each, wall-clock)\n\n| method | N x K | threads | time "
           "|\n|---|---|---|---|\n");
    static const size_t shapes[][2] = { { 4096, 4096 }, { 11008, 4096 } };
    for (size_t s = 0; s < 2; s++) {
        size_t n = shapes[s][0], k = shapes[s][1];
        float *w = make_weights(n, k);
        qlib_config *rtn4 = make_config(QLIB_METHOD_RTN, 4, 128);
        qlib_config *rtn8 = make_config(QLIB_METHOD_RTN, 8, 0);
        quantize_row("RTN INT4 g128", ctx1, w, n, k, rtn4, NULL);
        quantize_row("RTN INT8 per-channel", ctx1, w, n, k, rtn8, NULL);
        qlib_calib *h = make_calib(ctx1, k, 2048, QLIB_CALIB_HESSIAN, 0);
        qlib_config *gptq = make_config(QLIB_METHOD_GPTQ, 4, 128);
        quantize_row("GPTQ INT4 g128, 2048 tokens", ctx1, w, n, k, gptq, h);
        quantize_row("GPTQ INT4 g128, 2048 tokens", ctx2, w, n, k, gptq, h);
        if (s == 0) {
            qlib_calib *c = make_calib(ctx1, k, 512, QLIB_CALIB_ALL, 512);
            qlib_config *awq = make_config(QLIB_METHOD_AWQ, 4, 128);
            quantize_row("AWQ INT4 g128, 512 samples", ctx1, w, n, k, awq, c);
            quantize_row("AWQ INT4 g128, 512 samples", ctx2, w, n, k, awq, c);
            qlib_config_destroy(awq);
            qlib_calib_destroy(c);
        }
        qlib_config_destroy(gptq);
        qlib_calib_destroy(h);
        qlib_config_destroy(rtn4);
        qlib_config_destroy(rtn8);
        free(w);
    }
}

/* LLM.int8(): x with a fraction of columns holding outliers (|x| = 20 in
 * one row, above the default threshold 6). */
static void llm_int8_table(qlib_ctx *ctx)
{
    size_t n = 4096, k = 4096;
    float *w = make_weights(n, k), *y = malloc(128 * n * 4);
    if (!y) exit(1);
    printf("\n## LLM.int8() matmul vs plain INT8 (RTN per-channel) and fp32, 4096x4096, 1 "
           "thread\n\n| M | outlier columns | LLM.int8 ms | INT8 ms | fp32 ms |\n|---|---|---|---|---|\n");
    qlib_config *c = make_config(QLIB_METHOD_LLM_INT8, 8, 0);
    qlib_tensor *tl = NULL;
    qlib_status s = qlib_quantize(ctx, w, n, k, k, c, NULL, &tl);
    qlib_config_destroy(c);
    if (s != QLIB_OK) {
        printf("| - | - | n/a: %s | | |\n", qlib_last_error());
        free(w);
        free(y);
        return;
    }
    qlib_tensor *t8 = quantize_rtn(ctx, w, n, k, 8, 0, 1);
    static const double fracs[] = { 0.0, 0.001, 0.01 };
    for (size_t m = 1; m <= 128; m *= 128)
        for (size_t f = 0; f < 3; f++) {
            float *x = make_acts(m, k, 1.0f);
            for (size_t i = 0; i < m * k; i++) x[i] = fmaxf(-5.0f, fminf(5.0f, x[i]));
            size_t n_out = (size_t)(fracs[f] * (double)k + 0.5);
            for (size_t o = 0; o < n_out; o++) x[(o % m) * k + (o * 977 + 13) % k] = 20.0f;
            double tl_s = time_qlib(ctx, tl, x, y, m, n, k), t8_s = time_qlib(ctx, t8, x, y, m, n, k);
            double tb = time_blas(w, x, y, m, n, k);
            printf("| %zu | %zu (%.1f%%) | %.3f | %.3f | %.3f |\n", m, n_out, fracs[f] * 100.0,
                   tl_s * 1e3, t8_s * 1e3, tb * 1e3);
            fflush(stdout);
            free(x);
        }
    qlib_tensor_destroy(tl);
    qlib_tensor_destroy(t8);
    free(w);
    free(y);
}

/* GPTQ with and without act-order: the permuted tensor's matmul permutes x
 * once per row while quantizing it. */
static void act_order_table(qlib_ctx *ctx)
{
    size_t n = 4096, k = 4096;
    float *w = make_weights(n, k), *y = malloc(128 * n * 4), *x = make_acts(128, k, 4.0f);
    if (!y) exit(1);
    qlib_calib *h = make_calib(ctx, k, 512, QLIB_CALIB_HESSIAN, 0);
    printf("\n## GPTQ act-order matmul speed, INT4 g128 4096x4096, 1 thread\n\n");
    qlib_tensor *t[2] = { NULL, NULL };
    for (int ao = 0; ao < 2; ao++) {
        qlib_config *c = make_config(QLIB_METHOD_GPTQ, 4, 128);
        qlib_config_set_int(c, QLIB_PARAM_GPTQ_ACT_ORDER, ao);
        qlib_status s = qlib_quantize(ctx, w, n, k, k, c, h, &t[ao]);
        qlib_config_destroy(c);
        if (s != QLIB_OK) {
            printf("skipped: %s\n", qlib_last_error());
            qlib_tensor_destroy(t[0]);
            qlib_calib_destroy(h);
            free(w);
            free(x);
            free(y);
            return;
        }
    }
    printf("| M | no act-order ms | act-order ms | ratio |\n|---|---|---|---|\n");
    for (size_t m = 1; m <= 128; m *= 128) {
        double a = time_qlib(ctx, t[0], x, y, m, n, k), b = time_qlib(ctx, t[1], x, y, m, n, k);
        printf("| %zu | %.3f | %.3f | %.2f |\n", m, a * 1e3, b * 1e3, b / a);
    }
    qlib_tensor_destroy(t[0]);
    qlib_tensor_destroy(t[1]);
    qlib_calib_destroy(h);
    free(w);
    free(x);
    free(y);
}

/* ---- the external layouts (docs/FORMATS.md) ---- */

typedef struct layout_run {
    qlib_ctx *ctx;
    const qlib_tensor *t;
    qlib_layout l;
    void *p[QLIB_LAYOUT_MAX_PARTS];
    size_t b[QLIB_LAYOUT_MAX_PARTS];
} layout_run;

static void run_export(void *arg)
{
    layout_run *r = arg;
    qlib_status s = qlib_tensor_export(r->t, r->l, r->p, r->b);
    if (s != QLIB_OK) die("qlib_tensor_export", s);
}

typedef struct blob_run {
    qlib_ctx *ctx;
    const void *blob;
    size_t len;
} blob_run;

static void run_load(void *arg)
{
    blob_run *b = arg;
    qlib_tensor *u;
    qlib_status s = qlib_tensor_deserialize(b->ctx, b->blob, b->len, 0, &u);
    if (s != QLIB_OK) die("qlib_tensor_deserialize", s);
    qlib_tensor_destroy(u);
}

static void run_import(void *arg)
{
    layout_run *r = arg;
    qlib_tensor *u;
    const void *p[QLIB_LAYOUT_MAX_PARTS] = { r->p[0], r->p[1], r->p[2], r->p[3] };
    qlib_status s = qlib_tensor_import(r->ctx, r->l, qlib_tensor_rows(r->t), qlib_tensor_cols(r->t),
                                       qlib_tensor_bits(r->t), qlib_tensor_group_size(r->t), p,
                                       r->b, &u);
    if (s != QLIB_OK) die("qlib_tensor_import", s);
    qlib_tensor_destroy(u);
}

/* t with a random grouping of its columns (g_idx shuffled), imported: an
 * act-order tensor. */
static qlib_tensor *act_order_copy(qlib_ctx *ctx, const qlib_tensor *t)
{
    layout_run r = { ctx, t, QLIB_LAYOUT_GPTQ, { NULL }, { 0 } };
    qlib_status s = qlib_tensor_export_size(t, QLIB_LAYOUT_GPTQ, r.b);
    if (s != QLIB_OK) die("qlib_tensor_export_size", s);
    for (int i = 0; i < 4; i++)
        if (!(r.p[i] = malloc(r.b[i]))) exit(1);
    run_export(&r);
    size_t k = qlib_tensor_cols(t);
    int32_t *g = r.p[3];
    for (size_t j = k; j-- > 1;) {
        size_t o = (size_t)(uniform01() * (double)(j + 1));
        int32_t v = g[j];
        g[j] = g[o < j ? o : j];
        g[o < j ? o : j] = v;
    }
    qlib_tensor *u;
    const void *p[4] = { r.p[0], r.p[1], r.p[2], r.p[3] };
    s = qlib_tensor_import(ctx, QLIB_LAYOUT_GPTQ, qlib_tensor_rows(t), k, qlib_tensor_bits(t),
                           qlib_tensor_group_size(t), p, r.b, &u);
    if (s != QLIB_OK) die("qlib_tensor_import", s);
    for (int i = 0; i < 4; i++) free(r.p[i]);
    return u;
}

/* Export and import of a 4096 x 11008 tensor (N x K, a down projection) in
 * every layout: GB/s of the layout's bytes, written or read. Export runs on
 * the calling thread (it takes no context); import with a 1- and a 2-thread
 * context, including making the tensor (allocation, first touch, checksum),
 * which loading the tensor's own blob (deserialize, a copy) also pays: its
 * time is the last column. */
static void layouts_table(qlib_ctx *ctx1, qlib_ctx *ctx2)
{
    size_t n = 4096, k = 11008;
    float *w = make_weights(n, k);
    printf("\n## External layouts: export and import of a %zux%zu tensor (N x K)\n\n", n, k);
    printf("GB/s counts the layout's bytes (all parts). Export: 1 thread, thread CPU time; "
           "import: 1 thread (CPU time) and 2 threads (wall-clock), making the tensor included.\n\n");
    printf("| layout | tensor | layout MB | export ms | GB/s | import 1t ms | GB/s | import 2t ms "
           "| GB/s | load blob 1t ms |\n|---|---|---|---|---|---|---|---|---|---|\n");
    struct { qlib_layout l; const char *name, *kind; int bits, group, sym, act; } rows[] = {
        { QLIB_LAYOUT_GGML_Q4_0, "GGML Q4_0", "INT4 g32 sym", 4, 32, 1, 0 },
        { QLIB_LAYOUT_GGML_Q8_0, "GGML Q8_0", "INT8 g32 sym", 8, 32, 1, 0 },
        { QLIB_LAYOUT_GPTQ, "GPTQ", "INT4 g128", 4, 128, 0, 0 },
        { QLIB_LAYOUT_GPTQ, "GPTQ", "INT4 g128 act-order", 4, 128, 0, 1 },
        { QLIB_LAYOUT_GPTQ, "GPTQ", "INT8 g128", 8, 128, 0, 0 },
        { QLIB_LAYOUT_GPTQ, "GPTQ", "INT3 g128 sym", 3, 128, 1, 0 },
        { QLIB_LAYOUT_AWQ_GEMM, "AWQ GEMM", "INT4 g128", 4, 128, 0, 0 },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        qlib_tensor *t = quantize_rtn(ctx1, w, n, k, rows[i].bits, rows[i].group, rows[i].sym);
        if (rows[i].act) {
            qlib_tensor *u = act_order_copy(ctx1, t);
            qlib_tensor_destroy(t);
            t = u;
        }
        layout_run r = { ctx1, t, rows[i].l, { NULL }, { 0 } };
        qlib_status s = qlib_tensor_export_size(t, rows[i].l, r.b);
        if (s != QLIB_OK) die("qlib_tensor_export_size", s);
        double bytes = 0.0;
        for (int p = 0; p < 4; p++) {
            bytes += (double)r.b[p];
            if (r.b[p] && !(r.p[p] = malloc(r.b[p]))) exit(1);
        }
        double te = median_time(run_export, &r, 9), ti1 = median_time(run_import, &r, 9);
        blob_run b = { ctx1, NULL, 0 };
        if (qlib_tensor_serialized_size(t, &b.len) != QLIB_OK || !(b.blob = malloc(b.len)) ||
            qlib_tensor_serialize(t, (void *)b.blob, b.len, NULL) != QLIB_OK)
            exit(1);
        double tl = median_time(run_load, &b, 9);
        free((void *)b.blob);
        bench_clock = CLOCK_MONOTONIC;
        r.ctx = ctx2;
        double ti2 = median_time(run_import, &r, 9);
        bench_clock = CLOCK_THREAD_CPUTIME_ID;
        printf("| %s | %s | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
               rows[i].name, rows[i].kind, bytes / 1e6, te * 1e3, bytes / te / 1e9, ti1 * 1e3,
               bytes / ti1 / 1e9, ti2 * 1e3, bytes / ti2 / 1e9, tl * 1e3);
        fflush(stdout);
        for (int p = 0; p < 4; p++) free(r.p[p]);
        qlib_tensor_destroy(t);
    }
    free(w);
}

/* ---- the vector units' peaks, and how near the GEMMs come ---- */

static void ceiling_table(qlib_ctx *ctx)
{
    bench_ceiling c;
    printf("\n## Peak multiply-adds of one core, and the M = 128 products against them\n\n");
    if (!bench_ceilings(&c)) {
        printf("Measured on x86-64 with AVX2 and FMA only.\n");
        return;
    }
    printf("Register-only loops of independent accumulators, thread CPU time, best of 20.\n\n");
    printf("| instruction pair | used by | G multiply-adds/s | vs FMA |\n|---|---|---|---|\n");
    printf("| vfmadd (fp32, 8 lanes) | sgemm | %.1f | 1.00 |\n", c.fma / 1e9);
    /* the VNNI kernels issue vpdpbusd for INT8 and INT4 alike, the avx512
     * ones on 512-bit registers */
    int zmm = strcmp(qlib_ctx_isa(ctx), "avx512") == 0 && c.dpbusd512 > 0.0;
    int vnni = (zmm || strncmp(qlib_ctx_isa(ctx), "avx2-", 5) == 0) && c.dpbusd > 0.0;
    printf("| vpmaddwd + vpaddd (int16, 16 per pair) | %s | %.1f | %.2f |\n",
           vnni ? "INT8 GEMM, avx2" : "INT8 GEMM", c.pmaddwd / 1e9, c.pmaddwd / c.fma);
    printf("| vpmaddubsw + vpaddw (u8 x s8, 32 per pair) | %s | %.1f | %.2f |\n",
           vnni ? "INT4 GEMM, avx2" : "INT4 GEMM", c.maddubs / 1e9, c.maddubs / c.fma);
    if (c.dpbusd > 0.0)
        printf("| vpdpbusd (VNNI, u8 x s8, 32 per instruction) | %s | %.1f | %.2f |\n",
               vnni && !zmm ? "INT8 and INT4 GEMM" : "INT8 and INT4 GEMM, avx2-vnni tables",
               c.dpbusd / 1e9, c.dpbusd / c.fma);
    if (c.dpbusd512 > 0.0)
        printf("| vpdpbusd, 512-bit (AVX512-VNNI, 64 per instruction) | %s | %.1f | %.2f |\n",
               zmm ? "INT8 and INT4 GEMM" : "INT8 and INT4 GEMM, avx512 table", c.dpbusd512 / 1e9,
               c.dpbusd512 / c.fma);
    printf("\nqlib's ISA: %s.\n\n", qlib_ctx_isa(ctx));
    double peak8 = zmm ? c.dpbusd512 : vnni ? c.dpbusd : c.pmaddwd;
    double peak4 = zmm ? c.dpbusd512 : vnni ? c.dpbusd : c.maddubs;
    const char *name8 = zmm ? "512-bit vpdpbusd" : vnni ? "vpdpbusd" : "pmaddwd";
    const char *name4 = zmm ? "512-bit vpdpbusd" : vnni ? "vpdpbusd" : "maddubs";
    printf("| N x K, M = 128 | product | G multiply-adds/s | share of its peak | x sgemm |\n"
           "|---|---|---|---|---|\n");
    static const size_t shapes[][2] = { { 2048, 2048 }, { 4096, 4096 } };
    size_t m = 128;
    float *x = make_acts(m, 4096, 4.0f), *y = malloc(m * 4096 * sizeof(float));
    if (!y) exit(1);
    for (size_t s = 0; s < 2; s++) {
        size_t n = shapes[s][0], k = shapes[s][1];
        float *w = make_weights(n, k);
        qlib_tensor *t4 = quantize_rtn(ctx, w, n, k, 4, 128, 0);
        qlib_tensor *t8 = quantize_rtn(ctx, w, n, k, 8, 0, 1);
        double macs = (double)m * (double)n * (double)k;
        double tb = time_blas(w, x, y, m, n, k);
        double t8s = time_qlib(ctx, t8, x, y, m, n, k);
        double t4s = time_qlib(ctx, t4, x, y, m, n, k);
        printf("| %zux%zu | sgemm | %.1f | %.0f%% of FMA | 1.00 |\n", n, k, macs / tb / 1e9,
               100.0 * macs / tb / c.fma);
        printf("| %zux%zu | INT8 | %.1f | %.0f%% of %s | %.2f |\n", n, k, macs / t8s / 1e9,
               100.0 * macs / t8s / peak8, name8, tb / t8s);
        printf("| %zux%zu | INT4 g128 | %.1f | %.0f%% of %s | %.2f |\n", n, k,
               macs / t4s / 1e9, 100.0 * macs / t4s / peak4, name4, tb / t4s);
        fflush(stdout);
        qlib_tensor_destroy(t4);
        qlib_tensor_destroy(t8);
        free(w);
    }
    printf("\nAn INT8 GEMM at the %s peak would be %.2fx an sgemm at the FMA peak.\n", name8,
           peak8 / c.fma);
    free(x);
    free(y);
}

/* With arguments, only the sections named (shapes cold ceiling g32 f32 threads
 * decode llm_int8 act_order quantize layouts linalg
 * builds); without, all of them. */
static int wanted(int argc, char **argv, const char *name)
{
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    qlib_ctx *ctx1, *ctx2;
    qlib_status s = qlib_ctx_create(&ctx1);
    if (s != QLIB_OK) die("ctx", s);
    if ((s = qlib_ctx_set_threads(ctx1, 1)) != QLIB_OK) die("threads", s);
    if ((s = qlib_ctx_create(&ctx2)) != QLIB_OK) die("ctx", s);
    if ((s = qlib_ctx_set_threads(ctx2, 2)) != QLIB_OK) die("threads", s);
    openblas_set_num_threads(1);
    printf("# qlib bench %s\n\nCPU: %s (%d online); qlib ISA: %s; threads: 1 (and 2 where "
           "stated); OpenBLAS: 1 thread; times: median of 5 (M >= 128) or 9 runs after a warm-up\n",
           qlib_version_string(), cpu_model(), (int)sysconf(_SC_NPROCESSORS_ONLN), qlib_ctx_isa(ctx1));
    print_load();
    reader rd;
    reader_start(&rd);
    double bw = read_bandwidth(&rd, 1), bw2 = read_bandwidth(&rd, 2);
    printf("Read bandwidth (vectorised sum over 1 GiB): 1 thread %.1f GB/s, 2 threads %.1f GB/s\n",
           bw, bw2);
    fflush(stdout);
    if (wanted(argc, argv, "shapes")) shapes_table(ctx1, bw);
    if (wanted(argc, argv, "cold")) cold_gemv_table(ctx1, bw);
    if (wanted(argc, argv, "ceiling")) ceiling_table(ctx1);
    if (wanted(argc, argv, "g32")) g32_table(ctx1);
    if (wanted(argc, argv, "f32")) compute_f32_rows(ctx1);
    if (wanted(argc, argv, "threads")) thread_scaling(ctx1, ctx2);
    if (wanted(argc, argv, "decode")) decode_threads(ctx1, ctx2, &rd);
    if (wanted(argc, argv, "llm_int8")) llm_int8_table(ctx1);
    if (wanted(argc, argv, "act_order")) act_order_table(ctx1);
    if (wanted(argc, argv, "quantize")) quantize_table(ctx1, ctx2);
    if (wanted(argc, argv, "layouts")) layouts_table(ctx1, ctx2);
    if (wanted(argc, argv, "linalg")) bench_linalg_table();
    if (wanted(argc, argv, "builds")) bench_builds_table();
    reader_stop(&rd);
    qlib_ctx_destroy(ctx1);
    qlib_ctx_destroy(ctx2);
    return 0;
}
