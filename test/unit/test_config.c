/* suite_config: every parameter of every method — defaults, range checks,
 * parameters of other methods, unknown parameters, int/float mismatch. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

Suite *suite_config(void);

static const qlib_method all_methods[] = { QLIB_METHOD_NONE, QLIB_METHOD_RTN, QLIB_METHOD_GPTQ,
                                           QLIB_METHOD_AWQ, QLIB_METHOD_LLM_INT8 };
#define N_METHODS (sizeof all_methods / sizeof all_methods[0])

/* The parameters of qlib.h, their kind and the methods that take them. */
typedef struct param_info {
    qlib_param p;
    int is_float;
    unsigned methods;        /* bit m set: method m takes it */
} param_info;

#define M(m) (1u << (m))
static const param_info params[] = {
    { QLIB_PARAM_BITS, 0, 0x1f },
    { QLIB_PARAM_GROUP_SIZE, 0, M(QLIB_METHOD_RTN) | M(QLIB_METHOD_GPTQ) | M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_SYMMETRIC, 0, M(QLIB_METHOD_RTN) | M(QLIB_METHOD_GPTQ) | M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_CLIP_GRID, 0, M(QLIB_METHOD_RTN) | M(QLIB_METHOD_GPTQ) | M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_GPTQ_DAMP, 1, M(QLIB_METHOD_GPTQ) },
    { QLIB_PARAM_GPTQ_BLOCK_SIZE, 0, M(QLIB_METHOD_GPTQ) },
    { QLIB_PARAM_GPTQ_ACT_ORDER, 0, M(QLIB_METHOD_GPTQ) },
    { QLIB_PARAM_GPTQ_STATIC_GROUPS, 0, M(QLIB_METHOD_GPTQ) },
    { QLIB_PARAM_AWQ_GRID, 0, M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_AWQ_CLIP, 0, M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_AWQ_MAX_SHRINK, 1, M(QLIB_METHOD_RTN) | M(QLIB_METHOD_GPTQ) | M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_AWQ_ROUNDING, 0, M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_AWQ_SCALES, 0, M(QLIB_METHOD_AWQ) },
    { QLIB_PARAM_OUTLIER_THRESHOLD, 1, M(QLIB_METHOD_LLM_INT8) },
};
#undef M
#define N_PARAMS (sizeof params / sizeof params[0])

static qlib_config *make(qlib_method m)
{
    qlib_config *c = NULL;
    ck_assert_int_eq(qlib_config_create(m, &c), QLIB_OK);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(qlib_config_method(c), m);
    return c;
}

static int get_i(const qlib_config *c, qlib_param p)
{
    int v = INT_MIN;
    qlib_status s = qlib_config_get_int(c, p, &v);
    ck_assert_msg(s == QLIB_OK, "get_int(%d): %s", (int)p, qlib_last_error());
    return v;
}

static float get_f(const qlib_config *c, qlib_param p)
{
    float v = NAN;
    qlib_status s = qlib_config_get_float(c, p, &v);
    ck_assert_msg(s == QLIB_OK, "get_float(%d): %s", (int)p, qlib_last_error());
    return v;
}

/* Every value in good is accepted and read back; every value in bad is
 * ERR_ARG and leaves the previous value. */
static void check_int_range(qlib_method m, qlib_param p, const int *good, size_t n_good,
                            const int *bad, size_t n_bad)
{
    qlib_config *c = make(m);
    for (size_t i = 0; i < n_good; i++) {
        qlib_status s = qlib_config_set_int(c, p, good[i]);
        ck_assert_msg(s == QLIB_OK, "method %d param %d value %d: %s", (int)m, (int)p, good[i],
                      qlib_last_error());
        ck_assert_int_eq(get_i(c, p), good[i]);
        for (size_t j = 0; j < n_bad; j++) {
            ck_assert_msg(qlib_config_set_int(c, p, bad[j]) == QLIB_ERR_ARG,
                          "method %d param %d accepts %d", (int)m, (int)p, bad[j]);
            ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_set_int"));
            ck_assert_int_eq(get_i(c, p), good[i]);
        }
    }
    qlib_config_destroy(c);
}

static void check_float_range(qlib_method m, qlib_param p, const float *good, size_t n_good,
                              const float *bad, size_t n_bad)
{
    qlib_config *c = make(m);
    for (size_t i = 0; i < n_good; i++) {
        qlib_status s = qlib_config_set_float(c, p, good[i]);
        ck_assert_msg(s == QLIB_OK, "method %d param %d value %g: %s", (int)m, (int)p,
                      (double)good[i], qlib_last_error());
        ck_assert(get_f(c, p) == good[i]);
        for (size_t j = 0; j < n_bad; j++) {
            ck_assert_msg(qlib_config_set_float(c, p, bad[j]) == QLIB_ERR_ARG,
                          "method %d param %d accepts %g", (int)m, (int)p, (double)bad[j]);
            ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_set_float"));
            ck_assert(get_f(c, p) == good[i]);
        }
    }
    qlib_config_destroy(c);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(test_create)
{
    qlib_config *c = NULL;
    for (size_t i = 0; i < N_METHODS; i++) qlib_config_destroy(make(all_methods[i]));
    static const int bad[] = { -1, 5, 6, 100, INT_MAX, INT_MIN };
    for (size_t i = 0; i < COUNT(bad); i++) {
        c = (qlib_config *)&c;
        ck_assert_int_eq(qlib_config_create((qlib_method)bad[i], &c), QLIB_ERR_ARG);
        ck_assert_ptr_null(c);
        ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_create"));
    }
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_RTN, NULL), QLIB_ERR_ARG);
    qlib_config_destroy(NULL);
}
END_TEST

START_TEST(test_defaults)
{
    /* docs/API.md: BITS NONE 32, LLM.int8 8, others 4; GROUP_SIZE 128;
     * SYMMETRIC 0; the rest as qlib.h states. */
    qlib_config *c = make(QLIB_METHOD_NONE);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_BITS), 32);
    qlib_config_destroy(c);

    static const qlib_method grouped[] = { QLIB_METHOD_RTN, QLIB_METHOD_GPTQ, QLIB_METHOD_AWQ };
    for (size_t i = 0; i < COUNT(grouped); i++) {
        c = make(grouped[i]);
        ck_assert_int_eq(get_i(c, QLIB_PARAM_BITS), 4);
        ck_assert_int_eq(get_i(c, QLIB_PARAM_GROUP_SIZE), 128);
        ck_assert_int_eq(get_i(c, QLIB_PARAM_SYMMETRIC), 0);
        qlib_config_destroy(c);
    }
    c = make(QLIB_METHOD_GPTQ);
    ck_assert(get_f(c, QLIB_PARAM_GPTQ_DAMP) == 0.01f);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GPTQ_BLOCK_SIZE), 128);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GPTQ_ACT_ORDER), 0);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GPTQ_STATIC_GROUPS), 0);
    qlib_config_destroy(c);

    c = make(QLIB_METHOD_AWQ);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_AWQ_GRID), 20);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_AWQ_CLIP), 1);
    ck_assert(get_f(c, QLIB_PARAM_AWQ_MAX_SHRINK) == 0.5f);
    qlib_config_destroy(c);

    c = make(QLIB_METHOD_LLM_INT8);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_BITS), 8);
    ck_assert(get_f(c, QLIB_PARAM_OUTLIER_THRESHOLD) == 6.0f);
    qlib_config_destroy(c);
}
END_TEST

START_TEST(test_bits)
{
    static const int quant_good[] = { 2, 3, 4, 8 };
    static const int quant_bad[] = { 0, 1, 5, 6, 7, 9, 16, 32, -1, -4, INT_MAX, INT_MIN };
    static const qlib_method quant[] = { QLIB_METHOD_RTN, QLIB_METHOD_GPTQ, QLIB_METHOD_AWQ };
    for (size_t i = 0; i < COUNT(quant); i++)
        check_int_range(quant[i], QLIB_PARAM_BITS, quant_good, COUNT(quant_good), quant_bad,
                        COUNT(quant_bad));
    static const int none_good[] = { 16, 32 };
    static const int none_bad[] = { 0, 2, 3, 4, 8, 15, 17, 31, 33, 64, -16 };
    check_int_range(QLIB_METHOD_NONE, QLIB_PARAM_BITS, none_good, COUNT(none_good), none_bad,
                    COUNT(none_bad));
    static const int int8_good[] = { 8 };
    static const int int8_bad[] = { 0, 2, 3, 4, 7, 9, 16, 32, -8 };
    check_int_range(QLIB_METHOD_LLM_INT8, QLIB_PARAM_BITS, int8_good, COUNT(int8_good), int8_bad,
                    COUNT(int8_bad));
}
END_TEST

START_TEST(test_group_and_symmetric)
{
    static const int group_good[] = { -1, 0, 32, 64, 96, 128, 4096, 11008, 1 << 24 };
    static const int group_bad[] = { -2, -32, 1, 16, 31, 33, 48, 100, 127, (1 << 24) + 32,
                                     INT_MAX, INT_MIN };
    static const int sw_good[] = { 0, 1 };
    static const int sw_bad[] = { -1, 2, 3, INT_MAX, INT_MIN };
    static const qlib_method quant[] = { QLIB_METHOD_RTN, QLIB_METHOD_GPTQ, QLIB_METHOD_AWQ };
    for (size_t i = 0; i < COUNT(quant); i++) {
        check_int_range(quant[i], QLIB_PARAM_GROUP_SIZE, group_good, COUNT(group_good),
                        group_bad, COUNT(group_bad));
        check_int_range(quant[i], QLIB_PARAM_SYMMETRIC, sw_good, COUNT(sw_good), sw_bad,
                        COUNT(sw_bad));
    }
}
END_TEST

START_TEST(test_gptq_params)
{
    static const float damp_good[] = { 0.0f, 1e-6f, 0.01f, 0.1f, 0.5f, 1.0f };
    static const float damp_bad[] = { -1e-6f, -0.01f, 1.0001f, 2.0f, NAN, INFINITY, -INFINITY };
    check_float_range(QLIB_METHOD_GPTQ, QLIB_PARAM_GPTQ_DAMP, damp_good, COUNT(damp_good),
                      damp_bad, COUNT(damp_bad));
    static const int block_good[] = { 1, 2, 32, 128, 4095, 4096 };
    static const int block_bad[] = { 0, -1, 4097, 8192, INT_MAX, INT_MIN };
    check_int_range(QLIB_METHOD_GPTQ, QLIB_PARAM_GPTQ_BLOCK_SIZE, block_good, COUNT(block_good),
                    block_bad, COUNT(block_bad));
    static const int sw_good[] = { 0, 1 };
    static const int sw_bad[] = { -1, 2, 128 };
    check_int_range(QLIB_METHOD_GPTQ, QLIB_PARAM_GPTQ_ACT_ORDER, sw_good, COUNT(sw_good), sw_bad,
                    COUNT(sw_bad));
    check_int_range(QLIB_METHOD_GPTQ, QLIB_PARAM_GPTQ_STATIC_GROUPS, sw_good, COUNT(sw_good),
                    sw_bad, COUNT(sw_bad));
}
END_TEST

START_TEST(test_awq_params)
{
    static const int grid_good[] = { 1, 2, 20, 999, 1000 };
    static const int grid_bad[] = { 0, -1, 1001, INT_MAX, INT_MIN };
    check_int_range(QLIB_METHOD_AWQ, QLIB_PARAM_AWQ_GRID, grid_good, COUNT(grid_good), grid_bad,
                    COUNT(grid_bad));
    static const int sw_good[] = { 0, 1 };
    static const int sw_bad[] = { -1, 2, 20 };
    check_int_range(QLIB_METHOD_AWQ, QLIB_PARAM_AWQ_CLIP, sw_good, COUNT(sw_good), sw_bad,
                    COUNT(sw_bad));
    static const float shrink_good[] = { 0.0f, 0.05f, 0.5f, 0.9f, 0.95f };
    static const float shrink_bad[] = { -0.01f, 0.951f, 1.0f, 5.0f, NAN, INFINITY, -INFINITY };
    check_float_range(QLIB_METHOD_AWQ, QLIB_PARAM_AWQ_MAX_SHRINK, shrink_good,
                      COUNT(shrink_good), shrink_bad, COUNT(shrink_bad));
    static const int rounding_good[] = { 0, 1 };
    static const int rounding_bad[] = { -1, 2, 3, INT_MAX, INT_MIN };
    check_int_range(QLIB_METHOD_AWQ, QLIB_PARAM_AWQ_ROUNDING, rounding_good,
                    COUNT(rounding_good), rounding_bad, COUNT(rounding_bad));
    /* AWQ_SCALES (0.2): 0, the paper's mean|x|^alpha, by default */
    static const int scales_good[] = { 0, 1, 2 };
    static const int scales_bad[] = { -1, 3, 24, INT_MAX, INT_MIN };
    check_int_range(QLIB_METHOD_AWQ, QLIB_PARAM_AWQ_SCALES, scales_good, COUNT(scales_good),
                    scales_bad, COUNT(scales_bad));
    qlib_config *c = make(QLIB_METHOD_AWQ);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_AWQ_SCALES), 0);
    qlib_config_destroy(c);
}
END_TEST

/* The clipping search (0.2): CLIP_GRID in [0, 1000] and its range
 * AWQ_MAX_SHRINK in [0, 0.95], off (0) and 0.5 by default, for RTN, GPTQ
 * and AWQ; AWQ_ROUNDING 0 by default. */
START_TEST(test_clip_params)
{
    static const qlib_method quant[] = { QLIB_METHOD_RTN, QLIB_METHOD_GPTQ, QLIB_METHOD_AWQ };
    static const int grid_good[] = { 0, 1, 2, 20, 999, 1000 };
    static const int grid_bad[] = { -1, 1001, 4096, INT_MAX, INT_MIN };
    static const float shrink_good[] = { 0.0f, 0.05f, 0.5f, 0.9f, 0.95f };
    static const float shrink_bad[] = { -0.01f, 0.951f, 1.0f, 5.0f, NAN, INFINITY, -INFINITY };
    for (size_t i = 0; i < COUNT(quant); i++) {
        qlib_config *c = make(quant[i]);
        ck_assert_int_eq(get_i(c, QLIB_PARAM_CLIP_GRID), 0);
        ck_assert(get_f(c, QLIB_PARAM_AWQ_MAX_SHRINK) == 0.5f);
        qlib_config_destroy(c);
        check_int_range(quant[i], QLIB_PARAM_CLIP_GRID, grid_good, COUNT(grid_good), grid_bad,
                        COUNT(grid_bad));
        check_float_range(quant[i], QLIB_PARAM_AWQ_MAX_SHRINK, shrink_good, COUNT(shrink_good),
                          shrink_bad, COUNT(shrink_bad));
    }
    qlib_config *c = make(QLIB_METHOD_AWQ);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_AWQ_ROUNDING), 0);
    qlib_config_destroy(c);
}
END_TEST

START_TEST(test_outlier_threshold)
{
    /* Any finite value; <= 0 disables the decomposition. */
    static const float good[] = { 6.0f, 0.0f, -1.0f, 1e-30f, 3.5f, 1e30f, -1e30f };
    static const float bad[] = { NAN, INFINITY, -INFINITY };
    check_float_range(QLIB_METHOD_LLM_INT8, QLIB_PARAM_OUTLIER_THRESHOLD, good, COUNT(good), bad,
                      COUNT(bad));
}
END_TEST

/* The value to try for p: a valid one where p belongs. */
static int some_int(qlib_param p) { return p == QLIB_PARAM_BITS ? 8 : 1; }

START_TEST(test_other_methods_params)
{
    for (size_t mi = 0; mi < N_METHODS; mi++) {
        qlib_method m = all_methods[mi];
        qlib_config *c = make(m);
        for (size_t pi = 0; pi < N_PARAMS; pi++) {
            const param_info *pp = &params[pi];
            if (pp->methods & (1u << m)) continue;
            int iv = 12345;
            float fv = 12345.0f;
            /* Neither setter nor getter knows it, whatever the kind asked. */
            ck_assert_msg(qlib_config_set_int(c, pp->p, some_int(pp->p)) == QLIB_ERR_UNSUPPORTED,
                          "method %d param %d", (int)m, (int)pp->p);
            ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_set_int"));
            ck_assert_int_eq(qlib_config_set_float(c, pp->p, 0.5f), QLIB_ERR_UNSUPPORTED);
            ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_set_float"));
            ck_assert_int_eq(qlib_config_get_int(c, pp->p, &iv), QLIB_ERR_UNSUPPORTED);
            ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_get_int"));
            ck_assert_int_eq(qlib_config_get_float(c, pp->p, &fv), QLIB_ERR_UNSUPPORTED);
            ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_get_float"));
            ck_assert_int_eq(iv, 12345);
            ck_assert(fv == 12345.0f);
        }
        qlib_config_destroy(c);
    }
}
END_TEST

START_TEST(test_unknown_params)
{
    static const int unknown[] = { 0, 4, 6, 9, 14, 15, 19, 25, 29, 31, 100, -1, INT_MAX,
                                   INT_MIN };
    for (size_t mi = 0; mi < N_METHODS; mi++) {
        qlib_config *c = make(all_methods[mi]);
        for (size_t i = 0; i < COUNT(unknown); i++) {
            qlib_param p = (qlib_param)unknown[i];
            int iv = 7;
            float fv = 7.0f;
            ck_assert_int_eq(qlib_config_set_int(c, p, 1), QLIB_ERR_UNSUPPORTED);
            ck_assert_int_eq(qlib_config_set_float(c, p, 1.0f), QLIB_ERR_UNSUPPORTED);
            ck_assert_int_eq(qlib_config_get_int(c, p, &iv), QLIB_ERR_UNSUPPORTED);
            ck_assert_int_eq(qlib_config_get_float(c, p, &fv), QLIB_ERR_UNSUPPORTED);
            ck_assert_int_eq(iv, 7);
            ck_assert(fv == 7.0f);
        }
        qlib_config_destroy(c);
    }
}
END_TEST

/* An int parameter through set_float/get_float (or the reverse) is ERR_ARG
 * and changes nothing. */
START_TEST(test_kind_mismatch)
{
    for (size_t mi = 0; mi < N_METHODS; mi++) {
        qlib_method m = all_methods[mi];
        for (size_t pi = 0; pi < N_PARAMS; pi++) {
            const param_info *pp = &params[pi];
            if (!(pp->methods & (1u << m))) continue;
            qlib_config *c = make(m);
            int before_i = 0;
            float before_f = 0.0f;
            if (pp->is_float) before_f = get_f(c, pp->p);
            else before_i = get_i(c, pp->p);
            int iv = 99;
            float fv = 99.0f;
            if (pp->is_float) {
                ck_assert_int_eq(qlib_config_set_int(c, pp->p, 0), QLIB_ERR_ARG);
                ck_assert_int_eq(qlib_config_get_int(c, pp->p, &iv), QLIB_ERR_ARG);
                ck_assert_int_eq(iv, 99);
                ck_assert(get_f(c, pp->p) == before_f);
            } else {
                ck_assert_int_eq(qlib_config_set_float(c, pp->p, (float)some_int(pp->p)),
                                 QLIB_ERR_ARG);
                ck_assert_int_eq(qlib_config_get_float(c, pp->p, &fv), QLIB_ERR_ARG);
                ck_assert(fv == 99.0f);
                ck_assert_int_eq(get_i(c, pp->p), before_i);
            }
            qlib_config_destroy(c);
        }
    }
}
END_TEST

/* Setting one parameter leaves every other one as it was. */
START_TEST(test_params_independent)
{
    qlib_config *c = make(QLIB_METHOD_GPTQ);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_BITS, 3), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_GROUP_SIZE, 64), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_SYMMETRIC, 1), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_float(c, QLIB_PARAM_GPTQ_DAMP, 0.25f), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_GPTQ_BLOCK_SIZE, 64), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_GPTQ_ACT_ORDER, 1), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_GPTQ_STATIC_GROUPS, 1), QLIB_OK);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_BITS), 3);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GROUP_SIZE), 64);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_SYMMETRIC), 1);
    ck_assert(get_f(c, QLIB_PARAM_GPTQ_DAMP) == 0.25f);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GPTQ_BLOCK_SIZE), 64);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GPTQ_ACT_ORDER), 1);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GPTQ_STATIC_GROUPS), 1);
    qlib_config_destroy(c);

    c = make(QLIB_METHOD_AWQ);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_AWQ_GRID, 7), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_AWQ_CLIP, 0), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_float(c, QLIB_PARAM_AWQ_MAX_SHRINK, 0.25f), QLIB_OK);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_AWQ_GRID), 7);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_AWQ_CLIP), 0);
    ck_assert(get_f(c, QLIB_PARAM_AWQ_MAX_SHRINK) == 0.25f);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_BITS), 4);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_GROUP_SIZE), 128);
    qlib_config_destroy(c);

    c = make(QLIB_METHOD_NONE);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_BITS, 16), QLIB_OK);
    ck_assert_int_eq(get_i(c, QLIB_PARAM_BITS), 16);
    qlib_config_destroy(c);
}
END_TEST

/* The public names, as the examples, the binding and the CLI spell them. */
START_TEST(test_method_names)
{
    static const struct { int m; const char *name; } names[] = {
        { QLIB_METHOD_NONE, "none" }, { QLIB_METHOD_RTN, "rtn" }, { QLIB_METHOD_GPTQ, "gptq" },
        { QLIB_METHOD_AWQ, "awq" },   { QLIB_METHOD_LLM_INT8, "llm-int8" },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ck_assert_str_eq(qlib_method_name((qlib_method)names[i].m), names[i].name);
        /* a static string: the same pointer every time */
        ck_assert_ptr_eq(qlib_method_name((qlib_method)names[i].m),
                         qlib_method_name((qlib_method)names[i].m));
    }
    static const int unknown[] = { -1, 5, 6, 100, 0x7fffffff, -0x7fffffff - 1 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        ck_assert_str_eq(qlib_method_name((qlib_method)unknown[i]), "unknown");
}
END_TEST

START_TEST(test_null_and_getters)
{
    qlib_config *c = make(QLIB_METHOD_GPTQ);
    int iv;
    float fv;
    ck_assert_int_eq(qlib_config_get_int(c, QLIB_PARAM_BITS, NULL), QLIB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_get_int"));
    ck_assert_int_eq(qlib_config_get_float(c, QLIB_PARAM_GPTQ_DAMP, NULL), QLIB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_config_get_float"));
    ck_assert_int_eq(qlib_config_set_int(NULL, QLIB_PARAM_BITS, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_set_float(NULL, QLIB_PARAM_GPTQ_DAMP, 0.1f), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_get_int(NULL, QLIB_PARAM_BITS, &iv), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_get_float(NULL, QLIB_PARAM_GPTQ_DAMP, &fv), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_method(NULL), QLIB_METHOD_NONE);
    qlib_config_destroy(c);
}
END_TEST

Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tu_tcase("config");
    tcase_add_test(tc, test_create);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_bits);
    tcase_add_test(tc, test_group_and_symmetric);
    tcase_add_test(tc, test_gptq_params);
    tcase_add_test(tc, test_awq_params);
    tcase_add_test(tc, test_clip_params);
    tcase_add_test(tc, test_outlier_threshold);
    tcase_add_test(tc, test_other_methods_params);
    tcase_add_test(tc, test_unknown_params);
    tcase_add_test(tc, test_kind_mismatch);
    tcase_add_test(tc, test_params_independent);
    tcase_add_test(tc, test_null_and_getters);
    tcase_add_test(tc, test_method_names);
    suite_add_tcase(s, tc);
    return s;
}
