/* Picks a kernel table by name or by the CPU's features. */
#include <string.h>

#include "kernels.h"
#include "../core/core.h"

typedef struct isa_entry {
    const char *name;
    const qlib_kernels *kern;
    unsigned needs;
} isa_entry;

/* Best first. */
static const isa_entry isa_table[] = {
#if defined(__x86_64__) || defined(_M_X64)
    { "avx2-vnni", &qlib_kernels_avx2_vnni,
      QLIB_CPU_AVX2 | QLIB_CPU_FMA | QLIB_CPU_F16C | QLIB_CPU_AVX_VNNI },
    { "avx2-avx512vnni", &qlib_kernels_avx2_avx512vnni,
      QLIB_CPU_AVX2 | QLIB_CPU_FMA | QLIB_CPU_F16C | QLIB_CPU_AVX512_VNNI },
    { "avx2", &qlib_kernels_avx2, QLIB_CPU_AVX2 | QLIB_CPU_FMA | QLIB_CPU_F16C },
#endif
#if defined(__aarch64__)
    { "neon-dotprod", &qlib_kernels_neon_dotprod, QLIB_CPU_NEON | QLIB_CPU_DOTPROD },
    { "neon", &qlib_kernels_neon, QLIB_CPU_NEON },
#endif
    { "scalar", &qlib_kernels_scalar, 0 },
};

const qlib_kernels *qlib_kernels_pick(const char *isa, unsigned cpu_features)
{
    size_t n = sizeof isa_table / sizeof isa_table[0];
    for (size_t i = 0; i < n; i++) {
        const isa_entry *e = &isa_table[i];
        if ((e->needs & cpu_features) != e->needs) continue;
        if (!isa || strcmp(isa, e->name) == 0) return e->kern;
    }
    return NULL;
}
