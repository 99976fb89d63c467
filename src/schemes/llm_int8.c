/* LLM.int8() (Dettmers et al., 2022). */
#include "schemes.h"

qlib_status qlib_quantize_llm_int8(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                   const qlib_config *cfg, const qlib_calib *calib,
                                   qlib_tensor **out)
{
    (void)ctx; (void)w; (void)n; (void)k; (void)ldw; (void)cfg; (void)calib; (void)out;
    return qlib_fail(QLIB_ERR_UNSUPPORTED,
                     "qlib_quantize: LLM.int8() is not available in this build");
}

qlib_status qlib_llm_int8_matmul(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                                 size_t ldx, float *y, size_t ldy)
{
    return qlib_matmul_quantized(ctx, t, x, m, ldx, y, ldy, NULL);
}
