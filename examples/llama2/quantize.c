/*
 * The quantize command. GPTQ and AWQ are calibrated layer by layer: the
 * calibration tokens run through the layers already quantized, and inside a
 * layer every group of projections sees inputs computed with the projections
 * quantized before it (q/k/v, then o, then w1/w3, then w2).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define CALIB_MAX_SAMPLES 512
#define CHECK_ROWS 4   /* rows of x in the round-trip matmul check */

typedef struct quant_job {
    llama_session s;
    const llama_opts *o;
    qlib_config *cfg;
    int calibrated;         /* GPTQ / AWQ */
    token_seqs seqs;
    float *hidden;          /* seqs.total x dim: the input of the current layer */
    qlib_calib *calib;
    llama_stage stage;      /* whose inputs the hook collects */
    double err[N_PROJ];
} quant_job;

/* The projections reading each stage's input, ended by -1. */
static const int STAGE_PROJS[4][4] = {
    { P_WQ, P_WK, P_WV, -1 }, { P_WO, -1, -1, -1 }, { P_W1, P_W3, -1, -1 }, { P_W2, -1, -1, -1 }
};

/* RC_UNAVAILABLE for what qlib cannot do yet, else fail with the detail. */
static int status_outcome(qlib_status st, const char *what)
{
    const char *detail = qlib_last_error();
    if (st == QLIB_OK)
        return RC_OK;
    if (st == QLIB_ERR_UNSUPPORTED) {
        llama_err("%s failed", what);
        llama_err("not available: %s", detail[0] ? detail : qlib_status_string(st));
        return RC_UNAVAILABLE;
    }
    llama_err("%s: %s", what, detail[0] ? detail : qlib_status_string(st));
    return st == QLIB_ERR_ARG ? RC_USAGE : RC_FAIL;
}

static int set_param(qlib_config *c, qlib_param p, int v, const char *flag)
{
    char what[64];
    snprintf(what, sizeof(what), "quantize option %s", flag);
    return status_outcome(qlib_config_set_int(c, p, v), what);
}

static int make_config(const llama_opts *o, qlib_config **cfg)
{
    int rc = status_outcome(qlib_config_create((qlib_method)o->method, cfg), "config");
    int bits = o->bits == OPT_UNSET && o->method == QLIB_METHOD_NONE ? 32 : o->bits;
    if (rc == RC_OK && bits != OPT_UNSET)
        rc = set_param(*cfg, QLIB_PARAM_BITS, bits, "--bits");
    if (rc == RC_OK && o->group != OPT_UNSET)
        rc = set_param(*cfg, QLIB_PARAM_GROUP_SIZE, o->group, "--group");
    if (rc == RC_OK && o->sym)
        rc = set_param(*cfg, QLIB_PARAM_SYMMETRIC, 1, "--sym");
    if (rc == RC_OK && o->act_order)
        rc = set_param(*cfg, QLIB_PARAM_GPTQ_ACT_ORDER, 1, "--act-order");
    if (rc == RC_OK && o->clip_grid != OPT_UNSET)
        rc = set_param(*cfg, QLIB_PARAM_CLIP_GRID, o->clip_grid, "--clip-grid");
    if (rc == RC_OK && o->awq_rounding != OPT_UNSET)
        rc = set_param(*cfg, QLIB_PARAM_AWQ_ROUNDING, o->awq_rounding, "--awq-rounding");
    return rc;
}

static int check_quant_opts(const llama_opts *o)
{
    if (o->method < 0 || !o->out) {
        llama_err("quantize needs --method and -o OUT");
        return -1;
    }
    if (o->act_order && o->method != QLIB_METHOD_GPTQ) {
        llama_err("--act-order applies to --method gptq only");
        return -1;
    }
    if ((o->method == QLIB_METHOD_GPTQ || o->method == QLIB_METHOD_AWQ) && !o->calib) {
        llama_err("--method %s needs --calib FILE", method_name((qlib_method)o->method));
        return -1;
    }
    return 0;
}

static int quant_proj(quant_job *j, int l, int p, const qlib_calib *calib)
{
    const llama_config *c = &j->s.m.cfg;
    qlib_tensor *t = NULL, **slot = model_proj(&j->s.m, l, p);
    size_t k = proj_cols(c, p);
    char what[64];
    qlib_status st = qlib_quantize(j->s.ctx, raw_weight(&j->s.m, l, p), proj_rows(c, p), k, k,
                                   j->cfg, calib, &t);
    if (st != QLIB_OK) {
        snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
        return status_outcome(st, what);
    }
    qlib_tensor_destroy(*slot);
    *slot = t;
    j->err[p] = qlib_tensor_quant_error(t);
    return RC_OK;
}

static int calib_hook(void *user, llama_stage st, const float *x, int n, int k)
{
    quant_job *j = user;
    if (st != j->stage)
        return 0;
    if (qlib_calib_add(j->calib, x, (size_t)n, (size_t)k) != QLIB_OK) {
        report_qlib_error("calibration");
        return -1;
    }
    return 0;
}

/* Runs layer l over every calibration sequence up to stop; keeps the
 * outputs as the next layer's input when stop is STAGE_END. */
static int run_layer_all(quant_job *j, int l, llama_stage stop)
{
    size_t d = (size_t)j->s.m.cfg.dim, i;
    for (i = 0; i < j->seqs.count; i++) {
        float *h = j->hidden + j->seqs.start[i] * d;
        int n = (int)(j->seqs.start[i + 1] - j->seqs.start[i]);
        memcpy(j->s.r.s.x, h, (size_t)n * d * sizeof(float));
        if (llama_layer(&j->s.r, l, n, 0, stop, stop == STAGE_END ? NULL : calib_hook, j) != 0)
            return -1;
        if (stop == STAGE_END)
            memcpy(h, j->s.r.s.x, (size_t)n * d * sizeof(float));
    }
    return 0;
}

static int quantize_stage(quant_job *j, int l, llama_stage st)
{
    const llama_config *c = &j->s.m.cfg;
    size_t k = (size_t)(st == STAGE_DOWN ? c->hidden_dim : c->dim);
    int i, rc;
    if (qlib_calib_create(j->s.ctx, k, QLIB_CALIB_ALL, CALIB_MAX_SAMPLES, &j->calib) != QLIB_OK) {
        report_qlib_error("calibration");
        return RC_FAIL;
    }
    j->stage = st;
    rc = run_layer_all(j, l, st) == 0 ? RC_OK : RC_FAIL;
    for (i = 0; rc == RC_OK && STAGE_PROJS[st][i] >= 0; i++)
        rc = quant_proj(j, l, STAGE_PROJS[st][i], j->calib);
    qlib_calib_destroy(j->calib);
    j->calib = NULL;
    return rc;
}

static int quantize_layer(quant_job *j, int l)
{
    int st, p, rc = RC_OK;
    if (!j->calibrated) {
        for (p = 0; p < N_PROJ && rc == RC_OK; p++)
            rc = quant_proj(j, l, p, NULL);
        return rc;
    }
    for (st = STAGE_QKV; st <= STAGE_DOWN && rc == RC_OK; st++)
        rc = quantize_stage(j, l, (llama_stage)st);
    if (rc == RC_OK && run_layer_all(j, l, STAGE_END) != 0)
        rc = RC_FAIL;
    return rc;
}

static int quantize_layers(quant_job *j)
{
    int l, p, rc;
    for (l = 0; l < j->s.m.cfg.n_layers; l++) {
        double t0 = now_seconds();
        if ((rc = quantize_layer(j, l)) != RC_OK)
            return rc;
        fprintf(stderr, "layer %d/%d quant error:", l + 1, j->s.m.cfg.n_layers);
        for (p = 0; p < N_PROJ; p++)
            fprintf(stderr, " %s %.3g", proj_names[p], j->err[p]);
        fprintf(stderr, " (%.2f s)\n", now_seconds() - t0);
    }
    return RC_OK;
}

/* Calibration sequences and their embeddings, the input of layer 0. */
static int prepare_calibration(quant_job *j)
{
    const llama_model *m = &j->s.m;
    size_t d = (size_t)m->cfg.dim, t;
    if (encode_stories(j->o->calib, &j->s.tok, m->cfg.seq_len, 1, (size_t)j->o->calib_tokens,
                       &j->seqs) != 0)
        return -1;
    j->hidden = xcalloc(j->seqs.total, d * sizeof(float), "calibration activations");
    if (!j->hidden)
        return -1;
    for (t = 0; t < j->seqs.total; t++)
        memcpy(j->hidden + t * d, m->tok_emb + (size_t)j->seqs.tokens[t] * d, d * sizeof(float));
    fprintf(stderr, "calibration: %zu tokens in %zu sequences from %s (ASCII stories only)\n",
            j->seqs.total, j->seqs.count, j->o->calib);
    return 0;
}

/* ------------------------------------------------------- round-trip check */
static int same_tensor(qlib_ctx *ctx, const qlib_tensor *a, const qlib_tensor *b, float *wa,
                       float *wb, const float *x, float *ya, float *yb)
{
    size_t n = qlib_tensor_rows(a), k = qlib_tensor_cols(a);
    if (qlib_tensor_method(a) != qlib_tensor_method(b) || qlib_tensor_bits(a) != qlib_tensor_bits(b)
        || qlib_tensor_group_size(a) != qlib_tensor_group_size(b) || qlib_tensor_rows(b) != n
        || qlib_tensor_cols(b) != k)
        return 0;
    if (qlib_dequantize(ctx, a, wa, k) != QLIB_OK || qlib_dequantize(ctx, b, wb, k) != QLIB_OK
        || qlib_matmul(ctx, a, x, CHECK_ROWS, k, ya, n) != QLIB_OK
        || qlib_matmul(ctx, b, x, CHECK_ROWS, k, yb, n) != QLIB_OK) {
        report_qlib_error("round trip");
        return 0;
    }
    return memcmp(wa, wb, n * k * sizeof(float)) == 0
           && memcmp(ya, yb, CHECK_ROWS * n * sizeof(float)) == 0;
}

static int same_floats(const llama_model *a, const llama_model *b)
{
    const llama_config *c = &a->cfg;
    size_t d = (size_t)c->dim, L = (size_t)c->n_layers, v = (size_t)c->vocab_size;
    return memcmp(&a->cfg, &b->cfg, sizeof(a->cfg)) == 0
           && !memcmp(a->tok_emb, b->tok_emb, v * d * sizeof(float))
           && !memcmp(a->rms_att, b->rms_att, L * d * sizeof(float))
           && !memcmp(a->rms_ffn, b->rms_ffn, L * d * sizeof(float))
           && !memcmp(a->rms_final, b->rms_final, d * sizeof(float))
           && !memcmp(a->wcls, b->wcls, v * d * sizeof(float));
}

static int compare_models(qlib_ctx *ctx, const llama_model *a, const llama_model *b, float *buf)
{
    const llama_config *c = &a->cfg;
    size_t big = (size_t)c->hidden_dim * (size_t)c->dim, i;
    float *wa = buf, *wb = wa + big, *x = wb + big, *ya, *yb;
    int l, p;
    ya = x + CHECK_ROWS * (size_t)c->hidden_dim;
    yb = ya + CHECK_ROWS * (size_t)c->hidden_dim;
    for (i = 0; i < CHECK_ROWS * (size_t)c->hidden_dim; i++)
        x[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 7));
    if (!same_floats(a, b))
        return -1;
    for (l = 0; l < c->n_layers; l++)
        for (p = 0; p < N_PROJ; p++)
            if (!same_tensor(ctx, *model_proj(a, l, p), *model_proj(b, l, p), wa, wb, x, ya, yb)) {
                llama_err("round trip: layer %d %s differs after reloading", l, proj_names[p]);
                return -1;
            }
    return 0;
}

static int verify_round_trip(quant_job *j)
{
    llama_model back;
    const llama_config *c = &j->s.m.cfg;
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim;
    float *buf;
    int rc;
    if (model_load(j->s.ctx, j->o->out, &back) != 0)
        return -1;
    buf = xcalloc(2 * h * d + 3 * CHECK_ROWS * (h > d ? h : d), sizeof(float), "round trip");
    rc = buf ? compare_models(j->s.ctx, &j->s.m, &back, buf) : -1;
    if (rc != 0)
        llama_err("%s: the reloaded model differs from the one written", j->o->out);
    free(buf);
    model_free(&back);
    return rc;
}

/* --------------------------------------------------------------- command */
static void print_summary(const quant_job *j, size_t file_bytes, double seconds)
{
    const qlib_tensor *t = *model_proj(&j->s.m, 0, P_WQ);
    size_t proj_bytes;
    double bpw = model_bits_per_weight(&j->s.m, &proj_bytes);
    printf("wrote %s: %s, %d bits, group %d, %.3f bits/weight, projections %.1f KiB, file %.1f KiB,"
           " %.2f s\n", j->o->out, method_name(qlib_tensor_method(t)), qlib_tensor_bits(t),
           qlib_tensor_group_size(t), bpw, (double)proj_bytes / 1024.0, (double)file_bytes / 1024.0, seconds);
    printf("round trip: reloaded with QLIB_LOAD_BORROW, every tensor identical\n");
    printf("summary: method=%s bits=%d group=%d bits_per_weight=%.4f proj_bytes=%zu "
           "file_bytes=%zu seconds=%.3f\n", method_name(qlib_tensor_method(t)), qlib_tensor_bits(t),
           qlib_tensor_group_size(t), bpw, proj_bytes, file_bytes, seconds);
}

static int run_quantize(quant_job *j)
{
    double t0 = now_seconds(), seconds;
    size_t file_bytes = 0;
    int rc;
    if (j->s.m.quantized) {
        llama_err("%s: quantize reads a float llama2.c checkpoint, not a quantized file",
                  j->o->model);
        return RC_FAIL;
    }
    if (j->calibrated && prepare_calibration(j) != 0)
        return RC_FAIL;
    if ((rc = quantize_layers(j)) != RC_OK)
        return rc;
    seconds = now_seconds() - t0;
    if (qmodel_save(&j->s.m, j->o->out, &file_bytes) != 0 || verify_round_trip(j) != 0)
        return RC_FAIL;
    print_summary(j, file_bytes, seconds);
    return RC_OK;
}

int cmd_quantize(const llama_opts *o)
{
    quant_job j;
    int rc;
    if (check_quant_opts(o) != 0)
        return RC_USAGE;
    memset(&j, 0, sizeof(j));
    j.o = o;
    j.calibrated = o->method == QLIB_METHOD_GPTQ || o->method == QLIB_METHOD_AWQ;
    if ((rc = make_config(o, &j.cfg)) != RC_OK)
        return rc;
    if (session_open(o, &j.s) != 0) {
        qlib_config_destroy(j.cfg);
        return RC_FAIL;
    }
    rc = run_quantize(&j);
    free(j.hidden);
    token_seqs_free(&j.seqs);
    session_close(&j.s);
    qlib_config_destroy(j.cfg);
    return rc;
}
