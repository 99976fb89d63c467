/* The quantization methods. Each produces codes, scales and zeros in the one
 * packed layout (src/core/pack.c) and knows nothing of ISAs. */
#ifndef QLIB_SCHEMES_H
#define QLIB_SCHEMES_H

#include "../core/core.h"

/* ---- the method registry (registry.c): one row per method, indexed by the
 * pinned enum; QLIB_METHOD_COUNT rows ---- */
#define QLIB_METHOD_COUNT 5

/* Each method's entry points, called through its row. */
qlib_status qlib_quantize_none(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                               const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out);
qlib_status qlib_quantize_rtn(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                              const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out);
qlib_status qlib_quantize_gptq(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                               const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out);
qlib_status qlib_quantize_awq(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                              const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out);
qlib_status qlib_quantize_llm_int8(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                   const qlib_config *cfg, const qlib_calib *calib,
                                   qlib_tensor **out);
/* LLM.int8(): its tensors' rule (8 bits, symmetric, one group a row, a finite
 * threshold) and its product's plan (outlier columns in fp32). */
qlib_status qlib_llm_int8_check(const qlib_tensor_desc *d, const char *fn, qlib_status code);
qlib_status qlib_llm_int8_plan(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                               size_t ldx, float *y, size_t ldy, qlib_matmul_plan *plan);

/* AWQ's scale search alone (awq.c): the exponent alpha it picks for w with
 * cfg and calib (ties go to the smaller alpha). For tests. */
qlib_status qlib_awq_search_alpha(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                  const qlib_config *cfg, const qlib_calib *calib, float *alpha);

/* GPTQ's factor (gptq.c): a (k x k, symmetric, row-major, both triangles)
 * becomes in its upper triangle U with U^T U = (a + lambda I)^-1, lambda =
 * damp * mean(diag a), grown x10 up to 4 times while a + lambda I is not
 * positive definite, then ERR_NUMERIC naming every lambda tried. The lower
 * triangle is left undefined. diag: k floats of scratch. For tests too. */
qlib_status qlib_gptq_inverse_factor(float *a, size_t k, float damp, float *diag, float *lambda);

/* ---- round-to-nearest building blocks (rtn.c), shared by GPTQ and AWQ ---- */
typedef struct qlib_qparams {
    uint16_t scale16;    /* fp16 scale as stored */
    float scale;         /* its value */
    int zero;            /* stored zero point (2^(bits-1) when symmetric) */
    int maxq;            /* 2^bits - 1 */
} qlib_qparams;

/* Parameters for values w[0..len) (stride 1) clipped to [lo, hi] of their
 * range: the range always includes 0; an all-zero group gets a tiny positive
 * scale. Returns 0 when the scale exceeds the fp16 range. */
int qlib_rtn_params(const float *w, size_t len, int bits, int symmetric, qlib_qparams *p);
/* The same from a known min and max (min <= 0 <= max). */
int qlib_rtn_params_range(float min, float max, int bits, int symmetric, qlib_qparams *p);
static inline int qlib_rtn_code(const qlib_qparams *p, float w)
{
    float q = __builtin_nearbyintf(w / p->scale) + (float)p->zero;
    return q < 0.0f ? 0 : q > (float)p->maxq ? p->maxq : (int)q;
}
static inline float qlib_rtn_value(const qlib_qparams *p, int code)
{
    return p->scale * (float)(code - p->zero);
}

/* The tensor description of a quantized method from its config. */
qlib_tensor_desc qlib_quant_desc(const qlib_config *cfg, size_t n, size_t k);
/* Writes group g of row r's parameters into t. */
void qlib_tensor_put_params(qlib_tensor *t, size_t r, size_t g, const qlib_qparams *p);

/* Fills a created tensor from w by round to nearest (rows in parallel; w is
 * already in stored order). Returns ERR_NUMERIC if a scale overflows fp16. */
qlib_status qlib_rtn_fill(qlib_ctx *ctx, qlib_tensor *t, const float *w, size_t ldw);
/* ||W - W^||^2 / ||W||^2 with W^ = qlib_dequantize(t), rows in parallel. */
qlib_status qlib_relative_error(qlib_ctx *ctx, const qlib_tensor *t, const float *w, size_t ldw,
                                double *out);

#endif
