/* AutoAWQ "gemm" checkpoint tensors (docs/FORMATS.md): qweight int32
 * [K][N/8], qzeros int32 [G][N/8], scales fp16 [G][N], 4-bit codes. A word
 * holds eight neighbouring output columns of one input row, interleaved:
 * nibble i is column 8j + order[i]. The checkpoint's weights already hold
 * AWQ's scales (folded into the previous operation), so a tensor with input
 * scales cannot be written, and an imported one has none. */
#include "layouts.h"

#define LO 0x0f0f0f0f0f0f0f0full
#define TILE 128                 /* output columns per pass: 16 words, 64 bytes of a qweight row */

static const unsigned order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };   /* nibble -> column */
static const unsigned nibble[8] = { 0, 4, 1, 5, 2, 6, 3, 7 };  /* column -> nibble */

/* ---- export ---- */

static qlib_status awq_export_size(const qlib_tensor *t, size_t bytes[LT_PARTS], const char *fn)
{
    size_t n = t->d.n, k = t->d.k, G = t->w.n_groups;
    int gs = t->d.group_size;
    if (t->d.bits != 4)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: AWQ GEMM holds 4-bit codes; the tensor has "
                         "%d bits", fn, t->d.bits);
    if (t->perm)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: AWQ GEMM has no column permutation; the "
                         "tensor is act-order (the GPTQ layout can hold it)", fn);
    if (n % 8)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: AWQ GEMM packs 8 output columns per word; "
                         "N=%zu is not a multiple of 8", fn, n);
    if (gs > 0 && k % (size_t)gs)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: AWQ GEMM has K / group_size groups; K=%zu "
                         "is not a multiple of the group size %d", fn, k, gs);
    bytes[0] = k * (n / 8) * 4;
    bytes[1] = G * (n / 8) * 4;
    bytes[2] = G * n * 2;
    return QLIB_OK;
}

/* The 8 x 8 byte matrix x[i] (byte t of word i) transposed in place: byte
 * i of x[t] becomes byte t of the old x[i]. Blocks of 4, 2, 1 bytes swap. */
static inline __attribute__((always_inline)) void transpose8(uint64_t x[8])
{
    for (int i = 0; i < 4; i++) {
        uint64_t t = ((x[i] >> 32) ^ x[i + 4]) & 0x00000000ffffffffull;
        x[i] ^= t << 32, x[i + 4] ^= t;
    }
    for (int i = 0; i < 8; i += (i & 1) ? 3 : 1) {
        uint64_t t = ((x[i] >> 16) ^ x[i + 2]) & 0x0000ffff0000ffffull;
        x[i] ^= t << 16, x[i + 2] ^= t;
    }
    for (int i = 0; i < 8; i += 2) {
        uint64_t t = ((x[i] >> 8) ^ x[i + 1]) & 0x00ff00ff00ff00ffull;
        x[i] ^= t << 8, x[i + 1] ^= t;
    }
}

/* Byte rho of the 32-byte chunk m of a row holds the codes of input rows
 * 64m + rho (low nibble) and 64m + 32 + rho (high nibble). Eight bytes of
 * each of the eight rows of word j, transposed, give eight bytes each
 * holding the eight columns' codes of two input rows in nibble order. */
static void qweight_out(const qk_weights *w, uint8_t *qw)
{
    size_t n = w->n, k = w->k, nw = n / 8;
    for (size_t c0 = 0; c0 < n; c0 += TILE)
        for (size_t j = c0 / 8; j < (c0 + TILE) / 8 && j < nw; j++)
            for (size_t m = 0; m < w->kp / 64; m++) {
                const uint8_t *p[8];
                for (int i = 0; i < 8; i++)
                    p[i] = w->codes + (8 * j + order[i]) * w->row_bytes + 32 * m;
                for (size_t q = 0; q < 32; q += 8) {
                    uint64_t x[8];
                    for (int i = 0; i < 8; i++) x[i] = lt_get64(p[i] + q);
                    transpose8(x);
                    for (size_t t = 0; t < 8; t++) {
                        size_t r = 64 * m + q + t;
                        if (r < k) lt_put32(qw + (r * nw + j) * 4, lt_nibbles_compress(x[t] & LO));
                        if (r + 32 < k)
                            lt_put32(qw + ((r + 32) * nw + j) * 4,
                                     lt_nibbles_compress((x[t] >> 4) & LO));
                    }
                }
            }
}

static qlib_status awq_export(const qlib_tensor *t, uint8_t *const part[LT_PARTS],
                              const char *fn)
{
    (void)fn;
    const qk_weights *w = &t->w;
    size_t n = w->n, nw = n / 8;
    for (size_t g = 0; g < w->n_groups; g++) {
        for (size_t c = 0; c < n; c++)
            lt_put16(part[2] + (g * n + c) * 2, w->scales[c * w->scale_stride + g]);
        for (size_t j = 0; j < nw; j++) {
            uint32_t z = 0;
            for (unsigned i = 0; i < 8; i++)
                z |= qlib_zero_get(w, (8 * j + order[i]) * w->scale_stride + g) << (4 * i);
            lt_put32(part[1] + (g * nw + j) * 4, z);
        }
    }
    qweight_out(w, part[0]);
    return QLIB_OK;
}

/* ---- import ---- */

static qlib_status awq_import_size(const lt_import *a, size_t bytes[LT_PARTS])
{
    size_t n = a->n, k = a->k, G = a->group_size > 0 ? k / (size_t)a->group_size : 1;
    if (a->bits != 4)
        return qlib_fail(QLIB_ERR_ARG, "%s: AWQ GEMM holds 4-bit codes, not %d", a->fn,
                         a->bits);
    if (n % 8)
        return qlib_fail(QLIB_ERR_ARG, "%s: AWQ GEMM packs 8 output columns per word; n=%zu",
                         a->fn, n);
    if (a->group_size > 0 && k % (size_t)a->group_size)
        return qlib_fail(QLIB_ERR_ARG, "%s: AWQ GEMM has k / group_size groups; k=%zu is not "
                         "a multiple of %d", a->fn, k, a->group_size);
    if (qlib_mul_overflows(k, n / 8, &bytes[0]) || bytes[0] > SIZE_MAX / 4 ||
        qlib_mul_overflows(G, n, &bytes[2]) || bytes[2] > SIZE_MAX / 2)
        return qlib_fail(QLIB_ERR_ARG, "%s: %zu x %zu overflows", a->fn, n, k);
    bytes[0] *= 4;
    bytes[1] = G * (n / 8) * 4;
    bytes[2] *= 2;
    return QLIB_OK;
}

typedef struct fill_job {
    const lt_import *a;
    qlib_tensor *t;
} fill_job;

/* The inverse of qweight_out: input rows past k take the last group's zero
 * points, which qzeros holds in the same nibble order. */
static void fill_codes(const fill_job *f, size_t c0, size_t c1)
{
    const lt_import *a = f->a;
    const qk_weights *w = &f->t->w;
    const uint8_t *qw = a->part[0], *pad = a->part[1] + (a->groups - 1) * (a->n / 8) * 4;
    size_t k = a->k, nw = a->n / 8;
    for (size_t m = 0; m < w->kp / 64; m++)
        for (size_t j = c0 / 8; j < c1 / 8; j++) {
            uint8_t *p[8];
            uint32_t zw = lt_get32(pad + j * 4);
            for (int i = 0; i < 8; i++)
                p[i] = qlib_t_codes(f->t) + (8 * j + order[i]) * w->row_bytes + 32 * m;
            for (size_t q = 0; q < 32; q += 8) {
                uint64_t x[8];
                for (size_t t = 0; t < 8; t++) {
                    size_t r = 64 * m + q + t;
                    uint32_t lo = r < k ? lt_get32(qw + (r * nw + j) * 4) : zw;
                    uint32_t hi = r + 32 < k ? lt_get32(qw + ((r + 32) * nw + j) * 4) : zw;
                    x[t] = lt_nibbles_expand(lo) | lt_nibbles_expand(hi) << 4;
                }
                transpose8(x);
                for (int i = 0; i < 8; i++) lt_put64(p[i] + q, x[i]);
            }
        }
}

static void fill_task(void *arg, size_t slot, size_t c0, size_t c1)
{
    (void)slot;
    const fill_job *f = arg;
    const lt_import *a = f->a;
    qlib_tensor *t = f->t;
    size_t n = a->n, nw = n / 8;
    fill_codes(f, c0, c1);
    for (size_t c = c0; c < c1; c++)
        for (size_t g = 0; g < a->groups; g++) {
            size_t e = c * t->w.scale_stride + g;
            qlib_t_scales(t)[e] = lt_get16(a->part[2] + (g * n + c) * 2);
            if (!t->d.symmetric) {
                uint32_t z = lt_get32(a->part[1] + (g * nw + c / 8) * 4);
                qlib_zero_put(qlib_t_zeros(t), e, 4, (z >> (4 * nibble[c % 8])) & 15u);
            }
        }
}

static qlib_status awq_import(const lt_import *a, qlib_tensor **out)
{
    size_t n = a->n, G = a->groups;    /* k / group_size: import_size checked k */
    size_t bad = lt_first_nonfinite_f16(a->part[2], G * n);
    if (bad < G * n)
        return qlib_fail(QLIB_ERR_FORMAT, "%s: AWQ scales[%zu][%zu] is Inf or NaN", a->fn,
                         bad / n, bad % n);
    int symmetric = 1;
    for (size_t i = 0; i < G * (n / 8); i++) symmetric &= lt_get32(a->part[1] + 4 * i) == 0x88888888u;
    qlib_tensor *t;
    qlib_status s = lt_tensor_new(a, QLIB_METHOD_AWQ, a->group_size > 0 ? a->group_size : 0,
                                  symmetric, 0, &t);
    if (s != QLIB_OK) return s;
    fill_job f = { a, t };
    lt_rows_parallel(a->ctx, n, TILE, fill_task, &f);
    qlib_tensor_seal(t, 0.0, 0);
    *out = t;
    return QLIB_OK;
}

const lt_codec qlib_layout_awq_gemm = {
    "AWQ GEMM", 3, { "qweight", "qzeros", "scales", NULL },
    awq_export_size, awq_export, awq_import_size, awq_import,
};
