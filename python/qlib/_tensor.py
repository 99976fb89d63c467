"""qlib.Tensor and the functions that make one: quantize, load, from_bytes."""

import ctypes
import mmap as _mmap
import os

import numpy as np

from . import _arrays, _lib, _progress
from ._calib import Calibration
from ._config import OPTIONS, Config, as_method
from ._context import _Handle, resolve
from ._enums import Load, Method, Status
from ._errors import FormatError, UnsupportedError, check

class Tensor(_Handle):
    """A quantized weight matrix (qlib_tensor): immutable, shareable between
    threads and contexts. Made by :func:`quantize`, :func:`load` or
    :func:`from_bytes`.

    ``t.matmul(x)`` and ``x @ t`` compute x · Ŵᵀ like ``torch.nn.Linear``
    without bias: x of shape (K,), (M, K) or (..., K) gives (N,), (M, N) or
    (..., N).
    """

    _kind = "Tensor"
    __array_ufunc__ = None        # lets `ndarray @ Tensor` reach __rmatmul__
    __hash__ = object.__hash__

    def __init__(self, *args, **kwargs):
        raise TypeError("qlib.Tensor is made by qlib.quantize, qlib.load, qlib.from_bytes or "
                        "qlib.import_tensor")

    @classmethod
    def _wrap(cls, ptr, *keepalive):
        t = cls.__new__(cls)
        L = _lib.lib()
        t._own(ptr, L.qlib_tensor_destroy, *keepalive)
        t._shape = (L.qlib_tensor_rows(ptr), L.qlib_tensor_cols(ptr))
        t._keep = keepalive
        return t

    # -------------------------------------------------------------- metadata
    @property
    def shape(self):
        """(N, K): output features, input features."""
        self._handle()
        return self._shape

    @property
    def method(self):
        return Method(_lib.lib().qlib_tensor_method(self._handle()))

    @property
    def bits(self):
        return _lib.lib().qlib_tensor_bits(self._handle())

    @property
    def group_size(self):
        """As configured: a multiple of 32, 0 (one group per row) or -1 (one
        for the whole tensor)."""
        return _lib.lib().qlib_tensor_group_size(self._handle())

    @property
    def symmetric(self):
        return bool(_lib.lib().qlib_tensor_symmetric(self._handle()))

    @property
    def nbytes(self):
        """Bytes of codes, scales, zeros, permutation and input scales."""
        return _lib.lib().qlib_tensor_storage_bytes(self._handle())

    @property
    def bits_per_weight(self):
        return _lib.lib().qlib_tensor_bits_per_weight(self._handle())

    @property
    def quant_error(self):
        """tr(ΔW H ΔWᵀ)/tr(W H Wᵀ) when quantized with a Hessian, else
        ||ΔW||²/||W||²."""
        return _lib.lib().qlib_tensor_quant_error(self._handle())

    @property
    def input_scales(self):
        """AWQ: a copy of the K floats x is multiplied by; None otherwise."""
        p = _lib.lib().qlib_tensor_input_scales(self._handle())
        if not p:
            return None
        return np.ctypeslib.as_array(p, shape=(self._shape[1],)).copy()

    @property
    def permutation(self):
        """GPTQ act-order: a copy of perm (int32, K), perm[j] being the
        original input column stored at position j; None without one."""
        p = _lib.lib().qlib_tensor_permutation(self._handle())
        if not p:
            return None
        return np.ctypeslib.as_array(p, shape=(self._shape[1],)).copy()

    @property
    def outlier_threshold(self):
        """LLM.int8(): the outlier threshold; 0.0 for other methods."""
        return _lib.lib().qlib_tensor_outlier_threshold(self._handle())

    @property
    def serialized_size(self):
        """Bytes of the blob to_bytes() returns."""
        n = ctypes.c_size_t()
        check(_lib.lib().qlib_tensor_serialized_size(self._handle(), ctypes.byref(n)),
              "qlib_tensor_serialized_size")
        return n.value

    # ------------------------------------------------------------ arithmetic
    def matmul(self, x, out=None, ctx=None):
        """y = x · Ŵᵀ. x: (K,), (M, K) or (..., K), any floating dtype, any
        strides (rows with a stride are used in place). out: an optional
        float32 array of the result's shape with contiguous rows."""
        p = self._handle()
        n, k = self._shape
        x2, lead = _arrays.token_rows(x, "x", k)
        x2, ldx = _arrays.rows_view(x2)
        res, y2, ldy = _arrays.output(out, lead, n)
        m = x2.shape[0]
        if m == 0 or n == 0:
            return res
        if out is not None and np.may_share_memory(x2, y2):
            raise ValueError("out must not overlap x")
        ctx = resolve(ctx)
        c = ctx._enter()
        try:
            st = _lib.lib().qlib_matmul(c, p, _arrays.fptr(x2), m, ldx, _arrays.fptr(y2), ldy)
            ctx._raise_if(st, "qlib_matmul")
        finally:
            ctx._leave()
        return res

    def __rmatmul__(self, x):
        return self.matmul(x)

    def dequantize(self, out=None, ctx=None):
        """The (N, K) float32 effective weights Ŵ in the original input space,
        so that matmul(x) == x @ Ŵ.T up to rounding."""
        p = self._handle()
        n, k = self._shape
        res, y2, ld = _arrays.output(out, (n,), k)
        ctx = resolve(ctx)
        c = ctx._enter()
        try:
            st = _lib.lib().qlib_dequantize(c, p, _arrays.fptr(y2), ld)
            ctx._raise_if(st, "qlib_dequantize")
        finally:
            ctx._leave()
        return res

    # ------------------------------------------------------ external layouts
    def export_size(self, layout):
        """Bytes of each part of this tensor in layout (a :class:`Layout` or a
        name: "gptq", "awq", "q4_0", "q8_0"); UnsupportedError, with the
        reason, when the layout cannot hold it exactly."""
        from . import _layouts
        return _layouts.export_size(self, layout)

    def export(self, layout):
        """The tensor in layout as the arrays a checkpoint stores (see
        docs/FORMATS.md): GGML ``[blocks]``; GPTQ ``[qweight, qzeros,
        scales, g_idx]``; AWQ ``[qweight, qzeros, scales]``. Exact:
        :func:`qlib.import_tensor` of them has this tensor's dequantize."""
        from . import _layouts
        return _layouts.export(self, layout)

    def fold_input_scales(self, ctx=None):
        """(folded, s): a copy without the AWQ input scales, and the float32
        (K,) array s by which the caller now divides x (fold 1/s into the
        RMSNorm or previous layer). ``folded.matmul(x * t.input_scales)``
        equals ``t.matmul(x)`` bit for bit. StateError without input scales."""
        from . import _layouts
        return _layouts.fold_input_scales(self, ctx)

    # --------------------------------------------------------- serialization
    def serialize_into(self, buffer):
        """Writes the blob into a writable buffer (bytearray, memoryview,
        mmap, numpy array); returns the bytes written. ArgError if too small."""
        p = self._handle()
        view = _arrays.bytes_view(buffer)
        if not view.flags.writeable:
            raise TypeError("serialize_into needs a writable buffer")
        written = ctypes.c_size_t()
        check(_lib.lib().qlib_tensor_serialize(p, view.ctypes.data, view.size,
                                               ctypes.byref(written)),
              "qlib_tensor_serialize")
        return written.value

    def to_bytes(self):
        """The serialized tensor (docs/FORMAT.md) as bytes."""
        buf = np.empty(self.serialized_size, dtype=np.uint8)
        n = self.serialize_into(buf)
        return buf[:n].tobytes()

    def save(self, path):
        """Writes the tensor to path atomically (temporary file + rename)."""
        p = self._handle()
        check(_lib.lib().qlib_tensor_save(p, os.fsencode(path)), "qlib_tensor_save")

    def __reduce__(self):
        return (from_bytes, (self.to_bytes(),))

    def __copy__(self):
        return self             # immutable

    def __deepcopy__(self, memo):
        return self

    def __repr__(self):
        if self._ptr is None:
            return "<qlib.Tensor closed>"
        n, k = self._shape
        m = self.method
        if m == Method.NONE:
            fmt = "fp%d" % self.bits
        else:
            g = self.group_size
            fmt = "int%d %s %s" % (self.bits,
                                   "per-tensor" if g == -1 else "per-row" if g == 0 else "g%d" % g,
                                   "sym" if self.symmetric else "asym")
        return "<qlib.Tensor %dx%d %s %s, %.3f bits/weight, %d bytes>" % (
            n, k, m.name.lower(), fmt, self.bits_per_weight, self.nbytes)


# options that also take names: option -> {name: value}
_NAMED_VALUES = {
    "awq_rounding": {"rtn": 0, "gptq": 1},
    "awq_scales": {"act": 0, "duo": 1, "both": 2},
}


def _set_options(cfg, method, options):
    for name, value in options.items():
        if value is None:
            continue
        names = _NAMED_VALUES.get(name)
        if names and isinstance(value, str):
            if value.lower() not in names:
                raise ValueError("%s must be %s (or %s), got %r" % (
                    name, " or ".join('"%s"' % n for n in names),
                    " or ".join(str(v) for v in names.values()), value))
            value = names[value.lower()]
        param = OPTIONS[name]
        try:
            cfg.set(param, value)
        except UnsupportedError as e:
            raise TypeError("quantize(): option %r does not apply to method %r (%s)"
                            % (name, method.name.lower(), e.message)) from e


def _calib_handle(calib):
    if calib is None:
        return None
    if not isinstance(calib, Calibration):
        raise TypeError("calib must be a qlib.Calibration or None, got %s" % type(calib).__name__)
    return calib._handle()


def quantize(w, method="rtn", *, calib=None, ctx=None, progress=None, bits=None,
             group_size=None, symmetric=None, act_order=None, static_groups=None, damp=None,
             block_size=None, grid=None, clip=None, max_shrink=None, outlier_threshold=None,
             clip_grid=None, awq_rounding=None, awq_scales=None):
    """Quantizes w (N x K, like an nn.Linear weight: a numpy array, a torch
    tensor or anything numpy.asarray takes) and returns a Tensor.

    method: "rtn" (the default: it needs no calibration), "gptq", "awq",
    "llm_int8" or "none" (or a :class:`Method`).
    An option left at None keeps the library's default for the method (see
    :func:`qlib.method_defaults`); an option the method does not have raises
    TypeError. calib: a :class:`Calibration` of the layer's inputs, required
    by GPTQ (CALIB_HESSIAN) and AWQ (CALIB_ACT_STATS | CALIB_SAMPLES, and
    CALIB_HESSIAN with awq_rounding="gptq"); RTN reads its statistics, when
    given, to weight the clip_grid search. clip_grid: the clipping search's
    grid (RTN, GPTQ, AWQ; 0 = off); awq_rounding: "rtn" (0) or "gptq" (1);
    awq_scales: the scales AWQ's grid searches, "act" (0, mean|x|^alpha, the
    default), "duo" (1, AutoAWQ's mean|x|^alpha / wbar^(1-alpha)) or "both" (2).

    progress: None or ``progress(stage, fraction)``, called on this thread
    between units of work with a stage name ("hessian", "gptq", "awq-scale",
    "awq-clip", "rtn", "pack", "done", ...) and the fraction done, in [0, 1],
    non-decreasing, ending with ("done", 1.0). Its return value is ignored; an
    exception it raises stops the quantization (nothing is made) and
    propagates from quantize. Ctrl-C (and any exception a signal handler
    raises) stops a quantize on the main thread the same way, at the library's
    next report, with or without progress.
    """
    m = as_method(method)
    _progress.check_progress(progress)
    calib_p = _calib_handle(calib)
    w2, n, k, ldw = _arrays.matrix(w, "w")
    if n == 0 or k == 0:
        raise ValueError("w: expected a non-empty matrix, got shape %s" % (w2.shape,))
    ctx = resolve(ctx)
    options = dict(bits=bits, group_size=group_size, symmetric=symmetric, act_order=act_order,
                   static_groups=static_groups, damp=damp, block_size=block_size, grid=grid,
                   clip=clip, max_shrink=max_shrink, outlier_threshold=outlier_threshold,
                   clip_grid=clip_grid, awq_rounding=awq_rounding, awq_scales=awq_scales)
    with Config(m) as cfg:
        _set_options(cfg, m, options)
        out = _lib.tensor_p()
        return _progress.run(
            ctx, "qlib_quantize",
            (_arrays.fptr(w2), n, k, ldw, cfg._handle(), calib_p, ctypes.byref(out)),
            progress, lambda: Tensor._wrap(out, ctx._keepalive()))


def quantize_shared(ws, config, calib=None, ctx=None, progress=None):
    """Quantizes matrices that read the same input (q/k/v; gate/up) together
    and returns a list of Tensors, one per matrix, in order.

    ws: a sequence of 2-D float32 arrays with the same number of columns K
    (rows may differ). config: a :class:`Config` (or a method name for its
    defaults). AWQ searches one set of input scales on the matrices' joint
    output error, so every tensor gets the same input scales; GPTQ factors
    the Hessian once and gives the tensors :func:`quantize` gives for each
    matrix, bit for bit, as do the other methods. All are made or none (an
    error raises and nothing is kept). progress and Ctrl-C: as in
    :func:`quantize`, once over the whole call.
    """
    _progress.check_progress(progress)
    if isinstance(config, Config):
        cfg, own = config, None
    else:
        cfg = own = Config(config)
    try:
        mats = list(ws)
        if not mats:
            raise ValueError("ws: expected at least one matrix")
        arrays, ns, lds = [], [], []
        k = None
        for i, w in enumerate(mats):
            a, n, kk, ld = _arrays.matrix(w, "ws[%d]" % i, cols=k)
            if n == 0 or kk == 0:
                raise ValueError("ws[%d]: expected a non-empty matrix, got shape %s"
                                 % (i, a.shape))
            k = kk
            arrays.append(a)
            ns.append(n)
            lds.append(ld)
        count = len(arrays)
        calib_p = _calib_handle(calib)
        ptrs = (_lib.float_p * count)(*[_arrays.fptr(a) for a in arrays])
        n_arr = (ctypes.c_size_t * count)(*ns)
        ld_arr = (ctypes.c_size_t * count)(*lds)
        out = (_lib.tensor_p * count)()
        ctx = resolve(ctx)
        return _progress.run(
            ctx, "qlib_quantize_shared",
            (count, ptrs, n_arr, k, ld_arr, cfg._handle(), calib_p, out), progress,
            lambda: [Tensor._wrap(out[i], ctx._keepalive()) for i in range(count)])
    finally:
        if own is not None:
            own.close()


def from_bytes(buffer, borrow=False, ctx=None):
    """A Tensor from a serialized blob (bytes, bytearray, memoryview, mmap,
    numpy array).

    borrow=False copies the blob into memory the tensor owns. borrow=True
    makes the tensor point into the blob (zero-copy) when it starts on a
    64-byte boundary, and into an aligned copy otherwise; either way the
    tensor keeps that memory alive. Do not modify a borrowed writable
    buffer while the tensor lives.
    """
    view = _arrays.bytes_view(buffer)
    flags = 0
    keep = ()
    if borrow:
        flags = int(Load.BORROW)
        if view.ctypes.data % 64:
            view = _arrays.aligned_copy(view)
        keep = (view,)
    ctx = resolve(ctx)
    out = _lib.tensor_p()
    c = ctx._enter()
    try:
        st = _lib.lib().qlib_tensor_deserialize(c, view.ctypes.data, view.size, flags,
                                                ctypes.byref(out))
        ctx._raise_if(st, "qlib_tensor_deserialize")
    finally:
        ctx._leave()
    return Tensor._wrap(out, ctx._keepalive(), *keep)


def load(path, ctx=None, mmap=False):
    """A Tensor read from a file written by Tensor.save. mmap=True maps the
    file read-only and borrows it (zero-copy); the mapping lives as long as
    the tensor."""
    if mmap:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise FormatError(Status.ERR_FORMAT, "%s: empty file" % os.fsdecode(path))
            mm = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
        return from_bytes(mm, borrow=True, ctx=ctx)
    ctx = resolve(ctx)
    out = _lib.tensor_p()
    c = ctx._enter()
    try:
        st = _lib.lib().qlib_tensor_load(c, os.fsencode(path), ctypes.byref(out))
        ctx._raise_if(st, "qlib_tensor_load")
    finally:
        ctx._leave()
    return Tensor._wrap(out, ctx._keepalive())
