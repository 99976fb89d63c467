/* Reading a tensor's packed codes back (the inverse of pack.c), and the
 * tensor-level operations built on the section layout that are not part of
 * quantizing: for the external layouts (src/layouts/) and folding. Not
 * installed. */
#ifndef QLIB_CODES_H
#define QLIB_CODES_H

#include "core.h"

/* The kp codes of one packed row (docs/FORMAT.md), one byte each, in stored
 * order: the inverse of qlib_pack_row. */
QLIB_HIDDEN void qlib_unpack_row(int bits, const uint8_t *src, size_t kp, uint8_t *codes);

/* Zero point of scale entry e (r * scale_stride + g) of a tensor's zero
 * stream: 2^(bits-1) for a symmetric tensor. */
static inline unsigned qlib_zero_get(const qk_weights *w, size_t e)
{
    if (w->symmetric) return 1u << (w->bits - 1);
    size_t bit = e * (size_t)w->bits;
    unsigned v = (unsigned)w->zeros[bit >> 3] | ((unsigned)w->zeros[(bit >> 3) + 1] << 8);
    return (v >> (bit & 7)) & ((1u << w->bits) - 1u);
}

#endif
