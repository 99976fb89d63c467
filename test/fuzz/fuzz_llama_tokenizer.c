/* The llama2 example's tokenizer (examples/llama2/tokenizer.c): the file
 * reader on arbitrary contents, then the BPE encoder and the decoder on
 * arbitrary text with whatever vocabulary loaded.
 * Input: [vocab lo, vocab hi, flags, text length, text..., tokenizer file...]
 * with vocab_size = 3 + (lo | hi << 8) % 1024 and BOS when flags bit 0. */
#include "fuzz.h"
#include "llama.h"

static char path[4096];

static void remove_file(void) { unlink(path); }

static void setup(void)
{
    if (path[0]) return;
    fz_temp_file(path, sizeof path, "tok");
    atexit(remove_file);
}

/* Every token in range; decoding each gives a NUL-terminated piece. */
static void check_tokens(const llama_tokenizer *t, const int *tokens, int n, size_t text_len)
{
    char byte_buf[2];
    FZ_CHECK(n >= 0 && (size_t)n <= text_len + 2);
    for (int i = 0; i < n; i++) {
        FZ_CHECK(tokens[i] >= 0 && tokens[i] < t->vocab_size);
        const char *piece = tokenizer_decode(t, i ? tokens[i - 1] : t->bos, tokens[i], byte_buf);
        FZ_CHECK(piece != NULL && strlen(piece) <= t->max_token_length);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4 || size - 4 < data[3]) return 0;
    setup();
    int vocab = 3 + (int)((data[0] | (unsigned)data[1] << 8) % 1024), bos = data[2] & 1;
    size_t text_len = data[3];
    const uint8_t *file = data + 4 + text_len;
    size_t file_len = size - 4 - text_len;
    fz_write_file(path, file, file_len);
    llama_tokenizer t;
    fz_quiet(1);
    int rc = tokenizer_load(path, vocab, &t);
    fz_quiet(0);
    if (rc != 0) return 0;
    FZ_CHECK(t.vocab_size == vocab);
    char *text = malloc(text_len + 1);
    FZ_CHECK(text != NULL);
    memcpy(text, data + 4, text_len);
    text[text_len] = '\0';
    int *tokens = malloc((strlen(text) + 3) * sizeof(int));
    FZ_CHECK(tokens != NULL);
    fz_quiet(1);
    int n = tokenizer_encode(&t, text, bos, tokens);
    fz_quiet(0);
    if (n >= 0) check_tokens(&t, tokens, n, strlen(text));
    free(tokens);
    free(text);
    tokenizer_free(&t);
    return 0;
}
