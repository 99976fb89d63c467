/* Helpers shared by the unit suites: deterministic data that looks like an
 * LLM layer, a counting allocator, a double-precision reference matmul. */
#ifndef QLIB_TESTUTIL_H
#define QLIB_TESTUTIL_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

#include "qlib.h"

/* A test case with a timeout long enough for sanitizers and valgrind. */
TCase *tu_tcase(const char *name);

/* ---- deterministic random numbers (splitmix64) ---- */
typedef struct tu_rng { uint64_t s; } tu_rng;
uint64_t tu_next(tu_rng *r);
double   tu_uniform(tu_rng *r);              /* [0, 1) */
double   tu_normal(tu_rng *r);               /* N(0, 1) */
float   *tu_alloc_floats(size_t n);          /* malloc, aborts the test on failure */

/* Heavy-tailed weights (Student-t like, scale ~0.02), n x k, row stride ldw. */
void tu_llm_weights(tu_rng *r, float *w, size_t n, size_t k, size_t ldw);
/* Activations of low effective rank (rank ~ k/8) plus a few outlier channels
 * (every 1/64th channel scaled by outlier_mag), m x k. Two calls with the
 * same seed_basis but different rng give two samples of one distribution. */
typedef struct tu_act_model {
    size_t k, rank;
    float *basis;          /* rank x k */
    float *channel_scale;  /* k */
} tu_act_model;
void tu_act_model_init(tu_act_model *am, size_t k, float outlier_mag, uint64_t seed);
void tu_act_model_sample(const tu_act_model *am, tu_rng *r, float *x, size_t m, size_t ldx);
void tu_act_model_free(tu_act_model *am);

/* y = x * w^T in double precision (m x n), from w as floats (n x k). */
void tu_ref_matmul(const float *x, size_t m, size_t ldx, const float *w, size_t n, size_t k,
                   size_t ldw, double *y);
/* ||A - B||^2 / ||B||^2 over an m x n block. */
double tu_rel_err_fd(const float *a, size_t lda, const double *b, size_t ldb, size_t m, size_t n);

/* ---- allocator that counts and can fail the n-th allocation ---- */
typedef struct tu_counting {
    size_t allocs, frees, live_bytes_unused;
    long fail_at;          /* fail the allocation with this 1-based index; <= 0 never */
} tu_counting;
qlib_allocator tu_counting_allocator(tu_counting *c);
/* A context with `threads` threads whose allocations count in c (zeroed). */
qlib_ctx *tu_counting_ctx(tu_counting *c, int threads);
/* qlib_quantize on ctx (whose allocator counts in c) with its first, second,
 * ... allocation failing in turn until it succeeds: each failure is NOMEM
 * with a NULL tensor and leaves nothing allocated but the context's scratch,
 * which may grow once; success comes within 100 steps. */
void tu_quantize_alloc_failures(qlib_ctx *ctx, tu_counting *c, const float *w, size_t n, size_t k,
                                const qlib_config *cfg, const qlib_calib *calib);

/* Every kernel table's name, the scalar reference first. Tests run the ones
 * this build and CPU have (qlib_kernels_pick or qlib_ctx_set_isa tells). */
static const char *const tu_isa_names[] = { "scalar", "avx2",         "avx2-vnni",
                                            "avx2-avx512vnni", "avx512", "neon",
                                            "neon-dotprod" };
#define TU_N_ISAS (sizeof tu_isa_names / sizeof tu_isa_names[0])

/* A qlib_context made with defaults; aborts the test on failure. */
qlib_ctx *tu_ctx(int threads, const char *isa);
/* The golden_blobs.txt section whose GPTQ/AWQ checksums this build must
 * reproduce: the linear-algebra backend, the kernels it picked for this CPU
 * (OpenBLAS's core) and the architecture, e.g. "openblas-Haswell x86_64". */
void tu_golden_section(char *buf, size_t len);
/* The golden blobs' fixture (test_golden.c, test_quality.c), from fixed
 * seeds: *w TU_GOLDEN_N x TU_GOLDEN_K LLM-like weights, *x TU_GOLDEN_TOK
 * calibration tokens with outlier channels; both malloc'ed. K is not a
 * multiple of 32 or 64: partial groups, padding. */
#define TU_GOLDEN_N 40
#define TU_GOLDEN_K 200
#define TU_GOLDEN_TOK 96
void tu_golden_fixture(float **w, float **x);
/* Quantizes with a config built from (method, bits, group, sym); asserts OK. */
qlib_tensor *tu_quantize(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                         qlib_method method, int bits, int group, int sym, const qlib_calib *calib);

#endif
