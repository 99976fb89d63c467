/* suite_calib: the Hessian's running mean against double precision, for
 * any batching, order and row stride; NaN/Inf and overflowing batches
 * rejected with nothing kept; channel statistics; the reservoir of samples;
 * argument errors; allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/core.h"

#define REQUIRE(expr, ...) \
    do { if (!(expr)) ck_abort_msg("'" #expr "' failed: " __VA_ARGS__); } while (0)

Suite *suite_calib(void);

/* m tokens of k channels, channel 2 scaled up like an outlier feature. */
static float *tokens(uint64_t seed, size_t m, size_t k)
{
    tu_rng r = { seed };
    float *x = tu_alloc_floats(m * k);
    for (size_t t = 0; t < m; t++)
        for (size_t j = 0; j < k; j++)
            x[t * k + j] = (float)(tu_normal(&r) * (j == 2 ? 20.0 : 1.0) + (j == 5 ? 0.5 : 0.0));
    return x;
}

typedef struct href {
    double *h;      /* 2/n sum x x^T */
    double *a;      /* 2/n sum |x_i x_j|, for the rounding bound */
} href;

static href hessian_ref(const float *x, size_t m, size_t k)
{
    href r = { calloc(k * k, sizeof(double)), calloc(k * k, sizeof(double)) };
    ck_assert(r.h && r.a);
    for (size_t t = 0; t < m; t++)
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++) {
                double p = (double)x[t * k + i] * x[t * k + j];
                r.h[i * k + j] += 2.0 * p / (double)m;
                r.a[i * k + j] += 2.0 * fabs(p) / (double)m;
            }
    return r;
}

static void free_ref(href *r)
{
    free(r->h);
    free(r->a);
}

/* Every entry of the calibration's H within the rounding of its fp32
 * arithmetic: n products summed (each sum and product off by 2^-24 of the
 * running |terms|), and per batch a rescale of H by n_old/n_new and a scale
 * 2/n_new, each a rounding or two: (n + 4 batches + 4) 2^-24 of 2/n sum|x_i x_j|. */
static void check_hessian(const qlib_calib *c, const href *r, size_t k, size_t m, size_t batches,
                          const char *what)
{
    float *h = tu_alloc_floats(k * k);
    ck_assert_int_eq(qlib_calib_hessian(c, h, k), QLIB_OK);
    ck_assert_uint_eq(qlib_calib_tokens(c), m);
    double scale = (double)(m + 4 * batches + 4) * 0x1p-24;
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < k; j++) {
            double d = fabs(h[i * k + j] - r->h[i * k + j]), tol = scale * r->a[i * k + j];
            REQUIRE(d <= tol, "%s: H[%zu][%zu] = %.9g, reference %.9g (tol %.3g)", what, i, j,
                    (double)h[i * k + j], r->h[i * k + j], tol);
            REQUIRE(h[i * k + j] == h[j * k + i], "%s: H not symmetric at %zu, %zu", what, i, j);
        }
    free(h);
}

static qlib_calib *make(qlib_ctx *ctx, size_t k, unsigned what, size_t max_samples)
{
    qlib_calib *c = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, k, what, max_samples, &c), QLIB_OK);
    ck_assert_uint_eq(qlib_calib_k(c), k);
    ck_assert_uint_eq(qlib_calib_tokens(c), 0);
    return c;
}

/* Feeds x (m x k) in batches of b tokens from a copy with row stride ldx,
 * whose padding is NaN (never read). */
static void feed(qlib_calib *c, const float *x, size_t m, size_t k, size_t ldx, size_t b)
{
    float *xs = tu_alloc_floats(m * ldx);
    for (size_t t = 0; t < m; t++)
        for (size_t j = 0; j < ldx; j++) xs[t * ldx + j] = j < k ? x[t * k + j] : NAN;
    for (size_t t0 = 0; t0 < m; t0 += b) {
        size_t nb = m - t0 < b ? m - t0 : b;
        ck_assert_int_eq(qlib_calib_add(c, xs + t0 * ldx, nb, ldx), QLIB_OK);
    }
    free(xs);
}

START_TEST(test_calib_hessian_streaming)
{
    const size_t k = 24, m = 50;
    static const size_t batch[] = { 50, 1, 3, 17, 49 };
    float *x = tokens(1, m, k);
    href r = hessian_ref(x, m, k);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    char what[64];
    for (size_t b = 0; b < sizeof batch / sizeof batch[0]; b++)
        for (size_t ldx = k; ldx <= k + 5; ldx += 5) {
            qlib_calib *c = make(ctx, k, QLIB_CALIB_HESSIAN, 0);
            feed(c, x, m, k, ldx, batch[b]);
            snprintf(what, sizeof what, "batches of %zu, ldx %zu", batch[b], ldx);
            check_hessian(c, &r, k, m, (m + batch[b] - 1) / batch[b], what);
            qlib_calib_destroy(c);
        }
    /* the tokens in reverse order */
    float *rev = tu_alloc_floats(m * k);
    for (size_t t = 0; t < m; t++) memcpy(rev + t * k, x + (m - 1 - t) * k, k * sizeof(float));
    qlib_calib *c = make(ctx, k, QLIB_CALIB_ALL, 8);
    feed(c, rev, m, k, k, 7);
    check_hessian(c, &r, k, m, 8, "reversed, batches of 7");
    qlib_calib_destroy(c);
    free(rev);
    free_ref(&r);
    free(x);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* More tokens in one call than one rank-k update takes (4096). */
START_TEST(test_calib_hessian_large_batch)
{
    const size_t k = 5, m = 9000;
    float *x = tokens(2, m, k);
    href r = hessian_ref(x, m, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_calib *c = make(ctx, k, QLIB_CALIB_HESSIAN, 0);
    ck_assert_int_eq(qlib_calib_add(c, x, m, k), QLIB_OK);
    check_hessian(c, &r, k, m, 3, "one call");
    qlib_calib_destroy(c);
    c = make(ctx, k, QLIB_CALIB_HESSIAN, 0);
    feed(c, x, m, k, k, 1000);
    check_hessian(c, &r, k, m, 9, "batches of 1000");
    qlib_calib_destroy(c);
    /* one token: H = 2 x x^T, one rounding per entry */
    c = make(ctx, k, QLIB_CALIB_HESSIAN, 0);
    ck_assert_int_eq(qlib_calib_add(c, x, 1, k), QLIB_OK);
    float h[25];
    ck_assert_int_eq(qlib_calib_hessian(c, h, k), QLIB_OK);
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < k; j++)
            ck_assert_float_eq(h[i * k + j], (float)(2.0 * x[i] * x[j]));
    qlib_calib_destroy(c);
    free_ref(&r);
    free(x);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* A snapshot of everything a calibration holds, to show a rejected batch
 * left no trace. */
typedef struct snap {
    size_t tokens, n_samples;
    float *h, *mean, *max, *samples;
} snap;

static snap take(const qlib_calib *c)
{
    size_t k = c->k;
    snap s = { qlib_calib_tokens(c), c->n_samples, tu_alloc_floats(k * k), tu_alloc_floats(k),
               tu_alloc_floats(k), tu_alloc_floats(c->max_samples * k) };
    ck_assert_int_eq(qlib_calib_hessian(c, s.h, k), QLIB_OK);
    ck_assert_int_eq(qlib_calib_act_stats(c, s.mean, s.max), QLIB_OK);
    memcpy(s.samples, c->samples, c->n_samples * k * sizeof(float));
    return s;
}

static void same(const snap *a, const snap *b, size_t k)
{
    ck_assert_uint_eq(a->tokens, b->tokens);
    ck_assert_uint_eq(a->n_samples, b->n_samples);
    ck_assert(memcmp(a->h, b->h, k * k * sizeof(float)) == 0);
    ck_assert(memcmp(a->mean, b->mean, k * sizeof(float)) == 0);
    ck_assert(memcmp(a->max, b->max, k * sizeof(float)) == 0);
    ck_assert(memcmp(a->samples, b->samples, a->n_samples * k * sizeof(float)) == 0);
}

static void drop(snap *s)
{
    free(s->h);
    free(s->mean);
    free(s->max);
    free(s->samples);
}

START_TEST(test_calib_rejects_nonfinite)
{
    const size_t k = 16, m = 12;
    float *x = tokens(3, m, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_calib *c = make(ctx, k, QLIB_CALIB_ALL, 20);
    ck_assert_int_eq(qlib_calib_add(c, x, 6, k), QLIB_OK);
    snap before = take(c);
    static const float bad[] = { NAN, INFINITY, -INFINITY, 1e18f, -3e17f };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float keep = x[9 * k + 11];
        x[9 * k + 11] = bad[i];            /* the last-but-two token of the batch */
        ck_assert_int_eq(qlib_calib_add(c, x + 6 * k, 6, k), QLIB_ERR_NUMERIC);
        x[9 * k + 11] = keep;
        snap after = take(c);
        same(&before, &after, k);
        drop(&after);
    }
    /* without a Hessian, large values are fine (statistics are in double) */
    qlib_calib *s = make(ctx, k, QLIB_CALIB_ACT_STATS, 0);
    x[0] = 1e30f;
    ck_assert_int_eq(qlib_calib_add(s, x, m, k), QLIB_OK);
    x[0] = NAN;
    ck_assert_int_eq(qlib_calib_add(s, x, m, k), QLIB_ERR_NUMERIC);
    ck_assert_uint_eq(qlib_calib_tokens(s), m);
    qlib_calib_destroy(s);
    drop(&before);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free(x);
}
END_TEST

/* Mean |x| (in double, rounded once) and max |x| per channel, streamed. */
START_TEST(test_calib_act_stats)
{
    const size_t k = 10, m = 37;
    float *x = tokens(4, m, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_calib *c = make(ctx, k, QLIB_CALIB_ACT_STATS, 0);
    feed(c, x, m, k, k + 3, 5);
    float mean[10], mx[10];
    ck_assert_int_eq(qlib_calib_act_stats(c, mean, mx), QLIB_OK);
    for (size_t j = 0; j < k; j++) {
        double sum = 0.0;
        float want_max = 0.0f;
        for (size_t t = 0; t < m; t++) {
            sum += fabs(x[t * k + j]);
            want_max = fmaxf(want_max, fabsf(x[t * k + j]));
        }
        /* a double sum of m floats: off by m 2^-53 of the sum, then one fp32 rounding */
        ck_assert_float_eq_tol(mean[j], sum / (double)m, 0x1p-23 * sum / (double)m);
        ck_assert_float_eq(mx[j], want_max);
    }
    float only[10];
    ck_assert_int_eq(qlib_calib_act_stats(c, NULL, only), QLIB_OK);
    ck_assert(memcmp(only, mx, sizeof only) == 0);
    ck_assert_int_eq(qlib_calib_act_stats(c, only, NULL), QLIB_OK);
    ck_assert(memcmp(only, mean, sizeof only) == 0);
    qlib_calib_destroy(c);
    qlib_ctx_destroy(ctx);
    free(x);
}
END_TEST

/* Token t of the stream is row t: its first value is t. */
static float *numbered(size_t m, size_t k)
{
    float *x = tu_alloc_floats(m * k);
    for (size_t t = 0; t < m; t++)
        for (size_t j = 0; j < k; j++) x[t * k + j] = (float)t + 0.125f * (float)j;
    return x;
}

START_TEST(test_calib_reservoir)
{
    const size_t k = 3, m = 2000, keep = 100;
    float *x = numbered(m, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    /* room for everything: the samples are the tokens, in order */
    qlib_calib *c = make(ctx, k, QLIB_CALIB_SAMPLES, 64);
    ck_assert_int_eq(qlib_calib_add(c, x, 40, k), QLIB_OK);
    ck_assert_uint_eq(c->n_samples, 40);
    ck_assert(memcmp(c->samples, x, 40 * k * sizeof(float)) == 0);
    qlib_calib_destroy(c);
    /* a full reservoir: the same choice however the stream is cut */
    static const size_t batch[] = { 2000, 1, 7, 333 };
    float *first = tu_alloc_floats(keep * k);
    for (size_t b = 0; b < sizeof batch / sizeof batch[0]; b++) {
        c = make(ctx, k, QLIB_CALIB_SAMPLES, keep);
        feed(c, x, m, k, k, batch[b]);
        ck_assert_uint_eq(c->n_samples, keep);
        if (b == 0) memcpy(first, c->samples, keep * k * sizeof(float));
        ck_assert_msg(memcmp(first, c->samples, keep * k * sizeof(float)) == 0,
                      "batches of %zu chose other tokens", batch[b]);
        qlib_calib_destroy(c);
    }
    /* each sample is a whole token, no token twice; every token is kept with
     * probability 100/2000, so the first half supplies 50 +- 5 (binomial sd);
     * the seed is fixed, so the count is too: 25..75 is 5 sd either way. */
    char *seen = calloc(m, 1);
    ck_assert_ptr_nonnull(seen);
    size_t early = 0;
    for (size_t i = 0; i < keep; i++) {
        size_t t = (size_t)first[i * k];
        ck_assert(memcmp(first + i * k, x + t * k, k * sizeof(float)) == 0);
        ck_assert_int_eq(seen[t]++, 0);
        early += t < m / 2;
    }
    ck_assert_msg(early >= 25 && early <= 75, "%zu of 100 samples from the first half", early);
    free(seen);
    free(first);
    free(x);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_calib_arguments)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_calib *c = (qlib_calib *)&c;
    ck_assert_int_eq(qlib_calib_create(ctx, 4, QLIB_CALIB_HESSIAN, 0, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_create(NULL, 4, QLIB_CALIB_HESSIAN, 0, &c), QLIB_ERR_ARG);
    ck_assert_ptr_null(c);
    c = (qlib_calib *)&c;
    ck_assert_int_eq(qlib_calib_create(ctx, 0, QLIB_CALIB_HESSIAN, 0, &c), QLIB_ERR_ARG);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(qlib_calib_create(ctx, 4, 0, 0, &c), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_create(ctx, 4, 8, 0, &c), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_create(ctx, 4, QLIB_CALIB_ALL | 16, 4, &c), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_create(ctx, 4, QLIB_CALIB_SAMPLES, 0, &c), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_create(ctx, (size_t)1 << 40, QLIB_CALIB_HESSIAN, 0, &c),
                     QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_calib_create(ctx, (size_t)1 << 30, QLIB_CALIB_SAMPLES, SIZE_MAX / 4, &c),
                     QLIB_ERR_ARG);
    ck_assert_ptr_null(c);

    float x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, out[16];
    c = make(ctx, 4, QLIB_CALIB_HESSIAN, 0);
    ck_assert_int_eq(qlib_calib_hessian(c, out, 4), QLIB_ERR_STATE);      /* no tokens */
    ck_assert_int_eq(qlib_calib_act_stats(c, out, out + 4), QLIB_ERR_STATE);
    ck_assert_int_eq(qlib_calib_add(NULL, x, 2, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_add(c, NULL, 2, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_add(c, x, 0, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_add(c, x, 2, 3), QLIB_ERR_SHAPE);
    ck_assert_int_eq(qlib_calib_add(c, x, SIZE_MAX / 2, 4), QLIB_ERR_ARG);
    ck_assert_uint_eq(qlib_calib_tokens(c), 0);
    ck_assert_int_eq(qlib_calib_add(c, x, 2, 4), QLIB_OK);
    ck_assert_int_eq(qlib_calib_hessian(c, NULL, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_hessian(NULL, out, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_hessian(c, out, 3), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_hessian(c, out, 4), QLIB_OK);
    ck_assert_int_eq(qlib_calib_act_stats(c, out, out + 4), QLIB_ERR_STATE); /* no stats kept */
    ck_assert_int_eq(qlib_calib_act_stats(NULL, out, out + 4), QLIB_ERR_ARG);
    qlib_calib_destroy(c);
    c = make(ctx, 4, QLIB_CALIB_ACT_STATS, 0);
    ck_assert_int_eq(qlib_calib_add(c, x, 2, 4), QLIB_OK);
    ck_assert_int_eq(qlib_calib_hessian(c, out, 4), QLIB_ERR_STATE);     /* no Hessian kept */
    qlib_calib_destroy(c);
    ck_assert_uint_eq(qlib_calib_tokens(NULL), 0);
    ck_assert_uint_eq(qlib_calib_k(NULL), 0);
    qlib_calib_destroy(NULL);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Every allocation of create failing in turn: NOMEM, no output, no leak. */
START_TEST(test_calib_alloc_failures)
{
    tu_counting cnt = { 0, 0, 0, 0 };
    qlib_allocator a = tu_counting_allocator(&cnt);
    qlib_ctx *ctx = NULL;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&a, &ctx), QLIB_OK);
    qlib_status s = QLIB_ERR_NOMEM;
    for (long step = 1; s == QLIB_ERR_NOMEM; step++) {
        size_t before = cnt.allocs - cnt.frees;
        qlib_calib *c = (qlib_calib *)&c;
        cnt.fail_at = (long)cnt.allocs + step;
        s = qlib_calib_create(ctx, 64, QLIB_CALIB_ALL, 32, &c);
        cnt.fail_at = 0;
        if (s == QLIB_ERR_NOMEM) ck_assert_ptr_null(c);
        else ck_assert_int_eq(s, QLIB_OK);
        qlib_calib_destroy(s == QLIB_OK ? c : NULL);
        ck_assert_uint_eq(cnt.allocs - cnt.frees, before);
        ck_assert_int_lt(step, 20);
    }
    qlib_ctx_destroy(ctx);
    ck_assert_uint_eq(cnt.allocs, cnt.frees);
}
END_TEST

Suite *suite_calib(void)
{
    Suite *s = suite_create("calib");
    TCase *tc = tu_tcase("calib");
    tcase_add_test(tc, test_calib_hessian_streaming);
    tcase_add_test(tc, test_calib_hessian_large_batch);
    tcase_add_test(tc, test_calib_rejects_nonfinite);
    tcase_add_test(tc, test_calib_act_stats);
    tcase_add_test(tc, test_calib_reservoir);
    tcase_add_test(tc, test_calib_arguments);
    tcase_add_test(tc, test_calib_alloc_failures);
    suite_add_tcase(s, tc);
    return s;
}
