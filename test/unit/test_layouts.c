/* suite_layouts: the external layouts (qlib_tensor_export / import,
 * docs/FORMATS.md) against decoders written here from the layouts' own
 * descriptions (GGML block_q4_0 / block_q8_0, GPTQ v1 qweight / qzeros /
 * scales / g_idx, AWQ GEMM with its interleaved nibbles), never through
 * qlib's code path: fp16 is decoded here too.
 *
 * Exactness is bitwise throughout: the decoders compute each weight as the
 * layout defines it (one fp32 product of an integer and an fp16 scale), and
 * qlib_dequantize must give the same floats; export(import(parts)) must give
 * the same bytes; import(export(t)) must multiply like t on every kernel
 * table this CPU has, in both compute modes. Then every refusal and every
 * malformed part, allocation failures, and qlib_tensor_fold_input_scales. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "core/core.h"

Suite *suite_layouts(void);

#define REQUIRE(expr, ...) \
    do { if (!(expr)) ck_abort_msg("'" #expr "' failed: " __VA_ARGS__); } while (0)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const unsigned awq_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

/* ---- bytes ---- */
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* IEEE binary16 to float, from the definition. */
static float half(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    REQUIRE(e != 31, "half 0x%04x is Inf or NaN", h);
    float v = e ? ldexpf((float)(1024 + m), e - 25) : ldexpf((float)m, -24);
    return h & 0x8000 ? -v : v;
}

/* A finite fp16: mostly scale-like (2^-12 .. 2^-4), sometimes negative,
 * zero, subnormal or large. */
static uint16_t rand_half(tu_rng *r)
{
    uint64_t u = tu_next(r);
    unsigned m = (unsigned)(u >> 20) & 1023u, sign = (u >> 40) & 1 ? 0x8000u : 0;
    switch (u % 16) {
    case 0: return (uint16_t)sign;                            /* +-0 */
    case 1: return (uint16_t)(sign | m);                      /* subnormal */
    case 2: return (uint16_t)(sign | 30u << 10 | m);          /* up to 65504 */
    case 3: case 4: return (uint16_t)(0x8000u | (3u + (unsigned)(u >> 8) % 9) << 10 | m);
    default: return (uint16_t)((3u + (unsigned)(u >> 8) % 9) << 10 | m);
    }
}

/* bits [pos, pos + bits) of a little-endian stream of 32-bit words, word i
 * at p + i * stride; and writing them (the words start zeroed). */
static unsigned stream_get(const uint8_t *p, size_t stride, size_t pos, int bits)
{
    size_t w = pos / 32;
    unsigned sh = (unsigned)(pos % 32);
    uint64_t v = rd32(p + w * stride);
    if (sh + (unsigned)bits > 32) v |= (uint64_t)rd32(p + (w + 1) * stride) << 32;
    return (unsigned)(v >> sh) & ((1u << bits) - 1u);
}

static void stream_put(uint8_t *p, size_t stride, size_t pos, int bits, unsigned value)
{
    size_t w = pos / 32;
    unsigned sh = (unsigned)(pos % 32);
    uint64_t v = (uint64_t)value << sh;
    wr32(p + w * stride, rd32(p + w * stride) | (uint32_t)v);
    if (sh + (unsigned)bits > 32) wr32(p + (w + 1) * stride, rd32(p + (w + 1) * stride) | (uint32_t)(v >> 32));
}

/* ---- parts ---- */
typedef struct parts {
    uint8_t *p[4];
    size_t bytes[4];
} parts;

static parts parts_new(size_t b0, size_t b1, size_t b2, size_t b3)
{
    parts s;
    size_t b[4] = { b0, b1, b2, b3 };
    for (int i = 0; i < 4; i++) {
        s.bytes[i] = b[i];
        s.p[i] = b[i] ? calloc(1, b[i]) : NULL;
        REQUIRE(!b[i] || s.p[i], "out of memory");
    }
    return s;
}

static void parts_free(parts *s)
{
    for (int i = 0; i < 4; i++) free(s->p[i]);
    memset(s, 0, sizeof *s);
}

static qlib_status import_parts(qlib_ctx *ctx, qlib_layout l, size_t n, size_t k, int bits, int gs,
                                const parts *s, qlib_tensor **out)
{
    const void *p[4] = { s->p[0], s->p[1], s->p[2], s->p[3] };
    return qlib_tensor_import(ctx, l, n, k, bits, gs, p, s->bytes, out);
}

/* export_size then export into fresh parts (asserts both succeed). */
static parts export_all(const qlib_tensor *t, qlib_layout l)
{
    size_t b[4];
    qlib_status s = qlib_tensor_export_size(t, l, b);
    REQUIRE(s == QLIB_OK, "export_size(%d): %s", (int)l, qlib_last_error());
    parts out = parts_new(b[0], b[1], b[2], b[3]);
    void *p[4] = { out.p[0], out.p[1], out.p[2], out.p[3] };
    s = qlib_tensor_export(t, l, p, out.bytes);
    REQUIRE(s == QLIB_OK, "export(%d): %s", (int)l, qlib_last_error());
    return out;
}

static void same_parts(const parts *a, const parts *b, const char *what)
{
    for (int i = 0; i < 4; i++) {
        REQUIRE(a->bytes[i] == b->bytes[i], "%s: part %d has %zu bytes, expected %zu", what, i,
                b->bytes[i], a->bytes[i]);
        REQUIRE(!a->bytes[i] || memcmp(a->p[i], b->p[i], a->bytes[i]) == 0,
                "%s: part %d differs", what, i);
    }
}

/* ---- the layouts' dequantization, written from their descriptions ---- */

static void decode_ggml(const parts *s, int bits, size_t n, size_t k, float *w)
{
    size_t bb = bits == 4 ? 18 : 34;
    for (size_t r = 0; r < n; r++)
        for (size_t b = 0; b < k / 32; b++) {
            const uint8_t *blk = s->p[0] + (r * (k / 32) + b) * bb;
            float d = half(rd16(blk));
            float *o = w + r * k + 32 * b;
            if (bits == 4) {
                for (int i = 0; i < 16; i++) {
                    o[i] = (float)((blk[2 + i] & 15) - 8) * d;
                    o[i + 16] = (float)((blk[2 + i] >> 4) - 8) * d;
                }
            } else {
                for (int i = 0; i < 32; i++) o[i] = (float)(int8_t)blk[2 + i] * d;
            }
        }
}

/* W[c][r] = scales[g][c] * (q(r, c) - (qzeros(g, c) + 1)), g = g_idx[r]. */
static void decode_gptq(const parts *s, int bits, size_t n, size_t k, float *w)
{
    size_t zrow = n * (size_t)bits / 32 * 4;
    for (size_t c = 0; c < n; c++)
        for (size_t r = 0; r < k; r++) {
            size_t g = rd32(s->p[3] + 4 * r);
            int q = (int)stream_get(s->p[0] + 4 * c, 4 * n, r * (size_t)bits, bits);
            int z = (int)stream_get(s->p[1] + g * zrow, 4, c * (size_t)bits, bits) + 1;
            w[c * k + r] = half(rd16(s->p[2] + (g * n + c) * 2)) * (float)(q - z);
        }
}

/* W[c][r] = (q - z) * s, group r / group_size; column 8j + order[i] in
 * nibble i of word j. */
static void decode_awq(const parts *s, int gs, size_t n, size_t k, float *w)
{
    size_t nw = n / 8;
    for (size_t r = 0; r < k; r++) {
        size_t g = gs > 0 ? r / (size_t)gs : 0;
        for (size_t j = 0; j < nw; j++) {
            uint32_t qw = rd32(s->p[0] + (r * nw + j) * 4), zw = rd32(s->p[1] + (g * nw + j) * 4);
            for (unsigned i = 0; i < 8; i++) {
                size_t c = 8 * j + awq_order[i];
                int q = (int)(qw >> (4 * i) & 15), z = (int)(zw >> (4 * i) & 15);
                w[c * k + r] = (float)(q - z) * half(rd16(s->p[2] + ((g * n) + c) * 2));
            }
        }
    }
}

static void decode(qlib_layout l, const parts *s, int bits, int gs, size_t n, size_t k, float *w)
{
    switch (l) {
    case QLIB_LAYOUT_GGML_Q4_0: decode_ggml(s, 4, n, k, w); break;
    case QLIB_LAYOUT_GGML_Q8_0: decode_ggml(s, 8, n, k, w); break;
    case QLIB_LAYOUT_GPTQ: decode_gptq(s, bits, n, k, w); break;
    default: decode_awq(s, gs, n, k, w); break;
    }
}

/* ---- random valid parts ---- */

/* GGML blocks; blocks of one group of gs columns (0: a row, -1: the
 * tensor) share d. */
static parts make_ggml(tu_rng *r, int bits, size_t n, size_t k, int gs)
{
    size_t bb = bits == 4 ? 18 : 34, nb = k / 32;
    size_t bpg = gs > 0 ? (size_t)gs / 32 : nb ? nb : 1;
    parts s = parts_new(n * nb * bb, 0, 0, 0);
    uint16_t d = 0;
    for (size_t row = 0; row < n; row++)
        for (size_t b = 0; b < nb; b++) {
            uint8_t *blk = s.p[0] + (row * nb + b) * bb;
            if ((gs >= 0 && b % bpg == 0) || (row == 0 && b == 0)) d = rand_half(r);
            wr16(blk, d);
            for (size_t i = 2; i < bb; i++) blk[i] = (uint8_t)tu_next(r);
        }
    return s;
}

static size_t n_groups(size_t k, int gs) { return gs > 0 ? (k + (size_t)gs - 1) / (size_t)gs : 1; }

/* GPTQ parts; act_order: g_idx groups a random permutation of the columns. */
static parts make_gptq(tu_rng *r, int bits, size_t n, size_t k, int gs, int act_order, int sym)
{
    size_t G = n_groups(k, gs), zrow = n * (size_t)bits / 32 * 4;
    parts s = parts_new(k * (size_t)bits / 32 * n * 4, G * zrow, G * n * 2, k * 4);
    for (size_t i = 0; i < s.bytes[0]; i++) s.p[0][i] = (uint8_t)tu_next(r);
    unsigned top = (1u << bits) - 2u;                /* stored zero - 1: 0 .. 2^bits - 2 */
    for (size_t g = 0; g < G; g++)
        for (size_t c = 0; c < n; c++)
            stream_put(s.p[1] + g * zrow, 4, c * (size_t)bits, bits,
                       sym ? (1u << (bits - 1)) - 1u : (unsigned)(tu_next(r) % (top + 1)));
    for (size_t i = 0; i < G * n; i++) wr16(s.p[2] + 2 * i, rand_half(r));
    int32_t *perm = malloc(k * sizeof *perm);
    REQUIRE(perm, "out of memory");
    for (size_t j = 0; j < k; j++) perm[j] = (int32_t)j;
    if (act_order) {
        for (size_t j = k; j-- > 1;) {
            size_t o = tu_next(r) % (j + 1);
            int32_t t = perm[j];
            perm[j] = perm[o];
            perm[o] = t;
        }
        if (k > 1 && perm[0] == 0 && perm[1] == 1) perm[0] = 1, perm[1] = 0;  /* not identity */
    }
    for (size_t j = 0; j < k; j++)
        wr32(s.p[3] + 4 * (size_t)perm[j], gs > 0 ? (uint32_t)(j / (size_t)gs) : 0u);
    free(perm);
    return s;
}

static parts make_awq(tu_rng *r, size_t n, size_t k, int gs, int sym)
{
    size_t G = gs > 0 ? k / (size_t)gs : 1, nw = n / 8;
    parts s = parts_new(k * nw * 4, G * nw * 4, G * n * 2, 0);
    for (size_t i = 0; i < s.bytes[0]; i++) s.p[0][i] = (uint8_t)tu_next(r);
    for (size_t i = 0; i < s.bytes[1]; i++) s.p[1][i] = sym ? 0x88 : (uint8_t)tu_next(r);
    for (size_t i = 0; i < G * n; i++) wr16(s.p[2] + 2 * i, rand_half(r));
    return s;
}

/* ---- comparing tensors ---- */

/* Every kernel table this CPU has, scalar first; NULL-terminated. */
static size_t isa_ctxs(qlib_ctx **ctx)
{
    size_t n = 0;
    for (size_t i = 0; i < TU_N_ISAS; i++) {
        qlib_ctx *c = tu_ctx(1, NULL);
        if (qlib_ctx_set_isa(c, tu_isa_names[i]) == QLIB_OK) ctx[n++] = c;
        else qlib_ctx_destroy(c);
    }
    ctx[n] = NULL;
    return n;
}

static void free_ctxs(qlib_ctx **ctx)
{
    for (size_t i = 0; ctx[i]; i++) qlib_ctx_destroy(ctx[i]);
}

/* qlib_dequantize of t on every ISA equals want (n x k) bit for bit. */
static void dequant_is(const qlib_tensor *t, const float *want, const char *what)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *w = tu_alloc_floats(n * k);
    qlib_ctx *ctx[TU_N_ISAS + 1];
    isa_ctxs(ctx);
    for (size_t i = 0; ctx[i]; i++) {
        REQUIRE(qlib_dequantize(ctx[i], t, w, k) == QLIB_OK, "%s", qlib_last_error());
        for (size_t e = 0; e < n * k; e++)
            REQUIRE(memcmp(&w[e], &want[e], 4) == 0, "%s on %s: weight [%zu][%zu] is %.9g, "
                    "the layout says %.9g", what, qlib_ctx_isa(ctx[i]), e / k, e % k,
                    (double)w[e], (double)want[e]);
    }
    free_ctxs(ctx);
    free(w);
}

static float *dequant(const qlib_tensor *t);

/* What same_products may let differ by float rounding: everything (LOOSE),
 * or only the GEMV (m = 1, AUTO) of the SIMD kernel tables (LOOSE_GEMV). */
enum { EXACT = 0, LOOSE_GEMV = 1, LOOSE = 2 };

/* |ya - yb| for two products with the same effective weights w (k floats a
 * row) computed in other orders: fp32 reassociation, 2 (k + 16) ulp of the
 * sum of |x w| each, and in AUTO mode the int8 quantization of x (half a
 * step, max |x| / 254, per weight magnitude) made twice. */
static double product_bound(const float *x, const float *w, size_t k, int auto_mode)
{
    double mag = 0.0, wsum = 0.0, amax = 0.0;
    for (size_t c = 0; c < k; c++) {
        mag += fabs((double)x[c] * w[c]);
        wsum += fabs((double)w[c]);
        amax = fmax(amax, fabs((double)x[c]));
    }
    return 4.0 * (double)(k + 16) * (FLT_EPSILON / 2) * mag +
           (auto_mode ? 2.0 * 1.01 * amax / 254.0 * wsum : 0.0);
}

/* qlib_matmul of a and b, tensors with the same qlib_dequantize, on every
 * ISA in both compute modes, for m = 1, 2, 5 and 17 rows of activations with
 * outlier channels: equal bit for bit but where loose allows rounding. */
static void same_products(const qlib_tensor *a, const qlib_tensor *b, int loose, const char *what)
{
    static const size_t ms[] = { 1, 2, 5, 17 };
    size_t n = qlib_tensor_rows(a), k = qlib_tensor_cols(a);
    REQUIRE(qlib_tensor_rows(b) == n && qlib_tensor_cols(b) == k, "%s: shapes differ", what);
    float *x = tu_alloc_floats(17 * k), *ya = tu_alloc_floats(17 * n), *yb = tu_alloc_floats(17 * n);
    float *w = loose ? dequant(a) : NULL;
    tu_rng r = { 0x5eed0000u + n * 31 + k };
    for (size_t i = 0; i < 17 * k; i++) x[i] = (float)tu_normal(&r) * (i % 13 == 3 ? 20.0f : 1.0f);
    qlib_ctx *ctx[TU_N_ISAS + 1];
    isa_ctxs(ctx);
    for (size_t c = 0; ctx[c]; c++)
        for (int mode = 0; mode < 2; mode++) {
            ck_assert_int_eq(qlib_ctx_set_compute(ctx[c], mode ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO),
                             QLIB_OK);
            for (size_t mi = 0; mi < COUNT(ms); mi++) {
                size_t m = ms[mi];
                int exact = loose == EXACT ||
                            (loose == LOOSE_GEMV && !(m == 1 && mode == 0 && c > 0));
                REQUIRE(qlib_matmul(ctx[c], a, x, m, k, ya, n) == QLIB_OK, "%s", qlib_last_error());
                REQUIRE(qlib_matmul(ctx[c], b, x, m, k, yb, n) == QLIB_OK, "%s", qlib_last_error());
                for (size_t e = 0; e < m * n; e++) {
                    if (exact) {
                        REQUIRE(memcmp(&ya[e], &yb[e], 4) == 0, "%s: %s %s m=%zu: y[%zu][%zu] "
                                "%.9g vs %.9g", what, qlib_ctx_isa(ctx[c]), mode ? "F32" : "AUTO",
                                m, e / n, e % n, (double)ya[e], (double)yb[e]);
                        continue;
                    }
                    double bound = product_bound(x + e / n * k, w + e % n * k, k, mode == 0);
                    REQUIRE(fabs((double)ya[e] - yb[e]) <= bound, "%s: %s %s m=%zu: y[%zu][%zu] "
                            "%.9g vs %.9g, bound %.3g", what, qlib_ctx_isa(ctx[c]),
                            mode ? "F32" : "AUTO", m, e / n, e % n, (double)ya[e],
                            (double)yb[e], bound);
                }
            }
        }
    free_ctxs(ctx);
    free(w);
    free(x);
    free(ya);
    free(yb);
}

static float *dequant(const qlib_tensor *t)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    float *w = tu_alloc_floats(n * k);
    qlib_ctx *ctx = tu_ctx(1, "scalar");
    REQUIRE(qlib_dequantize(ctx, t, w, k) == QLIB_OK, "%s", qlib_last_error());
    qlib_ctx_destroy(ctx);
    return w;
}

/* ---- import: dequantization, metadata, and export giving the same bytes ---- */

static void check_import(qlib_layout l, const parts *s, int bits, int gs, size_t n, size_t k,
                         qlib_method method, int sym, int permuted, const char *what)
{
    qlib_ctx *ctx = tu_ctx(2, NULL);
    qlib_tensor *t = (qlib_tensor *)ctx;
    qlib_status st = import_parts(ctx, l, n, k, bits, gs, s, &t);
    REQUIRE(st == QLIB_OK, "%s: %s", what, qlib_last_error());
    REQUIRE(qlib_tensor_rows(t) == n && qlib_tensor_cols(t) == k, "%s: shape", what);
    REQUIRE(qlib_tensor_method(t) == method, "%s: method %d", what, (int)qlib_tensor_method(t));
    REQUIRE(qlib_tensor_bits(t) == bits, "%s: bits", what);
    REQUIRE(qlib_tensor_group_size(t) == (gs > 0 || l <= QLIB_LAYOUT_GGML_Q8_0 ? gs : 0),
            "%s: group size %d", what, qlib_tensor_group_size(t));
    REQUIRE(qlib_tensor_symmetric(t) == sym, "%s: symmetric %d", what, qlib_tensor_symmetric(t));
    REQUIRE((qlib_tensor_permutation(t) != NULL) == permuted, "%s: permutation", what);
    REQUIRE(qlib_tensor_input_scales(t) == NULL, "%s: input scales", what);
    REQUIRE(qlib_tensor_quant_error(t) == 0.0, "%s: quant_error", what);
    float *want = tu_alloc_floats(n * k);
    decode(l, s, bits, gs, n, k, want);
    dequant_is(t, want, what);
    parts back = export_all(t, l);
    same_parts(s, &back, what);
    /* the blob is a valid one */
    size_t len;
    REQUIRE(qlib_tensor_serialized_size(t, &len) == QLIB_OK, "size");
    void *blob = malloc(len);
    qlib_tensor *t2 = NULL;
    REQUIRE(blob && qlib_tensor_serialize(t, blob, len, NULL) == QLIB_OK, "serialize");
    REQUIRE(qlib_tensor_deserialize(ctx, blob, len, 0, &t2) == QLIB_OK, "%s: reload: %s", what,
            qlib_last_error());
    qlib_tensor_destroy(t2);
    free(blob);
    parts_free(&back);
    free(want);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}

START_TEST(test_import_ggml)
{
    static const size_t ns[] = { 1, 3, 17 }, ks[] = { 32, 64, 96, 320 };
    static const int groups[] = { 32, 64, 128, 0, -1 };
    tu_rng r = { 401 };
    char what[96];
    for (int bits = 4; bits <= 8; bits += 4)
        for (size_t ni = 0; ni < COUNT(ns); ni++)
            for (size_t ki = 0; ki < COUNT(ks); ki++)
                for (size_t gi = 0; gi < COUNT(groups); gi++) {
                    size_t n = ns[ni], k = ks[ki];
                    int gs = groups[gi];
                    qlib_layout l = bits == 4 ? QLIB_LAYOUT_GGML_Q4_0 : QLIB_LAYOUT_GGML_Q8_0;
                    parts s = make_ggml(&r, bits, n, k, gs);
                    snprintf(what, sizeof what, "Q%d_0 %zux%zu group %d", bits, n, k, gs);
                    check_import(l, &s, bits, gs, n, k, QLIB_METHOD_RTN, 1, 0, what);
                    parts_free(&s);
                }
}
END_TEST

/* (bits, n, k) with k * bits and n * bits multiples of 32, k past whole
 * groups and past multiples of 64. */
static const struct { int bits; size_t n, k; } gptq_shapes[] = {
    { 2, 16, 112 }, { 2, 48, 256 }, { 3, 32, 96 }, { 3, 64, 160 }, { 4, 8, 104 },
    { 4, 24, 256 }, { 4, 16, 40 }, { 8, 4, 100 }, { 8, 12, 192 },
};

START_TEST(test_import_gptq)
{
    static const int groups[] = { 32, 64, 128, 0, -1 };
    tu_rng r = { 402 };
    char what[96];
    for (size_t i = 0; i < COUNT(gptq_shapes); i++)
        for (size_t gi = 0; gi < COUNT(groups); gi++)
            for (int act = 0; act < 2; act++)
                for (int sym = 0; sym < 2; sym++) {
                    int bits = gptq_shapes[i].bits, gs = groups[gi];
                    size_t n = gptq_shapes[i].n, k = gptq_shapes[i].k;
                    int permuted = act && gs > 0 && (size_t)gs < k;
                    parts s = make_gptq(&r, bits, n, k, gs, act, sym);
                    snprintf(what, sizeof what, "GPTQ %d-bit %zux%zu group %d%s%s", bits, n, k, gs,
                             act ? " act-order" : "", sym ? " sym" : "");
                    check_import(QLIB_LAYOUT_GPTQ, &s, bits, gs, n, k, QLIB_METHOD_GPTQ, sym,
                                 permuted, what);
                    parts_free(&s);
                }
}
END_TEST

START_TEST(test_import_awq)
{
    static const size_t ns[] = { 8, 24, 64 }, ks[] = { 128, 256, 96 };
    static const int groups[] = { 32, 64, 128, 0, -1 };
    tu_rng r = { 403 };
    char what[96];
    for (size_t ni = 0; ni < COUNT(ns); ni++)
        for (size_t ki = 0; ki < COUNT(ks); ki++)
            for (size_t gi = 0; gi < COUNT(groups); gi++)
                for (int sym = 0; sym < 2; sym++) {
                    size_t n = ns[ni], k = ks[ki];
                    int gs = groups[gi];
                    if (gs > 0 && k % (size_t)gs) continue;
                    parts s = make_awq(&r, n, k, gs, sym);
                    snprintf(what, sizeof what, "AWQ %zux%zu group %d%s", n, k, gs, sym ? " sym" : "");
                    check_import(QLIB_LAYOUT_AWQ_GEMM, &s, 4, gs, n, k, QLIB_METHOD_AWQ, sym, 0, what);
                    parts_free(&s);
                }
}
END_TEST

/* ---- qlib's own tensors out and back ---- */

/* Whether the layout can hold t, by the rules of docs/FORMATS.md. */
static int has_zero_point_0(const qlib_tensor *t)
{
    const qk_weights *w = &t->w;
    size_t entries = w->scale_stride ? w->n * w->n_groups : 1;
    for (size_t e = 0; !w->symmetric && e < entries; e++)
        if (qk_zero(w, e / (w->scale_stride ? w->n_groups : 1), w->scale_stride ? e % w->n_groups : 0) == 0)
            return 1;
    return 0;
}

static int midpoint_zeros(const qlib_tensor *t)
{
    const qk_weights *w = &t->w;
    size_t entries = w->scale_stride ? w->n * w->n_groups : 1;
    for (size_t e = 0; e < entries; e++)
        if (qk_zero(w, e / (w->scale_stride ? w->n_groups : 1), w->scale_stride ? e % w->n_groups : 0) !=
            1 << (w->bits - 1))
            return 0;
    return 1;
}

static int exportable(const qlib_tensor *t, qlib_layout l)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    int bits = qlib_tensor_bits(t), gs = qlib_tensor_group_size(t);
    qlib_method m = qlib_tensor_method(t);
    if (m == QLIB_METHOD_NONE || qlib_tensor_input_scales(t) ||
        (m == QLIB_METHOD_LLM_INT8 && qlib_tensor_outlier_threshold(t) > 0.0f))
        return 0;
    int perm = qlib_tensor_permutation(t) != NULL, sym = qlib_tensor_symmetric(t);
    switch (l) {
    case QLIB_LAYOUT_GGML_Q4_0: return bits == 4 && sym && k % 32 == 0 && !perm;
    case QLIB_LAYOUT_GGML_Q8_0: return bits == 8 && sym && k % 32 == 0 && !perm;
    case QLIB_LAYOUT_GPTQ: return k * (size_t)bits % 32 == 0 && n * (size_t)bits % 32 == 0 && !has_zero_point_0(t);
    default: return bits == 4 && !perm && n % 8 == 0 && (gs <= 0 || k % (size_t)gs == 0);
    }
}

/* Stored positions of each group in increasing column order: then the
 * layout loses nothing of the order either. */
static int perm_ascending_in_groups(const qlib_tensor *t)
{
    const int32_t *p = qlib_tensor_permutation(t);
    size_t k = qlib_tensor_cols(t), G = t->w.group;
    for (size_t j = 1; p && j < k; j++)
        if (j % G && p[j] < p[j - 1]) return 0;
    return 1;
}

/* t out in every layout that can hold it, decoded here, and back. */
static void round_trip(const qlib_tensor *t, const char *name)
{
    static const qlib_layout layouts[] = { QLIB_LAYOUT_GGML_Q4_0, QLIB_LAYOUT_GGML_Q8_0,
                                           QLIB_LAYOUT_GPTQ, QLIB_LAYOUT_AWQ_GEMM };
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    int bits = qlib_tensor_bits(t), gs = qlib_tensor_group_size(t);
    char what[160];
    float *want = dequant(t), *got = tu_alloc_floats(n * k);
    qlib_ctx *ctx = tu_ctx(2, NULL);
    for (size_t li = 0; li < COUNT(layouts); li++) {
        qlib_layout l = layouts[li];
        snprintf(what, sizeof what, "%s in layout %d", name, (int)l);
        size_t b[4] = { 1, 1, 1, 1 };
        qlib_status s = qlib_tensor_export_size(t, l, b);
        if (!exportable(t, l)) {
            REQUIRE(s == QLIB_ERR_UNSUPPORTED, "%s: export_size gave %d", what, (int)s);
            REQUIRE(b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0, "%s: sizes not zeroed", what);
            REQUIRE(strstr(qlib_last_error(), "qlib_tensor_export_size") != NULL, "%s", what);
            continue;
        }
        REQUIRE(s == QLIB_OK, "%s: %s", what, qlib_last_error());
        parts p = export_all(t, l);
        decode(l, &p, bits, gs, n, k, got);
        for (size_t e = 0; e < n * k; e++)
            REQUIRE(memcmp(&got[e], &want[e], 4) == 0, "%s: the layout's weight [%zu][%zu] is "
                    "%.9g, the tensor's %.9g", what, e / k, e % k, (double)got[e], (double)want[e]);
        qlib_tensor *u = NULL;
        s = import_parts(ctx, l, n, k, bits, gs, &p, &u);
        REQUIRE(s == QLIB_OK, "%s: import: %s", what, qlib_last_error());
        dequant_is(u, want, what);
        parts again = export_all(u, l);
        same_parts(&p, &again, what);
        /* The layouts record neither the order of columns within a group
         * nor whether midpoint zero points were symmetric: an act-order
         * tensor stored otherwise than ascending within its groups (as
         * qlib 0.1's GPTQ stored them) comes back ascending, and sums its
         * products in another order; an
         * asymmetric one whose zero points are all 2^(bits-1) comes back
         * symmetric, and the 8-bit SIMD GEMV sums symmetric codes in
         * other lanes. Everything else multiplies bit for bit. */
        int sym_changed = qlib_tensor_symmetric(u) != qlib_tensor_symmetric(t);
        REQUIRE(!sym_changed || (!qlib_tensor_symmetric(t) && midpoint_zeros(t)),
                "%s: symmetric %d became %d", what, qlib_tensor_symmetric(t),
                qlib_tensor_symmetric(u));
        same_products(t, u, !perm_ascending_in_groups(t) ? LOOSE
                            : sym_changed && bits == 8 ? LOOSE_GEMV : EXACT, what);
        parts_free(&again);
        parts_free(&p);
        qlib_tensor_destroy(u);
    }
    qlib_ctx_destroy(ctx);
    free(want);
    free(got);
}

static float *weights(uint64_t seed, size_t n, size_t k)
{
    tu_rng r = { seed };
    float *w = tu_alloc_floats(n * k);
    tu_llm_weights(&r, w, n, k, k);
    return w;
}

START_TEST(test_round_trip_rtn)
{
    static const int bits[] = { 2, 3, 4, 8 }, groups[] = { 32, 64, 128, 0, -1 };
    static const size_t ks[] = { 256, 96, 200, 40 };
    char name[96];
    for (size_t bi = 0; bi < COUNT(bits); bi++)
        for (size_t gi = 0; gi < COUNT(groups); gi++)
            for (size_t ki = 0; ki < COUNT(ks); ki++)
                for (int sym = 0; sym < 2; sym++) {
                    size_t n = ki == 3 ? 8 : 32, k = ks[ki];
                    qlib_ctx *ctx = tu_ctx(1, NULL);
                    float *w = weights(500 + bi * 100 + gi * 10 + ki * 2 + (size_t)sym, n, k);
                    qlib_tensor *t = tu_quantize(ctx, w, n, k, k, QLIB_METHOD_RTN, bits[bi],
                                                 groups[gi], sym, NULL);
                    snprintf(name, sizeof name, "RTN %d-bit group %d %s %zux%zu", bits[bi],
                             groups[gi], sym ? "sym" : "asym", n, k);
                    round_trip(t, name);
                    qlib_tensor_destroy(t);
                    free(w);
                    qlib_ctx_destroy(ctx);
                }
}
END_TEST

static qlib_calib *calibration(qlib_ctx *ctx, size_t k, uint64_t seed)
{
    tu_act_model am;
    tu_act_model_init(&am, k, 8.0f, seed);
    tu_rng r = { seed + 1 };
    float *x = tu_alloc_floats(256 * k);
    tu_act_model_sample(&am, &r, x, 256, k);
    qlib_calib *c = NULL;
    ck_assert_int_eq(qlib_calib_create(ctx, k, QLIB_CALIB_ALL, 256, &c), QLIB_OK);
    ck_assert_int_eq(qlib_calib_add(c, x, 256, k), QLIB_OK);
    free(x);
    tu_act_model_free(&am);
    return c;
}

static qlib_tensor *quantize_cfg(qlib_ctx *ctx, const float *w, size_t n, size_t k,
                                 qlib_method m, int bits, int group, int sym, int act_order,
                                 const qlib_calib *calib)
{
    qlib_config *cfg = NULL;
    qlib_tensor *t = NULL;
    ck_assert_int_eq(qlib_config_create(m, &cfg), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_BITS, bits), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, group), QLIB_OK);
    ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, sym), QLIB_OK);
    if (m == QLIB_METHOD_GPTQ)
        ck_assert_int_eq(qlib_config_set_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER, act_order), QLIB_OK);
    qlib_status s = qlib_quantize(ctx, w, n, k, k, cfg, calib, &t);
    REQUIRE(s == QLIB_OK, "qlib_quantize: %s", qlib_last_error());
    qlib_config_destroy(cfg);
    return t;
}

START_TEST(test_round_trip_gptq)
{
    static const struct { int bits, group, sym, act; size_t n, k; } cases[] = {
        { 4, 32, 0, 1, 32, 256 }, { 4, 64, 0, 1, 32, 200 }, { 4, 128, 1, 1, 16, 256 },
        { 3, 32, 0, 1, 32, 96 }, { 8, 64, 1, 1, 8, 192 }, { 2, 32, 0, 1, 16, 160 },
        { 4, 0, 0, 1, 16, 128 }, { 4, 128, 0, 0, 32, 256 }, { 3, 64, 1, 0, 32, 224 },
    };
    char name[96];
    for (size_t i = 0; i < COUNT(cases); i++) {
        size_t n = cases[i].n, k = cases[i].k;
        qlib_ctx *ctx = tu_ctx(1, NULL);
        qlib_calib *c = calibration(ctx, k, 600 + i);
        float *w = weights(610 + i, n, k);
        qlib_tensor *t = quantize_cfg(ctx, w, n, k, QLIB_METHOD_GPTQ, cases[i].bits, cases[i].group,
                                      cases[i].sym, cases[i].act, c);
        REQUIRE(!cases[i].act || cases[i].group == 0 || qlib_tensor_permutation(t), "act-order");
        /* qlib's GPTQ stores each group's columns in increasing column, so
         * its act-order tensors too come back bit for bit */
        REQUIRE(perm_ascending_in_groups(t), "act-order groups not stored by column");
        snprintf(name, sizeof name, "GPTQ %d-bit group %d%s%s %zux%zu", cases[i].bits,
                 cases[i].group, cases[i].sym ? " sym" : "", cases[i].act ? " act-order" : "", n, k);
        round_trip(t, name);
        qlib_tensor_destroy(t);
        qlib_calib_destroy(c);
        free(w);
        qlib_ctx_destroy(ctx);
    }
}
END_TEST

/* LLM.int8() without outlier decomposition multiplies like an 8-bit
 * per-row RTN tensor, so GGML Q8_0 and GPTQ hold it exactly. */
START_TEST(test_round_trip_llm_int8)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    float *w = weights(700, 16, 128);
    for (int thr = 0; thr < 2; thr++) {
        qlib_config *cfg = NULL;
        qlib_tensor *t = NULL;
        ck_assert_int_eq(qlib_config_create(QLIB_METHOD_LLM_INT8, &cfg), QLIB_OK);
        ck_assert_int_eq(qlib_config_set_float(cfg, QLIB_PARAM_OUTLIER_THRESHOLD, thr ? 6.0f : 0.0f),
                         QLIB_OK);
        ck_assert_int_eq(qlib_quantize(ctx, w, 16, 128, 128, cfg, NULL, &t), QLIB_OK);
        round_trip(t, thr ? "LLM.int8() threshold 6" : "LLM.int8() threshold 0");
        if (thr) ck_assert_ptr_nonnull(strstr(qlib_last_error(), "LLM.int8()"));
        qlib_tensor_destroy(t);
        qlib_config_destroy(cfg);
    }
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ---- refusals ---- */

static void refused(const qlib_tensor *t, qlib_layout l, const char *needle)
{
    size_t b[4] = { 7, 7, 7, 7 };
    uint8_t buf[64];
    void *p[4] = { buf, buf, buf, buf };
    size_t caps[4] = { 0, 0, 0, 0 };
    qlib_status s = qlib_tensor_export_size(t, l, b);
    REQUIRE(s == QLIB_ERR_UNSUPPORTED, "layout %d: export_size gave %d, expected UNSUPPORTED (%s)",
            (int)l, (int)s, needle);
    REQUIRE(strstr(qlib_last_error(), needle), "layout %d: message \"%s\" lacks \"%s\"", (int)l,
            qlib_last_error(), needle);
    REQUIRE(b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0, "sizes not zeroed");
    s = qlib_tensor_export(t, l, p, caps);
    REQUIRE(s == QLIB_ERR_UNSUPPORTED && strstr(qlib_last_error(), needle),
            "layout %d: export gave %d: %s", (int)l, (int)s, qlib_last_error());
}

START_TEST(test_export_refusals)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    float *w = weights(800, 16, 96);
    qlib_tensor *t;
    /* float */
    t = tu_quantize(ctx, w, 16, 96, 96, QLIB_METHOD_NONE, 32, 0, 0, NULL);
    for (int l = 1; l <= 4; l++) refused(t, (qlib_layout)l, "float tensor");
    qlib_tensor_destroy(t);
    /* GGML: bits, symmetry, K, permutation */
    t = tu_quantize(ctx, w, 16, 96, 96, QLIB_METHOD_RTN, 8, 32, 1, NULL);
    refused(t, QLIB_LAYOUT_GGML_Q4_0, "4-bit codes");
    refused(t, QLIB_LAYOUT_AWQ_GEMM, "4-bit codes");
    qlib_tensor_destroy(t);
    t = tu_quantize(ctx, w, 16, 96, 96, QLIB_METHOD_RTN, 4, 32, 0, NULL);
    refused(t, QLIB_LAYOUT_GGML_Q4_0, "asymmetric");
    refused(t, QLIB_LAYOUT_GGML_Q8_0, "8-bit codes");
    qlib_tensor_destroy(t);
    t = tu_quantize(ctx, w, 16, 80, 96, QLIB_METHOD_RTN, 4, 32, 1, NULL);
    refused(t, QLIB_LAYOUT_GGML_Q4_0, "multiple of 32");
    qlib_tensor_destroy(t);
    t = tu_quantize(ctx, w, 16, 80, 96, QLIB_METHOD_RTN, 8, 32, 1, NULL);
    refused(t, QLIB_LAYOUT_GGML_Q8_0, "multiple of 32");
    qlib_tensor_destroy(t);
    /* GPTQ: K x bits, N x bits */
    t = tu_quantize(ctx, w, 16, 36, 96, QLIB_METHOD_RTN, 4, 32, 1, NULL);
    refused(t, QLIB_LAYOUT_GPTQ, "K=36");
    qlib_tensor_destroy(t);
    t = tu_quantize(ctx, w, 16, 96, 96, QLIB_METHOD_RTN, 3, 32, 1, NULL);
    refused(t, QLIB_LAYOUT_GPTQ, "N=16");
    qlib_tensor_destroy(t);
    /* AWQ: N, K / group */
    t = tu_quantize(ctx, w, 12, 96, 96, QLIB_METHOD_RTN, 4, 32, 0, NULL);
    refused(t, QLIB_LAYOUT_AWQ_GEMM, "N=12");
    qlib_tensor_destroy(t);
    t = tu_quantize(ctx, w, 16, 96, 96, QLIB_METHOD_RTN, 4, 64, 0, NULL);
    refused(t, QLIB_LAYOUT_AWQ_GEMM, "group size 64");
    qlib_tensor_destroy(t);
    /* a zero point of 0: a group of non-negative weights (its range starts at 0) */
    float *pos = tu_alloc_floats(16 * 64);
    memcpy(pos, w, 16 * 64 * sizeof(float));
    for (size_t c = 0; c < 32; c++) pos[5 * 64 + c] = 0.01f + 0.001f * (float)c;
    t = tu_quantize(ctx, pos, 16, 64, 64, QLIB_METHOD_RTN, 4, 32, 0, NULL);
    ck_assert_int_eq(qk_zero(&t->w, 5, 0), 0);
    refused(t, QLIB_LAYOUT_GPTQ, "row 5, group 0 has zero point 0");
    qlib_tensor_destroy(t);
    free(pos);
    /* act-order: GGML and AWQ have no permutation */
    qlib_calib *c = calibration(ctx, 96, 801);
    t = quantize_cfg(ctx, w, 16, 96, QLIB_METHOD_GPTQ, 4, 32, 1, 1, c);
    refused(t, QLIB_LAYOUT_GGML_Q4_0, "permutation");
    refused(t, QLIB_LAYOUT_AWQ_GEMM, "permutation");
    qlib_tensor_destroy(t);
    /* input scales: fold first */
    t = quantize_cfg(ctx, w, 16, 96, QLIB_METHOD_AWQ, 4, 32, 0, 0, c);
    for (int l = 1; l <= 4; l++) refused(t, (qlib_layout)l, "qlib_tensor_fold_input_scales");
    qlib_tensor_destroy(t);
    qlib_calib_destroy(c);
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_export_arguments)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    float *w = weights(810, 16, 64);
    qlib_tensor *t = tu_quantize(ctx, w, 16, 64, 64, QLIB_METHOD_RTN, 4, 32, 0, NULL);
    size_t b[4];
    ck_assert_int_eq(qlib_tensor_export_size(NULL, QLIB_LAYOUT_GPTQ, b), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_export_size(t, QLIB_LAYOUT_GPTQ, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_export_size(t, (qlib_layout)0, b), QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_tensor_export_size(t, (qlib_layout)5, b), QLIB_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "unknown layout 5"));
    ck_assert_int_eq(qlib_tensor_export_size(t, (qlib_layout)-1, b), QLIB_ERR_UNSUPPORTED);
    ck_assert_int_eq(qlib_tensor_export_size(t, QLIB_LAYOUT_GPTQ, b), QLIB_OK);
    /* GPTQ 4-bit 16 x 64, 2 groups: qweight 8 x 16 words, qzeros 2 x 2, scales 2 x 16, g_idx 64 */
    ck_assert_uint_eq(b[0], 8 * 16 * 4);
    ck_assert_uint_eq(b[1], 2 * 2 * 4);
    ck_assert_uint_eq(b[2], 2 * 16 * 2);
    ck_assert_uint_eq(b[3], 64 * 4);
    uint8_t *mem = calloc(1, b[0] + b[1] + b[2] + b[3] + 64);
    void *p[4] = { mem, mem + b[0], mem + b[0] + b[1], mem + b[0] + b[1] + b[2] };
    size_t caps[4] = { b[0], b[1], b[2], b[3] };
    ck_assert_int_eq(qlib_tensor_export(NULL, QLIB_LAYOUT_GPTQ, p, caps), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, NULL, caps), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, p, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_export(t, (qlib_layout)9, p, caps), QLIB_ERR_UNSUPPORTED);
    caps[2]--;
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, p, caps), QLIB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "part 2 (scales)"));
    caps[2]++;
    void *hole[4] = { p[0], p[1], NULL, p[3] };
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, hole, caps), QLIB_ERR_ARG);
    void *lap[4] = { p[0], p[1], (uint8_t *)p[1] + 4, p[3] };
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, lap, caps), QLIB_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "overlap"));
    /* larger capacities are fine and bytes past the part untouched; unused parts ignored */
    caps[3] += 64;
    memset((uint8_t *)p[3] + b[3], 0xab, 64);
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, p, caps), QLIB_OK);
    for (size_t i = 0; i < 64; i++) ck_assert_uint_eq(((uint8_t *)p[3])[b[3] + i], 0xab);
    qlib_tensor *s = tu_quantize(ctx, w, 16, 64, 64, QLIB_METHOD_RTN, 4, 32, 1, NULL);
    size_t qb[4];
    ck_assert_int_eq(qlib_tensor_export_size(s, QLIB_LAYOUT_GGML_Q4_0, qb), QLIB_OK);
    ck_assert_uint_eq(qb[0], 16 * 2 * 18);
    ck_assert(qb[1] == 0 && qb[2] == 0 && qb[3] == 0);
    void *one[4] = { mem, NULL, NULL, NULL };
    size_t onecap[4] = { qb[0], 0, 0, 0 };
    ck_assert_int_eq(qlib_tensor_export(s, QLIB_LAYOUT_GGML_Q4_0, one, onecap), QLIB_OK);
    qlib_tensor_destroy(s);
    free(mem);
    qlib_tensor_destroy(t);
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ---- malformed imports ---- */

static void import_fails(qlib_ctx *ctx, qlib_layout l, size_t n, size_t k, int bits, int gs,
                         const parts *s, qlib_status want, const char *needle)
{
    qlib_tensor *t = (qlib_tensor *)ctx;
    qlib_status st = import_parts(ctx, l, n, k, bits, gs, s, &t);
    REQUIRE(st == want, "layout %d %zux%zu bits %d group %d: status %d, expected %d (%s): %s",
            (int)l, n, k, bits, gs, (int)st, (int)want, needle, qlib_last_error());
    REQUIRE(t == NULL, "out not cleared");
    REQUIRE(strstr(qlib_last_error(), needle), "message \"%s\" lacks \"%s\"", qlib_last_error(),
            needle);
}

START_TEST(test_import_errors)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    tu_rng r = { 900 };
    qlib_tensor *t;
    /* arguments */
    parts g = make_gptq(&r, 4, 16, 64, 32, 1, 0);
    const void *p[4] = { g.p[0], g.p[1], g.p[2], g.p[3] };
    ck_assert_int_eq(qlib_tensor_import(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, p, g.bytes, NULL),
                     QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_import(NULL, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, p, g.bytes, &t),
                     QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_import(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, NULL, g.bytes, &t),
                     QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_import(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, p, NULL, &t),
                     QLIB_ERR_ARG);
    const void *hole[4] = { p[0], p[1], p[2], NULL };
    ck_assert_int_eq(qlib_tensor_import(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, hole, g.bytes, &t),
                     QLIB_ERR_ARG);
    import_fails(ctx, (qlib_layout)0, 16, 64, 4, 32, &g, QLIB_ERR_UNSUPPORTED, "unknown layout");
    import_fails(ctx, (qlib_layout)7, 16, 64, 4, 32, &g, QLIB_ERR_UNSUPPORTED, "unknown layout");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 0, 64, 4, 32, &g, QLIB_ERR_ARG, "n=0");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 0, 4, 32, &g, QLIB_ERR_ARG, "k=0");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, (size_t)1 << 33, 64, 4, 32, &g, QLIB_ERR_UNSUPPORTED, "above");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 5, 32, &g, QLIB_ERR_ARG, "not 5");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, -2, &g, QLIB_ERR_ARG, "group_size -2");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 48, &g, QLIB_ERR_UNSUPPORTED, "multiples of 32");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 60, 4, 32, &g, QLIB_ERR_ARG, "k=60");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 12, 64, 4, 32, &g, QLIB_ERR_ARG, "n=12");
    /* part sizes: the shape, bits or group size do not match them */
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 8, 32, &g, QLIB_ERR_FORMAT, "part 0 (qweight)");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 64, &g, QLIB_ERR_FORMAT, "part 1 (qzeros)");
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 128, 4, 64, &g, QLIB_ERR_FORMAT, "part 0 (qweight)");
    g.bytes[3] -= 4;
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, QLIB_ERR_FORMAT, "part 3 (g_idx)");
    g.bytes[3] += 4;
    /* contents: scales, zero points, g_idx */
    wr16(g.p[2] + 2 * 17, 0x7c00);
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, QLIB_ERR_FORMAT, "scales[1][1] is Inf");
    wr16(g.p[2] + 2 * 17, 0xfe00);
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, QLIB_ERR_FORMAT, "scales[1][1] is Inf or NaN");
    wr16(g.p[2] + 2 * 17, 0x3c00);
    uint32_t z = rd32(g.p[1]);
    wr32(g.p[1], z | 0xf0u);                         /* column 1 of group 0: stored 15 */
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, QLIB_ERR_UNSUPPORTED, "zero point 16");
    wr32(g.p[1], z);
    uint32_t gi = rd32(g.p[3] + 4 * 7);
    wr32(g.p[3] + 4 * 7, 2);
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, QLIB_ERR_FORMAT, "g_idx[7] = 2");
    wr32(g.p[3] + 4 * 7, 0xffffffffu);
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, QLIB_ERR_FORMAT, "g_idx[7] = -1");
    wr32(g.p[3] + 4 * 7, 1 - gi);                    /* 33 columns in one group, 31 in the other */
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, QLIB_ERR_UNSUPPORTED, "columns in group");
    wr32(g.p[3] + 4 * 7, gi);
    ck_assert_int_eq(import_parts(ctx, QLIB_LAYOUT_GPTQ, 16, 64, 4, 32, &g, &t), QLIB_OK);
    qlib_tensor_destroy(t);
    parts_free(&g);
    /* a partial group must be the last one */
    g = make_gptq(&r, 4, 8, 72, 64, 0, 0);         /* groups of 64 and 8 columns */
    for (size_t c = 0; c < 72; c++) wr32(g.p[3] + 4 * c, c < 8 ? 0u : 1u);
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 8, 72, 4, 64, &g, QLIB_ERR_UNSUPPORTED, "columns in group 0");
    parts_free(&g);
    /* one group per row: every g_idx is 0 */
    g = make_gptq(&r, 8, 4, 64, -1, 0, 0);
    wr32(g.p[3] + 4 * 63, 1);
    import_fails(ctx, QLIB_LAYOUT_GPTQ, 4, 64, 8, -1, &g, QLIB_ERR_FORMAT, "1 groups");
    parts_free(&g);
    /* GGML */
    g = make_ggml(&r, 4, 3, 96, 32);
    import_fails(ctx, QLIB_LAYOUT_GGML_Q4_0, 3, 96, 8, 32, &g, QLIB_ERR_ARG, "not 8");
    import_fails(ctx, QLIB_LAYOUT_GGML_Q4_0, 3, 80, 4, 32, &g, QLIB_ERR_ARG, "k=80");
    import_fails(ctx, QLIB_LAYOUT_GGML_Q4_0, 3, 64, 4, 32, &g, QLIB_ERR_FORMAT, "part 0 (blocks)");
    import_fails(ctx, QLIB_LAYOUT_GGML_Q4_0, 3, 96, 4, 64, &g, QLIB_ERR_FORMAT, "different d");
    import_fails(ctx, QLIB_LAYOUT_GGML_Q4_0, 3, 96, 4, -1, &g, QLIB_ERR_FORMAT, "different d");
    wr16(g.p[0] + 18 * 4, 0x7e00);
    import_fails(ctx, QLIB_LAYOUT_GGML_Q4_0, 3, 96, 4, 32, &g, QLIB_ERR_FORMAT, "row 1 block 1");
    parts_free(&g);
    g = make_ggml(&r, 8, 2, 64, 0);
    import_fails(ctx, QLIB_LAYOUT_GGML_Q8_0, 2, 64, 4, 0, &g, QLIB_ERR_ARG, "not 4");
    wr16(g.p[0] + 34, (uint16_t)(rd16(g.p[0]) ^ 0x8000));   /* -0.0 is not 0.0: bits differ */
    import_fails(ctx, QLIB_LAYOUT_GGML_Q8_0, 2, 64, 8, 0, &g, QLIB_ERR_FORMAT, "blocks 0 and 1");
    parts_free(&g);
    /* AWQ */
    g = make_awq(&r, 16, 128, 64, 0);
    import_fails(ctx, QLIB_LAYOUT_AWQ_GEMM, 16, 128, 8, 64, &g, QLIB_ERR_ARG, "not 8");
    import_fails(ctx, QLIB_LAYOUT_AWQ_GEMM, 12, 128, 4, 64, &g, QLIB_ERR_ARG, "n=12");
    import_fails(ctx, QLIB_LAYOUT_AWQ_GEMM, 16, 96, 4, 64, &g, QLIB_ERR_ARG, "k=96");
    import_fails(ctx, QLIB_LAYOUT_AWQ_GEMM, 16, 128, 4, 32, &g, QLIB_ERR_FORMAT, "part 1 (qzeros)");
    wr16(g.p[2] + 2 * (16 + 3), 0xfc00);
    import_fails(ctx, QLIB_LAYOUT_AWQ_GEMM, 16, 128, 4, 64, &g, QLIB_ERR_FORMAT, "scales[1][3]");
    parts_free(&g);
    /* overflowing sizes */
    parts none = parts_new(64, 64, 64, 64);
    import_fails(ctx, QLIB_LAYOUT_GGML_Q8_0, (size_t)1 << 31, (size_t)1 << 31, 8, 32, &none,
                 QLIB_ERR_UNSUPPORTED, "above");
    import_fails(ctx, QLIB_LAYOUT_GGML_Q8_0, ((size_t)1 << 31) - 1, ((size_t)1 << 31) - 32, 8, 32,
                 &none, QLIB_ERR_FORMAT, "part 0");
    parts_free(&none);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* An import and an act-order export with every allocation failing in turn:
 * NOMEM, nothing made, nothing left allocated. */
START_TEST(test_alloc_failures)
{
    tu_counting cnt;
    qlib_ctx *ctx = tu_counting_ctx(&cnt, 2);
    tu_rng r = { 950 };
    parts g = make_gptq(&r, 3, 64, 96, 32, 1, 0);
    qlib_tensor *t = NULL;
    int done = 0;
    for (long fail = 1; fail < 50 && !done; fail++) {
        size_t live = cnt.allocs - cnt.frees;
        cnt.fail_at = (long)cnt.allocs + fail;
        qlib_status s = import_parts(ctx, QLIB_LAYOUT_GPTQ, 64, 96, 3, 32, &g, &t);
        cnt.fail_at = 0;
        if (s == QLIB_OK) {
            done = 1;
            break;
        }
        ck_assert_int_eq(s, QLIB_ERR_NOMEM);
        ck_assert_ptr_null(t);
        ck_assert_uint_eq(cnt.allocs - cnt.frees, live);
    }
    ck_assert(done);
    size_t b[4];
    ck_assert_int_eq(qlib_tensor_export_size(t, QLIB_LAYOUT_GPTQ, b), QLIB_OK);
    parts out = parts_new(b[0], b[1], b[2], b[3]);
    void *p[4] = { out.p[0], out.p[1], out.p[2], out.p[3] };
    cnt.fail_at = (long)cnt.allocs + 1;
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, p, out.bytes), QLIB_ERR_NOMEM);
    cnt.fail_at = 0;
    ck_assert_int_eq(qlib_tensor_export(t, QLIB_LAYOUT_GPTQ, p, out.bytes), QLIB_OK);
    same_parts(&g, &out, "after a failed export");
    parts_free(&out);
    qlib_tensor_destroy(t);
    parts_free(&g);
    qlib_ctx_destroy(ctx);
    ck_assert_uint_eq(cnt.allocs, cnt.frees);
}
END_TEST

/* The same tensor, blob for blob, from any thread count. */
START_TEST(test_import_threads)
{
    tu_rng r = { 960 };
    static const struct { qlib_layout l; int bits, gs, act; } cases[] = {
        { QLIB_LAYOUT_GGML_Q4_0, 4, 32, 0 }, { QLIB_LAYOUT_GGML_Q8_0, 8, 32, 0 },
        { QLIB_LAYOUT_GPTQ, 4, 64, 0 }, { QLIB_LAYOUT_GPTQ, 3, 32, 1 },
        { QLIB_LAYOUT_AWQ_GEMM, 4, 32, 0 },
    };
    size_t n = 200, k = 320;   /* GPTQ 3-bit needs n % 32: 224 */
    for (size_t i = 0; i < COUNT(cases); i++) {
        size_t nn = cases[i].bits == 3 ? 224 : n;
        parts s = cases[i].l == QLIB_LAYOUT_GPTQ ? make_gptq(&r, cases[i].bits, nn, k, cases[i].gs, cases[i].act, 0)
                  : cases[i].l == QLIB_LAYOUT_AWQ_GEMM ? make_awq(&r, nn, k, cases[i].gs, 0)
                  : make_ggml(&r, cases[i].bits, nn, k, cases[i].gs);
        uint8_t *blob[2] = { NULL, NULL };
        size_t len[2];
        for (int th = 0; th < 2; th++) {
            qlib_ctx *ctx = tu_ctx(th ? 3 : 1, NULL);
            qlib_tensor *t = NULL;
            ck_assert_int_eq(import_parts(ctx, cases[i].l, nn, k, cases[i].bits, cases[i].gs, &s, &t),
                             QLIB_OK);
            ck_assert_int_eq(qlib_tensor_serialized_size(t, &len[th]), QLIB_OK);
            blob[th] = malloc(len[th]);
            ck_assert_int_eq(qlib_tensor_serialize(t, blob[th], len[th], NULL), QLIB_OK);
            qlib_tensor_destroy(t);
            qlib_ctx_destroy(ctx);
        }
        ck_assert_uint_eq(len[0], len[1]);
        ck_assert_msg(memcmp(blob[0], blob[1], len[0]) == 0, "case %zu: blobs differ", i);
        free(blob[0]);
        free(blob[1]);
        parts_free(&s);
    }
}
END_TEST

/* A tensor whose sections are t's but with other flags, zero points or
 * input scales (the quantizers never make these, the format allows them). */
static qlib_tensor *recast(const qlib_tensor *src, int symmetric, qlib_method m,
                           const float *input_scales)
{
    qlib_tensor_desc d = src->d;
    qlib_tensor *t;
    d.symmetric = symmetric;
    d.method = m;
    d.has_input_scales = input_scales != NULL;
    ck_assert_int_eq(qlib_tensor_create(&qlib_default_allocator, &d, &t, "test"), QLIB_OK);
    memcpy(qlib_t_codes(t), src->w.codes, d.n * src->w.row_bytes);
    size_t entries = src->w.scale_stride ? d.n * src->w.n_groups : 1;
    memcpy(qlib_t_scales(t), src->w.scales, entries * 2);
    for (size_t e = 0; !symmetric && e < entries; e++)
        qlib_zero_put(qlib_t_zeros(t), e, d.bits, 1u << (d.bits - 1));
    if (input_scales) memcpy((float *)t->input_scales, input_scales, d.k * sizeof(float));
    qlib_tensor_seal(t, 0.0, 0);
    return t;
}

/* An asymmetric tensor whose zero points are all 2^(bits-1) comes back
 * symmetric from GPTQ and AWQ: the kernels must not tell the two apart. */
START_TEST(test_midpoint_zeros)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    static const int bits[] = { 2, 3, 4, 8 };
    for (size_t i = 0; i < COUNT(bits); i++) {
        float *w = weights(970 + i, 32, 200);
        qlib_tensor *s = tu_quantize(ctx, w, 32, 200, 200, QLIB_METHOD_RTN, bits[i], 64, 1, NULL);
        qlib_tensor *a = recast(s, 0, QLIB_METHOD_RTN, NULL);
        ck_assert_int_eq(qlib_tensor_symmetric(a), 0);
        same_products(s, a, bits[i] == 8 ? LOOSE_GEMV : EXACT, "symmetric against midpoint zeros");
        round_trip(a, "asymmetric with midpoint zeros");
        qlib_tensor_destroy(a);
        qlib_tensor_destroy(s);
        free(w);
    }
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ---- folding ---- */

START_TEST(test_fold)
{
    qlib_ctx *ctx = tu_ctx(2, NULL);
    size_t n = 32, k = 256;
    qlib_calib *c = calibration(ctx, k, 1000);
    float *w = weights(1001, n, k);
    static const struct { int bits, group, sym; } cases[] = {
        { 4, 32, 1 }, { 4, 128, 0 }, { 8, 32, 1 }, { 3, 64, 0 }, { 4, 0, 0 },
    };
    char name[64];
    for (size_t i = 0; i < COUNT(cases); i++) {
        qlib_tensor *t = quantize_cfg(ctx, w, n, k, QLIB_METHOD_AWQ, cases[i].bits, cases[i].group,
                                      cases[i].sym, 0, c);
        const float *is = qlib_tensor_input_scales(t);
        ck_assert_ptr_nonnull(is);
        float *s = tu_alloc_floats(k);
        qlib_tensor *f = (qlib_tensor *)ctx;
        ck_assert_int_eq(qlib_tensor_fold_input_scales(ctx, t, s, &f), QLIB_OK);
        ck_assert_ptr_null(qlib_tensor_input_scales(f));
        ck_assert_int_eq(qlib_tensor_method(f), QLIB_METHOD_AWQ);
        ck_assert_int_eq(qlib_tensor_bits(f), cases[i].bits);
        ck_assert_int_eq(qlib_tensor_group_size(f), cases[i].group);
        ck_assert_int_eq(qlib_tensor_symmetric(f), cases[i].sym);
        ck_assert(qlib_tensor_quant_error(f) == qlib_tensor_quant_error(t));
        ck_assert_uint_eq(qlib_tensor_storage_bytes(f), qlib_tensor_storage_bytes(t) - 4 * k);
        for (size_t j = 0; j < k; j++) ck_assert(s[j] == 1.0f / is[j]);
        /* the stored weights unchanged: f's column c times is[c] is t's */
        float *wt = dequant(t), *wf = dequant(f);
        for (size_t e = 0; e < n * k; e++) {
            float v = wf[e] * is[e % k];
            REQUIRE(memcmp(&v, &wt[e], 4) == 0, "weight %zu", e);
        }
        /* products: f with x * is is t with x, bit for bit; with x / s to rounding */
        size_t m = 5;
        float *x = tu_alloc_floats(m * k), *xs = tu_alloc_floats(m * k), *xd = tu_alloc_floats(m * k);
        float *y0 = tu_alloc_floats(m * n), *y1 = tu_alloc_floats(m * n), *y2 = tu_alloc_floats(m * n);
        tu_rng r = { 1002 + i };
        for (size_t e = 0; e < m * k; e++) {
            x[e] = (float)tu_normal(&r);
            xs[e] = x[e] * is[e % k];
            xd[e] = x[e] / s[e % k];
        }
        qlib_ctx *ctxs[TU_N_ISAS + 1];
        isa_ctxs(ctxs);
        for (size_t ci = 0; ctxs[ci]; ci++)
            for (int mode = 0; mode < 2; mode++) {
                qlib_ctx_set_compute(ctxs[ci], mode ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO);
                for (size_t mm = 1; mm <= m; mm += m - 1) {
                    ck_assert_int_eq(qlib_matmul(ctxs[ci], t, x, mm, k, y0, n), QLIB_OK);
                    ck_assert_int_eq(qlib_matmul(ctxs[ci], f, xs, mm, k, y1, n), QLIB_OK);
                    ck_assert_int_eq(qlib_matmul(ctxs[ci], f, xd, mm, k, y2, n), QLIB_OK);
                    ck_assert_msg(memcmp(y0, y1, mm * n * 4) == 0, "%s %s m=%zu: folded product differs",
                                  qlib_ctx_isa(ctxs[ci]), mode ? "F32" : "AUTO", mm);
                    /* x / s is x * is within 1.5 ulp; AUTO's int8 activation
                     * codes may move by one step (1/127 of the block's max)
                     * where a value sits on a rounding boundary */
                    for (size_t e = 0; e < mm * n; e++) {
                        double mag = 0.0, amax = 0.0;
                        for (size_t j = 0; j < k; j++) {
                            mag += fabs((double)xs[(e / n) * k + j] * wf[(e % n) * k + j]);
                            amax = fmax(amax, fabs((double)xs[(e / n) * k + j]));
                        }
                        double wsum = 0.0;
                        for (size_t j = 0; j < k; j++) wsum += fabs((double)wf[(e % n) * k + j]);
                        double tol = 4.0 * (double)k * 6e-8 * mag + (mode ? 0.0 : amax / 127.0 * wsum);
                        REQUIRE(fabs((double)y2[e] - y1[e]) <= tol, "x / s: %g vs %g (tol %g)",
                                (double)y2[e], (double)y1[e], tol);
                    }
                }
            }
        free_ctxs(ctxs);
        snprintf(name, sizeof name, "folded AWQ %d-bit group %d", cases[i].bits, cases[i].group);
        round_trip(f, name);
        free(x);
        free(xs);
        free(xd);
        free(y0);
        free(y1);
        free(y2);
        free(wt);
        free(wf);
        free(s);
        qlib_tensor_destroy(f);
        qlib_tensor_destroy(t);
    }
    qlib_calib_destroy(c);
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_fold_errors)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    float *w = weights(1100, 8, 64), s[64];
    for (size_t j = 0; j < 64; j++) s[j] = -1.0f;
    qlib_tensor *t = tu_quantize(ctx, w, 8, 64, 64, QLIB_METHOD_RTN, 4, 32, 0, NULL), *f;
    ck_assert_int_eq(qlib_tensor_fold_input_scales(ctx, t, s, NULL), QLIB_ERR_ARG);
    f = t;
    ck_assert_int_eq(qlib_tensor_fold_input_scales(NULL, t, s, &f), QLIB_ERR_ARG);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(qlib_tensor_fold_input_scales(ctx, NULL, s, &f), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_fold_input_scales(ctx, t, NULL, &f), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_fold_input_scales(ctx, t, s, &f), QLIB_ERR_STATE);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "no input scales"));
    float is[64];
    for (size_t j = 0; j < 64; j++) is[j] = 0.5f + (float)j / 64.0f;
    is[9] = 1e-39f;                     /* subnormal: 1/is overflows */
    qlib_tensor *a = recast(t, 0, QLIB_METHOD_AWQ, is);
    ck_assert_int_eq(qlib_tensor_fold_input_scales(ctx, a, s, &f), QLIB_ERR_NUMERIC);
    ck_assert_ptr_null(f);
    for (size_t j = 0; j < 64; j++) ck_assert(s[j] == -1.0f);   /* untouched */
    qlib_tensor_destroy(a);
    /* every allocation failing in turn */
    is[9] = 2.0f;
    a = recast(t, 0, QLIB_METHOD_AWQ, is);
    tu_counting cnt;
    qlib_ctx *cc = tu_counting_ctx(&cnt, 1);
    size_t live = cnt.allocs - cnt.frees;
    cnt.fail_at = (long)cnt.allocs + 1;
    ck_assert_int_eq(qlib_tensor_fold_input_scales(cc, a, s, &f), QLIB_ERR_NOMEM);
    ck_assert_ptr_null(f);
    ck_assert_uint_eq(cnt.allocs - cnt.frees, live);
    cnt.fail_at = 0;
    ck_assert_int_eq(qlib_tensor_fold_input_scales(cc, a, s, &f), QLIB_OK);
    ck_assert(s[9] == 0.5f);
    qlib_tensor_destroy(f);
    qlib_ctx_destroy(cc);
    ck_assert_uint_eq(cnt.allocs, cnt.frees);
    qlib_tensor_destroy(a);
    qlib_tensor_destroy(t);
    free(w);
    qlib_ctx_destroy(ctx);
}
END_TEST

Suite *suite_layouts(void)
{
    Suite *s = suite_create("layouts");
    TCase *tc = tu_tcase("layouts");
    tcase_add_test(tc, test_import_ggml);
    tcase_add_test(tc, test_import_gptq);
    tcase_add_test(tc, test_import_awq);
    tcase_add_test(tc, test_round_trip_rtn);
    tcase_add_test(tc, test_round_trip_gptq);
    tcase_add_test(tc, test_round_trip_llm_int8);
    tcase_add_test(tc, test_export_refusals);
    tcase_add_test(tc, test_export_arguments);
    tcase_add_test(tc, test_import_errors);
    tcase_add_test(tc, test_alloc_failures);
    tcase_add_test(tc, test_import_threads);
    tcase_add_test(tc, test_midpoint_zeros);
    tcase_add_test(tc, test_fold);
    tcase_add_test(tc, test_fold_errors);
    suite_add_tcase(s, tc);
    return s;
}
