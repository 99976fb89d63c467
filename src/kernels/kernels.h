/* The kernel table: one per ISA, picked once per context.
 *
 * Kernels know the packed layout (docs/FORMAT.md) and nothing of the methods
 * that produced it. Each output element y[i][r] is computed by exactly one
 * call, in an order that depends only on i, r and the weights: results do not
 * depend on how [n0, n1) ranges are split among threads.
 *
 * Microkernels are named by what they compute, XNNPACK/KleidiAI style:
 *
 *     <op>_<y>_<x>_<w>_<MR>x<NR>c<KR>__<isa>
 *
 *   op   gemv (one row of x) or gemm (several rows)
 *   y    f32: fp32 output
 *   x    qa8: int8 activations in blocks of 32 with an fp32 scale (qk_acts);
 *        f32: fp32 activations
 *   w    qw2, qw3, qw4: 2/3/4-bit codes (a zero point per group, or the
 *        symmetric one); qw8s / qw8a: 8-bit symmetric / asymmetric codes;
 *        qw: any width; f16: fp16 weights
 *   MRxNR: rows of x by weight rows (output columns) held in registers; cKR:
 *        values of k per step of the tile
 *   isa  scalar, avx2, avxvnni (VEX vpdpbusd), avx512vnni (EVEX vpdpbusd on
 *        256-bit registers), avx512 (512-bit registers), neon, neondot
 *
 * Each entry also states what a caller may rely on (qk_order): whether its
 * sums are the scalar reference's operations, so equal to it bit for bit, or
 * its own fixed order, equal to scalar only within a bound (test_kernels.c
 * derives it), still the same bits for any thread count. */
#ifndef QLIB_KERNELS_H
#define QLIB_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define QK_BLOCK 32      /* activation block (int8 quantization) */
#define QK_KALIGN 64     /* rows are padded to a multiple of this many codes */

/* CPU features a table needs (the core detects them: cpu.c). */
enum { QK_CPU_AVX2 = 1u, QK_CPU_FMA = 2u, QK_CPU_F16C = 4u, QK_CPU_NEON = 8u,
       QK_CPU_DOTPROD = 16u, QK_CPU_AVX_VNNI = 32u, QK_CPU_AVX512_VNNI = 64u,
       QK_CPU_AVX512 = 128u   /* AVX512F, BW, VL and VNNI, ZMM state saved by the OS */ };

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
    const int16_t *q16;       /* m x kp: q as int16, for kernels with wants_q16; else NULL */
    /* The microkernel's workspace for this call: qk_ws_bytes of its entry,
     * 64-byte aligned, used by this call alone; or NULL, and the kernel
     * works in a smaller buffer of its own (the same results). */
    void *ws;
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

/* The value of x'[j] (qk_xmap), for the kernels' edge and gather paths. */
static inline float qk_map_x(const qk_xmap *map, const float *x, size_t j)
{
    if (j >= map->k) return 0.0f;
    size_t c = map->perm ? (size_t)map->perm[j] : j;
    if (map->drop && map->drop[c]) return 0.0f;
    return map->scale ? x[c] * map->scale[c] : x[c];
}

/* What a caller may rely on about a microkernel's sums. */
typedef enum qk_order {
    QK_ORDER_SCALAR = 0,  /* the scalar reference's operations: equal to it bit for bit */
    QK_ORDER_OWN = 1      /* its own order, fixed by the row and k: within a bound of scalar */
} qk_order;

/* Weight kinds an entry takes: a bit per code width, and the symmetry. */
#define QK_W(bits) (1u << (bits))
enum { QK_SYM = 1u, QK_ASYM = 2u };

/* y[i][r] for i < a->m, n0 <= r < n1 (AUTO mode). */
typedef void (*qk_q8_fn)(const qk_weights *w, const qk_acts *a, size_t n0, size_t n1, float *y,
                         size_t ldy);

typedef struct qk_q8_ukernel {
    const char *name;
    unsigned widths;          /* QK_W(bits) of the code widths it takes */
    unsigned symmetry;        /* QK_SYM and/or QK_ASYM */
    uint8_t mr, nr, kr;       /* register tile: rows of x, weight rows, k per step */
    uint8_t order;            /* qk_order */
    uint8_t wants_q16;        /* reads qk_acts.q16: the caller widens each row of x once */
    qk_q8_fn run;
    size_t ws_bytes;          /* the workspace (qk_acts.ws) a call can use; 0: none */
    size_t ws_min_m;          /* ... from this many rows of x on (fewer never use it) */
} qk_q8_ukernel;

/* The workspace a call of uk on m rows of x can use. */
static inline size_t qk_ws_bytes(const qk_q8_ukernel *uk, size_t m)
{
    return m >= uk->ws_min_m ? uk->ws_bytes : 0;
}

/* y[i][r] = sum_j x[i][j] * w[r][j], x: m x kp (row stride ldx): COMPUTE_F32. */
typedef struct qk_f32_ukernel {
    const char *name;
    uint8_t mr, nr, order;
    void (*run)(const qk_weights *w, const float *x, size_t ldx, size_t m, size_t n0, size_t n1,
                float *y, size_t ldy);
} qk_f32_ukernel;

/* fp16 weights (NONE tensors), n x k row-major: y[r] = sum_j w[r][j] x[j]
 * for n0 <= r < n1, each row summed in an order fixed by k alone. */
typedef struct qk_f16_ukernel {
    const char *name;
    uint8_t nr, order;
    void (*run)(const uint16_t *w, size_t k, const float *x, size_t n0, size_t n1, float *y);
} qk_f16_ukernel;

typedef struct qlib_kernels {
    const char *isa;          /* qlib_ctx_set_isa's name */
    unsigned needs;           /* QK_CPU_* features it requires */
    /* Another table whose every result this one equals bit for bit (the
     * same integer sums in the same lanes), or NULL. */
    const struct qlib_kernels *same_bits_as;
    /* Packing x: AUTO, one row to q (kp), d and sum (kp/32 each), exact and
     * the same on every ISA; F32, one row to its mapped fp32 form. */
    void (*quantize_row)(const qk_xmap *map, const float *x, int8_t *q, float *d, int32_t *sum);
    void (*prepare_row)(const qk_xmap *map, const float *x, float *out);
    /* AUTO microkernels, best first: for m = 1 and m > 1 the first entry of
     * gemv / gemm that takes the weights (qk_pick) runs. Every table covers
     * every width and symmetry. */
    const qk_q8_ukernel *gemv;
    unsigned n_gemv;
    const qk_q8_ukernel *gemm;
    unsigned n_gemm;
    qk_f32_ukernel gemm_f32;
    /* Row r dequantized (kp floats): exact, the same on every ISA. */
    void (*dequant_row)(const qk_weights *w, size_t r, float *out);
    qk_f16_ukernel gemv_f16;
    /* out[i] = h[i] as fp32 (exact), i < count. */
    void (*f16_to_f32)(const uint16_t *h, size_t count, float *out);
} qlib_kernels;

/* The first entry of list that takes w's codes; NULL when none does. */
static inline const qk_q8_ukernel *qk_pick(const qk_q8_ukernel *list, unsigned n,
                                           const qk_weights *w)
{
    unsigned sym = w->symmetric ? QK_SYM : QK_ASYM;
    for (unsigned i = 0; i < n; i++)
        if ((list[i].widths & QK_W(w->bits)) && (list[i].symmetry & sym)) return &list[i];
    return NULL;
}

/* The AUTO microkernel for m rows of x times w. */
static inline const qk_q8_ukernel *qk_pick_q8(const qlib_kernels *k, const qk_weights *w,
                                              size_t m)
{
    return m == 1 ? qk_pick(k->gemv, k->n_gemv, w) : qk_pick(k->gemm, k->n_gemm, w);
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
extern const qlib_kernels qlib_kernels_avx512;
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

/* IEEE binary16 to fp32, exact (portable; the vector units convert the same). */
float qk_f16_to_f32(uint16_t h);

#endif
