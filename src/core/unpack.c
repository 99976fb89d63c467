/* The inverse of pack.c: a packed row back to one code per byte. Eight
 * codes at a time in 64-bit words (bytes are little-endian lanes). */
#include "codes.h"

#define LO2 0x0303030303030303ull

/* 2 bits, 32 codes in 8 bytes: bits 2j..2j+1 of byte i are code 8j + i. */
static void unpack_2bit_block(const uint8_t *src, uint8_t *c)
{
    uint64_t v;
    memcpy(&v, src, 8);
    for (int j = 0; j < 4; j++) {
        uint64_t o = (v >> (2 * j)) & LO2;
        memcpy(c + 8 * j, &o, 8);
    }
}

/* Bit t of the byte b as byte t (0 or 1) of the result. */
static uint64_t bits_to_bytes(unsigned b)
{
    uint64_t x = ((uint64_t)b * 0x0101010101010101ull) & 0x8040201008040201ull;
    return ((x + 0x7f7f7f7f7f7f7f7full) & 0x8080808080808080ull) >> 7;
}

void qlib_unpack_row(int bits, const uint8_t *src, size_t kp, uint8_t *codes)
{
    switch (bits) {
    case 8:
        memcpy(codes, src, kp);
        break;
    case 4:
        for (size_t c = 0; c < kp; c += 64, src += 32)
            for (int i = 0; i < 32; i += 8) {
                uint64_t v, lo, hi;
                memcpy(&v, src + i, 8);
                lo = v & 0x0f0f0f0f0f0f0f0full;
                hi = (v >> 4) & 0x0f0f0f0f0f0f0f0full;
                memcpy(codes + c + (size_t)i, &lo, 8);
                memcpy(codes + c + 32 + (size_t)i, &hi, 8);
            }
        break;
    case 2:
        for (size_t c = 0; c < kp; c += 32, src += 8) unpack_2bit_block(src, codes + c);
        break;
    default: /* 3: the 2-bit layout, then a word whose bit t is bit 2 of code t */
        for (size_t c = 0; c < kp; c += 32, src += 12) {
            unpack_2bit_block(src, codes + c);
            for (int j = 0; j < 4; j++) {
                uint64_t v, b2 = bits_to_bytes(src[8 + j]) << 2;
                memcpy(&v, codes + c + 8 * (size_t)j, 8);
                v |= b2;
                memcpy(codes + c + 8 * (size_t)j, &v, 8);
            }
        }
        break;
    }
}
