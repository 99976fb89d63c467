"""qlib: quantize LLM weight matrices and multiply with them on the CPU.

A ctypes binding of libqlib (include/qlib.h); see docs/PYTHON.md.

    import numpy as np, qlib
    calib = qlib.Calibration(k=4096)
    calib.add(activations)                        # (tokens, 4096) float32
    t = qlib.quantize(w)                          # RTN INT4, groups of 128
    t = qlib.quantize(w, "gptq", bits=4, group_size=128, calib=calib)
    t = qlib.quantize(w, "gptq", calib=calib, progress=lambda stage, f: print(stage, f))
    y = x @ t                                     # x · Ŵᵀ, like nn.Linear
    t.save("layer.qt");  t2 = qlib.load("layer.qt")

Every C enum constant is also a module constant named as in C without the
QLIB_ prefix (qlib.ERR_ARG, qlib.METHOD_GPTQ, qlib.PARAM_BITS,
qlib.CALIB_HESSIAN, qlib.LOAD_BORROW, ...).
"""

from . import _lib
from ._lib import LibraryNotFoundError
from ._enums import (Calib, Compute, LAYOUT_MAX_PARTS, Layout, Load, Method, Param, Status,
                     c_constants as _c_constants)
from ._errors import (ArgError, CancelledError, FormatError, NoMemError, NumericError, QlibError, QlibIOError,
                      ShapeError, StateError, UnsupportedError, last_error, status_string)
from ._alloc import Allocator, CountingAllocator
from ._context import Context, c_int_arg as _c_int_arg, default_context
from ._config import Config, method_defaults
from ._calib import ActStats, Calibration
from ._tensor import Tensor, from_bytes, load, quantize, quantize_shared
from ._layouts import import_tensor

__version__ = _lib.HEADER_VERSION_STRING

globals().update(_c_constants())

#: The header version this binding mirrors.
HEADER_VERSION = _lib.HEADER_VERSION_STRING


def version():
    """The version string of the loaded library (e.g. "0.2.0")."""
    return _lib.lib().qlib_version_string().decode()


def version_number():
    """The loaded library's version as major*10000 + minor*100 + patch."""
    return _lib.lib().qlib_version_number()


def method_name(method):
    """qlib_method_name(): "none", "rtn", "gptq", "awq", "llm-int8"; "unknown"."""
    return _lib.lib().qlib_method_name(_c_int_arg(method, "method")).decode()


def library_path():
    """The file the shared library was loaded from (loads it if needed)."""
    return _lib.path()


__all__ = [
    "ActStats", "Allocator", "ArgError", "CancelledError", "Calib", "Calibration", "Compute", "Config", "Context",
    "CountingAllocator", "FormatError", "HEADER_VERSION", "LAYOUT_MAX_PARTS", "Layout",
    "LibraryNotFoundError", "Load", "import_tensor",
    "Method", "NoMemError", "NumericError", "Param", "QlibError", "QlibIOError", "ShapeError",
    "StateError", "Status", "Tensor", "UnsupportedError", "default_context", "from_bytes",
    "last_error", "library_path", "load", "method_defaults", "quantize", "quantize_shared",
    "status_string",
    "method_name", "version", "version_number",
]
__all__ += sorted(_c_constants())
