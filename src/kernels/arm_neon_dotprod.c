/* A variant of arm_neon.c, which it includes (the Makefile rebuilds it when
 * that file changes): the NEON kernels with the dot-product extension (SDOT),
 * compiled again, in this unit only, with -march=armv8.2-a+dotprod. Used
 * only when getauxval(AT_HWCAP) reports ASIMDDP. */
#define QK_NEON_DOTPROD 1
#define NEON_TABLE qlib_kernels_neon_dotprod
#define NEON_NAME "neon-dotprod"
#define NEON_SUFFIX neondot
#define NEON_NEEDS QK_CPU_DOTPROD
#define NEON_SAME_BITS_AS (&qlib_kernels_neon)
#include "arm_neon.c"
