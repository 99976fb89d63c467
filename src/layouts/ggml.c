/* GGML Q4_0 and Q8_0 (docs/FORMATS.md): rows of blocks of 32 weights, each
 * an fp16 d and symmetric codes. qlib's symmetric codes are q + 2^(bits-1),
 * so a Q4_0 nibble is qlib's 4-bit code as it is, and a Q8_0 int8 is qlib's
 * 8-bit code with its top bit flipped. The blocks of a qlib group share the
 * group's scale. */
#include "layouts.h"

#define QK 32
#define LO 0x0f0f0f0f0f0f0f0full
#define HI 0xf0f0f0f0f0f0f0f0ull
#define TOP 0x8080808080808080ull

static size_t block_bytes(int bits) { return bits == 4 ? 2 + QK / 2 : 2 + QK; }

/* ---- export ---- */

static qlib_status export_size(const qlib_tensor *t, int bits, const char *name,
                               size_t bytes[LT_PARTS], const char *fn)
{
    if (t->d.bits != bits)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: %s holds %d-bit codes; the tensor has %d "
                         "bits", fn, name, bits, t->d.bits);
    if (!t->d.symmetric)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: %s has no zero points; the tensor is "
                         "asymmetric", fn, name);
    if (t->d.k % QK)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: %s needs K a multiple of 32; K=%zu", fn,
                         name, t->d.k);
    if (t->perm)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: %s has no column permutation; the tensor "
                         "is act-order (the GPTQ layout can hold it)", fn, name);
    bytes[0] = t->d.n * (t->d.k / QK) * block_bytes(bits);
    return QLIB_OK;
}

static qlib_status q4_0_export_size(const qlib_tensor *t, size_t bytes[LT_PARTS], const char *fn)
{
    return export_size(t, 4, "GGML Q4_0", bytes, fn);
}

static qlib_status q8_0_export_size(const qlib_tensor *t, size_t bytes[LT_PARTS], const char *fn)
{
    return export_size(t, 8, "GGML Q8_0", bytes, fn);
}

/* Block b of a qlib 4-bit row sits in the low (b even) or high (b odd)
 * nibbles of the 32 bytes of its 64-code chunk; Q4_0 wants weight i in the
 * low and weight i + 16 in the high nibble of byte i. */
static void q4_0_export_row(const qk_weights *w, size_t r, uint8_t *out)
{
    const uint8_t *row = w->codes + r * w->row_bytes;
    const uint16_t *sc = w->scales + r * w->scale_stride;
    for (size_t b = 0; b < w->k / QK; b++, out += 18) {
        const uint8_t *p = row + 32 * (b / 2);
        uint64_t a0 = lt_get64(p), a1 = lt_get64(p + 8), b0 = lt_get64(p + 16),
                 b1 = lt_get64(p + 24);
        if (b & 1) {
            a0 = (a0 >> 4) & LO, a1 = (a1 >> 4) & LO, b0 &= HI, b1 &= HI;
        } else {
            a0 &= LO, a1 &= LO, b0 = (b0 & LO) << 4, b1 = (b1 & LO) << 4;
        }
        lt_put16(out, sc[b * QK / w->group]);
        lt_put64(out + 2, a0 | b0);
        lt_put64(out + 10, a1 | b1);
    }
}

static void q8_0_export_row(const qk_weights *w, size_t r, uint8_t *out)
{
    const uint8_t *row = w->codes + r * w->row_bytes;
    const uint16_t *sc = w->scales + r * w->scale_stride;
    for (size_t b = 0; b < w->k / QK; b++, out += 34, row += QK) {
        lt_put16(out, sc[b * QK / w->group]);
        for (int i = 0; i < QK; i += 8) lt_put64(out + 2 + i, lt_get64(row + i) ^ TOP);
    }
}

static qlib_status q4_0_export(const qlib_tensor *t, uint8_t *const part[LT_PARTS],
                               const char *fn)
{
    (void)fn;
    size_t row_out = t->d.k / QK * 18;
    for (size_t r = 0; r < t->d.n; r++) q4_0_export_row(&t->w, r, part[0] + r * row_out);
    return QLIB_OK;
}

static qlib_status q8_0_export(const qlib_tensor *t, uint8_t *const part[LT_PARTS],
                               const char *fn)
{
    (void)fn;
    size_t row_out = t->d.k / QK * 34;
    for (size_t r = 0; r < t->d.n; r++) q8_0_export_row(&t->w, r, part[0] + r * row_out);
    return QLIB_OK;
}

/* ---- import ---- */

static qlib_status import_size(const lt_import *a, int bits, const char *name,
                               size_t bytes[LT_PARTS])
{
    size_t blocks;
    if (a->bits != bits)
        return qlib_fail(QLIB_ERR_ARG, "%s: %s holds %d-bit codes, not %d", a->fn, name, bits,
                         a->bits);
    if (a->k % QK)
        return qlib_fail(QLIB_ERR_ARG, "%s: %s needs k a multiple of 32; k=%zu", a->fn, name,
                         a->k);
    if (qlib_mul_overflows(a->n, a->k / QK, &blocks) ||
        qlib_mul_overflows(blocks, block_bytes(bits), &bytes[0]))
        return qlib_fail(QLIB_ERR_ARG, "%s: %zu x %zu overflows", a->fn, a->n, a->k);
    return QLIB_OK;
}

static qlib_status q4_0_import_size(const lt_import *a, size_t bytes[LT_PARTS])
{
    return import_size(a, 4, "GGML Q4_0", bytes);
}

static qlib_status q8_0_import_size(const lt_import *a, size_t bytes[LT_PARTS])
{
    return import_size(a, 8, "GGML Q8_0", bytes);
}

/* Columns per qlib group for the requested group size (as the tensor will
 * have them: qlib_desc_group_cols). */
static size_t group_cols(const lt_import *a)
{
    size_t kp = qlib_round_up(a->k, QK_KALIGN);
    return a->group_size > 0 && (size_t)a->group_size < kp ? (size_t)a->group_size : kp;
}

/* Every d finite, and equal (bit for bit) within each group of the tensor
 * to be made: a group has one scale. */
static qlib_status check_scales(const lt_import *a, size_t bb, const char *name)
{
    const uint8_t *p = a->part[0];
    size_t nb = a->k / QK, bpg = group_cols(a) / QK;
    uint16_t first = lt_get16(p);
    for (size_t r = 0; r < a->n; r++) {
        const uint8_t *row = p + r * nb * bb;
        for (size_t b = 0; b < nb; b++) {
            uint16_t d = lt_get16(row + b * bb);
            if (!lt_f16_finite(d))
                return qlib_fail(QLIB_ERR_FORMAT, "%s: %s row %zu block %zu: d is Inf or NaN "
                                 "(0x%04x)", a->fn, name, r, b, d);
            size_t b0 = b / bpg * bpg;
            uint16_t ref = a->group_size < 0 ? first : lt_get16(row + b0 * bb);
            if (d != ref)
                return qlib_fail(QLIB_ERR_FORMAT, "%s: %s row %zu: blocks %zu and %zu have "
                                 "different d (0x%04x, 0x%04x), so they cannot share a group "
                                 "of %d columns", a->fn, name, r, a->group_size < 0 ? 0 : b0,
                                 b, ref, d, a->group_size);
        }
    }
    return QLIB_OK;
}

typedef struct import_job {
    qlib_tensor *t;
    const uint8_t *in;
    size_t bb;
} import_job;

static void q4_0_import_row(const uint8_t *in, size_t nb, size_t kp, uint8_t *row)
{
    for (size_t m = 0; m < kp / 64; m++, row += 32) {
        const uint8_t *e = in + 2 * m * 18 + 2, *o = e + 18;
        uint64_t e0 = lt_get64(e), e1 = lt_get64(e + 8);
        uint64_t o0 = 0x8888888888888888ull, o1 = o0;   /* padding: code 8, the zero point */
        if (2 * m + 1 < nb) o0 = lt_get64(o), o1 = lt_get64(o + 8);
        lt_put64(row, (e0 & LO) | (o0 & LO) << 4);
        lt_put64(row + 8, (e1 & LO) | (o1 & LO) << 4);
        lt_put64(row + 16, ((e0 >> 4) & LO) | (o0 & HI));
        lt_put64(row + 24, ((e1 >> 4) & LO) | (o1 & HI));
    }
}

static void q8_0_import_row(const uint8_t *in, size_t nb, size_t kp, uint8_t *row)
{
    for (size_t b = 0; b < nb; b++, in += 34, row += QK)
        for (int i = 0; i < QK; i += 8) lt_put64(row + i, lt_get64(in + 2 + i) ^ TOP);
    memset(row, 0x80, kp - nb * QK);   /* padding: code 128, the zero point */
}

static void import_rows(void *arg, size_t slot, size_t r0, size_t r1)
{
    (void)slot;
    const import_job *j = arg;
    qlib_tensor *t = j->t;
    const qk_weights *w = &t->w;
    size_t nb = w->k / QK, bpg = w->group / QK;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *in = j->in + r * nb * j->bb;
        uint8_t *row = qlib_t_codes(t) + r * w->row_bytes;
        if (w->bits == 4) q4_0_import_row(in, nb, w->kp, row);
        else q8_0_import_row(in, nb, w->kp, row);
        for (size_t g = 0; w->scale_stride && g < w->n_groups; g++)
            qlib_t_scales(t)[r * w->scale_stride + g] = lt_get16(in + g * bpg * j->bb);
    }
}

static qlib_status import_parts(const lt_import *a, const char *name, qlib_tensor **out)
{
    size_t bb = block_bytes(a->bits);
    qlib_status s = check_scales(a, bb, name);
    qlib_tensor *t;
    if (s == QLIB_OK) s = lt_tensor_new(a, QLIB_METHOD_RTN, a->group_size, 1, 0, &t);
    if (s != QLIB_OK) return s;
    if (!t->w.scale_stride) qlib_t_scales(t)[0] = lt_get16(a->part[0]);
    import_job j = { t, a->part[0], bb };
    lt_rows_parallel(a->ctx, a->n, 16, import_rows, &j);
    qlib_tensor_seal(t, 0.0, 0);
    *out = t;
    return QLIB_OK;
}

static qlib_status q4_0_import(const lt_import *a, qlib_tensor **out)
{
    return import_parts(a, "GGML Q4_0", out);
}

static qlib_status q8_0_import(const lt_import *a, qlib_tensor **out)
{
    return import_parts(a, "GGML Q8_0", out);
}

const lt_codec qlib_layout_q4_0 = {
    "GGML Q4_0", 1, { "blocks", NULL, NULL, NULL },
    q4_0_export_size, q4_0_export, q4_0_import_size, q4_0_import,
};

const lt_codec qlib_layout_q8_0 = {
    "GGML Q8_0", 1, { "blocks", NULL, NULL, NULL },
    q8_0_export_size, q8_0_export, q8_0_import_size, q8_0_import,
};
