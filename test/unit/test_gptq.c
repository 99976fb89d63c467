/* suite_gptq: GPTQ against the algorithm worked out by hand, against a
 * column-by-column double-precision reference, against RTN on held-out
 * tokens of correlated activations; act-order and its permutation, static
 * and per-tensor groups, matmul against dequantize, 1 and 2 threads, the
 * Hessian-weighted error, and every error path. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/core.h"
#include "schemes/schemes.h"

/* Fails like ck_assert_msg but costs nothing when it passes. */
#define REQUIRE(expr, ...) \
    do { if (!(expr)) ck_abort_msg("'" #expr "' failed: " __VA_ARGS__); } while (0)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

Suite *suite_gptq(void);

typedef struct gopts {
    int bits, group, sym, act_order, static_groups, block;   /* block 0: the default */
    float damp;                                                /* < 0: the default */
} gopts;

static gopts opts(int bits, int group, int sym)
{
    gopts o = { bits, group, sym, 0, 0, 0, -1.0f };
    return o;
}

static qlib_config *gptq_config(const gopts *o)
{
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_GPTQ, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, o->bits), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, o->group), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, o->sym), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER, o->act_order), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_STATIC_GROUPS, o->static_groups),
                     QLIB_OK);
    if (o->block > 0)
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_BLOCK_SIZE, o->block), QLIB_OK);
    if (o->damp >= 0.0f)
        ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_GPTQ_DAMP, o->damp), QLIB_OK);
    return cfg;
}

static qlib_tensor *gptq(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                         const gopts *o, const qlib_calib *calib)
{
    qlib_config *cfg = gptq_config(o);
    qlib_tensor *t = NULL;
    qlib_status s = qlib_quantize(ctx, w, n, k, ldw, cfg, calib, &t);
    ck_assert_msg(s == QLIB_OK, "GPTQ bits %d group %d sym %d act %d static %d: %s", o->bits,
                  o->group, o->sym, o->act_order, o->static_groups, qlib_last_error());
    qlib_config_destroy(cfg);
    return t;
}

static qlib_status gptq_status(qlib_ctx *ctx, const float *w, size_t n, size_t k,
                               const gopts *o, const qlib_calib *calib)
{
    qlib_config *cfg = gptq_config(o);
    qlib_tensor *t = (qlib_tensor *)&t;      /* must come back NULL on failure */
    qlib_status s = qlib_quantize(ctx, w, n, k, k, cfg, calib, &t);
    if (s != QLIB_OK) ck_assert_ptr_null(t);
    qlib_tensor_destroy(s == QLIB_OK ? t : NULL);
    qlib_config_destroy(cfg);
    return s;
}

static qlib_calib *hessian_calib(qlib_ctx *ctx, const float *x, size_t m, size_t k)
{
    qlib_calib *c = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_HESSIAN, 0, &c), QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(c, x, m, k), QLIB_OK);
    return c;
}

static float *dequantized(qlib_ctx *ctx, const qlib_tensor *t)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *wh = tu_alloc_floats(n * k);
    ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
    return wh;
}

/* The calibration's H in full, in double. */
static double *hessian_of(const qlib_calib *c, size_t k)
{
    float *hf = tu_alloc_floats(k * k);
    ck_assert_int_eq(qlib_calib_hessian(c, hf, k), QLIB_OK);
    double *h = malloc(k * k * sizeof(double));
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < k * k; i++) h[i] = hf[i];
    free(hf);
    return h;
}

/* tr(A H A^T) over n rows of A (n x k floats), and tr(|A| |H| |A|^T) for
 * error bounds. */
typedef struct trace2 { double value, magnitude; } trace2;

static trace2 hessian_trace(const double *h, const float *a, size_t n, size_t k)
{
    trace2 t = { 0.0, 0.0 };
    for (size_t r = 0; r < n; r++) {
        const float *ar = a + r * k;
        for (size_t i = 0; i < k; i++) {
            double ai = ar[i], row = 0.0, mag = 0.0;
            if (ai == 0.0) continue;
            for (size_t j = 0; j < k; j++) {
                double p = h[i * k + j] * ar[j];
                row += p;
                mag += fabs(p);
            }
            t.value += ai * row;
            t.magnitude += fabs(ai) * mag;
        }
    }
    return t;
}

/* qlib_tensor_quant_error against tr(dW H dW^T) / tr(W H W^T) recomputed in
 * double from the dequantized weights (den: tr(W H W^T) of the layer). The
 * library forms the Gram matrices A^T A in fp32 (sums of n products: error
 * <= n 2^-24 per term of |A|^T |A|) and dW = W - W^ in fp32 (2^-24
 * relative): so the numerator may be off by (n + 2) 2^-24 tr(|dW||H||dW|^T),
 * the denominator by n 2^-24 tr(|W||H||W|^T). */
static void check_weighted_error(const qlib_tensor *t, const double *h, const float *w,
                                 const float *wh, trace2 den, const char *what)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *dw = tu_alloc_floats(n * k);
    for (size_t i = 0; i < n * k; i++) dw[i] = (float)((double)w[i] - wh[i]);
    trace2 num = hessian_trace(h, dw, n, k);
    double got = qlib_tensor_quant_error(t), want = num.value / den.value;
    double tol = ((double)(n + 2) * num.magnitude + want * (double)n * den.magnitude) * 0x1p-24 /
                 den.value + 1e-12;
    REQUIRE(fabs(got - want) <= tol, "%s: quant_error %.9g, recomputed %.9g (tol %.3g)", what,
            got, want, tol);
    free(dw);
}

/* ||X W^^T - Y||^2 / ||Y||^2 in double, Y = X W^T (m x n, from tu_ref_matmul). */
static double output_error(const float *x, size_t m, const double *y, const float *wh, size_t n,
                           size_t k)
{
    double *yh = malloc(m * n * sizeof(double));
    ck_assert_ptr_nonnull(yh);
    tu_ref_matmul(x, m, k, wh, n, k, k, yh);
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < m * n; i++) {
        num += (y[i] - yh[i]) * (y[i] - yh[i]);
        den += y[i] * y[i];
    }
    free(yh);
    return num / den;
}

/* ---------------------------------------------------------- by hand */

/* Tokens 2 * (columns of R) and four zero tokens: with n = 8 and the running
 * mean 2/n sum x x^T, H = (2/8) * 4 R R^T = R R^T exactly, for
 *   R = [[1,-1,0,0],[0,1,0,0],[0,0,1,-1],[0,0,0,1]],
 *   H = [[2,-1,0,0],[-1,1,0,0],[0,0,2,-1],[0,0,-1,1]].
 * With damping 0, H^-1 = blockdiag([[1,1],[1,2]], [[1,1],[1,2]]) and its
 * upper Cholesky factor is U = R^-1 = [[1,1,0,0],[0,1,0,0],[0,0,1,1],[0,0,0,1]]:
 * pivots 1, and the error of column 0 (2) moves, undivided, onto column 1 (3). */
static qlib_calib *hand_calib(qlib_ctx *ctx)
{
    static const float x[8 * 4] = { 2, 0, 0, 0,  -2, 2, 0, 0,  0, 0, 2, 0,  0, 0, -2, 2 };
    qlib_calib *c = hessian_calib(ctx, x, 8, 4);
    static const float want[16] = { 2, -1, 0, 0, -1, 1, 0, 0, 0, 0, 2, -1, 0, 0, -1, 1 };
    float h[16];
    ck_assert_int_eq(qlib_calib_hessian(c, h, 4), QLIB_OK);
    for (int i = 0; i < 16; i++) ck_assert_float_eq(h[i], want[i]);
    return c;
}

static void check_row(const float *got, const float *want, size_t k, const char *what)
{
    for (size_t j = 0; j < k; j++)
        ck_assert_msg(got[j] == want[j], "%s: w^[%zu] = %g, by hand %g", what, j, (double)got[j],
                      (double)want[j]);
}

/* Symmetric 4 bits, one group per row. w = s * u with s = 0.25 and
 * u = [1.375, -7, 2.25, 0.625]: absmax 1.75 gives scale 1.75/7 = 0.25
 * (exact in fp16), codes in [-8, 7]. In units of s:
 *   col 0: 1.375 -> 1, e0 = 0.375;  col 1: -7 - e0 * U01 = -7.375 -> -7 (e1 = -0.375)
 *   col 2: 2.25 -> 2, e2 = 0.25;    col 3: 0.625 - e2 * U23 = 0.375 -> 0 (e3 = 0.375)
 * so W^ = s * [1, -7, 2, 0], where RTN rounds 0.625 up to 1.
 * dW = s * [0.375, 0, 0.25, 0.625]; dW H dW^T = s^2 (0.28125 + 0.203125) = 0.484375 s^2
 * (= sum of e^2, as GPTQ's theory has it); W H W^T = s^2 (72.03125 + 7.703125). */
START_TEST(test_gptq_hand_symmetric)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_calib *c = hand_calib(ctx);
    static const float w[4] = { 0.34375f, -1.75f, 0.5625f, 0.15625f };
    static const float gptq_w[4] = { 0.25f, -1.75f, 0.5f, 0.0f };
    static const float rtn_w[4] = { 0.25f, -1.75f, 0.5f, 0.25f };
    const double want_err = 0.484375 / 79.734375;
    for (int act = 0; act < 2; act++)
        for (int block = 1; block <= 4; block++) {
            gopts o = opts(4, 0, 1);
            o.damp = 0.0f;
            o.block = block;
            o.act_order = act;
            qlib_tensor *t = gptq(ctx, w, 1, 4, 4, &o, c);
            float *wh = dequantized(ctx, t);
            check_row(wh, gptq_w, 4, "symmetric");
            ck_assert_double_eq_tol(qlib_tensor_quant_error(t), want_err, 1e-7 * want_err);
            const int32_t *perm = qlib_tensor_permutation(t);
            if (act) {
                /* diag(H) = 2, 1, 2, 1: the sweep takes 0, 2, 1, 3 (decreasing,
                 * ties by index); one group a row, stored by column */
                static const int32_t want_perm[4] = { 0, 1, 2, 3 };
                ck_assert_ptr_nonnull(perm);
                for (int j = 0; j < 4; j++) ck_assert_int_eq(perm[j], want_perm[j]);
            } else {
                ck_assert_ptr_null(perm);
            }
            free(wh);
            qlib_tensor_destroy(t);
        }
    qlib_tensor *t = tu_quantize(ctx, w, 1, 4, 4, QLIB_METHOD_RTN, 4, 0, 1, NULL);
    float *wh = dequantized(ctx, t);
    check_row(wh, rtn_w, 4, "RTN");
    free(wh);
    qlib_tensor_destroy(t);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Asymmetric 2 bits, one group per row, two rows (the second is twice the
 * first). Row 0: w = s * u, s = 0.75, u = [1.375, 0.625, -1, 2]: the range
 * [-0.75, 1.5] gives scale 2.25/3 = 0.75 and zero point 1, levels u in
 * {-1, 0, 1, 2}. In units of s:
 *   col 0: 1.375 -> 1, e0 = 0.375;  col 1: 0.625 - e0 = 0.25 -> 0 (RTN: 1)
 *   col 2: -1 and col 3: 2 are levels: no error.
 * dW H dW^T = s^2 * 0.203125 (= 0.375^2 + 0.25^2), W H W^T = s^2 * 12.453125;
 * row 1 scales both by 4, so the ratio is that of row 0. */
START_TEST(test_gptq_hand_asymmetric)
{
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hand_calib(ctx);
    static const float w[8] = { 1.03125f, 0.46875f, -0.75f, 1.5f,
                                2.0625f, 0.9375f, -1.5f, 3.0f };
    static const float want[8] = { 0.75f, 0.0f, -0.75f, 1.5f, 1.5f, 0.0f, -1.5f, 3.0f };
    const double want_err = 0.203125 / 12.453125;
    for (int block = 1; block <= 4; block++) {
        gopts o = opts(2, 0, 0);
        o.damp = 0.0f;
        o.block = block;
        qlib_tensor *t = gptq(ctx, w, 2, 4, 4, &o, c);
        float *wh = dequantized(ctx, t);
        check_row(wh, want, 8, "asymmetric");
        ck_assert_double_eq_tol(qlib_tensor_quant_error(t), want_err, 1e-7 * want_err);
        free(wh);
        qlib_tensor_destroy(t);
    }
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ---------------------------------------------- double reference */

typedef struct colkey { double h; size_t col; } colkey;

static int colkey_cmp(const void *a, const void *b)
{
    const colkey *x = a, *y = b;
    if (x->h != y->h) return x->h > y->h ? -1 : 1;
    return (x->col > y->col) - (x->col < y->col);
}

/* Lower Cholesky factor of a (n x n) in place (lower triangle); 0 if not PD. */
static int chol_lower(double *a, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (size_t p = 0; p < j; p++) d -= a[j * n + p] * a[j * n + p];
        if (!(d > 0.0)) return 0;
        d = sqrt(d);
        a[j * n + j] = d;
        for (size_t i = j + 1; i < n; i++) {
            double v = a[i * n + j];
            for (size_t p = 0; p < j; p++) v -= a[i * n + p] * a[j * n + p];
            a[i * n + j] = v / d;
        }
    }
    return 1;
}

/* U upper with U^T U = a^-1: the paper's reference steps (Cholesky of a, the
 * inverse, Cholesky of the inverse), in double. */
static double *inverse_factor_ref(const double *a, size_t k)
{
    double *l = malloc(k * k * sizeof(double)), *inv = calloc(k * k, sizeof(double));
    ck_assert_ptr_nonnull(l);
    ck_assert_ptr_nonnull(inv);
    memcpy(l, a, k * k * sizeof(double));
    ck_assert(chol_lower(l, k));
    /* columns of a^-1 by two triangular solves */
    double *y = malloc(k * sizeof(double));
    ck_assert_ptr_nonnull(y);
    for (size_t c = 0; c < k; c++) {
        for (size_t i = 0; i < k; i++) {
            double v = i == c ? 1.0 : 0.0;
            for (size_t p = 0; p < i; p++) v -= l[i * k + p] * y[p];
            y[i] = v / l[i * k + i];
        }
        for (size_t i = k; i-- > 0;) {
            double v = y[i];
            for (size_t p = i + 1; p < k; p++) v -= l[p * k + i] * inv[p * k + c];
            inv[i * k + c] = v / l[i * k + i];
        }
    }
    ck_assert(chol_lower(inv, k));
    double *u = calloc(k * k, sizeof(double));
    ck_assert_ptr_nonnull(u);
    for (size_t i = 0; i < k; i++)
        for (size_t j = i; j < k; j++) u[i * k + j] = inv[j * k + i];
    free(l);
    free(inv);
    free(y);
    return u;
}

/* GPTQ as DESIGN.md states it, one column at a time without lazy batches,
 * the weights in double; the rounding rule is qlib's (qlib_rtn_params and
 * qlib_rtn_code). wh: n x k in the original column order. */
static void gptq_ref(const double *h0, const float *w, size_t n, size_t k, const gopts *o,
                     float *wh)
{
    double *h = malloc(k * k * sizeof(double)), *hp = malloc(k * k * sizeof(double));
    double *wr = malloc(k * sizeof(double));
    float *wp = tu_alloc_floats(n * k), *tmp = tu_alloc_floats(k);
    colkey *key = malloc(k * sizeof(colkey));
    ck_assert(h && hp && wr && key);
    memcpy(h, h0, k * k * sizeof(double));
    for (size_t j = 0; j < k; j++) {
        key[j].col = j;
        if (h[j * k + j] == 0.0) h[j * k + j] = 1.0;     /* dead input */
        key[j].h = h[j * k + j];
    }
    if (o->act_order) qsort(key, k, sizeof *key, colkey_cmp);
    double mean = 0.0;
    for (size_t j = 0; j < k; j++) mean += h[j * k + j] / (double)k;
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < k; j++) hp[i * k + j] = h[key[i].col * k + key[j].col];
    float damp = o->damp >= 0.0f ? o->damp : 0.01f;
    for (size_t i = 0; i < k; i++) hp[i * k + i] += (double)(float)((double)damp * mean);
    double *u = inverse_factor_ref(hp, k);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < k; j++) {
            size_t c = key[j].col;
            wp[r * k + j] = h0[c * k + c] == 0.0 ? 0.0f : w[r * k + c];
        }
    size_t kp = (k + 63) / 64 * 64;
    size_t g = o->group > 0 && (size_t)o->group < kp ? (size_t)o->group : kp;
    qlib_qparams p;
    if (o->group < 0) ck_assert(qlib_rtn_params(wp, n * k, o->bits, o->sym, &p));
    for (size_t r = 0; r < n; r++) {
        for (size_t j = 0; j < k; j++) wr[j] = wp[r * k + j];
        for (size_t j = 0; j < k; j++) {
            if (o->group >= 0 && j % g == 0) {
                size_t len = k - j < g ? k - j : g;
                const float *src = wp + r * k + j;        /* static: the weights as given */
                if (!o->static_groups) {
                    for (size_t c = 0; c < len; c++) tmp[c] = (float)wr[j + c];
                    src = tmp;
                }
                ck_assert(qlib_rtn_params(src, len, o->bits, o->sym, &p));
            }
            float v = qlib_rtn_value(&p, qlib_rtn_code(&p, (float)wr[j]));
            double e = (wr[j] - v) / u[j * k + j];
            for (size_t l = j + 1; l < k; l++) wr[l] -= e * u[j * k + l];
            wh[r * k + key[j].col] = v;
        }
    }
    free(h);
    free(hp);
    free(wr);
    free(wp);
    free(tmp);
    free(key);
    free(u);
}

typedef struct layer {
    size_t n, k, m_cal, m_test;
    float *w, *x_cal, *x_test;
    double *y_test;        /* x_test W^T, once the inputs are final (layer_outputs) */
} layer;

/* An LLM-like layer whose inputs are correlated (low rank plus noise) with
 * outlier channels; calibration and held-out tokens are two samples of one
 * distribution. */
static layer make_layer(size_t n, size_t k, size_t m_cal, size_t m_test, float outlier,
                        uint64_t seed)
{
    layer l = { n, k, m_cal, m_test, NULL, NULL, NULL, NULL };
    tu_rng r = { seed };
    tu_act_model am;
    tu_act_model_init(&am, k, outlier, seed * 7919 + 1);
    l.w = tu_alloc_floats(n * k);
    tu_llm_weights(&r, l.w, n, k, k);
    l.x_cal = tu_alloc_floats(m_cal * k);
    l.x_test = tu_alloc_floats(m_test * k);
    tu_act_model_sample(&am, &r, l.x_cal, m_cal, k);
    tu_act_model_sample(&am, &r, l.x_test, m_test, k);
    tu_act_model_free(&am);
    return l;
}

static void layer_outputs(layer *l)
{
    l->y_test = malloc(l->m_test * l->n * sizeof(double));
    ck_assert_ptr_nonnull(l->y_test);
    tu_ref_matmul(l->x_test, l->m_test, l->k, l->w, l->n, l->k, l->k, l->y_test);
}

static void free_layer(layer *l)
{
    free(l->w);
    free(l->x_cal);
    free(l->x_test);
    free(l->y_test);
}

/* Sets the activations of input column c to 0 in every token: a dead input
 * (GPTQ zeroes its weights, which only an input that is never active allows). */
static void kill_input(layer *l, size_t c)
{
    for (size_t i = 0; i < l->m_cal; i++) l->x_cal[i * l->k + c] = 0.0f;
    for (size_t i = 0; i < l->m_test; i++) l->x_test[i * l->k + c] = 0.0f;
}

/* The blocked fp32 library against the column-by-column double reference.
 * Both round the same way; a code can differ only where the float and the
 * double updated weight straddle a rounding boundary (their difference is
 * ~1e-6 of a step), and then the rest of that row may differ. So: at most
 * 2% of the weights differ, and the Hessian-weighted errors agree to 2%. */
static const gopts ref_cases[] = {
    { 4, 32, 0, 0, 0, 0, -1.0f }, { 3, 32, 1, 1, 0, 48, -1.0f }, { 4, 128, 0, 1, 0, 0, -1.0f },
    { 2, 64, 0, 0, 0, 16, 0.1f }, { 3, 96, 0, 0, 0, 128, -1.0f }, { 4, 32, 0, 1, 1, 0, -1.0f },
    { 8, 0, 1, 0, 0, 7, -1.0f }, { 4, -1, 0, 1, 0, 0, -1.0f }, { 3, 32, 0, 0, 1, 40, -1.0f },
};

START_TEST(test_gptq_reference)
{
    const gopts *o = &ref_cases[_i];
    const size_t n = 24, k = 136;
    layer l = make_layer(n, k, 300, 0, 8.0f, 31 + (uint64_t)_i);
    kill_input(&l, 5);
    kill_input(&l, 130);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    double *h = hessian_of(c, k);
    qlib_tensor *t = gptq(ctx, l.w, n, k, k, o, c);
    float *wh = dequantized(ctx, t), *want = tu_alloc_floats(n * k);
    gptq_ref(h, l.w, n, k, o, want);
    size_t differ = 0;
    for (size_t i = 0; i < n * k; i++) differ += fabsf(wh[i] - want[i]) > 1e-6f * fabsf(want[i]);
    char what[96];
    snprintf(what, sizeof what, "case %d: bits %d group %d sym %d act %d static %d block %d", _i,
             o->bits, o->group, o->sym, o->act_order, o->static_groups, o->block);
    REQUIRE(differ <= n * k / 50, "%s: %zu of %zu weights differ from the reference", what,
            differ, n * k);
    for (size_t r = 0; r < n; r++) {
        REQUIRE(wh[r * k + 5] == 0.0f && wh[r * k + 130] == 0.0f, "%s: dead input kept", what);
    }
    double got = qlib_tensor_quant_error(t);
    float *dw = tu_alloc_floats(n * k);
    for (size_t i = 0; i < n * k; i++) dw[i] = l.w[i] - want[i];
    trace2 den = hessian_trace(h, l.w, n, k);
    double ref = hessian_trace(h, dw, n, k).value / den.value;
    REQUIRE(fabs(got - ref) <= 0.02 * ref, "%s: error %.6g, reference %.6g", what, got, ref);
    check_weighted_error(t, h, l.w, wh, den, what);
    free(dw);
    free(want);
    free(wh);
    free(h);
    qlib_tensor_destroy(t);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* ------------------------------------------- against RTN, held out */

/* The claim, on held-out tokens. Measured on this layer (N = 48,
 * K = 256, rank 32 + noise, outliers x8, 640 calibration tokens, 128
 * held-out ones) for the seeds 101 .. 108, GPTQ's output error is
 * 0.049 .. 0.075 of RTN's at 4 and 3 bits with groups of 128 and 32, and
 * act-order's 0.46 .. 0.63 of plain GPTQ's. The asserts (0.25 and 1.05)
 * leave margins of 3x and 1.6x; the test runs seed 101. */
START_TEST(test_gptq_beats_rtn_held_out)
{
    static const int bits[] = { 4, 3 }, groups[] = { 128, 32 };
    const size_t n = 48, k = 256;
    layer l = make_layer(n, k, 640, 128, 8.0f, 101);
    layer_outputs(&l);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    for (size_t b = 0; b < COUNT(bits); b++)
        for (size_t g = 0; g < COUNT(groups); g++) {
            qlib_tensor *rt = tu_quantize(ctx, l.w, n, k, k, QLIB_METHOD_RTN, bits[b], groups[g],
                                          0, NULL);
            gopts o = opts(bits[b], groups[g], 0);
            qlib_tensor *gt = gptq(ctx, l.w, n, k, k, &o, c);
            o.act_order = 1;
            qlib_tensor *at = gptq(ctx, l.w, n, k, k, &o, c);
            float *rw = dequantized(ctx, rt), *gw = dequantized(ctx, gt), *aw = dequantized(ctx, at);
            double re = output_error(l.x_test, l.m_test, l.y_test, rw, n, k);
            double ge = output_error(l.x_test, l.m_test, l.y_test, gw, n, k);
            double ae = output_error(l.x_test, l.m_test, l.y_test, aw, n, k);
            ck_assert_msg(ge < 0.25 * re, "%d bits group %d: GPTQ %.5f vs RTN %.5f", bits[b],
                          groups[g], ge, re);
            ck_assert_msg(ae <= 1.05 * ge, "%d bits group %d: act-order %.5f vs %.5f", bits[b],
                          groups[g], ae, ge);
            free(rw);
            free(gw);
            free(aw);
            qlib_tensor_destroy(rt);
            qlib_tensor_destroy(gt);
            qlib_tensor_destroy(at);
        }
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* Every width, both zero-point modes, every kind of group, K a multiple of
 * nothing: the error the tensor reports is the Hessian-weighted one, GPTQ
 * beats RTN on held-out tokens, dead inputs get zero weights, and matmul
 * multiplies by the dequantized weights. */
START_TEST(test_gptq_sweep)
{
    static const int bits[] = { 2, 3, 4, 8 }, groups[] = { 0, -1, 32, 128 };
    size_t k = _i ? 200 : 172;
    const size_t n = 20, m = 5;
    layer l = make_layer(n, k, 320, 64, 8.0f, 7 + (uint64_t)_i);
    kill_input(&l, 3);
    layer_outputs(&l);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_F32), QLIB_OK);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    double *h = hessian_of(c, k);
    trace2 den = hessian_trace(h, l.w, n, k);
    float *y = tu_alloc_floats(m * n);
    double *yref = malloc(m * n * sizeof(double));
    ck_assert_ptr_nonnull(yref);
    for (size_t b = 0; b < COUNT(bits); b++)
        for (size_t g = 0; g < COUNT(groups); g++)
            {
                /* each (bits, group) once per zero-point mode over the two runs */
                int sym = (int)((b + g + (size_t)_i) % 2);
                gopts o = opts(bits[b], groups[g], sym);
                o.act_order = _i;
                char what[96];
                snprintf(what, sizeof what, "k %zu bits %d group %d sym %d act %d", k, bits[b],
                         groups[g], sym, o.act_order);
                qlib_tensor *t = gptq(ctx, l.w, n, k, k, &o, c);
                ck_assert_int_eq(qlib_tensor_method(t), QLIB_METHOD_GPTQ);
                ck_assert_int_eq(qlib_tensor_bits(t), bits[b]);
                ck_assert_int_eq(qlib_tensor_group_size(t), groups[g]);
                ck_assert_int_eq(qlib_tensor_symmetric(t), sym);
                float *wh = dequantized(ctx, t);
                check_weighted_error(t, h, l.w, wh, den, what);
                for (size_t r = 0; r < n; r++) REQUIRE(wh[r * k + 3] == 0.0f, "%s: dead", what);
                qlib_tensor *rt = tu_quantize(ctx, l.w, n, k, k, QLIB_METHOD_RTN, bits[b],
                                              groups[g], sym, NULL);
                float *rw = dequantized(ctx, rt);
                double ge = output_error(l.x_test, l.m_test, l.y_test, wh, n, k);
                double re = output_error(l.x_test, l.m_test, l.y_test, rw, n, k);
                REQUIRE(ge < re, "%s: held-out error GPTQ %.4g, RTN %.4g", what, ge, re);
                /* F32 matmul: the products of x and W^ summed in fp32 */
                ck_assert_int_eq(qlib_matmul(ctx, t, l.x_test, m, k, y, n), QLIB_OK);
                tu_ref_matmul(l.x_test, m, k, wh, n, k, k, yref);
                for (size_t i = 0; i < m; i++)
                    for (size_t r = 0; r < n; r++) {
                        double bound = 0.0;
                        for (size_t j = 0; j < k; j++)
                            bound += fabs((double)l.x_test[i * k + j] * wh[r * k + j]);
                        REQUIRE(fabs(y[i * n + r] - yref[i * n + r]) <= (double)k * 0x1p-23 * bound,
                                "%s: y[%zu][%zu] %g vs %g", what, i, r, (double)y[i * n + r],
                                yref[i * n + r]);
                    }
                free(rw);
                free(wh);
                qlib_tensor_destroy(rt);
                qlib_tensor_destroy(t);
            }
    free(y);
    free(yref);
    free(h);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* Uncorrelated inputs (tokens along the axes: H diagonal) leave GPTQ nothing
 * to compensate: U is diagonal, every update is by exactly 0, and GPTQ must
 * give RTN's tensor bit for bit (same parameters, same rounding, ties too). */
START_TEST(test_gptq_diagonal_is_rtn)
{
    static const int bits[] = { 2, 3, 4, 8 }, groups[] = { 0, -1, 32, 64 };
    const size_t n = 9, k = 100;
    float *x = tu_alloc_floats(k * k);
    memset(x, 0, k * k * sizeof(float));
    for (size_t j = 0; j < k; j++) x[j * k + j] = 0.5f + (float)(j % 7);
    float *w = tu_alloc_floats(n * k);
    tu_rng r = { 5 };
    tu_llm_weights(&r, w, n, k, k);
    /* exact ties of a 4-bit symmetric grid on row 0: group max 7 * 2^-6 */
    for (size_t j = 0; j < 32; j++) w[j] = (float)((double)(j % 14) - 6.5) * 0x1p-6f;
    w[31] = 7.0f * 0x1p-6f;
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hessian_calib(ctx, x, k, k);
    for (size_t b = 0; b < COUNT(bits); b++)
        for (size_t g = 0; g < COUNT(groups); g++)
            for (int sym = 0; sym < 2; sym++) {
                gopts o = opts(bits[b], groups[g], sym);
                qlib_tensor *t = gptq(ctx, w, n, k, k, &o, c);
                qlib_tensor *rt = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, bits[b],
                                              groups[g], sym, NULL);
                float *gw = dequantized(ctx, t), *rw = dequantized(ctx, rt);
                for (size_t i = 0; i < n * k; i++)
                    REQUIRE(gw[i] == rw[i], "bits %d group %d sym %d: w^[%zu] %a vs RTN %a",
                            bits[b], groups[g], sym, i, (double)gw[i], (double)rw[i]);
                free(gw);
                free(rw);
                qlib_tensor_destroy(t);
                qlib_tensor_destroy(rt);
            }
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free(x);
    free(w);
}
END_TEST

/* --------------------------------------- act-order and its groups */

/* How far COMPUTE_AUTO may be from x . w (w in the original order): x is
 * taken in stored order x'[j] = x[perm[j]] and each block of 32 rounded to
 * multiples of d = absmax/127, an error <= d/2 per value (plus 2^-8 d for
 * however an ISA forms the reciprocal and the scale); then k fp32
 * additions. A value taken from the wrong column would be off by O(d). */
static double int8_bound(const float *x, const int32_t *perm, const float *w, size_t k)
{
    double bound = 0.0, mag = 0.0;
    for (size_t b0 = 0; b0 < k; b0 += 32) {
        size_t b1 = b0 + 32 < k ? b0 + 32 : k;
        double amax = 0.0;
        for (size_t j = b0; j < b1; j++) amax = fmax(amax, fabs(x[perm[j]]));
        for (size_t j = b0; j < b1; j++) {
            double xv = x[perm[j]], wv = fabs(w[perm[j]]);
            bound += (0.5 + 0x1p-8) * amax / 127.0 * wv;
            mag += fabs(xv) * wv;
        }
    }
    return bound + (double)k * 0x1p-22 * mag;
}

/* The permutation sorts the inputs by decreasing diag(H) (dead inputs count
 * as 1), ties by index; matmul and dequantize undo it. */
START_TEST(test_gptq_act_order_permutation)
{
    const size_t n = 70, k = 172, m = 6;
    layer l = make_layer(n, k, 300, m, 12.0f, 77);
    kill_input(&l, 0);
    kill_input(&l, 100);
    /* two equal diagonal entries: columns 20 and 21 carry the same values */
    for (size_t i = 0; i < l.m_cal; i++) l.x_cal[i * k + 21] = l.x_cal[i * k + 20];
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    double *h = hessian_of(c, k);
    gopts o = opts(4, 32, 0);
    o.act_order = 1;
    qlib_tensor *t = gptq(ctx, l.w, n, k, k, &o, c);
    const int32_t *perm = qlib_tensor_permutation(t);
    ck_assert_ptr_nonnull(perm);
    int *seen = calloc(k, sizeof(int));
    ck_assert_ptr_nonnull(seen);
    /* the sweep's order: decreasing diag(H) (dead inputs count as 1), ties
     * by index; each group of 32 consecutive columns of it is stored in
     * increasing column */
    int32_t *sweep = malloc(k * sizeof(int32_t));
    ck_assert_ptr_nonnull(sweep);
    for (size_t j = 0; j < k; j++) sweep[j] = (int32_t)j;
    for (size_t j = 1; j < k; j++)
        for (size_t i = j; i > 0; i--) {
            double a = h[(size_t)sweep[i - 1] * (k + 1)], b = h[(size_t)sweep[i] * (k + 1)];
            a = a == 0.0 ? 1.0 : a;
            b = b == 0.0 ? 1.0 : b;
            if (a > b || (a == b && sweep[i - 1] < sweep[i])) break;
            int32_t tmp = sweep[i];
            sweep[i] = sweep[i - 1];
            sweep[i - 1] = tmp;
        }
    for (size_t j = 0; j < k; j++) {
        ck_assert(perm[j] >= 0 && (size_t)perm[j] < k);
        ck_assert_int_eq(seen[perm[j]]++, 0);
        if (j % 32) ck_assert_int_lt(perm[j - 1], perm[j]);
    }
    for (size_t g0 = 0; g0 < k; g0 += 32)
        for (size_t j = g0; j < k && j < g0 + 32; j++) {
            size_t i = g0;
            while (i < k && i < g0 + 32 && sweep[i] != perm[j]) i++;
            ck_assert_msg(i < k && i < g0 + 32, "column %d is not in sweep group %zu", perm[j],
                          g0 / 32);
        }
    free(sweep);
    free(seen);
    /* AUTO matmul (x permuted, then quantized to int8 in blocks of 32 of the
     * stored order) against x * W^T from dequantize, element by element. */
    float *wh = dequantized(ctx, t), *y = tu_alloc_floats(m * n);
    double *yref = malloc(m * n * sizeof(double));
    ck_assert_ptr_nonnull(yref);
    ck_assert_int_eq(qlib_matmul(ctx, t, l.x_test, m, k, y, n), QLIB_OK);
    tu_ref_matmul(l.x_test, m, k, wh, n, k, k, yref);
    for (size_t i = 0; i < m; i++)
        for (size_t r = 0; r < n; r++) {
            double bound = int8_bound(l.x_test + i * k, perm, wh + r * k, k);
            REQUIRE(fabs(y[i * n + r] - yref[i * n + r]) <= bound, "y[%zu][%zu] = %g, x W^T %g",
                    i, r, (double)y[i * n + r], yref[i * n + r]);
        }
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_F32), QLIB_OK);
    ck_assert_int_eq(qlib_matmul(ctx, t, l.x_test, m, k, y, n), QLIB_OK);
    ck_assert_double_le(tu_rel_err_fd(y, n, yref, n, m, n), 1e-10);
    free(yref);
    free(y);
    free(wh);
    free(h);
    qlib_tensor_destroy(t);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* W with its columns in the tensor's stored order (dead inputs zeroed). */
static float *stored_order(const float *w, size_t n, size_t k, const int32_t *perm,
                           const double *h)
{
    float *wp = tu_alloc_floats(n * k);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < k; j++) {
            size_t c = perm ? (size_t)perm[j] : j;
            wp[r * k + j] = h[c * (k + 1)] == 0.0 ? 0.0f : w[r * k + c];
        }
    return wp;
}

/* static_groups and group -1 take their parameters from the weights as
 * given, in the stored order, each group contiguous there: exactly what RTN
 * computes on the column-permuted W. */
START_TEST(test_gptq_static_parameters)
{
    static const gopts cases[] = {
        { 4, 32, 0, 1, 1, 0, -1.0f }, { 3, 64, 1, 0, 1, 0, -1.0f }, { 4, -1, 0, 1, 0, 0, -1.0f },
        { 2, -1, 1, 0, 0, 0, -1.0f }, { 8, 32, 0, 1, 1, 16, -1.0f },
    };
    const size_t n = 13, k = 172;
    layer l = make_layer(n, k, 256, 0, 8.0f, 55);
    kill_input(&l, 9);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    double *h = hessian_of(c, k);
    for (size_t i = 0; i < COUNT(cases); i++) {
        const gopts *o = &cases[i];
        qlib_tensor *t = gptq(ctx, l.w, n, k, k, o, c);
        float *wp = stored_order(l.w, n, k, qlib_tensor_permutation(t), h);
        qlib_tensor *rt = tu_quantize(ctx, wp, n, k, k, QLIB_METHOD_RTN, o->bits, o->group,
                                      o->sym, NULL);
        size_t entries = o->group < 0 ? 1 : n * t->w.n_groups;
        ck_assert_uint_eq(t->w.n_groups, rt->w.n_groups);
        for (size_t e = 0; e < entries; e++) {
            size_t r = o->group < 0 ? 0 : e / t->w.n_groups, g = o->group < 0 ? 0 : e % t->w.n_groups;
            ck_assert_uint_eq(t->w.scales[e], rt->w.scales[e]);
            ck_assert_int_eq(qk_zero(&t->w, r, g), qk_zero(&rt->w, r, g));
        }
        free(wp);
        qlib_tensor_destroy(t);
        qlib_tensor_destroy(rt);
    }
    free(h);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* ------------------------------------------------- determinism */

static void *serialized(const qlib_tensor *t, size_t *len)
{
    ck_assert_int_eq(qlib_tensor_serialized_size(t, len), QLIB_OK);
    void *buf = malloc(*len);
    ck_assert_ptr_nonnull(buf);
    size_t written = 0;
    ck_assert_int_eq(qlib_tensor_serialize(t, buf, *len, &written), QLIB_OK);
    ck_assert_uint_eq(written, *len);
    return buf;
}

/* The same blob, byte for byte, from 1 and 2 threads (rows split in fixed
 * chunks, the GEMMs through OpenBLAS whatever our thread count), and from
 * weights with a wider row stride. */
START_TEST(test_gptq_threads_identical)
{
    static const gopts cases[] = {
        { 3, 32, 0, 1, 0, 0, -1.0f }, { 4, 128, 0, 0, 0, 50, -1.0f }, { 2, 0, 1, 1, 1, 0, -1.0f },
        { 4, -1, 0, 1, 0, 0, -1.0f }, { 8, 64, 0, 0, 1, 0, -1.0f },
    };
    const size_t n = 130, k = 136;
    layer l = make_layer(n, k, 200, 0, 8.0f, 3);
    kill_input(&l, 17);
    const size_t ldw = k + 7;
    float *wpad = tu_alloc_floats(n * ldw);
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < ldw; c++) wpad[r * ldw + c] = c < k ? l.w[r * k + c] : NAN;
    qlib_ctx *c1 = tu_ctx(1, NULL), *c2 = tu_ctx(2, NULL);
    qlib_calib *cal = hessian_calib(c1, l.x_cal, l.m_cal, k);
    for (size_t i = 0; i < COUNT(cases); i++) {
        qlib_tensor *t1 = gptq(c1, l.w, n, k, k, &cases[i], cal);
        qlib_tensor *t2 = gptq(c2, l.w, n, k, k, &cases[i], cal);
        size_t n1, n2;
        void *b1 = serialized(t1, &n1), *b2 = serialized(t2, &n2);
        ck_assert_uint_eq(n1, n2);
        ck_assert_msg(memcmp(b1, b2, n1) == 0, "case %zu: blobs differ", i);
        /* the same from rows with a wider stride whose padding is NaN */
        qlib_tensor *tp = gptq(c2, wpad, n, k, ldw, &cases[i], cal);
        size_t np;
        void *bp = serialized(tp, &np);
        ck_assert(np == n1 && memcmp(b1, bp, n1) == 0);
        free(bp);
        qlib_tensor_destroy(tp);
        /* and a round trip keeps the permutation and the weights */
        qlib_tensor *t3 = NULL;
        ck_assert_int_eq(qlib_tensor_deserialize(c2, b1, n1, 0, &t3), QLIB_OK);
        float *w1 = dequantized(c1, t1), *w3 = dequantized(c2, t3);
        ck_assert(memcmp(w1, w3, n * k * sizeof(float)) == 0);
        ck_assert_int_eq(qlib_tensor_permutation(t3) != NULL, cases[i].act_order);
        ck_assert(qlib_tensor_quant_error(t3) == qlib_tensor_quant_error(t1));
        free(w1);
        free(w3);
        free(b1);
        free(b2);
        qlib_tensor_destroy(t1);
        qlib_tensor_destroy(t2);
        qlib_tensor_destroy(t3);
    }
    qlib_calib_destroy(cal);
    qlib_ctx_destroy(c1);
    qlib_ctx_destroy(c2);
    free(wpad);
    free_layer(&l);
}
END_TEST

/* Block sizes only regroup the same arithmetic (the lazy batch update is
 * exact in exact arithmetic): the errors agree to a few rounding flips. */
START_TEST(test_gptq_block_sizes)
{
    static const int blocks[] = { 1, 5, 32, 100, 128, 4096 };
    const size_t n = 16, k = 200;
    layer l = make_layer(n, k, 300, 0, 8.0f, 19);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    double first = 0.0;
    for (size_t b = 0; b < COUNT(blocks); b++) {
        gopts o = opts(3, 32, 0);
        o.block = blocks[b];
        qlib_tensor *t = gptq(ctx, l.w, n, k, k, &o, c);
        double e = qlib_tensor_quant_error(t);
        if (b == 0) first = e;
        ck_assert_msg(fabs(e - first) <= 0.02 * first, "block %d: error %.6g, block 1: %.6g",
                      blocks[b], e, first);
        qlib_tensor_destroy(t);
    }
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* ------------------------------------------------------ failures */

START_TEST(test_gptq_calibration_errors)
{
    const size_t n = 8, k = 64;
    layer l = make_layer(n, k, 80, 0, 4.0f, 2);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    gopts o = opts(4, 32, 0);
    ck_assert_int_eq(gptq_status(ctx, l.w, n, k, &o, NULL), QLIB_ERR_STATE);
    qlib_calib *c = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_ACT_STATS | QLIB_CALIB_SAMPLES, 16, &c),
                     QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(c, l.x_cal, l.m_cal, k), QLIB_OK);
    ck_assert_int_eq(gptq_status(ctx, l.w, n, k, &o, c), QLIB_ERR_STATE);
    qlib_calib_destroy(c);
    ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_HESSIAN, 0, &c), QLIB_OK);
    ck_assert_int_eq(gptq_status(ctx, l.w, n, k, &o, c), QLIB_ERR_STATE);   /* no tokens */
    ck_assert_int_eq(qlib_calib_add(c, l.x_cal, 1, k), QLIB_OK);
    ck_assert_int_eq(gptq_status(ctx, l.w, n, k, &o, c), QLIB_OK);          /* one is enough */
    ck_assert_int_eq(gptq_status(ctx, l.w, n, k - 1, &o, c), QLIB_ERR_SHAPE);
    qlib_calib_destroy(c);
    ck_assert_int_eq(qlib_calib_create(ctx, k + 32, QLIB_CALIB_HESSIAN, 0, &c), QLIB_OK);
    ck_assert_int_eq(gptq_status(ctx, l.w, n, k, &o, c), QLIB_ERR_SHAPE);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* H singular with no damping: tokens (0, 0) and (2, 2) give H = [[4,4],[4,4]]
 * exactly, whose Cholesky meets a pivot of exactly 0; damping 0 cannot grow. */
START_TEST(test_gptq_singular_undamped)
{
    static const float x[4] = { 0, 0, 2, 2 }, w[4] = { 0.5f, -0.25f, 0.125f, 1.0f };
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_calib *c = hessian_calib(ctx, x, 2, 2);
    gopts o = opts(4, 0, 1);
    o.damp = 0.0f;
    ck_assert_int_eq(gptq_status(ctx, w, 2, 2, &o, c), QLIB_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "lambda = 0"));
    o.damp = 0.01f;                                       /* damped, it factors */
    ck_assert_int_eq(gptq_status(ctx, w, 2, 2, &o, c), QLIB_OK);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* An indefinite matrix (eigenvalues 1001 and -999) cannot come out of a
 * calibration, so the factor is tested directly: damping 0.01 x mean
 * diag (1) grows to 0.1, 1, 10, 100 and fails each time; 1000 would do. */
START_TEST(test_gptq_factor_not_positive_definite)
{
    float a[4] = { 1.0f, 1000.0f, 1000.0f, 1.0f }, diag[2], lambda = -1.0f;
    ck_assert_int_eq(qlib_gptq_inverse_factor(a, 2, 0.01f, diag, &lambda), QLIB_ERR_NUMERIC);
    const char *msg = qlib_last_error();
    ck_assert_msg(strstr(msg, "0.01, 0.1, 1, 10, 100") != NULL, "%s", msg);
    ck_assert(lambda == -1.0f);
    float b[4] = { 1.0f, 1000.0f, 1000.0f, 1.0f };
    ck_assert_int_eq(qlib_gptq_inverse_factor(b, 2, 1.0f, diag, &lambda), QLIB_OK);
    ck_assert(lambda == 1000.0f);    /* 1 x mean 1 fails, 10 fails, 100 fails, 1000 works */
    /* (A + 1000 I) = [[1001,1000],[1000,1001]]: U^T U = its inverse, U upper */
    double u00 = b[0], u01 = b[1], u11 = b[3];
    double i00 = u00 * u00, i01 = u00 * u01, i11 = u01 * u01 + u11 * u11;
    double det = 1001.0 * 1001.0 - 1000.0 * 1000.0;
    ck_assert_double_eq_tol(i00, 1001.0 / det, 1e-3 * 1001.0 / det);
    ck_assert_double_eq_tol(i01, -1000.0 / det, 1e-3 * 1001.0 / det);
    ck_assert_double_eq_tol(i11, 1001.0 / det, 1e-3 * 1001.0 / det);
    float z[4] = { 0 };
    ck_assert_int_eq(qlib_gptq_inverse_factor(z, 2, 0.01f, diag, &lambda), QLIB_ERR_NUMERIC);
}
END_TEST

/* Retries on a larger matrix restore it exactly before damping more:
 * A = G G^T / k - 0.05 I (G k x k normal) has eigenvalues from about -0.05
 * to 4 and mean diagonal about 0.95, so damp 0.001 fails, 0.01 fails, and
 * 0.1 (lambda ~ 0.095) succeeds. U must then satisfy U^T U (A + lambda I) = I
 * to fp32 accuracy: the condition number is below 4.1 / 0.045, so with
 * k = 120 the residual stays far below 1e-2; a factor of a corrupted matrix
 * would be off by O(1). */
START_TEST(test_gptq_factor_retries_restore)
{
    const size_t k = 120;
    tu_rng r = { 99 };
    double *g = malloc(k * k * sizeof(double)), *a = malloc(k * k * sizeof(double));
    float *f = tu_alloc_floats(k * k), *diag = tu_alloc_floats(k), lambda = 0.0f;
    ck_assert(g && a);
    for (size_t i = 0; i < k * k; i++) g[i] = tu_normal(&r);
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j <= i; j++) {
            double v = 0.0;
            for (size_t p = 0; p < k; p++) v += g[i * k + p] * g[j * k + p];
            v = v / (double)k - (i == j ? 0.05 : 0.0);
            f[i * k + j] = f[j * k + i] = (float)v;
        }
    for (size_t i = 0; i < k * k; i++) a[i] = f[i];
    ck_assert_int_eq(qlib_gptq_inverse_factor(f, k, 0.001f, diag, &lambda), QLIB_OK);
    double mean = 0.0;
    for (size_t i = 0; i < k; i++) mean += a[i * k + i] / (double)k;
    ck_assert_msg(lambda > 0.05f * (float)mean && lambda < 0.2f * (float)mean,
                  "lambda %g for mean diagonal %g", (double)lambda, mean);
    for (size_t i = 0; i < k; i++)          /* g = U^T U, from U's upper triangle */
        for (size_t p = 0; p < k; p++) {
            double v = 0.0;
            for (size_t q = 0; q <= (i < p ? i : p); q++) v += (double)f[q * k + i] * f[q * k + p];
            g[i * k + p] = v;
        }
    double worst = 0.0;
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < k; j++) {
            double v = g[i * k + j] * (double)lambda;
            for (size_t p = 0; p < k; p++) v += g[i * k + p] * a[p * k + j];
            worst = fmax(worst, fabs(v - (i == j ? 1.0 : 0.0)));
        }
    ck_assert_msg(worst < 1e-2, "U^T U (A + lambda I) is off identity by %g", worst);
    free(g);
    free(a);
    free(f);
    free(diag);
}
END_TEST

/* A weight range no fp16 scale covers (|w| ~ 1e6 at 4 bits: scale 1.4e5). */
START_TEST(test_gptq_scale_overflow)
{
    const size_t n = 4, k = 64;
    layer l = make_layer(n, k, 80, 0, 4.0f, 8);
    l.w[2 * k + 40] = 1e6f;
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    static const gopts cases[] = {
        { 4, 32, 1, 0, 0, 0, -1.0f }, { 4, 32, 0, 1, 1, 0, -1.0f }, { 4, -1, 1, 0, 0, 0, -1.0f },
    };
    for (size_t i = 0; i < COUNT(cases); i++)
        ck_assert_int_eq(gptq_status(ctx, l.w, n, k, &cases[i], c), QLIB_ERR_NUMERIC);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free_layer(&l);
}
END_TEST

/* Every allocation failing in turn: NOMEM, no output, nothing leaked. */
START_TEST(test_gptq_alloc_failures)
{
    const size_t n = 70, k = 96;
    tu_counting cnt;
    qlib_ctx *ctx = tu_counting_ctx(&cnt, 2);
    layer l = make_layer(n, k, 120, 0, 8.0f, 12);
    qlib_calib *c = hessian_calib(ctx, l.x_cal, l.m_cal, k);
    static const gopts cases[] = { { 4, 32, 0, 1, 0, 0, -1.0f }, { 3, -1, 1, 0, 0, 0, -1.0f } };
    for (size_t i = 0; i < COUNT(cases); i++) {
        qlib_config *cfg = gptq_config(&cases[i]);
        tu_quantize_alloc_failures(ctx, &cnt, l.w, n, k, cfg, c);
        qlib_config_destroy(cfg);
    }
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    ck_assert_uint_eq(cnt.allocs, cnt.frees);
    free_layer(&l);
}
END_TEST

Suite *suite_gptq(void)
{
    Suite *s = suite_create("gptq");
    TCase *tc = tu_tcase("gptq");
    tcase_add_test(tc, test_gptq_hand_symmetric);
    tcase_add_test(tc, test_gptq_hand_asymmetric);
    tcase_add_loop_test(tc, test_gptq_reference, 0, (int)COUNT(ref_cases));
    tcase_add_test(tc, test_gptq_beats_rtn_held_out);
    tcase_add_loop_test(tc, test_gptq_sweep, 0, 2);
    tcase_add_test(tc, test_gptq_diagonal_is_rtn);
    tcase_add_test(tc, test_gptq_act_order_permutation);
    tcase_add_test(tc, test_gptq_static_parameters);
    tcase_add_test(tc, test_gptq_threads_identical);
    tcase_add_test(tc, test_gptq_block_sizes);
    tcase_add_test(tc, test_gptq_calibration_errors);
    tcase_add_test(tc, test_gptq_singular_undamped);
    tcase_add_test(tc, test_gptq_factor_not_positive_definite);
    tcase_add_test(tc, test_gptq_factor_retries_restore);
    tcase_add_test(tc, test_gptq_scale_overflow);
    tcase_add_test(tc, test_gptq_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}
