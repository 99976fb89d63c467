"""The external layouts (qlib_tensor_export / qlib_tensor_import,
docs/FORMATS.md): a Tensor as the arrays a GGML, GPTQ or AWQ checkpoint
holds, and back; and folding AWQ input scales (qlib_tensor_fold_input_scales).
"""

import ctypes

import numpy as np

from . import _arrays, _lib
from ._context import resolve
from ._enums import LAYOUT_MAX_PARTS, Layout
from ._errors import check

_NAMES = {
    "ggml_q4_0": Layout.GGML_Q4_0, "q4_0": Layout.GGML_Q4_0,
    "ggml_q8_0": Layout.GGML_Q8_0, "q8_0": Layout.GGML_Q8_0,
    "gptq": Layout.GPTQ,
    "awq_gemm": Layout.AWQ_GEMM, "awq": Layout.AWQ_GEMM,
}

# The parts each layout uses, with their names (as checkpoints call them).
PART_NAMES = {
    Layout.GGML_Q4_0: ("blocks",),
    Layout.GGML_Q8_0: ("blocks",),
    Layout.GPTQ: ("qweight", "qzeros", "scales", "g_idx"),
    Layout.AWQ_GEMM: ("qweight", "qzeros", "scales"),
}

_I32 = np.dtype("<i4")
_F16 = np.dtype("<f2")


def as_layout(layout):
    """A Layout from a Layout, its value, or a name ("gptq", "awq_gemm" or
    "awq", "ggml_q4_0" or "q4_0", "ggml_q8_0" or "q8_0"; case-insensitive)."""
    if isinstance(layout, str):
        key = layout.strip().lower().replace("-", "_")
        if key not in _NAMES:
            raise ValueError("unknown layout %r; expected one of %s"
                             % (layout, ", ".join(sorted(_NAMES))))
        return _NAMES[key]
    try:
        return Layout(int(layout))
    except (TypeError, ValueError):
        raise ValueError("unknown layout %r" % (layout,)) from None


def export_size(t, layout):
    """Bytes of each part of t in layout (one per part the layout uses)."""
    lay = as_layout(layout)
    sizes = (ctypes.c_size_t * LAYOUT_MAX_PARTS)()
    check(_lib.lib().qlib_tensor_export_size(t._handle(), int(lay), sizes),
          "qlib_tensor_export_size")
    return [sizes[i] for i in range(len(PART_NAMES[lay]))]


def _empty_parts(lay, n, k, bits, sizes):
    """Arrays of the layout's dtypes and shapes holding exactly sizes bytes."""
    if lay in (Layout.GGML_Q4_0, Layout.GGML_Q8_0):
        return [np.empty((n, sizes[0] // n), dtype=np.uint8)]
    groups = sizes[2] // (2 * n)
    if lay == Layout.GPTQ:
        return [np.empty((k * bits // 32, n), dtype=_I32),
                np.empty((groups, n * bits // 32), dtype=_I32),
                np.empty((groups, n), dtype=_F16),
                np.empty((k,), dtype=_I32)]
    return [np.empty((k, n // 8), dtype=_I32),
            np.empty((groups, n // 8), dtype=_I32),
            np.empty((groups, n), dtype=_F16)]


def export(t, layout):
    """The parts of t in layout as new numpy arrays, shaped as checkpoints
    store them (little-endian):

    - GGML_Q4_0 / GGML_Q8_0: ``[blocks]``, uint8 (N, K/32 * 18 or 34);
    - GPTQ: ``[qweight, qzeros, scales, g_idx]``: int32 (K*bits/32, N), int32
      (G, N*bits/32), float16 (G, N), int32 (K,);
    - AWQ_GEMM: ``[qweight, qzeros, scales]``: int32 (K, N/8), int32 (G, N/8),
      float16 (G, N).

    UnsupportedError (with the reason) when the layout cannot hold t exactly.
    """
    lay = as_layout(layout)
    n, k = t.shape
    sizes = export_size(t, lay)
    arrays = _empty_parts(lay, n, k, t.bits, sizes)
    for a, size in zip(arrays, sizes):
        assert a.nbytes == size, (a.shape, size)
    ptrs = (ctypes.c_void_p * LAYOUT_MAX_PARTS)(*[a.ctypes.data for a in arrays])
    caps = (ctypes.c_size_t * LAYOUT_MAX_PARTS)(*sizes)
    check(_lib.lib().qlib_tensor_export(t._handle(), int(lay), ptrs, caps), "qlib_tensor_export")
    return arrays


def _part_bytes(part, name):
    """A contiguous little-endian uint8 view (or copy) of a part."""
    if isinstance(part, np.ndarray):
        a = part
        if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not np.little_endian):
            a = a.astype(a.dtype.newbyteorder("<"))
        return np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return _arrays.bytes_view(part, name)


def import_tensor(layout, parts, shape, bits=None, group_size=None, ctx=None):
    """A Tensor from the parts of a checkpoint tensor in layout (see
    :func:`export` for the parts; any bytes-like objects or numpy arrays, in
    that order). shape: (N, K) of the weight. bits: the layout's (4 for Q4_0
    and AWQ, 8 for Q8_0; for GPTQ, from the size of qweight when not given).
    group_size: the checkpoint's (-1 or 0 for one group per output column);
    32 by default for GGML, required for GPTQ and AWQ. The parts are copied.
    """
    from ._tensor import Tensor
    lay = as_layout(layout)
    names = PART_NAMES[lay]
    parts = list(parts)
    if len(parts) != len(names):
        raise ValueError("%s takes %d parts (%s), got %d" % (lay.name, len(names),
                                                             ", ".join(names), len(parts)))
    views = [_part_bytes(p, nm) for p, nm in zip(parts, names)]
    n, k = (int(d) for d in shape)
    if n <= 0 or k <= 0:
        raise ValueError("shape must be two positive sizes, got %r" % (shape,))
    if bits is None:
        if lay == Layout.GPTQ:
            if (views[0].size * 8) % (n * k):
                raise ValueError("qweight has %d bytes: not a whole number of bits for %dx%d"
                                 % (views[0].size, n, k))
            bits = views[0].size * 8 // (n * k)
        else:
            bits = 8 if lay == Layout.GGML_Q8_0 else 4
    if group_size is None:
        if lay not in (Layout.GGML_Q4_0, Layout.GGML_Q8_0):
            raise TypeError("import_tensor(%s): group_size is required" % lay.name)
        group_size = 32
    ptrs = (ctypes.c_void_p * LAYOUT_MAX_PARTS)(*[v.ctypes.data for v in views])
    sizes = (ctypes.c_size_t * LAYOUT_MAX_PARTS)(*[v.size for v in views])
    ctx = resolve(ctx)
    out = _lib.tensor_p()
    c = ctx._enter()
    try:
        st = _lib.lib().qlib_tensor_import(c, int(lay), n, k, int(bits), int(group_size), ptrs,
                                           sizes, ctypes.byref(out))
        ctx._raise_if(st, "qlib_tensor_import")
    finally:
        ctx._leave()
    return Tensor._wrap(out, ctx._keepalive())


def fold_input_scales(t, ctx=None):
    """(folded, s): a Tensor without t's input scales, and the float32 array
    s (K,) by which the caller now divides x (fold 1/s into the operation
    that makes x). StateError when t has no input scales."""
    from ._tensor import Tensor
    k = t.shape[1]
    s = np.empty(k, dtype=np.float32)
    ctx = resolve(ctx)
    out = _lib.tensor_p()
    c = ctx._enter()
    try:
        st = _lib.lib().qlib_tensor_fold_input_scales(c, t._handle(), _arrays.fptr(s),
                                                      ctypes.byref(out))
        ctx._raise_if(st, "qlib_tensor_fold_input_scales")
    finally:
        ctx._leave()
    return Tensor._wrap(out, ctx._keepalive()), s
