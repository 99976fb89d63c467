/* Text files of stories separated by <|endoftext|>, and their tokens. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static const char END_OF_TEXT[] = "<|endoftext|>";

/* The characters Python's str.strip() removes from ASCII text. */
static int is_strip_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static char *strip(char *s)
{
    size_t n;
    while (*s && is_strip_space(*s))
        s++;
    n = strlen(s);
    while (n > 0 && is_strip_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

int text_is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 0;
    return 1;
}

static size_t count_separators(const char *text)
{
    size_t n = 0;
    const char *p = text;
    while ((p = strstr(p, END_OF_TEXT)) != NULL) {
        n++;
        p += sizeof(END_OF_TEXT) - 1;
    }
    return n;
}

int stories_load(const char *path, story_list *out)
{
    size_t len, cap;
    char *p, *end;
    memset(out, 0, sizeof(*out));
    if (read_text_file(path, &out->text, &len) != 0)
        return -1;
    cap = count_separators(out->text) + 1;
    out->story = xcalloc(cap, sizeof(char *), path);
    if (!out->story) {
        stories_free(out);
        return -1;
    }
    for (p = out->text; p; p = end ? end + sizeof(END_OF_TEXT) - 1 : NULL) {
        char *s;
        end = strstr(p, END_OF_TEXT);
        if (end)
            *end = '\0';
        s = strip(p);
        if (*s)
            out->story[out->count++] = s;
    }
    return 0;
}

void stories_free(story_list *s)
{
    free(s->text);
    free(s->story);
    memset(s, 0, sizeof(*s));
}

static int seqs_reserve(token_seqs *s, size_t need)
{
    size_t cap;
    int *p;
    if (need <= s->cap)
        return 0;
    cap = need > 2 * s->cap ? need : 2 * s->cap;
    p = realloc(s->tokens, cap * sizeof(int));
    if (!p) {
        llama_err("out of memory for tokens");
        return -1;
    }
    s->tokens = p;
    s->cap = cap;
    return 0;
}

/* Appends BOS + story (cut to the room left), or returns 0 when it adds nothing. */
static int seqs_append(token_seqs *s, const int *tok, int n, int seq_len, size_t max_tokens)
{
    size_t take = (size_t)(n < seq_len ? n : seq_len);
    if (max_tokens && take > max_tokens - s->total)
        take = max_tokens - s->total;
    if (take < 2)
        return 0;
    if (seqs_reserve(s, s->total + take) != 0)
        return -1;
    memcpy(s->tokens + s->total, tok, take * sizeof(int));
    s->total += take;
    s->start[++s->count] = s->total;
    return 0;
}

static int encode_all(const story_list *st, const llama_tokenizer *t, int seq_len,
                      int ascii_only, size_t max_tokens, token_seqs *out)
{
    size_t i;
    for (i = 0; i < st->count && (!max_tokens || out->total + 2 <= max_tokens); i++) {
        const char *story = st->story[i];
        int *tok, n;
        if (ascii_only && !text_is_ascii(story))
            continue;
        tok = xcalloc(strlen(story) + 3, sizeof(int), "tokens");
        n = tok ? tokenizer_encode(t, story, 1, tok) : -1;
        if (n < 0 || seqs_append(out, tok, n, seq_len, max_tokens) != 0) {
            free(tok);
            return -1;
        }
        free(tok);
    }
    return 0;
}

/* Fisher-Yates on the story pointers, seed > 0 (times an odd constant: a
 * nonzero state, its bits spread); the modulo's bias (under 2^-30 for any
 * file that fits in memory) does not matter for picking calibration text */
static void shuffle_stories(story_list *st, unsigned seed)
{
    uint64_t state = (uint64_t)seed * 0x9E3779B97F4A7C15ull;
    size_t i;
    for (i = st->count; i > 1; i--) {
        size_t j = (size_t)(llama_random(&state) % i);
        char *s = st->story[i - 1];
        st->story[i - 1] = st->story[j];
        st->story[j] = s;
    }
}

int encode_stories(const char *path, const llama_tokenizer *t, int seq_len, int ascii_only,
                   size_t max_tokens, unsigned seed, token_seqs *out)
{
    story_list st;
    int rc;
    memset(out, 0, sizeof(*out));
    if (stories_load(path, &st) != 0)
        return -1;
    if (seed)
        shuffle_stories(&st, seed);
    out->start = xcalloc(st.count + 1, sizeof(size_t), path);
    rc = out->start ? encode_all(&st, t, seq_len, ascii_only, max_tokens, out) : -1;
    stories_free(&st);
    if (rc == 0 && out->count == 0) {
        llama_err("%s: no story with at least one token to predict", path);
        rc = -1;
    }
    if (rc != 0)
        token_seqs_free(out);
    return rc;
}

void token_seqs_free(token_seqs *s)
{
    free(s->tokens);
    free(s->start);
    memset(s, 0, sizeof(*s));
}

int write_token_lines(const char *path, const int *tokens, const size_t *start, size_t count)
{
    FILE *f = fopen(path, "w");
    size_t i, t;
    int rc = 0;
    if (!f) {
        llama_err("%s: cannot create", path);
        return -1;
    }
    for (i = 0; i < count; i++)
        for (t = start[i]; t < start[i + 1]; t++)
            if (fprintf(f, "%d%c", tokens[t], t + 1 < start[i + 1] ? ' ' : '\n') < 0)
                rc = -1;
    if (fclose(f) != 0 || rc != 0) {
        llama_err("%s: write failed", path);
        return -1;
    }
    return 0;
}
