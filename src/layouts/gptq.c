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

/* 4 bits without a permutation: the eight words of a 64-code chunk are the
 * low nibbles of its 32 bytes (codes 0..31), then the high ones. */
static void qweight_out_4bit(const qk_weights *w, uint8_t *qw)
{
    size_t n = w->n, nw = words_per_col(w->k, 4);
    for (size_t c0 = 0; c0 < n; c0 += TILE) {
        size_t c1 = c0 + TILE < n ? c0 + TILE : n;
        for (size_t m = 0; 8 * m < nw; m++)
            for (size_t c = c0; c < c1; c++) {
                const uint8_t *p = w->codes + c * w->row_bytes + 32 * m;
                uint32_t word[8];
                for (int i = 0; i < 4; i++) {
                    uint64_t v = lt_get64(p + 8 * i);
                    word[i] = lt_nibbles_compress(v & 0x0f0f0f0f0f0f0f0full);
                    word[4 + i] = lt_nibbles_compress((v >> 4) & 0x0f0f0f0f0f0f0f0full);
                }
                for (size_t i = 0; i < 8 && 8 * m + i < nw; i++)
                    lt_put32(qw + ((8 * m + i) * n + c) * 4, word[i]);
            }
    }
}

/* Any width, any permutation: each row's codes back in original column
 * order, then packed down its column of qweight. */
static void qweight_out_generic(const qlib_tensor *t, uint8_t *qw, uint8_t *stored,
                                uint8_t *orig)
{
    const qk_weights *w = &t->w;
    for (size_t c = 0; c < w->n; c++) {
        qlib_unpack_row(w->bits, w->codes + c * w->row_bytes, w->kp, stored);
        if (t->perm)
            for (size_t j = 0; j < w->k; j++) orig[t->perm[j]] = stored[j];
        lt_stream_pack(t->perm ? orig : stored, w->k, w->bits, qw + c * 4, w->n * 4);
    }
}

static qlib_status gptq_export(const qlib_tensor *t, uint8_t *const part[LT_PARTS],
                               const char *fn)
{
    const qk_weights *w = &t->w;
    size_t n = w->n, k = w->k, zrow = n * (size_t)w->bits / 32 * 4;
    int generic = w->bits != 4 || t->perm;
    uint8_t *tmp = qlib_mem_alloc(&t->alloc, n + (generic ? w->kp + k : 0));
    if (!tmp) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t g = 0; g < w->n_groups; g++) {
        for (size_t c = 0; c < n; c++) {
            size_t e = c * w->scale_stride + g;
            lt_put16(part[2] + (g * n + c) * 2, w->scales[e]);
            tmp[c] = (uint8_t)(qlib_zero_get(w, e) - 1u);
        }
        lt_stream_pack(tmp, n, w->bits, part[1] + g * zrow, 4);
    }
    for (size_t j = 0; j < k; j++)
        lt_put32(part[3] + (t->perm ? (size_t)t->perm[j] : j) * 4, (uint32_t)(j / w->group));
    if (generic) qweight_out_generic(t, part[0], tmp, tmp + w->kp);
    else qweight_out_4bit(w, part[0]);
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
 * byte each), the permutation (NULL when g_idx is in order). */
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
    uint8_t *scratch;            /* per slot: kp + k bytes */
} fill_job;

/* A row's padding: the zero point of its last group. */
static unsigned pad_code(const gptq_in *in, size_t c)
{
    return (unsigned)in->zeros[(in->a->groups - 1) * in->a->n + c] + 1u;
}

static void fill_4bit(const fill_job *j, size_t c0, size_t c1)
{
    const lt_import *a = j->in->a;
    const qk_weights *w = &j->t->w;
    const uint8_t *qw = a->part[0];
    size_t n = a->n, nw = words_per_col(a->k, 4);
    for (size_t m = 0; m < w->kp / 64; m++)
        for (size_t c = c0; c < c1; c++) {
            uint8_t *p = qlib_t_codes(j->t) + c * w->row_bytes + 32 * m;
            uint64_t e[8];
            uint32_t pad = pad_code(j->in, c) * 0x11111111u;   /* k % 8 == 0: whole words */
            for (size_t i = 0; i < 8; i++) {
                size_t wi = 8 * m + i;
                e[i] = lt_nibbles_expand(wi < nw ? lt_get32(qw + (wi * n + c) * 4) : pad);
            }
            for (size_t i = 0; i < 4; i++) lt_put64(p + 8 * i, e[i] | e[4 + i] << 4);
        }
}

static void fill_generic(const fill_job *j, size_t slot, size_t c0, size_t c1)
{
    const lt_import *a = j->in->a;
    const qk_weights *w = &j->t->w;
    uint8_t *stored = j->scratch + slot * (w->kp + a->k), *orig = stored + w->kp;
    for (size_t c = c0; c < c1; c++) {
        lt_stream_unpack(a->part[0] + c * 4, a->n * 4, a->k, a->bits, j->in->has_perm ? orig : stored);
        if (j->in->has_perm)
            for (size_t s = 0; s < a->k; s++) stored[s] = orig[j->in->perm[s]];
        lt_pad_codes(stored, a->k, w->kp, pad_code(j->in, c));
        qlib_pack_row(a->bits, stored, w->kp, qlib_t_codes(j->t) + c * w->row_bytes);
    }
}

static void fill_task(void *arg, size_t slot, size_t c0, size_t c1)
{
    const fill_job *j = arg;
    qlib_tensor *t = j->t;
    const lt_import *a = j->in->a;
    size_t n = a->n;
    if (a->bits == 4 && !j->in->has_perm) fill_4bit(j, c0, c1);
    else fill_generic(j, slot, c0, c1);
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
    /* zeros, next (per group), perm, and per thread a row's codes twice */
    size_t zbytes = qlib_round_up(G * n, 8), nbytes = G * sizeof(size_t), pbytes = k * 4;
    size_t sbytes = slots * (kp + k), total = zbytes + nbytes + pbytes + sbytes;
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
        fill_job j = { &in, t, mem + zbytes + nbytes + pbytes };
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
