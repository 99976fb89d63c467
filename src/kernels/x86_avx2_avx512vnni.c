/* A variant of x86_avx2.c, which it includes (the Makefile rebuilds it when
 * that file changes): the AVX2 kernels with the 256-bit form of AVX512-VNNI: x86_avx2.c
 * compiled again, in this unit only, with -mavx512vnni -mavx512vl as well,
 * for CPUs that have vpdpbusd only in its EVEX encoding (Intel from Cascade
 * Lake to Ice Lake, AMD Zen 4). Used only when CPUID reports AVX512F,
 * AVX512VL and AVX512-VNNI and the OS saves the AVX-512 state (XCR0 bits 5
 * to 7), which EVEX instructions need even on 256-bit registers. The
 * arithmetic is that of the avx2-vnni table: the same bits as avx2. */
#define QK_AVX_VNNI 2
#define AVX2_TABLE qlib_kernels_avx2_avx512vnni
#define AVX2_NAME "avx2-avx512vnni"
#define AVX2_SUFFIX avx512vnni
#define AVX2_NEEDS QK_CPU_AVX512_VNNI
#define AVX2_SAME_BITS_AS (&qlib_kernels_avx2)
#include "x86_avx2.c"
