/* Small helpers: messages, checked size arithmetic, files, little-endian. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "llama.h"

void (*llama_err_before)(void);

void llama_err(const char *fmt, ...)
{
    va_list ap;
    if (llama_err_before)
        llama_err_before();     /* a progress bar clears its line */
    fputs("qlib-llama: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

uint64_t llama_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

uint64_t llama_fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;
    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void report_qlib_error(const char *what)
{
    const char *detail = qlib_last_error();
    llama_err("%s: %s", what, detail[0] ? detail : "(no detail)");
}

int size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

int size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return -1;
    *out = a + b;
    return 0;
}

void *xcalloc(size_t n, size_t size, const char *what)
{
    size_t bytes;
    void *p;
    if (size_mul(n, size, &bytes) != 0) {
        llama_err("%s: size overflows", what);
        return NULL;
    }
    p = calloc(bytes ? bytes : 1, 1);
    if (!p)
        llama_err("%s: out of memory (%zu bytes)", what, bytes);
    return p;
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int open_regular(const char *path, size_t *size)
{
    struct stat st;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        llama_err("%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        llama_err("%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((unsigned long long)st.st_size > (unsigned long long)SIZE_MAX) {
        llama_err("%s: too large", path);
        close(fd);
        return -1;
    }
    *size = (size_t)st.st_size;
    return fd;
}

int map_file(const char *path, mapped_file *out)
{
    size_t size;
    void *p;
    int fd = open_regular(path, &size);
    out->data = NULL;
    out->size = 0;
    if (fd < 0)
        return -1;
    if (size == 0) {
        llama_err("%s: empty file", path);
        close(fd);
        return -1;
    }
    p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        llama_err("%s: mmap: %s", path, strerror(errno));
        return -1;
    }
    out->data = p;
    out->size = size;
    return 0;
}

void unmap_file(mapped_file *f)
{
    if (f->data)
        munmap((void *)f->data, f->size);
    f->data = NULL;
    f->size = 0;
}

int read_text_file(const char *path, char **out, size_t *len)
{
    size_t size, got = 0;
    char *buf;
    int fd = open_regular(path, &size);
    *out = NULL;
    if (fd < 0)
        return -1;
    buf = size < SIZE_MAX ? xcalloc(size + 1, 1, path) : NULL;
    while (buf && got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r <= 0) {
            llama_err("%s: read failed: %s", path, r < 0 ? strerror(errno) : "file shrank");
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    if (!buf)
        return -1;
    if (memchr(buf, '\0', size)) {
        llama_err("%s: contains NUL bytes, not a text file", path);
        free(buf);
        return -1;
    }
    *out = buf;
    *len = size;
    return 0;
}

int host_is_little_endian(void)
{
    const uint32_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

uint32_t get_u32le(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t get_u64le(const unsigned char *p)
{
    return (uint64_t)get_u32le(p) | (uint64_t)get_u32le(p + 4) << 32;
}

void put_u32le(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

void put_u64le(unsigned char *p, uint64_t v)
{
    put_u32le(p, (uint32_t)v);
    put_u32le(p + 4, (uint32_t)(v >> 32));
}
