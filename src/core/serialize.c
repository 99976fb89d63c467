/* The blob format (docs/FORMAT.md): header, section table, 64-byte aligned
 * sections, checksum. Every field of an incoming blob is checked before use. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

#define MAGIC "QLIBTNSR"
#define FORMAT_VERSION 1u
#define OFF_CHECKSUM 24u
#define HEADER_FIXED 80u
#define SECTION_ENTRY 24u

size_t qlib_header_bytes(unsigned n_sec) { return HEADER_FIXED + SECTION_ENTRY * (size_t)n_sec; }

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint64_t rotl64(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

/* A 4-lane multiplicative checksum over 64-bit words; the checksum field
 * itself reads as zero. Each step is a bijection of a lane's state, so any
 * change of one word changes the result. len is a multiple of 32. */
static uint64_t blob_checksum(const uint8_t *p, size_t len)
{
    const uint64_t k1 = 0x9e3779b97f4a7c15ull, k2 = 0xd6e8feb86659fd93ull;
    uint64_t acc[4] = { 0x243f6a8885a308d3ull, 0x13198a2e03707344ull,
                        0xa4093822299f31d0ull, 0x082efa98ec4e6c89ull };
    for (size_t off = 0; off < len; off += 32) {
        for (int l = 0; l < 4; l++) {
            uint64_t v = off + 8u * (unsigned)l == OFF_CHECKSUM ? 0 : get64(p + off + 8u * (unsigned)l);
            acc[l] = rotl64((acc[l] ^ v) * k1, 31);
        }
    }
    uint64_t h = (uint64_t)len * k2;
    for (int l = 0; l < 4; l++) h = (h ^ acc[l]) * k2 + k1;
    h ^= h >> 29;
    h *= k1;
    h ^= h >> 32;
    return h;
}

void qlib_header_write(qlib_tensor *t, const qlib_section *sec, unsigned n_sec)
{
    uint8_t *h = t->blob;
    memcpy(h, MAGIC, 8);
    put32(h + 8, FORMAT_VERSION);
    put32(h + 12, HEADER_FIXED + SECTION_ENTRY * n_sec);
    put64(h + 16, t->blob_size);
    put64(h + 32, t->d.n);
    put64(h + 40, t->d.k);
    h[48] = (uint8_t)t->d.method;
    h[49] = (uint8_t)t->d.bits;
    h[51] = (uint8_t)n_sec;
    put32(h + 52, (uint32_t)t->d.group_size);
    memcpy(h + 56, &t->d.param, 4);
    for (unsigned i = 0; i < n_sec; i++) {
        uint8_t *e = h + HEADER_FIXED + SECTION_ENTRY * i;
        put32(e, sec[i].id);
        put64(e + 8, sec[i].offset);
        put64(e + 16, sec[i].size);
    }
}

void qlib_header_finish(qlib_tensor *t)
{
    uint8_t *h = t->blob;
    h[50] = (uint8_t)((t->d.symmetric ? 1u : 0u) | (t->error_weighted ? 2u : 0u));
    memcpy(h + 64, &t->quant_error, 8);
    put64(h + OFF_CHECKSUM, blob_checksum(h, t->blob_size));
}

qlib_status qlib_tensor_serialized_size(const qlib_tensor *t, size_t *bytes)
{
    if (!t || !bytes) return qlib_fail(QLIB_ERR_ARG, "qlib_tensor_serialized_size: NULL argument");
    *bytes = t->blob_size;
    return QLIB_OK;
}

qlib_status qlib_tensor_serialize(const qlib_tensor *t, void *buf, size_t cap, size_t *written)
{
    static const char fn[] = "qlib_tensor_serialize";
    if (written) *written = 0;
    if (!t || !buf) return qlib_fail(QLIB_ERR_ARG, "%s: tensor or buffer is NULL", fn);
    if (cap < t->blob_size)
        return qlib_fail(QLIB_ERR_ARG, "%s: capacity %zu is less than the %zu bytes needed", fn,
                         cap, t->blob_size);
    memcpy(buf, t->blob, t->blob_size);
    if (written) *written = t->blob_size;
    return QLIB_OK;
}

/* ---- reading ---- */

static qlib_status bad(const char *fn, const char *what)
{
    return qlib_fail(QLIB_ERR_FORMAT, "%s: %s", fn, what);
}

static qlib_status header_parse(const uint8_t *h, size_t len, qlib_tensor_desc *d,
                                size_t *total, const char *fn)
{
    if (len < HEADER_FIXED) return bad(fn, "truncated header");
    if (memcmp(h, MAGIC, 8) != 0) return bad(fn, "not a qlib tensor (bad magic)");
    if (get32(h + 8) != FORMAT_VERSION)
        return qlib_fail(QLIB_ERR_FORMAT, "%s: format version %u, this library reads %u", fn,
                         get32(h + 8), FORMAT_VERSION);
    uint64_t tb = get64(h + 16), n = get64(h + 32), k = get64(h + 40);
    unsigned n_sec = h[51], flags = h[50];
    if (tb > len) return bad(fn, "truncated: the header declares more bytes than given");
    if (tb > SIZE_MAX || n > SIZE_MAX || k > SIZE_MAX) return bad(fn, "sizes too large");
    if (n_sec > QLIB_SEC_MAX || get32(h + 12) != HEADER_FIXED + SECTION_ENTRY * n_sec)
        return bad(fn, "bad section count");
    if (flags & ~3u || get32(h + 60) != 0 || get64(h + 72) != 0)
        return bad(fn, "unknown flags or nonzero reserved fields");
    memset(d, 0, sizeof *d);
    d->method = (qlib_method)h[48];
    d->bits = h[49];
    d->symmetric = (int)(flags & 1u);
    d->group_size = (int32_t)get32(h + 52);
    d->n = (size_t)n;
    d->k = (size_t)k;
    memcpy(&d->param, h + 56, 4);
    if (HEADER_FIXED + SECTION_ENTRY * n_sec > tb) return bad(fn, "truncated section table");
    for (unsigned i = 0; i < n_sec; i++) {
        uint32_t id = get32(h + HEADER_FIXED + SECTION_ENTRY * i);
        if (id == QLIB_SEC_PERM) d->has_perm = 1;
        if (id == QLIB_SEC_INPUT_SCALES) d->has_input_scales = 1;
    }
    *total = (size_t)tb;
    return QLIB_OK;
}

/* The table must be exactly the canonical layout of the header's shape. */
static qlib_status table_check(const uint8_t *h, const qlib_tensor_desc *d, size_t total,
                               qlib_section *sec, unsigned *n_sec, size_t *storage,
                               const char *fn)
{
    size_t want = qlib_tensor_layout(d, sec, n_sec, storage);
    if (want != total) return bad(fn, "blob size does not match its shape");
    if (*n_sec != h[51]) return bad(fn, "section table does not match the tensor's kind");
    for (unsigned i = 0; i < *n_sec; i++) {
        const uint8_t *e = h + HEADER_FIXED + SECTION_ENTRY * i;
        if (get32(e) != sec[i].id || get32(e + 4) != 0 || get64(e + 8) != sec[i].offset ||
            get64(e + 16) != sec[i].size)
            return bad(fn, "section table does not match the tensor's shape");
    }
    return QLIB_OK;
}

static qlib_status content_check(const qlib_tensor *t, const char *fn)
{
    size_t k = t->d.k;
    if (!isfinite(t->quant_error) || t->quant_error < 0) return bad(fn, "bad quant_error");
    if (t->w.scales) {
        size_t entries = t->w.scale_stride ? t->d.n * t->w.n_groups : 1;
        for (size_t i = 0; i < entries; i++)
            if ((t->w.scales[i] & 0x7c00u) == 0x7c00u) return bad(fn, "scale is Inf or NaN");
    }
    if (t->perm) {
        uint8_t *seen = qlib_mem_calloc(&t->alloc, k);
        if (!seen) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", fn);
        size_t j = 0;
        for (; j < k; j++) {
            int32_t c = t->perm[j];
            if (c < 0 || (size_t)c >= k || seen[c]) break;
            seen[c] = 1;
        }
        qlib_mem_free(&t->alloc, seen);
        if (j < k) return bad(fn, "permutation is not a permutation of the columns");
    }
    if (t->input_scales)
        for (size_t j = 0; j < k; j++)
            if (!isfinite(t->input_scales[j]) || t->input_scales[j] == 0.0f)
                return bad(fn, "input scale is zero, Inf or NaN");
    if (t->f32 && !qlib_all_finite(t->f32, t->d.n, k, k)) return bad(fn, "weight is Inf or NaN");
    if (t->f16)
        for (size_t i = 0; i < t->d.n * k; i++)
            if ((t->f16[i] & 0x7c00u) == 0x7c00u) return bad(fn, "weight is Inf or NaN");
    return QLIB_OK;
}

/* The header and section table of the blob at h (len bytes available, at
 * least the table's): *total is the blob's size, known to fit in len and to
 * be the canonical size of the shape the header declares. */
static qlib_status layout_check(const uint8_t *h, size_t len, size_t *total, const char *fn)
{
    qlib_tensor_desc d;
    qlib_section sec[QLIB_SEC_MAX];
    unsigned n_sec;
    size_t storage = 0;
    qlib_status s = header_parse(h, len, &d, total, fn);
    if (s == QLIB_OK) s = qlib_desc_check(&d, fn, QLIB_ERR_FORMAT);
    if (s == QLIB_OK) s = table_check(h, &d, *total, sec, &n_sec, &storage, fn);
    return s;
}

/* Makes a tensor viewing blob (len >= its size); owned is freed with it. */
static qlib_status tensor_from_blob(qlib_ctx *ctx, const uint8_t *blob, size_t len, void *owned,
                                    qlib_tensor **out, const char *fn)
{
    qlib_tensor_desc d;
    size_t total = 0, storage = 0;
    qlib_section sec[QLIB_SEC_MAX];
    unsigned n_sec;
    qlib_status s = header_parse(blob, len, &d, &total, fn);
    if (s == QLIB_OK) s = qlib_desc_check(&d, fn, QLIB_ERR_FORMAT);
    if (s == QLIB_OK) s = table_check(blob, &d, total, sec, &n_sec, &storage, fn);
    if (s == QLIB_OK && get64(blob + OFF_CHECKSUM) != blob_checksum(blob, total))
        s = bad(fn, "checksum mismatch: the data is corrupt");
    if (s != QLIB_OK) return s;
    qlib_tensor *t = qlib_mem_calloc(&ctx->alloc, sizeof *t);
    if (!t) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", fn);
    t->alloc = ctx->alloc;
    t->blob = (uint8_t *)blob;
    t->blob_size = total;
    t->d = d;
    t->storage_bytes = storage;
    memcpy(&t->quant_error, blob + 64, 8);
    t->error_weighted = (blob[50] >> 1) & 1;
    qlib_tensor_bind(t, sec, n_sec);
    s = content_check(t, fn);
    if (s != QLIB_OK) {
        qlib_mem_free(&t->alloc, t);
        return s;
    }
    t->owned = owned;
    *out = t;
    return QLIB_OK;
}

qlib_status qlib_tensor_deserialize(qlib_ctx *ctx, const void *buf, size_t len, unsigned flags,
                                    qlib_tensor **out)
{
    static const char fn[] = "qlib_tensor_deserialize";
    size_t total = 0;
    if (!out) return qlib_fail(QLIB_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx || !buf) return qlib_fail(QLIB_ERR_ARG, "%s: ctx or buffer is NULL", fn);
    if (flags & ~(unsigned)QLIB_LOAD_BORROW)
        return qlib_fail(QLIB_ERR_ARG, "%s: unknown flag bits 0x%x", fn,
                         flags & ~(unsigned)QLIB_LOAD_BORROW);
    if (flags & QLIB_LOAD_BORROW) {
        if ((uintptr_t)buf % QLIB_ALIGN)
            return qlib_fail(QLIB_ERR_ARG, "%s: QLIB_LOAD_BORROW needs a 64-byte aligned buffer",
                             fn);
        return tensor_from_blob(ctx, buf, len, NULL, out, fn);
    }
    qlib_status s = layout_check(buf, len, &total, fn);   /* before allocating the copy */
    if (s != QLIB_OK) return s;
    uint8_t *copy = qlib_mem_alloc(&ctx->alloc, total);
    if (!copy) return qlib_fail(QLIB_ERR_NOMEM, "%s: cannot allocate %zu bytes", fn, total);
    memcpy(copy, buf, total);
    s = tensor_from_blob(ctx, copy, total, copy, out, fn);
    if (s != QLIB_OK) qlib_mem_free(&ctx->alloc, copy);
    return s;
}

/* ---- files ---- */

static qlib_status write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return QLIB_ERR_IO;
        p += w;
        n -= (size_t)w;
    }
    return QLIB_OK;
}

/* Makes the directory entry of a renamed file durable. A file system that
 * cannot sync a directory says EINVAL; there is nothing more to do there. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
    close(fd);
    return e;
}

qlib_status qlib_tensor_save(const qlib_tensor *t, const char *path)
{
    static const char fn[] = "qlib_tensor_save";
    if (!t || !path) return qlib_fail(QLIB_ERR_ARG, "%s: tensor or path is NULL", fn);
    if (!*path) return qlib_fail(QLIB_ERR_ARG, "%s: path is empty", fn);
    /* <path>.tmp.<pid>.<six random characters>: a user can tell a leftover
     * of a killed save from other files, and whether its process still runs. */
    size_t plen = strlen(path), cap = plen + 48;
    char *tmp = qlib_mem_alloc(&t->alloc, 2 * cap);
    if (!tmp) return qlib_fail(QLIB_ERR_NOMEM, "%s: out of memory", fn);
    char *dir = tmp + cap;
    int head = snprintf(tmp, cap, "%s.tmp.%ld.", path, (long)getpid());
    memset(tmp + head, 'X', 6);                     /* the mkostemp template */
    tmp[head + 6] = '\0';
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == path) snprintf(dir, cap, "/");
    else snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        qlib_mem_free(&t->alloc, tmp);
        return qlib_fail(QLIB_ERR_IO, "%s: cannot create a file beside %s: %s", fn, path,
                         strerror(e));
    }
    qlib_status s = write_all(fd, t->blob, t->blob_size);
    int e = errno;
    if (s == QLIB_OK && fsync(fd) != 0) { s = QLIB_ERR_IO; e = errno; }
    if (close(fd) != 0 && s == QLIB_OK) { s = QLIB_ERR_IO; e = errno; }
    if (s == QLIB_OK && rename(tmp, path) != 0) { s = QLIB_ERR_IO; e = errno; }
    if (s != QLIB_OK) {
        unlink(tmp);
        qlib_fail(s, "%s: writing %s failed: %s", fn, path, strerror(e));
    } else if ((e = sync_dir(dir)) != 0) {
        s = qlib_fail(QLIB_ERR_IO, "%s: %s is written, but syncing its directory %s failed "
                      "(the new file may not survive a power cut): %s", fn, path, dir,
                      strerror(e));
    }
    qlib_mem_free(&t->alloc, tmp);
    return s;
}

static qlib_status read_at(int fd, uint8_t *p, size_t n, size_t off, const char *path,
                           const char *fn)
{
    while (n > 0) {
        ssize_t r = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return qlib_fail(QLIB_ERR_IO, "%s: reading %s: %s", fn, path, strerror(errno));
        if (r == 0) return qlib_fail(QLIB_ERR_IO, "%s: %s became shorter while read", fn, path);
        p += r;
        n -= (size_t)r;
        off += (size_t)r;
    }
    return QLIB_OK;
}

/* The header and section table are read and checked first; then exactly the
 * blob they describe, which must be the whole file, is allocated and read. */
static qlib_status load_fd(qlib_ctx *ctx, int fd, off_t file_size, const char *path,
                           qlib_tensor **out, const char *fn)
{
    uint8_t head[HEADER_FIXED + SECTION_ENTRY * QLIB_SEC_MAX];
    memset(head, 0, sizeof head);
    if (file_size < 0 || (uint64_t)file_size > SIZE_MAX)
        return qlib_fail(QLIB_ERR_FORMAT, "%s: %s is too large for this address space", fn, path);
    size_t len = (size_t)file_size;
    size_t hlen = len < sizeof head ? len : sizeof head;
    qlib_status s = read_at(fd, head, hlen, 0, path, fn);
    if (s != QLIB_OK) return s;
    size_t total = 0;
    s = layout_check(head, len, &total, fn);
    if (s != QLIB_OK) return s;
    if (total != len)
        return qlib_fail(QLIB_ERR_FORMAT, "%s: %s has %zu bytes after the %zu-byte blob", fn, path,
                         len - total, total);
    uint8_t *buf = qlib_mem_alloc(&ctx->alloc, total);
    if (!buf) return qlib_fail(QLIB_ERR_NOMEM, "%s: cannot allocate %zu bytes", fn, total);
    memcpy(buf, head, hlen);
    s = read_at(fd, buf + hlen, total - hlen, hlen, path, fn);
    if (s == QLIB_OK) s = tensor_from_blob(ctx, buf, total, buf, out, fn);
    if (s != QLIB_OK) qlib_mem_free(&ctx->alloc, buf);
    return s;
}

qlib_status qlib_tensor_load(qlib_ctx *ctx, const char *path, qlib_tensor **out)
{
    static const char fn[] = "qlib_tensor_load";
    if (!out) return qlib_fail(QLIB_ERR_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx || !path) return qlib_fail(QLIB_ERR_ARG, "%s: ctx or path is NULL", fn);
    /* Non-blocking, so that opening a FIFO (or a device) returns at once;
     * only a regular file is read, in blocking mode again. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return qlib_fail(QLIB_ERR_IO, "%s: cannot open %s: %s", fn, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qlib_fail(QLIB_ERR_IO, "%s: %s is not a regular file", fn, path);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return qlib_fail(QLIB_ERR_IO, "%s: %s: %s", fn, path, strerror(e));
    }
    qlib_status s = load_fd(ctx, fd, st.st_size, path, out, fn);
    close(fd);
    return s;
}
