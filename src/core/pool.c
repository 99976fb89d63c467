/* A small persistent pthread pool. The calling thread takes part; tasks are
 * handed out through an atomic counter, so which thread runs a task never
 * changes what it computes. */
#include <pthread.h>

#include "core.h"

struct qlib_pool {
    const qlib_allocator *alloc;
    int n_workers;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    unsigned long generation;
    int stop;
    void (*task)(void *, size_t);
    void *arg;
    size_t n_tasks;
    size_t next;               /* atomic */
    int busy;                  /* workers still in the current job */
};

static void pool_drain(qlib_pool *p, void (*task)(void *, size_t), void *arg, size_t n)
{
    for (;;) {
        size_t i = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (i >= n) return;
        task(arg, i);
    }
}

static void *pool_worker(void *vp)
{
    qlib_pool *p = vp;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        void (*task)(void *, size_t) = p->task;
        void *arg = p->arg;
        size_t n = p->n_tasks;
        pthread_mutex_unlock(&p->mu);
        pool_drain(p, task, arg, n);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
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
    pthread_cond_init(&p->done, NULL);
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

void qlib_pool_run(qlib_pool *p, void (*task)(void *, size_t), void *arg, size_t n)
{
    pthread_mutex_lock(&p->mu);
    p->task = task;
    p->arg = arg;
    p->n_tasks = n;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    p->busy = p->n_workers;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    pool_drain(p, task, arg, n);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void qlib_pool_destroy(qlib_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    qlib_mem_free(p->alloc, p->threads);
    qlib_mem_free(p->alloc, p);
}
