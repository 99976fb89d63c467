/* The NEON kernels with the dot-product extension (SDOT): arm_neon.c
 * compiled again, in this unit only, with -march=armv8.2-a+dotprod. Used
 * only when getauxval(AT_HWCAP) reports ASIMDDP. */
#define QK_NEON_DOTPROD 1
#define NEON_TABLE qlib_kernels_neon_dotprod
#define NEON_NAME "neon-dotprod"
#include "arm_neon.c"
