/* The llama2 example's model reader (examples/llama2/model.c, qmodel.c) on
 * arbitrary file contents: a llama2.c checkpoint or a quantized model
 * (with or without a quantized embedding and classifier). Input: the file's
 * bytes. A model that loads must have every projection, and a quantized
 * embedding or classifier, in the shape its configuration asks for. */
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
    FZ_CHECK((m.tok_emb || m.emb_q) && m.rms_att && m.rms_ffn && m.rms_final && (m.wcls || m.cls_q));
    /* a quantized embedding / classifier: vocab x dim, rows readable */
    for (int e = 0; e < 2; e++) {
        const qlib_tensor *t = e ? m.cls_q : m.emb_q;
        if (!t) continue;
        FZ_CHECK(qlib_tensor_rows(t) == (size_t)m.cfg.vocab_size);
        FZ_CHECK(qlib_tensor_cols(t) == (size_t)m.cfg.dim);
        float *row = fz_malloc((size_t)m.cfg.dim * sizeof(float));
        FZ_CHECK(qlib_dequantize_rows(ctx, t, (size_t)m.cfg.vocab_size - 1, 1, row,
                                      (size_t)m.cfg.dim) == QLIB_OK);
        free(row);
    }
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
