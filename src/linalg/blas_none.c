/* make BLAS=none: linalg.h served by the built-in linear algebra
 * (builtin.h), so that the library links no BLAS or LAPACK. */
#include <stdint.h>

#include "builtin.h"
#include "linalg.h"

/* No limit of its own below the size of an array of floats. */
size_t qlib_la_max_dim(void) { return (size_t)PTRDIFF_MAX / sizeof(float); }
/* Every call runs on the calling thread. */
int qlib_la_threads(void) { return 1; }
const char *qlib_la_backend(void) { return "builtin"; }
const char *qlib_la_backend_core(void) { return ""; }

void qlib_la_sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                   size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc)
{
    qlib_lb_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qlib_la_syrk_upper(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                        float *c, size_t ldc)
{
    qlib_lb_syrk_upper(n, k, alpha, a, lda, beta, c, ldc);
}

void qlib_la_sgemm_ctx(qlib_ctx *ctx, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                       const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                       size_t ldc)
{
    qlib_lb_sgemm_ctx(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qlib_la_syrk_upper_ctx(qlib_ctx *ctx, size_t n, size_t k, float alpha, const float *a,
                            size_t lda, float beta, float *c, size_t ldc)
{
    qlib_lb_syrk_upper_ctx(ctx, n, k, alpha, a, lda, beta, c, ldc);
}

int qlib_la_cholesky_lower(size_t n, float *a, size_t lda)
{
    return qlib_lb_cholesky_lower(n, a, lda);
}

int qlib_la_tri_inverse_lower(size_t n, float *a, size_t lda)
{
    return qlib_lb_tri_inverse_lower(n, a, lda);
}

qlib_status qlib_la_matmul_float(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                                 size_t ldx, float *y, size_t ldy)
{
    return qlib_lb_matmul_float(ctx, t, x, m, ldx, y, ldy);
}
