/* Contexts: allocator, threads, kernels, compute mode, scratch. */
#include <stdlib.h>

#include "core.h"

/* Plain aligned blocks. Advising transparent huge pages for tensors was
 * measured and dropped: an INT4 GEMV streaming its weights from huge pages
 * ran at half the speed (9.6-11.5 against 17-21 GB/s, `make bench
 * BENCH=cold`, Zen 4); see docs/PERFORMANCE.md. */
static void *default_alloc(void *user, size_t size, size_t alignment)
{
    (void)user;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size ? size : 1) != 0) return NULL;
    return p;
}

static void default_free(void *user, void *p)
{
    (void)user;
    free(p);
}

const qlib_allocator qlib_default_allocator = {
    (uint32_t)sizeof(qlib_allocator), default_alloc, default_free, NULL
};

void *qlib_mem_alloc(const qlib_allocator *a, size_t size)
{
    return a->alloc(a->user, size ? size : 1, QLIB_ALIGN);
}

void *qlib_mem_calloc(const qlib_allocator *a, size_t size)
{
    void *p = qlib_mem_alloc(a, size);
    if (p) memset(p, 0, size);
    return p;
}

void qlib_mem_free(const qlib_allocator *a, void *p)
{
    if (p) a->free(a->user, p);
}

static qlib_status ctx_apply_threads(qlib_ctx *ctx, int n)
{
    qlib_pool *pool = NULL;
    if (n == 0) n = qlib_cpu_count();
    if (n > 1 && !ctx->parallel.run) {
        qlib_status s = qlib_pool_create(&ctx->alloc, n, &pool);
        if (s != QLIB_OK) return s;
    }
    qlib_pool_destroy(ctx->pool);
    ctx->pool = pool;
    ctx->n_threads = n;
    return QLIB_OK;
}

qlib_status qlib_ctx_create_with_allocator(const qlib_allocator *a, qlib_ctx **out)
{
    if (!out) return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_create: out is NULL");
    *out = NULL;
    if (!a) a = &qlib_default_allocator;
    if (a->struct_size < sizeof(qlib_allocator) || !a->alloc || !a->free)
        return qlib_fail(QLIB_ERR_ARG,
                         "qlib_ctx_create_with_allocator: struct_size %u (need %u) or a NULL "
                         "callback", (unsigned)a->struct_size, (unsigned)sizeof(qlib_allocator));
    const char *env = getenv("QLIB_ISA");
    const qlib_kernels *kern = qlib_kernels_pick(env && *env ? env : NULL, qlib_cpu_features());
    if (!kern)
        return qlib_fail(QLIB_ERR_UNSUPPORTED,
                         "qlib_ctx_create: QLIB_ISA=%s is unknown or not supported by this CPU",
                         env);
    qlib_ctx *ctx = a->alloc(a->user, sizeof *ctx, QLIB_ALIGN);
    if (!ctx) return qlib_fail(QLIB_ERR_NOMEM, "qlib_ctx_create: out of memory");
    memset(ctx, 0, sizeof *ctx);
    ctx->alloc = *a;
    ctx->alloc.struct_size = (uint32_t)sizeof(qlib_allocator);
    ctx->kern = kern;
    ctx->compute = QLIB_COMPUTE_AUTO;
    qlib_status s = ctx_apply_threads(ctx, 0);
    if (s != QLIB_OK) {
        a->free(a->user, ctx);
        return s;
    }
    *out = ctx;
    return QLIB_OK;
}

qlib_status qlib_ctx_create(qlib_ctx **out)
{
    return qlib_ctx_create_with_allocator(NULL, out);
}

qlib_status qlib_ctx_set_threads(qlib_ctx *ctx, int n_threads)
{
    if (!ctx) return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_set_threads: ctx is NULL");
    if (n_threads < 0 || n_threads > 1024)
        return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_set_threads: n_threads=%d (need 0..1024)",
                         n_threads);
    return ctx_apply_threads(ctx, n_threads);
}

qlib_status qlib_ctx_set_parallel(qlib_ctx *ctx, const qlib_parallel *p)
{
    if (!ctx) return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_set_parallel: ctx is NULL");
    if (p && (p->struct_size < sizeof(qlib_parallel) || !p->run))
        return qlib_fail(QLIB_ERR_ARG,
                         "qlib_ctx_set_parallel: struct_size %u (need %u) or run is NULL",
                         (unsigned)p->struct_size, (unsigned)sizeof(qlib_parallel));
    qlib_parallel old = ctx->parallel;
    if (p) {
        ctx->parallel = *p;
        ctx->parallel.struct_size = (uint32_t)sizeof(qlib_parallel);
    } else {
        memset(&ctx->parallel, 0, sizeof ctx->parallel);
    }
    qlib_status s = ctx_apply_threads(ctx, ctx->n_threads);
    if (s != QLIB_OK) ctx->parallel = old;
    return s;
}

qlib_status qlib_ctx_set_isa(qlib_ctx *ctx, const char *isa)
{
    if (!ctx) return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_set_isa: ctx is NULL");
    const qlib_kernels *k = qlib_kernels_pick(isa, qlib_cpu_features());
    if (!k)
        return qlib_fail(QLIB_ERR_UNSUPPORTED,
                         "qlib_ctx_set_isa: \"%s\" is unknown or not supported by this CPU/build",
                         isa);
    ctx->kern = k;
    return QLIB_OK;
}

qlib_status qlib_ctx_set_compute(qlib_ctx *ctx, qlib_compute mode)
{
    if (!ctx) return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_set_compute: ctx is NULL");
    if (mode != QLIB_COMPUTE_AUTO && mode != QLIB_COMPUTE_F32)
        return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_set_compute: unknown mode %d", (int)mode);
    ctx->compute = mode;
    return QLIB_OK;
}

qlib_status qlib_ctx_set_progress(qlib_ctx *ctx, qlib_progress_fn fn, void *user)
{
    if (!ctx) return qlib_fail(QLIB_ERR_ARG, "qlib_ctx_set_progress: ctx is NULL");
    ctx->progress = fn;
    ctx->progress_user = fn ? user : NULL;
    return QLIB_OK;
}

void qlib_progress_begin(qlib_ctx *ctx)
{
    ctx->progress_last = 0.0;
    ctx->progress_stage = NULL;
    ctx->cancelled = 0;
    qlib_progress_part(ctx, 0.0, 1.0);
}

void qlib_progress_part(qlib_ctx *ctx, double lo, double hi)
{
    ctx->progress_lo = lo;
    ctx->progress_hi = hi;
}

int qlib_progress(qlib_ctx *ctx, const char *stage, double fraction)
{
    if (ctx->cancelled) return 1;
    if (!ctx->progress) return 0;
    fraction = ctx->progress_lo + (ctx->progress_hi - ctx->progress_lo) * fraction;
    if (!(fraction >= ctx->progress_last)) fraction = ctx->progress_last;   /* NaN too */
    if (fraction > 1.0) fraction = 1.0;
    ctx->progress_last = fraction;
    ctx->progress_stage = stage;
    ctx->cancelled = ctx->progress(ctx->progress_user, stage, fraction) != 0;
    return ctx->cancelled;
}

int qlib_progress_poll(qlib_ctx *ctx)
{
    if (ctx->cancelled) return 1;
    if (!ctx->progress || !ctx->progress_stage) return 0;
    ctx->cancelled = ctx->progress(ctx->progress_user, ctx->progress_stage,
                                   ctx->progress_last) != 0;
    return ctx->cancelled;
}

const char *qlib_progress_stage(const qlib_ctx *ctx)
{
    return ctx->progress_stage ? ctx->progress_stage : "start";
}

qlib_status qlib_progress_cancelled(const char *fn, const char *stage)
{
    return qlib_fail(QLIB_ERR_CANCELLED, "%s: cancelled by the progress callback during %s", fn,
                     stage);
}

const char *qlib_ctx_isa(const qlib_ctx *ctx) { return ctx ? ctx->kern->isa : ""; }
int qlib_ctx_threads(const qlib_ctx *ctx) { return ctx ? ctx->n_threads : 0; }
qlib_compute qlib_ctx_compute(const qlib_ctx *ctx) { return ctx ? ctx->compute : QLIB_COMPUTE_AUTO; }

void qlib_ctx_destroy(qlib_ctx *ctx)
{
    if (!ctx) return;
    qlib_pool_destroy(ctx->pool);
    qlib_mem_free(&ctx->alloc, ctx->scratch[0]);
    qlib_mem_free(&ctx->alloc, ctx->scratch[1]);
    qlib_allocator a = ctx->alloc;
    a.free(a.user, ctx);
}

void qlib_ctx_parallel_for(qlib_ctx *ctx, void (*task)(void *, size_t), void *arg, size_t n)
{
    if (n == 0) return;
    if (ctx->parallel.run && n > 1) {
        ctx->parallel.run(ctx->parallel.user, task, arg, n);
    } else if (ctx->pool && n > 1) {
        qlib_pool_run(ctx->pool, task, arg, n);
    } else {
        for (size_t i = 0; i < n; i++) task(arg, i);
    }
}

static void *scratch_slot(qlib_ctx *ctx, int slot, size_t size, const char *fn)
{
    if (size <= ctx->scratch_size[slot]) return ctx->scratch[slot];
    size_t grow = ctx->scratch_size[slot] + ctx->scratch_size[slot] / 2;
    if (grow > size) size = grow;
    void *p = qlib_mem_alloc(&ctx->alloc, size);
    if (!p) {
        qlib_fail(QLIB_ERR_NOMEM, "%s: cannot allocate %zu bytes of scratch", fn, size);
        return NULL;
    }
    qlib_mem_free(&ctx->alloc, ctx->scratch[slot]);
    ctx->scratch[slot] = p;
    ctx->scratch_size[slot] = size;
    return p;
}

void *qlib_ctx_scratch(qlib_ctx *ctx, size_t size, const char *fn)
{
    return scratch_slot(ctx, 0, size, fn);
}

void *qlib_ctx_scratch_aux(qlib_ctx *ctx, size_t size, const char *fn)
{
    return scratch_slot(ctx, 1, size, fn);
}
