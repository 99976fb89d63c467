/*
 * safetensors files: a little-endian uint64 header length N, N bytes of JSON
 * ({"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]},
 * ..., "__metadata__": {string: string}}), then the data, each tensor's bytes
 * at [begin, end) from the end of the header. The JSON is parsed by jansson;
 * every tensor's size must equal its shape times its element size and lie in
 * the file.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "llama.h"

#define MAX_HEADER (256u << 20)   /* far above any real header */
#define MAX_DIMS 8

static int st_dtype(const char *s, int *dtype, size_t *elem)
{
    static const struct { const char *name; int dtype; size_t bytes; } T[] = {
        { "F32", DT_F32, 4 }, { "F16", DT_F16, 2 }, { "BF16", DT_BF16, 2 }, { "I32", ST_I32, 4 },
        { "F64", -1, 8 }, { "I64", -1, 8 }, { "U64", -1, 8 }, { "U32", -1, 4 }, { "I16", -1, 2 },
        { "U16", -1, 2 }, { "I8", -1, 1 }, { "U8", -1, 1 }, { "BOOL", -1, 1 },
        { "F8_E4M3", -1, 1 }, { "F8_E5M2", -1, 1 },
    };
    size_t i;
    for (i = 0; i < sizeof(T) / sizeof(T[0]); i++)
        if (!strcmp(s, T[i].name)) {
            *dtype = T[i].dtype;
            *elem = T[i].bytes;
            return 0;
        }
    return -1;
}

static int parse_entry(const char *path, const char *name, json_t *v, size_t data_len,
                       const unsigned char *data, st_tensor *t)
{
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape");
    json_t *offs = json_object_get(v, "data_offsets");
    size_t elem, n = 1, i, begin, end;
    json_int_t b, e;
    if (!json_is_object(v) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs)
        || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0))
        || !json_is_integer(json_array_get(offs, 1))) {
        llama_err("%s: tensor '%s' lacks dtype, shape or data_offsets", path, name);
        return -1;
    }
    if (strlen(json_string_value(dt)) >= sizeof(t->dtype_name)
        || st_dtype(json_string_value(dt), &t->dtype, &elem) != 0) {
        llama_err("%s: tensor '%s' has unknown dtype '%s'", path, name, json_string_value(dt));
        return -1;
    }
    strcpy(t->dtype_name, json_string_value(dt));
    if (json_array_size(shape) > MAX_DIMS) {
        llama_err("%s: tensor '%s' has %zu dimensions", path, name, json_array_size(shape));
        return -1;
    }
    t->n_dims = (int)json_array_size(shape);
    for (i = 0; i < (size_t)t->n_dims; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0
            || (unsigned long long)json_integer_value(d) > SIZE_MAX
            || size_mul(n, (size_t)json_integer_value(d), &n)) {
            llama_err("%s: tensor '%s' has a bad shape", path, name);
            return -1;
        }
        t->shape[i] = (uint64_t)json_integer_value(d);
    }
    b = json_integer_value(json_array_get(offs, 0));
    e = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || e < b || (unsigned long long)e > data_len) {
        llama_err("%s: tensor '%s' data_offsets [%lld, %lld] are outside the %zu data bytes", path,
                  name, (long long)b, (long long)e, data_len);
        return -1;
    }
    begin = (size_t)b;
    end = (size_t)e;
    if (size_mul(n, elem, &n) || n != end - begin) {
        llama_err("%s: tensor '%s' holds %zu bytes, its shape and dtype need %zu", path, name,
                  end - begin, n);
        return -1;
    }
    t->data = data + begin;
    t->bytes = end - begin;
    t->name = xcalloc(strlen(name) + 1, 1, "tensor name");
    if (!t->name)
        return -1;
    strcpy(t->name, name);
    return 0;
}

static int parse_header(const char *path, json_t *root, const unsigned char *data, size_t data_len,
                        st_file *s)
{
    const char *name;
    json_t *v;
    size_t n = 0;
    if (!json_is_object(root)) {
        llama_err("%s: the safetensors header is not a JSON object", path);
        return -1;
    }
    s->tensors = xcalloc(json_object_size(root), sizeof(st_tensor), "safetensors");
    if (!s->tensors)
        return -1;
    json_object_foreach(root, name, v) {
        if (!strcmp(name, "__metadata__")) {
            if (!json_is_object(v)) {
                llama_err("%s: __metadata__ is not an object", path);
                return -1;
            }
            continue;
        }
        if (parse_entry(path, name, v, data_len, data, &s->tensors[n]) != 0)
            return -1;
        s->n_tensors = ++n;
    }
    return 0;
}

static void free_tensors(st_file *s)
{
    size_t i;
    for (i = 0; s->tensors && i < s->n_tensors; i++)
        free(s->tensors[i].name);
    free(s->tensors);
    s->tensors = NULL;
    s->n_tensors = 0;
}

int st_parse(const char *path, const mapped_file *f, st_file *s)
{
    uint64_t hlen;
    json_t *root;
    json_error_t err;
    int rc;
    memset(s, 0, sizeof(*s));
    s->file = *f;
    if (f->size < 8) {
        llama_err("%s: too short for a safetensors file", path);
        return -1;
    }
    hlen = get_u64le(f->data);
    if (hlen < 2 || hlen > MAX_HEADER || hlen > f->size - 8) {
        llama_err("%s: safetensors header of %llu bytes (file %zu bytes)", path,
                  (unsigned long long)hlen, f->size);
        return -1;
    }
    if (!host_is_little_endian()) {
        llama_err("%s: safetensors data is little-endian; this host is not", path);
        return -1;
    }
    root = json_loadb((const char *)f->data + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        llama_err("%s: safetensors header: %s (line %d)", path, err.text, err.line);
        return -1;
    }
    rc = parse_header(path, root, f->data + 8 + hlen, f->size - 8 - (size_t)hlen, s);
    json_decref(root);
    if (rc != 0) {
        free_tensors(s);     /* the mapping is the caller's */
        memset(s, 0, sizeof(*s));
    }
    return rc;
}

int st_open(const char *path, st_file *s)
{
    mapped_file f;
    memset(s, 0, sizeof(*s));
    if (map_file(path, &f) != 0)
        return -1;
    if (st_parse(path, &f, s) != 0) {
        unmap_file(&f);
        return -1;
    }
    return 0;
}

void st_free(st_file *s)
{
    free_tensors(s);
    unmap_file(&s->file);
    memset(s, 0, sizeof(*s));
}

const st_tensor *st_find(const st_file *s, const char *name)
{
    size_t i;
    for (i = 0; i < s->n_tensors; i++)
        if (!strcmp(s->tensors[i].name, name))
            return &s->tensors[i];
    return NULL;
}

/* ================================================================ writer */
typedef struct st_wtensor {
    char *name;
    int dtype, n_dims;
    uint64_t shape[MAX_DIMS];
    size_t bytes, offset;
} st_wtensor;

struct st_writer {
    FILE *f;
    FILE *spool;            /* spooled: the data, until st_write_end writes the header */
    const char *path;
    st_wtensor *t;
    size_t n_t, cap_t, data_bytes;
    json_t *meta;
    int begun, current;
    size_t next, cur_written, file_bytes;
};

st_writer *st_writer_create(FILE *f, const char *path)
{
    st_writer *w = xcalloc(1, sizeof(*w), "safetensors writer");
    if (!w)
        return NULL;
    w->f = f;
    w->path = path;
    w->current = -1;
    w->meta = json_object();
    if (!w->meta) {
        free(w);
        return NULL;
    }
    return w;
}

st_writer *st_writer_create_spooled(FILE *f, FILE *spool, const char *path)
{
    st_writer *w = st_writer_create(f, path);
    if (w) {
        w->spool = spool;
        w->begun = 1;
    }
    return w;
}

void st_writer_free(st_writer *w)
{
    size_t i;
    if (!w)
        return;
    for (i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->t);
    json_decref(w->meta);
    free(w);
}

int st_add_metadata(st_writer *w, const char *key, const char *value)
{
    return json_object_set_new(w->meta, key, json_string(value)) == 0 ? 0 : -1;
}

int st_add_tensor(st_writer *w, const char *name, int dtype, int n_dims, const uint64_t *shape)
{
    st_wtensor *t;
    size_t n = 1, be, bb;
    int i;
    if ((w->begun && (!w->spool || w->current >= 0)) || n_dims < 1 || n_dims > MAX_DIMS
        || dtype_block(dtype, &be, &bb) || be != 1) {
        llama_err("safetensors writer: bad tensor %s", name);
        return -1;
    }
    for (i = 0; i < n_dims; i++)
        if (shape[i] > SIZE_MAX || size_mul(n, (size_t)shape[i], &n))
            return -1;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        st_wtensor *q = realloc(w->t, cap * sizeof(*q));
        if (!q)
            return -1;
        w->t = q;
        w->cap_t = cap;
    }
    t = &w->t[w->n_t];
    memset(t, 0, sizeof(*t));
    t->name = xcalloc(strlen(name) + 1, 1, "tensor name");
    if (!t->name)
        return -1;
    strcpy(t->name, name);
    t->dtype = dtype;
    t->n_dims = n_dims;
    memcpy(t->shape, shape, (size_t)n_dims * sizeof(uint64_t));
    t->bytes = n * bb;
    t->offset = w->data_bytes;
    w->data_bytes += t->bytes;
    return (int)w->n_t++;
}

static int put(st_writer *w, const void *p, size_t n)
{
    FILE *to = w->spool && w->current >= 0 ? w->spool : w->f;
    if (n && fwrite(p, 1, n, to) != n) {
        llama_err("%s: write failed: %s", w->path, strerror(errno));
        return -1;
    }
    if (to == w->f)
        w->file_bytes += n;
    return 0;
}

static json_t *header_json(const st_writer *w)
{
    json_t *root = json_object();
    size_t i;
    int d;
    if (!root)
        return NULL;
    if (json_object_size(w->meta) && json_object_set(root, "__metadata__", w->meta)) {
        json_decref(root);
        return NULL;
    }
    for (i = 0; i < w->n_t; i++) {
        const st_wtensor *t = &w->t[i];
        json_t *shape = json_array(), *e = json_object();
        for (d = 0; shape && d < t->n_dims; d++)
            json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
        if (!shape || !e || json_object_set_new(e, "dtype", json_string(dtype_name(t->dtype)))
            || json_object_set_new(e, "shape", shape)
            || json_object_set_new(e, "data_offsets",
                                   json_pack("[II]", (json_int_t)t->offset,
                                             (json_int_t)(t->offset + t->bytes)))
            || json_object_set_new(root, t->name, e)) {
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

static int write_header(st_writer *w)
{
    json_t *root = header_json(w);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    unsigned char len[8];
    size_t n, padded;
    int rc;
    json_decref(root);
    if (!text) {
        llama_err("%s: cannot build the safetensors header", w->path);
        return -1;
    }
    n = strlen(text);
    padded = n + (8 - n % 8) % 8;   /* the data starts 8-byte aligned */
    put_u64le(len, padded);
    rc = put(w, len, 8) || put(w, text, n) || put(w, "        ", padded - n) ? -1 : 0;
    free(text);
    w->begun = 1;
    return rc;
}

int st_write_begin(st_writer *w)
{
    return w->spool ? 0 : write_header(w);
}

/* The header, then the spooled data copied after it. */
static int unspool(st_writer *w)
{
    char buf[1 << 16];
    size_t n;
    if (write_header(w) || fflush(w->spool) != 0 || fseek(w->spool, 0, SEEK_SET) != 0) {
        llama_err("%s: cannot write the safetensors file", w->path);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof(buf), w->spool)) > 0)
        if (put(w, buf, n))
            return -1;
    if (ferror(w->spool)) {
        llama_err("%s: cannot read back the spooled data: %s", w->path, strerror(errno));
        return -1;
    }
    return 0;
}

int st_write_open(st_writer *w, int index)
{
    if (!w->begun || w->current >= 0 || index < 0 || (size_t)index != w->next) {
        llama_err("safetensors writer: tensor %d written out of order", index);
        return -1;
    }
    w->current = index;
    w->cur_written = 0;
    return 0;
}

int st_write_bytes(st_writer *w, const void *p, size_t n)
{
    if (w->current < 0 || n > w->t[w->current].bytes - w->cur_written) {
        llama_err("safetensors writer: more bytes than the tensor holds");
        return -1;
    }
    w->cur_written += n;
    return put(w, p, n);
}

int st_write_close(st_writer *w)
{
    if (w->current < 0 || w->cur_written != w->t[w->current].bytes) {
        llama_err("safetensors writer: tensor %s incomplete", w->current >= 0 ? w->t[w->current].name : "?");
        return -1;
    }
    w->current = -1;
    w->next++;
    return 0;
}

int st_write_end(st_writer *w, size_t *file_bytes)
{
    if (!w->begun || w->current >= 0 || w->next != w->n_t) {
        llama_err("%s: %zu of %zu tensors written", w->path, w->next, w->n_t);
        return -1;
    }
    if ((w->spool && unspool(w)) || fflush(w->f) != 0) {
        llama_err("%s: write failed", w->path);
        return -1;
    }
    if (file_bytes)
        *file_bytes = w->file_bytes;
    return 0;
}
