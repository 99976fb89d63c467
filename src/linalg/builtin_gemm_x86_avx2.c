/* The built-in SGEMM core with 256-bit vectors: builtin_gemm.c compiled
 * again, in this unit only, with -mavx2 (and without -mfma: products and
 * sums stay separately rounded, so the bits are those of the baseline
 * compile). A 6 x 16 tile; used when CPUID reports AVX2 and the OS saves
 * the YMM state. */
#define LB_GEMM_TABLE qlib_lb_gemm_avx2
#define LB_GEMM_ISA "avx2"
#include "builtin_gemm.c"
