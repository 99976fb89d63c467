"""Exceptions: one class per qlib_status, each also a built-in exception a
Python caller would expect for that kind of failure."""

from ._enums import Status
from . import _lib


class QlibError(Exception):
    """A qlib function returned a status other than QLIB_OK.

    ``status`` is the :class:`Status`, ``message`` the detail from
    ``qlib_last_error()`` (e.g. "qlib_matmul: x has k=4095 columns, tensor
    expects 4096"), ``function`` the C function that failed.
    """

    status = None

    def __init__(self, status, message, function=None):
        self.status = Status(status) if status in Status._value2member_map_ else status
        self.message = message
        self.function = function
        name = self.status.name if isinstance(self.status, Status) else str(self.status)
        super().__init__("%s%s" % ("" if not name else "[%s] " % name, message))

    def __reduce__(self):
        return (type(self), (int(self.status), self.message, self.function))


class ArgError(QlibError, ValueError):
    """QLIB_ERR_ARG: NULL pointer, zero or overflowing size, bad option value."""


class ShapeError(QlibError, ValueError):
    """QLIB_ERR_SHAPE: operand dimensions do not agree."""


class NoMemError(QlibError, MemoryError):
    """QLIB_ERR_NOMEM: the allocator returned NULL."""


class UnsupportedError(QlibError, NotImplementedError):
    """QLIB_ERR_UNSUPPORTED: this build, CPU or method cannot serve the request."""


class NumericError(QlibError, ArithmeticError):
    """QLIB_ERR_NUMERIC: NaN/Inf in an input, or a Hessian not positive definite."""


class StateError(QlibError, RuntimeError):
    """QLIB_ERR_STATE: a calibration that saw no tokens or lacks what is needed."""


class QlibIOError(QlibError, OSError):
    """QLIB_ERR_IO: open/read/write/rename failed."""


class FormatError(QlibError, ValueError):
    """QLIB_ERR_FORMAT: serialized data corrupt, truncated or of an unknown version."""


class CancelledError(QlibError):
    """QLIB_ERR_CANCELLED: the progress callback asked to stop; nothing was made."""


ERROR_CLASSES = {
    Status.ERR_ARG: ArgError,
    Status.ERR_SHAPE: ShapeError,
    Status.ERR_NOMEM: NoMemError,
    Status.ERR_UNSUPPORTED: UnsupportedError,
    Status.ERR_NUMERIC: NumericError,
    Status.ERR_STATE: StateError,
    Status.ERR_IO: QlibIOError,
    Status.ERR_FORMAT: FormatError,
    Status.ERR_CANCELLED: CancelledError,
}


def error_for(status, function=None, message=None):
    """The exception for a failed call; reads qlib_last_error() unless message
    is given. Must run on the thread that made the call, right after it."""
    if message is None:
        raw = _lib.lib().qlib_last_error()
        message = raw.decode("utf-8", "replace") if raw else ""
        if not message:
            message = status_string(status)
    cls = ERROR_CLASSES.get(status, QlibError)
    return cls(status, message, function)


def check(status, function=None):
    """Raises the matching QlibError when status is not QLIB_OK."""
    if status != 0:
        raise error_for(status, function)


def status_string(status):
    """qlib_status_string(): a static English name for a status."""
    from ._context import c_int_arg
    return _lib.lib().qlib_status_string(c_int_arg(status, "status")).decode("utf-8", "replace")


def last_error():
    """qlib_last_error(): the detail of the last failure on this thread."""
    raw = _lib.lib().qlib_last_error()
    return raw.decode("utf-8", "replace") if raw else ""
