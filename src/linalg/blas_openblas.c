/* OpenBLAS wrappers. OpenBLAS's global settings (threads) are never changed. */
#include <cblas.h>
#include <limits.h>

#include "../core/core.h"
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
const char *qlib_la_backend_core(void) { return openblas_get_corename(); }

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

/* OpenBLAS runs these on its own threads. */
void qlib_la_sgemm_ctx(qlib_ctx *ctx, int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                       const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                       size_t ldc)
{
    (void)ctx;
    qlib_la_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void qlib_la_syrk_upper_ctx(qlib_ctx *ctx, size_t n, size_t k, float alpha, const float *a,
                            size_t lda, float beta, float *c, size_t ldc)
{
    (void)ctx;
    qlib_la_syrk_upper(n, k, alpha, a, lda, beta, c, ldc);
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

#define F16_PANEL 64   /* rows of an fp16 tensor converted per sgemm */

qlib_status qlib_la_matmul_float(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m,
                                 size_t ldx, float *y, size_t ldy)
{
    static const char fn[] = "qlib_matmul";
    size_t n = t->d.n, k = t->d.k, lim = qlib_la_max_dim();
    if (m > lim || n > lim || k > lim || ldx > lim || ldy > lim)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: float tensor sizes above %zu", fn, lim);
    if (t->f32 && m == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)k, 1.0f, t->f32, (int)k, x, 1, 0.0f,
                    y, 1);
        return QLIB_OK;
    }
    if (t->f32) {
        qlib_la_sgemm(0, 1, m, n, k, 1.0f, x, ldx, t->f32, k, 0.0f, y, ldy);
        return QLIB_OK;
    }
    size_t rows = n < F16_PANEL ? n : F16_PANEL;
    float *panel = qlib_ctx_scratch(ctx, rows * k * sizeof(float), fn);
    if (!panel) return QLIB_ERR_NOMEM;
    for (size_t r0 = 0; r0 < n; r0 += rows) {
        size_t nr = n - r0 < rows ? n - r0 : rows;
        ctx->kern->f16_to_f32(t->f16 + r0 * k, nr * k, panel);
        qlib_la_sgemm(0, 1, m, nr, k, 1.0f, x, ldx, panel, k, 0.0f, y + r0, ldy);
    }
    return QLIB_OK;
}
