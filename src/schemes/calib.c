/* Calibration: what GPTQ and AWQ learn from one layer's input activations,
 * accumulated as a stream. */
#include <float.h>
#include <limits.h>
#include <math.h>

#include "schemes.h"
#include "../linalg/linalg.h"

#define CALIB_SEED 0x5eed5eed2024ull

qlib_status qlib_calib_create(qlib_ctx *ctx, size_t k, unsigned what, size_t max_samples,
                              qlib_calib **out)
{
    static const char fn[] = "qlib_calib_create";
    size_t hbytes = 0, sbytes = 0;
    if (!out) return qlib_fail(QLIB_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx) return qlib_fail(QLIB_ERR_ARG, "%s: ctx is NULL", fn);
    if (k == 0) return qlib_fail(QLIB_ERR_ARG, "%s: k is 0", fn);
    if (what == 0 || (what & ~(unsigned)QLIB_CALIB_ALL))
        return qlib_fail(QLIB_ERR_ARG, "%s: what=0x%x (need a non-empty set of QLIB_CALIB_*)", fn,
                         what);
    if ((what & QLIB_CALIB_SAMPLES) && max_samples == 0)
        return qlib_fail(QLIB_ERR_ARG, "%s: QLIB_CALIB_SAMPLES with max_samples 0", fn);
    if (k > INT_MAX) return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: k=%zu above %d", fn, k, INT_MAX);
    if ((what & QLIB_CALIB_HESSIAN) &&
        (qlib_mul_overflows(k, k, &hbytes) || qlib_mul_overflows(hbytes, 4, &hbytes)))
        return qlib_fail(QLIB_ERR_ARG, "%s: a %zu x %zu Hessian overflows", fn, k, k);
    if ((what & QLIB_CALIB_SAMPLES) &&
        (qlib_mul_overflows(max_samples, k, &sbytes) || qlib_mul_overflows(sbytes, 4, &sbytes)))
        return qlib_fail(QLIB_ERR_ARG, "%s: %zu samples of %zu overflow", fn, max_samples, k);
    qlib_calib *c = qlib_mem_calloc(&ctx->alloc, sizeof *c);
    if (!c) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", fn);
    c->ctx = ctx;
    c->k = k;
    c->what = what;
    c->rng = CALIB_SEED;
    int ok = 1;
    if (what & QLIB_CALIB_HESSIAN) ok = ok && (c->hessian = qlib_mem_calloc(&ctx->alloc, hbytes));
    if (what & QLIB_CALIB_ACT_STATS) {
        ok = ok && (c->abs_sum = qlib_mem_calloc(&ctx->alloc, k * sizeof(double)));
        ok = ok && (c->abs_max = qlib_mem_calloc(&ctx->alloc, k * sizeof(float)));
    }
    if (what & QLIB_CALIB_SAMPLES) {
        c->max_samples = max_samples;
        ok = ok && (c->samples = qlib_mem_alloc(&ctx->alloc, sbytes));
    }
    if (!ok) {
        qlib_calib_destroy(c);
        return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory for k=%zu", fn, k);
    }
    *out = c;
    return QLIB_OK;
}

void qlib_calib_destroy(qlib_calib *c)
{
    if (!c) return;
    const qlib_allocator *a = &c->ctx->alloc;
    qlib_mem_free(a, c->hessian);
    qlib_mem_free(a, c->abs_sum);
    qlib_mem_free(a, c->abs_max);
    qlib_mem_free(a, c->samples);
    qlib_mem_free(a, c);
}

size_t qlib_calib_tokens(const qlib_calib *c) { return c ? c->n_tokens : 0; }
size_t qlib_calib_k(const qlib_calib *c) { return c ? c->k : 0; }

static uint64_t calib_rand(qlib_calib *c)
{
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform reservoir (every token seen so far is kept with equal chance). */
static void calib_sample(qlib_calib *c, const float *x, size_t n, size_t ldx)
{
    for (size_t t = 0; t < n; t++) {
        size_t seen = c->n_tokens + t, slot;
        if (c->n_samples < c->max_samples) {
            slot = c->n_samples++;
        } else {
            slot = (size_t)(calib_rand(c) % (uint64_t)(seen + 1));
            if (slot >= c->max_samples) continue;
        }
        memcpy(c->samples + slot * c->k, x + t * ldx, c->k * sizeof(float));
    }
}

static void calib_stats(qlib_calib *c, const float *x, size_t n, size_t ldx)
{
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < c->k; j++) {
            float a = fabsf(x[t * ldx + j]);
            c->abs_sum[j] += a;
            if (a > c->abs_max[j]) c->abs_max[j] = a;
        }
}

#define HESSIAN_BATCH 4096   /* rows per rank-k update: keeps int sizes in range */

/* The rank-k update sums up to HESSIAN_BATCH products x_i x_j before it
 * scales them, so |x| must stay below sqrt(FLT_MAX / (2 HESSIAN_BATCH)),
 * about 2e17, for H to stay finite. Returns the largest |x| of the batch. */
static float batch_abs_max(const float *x, size_t n, size_t k, size_t ldx)
{
    float m = 0.0f;
    for (size_t t = 0; t < n; t++)
        for (size_t j = 0; j < k; j++) m = fmaxf(m, fabsf(x[t * ldx + j]));
    return m;
}

qlib_status qlib_calib_add(qlib_calib *c, const float *x, size_t n_tokens, size_t ldx)
{
    static const char fn[] = "qlib_calib_add";
    size_t span;
    if (!c || !x) return qlib_fail(QLIB_ERR_ARG, "%s: calib or x is NULL", fn);
    if (n_tokens == 0) return qlib_fail(QLIB_ERR_ARG, "%s: n_tokens is 0", fn);
    if (ldx < c->k) return qlib_fail(QLIB_ERR_SHAPE, "%s: ldx=%zu is less than k=%zu", fn, ldx, c->k);
    if (ldx > INT_MAX || qlib_mul_overflows(n_tokens - 1, ldx, &span) || span > SIZE_MAX / 4 - c->k)
        return qlib_fail(QLIB_ERR_ARG, "%s: n_tokens=%zu with ldx=%zu overflows", fn, n_tokens, ldx);
    if (!qlib_all_finite(x, n_tokens, c->k, ldx))
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: x contains NaN or Inf", fn);
    if (c->hessian) {
        float big = batch_abs_max(x, n_tokens, c->k, ldx);
        float limit = sqrtf(FLT_MAX / (2.0f * HESSIAN_BATCH));
        if (big > limit)
            return qlib_fail(QLIB_ERR_NUMERIC, "%s: |x| = %g exceeds %g: the Hessian would overflow",
                             fn, (double)big, (double)limit);
    }
    for (size_t t0 = 0; t0 < n_tokens; t0 += HESSIAN_BATCH) {
        size_t b = n_tokens - t0 < HESSIAN_BATCH ? n_tokens - t0 : HESSIAN_BATCH;
        const float *xb = x + t0 * ldx;
        if (c->hessian) {
            double total = (double)(c->n_tokens + b);
            qlib_la_syrk_upper_ctx(c->ctx, c->k, b, (float)(2.0 / total), xb, ldx,
                                   (float)((double)c->n_tokens / total), c->hessian, c->k);
        }
        if (c->abs_sum) calib_stats(c, xb, b, ldx);
        if (c->samples) calib_sample(c, xb, b, ldx);
        c->n_tokens += b;
    }
    return QLIB_OK;
}

qlib_status qlib_calib_act_stats(const qlib_calib *c, float *mean_abs, float *max_abs)
{
    static const char fn[] = "qlib_calib_act_stats";
    if (!c) return qlib_fail(QLIB_ERR_ARG, "%s: calib is NULL", fn);
    if (!c->abs_sum) return qlib_fail(QLIB_ERR_STATE, "%s: created without QLIB_CALIB_ACT_STATS", fn);
    if (!c->n_tokens) return qlib_fail(QLIB_ERR_STATE, "%s: no tokens seen", fn);
    for (size_t j = 0; j < c->k; j++) {
        if (mean_abs) mean_abs[j] = (float)(c->abs_sum[j] / (double)c->n_tokens);
        if (max_abs) max_abs[j] = c->abs_max[j];
    }
    return QLIB_OK;
}

qlib_status qlib_calib_hessian(const qlib_calib *c, float *h, size_t ldh)
{
    static const char fn[] = "qlib_calib_hessian";
    if (!c || !h) return qlib_fail(QLIB_ERR_ARG, "%s: calib or output is NULL", fn);
    if (ldh < c->k) return qlib_fail(QLIB_ERR_ARG, "%s: ldh=%zu is less than k=%zu", fn, ldh, c->k);
    if (!c->hessian) return qlib_fail(QLIB_ERR_STATE, "%s: created without QLIB_CALIB_HESSIAN", fn);
    if (!c->n_tokens) return qlib_fail(QLIB_ERR_STATE, "%s: no tokens seen", fn);
    for (size_t i = 0; i < c->k; i++)
        for (size_t j = 0; j < c->k; j++)
            h[i * ldh + j] = j >= i ? c->hessian[i * c->k + j] : c->hessian[j * c->k + i];
    return QLIB_OK;
}
