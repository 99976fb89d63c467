/* Internal declarations shared by the library's units. Not installed. */
#ifndef QLIB_CORE_H
#define QLIB_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qlib.h"
#include "../kernels/kernels.h"
#include "method.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qlib supports little-endian targets only"
#endif

#define QLIB_HIDDEN __attribute__((visibility("hidden")))
#define QLIB_ALIGN 64

/* ---- errors: set the thread-local message, return the status ---- */
QLIB_HIDDEN qlib_status qlib_fail(qlib_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- size arithmetic ---- */
static inline int qlib_mul_overflows(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 1;
    *out = a * b;
    return 0;
}
static inline size_t qlib_round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* ---- memory: everything goes through an allocator table ---- */
QLIB_HIDDEN extern const qlib_allocator qlib_default_allocator;
QLIB_HIDDEN void *qlib_mem_alloc(const qlib_allocator *a, size_t size);  /* 64-aligned; NULL on failure */
QLIB_HIDDEN void *qlib_mem_calloc(const qlib_allocator *a, size_t size);
QLIB_HIDDEN void  qlib_mem_free(const qlib_allocator *a, void *p);        /* NULL is fine */

/* ---- fp16 ---- */
QLIB_HIDDEN uint16_t qlib_f32_to_f16(float f);         /* round to nearest even */
QLIB_HIDDEN uint16_t qlib_f32_to_f16_up(float f);      /* smallest fp16 >= f, for f >= 0 */
static inline float qlib_f16_to_f32(uint16_t h) { return qk_f16_to_f32(h); }

/* ---- cpu features: QK_CPU_* (kernels.h) ---- */
QLIB_HIDDEN unsigned qlib_cpu_features(void);
QLIB_HIDDEN int      qlib_cpu_count(void);

/* ---- thread pool ---- */
typedef struct qlib_pool qlib_pool;
QLIB_HIDDEN qlib_status qlib_pool_create(const qlib_allocator *a, int n_threads, qlib_pool **out);
QLIB_HIDDEN void qlib_pool_run(qlib_pool *p, void (*task)(void *, size_t), void *arg, size_t n);
QLIB_HIDDEN void qlib_pool_destroy(qlib_pool *p);

/* ---- context ---- */
struct qlib_ctx {
    qlib_allocator alloc;
    int n_threads;               /* effective */
    qlib_pool *pool;             /* NULL when n_threads == 1 or a caller pool is lent */
    qlib_parallel parallel;      /* run == NULL: built-in */
    const qlib_kernels *kern;
    qlib_compute compute;
    void  *scratch[2];           /* 0: the matmul driver; 1: methods that call it */
    size_t scratch_size[2];
    qlib_progress_fn progress;   /* NULL: none */
    void *progress_user;
    double progress_last;        /* the last fraction reported in this call */
    const char *progress_stage;  /* and its stage; NULL before the first report */
    double progress_lo, progress_hi;   /* the share of the call the current part covers */
    int cancelled;               /* the callback asked to stop during this call */
};
/* Runs task(arg, i) for i in [0, n) on the context's threads. */
QLIB_HIDDEN void  qlib_ctx_parallel_for(qlib_ctx *ctx, void (*task)(void *, size_t), void *arg,
                                        size_t n);
/* A scratch area of at least size bytes, 64-aligned, valid until the next
 * call; NULL on allocation failure (message set). */
QLIB_HIDDEN void *qlib_ctx_scratch(qlib_ctx *ctx, size_t size, const char *fn);
/* A second, independent scratch area for code that calls the matmul driver. */
QLIB_HIDDEN void *qlib_ctx_scratch_aux(qlib_ctx *ctx, size_t size, const char *fn);
/* Progress of the call under way (qlib_ctx_set_progress). qlib_progress_begin
 * starts a call's report at 0; qlib_progress reports fraction of the current
 * part, which qlib_progress_part maps to [lo, hi] of the whole call (all of
 * it by default), clamped to be non-decreasing and in [0, 1], on the calling
 * thread, and returns nonzero when the call must stop (the callback asked
 * to, now or earlier in this call); qlib_progress_cancelled sets and returns
 * the CANCELLED status and message. */
QLIB_HIDDEN void qlib_progress_begin(qlib_ctx *ctx);
QLIB_HIDDEN void qlib_progress_part(qlib_ctx *ctx, double lo, double hi);
QLIB_HIDDEN int  qlib_progress(qlib_ctx *ctx, const char *stage, double fraction);
/* The last report again (the same stage and fraction), for long stretches of
 * one stage: nonzero when the call must stop. Nothing before a first report.
 * qlib_progress_stage names the stage under way. */
QLIB_HIDDEN int  qlib_progress_poll(qlib_ctx *ctx);
QLIB_HIDDEN const char *qlib_progress_stage(const qlib_ctx *ctx);
QLIB_HIDDEN qlib_status qlib_progress_cancelled(const char *fn, const char *stage);

/* ---- config: an opaque set of a method's parameter values (config.c;
 * method.h's qlib_cfg_int / qlib_cfg_float read them) ---- */

/* ---- calibration ---- */
struct qlib_calib {
    qlib_ctx *ctx;
    size_t k;
    unsigned what;
    size_t n_tokens;
    float *hessian;           /* k x k, running mean of 2 x x^T (upper triangle valid) */
    double *abs_sum;          /* k: sum |x| */
    float  *abs_max;          /* k */
    float  *samples;          /* max_samples x k */
    size_t  max_samples, n_samples;
    uint64_t rng;
};

/* ---- tensors ----
 * A tensor is a view of its serialized blob (docs/FORMAT.md): quantize lays
 * out the blob and fills its sections in place; deserialize checks one and
 * points into it. */
enum { QLIB_SEC_CODES = 1, QLIB_SEC_SCALES = 2, QLIB_SEC_ZEROS = 3, QLIB_SEC_PERM = 4,
       QLIB_SEC_INPUT_SCALES = 5, QLIB_SEC_F32 = 6, QLIB_SEC_F16 = 7, QLIB_SEC_MAX = 7 };

typedef struct qlib_tensor_desc {
    qlib_method method;
    int bits;          /* 2,3,4,8 quantized; 16, 32 float */
    int group_size;    /* as configured: -1, 0 or a multiple of 32 */
    int symmetric;
    size_t n, k;
    int has_perm, has_input_scales;
    float param;       /* the method's header parameter (its row's header_param), else 0 */
} qlib_tensor_desc;

struct qlib_tensor {
    qlib_allocator alloc;
    void *owned;                  /* the blob when the tensor owns it */
    uint8_t *blob;                /* writable only while being built */
    size_t blob_size;
    qlib_tensor_desc d;
    qk_weights w;                 /* quantized formats */
    const float *f32;             /* NONE, 32 bits: n x k */
    const uint16_t *f16;          /* NONE, 16 bits: n x k */
    const int32_t *perm;          /* k or NULL */
    const float *input_scales;    /* k or NULL */
    double quant_error;
    int error_weighted;           /* quant_error is Hessian-weighted */
    size_t storage_bytes;
};

/* Lays out and allocates a blob for d; section pointers are set (writable
 * through the casts below), contents zeroed. */
QLIB_HIDDEN qlib_status qlib_tensor_create(const qlib_allocator *a, const qlib_tensor_desc *d,
                                           qlib_tensor **out, const char *fn);
/* Records the error and seals the blob (header fields, checksum). */
QLIB_HIDDEN void qlib_tensor_seal(qlib_tensor *t, double quant_error, int weighted);
/* Checks desc values (bits, group, sizes) as a loader must. */
QLIB_HIDDEN qlib_status qlib_desc_check(const qlib_tensor_desc *d, const char *fn,
                                        qlib_status code);
/* Columns per group (a multiple of 32, or kp for one group a row/tensor). */
QLIB_HIDDEN size_t qlib_desc_group_cols(const qlib_tensor_desc *d);

static inline uint8_t  *qlib_t_codes(qlib_tensor *t)  { return (uint8_t *)t->w.codes; }
static inline uint16_t *qlib_t_scales(qlib_tensor *t) { return (uint16_t *)t->w.scales; }
static inline uint8_t  *qlib_t_zeros(qlib_tensor *t)  { return (uint8_t *)t->w.zeros; }

/* Row r of the effective weights in the original input space (k floats);
 * tmp holds kp floats when the tensor permutes or scales its inputs. */
QLIB_HIDDEN void qlib_tensor_row(const qlib_tensor *t, const qlib_kernels *kern, size_t r,
                                 float *out, float *tmp);

/* ---- blob layout (tensor.c) and header (serialize.c) ---- */
typedef struct qlib_section { uint32_t id; size_t offset, size; } qlib_section;
/* Canonical layout of d: fills sec (in id order), returns the blob size. */
QLIB_HIDDEN size_t qlib_tensor_layout(const qlib_tensor_desc *d, qlib_section sec[QLIB_SEC_MAX],
                                      unsigned *n_sec, size_t *storage);
QLIB_HIDDEN void qlib_tensor_bind(qlib_tensor *t, const qlib_section *sec, unsigned n_sec);
/* Bytes of a blob's header with n_sec section entries (before alignment). */
QLIB_HIDDEN size_t qlib_header_bytes(unsigned n_sec);
QLIB_HIDDEN void qlib_header_write(qlib_tensor *t, const qlib_section *sec, unsigned n_sec);
QLIB_HIDDEN void qlib_header_finish(qlib_tensor *t);

/* ---- packing of codes (the one packed layout, docs/FORMAT.md) ---- */
/* codes: kp unsigned codes of one row (0 .. 2^bits-1); dst: w->row_bytes. */
QLIB_HIDDEN void qlib_pack_row(int bits, const uint8_t *codes, size_t kp, uint8_t *dst);
QLIB_HIDDEN void qlib_zero_put(uint8_t *stream, size_t index, int bits, unsigned value);

/* ---- matmul helpers shared with the methods ---- */
QLIB_HIDDEN int qlib_all_finite(const float *x, size_t rows, size_t cols, size_t ld);
/* The quantized-weight path of qlib_matmul after its checks; input columns
 * with drop[c] != 0 are treated as zero (drop may be NULL). */
QLIB_HIDDEN qlib_status qlib_matmul_quantized(qlib_ctx *ctx, const qlib_tensor *t, const float *x,
                                              size_t m, size_t ldx, float *y, size_t ldy,
                                              const uint8_t *drop);
/* The same, and post(post_arg, n0, n1) for each chunk of at most 64 output
 * columns (boundaries at multiples of 64, whatever the thread count), on the
 * thread that computed the chunk, right after the kernel wrote y's columns
 * [n0, n1): the chunk's weight rows are still in cache. post may be NULL. */
QLIB_HIDDEN qlib_status qlib_matmul_quantized_post(qlib_ctx *ctx, const qlib_tensor *t,
                                                   const float *x, size_t m, size_t ldx, float *y,
                                                   size_t ldy, const uint8_t *drop,
                                                   void (*post)(void *, size_t, size_t),
                                                   void *post_arg);

#endif
