/* The AVX2 kernels with AVX-VNNI (vpdpbusd, VEX-encoded): x86_avx2.c
 * compiled again, in this unit only, with -mavxvnni as well. Used only when
 * CPUID reports AVX-VNNI (leaf 7, subleaf 1, EAX bit 4) besides AVX2, FMA and
 * F16C. vpdpbusd sums four products of unsigned codes and int8 activations
 * straight into int32: every AUTO GEMM, 8-bit included, takes the u8 tile,
 * and the sums are the same exact integers as the AVX2 kernels', so the
 * results are the same bits. */
#define QK_AVX_VNNI 1
#define AVX2_TABLE qlib_kernels_avx2_vnni
#define AVX2_NAME "avx2-vnni"
#include "x86_avx2.c"
