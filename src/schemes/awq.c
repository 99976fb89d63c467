/* AWQ (Lin et al., 2023): per-input-channel scales s = mean|x|^alpha with
 * alpha searched on a grid (or AutoAWQ's "duo" scales, mean|x|^alpha over
 * a weight statistic to the 1 - alpha, or both families: AWQ_SCALES), then a
 * clipping ratio per group, both chosen by the layer's output error on the
 * calibration samples. The tensor stores the
 * codes of Q(W diag(s)) and the input scales 1/s, so that its effective
 * weights are Q(W diag(s)) diag(1/s).
 *
 * Cost: a candidate's error ||X D^T||^2 (D = W - W^, X the ns samples) is
 * taken chunk by chunk of rows of W, one GEMM per chunk, from the samples or,
 * when that is cheaper (fewer columns than samples), from the Gram matrix
 * X^T X computed once. Chunks depend only on the shapes, each chunk's GEMM is
 * the same call whoever runs it, and errors are added in chunk and row order,
 * so the result does not depend on the thread count. The chunks of a block
 * are rounded on the context's threads; their GEMMs run there too when
 * the linear algebra is single-threaded (the built-in one, or OpenBLAS on
 * one thread), else one after another on OpenBLAS's threads (never both
 * pools at once). */
#include <math.h>

#include "schemes.h"
#include "../linalg/linalg.h"

#define CLIP_STEPS 20                    /* clipping ratios 1 - i/20 */
#define MEAN_FLOOR 1e-4                  /* smallest channel mean, as a fraction of the largest */
#define DUO_EPS 1e-4                     /* duo scales: added to wbar^(1-alpha); least s */
#define DUO_GROUP_EPS 1e-6               /* duo scales: added to a group's largest |w| */

/* QLIB_PARAM_AWQ_SCALES */
enum { SCALES_ACT = 0, SCALES_DUO = 1, SCALES_BOTH = 2 };
#define CHUNK_FLOATS ((size_t)1 << 20)   /* D per scoring GEMM: up to this many floats */
#define CLIP_FLOATS ((size_t)1 << 19)    /* D per clipping GEMM */
#define MIN_CHUNKS 8                     /* small layers are split too, for the threads */
#define MIN_ROWS 16                      /* but not into GEMMs thinner than this */
#define SLOTS_PER_THREAD 2               /* chunks in flight per thread: a late thread stalls less */
#define ROUND_MAGIC 12582912.0f          /* 1.5 * 2^23: (v + M) - M rounds v to nearest even */

static const char FN[] = "qlib_quantize";

/* Shares of the call: the scale search, then the clipping search, then the
 * tensor. */
#define SHARE_SCALE 0.6
#define SHARE_CLIP 0.35

typedef struct awq_layer {
    qlib_ctx *ctx;
    const float *w;
    size_t n, k, kp, ldw;
    int bits, sym, per_tensor;
    size_t group, glen, n_groups;    /* group stride; its columns (the last may be fewer) */
    const double *abs_sum;           /* k: sum |x| over n_tokens */
    size_t n_tokens;
    const float *x;                  /* ns x k calibration samples */
    size_t ns;
    float *gram;                     /* k x k X^T X when k < ns, else NULL */
    int owns_gram;                   /* else another layer's (layers reading one input) */
    float *col_min, *col_max;        /* k: column ranges of W, per-tensor groups only */
    size_t n_clip;                   /* clipping ratios searched (1: none) */
    qlib_clip clip;                  /* grid > 0: CLIP_GRID's ratios, else 1 - i/20 */
    size_t rows, clip_rows;          /* rows of W per scoring chunk and per clipping chunk */
    size_t n_slots;                  /* chunks in flight */
    int gemm_in_tasks;               /* single-threaded linear algebra: GEMMs on our threads */
    float *d, *tmp;                  /* per slot: a chunk of D and its GEMM product */
    double *err;                     /* per slot: per row of D */
    size_t d_floats, tmp_floats, err_count;   /* per slot */
    uint8_t *work;                   /* n_fill_tasks x work_bytes for writing the tensor */
    size_t work_bytes, n_fill_tasks;
} awq_layer;

/* One way of quantizing the whole layer. */
typedef struct awq_cand {
    const float *s, *inv;            /* k: W is multiplied by s, x by inv = 1/s */
    qlib_qparams tensor_p;           /* per-tensor groups: the one set of parameters */
} awq_cand;

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* A slot's buffers: one chunk of D, its GEMM product, its rows' errors. */
typedef struct awq_slot {
    float *d, *tmp;
    double *err;
} awq_slot;

static awq_slot slot_of(const awq_layer *L, size_t i)
{
    awq_slot s = { L->d + i * L->d_floats, L->tmp + i * L->tmp_floats, L->err + i * L->err_count };
    return s;
}

/* A block of chunks in three steps: per chunk i < n, prep (rounding into
 * slot i), gemm, then finish (errors). */
typedef struct awq_phases {
    void (*prep)(void *job, size_t i);
    void (*gemm)(void *job, size_t i);
    void (*finish)(void *job, size_t i);
    void *job;
} awq_phases;

static void all_phases(void *arg, size_t i)
{
    awq_phases *p = arg;
    p->prep(p->job, i);
    p->gemm(p->job, i);
    p->finish(p->job, i);
}

static void run_block(const awq_layer *L, awq_phases *p, size_t n)
{
    if (L->gemm_in_tasks) {
        qlib_ctx_parallel_for(L->ctx, all_phases, p, n);
        return;
    }
    qlib_ctx_parallel_for(L->ctx, p->prep, p->job, n);
    for (size_t i = 0; i < n; i++) p->gemm(p->job, i);
    qlib_ctx_parallel_for(L->ctx, p->finish, p->job, n);
}

/* ---- rounding, shared by the search and the tensor so both see one W^ ---- */

/* Round to nearest even, as nearbyintf in the default rounding mode; values
 * of magnitude 2^22 and above come out large with their sign, which the clamp
 * below treats as nearbyintf's result. Inline for speed: the search rounds
 * every weight once per candidate. */
static inline float round_even(float v) { return (v + ROUND_MAGIC) - ROUND_MAGIC; }

/* code - zero for the value v: the same integer as qlib_rtn_code(p, v) - zero. */
static inline float level_of(const qlib_qparams *p, float v)
{
    float r = round_even(v / p->scale), lo = (float)-p->zero, hi = (float)(p->maxq - p->zero);
    return r < lo ? lo : r > hi ? hi : r;
}

static float clip_ratio(const awq_layer *L, size_t step)
{
    if (L->clip.grid > 0) return qlib_clip_ratio(&L->clip, (int)step);
    return (float)(CLIP_STEPS - step) / (float)CLIP_STEPS;
}

/* Parameters for the range [lo, hi] (lo <= 0 <= hi) with the weights clamped
 * to +-ratio * absmax, as the reference clamps them; step 0 is the plain
 * range. Returns 0 when the scale exceeds fp16. */
static int clip_params(const awq_layer *L, float lo, float hi, size_t step, qlib_qparams *p)
{
    float mv = (hi > -lo ? hi : -lo) * clip_ratio(L, step);
    return qlib_rtn_params_range(lo > -mv ? lo : -mv, hi < mv ? hi : mv, L->bits, L->sym, p);
}

/* The element-wise loops below run once per weight per candidate, so they
 * are written with 4-wide generic vectors (SSE2 / NEON registers, no
 * ISA-specific code); every lane does exactly the scalar arithmetic. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void v4_store(float *p, v4f v) { memcpy(p, &v, sizeof v); }
static inline v4f v4_set(float a) { return (v4f){ a, a, a, a }; }
static inline v4f v4_select(v4i mask, v4f a, v4f b)   /* mask ? a : b */
{
    return (v4f)(((v4i)a & mask) | ((v4i)b & ~mask));
}

/* out = v * s on one span, with min(0, min out) and max(0, max out) as
 * qlib_rtn_params takes them. out may be v. */
static void span_scale(const float *v, const float *s, size_t len, float *out, float *lo,
                       float *hi)
{
    v4f vlo = v4_set(0.0f), vhi = vlo;
    size_t j = 0;
    for (; j + 4 <= len; j += 4) {
        v4f x = v4_load(v + j) * v4_load(s + j);
        vlo = v4_select(x < vlo, x, vlo);
        vhi = v4_select(x > vhi, x, vhi);
        v4_store(out + j, x);
    }
    float a = 0.0f, b = 0.0f;
    for (int i = 0; i < 4; i++) {
        a = vlo[i] < a ? vlo[i] : a;
        b = vhi[i] > b ? vhi[i] : b;
    }
    for (; j < len; j++) {
        out[j] = v[j] * s[j];
        a = out[j] < a ? out[j] : a;
        b = out[j] > b ? out[j] : b;
    }
    *lo = a;
    *hi = b;
}

/* d = w - W^ on one span, W^ = scale * level(w s) * (1/s) as the tensor
 * computes it (dequantized code times the input scale). ws may be d. */
static void span_delta(const qlib_qparams *p, const float *w, const float *ws, const float *inv,
                       size_t len, float *d)
{
    const float lo = (float)-p->zero, hi = (float)(p->maxq - p->zero);
    const v4f vsc = v4_set(p->scale), vlo = v4_set(lo), vhi = v4_set(hi), vm = v4_set(ROUND_MAGIC);
    size_t j = 0;
    for (; j + 4 <= len; j += 4) {
        v4f r = (v4_load(ws + j) / vsc + vm) - vm;
        r = v4_select(r < vlo, vlo, r);
        r = v4_select(r > vhi, vhi, r);
        v4_store(d + j, v4_load(w + j) - vsc * r * v4_load(inv + j));
    }
    for (; j < len; j++) d[j] = w[j] - p->scale * level_of(p, ws[j]) * inv[j];
}

/* ---- channel scales ---- */

/* s_j = m_j^alpha / sqrt(max s * min s), m_j = mean |x_j| raised to
 * MEAN_FLOOR * max m so that every s_j is finite and positive (a channel that
 * never fired gets the floor; all-zero activations give s = 1). */
static void channel_scales(const awq_layer *L, double alpha, float *s, float *inv)
{
    double n = (double)L->n_tokens, mmax = 0.0, mmin = HUGE_VAL;
    for (size_t j = 0; j < L->k; j++) {
        mmax = fmax(mmax, L->abs_sum[j] / n);
        mmin = fmin(mmin, L->abs_sum[j] / n);
    }
    double floor_m = mmax > 0.0 ? MEAN_FLOOR * mmax : 1.0;
    /* s grows with m, so its extremes are those of the means; in double, so
     * that equal means give s == 1 exactly */
    double norm = sqrt(pow(fmax(mmax, floor_m), alpha) * pow(fmax(mmin, floor_m), alpha));
    for (size_t j = 0; j < L->k; j++) {
        s[j] = (float)(pow(fmax(L->abs_sum[j] / n, floor_m), alpha) / norm);
        inv[j] = 1.0f / s[j];
    }
}

/* wbar_j, the weight statistic of AutoAWQ's duo scales: |w_rj| over the
 * largest |w| of its group in row r (plus DUO_GROUP_EPS), averaged over the
 * rows of all count layers. */
static void weight_means(const awq_layer *L, size_t count, double *wm)
{
    size_t k = L[0].k, rows = 0;
    for (size_t j = 0; j < k; j++) wm[j] = 0.0;
    for (size_t t = 0; t < count; t++) {
        for (size_t r = 0; r < L[t].n; r++) {
            const float *wr = L[t].w + r * L[t].ldw;
            for (size_t g0 = 0; g0 < k; g0 += L[t].glen) {
                size_t g1 = min_size(g0 + L[t].glen, k);
                double big = 0.0;
                for (size_t j = g0; j < g1; j++) big = fmax(big, fabs((double)wr[j]));
                for (size_t j = g0; j < g1; j++) wm[j] += fabs((double)wr[j]) / (big + DUO_GROUP_EPS);
            }
        }
        rows += L[t].n;
    }
    for (size_t j = 0; j < k; j++) wm[j] /= (double)rows;
}

/* AutoAWQ's duo scales: v_j = max(m_j^alpha / (wbar_j^(1-alpha) + DUO_EPS),
 * DUO_EPS), m_j = mean |x_j|, and s_j = v_j / sqrt(max v * min v). Every v_j
 * is at least DUO_EPS and at most m_max^alpha / DUO_EPS, so s is finite and
 * positive. */
static void duo_scales(const awq_layer *L, const double *wm, double alpha, float *s, float *inv)
{
    double n = (double)L->n_tokens, vmax = 0.0, vmin = HUGE_VAL;
    for (size_t j = 0; j < L->k; j++) {
        double x = pow(L->abs_sum[j] / n, alpha) / (pow(wm[j], 1.0 - alpha) + DUO_EPS);
        x = fmax(x, DUO_EPS);
        vmax = fmax(vmax, x);
        vmin = fmin(vmin, x);
    }
    double norm = sqrt(vmax * vmin);
    for (size_t j = 0; j < L->k; j++) {
        double x = pow(L->abs_sum[j] / n, alpha) / (pow(wm[j], 1.0 - alpha) + DUO_EPS);
        s[j] = (float)(fmax(x, DUO_EPS) / norm);
        inv[j] = 1.0f / s[j];
    }
}

/* ---- output error of rows of D ---- */

/* sum a[c] b[c] in fp32 lanes, added up in double: the per-lane sums are
 * exact enough to rank candidates and the order is fixed. */
static double dot_span(const float *a, const float *b, size_t len)
{
    v4f s0 = v4_set(0.0f), s1 = s0;
    size_t c = 0;
    for (; c + 8 <= len; c += 8) {
        s0 += v4_load(a + c) * v4_load(b + c);
        s1 += v4_load(a + c + 4) * v4_load(b + c + 4);
    }
    double e = 0.0;
    for (int i = 0; i < 4; i++) e += (double)s0[i] + (double)s1[i];
    for (; c < len; c++) e += (double)a[c] * b[c];
    return e;
}

/* The GEMM for rows of D (m x len, stride len) on columns [c0, c0 + len):
 * tmp = D X_cols^T (m x ns) from the samples, or D G (m x len) with their
 * Gram matrix G (row stride ldg). */
static void error_gemm(const awq_layer *L, const awq_slot *sl, size_t c0, size_t len,
                       const float *gram, size_t ldg, size_t m)
{
    if (gram)
        qlib_la_sgemm(0, 0, m, len, len, 1.0f, sl->d, len, gram, ldg, 0.0f, sl->tmp, len);
    else
        qlib_la_sgemm(0, 1, m, L->ns, len, 1.0f, sl->d, len, L->x + c0, L->k, 0.0f, sl->tmp,
                      L->ns);
}

/* err[i] = ||X_cols d_i^T||^2 for the m rows of the slot's D, after error_gemm. */
static void row_errors(const awq_layer *L, const awq_slot *sl, size_t len, int gram, size_t m)
{
    for (size_t i = 0; i < m; i++)
        sl->err[i] = gram ? dot_span(sl->tmp + i * len, sl->d + i * len, len)
                          : dot_span(sl->tmp + i * L->ns, sl->tmp + i * L->ns, L->ns);
}

/* ---- scoring a whole-layer candidate (the alpha grid, per-tensor clipping) ---- */

typedef struct score_job {
    const awq_layer *L;
    const awq_cand *cand;
    size_t r0;                       /* the block's first row of W */
    int failed;                      /* a scale overflowed fp16 */
} score_job;

/* One row of D under the candidate; 0 when a group's scale overflows. */
static int row_delta(const awq_layer *L, const awq_cand *c, const float *wr, float *d)
{
    qlib_qparams p = c->tensor_p;
    for (size_t g = 0; g < L->n_groups; g++) {
        size_t c0 = g * L->group, len = min_size(L->group, L->k - c0);
        float lo, hi;
        span_scale(wr + c0, c->s + c0, len, d + c0, &lo, &hi);   /* W diag(s), in place */
        if (!L->per_tensor && !clip_params(L, lo, hi, 0, &p)) return 0;
        span_delta(&p, wr + c0, d + c0, c->inv + c0, len, d + c0);
    }
    return 1;
}

/* Chunk i of the block: its first row and row count. */
static size_t score_rows(const score_job *j, size_t i, size_t *r0)
{
    const awq_layer *L = j->L;
    *r0 = j->r0 + i * L->rows;
    return min_size(L->rows, L->n - *r0);
}

static void score_prep(void *arg, size_t i)
{
    score_job *j = arg;
    const awq_layer *L = j->L;
    awq_slot sl = slot_of(L, i);
    size_t r0, m = score_rows(j, i, &r0);
    for (size_t r = 0; r < m; r++)
        if (!row_delta(L, j->cand, L->w + (r0 + r) * L->ldw, sl.d + r * L->k))
            __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
}

static void score_gemm(void *arg, size_t i)
{
    score_job *j = arg;
    awq_slot sl = slot_of(j->L, i);
    size_t r0, m = score_rows(j, i, &r0);
    error_gemm(j->L, &sl, 0, j->L->k, j->L->gram, j->L->k, m);
}

static void score_finish(void *arg, size_t i)
{
    score_job *j = arg;
    awq_slot sl = slot_of(j->L, i);
    size_t r0, m = score_rows(j, i, &r0);
    row_errors(j->L, &sl, j->L->k, j->L->gram != NULL, m);
}

/* *err = ||X (W - W^)^T||^2 over the samples; 0 if a scale overflows fp16. */
static int score(const awq_layer *L, const awq_cand *cand, double *err)
{
    double total = 0.0;
    size_t span = L->rows * L->n_slots;
    for (size_t r0 = 0; r0 < L->n; r0 += span) {
        /* a stop asked here fails the candidate; the search's next report
         * then stops the call */
        if (r0 && qlib_progress_poll(L->ctx)) return 0;
        score_job j = { L, cand, r0, 0 };
        awq_phases p = { score_prep, score_gemm, score_finish, &j };
        size_t n_chunks = (min_size(span, L->n - r0) + L->rows - 1) / L->rows;
        run_block(L, &p, n_chunks);
        if (j.failed) return 0;
        for (size_t i = 0; i < n_chunks; i++) {
            awq_slot sl = slot_of(L, i);
            size_t first, m = score_rows(&j, i, &first);
            for (size_t r = 0; r < m; r++) total += sl.err[r];
        }
    }
    *err = total;
    return 1;
}

/* Per-tensor parameters of W diag(s) clipped by step, from the column ranges
 * (s > 0, so the extremes of w_rc s_c over rows are s_c times those of w). */
static int tensor_params(const awq_layer *L, const float *s, size_t step, qlib_qparams *p)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t c = 0; c < L->k; c++) {
        float a = L->col_min[c] * s[c], b = L->col_max[c] * s[c];
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
    }
    return clip_params(L, lo, hi, step, p);
}

/* The alpha grid for count layers that read one input: the scales of the
 * family (AWQ_SCALES) with the least output error summed over the layers,
 * into s and inv; best[t] points at them, with layer t's per-tensor
 * parameters, and best_err[t] is layer t's error. Ties keep the earlier
 * candidate (the smaller alpha, and mean|x|^alpha before the duo scales), so
 * channels of equal magnitude keep s = 1. Progress: [0, share] of the
 * part. */
static qlib_status search_alpha(const awq_layer *L, size_t count, int grid, int family,
                                double share, float *s, float *inv, awq_cand *best,
                                double *best_err, size_t *best_i)
{
    size_t k = L[0].k;
    const qlib_allocator *a = &L[0].ctx->alloc;
    float *cs = qlib_mem_alloc(a, 2 * k * sizeof(float));
    awq_cand *c = qlib_mem_alloc(a, count * (sizeof(awq_cand) + sizeof(double)));
    double *wm = family != SCALES_ACT ? qlib_mem_alloc(a, k * sizeof(double)) : NULL;
    if (!cs || !c || (family != SCALES_ACT && !wm)) {
        qlib_mem_free(a, cs);
        qlib_mem_free(a, c);
        qlib_mem_free(a, wm);
        return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory for the AWQ scale search", FN);
    }
    if (wm) weight_means(L, count, wm);
    double *e = (double *)(void *)(c + count), best_total = 0.0;
    int found = 0, n_cand = family == SCALES_BOTH ? 2 * grid : grid;
    qlib_status st = QLIB_OK;
    /* candidate i: alpha (i mod grid) / grid; of the duo family when
     * AWQ_SCALES is 1, or 2 and i >= grid */
    for (int i = 0; i < n_cand; i++) {
        if (qlib_progress(L[0].ctx, "awq-scale", share * i / n_cand)) {
            st = qlib_progress_cancelled(FN, "awq-scale");
            break;
        }
        double alpha = (double)(i % grid) / grid;
        if (family == SCALES_DUO || (family == SCALES_BOTH && i >= grid))
            duo_scales(&L[0], wm, alpha, cs, cs + k);
        else
            channel_scales(&L[0], alpha, cs, cs + k);
        double total = 0.0;
        size_t t;
        for (t = 0; t < count; t++) {
            awq_cand ct = { cs, cs + k, { 0, 0.0f, 0, 0 } };
            c[t] = ct;
            if (L[t].per_tensor && !tensor_params(&L[t], cs, 0, &c[t].tensor_p)) break;
            if (!score(&L[t], &c[t], &e[t])) break;
            total += e[t];
        }
        if (t < count || (found && !(total < best_total))) continue;
        found = 1;
        best_total = total;
        *best_i = (size_t)i;
        for (t = 0; t < count; t++) {
            best[t] = c[t];
            best[t].s = s;
            best[t].inv = inv;
            best_err[t] = e[t];
        }
        memcpy(s, cs, k * sizeof(float));
        memcpy(inv, cs + k, k * sizeof(float));
    }
    qlib_mem_free(a, cs);
    qlib_mem_free(a, c);
    qlib_mem_free(a, wm);
    if (st == QLIB_OK && !found)
        st = qlib_fail(QLIB_ERR_NUMERIC, "%s: a group's range is too large for an fp16 scale", FN);
    return st;
}

/* Per-tensor groups: one clipping ratio for the whole tensor. */
static void clip_tensor(const awq_layer *L, awq_cand *best, double best_err)
{
    for (size_t step = 1; step < L->n_clip; step++) {
        awq_cand c = *best;
        double e;
        if (!tensor_params(L, best->s, step, &c.tensor_p) || !score(L, &c, &e)) continue;
        if (e < best_err) {
            best_err = e;
            best->tensor_p = c.tensor_p;
        }
    }
}

/* ---- per-group clipping ---- */

/* Groups narrower than the sample count are scored through their Gram matrix. */
static int clip_uses_gram(const awq_layer *L) { return L->glen < L->ns; }

typedef struct clip_job {
    const awq_layer *L;
    const float *s, *inv;
    size_t g, c0, len, r0;           /* the group; the block's first row of W */
    const float *gram;               /* the group's Gram matrix (row stride ldg), or NULL */
    size_t ldg;
    uint16_t *step;                  /* n x n_groups: the chosen clip step */
} clip_job;

static size_t clip_chunk_rows(const clip_job *j, size_t i, size_t *r0)
{
    const awq_layer *L = j->L;
    *r0 = j->r0 + i * L->clip_rows;
    return min_size(L->clip_rows, L->n - *r0);
}

/* One row of W, one group, every clipping ratio: d (n_clip x len) holds the
 * group's W - W^ under step st in its row st. */
static void clip_candidates(const clip_job *j, float *d, size_t row)
{
    const awq_layer *L = j->L;
    size_t nc = L->n_clip, len = j->len;
    const float *wr = L->w + row * L->ldw + j->c0, *inv = j->inv + j->c0;
    float lo, hi;
    qlib_qparams p0, p;
    span_scale(wr, j->s + j->c0, len, d, &lo, &hi);   /* W diag(s) */
    clip_params(L, lo, hi, 0, &p0);    /* succeeded in the alpha search */
    for (size_t st = 1; st < nc; st++) {
        if (!clip_params(L, lo, hi, st, &p)) p = p0;
        span_delta(&p, wr, d, inv, len, d + st * len);
    }
    span_delta(&p0, wr, d, inv, len, d);
}

static void clip_prep(void *arg, size_t i)
{
    clip_job *j = arg;
    awq_slot sl = slot_of(j->L, i);
    size_t r0, m = clip_chunk_rows(j, i, &r0), stride = j->L->n_clip * j->len;
    for (size_t r = 0; r < m; r++) clip_candidates(j, sl.d + r * stride, r0 + r);
}

static void clip_gemm(void *arg, size_t i)
{
    clip_job *j = arg;
    awq_slot sl = slot_of(j->L, i);
    size_t r0, m = clip_chunk_rows(j, i, &r0);
    error_gemm(j->L, &sl, j->c0, j->len, j->gram, j->ldg, m * j->L->n_clip);
}

/* The ratio with the smallest output error on the group's columns (the
 * first on ties) for each row of the chunk. */
static void clip_pick(void *arg, size_t i)
{
    clip_job *j = arg;
    const awq_layer *L = j->L;
    awq_slot sl = slot_of(L, i);
    size_t nc = L->n_clip, r0, m = clip_chunk_rows(j, i, &r0);
    row_errors(L, &sl, j->len, j->gram != NULL, m * nc);
    for (size_t r = 0; r < m; r++) {
        const double *e = sl.err + r * nc;
        size_t best = 0;
        for (size_t st = 1; st < nc; st++)
            if (e[st] < e[best]) best = st;
        j->step[(r0 + r) * L->n_groups + j->g] = (uint16_t)best;
    }
}

/* Group g's Gram matrix X_g^T X_g, and its row stride. */
static const float *group_gram(const awq_layer *L, const float *grams, size_t g, size_t *ld)
{
    if (L->gram) {   /* a diagonal block of the whole X^T X */
        *ld = L->k;
        return L->gram + g * L->group * (L->k + 1);
    }
    *ld = min_size(L->glen, L->k - g * L->group);
    return grams ? grams + g * L->glen * L->glen : NULL;
}

static qlib_status clip_groups(const awq_layer *L, const float *s, const float *inv,
                               uint16_t *step, double f0, double share)
{
    size_t glen = L->glen;
    float *grams = NULL;
    if (clip_uses_gram(L) && !L->gram) {
        /* a group's Gram matrix X_g^T X_g serves every row and ratio */
        grams = qlib_mem_alloc(&L->ctx->alloc, L->n_groups * glen * glen * sizeof(float));
        if (!grams) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory for AWQ clipping", FN);
        for (size_t g = 0; g < L->n_groups; g++) {
            size_t c0 = g * L->group, len = min_size(glen, L->k - c0);
            qlib_la_sgemm_ctx(L->ctx, 1, 0, len, len, L->ns, 1.0f, L->x + c0, L->k, L->x + c0,
                              L->k, 0.0f, grams + g * glen * glen, len);
        }
    }
    size_t span = L->clip_rows * L->n_slots;
    for (size_t g = 0; g < L->n_groups; g++) {
        if (qlib_progress(L->ctx, "awq-clip", f0 + share * (double)g / L->n_groups)) {
            qlib_mem_free(&L->ctx->alloc, grams);
            return qlib_progress_cancelled(FN, "awq-clip");
        }
        clip_job j = { L, s, inv, g, g * L->group, 0, 0, NULL, 0, step };
        j.len = min_size(glen, L->k - j.c0);
        j.gram = group_gram(L, grams, g, &j.ldg);
        for (j.r0 = 0; j.r0 < L->n; j.r0 += span) {
            awq_phases p = { clip_prep, clip_gemm, clip_pick, &j };
            run_block(L, &p, (min_size(span, L->n - j.r0) + L->clip_rows - 1) / L->clip_rows);
        }
    }
    qlib_mem_free(&L->ctx->alloc, grams);
    return QLIB_OK;
}

/* ---- the tensor ---- */

typedef struct fill_job {
    const awq_layer *L;
    qlib_tensor *t;
    const awq_cand *best;
    const uint16_t *step;            /* NULL: no clipping */
    int failed;
} fill_job;

static void fill_row(fill_job *j, float *ws, uint8_t *codes, size_t r)
{
    const awq_layer *L = j->L;
    const float *wr = L->w + r * L->ldw;
    qlib_qparams p = j->best->tensor_p;
    for (size_t g = 0; g < L->n_groups; g++) {
        size_t c0 = g * L->group, len = min_size(L->group, L->k - c0);
        float lo, hi;
        span_scale(wr + c0, j->best->s + c0, len, ws + c0, &lo, &hi);
        if (!L->per_tensor) {
            if (!clip_params(L, lo, hi, j->step ? j->step[r * L->n_groups + g] : 0, &p)) {
                __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
                return;
            }
            qlib_tensor_put_params(j->t, r, g, &p);
        }
        for (size_t c = c0; c < c0 + len; c++)
            codes[c] = (uint8_t)((int)level_of(&p, ws[c]) + p.zero);
    }
    for (size_t c = L->k; c < L->kp; c++) codes[c] = (uint8_t)p.zero;
    qlib_pack_row(L->bits, codes, L->kp, qlib_t_codes(j->t) + r * j->t->w.row_bytes);
}

static void fill_task(void *arg, size_t i)
{
    fill_job *j = arg;
    const awq_layer *L = j->L;
    uint8_t *mem = L->work + i * L->work_bytes;
    float *ws = (float *)(void *)mem;
    uint8_t *codes = mem + qlib_round_up(L->k * sizeof(float), QLIB_ALIGN);
    size_t r0 = L->n * i / L->n_fill_tasks, r1 = L->n * (i + 1) / L->n_fill_tasks;
    for (size_t r = r0; r < r1; r++) fill_row(j, ws, codes, r);
}

/* Fills the created tensor t (with an input scales section) from L's
 * weights under best and step (NULL: no clipping). */
static qlib_status fill_tensor(const awq_layer *L, qlib_tensor *t, const awq_cand *best,
                               const uint16_t *step)
{
    fill_job j = { L, t, best, step, 0 };
    if (L->per_tensor) qlib_tensor_put_params(t, 0, 0, &best->tensor_p);
    qlib_ctx_parallel_for(L->ctx, fill_task, &j, L->n_fill_tasks);
    if (j.failed)
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: a group's range is too large for an fp16 scale",
                         FN);
    memcpy((float *)t->input_scales, best->inv, L->k * sizeof(float));
    return QLIB_OK;
}

/* ---- setup ---- */

static qlib_status check_calib(const qlib_calib *calib, size_t k, int gptq_rounding)
{
    if (!calib || !calib->abs_sum || !calib->samples)
        return qlib_fail(QLIB_ERR_STATE,
                         "%s: AWQ needs a calibration with QLIB_CALIB_ACT_STATS and "
                         "QLIB_CALIB_SAMPLES", FN);
    if (gptq_rounding && !calib->hessian)
        return qlib_fail(QLIB_ERR_STATE,
                         "%s: AWQ with GPTQ rounding (QLIB_PARAM_AWQ_ROUNDING 1) needs a "
                         "calibration with QLIB_CALIB_HESSIAN as well", FN);
    if (calib->k != k)
        return qlib_fail(QLIB_ERR_SHAPE, "%s: calibration has k=%zu, weights have k=%zu", FN,
                         calib->k, k);
    if (calib->n_tokens == 0 || calib->n_samples == 0)
        return qlib_fail(QLIB_ERR_STATE, "%s: the calibration saw no tokens", FN);
    if (calib->n_samples > qlib_la_max_dim())
        return qlib_fail(QLIB_ERR_UNSUPPORTED, "%s: %zu calibration samples above %zu", FN,
                         calib->n_samples, qlib_la_max_dim());
    return QLIB_OK;
}

/* Chunk sizes and per-slot buffers. A scoring chunk holds `rows` rows of D
 * (k columns); a clipping chunk clip_rows rows times n_clip ratios of one
 * group. The GEMM product is ns per row of D from the samples, or as wide as
 * D with a Gram matrix (only used when narrower than ns). Slots: chunks in
 * flight, a few per thread (at most the chunks there are). */
static size_t chunk_rows(size_t n, size_t limit)
{
    size_t r = min_size(limit, (n + MIN_CHUNKS - 1) / MIN_CHUNKS);
    return min_size(max_size(r, MIN_ROWS), n);
}

static void plan_chunks(awq_layer *L, int gram)
{
    size_t k = L->k, nc = L->n_clip, chunks;
    L->rows = chunk_rows(L->n, max_size(CHUNK_FLOATS / k, 1));
    chunks = (L->n + L->rows - 1) / L->rows;
    L->d_floats = L->rows * k;
    L->tmp_floats = L->rows * (gram ? k : L->ns);
    L->err_count = L->rows;
    L->clip_rows = 0;
    if (nc > 1 && !L->per_tensor) {
        size_t cr = L->clip_rows = chunk_rows(L->n, max_size(CLIP_FLOATS / (nc * L->glen), 1));
        chunks = max_size(chunks, (L->n + cr - 1) / cr);
        L->d_floats = max_size(L->d_floats, cr * nc * L->glen);
        L->tmp_floats = max_size(L->tmp_floats, cr * nc * (clip_uses_gram(L) ? L->glen : L->ns));
        L->err_count = max_size(L->err_count, cr * nc);
    }
    L->n_slots = min_size(SLOTS_PER_THREAD * (size_t)L->ctx->n_threads, chunks);
    L->gemm_in_tasks = qlib_la_threads() <= 1;
    L->n_fill_tasks = min_size((size_t)L->ctx->n_threads, L->n);
    L->work_bytes = qlib_round_up(k * sizeof(float), QLIB_ALIGN) + qlib_round_up(L->kp, QLIB_ALIGN);
}

static void layer_free(awq_layer *L)
{
    const qlib_allocator *a = &L->ctx->alloc;
    qlib_mem_free(a, L->d);
    qlib_mem_free(a, L->tmp);
    qlib_mem_free(a, L->err);
    qlib_mem_free(a, L->work);
    if (L->owns_gram) qlib_mem_free(a, L->gram);
    qlib_mem_free(a, L->col_min);
}

static void column_ranges(awq_layer *L)
{
    size_t k = L->k;
    L->col_max = L->col_min + k;
    for (size_t c = 0; c < k; c++) L->col_min[c] = L->col_max[c] = L->w[c];
    for (size_t r = 1; r < L->n; r++)
        for (size_t c = 0; c < k; c++) {
            float v = L->w[r * L->ldw + c];
            L->col_min[c] = v < L->col_min[c] ? v : L->col_min[c];
            L->col_max[c] = v > L->col_max[c] ? v : L->col_max[c];
        }
}

static qlib_status layer_init(awq_layer *L, qlib_ctx *ctx, const float *w, size_t n, size_t k,
                              size_t ldw, const qlib_config *cfg, const qlib_calib *calib,
                              const awq_layer *first)
{
    qlib_tensor_desc d = qlib_quant_desc(cfg, n, k);
    memset(L, 0, sizeof *L);
    L->ctx = ctx;
    L->w = w;
    L->n = n;
    L->k = k;
    L->kp = qlib_round_up(k, QK_KALIGN);
    L->ldw = ldw;
    L->bits = d.bits;
    L->sym = d.symmetric;
    L->per_tensor = d.group_size < 0;
    L->group = qlib_desc_group_cols(&d);
    L->glen = min_size(L->group, k);
    L->n_groups = (k + L->group - 1) / L->group;
    L->abs_sum = calib->abs_sum;
    L->n_tokens = calib->n_tokens;
    L->x = calib->samples;
    L->ns = calib->n_samples;
    L->n_clip = 1;
    L->clip = qlib_clip_of(cfg);
    /* GPTQ rounding clips in its own search (CLIP_GRID), not here */
    if (qlib_cfg_int(cfg, QLIB_PARAM_AWQ_CLIP) && !qlib_cfg_int(cfg, QLIB_PARAM_AWQ_ROUNDING)) {
        /* int(20 * max_shrink) ratios, as the reference; the slack keeps
         * 0.95f, stored a hair below 0.95, at 19 */
        double steps =
            floor((double)qlib_cfg_float(cfg, QLIB_PARAM_AWQ_MAX_SHRINK) * CLIP_STEPS + 1e-4);
        if (L->clip.grid > 0) steps = L->clip.grid;
        L->n_clip = steps < 1.0 ? 1 : (size_t)steps;
    }
    int gram = k < L->ns;
    plan_chunks(L, gram);
    const qlib_allocator *a = &ctx->alloc;
    L->d = qlib_mem_alloc(a, L->n_slots * L->d_floats * sizeof(float));
    L->tmp = qlib_mem_alloc(a, L->n_slots * L->tmp_floats * sizeof(float));
    L->err = qlib_mem_alloc(a, L->n_slots * L->err_count * sizeof(double));
    L->work = qlib_mem_alloc(a, L->n_fill_tasks * L->work_bytes);
    L->owns_gram = gram && !first;
    if (gram) L->gram = first ? first->gram : qlib_mem_alloc(a, k * k * sizeof(float));
    if (L->per_tensor) L->col_min = qlib_mem_alloc(a, 2 * k * sizeof(float));
    if (!L->d || !L->tmp || !L->err || !L->work || (gram && !L->gram) ||
        (L->per_tensor && !L->col_min)) {
        layer_free(L);
        return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory for AWQ (k=%zu, %zu samples)", FN, k,
                         L->ns);
    }
    if (L->owns_gram)
        qlib_la_sgemm_ctx(ctx, 1, 0, k, k, L->ns, 1.0f, L->x, k, L->x, k, 0.0f, L->gram, k);
    if (L->per_tensor) column_ranges(L);
    return QLIB_OK;
}

/* The search state of count layers reading one input (the calibration's):
 * one array of layers, the first one's Gram matrix shared. On failure
 * nothing is left allocated. */
static qlib_status layers_init(awq_layer **out, qlib_ctx *ctx, size_t count,
                               const float *const *w, const size_t *n, size_t k,
                               const size_t *ldw, const qlib_config *cfg, const qlib_calib *calib)
{
    *out = NULL;
    qlib_status s = check_calib(calib, k, qlib_cfg_int(cfg, QLIB_PARAM_AWQ_ROUNDING));
    if (s != QLIB_OK) return s;
    awq_layer *L = qlib_mem_alloc(&ctx->alloc, count * sizeof(awq_layer));
    if (!L) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", FN);
    size_t t;
    for (t = 0; t < count && s == QLIB_OK; t++)
        s = layer_init(&L[t], ctx, w[t], n[t], k, ldw[t], cfg, calib, t ? &L[0] : NULL);
    if (s != QLIB_OK) {
        for (size_t i = 0; i + 1 < t; i++) layer_free(&L[i]);   /* the failed one freed itself */
        qlib_mem_free(&ctx->alloc, L);
        return s;
    }
    *out = L;
    return QLIB_OK;
}

/* Shared layers free their own buffers first, the Gram matrix's owner last. */
static void layers_free(qlib_ctx *ctx, awq_layer *L, size_t count)
{
    for (size_t t = count; t-- > 0;) layer_free(&L[t]);
    qlib_mem_free(&ctx->alloc, L);
}

qlib_status qlib_awq_search_alpha(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                  const qlib_config *cfg, const qlib_calib *calib, float *alpha)
{
    awq_layer *L;
    qlib_status s = layers_init(&L, ctx, 1, &w, &n, k, &ldw, cfg, calib);
    if (s != QLIB_OK) return s;
    qlib_progress_begin(ctx);
    float *sc = qlib_mem_alloc(&ctx->alloc, 2 * k * sizeof(float));
    awq_cand best;
    double err;
    size_t i = 0;
    int grid = qlib_cfg_int(cfg, QLIB_PARAM_AWQ_GRID);
    s = sc ? search_alpha(L, 1, grid, qlib_cfg_int(cfg, QLIB_PARAM_AWQ_SCALES), SHARE_SCALE, sc,
                          sc + k, &best, &err, &i)
           : qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", FN);
    if (s == QLIB_OK) *alpha = (float)((double)(i % (size_t)grid) / grid);
    qlib_mem_free(&ctx->alloc, sc);
    layers_free(ctx, L, 1);
    return s;
}

/* Shares of a call with GPTQ rounding: the scale search, then GPTQ. */
#define SHARE_SCALE_GPTQ 0.3

/* Round to nearest: each layer's clipping (per group, or one ratio per
 * tensor), each in its share of the progress (by rows), then the tensors;
 * errors ||W - W^||^2 / ||W||^2. */
static qlib_status round_nearest(qlib_ctx *ctx, awq_layer *L, size_t count,
                                 const qlib_config *cfg, awq_cand *best, const double *err,
                                 qlib_tensor **out)
{
    const qlib_allocator *a = &ctx->alloc;
    uint16_t **step = qlib_mem_calloc(a, count * sizeof(uint16_t *));
    if (!step) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", FN);
    double rows = 0.0, done = 0.0;
    qlib_status s = QLIB_OK;
    for (size_t t = 0; t < count; t++) rows += (double)L[t].n;
    for (size_t t = 0; t < count && s == QLIB_OK; t++) {
        if (L[t].n_clip > 1 && !L[t].per_tensor) {
            step[t] = qlib_mem_alloc(a, L[t].n * L[t].n_groups * sizeof(uint16_t));
            s = step[t] ? clip_groups(&L[t], best[t].s, best[t].inv, step[t],
                                      SHARE_SCALE + SHARE_CLIP * done / rows,
                                      SHARE_CLIP * (double)L[t].n / rows)
                        : qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", FN);
        }
        if (s == QLIB_OK && L[t].per_tensor) clip_tensor(&L[t], &best[t], err[t]);
        done += (double)L[t].n;
    }
    if (s == QLIB_OK && qlib_progress(ctx, "pack", SHARE_SCALE + SHARE_CLIP))
        s = qlib_progress_cancelled(FN, "pack");
    for (size_t t = 0; t < count && s == QLIB_OK; t++) {
        qlib_tensor_desc d = qlib_quant_desc(cfg, L[t].n, L[t].k);
        d.has_input_scales = 1;
        s = qlib_tensor_create(a, &d, &out[t], FN);
        if (s == QLIB_OK) s = fill_tensor(&L[t], out[t], &best[t], step[t]);
    }
    for (size_t t = 0; t < count; t++) qlib_mem_free(a, step[t]);
    qlib_mem_free(a, step);
    for (size_t t = 0; t < count && s == QLIB_OK; t++) {
        double e;
        s = qlib_relative_error(ctx, out[t], L[t].w, L[t].ldw, &e);
        if (s == QLIB_OK) qlib_tensor_seal(out[t], e, 0);
    }
    return s;
}

/* GPTQ rounding: W diag(s) rounded by GPTQ in the space of diag(1/s) H
 * diag(1/s), one factor for every layer; errors Hessian-weighted. */
static qlib_status round_gptq(qlib_ctx *ctx, awq_layer *L, size_t count, const qlib_config *cfg,
                              const qlib_calib *calib, const awq_cand *best, qlib_tensor **out)
{
    const qlib_allocator *a = &ctx->alloc;
    qlib_status s = QLIB_OK;
    qlib_gptq_opts o = qlib_gptq_opts_of(cfg);
    o.s = best[0].s;
    o.inv = best[0].inv;
    const float **w = qlib_mem_alloc(a, count * (sizeof(float *) + 2 * sizeof(double)));
    if (!w) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", FN);
    size_t *ldw = (size_t *)(void *)(w + count);
    double *err = (double *)(void *)(ldw + count);
    for (size_t t = 0; t < count && s == QLIB_OK; t++) {
        qlib_tensor_desc d = qlib_quant_desc(cfg, L[t].n, L[t].k);
        d.has_input_scales = 1;
        s = qlib_tensor_create(a, &d, &out[t], FN);
        w[t] = L[t].w;
        ldw[t] = L[t].ldw;
    }
    if (s == QLIB_OK) {
        qlib_part part = qlib_progress_sub(ctx, SHARE_SCALE_GPTQ, 1.0);
        s = qlib_gptq_fill(ctx, count, out, w, ldw, calib, &o, err);
        qlib_progress_restore(ctx, part);
    }
    for (size_t t = 0; t < count && s == QLIB_OK; t++) {
        memcpy((float *)out[t]->input_scales, o.inv, L[t].k * sizeof(float));
        qlib_tensor_seal(out[t], err[t], 1);
    }
    qlib_mem_free(a, w);
    return s;
}

/* count layers reading one input: one set of scales searched on their joint
 * output error, then each layer's clipping and rounding. Fills out[0 ..
 * count-1]; on failure the caller destroys what out holds. */
qlib_status qlib_quantize_shared_awq(qlib_ctx *ctx, size_t count, const float *const *w,
                               const size_t *n, size_t k, const size_t *ldw,
                               const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out)
{
    const qlib_allocator *a = &ctx->alloc;
    awq_layer *L;
    qlib_status s = layers_init(&L, ctx, count, w, n, k, ldw, cfg, calib);
    if (s != QLIB_OK) return s;
    int gptq_rounding = qlib_cfg_int(cfg, QLIB_PARAM_AWQ_ROUNDING);
    float *sc = qlib_mem_alloc(a, 2 * k * sizeof(float));
    awq_cand *best = qlib_mem_alloc(a, count * (sizeof(awq_cand) + sizeof(double)));
    size_t alpha_i;
    if (!sc || !best) s = qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", FN);
    double *err = best ? (double *)(void *)(best + count) : NULL;
    if (s == QLIB_OK)
        s = search_alpha(L, count, qlib_cfg_int(cfg, QLIB_PARAM_AWQ_GRID),
                         qlib_cfg_int(cfg, QLIB_PARAM_AWQ_SCALES), gptq_rounding ? SHARE_SCALE_GPTQ : SHARE_SCALE, sc, sc + k, best, err,
                         &alpha_i);
    if (s == QLIB_OK)
        s = gptq_rounding ? round_gptq(ctx, L, count, cfg, calib, best, out)
                          : round_nearest(ctx, L, count, cfg, best, err, out);
    layers_free(ctx, L, count);
    qlib_mem_free(a, sc);
    qlib_mem_free(a, best);
    return s;
}
