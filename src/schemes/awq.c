/* AWQ (Lin et al., 2023). */
#include "schemes.h"

qlib_status qlib_quantize_awq(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                              const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out)
{
    (void)ctx; (void)w; (void)n; (void)k; (void)ldw; (void)cfg; (void)calib; (void)out;
    return qlib_fail(QLIB_ERR_UNSUPPORTED, "qlib_quantize: AWQ is not available in this build");
}
