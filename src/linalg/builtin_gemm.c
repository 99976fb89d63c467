/* The built-in SGEMM core, C (+)= alpha * op(A) * op(B), built as BLIS
 * builds one: blocks of op(A) and op(B) are copied into micro-panels
 * (packing), and a microkernel multiplies an MR x kc panel of A by a
 * kc x NR panel of B into an MR x NR tile of C held in registers. Deep
 * products with alpha = +-1 read the rows of A in place (gemm below).
 *
 * Portable C with GCC/Clang generic vectors (vector_size), no intrinsics.
 * This file is compiled once with the target's baseline flags (SSE2 on
 * x86-64, NEON on AArch64), and on x86-64 again by builtin_gemm_x86_avx2.c
 * (-mavx2); the vector width and the tile follow from the flags (LB_VW,
 * LB_MR, LB_NV below).
 *
 * The order of operations is fixed. Every element of C is computed as
 *     c = c0;  for p = 0, 1, ..., k-1:  c = c + (alpha * a_ip) * b_pj
 * with c0 = 0 (overwrite) or the element's value (accumulate), each product
 * and each sum rounded to float on its own: no fused multiply-add (these
 * units are compiled with -ffp-contract=off, the x86 variants without
 * -mfma). A block of k continues the sums the previous block left in C. So
 * the bits depend neither on the blocking nor on the tile or vector width,
 * nor on which thread computes which part of C: every variant gives what the
 * plain triple loop in that order gives. */
#include <stdint.h>
#include <string.h>

#include "builtin.h"

#ifndef LB_GEMM_TABLE                   /* the baseline compile of this file */
#define LB_GEMM_TABLE qlib_lb_gemm_generic
#define LB_GEMM_ISA "generic"
#endif

/* Vector width in floats, rows of the tile, vectors across it (NR = NV * VW).
 * The accumulators, the NV vectors of B, a broadcast of A and a product fit
 * the register file: 16 registers on x86-64, 32 on AArch64. (A 512-bit
 * variant, 6x64 with -mavx512f, was slower than AVX2 on the Zen 5 host:
 * docs/BLAS_NONE.md.) */
#if defined(__AVX2__)
#define LB_VW 8
#define LB_MR 6
#define LB_NV 2
#define LB_TILE "6x16"
#elif defined(__aarch64__)
#define LB_VW 4
#define LB_MR 8
#define LB_NV 3
#define LB_TILE "8x12"
#else
#define LB_VW 4
#define LB_MR 6
#define LB_NV 2
#define LB_TILE "6x8"
#endif
#define LB_NR (LB_NV * LB_VW)

/* Block sizes: kc values of k per packed block; MC rows of op(A) and NC
 * columns of op(B) per packed block. The packed blocks live on the caller's
 * stack (the GEMM allocates nothing): LB_STACK_BYTES in builtin.h bounds them.
 * A block of A small enough to stay in L1 (24 KiB) beside a panel of B,
 * and the rest for B: measured faster than 48 x 96 (docs/PERFORMANCE.md). */
#define LB_KC 256
#define LB_MC (LB_MR * (24 / LB_MR))
#define LB_NC (LB_NR * (128 / LB_NR))

_Static_assert((LB_MC * LB_KC + LB_NC * LB_KC + LB_MR * LB_NR) * sizeof(float) + 256 <=
                   LB_STACK_BYTES, "packed blocks exceed the stack budget");

typedef float lb_vf __attribute__((vector_size(LB_VW * sizeof(float))));

static inline lb_vf vload(const float *p)
{
    lb_vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, lb_vf v) { memcpy(p, &v, sizeof v); }

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* The MR x NR tile at c (row stride ldc) continued, or started from zero,
 * with kc steps of A (MR values per step: value i of step p at
 * a[i * rs + p * cs]) times b (NR values per step); neg subtracts the
 * products, which gives the bits of adding those of -A. Inlined with
 * constant strides and sign: the loop below is the microkernel. */
static inline __attribute__((always_inline)) void tile(size_t kc, const float *restrict a,
                                                       size_t rs, size_t cs, int neg,
                                                       const float *restrict b,
                                                       float *restrict c, size_t ldc, int load)
{
    lb_vf acc[LB_MR][LB_NV];
#pragma GCC unroll 16
    for (int i = 0; i < LB_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < LB_NV; v++)
            acc[i][v] = load ? vload(c + (size_t)i * ldc + v * LB_VW) : (lb_vf){ 0 };
    for (size_t p = 0; p < kc; p++) {
        lb_vf bv[LB_NV];
#pragma GCC unroll 4
        for (int v = 0; v < LB_NV; v++) bv[v] = vload(b + v * LB_VW);
#pragma GCC unroll 16
        for (int i = 0; i < LB_MR; i++) {
            float ai = a[(size_t)i * rs];
#pragma GCC unroll 4
            for (int v = 0; v < LB_NV; v++) {
                if (neg)
                    acc[i][v] -= bv[v] * ai;
                else
                    acc[i][v] += bv[v] * ai;
            }
        }
        a += cs;
        b += LB_NR;
    }
#pragma GCC unroll 16
    for (int i = 0; i < LB_MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < LB_NV; v++) vstore(c + (size_t)i * ldc + v * LB_VW, acc[i][v]);
}

/* Where a block's A is read: packed panels (lda = 0), or the rows of A in
 * place (row stride lda; alpha = -1 when neg), its last panel packed when it
 * has fewer than MR rows. */
typedef struct a_block {
    const float *p;
    size_t lda;
    int neg;
    size_t full;          /* in place: rows in full panels */
    const float *edge;    /* in place: the packed last panel, if full < mc */
} a_block;

static void tile_packed(size_t kc, const float *a, const float *b, float *c, size_t ldc, int load)
{
    tile(kc, a, 1, LB_MR, 0, b, c, ldc, load);
}

static void tile_rows(size_t kc, const float *a, size_t lda, int neg, const float *b, float *c,
                      size_t ldc, int load)
{
    if (neg)
        tile(kc, a, lda, 1, 1, b, c, ldc, load);
    else
        tile(kc, a, lda, 1, 0, b, c, ldc, load);
}

/* The tile whose A panel starts at row i0 of the block. */
static void tile_at(const a_block *A, size_t i0, size_t kc, const float *b, float *c, size_t ldc,
                    int load)
{
    if (!A->lda)
        tile_packed(kc, A->p + i0 * kc, b, c, ldc, load);
    else if (i0 < A->full)
        tile_rows(kc, A->p + i0 * A->lda, A->lda, A->neg, b, c, ldc, load);
    else
        tile_packed(kc, A->edge, b, c, ldc, load);
}

/* A tile cut by the edge of C: through a full tile on the stack. */
static void tile_edge(const a_block *A, size_t i0, size_t kc, const float *b, float *c,
                      size_t ldc, size_t mr, size_t nr, int load)
{
    float t[LB_MR * LB_NR] __attribute__((aligned(64)));
    memset(t, 0, sizeof t);
    if (load)
        for (size_t i = 0; i < mr; i++) memcpy(t + i * LB_NR, c + i * ldc, nr * sizeof(float));
    tile_at(A, i0, kc, b, t, LB_NR, load);
    for (size_t i = 0; i < mr; i++) memcpy(c + i * ldc, t + i * LB_NR, nr * sizeof(float));
}

/* mc x kc of op(A) (a points at its first element) into panels of MR rows,
 * step-major, times alpha; rows past mc are zero. */
static void pack_a(int ta, size_t mc, size_t kc, float alpha, const float *a, size_t lda,
                   float *restrict dst)
{
    for (size_t i0 = 0; i0 < mc; i0 += LB_MR, dst += LB_MR * kc) {
        size_t mr = min_size(LB_MR, mc - i0);
        if (mr < LB_MR) memset(dst, 0, LB_MR * kc * sizeof(float));
        if (ta) {
            for (size_t p = 0; p < kc; p++)
                for (size_t i = 0; i < mr; i++) dst[p * LB_MR + i] = alpha * a[p * lda + i0 + i];
        } else {
            for (size_t i = 0; i < mr; i++) {
                const float *row = a + (i0 + i) * lda;
                for (size_t p = 0; p < kc; p++) dst[p * LB_MR + i] = alpha * row[p];
            }
        }
    }
}

/* kc x nc of op(B) (b points at its first element) into panels of NR
 * columns, step-major; columns past nc are zero. */
static void pack_b(int tb, size_t kc, size_t nc, const float *b, size_t ldb, float *restrict dst)
{
    for (size_t j0 = 0; j0 < nc; j0 += LB_NR, dst += LB_NR * kc) {
        size_t nr = min_size(LB_NR, nc - j0);
        if (nr < LB_NR) memset(dst, 0, LB_NR * kc * sizeof(float));
        if (tb) {
            for (size_t j = 0; j < nr; j++) {
                const float *row = b + (j0 + j) * ldb;
                for (size_t p = 0; p < kc; p++) dst[p * LB_NR + j] = row[p];
            }
        } else {
            for (size_t p = 0; p < kc; p++)
                memcpy(dst + p * LB_NR, b + p * ldb + j0, nr * sizeof(float));
        }
    }
}

/* The mc x kc block of A times the packed kc x nc block of B into C. */
static void macro_kernel(size_t mc, size_t nc, size_t kc, const a_block *A, const float *bp,
                         float *c, size_t ldc, int load)
{
    for (size_t j0 = 0; j0 < nc; j0 += LB_NR) {
        size_t nr = min_size(LB_NR, nc - j0);
        const float *b = bp + j0 * kc;
        for (size_t i0 = 0; i0 < mc; i0 += LB_MR) {
            size_t mr = min_size(LB_MR, mc - i0);
            float *ct = c + i0 * ldc + j0;
            if (mr == LB_MR && nr == LB_NR)
                tile_at(A, i0, kc, b, ct, ldc, load);
            else
                tile_edge(A, i0, kc, b, ct, ldc, mr, nr, load);
        }
    }
}

/* op(A) is read in place when alpha is 1 or -1, A is not transposed (its
 * rows are the tile's rows) and k fills a block (KC): it is then read once
 * per block of NC columns instead of packed again for each. A shallower
 * product packs A: its blocks of B are wider (below), and a packed panel
 * streams better than six rows of A (measured: docs/PERFORMANCE.md). */
static void gemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                 size_t lda, const float *b, size_t ldb, float *c, size_t ldc, int accumulate)
{
    float ap[LB_MC * LB_KC] __attribute__((aligned(64)));
    float bp[LB_KC * LB_NC] __attribute__((aligned(64)));
    int in_place = !ta && (alpha == 1.0f || alpha == -1.0f) && k >= LB_KC;
    /* a shallow product (k < KC) packs wider blocks of B into the same
     * buffer, so that each block of A serves more columns */
    size_t nc_max = LB_KC * LB_NC / min_size(k, LB_KC) / LB_NR * LB_NR;
    for (size_t j0 = 0; j0 < n; j0 += nc_max) {
        size_t nc = min_size(nc_max, n - j0);
        for (size_t p0 = 0; p0 < k; p0 += LB_KC) {
            size_t kc = min_size(LB_KC, k - p0);
            pack_b(tb, kc, nc, tb ? b + j0 * ldb + p0 : b + p0 * ldb + j0, ldb, bp);
            for (size_t i0 = 0; i0 < m; i0 += LB_MC) {
                size_t mc = min_size(LB_MC, m - i0);
                const float *src = ta ? a + p0 * lda + i0 : a + i0 * lda + p0;
                a_block A = { ap, 0, 0, 0, NULL };
                if (in_place) {
                    A = (a_block){ src, lda, alpha < 0.0f, mc / LB_MR * LB_MR, ap };
                    if (A.full < mc) pack_a(0, mc - A.full, kc, alpha, src + A.full * lda, lda, ap);
                } else {
                    pack_a(ta, mc, kc, alpha, src, lda, ap);
                }
                macro_kernel(mc, nc, kc, &A, bp, c + i0 * ldc + j0, ldc, accumulate || p0 > 0);
            }
        }
    }
}

const qlib_lb_gemm_kernel LB_GEMM_TABLE = {
    "f32_gemm_" LB_TILE "__" LB_GEMM_ISA, gemm, LB_MR, LB_NR,
};
