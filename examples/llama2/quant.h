/*
 * The quantize command's state, shared by quantize.c (the layer loop and the
 * calibration), qwrite.c (the output files and their check) and budget.c
 * (the bit budget). Internal to examples/llama2.
 */
#ifndef QLIB_LLAMA_QUANT_H
#define QLIB_LLAMA_QUANT_H

#include "llama.h"

/* Output formats: qlib-llama's own file, GGUF, Hugging Face GPTQ / AWQ. */
enum { FMT_QLM = 0, FMT_GGUF = 1, FMT_GPTQ = 2, FMT_AWQ = 3 };
/* The token embedding and the classifier, after the projections. */
enum { T_EMB = N_PROJ, T_CLS = N_PROJ + 1 };

typedef struct qwrite qwrite;   /* a GGUF or HF writer (qwrite.c) */

typedef struct quant_job {
    const llama_opts *o;
    qlib_ctx *ctx;
    llama_model m;          /* the source, its norms, and the current layer's tensors */
    llama_tokenizer tok;
    llama_run r;            /* one layer's KV cache, no classifier */
    int format;             /* FMT_* */
    qlib_config *cfg;       /* the command line's settings */
    qlib_config **pcfg;     /* per projection (l * N_PROJ + p): cfg, or the bit budget's choice */
    qlib_config **owned;    /* configs made for the bit budget */
    size_t n_owned;
    int calibrated;         /* some projection uses GPTQ or AWQ */
    int fold;               /* AWQ scales are folded into the previous operation */
    token_seqs seqs;
    float *hidden;          /* seqs.total x dim: the input of the current layer */
    qlib_calib *calib;
    llama_stage stage;      /* whose inputs the hook collects */
    float *w[N_PROJ];       /* the current layer's fp32 weights, when read or rescaled */
    const float *wp[N_PROJ];   /* the current layer's fp32 weights: w[p] or the mapping */
    double err[N_PROJ];
    uint64_t *digest;       /* per tensor (projections, then T_EMB, T_CLS): what a reader must get */
    uint64_t float_digest;  /* of the float tensors as written (norms; embeddings when float) */
    qlib_tensor *emb_q, *cls_q;   /* --embed-bits: the quantized embedding and classifier */
    size_t proj_bytes;      /* storage bytes of every projection */
    double proj_weights;
    int method, bits, group;   /* of the first tensor, for the summary */
    output_file *out;
    qm_writer qw;           /* FMT_QLM */
    qwrite *wr;             /* FMT_GGUF, FMT_GPTQ, FMT_AWQ */
    size_t file_bytes;
    progress prog;          /* layers; qlib's stages within them */
    double t0;
} quant_job;

qlib_config *job_cfg(const quant_job *j, int l, int p);
qlib_config *own_config(quant_job *j, qlib_method m);   /* freed with the job */
int  cfg_get(const qlib_config *c, qlib_param p);  /* 0 when the method does not take p */

/* qwrite.c */
int  qw_begin(quant_job *j);                  /* everything before layer 0 */
int  qw_layer(quant_job *j, int l);           /* layer l's tensors and norms; frees the tensors */
int  qw_end(quant_job *j);                    /* sets j->file_bytes */
int  qw_verify(quant_job *j);                 /* reads the written output back */
void qw_free(quant_job *j);
int  tensor_digest(qlib_ctx *ctx, const qlib_tensor *t, int weights_only, uint64_t *out);
int  quantize_embeddings(quant_job *j);       /* --embed-bits */
int  ggml_type(const qlib_config *c, size_t k);  /* the GGML type holding c's tensors exactly, or -1 */

/* budget.c: --target-bpw, after the calibration is prepared: fills pcfg */
int  budget_plan(quant_job *j);

#endif
