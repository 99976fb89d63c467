/* qlib demo: quantize one deterministic LLM-like layer with every method and
 * print what each costs and what it buys.
 *
 * The layer is 4096 x 4096 (--size to change): heavy-tailed weights (Student
 * t, 4 degrees of freedom), and activations of low effective rank with a few
 * large outlier channels, as the inputs of real transformer layers have.
 * GPTQ and AWQ calibrate on one set of tokens; errors are measured on other,
 * held-out tokens of the same distribution. Timings use one thread for qlib
 * and for OpenBLAS, medians of repeated runs. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qlib.h"

void openblas_set_num_threads(int n);

typedef struct layer {
    size_t n, k, n_calib, n_test;
    float *w, *calib, *test, *y_ref;
} layer;

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static double uniform(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}
static double normal(void)
{
    double u = uniform();
    return sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(6.283185307179586 * uniform());
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *floats(size_t n)
{
    float *p = malloc(n * sizeof(float));
    if (!p) {
        fprintf(stderr, "demo: out of memory\n");
        exit(1);
    }
    return p;
}

/* x = (z * basis) . channel scales + noise, z ~ N(0, 1/(t+1)) of rank r. */
static void activations(float *x, size_t m, size_t k, const float *basis, size_t r,
                        const float *chan)
{
    float *z = floats(m * r);
    for (size_t i = 0; i < m; i++)
        for (size_t t = 0; t < r; t++) z[i * r + t] = (float)(normal() / sqrt((double)(t + 1)));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)r,
                1.0f / sqrtf((float)r), z, (int)r, basis, (int)k, 0.0f, x, (int)k);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < k; j++)
            x[i * k + j] = (x[i * k + j] + 0.05f * (float)normal()) * chan[j];
    free(z);
}

static void make_layer(layer *L, size_t n, size_t k)
{
    L->n = n;
    L->k = k;
    L->n_calib = 2048;
    L->n_test = 128;
    L->w = floats(n * k);
    for (size_t i = 0; i < n * k; i++) {
        double c = 0.0;
        for (int t = 0; t < 4; t++) { double g = normal(); c += g * g; }
        L->w[i] = (float)(0.02 * normal() / sqrt(c / 4.0 + 1e-12));
    }
    size_t r = k / 8;
    float *basis = floats(r * k), *chan = floats(k);
    for (size_t i = 0; i < r * k; i++) basis[i] = (float)normal();
    for (size_t j = 0; j < k; j++) chan[j] = j % 512 == 100 ? 40.0f : (float)(0.5 + uniform());
    L->calib = floats(L->n_calib * k);
    L->test = floats(L->n_test * k);
    activations(L->calib, L->n_calib, k, basis, r, chan);
    activations(L->test, L->n_test, k, basis, r, chan);
    L->y_ref = floats(L->n_test * n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)L->n_test, (int)n, (int)k, 1.0f,
                L->test, (int)k, L->w, (int)k, 0.0f, L->y_ref, (int)n);
    free(basis);
    free(chan);
}

typedef struct row {
    const char *label;
    qlib_method method;
    int bits, group, act_order;
} row;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define REPS 7

/* Median seconds of REPS runs of y = x W^T with M = m. */
static double time_qlib(qlib_ctx *ctx, const qlib_tensor *t, const float *x, size_t m, float *y)
{
    double ts[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        if (qlib_matmul(ctx, t, x, m, qlib_tensor_cols(t), y, qlib_tensor_rows(t)) != QLIB_OK)
            return NAN;
        ts[r] = now() - t0;
    }
    qsort(ts, REPS, sizeof ts[0], cmp_double);
    return ts[REPS / 2];
}

static double time_blas(const layer *L, size_t m, float *y)
{
    double ts[REPS];
    for (int r = 0; r < REPS; r++) {
        double t0 = now();
        if (m == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)L->n, (int)L->k, 1.0f, L->w, (int)L->k,
                        L->test, 1, 0.0f, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)L->n, (int)L->k,
                        1.0f, L->test, (int)L->k, L->w, (int)L->k, 0.0f, y, (int)L->n);
        ts[r] = now() - t0;
    }
    qsort(ts, REPS, sizeof ts[0], cmp_double);
    return ts[REPS / 2];
}

static qlib_status build_config(const row *rw, qlib_config **cfg)
{
    qlib_status s = qlib_config_create(rw->method, cfg);
    if (s == QLIB_OK) s = qlib_config_set_int(*cfg, QLIB_PARAM_BITS, rw->bits);
    if (s == QLIB_OK && rw->method != QLIB_METHOD_NONE && rw->method != QLIB_METHOD_LLM_INT8)
        s = qlib_config_set_int(*cfg, QLIB_PARAM_GROUP_SIZE, rw->group);
    if (s == QLIB_OK && rw->act_order) s = qlib_config_set_int(*cfg, QLIB_PARAM_GPTQ_ACT_ORDER, 1);
    return s;
}

static double weight_error(qlib_ctx *ctx, const layer *L, const qlib_tensor *t, float *tmp)
{
    if (qlib_dequantize(ctx, t, tmp, L->k) != QLIB_OK) return NAN;
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < L->n * L->k; i++) {
        double d = (double)tmp[i] - L->w[i];
        num += d * d;
        den += (double)L->w[i] * L->w[i];
    }
    return num / den;
}

static double output_error(qlib_ctx *ctx, const layer *L, const qlib_tensor *t, float *y)
{
    if (qlib_matmul(ctx, t, L->test, L->n_test, L->k, y, L->n) != QLIB_OK) return NAN;
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < L->n_test * L->n; i++) {
        double d = (double)y[i] - L->y_ref[i];
        num += d * d;
        den += (double)L->y_ref[i] * L->y_ref[i];
    }
    return num / den;
}

static void run_row(qlib_ctx *ctx, const layer *L, const row *rw, const qlib_calib *calib,
                    float *tmp, float *y, const double blas_t[2])
{
    qlib_config *cfg = NULL;
    qlib_tensor *t = NULL;
    char group[16];
    if (rw->method == QLIB_METHOD_NONE || rw->method == QLIB_METHOD_LLM_INT8 || rw->group == 0)
        snprintf(group, sizeof group, "row");
    else
        snprintf(group, sizeof group, "%d", rw->group);
    qlib_status s = build_config(rw, &cfg);
    double t0 = now();
    if (s == QLIB_OK) s = qlib_quantize(ctx, L->w, L->n, L->k, L->k, cfg, calib, &t);
    double tq = now() - t0;
    qlib_config_destroy(cfg);
    printf("%-18s %4d %5s ", rw->label, rw->bits, group);
    if (s != QLIB_OK) {
        printf("  n/a: %s\n", qlib_last_error());
        return;
    }
    size_t m128 = L->n_test < 128 ? L->n_test : 128;
    double t1 = time_qlib(ctx, t, L->test, 1, y), tm = time_qlib(ctx, t, L->test, m128, y);
    printf("%7.3f %8.2f %10.2e %10.2e %8.2f %7.2fx %7.2fx\n", qlib_tensor_bits_per_weight(t),
           (double)qlib_tensor_storage_bytes(t) / (1024.0 * 1024.0), weight_error(ctx, L, t, tmp),
           output_error(ctx, L, t, y), tq, blas_t[0] / t1, blas_t[1] / tm);
    qlib_tensor_destroy(t);
}

static const row rows[] = {
    { "fp32 (none)", QLIB_METHOD_NONE, 32, 0, 0 },
    { "fp16 (none)", QLIB_METHOD_NONE, 16, 0, 0 },
    { "RTN INT8", QLIB_METHOD_RTN, 8, 0, 0 },
    { "LLM.int8()", QLIB_METHOD_LLM_INT8, 8, 0, 0 },
    { "RTN INT4", QLIB_METHOD_RTN, 4, 128, 0 },
    { "RTN INT4", QLIB_METHOD_RTN, 4, 32, 0 },
    { "GPTQ INT4", QLIB_METHOD_GPTQ, 4, 128, 0 },
    { "GPTQ INT4 act-ord", QLIB_METHOD_GPTQ, 4, 128, 1 },
    { "AWQ INT4", QLIB_METHOD_AWQ, 4, 128, 0 },
    { "RTN INT3", QLIB_METHOD_RTN, 3, 128, 0 },
    { "GPTQ INT3", QLIB_METHOD_GPTQ, 3, 128, 0 },
    { "AWQ INT3", QLIB_METHOD_AWQ, 3, 128, 0 },
    { "RTN INT2", QLIB_METHOD_RTN, 2, 32, 0 },
    { "GPTQ INT2", QLIB_METHOD_GPTQ, 2, 32, 0 },
};

int main(int argc, char **argv)
{
    size_t size = 4096;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = (size_t)strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: %s [--size N]   (N a multiple of 64, default 4096)\n", argv[0]);
            return 2;
        }
    }
    if (size < 64 || size % 64) {
        fprintf(stderr, "demo: --size must be a positive multiple of 64\n");
        return 2;
    }
    openblas_set_num_threads(1);
    qlib_ctx *ctx = NULL;
    qlib_calib *calib = NULL;
    if (qlib_ctx_create(&ctx) != QLIB_OK || qlib_ctx_set_threads(ctx, 1) != QLIB_OK) {
        fprintf(stderr, "demo: %s\n", qlib_last_error());
        return 1;
    }
    layer L;
    make_layer(&L, size, size);
    if (qlib_calib_create(ctx, L.k, QLIB_CALIB_ALL, 512, &calib) != QLIB_OK ||
        qlib_calib_add(calib, L.calib, L.n_calib, L.k) != QLIB_OK) {
        fprintf(stderr, "demo: %s\n", qlib_last_error());
        return 1;
    }
    float *tmp = floats(L.n * L.k), *y = floats(L.n_test * L.n);
    double blas_t[2] = { time_blas(&L, 1, y), time_blas(&L, L.n_test < 128 ? L.n_test : 128, y) };
    printf("qlib %s demo: one %zu x %zu LLM-like layer, kernels \"%s\", 1 thread\n",
           qlib_version_string(), L.n, L.k, qlib_ctx_isa(ctx));
    printf("calibration: %zu tokens; errors on %zu held-out tokens; speed-up vs OpenBLAS fp32 "
           "sgemv (M=1) and sgemm (M=128), medians of %d runs\n\n", L.n_calib, L.n_test, REPS);
    printf("%-18s %4s %5s %7s %8s %10s %10s %8s %8s %8s\n", "method", "bits", "group", "bits/w",
           "size MiB", "weight err", "output err", "quant s", "M=1", "M=128");
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        run_row(ctx, &L, &rows[i], calib, tmp, y, blas_t);
    printf("\nweight err = |W - W^|^2 / |W|^2; output err = |X W^T - qlib_matmul(X)|^2 / "
           "|X W^T|^2 on held-out X (AUTO compute: int8 activations).\n");
    free(tmp);
    free(y);
    free(L.w);
    free(L.calib);
    free(L.test);
    free(L.y_ref);
    qlib_calib_destroy(calib);
    qlib_ctx_destroy(ctx);
    return 0;
}
