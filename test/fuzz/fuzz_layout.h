/* Shared by the fuzz_layout_* targets: qlib_tensor_import of one external
 * layout on arbitrary parts, then everything a caller does with the tensor.
 *
 * Input: a 16-byte head, then the bytes of the parts.
 *   byte 0    bits 0-1: how the parts are made (LT_RAW: as the head says;
 *             LT_SHAPED: the sizes the layout needs for a shape read from
 *             the head, contents as given; LT_VALID: the same with contents
 *             repaired so that the import must succeed); bit 2: a context
 *             with 2 threads; bit 3: COMPUTE_F32; bits 4-5: fail allocation
 *             1, 2 or 3 of the import; bit 6: the scalar kernels
 *   bytes 1-2 n (u16); bytes 3-4 k (u16); byte 5 bits (int8); bytes 6-7
 *             group_size (i16): as they are in LT_RAW, mapped to a valid
 *             choice otherwise
 *   bytes 8-15 LT_RAW: the sizes of parts 0..3 (u16 each), cut in turn from
 *             the bytes that follow
 * A part shorter than its size repeats the bytes given (zeros if none).
 *
 * An import either fails with a clear status (ARG, FORMAT, UNSUPPORTED;
 * NOMEM only when the armed failure fired; never for LT_VALID) and makes
 * nothing, or gives a tensor whose dequantization is the layout's own,
 * computed here from the layout's description, bit for bit; whose export is
 * the parts again; that serializes into a blob qlib loads; and that computes
 * like the reference contexts (fuzz.h). Nothing leaks. */
#ifndef QLIB_FUZZ_LAYOUT_H
#define QLIB_FUZZ_LAYOUT_H

#include "fuzz.h"

enum { LT_RAW = 0, LT_SHAPED = 1, LT_VALID = 2 };
#define LT_HEAD 16u

typedef struct lt_case {
    qlib_layout layout;
    size_t n, k;
    int bits, gs;
    uint8_t *part[4];
    size_t bytes[4];
} lt_case;

/* ---- the layouts, from their descriptions (include/qlib.h) ---- */

static inline float lt_half(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e ? ldexpf((float)(1024 + m), e - 25) : ldexpf((float)m, -24);
    return h & 0x8000 ? -v : v;
}

static inline unsigned lt_stream_get(const uint8_t *p, size_t stride, size_t pos, int bits)
{
    size_t w = pos / 32;
    unsigned sh = (unsigned)(pos % 32);
    uint64_t v = fz_get32(p + w * stride);
    if (sh + (unsigned)bits > 32) v |= (uint64_t)fz_get32(p + (w + 1) * stride) << 32;
    return (unsigned)(v >> sh) & ((1u << bits) - 1u);
}

static inline void lt_stream_set(uint8_t *p, size_t stride, size_t pos, int bits, unsigned value)
{
    for (int b = 0; b < bits; b++) {
        size_t bit = pos + (size_t)b, w = bit / 32;
        uint32_t word = fz_get32(p + w * stride), mask = 1u << (bit % 32);
        word = (value >> b) & 1u ? word | mask : word & ~mask;
        fz_put32(p + w * stride, word);
    }
}

static inline size_t lt_groups(const lt_case *c)
{
    if (c->gs <= 0) return 1;
    return c->layout == QLIB_LAYOUT_AWQ_GEMM ? c->k / (size_t)c->gs
                                             : (c->k + (size_t)c->gs - 1) / (size_t)c->gs;
}

/* The part sizes the layout needs (0: the shape does not fit the layout). */
static inline int lt_sizes(const lt_case *c, size_t b[4])
{
    size_t n = c->n, k = c->k, bits = (size_t)c->bits, G = lt_groups(c);
    memset(b, 0, 4 * sizeof b[0]);
    switch (c->layout) {
    case QLIB_LAYOUT_GGML_Q4_0:
    case QLIB_LAYOUT_GGML_Q8_0:
        if (k % 32) return 0;
        b[0] = n * (k / 32) * (bits == 4 ? 18 : 34);
        return 1;
    case QLIB_LAYOUT_GPTQ:
        if (k * bits % 32 || n * bits % 32) return 0;
        b[0] = k * bits / 32 * n * 4;
        b[1] = G * (n * bits / 32) * 4;
        b[2] = G * n * 2;
        b[3] = k * 4;
        return 1;
    default:
        if (n % 8 || (c->gs > 0 && k % (size_t)c->gs)) return 0;
        b[0] = k * (n / 8) * 4;
        b[1] = G * (n / 8) * 4;
        b[2] = G * n * 2;
        return 1;
    }
}

static inline void lt_decode(const lt_case *c, float *w)
{
    size_t n = c->n, k = c->k;
    int bits = c->bits;
    if (c->layout == QLIB_LAYOUT_GGML_Q4_0 || c->layout == QLIB_LAYOUT_GGML_Q8_0) {
        size_t bb = bits == 4 ? 18 : 34;
        for (size_t r = 0; r < n; r++)
            for (size_t b = 0; b < k / 32; b++) {
                const uint8_t *blk = c->part[0] + (r * (k / 32) + b) * bb;
                float d = lt_half((uint16_t)(blk[0] | blk[1] << 8));
                float *o = w + r * k + 32 * b;
                for (int i = 0; i < 32; i++)
                    o[i] = bits == 8 ? (float)(int8_t)blk[2 + i] * d
                         : i < 16 ? (float)((blk[2 + i] & 15) - 8) * d
                                  : (float)((blk[2 + i - 16] >> 4) - 8) * d;
            }
    } else if (c->layout == QLIB_LAYOUT_GPTQ) {
        size_t zrow = n * (size_t)bits / 32 * 4;
        for (size_t col = 0; col < n; col++)
            for (size_t r = 0; r < k; r++) {
                size_t g = fz_get32(c->part[3] + 4 * r);
                int q = (int)lt_stream_get(c->part[0] + 4 * col, 4 * n, r * (size_t)bits, bits);
                int z = (int)lt_stream_get(c->part[1] + g * zrow, 4, col * (size_t)bits, bits) + 1;
                uint16_t s = (uint16_t)(c->part[2][(g * n + col) * 2] |
                                        c->part[2][(g * n + col) * 2 + 1] << 8);
                w[col * k + r] = lt_half(s) * (float)(q - z);
            }
    } else {
        static const unsigned order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };
        size_t nw = n / 8;
        for (size_t r = 0; r < k; r++) {
            size_t g = c->gs > 0 ? r / (size_t)c->gs : 0;
            for (size_t j = 0; j < nw; j++) {
                uint32_t qw = fz_get32(c->part[0] + (r * nw + j) * 4);
                uint32_t zw = fz_get32(c->part[1] + (g * nw + j) * 4);
                for (unsigned i = 0; i < 8; i++) {
                    size_t col = 8 * j + order[i];
                    uint16_t s = (uint16_t)(c->part[2][(g * n + col) * 2] |
                                            c->part[2][(g * n + col) * 2 + 1] << 8);
                    w[col * k + r] = (float)((int)(qw >> (4 * i) & 15) - (int)(zw >> (4 * i) & 15)) *
                                     lt_half(s);
                }
            }
        }
    }
}

/* ---- making the parts ---- */

static inline void lt_fill(uint8_t *p, size_t size, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < size; i++) p[i] = len ? data[i % len] : 0;
}

/* A shape the layout takes, from the head's bytes. */
static inline void lt_shape(lt_case *c, const uint8_t *h)
{
    static const int groups[] = { 32, 64, 128, -1, 0, 96, 256 };
    unsigned n = fz_get32(h + 1) & 0xffff, k = fz_get32(h + 3) & 0xffff;
    c->gs = groups[(unsigned)(h[6] | h[7] << 8) % 7];
    switch (c->layout) {
    case QLIB_LAYOUT_GGML_Q4_0:
    case QLIB_LAYOUT_GGML_Q8_0:
        c->bits = c->layout == QLIB_LAYOUT_GGML_Q4_0 ? 4 : 8;
        c->n = 1 + n % 24;
        c->k = 32 * (1 + k % 12);
        if (c->gs > 0 && c->gs % 32) c->gs = 32;
        break;
    case QLIB_LAYOUT_GPTQ: {
        static const int widths[] = { 2, 3, 4, 8 };
        c->bits = widths[h[5] % 4];
        size_t step = c->bits == 3 ? 32 : 32 / (size_t)c->bits;
        c->n = step * (1 + n % (c->bits == 3 ? 2 : 6));
        c->k = step * (1 + k % (384 / step));
        break;
    }
    default:
        c->bits = 4;
        c->n = 8 * (1 + n % 6);
        c->k = 32 * (1 + k % 10);
        if (c->gs > 0 && c->k % (size_t)c->gs) c->gs = 32;
        break;
    }
}

/* Contents the layout accepts: fp16 scales finite, GGML groups of one d,
 * GPTQ zero points below 2^bits - 1 and a g_idx grouping a permutation the
 * data drives. */
static inline void lt_repair(lt_case *c)
{
    size_t n = c->n, k = c->k, G = lt_groups(c);
    if (c->layout == QLIB_LAYOUT_GGML_Q4_0 || c->layout == QLIB_LAYOUT_GGML_Q8_0) {
        size_t bb = c->bits == 4 ? 18 : 34, nb = k / 32, kp = (k + 63) / 64 * 64;
        size_t bpg = (c->gs > 0 && (size_t)c->gs < kp ? (size_t)c->gs : kp) / 32;
        for (size_t r = 0; r < n; r++)
            for (size_t b = 0; b < nb; b++) {
                uint8_t *blk = c->part[0] + (r * nb + b) * bb;
                if ((blk[1] & 0x7c) == 0x7c) blk[1] &= 0xbf;
                const uint8_t *ref = c->gs < 0 ? c->part[0] : c->part[0] + (r * nb + b / bpg * bpg) * bb;
                blk[0] = ref[0], blk[1] = ref[1];
            }
        return;
    }
    for (size_t i = 0; i < G * n; i++)
        if ((c->part[2][2 * i + 1] & 0x7c) == 0x7c) c->part[2][2 * i + 1] &= 0xbf;
    if (c->layout != QLIB_LAYOUT_GPTQ) return;
    size_t zrow = n * (size_t)c->bits / 32 * 4;
    unsigned top = (1u << c->bits) - 1u;
    for (size_t g = 0; g < G; g++)
        for (size_t col = 0; col < n; col++)
            if (lt_stream_get(c->part[1] + g * zrow, 4, col * (size_t)c->bits, c->bits) == top)
                lt_stream_set(c->part[1] + g * zrow, 4, col * (size_t)c->bits, c->bits, top - 1);
    int32_t *perm = fz_malloc(k * 4);
    for (size_t j = 0; j < k; j++) perm[j] = (int32_t)j;
    for (size_t j = k; j-- > 1;) {
        size_t o = fz_get32(c->part[3] + 4 * j) % (j + 1);
        int32_t t = perm[j];
        perm[j] = perm[o];
        perm[o] = t;
    }
    for (size_t j = 0; j < k; j++)
        fz_put32(c->part[3] + 4 * (size_t)perm[j], c->gs > 0 ? (uint32_t)(j / (size_t)c->gs) : 0);
    free(perm);
}

/* ---- the target ---- */

static fz_counter lt_counter;
static qlib_ctx *lt_import_ctx[2], *lt_run_ctx[2][2];   /* [threads == 2]; [threads == 2][scalar] */

static inline void lt_setup(void)
{
    if (lt_import_ctx[0]) return;
    lt_import_ctx[0] = fz_ctx(1, &lt_counter);
    lt_import_ctx[1] = fz_ctx(2, &lt_counter);
    lt_run_ctx[0][0] = fz_ref_ctx(0);
    lt_run_ctx[0][1] = fz_ref_ctx(1);
    lt_run_ctx[1][0] = fz_ctx(2, NULL);
    lt_run_ctx[1][1] = fz_ctx(2, NULL);
    FZ_CHECK(qlib_ctx_set_isa(lt_run_ctx[1][1], "scalar") == QLIB_OK);
}

static inline void lt_check_tensor(const lt_case *c, const qlib_tensor *t, qlib_ctx *ctx,
                                   uint32_t seed)
{
    size_t n = c->n, k = c->k;
    FZ_CHECK(qlib_tensor_rows(t) == n && qlib_tensor_cols(t) == k && qlib_tensor_bits(t) == c->bits);
    FZ_CHECK(qlib_tensor_input_scales(t) == NULL && qlib_tensor_quant_error(t) == 0.0);
    /* the layout's weights, bit for bit */
    float *want = fz_malloc(n * k * sizeof(float)), *got = fz_malloc(n * k * sizeof(float));
    lt_decode(c, want);
    FZ_CHECK(qlib_dequantize(fz_ref_ctx(1), t, got, k) == QLIB_OK);
    FZ_CHECK(memcmp(want, got, n * k * sizeof(float)) == 0);
    free(want);
    free(got);
    /* the parts again */
    size_t b[4];
    int used = c->layout == QLIB_LAYOUT_GPTQ ? 4 : c->layout == QLIB_LAYOUT_AWQ_GEMM ? 3 : 1;
    FZ_CHECK(qlib_tensor_export_size(t, c->layout, b) == QLIB_OK);
    void *p[4];
    for (int i = 0; i < 4; i++) {
        FZ_CHECK(b[i] == (i < used ? c->bytes[i] : 0));
        p[i] = fz_malloc(b[i]);
    }
    FZ_CHECK(qlib_tensor_export(t, c->layout, p, b) == QLIB_OK);
    for (int i = 0; i < 4; i++) {
        FZ_CHECK(memcmp(p[i], c->part[i], b[i]) == 0);
        free(p[i]);
    }
    /* a blob qlib loads */
    size_t len;
    FZ_CHECK(qlib_tensor_serialized_size(t, &len) == QLIB_OK);
    uint8_t *blob = fz_malloc(len);
    FZ_CHECK(qlib_tensor_serialize(t, blob, len, NULL) == QLIB_OK);
    qlib_tensor *back = NULL;
    FZ_CHECK(qlib_tensor_deserialize(fz_ref_ctx(1), blob, len, 0, &back) == QLIB_OK);
    fz_check_queries(back, blob, len);
    qlib_tensor_destroy(back);
    free(blob);
    fz_check_compute(ctx, t, 1 + seed % 5, seed);
}

static inline int lt_run(qlib_layout layout, const uint8_t *data, size_t size)
{
    if (size < LT_HEAD) return 0;
    lt_setup();
    unsigned ctl = data[0], mode = ctl & 3;
    if (mode == 3) mode = LT_RAW;
    const uint8_t *body = data + LT_HEAD;
    size_t body_len = size - LT_HEAD;
    lt_case c;
    memset(&c, 0, sizeof c);
    c.layout = layout;
    int fits = 1;
    if (mode == LT_RAW) {
        c.n = fz_get32(data + 1) & 0xffff;
        c.k = fz_get32(data + 3) & 0xffff;
        c.bits = (int8_t)data[5];
        c.gs = (int16_t)(data[6] | data[7] << 8);
        size_t off = 0;
        for (int i = 0; i < 4; i++) {
            size_t want = (size_t)(data[8 + 2 * i] | data[9 + 2 * i] << 8);
            c.bytes[i] = want < body_len - off ? want : body_len - off;
            c.part[i] = fz_malloc(c.bytes[i]);
            lt_fill(c.part[i], c.bytes[i], body + off, c.bytes[i]);
            off += c.bytes[i];
        }
    } else {
        lt_shape(&c, data);
        fits = lt_sizes(&c, c.bytes);
        size_t off = 0;
        for (int i = 0; i < 4; i++) {
            c.part[i] = fz_malloc(c.bytes[i]);
            size_t take = c.bytes[i] < body_len - off ? c.bytes[i] : body_len - off;
            lt_fill(c.part[i], c.bytes[i], body + off, take);
            off += take;
        }
        if (mode == LT_VALID && fits) lt_repair(&c);
    }
    int two = (ctl >> 2) & 1;
    qlib_ctx *run = lt_run_ctx[two][(ctl >> 6) & 1];
    FZ_CHECK(qlib_ctx_set_compute(run, (ctl >> 3) & 1 ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO) ==
             QLIB_OK);
    long live = lt_counter.live;
    fz_counter_arm(&lt_counter, (long)((ctl >> 4) & 3));
    qlib_tensor *t = (qlib_tensor *)&lt_counter;    /* must be overwritten */
    const void *parts[4] = { c.part[0], c.part[1], c.part[2], c.part[3] };
    qlib_status s = qlib_tensor_import(lt_import_ctx[two], layout, c.n, c.k, c.bits, c.gs, parts,
                                       c.bytes, &t);
    lt_counter.fail_at = 0;
    if (s != QLIB_OK) {
        FZ_CHECK(t == NULL);
        FZ_CHECK(qlib_last_error()[0] != '\0');
        FZ_CHECK(s == QLIB_ERR_ARG || s == QLIB_ERR_FORMAT || s == QLIB_ERR_UNSUPPORTED ||
                 (s == QLIB_ERR_NOMEM && lt_counter.failed));
        FZ_CHECK(!(mode == LT_VALID && fits) || lt_counter.failed);
    } else {
        FZ_CHECK(t != NULL);
        if (mode == LT_RAW) {     /* the shape the parts turned out to fit */
            c.n = qlib_tensor_rows(t);
            c.k = qlib_tensor_cols(t);
        }
        lt_check_tensor(&c, t, run, (uint32_t)(size * 131u + ctl));
        qlib_tensor_destroy(t);
    }
    FZ_CHECK(lt_counter.live == live);
    for (int i = 0; i < 4; i++) free(c.part[i]);
    return 0;
}

#endif
