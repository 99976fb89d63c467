"""The enums of include/qlib.h. Values are pinned in C and copied here;
test/python/test_enums.py checks them against the header."""

import enum


class Status(enum.IntEnum):
    """qlib_status (QLIB_OK, QLIB_ERR_*)."""
    OK = 0
    ERR_ARG = 1
    ERR_SHAPE = 2
    ERR_NOMEM = 3
    ERR_UNSUPPORTED = 4
    ERR_NUMERIC = 5
    ERR_STATE = 6
    ERR_IO = 7
    ERR_FORMAT = 8
    ERR_CANCELLED = 9


class Method(enum.IntEnum):
    """qlib_method (QLIB_METHOD_*)."""
    NONE = 0
    RTN = 1
    GPTQ = 2
    AWQ = 3
    LLM_INT8 = 4


class Param(enum.IntEnum):
    """qlib_param (QLIB_PARAM_*)."""
    BITS = 1
    GROUP_SIZE = 2
    SYMMETRIC = 3
    CLIP_GRID = 5
    GPTQ_DAMP = 10
    GPTQ_BLOCK_SIZE = 11
    GPTQ_ACT_ORDER = 12
    GPTQ_STATIC_GROUPS = 13
    AWQ_GRID = 20
    AWQ_CLIP = 21
    AWQ_MAX_SHRINK = 22
    AWQ_ROUNDING = 23
    AWQ_SCALES = 24
    OUTLIER_THRESHOLD = 30


# Parameters set with qlib_config_set_float; all others are ints.
FLOAT_PARAMS = frozenset({Param.GPTQ_DAMP, Param.AWQ_MAX_SHRINK, Param.OUTLIER_THRESHOLD})


class Compute(enum.IntEnum):
    """qlib_compute (QLIB_COMPUTE_*)."""
    AUTO = 0
    F32 = 1


class Calib(enum.IntFlag):
    """What a calibration collects (QLIB_CALIB_*)."""
    HESSIAN = 1
    ACT_STATS = 2
    SAMPLES = 4
    ALL = 7


class Layout(enum.IntEnum):
    """qlib_layout (QLIB_LAYOUT_*): the external layouts of qlib_tensor_export
    and qlib_tensor_import (docs/FORMATS.md)."""
    GGML_Q4_0 = 1
    GGML_Q8_0 = 2
    GPTQ = 3
    AWQ_GEMM = 4


# QLIB_LAYOUT_MAX_PARTS: parts of a layout, at most.
LAYOUT_MAX_PARTS = 4


class Load(enum.IntFlag):
    """qlib_tensor_deserialize flags (QLIB_LOAD_*)."""
    BORROW = 1


def c_constants():
    """{C name without the QLIB_ prefix: value} for every enum constant."""
    out = {}
    for name, member in Status.__members__.items():
        out[name] = member
    for cls, prefix in ((Method, "METHOD_"), (Param, "PARAM_"), (Compute, "COMPUTE_"),
                        (Calib, "CALIB_"), (Load, "LOAD_"), (Layout, "LAYOUT_")):
        for name, member in cls.__members__.items():
            out[prefix + name] = member
    return out
