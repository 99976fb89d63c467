/* make bench sections "linalg" and "builds" (linalg.c). */
#ifndef QLIB_BENCH_LINALG_H
#define QLIB_BENCH_LINALG_H

/* The built-in SGEMM, SYRK, Cholesky and inverse against OpenBLAS's. */
void bench_linalg_table(void);
/* GPTQ and AWQ quantize time of the OpenBLAS and BLAS=none builds. */
void bench_builds_table(void);

#endif
