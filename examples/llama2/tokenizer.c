/* The llama2.c tokenizer: file reader, BPE encoder with byte fallback, decoder. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define MAX_PIECE_BYTES 4096u
#define MERGE_FLOOR -1e10f    /* a merge must score above this to be taken */

static int cmp_index(const void *a, const void *b)
{
    return strcmp(((const token_index *)a)->str, ((const token_index *)b)->str);
}

static int read_records(const char *path, const mapped_file *f, llama_tokenizer *t)
{
    size_t off = 4;
    int i;
    for (i = 0; i < t->vocab_size; i++) {
        uint32_t len;
        if (f->size - off < 8) {
            llama_err("%s: truncated at token %d of %d", path, i, t->vocab_size);
            return -1;
        }
        memcpy(&t->scores[i], f->data + off, 4);
        len = get_u32le(f->data + off + 4);
        off += 8;
        if (len > t->max_token_length || len > f->size - off) {
            llama_err("%s: token %d has length %u (max_token_length %u, %zu bytes left)", path, i,
                      len, t->max_token_length, f->size - off);
            return -1;
        }
        t->vocab[i] = xcalloc((size_t)len + 1, 1, "token");
        if (!t->vocab[i])
            return -1;
        memcpy(t->vocab[i], f->data + off, len);
        off += len;
    }
    if (off != f->size) {
        llama_err("%s: %zu bytes after the %d tokens the model expects", path, f->size - off,
                  t->vocab_size);
        return -1;
    }
    return 0;
}

static int hex_value(char c);

/* "<0xAB>" is the byte 0xAB */
static int byte_piece(const char *piece)
{
    int hi, lo;
    if (strlen(piece) != 6 || strncmp(piece, "<0x", 3) != 0 || piece[5] != '>')
        return -1;
    hi = hex_value(piece[3]);
    lo = hex_value(piece[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Token types where the file has none (llama2.c): <unk>, BOS and EOS
 * (llama2.c's 1 and 2), byte tokens, and normal pieces. */
static void default_types(llama_tokenizer *t)
{
    int i;
    for (i = 0; i < t->vocab_size; i++)
        t->type[i] = i == t->bos || i == t->eos ? TT_CONTROL
                     : i == t->unk && !strcmp(t->vocab[i], "<unk>") ? TT_UNKNOWN
                     : byte_piece(t->vocab[i]) >= 0 ? TT_BYTE : TT_NORMAL;
}

/* The lookup table of pieces text can turn into (normal and user tokens),
 * and the byte tokens. */
static void build_index(llama_tokenizer *t)
{
    int i, n = 0, b;
    for (i = 0; i < 256; i++)
        t->byte_id[i] = -1;
    for (i = 0; i < t->vocab_size; i++) {
        if (t->type[i] == TT_BYTE && (b = byte_piece(t->vocab[i])) >= 0 && t->byte_id[b] < 0)
            t->byte_id[b] = i;
        if (t->type[i] == TT_NORMAL || t->type[i] == TT_USER) {
            t->sorted[n].str = t->vocab[i];
            t->sorted[n].id = i;
            n++;
        }
    }
    t->n_sorted = n;
    qsort(t->sorted, (size_t)n, sizeof(token_index), cmp_index);
}

static int alloc_tables(llama_tokenizer *t)
{
    t->vocab = xcalloc((size_t)t->vocab_size, sizeof(char *), "tokenizer");
    t->scores = xcalloc((size_t)t->vocab_size, sizeof(float), "tokenizer");
    t->sorted = xcalloc((size_t)t->vocab_size, sizeof(token_index), "tokenizer");
    t->type = xcalloc((size_t)t->vocab_size, 1, "tokenizer");
    return t->vocab && t->scores && t->sorted && t->type ? 0 : -1;
}

static int tokenizer_parse(const char *path, const mapped_file *f, llama_tokenizer *t)
{
    if (f->size < 4) {
        llama_err("%s: too short for a llama2.c tokenizer", path);
        return -1;
    }
    t->max_token_length = get_u32le(f->data);
    if (t->max_token_length < 1 || t->max_token_length > MAX_PIECE_BYTES) {
        llama_err("%s: max_token_length %u is out of range [1, %u]", path, t->max_token_length,
                  MAX_PIECE_BYTES);
        return -1;
    }
    t->piece_buf = xcalloc(2 * (size_t)t->max_token_length + 1, 1, "tokenizer");
    if (alloc_tables(t) || !t->piece_buf || read_records(path, f, t))
        return -1;
    t->unk = 0;
    t->bos = 1;
    t->eos = 2;
    default_types(t);
    build_index(t);
    return 0;
}

/* ------------------------------------------------------ GGUF vocabulary */
/* SentencePiece writes a space as U+2581 (E2 96 81); the pieces here hold
 * spaces, as llama2.c's do. */
static char *piece_from_spm(const char *s, size_t len)
{
    char *out = xcalloc(len + 1, 1, "token");
    size_t i, n = 0;
    if (!out)
        return NULL;
    for (i = 0; i < len; i++) {
        if (i + 2 < len && (unsigned char)s[i] == 0xe2 && (unsigned char)s[i + 1] == 0x96
            && (unsigned char)s[i + 2] == 0x81) {
            out[n++] = ' ';
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    return out;
}

static int gguf_token_ids(const char *path, const gguf_file *g, llama_tokenizer *t)
{
    long long v;
    int rc;
    t->bos = 1;
    t->eos = 2;
    t->unk = 0;
    if ((rc = gguf_get_int(path, g, "tokenizer.ggml.bos_token_id", 1, 0, t->vocab_size - 1, &v)) < 0)
        return -1;
    if (rc == 0)
        t->bos = (int)v;
    if ((rc = gguf_get_int(path, g, "tokenizer.ggml.eos_token_id", 1, 0, t->vocab_size - 1, &v)) < 0)
        return -1;
    if (rc == 0)
        t->eos = (int)v;
    if ((rc = gguf_get_int(path, g, "tokenizer.ggml.unknown_token_id", 1, 0, t->vocab_size - 1, &v)) < 0)
        return -1;
    if (rc == 0)
        t->unk = (int)v;
    return 0;
}

static int gguf_pieces(const char *path, const gguf_kv *tokens, llama_tokenizer *t)
{
    const unsigned char *p = tokens->elems;
    size_t longest = 1;
    int i;
    for (i = 0; i < t->vocab_size; i++) {
        size_t len = (size_t)get_u64le(p);
        if (len > MAX_PIECE_BYTES) {
            llama_err("%s: token %d is %zu bytes long (at most %u)", path, i, len, MAX_PIECE_BYTES);
            return -1;
        }
        if (memchr(p + 8, '\0', len)) {
            llama_err("%s: token %d holds a NUL byte", path, i);
            return -1;
        }
        if (!(t->vocab[i] = piece_from_spm((const char *)p + 8, len)))
            return -1;
        if (strlen(t->vocab[i]) > longest)
            longest = strlen(t->vocab[i]);
        p += 8 + len;
    }
    t->max_token_length = (unsigned)longest;
    return 0;
}

static int gguf_array(const char *path, const gguf_file *g, const char *key, uint32_t type,
                      int vocab_size, const gguf_kv **out)
{
    const gguf_kv *kv = gguf_find(g, key);
    *out = kv;
    if (!kv)
        return 1;
    if (kv->type != GV_ARR || kv->elem_type != type || kv->count != (uint64_t)vocab_size) {
        llama_err("%s: %s is not an array of %d %s", path, key, vocab_size,
                  type == GV_STR ? "strings" : "numbers");
        return -1;
    }
    return 0;
}

static int gguf_scores_types(const char *path, const gguf_file *g, llama_tokenizer *t)
{
    const gguf_kv *scores, *types;
    int rc, i;
    if ((rc = gguf_array(path, g, "tokenizer.ggml.scores", GV_F32, t->vocab_size, &scores)) < 0)
        return -1;
    for (i = 0; rc == 0 && i < t->vocab_size; i++) {
        uint32_t u = get_u32le(scores->elems + 4 * (size_t)i);
        memcpy(&t->scores[i], &u, 4);
    }
    if ((rc = gguf_array(path, g, "tokenizer.ggml.token_type", GV_I32, t->vocab_size, &types)) < 0)
        return -1;
    if (rc == 1) {
        default_types(t);
        return 0;
    }
    for (i = 0; i < t->vocab_size; i++) {
        int32_t ty = (int32_t)get_u32le(types->elems + 4 * (size_t)i);
        t->type[i] = ty >= TT_NORMAL && ty <= TT_BYTE ? (unsigned char)ty : TT_UNUSED;
    }
    return 0;
}

int tokenizer_from_gguf(const char *path, const gguf_file *g, int vocab_size, llama_tokenizer *t)
{
    const gguf_kv *tokens;
    const char *model;
    size_t len;
    int rc;
    memset(t, 0, sizeof(*t));
    t->vocab_size = vocab_size;
    if (gguf_get_str(path, g, "tokenizer.ggml.model", 0, &model, &len) < 0)
        return -1;
    if (len != 5 || memcmp(model, "llama", 5) != 0) {
        llama_err("%s: tokenizer model '%.*s'; this program reads 'llama' (SentencePiece)", path,
                  (int)len, model);
        return -1;
    }
    rc = gguf_array(path, g, "tokenizer.ggml.tokens", GV_STR, vocab_size, &tokens);
    if (rc == 1)
        llama_err("%s: tokenizer.ggml.tokens is missing", path);
    if (rc != 0 || alloc_tables(t) || gguf_token_ids(path, g, t) || gguf_pieces(path, tokens, t)
        || gguf_scores_types(path, g, t)) {
        tokenizer_free(t);
        return -1;
    }
    t->piece_buf = xcalloc(2 * (size_t)t->max_token_length + 1, 1, "tokenizer");
    if (!t->piece_buf) {
        tokenizer_free(t);
        return -1;
    }
    build_index(t);
    return 0;
}

int tokenizer_load(const char *path, int vocab_size, llama_tokenizer *t)
{
    mapped_file f;
    gguf_file g;
    int rc;
    memset(t, 0, sizeof(*t));
    t->vocab_size = vocab_size;
    if (map_file(path, &f) != 0)
        return -1;
    if (gguf_is_gguf(&f)) {
        rc = gguf_parse(path, &f, &g);
        if (rc == 0) {
            rc = tokenizer_from_gguf(path, &g, vocab_size, t);
            free(g.kv);
            free(g.tensors);
        }
        unmap_file(&f);
        return rc;
    }
    rc = tokenizer_parse(path, &f, t);
    unmap_file(&f);
    if (rc != 0)
        tokenizer_free(t);
    return rc;
}

void tokenizer_free(llama_tokenizer *t)
{
    int i;
    for (i = 0; t->vocab && i < t->vocab_size; i++)
        free(t->vocab[i]);
    free(t->vocab);
    free(t->scores);
    free(t->sorted);
    free(t->piece_buf);
    free(t->type);
    memset(t, 0, sizeof(*t));
}

static int lookup(const llama_tokenizer *t, const char *str)
{
    token_index key, *hit;
    key.str = str;
    key.id = 0;
    hit = bsearch(&key, t->sorted, (size_t)t->n_sorted, sizeof(token_index), cmp_index);
    return hit ? hit->id : -1;
}

/* One UTF-8 character (or a stray byte): its token, or one byte token per byte. */
static int emit_char(const llama_tokenizer *t, const char *buf, size_t len, int *tokens, int n)
{
    int id = lookup(t, buf);
    size_t i;
    if (id >= 0) {
        tokens[n++] = id;
        return n;
    }
    for (i = 0; i < len; i++) {
        id = t->byte_id[(unsigned char)buf[i]];
        if (id < 0) {
            llama_err("tokenizer: no token for byte 0x%02X", (unsigned char)buf[i]);
            return -1;
        }
        tokens[n++] = id;
    }
    return n;
}

/* Splits text into UTF-8 characters (at most 4 bytes) the way llama2.c does. */
static int encode_chars(const llama_tokenizer *t, const char *text, int *tokens, int n)
{
    char buf[5];
    size_t len = 0;
    const char *c;
    for (c = text; *c != '\0' && n >= 0; c++) {
        if ((*c & 0xC0) != 0x80)
            len = 0;
        buf[len++] = *c;
        buf[len] = '\0';
        if ((c[1] & 0xC0) == 0x80 && len < 4)
            continue;
        n = emit_char(t, buf, len, tokens, n);
        len = 0;
    }
    return n;
}

/* The token for the concatenation of a and b, or -1. */
static int pair_id(const llama_tokenizer *t, int a, int b)
{
    size_t la = strlen(t->vocab[a]), lb = strlen(t->vocab[b]);
    memcpy(t->piece_buf, t->vocab[a], la);
    memcpy(t->piece_buf + la, t->vocab[b], lb + 1);
    return lookup(t, t->piece_buf);
}

static int best_pair(const llama_tokenizer *t, const int *pair, int n)
{
    float best = MERGE_FLOOR;
    int i, at = -1;
    for (i = 0; i + 1 < n; i++) {
        if (pair[i] >= 0 && t->scores[pair[i]] > best) {
            best = t->scores[pair[i]];
            at = i;
        }
    }
    return at;
}

/* Greedy BPE: merge the highest-scoring adjacent pair (leftmost on ties)
 * until none is in the vocabulary. pair[i] caches the merge of i and i+1. */
static int merge_pairs(const llama_tokenizer *t, int *tokens, int n)
{
    int *pair = xcalloc((size_t)n + 1, sizeof(int), "tokenizer");
    int i, at;
    if (!pair)
        return -1;
    for (i = 0; i + 1 < n; i++)
        pair[i] = pair_id(t, tokens[i], tokens[i + 1]);
    while ((at = best_pair(t, pair, n)) >= 0) {
        tokens[at] = pair[at];
        memmove(tokens + at + 1, tokens + at + 2, (size_t)(n - at - 2) * sizeof(int));
        memmove(pair + at + 1, pair + at + 2, (size_t)(n - at - 2) * sizeof(int));
        n--;
        if (at > 0)
            pair[at - 1] = pair_id(t, tokens[at - 1], tokens[at]);
        pair[at] = at + 1 < n ? pair_id(t, tokens[at], tokens[at + 1]) : -1;
    }
    free(pair);
    return n;
}

int tokenizer_encode(const llama_tokenizer *t, const char *text, int bos, int *tokens)
{
    int n = 0, first;
    if (bos)
        tokens[n++] = t->bos;
    /* llama2.c (like sentencepiece's add_dummy_prefix) starts non-empty text with " " */
    if (text[0] != '\0' && (first = lookup(t, " ")) >= 0)
        tokens[n++] = first;
    n = encode_chars(t, text, tokens, n);
    return n < 0 ? -1 : merge_pairs(t, tokens, n);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

const char *tokenizer_decode(const llama_tokenizer *t, int prev, int next, char *byte_buf)
{
    const char *piece = t->vocab[next];
    int b;
    if (t->type[next] == TT_CONTROL || t->type[next] == TT_UNKNOWN || t->type[next] == TT_UNUSED)
        return "";
    if (prev == t->bos && piece[0] == ' ')
        piece++;  /* the dummy prefix */
    if (t->type[next] == TT_BYTE && (b = byte_piece(piece)) >= 0) {
        byte_buf[0] = (char)b;
        byte_buf[1] = '\0';
        return byte_buf;
    }
    return piece;
}
