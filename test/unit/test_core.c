/* suite_core: version, status strings, the thread-local error, contexts
 * (create/destroy, threads, ISA, compute mode, parallel hook, QLIB_ISA) and
 * every query on NULL. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

Suite *suite_core(void);

static int has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The message of the last failure names the function that failed. */
#define ASSERT_ERR_NAMES(fn)                                                             \
    ck_assert_msg(strstr(qlib_last_error(), fn) != NULL, "last error \"%s\" lacks %s", \
                  qlib_last_error(), fn)

/* ---------------------------------------------------------------- version */

START_TEST(test_version)
{
    ck_assert_uint_eq(qlib_version_number(), QLIB_VERSION_NUMBER);
    ck_assert_uint_eq(qlib_version_number(),
                      QLIB_VERSION_MAJOR * 10000u + QLIB_VERSION_MINOR * 100u + QLIB_VERSION_PATCH);
    ck_assert_str_eq(qlib_version_string(), QLIB_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", QLIB_VERSION_MAJOR, QLIB_VERSION_MINOR,
             QLIB_VERSION_PATCH);
    ck_assert_str_eq(qlib_version_string(), want);
}
END_TEST

/* ----------------------------------------------------------------- status */

START_TEST(test_status_strings)
{
    static const struct { qlib_status s; const char *name; } known[] = {
        { QLIB_OK, "QLIB_OK" },
        { QLIB_ERR_ARG, "QLIB_ERR_ARG" },
        { QLIB_ERR_SHAPE, "QLIB_ERR_SHAPE" },
        { QLIB_ERR_NOMEM, "QLIB_ERR_NOMEM" },
        { QLIB_ERR_UNSUPPORTED, "QLIB_ERR_UNSUPPORTED" },
        { QLIB_ERR_NUMERIC, "QLIB_ERR_NUMERIC" },
        { QLIB_ERR_STATE, "QLIB_ERR_STATE" },
        { QLIB_ERR_IO, "QLIB_ERR_IO" },
        { QLIB_ERR_FORMAT, "QLIB_ERR_FORMAT" },
        { QLIB_ERR_CANCELLED, "QLIB_ERR_CANCELLED" },
    };
    const size_t n = sizeof known / sizeof known[0];
    /* The pinned values of the header. */
    for (size_t i = 0; i < n; i++) ck_assert_int_eq((int)known[i].s, (int)i);
    for (size_t i = 0; i < n; i++) {
        const char *s = qlib_status_string(known[i].s);
        ck_assert_ptr_nonnull(s);
        /* "NAME: text", and NAME is not merely a prefix of a longer name */
        ck_assert_msg(has_prefix(s, known[i].name) && s[strlen(known[i].name)] == ':',
                      "status %d reads \"%s\"", (int)known[i].s, s);
        ck_assert_uint_gt(strlen(s), strlen(known[i].name) + 2);
        for (size_t j = 0; j < i; j++) ck_assert_str_ne(s, qlib_status_string(known[j].s));
    }
    static const int unknown[] = { -1, 10, 11, 100, 0x7fffffff, -0x7fffffff - 1 };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = qlib_status_string((qlib_status)unknown[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(strstr(s, "unknown") != NULL, "status %d reads \"%s\"", unknown[i], s);
        for (size_t j = 0; j < n; j++) ck_assert_str_ne(s, qlib_status_string(known[j].s));
    }
}
END_TEST

/* Each thread sees only its own last failure. */
typedef struct err_thread {
    char before[64];
    char after[256];
    qlib_status status;
} err_thread;

static void *fail_on_thread(void *arg)
{
    err_thread *e = arg;
    snprintf(e->before, sizeof e->before, "%s", qlib_last_error());
    e->status = qlib_ctx_set_threads(NULL, 1);
    snprintf(e->after, sizeof e->after, "%s", qlib_last_error());
    return NULL;
}

START_TEST(test_last_error_per_thread)
{
    ck_assert_ptr_nonnull(qlib_last_error());
    ck_assert_int_eq(qlib_config_create((qlib_method)77, NULL), QLIB_ERR_ARG);
    ASSERT_ERR_NAMES("qlib_config_create");
    char mine[256];
    snprintf(mine, sizeof mine, "%s", qlib_last_error());

    err_thread e;
    memset(&e, 0, sizeof e);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, fail_on_thread, &e), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_str_eq(e.before, "");                    /* a new thread starts empty */
    ck_assert_int_eq(e.status, QLIB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(e.after, "qlib_ctx_set_threads"));
    ck_assert_str_eq(qlib_last_error(), mine);         /* untouched by the other thread */

    /* A success does not clear the message; the next failure replaces it. */
    qlib_config *c = NULL;
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_RTN, &c), QLIB_OK);
    ck_assert_str_eq(qlib_last_error(), mine);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_BITS, 5), QLIB_ERR_ARG);
    ASSERT_ERR_NAMES("qlib_config_set_int");
    qlib_config_destroy(c);
}
END_TEST

/* ---------------------------------------------------------------- context */

START_TEST(test_ctx_create_destroy)
{
    qlib_ctx *ctx = NULL;
    ck_assert_int_eq(qlib_ctx_create(NULL), QLIB_ERR_ARG);
    ASSERT_ERR_NAMES("qlib_ctx_create");
    ck_assert_int_eq(qlib_ctx_create(&ctx), QLIB_OK);
    ck_assert_ptr_nonnull(ctx);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online >= 1 && online <= 1024) ck_assert_int_eq(qlib_ctx_threads(ctx), (int)online);
    else ck_assert_int_ge(qlib_ctx_threads(ctx), 1);
    ck_assert_int_eq(qlib_ctx_compute(ctx), QLIB_COMPUTE_AUTO);
    ck_assert_str_ne(qlib_ctx_isa(ctx), "");
    qlib_ctx_destroy(ctx);
    qlib_ctx_destroy(NULL);

    /* A NULL allocator means malloc/free. */
    ctx = NULL;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(NULL, &ctx), QLIB_OK);
    ck_assert_ptr_nonnull(ctx);
    qlib_ctx_destroy(ctx);
    ck_assert_int_eq(qlib_ctx_create_with_allocator(NULL, NULL), QLIB_ERR_ARG);

    /* Many contexts at once are independent. */
    qlib_ctx *many[8];
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(qlib_ctx_create(&many[i]), QLIB_OK);
        ck_assert_int_eq(qlib_ctx_set_threads(many[i], 1 + i % 3), QLIB_OK);
    }
    for (int i = 0; i < 8; i++) ck_assert_int_eq(qlib_ctx_threads(many[i]), 1 + i % 3);
    for (int i = 0; i < 8; i++) qlib_ctx_destroy(many[i]);
}
END_TEST

START_TEST(test_ctx_threads)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    ck_assert_int_eq(qlib_ctx_threads(ctx), 1);
    for (int t = 1; t <= 6; t++) {
        ck_assert_int_eq(qlib_ctx_set_threads(ctx, t), QLIB_OK);
        ck_assert_int_eq(qlib_ctx_threads(ctx), t);
    }
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, 16), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_threads(ctx), 16);
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, 3), QLIB_OK);
    static const int bad[] = { -1, -1000, 1025, 1 << 30 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(qlib_ctx_set_threads(ctx, bad[i]), QLIB_ERR_ARG);
        ASSERT_ERR_NAMES("qlib_ctx_set_threads");
        ck_assert_int_eq(qlib_ctx_threads(ctx), 3);        /* unchanged */
    }
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, 0), QLIB_OK);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online >= 1 && online <= 1024) ck_assert_int_eq(qlib_ctx_threads(ctx), (int)online);
    ck_assert_int_eq(qlib_ctx_set_threads(NULL, 1), QLIB_ERR_ARG);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_ctx_isa)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    ck_assert_str_ne(qlib_ctx_isa(ctx), "");
    /* NULL asks for the best this CPU has, whatever QLIB_ISA forced at creation */
    ck_assert_int_eq(qlib_ctx_set_isa(ctx, NULL), QLIB_OK);
    const char *best = qlib_ctx_isa(ctx);

    ck_assert_int_eq(qlib_ctx_set_isa(ctx, "scalar"), QLIB_OK);
    ck_assert_str_eq(qlib_ctx_isa(ctx), "scalar");
    ck_assert_int_eq(qlib_ctx_set_isa(ctx, NULL), QLIB_OK);
    ck_assert_str_eq(qlib_ctx_isa(ctx), best);

    ck_assert_int_eq(qlib_ctx_set_isa(ctx, "scalar"), QLIB_OK);
    static const char *bad[] = { "", "bogus", "SCALAR", "scalar ", "avx1024", "sse" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(qlib_ctx_set_isa(ctx, bad[i]), QLIB_ERR_UNSUPPORTED);
        ASSERT_ERR_NAMES("qlib_ctx_set_isa");
        ck_assert_str_eq(qlib_ctx_isa(ctx), "scalar");     /* unchanged */
    }
    /* The ISAs of the other architecture, or this CPU's when it lacks them. */
    for (size_t i = 1; i < TU_N_ISAS; i++) {
        qlib_status s = qlib_ctx_set_isa(ctx, tu_isa_names[i]);
        ck_assert_msg(s == QLIB_OK || s == QLIB_ERR_UNSUPPORTED, "%s: %d", tu_isa_names[i], (int)s);
        if (s == QLIB_OK) ck_assert_str_eq(qlib_ctx_isa(ctx), tu_isa_names[i]);
        ck_assert_int_eq(qlib_ctx_set_isa(ctx, "scalar"), QLIB_OK);
    }
#if defined(__x86_64__)
    ck_assert_int_eq(qlib_ctx_set_isa(ctx, "neon"), QLIB_ERR_UNSUPPORTED);
#elif defined(__aarch64__)
    ck_assert_int_eq(qlib_ctx_set_isa(ctx, "avx2"), QLIB_ERR_UNSUPPORTED);
#endif
    ck_assert_int_eq(qlib_ctx_set_isa(NULL, "scalar"), QLIB_ERR_ARG);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_ctx_compute)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    ck_assert_int_eq(qlib_ctx_compute(ctx), QLIB_COMPUTE_AUTO);
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_F32), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_compute(ctx), QLIB_COMPUTE_F32);
    static const int bad[] = { -1, 2, 3, 100 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)bad[i]), QLIB_ERR_ARG);
        ASSERT_ERR_NAMES("qlib_ctx_set_compute");
        ck_assert_int_eq(qlib_ctx_compute(ctx), QLIB_COMPUTE_F32);
    }
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_AUTO), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_compute(ctx), QLIB_COMPUTE_AUTO);
    ck_assert_int_eq(qlib_ctx_set_compute(NULL, QLIB_COMPUTE_AUTO), QLIB_ERR_ARG);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* A lent pool that runs the tasks in order on the calling thread and counts
 * its calls and tasks. */
typedef struct counting_pool {
    int calls;
    size_t tasks;
} counting_pool;

static void counting_run(void *user, void (*task)(void *, size_t), void *arg, size_t n)
{
    counting_pool *p = user;
    p->calls++;
    p->tasks += n;
    for (size_t i = 0; i < n; i++) task(arg, i);
}

START_TEST(test_ctx_parallel_hook)
{
    /* Big enough (m * k * n >= 2^18 multiply-adds) to be split over threads. */
    const size_t n = 192, k = 512, m = 4;
    tu_rng r = { 11 };
    float *w = tu_alloc_floats(n * k), *x = tu_alloc_floats(m * k);
    float *y0 = tu_alloc_floats(m * n), *y1 = tu_alloc_floats(m * n);
    tu_llm_weights(&r, w, n, k, k);
    for (size_t i = 0; i < m * k; i++) x[i] = (float)tu_normal(&r);

    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, 128, 0, NULL);
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y0, n), QLIB_OK);

    counting_pool pool = { 0, 0 };
    qlib_parallel p = QLIB_PARALLEL_INIT;
    p.run = counting_run;
    p.user = &pool;

    /* Bad tables are rejected and change nothing. */
    qlib_parallel small = p;
    small.struct_size = (uint32_t)sizeof(qlib_parallel) - 1;
    ck_assert_int_eq(qlib_ctx_set_parallel(ctx, &small), QLIB_ERR_ARG);
    ASSERT_ERR_NAMES("qlib_ctx_set_parallel");
    qlib_parallel norun = QLIB_PARALLEL_INIT;
    ck_assert_int_eq(qlib_ctx_set_parallel(ctx, &norun), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_ctx_set_parallel(NULL, &p), QLIB_ERR_ARG);

    ck_assert_int_eq(qlib_ctx_set_parallel(ctx, &p), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, 3), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_threads(ctx), 3);
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y1, n), QLIB_OK);
    ck_assert_int_gt(pool.calls, 0);
    ck_assert_uint_ge(pool.tasks, (n + 63) / 64);          /* output columns in chunks of 64 */
    ck_assert_mem_eq(y0, y1, m * n * sizeof(float));

    /* NULL returns to the built-in pool: the lent one is no longer called. */
    int calls = pool.calls;
    ck_assert_int_eq(qlib_ctx_set_parallel(ctx, NULL), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_threads(ctx), 3);
    memset(y1, 0, m * n * sizeof(float));
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y1, n), QLIB_OK);
    ck_assert_int_eq(pool.calls, calls);
    ck_assert_mem_eq(y0, y1, m * n * sizeof(float));

    /* One thread never calls the lent pool. */
    ck_assert_int_eq(qlib_ctx_set_parallel(ctx, &p), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, 1), QLIB_OK);
    ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y1, n), QLIB_OK);
    ck_assert_int_eq(pool.calls, calls);

    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(w); free(x); free(y0); free(y1);
}
END_TEST

/* QLIB_ISA forces the kernels of a new context; the variable is restored. */
START_TEST(test_ctx_env_isa)
{
    const char *old = getenv("QLIB_ISA");
    char *saved = old ? strdup(old) : NULL;
    qlib_ctx *ctx = NULL;

    ck_assert_int_eq(setenv("QLIB_ISA", "scalar", 1), 0);
    ck_assert_int_eq(qlib_ctx_create(&ctx), QLIB_OK);
    ck_assert_str_eq(qlib_ctx_isa(ctx), "scalar");
    /* set_isa(NULL) still picks the best of the CPU */
    ck_assert_int_eq(qlib_ctx_set_isa(ctx, NULL), QLIB_OK);
    ck_assert_str_ne(qlib_ctx_isa(ctx), "");
    qlib_ctx_destroy(ctx);

    static const char *bad[] = { "bogus", "Scalar", "avx1024" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(setenv("QLIB_ISA", bad[i], 1), 0);
        ctx = (qlib_ctx *)&ctx;                            /* must be reset to NULL */
        ck_assert_int_eq(qlib_ctx_create(&ctx), QLIB_ERR_UNSUPPORTED);
        ck_assert_ptr_null(ctx);
        ck_assert_msg(strstr(qlib_last_error(), bad[i]) != NULL, "\"%s\"", qlib_last_error());
    }
#if defined(__x86_64__)
    ck_assert_int_eq(setenv("QLIB_ISA", "neon", 1), 0);
    ck_assert_int_eq(qlib_ctx_create(&ctx), QLIB_ERR_UNSUPPORTED);
    ck_assert_ptr_null(ctx);
#endif

    /* Empty means unset: the best ISA. */
    ck_assert_int_eq(setenv("QLIB_ISA", "", 1), 0);
    ck_assert_int_eq(qlib_ctx_create(&ctx), QLIB_OK);
    ck_assert_str_ne(qlib_ctx_isa(ctx), "");
    qlib_ctx_destroy(ctx);

    if (saved) {
        ck_assert_int_eq(setenv("QLIB_ISA", saved, 1), 0);
        free(saved);
    } else {
        ck_assert_int_eq(unsetenv("QLIB_ISA"), 0);
    }
}
END_TEST

/* ------------------------------------------------------- NULL everywhere */

START_TEST(test_queries_on_null)
{
    ck_assert_str_eq(qlib_ctx_isa(NULL), "");
    ck_assert_int_eq(qlib_ctx_threads(NULL), 0);
    ck_assert_int_eq(qlib_ctx_compute(NULL), QLIB_COMPUTE_AUTO);
    ck_assert_int_eq(qlib_config_method(NULL), QLIB_METHOD_NONE);
    ck_assert_uint_eq(qlib_calib_tokens(NULL), 0);
    ck_assert_uint_eq(qlib_calib_k(NULL), 0);
    ck_assert_uint_eq(qlib_tensor_rows(NULL), 0);
    ck_assert_uint_eq(qlib_tensor_cols(NULL), 0);
    ck_assert_int_eq(qlib_tensor_method(NULL), QLIB_METHOD_NONE);
    ck_assert_int_eq(qlib_tensor_bits(NULL), 0);
    ck_assert_int_eq(qlib_tensor_group_size(NULL), 0);
    ck_assert_int_eq(qlib_tensor_symmetric(NULL), 0);
    ck_assert_uint_eq(qlib_tensor_storage_bytes(NULL), 0);
    ck_assert(qlib_tensor_bits_per_weight(NULL) == 0.0);
    ck_assert(qlib_tensor_quant_error(NULL) == 0.0);
    ck_assert_ptr_null(qlib_tensor_input_scales(NULL));
    ck_assert_ptr_null(qlib_tensor_permutation(NULL));
    ck_assert(qlib_tensor_outlier_threshold(NULL) == 0.0f);
    qlib_ctx_destroy(NULL);
    qlib_config_destroy(NULL);
    qlib_calib_destroy(NULL);
    qlib_tensor_destroy(NULL);
}
END_TEST

START_TEST(test_status_functions_on_null)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_config *cfg = NULL;
    ck_assert_int_eq(qlib_config_create(QLIB_METHOD_RTN, &cfg), QLIB_OK);
    float w[4 * 64];
    for (int i = 0; i < 4 * 64; i++) w[i] = (float)(i % 7) - 3.0f;
    qlib_tensor *t = tu_quantize(ctx, w, 4, 64, 64, QLIB_METHOD_RTN, 4, 32, 0, NULL);
    float out[4 * 64];
    size_t sz = 0;
    int iv = 0;
    float fv = 0.0f;

    ck_assert_int_eq(qlib_ctx_set_parallel(NULL, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_set_int(NULL, QLIB_PARAM_BITS, 4), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_set_float(NULL, QLIB_PARAM_GPTQ_DAMP, 0.1f), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_get_int(NULL, QLIB_PARAM_BITS, &iv), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_get_float(NULL, QLIB_PARAM_GPTQ_DAMP, &fv), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_config_get_int(cfg, QLIB_PARAM_BITS, NULL), QLIB_ERR_ARG);

    qlib_calib *cal = (qlib_calib *)&cal;
    ck_assert_int_eq(qlib_calib_create(NULL, 8, QLIB_CALIB_ALL, 4, &cal), QLIB_ERR_ARG);
    ck_assert_ptr_null(cal);
    ck_assert_int_eq(qlib_calib_create(ctx, 8, QLIB_CALIB_ALL, 4, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_add(NULL, w, 1, 8), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_act_stats(NULL, out, out), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_calib_hessian(NULL, out, 8), QLIB_ERR_ARG);

    qlib_tensor *t2 = (qlib_tensor *)&t2;
    ck_assert_int_eq(qlib_quantize(NULL, w, 4, 64, 64, cfg, NULL, &t2), QLIB_ERR_ARG);
    ck_assert_ptr_null(t2);
    ck_assert_int_eq(qlib_quantize(ctx, NULL, 4, 64, 64, cfg, NULL, &t2), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_quantize(ctx, w, 4, 64, 64, NULL, NULL, &t2), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_quantize(ctx, w, 4, 64, 64, cfg, NULL, NULL), QLIB_ERR_ARG);
    ck_assert_ptr_null(t2);

    ck_assert_int_eq(qlib_dequantize(NULL, t, out, 64), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_dequantize(ctx, NULL, out, 64), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_dequantize(ctx, t, NULL, 64), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_matmul(NULL, t, w, 1, 64, out, 4), QLIB_ERR_ARG);

    ck_assert_int_eq(qlib_tensor_serialized_size(NULL, &sz), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_serialized_size(t, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_serialize(NULL, out, sizeof out, &sz), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_deserialize(NULL, out, sizeof out, 0, &t2), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_save(NULL, "/tmp/x"), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_load(NULL, "/tmp/x", &t2), QLIB_ERR_ARG);
    ck_assert_ptr_null(t2);

    qlib_tensor_destroy(t);
    qlib_config_destroy(cfg);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------ dequantize_rows */

/* Every row range of tensors of each kind (float, grouped codes, act-order
 * permutation, AWQ input scales, LLM.int8()) equals those rows of
 * qlib_dequantize bit for bit, with 1 and 3 threads and a padded ldw. */
START_TEST(test_dequantize_rows)
{
    const size_t n = 37, k = 100, ld = 103;
    tu_rng r = { 11 };
    float *w = tu_alloc_floats(n * k), *full = tu_alloc_floats(n * k), *part = tu_alloc_floats(n * ld);
    float *x = tu_alloc_floats(256 * k);
    tu_llm_weights(&r, w, n, k, k);
    tu_act_model am;
    tu_act_model_init(&am, k, 20.0f, 5);
    tu_act_model_sample(&am, &r, x, 256, k);
    for (int threads = 1; threads <= 3; threads += 2) {
        qlib_ctx *ctx = tu_ctx(threads, NULL);
        qlib_calib *cal = NULL;
        ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_ALL, 128, &cal), QLIB_OK);
        ck_assert_int_eq(qlib_calib_add(cal, x, 256, k), QLIB_OK);
        qlib_tensor *t[7];
        t[0] = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_NONE, 32, 0, 0, NULL);
        t[1] = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_NONE, 16, 0, 0, NULL);
        t[2] = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, 32, 0, NULL);
        t[3] = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 3, 0, 1, NULL);
        t[4] = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_AWQ, 4, 32, 0, cal);
        t[5] = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_LLM_INT8, 8, 0, 0, NULL);
        qlib_config *cfg = NULL;
        ck_assert_int_eq(qlib_config_create(QLIB_METHOD_GPTQ, &cfg), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 32), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER, 1), QLIB_OK);
        ck_assert_int_eq(qlib_quantize(ctx, w, n, k, k, cfg, cal, &t[6]), QLIB_OK);
        ck_assert_ptr_nonnull(qlib_tensor_permutation(t[6]));
        ck_assert_ptr_nonnull(qlib_tensor_input_scales(t[4]));
        for (int i = 0; i < 7; i++) {
            ck_assert_int_eq(qlib_dequantize(ctx, t[i], full, k), QLIB_OK);
            static const size_t ranges[][2] = { { 0, 37 }, { 0, 1 }, { 36, 1 }, { 5, 17 }, { 20, 17 } };
            for (size_t j = 0; j < sizeof ranges / sizeof ranges[0]; j++) {
                size_t r0 = ranges[j][0], cnt = ranges[j][1];
                for (size_t q = 0; q < n * ld; q++) part[q] = -7.0f;
                ck_assert_int_eq(qlib_dequantize_rows(ctx, t[i], r0, cnt, part, ld), QLIB_OK);
                for (size_t a = 0; a < cnt; a++) {
                    ck_assert_msg(memcmp(part + a * ld, full + (r0 + a) * k, k * sizeof(float)) == 0,
                                  "tensor %d rows %zu+%zu: row %zu differs", i, r0, cnt, a);
                    for (size_t c = k; c < ld && a + 1 < cnt; c++) ck_assert(part[a * ld + c] == -7.0f);
                }
                ck_assert(part[cnt == n ? (n - 1) * ld + k : cnt * ld] == -7.0f);
            }
        }
        /* errors, before anything is written */
        ck_assert_int_eq(qlib_dequantize_rows(NULL, t[2], 0, 1, part, k), QLIB_ERR_ARG);
        ck_assert_int_eq(qlib_dequantize_rows(ctx, NULL, 0, 1, part, k), QLIB_ERR_ARG);
        ck_assert_int_eq(qlib_dequantize_rows(ctx, t[2], 0, 1, NULL, k), QLIB_ERR_ARG);
        ck_assert_int_eq(qlib_dequantize_rows(ctx, t[2], 0, 0, part, k), QLIB_ERR_ARG);
        ck_assert_int_eq(qlib_dequantize_rows(ctx, t[2], 37, 1, part, k), QLIB_ERR_ARG);
        ck_assert_int_eq(qlib_dequantize_rows(ctx, t[2], 30, 8, part, k), QLIB_ERR_ARG);
        ck_assert_int_eq(qlib_dequantize_rows(ctx, t[2], 1, SIZE_MAX, part, k), QLIB_ERR_ARG);
        ck_assert_int_eq(qlib_dequantize_rows(ctx, t[2], 0, 2, part, k - 1), QLIB_ERR_ARG);
        ASSERT_ERR_NAMES("qlib_dequantize_rows");
        ck_assert_int_eq(qlib_dequantize_rows(ctx, t[2], 0, 2, part, SIZE_MAX / 2), QLIB_ERR_ARG);
        for (int i = 0; i < 7; i++) qlib_tensor_destroy(t[i]);
        qlib_config_destroy(cfg);
        qlib_calib_destroy(cal);
        qlib_ctx_destroy(ctx);
    }
    tu_act_model_free(&am);
    free(w);
    free(full);
    free(part);
    free(x);
}
END_TEST

Suite *suite_core(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tu_tcase("core");
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_status_strings);
    tcase_add_test(tc, test_last_error_per_thread);
    tcase_add_test(tc, test_ctx_create_destroy);
    tcase_add_test(tc, test_ctx_threads);
    tcase_add_test(tc, test_ctx_isa);
    tcase_add_test(tc, test_ctx_compute);
    tcase_add_test(tc, test_ctx_parallel_hook);
    tcase_add_test(tc, test_ctx_env_isa);
    tcase_add_test(tc, test_queries_on_null);
    tcase_add_test(tc, test_status_functions_on_null);
    tcase_add_test(tc, test_dequantize_rows);
    suite_add_tcase(s, tc);
    return s;
}
