/* The llama2 example's tokenizer (examples/llama2/tokenizer.c): the file
 * reader on arbitrary contents, then the BPE encoder and the decoder on
 * arbitrary text with whatever vocabulary loaded.
 * Input: [vocab lo, vocab hi, flags, text length, text..., tokenizer file...]
 * with vocab_size = 3 + (lo | hi << 8) % 1024 and BOS when flags bit 0. */
#include <fcntl.h>
#include <unistd.h>

#include "fuzz.h"
#include "llama.h"

static char path[4096];

static void remove_file(void) { unlink(path); }

static void setup(void)
{
    if (path[0]) return;
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/qlib-fuzz-tok-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    FZ_CHECK(fd >= 0);
    close(fd);
    atexit(remove_file);
}

/* Every token in range; decoding each gives a NUL-terminated piece. */
static void check_tokens(const llama_tokenizer *t, const int *tokens, int n, size_t text_len)
{
    char byte_buf[2];
    FZ_CHECK(n >= 0 && (size_t)n <= text_len + 2);
    for (int i = 0; i < n; i++) {
        FZ_CHECK(tokens[i] >= 0 && tokens[i] < t->vocab_size);
        const char *piece = tokenizer_decode(t, i ? tokens[i - 1] : TOKEN_BOS, tokens[i], byte_buf);
        FZ_CHECK(piece != NULL && strlen(piece) <= t->max_token_length);
    }
}

/* The example reports each file it rejects on stderr, and the corpus holds
 * many. Its messages go through stdio, so they are sent to a null stream;
 * sanitizer reports, written to descriptor 2, still appear (glibc lets
 * stderr be reassigned). */
static FILE *saved_stderr;

static void quiet(int on)
{
    static FILE *null;
    if (!null) null = fopen("/dev/null", "w");
    if (on && null) {
        saved_stderr = stderr;
        stderr = null;
    } else if (!on && saved_stderr) {
        stderr = saved_stderr;
        saved_stderr = NULL;
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
    int fd = open(path, O_WRONLY | O_TRUNC);
    FZ_CHECK(fd >= 0);
    FZ_CHECK(file_len == 0 || write(fd, file, file_len) == (ssize_t)file_len);
    FZ_CHECK(close(fd) == 0);
    llama_tokenizer t;
    quiet(1);
    int rc = tokenizer_load(path, vocab, &t);
    quiet(0);
    if (rc != 0) return 0;
    FZ_CHECK(t.vocab_size == vocab);
    char *text = malloc(text_len + 1);
    FZ_CHECK(text != NULL);
    memcpy(text, data + 4, text_len);
    text[text_len] = '\0';
    int *tokens = malloc((strlen(text) + 3) * sizeof(int));
    FZ_CHECK(tokens != NULL);
    quiet(1);
    int n = tokenizer_encode(&t, text, bos, tokens);
    quiet(0);
    if (n >= 0) check_tokens(&t, tokens, n, strlen(text));
    free(tokens);
    free(text);
    tokenizer_free(&t);
    return 0;
}
