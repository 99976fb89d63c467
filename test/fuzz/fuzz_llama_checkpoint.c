/* The llama2 example's model reader (examples/llama2/model.c, qmodel.c) on
 * arbitrary file contents: a llama2.c checkpoint or a quantized model.
 * Input: the file's bytes. A model that loads must have every projection
 * in the shape its configuration asks for. */
#include <fcntl.h>
#include <unistd.h>

#include "fuzz.h"
#include "llama.h"

static qlib_ctx *ctx;
static char path[4096];

static void remove_file(void) { unlink(path); }

static void setup(void)
{
    if (ctx) return;
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/qlib-fuzz-ckpt-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    FZ_CHECK(fd >= 0);
    close(fd);
    atexit(remove_file);
    ctx = fz_ctx(1, NULL);
}

/* The example reports each file it rejects on stderr, and the corpus holds
 * many. Its messages go through stdio, so they are sent to a null stream;
 * sanitizer reports, written to descriptor 2, still appear (glibc lets
 * stderr be reassigned). */
static FILE *saved_stderr;

static void quiet(int on)
{
    static FILE *null;
    if (!null) null = fopen("/dev/null", "w");
    if (on && null) {
        saved_stderr = stderr;
        stderr = null;
    } else if (!on && saved_stderr) {
        stderr = saved_stderr;
        saved_stderr = NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    int fd = open(path, O_WRONLY | O_TRUNC);
    FZ_CHECK(fd >= 0);
    FZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
    FZ_CHECK(close(fd) == 0);
    llama_model m;
    quiet(1);
    int rc = model_load(ctx, path, &m);
    quiet(0);
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
