/* A small persistent pthread pool. The calling thread takes part; tasks are
 * handed out through an atomic counter, so which thread runs a task never
 * changes what it computes.
 *
 * A job is open to workers while the caller hands out its tasks; a worker
 * joins it (counted in `active`) only while it is open, and the caller,
 * once every task is taken, closes it and waits only for the workers
 * inside. So a worker that wakes late (its CPU busy with another
 * library's threads, or just woken from sleep) costs the call nothing: the
 * caller runs the tasks it did not take. After a job a worker polls for
 * the next one for up to POOL_SPIN_NS, yielding its CPU between polls (so
 * a caller sharing that CPU is not held up), then sleeps on a condition
 * variable: back-to-back calls, as in decoding, find it awake. */
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "core.h"

#define POOL_SPIN_NS 200000L   /* how long an idle worker polls before it sleeps */

struct qlib_pool {
    const qlib_allocator *alloc;
    int n_workers;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    /* the job: written by the caller before it opens the job */
    void (*task)(void *, size_t);
    void *arg;
    size_t n_tasks;
    size_t next;               /* atomic: the next task to hand out */
    unsigned long generation;  /* atomic: bumped when a job opens */
    int open;                  /* atomic: the job takes workers */
    int active;                /* atomic: workers inside the job */
    int sleepers;              /* atomic: workers waiting on wake */
    int stop;                  /* atomic */
};

static void pool_drain(qlib_pool *p, void (*task)(void *, size_t), void *arg, size_t n)
{
    for (;;) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= n) return;
        task(arg, i);
    }
}

static long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec * 1000000000L + t.tv_nsec;
}

static int job_ready(const qlib_pool *p, unsigned long seen)
{
    return __atomic_load_n(&p->generation, __ATOMIC_SEQ_CST) != seen ||
           __atomic_load_n(&p->stop, __ATOMIC_SEQ_CST);
}

/* Returns once a job newer than seen is open, or the pool stops. */
static void wait_job(qlib_pool *p, unsigned long seen)
{
    long t0 = now_ns();
    for (unsigned i = 0;; i++) {
        if (job_ready(p, seen)) return;
        if ((i & 15) == 15) {
            if (now_ns() - t0 > POOL_SPIN_NS) break;
            sched_yield();
        }
    }
    pthread_mutex_lock(&p->mu);
    __atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    while (!job_ready(p, seen)) pthread_cond_wait(&p->wake, &p->mu);
    __atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&p->mu);
}

static void *pool_worker(void *vp)
{
    qlib_pool *p = vp;
    unsigned long seen = 0;
    for (;;) {
        wait_job(p, seen);
        if (__atomic_load_n(&p->stop, __ATOMIC_SEQ_CST)) break;
        seen = __atomic_load_n(&p->generation, __ATOMIC_SEQ_CST);
        /* join, then look: either the caller sees us in active before it
         * returns, or we see the job closed and touch nothing of it */
        __atomic_add_fetch(&p->active, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&p->open, __ATOMIC_SEQ_CST))
            pool_drain(p, p->task, p->arg, p->n_tasks);
        __atomic_sub_fetch(&p->active, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

qlib_status qlib_pool_create(const qlib_allocator *a, int n_threads, qlib_pool **out)
{
    *out = NULL;
    qlib_pool *p = qlib_mem_calloc(a, sizeof *p);
    if (!p) return qlib_fail(QLIB_ERR_NOMEM, "qlib_ctx: cannot allocate the thread pool");
    p->alloc = a;
    p->n_workers = n_threads - 1;
    p->threads = qlib_mem_calloc(a, sizeof(pthread_t) * (size_t)p->n_workers);
    if (!p->threads) {
        qlib_mem_free(a, p);
        return qlib_fail(QLIB_ERR_NOMEM, "qlib_ctx: cannot allocate the thread pool");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (int i = 0; i < p->n_workers; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_worker, p) != 0) {
            p->n_workers = i;
            qlib_pool_destroy(p);
            return qlib_fail(QLIB_ERR_NOMEM, "qlib_ctx: cannot start thread %d of %d", i + 1,
                             n_threads);
        }
    }
    *out = p;
    return QLIB_OK;
}

static void wake_sleepers(qlib_pool *p)
{
    if (!__atomic_load_n(&p->sleepers, __ATOMIC_SEQ_CST)) return;
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

void qlib_pool_run(qlib_pool *p, void (*task)(void *, size_t), void *arg, size_t n)
{
    p->task = task;
    p->arg = arg;
    p->n_tasks = n;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->open, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&p->generation, 1, __ATOMIC_SEQ_CST);
    wake_sleepers(p);
    pool_drain(p, task, arg, n);
    /* every task is taken: close the job, wait for the workers inside */
    __atomic_store_n(&p->open, 0, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; __atomic_load_n(&p->active, __ATOMIC_SEQ_CST) > 0; i++)
        if ((i & 63) == 63) sched_yield();
}

void qlib_pool_destroy(qlib_pool *p)
{
    if (!p) return;
    __atomic_store_n(&p->stop, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    qlib_mem_free(p->alloc, p->threads);
    qlib_mem_free(p->alloc, p);
}
