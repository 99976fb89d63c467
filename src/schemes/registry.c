/* The method registry: one row per method, indexed by its pinned enum value
 * (zstd's blockCompressor table is the model), with the parameters each
 * method takes. The core reads rows through qlib_method_lookup(); a method
 * is its own unit, its row and parameters here, its enum value and
 * parameters in include/qlib.h, and QLIB_METHOD_COUNT (docs/EXTENDING.md). */
#include <math.h>

#include "../linalg/linalg.h"
#include "schemes.h"

_Static_assert(QLIB_METHOD_NONE == 0, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_RTN == 1, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_GPTQ == 2, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_AWQ == 3, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_LLM_INT8 == 4, "qlib_method values are pinned");

#define W(bits) ((uint64_t)1 << (bits))
#define QUANT_WIDTHS (W(2) | W(3) | W(4) | W(8))

/* { id, kind, lo, hi, widths, default, fixed, name in messages } */
#define BITS(widths, def) { QLIB_PARAM_BITS, QLIB_PK_WIDTH, 0, 0, widths, def, 0, "bits" }
#define GROUP { QLIB_PARAM_GROUP_SIZE, QLIB_PK_GROUP, -1, 1 << 24, 0, 128, 0, "group size" }
#define SYMMETRIC { QLIB_PARAM_SYMMETRIC, QLIB_PK_SWITCH, 0, 1, 0, 0, 0, "symmetric" }
#define FIXED(id, v) { id, QLIB_PK_INT, v, v, 0, v, 1, #id }

static const qlib_param_spec none_params[] = { BITS(W(16) | W(32), 32) };
#define CLIP_GRID { QLIB_PARAM_CLIP_GRID, QLIB_PK_INT, 0, 1000, 0, 0, 0, "clip grid" }
#define MAX_SHRINK(what) { QLIB_PARAM_AWQ_MAX_SHRINK, QLIB_PK_FLOAT, 0, 0.95, 0, 0.5, 0, what }

static const qlib_param_spec rtn_params[] = {
    BITS(QUANT_WIDTHS, 4), GROUP, SYMMETRIC, CLIP_GRID, MAX_SHRINK("max shrink"),
};
static const qlib_param_spec gptq_params[] = {
    BITS(QUANT_WIDTHS, 4), GROUP, SYMMETRIC,
    { QLIB_PARAM_GPTQ_DAMP, QLIB_PK_FLOAT, 0, 1, 0, GPTQ_DEFAULT_DAMP, 0, "GPTQ damp" },
    { QLIB_PARAM_GPTQ_BLOCK_SIZE, QLIB_PK_INT, 1, 4096, 0, GPTQ_DEFAULT_BLOCK, 0,
      "GPTQ block size" },
    { QLIB_PARAM_GPTQ_ACT_ORDER, QLIB_PK_SWITCH, 0, 1, 0, 0, 0, "GPTQ act-order" },
    { QLIB_PARAM_GPTQ_STATIC_GROUPS, QLIB_PK_SWITCH, 0, 1, 0, 0, 0, "GPTQ static groups" },
    CLIP_GRID, MAX_SHRINK("max shrink"),
};
static const qlib_param_spec awq_params[] = {
    BITS(QUANT_WIDTHS, 4), GROUP, SYMMETRIC,
    { QLIB_PARAM_AWQ_GRID, QLIB_PK_INT, 1, 1000, 0, 20, 0, "AWQ grid" },
    { QLIB_PARAM_AWQ_CLIP, QLIB_PK_SWITCH, 0, 1, 0, 1, 0, "AWQ clip" },
    MAX_SHRINK("AWQ max shrink"),
    { QLIB_PARAM_AWQ_ROUNDING, QLIB_PK_INT, 0, 1, 0, 0, 0, "AWQ rounding" },
    CLIP_GRID,
    { QLIB_PARAM_AWQ_SCALES, QLIB_PK_INT, 0, 2, 0, 0, 0, "AWQ scales" },
};
static const qlib_param_spec llm_int8_params[] = {
    BITS(W(8), 8), FIXED(QLIB_PARAM_GROUP_SIZE, 0), FIXED(QLIB_PARAM_SYMMETRIC, 1),
    { QLIB_PARAM_OUTLIER_THRESHOLD, QLIB_PK_FLOAT, -HUGE_VAL, HUGE_VAL, 0, 6.0, 0,
      "outlier threshold" },
};

#define PARAMS(a) a, sizeof a / sizeof a[0]
#define SEC(id) QLIB_SEC_BIT(QLIB_SEC_##id)

/* { id, name, label, calibration it reads when given, parameters, float
 *   weights, optional sections, header parameter, tensor rule, quantize,
 *   quantize shared, matmul plan } */
static const qlib_method_row rows[] = {
    [QLIB_METHOD_NONE] = { QLIB_METHOD_NONE, "none", "NONE", 0, PARAMS(none_params), 1, 0, 0,
                           NULL, qlib_quantize_none, NULL, NULL, qlib_la_matmul_float },
    /* RTN's calibration is optional: it weights the clipping search's error */
    [QLIB_METHOD_RTN] = { QLIB_METHOD_RTN, "rtn", "RTN", QLIB_CALIB_ACT_STATS, PARAMS(rtn_params),
                          0, 0, 0, NULL, qlib_quantize_rtn, NULL, NULL },
    [QLIB_METHOD_GPTQ] = { QLIB_METHOD_GPTQ, "gptq", "GPTQ", QLIB_CALIB_HESSIAN,
                           PARAMS(gptq_params), 0, SEC(PERM), 0, NULL, NULL,
                           qlib_quantize_shared_gptq, NULL },
    /* HESSIAN only for AWQ_ROUNDING 1 (GPTQ rounding) */
    [QLIB_METHOD_AWQ] = { QLIB_METHOD_AWQ, "awq", "AWQ",
                          QLIB_CALIB_ACT_STATS | QLIB_CALIB_SAMPLES | QLIB_CALIB_HESSIAN,
                          PARAMS(awq_params), 0, SEC(INPUT_SCALES), 0, NULL, NULL,
                          qlib_quantize_shared_awq, NULL },
    [QLIB_METHOD_LLM_INT8] = { QLIB_METHOD_LLM_INT8, "llm-int8", "LLM.int8()", 0,
                               PARAMS(llm_int8_params), 0, 0, QLIB_PARAM_OUTLIER_THRESHOLD,
                               qlib_llm_int8_check, qlib_quantize_llm_int8, NULL,
                               qlib_llm_int8_plan },
};
_Static_assert(sizeof rows / sizeof rows[0] == QLIB_METHOD_COUNT, "one registry row per method");

const qlib_method_row *qlib_method_lookup(qlib_method m)
{
    if ((unsigned)m >= QLIB_METHOD_COUNT) return NULL;
    return &rows[m];
}
