/* The portable reference kernels: every other ISA is tested against these.
 * They fix the arithmetic each output element is computed with: per group,
 * the int32 (AUTO) or fp32 (F32) block products summed in block order, then
 * scaled by the group's scale and added to the output in group order. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels.h"

#define MT 8    /* rows of x per pass over a weight row */

float qk_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {                                   /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void qk_unpack_block_scalar(int bits, const uint8_t *row, size_t b, uint8_t out[32])
{
    switch (bits) {
    case 8:
        memcpy(out, row + 32 * b, 32);
        return;
    case 4: {
        const uint8_t *p = row + 32 * (b / 2);
        int sh = (int)(b & 1) * 4;
        for (int i = 0; i < 32; i++) out[i] = (uint8_t)((p[i] >> sh) & 15u);
        return;
    }
    case 2: {
        const uint8_t *p = row + 8 * b;
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 8; i++) out[8 * j + i] = (uint8_t)((p[i] >> (2 * j)) & 3u);
        return;
    }
    default: { /* 3 */
        const uint8_t *p = row + 12 * b;
        uint32_t hi;
        memcpy(&hi, p + 8, 4);
        for (int j = 0; j < 4; j++)
            for (int i = 0; i < 8; i++)
                out[8 * j + i] = (uint8_t)(((p[i] >> (2 * j)) & 3u) |
                                           (((hi >> (8 * j + i)) & 1u) << 2));
        return;
    }
    }
}

static void scalar_prepare_row(const qk_xmap *map, const float *x, float *out)
{
    for (size_t j = 0; j < map->kp; j++) out[j] = qk_map_x(map, x, j);
}

static void scalar_quantize_row(const qk_xmap *map, const float *x, int8_t *q, float *d,
                                int32_t *sum)
{
    for (size_t b = 0; b < map->kp / QK_BLOCK; b++) {
        float v[QK_BLOCK], amax = 0.0f;
        for (int j = 0; j < QK_BLOCK; j++) {
            v[j] = qk_map_x(map, x, b * QK_BLOCK + (size_t)j);
            amax = fmaxf(amax, fabsf(v[j]));
        }
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (inv > FLT_MAX) inv = amax = 0.0f;  /* amax < 127/FLT_MAX: the block is zero */
        int32_t s = 0;
        for (int j = 0; j < QK_BLOCK; j++) {
            int qi = (int)nearbyintf(v[j] * inv);
            qi = qi > 127 ? 127 : qi < -127 ? -127 : qi;
            q[b * QK_BLOCK + (size_t)j] = (int8_t)qi;
            s += qi;
        }
        d[b] = amax / 127.0f;
        sum[b] = s;
    }
}

static size_t n_blocks(const qk_weights *w) { return (w->k + QK_BLOCK - 1) / QK_BLOCK; }

static void gemm_f32_qa8_qw_8x1c32__scalar(const qk_weights *w, const qk_acts *a, size_t n0, size_t n1, float *y,
                           size_t ldy)
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK, nbk = a->kp / QK_BLOCK;
    uint8_t c[QK_BLOCK];
    for (size_t r = n0; r < n1; r++) {
        const uint8_t *row = w->codes + r * w->row_bytes;
        for (size_t i0 = 0; i0 < a->m; i0 += MT) {
            size_t mt = a->m - i0 < MT ? a->m - i0 : MT;
            float yv[MT] = { 0 };
            for (size_t g = 0; g < w->n_groups; g++) {
                float s = qk_f16_to_f32(w->scales[r * w->scale_stride + g]);
                int z = qk_zero(w, r, g);
                size_t b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
                float ga[MT] = { 0 };
                for (size_t b = g * bpg; b < b1; b++) {
                    qk_unpack_block_scalar(w->bits, row, b, c);
                    for (size_t i = 0; i < mt; i++) {
                        const int8_t *q = a->q + (i0 + i) * a->kp + b * QK_BLOCK;
                        int32_t dot = 0;
                        for (int j = 0; j < QK_BLOCK; j++) dot += (int32_t)c[j] * q[j];
                        dot -= z * a->sum[(i0 + i) * nbk + b];
                        ga[i] += a->d[(i0 + i) * nbk + b] * (float)dot;
                    }
                }
                for (size_t i = 0; i < mt; i++) yv[i] += s * ga[i];
            }
            for (size_t i = 0; i < mt; i++) y[(i0 + i) * ldy + r] = yv[i];
        }
    }
}

static void gemm_f32_f32_qw_8x1c32__scalar(const qk_weights *w, const float *x, size_t ldx, size_t m, size_t n0,
                            size_t n1, float *y, size_t ldy)
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK;
    uint8_t c[QK_BLOCK];
    for (size_t r = n0; r < n1; r++) {
        const uint8_t *row = w->codes + r * w->row_bytes;
        for (size_t i0 = 0; i0 < m; i0 += MT) {
            size_t mt = m - i0 < MT ? m - i0 : MT;
            float yv[MT] = { 0 };
            for (size_t g = 0; g < w->n_groups; g++) {
                float s = qk_f16_to_f32(w->scales[r * w->scale_stride + g]);
                int z = qk_zero(w, r, g);
                size_t b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
                float ga[MT] = { 0 };
                for (size_t b = g * bpg; b < b1; b++) {
                    float wv[QK_BLOCK];
                    qk_unpack_block_scalar(w->bits, row, b, c);
                    for (int j = 0; j < QK_BLOCK; j++) wv[j] = (float)((int)c[j] - z);
                    for (size_t i = 0; i < mt; i++) {
                        const float *xi = x + (i0 + i) * ldx + b * QK_BLOCK;
                        float acc = 0.0f;
                        for (int j = 0; j < QK_BLOCK; j++) acc += xi[j] * wv[j];
                        ga[i] += acc;
                    }
                }
                for (size_t i = 0; i < mt; i++) yv[i] += s * ga[i];
            }
            for (size_t i = 0; i < mt; i++) y[(i0 + i) * ldy + r] = yv[i];
        }
    }
}

static void scalar_dequant_row(const qk_weights *w, size_t r, float *out)
{
    const uint8_t *row = w->codes + r * w->row_bytes;
    uint8_t c[QK_BLOCK];
    for (size_t b = 0; b < n_blocks(w); b++) {
        size_t g = b * QK_BLOCK / w->group;
        float s = qk_f16_to_f32(w->scales[r * w->scale_stride + g]);
        int z = qk_zero(w, r, g);
        qk_unpack_block_scalar(w->bits, row, b, c);
        for (size_t j = 0; j < QK_BLOCK && b * QK_BLOCK + j < w->k; j++)
            out[b * QK_BLOCK + j] = s * (float)((int)c[j] - z);
    }
}

static void scalar_f16_to_f32(const uint16_t *h, size_t count, float *out)
{
    for (size_t i = 0; i < count; i++) out[i] = qk_f16_to_f32(h[i]);
}

/* Eight partial sums per row (column j into sum j mod 8), added pairwise at
 * the end. */
static void gemv_f32_f32_f16_1x1c8__scalar(const uint16_t *w, size_t k, const float *x, size_t n0, size_t n1,
                            float *y)
{
    for (size_t r = n0; r < n1; r++) {
        const uint16_t *row = w + r * k;
        float s[8] = { 0 };
        for (size_t j = 0; j < k; j++) s[j % 8] += qk_f16_to_f32(row[j]) * x[j];
        y[r] = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    }
}

/* The one AUTO kernel takes every width and symmetry, one row or many. */
static const qk_q8_ukernel scalar_q8[] = {
    { "gemm_f32_qa8_qw_8x1c32__scalar", QK_W(2) | QK_W(3) | QK_W(4) | QK_W(8), QK_SYM | QK_ASYM,
      MT, 1, QK_BLOCK, QK_ORDER_SCALAR, 0, gemm_f32_qa8_qw_8x1c32__scalar, 0, 0 },
};

const qlib_kernels qlib_kernels_scalar = {
    .isa = "scalar", .quantize_row = scalar_quantize_row, .prepare_row = scalar_prepare_row,
    .gemv = scalar_q8, .n_gemv = 1, .gemm = scalar_q8, .n_gemm = 1,
    .gemm_f32 = { "gemm_f32_f32_qw_8x1c32__scalar", MT, 1, QK_ORDER_SCALAR,
                  gemm_f32_f32_qw_8x1c32__scalar },
    .dequant_row = scalar_dequant_row, .f16_to_f32 = scalar_f16_to_f32,
    .gemv_f16 = { "gemv_f32_f32_f16_1x1c8__scalar", 1, QK_ORDER_SCALAR,
                  gemv_f32_f32_f16_1x1c8__scalar },
};
