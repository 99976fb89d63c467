/* make bench-ggml GGML_DIR=<a ggml checkout>: qlib side by side with ggml's
 * CPU backend and OpenBLAS, in one process, on the layers of a 7B model.
 *
 * ggml is not part of this tree: the make rule builds the given checkout
 * with its own cmake into build/ggml (-march=native, its CPU repack on,
 * llamafile's tinyBLAS on as llama.cpp ships it) and links this program
 * against it. What is timed, per shape, M and thread count:
 *
 *   fp32     OpenBLAS sgemv (M = 1) or sgemm
 *   q4_0     ggml Q4_0 in a plain CPU buffer; q4_0r in ggml's CPU_REPACK
 *            buffer (ggml repacks Q4_0 to 8x8 interleaved blocks on AVX2)
 *   q4_K     ggml Q4_K, plain and repacked (q4_Kr)
 *   q8_0     ggml Q8_0 (not repacked on x86)
 *   g32 g128 qlib RTN INT4, asymmetric, groups of 32 and 128
 *   i8       qlib RTN INT8, symmetric, one scale per output channel
 *
 * each through its library's own entry point (ggml_backend_graph_compute of
 * one MUL_MAT node, with ggml's own quantization of x inside it, as qlib's
 * matmul quantizes x). Rounds interleave the products call by call, so all
 * see the same state of a shared machine; 1-thread rows are timed in the
 * calling thread's CPU time, 2-thread rows in wall-clock time, and a cell
 * is the median of all its calls. Hot:
 * the same weights every call (what fits stays in the 32 MB L3). Streamed:
 * every call on the next of several copies, at least 256 MB per product,
 * so the weights come from memory, as in decoding a model larger than the
 * cache.
 *
 * Every product's result is checked against the fp32 one (and sgemm's
 * against double precision on a few rows): the run fails when a relative
 * error exceeds a bound derived from the product's bits (err_bound).
 *
 * BENCH_GGML_QUICK=1 runs M = 1, 8, 128 with fewer rounds;
 * BENCH_GGML_SHAPES=4096x4096,... and BENCH_GGML_M=1,2,... choose cells;
 * BENCH_GGML_THREADS=1 or 2 only one thread count. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "qlib.h"
#include "host.h"
#include "rng.h"

#ifndef GGML_COMMIT
#define GGML_COMMIT "unknown"
#endif

#define COLD_BYTES ((size_t)256 << 20)
#define MAX_COPIES 64
#define MAX_M 512

/* One-thread rows are timed in this thread's CPU time, which other
 * processes on a shared machine do not inflate (all three libraries run a
 * 1-thread product on the calling thread); 2-thread rows in wall-clock
 * time. */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(bench_clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-ggml: %s\n", what);
    exit(1);
}

static void qcheck(qlib_status s, const char *what)
{
    if (s != QLIB_OK) {
        fprintf(stderr, "bench-ggml: %s: %s (%s)\n", what, qlib_status_string(s),
                qlib_last_error());
        exit(1);
    }
}

static void *xmalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) die("out of memory");
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- data, as bench.c makes it ---- */

static uint64_t rng_state = 0x6767686c6cull;
static float normal(void) { return (float)rng_normal(&rng_state); }

/* Weights: normal with a heavy tail (every 97th weight x8), scale 0.02. */
static float *make_weights(size_t n, size_t k)
{
    float *w = xmalloc(n * k * sizeof *w);
    for (size_t i = 0; i < n * k; i++) w[i] = 0.02f * normal() * (i % 97 == 5 ? 8.0f : 1.0f);
    return w;
}

/* Activations: a rank-64 mixture plus noise, channel scales varying 10x,
 * every 64th channel an outlier (x4). */
static float *make_acts(size_t m, size_t k)
{
    size_t rank = 64;
    float *basis = xmalloc(rank * k * sizeof *basis), *x = xmalloc(m * k * sizeof *x);
    for (size_t i = 0; i < rank * k; i++) basis[i] = normal();
    for (size_t i = 0; i < m; i++) {
        float c[64];
        for (size_t r = 0; r < rank; r++) c[r] = normal() / 8.0f;
        for (size_t j = 0; j < k; j++) {
            float v = 0.3f * normal();
            for (size_t r = 0; r < rank; r++) v += c[r] * basis[r * k + j];
            x[i * k + j] = v * (0.3f + (float)(j % 10) * 0.1f) * (j % 64 == 11 ? 4.0f : 1.0f);
        }
    }
    free(basis);
    return x;
}

/* ---- the products ---- */

enum { LIB_BLAS, LIB_GGML, LIB_QLIB };
enum { P_F32, P_Q4_0, P_Q4_0R, P_Q4_K, P_Q4_KR, P_Q8_0, P_G32, P_G128, P_I8, N_PROD };

typedef struct prod_info {
    const char *name;
    int lib, bits;
    enum ggml_type type;      /* ggml */
    int repack;               /* ggml: in the CPU_REPACK buffer */
    int group;                /* qlib */
} prod_info;

static const prod_info prods[N_PROD] = {
    { "fp32", LIB_BLAS, 32, GGML_TYPE_F32, 0, 0 },
    { "q4_0", LIB_GGML, 4, GGML_TYPE_Q4_0, 0, 0 },
    { "q4_0r", LIB_GGML, 4, GGML_TYPE_Q4_0, 1, 0 },
    { "q4_K", LIB_GGML, 4, GGML_TYPE_Q4_K, 0, 0 },
    { "q4_Kr", LIB_GGML, 4, GGML_TYPE_Q4_K, 1, 0 },
    { "q8_0", LIB_GGML, 8, GGML_TYPE_Q8_0, 0, 0 },
    { "g32", LIB_QLIB, 4, GGML_TYPE_F32, 0, 32 },
    { "g128", LIB_QLIB, 4, GGML_TYPE_F32, 0, 128 },
    { "i8", LIB_QLIB, 8, GGML_TYPE_F32, 0, 0 },
};

typedef struct product {
    size_t copies, bytes;               /* bytes of one copy's weights */
    float *w32[MAX_COPIES];
    struct ggml_context *gctx[MAX_COPIES];
    ggml_backend_buffer_t gbuf[MAX_COPIES];
    struct ggml_tensor *gw[MAX_COPIES];
    qlib_tensor *qt[MAX_COPIES];
    int available;
} product;

typedef struct bench {
    size_t n, k;
    float *x, *y;                      /* MAX_M x k, MAX_M x n */
    float *yref;                       /* the fp32 product of the cell being checked */
    ggml_backend_t ggml;
    ggml_backend_buffer_type_t repack_buft;   /* NULL when ggml has none */
    ggml_backend_buffer_t xbuf, ybuf;  /* ggml views of x and y */
    qlib_ctx *qctx[3];                 /* by thread count */
    product p[N_PROD];
    _Alignas(64) uint8_t graph_mem[1 << 16];
} bench;

static size_t copies_for(size_t bytes)
{
    size_t c = COLD_BYTES / bytes + 1;
    return c > MAX_COPIES ? MAX_COPIES : c;
}

static ggml_backend_buffer_type_t find_repack_buft(void)
{
    ggml_backend_reg_t reg = ggml_backend_cpu_reg();
    ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, 0);
    ggml_backend_dev_get_extra_bufts_t get = (ggml_backend_dev_get_extra_bufts_t)
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
    if (!get) return NULL;
    for (ggml_backend_buffer_type_t *b = get(dev); b && *b; b++)
        if (strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) return *b;
    return NULL;
}

static void ggml_weights(bench *b, product *p, const prod_info *pi, const float *w, int stream)
{
    size_t row = ggml_row_size(pi->type, (int64_t)b->k), bytes = row * b->n;
    void *q = xmalloc(bytes);
    ggml_quantize_chunk(pi->type, w, q, 0, (int64_t)b->n, (int64_t)b->k, NULL);
    ggml_backend_buffer_type_t buft = pi->repack ? b->repack_buft : ggml_backend_cpu_buffer_type();
    p->bytes = bytes;
    p->copies = stream ? copies_for(bytes) : 1;
    for (size_t c = 0; c < p->copies; c++) {
        struct ggml_init_params ip = { ggml_tensor_overhead() * 2, NULL, true };
        p->gctx[c] = ggml_init(ip);
        p->gw[c] = ggml_new_tensor_2d(p->gctx[c], pi->type, (int64_t)b->k, (int64_t)b->n);
        p->gbuf[c] = ggml_backend_alloc_ctx_tensors_from_buft(p->gctx[c], buft);
        if (!p->gbuf[c]) die("ggml buffer");
        ggml_backend_tensor_set(p->gw[c], q, 0, bytes);   /* repacks in CPU_REPACK */
    }
    free(q);
}

static void qlib_weights(bench *b, product *p, const prod_info *pi, const float *w, int stream)
{
    qlib_config *cfg;
    qlib_tensor *t;
    qcheck(qlib_config_create(QLIB_METHOD_RTN, &cfg), "config");
    qcheck(qlib_config_set_int(cfg, QLIB_PARAM_BITS, pi->bits), "bits");
    qcheck(qlib_config_set_int(cfg, QLIB_PARAM_GROUP_SIZE, pi->group), "group");
    qcheck(qlib_config_set_int(cfg, QLIB_PARAM_SYMMETRIC, pi->bits == 8), "symmetric");
    qcheck(qlib_quantize(b->qctx[1], w, b->n, b->k, b->k, cfg, NULL, &t), "quantize");
    qlib_config_destroy(cfg);
    size_t size, written;
    qcheck(qlib_tensor_serialized_size(t, &size), "serialized_size");
    void *blob = xmalloc(size);
    qcheck(qlib_tensor_serialize(t, blob, size, &written), "serialize");
    p->bytes = qlib_tensor_storage_bytes(t);
    p->copies = stream ? copies_for(p->bytes) : 1;
    p->qt[0] = t;
    for (size_t c = 1; c < p->copies; c++)
        qcheck(qlib_tensor_deserialize(b->qctx[1], blob, written, 0, &p->qt[c]), "deserialize");
    free(blob);
}

static void make_products(bench *b, const float *w, int want_stream)
{
    for (int i = 0; i < N_PROD; i++) {
        product *p = &b->p[i];
        const prod_info *pi = &prods[i];
        memset(p, 0, sizeof *p);
        p->available = 1;
        if (pi->lib == LIB_BLAS) {
            p->bytes = b->n * b->k * sizeof(float);
            p->copies = want_stream ? copies_for(p->bytes) : 1;
            if (p->copies > 8) p->copies = 8;
            for (size_t c = 0; c < p->copies; c++) {
                p->w32[c] = xmalloc(p->bytes);
                memcpy(p->w32[c], w, p->bytes);
            }
        } else if (pi->lib == LIB_GGML) {
            if (pi->repack && !b->repack_buft) {
                p->available = 0;
                continue;
            }
            ggml_weights(b, p, pi, w, want_stream);
        } else {
            qlib_weights(b, p, pi, w, want_stream);
        }
    }
}

static void free_products(bench *b)
{
    for (int i = 0; i < N_PROD; i++) {
        product *p = &b->p[i];
        for (size_t c = 0; c < p->copies; c++) {
            free(p->w32[c]);
            if (p->gbuf[c]) ggml_backend_buffer_free(p->gbuf[c]);
            if (p->gctx[c]) ggml_free(p->gctx[c]);
            qlib_tensor_destroy(p->qt[c]);
        }
        memset(p, 0, sizeof *p);
    }
}

/* One call of product i on copy c with m rows of x and t threads; returns
 * its wall-clock seconds (the graph is built outside the timed part). */
static double run_once(bench *b, int i, size_t c, size_t m, int t)
{
    product *p = &b->p[i];
    const prod_info *pi = &prods[i];
    int n = (int)b->n, k = (int)b->k;
    if (pi->lib == LIB_BLAS) {
        double t0 = now_s();
        if (m == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, p->w32[c], k, b->x, 1, 0.0f,
                        b->y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, n, k, 1.0f, b->x, k,
                        p->w32[c], k, 0.0f, b->y, n);
        return now_s() - t0;
    }
    if (pi->lib == LIB_QLIB) {
        double t0 = now_s();
        qcheck(qlib_matmul(b->qctx[t], p->qt[c], b->x, m, b->k, b->y, b->n), "matmul");
        return now_s() - t0;
    }
    struct ggml_init_params ip = { sizeof b->graph_mem, b->graph_mem, true };
    struct ggml_context *ctx = ggml_init(ip);
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, k, (int64_t)m);
    if (ggml_backend_tensor_alloc(b->xbuf, x, b->x) != GGML_STATUS_SUCCESS) die("ggml x");
    struct ggml_tensor *y = ggml_mul_mat(ctx, p->gw[c], x);
    if (ggml_backend_tensor_alloc(b->ybuf, y, b->y) != GGML_STATUS_SUCCESS) die("ggml y");
    struct ggml_cgraph *gf = ggml_new_graph_custom(ctx, 4, false);
    ggml_build_forward_expand(gf, y);
    ggml_backend_cpu_set_n_threads(b->ggml, t);
    double t0 = now_s();
    if (ggml_backend_graph_compute(b->ggml, gf) != GGML_STATUS_SUCCESS) die("ggml compute");
    double dt = now_s() - t0;
    ggml_free(ctx);
    return dt;
}

/* ---- correctness ---- */

/* The relative error ||y - yref|| / ||yref|| a b-bit product may not
 * exceed. Every format here rounds a weight to a grid whose step is at most
 * 2 amax_r / (2^b - 2) (amax_r the largest |w| of its row: a group's range
 * is at most 2 amax_r; symmetric formats with 2^b - 1 or 2^b - 2 steps over
 * [-amax_g, amax_g] are covered too), and x to int8 with a step of at most
 * amax_B / 127 over blocks B of at most 256 values. Errors of independent
 * roundings, uniform within half a step, give E|dy_ir|^2 = sum_j x_ij^2
 * step_r^2 / 12 + sum_j w_rj^2 step_x_ij^2 / 12; the bound is three times
 * the square root of that sum over the whole product, relative to |yref|:
 * a product that is wrong (a lost zero point, a row mixed up) is off by far
 * more. fp32 results (OpenBLAS) are held to 1e-4 against double. */
static double err_bound(const bench *b, int bits, size_t m, const double *row_amax,
                        const double *col_sq, double yref_sq)
{
    if (bits >= 32) return 1e-4;
    double levels = (double)((1u << bits) - 2u), e = 0.0;
    size_t n = b->n, k = b->k;
    for (size_t i = 0; i < m; i++) {
        const float *x = b->x + i * k;
        double xsq = 0.0;
        for (size_t j = 0; j < k; j++) xsq += (double)x[j] * x[j];
        for (size_t r = 0; r < n; r++) {
            double step = 2.0 * row_amax[r] / levels;
            e += xsq * step * step / 12.0;
        }
        for (size_t j0 = 0; j0 < k; j0 += 256) {
            size_t j1 = j0 + 256 < k ? j0 + 256 : k;
            double amax = 0.0;
            for (size_t j = j0; j < j1; j++) amax = fmax(amax, fabs((double)x[j]));
            double sx = amax / 127.0;
            for (size_t j = j0; j < j1; j++) e += col_sq[j] * sx * sx / 12.0;
        }
    }
    return 3.0 * sqrt(e / yref_sq);
}

static double rel_err(const float *y, const float *yref, size_t count, double *yref_sq)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < count; i++) {
        double d = (double)y[i] - yref[i];
        num += d * d;
        den += (double)yref[i] * yref[i];
    }
    if (yref_sq) *yref_sq = den;
    return sqrt(num / den);
}

/* Runs every product once at m rows and checks it; prints one line of
 * relative errors. Returns 0 on a failure. */
static int check_cell(bench *b, const float *w, size_t m, const double *row_amax,
                      const double *col_sq, double errs[N_PROD], double bounds[N_PROD])
{
    size_t n = b->n, k = b->k;
    run_once(b, P_F32, 0, m, 1);
    memcpy(b->yref, b->y, m * n * sizeof(float));
    /* sgemm itself against double on rows 0 and m-1 of x */
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < m; i += (m > 1 ? m - 1 : 1)) {
        for (size_t r = 0; r < n; r++) {
            double s = 0.0;
            for (size_t j = 0; j < k; j++) s += (double)b->x[i * k + j] * w[r * k + j];
            double d = (double)b->yref[i * n + r] - s;
            num += d * d;
            den += s * s;
        }
        if (m == 1) break;
    }
    int ok = 1;
    errs[P_F32] = sqrt(num / den);
    bounds[P_F32] = err_bound(b, 32, m, NULL, NULL, 1.0);
    if (!(errs[P_F32] <= bounds[P_F32])) ok = 0;
    double ysq;
    rel_err(b->yref, b->yref, m * n, &ysq);
    for (int i = 1; i < N_PROD; i++) {
        if (!b->p[i].available) {
            errs[i] = -1.0;
            continue;
        }
        memset(b->y, 0, m * n * sizeof(float));
        run_once(b, i, 0, m, 1);
        errs[i] = rel_err(b->y, b->yref, m * n, NULL);
        double bound = bounds[i] = err_bound(b, prods[i].bits, m, row_amax, col_sq, ysq);
        if (!(errs[i] <= bound)) {
            fprintf(stderr, "bench-ggml: %s at %zux%zu, M = %zu: relative error %.3g > bound %.3g\n",
                    prods[i].name, n, k, m, errs[i], bound);
            ok = 0;
        }
    }
    return ok;
}

/* ---- timing ---- */

typedef struct cell {
    double hot[N_PROD], cold[N_PROD];   /* median seconds; 0 = not measured */
} cell;

static int reps_for(size_t m, int quick)
{
    int r = m >= 512 ? 2 : m >= 128 ? 3 : 7;
    return quick && r > 3 ? 3 : r;
}

/* rounds x reps calls of each available product, interleaved call by call;
 * stream: each call on the next copy. */
static void time_cell(bench *b, size_t m, int t, int stream, int rounds, int reps, double *out)
{
    static double samples[N_PROD][64];
    size_t ns = 0, next[N_PROD] = { 0 };
    for (int i = 0; i < N_PROD; i++)
        if (b->p[i].available) run_once(b, i, 0, m, t);   /* warm-up */
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < reps; k++, ns++)
            for (int i = 0; i < N_PROD; i++) {
                if (!b->p[i].available) continue;
                size_t c = 0;
                if (stream) {
                    c = next[i];
                    next[i] = (next[i] + 1) % b->p[i].copies;
                }
                samples[i][ns] = run_once(b, i, c, m, t);
            }
    for (int i = 0; i < N_PROD; i++) {
        if (!b->p[i].available) {
            out[i] = 0.0;
            continue;
        }
        qsort(samples[i], ns, sizeof(double), cmp_double);
        out[i] = samples[i][ns / 2];
    }
}

static double best4(const double *t)
{
    double best = 0.0;
    for (int i = P_Q4_0; i <= P_Q4_KR; i++)
        if (t[i] > 0.0 && (best == 0.0 || t[i] < best)) best = t[i];
    return best;
}

static void print_header(void)
{
    printf("| N x K | M | T | fp32 | q4_0 | q4_0r | q4_K | q4_Kr | q8_0 | g32 | g128 | i8 "
           "| g128 vs best 4-bit | g32 vs best 4-bit | i8 vs q8_0 |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
}

static void print_row(const bench *b, size_t m, int t, const double *v)
{
    printf("| %zux%zu | %zu | %d |", b->n, b->k, m, t);
    for (int i = 0; i < N_PROD; i++) {
        if (v[i] > 0.0) printf(" %.3f |", v[i] * 1e3);
        else printf(" - |");
    }
    double bq = best4(v);
    printf(" %.2f | %.2f | %.2f |\n", bq / v[P_G128], bq / v[P_G32], v[P_Q8_0] / v[P_I8]);
    fflush(stdout);
}

/* ---- options ---- */

typedef struct options {
    size_t shapes[3][2], n_shapes;
    size_t ms[8], n_ms;
    int threads[2], n_threads;
    int quick;
} options;

static void parse_options(options *o)
{
    static const size_t all_shapes[3][2] = { { 4096, 4096 }, { 11008, 4096 }, { 4096, 11008 } };
    static const size_t all_m[] = { 1, 2, 4, 8, 16, 128, 512 }, quick_m[] = { 1, 8, 128 };
    const char *q = getenv("BENCH_GGML_QUICK");
    o->quick = q && *q && strcmp(q, "0") != 0;
    memcpy(o->shapes, all_shapes, sizeof all_shapes);
    o->n_shapes = 3;
    const size_t *m = o->quick ? quick_m : all_m;
    o->n_ms = o->quick ? 3 : 7;
    memcpy(o->ms, m, o->n_ms * sizeof *m);
    o->threads[0] = 1;
    o->threads[1] = 2;
    o->n_threads = 2;
    const char *s = getenv("BENCH_GGML_SHAPES");
    if (s && *s) {
        o->n_shapes = 0;
        while (*s && o->n_shapes < 3) {
            size_t n, k;
            if (sscanf(s, "%zux%zu", &n, &k) != 2 || !n || !k) die("BENCH_GGML_SHAPES: NxK,...");
            o->shapes[o->n_shapes][0] = n;
            o->shapes[o->n_shapes++][1] = k;
            s = strchr(s, ',');
            if (!s) break;
            s++;
        }
    }
    s = getenv("BENCH_GGML_M");
    if (s && *s) {
        o->n_ms = 0;
        while (*s && o->n_ms < 8) {
            size_t v = strtoul(s, NULL, 10);
            if (v < 1 || v > MAX_M) die("BENCH_GGML_M: values 1..512");
            o->ms[o->n_ms++] = v;
            s = strchr(s, ',');
            if (!s) break;
            s++;
        }
    }
    s = getenv("BENCH_GGML_THREADS");
    if (s && (*s == '1' || *s == '2')) {
        o->threads[0] = *s - '0';
        o->n_threads = 1;
    }
}

/* ---- first-call latency: a qlib call right after other threads ran ---- */

/* A 4096 x 4096 INT4 g128 GEMV on 2 threads (qlib's pool) timed when the
 * call follows: another qlib call (back to back), 2 ms of sleep, a
 * 2-thread ggml call, a 2-thread OpenBLAS call. Medians of 41. */
static void wake_table(bench *b)
{
    static const char *const after[4] = { "another qlib call", "2 ms asleep",
                                          "a 2-thread ggml q4_0r call",
                                          "a 2-thread OpenBLAS sgemv" };
    double s[4][41];
    printf("\n## First-call latency: qlib INT4 g128 GEMV, %zux%zu, 2 threads, after other work "
           "(median of 41, ms)\n\n| the call follows | qlib ms | x back to back |\n|---|---|---|\n",
           b->n, b->k);
    openblas_set_num_threads(2);
    for (int r = 0; r < 41; r++)
        for (int a = 0; a < 4; a++) {
            if (a == 0) run_once(b, P_G128, 0, 1, 2);
            if (a == 1) {
                struct timespec ts = { 0, 2000000 };
                nanosleep(&ts, NULL);
            }
            if (a == 2) run_once(b, b->p[P_Q4_0R].available ? P_Q4_0R : P_Q4_0, 0, 1, 2);
            if (a == 3) run_once(b, P_F32, 0, 1, 2);
            s[a][r] = run_once(b, P_G128, 0, 1, 2);
        }
    openblas_set_num_threads(1);
    double med[4];
    for (int a = 0; a < 4; a++) {
        qsort(s[a], 41, sizeof(double), cmp_double);
        med[a] = s[a][20];
        printf("| %s | %.3f | %.2f |\n", after[a], med[a] * 1e3, med[a] / med[0]);
    }
    fflush(stdout);
}

/* ggml's warnings and errors; not its notes (one per repacked tensor). */
static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

int main(void)
{
    options o;
    parse_options(&o);
    bench *b = xmalloc(sizeof *b);
    memset(b, 0, sizeof *b);
    ggml_log_set(quiet_log, NULL);
    ggml_cpu_init();
    b->ggml = ggml_backend_cpu_init();
    if (!b->ggml) die("ggml_backend_cpu_init");
    b->repack_buft = find_repack_buft();
    for (int t = 1; t <= 2; t++) {
        qcheck(qlib_ctx_create(&b->qctx[t]), "ctx");
        qcheck(qlib_ctx_set_threads(b->qctx[t], t), "threads");
    }
    openblas_set_num_threads(1);
    printf("# qlib %s side by side with ggml %s\n\n", qlib_version_string(), GGML_COMMIT);
    printf("CPU: %s (%d online); qlib ISA: %s; ggml CPU repack: %s; llamafile: %s; AVX512: %d, "
           "AVX512-VNNI: %d, AVX-VNNI: %d\n",
           cpu_model(), (int)sysconf(_SC_NPROCESSORS_ONLN), qlib_ctx_isa(b->qctx[1]),
           b->repack_buft ? "on" : "off", ggml_cpu_has_llamafile() ? "on" : "off",
           ggml_cpu_has_avx512(), ggml_cpu_has_avx512_vnni(), ggml_cpu_has_avx_vnni());
    FILE *lf = fopen("/proc/loadavg", "r");
    char load[128] = "";
    if (lf) {
        if (!fgets(load, sizeof load, lf)) load[0] = 0;
        fclose(lf);
    }
    load[strcspn(load, "\n")] = 0;
    printf("Load average at start: %s\n", load);
    printf("Times: ms, median of every call of a cell (rounds interleave the products call by "
           "call); T = 1 rows in the calling thread's CPU time, T = 2 rows in wall-clock time. "
           "Ratios: ggml time / qlib time (> 1: qlib faster); best 4-bit is the fastest of "
           "q4_0, q4_0r, q4_K, q4_Kr in that row.\n");
    int failed = 0;
    for (size_t si = 0; si < o.n_shapes; si++) {
        b->n = o.shapes[si][0];
        b->k = o.shapes[si][1];
        size_t n = b->n, k = b->k;
        float *w = make_weights(n, k);
        b->x = make_acts(MAX_M, k);
        b->y = xmalloc(MAX_M * n * sizeof(float));
        b->yref = xmalloc(MAX_M * n * sizeof(float));
        b->xbuf = ggml_backend_cpu_buffer_from_ptr(b->x, MAX_M * k * sizeof(float));
        b->ybuf = ggml_backend_cpu_buffer_from_ptr(b->y, MAX_M * n * sizeof(float));
        int stream = 0;
        for (size_t mi = 0; mi < o.n_ms; mi++) stream |= o.ms[mi] <= 16;
        make_products(b, w, stream);
        double *row_amax = xmalloc(n * sizeof(double)), *col_sq = xmalloc(k * sizeof(double));
        for (size_t j = 0; j < k; j++) col_sq[j] = 0.0;
        for (size_t r = 0; r < n; r++) {
            row_amax[r] = 0.0;
            for (size_t j = 0; j < k; j++) {
                double v = w[r * k + j];
                row_amax[r] = fmax(row_amax[r], fabs(v));
                col_sq[j] += v * v;
            }
        }
        printf("\n## %zu x %zu\n\nWeights per copy (MB):", n, k);
        for (int i = 0; i < N_PROD; i++)
            printf(" %s %.1f%s", prods[i].name, (double)b->p[i].bytes / 1e6,
                   i + 1 < N_PROD ? "," : "\n");
        printf("\nRelative error against fp32 (fp32: against double on two rows of x), and "
               "in parentheses the bound it must stay under (err_bound):\n\n"
               "| M |");
        for (int i = 0; i < N_PROD; i++) printf(" %s |", prods[i].name);
        printf("\n|---|");
        for (int i = 0; i < N_PROD; i++) printf("---|");
        printf("\n");
        cell cells[8][2];
        memset(cells, 0, sizeof cells);
        for (size_t mi = 0; mi < o.n_ms; mi++) {
            double errs[N_PROD], bounds[N_PROD];
            if (!check_cell(b, w, o.ms[mi], row_amax, col_sq, errs, bounds)) failed = 1;
            printf("| %zu |", o.ms[mi]);
            for (int i = 0; i < N_PROD; i++) {
                if (errs[i] < 0.0) printf(" - |");
                else printf(" %.3g (%.2g) |", errs[i], bounds[i]);
            }
            printf("\n");
            fflush(stdout);
        }
        for (int ti = 0; ti < o.n_threads; ti++) {
            int t = o.threads[ti];
            openblas_set_num_threads(t);
            bench_clock = t == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
            for (size_t mi = 0; mi < o.n_ms; mi++) {
                size_t m = o.ms[mi];
                int reps = reps_for(m, o.quick), rounds = o.quick ? 2 : 3;
                time_cell(b, m, t, 0, rounds, reps, cells[mi][ti].hot);
                if (m <= 16) time_cell(b, m, t, 1, rounds, reps, cells[mi][ti].cold);
            }
        }
        openblas_set_num_threads(1);
        bench_clock = CLOCK_MONOTONIC;
        printf("\nHot (the same weights every call), ms:\n\n");
        print_header();
        for (int ti = 0; ti < o.n_threads; ti++)
            for (size_t mi = 0; mi < o.n_ms; mi++) print_row(b, o.ms[mi], o.threads[ti], cells[mi][ti].hot);
        if (stream) {
            printf("\nStreamed (every call on another copy of the weights), ms:\n\n");
            print_header();
            for (int ti = 0; ti < o.n_threads; ti++)
                for (size_t mi = 0; mi < o.n_ms; mi++)
                    if (o.ms[mi] <= 16) print_row(b, o.ms[mi], o.threads[ti], cells[mi][ti].cold);
        }
        if (si == 0) wake_table(b);
        free_products(b);
        free(row_amax);
        free(col_sq);
        ggml_backend_buffer_free(b->xbuf);
        ggml_backend_buffer_free(b->ybuf);
        free(w);
        free(b->x);
        free(b->y);
        free(b->yref);
    }
    for (int t = 1; t <= 2; t++) qlib_ctx_destroy(b->qctx[t]);
    ggml_backend_free(b->ggml);
    free(b);
    if (failed) {
        fprintf(stderr, "bench-ggml: a product exceeded its error bound\n");
        return 1;
    }
    return 0;
}
