/* qlib_matmul: checks, activation preparation, and the split of output
 * columns over threads. */
#include <math.h>

#include "core.h"

#define COL_CHUNK 64                 /* output columns per task: fixed, any thread count */
#define INLINE_WORK (1u << 18)       /* below this many multiply-adds, stay on this thread */

/* An exponent of all ones (Inf or NaN) carries into bit 31 when the exponent
 * field is incremented: an integer test the compiler vectorises (a float
 * sum was a chain of dependent adds, 4 cycles an element). */
int qlib_all_finite(const float *x, size_t rows, size_t cols, size_t ld)
{
    for (size_t i = 0; i < rows; i++) {
        const float *r = x + i * ld;
        uint32_t bad = 0;
        for (size_t j = 0; j < cols; j++) {
            uint32_t u;
            memcpy(&u, &r[j], sizeof u);
            bad |= (u & 0x7f800000u) + 0x00800000u;
        }
        if (bad >> 31) return 0;
    }
    return 1;
}

typedef struct mm_job {
    const qk_weights *w;
    const qlib_kernels *kern;
    const qk_q8_ukernel *uk;                /* AUTO: the microkernel */
    qk_xmap map;
    const float *x;
    size_t ldx, m, n_tasks;                 /* n_tasks: of the row preparation */
    int8_t *q;
    int16_t *q16;                           /* when the microkernel wants_q16 */
    float *d, *xf;
    int32_t *sum;
    float *y;
    size_t ldy;
    void (*post)(void *, size_t, size_t);   /* optional, after each chunk of columns */
    void *post_arg;
    /* The microkernel's workspaces: ws_slots of ws_bytes each, one per
     * task running at once; ws_busy: a bit per slot taken (atomic). */
    uint8_t *ws;
    size_t ws_bytes;
    unsigned ws_slots;
    uint64_t ws_busy;
} mm_job;

#define WS_MAX_SLOTS 64

/* A free workspace slot, taken; -1 when every slot is in use (a lent pool
 * that runs more tasks at once than the context has threads): the kernel
 * then works in a buffer of its own, with the same results. */
static int ws_take(mm_job *j)
{
    if (!j->ws_slots) return -1;
    uint64_t all = j->ws_slots == 64 ? ~(uint64_t)0 : ((uint64_t)1 << j->ws_slots) - 1;
    uint64_t busy = __atomic_load_n(&j->ws_busy, __ATOMIC_RELAXED), free;
    /* a failed exchange reloads busy */
    while ((free = ~busy & all) != 0) {
        int i = __builtin_ctzll(free);
        if (__atomic_compare_exchange_n(&j->ws_busy, &busy, busy | (uint64_t)1 << i, 1,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return i;
    }
    return -1;
}

static void ws_give_back(mm_job *j, int i)
{
    if (i >= 0) __atomic_fetch_and(&j->ws_busy, ~((uint64_t)1 << i), __ATOMIC_RELEASE);
}

static void prep_task(void *arg, size_t i)
{
    mm_job *j = arg;
    size_t r0 = j->m * i / j->n_tasks, r1 = j->m * (i + 1) / j->n_tasks, kp = j->map.kp;
    for (size_t r = r0; r < r1; r++) {
        if (j->q) {
            j->kern->quantize_row(&j->map, j->x + r * j->ldx, j->q + r * kp,
                                  j->d + r * (kp / QK_BLOCK), j->sum + r * (kp / QK_BLOCK));
            if (j->q16) qk_widen_q(j->q + r * kp, kp, j->q16 + r * kp);
        } else {
            j->kern->prepare_row(&j->map, j->x + r * j->ldx, j->xf + r * kp);
        }
    }
}

static void gemm_range(mm_job *j, size_t n0, size_t n1)
{
    if (j->q) {
        int slot = ws_take(j);
        qk_acts a = { j->m, j->map.kp, j->q, j->d, j->sum, j->q16,
                      slot < 0 ? NULL : j->ws + (size_t)slot * j->ws_bytes };
        j->uk->run(j->w, &a, n0, n1, j->y, j->ldy);
        ws_give_back(j, slot);
    } else {
        j->kern->gemm_f32.run(j->w, j->xf, j->map.kp, j->m, n0, n1, j->y, j->ldy);
    }
}

/* Output columns [n0, n1) of a product. */
static void gemm_cols(void *arg, size_t n0, size_t n1)
{
    mm_job *j = arg;
    if (!j->post) {
        gemm_range(j, n0, n1);
        return;
    }
    /* Chunk by chunk, so that the hook finds each chunk's weights in cache. */
    for (size_t c0 = n0; c0 < n1; c0 += COL_CHUNK) {
        size_t c1 = c0 + COL_CHUNK < n1 ? c0 + COL_CHUNK : n1;
        gemm_range(j, c0, c1);
        j->post(j->post_arg, c0, c1);
    }
}

static size_t task_count(const qlib_ctx *ctx, size_t units, size_t work)
{
    if (ctx->n_threads <= 1 || work < INLINE_WORK) return 1;
    return units;
}

/* cols(arg, n0, n1) over the n output columns: in fixed chunks of COL_CHUNK
 * spread over the context's threads, or in one call when the product (work
 * multiply-adds) is too small to share. */
typedef struct col_split {
    void (*cols)(void *, size_t, size_t);
    void *arg;
    size_t n, per_task;
} col_split;

static void split_task(void *arg, size_t i)
{
    col_split *c = arg;
    size_t n0 = i * c->per_task, n1 = n0 + c->per_task;
    c->cols(c->arg, n0, n1 < c->n ? n1 : c->n);
}

/* The tasks split_columns makes. */
static size_t col_tasks(const qlib_ctx *ctx, size_t n, size_t work)
{
    return task_count(ctx, (n + COL_CHUNK - 1) / COL_CHUNK, work);
}

static void split_columns(qlib_ctx *ctx, size_t n, size_t work,
                          void (*cols)(void *, size_t, size_t), void *arg)
{
    size_t tasks = col_tasks(ctx, n, work);
    col_split c = { cols, arg, n, tasks == 1 ? n : COL_CHUNK };
    qlib_ctx_parallel_for(ctx, split_task, &c, tasks);
}

qlib_status qlib_matmul_quantized(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                                  size_t ldx, float *y, size_t ldy, const uint8_t *drop)
{
    return qlib_matmul_quantized_post(ctx, t, x, m, ldx, y, ldy, drop, NULL, NULL);
}

qlib_status qlib_matmul_quantized_post(qlib_ctx *ctx, const qlib_tensor *t, const float *x,
                                       size_t m, size_t ldx, float *y, size_t ldy,
                                       const uint8_t *drop,
                                       void (*post)(void *, size_t, size_t), void *post_arg)
{
    static const char fn[] = "qlib_matmul";
    const qk_weights *w = &t->w;
    size_t kp = w->kp, nbk = kp / QK_BLOCK, bytes, rows_bytes;
    int quant = ctx->compute == QLIB_COMPUTE_AUTO;
    const qk_q8_ukernel *uk = quant ? qk_pick_q8(ctx->kern, w, m) : NULL;
    if (quant && !uk)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: the %s kernels have no %d-bit kernel", fn,
                         ctx->kern->isa, w->bits);
    int wide = uk && uk->wants_q16;
    size_t per_row = quant ? kp * (wide ? 3 : 1) + nbk * 8 : kp * 4;
    /* a workspace per task running at once (a multiple of 64 bytes each) */
    size_t ws_bytes = uk ? qlib_round_up(qk_ws_bytes(uk, m), 64) : 0;
    if (qlib_mul_overflows(m, per_row, &rows_bytes)
        || rows_bytes > SIZE_MAX - 320 - 64 - WS_MAX_SLOTS * ws_bytes)
        return qlib_fail(QLIB_ERR_ARG, "%s: m=%zu is too large", fn, m);
    size_t work = m * kp * w->n, tasks = col_tasks(ctx, w->n, work);
    size_t threads = (size_t)ctx->n_threads;
    size_t ws_slots = !ws_bytes ? 0 : tasks < threads ? tasks : threads;
    if (ws_slots > WS_MAX_SLOTS) ws_slots = WS_MAX_SLOTS;
    size_t ws_at = qlib_round_up(rows_bytes + 320, 64);
    bytes = ws_at + ws_slots * ws_bytes;
    uint8_t *s = qlib_ctx_scratch(ctx, bytes, fn);
    if (!s) return QLIB_ERR_NOMEM;
    mm_job j;
    memset(&j, 0, sizeof j);
    j.w = w;
    j.kern = ctx->kern;
    j.uk = uk;
    j.map = (qk_xmap){ t->d.k, kp, t->perm, t->input_scales, drop };
    j.x = x;
    j.ldx = ldx;
    j.m = m;
    j.y = y;
    j.ldy = ldy;
    j.post = post;
    j.post_arg = post_arg;
    j.ws = s + ws_at;
    j.ws_bytes = ws_bytes;
    j.ws_slots = (unsigned)ws_slots;
    if (quant) {
        j.d = (float *)(void *)s;
        j.sum = (int32_t *)(void *)(s + qlib_round_up(m * nbk * 4, 64));
        j.q = (int8_t *)(s + 2 * qlib_round_up(m * nbk * 4, 64));
        if (wide) j.q16 = (int16_t *)(void *)(s + 2 * qlib_round_up(m * nbk * 4, 64) +
                                              qlib_round_up(m * kp, 64));
    } else {
        j.xf = (float *)(void *)s;
    }
    j.n_tasks = task_count(ctx, m, work / w->n * 64);
    qlib_ctx_parallel_for(ctx, prep_task, &j, j.n_tasks);
    split_columns(ctx, w->n, work, gemm_cols, &j);
    return QLIB_OK;
}

/* One token times an fp16 tensor: the fp16 GEMV kernel, output columns split
 * like the quantized ones (no fp32 copy of the weights). */
typedef struct f16_job {
    const qlib_kernels *kern;
    const uint16_t *w;
    size_t k;
    const float *x;
    float *y;
} f16_job;

static void f16_cols(void *arg, size_t n0, size_t n1)
{
    const f16_job *j = arg;
    j->kern->gemv_f16.run(j->w, j->k, j->x, n0, n1, j->y);
}

static void matmul_f16_gemv(qlib_ctx *ctx, const qlib_tensor *t, const float *x, float *y)
{
    f16_job j = { ctx->kern, t->f16, t->d.k, x, y };
    split_columns(ctx, t->d.n, t->d.n * t->d.k, f16_cols, &j);
}

/* Every x[i][c] * s[c] finite. A loaded AWQ tensor's input scales may be
 * any finite value, and the kernels quantize x * s: Inf there has no int8 code. */
static int scaled_finite(const float *x, size_t rows, size_t cols, size_t ld, const float *s)
{
    for (size_t i = 0; i < rows; i++) {
        float acc = 0.0f;
        for (size_t j = 0; j < cols; j++) acc += x[i * ld + j] * s[j] * 0.0f;
        if (acc != 0.0f) return 0;
    }
    return 1;
}

static int ranges_overlap(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return a0 < b0 + blen && b0 < a0 + alen;
}

qlib_status qlib_matmul(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m, size_t ldx,
                        float *y, size_t ldy)
{
    static const char fn[] = "qlib_matmul";
    if (!ctx || !t || !x || !y)
        return qlib_fail(QLIB_ERR_ARG, "%s: ctx, tensor, x or y is NULL", fn);
    size_t k = t->d.k, n = t->d.n, xe, ye;
    if (m == 0) return qlib_fail(QLIB_ERR_ARG, "%s: m is 0", fn);
    if (ldx < k)
        return qlib_fail(QLIB_ERR_SHAPE, "%s: x has ldx=%zu but the tensor expects k=%zu columns",
                         fn, ldx, k);
    if (ldy < n)
        return qlib_fail(QLIB_ERR_SHAPE, "%s: y has ldy=%zu but the tensor has n=%zu rows", fn,
                         ldy, n);
    if (qlib_mul_overflows(m - 1, ldx, &xe) || xe > SIZE_MAX / 8 - k ||
        qlib_mul_overflows(m - 1, ldy, &ye) || ye > SIZE_MAX / 8 - n)
        return qlib_fail(QLIB_ERR_ARG, "%s: m=%zu with ldx=%zu, ldy=%zu overflows", fn, m, ldx,
                         ldy);
    if (ranges_overlap(x, (xe + k) * 4, y, (ye + n) * 4))
        return qlib_fail(QLIB_ERR_ARG, "%s: y overlaps x", fn);
    if (!qlib_all_finite(x, m, k, ldx))
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: x contains NaN or Inf", fn);
    if (t->input_scales && !scaled_finite(x, m, k, ldx, t->input_scales))
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: x times the tensor's input scales overflows", fn);
    const qlib_method_row *row = qlib_method_lookup(t->d.method);
    if (row->float_weights && t->f16 && m == 1) {
        matmul_f16_gemv(ctx, t, x, y);
        return QLIB_OK;
    }
    if (row->matmul) return row->matmul(ctx, t, x, m, ldx, y, ldy);
    qlib_matmul_plan plan = { NULL, NULL, NULL };
    if (row->matmul_plan) {
        qlib_status s = row->matmul_plan(ctx, t, x, m, ldx, y, ldy, &plan);
        if (s != QLIB_OK) return s;
    }
    return qlib_matmul_quantized_post(ctx, t, x, m, ldx, y, ldy, plan.drop, plan.post,
                                      plan.post_arg);
}
