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

const float *raw_weight(const llama_model *m, int l, int p)
{
    const llama_config *c = &m->cfg;
    if (!m->raw[p])
        return NULL;
    return m->raw[p] + (size_t)l * proj_rows(c, p) * proj_cols(c, p);
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
}

static int checkpoint_check_size(const char *path, const llama_model *m)
{
    size_t floats, bytes;
    if (checkpoint_floats(&m->cfg, &floats) || size_mul(floats, 4, &bytes)
        || size_add(bytes, CKPT_HEADER_BYTES, &bytes)) {
        llama_err("%s: the header's sizes overflow", path);
        return -1;
    }
    if (bytes != m->file.size) {
        llama_err("%s: the header describes %zu bytes but the file has %zu (truncated or not a "
                  "llama2.c legacy checkpoint)", path, bytes, m->file.size);
        return -1;
    }
    return 0;
}

static void checkpoint_pointers(llama_model *m)
{
    const llama_config *c = &m->cfg;
    const float *p = (const float *)(const void *)(m->file.data + CKPT_HEADER_BYTES);
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, h = (size_t)c->hidden_dim;
    size_t kv = config_kv_dim(c), v = (size_t)c->vocab_size, hs = d / (size_t)c->n_heads;
    m->tok_emb = p;                 p += v * d;
    m->rms_att = p;                 p += L * d;
    m->raw[P_WQ] = p;               p += L * d * d;
    m->raw[P_WK] = p;               p += L * kv * d;
    m->raw[P_WV] = p;               p += L * kv * d;
    m->raw[P_WO] = p;               p += L * d * d;
    m->rms_ffn = p;                 p += L * d;
    m->raw[P_W1] = p;               p += L * h * d;
    m->raw[P_W2] = p;               p += L * d * h;
    m->raw[P_W3] = p;               p += L * h * d;
    m->rms_final = p;               p += d;
    p += (size_t)c->seq_len * hs;   /* freq_cis_real and freq_cis_imag */
    m->wcls = c->shared_classifier ? m->tok_emb : p;
}

/* Every projection as a qlib NONE tensor (exact fp32). */
static int checkpoint_tensors(qlib_ctx *ctx, llama_model *m)
{
    qlib_config *cfg = NULL;
    int l, p, rc = 0;
    if (qlib_config_create(QLIB_METHOD_NONE, &cfg) != QLIB_OK
        || qlib_config_set_int(cfg, QLIB_PARAM_BITS, 32) != QLIB_OK) {
        report_qlib_error("fp32 tensor config");
        qlib_config_destroy(cfg);
        return -1;
    }
    for (l = 0; l < m->cfg.n_layers && rc == 0; l++) {
        for (p = 0; p < N_PROJ && rc == 0; p++) {
            size_t k = proj_cols(&m->cfg, p);
            if (qlib_quantize(ctx, raw_weight(m, l, p), proj_rows(&m->cfg, p), k, k, cfg, NULL,
                              model_proj(m, l, p)) != QLIB_OK) {
                char what[80];
                snprintf(what, sizeof(what), "layer %d %s (fp32)", l, proj_names[p]);
                report_qlib_error(what);
                rc = -1;
            }
        }
    }
    qlib_config_destroy(cfg);
    return rc;
}

int checkpoint_load(qlib_ctx *ctx, const char *path, llama_model *m)
{
    if (m->file.size < CKPT_HEADER_BYTES) {
        llama_err("%s: %zu bytes is too short for a llama2.c checkpoint header", path, m->file.size);
        return -1;
    }
    if (get_u32le(m->file.data) == LLAMA2C_EXPORT_MAGIC) {
        llama_err("%s: llama2.c export version %u is not supported; export with --version 0 "
                  "(legacy)", path, m->file.size >= 8 ? get_u32le(m->file.data + 4) : 0u);
        return -1;
    }
    if (!host_is_little_endian()) {
        llama_err("%s: llama2.c checkpoints are little-endian floats; this host is not", path);
        return -1;
    }
    read_header(m->file.data, &m->cfg);
    if (config_validate(&m->cfg, path) || checkpoint_check_size(path, m))
        return -1;
    checkpoint_pointers(m);
    m->proj = xcalloc((size_t)m->cfg.n_layers * N_PROJ, sizeof(qlib_tensor *), "tensor table");
    if (!m->proj)
        return -1;
    return checkpoint_tensors(ctx, m);
}

int model_load(qlib_ctx *ctx, const char *path, llama_model *m)
{
    int rc;
    memset(m, 0, sizeof(*m));
    if (map_file(path, &m->file) != 0)
        return -1;
    if (qmodel_is_quantized_file(&m->file))
        rc = qmodel_load(ctx, path, m);
    else
        rc = checkpoint_load(ctx, path, m);
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
    unmap_file(&m->file);
    memset(m, 0, sizeof(*m));
}
