/* The method registry: one row per method, indexed by its pinned enum value
 * (zstd's blockCompressor table is the model). Each row is defined beside its
 * quantizer; adding a method is its own file, its row here, its enum value and
 * parameters in include/qlib.h, and QLIB_METHOD_COUNT. */
#include "schemes.h"

_Static_assert(QLIB_METHOD_NONE == 0, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_RTN == 1, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_GPTQ == 2, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_AWQ == 3, "qlib_method values are pinned");
_Static_assert(QLIB_METHOD_LLM_INT8 == 4, "qlib_method values are pinned");

static const qlib_method_row *const rows[] = {
    [QLIB_METHOD_NONE] = &qlib_method_none,
    [QLIB_METHOD_RTN] = &qlib_method_rtn,
    [QLIB_METHOD_GPTQ] = &qlib_method_gptq,
    [QLIB_METHOD_AWQ] = &qlib_method_awq,
    [QLIB_METHOD_LLM_INT8] = &qlib_method_llm_int8,
};
_Static_assert(sizeof rows / sizeof rows[0] == QLIB_METHOD_COUNT,
               "one registry row per method");

const qlib_method_row *qlib_method_lookup(qlib_method m)
{
    if ((unsigned)m >= QLIB_METHOD_COUNT) return NULL;
    return rows[m];
}
