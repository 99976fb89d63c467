/*
 * Float models where they are stored (llama2.c checkpoint, GGUF, Hugging
 * Face directory): every tensor the engine needs, found, shape-checked and
 * left in the mapped file, read into fp32 a few rows at a time.
 *
 * Hugging Face stores wq and wk with each head's rows in the order
 * (half, i): row h*hs + half*hs/2 + i holds what llama2.c and GGUF keep at
 * row h*hs + 2*i + half, because its rotary embedding rotates the pairs
 * (i, i + hs/2) instead of (2i, 2i + 1). Reading undoes that.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "llama.h"

const char *source_kind_name(int kind)
{
    switch (kind) {
    case SRC_LLAMA2C: return "llama2.c checkpoint";
    case SRC_GGUF: return "GGUF";
    case SRC_HF: return "Hugging Face directory";
    default: return "?";
    }
}

src_tensor *source_proj(const model_source *s, int l, int p)
{
    return &s->proj[(size_t)l * N_PROJ + (size_t)p];
}

/* The stored row that holds model row r. */
static size_t stored_row(const src_tensor *t, size_t r)
{
    size_t hs, h, within;
    if (t->hf_heads <= 0)
        return r;
    hs = t->rows / (size_t)t->hf_heads;
    h = r / hs;
    within = r % hs;
    return h * hs + (within % 2) * (hs / 2) + within / 2;
}

const unsigned char *src_row_bytes(const src_tensor *t, size_t r)
{
    size_t rb = 0;
    dtype_row_bytes(t->dtype, t->cols, &rb);
    return t->data + stored_row(t, r) * rb;
}

void src_read_rows(const src_tensor *t, size_t row0, size_t n, float *dst)
{
    size_t rb = 0, i;
    if (t->q) {
        /* a one-thread context needs at most one row of scratch, allocated
         * by the first call (src_to_tensor or the import check) */
        if (n && qlib_dequantize_rows(t->qctx, t->q, row0, n, dst, t->cols) != QLIB_OK) {
            report_qlib_error("reading a quantized tensor");
            memset(dst, 0, n * t->cols * sizeof(float));
        }
        return;
    }
    dtype_row_bytes(t->dtype, t->cols, &rb);   /* checked when the source was opened */
    for (i = 0; i < n; i++)
        row_to_f32(t->dtype, t->data + stored_row(t, row0 + i) * rb, t->cols, dst + i * t->cols);
}

int src_read_all(const src_tensor *t, float **out, const char *what)
{
    *out = xcalloc(t->rows, t->cols * sizeof(float), what);
    if (!*out)
        return -1;
    src_read_rows(t, 0, t->rows, *out);
    return 0;
}

const float *src_direct_f32(const src_tensor *t)
{
    if (t->dtype != DT_F32 || t->q || t->hf_heads > 0 || ((uintptr_t)t->data & 3u) != 0)
        return NULL;
    return (const float *)(const void *)t->data;
}

static int alloc_tables(model_source *s)
{
    size_t L = (size_t)s->cfg.n_layers;
    s->norm_att = xcalloc(L, sizeof(src_tensor), "tensor table");
    s->norm_ffn = xcalloc(L, sizeof(src_tensor), "tensor table");
    s->proj = xcalloc(L * N_PROJ, sizeof(src_tensor), "tensor table");
    return s->norm_att && s->norm_ffn && s->proj ? 0 : -1;
}

/* ------------------------------------------------------------------ GGUF */
const char *const GGUF_PROJ[N_PROJ] = { "attn_q", "attn_k", "attn_v", "attn_output",
                                        "ffn_gate", "ffn_down", "ffn_up" };


static int gguf_tensor(const model_source *s, const char *name, size_t rows, size_t cols,
                       int optional, src_tensor *out)
{
    const gguf_tensor_info *t = gguf_find_tensor(&s->gguf, name);
    if (!t) {
        if (!optional)
            llama_err("%s: tensor %s is missing", s->path, name);
        return optional ? 1 : -1;
    }
    if (t->ne[0] != cols || (t->n_dims > 1 ? t->ne[1] : 1) != rows || t->ne[2] != 1 || t->ne[3] != 1) {
        llama_err("%s: tensor %s is %llu x %llu, the model needs %zu x %zu", s->path, name,
                  (unsigned long long)(t->n_dims > 1 ? t->ne[1] : 1), (unsigned long long)t->ne[0],
                  rows, cols);
        return -1;
    }
    if (!t->data) {
        llama_err("%s: tensor %s has GGML type %u; this program reads F32, F16, BF16, Q8_0 and "
                  "Q4_0", s->path, name, t->type);
        return -1;
    }
    out->data = t->data;
    out->dtype = (int)t->type;
    out->rows = rows;
    out->cols = cols;
    return 0;
}

static int gguf_int(const model_source *s, const char *key, int optional, long long hi, int *v)
{
    long long x = *v;
    int rc = gguf_get_int(s->path, &s->gguf, key, optional, 1, hi, &x);
    if (rc == 0)
        *v = (int)x;
    return rc < 0 ? -1 : 0;
}

static int gguf_config(model_source *s)
{
    llama_config *c = &s->cfg;
    const char *arch, *scaling;
    size_t len, slen;
    double eps = 1e-5, theta = 10000.0;
    long long rope_dims = 0;
    const gguf_kv *tokens = gguf_find(&s->gguf, "tokenizer.ggml.tokens");
    const gguf_tensor_info *emb = gguf_find_tensor(&s->gguf, "token_embd.weight");
    if (gguf_get_str(s->path, &s->gguf, "general.architecture", 0, &arch, &len) < 0)
        return -1;
    if (len != 5 || memcmp(arch, "llama", 5) != 0) {
        llama_err("%s: GGUF architecture '%.*s'; this program runs 'llama'", s->path, (int)len, arch);
        return -1;
    }
    c->n_heads = c->n_kv_heads = 0;
    if (gguf_int(s, "llama.embedding_length", 0, INT_MAX, &c->dim)
        || gguf_int(s, "llama.feed_forward_length", 0, INT_MAX, &c->hidden_dim)
        || gguf_int(s, "llama.block_count", 0, INT_MAX, &c->n_layers)
        || gguf_int(s, "llama.attention.head_count", 0, INT_MAX, &c->n_heads)
        || gguf_int(s, "llama.context_length", 0, INT_MAX, &c->seq_len))
        return -1;
    c->n_kv_heads = c->n_heads;
    if (gguf_int(s, "llama.attention.head_count_kv", 1, INT_MAX, &c->n_kv_heads)
        || gguf_get_float(s->path, &s->gguf, "llama.attention.layer_norm_rms_epsilon", 1, &eps) < 0
        || gguf_get_float(s->path, &s->gguf, "llama.rope.freq_base", 1, &theta) < 0
        || gguf_get_int(s->path, &s->gguf, "llama.rope.dimension_count", 1, 1, INT_MAX, &rope_dims) < 0)
        return -1;
    if (gguf_get_str(s->path, &s->gguf, "llama.rope.scaling.type", 1, &scaling, &slen) == 0
        && !(slen == 4 && !memcmp(scaling, "none", 4))) {
        llama_err("%s: rope scaling '%.*s' is not supported", s->path, (int)slen, scaling);
        return -1;
    }
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    if (tokens && tokens->type == GV_ARR && tokens->count <= INT_MAX)
        c->vocab_size = (int)tokens->count;
    else if (emb && emb->n_dims == 2 && emb->ne[1] <= INT_MAX)
        c->vocab_size = (int)emb->ne[1];
    else {
        llama_err("%s: neither a vocabulary nor token_embd.weight gives the vocabulary size", s->path);
        return -1;
    }
    c->shared_classifier = gguf_find_tensor(&s->gguf, "output.weight") == NULL;
    if (config_validate(c, s->path))
        return -1;
    if (rope_dims && rope_dims != c->dim / c->n_heads) {
        llama_err("%s: rotary dimension %lld differs from the head size %d (partial rotary is not "
                  "supported)", s->path, rope_dims, c->dim / c->n_heads);
        return -1;
    }
    return 0;
}

static int gguf_tensors(model_source *s)
{
    const llama_config *c = &s->cfg;
    size_t d = (size_t)c->dim, v = (size_t)c->vocab_size;
    char name[96];
    int l, p;
    if (gguf_tensor(s, "token_embd.weight", v, d, 0, &s->emb)
        || gguf_tensor(s, "output_norm.weight", 1, d, 0, &s->norm_final))
        return -1;
    if (c->shared_classifier)
        s->cls = s->emb;
    else if (gguf_tensor(s, "output.weight", v, d, 0, &s->cls))
        return -1;
    for (l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", l);
        if (gguf_tensor(s, name, 1, d, 0, &s->norm_att[l]))
            return -1;
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", l);
        if (gguf_tensor(s, name, 1, d, 0, &s->norm_ffn[l]))
            return -1;
        for (p = 0; p < N_PROJ; p++) {
            snprintf(name, sizeof(name), "blk.%d.%s.weight", l, GGUF_PROJ[p]);
            if (gguf_tensor(s, name, proj_rows(c, p), proj_cols(c, p), 0, source_proj(s, l, p)))
                return -1;
        }
    }
    return 0;
}

static int gguf_source(const char *path, model_source *s)
{
    s->kind = SRC_GGUF;
    if (gguf_open(path, &s->gguf) != 0 || gguf_config(s) != 0 || alloc_tables(s) != 0)
        return -1;
    return gguf_tensors(s);
}

/* ------------------------------------------------------- engine tensors */
int src_to_tensor(qlib_ctx *ctx, src_tensor *t, float *buf, qlib_tensor **out, const char *what)
{
    qlib_config *cfg = NULL;
    const float *w = src_direct_f32(t);
    size_t bytes[4] = { 0, 0, 0, 0 };
    const void *parts[4] = { t->data, NULL, NULL, NULL };
    qlib_status st;
    *out = NULL;
    if (t->q) {
        *out = t->q;        /* moves to the caller */
        t->q = NULL;
        return 0;
    }
    if ((t->dtype == DT_Q8_0 || t->dtype == DT_Q4_0) && t->hf_heads == 0) {
        dtype_row_bytes(t->dtype, t->cols, &bytes[0]);
        bytes[0] *= t->rows;
        st = qlib_tensor_import(ctx, t->dtype == DT_Q8_0 ? QLIB_LAYOUT_GGML_Q8_0 : QLIB_LAYOUT_GGML_Q4_0,
                                t->rows, t->cols, t->dtype == DT_Q8_0 ? 8 : 4, 32, parts, bytes, out);
    } else {
        if (!w) {
            src_read_rows(t, 0, t->rows, buf);
            w = buf;
        }
        st = qlib_config_create(QLIB_METHOD_NONE, &cfg);
        if (st == QLIB_OK)
            st = qlib_config_set_int(cfg, QLIB_PARAM_BITS, t->dtype == DT_F16 ? 16 : 32);
        if (st == QLIB_OK)
            st = qlib_quantize(ctx, w, t->rows, t->cols, t->cols, cfg, NULL, out);
        qlib_config_destroy(cfg);
    }
    if (st != QLIB_OK) {
        report_qlib_error(what);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------------------- open */
int source_open(const char *path, model_source *s)
{
    mapped_file f;
    int rc;
    memset(s, 0, sizeof(*s));
    if (strlen(path) >= sizeof(s->path)) {
        llama_err("%s: path too long", path);
        return -1;
    }
    strcpy(s->path, path);
    s->cfg.norm_eps = 1e-5f;
    s->cfg.rope_theta = 10000.0f;
    if (hf_is_dir(path)) {
        rc = hf_open(path, s);
    } else {
        if (map_file(path, &f) != 0)
            return -1;
        if (gguf_is_gguf(&f)) {
            unmap_file(&f);
            rc = gguf_source(path, s);
        } else {
            s->file = f;
            rc = checkpoint_open(path, s);
        }
    }
    if (rc != 0)
        source_close(s);
    return rc;
}

static void free_quantized(src_tensor *t, size_t n)
{
    size_t i;
    for (i = 0; t && i < n; i++)
        qlib_tensor_destroy(t[i].q);
}

void source_close(model_source *s)
{
    size_t i;
    free_quantized(s->proj, (size_t)s->cfg.n_layers * N_PROJ);
    qlib_ctx_destroy(s->qctx);
    for (i = 0; s->shards && i < s->n_shards; i++)
        st_free(&s->shards[i]);
    free(s->shards);
    gguf_free(&s->gguf);
    unmap_file(&s->file);
    free(s->norm_att);
    free(s->norm_ffn);
    free(s->proj);
    memset(s, 0, sizeof(*s));
}
