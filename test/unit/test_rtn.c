/* suite_rtn: round to nearest at 8/4/3/2 bits, per tensor, per row and per
 * group (with a partial last group), symmetric and asymmetric; float (NONE)
 * tensors; the sizes of docs/FORMAT.md; quant_error; bad weights. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Fails like ck_assert_msg but costs nothing when it passes (Check records
 * every passing ck_assert with a write to its pipe). */
#define REQUIRE(expr, ...) \
    do { if (!(expr)) ck_abort_msg("'" #expr "' failed: " __VA_ARGS__); } while (0)

Suite *suite_rtn(void);

static const int all_bits[] = { 8, 4, 3, 2 };
static const int all_groups[] = { -1, 0, 32, 64, 96, 128 };
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------ reference math */

/* f rounded to the fp16 grid (f >= 0 and below the fp16 maximum): up = 1 the
 * smallest fp16 >= f, else to nearest with ties to even. Computed in double,
 * where every step below is exact. */
static double f16_round(double f, int up)
{
    double a = fabs(f);
    if (a == 0.0) return 0.0;
    int e;
    frexp(a, &e);                          /* a = m * 2^e, m in [0.5, 1) */
    int ulp_exp = e - 1 - 10;              /* 10 fraction bits */
    if (ulp_exp < -24) ulp_exp = -24;      /* subnormal spacing 2^-24 */
    double ulp = ldexp(1.0, ulp_exp), q = a / ulp;
    double r = up ? ceil(q) : nearbyint(q);  /* nearbyint: ties to even */
    return copysign(r * ulp, f);
}

/* The group scale of DESIGN.md, as the library computes it in float and
 * stores it: asymmetric (max(0,hi) - min(0,lo)) / (2^b - 1), symmetric
 * absmax / (2^(b-1) - 1), rounded up to fp16 (never below the smallest
 * positive fp16, so an all-zero group does not divide by zero). */
static double rtn_scale(float lo, float hi, int bits, int sym)
{
    float s;
    if (sym) s = fmaxf(-lo, hi) / (float)((1 << (bits - 1)) - 1);
    else s = (hi - lo) / (float)((1 << bits) - 1);
    double d = f16_round(s, 1);
    return d > 0.0 ? d : 0x1p-24;
}

/* Checks one block of weights that shares a scale (a group, a row, or the
 * whole tensor): every dequantized weight is an integer multiple of the
 * scale within the b-bit range, and within half a step of the weight.
 * Tolerance: |w - ŵ| <= scale/2 in exact arithmetic; float division w/scale
 * and the zero point -lo/scale are rounded to 2^-24 relative, which moves
 * the rounding boundary by at most scale*maxq*2^-24 and adds |w|*2^-23. */
static void check_block(const float *w, size_t ldw, const float *wh, size_t ldh, size_t r0,
                        size_t r1, size_t c0, size_t c1, int bits, int sym, const char *what)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++) {
            lo = fminf(lo, w[r * ldw + c]);
            hi = fmaxf(hi, w[r * ldw + c]);
        }
    const double s = rtn_scale(lo, hi, bits, sym);
    const int maxq = (1 << bits) - 1, half = 1 << (bits - 1);
    double lmin = 0.0, lmax = 0.0;
    for (size_t r = r0; r < r1; r++)
        for (size_t c = c0; c < c1; c++) {
            double wv = w[r * ldw + c], hv = wh[r * ldh + c], l = hv / s;
            REQUIRE(l == nearbyint(l), "%s: w^[%zu][%zu]=%a is not a multiple of scale %a",
                          what, r, c, hv, s);
            lmin = fmin(lmin, l);
            lmax = fmax(lmax, l);
            double tol = s * (0.5 + maxq * 0x1p-23) + 0x1p-22 * fabs(wv);
            REQUIRE(fabs(wv - hv) <= tol,
                          "%s: w[%zu][%zu]=%.9g w^=%.9g |err|=%.3g > %.3g (scale %.6g)", what, r,
                          c, wv, hv, fabs(wv - hv), tol, s);
            if (wv == 0.0) REQUIRE(hv == 0.0, "%s: zero maps to %g", what, hv);
        }
    if (sym) {
        ck_assert_msg(lmin >= -(half - 1) && lmax <= half - 1, "%s: levels %g..%g", what, lmin,
                      lmax);
    } else {
        ck_assert_msg(lmax - lmin <= maxq && lmin >= -maxq && lmax <= maxq,
                      "%s: levels %g..%g for %d bits", what, lmin, lmax, bits);
    }
}

/* Every group of an n x k RTN tensor against the math. */
static void check_rtn(const float *w, size_t ldw, const float *wh, size_t ldh, size_t n,
                      size_t k, int bits, int group, int sym)
{
    char what[96];
    snprintf(what, sizeof what, "%zux%zu bits=%d group=%d sym=%d", n, k, bits, group, sym);
    if (group < 0) {
        check_block(w, ldw, wh, ldh, 0, n, 0, k, bits, sym, what);
        return;
    }
    size_t g = group > 0 ? (size_t)group : k;
    for (size_t r = 0; r < n; r++)
        for (size_t c0 = 0; c0 < k; c0 += g)
            check_block(w, ldw, wh, ldh, r, r + 1, c0, c0 + g < k ? c0 + g : k, bits, sym, what);
}

/* docs/FORMAT.md: rows of Kp = K rounded up to 64 codes of b bits; fp16
 * scales, one per entry; for asymmetric tensors zero points as a b-bit
 * stream, ceil(entries * b / 8) bytes (the section's one byte of read
 * padding is not storage). G = group if 0 < group < Kp, else Kp;
 * groups = ceil(K / G); entries = N * groups, or 1 per tensor. */
static size_t expected_storage(size_t n, size_t k, int bits, int group, int sym)
{
    size_t kp = (k + 63) / 64 * 64;
    size_t g = group > 0 && (size_t)group < kp ? (size_t)group : kp;
    size_t groups = (k + g - 1) / g;
    size_t entries = group < 0 ? 1 : n * groups;
    size_t bytes = n * (kp * (size_t)bits / 8) + 2 * entries;
    if (!sym) bytes += (entries * (size_t)bits + 7) / 8;
    return bytes;
}

/* ||W - Ŵ||^2 / ||W||^2 in double. */
static double rel_error(const float *w, size_t ldw, const float *wh, size_t ldh, size_t n,
                        size_t k)
{
    double num = 0.0, den = 0.0;
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < k; c++) {
            double d = (double)w[r * ldw + c] - wh[r * ldh + c];
            num += d * d;
            den += (double)w[r * ldw + c] * w[r * ldw + c];
        }
    return den > 0.0 ? num / den : 0.0;
}

static void check_quant_error(const qlib_tensor *t, const float *w, size_t ldw, const float *wh,
                              size_t ldh)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    double want = rel_error(w, ldw, wh, ldh, n, k), got = qlib_tensor_quant_error(t);
    /* Same terms in double, summed in another order. */
    ck_assert_msg(fabs(got - want) <= 1e-9 * want + 1e-300, "quant_error %.17g, recomputed %.17g",
                  got, want);
}

static qlib_status quantize_cfg(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                qlib_method m, int bits, int group, int sym, qlib_tensor **out)
{
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(m, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, bits), QLIB_OK);
    if (m == QLIB_METHOD_RTN) {
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, group), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, sym), QLIB_OK);
    }
    *out = (qlib_tensor *)out;     /* must come back NULL on failure */
    qlib_status s = qlib_quantize(ctx, w, n, k, ldw, cfg, NULL, out);
    qlib_config_destroy(cfg);
    return s;
}

/* Quantizes, dequantizes and checks everything of one RTN tensor. */
static void check_one(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw, int bits,
                      int group, int sym)
{
    qlib_tensor *t = tu_quantize(ctx, w, n, k, ldw, QLIB_METHOD_RTN, bits, group, sym, NULL);
    ck_assert_uint_eq(qlib_tensor_rows(t), n);
    ck_assert_uint_eq(qlib_tensor_cols(t), k);
    ck_assert_int_eq(qlib_tensor_method(t), QLIB_METHOD_RTN);
    ck_assert_int_eq(qlib_tensor_bits(t), bits);
    ck_assert_int_eq(qlib_tensor_group_size(t), group);
    ck_assert_int_eq(qlib_tensor_symmetric(t), sym);
    ck_assert_ptr_null(qlib_tensor_input_scales(t));
    ck_assert_ptr_null(qlib_tensor_permutation(t));
    ck_assert(qlib_tensor_outlier_threshold(t) == 0.0f);
    size_t storage = expected_storage(n, k, bits, group, sym);
    ck_assert_uint_eq(qlib_tensor_storage_bytes(t), storage);
    ck_assert(qlib_tensor_bits_per_weight(t) == (double)storage * 8.0 / ((double)n * (double)k));

    /* Dequantize with a wider stride: the padding is left alone. */
    size_t ldh = k + 5;
    float *wh = tu_alloc_floats(n * ldh);
    for (size_t i = 0; i < n * ldh; i++) wh[i] = -777.0f;
    ck_assert_int_eq(qlib_dequantize(ctx, t, wh, ldh), QLIB_OK);
    for (size_t r = 0; r < n; r++)
        for (size_t c = k; c < ldh; c++) REQUIRE(wh[r * ldh + c] == -777.0f, "padding");
    check_rtn(w, ldw, wh, ldh, n, k, bits, group, sym);
    check_quant_error(t, w, ldw, wh, ldh);
    free(wh);
    qlib_tensor_destroy(t);
}

/* Weights with a NaN in the row padding (ldw > k): the padding is never read. */
static float *make_weights(uint64_t seed, size_t n, size_t k, size_t ldw)
{
    tu_rng r = { seed };
    float *w = tu_alloc_floats(n * ldw);
    for (size_t i = 0; i < n * ldw; i++) w[i] = NAN;
    tu_llm_weights(&r, w, n, k, ldw);
    return w;
}

/* ---------------------------------------------------------------- tests */

static const size_t shapes[][2] = { { 11, 200 }, { 7, 172 }, { 3, 64 }, { 2, 1 }, { 5, 33 },
                                    { 2, 300 } };

START_TEST(test_rtn_error_bound)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    const int bits = all_bits[_i];
    for (size_t si = 0; si < COUNT(shapes); si++) {
        size_t n = shapes[si][0], k = shapes[si][1], ldw = k + 3;
        float *w = make_weights(100 + si, n, k, ldw);
        for (size_t gi = 0; gi < COUNT(all_groups); gi++)
            for (int sym = 0; sym <= 1; sym++)
                check_one(ctx, w, n, k, ldw, bits, all_groups[gi], sym);
        free(w);
    }
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Groups whose values are all zero, constant, one-signed, or one outlier. */
START_TEST(test_rtn_special_groups)
{
    const size_t n = 8, k = 172;
    float *w = tu_alloc_floats(n * k);
    tu_rng r = { 5 };
    tu_llm_weights(&r, w, n, k, k);
    for (size_t c = 0; c < 64; c++) w[0 * k + c] = 0.0f;           /* zero groups of 32, 64 */
    for (size_t c = 0; c < k; c++) w[1 * k + c] = 0.0f;            /* an all-zero row */
    for (size_t c = 0; c < k; c++) w[2 * k + c] = 0.3125f;         /* a constant row */
    for (size_t c = 0; c < k; c++) w[3 * k + c] = -0.0171f;       /* a negative constant */
    for (size_t c = 64; c < 128; c++) w[4 * k + c] = 1.0f / 3.0f;  /* a constant group */
    for (size_t c = 0; c < k; c++) w[5 * k + c] = fabsf(w[5 * k + c]);   /* all >= 0 */
    for (size_t c = 0; c < k; c++) w[6 * k + c] = -fabsf(w[6 * k + c]);  /* all <= 0 */
    w[7 * k + 100] = 40.0f;                                         /* one outlier */
    qlib_ctx *ctx = tu_ctx(1, NULL);
    for (size_t bi = 0; bi < COUNT(all_bits); bi++)
        for (size_t gi = 0; gi < COUNT(all_groups); gi++)
            for (int sym = 0; sym <= 1; sym++)
                check_one(ctx, w, n, k, k, all_bits[bi], all_groups[gi], sym);

    /* An all-zero tensor: all zero back, error 0, nothing divided by zero. */
    memset(w, 0, n * k * sizeof(float));
    float *wh = tu_alloc_floats(n * k);
    for (size_t bi = 0; bi < COUNT(all_bits); bi++)
        for (size_t gi = 0; gi < COUNT(all_groups); gi++)
            for (int sym = 0; sym <= 1; sym++) {
                qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, all_bits[bi],
                                             all_groups[gi], sym, NULL);
                ck_assert(qlib_tensor_quant_error(t) == 0.0);
                ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
                for (size_t i = 0; i < n * k; i++) REQUIRE(wh[i] == 0.0f, "%zu", i);
                qlib_tensor_destroy(t);
            }
    free(wh);
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* A constant group is reproduced to within half a step, and a group whose
 * values sit on the grid of its own scale is reproduced exactly. */
START_TEST(test_rtn_exact_grid)
{
    const size_t n = 2, k = 64;
    float w[2 * 64], wh[2 * 64];
    qlib_ctx *ctx = tu_ctx(1, NULL);
    for (size_t bi = 0; bi < COUNT(all_bits); bi++) {
        int bits = all_bits[bi], maxq = (1 << bits) - 1;
        /* Codes 0..maxq times 0.25 minus 0.25*z: range [-0.25z, 0.25(maxq-z)],
         * scale exactly 0.25 (an fp16), so every value is on the grid. */
        int z = maxq / 3;
        for (size_t i = 0; i < n * k; i++)
            w[i] = 0.25f * (float)((int)(i % (size_t)(maxq + 1)) - z);
        qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, bits, 32, 0, NULL);
        ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
        /* Only groups that hold both ends of the code range have scale 0.25. */
        if (maxq + 1 <= 32) {
            for (size_t i = 0; i < n * k; i++) REQUIRE(wh[i] == w[i], "%d bits", bits);
            ck_assert(qlib_tensor_quant_error(t) == 0.0);
        }
        check_rtn(w, k, wh, k, n, k, bits, 32, 0);
        qlib_tensor_destroy(t);
    }
    qlib_ctx_destroy(ctx);
}
END_TEST

/* A group range whose scale does not fit fp16 is ERR_NUMERIC; one that just
 * fits quantizes within the bound. */
START_TEST(test_rtn_scale_range)
{
    const size_t n = 3, k = 96;
    float *w = make_weights(9, n, k, k);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    for (size_t bi = 0; bi < COUNT(all_bits); bi++)
        for (size_t gi = 0; gi < COUNT(all_groups); gi++)
            for (int sym = 0; sym <= 1; sym++) {
                int bits = all_bits[bi], group = all_groups[gi];
                int steps = sym ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
                qlib_tensor *t;
                float keep = w[1 * k + 40];
                w[1 * k + 40] = 1e9f;                   /* scale >= 1e9/255 > 65504 */
                ck_assert_int_eq(quantize_cfg(ctx, w, n, k, k, QLIB_METHOD_RTN, bits, group, sym,
                                              &t), QLIB_ERR_NUMERIC);
                ck_assert_ptr_null(t);
                ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_quantize"));
                float keep2 = w[1 * k + 41];
                w[1 * k + 40] = -3e38f;                 /* max - min overflows float */
                w[1 * k + 41] = 3e38f;
                ck_assert_int_eq(quantize_cfg(ctx, w, n, k, k, QLIB_METHOD_RTN, bits, group, sym,
                                              &t), QLIB_ERR_NUMERIC);
                ck_assert_ptr_null(t);
                w[1 * k + 41] = keep2;
                w[1 * k + 40] = 60000.0f * (float)steps; /* scale 60000: fits */
                check_one(ctx, w, n, k, k, bits, group, sym);
                w[1 * k + 40] = keep;
            }
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_rtn_nonfinite)
{
    const size_t n = 4, k = 100;
    float *w = make_weights(3, n, k, k);
    static const float bad[] = { NAN, INFINITY, -INFINITY };
    static const size_t where[] = { 0, 57, 4 * 100 - 1 };
    qlib_ctx *ctx = tu_ctx(1, NULL);
    for (size_t bi = 0; bi < COUNT(bad); bi++)
        for (size_t wi = 0; wi < COUNT(where); wi++) {
            float keep = w[where[wi]];
            w[where[wi]] = bad[bi];
            qlib_tensor *t;
            for (size_t gi = 0; gi < COUNT(all_groups); gi++) {
                ck_assert_int_eq(quantize_cfg(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, all_groups[gi],
                                              0, &t), QLIB_ERR_NUMERIC);
                ck_assert_ptr_null(t);
                ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_quantize"));
            }
            ck_assert_int_eq(quantize_cfg(ctx, w, n, k, k, QLIB_METHOD_NONE, 32, 0, 0, &t),
                             QLIB_ERR_NUMERIC);
            ck_assert_ptr_null(t);
            ck_assert_int_eq(quantize_cfg(ctx, w, n, k, k, QLIB_METHOD_NONE, 16, 0, 0, &t),
                             QLIB_ERR_NUMERIC);
            ck_assert_ptr_null(t);
            w[where[wi]] = keep;
        }
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_none_32_exact)
{
    const size_t n = 5, k = 37, ldw = 40;
    float *w = make_weights(21, n, k, ldw);
    w[3] = 1e30f;                          /* far outside fp16: fp32 keeps it */
    w[4] = -1e-40f;                        /* a float subnormal */
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, ldw, QLIB_METHOD_NONE, 32, 0, 0, NULL);
    ck_assert_int_eq(qlib_tensor_method(t), QLIB_METHOD_NONE);
    ck_assert_int_eq(qlib_tensor_bits(t), 32);
    ck_assert_int_eq(qlib_tensor_group_size(t), 0);
    ck_assert_int_eq(qlib_tensor_symmetric(t), 0);
    ck_assert_uint_eq(qlib_tensor_storage_bytes(t), 4 * n * k);
    ck_assert(qlib_tensor_bits_per_weight(t) == 32.0);
    ck_assert(qlib_tensor_quant_error(t) == 0.0);
    float *wh = tu_alloc_floats(n * k);
    ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
    for (size_t r = 0; r < n; r++) ck_assert_mem_eq(wh + r * k, w + r * ldw, k * sizeof(float));
    free(wh);
    free(w);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_none_16_rounding)
{
    const size_t n = 3, k = 70;
    float *w = make_weights(22, n, k, k);
    /* Ties go to even; the ends of the range; subnormal fp16 values. */
    w[0] = 1.0f + 0x1p-11f;          /* halfway 1 .. 1+2^-10: to 1 */
    w[1] = 1.0f + 3 * 0x1p-11f;      /* halfway 1+2^-10 .. 1+2^-9: to 1+2^-9 */
    w[2] = -(1.0f + 0x1p-11f);
    w[3] = 65504.0f;
    w[4] = -65504.0f;
    w[5] = 3e-6f;                    /* fp16 subnormal */
    w[6] = 0x1p-25f;                 /* half the smallest subnormal: to 0 (even) */
    w[7] = 0x1p-25f * 1.5f;          /* to 2^-24 */
    w[8] = 0.0f;
    w[9] = -0.0f;
    w[10] = 1e-30f;
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_NONE, 16, 0, 0, NULL);
    ck_assert_int_eq(qlib_tensor_bits(t), 16);
    ck_assert_uint_eq(qlib_tensor_storage_bytes(t), 2 * n * k);
    ck_assert(qlib_tensor_bits_per_weight(t) == 16.0);
    float *wh = tu_alloc_floats(n * k);
    ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
    for (size_t i = 0; i < n * k; i++)
        REQUIRE((double)wh[i] == f16_round(w[i], 0), "w[%zu]=%a: %a, want %a", i,
                      (double)w[i], (double)wh[i], f16_round(w[i], 0));
    ck_assert(wh[0] == 1.0f && wh[1] == 1.0f + 0x1p-9f && wh[6] == 0.0f && wh[7] == 0x1p-24f);
    check_quant_error(t, w, k, wh, k);
    ck_assert(qlib_tensor_quant_error(t) > 0.0);
    qlib_tensor_destroy(t);

    /* Beyond the fp16 range is ERR_NUMERIC. */
    static const float big[] = { 65505.0f, -65520.0f, 1e10f };
    for (size_t i = 0; i < COUNT(big); i++) {
        float keep = w[33];
        w[33] = big[i];
        ck_assert_int_eq(quantize_cfg(ctx, w, n, k, k, QLIB_METHOD_NONE, 16, 0, 0, &t),
                         QLIB_ERR_NUMERIC);
        ck_assert_ptr_null(t);
        ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_quantize"));
        w[33] = keep;
    }
    free(wh);
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Fewer bits raise the error of the same weights: the step grows by
 * 255/15, 15/7, 7/3, so the mean squared error by about its square. */
START_TEST(test_rtn_error_ordering)
{
    const size_t n = 16, k = 256;
    float *w = make_weights(31, n, k, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    double err[COUNT(all_bits)];
    for (size_t bi = 0; bi < COUNT(all_bits); bi++) {
        qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, all_bits[bi], 64, 0, NULL);
        err[bi] = qlib_tensor_quant_error(t);
        qlib_tensor_destroy(t);
    }
    /* all_bits is 8, 4, 3, 2: each step at least halves the levels. */
    for (size_t bi = 1; bi < COUNT(all_bits); bi++)
        ck_assert_msg(err[bi] > err[bi - 1], "%d bits %g <= %d bits %g", all_bits[bi], err[bi],
                      all_bits[bi - 1], err[bi - 1]);
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_quantize_args)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    float w[4 * 64];
    for (int i = 0; i < 4 * 64; i++) w[i] = 0.01f * (float)(i % 13 - 6);
    qlib_tensor *t;
    ck_assert_int_eq(quantize_cfg(ctx, w, 0, 64, 64, QLIB_METHOD_RTN, 4, 32, 0, &t), QLIB_ERR_ARG);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_quantize"));
    ck_assert_int_eq(quantize_cfg(ctx, w, 4, 0, 64, QLIB_METHOD_RTN, 4, 32, 0, &t), QLIB_ERR_ARG);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(quantize_cfg(ctx, w, 4, 64, 63, QLIB_METHOD_RTN, 4, 32, 0, &t), QLIB_ERR_ARG);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(quantize_cfg(ctx, w, 4, 64, 0, QLIB_METHOD_NONE, 32, 0, 0, &t), QLIB_ERR_ARG);
    ck_assert_ptr_null(t);
    /* n * ldw overflows: rejected before w is read */
    ck_assert_int_eq(quantize_cfg(ctx, w, SIZE_MAX / 2, 64, 64, QLIB_METHOD_RTN, 4, 32, 0, &t),
                     QLIB_ERR_ARG);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(quantize_cfg(ctx, w, 2, 64, SIZE_MAX / 2, QLIB_METHOD_RTN, 4, 32, 0, &t),
                     QLIB_ERR_ARG);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(quantize_cfg(ctx, w, 4, SIZE_MAX, SIZE_MAX, QLIB_METHOD_RTN, 4, 32, 0, &t),
                     QLIB_ERR_ARG);
    ck_assert_ptr_null(t);
    /* Sizes above INT_MAX that do not overflow: not served, w not read. */
    ck_assert_int_eq(quantize_cfg(ctx, w, (size_t)INT_MAX + 1, 1, 1, QLIB_METHOD_RTN, 4, 32, 0,
                                  &t), QLIB_ERR_UNSUPPORTED);
    ck_assert_ptr_null(t);

    /* Dequantize: a stride below k. */
    t = tu_quantize(ctx, w, 4, 64, 64, QLIB_METHOD_RTN, 4, 32, 0, NULL);
    float out[4 * 64];
    ck_assert_int_eq(qlib_dequantize(ctx, t, out, 63), QLIB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_dequantize"));
    ck_assert_int_eq(qlib_dequantize(ctx, t, out, 0), QLIB_ERR_ARG);
    /* n * ldw beyond the address space: refused before anything is written */
    ck_assert_int_eq(qlib_dequantize(ctx, t, out, SIZE_MAX / 2), QLIB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_dequantize"));
    ck_assert_int_eq(qlib_dequantize(ctx, t, out, SIZE_MAX / 4 - 10), QLIB_ERR_ARG);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* The config is read at quantize time and not kept: changing or destroying
 * it afterwards does not change the tensor. */
START_TEST(test_config_not_kept)
{
    const size_t n = 4, k = 128;
    float *w = make_weights(41, n, k, k), *a = tu_alloc_floats(n * k), *b = tu_alloc_floats(n * k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_RTN, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 32), QLIB_OK);
    qlib_tensor *t = NULL;
    ck_assert_int_eq(qlib_quantize(ctx, w, n, k, k, cfg, NULL, &t), QLIB_OK);
    ck_assert_int_eq(qlib_dequantize(ctx, t, a, k), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, 2), QLIB_OK);
    qlib_config_destroy(cfg);
    ck_assert_int_eq(qlib_tensor_bits(t), 4);
    ck_assert_int_eq(qlib_tensor_group_size(t), 32);
    ck_assert_int_eq(qlib_dequantize(ctx, t, b, k), QLIB_OK);
    ck_assert_mem_eq(a, b, n * k * sizeof(float));
    /* nor is the context */
    qlib_ctx_destroy(ctx);
    ctx = tu_ctx(1, NULL);
    ck_assert_int_eq(qlib_dequantize(ctx, t, b, k), QLIB_OK);
    ck_assert_mem_eq(a, b, n * k * sizeof(float));
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(w); free(a); free(b);
}
END_TEST

Suite *suite_rtn(void)
{
    Suite *s = suite_create("rtn");
    TCase *tc = tu_tcase("rtn");
    tcase_add_loop_test(tc, test_rtn_error_bound, 0, (int)COUNT(all_bits));
    tcase_add_test(tc, test_rtn_special_groups);
    tcase_add_test(tc, test_rtn_exact_grid);
    tcase_add_test(tc, test_rtn_scale_range);
    tcase_add_test(tc, test_rtn_nonfinite);
    tcase_add_test(tc, test_none_32_exact);
    tcase_add_test(tc, test_none_16_rounding);
    tcase_add_test(tc, test_rtn_error_ordering);
    tcase_add_test(tc, test_quantize_args);
    tcase_add_test(tc, test_config_not_kept);
    suite_add_tcase(s, tc);
    return s;
}
