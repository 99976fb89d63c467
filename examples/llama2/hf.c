/*
 * Hugging Face Llama-family directories: config.json (LlamaForCausalLM) and
 * the weights in model.safetensors, or in shards listed by
 * model.safetensors.index.json ({"weight_map": {tensor: file}}). Tensor
 * names are transformers' (model.embed_tokens.weight,
 * model.layers.N.self_attn.q_proj.weight, ..., lm_head.weight).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    json_decref(cfg);
    if (rc != 0)
        return -1;
    s->norm_att = xcalloc((size_t)s->cfg.n_layers, sizeof(src_tensor), "tensor table");
    s->norm_ffn = xcalloc((size_t)s->cfg.n_layers, sizeof(src_tensor), "tensor table");
    s->proj = xcalloc((size_t)s->cfg.n_layers * N_PROJ, sizeof(src_tensor), "tensor table");
    if (!s->norm_att || !s->norm_ffn || !s->proj || open_weights(s, dir) != 0)
        return -1;
    return hf_tensors(s);
}
