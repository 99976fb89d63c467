/* The built-in linear algebra: what linalg.h asks for, in C, without BLAS or
 * LAPACK. `make BLAS=none` makes it the library's backend (blas_none.c);
 * the OpenBLAS build links it into its tests and bench only, so that both can
 * be compared in one program. Matrices are row-major; nothing here allocates
 * or keeps state: the GEMM's packed blocks sit on the caller's stack. */
#ifndef QLIB_LINALG_BUILTIN_H
#define QLIB_LINALG_BUILTIN_H

#include <stddef.h>

#include "../core/core.h"

/* Bytes of stack one call may use for packed blocks (the deepest call,
 * a GEMM under a Cholesky or a triangular inverse, adds a few KiB). */
#define LB_STACK_BYTES (160 * 1024)

/* C (+)= alpha * op(A) * op(B) for an m x n block of C: accumulate = 0
 * overwrites C (not read), 1 adds to it. builtin_gemm.c states the order of
 * the operations, which is the same in every variant. */
typedef void qlib_lb_gemm_fn(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                             const float *a, size_t lda, const float *b, size_t ldb, float *c,
                             size_t ldc, int accumulate);

/* One compile of builtin_gemm.c: its name (f32_gemm_<MR>x<NR>__<isa>), its
 * entry point and tile. */
typedef struct qlib_lb_gemm_kernel {
    const char *name;
    qlib_lb_gemm_fn *gemm;
    int mr, nr;
} qlib_lb_gemm_kernel;

QLIB_HIDDEN extern const qlib_lb_gemm_kernel qlib_lb_gemm_generic;   /* SSE2 / NEON */
#if defined(__x86_64__)
QLIB_HIDDEN extern const qlib_lb_gemm_kernel qlib_lb_gemm_avx2;
#endif
#define QLIB_LB_GEMM_MAX 2

/* The variants this CPU runs, fastest first, into out (QLIB_LB_GEMM_MAX
 * entries); returns how many (at least the generic one). All give the same
 * bits. */
QLIB_HIDDEN size_t qlib_lb_gemm_kernels(const qlib_lb_gemm_kernel **out);
/* The one the entry points below use: the first of qlib_lb_gemm_kernels. */
QLIB_HIDDEN const qlib_lb_gemm_kernel *qlib_lb_gemm_best(void);

/* linalg.h's functions, under their own names (same contracts). */
QLIB_HIDDEN void qlib_lb_sgemm(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                               const float *a, size_t lda, const float *b, size_t ldb, float beta,
                               float *c, size_t ldc);
QLIB_HIDDEN void qlib_lb_syrk_upper(size_t n, size_t k, float alpha, const float *a, size_t lda,
                                    float beta, float *c, size_t ldc);
QLIB_HIDDEN void qlib_lb_sgemm_ctx(qlib_ctx *ctx, int ta, int tb, size_t m, size_t n, size_t k,
                                   float alpha, const float *a, size_t lda, const float *b,
                                   size_t ldb, float beta, float *c, size_t ldc);
QLIB_HIDDEN void qlib_lb_syrk_upper_ctx(qlib_ctx *ctx, size_t n, size_t k, float alpha,
                                        const float *a, size_t lda, float beta, float *c,
                                        size_t ldc);
QLIB_HIDDEN int qlib_lb_cholesky_lower(size_t n, float *a, size_t lda);
QLIB_HIDDEN int qlib_lb_tri_inverse_lower(size_t n, float *a, size_t lda);
QLIB_HIDDEN qlib_status qlib_lb_matmul_float(qlib_ctx *ctx, const qlib_tensor *t, const float *x,
                                             size_t m, size_t ldx, float *y, size_t ldy);

#endif
