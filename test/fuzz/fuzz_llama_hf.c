/* The model tool's Hugging Face reader (examples/llama2/hf.c,
 * hfquant.c, safetensors.c) on arbitrary contents: a directory holding
 * config.json and model.safetensors, opened as a model, every tensor read
 * into fp32 (GPTQ / AWQ projections imported into qlib tensors and read
 * back a row at a time); and the safetensors file parsed on its own, every
 * tensor checked to lie in it. The config bytes are also written as
 * quantize_config.json, which the reader consults for the quantization
 * settings when config.json has no quantization_config.
 * Input: [uint16 config length][config.json][model.safetensors]. */
#include <sys/stat.h>

#include "fuzz.h"
#include "llama.h"

/* Messages are silenced while the readers run; a failed check speaks up. */
#define CHECK(c) do { if (!(c)) { fz_quiet(0); FZ_CHECK(c); } } while (0)

static char dir[4096], config[4200], weights[4200], qconfig[4200];

static void remove_dir(void)
{
    unlink(config);
    unlink(qconfig);
    unlink(weights);
    rmdir(dir);
}

static void setup(void)
{
    if (dir[0]) return;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qlib-fuzz-hf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(qconfig, sizeof qconfig, "%s/quantize_config.json", dir);
    atexit(remove_dir);
}

static void read_tensor(const src_tensor *t)
{
    float *buf = fz_malloc(t->cols * sizeof(float));
    for (size_t r = 0; r < t->rows; r++)
        src_read_rows(t, r, 1, buf);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    setup();
    size_t clen = data[0] | (size_t)data[1] << 8;
    if (clen > size - 2) clen = size - 2;
    fz_write_file(config, data + 2, clen);
    fz_write_file(qconfig, data + 2, clen);
    fz_write_file(weights, data + 2 + clen, size - 2 - clen);
    fz_quiet(1);
    st_file st;
    if (st_open(weights, &st) == 0) {
        for (size_t i = 0; i < st.n_tensors; i++) {
            const st_tensor *t = &st.tensors[i];
            CHECK(t->name && st_find(&st, t->name) != NULL);
            CHECK(t->data >= st.file.data && t->bytes <= st.file.size
                     && t->data + t->bytes <= st.file.data + st.file.size);
        }
        st_free(&st);
    }
    model_source s;
    if (source_open(dir, &s) == 0) {
        CHECK(s.kind == SRC_HF && config_validate(&s.cfg, dir) == 0);
        read_tensor(&s.emb);
        read_tensor(&s.cls);
        for (int l = 0; l < s.cfg.n_layers; l++)
            for (int p = 0; p < N_PROJ; p++) {
                const src_tensor *t = source_proj(&s, l, p);
                CHECK(t->rows == proj_rows(&s.cfg, p) && t->cols == proj_cols(&s.cfg, p));
                if (t->q)
                    CHECK(s.quant_layout && qlib_tensor_rows(t->q) == t->rows
                          && qlib_tensor_cols(t->q) == t->cols);
                read_tensor(t);
            }
        source_close(&s);
    }
    fz_quiet(0);
    return 0;
}
