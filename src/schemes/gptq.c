/* GPTQ (Frantar et al., 2022): the weights of a row are rounded one input
 * column at a time, and each rounding error is spread, through the upper
 * Cholesky factor of the inverse Hessian, over the columns not yet rounded.
 * docs/ALGORITHMS.md states what is computed and where it departs from the
 * paper's reference code. */
#include <float.h>
#include <math.h>
#include <stdio.h>

#include "schemes.h"
#include "../linalg/linalg.h"

#define ROW_CHUNK 64      /* rows per task of the column sweep: fixed, whatever the thread count */
#define PANEL 8           /* rows swept together, stored transposed so the updates vectorise */
#define TILE 64           /* tile edge when the Hessian's lower triangle is filled in */
#define DAMP_GROWTH 10.0f
#define DAMP_RETRIES 4    /* damping grows this many times after a failed Cholesky */

enum { FAIL_SCALE = 1, FAIL_NONFINITE = 2 };

typedef struct gptq {
    qlib_ctx *ctx;
    qlib_tensor *t;       /* the tensor being filled */
    const float *h;       /* the calibration's H: k x k, upper triangle */
    const float *w;       /* its weights */
    size_t ldw, n;        /* its row stride and rows */
    size_t max_n;         /* the most rows of any tensor sharing the factor: buffers' size */
    size_t k, kp, block;
    size_t group, n_groups;   /* in stored column order (the tensor's) */
    int bits, symmetric, per_tensor, act_order;
    int dynamic;          /* group parameters computed when the sweep enters a group */
    float damp;
    qlib_clip clip;       /* the clipping search (grid > 1), else off */
    const float *s, *inv; /* NULL, or k floats: rounds W diag(s) in the space of
                             diag(inv) H diag(inv), inv = 1/s (AWQ's input scales) */
    qlib_qparams tensor_p;
    float *wk;            /* n x k working weights in stored order; a rounded column holds codes */
    float *hf;            /* k x k: H permuted, then its inverse factor U, then a Gram matrix */
    float *gram;          /* k x k Gram matrix scratch when hf must keep U (shared), else hf */
    float *err;           /* n x block: rounding errors of the current block, over U's pivots */
    uint8_t *zeros;       /* n x n_groups zero points (asymmetric, per group), else NULL */
    int32_t *perm;        /* k: stored position -> original column */
    int32_t *dead;        /* the columns with H_jj = 0 */
    size_t n_dead;
    float *vec;           /* k floats of scratch */
    uint8_t *seen;        /* k bytes of scratch */
    uint8_t *task_mem;    /* scratch per task: sweep_bytes (sweep) or row_bytes (row passes) */
    size_t sweep_bytes, row_bytes, n_sweep_tasks, n_row_tasks;
    float *clip_mem;      /* the clipping search's scratch: clip_floats per task of either kind */
    size_t clip_floats;
    size_t i1, i2;        /* the block being swept */
    int failed;           /* FAIL_* from a task */
} gptq;

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* ---- the inverse Hessian's factor ---- */

static void reverse_floats(float *a, size_t len)
{
    for (size_t i = 0, j = len - 1; i < j; i++, j--) {
        float v = a[i];
        a[i] = a[j];
        a[j] = v;
    }
}

/* Rebuilds the lower triangle of a from its strict upper triangle and diag. */
static void restore_lower(float *a, size_t k, const float *diag)
{
    for (size_t i = 0; i < k; i++) {
        for (size_t j = 0; j < i; j++) a[i * k + j] = a[j * k + i];
        a[i * k + i] = diag[i];
    }
}

static int lower_finite(const float *a, size_t k)
{
    for (size_t i = 0; i < k; i++)
        if (!qlib_all_finite(a + i * k, 1, i + 1, k)) return 0;
    return 1;
}

/* Cholesky of a + lambda I, then its triangular inverse. a is J A J (J the
 * reversal), so that the inverse, reversed back, is the upper factor. */
static int try_factor(float *a, size_t k, const float *diag, float lambda)
{
    for (size_t i = 0; i < k; i++) a[i * k + i] = diag[i] + lambda;
    return qlib_la_cholesky_lower(k, a, k) == 0 && qlib_la_tri_inverse_lower(k, a, k) == 0 &&
           lower_finite(a, k);
}

/* If J A J = L L^T (J reverses the order), then A = R R^T with R = J L J
 * upper, and A^-1 = U^T U with U = R^-1 = J L^-1 J: one Cholesky and one
 * triangular inverse give the factor the reference code gets from a
 * Cholesky, an inverse and a second Cholesky. For a symmetric k x k matrix
 * stored with stride k, J A J is the array read backwards. */
qlib_status qlib_gptq_inverse_factor(float *a, size_t k, float damp, float *diag, float *lambda)
{
    static const char fn[] = "qlib_quantize";
    double mean = 0.0;
    for (size_t i = 0; i < k; i++) mean += a[i * k + i];
    mean /= (double)k;
    if (!(mean > 0.0) || !isfinite(mean))
        return qlib_fail(QLIB_ERR_NUMERIC, "%s: GPTQ Hessian has mean diagonal %g", fn, mean);
    reverse_floats(a, k * k);
    for (size_t i = 0; i < k; i++) diag[i] = a[i * k + i];
    char tried[128];
    size_t len = 0;
    float lam = (float)((double)damp * mean);
    for (int attempt = 0;; attempt++) {
        if (try_factor(a, k, diag, lam)) {
            reverse_floats(a, k * k);
            *lambda = lam;
            return QLIB_OK;
        }
        int w = snprintf(tried + len, sizeof tried - len, "%s%.3g", attempt ? ", " : "",
                         (double)lam);
        if (w > 0) len = min_size(len + (size_t)w, sizeof tried - 1);
        if (lam == 0.0f || attempt == DAMP_RETRIES) break;
        restore_lower(a, k, diag);
        lam *= DAMP_GROWTH;
    }
    return qlib_fail(QLIB_ERR_NUMERIC,
                     "%s: GPTQ Hessian H + lambda*I is not positive definite for lambda = %s "
                     "(damp %g x mean diag H %g)", fn, tried, (double)damp, mean);
}

/* hf = the calibration's H in full (in the scaled space: inv_i H_ij inv_j),
 * dead columns' diagonal set to 1. */
static void hessian_full(gptq *g)
{
    size_t k = g->k;
    const float *h = g->h, *inv = g->inv;
    float *s = g->hf;
    for (size_t i0 = 0; i0 < k; i0 += TILE)
        for (size_t j0 = i0; j0 < k; j0 += TILE)
            for (size_t i = i0; i < min_size(i0 + TILE, k); i++)
                for (size_t j = j0 > i ? j0 : i; j < min_size(j0 + TILE, k); j++) {
                    float v = inv ? h[i * k + j] * inv[i] * inv[j] : h[i * k + j];
                    s[i * k + j] = v;
                    s[j * k + i] = v;
                }
    for (size_t d = 0; d < g->n_dead; d++) s[(size_t)g->dead[d] * (k + 1)] = 1.0f;
}

/* hf = P^T hf P for the stored order: rows moved along the permutation's
 * cycles, then each row gathered. */
static void hessian_permute(gptq *g)
{
    size_t k = g->k;
    float *s = g->hf, *tmp = g->vec;
    memset(g->seen, 0, k);
    for (size_t c = 0; c < k; c++) {
        if (g->seen[c] || (size_t)g->perm[c] == c) continue;
        memcpy(tmp, s + c * k, k * sizeof(float));
        size_t cur = c;
        for (;;) {
            size_t next = (size_t)g->perm[cur];
            g->seen[cur] = 1;
            if (next == c) break;
            memcpy(s + cur * k, s + next * k, k * sizeof(float));
            cur = next;
        }
        memcpy(s + cur * k, tmp, k * sizeof(float));
    }
    for (size_t i = 0; i < k; i++) {
        float *row = s + i * k;
        for (size_t j = 0; j < k; j++) tmp[j] = row[g->perm[j]];
        memcpy(row, tmp, k * sizeof(float));
    }
}

/* ---- column order ---- */

typedef struct col_key { float h; int32_t col; } col_key;

/* Decreasing h, ties by increasing column: a total order, so any correct
 * sort gives the one result. */
static int goes_before(const col_key *a, const col_key *b)
{
    return a->h > b->h || (a->h == b->h && a->col < b->col);
}

static void sift_down(col_key *a, size_t i, size_t n)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && goes_before(&a[c], &a[c + 1])) c++;
        if (!goes_before(&a[i], &a[c])) return;
        col_key t = a[i];
        a[i] = a[c];
        a[c] = t;
        i = c;
    }
}

/* Heapsort: in place, so no allocation outside the context's allocator. */
static void sort_keys(col_key *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;) sift_down(a, i, n);
    for (size_t end = n; end > 1; end--) {
        col_key t = a[0];
        a[0] = a[end - 1];
        a[end - 1] = t;
        sift_down(a, 0, end - 1);
    }
}

/* act_order: decreasing diag(H) after the dead-column fix, ties by column.
 * keys borrows the working weights' first 2k floats, not yet filled. */
static void order_columns(gptq *g, int act_order)
{
    size_t k = g->k;
    if (!act_order) {
        for (size_t j = 0; j < k; j++) g->perm[j] = (int32_t)j;
        return;
    }
    col_key *keys = (col_key *)(void *)g->wk;
    for (size_t j = 0; j < k; j++) {
        keys[j].h = g->inv ? g->h[j * (k + 1)] * g->inv[j] * g->inv[j] : g->h[j * (k + 1)];
        keys[j].col = (int32_t)j;
    }
    for (size_t d = 0; d < g->n_dead; d++) keys[g->dead[d]].h = 1.0f;
    sort_keys(keys, k);
    for (size_t j = 0; j < k; j++) g->perm[j] = keys[j].col;
}

/* ---- group parameters ---- */

static void params_store(gptq *g, size_t r, size_t grp, const qlib_qparams *p)
{
    qlib_t_scales(g->t)[r * g->n_groups + grp] = p->scale16;
    if (g->zeros) g->zeros[r * g->n_groups + grp] = (uint8_t)p->zero;
}

static void params_load(const gptq *g, size_t r, size_t grp, qlib_qparams *p)
{
    p->scale16 = g->t->w.scales[r * g->n_groups + grp];
    p->scale = qlib_f16_to_f32(p->scale16);
    p->zero = g->zeros ? g->zeros[r * g->n_groups + grp] : 1 << (g->bits - 1);
    p->maxq = (1 << g->bits) - 1;
}

static void set_failed(gptq *g, int why)
{
    __atomic_store_n(&g->failed, why, __ATOMIC_RELAXED);
}

/* Parameters of one group of one row from its len values v[j * stride]:
 * the plain range. */
static int plain_params(const gptq *g, const float *v, size_t stride, size_t len, qlib_qparams *p)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t j = 0; j < len; j++) {
        lo = fminf(lo, v[j * stride]);
        hi = fmaxf(hi, v[j * stride]);
    }
    return qlib_rtn_params_range(lo, hi, g->bits, g->symmetric, p);
}

/* GPTQ's loss on one group (stored columns c0 .. c0+len-1) of a panel's
 * rows, their values v[j * PANEL + r] as the sweep enters the group, under
 * parameters c[r]: the group swept as GPTQ's loop sweeps it, each column
 * rounded and its error e_j = (v_j - v^_j) / U_jj spread over the group's
 * later columns through row j of U; e[r] = sum_j e_j^2 (which is that
 * group's share of tr(dW H dW^T), U H U^T being I). work: len * PANEL
 * floats. */
static void panel_loss(const gptq *g, const float *v, size_t c0, size_t len,
                       const qlib_qparams *c, float *work, double *e)
{
    size_t k = g->k;
    float sc[PANEL], lo[PANEL], hi[PANEL];
    for (size_t r = 0; r < PANEL; r++) {
        e[r] = 0.0;
        sc[r] = c[r].scale;
        lo[r] = (float)-c[r].zero;
        hi[r] = (float)(c[r].maxq - c[r].zero);
    }
    memcpy(work, v, len * PANEL * sizeof(float));
    for (size_t j = 0; j < len; j++) {
        const float *u = g->hf + (c0 + j) * k + c0;
        float *wj = work + j * PANEL, d[PANEL];
        for (size_t r = 0; r < PANEL; r++) {
            float x = wj[r];
            d[r] = (x - sc[r] * qlib_rtn_level(x, sc[r], lo[r], hi[r])) / u[j];
            e[r] += (double)d[r] * d[r];
        }
        for (size_t l = j + 1; l < len; l++) {
            float ul = u[l], *wl = work + l * PANEL;
            for (size_t r = 0; r < PANEL; r++) wl[r] -= d[r] * ul;
        }
    }
}

/* The clipping search for one group of a panel's rows r < nr (values as
 * panel_loss takes them): each row keeps the ratio whose loss is least, the
 * larger ratio on ties. work: len * PANEL floats. Returns 0 when a plain
 * range's scale exceeds fp16. */
static int panel_search(const gptq *g, const float *v, size_t nr, size_t c0, size_t len,
                        float *work, qlib_qparams *p)
{
    float lo[PANEL], hi[PANEL];
    double best[PANEL], e[PANEL];
    for (size_t r = 0; r < PANEL; r++) lo[r] = hi[r] = 0.0f;
    for (size_t j = 0; j < len; j++)
        for (size_t r = 0; r < nr; r++) {
            lo[r] = fminf(lo[r], v[j * PANEL + r]);
            hi[r] = fmaxf(hi[r], v[j * PANEL + r]);
        }
    for (size_t r = 0; r < nr; r++)
        if (!qlib_rtn_params_range(lo[r], hi[r], g->bits, g->symmetric, &p[r])) return 0;
    for (int i = 0; i < g->clip.grid; i++) {
        float ratio = qlib_clip_ratio(&g->clip, i);
        qlib_qparams c[PANEL];
        for (size_t r = 0; r < PANEL; r++) {
            c[r] = p[r < nr ? r : 0];
            if (r < nr && i > 0 &&
                !qlib_rtn_params_range(lo[r] * ratio, hi[r] * ratio, g->bits, g->symmetric, &c[r]))
                c[r] = p[r];
        }
        panel_loss(g, v, c0, len, c, work, e);
        for (size_t r = 0; r < nr; r++)
            if (i == 0 || e[r] < best[r]) {
                best[r] = e[r];
                p[r] = c[r];
            }
    }
    return 1;
}

/* Rows p0 .. p0+nr-1, stored columns c0 .. c0+len-1 of the working weights
 * into out[j * PANEL + r] (rows past nr zero), for panel_search. */
static void gather_panel(const gptq *g, size_t p0, size_t nr, size_t c0, size_t len, float *out)
{
    for (size_t j = 0; j < len; j++)
        for (size_t r = 0; r < PANEL; r++)
            out[j * PANEL + r] = r < nr ? g->wk[(p0 + r) * g->k + c0 + j] : 0.0f;
}

/* ---- passes over rows, split evenly over the threads (rows are independent) ---- */

static void row_range(const gptq *g, size_t task, size_t *r0, size_t *r1)
{
    *r0 = g->n * task / g->n_row_tasks;
    *r1 = g->n * (task + 1) / g->n_row_tasks;
}

static void load_task(void *arg, size_t task)
{
    gptq *g = arg;
    size_t r0, r1, k = g->k;
    row_range(g, task, &r0, &r1);
    for (size_t r = r0; r < r1; r++) {
        float *wr = g->wk + r * k;
        memcpy(wr, g->w + r * g->ldw, k * sizeof(float));
        for (size_t d = 0; d < g->n_dead; d++) wr[g->dead[d]] = 0.0f;
    }
}

/* W diag(s): the weights in the space GPTQ rounds them in. */
static void scale_task(void *arg, size_t task)
{
    gptq *g = arg;
    size_t r0, r1, k = g->k;
    row_range(g, task, &r0, &r1);
    for (size_t r = r0; r < r1; r++)
        for (size_t c = 0; c < k; c++) g->wk[r * k + c] *= g->s[c];
}

static void permute_task(void *arg, size_t task)
{
    gptq *g = arg;
    size_t r0, r1, k = g->k;
    float *tmp = (float *)(void *)(g->task_mem + task * g->row_bytes);
    row_range(g, task, &r0, &r1);
    for (size_t r = r0; r < r1; r++) {
        float *wr = g->wk + r * k;
        for (size_t j = 0; j < k; j++) tmp[j] = wr[g->perm[j]];
        memcpy(wr, tmp, k * sizeof(float));
    }
}

/* static_groups: every group's parameters from the weights before any update. */
static void static_params_task(void *arg, size_t task)
{
    gptq *g = arg;
    size_t r0, r1, k = g->k;
    row_range(g, task, &r0, &r1);
    if (g->clip.grid > 1) {
        float *v = g->clip_mem + task * g->clip_floats, *work = v + g->clip_floats / 2;
        for (size_t p0 = r0; p0 < r1; p0 += PANEL)
            for (size_t grp = 0; grp < g->n_groups; grp++) {
                size_t c0 = grp * g->group, len = min_size(g->group, k - c0);
                size_t nr = min_size(PANEL, r1 - p0);
                qlib_qparams p[PANEL];
                gather_panel(g, p0, nr, c0, len, v);
                if (!panel_search(g, v, nr, c0, len, work, p)) {
                    set_failed(g, FAIL_SCALE);
                    return;
                }
                for (size_t r = 0; r < nr; r++) params_store(g, p0 + r, grp, &p[r]);
            }
        return;
    }
    for (size_t r = r0; r < r1; r++)
        for (size_t grp = 0; grp < g->n_groups; grp++) {
            size_t c0 = grp * g->group, len = min_size(g->group, k - c0);
            qlib_qparams p;
            if (!plain_params(g, g->wk + r * k + c0, 1, len, &p)) {
                set_failed(g, FAIL_SCALE);
                return;
            }
            params_store(g, r, grp, &p);
        }
}

/* Codes to the tensor; then the row's error W - W^ in the original column
 * order, in place of the codes, for the Hessian-weighted error. */
static void finish_task(void *arg, size_t task)
{
    gptq *g = arg;
    qlib_tensor *t = g->t;
    size_t r0, r1, k = g->k, kp = g->kp;
    float *deq = (float *)(void *)(g->task_mem + task * g->row_bytes);
    uint8_t *codes = (uint8_t *)(deq + kp);
    row_range(g, task, &r0, &r1);
    for (size_t r = r0; r < r1; r++) {
        float *wr = g->wk + r * k;
        const float *w0 = g->w + r * g->ldw;
        for (size_t j = 0; j < k; j++) codes[j] = (uint8_t)wr[j];
        int pad = g->per_tensor ? g->tensor_p.zero
                : g->zeros ? g->zeros[r * g->n_groups + g->n_groups - 1] : 1 << (g->bits - 1);
        memset(codes + k, pad, kp - k);
        qlib_pack_row(g->bits, codes, kp, qlib_t_codes(t) + r * t->w.row_bytes);
        g->ctx->kern->dequant_row(&t->w, r, deq);
        for (size_t j = 0; j < k; j++) {
            size_t c = (size_t)g->perm[j];
            wr[c] = w0[c] - (g->inv ? deq[j] * g->inv[c] : deq[j]);
        }
    }
}

/* ---- the column sweep of one block ---- */

/* Parameters of group grp for the panel's rows: computed if the sweep is
 * entering the group (from the panel, or from the working weights when the
 * group reaches past the block, which only happens at the block's start,
 * before any update), else loaded. */
static int panel_params(gptq *g, size_t p0, size_t nr, const float *seg, size_t i, size_t grp,
                        qlib_qparams *p, float *clip)
{
    size_t col = g->i1 + i, c0 = grp * g->group, len = min_size(g->group, g->k - c0);
    if (g->dynamic && c0 == col && g->clip.grid > 1) {
        const float *v = seg + i * PANEL;
        if (c0 + len > g->i2) {
            gather_panel(g, p0, nr, c0, len, clip);
            v = clip;
        }
        if (!panel_search(g, v, nr, c0, len, clip + g->clip_floats / 2, p)) return FAIL_SCALE;
        for (size_t r = 0; r < nr; r++) params_store(g, p0 + r, grp, &p[r]);
        return 0;
    }
    for (size_t r = 0; r < nr; r++) {
        if (!g->dynamic || c0 != col) {
            params_load(g, p0 + r, grp, &p[r]);
            continue;
        }
        int ok;
        if (c0 + len <= g->i2)
            ok = plain_params(g, seg + i * PANEL + r, PANEL, len, &p[r]);
        else
            ok = plain_params(g, g->wk + (p0 + r) * g->k + c0, 1, len, &p[r]);
        if (!ok) return FAIL_SCALE;
        params_store(g, p0 + r, grp, &p[r]);
    }
    return 0;
}

/* Rows p0 .. p0+nr-1 through columns i1 .. i2-1. seg holds the block
 * transposed (PANEL values per column); rows past nr stay zero. */
static int sweep_panel(gptq *g, size_t p0, size_t nr, float *seg, float *clip)
{
    size_t i1 = g->i1, bc = g->i2 - i1, k = g->k;
    for (size_t i = 0; i < bc; i++)
        for (size_t r = 0; r < PANEL; r++)
            seg[i * PANEL + r] = r < nr ? g->wk[(p0 + r) * k + i1 + i] : 0.0f;
    qlib_qparams p[PANEL];
    for (size_t r = 0; r < PANEL; r++) p[r] = g->tensor_p;
    size_t cur = SIZE_MAX;
    float e[PANEL];
    for (size_t i = 0; i < bc; i++) {
        size_t col = i1 + i, grp = g->per_tensor ? 0 : col / g->group;
        if (!g->per_tensor && grp != cur) {
            int why = panel_params(g, p0, nr, seg, i, grp, p, clip);
            if (why) return why;
            cur = grp;
        }
        const float *u = g->hf + col * k;    /* row col of U */
        float *s = seg + i * PANEL;
        for (size_t r = 0; r < PANEL; r++) {
            e[r] = 0.0f;
            if (r >= nr) continue;
            float v = s[r];
            if (!(fabsf(v) <= FLT_MAX)) return FAIL_NONFINITE;
            int c = qlib_rtn_code(&p[r], v);
            e[r] = (v - qlib_rtn_value(&p[r], c)) / u[col];
            g->wk[(p0 + r) * k + col] = (float)c;
            g->err[(p0 + r) * g->block + i] = e[r];
        }
        for (size_t j = i + 1; j < bc; j++) {
            float uj = u[i1 + j], *sj = seg + j * PANEL;
            for (size_t r = 0; r < PANEL; r++) sj[r] -= e[r] * uj;
        }
    }
    return 0;
}

static void sweep_task(void *arg, size_t task)
{
    gptq *g = arg;
    size_t r0 = task * ROW_CHUNK, r1 = min_size(r0 + ROW_CHUNK, g->n);
    float *seg = (float *)(void *)(g->task_mem + task * g->sweep_bytes);
    float *clip = g->dynamic && g->clip_mem ? g->clip_mem + task * g->clip_floats : NULL;
    for (size_t p0 = r0; p0 < r1; p0 += PANEL) {
        int why = sweep_panel(g, p0, min_size(PANEL, r1 - p0), seg, clip);
        if (why) {
            set_failed(g, why);
            return;
        }
    }
}

/* The block starting at i1: block_size columns, cut short so that a group
 * the sweep enters inside the block also ends inside it (its parameters
 * then come from fully updated weights). */
static size_t block_end(const gptq *g, size_t i1)
{
    size_t i2 = min_size(i1 + g->block, g->k);
    if (g->dynamic && i2 < g->k) {
        size_t start = (i2 - 1) / g->group * g->group;
        if (start > i1 && start + g->group > i2) i2 = start;
    }
    return i2;
}

/* ---- the Hessian-weighted error ---- */

/* <H, A^T A> = tr(A H A^T) for A (n x k, stride k), with the calibration's H
 * (the original space) and A^T A formed in scratch (k x k). */
static double hessian_inner(gptq *g, const float *a, float *scratch)
{
    size_t k = g->k;
    qlib_la_syrk_upper(k, g->n, 1.0f, a, k, 0.0f, scratch, k);
    double sum = 0.0;
    for (size_t i = 0; i < k; i++) {
        const float *hr = g->h + i * k, *gr = scratch + i * k;
        double off = 0.0;
        for (size_t j = i + 1; j < k; j++) off += (double)hr[j] * gr[j];
        sum += (double)hr[i] * gr[i] + 2.0 * off;
    }
    return sum;
}

/* ---- setup ---- */

/* Buffers for tensors of up to max_n rows; shared: a Gram matrix of its own,
 * since hf keeps the factor from one tensor to the next. */
static qlib_status gptq_alloc(gptq *g, int shared)
{
    static const char fn[] = "qlib_quantize";
    const qlib_allocator *a = &g->ctx->alloc;
    size_t nk, kk, ne, nz = 0;
    if (qlib_mul_overflows(g->k, g->k, &kk) || kk > SIZE_MAX / 4 ||
        qlib_mul_overflows(g->max_n, g->block, &ne) || ne > SIZE_MAX / 4 ||
        qlib_mul_overflows(g->max_n, g->k, &nk) || nk > SIZE_MAX / 4)
        return qlib_fail(QLIB_ERR_ARG, "%s: GPTQ buffers for %zu x %zu overflow", fn, g->max_n,
                         g->k);
    if (nk < 2 * g->k) nk = 2 * g->k;   /* the sort keys borrow wk's first 2k floats */
    if (!g->symmetric && !g->per_tensor) nz = g->max_n * g->n_groups;
    size_t n_sweep = (g->max_n + ROW_CHUNK - 1) / ROW_CHUNK;
    size_t n_rows = min_size((size_t)g->ctx->n_threads, g->max_n);
    g->sweep_bytes = qlib_round_up(PANEL * g->block * sizeof(float), QLIB_ALIGN);
    g->row_bytes = qlib_round_up(g->kp * (sizeof(float) + 1), QLIB_ALIGN);
    size_t task_mem = n_sweep * g->sweep_bytes;
    if (task_mem < n_rows * g->row_bytes) task_mem = n_rows * g->row_bytes;
    g->wk = qlib_mem_alloc(a, nk * sizeof(float));
    g->hf = g->wk ? qlib_mem_alloc(a, kk * sizeof(float)) : NULL;
    g->err = g->hf ? qlib_mem_alloc(a, ne * sizeof(float)) : NULL;
    g->task_mem = g->err ? qlib_mem_alloc(a, task_mem) : NULL;
    g->vec = g->task_mem ? qlib_mem_alloc(a, g->k * (2 * sizeof(int32_t) + sizeof(float) + 1))
                         : NULL;
    g->zeros = g->vec && nz ? qlib_mem_alloc(a, nz) : NULL;
    g->gram = shared ? (g->vec && (!nz || g->zeros) ? qlib_mem_alloc(a, kk * sizeof(float)) : NULL)
                     : g->hf;
    int clip_mem = g->clip.grid > 1;
    if (clip_mem) {   /* a panel's group twice: its values and the search's copy, per task of
                         the sweep (dynamic groups) or of the row passes (static, per tensor) */
        size_t len = g->per_tensor ? g->k : min_size(g->group, g->k);
        g->clip_floats = qlib_round_up(2 * PANEL * len, QLIB_ALIGN / 4);
        g->clip_mem = g->gram ? qlib_mem_alloc(a, (g->dynamic ? n_sweep : n_rows) *
                                                  g->clip_floats * sizeof(float))
                              : NULL;
    }
    if (!g->vec || (nz && !g->zeros) || !g->gram || (clip_mem && !g->clip_mem))
        return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory for GPTQ on %zu x %zu", fn, g->max_n,
                         g->k);
    g->dead = (int32_t *)(void *)(g->vec + g->k);
    g->perm = g->dead + g->k;
    g->seen = (uint8_t *)(g->perm + g->k);
    return QLIB_OK;
}

static void gptq_release(gptq *g)
{
    const qlib_allocator *a = &g->ctx->alloc;
    if (g->gram != g->hf) qlib_mem_free(a, g->gram);
    qlib_mem_free(a, g->clip_mem);
    qlib_mem_free(a, g->wk);
    qlib_mem_free(a, g->hf);
    qlib_mem_free(a, g->err);
    qlib_mem_free(a, g->task_mem);
    qlib_mem_free(a, g->vec);
    qlib_mem_free(a, g->zeros);
}

static void find_dead(gptq *g)
{
    g->n_dead = 0;
    for (size_t j = 0; j < g->k; j++)
        if (g->h[j * (g->k + 1)] == 0.0f) g->dead[g->n_dead++] = (int32_t)j;
}

/* A per-tensor search's job: the candidates, and each row's loss under each. */
typedef struct tensor_search {
    gptq *g;
    const qlib_qparams *cand;   /* grid */
    double *loss;               /* n x grid */
} tensor_search;

static void tensor_search_task(void *arg, size_t task)
{
    tensor_search *ts = arg;
    gptq *g = ts->g;
    size_t r0, r1, grid = (size_t)g->clip.grid;
    float *v = g->clip_mem + task * g->clip_floats, *work = v + g->clip_floats / 2;
    row_range(g, task, &r0, &r1);
    for (size_t p0 = r0; p0 < r1; p0 += PANEL) {
        size_t nr = min_size(PANEL, r1 - p0);
        gather_panel(g, p0, nr, 0, g->k, v);
        for (size_t i = 0; i < grid; i++) {
            qlib_qparams c[PANEL];
            double e[PANEL];
            for (size_t r = 0; r < PANEL; r++) c[r] = ts->cand[i];
            panel_loss(g, v, 0, g->k, c, work, e);
            for (size_t r = 0; r < nr; r++) ts->loss[(p0 + r) * grid + i] = e[r];
        }
    }
}

/* group -1: one scale for the tensor, from the weights before any update;
 * with the clipping search, the ratio whose GPTQ loss summed over the rows
 * (each row swept whole, in row order) is least. */
static qlib_status tensor_params(gptq *g)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < g->n * g->k; i++) {
        lo = fminf(lo, g->wk[i]);
        hi = fmaxf(hi, g->wk[i]);
    }
    if (!qlib_rtn_params_range(lo, hi, g->bits, g->symmetric, &g->tensor_p))
        return qlib_fail(QLIB_ERR_NUMERIC, "qlib_quantize: weight range too large for an fp16 scale");
    if (g->clip.grid > 1) {
        size_t grid = (size_t)g->clip.grid;
        const qlib_allocator *a = &g->ctx->alloc;
        qlib_qparams *cand = qlib_mem_alloc(a, grid * sizeof(qlib_qparams));
        double *loss = qlib_mem_alloc(a, g->n * grid * sizeof(double));
        if (!cand || !loss) {
            qlib_mem_free(a, cand);
            qlib_mem_free(a, loss);
            return qlib_fail(QLIB_ERR_NOMEM, "qlib_quantize: out of memory for the clipping search");
        }
        for (size_t i = 0; i < grid; i++) {
            float ratio = qlib_clip_ratio(&g->clip, (int)i);
            if (i == 0 || !qlib_rtn_params_range(lo * ratio, hi * ratio, g->bits, g->symmetric,
                                                 &cand[i]))
                cand[i] = g->tensor_p;
        }
        tensor_search ts = { g, cand, loss };
        qlib_ctx_parallel_for(g->ctx, tensor_search_task, &ts, g->n_row_tasks);
        double best = 0.0;
        for (size_t i = 0; i < grid; i++) {
            double e = 0.0;
            for (size_t r = 0; r < g->n; r++) e += loss[r * grid + i];
            if (i == 0 || e < best) {
                best = e;
                g->tensor_p = cand[i];
            }
        }
        qlib_mem_free(a, cand);
        qlib_mem_free(a, loss);
    }
    qlib_tensor_put_params(g->t, 0, 0, &g->tensor_p);
    return QLIB_OK;
}

static qlib_status sweep_failure(const gptq *g)
{
    if (g->failed == FAIL_SCALE)
        return qlib_fail(QLIB_ERR_NUMERIC, "qlib_quantize: GPTQ: a group's range is too large "
                         "for an fp16 scale (columns %zu..%zu in stored order)", g->i1, g->i2 - 1);
    return qlib_fail(QLIB_ERR_NUMERIC, "qlib_quantize: GPTQ: updated weights are not finite "
                     "(columns %zu..%zu in stored order)", g->i1, g->i2 - 1);
}

/* The share of a tensor's part before the column sweep (the Hessian's
 * factor), and after it (packing). */
#define SHARE_HESSIAN 0.1
#define SHARE_SWEEP 0.85

static qlib_status sweep_blocks(gptq *g)
{
    size_t k = g->k;
    for (size_t i1 = 0; i1 < k; i1 = g->i2) {
        if (qlib_progress(g->ctx, "gptq", SHARE_HESSIAN + SHARE_SWEEP * (double)i1 / (double)k))
            return qlib_progress_cancelled("qlib_quantize", "gptq");
        g->i1 = i1;
        g->i2 = block_end(g, i1);
        qlib_ctx_parallel_for(g->ctx, sweep_task, g, g->n_sweep_tasks);
        if (g->failed) return sweep_failure(g);
        /* the lazy batch update: the rest of W, one GEMM per block */
        if (g->i2 < k)
            qlib_la_sgemm(0, 0, g->n, k - g->i2, g->i2 - i1, -1.0f, g->err, g->block,
                          g->hf + i1 * k + g->i2, k, 1.0f, g->wk + g->i2, k);
    }
    if (g->zeros)
        for (size_t i = 0; i < g->n * g->n_groups; i++)
            qlib_zero_put(qlib_t_zeros(g->t), i, g->bits, g->zeros[i]);
    return QLIB_OK;
}

/* The tensor t (n rows of w, stride ldw) is the one being filled. */
static void gptq_bind(gptq *g, qlib_tensor *t, const float *w, size_t ldw)
{
    g->t = t;
    g->w = w;
    g->ldw = ldw;
    g->n = t->d.n;
    g->n_sweep_tasks = (g->n + ROW_CHUNK - 1) / ROW_CHUNK;
    g->n_row_tasks = min_size((size_t)g->ctx->n_threads, g->n);
    g->failed = 0;
}

/* The inverse factor U of the (scaled, permuted) Hessian. */
static qlib_status gptq_factor(gptq *g)
{
    float lambda;
    hessian_full(g);
    if (g->act_order) hessian_permute(g);
    qlib_status s = qlib_gptq_inverse_factor(g->hf, g->k, g->damp, g->vec, &lambda);
    if (s != QLIB_OK) return s;
    return QLIB_OK;
}

/* The bound tensor's working weights, in the rounding space and the stored
 * order; *den = tr(W H W^T) in the original space. */
static void gptq_load(gptq *g, double *den)
{
    qlib_ctx_parallel_for(g->ctx, load_task, g, g->n_row_tasks);
    *den = hessian_inner(g, g->wk, g->gram);
    if (g->s) qlib_ctx_parallel_for(g->ctx, scale_task, g, g->n_row_tasks);
    if (g->act_order) {
        qlib_ctx_parallel_for(g->ctx, permute_task, g, g->n_row_tasks);
        memcpy((int32_t *)g->t->perm, g->perm, g->k * sizeof(int32_t));
    }
}

/* Rounds the loaded weights into the bound tensor; *error = tr(dW H dW^T) /
 * den in the original space. */
static qlib_status gptq_round(gptq *g, double den, double *error)
{
    qlib_status s;
    if (g->per_tensor) {
        s = tensor_params(g);
        if (s != QLIB_OK) return s;
    } else if (!g->dynamic) {
        qlib_ctx_parallel_for(g->ctx, static_params_task, g, g->n_row_tasks);
        if (g->failed)
            return qlib_fail(QLIB_ERR_NUMERIC,
                             "qlib_quantize: a group's range is too large for an fp16 scale");
    }
    s = sweep_blocks(g);
    if (s != QLIB_OK) return s;
    if (qlib_progress(g->ctx, "pack", SHARE_HESSIAN + SHARE_SWEEP))
        return qlib_progress_cancelled("qlib_quantize", "pack");
    qlib_ctx_parallel_for(g->ctx, finish_task, g, g->n_row_tasks);
    /* Both are >= 0 for a positive semidefinite H; a Hessian of subnormal
     * values is that only up to rounding, and the error stays >= 0 so that
     * the blob loads (docs/FORMAT.md). */
    double num = hessian_inner(g, g->wk, g->gram);
    *error = den > 0.0 && num > 0.0 ? num / den : 0.0;
    return QLIB_OK;
}

/* One tensor: its weights load before the factor, whose buffer serves as the
 * Gram matrix's scratch until then. Several: the factor once, then each
 * tensor in its share of the progress (by rows). */
static qlib_status gptq_run(gptq *g, size_t count, qlib_tensor *const *t, const float *const *w,
                            const size_t *ldw, double *error)
{
    double den;
    if (qlib_progress(g->ctx, "hessian", 0.0))
        return qlib_progress_cancelled("qlib_quantize", "hessian");
    find_dead(g);
    order_columns(g, g->act_order);
    qlib_status s;
    if (count == 1) {
        gptq_bind(g, t[0], w[0], ldw[0]);
        gptq_load(g, &den);
        s = gptq_factor(g);
        return s == QLIB_OK ? gptq_round(g, den, &error[0]) : s;
    }
    s = gptq_factor(g);
    double rows = 0.0, done = 0.0;
    for (size_t i = 0; i < count; i++) rows += (double)t[i]->d.n;
    for (size_t i = 0; i < count && s == QLIB_OK; i++) {
        qlib_part part = qlib_progress_sub(g->ctx, done / rows, (done + (double)t[i]->d.n) / rows);
        gptq_bind(g, t[i], w[i], ldw[i]);
        gptq_load(g, &den);
        s = gptq_round(g, den, &error[i]);
        qlib_progress_restore(g->ctx, part);
        done += (double)t[i]->d.n;
    }
    return s;
}

qlib_gptq_opts qlib_gptq_opts_of(const qlib_config *cfg)
{
    qlib_gptq_opts o;
    memset(&o, 0, sizeof o);
    const qlib_method_row *row = qlib_cfg_row(cfg);
    o.damp = qlib_method_param(row, QLIB_PARAM_GPTQ_DAMP)
             ? qlib_cfg_float(cfg, QLIB_PARAM_GPTQ_DAMP) : GPTQ_DEFAULT_DAMP;
    o.block = qlib_method_param(row, QLIB_PARAM_GPTQ_BLOCK_SIZE)
              ? (size_t)qlib_cfg_int(cfg, QLIB_PARAM_GPTQ_BLOCK_SIZE) : GPTQ_DEFAULT_BLOCK;
    o.act_order = qlib_cfg_int(cfg, QLIB_PARAM_GPTQ_ACT_ORDER);
    o.static_groups = qlib_cfg_int(cfg, QLIB_PARAM_GPTQ_STATIC_GROUPS);
    o.clip = qlib_clip_of(cfg);
    return o;
}

qlib_status qlib_gptq_fill(qlib_ctx *ctx, size_t count, qlib_tensor *const *t,
                           const float *const *w, const size_t *ldw, const qlib_calib *calib,
                           const qlib_gptq_opts *o, double *error)
{
    const qlib_tensor *t0 = t[0];
    gptq g;
    memset(&g, 0, sizeof g);
    g.ctx = ctx;
    g.h = calib->hessian;
    g.k = t0->d.k;
    g.kp = t0->w.kp;
    for (size_t i = 0; i < count; i++) g.max_n = t[i]->d.n > g.max_n ? t[i]->d.n : g.max_n;
    g.block = min_size(o->block, g.k);
    g.group = t0->w.group;
    g.n_groups = t0->w.n_groups;
    g.bits = t0->d.bits;
    g.symmetric = t0->d.symmetric;
    g.per_tensor = t0->d.group_size < 0;
    g.act_order = o->act_order;
    g.dynamic = !g.per_tensor && !o->static_groups;
    g.damp = o->damp;
    g.clip = o->clip;
    g.s = o->s;
    g.inv = o->inv;
    qlib_status s = gptq_alloc(&g, count > 1);
    if (s == QLIB_OK) s = gptq_run(&g, count, t, w, ldw, error);
    gptq_release(&g);
    return s;
}

static qlib_status calib_check(const qlib_calib *calib, size_t k)
{
    static const char fn[] = "qlib_quantize";
    if (!calib) return qlib_fail(QLIB_ERR_STATE, "%s: GPTQ needs a calibration (calib is NULL)", fn);
    if (!calib->hessian)
        return qlib_fail(QLIB_ERR_STATE, "%s: GPTQ needs a calibration made with QLIB_CALIB_HESSIAN",
                         fn);
    if (calib->n_tokens == 0)
        return qlib_fail(QLIB_ERR_STATE, "%s: GPTQ calibration has seen no tokens", fn);
    if (calib->k != k)
        return qlib_fail(QLIB_ERR_SHAPE, "%s: calibration has k=%zu, weights have k=%zu", fn,
                         calib->k, k);
    return QLIB_OK;
}

/* count tensors of one calibration into out[0 .. count-1]; on failure the
 * caller destroys what out holds. */
qlib_status qlib_quantize_shared_gptq(qlib_ctx *ctx, size_t count, const float *const *w,
                                const size_t *n, size_t k, const size_t *ldw,
                                const qlib_config *cfg, const qlib_calib *calib, qlib_tensor **out)
{
    qlib_status s = calib_check(calib, k);
    qlib_gptq_opts o = qlib_gptq_opts_of(cfg);
    for (size_t i = 0; i < count && s == QLIB_OK; i++) {
        qlib_tensor_desc d = qlib_quant_desc(cfg, n[i], k);
        d.has_perm = o.act_order;
        s = qlib_tensor_create(&ctx->alloc, &d, &out[i], "qlib_quantize");
    }
    double one, *error = count == 1 ? &one : qlib_mem_alloc(&ctx->alloc, count * sizeof(double));
    if (s == QLIB_OK && !error) s = qlib_fail(QLIB_ERR_NOMEM, "qlib_quantize: out of memory");
    if (s == QLIB_OK) s = qlib_gptq_fill(ctx, count, out, w, ldw, calib, &o, error);
    for (size_t i = 0; i < count && s == QLIB_OK; i++) qlib_tensor_seal(out[i], error[i], 1);
    if (error != &one) qlib_mem_free(&ctx->alloc, error);
    return s;
}
