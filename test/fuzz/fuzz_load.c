/* qlib_tensor_load on a file holding arbitrary bytes; a tensor that loads is
 * checked like a deserialized one, and saved and loaded again.
 *
 * Input: two control bytes, then the file's bytes.
 *   bits 0-1  how the bytes are made from the input (FZ_RAW .. FZ_VALID, fuzz.h)
 *   bit 2     save the loaded tensor and load the copy
 *   bit 3     QLIB_COMPUTE_F32 (else AUTO)
 *   bit 4     a context with 2 threads (else 1)
 *   bit 5     5 rows of activations (else 1)
 *   bits 6-7  fail allocation 1, 2 or 3 of the load (0: none)
 *   byte 2, bit 0: the scalar kernels (else the best this CPU has) */
#include "fuzz.h"

static fz_counter load_counter;
static qlib_ctx *load_ctx, *run_ctx[2][2];   /* [threads == 2][scalar] */
static char path[4096], copy_path[4096 + 8];

static void remove_files(void)
{
    unlink(path);
    unlink(copy_path);
}

static void setup(void)
{
    if (load_ctx) return;
    fz_temp_file(path, sizeof path, "load");
    snprintf(copy_path, sizeof copy_path, "%s.copy", path);
    atexit(remove_files);
    load_ctx = fz_ctx(1, &load_counter);
    run_ctx[0][0] = fz_ref_ctx(0);
    run_ctx[0][1] = fz_ref_ctx(1);
    run_ctx[1][0] = fz_ctx(2, NULL);
    run_ctx[1][1] = fz_ctx(2, NULL);
    FZ_CHECK(qlib_ctx_set_isa(run_ctx[1][1], "scalar") == QLIB_OK);
    /* what is not a regular file, or is missing, is an I/O error */
    qlib_tensor *t = NULL;
    FZ_CHECK(qlib_tensor_load(load_ctx, "/", &t) == QLIB_ERR_IO && t == NULL);
    FZ_CHECK(qlib_tensor_load(load_ctx, copy_path, &t) == QLIB_ERR_IO && t == NULL);
}

/* save + load gives the same blob */
static void check_save(const qlib_tensor *t)
{
    size_t a = 0, b = 0;
    qlib_tensor *u = NULL;
    FZ_CHECK(qlib_tensor_save(t, copy_path) == QLIB_OK);
    FZ_CHECK(qlib_tensor_load(run_ctx[0][0], copy_path, &u) == QLIB_OK);
    FZ_CHECK(qlib_tensor_serialized_size(t, &a) == QLIB_OK);
    FZ_CHECK(qlib_tensor_serialized_size(u, &b) == QLIB_OK && a == b);
    uint8_t *x = fz_malloc(a), *y = fz_malloc(b);
    FZ_CHECK(qlib_tensor_serialize(t, x, a, NULL) == QLIB_OK);
    FZ_CHECK(qlib_tensor_serialize(u, y, b, NULL) == QLIB_OK);
    FZ_CHECK(memcmp(x, y, a) == 0);
    free(x);
    free(y);
    qlib_tensor_destroy(u);
    unlink(copy_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    setup();
    unsigned ctl = data[0];
    int must_load;
    size_t len;
    uint8_t *blob = fz_blob(data + 2, size - 2, ctl & 3, &len, &must_load);
    fz_write_file(path, blob, len);
    qlib_ctx *ctx = run_ctx[(ctl >> 4) & 1][data[1] & 1];
    FZ_CHECK(qlib_ctx_set_compute(ctx, (ctl >> 3) & 1 ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO) ==
             QLIB_OK);

    long live = load_counter.live;
    fz_counter_arm(&load_counter, (long)(ctl >> 6));
    qlib_tensor *t = (qlib_tensor *)&load_counter;   /* must be overwritten */
    qlib_status s = qlib_tensor_load(load_ctx, path, &t);
    load_counter.fail_at = 0;                        /* save allocates through t's allocator */
    fz_check_loaded(s, t, &load_counter, must_load, blob, len, ctx, (ctl >> 5) & 1 ? 5 : 1,
                    (uint32_t)(size * 131u + ctl));
    if (s == QLIB_OK && (ctl >> 2) & 1) check_save(t);
    qlib_tensor_destroy(t);
    FZ_CHECK(load_counter.live == live);
    free(blob);
    return 0;
}
