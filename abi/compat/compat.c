/* A program written and compiled against an earlier release's header (the
 * copy abi/compat/qlib-<version>.h, chosen with -DQLIB_HEADER) that must run,
 * unchanged, against the library built now (abi/compat.sh). It uses what a
 * caller of that release relied on: the pinned enum values, the two callback
 * tables with their struct_size, and every kind of call, and checks results
 * with tolerances from the arithmetic. Exit status 0 when all hold. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include QLIB_HEADER

#define N 24
#define K 96
#define M 3

static int failures;

#define CHECK(cond) \
    do { if (!(cond)) { fprintf(stderr, "compat.c:%d: %s (%s)\n", __LINE__, #cond, \
                                qlib_last_error()); failures++; } } while (0)

/* ---- the caller's allocator and thread pool, laid out as this header says ---- */
typedef struct counts { long allocs, frees; } counts;

static void *my_alloc(void *user, size_t size, size_t alignment)
{
    void *p = NULL;
    ((counts *)user)->allocs++;
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static void my_free(void *user, void *p)
{
    ((counts *)user)->frees++;
    free(p);
}

static long runs;

/* Runs the tasks backwards on the calling thread: any order must do. */
static void my_run(void *user, void (*task)(void *arg, size_t i), void *arg, size_t n_tasks)
{
    size_t i;
    (void)user;
    runs++;
    for (i = n_tasks; i-- > 0;) task(arg, i);
}

/* ---- data ---- */
static float w[N * K], x[M * K], y[M * N], wq[N * K];

static void fill(float *v, size_t n, unsigned seed, float scale)
{
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        v[i] = scale * ((float)(seed >> 8) / 8388608.0f - 1.0f);
    }
}

/* |y - x.Wq^T| within fp32 accumulation plus int8 activations (AUTO). */
static void check_product(const float *wd)
{
    size_t i, r, c;
    for (i = 0; i < M; i++) {
        double amax = 0.0;
        for (c = 0; c < K; c++) amax = fmax(amax, fabs(x[i * K + c]));
        for (r = 0; r < N; r++) {
            double ref = 0.0, mag = 0.0, wsum = 0.0;
            for (c = 0; c < K; c++) {
                ref += (double)x[i * K + c] * wd[r * K + c];
                mag += fabs((double)x[i * K + c] * wd[r * K + c]);
                wsum += fabs(wd[r * K + c]);
            }
            CHECK(fabs(y[i * N + r] - ref) <= 2.0 * (K + 16) * 6e-8 * mag + amax / 254.0 * wsum * 1.01);
        }
    }
}

static void check_enums(void)
{
    CHECK(QLIB_OK == 0 && QLIB_ERR_ARG == 1 && QLIB_ERR_SHAPE == 2 && QLIB_ERR_NOMEM == 3);
    CHECK(QLIB_ERR_UNSUPPORTED == 4 && QLIB_ERR_NUMERIC == 5 && QLIB_ERR_STATE == 6);
    CHECK(QLIB_ERR_IO == 7 && QLIB_ERR_FORMAT == 8);
    CHECK(strncmp(qlib_status_string(QLIB_ERR_FORMAT), "QLIB_ERR_FORMAT", 15) == 0);
    CHECK(strncmp(qlib_status_string(QLIB_ERR_SHAPE), "QLIB_ERR_SHAPE", 14) == 0);
    CHECK(qlib_status_string((qlib_status)200) != NULL);
    CHECK(qlib_version_number() / 10000 == QLIB_VERSION_MAJOR);
    CHECK(qlib_version_number() >= QLIB_VERSION_NUMBER);
    CHECK(qlib_version_string() != NULL);
}

static void check_config(void)
{
    qlib_config *cfg = NULL;
    int v = 0;
    float f = 0.0f;
    CHECK(qlib_config_create((qlib_method)77, &cfg) == QLIB_ERR_ARG && cfg == NULL);
    CHECK(qlib_config_create(QLIB_METHOD_GPTQ, &cfg) == QLIB_OK);
    CHECK(qlib_config_get_int(cfg, QLIB_PARAM_GPTQ_BLOCK_SIZE, &v) == QLIB_OK && v == 128);
    CHECK(qlib_config_get_float(cfg, QLIB_PARAM_GPTQ_DAMP, &f) == QLIB_OK && f == 0.01f);
    CHECK(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER, 1) == QLIB_OK);
    CHECK(qlib_config_set_int(cfg, QLIB_PARAM_BITS, 5) == QLIB_ERR_ARG);
    CHECK(qlib_config_set_int(cfg, (qlib_param)999, 1) == QLIB_ERR_UNSUPPORTED);
    CHECK(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, 1.0f) == QLIB_ERR_UNSUPPORTED);
    CHECK(qlib_config_method(cfg) == QLIB_METHOD_GPTQ);
    qlib_config_destroy(cfg);
    qlib_config_destroy(NULL);
}

static void check_calib(qlib_ctx *ctx)
{
    qlib_calib *cal = NULL;
    float xc[16 * K], mean[K], h[K * K];
    fill(xc, 16 * K, 3, 1.0f);
    CHECK(qlib_calib_create(ctx, K, 8, 4, &cal) == QLIB_ERR_ARG && cal == NULL);
    CHECK(qlib_calib_create(ctx, K, QLIB_CALIB_ALL, 8, &cal) == QLIB_OK);
    CHECK(qlib_calib_add(cal, xc, 16, K) == QLIB_OK);
    CHECK(qlib_calib_tokens(cal) == 16 && qlib_calib_k(cal) == K);
    CHECK(qlib_calib_act_stats(cal, mean, NULL) == QLIB_OK && mean[0] > 0.0f);
    CHECK(qlib_calib_hessian(cal, h, K) == QLIB_OK && h[0] > 0.0f);
    qlib_calib_destroy(cal);
}

/* RTN INT4 through every call a 0.1.0 caller makes. */
static void check_tensor(qlib_ctx *ctx, const char *dir)
{
    qlib_config *cfg = NULL;
    qlib_tensor *t = NULL, *u = NULL, *v = NULL;
    size_t bytes = 0, written = 0;
    void *blob = NULL;
    char path[4096];
    CHECK(qlib_config_create(QLIB_METHOD_RTN, &cfg) == QLIB_OK);
    CHECK(qlib_config_set_int(cfg, QLIB_PARAM_BITS, 4) == QLIB_OK);
    CHECK(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 32) == QLIB_OK);
    CHECK(qlib_quantize(ctx, w, N, K, K, cfg, NULL, &t) == QLIB_OK);
    qlib_config_destroy(cfg);
    if (!t) return;
    CHECK(qlib_tensor_rows(t) == N && qlib_tensor_cols(t) == K);
    CHECK(qlib_tensor_method(t) == QLIB_METHOD_RTN && qlib_tensor_bits(t) == 4);
    CHECK(qlib_tensor_group_size(t) == 32 && qlib_tensor_symmetric(t) == 0);
    CHECK(qlib_tensor_bits_per_weight(t) > 4.0 && qlib_tensor_bits_per_weight(t) < 6.0);
    CHECK(qlib_tensor_quant_error(t) > 0.0 && qlib_tensor_quant_error(t) < 0.05);
    CHECK(qlib_tensor_input_scales(t) == NULL && qlib_tensor_permutation(t) == NULL);
    CHECK(qlib_tensor_outlier_threshold(t) == 0.0f);
    CHECK(qlib_dequantize(ctx, t, wq, K) == QLIB_OK);
    CHECK(qlib_matmul(ctx, t, x, M, K, y, N) == QLIB_OK);
    check_product(wq);
    CHECK(qlib_matmul(ctx, t, x, M, K - 1, y, N) == QLIB_ERR_SHAPE);

    CHECK(qlib_tensor_serialized_size(t, &bytes) == QLIB_OK && bytes > 0);
    CHECK(posix_memalign(&blob, 64, bytes) == 0);
    CHECK(qlib_tensor_serialize(t, blob, bytes, &written) == QLIB_OK && written == bytes);
    CHECK(qlib_tensor_deserialize(ctx, blob, bytes, QLIB_LOAD_BORROW, &u) == QLIB_OK);
    CHECK(qlib_tensor_deserialize(ctx, blob, bytes, 2, &v) == QLIB_ERR_ARG && v == NULL);
    ((unsigned char *)blob)[bytes - 1] ^= 1u;
    CHECK(qlib_tensor_deserialize(ctx, blob, bytes, 0, &v) == QLIB_ERR_FORMAT && v == NULL);
    ((unsigned char *)blob)[bytes - 1] ^= 1u;
    snprintf(path, sizeof path, "%s/compat-%ld.qlib", dir, (long)getpid());
    CHECK(qlib_tensor_save(t, path) == QLIB_OK);
    CHECK(qlib_tensor_load(ctx, path, &v) == QLIB_OK);
    CHECK(v && qlib_tensor_quant_error(v) == qlib_tensor_quant_error(t));
    unlink(path);
    qlib_tensor_destroy(v);
    qlib_tensor_destroy(u);
    qlib_tensor_destroy(t);
    qlib_tensor_destroy(NULL);
    free(blob);
}

int main(void)
{
    counts c = { 0, 0 };
    qlib_allocator a = QLIB_ALLOCATOR_INIT;
    qlib_parallel par = QLIB_PARALLEL_INIT;
    qlib_ctx *ctx = NULL;
    const char *dir = getenv("TMPDIR");
    fill(w, N * K, 1, 0.05f);
    fill(x, M * K, 2, 1.0f);
    check_enums();
    check_config();
    a.alloc = my_alloc;
    a.free = my_free;
    a.user = &c;
    par.run = my_run;
    CHECK(qlib_ctx_create_with_allocator(&a, &ctx) == QLIB_OK);
    if (!ctx) return 1;
    CHECK(qlib_ctx_set_threads(ctx, 4) == QLIB_OK);
    CHECK(qlib_ctx_set_parallel(ctx, &par) == QLIB_OK);
    CHECK(qlib_ctx_set_isa(ctx, "no-such-isa") == QLIB_ERR_UNSUPPORTED);
    CHECK(qlib_ctx_set_compute(ctx, QLIB_COMPUTE_AUTO) == QLIB_OK);
    CHECK(qlib_ctx_compute(ctx) == QLIB_COMPUTE_AUTO);
    CHECK(qlib_ctx_isa(ctx)[0] != '\0' && qlib_ctx_threads(ctx) == 4);
    check_calib(ctx);
    check_tensor(ctx, dir && *dir ? dir : "/tmp");
    CHECK(runs > 0);
    qlib_ctx_destroy(ctx);
    qlib_ctx_destroy(NULL);
    CHECK(c.allocs > 0 && c.allocs == c.frees);
    if (failures) {
        fprintf(stderr, "compat: %d checks failed\n", failures);
        return 1;
    }
    printf("compat: a program built against %s runs against libqlib %s\n", QLIB_VERSION_STRING,
           qlib_version_string());
    return 0;
}
