/* OpenBLAS wrappers. OpenBLAS's global settings (threads) are never changed. */
#include <cblas.h>
#include <limits.h>

#include "linalg.h"

/* LAPACK as gfortran compiles it (OpenBLAS exports these): every argument by
 * reference, plus one hidden length argument per CHARACTER argument. */
extern void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info,
                    size_t uplo_len);
extern void strtri_(const char *uplo, const char *diag, const int *n, float *a, const int *lda,
                    int *info, size_t uplo_len, size_t diag_len);

size_t qlib_la_max_dim(void) { return (size_t)INT_MAX; }
int qlib_la_threads(void) { return openblas_get_num_threads(); }
const char *qlib_la_backend(void) { return "openblas"; }

void qlib_la_sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                   size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

void qlib_la_syrk_upper(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                        float *c, size_t ldc)
{
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)k, alpha, a, (int)lda, beta,
                c, (int)ldc);
}

/* A row-major lower triangle is LAPACK's column-major upper one. */
int qlib_la_cholesky_lower(size_t n, float *a, size_t lda)
{
    int in = (int)n, ilda = (int)lda, info = 0;
    spotrf_("U", &in, a, &ilda, &info, 1);
    return info;
}

int qlib_la_tri_inverse_lower(size_t n, float *a, size_t lda)
{
    int in = (int)n, ilda = (int)lda, info = 0;
    strtri_("U", "N", &in, a, &ilda, &info, 1, 1);
    return info;
}

/* y = A x, A m x n row-major (row stride lda). */
void qlib_la_sgemv(size_t m, size_t n, const float *a, size_t lda, const float *x, float *y)
{
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)n, 1.0f, a, (int)lda, x, 1, 0.0f, y, 1);
}
