/* The quantization methods. Each produces codes, scales and zeros in the one
 * packed layout (src/core/pack.c) and knows nothing of ISAs. */
#ifndef QLIB_SCHEMES_H
#define QLIB_SCHEMES_H

#include "../core/core.h"

/* ---- the method registry (registry.c): one row per method, each defined
 * beside its quantizer; QLIB_METHOD_COUNT rows, indexed by the pinned enum ---- */
#define QLIB_METHOD_COUNT 5
extern const qlib_method_row qlib_method_none;       /* rtn.c */
extern const qlib_method_row qlib_method_rtn;        /* rtn.c */
extern const qlib_method_row qlib_method_gptq;       /* gptq.c */
extern const qlib_method_row qlib_method_awq;        /* awq.c */
extern const qlib_method_row qlib_method_llm_int8;   /* llm_int8.c */

/* Parameter specs the rows share. */
#define QLIB_WIDTH(bits) ((uint64_t)1 << (bits))
#define QLIB_SPEC_BITS(widths, def) \
    { QLIB_PARAM_BITS, QLIB_PK_WIDTH, 0, 0, widths, def, 0, "bits" }
#define QLIB_SPEC_GROUP(def) \
    { QLIB_PARAM_GROUP_SIZE, QLIB_PK_GROUP, -1, 1 << 24, 0, def, 0, "group size" }
#define QLIB_SPEC_SYMMETRIC { QLIB_PARAM_SYMMETRIC, QLIB_PK_SWITCH, 0, 1, 0, 0, 0, "symmetric" }
#define QLIB_SPEC_FIXED(id, value) { id, QLIB_PK_INT, value, value, 0, value, 1, #id }
#define QLIB_QUANT_WIDTHS (QLIB_WIDTH(2) | QLIB_WIDTH(3) | QLIB_WIDTH(4) | QLIB_WIDTH(8))

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
