/* The inverse of pack.c: a packed row back to one code per byte. */
#include "codes.h"

static void unpack_2bit_block(const uint8_t *src, uint8_t *c)
{
    for (int j = 0; j < 4; j++)
        for (int i = 0; i < 8; i++) c[8 * j + i] = (uint8_t)((src[i] >> (2 * j)) & 3u);
}

void qlib_unpack_row(int bits, const uint8_t *src, size_t kp, uint8_t *codes)
{
    switch (bits) {
    case 8:
        memcpy(codes, src, kp);
        break;
    case 4:
        for (size_t c = 0; c < kp; c += 64, src += 32)
            for (int i = 0; i < 32; i++) {
                codes[c + (size_t)i] = (uint8_t)(src[i] & 15u);
                codes[c + 32 + (size_t)i] = (uint8_t)(src[i] >> 4);
            }
        break;
    case 2:
        for (size_t c = 0; c < kp; c += 32, src += 8) unpack_2bit_block(src, codes + c);
        break;
    default: /* 3 */
        for (size_t c = 0; c < kp; c += 32, src += 12) {
            uint32_t hi;
            unpack_2bit_block(src, codes + c);
            memcpy(&hi, src + 8, 4);
            for (int t = 0; t < 32; t++) codes[c + (size_t)t] |= (uint8_t)(((hi >> t) & 1u) << 2);
        }
        break;
    }
}
