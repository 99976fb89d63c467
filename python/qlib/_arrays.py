"""Turning numpy inputs into what the C functions take: float32 rows with a
leading dimension, converted or copied only when needed."""

import numpy as np

from . import _lib

_F4 = np.dtype(np.float32)
_ITEM = _F4.itemsize


def is_torch_tensor(a):
    """Whether a is a torch.Tensor (or a subclass such as nn.Parameter),
    decided without importing torch."""
    return (type(a).__module__.split(".")[0] == "torch" and callable(getattr(a, "detach", None))
            and callable(getattr(a, "numpy", None)))


def torch_to_numpy(a):
    """A torch tensor's values as a numpy array, through torch's own methods
    (torch is never imported here): detached from autograd, copied to the CPU
    when it lives elsewhere, bfloat16 and float16 widened to float32 (numpy has
    no bfloat16). A CPU float32 tensor is viewed, not copied."""
    t = a.detach()
    device = getattr(t, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        t = t.cpu()
    if str(t.dtype) in ("torch.bfloat16", "torch.float16"):
        t = t.float()
    return t.numpy()


def as_float32(a, name):
    """a as a float32 ndarray (native byte order).

    float32 arrays pass through untouched. Other floating-point dtypes
    (float16, float64, longdouble) are rounded to the nearest float32; a
    finite value beyond the float32 range raises ValueError rather than
    becoming inf. Integers, booleans, complex and objects raise TypeError.
    torch tensors are taken through torch_to_numpy first.
    """
    if is_torch_tensor(a):
        a = torch_to_numpy(a)
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    dt = a.dtype
    if dt == _F4:
        return a
    if dt.kind != "f":
        raise TypeError("%s: expected a floating-point array (float32 preferred), got dtype %s"
                        % (name, dt))
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(_F4)
    if dt.itemsize > _ITEM and not np.isfinite(out).all():
        if (np.isinf(out) & np.isfinite(a)).any():
            raise ValueError("%s: a %s value lies outside the float32 range" % (name, dt))
    return out


def rows_view(a):
    """(array, ld): a 2-D float32 array whose rows are contiguous, and its row
    stride in elements. Copies only when the rows are not contiguous, the
    stride is negative or not a whole number of floats, or the data is
    misaligned."""
    m, k = a.shape
    s0, s1 = a.strides
    ok = a.flags.aligned and (s1 == _ITEM or k <= 1)
    if ok and m > 1:
        ok = s0 > 0 and s0 % _ITEM == 0 and s0 // _ITEM >= k
    if not ok:
        a = np.ascontiguousarray(a)
        s0 = a.strides[0]
    ld = s0 // _ITEM if m > 1 else k
    return a, max(ld, k)


def matrix(a, name, cols=None):
    """(array, rows, cols, ld) for a 2-D float32 input; cols, when given, is
    the required number of columns."""
    a = as_float32(a, name)
    if a.ndim != 2:
        raise ValueError("%s: expected a 2-D array, got %d dimension(s) of shape %s"
                         % (name, a.ndim, a.shape))
    if cols is not None and a.shape[1] != cols:
        from ._errors import ShapeError
        raise ShapeError(2, "%s has %d columns, expected %d" % (name, a.shape[1], cols))
    a, ld = rows_view(a)
    return a, a.shape[0], a.shape[1], ld


def token_rows(a, name, cols):
    """(array2d, lead_shape) for an input of shape (..., cols): 1-D is one
    row; more dimensions are flattened into rows."""
    a = as_float32(a, name)
    if a.ndim == 0:
        raise ValueError("%s: expected an array of shape (..., %d), got a scalar" % (name, cols))
    if a.shape[-1] != cols:
        from ._errors import ShapeError
        raise ShapeError(2, "%s has %d features in its last dimension, expected %d"
                         % (name, a.shape[-1], cols))
    lead = a.shape[:-1]
    if a.ndim != 2:
        a = a.reshape(-1, cols)     # a view when possible
    return a, lead


def output(out, lead, cols, name="out"):
    """(result, rows2d, ld): where to write an output of shape lead + (cols,).
    result is a new array, or the caller's out (float32, that shape,
    contiguous aligned rows, writable); rows2d is a 2-D view of it."""
    shape = tuple(lead) + (cols,)
    rows = 1
    for d in lead:
        rows *= d
    if out is None:
        res = np.empty(shape, dtype=_F4)
        return res, res.reshape(rows, cols), cols
    if not isinstance(out, np.ndarray):
        raise TypeError("%s must be a numpy.ndarray" % name)
    if out.dtype != _F4:
        raise TypeError("%s must have dtype float32 (native byte order), got %s"
                        % (name, out.dtype))
    if out.shape != shape:
        raise ValueError("%s has shape %s, expected %s" % (name, out.shape, shape))
    if not out.flags.writeable:
        raise ValueError("%s is read-only" % name)
    y = out.view()
    try:
        y.shape = (rows, cols)
    except AttributeError:
        raise ValueError("%s cannot be viewed as %d rows of %d floats without a copy"
                         % (name, rows, cols)) from None
    s0, s1 = y.strides
    if not y.flags.aligned or (s1 != _ITEM and cols > 1) or \
            (rows > 1 and (s0 <= 0 or s0 % _ITEM or s0 // _ITEM < cols)):
        raise ValueError("%s must have contiguous, aligned rows (a row stride of at least "
                         "%d floats)" % (name, cols))
    ld = s0 // _ITEM if rows > 1 else cols
    return out, y, max(ld, cols)


def fptr(a):
    """A float* to a's first element."""
    return a.ctypes.data_as(_lib.float_p)


def bytes_view(buf, name="buffer"):
    """A read-only uint8 view of any object with the buffer protocol."""
    try:
        return np.frombuffer(buf, dtype=np.uint8)
    except (TypeError, ValueError) as e:
        raise TypeError("%s must be a contiguous bytes-like object (%s)" % (name, e)) from None


def aligned_copy(view, alignment=64):
    """A copy of a uint8 array whose first byte is alignment-aligned."""
    n = view.size
    raw = np.empty(n + alignment, dtype=np.uint8)
    off = (-raw.ctypes.data) % alignment
    out = raw[off:off + n]
    out[...] = view
    return out
