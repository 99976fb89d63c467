/* The kernel table: one per ISA, picked once per context.
 *
 * Kernels know the packed layout (docs/FORMAT.md) and nothing of the methods
 * that produced it. Each output element y[i][r] is computed by exactly one
 * call, in an order that depends only on i, r and the weights: results do not
 * depend on how [n0, n1) ranges are split among threads. */
#ifndef QLIB_KERNELS_H
#define QLIB_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define QK_BLOCK 32      /* activation block (int8 quantization) */
#define QK_KALIGN 64     /* rows are padded to a multiple of this many codes */

typedef struct qk_weights {
    int bits;                 /* 2, 3, 4, 8 */
    int symmetric;            /* zero point is 2^(bits-1) for every group */
    size_t n, k, kp;          /* kp = k rounded up to QK_KALIGN */
    size_t group;             /* columns per group: multiple of 32 (last one may be partial) */
    size_t n_groups;          /* groups per row = ceil(kp / group) */
    size_t scale_stride;      /* n_groups, or 0 for one group for the whole tensor */
    size_t row_bytes;         /* kp * bits / 8 */
    const uint8_t *codes;     /* n x row_bytes */
    const uint16_t *scales;   /* fp16, index r * scale_stride + g */
    const uint8_t *zeros;     /* bit stream of bits-bit zero points, same index; NULL if symmetric */
} qk_weights;

/* Zero point of group g of row r. */
static inline int qk_zero(const qk_weights *w, size_t r, size_t g)
{
    if (w->symmetric) return 1 << (w->bits - 1);
    size_t bit = (r * w->scale_stride + g) * (size_t)w->bits;
    unsigned v = (unsigned)w->zeros[bit >> 3] | ((unsigned)w->zeros[(bit >> 3) + 1] << 8);
    return (int)((v >> (bit & 7)) & ((1u << w->bits) - 1));
}

/* m rows of activations quantized to int8 in blocks of 32 (AUTO mode). */
typedef struct qk_acts {
    size_t m, kp;
    const int8_t *q;          /* m x kp */
    const float *d;           /* m x kp/32: block scales, x ~= d * q */
    const int32_t *sum;       /* m x kp/32: sum of q in each block */
    const int16_t *q16;       /* m x kp: q as int16, when qk_wants_q16; else NULL */
} qk_acts;

/* How one row of x becomes the kernel's input: x'[j] = x[perm[j]] *
 * scale[perm[j]] for j < k (perm, scale optional; drop[c] != 0 zeroes input
 * column c), 0 for k <= j < kp. */
typedef struct qk_xmap {
    size_t k, kp;
    const int32_t *perm;
    const float *scale;
    const uint8_t *drop;
} qk_xmap;

typedef struct qlib_kernels {
    const char *isa;
    /* AUTO: one row of x to q (kp), d and sum (kp/32 each). */
    void (*quantize_row)(const qk_xmap *map, const float *x, int8_t *q, float *d, int32_t *sum);
    /* F32: one row of x to its mapped fp32 form (kp floats). */
    void (*prepare_row)(const qk_xmap *map, const float *x, float *out);
    /* y[i][r] for i < a->m, n0 <= r < n1. */
    void (*gemm_q8)(const qk_weights *w, const qk_acts *a, size_t n0, size_t n1,
                    float *y, size_t ldy);
    /* y[i][r] = sum_j x[i][j] * w[r][j], x: m x kp (row stride ldx). */
    void (*gemm_f32)(const qk_weights *w, const float *x, size_t ldx, size_t m,
                     size_t n0, size_t n1, float *y, size_t ldy);
    /* Row r dequantized (kp floats). */
    void (*dequant_row)(const qk_weights *w, size_t r, float *out);
    /* fp16 weights (NONE tensors), n x k row-major: y[r] = sum_j w[r][j] x[j]
     * for n0 <= r < n1, each row summed in an order fixed by k alone. */
    void (*gemv_f16)(const uint16_t *w, size_t k, const float *x, size_t n0, size_t n1,
                     float *y);
    /* out[i] = h[i] as fp32 (exact), i < count. */
    void (*f16_to_f32)(const uint16_t *h, size_t count, float *out);
    /* 0, or the least bit width for which gemm_q8 with m > 1 reads a->q16:
     * the caller widens each row once, not once per tile of columns. */
    int q16_bits;
} qlib_kernels;

static inline int qk_wants_q16(const qlib_kernels *k, const qk_weights *w, size_t m)
{
    return m > 1 && k->q16_bits > 0 && w->bits >= k->q16_bits;
}

static inline void qk_widen_q(const int8_t *q, size_t count, int16_t *out)
{
    for (size_t i = 0; i < count; i++) out[i] = q[i];
}

extern const qlib_kernels qlib_kernels_scalar;
#if defined(__x86_64__) || defined(_M_X64)
extern const qlib_kernels qlib_kernels_avx2;
extern const qlib_kernels qlib_kernels_avx2_vnni;
extern const qlib_kernels qlib_kernels_avx2_avx512vnni;
#endif
#if defined(__aarch64__)
extern const qlib_kernels qlib_kernels_neon;
extern const qlib_kernels qlib_kernels_neon_dotprod;
#endif

/* The table for an ISA name (NULL = best for cpu features), or NULL when
 * unknown or not supported by the features. */
const qlib_kernels *qlib_kernels_pick(const char *isa, unsigned cpu_features);

/* Unpacks the 32 codes of block b (columns 32b .. 32b+31) of a packed row. */
void qk_unpack_block_scalar(int bits, const uint8_t *row, size_t b, uint8_t out[32]);

#endif
