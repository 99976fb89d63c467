/* suite_linalg: the linear algebra under GPTQ and AWQ (src/linalg/).
 *
 * The built-in one (builtin.h; in every build, the library's own in
 * BLAS=none builds): its GEMM, in every variant this CPU runs, for every
 * transposition, shapes around the tile and block edges and leading
 * dimensions wider than the matrices, gives the bits of the plain triple loop
 * in the order builtin_gemm.c states (so every variant gives the same bits),
 * and stays within the rounding bound of a double-precision reference;
 * BLAS's rules (alpha = 0 and k = 0 read neither A nor B, beta = 0 does not
 * read C, nothing outside C's block is written); SYRK likewise on the upper
 * triangle; both split over 1, 2 and 3 threads, the same bits; Cholesky's backward error and LAPACK's info (the first pivot that
 * is not positive, at recursion edges, NaN); the triangular inverse against a
 * double-precision inverse, and its zero-pivot info; the float-tensor matmul,
 * bit-identical for 1 and 2 threads.
 *
 * The backend in use (linalg.h: OpenBLAS, or the built-in one) is held to
 * the same rounding bounds and the same info values.
 *
 * Rounding bounds: u = 2^-24, gamma(n) = n u / (1 - n u); a sum of n + 1
 * terms, each a product of at most three rounded factors, is within
 * gamma(n + 3) of the exact sum of the magnitudes (Higham, Accuracy and
 * Stability of Numerical Algorithms, 2nd ed., ch. 3); a Cholesky factor
 * satisfies |L L^T - A| <= gamma(n + 1) |L| |L^T| (Theorem 10.3). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/core.h"
#include "linalg/builtin.h"
#include "linalg/linalg.h"

Suite *suite_linalg(void);

#define REQUIRE(expr, ...) \
    do { if (!(expr)) ck_abort_msg("'" #expr "' failed: " __VA_ARGS__); } while (0)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define SENTINEL 12345.0f

static double gamma_n(double n)
{
    double u = ldexp(1.0, -24);
    return n * u / (1.0 - n * u);
}

static void fill_uniform(tu_rng *r, float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = (float)(2.0 * tu_uniform(r) - 1.0);
}

static void fill_value(float *p, size_t n, float v)
{
    for (size_t i = 0; i < n; i++) p[i] = v;
}

/* op(A)[i][p] and op(B)[p][j] */
static float op_a(int ta, const float *a, size_t lda, size_t i, size_t p)
{
    return ta ? a[p * lda + i] : a[i * lda + p];
}

static float op_b(int tb, const float *b, size_t ldb, size_t p, size_t j)
{
    return tb ? b[j * ldb + p] : b[p * ldb + j];
}

/* The order builtin_gemm.c states, one rounding per statement (separate
 * statements, so that no compiler fuses the multiply and the add). */
static void gemm_ordered(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                         const float *a, size_t lda, const float *b, size_t ldb, float beta,
                         float *c, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float acc = beta == 0.0f ? 0.0f : beta == 1.0f ? c[i * ldc + j] : beta * c[i * ldc + j];
            if (alpha != 0.0f)
                for (size_t p = 0; p < k; p++) {
                    float x = alpha * op_a(ta, a, lda, i, p);
                    float prod = x * op_b(tb, b, ldb, p, j);
                    acc = acc + prod;
                }
            c[i * ldc + j] = acc;
        }
}

/* |c - exact| <= gamma(k + 3) (|beta c0| + sum |alpha a b|) for the block. */
static void check_gemm_bound(const char *what, int ta, int tb, size_t m, size_t n, size_t k,
                             float alpha, const float *a, size_t lda, const float *b, size_t ldb,
                             float beta, const float *c0, const float *c, size_t ldc)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double start = beta == 0.0f ? 0.0 : (double)beta * c0[i * ldc + j];
            double exact = start, mag = fabs(start);
            for (size_t p = 0; p < k; p++) {
                double t = (double)alpha * op_a(ta, a, lda, i, p) * op_b(tb, b, ldb, p, j);
                exact += t;
                mag += fabs(t);
            }
            double err = fabs((double)c[i * ldc + j] - exact);
            REQUIRE(err <= gamma_n((double)k + 3.0) * mag, "%s ta=%d tb=%d %zux%zux%zu (%zu,%zu): "
                    "%.9g vs %.9g, bound %.3g", what, ta, tb, m, n, k, i, j, (double)c[i * ldc + j],
                    exact, gamma_n((double)k + 3.0) * mag);
        }
}

/* The padding columns of C (ldc - n per row) still hold SENTINEL. */
static void check_padding(const float *c, size_t m, size_t n, size_t ldc, const char *what)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = n; j < ldc; j++)
            REQUIRE(c[i * ldc + j] == SENTINEL, "%s wrote outside its block at (%zu,%zu)", what, i, j);
}

typedef struct gemm_case {
    int ta, tb;
    size_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    float *a, *b, *c0, *c, *ref;
} gemm_case;

static void case_alloc(gemm_case *g, tu_rng *r, int ta, int tb, size_t m, size_t n, size_t k)
{
    g->ta = ta;
    g->tb = tb;
    g->m = m;
    g->n = n;
    g->k = k;
    g->lda = (ta ? m : k) + 3;
    g->ldb = (tb ? k : n) + 5;
    g->ldc = n + 7;
    size_t arows = ta ? k : m, brows = tb ? n : k;
    g->a = tu_alloc_floats(arows * g->lda);
    g->b = tu_alloc_floats(brows * g->ldb);
    g->c0 = tu_alloc_floats(m * g->ldc);
    g->c = tu_alloc_floats(m * g->ldc);
    g->ref = tu_alloc_floats(m * g->ldc);
    fill_uniform(r, g->a, arows * g->lda);
    fill_uniform(r, g->b, brows * g->ldb);
    fill_value(g->c0, m * g->ldc, SENTINEL);
    for (size_t i = 0; i < m; i++) fill_uniform(r, g->c0 + i * g->ldc, n);
}

static void case_free(gemm_case *g)
{
    free(g->a);
    free(g->b);
    free(g->c0);
    free(g->c);
    free(g->ref);
}

/* Every variant, overwriting (C full of NaN, not read) and accumulating,
 * against the ordered loop, bit for bit. */
static void check_variants(gemm_case *g, float alpha)
{
    const qlib_lb_gemm_kernel *kern[QLIB_LB_GEMM_MAX];
    size_t nk = qlib_lb_gemm_kernels(kern);
    size_t bytes = g->m * g->ldc * sizeof(float);
    for (size_t v = 0; v < nk; v++)
        for (int acc = 0; acc <= 1; acc++) {
            memcpy(g->c, g->c0, bytes);
            memcpy(g->ref, g->c0, bytes);
            if (!acc)
                for (size_t i = 0; i < g->m; i++) fill_value(g->c + i * g->ldc, g->n, NAN);
            kern[v]->gemm(g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb, g->c,
                          g->ldc, acc);
            gemm_ordered(g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb,
                         acc ? 1.0f : 0.0f, g->ref, g->ldc);
            REQUIRE(memcmp(g->c, g->ref, bytes) == 0, "%s ta=%d tb=%d %zux%zux%zu acc=%d: not the "
                    "bits of the ordered loop", kern[v]->name, g->ta, g->tb, g->m, g->n, g->k, acc);
        }
}

/* qlib_lb_sgemm (bits of the ordered loop) and the backend's qlib_la_sgemm
 * (rounding bound) with alpha, beta. */
static void check_entry_points(gemm_case *g, float alpha, float beta)
{
    size_t bytes = g->m * g->ldc * sizeof(float);
    memcpy(g->c, g->c0, bytes);
    memcpy(g->ref, g->c0, bytes);
    if (beta == 0.0f)
        for (size_t i = 0; i < g->m; i++) fill_value(g->c + i * g->ldc, g->n, NAN);
    qlib_lb_sgemm(g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb, beta, g->c,
                  g->ldc);
    gemm_ordered(g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb, beta, g->ref,
                 g->ldc);
    REQUIRE(memcmp(g->c, g->ref, bytes) == 0, "qlib_lb_sgemm ta=%d tb=%d %zux%zux%zu alpha %g "
            "beta %g: not the bits of the ordered loop", g->ta, g->tb, g->m, g->n, g->k,
            (double)alpha, (double)beta);
    check_gemm_bound("qlib_lb_sgemm", g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b,
                     g->ldb, beta, g->c0, g->c, g->ldc);
    check_padding(g->c, g->m, g->n, g->ldc, "qlib_lb_sgemm");

    memcpy(g->c, g->c0, bytes);
    if (beta == 0.0f)
        for (size_t i = 0; i < g->m; i++) fill_value(g->c + i * g->ldc, g->n, NAN);
    qlib_la_sgemm(g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b, g->ldb, beta, g->c,
                  g->ldc);
    check_gemm_bound(qlib_la_backend(), g->ta, g->tb, g->m, g->n, g->k, alpha, g->a, g->lda, g->b,
                     g->ldb, beta, g->c0, g->c, g->ldc);
    check_padding(g->c, g->m, g->n, g->ldc, qlib_la_backend());
}

START_TEST(test_gemm_shapes)
{
    /* around the tiles (6x8, 6x16, 8x12), the packed blocks (24 rows; 128
     * columns, 120 with the 8x12 tile, more when k < 256) and the depth of
     * a block (256) */
    static const size_t ms[] = { 1, 2, 5, 6, 7, 8, 9, 13, 23, 24, 25, 49 };
    static const size_t ns[] = { 1, 7, 8, 11, 12, 13, 16, 17, 120, 128, 129, 200 };
    static const size_t ks[] = { 1, 2, 31, 255, 256, 257, 513 };
    static const float alphas[] = { 1.0f, -1.0f, 0.37f };
    static const float betas[] = { 0.0f, 1.0f, -0.5f };
    tu_rng r = { 1601 };
    int t = 0;
    for (int ta = 0; ta <= 1; ta++)
        for (int tb = 0; tb <= 1; tb++)
            for (size_t im = 0; im < COUNT(ms); im++)
                for (size_t in = 0; in < COUNT(ns); in++, t++) {
                    gemm_case g;
                    case_alloc(&g, &r, ta, tb, ms[im], ns[in], ks[(im + in + (size_t)ta) % COUNT(ks)]);
                    float alpha = alphas[t % 3], beta = betas[(t / 3) % 3];
                    check_variants(&g, alpha);
                    check_entry_points(&g, alpha, beta);
                    case_free(&g);
                }
}
END_TEST

/* The built-in GEMM keeps BLAS's rules: alpha = 0 or k = 0 gives
 * C = beta C without reading A or B (NaN here), beta = 0 then writes zeros
 * over NaN. (OpenBLAS 0.3.21's small-matrix path computes 0 * NaN: the
 * callers never pass alpha = 0.) Both backends: m = 0 or n = 0 writes
 * nothing. */
START_TEST(test_gemm_blas_rules)
{
    size_t m = 9, n = 21, k = 13, ldc = n + 7;
    float *a = tu_alloc_floats(m * k), *b = tu_alloc_floats(k * n), *c = tu_alloc_floats(m * ldc);
    fill_value(a, m * k, NAN);
    fill_value(b, k * n, NAN);
    static const float betas[] = { 0.0f, 1.0f, 0.5f };
    for (size_t bi = 0; bi < COUNT(betas); bi++)
        for (int zero_k = 0; zero_k <= 1; zero_k++) {
            float beta = betas[bi];
            fill_value(c, m * ldc, SENTINEL);
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? NAN : (float)(i + j);
            size_t kk = zero_k ? 0 : k;
            float alpha = zero_k ? 1.0f : 0.0f;
            qlib_lb_sgemm(0, 0, m, n, kk, alpha, a, k, b, n, beta, c, ldc);
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < n; j++)
                    REQUIRE(c[i * ldc + j] == (beta == 0.0f ? 0.0f : beta * (float)(i + j)),
                            "beta %g k %zu alpha %g at (%zu,%zu): %g", (double)beta, kk,
                            (double)alpha, i, j, (double)c[i * ldc + j]);
            check_padding(c, m, n, ldc, "alpha = 0 / k = 0");
        }
    fill_value(c, m * ldc, SENTINEL);
    fill_uniform(&(tu_rng){ 3 }, a, m * k);
    fill_uniform(&(tu_rng){ 4 }, b, k * n);
    qlib_lb_sgemm(0, 0, 0, n, k, 1.0f, a, k, b, n, 0.0f, c, ldc);
    qlib_lb_sgemm(0, 0, m, 0, k, 1.0f, a, k, b, n, 0.0f, c, ldc);
    qlib_la_sgemm(0, 0, 0, n, k, 1.0f, a, k, b, n, 0.0f, c, ldc);
    qlib_la_sgemm(0, 0, m, 0, k, 1.0f, a, k, b, n, 0.0f, c, ldc);
    for (size_t i = 0; i < m * ldc; i++) REQUIRE(c[i] == SENTINEL, "empty product wrote %zu", i);
    free(a);
    free(b);
    free(c);
}
END_TEST

/* The _ctx entry points on 1, 2 and 3 threads: the built-in one gives the
 * single-threaded bits whatever the split (rows or columns of C, tasks of
 * uneven size); the backend stays within the rounding bound. */
START_TEST(test_gemm_syrk_threads)
{
    static const size_t shapes[][3] = { { 300, 250, 100 }, { 97, 1000, 61 }, { 1000, 97, 61 } };
    tu_rng r = { 1608 };
    qlib_ctx *ctx[3] = { tu_ctx(1, NULL), tu_ctx(2, NULL), tu_ctx(3, NULL) };
    for (size_t si = 0; si < COUNT(shapes); si++)
        for (int ta = 0; ta <= 1; ta++) {
            int tb = !ta;
            gemm_case g;
            case_alloc(&g, &r, ta, tb, shapes[si][0], shapes[si][1], shapes[si][2]);
            size_t bytes = g.m * g.ldc * sizeof(float);
            float beta = si == 1 ? 0.0f : 0.5f;
            memcpy(g.ref, g.c0, bytes);
            qlib_lb_sgemm(ta, tb, g.m, g.n, g.k, -1.0f, g.a, g.lda, g.b, g.ldb, beta, g.ref, g.ldc);
            for (int t = 0; t < 3; t++) {
                memcpy(g.c, g.c0, bytes);
                qlib_lb_sgemm_ctx(ctx[t], ta, tb, g.m, g.n, g.k, -1.0f, g.a, g.lda, g.b, g.ldb, beta,
                                  g.c, g.ldc);
                REQUIRE(memcmp(g.c, g.ref, bytes) == 0, "qlib_lb_sgemm_ctx %zux%zux%zu on %d threads",
                        g.m, g.n, g.k, t + 1);
                memcpy(g.c, g.c0, bytes);
                qlib_la_sgemm_ctx(ctx[t], ta, tb, g.m, g.n, g.k, -1.0f, g.a, g.lda, g.b, g.ldb, beta,
                                  g.c, g.ldc);
                check_gemm_bound(qlib_la_backend(), ta, tb, g.m, g.n, g.k, -1.0f, g.a, g.lda, g.b,
                                 g.ldb, beta, g.c0, g.c, g.ldc);
                check_padding(g.c, g.m, g.n, g.ldc, "qlib_la_sgemm_ctx");
            }
            case_free(&g);
        }
    static const size_t syrk_shapes[][2] = { { 700, 90 }, { 333, 257 } };
    for (size_t si = 0; si < COUNT(syrk_shapes); si++) {
        size_t n = syrk_shapes[si][0], k = syrk_shapes[si][1], lda = n + 1, ldc = n + 2;
        float *a = tu_alloc_floats(k * lda), *c0 = tu_alloc_floats(n * ldc);
        float *c = tu_alloc_floats(n * ldc), *ref = tu_alloc_floats(n * ldc);
        fill_uniform(&r, a, k * lda);
        fill_value(c0, n * ldc, SENTINEL);
        for (size_t i = 0; i < n; i++) fill_uniform(&r, c0 + i * ldc + i, n - i);
        memcpy(ref, c0, n * ldc * sizeof(float));
        qlib_lb_syrk_upper(n, k, 0.5f, a, lda, 0.25f, ref, ldc);
        for (int t = 0; t < 3; t++) {
            memcpy(c, c0, n * ldc * sizeof(float));
            qlib_lb_syrk_upper_ctx(ctx[t], n, k, 0.5f, a, lda, 0.25f, c, ldc);
            REQUIRE(memcmp(c, ref, n * ldc * sizeof(float)) == 0,
                    "qlib_lb_syrk_upper_ctx n=%zu k=%zu on %d threads", n, k, t + 1);
            memcpy(c, c0, n * ldc * sizeof(float));
            qlib_la_syrk_upper_ctx(ctx[t], n, k, 0.5f, a, lda, 0.25f, c, ldc);
            for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < i; j++)
                    REQUIRE(c[i * ldc + j] == SENTINEL, "qlib_la_syrk_upper_ctx below the diagonal");
                check_gemm_bound("qlib_la_syrk_upper_ctx", 1, 0, 1, n - i, k, 0.5f, a + i, lda,
                                 a + i, lda, 0.25f, c0 + i * ldc + i, c + i * ldc + i, ldc);
            }
        }
        free(a);
        free(c0);
        free(c);
        free(ref);
    }
    for (int t = 0; t < 3; t++) qlib_ctx_destroy(ctx[t]);
}
END_TEST

/* ---- SYRK ---- */

static void syrk_ordered(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                         float *c, size_t ldc)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i; j < n; j++) {
            float acc = beta == 0.0f ? 0.0f : beta == 1.0f ? c[i * ldc + j] : beta * c[i * ldc + j];
            if (alpha != 0.0f)
                for (size_t p = 0; p < k; p++) {
                    float x = alpha * a[p * lda + i];
                    float prod = x * a[p * lda + j];
                    acc = acc + prod;
                }
            c[i * ldc + j] = acc;
        }
}

START_TEST(test_syrk_upper)
{
    /* around the leaf (32), the splits (multiples of 16) and the GEMM's blocks */
    static const size_t ns[] = { 1, 2, 16, 31, 32, 33, 47, 64, 65, 100, 131 };
    static const size_t ks[] = { 1, 3, 96, 255, 256, 300 };
    static const float alphas[] = { 1.0f, 0.25f, -1.5f };
    static const float betas[] = { 0.0f, 1.0f, 0.75f };
    tu_rng r = { 1602 };
    int t = 0;
    for (size_t in = 0; in < COUNT(ns); in++)
        for (size_t ik = 0; ik < COUNT(ks); ik++, t++) {
            size_t n = ns[in], k = ks[ik], lda = n + 3, ldc = n + 5;
            float alpha = alphas[t % 3], beta = betas[(t / 3) % 3];
            float *a = tu_alloc_floats(k * lda), *c0 = tu_alloc_floats(n * ldc);
            float *c = tu_alloc_floats(n * ldc), *ref = tu_alloc_floats(n * ldc);
            fill_uniform(&r, a, k * lda);
            fill_value(c0, n * ldc, SENTINEL);
            for (size_t i = 0; i < n; i++) fill_uniform(&r, c0 + i * ldc + i, n - i);
            for (int backend = 0; backend <= 1; backend++) {
                memcpy(c, c0, n * ldc * sizeof(float));
                if (beta == 0.0f)
                    for (size_t i = 0; i < n; i++) fill_value(c + i * ldc + i, n - i, NAN);
                if (backend)
                    qlib_la_syrk_upper(n, k, alpha, a, lda, beta, c, ldc);
                else
                    qlib_lb_syrk_upper(n, k, alpha, a, lda, beta, c, ldc);
                const char *who = backend ? qlib_la_backend() : "qlib_lb_syrk_upper";
                if (!backend) {
                    memcpy(ref, c0, n * ldc * sizeof(float));
                    syrk_ordered(n, k, alpha, a, lda, beta, ref, ldc);
                    REQUIRE(memcmp(c, ref, n * ldc * sizeof(float)) == 0,
                            "%s n=%zu k=%zu: not the bits of the ordered loop", who, n, k);
                }
                for (size_t i = 0; i < n; i++) {
                    for (size_t j = 0; j < i; j++)
                        REQUIRE(c[i * ldc + j] == SENTINEL, "%s wrote below the diagonal", who);
                    /* the upper triangle is the GEMM A^T A's */
                    check_gemm_bound(who, 1, 0, 1, n - i, k, alpha, a + i, lda, a + i, lda, beta,
                                     c0 + i * ldc + i, c + i * ldc + i, ldc);
                }
                check_padding(c, n, n, ldc, who);
            }
            free(a);
            free(c0);
            free(c);
            free(ref);
        }
}
END_TEST

/* ---- Cholesky ---- */

/* A = G G^T / cols + shift I in double, then rounded: symmetric positive
 * definite, condition number about (1 + shift) / shift at most. The strict
 * upper triangle holds SENTINEL: the factorization must neither read nor
 * write it. */
static float *spd_matrix(tu_rng *r, size_t n, size_t lda, double shift)
{
    size_t cols = n + 8;
    double *g = malloc(n * cols * sizeof(double));
    ck_assert_ptr_nonnull(g);
    for (size_t i = 0; i < n * cols; i++) g[i] = tu_normal(r);
    float *a = tu_alloc_floats(n * lda);
    fill_value(a, n * lda, SENTINEL);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j <= i; j++) {
            double s = 0.0;
            for (size_t p = 0; p < cols; p++) s += g[i * cols + p] * g[j * cols + p];
            a[i * lda + j] = (float)(s / (double)cols + (i == j ? shift : 0.0));
        }
    free(g);
    return a;
}

/* |L L^T - A| <= gamma(n + 1) |L| |L^T| on the lower triangle; positive
 * diagonal; strict upper triangle untouched. */
static void check_factor(const char *who, size_t n, const float *a, const float *l, size_t lda)
{
    for (size_t i = 0; i < n; i++) {
        REQUIRE(l[i * lda + i] > 0.0f, "%s n=%zu: L[%zu][%zu] = %g", who, n, i, i,
                (double)l[i * lda + i]);
        for (size_t j = 0; j <= i; j++) {
            double s = 0.0, mag = 0.0;
            for (size_t p = 0; p <= j; p++) {
                double t = (double)l[i * lda + p] * l[j * lda + p];
                s += t;
                mag += fabs(t);
            }
            double err = fabs(s - a[i * lda + j]);
            REQUIRE(err <= gamma_n((double)n + 1.0) * mag, "%s n=%zu: (L L^T - A)[%zu][%zu] = %.3g,"
                    " bound %.3g", who, n, i, j, err, gamma_n((double)n + 1.0) * mag);
        }
        for (size_t j = i + 1; j < lda; j++)
            REQUIRE(l[i * lda + j] == SENTINEL, "%s n=%zu touched (%zu,%zu)", who, n, i, j);
    }
}

typedef int (*factor_fn)(size_t, float *, size_t);

static const struct { const char *name; factor_fn chol, inv; } backends[2] = {
    { "builtin", qlib_lb_cholesky_lower, qlib_lb_tri_inverse_lower },
    { "backend", qlib_la_cholesky_lower, qlib_la_tri_inverse_lower },
};

START_TEST(test_cholesky_factor)
{
    static const size_t ns[] = { 1, 2, 3, 16, 31, 32, 33, 48, 63, 64, 65, 100, 129, 200, 257 };
    tu_rng r = { 1603 };
    for (size_t in = 0; in < COUNT(ns); in++) {
        size_t n = ns[in], lda = n + 3;
        float *a = spd_matrix(&r, n, lda, in % 2 ? 1e-3 : 0.1);
        float *l = tu_alloc_floats(n * lda);
        for (int b = 0; b < 2; b++) {
            memcpy(l, a, n * lda * sizeof(float));
            int info = backends[b].chol(n, l, lda);
            REQUIRE(info == 0, "%s n=%zu: info %d", backends[b].name, n, info);
            check_factor(backends[b].name, n, a, l, lda);
        }
        free(a);
        free(l);
    }
    for (int b = 0; b < 2; b++) REQUIRE(backends[b].chol(0, NULL, 1) == 0, "n = 0");
}
END_TEST

/* A = L0 L0^T with A[q][q] lowered by L0[q][q]^2 + 1: the leading minors
 * of order <= q are positive definite, that of order q + 1 is not (its last
 * pivot is -1): info = q + 1, as LAPACK's xPOTRF reports it. A NaN at
 * A[q][q] gives q + 1 too in the built-in one, as in the reference LAPACK;
 * OpenBLAS's potrf lets NaN through (GPTQ checks the factor for NaN). */
START_TEST(test_cholesky_not_positive)
{
    static const size_t ns[] = { 1, 5, 32, 33, 70, 130 };
    tu_rng r = { 1604 };
    for (size_t in = 0; in < COUNT(ns); in++) {
        size_t n = ns[in], lda = n + 1;
        double *l0 = calloc(n * n, sizeof(double));
        ck_assert_ptr_nonnull(l0);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j <= i; j++)
                l0[i * n + j] = i == j ? 1.0 + tu_uniform(&r) : 0.3 * tu_normal(&r);
        size_t qs[] = { 0, n / 2, n > 32 ? 31 : 0, n > 33 ? 32 : 0, n > 34 ? 33 : 0, n - 1 };
        float *a = tu_alloc_floats(n * lda), *w = tu_alloc_floats(n * lda);
        for (size_t iq = 0; iq < COUNT(qs); iq++) {
            size_t q = qs[iq];
            fill_value(a, n * lda, SENTINEL);
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j <= i; j++) {
                    double s = 0.0;
                    for (size_t p = 0; p <= j; p++) s += l0[i * n + p] * l0[j * n + p];
                    if (i == q && j == q) s -= l0[q * n + q] * l0[q * n + q] + 1.0;
                    a[i * lda + j] = (float)s;
                }
            for (int b = 0; b < 2; b++) {
                memcpy(w, a, n * lda * sizeof(float));
                int info = backends[b].chol(n, w, lda);
                REQUIRE(info == (int)q + 1, "%s n=%zu q=%zu: info %d", backends[b].name, n, q, info);
            }
            memcpy(w, a, n * lda * sizeof(float));
            w[q * lda + q] = NAN;
            int info = qlib_lb_cholesky_lower(n, w, lda);
            REQUIRE(info == (int)q + 1, "builtin n=%zu NaN at %zu: info %d", n, q, info);
        }
        for (int b = 0; b < 2; b++) {
            fill_value(w, n * lda, 0.0f);
            REQUIRE(backends[b].chol(n, w, lda) == 1, "%s: zero matrix", backends[b].name);
        }
        free(l0);
        free(a);
        free(w);
    }
}
END_TEST

/* ---- triangular inverse ---- */

/* X (lower) against the inverse of L computed in double: to first order
 * X - X* = -X* dL X* with |dL| <= gamma(n) |L| for the solves that make X,
 * so |X - X*| <= gamma(2n) |X*| |L| |X*| leaves room for the second-order
 * terms. */
static void check_inverse(const char *who, size_t n, const float *l, const float *x, size_t lda)
{
    double *xs = calloc(n * n, sizeof(double)), *t = calloc(n * n, sizeof(double));
    ck_assert_ptr_nonnull(xs);
    ck_assert_ptr_nonnull(t);
    for (size_t j = 0; j < n; j++)          /* column j of X*: L x = e_j */
        for (size_t i = j; i < n; i++) {
            double s = i == j ? 1.0 : 0.0;
            for (size_t p = j; p < i; p++) s -= (double)l[i * lda + p] * xs[p * n + j];
            xs[i * n + j] = s / l[i * lda + i];
        }
    for (size_t i = 0; i < n; i++)          /* t = |L| |X*| */
        for (size_t j = 0; j <= i; j++) {
            double s = 0.0;
            for (size_t p = j; p <= i; p++) s += fabs((double)l[i * lda + p]) * fabs(xs[p * n + j]);
            t[i * n + j] = s;
        }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j <= i; j++) {
            double bound = 0.0;
            for (size_t p = j; p <= i; p++) bound += fabs(xs[i * n + p]) * t[p * n + j];
            bound *= gamma_n(2.0 * (double)n);
            double err = fabs((double)x[i * lda + j] - xs[i * n + j]);
            REQUIRE(err <= bound, "%s n=%zu: X[%zu][%zu] = %.9g, double %.9g, bound %.3g", who, n, i,
                    j, (double)x[i * lda + j], xs[i * n + j], bound);
        }
        for (size_t j = i + 1; j < lda; j++)
            REQUIRE(x[i * lda + j] == SENTINEL, "%s n=%zu touched (%zu,%zu)", who, n, i, j);
    }
    free(xs);
    free(t);
}

START_TEST(test_tri_inverse)
{
    static const size_t ns[] = { 1, 2, 17, 31, 32, 33, 47, 64, 65, 100, 129, 200 };
    tu_rng r = { 1605 };
    for (size_t in = 0; in < COUNT(ns); in++) {
        size_t n = ns[in], lda = n + 2;
        /* a Cholesky factor, as GPTQ inverts, and a random lower triangle */
        float *l = spd_matrix(&r, n, lda, 0.05);
        ck_assert_int_eq(qlib_lb_cholesky_lower(n, l, lda), 0);
        float *rnd = tu_alloc_floats(n * lda), *x = tu_alloc_floats(n * lda);
        fill_value(rnd, n * lda, SENTINEL);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j <= i; j++)
                rnd[i * lda + j] = i == j ? (float)((tu_uniform(&r) < 0.5 ? -1 : 1) *
                                                    (1.0 + tu_uniform(&r)))
                                          : (float)(0.4 * tu_normal(&r));
        const float *mats[2] = { l, rnd };
        for (int mi = 0; mi < 2; mi++)
            for (int b = 0; b < 2; b++) {
                memcpy(x, mats[mi], n * lda * sizeof(float));
                int info = backends[b].inv(n, x, lda);
                REQUIRE(info == 0, "%s n=%zu: info %d", backends[b].name, n, info);
                check_inverse(backends[b].name, n, mats[mi], x, lda);
            }
        free(l);
        free(rnd);
        free(x);
    }
    for (int b = 0; b < 2; b++) REQUIRE(backends[b].inv(0, NULL, 1) == 0, "n = 0");
}
END_TEST

/* A zero on the diagonal: info is its 1-based index (the first one), and
 * the matrix is left as it was. */
START_TEST(test_tri_inverse_zero_pivot)
{
    static const size_t ns[] = { 1, 6, 33, 70 };
    tu_rng r = { 1606 };
    for (size_t in = 0; in < COUNT(ns); in++) {
        size_t n = ns[in], lda = n;
        float *l = tu_alloc_floats(n * lda), *x = tu_alloc_floats(n * lda);
        fill_uniform(&r, l, n * lda);
        for (size_t i = 0; i < n; i++) l[i * lda + i] = 1.0f + (float)tu_uniform(&r);
        size_t qs[] = { 0, n / 3, n - 1 };
        for (size_t iq = 0; iq < COUNT(qs); iq++) {
            float keep = l[qs[iq] * lda + qs[iq]];
            l[qs[iq] * lda + qs[iq]] = 0.0f;
            if (n > 2 && iq == 0) l[(n - 1) * lda + n - 1] = -0.0f;   /* a later zero too */
            for (int b = 0; b < 2; b++) {
                memcpy(x, l, n * lda * sizeof(float));
                int info = backends[b].inv(n, x, lda);
                REQUIRE(info == (int)qs[iq] + 1, "%s n=%zu zero at %zu: info %d", backends[b].name,
                        n, qs[iq], info);
                REQUIRE(memcmp(x, l, n * lda * sizeof(float)) == 0, "%s changed the matrix",
                        backends[b].name);
            }
            l[qs[iq] * lda + qs[iq]] = keep;
            l[(n - 1) * lda + n - 1] = 1.5f;
        }
        free(l);
        free(x);
    }
}
END_TEST

/* ---- y = x W^T for float tensors ---- */

START_TEST(test_matmul_float)
{
    static const int bits[] = { 32, 16 };
    static const size_t ms[] = { 1, 2, 7, 33 };
    size_t n = 301, k = 290, ldx = k + 3, ldy = n + 5;
    tu_rng r = { 1607 };
    float *w = tu_alloc_floats(n * k), *wd = tu_alloc_floats(n * k);
    float *x = tu_alloc_floats(33 * ldx), *y1 = tu_alloc_floats(33 * ldy), *y2 = tu_alloc_floats(33 * ldy);
    fill_uniform(&r, w, n * k);
    fill_uniform(&r, x, 33 * ldx);
    qlib_ctx *c1 = tu_ctx(1, NULL), *c2 = tu_ctx(2, NULL);
    for (size_t bi = 0; bi < COUNT(bits); bi++) {
        qlib_tensor *t = tu_quantize(c1, w, n, k, k, QLIB_METHOD_NONE, bits[bi], 0, 0, NULL);
        ck_assert_int_eq(qlib_dequantize(c1, t, wd, k), QLIB_OK);
        for (size_t im = 0; im < COUNT(ms); im++) {
            size_t m = ms[im];
            fill_value(y1, 33 * ldy, SENTINEL);
            fill_value(y2, 33 * ldy, SENTINEL);
            ck_assert_int_eq(qlib_lb_matmul_float(c1, t, x, m, ldx, y1, ldy), QLIB_OK);
            ck_assert_int_eq(qlib_lb_matmul_float(c2, t, x, m, ldx, y2, ldy), QLIB_OK);
            REQUIRE(memcmp(y1, y2, 33 * ldy * sizeof(float)) == 0,
                    "bits %d m=%zu: 1 and 2 threads differ", bits[bi], m);
            check_gemm_bound("qlib_lb_matmul_float", 0, 1, m, n, k, 1.0f, x, ldx, wd, k, 0.0f, y1,
                             y1, ldy);
            check_padding(y1, m, n, ldy, "qlib_lb_matmul_float");
            fill_value(y1, 33 * ldy, SENTINEL);
            ck_assert_int_eq(qlib_la_matmul_float(c2, t, x, m, ldx, y1, ldy), QLIB_OK);
            check_gemm_bound(qlib_la_backend(), 0, 1, m, n, k, 1.0f, x, ldx, wd, k, 0.0f, y1, y1,
                             ldy);
            check_padding(y1, m, n, ldy, qlib_la_backend());
        }
        qlib_tensor_destroy(t);
    }
    qlib_ctx_destroy(c1);
    qlib_ctx_destroy(c2);
    free(w);
    free(wd);
    free(x);
    free(y1);
    free(y2);
}
END_TEST

/* The backend's name and what it says of itself. */
START_TEST(test_backend)
{
    const char *b = qlib_la_backend();
    ck_assert(strcmp(b, "openblas") == 0 || strcmp(b, "builtin") == 0);
    ck_assert_int_ge(qlib_la_threads(), 1);
    ck_assert_uint_ge(qlib_la_max_dim(), (size_t)INT32_MAX);
    if (strcmp(b, "builtin") == 0) ck_assert_int_eq(qlib_la_threads(), 1);
    const qlib_lb_gemm_kernel *kern[QLIB_LB_GEMM_MAX];
    size_t nk = qlib_lb_gemm_kernels(kern);
    ck_assert_uint_ge(nk, 1);
    ck_assert_ptr_eq(kern[0], qlib_lb_gemm_best());
    ck_assert_ptr_eq(kern[nk - 1], &qlib_lb_gemm_generic);
    for (size_t i = 0; i < nk; i++) {
        ck_assert(strncmp(kern[i]->name, "f32_gemm_", 9) == 0);
        ck_assert_int_gt(kern[i]->mr, 0);
        ck_assert_int_gt(kern[i]->nr, 0);
    }
}
END_TEST

Suite *suite_linalg(void)
{
    Suite *s = suite_create("linalg");
    TCase *tc = tu_tcase("linalg");
    tcase_add_test(tc, test_backend);
    tcase_add_test(tc, test_gemm_shapes);
    tcase_add_test(tc, test_gemm_blas_rules);
    tcase_add_test(tc, test_syrk_upper);
    tcase_add_test(tc, test_gemm_syrk_threads);
    tcase_add_test(tc, test_cholesky_factor);
    tcase_add_test(tc, test_cholesky_not_positive);
    tcase_add_test(tc, test_tri_inverse);
    tcase_add_test(tc, test_tri_inverse_zero_pivot);
    tcase_add_test(tc, test_matmul_float);
    suite_add_tcase(s, tc);
    return s;
}
