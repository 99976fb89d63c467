/*
 * Hugging Face Llama-family directories: config.json (LlamaForCausalLM) and
 * the weights in model.safetensors, or in shards listed by
 * model.safetensors.index.json ({"weight_map": {tensor: file}}). Tensor
 * names are transformers' (model.embed_tokens.weight,
 * model.layers.N.self_attn.q_proj.weight, ..., lm_head.weight).
 *
 * GPTQ (v1) and AWQ (gemm) checkpoints: config.json's quantization_config
 * (or, for older AutoGPTQ directories, quantize_config.json) names the
 * layout, bits and group size; a projection stored as NAME.qweight,
 * NAME.qzeros, NAME.scales (and NAME.g_idx for GPTQ) is imported into a qlib
 * tensor with qlib_tensor_import, one stored as NAME.weight (a module left
 * unquantized) is read as a float tensor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "llama.h"

const char *const HF_PROJ[N_PROJ] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj",
                                      "mlp.up_proj" };

int hf_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

json_t *hf_load_json(const char *dir, const char *name, int optional)
{
    char path[4200];
    json_error_t err;
    json_t *j;
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (stat(path, &st) != 0) {
        if (!optional)
            llama_err("%s: no %s (not a Hugging Face model directory)", dir, name);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (64 << 20)) {
        llama_err("%s: not a regular file of at most 64 MiB", path);
        return NULL;
    }
    j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!j)
        llama_err("%s: %s (line %d)", path, err.text, err.line);
    else if (!json_is_object(j)) {
        llama_err("%s: not a JSON object", path);
        json_decref(j);
        j = NULL;
    }
    return j;
}

static int cfg_int(const char *path, json_t *cfg, const char *key, int optional, int *v)
{
    json_t *x = json_object_get(cfg, key);
    if (!x || json_is_null(x)) {
        if (!optional)
            llama_err("%s: config.json has no %s", path, key);
        return optional ? 0 : -1;
    }
    if (!json_is_integer(x) || json_integer_value(x) < 1 || json_integer_value(x) > INT_MAX) {
        llama_err("%s: config.json %s is not a positive integer", path, key);
        return -1;
    }
    *v = (int)json_integer_value(x);
    return 0;
}

static int cfg_float(const char *path, json_t *cfg, const char *key, float *v)
{
    json_t *x = json_object_get(cfg, key);
    if (!x || json_is_null(x))
        return 0;
    if (!json_is_number(x)) {
        llama_err("%s: config.json %s is not a number", path, key);
        return -1;
    }
    *v = (float)json_number_value(x);
    return 0;
}

static int cfg_false(const char *path, json_t *cfg, const char *key)
{
    json_t *x = json_object_get(cfg, key);
    if (x && !json_is_false(x) && !json_is_null(x)) {
        llama_err("%s: config.json %s is set; this program runs Llama layers without it", path, key);
        return -1;
    }
    return 0;
}

static int hf_config(const char *dir, json_t *cfg, llama_config *c)
{
    json_t *type = json_object_get(cfg, "model_type"), *act = json_object_get(cfg, "hidden_act");
    json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    int head_dim = 0;
    if (!json_is_string(type) || (strcmp(json_string_value(type), "llama") != 0
                                  && strcmp(json_string_value(type), "mistral") != 0)) {
        llama_err("%s: config.json model_type is %s; this program runs llama", dir,
                  json_is_string(type) ? json_string_value(type) : "missing");
        return -1;
    }
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0)) {
        llama_err("%s: config.json hidden_act is not silu", dir);
        return -1;
    }
    if (cfg_int(dir, cfg, "hidden_size", 0, &c->dim) || cfg_int(dir, cfg, "intermediate_size", 0, &c->hidden_dim)
        || cfg_int(dir, cfg, "num_hidden_layers", 0, &c->n_layers)
        || cfg_int(dir, cfg, "num_attention_heads", 0, &c->n_heads)
        || cfg_int(dir, cfg, "vocab_size", 0, &c->vocab_size)
        || cfg_int(dir, cfg, "max_position_embeddings", 0, &c->seq_len))
        return -1;
    c->n_kv_heads = c->n_heads;
    if (cfg_int(dir, cfg, "num_key_value_heads", 1, &c->n_kv_heads)
        || cfg_int(dir, cfg, "head_dim", 1, &head_dim)
        || cfg_float(dir, cfg, "rms_norm_eps", &c->norm_eps)
        || cfg_float(dir, cfg, "rope_theta", &c->rope_theta)
        || cfg_false(dir, cfg, "attention_bias") || cfg_false(dir, cfg, "mlp_bias")
        || cfg_false(dir, cfg, "rope_scaling"))
        return -1;
    if (tie && !json_is_boolean(tie)) {
        llama_err("%s: config.json tie_word_embeddings is not a boolean", dir);
        return -1;
    }
    c->shared_classifier = tie && json_is_true(tie);
    if (config_validate(c, dir))
        return -1;
    if (head_dim && head_dim != c->dim / c->n_heads) {
        llama_err("%s: head_dim %d is not hidden_size / num_attention_heads", dir, head_dim);
        return -1;
    }
    return 0;
}

/* A shard file name from the index: a plain name inside the directory. */
static int safe_name(const char *s)
{
    return s[0] != '\0' && s[0] != '.' && !strchr(s, '/') && strlen(s) < 256;
}

static int open_shard(model_source *s, const char *dir, const char *file)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    return st_open(path, &s->shards[s->n_shards]) == 0 ? (int)s->n_shards++ : -1;
}

/* Every shard named by the index, each opened once. */
static int open_shards(model_source *s, const char *dir, json_t *map)
{
    const char *key, **names;
    json_t *v;
    size_t n = 0, i;
    int rc = 0;
    names = xcalloc(json_object_size(map) + 1, sizeof(char *), "shards");
    s->shards = xcalloc(json_object_size(map) + 1, sizeof(st_file), "shards");
    if (!names || !s->shards) {
        free(names);
        return -1;
    }
    json_object_foreach(map, key, v) {
        if (!json_is_string(v) || !safe_name(json_string_value(v))) {
            llama_err("%s: model.safetensors.index.json maps %s to a bad file name", dir, key);
            rc = -1;
            break;
        }
        for (i = 0; i < n && strcmp(names[i], json_string_value(v)) != 0; i++)
            ;
        if (i < n)
            continue;
        names[n++] = json_string_value(v);
        if (open_shard(s, dir, json_string_value(v)) < 0) {
            rc = -1;
            break;
        }
    }
    free(names);
    return rc;
}

static int open_weights(model_source *s, const char *dir)
{
    json_t *index = hf_load_json(dir, "model.safetensors.index.json", 1), *map;
    int rc;
    if (!index) {
        char path[4200];
        struct stat st;
        snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
        if (stat(path, &st) == 0)
            return -1;   /* present but unreadable: already reported */
        s->shards = xcalloc(1, sizeof(st_file), "shards");
        if (!s->shards)
            return -1;
        return open_shard(s, dir, "model.safetensors") < 0 ? -1 : 0;
    }
    map = json_object_get(index, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        llama_err("%s: model.safetensors.index.json has no weight_map", dir);
        json_decref(index);
        return -1;
    }
    rc = open_shards(s, dir, map);
    json_decref(index);
    return rc;
}

static const st_tensor *find_any(const model_source *s, const char *name)
{
    size_t i;
    const st_tensor *t;
    for (i = 0; i < s->n_shards; i++)
        if ((t = st_find(&s->shards[i], name)) != NULL)
            return t;
    return NULL;
}

/* ------------------------------------------------ quantized checkpoints */
static int json_int_of(json_t *o, const char *key, const char *alt, int *v, int *found)
{
    json_t *x = json_object_get(o, key);
    if ((!x || json_is_null(x)) && alt)
        x = json_object_get(o, alt);
    *found = x && !json_is_null(x);
    if (!*found)
        return 0;
    if (!json_is_integer(x) || json_integer_value(x) < -1 || json_integer_value(x) > (1 << 20))
        return -1;
    *v = (int)json_integer_value(x);
    return 0;
}

static int str_is(json_t *x, const char *v)
{
    return json_is_string(x) && strcasecmp(json_string_value(x), v) == 0;
}

/* The layout, bits and group size of a quantization_config object. */
static int quant_config(const char *dir, const char *file, json_t *q, model_source *s)
{
    json_t *method = json_object_get(q, "quant_method"), *fmt;
    int found_b, found_g;
    if (!json_is_object(q)) {
        llama_err("%s: %s: quantization_config is not an object", dir, file);
        return -1;
    }
    if (json_int_of(q, "bits", "w_bit", &s->quant_bits, &found_b)
        || json_int_of(q, "group_size", "q_group_size", &s->quant_group, &found_g)
        || !found_b || !found_g) {
        llama_err("%s: %s: quantization_config needs integer bits and group_size", dir, file);
        return -1;
    }
    if (!method || json_is_null(method) || str_is(method, "gptq")) {
        fmt = json_object_get(q, "checkpoint_format");
        if (fmt && !json_is_null(fmt) && !str_is(fmt, "gptq")) {
            llama_err("%s: %s: GPTQ checkpoint_format %s is not read (only \"gptq\", v1)", dir,
                      file, json_is_string(fmt) ? json_string_value(fmt) : "?");
            return -1;
        }
        s->quant_layout = QLIB_LAYOUT_GPTQ;
        if (s->quant_bits != 2 && s->quant_bits != 3 && s->quant_bits != 4 && s->quant_bits != 8) {
            llama_err("%s: %s: GPTQ with %d bits; qlib reads 2, 3, 4 and 8", dir, file, s->quant_bits);
            return -1;
        }
    } else if (str_is(method, "awq")) {
        fmt = json_object_get(q, "version");
        if (fmt && !json_is_null(fmt) && !str_is(fmt, "gemm")) {
            llama_err("%s: %s: AWQ version %s is not read (only gemm)", dir, file,
                      json_is_string(fmt) ? json_string_value(fmt) : "?");
            return -1;
        }
        s->quant_layout = QLIB_LAYOUT_AWQ_GEMM;
        if (s->quant_bits != 4) {
            llama_err("%s: %s: AWQ gemm with %d bits; the layout holds 4", dir, file, s->quant_bits);
            return -1;
        }
    } else {
        llama_err("%s: %s: quant_method %s is not read (gptq and awq are)", dir, file,
                  json_is_string(method) ? json_string_value(method) : "?");
        return -1;
    }
    if (s->quant_group == 0 || (s->quant_group > 0 && s->quant_group % 32 != 0)) {
        llama_err("%s: %s: group_size %d; qlib holds groups of a multiple of 32 or -1", dir, file,
                  s->quant_group);
        return -1;
    }
    return 0;
}

/* quantization_config from config.json, else quantize_config.json. */
static int hf_quant_config(const char *dir, json_t *cfg, model_source *s)
{
    json_t *q = json_object_get(cfg, "quantization_config"), *file;
    int rc;
    char path[4200];
    struct stat st;
    if (q && !json_is_null(q))
        return quant_config(dir, "config.json", q, s);
    snprintf(path, sizeof(path), "%s/quantize_config.json", dir);
    if (stat(path, &st) != 0)
        return 0;
    if (!(file = hf_load_json(dir, "quantize_config.json", 0)))
        return -1;
    rc = quant_config(dir, "quantize_config.json", file, s);
    json_decref(file);
    return rc;
}

static const st_tensor *find_any(const model_source *s, const char *name);

/* NAME.SUFFIX, with the dtype and shape a layout needs. */
static const st_tensor *quant_part(const model_source *s, const char *base, const char *suffix,
                                   int dtype, uint64_t d0, uint64_t d1, int dims)
{
    char name[160];
    const st_tensor *t;
    snprintf(name, sizeof(name), "%s.%s", base, suffix);
    t = find_any(s, name);
    if (!t) {
        llama_err("%s: %s is missing", s->path, name);
        return NULL;
    }
    if (t->dtype != dtype || t->n_dims != dims || t->shape[0] != d0 || (dims > 1 && t->shape[1] != d1)) {
        if (dims > 1)
            llama_err("%s: %s is %s of another shape; the model needs %s [%llu, %llu]", s->path, name,
                      t->dtype_name, dtype_name(dtype), (unsigned long long)d0, (unsigned long long)d1);
        else
            llama_err("%s: %s is %s of another shape; the model needs %s [%llu]", s->path, name,
                      t->dtype_name, dtype_name(dtype), (unsigned long long)d0);
        return NULL;
    }
    return t;
}

/* A projection stored as GPTQ or AWQ parts, imported with rows in model
 * order (wq and wk: HF's rotary order undone on the packed parts). */
static int quant_tensor(model_source *s, const char *base, size_t rows, size_t cols, int heads,
                        src_tensor *out)
{
    int gptq = s->quant_layout == QLIB_LAYOUT_GPTQ, bits = s->quant_bits, i, rc = -1;
    size_t bytes[4], groups, *from = NULL;
    const st_tensor *p[4] = { NULL, NULL, NULL, NULL };
    const void *parts[4] = { NULL, NULL, NULL, NULL };
    void *perm[4] = { NULL, NULL, NULL, NULL };
    float *row = NULL;
    qlib_status st;
    if (hfq_part_sizes(s->quant_layout, rows, cols, bits, s->quant_group, bytes) != 0
        || hfq_groups(s->quant_layout, cols, s->quant_group, &groups) != 0) {
        llama_err("%s: %s: a %zu x %zu weight cannot be held in %s with %d bits, group %d", s->path,
                  base, rows, cols, gptq ? "GPTQ" : "AWQ gemm", bits, s->quant_group);
        return -1;
    }
    p[0] = gptq ? quant_part(s, base, "qweight", ST_I32, cols * (size_t)bits / 32, rows, 2)
                : quant_part(s, base, "qweight", ST_I32, cols, rows / 8, 2);
    p[1] = p[0] ? quant_part(s, base, "qzeros", ST_I32, groups, gptq ? rows * (size_t)bits / 32 : rows / 8, 2)
                : NULL;
    p[2] = p[1] ? quant_part(s, base, "scales", DT_F16, groups, rows, 2) : NULL;
    p[3] = gptq && p[2] ? quant_part(s, base, "g_idx", ST_I32, cols, 0, 1) : NULL;
    if (!p[2] || (gptq && !p[3]))
        return -1;
    for (i = 0; i < 4; i++)
        parts[i] = p[i] ? p[i]->data : NULL;
    if (heads > 0) {
        from = xcalloc(rows, sizeof(size_t), "permutation");
        for (i = 0; from && i < 4; i++)
            if (bytes[i] && !(perm[i] = xcalloc(bytes[i], 1, "quantized tensor")))
                goto done;
        if (!from)
            goto done;
        hf_rotary_from(rows, heads, 0, from);
        hfq_permute(s->quant_layout, rows, cols, bits, groups, from, parts, perm);
        for (i = 0; i < 4; i++)
            parts[i] = perm[i];
    }
    st = qlib_tensor_import(s->qctx, (qlib_layout)s->quant_layout, rows, cols, bits, s->quant_group,
                            parts, bytes, &out->q);
    if (st != QLIB_OK) {
        llama_err("%s: %s: %s", s->path, base, qlib_last_error());
        goto done;
    }
    /* the first read allocates the context's scratch (act-order tensors) */
    if (!(row = xcalloc(cols, sizeof(float), "row"))
        || qlib_dequantize_rows(s->qctx, out->q, 0, 1, row, cols) != QLIB_OK) {
        if (row)
            llama_err("%s: %s: %s", s->path, base, qlib_last_error());
        goto done;
    }
    out->dtype = gptq ? DT_GPTQ : DT_AWQ;
    out->rows = rows;
    out->cols = cols;
    out->qctx = s->qctx;
    rc = 0;
done:
    free(from);
    free(row);
    for (i = 0; i < 4; i++)
        free(perm[i]);
    return rc;
}

static int hf_tensor(const model_source *s, const char *name, size_t rows, size_t cols, int heads,
                     src_tensor *out)
{
    const st_tensor *t = find_any(s, name);
    int vec = rows == 1;
    if (!t) {
        llama_err("%s: tensor %s is missing", s->path, name);
        return -1;
    }
    if (t->n_dims != (vec ? 1 : 2) || t->shape[0] != (vec ? cols : rows) || (!vec && t->shape[1] != cols)) {
        llama_err("%s: tensor %s does not have the shape [%zu, %zu] the config asks for", s->path,
                  name, rows, cols);
        return -1;
    }
    if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16) {
        llama_err("%s: tensor %s is %s; this program reads F32, F16 and BF16", s->path, name,
                  t->dtype_name);
        return -1;
    }
    out->data = t->data;
    out->dtype = t->dtype;
    out->rows = rows;
    out->cols = cols;
    out->hf_heads = heads;
    return 0;
}

static int hf_tensors(model_source *s)
{
    const llama_config *c = &s->cfg;
    size_t d = (size_t)c->dim, v = (size_t)c->vocab_size;
    char name[128];
    int l, p;
    if (hf_tensor(s, "model.embed_tokens.weight", v, d, 0, &s->emb)
        || hf_tensor(s, "model.norm.weight", 1, d, 0, &s->norm_final))
        return -1;
    if (c->shared_classifier)
        s->cls = s->emb;
    else if (hf_tensor(s, "lm_head.weight", v, d, 0, &s->cls))
        return -1;
    for (l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
        if (hf_tensor(s, name, 1, d, 0, &s->norm_att[l]))
            return -1;
        snprintf(name, sizeof(name), "model.layers.%d.post_attention_layernorm.weight", l);
        if (hf_tensor(s, name, 1, d, 0, &s->norm_ffn[l]))
            return -1;
        for (p = 0; p < N_PROJ; p++) {
            int heads = p == P_WQ ? c->n_heads : p == P_WK ? c->n_kv_heads : 0;
            snprintf(name, sizeof(name), "model.layers.%d.%s.qweight", l, HF_PROJ[p]);
            if (s->quant_layout && find_any(s, name)) {
                snprintf(name, sizeof(name), "model.layers.%d.%s", l, HF_PROJ[p]);
                if (quant_tensor(s, name, proj_rows(c, p), proj_cols(c, p), heads, source_proj(s, l, p)))
                    return -1;
                continue;
            }
            snprintf(name, sizeof(name), "model.layers.%d.%s.weight", l, HF_PROJ[p]);
            if (hf_tensor(s, name, proj_rows(c, p), proj_cols(c, p), heads, source_proj(s, l, p)))
                return -1;
        }
    }
    return 0;
}

int hf_open(const char *dir, model_source *s)
{
    json_t *cfg = hf_load_json(dir, "config.json", 0);
    int rc;
    s->kind = SRC_HF;
    if (!cfg)
        return -1;
    rc = hf_config(dir, cfg, &s->cfg);
    if (rc == 0)
        rc = hf_quant_config(dir, cfg, s);
    json_decref(cfg);
    if (rc != 0)
        return -1;
    if (s->quant_layout) {
        /* one thread: rows are read a few at a time, on the caller's thread */
        if (qlib_ctx_create(&s->qctx) != QLIB_OK || qlib_ctx_set_threads(s->qctx, 1) != QLIB_OK) {
            report_qlib_error("context");
            return -1;
        }
    }
    s->norm_att = xcalloc((size_t)s->cfg.n_layers, sizeof(src_tensor), "tensor table");
    s->norm_ffn = xcalloc((size_t)s->cfg.n_layers, sizeof(src_tensor), "tensor table");
    s->proj = xcalloc((size_t)s->cfg.n_layers * N_PROJ, sizeof(src_tensor), "tensor table");
    if (!s->norm_att || !s->norm_ffn || !s->proj || open_weights(s, dir) != 0)
        return -1;
    return hf_tensors(s);
}
