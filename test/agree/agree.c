/* GPTQ and AWQ results of one build, printed so that test/agree/run.sh can
 * compare two builds (OpenBLAS and BLAS=none) line by line. Uses the public
 * API only; links either build's libqlib.a.
 *
 *   agree layers [P]    quantizes deterministic LLM-like layers with GPTQ and
 *                       AWQ in many settings; then each again from P (default
 *                       3) calibrations whose activations differ from the
 *                       first in their lowest bit, the layer's own
 *                       sensitivity to rounding
 *   agree blobs FILE..  every tensor blob (docs/FORMAT.md) found in the files,
 *                       e.g. the tensors of a quantized model
 *   agree perturb IN OUT  a llama2.c checkpoint with the lowest bit of every
 *                       other weight flipped (a model that rounds the same
 *                       weights the other way)
 *
 * One line per tensor: name, a hash of the blob without its checksum and
 * quant-error fields (so: equal hashes, equal codes, scales, zeros,
 * permutation and input scales), the quant error with 17 digits, and for
 * layers the quant errors of the P variations. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qlib.h"
#include "../bench/rng.h"

#define MAX_PERTURB 8

static void die(const char *what, qlib_status s)
{
    fprintf(stderr, "agree: %s: %s (%s)\n", what, qlib_status_string(s), qlib_last_error());
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "agree: out of memory\n");
        exit(1);
    }
    return p;
}

/* FNV-1a of the blob with bytes 24..31 (checksum) and 64..71 (quant error)
 * taken as zero. */
static uint64_t blob_hash(const uint8_t *b, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        uint8_t v = (i >= 24 && i < 32) || (i >= 64 && i < 72) ? 0 : b[i];
        h = (h ^ v) * 0x100000001b3ull;
    }
    return h;
}

static void print_tensor(const char *name, const qlib_tensor *t, int newline)
{
    size_t bytes = 0, written = 0;
    qlib_status s = qlib_tensor_serialized_size(t, &bytes);
    if (s != QLIB_OK) die("serialized_size", s);
    uint8_t *b = xmalloc(bytes);
    if ((s = qlib_tensor_serialize(t, b, bytes, &written)) != QLIB_OK) die("serialize", s);
    printf("%s %016llx %.17g%s", name, (unsigned long long)blob_hash(b, written),
           qlib_tensor_quant_error(t), newline ? "\n" : "");
    free(b);
}

/* ---- deterministic layers ---- */

static uint64_t rng = 0x6167726565ull;
static double normal(void) { return rng_normal(&rng); }

/* Heavy-tailed weights; activations of rank k/8 with channel scales that
 * vary and an outlier channel in every 64. */
static void make_layer(size_t n, size_t k, size_t tokens, float *w, float *x)
{
    for (size_t i = 0; i < n * k; i++) {
        double c = 0.0;
        for (int t = 0; t < 4; t++) {
            double z = normal();
            c += z * z;
        }
        w[i] = (float)(0.02 * normal() / sqrt(c / 4.0 + 1e-12));
    }
    size_t rank = k / 8;
    float *basis = xmalloc(rank * k * sizeof(float));
    for (size_t i = 0; i < rank * k; i++) basis[i] = (float)normal();
    for (size_t t = 0; t < tokens; t++)
        for (size_t j = 0; j < k; j++) x[t * k + j] = 0.0f;
    for (size_t t = 0; t < tokens; t++) {
        for (size_t r = 0; r < rank; r++) {
            float z = (float)(normal() / sqrt((double)(r + 1)));
            for (size_t j = 0; j < k; j++) x[t * k + j] += z * basis[r * k + j];
        }
        for (size_t j = 0; j < k; j++) {
            float s = j % 64 == 7 ? 12.0f : 0.5f + (float)(j % 11) * 0.1f;
            x[t * k + j] = (x[t * k + j] / sqrtf((float)rank) + 0.05f * (float)normal()) * s;
        }
    }
    free(basis);
}

typedef struct setting {
    qlib_method method;
    int bits, group, sym, act_order, static_groups, clip;
} setting;

static qlib_tensor *quantize_one(qlib_ctx *ctx, const float *w, size_t n, size_t k,
                                 const qlib_calib *cal, const setting *st)
{
    qlib_config *c;
    qlib_status s = qlib_config_create(st->method, &c);
    if (s != QLIB_OK) die("config", s);
    qlib_config_set_int(c, QLIB_PARAM_BITS, st->bits);
    qlib_config_set_int(c, QLIB_PARAM_GROUP_SIZE, st->group);
    qlib_config_set_int(c, QLIB_PARAM_SYMMETRIC, st->sym);
    if (st->method == QLIB_METHOD_GPTQ) {
        qlib_config_set_int(c, QLIB_PARAM_GPTQ_ACT_ORDER, st->act_order);
        qlib_config_set_int(c, QLIB_PARAM_GPTQ_STATIC_GROUPS, st->static_groups);
    } else {
        qlib_config_set_int(c, QLIB_PARAM_AWQ_CLIP, st->clip);
    }
    qlib_tensor *t;
    if ((s = qlib_quantize(ctx, w, n, k, k, c, cal, &t)) != QLIB_OK) die("quantize", s);
    qlib_config_destroy(c);
    return t;
}

/* x with the lowest mantissa bit of about every other value flipped, by a
 * pattern that depends on seed; zeros, infinities and NaN are kept. */
static void perturb(const float *x, size_t count, unsigned seed, float *out)
{
    for (size_t i = 0; i < count; i++) {
        uint32_t v;
        memcpy(&v, x + i, 4);
        if ((v & 0x7f800000u) && (v & 0x7f800000u) != 0x7f800000u &&
            ((((uint32_t)i * 2654435761u) >> (seed + 7)) & 1))
            v ^= 1;
        memcpy(out + i, &v, 4);
    }
}

/* The case's line, then the quant errors of the same layer calibrated on x
 * with single-bit changes (the layer's own sensitivity to rounding). */
static void print_case(qlib_ctx *ctx, const float *w, size_t n, size_t k, qlib_calib *const *cal,
                       unsigned n_perturb, const setting *st)
{
    char name[96];
    snprintf(name, sizeof name, "%s-%zux%zu-b%d-g%d-s%d-ao%d-sg%d-c%d",
             st->method == QLIB_METHOD_GPTQ ? "gptq" : "awq", n, k, st->bits, st->group, st->sym,
             st->act_order, st->static_groups, st->clip);
    qlib_tensor *t = quantize_one(ctx, w, n, k, cal[0], st);
    print_tensor(name, t, 0);
    qlib_tensor_destroy(t);
    for (unsigned p = 1; p <= n_perturb; p++) {
        t = quantize_one(ctx, w, n, k, cal[p], st);
        printf(" %.17g", qlib_tensor_quant_error(t));
        qlib_tensor_destroy(t);
    }
    printf("\n");
}

static void layers(unsigned n_perturb)
{
    static const size_t shapes[][3] = { { 96, 320, 256 }, { 192, 768, 384 } };
    qlib_ctx *ctx;
    qlib_status s = qlib_ctx_create(&ctx);
    if (s != QLIB_OK) die("ctx", s);
    for (size_t sh = 0; sh < 2; sh++) {
        size_t n = shapes[sh][0], k = shapes[sh][1], tokens = shapes[sh][2];
        float *w = xmalloc(n * k * sizeof(float)), *x = xmalloc(tokens * k * sizeof(float));
        make_layer(n, k, tokens, w, x);
        qlib_calib *cal[1 + MAX_PERTURB];
        float *xp = xmalloc(tokens * k * sizeof(float));
        for (unsigned p = 0; p <= n_perturb; p++) {
            if ((s = qlib_calib_create(ctx, k, QLIB_CALIB_ALL, tokens, &cal[p])) != QLIB_OK)
                die("calib", s);
            if (p) perturb(x, tokens * k, p, xp);
            if ((s = qlib_calib_add(cal[p], p ? xp : x, tokens, k)) != QLIB_OK) die("calib_add", s);
        }
        static const int bits[] = { 4, 3 }, groups[] = { 128, 32, -1 };
        for (int b = 0; b < 2; b++)
            for (int g = 0; g < 3; g++)
                for (int v = 0; v < 4; v++) {
                    setting gp = { QLIB_METHOD_GPTQ, bits[b], groups[g], v == 3, v == 1 || v == 3,
                                   v == 2, 0 };
                    print_case(ctx, w, n, k, cal, n_perturb, &gp);
                }
        for (int b = 0; b < 2; b++)
            for (int g = 0; g < 2; g++)
                for (int clip = 0; clip <= 1; clip++) {
                    setting aw = { QLIB_METHOD_AWQ, bits[b], groups[g], 0, 0, 0, clip };
                    print_case(ctx, w, n, k, cal, n_perturb, &aw);
                }
        for (unsigned p = 0; p <= n_perturb; p++) qlib_calib_destroy(cal[p]);
        free(w);
        free(x);
        free(xp);
    }
    qlib_ctx_destroy(ctx);
}

/* ---- blobs in files ---- */

/* The whole file at path (NULL, with a message, when it cannot be read or
 * is empty); *len its size. */
static uint8_t *read_file(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = xmalloc(*len > 0 ? (size_t)*len : 1);
    size_t got = *len > 0 ? fread(buf, 1, (size_t)*len, f) : 0;
    fclose(f);
    if (*len <= 0 || got != (size_t)*len) {
        fprintf(stderr, "agree: cannot read %s\n", path);
        free(buf);
        return NULL;
    }
    return buf;
}

static int blobs(const char *path, qlib_ctx *ctx)
{
    long len;
    uint8_t *buf = read_file(path, &len);
    if (!buf) return 1;
    size_t count = 0;
    for (size_t off = 0; off + 80 <= (size_t)len;) {
        if (memcmp(buf + off, "QLIBTNSR", 8) != 0) {
            off += 64;
            continue;
        }
        uint64_t total;
        memcpy(&total, buf + off + 16, 8);
        qlib_tensor *t;
        qlib_status s = total <= (size_t)len - off
                      ? qlib_tensor_deserialize(ctx, buf + off, (size_t)total, 0, &t)
                      : QLIB_ERR_FORMAT;
        if (s != QLIB_OK) die(path, s);
        char name[64];
        snprintf(name, sizeof name, "blob%zu", count++);
        print_tensor(name, t, 1);
        qlib_tensor_destroy(t);
        off += (size_t)total;
    }
    free(buf);
    if (!count) fprintf(stderr, "agree: no tensor blob in %s\n", path);
    return count ? 0 : 1;
}

/* llama2.c checkpoint: 7 int32 of header, then float32 weights. */
static int perturb_model(const char *in, const char *out)
{
    long len;
    uint8_t *buf = read_file(in, &len);
    if (!buf) return 1;
    if (len <= 28 || (len - 28) % 4) {
        fprintf(stderr, "agree: %s is not a llama2.c checkpoint\n", in);
        free(buf);
        return 1;
    }
    size_t count = (size_t)(len - 28) / 4;
    float *wts = xmalloc(count * sizeof(float));
    memcpy(wts, buf + 28, count * 4);
    perturb(wts, count, 1, wts);
    memcpy(buf + 28, wts, count * 4);
    FILE *f = fopen(out, "wb");
    int ok = f && fwrite(buf, 1, (size_t)len, f) == (size_t)len;
    if (f && fclose(f)) ok = 0;
    if (!ok) perror(out);
    free(wts);
    free(buf);
    return !ok;
}

int main(int argc, char **argv)
{
    if ((argc == 2 || argc == 3) && strcmp(argv[1], "layers") == 0) {
        int p = argc == 3 ? atoi(argv[2]) : 3;
        layers(p < 0 ? 0 : p > MAX_PERTURB ? MAX_PERTURB : (unsigned)p);
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "perturb") == 0) return perturb_model(argv[2], argv[3]);
    if (argc >= 3 && strcmp(argv[1], "blobs") == 0) {
        qlib_ctx *ctx;
        qlib_status s = qlib_ctx_create(&ctx);
        if (s != QLIB_OK) die("ctx", s);
        int rc = 0;
        for (int i = 2; i < argc && !rc; i++) rc = blobs(argv[i], ctx);
        qlib_ctx_destroy(ctx);
        return rc;
    }
    fprintf(stderr, "usage: agree layers [P] | agree blobs FILE... | agree perturb IN OUT\n");
    return 2;
}
