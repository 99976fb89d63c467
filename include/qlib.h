/*
 * qlib: quantize the weight matrices of large language models and multiply
 * with them on the CPU.
 *
 * This header is the whole public, stable API (C99, also usable from C++).
 * Conventions:
 *  - Functions that can fail return a qlib_status; outputs come last. On
 *    failure an output handle is set to NULL and nothing is half-made; the
 *    detail is in qlib_last_error() (thread-local).
 *  - Handles are opaque. No struct layout is part of the ABI except the two
 *    callback tables a caller fills in (qlib_allocator, qlib_parallel), which
 *    start with struct_size.
 *  - Matrices are row-major; leading dimensions (ld*) count elements.
 *  - Enum values are pinned: a value is never reused or renumbered.
 *  - Nothing in the library prints, exits or aborts.
 * See docs/API.md for each function's ownership, errors and thread safety.
 */
#ifndef QLIB_H
#define QLIB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(QLIB_BUILDING_DLL)
#  define QLIB_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#  define QLIB_API __attribute__((visibility("default")))
#else
#  define QLIB_API
#endif

/* ---------------------------------------------------------------- version */
#define QLIB_VERSION_MAJOR 0
#define QLIB_VERSION_MINOR 2
#define QLIB_VERSION_PATCH 0
#define QLIB_VERSION_NUMBER \
    (QLIB_VERSION_MAJOR * 10000 + QLIB_VERSION_MINOR * 100 + QLIB_VERSION_PATCH)
#define QLIB_VERSION_STRING "0.2.0"

/* The version of the library actually linked (may differ from the header's). */
QLIB_API unsigned    qlib_version_number(void);
QLIB_API const char *qlib_version_string(void);   /* static string, never NULL */

/* ----------------------------------------------------------------- errors */
typedef enum qlib_status {
    QLIB_OK = 0,
    QLIB_ERR_ARG = 1,          /* NULL pointer, zero or overflowing size, bad option value */
    QLIB_ERR_SHAPE = 2,        /* operand dimensions do not agree */
    QLIB_ERR_NOMEM = 3,        /* the allocator returned NULL */
    QLIB_ERR_UNSUPPORTED = 4,  /* valid request this build or CPU cannot serve; unknown option */
    QLIB_ERR_NUMERIC = 5,      /* NaN/Inf in input; Hessian not positive definite after damping */
    QLIB_ERR_STATE = 6,        /* calibration that saw no tokens or lacks what the method needs */
    QLIB_ERR_IO = 7,           /* open/read/write/rename failed (errno text in the message) */
    QLIB_ERR_FORMAT = 8,       /* serialized data corrupt, truncated, or of an unknown version */
    QLIB_ERR_CANCELLED = 9     /* the progress callback asked to stop; nothing was made (0.2) */
} qlib_status;

/* A static English name for s ("QLIB_ERR_ARG: invalid argument"); never NULL,
 * also for values this version does not know. */
QLIB_API const char *qlib_status_string(qlib_status s);
/* The detail of the last failure on the calling thread, e.g.
 * "qlib_matmul: x has k=4095 columns, tensor expects 4096". Empty string when
 * nothing failed yet. Valid until the next failing call on this thread. */
QLIB_API const char *qlib_last_error(void);

/* ---------------------------------------------------------------- context */
typedef struct qlib_ctx qlib_ctx;

/* Every allocation the library makes goes through this table. alloc returns
 * size bytes aligned to alignment (a power of two >= sizeof(void *)) or NULL;
 * free(NULL) need not be handled (the library never passes NULL). */
typedef struct qlib_allocator {
    uint32_t struct_size;                                   /* sizeof(qlib_allocator) */
    void *(*alloc)(void *user, size_t size, size_t alignment);
    void  (*free)(void *user, void *ptr);
    void  *user;
} qlib_allocator;
#define QLIB_ALLOCATOR_INIT { (uint32_t)sizeof(qlib_allocator), NULL, NULL, NULL }

/* Lets an engine lend its own thread pool: run must call task(arg, i) once
 * for every i in [0, n_tasks), in any order and on any threads, and return
 * only when all calls have returned. */
typedef struct qlib_parallel {
    uint32_t struct_size;                                   /* sizeof(qlib_parallel) */
    void (*run)(void *user, void (*task)(void *arg, size_t i), void *arg, size_t n_tasks);
    void  *user;
} qlib_parallel;
#define QLIB_PARALLEL_INIT { (uint32_t)sizeof(qlib_parallel), NULL, NULL }

typedef enum qlib_compute {
    QLIB_COMPUTE_AUTO = 0,  /* int8 dot products where the format allows */
    QLIB_COMPUTE_F32 = 1    /* dequantize on the fly, fp32 arithmetic */
} qlib_compute;

/* A context owns a thread pool, the kernel table and a scratch buffer. It is
 * used by one thread at a time. Defaults: all online CPUs, the best ISA of
 * this CPU (or the one named by the environment variable QLIB_ISA), AUTO. */
QLIB_API qlib_status qlib_ctx_create(qlib_ctx **out);
/* a is copied; a NULL a means malloc/free. ERR_ARG: struct_size too small or
 * a callback missing. */
QLIB_API qlib_status qlib_ctx_create_with_allocator(const qlib_allocator *a, qlib_ctx **out);
/* 0 = all online CPUs; 1 = run on the calling thread only. ERR_ARG: < 0 or
 * more than 1024. */
QLIB_API qlib_status qlib_ctx_set_threads(qlib_ctx *ctx, int n_threads);
/* p is copied; NULL returns to the built-in pool. */
QLIB_API qlib_status qlib_ctx_set_parallel(qlib_ctx *ctx, const qlib_parallel *p);
/* "scalar", "avx2", "avx2-vnni", "avx2-avx512vnni", "avx512", "neon",
 * "neon-dotprod"; NULL = best available.
 * ERR_UNSUPPORTED: unknown name or an ISA this build or CPU lacks. */
QLIB_API qlib_status qlib_ctx_set_isa(qlib_ctx *ctx, const char *isa);
QLIB_API qlib_status qlib_ctx_set_compute(qlib_ctx *ctx, qlib_compute mode);
QLIB_API const char *qlib_ctx_isa(const qlib_ctx *ctx);       /* static string; "" for NULL */
QLIB_API int         qlib_ctx_threads(const qlib_ctx *ctx);   /* effective count; 0 for NULL */
QLIB_API qlib_compute qlib_ctx_compute(const qlib_ctx *ctx);
QLIB_API void        qlib_ctx_destroy(qlib_ctx *ctx);         /* NULL is fine */

/* Progress of long calls (0.2). fn is called on the calling thread, between
 * units of work, with a static stage name ("hessian", "gptq", "awq-scale",
 * "awq-clip", "pack", ...) and the fraction of the call done, in [0, 1],
 * non-decreasing, ending with 1 when the call succeeds. A nonzero return
 * stops the call promptly with QLIB_ERR_CANCELLED: no tensor is made and
 * nothing leaks; the context stays usable. Calls that report: qlib_quantize
 * (and qlib_quantize_shared). A NULL fn removes the callback. */
typedef int (*qlib_progress_fn)(void *user, const char *stage, double fraction);
QLIB_API qlib_status qlib_ctx_set_progress(qlib_ctx *ctx, qlib_progress_fn fn, void *user);

/* ------------------------------------------------- methods and their options */
typedef enum qlib_method {
    QLIB_METHOD_NONE = 0,       /* keep float: bits 32 or 16 */
    QLIB_METHOD_RTN = 1,        /* round to nearest: INT8 / INT4 / INT3 / INT2 */
    QLIB_METHOD_GPTQ = 2,
    QLIB_METHOD_AWQ = 3,
    QLIB_METHOD_LLM_INT8 = 4
} qlib_method;

typedef enum qlib_param {
    QLIB_PARAM_BITS = 1,               /* int: 2, 3, 4, 8 (16, 32 with NONE) */
    QLIB_PARAM_GROUP_SIZE = 2,         /* int: weights per group along K, a positive
                                          multiple of 32; 0 = one group per row;
                                          -1 = one group for the whole tensor */
    QLIB_PARAM_SYMMETRIC = 3,          /* int 0/1: no zero point */
    QLIB_PARAM_CLIP_GRID = 5,          /* int in [0, 1000], RTN and GPTQ (0.2): 0 = off (the
                                          default); else each group's range is shrunk by
                                          1 - i/grid * AWQ_MAX_SHRINK, i = 0 .. grid-1, and
                                          the least error kept (docs/ALGORITHMS.md) */
    QLIB_PARAM_GPTQ_DAMP = 10,         /* float in [0, 1]: default 0.01 of mean(diag H) */
    QLIB_PARAM_GPTQ_BLOCK_SIZE = 11,   /* int in [1, 4096]: default 128 */
    QLIB_PARAM_GPTQ_ACT_ORDER = 12,    /* int 0/1: columns by decreasing diag(H) */
    QLIB_PARAM_GPTQ_STATIC_GROUPS = 13,/* int 0/1: group parameters from the unmodified W */
    QLIB_PARAM_AWQ_GRID = 20,          /* int in [1, 1000]: default 20 */
    QLIB_PARAM_AWQ_CLIP = 21,          /* int 0/1: default 1 */
    QLIB_PARAM_AWQ_MAX_SHRINK = 22,    /* float in [0, 0.95]: default 0.5; also the range
                                          of CLIP_GRID's search (RTN and GPTQ, 0.2) */
    QLIB_PARAM_AWQ_ROUNDING = 23,      /* int (0.2): 0 = round to nearest (the default);
                                          1 = GPTQ on the AWQ-scaled weights, which needs a
                                          calibration with QLIB_CALIB_HESSIAN too */
    QLIB_PARAM_AWQ_SCALES = 24,        /* int (0.2): the scales AWQ's grid searches: 0 = s =
                                          mean|x|^alpha (the AWQ paper's, the default);
                                          1 = AutoAWQ's "duo" scales, mean|x|^alpha /
                                          wbar^(1-alpha); 2 = both, 2 x AWQ_GRID candidates
                                          (docs/ALGORITHMS.md) */
    QLIB_PARAM_OUTLIER_THRESHOLD = 30  /* float: LLM.int8(), default 6.0; <= 0 disables */
} qlib_param;

typedef struct qlib_config qlib_config;
/* A config holding the method's defaults. ERR_ARG: unknown method. */
QLIB_API qlib_status qlib_config_create(qlib_method method, qlib_config **out);
/* ERR_ARG: value out of range (the config is unchanged);
 * ERR_UNSUPPORTED: unknown parameter, or not one of this method's. */
QLIB_API qlib_status qlib_config_set_int(qlib_config *c, qlib_param p, int value);
QLIB_API qlib_status qlib_config_set_float(qlib_config *c, qlib_param p, float value);
QLIB_API qlib_status qlib_config_get_int(const qlib_config *c, qlib_param p, int *value);
QLIB_API qlib_status qlib_config_get_float(const qlib_config *c, qlib_param p, float *value);
QLIB_API qlib_method qlib_config_method(const qlib_config *c);
/* "none", "rtn", "gptq", "awq", "llm-int8"; "unknown" for other values. A
 * static string (0.2). */
QLIB_API const char *qlib_method_name(qlib_method m);
QLIB_API void        qlib_config_destroy(qlib_config *c);      /* NULL is fine */

/* ------------------------------------------------------------ calibration */
typedef struct qlib_calib qlib_calib;
enum {
    QLIB_CALIB_HESSIAN = 1,    /* H = 2/n * sum x x^T  (K x K)       - GPTQ */
    QLIB_CALIB_ACT_STATS = 2,  /* per-channel mean |x| and max |x|  - AWQ, reports */
    QLIB_CALIB_SAMPLES = 4,    /* reservoir of up to max_samples token rows, fixed seed - AWQ */
    QLIB_CALIB_ALL = 7
};
/* What GPTQ / AWQ learn from one layer's input activations (k features).
 * The calib keeps a reference to ctx (its allocator and threads): ctx must
 * outlive it. ERR_ARG: k == 0, what == 0 or has unknown bits, SAMPLES with
 * max_samples == 0, a Hessian or sample reservoir whose size overflows.
 * ERR_UNSUPPORTED: k > INT_MAX (beyond what BLAS takes). ERR_NOMEM. */
QLIB_API qlib_status qlib_calib_create(qlib_ctx *ctx, size_t k, unsigned what,
                                       size_t max_samples, qlib_calib **out);
/* Streams n_tokens rows of x (row stride ldx >= k). ERR_SHAPE: ldx < k.
 * ERR_ARG: NULL, n_tokens == 0, ldx > INT_MAX or an overflowing span.
 * ERR_NUMERIC: NaN/Inf in x (nothing of this batch is kept). */
QLIB_API qlib_status qlib_calib_add(qlib_calib *c, const float *x, size_t n_tokens, size_t ldx);
QLIB_API size_t      qlib_calib_tokens(const qlib_calib *c);   /* 0 for NULL */
QLIB_API size_t      qlib_calib_k(const qlib_calib *c);        /* 0 for NULL */
/* Copies per-channel mean |x| and max |x| (k floats each; either may be
 * NULL). ERR_STATE: no ACT_STATS or no tokens seen. */
QLIB_API qlib_status qlib_calib_act_stats(const qlib_calib *c, float *mean_abs, float *max_abs);
/* Copies H (k x k, row stride ldh >= k). ERR_STATE: no HESSIAN or no tokens. */
QLIB_API qlib_status qlib_calib_hessian(const qlib_calib *c, float *h, size_t ldh);
QLIB_API void        qlib_calib_destroy(qlib_calib *c);        /* NULL is fine */

/* ---------------------------------------------------- quantized tensors */
typedef struct qlib_tensor qlib_tensor;
/* Quantizes w (n x k, row stride ldw >= k, like an nn.Linear weight) with
 * cfg. calib is required by GPTQ (HESSIAN) and AWQ (ACT_STATS + SAMPLES; and
 * HESSIAN with AWQ_ROUNDING 1); RTN reads its ACT_STATS, if any, to weight
 * the CLIP_GRID search (0.2); other methods ignore it. NULL is fine where
 * it is not required; when read, its k must equal k.
 * Errors: ARG (NULL, zero or overflowing sizes, ldw < k), SHAPE (calib k),
 * NUMERIC (NaN/Inf in w, Hessian not positive definite), STATE (calib lacks
 * what the method needs or saw no tokens), NOMEM. The tensor does not keep a
 * reference to ctx, w, cfg or calib. */
QLIB_API qlib_status qlib_quantize(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                   const qlib_config *cfg, const qlib_calib *calib,
                                   qlib_tensor **out);
/* count matrices that read the same input (q/k/v; gate/up), quantized
 * together with one cfg and calib (0.2): w[i] is n[i] x k with row stride
 * ldw[i] >= k; the tensors go to out[0 .. count-1]. AWQ searches ONE set of
 * input scales on the joint output error of the count matrices (clipping
 * stays per group of each), so every out[i] has the same input scales; GPTQ
 * factors the Hessian once and gives the tensors separate qlib_quantize
 * calls give, bit for bit, as do RTN and the other methods. All out[i] are
 * made, or none: on failure every out[i] is NULL. Progress (if set) runs
 * once from 0 to 1 over the whole call. Errors as qlib_quantize, and ARG:
 * out, w, n or ldw NULL, count 0, a w[i] NULL, an n[i] 0, an ldw[i] < k. */
QLIB_API qlib_status qlib_quantize_shared(qlib_ctx *ctx, size_t count, const float *const *w,
                                          const size_t *n, size_t k, const size_t *ldw,
                                          const qlib_config *cfg, const qlib_calib *calib,
                                          qlib_tensor **out);
/* Writes the N x K effective weights W^ in the original input space (AWQ
 * scales and act-order permutation undone), so that qlib_matmul(x) equals
 * x * W^T up to rounding. ldw >= K. */
QLIB_API qlib_status qlib_dequantize(qlib_ctx *ctx, const qlib_tensor *t, float *w, size_t ldw);
/* Rows row0 .. row0 + count - 1 of the effective weights (as qlib_dequantize
 * writes them, bit for bit) into w, count x K with leading dimension ldw >= K
 * (0.2): e.g. the rows of a quantized token embedding for the tokens of a
 * batch. ERR_ARG: a NULL argument, count 0, rows past N, ldw < K, a size
 * that overflows; ERR_NOMEM: scratch for a permuted or input-scaled tensor. */
QLIB_API qlib_status qlib_dequantize_rows(qlib_ctx *ctx, const qlib_tensor *t, size_t row0,
                                          size_t count, float *w, size_t ldw);
QLIB_API void        qlib_tensor_destroy(qlib_tensor *t);                 /* NULL is fine */
QLIB_API size_t      qlib_tensor_rows(const qlib_tensor *t);              /* N; 0 for NULL */
QLIB_API size_t      qlib_tensor_cols(const qlib_tensor *t);              /* K; 0 for NULL */
QLIB_API qlib_method qlib_tensor_method(const qlib_tensor *t);
QLIB_API int         qlib_tensor_bits(const qlib_tensor *t);
QLIB_API int         qlib_tensor_group_size(const qlib_tensor *t);        /* as configured: -1, 0, G */
QLIB_API int         qlib_tensor_symmetric(const qlib_tensor *t);
/* Bytes of codes, scales, zeros, permutation and input scales (not the
 * serialization header or alignment padding). */
QLIB_API size_t      qlib_tensor_storage_bytes(const qlib_tensor *t);
QLIB_API double      qlib_tensor_bits_per_weight(const qlib_tensor *t);  /* storage_bytes*8/(N*K) */
/* tr(dW H dW^T)/tr(W H W^T) when quantized with a Hessian, else
 * ||dW||^2/||W||^2 (0 for NONE at 32 bits). */
QLIB_API double      qlib_tensor_quant_error(const qlib_tensor *t);
/* AWQ: the K floats x is multiplied by (1/s); NULL for other methods and for
 * AWQ tensors without them (folded or imported, 0.2). Owned by the tensor. */
QLIB_API const float *qlib_tensor_input_scales(const qlib_tensor *t);
/* GPTQ act-order: perm[j] is the original input column stored at position j;
 * NULL when there is no permutation. Owned by the tensor. */
QLIB_API const int32_t *qlib_tensor_permutation(const qlib_tensor *t);
/* LLM.int8(): the outlier threshold; 0 for other methods. */
QLIB_API float       qlib_tensor_outlier_threshold(const qlib_tensor *t);

/* y[m x n] = x[m x k] * W^T, row-major. ERR_SHAPE: ldx < K or ldy < N.
 * ERR_ARG: NULL, m == 0, y overlapping x, overflowing sizes. ERR_NUMERIC:
 * NaN/Inf in x (y is then left unspecified). */
QLIB_API qlib_status qlib_matmul(qlib_ctx *ctx, const qlib_tensor *w, const float *x, size_t m,
                                 size_t ldx, float *y, size_t ldy);

/* ---------------------------------------------------------- serialization */
/* One tensor per blob; the layout is docs/FORMAT.md. */
enum { QLIB_LOAD_BORROW = 1 };  /* the tensor points into the caller's buffer
                                   (e.g. mmap): no copy. The buffer must be
                                   64-byte aligned and outlive the tensor. */
QLIB_API qlib_status qlib_tensor_serialized_size(const qlib_tensor *t, size_t *bytes);
/* ERR_ARG: cap smaller than the serialized size (nothing written). */
QLIB_API qlib_status qlib_tensor_serialize(const qlib_tensor *t, void *buf, size_t cap,
                                           size_t *written);
/* ERR_FORMAT: bad magic, unknown version, truncated, inconsistent header,
 * checksum mismatch. ERR_ARG: unknown flag bits; BORROW with a misaligned
 * buffer. */
QLIB_API qlib_status qlib_tensor_deserialize(qlib_ctx *ctx, const void *buf, size_t len,
                                             unsigned flags, qlib_tensor **out);
/* Atomic and durable: writes <path>.tmp.<pid>.<random>, fsyncs it, renames
 * it over path and fsyncs the directory. On failure the temporary file is
 * removed (a killed process leaves it; it may be deleted). ERR_IO names the
 * step that failed. */
QLIB_API qlib_status qlib_tensor_save(const qlib_tensor *t, const char *path);
QLIB_API qlib_status qlib_tensor_load(qlib_ctx *ctx, const char *path, qlib_tensor **out);

/* ------------------------------------------------- standard layouts (0.2) */
/* A tensor in the layouts other programs read: parts of raw little-endian
 * data, each part one array of a checkpoint (docs/FORMATS.md states every
 * byte). W is N x K like an nn.Linear weight; fp16 is IEEE binary16.
 *  - GGML_Q4_0: part 0, N rows of K/32 blocks of 18 bytes (fp16 d, 16 bytes
 *    of nibbles): weight i of a block is ((qs[i] & 15) - 8) * d, weight
 *    i + 16 is ((qs[i] >> 4) - 8) * d.
 *  - GGML_Q8_0: part 0, N rows of K/32 blocks of 34 bytes (fp16 d, 32 int8
 *    qs): weight i is qs[i] * d.
 *  - GPTQ (AutoGPTQ / GPTQModel format "gptq", v1): part 0 qweight int32
 *    [K*bits/32][N] (the codes of input rows along each column, lowest bits
 *    first; 3 bits as one bit stream), part 1 qzeros int32 [G][N*bits/32]
 *    (zero point - 1, packed the same way along N), part 2 scales fp16
 *    [G][N], part 3 g_idx int32 [K] (the group of each input column).
 *    W[c][r] = scales[g][c] * (q(r, c) - (qzeros(g, c) + 1)), g = g_idx[r].
 *  - AWQ_GEMM (AutoAWQ "gemm"): part 0 qweight int32 [K][N/8], part 1
 *    qzeros int32 [G][N/8], part 2 scales fp16 [G][N]; word j of a row holds
 *    output columns 8j + {0, 2, 4, 6, 1, 3, 5, 7} in nibbles 0..7.
 *    W[c][r] = (q - z) * s, group r / group_size.
 * G is the number of groups along K: ceil(K / group_size), or 1 when the
 * checkpoint has one group per output column (group_size -1 or 0). */
typedef enum qlib_layout {
    QLIB_LAYOUT_GGML_Q4_0 = 1,  /* ggml block_q4_0 */
    QLIB_LAYOUT_GGML_Q8_0 = 2,  /* ggml block_q8_0 */
    QLIB_LAYOUT_GPTQ = 3,       /* AutoGPTQ / GPTQModel checkpoint format "gptq" (v1) */
    QLIB_LAYOUT_AWQ_GEMM = 4    /* AutoAWQ "gemm" checkpoint format */
} qlib_layout;
#define QLIB_LAYOUT_MAX_PARTS 4

/* Bytes of each part of t in layout (parts the layout does not use: 0).
 * Writing is exact: importing the parts again gives a tensor with t's
 * qlib_dequantize bit for bit (and t's qlib_matmul, except for the order of
 * columns within a group of an act-order tensor: docs/FORMATS.md).
 * ERR_UNSUPPORTED, with the reason in qlib_last_error(), when the layout
 * cannot hold t exactly: a float tensor; an LLM.int8() tensor with outlier
 * decomposition; input scales (qlib_tensor_fold_input_scales first); for
 * GGML, another bit width than 4 (Q4_0) or 8 (Q8_0), zero points, K not a
 * multiple of 32, or a permutation; for GPTQ, K * bits or N * bits not a
 * multiple of 32, or a zero point of 0 (stored as zero - 1, it wraps); for
 * AWQ_GEMM, other than 4 bits, N not a multiple of 8, K not a multiple of
 * the group size, or a permutation; also an unknown layout value. ERR_ARG:
 * t or part_bytes NULL. On failure every part_bytes[i] is 0. */
QLIB_API qlib_status qlib_tensor_export_size(const qlib_tensor *t, qlib_layout layout,
                                             size_t part_bytes[4]);
/* Writes t in layout into the caller's buffers: part i gets exactly the
 * size qlib_tensor_export_size gives (part_bytes[i] is its capacity, at
 * least that; bytes past it are left alone). The parts of unused indices are
 * ignored (NULL is fine). ERR_UNSUPPORTED as qlib_tensor_export_size;
 * ERR_ARG: t, parts or part_bytes NULL, a used part NULL, smaller than
 * needed, or overlapping another; ERR_NOMEM: scratch for an act-order
 * tensor (from t's allocator). Nothing is kept. */
QLIB_API qlib_status qlib_tensor_export(const qlib_tensor *t, qlib_layout layout,
                                        void *const parts[4], const size_t part_bytes[4]);
/* A new tensor (owned by the caller: qlib_tensor_destroy) from parts in
 * layout, copied (parts are not kept). n x k is the weight's shape; bits and
 * group_size as the layout's metadata says (group_size -1 or 0 where the
 * checkpoint has one group per output column). qlib_dequantize of the
 * result equals the layout's dequantization above computed in fp32, bit for
 * bit, and exporting it gives the same bytes back.
 *  - GGML: bits 4 (Q4_0) or 8 (Q8_0); group_size 32, or a multiple of 32, 0
 *    or -1 when every block of such a group carries the same d (to restore
 *    a tensor written from those groups). Method RTN, symmetric.
 *  - GPTQ: bits 2, 3, 4 or 8; method GPTQ, symmetric when every zero point
 *    is 2^(bits-1); a g_idx that is not grouped in order becomes the
 *    act-order permutation (each group's columns in increasing order).
 *  - AWQ_GEMM: bits 4; method AWQ without input scales, symmetric when every
 *    zero point is 8.
 * The tensor's quant_error is 0 (unknown). part_bytes[i] must be exactly the
 * part's size; parts of unused indices are ignored.
 * ERR_ARG: ctx, parts, part_bytes or out NULL, a used part NULL, n or k 0,
 * sizes that overflow, bits not the layout's, group_size < -1, a shape the
 * packing cannot fill (GGML: k % 32; GPTQ: k * bits or n * bits % 32; AWQ:
 * n % 8, or k not a multiple of group_size). ERR_UNSUPPORTED: unknown
 * layout, n or k above INT32_MAX, a group_size that is not a multiple of 32,
 * a GPTQ zero point of 2^bits (stored 2^bits - 1) or a g_idx whose groups
 * qlib cannot hold (each group needs group_size columns, the last the
 * rest). ERR_FORMAT: a part of the wrong size, an fp16 scale that is Inf or
 * NaN, a g_idx value out of range, GGML blocks of one group with different
 * d. ERR_NOMEM. On failure *out is NULL; nothing of the parts is kept. */
QLIB_API qlib_status qlib_tensor_import(qlib_ctx *ctx, qlib_layout layout, size_t n, size_t k,
                                        int bits, int group_size, const void *const parts[4],
                                        const size_t part_bytes[4], qlib_tensor **out);
/* Folding AWQ's input scales into the previous operation (0.2): *out is a
 * new tensor (the caller's; qlib_tensor_destroy) without input scales, whose
 * codes, scales, zero points and quant_error are t's, and s (k floats,
 * written by the call) holds s[c] = 1 / input_scales(t)[c]: the caller now
 * divides input column c by s[c] (folds 1/s into an RMSNorm weight or the
 * rows of the previous linear layer). qlib_matmul(*out, x') equals
 * qlib_matmul(t, x) bit for bit when x'[c] = x[c] * input_scales(t)[c] in
 * fp32; with x'[c] = x[c] / s[c] it agrees up to that rounding. *out can be
 * exported where its bits and groups allow. ERR_ARG: a NULL argument;
 * ERR_STATE: t has no input scales; ERR_NUMERIC: an input scale whose
 * reciprocal overflows fp32; ERR_NOMEM. On failure *out is NULL and s is
 * untouched. */
QLIB_API qlib_status qlib_tensor_fold_input_scales(qlib_ctx *ctx, const qlib_tensor *t, float *s,
                                                   qlib_tensor **out);

#ifdef __cplusplus
}
#endif
#endif /* QLIB_H */
