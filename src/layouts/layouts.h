/* The external tensor layouts (docs/FORMATS.md): one codec per layout, each
 * turning a tensor's sections into the layout's parts and back, exactly.
 * Codecs only: no file I/O. layout.c holds the public entry points and the
 * checks every layout shares; ggml.c, gptq.c and awq.c the codecs. */
#ifndef QLIB_LAYOUTS_H
#define QLIB_LAYOUTS_H

#include "../core/codes.h"

#define LT_PARTS QLIB_LAYOUT_MAX_PARTS

/* An import request after the shared checks: sizes valid (n, k <= INT32_MAX),
 * group_size -1, 0 or a positive multiple of 32. */
typedef struct lt_import {
    qlib_ctx *ctx;
    size_t n, k;
    int bits;
    int group_size;                 /* as the caller passed it */
    size_t groups;                  /* the layout's groups per output column */
    const uint8_t *part[LT_PARTS];
    size_t bytes[LT_PARTS];
    const char *fn;
} lt_import;

typedef struct lt_codec {
    const char *name;
    unsigned n_parts;
    const char *part_name[LT_PARTS];
    /* ERR_UNSUPPORTED with the reason when t (quantized, no input scales, no
     * outlier decomposition: checked before) cannot be written exactly;
     * else the bytes of each part. */
    qlib_status (*export_size)(const qlib_tensor *t, size_t bytes[LT_PARTS], const char *fn);
    /* Writes the parts, each as large as export_size said. ERR_NOMEM only. */
    qlib_status (*export_parts)(const qlib_tensor *t, uint8_t *const part[LT_PARTS],
                                const char *fn);
    /* The bytes each part must have for a's shape; ERR_ARG or
     * ERR_UNSUPPORTED when bits, group size or shape do not fit the layout. */
    qlib_status (*import_size)(const lt_import *a, size_t bytes[LT_PARTS]);
    /* The tensor from parts of the sizes import_size gave: every content
     * check, then the tensor. */
    qlib_status (*import_parts)(const lt_import *a, qlib_tensor **out);
} lt_codec;

QLIB_HIDDEN extern const lt_codec qlib_layout_q4_0, qlib_layout_q8_0, qlib_layout_gptq,
    qlib_layout_awq_gemm;

/* ---- little-endian words in unaligned parts ---- */
static inline uint16_t lt_get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t lt_get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t lt_get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void lt_put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void lt_put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void lt_put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static inline int lt_f16_finite(uint16_t h) { return (h & 0x7c00u) != 0x7c00u; }

/* Eight 4-bit values, one in the low nibble of each byte of v (high nibbles
 * zero), as one 32-bit word with byte i's value in bits 4i..4i+3; and back. */
static inline uint32_t lt_nibbles_compress(uint64_t v)
{
    v = (v | (v >> 4)) & 0x00ff00ff00ff00ffull;
    v = (v | (v >> 8)) & 0x0000ffff0000ffffull;
    return (uint32_t)(v | (v >> 16));
}
static inline uint64_t lt_nibbles_expand(uint32_t w)
{
    uint64_t v = w;
    v = (v | (v << 16)) & 0x0000ffff0000ffffull;
    v = (v | (v << 8)) & 0x00ff00ff00ff00ffull;
    return (v | (v << 4)) & 0x0f0f0f0f0f0f0f0full;
}

/* count values of `bits` bits (count * bits a multiple of 32) as a
 * little-endian bit stream of 32-bit words (value i at bits i*bits ...),
 * word w at out + w * stride bytes; and back. */
QLIB_HIDDEN void lt_stream_pack(const uint8_t *v, size_t count, int bits, uint8_t *out,
                                size_t stride);
QLIB_HIDDEN void lt_stream_unpack(const uint8_t *in, size_t stride, size_t count, int bits,
                                  uint8_t *v);

/* A created tensor for an import: method, shape, bits, qlib group size,
 * symmetry and permutation as given. */
QLIB_HIDDEN qlib_status lt_tensor_new(const lt_import *a, qlib_method method, int group_size,
                                      int symmetric, int has_perm, qlib_tensor **out);

/* Index of the first non-finite fp16 among count at p (stride 2), or count. */
QLIB_HIDDEN size_t lt_first_nonfinite_f16(const uint8_t *p, size_t count);

/* task(arg, slot, r0, r1) over the rows [0, n) in tiles of `tile` rows,
 * spread over the context's threads; slot < ctx->n_threads tells a task
 * which part of scratch memory allocated beforehand is its own. */
QLIB_HIDDEN void lt_rows_parallel(qlib_ctx *ctx, size_t n, size_t tile,
                                  void (*task)(void *arg, size_t slot, size_t r0, size_t r1),
                                  void *arg);

/* Codes past k of a stored row take the row's last zero point, so that the
 * padding dequantizes to 0 (as quantizing does). */
static inline void lt_pad_codes(uint8_t *codes, size_t k, size_t kp, unsigned zero)
{
    if (kp > k) memset(codes + k, (int)zero, kp - k);
}

#endif
