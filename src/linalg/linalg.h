/* The linear algebra the library needs, behind one header: OpenBLAS (CBLAS +
 * LAPACK, blas_openblas.c) or, with make BLAS=none, the built-in one
 * (blas_none.c, builtin.h). Matrices are row-major. Sizes above
 * qlib_la_max_dim() are rejected by the callers. */
#ifndef QLIB_LINALG_H
#define QLIB_LINALG_H

#include <stddef.h>

#include "qlib.h"

/* C = alpha * op(A) * op(B) + beta * C; ta/tb: 0 = as is, 1 = transposed.
 * beta = 0: C is not read. Safe to call from several threads at once. */
void qlib_la_sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha, const float *a,
                   size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc);
/* Upper triangle of C (n x n) = alpha * A^T A + beta * C, A is k x n; the
 * strict lower triangle is neither read nor written. */
void qlib_la_syrk_upper(size_t n, size_t k, float alpha, const float *a, size_t lda, float beta,
                        float *c, size_t ldc);
/* The same two, on ctx's threads when the backend runs on its callers'
 * threads (the built-in one: the bits do not depend on the thread count);
 * OpenBLAS uses its own. Call them from the thread that owns ctx, not from
 * one of its tasks. */
void qlib_la_sgemm_ctx(qlib_ctx *ctx, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                       const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                       size_t ldc);
void qlib_la_syrk_upper_ctx(qlib_ctx *ctx, size_t n, size_t k, float alpha, const float *a,
                            size_t lda, float beta, float *c, size_t ldc);
/* In place, row-major, only the lower triangle of a (n x n) read and written:
 * a = L L^T, L lower with a positive diagonal. Returns 0, or the LAPACK info
 * (> 0: the leading minor of that order is not positive definite). */
int qlib_la_cholesky_lower(size_t n, float *a, size_t lda);
/* In place, row-major: the lower triangle of a becomes its inverse (lower,
 * non-unit diagonal). Returns 0, or the LAPACK info (> 0: a zero pivot). */
int qlib_la_tri_inverse_lower(size_t n, float *a, size_t lda);
/* y = x * W^T for a float (NONE) tensor. */
qlib_status qlib_la_matmul_float(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                                 size_t ldx, float *y, size_t ldy);
/* Largest size the backend takes (OpenBLAS: INT_MAX). */
size_t qlib_la_max_dim(void);
/* Threads a call runs on (OpenBLAS's setting, read only: never changed; 1
 * for the built-in backend); callers run GEMMs inside their own tasks only
 * when this is 1. */
int qlib_la_threads(void);
/* The backend's name, for tests whose expected bits depend on its rounding. */
const char *qlib_la_backend(void);
/* The kernels the backend picked for this CPU (OpenBLAS's core name, e.g.
 * "Haswell"), or "" when its bits do not depend on the CPU (the built-in one). */
const char *qlib_la_backend_core(void);

#endif
