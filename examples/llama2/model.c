/* The model: configuration checks, shapes, and the llama2.c checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

const char *const proj_names[N_PROJ] = { "wq", "wk", "wv", "wo", "w1", "w2", "w3" };

#define CKPT_HEADER_BYTES 28
#define LLAMA2C_EXPORT_MAGIC 0x616b3432u  /* "ak42": llama2.c export versions >= 1 */

/* Limits far above any Llama-2 model; they keep every product in range. */
#define MAX_DIM (1 << 16)
#define MAX_HIDDEN (1 << 20)
#define MAX_LAYERS 1024
#define MAX_VOCAB (1 << 22)
#define MAX_SEQ (1 << 20)

static int check_range(const char *path, const char *name, long long v, long long hi)
{
    if (v < 1 || v > hi) {
        llama_err("%s: %s = %lld is out of range [1, %lld]", path, name, v, hi);
        return -1;
    }
    return 0;
}

int config_validate(const llama_config *c, const char *path)
{
    if (check_range(path, "dim", c->dim, MAX_DIM) || check_range(path, "hidden_dim", c->hidden_dim, MAX_HIDDEN)
        || check_range(path, "n_layers", c->n_layers, MAX_LAYERS)
        || check_range(path, "n_heads", c->n_heads, c->dim)
        || check_range(path, "n_kv_heads", c->n_kv_heads, c->n_heads)
        || check_range(path, "vocab_size", c->vocab_size, MAX_VOCAB)
        || check_range(path, "seq_len", c->seq_len, MAX_SEQ))
        return -1;
    if (c->dim % c->n_heads != 0 || (c->dim / c->n_heads) % 2 != 0) {
        llama_err("%s: dim %d is not n_heads %d times an even head size", path, c->dim, c->n_heads);
        return -1;
    }
    if (c->n_heads % c->n_kv_heads != 0) {
        llama_err("%s: n_heads %d is not a multiple of n_kv_heads %d", path, c->n_heads, c->n_kv_heads);
        return -1;
    }
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f) || !(c->rope_theta >= 1.0f && c->rope_theta < 1e30f)) {
        llama_err("%s: norm epsilon %g or rotary base %g out of range", path, (double)c->norm_eps,
                  (double)c->rope_theta);
        return -1;
    }
    if (c->vocab_size < 3) {
        llama_err("%s: vocab_size %d has no room for BOS and EOS", path, c->vocab_size);
        return -1;
    }
    return 0;
}

size_t config_kv_dim(const llama_config *c)
{
    return (size_t)c->dim / (size_t)c->n_heads * (size_t)c->n_kv_heads;
}

size_t proj_rows(const llama_config *c, int p)
{
    switch (p) {
    case P_WK: case P_WV: return config_kv_dim(c);
    case P_W1: case P_W3: return (size_t)c->hidden_dim;
    default: return (size_t)c->dim;
    }
}

size_t proj_cols(const llama_config *c, int p)
{
    return p == P_W2 ? (size_t)c->hidden_dim : (size_t)c->dim;
}

qlib_tensor **model_proj(const llama_model *m, int l, int p)
{
    return &m->proj[(size_t)l * N_PROJ + (size_t)p];
}

/* acc += a * b, checked. */
static int add_prod(size_t *acc, size_t a, size_t b)
{
    size_t t;
    return size_mul(a, b, &t) || size_add(*acc, t, acc) ? -1 : 0;
}

static int checkpoint_floats(const llama_config *c, size_t *total)
{
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, h = (size_t)c->hidden_dim;
    size_t kv = config_kv_dim(c), v = (size_t)c->vocab_size, hs = d / (size_t)c->n_heads;
    size_t n = 0, ld, lkv, lh;
    int bad = size_mul(L, d, &ld) || size_mul(L, kv, &lkv) || size_mul(L, h, &lh);
    bad = bad || add_prod(&n, v, d) || add_prod(&n, 2, ld) || add_prod(&n, 2 * d, ld)
          || add_prod(&n, 2 * d, lkv) || add_prod(&n, 3 * d, lh) || size_add(n, d, &n)
          || add_prod(&n, (size_t)c->seq_len, hs) || (!c->shared_classifier && add_prod(&n, v, d));
    *total = n;
    return bad ? -1 : 0;
}

static void read_header(const unsigned char *p, llama_config *c)
{
    int32_t h[7];
    int i;
    for (i = 0; i < 7; i++)
        h[i] = (int32_t)get_u32le(p + 4 * i);
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->shared_classifier = h[5] > 0;
    c->vocab_size = h[5] < 0 && h[5] != INT32_MIN ? -h[5] : h[5];  /* INT32_MIN stays invalid */
    c->seq_len = h[6];
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
}

static int checkpoint_check_size(const char *path, const model_source *s)
{
    size_t floats, bytes;
    if (checkpoint_floats(&s->cfg, &floats) || size_mul(floats, 4, &bytes)
        || size_add(bytes, CKPT_HEADER_BYTES, &bytes)) {
        llama_err("%s: the header's sizes overflow", path);
        return -1;
    }
    if (bytes != s->file.size) {
        llama_err("%s: the header describes %zu bytes but the file has %zu (truncated or not a "
                  "llama2.c legacy checkpoint)", path, bytes, s->file.size);
        return -1;
    }
    return 0;
}

static const unsigned char *f32_tensor(src_tensor *t, const unsigned char *p, size_t rows,
                                       size_t cols)
{
    t->data = p;
    t->dtype = DT_F32;
    t->rows = rows;
    t->cols = cols;
    return p + rows * cols * sizeof(float);
}

/* Every tensor of layer l is at stride times l from the first. */
static const unsigned char *per_layer(src_tensor *first, size_t stride, int layers,
                                      const unsigned char *p, size_t rows, size_t cols)
{
    int l;
    for (l = 0; l < layers; l++)
        f32_tensor(&first[(size_t)l * stride], p + (size_t)l * rows * cols * sizeof(float), rows, cols);
    return p + (size_t)layers * rows * cols * sizeof(float);
}

static void checkpoint_tensors(model_source *s)
{
    const llama_config *c = &s->cfg;
    const unsigned char *p = s->file.data + CKPT_HEADER_BYTES;
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim, kv = config_kv_dim(c);
    size_t v = (size_t)c->vocab_size, hs = d / (size_t)c->n_heads;
    int L = c->n_layers;
    p = f32_tensor(&s->emb, p, v, d);
    p = per_layer(s->norm_att, 1, L, p, 1, d);
    p = per_layer(&s->proj[P_WQ], N_PROJ, L, p, d, d);
    p = per_layer(&s->proj[P_WK], N_PROJ, L, p, kv, d);
    p = per_layer(&s->proj[P_WV], N_PROJ, L, p, kv, d);
    p = per_layer(&s->proj[P_WO], N_PROJ, L, p, d, d);
    p = per_layer(s->norm_ffn, 1, L, p, 1, d);
    p = per_layer(&s->proj[P_W1], N_PROJ, L, p, h, d);
    p = per_layer(&s->proj[P_W2], N_PROJ, L, p, d, h);
    p = per_layer(&s->proj[P_W3], N_PROJ, L, p, h, d);
    p = f32_tensor(&s->norm_final, p, 1, d);
    p += (size_t)c->seq_len * hs * sizeof(float);   /* freq_cis_real and freq_cis_imag */
    if (c->shared_classifier)
        s->cls = s->emb;
    else
        f32_tensor(&s->cls, p, v, d);
}

int checkpoint_open(const char *path, model_source *s)
{
    s->kind = SRC_LLAMA2C;
    if (s->file.size < CKPT_HEADER_BYTES) {
        llama_err("%s: %zu bytes is too short for a llama2.c checkpoint header", path, s->file.size);
        return -1;
    }
    if (get_u32le(s->file.data) == LLAMA2C_EXPORT_MAGIC) {
        llama_err("%s: llama2.c export version %u is not supported; export with --version 0 "
                  "(legacy)", path, s->file.size >= 8 ? get_u32le(s->file.data + 4) : 0u);
        return -1;
    }
    if (!host_is_little_endian()) {
        llama_err("%s: llama2.c checkpoints are little-endian floats; this host is not", path);
        return -1;
    }
    read_header(s->file.data, &s->cfg);
    if (config_validate(&s->cfg, path) || checkpoint_check_size(path, s))
        return -1;
    s->norm_att = xcalloc((size_t)s->cfg.n_layers, sizeof(src_tensor), "tensor table");
    s->norm_ffn = xcalloc((size_t)s->cfg.n_layers, sizeof(src_tensor), "tensor table");
    s->proj = xcalloc((size_t)s->cfg.n_layers * N_PROJ, sizeof(src_tensor), "tensor table");
    if (!s->norm_att || !s->norm_ffn || !s->proj)
        return -1;
    checkpoint_tensors(s);
    return 0;
}

/* ------------------------------------------------- a float model in memory */
/* A vocab x dim matrix: the mapped rows when they are fp32, else converted. */
static const float *matrix_f32(llama_model *m, const src_tensor *t, int slot)
{
    const float *direct = src_direct_f32(t);
    if (direct)
        return direct;
    if (src_read_all(t, &m->owned[slot], "fp32 copy") != 0)
        return NULL;
    return m->owned[slot];
}

int model_norms_from_source(llama_model *m)
{
    const model_source *s = &m->src;
    size_t d = (size_t)m->cfg.dim, L = (size_t)m->cfg.n_layers, l;
    float *att = xcalloc(L, d * sizeof(float), "norms"), *ffn = xcalloc(L, d * sizeof(float), "norms");
    float *fin = xcalloc(d, sizeof(float), "norms");
    m->owned[1] = att;
    m->owned[2] = ffn;
    m->owned[3] = fin;
    if (!att || !ffn || !fin)
        return -1;
    for (l = 0; l < L; l++) {
        src_read_rows(&s->norm_att[l], 0, 1, att + l * d);
        src_read_rows(&s->norm_ffn[l], 0, 1, ffn + l * d);
    }
    src_read_rows(&s->norm_final, 0, 1, fin);
    m->rms_att = att;
    m->rms_ffn = ffn;
    m->rms_final = fin;
    return 0;
}

/* Every projection as a qlib tensor: Q8_0 / Q4_0 blocks and GPTQ / AWQ
 * checkpoints imported, F16 as a 16-bit float tensor, else fp32 (all
 * exact). */
static int source_tensors(qlib_ctx *ctx, llama_model *m)
{
    size_t big = (size_t)m->cfg.dim * (size_t)(m->cfg.hidden_dim > m->cfg.dim ? m->cfg.hidden_dim : m->cfg.dim);
    float *buf = xcalloc(big, sizeof(float), "weights");
    char what[80];
    int l, p, rc = buf ? 0 : -1;
    for (l = 0; rc == 0 && l < m->cfg.n_layers; l++) {
        for (p = 0; rc == 0 && p < N_PROJ; p++) {
            snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
            rc = src_to_tensor(ctx, source_proj(&m->src, l, p), buf, model_proj(m, l, p), what);
        }
    }
    free(buf);
    return rc;
}

/* The token embedding and classifier: fp32 (mapped or converted), or, when
 * stored as GGML blocks, imported qlib tensors (rows looked up with
 * qlib_dequantize_rows, the classifier multiplied by qlib_matmul). */
static int embeddings(qlib_ctx *ctx, llama_model *m)
{
    src_tensor *e = &m->src.emb, *c = &m->src.cls;
    int quant_e = e->dtype == DT_Q8_0 || e->dtype == DT_Q4_0;
    int quant_c = c->dtype == DT_Q8_0 || c->dtype == DT_Q4_0;
    if (quant_e) {
        if (src_to_tensor(ctx, e, NULL, &m->emb_q, "token embedding") != 0)
            return -1;
    } else if (!(m->tok_emb = matrix_f32(m, e, 0))) {
        return -1;
    }
    if (m->cfg.shared_classifier) {
        m->wcls = m->tok_emb;
        m->cls_q = m->emb_q;
        return 0;
    }
    if (quant_c)
        return src_to_tensor(ctx, c, NULL, &m->cls_q, "classifier");
    return (m->wcls = matrix_f32(m, c, 4)) ? 0 : -1;
}

static int float_model_load(qlib_ctx *ctx, const char *path, llama_model *m)
{
    if (source_open(path, &m->src) != 0)
        return -1;
    m->cfg = m->src.cfg;
    if (embeddings(ctx, m) != 0 || model_norms_from_source(m) != 0)
        return -1;
    m->proj = xcalloc((size_t)m->cfg.n_layers * N_PROJ, sizeof(qlib_tensor *), "tensor table");
    if (!m->proj)
        return -1;
    return source_tensors(ctx, m);
}

int model_load(qlib_ctx *ctx, const char *path, llama_model *m)
{
    int rc;
    memset(m, 0, sizeof(*m));
    if (!hf_is_dir(path)) {
        if (map_file(path, &m->file) != 0)
            return -1;
        if (qmodel_is_quantized_file(&m->file)) {
            rc = qmodel_load(ctx, path, m);
            if (rc != 0)
                model_free(m);
            return rc;
        }
        unmap_file(&m->file);
    }
    rc = float_model_load(ctx, path, m);
    if (rc != 0)
        model_free(m);
    return rc;
}

void model_free(llama_model *m)
{
    size_t i;
    if (m->proj) {
        for (i = 0; i < (size_t)m->cfg.n_layers * N_PROJ; i++)
            qlib_tensor_destroy(m->proj[i]);
        free(m->proj);
    }
    if (m->cls_q != m->emb_q)
        qlib_tensor_destroy(m->cls_q);
    qlib_tensor_destroy(m->emb_q);
    for (i = 0; i < 5; i++)
        free(m->owned[i]);
    source_close(&m->src);
    unmap_file(&m->file);
    memset(m, 0, sizeof(*m));
}
