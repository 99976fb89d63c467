/* The generate command: prompt prefill, then one token at a time. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

typedef struct prob_index {
    float p;
    int id;
} prob_index;

typedef struct sampler {
    float temperature, topp;
    uint64_t rng;
    prob_index *order;   /* scratch for top-p */
} sampler;

static float random_unit(uint64_t *s)
{
    return (float)(llama_random(s) >> 40) / 16777216.0f;  /* [0, 1) */
}

static int argmax(const float *x, int n)
{
    int i, best = 0;
    for (i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

static void softmax_temp(float *x, int n, float temperature)
{
    float max, sum = 0.0f;
    int i;
    for (i = 0; i < n; i++)
        x[i] /= temperature;
    max = x[argmax(x, n)];
    for (i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    for (i = 0; i < n; i++)
        x[i] /= sum;
}

static int by_prob_desc(const void *a, const void *b)
{
    const prob_index *x = a, *y = b;
    return x->p > y->p ? -1 : (x->p < y->p ? 1 : x->id - y->id);
}

/* Samples from the smallest set of most likely tokens whose mass reaches topp. */
static int sample_probs(sampler *sp, const float *p, int n)
{
    float r = random_unit(&sp->rng), mass = 0.0f, cum = 0.0f;
    int i, keep = n;
    for (i = 0; i < n; i++) {
        sp->order[i].p = p[i];
        sp->order[i].id = i;
    }
    qsort(sp->order, (size_t)n, sizeof(prob_index), by_prob_desc);
    for (i = 0; i < n; i++) {
        mass += sp->order[i].p;
        if (sp->topp < 1.0f && mass >= sp->topp) {
            keep = i + 1;
            break;
        }
    }
    r *= mass;
    for (i = 0; i < keep; i++) {
        cum += sp->order[i].p;
        if (r < cum)
            return sp->order[i].id;
    }
    return sp->order[keep - 1].id;
}

static int sample(sampler *sp, float *logits, int n)
{
    if (sp->temperature == 0.0f)
        return argmax(logits, n);
    softmax_temp(logits, n, sp->temperature);
    return sample_probs(sp, logits, n);
}

/* Prints a piece, skipping lone ASCII control bytes (bytes >= 0x80 are UTF-8). */
static void print_piece(const llama_tokenizer *t, int prev, int next)
{
    char byte[2];
    const char *piece = tokenizer_decode(t, prev, next, byte);
    if (piece[0] == '\0')
        return;
    if (piece[1] == '\0' && (unsigned char)piece[0] < 0x80 && !isprint((unsigned char)piece[0])
        && !isspace((unsigned char)piece[0]))
        return;
    fputs(piece, stdout);
    fflush(stdout);
}

static int encode_prompt(const llama_session *s, const llama_opts *o, int **tokens, int *n)
{
    *tokens = xcalloc(strlen(o->prompt) + 3, sizeof(int), "prompt");
    if (!*tokens)
        return -1;
    *n = tokenizer_encode(&s->tok, o->prompt, 1, *tokens);
    return *n < 0 ? -1 : 0;
}

/* Prefills the prompt, then samples until steps positions or BOS/EOS. */
static int generate(llama_session *s, sampler *sp, const int *prompt, int n, int steps, int *made,
                    int *all)
{
    int v = s->m.cfg.vocab_size, pos = n - 1, token = prompt[n - 1], i;
    memcpy(all, prompt, (size_t)n * sizeof(int));
    for (i = 1; i < n; i++)
        print_piece(&s->tok, prompt[i - 1], prompt[i]);
    if (llama_forward(&s->r, prompt, n, 0, 1) != 0)
        return -1;
    for (*made = 0;; ++*made) {
        int next = sample(sp, s->r.s.logits, v);
        if (next == s->tok.bos || next == s->tok.eos)
            break;
        print_piece(&s->tok, token, next);
        all[n + *made] = next;
        token = next;
        if (++pos >= steps)
            break;
        if (llama_forward(&s->r, &token, 1, pos, 1) != 0)
            return -1;
    }
    return 0;
}

static int run_generate(llama_session *s, const llama_opts *o)
{
    sampler sp;
    int *prompt = NULL, *all = NULL, n = 0, made = 0, rc = -1;
    int steps = o->steps <= 0 || o->steps > s->m.cfg.seq_len ? s->m.cfg.seq_len : o->steps;
    double t0;
    sp.temperature = o->temperature;
    sp.topp = o->topp;
    sp.rng = o->seed_set ? o->seed : (uint64_t)time(NULL);
    sp.rng = sp.rng * 0x9E3779B97F4A7C15ull + 1;   /* never zero */
    sp.order = xcalloc((size_t)s->m.cfg.vocab_size, sizeof(prob_index), "sampler");
    all = xcalloc((size_t)steps + 1, sizeof(int), "tokens");
    if (sp.order && all && encode_prompt(s, o, &prompt, &n) == 0) {
        if (n > steps)
            llama_err("the prompt has %d tokens, more than the %d steps", n, steps);
        t0 = now_seconds();
        if (n <= steps && generate(s, &sp, prompt, n, steps, &made, all) == 0) {
            size_t start[2] = { 0, (size_t)(n + made) };
            printf("\n");
            fflush(stdout);
            fprintf(stderr, "generated %d tokens at %.1f tokens/s\n", made,
                    made / (now_seconds() - t0));
            rc = o->tokens_out ? write_token_lines(o->tokens_out, all, start, 1) : 0;
        }
    }
    free(prompt);
    free(all);
    free(sp.order);
    return rc;
}

int cmd_generate(const llama_opts *o)
{
    llama_session s;
    int rc;
    if ((rc = session_open(o, 1, &s)) != 0)
        return rc == -2 ? RC_USAGE : RC_FAIL;
    rc = run_generate(&s, o);
    session_close(&s);
    return rc == 0 ? RC_OK : RC_FAIL;
}
