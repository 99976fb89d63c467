/*
 * The convert command: any float model (llama2.c checkpoint, GGUF, Hugging
 * Face directory) to an unquantized GGUF file (llama architecture, the
 * vocabulary as a llama/SentencePiece tokenizer) or a Hugging Face directory
 * (config.json, model.safetensors). Tensors are converted a few rows at a
 * time from the mapped input into the output being written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "llama.h"

#define CHUNK_ROWS 64
#define DT_KEEP (-1)   /* --type keep: each tensor in its stored type, its bytes copied */

/* --------------------------------------------------------------- vocabulary */
/* A piece as SentencePiece stores it: spaces as U+2581. */
static char *spm_piece(const char *s)
{
    size_t n = 0, i;
    char *out;
    for (i = 0; s[i]; i++)
        n += s[i] == ' ' ? 3 : 1;
    out = xcalloc(n + 1, 1, "token");
    if (!out)
        return NULL;
    for (i = 0, n = 0; s[i]; i++) {
        if (s[i] == ' ') {
            memcpy(out + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            out[n++] = s[i];
        }
    }
    return out;
}

/* llama2.c's tokenizer.bin spells BOS and EOS "\n<s>\n" and "\n</s>\n". */
static const char *control_piece(const llama_tokenizer *t, int i)
{
    if (i == t->bos && !strcmp(t->vocab[i], "\n<s>\n"))
        return "<s>";
    if (i == t->eos && !strcmp(t->vocab[i], "\n</s>\n"))
        return "</s>";
    return t->vocab[i];
}

int write_vocab_gguf(gguf_writer *w, const llama_tokenizer *t)
{
    size_t n = (size_t)t->vocab_size, i;
    char **pieces = xcalloc(n, sizeof(char *), "vocabulary");
    int32_t *types = xcalloc(n, sizeof(int32_t), "vocabulary");
    int rc = -1;
    if (!pieces || !types)
        goto done;
    for (i = 0; i < n; i++) {
        types[i] = t->type[i];
        pieces[i] = spm_piece(t->type[i] == TT_NORMAL || t->type[i] == TT_USER ? t->vocab[i]
                                                                                : control_piece(t, (int)i));
        if (!pieces[i])
            goto done;
    }
    rc = gguf_add_str(w, "tokenizer.ggml.model", "llama")
         || gguf_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)pieces, n)
         || gguf_add_arr_f32(w, "tokenizer.ggml.scores", t->scores, n)
         || gguf_add_arr_i32(w, "tokenizer.ggml.token_type", types, n)
         || gguf_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos)
         || gguf_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos)
         || gguf_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk)
         || gguf_add_bool(w, "tokenizer.ggml.add_bos_token", 1)
         || gguf_add_bool(w, "tokenizer.ggml.add_eos_token", 0) ? -1 : 0;
done:
    for (i = 0; pieces && i < n; i++)
        free(pieces[i]);
    free(pieces);
    free(types);
    return rc;
}

/* ---------------------------------------------------------------- GGUF */
static int key_starts(const gguf_kv *kv, const char *prefix)
{
    size_t n = strlen(prefix);
    return kv->key_len >= n && memcmp(kv->key, prefix, n) == 0;
}

static int key_equals(const gguf_kv *kv, const char *key)
{
    return kv->key_len == strlen(key) && memcmp(kv->key, key, kv->key_len) == 0;
}

/* A GGUF input's keys, copied as they are, except those the output restates. */
int gguf_copy_keys(gguf_writer *w, const gguf_file *g, int own_vocab)
{
    size_t i;
    for (i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (key_equals(kv, "general.alignment") || key_equals(kv, "general.file_type")
            || (own_vocab && key_starts(kv, "tokenizer.")))
            continue;
        if (gguf_add_raw(w, kv))
            return -1;
    }
    return 0;
}

const char *base_name(const char *path)
{
    const char *s;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    for (s = path + n; s > path && s[-1] != '/'; s--)
        ;
    return s;
}

int gguf_llama_keys(gguf_writer *w, const llama_config *c, const char *name)
{
    struct { const char *key; uint32_t v; } u[] = {
        { "llama.context_length", (uint32_t)c->seq_len },
        { "llama.embedding_length", (uint32_t)c->dim },
        { "llama.block_count", (uint32_t)c->n_layers },
        { "llama.feed_forward_length", (uint32_t)c->hidden_dim },
        { "llama.rope.dimension_count", (uint32_t)(c->dim / c->n_heads) },
        { "llama.attention.head_count", (uint32_t)c->n_heads },
        { "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads },
        { "llama.vocab_size", (uint32_t)c->vocab_size },
    };
    size_t i;
    if (!gguf_has_key(w, "general.architecture") && gguf_add_str(w, "general.architecture", "llama"))
        return -1;
    if (!gguf_has_key(w, "general.name") && gguf_add_str(w, "general.name", name))
        return -1;
    for (i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        if (!gguf_has_key(w, u[i].key) && gguf_add_u32(w, u[i].key, u[i].v))
            return -1;
    if (!gguf_has_key(w, "llama.attention.layer_norm_rms_epsilon")
        && gguf_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps))
        return -1;
    if (!gguf_has_key(w, "llama.rope.freq_base") && gguf_add_f32(w, "llama.rope.freq_base", c->rope_theta))
        return -1;
    return 0;
}

/* The tensors in GGUF order, each declared with its source. */
typedef struct out_tensor {
    char name[96];
    const src_tensor *src;
    int dtype;
    int hf_permute;         /* HF output: heads to permute wq/wk rows into */
} out_tensor;

static size_t plan_tensors(const model_source *s, int dtype, int hf, out_tensor *t)
{
    const llama_config *c = &s->cfg;
    size_t n = 0;
    int l, p;
#define ADD(src_, dt_, ...) do { snprintf(t[n].name, sizeof(t[n].name), __VA_ARGS__); \
        t[n].src = (src_); t[n].dtype = (dt_) != DT_KEEP ? (dt_) : (src_)->q ? DT_F32 : (src_)->dtype; \
        t[n].hf_permute = 0; n++; } while (0)
    ADD(&s->emb, dtype, hf ? "model.embed_tokens.weight" : "token_embd.weight");
    ADD(&s->norm_final, hf ? dtype : DT_F32, hf ? "model.norm.weight" : "output_norm.weight");
    if (!c->shared_classifier)
        ADD(&s->cls, dtype, hf ? "lm_head.weight" : "output.weight");
    for (l = 0; l < c->n_layers; l++) {
        if (hf)
            ADD(&s->norm_att[l], dtype, "model.layers.%d.input_layernorm.weight", l);
        else
            ADD(&s->norm_att[l], DT_F32, "blk.%d.attn_norm.weight", l);
        for (p = 0; p < N_PROJ; p++) {
            if (hf)
                ADD(source_proj(s, l, p), dtype, "model.layers.%d.%s.weight", l, HF_PROJ[p]);
            else
                ADD(source_proj(s, l, p), dtype, "blk.%d.%s.weight", l, GGUF_PROJ[p]);
            if (hf && p == P_WQ)
                t[n - 1].hf_permute = c->n_heads;
            if (hf && p == P_WK)
                t[n - 1].hf_permute = c->n_kv_heads;
            if (p == P_WO) {
                if (hf)
                    ADD(&s->norm_ffn[l], dtype, "model.layers.%d.post_attention_layernorm.weight", l);
                else
                    ADD(&s->norm_ffn[l], DT_F32, "blk.%d.ffn_norm.weight", l);
            }
        }
    }
#undef ADD
    return n;
}

/* Rows [r0, r0 + n) of the output tensor in fp32: HF's rotary order for
 * wq and wk (row h*hs + half*hs/2 + i holds model row h*hs + 2i + half). */
static void out_rows(const out_tensor *t, size_t r0, size_t n, float *buf)
{
    size_t i, hs, h, within;
    if (!t->hf_permute) {
        src_read_rows(t->src, r0, n, buf);
        return;
    }
    hs = t->src->rows / (size_t)t->hf_permute;
    for (i = 0; i < n; i++) {
        size_t r = r0 + i;
        h = r / hs;
        within = r % hs;
        src_read_rows(t->src, h * hs + 2 * (within % (hs / 2)) + within / (hs / 2), 1,
                      buf + i * t->src->cols);
    }
}

typedef int (*bytes_fn)(void *w, const void *p, size_t n);

static int stream_tensor(const out_tensor *t, bytes_fn put, void *w, float *buf, unsigned char *bytes)
{
    size_t r, n, rb = 0;
    dtype_row_bytes(t->dtype, t->src->cols, &rb);
    if (t->dtype == t->src->dtype && !t->hf_permute) {
        /* the stored bytes as they are (blocks included), rows in model order */
        for (r = 0; r < t->src->rows; r++)
            if (put(w, src_row_bytes(t->src, r), rb))
                return -1;
        return 0;
    }
    for (r = 0; r < t->src->rows; r += n) {
        size_t i;
        n = t->src->rows - r < CHUNK_ROWS ? t->src->rows - r : CHUNK_ROWS;
        out_rows(t, r, n, buf);
        for (i = 0; i < n; i++)
            row_from_f32(t->dtype, buf + i * t->src->cols, t->src->cols, bytes + i * rb);
        if (put(w, bytes, n * rb))
            return -1;
    }
    return 0;
}

static int gguf_put(void *w, const void *p, size_t n)
{
    return gguf_write_bytes(w, p, n);
}

static int st_put(void *w, const void *p, size_t n)
{
    return st_write_bytes(w, p, n);
}

static int alloc_buffers(const model_source *s, float **buf, unsigned char **bytes)
{
    size_t widest = (size_t)(s->cfg.hidden_dim > s->cfg.dim ? s->cfg.hidden_dim : s->cfg.dim);
    *buf = xcalloc(CHUNK_ROWS * widest, sizeof(float), "conversion buffer");
    *bytes = xcalloc(CHUNK_ROWS * widest, sizeof(float), "conversion buffer");
    return *buf && *bytes ? 0 : -1;
}

/* general.file_type: 0 all F32, 1 mostly F16; with --type keep the most
 * common projection type's (2 Q4_0, 7 Q8_0), none for other mixes. */
static int file_type(const model_source *s, int dtype)
{
    int t = dtype == DT_KEEP ? source_proj(s, 0, P_WQ)->dtype : dtype;
    switch (t) {
    case DT_F32: return 0;
    case DT_F16: return 1;
    case DT_Q4_0: return 2;
    case DT_Q8_0: return 7;
    default: return -1;
    }
}

static int write_gguf(const model_source *s, const llama_tokenizer *tok, int own_vocab, int dtype,
                      output_file *out, size_t *file_bytes)
{
    gguf_writer *w = gguf_writer_create(out->f, out->tmp);
    size_t cap = 3 + (size_t)s->cfg.n_layers * (N_PROJ + 2), n, i;
    out_tensor *t = xcalloc(cap, sizeof(out_tensor), "tensor plan");
    float *buf = NULL;
    unsigned char *bytes = NULL;
    int rc = -1;
    if (!w || !t || alloc_buffers(s, &buf, &bytes))
        goto done;
    if (s->kind == SRC_GGUF && gguf_copy_keys(w, &s->gguf, own_vocab))
        goto done;
    if (gguf_llama_keys(w, &s->cfg, base_name(s->path))
        || (file_type(s, dtype) >= 0 && gguf_add_u32(w, "general.file_type", (uint32_t)file_type(s, dtype)))
        || (!gguf_has_key(w, "tokenizer.ggml.model") && write_vocab_gguf(w, tok)))
        goto done;
    n = plan_tensors(s, dtype, 0, t);
    for (i = 0; i < n; i++)
        if (gguf_add_tensor(w, t[i].name, t[i].dtype, t[i].src->rows, t[i].src->cols) < 0)
            goto done;
    if (gguf_write_begin(w))
        goto done;
    for (i = 0; i < n; i++)
        if (gguf_write_open(w, (int)i) || stream_tensor(&t[i], gguf_put, w, buf, bytes)
            || gguf_write_close(w))
            goto done;
    rc = gguf_write_end(w, file_bytes);
done:
    gguf_writer_free(w);
    free(t);
    free(buf);
    free(bytes);
    return rc;
}

/* ------------------------------------------------------------ HF directory */
json_t *hf_config_object(const model_source *s, const llama_tokenizer *tok, int dtype)
{
    const llama_config *c = &s->cfg;
    json_t *j = json_pack("{s:[s],s:s,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:f,s:f,s:b,s:s,s:s,s:i,s:i,"
                          "s:b,s:b,s:n}",
                          "architectures", "LlamaForCausalLM", "model_type", "llama",
                          "hidden_size", c->dim, "intermediate_size", c->hidden_dim,
                          "num_hidden_layers", c->n_layers, "num_attention_heads", c->n_heads,
                          "num_key_value_heads", c->n_kv_heads, "vocab_size", c->vocab_size,
                          "max_position_embeddings", c->seq_len, "rms_norm_eps", (double)c->norm_eps,
                          "rope_theta", (double)c->rope_theta,
                          "tie_word_embeddings", c->shared_classifier, "hidden_act", "silu",
                          "torch_dtype", dtype == DT_F16 ? "float16" : "float32",
                          "bos_token_id", tok->vocab ? tok->bos : 1,
                          "eos_token_id", tok->vocab ? tok->eos : 2,
                          "attention_bias", 0, "mlp_bias", 0, "rope_scaling");
    if (!j)
        llama_err("cannot build config.json");
    return j;
}

int write_json(json_t *j, const char *path)
{
    int rc = json_dump_file(j, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (rc != 0)
        llama_err("%s: cannot write", path);
    return rc;
}

static int hf_config_json(const model_source *s, const llama_tokenizer *tok, int dtype,
                          const char *path)
{
    json_t *j = hf_config_object(s, tok, dtype);
    int rc = j ? write_json(j, path) : -1;
    json_decref(j);
    return rc;
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out;
    char buf[65536];
    size_t n;
    int rc = 0;
    if (!in)
        return 1;   /* absent: nothing to copy */
    out = fopen(to, "wb");
    if (!out) {
        fclose(in);
        llama_err("%s: %s", to, strerror(errno));
        return -1;
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        if (fwrite(buf, 1, n, out) != n)
            rc = -1;
    if (ferror(in) || fclose(out) != 0)
        rc = -1;
    fclose(in);
    if (rc)
        llama_err("%s: copy failed", to);
    return rc;
}

/* The tokenizer files of an HF input, as they are. */
int copy_tokenizer_files(const model_source *s, const output_file *out, int *copied)
{
    static const char *const names[] = { "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                         "special_tokens_map.json", "generation_config.json" };
    char from[4400], to[4400];
    size_t i;
    int rc;
    *copied = 0;
    if (s->kind != SRC_HF)
        return 0;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(from, sizeof(from), "%s/%s", s->path, names[i]);
        if (out_dir_file(out, names[i], to, sizeof(to)) || (rc = copy_file(from, to)) < 0)
            return -1;
        *copied += rc == 0;
    }
    return 0;
}

static int write_hf(const model_source *s, const llama_tokenizer *tok, int dtype, output_file *out,
                    size_t *file_bytes, int *copied)
{
    char path[4400];
    size_t cap = 3 + (size_t)s->cfg.n_layers * (N_PROJ + 2), n, i;
    out_tensor *t = xcalloc(cap, sizeof(out_tensor), "tensor plan");
    float *buf = NULL;
    unsigned char *bytes = NULL;
    FILE *f = NULL;
    st_writer *w = NULL;
    int rc = -1;
    if (!t || alloc_buffers(s, &buf, &bytes) || out_dir_file(out, "config.json", path, sizeof(path))
        || hf_config_json(s, tok, dtype, path) || copy_tokenizer_files(s, out, copied)
        || out_dir_file(out, "model.safetensors", path, sizeof(path)))
        goto done;
    if (!(f = fopen(path, "wb"))) {
        llama_err("%s: %s", path, strerror(errno));
        goto done;
    }
    if (!(w = st_writer_create(f, path)) || st_add_metadata(w, "format", "pt"))
        goto done;
    n = plan_tensors(s, dtype, 1, t);
    for (i = 0; i < n; i++) {
        uint64_t shape[2] = { t[i].src->rows, t[i].src->cols };
        int vec = t[i].src->rows == 1;
        if (st_add_tensor(w, t[i].name, t[i].dtype, vec ? 1 : 2, vec ? shape + 1 : shape) < 0)
            goto done;
    }
    if (st_write_begin(w))
        goto done;
    for (i = 0; i < n; i++)
        if (st_write_open(w, (int)i) || stream_tensor(&t[i], st_put, w, buf, bytes) || st_write_close(w))
            goto done;
    rc = st_write_end(w, file_bytes);
done:
    st_writer_free(w);
    if (f && (fflush(f) != 0 || fsync(fileno(f)) != 0))
        rc = -1;
    if (f && fclose(f) != 0)
        rc = -1;
    free(t);
    free(buf);
    free(bytes);
    return rc;
}

/* ------------------------------------------------------------- command */
int ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

static int convert_args(const llama_opts *o, int *dtype, int *hf)
{
    if (!o->out) {
        llama_err("convert needs -o OUT");
        return -1;
    }
    if (o->type && strcmp(o->type, "f32") != 0 && strcmp(o->type, "f16") != 0
        && strcmp(o->type, "keep") != 0) {
        llama_err("--type %s: f32, f16 or keep", o->type);
        return -1;
    }
    if (o->format && strcmp(o->format, "gguf") != 0 && strcmp(o->format, "hf") != 0) {
        llama_err("--format %s: gguf or hf", o->format);
        return -1;
    }
    *dtype = !o->type || !strcmp(o->type, "f32") ? DT_F32 : !strcmp(o->type, "f16") ? DT_F16 : DT_KEEP;
    *hf = o->format ? !strcmp(o->format, "hf") : !ends_with(o->out, ".gguf");
    if (*hf && *dtype == DT_KEEP) {
        llama_err("--type keep writes GGUF only (safetensors cannot hold GGML blocks)");
        return -1;
    }
    return 0;
}

int cmd_convert(const llama_opts *o)
{
    model_source src;
    llama_tokenizer tok;
    output_file out;
    size_t bytes = 0;
    int dtype, hf, rc, copied = 0;
    double t0 = now_seconds();
    mapped_file f;
    if (convert_args(o, &dtype, &hf) != 0)
        return RC_USAGE;
    if ((hf ? out_open_dir(&out, o->out) : out_open(&out, o->out)) != 0)
        return RC_FAIL;
    memset(&tok, 0, sizeof(tok));
    if (!hf_is_dir(o->model) && map_file(o->model, &f) == 0) {
        rc = qmodel_is_quantized_file(&f);
        unmap_file(&f);
        if (rc) {
            llama_err("%s: convert reads a float model, not a quantized file", o->model);
            out_abort(&out);
            return RC_FAIL;
        }
    }
    if (source_open(o->model, &src) != 0) {
        out_abort(&out);
        return RC_FAIL;
    }
    rc = session_tokenizer(o, &src, src.cfg.vocab_size, !hf, &tok);
    if (rc == 0)
        rc = hf ? write_hf(&src, &tok, dtype, &out, &bytes, &copied)
                : write_gguf(&src, &tok, o->tokenizer != NULL, dtype, &out, &bytes);
    if (rc == 0)
        rc = out_commit(&out);
    else
        out_abort(&out);
    if (rc == 0) {
        printf("wrote %s: %s, %s, %d layers, %.1f KiB of tensors%s, %.2f s\n", o->out,
               hf ? "Hugging Face directory" : "GGUF",
               dtype == DT_F16 ? "F16" : dtype == DT_F32 ? "F32" : "stored types kept",
               src.cfg.n_layers, (double)bytes / 1024.0,
               hf ? (copied ? ", tokenizer files copied" : ", no tokenizer files") : "",
               now_seconds() - t0);
    }
    tokenizer_free(&tok);
    source_close(&src);
    return rc == 0 ? RC_OK : rc == -2 ? RC_USAGE : RC_FAIL;
}
