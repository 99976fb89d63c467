/* AArch64 NEON kernels; arm_neon_dotprod.c compiles this file again with
 * QK_NEON_DOTPROD set (and -march=armv8.2-a+dotprod) for CPUs with SDOT.
 *
 * As on every ISA, each output element is computed with the scalar
 * reference's arithmetic (scalar.c): exact integer block dots, then the same
 * fp32 multiplies and adds in the same order (no fused multiply-add), so the
 * results equal the scalar kernels bit for bit.
 *
 * The microkernels (kernels.h names them; the suffix is this unit's ISA,
 * neon or neondot):
 *
 *   gemm_f32_qa8_qw_64x1c32: AUTO, every width, M = 1 too. One weight row's block
 *     of 32 codes is unpacked once and dotted with up to 64 rows of x
 *     (SMULL/SMLAL + SADALP, or two SDOT); 8-bit codes go as c - 128 with
 *     the 128 * sum(q) put back.
 *   gemm_f32_f32_qw_64x4c1: COMPUTE_F32. Four weight rows' block,
 *     decoded to fp32 and transposed once, multiplied with up to 64 rows of x
 *     in k order, the four rows in the four lanes. */
#include <arm_neon.h>
#include <float.h>
#include <string.h>

#include "kernels.h"

#ifndef QK_NEON_DOTPROD
#define QK_NEON_DOTPROD 0
#define NEON_TABLE qlib_kernels_neon
#define NEON_NAME "neon"
#define NEON_SUFFIX neon
#define NEON_NEEDS 0u
#define NEON_SAME_BITS_AS NULL
#endif

/* A microkernel's name with this unit's ISA suffix, as symbol and string. */
#define UK_CAT2(a, b) a##__##b
#define UK_CAT(a, b) UK_CAT2(a, b)
#define UK(name) UK_CAT(name, NEON_SUFFIX)
#define UK_STR2(x) #x
#define UK_STR(x) UK_STR2(x)
#define UK_NAME(name) UK_STR(UK(name))

#define RC 64        /* rows of x sharing one unpacked block */

static size_t n_blocks(const qk_weights *w) { return (w->k + QK_BLOCK - 1) / QK_BLOCK; }

/* ---- unpacking one block of 32 codes (docs/FORMAT.md) ---- */

static void unpack_2bit(const uint8_t *p, uint8x16_t out[2])
{
    uint8x8_t d = vld1_u8(p), m = vdup_n_u8(3);
    out[0] = vcombine_u8(vand_u8(d, m), vand_u8(vshr_n_u8(d, 2), m));
    out[1] = vcombine_u8(vand_u8(vshr_n_u8(d, 4), m), vshr_n_u8(d, 6));
}

static void unpack_block(int bits, const uint8_t *row, size_t b, uint8x16_t out[2])
{
    if (bits == 8) {
        out[0] = vld1q_u8(row + 32 * b);
        out[1] = vld1q_u8(row + 32 * b + 16);
    } else if (bits == 4) {
        const uint8_t *p = row + 32 * (b >> 1);
        uint8x16_t v0 = vld1q_u8(p), v1 = vld1q_u8(p + 16), m = vdupq_n_u8(15);
        out[0] = (b & 1) ? vshrq_n_u8(v0, 4) : vandq_u8(v0, m);
        out[1] = (b & 1) ? vshrq_n_u8(v1, 4) : vandq_u8(v1, m);
    } else if (bits == 2) {
        unpack_2bit(row + 8 * b, out);
    } else {
        const uint8_t *p = row + 12 * b;
        unpack_2bit(p, out);
        /* bit t of the word at p + 8 is bit 2 of code t */
        uint32_t word;
        memcpy(&word, p + 8, 4);
        uint8x8_t hi = vcreate_u8(word);
        static const uint8_t pick0[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1 };
        static const uint8_t pick1[16] = { 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3 };
        static const uint8_t bit[16] = { 1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128 };
        uint8x16_t hq = vcombine_u8(hi, hi), bits_v = vld1q_u8(bit), four = vdupq_n_u8(4);
        uint8x16_t h0 = vandq_u8(vtstq_u8(vqtbl1q_u8(hq, vld1q_u8(pick0)), bits_v), four);
        uint8x16_t h1 = vandq_u8(vtstq_u8(vqtbl1q_u8(hq, vld1q_u8(pick1)), bits_v), four);
        out[0] = vorrq_u8(out[0], h0);
        out[1] = vorrq_u8(out[1], h1);
    }
}

/* ---- activations ---- */

/* x'[j0 .. j0+3] of the mapped row (qk_xmap). */
static float32x4_t map_x4(const qk_xmap *map, const float *x, size_t j0)
{
    if (j0 + 4 <= map->k && !map->perm && !map->drop) {
        float32x4_t v = vld1q_f32(x + j0);
        return map->scale ? vmulq_f32(v, vld1q_f32(map->scale + j0)) : v;
    }
    float t[4];
    for (size_t j = 0; j < 4; j++) t[j] = qk_map_x(map, x, j0 + j);
    return vld1q_f32(t);
}

static void neon_prepare_row(const qk_xmap *map, const float *x, float *out)
{
    for (size_t j = 0; j < map->kp; j += 4) vst1q_f32(out + j, map_x4(map, x, j));
}

static void neon_quantize_row(const qk_xmap *map, const float *x, int8_t *q, float *d,
                              int32_t *sum)
{
    for (size_t b = 0; b < map->kp / QK_BLOCK; b++) {
        float32x4_t v[8], m = vdupq_n_f32(0.0f);
        for (int t = 0; t < 8; t++) {
            v[t] = map_x4(map, x, b * QK_BLOCK + 4 * (size_t)t);
            m = vmaxq_f32(m, vabsq_f32(v[t]));
        }
        float amax = vmaxvq_f32(m), inv1 = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (inv1 > FLT_MAX) inv1 = amax = 0.0f;  /* as scalar.c: a block below 127/FLT_MAX is zero */
        int32x4_t s = vdupq_n_s32(0), lim = vdupq_n_s32(127);
        int16x4_t h[8];
        for (int t = 0; t < 8; t++) {   /* round to nearest even, like nearbyintf */
            int32x4_t qi = vcvtnq_s32_f32(vmulq_n_f32(v[t], inv1));
            qi = vmaxq_s32(vminq_s32(qi, lim), vnegq_s32(lim));
            s = vaddq_s32(s, qi);
            h[t] = vmovn_s32(qi);
        }
        for (int t = 0; t < 4; t++)
            vst1_s8(q + b * QK_BLOCK + 8 * (size_t)t, vmovn_s16(vcombine_s16(h[2 * t], h[2 * t + 1])));
        d[b] = amax / 127.0f;
        sum[b] = vaddvq_s32(s);
    }
}

/* ---- AUTO ---- */

/* Exact sum over 32 of c[j] * q[j], c as int8 (codes of up to 7 bits, or
 * 8-bit codes minus 128). */
static int32_t dot32(const int8x16_t c[2], const int8_t *q)
{
    int8x16_t q0 = vld1q_s8(q), q1 = vld1q_s8(q + 16);
#if QK_NEON_DOTPROD
    int32x4_t acc = vdotq_s32(vdupq_n_s32(0), c[0], q0);
    acc = vdotq_s32(acc, c[1], q1);
    return vaddvq_s32(acc);
#else
    /* two products of |c| <= 128, |q| <= 127 fit int16 (32512) */
    int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(c[0]), vget_low_s8(q0)), c[0], q0);
    int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(c[1]), vget_low_s8(q1)), c[1], q1);
    return vaddvq_s32(vpadalq_s16(vpaddlq_s16(p0), p1));
#endif
}

static void UK(gemm_f32_qa8_qw_64x1c32)(const qk_weights *w, const qk_acts *a, size_t n0, size_t n1, float *y,
                         size_t ldy)
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK, nbk = a->kp / QK_BLOCK;
    int shift8 = w->bits == 8 ? 128 : 0;   /* 8-bit codes go as c - 128 */
    for (size_t r = n0; r < n1; r++) {
        const uint8_t *row = w->codes + r * w->row_bytes;
        for (size_t i0 = 0; i0 < a->m; i0 += RC) {
            size_t mc = a->m - i0 < RC ? a->m - i0 : RC;
            float yv[RC] = { 0 }, ga[RC] = { 0 };
            for (size_t g = 0; g < w->n_groups; g++) {
                float s = qk_f16_to_f32(w->scales[r * w->scale_stride + g]);
                int z = qk_zero(w, r, g) - shift8;
                size_t b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
                for (size_t b = g * bpg; b < b1; b++) {
                    uint8x16_t u[2];
                    int8x16_t c[2];
                    unpack_block(w->bits, row, b, u);
                    uint8x16_t flip = vdupq_n_u8(shift8 ? 0x80 : 0);
                    c[0] = vreinterpretq_s8_u8(veorq_u8(u[0], flip));
                    c[1] = vreinterpretq_s8_u8(veorq_u8(u[1], flip));
                    for (size_t i = 0; i < mc; i++) {
                        size_t ii = i0 + i;
                        int32_t dot = dot32(c, a->q + ii * a->kp + b * QK_BLOCK);
                        dot -= z * a->sum[ii * nbk + b];
                        ga[i] += a->d[ii * nbk + b] * (float)dot;
                    }
                }
                for (size_t i = 0; i < mc; i++) {
                    yv[i] += s * ga[i];
                    ga[i] = 0.0f;
                }
            }
            for (size_t i = 0; i < mc; i++) y[(i0 + i) * ldy + r] = yv[i];
        }
    }
}

/* ---- F32 ---- */

/* Block b of four weight rows as (c - z), transposed: wt[j] lane t = row t. */
static void block_f32x4(const qk_weights *w, const size_t r[4], size_t b, size_t g,
                        float32x4_t wt[QK_BLOCK])
{
    float v[QK_BLOCK][4];
    for (int t = 0; t < 4; t++) {
        uint8x16_t u[2];
        uint8_t c[QK_BLOCK];
        unpack_block(w->bits, w->codes + r[t] * w->row_bytes, b, u);
        vst1q_u8(c, u[0]);
        vst1q_u8(c + 16, u[1]);
        int z = qk_zero(w, r[t], g);
        for (int j = 0; j < QK_BLOCK; j++) v[j][t] = (float)((int)c[j] - z);
    }
    for (int j = 0; j < QK_BLOCK; j++) wt[j] = vld1q_f32(v[j]);
}

static void UK(gemm_f32_f32_qw_64x4c1)(const qk_weights *w, const float *x, size_t ldx, size_t m, size_t n0,
                          size_t n1, float *y, size_t ldy)
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK;
    for (size_t r0 = n0; r0 < n1; r0 += 4) {
        size_t r[4];
        for (size_t t = 0; t < 4; t++) r[t] = r0 + t < n1 ? r0 + t : n1 - 1;
        for (size_t i0 = 0; i0 < m; i0 += RC) {
            size_t mc = m - i0 < RC ? m - i0 : RC;
            float32x4_t yv[RC], ga[RC];
            for (size_t i = 0; i < mc; i++) yv[i] = ga[i] = vdupq_n_f32(0.0f);
            for (size_t g = 0; g < w->n_groups; g++) {
                size_t b1 = (g + 1) * bpg < nb ? (g + 1) * bpg : nb;
                for (size_t b = g * bpg; b < b1; b++) {
                    float32x4_t wt[QK_BLOCK];
                    block_f32x4(w, r, b, g, wt);
                    for (size_t i = 0; i < mc; i++) {
                        const float *xi = x + (i0 + i) * ldx + b * QK_BLOCK;
                        float32x4_t acc = vdupq_n_f32(0.0f);
                        for (int j = 0; j < QK_BLOCK; j++)
                            acc = vaddq_f32(acc, vmulq_n_f32(wt[j], xi[j]));
                        ga[i] = vaddq_f32(ga[i], acc);
                    }
                }
                float sv[4];
                for (int t = 0; t < 4; t++)
                    sv[t] = qk_f16_to_f32(w->scales[r[t] * w->scale_stride + g]);
                float32x4_t s = vld1q_f32(sv);
                for (size_t i = 0; i < mc; i++) {
                    yv[i] = vaddq_f32(yv[i], vmulq_f32(s, ga[i]));
                    ga[i] = vdupq_n_f32(0.0f);
                }
            }
            size_t nr = n1 - r0 < 4 ? n1 - r0 : 4;
            for (size_t i = 0; i < mc; i++) {
                float out[4];
                vst1q_f32(out, yv[i]);
                memcpy(y + (i0 + i) * ldy + r0, out, nr * sizeof(float));
            }
        }
    }
}

static void neon_dequant_row(const qk_weights *w, size_t r, float *out)
{
    const uint8_t *row = w->codes + r * w->row_bytes;
    for (size_t b = 0; b < n_blocks(w); b++) {
        size_t g = b * QK_BLOCK / w->group;
        float s = qk_f16_to_f32(w->scales[r * w->scale_stride + g]);
        int z = qk_zero(w, r, g);
        uint8x16_t u[2];
        uint8_t c[QK_BLOCK];
        unpack_block(w->bits, row, b, u);
        vst1q_u8(c, u[0]);
        vst1q_u8(c + 16, u[1]);
        for (size_t j = 0; j < QK_BLOCK && b * QK_BLOCK + j < w->k; j++)
            out[b * QK_BLOCK + j] = s * (float)((int)c[j] - z);
    }
}

/* ---- fp16 weights (NONE tensors) ---- */

static float32x4_t load_h4(const uint16_t *p)
{
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

/* gemv_f32_f32_f16_1x4c8: four rows at once, 4 lanes x 2 per row,
 * fused multiply-adds; the last k mod 4 columns through a zero-padded copy;
 * lanes summed once per row. */
static void UK(gemv_f32_f32_f16_1x4c8)(const uint16_t *w, size_t k, const float *x, size_t n0, size_t n1,
                          float *y)
{
    size_t k8 = k / 8 * 8, k4 = k / 4 * 4;
    float xt[4] = { 0 };
    memcpy(xt, x + k4, (k - k4) * sizeof(float));
    for (size_t r0 = n0; r0 < n1; r0 += 4) {
        const uint16_t *row[4];
        float32x4_t a[4][2];
        for (size_t i = 0; i < 4; i++) {
            row[i] = w + (r0 + i < n1 ? r0 + i : n1 - 1) * k;
            a[i][0] = a[i][1] = vdupq_n_f32(0.0f);
        }
        for (size_t j = 0; j < k8; j += 8) {
            float32x4_t x0 = vld1q_f32(x + j), x1 = vld1q_f32(x + j + 4);
            for (size_t i = 0; i < 4; i++) {
                a[i][0] = vfmaq_f32(a[i][0], load_h4(row[i] + j), x0);
                a[i][1] = vfmaq_f32(a[i][1], load_h4(row[i] + j + 4), x1);
            }
        }
        if (k4 > k8) {
            float32x4_t x0 = vld1q_f32(x + k8);
            for (size_t i = 0; i < 4; i++) a[i][0] = vfmaq_f32(a[i][0], load_h4(row[i] + k8), x0);
        }
        if (k > k4) {
            float32x4_t x0 = vld1q_f32(xt);
            for (size_t i = 0; i < 4; i++) {
                uint16_t ht[4] = { 0 };
                memcpy(ht, row[i] + k4, (k - k4) * sizeof(uint16_t));
                a[i][1] = vfmaq_f32(a[i][1], load_h4(ht), x0);
            }
        }
        for (size_t i = 0; i < 4 && r0 + i < n1; i++)
            y[r0 + i] = vaddvq_f32(vaddq_f32(a[i][0], a[i][1]));
    }
}

static void neon_f16_to_f32(const uint16_t *h, size_t count, float *out)
{
    size_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(out + i, load_h4(h + i));
    for (; i < count; i++) out[i] = qk_f16_to_f32(h[i]);
}

/* One AUTO kernel for every width and symmetry, one row of x or many. */
static const qk_q8_ukernel q8_table[] = {
    { UK_NAME(gemm_f32_qa8_qw_64x1c32), QK_W(2) | QK_W(3) | QK_W(4) | QK_W(8), QK_SYM | QK_ASYM,
      RC, 1, QK_BLOCK, QK_ORDER_SCALAR, 0, UK(gemm_f32_qa8_qw_64x1c32), 0, 0 },
};

const qlib_kernels NEON_TABLE = {
    .isa = NEON_NAME, .needs = QK_CPU_NEON | NEON_NEEDS, .same_bits_as = NEON_SAME_BITS_AS,
    .quantize_row = neon_quantize_row, .prepare_row = neon_prepare_row,
    .gemv = q8_table, .n_gemv = 1, .gemm = q8_table, .n_gemm = 1,
    .gemm_f32 = { UK_NAME(gemm_f32_f32_qw_64x4c1), RC, 4, QK_ORDER_SCALAR,
                  UK(gemm_f32_f32_qw_64x4c1) },
    .dequant_row = neon_dequant_row, .f16_to_f32 = neon_f16_to_f32,
    .gemv_f16 = { UK_NAME(gemv_f32_f32_f16_1x4c8), 4, QK_ORDER_OWN, UK(gemv_f32_f32_f16_1x4c8) },
};
