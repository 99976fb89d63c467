/* suite_matmul: qlib_matmul against a double-precision product with the
 * dequantized weights, for every bit width, group, symmetry and compute
 * mode, M = 1..17 and larger, strided x and y; and every error path. */
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

Suite *suite_matmul(void);

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define U32 0x1p-24            /* unit roundoff of fp32 */
#define SENTINEL -12345.0f

static const int all_bits[] = { 8, 4, 3, 2 };
static const int all_groups[] = { -1, 0, 32, 64, 128 };

/* Per output element: the exact product with Ŵ, and what bounds its error.
 *   S = sum_j |x_j| |ŵ_j|: fp32 accumulation of any order with at most
 *       K + c roundings on a path is within (K + c) u S (u = 2^-24; ŵ is an
 *       fp16 scale times a small integer, so scale*(code-zero) is exact).
 *   A = sum_b (d_b / 2) sum_{j in b} |ŵ_j|, d_b = max_{j in b} |x_j| / 127:
 *       AUTO rounds x to d_b * q_j in blocks b of 32, |x_j - d_b q_j| <=
 *       d_b / 2, so |sum_j (x_j - d_b q_j) ŵ_j| <= A. */
typedef struct ref_out {
    double *y, *s, *a;         /* m x n */
} ref_out;

static void reference(const float *x, size_t m, size_t ldx, const float *wh, size_t n, size_t k,
                      ref_out *out)
{
    out->y = malloc(m * n * sizeof(double));
    out->s = malloc(m * n * sizeof(double));
    out->a = malloc(m * n * sizeof(double));
    ck_assert(out->y && out->s && out->a);
    tu_ref_matmul(x, m, ldx, wh, n, k, k, out->y);
    size_t nb = (k + 31) / 32;
    double *d = malloc(nb * sizeof(double));
    ck_assert_ptr_nonnull(d);
    for (size_t i = 0; i < m; i++) {
        const float *xi = x + i * ldx;
        for (size_t b = 0; b < nb; b++) {
            double amax = 0.0;
            for (size_t j = 32 * b; j < k && j < 32 * b + 32; j++) amax = fmax(amax, fabs(xi[j]));
            d[b] = amax / 127.0;
        }
        for (size_t r = 0; r < n; r++) {
            double s = 0.0, a = 0.0;
            for (size_t j = 0; j < k; j++) {
                double wa = fabs(wh[r * k + j]);
                s += fabs(xi[j]) * wa;
                a += d[j / 32] / 2.0 * wa;
            }
            out->s[i * n + r] = s;
            out->a[i * n + r] = a;
        }
    }
    free(d);
}

static void reference_free(ref_out *o)
{
    free(o->y);
    free(o->s);
    free(o->a);
}

/* The bound for element (i, r) in a compute mode; float tensors take the
 * fp32 path (OpenBLAS) in either mode. */
static double tolerance(const ref_out *ref, size_t idx, size_t k, int int8_acts)
{
    double g = (double)(k + 16) * U32, s = ref->s[idx];
    if (!int8_acts) return g * s + 1e-30;
    double a = ref->a[idx];
    return a * (1.0 + 1e-6) + g * (s + a) + 1e-30;
}

/* Runs qlib_matmul on the first m rows of x and checks every element and
 * that y's row padding is untouched. */
static void check_product(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                          size_t ldx, size_t ldy, const ref_out *ref, int int8_acts,
                          const char *what)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *y = tu_alloc_floats(m * ldy);
    for (size_t i = 0; i < m * ldy; i++) y[i] = SENTINEL;
    qlib_status st = qlib_matmul(ctx, t, x, m, ldx, y, ldy);
    ck_assert_msg(st == QLIB_OK, "%s m=%zu: %s", what, m, qlib_last_error());
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < m; i++) {
        for (size_t r = 0; r < n; r++) {
            size_t idx = i * n + r;
            double got = y[i * ldy + r], want = ref->y[idx];
            double tol = tolerance(ref, idx, k, int8_acts);
            REQUIRE(fabs(got - want) <= tol,
                          "%s m=%zu y[%zu][%zu]=%.9g, exact %.9g, |diff| %.3g > %.3g", what, m, i,
                          r, got, want, fabs(got - want), tol);
            num += (got - want) * (got - want);
            den += want * want;
        }
        for (size_t r = n; r < ldy; r++)
            REQUIRE(y[i * ldy + r] == SENTINEL, "%s: y padding written", what);
    }
    /* fp32 accumulation: relative error of the order u sqrt(K) for data
     * without structure; 1e-6 sqrt(K) leaves a wide margin. */
    if (!int8_acts && den > 0.0)
        ck_assert_msg(sqrt(num / den) <= 1e-6 * sqrt((double)k), "%s m=%zu: rel err %.3g", what,
                      m, sqrt(num / den));
    free(y);
}

/* x: m x k activations with outlier channels, row stride ldx, NaN in the
 * row padding (which must never be read). */
static float *make_x(uint64_t seed, size_t m, size_t k, size_t ldx)
{
    tu_act_model am;
    tu_act_model_init(&am, k, 8.0f, seed);
    tu_rng r = { seed + 1 };
    float *x = tu_alloc_floats(m * ldx);
    for (size_t i = 0; i < m * ldx; i++) x[i] = NAN;
    tu_act_model_sample(&am, &r, x, m, ldx);
    tu_act_model_free(&am);
    return x;
}

static float *dequantized(qlib_ctx *ctx, const qlib_tensor *t)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *wh = tu_alloc_floats(n * k);
    ck_assert_int_eq(qlib_dequantize(ctx, t, wh, k), QLIB_OK);
    return wh;
}

/* Every M in 1..17 and a few larger, on one tensor and one compute mode. */
static void sweep_m(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t ldx,
                    const char *what)
{
    static const size_t ms[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 33 };
    size_t mmax = ms[COUNT(ms) - 1], n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *wh = dequantized(ctx, t);
    ref_out ref;
    reference(x, mmax, ldx, wh, n, k, &ref);
    int int8_acts = qlib_ctx_compute(ctx) == QLIB_COMPUTE_AUTO &&
                    qlib_tensor_method(t) != QLIB_METHOD_NONE;
    for (size_t mi = 0; mi < COUNT(ms); mi++)
        check_product(ctx, t, x, ms[mi], ldx, n + 3, &ref, int8_acts, what);
    reference_free(&ref);
    free(wh);
}

START_TEST(test_matmul_all_formats)
{
    const int bits = all_bits[_i];
    const size_t n = 37, k = 172, ldx = k + 5;   /* K = 172: a partial last group */
    tu_rng r = { 1000 + (uint64_t)bits };
    float *w = tu_alloc_floats(n * k), *x = make_x(77, 33, k, ldx);
    tu_llm_weights(&r, w, n, k, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    char what[96];
    for (size_t gi = 0; gi < COUNT(all_groups); gi++)
        for (int sym = 0; sym <= 1; sym++) {
            qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, bits, all_groups[gi],
                                         sym, NULL);
            for (int mode = 0; mode <= 1; mode++) {
                ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
                snprintf(what, sizeof what, "%s bits=%d group=%d sym=%d mode=%d",
                         qlib_ctx_isa(ctx), bits, all_groups[gi], sym, mode);
                sweep_m(ctx, t, x, ldx, what);
            }
            qlib_tensor_destroy(t);
        }
    qlib_ctx_destroy(ctx);
    free(w);
    free(x);
}
END_TEST

/* K around the block (32), row padding (64) and group edges, on the scalar
 * kernels and on the best of this CPU. */
START_TEST(test_matmul_k_edges)
{
    static const size_t ks[] = { 1, 31, 32, 33, 63, 64, 65, 96, 127, 129, 200 };
    static const size_t ms[] = { 1, 3, 9 };
    const size_t n = 9;
    qlib_ctx *ctx = tu_ctx(1, _i == 0 ? "scalar" : NULL);
    char what[128];
    for (size_t ki = 0; ki < COUNT(ks); ki++) {
        size_t k = ks[ki];
        tu_rng r = { 500 + k };
        float *w = tu_alloc_floats(n * k), *x = make_x(600 + k, 9, k, k);
        tu_llm_weights(&r, w, n, k, k);
        static const int groups[] = { 0, 32, 64, 96 };
        for (size_t bi = 0; bi < COUNT(all_bits); bi++)
            for (size_t gi = 0; gi < COUNT(groups); gi++) {
                qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, all_bits[bi],
                                             groups[gi], (int)(k & 1), NULL);
                float *wh = dequantized(ctx, t);
                ref_out ref;
                reference(x, 9, k, wh, n, k, &ref);
                for (int mode = 0; mode <= 1; mode++) {
                    ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
                    snprintf(what, sizeof what, "%s k=%zu bits=%d group=%d mode=%d",
                             qlib_ctx_isa(ctx), k, all_bits[bi], groups[gi], mode);
                    for (size_t mi = 0; mi < COUNT(ms); mi++)
                        check_product(ctx, t, x, ms[mi], k, n, &ref, mode == 0, what);
                }
                reference_free(&ref);
                free(wh);
                qlib_tensor_destroy(t);
            }
        free(w);
        free(x);
    }
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Float tensors go through OpenBLAS in either mode: fp32 bounds. */
START_TEST(test_matmul_float_tensors)
{
    const size_t n = 70, k = 150, ldx = 151;
    tu_rng r = { 3 };
    float *w = tu_alloc_floats(n * k), *x = make_x(4, 33, k, ldx);
    tu_llm_weights(&r, w, n, k, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    static const int bits[] = { 32, 16 };
    for (size_t bi = 0; bi < COUNT(bits); bi++) {
        qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_NONE, bits[bi], 0, 0, NULL);
        for (int mode = 0; mode <= 1; mode++) {
            ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
            sweep_m(ctx, t, x, ldx, bits[bi] == 32 ? "NONE 32" : "NONE 16");
        }
        qlib_tensor_destroy(t);
    }
    qlib_ctx_destroy(ctx);
    free(w);
    free(x);
}
END_TEST

/* A larger product split over threads (many 64-column chunks), and buffers
 * of exactly m*k and m*n floats so that a read or write past them shows
 * under the sanitizers. */
START_TEST(test_matmul_larger_tight)
{
    const size_t n = 200, k = 700, m = 20;
    tu_rng r = { 8 };
    float *w = tu_alloc_floats(n * k), *x = make_x(9, m, k, k);
    tu_llm_weights(&r, w, n, k, k);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    static const int groups[] = { 128, 0 };
    for (size_t gi = 0; gi < COUNT(groups); gi++) {
        qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, groups[gi], 0, NULL);
        float *wh = dequantized(ctx, t);
        ref_out ref;
        reference(x, m, k, wh, n, k, &ref);
        for (int mode = 0; mode <= 1; mode++) {
            ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
            check_product(ctx, t, x, m, k, n, &ref, mode == 0, "large");
            check_product(ctx, t, x, 1, k, n, &ref, mode == 0, "large gemv");
        }
        reference_free(&ref);
        free(wh);
        qlib_tensor_destroy(t);
    }
    qlib_ctx_destroy(ctx);
    free(w);
    free(x);
}
END_TEST

/* Inputs on the int8 grid of their block (each block's max is 127 times a
 * power of two and every value a multiple of it): AUTO rounds nothing, so
 * it meets the fp32 bound too. */
START_TEST(test_matmul_auto_exact_acts)
{
    const size_t n = 20, k = 128, m = 5;
    tu_rng r = { 12 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    tu_llm_weights(&r, w, n, k, k);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < k; j++) {
            float d = ldexpf(1.0f, (int)((i + j / 32) % 5) - 8);
            int q = j % 32 == 0 ? 127 : (int)(tu_next(&r) % 255) - 127;
            x[i * k + j] = d * (float)q;
        }
    qlib_ctx *ctx = tu_ctx(1, NULL);
    for (size_t bi = 0; bi < COUNT(all_bits); bi++) {
        qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, all_bits[bi], 32, 0, NULL);
        float *wh = dequantized(ctx, t);
        ref_out ref;
        reference(x, m, k, wh, n, k, &ref);
        check_product(ctx, t, x, m, k, n, &ref, 0, "auto on the int8 grid");
        reference_free(&ref);
        free(wh);
        qlib_tensor_destroy(t);
    }
    qlib_ctx_destroy(ctx);
    free(w);
    free(x);
}
END_TEST

/* Zero activations give exact zeros in both modes. */
START_TEST(test_matmul_zero_x)
{
    const size_t n = 70, k = 96, m = 4;
    tu_rng r = { 13 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k), *y = tu_alloc_floats(m * n);
    tu_llm_weights(&r, w, n, k, k);
    memset(x, 0, m * k * sizeof(float));
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 3, 32, 0, NULL);
    for (int mode = 0; mode <= 1; mode++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
        for (size_t i = 0; i < m * n; i++) y[i] = SENTINEL;
        ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y, n), QLIB_OK);
        for (size_t i = 0; i < m * n; i++) REQUIRE(y[i] == 0.0f, "y[%zu]", i);
    }
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(w); free(x); free(y);
}
END_TEST

/* ------------------------------------------------------------ error paths */

static void assert_untouched(const float *y, size_t count)
{
    for (size_t i = 0; i < count; i++) REQUIRE(y[i] == SENTINEL, "y[%zu] written", i);
}

#define EXPECT(call, status)                                                             \
    do {                                                                                 \
        qlib_status st_ = (call);                                                        \
        ck_assert_msg(st_ == (status), "%s: %d, want %d (%s)", #call, (int)st_, (int)(status), \
                      qlib_last_error());                                                \
        ck_assert_msg(strstr(qlib_last_error(), "qlib_matmul") != NULL, "message \"%s\"",  \
                      qlib_last_error());                                                \
    } while (0)

START_TEST(test_matmul_errors)
{
    const size_t n = 10, k = 64, m = 3;
    tu_rng r = { 14 };
    float w[10 * 64], buf[3 * 64 + 3 * 10 + 16];
    tu_llm_weights(&r, w, n, k, k);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, 32, 0, NULL);
    float *x = buf, *y = buf + m * k;
    for (size_t i = 0; i < m * k; i++) x[i] = (float)tu_normal(&r);
    for (size_t i = 0; i < m * n; i++) y[i] = SENTINEL;

    EXPECT(qlib_matmul(NULL, t, x, m, k, y, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, NULL, x, m, k, y, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, NULL, m, k, y, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x, m, k, NULL, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x, 0, k, y, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x, m, k - 1, y, n), QLIB_ERR_SHAPE);
    EXPECT(qlib_matmul(ctx, t, x, m, 0, y, n), QLIB_ERR_SHAPE);
    EXPECT(qlib_matmul(ctx, t, x, m, k, y, n - 1), QLIB_ERR_SHAPE);
    EXPECT(qlib_matmul(ctx, t, x, m, k, y, 0), QLIB_ERR_SHAPE);
    /* the message gives the values */
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, 63, y, n), QLIB_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "63"));
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "64"));
    /* m * ldx or m * ldy beyond the address space: rejected before reading */
    EXPECT(qlib_matmul(ctx, t, x, SIZE_MAX / 8, k, y, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x, 3, SIZE_MAX / 2, y, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x, 3, k, y, SIZE_MAX / 2), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x, SIZE_MAX, SIZE_MAX, y, SIZE_MAX), QLIB_ERR_ARG);
    assert_untouched(y, m * n);

    /* y overlapping x, from either side; adjacent buffers are fine */
    EXPECT(qlib_matmul(ctx, t, x, m, k, x + m * k - 1, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x, m, k, x, n), QLIB_ERR_ARG);
    EXPECT(qlib_matmul(ctx, t, x + n - 1, 1, k, x, n), QLIB_ERR_ARG);
    assert_untouched(y, m * n);
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y, n), QLIB_OK);
    ck_assert_int_eq(qlib_matmul(ctx, t, x + n, 1, k, x, n), QLIB_OK);

    /* NaN or Inf anywhere in x */
    static const float bad[] = { NAN, INFINITY, -INFINITY };
    static const size_t where[] = { 0, 1 * 64 + 17, 3 * 64 - 1 };
    for (int mode = 0; mode <= 1; mode++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
        for (size_t bi = 0; bi < COUNT(bad); bi++)
            for (size_t wi = 0; wi < COUNT(where); wi++) {
                float keep = x[where[wi]];
                x[where[wi]] = bad[bi];
                EXPECT(qlib_matmul(ctx, t, x, m, k, y, n), QLIB_ERR_NUMERIC);
                x[where[wi]] = keep;
            }
    }
    /* The same on a float tensor. */
    qlib_tensor *tf = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_NONE, 32, 0, 0, NULL);
    x[5] = NAN;
    EXPECT(qlib_matmul(ctx, tf, x, m, k, y, n), QLIB_ERR_NUMERIC);
    x[5] = 0.5f;
    EXPECT(qlib_matmul(ctx, tf, x, m, k - 1, y, n), QLIB_ERR_SHAPE);
    ck_assert_int_eq(qlib_matmul(ctx, tf, x, m, k, y, n), QLIB_OK);
    qlib_tensor_destroy(tf);

    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

Suite *suite_matmul(void)
{
    Suite *s = suite_create("matmul");
    TCase *tc = tu_tcase("matmul");
    tcase_add_loop_test(tc, test_matmul_all_formats, 0, (int)COUNT(all_bits));
    tcase_add_loop_test(tc, test_matmul_k_edges, 0, 2);
    tcase_add_test(tc, test_matmul_float_tensors);
    tcase_add_test(tc, test_matmul_larger_tight);
    tcase_add_test(tc, test_matmul_auto_exact_acts);
    tcase_add_test(tc, test_matmul_zero_x);
    tcase_add_test(tc, test_matmul_errors);
    suite_add_tcase(s, tc);
    return s;
}
