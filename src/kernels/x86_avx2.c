/* AVX2 + FMA + F16C kernels (this unit alone is compiled with -mavx2 -mfma
 * -mf16c; it is used only when the CPU and the OS support them).
 *
 * The GEMM and F32 kernels compute every output element with exactly the
 * arithmetic of the scalar reference (scalar.c): the integer block dots are
 * exact, and the float operations (block scale, group sum, group scale,
 * output sum) are the same separate multiplies and adds in the same order,
 * vectorised across output columns, so they equal the scalar kernels bit for
 * bit. The GEMV (M = 1, AUTO) sums the same exact integer products in its
 * own order: eight int32 partial dots per row and block, converted to fp32
 * and accumulated with fused multiply-adds in eight lanes (times d per
 * block, times s per group), the lanes summed once per row. That order
 * depends only on the row, so no result depends on the split of columns
 * over threads; against scalar the results differ by float reassociation.
 *
 * The microkernels (kernels.h names them; the suffix is this unit's ISA:
 * avx2, avxvnni or avx512vnni):
 *
 *   gemv_f32_qa8_qw{2,3,4}_1x4c32: M = 1, codes up to 4 bits. Four
 *     weight rows in two pairs; a 4-bit block pair is one load per row
 *     (nibbles by mask and shift); per row and block maddubs multiplies the
 *     unsigned codes with q; two rows' products share one pmaddwd (lanes
 *     alternate between the rows); one fused multiply-add takes z times
 *     each lane's sum of q off, exactly. The rows two tiles ahead are
 *     prefetched.
 *   gemv_f32_qa8_qw8s_1x4c32: M = 1, symmetric 8-bit codes, the
 *     same with c - 128 as int8 (top bit flipped), one row per vector.
 *   gemv_f32_qa8_qw8a_1x4c32: M = 1, asymmetric 8-bit codes,
 *     c - z widened to int16 and pmaddwd.
 *   gemm_f32_qa8_qw{2,3,4}_4x16c4: M > 1, AUTO, codes up to 4 bits. A
 *     tile of 16 weight rows by up to 16 blocks is unpacked once into u8
 *     quads of k (8 rows per vector) and reused by every row of x in a panel
 *     of 64; x is broadcast four int8 at a time straight from the quantized
 *     row; maddubs sums stay in int16 over a block, then pmaddwd to int32.
 *   gemm_f32_qa8_qw8_4x16c2: M > 1, AUTO, 8-bit codes. The tile holds
 *     int16 (c - z) in pairs of k; x comes widened to int16 once per call
 *     (qk_acts.q16: wants_q16); pmaddwd accumulates in int32.
 *   gemm_f32_f32_qw_4x16c2: COMPUTE_F32, all M and widths. The int16 tile,
 *     converted to fp32 per k, multiplied with broadcast x in k order (one
 *     row of x at a time when M = 1).
 *   gemv_f32_f32_f16_1x4c16: fp16 weights (NONE tensors), M = 1.
 *
 * With QK_AVX_VNNI (x86_avx2_vnni.c, the "avx2-vnni" table, and
 * x86_avx2_avx512vnni.c, "avx2-avx512vnni") vpdpbusd
 * replaces each maddubs + add (and its pmaddwd with ones): four products of
 * unsigned codes and int8 q summed straight into int32 lanes. Every AUTO
 * GEMM then takes the u8 tile, 8-bit codes included
 * (gemm_f32_qa8_qw8_4x16c4__avxvnni: c q less z times the block sum
 * of q, |c q| summed over a block below 32 * 255 * 127 < 2^24, so the fused
 * form stays exact), x is not widened to int16, and the GEMVs of codes up to
 * 4 bits and of symmetric 8-bit codes use it for their block dots. The
 * integer sums are the same, so the results are the same bits as avx2's. */
#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "kernels.h"

/* x86_avx2_vnni.c compiles this unit again with QK_AVX_VNNI 1 (the VEX
 * vpdpbusd of AVX-VNNI), x86_avx2_avx512vnni.c with QK_AVX_VNNI 2 (the
 * 256-bit EVEX form of AVX512-VNNI + AVX512VL): the same instruction. */
#ifndef QK_AVX_VNNI
#define QK_AVX_VNNI 0
#define AVX2_TABLE qlib_kernels_avx2
#define AVX2_NAME "avx2"
#define AVX2_SUFFIX avx2
#define AVX2_NEEDS 0u
#define AVX2_SAME_BITS_AS NULL
#endif

/* A microkernel's name with this unit's ISA suffix, as symbol and string. */
#define UK_CAT2(a, b) a##__##b
#define UK_CAT(a, b) UK_CAT2(a, b)
#define UK(name) UK_CAT(name, AVX2_SUFFIX)
#define UK_STR2(x) #x
#define UK_STR(x) UK_STR2(x)
#define UK_NAME(name) UK_STR(UK(name))
#if QK_AVX_VNNI == 2
#define DPBUSD _mm256_dpbusd_epi32
#elif QK_AVX_VNNI
#define DPBUSD _mm256_dpbusd_avx_epi32
#endif

#define NR 16                /* weight rows (output columns) per tile */
#define MR 4                 /* rows of x per register tile */
#define MC 128               /* rows of x sharing one unpacked weight tile */
#define KB 32                /* blocks of 32 codes per tile */

/* Inlined with constant bit widths, so each width gets its own loop. */
#define AI __attribute__((always_inline)) static inline

/* ---- unpacking one block of 32 codes (docs/FORMAT.md) ---- */

AI __m256i unpack_block(int bits, const uint8_t *row, size_t b)
{
    if (bits == 8) return _mm256_loadu_si256((const __m256i *)(const void *)(row + 32 * b));
    if (bits == 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(row + 32 * (b >> 1)));
        v = _mm256_srl_epi16(v, _mm_cvtsi32_si128((int)(b & 1) * 4));
        return _mm256_and_si256(v, _mm256_set1_epi8(15));
    }
    const uint8_t *p = row + (bits == 2 ? 8 : 12) * b;
    int64_t lo64;
    memcpy(&lo64, p, 8);
    /* byte i of 64-bit lane j, shifted right by 2j: bits 2j..2j+1 of byte i */
    __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x(lo64), _mm256_setr_epi64x(0, 2, 4, 6));
    v = _mm256_and_si256(v, _mm256_set1_epi8(3));
    if (bits == 2) return v;
    int32_t hi;
    memcpy(&hi, p + 8, 4);
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201ull);
    __m256i h = _mm256_shuffle_epi8(_mm256_set1_epi32(hi), pick);
    h = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
    return _mm256_or_si256(v, _mm256_and_si256(h, _mm256_set1_epi8(4)));
}

static size_t n_blocks(const qk_weights *w) { return (w->k + QK_BLOCK - 1) / QK_BLOCK; }

/* Transposes 8 vectors of 8 dwords in place: v[i] dword j -> v[j] dword i. */
AI void transpose8(__m256i v[8])
{
    __m256i t[8], u[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    #pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
        v[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
    }
}

/* ---- activations ---- */

/* x'[j0 .. j0+7] of the mapped row (qk_xmap). */
AI __m256 map_x8(const qk_xmap *map, const float *x, size_t j0)
{
    if (j0 + 8 <= map->k && !map->perm && !map->drop) {
        __m256 v = _mm256_loadu_ps(x + j0);
        return map->scale ? _mm256_mul_ps(v, _mm256_loadu_ps(map->scale + j0)) : v;
    }
    float t[8];
    for (size_t j = 0; j < 8; j++) t[j] = qk_map_x(map, x, j0 + j);
    return _mm256_loadu_ps(t);
}

static void avx2_prepare_row(const qk_xmap *map, const float *x, float *out)
{
    for (size_t j = 0; j < map->kp; j += 8) _mm256_storeu_ps(out + j, map_x8(map, x, j));
}

static void avx2_quantize_row(const qk_xmap *map, const float *x, int8_t *q, float *d,
                              int32_t *sum)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (size_t b = 0; b < map->kp / QK_BLOCK; b++) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int t = 0; t < 4; t++) {
            v[t] = map_x8(map, x, b * QK_BLOCK + 8 * (size_t)t);
            m = _mm256_max_ps(m, _mm256_and_ps(v[t], abs_mask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float amax = _mm_cvtss_f32(m4), inv1 = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (inv1 > FLT_MAX) inv1 = amax = 0.0f;  /* as scalar.c: a block below 127/FLT_MAX is zero */
        __m256 inv = _mm256_set1_ps(inv1);
        __m256i qi[4], s = _mm256_setzero_si256();
        for (int t = 0; t < 4; t++) {   /* round to nearest even, like nearbyintf */
            qi[t] = _mm256_cvtps_epi32(_mm256_mul_ps(v[t], inv));
            qi[t] = _mm256_max_epi32(_mm256_min_epi32(qi[t], _mm256_set1_epi32(127)),
                                     _mm256_set1_epi32(-127));
            s = _mm256_add_epi32(s, qi[t]);
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]),
                                       _mm256_packs_epi32(qi[2], qi[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(void *)(q + b * QK_BLOCK), p);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_hadd_epi32(s4, s4);
        s4 = _mm_hadd_epi32(s4, s4);
        d[b] = amax / 127.0f;
        sum[b] = _mm_cvtsi128_si32(s4);
    }
}

/* ---- per-row group parameters, eight or sixteen rows at once ---- */

/* idx[t] = r[t] * scale_stride: where rows' group parameters start. */
static void param_base8(const qk_weights *w, const size_t r[8], size_t idx[8])
{
    for (int t = 0; t < 8; t++) idx[t] = r[t] * w->scale_stride;
}

static __m256 scales8(const qk_weights *w, const size_t base[8], size_t g)
{
    uint16_t h[8];
    for (int t = 0; t < 8; t++) h[t] = w->scales[base[t] + g];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h));
}

static __m256i zeros8(const qk_weights *w, const size_t base[8], size_t g)
{
    if (w->symmetric) return _mm256_set1_epi32(1 << (w->bits - 1));
    int32_t z[8];
    if (w->bits == 4) {
        for (int t = 0; t < 8; t++) {
            size_t i = base[t] + g;
            z[t] = (w->zeros[i >> 1] >> ((i & 1) * 4)) & 15;
        }
    } else if (w->bits == 8) {
        for (int t = 0; t < 8; t++) z[t] = w->zeros[base[t] + g];
    } else {
        for (int t = 0; t < 8; t++) {
            size_t bit = (base[t] + g) * (size_t)w->bits;
            unsigned v = (unsigned)w->zeros[bit >> 3] | (unsigned)w->zeros[(bit >> 3) + 1] << 8;
            z[t] = (int32_t)((v >> (bit & 7)) & ((1u << w->bits) - 1u));
        }
    }
    return _mm256_loadu_si256((const __m256i *)(const void *)z);
}

/* Rows r0 .. r0+count-1, the ones past n1 repeating the last (their results
 * are computed the same way and dropped). */
static void tile_rows(size_t r0, size_t n1, size_t count, size_t *r)
{
    for (size_t t = 0; t < count; t++) r[t] = r0 + t < n1 ? r0 + t : n1 - 1;
}

/* ---- GEMV, AUTO mode ---- */

#define GR 4                 /* weight rows per GEMV tile */
#define GC 8                 /* groups whose parameters are read at once */

/* The sum of the 8 lanes, in one fixed order. */
static float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The sums of the even and of the odd lanes, in one fixed order. */
static void hsum8_pair(__m256 v, float *even, float *odd)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    *even = _mm_cvtss_f32(s);
    *odd = _mm_cvtss_f32(_mm_movehdup_ps(s));
}

/* ---- codes up to 4 bits: row pairs, group parameters in chunks of 8 ---- */

/* The scales of groups g0 .. g0+7 of row r (0 past the last group). */
static __m256 scales_chunk(const qk_weights *w, size_t r, size_t g0)
{
    const uint16_t *p = w->scales + r * w->scale_stride + g0;
    if (w->scale_stride && g0 + GC <= w->n_groups)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
    uint16_t h[GC] = { 0 };
    for (size_t g = g0; g < w->n_groups && g < g0 + GC; g++) h[g - g0] = p[g - g0];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)h));
}

/* The zero points of groups g0 .. g0+7 of row r (0 past the last group). */
static __m256i zeros_chunk(const qk_weights *w, size_t r, size_t g0)
{
    if (w->symmetric) return _mm256_set1_epi32(1 << (w->bits - 1));
    size_t i = r * w->scale_stride + g0;
    if (w->bits == 4 && w->scale_stride && g0 + GC <= w->n_groups) {
        /* eight nibbles from nibble i: 4 bytes, and a fifth when i is odd */
        uint32_t lo;
        memcpy(&lo, w->zeros + i / 2, 4);
        uint64_t v = lo;
        if (i & 1) v = (v | (uint64_t)w->zeros[i / 2 + 4] << 32) >> 4;
        __m256i z = _mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)v),
                                      _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
        return _mm256_and_si256(z, _mm256_set1_epi32(15));
    }
    int32_t z[GC] = { 0 };
    for (size_t g = g0; g < w->n_groups && g < g0 + GC; g++) z[g - g0] = qk_zero(w, r, g);
    return _mm256_loadu_si256((const __m256i *)(const void *)z);
}

/* The scales and zero points (as floats) of 8 groups of each row of a tile,
 * read once per 8 groups. */
typedef struct tile_chunk {
    float s[GR][GC], z[GR][GC];
} tile_chunk;

AI void chunk_start(const qk_weights *w, const size_t r[GR], size_t g0, tile_chunk *c)
{
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        _mm256_storeu_ps(c->s[i], scales_chunk(w, r[i], g0));
        _mm256_storeu_ps(c->z[i], _mm256_cvtepi32_ps(zeros_chunk(w, r[i], g0)));
    }
}

/* Row a's value in the even lanes, row b's in the odd ones. */
AI __m256 pair_of(const float *va, const float *vb)
{
    return _mm256_blend_ps(_mm256_broadcast_ss(va), _mm256_broadcast_ss(vb), 0xaa);
}

/* Two rows' exact dots of their codes (0 .. 15) with q over one block,
 * interleaved: even lanes row a, odd lanes row b, each lane the sum over the
 * same 8 columns of c q. maddubs multiplies the unsigned codes with q
 * (pairs up to 2 * 15 * 127); the two rows' pairs are added two by two in
 * int16, then pmaddwd with ones: exact in int32 and in fp32. One pmaddwd
 * serves two rows. With codes of 1 it gives each lane's sum of q. */
AI __m256 pair_lanes(__m256i ca, __m256i cb, __m256i q)
{
#if QK_AVX_VNNI
    /* vpdpbusd: the same sums straight to int32, four columns per lane */
    const __m256i zero = _mm256_setzero_si256();
    __m256i pa = DPBUSD(zero, ca, q), pb = DPBUSD(zero, cb, q);
    return _mm256_cvtepi32_ps(
        _mm256_add_epi32(_mm256_unpacklo_epi32(pa, pb), _mm256_unpackhi_epi32(pa, pb)));
#else
    __m256i pa = _mm256_maddubs_epi16(ca, q), pb = _mm256_maddubs_epi16(cb, q);
    __m256i x = _mm256_add_epi16(_mm256_unpacklo_epi32(pa, pb), _mm256_unpackhi_epi32(pa, pb));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(x, _mm256_set1_epi16(1)));
#endif
}

#define QS_BLOCKS 512        /* blocks whose lane sums of q a GEMV call keeps */

/* Block b's lane sums of q (pair_lanes with codes of 1). */
AI __m256 block_qsum(const qk_acts *a, size_t b)
{
    const __m256i one = _mm256_set1_epi8(1);
    return pair_lanes(one, one, _mm256_loadu_si256((const __m256i *)(const void *)(a->q + 32 * b)));
}

/* The running state of a GEMV tile: per pair of rows, ga sums d times the
 * block lanes of the current group, y sums s times ga at each group's end,
 * zp holds the current group's zero points; g is the current group, left
 * its blocks still to come. */
typedef struct gemv_state {
    __m256 ga[GR / 2], y[GR / 2], zp[GR / 2];
    size_t g, left;
} gemv_state;

AI void group_begin(const tile_chunk *c, gemv_state *st)
{
    size_t gi = st->g % GC;
    #pragma GCC unroll 2
    for (int j = 0; j < GR / 2; j++) st->zp[j] = pair_of(&c->z[2 * j][gi], &c->z[2 * j + 1][gi]);
}

/* One block's lanes f (of c q) into ga: z times the lanes' sums of q sq
 * off (exact), times the block scale d. */
AI void block_acc(gemv_state *st, const __m256 f[GR / 2], __m256 sq, __m256 d)
{
    #pragma GCC unroll 2
    for (int j = 0; j < GR / 2; j++)
        st->ga[j] = _mm256_fmadd_ps(d, _mm256_fnmadd_ps(st->zp[j], sq, f[j]), st->ga[j]);
}

/* block_acc, then at the group's last block (or the row's) s times ga into
 * y and the next group begun. bpg: the blocks (or, for groups of an even
 * number of 4-bit blocks, the block pairs) each group counts down. */
AI void block_done(const qk_weights *w, const size_t r[GR], size_t bpg, tile_chunk *c,
                   gemv_state *st, const __m256 f[GR / 2], __m256 sq, __m256 d, int last)
{
    block_acc(st, f, sq, d);
    if (--st->left && !last) return;
    size_t gi = st->g % GC;
    #pragma GCC unroll 2
    for (int j = 0; j < GR / 2; j++) {
        __m256 s = pair_of(&c->s[2 * j][gi], &c->s[2 * j + 1][gi]);
        st->y[j] = _mm256_fmadd_ps(s, st->ga[j], st->y[j]);
        st->ga[j] = _mm256_setzero_ps();
    }
    if (last) return;
    st->g++;
    st->left = bpg;
    if (st->g % GC == 0) chunk_start(w, r, st->g, c);
    group_begin(c, st);
}

/* u8i8_dot_gemv_ukernel_4x8c32__avx2, codes of up to 4 bits, rows in pairs.
 * Each lane's block dot of c - z is that of c less z times the lane's sum
 * of q (qs, computed once per call, or here per block when the call has
 * too many blocks to keep them): both exact integers below 2^24, so one
 * fused multiply-add gives the exact sum of (c - z) q over the lane's 8
 * columns. Blocks are taken in order, d times their lanes summed per group
 * and s times that per row (fused multiply-adds). 4-bit codes come two
 * blocks per 32-byte load (low and high nibbles), also across a group's
 * end; even: every group holds whole block pairs, so none ends on a low
 * nibble. */
AI void gemv_small_bits(int bits, int has_qs, int even, const qk_weights *w, const qk_acts *a,
                        const __m256 *qs, const size_t r[GR], float out[GR])
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK / (even ? 2 : 1);
    size_t ahead = 2 * GR * w->row_bytes;
    const uint8_t *row[GR];
    for (int i = 0; i < GR; i++) row[i] = w->codes + r[i] * w->row_bytes;
    const __m256i mask = _mm256_set1_epi8(15);
    tile_chunk c;
    gemv_state st;
    for (int j = 0; j < GR / 2; j++) st.ga[j] = st.y[j] = _mm256_setzero_ps();
    st.g = 0;
    st.left = bpg;
    chunk_start(w, r, 0, &c);
    group_begin(&c, &st);
    if (bits == 4) {
        for (size_t b = 0; b < nb; b += 2) {
            __m256i q0 = _mm256_loadu_si256((const __m256i *)(const void *)(a->q + 32 * b));
            __m256i q1 = _mm256_loadu_si256((const __m256i *)(const void *)(a->q + 32 * b + 32));
            __m256i v[GR];
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                /* the rows two tiles ahead, once per cache line: the
                 * prefetcher alone lags on interleaved row streams */
                if (b & 2) _mm_prefetch((const char *)(row[i] + ahead + 16 * b), _MM_HINT_T1);
                v[i] = _mm256_loadu_si256((const __m256i *)(const void *)(row[i] + 16 * b));
            }
            __m256 f[GR / 2];
            #pragma GCC unroll 2
            for (int j = 0; j < GR / 2; j++)
                f[j] = pair_lanes(_mm256_and_si256(v[2 * j], mask),
                                  _mm256_and_si256(v[2 * j + 1], mask), q0);
            if (even && b + 1 < nb)   /* a group of whole pairs ends on a high nibble */
                block_acc(&st, f, has_qs ? qs[b] : block_qsum(a, b), _mm256_broadcast_ss(a->d + b));
            else
                block_done(w, r, bpg, &c, &st, f, has_qs ? qs[b] : block_qsum(a, b),
                           _mm256_broadcast_ss(a->d + b), b + 1 == nb);
            if (b + 1 == nb) break;
            #pragma GCC unroll 2
            for (int j = 0; j < GR / 2; j++)
                f[j] = pair_lanes(_mm256_and_si256(_mm256_srli_epi16(v[2 * j], 4), mask),
                                  _mm256_and_si256(_mm256_srli_epi16(v[2 * j + 1], 4), mask), q1);
            block_done(w, r, bpg, &c, &st, f, has_qs ? qs[b + 1] : block_qsum(a, b + 1),
                       _mm256_broadcast_ss(a->d + b + 1), b + 2 == nb);
        }
    } else {
        for (size_t b = 0; b < nb; b++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(a->q + 32 * b));
            __m256 f[GR / 2];
            #pragma GCC unroll 2
            for (int j = 0; j < GR / 2; j++) {
                for (int i = 2 * j; i < 2 * j + 2; i++)
                    _mm_prefetch((const char *)(row[i] + ahead + (size_t)bits * 4 * b),
                                 _MM_HINT_T1);
                f[j] = pair_lanes(unpack_block(bits, row[2 * j], b),
                                  unpack_block(bits, row[2 * j + 1], b), q);
            }
            block_done(w, r, bpg, &c, &st, f, has_qs ? qs[b] : block_qsum(a, b),
                       _mm256_broadcast_ss(a->d + b), b + 1 == nb);
        }
    }
    for (int j = 0; j < GR / 2; j++) hsum8_pair(st.y[j], &out[2 * j], &out[2 * j + 1]);
}

/* ---- 8-bit codes: rows one by one, eight lanes each ---- */

/* ga[i] as in gemv_small_bits, per row; at a group's end, times s into
 * y[i]. */
AI void gemv_group_end(const qk_weights *w, const size_t r[GR], size_t g, __m256 ga[GR],
                       __m256 y[GR])
{
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        __m256 s = _mm256_set1_ps(_cvtsh_ss(w->scales[r[i] * w->scale_stride + g]));
        y[i] = _mm256_fmadd_ps(s, ga[i], y[i]);
        ga[i] = _mm256_setzero_ps();
    }
}

/* i8i8_dot_gemv_ukernel_4x8c32__avx2, symmetric 8-bit codes: c - 128 is the
 * code with its top bit flipped, as int8; maddubs takes |c - 128| (up to
 * 128, unsigned) and q with the sign of c - 128 (pairs up to 2 * 128 * 127,
 * no saturation); pmaddwd with ones gives eight exact int32 lanes. */
static void gemv_8bit_sym(const qk_weights *w, const qk_acts *a, const size_t r[GR],
                          float out[GR])
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK, ahead = GR * w->row_bytes;
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 ga[GR], y[GR];
    for (int i = 0; i < GR; i++) ga[i] = y[i] = _mm256_setzero_ps();
    for (size_t g = 0, b = 0; b < nb; g++) {
        size_t b1 = nb - b < bpg ? nb : b + bpg;
        for (; b < b1; b++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(a->q + 32 * b));
            __m256 d = _mm256_broadcast_ss(a->d + b);
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                const uint8_t *src = w->codes + r[i] * w->row_bytes + 32 * b;
                _mm_prefetch((const char *)(src + ahead), _MM_HINT_T1);
                __m256i c = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)src),
                                             flip);
#if QK_AVX_VNNI
                __m256 f = _mm256_cvtepi32_ps(DPBUSD(
                    _mm256_setzero_si256(), _mm256_abs_epi8(c), _mm256_sign_epi8(q, c)));
#else
                __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(c), _mm256_sign_epi8(q, c));
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
                ga[i] = _mm256_fmadd_ps(d, f, ga[i]);
            }
        }
        gemv_group_end(w, r, g, ga, y);
    }
    for (int i = 0; i < GR; i++) out[i] = hsum8(y[i]);
}

/* i16i16_dot_gemv_ukernel_4x8c32__avx2, asymmetric 8-bit codes: c - z in
 * int16, pmaddwd with q widened once per block (pairs up to 2 * 255 * 127),
 * eight exact int32 lanes. */
static void gemv_8bit(const qk_weights *w, const qk_acts *a, const size_t r[GR], float out[GR])
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK, ahead = GR * w->row_bytes;
    __m256 ga[GR], y[GR];
    for (int i = 0; i < GR; i++) ga[i] = y[i] = _mm256_setzero_ps();
    for (size_t g = 0, b = 0; b < nb; g++) {
        size_t b1 = nb - b < bpg ? nb : b + bpg;
        __m256i z[GR];
        for (int i = 0; i < GR; i++) z[i] = _mm256_set1_epi16((int16_t)qk_zero(w, r[i], g));
        for (; b < b1; b++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(a->q + 32 * b));
            __m256i qlo = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
            __m256i qhi = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1));
            __m256 d = _mm256_broadcast_ss(a->d + b);
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                const uint8_t *src = w->codes + r[i] * w->row_bytes + 32 * b;
                _mm_prefetch((const char *)(src + ahead), _MM_HINT_T1);
                __m256i lo = _mm256_sub_epi16(
                    _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)src)), z[i]);
                __m256i hi = _mm256_sub_epi16(
                    _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(src + 16))),
                    z[i]);
                __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(lo, qlo), _mm256_madd_epi16(hi, qhi));
                ga[i] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), ga[i]);
            }
        }
        gemv_group_end(w, r, g, ga, y);
    }
    for (int i = 0; i < GR; i++) out[i] = hsum8(y[i]);
}

/* Each output's lanes and operation order depend only on its own row: a row
 * is computed the same way in whichever tile (and thread) it falls. With
 * few enough blocks the lanes' sums of q are computed once per call (qs);
 * 4-bit groups of whole block pairs skip the group count on low nibbles. */
AI void gemv_small(int bits, const qk_weights *w, const qk_acts *a, size_t n0, size_t n1,
                   float *y)
{
    size_t nb = n_blocks(w);
    __m256 qsb[QS_BLOCKS];
    const __m256 *qs = NULL;
    if (nb <= QS_BLOCKS) {
        for (size_t b = 0; b < nb; b++) qsb[b] = block_qsum(a, b);
        qs = qsb;
    }
    int pairs = bits == 4 && w->group / QK_BLOCK % 2 == 0;
    for (size_t r0 = n0; r0 < n1; r0 += GR) {
        size_t r[GR];
        float out[GR];
        tile_rows(r0, n1, GR, r);
        if (qs && pairs) gemv_small_bits(bits, 1, 1, w, a, qs, r, out);
        else if (qs) gemv_small_bits(bits, 1, 0, w, a, qs, r, out);
        else if (pairs) gemv_small_bits(bits, 0, 1, w, a, NULL, r, out);
        else gemv_small_bits(bits, 0, 0, w, a, NULL, r, out);
        for (size_t i = 0; i < GR && r0 + i < n1; i++) y[r0 + i] = out[i];
    }
}

/* 8-bit rows, one tile of GR at a time. */
AI void gemv_8bit_rows(int sym, const qk_weights *w, const qk_acts *a, size_t n0, size_t n1,
                       float *y)
{
    for (size_t r0 = n0; r0 < n1; r0 += GR) {
        size_t r[GR];
        float out[GR];
        tile_rows(r0, n1, GR, r);
        if (sym) gemv_8bit_sym(w, a, r, out);
        else gemv_8bit(w, a, r, out);
        for (size_t i = 0; i < GR && r0 + i < n1; i++) y[r0 + i] = out[i];
    }
}

#define GEMV_SMALL(bits)                                                                  \
    static void UK(gemv_f32_qa8_qw##bits##_1x4c32)(const qk_weights *w, const qk_acts *a, \
                                                    size_t n0, size_t n1, float *y,       \
                                                    size_t ldy)                           \
    {                                                                                     \
        (void)ldy;                                                                        \
        gemv_small(bits, w, a, n0, n1, y);                                                \
    }
GEMV_SMALL(2)
GEMV_SMALL(3)
GEMV_SMALL(4)

static void UK(gemv_f32_qa8_qw8s_1x4c32)(const qk_weights *w, const qk_acts *a, size_t n0,
                                         size_t n1, float *y, size_t ldy)
{
    (void)ldy;
    gemv_8bit_rows(1, w, a, n0, n1, y);
}

static void UK(gemv_f32_qa8_qw8a_1x4c32)(const qk_weights *w, const qk_acts *a, size_t n0,
                                         size_t n1, float *y, size_t ldy)
{
    (void)ldy;
    gemv_8bit_rows(0, w, a, n0, n1, y);
}

/* ---- the weight tile shared by the GEMM kernels ---- */

typedef struct wtile {
    /* int16 form, [block][pair of k p][half]: 8 rows x (c - z) at k = 2p, 2p+1.
     * u8 form (AUTO, codes up to 4 bits), [block][quad of k s][half]: 8 rows x
     * the codes at k = 4s .. 4s+3; zero holds the zero points. */
    __m256i w[KB][16][2];
    int32_t zero[KB][NR];
    float scale[KB][NR];         /* scale of the block's group, per row */
    int group_end[KB];           /* the block is the last of its group */
    int u8;                      /* the u8 form */
    size_t r[NR];                /* weight rows (clamped) */
    size_t base[NR];             /* r * scale_stride */
} wtile;

AI void unpack_tile_bits(int bits, int u8, const qk_weights *w, size_t b0, size_t kb, wtile *t)
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK, g_params = SIZE_MAX;
    __m256i zv[2] = { _mm256_setzero_si256(), _mm256_setzero_si256() }, zpair[2] = { zv[0], zv[1] };
    __m256 sv[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (size_t bb = 0; bb < kb; bb++) {
        size_t b = b0 + bb, g = b / bpg;
        t->group_end[bb] = (b + 1) % bpg == 0 || b + 1 == nb;
        if (g != g_params) {   /* the group's parameters, read once per group */
            g_params = g;
            for (int h = 0; h < 2; h++) {
                zv[h] = zeros8(w, t->base + 8 * h, g);
                sv[h] = scales8(w, t->base + 8 * h, g);
                /* z in both int16 halves of each row's lane */
                zpair[h] = _mm256_or_si256(zv[h], _mm256_slli_epi32(zv[h], 16));
            }
        }
        for (int h = 0; h < 2; h++) {
            __m256i lo[8], hi[8];
            _mm256_storeu_si256((__m256i *)(void *)(t->zero[bb] + 8 * h), zv[h]);
            _mm256_storeu_ps(t->scale[bb] + 8 * h, sv[h]);
            #pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                const uint8_t *row = w->codes + t->r[8 * h + c] * w->row_bytes;
                __m256i codes = unpack_block(bits, row, b);
                if (u8) {
                    lo[c] = codes;
                    continue;
                }
                lo[c] = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(codes));
                hi[c] = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(codes, 1));
            }
            transpose8(lo);
            if (!u8) transpose8(hi);
            /* after the transpose lane r is row r: c - z for its pair of k */
            #pragma GCC unroll 8
            for (int p = 0; p < 8; p++) {
                if (u8) {
                    t->w[bb][p][h] = lo[p];
                    continue;
                }
                t->w[bb][p][h] = _mm256_sub_epi16(lo[p], zpair[h]);
                t->w[bb][p + 8][h] = _mm256_sub_epi16(hi[p], zpair[h]);
            }
        }
    }
}

/* A weight tile's unpacking, one function per width and form: the u8 form
 * serves AUTO with codes of up to 4 bits (maddubs of a code <= 15 and an
 * int8 |q| <= 127 pair stays below 2^15 even summed over the 8 quads of a
 * block: 16 * 15 * 127 = 30480), and with vpdpbusd every width; the int16
 * form serves 8-bit codes without it, and COMPUTE_F32. */
typedef void (*unpack_fn)(const qk_weights *w, size_t b0, size_t kb, wtile *t);
#define UNPACK(B, U)                                                                  \
    static void unpack_##B##_##U(const qk_weights *w, size_t b0, size_t kb, wtile *t)   \
    {                                                                                 \
        t->u8 = U;                                                                    \
        unpack_tile_bits(B, U, w, b0, kb, t);                                         \
    }
UNPACK(2, 0)
UNPACK(3, 0)
UNPACK(4, 0)
UNPACK(8, 0)
UNPACK(2, 1)
UNPACK(3, 1)
UNPACK(4, 1)
#if QK_AVX_VNNI
UNPACK(8, 1)
#endif

/* The int16 form of each width, for COMPUTE_F32. */
static const unpack_fn unpack_i16[9] = { [2] = unpack_2_0, [3] = unpack_3_0, [4] = unpack_4_0,
                                         [8] = unpack_8_0 };

/* Per (row of x, column) float state across the blocks of a tile column:
 * the running group sum and the output. */
typedef struct fstate {
    __m256 ga[MC][2], y[MC][2];
} fstate;

AI void block_finish(fstate *f, const wtile *t, size_t bb, size_t ii, int h, __m256 blockv)
{
    f->ga[ii][h] = _mm256_add_ps(f->ga[ii][h], blockv);
    if (t->group_end[bb]) {
        f->y[ii][h] = _mm256_add_ps(f->y[ii][h],
                                    _mm256_mul_ps(_mm256_loadu_ps(t->scale[bb] + 8 * h),
                                                  f->ga[ii][h]));
        f->ga[ii][h] = _mm256_setzero_ps();
    }
}

/* acc plus 4 codes times 4 int8 per lane: int16 pairs by maddubs, or
 * int32 by vpdpbusd. */
AI __m256i u8_step(__m256i acc, __m256i w, __m256i xb)
{
#if QK_AVX_VNNI
    return DPBUSD(acc, w, xb);
#else
    return _mm256_add_epi16(_mm256_maddubs_epi16(w, xb), acc);
#endif
}

/* One step s of the 4 x 16 register tile for x row i: 4 int8 (or 2 int16)
 * of the row broadcast against the tile's two weight vectors. */
#define TILE_STEP(i, a0, a1)                                                       \
    do {                                                                           \
        int32_t v;                                                                 \
        if (i16)                                                                   \
            memcpy(&v, x16[i] + off + 2 * s, 4);                                   \
        else                                                                       \
            memcpy(&v, x8[i] + off + 4 * s, 4);                                    \
        __m256i xb = _mm256_set1_epi32(v);                                         \
        if (i16) {                                                                 \
            a0 = _mm256_add_epi32(_mm256_madd_epi16(w0, xb), a0);                  \
            a1 = _mm256_add_epi32(_mm256_madd_epi16(w1, xb), a1);                  \
        } else {                                                                   \
            a0 = u8_step(a0, w0, xb);                                              \
            a1 = u8_step(a1, w1, xb);                                              \
        }                                                                          \
    } while (0)

/* The register tile of the u8 and int16 GEMM kernels over block bb: MR
 * rows of x (x8 or x16, the block starting off elements in) times 16
 * weight rows.
 * u8 (i16 = 0): 8 steps of 4 k, maddubs, int16 sums; int16: 16 steps of 2
 * k, pmaddwd, int32 sums. Named accumulators pinned to registers: as an
 * array GCC stores and reloads them every step. */
AI void tile_4x16(int i16, const wtile *t, size_t bb, const int8_t *const x8[MR],
                    const int16_t *const x16[MR], size_t off, __m256i acc[MR][2])
{
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00,
            a21 = a00, a30 = a00, a31 = a00;
#define TILE_STEPS                                                                 \
    do {                                                                           \
        __m256i w0 = t->w[bb][s][0], w1 = t->w[bb][s][1];                          \
        TILE_STEP(0, a00, a01);                                                    \
        TILE_STEP(1, a10, a11);                                                    \
        TILE_STEP(2, a20, a21);                                                    \
        TILE_STEP(3, a30, a31);                                                    \
        __asm__("" : "+x"(a00), "+x"(a01), "+x"(a10), "+x"(a11), "+x"(a20), "+x"(a21), \
                "+x"(a30), "+x"(a31));                                             \
    } while (0)
    if (i16) {
        #pragma GCC unroll 16
        for (int s = 0; s < 16; s++) TILE_STEPS;
    } else {
        #pragma GCC unroll 8
        for (int s = 0; s < 8; s++) TILE_STEPS;
    }
#undef TILE_STEPS
    acc[0][0] = a00, acc[0][1] = a01, acc[1][0] = a10, acc[1][1] = a11;
    acc[2][0] = a20, acc[2][1] = a21, acc[3][0] = a30, acc[3][1] = a31;
}

/* u8i8_dot_gemm_ukernel_4x16c4__avx2: one block, MR rows x 16 columns, codes
 * times int8 x with maddubs, int16 sums over the block, then the zero point
 * taken off with the block sums of x (one exact fused multiply-add). */
static void gemm_u8_ukernel(const wtile *t, size_t bb, const int8_t *q[MR], const int32_t *sum[MR],
                            const float *d[MR], fstate *f, size_t ii0)
{
    __m256i acc[MR][2];
    tile_4x16(0, t, bb, q, NULL, bb * QK_BLOCK, acc);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 zf[2];
    for (int h = 0; h < 2; h++)
        zf[h] = _mm256_cvtepi32_ps(
            _mm256_loadu_si256((const __m256i *)(const void *)(t->zero[bb] + 8 * h)));
    #pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        __m256 dv = _mm256_set1_ps(d[i][bb]);
        __m256 sv = _mm256_set1_ps((float)sum[i][bb]);
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            /* c q summed less z times the sum of q: integers below 2^24,
             * so the fused form is exact, the int32 difference as a float */
            __m256i cq = QK_AVX_VNNI ? acc[i][h] : _mm256_madd_epi16(acc[i][h], ones);
            __m256 dot = _mm256_fnmadd_ps(zf[h], sv, _mm256_cvtepi32_ps(cq));
            block_finish(f, t, bb, ii0 + (size_t)i, h, _mm256_mul_ps(dv, dot));
        }
    }
}

/* i16i16_dot_gemm_ukernel_4x16c2__avx2: one block, MR rows x 16 columns. */
static void gemm_q8_ukernel(const wtile *t, size_t bb, const int16_t *x16[MR],
                            const float *d[MR], fstate *f, size_t ii0)
{
    __m256i acc[MR][2];
    tile_4x16(1, t, bb, NULL, x16, bb * QK_BLOCK, acc);
    #pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        __m256 dv = _mm256_set1_ps(d[i][bb]);
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++)
            block_finish(f, t, bb, ii0 + (size_t)i, h,
                         _mm256_mul_ps(dv, _mm256_cvtepi32_ps(acc[i][h])));
    }
}

/* f32_gemm_ukernel_{4,1}x16__avx2: one block; x rows in fp32. */
AI void gemm_f32_ukernel(int mr, const wtile *t, size_t bb, const float *x[MR], fstate *f,
                         size_t ii0)
{
    __m256 acc[MR][2];
    #pragma GCC unroll 8
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    #pragma GCC unroll 2
    for (int p = 0; p < 16; p++) {
        __m256 we[2], wo[2];
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            __m256i v = t->w[bb][p][h];
            we[h] = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(v, 16), 16));
            wo[h] = _mm256_cvtepi32_ps(_mm256_srai_epi32(v, 16));
        }
        #pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m256 xe = _mm256_broadcast_ss(x[i] + bb * QK_BLOCK + 2 * p);
            __m256 xo = _mm256_broadcast_ss(x[i] + bb * QK_BLOCK + 2 * p + 1);
            #pragma GCC unroll 8
            for (int h = 0; h < 2; h++) {
                acc[i][h] = _mm256_add_ps(acc[i][h], _mm256_mul_ps(xe, we[h]));
                acc[i][h] = _mm256_add_ps(acc[i][h], _mm256_mul_ps(xo, wo[h]));
            }
        }
    }
    #pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) block_finish(f, t, bb, ii0 + (size_t)i, h, acc[i][h]);
}

/* The operands of one GEMM call. */
typedef struct gemm_args {
    const qk_weights *w;
    const qk_acts *a;            /* AUTO */
    const float *x;              /* F32 */
    size_t ldx, m;
    float *y;
    size_t ldy;
} gemm_args;

static void rows_clamped(size_t i0, size_t m, size_t count, size_t *ri)
{
    for (size_t i = 0; i < count; i++) ri[i] = i0 + i < m ? i0 + i : m - 1;
}

/* The codes of the tile after this one, fetched while this one computes, a
 * share per 4-row tile of x: the unpack would otherwise wait on 16 rows of
 * short streams at once. */
typedef struct tile_fetch {
    const uint8_t *row[NR];      /* the next tile's first byte in each row; NULL: none */
    size_t lines;                /* its cache lines per row */
} tile_fetch;

static void fetch_share(const tile_fetch *nf, size_t part, size_t parts)
{
    if (!nf->row[0]) return;
    size_t total = NR * nf->lines, l0 = total * part / parts, l1 = total * (part + 1) / parts;
    for (size_t l = l0; l < l1; l++)
        _mm_prefetch((const char *)(nf->row[l % NR] + l / NR * 64), _MM_HINT_T0);
}

/* The tile after (r0, b0) within columns [n0, n1): the next span of k, or
 * the next 16 columns from k = 0. */
static void plan_fetch(const qk_weights *w, size_t r0, size_t b0, size_t n1, tile_fetch *nf)
{
    size_t nb = n_blocks(w), r[NR];
    if (b0 + KB < nb) {
        b0 += KB;
    } else if (r0 + NR < n1) {
        b0 = 0;
        r0 += NR;
    } else {
        nf->row[0] = NULL;
        return;
    }
    size_t kb = nb - b0 < KB ? nb - b0 : KB;
    tile_rows(r0, n1, NR, r);
    for (int c = 0; c < NR; c++)
        nf->row[c] = w->codes + r[c] * w->row_bytes + b0 * QK_BLOCK * (size_t)w->bits / 8;
    nf->lines = (kb * QK_BLOCK * (size_t)w->bits / 8 + 63) / 64;
}

/* Blocks b0 .. b0+kb-1 of the tile for rows [i0, i1) of x. */
static void gemm_tile_rows(const gemm_args *g, const wtile *t, size_t b0, size_t kb, size_t i0,
                           size_t i1, fstate *f, const tile_fetch *nf)
{
    size_t nbk = g->w->kp / QK_BLOCK, parts = (i1 - i0 + MR - 1) / MR;
    if (!g->a && i1 - i0 == 1) {
        const float *x[MR] = { g->x + i0 * g->ldx + b0 * QK_BLOCK };
        fetch_share(nf, 0, 1);
        for (size_t bb = 0; bb < kb; bb++) gemm_f32_ukernel(1, t, bb, x, f, 0);
        return;
    }
    for (size_t i = i0; i < i1; i += MR) {
        size_t ri[MR];
        rows_clamped(i, i1, MR, ri);
        fetch_share(nf, (i - i0) / MR, parts);
        if (g->a && t->u8) {
            const int8_t *q[MR];
            const int32_t *sum[MR];
            const float *d[MR];
            for (int r = 0; r < MR; r++) {
                q[r] = g->a->q + ri[r] * g->a->kp + b0 * QK_BLOCK;
                sum[r] = g->a->sum + ri[r] * nbk + b0;
                d[r] = g->a->d + ri[r] * nbk + b0;
            }
            for (size_t bb = 0; bb < kb; bb++) gemm_u8_ukernel(t, bb, q, sum, d, f, i - i0);
        } else if (g->a) {
            const int16_t *x16[MR];
            const float *d[MR];
            for (int r = 0; r < MR; r++) {
                x16[r] = g->a->q16 + ri[r] * g->a->kp + b0 * QK_BLOCK;
                d[r] = g->a->d + ri[r] * nbk + b0;
            }
            for (size_t bb = 0; bb < kb; bb++) gemm_q8_ukernel(t, bb, x16, d, f, i - i0);
        } else {
            const float *x[MR];
            for (int r = 0; r < MR; r++) x[r] = g->x + ri[r] * g->ldx + b0 * QK_BLOCK;
            for (size_t bb = 0; bb < kb; bb++) gemm_f32_ukernel(MR, t, bb, x, f, i - i0);
        }
    }
}

static void gemm_tiles(const gemm_args *g, unpack_fn unpack, size_t n0, size_t n1)
{
    const qk_weights *w = g->w;
    size_t nb = n_blocks(w);
    wtile t;
    fstate f;
    tile_fetch nf;
    for (size_t i0 = 0; i0 < g->m; i0 += MC) {
        size_t i1 = g->m - i0 < MC ? g->m : i0 + MC;
        for (size_t r0 = n0; r0 < n1; r0 += NR) {
            tile_rows(r0, n1, NR, t.r);
            param_base8(w, t.r, t.base);
            param_base8(w, t.r + 8, t.base + 8);
            memset(&f, 0, sizeof f);
            for (size_t b0 = 0; b0 < nb; b0 += KB) {
                size_t kb = nb - b0 < KB ? nb - b0 : KB;
                unpack(w, b0, kb, &t);
                plan_fetch(w, r0, b0, n1, &nf);
                gemm_tile_rows(g, &t, b0, kb, i0, i1, &f, &nf);
            }
            size_t nr = n1 - r0 < NR ? n1 - r0 : NR;
            for (size_t i = i0; i < i1; i++) {
                float *yr = g->y + i * g->ldy + r0;
                if (nr == NR) {
                    _mm256_storeu_ps(yr, f.y[i - i0][0]);
                    _mm256_storeu_ps(yr + 8, f.y[i - i0][1]);
                    continue;
                }
                float out[NR];
                _mm256_storeu_ps(out, f.y[i - i0][0]);
                _mm256_storeu_ps(out + 8, f.y[i - i0][1]);
                memcpy(yr, out, nr * sizeof(float));
            }
        }
    }
}

#define GEMM_Q8(B, U, TILE)                                                            \
    static void UK(gemm_f32_qa8_qw##B##_##TILE)(const qk_weights *w, const qk_acts *a,  \
                                                size_t n0, size_t n1, float *y,         \
                                                size_t ldy)                             \
    {                                                                                   \
        gemm_args g = { w, a, NULL, 0, a->m, y, ldy };                                  \
        if (n0 < n1) gemm_tiles(&g, unpack_##B##_##U, n0, n1);                          \
    }
GEMM_Q8(2, 1, 4x16c4)
GEMM_Q8(3, 1, 4x16c4)
GEMM_Q8(4, 1, 4x16c4)
#if QK_AVX_VNNI
GEMM_Q8(8, 1, 4x16c4)
#else
GEMM_Q8(8, 0, 4x16c2)
#endif

static void UK(gemm_f32_f32_qw_4x16c2)(const qk_weights *w, const float *x, size_t ldx, size_t m,
                                       size_t n0, size_t n1, float *y, size_t ldy)
{
    gemm_args g = { w, NULL, x, ldx, m, y, ldy };
    if (n0 < n1) gemm_tiles(&g, unpack_i16[w->bits], n0, n1);
}

static void avx2_dequant_row(const qk_weights *w, size_t r, float *out)
{
    const uint8_t *row = w->codes + r * w->row_bytes;
    size_t nb = n_blocks(w);
    for (size_t b = 0; b < nb; b++) {
        size_t g = b * QK_BLOCK / w->group;
        __m256 s = _mm256_set1_ps(_cvtsh_ss(w->scales[r * w->scale_stride + g]));
        __m256i z = _mm256_set1_epi32(qk_zero(w, r, g));
        uint8_t c[QK_BLOCK];
        _mm256_storeu_si256((__m256i *)(void *)c, unpack_block(w->bits, row, b));
        float v[QK_BLOCK];
        for (int t = 0; t < 4; t++) {
            __m256i c8 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(c + 8 * t)));
            __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(c8, z));
            _mm256_storeu_ps(v + 8 * t, _mm256_mul_ps(s, f));
        }
        size_t n = w->k - b * QK_BLOCK < QK_BLOCK ? w->k - b * QK_BLOCK : QK_BLOCK;
        memcpy(out + b * QK_BLOCK, v, n * sizeof(float));
    }
}

/* ---- fp16 weights (NONE tensors) ---- */

AI __m256 load_h8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* gemv_f32_f32_f16_1x4c16: four rows at once, 8 lanes x 2 per row
 * (columns 16t .. 16t+7 and 16t+8 .. 16t+15), fused multiply-adds; the last
 * k mod 8 columns through a zero-padded copy; lanes summed once per row. */
static void UK(gemv_f32_f32_f16_1x4c16)(const uint16_t *w, size_t k, const float *x, size_t n0,
                                        size_t n1, float *y)
{
    size_t k16 = k / 16 * 16, k8 = k / 8 * 8;
    uint16_t ht[GR][8];
    float xt[8] = { 0 };
    memcpy(xt, x + k8, (k - k8) * sizeof(float));
    for (size_t r0 = n0; r0 < n1; r0 += GR) {
        size_t r[GR];
        tile_rows(r0, n1, GR, r);
        const uint16_t *row[GR];
        __m256 a[GR][2];
        for (int i = 0; i < GR; i++) {
            row[i] = w + r[i] * k;
            a[i][0] = a[i][1] = _mm256_setzero_ps();
        }
        for (size_t j = 0; j < k16; j += 16) {
            __m256 x0 = _mm256_loadu_ps(x + j), x1 = _mm256_loadu_ps(x + j + 8);
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                a[i][0] = _mm256_fmadd_ps(load_h8(row[i] + j), x0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(load_h8(row[i] + j + 8), x1, a[i][1]);
            }
        }
        if (k8 > k16) {
            __m256 x0 = _mm256_loadu_ps(x + k16);
            for (int i = 0; i < GR; i++) a[i][0] = _mm256_fmadd_ps(load_h8(row[i] + k16), x0, a[i][0]);
        }
        if (k > k8) {
            __m256 x0 = _mm256_loadu_ps(xt);
            for (int i = 0; i < GR; i++) {
                memset(ht[i], 0, sizeof ht[i]);
                memcpy(ht[i], row[i] + k8, (k - k8) * sizeof(uint16_t));
                a[i][1] = _mm256_fmadd_ps(load_h8(ht[i]), x0, a[i][1]);
            }
        }
        for (size_t i = 0; i < GR && r0 + i < n1; i++)
            y[r0 + i] = hsum8(_mm256_add_ps(a[i][0], a[i][1]));
    }
}

static void avx2_f16_to_f32(const uint16_t *h, size_t count, float *out)
{
    size_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(out + i, load_h8(h + i));
    for (; i < count; i++) out[i] = _cvtsh_ss(h[i]);
}

#define Q8_ENTRY(name, widths, sym, mr, nr, kr, order, q16) \
    { UK_NAME(name), widths, sym, mr, nr, kr, order, q16, UK(name), 0, 0 }

/* The GEMVs sum the exact integer products in eight lanes per row: their
 * own order. The GEMMs keep the scalar reference's operations. */
static const qk_q8_ukernel gemv_table[] = {
    Q8_ENTRY(gemv_f32_qa8_qw4_1x4c32, QK_W(4), QK_SYM | QK_ASYM, 1, 4, 32, QK_ORDER_OWN, 0),
    Q8_ENTRY(gemv_f32_qa8_qw2_1x4c32, QK_W(2), QK_SYM | QK_ASYM, 1, 4, 32, QK_ORDER_OWN, 0),
    Q8_ENTRY(gemv_f32_qa8_qw3_1x4c32, QK_W(3), QK_SYM | QK_ASYM, 1, 4, 32, QK_ORDER_OWN, 0),
    Q8_ENTRY(gemv_f32_qa8_qw8s_1x4c32, QK_W(8), QK_SYM, 1, 4, 32, QK_ORDER_OWN, 0),
    Q8_ENTRY(gemv_f32_qa8_qw8a_1x4c32, QK_W(8), QK_ASYM, 1, 4, 32, QK_ORDER_OWN, 0),
};

static const qk_q8_ukernel gemm_table[] = {
    Q8_ENTRY(gemm_f32_qa8_qw4_4x16c4, QK_W(4), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR, 0),
    Q8_ENTRY(gemm_f32_qa8_qw2_4x16c4, QK_W(2), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR, 0),
    Q8_ENTRY(gemm_f32_qa8_qw3_4x16c4, QK_W(3), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR, 0),
#if QK_AVX_VNNI
    Q8_ENTRY(gemm_f32_qa8_qw8_4x16c4, QK_W(8), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR, 0),
#else
    Q8_ENTRY(gemm_f32_qa8_qw8_4x16c2, QK_W(8), QK_SYM | QK_ASYM, MR, NR, 2, QK_ORDER_SCALAR, 1),
#endif
};

const qlib_kernels AVX2_TABLE = {
    .isa = AVX2_NAME, .needs = QK_CPU_AVX2 | QK_CPU_FMA | QK_CPU_F16C | AVX2_NEEDS,
    .same_bits_as = AVX2_SAME_BITS_AS,
    .quantize_row = avx2_quantize_row, .prepare_row = avx2_prepare_row,
    .gemv = gemv_table, .n_gemv = sizeof gemv_table / sizeof gemv_table[0],
    .gemm = gemm_table, .n_gemm = sizeof gemm_table / sizeof gemm_table[0],
    .gemm_f32 = { UK_NAME(gemm_f32_f32_qw_4x16c2), MR, NR, QK_ORDER_SCALAR,
                  UK(gemm_f32_f32_qw_4x16c2) },
    .dequant_row = avx2_dequant_row, .f16_to_f32 = avx2_f16_to_f32,
    .gemv_f16 = { UK_NAME(gemv_f32_f32_f16_1x4c16), GR, QK_ORDER_OWN,
                  UK(gemv_f32_f32_f16_1x4c16) },
};
