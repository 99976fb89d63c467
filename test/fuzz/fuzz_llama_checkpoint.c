/* The llama2 example's model reader (examples/llama2/model.c, qmodel.c) on
 * arbitrary file contents: a llama2.c checkpoint or a quantized model.
 * Input: the file's bytes. A model that loads must have every projection
 * in the shape its configuration asks for. */
#include "fuzz.h"
#include "llama.h"

static qlib_ctx *ctx;
static char path[4096];

static void remove_file(void) { unlink(path); }

static void setup(void)
{
    if (ctx) return;
    fz_temp_file(path, sizeof path, "ckpt");
    atexit(remove_file);
    ctx = fz_ctx(1, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    fz_write_file(path, data, size);
    llama_model m;
    fz_quiet(1);
    int rc = model_load(ctx, path, &m);
    fz_quiet(0);
    if (rc != 0) return 0;
    FZ_CHECK(config_validate(&m.cfg, path) == 0);
    FZ_CHECK(m.tok_emb && m.rms_att && m.rms_ffn && m.rms_final && m.wcls);
    for (int l = 0; l < m.cfg.n_layers; l++)
        for (int p = 0; p < N_PROJ; p++) {
            const qlib_tensor *t = *model_proj(&m, l, p);
            FZ_CHECK(t != NULL);
            FZ_CHECK(qlib_tensor_rows(t) == proj_rows(&m.cfg, p));
            FZ_CHECK(qlib_tensor_cols(t) == proj_cols(&m.cfg, p));
        }
    model_free(&m);
    return 0;
}
