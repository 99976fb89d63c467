/*
 * GGUF files (the llama.cpp / ggml model container), versions 2 and 3,
 * little-endian: "GGUF", uint32 version, uint64 tensor count, uint64 key
 * count; the keys (uint64-length string, uint32 value type, value; arrays
 * are uint32 element type, uint64 count, elements); the tensor infos (name,
 * uint32 n_dims, uint64 ne[n_dims], uint32 type, uint64 offset); padding to
 * general.alignment (default 32); the tensor data, each tensor at its offset
 * (a multiple of the alignment) from the start of that section.
 *
 * The reader checks every length against the bytes left before it reads,
 * and every tensor against the file's size; nothing is copied.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

#define GGUF_MAGIC "GGUF"
#define DEFAULT_ALIGNMENT 32u
#define MAX_DIMS 4u
#define MAX_NAME 256u          /* ggml's own limit is 64; a longer name is still read */
#define MAX_ARRAY_DEPTH 3

static const size_t SCALAR_BYTES[GV_N_TYPES] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

typedef struct cursor {
    const unsigned char *p;
    size_t left;
    const char *path;
} cursor;

static int need(cursor *c, size_t n, const char *what)
{
    if (c->left < n) {
        llama_err("%s: truncated GGUF file (%s needs %zu bytes, %zu left)", c->path, what, n,
                  c->left);
        return -1;
    }
    return 0;
}

static void skip(cursor *c, size_t n)
{
    c->p += n;
    c->left -= n;
}

static int read_u32(cursor *c, uint32_t *v, const char *what)
{
    if (need(c, 4, what))
        return -1;
    *v = get_u32le(c->p);
    skip(c, 4);
    return 0;
}

static int read_u64(cursor *c, uint64_t *v, const char *what)
{
    if (need(c, 8, what))
        return -1;
    *v = get_u64le(c->p);
    skip(c, 8);
    return 0;
}

static int read_str(cursor *c, const char **s, size_t *len, const char *what)
{
    uint64_t n;
    if (read_u64(c, &n, what))
        return -1;
    if (n > c->left) {
        llama_err("%s: GGUF %s of %llu bytes overruns the file", c->path, what,
                  (unsigned long long)n);
        return -1;
    }
    *s = (const char *)c->p;
    *len = (size_t)n;
    skip(c, (size_t)n);
    return 0;
}

/* Skips one value of type t, checking it; depth bounds nested arrays. */
static int skip_value(cursor *c, uint32_t t, int depth, gguf_kv *kv)
{
    const char *s;
    size_t len;
    uint32_t et;
    uint64_t count, i;
    if (t >= GV_N_TYPES) {
        llama_err("%s: GGUF value type %u is unknown", c->path, t);
        return -1;
    }
    if (t == GV_STR)
        return read_str(c, &s, &len, "string");
    if (t != GV_ARR) {
        if (need(c, SCALAR_BYTES[t], "value"))
            return -1;
        if (t == GV_BOOL && c->p[0] > 1) {
            llama_err("%s: GGUF bool value %u is neither 0 nor 1", c->path, c->p[0]);
            return -1;
        }
        skip(c, SCALAR_BYTES[t]);
        return 0;
    }
    if (depth >= MAX_ARRAY_DEPTH) {
        llama_err("%s: GGUF arrays nested deeper than %d", c->path, MAX_ARRAY_DEPTH);
        return -1;
    }
    if (read_u32(c, &et, "array type") || read_u64(c, &count, "array length"))
        return -1;
    if (et >= GV_N_TYPES) {
        llama_err("%s: GGUF array element type %u is unknown", c->path, et);
        return -1;
    }
    if (kv) {
        kv->elem_type = et;
        kv->count = count;
        kv->elems = c->p;
    }
    if (et != GV_STR && et != GV_ARR) {
        if (count > c->left / SCALAR_BYTES[et]) {
            llama_err("%s: GGUF array of %llu elements overruns the file", c->path,
                      (unsigned long long)count);
            return -1;
        }
        if (et == GV_BOOL)
            for (i = 0; i < count; i++)
                if (c->p[i] > 1) {
                    llama_err("%s: GGUF bool value %u is neither 0 nor 1", c->path, c->p[i]);
                    return -1;
                }
        skip(c, (size_t)count * SCALAR_BYTES[et]);
        return 0;
    }
    /* every string or array takes at least 8 bytes */
    if (count > c->left / 8) {
        llama_err("%s: GGUF array of %llu elements overruns the file", c->path,
                  (unsigned long long)count);
        return -1;
    }
    for (i = 0; i < count; i++)
        if (skip_value(c, et, depth + 1, NULL))
            return -1;
    return 0;
}

static int key_is(const char *key, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(key, name, len) == 0;
}

static int parse_kvs(cursor *c, gguf_file *g)
{
    size_t i, j;
    for (i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        if (read_str(c, &kv->key, &kv->key_len, "key") || read_u32(c, &kv->type, "value type"))
            return -1;
        if (kv->key_len == 0 || memchr(kv->key, '\0', kv->key_len)) {
            llama_err("%s: GGUF key %zu is empty or holds a NUL byte", c->path, i);
            return -1;
        }
        kv->raw = c->p;
        if (skip_value(c, kv->type, 0, kv))
            return -1;
        kv->raw_bytes = (size_t)(c->p - kv->raw);
        for (j = 0; j < i; j++)
            if (g->kv[j].key_len == kv->key_len && !memcmp(g->kv[j].key, kv->key, kv->key_len)) {
                llama_err("%s: GGUF key '%.*s' appears twice", c->path, (int)kv->key_len, kv->key);
                return -1;
            }
    }
    return 0;
}

static int parse_alignment(const char *path, gguf_file *g)
{
    size_t i;
    g->alignment = DEFAULT_ALIGNMENT;
    for (i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (!key_is(kv->key, kv->key_len, "general.alignment"))
            continue;
        if (kv->type != GV_U32) {
            llama_err("%s: general.alignment is not a uint32", path);
            return -1;
        }
        g->alignment = get_u32le(kv->raw);
        if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) != 0) {
            llama_err("%s: general.alignment %u is not a power of two", path, g->alignment);
            return -1;
        }
    }
    return 0;
}

static int parse_tensor_info(cursor *c, gguf_tensor_info *t)
{
    uint32_t d;
    if (read_str(c, &t->name, &t->name_len, "tensor name"))
        return -1;
    if (t->name_len == 0 || t->name_len > MAX_NAME || memchr(t->name, '\0', t->name_len)) {
        llama_err("%s: GGUF tensor name of %zu bytes, empty, too long or holding a NUL byte",
                  c->path, t->name_len);
        return -1;
    }
    if (read_u32(c, &t->n_dims, "tensor dimensions"))
        return -1;
    if (t->n_dims < 1 || t->n_dims > MAX_DIMS) {
        llama_err("%s: tensor '%.*s' has %u dimensions (1 to %u)", c->path, (int)t->name_len,
                  t->name, t->n_dims, MAX_DIMS);
        return -1;
    }
    for (d = 0; d < MAX_DIMS; d++)
        t->ne[d] = 1;
    for (d = 0; d < t->n_dims; d++)
        if (read_u64(c, &t->ne[d], "tensor shape"))
            return -1;
    return read_u32(c, &t->type, "tensor type") || read_u64(c, &t->offset, "tensor offset") ? -1 : 0;
}

/* Size and place of tensor t; types this program does not know keep data NULL. */
static int place_tensor(const char *path, const gguf_file *g, gguf_tensor_info *t)
{
    size_t n = 1, bytes, rows, room;
    uint32_t d;
    for (d = 0; d < MAX_DIMS; d++) {
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)SIZE_MAX || size_mul(n, (size_t)t->ne[d], &n)) {
            llama_err("%s: tensor '%.*s' has a zero or overflowing dimension", path,
                      (int)t->name_len, t->name);
            return -1;
        }
    }
    if (t->offset % g->alignment != 0) {
        llama_err("%s: tensor '%.*s' at offset %llu is not aligned to %u", path, (int)t->name_len,
                  t->name, (unsigned long long)t->offset, g->alignment);
        return -1;
    }
    if (!dtype_name((int)t->type) || t->type == ST_I32)
        return 0;
    rows = n / (size_t)t->ne[0];
    if (dtype_row_bytes((int)t->type, (size_t)t->ne[0], &bytes) || size_mul(bytes, rows, &bytes)) {
        llama_err("%s: tensor '%.*s': %llu columns are not whole %s blocks", path,
                  (int)t->name_len, t->name, (unsigned long long)t->ne[0], dtype_name((int)t->type));
        return -1;
    }
    room = g->file.size - g->data_offset;
    if (t->offset > (uint64_t)room || bytes > room - (size_t)t->offset) {
        llama_err("%s: tensor '%.*s' (%zu bytes at %llu) overruns the file", path,
                  (int)t->name_len, t->name, bytes, (unsigned long long)t->offset);
        return -1;
    }
    t->data = g->file.data + g->data_offset + (size_t)t->offset;
    t->bytes = bytes;
    return 0;
}

static int cmp_name(const gguf_tensor_info *a, const gguf_tensor_info *b)
{
    return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0;
}

static int parse_tensors(cursor *c, gguf_file *g)
{
    size_t i, j, end;
    for (i = 0; i < g->n_tensors; i++)
        if (parse_tensor_info(c, &g->tensors[i]))
            return -1;
    end = g->file.size - c->left;
    g->data_offset = end + (g->alignment - end % g->alignment) % g->alignment;
    if (g->data_offset > g->file.size) {
        if (g->n_tensors == 0) {
            g->data_offset = g->file.size;   /* no data section at all */
            return 0;
        }
        llama_err("%s: GGUF data section starts past the end of the file", c->path);
        return -1;
    }
    for (i = 0; i < g->n_tensors; i++) {
        if (place_tensor(c->path, g, &g->tensors[i]))
            return -1;
        for (j = 0; j < i; j++)
            if (cmp_name(&g->tensors[i], &g->tensors[j])) {
                llama_err("%s: tensor '%.*s' appears twice", c->path, (int)g->tensors[i].name_len,
                          g->tensors[i].name);
                return -1;
            }
    }
    return 0;
}

int gguf_is_gguf(const mapped_file *f)
{
    return f->size >= 4 && memcmp(f->data, GGUF_MAGIC, 4) == 0;
}

int gguf_parse(const char *path, const mapped_file *f, gguf_file *g)
{
    cursor c;
    uint64_t n_tensors, n_kv;
    memset(g, 0, sizeof(*g));
    g->file = *f;
    c.p = f->data;
    c.left = f->size;
    c.path = path;
    if (!gguf_is_gguf(f)) {
        llama_err("%s: not a GGUF file", path);
        return -1;
    }
    skip(&c, 4);
    if (read_u32(&c, &g->version, "version"))
        return -1;
    if (g->version != 2 && g->version != 3) {
        llama_err("%s: GGUF version %u is not supported (2 and 3 are%s)", path, g->version,
                  g->version > 0xffff ? "; a big-endian file?" : "");
        return -1;
    }
    if (!host_is_little_endian()) {
        llama_err("%s: GGUF files hold little-endian data; this host is not", path);
        return -1;
    }
    if (read_u64(&c, &n_tensors, "tensor count") || read_u64(&c, &n_kv, "key count"))
        return -1;
    /* a key takes at least 12 bytes, a tensor info at least 28 */
    if (n_kv > c.left / 12 || n_tensors > c.left / 28) {
        llama_err("%s: GGUF header claims %llu keys and %llu tensors, more than the file holds",
                  path, (unsigned long long)n_kv, (unsigned long long)n_tensors);
        return -1;
    }
    g->n_kv = (size_t)n_kv;
    g->n_tensors = (size_t)n_tensors;
    g->kv = xcalloc(g->n_kv, sizeof(gguf_kv), "GGUF keys");
    g->tensors = xcalloc(g->n_tensors, sizeof(gguf_tensor_info), "GGUF tensors");
    if (!g->kv || !g->tensors || parse_kvs(&c, g) || parse_alignment(path, g)
        || parse_tensors(&c, g)) {
        free(g->kv);
        free(g->tensors);
        memset(g, 0, sizeof(*g));
        return -1;
    }
    return 0;
}

int gguf_open(const char *path, gguf_file *g)
{
    mapped_file f;
    memset(g, 0, sizeof(*g));
    if (map_file(path, &f) != 0)
        return -1;
    if (gguf_parse(path, &f, g) != 0) {
        unmap_file(&f);
        return -1;
    }
    return 0;
}

void gguf_free(gguf_file *g)
{
    free(g->kv);
    free(g->tensors);
    unmap_file(&g->file);
    memset(g, 0, sizeof(*g));
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key)
{
    size_t i;
    for (i = 0; i < g->n_kv; i++)
        if (key_is(g->kv[i].key, g->kv[i].key_len, key))
            return &g->kv[i];
    return NULL;
}

const gguf_tensor_info *gguf_find_tensor(const gguf_file *g, const char *name)
{
    size_t i;
    for (i = 0; i < g->n_tensors; i++)
        if (key_is(g->tensors[i].name, g->tensors[i].name_len, name))
            return &g->tensors[i];
    return NULL;
}

static int absent(const char *path, const char *key, int optional)
{
    if (!optional)
        llama_err("%s: GGUF key %s is missing", path, key);
    return optional ? 1 : -1;
}

int gguf_get_int(const char *path, const gguf_file *g, const char *key, int optional,
                 long long lo, long long hi, long long *v)
{
    const gguf_kv *kv = gguf_find(g, key);
    const unsigned char *p;
    long long x;
    if (!kv)
        return absent(path, key, optional);
    p = kv->raw;
    switch (kv->type) {
    case GV_U8: x = p[0]; break;
    case GV_I8: x = (signed char)p[0]; break;
    case GV_U16: x = p[0] | p[1] << 8; break;
    case GV_I16: x = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GV_U32: x = get_u32le(p); break;
    case GV_I32: x = (int32_t)get_u32le(p); break;
    case GV_U64:
        if (get_u64le(p) > (uint64_t)LLONG_MAX) {
            llama_err("%s: GGUF key %s = %llu is out of range", path, key,
                      (unsigned long long)get_u64le(p));
            return -1;
        }
        x = (long long)get_u64le(p);
        break;
    case GV_I64: x = (long long)get_u64le(p); break;
    default:
        llama_err("%s: GGUF key %s is not an integer", path, key);
        return -1;
    }
    if (x < lo || x > hi) {
        llama_err("%s: GGUF key %s = %lld is out of range [%lld, %lld]", path, key, x, lo, hi);
        return -1;
    }
    *v = x;
    return 0;
}

int gguf_get_float(const char *path, const gguf_file *g, const char *key, int optional, double *v)
{
    const gguf_kv *kv = gguf_find(g, key);
    uint32_t u;
    uint64_t u64;
    float f;
    if (!kv)
        return absent(path, key, optional);
    if (kv->type == GV_F32) {
        u = get_u32le(kv->raw);
        memcpy(&f, &u, 4);
        *v = f;
    } else if (kv->type == GV_F64) {
        u64 = get_u64le(kv->raw);
        memcpy(v, &u64, 8);
    } else {
        llama_err("%s: GGUF key %s is not a float", path, key);
        return -1;
    }
    return 0;
}

int gguf_get_str(const char *path, const gguf_file *g, const char *key, int optional,
                 const char **s, size_t *len)
{
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv)
        return absent(path, key, optional);
    if (kv->type != GV_STR) {
        llama_err("%s: GGUF key %s is not a string", path, key);
        return -1;
    }
    *len = (size_t)get_u64le(kv->raw);
    *s = (const char *)kv->raw + 8;
    return 0;
}

void gguf_arr_str(const gguf_kv *kv, uint64_t i, const char **s, size_t *len)
{
    const unsigned char *p = kv->elems;
    uint64_t j;
    for (j = 0; j < i; j++)
        p += 8 + (size_t)get_u64le(p);
    *len = (size_t)get_u64le(p);
    *s = (const char *)p + 8;
}

/* ================================================================ writer */
typedef struct wtensor {
    char *name;
    int dtype;
    size_t rows, cols, bytes, offset;
} wtensor;

struct gguf_writer {
    FILE *f;
    const char *path;
    unsigned char *kv;          /* the encoded keys */
    size_t kv_len, kv_cap, n_kv;
    char **keys;
    wtensor *t;
    size_t n_t, cap_t, data_bytes;
    int begun, current;         /* current: tensor being written, -1 none */
    size_t cur_written, next;   /* bytes of the current tensor; next tensor to write */
    size_t file_bytes;
    int failed;
};

gguf_writer *gguf_writer_create(FILE *f, const char *path)
{
    gguf_writer *w = xcalloc(1, sizeof(*w), "GGUF writer");
    if (w) {
        w->f = f;
        w->path = path;
        w->current = -1;
    }
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    size_t i;
    if (!w)
        return;
    for (i = 0; i < w->n_kv; i++)
        free(w->keys[i]);
    for (i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->keys);
    free(w->t);
    free(w->kv);
    free(w);
}

static int kv_put(gguf_writer *w, const void *p, size_t n)
{
    if (w->kv_cap - w->kv_len < n) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        unsigned char *q;
        while (cap - w->kv_len < n) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        q = realloc(w->kv, cap);
        if (!q) {
            llama_err("GGUF writer: out of memory");
            return -1;
        }
        w->kv = q;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

static int kv_u32(gguf_writer *w, uint32_t v)
{
    unsigned char b[4];
    put_u32le(b, v);
    return kv_put(w, b, 4);
}

static int kv_u64(gguf_writer *w, uint64_t v)
{
    unsigned char b[8];
    put_u64le(b, v);
    return kv_put(w, b, 8);
}

static int kv_str(gguf_writer *w, const char *s, size_t len)
{
    return kv_u64(w, len) || kv_put(w, s, len) ? -1 : 0;
}

int gguf_has_key(const gguf_writer *w, const char *key)
{
    size_t i;
    for (i = 0; i < w->n_kv; i++)
        if (!strcmp(w->keys[i], key))
            return 1;
    return 0;
}

/* Starts a key: name and type. */
static int kv_key(gguf_writer *w, const char *key, size_t key_len, uint32_t type)
{
    char **keys, *copy;
    if (w->begun) {
        llama_err("GGUF writer: key after the header was written");
        return -1;
    }
    copy = xcalloc(key_len + 1, 1, "GGUF key");
    if (!copy)
        return -1;
    memcpy(copy, key, key_len);
    if (gguf_has_key(w, copy)) {
        llama_err("GGUF writer: key %s given twice", copy);
        free(copy);
        return -1;
    }
    keys = realloc(w->keys, (w->n_kv + 1) * sizeof(char *));
    if (!keys) {
        free(copy);
        return -1;
    }
    w->keys = keys;
    w->keys[w->n_kv++] = copy;
    return kv_str(w, key, key_len) || kv_u32(w, type) ? -1 : 0;
}

int gguf_add_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return kv_key(w, key, strlen(key), GV_U32) || kv_u32(w, v) ? -1 : 0;
}

int gguf_add_i32(gguf_writer *w, const char *key, int32_t v)
{
    return kv_key(w, key, strlen(key), GV_I32) || kv_u32(w, (uint32_t)v) ? -1 : 0;
}

int gguf_add_f32(gguf_writer *w, const char *key, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    return kv_key(w, key, strlen(key), GV_F32) || kv_u32(w, u) ? -1 : 0;
}

int gguf_add_bool(gguf_writer *w, const char *key, int v)
{
    unsigned char b = v ? 1 : 0;
    return kv_key(w, key, strlen(key), GV_BOOL) || kv_put(w, &b, 1) ? -1 : 0;
}

int gguf_add_str(gguf_writer *w, const char *key, const char *v)
{
    return kv_key(w, key, strlen(key), GV_STR) || kv_str(w, v, strlen(v)) ? -1 : 0;
}

int gguf_add_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n)
{
    size_t i;
    if (kv_key(w, key, strlen(key), GV_ARR) || kv_u32(w, GV_STR) || kv_u64(w, n))
        return -1;
    for (i = 0; i < n; i++)
        if (kv_str(w, v[i], strlen(v[i])))
            return -1;
    return 0;
}

int gguf_add_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n)
{
    size_t i;
    if (kv_key(w, key, strlen(key), GV_ARR) || kv_u32(w, GV_F32) || kv_u64(w, n))
        return -1;
    for (i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        if (kv_u32(w, u))
            return -1;
    }
    return 0;
}

int gguf_add_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
    size_t i;
    if (kv_key(w, key, strlen(key), GV_ARR) || kv_u32(w, GV_I32) || kv_u64(w, n))
        return -1;
    for (i = 0; i < n; i++)
        if (kv_u32(w, (uint32_t)v[i]))
            return -1;
    return 0;
}

int gguf_add_raw(gguf_writer *w, const gguf_kv *kv)
{
    return kv_key(w, kv->key, kv->key_len, kv->type) || kv_put(w, kv->raw, kv->raw_bytes) ? -1 : 0;
}

static size_t align_up(size_t n)
{
    return n + (DEFAULT_ALIGNMENT - n % DEFAULT_ALIGNMENT) % DEFAULT_ALIGNMENT;
}

int gguf_add_tensor(gguf_writer *w, const char *name, int dtype, size_t rows, size_t cols)
{
    wtensor *t;
    size_t row_bytes, bytes;
    if (w->begun || strlen(name) == 0 || strlen(name) > 63) {
        llama_err("GGUF writer: bad tensor name '%s'", name);
        return -1;
    }
    if (dtype == ST_I32 || rows == 0 || cols == 0 || dtype_row_bytes(dtype, cols, &row_bytes)
        || size_mul(row_bytes, rows, &bytes)) {
        llama_err("GGUF writer: tensor %s: %zu x %zu does not fit type %d", name, rows, cols, dtype);
        return -1;
    }
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *q = realloc(w->t, cap * sizeof(wtensor));
        if (!q)
            return -1;
        w->t = q;
        w->cap_t = cap;
    }
    t = &w->t[w->n_t];
    t->name = xcalloc(strlen(name) + 1, 1, "GGUF tensor name");
    if (!t->name)
        return -1;
    strcpy(t->name, name);
    t->dtype = dtype;
    t->rows = rows;
    t->cols = cols;
    t->bytes = bytes;
    t->offset = w->data_bytes;
    w->data_bytes = align_up(w->data_bytes + bytes);
    return (int)w->n_t++;
}

static int put(gguf_writer *w, const void *p, size_t n)
{
    if (n && fwrite(p, 1, n, w->f) != n) {
        llama_err("%s: write failed: %s", w->path, strerror(errno));
        w->failed = 1;
        return -1;
    }
    w->file_bytes += n;
    return 0;
}

static int pad(gguf_writer *w)
{
    static const unsigned char zeros[DEFAULT_ALIGNMENT];
    return put(w, zeros, align_up(w->file_bytes) - w->file_bytes);
}

static int put_u32(gguf_writer *w, uint32_t v)
{
    unsigned char b[4];
    put_u32le(b, v);
    return put(w, b, 4);
}

static int put_u64(gguf_writer *w, uint64_t v)
{
    unsigned char b[8];
    put_u64le(b, v);
    return put(w, b, 8);
}

int gguf_write_begin(gguf_writer *w)
{
    size_t i;
    if (w->begun)
        return -1;
    if (!gguf_has_key(w, "general.alignment") && gguf_add_u32(w, "general.alignment", DEFAULT_ALIGNMENT))
        return -1;
    w->begun = 1;
    if (put(w, GGUF_MAGIC, 4) || put_u32(w, 3) || put_u64(w, w->n_t) || put_u64(w, w->n_kv)
        || put(w, w->kv, w->kv_len))
        return -1;
    for (i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        int two = t->rows > 1;
        if (put_u64(w, strlen(t->name)) || put(w, t->name, strlen(t->name))
            || put_u32(w, two ? 2 : 1) || put_u64(w, t->cols) || (two && put_u64(w, t->rows))
            || put_u32(w, (uint32_t)t->dtype) || put_u64(w, t->offset))
            return -1;
    }
    free(w->kv);
    w->kv = NULL;
    w->kv_len = w->kv_cap = 0;
    return pad(w);
}

int gguf_write_open(gguf_writer *w, int index)
{
    if (!w->begun || w->current >= 0 || index < 0 || (size_t)index != w->next) {
        llama_err("GGUF writer: tensor %d written out of order", index);
        return -1;
    }
    w->current = index;
    w->cur_written = 0;
    return 0;
}

int gguf_write_bytes(gguf_writer *w, const void *p, size_t n)
{
    if (w->current < 0 || n > w->t[w->current].bytes - w->cur_written) {
        llama_err("GGUF writer: more bytes than tensor %s holds",
                  w->current >= 0 ? w->t[w->current].name : "?");
        return -1;
    }
    w->cur_written += n;
    return put(w, p, n);
}

int gguf_write_close(gguf_writer *w)
{
    if (w->current < 0 || w->cur_written != w->t[w->current].bytes) {
        llama_err("GGUF writer: tensor %s got %zu of %zu bytes",
                  w->current >= 0 ? w->t[w->current].name : "?", w->cur_written,
                  w->current >= 0 ? w->t[w->current].bytes : 0);
        return -1;
    }
    w->current = -1;
    w->next++;
    return pad(w);
}

int gguf_write_tensor(gguf_writer *w, int index, const void *p, size_t n)
{
    return gguf_write_open(w, index) || gguf_write_bytes(w, p, n) || gguf_write_close(w) ? -1 : 0;
}

int gguf_write_end(gguf_writer *w, size_t *file_bytes)
{
    if (!w->begun || w->current >= 0 || w->next != w->n_t || w->failed) {
        llama_err("GGUF writer: %zu of %zu tensors written", w->next, w->n_t);
        return -1;
    }
    if (fflush(w->f) != 0) {
        llama_err("%s: write failed: %s", w->path, strerror(errno));
        return -1;
    }
    if (file_bytes)
        *file_bytes = w->file_bytes;
    return 0;
}
