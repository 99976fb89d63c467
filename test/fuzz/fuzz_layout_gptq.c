/* qlib_tensor_import of GPTQ (v1) parts, then everything a caller does with
 * the tensor; the input and the checks are those of fuzz_layout.h. */
#include "fuzz_layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return lt_run(QLIB_LAYOUT_GPTQ, data, size);
}
