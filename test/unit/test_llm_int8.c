/* LLM.int8(): per-row int8 weights, and the matmul that sends outlier input
 * columns through fp32 and the rest through int8 x int8. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

Suite *suite_llm_int8(void);

#define OUTLIER_MAG 20.0f

static qlib_tensor *llm_int8(qlib_ctx *ctx, const float *w, size_t n, size_t k, float thr)
{
    qlib_config *cfg = NULL;
    qlib_tensor *t = NULL;
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_LLM_INT8, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, thr), QLIB_OK);
    qlib_status s = qlib_quantize(ctx, w, n, k, k, cfg, NULL, &t);
    ck_assert_msg(s == QLIB_OK, "qlib_quantize: %s", qlib_last_error());
    qlib_config_destroy(cfg);
    return t;
}

static void normal_acts(tu_rng *r, float *x, size_t m, size_t k)
{
    for (size_t i = 0; i < m * k; i++) x[i] = (float)tu_normal(r);
}

/* x[i][c] = +-20 * U(0.75, 1.25) */
static void put_outlier(tu_rng *r, float *x, size_t k, size_t i, size_t c)
{
    float v = OUTLIER_MAG * (float)(0.75 + 0.5 * tu_uniform(r));
    x[i * k + c] = tu_uniform(r) < 0.5 ? -v : v;
}

static void outlier_acts(tu_rng *r, float *x, size_t m, size_t k, const size_t *cols,
                         size_t n_cols)
{
    normal_acts(r, x, m, k);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n_cols; j++) put_outlier(r, x, k, i, cols[j]);
}

static float *run(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m)
{
    size_t n = qlib_tensor_rows(t);
    float *y = tu_alloc_floats(m * n);
    qlib_status s = qlib_matmul(ctx, t, x, m, qlib_tensor_cols(t), y, n);
    ck_assert_msg(s == QLIB_OK, "qlib_matmul: %s", qlib_last_error());
    return y;
}

static float *dequantized(qlib_ctx *ctx, const qlib_tensor *t)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *wh = tu_alloc_floats(n * k);
    ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
    return wh;
}

static void assert_same_bits(const float *a, const float *b, size_t count, const char *what)
{
    ck_assert_msg(memcmp(a, b, count * sizeof(float)) == 0, "%s: results differ", what);
}

/* ---- quantization ---- */

START_TEST(test_quantize_per_row)
{
    size_t n = 37, k = 200;
    tu_rng r = { 11 };
    float *w = tu_alloc_floats(n * k);
    tu_llm_weights(&r, w, n, k, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = llm_int8(ctx, w, n, k, 6.0f);
    ck_assert_int_eq(qlib_tensor_method(t), QLIB_METHOD_LLM_INT8);
    ck_assert_int_eq(qlib_tensor_bits(t), 8);
    ck_assert_int_eq(qlib_tensor_group_size(t), 0);
    ck_assert_int_eq(qlib_tensor_symmetric(t), 1);
    ck_assert(qlib_tensor_outlier_threshold(t) == 6.0f);
    ck_assert_ptr_null(qlib_tensor_input_scales(t));
    /* one byte per code (rows padded to 64) and one fp16 scale per row */
    ck_assert_uint_eq(qlib_tensor_storage_bytes(t), n * 256 + n * 2);

    /* Symmetric 8-bit per row is RTN's per-channel INT8: the same weights. */
    qlib_tensor *rtn = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 8, 0, 1, NULL);
    float *wh = dequantized(ctx, t), *wr = dequantized(ctx, rtn);
    assert_same_bits(wh, wr, n * k, "LLM.int8() vs RTN INT8 weights");

    /* |w - w^| <= scale/2, the scale being absmax/127 rounded up to fp16
     * (at most 2^-10 above); and quant_error is ||W - W^||^2 / ||W||^2. */
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        float amax = 0.0f;
        for (size_t j = 0; j < k; j++) amax = fmaxf(amax, fabsf(w[i * k + j]));
        double half_step = amax / 127.0 * (1.0 + 1.0 / 1024.0) / 2.0;
        for (size_t j = 0; j < k; j++) {
            double d = (double)w[i * k + j] - wh[i * k + j];
            ck_assert_msg(fabs(d) <= half_step * (1.0 + 1e-6), "w[%zu][%zu] off by %g > %g", i,
                          j, fabs(d), half_step);
            num += d * d;
            den += (double)w[i * k + j] * w[i * k + j];
        }
    }
    ck_assert_double_eq_tol(qlib_tensor_quant_error(t), num / den, 1e-6 * num / den);
    free(w);
    free(wh);
    free(wr);
    qlib_tensor_destroy(t);
    qlib_tensor_destroy(rtn);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_config)
{
    qlib_config *cfg = NULL;
    float v = 0.0f;
    int b = 0;
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_LLM_INT8, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_get_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, &v), QLIB_OK);
    ck_assert(v == 6.0f);
    ck_assert_int_eq(qlib_config_get_int(cfg, QLIB_PARAM_BITS, &b), QLIB_OK);
    ck_assert_int_eq(b, 8);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, 16), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, 8), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 128), QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 0), QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, 0), QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_GPTQ_DAMP, 0.1f),
                     QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, NAN), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, INFINITY),
                     QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, -1.0f), QLIB_OK);
    ck_assert_int_eq(qlib_config_get_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, &v), QLIB_OK);
    ck_assert(v == -1.0f);
    qlib_config_destroy(cfg);

    /* The threshold is not an option of the other methods. */
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_RTN, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, 6.0f),
                     QLIB_ERR_UNSUPPORTED);
    qlib_config_destroy(cfg);
}
END_TEST

/* ---- accuracy ----
 * Rounding x to a step d adds noise of variance d^2/12 per element, so the
 * output noise it causes has expected squared norm sum over the rows of x of
 * sum_j d_j^2/12 * ||W^[:, j]||^2. That predicts the activation error of both
 * paths from the data: per-row int8 has one step per row, set by the
 * outliers (~20/127); the decomposed path has one step per block of 32 set by
 * the remaining N(0, 1) values (~2.5/127), and the outlier columns exact. */

typedef struct noise_pred { double row, dec; } noise_pred;

static noise_pred predict_noise(const float *x, size_t m, size_t k, const float *wh, size_t n,
                                const uint8_t *mask)
{
    double *colsq = calloc(k, sizeof(double));
    ck_assert_ptr_nonnull(colsq);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < k; j++) colsq[j] += (double)wh[r * k + j] * wh[r * k + j];
    noise_pred p = { 0.0, 0.0 };
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * k;
        double amax = 0.0, all = 0.0;
        for (size_t j = 0; j < k; j++) {
            amax = fmax(amax, fabs(xi[j]));
            all += colsq[j];
        }
        p.row += (amax / 127.0) * (amax / 127.0) / 12.0 * all;
        for (size_t b = 0; b < k; b += 32) {
            double bmax = 0.0, bsq = 0.0;
            for (size_t j = b; j < b + 32 && j < k; j++) {
                if (mask[j]) continue;
                bmax = fmax(bmax, fabs(xi[j]));
                bsq += colsq[j];
            }
            p.dec += (bmax / 127.0) * (bmax / 127.0) / 12.0 * bsq;
        }
    }
    free(colsq);
    return p;
}

/* x with each row rounded to int8 with one absmax scale: the paper's
 * vector-wise quantization without the decomposition. */
static double *per_row_int8_matmul(const float *x, size_t m, size_t k, const float *wh, size_t n)
{
    float *xq = tu_alloc_floats(m * k);
    for (size_t i = 0; i < m; i++) {
        float amax = 0.0f;
        for (size_t j = 0; j < k; j++) amax = fmaxf(amax, fabsf(x[i * k + j]));
        float d = amax / 127.0f;
        for (size_t j = 0; j < k; j++) xq[i * k + j] = d * nearbyintf(x[i * k + j] / d);
    }
    double *y = malloc(m * n * sizeof(double));
    ck_assert_ptr_nonnull(y);
    tu_ref_matmul(xq, m, k, wh, n, k, k, y);
    free(xq);
    return y;
}

static double norm_d(const double *a, size_t count)
{
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += a[i] * a[i];
    return sqrt(s);
}

static double dist_dd(const double *a, const double *b, size_t count)
{
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

static double dist_fd(const float *a, const double *b, size_t count)
{
    double s = 0.0;
    for (size_t i = 0; i < count; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

static void outlier_mask(const float *x, size_t m, size_t k, float thr, uint8_t *mask)
{
    memset(mask, 0, k);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < k; j++)
            if (fabsf(x[i * k + j]) > thr) mask[j] = 1;
}

static void check_accuracy(size_t m)
{
    size_t n = 128, k = 1024, mn = m * n;
    const size_t cols[3] = { 5, 300, 1000 };
    tu_rng r = { 100 + m };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    tu_llm_weights(&r, w, n, k, k);
    outlier_acts(&r, x, m, k, cols, 3);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = llm_int8(ctx, w, n, k, 6.0f);
    float *wh = dequantized(ctx, t);
    double *ref = malloc(mn * sizeof(double)), *refq = malloc(mn * sizeof(double));
    ck_assert(ref && refq);
    tu_ref_matmul(x, m, k, w, n, k, k, ref);       /* fp32 weights */
    tu_ref_matmul(x, m, k, wh, n, k, k, refq);     /* int8 weights, exact activations */

    float *y_dec = run(ctx, t, x, m);
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_F32), QLIB_OK);
    float *y_f32 = run(ctx, t, x, m);
    double *y_row = per_row_int8_matmul(x, m, k, wh, n);

    uint8_t mask[1024];
    outlier_mask(x, m, k, 6.0f, mask);
    noise_pred p = predict_noise(x, m, k, wh, n, mask);
    double scale = norm_d(ref, mn), p_row = sqrt(p.row) / scale, p_dec = sqrt(p.dec) / scale;
    /* the data separates the two paths: the outliers set the per-row step */
    ck_assert_msg(p_row >= 5.0 * p_dec, "predicted noise: per-row %g, decomposed %g", p_row,
                  p_dec);

    /* The activation error alone (against exact activations with the same
     * int8 weights) follows the prediction within a factor 1.5 in norm; the
     * noise is a sum over >= 128 outputs, each of 1024 rounding errors, so
     * its norm is within a few percent of its expectation. */
    double a_dec = dist_fd(y_dec, refq, mn) / scale, a_row = dist_dd(y_row, refq, mn) / scale;
    ck_assert_msg(a_dec <= 1.5 * p_dec, "decomposed activation error %g, predicted %g", a_dec,
                  p_dec);
    ck_assert_msg(a_row >= p_row / 1.5, "per-row activation error %g, predicted %g", a_row,
                  p_row);

    /* Against the fp32 result: the decomposed output is about as close as
     * int8 weights with fp32 activations (at most the small predicted
     * activation error farther). Per-row int8 activations are farther: the
     * weight and activation errors are independent, so their squares add
     * (the cross term is ~1/sqrt(outputs) of the product of the norms). */
    double e_f32 = dist_fd(y_f32, ref, mn) / scale, e_dec = dist_fd(y_dec, ref, mn) / scale;
    double e_row = dist_dd(y_row, ref, mn) / scale;
    double dec_bound = e_f32 + 1.5 * p_dec;                      /* triangle inequality */
    double row_floor = sqrt(e_f32 * e_f32 + p_row * p_row / 2.25);
    ck_assert_msg(e_dec <= dec_bound, "decomposed %g, fp32 activations %g, bound %g", e_dec,
                  e_f32, dec_bound);
    ck_assert_msg(e_row / e_dec >= row_floor / dec_bound,
                  "per-row %g vs decomposed %g: ratio below %g", e_row, e_dec,
                  row_floor / dec_bound);
    /* and the activation error alone shrinks by the ratio of the steps */
    ck_assert_msg(a_row / a_dec >= (p_row / p_dec) / 2.25, "activation error %g vs %g", a_row,
                  a_dec);

    free(w);
    free(x);
    free(wh);
    free(ref);
    free(refq);
    free(y_dec);
    free(y_f32);
    free(y_row);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}

START_TEST(test_accuracy_one_row) { check_accuracy(1); }
END_TEST

START_TEST(test_accuracy_rows) { check_accuracy(8); }
END_TEST

/* ---- exactness of the split ---- */

/* The ISAs to run, ii = 0 .. TU_N_ISAS: the scalar reference, the others by
 * name when this CPU has them, and (NULL) the default pick. */
static const char *isa_at(size_t ii)
{
    return ii < TU_N_ISAS ? tu_isa_names[ii] : NULL;
}

static qlib_ctx *ctx_for_isa(int threads, const char *isa)
{
    qlib_ctx *ctx = tu_ctx(threads, NULL);
    if (isa && qlib_ctx_set_isa(ctx, isa) != QLIB_OK) {
        qlib_ctx_destroy(ctx);
        return NULL;
    }
    return ctx;
}

START_TEST(test_below_threshold_is_pure_int8)
{
    size_t n = 70, k = 200;
    const size_t cols[2] = { 3, 150 };
    tu_rng r = { 21 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(17 * k);
    tu_llm_weights(&r, w, n, k, k);
    outlier_acts(&r, x, 17, k, cols, 2);
    for (size_t ii = 0; ii <= TU_N_ISAS; ii++) {
        qlib_ctx *ctx = ctx_for_isa(1, isa_at(ii));
        if (!ctx) continue;
        qlib_tensor *huge = llm_int8(ctx, w, n, k, 1e30f), *zero = llm_int8(ctx, w, n, k, 0.0f);
        qlib_tensor *neg = llm_int8(ctx, w, n, k, -1.0f);
        qlib_tensor *rtn = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 8, 0, 1, NULL);
        const size_t ms[3] = { 1, 5, 17 };
        for (size_t mi = 0; mi < 3; mi++) {
            float *a = run(ctx, huge, x, ms[mi]), *b = run(ctx, zero, x, ms[mi]);
            float *c = run(ctx, neg, x, ms[mi]), *d = run(ctx, rtn, x, ms[mi]);
            assert_same_bits(a, b, ms[mi] * n, "threshold 1e30 vs 0");
            assert_same_bits(c, b, ms[mi] * n, "threshold -1 vs 0");
            assert_same_bits(d, b, ms[mi] * n, "RTN INT8 vs threshold 0");
            free(a);
            free(b);
            free(c);
            free(d);
        }
        qlib_tensor_destroy(huge);
        qlib_tensor_destroy(zero);
        qlib_tensor_destroy(neg);
        qlib_tensor_destroy(rtn);
        qlib_ctx_destroy(ctx);
    }
    free(w);
    free(x);
}
END_TEST

/* The decomposed result is the int8 path on x with the outlier columns
 * zeroed (in every row) plus the fp32 products of those columns: checked with
 * outliers that occur in one row only, at a column in the last, partial
 * block. The fp32 part sums n_out products in fp32, so it may differ from
 * the double reference by (n_out + 1) roundings of the terms' magnitude. */
static void check_split(qlib_ctx *ctx, size_t m, size_t n, size_t k, const size_t *cols,
                        size_t n_cols, size_t outlier_row)
{
    tu_rng r = { 31 + m };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k), *xz = tu_alloc_floats(m * k);
    tu_llm_weights(&r, w, n, k, k);
    normal_acts(&r, x, m, k);
    for (size_t j = 0; j < n_cols; j++) put_outlier(&r, x, k, outlier_row, cols[j]);
    memcpy(xz, x, m * k * sizeof(float));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n_cols; j++) xz[i * k + cols[j]] = 0.0f;

    qlib_tensor *t = llm_int8(ctx, w, n, k, 6.0f), *plain = llm_int8(ctx, w, n, k, 0.0f);
    float *wh = dequantized(ctx, t);
    float *y = run(ctx, t, x, m), *y0 = run(ctx, plain, xz, m);
    for (size_t i = 0; i < m; i++)
        for (size_t o = 0; o < n; o++) {
            double want = y0[i * n + o], mag = fabs(want);
            for (size_t j = 0; j < n_cols; j++) {
                double term = (double)x[i * k + cols[j]] * wh[o * k + cols[j]];
                want += term;
                mag += fabs(term);
            }
            double tol = (double)(n_cols + 1) * FLT_EPSILON * mag;
            ck_assert_msg(fabs(y[i * n + o] - want) <= tol, "m=%zu y[%zu][%zu]=%.9g, want %.9g",
                          m, i, o, (double)y[i * n + o], want);
        }
    free(w);
    free(x);
    free(xz);
    free(wh);
    free(y);
    free(y0);
    qlib_tensor_destroy(t);
    qlib_tensor_destroy(plain);
}

START_TEST(test_split_is_exact)
{
    const size_t cols[3] = { 0, 77, 199 };
    size_t many[45];                                   /* more than are gathered at a time */
    for (size_t j = 0; j < 45; j++) many[j] = 3 + 4 * j;
    for (size_t ii = 0; ii <= TU_N_ISAS; ii++) {
        qlib_ctx *ctx = ctx_for_isa(1, isa_at(ii));
        if (!ctx) continue;
        check_split(ctx, 1, 70, 200, cols, 3, 0);
        check_split(ctx, 6, 70, 200, cols, 3, 3);      /* outliers in row 3 only */
        check_split(ctx, 17, 130, 200, cols + 1, 2, 16);
        check_split(ctx, 3, 130, 200, many, 45, 1);
        qlib_ctx_destroy(ctx);
    }
}
END_TEST

/* Large enough that both the int8 part and the fp32 part are split over
 * threads (n = 260: four full chunks of 64 columns and a partial one). */
START_TEST(test_threads_identical)
{
    size_t n = 260, k = 256;
    size_t cols[40];
    for (size_t j = 0; j < 40; j++) cols[j] = 3 + 6 * j;
    tu_rng r = { 41 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(64 * k);
    tu_llm_weights(&r, w, n, k, k);
    outlier_acts(&r, x, 64, k, cols, 40);
    qlib_ctx *c1 = tu_ctx(1, NULL), *c2 = tu_ctx(2, NULL);
    qlib_tensor *t = llm_int8(c1, w, n, k, 6.0f);
    const size_t ms[3] = { 1, 3, 64 };
    for (size_t mi = 0; mi < 3; mi++) {
        float *a = run(c1, t, x, ms[mi]), *b = run(c2, t, x, ms[mi]);
        assert_same_bits(a, b, ms[mi] * n, "1 vs 2 threads");
        free(a);
        free(b);
    }
    free(w);
    free(x);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(c1);
    qlib_ctx_destroy(c2);
}
END_TEST

/* Every ISA against the scalar reference: the int8 sums are exact integers,
 * only the order of the fp32 scaling may differ. */
START_TEST(test_isas_agree)
{
    size_t n = 70, k = 200, m = 9;
    const size_t cols[2] = { 40, 190 };
    tu_rng r = { 51 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    tu_llm_weights(&r, w, n, k, k);
    outlier_acts(&r, x, m, k, cols, 2);
    qlib_ctx *ref_ctx = ctx_for_isa(1, "scalar");
    ck_assert_ptr_nonnull(ref_ctx);
    qlib_tensor *t = llm_int8(ref_ctx, w, n, k, 6.0f);
    float *want = run(ref_ctx, t, x, m);
    double *want_d = malloc(m * n * sizeof(double));
    ck_assert_ptr_nonnull(want_d);
    for (size_t i = 0; i < m * n; i++) want_d[i] = want[i];
    for (size_t ii = 1; ii <= TU_N_ISAS; ii++) {
        qlib_ctx *ctx = ctx_for_isa(2, isa_at(ii));
        if (!ctx) continue;
        float *y = run(ctx, t, x, m);
        ck_assert_msg(dist_fd(y, want_d, m * n) <= 1e-5 * norm_d(want_d, m * n), "isa %s",
                      qlib_ctx_isa(ctx));
        free(y);
        qlib_ctx_destroy(ctx);
    }
    free(w);
    free(x);
    free(want);
    free(want_d);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ref_ctx);
}
END_TEST

START_TEST(test_f32_mode_ignores_threshold)
{
    size_t n = 40, k = 96, m = 4;
    const size_t cols[1] = { 50 };
    tu_rng r = { 61 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    tu_llm_weights(&r, w, n, k, k);
    outlier_acts(&r, x, m, k, cols, 1);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_F32), QLIB_OK);
    qlib_tensor *t6 = llm_int8(ctx, w, n, k, 6.0f), *t0 = llm_int8(ctx, w, n, k, 0.0f);
    float *a = run(ctx, t6, x, m), *b = run(ctx, t0, x, m);
    assert_same_bits(a, b, m * n, "F32 mode with threshold 6 vs 0");
    free(w);
    free(x);
    free(a);
    free(b);
    qlib_tensor_destroy(t6);
    qlib_tensor_destroy(t0);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ---- memory ---- */

START_TEST(test_no_allocation_when_warm)
{
    size_t n = 50, k = 128, m = 6;
    const size_t cols[3] = { 1, 64, 127 };
    tu_rng r = { 71 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k), *y = tu_alloc_floats(m * n);
    tu_llm_weights(&r, w, n, k, k);
    outlier_acts(&r, x, m, k, cols, 3);
    qlib_ctx *qctx = tu_ctx(1, NULL);
    qlib_tensor *t = llm_int8(qctx, w, n, k, 6.0f);
    qlib_ctx_destroy(qctx);
    tu_counting cnt = { 0, 0, 0, 0 };
    qlib_allocator a = tu_counting_allocator(&cnt);

    /* Each allocation a cold context makes, failed in turn: NOMEM, no leak. */
    for (long nth = 1;; nth++) {
        qlib_ctx *ctx = NULL;
        ck_assert_int_eq(qlib_ctx_create_with_allocator(&a, &ctx), QLIB_OK);
        ck_assert_int_eq(qlib_ctx_set_threads(ctx, 1), QLIB_OK);
        cnt.fail_at = (long)cnt.allocs + nth;
        qlib_status s = qlib_matmul(ctx, t, x, m, k, y, n);
        int failed = cnt.fail_at < 0;
        cnt.fail_at = 0;
        if (failed) {
            ck_assert_int_eq(s, QLIB_ERR_NOMEM);
            qlib_ctx_destroy(ctx);
            continue;
        }
        ck_assert_int_eq(s, QLIB_OK);
        size_t warm = cnt.allocs;
        ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y, n), QLIB_OK);
        ck_assert_int_eq(qlib_matmul(ctx, t, x, 1, k, y, n), QLIB_OK);  /* fewer rows */
        ck_assert_uint_eq(cnt.allocs, warm);
        qlib_ctx_destroy(ctx);
        break;
    }
    ck_assert_uint_eq(cnt.allocs, cnt.frees);
    qlib_tensor_destroy(t);
    free(w);
    free(x);
    free(y);
}
END_TEST

/* ---- serialization ---- */

START_TEST(test_serialize_keeps_threshold)
{
    size_t n = 33, k = 100, m = 3, bytes = 0, written = 0;
    const size_t cols[1] = { 9 };
    tu_rng r = { 81 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    tu_llm_weights(&r, w, n, k, k);
    outlier_acts(&r, x, m, k, cols, 1);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = llm_int8(ctx, w, n, k, 3.5f), *u = NULL;
    ck_assert_int_eq(qlib_tensor_serialized_size(t, &bytes), QLIB_OK);
    void *buf = NULL;
    ck_assert_int_eq(posix_memalign(&buf, 64, bytes), 0);
    ck_assert_int_eq(qlib_tensor_serialize(t, buf, bytes, &written), QLIB_OK);
    ck_assert_uint_eq(written, bytes);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, buf, bytes, 0, &u), QLIB_OK);
    ck_assert_int_eq(qlib_tensor_method(u), QLIB_METHOD_LLM_INT8);
    ck_assert(qlib_tensor_outlier_threshold(u) == 3.5f);
    ck_assert_double_eq(qlib_tensor_quant_error(u), qlib_tensor_quant_error(t));
    float *a = run(ctx, t, x, m), *b = run(ctx, u, x, m);
    assert_same_bits(a, b, m * n, "after a round trip");
    free(w);
    free(x);
    free(a);
    free(b);
    free(buf);
    qlib_tensor_destroy(t);
    qlib_tensor_destroy(u);
    qlib_ctx_destroy(ctx);
}
END_TEST

Suite *suite_llm_int8(void)
{
    Suite *s = suite_create("llm_int8");
    TCase *tc = tu_tcase("llm_int8");
    tcase_add_test(tc, test_quantize_per_row);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_accuracy_one_row);
    tcase_add_test(tc, test_accuracy_rows);
    tcase_add_test(tc, test_below_threshold_is_pure_int8);
    tcase_add_test(tc, test_split_is_exact);
    tcase_add_test(tc, test_threads_identical);
    tcase_add_test(tc, test_isas_agree);
    tcase_add_test(tc, test_f32_mode_ignores_threshold);
    tcase_add_test(tc, test_no_allocation_when_warm);
    tcase_add_test(tc, test_serialize_keeps_threshold);
    suite_add_tcase(s, tc);
    return s;
}
