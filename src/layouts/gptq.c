/* GPTQ checkpoint tensors, format "gptq" (v1) of AutoGPTQ / GPTQModel
 * (docs/FORMATS.md): qweight int32 [K*bits/32][N], qzeros int32
 * [G][N*bits/32] holding zero - 1, scales fp16 [G][N], g_idx int32 [K].
 * The codes of an output column run down a column of qweight as one
 * little-endian bit stream (so 3-bit codes straddle words); zero points run
 * along a row of qzeros the same way.
 *
 * qlib keeps act-order tensors as a permutation plus groups contiguous in
 * the permuted order; g_idx names the group of each original column. Export
 * writes g_idx[perm[j]] = j / group; import sorts the columns by group
 * (ascending within a group) and refuses groupings qlib cannot hold. */
#include "layouts.h"

#define TILE 16                  /* output columns per pass: 64 bytes of a qweight row */
#define AHEAD 16                 /* qweight rows prefetched ahead */

static size_t words_per_col(size_t k, int bits) { return k * (size_t)bits / 32; }

/* ---- export ---- */

static qlib_status gptq_export_size(const qlib_tensor *t, size_t bytes[LT_PARTS],
                                    const char *fn)
{
    const qk_weights *w = &t->w;
    size_t n = t->d.n, k = t->d.k, bits = (size_t)t->d.bits;
    if (k * bits % 32)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: GPTQ packs the K x bits codes of a column "
                         "into 32-bit words; K=%zu at %zu bits does not fill them", fn, k, bits);
    if (n * bits % 32)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: GPTQ packs the N x bits zero points of a "
                         "group into 32-bit words; N=%zu at %zu bits does not fill them", fn, n,
                         bits);
    size_t entries = w->scale_stride ? n * w->n_groups : 1;
    for (size_t e = 0; !w->symmetric && e < entries; e++)
        if (qlib_zero_get(w, e) == 0)
            return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: row %zu, group %zu has zero point 0, "
                             "which GPTQ v1 cannot store (it stores zero - 1)", fn,
                             w->scale_stride ? e / w->n_groups : 0,
                             w->scale_stride ? e % w->n_groups : 0);
    bytes[0] = words_per_col(k, t->d.bits) * n * 4;
    bytes[1] = w->n_groups * (n * bits / 32) * 4;
    bytes[2] = w->n_groups * n * 2;
    bytes[3] = k * 4;
    return QLIB_OK;
}

/* ---- one output column's words ----
 * A column of qweight is the bit stream of the column's K codes in original
 * order; qlib's rows hold those codes in stored order, packed by 32 or 64
 * (docs/FORMAT.md). A pass takes TILE columns: their words go to a buffer,
 * one column after the other, and are written (or read) a qweight row at a
 * time, TILE neighbouring words. */

/* Eight 2-bit values, one per byte, as 16 bits (value i at bits 2i); and back. */
static uint32_t crumbs_compress(uint64_t v)
{
    v = (v | (v >> 6)) & 0x000f000f000f000full;
    v = (v | (v >> 12)) & 0x000000ff000000ffull;
    return (uint32_t)((v | (v >> 24)) & 0xffffu);
}
static uint64_t crumbs_expand(uint32_t w)
{
    uint64_t v = w;
    v = (v | (v << 24)) & 0x000000ff000000ffull;
    v = (v | (v << 12)) & 0x000f000f000f000full;
    return (v | (v << 6)) & 0x0303030303030303ull;
}

/* Eight 3-bit values, one per byte, as 24 bits (value i at bits 3i); and back. */
static uint32_t triples_compress(uint64_t v)
{
    v = (v | (v >> 5)) & 0x003f003f003f003full;
    v = (v | (v >> 10)) & 0x00000fff00000fffull;
    return (uint32_t)((v | (v >> 20)) & 0xffffffu);
}
static uint64_t triples_expand(uint32_t w)
{
    uint64_t v = w;
    v = (v | (v << 20)) & 0x00000fff00000fffull;
    v = (v | (v << 10)) & 0x003f003f003f003full;
    return (v | (v << 5)) & 0x0707070707070707ull;
}

/* The k * bits / 32 words of k codes (one byte each, original order). */
static void words_of_codes(const uint8_t *codes, size_t k, int bits, uint32_t *words)
{
    size_t nw = words_per_col(k, bits);
    switch (bits) {
    case 8:
        memcpy(words, codes, nw * 4);
        break;
    case 4:
        for (size_t i = 0; i < nw; i++) words[i] = lt_nibbles_compress(lt_get64(codes + 8 * i));
        break;
    case 2:
        for (size_t i = 0; i < nw; i++)
            words[i] = crumbs_compress(lt_get64(codes + 16 * i)) |
                       crumbs_compress(lt_get64(codes + 16 * i + 8)) << 16;
        break;
    default: /* 3: 32 codes, 96 bits, 3 words */
        for (size_t i = 0; i < k / 32; i++, codes += 32, words += 3) {
            uint32_t t[4];
            for (int q = 0; q < 4; q++) t[q] = triples_compress(lt_get64(codes + 8 * q));
            words[0] = t[0] | t[1] << 24;
            words[1] = t[1] >> 8 | t[2] << 16;
            words[2] = t[2] >> 16 | t[3] << 8;
        }
        break;
    }
}

static void codes_of_words(const uint32_t *words, size_t k, int bits, uint8_t *codes)
{
    size_t nw = words_per_col(k, bits);
    switch (bits) {
    case 8:
        memcpy(codes, words, nw * 4);
        break;
    case 4:
        for (size_t i = 0; i < nw; i++) lt_put64(codes + 8 * i, lt_nibbles_expand(words[i]));
        break;
    case 2:
        for (size_t i = 0; i < nw; i++) {
            lt_put64(codes + 16 * i, crumbs_expand(words[i] & 0xffffu));
            lt_put64(codes + 16 * i + 8, crumbs_expand(words[i] >> 16));
        }
        break;
    default:
        for (size_t i = 0; i < k / 32; i++, codes += 32, words += 3) {
            uint32_t t[4] = { words[0] & 0xffffffu, (words[0] >> 24 | words[1] << 8) & 0xffffffu,
                              (words[1] >> 16 | words[2] << 16) & 0xffffffu, words[2] >> 8 };
            for (int q = 0; q < 4; q++) lt_put64(codes + 8 * q, triples_expand(t[q]));
        }
        break;
    }
}

/* 4 bits in stored order: the eight words of a 64-code chunk are the low
 * nibbles of its 32 bytes (codes 0..31), then the high ones. */
static void words_of_row4(const uint8_t *row, size_t nw, uint32_t *words)
{
    for (size_t m = 0; 8 * m < nw; m++, row += 32) {
        uint32_t wd[8];
        for (int i = 0; i < 4; i++) {
            uint64_t v = lt_get64(row + 8 * i);
            wd[i] = lt_nibbles_compress(v & 0x0f0f0f0f0f0f0f0full);
            wd[4 + i] = lt_nibbles_compress((v >> 4) & 0x0f0f0f0f0f0f0f0full);
        }
        memcpy(words + 8 * m, wd, (nw - 8 * m < 8 ? nw - 8 * m : 8) * 4);
    }
}

/* The inverse, for a row of kp codes: codes past k (whole words: k % 8 is
 * 0) are pad. */
static void row4_of_words(const uint32_t *words, size_t nw, size_t kp, unsigned pad, uint8_t *row)
{
    uint32_t padw = pad * 0x11111111u;
    for (size_t m = 0; m < kp / 64; m++, row += 32) {
        uint64_t e[8];
        for (size_t i = 0; i < 8; i++) e[i] = lt_nibbles_expand(8 * m + i < nw ? words[8 * m + i] : padw);
        for (size_t i = 0; i < 4; i++) lt_put64(row + 8 * i, e[i] | e[4 + i] << 4);
    }
}

/* Bytes of scratch a pass needs: TILE columns of words, a row's codes twice. */
static size_t pass_scratch(size_t k, size_t kp, int bits)
{
    return qlib_round_up(TILE * words_per_col(k, bits) * 4 + kp + k, 64);
}

/* inv: the stored position of each original column, or NULL. */
static void qweight_out(const qlib_tensor *t, const int32_t *inv, uint8_t *qw, uint8_t *scratch)
{
    const qk_weights *w = &t->w;
    size_t n = w->n, k = w->k, nw = words_per_col(k, w->bits);
    uint32_t *wb = (uint32_t *)(void *)scratch;
    uint8_t *stored = scratch + TILE * nw * 4, *orig = stored + w->kp;
    for (size_t c0 = 0; c0 < n; c0 += TILE) {
        size_t c1 = c0 + TILE < n ? c0 + TILE : n;
        for (size_t c = c0; c < c1; c++) {
            const uint8_t *row = w->codes + c * w->row_bytes;
            uint32_t *col = wb + (c - c0) * nw;
            if (!t->perm && w->bits == 8) {
                memcpy(col, row, nw * 4);
            } else if (!t->perm && w->bits == 4) {
                words_of_row4(row, nw, col);
            } else {
                qlib_unpack_row(w->bits, row, w->kp, stored);
                if (inv)
                    for (size_t r = 0; r < k; r++) orig[r] = stored[inv[r]];
                words_of_codes(inv ? orig : stored, k, w->bits, col);
            }
        }
        for (size_t i = 0; i < nw; i++) {
            /* rows TILE * 4 bytes long, 4n apart: no prefetcher follows them */
            if (i + AHEAD < nw) __builtin_prefetch(qw + ((i + AHEAD) * n + c0) * 4, 1);
            for (size_t c = c0; c < c1; c++) lt_put32(qw + (i * n + c) * 4, wb[(c - c0) * nw + i]);
        }
    }
}

static qlib_status gptq_export(const qlib_tensor *t, uint8_t *const part[LT_PARTS],
                               const char *fn)
{
    const qk_weights *w = &t->w;
    size_t n = w->n, k = w->k, zrow = n * (size_t)w->bits / 32 * 4;
    size_t pass = pass_scratch(k, w->kp, w->bits), zbytes = qlib_round_up(n, 64);
    uint8_t *tmp = qlib_mem_alloc(&t->alloc, pass + zbytes + (t->perm ? k * 4 : 0));
    if (!tmp) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", fn);
    uint8_t *z = tmp + pass;
    int32_t *inv = t->perm ? (int32_t *)(void *)(z + zbytes) : NULL;
    for (size_t g = 0; g < w->n_groups; g++) {
        for (size_t c = 0; c < n; c++) {
            size_t e = c * w->scale_stride + g;
            lt_put16(part[2] + (g * n + c) * 2, w->scales[e]);
            z[c] = (uint8_t)(qlib_zero_get(w, e) - 1u);
        }
        lt_stream_pack(z, n, w->bits, part[1] + g * zrow, 4);
    }
    for (size_t j = 0; j < k; j++) {
        size_t r = t->perm ? (size_t)t->perm[j] : j;
        lt_put32(part[3] + r * 4, (uint32_t)(j / w->group));
        if (inv) inv[r] = (int32_t)j;
    }
    qweight_out(t, inv, part[0], tmp);
    qlib_mem_free(&t->alloc, tmp);
    return QLIB_OK;
}

/* ---- import ---- */

static qlib_status gptq_import_size(const lt_import *a, size_t bytes[LT_PARTS])
{
    size_t n = a->n, k = a->k, b = (size_t)a->bits, words, zwords;
    if (b != 2 && b != 3 && b != 4 && b != 8)
        return qlib_fail(QLIB_ERR_ARG, "%s: GPTQ holds 2, 3, 4 or 8-bit codes, not %d", a->fn,
                         a->bits);
    if (k * b % 32 || n * b % 32)
        return qlib_fail(QLIB_ERR_ARG, "%s: GPTQ packs %zu-bit codes into 32-bit words: k=%zu "
                         "and n=%zu must fill them", a->fn, b, k, n);
    if (qlib_mul_overflows(words_per_col(k, a->bits), n, &words) || words > SIZE_MAX / 4 ||
        qlib_mul_overflows(a->groups, n * b / 32, &zwords) || zwords > SIZE_MAX / 4 ||
        qlib_mul_overflows(a->groups, n, &bytes[2]) || bytes[2] > SIZE_MAX / 2)
        return qlib_fail(QLIB_ERR_ARG, "%s: %zu x %zu overflows", a->fn, n, k);
    bytes[0] = words * 4;
    bytes[1] = zwords * 4;
    bytes[2] *= 2;
    bytes[3] = k * 4;
    return QLIB_OK;
}

/* What the checks learn and the fill needs: the stored zero points (one
 * byte each), and the order g_idx gives the columns (has_perm: not the
 * identity). */
typedef struct gptq_in {
    const lt_import *a;
    uint8_t *zeros;              /* groups x n: zero - 1 as stored */
    int32_t *perm;               /* k */
    int symmetric, has_perm;
} gptq_in;

static qlib_status check_zeros(gptq_in *in)
{
    const lt_import *a = in->a;
    size_t n = a->n, zrow = n * (size_t)a->bits / 32 * 4;
    unsigned top = (1u << a->bits) - 1u, mid = (1u << (a->bits - 1)) - 1u;
    in->symmetric = 1;
    for (size_t g = 0; g < a->groups; g++) {
        uint8_t *z = in->zeros + g * n;
        lt_stream_unpack(a->part[1] + g * zrow, 4, n, a->bits, z);
        for (size_t c = 0; c < n; c++) {
            if (z[c] == top)
                return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: GPTQ qzeros[%zu] of column %zu is "
                                 "%u: zero point %u, beyond qlib's %d-bit zero points", a->fn,
                                 g, c, top, top + 1, a->bits);
            in->symmetric &= z[c] == mid;
        }
    }
    return QLIB_OK;
}

/* g_idx as qlib's groups: group g holds group_size columns (the last one
 * the rest); columns go to the stored order by group, ascending within. */
static qlib_status check_g_idx(gptq_in *in, size_t *next)
{
    const lt_import *a = in->a;
    size_t k = a->k, G = a->groups, gs = a->group_size > 0 ? (size_t)a->group_size : k;
    memset(next, 0, G * sizeof *next);
    for (size_t r = 0; r < k; r++) {
        int32_t v = (int32_t)lt_get32(a->part[3] + r * 4);
        if (v < 0 || (size_t)v >= G)
            return qlib_fail(QLIB_ERR_FORMAT, "%s: GPTQ g_idx[%zu] = %d; there are %zu groups",
                             a->fn, r, (int)v, G);
        next[v]++;
    }
    for (size_t g = 0; g < G; g++) {
        size_t want = g + 1 < G ? gs : k - g * gs;
        if (next[g] != want)
            return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: GPTQ g_idx puts %zu columns in group "
                             "%zu; qlib holds groups of %zu columns (the last one %zu)", a->fn,
                             next[g], g, gs, k - (G - 1) * gs);
        next[g] = g * gs;
    }
    in->has_perm = 0;
    for (size_t r = 0; r < k; r++) {
        size_t j = next[lt_get32(a->part[3] + r * 4)]++;
        in->perm[j] = (int32_t)r;
        in->has_perm |= j != r;
    }
    return QLIB_OK;
}

typedef struct fill_job {
    const gptq_in *in;
    qlib_tensor *t;
    uint8_t *scratch;            /* per slot: pass_scratch bytes */
    size_t slot_bytes;
} fill_job;

/* A row's padding: the zero point of its last group. */
static unsigned pad_code(const gptq_in *in, size_t c)
{
    return (unsigned)in->zeros[(in->a->groups - 1) * in->a->n + c] + 1u;
}

/* The inverse of qweight_out for columns [c0, c1). */
static void qweight_in(const fill_job *j, size_t slot, size_t c0, size_t c1)
{
    const lt_import *a = j->in->a;
    const qk_weights *w = &j->t->w;
    size_t n = a->n, k = a->k, nw = words_per_col(k, a->bits);
    uint8_t *scratch = j->scratch + slot * j->slot_bytes;
    uint32_t *wb = (uint32_t *)(void *)scratch;
    uint8_t *stored = scratch + TILE * nw * 4, *orig = stored + w->kp;
    for (size_t i = 0; i < nw; i++) {
        if (i + AHEAD < nw) __builtin_prefetch(a->part[0] + ((i + AHEAD) * n + c0) * 4, 0);
        for (size_t c = c0; c < c1; c++) wb[(c - c0) * nw + i] = lt_get32(a->part[0] + (i * n + c) * 4);
    }
    for (size_t c = c0; c < c1; c++) {
        const uint32_t *col = wb + (c - c0) * nw;
        uint8_t *row = qlib_t_codes(j->t) + c * w->row_bytes;
        unsigned pad = pad_code(j->in, c);
        if (!j->in->has_perm && a->bits == 4) {
            row4_of_words(col, nw, w->kp, pad, row);
        } else if (!j->in->has_perm && a->bits == 8) {
            memcpy(row, col, k);
            lt_pad_codes(row, k, w->kp, pad);
        } else {
            codes_of_words(col, k, a->bits, j->in->has_perm ? orig : stored);
            if (j->in->has_perm)
                for (size_t s = 0; s < k; s++) stored[s] = orig[j->in->perm[s]];
            lt_pad_codes(stored, k, w->kp, pad);
            qlib_pack_row(a->bits, stored, w->kp, row);
        }
    }
}

static void fill_task(void *arg, size_t slot, size_t c0, size_t c1)
{
    const fill_job *j = arg;
    qlib_tensor *t = j->t;
    const lt_import *a = j->in->a;
    size_t n = a->n;
    qweight_in(j, slot, c0, c1);
    for (size_t c = c0; c < c1; c++)
        for (size_t g = 0; g < a->groups; g++) {
            size_t e = c * t->w.scale_stride + g;
            qlib_t_scales(t)[e] = lt_get16(a->part[2] + (g * n + c) * 2);
            if (!j->in->symmetric)
                qlib_zero_put(qlib_t_zeros(t), e, a->bits, j->in->zeros[g * n + c] + 1u);
        }
}

static qlib_status gptq_import(const lt_import *a, qlib_tensor **out)
{
    size_t n = a->n, k = a->k, G = a->groups, bad;
    size_t kp = qlib_round_up(k, QK_KALIGN), slots = (size_t)a->ctx->n_threads;
    bad = lt_first_nonfinite_f16(a->part[2], G * n);
    if (bad < G * n)
        return qlib_fail(QLIB_ERR_FORMAT, "%s: GPTQ scales[%zu][%zu] is Inf or NaN", a->fn,
                         bad / n, bad % n);
    /* zeros, next (per group), perm, and each thread's pass */
    size_t zbytes = qlib_round_up(G * n, 64), nbytes = qlib_round_up(G * sizeof(size_t), 64);
    size_t pbytes = qlib_round_up(k * 4, 64), pass = pass_scratch(k, kp, a->bits);
    size_t total = zbytes + nbytes + pbytes + slots * pass;
    uint8_t *mem = qlib_mem_alloc(&a->ctx->alloc, total);
    if (!mem) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", a->fn);
    gptq_in in = { a, mem, (int32_t *)(void *)(mem + zbytes + nbytes), 0, 0 };
    qlib_tensor *t = NULL;
    qlib_status s = check_zeros(&in);
    if (s == QLIB_OK) s = check_g_idx(&in, (size_t *)(void *)(mem + zbytes));
    if (s == QLIB_OK)
        s = lt_tensor_new(a, QLIB_METHOD_GPTQ, a->group_size > 0 ? a->group_size : 0,
                          in.symmetric, in.has_perm, &t);
    if (s == QLIB_OK) {
        if (in.has_perm) memcpy((int32_t *)t->perm, in.perm, k * 4);
        fill_job j = { &in, t, mem + zbytes + nbytes + pbytes, pass };
        lt_rows_parallel(a->ctx, n, TILE, fill_task, &j);
        qlib_tensor_seal(t, 0.0, 0);
        *out = t;
    }
    qlib_mem_free(&a->ctx->alloc, mem);
    return s;
}

const lt_codec qlib_layout_gptq = {
    "GPTQ", 4, { "qweight", "qzeros", "scales", "g_idx" },
    gptq_export_size, gptq_export, gptq_import_size, gptq_import,
};
