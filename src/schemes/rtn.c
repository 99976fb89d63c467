/* Round to nearest (INT8 / INT4 / INT3 / INT2), and float (NONE) tensors. */
#include <math.h>

#include "schemes.h"

#define TINY_SCALE 5.9604645e-08f   /* smallest fp16 subnormal, 2^-24 */

int qlib_rtn_params_range(float lo, float hi, int bits, int symmetric, qlib_qparams *p)
{
    float s;
    p->maxq = (1 << bits) - 1;
    if (symmetric) {
        float amax = fmaxf(-lo, hi);
        s = amax / (float)((1 << (bits - 1)) - 1);
        p->zero = 1 << (bits - 1);
    } else {
        s = (hi - lo) / (float)p->maxq;
    }
    if (!(s > TINY_SCALE)) s = TINY_SCALE;
    if (s > 65504.0f) return 0;
    p->scale16 = qlib_f32_to_f16_up(s);
    p->scale = qlib_f16_to_f32(p->scale16);
    if (!symmetric) {
        float z = nearbyintf(-lo / p->scale);
        p->zero = z < 0.0f ? 0 : z > (float)p->maxq ? p->maxq : (int)z;
    }
    return 1;
}

int qlib_rtn_params(const float *w, size_t len, int bits, int symmetric, qlib_qparams *p)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < len; i++) {
        lo = fminf(lo, w[i]);
        hi = fmaxf(hi, w[i]);
    }
    return qlib_rtn_params_range(lo, hi, bits, symmetric, p);
}

/* ---- the clipping search ---- */

qlib_clip qlib_clip_of(const qlib_config *cfg)
{
    qlib_clip c = { qlib_cfg_int(cfg, QLIB_PARAM_CLIP_GRID),
                    qlib_cfg_float(cfg, QLIB_PARAM_AWQ_MAX_SHRINK) };
    return c;
}

/* sum wt[j] (v - v^)^2 over the span, the values rounded as the tensor
 * rounds them. */
static double span_error(const qlib_span *sp, const qlib_qparams *p)
{
    const float sc = p->scale, lo = (float)-p->zero, hi = (float)(p->maxq - p->zero);
    double e = 0.0;
    for (size_t r = 0; r < sp->rows; r++) {
        const float *v = sp->v + r * sp->ld;
        for (size_t j = 0; j < sp->len; j++) {
            float x = v[j * sp->stride], d = x - sc * qlib_rtn_level(x, sc, lo, hi);
            e += (double)(sp->wt ? sp->wt[j] : 1.0f) * ((double)d * d);
        }
    }
    return e;
}

int qlib_rtn_params_search(const qlib_span *sp, float lo, float hi, int bits, int symmetric,
                           const qlib_clip *clip, qlib_qparams *p)
{
    if (!qlib_rtn_params_range(lo, hi, bits, symmetric, p)) return 0;
    if (clip->grid <= 1) return 1;
    double best = span_error(sp, p);
    for (int i = 1; i < clip->grid; i++) {
        float r = qlib_clip_ratio(clip, i);
        qlib_qparams c;
        if (!qlib_rtn_params_range(lo * r, hi * r, bits, symmetric, &c)) continue;
        double e = span_error(sp, &c);
        if (e < best) {
            best = e;
            *p = c;
        }
    }
    return 1;
}

qlib_tensor_desc qlib_quant_desc(const qlib_config *cfg, size_t n, size_t k)
{
    qlib_tensor_desc d;
    memset(&d, 0, sizeof d);
    const qlib_method_row *row = qlib_cfg_row(cfg);
    d.method = row->id;
    d.bits = qlib_cfg_int(cfg, QLIB_PARAM_BITS);
    d.group_size = qlib_cfg_int(cfg, QLIB_PARAM_GROUP_SIZE);
    d.symmetric = qlib_cfg_int(cfg, QLIB_PARAM_SYMMETRIC);
    d.n = n;
    d.k = k;
    if (row->header_param) d.param = qlib_cfg_float(cfg, row->header_param);
    return d;
}

void qlib_tensor_put_params(qlib_tensor *t, size_t r, size_t g, const qlib_qparams *p)
{
    size_t idx = r * t->w.scale_stride + g;
    qlib_t_scales(t)[idx] = p->scale16;
    if (!t->d.symmetric) qlib_zero_put(qlib_t_zeros(t), idx, t->d.bits, (unsigned)p->zero);
}

/* ---- RTN fill, rows in parallel ---- */

#define FILL_ROWS 512   /* rows per pass: the caller can stop in between */

/* task(arg, 0 .. tasks-1) over rows [0, n) in passes of FILL_ROWS, the
 * pass's rows in *r0, *r1 (fields of arg); the progress callback is polled
 * between passes. Returns nonzero when it asked to stop. */
static int row_passes(qlib_ctx *ctx, size_t n, size_t *r0, size_t *r1,
                      void (*task)(void *, size_t), void *arg, size_t tasks)
{
    for (*r0 = 0; *r0 < n; *r0 = *r1) {
        if (*r0 && qlib_progress_poll(ctx)) return 1;
        *r1 = n - *r0 < FILL_ROWS ? n : *r0 + FILL_ROWS;
        qlib_ctx_parallel_for(ctx, task, arg, tasks);
    }
    return 0;
}

typedef struct rtn_job {
    qlib_tensor *t;
    const float *w;
    size_t ldw, n_tasks;
    uint8_t *codes;            /* n_tasks x kp */
    qlib_qparams tensor_p;     /* group -1 */
    int failed;                /* a scale overflowed fp16 */
    const qlib_clip *clip;     /* the clipping search, or NULL */
    const float *wt;           /* k: its error weights, or NULL */
    size_t r0, r1;             /* the rows of this pass */
} rtn_job;

static int group_params(const rtn_job *j, const float *v, size_t c0, size_t len, qlib_qparams *p)
{
    const qlib_tensor *t = j->t;
    if (!j->clip) return qlib_rtn_params(v, len, t->d.bits, t->d.symmetric, p);
    float lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < len; i++) {
        lo = fminf(lo, v[i]);
        hi = fmaxf(hi, v[i]);
    }
    qlib_span sp = { v, 1, len, len, 1, j->wt ? j->wt + c0 : NULL };
    return qlib_rtn_params_search(&sp, lo, hi, t->d.bits, t->d.symmetric, j->clip, p);
}

static void rtn_row(rtn_job *j, size_t r, uint8_t *codes)
{
    qlib_tensor *t = j->t;
    const float *wr = j->w + r * j->ldw;
    size_t k = t->d.k, G = t->w.group;
    qlib_qparams p = j->tensor_p;
    for (size_t g = 0; g < t->w.n_groups; g++) {
        size_t c0 = g * G, c1 = c0 + G < k ? c0 + G : k;
        if (t->d.group_size >= 0) {
            if (!group_params(j, wr + c0, c0, c1 - c0, &p)) {
                __atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
                return;
            }
            qlib_tensor_put_params(t, r, g, &p);
        }
        for (size_t c = c0; c < c1; c++) codes[c] = (uint8_t)qlib_rtn_code(&p, wr[c]);
    }
    for (size_t c = k; c < t->w.kp; c++) codes[c] = (uint8_t)p.zero;
    qlib_pack_row(t->d.bits, codes, t->w.kp, qlib_t_codes(t) + r * t->w.row_bytes);
}

static void rtn_task(void *arg, size_t i)
{
    rtn_job *j = arg;
    size_t n = j->r1 - j->r0, r0 = j->r0 + n * i / j->n_tasks;
    size_t r1 = j->r0 + n * (i + 1) / j->n_tasks;
    for (size_t r = r0; r < r1; r++) rtn_row(j, r, j->codes + i * j->t->w.kp);
}

qlib_status qlib_rtn_fill(qlib_ctx *ctx, qlib_tensor *t, const float *w, size_t ldw)
{
    return qlib_rtn_fill_clip(ctx, t, w, ldw, NULL, NULL);
}

qlib_status qlib_rtn_fill_clip(qlib_ctx *ctx, qlib_tensor *t, const float *w, size_t ldw,
                               const qlib_clip *clip, const float *wt)
{
    static const char fn[] = "qlib_quantize";
    rtn_job j = { t, w, ldw, (size_t)ctx->n_threads, NULL, { 0, 0, 0, 0 }, 0, NULL, wt, 0, 0 };
    if (clip && clip->grid > 1) j.clip = clip;
    if (j.n_tasks > t->d.n) j.n_tasks = t->d.n;
    if (t->d.group_size < 0) {
        float lo = 0.0f, hi = 0.0f;
        for (size_t r = 0; r < t->d.n; r++)
            for (size_t c = 0; c < t->d.k; c++) {
                lo = fminf(lo, w[r * ldw + c]);
                hi = fmaxf(hi, w[r * ldw + c]);
            }
        qlib_span sp = { w, t->d.n, ldw, t->d.k, 1, wt };
        int ok = j.clip ? qlib_rtn_params_search(&sp, lo, hi, t->d.bits, t->d.symmetric, j.clip,
                                                 &j.tensor_p)
                        : qlib_rtn_params_range(lo, hi, t->d.bits, t->d.symmetric, &j.tensor_p);
        if (!ok)
            return qlib_fail(QLIB_ERR_NUMERIC, "%s: weight range too large for an fp16 scale", fn);
        qlib_tensor_put_params(t, 0, 0, &j.tensor_p);
    }
    j.codes = qlib_mem_alloc(&ctx->alloc, j.n_tasks * t->w.kp);
    if (!j.codes) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", fn);
    int stop = row_passes(ctx, t->d.n, &j.r0, &j.r1, rtn_task, &j, j.n_tasks);
    qlib_mem_free(&ctx->alloc, j.codes);
    if (stop) return qlib_progress_cancelled(fn, qlib_progress_stage(ctx));
    if (j.failed)
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: a group's range is too large for an fp16 scale",
                         fn);
    return QLIB_OK;
}

/* ---- relative weight error ---- */

typedef struct err_job {
    const qlib_tensor *t;
    const qlib_kernels *kern;
    const float *w;
    size_t ldw, n_tasks;
    float *tmp;                 /* n_tasks x (kp + k) */
    double *num, *den;          /* n: per row, added in row order */
    size_t r0, r1;              /* the rows of this pass */
} err_job;

static void err_task(void *arg, size_t i)
{
    err_job *j = arg;
    size_t k = j->t->d.k, kp = j->t->w.kp ? j->t->w.kp : k;
    size_t rows = j->r1 - j->r0, r0 = j->r0 + rows * i / j->n_tasks;
    size_t r1 = j->r0 + rows * (i + 1) / j->n_tasks;
    float *row = j->tmp + i * (kp + k), *tmp = row + k;
    for (size_t r = r0; r < r1; r++) {
        double num = 0.0, den = 0.0;
        qlib_tensor_row(j->t, j->kern, r, row, tmp);
        for (size_t c = 0; c < k; c++) {
            double wv = j->w[r * j->ldw + c], dv = wv - row[c];
            num += dv * dv;
            den += wv * wv;
        }
        j->num[r] = num;
        j->den[r] = den;
    }
}

qlib_status qlib_relative_error(qlib_ctx *ctx, const qlib_tensor *t, const float *w, size_t ldw,
                                double *out)
{
    size_t k = t->d.k, kp = t->w.kp ? t->w.kp : k;
    err_job j = { t, ctx->kern, w, ldw, (size_t)ctx->n_threads, NULL, NULL, NULL, 0, 0 };
    if (j.n_tasks > t->d.n) j.n_tasks = t->d.n;
    /* Per-row sums added in row order: the error is stored in the blob's
     * header, so it must not depend on the thread count either. */
    void *mem = qlib_mem_alloc(&ctx->alloc, t->d.n * 16 + j.n_tasks * (kp + k) * sizeof(float));
    if (!mem) return qlib_fail(QLIB_ERR_NOMEM, "qlib_quantize: out of memory");
    j.num = mem;
    j.den = j.num + t->d.n;
    j.tmp = (float *)(void *)(j.den + t->d.n);
    if (row_passes(ctx, t->d.n, &j.r0, &j.r1, err_task, &j, j.n_tasks)) {
        qlib_mem_free(&ctx->alloc, mem);
        return qlib_progress_cancelled("qlib_quantize", qlib_progress_stage(ctx));
    }
    double num = 0.0, den = 0.0;
    for (size_t r = 0; r < t->d.n; r++) {
        num += j.num[r];
        den += j.den[r];
    }
    qlib_mem_free(&ctx->alloc, mem);
    *out = den > 0.0 ? num / den : 0.0;
    return QLIB_OK;
}

/* ---- the methods ---- */

static qlib_status finish(qlib_ctx *ctx, qlib_tensor *t, const float *w, size_t ldw,
                          qlib_tensor **out)
{
    double err;
    qlib_status s = qlib_relative_error(ctx, t, w, ldw, &err);
    if (s != QLIB_OK) {
        qlib_tensor_destroy(t);
        return s;
    }
    qlib_tensor_seal(t, err, 0);
    *out = t;
    return QLIB_OK;
}

/* The clipping search's weights from a calibration's ACT_STATS: (mean |x_j|)^2,
 * the diagonal of E[x x^T] as far as the statistics tell it. NULL in *wt
 * when the search is off or there is no such calibration. */
static qlib_status act_weights(qlib_ctx *ctx, const qlib_clip *clip, const qlib_calib *calib,
                               size_t k, float **wt)
{
    *wt = NULL;
    if (clip->grid <= 1 || !calib || !calib->abs_sum) return QLIB_OK;
    if (calib->n_tokens == 0)
        return qlib_fail(QLIB_ERR_STATE, "qlib_quantize: RTN clipping search: the calibration "
                         "saw no tokens");
    float *v = qlib_mem_alloc(&ctx->alloc, k * sizeof(float));
    if (!v) return qlib_fail(QLIB_ERR_NOMEM, "qlib_quantize: out of memory");
    for (size_t j = 0; j < k; j++) {
        float m = (float)(calib->abs_sum[j] / (double)calib->n_tokens);
        v[j] = m * m;
    }
    *wt = v;
    return QLIB_OK;
}

qlib_status qlib_quantize_rtn(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out)
{
    if (qlib_progress(ctx, "rtn", 0.0)) return qlib_progress_cancelled("qlib_quantize", "rtn");
    qlib_clip clip = qlib_clip_of(cfg);
    float *wt;
    qlib_status s = act_weights(ctx, &clip, calib, k, &wt);
    if (s != QLIB_OK) return s;
    qlib_tensor_desc d = qlib_quant_desc(cfg, n, k);
    qlib_tensor *t = NULL;
    s = qlib_tensor_create(&ctx->alloc, &d, &t, "qlib_quantize");
    if (s == QLIB_OK) s = qlib_rtn_fill_clip(ctx, t, w, ldw, &clip, wt);
    qlib_mem_free(&ctx->alloc, wt);
    if (s != QLIB_OK) {
        qlib_tensor_destroy(t);
        return s;
    }
    return finish(ctx, t, w, ldw, out);
}

qlib_status qlib_quantize_none(qlib_ctx *ctx, const float *w, size_t n, size_t k, size_t ldw,
                                 const qlib_config *cfg, const qlib_calib *calib,
                                 qlib_tensor **out)
{
    (void)calib;
    qlib_tensor_desc d;
    memset(&d, 0, sizeof d);
    d.method = QLIB_METHOD_NONE;
    d.bits = qlib_cfg_int(cfg, QLIB_PARAM_BITS);
    d.n = n;
    d.k = k;
    qlib_tensor *t;
    qlib_status s = qlib_tensor_create(&ctx->alloc, &d, &t, "qlib_quantize");
    if (s != QLIB_OK) return s;
    for (size_t r = 0; r < n; r++) {
        const float *wr = w + r * ldw;
        if (d.bits == 32) {
            memcpy((float *)t->f32 + r * k, wr, k * sizeof(float));
            continue;
        }
        for (size_t c = 0; c < k; c++) {
            if (fabsf(wr[c]) > 65504.0f) {
                qlib_tensor_destroy(t);
                return qlib_fail(QLIB_ERR_NUMERIC,
                                 "qlib_quantize: w[%zu][%zu]=%g exceeds the fp16 range", r, c,
                                 (double)wr[c]);
            }
            ((uint16_t *)t->f16)[r * k + c] = qlib_f32_to_f16(wr[c]);
        }
    }
    if (d.bits == 32) {
        qlib_tensor_seal(t, 0.0, 0);
        *out = t;
        return QLIB_OK;
    }
    return finish(ctx, t, w, ldw, out);
}
