/* qlib_quantize: argument checks, then the method. */
#include <limits.h>

#include "schemes.h"

static int method_uses_calib(qlib_method m)
{
    return m == QLIB_METHOD_GPTQ || m == QLIB_METHOD_AWQ;
}

qlib_status qlib_quantize(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                          const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out)
{
    static const char fn[] = "qlib_quantize";
    static const qlib_quantize_fn methods[] = { qlib_quantize_none, qlib_quantize_rtn,
                                                qlib_quantize_gptq, qlib_quantize_awq,
                                                qlib_quantize_llm_int8 };
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
    if (method_uses_calib(cfg->method) && calib && calib->k != k)
        return qlib_fail(QLIB_ERR_SHAPE, "%s: calibration has k=%zu, weights have k=%zu", fn,
                         calib->k, k);
    if (!qlib_all_finite(w, n, k, ldw))
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: w contains NaN or Inf", fn);
    return methods[cfg->method](ctx, w, n, k, ldw, cfg, calib, out);
}
