/* AVX-512 kernels: 512-bit registers, AVX512F + BW + VL + VNNI (this unit
 * alone is compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni, and
 * -mfma -mf16c for the 256-bit forms of those; it is used only when CPUID
 * reports all of them and the OS saves the opmask and ZMM state, XCR0 bits
 * 5 to 7). Intel from Ice Lake and Cascade Lake server parts, AMD from
 * Zen 4. No VBMI: not every AVX-512 CPU has it.
 *
 * The AUTO microkernels (kernels.h names them; suffix avx512):
 *
 *   gemv_f32_qa8_qw{2,3,4,8}_1x4c64: M = 1. Four weight rows at a time; a
 *     row's codes are multiplied with x by vpdpbusd straight from their
 *     packed bytes (unsigned codes times int8 q), 64 codes per instruction,
 *     into int32 lanes of 4 (2-bit: 16) columns of one block. The lanes
 *     are converted to fp32 and z times the lane's sum of q taken off (one
 *     exact fused multiply-add: both are integers below 2^24). Where every
 *     register of codes lies in one group (4-bit groups a multiple of 128,
 *     8-bit of 64, or one group a row) the lanes are summed times each
 *     block's d per group and times s at its end; otherwise each block's
 *     s d and z come from a table made per row and 16 blocks. x is laid
 *     out once per call to match the packed codes (the 4-bit pairs of
 *     blocks in one byte, the 2-bit octets), in spans of SPAN codes; each
 *     row's lanes are summed once per span. For 4-bit codes with small
 *     groups the lanes of 8 blocks are first reduced exactly to two per
 *     block (int16 packs and vpmaddwd), so the float steps run once per 8
 *     blocks. The codes and group parameters some rows ahead are
 *     prefetched into L2. Own order: it depends only on the row and K, so
 *     any split of rows gives the same bits.
 *   gemm_f32_qa8_qw{2,3,4,8}_4x32c4: M > 1. Up to SMALL_M rows of x: per
 *     16 columns, each block (pair, for 4-bit) of 16 weight rows is
 *     transposed into registers and multiplied with every row of x at
 *     once, group sums and outputs in registers for M <= 4, so each block
 *     is unpacked once for all rows of x and nothing else is stored. More
 *     rows: a tile of 32 weight rows by KB_WS blocks (KB_STACK without
 *     a workspace) is unpacked once into u8 quads of k, 16 rows per register
 *     (a 16 x 8 dword transpose of the packed bytes), and reused by every
 *     row of x in a panel of MC; 4 rows of x by 32 columns in registers,
 *     x broadcast four int8 at a time (embedded broadcast). The zero point
 *     goes into the codes: an asymmetric code c of up to 4 bits is stored
 *     as c - z + 2^bits (1 .. 2^(bits+1) - 1), a symmetric one as c, and
 *     the accumulator starts at -off times the block's sum of q (off =
 *     2^bits, or 2^(bits-1) when symmetric), so after the block it holds
 *     the exact sum of (c - z) q without an extra multiply per column.
 *     8-bit asymmetric codes keep c and take z times the sum off in fp32,
 *     exactly. Then the scalar reference's float operations, in its order,
 *     vectorised across columns: the same bits as scalar.c.
 *   gemm_f32_f32_qw_4x32c1: COMPUTE_F32, the GEMM's tile with the
 *     scalar reference's multiplies and adds in k order, 16 columns per
 *     register.
 *   gemv_f32_f32_f16_1x4c32: fp16 weights (NONE tensors), M = 1. */
#include <float.h>
#include <immintrin.h>
#include <string.h>

#include "kernels.h"

#define AI __attribute__((always_inline)) static inline

static size_t n_blocks(const qk_weights *w) { return (w->k + QK_BLOCK - 1) / QK_BLOCK; }

/* Rows r0 .. r0+count-1, the ones past n1 repeating the last (their results
 * are computed the same way and dropped). */
static void tile_rows(size_t r0, size_t n1, size_t count, size_t *r)
{
    for (size_t t = 0; t < count; t++) r[t] = r0 + t < n1 ? r0 + t : n1 - 1;
}

/* A mask of the first count (<= 64) bytes. */
AI __mmask64 bytes_mask(size_t count)
{
    return count >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << count) - 1);
}

/* The 64 bytes at p, those from p + avail on read as zero (and not read). */
AI __m512i load_upto(const uint8_t *p, size_t avail)
{
    if (avail >= 64) return _mm512_loadu_si512((const void *)p);
    return _mm512_maskz_loadu_epi8(bytes_mask(avail), (const void *)p);
}

/* The high 8 lanes of v; a and b as one register (AVX512F only: the
 * 32-bit-lane forms are AVX512DQ). */
AI __m256 high8(__m512 v)
{
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

AI __m512 join8(__m256 a, __m256 b)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(a)),
                                               _mm256_castps_pd(b), 1));
}

/* The sum of the 16 lanes, in one fixed order. */
AI float hsum16(__m512 v)
{
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), high8(v));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- activations ---- */

/* x'[j0 .. j0+15] of the mapped row (qk_xmap). */
AI __m512 map_x16(const qk_xmap *map, const float *x, size_t j0)
{
    if (j0 + 16 <= map->k && !map->perm && !map->drop) {
        __m512 v = _mm512_loadu_ps(x + j0);
        return map->scale ? _mm512_mul_ps(v, _mm512_loadu_ps(map->scale + j0)) : v;
    }
    float t[16];
    for (size_t j = 0; j < 16; j++) t[j] = qk_map_x(map, x, j0 + j);
    return _mm512_loadu_ps(t);
}

static void avx512_prepare_row(const qk_xmap *map, const float *x, float *out)
{
    for (size_t j = 0; j < map->kp; j += 16) _mm512_storeu_ps(out + j, map_x16(map, x, j));
}

/* scalar.c's quantization, vectorised: the largest |x'| of each block of
 * 32, 127 / it, x' times that rounded to nearest even (vcvtps2dq under the
 * default rounding, as nearbyintf), clamped to +-127. */
static void avx512_quantize_row(const qk_xmap *map, const float *x, int8_t *q, float *d,
                                int32_t *sum)
{
    for (size_t b = 0; b < map->kp / QK_BLOCK; b++) {
        __m512 v0 = map_x16(map, x, b * QK_BLOCK), v1 = map_x16(map, x, b * QK_BLOCK + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float inv1 = amax > 0.0f ? 127.0f / amax : 0.0f;
        if (inv1 > FLT_MAX) inv1 = amax = 0.0f;  /* as scalar.c: a block below 127/FLT_MAX is zero */
        __m512 inv = _mm512_set1_ps(inv1);
        const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv));
        q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
        q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
        _mm_storeu_si128((__m128i *)(void *)(q + b * QK_BLOCK), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(void *)(q + b * QK_BLOCK + 16), _mm512_cvtepi32_epi8(q1));
        d[b] = amax / 127.0f;
        sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
    }
}

/* ---- group parameters ---- */

/* Bytes in w's zero-point stream (docs/FORMAT.md), the padding byte included. */
static size_t zero_bytes(const qk_weights *w)
{
    size_t entries = w->scale_stride ? w->n * w->n_groups : 1;
    return (entries * (size_t)w->bits + 7) / 8 + 1;
}

/* The zero points of entries e .. e+count-1 (count <= 16; 0 beyond), as
 * int32 lanes. */
AI __m512i zeros16(const qk_weights *w, size_t e, size_t count)
{
    if (w->symmetric) return _mm512_set1_epi32(1 << (w->bits - 1));
    __mmask16 keep = (__mmask16)((1u << count) - 1u);
    if (w->bits == 8) {
        size_t avail = zero_bytes(w) - e;
        __m128i b = _mm_maskz_loadu_epi8((__mmask16)((1u << (avail < count ? avail : count)) - 1u),
                                         (const void *)(w->zeros + e));
        return _mm512_maskz_mov_epi32(keep, _mm512_cvtepu8_epi32(b));
    }
    if (w->bits == 4) {
        /* nibble j of the run starting at nibble e: byte (o + j) / 2, its
         * high half when o + j is odd (o = e & 1) */
        size_t o = e & 1, first = e / 2, need = (o + count + 1) / 2;
        __m128i b;
        if (first + 9 <= zero_bytes(w)) {
            b = _mm_loadu_si64((const void *)(w->zeros + first));
            b = _mm_insert_epi8(b, w->zeros[first + 8], 8);
        } else {
            size_t avail = zero_bytes(w) - first;
            b = _mm_maskz_loadu_epi8((__mmask16)((1u << (avail < need ? avail : need)) - 1u),
                                     (const void *)(w->zeros + first));
        }
        const __m128i pick0 = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        const __m128i pick1 = _mm_setr_epi8(0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8);
        __m512i v = _mm512_cvtepu8_epi32(_mm_shuffle_epi8(b, o ? pick1 : pick0));
        const __m512i sh0 = _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
        const __m512i sh1 = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
        v = _mm512_and_si512(_mm512_srlv_epi32(v, o ? sh1 : sh0), _mm512_set1_epi32(15));
        return count == 16 ? v : _mm512_maskz_mov_epi32(keep, v);
    }
    int32_t z[16] = { 0 };
    for (size_t j = 0; j < count; j++) {
        size_t bit = (e + j) * (size_t)w->bits;
        unsigned v = (unsigned)w->zeros[bit >> 3] | (unsigned)w->zeros[(bit >> 3) + 1] << 8;
        z[j] = (int32_t)((v >> (bit & 7)) & ((1u << w->bits) - 1u));
    }
    return _mm512_loadu_si512((const void *)z);
}

/* The group parameters from entry e on, a few rows ahead of where they are
 * read, fetched into L2 with the codes (small groups read them every 512
 * codes: otherwise each row adds two streams the prefetcher lags on). */
AI void params_prefetch(const qk_weights *w, size_t e)
{
    if (!w->scale_stride) return;
    _mm_prefetch((const char *)(w->scales + e), _MM_HINT_T1);
    if (!w->symmetric) _mm_prefetch((const char *)(w->zeros + e * (size_t)w->bits / 8), _MM_HINT_T1);
}

/* The fp16 scales of entries e .. e+count-1 (count <= 16; 0 beyond). */
AI __m512 scales16(const qk_weights *w, size_t e, size_t count)
{
    __m256i h = count == 16 ? _mm256_loadu_si256((const __m256i *)(const void *)(w->scales + e))
                            : _mm256_maskz_loadu_epi16((__mmask16)((1u << count) - 1u),
                                                       (const void *)(w->scales + e));
    return _mm512_cvtph_ps(h);
}

/* ---- GEMV, AUTO mode (M = 1) ---- */

#define GR 4                 /* weight rows per GEMV tile */
/* The codes PF_TILES tiles ahead are prefetched into L2 (not L1: with four
 * interleaved row streams the L1 miss buffers, not DRAM, were the limit:
 * 11-12 GB/s from memory with T0 against 18-23 GB/s with T1 on a Zen 4
 * host, the same speed in cache). */
#define PF_TILES 4
#define PF_HINT _MM_HINT_T1
/* Codes of x laid out at once (a multiple of 512). A row longer than a span
 * is read in slices, one pass over the task's rows per span, and the rows
 * at the start of each pass come unprefetched (docs/PERFORMANCE.md,
 * "Kernels"). 16384 codes (LLaMA's 11008 and 14336 in one span) make x's
 * layout 60 KiB of stack. */
#define SPAN 16384
#define SPAN_BLOCKS (SPAN / QK_BLOCK)

/* The chunk of blocks [c0, c0 + 16): for each block, its group's offset
 * from c0's group (clamped to the row's last group). */
typedef struct chunk_map {
    __m512i gmap;
    size_t g0, count;            /* first group, groups to read */
    int identity;                /* gmap is 0, 1, ..., 15 */
} chunk_map;

/* x for one span of blocks [b0, b0 + nbs), laid out as the codes are:
 * qa holds the q each code register is multiplied with, qs each int32
 * lane's sum of q (as fp32 for the kernels with parameters per block, as
 * int32 for the whole-group ones) and dl its block's scale d (as fp32).
 * 4-bit: per 64 bytes of codes (blocks 4t .. 4t+3), the low nibbles hold
 * blocks 4t and 4t+2, the high ones 4t+1 and 4t+3. 8 and 3 bits: two blocks per
 * register, in order. 2-bit: per 64 bytes (8 blocks), four registers, one
 * per bit pair: register j holds octet j (codes 8j .. 8j+7) of each of the
 * 8 blocks. */
typedef struct gemv_x {
    _Alignas(64) int8_t qa[SPAN];
    union {
        _Alignas(64) float f[SPAN / 4];
        _Alignas(64) int32_t i[SPAN / 4];
    } qs;
    _Alignas(64) float dl[SPAN / 4];
    /* 4-bit, parameters per block: per 8 blocks, the lanes' sums of q and
     * their blocks' d after the lanes are reduced (reduce_lanes) */
    _Alignas(64) float rqs[SPAN / 16];
    _Alignas(64) float rdl[SPAN / 16];
    chunk_map cm[SPAN_BLOCKS / 16];
} gemv_x;

/* 4-bit, per 8 blocks (two registers of codes, each giving a low-nibble
 * and a high-nibble register of lanes: A1 holds blocks 0 and 2 in its
 * low and high 8 int32 lanes, B1 blocks 1 and 3, A2 and B2 blocks 4 to
 * 7): the lanes of each block added pairwise, exactly, down to 2 per
 * block, in the order REDUCED_BLOCK gives. A lane of codes below 16 times
 * q holds at most 4 * 15 * 127 = 7620 in magnitude and a pair of them
 * 15240, so each level packs two registers to int16 without saturating
 * and adds neighbours with vpmaddwd. */
AI __m512i pair_sums(__m512i a, __m512i b)
{
    return _mm512_madd_epi16(_mm512_packs_epi32(a, b), _mm512_set1_epi16(1));
}

AI __m512i reduce_lanes(__m512i a1, __m512i b1, __m512i a2, __m512i b2)
{
    return pair_sums(pair_sums(a1, b1), pair_sums(a2, b2));
}

/* The block (0 .. 7) of each lane of reduce_lanes' result: per 128-bit
 * lane L, the packs take four lanes of each input (lanes 4L .. 4L+3), so
 * the first level gives blocks (0, 0, 1, 1) in L = 0, 1 and (2, 2, 3, 3)
 * in L = 2, 3 (from A1, B1; 4 .. 7 from A2, B2), the second one lane per
 * pair of those. */
static const int32_t reduced_block[16] = { 0, 1, 4, 5, 0, 1, 4, 5, 2, 3, 6, 7, 2, 3, 6, 7 };

/* q of block b (32 bytes), zero past the row's blocks. */
AI __m256i q_block(const qk_acts *a, size_t b)
{
    if (b >= a->kp / QK_BLOCK) return _mm256_setzero_si256();
    return _mm256_loadu_si256((const __m256i *)(const void *)(a->q + 32 * b));
}

/* d of blocks b (lanes 0-7) and b2 (lanes 8-15), 0 past the row's blocks. */
AI __m512 d_pair(const qk_acts *a, size_t b, size_t b2)
{
    size_t kb = a->kp / QK_BLOCK;
    return join8(_mm256_set1_ps(b < kb ? a->d[b] : 0.0f), _mm256_set1_ps(b2 < kb ? a->d[b2] : 0.0f));
}

/* The int32 lane sums of q (four bytes each) of v: at most 508 in
 * magnitude. */
AI __m512i lane_qsum_i(__m512i v)
{
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), v);
}

/* The same as fp32: exact. */
AI __m512 lane_qsum(__m512i v)
{
    return _mm512_cvtepi32_ps(lane_qsum_i(v));
}

static void chunk_map_make(const qk_weights *w, size_t c0, chunk_map *cm)
{
    size_t bpg = w->group / QK_BLOCK, last = w->n_groups - 1;
    size_t g = c0 / bpg, left = bpg - c0 % bpg;   /* the group of block c0, its blocks from c0 */
    cm->g0 = g < last ? g : last;
    int32_t m[16];
    for (size_t j = 0; j < 16; j++) {
        m[j] = (int32_t)((g < last ? g : last) - cm->g0);
        if (--left == 0) {
            g++;
            left = bpg;
        }
    }
    cm->count = (size_t)m[15] + 1;
    cm->gmap = _mm512_loadu_si512((const void *)m);
    cm->identity = bpg == 1 && cm->g0 + 16 <= w->n_groups;
}

/* blocks: the kernel takes parameters per block (reduced 4-bit lanes,
 * chunk maps); else per group. */
static void gemv_x_layout(int bits, const qk_weights *w, const qk_acts *a, size_t b0, size_t nbs,
                          int blocks, gemv_x *gx)
{
    if (bits == 4) {
        for (size_t t = 0; t < (nbs + 3) / 4; t++) {
            size_t b = b0 + 4 * t;
            __m512i lo = _mm512_inserti64x4(_mm512_castsi256_si512(q_block(a, b)), q_block(a, b + 2), 1);
            __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(q_block(a, b + 1)), q_block(a, b + 3), 1);
            _mm512_store_si512((void *)(gx->qa + 128 * t), lo);
            _mm512_store_si512((void *)(gx->qa + 128 * t + 64), hi);
            if (!blocks) {   /* the per-block kernel reads rqs instead */
                _mm512_store_si512((void *)(gx->qs.i + 32 * t), lane_qsum_i(lo));
                _mm512_store_si512((void *)(gx->qs.i + 32 * t + 16), lane_qsum_i(hi));
            }
            _mm512_store_ps(gx->dl + 32 * t, d_pair(a, b, b + 2));
            _mm512_store_ps(gx->dl + 32 * t + 16, d_pair(a, b + 1, b + 3));
        }
        const __m512i ones = _mm512_set1_epi8(1), lb = _mm512_loadu_si512((const void *)reduced_block);
        size_t kb = a->kp / QK_BLOCK;
        for (size_t u = 0; blocks && u < (nbs + 7) / 8; u++) {
            __m512i s4[4];
            for (int j = 0; j < 4; j++)
                s4[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones,
                                            _mm512_load_si512((const void *)(gx->qa + 256 * u + 64 * j)));
            _mm512_store_ps(gx->rqs + 16 * u, _mm512_cvtepi32_ps(reduce_lanes(s4[0], s4[1], s4[2], s4[3])));
            size_t b = b0 + 8 * u;
            __mmask16 dm = (__mmask16)(b + 8 <= kb ? 0xffu : b >= kb ? 0u : (1u << (kb - b)) - 1u);
            __m512 d8 = _mm512_maskz_loadu_ps(dm, a->d + b);
            _mm512_store_ps(gx->rdl + 16 * u, _mm512_permutexvar_ps(lb, d8));
        }
    } else if (bits == 2) {
        /* qword b' of register j = qword 4b' + j of the 256 bytes of q */
        const __m512i idx = _mm512_setr_epi64(0, 4, 8, 12, 16, 20, 24, 28);
        for (size_t t = 0; t < (nbs + 7) / 8; t++) {
            int64_t qq[32];
            for (size_t p = 0; p < 8; p++)
                _mm256_storeu_si256((__m256i *)(void *)(qq + 4 * p), q_block(a, b0 + 8 * t + p));
            __m512 s = _mm512_setzero_ps();
            for (int j = 0; j < 4; j++) {
                __m512i v = _mm512_i64gather_epi64(_mm512_add_epi64(idx, _mm512_set1_epi64(j)),
                                                   (const void *)qq, 8);
                _mm512_store_si512((void *)(gx->qa + 256 * t + 64 * j), v);
                s = _mm512_add_ps(s, lane_qsum(v));   /* integers below 2^24: exact */
            }
            _mm512_store_ps(gx->qs.f + 16 * t, s);
        }
    } else {
        for (size_t u = 0; u < (nbs + 1) / 2; u++) {
            size_t b = b0 + 2 * u;
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(q_block(a, b)), q_block(a, b + 1), 1);
            _mm512_store_si512((void *)(gx->qa + 64 * u), v);
            if (blocks) _mm512_store_ps(gx->qs.f + 16 * u, lane_qsum(v));
            else _mm512_store_si512((void *)(gx->qs.i + 16 * u), lane_qsum_i(v));
            _mm512_store_ps(gx->dl + 16 * u, d_pair(a, b, b + 1));
        }
    }
    for (size_t c = 0; blocks && c < (nbs + 15) / 16; c++) chunk_map_make(w, b0 + 16 * c, &gx->cm[c]);
}

/* Whether every register of codes lies in one group (the group a multiple
 * of the codes a register holds, or one group for the whole row): the
 * kernels then take the zero point and scale per group ("whole groups"),
 * else per block. */
static int whole_groups(const qk_weights *w, size_t codes)
{
    return w->n_groups == 1 || w->group % codes == 0;
}

/* ---- codes of 4 and 8 bits, whole groups ----
 * Per row, ga sums d times the exact lanes of (c - z) q over the group, y
 * sums s times ga at the group's end (and at the span's end). */

/* Row r's zero points and scales of groups g .. g+15 (those that exist):
 * zn holds -z in its low 16 bits (high 16 bits 0), as vpmaddwd takes it;
 * s as fp32. */
typedef struct group_chunk {
    _Alignas(64) int32_t zn[16];
    _Alignas(64) float s[16];
} group_chunk;

AI void zn_store(int32_t *zn, __m512i z)
{
    _mm512_store_si512((void *)zn, _mm512_and_si512(_mm512_sub_epi32(_mm512_setzero_si512(), z),
                                                    _mm512_set1_epi32(0xffff)));
}

AI void group_chunk_make(const qk_weights *w, size_t r, size_t g, group_chunk *gc)
{
    if (!w->scale_stride) {   /* one group for the tensor */
        _mm512_store_ps(gc->s, _mm512_set1_ps(_cvtsh_ss(w->scales[0])));
        zn_store(gc->zn, _mm512_set1_epi32(qk_zero(w, 0, 0)));
        return;
    }
    size_t e = r * w->scale_stride + g, count = w->n_groups - g < 16 ? w->n_groups - g : 16;
    params_prefetch(w, e + PF_TILES * GR * w->scale_stride);
    _mm512_store_ps(gc->s, scales16(w, e, count));
    zn_store(gc->zn, zeros16(w, e, count));
}

/* One register of lanes: the codes c times q less z times the lanes' sums
 * of q, summed in int32 (vpmaddwd gives -z qs, the 16-bit halves qs and
 * -z with zeros above; vpdpbusd adds c q), times each lane's d into ga.
 * Every lane is an integer of at most 4 * 255 * 127 + 255 * 508 < 2^24 in
 * magnitude, so its conversion is exact: the same value as c q and z qs
 * converted apart and subtracted, without the floating-point step. */
AI __m512 lanes_acc(__m512 ga, __m512i c, __m512i q, __m512i zn, const int32_t *qs,
                    const float *dl)
{
    __m512i zq = _mm512_madd_epi16(_mm512_load_si512((const void *)qs), zn);
    __m512i acc = _mm512_dpbusd_epi32(zq, c, q);
    return _mm512_fmadd_ps(_mm512_load_ps(dl), _mm512_cvtepi32_ps(acc), ga);
}

/* One step of a row: 64 bytes of codes (4-bit: 4 blocks, the low
 * nibbles' lanes into ga, the high ones' into gb; 8-bit: 2 blocks, into
 * ga). Two sums per row halve the chain of dependent fused multiply-adds. */
AI void whole_step(int bits, __m512 *ga, __m512 *gb, __m512i v, __m512i qlo, __m512i qhi,
                   __m512i zn, const int32_t *qs, const float *dl)
{
    const __m512i nib = _mm512_set1_epi8(15);
    if (bits == 8) {
        *ga = lanes_acc(*ga, v, qlo, zn, qs, dl);
        return;
    }
    *ga = lanes_acc(*ga, _mm512_and_si512(v, nib), qlo, zn, qs, dl);
    *gb = lanes_acc(*gb, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib), qhi, zn, qs + 16,
                    dl + 16);
}

AI void gemv_whole(int bits, const qk_weights *w, const gemv_x *gx, size_t b0, size_t nbs,
                   const size_t r[GR], float out[GR], int first)
{
    /* 4-bit: a step is 64 bytes (4 blocks); 8-bit: 64 bytes (2 blocks) */
    size_t spb = bits == 4 ? 4 : 2, steps = (nbs + spb - 1) / spb, bpg = w->group / QK_BLOCK;
    size_t ahead = PF_TILES * GR * w->row_bytes, bpstep = 64, qstep = bits == 4 ? 128 : 64;
    size_t fstep = bits == 4 ? 32 : 16;
    const uint8_t *row[GR];
    __m512 ga[GR], gb[GR], y[GR];
    group_chunk gc[GR];
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        row[i] = w->codes + r[i] * w->row_bytes + b0 * QK_BLOCK * (size_t)bits / 8;
        ga[i] = gb[i] = y[i] = _mm512_setzero_ps();
    }
    /* the group of b0 (clamped), and the steps left in it (the span's
     * steps for a single group) */
    size_t g = b0 / bpg < w->n_groups ? b0 / bpg : w->n_groups - 1;
    size_t left = w->n_groups == 1 ? steps : (bpg - b0 % bpg) / spb, gi = 0;
    for (int i = 0; i < GR; i++) group_chunk_make(w, r[i], g, &gc[i]);
    /* the last step of the row may hold fewer than 64 bytes */
    size_t avail = w->row_bytes - b0 * QK_BLOCK * (size_t)bits / 8;
    for (size_t t = 0; t < steps; t++) {
        if (left == 0) {
            left = bpg / spb;
            g++;
            if (++gi == 16) {
                gi = 0;
                for (int i = 0; i < GR; i++) group_chunk_make(w, r[i], g, &gc[i]);
            }
        }
        __m512i qlo = _mm512_load_si512((const void *)(gx->qa + qstep * t));
        __m512i qhi = _mm512_load_si512((const void *)(gx->qa + qstep * t + 64));
        const int32_t *qs = gx->qs.i + fstep * t;
        const float *dl = gx->dl + fstep * t;
        size_t off = bpstep * t;
        if (off + 64 > avail) {   /* the row's last codes */
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++)
                whole_step(bits, &ga[i], &gb[i], load_upto(row[i] + off, avail - off), qlo, qhi,
                           _mm512_set1_epi32(gc[i].zn[gi]), qs, dl);
        } else if (bits == 8) {
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                _mm_prefetch((const char *)(row[i] + off + ahead), PF_HINT);
                whole_step(bits, &ga[i], &gb[i], _mm512_loadu_si512((const void *)(row[i] + off)),
                           qlo, qhi, _mm512_set1_epi32(gc[i].zn[gi]), qs, dl);
            }
        } else {
            /* 4-bit: the four rows' codes loaded first. Written as for
             * 8 bits, the compiler kept the codes on the stack (7% slower
             * in cache); written as here for 8 bits, the 8-bit product
             * from memory took 8-12% longer. */
            __m512i v[GR];
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                _mm_prefetch((const char *)(row[i] + off + ahead), PF_HINT);
                v[i] = _mm512_loadu_si512((const void *)(row[i] + off));
            }
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++)
                whole_step(bits, &ga[i], &gb[i], v[i], qlo, qhi, _mm512_set1_epi32(gc[i].zn[gi]),
                           qs, dl);
        }
        if (--left == 0 || t + 1 == steps) {
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                y[i] = _mm512_fmadd_ps(_mm512_set1_ps(gc[i].s[gi]), _mm512_add_ps(ga[i], gb[i]), y[i]);
                ga[i] = gb[i] = _mm512_setzero_ps();
            }
        }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        float v = hsum16(y[i]);
        out[i] = first ? v : out[i] + v;
    }
}

/* ---- any group: the parameters per block ---- */

/* Per row of a tile and chunk of 16 blocks: each block's s d (its group's
 * scale times the block scale of x) and zero point, as fp32. */
typedef struct row_params {
    _Alignas(64) float sd[16];
    _Alignas(64) float z[16];
} row_params;

/* rp for row r over a chunk (d: x's 16 block scales, 0 past kp). */
AI void row_params_make(const qk_weights *w, size_t r, const chunk_map *cm, __m512 d,
                        row_params *rp)
{
    size_t e = r * w->scale_stride + cm->g0;
    params_prefetch(w, e + PF_TILES * GR * w->scale_stride);
    __m512 s = w->scale_stride ? scales16(w, e, cm->count) : _mm512_set1_ps(_cvtsh_ss(w->scales[0]));
    if (!cm->identity) s = _mm512_permutexvar_ps(cm->gmap, s);
    _mm512_store_ps(rp->sd, _mm512_mul_ps(s, d));
    __m512i z;
    if (w->symmetric) {
        _mm512_store_ps(rp->z, _mm512_set1_ps((float)(1 << (w->bits - 1))));
        return;
    }
    if (!w->scale_stride) {
        z = _mm512_set1_epi32(qk_zero(w, 0, 0));
    } else {
        z = zeros16(w, e, cm->count);
        if (!cm->identity) z = _mm512_permutexvar_epi32(cm->gmap, z);
    }
    _mm512_store_ps(rp->z, _mm512_cvtepi32_ps(z));
}

/* One block's 8 lanes f (of c q) into y: z times the lanes' sums of q qs
 * off (exact), times s d. */
AI __m256 lanes8(__m256 y, __m256 f, __m256 qs, const row_params *rp, size_t j, int sym,
                 __m256 zsym)
{
    __m256 z = sym ? zsym : _mm256_broadcast_ss(rp->z + j);
    return _mm256_fmadd_ps(_mm256_broadcast_ss(rp->sd + j), _mm256_fnmadd_ps(z, qs, f), y);
}

/* Two blocks' lanes (a in the low 8 int32 lanes of acc, b in the high 8). */
AI void lanes16(__m256 *ya, __m256 *yb, __m512i acc, const float *qs, const row_params *rp,
                size_t ja, size_t jb, int sym, __m256 zsym)
{
    __m512 f = _mm512_cvtepi32_ps(acc);
    *ya = lanes8(*ya, _mm512_castps512_ps256(f), _mm256_load_ps(qs), rp, ja, sym, zsym);
    *yb = lanes8(*yb, high8(f), _mm256_load_ps(qs + 8), rp, jb, sym, zsym);
}

/* The 3-bit codes of blocks b and b+1 of a row, as bytes (docs/FORMAT.md:
 * 12 bytes a block, the low two bits in the 2-bit layout, then a u32 of
 * the third bits). */
AI __m512i unpack3_pair(const uint8_t *row, size_t b)
{
    const uint8_t *p = row + 12 * b;
    int64_t lo0, lo1;
    uint32_t h0, h1;
    memcpy(&lo0, p, 8);
    memcpy(&h0, p + 8, 4);
    memcpy(&lo1, p + 12, 8);
    memcpy(&h1, p + 20, 4);
    /* qword j of each half: byte i shifted right by 2j holds bits 2j, 2j+1 of byte i */
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi64x(lo0)),
                                   _mm256_set1_epi64x(lo1), 1);
    v = _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_setr_epi64(0, 2, 4, 6, 0, 2, 4, 6)),
                         _mm512_set1_epi8(3));
    __mmask64 hb = (__mmask64)h0 | (__mmask64)h1 << 32;
    return _mm512_mask_blend_epi8(hb, v, _mm512_or_si512(v, _mm512_set1_epi8(4)));
}

/* The rows of one GEMV tile over one span, parameters per block: y lanes
 * summed into out[] (first: set, else added). */
AI void gemv_blocks(int bits, const qk_weights *w, const qk_acts *a, const gemv_x *gx,
                    size_t b0, size_t nbs, const size_t r[GR], float out[GR], int first)
{
    size_t nb = n_blocks(w), end = b0 + nbs < nb ? b0 + nbs : nb;
    int sym = w->symmetric;
    const __m256 zsym = _mm256_set1_ps((float)(1 << (w->bits - 1)));
    const uint8_t *row[GR];
    size_t ahead = PF_TILES * GR * w->row_bytes, kb = a->kp / QK_BLOCK;
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) row[i] = w->codes + r[i] * w->row_bytes;
    __m256 ya[GR], yb[GR];
    __m512 yl[GR];
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        ya[i] = yb[i] = _mm256_setzero_ps();
        yl[i] = _mm512_setzero_ps();
    }
    row_params rp[GR];
    const __m512i two = _mm512_set1_epi8(3);
    for (size_t c0 = b0; c0 < end; c0 += 16) {
        const chunk_map *cm = &gx->cm[(c0 - b0) / 16];
        __mmask16 dm = (__mmask16)(c0 + 16 <= kb ? 0xffffu : (1u << (kb - c0)) - 1u);
        __m512 d = _mm512_maskz_loadu_ps(dm, a->d + c0);
        #pragma GCC unroll 4
        for (int i = 0; i < GR; i++) row_params_make(w, r[i], cm, d, &rp[i]);
        size_t c1 = c0 + 16 < end ? c0 + 16 : end;
        if (bits == 2) {
            /* lanes 2p, 2p+1 belong to block b + p */
            const __m512i lane_block = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
                                                         7, 7);
            for (size_t b = c0; b < c1; b += 8) {
                size_t t = (b - b0) / 8, j = b - c0;
                const int8_t *q = gx->qa + 256 * t;
                __m512 qs = _mm512_load_ps(gx->qs.f + 16 * t);
                __m512i sel = _mm512_add_epi32(lane_block, _mm512_set1_epi32((int)j));
                __mmask16 live = (__mmask16)(b + 8 <= c1 ? 0xffffu : (1u << (2 * (c1 - b))) - 1u);
                #pragma GCC unroll 4
                for (int i = 0; i < GR; i++) {
                    const uint8_t *src = row[i] + 8 * b;
                    _mm_prefetch((const char *)(src + ahead), PF_HINT);
                    __m512i v = load_upto(src, w->row_bytes - 8 * b), acc = _mm512_setzero_si512();
                    for (int s = 0; s < 4; s++) {
                        __m512i c = _mm512_and_si512(_mm512_srli_epi16(v, 2 * s), two);
                        acc = _mm512_dpbusd_epi32(acc, c, _mm512_load_si512((const void *)(q + 64 * s)));
                    }
                    __m512 sd = _mm512_permutexvar_ps(sel, _mm512_load_ps(rp[i].sd));
                    __m512 z = sym ? _mm512_set1_ps((float)(1 << (w->bits - 1)))
                                   : _mm512_permutexvar_ps(sel, _mm512_load_ps(rp[i].z));
                    __m512 f = _mm512_fnmadd_ps(z, qs, _mm512_cvtepi32_ps(acc));
                    yl[i] = _mm512_mask3_fmadd_ps(sd, f, yl[i], live);
                }
            }
        } else {
            for (size_t b = c0; b < c1; b += 2) {
                size_t u = (b - b0) / 2, j = b - c0;
                __m512i q = _mm512_load_si512((const void *)(gx->qa + 64 * u));
                const float *qs = gx->qs.f + 16 * u;
                #pragma GCC unroll 4
                for (int i = 0; i < GR; i++) {
                    __m512i c;
                    if (bits == 8) {
                        const uint8_t *src = row[i] + 32 * b;
                        _mm_prefetch((const char *)(src + ahead), PF_HINT);
                        c = _mm512_loadu_si512((const void *)src);
                    } else {
                        _mm_prefetch((const char *)(row[i] + 12 * b + ahead), PF_HINT);
                        c = unpack3_pair(row[i], b);
                    }
                    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, q);
                    if (b + 2 <= c1) {
                        lanes16(&ya[i], &yb[i], acc, qs, &rp[i], j, j + 1, sym, zsym);
                    } else {
                        __m512 f = _mm512_cvtepi32_ps(acc);
                        ya[i] = lanes8(ya[i], _mm512_castps512_ps256(f), _mm256_load_ps(qs),
                                       &rp[i], j, sym, zsym);
                    }
                }
            }
        }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        float v = hsum16(_mm512_add_ps(yl[i], join8(ya[i], yb[i])));
        out[i] = first ? v : out[i] + v;
    }
}

/* 4-bit codes, parameters per block (groups of 32, 64, ...): per 8 blocks
 * of a row, the four registers of lanes reduced to two lanes a block
 * (reduce_lanes, exact), then z times the lanes' sums of q taken off and
 * s d times that into the row's 16 fp32 lanes, each block's s and z
 * picked from a vector of the 16 blocks of a chunk. */
AI void gemv4_blocks(const qk_weights *w, const gemv_x *gx, size_t b0,
                     size_t nbs, const size_t r[GR], float out[GR], int first)
{
    size_t nb = n_blocks(w), end = b0 + nbs < nb ? b0 + nbs : nb;
    size_t ahead = PF_TILES * GR * w->row_bytes;
    const uint8_t *row[GR];
    __m512 y[GR], sb[GR], zb[GR];
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        row[i] = w->codes + r[i] * w->row_bytes;
        y[i] = _mm512_setzero_ps();
        zb[i] = _mm512_set1_ps((float)(1 << (w->bits - 1)));
    }
    const __m512i nib = _mm512_set1_epi8(15), lb = _mm512_loadu_si512((const void *)reduced_block);
    for (size_t c0 = b0; c0 < end; c0 += 16) {
        const chunk_map *cm = &gx->cm[(c0 - b0) / 16];
        /* the scale and zero point of each of the chunk's blocks, per row */
        #pragma GCC unroll 4
        for (int i = 0; i < GR; i++) {
            size_t e = r[i] * w->scale_stride + cm->g0;
            params_prefetch(w, e + PF_TILES * GR * w->scale_stride);
            __m512 sv = w->scale_stride ? scales16(w, e, cm->count)
                                        : _mm512_set1_ps(_cvtsh_ss(w->scales[0]));
            sb[i] = cm->identity ? sv : _mm512_permutexvar_ps(cm->gmap, sv);
            if (!w->symmetric) {
                __m512i z = w->scale_stride ? zeros16(w, e, cm->count)
                                            : _mm512_set1_epi32(qk_zero(w, 0, 0));
                if (w->scale_stride && !cm->identity) z = _mm512_permutexvar_epi32(cm->gmap, z);
                zb[i] = _mm512_cvtepi32_ps(z);
            }
        }
        size_t c1 = c0 + 16 < end ? c0 + 16 : end;
        for (size_t b = c0; b < c1; b += 8) {
            size_t u = (b - b0) / 8;
            const int8_t *q = gx->qa + 256 * u;
            __m512i ql1 = _mm512_load_si512((const void *)q), qh1 = _mm512_load_si512((const void *)(q + 64));
            __m512i ql2 = _mm512_load_si512((const void *)(q + 128)), qh2 = _mm512_load_si512((const void *)(q + 192));
            __m512 qs = _mm512_load_ps(gx->rqs + 16 * u), dl = _mm512_load_ps(gx->rdl + 16 * u);
            __m512i sel = _mm512_add_epi32(lb, _mm512_set1_epi32((int)(b - c0)));
            int full = 16 * b + 128 <= w->row_bytes;   /* the same for every row */
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                const uint8_t *src = row[i] + 16 * b;
                _mm_prefetch((const char *)(src + ahead), PF_HINT);
                _mm_prefetch((const char *)(src + ahead + 64), PF_HINT);
                __m512i v1, v2;
                if (full) {
                    v1 = _mm512_loadu_si512((const void *)src);
                    v2 = _mm512_loadu_si512((const void *)(src + 64));
                } else {   /* the row's last codes */
                    v1 = load_upto(src, w->row_bytes - 16 * b);
                    v2 = 16 * b + 64 < w->row_bytes ? load_upto(src + 64, w->row_bytes - 16 * b - 64)
                                                    : _mm512_setzero_si512();
                }
                __m512i a1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v1, nib), ql1);
                __m512i b1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                 _mm512_and_si512(_mm512_srli_epi16(v1, 4), nib), qh1);
                __m512i a2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(v2, nib), ql2);
                __m512i b2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                 _mm512_and_si512(_mm512_srli_epi16(v2, 4), nib), qh2);
                __m512 f = _mm512_cvtepi32_ps(reduce_lanes(a1, b1, a2, b2));
                __m512 t = _mm512_fnmadd_ps(_mm512_permutexvar_ps(sel, zb[i]), qs, f);
                y[i] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_permutexvar_ps(sel, sb[i]), dl), t, y[i]);
            }
        }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        float v = hsum16(y[i]);
        out[i] = first ? v : out[i] + v;
    }
}

/* Each output's lanes and order depend only on its row and K: a row is
 * computed the same way in whichever tile (and thread) it falls. */
AI void gemv_rows(int bits, const qk_weights *w, const qk_acts *a, size_t n0, size_t n1, float *y)
{
    size_t nb = n_blocks(w);
    int whole = (bits == 4 && whole_groups(w, 128)) || (bits == 8 && whole_groups(w, 64));
    gemv_x gx;
    for (size_t b0 = 0; b0 < nb; b0 += SPAN_BLOCKS) {
        size_t nbs = nb - b0 < SPAN_BLOCKS ? nb - b0 : SPAN_BLOCKS;
        gemv_x_layout(bits, w, a, b0, nbs, !whole, &gx);
        for (size_t r0 = n0; r0 < n1; r0 += GR) {
            size_t r[GR];
            float out[GR];
            tile_rows(r0, n1, GR, r);
            for (int i = 0; i < GR; i++) out[i] = b0 ? y[r[i]] : 0.0f;
            if (whole) gemv_whole(bits, w, &gx, b0, nbs, r, out, b0 == 0);
            else if (bits == 4) gemv4_blocks(w, &gx, b0, nbs, r, out, b0 == 0);
            else gemv_blocks(bits, w, a, &gx, b0, nbs, r, out, b0 == 0);
            for (size_t i = 0; i < GR && r0 + i < n1; i++) y[r0 + i] = out[i];
        }
    }
}

#define GEMV(B)                                                                               \
    static void gemv_f32_qa8_qw##B##_1x4c64__avx512(const qk_weights *w, const qk_acts *a,    \
                                                    size_t n0, size_t n1, float *y,           \
                                                    size_t ldy)                               \
    {                                                                                         \
        (void)ldy;                                                                            \
        if (n0 < n1) gemv_rows(B, w, a, n0, n1, y);                                           \
    }
GEMV(2)
GEMV(3)
GEMV(4)
GEMV(8)

/* ---- GEMM, AUTO mode (M > 1) ---- */

#define NR 32                /* weight rows (output columns) per tile */
#define MR 4                 /* rows of x per register tile (fewer for the last ones) */
#define MC 128               /* rows of x sharing one unpacked weight tile */
/* Blocks of 32 codes per tile: KB_WS in the workspace the core lends
 * (qk_acts.ws: a 32-column tile of 4096 codes, 169 KiB), KB_STACK in a
 * tile on the stack when it lends none. Longer tiles save the per-tile
 * steps (the outputs' partial sums stored and reloaded, the group sums
 * carried, the group parameters transposed) once per 1024 codes: 4-5% of
 * an M = 128 product. The split of k changes no result. */
#define KB_WS 128
#define KB_STACK 32

/* Bytes of a tile of kb blocks: per block its codes (16 registers), its
 * code offset (one), the scales and zero points of its 32 columns, and
 * its group_end. */
#define TILE_BYTES(kb) \
    ((size_t)(kb) * (sizeof(__m512i) * 17 + 2 * NR * sizeof(float) + sizeof(int)))

typedef struct wtile {
    /* [block][quad s][half h]: columns 16h .. 16h+15 (one per int32 lane),
     * the 4 codes at k = 4s .. 4s+3 of the block, as stored (see top) */
    __m512i (*w)[8][2];
    __m512i *off;                /* per block, the byte added to its codes (one half at a time) */
    float (*scale)[NR];          /* the scale of the block's group, per column */
    float (*zero)[NR];           /* the zero point of the block's group, per column */
    int *group_end;              /* the block is the last of its group */
    size_t kb;                   /* blocks the arrays hold (a multiple of 16) */
    size_t r[NR];                /* weight rows (clamped) */
    size_t base[NR];             /* r * scale_stride */
} wtile;

/* t's arrays in mem (64-byte aligned, TILE_BYTES(kb) bytes). */
static void tile_bind(wtile *t, void *mem, size_t kb)
{
    char *p = mem;
    t->w = (__m512i(*)[8][2])(void *)p;
    p += kb * 16 * sizeof(__m512i);
    t->off = (__m512i *)(void *)p;
    p += kb * sizeof(__m512i);
    t->scale = (float(*)[NR])(void *)p;
    p += kb * NR * sizeof(float);
    t->zero = (float(*)[NR])(void *)p;
    p += kb * NR * sizeof(float);
    t->group_end = (int *)(void *)p;
    t->kb = kb;
}

/* Transposes 16 rows of 8 dwords: z[j] holds row j in its low 256 bits
 * and row j + 8 in its high ones; on return z[s] holds dword s of row c in
 * lane c. (The 8 x 8 transpose of each 256-bit half, as in x86_avx2.c,
 * with the last step a 2-source qword permute.) */
AI void transpose16x8(__m512i z[8])
{
    __m512i t[8], u[8];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_epi32(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(z[i], z[i + 1]);
    }
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        z[i] = _mm512_permutex2var_epi64(u[i], lo, u[i + 4]);
        z[i + 4] = _mm512_permutex2var_epi64(u[i], hi, u[i + 4]);
    }
}

/* Transposes 16 x 16 dwords in place: v[r] lane c -> v[c] lane r. */
AI void transpose16x16(__m512i v[16])
{
    __m512i t[16], u[16];
    #pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    /* per 128-bit lane L of row quad q (rows 4q .. 4q+3): u[4q + c'] holds
     * column 4L + c' of those rows */
    #pragma GCC unroll 16
    for (int i = 0; i < 16; i += 4) {
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* 4 x 4 transpose of the 128-bit lanes of u[c'], u[4 + c'], u[8 + c'], u[12 + c'] */
    #pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m512i s0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44);
        __m512i s1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
        __m512i s2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
        __m512i s3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);
        v[c] = _mm512_shuffle_i32x4(s0, s2, 0x88);
        v[4 + c] = _mm512_shuffle_i32x4(s0, s2, 0xdd);
        v[8 + c] = _mm512_shuffle_i32x4(s1, s3, 0x88);
        v[12 + c] = _mm512_shuffle_i32x4(s1, s3, 0xdd);
    }
}

/* 32 bytes of each of 16 rows (row j at src[j] + off), as transpose16x8
 * takes them. */
AI void load16x32(const uint8_t *const src[16], size_t off, __m512i z[8])
{
    #pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(src[j] + off));
        __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(src[j + 8] + off));
        z[j] = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    }
}

/* The 32 codes of block b of a row as bytes: 2 and 3 bits (the 4 and 8-bit
 * tiles transpose the packed bytes directly). */
AI __m256i unpack_block_small(int bits, const uint8_t *row, size_t b)
{
    const uint8_t *p = row + (bits == 2 ? 8 : 12) * b;
    int64_t lo64;
    memcpy(&lo64, p, 8);
    __m256i v = _mm256_srlv_epi64(_mm256_set1_epi64x(lo64), _mm256_setr_epi64x(0, 2, 4, 6));
    v = _mm256_and_si256(v, _mm256_set1_epi8(3));
    if (bits == 2) return v;
    uint32_t hi;
    memcpy(&hi, p + 8, 4);
    return _mm256_mask_blend_epi8((__mmask32)hi, v, _mm256_or_si256(v, _mm256_set1_epi8(4)));
}

/* The byte added to each code of a column (2^bits - z when asymmetric
 * with up to 4 bits, else 0), in all four bytes of its lane. */
AI __m512i code_offset(const qk_weights *w, __m512i z)
{
    if (w->symmetric || w->bits == 8) return _mm512_setzero_si512();
    __m512i o = _mm512_sub_epi32(_mm512_set1_epi32(1 << w->bits), z);
    return _mm512_mullo_epi32(o, _mm512_set1_epi32(0x01010101));
}

/* The scales and zero points of groups g0 .. g0+count-1 (count <= 16) of
 * the 16 columns base[0..15], as vectors over the columns: s[j], z[j] for
 * group g0 + j. Each column's run is read as one vector and the 16 x 16
 * block transposed. */
AI void tile_params(const qk_weights *w, const size_t base[16], size_t g0, size_t count,
                    __m512 s[16], __m512i z[16])
{
    if (!w->scale_stride) {   /* one group for the tensor */
        s[0] = _mm512_set1_ps(_cvtsh_ss(w->scales[0]));
        z[0] = _mm512_set1_epi32(qk_zero(w, 0, 0));
        return;
    }
    __m512i sv[16];
    #pragma GCC unroll 16
    for (int c = 0; c < 16; c++) {
        sv[c] = _mm512_castps_si512(scales16(w, base[c] + g0, count));
        z[c] = zeros16(w, base[c] + g0, count);
    }
    transpose16x16(sv);
    if (!w->symmetric) transpose16x16(z);
    #pragma GCC unroll 16
    for (int j = 0; j < 16; j++) s[j] = _mm512_castsi512_ps(sv[j]);
}

/* Blocks b0 .. b0+kb-1 of the tile's 32 rows into t (b0 a multiple of 16). */
AI void unpack_tile(int bits, const qk_weights *w, size_t b0, size_t kb, wtile *t)
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK;
    const __m512i nib = _mm512_set1_epi8(15);
    for (int h = 0; h < 2; h++) {
        size_t g0 = b0 / bpg, ng = (b0 + kb - 1) / bpg - g0 + 1;
        const uint8_t *src[16];
        for (int c = 0; c < 16; c++) src[c] = w->codes + t->r[16 * h + c] * w->row_bytes;
        __m512 gs[16];
        __m512i gz[16], *off = t->off;
        /* the span's groups, 16 at a time */
        tile_params(w, t->base + 16 * h, g0, ng < 16 ? ng : 16, gs, gz);
        for (size_t bb = 0, j = 0, left = bpg - b0 % bpg; bb < kb; bb++) {
            if (left == 0) {
                left = bpg;
                if (++j == 16) {
                    j = 0;
                    g0 += 16;
                    ng -= 16;
                    tile_params(w, t->base + 16 * h, g0, ng < 16 ? ng : 16, gs, gz);
                }
            }
            left--;
            size_t jj = w->scale_stride ? j : 0;
            t->group_end[bb] = left == 0 || b0 + bb + 1 == nb;
            off[bb] = code_offset(w, gz[jj]);
            _mm512_storeu_ps(t->zero[bb] + 16 * h, _mm512_cvtepi32_ps(gz[jj]));
            _mm512_storeu_ps(t->scale[bb] + 16 * h, gs[jj]);
        }
        if (bits == 4) {
            for (size_t bb = 0; bb < kb; bb += 2) {
                __m512i z[8];
                load16x32(src, 16 * (b0 + bb), z);
                transpose16x8(z);
                #pragma GCC unroll 8
                for (int s = 0; s < 8; s++)
                    t->w[bb][s][h] = _mm512_add_epi8(_mm512_and_si512(z[s], nib), off[bb]);
                if (bb + 1 >= kb) break;
                #pragma GCC unroll 8
                for (int s = 0; s < 8; s++)
                    t->w[bb + 1][s][h] = _mm512_add_epi8(
                        _mm512_and_si512(_mm512_srli_epi16(z[s], 4), nib), off[bb + 1]);
            }
        } else if (bits == 8) {
            for (size_t bb = 0; bb < kb; bb++) {
                __m512i z[8];
                load16x32(src, 32 * (b0 + bb), z);
                transpose16x8(z);
                #pragma GCC unroll 8
                for (int s = 0; s < 8; s++) t->w[bb][s][h] = z[s];
            }
        } else {
            for (size_t bb = 0; bb < kb; bb++) {
                size_t b = b0 + bb;
                __m512i z[8];
                #pragma GCC unroll 8
                for (int j = 0; j < 8; j++)
                    z[j] = _mm512_inserti64x4(
                        _mm512_castsi256_si512(unpack_block_small(bits, src[j], b)),
                        unpack_block_small(bits, src[j + 8], b), 1);
                transpose16x8(z);
                #pragma GCC unroll 8
                for (int s = 0; s < 8; s++) t->w[bb][s][h] = _mm512_add_epi8(z[s], off[bb]);
            }
        }
    }
}

/* The codes of the tile after this one, fetched into L2 while this one
 * computes, a share per register tile of x. */
typedef struct tile_fetch {
    const uint8_t *row[NR];      /* the next tile's first byte in each row; NULL: none */
    size_t lines;                /* its cache lines per row */
} tile_fetch;

static void fetch_share(const tile_fetch *nf, size_t part, size_t parts)
{
    if (!nf->row[0]) return;
    size_t total = NR * nf->lines, l0 = total * part / parts, l1 = total * (part + 1) / parts;
    for (size_t l = l0; l < l1; l++)
        _mm_prefetch((const char *)(nf->row[l % NR] + l / NR * 64), _MM_HINT_T1);
}

/* The tile after (r0, b0) within columns [n0, n1): the next span of k, or
 * the next 32 columns from k = 0, or (last) the first tile of [n0, n1). */
static void plan_fetch(const qk_weights *w, size_t r0, size_t b0, size_t n0, size_t n1,
                       size_t kbt, tile_fetch *nf)
{
    size_t nb = n_blocks(w), r[NR];
    if (b0 + kbt < nb) {
        b0 += kbt;
    } else if (r0 + NR < n1) {
        b0 = 0;
        r0 += NR;
    } else {
        b0 = 0;
        r0 = n0;
    }
    size_t kb = nb - b0 < kbt ? nb - b0 : kbt;
    tile_rows(r0, n1, NR, r);
    for (int c = 0; c < NR; c++)
        nf->row[c] = w->codes + r[c] * w->row_bytes + b0 * QK_BLOCK * (size_t)w->bits / 8;
    nf->lines = (kb * QK_BLOCK * (size_t)w->bits / 8 + 63) / 64;
}

/* Per (row of x, column) running group sum of a panel across the spans of
 * k (a group may straddle two spans); the outputs' partial sums wait in y
 * itself. */
typedef struct gstate {
    __m512 ga[MC][2];
} gstate;

/* The operands of one GEMM call. */
typedef struct gemm_args {
    const qk_weights *w;
    const qk_acts *a;            /* AUTO */
    const float *x;              /* F32 */
    size_t ldx, m;
    float *y;
    size_t ldy;
} gemm_args;

/* What the unpacked codes c' are: c' - fo = c - z (fo: 2^bits for
 * asymmetric codes of up to 4 bits, 2^(bits-1) for symmetric ones, 0 for
 * 8-bit asymmetric ones, whose z the epilogue takes off); the AUTO
 * accumulators start at -fo times the block's sum of q. */
static int code_shift(const qk_weights *w)
{
    if (w->symmetric) return w->bits - 1;
    return w->bits == 8 ? -1 : w->bits;
}

/* Writes rows [0, mr) of a register tile to y (columns r0 .. r0+nr-1). */
AI void store_rows(const gemm_args *g, int mr, const size_t *ri, size_t r0, size_t nr,
                   __m512 y[MR][2])
{
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffffu : (1u << nr) - 1u);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffffu : nr <= 16 ? 0u : (1u << (nr - 16)) - 1u);
    #pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        float *yr = g->y + ri[i] * g->ldy + r0;
        _mm512_mask_storeu_ps(yr, m0, y[i][0]);
        _mm512_mask_storeu_ps(yr + 16, m1, y[i][1]);
    }
}

/* The partial outputs stored by store_rows at the end of the last span. */
AI void load_rows(const gemm_args *g, int mr, const size_t *ri, size_t r0, size_t nr,
                  __m512 y[MR][2])
{
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xffffu : (1u << nr) - 1u);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xffffu : nr <= 16 ? 0u : (1u << (nr - 16)) - 1u);
    #pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        const float *yr = g->y + ri[i] * g->ldy + r0;
        y[i][0] = _mm512_maskz_loadu_ps(m0, yr);
        y[i][1] = _mm512_maskz_loadu_ps(m1, yr + 16);
    }
}

/* mr rows ri[] of x (rows ii .. ii+mr-1 of the panel) times the tile over
 * blocks b0 .. b0+kb-1: the scalar reference's float steps per block
 * (exact dot, times d, into the group's sum; at the group's end times s
 * into y). */
AI void gemm_tile_rows(int mr, const gemm_args *g, const wtile *t, size_t b0, size_t kb,
                       const size_t *ri, gstate *st, size_t ii, int first, int last, size_t r0,
                       size_t nr)
{
    const qk_acts *a = g->a;
    size_t nbk = a->kp / QK_BLOCK;
    int shift = code_shift(g->w);
    __m512 ga[MR][2], y[MR][2];
    #pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            ga[i][h] = first ? _mm512_setzero_ps() : st->ga[ii + (size_t)i][h];
            y[i][h] = _mm512_setzero_ps();
        }
    if (!first) load_rows(g, mr, ri, r0, nr, y);
    const int8_t *q[MR];
    const int32_t *sum[MR];
    const float *d[MR];
    #pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        q[i] = a->q + ri[i] * a->kp + b0 * QK_BLOCK;
        sum[i] = a->sum + ri[i] * nbk + b0;
        d[i] = a->d + ri[i] * nbk + b0;
    }
    for (size_t bb = 0; bb < kb; bb++) {
        __m512i acc[MR][2];
        #pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            int32_t init = shift < 0 ? 0 : -(int32_t)((uint32_t)sum[i][bb] << shift);
            acc[i][0] = acc[i][1] = _mm512_set1_epi32(init);
        }
        #pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            __m512i w0 = t->w[bb][s][0], w1 = t->w[bb][s][1];
            #pragma GCC unroll 4
            for (int i = 0; i < mr; i++) {
                int32_t v;
                memcpy(&v, q[i] + bb * QK_BLOCK + 4 * (size_t)s, 4);
                __m512i xb = _mm512_set1_epi32(v);
                acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], w0, xb);
                acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], w1, xb);
            }
        }
        #pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            __m512 dv = _mm512_set1_ps(d[i][bb]);
            #pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512 f = _mm512_cvtepi32_ps(acc[i][h]);
                if (shift < 0)   /* c q less z times the sum of q: integers below 2^24, exact */
                    f = _mm512_fnmadd_ps(_mm512_loadu_ps(t->zero[bb] + 16 * h),
                                         _mm512_set1_ps((float)sum[i][bb]), f);
                ga[i][h] = _mm512_add_ps(ga[i][h], _mm512_mul_ps(dv, f));
            }
        }
        if (t->group_end[bb]) {
            #pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m512 s = _mm512_loadu_ps(t->scale[bb] + 16 * h);
                #pragma GCC unroll 4
                for (int i = 0; i < mr; i++) {
                    y[i][h] = _mm512_add_ps(y[i][h], _mm512_mul_ps(s, ga[i][h]));
                    ga[i][h] = _mm512_setzero_ps();
                }
            }
        }
    }
    store_rows(g, mr, ri, r0, nr, y);
    if (last) return;
    #pragma GCC unroll 4
    for (int i = 0; i < mr; i++)
        #pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            st->ga[ii + (size_t)i][h] = ga[i][h];
        }
}

/* COMPUTE_F32: the same tile with x in fp32; per block and column the
 * scalar reference's sum over k in order (multiply, then add), into the
 * group's sum, times s at its end. */
AI void gemm_f32_tile_rows(int mr, const gemm_args *g, const wtile *t, size_t b0, size_t kb,
                           const size_t *ri, gstate *st, size_t ii, int first, int last,
                           size_t r0, size_t nr)
{
    int shift = code_shift(g->w);
    __m512 fo[2];
    __m512 ga[MR][2], y[MR][2];
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < 2; h++) {
            ga[i][h] = first ? _mm512_setzero_ps() : st->ga[ii + (size_t)i][h];
            y[i][h] = _mm512_setzero_ps();
        }
    if (!first) load_rows(g, mr, ri, r0, nr, y);
    const float *x[MR];
    for (int i = 0; i < mr; i++) x[i] = g->x + ri[i] * g->ldx + b0 * QK_BLOCK;
    for (size_t bb = 0; bb < kb; bb++) {
        for (int h = 0; h < 2; h++)
            fo[h] = shift < 0 ? _mm512_loadu_ps(t->zero[bb] + 16 * h)
                              : _mm512_set1_ps((float)(1 << shift));
        __m512 acc[MR][2];
        for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        #pragma GCC unroll 2
        for (int s = 0; s < 8; s++) {
            #pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                __m512 wf[2];
                #pragma GCC unroll 2
                for (int h = 0; h < 2; h++) {
                    __m512i c = _mm512_and_si512(_mm512_srli_epi32(t->w[bb][s][h], 8 * p),
                                                 _mm512_set1_epi32(255));
                    wf[h] = _mm512_sub_ps(_mm512_cvtepi32_ps(c), fo[h]);   /* c - z, exact */
                }
                #pragma GCC unroll 4
                for (int i = 0; i < mr; i++) {
                    __m512 xv = _mm512_set1_ps(x[i][bb * QK_BLOCK + 4 * (size_t)s + (size_t)p]);
                    #pragma GCC unroll 2
                    for (int h = 0; h < 2; h++)
                        acc[i][h] = _mm512_add_ps(acc[i][h], _mm512_mul_ps(xv, wf[h]));
                }
            }
        }
        for (int i = 0; i < mr; i++)
            for (int h = 0; h < 2; h++) ga[i][h] = _mm512_add_ps(ga[i][h], acc[i][h]);
        if (t->group_end[bb]) {
            for (int h = 0; h < 2; h++) {
                __m512 s = _mm512_loadu_ps(t->scale[bb] + 16 * h);
                for (int i = 0; i < mr; i++) {
                    y[i][h] = _mm512_add_ps(y[i][h], _mm512_mul_ps(s, ga[i][h]));
                    ga[i][h] = _mm512_setzero_ps();
                }
            }
        }
    }
    store_rows(g, mr, ri, r0, nr, y);
    if (last) return;
    for (int i = 0; i < mr; i++)
        for (int h = 0; h < 2; h++) {
            st->ga[ii + (size_t)i][h] = ga[i][h];
        }
}

/* Rows [ii, ii+mr) of the panel, mr = 1 .. 4, with a register tile of mr rows. */
AI void gemm_rows(const gemm_args *g, const wtile *t, size_t b0, size_t kb, size_t ii, size_t mr,
                  gstate *st, size_t i0, int first, int last, size_t r0, size_t nr)
{
    size_t ri[MR];
    for (size_t i = 0; i < MR; i++) ri[i] = ii + (i < mr ? i : mr - 1);
    if (g->a) {
        switch (mr) {
        case 1: gemm_tile_rows(1, g, t, b0, kb, ri, st, ii - i0, first, last, r0, nr); break;
        case 2: gemm_tile_rows(2, g, t, b0, kb, ri, st, ii - i0, first, last, r0, nr); break;
        case 3: gemm_tile_rows(3, g, t, b0, kb, ri, st, ii - i0, first, last, r0, nr); break;
        default: gemm_tile_rows(4, g, t, b0, kb, ri, st, ii - i0, first, last, r0, nr); break;
        }
    } else {
        gemm_f32_tile_rows((int)mr, g, t, b0, kb, ri, st, ii - i0, first, last, r0, nr);
    }
}

AI void gemm_run(int bits, const gemm_args *g, size_t n0, size_t n1)
{
    const qk_weights *w = g->w;
    size_t nb = n_blocks(w);
    wtile t;
    gstate st;
    tile_fetch nf;
    void *ws = g->a ? g->a->ws : NULL;
    _Alignas(64) unsigned char own[TILE_BYTES(KB_STACK)];
    tile_bind(&t, ws ? ws : own, ws ? KB_WS : KB_STACK);
    size_t kbt = t.kb;
    for (size_t i0 = 0; i0 < g->m; i0 += MC) {
        size_t i1 = g->m - i0 < MC ? g->m : i0 + MC, parts = (i1 - i0 + MR - 1) / MR;
        for (size_t r0 = n0; r0 < n1; r0 += NR) {
            size_t nr = n1 - r0 < NR ? n1 - r0 : NR;
            tile_rows(r0, n1, NR, t.r);
            for (int c = 0; c < NR; c++) t.base[c] = t.r[c] * w->scale_stride;
            for (size_t b0 = 0; b0 < nb; b0 += kbt) {
                size_t kb = nb - b0 < kbt ? nb - b0 : kbt;
                unpack_tile(bits, w, b0, kb, &t);
                plan_fetch(w, r0, b0, n0, n1, kbt, &nf);
                for (size_t ii = i0; ii < i1; ii += MR) {
                    fetch_share(&nf, (ii - i0) / MR, parts);
                    size_t mr = i1 - ii < MR ? i1 - ii : MR;
                    gemm_rows(g, &t, b0, kb, ii, mr, &st, i0, b0 == 0, b0 + kbt >= nb, r0, nr);
                }
            }
        }
    }
}

/* ---- small batches (M <= SMALL_M): each weight block unpacked once per
 * pass of up to 4 rows of x, straight into registers ----
 *
 * Per 16 columns, the blocks are taken in order: 16 rows' packed bytes
 * transposed into u8 quads (as unpack_tile does), the zero point folded
 * in, and every row of the pass multiplied with them at once; the group
 * sums and outputs stay in registers for the whole row of k. No tile is
 * stored, so M rows of x cost one transpose per block and pass, not one
 * per block and panel, and nothing depends on M but the number of passes.
 * The float steps are the scalar reference's: the same bits as scalar.c. */

#define SMALL_M 8
#define SMR 4                /* rows of x per pass */

/* Group parameters of 16 columns for 16 groups from g0, as vectors over
 * the columns. */
typedef struct small_params {
    __m512 s[16], z[16];
    __m512i off[16];
    size_t g0;
} small_params;

static void small_params_fill(const qk_weights *w, const size_t base[16], size_t g,
                              small_params *p)
{
    size_t count = w->n_groups - g < 16 ? w->n_groups - g : 16;
    __m512i z[16];
    tile_params(w, base, g, count, p->s, z);
    size_t n = w->scale_stride ? count : 1;
    for (size_t j = 0; j < n; j++) {
        p->z[j] = _mm512_cvtepi32_ps(z[j]);
        p->off[j] = code_offset(w, z[j]);
    }
    p->g0 = g;
}

/* Rows i0 .. i0+mr-1 of x times one block's 16 columns (codes w[8] as the
 * tile stores them): the exact dots, times d into ga[]. Two accumulator
 * chains per row, summed exactly in int32. */
AI void small_block(int mr, int shift, const __m512i wv[8], const qk_acts *a, size_t i0,
                    size_t b, __m512 zf, __m512 *ga)
{
    size_t nbk = a->kp / QK_BLOCK;
    __m512i acc[SMR][2];
    const int8_t *q[SMR];
    #pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        size_t row = i0 + (size_t)i;
        int32_t init = shift < 0 ? 0 : -(int32_t)((uint32_t)a->sum[row * nbk + b] << shift);
        acc[i][0] = _mm512_set1_epi32(init);
        acc[i][1] = _mm512_setzero_si512();
        q[i] = a->q + row * a->kp + b * QK_BLOCK;
    }
    #pragma GCC unroll 8
    for (int s = 0; s < 8; s++) {
        #pragma GCC unroll 4
        for (int i = 0; i < mr; i++) {
            int32_t v;
            memcpy(&v, q[i] + 4 * s, 4);
            acc[i][s & 1] = _mm512_dpbusd_epi32(acc[i][s & 1], wv[s], _mm512_set1_epi32(v));
        }
    }
    #pragma GCC unroll 4
    for (int i = 0; i < mr; i++) {
        size_t row = i0 + (size_t)i;
        __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(acc[i][0], acc[i][1]));
        if (shift < 0)   /* c q less z times the sum of q: integers below 2^24, exact */
            f = _mm512_fnmadd_ps(zf, _mm512_set1_ps((float)a->sum[row * nbk + b]), f);
        ga[i] = _mm512_add_ps(ga[i], _mm512_mul_ps(_mm512_set1_ps(a->d[row * nbk + b]), f));
    }
}

/* Columns c0 .. c0+nc-1 (rows r[] of w, clamped) for every row of x; mc:
 * the number of rows when it is a constant 1 .. 4 (the sums then stay in
 * registers), else 0. */
AI void small_cols(int bits, int mc, const qk_weights *w, const qk_acts *a, const size_t r[16],
                   size_t c0, size_t nc, float *y, size_t ldy)
{
    size_t nb = n_blocks(w), bpg = w->group / QK_BLOCK, m = mc ? (size_t)mc : a->m;
    int shift = code_shift(w);
    const uint8_t *src[16];
    size_t base[16];
    for (int c = 0; c < 16; c++) {
        src[c] = w->codes + r[c] * w->row_bytes;
        base[c] = r[c] * w->scale_stride;
    }
    __m512 ga[SMALL_M], yv[SMALL_M];
    #pragma GCC unroll 4
    for (size_t i = 0; i < m; i++) ga[i] = yv[i] = _mm512_setzero_ps();
    small_params p;
    small_params_fill(w, base, 0, &p);
    const __m512i nib = _mm512_set1_epi8(15);
    size_t g = 0, left = bpg, step = bits == 4 ? 2 : 1, row_step = step * QK_BLOCK * (size_t)bits / 8;
    __m512i hi[8];
    #pragma GCC unroll 8
    for (int s = 0; s < 8; s++) hi[s] = _mm512_setzero_si512();
    for (size_t b = 0; b < nb; b += step) {
        __m512i raw[8];
        if (bits == 4 || bits == 8) {
            size_t off = b * QK_BLOCK * (size_t)bits / 8;
            #pragma GCC unroll 16
            for (int c = 0; c < 16; c++)
                _mm_prefetch((const char *)(src[c] + off + 8 * row_step), _MM_HINT_T1);
            load16x32(src, off, raw);
        } else {
            #pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                raw[j] = _mm512_inserti64x4(
                    _mm512_castsi256_si512(unpack_block_small(bits, src[j], b)),
                    unpack_block_small(bits, src[j + 8], b), 1);
        }
        transpose16x8(raw);
        if (bits == 4) {
            #pragma GCC unroll 8
            for (int s = 0; s < 8; s++) {
                hi[s] = _mm512_and_si512(_mm512_srli_epi16(raw[s], 4), nib);
                raw[s] = _mm512_and_si512(raw[s], nib);
            }
        }
        for (size_t bb = b; bb < b + step && bb < nb; bb++) {
            if (w->scale_stride && g >= p.g0 + 16) small_params_fill(w, base, g, &p);
            size_t j = w->scale_stride ? g - p.g0 : 0;
            __m512i wv[8];
            #pragma GCC unroll 8
            for (int s = 0; s < 8; s++)
                wv[s] = _mm512_add_epi8(bb == b ? raw[s] : hi[s], p.off[j]);
            for (size_t i0 = 0; i0 < m; i0 += SMR) {
                switch (m - i0 < SMR ? m - i0 : SMR) {
                case 1: small_block(1, shift, wv, a, i0, bb, p.z[j], ga + i0); break;
                case 2: small_block(2, shift, wv, a, i0, bb, p.z[j], ga + i0); break;
                case 3: small_block(3, shift, wv, a, i0, bb, p.z[j], ga + i0); break;
                default: small_block(4, shift, wv, a, i0, bb, p.z[j], ga + i0); break;
                }
            }
            if (--left == 0 || bb + 1 == nb) {
                #pragma GCC unroll 4
                for (size_t i = 0; i < m; i++) {
                    yv[i] = _mm512_add_ps(yv[i], _mm512_mul_ps(p.s[j], ga[i]));
                    ga[i] = _mm512_setzero_ps();
                }
                g++;
                left = bpg;
            }
        }
    }
    __mmask16 mk = (__mmask16)(nc >= 16 ? 0xffffu : (1u << nc) - 1u);
    #pragma GCC unroll 4
    for (size_t i = 0; i < m; i++) _mm512_mask_storeu_ps(y + i * ldy + c0, mk, yv[i]);
}

AI void gemm_small(int bits, const qk_weights *w, const qk_acts *a, size_t n0, size_t n1,
                   float *y, size_t ldy)
{
    for (size_t c0 = n0; c0 < n1; c0 += 16) {
        size_t r[16], nc = n1 - c0 < 16 ? n1 - c0 : 16;
        tile_rows(c0, n1, 16, r);
        switch (a->m) {
        case 2: small_cols(bits, 2, w, a, r, c0, nc, y, ldy); break;
        case 3: small_cols(bits, 3, w, a, r, c0, nc, y, ldy); break;
        case 4: small_cols(bits, 4, w, a, r, c0, nc, y, ldy); break;
        default: small_cols(bits, 0, w, a, r, c0, nc, y, ldy); break;
        }
    }
}

#define GEMM(B)                                                                               \
    static void gemm_f32_qa8_qw##B##_4x32c4__avx512(const qk_weights *w, const qk_acts *a,    \
                                                    size_t n0, size_t n1, float *y,           \
                                                    size_t ldy)                               \
    {                                                                                         \
        gemm_args g = { w, a, NULL, 0, a->m, y, ldy };                                        \
        if (n0 >= n1) return;                                                                 \
        if (a->m <= SMALL_M) gemm_small(B, w, a, n0, n1, y, ldy);                             \
        else gemm_run(B, &g, n0, n1);                                                         \
    }
GEMM(2)
GEMM(3)
GEMM(4)
GEMM(8)

static void gemm_f32_f32_qw_4x32c1__avx512(const qk_weights *w, const float *x, size_t ldx,
                                           size_t m, size_t n0, size_t n1, float *y, size_t ldy)
{
    gemm_args g = { w, NULL, x, ldx, m, y, ldy };
    if (n0 >= n1) return;
    switch (w->bits) {
    case 2: gemm_run(2, &g, n0, n1); break;
    case 3: gemm_run(3, &g, n0, n1); break;
    case 4: gemm_run(4, &g, n0, n1); break;
    default: gemm_run(8, &g, n0, n1); break;
    }
}

/* ---- dequantization, fp16 ---- */

static void avx512_dequant_row(const qk_weights *w, size_t r, float *out)
{
    const uint8_t *row = w->codes + r * w->row_bytes;
    size_t nb = n_blocks(w);
    for (size_t b = 0; b < nb; b++) {
        size_t g = b * QK_BLOCK / w->group;
        __m512 s = _mm512_set1_ps(_cvtsh_ss(w->scales[r * w->scale_stride + g]));
        __m512i z = _mm512_set1_epi32(qk_zero(w, r, g));
        __m256i c;
        if (w->bits == 8) {
            c = _mm256_loadu_si256((const __m256i *)(const void *)(row + 32 * b));
        } else if (w->bits == 4) {
            c = _mm256_loadu_si256((const __m256i *)(const void *)(row + 32 * (b / 2)));
            c = _mm256_and_si256(_mm256_srli_epi16(c, (int)(b & 1) * 4), _mm256_set1_epi8(15));
        } else {
            c = unpack_block_small(w->bits, row, b);
        }
        size_t n = w->k - b * QK_BLOCK < QK_BLOCK ? w->k - b * QK_BLOCK : QK_BLOCK;
        for (int h = 0; h < 2 && (size_t)(16 * h) < n; h++) {
            __m128i c16 = h ? _mm256_extracti128_si256(c, 1) : _mm256_castsi256_si128(c);
            __m512 v = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(c16), z)));
            size_t cnt = n - 16 * (size_t)h < 16 ? n - 16 * (size_t)h : 16;
            _mm512_mask_storeu_ps(out + b * QK_BLOCK + 16 * (size_t)h, (__mmask16)((1u << cnt) - 1u), v);
        }
    }
}

AI __m512 load_h16(const uint16_t *p, size_t avail)
{
    __mmask16 m = (__mmask16)(avail >= 16 ? 0xffffu : (1u << avail) - 1u);
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const void *)p));
}

/* gemv_f32_f32_f16_1x4c32: four rows at once, 16 lanes x 2 per row
 * (columns 32t .. 32t+15 and 32t+16 .. 32t+31), fused multiply-adds, the
 * last columns through masked loads (zeros); lanes summed once per row. */
static void gemv_f32_f32_f16_1x4c32__avx512(const uint16_t *w, size_t k, const float *x, size_t n0,
                                            size_t n1, float *y)
{
    for (size_t r0 = n0; r0 < n1; r0 += GR) {
        size_t r[GR];
        tile_rows(r0, n1, GR, r);
        __m512 acc[GR][2];
        for (int i = 0; i < GR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        for (size_t j = 0; j < k; j += 32) {
            size_t avail = k - j;
            __mmask16 m0 = (__mmask16)(avail >= 16 ? 0xffffu : (1u << avail) - 1u);
            __mmask16 m1 = (__mmask16)(avail >= 32 ? 0xffffu : avail <= 16 ? 0u : (1u << (avail - 16)) - 1u);
            __m512 x0 = _mm512_maskz_loadu_ps(m0, x + j), x1 = _mm512_maskz_loadu_ps(m1, x + j + 16);
            #pragma GCC unroll 4
            for (int i = 0; i < GR; i++) {
                const uint16_t *row = w + r[i] * k + j;
                acc[i][0] = _mm512_fmadd_ps(load_h16(row, avail), x0, acc[i][0]);
                if (avail > 16) acc[i][1] = _mm512_fmadd_ps(load_h16(row + 16, avail - 16), x1, acc[i][1]);
            }
        }
        for (size_t i = 0; i < GR && r0 + i < n1; i++)
            y[r0 + i] = hsum16(_mm512_add_ps(acc[i][0], acc[i][1]));
    }
}

static void avx512_f16_to_f32(const uint16_t *h, size_t count, float *out)
{
    for (size_t i = 0; i < count; i += 16) {
        size_t n = count - i < 16 ? count - i : 16;
        _mm512_mask_storeu_ps(out + i, (__mmask16)((1u << n) - 1u), load_h16(h + i, n));
    }
}

#define Q8_ENTRY(name, widths, sym, mr, nr, kr, order, ws, ws_min_m) \
    { #name, widths, sym, mr, nr, kr, order, 0, name, ws, ws_min_m }

/* The GEMVs sum the exact integer products in their own lanes: their own
 * order. The GEMMs keep the scalar reference's operations; above SMALL_M
 * rows of x they take their tile from the core's workspace. */
static const qk_q8_ukernel gemv_table[] = {
    Q8_ENTRY(gemv_f32_qa8_qw4_1x4c64__avx512, QK_W(4), QK_SYM | QK_ASYM, 1, GR, 64, QK_ORDER_OWN, 0, 0),
    Q8_ENTRY(gemv_f32_qa8_qw8_1x4c64__avx512, QK_W(8), QK_SYM | QK_ASYM, 1, GR, 64, QK_ORDER_OWN, 0, 0),
    Q8_ENTRY(gemv_f32_qa8_qw2_1x4c64__avx512, QK_W(2), QK_SYM | QK_ASYM, 1, GR, 64, QK_ORDER_OWN, 0, 0),
    Q8_ENTRY(gemv_f32_qa8_qw3_1x4c64__avx512, QK_W(3), QK_SYM | QK_ASYM, 1, GR, 64, QK_ORDER_OWN, 0, 0),
};

static const qk_q8_ukernel gemm_table[] = {
    Q8_ENTRY(gemm_f32_qa8_qw4_4x32c4__avx512, QK_W(4), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR,
             TILE_BYTES(KB_WS), SMALL_M + 1),
    Q8_ENTRY(gemm_f32_qa8_qw8_4x32c4__avx512, QK_W(8), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR,
             TILE_BYTES(KB_WS), SMALL_M + 1),
    Q8_ENTRY(gemm_f32_qa8_qw2_4x32c4__avx512, QK_W(2), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR,
             TILE_BYTES(KB_WS), SMALL_M + 1),
    Q8_ENTRY(gemm_f32_qa8_qw3_4x32c4__avx512, QK_W(3), QK_SYM | QK_ASYM, MR, NR, 4, QK_ORDER_SCALAR,
             TILE_BYTES(KB_WS), SMALL_M + 1),
};

const qlib_kernels qlib_kernels_avx512 = {
    .isa = "avx512",
    .needs = QK_CPU_AVX2 | QK_CPU_FMA | QK_CPU_F16C | QK_CPU_AVX512,
    .same_bits_as = NULL,
    .quantize_row = avx512_quantize_row,
    .prepare_row = avx512_prepare_row,
    .gemv = gemv_table,
    .n_gemv = sizeof gemv_table / sizeof gemv_table[0],
    .gemm = gemm_table,
    .n_gemm = sizeof gemm_table / sizeof gemm_table[0],
    .gemm_f32 = { "gemm_f32_f32_qw_4x32c1__avx512", MR, NR, QK_ORDER_SCALAR,
                  gemm_f32_f32_qw_4x32c1__avx512 },
    .dequant_row = avx512_dequant_row,
    .gemv_f16 = { "gemv_f32_f32_f16_1x4c32__avx512", GR, QK_ORDER_OWN,
                  gemv_f32_f32_f16_1x4c32__avx512 },
    .f16_to_f32 = avx512_f16_to_f32,
};
