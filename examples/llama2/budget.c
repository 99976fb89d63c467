/*
 * --target-bpw B: a bit budget across the projections. Each projection gets
 * one of the candidate settings (the --method list x bits {2, 3, 4, 8} x
 * groups {32, 64, 128, one per row}, with the command line's other
 * options; GGUF output: 4 and 8 bits, symmetric, groups of 32, the
 * settings Q4_0 / Q8_0 hold) so that the projections' storage (codes,
 * scales, zero points, permutation, input scales; in GGUF the bytes
 * written) averages at most B bits per weight and the predicted loss is
 * least.
 *
 * The prediction, measured on the calibration text with the float model:
 *  - for each layer, the float inputs of each group of projections give a
 *    calibration (Hessian H = 2/n sum x x^T); every candidate quantizes the
 *    projection and its output error E = tr(dW H dW^T) is measured;
 *  - each projection's sensitivity: the increase of the calibration NLL when
 *    that projection alone is replaced by a reference quantization
 *    (round to nearest, 2 bits, groups of 128: an error large enough that
 *    every projection's increase is well above the rounding of the sum),
 *    the rest of the model float;
 *  - a candidate's predicted loss is that increase times E / E(reference):
 *    to second order the loss grows with the output error's energy, and
 *    the measured increase says how much this projection's error costs.
 * The choice is a multiple-choice knapsack over the predicted losses,
 * solved exactly by dynamic programming over the budget in 4096 steps
 * (each candidate's bits rounded up to a step, so the budget holds).
 *
 * Cost: one quantization per candidate and projection, and 7 x n_layers
 * partial forward passes over the calibration tokens; it holds the float
 * model in memory (the layer-by-layer quantization that follows does not).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "quant.h"

#define STEPS 4096
#define REF_BITS 2
#define REF_GROUP 128
#define MAX_CAND 64

typedef struct cand {
    qlib_method method;
    int bits, group, sym;
    qlib_config *cfg;           /* owned by the job */
} cand;

typedef struct proj_stat {
    double err[MAX_CAND];       /* E of each candidate */
    double bits[MAX_CAND];      /* storage bits of each candidate */
    double err_ref, dnll_ref;
    int choice;
} proj_stat;

typedef struct budget {
    quant_job *j;
    llama_model fm;             /* the float model */
    llama_run run;
    cand c[MAX_CAND];
    int n_cand;
    proj_stat *st;              /* n_layers * N_PROJ */
    float *hid;                 /* the float input of the current layer, every calibration token */
    float *save;                /* a copy while a projection is tried */
    qlib_calib *calib;
    llama_stage stage;
    double base_nll;
    qlib_config *ref;
} budget;

static const int BITS[] = { 2, 3, 4, 8 };
static const int GROUPS[] = { 32, 64, 128, 0 };
static const int STAGE_OF[N_PROJ] = { STAGE_QKV, STAGE_QKV, STAGE_QKV, STAGE_O, STAGE_UP, STAGE_DOWN, STAGE_UP };

/* A candidate config with the command line's other settings. */
static qlib_config *cand_config(quant_job *j, qlib_method m, int bits, int group, int sym)
{
    const llama_opts *o = j->o;
    qlib_config *c = own_config(j, m);
    if (!c || qlib_config_set_int(c, QLIB_PARAM_BITS, bits) != QLIB_OK
        || qlib_config_set_int(c, QLIB_PARAM_GROUP_SIZE, group) != QLIB_OK
        || (sym && qlib_config_set_int(c, QLIB_PARAM_SYMMETRIC, 1) != QLIB_OK)) {
        report_qlib_error("bit budget config");
        return NULL;
    }
    /* options the method does not take are left out for it */
    if (o->act_order)
        qlib_config_set_int(c, QLIB_PARAM_GPTQ_ACT_ORDER, 1);
    if (o->clip_grid != OPT_UNSET)
        qlib_config_set_int(c, QLIB_PARAM_CLIP_GRID, o->clip_grid);
    if (o->awq_rounding != OPT_UNSET)
        qlib_config_set_int(c, QLIB_PARAM_AWQ_ROUNDING, o->awq_rounding);
    if (o->awq_scales != OPT_UNSET)
        qlib_config_set_int(c, QLIB_PARAM_AWQ_SCALES, o->awq_scales);
    return c;
}

static int make_candidates(budget *b)
{
    quant_job *j = b->j;
    int m, bi, gi, gguf = j->format == FMT_GGUF;
    for (m = 0; m < 8; m++) {
        if (!(j->o->methods & (1u << m)))
            continue;
        for (bi = 0; bi < 4; bi++)
            for (gi = 0; gi < 4; gi++) {
                cand *c = &b->c[b->n_cand];
                if (gguf && (BITS[bi] < 4 || GROUPS[gi] != 32))
                    continue;
                c->method = (qlib_method)m;
                c->bits = BITS[bi];
                c->group = GROUPS[gi];
                c->sym = j->o->sym || gguf;
                if (!(c->cfg = cand_config(j, c->method, c->bits, c->group, c->sym)))
                    return -1;
                if (gguf && ggml_type(c->cfg, 32) < 0)
                    continue;
                b->n_cand++;
            }
    }
    if (b->n_cand == 0) {
        llama_err("--target-bpw: no candidate setting fits the output format");
        return -1;
    }
    b->ref = cand_config(j, QLIB_METHOD_RTN, REF_BITS, REF_GROUP, j->o->sym);
    return b->ref ? 0 : -1;
}

static int hook(void *user, llama_stage st, const float *x, int n, int k)
{
    budget *b = user;
    if (st != b->stage)
        return 0;
    if (qlib_calib_add(b->calib, x, (size_t)n, (size_t)k) != QLIB_OK) {
        report_qlib_error("calibration");
        return -1;
    }
    return 0;
}

/* Layers l.. of the float model over the calibration sequences from hid: up
 * to stage stop of layer l (the hook collects), or through the whole model
 * (nll gets the mean NLL), or through layer l only (hid advances). */
static int run_from(budget *b, int l, llama_stage stop, int whole, double *nll)
{
    const token_seqs *s = &b->j->seqs;
    const llama_config *c = &b->fm.cfg;
    size_t d = (size_t)c->dim, i, v = (size_t)c->vocab_size;
    double sum = 0.0;
    int t, k;
    for (i = 0; i < s->count; i++) {
        float *h = b->hid + s->start[i] * d;
        int n = (int)(s->start[i + 1] - s->start[i]);
        const int *tok = s->tokens + s->start[i];
        memcpy(b->run.s.x, h, (size_t)n * d * sizeof(float));
        if (!whole) {
            if (llama_layer(&b->run, l, n, 0, stop, stop == STAGE_END ? NULL : hook, b) != 0)
                return -1;
            if (stop == STAGE_END)
                memcpy(h, b->run.s.x, (size_t)n * d * sizeof(float));
            continue;
        }
        for (k = l; k < c->n_layers; k++)
            if (llama_layer(&b->run, k, n, 0, STAGE_END, NULL, NULL) != 0)
                return -1;
        if (llama_classify(&b->run, n, 0) != 0)
            return -1;
        for (t = 0; t + 1 < n; t++) {
            const float *row = b->run.s.logits + (size_t)t * v;
            double max = row[0], e = 0.0;
            size_t q;
            for (q = 1; q < v; q++)
                max = row[q] > max ? row[q] : max;
            for (q = 0; q < v; q++)
                e += exp((double)row[q] - max);
            sum += log(e) + max - (double)row[tok[t + 1]];
        }
    }
    if (nll)
        *nll = sum / (double)(s->total - s->count);
    return 0;
}

/* E = tr(dW H dW^T) of a quantized tensor against w. */
static double output_error(budget *b, const qlib_tensor *t, const float *w, const float *h,
                           float *dw, float *m)
{
    size_t n = qlib_tensor_rows(t), k = qlib_tensor_cols(t), i;
    double e = 0.0;
    if (qlib_dequantize(b->j->ctx, t, dw, k) != QLIB_OK)
        return -1.0;
    for (i = 0; i < n * k; i++)
        dw[i] = w[i] - dw[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)k, 1.0f, dw, (int)k,
                h, (int)k, 0.0f, m, (int)k);
    for (i = 0; i < n * k; i++)
        e += (double)dw[i] * (double)m[i];
    return e;
}

/* Storage bits of t as the output format stores it. */
static double storage_bits(const budget *b, const qlib_tensor *t, const qlib_config *c)
{
    double nk = (double)qlib_tensor_rows(t) * (double)qlib_tensor_cols(t);
    int type;
    if (b->j->format != FMT_GGUF)
        return (double)qlib_tensor_storage_bytes(t) * 8.0;
    type = ggml_type(c, qlib_tensor_cols(t));
    return nk * (type == DT_Q4_0 ? 4.5 : type == DT_Q8_0 ? 8.5 : 32.0);
}

/* Every candidate for projection p of layer l, and its sensitivity. */
static int measure_proj(budget *b, int l, int p, const float *h)
{
    const llama_config *cf = &b->fm.cfg;
    proj_stat *ps = &b->st[(size_t)l * N_PROJ + (size_t)p];
    size_t n = proj_rows(cf, p), k = proj_cols(cf, p);
    float *w = xcalloc(n, k * sizeof(float), "weights"), *dw = xcalloc(n, k * sizeof(float), "weights");
    float *m = xcalloc(n, k * sizeof(float), "weights");
    qlib_tensor *t = NULL, **slot = model_proj(&b->fm, l, p), *fp = *slot;
    double nll;
    int i, rc = -1;
    char what[64];
    snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
    if (!w || !dw || !m || qlib_dequantize(b->j->ctx, fp, w, k) != QLIB_OK)
        goto done;
    for (i = 0; i < b->n_cand; i++) {
        if (qlib_quantize(b->j->ctx, w, n, k, k, b->c[i].cfg, b->calib, &t) != QLIB_OK) {
            report_qlib_error(what);
            goto done;
        }
        ps->err[i] = output_error(b, t, w, h, dw, m);
        ps->bits[i] = storage_bits(b, t, b->c[i].cfg);

        qlib_tensor_destroy(t);
        t = NULL;
    }
    if (qlib_quantize(b->j->ctx, w, n, k, k, b->ref, b->calib, &t) != QLIB_OK) {
        report_qlib_error(what);
        goto done;
    }
    ps->err_ref = output_error(b, t, w, h, dw, m);
    *slot = t;                  /* this projection alone quantized */
    rc = run_from(b, l, STAGE_END, 1, &nll);
    *slot = fp;
    ps->dnll_ref = nll - b->base_nll;
done:
    qlib_tensor_destroy(t);
    free(w);
    free(dw);
    free(m);
    return rc;
}

static int measure_layer(budget *b, int l)
{
    const llama_config *c = &b->fm.cfg;
    float *h = NULL;
    int st, p, rc = 0;
    for (st = STAGE_QKV; rc == 0 && st <= STAGE_DOWN; st++) {
        size_t k = (size_t)(st == STAGE_DOWN ? c->hidden_dim : c->dim);
        if (qlib_calib_create(b->j->ctx, k, QLIB_CALIB_ALL, 512, &b->calib) != QLIB_OK
            || !(h = xcalloc(k, k * sizeof(float), "Hessian"))) {
            report_qlib_error("calibration");
            rc = -1;
            break;
        }
        b->stage = (llama_stage)st;
        rc = run_from(b, l, (llama_stage)st, 0, NULL);
        if (rc == 0 && qlib_calib_hessian(b->calib, h, k) != QLIB_OK) {
            report_qlib_error("calibration");
            rc = -1;
        }
        for (p = 0; rc == 0 && p < N_PROJ; p++)
            if (STAGE_OF[p] == st)
                rc = measure_proj(b, l, p, h);
        qlib_calib_destroy(b->calib);
        b->calib = NULL;
        free(h);
        h = NULL;
    }
    return rc == 0 ? run_from(b, l, STAGE_END, 0, NULL) : -1;
}

static double predicted(const proj_stat *ps, int i)
{

    /* a projection whose reference error did not raise the NLL still ranks
     * its candidates by their output error */
    double s = ps->dnll_ref > 1e-7 ? ps->dnll_ref : 1e-7;
    return ps->err_ref > 0.0 ? s * ps->err[i] / ps->err_ref : 0.0;
}

/* The multiple-choice knapsack: least predicted loss within the budget. */
static int choose(budget *b, double budget_bits, double *loss)
{
    const llama_config *c = &b->fm.cfg;
    size_t items = (size_t)c->n_layers * N_PROJ, it, u;
    double unit = budget_bits / STEPS, *dp = xcalloc((items + 1) * (STEPS + 1), sizeof(double), "knapsack");
    signed char *pick = xcalloc(items * (STEPS + 1), 1, "knapsack");
    int i, rc = -1;
    if (!dp || !pick)
        goto done;
    for (u = 0; u <= STEPS; u++)
        dp[u] = 0.0;
    for (it = 0; it < items; it++) {
        const proj_stat *ps = &b->st[it];
        double *prev = dp + it * (STEPS + 1), *cur = prev + STEPS + 1;
        for (u = 0; u <= STEPS; u++) {
            cur[u] = HUGE_VAL;
            pick[it * (STEPS + 1) + u] = -1;
            for (i = 0; i < b->n_cand; i++) {
                size_t cost = (size_t)ceil(ps->bits[i] / unit - 1e-9);
                double v;
                if (cost > u || prev[u - cost] == HUGE_VAL)
                    continue;
                v = prev[u - cost] + predicted(ps, i);
                if (v < cur[u]) {
                    cur[u] = v;
                    pick[it * (STEPS + 1) + u] = (signed char)i;
                }
            }
        }
    }
    if (dp[items * (STEPS + 1) + STEPS] == HUGE_VAL) {
        double least = 0.0, weights = 0.0;
        for (it = 0; it < items; it++) {
            double lo = HUGE_VAL;
            for (i = 0; i < b->n_cand; i++)
                lo = b->st[it].bits[i] < lo ? b->st[it].bits[i] : lo;
            least += lo;
            weights += (double)proj_rows(c, (int)(it % N_PROJ)) * (double)proj_cols(c, (int)(it % N_PROJ));
        }
        llama_err("--target-bpw %.3f is below the cheapest choice, %.3f bits per weight",
                  (double)b->j->o->target_bpw, least / weights);
        goto done;
    }
    *loss = dp[items * (STEPS + 1) + STEPS];
    for (u = STEPS, it = items; it-- > 0;) {
        i = pick[it * (STEPS + 1) + u];
        b->st[it].choice = i;
        u -= (size_t)ceil(b->st[it].bits[i] / unit - 1e-9);
    }
    rc = 0;
done:
    free(dp);
    free(pick);
    return rc;
}

static void print_table(const budget *b, double loss)
{
    const llama_config *c = &b->fm.cfg;
    double bits = 0.0, weights = 0.0;
    int l, p;
    fprintf(stderr, "bit budget: %.3f bits/weight over the projections; %d candidates; float "
            "calibration NLL %.6f\n", (double)b->j->o->target_bpw, b->n_cand, b->base_nll);
    fprintf(stderr, "%-5s %-4s %9s %-5s %4s %5s %8s %11s %11s\n", "layer", "proj", "shape", "method",
            "bits", "group", "bits/w", "ref dNLL", "pred dNLL");
    for (l = 0; l < c->n_layers; l++)
        for (p = 0; p < N_PROJ; p++) {
            const proj_stat *ps = &b->st[(size_t)l * N_PROJ + (size_t)p];
            const cand *cd = &b->c[ps->choice];
            double nk = (double)proj_rows(c, p) * (double)proj_cols(c, p);
            char shape[32];
            snprintf(shape, sizeof(shape), "%zux%zu", proj_rows(c, p), proj_cols(c, p));
            fprintf(stderr, "%-5d %-4s %9s %-5s %4d %5d %8.3f %11.6f %11.6f\n", l, proj_names[p], shape,
                    qlib_method_name(cd->method), cd->bits, cd->group, ps->bits[ps->choice] / nk,
                    ps->dnll_ref, predicted(ps, ps->choice));
            bits += ps->bits[ps->choice];
            weights += nk;
        }
    fprintf(stderr, "chosen: %.4f bits/weight, predicted NLL increase %.6f\n", bits / weights, loss);
}

int budget_plan(quant_job *j)
{
    const llama_config *c = &j->m.cfg;
    size_t items = (size_t)c->n_layers * N_PROJ, t, d = (size_t)c->dim;
    double weights = 0.0, loss = 0.0;
    budget b;
    int rc = -1, l, p;
    memset(&b, 0, sizeof(b));
    b.j = j;
    if (make_candidates(&b) != 0 || model_load(j->ctx, j->o->model, &b.fm) != 0
        || run_init(&b.run, &b.fm, j->ctx, 0) != 0)
        goto done;
    b.st = xcalloc(items, sizeof(proj_stat), "bit budget");
    b.hid = xcalloc(j->seqs.total, d * sizeof(float), "activations");
    if (!b.st || !b.hid)
        goto done;
    for (t = 0; t < j->seqs.total; t++)
        memcpy(b.hid + t * d, j->hidden + t * d, d * sizeof(float));
    fprintf(stderr, "bit budget: measuring %d candidates on %zu projections\n", b.n_cand, items);
    if (run_from(&b, 0, STAGE_END, 1, &b.base_nll) != 0)
        goto done;
    for (l = 0; l < c->n_layers; l++) {
        if (measure_layer(&b, l) != 0)
            goto done;
        if (!j->o->quiet)
            fprintf(stderr, "bit budget: layer %d/%d measured\n", l + 1, c->n_layers);
    }
    for (l = 0; l < c->n_layers; l++)
        for (p = 0; p < N_PROJ; p++)
            weights += (double)proj_rows(c, p) * (double)proj_cols(c, p);
    if (choose(&b, (double)j->o->target_bpw * weights, &loss) != 0)
        goto done;
    print_table(&b, loss);
    if (!j->pcfg && !(j->pcfg = xcalloc(items, sizeof(qlib_config *), "plan")))
        goto done;
    for (t = 0; t < items; t++)
        j->pcfg[t] = b.c[b.st[t].choice].cfg;
    rc = 0;
done:
    qlib_calib_destroy(b.calib);
    run_free(&b.run);
    model_free(&b.fm);
    free(b.st);
    free(b.hid);
    return rc;
}
