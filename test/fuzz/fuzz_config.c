/* The config setters and getters with arbitrary methods, parameters and
 * values, in arbitrary order, and qlib_quantize with whatever config results.
 *
 * Input: a sequence of 6-byte operations [op, a, b0, b1, b2, b3]:
 *   op % 6 == 0  create a config for method (b0 % 8) - 1 (replaces the current one)
 *             1  set_int   (param from a, value from b)
 *             2  set_float (param from a, value from b)
 *             3  get every parameter, as int and as float
 *             4  quantize an 8 x 96 layer scaled by 2^e (e from b0) with the config,
 *                then its rows 0-2 and 3-7 with qlib_quantize_shared
 *             5  destroy the config (later calls get NULL)
 * A failed set must leave the value unchanged; a successful one must read
 * back exactly; every tensor quantize makes must match its config, survive a
 * serialize/deserialize round trip and multiply like its dequantized form;
 * shared tensors are all made or none, and equal separate calls' (GPTQ, RTN,
 * ...) or share one set of input scales (AWQ). */
#include <limits.h>

#include "fuzz.h"

#define N 8
#define K 96
#define LDW (K + 5)

static const qlib_param params[] = {
    QLIB_PARAM_BITS, QLIB_PARAM_GROUP_SIZE, QLIB_PARAM_SYMMETRIC, QLIB_PARAM_GPTQ_DAMP,
    QLIB_PARAM_GPTQ_BLOCK_SIZE, QLIB_PARAM_GPTQ_ACT_ORDER, QLIB_PARAM_GPTQ_STATIC_GROUPS,
    QLIB_PARAM_AWQ_GRID, QLIB_PARAM_AWQ_CLIP, QLIB_PARAM_AWQ_MAX_SHRINK,
    QLIB_PARAM_OUTLIER_THRESHOLD, QLIB_PARAM_CLIP_GRID, QLIB_PARAM_AWQ_ROUNDING,
    QLIB_PARAM_AWQ_SCALES
};
#define N_PARAMS (sizeof params / sizeof params[0])

static const int ints[] = {
    -2, -1, 0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20, 31, 32, 33, 64, 96, 100, 128, 256, 1000,
    1001, 4096, 4097, 1 << 24, (1 << 24) + 32, INT_MAX, INT_MIN
};
static const float floats[] = {
    0.0f, -0.0f, 1e-45f, 0.01f, 0.5f, 0.95f, 0.9500001f, 1.0f, 1.0000001f, 6.0f, -1.0f, 1e30f,
    FLT_MAX, INFINITY, -INFINITY, NAN
};

static qlib_ctx *ctx;
static qlib_calib *calib;
static float w0[N * K];

static float lcg_unit(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((int32_t)*s >> 8) / 8388608.0f;
}

/* A layer with heavy-ish tails and one dead row; calibration with outlier channels. */
static void setup(void)
{
    if (ctx) return;
    uint32_t s = 7;
    ctx = fz_ctx(1, NULL);
    for (size_t i = 0; i < N * K; i++) {
        float u = lcg_unit(&s);
        w0[i] = i / K == 5 ? 0.0f : 0.02f * u / (1.05f - fabsf(u));
    }
    float *x = fz_malloc(64 * K * sizeof(float));
    for (size_t i = 0; i < 64 * K; i++) x[i] = lcg_unit(&s) * (i % K % 29 == 3 ? 40.0f : 1.0f);
    FZ_CHECK(qlib_calib_create(ctx, K, QLIB_CALIB_ALL, 32, &calib) == QLIB_OK);
    FZ_CHECK(qlib_calib_add(calib, x, 64, K) == QLIB_OK);
    free(x);
}

static qlib_param pick_param(uint8_t a)
{
    return a < 176 ? params[a % N_PARAMS] : (qlib_param)((int)a - 200);
}

static int pick_int(const uint8_t *b)
{
    if (b[0] & 1) return (int)fz_get32(b);
    return ints[b[1] % (sizeof ints / sizeof ints[0])];
}

static float pick_float(const uint8_t *b)
{
    float v;
    if (!(b[0] & 1)) return floats[b[1] % (sizeof floats / sizeof floats[0])];
    memcpy(&v, b, 4);
    return v;
}

static int is_status(qlib_status s) { return (unsigned)s <= QLIB_ERR_FORMAT; }

static int same_blobs(const qlib_tensor *a, const qlib_tensor *b)
{
    size_t na = 0, nb = 0;
    FZ_CHECK(qlib_tensor_serialized_size(a, &na) == QLIB_OK);
    FZ_CHECK(qlib_tensor_serialized_size(b, &nb) == QLIB_OK);
    if (na != nb) return 0;
    uint8_t *ba = fz_malloc(na), *bb = fz_malloc(nb);
    FZ_CHECK(qlib_tensor_serialize(a, ba, na, NULL) == QLIB_OK);
    FZ_CHECK(qlib_tensor_serialize(b, bb, nb, NULL) == QLIB_OK);
    int same = memcmp(ba, bb, na) == 0;
    free(ba);
    free(bb);
    return same;
}

/* The message of the failure just returned names the function. */
static int failed_in(qlib_status s, const char *fn)
{
    return s != QLIB_OK && strncmp(qlib_last_error(), fn, strlen(fn)) == 0;
}

static void op_create(qlib_config **cfg, const uint8_t *b)
{
    qlib_method m = (qlib_method)((int)(b[0] % 8) - 1);
    qlib_config_destroy(*cfg);
    *cfg = (qlib_config *)&ctx;                        /* must be overwritten */
    qlib_status s = qlib_config_create(m, cfg);
    if (qlib_method_lookup(m)) {
        FZ_CHECK(s == QLIB_OK && *cfg != NULL && qlib_config_method(*cfg) == m);
    } else {
        FZ_CHECK(s == QLIB_ERR_ARG && *cfg == NULL && failed_in(s, "qlib_config_create"));
    }
}

static void op_set_int(qlib_config *cfg, qlib_param p, int v)
{
    int before = INT_MIN + 7, after = INT_MIN + 7;
    qlib_status g0 = qlib_config_get_int(cfg, p, &before);
    qlib_status s = qlib_config_set_int(cfg, p, v);
    int named = failed_in(s, "qlib_config_set_int");
    qlib_status g1 = qlib_config_get_int(cfg, p, &after);
    FZ_CHECK(is_status(s) && g0 == g1);
    if (!cfg) FZ_CHECK(s == QLIB_ERR_ARG);
    if (s == QLIB_OK) {
        FZ_CHECK(g1 == QLIB_OK && after == v);
    } else {
        FZ_CHECK(s == QLIB_ERR_ARG || s == QLIB_ERR_UNSUPPORTED);
        FZ_CHECK(named);
        FZ_CHECK(after == before);
    }
}

static void op_set_float(qlib_config *cfg, qlib_param p, float v)
{
    float before = -123.0f, after = -123.0f;
    qlib_status g0 = qlib_config_get_float(cfg, p, &before);
    qlib_status s = qlib_config_set_float(cfg, p, v);
    int named = failed_in(s, "qlib_config_set_float");
    qlib_status g1 = qlib_config_get_float(cfg, p, &after);
    FZ_CHECK(is_status(s) && g0 == g1);
    if (!cfg) FZ_CHECK(s == QLIB_ERR_ARG);
    if (s == QLIB_OK) {
        FZ_CHECK(g1 == QLIB_OK && memcmp(&after, &v, 4) == 0);
    } else {
        FZ_CHECK(s == QLIB_ERR_ARG || s == QLIB_ERR_UNSUPPORTED);
        FZ_CHECK(named);
        FZ_CHECK(memcmp(&after, &before, 4) == 0);
    }
}

/* A parameter is read as exactly one of int or float, or not at all. */
static void op_get_all(const qlib_config *cfg)
{
    for (size_t i = 0; i < N_PARAMS; i++) {
        int iv;
        float fv;
        qlib_status a = qlib_config_get_int(cfg, params[i], &iv);
        qlib_status b = qlib_config_get_float(cfg, params[i], &fv);
        FZ_CHECK(is_status(a) && is_status(b));
        FZ_CHECK(!(a == QLIB_OK && b == QLIB_OK));
        if (!cfg) FZ_CHECK(a == QLIB_ERR_ARG && b == QLIB_ERR_ARG);
        if (cfg && params[i] == QLIB_PARAM_BITS) FZ_CHECK(a == QLIB_OK);
    }
    FZ_CHECK(qlib_config_get_int(cfg, QLIB_PARAM_BITS, NULL) != QLIB_OK);
}

/* The tensor quantize made must load back from its own bytes. */
static void check_round_trip(const qlib_tensor *t)
{
    size_t bytes = 0;
    qlib_tensor *u = NULL;
    FZ_CHECK(qlib_tensor_serialized_size(t, &bytes) == QLIB_OK);
    uint8_t *blob = fz_malloc(bytes);
    FZ_CHECK(qlib_tensor_serialize(t, blob, bytes, NULL) == QLIB_OK);
    FZ_CHECK(qlib_tensor_deserialize(ctx, blob, bytes, QLIB_LOAD_BORROW, &u) == QLIB_OK);
    fz_check_queries(u, blob, bytes);
    qlib_tensor_destroy(u);
    free(blob);
}

static void check_matches_config(const qlib_tensor *t, const qlib_config *cfg)
{
    int v;
    float f;
    qlib_method m = qlib_config_method(cfg);
    FZ_CHECK(qlib_tensor_method(t) == m);
    FZ_CHECK(qlib_tensor_rows(t) == N && qlib_tensor_cols(t) == K);
    FZ_CHECK(qlib_config_get_int(cfg, QLIB_PARAM_BITS, &v) == QLIB_OK && qlib_tensor_bits(t) == v);
    if (qlib_config_get_int(cfg, QLIB_PARAM_GROUP_SIZE, &v) == QLIB_OK)
        FZ_CHECK(qlib_tensor_group_size(t) == v);
    if (qlib_config_get_int(cfg, QLIB_PARAM_SYMMETRIC, &v) == QLIB_OK)
        FZ_CHECK(qlib_tensor_symmetric(t) == v);
    if (m == QLIB_METHOD_LLM_INT8) {
        FZ_CHECK(qlib_config_get_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, &f) == QLIB_OK);
        FZ_CHECK(qlib_tensor_outlier_threshold(t) == f);
    }
}

/* Without a Hessian the reported error is ||W - W^||^2 / ||W||^2. */
static void check_plain_error(const qlib_tensor *t, const float *w)
{
    float *wq = fz_malloc(N * K * sizeof(float));
    double num = 0.0, den = 0.0;
    FZ_CHECK(qlib_dequantize(ctx, t, wq, K) == QLIB_OK);
    for (size_t r = 0; r < N; r++)
        for (size_t c = 0; c < K; c++) {
            double d = (double)w[r * LDW + c] - wq[r * K + c];
            num += d * d;
            den += (double)w[r * LDW + c] * w[r * LDW + c];
        }
    double want = den > 0.0 ? num / den : 0.0, got = qlib_tensor_quant_error(t);
    FZ_CHECK(fabs(got - want) <= 1e-6 * want + 1e-300);
    free(wq);
}

/* Rows 0-2 and 3-7 of w through qlib_quantize_shared: all made or none; AWQ
 * gives both one set of input scales, the other methods the tensors of
 * separate calls, or the status of the first that fails. */
static void shared_parts(const qlib_config *cfg, const float *w)
{
    const float *ws[2] = { w, w + 3 * LDW };
    const size_t ns[2] = { 3, N - 3 }, lds[2] = { LDW, LDW };
    qlib_tensor *out[2] = { (qlib_tensor *)&ctx, (qlib_tensor *)&ctx };
    qlib_status s = qlib_quantize_shared(ctx, 2, ws, ns, K, lds, cfg, calib, out);
    FZ_CHECK(is_status(s) || s == QLIB_ERR_CANCELLED);
    if (s != QLIB_OK) {
        FZ_CHECK(out[0] == NULL && out[1] == NULL && failed_in(s, "qlib_quantize"));
        FZ_CHECK(s == QLIB_ERR_NUMERIC || s == QLIB_ERR_UNSUPPORTED);
    } else {
        FZ_CHECK(out[0] != NULL && out[1] != NULL);
        FZ_CHECK(qlib_tensor_rows(out[0]) == 3 && qlib_tensor_rows(out[1]) == N - 3);
    }
    if (qlib_config_method(cfg) == QLIB_METHOD_AWQ) {
        if (s == QLIB_OK)
            FZ_CHECK(memcmp(qlib_tensor_input_scales(out[0]), qlib_tensor_input_scales(out[1]),
                            K * sizeof(float)) == 0);
    } else {
        qlib_status first = QLIB_OK;
        for (int i = 0; i < 2; i++) {
            qlib_tensor *t = NULL;
            qlib_status si = qlib_quantize(ctx, ws[i], ns[i], K, LDW, cfg, calib, &t);
            if (first == QLIB_OK) first = si;
            if (s == QLIB_OK) FZ_CHECK(si == QLIB_OK && same_blobs(t, out[i]));
            qlib_tensor_destroy(t);
        }
        FZ_CHECK(s == first);
    }
    qlib_tensor_destroy(out[0]);
    qlib_tensor_destroy(out[1]);
}

static void op_quantize(const qlib_config *cfg, const uint8_t *b)
{
    float *w = fz_malloc(N * LDW * sizeof(float));
    int e = (int)(b[0] % 181) - 140;
    for (size_t r = 0; r < N; r++)
        for (size_t c = 0; c < LDW; c++) w[r * LDW + c] = c < K ? ldexpf(w0[r * K + c], e) : NAN;
    qlib_tensor *t = (qlib_tensor *)&ctx;
    qlib_status s = qlib_quantize(ctx, w, N, K, LDW, cfg, calib, &t);
    qlib_method m = qlib_config_method(cfg);
    if (!cfg) {
        FZ_CHECK(s == QLIB_ERR_ARG && t == NULL);
    } else if (s != QLIB_OK) {
        FZ_CHECK(t == NULL && failed_in(s, "qlib_quantize"));
        if (m == QLIB_METHOD_NONE || m == QLIB_METHOD_RTN)
            FZ_CHECK(s == QLIB_ERR_NUMERIC);           /* a scale or weight beyond fp16 */
        else
            FZ_CHECK(s == QLIB_ERR_NUMERIC || s == QLIB_ERR_UNSUPPORTED);
    } else {
        check_matches_config(t, cfg);
        check_round_trip(t);
        if (m == QLIB_METHOD_NONE || m == QLIB_METHOD_RTN || m == QLIB_METHOD_LLM_INT8)
            check_plain_error(t, w);
        fz_check_compute(ctx, t, 3, b[1]);
    }
    if (cfg) shared_parts(cfg, w);
    qlib_tensor_destroy(t);
    free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    qlib_config *cfg = NULL;
    FZ_CHECK(qlib_config_create(QLIB_METHOD_RTN, &cfg) == QLIB_OK);
    for (size_t at = 0; at + 6 <= size; at += 6) {
        const uint8_t *op = data + at, *b = op + 2;
        switch (op[0] % 6) {
        case 0: op_create(&cfg, b); break;
        case 1: op_set_int(cfg, pick_param(op[1]), pick_int(b)); break;
        case 2: op_set_float(cfg, pick_param(op[1]), pick_float(b)); break;
        case 3: op_get_all(cfg); break;
        case 4: op_quantize(cfg, b); break;
        default:
            qlib_config_destroy(cfg);
            cfg = NULL;
            break;
        }
    }
    qlib_config_destroy(cfg);
    return 0;
}
