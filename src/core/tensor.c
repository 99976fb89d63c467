/* Tensors: layout of the blob, queries, dequantize. */
#include <math.h>

#include "core.h"


size_t qlib_desc_group_cols(const qlib_tensor_desc *d)
{
    size_t kp = qlib_round_up(d->k, QK_KALIGN);
    return d->group_size > 0 && (size_t)d->group_size < kp ? (size_t)d->group_size : kp;
}

/* The description of a checked tensor has a row. */
static int is_quantized(const qlib_tensor_desc *d)
{
    return !qlib_method_lookup(d->method)->float_weights;
}

qlib_status qlib_desc_check(const qlib_tensor_desc *d, const char *fn, qlib_status code)
{
    size_t nk;
    const qlib_method_row *row = qlib_method_lookup(d->method);
    if (!row) return qlib_fail(code, "%s: unknown method %d", fn, (int)d->method);
    /* N x Kp, not N x K: rows are padded to Kp codes, and a section size
     * that wrapped around would let a blob drop its codes */
    if (d->n == 0 || d->k == 0 || d->k > ((size_t)1 << 40) ||
        qlib_mul_overflows(d->n, qlib_round_up(d->k, QK_KALIGN), &nk) || nk > SIZE_MAX / 8)
        return qlib_fail(code == QLIB_ERR_FORMAT ? code : QLIB_ERR_ARG,
                         "%s: bad size %zu x %zu", fn, d->n, d->k);
    const qlib_param_spec *bits = qlib_method_param(row, QLIB_PARAM_BITS);
    int width_ok = bits && d->bits >= 0 && d->bits < 64 && ((bits->widths >> d->bits) & 1u);
    if (row->float_weights) {
        if (!width_ok || d->group_size != 0 || d->symmetric || d->has_perm || d->has_input_scales)
            return qlib_fail(code, "%s: float tensor with bits=%d group=%d", fn, d->bits,
                             d->group_size);
        return QLIB_OK;
    }
    if (!width_ok) return qlib_fail(code, "%s: %d bits is not a quantized width", fn, d->bits);
    if (d->group_size < -1 || (d->group_size > 0 && d->group_size % 32))
        return qlib_fail(code, "%s: group size %d", fn, d->group_size);
    if (d->symmetric != 0 && d->symmetric != 1)
        return qlib_fail(code, "%s: symmetric flag %d", fn, d->symmetric);
    if ((d->has_perm && !(row->sections & QLIB_SEC_BIT(QLIB_SEC_PERM))) ||
        (d->has_input_scales && !(row->sections & QLIB_SEC_BIT(QLIB_SEC_INPUT_SCALES))))
        return qlib_fail(code, "%s: permutation or input scales with the wrong method", fn);
    return row->check ? row->check(d, fn, code) : QLIB_OK;
}

/* Section sizes for d (0 = absent), in section-id order. */
static void layout_sizes(const qlib_tensor_desc *d, size_t sizes[QLIB_SEC_MAX + 1])
{
    memset(sizes, 0, sizeof(size_t) * (QLIB_SEC_MAX + 1));
    if (!is_quantized(d)) {
        sizes[d->bits == 32 ? QLIB_SEC_F32 : QLIB_SEC_F16] = d->n * d->k * (size_t)(d->bits / 8);
        return;
    }
    size_t kp = qlib_round_up(d->k, QK_KALIGN), g = qlib_desc_group_cols(d);
    size_t groups = (d->k + g - 1) / g;
    size_t entries = d->group_size < 0 ? 1 : d->n * groups;
    sizes[QLIB_SEC_CODES] = d->n * (kp * (size_t)d->bits / 8);
    sizes[QLIB_SEC_SCALES] = entries * 2;
    if (!d->symmetric) sizes[QLIB_SEC_ZEROS] = (entries * (size_t)d->bits + 7) / 8 + 1;
    if (d->has_perm) sizes[QLIB_SEC_PERM] = d->k * 4;
    if (d->has_input_scales) sizes[QLIB_SEC_INPUT_SCALES] = d->k * 4;
}

size_t qlib_tensor_layout(const qlib_tensor_desc *d, qlib_section sec[QLIB_SEC_MAX],
                          unsigned *n_sec, size_t *storage)
{
    size_t sizes[QLIB_SEC_MAX + 1];
    layout_sizes(d, sizes);
    unsigned n = 0;
    for (unsigned id = 1; id <= QLIB_SEC_MAX; id++) n += sizes[id] != 0;
    size_t off = qlib_round_up(qlib_header_bytes(n), QLIB_ALIGN), total = 0;
    unsigned i = 0;
    for (unsigned id = 1; id <= QLIB_SEC_MAX; id++) {
        if (!sizes[id]) continue;
        sec[i].id = id;
        sec[i].offset = off;
        sec[i].size = sizes[id];
        total += sizes[id];
        off = qlib_round_up(off + sizes[id], QLIB_ALIGN);
        i++;
    }
    *n_sec = n;
    /* the zeros section's last byte is read padding, not storage */
    *storage = total - (sizes[QLIB_SEC_ZEROS] ? 1 : 0);
    return off;
}

/* Points the tensor's views at the sections of its blob. */
void qlib_tensor_bind(qlib_tensor *t, const qlib_section *sec, unsigned n_sec)
{
    const qlib_tensor_desc *d = &t->d;
    const uint8_t *base = t->blob;
    for (unsigned i = 0; i < n_sec; i++) {
        const void *p = base + sec[i].offset;
        switch (sec[i].id) {
        case QLIB_SEC_CODES: t->w.codes = p; break;
        case QLIB_SEC_SCALES: t->w.scales = p; break;
        case QLIB_SEC_ZEROS: t->w.zeros = p; break;
        case QLIB_SEC_PERM: t->perm = p; break;
        case QLIB_SEC_INPUT_SCALES: t->input_scales = p; break;
        case QLIB_SEC_F32: t->f32 = p; break;
        default: t->f16 = p; break;
        }
    }
    if (!is_quantized(d)) return;
    qk_weights *w = &t->w;
    w->bits = d->bits;
    w->symmetric = d->symmetric;
    w->n = d->n;
    w->k = d->k;
    w->kp = qlib_round_up(d->k, QK_KALIGN);
    w->group = qlib_desc_group_cols(d);
    w->n_groups = (d->k + w->group - 1) / w->group;
    w->scale_stride = d->group_size < 0 ? 0 : w->n_groups;
    w->row_bytes = w->kp * (size_t)d->bits / 8;
}

qlib_status qlib_tensor_create(const qlib_allocator *a, const qlib_tensor_desc *d,
                               qlib_tensor **out, const char *fn)
{
    *out = NULL;
    qlib_status s = qlib_desc_check(d, fn, QLIB_ERR_ARG);
    if (s != QLIB_OK) return s;
    qlib_section sec[QLIB_SEC_MAX];
    unsigned n_sec;
    size_t storage, total = qlib_tensor_layout(d, sec, &n_sec, &storage);
    qlib_tensor *t = qlib_mem_calloc(a, sizeof *t);
    uint8_t *blob = t ? qlib_mem_calloc(a, total) : NULL;
    if (!blob) {
        qlib_mem_free(a, t);
        return qlib_fail(QLIB_ERR_NOMEM, "%s: cannot allocate a %zu-byte tensor", fn, total);
    }
    t->alloc = *a;
    t->owned = blob;
    t->blob = blob;
    t->blob_size = total;
    t->d = *d;
    t->storage_bytes = storage;
    qlib_tensor_bind(t, sec, n_sec);
    qlib_header_write(t, sec, n_sec);
    *out = t;
    return QLIB_OK;
}

void qlib_tensor_seal(qlib_tensor *t, double quant_error, int weighted)
{
    t->quant_error = quant_error;
    t->error_weighted = weighted;
    qlib_header_finish(t);
}

void qlib_tensor_destroy(qlib_tensor *t)
{
    if (!t) return;
    qlib_allocator a = t->alloc;
    qlib_mem_free(&a, t->owned);
    qlib_mem_free(&a, t);
}

size_t qlib_tensor_rows(const qlib_tensor *t) { return t ? t->d.n : 0; }
size_t qlib_tensor_cols(const qlib_tensor *t) { return t ? t->d.k : 0; }
qlib_method qlib_tensor_method(const qlib_tensor *t) { return t ? t->d.method : QLIB_METHOD_NONE; }
int qlib_tensor_bits(const qlib_tensor *t) { return t ? t->d.bits : 0; }
int qlib_tensor_group_size(const qlib_tensor *t) { return t ? t->d.group_size : 0; }
int qlib_tensor_symmetric(const qlib_tensor *t) { return t ? t->d.symmetric : 0; }
size_t qlib_tensor_storage_bytes(const qlib_tensor *t) { return t ? t->storage_bytes : 0; }
double qlib_tensor_quant_error(const qlib_tensor *t) { return t ? t->quant_error : 0.0; }
const float *qlib_tensor_input_scales(const qlib_tensor *t) { return t ? t->input_scales : NULL; }
const int32_t *qlib_tensor_permutation(const qlib_tensor *t) { return t ? t->perm : NULL; }

double qlib_tensor_bits_per_weight(const qlib_tensor *t)
{
    if (!t) return 0.0;
    return (double)t->storage_bytes * 8.0 / ((double)t->d.n * (double)t->d.k);
}

/* Row r of the effective weights in the original input space (k floats);
 * tmp holds kp floats when the tensor permutes or scales its inputs. */
void qlib_tensor_row(const qlib_tensor *t, const qlib_kernels *kern, size_t r, float *out,
                     float *tmp)
{
    size_t k = t->d.k;
    if (t->f32) {
        memcpy(out, t->f32 + r * k, k * sizeof(float));
        return;
    }
    if (t->f16) {
        kern->f16_to_f32(t->f16 + r * k, k, out);
        return;
    }
    if (!t->perm && !t->input_scales) {
        kern->dequant_row(&t->w, r, out);
        return;
    }
    kern->dequant_row(&t->w, r, tmp);
    for (size_t j = 0; j < k; j++) {
        size_t c = t->perm ? (size_t)t->perm[j] : j;
        out[c] = t->input_scales ? tmp[j] * t->input_scales[c] : tmp[j];
    }
}

