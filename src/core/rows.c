/* qlib_dequantize and qlib_dequantize_rows: a tensor's effective weights, all
 * of them or a few rows (e.g. the token embedding rows of a quantized
 * embedding table, looked up per token); each row is computed the same way
 * however the rows are split among threads. */
#include "core.h"

typedef struct rows_job {
    const qlib_tensor *t;
    const qlib_kernels *kern;
    float *w, *tmp;
    size_t row0, count, ldw, n_tasks;
} rows_job;

static void rows_task(void *arg, size_t i)
{
    rows_job *j = arg;
    size_t r0 = j->count * i / j->n_tasks, r1 = j->count * (i + 1) / j->n_tasks;
    float *tmp = j->tmp ? j->tmp + i * j->t->w.kp : NULL;
    for (size_t r = r0; r < r1; r++)
        qlib_tensor_row(j->t, j->kern, j->row0 + r, j->w + r * j->ldw, tmp);
}

/* Rows fewer than this per task are not worth waking a thread for, when a
 * few rows are asked for. */
#define ROWS_PER_TASK 16

/* Rows row0 .. row0 + count - 1 into w, in tasks of at least min_rows rows. */
static qlib_status dequantize_range(qlib_ctx *ctx, const qlib_tensor *t, size_t row0,
                                    size_t count, float *w, size_t ldw, size_t min_rows,
                                    const char *fn)
{
    if (ldw < t->d.k)
        return qlib_fail(QLIB_ERR_ARG, "%s: ldw=%zu is less than k=%zu", fn, ldw, t->d.k);
    size_t span;
    if (qlib_mul_overflows(count - 1, ldw, &span) || span > SIZE_MAX / sizeof(float) - t->d.k)
        return qlib_fail(QLIB_ERR_ARG, "%s: %zu rows with ldw=%zu overflow", fn, count, ldw);
    rows_job j = { t, ctx->kern, w, NULL, row0, count, ldw, (size_t)ctx->n_threads };
    size_t most = (count + min_rows - 1) / min_rows;
    if (j.n_tasks > most) j.n_tasks = most;
    if (t->perm || t->input_scales) {
        size_t bytes;
        if (qlib_mul_overflows(j.n_tasks * sizeof(float), t->w.kp, &bytes))
            return qlib_fail(QLIB_ERR_ARG, "%s: size overflow", fn);
        j.tmp = qlib_ctx_scratch(ctx, bytes, fn);
        if (!j.tmp) return QLIB_ERR_NOMEM;
    }
    qlib_ctx_parallel_for(ctx, rows_task, &j, j.n_tasks);
    return QLIB_OK;
}

qlib_status qlib_dequantize(qlib_ctx *ctx, const qlib_tensor *t, float *w, size_t ldw)
{
    static const char fn[] = "qlib_dequantize";
    if (!ctx || !t || !w)
        return qlib_fail(QLIB_ERR_ARG, "%s: ctx, tensor or output is NULL", fn);
    return dequantize_range(ctx, t, 0, t->d.n, w, ldw, 1, fn);
}

qlib_status qlib_dequantize_rows(qlib_ctx *ctx, const qlib_tensor *t, size_t row0, size_t count,
                                 float *w, size_t ldw)
{
    static const char fn[] = "qlib_dequantize_rows";
    if (!ctx || !t || !w)
        return qlib_fail(QLIB_ERR_ARG, "%s: ctx, tensor or output is NULL", fn);
    if (count == 0)
        return qlib_fail(QLIB_ERR_ARG, "%s: count is 0", fn);
    if (row0 >= t->d.n || count > t->d.n - row0)
        return qlib_fail(QLIB_ERR_ARG, "%s: %zu rows from row %zu do not fit the tensor's %zu",
                         fn, count, row0, t->d.n);
    return dequantize_range(ctx, t, row0, count, w, ldw, ROWS_PER_TASK, fn);
}
