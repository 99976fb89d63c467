/* LLM.int8() (Dettmers et al., 2022): int8 weights with one absmax scale per
 * row; at matmul, the input columns holding an outlier in any row of x are
 * multiplied in fp32 against those columns of W dequantized, and every other
 * column goes through the int8 x int8 kernels. */
#include <math.h>

#include "schemes.h"

#define OUT_CHUNK 64      /* output columns per fp32 update */
#define OUT_SLICE 32      /* outlier columns gathered at a time: 8 KiB of stack */

/* ---- quantization: symmetric 8-bit round to nearest, one scale per row ---- */

qlib_status qlib_quantize_llm_int8(qlib_ctx *ctx, const float *w, size_t n, size_t k,
                                     size_t ldw, const qlib_config *cfg, const qlib_calib *calib,
                                     qlib_tensor **out)
{
    static const char fn[] = "qlib_quantize";
    (void)calib;
    if (qlib_progress(ctx, "rtn", 0.0)) return qlib_progress_cancelled(fn, "rtn");
    qlib_tensor_desc d = qlib_quant_desc(cfg, n, k);
    qlib_tensor *t;
    qlib_status s = qlib_tensor_create(&ctx->alloc, &d, &t, fn);
    if (s != QLIB_OK) return s;
    double err = 0.0;
    s = qlib_rtn_fill(ctx, t, w, ldw);
    if (s == QLIB_OK) s = qlib_relative_error(ctx, t, w, ldw, &err);
    if (s != QLIB_OK) {
        qlib_tensor_destroy(t);
        return s;
    }
    qlib_tensor_seal(t, err, 0);
    *out = t;
    return QLIB_OK;
}

/* ---- matmul with outlier decomposition ---- */

typedef struct outlier_job {
    const qk_weights *w;
    const size_t *cols;        /* n_out outlier input columns, ascending */
    size_t n_out;
    const float *xo;           /* m x n_out: x at the outlier columns */
    size_t m;
    float *y;
    size_t ldy;
} outlier_job;

/* Marks every column with |x| > thr in some row; returns how many. */
static size_t outlier_mask(const float *x, size_t m, size_t k, size_t ldx, float thr,
                           uint8_t *mask)
{
    memset(mask, 0, k);
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * ldx;
        for (size_t c = 0; c < k; c++) mask[c] |= (uint8_t)(fabsf(xi[c]) > thr);
    }
    size_t n_out = 0;
    for (size_t c = 0; c < k; c++) n_out += mask[c];
    return n_out;
}

static void gather_outliers(const float *x, size_t m, size_t k, size_t ldx, const uint8_t *mask,
                            size_t *cols, size_t n_out, float *xo)
{
    size_t j = 0;
    for (size_t c = 0; c < k; c++)
        if (mask[c]) cols[j++] = c;
    for (size_t i = 0; i < m; i++)
        for (j = 0; j < n_out; j++) xo[i * n_out + j] = x[i * ldx + cols[j]];
}

/* wt[j][r - n0] = W^[r][cols[j0 + j]] for j < nj, n0 <= r < n1, zero beyond
 * n1: output columns innermost, so that the products below vectorize without
 * changing their order. The 8-bit layout stores the code of column c as
 * byte c of the row. */
static void gather_weights(const outlier_job *jb, size_t j0, size_t nj, size_t n0, size_t n1,
                           float *wt)
{
    const qk_weights *w = jb->w;
    for (size_t r = 0; r < OUT_CHUNK; r++) {
        if (n0 + r >= n1) {
            for (size_t j = 0; j < nj; j++) wt[j * OUT_CHUNK + r] = 0.0f;
            continue;
        }
        const uint8_t *row = w->codes + (n0 + r) * w->row_bytes;
        float s = qlib_f16_to_f32(w->scales[(n0 + r) * w->scale_stride]);
        int z = qk_zero(w, n0 + r, 0);
        for (size_t j = 0; j < nj; j++)
            wt[j * OUT_CHUNK + r] = s * (float)((int)row[jb->cols[j0 + j]] - z);
    }
}

/* y[i][n0 .. n1) += xo[i][j] * W^[.][cols[j]], j in increasing order: the
 * same sums whichever thread runs the chunk. */
static void add_outlier_slice(const outlier_job *jb, size_t j0, size_t nj, size_t n0, size_t n1,
                              const float *wt)
{
    for (size_t i = 0; i < jb->m; i++) {
        const float *xi = jb->xo + i * jb->n_out + j0;
        float *yi = jb->y + i * jb->ldy + n0, acc[OUT_CHUNK] = { 0 };
        for (size_t r = 0; r < n1 - n0; r++) acc[r] = yi[r];
        for (size_t j = 0; j < nj; j++) {
            const float a = xi[j], *wj = wt + j * OUT_CHUNK;
            for (size_t r = 0; r < OUT_CHUNK; r++) acc[r] += a * wj[r];
        }
        for (size_t r = 0; r < n1 - n0; r++) yi[r] = acc[r];
    }
}

/* Called by the driver right after it has written a chunk of output
 * columns, while the chunk's weight rows are still in cache: gathering the
 * outlier columns from them then costs no second pass over W. */
static void add_outlier_products(void *arg, size_t n0, size_t n1)
{
    const outlier_job *jb = arg;
    float wt[OUT_SLICE * OUT_CHUNK];
    for (size_t c0 = n0; c0 < n1; c0 += OUT_CHUNK) {
        size_t c1 = c0 + OUT_CHUNK < n1 ? c0 + OUT_CHUNK : n1;
        for (size_t j0 = 0; j0 < jb->n_out; j0 += OUT_SLICE) {
            size_t nj = jb->n_out - j0 < OUT_SLICE ? jb->n_out - j0 : OUT_SLICE;
            gather_weights(jb, j0, nj, c0, c1, wt);
            add_outlier_slice(jb, j0, nj, c0, c1, wt);
        }
    }
}

/* The plan of an AUTO product with a positive threshold: the outlier
 * columns of this x are dropped from the int8 product and added in fp32
 * after each chunk of output columns. The job, the mask, the columns and x
 * at them live in the context's auxiliary scratch until the next call. */
qlib_status qlib_llm_int8_plan(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                                 size_t ldx, float *y, size_t ldy, qlib_matmul_plan *plan)
{
    static const char fn[] = "qlib_matmul";
    size_t k = t->d.k, mask_bytes = qlib_round_up(k, 64);
    size_t job_bytes = qlib_round_up(sizeof(outlier_job), 64), head = job_bytes + mask_bytes;
    float thr = t->d.param;
    if (ctx->compute != QLIB_COMPUTE_AUTO || !(thr > 0.0f)) return QLIB_OK;
    uint8_t *area = qlib_ctx_scratch_aux(ctx, head, fn);
    if (!area) return QLIB_ERR_NOMEM;
    size_t n_out = outlier_mask(x, m, k, ldx, thr, area + job_bytes);
    if (n_out == 0) return QLIB_OK;

    /* m x k floats fit in memory (qlib_matmul checked the sizes), so these do too. */
    size_t cols_bytes = qlib_round_up(n_out * sizeof(size_t), 64);
    uint8_t *grown = qlib_ctx_scratch_aux(ctx, head + cols_bytes + m * n_out * sizeof(float), fn);
    if (!grown) return QLIB_ERR_NOMEM;
    /* Growing the scratch drops its contents: scan again into the new area. */
    if (grown != area) outlier_mask(x, m, k, ldx, thr, grown + job_bytes);
    uint8_t *mask = grown + job_bytes;
    size_t *cols = (size_t *)(void *)(grown + head);
    float *xo = (float *)(void *)((uint8_t *)cols + cols_bytes);
    gather_outliers(x, m, k, ldx, mask, cols, n_out, xo);
    outlier_job *jb = (outlier_job *)(void *)grown;
    *jb = (outlier_job){ &t->w, cols, n_out, xo, m, y, ldy };
    plan->drop = mask;
    plan->post = add_outlier_products;
    plan->post_arg = jb;
    return QLIB_OK;
}

qlib_status qlib_llm_int8_check(const qlib_tensor_desc *d, const char *fn, qlib_status code)
{
    if (d->bits != 8 || d->group_size != 0 || !d->symmetric || !isfinite(d->param))
        return qlib_fail(code, "%s: LLM.int8() tensor must be 8-bit symmetric per row", fn);
    return QLIB_OK;
}

float qlib_tensor_outlier_threshold(const qlib_tensor *t)
{
    return t && t->d.method == QLIB_METHOD_LLM_INT8 ? t->d.param : 0.0f;
}
