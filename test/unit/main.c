/* The one runner of every unit suite. A suite is a function Suite *suite_X(void)
 * defined in test_X.c; CK_RUN_SUITE=<name> runs one. */
#include <stdlib.h>

#include "testutil.h"

#define SUITES(X) X(core) X(config) X(rtn) X(matmul) X(serialize) X(calib) X(threads) \
    X(alloc) X(kernels) X(gptq) X(awq) X(llm_int8) X(stress) X(golden) X(progress) \
    X(layouts) X(quality)

#define DECLARE(name) Suite *suite_##name(void) __attribute__((weak));
SUITES(DECLARE)
#undef DECLARE

int main(void)
{
    SRunner *sr = NULL;
#define ADD(name)                                                            \
    if (suite_##name) {                                                      \
        if (!sr) sr = srunner_create(suite_##name());                       \
        else srunner_add_suite(sr, suite_##name());                         \
    }
    SUITES(ADD)
#undef ADD
    if (!sr) return EXIT_FAILURE;
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
