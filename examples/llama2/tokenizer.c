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

static int tokenizer_parse(const char *path, const mapped_file *f, llama_tokenizer *t)
{
    int i;
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
    t->vocab = xcalloc((size_t)t->vocab_size, sizeof(char *), "tokenizer");
    t->scores = xcalloc((size_t)t->vocab_size, sizeof(float), "tokenizer");
    t->sorted = xcalloc((size_t)t->vocab_size, sizeof(token_index), "tokenizer");
    t->piece_buf = xcalloc(2 * (size_t)t->max_token_length + 1, 1, "tokenizer");
    if (!t->vocab || !t->scores || !t->sorted || !t->piece_buf || read_records(path, f, t))
        return -1;
    for (i = 0; i < t->vocab_size; i++) {
        t->sorted[i].str = t->vocab[i];
        t->sorted[i].id = i;
    }
    qsort(t->sorted, (size_t)t->vocab_size, sizeof(token_index), cmp_index);
    return 0;
}

int tokenizer_load(const char *path, int vocab_size, llama_tokenizer *t)
{
    mapped_file f;
    int rc;
    memset(t, 0, sizeof(*t));
    t->vocab_size = vocab_size;
    if (map_file(path, &f) != 0)
        return -1;
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
    memset(t, 0, sizeof(*t));
}

static int lookup(const llama_tokenizer *t, const char *str)
{
    token_index key, *hit;
    key.str = str;
    key.id = 0;
    hit = bsearch(&key, t->sorted, (size_t)t->vocab_size, sizeof(token_index), cmp_index);
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
        id = (int)(unsigned char)buf[i] + 3;
        if (id >= t->vocab_size) {
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
        tokens[n++] = TOKEN_BOS;
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

/* "<0xAB>" is the byte 0xAB */
static int byte_token(const char *piece, char *byte_buf)
{
    int hi, lo;
    if (strlen(piece) != 6 || strncmp(piece, "<0x", 3) != 0 || piece[5] != '>')
        return 0;
    hi = hex_value(piece[3]);
    lo = hex_value(piece[4]);
    if (hi < 0 || lo < 0)
        return 0;
    byte_buf[0] = (char)(hi * 16 + lo);
    byte_buf[1] = '\0';
    return 1;
}

const char *tokenizer_decode(const llama_tokenizer *t, int prev, int next, char *byte_buf)
{
    const char *piece = t->vocab[next];
    if (prev == TOKEN_BOS && piece[0] == ' ')
        piece++;  /* the dummy prefix */
    return byte_token(piece, byte_buf) ? byte_buf : piece;
}
