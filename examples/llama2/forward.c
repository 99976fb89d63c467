/* The Llama-2 forward pass over a batch of consecutive positions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "llama.h"

#define ATT_CHUNK 64   /* queries per attention GEMM */

static float *alloc3(size_t a, size_t b, size_t c, const char *what)
{
    size_t ab;
    if (size_mul(a, b, &ab) != 0) {
        llama_err("%s: size overflows", what);
        return NULL;
    }
    return xcalloc(ab, c, what);
}

static void rope_tables(llama_state *s, const llama_config *c)
{
    int hs = c->dim / c->n_heads, pos, i;
    for (pos = 0; pos < c->seq_len; pos++) {
        for (i = 0; i < hs; i += 2) {
            float freq = 1.0f / powf(c->rope_theta, (float)i / (float)hs);
            float val = (float)pos * freq;
            s->rope_cos[(size_t)pos * (size_t)(hs / 2) + (size_t)(i / 2)] = cosf(val);
            s->rope_sin[(size_t)pos * (size_t)(hs / 2) + (size_t)(i / 2)] = sinf(val);
        }
    }
}

int run_init(llama_run *r, const llama_model *m, qlib_ctx *ctx, unsigned flags)
{
    const llama_config *c = &m->cfg;
    llama_state *s = &r->s;
    size_t T = (size_t)c->seq_len, d = (size_t)c->dim, h = (size_t)c->hidden_dim;
    size_t kv = config_kv_dim(c), L = (size_t)c->n_layers, hs = d / (size_t)c->n_heads;
    memset(r, 0, sizeof(*r));
    r->m = m;
    r->ctx = ctx;
    r->one_layer = (flags & RUN_ONE_LAYER) != 0;
    if (r->one_layer)
        L = 1;
    s->x = alloc3(T, d, sizeof(float), "activations");
    s->xb = alloc3(T, d, sizeof(float), "activations");
    s->q = alloc3(T, d, sizeof(float), "activations");
    s->att_out = alloc3(T, d, sizeof(float), "activations");
    s->hb = alloc3(T, h, sizeof(float), "activations");
    s->hb2 = alloc3(T, h, sizeof(float), "activations");
    s->att = alloc3(T < ATT_CHUNK ? T : ATT_CHUNK, T, sizeof(float), "attention scores");
    s->key_cache = alloc3(L * T, kv, sizeof(float), "key cache");
    s->value_cache = alloc3(L * T, kv, sizeof(float), "value cache");
    s->rope_cos = alloc3(T, hs / 2, sizeof(float), "rope table");
    s->rope_sin = alloc3(T, hs / 2, sizeof(float), "rope table");
    s->logits = alloc3(flags & RUN_NO_LOGITS ? 1 : T, (size_t)c->vocab_size, sizeof(float), "logits");
    if (!s->x || !s->xb || !s->q || !s->att_out || !s->hb || !s->hb2 || !s->att || !s->key_cache
        || !s->value_cache || !s->rope_cos || !s->rope_sin || !s->logits) {
        run_free(r);
        return -1;
    }
    rope_tables(s, c);
    return 0;
}

void run_free(llama_run *r)
{
    llama_state *s = &r->s;
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->att_out);
    free(s->hb);
    free(s->hb2);
    free(s->att);
    free(s->key_cache);
    free(s->value_cache);
    free(s->rope_cos);
    free(s->rope_sin);
    free(s->logits);
    memset(s, 0, sizeof(*s));
}

static void rmsnorm(float *o, const float *x, const float *w, int size, float eps)
{
    float ss = 0.0f;
    int i;
    for (i = 0; i < size; i++)
        ss += x[i] * x[i];
    ss = 1.0f / sqrtf(ss / (float)size + eps);
    for (i = 0; i < size; i++)
        o[i] = w[i] * (ss * x[i]);
}

static void rmsnorm_rows(float *o, const float *x, const float *w, int n, int size, float eps)
{
    int t;
    for (t = 0; t < n; t++)
        rmsnorm(o + (size_t)t * (size_t)size, x + (size_t)t * (size_t)size, w, size, eps);
}

/* e^(x - max) for x <= max, relative error below 3e-7: a degree-6
 * polynomial of r = y - n ln2 times 2^n. Eight lanes per call, each step its
 * own loop so that the compiler keeps them in vector registers: softmax over
 * the attention scores is the costliest part of a small model's forward. */
static void exp8_shifted(float *x, float max)
{
    const float round = 12582912.0f;  /* 1.5 * 2^23: adding it rounds to an integer */
    float y[8], n[8], r[8], p[8];
    int32_t e[8];
    int i;
    for (i = 0; i < 8; i++)
        y[i] = x[i] - max;
    for (i = 0; i < 8; i++)
        y[i] = y[i] < -87.0f ? -87.0f : y[i];
    for (i = 0; i < 8; i++)
        n[i] = (y[i] * 1.44269504f + round) - round;
    for (i = 0; i < 8; i++)
        r[i] = (y[i] - n[i] * 0.693145751953125f) - n[i] * 1.428606765330187e-6f;
    for (i = 0; i < 8; i++)
        e[i] = ((int32_t)n[i] + 127) * (1 << 23);
    for (i = 0; i < 8; i++)
        p[i] = 1.0f + r[i] * (1.0f + r[i] * (0.5f + r[i] * (1.0f / 6 + r[i] * (1.0f / 24
               + r[i] * (1.0f / 120 + r[i] * (1.0f / 720))))));
    for (i = 0; i < 8; i++) {
        float scale;
        memcpy(&scale, &e[i], sizeof(scale));
        x[i] = p[i] * scale;
    }
}

/* The loops run over blocks of 8 with fixed-length inner loops, which the
 * compiler vectorizes at -O2; the tail is padded to a block. */
static float max8(const float *x, int size)
{
    float m[8], max;
    int i, j;
    for (j = 0; j < 8; j++)
        m[j] = x[0];
    for (i = 0; i + 8 <= size; i += 8)
        for (j = 0; j < 8; j++)
            m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < size; i++)
        m[0] = x[i] > m[0] ? x[i] : m[0];
    max = m[0];
    for (j = 1; j < 8; j++)
        max = m[j] > max ? m[j] : max;
    return max;
}

static void softmax(float *x, int size)
{
    float max = max8(x, size), sum[8] = { 0 }, tail[8], total = 0.0f, inv;
    int i, j, body = size & ~7;
    for (i = 0; i < body; i += 8)
        exp8_shifted(x + i, max);
    if (body < size) {
        for (j = 0; j < 8; j++)
            tail[j] = body + j < size ? x[body + j] : -INFINITY;
        exp8_shifted(tail, max);
        memcpy(x + body, tail, (size_t)(size - body) * sizeof(float));
    }
    for (i = 0; i < body; i += 8)
        for (j = 0; j < 8; j++)
            sum[j] += x[i + j];
    for (j = 0; j < 8; j++)
        total += sum[j] + (body + j < size ? x[body + j] : 0.0f);
    inv = 1.0f / total;
    for (i = 0; i < body; i += 8)
        for (j = 0; j < 8; j++)
            x[i + j] *= inv;
    for (i = body; i < size; i++)
        x[i] *= inv;
}

/* y = x W^T through qlib, for layer l's projection p */
static int project(llama_run *r, int l, int p, const float *x, int n, float *y, size_t ldy)
{
    const qlib_tensor *w = *model_proj(r->m, l, p);
    size_t k = proj_cols(&r->m->cfg, p);
    if (qlib_matmul(r->ctx, w, x, (size_t)n, k, y, ldy) != QLIB_OK) {
        char what[64];
        snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
        report_qlib_error(what);
        return -1;
    }
    return 0;
}

/* Rotates pairs (i, i+1) of every head by the angle of position pos. */
static void rope(float *v, int size, int hs, const float *cs, const float *sn)
{
    int i;
    for (i = 0; i < size; i += 2) {
        int f = (i % hs) / 2;
        float v0 = v[i], v1 = v[i + 1];
        v[i] = v0 * cs[f] - v1 * sn[f];
        v[i + 1] = v0 * sn[f] + v1 * cs[f];
    }
}

/* Causal attention of head h for queries [t0, t1) of the batch at pos0: two
 * GEMMs over the cached keys and values, later positions masked. */
static void attend_chunk(llama_run *r, int l, int h, int pos0, int t0, int t1)
{
    const llama_config *c = &r->m->cfg;
    llama_state *s = &r->s;
    int hs = c->dim / c->n_heads, kv = (int)config_kv_dim(c), len = pos0 + t1, n = t1 - t0, t;
    size_t koff = (size_t)(h / (c->n_heads / c->n_kv_heads)) * (size_t)hs;
    size_t base = (size_t)(r->one_layer ? 0 : l) * (size_t)c->seq_len * (size_t)kv + koff;
    size_t qrow = (size_t)t0 * (size_t)c->dim + (size_t)h * (size_t)hs;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, len, hs, 1.0f / sqrtf((float)hs),
                s->q + qrow, c->dim, s->key_cache + base, kv, 0.0f, s->att, len);
    for (t = 0; t < n; t++) {
        float *row = s->att + (size_t)t * (size_t)len;
        int visible = pos0 + t0 + t + 1;
        softmax(row, visible);
        memset(row + visible, 0, (size_t)(len - visible) * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hs, len, 1.0f, s->att, len,
                s->value_cache + base, kv, 0.0f, s->att_out + qrow, c->dim);
}

/* Query chunks bound the keys each GEMM reads, skipping most masked scores. */
static void attend_head(llama_run *r, int l, int n, int pos0, int h)
{
    int t0;
    for (t0 = 0; t0 < n; t0 += ATT_CHUNK)
        attend_chunk(r, l, h, pos0, t0, t0 + ATT_CHUNK < n ? t0 + ATT_CHUNK : n);
}

/* q, k, v of positions pos0.. from xb; k and v go straight into the cache. */
static int qkv(llama_run *r, int l, int n, int pos0)
{
    const llama_config *c = &r->m->cfg;
    llama_state *s = &r->s;
    size_t kv = config_kv_dim(c);
    size_t row = ((size_t)(r->one_layer ? 0 : l) * (size_t)c->seq_len + (size_t)pos0) * kv;
    int hs = c->dim / c->n_heads, t;
    if (project(r, l, P_WQ, s->xb, n, s->q, (size_t)c->dim)
        || project(r, l, P_WK, s->xb, n, s->key_cache + row, kv)
        || project(r, l, P_WV, s->xb, n, s->value_cache + row, kv))
        return -1;
    for (t = 0; t < n; t++) {
        size_t tab = (size_t)(pos0 + t) * (size_t)(hs / 2);
        rope(s->q + (size_t)t * (size_t)c->dim, c->dim, hs, s->rope_cos + tab, s->rope_sin + tab);
        rope(s->key_cache + row + (size_t)t * kv, (int)kv, hs, s->rope_cos + tab, s->rope_sin + tab);
    }
    return 0;
}

static void add_rows(float *x, const float *y, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        x[i] += y[i];
}

static int run_hook(llama_hook hook, void *user, llama_stage st, const float *x, int n, int k)
{
    return hook && hook(user, st, x, n, k) != 0 ? -1 : 0;
}

/* Attention block; returns 1 when stopped at STAGE_QKV or STAGE_O. */
static int attention(llama_run *r, int l, int n, int pos0, llama_stage stop, llama_hook hook,
                     void *user)
{
    const llama_config *c = &r->m->cfg;
    llama_state *s = &r->s;
    int h;
    rmsnorm_rows(s->xb, s->x, r->m->rms_att + (size_t)l * (size_t)c->dim, n, c->dim, c->norm_eps);
    if (run_hook(hook, user, STAGE_QKV, s->xb, n, c->dim))
        return -1;
    if (stop == STAGE_QKV)
        return 1;
    if (qkv(r, l, n, pos0))
        return -1;
    for (h = 0; h < c->n_heads; h++)
        attend_head(r, l, n, pos0, h);
    if (run_hook(hook, user, STAGE_O, s->att_out, n, c->dim))
        return -1;
    if (stop == STAGE_O)
        return 1;
    if (project(r, l, P_WO, s->att_out, n, s->xb, (size_t)c->dim))
        return -1;
    add_rows(s->x, s->xb, (size_t)n * (size_t)c->dim);
    return 0;
}

static void swiglu(float *hb, const float *hb2, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        hb[i] = hb[i] * (1.0f / (1.0f + expf(-hb[i]))) * hb2[i];
}

static int feed_forward(llama_run *r, int l, int n, llama_stage stop, llama_hook hook, void *user)
{
    const llama_config *c = &r->m->cfg;
    llama_state *s = &r->s;
    size_t h = (size_t)c->hidden_dim;
    rmsnorm_rows(s->xb, s->x, r->m->rms_ffn + (size_t)l * (size_t)c->dim, n, c->dim, c->norm_eps);
    if (run_hook(hook, user, STAGE_UP, s->xb, n, c->dim))
        return -1;
    if (stop == STAGE_UP)
        return 0;
    if (project(r, l, P_W1, s->xb, n, s->hb, h) || project(r, l, P_W3, s->xb, n, s->hb2, h))
        return -1;
    swiglu(s->hb, s->hb2, (size_t)n * h);
    if (run_hook(hook, user, STAGE_DOWN, s->hb, n, c->hidden_dim))
        return -1;
    if (stop == STAGE_DOWN)
        return 0;
    if (project(r, l, P_W2, s->hb, n, s->xb, (size_t)c->dim))
        return -1;
    add_rows(s->x, s->xb, (size_t)n * (size_t)c->dim);
    return 0;
}

int llama_layer(llama_run *r, int l, int n, int pos0, llama_stage stop, llama_hook hook,
                void *user)
{
    int rc = attention(r, l, n, pos0, stop, hook, user);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    return feed_forward(r, l, n, stop, hook, user);
}

int llama_embed(llama_run *r, const int *tokens, int n)
{
    size_t d = (size_t)r->m->cfg.dim;
    int t;
    for (t = 0; t < n; t++) {
        float *x = r->s.x + (size_t)t * d;
        if (r->m->tok_emb) {
            memcpy(x, r->m->tok_emb + (size_t)tokens[t] * d, d * sizeof(float));
        } else if (qlib_dequantize_rows(r->ctx, r->m->emb_q, (size_t)tokens[t], 1, x, d) != QLIB_OK) {
            report_qlib_error("token embedding");
            return -1;
        }
    }
    return 0;
}

int llama_classify(llama_run *r, int n, int last_only)
{
    const llama_config *c = &r->m->cfg;
    llama_state *s = &r->s;
    size_t d = (size_t)c->dim;
    if (!r->m->wcls) {
        const float *x = last_only ? s->x + (size_t)(n - 1) * d : s->x;
        int rows = last_only ? 1 : n;
        rmsnorm_rows(s->xb, x, r->m->rms_final, rows, c->dim, c->norm_eps);
        if (qlib_matmul(r->ctx, r->m->cls_q, s->xb, (size_t)rows, d, s->logits,
                        (size_t)c->vocab_size) != QLIB_OK) {
            report_qlib_error("classifier");
            return -1;
        }
        return 0;
    }
    if (last_only) {
        rmsnorm(s->xb, s->x + (size_t)(n - 1) * d, r->m->rms_final, c->dim, c->norm_eps);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, c->vocab_size, c->dim, 1.0f, r->m->wcls,
                    c->dim, s->xb, 1, 0.0f, s->logits, 1);
        return 0;
    }
    rmsnorm_rows(s->xb, s->x, r->m->rms_final, n, c->dim, c->norm_eps);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, c->vocab_size, c->dim, 1.0f, s->xb,
                c->dim, r->m->wcls, c->dim, 0.0f, s->logits, c->vocab_size);
    return 0;
}

int llama_forward(llama_run *r, const int *tokens, int n, int pos0, int last_only)
{
    const llama_config *c = &r->m->cfg;
    int l, t;
    if (n < 1 || pos0 < 0 || n > c->seq_len - pos0) {
        llama_err("forward: positions %d..%d are outside the context of %d", pos0, pos0 + n - 1,
                  c->seq_len);
        return -1;
    }
    for (t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size) {
            llama_err("forward: token id %d is not below vocab_size %d", tokens[t], c->vocab_size);
            return -1;
        }
    }
    if (llama_embed(r, tokens, n) != 0)
        return -1;
    for (l = 0; l < c->n_layers; l++)
        if (llama_layer(r, l, n, pos0, STAGE_END, NULL, NULL) != 0)
            return -1;
    return llama_classify(r, n, last_only);
}
