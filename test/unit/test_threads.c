/* suite_threads: results are bit-identical for any thread count and for any
 * lent qlib_parallel — quantize (the serialized bytes), dequantize, and
 * matmul in both compute modes. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"
#include "core/core.h"

Suite *suite_threads(void);

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------- lent thread pools */

/* Runs the tasks backwards on the calling thread. */
typedef struct reverse_pool { size_t calls; } reverse_pool;

static void reverse_run(void *user, void (*task)(void *, size_t), void *arg, size_t n)
{
    reverse_pool *p = user;
    p->calls++;
    for (size_t i = n; i-- > 0;) task(arg, i);
}

/* Starts up to max_threads pthreads per call; thread t runs tasks t,
 * t + T, t + 2T, ... from the highest down, so the order differs from both
 * the built-in pool and a serial loop. */
typedef struct pthread_pool { int max_threads; size_t calls; } pthread_pool;

typedef struct pp_work {
    void (*task)(void *, size_t);
    void *arg;
    size_t n, first, stride;
} pp_work;

static void *pp_thread(void *vp)
{
    pp_work *w = vp;
    size_t count = w->first < w->n ? (w->n - 1 - w->first) / w->stride + 1 : 0;
    for (size_t c = count; c-- > 0;) w->task(w->arg, w->first + c * w->stride);
    return NULL;
}

static void pthread_run(void *user, void (*task)(void *, size_t), void *arg, size_t n)
{
    pthread_pool *p = user;
    p->calls++;
    size_t t_count = (size_t)p->max_threads < n ? (size_t)p->max_threads : n;
    pthread_t th[8];
    pp_work work[8];
    for (size_t t = 0; t < t_count; t++) {
        work[t] = (pp_work){ task, arg, n, t, t_count };
        if (t > 0 && pthread_create(&th[t], NULL, pp_thread, &work[t]) != 0) abort();
    }
    pp_thread(&work[0]);                       /* the caller takes part */
    for (size_t t = 1; t < t_count; t++) pthread_join(th[t], NULL);
}

/* ------------------------------------------------------ the configurations */

enum { N_CONFIGS = 6 };   /* threads 1, 2, 3, 4; reverse pool; pthread pool */

typedef struct runner {
    reverse_pool rev;
    pthread_pool pth;
} runner;

static const char *config_name(int c)
{
    static const char *names[N_CONFIGS] = { "1 thread", "2 threads", "3 threads", "4 threads",
                                            "reverse pool", "pthread pool" };
    return names[c];
}

/* The pthread pool runs up to 4 tasks at once for a context of 2 threads:
 * more than the context has workspaces for, so that some tasks run without
 * one (src/core/matmul.c). */
static qlib_ctx *config_ctx(int c, runner *r)
{
    qlib_ctx *ctx = tu_ctx(c < 4 ? c + 1 : c == 4 ? 4 : 2, NULL);
    qlib_parallel p = QLIB_PARALLEL_INIT;
    if (c == 4) {
        p.run = reverse_run;
        p.user = &r->rev;
    } else if (c == 5) {
        r->pth.max_threads = 4;
        p.run = pthread_run;
        p.user = &r->pth;
    }
    if (c >= 4) ck_assert_int_eq(qlib_ctx_set_parallel(ctx, &p), QLIB_OK);
    return ctx;
}

/* Everything one configuration produces for one quantized format. */
typedef struct outputs {
    uint8_t *blob;
    size_t blob_size;
    float *wh;                 /* dequantized, n x k */
    float *y[2];               /* matmul, m x n, per compute mode */
} outputs;

typedef struct problem {
    size_t n, k, m;
    const float *w, *x;
} problem;

static void outputs_free(outputs *o)
{
    free(o->blob);
    free(o->wh);
    free(o->y[0]);
    free(o->y[1]);
}

static void produce(qlib_ctx *ctx, const problem *pr, qlib_method method, int bits, int group,
                    int sym, outputs *o)
{
    qlib_tensor *t = tu_quantize(ctx, pr->w, pr->n, pr->k, pr->k, method, bits, group, sym, NULL);
    ck_assert_int_eq(qlib_tensor_serialized_size(t, &o->blob_size), QLIB_OK);
    o->blob = malloc(o->blob_size);
    ck_assert_ptr_nonnull(o->blob);
    ck_assert_int_eq(qlib_tensor_serialize(t, o->blob, o->blob_size, NULL), QLIB_OK);
    o->wh = tu_alloc_floats(pr->n * pr->k);
    ck_assert_int_eq(qlib_dequantize(ctx, t, o->wh, pr->k), QLIB_OK);
    for (int mode = 0; mode <= 1; mode++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
        o->y[mode] = tu_alloc_floats(pr->m * pr->n);
        ck_assert_int_eq(qlib_matmul(ctx, t, pr->x, pr->m, pr->k, o->y[mode], pr->n), QLIB_OK);
    }
    qlib_tensor_destroy(t);
}

static void assert_same(const outputs *a, const outputs *b, const problem *pr, const char *what)
{
    ck_assert_uint_eq(a->blob_size, b->blob_size);
    ck_assert_msg(memcmp(a->blob, b->blob, a->blob_size) == 0, "%s: serialized bytes differ",
                  what);
    ck_assert_msg(memcmp(a->wh, b->wh, pr->n * pr->k * sizeof(float)) == 0,
                  "%s: dequantized weights differ", what);
    for (int mode = 0; mode <= 1; mode++)
        ck_assert_msg(memcmp(a->y[mode], b->y[mode], pr->m * pr->n * sizeof(float)) == 0,
                      "%s: matmul mode %d m=%zu differs", what, mode, pr->m);
}

typedef struct format { qlib_method method; int bits, group, sym; } format;

static const format formats[] = {
    { QLIB_METHOD_RTN, 4, 128, 0 }, { QLIB_METHOD_RTN, 4, 32, 1 }, { QLIB_METHOD_RTN, 8, -1, 1 },
    { QLIB_METHOD_RTN, 3, 64, 0 },  { QLIB_METHOD_RTN, 2, 0, 1 },  { QLIB_METHOD_NONE, 32, 0, 0 },
    { QLIB_METHOD_NONE, 16, 0, 0 },
};

/* Runs every configuration on pr and compares each with one thread. */
static void compare_configs(const problem *pr, const format *f)
{
    outputs base, o;
    runner rn;
    memset(&rn, 0, sizeof rn);
    char what[128];
    for (int c = 0; c < N_CONFIGS; c++) {
        qlib_ctx *ctx = config_ctx(c, &rn);
        produce(ctx, pr, f->method, f->bits, f->group, f->sym, c == 0 ? &base : &o);
        qlib_ctx_destroy(ctx);
        if (c == 0) continue;
        snprintf(what, sizeof what, "%s vs 1 thread, method %d bits %d group %d sym %d m %zu",
                 config_name(c), (int)f->method, f->bits, f->group, f->sym, pr->m);
        assert_same(&base, &o, pr, what);
        outputs_free(&o);
    }
    /* The lent pools were really used (float matmul goes through OpenBLAS,
     * but quantize and dequantize still split rows). */
    ck_assert_uint_gt(rn.rev.calls, 0);
    ck_assert_uint_gt(rn.pth.calls, 0);
    outputs_free(&base);
}

static void run_problem(size_t n, size_t k, size_t m, const format *f, uint64_t seed)
{
    problem pr = { n, k, m, NULL, NULL };
    tu_rng r = { seed };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    tu_llm_weights(&r, w, n, k, k);
    tu_act_model am;
    tu_act_model_init(&am, k, 6.0f, 3);
    tu_act_model_sample(&am, &r, x, m, k);
    tu_act_model_free(&am);
    pr.w = w;
    pr.x = x;
    compare_configs(&pr, f);
    free(w);
    free(x);
}

/* Prefill: m * Kp * n above the 2^18 multiply-adds that stay on one thread,
 * m * Kp >= 4096 so that the rows of x are prepared in parallel too, n over
 * three 64-column chunks (the last partial), K = 264 a partial group. */
START_TEST(test_thread_determinism)
{
    run_problem(130, 264, 13, &formats[_i], 2024 + (uint64_t)_i);
}
END_TEST

/* Decode (m = 1): Kp * n above 2^18, so the single row is split too. */
START_TEST(test_thread_determinism_gemv)
{
    static const format gemv_formats[] = { { QLIB_METHOD_RTN, 4, 128, 0 },
                                           { QLIB_METHOD_RTN, 8, 0, 1 } };
    run_problem(840, 264, 1, &gemv_formats[_i], 3030 + (uint64_t)_i);
}
END_TEST

/* K over several of the avx512 GEMM's tiles of k (4096 codes in a
 * workspace, 1024 without one), with a group (96) that straddles them. */
START_TEST(test_thread_determinism_long_k)
{
    static const format long_formats[] = { { QLIB_METHOD_RTN, 4, 96, 0 },
                                            { QLIB_METHOD_RTN, 8, 0, 1 } };
    run_problem(200, 4200, 12, &long_formats[_i], 4040 + (uint64_t)_i);
}
END_TEST

/* One context, thread count changed between calls: same results. */
START_TEST(test_threads_changed_in_place)
{
    const size_t n = 300, k = 512, m = 9;
    tu_rng r = { 77 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    float *y0 = tu_alloc_floats(m * n), *y1 = tu_alloc_floats(m * n);
    tu_llm_weights(&r, w, n, k, k);
    for (size_t i = 0; i < m * k; i++) x[i] = (float)tu_normal(&r);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, 64, 0, NULL);
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y0, n), QLIB_OK);
    static const int counts[] = { 2, 4, 3, 1, 7, 0, 2 };
    for (size_t i = 0; i < COUNT(counts); i++) {
        ck_assert_int_eq(qlib_ctx_set_threads(ctx, counts[i]), QLIB_OK);
        memset(y1, 0, m * n * sizeof(float));
        ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y1, n), QLIB_OK);
        ck_assert_msg(memcmp(y0, y1, m * n * sizeof(float)) == 0, "threads %d", counts[i]);
    }
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(w); free(x); free(y0); free(y1);
}
END_TEST

/* A tensor is immutable: several threads, each with its own context, use one
 * tensor at once and all get the serial result. */
typedef struct shared_job {
    const qlib_tensor *t;
    const float *x;
    size_t m, k, n;
    float *y;
    int status;
} shared_job;

static void *shared_worker(void *vp)
{
    shared_job *j = vp;
    qlib_ctx *ctx = NULL;
    j->status = qlib_ctx_create(&ctx);
    if (j->status != QLIB_OK) return NULL;
    j->status = qlib_ctx_set_threads(ctx, 2);
    for (int rep = 0; rep < 3 && j->status == QLIB_OK; rep++)
        j->status = qlib_matmul(ctx, j->t, j->x, j->m, j->k, j->y, j->n);
    qlib_ctx_destroy(ctx);
    return NULL;
}

START_TEST(test_shared_tensor)
{
    const size_t n = 260, k = 256, m = 8;
    tu_rng r = { 5 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k), *y0 = tu_alloc_floats(m * n);
    tu_llm_weights(&r, w, n, k, k);
    for (size_t i = 0; i < m * k; i++) x[i] = (float)tu_normal(&r);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, 32, 1, NULL);
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y0, n), QLIB_OK);
    enum { T = 3 };
    pthread_t th[T];
    shared_job jobs[T];
    for (int i = 0; i < T; i++) {
        jobs[i] = (shared_job){ t, x, m, k, n, tu_alloc_floats(m * n), -1 };
        ck_assert_int_eq(pthread_create(&th[i], NULL, shared_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        ck_assert_int_eq(jobs[i].status, QLIB_OK);
        ck_assert_mem_eq(jobs[i].y, y0, m * n * sizeof(float));
        free(jobs[i].y);
    }
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(w); free(x); free(y0);
}
END_TEST

/* The built-in pool hands out every task of every job exactly once, over
 * many back-to-back jobs of 1 to 70 tasks (fewer tasks than workers too),
 * with pauses that let the workers go to sleep between some of them. */
typedef struct count_job {
    unsigned hits[70];
} count_job;

static void count_task(void *arg, size_t i)
{
    count_job *j = arg;
    __atomic_add_fetch(&j->hits[i], 1u, __ATOMIC_RELAXED);
}

START_TEST(test_pool_every_task_once)
{
    for (int threads = 2; threads <= 4; threads++) {
        qlib_pool *p = NULL;
        ck_assert_int_eq(qlib_pool_create(&qlib_default_allocator, threads, &p), QLIB_OK);
        count_job j;
        for (int r = 0; r < 600; r++) {
            size_t n = 1 + (size_t)(r * 37 % 70);
            memset(&j, 0, sizeof j);
            qlib_pool_run(p, count_task, &j, n);
            for (size_t i = 0; i < 70; i++)
                ck_assert_msg(j.hits[i] == (i < n ? 1u : 0u), "threads %d job %d: task %zu ran %u times",
                              threads, r, i, j.hits[i]);
            if (r % 100 == 99) {   /* past the workers' polling time: they sleep */
                struct timespec ts = { 0, 1000000 };
                nanosleep(&ts, NULL);
            }
        }
        qlib_pool_destroy(p);
    }
}
END_TEST

Suite *suite_threads(void)
{
    Suite *s = suite_create("threads");
    TCase *tc = tu_tcase("threads");
    tcase_add_loop_test(tc, test_thread_determinism, 0, (int)COUNT(formats));
    tcase_add_loop_test(tc, test_thread_determinism_gemv, 0, 2);
    tcase_add_loop_test(tc, test_thread_determinism_long_k, 0, 2);
    tcase_add_test(tc, test_threads_changed_in_place);
    tcase_add_test(tc, test_shared_tensor);
    tcase_add_test(tc, test_pool_every_task_once);
    suite_add_tcase(s, tc);
    return s;
}
