/*
 * Element types of stored tensors: IEEE half, bfloat16, and GGML's Q8_0 and
 * Q4_0 blocks (32 weights and one fp16 scale d each: Q8_0 holds int8 codes q,
 * w = d q; Q4_0 holds 4-bit codes, the low nibbles of its 16 bytes for
 * weights 0..15 and the high nibbles for 16..31, w = d (q - 8)).
 */
#include <math.h>
#include <string.h>

#include "llama.h"

#define QK 32   /* weights per Q8_0 / Q4_0 block */

const char *dtype_name(int dtype)
{
    switch (dtype) {
    case DT_F32: return "F32";
    case DT_F16: return "F16";
    case DT_BF16: return "BF16";
    case DT_Q8_0: return "Q8_0";
    case DT_Q4_0: return "Q4_0";
    case ST_I32: return "I32";
    case DT_GPTQ: return "GPTQ";
    case DT_AWQ: return "AWQ";
    default: return NULL;
    }
}

int dtype_block(int dtype, size_t *elems, size_t *bytes)
{
    switch (dtype) {
    case DT_F32: case ST_I32: *elems = 1; *bytes = 4; return 0;
    case DT_F16: case DT_BF16: *elems = 1; *bytes = 2; return 0;
    case DT_Q8_0: *elems = QK; *bytes = 2 + QK; return 0;
    case DT_Q4_0: *elems = QK; *bytes = 2 + QK / 2; return 0;
    default: return -1;
    }
}

int dtype_row_bytes(int dtype, size_t cols, size_t *bytes)
{
    size_t be, bb;
    if (dtype_block(dtype, &be, &bb) != 0 || cols % be != 0)
        return -1;
    return size_mul(cols / be, bb, bytes);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    float f;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);            /* Inf, NaN */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);    /* normal: bias 15 -> 127 */
    } else {
        f = ldexpf((float)man, -24);                        /* subnormal or zero */
        return sign ? -f : f;
    }
    memcpy(&f, &bits, sizeof(f));
    return f;
}

uint16_t f32_to_f16(float f)
{
    uint32_t x, sign, man;
    int exp;
    memcpy(&x, &f, sizeof(x));
    sign = (x >> 16) & 0x8000u;
    exp = (int)((x >> 23) & 0xff);
    man = x & 0x7fffffu;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0u));
    exp -= 112;                                  /* the half exponent */
    if (exp >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);       /* overflow: Inf */
    if (exp <= 0) {
        /* subnormal half (or zero): shift the full mantissa, round to nearest even */
        uint32_t m, half_bit, rest;
        int shift;
        if (exp < -10)
            return (uint16_t)sign;
        m = man | 0x800000u;
        shift = 14 - exp;
        half_bit = 1u << (shift - 1);
        rest = m & ((1u << shift) - 1);
        m >>= shift;
        if (rest > half_bit || (rest == half_bit && (m & 1u)))
            m++;
        return (uint16_t)(sign | m);
    }
    {
        uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
            h++;                                 /* may carry into the exponent: still right */
        return (uint16_t)h;
    }
}

float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

static uint16_t get_u16le(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

void row_to_f32(int dtype, const unsigned char *src, size_t cols, float *dst)
{
    size_t i, j;
    switch (dtype) {
    case DT_F32:
        memcpy(dst, src, cols * sizeof(float));
        return;
    case DT_F16:
        for (i = 0; i < cols; i++)
            dst[i] = f16_to_f32(get_u16le(src + 2 * i));
        return;
    case DT_BF16:
        for (i = 0; i < cols; i++)
            dst[i] = bf16_to_f32(get_u16le(src + 2 * i));
        return;
    case DT_Q8_0:
        for (i = 0; i < cols / QK; i++, src += 2 + QK) {
            float d = f16_to_f32(get_u16le(src));
            for (j = 0; j < QK; j++)
                dst[i * QK + j] = d * (float)(signed char)src[2 + j];
        }
        return;
    case DT_Q4_0:
        for (i = 0; i < cols / QK; i++, src += 2 + QK / 2) {
            float d = f16_to_f32(get_u16le(src));
            for (j = 0; j < QK / 2; j++) {
                dst[i * QK + j] = d * (float)((src[2 + j] & 0x0f) - 8);
                dst[i * QK + j + QK / 2] = d * (float)((src[2 + j] >> 4) - 8);
            }
        }
        return;
    default:
        memset(dst, 0, cols * sizeof(float));   /* unreachable: types are checked on open */
    }
}

void row_from_f32(int dtype, const float *src, size_t cols, unsigned char *dst)
{
    size_t i;
    if (dtype == DT_F32) {
        memcpy(dst, src, cols * sizeof(float));
        return;
    }
    for (i = 0; i < cols; i++) {
        uint16_t h = f32_to_f16(src[i]);
        dst[2 * i] = (unsigned char)h;
        dst[2 * i + 1] = (unsigned char)(h >> 8);
    }
}
