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
    qlib_status s = row->quantize(ctx, w, n, k, ldw, cfg, row->calib ? calib : NULL, &t);
    if (s != QLIB_OK) return s;
    /* the last report: a caller that stops here gets no tensor either */
    if (qlib_progress(ctx, "done", 1.0)) {
        qlib_tensor_destroy(t);
        return qlib_progress_cancelled(fn, "done");
    }
    *out = t;
    return QLIB_OK;
}
