/* The shortest complete use of qlib: quantize a weight matrix to 4 bits in
 * groups of 128, multiply with it, save it, load it back.
 *
 *   cc quickstart.c $(pkg-config --cflags --libs qlib) -o quickstart */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "qlib.h"

#define N 256   /* output features */
#define K 512   /* input features */
#define M 4     /* tokens */

static int fail(const char *what)
{
    fprintf(stderr, "%s: %s\n", what, qlib_last_error());
    return 1;
}

int main(void)
{
    static float w[N * K], x[M * K], y[M * N];
    for (int i = 0; i < N * K; i++) w[i] = 0.02f * sinf(0.37f * (float)i);
    for (int i = 0; i < M * K; i++) x[i] = cosf(0.11f * (float)i);

    qlib_ctx *ctx = NULL;
    qlib_config *cfg = NULL;
    qlib_tensor *t = NULL, *back = NULL;
    if (qlib_ctx_create(&ctx) != QLIB_OK) return fail("qlib_ctx_create");
    if (qlib_config_create(QLIB_METHOD_RTN, &cfg) != QLIB_OK ||
        qlib_config_set_int(cfg, QLIB_PARAM_BITS, 4) != QLIB_OK ||
        qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 128) != QLIB_OK)
        return fail("qlib_config");
    if (qlib_quantize(ctx, w, N, K, K, cfg, NULL, &t) != QLIB_OK) return fail("qlib_quantize");
    if (qlib_matmul(ctx, t, x, M, K, y, N) != QLIB_OK) return fail("qlib_matmul");

    double err = 0.0, ref = 0.0;
    for (int i = 0; i < M; i++)
        for (int r = 0; r < N; r++) {
            double acc = 0.0;
            for (int j = 0; j < K; j++) acc += (double)x[i * K + j] * w[r * K + j];
            err += (acc - y[i * N + r]) * (acc - y[i * N + r]);
            ref += acc * acc;
        }
    printf("qlib %s, kernels %s: %zu x %zu at %.2f bits/weight, weight error %.2e, "
           "output error %.2e\n", qlib_version_string(), qlib_ctx_isa(ctx), qlib_tensor_rows(t),
           qlib_tensor_cols(t), qlib_tensor_bits_per_weight(t), qlib_tensor_quant_error(t),
           err / ref);

    if (qlib_tensor_save(t, "quickstart.qlib") != QLIB_OK) return fail("qlib_tensor_save");
    if (qlib_tensor_load(ctx, "quickstart.qlib", &back) != QLIB_OK) return fail("qlib_tensor_load");
    remove("quickstart.qlib");
    printf("saved and loaded: %zu bytes of codes, scales and zeros\n",
           qlib_tensor_storage_bytes(back));

    qlib_tensor_destroy(back);
    qlib_tensor_destroy(t);
    qlib_config_destroy(cfg);
    qlib_ctx_destroy(ctx);
    return err / ref < 0.05 ? 0 : 1;
}
