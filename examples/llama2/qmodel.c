/*
 * The quantized model file (docs/LLAMA2.md): a 64-byte header, the fp32
 * embeddings and norms, then every projection as a qlib blob behind a 64-byte
 * record header, each section starting at a multiple of 64 bytes so that a
 * mapped file can be handed to qlib_tensor_deserialize with QLIB_LOAD_BORROW.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define QM_MAGIC "QLLAMA2"   /* 8 bytes with its NUL */
#define QM_VERSION 2u          /* 1: 64-byte header, norm epsilon 1e-5 and rotary base 10000 */
#define QM_ALIGN 64u
#define QM_HEADER_BYTES 128u
#define QM_V1_HEADER_BYTES 64u
#define QM_RECORD_BYTES 64u
#define QM_RECORD_TAG "QTNS"
#define QM_FLAG_SEPARATE_CLASSIFIER 1u
#define QM_FLAGS_KNOWN (QM_FLAG_SEPARATE_CLASSIFIER | QM_FLAG_EMB_QUANTIZED | QM_FLAG_CLS_QUANTIZED)

static size_t pad_to_align(size_t n)
{
    return (QM_ALIGN - n % QM_ALIGN) % QM_ALIGN;
}

int qmodel_is_quantized_file(const mapped_file *f)
{
    return f->size >= 8 && memcmp(f->data, QM_MAGIC, 8) == 0;
}

/* The fp32 arrays in file order, with their lengths in floats. */
static int float_arrays(const llama_model *m, unsigned flags, const float **arr, size_t *len)
{
    const llama_config *c = &m->cfg;
    size_t d = (size_t)c->dim, L = (size_t)c->n_layers, v = (size_t)c->vocab_size;
    arr[0] = m->tok_emb;   len[0] = flags & QM_FLAG_EMB_QUANTIZED ? 0 : v * d;
    arr[1] = m->rms_att;   len[1] = L * d;
    arr[2] = m->rms_ffn;   len[2] = L * d;
    arr[3] = m->rms_final; len[3] = d;
    arr[4] = m->wcls;      len[4] = c->shared_classifier || (flags & QM_FLAG_CLS_QUANTIZED) ? 0 : v * d;
    return 5;
}

static void build_header(const llama_config *c, unsigned flags, unsigned char *h, uint64_t bytes,
                         uint64_t checksum)
{
    int32_t dims[7];
    uint32_t u;
    int i;
    dims[0] = c->dim; dims[1] = c->hidden_dim; dims[2] = c->n_layers; dims[3] = c->n_heads;
    dims[4] = c->n_kv_heads; dims[5] = c->vocab_size; dims[6] = c->seq_len;
    memset(h, 0, QM_HEADER_BYTES);
    memcpy(h, QM_MAGIC, 8);
    put_u32le(h + 8, QM_VERSION);
    put_u32le(h + 12, QM_HEADER_BYTES);
    for (i = 0; i < 7; i++)
        put_u32le(h + 16 + 4 * i, (uint32_t)dims[i]);
    put_u32le(h + 44, (c->shared_classifier ? 0u : QM_FLAG_SEPARATE_CLASSIFIER) | flags);
    put_u64le(h + 48, bytes);
    put_u64le(h + 56, checksum);
    memcpy(&u, &c->norm_eps, 4);
    put_u32le(h + 64, u);
    memcpy(&u, &c->rope_theta, 4);
    put_u32le(h + 68, u);
}

static int write_all(qm_writer *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n) {
        llama_err("%s: write failed: %s", w->path, strerror(errno));
        return -1;
    }
    w->written += n;
    return 0;
}

static int write_padding(qm_writer *w)
{
    static const unsigned char zeros[QM_ALIGN];
    return write_all(w, zeros, pad_to_align(w->written));
}

/* Streams t's rows converted to fp32, adding them to the checksum. */
static int write_rows(qm_writer *w, const src_tensor *t, float *buf, size_t chunk, uint64_t *h)
{
    size_t r, n;
    for (r = 0; r < t->rows; r += n) {
        n = t->rows - r < chunk ? t->rows - r : chunk;
        src_read_rows(t, r, n, buf);
        *h = llama_fnv1a(*h, buf, n * t->cols * sizeof(float));
        if (write_all(w, buf, n * t->cols * sizeof(float)))
            return -1;
    }
    return 0;
}

/* The header and the fp32 section, converted from the source a few rows at
 * a time; the header is written again at the end with the checksum. */
int qm_write_floats(qm_writer *w, const model_source *src, unsigned flags)
{
    const llama_config *c = &src->cfg;
    unsigned char header[QM_HEADER_BYTES];
    size_t chunk = 256, start;
    uint64_t h = LLAMA_FNV_OFFSET;
    float *buf = xcalloc(chunk, (size_t)c->dim * sizeof(float), "conversion buffer");
    int l, rc = -1;
    build_header(c, flags, header, 0, 0);
    if (!buf || write_all(w, header, sizeof(header)))
        goto done;
    start = w->written;
    if (!(flags & QM_FLAG_EMB_QUANTIZED) && write_rows(w, &src->emb, buf, chunk, &h))
        goto done;
    for (l = 0; l < c->n_layers; l++)
        if (write_rows(w, &src->norm_att[l], buf, chunk, &h))
            goto done;
    for (l = 0; l < c->n_layers; l++)
        if (write_rows(w, &src->norm_ffn[l], buf, chunk, &h))
            goto done;
    if (write_rows(w, &src->norm_final, buf, chunk, &h)
        || (!c->shared_classifier && !(flags & QM_FLAG_CLS_QUANTIZED)
            && write_rows(w, &src->cls, buf, chunk, &h)))
        goto done;
    build_header(c, flags, header, (uint64_t)(w->written - start), h);
    if (write_padding(w) || fseek(w->f, 0, SEEK_SET) != 0
        || fwrite(header, 1, sizeof(header), w->f) != sizeof(header) || fseek(w->f, 0, SEEK_END) != 0) {
        llama_err("%s: write failed: %s", w->path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(buf);
    return rc;
}

int qm_rewrite_floats(qm_writer *w, const model_source *src, unsigned flags,
                      const float *rms_att, const float *rms_ffn)
{
    const llama_config *c = &src->cfg;
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, l, written = w->written;
    model_source folded = *src;
    src_tensor *norms = xcalloc(2 * L, sizeof(src_tensor), "norms");
    int rc = -1;
    if (!norms)
        return -1;
    for (l = 0; l < 2 * L; l++) {
        const float *row = (l < L ? rms_att : rms_ffn) + (l % L) * d;
        norms[l].data = (const unsigned char *)row;
        norms[l].dtype = DT_F32;
        norms[l].rows = 1;
        norms[l].cols = d;
    }
    folded.norm_att = norms;
    folded.norm_ffn = norms + L;
    if (fseek(w->f, 0, SEEK_SET) != 0) {
        llama_err("%s: seek failed: %s", w->path, strerror(errno));
        goto done;
    }
    w->written = 0;
    rc = qm_write_floats(w, &folded, flags);
    w->written = written;
done:
    free(norms);
    return rc;
}

int qm_write_tensor(qm_writer *w, const qlib_tensor *t, int l, int p)
{
    unsigned char rec[QM_RECORD_BYTES];
    size_t bytes = 0, written = 0;
    void *blob;
    int rc;
    if (qlib_tensor_serialized_size(t, &bytes) != QLIB_OK) {
        report_qlib_error("writing the model");
        return -1;
    }
    blob = xcalloc(bytes, 1, "tensor blob");
    if (!blob)
        return -1;
    if (qlib_tensor_serialize(t, blob, bytes, &written) != QLIB_OK) {
        report_qlib_error("writing the model");
        free(blob);
        return -1;
    }
    memset(rec, 0, sizeof(rec));
    memcpy(rec, QM_RECORD_TAG, 4);
    put_u32le(rec + 4, (uint32_t)l);
    put_u32le(rec + 8, (uint32_t)p);
    put_u64le(rec + 16, (uint64_t)written);
    rc = write_all(w, rec, sizeof(rec)) || write_all(w, blob, written) || write_padding(w);
    free(blob);
    return rc ? -1 : 0;
}

static int header_config(const char *path, const unsigned char *h, size_t hdr, llama_config *c,
                         unsigned *qflags)
{
    uint32_t flags = get_u32le(h + 44), u;
    size_t i;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    if (hdr == QM_HEADER_BYTES) {
        u = get_u32le(h + 64);
        memcpy(&c->norm_eps, &u, 4);
        u = get_u32le(h + 68);
        memcpy(&c->rope_theta, &u, 4);
        for (i = 72; i < hdr; i++)
            if (h[i] != 0) {
                llama_err("%s: reserved header bytes are not zero", path);
                return -1;
            }
    }
    c->dim = (int32_t)get_u32le(h + 16);
    c->hidden_dim = (int32_t)get_u32le(h + 20);
    c->n_layers = (int32_t)get_u32le(h + 24);
    c->n_heads = (int32_t)get_u32le(h + 28);
    c->n_kv_heads = (int32_t)get_u32le(h + 32);
    c->vocab_size = (int32_t)get_u32le(h + 36);
    c->seq_len = (int32_t)get_u32le(h + 40);
    c->shared_classifier = !(flags & QM_FLAG_SEPARATE_CLASSIFIER);
    if ((flags & ~QM_FLAGS_KNOWN) || (hdr != QM_HEADER_BYTES && (flags & ~QM_FLAG_SEPARATE_CLASSIFIER))
        || (c->shared_classifier && (flags & QM_FLAG_CLS_QUANTIZED))) {
        llama_err("%s: unknown header flags 0x%x", path, flags);
        return -1;
    }
    *qflags = flags & (QM_FLAG_EMB_QUANTIZED | QM_FLAG_CLS_QUANTIZED);
    return config_validate(c, path);
}

/* The header's size (version 1: 64 bytes, 2: 128), or 0. */
static size_t check_header(const char *path, const llama_model *m)
{
    const unsigned char *h = m->file.data;
    uint32_t version, hdr;
    if (m->file.size < QM_V1_HEADER_BYTES) {
        llama_err("%s: truncated header", path);
        return 0;
    }
    if (!host_is_little_endian()) {
        llama_err("%s: quantized models hold little-endian floats; this host is not", path);
        return 0;
    }
    version = get_u32le(h + 8);
    hdr = get_u32le(h + 12);
    if (!((version == 1 && hdr == QM_V1_HEADER_BYTES) || (version == 2 && hdr == QM_HEADER_BYTES))) {
        llama_err("%s: unknown quantized-model version %u (header %u bytes); this program reads "
                  "versions 1 and %u", path, version, hdr, QM_VERSION);
        return 0;
    }
    if (m->file.size < hdr) {
        llama_err("%s: truncated header", path);
        return 0;
    }
    return hdr;
}

/* Bytes of the fp32 section of a model with this configuration. */
static int section_bytes(const llama_config *c, unsigned flags, size_t *bytes)
{
    size_t vd = 0, ld = 0, n = 0;
    int bad = size_mul((size_t)c->vocab_size, (size_t)c->dim, &vd)
              || size_mul((size_t)c->n_layers, (size_t)c->dim, &ld)
              || size_mul(ld, 2, &n) || (!(flags & QM_FLAG_EMB_QUANTIZED) && size_add(n, vd, &n))
              || size_add(n, (size_t)c->dim, &n)
              || (!c->shared_classifier && !(flags & QM_FLAG_CLS_QUANTIZED) && size_add(n, vd, &n))
              || size_mul(n, sizeof(float), &n);
    *bytes = n;
    return bad ? -1 : 0;
}

/* Sets the fp32 pointers; returns the offset of the first record, or 0. */
static size_t map_floats(const char *path, llama_model *m, size_t hdr, unsigned flags)
{
    const llama_config *c = &m->cfg;
    size_t expect, d = (size_t)c->dim, L = (size_t)c->n_layers, v = (size_t)c->vocab_size;
    uint64_t stated = get_u64le(m->file.data + 48);
    const float *p = (const float *)(const void *)(m->file.data + hdr);
    if (section_bytes(c, flags, &expect) || stated != (uint64_t)expect
        || expect > m->file.size - hdr || pad_to_align(expect) > m->file.size - hdr - expect) {
        llama_err("%s: the fp32 section should hold %zu bytes (header says %llu, file has %zu)",
                  path, expect, (unsigned long long)stated, m->file.size);
        return 0;
    }
    m->tok_emb = flags & QM_FLAG_EMB_QUANTIZED ? NULL : p;
    m->rms_att = m->tok_emb ? p + v * d : p;
    m->rms_ffn = m->rms_att + L * d;
    m->rms_final = m->rms_ffn + L * d;
    m->wcls = c->shared_classifier ? m->tok_emb : flags & QM_FLAG_CLS_QUANTIZED ? NULL : m->rms_final + d;
    return hdr + expect + pad_to_align(expect);
}

static int check_floats(const char *path, const llama_model *m, unsigned flags)
{
    const float *arr[5];
    size_t len[5];
    uint64_t h = LLAMA_FNV_OFFSET;
    int i, n = float_arrays(m, flags, arr, len);
    for (i = 0; i < n; i++)
        h = llama_fnv1a(h, arr[i], len[i] * sizeof(float));
    if (h != get_u64le(m->file.data + 56)) {
        llama_err("%s: checksum mismatch in the fp32 section (file corrupt)", path);
        return -1;
    }
    return 0;
}

static int load_record(qlib_ctx *ctx, const char *path, llama_model *m, int l, int p, size_t *off)
{
    const unsigned char *rec = m->file.data + *off;
    size_t left = m->file.size - *off, blob, rows, cols;
    qlib_tensor *t = NULL;
    char what[64];
    if (p < N_PROJ)
        snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
    else
        snprintf(what, sizeof(what), "the %s", p == QM_REC_EMB ? "token embedding" : "classifier");
    if (left < QM_RECORD_BYTES || memcmp(rec, QM_RECORD_TAG, 4) != 0
        || get_u32le(rec + 4) != (uint32_t)l || get_u32le(rec + 8) != (uint32_t)p) {
        llama_err("%s: missing or misplaced record for %s at offset %zu", path, what, *off);
        return -1;
    }
    left -= QM_RECORD_BYTES;
    if (get_u64le(rec + 16) > (uint64_t)left
        || pad_to_align((size_t)get_u64le(rec + 16)) > left - (size_t)get_u64le(rec + 16)) {
        llama_err("%s: %s: blob of %llu bytes overruns the file", path, what,
                  (unsigned long long)get_u64le(rec + 16));
        return -1;
    }
    blob = (size_t)get_u64le(rec + 16);
    if (qlib_tensor_deserialize(ctx, rec + QM_RECORD_BYTES, blob, QLIB_LOAD_BORROW, &t) != QLIB_OK) {
        llama_err("%s: %s: %s", path, what, qlib_last_error());
        return -1;
    }
    if (p < N_PROJ)
        *model_proj(m, l, p) = t;
    else if (p == QM_REC_EMB)
        m->emb_q = t;
    else
        m->cls_q = t;
    rows = p < N_PROJ ? proj_rows(&m->cfg, p) : (size_t)m->cfg.vocab_size;
    cols = p < N_PROJ ? proj_cols(&m->cfg, p) : (size_t)m->cfg.dim;
    if (qlib_tensor_rows(t) != rows || qlib_tensor_cols(t) != cols) {
        llama_err("%s: %s is %zu x %zu, the model needs %zu x %zu", path, what, qlib_tensor_rows(t),
                  qlib_tensor_cols(t), rows, cols);
        return -1;
    }
    *off += QM_RECORD_BYTES + blob + pad_to_align(blob);
    return 0;
}

static int load_records(qlib_ctx *ctx, const char *path, llama_model *m, size_t off, unsigned flags)
{
    int l, p;
    for (l = 0; l < m->cfg.n_layers; l++)
        for (p = 0; p < N_PROJ; p++)
            if (load_record(ctx, path, m, l, p, &off))
                return -1;
    if ((flags & QM_FLAG_EMB_QUANTIZED) && load_record(ctx, path, m, m->cfg.n_layers, QM_REC_EMB, &off))
        return -1;
    if ((flags & QM_FLAG_CLS_QUANTIZED) && load_record(ctx, path, m, m->cfg.n_layers, QM_REC_CLS, &off))
        return -1;
    if (m->cfg.shared_classifier)
        m->cls_q = m->emb_q;
    if (off != m->file.size) {
        llama_err("%s: %zu bytes after the last tensor", path, m->file.size - off);
        return -1;
    }
    return 0;
}

int qmodel_load(qlib_ctx *ctx, const char *path, llama_model *m)
{
    size_t off, hdr;
    unsigned flags = 0;
    m->quantized = 1;
    if ((hdr = check_header(path, m)) == 0 || header_config(path, m->file.data, hdr, &m->cfg, &flags))
        return -1;
    off = map_floats(path, m, hdr, flags);
    if (off == 0 || check_floats(path, m, flags))
        return -1;
    m->proj = xcalloc((size_t)m->cfg.n_layers * N_PROJ, sizeof(qlib_tensor *), "tensor table");
    if (!m->proj)
        return -1;
    return load_records(ctx, path, m, off, flags);
}
