"""qlib.Config: a method and its options (qlib_config)."""

import ctypes
import numbers

import numpy as np

from . import _lib
from ._context import _Handle, _int_arg
from ._enums import FLOAT_PARAMS, Method, Param
from ._errors import UnsupportedError, check

# quantize() keyword -> parameter. Each is set only when given, so that the
# defaults are the library's own (qlib_config_create).
OPTIONS = {
    "bits": Param.BITS,
    "group_size": Param.GROUP_SIZE,
    "symmetric": Param.SYMMETRIC,
    "clip_grid": Param.CLIP_GRID,
    "damp": Param.GPTQ_DAMP,
    "block_size": Param.GPTQ_BLOCK_SIZE,
    "act_order": Param.GPTQ_ACT_ORDER,
    "static_groups": Param.GPTQ_STATIC_GROUPS,
    "grid": Param.AWQ_GRID,
    "clip": Param.AWQ_CLIP,
    "max_shrink": Param.AWQ_MAX_SHRINK,
    "awq_rounding": Param.AWQ_ROUNDING,
    "awq_scales": Param.AWQ_SCALES,
    "outlier_threshold": Param.OUTLIER_THRESHOLD,
}
_KEYWORDS = {p: name for name, p in OPTIONS.items()}
_SWITCHES = frozenset({Param.SYMMETRIC, Param.GPTQ_ACT_ORDER, Param.GPTQ_STATIC_GROUPS,
                       Param.AWQ_CLIP})

_METHOD_ALIASES = {"int8": Method.LLM_INT8, "llm.int8": Method.LLM_INT8,
                   "llm.int8()": Method.LLM_INT8, "fp": Method.NONE, "float": Method.NONE}


def as_method(method):
    """A Method from a Method, its value, or a case-insensitive name ("rtn",
    "gptq", "awq", "llm_int8" or "llm.int8", "none")."""
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        key = method.strip().lower()
        if key in _METHOD_ALIASES:
            return _METHOD_ALIASES[key]
        try:
            return Method[key.replace("-", "_").upper()]
        except KeyError:
            raise ValueError("unknown method %r; expected one of %s"
                             % (method, ", ".join(m.name.lower() for m in Method))) from None
    if isinstance(method, numbers.Integral) and not isinstance(method, bool):
        try:
            return Method(int(method))
        except ValueError:
            raise ValueError("unknown method %d" % method) from None
    raise TypeError("method must be a str or qlib.Method, got %s" % type(method).__name__)


def as_param(param):
    """A Param from a Param, its value or its name ("bits", "gptq_damp", ...)."""
    if isinstance(param, Param):
        return param
    if isinstance(param, str):
        try:
            return Param[param.upper()]
        except KeyError:
            raise ValueError("unknown parameter %r" % param) from None
    if isinstance(param, numbers.Integral) and not isinstance(param, bool):
        try:
            return Param(int(param))
        except ValueError:
            raise ValueError("unknown parameter %d" % param) from None
    raise TypeError("param must be a str or qlib.Param, got %s" % type(param).__name__)


def _shortest(f):
    """The shortest decimal that rounds to the same float32 (0.01, not
    0.009999999776482582)."""
    return float(str(np.float32(f)))


class Config(_Handle):
    """A qlib_config: a method with its options, starting from the method's
    defaults. ``cfg[Param.BITS]``, ``cfg["bits"] = 3``, ``cfg.as_dict()``.
    :func:`qlib.quantize` makes one for you; use this class to read the
    library's defaults."""

    _kind = "Config"

    def __init__(self, method):
        m = as_method(method)
        L = _lib.lib()
        out = _lib.config_p()
        check(L.qlib_config_create(int(m), ctypes.byref(out)), "qlib_config_create")
        self._own(out, L.qlib_config_destroy)

    @property
    def method(self):
        return Method(_lib.lib().qlib_config_method(self._handle()))

    def get(self, param):
        """The value of param: int, or float for the float parameters.
        Raises UnsupportedError if param is not one of this method's."""
        p = as_param(param)
        L = _lib.lib()
        if p in FLOAT_PARAMS:
            v = ctypes.c_float()
            check(L.qlib_config_get_float(self._handle(), int(p), ctypes.byref(v)),
                  "qlib_config_get_float")
            return _shortest(v.value)
        v = ctypes.c_int()
        check(L.qlib_config_get_int(self._handle(), int(p), ctypes.byref(v)),
              "qlib_config_get_int")
        return v.value

    def set(self, param, value):
        """Sets param. ArgError: value out of range (nothing changes);
        UnsupportedError: not one of this method's parameters."""
        p = as_param(param)
        L = _lib.lib()
        if p in FLOAT_PARAMS:
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError("%s must be a number, got %r" % (p.name.lower(), value))
            check(L.qlib_config_set_float(self._handle(), int(p), float(value)),
                  "qlib_config_set_float")
            return
        v = _int_arg(value, p.name.lower())
        if not -(2 ** 31) <= v < 2 ** 31:
            raise ValueError("%s=%d is out of range" % (p.name.lower(), v))
        check(L.qlib_config_set_int(self._handle(), int(p), v), "qlib_config_set_int")

    __getitem__ = get
    __setitem__ = set

    def as_dict(self):
        """{Param: value} for every parameter this method has."""
        out = {}
        for p in Param:
            try:
                out[p] = self.get(p)
            except UnsupportedError:
                pass
        return out

    def __repr__(self):
        if self._ptr is None:
            return "<qlib.Config closed>"
        opts = ", ".join("%s=%s" % (p.name.lower(), v) for p, v in self.as_dict().items())
        return "<qlib.Config %s: %s>" % (self.method.name.lower(), opts)


def method_defaults(method):
    """{quantize() keyword: default} for a method, as the library sets them
    (the 0/1 switches as bools)."""
    with Config(method) as cfg:
        return {_KEYWORDS[p]: bool(v) if p in _SWITCHES else v
                for p, v in cfg.as_dict().items()}
