/* The OpenBLAS (CBLAS + LAPACK) calls the library needs, behind one header.
 * Matrices are row-major. Sizes above INT_MAX are rejected by the callers. */
#ifndef QLIB_LINALG_H
#define QLIB_LINALG_H

#include <stddef.h>

/* C = alpha * op(A) * op(B) + beta * C; ta/tb: 0 = as is, 1 = transposed. */
void qlib_la_sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                   size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);
/* Upper triangle of C (n x n) = alpha * A^T A + beta * C, A is k x n. */
void qlib_la_syrk_upper(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                        float *c, size_t ldc);
/* In place, row-major, only the lower triangle of a (n x n) read and written:
 * a = L L^T, L lower with a positive diagonal. Returns 0, or the LAPACK info
 * (> 0: the leading minor of that order is not positive definite). */
int qlib_la_cholesky_lower(size_t n, float *a, size_t lda);
/* In place, row-major: the lower triangle of a becomes its inverse (lower,
 * non-unit diagonal). Returns 0, or the LAPACK info (> 0: a zero pivot). */
int qlib_la_tri_inverse_lower(size_t n, float *a, size_t lda);
/* y = A x, A m x n row-major (row stride lda). */
void qlib_la_sgemv(size_t m, size_t n, const float *a, size_t lda, const float *x, float *y);
/* Largest size the BLAS interface takes. */
size_t qlib_la_max_dim(void);
/* Threads OpenBLAS runs a call on (read only: its settings are never
 * changed); callers run GEMMs on their own threads only when this is 1. */
int qlib_la_threads(void);
/* The backend's name, for tests whose expected bits depend on its rounding. */
const char *qlib_la_backend(void);

#endif
