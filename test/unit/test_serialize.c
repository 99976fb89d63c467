/* suite_serialize: blobs and files. Round trips with and without
 * QLIB_LOAD_BORROW, atomic save and load, the serialized size of
 * docs/FORMAT.md, and rejection of every truncated or corrupted blob. */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

Suite *suite_serialize(void);

/* Fails like ck_assert_msg but costs nothing when it passes (Check records
 * every passing ck_assert with a write to its pipe). */
#define REQUIRE(expr, ...) \
    do { if (!(expr)) ck_abort_msg("'" #expr "' failed: " __VA_ARGS__); } while (0)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The tensor kinds a blob can hold (RTN and float). */
typedef struct kind {
    qlib_method method;
    int bits, group, sym;
    size_t n, k;
} kind;

static const kind kinds[] = {
    { QLIB_METHOD_RTN, 4, 32, 0, 3, 40 },
    { QLIB_METHOD_RTN, 3, -1, 1, 2, 70 },
    { QLIB_METHOD_RTN, 8, 0, 0, 2, 33 },
    { QLIB_METHOD_RTN, 2, 64, 1, 3, 130 },
    { QLIB_METHOD_NONE, 32, 0, 0, 3, 10 },
    { QLIB_METHOD_NONE, 16, 0, 0, 2, 21 },
};

static size_t up64(size_t v) { return (v + 63) / 64 * 64; }

/* docs/FORMAT.md: an 80-byte header and 24 bytes per section, rounded up to
 * 64; then each section, each rounded up to 64. Sections: codes (N rows of
 * Kp*bits/8 bytes, Kp = K rounded up to 64), fp16 scales (2 per entry),
 * zeros when asymmetric (ceil(entries*bits/8) + 1); or the N*K floats. */
static size_t expected_blob_size(const kind *c)
{
    size_t sizes[3], n_sec = 0;
    if (c->method == QLIB_METHOD_NONE) {
        sizes[n_sec++] = c->n * c->k * (size_t)c->bits / 8;
    } else {
        size_t kp = up64(c->k);
        size_t g = c->group > 0 && (size_t)c->group < kp ? (size_t)c->group : kp;
        size_t entries = c->group < 0 ? 1 : c->n * ((c->k + g - 1) / g);
        sizes[n_sec++] = c->n * kp * (size_t)c->bits / 8;
        sizes[n_sec++] = 2 * entries;
        if (!c->sym) sizes[n_sec++] = (entries * (size_t)c->bits + 7) / 8 + 1;
    }
    size_t total = up64(80 + 24 * n_sec);
    for (size_t i = 0; i < n_sec; i++) total += up64(sizes[i]);
    return total;
}

static float *make_weights(uint64_t seed, size_t n, size_t k)
{
    tu_rng r = { seed };
    float *w = tu_alloc_floats(n * k);
    tu_llm_weights(&r, w, n, k, k);
    return w;
}

static qlib_tensor *make_tensor(qlib_ctx *ctx, const kind *c, uint64_t seed)
{
    float *w = make_weights(seed, c->n, c->k);
    qlib_tensor *t = tu_quantize(ctx, w, c->n, c->k, c->k, c->method, c->bits, c->group, c->sym,
                                 NULL);
    free(w);
    return t;
}

/* A 64-byte aligned copy of t's blob (free with free()). */
static uint8_t *blob_of(const qlib_tensor *t, size_t *size)
{
    ck_assert_int_eq(qlib_tensor_serialized_size(t, size), QLIB_OK);
    uint8_t *b = aligned_alloc(64, up64(*size + 1));
    ck_assert_ptr_nonnull(b);
    size_t written = 0;
    ck_assert_int_eq(qlib_tensor_serialize(t, b, *size, &written), QLIB_OK);
    ck_assert_uint_eq(written, *size);
    return b;
}

/* Everything observable of a and b is the same, bit for bit. */
static void assert_same_tensor(qlib_ctx *ctx, const qlib_tensor *a, const qlib_tensor *b)
{
    size_t n = qlib_tensor_rows(a), k = qlib_tensor_cols(a);
    ck_assert_uint_eq(qlib_tensor_rows(b), n);
    ck_assert_uint_eq(qlib_tensor_cols(b), k);
    ck_assert_int_eq(qlib_tensor_method(b), qlib_tensor_method(a));
    ck_assert_int_eq(qlib_tensor_bits(b), qlib_tensor_bits(a));
    ck_assert_int_eq(qlib_tensor_group_size(b), qlib_tensor_group_size(a));
    ck_assert_int_eq(qlib_tensor_symmetric(b), qlib_tensor_symmetric(a));
    ck_assert_uint_eq(qlib_tensor_storage_bytes(b), qlib_tensor_storage_bytes(a));
    ck_assert(qlib_tensor_bits_per_weight(b) == qlib_tensor_bits_per_weight(a));
    ck_assert(qlib_tensor_quant_error(b) == qlib_tensor_quant_error(a));
    ck_assert_ptr_null(qlib_tensor_input_scales(b));
    ck_assert_ptr_null(qlib_tensor_permutation(b));

    size_t sa, sb;
    uint8_t *ba = blob_of(a, &sa), *bb = blob_of(b, &sb);
    ck_assert_uint_eq(sa, sb);
    ck_assert_mem_eq(ba, bb, sa);
    free(ba);
    free(bb);

    float *wa = tu_alloc_floats(n * k), *wb = tu_alloc_floats(n * k);
    ck_assert_int_eq(qlib_dequantize(ctx, a, wa, k), QLIB_OK);
    ck_assert_int_eq(qlib_dequantize(ctx, b, wb, k), QLIB_OK);
    ck_assert_mem_eq(wa, wb, n * k * sizeof(float));
    free(wa);
    free(wb);

    const size_t m = 5;
    tu_rng r = { 99 };
    float *x = tu_alloc_floats(m * k), *ya = tu_alloc_floats(m * n), *yb = tu_alloc_floats(m * n);
    for (size_t i = 0; i < m * k; i++) x[i] = (float)tu_normal(&r);
    qlib_compute keep = qlib_ctx_compute(ctx);
    for (int mode = 0; mode <= 1; mode++) {
        ck_assert_int_eq(qlib_ctx_set_compute(ctx, (qlib_compute)mode), QLIB_OK);
        ck_assert_int_eq(qlib_matmul(ctx, a, x, m, k, ya, n), QLIB_OK);
        ck_assert_int_eq(qlib_matmul(ctx, b, x, m, k, yb, n), QLIB_OK);
        ck_assert_mem_eq(ya, yb, m * n * sizeof(float));
    }
    ck_assert_int_eq(qlib_ctx_set_compute(ctx, keep), QLIB_OK);
    free(x);
    free(ya);
    free(yb);
}

/* An allocator that counts the bytes it hands out. */
typedef struct byte_count { size_t bytes, live; } byte_count;

static void *bc_alloc(void *user, size_t size, size_t alignment)
{
    byte_count *c = user;
    void *p = NULL;
    if (posix_memalign(&p, alignment, size) != 0) return NULL;
    c->bytes += size;
    c->live++;
    return p;
}

static void bc_free(void *user, void *p)
{
    byte_count *c = user;
    c->live--;
    free(p);
}

/* ---------------------------------------------------------------- tests */

START_TEST(test_round_trip)
{
    const kind *c = &kinds[_i];
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, c, 7 + (uint64_t)_i);
    size_t size = 0;
    ck_assert_int_eq(qlib_tensor_serialized_size(t, &size), QLIB_OK);
    ck_assert_uint_eq(size, expected_blob_size(c));
    ck_assert_uint_eq(size % 64, 0);
    uint8_t *blob = blob_of(t, &size);
    ck_assert_mem_eq(blob, "QLIBTNSR", 8);

    /* A copy: the caller's buffer may be reused at once. */
    qlib_tensor *u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_OK);
    ck_assert_ptr_nonnull(u);
    uint8_t *saved = malloc(size);
    ck_assert_ptr_nonnull(saved);
    memcpy(saved, blob, size);
    memset(blob, 0xA5, size);
    assert_same_tensor(ctx, t, u);
    qlib_tensor_destroy(u);

    /* The copy path takes any alignment; trailing bytes are ignored. */
    uint8_t *odd = malloc(size + 9);
    ck_assert_ptr_nonnull(odd);
    memcpy(odd + 1, saved, size);
    memset(odd + 1 + size, 0x5A, 8);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, odd + 1, size + 8, 0, &u), QLIB_OK);
    assert_same_tensor(ctx, t, u);
    qlib_tensor_destroy(u);
    free(odd);

    /* A second quantization of the same weights gives the same bytes. */
    qlib_tensor *t2 = make_tensor(ctx, c, 7 + (uint64_t)_i);
    size_t size2;
    uint8_t *blob2 = blob_of(t2, &size2);
    ck_assert_uint_eq(size2, size);
    ck_assert_mem_eq(blob2, saved, size);
    free(blob2);
    qlib_tensor_destroy(t2);

    free(saved);
    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

START_TEST(test_borrow)
{
    const kind *c = &kinds[_i];
    byte_count bc = { 0, 0 };
    qlib_allocator a = QLIB_ALLOCATOR_INIT;
    a.alloc = bc_alloc;
    a.free = bc_free;
    a.user = &bc;
    qlib_ctx *ctx = NULL;
    ck_assert_int_eq(qlib_ctx_create_with_allocator(&a, &ctx), QLIB_OK);
    ck_assert_int_eq(qlib_ctx_set_threads(ctx, 1), QLIB_OK);
    qlib_tensor *t = make_tensor(ctx, c, 31 + (uint64_t)_i);
    size_t size;
    uint8_t *blob = blob_of(t, &size);

    /* Borrowing allocates less than the blob: the tensor points into it. */
    size_t before = bc.bytes;
    qlib_tensor *u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, QLIB_LOAD_BORROW, &u), QLIB_OK);
    ck_assert_ptr_nonnull(u);
    ck_assert_uint_lt(bc.bytes - before, size);
    assert_same_tensor(ctx, t, u);
    /* the same buffer may back several tensors */
    qlib_tensor *v = NULL;
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size + 1, QLIB_LOAD_BORROW, &v), QLIB_OK);
    assert_same_tensor(ctx, u, v);
    qlib_tensor_destroy(v);
    qlib_tensor_destroy(u);

    /* A copy allocates at least the blob. */
    before = bc.bytes;
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_OK);
    ck_assert_uint_ge(bc.bytes - before, size);
    qlib_tensor_destroy(u);

    /* Misaligned buffers are refused. */
    uint8_t *big = aligned_alloc(64, up64(size + 64));
    ck_assert_ptr_nonnull(big);
    static const size_t offs[] = { 1, 4, 8, 16, 32, 63 };
    for (size_t i = 0; i < COUNT(offs); i++) {
        memcpy(big + offs[i], blob, size);
        u = (qlib_tensor *)&u;
        ck_assert_int_eq(qlib_tensor_deserialize(ctx, big + offs[i], size, QLIB_LOAD_BORROW, &u),
                         QLIB_ERR_ARG);
        ck_assert_ptr_null(u);
        ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_deserialize"));
        /* without BORROW the same bytes load */
        ck_assert_int_eq(qlib_tensor_deserialize(ctx, big + offs[i], size, 0, &u), QLIB_OK);
        qlib_tensor_destroy(u);
    }
    free(big);
    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    ck_assert_uint_eq(bc.live, 0);
}
END_TEST

/* A tensor outlives the context that made it and serves other contexts. */
START_TEST(test_tensor_outlives_ctx)
{
    qlib_ctx *c1 = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(c1, &kinds[0], 5);
    size_t size;
    uint8_t *blob = blob_of(t, &size);
    qlib_tensor *u = NULL;
    ck_assert_int_eq(qlib_tensor_deserialize(c1, blob, size, 0, &u), QLIB_OK);
    qlib_ctx_destroy(c1);
    qlib_ctx *c2 = tu_ctx(2, NULL);
    assert_same_tensor(c2, t, u);
    qlib_tensor_destroy(u);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(c2);
    free(blob);
}
END_TEST

START_TEST(test_serialize_args)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, &kinds[0], 3);
    size_t size = 0, written = 77;
    ck_assert_int_eq(qlib_tensor_serialized_size(t, &size), QLIB_OK);
    uint8_t *buf = malloc(size + 16);
    ck_assert_ptr_nonnull(buf);

    /* Too small a buffer: ERR_ARG and nothing written. */
    const size_t caps[] = { 0, 1, 80, size / 2, size - 1 };
    for (size_t i = 0; i < COUNT(caps); i++) {
        size_t cap = caps[i];
        memset(buf, 0xEE, size + 16);
        written = 77;
        ck_assert_int_eq(qlib_tensor_serialize(t, buf, cap, &written), QLIB_ERR_ARG);
        ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_serialize"));
        ck_assert_uint_eq(written, 0);
        for (size_t j = 0; j < size + 16; j++) REQUIRE(buf[j] == 0xEE, "byte %zu written", j);
    }
    ck_assert_int_eq(qlib_tensor_serialize(t, NULL, size, &written), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_serialize(NULL, buf, size, &written), QLIB_ERR_ARG);
    /* written may be NULL; a larger cap writes only the blob */
    memset(buf, 0xEE, size + 16);
    ck_assert_int_eq(qlib_tensor_serialize(t, buf, size + 16, NULL), QLIB_OK);
    for (size_t j = size; j < size + 16; j++) REQUIRE(buf[j] == 0xEE, "byte %zu written", j);
    ck_assert_int_eq(qlib_tensor_serialized_size(t, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_serialized_size(NULL, &size), QLIB_ERR_ARG);

    /* Deserialize: NULLs and unknown flag bits. */
    uint8_t *blob = blob_of(t, &size);
    qlib_tensor *u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_deserialize(NULL, blob, size, 0, &u), QLIB_ERR_ARG);
    ck_assert_ptr_null(u);
    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, NULL, size, 0, &u), QLIB_ERR_ARG);
    ck_assert_ptr_null(u);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, NULL), QLIB_ERR_ARG);
    static const unsigned flags[] = { 2, 3, 4, 0x100, 0x80000000u, ~0u };
    for (size_t i = 0; i < COUNT(flags); i++) {
        u = (qlib_tensor *)&u;
        ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, flags[i], &u), QLIB_ERR_ARG);
        ck_assert_ptr_null(u);
        ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_deserialize"));
    }
    free(blob);
    free(buf);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Every prefix of a blob is refused with ERR_FORMAT, copied or borrowed. */
START_TEST(test_truncation_every_offset)
{
    const kind *c = &kinds[_i];
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, c, 50 + (uint64_t)_i);
    size_t size;
    uint8_t *blob = blob_of(t, &size);
    for (size_t len = 0; len < size; len++) {
        /* An exact-size copy, so that any read past len shows under ASan. */
        uint8_t *cut = malloc(len ? len : 1);
        ck_assert_ptr_nonnull(cut);
        memcpy(cut, blob, len);
        qlib_tensor *u = (qlib_tensor *)&u;
        qlib_status s = qlib_tensor_deserialize(ctx, cut, len, 0, &u);
        REQUIRE(s == QLIB_ERR_FORMAT && u == NULL, "len %zu of %zu: %d", len, size, (int)s);
        free(cut);
        u = (qlib_tensor *)&u;
        s = qlib_tensor_deserialize(ctx, blob, len, QLIB_LOAD_BORROW, &u);
        REQUIRE(s == QLIB_ERR_FORMAT && u == NULL, "borrowed len %zu of %zu: %d", len, size,
                (int)s);
    }
    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* Any change of one byte anywhere is refused with ERR_FORMAT: the checksum
 * covers every word of the blob, padding included. */
START_TEST(test_byte_flip_every_offset)
{
    const kind *c = &kinds[_i];
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, c, 70 + (uint64_t)_i);
    size_t size;
    uint8_t *blob = blob_of(t, &size);
    static const uint8_t masks[] = { 0x01, 0x80, 0xFF };
    for (size_t off = 0; off < size; off++)
        for (size_t mi = 0; mi < COUNT(masks); mi++) {
            blob[off] ^= masks[mi];
            qlib_tensor *u = (qlib_tensor *)&u;
            qlib_status s = qlib_tensor_deserialize(ctx, blob, size, 0, &u);
            REQUIRE(s == QLIB_ERR_FORMAT && u == NULL, "offset %zu ^%02x: %d", off, masks[mi],
                    (int)s);
            u = (qlib_tensor *)&u;
            s = qlib_tensor_deserialize(ctx, blob, size, QLIB_LOAD_BORROW, &u);
            REQUIRE(s == QLIB_ERR_FORMAT && u == NULL, "borrowed offset %zu ^%02x: %d", off,
                    masks[mi], (int)s);
            blob[off] ^= masks[mi];
        }
    /* and the restored blob is fine */
    qlib_tensor *u = NULL;
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, QLIB_LOAD_BORROW, &u), QLIB_OK);
    qlib_tensor_destroy(u);
    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

START_TEST(test_magic_and_version)
{
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, &kinds[0], 4);
    size_t size;
    uint8_t *blob = blob_of(t, &size);
    qlib_tensor *u = NULL;

    memcpy(blob, "QLIBTNSX", 8);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_ERR_FORMAT);
    ck_assert_ptr_null(u);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "magic"));
    memset(blob, 0, 8);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_ERR_FORMAT);
    memcpy(blob, "QLIBTNSR", 8);

    /* Versions other than 1 are refused, and the message says so. */
    static const uint32_t versions[] = { 0, 2, 3, 0x100, 0xffffffffu };
    for (size_t i = 0; i < COUNT(versions); i++) {
        put32(blob + 8, versions[i]);
        u = (qlib_tensor *)&u;
        ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_ERR_FORMAT);
        ck_assert_ptr_null(u);
        ck_assert_msg(strstr(qlib_last_error(), "version") != NULL, "\"%s\"", qlib_last_error());
    }
    put32(blob + 8, 1);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_OK);
    qlib_tensor_destroy(u);

    /* Not a blob at all. */
    memset(blob, 0, size);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_ERR_FORMAT);
    memset(blob, 0xFF, size);
    ck_assert_int_eq(qlib_tensor_deserialize(ctx, blob, size, 0, &u), QLIB_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_deserialize"));
    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------ files */

static char *make_temp_dir(void)
{
    const char *base = getenv("TMPDIR");
    char *dir = malloc(4096);
    ck_assert_ptr_nonnull(dir);
    snprintf(dir, 4096, "%s/qlib_test_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    return dir;
}

static char *join(const char *dir, const char *name)
{
    char *p = malloc(4096);
    ck_assert_ptr_nonnull(p);
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

/* Entries of dir other than . and .., and how many look like save's
 * temporary files. */
static int dir_entries(const char *dir, int *temps)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    *temps = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (strstr(e->d_name, ".tmp.")) (*temps)++;
    }
    closedir(d);
    return n;
}

static size_t file_size(const char *path)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    return (size_t)st.st_size;
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    if (len) ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_save_load)
{
    char *dir = make_temp_dir(), *path = join(dir, "w.qlib");
    qlib_ctx *ctx = tu_ctx(1, NULL);
    int temps;
    for (size_t i = 0; i < COUNT(kinds); i++) {
        qlib_tensor *t = make_tensor(ctx, &kinds[i], 90 + i);
        ck_assert_int_eq(qlib_tensor_save(t, path), QLIB_OK);   /* replaces the previous file */
        size_t size;
        uint8_t *blob = blob_of(t, &size);
        ck_assert_uint_eq(file_size(path), size);
        uint8_t *disk = malloc(size);
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fread(disk, 1, size, f), size);
        fclose(f);
        ck_assert_mem_eq(disk, blob, size);                     /* the file is the blob */
        free(disk);
        qlib_tensor *u = (qlib_tensor *)&u;
        ck_assert_int_eq(qlib_tensor_load(ctx, path, &u), QLIB_OK);
        assert_same_tensor(ctx, t, u);
        qlib_tensor_destroy(u);
        ck_assert_int_eq(dir_entries(dir, &temps), 1);
        ck_assert_int_eq(temps, 0);
        free(blob);
        qlib_tensor_destroy(t);
    }
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    qlib_ctx_destroy(ctx);
    free(path);
    free(dir);
}
END_TEST

START_TEST(test_save_failures)
{
    char *dir = make_temp_dir();
    char *missing = join(dir, "no/such/dir/w.qlib"), *sub = join(dir, "sub");
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, &kinds[0], 6);
    int temps;

    /* A directory that does not exist: nothing can be created. */
    ck_assert_int_eq(qlib_tensor_save(t, missing), QLIB_ERR_IO);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_save"));
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "w.qlib"));
    ck_assert_int_eq(dir_entries(dir, &temps), 0);

    /* The target is a directory: the temporary file is written, the rename
     * fails, and the temporary file is removed. */
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert_int_eq(qlib_tensor_save(t, sub), QLIB_ERR_IO);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_save"));
    ck_assert_int_eq(dir_entries(dir, &temps), 1);
    ck_assert_int_eq(temps, 0);

    /* A read-only directory (not for root, who may write anyway). */
    if (geteuid() != 0) {
        ck_assert_int_eq(chmod(sub, 0500), 0);
        char *in_ro = join(sub, "w.qlib");
        ck_assert_int_eq(qlib_tensor_save(t, in_ro), QLIB_ERR_IO);
        ck_assert_int_eq(dir_entries(sub, &temps), 0);
        ck_assert_int_eq(chmod(sub, 0700), 0);
        free(in_ro);
    }

    ck_assert_int_eq(qlib_tensor_save(t, ""), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_save(t, NULL), QLIB_ERR_ARG);
    ck_assert_int_eq(qlib_tensor_save(NULL, sub), QLIB_ERR_ARG);

    ck_assert_int_eq(rmdir(sub), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(missing);
    free(sub);
    free(dir);
}
END_TEST

START_TEST(test_load_failures)
{
    char *dir = make_temp_dir();
    char *missing = join(dir, "missing.qlib"), *empty = join(dir, "empty.qlib");
    char *half = join(dir, "half.qlib"), *junk = join(dir, "junk.qlib");
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, &kinds[1], 8), *u;
    size_t size;
    uint8_t *blob = blob_of(t, &size);

    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_load(ctx, missing, &u), QLIB_ERR_IO);
    ck_assert_ptr_null(u);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_load"));
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "missing.qlib"));

    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_load(ctx, dir, &u), QLIB_ERR_IO);       /* a directory */
    ck_assert_ptr_null(u);

    write_file(empty, blob, 0);
    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_load(ctx, empty, &u), QLIB_ERR_FORMAT);
    ck_assert_ptr_null(u);

    write_file(half, blob, size / 2);
    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_load(ctx, half, &u), QLIB_ERR_FORMAT);
    ck_assert_ptr_null(u);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_load"));

    blob[size - 1] ^= 0x10;
    write_file(junk, blob, size);
    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_load(ctx, junk, &u), QLIB_ERR_FORMAT);
    ck_assert_ptr_null(u);

    ck_assert_int_eq(qlib_tensor_load(ctx, missing, NULL), QLIB_ERR_ARG);
    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_load(ctx, NULL, &u), QLIB_ERR_ARG);
    ck_assert_ptr_null(u);
    u = (qlib_tensor *)&u;
    ck_assert_int_eq(qlib_tensor_load(NULL, empty, &u), QLIB_ERR_ARG);
    ck_assert_ptr_null(u);

    ck_assert_int_eq(unlink(empty), 0);
    ck_assert_int_eq(unlink(half), 0);
    ck_assert_int_eq(unlink(junk), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(missing); free(empty); free(half); free(junk); free(dir);
}
END_TEST

/* An allocator that refuses any single request above `limit` bytes and
 * records the largest request: the memory bound of a load. */
typedef struct budget { size_t limit, largest; int refused; } budget;

static void *budget_alloc(void *user, size_t size, size_t alignment)
{
    budget *b = user;
    void *p = NULL;
    if (size > b->largest) b->largest = size;
    if (size > b->limit) {
        b->refused = 1;
        return NULL;
    }
    return posix_memalign(&p, alignment, size) == 0 ? p : NULL;
}

static void budget_free(void *user, void *p)
{
    (void)user;
    free(p);
}

static qlib_ctx *budget_ctx(budget *b, size_t limit)
{
    qlib_allocator a = QLIB_ALLOCATOR_INIT;
    qlib_ctx *ctx = NULL;
    memset(b, 0, sizeof *b);
    b->limit = limit;
    a.alloc = budget_alloc;
    a.free = budget_free;
    a.user = b;
    if (qlib_ctx_create_with_allocator(&a, &ctx) != QLIB_OK) return NULL;
    if (qlib_ctx_set_threads(ctx, 1) != QLIB_OK) {
        qlib_ctx_destroy(ctx);
        return NULL;
    }
    return ctx;
}

#define CHILD_OVER_BUDGET 99

/* Runs qlib_tensor_load(path) in a child process whose context refuses any
 * allocation above `limit` bytes, and returns its status; CHILD_OVER_BUDGET
 * if the load asked for more; -1 if the child did not finish within
 * `seconds` (it is then killed by SIGALRM). The time bound guards against a
 * load that blocks or reads for long; a correct load of these files reads a
 * few hundred bytes, so no correct run comes near it. */
static int load_status_in_child(const char *path, unsigned seconds, size_t limit)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);      /* not the handler Check installed */
        alarm(seconds);
        budget b;
        qlib_ctx *ctx = budget_ctx(&b, limit);
        qlib_tensor *t = NULL;
        if (!ctx) _exit(100);
        qlib_status s = qlib_tensor_load(ctx, path, &t);
        if (t != NULL && s != QLIB_OK) _exit(101);
        qlib_tensor_destroy(t);
        qlib_ctx_destroy(ctx);
        _exit(b.refused ? CHILD_OVER_BUDGET : (int)s);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) return -1;
    ck_assert_msg(WIFEXITED(status), "the loading child died of signal %d", WTERMSIG(status));
    return WEXITSTATUS(status);
}

/* A FIFO nobody writes to: opening it for reading would block until a
 * writer comes; the load must see that it is not a regular file first. */
START_TEST(test_load_fifo)
{
    char *dir = make_temp_dir(), *fifo = join(dir, "fifo.qlib");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    int s = load_status_in_child(fifo, 20, (size_t)1 << 20);
    ck_assert_msg(s != -1, "qlib_tensor_load on a FIFO blocked for 20 s");
    ck_assert_int_eq(s, QLIB_ERR_IO);
    /* and in this process, the message names the file */
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = (qlib_tensor *)&t;
    ck_assert_int_eq(qlib_tensor_load(ctx, fifo, &t), QLIB_ERR_IO);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(qlib_last_error(), "not a regular file"));
    qlib_ctx_destroy(ctx);
    ck_assert_int_eq(unlink(fifo), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    free(fifo);
    free(dir);
}
END_TEST

/* Files far larger than the blob their header describes. A 6 GiB sparse
 * file costs no disk; a loader that reads or allocates it whole before
 * looking at the header is caught by the per-request allocation limit (16
 * MiB, against blobs of a few hundred bytes) and by the time bound. */
START_TEST(test_load_header_first)
{
    const off_t big = (off_t)6 << 30;
    const size_t limit = (size_t)16 << 20;
    char *dir = make_temp_dir(), *path = join(dir, "big.qlib");
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, &kinds[0], 21);
    size_t size;
    uint8_t *blob = blob_of(t, &size);

    for (int c = 0; c < 4; c++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ck_assert_int_ge(fd, 0);
        uint8_t head[512];
        memset(head, 0, sizeof head);
        if (c == 0) {                          /* the magic, then nothing */
            memcpy(head, "QLIBTNSR", 8);
            ck_assert_int_eq(write(fd, head, 8), 8);
        } else if (c == 1) {                   /* a real header declaring 6 GiB */
            memcpy(head, blob, size < sizeof head ? size : sizeof head);
            uint64_t total = (uint64_t)big;
            memcpy(head + 16, &total, 8);
            ck_assert_int_eq(write(fd, head, sizeof head), (ssize_t)sizeof head);
        } else {                               /* a whole blob, then more bytes */
            ck_assert_int_eq(write(fd, blob, size), (ssize_t)size);
        }
        off_t end = c == 3 ? (off_t)size + 64 : big;
        ck_assert_msg(ftruncate(fd, end) == 0, "ftruncate to %lld: %s", (long long)end,
                      strerror(errno));
        ck_assert_int_eq(close(fd), 0);

        int s = load_status_in_child(path, 20, limit);
        ck_assert_msg(s != -1, "case %d: qlib_tensor_load ran for 20 s", c);
        ck_assert_msg(s != CHILD_OVER_BUDGET, "case %d: qlib_tensor_load asked for more than %zu "
                      "bytes at once", c, limit);
        ck_assert_msg(s == QLIB_ERR_FORMAT, "case %d: status %d", c, s);

        /* in this process too: the message, and the largest request */
        budget b;
        qlib_ctx *bctx = budget_ctx(&b, limit);
        ck_assert_ptr_nonnull(bctx);
        b.largest = 0;
        qlib_tensor *u = (qlib_tensor *)&u;
        ck_assert_int_eq(qlib_tensor_load(bctx, path, &u), QLIB_ERR_FORMAT);
        ck_assert_ptr_null(u);
        ck_assert_ptr_nonnull(strstr(qlib_last_error(), "qlib_tensor_load"));
        ck_assert_msg(b.largest <= size, "case %d: asked for %zu bytes, the blob has %zu", c,
                      b.largest, size);
        qlib_ctx_destroy(bctx);
    }
    /* the blob alone, in the same file, loads */
    int fd = open(path, O_WRONLY | O_TRUNC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, blob, size), (ssize_t)size);
    ck_assert_int_eq(close(fd), 0);
    ck_assert_int_eq(load_status_in_child(path, 20, limit), QLIB_OK);

    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    free(blob);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(path);
    free(dir);
}
END_TEST

/* ---- what qlib_tensor_save asks of the file system ----
 * This executable's fsync and rename stand in front of the C library's
 * (the library is linked statically into it) and, while `io_log.armed`,
 * record what they were called with before passing the call on. */
static struct io_log {
    int armed, renamed;
    int file_syncs_before_rename, dir_syncs_after_rename;
    dev_t dir_dev;
    ino_t dir_ino;
    char from[4096], to[4096];
} io_log;

static void *next_symbol(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (!p) abort();
    return p;
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real) {
        void *p = next_symbol("fsync");
        memcpy(&real, &p, sizeof p);
    }
    struct stat st;
    if (io_log.armed && fstat(fd, &st) == 0) {
        if (S_ISREG(st.st_mode) && !io_log.renamed) io_log.file_syncs_before_rename++;
        if (S_ISDIR(st.st_mode) && io_log.renamed) {
            io_log.dir_syncs_after_rename++;
            io_log.dir_dev = st.st_dev;
            io_log.dir_ino = st.st_ino;
        }
    }
    return real(fd);
}

int rename(const char *from, const char *to)
{
    static int (*real)(const char *, const char *);
    if (!real) {
        void *p = next_symbol("rename");
        memcpy(&real, &p, sizeof p);
    }
    int r = real(from, to);
    if (io_log.armed) {
        snprintf(io_log.from, sizeof io_log.from, "%s", from);
        snprintf(io_log.to, sizeof io_log.to, "%s", to);
        io_log.renamed = r == 0;
    }
    return r;
}

/* The temporary file is named <path>.tmp.<pid>.<6 characters>, so that a
 * user can tell whose it is; the data is synced before the rename and the
 * directory after it, so that the new name survives a power cut. */
START_TEST(test_save_durable)
{
    char *dir = make_temp_dir(), *path = join(dir, "w.qlib"), *sub = join(dir, "sub");
    qlib_ctx *ctx = tu_ctx(1, NULL);
    qlib_tensor *t = make_tensor(ctx, &kinds[2], 31);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "%s.tmp.%ld.", path, (long)getpid());
    int temps;

    memset(&io_log, 0, sizeof io_log);
    io_log.armed = 1;
    qlib_status s = qlib_tensor_save(t, path);
    io_log.armed = 0;
    ck_assert_int_eq(s, QLIB_OK);
    ck_assert_str_eq(io_log.to, path);
    ck_assert_msg(strncmp(io_log.from, prefix, strlen(prefix)) == 0 &&
                  strlen(io_log.from) == strlen(prefix) + 6,
                  "temporary file %s is not named %sXXXXXX", io_log.from, prefix);
    ck_assert_int_ge(io_log.file_syncs_before_rename, 1);
    ck_assert_msg(io_log.dir_syncs_after_rename >= 1, "the directory was not synced after the rename");
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert(io_log.dir_dev == st.st_dev && io_log.dir_ino == st.st_ino);
    ck_assert_int_eq(dir_entries(dir, &temps), 1);          /* success: no temporary left */
    ck_assert_int_eq(temps, 0);

    /* A relative path syncs the current directory. */
    char cwd[4096];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(dir), 0);
    memset(&io_log, 0, sizeof io_log);
    io_log.armed = 1;
    s = qlib_tensor_save(t, "rel.qlib");
    io_log.armed = 0;
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_int_eq(s, QLIB_OK);
    ck_assert_int_ge(io_log.dir_syncs_after_rename, 1);
    ck_assert(io_log.dir_dev == st.st_dev && io_log.dir_ino == st.st_ino);
    char *rel = join(dir, "rel.qlib");
    ck_assert_int_eq(unlink(rel), 0);
    free(rel);

    /* Failure after the temporary file was written (the target is a
     * directory): the temporary is removed, the directory holds what it held. */
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    ck_assert_int_eq(qlib_tensor_save(t, sub), QLIB_ERR_IO);
    ck_assert_int_eq(dir_entries(dir, &temps), 2);
    ck_assert_int_eq(temps, 0);

    ck_assert_int_eq(rmdir(sub), 0);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    qlib_tensor_destroy(t);
    qlib_ctx_destroy(ctx);
    free(path);
    free(sub);
    free(dir);
}
END_TEST

Suite *suite_serialize(void)
{
    Suite *s = suite_create("serialize");
    TCase *tc = tu_tcase("serialize");
    tcase_add_loop_test(tc, test_round_trip, 0, (int)COUNT(kinds));
    tcase_add_loop_test(tc, test_borrow, 0, (int)COUNT(kinds));
    tcase_add_test(tc, test_tensor_outlives_ctx);
    tcase_add_test(tc, test_serialize_args);
    tcase_add_loop_test(tc, test_truncation_every_offset, 0, (int)COUNT(kinds));
    tcase_add_loop_test(tc, test_byte_flip_every_offset, 0, (int)COUNT(kinds));
    tcase_add_test(tc, test_magic_and_version);
    tcase_add_test(tc, test_save_load);
    tcase_add_test(tc, test_save_failures);
    tcase_add_test(tc, test_save_durable);
    tcase_add_test(tc, test_load_failures);
    tcase_add_test(tc, test_load_fifo);
    tcase_add_test(tc, test_load_header_first);
    suite_add_tcase(s, tc);
    return s;
}
