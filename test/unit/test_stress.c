/* Thread-safety stress: many threads share read-only tensors (and one
 * borrowed blob) while each uses its own context — built-in pool of 1 or 2
 * threads, or a caller's pthread pool lent through qlib_parallel — for
 * quantize, matmul, dequantize and serialize. Every result must equal, bit for
 * bit, the one computed first on a single thread. Run under ThreadSanitizer:
 *   make TSAN=1 WERROR=1 build/tsan/test/unit && CK_RUN_SUITE=stress build/tsan/test/unit */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define N 128            /* two column chunks of 64: the gemm splits over threads */
#define K 256
#define M 16             /* M * K * N is above the size the driver keeps on one thread */
#define N_WORKERS 8
#define ROUNDS 1
#define LENT_THREADS 2

typedef struct kind {
    qlib_method method;
    int bits, group, sym, act_order;
} kind;

static const kind kinds[] = {
    { QLIB_METHOD_RTN, 4, 32, 0, 0 },  { QLIB_METHOD_RTN, 8, 0, 1, 0 },
    { QLIB_METHOD_RTN, 3, 64, 0, 0 },  { QLIB_METHOD_RTN, 2, -1, 1, 0 },
    { QLIB_METHOD_NONE, 32, 0, 0, 0 }, { QLIB_METHOD_NONE, 16, 0, 0, 0 },
    { QLIB_METHOD_GPTQ, 4, 64, 0, 1 }, { QLIB_METHOD_AWQ, 4, 32, 0, 0 },
    { QLIB_METHOD_LLM_INT8, 8, 0, 1, 0 },
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

/* What every thread must reproduce; computed once on one thread. */
typedef struct reference {
    int available;                 /* the method is built in */
    qlib_tensor *t;
    uint8_t *blob;                 /* serialized t, 64-aligned: shared, borrowed by every thread */
    size_t blob_size;
    float *y[2][2];                /* [compute][m == M] */
    float *w;                      /* dequantized, N x K */
} reference;

static float *g_w, *g_x;           /* weights N x K, activations M x K */
static qlib_calib *g_calib;
static reference g_ref[N_KINDS];

static qlib_config *make_config(const kind *kd)
{
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(kd->method, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, kd->bits), QLIB_OK);
    if (kd->method != QLIB_METHOD_NONE && kd->method != QLIB_METHOD_LLM_INT8) {
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, kd->group), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, kd->sym), QLIB_OK);
    }
    if (kd->act_order)
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER, 1), QLIB_OK);
    return cfg;
}

static float *run_matmul(qlib_ctx *ctx, const qlib_tensor *t, size_t m)
{
    float *y = tu_alloc_floats(m * N);
    qlib_status s = qlib_matmul(ctx, t, g_x, m, K, y, N);
    ck_assert_msg(s == QLIB_OK, "qlib_matmul: %s", qlib_last_error());
    return y;
}

static void make_reference(qlib_ctx *ctx, size_t i)
{
    reference *r = &g_ref[i];
    qlib_config *cfg = make_config(&kinds[i]);
    qlib_status s = qlib_quantize(ctx, g_w, N, K, K, cfg, g_calib, &r->t);
    qlib_config_destroy(cfg);
    if (s == QLIB_ERR_UNSUPPORTED) return;     /* a method this build lacks */
    ck_assert_msg(s == QLIB_OK, "qlib_quantize(kind %zu): %s", i, qlib_last_error());
    r->available = 1;
    ck_assert_int_eq(qlib_tensor_serialized_size(r->t, &r->blob_size), QLIB_OK);
    ck_assert_int_eq(posix_memalign((void **)&r->blob, 64, r->blob_size), 0);
    ck_assert_int_eq(qlib_tensor_serialize(r->t, r->blob, r->blob_size, NULL), QLIB_OK);
    r->w = tu_alloc_floats(N * K);
    ck_assert_int_eq(qlib_dequantize(ctx, r->t, r->w, K), QLIB_OK);
    for (int c = 0; c < 2; c++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, c ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO), QLIB_OK);
        r->y[c][0] = run_matmul(ctx, r->t, 1);
        r->y[c][1] = run_matmul(ctx, r->t, M);
    }
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_AUTO), QLIB_OK);
}

static void setup_shared(void)
{
    tu_rng rng = { 2024 };
    tu_act_model am;
    g_w = tu_alloc_floats(N * K);
    g_x = tu_alloc_floats(M * K);
    tu_llm_weights(&rng, g_w, N, K, K);
    tu_act_model_init(&am, K, 20.0f, 77);
    tu_act_model_sample(&am, &rng, g_x, M, K);
    float *xc = tu_alloc_floats(64 * K);
    tu_act_model_sample(&am, &rng, xc, 64, K);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    ck_assert_int_eq(qlib_calib_create(ctx, K, QLIB_CALIB_ALL, 64, &g_calib), QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(g_calib, xc, 64, K), QLIB_OK);
    for (size_t i = 0; i < N_KINDS; i++) make_reference(ctx, i);
    qlib_calib_destroy(g_calib);   /* the references no longer need it */
    g_calib = NULL;
    qlib_ctx_destroy(ctx);
    tu_act_model_free(&am);
    free(xc);
}

static void free_shared(void)
{
    for (size_t i = 0; i < N_KINDS; i++) {
        reference *r = &g_ref[i];
        qlib_tensor_destroy(r->t);
        free(r->blob);
        free(r->w);
        for (int c = 0; c < 2; c++)
            for (int j = 0; j < 2; j++) free(r->y[c][j]);
        memset(r, 0, sizeof *r);
    }
    free(g_w);
    free(g_x);
}

/* ---- a caller's thread pool, lent through qlib_parallel ---- */
typedef struct lent_pool {
    pthread_t threads[LENT_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t work, done_cv;
    void (*task)(void *, size_t);
    void *arg;
    size_t n, next, done, runs;
    int stop;
} lent_pool;

/* Claims and runs tasks of the current job; called and returns with mu held. */
static void lent_drain(lent_pool *p)
{
    while (p->next < p->n) {
        size_t i = p->next++;
        void (*task)(void *, size_t) = p->task;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        task(arg, i);
        pthread_mutex_lock(&p->mu);
        if (++p->done == p->n) pthread_cond_broadcast(&p->done_cv);
    }
}

static void *lent_worker(void *vp)
{
    lent_pool *p = vp;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next >= p->n) pthread_cond_wait(&p->work, &p->mu);
        if (p->stop) break;
        lent_drain(p);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void lent_run(void *user, void (*task)(void *, size_t), void *arg, size_t n)
{
    lent_pool *p = user;
    pthread_mutex_lock(&p->mu);
    p->task = task;
    p->arg = arg;
    p->n = n;
    p->next = 0;
    p->done = 0;
    p->runs++;
    pthread_cond_broadcast(&p->work);
    lent_drain(p);
    while (p->done < p->n) pthread_cond_wait(&p->done_cv, &p->mu);
    p->n = p->next = 0;
    pthread_mutex_unlock(&p->mu);
}

static void lent_start(lent_pool *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    for (int i = 0; i < LENT_THREADS; i++)
        ck_assert_int_eq(pthread_create(&p->threads[i], NULL, lent_worker, p), 0);
}

static void lent_stop(lent_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < LENT_THREADS; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done_cv);
}

/* ---- the workers ---- */
enum { POOL_ONE, POOL_TWO, POOL_LENT };

typedef struct worker {
    pthread_t thread;
    int id, pool, compute;
    size_t checks, mismatches, failures;
    char first[256];           /* what went wrong first */
    lent_pool lent;
} worker;

static void note(worker *wk, int ok, const char *what, size_t kind_index)
{
    wk->checks++;
    if (ok) return;
    if (!wk->mismatches && !wk->failures)
        snprintf(wk->first, sizeof wk->first, "%s (kind %zu): %s", what, kind_index,
                 qlib_last_error());
    wk->mismatches++;
}

static int same_floats(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * 4); }

/* One thread's own error message stays its own. */
static void check_error_is_mine(worker *wk, qlib_ctx *ctx, const qlib_tensor *t)
{
    float y[N];
    size_t ldx = (size_t)wk->id + 1;   /* < K: a shape error that names this ldx */
    char want[64];
    qlib_status s = qlib_matmul(ctx, t, g_x, 1, ldx, y, N);
    snprintf(want, sizeof want, "ldx=%zu ", ldx);
    note(wk, s == QLIB_ERR_SHAPE && strstr(qlib_last_error(), want) != NULL, "thread-local error", 0);
}

static void work_kind(worker *wk, qlib_ctx *ctx, size_t i)
{
    const reference *r = &g_ref[i];
    qlib_tensor *borrowed = NULL, *mine = NULL;
    float *w = tu_alloc_floats(N * K);
    uint8_t *blob = malloc(r->blob_size);
    if (!blob) abort();
    /* the shared tensor */
    for (size_t j = 0; j < 2; j++) {
        size_t m = j ? M : 1;
        float *y = tu_alloc_floats(m * N);
        qlib_status s = qlib_matmul(ctx, r->t, g_x, m, K, y, N);
        note(wk, s == QLIB_OK && same_floats(y, r->y[wk->compute][j], m * N), "matmul", i);
        free(y);
    }
    note(wk, qlib_dequantize(ctx, r->t, w, K) == QLIB_OK && same_floats(w, r->w, N * K),
         "dequantize", i);
    note(wk, qlib_tensor_serialize(r->t, blob, r->blob_size, NULL) == QLIB_OK &&
                 !memcmp(blob, r->blob, r->blob_size), "serialize", i);
    /* a view of the shared blob, and a tensor of this thread's own */
    note(wk, qlib_tensor_deserialize(ctx, r->blob, r->blob_size, QLIB_LOAD_BORROW, &borrowed) ==
                 QLIB_OK, "deserialize (borrow)", i);
    if (borrowed) {
        float *y = tu_alloc_floats(M * N);
        note(wk, qlib_matmul(ctx, borrowed, g_x, M, K, y, N) == QLIB_OK &&
                     same_floats(y, r->y[wk->compute][1], M * N), "matmul (borrowed)", i);
        free(y);
    }
    if (kinds[i].method == QLIB_METHOD_RTN || kinds[i].method == QLIB_METHOD_NONE) {
        qlib_config *cfg = make_config(&kinds[i]);
        note(wk, qlib_quantize(ctx, g_w, N, K, K, cfg, NULL, &mine) == QLIB_OK &&
                     qlib_tensor_serialize(mine, blob, r->blob_size, NULL) == QLIB_OK &&
                     !memcmp(blob, r->blob, r->blob_size), "quantize", i);
        qlib_config_destroy(cfg);
    }
    check_error_is_mine(wk, ctx, r->t);
    qlib_tensor_destroy(mine);
    qlib_tensor_destroy(borrowed);
    free(blob);
    free(w);
}

static void *worker_main(void *vp)
{
    worker *wk = vp;
    qlib_ctx *ctx = NULL;
    int ok = qlib_ctx_create(&ctx) == QLIB_OK;
    ok = ok && qlib_ctx_set_threads(ctx, wk->pool == POOL_ONE ? 1 : 2) == QLIB_OK;
    ok = ok && qlib_ctx_set_compute(ctx, wk->compute ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO) == QLIB_OK;
    if (ok && wk->pool == POOL_LENT) {
        qlib_parallel par = QLIB_PARALLEL_INIT;
        par.run = lent_run;
        par.user = &wk->lent;
        ok = qlib_ctx_set_parallel(ctx, &par) == QLIB_OK;
    }
    if (!ok) {
        snprintf(wk->first, sizeof wk->first, "context setup: %s", qlib_last_error());
        wk->failures++;
        qlib_ctx_destroy(ctx);
        return NULL;
    }
    for (int round = 0; round < ROUNDS; round++)
        for (size_t k = 0; k < N_KINDS; k++) {
            size_t i = (k + (size_t)wk->id) % N_KINDS;   /* threads start on different kinds */
            if (g_ref[i].available) work_kind(wk, ctx, i);
        }
    qlib_ctx_destroy(ctx);
    return NULL;
}

START_TEST(test_shared_tensors_own_contexts)
{
    worker wk[N_WORKERS];
    setup_shared();
    ck_assert_msg(g_ref[0].available, "RTN must be available");
    memset(wk, 0, sizeof wk);
    for (int i = 0; i < N_WORKERS; i++) {
        wk[i].id = i;
        wk[i].pool = i % 3;
        wk[i].compute = (i / 3) % 2;
        if (wk[i].pool == POOL_LENT) lent_start(&wk[i].lent);
        ck_assert_int_eq(pthread_create(&wk[i].thread, NULL, worker_main, &wk[i]), 0);
    }
    for (int i = 0; i < N_WORKERS; i++) pthread_join(wk[i].thread, NULL);
    for (int i = 0; i < N_WORKERS; i++) {
        if (wk[i].pool == POOL_LENT) {
            lent_stop(&wk[i].lent);
            /* the context really handed its work to the lent pool */
            ck_assert_uint_gt(wk[i].lent.runs, 0);
        }
        ck_assert_msg(wk[i].failures == 0 && wk[i].mismatches == 0,
                      "thread %d (pool %d, compute %d): %zu of %zu checks failed; first: %s", i,
                      wk[i].pool, wk[i].compute, wk[i].mismatches + wk[i].failures, wk[i].checks,
                      wk[i].first);
        ck_assert_uint_gt(wk[i].checks, 0);
    }
    free_shared();
}
END_TEST

Suite *suite_stress(void);
Suite *suite_stress(void)
{
    Suite *s = suite_create("stress");
    TCase *tc = tu_tcase("shared");
    tcase_add_test(tc, test_shared_tensors_own_contexts);
    suite_add_tcase(s, tc);
    return s;
}
