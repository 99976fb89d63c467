/* Writes the seed corpora of test/fuzz/corpus/ (run by `sh test/fuzz/run.sh
 * seeds`): valid tensors of every method, bit width and group kind, a few
 * corrupt ones, config and calibration scripts, and small llama2 checkpoints,
 * quantized models and tokenizers. GPTQ, AWQ and LLM.int8() blobs are laid out
 * here from RTN codes, so their seeds do not depend on those quantizers; the
 * external layouts' parts are exports of RTN tensors. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "llama.h"

static const char *root = "test/fuzz/corpus";
static qlib_ctx *ctx;
static unsigned serial;

static void out_file(const char *target, const char *name, const void *head, size_t head_len,
                     const void *body, size_t body_len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%03u-%s", root, target, serial++, name);
    FILE *f = fopen(path, "wb");
    if (!f || (head_len && fwrite(head, 1, head_len, f) != head_len) ||
        (body_len && fwrite(body, 1, body_len, f) != body_len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void weights(float *w, size_t n, size_t k, uint32_t seed)
{
    for (size_t i = 0; i < n * k; i++) {
        seed = seed * 1664525u + 1013904223u;
        float u = (float)((int32_t)seed >> 8) / 8388608.0f;
        w[i] = 0.03f * u / (1.1f - fabsf(u));
    }
}

static qlib_tensor *quantize(qlib_method m, int bits, int group, int sym, size_t n, size_t k)
{
    qlib_config *cfg;
    qlib_tensor *t = NULL;
    float *w = fz_malloc(n * k * sizeof(float));
    weights(w, n, k, (uint32_t)(bits * 131 + group * 7 + sym + (int)n));
    FZ_CHECK(qlib_config_create(m, &cfg) == QLIB_OK);
    FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_BITS, bits) == QLIB_OK);
    if (m == QLIB_METHOD_RTN) {
        FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, group) == QLIB_OK);
        FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, sym) == QLIB_OK);
    }
    FZ_CHECK(qlib_quantize(ctx, w, n, k, k, cfg, NULL, &t) == QLIB_OK);
    qlib_config_destroy(cfg);
    free(w);
    return t;
}

/* An RTN tensor's sections under another method's header. */
static qlib_tensor *recast(const qlib_tensor *src, qlib_method m, float threshold)
{
    qlib_tensor_desc d = src->d;
    qlib_tensor *t;
    d.method = m;
    d.has_perm = m == QLIB_METHOD_GPTQ;
    d.has_input_scales = m == QLIB_METHOD_AWQ;
    d.param = m == QLIB_METHOD_LLM_INT8 ? threshold : 0.0f;
    FZ_CHECK(qlib_tensor_create(&qlib_default_allocator, &d, &t, "make_corpus") == QLIB_OK);
    memcpy(qlib_t_codes(t), src->w.codes, d.n * src->w.row_bytes);
    size_t entries = src->w.scale_stride ? d.n * src->w.n_groups : 1;
    memcpy(qlib_t_scales(t), src->w.scales, entries * 2);
    if (!d.symmetric) memcpy(qlib_t_zeros(t), src->w.zeros, (entries * (size_t)d.bits + 7) / 8 + 1);
    for (size_t j = 0; j < d.k; j++) {
        if (t->perm) ((int32_t *)t->perm)[j] = (int32_t)((j * 7 + 3) % d.k);
        if (t->input_scales) ((float *)t->input_scales)[j] = 0.5f + (float)(j % 5) * 0.25f;
    }
    qlib_tensor_seal(t, 0.0123, m == QLIB_METHOD_GPTQ);
    return t;
}

static uint8_t *blob_of(const qlib_tensor *t, size_t *len)
{
    FZ_CHECK(qlib_tensor_serialized_size(t, len) == QLIB_OK);
    uint8_t *b = fz_malloc(*len);
    FZ_CHECK(qlib_tensor_serialize(t, b, *len, NULL) == QLIB_OK);
    return b;
}

/* A tensor seed for both loaders, with its control bytes (fuzz_deserialize.c):
 * every other seed runs on the scalar kernels. */
static void tensor_seed(const char *name, uint8_t ctl, const uint8_t *b, size_t len)
{
    uint8_t head[2] = { ctl, (uint8_t)(serial / 2 % 2) };
    out_file("fuzz_deserialize", name, head, 2, b, len);
    out_file("fuzz_load", name, head, 2, b, len);
}

static void tensor_seeds(void)
{
    static const int bits[] = { 2, 3, 4, 8 }, groups[] = { -1, 0, 32, 64, 128 };
    unsigned i = 0;
    char name[64];
    for (int b = 0; b < 4; b++)
        for (int g = 0; g < 5; g++)
            for (int sym = 0; sym < 2; sym++, i++) {
                qlib_tensor *t = quantize(QLIB_METHOD_RTN, bits[b], groups[g], sym, 3, 100);
                size_t len;
                uint8_t *blob = blob_of(t, &len);
                snprintf(name, sizeof name, "rtn-b%d-g%d-%s", bits[b], groups[g], sym ? "sym" : "asym");
                tensor_seed(name, (uint8_t)((i % 16) << 2), blob, len);
                free(blob);
                qlib_tensor_destroy(t);
            }
    for (int bits16 = 0; bits16 < 2; bits16++) {
        qlib_tensor *t = quantize(QLIB_METHOD_NONE, bits16 ? 16 : 32, 0, 0, 2, 70);
        size_t len;
        uint8_t *blob = blob_of(t, &len);
        tensor_seed(bits16 ? "none-f16" : "none-f32", (uint8_t)(bits16 << 3), blob, len);
        free(blob);
        qlib_tensor_destroy(t);
    }
    struct { qlib_method m; int bits, group, sym; float thr; const char *name; } kinds[] = {
        { QLIB_METHOD_GPTQ, 4, 32, 0, 0, "gptq-perm-b4-g32" },
        { QLIB_METHOD_GPTQ, 3, 64, 1, 0, "gptq-perm-b3-g64-sym" },
        { QLIB_METHOD_AWQ, 4, 64, 0, 0, "awq-b4-g64" },
        { QLIB_METHOD_AWQ, 2, 32, 1, 0, "awq-b2-g32-sym" },
        { QLIB_METHOD_LLM_INT8, 8, 0, 1, 6.0f, "llm-int8-t6" },
        { QLIB_METHOD_LLM_INT8, 8, 0, 1, 0.0f, "llm-int8-t0" },
    };
    for (size_t j = 0; j < sizeof kinds / sizeof kinds[0]; j++) {
        qlib_tensor *r = quantize(QLIB_METHOD_RTN, kinds[j].bits, kinds[j].group, kinds[j].sym, 4, 130);
        qlib_tensor *t = recast(r, kinds[j].m, kinds[j].thr);
        size_t len;
        uint8_t *blob = blob_of(t, &len);
        tensor_seed(kinds[j].name, (uint8_t)(j << 3 | 1 << 5), blob, len);
        free(blob);
        qlib_tensor_destroy(t);
        qlib_tensor_destroy(r);
    }
}

static void corrupt_seeds(void)
{
    qlib_tensor *t = quantize(QLIB_METHOD_RTN, 4, 32, 0, 3, 100);
    size_t len;
    uint8_t *b = blob_of(t, &len), *c = fz_malloc(len);
    float nan = NAN;
    struct { const char *name; size_t at; uint8_t v; uint8_t ctl; } flips[] = {
        { "bad-magic", 0, 'X', FZ_RAW }, { "bad-version", 8, 2, FZ_RAW },
        { "bad-checksum", 300, 0x55, FZ_RAW }, { "bad-n", 32, 9, FZ_SUM },
        { "bad-flags", 50, 4, FZ_SUM }, { "bad-reserved", 60, 1, FZ_SUM },
        { "bad-bits", 49, 5, FZ_SUM }, { "bad-section-id", 80, 9, FZ_SUM },
        { "bad-group", 52, 33, FZ_SUM }, { "bad-method", 48, 9, FZ_SUM },
    };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(c, b, len);
        c[flips[i].at] = flips[i].v;
        tensor_seed(flips[i].name, flips[i].ctl, c, len);
    }
    memcpy(c, b, len);
    c[(size_t)((const uint8_t *)(const void *)t->w.scales - t->blob) + 1] = 0x7e;   /* fp16 NaN */
    tensor_seed("nan-scale", FZ_SUM, c, len);
    tensor_seed("truncated", FZ_RAW, b, len - 64);
    tensor_seed("short-header", FZ_RAW, b, 79);
    tensor_seed("empty", FZ_RAW, b, 0);
    tensor_seed("fail-alloc-1", FZ_RAW | 1 << 6, b, len);
    tensor_seed("fail-alloc-2", FZ_RAW | 2 << 6 | 1 << 2, b, len);
    free(b);
    qlib_tensor_destroy(t);

    qlib_tensor *r = quantize(QLIB_METHOD_RTN, 4, 32, 0, 4, 130);
    qlib_tensor *g = recast(r, QLIB_METHOD_GPTQ, 0), *a = recast(r, QLIB_METHOD_AWQ, 0);
    b = blob_of(g, &len);
    ((int32_t *)(void *)(b + ((const uint8_t *)g->perm - g->blob)))[1] = 0;   /* duplicate */
    tensor_seed("perm-duplicate", FZ_SUM, b, len);
    tensor_seed("fail-alloc-3-perm", FZ_RAW | 3 << 6, b, len);
    free(b);
    b = blob_of(a, &len);
    memcpy(b + ((const uint8_t *)a->input_scales - a->blob) + 8, &nan, 4);
    tensor_seed("input-scale-nan", FZ_SUM, b, len);
    free(b);
    qlib_tensor_destroy(g);
    qlib_tensor_destroy(a);
    qlib_tensor_destroy(r);
    qlib_tensor *f = quantize(QLIB_METHOD_NONE, 32, 0, 0, 2, 40);
    b = blob_of(f, &len);
    memcpy(b + ((const uint8_t *)f->f32 - f->blob) + 4, &nan, 4);
    tensor_seed("f32-nan", FZ_SUM, b, len);
    free(b);
    qlib_tensor_destroy(f);
    /* shaped from plain bytes: headers of every method, contents as given */
    uint8_t shaped[400];
    for (unsigned i = 0; i < 10; i++) {
        for (size_t j = 0; j < sizeof shaped; j++) shaped[j] = (uint8_t)(j * 37 + i * 11);
        shaped[48] = (uint8_t)(i % 5);
        tensor_seed("shaped", (uint8_t)(i < 5 ? FZ_VALID : FZ_SHAPE) | (uint8_t)(i << 3 & 0x38), shaped,
                    sizeof shaped);
    }
}

/* ---- config scripts: [op, param, b0..b3] ---- */
enum { OP_CREATE, OP_SET_INT, OP_SET_FLOAT, OP_GET_ALL, OP_QUANTIZE, OP_DESTROY };
enum { P_BITS, P_GROUP, P_SYM, P_DAMP, P_BLOCK, P_ACT, P_STATIC, P_GRID, P_CLIP, P_SHRINK, P_THR,
       P_CLIP_GRID, P_ROUNDING };

typedef struct script { uint8_t b[256]; size_t len; } script;

static void op(script *s, int code, int param, uint8_t b0, uint8_t b1)
{
    uint8_t o[6] = { (uint8_t)code, (uint8_t)param, b0, b1, 0, 0 };
    memcpy(s->b + s->len, o, 6);
    s->len += 6;
}

/* an int from fuzz_config.c's table, by value */
static uint8_t int_index(int v)
{
    static const int ints[] = { -2, -1, 0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20, 31, 32, 33, 64,
                                96, 100, 128, 256, 1000, 1001, 4096, 4097 };
    for (uint8_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i] == v) return i;
    abort();
}

static void config_seeds(void)
{
    static const int bits[] = { 2, 3, 4, 8 }, groups[] = { -1, 0, 32, 64, 128 };
    for (int m = 0; qlib_method_lookup((qlib_method)m); m++) {
        script s = { { 0 }, 0 };
        op(&s, OP_CREATE, 0, (uint8_t)(m + 1), 0);
        op(&s, OP_GET_ALL, 0, 0, 0);
        if (m == QLIB_METHOD_NONE) {
            op(&s, OP_SET_INT, P_BITS, 0, int_index(16));
            op(&s, OP_QUANTIZE, 0, 140, 1);
            op(&s, OP_SET_INT, P_BITS, 0, int_index(32));
            op(&s, OP_QUANTIZE, 0, 150, 2);
        } else if (m == QLIB_METHOD_LLM_INT8) {
            op(&s, OP_SET_FLOAT, P_THR, 0, 9);            /* 6.0 */
            op(&s, OP_QUANTIZE, 0, 140, 3);
            op(&s, OP_SET_FLOAT, P_THR, 0, 0);
            op(&s, OP_QUANTIZE, 0, 140, 4);
        } else {
            for (int i = 0; i < 4; i++) {
                op(&s, OP_SET_INT, P_BITS, 0, int_index(bits[i]));
                op(&s, OP_SET_INT, P_GROUP, 0, int_index(groups[(i + m) % 5]));
                op(&s, OP_SET_INT, P_SYM, 0, int_index(i & 1));
                if (m == QLIB_METHOD_GPTQ) op(&s, OP_SET_INT, P_ACT, 0, int_index(i >> 1));
                if (m == QLIB_METHOD_AWQ) op(&s, OP_SET_INT, P_GRID, 0, int_index(4));
                op(&s, OP_QUANTIZE, 0, (uint8_t)(138 + i), (uint8_t)i);
            }
        }
        out_file("fuzz_config", "method", s.b, s.len, NULL, 0);
    }
    script s = { { 0 }, 0 };
    op(&s, OP_CREATE, 0, 0, 0);                        /* method -1 */
    op(&s, OP_CREATE, 0, 7, 0);                        /* method 6 */
    op(&s, OP_SET_INT, P_BITS, 0, 0);
    op(&s, OP_CREATE, 0, 3, 0);                        /* GPTQ */
    op(&s, OP_SET_FLOAT, P_DAMP, 0, 15);               /* NaN */
    op(&s, OP_SET_FLOAT, P_DAMP, 0, 7);                /* 1.0000001 */
    op(&s, OP_SET_INT, P_BLOCK, 0, int_index(4097));
    op(&s, OP_SET_INT, P_GROUP, 0, int_index(33));
    op(&s, OP_SET_INT, 250, 0, 0);                     /* unknown parameter 50 */
    op(&s, OP_SET_FLOAT, P_BITS, 0, 0);                /* int parameter as float */
    op(&s, OP_SET_INT, P_THR, 0, 0);                   /* not GPTQ's */
    op(&s, OP_QUANTIZE, 0, 180, 0);                    /* weights x 2^40 */
    op(&s, OP_DESTROY, 0, 0, 0);
    op(&s, OP_SET_INT, P_BITS, 0, int_index(4));
    op(&s, OP_GET_ALL, 0, 0, 0);
    op(&s, OP_QUANTIZE, 0, 140, 0);
    out_file("fuzz_config", "errors", s.b, s.len, NULL, 0);
    s.len = 0;
    op(&s, OP_CREATE, 0, 4, 0);                        /* AWQ */
    op(&s, OP_SET_FLOAT, P_SHRINK, 0, 5);              /* 0.95 */
    op(&s, OP_SET_FLOAT, P_SHRINK, 0, 6);              /* just above */
    op(&s, OP_SET_INT, P_CLIP, 0, int_index(0));
    op(&s, OP_SET_INT, P_GRID, 0, int_index(1));
    op(&s, OP_QUANTIZE, 0, 0, 0);                      /* weights x 2^-140 */
    out_file("fuzz_config", "awq-edges", s.b, s.len, NULL, 0);
}

/* The clipping search, AWQ with GPTQ rounding, and their refusals (written
 * last, so that the numbering of the older seeds stays). */
static void quality_seeds(void)
{
    script s = { { 0 }, 0 };
    op(&s, OP_CREATE, 0, 2, 0);                        /* RTN */
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(20));
    op(&s, OP_SET_INT, P_GROUP, 0, int_index(32));
    op(&s, OP_QUANTIZE, 0, 140, 1);
    op(&s, OP_SET_FLOAT, P_SHRINK, 0, 5);              /* 0.95 */
    op(&s, OP_SET_INT, P_GROUP, 0, int_index(-1));
    op(&s, OP_QUANTIZE, 0, 141, 2);
    op(&s, OP_CREATE, 0, 3, 0);                        /* GPTQ */
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(7));
    op(&s, OP_SET_INT, P_ACT, 0, int_index(1));
    op(&s, OP_SET_INT, P_BITS, 0, int_index(3));
    op(&s, OP_QUANTIZE, 0, 140, 3);
    op(&s, OP_SET_INT, P_GROUP, 0, int_index(0));
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(1000));
    op(&s, OP_QUANTIZE, 0, 139, 4);
    op(&s, OP_GET_ALL, 0, 0, 0);
    out_file("fuzz_config", "clip-grid", s.b, s.len, NULL, 0);
    s.len = 0;
    op(&s, OP_CREATE, 0, 4, 0);                        /* AWQ */
    op(&s, OP_SET_INT, P_ROUNDING, 0, int_index(1));
    op(&s, OP_SET_INT, P_GRID, 0, int_index(4));
    op(&s, OP_QUANTIZE, 0, 140, 5);
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(20));
    op(&s, OP_SET_INT, P_GROUP, 0, int_index(-1));
    op(&s, OP_QUANTIZE, 0, 142, 6);
    op(&s, OP_SET_INT, P_ROUNDING, 0, int_index(0));
    op(&s, OP_SET_INT, P_GROUP, 0, int_index(64));
    op(&s, OP_QUANTIZE, 0, 140, 7);
    op(&s, OP_GET_ALL, 0, 0, 0);
    out_file("fuzz_config", "awq-rounding", s.b, s.len, NULL, 0);
    s.len = 0;
    op(&s, OP_CREATE, 0, 3, 0);                        /* GPTQ */
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(-1));
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(1001));
    op(&s, OP_SET_FLOAT, P_SHRINK, 0, 6);              /* just above 0.95 */
    op(&s, OP_SET_FLOAT, P_SHRINK, 0, 15);             /* NaN */
    op(&s, OP_SET_INT, P_ROUNDING, 0, int_index(1));   /* not GPTQ's */
    op(&s, OP_CREATE, 0, 4, 0);                        /* AWQ */
    op(&s, OP_SET_INT, P_ROUNDING, 0, int_index(2));
    op(&s, OP_SET_INT, P_ROUNDING, 0, int_index(-1));
    op(&s, OP_SET_FLOAT, P_ROUNDING, 0, 3);            /* int parameter as float */
    op(&s, OP_CREATE, 0, 5, 0);                        /* LLM.int8() */
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(20));
    op(&s, OP_SET_FLOAT, P_SHRINK, 0, 4);
    op(&s, OP_CREATE, 0, 2, 0);                        /* RTN */
    op(&s, OP_SET_INT, P_CLIP_GRID, 0, int_index(20));
    op(&s, OP_QUANTIZE, 0, 180, 0);                    /* weights x 2^40: beyond fp16 */
    op(&s, OP_QUANTIZE, 0, 0, 0);                      /* weights x 2^-140 */
    out_file("fuzz_config", "clip-errors", s.b, s.len, NULL, 0);
}

/* ---- calibration streams: [k, what, max_samples, finish] [n, ld, len, bytes]... ---- */
static void calib_seed(const char *name, uint8_t k, uint8_t what, uint8_t ms, uint8_t fin,
                       const uint8_t *batches, size_t len)
{
    uint8_t head[4] = { k, what, ms, fin };
    out_file("fuzz_calib", name, head, 4, batches, len);
}

static void calib_seeds(void)
{
    uint8_t b[600];
    size_t n = 0;
    /* finite floats near 1 with a few outliers */
    b[n++] = 5; b[n++] = 0; b[n++] = 64;
    for (int i = 0; i < 64; i++) b[n++] = (uint8_t)(i % 4 == 3 ? (i % 16 == 3 ? 0x42 : 0x3f) : i * 29);
    b[n++] = 3; b[n++] = 1; b[n++] = 32;
    for (int i = 0; i < 32; i++) b[n++] = (uint8_t)(i % 4 == 3 ? 0xbf : i * 13);
    calib_seed("all-gptq-awq", 15, QLIB_CALIB_ALL, 4, 3 | 16, b, n);
    calib_seed("hessian-act-order", 63, QLIB_CALIB_HESSIAN, 0, 1 | 32 | 4, b, n);
    calib_seed("stats-samples", 31, QLIB_CALIB_ACT_STATS | QLIB_CALIB_SAMPLES, 2, 2, b, n);
    size_t m = 0;
    uint8_t e[64];
    e[m++] = 2; e[m++] = 0; e[m++] = 4; e[m++] = 0; e[m++] = 0; e[m++] = 0xc0; e[m++] = 0x7f;  /* NaN */
    e[m++] = 0; e[m++] = 0; e[m++] = 0;                 /* no tokens */
    e[m++] = 2; e[m++] = 250; e[m++] = 0;               /* ld < k */
    e[m++] = 248; e[m++] = 2; e[m++] = 4; e[m++] = 0; e[m++] = 0; e[m++] = 0x80; e[m++] = 0x3f;
    calib_seed("errors-and-long", 7, QLIB_CALIB_ALL, 8, 1, e, m);
    calib_seed("huge-k", 255, QLIB_CALIB_HESSIAN, 0, 0, e, 3);
    calib_seed("zero-k", 254, QLIB_CALIB_ALL, 1, 0, e, 3);
    calib_seed("bad-what", 9, 8 | 1, 1, 0, e, 3);
    calib_seed("samples-overflow", 9, QLIB_CALIB_SAMPLES, 255, 0, e, 3);
    m = 0;
    e[m++] = 4; e[m++] = 0; e[m++] = 4; e[m++] = 0; e[m++] = 0; e[m++] = 0x7f; e[m++] = 0x7f;  /* 3.4e38 */
    calib_seed("huge-values", 3, QLIB_CALIB_ALL, 2, 3, e, m);
    m = 0;
    e[m++] = 4; e[m++] = 1; e[m++] = 4; e[m++] = 1; e[m++] = 0; e[m++] = 0; e[m++] = 0;     /* subnormal */
    calib_seed("tiny-values", 40, QLIB_CALIB_ALL, 3, 3, e, m);
}

/* ---- llama2: checkpoints, quantized models, tokenizers ---- */
static void ckpt_bytes(const llama_config *c, int shared, uint8_t **out, size_t *len)
{
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim, L = (size_t)c->n_layers;
    size_t kv = d / (size_t)c->n_heads * (size_t)c->n_kv_heads, v = (size_t)c->vocab_size;
    size_t floats = v * d + L * d * 2 + L * d * d * 2 + L * kv * d * 2 + L * h * d * 3 + d +
                    (size_t)c->seq_len * (d / (size_t)c->n_heads) + (shared ? 0 : v * d);
    *len = 28 + floats * 4;
    uint8_t *b = fz_malloc(*len);
    int32_t hdr[7] = { c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                       shared ? c->vocab_size : -c->vocab_size, c->seq_len };
    memcpy(b, hdr, 28);
    float *f = fz_malloc(floats * sizeof(float));
    weights(f, floats, 1, 5);
    memcpy(b + 28, f, floats * 4);
    free(f);
    *out = b;
}

static const char *tmp_path(const char *tag)
{
    static char p[256];
    const char *dir = getenv("TMPDIR");
    snprintf(p, sizeof p, "%s/qlib-corpus-%ld-%s", dir && *dir ? dir : "/tmp", (long)getpid(), tag);
    return p;
}

static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    FZ_CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = fz_malloc(*len);
    FZ_CHECK(fread(b, 1, *len, f) == *len);
    fclose(f);
    return b;
}

/* RTN, bits bits, groups of group (symmetric when sym). */
static qlib_tensor *rtn(const float *w, size_t n, size_t k, int bits, int group, int sym)
{
    qlib_config *cfg;
    qlib_tensor *t = NULL;
    FZ_CHECK(qlib_config_create(QLIB_METHOD_RTN, &cfg) == QLIB_OK);
    FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_BITS, bits) == QLIB_OK);
    FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, group) == QLIB_OK);
    FZ_CHECK(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, sym) == QLIB_OK);
    FZ_CHECK(qlib_quantize(ctx, w, n, k, k, cfg, NULL, &t) == QLIB_OK);
    qlib_config_destroy(cfg);
    return t;
}

/* The checkpoint loaded, its projections quantized with RTN, saved by the
 * example; with emb_bits the token embedding (and a separate classifier)
 * quantized too, in records after the projections. */
static void qmodel_seed(const uint8_t *ckpt, size_t len, int bits, int group, int emb_bits,
                        const char *name)
{
    char ck[256], qm[256];
    snprintf(ck, sizeof ck, "%s", tmp_path("ckpt"));
    snprintf(qm, sizeof qm, "%s", tmp_path("qmodel"));
    FILE *f = fopen(ck, "wb");
    FZ_CHECK(f && fwrite(ckpt, 1, len, f) == len && fclose(f) == 0);
    model_source src;
    FZ_CHECK(source_open(ck, &src) == 0);
    int sep = !src.cfg.shared_classifier;
    unsigned flags = emb_bits ? QM_FLAG_EMB_QUANTIZED | (sep ? QM_FLAG_CLS_QUANTIZED : 0) : 0;
    qm_writer w = { fopen(qm, "w+b"), qm, 0 };
    FZ_CHECK(w.f && qm_write_floats(&w, &src, flags) == 0);
    for (int l = 0; l < src.cfg.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const src_tensor *st = source_proj(&src, l, p);
            qlib_tensor *t = rtn(src_direct_f32(st), st->rows, st->cols, bits, group, 0);
            FZ_CHECK(qm_write_tensor(&w, t, l, p) == 0);
            qlib_tensor_destroy(t);
        }
    for (int e = 0; emb_bits && e < 1 + sep; e++) {
        const src_tensor *st = e ? &src.cls : &src.emb;
        qlib_tensor *t = rtn(src_direct_f32(st), st->rows, st->cols, emb_bits, 32, 1);
        FZ_CHECK(qm_write_tensor(&w, t, src.cfg.n_layers, e ? QM_REC_CLS : QM_REC_EMB) == 0);
        qlib_tensor_destroy(t);
    }
    FZ_CHECK(fclose(w.f) == 0);
    source_close(&src);
    size_t qlen;
    uint8_t *q = read_all(qm, &qlen);
    out_file("fuzz_llama_checkpoint", name, q, qlen, NULL, 0);
    free(q);
    unlink(ck);
    unlink(qm);
}

static void checkpoint_seeds(void)
{
    llama_config c = { 8, 16, 1, 2, 2, 6, 4, 0 };
    uint8_t *b;
    size_t len;
    ckpt_bytes(&c, 1, &b, &len);
    out_file("fuzz_llama_checkpoint", "ckpt-shared", b, len, NULL, 0);
    qmodel_seed(b, len, 4, 32, 0, "qmodel-b4");
    qmodel_seed(b, len, 4, 32, 8, "qmodel-b4-emb8");
    out_file("fuzz_llama_checkpoint", "ckpt-truncated", b, len - 4, NULL, 0);
    b[8] = 0xff;                                         /* n_layers huge */
    out_file("fuzz_llama_checkpoint", "ckpt-bad-layers", b, len, NULL, 0);
    free(b);
    c.n_kv_heads = 1;
    c.n_layers = 2;
    ckpt_bytes(&c, 0, &b, &len);
    out_file("fuzz_llama_checkpoint", "ckpt-gqa-unshared", b, len, NULL, 0);
    qmodel_seed(b, len, 8, 0, 0, "qmodel-b8");
    qmodel_seed(b, len, 8, 0, 4, "qmodel-b8-emb4-cls4");
    free(b);
    uint8_t magic[32] = { 0x32, 0x34, 0x6b, 0x61, 1 };
    out_file("fuzz_llama_checkpoint", "export-v1", magic, sizeof magic, NULL, 0);
}

static void piece(uint8_t **p, float score, const char *s)
{
    uint32_t len = (uint32_t)strlen(s);
    memcpy(*p, &score, 4);
    memcpy(*p + 4, &len, 4);
    memcpy(*p + 8, s, len);
    *p += 8 + len;
}

/* [vocab lo, vocab hi, bos, text length, text, tokenizer file] */
static void tokenizer_seed(const char *name, int vocab_with_bytes, const char *text)
{
    static const char *merges[] = { " ", "a", "b", "t", "h", "e", "ab", " a", "th", "the", " the",
                                    "\xc3\xa9", "\xe2\x82\xac" };
    size_t n_merges = sizeof merges / sizeof merges[0];
    uint8_t *buf = fz_malloc(16384), *p = buf + 4;
    uint32_t max_len = 6;
    memcpy(buf, &max_len, 4);
    piece(&p, 0, "<unk>");
    piece(&p, 0, "<s>");
    piece(&p, 0, "</s>");
    int vocab = 3;
    if (vocab_with_bytes) {
        for (int i = 0; i < 256; i++, vocab++) {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", i);
            piece(&p, 0, s);
        }
    }
    for (size_t i = 0; i < n_merges; i++, vocab++) piece(&p, -(float)i, merges[i]);
    uint8_t head[4] = { (uint8_t)((vocab - 3) & 255), (uint8_t)((vocab - 3) >> 8), 1,
                        (uint8_t)strlen(text) };
    uint8_t *seed = fz_malloc(4 + strlen(text) + (size_t)(p - buf));
    memcpy(seed, head, 4);
    memcpy(seed + 4, text, strlen(text));
    memcpy(seed + 4 + strlen(text), buf, (size_t)(p - buf));
    out_file("fuzz_llama_tokenizer", name, seed, 4 + strlen(text) + (size_t)(p - buf), NULL, 0);
    free(seed);
    free(buf);
}

static void tokenizer_seeds(void)
{
    tokenizer_seed("bytes-merges", 1, "the ab th\xc3\xa9 \xe2\x82\xac\x01 a");
    tokenizer_seed("no-bytes", 0, "ab the");
    tokenizer_seed("no-bytes-fallback", 0, "xyz\xff");
    tokenizer_seed("empty-text", 1, "");
    uint8_t bad[16] = { 10, 0, 0, 0, 0, 0x20, 0, 0 };   /* max_token_length 8192 */
    out_file("fuzz_llama_tokenizer", "bad-max-len", bad, sizeof bad, NULL, 0);
}

/* ---- external layouts: a 16-byte head [ctl, n u16, k u16, bits, group
 * i16, the sizes of parts 0..3 u16] and the parts (fuzz_layout.h) ---- */
enum { LT_RAW = 0, LT_SHAPED = 1, LT_VALID = 2 };

typedef struct lt_parts {
    uint8_t *p[4];
    size_t b[4];
} lt_parts;

static void lt_seed(const char *target, const char *name, uint8_t ctl, size_t n, size_t k,
                    int bits, int gs, const lt_parts *ps)
{
    uint8_t head[16] = { ctl, (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)k, (uint8_t)(k >> 8),
                         (uint8_t)bits, (uint8_t)gs, (uint8_t)((unsigned)gs >> 8) };
    size_t total = 0;
    for (int i = 0; i < 4; i++) {
        FZ_CHECK(ps->b[i] <= 0xffff);
        head[8 + 2 * i] = (uint8_t)ps->b[i];
        head[9 + 2 * i] = (uint8_t)(ps->b[i] >> 8);
        total += ps->b[i];
    }
    uint8_t *body = fz_malloc(total ? total : 1), *q = body;
    for (int i = 0; i < 4; i++) {
        if (ps->b[i]) memcpy(q, ps->p[i], ps->b[i]);
        q += ps->b[i];
    }
    out_file(target, name, head, sizeof head, body, total);
    free(body);
}

static lt_parts lt_export(const qlib_tensor *t, qlib_layout l)
{
    lt_parts ps;
    FZ_CHECK(qlib_tensor_export_size(t, l, ps.b) == QLIB_OK);
    for (int i = 0; i < 4; i++) ps.p[i] = fz_malloc(ps.b[i] ? ps.b[i] : 1);
    FZ_CHECK(qlib_tensor_export(t, l, (void *const *)ps.p, ps.b) == QLIB_OK);
    return ps;
}

static void lt_free(lt_parts *ps)
{
    for (int i = 0; i < 4; i++) free(ps->p[i]);
}

/* Seeds of every layout from qlib's own tensors (raw: the parts as they
 * are), then corrupt ones, then head-shaped ones from plain bytes. */
static void layout_seeds(void)
{
    static const struct { const char *target; qlib_layout l; int bits, group, sym; size_t n, k;
                          const char *name; } kinds[] = {
        { "fuzz_layout_q4_0", QLIB_LAYOUT_GGML_Q4_0, 4, 32, 1, 16, 128, "g32" },
        { "fuzz_layout_q4_0", QLIB_LAYOUT_GGML_Q4_0, 4, 64, 1, 8, 96, "g64-partial" },
        { "fuzz_layout_q4_0", QLIB_LAYOUT_GGML_Q4_0, 4, -1, 1, 4, 64, "per-tensor" },
        { "fuzz_layout_q8_0", QLIB_LAYOUT_GGML_Q8_0, 8, 32, 1, 8, 96, "g32" },
        { "fuzz_layout_q8_0", QLIB_LAYOUT_GGML_Q8_0, 8, 0, 1, 5, 64, "per-row" },
        { "fuzz_layout_gptq", QLIB_LAYOUT_GPTQ, 4, 32, 1, 16, 104, "b4-g32-partial" },
        { "fuzz_layout_gptq", QLIB_LAYOUT_GPTQ, 3, 64, 1, 32, 160, "b3-g64" },
        { "fuzz_layout_gptq", QLIB_LAYOUT_GPTQ, 2, 128, 1, 16, 96, "b2-g128" },
        { "fuzz_layout_gptq", QLIB_LAYOUT_GPTQ, 8, 0, 1, 4, 100, "b8-per-row" },
        { "fuzz_layout_awq", QLIB_LAYOUT_AWQ_GEMM, 4, 32, 0, 16, 128, "g32" },
        { "fuzz_layout_awq", QLIB_LAYOUT_AWQ_GEMM, 4, -1, 1, 8, 96, "per-row-sym" },
    };
    char name[64];
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        qlib_tensor *t = quantize(QLIB_METHOD_RTN, kinds[i].bits, kinds[i].group, kinds[i].sym,
                                  kinds[i].n, kinds[i].k);
        lt_parts ps = lt_export(t, kinds[i].l);
        int gs = kinds[i].group;
        uint8_t ctl = (uint8_t)(LT_RAW | (i & 1) << 2 | (i & 2) << 2 | (i & 4) << 4);
        lt_seed(kinds[i].target, kinds[i].name, ctl, kinds[i].n, kinds[i].k, kinds[i].bits, gs,
                &ps);
        if (kinds[i].l == QLIB_LAYOUT_GPTQ && gs > 0) {
            /* act-order: the columns grouped in another order */
            size_t k = kinds[i].k;
            for (size_t j = 0; j < k; j++) {
                size_t o = (j * 7 + 3) % k;
                uint32_t a = fz_get32(ps.p[3] + 4 * j), b = fz_get32(ps.p[3] + 4 * o);
                fz_put32(ps.p[3] + 4 * j, b);
                fz_put32(ps.p[3] + 4 * o, a);
            }
            snprintf(name, sizeof name, "%s-act-order", kinds[i].name);
            lt_seed(kinds[i].target, name, 1 << 3, kinds[i].n, k, kinds[i].bits, gs, &ps);
        }
        lt_free(&ps);
        qlib_tensor_destroy(t);
    }
    /* corrupt parts */
    qlib_tensor *t = quantize(QLIB_METHOD_RTN, 4, 32, 0, 16, 64);
    lt_parts g = lt_export(t, QLIB_LAYOUT_GPTQ), a = lt_export(t, QLIB_LAYOUT_AWQ_GEMM);
    qlib_tensor_destroy(t);
    g.p[2][5] = 0x7e;                                      /* scales: NaN */
    lt_seed("fuzz_layout_gptq", "nan-scale", LT_RAW, 16, 64, 4, 32, &g);
    g.p[2][5] = 0x3c;
    uint32_t z = fz_get32(g.p[1]);
    fz_put32(g.p[1], z | 0xf0u);                           /* stored zero 15: zero 16 */
    lt_seed("fuzz_layout_gptq", "zero-16", LT_RAW, 16, 64, 4, 32, &g);
    fz_put32(g.p[1], z);
    fz_put32(g.p[3] + 8, 5);                               /* g_idx out of range */
    lt_seed("fuzz_layout_gptq", "g-idx-range", LT_RAW, 16, 64, 4, 32, &g);
    fz_put32(g.p[3] + 8, 1);                               /* 33 + 31 columns */
    lt_seed("fuzz_layout_gptq", "g-idx-groups", LT_RAW, 16, 64, 4, 32, &g);
    fz_put32(g.p[3] + 8, 0);
    lt_seed("fuzz_layout_gptq", "group-48", LT_RAW, 16, 64, 4, 48, &g);
    lt_seed("fuzz_layout_gptq", "bits-5", LT_RAW, 16, 64, 5, 32, &g);
    lt_seed("fuzz_layout_gptq", "fail-alloc-1", 1 << 4, 16, 64, 4, 32, &g);
    lt_seed("fuzz_layout_gptq", "fail-alloc-2", 2 << 4 | 1 << 2, 16, 64, 4, 32, &g);
    g.b[3] -= 4;
    lt_seed("fuzz_layout_gptq", "short-g-idx", LT_RAW, 16, 64, 4, 32, &g);
    g.b[3] += 4;
    lt_seed("fuzz_layout_awq", "n-12", LT_RAW, 12, 64, 4, 32, &a);
    lt_seed("fuzz_layout_awq", "k-96-g64", LT_RAW, 16, 96, 4, 64, &a);
    lt_seed("fuzz_layout_awq", "fail-alloc-1", 1 << 4, 16, 64, 4, 32, &a);
    a.p[2][7] = 0xfc;                                      /* scales: -Inf */
    lt_seed("fuzz_layout_awq", "inf-scale", LT_RAW, 16, 64, 4, 32, &a);
    lt_free(&g);
    lt_free(&a);
    t = quantize(QLIB_METHOD_RTN, 4, 32, 1, 3, 96);
    lt_parts q = lt_export(t, QLIB_LAYOUT_GGML_Q4_0);
    qlib_tensor_destroy(t);
    lt_seed("fuzz_layout_q4_0", "g64-mixed-d", LT_RAW, 3, 96, 4, 64, &q);
    lt_seed("fuzz_layout_q4_0", "bits-8", LT_RAW, 3, 96, 8, 32, &q);
    lt_seed("fuzz_layout_q4_0", "fail-alloc-1", 1 << 4, 3, 96, 4, 32, &q);
    q.p[0][18 * 4 + 1] = 0x7c;                             /* a d of +Inf */
    lt_seed("fuzz_layout_q4_0", "inf-d", LT_RAW, 3, 96, 4, 32, &q);
    q.b[0] -= 18;
    lt_seed("fuzz_layout_q4_0", "short", LT_RAW, 3, 96, 4, 32, &q);
    lt_free(&q);
    /* shaped from plain bytes: every head choice, contents as given or repaired */
    static const char *const targets[] = { "fuzz_layout_q4_0", "fuzz_layout_q8_0",
                                           "fuzz_layout_gptq", "fuzz_layout_awq" };
    uint8_t body[700];
    lt_parts none = { { NULL, NULL, NULL, NULL }, { 0, 0, 0, 0 } };
    for (size_t ti = 0; ti < 4; ti++)
        for (unsigned i = 0; i < 8; i++) {
            uint8_t head[16];
            for (size_t j = 0; j < sizeof body; j++) body[j] = (uint8_t)(j * 37 + i * 11 + ti);
            for (size_t j = 0; j < 16; j++) head[j] = (uint8_t)(j * 13 + i * 29 + ti * 7);
            head[0] = (uint8_t)((i < 5 ? LT_VALID : LT_SHAPED) | (i & 3) << 2 | (i == 7) << 6);
            none.p[0] = body;
            none.b[0] = sizeof body;
            snprintf(name, sizeof name, "shaped-%u", i);
            /* the head's bytes 1..7 as they are: lt_seed writes n, k, bits, group */
            lt_seed(targets[ti], name, head[0], (size_t)(head[1] | head[2] << 8),
                    (size_t)(head[3] | head[4] << 8), (int8_t)head[5],
                    (int16_t)(head[6] | head[7] << 8), &none);
        }
}

int main(int argc, char **argv)
{
    if (argc > 1) root = argv[1];
    FZ_CHECK(qlib_ctx_create(&ctx) == QLIB_OK);
    FZ_CHECK(qlib_ctx_set_threads(ctx, 1) == QLIB_OK);
    tensor_seeds();
    corrupt_seeds();
    config_seeds();
    calib_seeds();
    checkpoint_seeds();
    tokenizer_seeds();
    layout_seeds();
    quality_seeds();
    qlib_ctx_destroy(ctx);
    return 0;
}
