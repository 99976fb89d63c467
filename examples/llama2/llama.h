/*
 * qlib-llama: a small Llama-2 inference engine whose every linear layer is a
 * qlib tensor. Internal header shared by the files of examples/llama2/.
 */
#ifndef QLIB_LLAMA_H
#define QLIB_LLAMA_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qlib.h"

/* Exit codes of the program. */
enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2, RC_UNAVAILABLE = 3 };

/* ------------------------------------------------------------ utilities */
void   llama_err(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
void   report_qlib_error(const char *what);                 /* prints the qlib status detail */
int    size_mul(size_t a, size_t b, size_t *out);   /* 0 ok, -1 overflow */
int    size_add(size_t a, size_t b, size_t *out);
void  *xcalloc(size_t n, size_t size, const char *what);  /* NULL + message on failure */
double now_seconds(void);

typedef struct mapped_file {
    const unsigned char *data;
    size_t size;
} mapped_file;
int  map_file(const char *path, mapped_file *out);    /* read-only mmap */
void unmap_file(mapped_file *f);
int  read_text_file(const char *path, char **out, size_t *len);  /* NUL-terminated */

int      host_is_little_endian(void);
uint32_t get_u32le(const unsigned char *p);
uint64_t get_u64le(const unsigned char *p);
void     put_u32le(unsigned char *p, uint32_t v);
void     put_u64le(unsigned char *p, uint64_t v);

/* --------------------------------------------------------------- model */
typedef struct llama_config {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier;  /* 1: the classifier is the token embedding */
} llama_config;

/* The projections of one layer, in the order they are stored. */
enum { P_WQ, P_WK, P_WV, P_WO, P_W1, P_W2, P_W3, N_PROJ };
extern const char *const proj_names[N_PROJ];

typedef struct llama_model {
    llama_config cfg;
    mapped_file file;
    int quantized;          /* 1: loaded from a qlib-llama quantized file */
    const float *tok_emb;   /* vocab x dim */
    const float *rms_att;   /* n_layers x dim */
    const float *rms_ffn;   /* n_layers x dim */
    const float *rms_final; /* dim */
    const float *wcls;      /* vocab x dim (== tok_emb when shared) */
    const float *raw[N_PROJ];  /* fp32 projections of all layers (checkpoint only) */
    qlib_tensor **proj;     /* n_layers * N_PROJ, index l * N_PROJ + p */
} llama_model;

int    config_validate(const llama_config *c, const char *path);
size_t proj_rows(const llama_config *c, int p);
size_t proj_cols(const llama_config *c, int p);
size_t config_kv_dim(const llama_config *c);
const float *raw_weight(const llama_model *m, int l, int p);
qlib_tensor **model_proj(const llama_model *m, int l, int p);

int  model_load(qlib_ctx *ctx, const char *path, llama_model *m);  /* detects the format */
int  checkpoint_load(qlib_ctx *ctx, const char *path, llama_model *m);
int  qmodel_load(qlib_ctx *ctx, const char *path, llama_model *m);
int  qmodel_is_quantized_file(const mapped_file *f);
int  qmodel_save(const llama_model *m, const char *path, size_t *file_bytes);
void model_free(llama_model *m);

/* ----------------------------------------------------------- tokenizer */
typedef struct token_index {
    const char *str;
    int id;
} token_index;

typedef struct llama_tokenizer {
    int vocab_size;
    unsigned max_token_length;
    char **vocab;          /* NUL-terminated pieces */
    float *scores;
    token_index *sorted;   /* pieces in strcmp order, for lookups */
    char *piece_buf;       /* scratch for concatenations: 2 * max_token_length + 1 */
} llama_tokenizer;

enum { TOKEN_BOS = 1, TOKEN_EOS = 2 };

int  tokenizer_load(const char *path, int vocab_size, llama_tokenizer *t);
void tokenizer_free(llama_tokenizer *t);
/* tokens needs strlen(text) + 3 slots; returns the count or -1 */
int  tokenizer_encode(const llama_tokenizer *t, const char *text, int bos, int *tokens);
/* the text of next following prev; byte tokens written into byte_buf[2] */
const char *tokenizer_decode(const llama_tokenizer *t, int prev, int next, char *byte_buf);

/* ----------------------------------------------------------------- text */
typedef struct story_list {
    char *text;          /* the file, stories cut in place */
    char **story;
    size_t count;
} story_list;

int  stories_load(const char *path, story_list *out);  /* split on <|endoftext|>, stripped */
void stories_free(story_list *s);
int  text_is_ascii(const char *s);

/* -------------------------------------------------------------- forward */
typedef struct llama_state {
    float *x, *xb, *q, *att_out, *hb, *hb2;         /* per-position activations */
    float *att;                                     /* scores of a chunk of queries */
    float *key_cache, *value_cache;                 /* n_layers x seq_len x kv_dim */
    float *rope_cos, *rope_sin;                     /* seq_len x head_size/2 */
    float *logits;                                  /* seq_len x vocab */
} llama_state;

typedef struct llama_run {
    const llama_model *m;
    qlib_ctx *ctx;
    llama_state s;
} llama_run;

/* Points in a layer where a group of projections reads its input. */
typedef enum llama_stage { STAGE_QKV, STAGE_O, STAGE_UP, STAGE_DOWN, STAGE_END } llama_stage;
/* Called with the n x k input of the stage's projections; non-zero aborts. */
typedef int (*llama_hook)(void *user, llama_stage stage, const float *x, int n, int k);

int  run_init(llama_run *r, const llama_model *m, qlib_ctx *ctx);
void run_free(llama_run *r);
/* Runs layer l on the n positions in r->s.x starting at pos0; stops right
 * after the hook of stage stop (STAGE_END: the whole layer). */
int  llama_layer(llama_run *r, int l, int n, int pos0, llama_stage stop,
                 llama_hook hook, void *user);
void llama_embed(llama_run *r, const int *tokens, int n);
/* Logits of the n positions in r->s.x (or of the last one) into r->s.logits. */
void llama_classify(llama_run *r, int n, int last_only);
/* tokens[0..n) at positions pos0.. ; logits of every position or the last */
int  llama_forward(llama_run *r, const int *tokens, int n, int pos0, int last_only);

/* ------------------------------------------------------------- commands */
#define OPT_UNSET INT_MIN
typedef struct llama_opts {
    const char *command;
    const char *model, *tokenizer, *isa, *text, *calib, *out, *prompt;
    int threads;            /* -1: qlib's default */
    int compute;            /* qlib_compute */
    int method, bits, group, act_order, sym;  /* bits, group: -2 = unset */
    int clip_grid, awq_rounding;              /* OPT_UNSET: qlib's default */
    int calib_tokens;
    float temperature, topp;
    int steps;
    unsigned long long seed;
    int seed_set;
} llama_opts;

int setup_ctx(const llama_opts *o, qlib_ctx **ctx);

/* A context, a model, its tokenizer and the activations to run it. */
typedef struct llama_session {
    qlib_ctx *ctx;
    llama_model m;
    llama_tokenizer tok;
    llama_run r;
} llama_session;

int  session_open(const llama_opts *o, llama_session *s);
void session_close(llama_session *s);
void describe_model(const llama_session *s, FILE *f);
const char *method_name(qlib_method m);
double model_bits_per_weight(const llama_model *m, size_t *storage_bytes);
int cmd_ppl(const llama_opts *o);
int cmd_generate(const llama_opts *o);
int cmd_quantize(const llama_opts *o);
int cmd_info(const llama_opts *o);

/* Stories of a text file encoded as BOS + tokens, each at most seq_len. */
typedef struct token_seqs {
    int *tokens;
    size_t *start;   /* count + 1 offsets into tokens */
    size_t count;
    size_t total;   /* tokens in all sequences */
    size_t cap;     /* allocated slots of tokens */
} token_seqs;

int  encode_stories(const char *path, const llama_tokenizer *t, int seq_len,
                    int ascii_only, size_t max_tokens, token_seqs *out);
void token_seqs_free(token_seqs *s);

#endif
