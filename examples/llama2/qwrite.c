/*
 * What quantize writes, layer by layer, and the check that reads it back.
 *
 *  - qlm: qlib-llama's own file (docs/LLAMA2.md): every tensor a qlib blob.
 *  - GGUF: every projection qlib_tensor_export can write as a GGML type
 *    exactly (4-bit symmetric: Q4_0, 8-bit symmetric: Q8_0; K a multiple of
 *    32, no act-order) in that type; the others as the fallback type (F32
 *    holds the dequantized weights exactly; F16 rounds them; Q8_0
 *    re-quantizes them), listed. The tensor table comes first in a GGUF file,
 *    so the types are decided from the settings before quantizing.
 *  - Hugging Face GPTQ / AWQ: model.safetensors with NAME.qweight, .qzeros,
 *    .scales (and .g_idx) per projection the layout holds, NAME.weight in
 *    fp16 for the others, everything else fp16; config.json with
 *    quantization_config, quantize_config.json, the tokenizer files of an HF
 *    input. The safetensors data is spooled (its header, which lists every
 *    tensor, is written last), so each projection's form is decided when it
 *    is quantized.
 *
 * For every tensor the writer keeps a digest of the tensor a reader will
 * make of the bytes written (the export imported again, or the float
 * tensor of the fallback), after checking that an exported tensor's weights
 * are the quantized tensor's bit for bit; qw_verify reads the output back
 * through the model readers and compares.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "quant.h"

#define CHECK_ROWS 4     /* rows of x in the digest's product */
#define CHUNK_ROWS 64

struct qwrite {
    gguf_writer *gw;
    int *gtype;                 /* GGUF: per projection, the type planned */
    int *gidx;                  /* GGUF: per projection, the tensor index */
    int *att_idx, *ffn_idx;     /* GGUF: the norms' indices */
    int emb_type, cls_type;     /* GGUF: types of the embedding and classifier */
    FILE *sf, *spool;           /* HF: model.safetensors, its data spool */
    st_writer *sw;
    char st_path[4400], spool_path[4400];
    int *hf_packed;             /* HF: per projection, 1 when written as layout parts */
    int hf_group;               /* HF: the checkpoint's group_size */
    int bits, sym, act_order;   /* HF: the settings written in the config */
    size_t n_fallback;
    char fallback[4096];        /* a list of tensor names, cut when long */
};

static size_t max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* ------------------------------------------------------------- digests */
/* A tensor's method, bits and group, its dequantized weights and a
 * CHECK_ROWS-row product, hashed (so that tensors need not stay in memory
 * until the file is read back); weights_only hashes the weights alone. */
int tensor_digest(qlib_ctx *ctx, const qlib_tensor *t, int weights_only, uint64_t *out)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t), r, c, i;
    float *w = xcalloc(CHUNK_ROWS * k, sizeof(float), "digest");
    float *x = xcalloc(CHECK_ROWS * k, sizeof(float), "digest");
    float *y = xcalloc(CHECK_ROWS * n, sizeof(float), "digest");
    int meta[3], rc = -1;
    uint64_t h = LLAMA_FNV_OFFSET;
    if (!w || !x || !y)
        goto done;
    if (!weights_only) {
        meta[0] = (int)qlib_tensor_method(t);
        meta[1] = qlib_tensor_bits(t);
        meta[2] = qlib_tensor_group_size(t);
        h = llama_fnv1a(h, meta, sizeof(meta));
    }
    for (r = 0; r < n; r += c) {
        c = n - r < CHUNK_ROWS ? n - r : CHUNK_ROWS;
        if (qlib_dequantize_rows(ctx, t, r, c, w, k) != QLIB_OK) {
            report_qlib_error("round trip");
            goto done;
        }
        h = llama_fnv1a(h, w, c * k * sizeof(float));
    }
    if (!weights_only) {
        for (i = 0; i < CHECK_ROWS * k; i++)
            x[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 7));
        if (qlib_matmul(ctx, t, x, CHECK_ROWS, k, y, n) != QLIB_OK) {
            report_qlib_error("round trip");
            goto done;
        }
        h = llama_fnv1a(h, y, CHECK_ROWS * n * sizeof(float));
    }
    *out = h;
    rc = 0;
done:
    free(w);
    free(x);
    free(y);
    return rc;
}

/* The digest of what a reader makes of parts written in layout: the import;
 * its weights must be t's, bit for bit. */
static int export_digest(quant_job *j, const qlib_tensor *t, qlib_layout layout, int group,
                         void *const parts[4], const size_t bytes[4], const char *name,
                         uint64_t *out)
{
    qlib_tensor *u = NULL;
    uint64_t a, b;
    int rc;
    if (qlib_tensor_import(j->ctx, layout, qlib_tensor_rows(t), qlib_tensor_cols(t),
                           qlib_tensor_bits(t), group, (const void *const *)parts, bytes, &u) != QLIB_OK) {
        llama_err("%s: importing the written tensor: %s", name, qlib_last_error());
        return -1;
    }
    rc = tensor_digest(j->ctx, t, 1, &a) || tensor_digest(j->ctx, u, 1, &b) ? -1 : 0;
    if (rc == 0 && a != b) {
        llama_err("%s: the written tensor's weights differ from the quantized ones", name);
        rc = -1;
    }
    if (rc == 0)
        rc = tensor_digest(j->ctx, u, 0, out);
    qlib_tensor_destroy(u);
    return rc;
}

/* The digest of the float tensor a reader makes of rows decoded to w. */
static int float_digest(quant_job *j, const float *w, size_t n, size_t k, int dtype, uint64_t *out)
{
    qlib_config *cfg = NULL;
    qlib_tensor *t = NULL;
    int rc = -1;
    if (qlib_config_create(QLIB_METHOD_NONE, &cfg) == QLIB_OK
        && qlib_config_set_int(cfg, QLIB_PARAM_BITS, dtype == DT_F16 ? 16 : 32) == QLIB_OK
        && qlib_quantize(j->ctx, w, n, k, k, cfg, NULL, &t) == QLIB_OK)
        rc = tensor_digest(j->ctx, t, 0, out);
    else
        report_qlib_error("round trip");
    qlib_tensor_destroy(t);
    qlib_config_destroy(cfg);
    return rc;
}

static void note_fallback(qwrite *wr, const char *name)
{
    size_t len = strlen(wr->fallback);
    wr->n_fallback++;
    if (len + strlen(name) + 8 < sizeof(wr->fallback))
        snprintf(wr->fallback + len, sizeof(wr->fallback) - len, "%s%s", len ? ", " : "", name);
    else if (!strstr(wr->fallback, "..."))
        snprintf(wr->fallback + len, sizeof(wr->fallback) - len, ", ...");
}

/* ---------------------------------------------------------- float rows */
/* Rows of a float tensor: written in dtype and, with hash, added to the
 * float digest as a reader decodes them (norms, embeddings; projections
 * have digests of their own). */
static int put_f32_rows(quant_job *j, int (*put)(void *, const void *, size_t), void *w,
                        const float *rows, size_t n, size_t k, int dtype, int hash)
{
    size_t rb, r;
    unsigned char *bytes;
    float *back;
    int rc = 0;
    dtype_row_bytes(dtype, k, &rb);
    bytes = xcalloc(1, max_size(rb, 4 * k), "rows");
    back = xcalloc(k, sizeof(float), "rows");
    if (!bytes || !back)
        rc = -1;
    for (r = 0; rc == 0 && r < n; r++) {
        row_from_f32(dtype, rows + r * k, k, bytes);
        if (hash) {
            row_to_f32(dtype, bytes, k, back);
            j->float_digest = llama_fnv1a(j->float_digest, back, k * sizeof(float));
        }
        rc = put(w, bytes, rb);
    }
    free(bytes);
    free(back);
    return rc;
}

/* A source tensor (embedding, classifier) in dtype: its stored bytes when
 * dtype is the stored type, else converted; hashed as decoded. */
static int put_src_rows(quant_job *j, int (*put)(void *, const void *, size_t), void *w,
                        const src_tensor *t, int dtype)
{
    size_t r, n, k = t->cols, i;
    float *buf = xcalloc(CHUNK_ROWS * k, sizeof(float), "rows");
    int rc = buf ? 0 : -1;
    for (r = 0; rc == 0 && r < t->rows; r += n) {
        n = t->rows - r < CHUNK_ROWS ? t->rows - r : CHUNK_ROWS;
        if (dtype == t->dtype && !t->q) {
            size_t rb;
            dtype_row_bytes(dtype, k, &rb);
            for (i = 0; rc == 0 && i < n; i++) {
                row_to_f32(dtype, src_row_bytes(t, r + i), k, buf);
                j->float_digest = llama_fnv1a(j->float_digest, buf, k * sizeof(float));
                rc = put(w, src_row_bytes(t, r + i), rb);
            }
        } else {
            src_read_rows(t, r, n, buf);
            rc = put_f32_rows(j, put, w, buf, n, k, dtype, 1);
        }
    }
    free(buf);
    return rc;
}

static int gguf_put(void *w, const void *p, size_t n)
{
    return gguf_write_bytes(w, p, n);
}

static int st_put(void *w, const void *p, size_t n)
{
    return st_write_bytes(w, p, n);
}

/* --------------------------------------------------------------- GGUF */
/* The GGML type holding a tensor made with c exactly, or -1. */
int ggml_type(const qlib_config *c, size_t k)
{
    int m = (int)qlib_config_method(c), bits = cfg_get(c, QLIB_PARAM_BITS);
    int sym = cfg_get(c, QLIB_PARAM_SYMMETRIC), group = cfg_get(c, QLIB_PARAM_GROUP_SIZE);
    float thr = 0.0f;
    if (m == QLIB_METHOD_NONE)
        return bits == 16 ? DT_F16 : DT_F32;
    if (m == QLIB_METHOD_LLM_INT8) {
        qlib_config_get_float(c, QLIB_PARAM_OUTLIER_THRESHOLD, &thr);
        if (thr > 0.0f)
            return -1;
        sym = 1;
    }
    if (k % 32 != 0 || !sym || cfg_get(c, QLIB_PARAM_GPTQ_ACT_ORDER) || (group > 0 && group % 32 != 0))
        return -1;
    return bits == 4 ? DT_Q4_0 : bits == 8 ? DT_Q8_0 : -1;
}

static int fallback_type(const llama_opts *o, size_t k)
{
    if (!o->fallback || !strcmp(o->fallback, "f32") || !strcmp(o->fallback, "keep"))
        return DT_F32;
    if (!strcmp(o->fallback, "f16"))
        return DT_F16;
    return k % 32 == 0 ? DT_Q8_0 : DT_F32;   /* q8_0 */
}

/* A float embedding keeps its stored GGUF type, else F32. */
static int emb_type(const quant_job *j, const src_tensor *t)
{
    if (j->o->embed_bits)
        return j->o->embed_bits == 8 ? DT_Q8_0 : DT_Q4_0;
    return t->dtype == DT_F16 || t->dtype == DT_BF16 || t->dtype == DT_Q8_0 || t->dtype == DT_Q4_0
               ? t->dtype : DT_F32;
}

/* general.file_type: the projections' most common type (llama.cpp's
 * MOSTLY_Q4_0 = 2, MOSTLY_Q8_0 = 7, F16 = 1, ALL_F32 = 0). */
static int file_type(const qwrite *wr, size_t n)
{
    size_t count[4] = { 0, 0, 0, 0 }, i, best = 0;
    static const int types[4] = { DT_F32, DT_F16, DT_Q4_0, DT_Q8_0 }, ids[4] = { 0, 1, 2, 7 };
    int b;
    for (i = 0; i < n; i++)
        for (b = 0; b < 4; b++)
            count[b] += wr->gtype[i] == types[b];
    for (b = 1; b < 4; b++)
        if (count[b] > count[best])
            best = (size_t)b;
    return ids[best];
}

static int gguf_plan(quant_job *j, qwrite *wr)
{
    const llama_config *c = &j->m.cfg;
    const model_source *s = &j->m.src;
    size_t total = (size_t)c->n_layers * N_PROJ, d = (size_t)c->dim, v = (size_t)c->vocab_size;
    char name[96];
    int l, p, i, quantized = 0;
    wr->gtype = xcalloc(total, sizeof(int), "plan");
    wr->gidx = xcalloc(total, sizeof(int), "plan");
    wr->att_idx = xcalloc((size_t)c->n_layers, sizeof(int), "plan");
    wr->ffn_idx = xcalloc((size_t)c->n_layers, sizeof(int), "plan");
    if (!wr->gtype || !wr->gidx || !wr->att_idx || !wr->ffn_idx)
        return -1;
    for (l = 0; l < c->n_layers; l++)
        for (p = 0; p < N_PROJ; p++) {
            i = l * N_PROJ + p;
            wr->gtype[i] = ggml_type(job_cfg(j, l, p), proj_cols(c, p));
            if (job_cfg(j, l, p) != j->cfg && qlib_config_method(job_cfg(j, l, p)) == QLIB_METHOD_NONE
                && qlib_config_method(j->cfg) != QLIB_METHOD_NONE) {
                snprintf(name, sizeof(name), "blk.%d.%s", l, GGUF_PROJ[p]);
                note_fallback(wr, name);    /* --fallback keep: not quantized */
            } else if (wr->gtype[i] < 0) {
                wr->gtype[i] = fallback_type(j->o, proj_cols(c, p));
                snprintf(name, sizeof(name), "blk.%d.%s", l, GGUF_PROJ[p]);
                note_fallback(wr, name);
            }
            quantized |= wr->gtype[i] == DT_Q4_0 || wr->gtype[i] == DT_Q8_0;
        }
    wr->emb_type = emb_type(j, &s->emb);
    wr->cls_type = c->shared_classifier ? wr->emb_type : emb_type(j, &s->cls);
    if ((s->kind == SRC_GGUF && gguf_copy_keys(wr->gw, &s->gguf, j->o->tokenizer != NULL))
        || gguf_llama_keys(wr->gw, c, base_name(s->path))
        || gguf_add_u32(wr->gw, "general.file_type", (uint32_t)file_type(wr, total))
        || (quantized && !gguf_has_key(wr->gw, "general.quantization_version")
            && gguf_add_u32(wr->gw, "general.quantization_version", 2))
        || (!gguf_has_key(wr->gw, "tokenizer.ggml.model") && write_vocab_gguf(wr->gw, &j->tok)))
        return -1;
    if (gguf_add_tensor(wr->gw, "token_embd.weight", wr->emb_type, v, d) < 0
        || gguf_add_tensor(wr->gw, "output_norm.weight", DT_F32, 1, d) < 0
        || (!c->shared_classifier && gguf_add_tensor(wr->gw, "output.weight", wr->cls_type, v, d) < 0))
        return -1;
    for (l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
        if ((wr->att_idx[l] = gguf_add_tensor(wr->gw, name, DT_F32, 1, d)) < 0)
            return -1;
        for (p = 0; p < N_PROJ; p++) {
            i = l * N_PROJ + p;
            snprintf(name, sizeof(name), "blk.%d.%s.weight", l, GGUF_PROJ[p]);
            if ((wr->gidx[i] = gguf_add_tensor(wr->gw, name, wr->gtype[i], proj_rows(c, p),
                                               proj_cols(c, p))) < 0)
                return -1;
            if (p == P_WO) {
                snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
                if ((wr->ffn_idx[l] = gguf_add_tensor(wr->gw, name, DT_F32, 1, d)) < 0)
                    return -1;
            }
        }
    }
    return 0;
}

/* Parts of t in layout, allocated; NULL parts on failure. */
static int export_parts(const qlib_tensor *t, qlib_layout layout, void *parts[4], size_t bytes[4],
                        const char *name)
{
    int b;
    for (b = 0; b < 4; b++)
        parts[b] = NULL;
    if (qlib_tensor_export_size(t, layout, bytes) != QLIB_OK) {
        llama_err("%s: %s", name, qlib_last_error());
        return -1;
    }
    for (b = 0; b < 4; b++)
        if (bytes[b] && !(parts[b] = xcalloc(bytes[b], 1, "tensor")))
            goto fail;
    if (qlib_tensor_export(t, layout, parts, bytes) == QLIB_OK)
        return 0;
    report_qlib_error(name);
fail:
    for (b = 0; b < 4; b++) {
        free(parts[b]);
        parts[b] = NULL;
    }
    return -1;
}

/* An embedding or classifier: quantized (--embed-bits) or from the source. */
static int gguf_embedding(quant_job *j, int index, const src_tensor *src, const qlib_tensor *q,
                          int dtype, uint64_t *digest, const char *name)
{
    qwrite *wr = j->wr;
    size_t bytes[4];
    void *parts[4];
    qlib_layout layout = dtype == DT_Q8_0 ? QLIB_LAYOUT_GGML_Q8_0 : QLIB_LAYOUT_GGML_Q4_0;
    int rc;
    if (!q)
        return gguf_write_open(wr->gw, index) || put_src_rows(j, gguf_put, wr->gw, src, dtype)
               || gguf_write_close(wr->gw) ? -1 : 0;
    if (export_parts(q, layout, parts, bytes, name) != 0)
        return -1;
    rc = export_digest(j, q, layout, 32, parts, bytes, name, digest)
         || gguf_write_tensor(wr->gw, index, parts[0], bytes[0]) ? -1 : 0;
    free(parts[0]);
    return rc;
}

static int gguf_begin(quant_job *j)
{
    qwrite *wr = j->wr;
    const llama_config *c = &j->m.cfg;
    if (!(wr->gw = gguf_writer_create(j->out->f, j->out->tmp)) || gguf_plan(j, wr)
        || gguf_write_begin(wr->gw))
        return -1;
    if (wr->n_fallback && j->o->fallback && !strcmp(j->o->fallback, "keep"))
        fprintf(stderr, "%zu projections Q4_0/Q8_0 cannot hold (K not a multiple of 32, asymmetric, "
                "act-order, other bits) are kept unquantized (--fallback keep): %s\n", wr->n_fallback,
                wr->fallback);
    else if (wr->n_fallback)
        fprintf(stderr, "%zu projections are not held exactly by Q4_0/Q8_0 (K not a multiple of 32, "
                "asymmetric, act-order, other bits) and are written as %s: %s\n", wr->n_fallback,
                dtype_name(fallback_type(j->o, 32)), wr->fallback);
    return gguf_embedding(j, 0, &j->m.src.emb, j->emb_q, wr->emb_type, &j->digest[(size_t)c->n_layers * N_PROJ],
                          "token_embd")
           || gguf_write_open(wr->gw, 1)
           || put_f32_rows(j, gguf_put, wr->gw, j->m.rms_final, 1, (size_t)c->dim, DT_F32, 1)
           || gguf_write_close(wr->gw)
           || (!c->shared_classifier
               && gguf_embedding(j, 2, &j->m.src.cls, j->cls_q, wr->cls_type,
                                 &j->digest[(size_t)c->n_layers * N_PROJ + 1], "output")) ? -1 : 0;
}

/* A projection in its planned type. */
static int gguf_proj(quant_job *j, int l, int p, const qlib_tensor *t)
{
    qwrite *wr = j->wr;
    size_t i = (size_t)l * N_PROJ + (size_t)p, n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    int type = wr->gtype[i], rc = -1;
    size_t bytes[4];
    void *parts[4] = { NULL, NULL, NULL, NULL };
    qlib_tensor *re = NULL;
    float *w = NULL;
    char name[64];
    snprintf(name, sizeof(name), "blk.%d.%s", l, GGUF_PROJ[p]);
    if (type == DT_Q4_0 || type == DT_Q8_0) {
        qlib_layout layout = type == DT_Q8_0 ? QLIB_LAYOUT_GGML_Q8_0 : QLIB_LAYOUT_GGML_Q4_0;
        const qlib_tensor *src = t;
        if (type != ggml_type(job_cfg(j, l, p), k)) {
            /* --fallback q8_0: the dequantized weights re-quantized */
            qlib_config *cfg = NULL;
            if (!(w = xcalloc(n, k * sizeof(float), "weights")) || qlib_dequantize(j->ctx, t, w, k) != QLIB_OK
                || qlib_config_create(QLIB_METHOD_RTN, &cfg) != QLIB_OK
                || qlib_config_set_int(cfg, QLIB_PARAM_BITS, 8) != QLIB_OK
                || qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 32) != QLIB_OK
                || qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, 1) != QLIB_OK
                || qlib_quantize(j->ctx, w, n, k, k, cfg, NULL, &re) != QLIB_OK) {
                report_qlib_error(name);
                qlib_config_destroy(cfg);
                goto done;
            }
            qlib_config_destroy(cfg);
            src = re;
        }
        if (export_parts(src, layout, parts, bytes, name) != 0)
            goto done;
        rc = export_digest(j, src, layout, 32, parts, bytes, name, &j->digest[i])
             || gguf_write_tensor(wr->gw, wr->gidx[i], parts[0], bytes[0]) ? -1 : 0;
        j->proj_bytes += bytes[0];
        goto done;
    }
    /* F32 (exact) or F16: the dequantized weights */
    if (!(w = xcalloc(n, k * sizeof(float), "weights")) || qlib_dequantize(j->ctx, t, w, k) != QLIB_OK) {
        if (w)
            report_qlib_error(name);
        goto done;
    }
    if (gguf_write_open(wr->gw, wr->gidx[i]) || put_f32_rows(j, gguf_put, wr->gw, w, n, k, type, 0)
        || gguf_write_close(wr->gw))
        goto done;
    if (type == DT_F16) {       /* the digest of what a reader decodes */
        size_t r;
        unsigned char *row = xcalloc(k, 2, "row");
        if (!row)
            goto done;
        for (r = 0; r < n; r++) {
            row_from_f32(DT_F16, w + r * k, k, row);
            row_to_f32(DT_F16, row, k, w + r * k);
        }
        free(row);
    }
    rc = float_digest(j, w, n, k, type, &j->digest[i]);
    j->proj_bytes += n * k * (type == DT_F16 ? 2 : 4);
done:
    qlib_tensor_destroy(re);
    free(parts[0]);
    free(w);
    return rc;
}

static int gguf_layer(quant_job *j, int l)
{
    const llama_config *c = &j->m.cfg;
    size_t d = (size_t)c->dim;
    int p;
    for (p = 0; p < N_PROJ; p++) {
        if (p == P_WQ && (gguf_write_open(j->wr->gw, j->wr->att_idx[l])
                          || put_f32_rows(j, gguf_put, j->wr->gw, j->m.rms_att + (size_t)l * d, 1, d, DT_F32, 1)
                          || gguf_write_close(j->wr->gw)))
            return -1;
        if (gguf_proj(j, l, p, *model_proj(&j->m, l, p)))
            return -1;
        if (p == P_WO && (gguf_write_open(j->wr->gw, j->wr->ffn_idx[l])
                          || put_f32_rows(j, gguf_put, j->wr->gw, j->m.rms_ffn + (size_t)l * d, 1, d, DT_F32, 1)
                          || gguf_write_close(j->wr->gw)))
            return -1;
    }
    return 0;
}

/* ---------------------------------------------------------- HF GPTQ/AWQ */
static int hf_layout(const quant_job *j)
{
    return j->format == FMT_GPTQ ? QLIB_LAYOUT_GPTQ : QLIB_LAYOUT_AWQ_GEMM;
}

/* A float tensor of the model (rows x cols, row-major fp32) as fp16. */
static int hf_floats(quant_job *j, const char *name, const float *w, size_t rows, size_t cols, int hash)
{
    uint64_t shape[2] = { rows, cols };
    int vec = rows == 1, idx = st_add_tensor(j->wr->sw, name, DT_F16, vec ? 1 : 2, vec ? shape + 1 : shape);
    return idx < 0 || st_write_open(j->wr->sw, idx)
           || put_f32_rows(j, st_put, j->wr->sw, w, rows, cols, DT_F16, hash) || st_write_close(j->wr->sw) ? -1 : 0;
}

static int hf_src(quant_job *j, const char *name, const src_tensor *t)
{
    uint64_t shape[2] = { t->rows, t->cols };
    int vec = t->rows == 1, idx = st_add_tensor(j->wr->sw, name, DT_F16, vec ? 1 : 2, vec ? shape + 1 : shape);
    return idx < 0 || st_write_open(j->wr->sw, idx) || put_src_rows(j, st_put, j->wr->sw, t, DT_F16)
           || st_write_close(j->wr->sw) ? -1 : 0;
}

static int hf_begin(quant_job *j)
{
    qwrite *wr = j->wr;
    const llama_config *c = &j->m.cfg;
    if (out_dir_file(j->out, "model.safetensors", wr->st_path, sizeof(wr->st_path))
        || out_dir_file(j->out, "model.safetensors.spool", wr->spool_path, sizeof(wr->spool_path)))
        return -1;
    if (!(wr->sf = fopen(wr->st_path, "wb")) || !(wr->spool = fopen(wr->spool_path, "w+b"))) {
        llama_err("%s: %s", wr->sf ? wr->spool_path : wr->st_path, strerror(errno));
        return -1;
    }
    wr->hf_packed = xcalloc((size_t)c->n_layers * N_PROJ, sizeof(int), "plan");
    if (!wr->hf_packed || !(wr->sw = st_writer_create_spooled(wr->sf, wr->spool, wr->st_path))
        || st_add_metadata(wr->sw, "format", "pt")
        || st_add_metadata(wr->sw, "quantizer", "qlib " QLIB_VERSION_STRING))
        return -1;
    wr->bits = cfg_get(j->cfg, QLIB_PARAM_BITS);
    wr->sym = cfg_get(j->cfg, QLIB_PARAM_SYMMETRIC);
    wr->act_order = cfg_get(j->cfg, QLIB_PARAM_GPTQ_ACT_ORDER);
    wr->hf_group = cfg_get(j->cfg, QLIB_PARAM_GROUP_SIZE) > 0 ? cfg_get(j->cfg, QLIB_PARAM_GROUP_SIZE) : -1;
    return hf_src(j, "model.embed_tokens.weight", &j->m.src.emb)
           || hf_floats(j, "model.norm.weight", j->m.rms_final, 1, (size_t)c->dim, 1)
           || (!c->shared_classifier && hf_src(j, "lm_head.weight", &j->m.src.cls)) ? -1 : 0;
}

static int hf_part(quant_job *j, const char *base, const char *suffix, int dtype, int dims, uint64_t d0,
                   uint64_t d1, const void *p, size_t bytes)
{
    char name[160];
    uint64_t shape[2] = { d0, d1 };
    int idx;
    snprintf(name, sizeof(name), "%s.%s", base, suffix);
    idx = st_add_tensor(j->wr->sw, name, dtype, dims, shape);
    return idx < 0 || st_write_open(j->wr->sw, idx) || st_write_bytes(j->wr->sw, p, bytes)
           || st_write_close(j->wr->sw) ? -1 : 0;
}

/* The packed parts under the HF name, rows in HF's rotary order for wq, wk. */
static int hf_packed(quant_job *j, int p, const qlib_tensor *t, void *const parts[4],
                     const size_t bytes[4], const char *base)
{
    const llama_config *c = &j->m.cfg;
    int layout = hf_layout(j), bits = qlib_tensor_bits(t), heads = p == P_WQ ? c->n_heads : p == P_WK ? c->n_kv_heads : 0;
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t), groups, *from = NULL, i;
    void *perm[4] = { NULL, NULL, NULL, NULL };
    void *const *out = parts;
    int rc = -1;
    if (hfq_groups(layout, k, j->wr->hf_group, &groups) != 0)
        return -1;
    if (heads) {
        if (!(from = xcalloc(n, sizeof(size_t), "permutation")))
            goto done;
        for (i = 0; i < 4; i++)
            if (bytes[i] && !(perm[i] = xcalloc(bytes[i], 1, "tensor")))
                goto done;
        hf_rotary_from(n, heads, 1, from);
        hfq_permute(layout, n, k, bits, groups, from, (const void *const *)parts, perm);
        out = perm;
    }
    if (layout == QLIB_LAYOUT_GPTQ)
        rc = hf_part(j, base, "qweight", ST_I32, 2, k * (size_t)bits / 32, n, out[0], bytes[0])
             || hf_part(j, base, "qzeros", ST_I32, 2, groups, n * (size_t)bits / 32, out[1], bytes[1])
             || hf_part(j, base, "scales", DT_F16, 2, groups, n, out[2], bytes[2])
             || hf_part(j, base, "g_idx", ST_I32, 1, k, 0, out[3], bytes[3]) ? -1 : 0;
    else
        rc = hf_part(j, base, "qweight", ST_I32, 2, k, n / 8, out[0], bytes[0])
             || hf_part(j, base, "qzeros", ST_I32, 2, groups, n / 8, out[1], bytes[1])
             || hf_part(j, base, "scales", DT_F16, 2, groups, n, out[2], bytes[2]) ? -1 : 0;
done:
    free(from);
    for (i = 0; i < 4; i++)
        free(perm[i]);
    return rc;
}

static int hf_proj(quant_job *j, int l, int p, const qlib_tensor *t)
{
    const llama_config *c = &j->m.cfg;
    qwrite *wr = j->wr;
    size_t i = (size_t)l * N_PROJ + (size_t)p, n = qlib_tensor_rows(t), k = qlib_tensor_cols(t), r, b;
    size_t bytes[4];
    void *parts[4] = { NULL, NULL, NULL, NULL };
    int layout = hf_layout(j), heads = p == P_WQ ? c->n_heads : p == P_WK ? c->n_kv_heads : 0, rc = -1;
    float *w = NULL, *hf = NULL;
    size_t *from = NULL;
    char base[128], name[160], why[256];
    snprintf(base, sizeof(base), "model.layers.%d.%s", l, HF_PROJ[p]);
    if (qlib_tensor_group_size(t) == cfg_get(j->cfg, QLIB_PARAM_GROUP_SIZE)
        && qlib_tensor_export_size(t, (qlib_layout)layout, bytes) == QLIB_OK) {
        for (b = 0; b < 4; b++)
            if (bytes[b] && !(parts[b] = xcalloc(bytes[b], 1, "tensor")))
                goto done;
        if (qlib_tensor_export(t, (qlib_layout)layout, parts, bytes) != QLIB_OK) {
            report_qlib_error(base);
            goto done;
        }
        rc = export_digest(j, t, (qlib_layout)layout, wr->hf_group, parts, bytes, base, &j->digest[i])
             || hf_packed(j, p, t, parts, bytes, base) ? -1 : 0;
        wr->hf_packed[i] = 1;
        j->proj_bytes += bytes[0] + bytes[1] + bytes[2] + bytes[3];
        goto done;
    }
    snprintf(why, sizeof(why), "%s", qlib_last_error());
    /* the dequantized weights in fp16 */
    if (!(w = xcalloc(n, k * sizeof(float), "weights")) || !(hf = xcalloc(n, k * sizeof(float), "weights"))
        || !(from = xcalloc(n, sizeof(size_t), "permutation")))
        goto done;
    if (qlib_dequantize(j->ctx, t, w, k) != QLIB_OK) {
        report_qlib_error(base);
        goto done;
    }
    for (r = 0; r < n; r++)
        from[r] = r;
    if (heads)
        hf_rotary_from(n, heads, 1, from);
    for (r = 0; r < n; r++)
        memcpy(hf + r * k, w + from[r] * k, k * sizeof(float));
    snprintf(name, sizeof(name), "%s.weight", base);
    if (hf_floats(j, name, hf, n, k, 0))
        goto done;
    for (r = 0; r < n * k; r++)      /* what a reader decodes, in model order */
        w[r] = f16_to_f32(f32_to_f16(w[r]));
    rc = float_digest(j, w, n, k, DT_F16, &j->digest[i]);
    j->proj_bytes += n * k * 2;
    if (l == 0)
        fprintf(stderr, "%s: written as fp16 (%s)\n", base, why);
    note_fallback(wr, base);
done:
    for (b = 0; b < 4; b++)
        free(parts[b]);
    free(w);
    free(hf);
    free(from);
    return rc;
}

static int hf_layer(quant_job *j, int l)
{
    size_t d = (size_t)j->m.cfg.dim;
    char name[128];
    int p;
    snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
    if (hf_floats(j, name, j->m.rms_att + (size_t)l * d, 1, d, 1))
        return -1;
    snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
    if (hf_floats(j, name, j->m.rms_ffn + (size_t)l * d, 1, d, 1))
        return -1;
    for (p = 0; p < N_PROJ; p++)
        if (hf_proj(j, l, p, *model_proj(&j->m, l, p)))
            return -1;
    return 0;
}

/* The modules of a block whose every layer is packed (transformers'
 * modules_in_block_to_quantize), and the ones left in fp16. */
static json_t *hf_quant_config(const quant_job *j, int for_quantize_config)
{
    const qwrite *wr = j->wr;
    const llama_config *c = &j->m.cfg;
    json_t *q, *inblock = json_array(), *skip = json_array(), *names = json_array();
    int p, l, all, any;
    for (p = 0; p < N_PROJ; p++) {
        all = 1;
        any = 0;
        for (l = 0; l < c->n_layers; l++) {
            all &= wr->hf_packed[l * N_PROJ + p];
            any |= wr->hf_packed[l * N_PROJ + p];
        }
        if (all)
            json_array_append_new(names, json_string(HF_PROJ[p]));
        else if (!any)
            json_array_append_new(skip, json_string(HF_PROJ[p]));
    }
    json_array_append_new(inblock, names);
    if (j->format == FMT_GPTQ) {
        q = json_pack("{s:s,s:i,s:i,s:b,s:b,s:s,s:f,s:b,s:b}", "quant_method", "gptq",
                      "bits", wr->bits, "group_size", wr->hf_group, "desc_act", wr->act_order,
                      "sym", wr->sym, "checkpoint_format", "gptq", "damp_percent", 0.01,
                      "true_sequential", 1, "static_groups", 0);
        if (q && !for_quantize_config)
            json_object_set_new(q, "modules_in_block_to_quantize", inblock);
        else
            json_decref(inblock);
        if (q && for_quantize_config) {
            json_object_set_new(q, "model_name_or_path", json_null());
            json_object_set_new(q, "model_file_base_name", json_string("model"));
            json_object_set_new(q, "is_marlin_format", json_false());
        }
    } else {
        q = json_pack("{s:s,s:s,s:b,s:i,s:i,s:i,s:i}", "quant_method", "awq", "version", "gemm",
                      "zero_point", !wr->sym, "w_bit", wr->bits, "q_group_size", wr->hf_group,
                      "bits", wr->bits, "group_size", wr->hf_group);
        json_decref(inblock);
        if (q)
            json_object_set_new(q, "modules_to_not_convert",
                                json_array_size(skip) ? json_incref(skip) : json_null());
    }
    json_decref(skip);
    return q;
}

/* The fallback projections by position: "mlp.down_proj (every layer), ..." */
static const char *fallback_positions(const quant_job *j)
{
    static char buf[1024];
    const qwrite *wr = j->wr;
    int p, l, count;
    size_t len = 0;
    buf[0] = '\0';
    for (p = 0; p < N_PROJ; p++) {
        for (l = 0, count = 0; l < j->m.cfg.n_layers; l++)
            count += !wr->hf_packed[l * N_PROJ + p];
        if (count && len + 64 < sizeof(buf))
            len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s%s (%s)", len ? ", " : "",
                                    HF_PROJ[p], count == j->m.cfg.n_layers ? "every layer" : "some layers");
    }
    return buf;
}

static int hf_end(quant_job *j)
{
    qwrite *wr = j->wr;
    json_t *cfg = NULL, *q = NULL;
    char path[4400];
    int rc = -1, copied = 0;
    if (st_write_end(wr->sw, &j->file_bytes) || fflush(wr->sf) != 0 || fsync(fileno(wr->sf)) != 0) {
        llama_err("%s: write failed", wr->st_path);
        return -1;
    }
    fclose(wr->spool);
    wr->spool = NULL;
    unlink(wr->spool_path);
    if (!(cfg = hf_config_object(&j->m.src, &j->tok, DT_F16)) || !(q = hf_quant_config(j, 0))
        || json_object_set_new(cfg, "quantization_config", q))
        goto done;
    q = NULL;
    if (out_dir_file(j->out, "config.json", path, sizeof(path)) || write_json(cfg, path))
        goto done;
    if (!(q = hf_quant_config(j, 1)) || out_dir_file(j->out, "quantize_config.json", path, sizeof(path))
        || write_json(q, path) || copy_tokenizer_files(&j->m.src, j->out, &copied))
        goto done;
    if (wr->n_fallback)
        fprintf(stderr, "%zu projections written as fp16 (the layout cannot hold them): %s\n",
                wr->n_fallback, fallback_positions(j));
    if (j->m.src.kind == SRC_HF)
        fprintf(stderr, "%d tokenizer files copied from %s\n", copied, j->m.src.path);
    rc = 0;
done:
    json_decref(cfg);
    json_decref(q);
    return rc;
}

/* ------------------------------------------------------------- qlm */
static unsigned qlm_flags(const quant_job *j)
{
    return (j->emb_q ? QM_FLAG_EMB_QUANTIZED : 0) | (j->cls_q && j->cls_q != j->emb_q ? QM_FLAG_CLS_QUANTIZED : 0);
}

static int qlm_begin(quant_job *j)
{
    j->qw.f = j->out->f;
    j->qw.path = j->out->tmp;
    return qm_write_floats(&j->qw, &j->m.src, qlm_flags(j));
}

static int qlm_layer(quant_job *j, int l)
{
    int p;
    for (p = 0; p < N_PROJ; p++) {
        qlib_tensor *t = *model_proj(&j->m, l, p);
        j->proj_bytes += qlib_tensor_storage_bytes(t);
        if (tensor_digest(j->ctx, t, 0, &j->digest[(size_t)l * N_PROJ + (size_t)p])
            || qm_write_tensor(&j->qw, t, l, p))
            return -1;
    }
    return 0;
}

static int qlm_end(quant_job *j)
{
    size_t base = (size_t)j->m.cfg.n_layers * N_PROJ;
    if (j->emb_q && (tensor_digest(j->ctx, j->emb_q, 0, &j->digest[base])
                     || qm_write_tensor(&j->qw, j->emb_q, j->m.cfg.n_layers, QM_REC_EMB)))
        return -1;
    if (j->cls_q && j->cls_q != j->emb_q
        && (tensor_digest(j->ctx, j->cls_q, 0, &j->digest[base + 1])
            || qm_write_tensor(&j->qw, j->cls_q, j->m.cfg.n_layers, QM_REC_CLS)))
        return -1;
    /* --awq-fold: the RMSNorm weights now hold AWQ's scales */
    if (j->fold && qm_rewrite_floats(&j->qw, &j->m.src, qlm_flags(j), j->m.rms_att, j->m.rms_ffn))
        return -1;
    j->file_bytes = j->qw.written;
    return 0;
}

/* ------------------------------------------------------------ interface */
int qw_begin(quant_job *j)
{
    j->float_digest = LLAMA_FNV_OFFSET;
    if (j->format == FMT_QLM)
        return qlm_begin(j);
    if (!(j->wr = xcalloc(1, sizeof(qwrite), "writer")))
        return -1;
    return j->format == FMT_GGUF ? gguf_begin(j) : hf_begin(j);
}

int qw_layer(quant_job *j, int l)
{
    int p, rc;
    for (p = 0; p < N_PROJ; p++) {
        const qlib_tensor *t = *model_proj(&j->m, l, p);
        if (l == 0 && p == 0) {
            j->method = (int)qlib_tensor_method(t);
            j->bits = qlib_tensor_bits(t);
            j->group = qlib_tensor_group_size(t);
        }
        j->proj_weights += (double)qlib_tensor_rows(t) * (double)qlib_tensor_cols(t);
    }
    rc = j->format == FMT_QLM ? qlm_layer(j, l) : j->format == FMT_GGUF ? gguf_layer(j, l) : hf_layer(j, l);
    for (p = 0; p < N_PROJ; p++) {
        qlib_tensor **t = model_proj(&j->m, l, p);
        qlib_tensor_destroy(*t);
        *t = NULL;
    }
    return rc;
}

int qw_end(quant_job *j)
{
    if (j->format == FMT_QLM)
        return qlm_end(j);
    if (j->format == FMT_GGUF)
        return gguf_write_end(j->wr->gw, &j->file_bytes);
    return hf_end(j);
}

void qw_free(quant_job *j)
{
    qwrite *wr = j->wr;
    if (!wr)
        return;
    gguf_writer_free(wr->gw);
    st_writer_free(wr->sw);
    if (wr->sf)
        fclose(wr->sf);
    if (wr->spool) {
        fclose(wr->spool);
        unlink(wr->spool_path);
    }
    free(wr->gtype);
    free(wr->gidx);
    free(wr->att_idx);
    free(wr->ffn_idx);
    free(wr->hf_packed);
    free(wr);
    j->wr = NULL;
}

/* ------------------------------------------------------------- checking */
static int check_digest(quant_job *j, const qlib_tensor *t, size_t i, const char *what)
{
    uint64_t h;
    if (tensor_digest(j->ctx, t, 0, &h) != 0)
        return -1;
    if (h != j->digest[i]) {
        llama_err("round trip: %s differs after reading the output back", what);
        return -1;
    }
    return 0;
}

/* qlm: the file loaded with QLIB_LOAD_BORROW (its fp32 section is checked
 * against its checksum by the loader), every tensor compared. */
static int verify_qlm(quant_job *j)
{
    llama_model back;
    size_t base = (size_t)j->m.cfg.n_layers * N_PROJ;
    char what[64];
    int l, p, rc = 0;
    if (model_load(j->ctx, j->out->tmp, &back) != 0)
        return -1;
    if (memcmp(&back.cfg, &j->m.cfg, sizeof(back.cfg)) != 0) {
        llama_err("%s: the configuration read back differs from the model's", j->out->tmp);
        rc = -1;
    }
    for (l = 0; rc == 0 && l < back.cfg.n_layers; l++)
        for (p = 0; rc == 0 && p < N_PROJ; p++) {
            snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
            rc = check_digest(j, *model_proj(&back, l, p), (size_t)l * N_PROJ + (size_t)p, what);
        }
    if (rc == 0 && (!j->emb_q != !back.emb_q || (j->emb_q && check_digest(j, back.emb_q, base, "the token embedding"))))
        rc = -1;
    if (rc == 0 && j->cls_q && j->cls_q != j->emb_q && check_digest(j, back.cls_q, base + 1, "the classifier"))
        rc = -1;
    model_free(&back);
    return rc;
}

/* GGUF and HF: the output opened as a model source, one tensor at a time. */
static int verify_source(quant_job *j)
{
    model_source s;
    const llama_config *c = &j->m.cfg;
    size_t base = (size_t)c->n_layers * N_PROJ, d = (size_t)c->dim, big = d * (size_t)(c->hidden_dim > c->dim ? c->hidden_dim : c->dim);
    uint64_t h = LLAMA_FNV_OFFSET;
    float *buf = NULL;
    qlib_tensor *t = NULL;
    char what[64];
    int l, p, rc = -1;
    if (source_open(j->out->tmp, &s) != 0)
        return -1;
    if (memcmp(&s.cfg, c, sizeof(*c)) != 0) {
        llama_err("%s: the configuration read back differs from the model's", j->out->tmp);
        goto done;
    }
    if (!(buf = xcalloc(max_size(big, CHUNK_ROWS * d), sizeof(float), "check")))
        goto done;
    /* float tensors in the order they were written */
#define HASH_SRC(t_) do { size_t r_, n_; for (r_ = 0; r_ < (t_)->rows; r_ += n_) { \
        n_ = (t_)->rows - r_ < CHUNK_ROWS ? (t_)->rows - r_ : CHUNK_ROWS; \
        src_read_rows((t_), r_, n_, buf); h = llama_fnv1a(h, buf, n_ * (t_)->cols * sizeof(float)); } } while (0)
    if (!j->emb_q)
        HASH_SRC(&s.emb);
    HASH_SRC(&s.norm_final);
    if (!c->shared_classifier && !j->cls_q)
        HASH_SRC(&s.cls);
    for (l = 0; l < c->n_layers; l++) {
        HASH_SRC(&s.norm_att[l]);
        HASH_SRC(&s.norm_ffn[l]);
    }
#undef HASH_SRC
    if (h != j->float_digest) {
        llama_err("round trip: the float tensors differ after reading the output back");
        goto done;
    }
    for (l = 0; l < c->n_layers; l++)
        for (p = 0; p < N_PROJ; p++) {
            snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
            if (src_to_tensor(j->ctx, source_proj(&s, l, p), buf, &t, what)
                || check_digest(j, t, (size_t)l * N_PROJ + (size_t)p, what))
                goto done;
            qlib_tensor_destroy(t);
            t = NULL;
        }
    if (j->emb_q && (src_to_tensor(j->ctx, &s.emb, NULL, &t, "token embedding")
                     || check_digest(j, t, base, "the token embedding")))
        goto done;
    qlib_tensor_destroy(t);
    t = NULL;
    if (j->cls_q && j->cls_q != j->emb_q
        && (src_to_tensor(j->ctx, &s.cls, NULL, &t, "classifier") || check_digest(j, t, base + 1, "the classifier")))
        goto done;
    rc = 0;
done:
    qlib_tensor_destroy(t);
    free(buf);
    source_close(&s);
    return rc;
}

int qw_verify(quant_job *j)
{
    return j->format == FMT_QLM ? verify_qlm(j) : verify_source(j);
}

/* ----------------------------------------------------------- embeddings */
/* --embed-bits B: the token embedding (and a separate classifier) as B-bit
 * symmetric round-to-nearest tensors with groups of 32, the GGML Q8_0 /
 * Q4_0 block structure, so that every format holds them exactly. */
static int quantize_matrix(quant_job *j, const src_tensor *t, qlib_tensor **out, const char *what)
{
    qlib_config *cfg = NULL;
    float *w = NULL;
    const float *direct = src_direct_f32(t);
    qlib_status st = qlib_config_create(QLIB_METHOD_RTN, &cfg);
    if (st == QLIB_OK)
        st = qlib_config_set_int(cfg, QLIB_PARAM_BITS, j->o->embed_bits);
    if (st == QLIB_OK)
        st = qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, 32);
    if (st == QLIB_OK)
        st = qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, 1);
    if (st == QLIB_OK && !direct) {
        if (src_read_all(t, &w, what) != 0) {
            qlib_config_destroy(cfg);
            return -1;
        }
        direct = w;
    }
    if (st == QLIB_OK)
        st = qlib_quantize(j->ctx, direct, t->rows, t->cols, t->cols, cfg, NULL, out);
    qlib_config_destroy(cfg);
    free(w);
    if (st != QLIB_OK) {
        report_qlib_error(what);
        return -1;
    }
    return 0;
}

int quantize_embeddings(quant_job *j)
{
    if (!j->o->embed_bits)
        return 0;
    if (quantize_matrix(j, &j->m.src.emb, &j->emb_q, "token embedding"))
        return -1;
    if (j->m.cfg.shared_classifier) {
        j->cls_q = j->emb_q;
        return 0;
    }
    return quantize_matrix(j, &j->m.src.cls, &j->cls_q, "classifier");
}
