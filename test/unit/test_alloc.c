/* suite_alloc: the allocator hook. Every allocation goes through it and is
 * freed; failing the n-th allocation, for every n a call reaches, returns
 * QLIB_ERR_NOMEM, leaves the output NULL and leaks nothing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

Suite *suite_alloc(void);

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_STEPS 1000     /* no call here makes nearly this many allocations */

/* The counting allocator of testutil, also checking each request: a
 * nonzero size and an alignment that is a power of two >= sizeof(void *). */
typedef struct checked {
    tu_counting c;
    qlib_allocator inner;
    int bad_request;
} checked;

static void *checked_alloc(void *user, size_t size, size_t alignment)
{
    checked *k = user;
    if (size == 0 || alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0)
        k->bad_request = 1;
    return k->inner.alloc(k->inner.user, size, alignment);
}

static void checked_free(void *user, void *p)
{
    checked *k = user;
    if (!p) k->bad_request = 1;
    k->inner.free(k->inner.user, p);
}

static qlib_allocator checked_allocator(checked *k)
{
    memset(k, 0, sizeof *k);
    k->inner = tu_counting_allocator(&k->c);
    qlib_allocator a = QLIB_ALLOCATOR_INIT;
    a.alloc = checked_alloc;
    a.free = checked_free;
    a.user = k;
    return a;
}

static size_t live(const checked *k) { return k->c.allocs - k->c.frees; }

/* Makes the allocation `step` calls from now fail (once). */
static void fail_in(checked *k, long step) { k->c.fail_at = (long)k->c.allocs + step; }

/* Whether the armed failure was reached (testutil disarms it when it fires). */
static int failure_fired(const checked *k) { return k->c.fail_at == -1; }

static qlib_ctx *checked_ctx(checked *k, int threads)
{
    qlib_allocator a = checked_allocator(k);
    qlib_ctx *ctx = NULL;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&a, &ctx), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, threads), QLIB_OK);
    return ctx;
}

static float *weights(size_t n, size_t k, uint64_t seed)
{
    tu_rng r = { seed };
    float *w = tu_alloc_floats(n * k);
    tu_llm_weights(&r, w, n, k, k);
    return w;
}

static qlib_config *config(qlib_method m, int bits, int group, int sym)
{
    qlib_config *c = NULL;
    ck_assert_int_eq(qlib_config_create(m, &c), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_BITS, bits), QLIB_OK);
    if (m == QLIB_METHOD_RTN) {
        ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_GROUP_SIZE, group), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_int(c, QLIB_PARAM_SYMMETRIC, sym), QLIB_OK);
    }
    return c;
}

static char *temp_path(const char *name)
{
    const char *base = getenv("TMPDIR");
    char *dir = malloc(4096);
    ck_assert_ptr_nonnull(dir);
    snprintf(dir, 4096, "%s/qlib_alloc_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    size_t len = strlen(dir);
    snprintf(dir + len, 4096 - len, "/%s", name);
    return dir;
}

static void remove_temp(char *path)
{
    unlink(path);
    *strrchr(path, '/') = '\0';
    ck_assert_int_eq(rmdir(path), 0);
    free(path);
}

/* ---------------------------------------------------------------- tests */

START_TEST(test_pairs_balance)
{
    const size_t n = 70, k = 200, m = 5;
    float *w = weights(n, k, 1), *x = weights(m, k, 2), *y = tu_alloc_floats(m * n);
    char *path = temp_path("t.qlib");
    checked k1;
    qlib_ctx *ctx = checked_ctx(&k1, 2);
    qlib_calib *cal = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_ALL, 8, &cal), QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(cal, x, m, k), QLIB_OK);
    static const struct { qlib_method m; int bits, group, sym; } fmts[] = {
        { QLIB_METHOD_RTN, 4, 64, 0 }, { QLIB_METHOD_RTN, 8, -1, 1 },
        { QLIB_METHOD_NONE, 32, 0, 0 }, { QLIB_METHOD_NONE, 16, 0, 0 },
    };
    for (size_t i = 0; i < COUNT(fmts); i++) {
        qlib_config *cfg = config(fmts[i].m, fmts[i].bits, fmts[i].group, fmts[i].sym);
        qlib_tensor *t = NULL, *u = NULL, *v = NULL;
        ck_assert_int_eq(qlib_quantize(ctx, w, n, k, k, cfg, cal, &t), QLIB_OK);
        qlib_config_destroy(cfg);
        for (int mode = 0; mode <= 1; mode++) {
            ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
            ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y, n), QLIB_OK);
        }
        size_t size;
        ck_assert_int_eq(qlib_tensor_serialized_size(t, &size), QLIB_OK);
        void *blob = aligned_alloc(64, (size + 63) / 64 * 64);
        ck_assert_ptr_nonnull(blob);
        ck_assert_int_eq(qlib_tensor_serialize(t, blob, size, NULL), QLIB_OK);
        ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_OK);
        ck_assert_int_eq(qlib_tensor_save(u, path), QLIB_OK);
        ck_assert_int_eq(qlib_tensor_load(ctx, path, &v), QLIB_OK);
        qlib_tensor_destroy(u);
        ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, QLIB_LOAD_BORROW, &u), QLIB_OK);
        float *wh = tu_alloc_floats(n * k);
        ck_assert_int_eq(qlib_dequantize(ctx, v, wh, k), QLIB_OK);
        ck_assert_int_eq(qlib_matmul(ctx, u, x, m, k, y, n), QLIB_OK);
        free(wh);
        qlib_tensor_destroy(u);
        qlib_tensor_destroy(v);
        qlib_tensor_destroy(t);
        free(blob);
    }
    /* Once warm, matmul allocates nothing. */
    qlib_config *cfg = config(QLIB_METHOD_RTN, 4, 32, 0);
    qlib_tensor *t = NULL;
    ck_assert_int_eq(qlib_quantize(ctx, w, n, k, k, cfg, NULL, &t), QLIB_OK);
    qlib_config_destroy(cfg);
    for (int mode = 0; mode <= 1; mode++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
        ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y, n), QLIB_OK);
    }
    size_t before = k1.c.allocs;
    for (int mode = 0; mode <= 1; mode++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
        for (size_t mm = 1; mm <= m; mm++)
            ck_assert_int_eq(qlib_matmul(ctx, t, x, mm, k, y, n), QLIB_OK);
    }
    ck_assert_uint_eq(k1.c.allocs, before);
    qlib_tensor_destroy(t);

    qlib_calib_destroy(cal);
    qlib_ctx_destroy(ctx);
    ck_assert_uint_gt(k1.c.allocs, 0);
    ck_assert_uint_eq(k1.c.allocs, k1.c.frees);
    ck_assert_int_eq(k1.bad_request, 0);
    remove_temp(path);
    free(w); free(x); free(y);
}
END_TEST

START_TEST(test_allocator_table_checks)
{
    checked k1;
    qlib_allocator a = checked_allocator(&k1);
    qlib_ctx *ctx = (qlib_ctx *)&ctx;
    qlib_allocator bad = a;
    bad.struct_size = (uint32_t)sizeof(qlib_allocator) - 1;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&bad, &ctx), QLIB_ERR_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_ctx_create"));
    bad.struct_size = 0;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&bad, &ctx), QLIB_ERR_ARG);
    bad = a;
    bad.alloc = NULL;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&bad, &ctx), QLIB_ERR_ARG);
    bad = a;
    bad.free = NULL;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&bad, &ctx), QLIB_ERR_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_uint_eq(k1.c.allocs, 0);                 /* checked before any allocation */
    /* A larger struct_size (a newer caller) is accepted. */
    bad = a;
    bad.struct_size = (uint32_t)sizeof(qlib_allocator) + 16;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&bad, &ctx), QLIB_OK);
    qlib_ctx_destroy(ctx);
    ck_assert_uint_eq(k1.c.allocs, k1.c.frees);
}
END_TEST

/* ctx_create with 1, 2 and 3 threads' worth of pool, and set_threads. */
START_TEST(test_fail_ctx)
{
    int reached_ok = 0;
    for (long step = 1; step <= MAX_STEPS && !reached_ok; step++) {
        checked k1;
        qlib_allocator a = checked_allocator(&k1);
        k1.c.fail_at = step;
        qlib_ctx *ctx = (qlib_ctx *)&ctx;
        qlib_status s = qlib_ctx_create_with_allocator(&a, &ctx);
        if (!failure_fired(&k1)) {
            ck_assert_int_eq(s, QLIB_OK);
            reached_ok = 1;
        } else {
            ck_assert_msg(s == QLIB_ERR_NOMEM, "step %ld: %d", step, (int)s);
            ck_assert_ptr_null(ctx);
            ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_ctx"));
            ck_assert_uint_eq(live(&k1), 0);
            continue;
        }
        qlib_ctx_destroy(ctx);
        ck_assert_uint_eq(live(&k1), 0);
    }
    ck_assert(reached_ok);

    /* set_threads that cannot build its pool keeps the old one. */
    reached_ok = 0;
    for (long step = 1; step <= MAX_STEPS && !reached_ok; step++) {
        checked k1;
        qlib_ctx *ctx = checked_ctx(&k1, 2);
        size_t base = live(&k1);
        fail_in(&k1, step);
        qlib_status s = qlib_ctx_set_threads(ctx, 4);
        if (!failure_fired(&k1)) {
            ck_assert_int_eq(s, QLIB_OK);
            ck_assert_int_eq(qlib_ctx_threads(ctx), 4);
            reached_ok = 1;
        } else {
            ck_assert_int_eq(s, QLIB_ERR_NOMEM);
            ck_assert_int_eq(qlib_ctx_threads(ctx), 2);
            ck_assert_uint_eq(live(&k1), base);
        }
        qlib_ctx_destroy(ctx);
        ck_assert_uint_eq(live(&k1), 0);
    }
    ck_assert(reached_ok);
}
END_TEST

/* Quantize of each kind, on 1 and 2 threads (the row buffers differ). */
START_TEST(test_fail_quantize)
{
    const size_t n = 40, k = 100;
    float *w = weights(n, k, 3);
    static const struct { qlib_method m; int bits, group, sym; } fmts[] = {
        { QLIB_METHOD_RTN, 4, 32, 0 }, { QLIB_METHOD_RTN, 3, -1, 1 },
        { QLIB_METHOD_NONE, 32, 0, 0 }, { QLIB_METHOD_NONE, 16, 0, 0 },
    };
    for (int threads = 1; threads <= 2; threads++)
        for (size_t f = 0; f < COUNT(fmts); f++) {
            qlib_config *cfg = config(fmts[f].m, fmts[f].bits, fmts[f].group, fmts[f].sym);
            checked k1;
            qlib_ctx *ctx = checked_ctx(&k1, threads);
            size_t base = live(&k1);
            int reached_ok = 0;
            for (long step = 1; step <= MAX_STEPS && !reached_ok; step++) {
                fail_in(&k1, step);
                qlib_tensor *t = (qlib_tensor *)&t;
                qlib_status s = qlib_quantize(ctx, w, n, k, k, cfg, NULL, &t);
                if (!failure_fired(&k1)) {
                    ck_assert_int_eq(s, QLIB_OK);
                    reached_ok = 1;
                    qlib_tensor_destroy(t);
                } else {
                    ck_assert_msg(s == QLIB_ERR_NOMEM, "step %ld: %d %s", step, (int)s,
                                  qlib_last_error());
                    ck_assert_ptr_null(t);
                    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_quantize"));
                }
                ck_assert_uint_eq(live(&k1), base);
                k1.c.fail_at = 0;
            }
            ck_assert(reached_ok);
            qlib_ctx_destroy(ctx);
            ck_assert_uint_eq(live(&k1), 0);
            qlib_config_destroy(cfg);
        }
    free(w);
}
END_TEST

/* Deserialize (copy and borrow), load and save. */
START_TEST(test_fail_deserialize_load_save)
{
    const size_t n = 9, k = 80;
    float *w = weights(n, k, 4);
    char *path = temp_path("t.qlib");
    checked k1;
    qlib_ctx *ctx = checked_ctx(&k1, 1);
    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, 4, 64, 0, NULL);
    ck_assert_int_eq(qlib_tensor_save(t, path), QLIB_OK);
    size_t size;
    ck_assert_int_eq(qlib_tensor_serialized_size(t, &size), QLIB_OK);
    void *blob = aligned_alloc(64, (size + 63) / 64 * 64);
    ck_assert_ptr_nonnull(blob);
    ck_assert_int_eq(qlib_tensor_serialize(t, blob, size, NULL), QLIB_OK);
    size_t base = live(&k1);

    for (int op = 0; op < 3; op++) {
        int reached_ok = 0;
        for (long step = 1; step <= MAX_STEPS && !reached_ok; step++) {
            fail_in(&k1, step);
            qlib_tensor *u = (qlib_tensor *)&u;
            qlib_status s = op == 0 ? qlib_tensor_deserialize(ctx, blob, size, 0, &u)
                          : op == 1 ? qlib_tensor_deserialize(ctx, blob, size, QLIB_LOAD_BORROW, &u)
                                    : qlib_tensor_load(ctx, path, &u);
            if (!failure_fired(&k1)) {
                ck_assert_int_eq(s, QLIB_OK);
                reached_ok = 1;
                qlib_tensor_destroy(u);
            } else {
                ck_assert_msg(s == QLIB_ERR_NOMEM, "op %d step %ld: %d", op, step, (int)s);
                ck_assert_ptr_null(u);
            }
            ck_assert_uint_eq(live(&k1), base);
            k1.c.fail_at = 0;
        }
        ck_assert(reached_ok);
    }

    /* save allocates through the tensor's allocator too */
    int reached_ok = 0;
    for (long step = 1; step <= MAX_STEPS && !reached_ok; step++) {
        ck_assert_int_eq(unlink(path), 0);
        fail_in(&k1, step);
        qlib_status s = qlib_tensor_save(t, path);
        if (!failure_fired(&k1)) {
            ck_assert_int_eq(s, QLIB_OK);
            reached_ok = 1;
        } else {
            ck_assert_int_eq(s, QLIB_ERR_NOMEM);
            ck_assert_int_eq(access(path, F_OK), -1);     /* nothing half-written */
            ck_assert_int_eq(qlib_tensor_save(t, path), QLIB_OK);
        }
        ck_assert_uint_eq(live(&k1), base);
        k1.c.fail_at = 0;
    }
    ck_assert(reached_ok);

    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    ck_assert_uint_eq(live(&k1), 0);
    remove_temp(path);
    free(w);
}
END_TEST

START_TEST(test_fail_calib)
{
    static const unsigned whats[] = { QLIB_CALIB_ALL, QLIB_CALIB_HESSIAN, QLIB_CALIB_ACT_STATS,
                                      QLIB_CALIB_SAMPLES, QLIB_CALIB_HESSIAN | QLIB_CALIB_SAMPLES };
    for (size_t i = 0; i < COUNT(whats); i++) {
        checked k1;
        qlib_ctx *ctx = checked_ctx(&k1, 1);
        size_t base = live(&k1);
        int reached_ok = 0;
        for (long step = 1; step <= MAX_STEPS && !reached_ok; step++) {
            fail_in(&k1, step);
            qlib_calib *c = (qlib_calib *)&c;
            qlib_status s = qlib_calib_create(ctx, 48, whats[i], 16, &c);
            if (!failure_fired(&k1)) {
                ck_assert_int_eq(s, QLIB_OK);
                reached_ok = 1;
                qlib_calib_destroy(c);
            } else {
                ck_assert_int_eq(s, QLIB_ERR_NOMEM);
                ck_assert_ptr_null(c);
                ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_calib_create"));
            }
            ck_assert_uint_eq(live(&k1), base);
            k1.c.fail_at = 0;
        }
        ck_assert(reached_ok);
        qlib_ctx_destroy(ctx);
        ck_assert_uint_eq(live(&k1), 0);
    }
}
END_TEST

/* The first matmul of a context allocates its scratch; failing it is
 * ERR_NOMEM and the next call succeeds. Quantized (both modes) and float. */
START_TEST(test_fail_matmul_scratch)
{
    const size_t n = 70, k = 130, m = 6;
    float *w = weights(n, k, 5), *x = weights(m, k, 6), *y = tu_alloc_floats(m * n);
    static const struct { qlib_method m; int bits; qlib_compute mode; } cases[] = {
        { QLIB_METHOD_RTN, 4, QLIB_COMPUTE_AUTO }, { QLIB_METHOD_RTN, 2, QLIB_COMPUTE_F32 },
        { QLIB_METHOD_NONE, 16, QLIB_COMPUTE_AUTO },
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        int reached_ok = 0;
        for (long step = 1; step <= MAX_STEPS && !reached_ok; step++) {
            checked k1;
            qlib_ctx *ctx = checked_ctx(&k1, 2);
            ck_assert_int_eq(qlib_ctx_set_compute(ctx, cases[i].mode), QLIB_OK);
            qlib_tensor *t = tu_quantize(ctx, w, n, k, k, cases[i].m, cases[i].bits, 32, 0, NULL);
            size_t base = live(&k1);
            fail_in(&k1, step);
            qlib_status s = qlib_matmul(ctx, t, x, m, k, y, n);
            if (!failure_fired(&k1)) {
                ck_assert_int_eq(s, QLIB_OK);
                reached_ok = 1;
            } else {
                ck_assert_int_eq(s, QLIB_ERR_NOMEM);
                ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_matmul"));
                ck_assert_uint_eq(live(&k1), base);
                ck_assert_int_eq(qlib_matmul(ctx, t, x, m, k, y, n), QLIB_OK);
            }
            qlib_tensor_destroy(t);
            qlib_ctx_destroy(ctx);
            ck_assert_uint_eq(live(&k1), 0);
            ck_assert_int_eq(k1.bad_request, 0);
        }
        ck_assert(reached_ok);
    }
    free(w); free(x); free(y);
}
END_TEST

Suite *suite_alloc(void)
{
    Suite *s = suite_create("alloc");
    TCase *tc = tu_tcase("alloc");
    tcase_add_test(tc, test_pairs_balance);
    tcase_add_test(tc, test_allocator_table_checks);
    tcase_add_test(tc, test_fail_ctx);
    tcase_add_test(tc, test_fail_quantize);
    tcase_add_test(tc, test_fail_deserialize_load_save);
    tcase_add_test(tc, test_fail_calib);
    tcase_add_test(tc, test_fail_matmul_scratch);
    suite_add_tcase(s, tc);
    return s;
}
