/* Calibration with arbitrary k, contents, batch shapes and values (NaN, Inf,
 * subnormal, huge), checked against statistics kept here in double; then
 * GPTQ / AWQ quantize with what was gathered.
 *
 * Input: [k, what, max_samples, finish] then batches [n, ld, len, len bytes]:
 *   k            1 + b % 80; 254: 0; 255: SIZE_MAX
 *   what         b & 15 (8 is not a known bit; 0 is empty)
 *   max_samples  b % 9; 255: SIZE_MAX / 2
 *   finish       bit 0: quantize with GPTQ, bit 1: with AWQ (act-order, group
 *                and bits from bits 2-5)
 *   n            b % 8 tokens; >= 248 with k <= 16: 4100 (more than one internal batch)
 *   ld           k + b % 3; >= 240: k - 1
 *   bytes        the floats of the batch, the len bytes repeated */
#include <limits.h>

#include "fuzz.h"

#define NW 4

typedef struct shadow {
    size_t k, tokens, adds;
    unsigned what;
    double *sum, *h, *hmag;   /* sum |x|, sum x x^T, sum |x x^T| */
    float *max;
} shadow;

static qlib_ctx *ctx;

static size_t pick_k(uint8_t b) { return b == 255 ? SIZE_MAX : b == 254 ? 0 : 1 + (size_t)(b % 80); }

static void fill_batch(float *x, size_t count, const uint8_t *pat, size_t len)
{
    for (size_t i = 0; i < count; i++) {
        uint8_t v[4] = { 0, 0, 0, 0 };
        for (int j = 0; j < 4 && len; j++) v[j] = pat[(4 * i + (size_t)j) % len];
        memcpy(&x[i], v, 4);
    }
}

static int rows_finite(const float *x, size_t n, size_t k, size_t ld)
{
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < k; j++)
            if (!isfinite(x[t * ld + j])) return 0;
    return 1;
}

static float rows_absmax(const float *x, size_t n, size_t k, size_t ld)
{
    float m = 0.0f;
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < k; j++) m = fmaxf(m, fabsf(x[t * ld + j]));
    return m;
}

static void shadow_add(shadow *sh, const float *x, size_t n, size_t ld)
{
    for (size_t t = 0; t < n; t++) {
        const float *r = x + t * ld;
        for (size_t i = 0; i < sh->k; i++) {
            sh->sum[i] += fabsf(r[i]);
            if (fabsf(r[i]) > sh->max[i]) sh->max[i] = fabsf(r[i]);
            for (size_t j = 0; j < sh->k; j++) {
                sh->h[i * sh->k + j] += (double)r[i] * r[j];
                sh->hmag[i * sh->k + j] += fabs((double)r[i] * r[j]);
            }
        }
    }
    sh->tokens += n;
    sh->adds++;
}

/* One batch; returns the bytes it consumed. */
static size_t do_batch(qlib_calib *c, shadow *sh, const uint8_t *p, size_t left)
{
    if (left < 3) return left;
    size_t k = sh->k, n = p[0] >= 248 && k <= 16 ? 4100 : p[0] % 8;
    size_t ld = p[1] >= 240 ? k - 1 : k + p[1] % 3, len = p[2] < left - 3 ? p[2] : left - 3;
    size_t count = n ? (n - 1) * ld + k : 0;
    float *x = fz_malloc(count * sizeof(float) + 4);
    fill_batch(x, count, p + 3, len);
    size_t before = qlib_calib_tokens(c);
    qlib_status s = qlib_calib_add(c, x, n, ld);
    if (n == 0) {
        FZ_CHECK(s == QLIB_ERR_ARG);
    } else if (ld < k) {
        FZ_CHECK(s == QLIB_ERR_SHAPE);
    } else if (!rows_finite(x, n, k, ld)) {
        FZ_CHECK(s == QLIB_ERR_NUMERIC && qlib_calib_tokens(c) == before);
    } else if (s == QLIB_ERR_NUMERIC) {
        /* allowed only where x x^T could overflow fp32 */
        FZ_CHECK((sh->what & QLIB_CALIB_HESSIAN) && rows_absmax(x, n, k, ld) > 1e17f);
        FZ_CHECK(qlib_calib_tokens(c) == before);
    } else {
        FZ_CHECK(s == QLIB_OK && qlib_calib_tokens(c) == before + n);
        shadow_add(sh, x, n, ld);
    }
    free(x);
    return 3 + len;
}

static void check_stats(const qlib_calib *c, unsigned what, const shadow *sh)
{
    size_t k = sh->k;
    float *mean = fz_malloc(k * sizeof(float)), *max = fz_malloc(k * sizeof(float));
    qlib_status s = qlib_calib_act_stats(c, mean, max);
    if (!(what & QLIB_CALIB_ACT_STATS) || sh->tokens == 0) {
        FZ_CHECK(s == QLIB_ERR_STATE);
    } else {
        FZ_CHECK(s == QLIB_OK);
        FZ_CHECK(qlib_calib_act_stats(c, NULL, NULL) == QLIB_OK);
        for (size_t j = 0; j < k; j++) {
            double want = sh->sum[j] / (double)sh->tokens;
            FZ_CHECK(max[j] == sh->max[j]);
            if (want < 1e38) FZ_CHECK(fabs(mean[j] - want) <= 1e-6 * want + 1e-45);
        }
    }
    free(mean);
    free(max);
}

/* H = 2/n sum x x^T, symmetric, within fp32 accumulation of the running mean. */
static void check_hessian(const qlib_calib *c, unsigned what, const shadow *sh)
{
    size_t k = sh->k, ldh = k + 1;
    float *h = fz_malloc(k * ldh * sizeof(float));
    qlib_status s = qlib_calib_hessian(c, h, ldh);
    if (!(what & QLIB_CALIB_HESSIAN) || sh->tokens == 0) {
        FZ_CHECK(s == QLIB_ERR_STATE);
        free(h);
        return;
    }
    FZ_CHECK(s == QLIB_OK);
    double n = (double)sh->tokens, u = FLT_EPSILON / 2;
    for (size_t i = 0; i < k; i++) {
        FZ_CHECK(!isnan(h[i * ldh + i]) && h[i * ldh + i] >= 0.0f);
        for (size_t j = 0; j < k; j++) {
            FZ_CHECK(memcmp(&h[i * ldh + j], &h[j * ldh + i], 4) == 0);
            double want = 2.0 / n * sh->h[i * k + j], mag = 2.0 / n * sh->hmag[i * k + j];
            if (!(mag < 1e30)) continue;
            double tol = 2.0 * u * (n + 4.0 * (double)sh->adds + (double)k + 16.0) * mag + 1e-38;
            FZ_CHECK(fabs(h[i * ldh + j] - want) <= tol);
        }
    }
    free(h);
}

/* GPTQ / AWQ on what was gathered: a clean error or a tensor that loads back. */
static void finish_quantize(qlib_calib *c, uint8_t flags, qlib_method m)
{
    size_t k = qlib_calib_k(c);
    qlib_config *cfg = NULL;
    FZ_CHECK(qlib_config_create(m, &cfg) == QLIB_OK);
    static const int bits[4] = { 2, 3, 4, 8 };
    FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_BITS, bits[(flags >> 2) & 3]) == QLIB_OK);
    FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, flags & 16 ? 32 : -1) == QLIB_OK);
    if (m == QLIB_METHOD_GPTQ)
        FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER, (flags >> 5) & 1) == QLIB_OK);
    float *w = fz_malloc(NW * k * sizeof(float));
    uint32_t s = 99;
    for (size_t i = 0; i < NW * k; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = (float)((int32_t)s >> 8) / 8388608.0f * 0.05f;
    }
    qlib_tensor *t = NULL;
    qlib_status st = qlib_quantize(ctx, w, NW, k, k, cfg, c, &t);
    FZ_CHECK(st == QLIB_OK || st == QLIB_ERR_UNSUPPORTED || st == QLIB_ERR_NUMERIC ||
             st == QLIB_ERR_STATE);
    FZ_CHECK((st == QLIB_OK) == (t != NULL));
    if (t) {
        size_t bytes = 0;
        qlib_tensor *u = NULL;
        FZ_CHECK(qlib_tensor_serialized_size(t, &bytes) == QLIB_OK);
        uint8_t *blob = fz_malloc(bytes);
        FZ_CHECK(qlib_tensor_serialize(t, blob, bytes, NULL) == QLIB_OK);
        FZ_CHECK(qlib_tensor_deserialize(ctx, blob, bytes, 0, &u) == QLIB_OK);
        fz_check_queries(u, blob, bytes);
        fz_check_compute(ctx, u, 2, flags);
        qlib_tensor_destroy(u);
        free(blob);
    }
    qlib_tensor_destroy(t);
    qlib_config_destroy(cfg);
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    if (!ctx) ctx = fz_ctx(1, NULL);
    size_t k = pick_k(data[0]), max_samples = data[2] == 255 ? SIZE_MAX / 2 : data[2] % 9;
    unsigned what = data[1] & 15;
    qlib_calib *c = (qlib_calib *)&ctx;                /* must be overwritten */
    qlib_status s = qlib_calib_create(ctx, k, what, max_samples, &c);
    int valid = k > 0 && what != 0 && !(what & 8) && (!(what & QLIB_CALIB_SAMPLES) || max_samples);
    int too_big = k == SIZE_MAX || ((what & QLIB_CALIB_SAMPLES) && max_samples == SIZE_MAX / 2);
    if (!valid || too_big) {
        FZ_CHECK(s != QLIB_OK && c == NULL);
        FZ_CHECK(s == QLIB_ERR_ARG || s == QLIB_ERR_UNSUPPORTED);
        if (!valid) FZ_CHECK(s == QLIB_ERR_ARG);
        return 0;
    }
    FZ_CHECK(s == QLIB_OK && c != NULL && qlib_calib_k(c) == k && qlib_calib_tokens(c) == 0);
    shadow sh = { k, 0, 0, what, calloc(k, sizeof(double)), calloc(k * k, sizeof(double)),
                  calloc(k * k, sizeof(double)), calloc(k, sizeof(float)) };
    FZ_CHECK(sh.sum && sh.h && sh.hmag && sh.max);
    for (size_t at = 4; at < size;) at += do_batch(c, &sh, data + at, size - at);
    FZ_CHECK(qlib_calib_tokens(c) == sh.tokens);
    check_stats(c, what, &sh);
    check_hessian(c, what, &sh);
    if (data[3] & 1) finish_quantize(c, data[3], QLIB_METHOD_GPTQ);
    if (data[3] & 2) finish_quantize(c, data[3], QLIB_METHOD_AWQ);
    qlib_calib_destroy(c);
    free(sh.sum);
    free(sh.h);
    free(sh.hmag);
    free(sh.max);
    return 0;
}
