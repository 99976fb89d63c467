/* Shared by the libFuzzer targets of test/fuzz/: an allocator that counts and
 * fails on request, blobs shaped from fuzz bytes, and the checks every loaded
 * tensor must pass. A failed check aborts, which libFuzzer reports as a crash
 * and the replay driver as a failing input. */
#ifndef QLIB_FUZZ_H
#define QLIB_FUZZ_H

#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qlib.h"
#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond) \
    do { if (!(cond)) fz_fail(__FILE__, __LINE__, #cond); } while (0)

static inline void fz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: check failed: %s (qlib_last_error: \"%s\")\n", file, line, what,
            qlib_last_error());
    abort();
}

/* Memory the test itself needs; running out is not the library's fault. */
static inline void *fz_malloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 1) != 0) {
        fprintf(stderr, "fuzz: out of memory for %zu bytes\n", n);
        abort();
    }
    return p;
}

/* ---- files, for the targets that read from a path ---- */

/* A new empty file named <TMPDIR or /tmp>/qlib-fuzz-<tag>-XXXXXX in path. */
static inline void fz_temp_file(char *path, size_t cap, const char *tag)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, cap, "%s/qlib-fuzz-%s-XXXXXX", dir && *dir ? dir : "/tmp", tag);
    int fd = mkstemp(path);
    FZ_CHECK(fd >= 0);
    close(fd);
}

/* path's contents become data[0 .. len). */
static inline void fz_write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FZ_CHECK(fd >= 0);
    FZ_CHECK(len == 0 || write(fd, data, len) == (ssize_t)len);
    FZ_CHECK(close(fd) == 0);
}

/* The llama2 example reports each file it rejects on stderr, and the corpus
 * holds many. Its messages go through stdio, so while quiet they are sent to
 * a null stream; sanitizer reports, written to descriptor 2, still appear
 * (glibc lets stderr be reassigned). */
static inline void fz_quiet(int on)
{
    static FILE *null, *saved;
    if (!null) null = fopen("/dev/null", "w");
    if (on && null) {
        saved = stderr;
        stderr = null;
    } else if (!on && saved) {
        stderr = saved;
        saved = NULL;
    }
}

static inline uint32_t fz_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t fz_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void fz_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void fz_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* ---- an allocator that counts live blocks and fails the n-th allocation ---- */
typedef struct fz_counter {
    long live, count, fail_at;   /* fail_at: 1-based index of the allocation to fail; 0 never */
    int failed;
} fz_counter;

static inline void *fz_counter_alloc(void *user, size_t size, size_t alignment)
{
    fz_counter *c = user;
    void *p = NULL;
    if (++c->count == c->fail_at) {
        c->failed = 1;
        return NULL;
    }
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    c->live++;
    return p;
}

static inline void fz_counter_free(void *user, void *p)
{
    fz_counter *c = user;
    c->live--;
    free(p);
}

static inline void fz_counter_arm(fz_counter *c, long fail_at)
{
    c->count = 0;
    c->fail_at = fail_at;
    c->failed = 0;
}

static inline qlib_ctx *fz_ctx(int threads, fz_counter *counter)
{
    qlib_ctx *ctx = NULL;
    qlib_status s;
    if (counter) {
        qlib_allocator a = QLIB_ALLOCATOR_INIT;
        a.alloc = fz_counter_alloc;
        a.free = fz_counter_free;
        a.user = counter;
        s = qlib_ctx_create_with_allocator(&a, &ctx);
    } else {
        s = qlib_ctx_create(&ctx);
    }
    FZ_CHECK(s == QLIB_OK);
    FZ_CHECK(qlib_ctx_set_threads(ctx, threads) == QLIB_OK);
    return ctx;
}

/* ---- the blob checksum, written from docs/FORMAT.md ---- */
static inline uint64_t fz_rotl(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

static inline uint64_t fz_checksum(const uint8_t *p, size_t total)
{
    const uint64_t k1 = 0x9e3779b97f4a7c15ull, k2 = 0xd6e8feb86659fd93ull;
    uint64_t a[4] = { 0x243f6a8885a308d3ull, 0x13198a2e03707344ull, 0xa4093822299f31d0ull,
                      0x082efa98ec4e6c89ull };
    for (size_t i = 0; i < total / 8; i++) {
        uint64_t w = i == 3 ? 0 : fz_get64(p + 8 * i);   /* word 3 is the checksum field */
        a[i % 4] = fz_rotl((a[i % 4] ^ w) * k1, 31);
    }
    uint64_t h = (uint64_t)total * k2;
    for (int l = 0; l < 4; l++) h = (h ^ a[l]) * k2 + k1;
    h ^= h >> 29;
    h *= k1;
    h ^= h >> 32;
    return h;
}

/* ---- blobs from fuzz bytes ----
 * FZ_RAW      the bytes as they are;
 * FZ_SUM      the checksum recomputed when the declared size allows it;
 * FZ_SHAPE    a header and section table made canonical for a shape read
 *             from the header bytes (sizes capped), contents as given;
 * FZ_VALID    as FZ_SHAPE, contents repaired so that the blob must load. */
enum { FZ_RAW = 0, FZ_SUM = 1, FZ_SHAPE = 2, FZ_VALID = 3 };
#define FZ_HEADER 80u
#define FZ_MAX_ELEMS 8192u     /* N x K of a shaped blob: keeps each input fast */

static inline void fz_fix_checksum(uint8_t *b, size_t len)
{
    if (len < FZ_HEADER) return;
    uint64_t total = fz_get64(b + 16);
    if (total >= FZ_HEADER && total <= len && total % 32 == 0) fz_put64(b + 24, fz_checksum(b, total));
}

/* The shape a header's bytes ask for, made valid. */
static inline qlib_tensor_desc fz_desc_from(const uint8_t *h)
{
    static const int qbits[4] = { 2, 3, 4, 8 };
    qlib_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.method = (qlib_method)(h[48] % 5);
    d.n = 1 + (size_t)(fz_get64(h + 32) % 48);
    d.k = 1 + (size_t)(fz_get64(h + 40) % 1536);
    if (d.n * d.k > FZ_MAX_ELEMS) d.k = FZ_MAX_ELEMS / d.n;
    unsigned gsel = fz_get32(h + 52) % 12;
    switch (d.method) {
    case QLIB_METHOD_NONE:
        d.bits = h[49] & 1 ? 16 : 32;
        return d;
    case QLIB_METHOD_LLM_INT8:
        d.bits = 8;
        d.symmetric = 1;
        memcpy(&d.param, h + 56, 4);
        if (!isfinite(d.param)) d.param = 6.0f;
        return d;
    default:
        d.bits = qbits[h[49] & 3];
        d.symmetric = h[50] & 1;
        d.group_size = gsel == 0 ? -1 : gsel == 1 ? 0 : 32 * (int)(gsel - 1);
        d.has_perm = d.method == QLIB_METHOD_GPTQ && (h[51] & 1);
        d.has_input_scales = d.method == QLIB_METHOD_AWQ && (h[51] & 2);
        return d;
    }
}

static inline void fz_header_write(uint8_t *b, const qlib_tensor_desc *d, const qlib_section *sec,
                                   unsigned n_sec, size_t total, uint8_t flags)
{
    memcpy(b, "QLIBTNSR", 8);
    fz_put32(b + 8, 1);
    fz_put32(b + 12, FZ_HEADER + 24 * n_sec);
    fz_put64(b + 16, total);
    fz_put64(b + 32, d->n);
    fz_put64(b + 40, d->k);
    b[48] = (uint8_t)d->method;
    b[49] = (uint8_t)d->bits;
    b[50] = (uint8_t)((d->symmetric ? 1 : 0) | (flags & 2));
    b[51] = (uint8_t)n_sec;
    fz_put32(b + 52, (uint32_t)d->group_size);
    if (d->method == QLIB_METHOD_LLM_INT8) memcpy(b + 56, &d->param, 4);
    fz_put32(b + 60, 0);
    fz_put64(b + 72, 0);
    for (unsigned i = 0; i < n_sec; i++) {
        uint8_t *e = b + FZ_HEADER + 24 * i;
        fz_put32(e, sec[i].id);
        fz_put32(e + 4, 0);
        fz_put64(e + 8, sec[i].offset);
        fz_put64(e + 16, sec[i].size);
    }
}

/* Makes every section's content acceptable to a loader (docs/FORMAT.md,
 * "What a loader checks") while keeping as much of the fuzz data as it can. */
static inline void fz_repair(uint8_t *b, const qlib_tensor_desc *d, const qlib_section *sec,
                             unsigned n_sec)
{
    double qe;
    memcpy(&qe, b + 64, 8);
    if (!isfinite(qe) || qe < 0) {
        qe = 0.25;
        memcpy(b + 64, &qe, 8);
    }
    size_t end = FZ_HEADER + 24 * (size_t)n_sec;
    for (unsigned i = 0; i < n_sec; i++) {           /* padding between sections is zero */
        memset(b + end, 0, sec[i].offset - end);
        end = sec[i].offset + sec[i].size;
    }
    memset(b + end, 0, fz_get64(b + 16) - end);
    for (unsigned i = 0; i < n_sec; i++) {
        uint8_t *p = b + sec[i].offset;
        size_t size = sec[i].size;
        if (sec[i].id == QLIB_SEC_SCALES || sec[i].id == QLIB_SEC_F16) {
            for (size_t j = 0; j + 2 <= size; j += 2)
                if ((p[j + 1] & 0x7c) == 0x7c) p[j + 1] &= 0xbf;   /* exponent 31 -> 15 */
        } else if (sec[i].id == QLIB_SEC_F32 || sec[i].id == QLIB_SEC_INPUT_SCALES) {
            for (size_t j = 0; j + 4 <= size; j += 4) {
                float v;
                memcpy(&v, p + j, 4);
                if (!isfinite(v) || (sec[i].id == QLIB_SEC_INPUT_SCALES && v == 0.0f)) v = 1.0f;
                memcpy(p + j, &v, 4);
            }
        } else if (sec[i].id == QLIB_SEC_PERM) {
            /* Fisher-Yates driven by the fuzz words: any data gives a permutation */
            int32_t *perm = fz_malloc(d->k * 4);
            for (size_t j = 0; j < d->k; j++) perm[j] = (int32_t)j;
            for (size_t j = d->k; j-- > 1;) {
                size_t o = fz_get32(p + 4 * j) % (j + 1);
                int32_t t = perm[j];
                perm[j] = perm[o];
                perm[o] = t;
            }
            memcpy(p, perm, d->k * 4);
            free(perm);
        }
    }
}

/* A 64-aligned blob of exactly *out_len bytes made from data by mode (free
 * it with free). *must_load: the format accepts it, so a loader must too. */
static inline uint8_t *fz_blob(const uint8_t *data, size_t len, int mode, size_t *out_len,
                               int *must_load)
{
    *must_load = 0;
    if (mode == FZ_RAW || mode == FZ_SUM) {
        uint8_t *b = fz_malloc(len);
        if (len) memcpy(b, data, len);
        if (mode == FZ_SUM) fz_fix_checksum(b, len);
        *out_len = len;
        return b;
    }
    uint8_t h[FZ_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, data, len < FZ_HEADER ? len : FZ_HEADER);
    qlib_tensor_desc d = fz_desc_from(h);
    qlib_section sec[QLIB_SEC_MAX];
    unsigned n_sec;
    size_t storage, total = qlib_tensor_layout(&d, sec, &n_sec, &storage);
    uint8_t *b = fz_malloc(total);
    memset(b, 0, total);
    memcpy(b, data, len < total ? len : total);
    fz_header_write(b, &d, sec, n_sec, total, h[50]);
    if (mode == FZ_VALID) {
        fz_repair(b, &d, sec, n_sec);
        *must_load = 1;
    }
    fz_put64(b + 24, fz_checksum(b, total));
    *out_len = total;
    return b;
}

/* ---- activations: magnitudes from 2^-140 (subnormal) to 2^40 ---- */
static inline void fz_fill_x(float *x, size_t m, size_t k, size_t ldx, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < m; i++) {
        s = s * 1664525u + 1013904223u;
        int e = (int)(s >> 24) % 181 - 140;
        int zero_row = (s >> 8 & 15) == 0;
        for (size_t j = 0; j < ldx; j++) {
            s = s * 1664525u + 1013904223u;
            float u = (float)((int32_t)s >> 8) / 8388608.0f;      /* [-1, 1) */
            x[i * ldx + j] = j >= k ? NAN : zero_row || (s & 7) == 0 ? 0.0f : ldexpf(u, e);
        }
    }
}

/* ---- what every loaded tensor must satisfy ---- */

static inline void fz_check_queries(const qlib_tensor *t, const uint8_t *blob, size_t blob_len)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t), bytes = 0;
    qlib_method m = qlib_tensor_method(t);
    int bits = qlib_tensor_bits(t);
    FZ_CHECK(n > 0 && k > 0);
    FZ_CHECK(qlib_method_lookup(m) != NULL);
    FZ_CHECK(m == QLIB_METHOD_NONE ? bits == 16 || bits == 32
                                   : bits == 2 || bits == 3 || bits == 4 || bits == 8);
    FZ_CHECK(qlib_tensor_storage_bytes(t) <= blob_len);
    /* the data of every weight is there */
    FZ_CHECK((double)qlib_tensor_storage_bytes(t) * 8.0 >= (double)n * (double)k * bits);
    FZ_CHECK(qlib_tensor_bits_per_weight(t) ==
             (double)qlib_tensor_storage_bytes(t) * 8.0 / ((double)n * (double)k));
    FZ_CHECK(isfinite(qlib_tensor_quant_error(t)) && qlib_tensor_quant_error(t) >= 0.0);
    FZ_CHECK(m == QLIB_METHOD_LLM_INT8 || qlib_tensor_outlier_threshold(t) == 0.0f);
    FZ_CHECK(!qlib_tensor_input_scales(t) || m == QLIB_METHOD_AWQ);
    const int32_t *perm = qlib_tensor_permutation(t);
    FZ_CHECK(!perm || m == QLIB_METHOD_GPTQ);
    if (perm) {
        uint8_t *seen = calloc(k, 1);
        FZ_CHECK(seen != NULL);
        for (size_t j = 0; j < k; j++) {
            FZ_CHECK(perm[j] >= 0 && (size_t)perm[j] < k && !seen[perm[j]]);
            seen[perm[j]] = 1;
        }
        free(seen);
    }
    /* serialize(deserialize(b)) is b */
    FZ_CHECK(qlib_tensor_serialized_size(t, &bytes) == QLIB_OK);
    FZ_CHECK(bytes == fz_get64(blob + 16) && bytes <= blob_len);
    uint8_t *out = fz_malloc(bytes);
    size_t written = 1;
    FZ_CHECK(qlib_tensor_serialize(t, out, bytes - 1, &written) == QLIB_ERR_ARG && written == 0);
    FZ_CHECK(qlib_tensor_serialize(t, out, bytes, &written) == QLIB_OK && written == bytes);
    FZ_CHECK(memcmp(out, blob, bytes) == 0);
    free(out);
}

/* For output r of row i of x: mag = sum |x_c w_c|, wsum = sum |w_c / s_c|
 * (the stored weights, s the AWQ input scales or 1) and amax = max |x_c s_c|
 * (what the int8 activations are scaled from). */
typedef struct fz_sums { double ref, mag, wsum, amax; } fz_sums;

static inline fz_sums fz_row_sums(const qlib_tensor *t, const float *xi, const float *wr)
{
    size_t k = qlib_tensor_cols(t);
    const float *s = qlib_tensor_input_scales(t);
    fz_sums z = { 0.0, 0.0, 0.0, 0.0 };
    for (size_t c = 0; c < k; c++) {
        z.amax = fmax(z.amax, fabs((double)xi[c] * (s ? s[c] : 1.0f)));
        z.ref += (double)xi[c] * wr[c];
        z.mag += fabs((double)xi[c] * wr[c]);
        z.wsum += fabs((double)wr[c] / (s ? s[c] : 1.0f));
    }
    return z;
}

/* Magnitudes this large could overflow fp32 somewhere: such outputs are not judged. */
static inline int fz_judged(const fz_sums *z)
{
    return z->amax < 1e30 && z->mag < 1e30 && z->amax * z->wsum < 1e30;
}

/* |y - x.W^T| within what the arithmetic allows: fp32 accumulation (a
 * generous (K + 16) ulp per term), plus, for the int8 activation path, half
 * an int8 step of the largest mapped |x| of the row per weight. Rows whose
 * magnitudes could overflow fp32 are not judged. */
static inline void fz_check_product(const qlib_tensor *t, const float *x, size_t m, size_t ldx,
                                    const float *w, size_t ldw, const float *y, size_t ldy,
                                    int int8_acts)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    double u = FLT_EPSILON / 2;
    for (size_t i = 0; i < m; i++)
        for (size_t r = 0; r < n; r++) {
            fz_sums z = fz_row_sums(t, x + i * ldx, w + r * ldw);
            if (!fz_judged(&z)) continue;
            double bound = 2.0 * (double)(k + 16) * u * z.mag + 1e-30 * (1.0 + z.wsum);
            if (int8_acts) bound += 1.01 * z.amax / 254.0 * z.wsum;
            double got = y[i * ldy + r];
            if (!(fabs(got - z.ref) <= bound)) {
                fprintf(stderr, "y[%zu][%zu] = %.9g, x.W^T = %.9g, bound %.3g (method %d, %d bits,"
                        " group %d, n %zu, k %zu)\n", i, r, got, z.ref, bound,
                        (int)qlib_tensor_method(t), qlib_tensor_bits(t),
                        qlib_tensor_group_size(t), n, k);
                FZ_CHECK(fabs(got - z.ref) <= bound);
            }
        }
}

/* Whether ctx's kernel for this product sums in its own order, as its
 * kernel table declares (qk_order): then it is bounded, not bit-identical,
 * against scalar (docs/ALGORITHMS.md, "Matmul arithmetic"). Today those are
 * the GEMVs (M = 1): the fp16 one of a NONE tensor at 16 bits, and the
 * quantized one in AUTO mode, on the x86 tables. */
static inline int fz_gemv_reassociates(const qlib_ctx *ctx, const qlib_tensor *t, size_t m,
                                       int auto_mode)
{
    const qlib_kernels *k = ctx->kern;
    if (qlib_method_lookup(qlib_tensor_method(t))->float_weights)
        return m == 1 && qlib_tensor_bits(t) == 16 && k->gemv_f16.order == QK_ORDER_OWN;
    if (!auto_mode) return k->gemm_f32.order == QK_ORDER_OWN;
    return qk_pick_q8(k, &t->w, m)->order == QK_ORDER_OWN;
}

/* |y - y'| for two fixed summation orders of one GEMV output, u = 2^-24.
 * fp16: each order is within (k + 2) u T of the exact sum of the k exact
 * products, T = mag (test/unit/test_kernels.c, test_kernels_f16_gemv), so
 * two are within twice that. Quantized AUTO: both sum the same exact
 * integer block dots, scaled by the block's activation scale d and the
 * group's scale, and differ by at most (2 nb + 2 ng + 16) u T with nb
 * blocks and ng <= nb groups (gemv_bound in test_kernels.c), where T =
 * sum |w_c / s_c| |d q_c| <= mag + (amax / 254) wsum, since the int8
 * activation d q_c is within half a step, amax / 254, of x_c s_c. Each
 * operation may also lose up to 2^-150 to gradual underflow. */
static inline double fz_gemv_bound(const qlib_tensor *t, const fz_sums *z)
{
    size_t k = qlib_tensor_cols(t), kp = (k + 63) / 64 * 64, nb = kp / 32;
    double u = 0x1p-24;
    if (qlib_tensor_method(t) == QLIB_METHOD_NONE)
        return 2.0 * (double)(k + 2) * (u * z->mag + 0x1p-149);
    double T = z->mag + z->amax / 254.0 * z->wsum;
    /* Below fp32's normal range a product of two scales (x's d, the
     * group's s) rounds to a multiple of 2^-149, not to 24 bits: each such
     * rounding, times the block's integer dot (at most 32 * 127 * 255),
     * may move a block's term by that much, a few times per block, in
     * either kernel. Only outputs near 1e-34 and below notice. */
    double sub = (double)(4 * nb) * 32.0 * 127.0 * 255.0 * 0x1p-149;
    return (double)(4 * nb + 16) * u * T * 1.01 + (double)(8 * kp + 16) * 0x1p-149 + sub;
}

/* One-thread contexts to compare with: results never depend on the thread
 * count, and every ISA's kernels do the scalar kernels' arithmetic, except
 * the GEMV kernels, which sum the same products in another order
 * (fz_gemv_reassociates). ref(0): the best ISA, ref(1): scalar. */
static inline qlib_ctx *fz_ref_ctx(int scalar)
{
    static qlib_ctx *ref[2];
    if (!ref[scalar]) {
        ref[scalar] = fz_ctx(1, NULL);
        if (scalar) FZ_CHECK(qlib_ctx_set_isa(ref[scalar], "scalar") == QLIB_OK);
    }
    return ref[scalar];
}

enum { FZ_Y_SAME = 0, FZ_Y_BOUNDED = 1 };

/* Dequantized weights and product from ref, compared with w and y: the
 * weights bit for bit, y bit for bit (FZ_Y_SAME) or within fz_gemv_bound
 * (FZ_Y_BOUNDED, one row of x). */
static inline void fz_check_same(qlib_ctx *ref, qlib_ctx *ctx, const qlib_tensor *t,
                                 const float *x, size_t m, size_t ldx, const float *w, size_t ldw,
                                 const float *y, size_t ldy, int y_mode)
{
    size_t n = qlib_tensor_rows(t);
    float *w2 = fz_malloc(n * ldw * sizeof(float)), *y2 = fz_malloc(m * ldy * sizeof(float));
    const uint32_t sentinel = 0x7fc0dead;      /* as in w and y: the gaps between rows */
    for (size_t i = 0; i < n * ldw; i++) memcpy(&w2[i], &sentinel, 4);
    for (size_t i = 0; i < m * ldy; i++) memcpy(&y2[i], &sentinel, 4);
    FZ_CHECK(qlib_ctx_set_compute(ref, qlib_ctx_compute(ctx)) == QLIB_OK);
    FZ_CHECK(qlib_dequantize(ref, t, w2, ldw) == QLIB_OK);
    FZ_CHECK(qlib_matmul(ref, t, x, m, ldx, y2, ldy) == QLIB_OK);
    FZ_CHECK(memcmp(w, w2, n * ldw * sizeof(float)) == 0);
    if (y_mode == FZ_Y_SAME) {
        FZ_CHECK(memcmp(y, y2, m * ldy * sizeof(float)) == 0);
    } else {
        FZ_CHECK(m == 1);
        FZ_CHECK(memcmp(y + n, y2 + n, (ldy - n) * sizeof(float)) == 0);
        for (size_t r = 0; r < n; r++) {
            fz_sums z = fz_row_sums(t, x, w + r * ldw);
            if (!fz_judged(&z)) continue;
            double d = fabs((double)y[r] - (double)y2[r]), bound = fz_gemv_bound(t, &z);
            if (!(d <= bound)) {
                fprintf(stderr, "GEMV y[%zu] = %.9g on %s, %.9g on %s: |diff| %.3g > %.3g "
                        "(method %d, %d bits, group %d, k %zu)\n", r, (double)y[r],
                        qlib_ctx_isa(ctx), (double)y2[r], qlib_ctx_isa(ref), d, bound,
                        (int)qlib_tensor_method(t), qlib_tensor_bits(t),
                        qlib_tensor_group_size(t), qlib_tensor_cols(t));
                FZ_CHECK(d <= bound);
            }
        }
    }
    free(w2);
    free(y2);
}

/* Dequantize and multiply with ctx; neither may touch memory between rows,
 * the product must agree with the dequantized weights, and both must equal
 * what the reference context computes. */
static inline void fz_check_compute(qlib_ctx *ctx, const qlib_tensor *t, size_t m, uint32_t seed)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t);
    size_t ldw = k + 3, ldx = k + 1, ldy = n + 2;
    const uint32_t sentinel = 0x7fc0dead;
    float *w = fz_malloc(n * ldw * sizeof(float)), *x = fz_malloc(m * ldx * sizeof(float));
    float *y = fz_malloc(m * ldy * sizeof(float));
    for (size_t i = 0; i < n * ldw; i++) memcpy(&w[i], &sentinel, 4);
    for (size_t i = 0; i < m * ldy; i++) memcpy(&y[i], &sentinel, 4);
    FZ_CHECK(qlib_dequantize(ctx, t, w, ldw) == QLIB_OK);
    for (size_t r = 0; r < n; r++)
        for (size_t c = k; c < ldw; c++) FZ_CHECK(memcmp(&w[r * ldw + c], &sentinel, 4) == 0);
    fz_fill_x(x, m, k, ldx, seed);
    const float *s = qlib_tensor_input_scales(t);
    int overflow = 0;
    for (size_t i = 0; s && i < m; i++)
        for (size_t c = 0; c < k; c++) overflow |= !isfinite(x[i * ldx + c] * s[c]);
    qlib_status st = qlib_matmul(ctx, t, x, m, ldx, y, ldy);
    if (overflow) {                       /* x * s has no fp32 value: an error, not garbage */
        FZ_CHECK(st == QLIB_ERR_NUMERIC);
        fz_fill_x(x, m, k, ldx, 0);       /* magnitudes up to 2^-60: no overflow */
        for (size_t i = 0; i < m * ldx; i++) x[i] = ldexpf(x[i], -100);
        st = qlib_matmul(ctx, t, x, m, ldx, y, ldy);
    }
    FZ_CHECK(st == QLIB_OK);
    for (size_t i = 0; i < m; i++)
        for (size_t r = n; r < ldy; r++) FZ_CHECK(memcmp(&y[i * ldy + r], &sentinel, 4) == 0);
    int auto_mode = qlib_ctx_compute(ctx) == QLIB_COMPUTE_AUTO;
    fz_check_product(t, x, m, ldx, w, ldw, y, ldy,
                     auto_mode && qlib_tensor_method(t) != QLIB_METHOD_NONE);
    int scalar = strcmp(qlib_ctx_isa(ctx), "scalar") == 0;
    if (ctx != fz_ref_ctx(scalar))        /* the thread count changes nothing */
        fz_check_same(fz_ref_ctx(scalar), ctx, t, x, m, ldx, w, ldw, y, ldy, FZ_Y_SAME);
    if (!scalar)                          /* nor does the ISA, but for a GEMV's float order */
        fz_check_same(fz_ref_ctx(1), ctx, t, x, m, ldx, w, ldw, y, ldy,
                      fz_gemv_reassociates(ctx, t, m, auto_mode) ? FZ_Y_BOUNDED : FZ_Y_SAME);
    free(w);
    free(x);
    free(y);
}

/* The outcome of loading or deserializing blob with the counter c armed: a
 * clear error (FORMAT, or NOMEM when c's failure fired, never for a blob that
 * must load) and no tensor, or a tensor that answers its queries from the
 * blob and computes like the references with m rows of x. */
static inline void fz_check_loaded(qlib_status s, const qlib_tensor *t, const fz_counter *c,
                                   int must_load, const uint8_t *blob, size_t len,
                                   qlib_ctx *ctx, size_t m, uint32_t seed)
{
    if (s != QLIB_OK) {
        FZ_CHECK(t == NULL);
        FZ_CHECK(qlib_last_error()[0] != '\0');
        FZ_CHECK(s == QLIB_ERR_FORMAT || (s == QLIB_ERR_NOMEM && c->failed));
        FZ_CHECK(!must_load || c->failed);
        return;
    }
    FZ_CHECK(t != NULL);
    fz_check_queries(t, blob, len);
    fz_check_compute(ctx, t, m, seed);
}

#endif
