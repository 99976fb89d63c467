/* qlib_tensor_fold_input_scales: a tensor's input scales handed to the
 * caller, who folds them into the operation that produces x. */
#include <math.h>

#include "core.h"

qlib_status qlib_tensor_fold_input_scales(qlib_ctx *ctx, const qlib_tensor *t, float *s,
                                          qlib_tensor **out)
{
    static const char fn[] = "qlib_tensor_fold_input_scales";
    if (!out) return qlib_fail(QLIB_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx || !t || !s) return qlib_fail(QLIB_ERR_ARG, "%s: ctx, tensor or s is NULL", fn);
    if (!t->input_scales)
        return qlib_fail(QLIB_ERR_STATE, "%s: the tensor has no input scales", fn);
    size_t k = t->d.k;
    for (size_t c = 0; c < k; c++)
        if (!isfinite(1.0f / t->input_scales[c]))
            return qlib_fail(QLIB_ERR_NUMERIC, "%s: input scale %g of column %zu has no finite "
                             "reciprocal", fn, (double)t->input_scales[c], c);
    qlib_tensor_desc d = t->d;
    d.has_input_scales = 0;
    qlib_tensor *o;
    qlib_status st = qlib_tensor_create(&ctx->alloc, &d, &o, fn);
    if (st != QLIB_OK) return st;
    /* every section but the input scales, as it is */
    qlib_section from[QLIB_SEC_MAX], to[QLIB_SEC_MAX];
    unsigned n_from, n_to;
    size_t storage;
    qlib_tensor_layout(&t->d, from, &n_from, &storage);
    qlib_tensor_layout(&d, to, &n_to, &storage);
    for (unsigned i = 0; i < n_to; i++)
        for (unsigned j = 0; j < n_from; j++)
            if (from[j].id == to[i].id)
                memcpy(o->blob + to[i].offset, t->blob + from[j].offset, to[i].size);
    qlib_tensor_seal(o, t->quant_error, t->error_weighted);
    for (size_t c = 0; c < k; c++) s[c] = 1.0f / t->input_scales[c];
    *out = o;
    return QLIB_OK;
}
