/* Loading everything a command needs; the ppl and info commands. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

int session_tokenizer(const llama_opts *o, const model_source *src, int vocab_size, int need,
                      llama_tokenizer *t)
{
    memset(t, 0, sizeof(*t));
    if (o->tokenizer)
        return tokenizer_load(o->tokenizer, vocab_size, t);
    if (src->kind == SRC_GGUF && gguf_find(&src->gguf, "tokenizer.ggml.tokens"))
        return tokenizer_from_gguf(src->path, &src->gguf, vocab_size, t);
    if (!need)
        return 0;
    llama_err("%s needs --tokenizer FILE (a llama2.c tokenizer.bin or a GGUF file with a "
              "vocabulary): %s has none", o->command, o->model);
    return -2;
}

int session_open(const llama_opts *o, int need_tokenizer, llama_session *s)
{
    int rc = -1;
    memset(s, 0, sizeof(*s));
    if (setup_ctx(o, &s->ctx) != 0)
        return -1;
    if (model_load(s->ctx, o->model, &s->m) != 0
        || (rc = session_tokenizer(o, &s->m.src, s->m.cfg.vocab_size, need_tokenizer, &s->tok)) != 0
        || (rc = run_init(&s->r, &s->m, s->ctx, 0)) != 0) {
        rc = rc == -2 ? -2 : -1;
        session_close(s);
        return rc;
    }
    return 0;
}

void session_close(llama_session *s)
{
    run_free(&s->r);
    tokenizer_free(&s->tok);
    model_free(&s->m);
    qlib_ctx_destroy(s->ctx);
    memset(s, 0, sizeof(*s));
}

/* Storage bits per weight over all projections. */
double model_bits_per_weight(const llama_model *m, size_t *storage_bytes)
{
    double bytes = 0.0, weights = 0.0;
    int l, p;
    for (l = 0; l < m->cfg.n_layers; l++) {
        for (p = 0; p < N_PROJ; p++) {
            const qlib_tensor *t = *model_proj(m, l, p);
            bytes += (double)qlib_tensor_storage_bytes(t);
            weights += (double)qlib_tensor_rows(t) * (double)qlib_tensor_cols(t);
        }
    }
    if (storage_bytes)
        *storage_bytes = (size_t)bytes;
    return weights > 0 ? bytes * 8.0 / weights : 0.0;
}

void describe_model(const llama_session *s, FILE *f)
{
    const llama_config *c = &s->m.cfg;
    const qlib_tensor *t = *model_proj(&s->m, 0, P_WQ);
    fprintf(f, "model: dim %d, hidden %d, %d layers, %d heads (%d kv), vocab %d, seq_len %d, %s\n",
            c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
            c->seq_len, s->m.quantized ? "quantized file" : source_kind_name(s->m.src.kind));
    char cls[64];
    if (s->m.cls_q)
        snprintf(cls, sizeof(cls), "%d-bit qlib tensor", qlib_tensor_bits(s->m.cls_q));
    else
        snprintf(cls, sizeof(cls), "fp32");
    fprintf(f, "projections: %s, %d bits, group %d, %.3f bits/weight; classifier %s (%s)\n",
            qlib_method_name(qlib_tensor_method(t)), qlib_tensor_bits(t), qlib_tensor_group_size(t),
            model_bits_per_weight(&s->m, NULL), cls,
            c->shared_classifier ? "the token embedding" : "separate");
    fprintf(f, "qlib %s, isa %s, threads %d, compute %s\n", qlib_version_string(),
            qlib_ctx_isa(s->ctx), qlib_ctx_threads(s->ctx),
            qlib_ctx_compute(s->ctx) == QLIB_COMPUTE_F32 ? "f32" : "auto");
}

/* -log softmax(row)[target], in double */
static double token_nll(const float *row, int n, int target)
{
    double max = row[0], sum = 0.0;
    int i;
    for (i = 1; i < n; i++)
        if (row[i] > max)
            max = row[i];
    for (i = 0; i < n; i++)
        sum += exp((double)row[i] - max);
    return log(sum) + max - (double)row[target];
}

static int sequence_nll(llama_session *s, const int *tok, int n, double *nll)
{
    int v = s->m.cfg.vocab_size, t;
    if (llama_forward(&s->r, tok, n, 0, 0) != 0)
        return -1;
    for (t = 0; t + 1 < n; t++)
        *nll += token_nll(s->r.s.logits + (size_t)t * (size_t)v, v, tok[t + 1]);
    return 0;
}

static int report_ppl(llama_session *s, const llama_opts *o)
{
    token_seqs seqs;
    progress prog;
    double nll = 0.0, t0, dt;
    size_t i, predicted;
    if (encode_stories(o->text, &s->tok, s->m.cfg.seq_len, 0, 0, 0, &seqs) != 0)
        return -1;
    if (o->tokens_out && write_token_lines(o->tokens_out, seqs.tokens, seqs.start, seqs.count) != 0) {
        token_seqs_free(&seqs);
        return -1;
    }
    t0 = now_seconds();
    progress_init(&prog, o, (int)seqs.count, "story");
    for (i = 0; i < seqs.count; i++) {
        if (sequence_nll(s, seqs.tokens + seqs.start[i], (int)(seqs.start[i + 1] - seqs.start[i]),
                         &nll) != 0) {
            progress_end(&prog);
            token_seqs_free(&seqs);
            return -1;
        }
        progress_step(&prog);
    }
    progress_end(&prog);
    dt = now_seconds() - t0;
    predicted = seqs.total - seqs.count;
    printf("text: %s: %zu stories, %zu predicted tokens\n", o->text, seqs.count, predicted);
    printf("nll: %.6f nats/token\n", nll / (double)predicted);
    printf("perplexity: %.4f\n", exp(nll / (double)predicted));
    printf("speed: %.0f tokens/s (%zu tokens in %.3f s)\n", (double)seqs.total / dt, seqs.total, dt);
    token_seqs_free(&seqs);
    return 0;
}

int cmd_ppl(const llama_opts *o)
{
    llama_session s;
    int rc;
    if (!o->text) {
        llama_err("ppl needs --text FILE");
        return RC_USAGE;
    }
    if ((rc = session_open(o, 1, &s)) != 0)
        return rc == -2 ? RC_USAGE : RC_FAIL;
    describe_model(&s, stdout);
    rc = report_ppl(&s, o);
    session_close(&s);
    return rc == 0 ? RC_OK : RC_FAIL;
}

int cmd_info(const llama_opts *o)
{
    llama_session s;
    int l, p;
    if (session_open(o, 0, &s) != 0)
        return RC_FAIL;
    describe_model(&s, stdout);
    printf("%-5s %-4s %11s %-6s %-8s %4s %5s %10s\n", "layer", "proj", "shape", "stored", "method",
           "bits", "group", "bits/w");
    for (l = 0; l < s.m.cfg.n_layers; l++) {
        for (p = 0; p < N_PROJ; p++) {
            const qlib_tensor *t = *model_proj(&s.m, l, p);
            char shape[32];
            snprintf(shape, sizeof(shape), "%zux%zu", qlib_tensor_rows(t), qlib_tensor_cols(t));
            printf("%-5d %-4s %11s %-6s %-8s %4d %5d %10.3f\n", l, proj_names[p], shape,
                   s.m.quantized ? "qlib" : dtype_name(source_proj(&s.m.src, l, p)->dtype),
                   qlib_method_name(qlib_tensor_method(t)), qlib_tensor_bits(t),
                   qlib_tensor_group_size(t), qlib_tensor_bits_per_weight(t));
        }
    }
    session_close(&s);
    return RC_OK;
}
