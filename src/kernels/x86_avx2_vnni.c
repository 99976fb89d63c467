/* A variant of x86_avx2.c, which it includes (the Makefile rebuilds it when
 * that file changes): the AVX2 kernels with AVX-VNNI (vpdpbusd,
 * VEX-encoded), compiled again, in this unit only, with -mavxvnni as well. Used only when
 * CPUID reports AVX-VNNI (leaf 7, subleaf 1, EAX bit 4) besides AVX2, FMA and
 * F16C. vpdpbusd sums four products of unsigned codes and int8 activations
 * straight into int32: every AUTO GEMM, 8-bit included, takes the u8 tile,
 * and the sums are the same exact integers as the AVX2 kernels', so the
 * results are the same bits. */
#define QK_AVX_VNNI 1
#define AVX2_TABLE qlib_kernels_avx2_vnni
#define AVX2_NAME "avx2-vnni"
#define AVX2_SUFFIX avxvnni
#define AVX2_NEEDS QK_CPU_AVX_VNNI
#define AVX2_SAME_BITS_AS (&qlib_kernels_avx2)
#include "x86_avx2.c"
