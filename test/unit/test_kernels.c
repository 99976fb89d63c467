/* Every ISA's kernels against the scalar reference.
 *
 * The GEMM kernels of every ISA perform the scalar kernels' arithmetic
 * (exact integer block dots; the same fp32 multiplies and adds in the same
 * order, without fused multiply-adds), so the expected difference is zero:
 * results are compared bit for bit. The exceptions are the entries that
 * declare their own order (QK_ORDER_OWN: the AVX2 and avx512 GEMVs, M = 1,
 * AUTO): they sum the same exact integer products in another fixed order
 * (lanes of a few columns per row, fused multiply-adds), so they are
 * compared with a bound on float reassociation (gemv_bound). Every kernel,
 * those included, gives the same bits whatever the split of its columns.
 * The fp16 GEMV of NONE tensors is float arithmetic in each ISA's own order,
 * held to a bound against the exact product. ISAs this CPU (or build) lacks
 * are skipped. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/core.h"
#include "kernels/kernels.h"

Suite *suite_kernels(void);

/* The ISAs besides scalar. */
static const char *const *const isa_names = tu_isa_names + 1;
#define N_ISAS (TU_N_ISAS - 1)

/* The ISA tables this machine can run, besides scalar. */
static size_t available_isas(const qlib_kernels **out)
{
    size_t n = 0;
    for (size_t i = 0; i < N_ISAS; i++) {
        const qlib_kernels *k = qlib_kernels_pick(isa_names[i], qlib_cpu_features());
        if (k) out[n++] = k;
    }
    return n;
}

/* ---- packed weights made directly (every bits/group/zero combination) ---- */

typedef struct kw {
    qk_weights w;
    uint8_t *codes, *zeros;
    uint16_t *scales;
} kw;

/* extreme: every code at its maximum, to reach the largest partial sums. */
static void kw_make(kw *t, tu_rng *r, int bits, int sym, int group_size, size_t n, size_t k,
                    int extreme)
{
    qk_weights *w = &t->w;
    memset(t, 0, sizeof *t);
    w->bits = bits;
    w->symmetric = sym;
    w->n = n;
    w->k = k;
    w->kp = qlib_round_up(k, QK_KALIGN);
    w->group = group_size > 0 && (size_t)group_size < w->kp ? (size_t)group_size : w->kp;
    w->n_groups = (k + w->group - 1) / w->group;
    w->scale_stride = group_size < 0 ? 0 : w->n_groups;
    w->row_bytes = w->kp * (size_t)bits / 8;
    size_t n_params = group_size < 0 ? 1 : n * w->n_groups;
    t->codes = malloc(n * w->row_bytes);
    t->scales = malloc(n_params * sizeof(uint16_t));
    t->zeros = calloc(n_params * (size_t)bits / 8 + 2, 1);
    uint8_t *c = malloc(w->kp);
    ck_assert(t->codes && t->scales && t->zeros && c);
    unsigned top = (1u << bits) - 1u;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < w->kp; j++)
            c[j] = (uint8_t)(extreme ? top : tu_next(r) % (top + 1u));
        qlib_pack_row(bits, c, w->kp, t->codes + i * w->row_bytes);
    }
    for (size_t i = 0; i < n_params; i++) {
        t->scales[i] = qlib_f32_to_f16((float)(0.001 + 0.05 * tu_uniform(r)));
        qlib_zero_put(t->zeros, i, bits, extreme ? 0u : (unsigned)(tu_next(r) % (top + 1u)));
    }
    free(c);
    w->codes = t->codes;
    w->scales = t->scales;
    w->zeros = sym ? NULL : t->zeros;
}

static void kw_free(kw *t)
{
    free(t->codes);
    free(t->scales);
    free(t->zeros);
}

/* ---- activations: prepared by a kernel table, for both modes ---- */

typedef struct acts {
    size_t m, kp, nbk;
    int8_t *q;
    float *d, *xf;
    int32_t *sum;
} acts;

static void acts_make(acts *a, const qlib_kernels *kern, const qk_xmap *map, const float *x,
                      size_t m, size_t ldx)
{
    a->m = m;
    a->kp = map->kp;
    a->nbk = map->kp / QK_BLOCK;
    a->q = malloc(m * a->kp);
    a->d = malloc(m * a->nbk * sizeof(float));
    a->sum = malloc(m * a->nbk * sizeof(int32_t));
    a->xf = malloc(m * a->kp * sizeof(float));
    ck_assert(a->q && a->d && a->sum && a->xf);
    for (size_t i = 0; i < m; i++) {
        kern->quantize_row(map, x + i * ldx, a->q + i * a->kp, a->d + i * a->nbk,
                           a->sum + i * a->nbk);
        kern->prepare_row(map, x + i * ldx, a->xf + i * a->kp);
    }
}

static void acts_free(acts *a)
{
    free(a->q);
    free(a->d);
    free(a->sum);
    free(a->xf);
}

static void acts_assert_equal(const acts *a, const acts *b, const char *isa)
{
    ck_assert_msg(memcmp(a->q, b->q, a->m * a->kp) == 0, "%s: quantize_row q differs", isa);
    ck_assert_msg(memcmp(a->d, b->d, a->m * a->nbk * sizeof(float)) == 0,
                  "%s: quantize_row d differs", isa);
    ck_assert_msg(memcmp(a->sum, b->sum, a->m * a->nbk * sizeof(int32_t)) == 0,
                  "%s: quantize_row sums differ", isa);
    ck_assert_msg(memcmp(a->xf, b->xf, a->m * a->kp * sizeof(float)) == 0,
                  "%s: prepare_row differs", isa);
}

/* Random activations with a few outlier channels; optionally huge blocks
 * so that q reaches +-127 everywhere, of one sign over 64 channels. */
static float *make_x(tu_rng *r, size_t m, size_t ldx, int extreme)
{
    float *x = tu_alloc_floats(m * ldx);
    for (size_t i = 0; i < m * ldx; i++) {
        double v = tu_normal(r);
        if (i % 61 == 7) v *= 40.0;
        /* extreme: the sign in runs of 64, so that every lane and block
         * of codes at their maximum sums to its largest magnitude */
        x[i] = extreme ? (i / 64 % 2 ? -100.0f : 100.0f) : (float)v;
    }
    return x;
}

#define SENTINEL 1234.5f

/* y (m x n, row stride ldy) from one kernel over [n0, n1), in mode q8 or f32;
 * in q8 with the workspace its entry asks for when ws (else none: the
 * kernel's own, smaller buffer). */
static float *run_gemm_ws(const qlib_kernels *kern, const qk_weights *w, const acts *a, int q8,
                          size_t n0, size_t n1, size_t ldy, float *y, int ws)
{
    if (!y) {
        y = tu_alloc_floats(a->m * ldy);
        for (size_t i = 0; i < a->m * ldy; i++) y[i] = SENTINEL;
    }
    if (q8) {
        qk_acts qa = { a->m, a->kp, a->q, a->d, a->sum, NULL, NULL };
        int16_t *q16 = NULL;
        const qk_q8_ukernel *uk = qk_pick_q8(kern, w, a->m);
        ck_assert_msg(uk != NULL, "%s: no kernel for %d-bit codes", kern->isa, w->bits);
        void *space = NULL;
        size_t ws_bytes = qk_ws_bytes(uk, a->m);
        if (ws && ws_bytes) {
            /* filled with a pattern, as the core's scratch holds whatever
             * the last call left there */
            space = aligned_alloc(64, (ws_bytes + 63) / 64 * 64);
            ck_assert_ptr_nonnull(space);
            memset(space, 0xa5, ws_bytes);
            qa.ws = space;
        }
        if (uk->wants_q16) {
            /* a row stride of kp, at an address that is only 2-byte aligned */
            q16 = malloc((a->m * a->kp + 1) * sizeof *q16);
            ck_assert_ptr_nonnull(q16);
            qk_widen_q(a->q, a->m * a->kp, q16 + 1);
            qa.q16 = q16 + 1;
        }
        uk->run(w, &qa, n0, n1, y, ldy);
        free(q16);
        free(space);
    } else {
        /* a row stride that is not a multiple of 8 floats: unaligned rows */
        size_t ldx = a->kp + 3;
        float *xs = tu_alloc_floats(a->m * ldx + 1);
        for (size_t i = 0; i < a->m; i++)
            memcpy(xs + 1 + i * ldx, a->xf + i * a->kp, a->kp * sizeof(float));
        kern->gemm_f32.run(w, xs + 1, ldx, a->m, n0, n1, y, ldy);
        free(xs);
    }
    return y;
}

static float *run_gemm(const qlib_kernels *kern, const qk_weights *w, const acts *a, int q8,
                       size_t n0, size_t n1, size_t ldy, float *y)
{
    return run_gemm_ws(kern, w, a, q8, n0, n1, ldy, y, 1);
}

static void assert_same_y(const float *got, const float *want, size_t m, size_t n, size_t ldy,
                          const char *what, const char *isa, int bits, size_t group, size_t k)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < ldy; j++) {
            float g = got[i * ldy + j], e = j < n ? want[i * ldy + j] : SENTINEL;
            ck_assert_msg(memcmp(&g, &e, sizeof g) == 0,
                          "%s %s bits=%d group=%zu k=%zu m=%zu: y[%zu][%zu] = %.9g, want %.9g",
                          isa, what, bits, group, k, m, i, j, (double)g, (double)e);
        }
}

/* Whether the kernel that computes m rows of x times w sums in its own
 * order (so it is compared within gemv_bound rather than bit for bit), as
 * its table entry declares. */
static int reassociates(const qlib_kernels *kern, const qk_weights *w, int q8, size_t m)
{
    if (!q8) return kern->gemm_f32.order == QK_ORDER_OWN;
    return qk_pick_q8(kern, w, m)->order == QK_ORDER_OWN;
}

/* |y - y_scalar| for output r of a GEMV. Both kernels sum the same exact
 * integer products (c_j - z_g) q_j, scaled by d_b and s_g, in fixed orders:
 * the scalar one per block, the others per lane of a few columns. A term
 * goes through at most nb + ng + 2 roundings in the first (the product with
 * d, the block chain of its group, the product with s, the group chain).
 * In the AVX2 GEMV at most nb + ng + 3 (fused multiply-adds along the same
 * chains, then the lane sum); in the avx512 GEMV at most nb + ng + 8 + S
 * (the product s d, or the sum of a lane's two group sums, fused
 * multiply-adds along its lane's chains, a 16-lane sum per span of 16384
 * codes and S additions of the spans' sums). With nb blocks and ng groups
 * the difference is then below (2 nb + 2 ng + 10 + S) u T, u = 2^-24, where
 * T = sum_j |d_b q_j| |s_g| |c_j - z_g| bounds every partial sum, and S <=
 * nb / 512. The bound takes 2 nb + 2 ng + 16 + nb / 128 (room for the
 * second-order terms), plus the gradual underflow of up to 8 kp operations. */
static double gemv_bound(const qk_weights *w, const acts *a, size_t r)
{
    size_t nb = (w->k + QK_BLOCK - 1) / QK_BLOCK;
    const uint8_t *row = w->codes + r * w->row_bytes;
    double sum = 0.0;
    for (size_t b = 0; b < nb; b++) {
        size_t g = b * QK_BLOCK / w->group;
        double s = fabs((double)qlib_f16_to_f32(w->scales[r * w->scale_stride + g]));
        int z = qk_zero(w, r, g);
        uint8_t c[QK_BLOCK];
        qk_unpack_block_scalar(w->bits, row, b, c);
        for (int j = 0; j < QK_BLOCK; j++)
            sum += fabs((double)a->d[b] * a->q[b * QK_BLOCK + (size_t)j]) * s * abs(c[j] - z);
    }
    return (double)(2 * nb + 2 * w->n_groups + 16 + nb / 128) * 0x1p-24 * sum +
           (double)(8 * w->kp) * 0x1p-149;
}

static void assert_close_gemv(const float *got, const float *want, const qk_weights *w,
                              const acts *a, size_t ldy, const char *isa, size_t k)
{
    for (size_t j = 0; j < ldy; j++) {
        if (j >= w->n) {
            ck_assert_msg(got[j] == SENTINEL, "%s gemv k=%zu: y[%zu] written", isa, k, j);
            continue;
        }
        double err = fabs((double)got[j] - (double)want[j]), tol = gemv_bound(w, a, j);
        ck_assert_msg(err <= tol,
                      "%s gemv bits=%d group=%zu k=%zu: y[%zu] = %.9g, want %.9g (|diff| %.3g > %.3g)",
                      isa, w->bits, w->group, k, j, (double)got[j], (double)want[j], err, tol);
    }
}

/* One weight shape against every ISA: activations, both modes, the full
 * column range and a split one (what threads do). */
static void check_case(tu_rng *r, int bits, int sym, int group_size, size_t m, size_t n,
                       size_t k, int extreme, const qk_xmap *map_in)
{
    const qlib_kernels *isas[N_ISAS];
    size_t n_isa = available_isas(isas);
    if (n_isa == 0) return;
    kw t;
    kw_make(&t, r, bits, sym, group_size, n, k, extreme);
    size_t ldx = k + 5, ldy = n + 3;
    float *x = make_x(r, m, ldx, extreme);
    qk_xmap map = { k, t.w.kp, NULL, NULL, NULL };
    if (map_in) map = *map_in;
    acts ref;
    acts_make(&ref, &qlib_kernels_scalar, &map, x, m, ldx);
    for (int q8 = 0; q8 < 2; q8++) {
        float *want = run_gemm(&qlib_kernels_scalar, &t.w, &ref, q8, 0, n, ldy, NULL);
        for (size_t s = 0; s < n_isa; s++) {
            acts got_a;
            acts_make(&got_a, isas[s], &map, x, m, ldx);
            acts_assert_equal(&got_a, &ref, isas[s]->isa);
            const char *what = q8 ? "auto" : "f32";
            float *got = run_gemm(isas[s], &t.w, &ref, q8, 0, n, ldy, NULL);
            int loose = reassociates(isas[s], &t.w, q8, m);
            if (loose)
                assert_close_gemv(got, want, &t.w, &ref, ldy, isas[s]->isa, k);
            else
                assert_same_y(got, want, m, n, ldy, what, isas[s]->isa, bits, t.w.group, k);
            /* a table that declares another's bits (vpdpbusd sums the
             * same exact integers into the same lanes as maddubs and
             * pmaddwd) gives them, also where its order is its own */
            const qlib_kernels *plain = isas[s]->same_bits_as;
            if (plain && qlib_kernels_pick(plain->isa, qlib_cpu_features()) == plain) {
                float *base = run_gemm(plain, &t.w, &ref, q8, 0, n, ldy, NULL);
                assert_same_y(got, base, m, n, ldy, what, isas[s]->isa, bits, t.w.group, k);
                free(base);
            }
            /* columns in uneven pieces, as threads would take them, the
             * middle one without a workspace (a task that found none
             * free): the same bits as the whole range */
            float *split = tu_alloc_floats(m * ldy);
            for (size_t i = 0; i < m * ldy; i++) split[i] = SENTINEL;
            size_t cut1 = n / 3, cut2 = cut1 + 1 + n / 2 > n ? n : cut1 + 1 + n / 2;
            run_gemm(isas[s], &t.w, &ref, q8, 0, cut1, ldy, split);
            run_gemm_ws(isas[s], &t.w, &ref, q8, cut1, cut2, ldy, split, 0);
            run_gemm(isas[s], &t.w, &ref, q8, cut2, n, ldy, split);
            assert_same_y(split, loose ? got : want, m, n, ldy, what, isas[s]->isa, bits,
                          t.w.group, k);
            free(split);
            free(got);
            acts_free(&got_a);
        }
        free(want);
    }
    acts_free(&ref);
    free(x);
    kw_free(&t);
}

static const int bit_widths[] = { 2, 3, 4, 8 };
static const int group_sizes[] = { 32, 64, 128, 0, -1 };

/* K around every edge: not a multiple of 32, of 64, of the group; one block. */
START_TEST(test_kernels_bits_groups_k)
{
    static const size_t ks[] = { 24, 100, 160, 300 };
    tu_rng r = { 0x6b65726e656c73ull };
    for (size_t bi = 0; bi < 4; bi++)
        for (int sym = 0; sym < 2; sym++)
            for (size_t gi = 0; gi < 5; gi++)
                for (size_t ki = 0; ki < 4; ki++) {
                    size_t m = 1 + (bi + gi + ki) % 5;   /* 1 (GEMV) and small GEMMs */
                    check_case(&r, bit_widths[bi], sym, group_sizes[gi], m, 37, ks[ki], 0, NULL);
                    if (m != 1)
                        check_case(&r, bit_widths[bi], sym, group_sizes[gi], 1, 29, ks[ki], 0,
                                   NULL);
                }
}
END_TEST

/* M = 1 .. 17 (every row-tile remainder), N not a multiple of any tile. */
START_TEST(test_kernels_rows)
{
    tu_rng r = { 17 };
    for (size_t m = 1; m <= 17; m++) {
        int bits = m % 2 ? 4 : 8;
        check_case(&r, bits, (int)(m % 3 == 0), 64, m, 19 + m, 200, 0, NULL);
    }
    /* around the AVX2 GEMM's panels of 128 rows of x sharing a weight tile */
    static const size_t panel_m[] = { 127, 128, 129, 257 };
    for (size_t i = 0; i < 4; i++)
        for (int bits = 4; bits <= 8; bits += 4)
            check_case(&r, bits, (int)i % 2, 128, panel_m[i], 21, 200, 0, NULL);
}
END_TEST

/* Rows longer than the AVX2 GEMV's per-call table of lane sums of q (512
 * blocks of 32): at the table's edge and past it, where the sums are made
 * per block instead; for the avx512 GEMV, rows of one span of 16384 codes
 * and of two. */
START_TEST(test_kernels_long_rows)
{
    static const size_t ks[] = { 512 * 32, 512 * 32 + 32, 512 * 32 + 100 };
    static const int groups[] = { 32, 128, 0 };
    tu_rng r = { 4242 };
    for (size_t bi = 0; bi < 4; bi++)
        for (size_t ki = 0; ki < 3; ki++)
            check_case(&r, bit_widths[bi], (int)(ki == 1), groups[(bi + ki) % 3], 1, 9, ks[ki], 0,
                       NULL);
}
END_TEST

/* The largest partial sums: every code at its maximum against q = +-127. */
START_TEST(test_kernels_extremes)
{
    tu_rng r = { 99 };
    for (size_t bi = 0; bi < 4; bi++)
        for (int sym = 0; sym < 2; sym++) {
            check_case(&r, bit_widths[bi], sym, 0, 1, 21, 4096 + 96, 1, NULL);
            check_case(&r, bit_widths[bi], sym, 128, 5, 21, 600, 1, NULL);
            check_case(&r, bit_widths[bi], sym, 32, 12, 37, 1100, 1, NULL);
        }
}
END_TEST

/* GEMMs over several of the AVX2 and avx512 tiles' spans of k (1024
 * codes; the avx512 tile in a workspace 4096), the last partial, with
 * groups that straddle the spans (96) or cover the row; with few rows of x
 * (the avx512 small-batch path) and more. */
START_TEST(test_kernels_k_tiles)
{
    static const size_t ks[] = { 1024, 1056, 2100, 3000, 4096, 4192, 8300 };
    static const int groups[] = { 96, 0, 128, 32 };
    tu_rng r = { 777 };
    for (size_t bi = 0; bi < 4; bi++)
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
            for (size_t m = 6; m <= 12; m += 6)
                check_case(&r, bit_widths[bi], (int)(ki % 2), groups[(bi + ki) % 4], m, 19 + m,
                           ks[ki], 0, NULL);
}
END_TEST

/* AWQ-style input scales, an act-order permutation and dropped columns. */
START_TEST(test_kernels_xmap)
{
    tu_rng r = { 7 };
    size_t k = 230, kp = qlib_round_up(k, QK_KALIGN);
    int32_t *perm = malloc(k * sizeof *perm);
    float *scale = tu_alloc_floats(k);
    uint8_t *drop = calloc(k, 1);
    ck_assert(perm && drop);
    for (size_t j = 0; j < k; j++) {
        perm[j] = (int32_t)j;
        scale[j] = (float)(0.25 + 2.0 * tu_uniform(&r));
        drop[j] = j % 17 == 3;
    }
    for (size_t j = k - 1; j > 0; j--) {
        size_t o = (size_t)(tu_next(&r) % (j + 1));
        int32_t tmp = perm[j];
        perm[j] = perm[o];
        perm[o] = tmp;
    }
    const qk_xmap maps[] = {
        { k, kp, NULL, scale, NULL }, { k, kp, perm, NULL, NULL }, { k, kp, perm, scale, NULL },
        { k, kp, perm, scale, drop },
    };
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++) {
        check_case(&r, 4, 0, 32, 1, 27, k, 0, &maps[i]);
        check_case(&r, 4, 1, 128, 6, 27, k, 0, &maps[i]);
        check_case(&r, 8, 0, 0, 3, 27, k, 0, &maps[i]);
    }
    free(perm);
    free(scale);
    free(drop);
}
END_TEST

START_TEST(test_kernels_dequant_row)
{
    const qlib_kernels *isas[N_ISAS];
    size_t n_isa = available_isas(isas);
    tu_rng r = { 5 };
    for (size_t bi = 0; bi < 4; bi++)
        for (size_t gi = 0; gi < 5; gi++) {
            kw t;
            kw_make(&t, &r, bit_widths[bi], (int)(gi % 2), group_sizes[gi], 9, 170, 0);
            float want[192], got[192];
            for (size_t row = 0; row < 9; row++) {
                qlib_kernels_scalar.dequant_row(&t.w, row, want);
                for (size_t s = 0; s < n_isa; s++) {
                    isas[s]->dequant_row(&t.w, row, got);
                    ck_assert_msg(memcmp(got, want, 170 * sizeof(float)) == 0,
                                  "%s dequant_row bits=%d row=%zu", isas[s]->isa,
                                  bit_widths[bi], row);
                }
            }
            kw_free(&t);
        }
}
END_TEST

/* Through qlib_matmul: each ISA equals scalar (the GEMVs that sum in their
 * own order are held to their bound in check_case instead), and 1 and 2
 * threads agree bit for bit, with unaligned x and y, on a matrix big enough
 * to split. */
static void matmul_isa_threads(const char *isa, int compute, size_t m)
{
    tu_rng r = { 321 };
    size_t n = 300, k = 1000, ldx = k + 1, ldy = n + 1;
    /* whether the table's kernel for these weights sums in its own order */
    const qlib_kernels *kern = qlib_kernels_pick(isa, qlib_cpu_features());
    qk_weights probe = { .bits = 4, .symmetric = 0 };
    int own_order = compute == QLIB_COMPUTE_AUTO ? qk_pick_q8(kern, &probe, m)->order == QK_ORDER_OWN
                                                 : kern->gemm_f32.order == QK_ORDER_OWN;
    float *w = tu_alloc_floats(n * k);
    tu_llm_weights(&r, w, n, k, k);
    float *xb = make_x(&r, m * ldx + 1, 1, 0), *x = xb + 1;
    float *y[3];
    static const int threads[3] = { 1, 1, 2 };
    for (int v = 0; v < 3; v++) {
        qlib_ctx *ctx = tu_ctx(threads[v], v == 0 ? "scalar" : isa);
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)compute), QLIB_OK);
        qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, 128, 0, NULL);
        y[v] = tu_alloc_floats(m * ldy + 1);
        ck_assert_int_eq(qlib_matmul(ctx, t, x, m, ldx, y[v] + 1, ldy), QLIB_OK);
        qlib_tensor_destroy(t);
        qlib_ctx_destroy(ctx);
    }
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            size_t o = 1 + i * ldy + j;
            if (!own_order)
                ck_assert_msg(memcmp(&y[1][o], &y[0][o], 4) == 0, "%s vs scalar: y[%zu][%zu]",
                              isa, i, j);
            ck_assert_msg(memcmp(&y[2][o], &y[1][o], 4) == 0, "%s 2 threads: y[%zu][%zu]", isa,
                          i, j);
        }
    for (int v = 0; v < 3; v++) free(y[v]);
    free(xb);
    free(w);
}

START_TEST(test_kernels_matmul_threads)
{
    for (size_t i = 0; i < N_ISAS; i++) {
        if (!qlib_kernels_pick(isa_names[i], qlib_cpu_features())) continue;
        for (size_t m = 1; m <= 3; m += 2) {
            matmul_isa_threads(isa_names[i], QLIB_COMPUTE_AUTO, m);
            matmul_isa_threads(isa_names[i], QLIB_COMPUTE_F32, m);
        }
    }
}
END_TEST

/* ---- fp16 weights (NONE tensors) ---- */

/* Every table (scalar included): its conversion of all 65536 fp16 values
 * equals qlib_f16_to_f32 (NaN for NaN), at every length mod the vector
 * width. */
START_TEST(test_kernels_f16_convert)
{
    const qlib_kernels *isas[N_ISAS + 1] = { &qlib_kernels_scalar };
    size_t n_isa = 1 + available_isas(isas + 1);
    uint16_t *h = malloc(65536 * sizeof *h);
    float *got = tu_alloc_floats(65536);
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    for (size_t s = 0; s < n_isa; s++)
        for (size_t len = 65536 - 9; len <= 65536; len++) {
            memset(got, 0, 65536 * sizeof(float));
            isas[s]->f16_to_f32(h, len, got);
            for (size_t i = 0; i < 65536; i++) {
                float want = i < len ? qlib_f16_to_f32(h[i]) : 0.0f;
                if (isnan(want))
                    ck_assert_msg(isnan(got[i]), "%s: 0x%04zx", isas[s]->isa, i);
                else
                    ck_assert_msg(memcmp(&got[i], &want, 4) == 0, "%s len %zu: 0x%04zx -> %g, want %g",
                                  isas[s]->isa, len, i, (double)got[i], (double)want);
            }
        }
    free(got);
    free(h);
}
END_TEST

/* Every table's fp16 GEMV against the product in double: each output is a
 * sum of k exact products (an fp16 times an fp32 fits in fp32's product
 * with one rounding) in some fixed order, so |y - y_exact| <= (k + 2) u T
 * with T = sum |w x|, u = 2^-24. Rows computed in pieces equal rows computed
 * at once, bit for bit. */
START_TEST(test_kernels_f16_gemv)
{
    static const size_t ks[] = { 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257 };
    const qlib_kernels *isas[N_ISAS + 1] = { &qlib_kernels_scalar };
    size_t n_isa = 1 + available_isas(isas + 1);
    tu_rng r = { 16 };
    for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++)
        for (size_t n = 1; n <= 13; n += 4) {
            size_t k = ks[ki];
            uint16_t *w = malloc(n * k * sizeof *w);
            float *x = tu_alloc_floats(k), y[13], y2[13];
            ck_assert_ptr_nonnull(w);
            for (size_t i = 0; i < n * k; i++) w[i] = qlib_f32_to_f16((float)tu_normal(&r));
            for (size_t j = 0; j < k; j++) x[j] = (float)tu_normal(&r);
            for (size_t s = 0; s < n_isa; s++) {
                isas[s]->gemv_f16.run(w, k, x, 0, n, y);
                size_t cut = n / 2 + 1 < n ? n / 2 + 1 : n;
                isas[s]->gemv_f16.run(w, k, x, 0, cut, y2);
                isas[s]->gemv_f16.run(w, k, x, cut, n, y2);
                for (size_t i = 0; i < n; i++) {
                    double exact = 0.0, mag = 0.0;
                    for (size_t j = 0; j < k; j++) {
                        double p = (double)qlib_f16_to_f32(w[i * k + j]) * x[j];
                        exact += p;
                        mag += fabs(p);
                    }
                    double tol = (double)(k + 2) * 0x1p-24 * mag;
                    ck_assert_msg(fabs((double)y[i] - exact) <= tol,
                                  "%s gemv_f16 n=%zu k=%zu row %zu: %.9g, exact %.9g", isas[s]->isa,
                                  n, k, i, (double)y[i], exact);
                    ck_assert_msg(memcmp(&y[i], &y2[i], 4) == 0, "%s gemv_f16 split row %zu",
                                  isas[s]->isa, i);
                }
            }
            free(x);
            free(w);
        }
}
END_TEST

/* One token through an fp16 tensor: the same bits with 1 and 2 threads on
 * every ISA, within the fp32 bound of the exact product. */
START_TEST(test_kernels_f16_matmul_threads)
{
    tu_rng r = { 17 };
    size_t n = 301, k = 1003;
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(k);
    float *y1 = tu_alloc_floats(n), *y2 = tu_alloc_floats(n);
    for (size_t i = 0; i < n * k; i++) w[i] = (float)tu_normal(&r);
    for (size_t j = 0; j < k; j++) x[j] = (float)tu_normal(&r);
    for (size_t i = 0; i < TU_N_ISAS; i++) {
        const char *isa = tu_isa_names[i];
        if (!qlib_kernels_pick(isa, qlib_cpu_features())) continue;
        qlib_ctx *c1 = tu_ctx(1, isa), *c2 = tu_ctx(2, isa);
        qlib_tensor *t = tu_quantize(c1, w, n, k, k, QLIB_METHOD_NONE, 16, 0, 0, NULL);
        ck_assert_int_eq(qlib_matmul(c1, t, x, 1, k, y1, n), QLIB_OK);
        ck_assert_int_eq(qlib_matmul(c2, t, x, 1, k, y2, n), QLIB_OK);
        float *wh = tu_alloc_floats(n * k);
        ck_assert_int_eq(qlib_dequantize(c1, t, wh, k), QLIB_OK);
        for (size_t row = 0; row < n; row++) {
            double exact = 0.0, mag = 0.0;
            for (size_t j = 0; j < k; j++) {
                exact += (double)wh[row * k + j] * x[j];
                mag += fabs((double)wh[row * k + j] * x[j]);
            }
            ck_assert_msg(fabs((double)y1[row] - exact) <= (double)(k + 2) * 0x1p-24 * mag,
                          "%s row %zu: %.9g, exact %.9g", isa, row, (double)y1[row], exact);
            ck_assert_msg(memcmp(&y1[row], &y2[row], 4) == 0, "%s 2 threads row %zu", isa, row);
        }
        free(wh);
        qlib_tensor_destroy(t);
        qlib_ctx_destroy(c1);
        qlib_ctx_destroy(c2);
    }
    free(w);
    free(x);
    free(y1);
    free(y2);
}
END_TEST

/* Naming an ISA the CPU or build lacks is QLIB_ERR_UNSUPPORTED; the default
 * is QLIB_ISA when set, else the best supported one. */
START_TEST(test_kernels_isa_choice)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    const char *env = getenv("QLIB_ISA");   /* a forced ISA, else the best one */
    const qlib_kernels *forced = qlib_kernels_pick(env && *env ? env : NULL, qlib_cpu_features());
    ck_assert_ptr_nonnull(forced);
    ck_assert_str_eq(qlib_ctx_isa(ctx), forced->isa);
    for (size_t i = 0; i < N_ISAS; i++) {
        qlib_status want = qlib_kernels_pick(isa_names[i], qlib_cpu_features()) ? QLIB_OK
                                                                                 : QLIB_ERR_UNSUPPORTED;
        ck_assert_int_eq(qlib_ctx_set_isa(ctx, isa_names[i]), want);
        if (want == QLIB_OK) ck_assert_str_eq(qlib_ctx_isa(ctx), isa_names[i]);
    }
    ck_assert_int_eq(qlib_ctx_set_isa(ctx, "avx512-imaginary"), QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_ctx_set_isa(ctx, "scalar"), QLIB_OK);
    ck_assert_str_eq(qlib_ctx_isa(ctx), "scalar");
#if defined(__x86_64__)
    ck_assert_ptr_null(qlib_kernels_pick("neon", ~0u));
    ck_assert_ptr_null(qlib_kernels_pick("avx2-vnni", QK_CPU_AVX2 | QK_CPU_FMA | QK_CPU_F16C));
    ck_assert_ptr_null(qlib_kernels_pick("avx2-avx512vnni",
                                         QK_CPU_AVX2 | QK_CPU_FMA | QK_CPU_F16C |
                                             QK_CPU_AVX_VNNI));
    /* AVX512F + VL + VNNI without BW is not enough for the 512-bit table */
    ck_assert_ptr_null(qlib_kernels_pick("avx512", QK_CPU_AVX2 | QK_CPU_FMA | QK_CPU_F16C |
                                                       QK_CPU_AVX512_VNNI));
#elif defined(__aarch64__)
    ck_assert_ptr_null(qlib_kernels_pick("avx2", ~0u));
    ck_assert_ptr_null(qlib_kernels_pick("avx2-vnni", ~0u));
    ck_assert_ptr_null(qlib_kernels_pick("avx2-avx512vnni", ~0u));
    ck_assert_ptr_null(qlib_kernels_pick("avx512", ~0u));
    ck_assert_ptr_null(qlib_kernels_pick("neon-dotprod", QK_CPU_NEON));
#endif
    qlib_ctx_destroy(ctx);
}
END_TEST

/* What the tables declare: every table takes every code width and symmetry
 * in both lists, each entry named <op>_f32_qa8_<w>_<MR>x<NR>c<KR>__<isa>
 * with its tile in the name (a GEMV has MR = 1; a GEMM entry may also serve
 * M = 1), and the tables' ISA names and features as qlib_kernels_pick sees
 * them. */
START_TEST(test_kernels_tables)
{
    static const char *const isa_suffix[][2] = {
        { "scalar", "scalar" }, { "avx2", "avx2" }, { "avx2-vnni", "avxvnni" },
        { "avx2-avx512vnni", "avx512vnni" }, { "avx512", "avx512" }, { "neon", "neon" },
        { "neon-dotprod", "neondot" },
    };
    static const int widths[] = { 2, 3, 4, 8 };
    size_t seen = 0;
    for (size_t i = 0; i < sizeof isa_suffix / sizeof isa_suffix[0]; i++) {
        const qlib_kernels *k = qlib_kernels_pick(isa_suffix[i][0], ~0u);
        if (!k) continue;
        seen++;
        ck_assert_str_eq(k->isa, isa_suffix[i][0]);
        ck_assert_ptr_eq(qlib_kernels_pick(isa_suffix[i][0], k->needs), k);
        char suffix[32];
        snprintf(suffix, sizeof suffix, "__%s", isa_suffix[i][1]);
        for (int list = 0; list < 2; list++) {
            const qk_q8_ukernel *e = list ? k->gemm : k->gemv;
            unsigned n = list ? k->n_gemm : k->n_gemv;
            ck_assert_uint_gt(n, 0);
            for (unsigned j = 0; j < n; j++) {
                const char *name = e[j].name;
                size_t len = strlen(name), sl = strlen(suffix);
                ck_assert_msg(len > sl && strcmp(name + len - sl, suffix) == 0, "%s", name);
                int gemv = strncmp(name, "gemv_f32_qa8_qw", 15) == 0;
                ck_assert_msg(gemv || strncmp(name, "gemm_f32_qa8_qw", 15) == 0, "%s", name);
                ck_assert_msg(!gemv || (e[j].mr == 1 && !list), "%s", name);
                char tile[32];
                snprintf(tile, sizeof tile, "_%ux%uc%u__", e[j].mr, e[j].nr, e[j].kr);
                ck_assert_msg(strstr(name, tile) != NULL, "%s lacks its tile %s", name, tile);
                ck_assert(e[j].order == QK_ORDER_SCALAR || e[j].order == QK_ORDER_OWN);
                ck_assert_ptr_nonnull(e[j].run);
            }
            for (size_t b = 0; b < 4; b++)
                for (int sym = 0; sym <= 1; sym++) {
                    qk_weights w = { .bits = widths[b], .symmetric = sym };
                    ck_assert_msg(qk_pick(e, n, &w) != NULL, "%s %s: no %d-bit %s kernel",
                                  k->isa, list ? "gemm" : "gemv", widths[b],
                                  sym ? "symmetric" : "asymmetric");
                }
        }
        ck_assert_ptr_nonnull(strstr(k->gemm_f32.name, suffix));
        ck_assert_ptr_nonnull(strstr(k->gemv_f16.name, suffix));
        ck_assert_ptr_nonnull(k->quantize_row);
        ck_assert_ptr_nonnull(k->dequant_row);
    }
    ck_assert_uint_ge(seen, 2);
}
END_TEST

Suite *suite_kernels(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tu_tcase("kernels");
    tcase_add_test(tc, test_kernels_isa_choice);
    tcase_add_test(tc, test_kernels_tables);
    tcase_add_test(tc, test_kernels_bits_groups_k);
    tcase_add_test(tc, test_kernels_rows);
    tcase_add_test(tc, test_kernels_extremes);
    tcase_add_test(tc, test_kernels_long_rows);
    tcase_add_test(tc, test_kernels_k_tiles);
    tcase_add_test(tc, test_kernels_xmap);
    tcase_add_test(tc, test_kernels_dequant_row);
    tcase_add_test(tc, test_kernels_matmul_threads);
    tcase_add_test(tc, test_kernels_f16_convert);
    tcase_add_test(tc, test_kernels_f16_gemv);
    tcase_add_test(tc, test_kernels_f16_matmul_threads);
    suite_add_tcase(s, tc);
    return s;
}
