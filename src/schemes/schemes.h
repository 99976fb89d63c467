/* The quantization methods. Each produces codes, scales and zeros in the one
 * packed layout (src/core/pack.c) and knows nothing of ISAs. */
#ifndef QLIB_SCHEMES_H
#define QLIB_SCHEMES_H

#include "../core/core.h"

/* ---- the method registry (registry.c): one row per method, indexed by the
 * pinned enum; QLIB_METHOD_COUNT rows ---- */
#define QLIB_METHOD_COUNT 5

/* Each method's entry points, called through its row (GPTQ and AWQ have
 * only the joint one: one matrix is a count of 1). */
qlib_status qlib_quantize_none(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                               const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out);
qlib_status qlib_quantize_rtn(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                              const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out);
qlib_status qlib_quantize_llm_int8(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                   const qlib_config *cfg, const qlib_calib *calib,
                                   qlib_tensor **out);
/* Matrices that read one input, together (qlib_quantize_shared_fn): GPTQ
 * factors the Hessian once; AWQ searches one set of input scales. */
qlib_status qlib_quantize_shared_gptq(qlib_ctx *ctx, size_t count, const float *const *w,
                                      const size_t *n, size_t k, const size_t *ldw,
                                      const qlib_config *cfg, const qlib_calib *calib,
                                      qlib_tensor **out);
qlib_status qlib_quantize_shared_awq(qlib_ctx *ctx, size_t count, const float *const *w,
                                     const size_t *n, size_t k, const size_t *ldw,
                                     const qlib_config *cfg, const qlib_calib *calib,
                                     qlib_tensor **out);
/* LLM.int8(): its tensors' rule (8 bits, symmetric, one group a row, a finite
 * threshold) and its product's plan (outlier columns in fp32). */
qlib_status qlib_llm_int8_check(const qlib_tensor_desc *d, const char *fn, qlib_status code);
qlib_status qlib_llm_int8_plan(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                               size_t ldx, float *y, size_t ldy, qlib_matmul_plan *plan);

/* The clipping search (QLIB_PARAM_CLIP_GRID): ratios r_i = 1 - i/grid *
 * max_shrink, i = 0 .. grid-1; grid 0 (off) and 1 try the plain range only. */
typedef struct qlib_clip {
    int grid;
    float max_shrink;
} qlib_clip;
qlib_clip qlib_clip_of(const qlib_config *cfg);
static inline float qlib_clip_ratio(const qlib_clip *c, int i)
{
    return 1.0f - (float)i / (float)c->grid * c->max_shrink;
}
/* AWQ's scale search alone (awq.c): the exponent alpha it picks for w with
 * cfg and calib (ties go to the smaller alpha). For tests. */
qlib_status qlib_awq_search_alpha(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                  const qlib_config *cfg, const qlib_calib *calib, float *alpha);

/* GPTQ's rounding (gptq.c), for GPTQ and for AWQ's GPTQ rounding. */
#define GPTQ_DEFAULT_DAMP 0.01
#define GPTQ_DEFAULT_BLOCK 128
typedef struct qlib_gptq_opts {
    float damp;
    size_t block;
    int act_order, static_groups;
    qlib_clip clip;
    const float *s, *inv;   /* NULL, or k floats: round W diag(s) in the space of
                               diag(inv) H diag(inv), inv = 1/s (AWQ's input scales) */
} qlib_gptq_opts;
/* The options of cfg (GPTQ's defaults for those its method lacks); s, inv NULL. */
qlib_gptq_opts qlib_gptq_opts_of(const qlib_config *cfg);
/* Fills the created tensors t[0 .. count-1] (one calibration's k, and one
 * desc but for the rows; a permutation section when act_order) from w[i]
 * (t[i]'s rows, stride ldw[i]) with calib's Hessian, factored once for all;
 * error[i]: tr(dW H dW^T) / tr(W H W^T) in the original space. Reports
 * progress in [0, 0.95] of the current part. calib has been checked. */
qlib_status qlib_gptq_fill(qlib_ctx *ctx, size_t count, qlib_tensor *const *t,
                           const float *const *w, const size_t *ldw, const qlib_calib *calib,
                           const qlib_gptq_opts *o, double *error);

/* GPTQ's factor (gptq.c): a (k x k, symmetric, row-major, both triangles)
 * becomes in its upper triangle U with U^T U = (a + lambda I)^-1, lambda =
 * damp * mean(diag a), grown x10 up to 4 times while a + lambda I is not
 * positive definite, then ERR_NUMERIC naming every lambda tried. The lower
 * triangle is left undefined. diag: k floats of scratch. For tests too. */
qlib_status qlib_gptq_inverse_factor(float *a, size_t k, float damp, float *diag, float *lambda);

/* ---- progress of a part of a call: [a, b] of the current part becomes the
 * current part; restore the returned one after it ---- */
typedef struct qlib_part { double lo, hi; } qlib_part;
static inline qlib_part qlib_progress_sub(qlib_ctx *ctx, double a, double b)
{
    qlib_part old = { ctx->progress_lo, ctx->progress_hi };
    double span = old.hi - old.lo;
    qlib_progress_part(ctx, old.lo + span * a, old.lo + span * b);
    return old;
}
static inline void qlib_progress_restore(qlib_ctx *ctx, qlib_part p)
{
    qlib_progress_part(ctx, p.lo, p.hi);
}

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

/* qlib_rtn_code(p, w) - p->zero as a float, for searches that round every
 * weight once per candidate: without a libm call, and over arrays of lanes
 * the compiler can vectorize. (v + 1.5 * 2^23) - 1.5 * 2^23 rounds |v| <
 * 2^22 to nearest even, as nearbyintf does in the default rounding mode;
 * larger magnitudes come out large with their sign and clamp to the same end
 * as qlib_rtn_code's. lo = -zero, hi = maxq - zero. */
static inline float qlib_rtn_level(float w, float scale, float lo, float hi)
{
    float r = (w / scale + 12582912.0f) - 12582912.0f;
    return r < lo ? lo : r > hi ? hi : r;
}

/* Values a search scores: value (r, j) is v[r * ld + j * stride] for r <
 * rows, j < len, its error weighted by wt[j] (wt NULL: weights 1). */
typedef struct qlib_span {
    const float *v;
    size_t rows, ld, len, stride;
    const float *wt;
} qlib_span;
/* The parameters, among those of the ranges [r lo, r hi] for the ratios r
 * of clip, with the least sum wt[j] (v - v^)^2 over the span's values; the
 * larger ratio on ties, so the plain range stays unless another is strictly
 * better. [lo, hi] (lo <= 0 <= hi) is the values' range. Returns 0 when the
 * plain range's scale exceeds fp16. */
int qlib_rtn_params_search(const qlib_span *sp, float lo, float hi, int bits, int symmetric,
                           const qlib_clip *clip, qlib_qparams *p);

/* The tensor description of a quantized method from its config. */
qlib_tensor_desc qlib_quant_desc(const qlib_config *cfg, size_t n, size_t k);
/* Writes group g of row r's parameters into t. */
void qlib_tensor_put_params(qlib_tensor *t, size_t r, size_t g, const qlib_qparams *p);

/* Fills a created tensor from w by round to nearest (rows in parallel; w is
 * already in stored order). Returns ERR_NUMERIC if a scale overflows fp16. */
qlib_status qlib_rtn_fill(qlib_ctx *ctx, qlib_tensor *t, const float *w, size_t ldw);
/* The same with clip's search for each group's parameters, its error
 * weighted by wt (k floats, or NULL for 1). */
qlib_status qlib_rtn_fill_clip(qlib_ctx *ctx, qlib_tensor *t, const float *w, size_t ldw,
                               const qlib_clip *clip, const float *wt);
/* ||W - W^||^2 / ||W||^2 with W^ = qlib_dequantize(t), rows in parallel. */
qlib_status qlib_relative_error(qlib_ctx *ctx, const qlib_tensor *t, const float *w, size_t ldw,
                                double *out);

#endif
