/* Progress and cancellation (qlib_ctx_set_progress): reports on the calling
 * thread, with static stage names and non-decreasing fractions ending at 1;
 * a nonzero return stops the call with QLIB_ERR_CANCELLED, no tensor and
 * nothing left allocated, and the context stays usable. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MAX_CALLS 4096

typedef struct progress_log {
    size_t calls;
    size_t cancel_at;            /* 1-based call that returns nonzero; 0: none */
    const char *stage[MAX_CALLS];
    double fraction[MAX_CALLS];
    int other_thread;            /* a call came from another thread */
    pthread_t caller;
} progress_log;

static int record(void *user, const char *stage, double fraction)
{
    progress_log *p = user;
    if (!pthread_equal(pthread_self(), p->caller)) p->other_thread = 1;
    if (p->calls < MAX_CALLS) {
        p->stage[p->calls] = stage;
        p->fraction[p->calls] = fraction;
    }
    p->calls++;
    return p->cancel_at != 0 && p->calls == p->cancel_at;
}

static void log_reset(progress_log *p, size_t cancel_at)
{
    memset(p, 0, sizeof *p);
    p->cancel_at = cancel_at;
    p->caller = pthread_self();
}

/* One deterministic layer with its calibration; the quantized tensor of cfg
 * without a callback, serialized, for comparison. */
typedef struct layer {
    size_t n, k;
    float *w;
    qlib_calib *cal;
} layer;

static void layer_make(layer *L, qlib_ctx *ctx, size_t n, size_t k, uint64_t seed)
{
    tu_rng r = { seed };
    L->n = n;
    L->k = k;
    L->w = tu_alloc_floats(n * k);
    tu_llm_weights(&r, L->w, n, k, k);
    float *x = tu_alloc_floats(256 * k);
    tu_act_model am;
    tu_act_model_init(&am, k, 10.0f, seed + 1);
    tu_act_model_sample(&am, &r, x, 256, k);
    tu_act_model_free(&am);
    ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_ALL, 128, &L->cal), QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(L->cal, x, 256, k), QLIB_OK);
    free(x);
}

static void layer_free(layer *L)
{
    qlib_calib_destroy(L->cal);
    free(L->w);
}

static qlib_config *config(qlib_method m, int block)
{
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(m, &cfg), QLIB_OK);
    if (m != QLIB_METHOD_NONE && m != QLIB_METHOD_LLM_INT8)
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 64), QLIB_OK);
    if (m == QLIB_METHOD_GPTQ)
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_BLOCK_SIZE, block), QLIB_OK);
    return cfg;
}

static uint8_t *blob_of(const qlib_tensor *t, size_t *bytes)
{
    ck_assert_int_eq(qlib_tensor_serialized_size(t, bytes), QLIB_OK);
    uint8_t *b = malloc(*bytes);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(qlib_tensor_serialize(t, b, *bytes, NULL), QLIB_OK);
    return b;
}

static int known_stage(const char *s)
{
    static const char *const stages[] = { "hessian", "gptq", "awq-scale", "awq-clip",
                                          "pack",    "rtn",  "done" };
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++)
        if (strcmp(s, stages[i]) == 0) return 1;
    return 0;
}

/* The whole report of one uncancelled call. */
static void assert_report(const progress_log *p, size_t at_least)
{
    ck_assert_uint_ge(p->calls, at_least);
    ck_assert_uint_le(p->calls, MAX_CALLS);
    ck_assert_int_eq(p->other_thread, 0);
    for (size_t i = 0; i < p->calls; i++) {
        ck_assert_msg(known_stage(p->stage[i]), "stage \"%s\"", p->stage[i]);
        ck_assert(p->fraction[i] >= 0.0 && p->fraction[i] <= 1.0);
        if (i) ck_assert(p->fraction[i] >= p->fraction[i - 1]);
    }
    ck_assert(p->fraction[p->calls - 1] == 1.0);
    ck_assert_str_eq(p->stage[p->calls - 1], "done");
}

START_TEST(test_progress_args)
{
    ck_assert_int_eq(qlib_ctx_set_progress(NULL, record, NULL), QLIB_ERR_ARG);
    qlib_ctx *ctx = tu_ctx(1, NULL);
    ck_assert_int_eq(qlib_ctx_set_progress(ctx, NULL, NULL), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_progress(ctx, record, NULL), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_progress(ctx, NULL, (void *)ctx), QLIB_OK);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Every method reports; GPTQ once per block of columns, so a layer with k /
 * block = 20 blocks (as a 4096 x 4096 layer with the default 128 has 32)
 * reports at least 20 times; AWQ once per grid point and per group. */
START_TEST(test_progress_reports)
{
    static const qlib_method methods[] = { QLIB_METHOD_NONE, QLIB_METHOD_RTN, QLIB_METHOD_GPTQ,
                                           QLIB_METHOD_AWQ, QLIB_METHOD_LLM_INT8 };
    static const size_t at_least[] = { 1, 2, 22, 20 + 1280 / 64, 1 };
    for (int threads = 1; threads <= 2; threads++) {
        qlib_ctx *ctx = tu_ctx(threads, NULL);
        layer L;
        layer_make(&L, ctx, 48, 1280, 5);
        progress_log p;
        ck_assert_int_eq(qlib_ctx_set_progress(ctx, record, &p), QLIB_OK);
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
            qlib_config *cfg = config(methods[i], 64);
            qlib_tensor *t = NULL;
            log_reset(&p, 0);
            ck_assert_int_eq(qlib_quantize(ctx, L.w, L.n, L.k, L.k, cfg, L.cal, &t), QLIB_OK);
            assert_report(&p, at_least[i]);
            qlib_tensor_destroy(t);
            qlib_config_destroy(cfg);
        }
        /* a NULL callback: no more reports */
        ck_assert_int_eq(qlib_ctx_set_progress(ctx, NULL, NULL), QLIB_OK);
        qlib_config *cfg = config(QLIB_METHOD_GPTQ, 64);
        qlib_tensor *t = NULL;
        log_reset(&p, 0);
        ck_assert_int_eq(qlib_quantize(ctx, L.w, L.n, L.k, L.k, cfg, L.cal, &t), QLIB_OK);
        ck_assert_uint_eq(p.calls, 0);
        qlib_tensor_destroy(t);
        qlib_config_destroy(cfg);
        layer_free(&L);
        qlib_ctx_destroy(ctx);
    }
}
END_TEST

/* Cancelling at the first, a middle and the last report: CANCELLED, no
 * tensor, every allocation of the call returned (the context's scratch may
 * stay), and the next call on the same context gives the same bits as an
 * uncancelled one. */
static void check_cancel(qlib_method m)
{
    tu_counting c;
    qlib_ctx *ctx = tu_counting_ctx(&c, 2);
    layer L;
    layer_make(&L, ctx, 600, 640, 9);   /* several passes of the long stages */
    qlib_config *cfg = config(m, 64);
    progress_log p;
    ck_assert_int_eq(qlib_ctx_set_progress(ctx, record, &p), QLIB_OK);
    qlib_tensor *ref = NULL;
    log_reset(&p, 0);
    ck_assert_int_eq(qlib_quantize(ctx, L.w, L.n, L.k, L.k, cfg, L.cal, &ref), QLIB_OK);
    size_t total = p.calls, ref_bytes, bytes;
    ck_assert_uint_ge(total, m == QLIB_METHOD_RTN ? 2 : 5);
    uint8_t *ref_blob = blob_of(ref, &ref_bytes);
    const size_t points[] = { 1, total / 2, total };
    for (size_t i = 0; i < 3; i++) {
        size_t live = c.allocs - c.frees;
        qlib_tensor *t = (qlib_tensor *)&t;
        log_reset(&p, points[i]);
        ck_assert_int_eq(qlib_quantize(ctx, L.w, L.n, L.k, L.k, cfg, L.cal, &t),
                         QLIB_ERR_CANCELLED);
        ck_assert_ptr_null(t);
        ck_assert_uint_eq(p.calls, points[i]);           /* promptly: no report after */
        ck_assert_ptr_nonnull(strstr(qlib_last_error(), "cancelled"));
        ck_assert_uint_le(c.allocs - c.frees, live + 1);   /* the scratch may grow once */
        log_reset(&p, 0);
        ck_assert_int_eq(qlib_quantize(ctx, L.w, L.n, L.k, L.k, cfg, L.cal, &t), QLIB_OK);
        uint8_t *blob = blob_of(t, &bytes);
        ck_assert_uint_eq(bytes, ref_bytes);
        ck_assert_int_eq(memcmp(blob, ref_blob, bytes), 0);
        free(blob);
        qlib_tensor_destroy(t);
    }
    free(ref_blob);
    qlib_tensor_destroy(ref);
    qlib_config_destroy(cfg);
    layer_free(&L);
    qlib_ctx_destroy(ctx);
}

START_TEST(test_progress_cancel_gptq) { check_cancel(QLIB_METHOD_GPTQ); }
END_TEST

START_TEST(test_progress_cancel_awq) { check_cancel(QLIB_METHOD_AWQ); }
END_TEST

START_TEST(test_progress_cancel_rtn) { check_cancel(QLIB_METHOD_RTN); }
END_TEST

Suite *suite_progress(void);
Suite *suite_progress(void)
{
    Suite *s = suite_create("progress");
    TCase *tc = tu_tcase("progress");
    tcase_add_test(tc, test_progress_args);
    tcase_add_test(tc, test_progress_reports);
    tcase_add_test(tc, test_progress_cancel_gptq);
    tcase_add_test(tc, test_progress_cancel_awq);
    tcase_add_test(tc, test_progress_cancel_rtn);
    suite_add_tcase(s, tc);
    return s;
}
