"""Finding libqlib and declaring the C prototypes of include/qlib.h.

The shared library is looked up, on first use, in this order:

1. the path in the environment variable ``QLIB_LIBRARY`` (an error if it
   cannot be loaded: no silent fall-back to another copy);
2. next to this file: ``qlib/libqlib.so.0``, where ``pip install .`` puts it;
3. the build tree this package sits in: ``<repo>/lib/libqlib.so.0`` for
   ``<repo>/python/qlib``;
4. the system: ``ctypes.util.find_library("qlib")`` (the ldconfig cache and
   ``LD_LIBRARY_PATH``).

Every function of the header is declared here with its ``argtypes`` and
``restype``; nothing else in the package calls ``ctypes.CDLL`` directly.
"""

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int,
                    c_int32, c_size_t, c_uint, c_uint32, c_void_p)

# The header this binding mirrors.
HEADER_VERSION_MAJOR = 0
HEADER_VERSION_MINOR = 2
HEADER_VERSION_PATCH = 0
HEADER_VERSION_NUMBER = (HEADER_VERSION_MAJOR * 10000 + HEADER_VERSION_MINOR * 100
                         + HEADER_VERSION_PATCH)
HEADER_VERSION_STRING = "%d.%d.%d" % (HEADER_VERSION_MAJOR, HEADER_VERSION_MINOR,
                                      HEADER_VERSION_PATCH)


class LibraryNotFoundError(OSError):
    """libqlib could not be found or loaded, or it is too old for this binding."""


# ----------------------------------------------------------------- C types
class _Opaque(Structure):
    """Base of the opaque handle types (never instantiated by value)."""


class qlib_ctx(_Opaque):
    pass


class qlib_config(_Opaque):
    pass


class qlib_calib(_Opaque):
    pass


class qlib_tensor(_Opaque):
    pass


ctx_p = POINTER(qlib_ctx)
config_p = POINTER(qlib_config)
calib_p = POINTER(qlib_calib)
tensor_p = POINTER(qlib_tensor)
float_p = POINTER(c_float)
int32_p = POINTER(c_int32)

status_t = c_int      # qlib_status
method_t = c_int      # qlib_method
param_t = c_int       # qlib_param
compute_t = c_int     # qlib_compute
layout_t = c_int      # qlib_layout

alloc_fn = CFUNCTYPE(c_void_p, c_void_p, c_size_t, c_size_t)
free_fn = CFUNCTYPE(None, c_void_p, c_void_p)
task_fn = CFUNCTYPE(None, c_void_p, c_size_t)
run_fn = CFUNCTYPE(None, c_void_p, task_fn, c_void_p, c_size_t)
progress_fn = CFUNCTYPE(c_int, c_void_p, c_char_p, c_double)


class qlib_allocator(Structure):
    _fields_ = [("struct_size", c_uint32),
                ("alloc", alloc_fn),
                ("free", free_fn),
                ("user", c_void_p)]


class qlib_parallel(Structure):
    _fields_ = [("struct_size", c_uint32),
                ("run", run_fn),
                ("user", c_void_p)]


# name: (restype, argtypes) for every function in include/qlib.h.
PROTOTYPES = {
    # version
    "qlib_version_number": (c_uint, []),
    "qlib_version_string": (c_char_p, []),
    # errors
    "qlib_status_string": (c_char_p, [status_t]),
    "qlib_last_error": (c_char_p, []),
    # context
    "qlib_ctx_create": (status_t, [POINTER(ctx_p)]),
    "qlib_ctx_create_with_allocator": (status_t, [POINTER(qlib_allocator), POINTER(ctx_p)]),
    "qlib_ctx_set_threads": (status_t, [ctx_p, c_int]),
    "qlib_ctx_set_parallel": (status_t, [ctx_p, POINTER(qlib_parallel)]),
    "qlib_ctx_set_isa": (status_t, [ctx_p, c_char_p]),
    "qlib_ctx_set_compute": (status_t, [ctx_p, compute_t]),
    "qlib_ctx_isa": (c_char_p, [ctx_p]),
    "qlib_ctx_threads": (c_int, [ctx_p]),
    "qlib_ctx_compute": (compute_t, [ctx_p]),
    "qlib_ctx_destroy": (None, [ctx_p]),
    "qlib_ctx_set_progress": (status_t, [ctx_p, progress_fn, c_void_p]),
    # config
    "qlib_config_create": (status_t, [method_t, POINTER(config_p)]),
    "qlib_config_set_int": (status_t, [config_p, param_t, c_int]),
    "qlib_config_set_float": (status_t, [config_p, param_t, c_float]),
    "qlib_config_get_int": (status_t, [config_p, param_t, POINTER(c_int)]),
    "qlib_config_get_float": (status_t, [config_p, param_t, POINTER(c_float)]),
    "qlib_config_method": (method_t, [config_p]),
    "qlib_method_name": (c_char_p, [method_t]),
    "qlib_config_destroy": (None, [config_p]),
    # calibration
    "qlib_calib_create": (status_t, [ctx_p, c_size_t, c_uint, c_size_t, POINTER(calib_p)]),
    "qlib_calib_add": (status_t, [calib_p, float_p, c_size_t, c_size_t]),
    "qlib_calib_tokens": (c_size_t, [calib_p]),
    "qlib_calib_k": (c_size_t, [calib_p]),
    "qlib_calib_act_stats": (status_t, [calib_p, float_p, float_p]),
    "qlib_calib_hessian": (status_t, [calib_p, float_p, c_size_t]),
    "qlib_calib_destroy": (None, [calib_p]),
    # tensors
    "qlib_quantize": (status_t, [ctx_p, float_p, c_size_t, c_size_t, c_size_t, config_p,
                                 calib_p, POINTER(tensor_p)]),
    "qlib_quantize_shared": (status_t, [ctx_p, c_size_t, POINTER(float_p), POINTER(c_size_t),
                                        c_size_t, POINTER(c_size_t), config_p, calib_p,
                                        POINTER(tensor_p)]),
    "qlib_dequantize": (status_t, [ctx_p, tensor_p, float_p, c_size_t]),
    "qlib_dequantize_rows": (status_t, [ctx_p, tensor_p, c_size_t, c_size_t, float_p, c_size_t]),
    "qlib_tensor_destroy": (None, [tensor_p]),
    "qlib_tensor_rows": (c_size_t, [tensor_p]),
    "qlib_tensor_cols": (c_size_t, [tensor_p]),
    "qlib_tensor_method": (method_t, [tensor_p]),
    "qlib_tensor_bits": (c_int, [tensor_p]),
    "qlib_tensor_group_size": (c_int, [tensor_p]),
    "qlib_tensor_symmetric": (c_int, [tensor_p]),
    "qlib_tensor_storage_bytes": (c_size_t, [tensor_p]),
    "qlib_tensor_bits_per_weight": (c_double, [tensor_p]),
    "qlib_tensor_quant_error": (c_double, [tensor_p]),
    "qlib_tensor_input_scales": (float_p, [tensor_p]),
    "qlib_tensor_permutation": (int32_p, [tensor_p]),
    "qlib_tensor_outlier_threshold": (c_float, [tensor_p]),
    # matmul
    "qlib_matmul": (status_t, [ctx_p, tensor_p, float_p, c_size_t, c_size_t, float_p, c_size_t]),
    # serialization
    "qlib_tensor_serialized_size": (status_t, [tensor_p, POINTER(c_size_t)]),
    "qlib_tensor_serialize": (status_t, [tensor_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    "qlib_tensor_deserialize": (status_t, [ctx_p, c_void_p, c_size_t, c_uint, POINTER(tensor_p)]),
    "qlib_tensor_save": (status_t, [tensor_p, c_char_p]),
    "qlib_tensor_load": (status_t, [ctx_p, c_char_p, POINTER(tensor_p)]),
    # standard layouts
    "qlib_tensor_export_size": (status_t, [tensor_p, layout_t, POINTER(c_size_t)]),
    "qlib_tensor_export": (status_t, [tensor_p, layout_t, POINTER(c_void_p), POINTER(c_size_t)]),
    "qlib_tensor_import": (status_t, [ctx_p, layout_t, c_size_t, c_size_t, c_int, c_int,
                                      POINTER(c_void_p), POINTER(c_size_t), POINTER(tensor_p)]),
    "qlib_tensor_fold_input_scales": (status_t, [ctx_p, tensor_p, float_p, POINTER(tensor_p)]),
}


def _candidates():
    """(path, must_succeed) pairs in search order."""
    env = os.environ.get("QLIB_LIBRARY")
    if env:
        return [(env, True)]
    here = os.path.dirname(os.path.abspath(__file__))
    repo_lib = os.path.normpath(os.path.join(here, os.pardir, os.pardir, "lib"))
    names = ["libqlib.so.%d" % HEADER_VERSION_MAJOR]
    if sys.platform == "darwin":
        names = ["libqlib.%d.dylib" % HEADER_VERSION_MAJOR, "libqlib.dylib"]
    out = [(os.path.join(d, n), False) for d in (here, repo_lib) for n in names]
    out.append((ctypes.util.find_library("qlib"), False))     # None: nothing found
    return out


def _declare(cdll, path):
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            raise LibraryNotFoundError(
                "%s lacks the symbol %s: it is older than this binding (header %s)"
                % (path, name, HEADER_VERSION_STRING)) from None
        fn.restype = restype
        fn.argtypes = argtypes
    number = cdll.qlib_version_number()
    if number // 10000 != HEADER_VERSION_MAJOR or number < HEADER_VERSION_NUMBER:
        raise LibraryNotFoundError(
            "%s is libqlib %s; this binding needs %d.x, at least %s"
            % (path, cdll.qlib_version_string().decode(), HEADER_VERSION_MAJOR,
               HEADER_VERSION_STRING))


def _load():
    tried = []
    for path, must in _candidates():
        if path is None:
            tried.append("find_library('qlib') (nothing in the ldconfig cache or LD_LIBRARY_PATH)")
            continue
        if not must and os.sep in path and not os.path.exists(path):
            tried.append("%s (absent)" % path)
            continue
        try:
            cdll = ctypes.CDLL(path)
        except OSError as e:
            if must:
                raise LibraryNotFoundError(
                    "QLIB_LIBRARY=%s cannot be loaded: %s" % (path, e)) from e
            tried.append("%s (%s)" % (path, e))
            continue
        _declare(cdll, path)
        return cdll, path
    raise LibraryNotFoundError(
        "libqlib.so.%d not found. Either install the package with the library inside it "
        "(`pip install .` in the source tree), or set QLIB_LIBRARY to the library's path, or "
        "install it (`make install`; then run `ldconfig` if the prefix is a system one) or add "
        "its directory to LD_LIBRARY_PATH. Tried: %s" % (HEADER_VERSION_MAJOR, "; ".join(tried)))


_cdll = None
_path = None
_load_lock = threading.Lock()


def lib():
    """The loaded ctypes.CDLL, with every prototype declared (loads on first call)."""
    global _cdll, _path
    if _cdll is None:
        with _load_lock:
            if _cdll is None:
                _cdll, _path = _load()
    return _cdll


def path():
    """The file libqlib was loaded from (loads it if needed)."""
    lib()
    return _path
