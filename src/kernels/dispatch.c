/* Picks a kernel table by name or by the CPU's features: each table states
 * the features it needs. */
#include <string.h>

#include "kernels.h"

/* Best first. */
static const qlib_kernels *const tables[] = {
#if defined(__x86_64__) || defined(_M_X64)
    &qlib_kernels_avx512,
    &qlib_kernels_avx2_vnni,
    &qlib_kernels_avx2_avx512vnni,
    &qlib_kernels_avx2,
#endif
#if defined(__aarch64__)
    &qlib_kernels_neon_dotprod,
    &qlib_kernels_neon,
#endif
    &qlib_kernels_scalar,
};

const qlib_kernels *qlib_kernels_pick(const char *isa, unsigned cpu_features)
{
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        const qlib_kernels *k = tables[i];
        if ((k->needs & cpu_features) != k->needs) continue;
        if (!isa || strcmp(isa, k->isa) == 0) return k;
    }
    return NULL;
}
