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
/* 64-bit FNV-1a of len bytes, continuing from h (LLAMA_FNV_OFFSET to start):
 * the digests of .qlm sections and of the written tensors' read-back. */
#define LLAMA_FNV_OFFSET 0xcbf29ce484222325ull
uint64_t llama_fnv1a(uint64_t h, const void *data, size_t len);
/* xorshift64*: the next of a sequence from a nonzero *state */
uint64_t llama_random(uint64_t *state);
extern void (*llama_err_before)(void);                      /* called before a message, if set */
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

/* An output file or directory, written to PATH.qlib-llama-tmp.<pid> and
 * renamed over PATH by out_commit (outfile.c). */
typedef struct output_file {
    char path[4096], tmp[4096], dir[4096];
    FILE *f;                /* files: the open temporary file */
    int fd, is_dir, open;
} output_file;
int  out_open(output_file *o, const char *path);
int  out_open_dir(output_file *o, const char *path);
int  out_dir_file(const output_file *o, const char *name, char *buf, size_t cap);
int  out_commit(output_file *o);
void out_abort(output_file *o);

int      host_is_little_endian(void);
uint32_t get_u32le(const unsigned char *p);
uint64_t get_u64le(const unsigned char *p);
void     put_u32le(unsigned char *p, uint32_t v);
void     put_u64le(unsigned char *p, uint64_t v);

/* ------------------------------------------------------ element types */
/* Stored element types; the values are GGML's type ids (GGUF tensor types). */
enum { DT_F32 = 0, DT_F16 = 1, DT_Q4_0 = 2, DT_Q8_0 = 8, DT_BF16 = 30 };
/* Tensors of quantized Hugging Face checkpoints, held as imported qlib tensors. */
enum { DT_GPTQ = 1001, DT_AWQ = 1002 };
const char *dtype_name(int dtype);            /* "F32", ...; NULL when unknown */
int    dtype_block(int dtype, size_t *elems, size_t *bytes);  /* -1 when unknown */
int    dtype_row_bytes(int dtype, size_t cols, size_t *bytes); /* -1: cols not whole blocks */
float  f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);                 /* round to nearest even */
float  bf16_to_f32(uint16_t h);
/* cols elements of one stored row into fp32 (blocks dequantized), and back
 * (F32 and F16 only) */
void   row_to_f32(int dtype, const unsigned char *src, size_t cols, float *dst);
void   row_from_f32(int dtype, const float *src, size_t cols, unsigned char *dst);

/* --------------------------------------------------------------- model */
typedef struct llama_config {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared_classifier;  /* 1: the classifier is the token embedding */
    float norm_eps;         /* RMSNorm epsilon (llama2.c: 1e-5) */
    float rope_theta;       /* rotary base (llama2.c: 10000) */
} llama_config;

/* The projections of one layer, in the order they are stored. */
enum { P_WQ, P_WK, P_WV, P_WO, P_W1, P_W2, P_W3, N_PROJ };
extern const char *const proj_names[N_PROJ];

/* ----------------------------------------------------------------- GGUF */
/* A GGUF file (v2, v3) parsed in place: every key, value and tensor info
 * points into the mapped file (gguf.c). */
enum { GV_U8 = 0, GV_I8, GV_U16, GV_I16, GV_U32, GV_I32, GV_F32, GV_BOOL, GV_STR, GV_ARR,
       GV_U64, GV_I64, GV_F64, GV_N_TYPES };
typedef struct gguf_kv {
    const char *key;                /* not NUL-terminated: key_len bytes */
    size_t key_len;
    uint32_t type;                  /* GV_* */
    const unsigned char *raw;       /* the value as stored: type-specific */
    size_t raw_bytes;
    uint32_t elem_type;             /* arrays: type of the elements */
    uint64_t count;                 /* arrays: number of elements */
    const unsigned char *elems;     /* arrays: the first element */
} gguf_kv;
typedef struct gguf_tensor_info {
    const char *name;
    size_t name_len;
    uint32_t n_dims;
    uint64_t ne[4];                 /* ne[0] is the contiguous dimension */
    uint32_t type;                  /* DT_* / GGML type id */
    uint64_t offset;                /* from the start of the data section */
    const unsigned char *data;      /* NULL when the type is one this program does not know */
    size_t bytes;
} gguf_tensor_info;
typedef struct gguf_file {
    mapped_file file;
    uint32_t version, alignment;
    size_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor_info *tensors;
    size_t data_offset;
} gguf_file;

int  gguf_is_gguf(const mapped_file *f);
int  gguf_parse(const char *path, const mapped_file *f, gguf_file *g);  /* g borrows f */
int  gguf_open(const char *path, gguf_file *g);                         /* maps and parses */
void gguf_free(gguf_file *g);                                           /* unmaps if opened */
const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const gguf_tensor_info *gguf_find_tensor(const gguf_file *g, const char *name);
/* Scalars of any integer type in range, floats of either width; -1 with a
 * message when absent (unless optional: then 1) or of the wrong type. */
int  gguf_get_int(const char *path, const gguf_file *g, const char *key, int optional,
                  long long lo, long long hi, long long *v);
int  gguf_get_float(const char *path, const gguf_file *g, const char *key, int optional, double *v);
int  gguf_get_str(const char *path, const gguf_file *g, const char *key, int optional,
                  const char **s, size_t *len);
/* Element i of an array of strings (checked by gguf_parse). */
void gguf_arr_str(const gguf_kv *kv, uint64_t i, const char **s, size_t *len);

/* Writing: declare every key and tensor, then gguf_write_begin writes the
 * header, the keys and the tensor table, and the tensors' bytes follow in
 * declaration order (gguf_write_tensor, or _open/_bytes/_close in pieces).
 * The tensor types are any with a known block size (F32, F16, BF16, Q8_0,
 * Q4_0): a quantized tensor's bytes come ready-made, e.g. from
 * qlib_tensor_export(t, QLIB_LAYOUT_GGML_Q4_0, ...). */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_create(FILE *f, const char *path);
void gguf_writer_free(gguf_writer *w);
int  gguf_add_u32(gguf_writer *w, const char *key, uint32_t v);
int  gguf_add_i32(gguf_writer *w, const char *key, int32_t v);
int  gguf_add_f32(gguf_writer *w, const char *key, float v);
int  gguf_add_bool(gguf_writer *w, const char *key, int v);
int  gguf_add_str(gguf_writer *w, const char *key, const char *v);
int  gguf_add_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n);
int  gguf_add_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n);
int  gguf_add_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
int  gguf_add_raw(gguf_writer *w, const gguf_kv *kv);   /* a key copied from a file as it is */
int  gguf_has_key(const gguf_writer *w, const char *key);
/* rows x cols (cols contiguous; rows 1 for a vector); returns the index */
int  gguf_add_tensor(gguf_writer *w, const char *name, int dtype, size_t rows, size_t cols);
int  gguf_write_begin(gguf_writer *w);
int  gguf_write_open(gguf_writer *w, int index);
int  gguf_write_bytes(gguf_writer *w, const void *p, size_t n);
int  gguf_write_close(gguf_writer *w);
int  gguf_write_tensor(gguf_writer *w, int index, const void *p, size_t n);
int  gguf_write_end(gguf_writer *w, size_t *file_bytes);   /* every tensor written */

/* --------------------------------------------------------- safetensors */
typedef struct st_tensor {
    char *name;
    int dtype;              /* DT_F32, DT_F16, DT_BF16; -1 another (kept, never read) */
    char dtype_name[16];
    int n_dims;
    uint64_t shape[8];
    const unsigned char *data;
    size_t bytes;
} st_tensor;
typedef struct st_file {
    mapped_file file;
    st_tensor *tensors;
    size_t n_tensors;
} st_file;
int  st_parse(const char *path, const mapped_file *f, st_file *s);   /* s borrows f */
int  st_open(const char *path, st_file *s);
void st_free(st_file *s);
const st_tensor *st_find(const st_file *s, const char *name);

/* Writing, as for GGUF: declare, begin, tensors in order, end. dtype is
 * DT_F32, DT_F16, DT_BF16, or ST_I32 (GPTQ/AWQ packed codes). */
enum { ST_I32 = 1000 };
typedef struct st_writer st_writer;
st_writer *st_writer_create(FILE *f, const char *path);
/* Spooled: the data goes to spool as it is written, and st_write_end writes
 * the header (built from every tensor declared by then) and copies the data
 * after it, so that tensors may be declared while writing, each before it is
 * opened; no st_write_begin needed. */
st_writer *st_writer_create_spooled(FILE *f, FILE *spool, const char *path);
void st_writer_free(st_writer *w);
int  st_add_tensor(st_writer *w, const char *name, int dtype, int n_dims, const uint64_t *shape);
int  st_add_metadata(st_writer *w, const char *key, const char *value);
int  st_write_begin(st_writer *w);
int  st_write_open(st_writer *w, int index);
int  st_write_bytes(st_writer *w, const void *p, size_t n);
int  st_write_close(st_writer *w);
int  st_write_end(st_writer *w, size_t *file_bytes);

/* --------------------------------------------------------- model source */
/* A float model's tensors where they are stored: a llama2.c checkpoint, a
 * GGUF file or a Hugging Face directory, all mapped (source.c). Tensors are
 * read into fp32 a row range at a time. */
typedef struct src_tensor {
    const unsigned char *data;
    int dtype;
    size_t rows, cols;
    int hf_heads;           /* > 0: rows in HF's rotary order for this many heads, undone on read */
    qlib_tensor *q;         /* DT_GPTQ, DT_AWQ: the imported tensor, rows in model order */
    qlib_ctx *qctx;         /* the context that reads its rows */
} src_tensor;
enum { SRC_LLAMA2C = 1, SRC_GGUF = 2, SRC_HF = 3 };
typedef struct model_source {
    int kind;
    char path[4096];
    llama_config cfg;
    mapped_file file;       /* llama2.c */
    gguf_file gguf;         /* GGUF: metadata, vocabulary */
    st_file *shards;        /* HF */
    size_t n_shards;
    src_tensor emb, cls, norm_final;
    src_tensor *norm_att, *norm_ffn;   /* n_layers */
    src_tensor *proj;                  /* n_layers * N_PROJ */
    qlib_ctx *qctx;         /* HF GPTQ / AWQ: imports the tensors and reads their rows */
    int quant_layout;       /* HF GPTQ / AWQ: QLIB_LAYOUT_GPTQ or _AWQ_GEMM, else 0 */
    int quant_bits, quant_group;
} model_source;

int  source_open(const char *path, model_source *s);
void source_close(model_source *s);
const char *source_kind_name(int kind);
src_tensor *source_proj(const model_source *s, int l, int p);
/* rows [row0, row0 + n) of t as fp32, n x cols */
void src_read_rows(const src_tensor *t, size_t row0, size_t n, float *dst);
int  src_read_all(const src_tensor *t, float **out, const char *what);  /* allocates */
/* the stored bytes of model row r (HF's rotary order undone) */
const unsigned char *src_row_bytes(const src_tensor *t, size_t r);
/* the stored rows themselves, when they are fp32 in model order */
const float *src_direct_f32(const src_tensor *t);
/* The engine's qlib tensor for a stored tensor: GGML Q8_0 / Q4_0 blocks and
 * GPTQ / AWQ tensors imported as they are (a GPTQ / AWQ tensor moves from the
 * source to *out), F16 as a 16-bit float tensor, anything else fp32. */
int  src_to_tensor(qlib_ctx *ctx, src_tensor *t, float *buf, qlib_tensor **out, const char *what);

/* hfquant.c: HF's rotary order and the output columns of packed GPTQ / AWQ
 * parts. from[c] is the source column that column c takes. */
void hf_rotary_from(size_t rows, int heads, int to_hf, size_t *from);
int  hfq_groups(int layout, size_t k, int group, size_t *groups);
int  hfq_part_sizes(int layout, size_t n, size_t k, int bits, int group, size_t bytes[4]);
void hfq_permute(int layout, size_t n, size_t k, int bits, size_t groups, const size_t *from,
                 const void *const src[4], void *const dst[4]);
/* hf.c */
extern const char *const HF_PROJ[N_PROJ];   /* "self_attn.q_proj", ... */
int  hf_open(const char *dir, model_source *s);
int  hf_is_dir(const char *path);
struct json_t *hf_load_json(const char *dir, const char *name, int optional);

typedef struct llama_model {
    llama_config cfg;
    mapped_file file;       /* a quantized model file */
    model_source src;       /* a float model */
    int quantized;          /* 1: loaded from a qlib-llama quantized file */
    const float *tok_emb;   /* vocab x dim */
    const float *rms_att;   /* n_layers x dim */
    const float *rms_ffn;   /* n_layers x dim */
    const float *rms_final; /* dim */
    const float *wcls;      /* vocab x dim (== tok_emb when shared) */
    qlib_tensor *emb_q;     /* a quantized token embedding (tok_emb NULL): rows dequantized on lookup */
    qlib_tensor *cls_q;     /* a quantized classifier (wcls NULL); == emb_q when shared */
    float *owned[5];        /* what the pointers above point to when converted */
    qlib_tensor **proj;     /* n_layers * N_PROJ, index l * N_PROJ + p */
} llama_model;

int    config_validate(const llama_config *c, const char *path);
size_t proj_rows(const llama_config *c, int p);
size_t proj_cols(const llama_config *c, int p);
size_t config_kv_dim(const llama_config *c);
qlib_tensor **model_proj(const llama_model *m, int l, int p);

int  model_load(qlib_ctx *ctx, const char *path, llama_model *m);  /* detects the format */
int  checkpoint_open(const char *path, model_source *s);
/* The norms of every layer and the final one as fp32 (for quantize). */
int  model_norms_from_source(llama_model *m);
int  qmodel_load(qlib_ctx *ctx, const char *path, llama_model *m);
int  qmodel_is_quantized_file(const mapped_file *f);
void model_free(llama_model *m);

/* The quantized model file, written layer by layer. */
typedef struct qm_writer {
    FILE *f;
    const char *path;
    size_t written;
} qm_writer;
/* header flags: the token embedding / the separate classifier are qlib
 * tensors, in records (layer n_layers, projection QM_REC_EMB / QM_REC_CLS)
 * after the projections, instead of fp32 arrays */
enum { QM_FLAG_EMB_QUANTIZED = 2, QM_FLAG_CLS_QUANTIZED = 4 };
enum { QM_REC_EMB = N_PROJ, QM_REC_CLS = N_PROJ + 1 };
int  qm_write_floats(qm_writer *w, const model_source *src, unsigned flags);
/* The fp32 section written again over the one qm_write_floats wrote, with
 * the RMSNorm weights rms_att and rms_ffn (n_layers x dim each) in place of
 * the source's (AWQ's folded scales); the file position is left at its
 * end. */
int  qm_rewrite_floats(qm_writer *w, const model_source *src, unsigned flags,
                       const float *rms_att, const float *rms_ffn);
int  qm_write_tensor(qm_writer *w, const qlib_tensor *t, int l, int p);

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
    token_index *sorted;   /* normal and user pieces in strcmp order, for lookups */
    int n_sorted;
    char *piece_buf;       /* scratch for concatenations: 2 * max_token_length + 1 */
    unsigned char *type;   /* TT_* per token */
    int bos, eos, unk;
    int byte_id[256];      /* the <0xXX> tokens, -1 where missing */
} llama_tokenizer;

/* token types, as GGUF's tokenizer.ggml.token_type */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* A llama2.c tokenizer.bin, or the vocabulary of a GGUF file. */
int  tokenizer_load(const char *path, int vocab_size, llama_tokenizer *t);
int  tokenizer_from_gguf(const char *path, const gguf_file *g, int vocab_size, llama_tokenizer *t);
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
    int one_layer;          /* the KV cache holds one layer, reused by all */
} llama_run;

/* Points in a layer where a group of projections reads its input. */
typedef enum llama_stage { STAGE_QKV, STAGE_O, STAGE_UP, STAGE_DOWN, STAGE_END } llama_stage;
/* Called with the n x k input of the stage's projections; non-zero aborts. */
typedef int (*llama_hook)(void *user, llama_stage stage, const float *x, int n, int k);

enum { RUN_NO_LOGITS = 1, RUN_ONE_LAYER = 2 };  /* quantize: no classifier, one layer's KV cache */
int  run_init(llama_run *r, const llama_model *m, qlib_ctx *ctx, unsigned flags);
void run_free(llama_run *r);
/* Runs layer l on the n positions in r->s.x starting at pos0; stops right
 * after the hook of stage stop (STAGE_END: the whole layer). */
int  llama_layer(llama_run *r, int l, int n, int pos0, llama_stage stop,
                 llama_hook hook, void *user);
int  llama_embed(llama_run *r, const int *tokens, int n);
/* Logits of the n positions in r->s.x (or of the last one) into r->s.logits. */
int  llama_classify(llama_run *r, int n, int last_only);
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
    unsigned methods;       /* --method: bit m for each method given (a list with --target-bpw) */
    int calib_tokens;       /* the calibration budget */
    const char *calib_ids;  /* --calib-tokens FILE */
    const char *type, *format;   /* convert: --type f32|f16, --format gguf|hf */
    const char *tokens_out; /* ppl, generate: the token ids, one sequence a line */
    int clip_grid, awq_rounding, awq_scales;  /* OPT_UNSET: qlib's default */
    int embed_bits;         /* quantize: 0 (float), 8 or 4: the token embedding and classifier */
    const char *fallback;   /* quantize --format gguf: f32, f16 or q8_0 */
    float target_bpw;       /* quantize: the bit budget, 0 = none */
    int quiet;              /* quantize, ppl: no progress */
    int awq_shared;         /* quantize, qlm output: AWQ's q/k/v and w1/w3 with one set of input scales */
    int awq_fold;           /* quantize, qlm output: AWQ's scales folded, as GGUF and HF output do */
    int calib_seed;         /* quantize: --calib's stories in this seed's order (0: the file's) */
    float temperature, topp;
    int steps;
    unsigned long long seed;
    int seed_set;
} llama_opts;

int setup_ctx(const llama_opts *o, qlib_ctx **ctx);

/* progress.c: a bar on a terminal (stderr), nothing elsewhere or with --quiet */
typedef struct progress {
    int tty, quiet, drawn;
    int total, done;            /* units: layers, stories */
    const char *unit;
    char what[64];              /* what the current unit is doing */
    double unit_frac;           /* of the current unit */
    const char *stage;          /* qlib's stage, from the progress callback */
    double stage_frac;
    double t0, last;
} progress;
void progress_init(progress *p, const llama_opts *o, int total, const char *unit);
void progress_what(progress *p, const char *what, double unit_frac);
int  progress_qlib(void *user, const char *stage, double fraction);  /* a qlib_progress_fn */
void progress_step(progress *p);      /* a unit done */
void progress_clear(progress *p);     /* before printing a line of its own */
void progress_end(progress *p);

/* A context, a model, its tokenizer and the activations to run it. */
typedef struct llama_session {
    qlib_ctx *ctx;
    llama_model m;
    llama_tokenizer tok;
    llama_run r;
} llama_session;

int  session_open(const llama_opts *o, int need_tokenizer, llama_session *s);
/* --tokenizer, else the model's own GGUF vocabulary; -2 when needed and absent */
int  session_tokenizer(const llama_opts *o, const model_source *src, int vocab_size, int need,
                       llama_tokenizer *t);
void session_close(llama_session *s);
void describe_model(const llama_session *s, FILE *f);
double model_bits_per_weight(const llama_model *m, size_t *storage_bytes);
int cmd_ppl(const llama_opts *o);
int cmd_generate(const llama_opts *o);
int cmd_quantize(const llama_opts *o);
int cmd_info(const llama_opts *o);
int cmd_convert(const llama_opts *o);
int write_vocab_gguf(gguf_writer *w, const llama_tokenizer *t);
/* convert.c, shared with quantize's writers */
extern const char *const GGUF_PROJ[N_PROJ];  /* "attn_q", ... */
int  gguf_copy_keys(gguf_writer *w, const gguf_file *g, int own_vocab);
int  gguf_llama_keys(gguf_writer *w, const llama_config *c, const char *name);
const char *base_name(const char *path);
int  ends_with(const char *s, const char *tail);
struct json_t *hf_config_object(const model_source *s, const llama_tokenizer *tok, int dtype);
int  write_json(struct json_t *j, const char *path);
int  copy_tokenizer_files(const model_source *s, const output_file *out, int *copied);

/* Stories of a text file encoded as BOS + tokens, each at most seq_len. */
typedef struct token_seqs {
    int *tokens;
    size_t *start;   /* count + 1 offsets into tokens */
    size_t count;
    size_t total;   /* tokens in all sequences */
    size_t cap;     /* allocated slots of tokens */
} token_seqs;

/* seed 0 takes the stories in the file's order, any other a random order
 * that depends on the seed only */
int  encode_stories(const char *path, const llama_tokenizer *t, int seq_len,
                    int ascii_only, size_t max_tokens, unsigned seed, token_seqs *out);
void token_seqs_free(token_seqs *s);
/* one sequence a line, ids separated by spaces (the --calib-tokens format) */
int  write_token_lines(const char *path, const int *tokens, const size_t *start, size_t count);

#endif
