/* qlib_quantize: argument checks, then the method's row. */
#include <limits.h>

#include "schemes.h"

qlib_status qlib_quantize(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                          const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out)
{
    static const char fn[] = "qlib_quantize";
    size_t span, nk;
    if (!out) return qlib_fail(QLIB_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx || !w || !cfg) return qlib_fail(QLIB_ERR_ARG, "%s: ctx, w or cfg is NULL", fn);
    if (n == 0 || k == 0) return qlib_fail(QLIB_ERR_ARG, "%s: n=%zu, k=%zu", fn, n, k);
    if (ldw < k) return qlib_fail(QLIB_ERR_ARG, "%s: ldw=%zu is less than k=%zu", fn, ldw, k);
    if (qlib_mul_overflows(n - 1, ldw, &span) || span > SIZE_MAX / 4 - k ||
        qlib_mul_overflows(n, k, &nk) || nk > SIZE_MAX / 8)
        return qlib_fail(QLIB_ERR_ARG, "%s: n=%zu x k=%zu (ldw=%zu) overflows", fn, n, k, ldw);
    if (n > INT_MAX || k > INT_MAX)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: n=%zu, k=%zu above %d", fn, n, k, INT_MAX);
    const qlib_method_row *row = qlib_cfg_row(cfg);
    if (row->calib && calib && calib->k != k)
        return qlib_fail(QLIB_ERR_SHAPE, "%s: calibration has k=%zu, weights have k=%zu", fn,
                         calib->k, k);
    if (!qlib_all_finite(w, n, k, ldw))
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: w contains NaN or Inf", fn);
    qlib_progress_begin(ctx);
    qlib_tensor *t = NULL;
    const qlib_calib *c = row->calib ? calib : NULL;
    qlib_status s = row->quantize ? row->quantize(ctx, w, n, k, ldw, cfg, c, &t)
                                  : row->quantize_shared(ctx, 1, &w, &n, k, &ldw, cfg, c, &t);
    if (s != QLIB_OK) {
        qlib_tensor_destroy(t);   /* a joint quantizer may leave what it made */
        return s;
    }
    /* the last report: a caller that stops here gets no tensor either */
    if (qlib_progress(ctx, "done", 1.0)) {
        qlib_tensor_destroy(t);
        return qlib_progress_cancelled(fn, "done");
    }
    *out = t;
    return QLIB_OK;
}

/* Matrix i of qlib_quantize_shared: the checks qlib_quantize makes. */
static qlib_status check_matrix(const char *fn, size_t i, const float *w, size_t n, size_t k,
                                size_t ldw)
{
    size_t span, nk;
    if (!w) return qlib_fail(QLIB_ERR_ARG, "%s: w[%zu] is NULL", fn, i);
    if (n == 0) return qlib_fail(QLIB_ERR_ARG, "%s: n[%zu] is 0", fn, i);
    if (ldw < k)
        return qlib_fail(QLIB_ERR_ARG, "%s: ldw[%zu]=%zu is less than k=%zu", fn, i, ldw, k);
    if (qlib_mul_overflows(n - 1, ldw, &span) || span > SIZE_MAX / 4 - k ||
        qlib_mul_overflows(n, k, &nk) || nk > SIZE_MAX / 8)
        return qlib_fail(QLIB_ERR_ARG, "%s: n[%zu]=%zu x k=%zu (ldw %zu) overflows", fn, i, n, k,
                         ldw);
    if (n > INT_MAX)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: n[%zu]=%zu above %d", fn, i, n, INT_MAX);
    return QLIB_OK;
}

/* A method without a joint quantizer: one call per matrix, each in its
 * share of the progress (by rows). */
static qlib_status quantize_each(qlib_ctx *ctx, const qlib_method_row *row, size_t count,
                                 const float *const *w, const size_t *n, size_t k,
                                 const size_t *ldw, const qlib_config *cfg,
                                 const qlib_calib *calib, qlib_tensor **out)
{
    double rows = 0.0, done = 0.0;
    qlib_status s = QLIB_OK;
    for (size_t i = 0; i < count; i++) rows += (double)n[i];
    for (size_t i = 0; i < count && s == QLIB_OK; i++) {
        qlib_part part = qlib_progress_sub(ctx, done / rows, (done + (double)n[i]) / rows);
        s = row->quantize(ctx, w[i], n[i], k, ldw[i], cfg, calib, &out[i]);
        qlib_progress_restore(ctx, part);
        done += (double)n[i];
    }
    return s;
}

qlib_status qlib_quantize_shared(qlib_ctx *ctx, size_t count, const float *const *w,
                                 const size_t *n, size_t k, const size_t *ldw,
                                 const qlib_config *cfg, const qlib_calib *calib,
                                 qlib_tensor **out)
{
    static const char fn[] = "qlib_quantize_shared";
    if (!out) return qlib_fail(QLIB_ERR_ARG, "%s: out is NULL", fn);
    if (count == 0) return qlib_fail(QLIB_ERR_ARG, "%s: count is 0", fn);
    if (count > SIZE_MAX / sizeof(void *))
        return qlib_fail(QLIB_ERR_ARG, "%s: count=%zu overflows", fn, count);
    for (size_t i = 0; i < count; i++) out[i] = NULL;
    if (!ctx || !w || !n || !ldw || !cfg)
        return qlib_fail(QLIB_ERR_ARG, "%s: ctx, w, n, ldw or cfg is NULL", fn);
    if (k == 0) return qlib_fail(QLIB_ERR_ARG, "%s: k is 0", fn);
    if (k > INT_MAX) return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: k=%zu above %d", fn, k, INT_MAX);
    for (size_t i = 0; i < count; i++) {
        qlib_status s = check_matrix(fn, i, w[i], n[i], k, ldw[i]);
        if (s != QLIB_OK) return s;
    }
    const qlib_method_row *row = qlib_cfg_row(cfg);
    if (row->calib && calib && calib->k != k)
        return qlib_fail(QLIB_ERR_SHAPE, "%s: calibration has k=%zu, weights have k=%zu", fn,
                         calib->k, k);
    for (size_t i = 0; i < count; i++)
        if (!qlib_all_finite(w[i], n[i], k, ldw[i]))
            return qlib_fail(QLIB_ERR_NUMERIC, "%s: w[%zu] contains NaN or Inf", fn, i);
    qlib_progress_begin(ctx);
    const qlib_calib *c = row->calib ? calib : NULL;
    qlib_status s = row->quantize_shared
                    ? row->quantize_shared(ctx, count, w, n, k, ldw, cfg, c, out)
                    : quantize_each(ctx, row, count, w, n, k, ldw, cfg, c, out);
    /* the last report: a caller that stops here gets no tensors either */
    if (s == QLIB_OK && qlib_progress(ctx, "done", 1.0)) s = qlib_progress_cancelled(fn, "done");
    if (s != QLIB_OK)
        for (size_t i = 0; i < count; i++) {
            qlib_tensor_destroy(out[i]);
            out[i] = NULL;
        }
    return s;
}
