/* The packed code layout (docs/FORMAT.md), written once here and read by
 * every kernel:
 *   8 bits: one byte per code.
 *   4 bits: per 64 codes, 32 bytes; byte i holds code i in its low nibble
 *           and code 32+i in its high nibble (unpack: a mask, a shift).
 *   2 bits: per 32 codes, 8 bytes; bits 2j..2j+1 of byte i hold code 8j+i.
 *   3 bits: per 32 codes, 12 bytes: the low two bits as the 2-bit layout,
 *           then a little-endian 32-bit word whose bit t is bit 2 of code t. */
#include "core.h"

static void pack_2bit_block(const uint8_t *c, uint8_t *dst)
{
    for (int i = 0; i < 8; i++)
        dst[i] = (uint8_t)((c[i] & 3u) | (c[8 + i] & 3u) << 2 | (c[16 + i] & 3u) << 4 |
                           (c[24 + i] & 3u) << 6);
}

void qlib_pack_row(int bits, const uint8_t *codes, size_t kp, uint8_t *dst)
{
    switch (bits) {
    case 8:
        memcpy(dst, codes, kp);
        break;
    case 4:
        for (size_t c = 0; c < kp; c += 64, dst += 32)
            for (int i = 0; i < 32; i++)
                dst[i] = (uint8_t)((codes[c + i] & 15u) | (codes[c + 32 + i] & 15u) << 4);
        break;
    case 2:
        for (size_t c = 0; c < kp; c += 32, dst += 8) pack_2bit_block(codes + c, dst);
        break;
    default: /* 3 */
        for (size_t c = 0; c < kp; c += 32, dst += 12) {
            pack_2bit_block(codes + c, dst);
            uint32_t hi = 0;
            for (int t = 0; t < 32; t++) hi |= (uint32_t)((codes[c + t] >> 2) & 1u) << t;
            memcpy(dst + 8, &hi, 4);
        }
        break;
    }
}

/* Rows are quantized in parallel and neighbouring entries share bytes, so
 * only this entry's bits are changed, each byte with one atomic and/or:
 * a plain read-modify-write of the byte would lose another row's bits. */
void qlib_zero_put(uint8_t *stream, size_t index, int bits, unsigned value)
{
    size_t bit = index * (size_t)bits;
    unsigned mask = ((1u << bits) - 1u) << (bit & 7), v = (value << (bit & 7)) & mask;
    for (unsigned b = 0; b < 2 && (mask >> (8 * b)) != 0; b++) {
        uint8_t *p = stream + (bit >> 3) + b;
        __atomic_fetch_and(p, (uint8_t)~(mask >> (8 * b)), __ATOMIC_RELAXED);
        __atomic_fetch_or(p, (uint8_t)(v >> (8 * b)), __ATOMIC_RELAXED);
    }
}
