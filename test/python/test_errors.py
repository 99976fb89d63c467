"""Failures map to one exception class per status, with the C message."""

import pickle

import numpy as np
import pytest

from _helpers import layer, qlib
from qlib._errors import ERROR_CLASSES, error_for


def test_one_class_per_status():
    for status in qlib.Status:
        if status == qlib.Status.OK:
            continue
        cls = ERROR_CLASSES[status]
        assert issubclass(cls, qlib.QlibError)
        e = error_for(status, "f", "detail")
        assert type(e) is cls
        assert e.status == status and e.message == "detail" and e.function == "f"
        assert status.name in str(e) and "detail" in str(e)
        e2 = pickle.loads(pickle.dumps(e))
        assert type(e2) is cls and e2.status == status and e2.message == "detail"


def test_builtin_bases():
    assert issubclass(qlib.ArgError, ValueError)
    assert issubclass(qlib.ShapeError, ValueError)
    assert issubclass(qlib.NoMemError, MemoryError)
    assert issubclass(qlib.UnsupportedError, NotImplementedError)
    assert issubclass(qlib.NumericError, ArithmeticError)
    assert issubclass(qlib.StateError, RuntimeError)
    assert issubclass(qlib.QlibIOError, OSError)
    assert issubclass(qlib.FormatError, ValueError)


def test_unknown_status():
    e = error_for(99, "f", "odd")
    assert type(e) is qlib.QlibError and e.status == 99


def test_status_string():
    assert qlib.status_string(qlib.Status.ERR_ARG).startswith("QLIB_ERR_ARG")
    assert qlib.status_string(qlib.Status.OK).startswith("QLIB_OK")
    assert qlib.status_string(1234)        # never NULL, also for unknown values


def test_arg_error_from_c():
    with qlib.Config("rtn") as cfg:
        with pytest.raises(qlib.ArgError) as e:
            cfg["group_size"] = 33
    assert e.value.status == qlib.ERR_ARG
    assert e.value.function == "qlib_config_set_int"
    assert "group size 33" in e.value.message
    assert qlib.last_error() == e.value.message


def test_unsupported_option_is_type_error():
    w = layer(np.random.default_rng(0), 32, 64)
    with pytest.raises(TypeError, match="damp"):
        qlib.quantize(w, "rtn", damp=0.1)
    with pytest.raises(TypeError):
        qlib.quantize(w, "rtn", colour=3)       # unknown keyword


def test_numeric_error_from_c():
    w = layer(np.random.default_rng(0), 32, 64)
    w[3, 5] = np.nan
    with pytest.raises(qlib.NumericError) as e:
        qlib.quantize(w, "rtn")
    assert e.value.status == qlib.ERR_NUMERIC
    assert "NaN" in e.value.message


def test_shape_error_from_c():
    rng = np.random.default_rng(0)
    calib = qlib.Calibration(32)
    calib.add(rng.standard_normal((40, 32)).astype(np.float32))
    try:
        with pytest.raises(qlib.ShapeError) as e:
            qlib.quantize(layer(rng, 32, 64), "gptq", calib=calib)
        assert e.value.status == qlib.ERR_SHAPE
        assert "k=32" in e.value.message
    finally:
        calib.close()


def test_state_error_from_c():
    rng = np.random.default_rng(0)
    with qlib.Calibration(64, what=qlib.CALIB_HESSIAN) as calib:
        with pytest.raises(qlib.StateError) as e:
            calib.act_stats()
        assert e.value.status == qlib.ERR_STATE
        with pytest.raises(qlib.StateError):
            calib.hessian()                          # no tokens yet
        calib.add(rng.standard_normal((8, 64)))
        calib.hessian()


def test_io_error_from_c(tmp_path):
    with pytest.raises(qlib.QlibIOError) as e:
        qlib.load(str(tmp_path / "missing.qt"))
    assert e.value.status == qlib.ERR_IO
    assert "missing.qt" in e.value.message
    assert isinstance(e.value, OSError)


def test_format_error_from_c():
    with pytest.raises(qlib.FormatError) as e:
        qlib.from_bytes(b"this is not a tensor, not at all" * 4)
    assert e.value.status == qlib.ERR_FORMAT and e.value.message


def test_nomem_error_from_allocator():
    a = qlib.CountingAllocator()
    with qlib.Context(threads=1, allocator=a) as ctx:
        a.fail_at = a.allocs + a.failed + 1
        a.fail_all = True
        with pytest.raises(qlib.NoMemError) as e:
            qlib.quantize(layer(np.random.default_rng(0), 64, 64), "rtn", ctx=ctx)
        assert isinstance(e.value, MemoryError)
        assert e.value.status == qlib.ERR_NOMEM
        a.fail_at = None
    assert a.live == 0 and a.bad_frees == 0


def test_allocator_exception_is_chained():
    class Broken(qlib.CountingAllocator):
        armed = False

        def alloc(self, size, alignment):
            if self.armed:
                raise RuntimeError("allocator exploded")
            return super().alloc(size, alignment)

    a = Broken()
    with qlib.Context(threads=1, allocator=a) as ctx:
        a.armed = True
        with pytest.raises(qlib.NoMemError) as e:
            qlib.quantize(layer(np.random.default_rng(0), 64, 64), "rtn", ctx=ctx)
        assert isinstance(e.value.__cause__, RuntimeError)
        a.armed = False
    assert a.live == 0


def test_python_side_checks_before_c():
    rng = np.random.default_rng(0)
    t = qlib.quantize(layer(rng, 32, 64), "rtn")
    with pytest.raises(TypeError):
        t.matmul(np.ones(64, dtype=np.int32))
    with pytest.raises(TypeError):
        t.matmul(np.ones(64, dtype=np.complex64))
    with pytest.raises(qlib.ShapeError):
        t.matmul(np.ones((2, 63), dtype=np.float32))
    with pytest.raises(ValueError):
        t.matmul(np.float32(1.0))
    with pytest.raises(ValueError):
        qlib.quantize(np.ones(64, np.float32), "rtn")           # 1-D weights
    with pytest.raises(ValueError):
        qlib.quantize(np.ones((2, 3, 64), np.float32), "rtn")   # 3-D weights
    with pytest.raises(ValueError):
        qlib.quantize(np.ones((0, 64), np.float32), "rtn")
    with pytest.raises(TypeError):
        qlib.quantize(np.ones((4, 64), np.int8), "rtn")
    with pytest.raises(TypeError):
        qlib.quantize(layer(rng, 4, 64), "rtn", ctx="ctx")
    with pytest.raises(TypeError):
        qlib.quantize(layer(rng, 4, 64), "gptq", calib=object())
    with pytest.raises(ValueError):
        qlib.quantize(layer(rng, 4, 64), "zip")
    with pytest.raises(ValueError):
        qlib.Calibration(-1)
    with pytest.raises(ValueError, match="float32 range"):
        qlib.quantize(np.full((4, 64), 1e39), "rtn")
