/* The public entry points of the external layouts and the checks they
 * share; the codecs (ggml.c, gptq.c, awq.c) see only requests that passed. */
#include <limits.h>

#include "layouts.h"

#define LT_SERIAL_ROWS 64   /* fewer rows than this: one thread */

/* Indexed by qlib_layout; the values are pinned in qlib.h. */
static const lt_codec *const codecs[] = {
    NULL, &qlib_layout_q4_0, &qlib_layout_q8_0, &qlib_layout_gptq, &qlib_layout_awq_gemm,
};
_Static_assert(QLIB_LAYOUT_GGML_Q4_0 == 1 && QLIB_LAYOUT_GGML_Q8_0 == 2 &&
               QLIB_LAYOUT_GPTQ == 3 && QLIB_LAYOUT_AWQ_GEMM == 4, "layout values are pinned");
_Static_assert(QLIB_LAYOUT_MAX_PARTS == 4, "four parts");

static const lt_codec *codec_of(qlib_layout layout, const char *fn, qlib_status *s)
{
    unsigned i = (unsigned)layout;
    if (i < sizeof codecs / sizeof codecs[0] && codecs[i]) return codecs[i];
    *s = qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: unknown layout %d", fn, (int)layout);
    return NULL;
}

/* What no layout can hold; the codec checks the rest. */
static qlib_status exportable(const qlib_tensor *t, const lt_codec *c, const char *fn)
{
    if (qlib_method_lookup(t->d.method)->float_weights)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: %s holds quantized codes; this is a %d-bit "
                         "float tensor", fn, c->name, t->d.bits);
    if (qlib_tensor_outlier_threshold(t) > 0.0f)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: this LLM.int8() tensor multiplies outlier "
                         "columns in fp32 (threshold %g), which %s cannot express",
                         fn, (double)qlib_tensor_outlier_threshold(t), c->name);
    if (t->input_scales)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: the tensor has input scales, which %s "
                         "cannot hold: fold them first (qlib_tensor_fold_input_scales)",
                         fn, c->name);
    return QLIB_OK;
}

static qlib_status sizes_of(const qlib_tensor *t, const lt_codec *c, size_t bytes[LT_PARTS],
                            const char *fn)
{
    memset(bytes, 0, sizeof(size_t) * LT_PARTS);
    qlib_status s = exportable(t, c, fn);
    if (s == QLIB_OK) s = c->export_size(t, bytes, fn);
    if (s != QLIB_OK) memset(bytes, 0, sizeof(size_t) * LT_PARTS);
    return s;
}

qlib_status qlib_tensor_export_size(const qlib_tensor *t, qlib_layout layout,
                                    size_t part_bytes[4])
{
    static const char fn[] = "qlib_tensor_export_size";
    qlib_status s = QLIB_OK;
    if (!part_bytes) return qlib_fail(QLIB_ERR_ARG, "%s: part_bytes is NULL", fn);
    memset(part_bytes, 0, sizeof(size_t) * LT_PARTS);
    if (!t) return qlib_fail(QLIB_ERR_ARG, "%s: tensor is NULL", fn);
    const lt_codec *c = codec_of(layout, fn, &s);
    return c ? sizes_of(t, c, part_bytes, fn) : s;
}

static int overlap(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
    return alen && blen && a0 < b0 + blen && b0 < a0 + alen;
}

qlib_status qlib_tensor_export(const qlib_tensor *t, qlib_layout layout, void *const parts[4],
                               const size_t part_bytes[4])
{
    static const char fn[] = "qlib_tensor_export";
    qlib_status s = QLIB_OK;
    size_t need[LT_PARTS];
    uint8_t *dst[LT_PARTS] = { NULL, NULL, NULL, NULL };
    if (!t || !parts || !part_bytes)
        return qlib_fail(QLIB_ERR_ARG, "%s: tensor, parts or part_bytes is NULL", fn);
    const lt_codec *c = codec_of(layout, fn, &s);
    if (!c) return s;
    s = sizes_of(t, c, need, fn);
    if (s != QLIB_OK) return s;
    for (unsigned i = 0; i < c->n_parts; i++) {
        if (!parts[i])
            return qlib_fail(QLIB_ERR_ARG, "%s: part %u (%s) is NULL", fn, i, c->part_name[i]);
        if (part_bytes[i] < need[i])
            return qlib_fail(QLIB_ERR_ARG, "%s: part %u (%s) has room for %zu bytes, needs %zu",
                             fn, i, c->part_name[i], part_bytes[i], need[i]);
        dst[i] = parts[i];
        for (unsigned j = 0; j < i; j++)
            if (overlap(dst[i], need[i], dst[j], need[j]))
                return qlib_fail(QLIB_ERR_ARG, "%s: parts %u and %u overlap", fn, j, i);
    }
    return c->export_parts(t, dst, fn);
}

qlib_status qlib_tensor_import(qlib_ctx *ctx, qlib_layout layout, size_t n, size_t k, int bits,
                               int group_size, const void *const parts[4],
                               const size_t part_bytes[4], qlib_tensor **out)
{
    static const char fn[] = "qlib_tensor_import";
    qlib_status s = QLIB_OK;
    size_t need[LT_PARTS] = { 0, 0, 0, 0 };
    if (!out) return qlib_fail(QLIB_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx || !parts || !part_bytes)
        return qlib_fail(QLIB_ERR_ARG, "%s: ctx, parts or part_bytes is NULL", fn);
    const lt_codec *c = codec_of(layout, fn, &s);
    if (!c) return s;
    if (n == 0 || k == 0) return qlib_fail(QLIB_ERR_ARG, "%s: n=%zu, k=%zu", fn, n, k);
    if (n > INT32_MAX || k > INT32_MAX)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: n=%zu, k=%zu above %d", fn, n, k,
                         INT32_MAX);
    if (group_size < -1)
        return qlib_fail(QLIB_ERR_ARG, "%s: group_size %d (-1, 0 or a positive size)", fn,
                         group_size);
    if (group_size > 0 && group_size % 32)
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: group_size %d: qlib's groups are "
                         "multiples of 32", fn, group_size);
    lt_import a;
    memset(&a, 0, sizeof a);
    a.ctx = ctx;
    a.n = n;
    a.k = k;
    a.bits = bits;
    a.group_size = group_size;
    a.groups = group_size > 0 ? (k + (size_t)group_size - 1) / (size_t)group_size : 1;
    a.fn = fn;
    s = c->import_size(&a, need);
    if (s != QLIB_OK) return s;
    for (unsigned i = 0; i < c->n_parts; i++) {
        if (!parts[i])
            return qlib_fail(QLIB_ERR_ARG, "%s: part %u (%s) is NULL", fn, i, c->part_name[i]);
        if (part_bytes[i] != need[i])
            return qlib_fail(QLIB_ERR_FORMAT, "%s: %s part %u (%s) has %zu bytes; %zu x %zu "
                             "at %d bits, group %d, needs %zu", fn, c->name, i,
                             c->part_name[i], part_bytes[i], n, k, bits, group_size, need[i]);
        a.part[i] = parts[i];
        a.bytes[i] = need[i];
    }
    return c->import_parts(&a, out);
}

/* ---- shared by the codecs ---- */

void lt_stream_pack(const uint8_t *v, size_t count, int bits, uint8_t *out, size_t stride)
{
    uint64_t acc = 0;
    unsigned have = 0;
    for (size_t i = 0; i < count; i++) {
        acc |= (uint64_t)v[i] << have;
        have += (unsigned)bits;
        if (have >= 32) {
            lt_put32(out, (uint32_t)acc);
            out += stride;
            acc >>= 32;
            have -= 32;
        }
    }
}

void lt_stream_unpack(const uint8_t *in, size_t stride, size_t count, int bits, uint8_t *v)
{
    uint64_t acc = 0;
    unsigned have = 0, mask = (1u << bits) - 1u;
    for (size_t i = 0; i < count; i++) {
        if (have < (unsigned)bits) {
            acc |= (uint64_t)lt_get32(in) << have;
            in += stride;
            have += 32;
        }
        v[i] = (uint8_t)(acc & mask);
        acc >>= bits;
        have -= (unsigned)bits;
    }
}

qlib_status lt_tensor_new(const lt_import *a, qlib_method method, int group_size, int symmetric,
                          int has_perm, qlib_tensor **out)
{
    qlib_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.method = method;
    d.bits = a->bits;
    d.group_size = group_size;
    d.symmetric = symmetric;
    d.n = a->n;
    d.k = a->k;
    d.has_perm = has_perm;
    return qlib_tensor_create(&a->ctx->alloc, &d, out, a->fn);
}

size_t lt_first_nonfinite_f16(const uint8_t *p, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!lt_f16_finite(lt_get16(p + 2 * i))) return i;
    return count;
}

typedef struct rows_job {
    void (*task)(void *, size_t, size_t, size_t);
    void *arg;
    size_t n, tile, per_task;
} rows_job;

static void rows_task(void *arg, size_t i)
{
    const rows_job *j = arg;
    size_t r0 = i * j->per_task, r1 = r0 + j->per_task < j->n ? r0 + j->per_task : j->n;
    for (size_t r = r0; r < r1; r += j->tile)
        j->task(j->arg, i, r, r + j->tile < r1 ? r + j->tile : r1);
}

void lt_rows_parallel(qlib_ctx *ctx, size_t n, size_t tile,
                      void (*task)(void *arg, size_t slot, size_t r0, size_t r1), void *arg)
{
    size_t tiles = (n + tile - 1) / tile, tasks = (size_t)ctx->n_threads;
    if (tasks > tiles) tasks = tiles;
    if (n < LT_SERIAL_ROWS) tasks = 1;
    rows_job j = { task, arg, n, tile, (tiles + tasks - 1) / tasks * tile };
    qlib_ctx_parallel_for(ctx, rows_task, &j, (n + j.per_task - 1) / j.per_task);
}
