/* IEEE binary16 conversions from fp32, portable (fp16 to fp32 is the
 * kernels' qk_f16_to_f32). */
#include <math.h>

#include "core.h"

uint16_t qlib_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)                                /* Inf / NaN */
        return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* rounds to Inf */
    if (ax < 0x38800000u) {                               /* subnormal or zero */
        if (ax < 0x33000000u) return sign;                /* below half the smallest */
        uint32_t e = ax >> 23, man = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e;                        /* 14 + (113 - e) - 1 */
        uint32_t v = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (v & 1u))) v++;
        return (uint16_t)(sign | v);
    }
    uint32_t v = ((ax >> 13) - (112u << 10)), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (v & 1u))) v++;
    return (uint16_t)(sign | v);
}

uint16_t qlib_f32_to_f16_up(float f)
{
    uint16_t h = qlib_f32_to_f16(f);
    if (qlib_f16_to_f32(h) < f && h < 0x7bffu) h++;
    return h;
}
