/*
 * The quantize command, one decoder layer at a time: the input model stays
 * mapped, each layer's projections are read into fp32, quantized and written
 * to the output file before the next layer is read, so memory holds one
 * layer's weights, the calibration activations and the tensors being
 * written, not the model. GPTQ and AWQ are calibrated layer by layer: the
 * calibration tokens run through the layers already quantized, and inside a
 * layer every group of projections sees inputs computed with the projections
 * quantized before it (q/k/v, then o, then w1/w3, then w2).
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

#define CALIB_MAX_SAMPLES 512

/* The projections reading each stage's input, ended by -1. */
static const int STAGE_PROJS[4][4] = {
    { P_WQ, P_WK, P_WV, -1 }, { P_WO, -1, -1, -1 }, { P_W1, P_W3, -1, -1 }, { P_W2, -1, -1, -1 }
};

static const char *const STAGE_NAMES[4] = { "wq,wk,wv", "wo", "w1,w3", "w2" };

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

/* Every parameter the tool sets is one qlib knows, so QLIB_ERR_UNSUPPORTED
 * from qlib_config_set_int means the method does not take it: a command-line
 * mistake, named by its option. */
static int set_param(qlib_config *c, qlib_param p, int v, const char *flag, const char *value)
{
    qlib_status st = qlib_config_set_int(c, p, v);
    const char *method = qlib_method_name(qlib_config_method(c));
    if (st == QLIB_ERR_UNSUPPORTED) {
        llama_err("%s is not an option of --method %s", flag, method);
        return RC_USAGE;
    }
    if (st == QLIB_ERR_ARG) {
        llama_err("%s %s is not valid for --method %s (%s)", flag, value, method,
                  qlib_last_error());
        return RC_USAGE;
    }
    return status_outcome(st, flag);
}

static int set_int_opt(qlib_config *c, qlib_param p, int v, const char *flag)
{
    char value[32];
    snprintf(value, sizeof(value), "%d", v);
    return set_param(c, p, v, flag, value);
}

static int make_config(const llama_opts *o, qlib_config **cfg)
{
    int rc = status_outcome(qlib_config_create((qlib_method)o->method, cfg), "config");
    int bits = o->bits == OPT_UNSET && o->method == QLIB_METHOD_NONE ? 32 : o->bits;
    if (rc == RC_OK && bits != OPT_UNSET)
        rc = set_int_opt(*cfg, QLIB_PARAM_BITS, bits, "--bits");
    if (rc == RC_OK && o->group != OPT_UNSET)
        rc = set_int_opt(*cfg, QLIB_PARAM_GROUP_SIZE, o->group, "--group");
    if (rc == RC_OK && o->sym)
        rc = set_param(*cfg, QLIB_PARAM_SYMMETRIC, 1, "--sym", "");
    if (rc == RC_OK && o->act_order)
        rc = set_param(*cfg, QLIB_PARAM_GPTQ_ACT_ORDER, 1, "--act-order", "");
    if (rc == RC_OK && o->clip_grid != OPT_UNSET)
        rc = set_int_opt(*cfg, QLIB_PARAM_CLIP_GRID, o->clip_grid, "--clip-grid");
    if (rc == RC_OK && o->awq_rounding != OPT_UNSET)
        rc = set_param(*cfg, QLIB_PARAM_AWQ_ROUNDING, o->awq_rounding, "--awq-rounding",
                       o->awq_rounding ? "gptq" : "rtn");
    if (rc == RC_OK && o->awq_scales != OPT_UNSET)
        rc = set_param(*cfg, QLIB_PARAM_AWQ_SCALES, o->awq_scales, "--awq-scales",
                       o->awq_scales == 0 ? "act" : o->awq_scales == 1 ? "duo" : "both");
    if (rc != RC_OK) {
        qlib_config_destroy(*cfg);
        *cfg = NULL;
    }
    return rc;
}

int cfg_get(const qlib_config *c, qlib_param p)
{
    int v = 0;
    return qlib_config_get_int(c, p, &v) == QLIB_OK ? v : 0;
}

qlib_config *job_cfg(const quant_job *j, int l, int p)
{
    return j->pcfg ? j->pcfg[(size_t)l * N_PROJ + (size_t)p] : j->cfg;
}

/* --format, else from OUT: .gguf a GGUF file, a directory (existing, or
 * named with a trailing /) a Hugging Face checkpoint (AWQ for --method awq,
 * else GPTQ), anything else qlib-llama's own file. */
static int output_format(const llama_opts *o)
{
    static const char *const names[] = { "qlm", "gguf", "gptq", "awq" };
    int i;
    if (o->format) {
        for (i = 0; i < 4; i++)
            if (!strcmp(o->format, names[i]))
                return i;
        return -1;
    }
    if (ends_with(o->out, ".gguf"))
        return FMT_GGUF;
    if (hf_is_dir(o->out) || ends_with(o->out, "/"))
        return o->method == QLIB_METHOD_AWQ ? FMT_AWQ : FMT_GPTQ;
    return FMT_QLM;
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
    if ((o->method == QLIB_METHOD_GPTQ || o->method == QLIB_METHOD_AWQ) && !o->calib && !o->calib_ids) {
        llama_err("--method %s needs --calib FILE or --calib-tokens FILE",
                  qlib_method_name((qlib_method)o->method));
        return -1;
    }
    if (o->calib && o->calib_ids) {
        llama_err("give --calib or --calib-tokens FILE, not both");
        return -1;
    }
    if (o->calib_seed && !o->calib) {
        llama_err("--calib-seed orders the stories of --calib TEXT; %s",
                  o->calib_ids ? "order the lines of --calib-tokens FILE instead" : "give --calib");
        return -1;
    }
    if (output_format(o) < 0) {
        llama_err("--format %s: qlm, gguf, gptq or awq", o->format);
        return -1;
    }
    if (o->awq_fold && (o->method != QLIB_METHOD_AWQ || o->target_bpw > 0.0f)) {
        llama_err("--awq-fold applies to --method awq, without --target-bpw");
        return -1;
    }
    if ((o->methods & (o->methods - 1)) && o->target_bpw <= 0.0f) {
        llama_err("a list of methods is for --target-bpw");
        return -1;
    }
    if (o->target_bpw > 0.0f) {
        if (o->bits != OPT_UNSET || o->group != OPT_UNSET) {
            llama_err("--target-bpw chooses bits and group per projection: leave out --bits and --group");
            return -1;
        }
        if (output_format(o) >= FMT_GPTQ) {
            llama_err("--target-bpw: a GPTQ / AWQ checkpoint has one bits and group size (use qlm or gguf)");
            return -1;
        }
        if ((o->methods & (1u << QLIB_METHOD_AWQ)) && output_format(o) == FMT_GGUF) {
            llama_err("--target-bpw into GGUF: AWQ folds one set of scales per group of projections; "
                      "use --method gptq or rtn");
            return -1;
        }
        if (o->methods & ((1u << QLIB_METHOD_NONE) | (1u << QLIB_METHOD_LLM_INT8))) {
            llama_err("--target-bpw chooses among rtn, gptq and awq");
            return -1;
        }
    }
    if (o->embed_bits && o->embed_bits != 4 && o->embed_bits != 8) {
        llama_err("--embed-bits %d: 8 or 4", o->embed_bits);
        return -1;
    }
    if (o->embed_bits && output_format(o) >= FMT_GPTQ) {
        llama_err("--embed-bits: GPTQ and AWQ checkpoints keep the embedding in fp16 (use gguf or qlm)");
        return -1;
    }
    if (o->fallback && (output_format(o) != FMT_GGUF
                        || (strcmp(o->fallback, "f32") && strcmp(o->fallback, "f16")
                            && strcmp(o->fallback, "q8_0") && strcmp(o->fallback, "keep")))) {
        llama_err("--fallback f32|f16|q8_0|keep applies to GGUF output");
        return -1;
    }
    return 0;
}

/* Layer l's fp32 weights: used from the mapping when the file holds them as
 * fp32 and nothing will change them, else read into w[p] (AWQ's folding
 * rescales rows and columns of wv/wo and w3/w2 before they are quantized). */
static int load_layer(quant_job *j, int l)
{
    int p;
    for (p = 0; p < N_PROJ; p++) {
        const src_tensor *t = source_proj(&j->m.src, l, p);
        j->wp[p] = j->fold ? NULL : src_direct_f32(t);
        if (j->wp[p])
            continue;
        if (!j->w[p] && !(j->w[p] = xcalloc(t->rows, t->cols * sizeof(float), "layer weights")))
            return -1;
        src_read_rows(t, 0, t->rows, j->w[p]);
        j->wp[p] = j->w[p];
    }
    return 0;
}

static void set_slot(quant_job *j, int l, int p, qlib_tensor *t)
{
    qlib_tensor **slot = model_proj(&j->m, l, p);
    qlib_tensor_destroy(*slot);
    *slot = t;
    j->err[p] = qlib_tensor_quant_error(t);
}

static int quant_proj(quant_job *j, int l, int p, const qlib_calib *calib)
{
    const llama_config *c = &j->m.cfg;
    qlib_tensor *t = NULL;
    size_t k = proj_cols(c, p);
    char what[64];
    qlib_status st = qlib_quantize(j->ctx, j->wp[p], proj_rows(c, p), k, k, job_cfg(j, l, p), calib, &t);
    if (st != QLIB_OK) {
        snprintf(what, sizeof(what), "layer %d %s", l, proj_names[p]);
        return status_outcome(st, what);
    }
    set_slot(j, l, p, t);
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
    size_t d = (size_t)j->m.cfg.dim, i;
    for (i = 0; i < j->seqs.count; i++) {
        float *h = j->hidden + j->seqs.start[i] * d;
        int n = (int)(j->seqs.start[i + 1] - j->seqs.start[i]);
        memcpy(j->r.s.x, h, (size_t)n * d * sizeof(float));
        if (llama_layer(&j->r, l, n, 0, stop, stop == STAGE_END ? NULL : calib_hook, j) != 0)
            return -1;
        if (stop == STAGE_END)
            memcpy(h, j->r.s.x, (size_t)n * d * sizeof(float));
    }
    return 0;
}

static int new_calib(quant_job *j, size_t k, llama_stage st)
{
    if (qlib_calib_create(j->ctx, k, QLIB_CALIB_ALL, CALIB_MAX_SAMPLES, &j->calib) != QLIB_OK) {
        report_qlib_error("calibration");
        return -1;
    }
    j->stage = st;
    return 0;
}

static void free_calib(quant_job *j)
{
    qlib_calib_destroy(j->calib);
    j->calib = NULL;
}

/* A copy of c with AWQ's scale grid of one point (alpha 0 of the scales
 * mean|x|^alpha: every input scale 1), keeping its clipping search and
 * rounding: AWQ for a projection whose scales were folded beforehand, or
 * cannot be. */
static qlib_config *clip_only(const qlib_config *c)
{
    static const qlib_param ints[] = { QLIB_PARAM_BITS, QLIB_PARAM_GROUP_SIZE, QLIB_PARAM_SYMMETRIC,
                                       QLIB_PARAM_CLIP_GRID, QLIB_PARAM_AWQ_CLIP, QLIB_PARAM_AWQ_ROUNDING,
                                       QLIB_PARAM_GPTQ_BLOCK_SIZE };
    static const qlib_param floats[] = { QLIB_PARAM_AWQ_MAX_SHRINK, QLIB_PARAM_GPTQ_DAMP };
    qlib_config *o = NULL;
    size_t i;
    int v;
    float f;
    if (qlib_config_create(qlib_config_method(c), &o) != QLIB_OK)
        return NULL;
    for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        if (qlib_config_get_int(c, ints[i], &v) == QLIB_OK)
            qlib_config_set_int(o, ints[i], v);
    for (i = 0; i < sizeof(floats) / sizeof(floats[0]); i++)
        if (qlib_config_get_float(c, floats[i], &f) == QLIB_OK)
            qlib_config_set_float(o, floats[i], f);
    if (qlib_config_set_int(o, QLIB_PARAM_AWQ_GRID, 1) != QLIB_OK
        || qlib_config_set_int(o, QLIB_PARAM_AWQ_SCALES, 0) != QLIB_OK) {
        qlib_config_destroy(o);
        return NULL;
    }
    return o;
}

/* Replaces the tensor in slot (l, p) by its copy without input scales and
 * returns the scales it had (the caller folds them; NULL on failure). */
static int fold_slot(quant_job *j, int l, int p, float *sigma)
{
    qlib_tensor **slot = model_proj(&j->m, l, p), *folded = NULL;
    const float *in = qlib_tensor_input_scales(*slot);
    size_t k = qlib_tensor_cols(*slot);
    float *s = xcalloc(k, sizeof(float), "scales");
    int rc = -1;
    if (!s || !in)
        goto done;
    memcpy(sigma, in, k * sizeof(float));
    if (qlib_tensor_fold_input_scales(j->ctx, *slot, s, &folded) != QLIB_OK) {
        report_qlib_error("folding AWQ's input scales");
        goto done;
    }
    qlib_tensor_destroy(*slot);
    *slot = folded;
    rc = 0;
done:
    free(s);
    return rc;
}

static int stage_shared(const quant_job *j, int l, llama_stage st)
{
    const qlib_config *c = job_cfg(j, l, STAGE_PROJS[st][0]);
    int i;
    for (i = 1; STAGE_PROJS[st][i] >= 0; i++)
        if (job_cfg(j, l, STAGE_PROJS[st][i]) != c)
            return 0;
    /* AWQ searches one set of input scales for the stage when they are
     * folded, or asked for (--awq-shared); qlib-llama's own file otherwise
     * keeps each tensor's own scales */
    return qlib_config_method(c) != QLIB_METHOD_AWQ || j->fold || j->o->awq_shared;
}

/* The stage's projections quantized together (qlib_quantize_shared); with
 * folding, AWQ's common input scales go into the stage's RMSNorm weight
 * (q/k/v, w1/w3), or are 1 (wo, w2: their scales were folded into wv/w3
 * before, or cannot be). */
static int quant_shared(quant_job *j, int l, llama_stage st)
{
    const llama_config *c = &j->m.cfg;
    const float *w[3];
    size_t n[3], ld[3], k = proj_cols(c, STAGE_PROJS[st][0]), count, i, col;
    qlib_tensor *out[3] = { NULL, NULL, NULL };
    const qlib_config *cfg = job_cfg(j, l, STAGE_PROJS[st][0]);
    qlib_config *own = NULL;
    int awq_fold = j->fold && qlib_config_method(cfg) == QLIB_METHOD_AWQ, rc = RC_OK;
    float *sigma = NULL, *norm;
    char what[64];
    qlib_status s;
    for (count = 0; STAGE_PROJS[st][count] >= 0; count++) {
        int p = STAGE_PROJS[st][count];
        w[count] = j->wp[p];
        n[count] = proj_rows(c, p);
        ld[count] = k;
    }
    if (awq_fold && (st == STAGE_O || st == STAGE_DOWN)) {
        if (!(own = clip_only(cfg))) {
            report_qlib_error("config");
            return RC_FAIL;
        }
        cfg = own;
    }
    s = qlib_quantize_shared(j->ctx, count, w, n, k, ld, cfg, j->calib, out);
    qlib_config_destroy(own);
    if (s != QLIB_OK) {
        snprintf(what, sizeof(what), "layer %d %s", l, proj_names[STAGE_PROJS[st][0]]);
        return status_outcome(s, what);
    }
    for (i = 0; i < count; i++)
        set_slot(j, l, STAGE_PROJS[st][i], out[i]);
    if (!awq_fold)
        return RC_OK;
    if (!(sigma = xcalloc(k, sizeof(float), "scales")))
        return RC_FAIL;
    for (i = 0; rc == RC_OK && i < count; i++)
        if (fold_slot(j, l, STAGE_PROJS[st][i], sigma) != 0)
            rc = RC_FAIL;
    /* every tensor had the same scales: the last one's go into the norm */
    if (rc == RC_OK && (st == STAGE_QKV || st == STAGE_UP)) {
        norm = (float *)(st == STAGE_QKV ? j->m.rms_att : j->m.rms_ffn) + (size_t)l * k;
        for (col = 0; col < k; col++)
            norm[col] *= sigma[col];
    }
    free(sigma);
    return rc;
}

/* AWQ with folding, before q/k/v (for wo) or w1/w3 (for w2) are quantized:
 * wo's or w2's input scales searched on the input the float producers give,
 * then folded into the producer's rows (wv, w3) and the consumer's columns,
 * as AWQ does; the consumer is later quantized with scales of 1. wo only
 * when wv's rows are wo's input columns (no grouped-query attention). */
static int awq_prescale(quant_job *j, int l, llama_stage st)
{
    const llama_config *c = &j->m.cfg;
    int consumer = st == STAGE_O ? P_WO : P_W2, producer = st == STAGE_O ? P_WV : P_W3;
    static const int fp_o[] = { P_WQ, P_WK, P_WV, -1 }, fp_down[] = { P_W1, P_W3, -1 };
    const int *fp = st == STAGE_O ? fp_o : fp_down;
    size_t k = proj_cols(c, consumer), n = proj_rows(c, consumer), r, col;
    qlib_config *none = NULL;
    qlib_tensor *t = NULL;
    const float *sigma;
    float *prod = j->w[producer], *cons = j->w[consumer];
    int i, rc = RC_FAIL;
    if (qlib_config_method(job_cfg(j, l, consumer)) != QLIB_METHOD_AWQ
        || (st == STAGE_O && c->n_kv_heads != c->n_heads))
        return RC_OK;
    if (qlib_config_create(QLIB_METHOD_NONE, &none) != QLIB_OK)
        return RC_FAIL;
    for (i = 0; fp[i] >= 0; i++) {
        qlib_tensor *f = NULL;
        if (qlib_quantize(j->ctx, j->wp[fp[i]], proj_rows(c, fp[i]), proj_cols(c, fp[i]),
                          proj_cols(c, fp[i]), none, NULL, &f) != QLIB_OK) {
            report_qlib_error("float tensor");
            goto done;
        }
        set_slot(j, l, fp[i], f);
    }
    if (new_calib(j, k, st) != 0 || run_layer_all(j, l, st) != 0)
        goto done;
    if ((rc = status_outcome(qlib_quantize(j->ctx, cons, n, k, k, job_cfg(j, l, consumer), j->calib, &t),
                             "AWQ scales")) != RC_OK)
        goto done;
    rc = RC_FAIL;
    sigma = qlib_tensor_input_scales(t);
    /* x' = sigma x: the producer's output row col times sigma[col], the
     * consumer's input column col divided by it */
    for (col = 0; col < k; col++) {
        size_t pk = proj_cols(c, producer);
        for (r = 0; r < pk; r++)
            prod[col * pk + r] *= sigma[col];
        for (r = 0; r < n; r++)
            cons[r * k + col] /= sigma[col];
    }
    rc = RC_OK;
done:
    qlib_tensor_destroy(t);
    free_calib(j);
    for (i = 0; fp[i] >= 0; i++) {
        qlib_tensor **slot = model_proj(&j->m, l, fp[i]);
        qlib_tensor_destroy(*slot);
        *slot = NULL;
    }
    qlib_config_destroy(none);
    return rc;
}

static int quantize_stage(quant_job *j, int l, llama_stage st)
{
    const llama_config *c = &j->m.cfg;
    size_t k = (size_t)(st == STAGE_DOWN ? c->hidden_dim : c->dim);
    int i, rc;
    if (j->fold && (st == STAGE_QKV || st == STAGE_UP)
        && (rc = awq_prescale(j, l, st == STAGE_QKV ? STAGE_O : STAGE_DOWN)) != RC_OK)
        return rc;
    if (new_calib(j, k, st) != 0)
        return RC_FAIL;
    progress_what(&j->prog, STAGE_NAMES[st], (double)st / 4.0);
    rc = run_layer_all(j, l, st) == 0 ? RC_OK : RC_FAIL;
    if (rc == RC_OK && stage_shared(j, l, st))
        rc = quant_shared(j, l, st);
    else
        for (i = 0; rc == RC_OK && STAGE_PROJS[st][i] >= 0; i++)
            rc = quant_proj(j, l, STAGE_PROJS[st][i], j->calib);
    free_calib(j);
    return rc;
}

static int quantize_layer(quant_job *j, int l)
{
    int st, p, rc = RC_OK;
    if (load_layer(j, l) != 0)
        return RC_FAIL;
    if (!j->calibrated) {
        for (p = 0; p < N_PROJ && rc == RC_OK; p++) {
            progress_what(&j->prog, proj_names[p], (double)p / N_PROJ);
            rc = quant_proj(j, l, p, NULL);
        }
        return rc;
    }
    for (st = STAGE_QKV; st <= STAGE_DOWN && rc == RC_OK; st++)
        rc = quantize_stage(j, l, (llama_stage)st);
    if (rc == RC_OK && run_layer_all(j, l, STAGE_END) != 0)
        rc = RC_FAIL;
    return rc;
}

/* One line per layer (above the bar on a terminal; the log elsewhere). */
static void layer_line(quant_job *j, int l, double seconds)
{
    int p;
    if (j->o->quiet)
        return;
    progress_clear(&j->prog);
    fprintf(stderr, "layer %d/%d quant error:", l + 1, j->m.cfg.n_layers);
    for (p = 0; p < N_PROJ; p++)
        fprintf(stderr, " %s %.3g", proj_names[p], j->err[p]);
    fprintf(stderr, " (%.2f s)\n", seconds);
}

static int quantize_layers(quant_job *j)
{
    int l, rc = RC_OK;
    progress_init(&j->prog, j->o, j->m.cfg.n_layers, "layer");
    if (j->prog.tty)
        qlib_ctx_set_progress(j->ctx, progress_qlib, &j->prog);
    for (l = 0; l < j->m.cfg.n_layers && rc == RC_OK; l++) {
        double t0 = now_seconds();
        if ((rc = quantize_layer(j, l)) != RC_OK)
            break;
        layer_line(j, l, now_seconds() - t0);
        progress_what(&j->prog, "writing", 0.99);
        if (qw_layer(j, l) != 0)
            rc = RC_FAIL;
        progress_step(&j->prog);
    }
    qlib_ctx_set_progress(j->ctx, NULL, NULL);
    progress_end(&j->prog);
    return rc;
}

/* ------------------------------------------------------------ calibration */
/* --calib-tokens FILE: token ids separated by blanks, one sequence a line,
 * each cut to seq_len, until the budget. */
static int parse_ids(const char *path, char *text, int vocab, int seq_len, size_t budget,
                     token_seqs *out)
{
    char *line = text, *next;
    size_t lineno = 1, lines = 1, i;
    for (i = 0; text[i]; i++)
        lines += text[i] == '\n';
    out->start = xcalloc(lines + 1, sizeof(size_t), path);
    if (!out->start)
        return -1;
    for (; line && out->total + 2 <= budget; line = next, lineno++) {
        char *p = line, *end;
        size_t before = out->total, n = 0;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        while (*p) {
            long v;
            if (isspace((unsigned char)*p)) {
                p++;
                continue;
            }
            v = strtol(p, &end, 10);
            if (end == p || v < 0 || v >= vocab || (*end && !isspace((unsigned char)*end))) {
                llama_err("%s:%zu: '%.20s' is not a token id below %d", path, lineno, p, vocab);
                return -1;
            }
            p = end;
            if (n < (size_t)seq_len && out->total < budget) {
                if (out->total == out->cap) {
                    size_t cap = out->cap ? 2 * out->cap : 4096;
                    int *q = realloc(out->tokens, cap * sizeof(int));
                    if (!q) {
                        llama_err("out of memory for tokens");
                        return -1;
                    }
                    out->tokens = q;
                    out->cap = cap;
                }
                out->tokens[out->total++] = (int)v;
                n++;
            }
        }
        if (n == 1)
            out->total = before;        /* a single token feeds nothing */
        else if (n > 1)
            out->start[++out->count] = out->total;
    }
    return 0;
}

static int load_calib_ids(const char *path, int vocab, int seq_len, size_t budget, token_seqs *out)
{
    char *text;
    size_t len;
    int rc;
    memset(out, 0, sizeof(*out));
    if (read_text_file(path, &text, &len) != 0)
        return -1;
    rc = parse_ids(path, text, vocab, seq_len, budget, out);
    free(text);
    if (rc == 0 && out->count == 0) {
        llama_err("%s: no sequence of at least two token ids", path);
        rc = -1;
    }
    if (rc != 0)
        token_seqs_free(out);
    return rc;
}

/* Calibration sequences and their embeddings, the input of layer 0. */
static int prepare_calibration(quant_job *j)
{
    const llama_config *c = &j->m.cfg;
    size_t d = (size_t)c->dim, t;
    if (j->o->calib_ids) {
        if (load_calib_ids(j->o->calib_ids, c->vocab_size, c->seq_len, (size_t)j->o->calib_tokens,
                           &j->seqs) != 0)
            return -1;
    } else if (encode_stories(j->o->calib, &j->tok, c->seq_len, 1, (size_t)j->o->calib_tokens,
                              (unsigned)j->o->calib_seed, &j->seqs) != 0) {
        return -1;
    }
    j->hidden = xcalloc(j->seqs.total, d * sizeof(float), "calibration activations");
    if (!j->hidden)
        return -1;
    for (t = 0; t < j->seqs.total; t++)
        src_read_rows(&j->m.src.emb, (size_t)j->seqs.tokens[t], 1, j->hidden + t * d);
    fprintf(stderr, "calibration: %zu tokens in %zu sequences from %s%s", j->seqs.total,
            j->seqs.count, j->o->calib_ids ? j->o->calib_ids : j->o->calib,
            j->o->calib_ids ? "" : " (ASCII stories only)");
    if (j->o->calib_seed)
        fprintf(stderr, ", stories in the order of seed %d", j->o->calib_seed);
    fputc('\n', stderr);
    return 0;
}

/* --------------------------------------------------------------- command */
static const char *const FORMAT_NAMES[] = { "qlm", "gguf", "gptq", "awq" };

static void print_summary(const quant_job *j, double seconds)
{
    const char *name = qlib_method_name((qlib_method)j->method);
    double bpw = j->proj_weights > 0 ? (double)j->proj_bytes * 8.0 / j->proj_weights : 0.0;
    printf("wrote %s (%s): %s, %d bits, group %d, %.3f bits/weight, projections %.1f KiB, "
           "file %.1f KiB, %.2f s\n", j->o->out, FORMAT_NAMES[j->format], name, j->bits, j->group,
           bpw, (double)j->proj_bytes / 1024.0, (double)j->file_bytes / 1024.0, seconds);
    printf("round trip: %s, every tensor identical\n", j->format == FMT_QLM
           ? "reloaded with QLIB_LOAD_BORROW" : "read back through the model readers");
    printf("summary: method=%s bits=%d group=%d bits_per_weight=%.4f proj_bytes=%zu "
           "file_bytes=%zu seconds=%.3f format=%s embed_bits=%d\n", name, j->bits, j->group, bpw,
           j->proj_bytes, j->file_bytes, seconds, FORMAT_NAMES[j->format], j->o->embed_bits);
}

/* The source, its norms, a tensor table, the tokenizer when needed, and the
 * state for one layer. */
static int open_job(quant_job *j)
{
    const llama_opts *o = j->o;
    llama_model *m = &j->m;
    mapped_file f;
    int rc;
    if (!hf_is_dir(o->model)) {
        if (map_file(o->model, &f) != 0)
            return RC_FAIL;
        rc = qmodel_is_quantized_file(&f);
        unmap_file(&f);
        if (rc) {
            llama_err("%s: quantize reads a float model, not a quantized file", o->model);
            return RC_FAIL;
        }
    }
    if (setup_ctx(o, &j->ctx) != 0 || source_open(o->model, &m->src) != 0)
        return RC_FAIL;
    m->cfg = m->src.cfg;
    m->proj = xcalloc((size_t)m->cfg.n_layers * N_PROJ, sizeof(qlib_tensor *), "tensor table");
    j->digest = xcalloc((size_t)m->cfg.n_layers * N_PROJ + 2, sizeof(uint64_t), "digests");
    if (!m->proj || !j->digest || model_norms_from_source(m) != 0)
        return RC_FAIL;
    /* calibration text needs a tokenizer; a GGUF output needs a vocabulary */
    if (((j->calibrated && !o->calib_ids) || j->format == FMT_GGUF)
        && (rc = session_tokenizer(o, &m->src, m->cfg.vocab_size, 1, &j->tok)) != 0)
        return rc == -2 ? RC_USAGE : RC_FAIL;
    if (o->embed_bits && j->format == FMT_GGUF && m->cfg.dim % 32 != 0) {
        llama_err("--embed-bits into GGUF needs dim a multiple of 32 (Q8_0/Q4_0 blocks); dim is %d",
                  m->cfg.dim);
        return RC_USAGE;
    }
    return run_init(&j->r, m, j->ctx, RUN_NO_LOGITS | RUN_ONE_LAYER) == 0 ? RC_OK : RC_FAIL;
}

/* What quantizing needed and reading the output back does not: the layer
 * weights, the calibration activations, the run state. */
static void release_buffers(quant_job *j)
{
    int p;
    for (p = 0; p < N_PROJ; p++) {
        free(j->w[p]);
        j->w[p] = NULL;
    }
    free(j->hidden);
    j->hidden = NULL;
    token_seqs_free(&j->seqs);
    run_free(&j->r);
}

/* A config the job owns (freed with it). */
qlib_config *own_config(quant_job *j, qlib_method m)
{
    qlib_config **o = realloc(j->owned, (j->n_owned + 1) * sizeof(*o));
    if (!o) {
        llama_err("out of memory for configs");
        return NULL;
    }
    j->owned = o;
    if (qlib_config_create(m, &j->owned[j->n_owned]) != QLIB_OK) {
        report_qlib_error("config");
        return NULL;
    }
    return j->owned[j->n_owned++];
}

/* --fallback keep: the projections GGUF cannot hold as quantized leave
 * quantization out (float tensors of the source's weights, fp16 when the
 * source stores fp16), as llama.cpp's quantize does. */
static int plan_keep(quant_job *j)
{
    const llama_config *c = &j->m.cfg;
    size_t total = (size_t)c->n_layers * N_PROJ, i;
    qlib_config *none[2] = { NULL, NULL };
    int l, p, b;
    if (j->format != FMT_GGUF || !j->o->fallback || strcmp(j->o->fallback, "keep"))
        return 0;
    if (!j->pcfg && !(j->pcfg = xcalloc(total, sizeof(qlib_config *), "plan")))
        return -1;
    for (l = 0; l < c->n_layers; l++)
        for (p = 0; p < N_PROJ; p++) {
            i = (size_t)l * N_PROJ + (size_t)p;
            if (!j->pcfg[i])
                j->pcfg[i] = j->cfg;
            if (ggml_type(j->pcfg[i], proj_cols(c, p)) >= 0)
                continue;
            b = source_proj(&j->m.src, l, p)->dtype == DT_F16;
            if (!none[b] && !(none[b] = own_config(j, QLIB_METHOD_NONE)))
                return -1;
            if (qlib_config_set_int(none[b], QLIB_PARAM_BITS, b ? 16 : 32) != QLIB_OK) {
                report_qlib_error("config");
                return -1;
            }
            j->pcfg[i] = none[b];
        }
    return 0;
}

static int run_quantize(quant_job *j, output_file *out)
{
    double seconds;
    int rc;
    j->t0 = now_seconds();
    j->out = out;
    if ((rc = open_job(j)) != RC_OK)
        return rc;
    if (j->calibrated && prepare_calibration(j) != 0)
        return RC_FAIL;
    if ((j->o->target_bpw > 0.0f && budget_plan(j) != 0) || plan_keep(j) != 0)
        return RC_FAIL;
    if (quantize_embeddings(j) != 0 || qw_begin(j) != 0)
        return RC_FAIL;
    if ((rc = quantize_layers(j)) != RC_OK)
        return rc;
    if (qw_end(j) != 0)
        return RC_FAIL;
    seconds = now_seconds() - j->t0;
    release_buffers(j);
    if ((out->f && fflush(out->f) != 0) || qw_verify(j) != 0 || out_commit(out) != 0)
        return RC_FAIL;
    print_summary(j, seconds);
    return RC_OK;
}

static void free_job(quant_job *j)
{
    int p;
    for (p = 0; p < N_PROJ; p++)
        free(j->w[p]);
    free(j->hidden);
    free(j->digest);
    qw_free(j);
    if (j->cls_q != j->emb_q)
        qlib_tensor_destroy(j->cls_q);
    qlib_tensor_destroy(j->emb_q);
    for (p = 0; p < (int)j->n_owned; p++)
        qlib_config_destroy(j->owned[p]);
    free(j->owned);
    free(j->pcfg);
    token_seqs_free(&j->seqs);
    run_free(&j->r);
    tokenizer_free(&j->tok);
    model_free(&j->m);
    qlib_config_destroy(j->cfg);
    qlib_ctx_destroy(j->ctx);
}

int cmd_quantize(const llama_opts *o)
{
    quant_job j;
    output_file out;
    char path[4096];
    int rc;
    if ((rc = check_quant_opts(o)) != 0)
        return rc == -3 ? RC_UNAVAILABLE : RC_USAGE;
    memset(&j, 0, sizeof(j));
    j.o = o;
    j.format = output_format(o);
    j.calibrated = (o->methods & ((1u << QLIB_METHOD_GPTQ) | (1u << QLIB_METHOD_AWQ))) != 0;
    j.fold = o->method == QLIB_METHOD_AWQ && (j.format != FMT_QLM || o->awq_fold);
    if ((rc = make_config(o, &j.cfg)) != RC_OK)
        return rc;
    /* the output is created first: a bad -o fails before any work */
    snprintf(path, sizeof(path), "%s", o->out);
    while (strlen(path) > 1 && path[strlen(path) - 1] == '/')
        path[strlen(path) - 1] = '\0';
    if ((j.format >= FMT_GPTQ ? out_open_dir(&out, path) : out_open(&out, path)) != 0) {
        qlib_config_destroy(j.cfg);
        return RC_FAIL;
    }
    rc = run_quantize(&j, &out);
    if (rc != RC_OK)
        out_abort(&out);
    free_job(&j);
    return rc;
}
