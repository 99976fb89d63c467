/*
 * GPTQ and AWQ checkpoint tensors (docs/FORMATS.md) seen from the model
 * files: the size of each part, and the reordering of output columns that
 * Hugging Face's rotary order asks of wq and wk. A GPTQ qweight keeps each
 * output column in its own int32 column, qzeros packs bits-wide zero points
 * along the output dimension as one bit stream per row; AWQ packs eight
 * output columns per int32, in the order 0 2 4 6 1 3 5 7; scales are fp16
 * [G][N] in both. Reordering output rows of W is exact for any groups, since
 * groups run along the input dimension.
 */
#include <string.h>

#include "llama.h"

void hf_rotary_from(size_t rows, int heads, int to_hf, size_t *from)
{
    size_t hs = rows / (size_t)heads, half = hs / 2, r;
    for (r = 0; r < rows; r++) {
        size_t h = r / hs, within = r % hs;
        from[r] = to_hf ? h * hs + 2 * (within % half) + within / half      /* HF row <- model row */
                        : h * hs + (within % 2) * half + within / 2;        /* model row <- HF row */
    }
}

int hfq_groups(int layout, size_t k, int group, size_t *groups)
{
    if (group <= 0) {
        *groups = 1;
        return 0;
    }
    if (layout == QLIB_LAYOUT_AWQ_GEMM && k % (size_t)group != 0)
        return -1;
    *groups = (k + (size_t)group - 1) / (size_t)group;
    return 0;
}

int hfq_part_sizes(int layout, size_t n, size_t k, int bits, int group, size_t bytes[4])
{
    size_t g, b = (size_t)bits;
    memset(bytes, 0, 4 * sizeof(size_t));
    if (hfq_groups(layout, k, group, &g) != 0 || n > (1u << 30) || k > (1u << 30) || g > k)
        return -1;
    if (layout == QLIB_LAYOUT_GPTQ) {
        if ((k * b) % 32 != 0 || (n * b) % 32 != 0)
            return -1;
        bytes[0] = k * b / 32 * n * 4;
        bytes[1] = g * (n * b / 32) * 4;
        bytes[2] = g * n * 2;
        bytes[3] = k * 4;
        return 0;
    }
    if (layout == QLIB_LAYOUT_AWQ_GEMM && bits == 4 && n % 8 == 0) {
        bytes[0] = k * (n / 8) * 4;
        bytes[1] = g * (n / 8) * 4;
        bytes[2] = g * n * 2;
        return 0;
    }
    return -1;
}

/* A bits-wide field at bit offset off of a little-endian bit stream. */
static unsigned get_field(const unsigned char *p, size_t off, int bits)
{
    unsigned v = 0;
    int i;
    for (i = 0; i < bits; i++, off++)
        v |= (unsigned)((p[off / 8] >> (off % 8)) & 1u) << i;
    return v;
}

static void set_field(unsigned char *p, size_t off, int bits, unsigned v)
{
    int i;
    for (i = 0; i < bits; i++, off++) {
        unsigned char m = (unsigned char)(1u << (off % 8));
        p[off / 8] = (unsigned char)((v >> i) & 1u ? p[off / 8] | m : p[off / 8] & ~m);
    }
}

/* Column c of an AWQ row sits in word c / 8 at nibble AWQ_SLOT[c % 8]. */
static const unsigned AWQ_SLOT[8] = { 0, 4, 1, 5, 2, 6, 3, 7 };

static size_t awq_off(size_t c)
{
    return (c / 8) * 32 + 4 * AWQ_SLOT[c % 8];
}

/* rows x n elements of size bytes each: dst column c = src column from[c] */
static void permute_plain(const unsigned char *src, unsigned char *dst, size_t rows, size_t n,
                          size_t size, const size_t *from)
{
    size_t r, c;
    for (r = 0; r < rows; r++)
        for (c = 0; c < n; c++)
            memcpy(dst + (r * n + c) * size, src + (r * n + from[c]) * size, size);
}

void hfq_permute(int layout, size_t n, size_t k, int bits, size_t groups, const size_t *from,
                 const void *const src[4], void *const dst[4])
{
    const unsigned char *const *s = (const unsigned char *const *)src;
    unsigned char *const *d = (unsigned char *const *)dst;
    size_t r, c, row_bytes;
    if (layout == QLIB_LAYOUT_GPTQ) {
        row_bytes = n * (size_t)bits / 8;                 /* one qzeros row */
        permute_plain(s[0], d[0], k * (size_t)bits / 32, n, 4, from);
        for (r = 0; r < groups; r++)
            for (c = 0; c < n; c++)
                set_field(d[1] + r * row_bytes, c * (size_t)bits, bits,
                          get_field(s[1] + r * row_bytes, from[c] * (size_t)bits, bits));
        permute_plain(s[2], d[2], groups, n, 2, from);
        memcpy(d[3], s[3], k * 4);
        return;
    }
    row_bytes = n / 2;                                    /* AWQ: 4 bits per column */
    for (r = 0; r < k; r++)
        for (c = 0; c < n; c++)
            set_field(d[0] + r * row_bytes, awq_off(c), 4, get_field(s[0] + r * row_bytes, awq_off(from[c]), 4));
    for (r = 0; r < groups; r++)
        for (c = 0; c < n; c++)
            set_field(d[1] + r * row_bytes, awq_off(c), 4, get_field(s[1] + r * row_bytes, awq_off(from[c]), 4));
    permute_plain(s[2], d[2], groups, n, 2, from);
}
