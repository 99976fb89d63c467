/* qlib_tensor_deserialize on arbitrary bytes, copied and borrowed, then
 * everything a caller does with the tensor.
 *
 * Input: two control bytes, then the blob.
 *   bits 0-1  how the blob is made from the bytes (FZ_RAW .. FZ_VALID, fuzz.h)
 *   bit 2     QLIB_LOAD_BORROW
 *   bit 3     QLIB_COMPUTE_F32 (else AUTO)
 *   bit 4     a context with 2 threads (else 1)
 *   bit 5     5 rows of activations (else 1)
 *   bits 6-7  fail allocation 1, 2 or 3 of the load (0: none)
 *   byte 2, bit 0: the scalar kernels (else the best this CPU has) */
#include "fuzz.h"

static fz_counter load_counter;
static qlib_ctx *load_ctx, *run_ctx[2][2];   /* [threads == 2][scalar] */

static void setup(void)
{
    if (load_ctx) return;
    load_ctx = fz_ctx(1, &load_counter);
    run_ctx[0][0] = fz_ref_ctx(0);
    run_ctx[0][1] = fz_ref_ctx(1);
    run_ctx[1][0] = fz_ctx(2, NULL);
    run_ctx[1][1] = fz_ctx(2, NULL);
    FZ_CHECK(qlib_ctx_set_isa(run_ctx[1][1], "scalar") == QLIB_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    setup();
    unsigned ctl = data[0];
    int mode = ctl & 3, borrow = (ctl >> 2) & 1, must_load;
    long fail_at = (long)(ctl >> 6);
    size_t len;
    uint8_t *blob = fz_blob(data + 2, size - 2, mode, &len, &must_load);
    qlib_ctx *ctx = run_ctx[(ctl >> 4) & 1][data[1] & 1];
    FZ_CHECK(qlib_ctx_set_compute(ctx, (ctl >> 3) & 1 ? QLIB_COMPUTE_F32 : QLIB_COMPUTE_AUTO) ==
             QLIB_OK);

    long live = load_counter.live;
    fz_counter_arm(&load_counter, fail_at);
    qlib_tensor *t = (qlib_tensor *)&load_counter;   /* must be overwritten */
    qlib_status s = qlib_tensor_deserialize(load_ctx, blob, len, borrow ? QLIB_LOAD_BORROW : 0, &t);
    fz_check_loaded(s, t, &load_counter, must_load, blob, len, ctx, (ctl >> 5) & 1 ? 5 : 1,
                    (uint32_t)(size * 131u + ctl));
    qlib_tensor_destroy(t);
    FZ_CHECK(load_counter.live == live);
    /* a borrowed tensor pointed into blob: it must be gone before blob is */
    free(blob);
    return 0;
}
