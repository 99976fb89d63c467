/* The model tool's GGUF reader (examples/llama2/gguf.c) on arbitrary file
 * contents, then everything built on it: every key read as an integer, a
 * float and a string, every string array walked, the file opened as a model
 * (source.c: configuration, tensor shapes and types) with every tensor read
 * into fp32, and the vocabulary loaded and used to encode and decode a text.
 * Input: the file's bytes. */
#include "fuzz.h"
#include "llama.h"

/* Messages are silenced while the readers run; a failed check speaks up. */
#define CHECK(c) do { if (!(c)) { fz_quiet(0); FZ_CHECK(c); } } while (0)

static char path[4096];

static void remove_file(void) { unlink(path); }

static void setup(void)
{
    if (path[0]) return;
    fz_temp_file(path, sizeof path, "gguf");
    atexit(remove_file);
}

static void walk_keys(const gguf_file *g)
{
    for (size_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        char key[300];
        long long v;
        double d;
        const char *s;
        size_t len;
        CHECK(kv->key_len > 0 && kv->raw >= g->file.data
                 && kv->raw + kv->raw_bytes <= g->file.data + g->file.size);
        if (kv->key_len >= sizeof key) continue;
        memcpy(key, kv->key, kv->key_len);
        key[kv->key_len] = '\0';
        CHECK(gguf_find(g, key) == kv);
        gguf_get_int(path, g, key, 0, LLONG_MIN, LLONG_MAX, &v);
        gguf_get_float(path, g, key, 0, &d);
        if (gguf_get_str(path, g, key, 0, &s, &len) == 0)
            CHECK(s + len <= (const char *)g->file.data + g->file.size);
        if (kv->type == GV_ARR && kv->elem_type == GV_STR)
            for (uint64_t j = 0; j < kv->count && j < 4096; j++) {
                gguf_arr_str(kv, j, &s, &len);
                CHECK(s >= (const char *)g->file.data && s + len <= (const char *)g->file.data + g->file.size);
            }
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor_info *t = &g->tensors[i];
        if (t->data)
            CHECK(t->data >= g->file.data + g->data_offset && t->bytes <= g->file.size
                     && t->data + t->bytes <= g->file.data + g->file.size);
    }
}

static void read_tensor(const src_tensor *t)
{
    float *buf = fz_malloc(t->cols * sizeof(float));
    for (size_t r = 0; r < t->rows; r++)
        src_read_rows(t, r, 1, buf);
    free(buf);
}

static void use_model(void)
{
    model_source s;
    if (source_open(path, &s) != 0) return;
    CHECK(config_validate(&s.cfg, path) == 0);
    read_tensor(&s.emb);
    read_tensor(&s.norm_final);
    for (int l = 0; l < s.cfg.n_layers; l++) {
        read_tensor(&s.norm_att[l]);
        for (int p = 0; p < N_PROJ; p++) {
            const src_tensor *t = source_proj(&s, l, p);
            CHECK(t->rows == proj_rows(&s.cfg, p) && t->cols == proj_cols(&s.cfg, p));
            read_tensor(t);
        }
    }
    llama_tokenizer tok;
    if (tokenizer_from_gguf(path, &s.gguf, s.cfg.vocab_size, &tok) == 0) {
        static const char text[] = "Once upon a time, \xc3\xa9t\xc3\xa9 \xff\n<s> ok";
        int ids[sizeof text + 3];
        char byte_buf[2];
        int n = tokenizer_encode(&tok, text, 1, ids);
        for (int i = 0; i < n; i++) {
            CHECK(ids[i] >= 0 && ids[i] < tok.vocab_size);
            CHECK(tokenizer_decode(&tok, i ? ids[i - 1] : tok.bos, ids[i], byte_buf) != NULL);
        }
        tokenizer_free(&tok);
    }
    source_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    fz_write_file(path, data, size);
    gguf_file g;
    fz_quiet(1);
    if (gguf_open(path, &g) == 0) {
        walk_keys(&g);
        gguf_free(&g);
        use_model();
    }
    fz_quiet(0);
    return 0;
}
