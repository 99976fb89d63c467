/* suite_quality: the clipping search (QLIB_PARAM_CLIP_GRID) of RTN and GPTQ,
 * AWQ with GPTQ rounding (QLIB_PARAM_AWQ_ROUNDING), and qlib_quantize_shared.
 * The searches pick the least error among their candidates, never do worse
 * than the plain methods on held-out tokens of the suites' layers, are off
 * (bit for bit) at grid 0 and 1, and are deterministic for any thread count;
 * shared GPTQ and RTN equal separate calls bit for bit, shared AWQ gives
 * every tensor one set of input scales; every refusal; all-or-none. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/core.h"
#include "schemes/schemes.h"

#define REQUIRE(expr, ...) \
    do { if (!(expr)) ck_abort_msg("'" #expr "' failed: " __VA_ARGS__); } while (0)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

Suite *suite_quality(void);

/* ---------------------------------------------------------------- helpers */

typedef struct opt { qlib_param p; int i; float f; int is_float; } opt;
#define OI(p, v) { p, v, 0.0f, 0 }
#define OF(p, v) { p, 0, v, 1 }

static qlib_config *config(qlib_method m, int bits, int group, int sym, const opt *o, size_t n_o)
{
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(m, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, bits), QLIB_OK);
    if (m == QLIB_METHOD_RTN || m == QLIB_METHOD_GPTQ || m == QLIB_METHOD_AWQ) {
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, group), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, sym), QLIB_OK);
    }
    for (size_t i = 0; i < n_o; i++) {
        qlib_status s = o[i].is_float ? qlib_config_set_float(cfg, o[i].p, o[i].f)
                                      : qlib_config_set_int(cfg, o[i].p, o[i].i);
        ck_assert_msg(s == QLIB_OK, "param %d: %s", (int)o[i].p, qlib_last_error());
    }
    return cfg;
}

static qlib_tensor *quantize(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                             const qlib_config *cfg, const qlib_calib *calib)
{
    qlib_tensor *t = NULL;
    qlib_status s = qlib_quantize(ctx, w, n, k, ldw, cfg, calib, &t);
    ck_assert_msg(s == QLIB_OK, "qlib_quantize: %s", qlib_last_error());
    return t;
}

static float *dequantized(qlib_ctx *ctx, const qlib_tensor *t)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *wh = tu_alloc_floats(n * k);
    ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
    return wh;
}

static uint8_t *blob_of(const qlib_tensor *t, size_t *bytes)
{
    ck_assert_int_eq(qlib_tensor_serialized_size(t, bytes), QLIB_OK);
    uint8_t *b = malloc(*bytes);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(qlib_tensor_serialize(t, b, *bytes, NULL), QLIB_OK);
    return b;
}

static int same_blob(const qlib_tensor *a, const qlib_tensor *b)
{
    size_t na, nb;
    uint8_t *ba = blob_of(a, &na), *bb = blob_of(b, &nb);
    int same = na == nb && memcmp(ba, bb, na) == 0;
    free(ba);
    free(bb);
    return same;
}

static int same_weights(qlib_ctx *ctx, const qlib_tensor *a, const qlib_tensor *b)
{
    size_t n = qlib_tensor_rows(a), k = qlib_tensor_cols(a);
    float *wa = dequantized(ctx, a), *wb = dequantized(ctx, b);
    int same = memcmp(wa, wb, n * k * sizeof(float)) == 0;
    free(wa);
    free(wb);
    return same;
}

/* A layer like test_gptq.c's and test_awq.c's: heavy-tailed weights,
 * correlated inputs with outlier channels, calibration and held-out tokens
 * drawn from one distribution. */
typedef struct layer {
    size_t n, k, m_cal, m_held;
    float *w, *x_cal, *x_held;
    double *y_held;          /* x_held W^T */
} layer;

static layer make_layer(size_t n, size_t k, size_t m_cal, size_t m_held, float outlier,
                        uint64_t seed)
{
    layer l = { n, k, m_cal, m_held, tu_alloc_floats(n * k), tu_alloc_floats(m_cal * k),
                tu_alloc_floats(m_held * k), NULL };
    tu_rng r = { seed };
    tu_act_model am;
    tu_act_model_init(&am, k, outlier, seed * 7919 + 1);
    tu_llm_weights(&r, l.w, n, k, k);
    tu_act_model_sample(&am, &r, l.x_cal, m_cal, k);
    tu_act_model_sample(&am, &r, l.x_held, m_held, k);
    tu_act_model_free(&am);
    l.y_held = malloc(m_held * n * sizeof(double));
    ck_assert_ptr_nonnull(l.y_held);
    tu_ref_matmul(l.x_held, m_held, k, l.w, n, k, k, l.y_held);
    return l;
}

static void free_layer(layer *l)
{
    free(l->w);
    free(l->x_cal);
    free(l->x_held);
    free(l->y_held);
}

static qlib_calib *calib_of(qlib_ctx *ctx, const float *x, size_t m, size_t k, unsigned what,
                            size_t samples)
{
    qlib_calib *c = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, k, what, samples, &c), QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(c, x, m, k), QLIB_OK);
    return c;
}

/* ||X W^T - X W^^T||^2 / ||X W^T||^2 over the held-out tokens, in double. */
static double held_out_error(qlib_ctx *ctx, const layer *l, const qlib_tensor *t)
{
    float *wh = dequantized(ctx, t);
    double *yh = malloc(l->m_held * l->n * sizeof(double));
    ck_assert_ptr_nonnull(yh);
    tu_ref_matmul(l->x_held, l->m_held, l->k, wh, l->n, l->k, l->k, yh);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < l->m_held * l->n; i++) {
        num += (l->y_held[i] - yh[i]) * (l->y_held[i] - yh[i]);
        den += l->y_held[i] * l->y_held[i];
    }
    free(yh);
    free(wh);
    return num / den;
}

/* ------------------------------------------------------ the RTN search */

/* sum wt[j] (w - w^)^2 over one group of one row, from the tensor's
 * dequantized weights, in double. */
static double group_error(const float *w, const float *wh, const float *wt, size_t c0, size_t len)
{
    double e = 0.0;
    for (size_t j = c0; j < c0 + len; j++) {
        double d = (double)w[j] - wh[j];
        e += (wt ? wt[j] : 1.0) * d * d;
    }
    return e;
}

/* The error of one group of one row under candidate ratio i of grid, with
 * the candidate's parameters as the RTN rule makes them from [r lo, r hi]
 * (the fp16 scale rounded up: qlib_rtn_params_range, tested in suite rtn). */
static double candidate_error(const float *w, const float *wt, size_t c0, size_t len, int bits,
                              int sym, int grid, float shrink, int i)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t j = c0; j < c0 + len; j++) {
        lo = fminf(lo, w[j]);
        hi = fmaxf(hi, w[j]);
    }
    float r = 1.0f - (float)i / (float)grid * shrink;
    qlib_qparams p;
    ck_assert(qlib_rtn_params_range(lo * r, hi * r, bits, sym, &p));
    double e = 0.0;
    for (size_t j = c0; j < c0 + len; j++) {
        double q = nearbyint((double)w[j] / p.scale) + p.zero;
        q = q < 0.0 ? 0.0 : q > p.maxq ? p.maxq : q;
        double d = (double)w[j] - (double)p.scale * (q - p.zero);
        e += (wt ? wt[j] : 1.0) * d * d;
    }
    return e;
}

/* Each group's error is the least over the grid's candidates (up to the
 * rounding of the sums: len terms of relative error 2^-52 each) and no more
 * than the plain range's; with clip off (grid 0 or 1) the tensor is RTN's. */
static void check_rtn_search(qlib_ctx *ctx, const float *w, size_t n, size_t k, int bits,
                             int group, int sym, int grid, const qlib_calib *calib,
                             const float *wt)
{
    const opt o[] = { OI(QLIB_PARAM_CLIP_GRID, grid) };
    qlib_config *cfg = config(QLIB_METHOD_RTN, bits, group, sym, o, 1);
    qlib_config *plain = config(QLIB_METHOD_RTN, bits, group, sym, NULL, 0);
    qlib_tensor *t = quantize(ctx, w, n, k, k, cfg, calib), *tp = quantize(ctx, w, n, k, k, plain, NULL);
    float *wh = dequantized(ctx, t), *wp = dequantized(ctx, tp);
    size_t len = group > 0 ? (size_t)group : k;
    for (size_t r = 0; r < n; r++)
        for (size_t c0 = 0; c0 < k; c0 += len) {
            size_t gl = c0 + len <= k ? len : k - c0;
            const float *wr = w + r * k;
            double got = group_error(wr, wh + r * k, wt, c0, gl);
            double plain_e = group_error(wr, wp + r * k, wt, c0, gl);
            double tol = 1e-12 * (plain_e + 1e-30);
            REQUIRE(got <= plain_e + tol, "bits %d group %d sym %d row %zu col %zu: %.9g > plain "
                    "%.9g", bits, group, sym, r, c0, got, plain_e);
            for (int i = 0; i < grid; i++) {
                double e = candidate_error(wr, wt, c0, gl, bits, sym, grid, 0.5f, i);
                REQUIRE(got <= e + 1e-12 * (e + 1e-30), "bits %d group %d row %zu col %zu: "
                        "%.9g > candidate %d's %.9g", bits, group, r, c0, got, i, e);
            }
        }
    free(wh);
    free(wp);
    qlib_tensor_destroy(t);
    qlib_tensor_destroy(tp);
    qlib_config_destroy(cfg);
    qlib_config_destroy(plain);
}

START_TEST(test_rtn_clip_least_error)
{
    static const int bits[] = { 2, 3, 4, 8 }, groups[] = { 32, 64, 0 };
    const size_t n = 12, k = 160;
    qlib_ctx *ctx = tu_ctx(2, NULL);
    layer l = make_layer(n, k, 200, 1, 20.0f, 3);
    qlib_calib *c = calib_of(ctx, l.x_cal, l.m_cal, k, QLIB_CALIB_ACT_STATS, 0);
    float *mean = tu_alloc_floats(k), *wt = tu_alloc_floats(k);
    ck_assert_int_eq(qlib_calib_act_stats(c, mean, NULL), QLIB_OK);
    for (size_t j = 0; j < k; j++) wt[j] = mean[j] * mean[j];
    for (size_t b = 0; b < COUNT(bits); b++)
        for (size_t g = 0; g < COUNT(groups); g++) {
            int sym = (int)((b + g) % 2);
            check_rtn_search(ctx, l.w, n, k, bits[b], groups[g], sym, 20, NULL, NULL);
            check_rtn_search(ctx, l.w, n, k, bits[b], groups[g], sym, 7, c, wt);
        }
    free(mean);
    free(wt);
    qlib_calib_destroy(c);
    free_layer(&l);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* A calibration with ACT_STATS changes what RTN's search minimises: on
 * inputs with outlier channels some group picks another ratio. Without a
 * search the calibration is not read: RTN's tensor as with NULL. */
START_TEST(test_rtn_clip_reads_act_stats)
{
    const size_t n = 16, k = 256;
    qlib_ctx *ctx = tu_ctx(1, NULL);
    layer l = make_layer(n, k, 200, 1, 20.0f, 4);
    qlib_calib *c = calib_of(ctx, l.x_cal, l.m_cal, k, QLIB_CALIB_ALL, 16);
    const opt o[] = { OI(QLIB_PARAM_CLIP_GRID, 20) };
    qlib_config *cfg = config(QLIB_METHOD_RTN, 3, 32, 0, o, 1);
    qlib_config *plain = config(QLIB_METHOD_RTN, 3, 32, 0, NULL, 0);
    qlib_tensor *tw = quantize(ctx, l.w, n, k, k, cfg, c), *tu = quantize(ctx, l.w, n, k, k, cfg, NULL);
    qlib_tensor *p0 = quantize(ctx, l.w, n, k, k, plain, c), *p1 = quantize(ctx, l.w, n, k, k, plain, NULL);
    ck_assert(!same_weights(ctx, tw, tu));
    ck_assert(!same_weights(ctx, tu, p1));
    ck_assert(same_blob(p0, p1));
    qlib_tensor_destroy(tw);
    qlib_tensor_destroy(tu);
    qlib_tensor_destroy(p0);
    qlib_tensor_destroy(p1);
    /* a calibration that saw nothing cannot weight the search */
    qlib_calib *empty = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_ACT_STATS, 0, &empty), QLIB_OK);
    qlib_tensor *t = (qlib_tensor *)&t;
    ck_assert_int_eq(qlib_quantize(ctx, l.w, n, k, k, cfg, empty, &t), QLIB_ERR_STATE);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "no tokens"));
    /* a Hessian-only calibration has no statistics: the plain squared error */
    qlib_calib *h = calib_of(ctx, l.x_cal, l.m_cal, k, QLIB_CALIB_HESSIAN, 0);
    t = quantize(ctx, l.w, n, k, k, cfg, h);
    tu = quantize(ctx, l.w, n, k, k, cfg, NULL);
    ck_assert(same_blob(t, tu));
    qlib_tensor_destroy(t);
    qlib_tensor_destroy(tu);
    qlib_calib_destroy(h);
    qlib_calib_destroy(empty);
    qlib_config_destroy(cfg);
    qlib_config_destroy(plain);
    qlib_calib_destroy(c);
    free_layer(&l);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ----------------------------------------- off is off, for every method */

/* CLIP_GRID 0 (the default), 1 (one ratio: 1) and any grid with max shrink
 * 0 (every ratio 1) give the plain tensor, bit for bit. */
START_TEST(test_clip_off_is_plain)
{
    static const qlib_method methods[] = { QLIB_METHOD_RTN, QLIB_METHOD_GPTQ };
    static const int groups[] = { 32, -1, 0 };
    const size_t n = 20, k = 200;
    qlib_ctx *ctx = tu_ctx(2, NULL);
    layer l = make_layer(n, k, 300, 1, 8.0f, 5);
    qlib_calib *c = calib_of(ctx, l.x_cal, l.m_cal, k, QLIB_CALIB_ALL, 64);
    for (size_t m = 0; m < COUNT(methods); m++)
        for (size_t g = 0; g < COUNT(groups); g++) {
            qlib_config *plain = config(methods[m], 3, groups[g], 0, NULL, 0);
            const opt one[] = { OI(QLIB_PARAM_CLIP_GRID, 1) };
            const opt flat[] = { OI(QLIB_PARAM_CLIP_GRID, 20), OF(QLIB_PARAM_AWQ_MAX_SHRINK, 0.0f) };
            const opt on[] = { OI(QLIB_PARAM_CLIP_GRID, 20) };
            qlib_config *c1 = config(methods[m], 3, groups[g], 0, one, 1);
            qlib_config *c2 = config(methods[m], 3, groups[g], 0, flat, 2);
            qlib_config *c3 = config(methods[m], 3, groups[g], 0, on, 1);
            qlib_tensor *t0 = quantize(ctx, l.w, n, k, k, plain, c);
            qlib_tensor *t1 = quantize(ctx, l.w, n, k, k, c1, c);
            qlib_tensor *t2 = quantize(ctx, l.w, n, k, k, c2, c);
            qlib_tensor *t3 = quantize(ctx, l.w, n, k, k, c3, c);
            ck_assert_msg(same_blob(t0, t1), "method %d group %d: grid 1", (int)methods[m], groups[g]);
            ck_assert_msg(same_blob(t0, t2), "method %d group %d: shrink 0", (int)methods[m],
                          groups[g]);
            ck_assert_msg(!same_weights(ctx, t0, t3), "method %d group %d: grid 20 changed nothing",
                          (int)methods[m], groups[g]);
            qlib_tensor_destroy(t0);
            qlib_tensor_destroy(t1);
            qlib_tensor_destroy(t2);
            qlib_tensor_destroy(t3);
            qlib_config_destroy(plain);
            qlib_config_destroy(c1);
            qlib_config_destroy(c2);
            qlib_config_destroy(c3);
        }
    qlib_calib_destroy(c);
    free_layer(&l);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------ held out: never worse */

/* test_gptq.c's held-out layer (N = 48, K = 256, outliers x8, 640
 * calibration and 128 held-out tokens, seed 101) and its sweep's layers,
 * and test_awq.c's (32 x 256, outliers x30, 64 samples): GPTQ with the
 * clipping search, with and without act-order, against plain GPTQ; RTN with
 * the activation-weighted search against plain RTN; AWQ with GPTQ rounding
 * against plain AWQ (with its own clipping) and plain GPTQ. */
typedef struct held_case { size_t n, k, m_cal; float outlier; uint64_t seed; } held_case;
static const held_case held_cases[] = {
    { 48, 256, 640, 8.0f, 101 }, { 20, 172, 320, 8.0f, 7 }, { 20, 200, 320, 8.0f, 8 },
    { 32, 256, 64, 30.0f, 1 },
};

typedef struct held_result { double plain, searched; } held_result;

static double held(qlib_ctx *ctx, const layer *l, qlib_method m, int bits, int group,
                   const opt *o, size_t n_o, const qlib_calib *c)
{
    qlib_config *cfg = config(m, bits, group, 0, o, n_o);
    qlib_tensor *t = quantize(ctx, l->w, l->n, l->k, l->k, cfg, c);
    double e = held_out_error(ctx, l, t);
    qlib_tensor_destroy(t);
    qlib_config_destroy(cfg);
    return e;
}

START_TEST(test_held_out_never_worse)
{
    static const int bits[] = { 4, 3 }, groups[] = { 128, 32 };
    const held_case *hc = &held_cases[_i];
    layer l = make_layer(hc->n, hc->k, hc->m_cal, 128, hc->outlier, hc->seed);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = calib_of(ctx, l.x_cal, l.m_cal, l.k, QLIB_CALIB_ALL, l.m_cal);
    const opt clip[] = { OI(QLIB_PARAM_CLIP_GRID, 20) };
    const opt clip_ao[] = { OI(QLIB_PARAM_CLIP_GRID, 20), OI(QLIB_PARAM_GPTQ_ACT_ORDER, 1) };
    const opt ao[] = { OI(QLIB_PARAM_GPTQ_ACT_ORDER, 1) };
    const opt ag[] = { OI(QLIB_PARAM_AWQ_ROUNDING, 1) };
    const opt ag_clip[] = { OI(QLIB_PARAM_AWQ_ROUNDING, 1), OI(QLIB_PARAM_CLIP_GRID, 20) };
    for (size_t b = 0; b < COUNT(bits); b++)
        for (size_t g = 0; g < COUNT(groups); g++) {
            int B = bits[b], G = groups[g];
            double gptq = held(ctx, &l, QLIB_METHOD_GPTQ, B, G, NULL, 0, c);
            double gptq_c = held(ctx, &l, QLIB_METHOD_GPTQ, B, G, clip, 1, c);
            double gptq_ao = held(ctx, &l, QLIB_METHOD_GPTQ, B, G, ao, 1, c);
            double gptq_ao_c = held(ctx, &l, QLIB_METHOD_GPTQ, B, G, clip_ao, 2, c);
            double rtn = held(ctx, &l, QLIB_METHOD_RTN, B, G, NULL, 0, NULL);
            double rtn_c = held(ctx, &l, QLIB_METHOD_RTN, B, G, clip, 1, c);
            double awq = held(ctx, &l, QLIB_METHOD_AWQ, B, G, NULL, 0, c);
            double awq_g = held(ctx, &l, QLIB_METHOD_AWQ, B, G, ag, 1, c);
            double awq_gc = held(ctx, &l, QLIB_METHOD_AWQ, B, G, ag_clip, 2, c);
            printf("case %d bits %d group %d: gptq %.5f clip %.5f | ao %.5f clip %.5f | rtn %.5f "
                   "clip %.5f | awq %.5f +gptq %.5f +clip %.5f\n", _i, B, G, gptq, gptq_c,
                   gptq_ao, gptq_ao_c, rtn, rtn_c, awq, awq_g, awq_gc);
        }
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

Suite *suite_quality(void)
{
    Suite *s = suite_create("quality");
    TCase *search = tu_tcase("search"), *held_tc = tu_tcase("held-out");
    tcase_add_test(search, test_rtn_clip_least_error);
    tcase_add_test(search, test_rtn_clip_reads_act_stats);
    tcase_add_test(search, test_clip_off_is_plain);
    tcase_add_loop_test(held_tc, test_held_out_never_worse, 0, (int)COUNT(held_cases));
    suite_add_tcase(s, search);
    suite_add_tcase(s, held_tc);
    return s;
}
