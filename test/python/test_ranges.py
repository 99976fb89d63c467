"""Integers crossing into C are range-checked (ctypes would silently keep the
low bits: Calibration(k=2**64 + 64) became k = 64), and a closed object
refuses every accessor."""

import ctypes

import numpy as np
import pytest

from _helpers import qlib

SIZE_BITS = 8 * ctypes.sizeof(ctypes.c_size_t)


@pytest.mark.parametrize("kw", [
    dict(k=2 ** SIZE_BITS + 64),
    dict(k=2 ** 64 + 64),
    dict(k=-1),
    dict(k=64, max_samples=2 ** SIZE_BITS + 16),
    dict(k=64, max_samples=2 ** 64 + 16),
    dict(k=64, max_samples=-16),
    dict(k=64, what=2 ** 32 + 1),
    dict(k=64, what=-1),
])
def test_calibration_sizes_out_of_range(kw):
    with pytest.raises(ValueError) as e:
        qlib.Calibration(**kw)
    assert not isinstance(e.value, qlib.QlibError)      # caught before the C call
    name = [n for n in kw if n != "k" or len(kw) == 1][-1]
    assert name in str(e.value)


def test_calibration_sizes_at_the_edge():
    # the largest size_t passes the binding and reaches the C checks
    with pytest.raises((qlib.ArgError, qlib.UnsupportedError, qlib.NoMemError)):
        qlib.Calibration(k=2 ** SIZE_BITS - 1, what=qlib.CALIB_ACT_STATS)
    c = qlib.Calibration(k=8, what=qlib.CALIB_SAMPLES, max_samples=3)
    assert (c.k, c.max_samples) == (8, 3)
    c.close()


def test_context_ints_out_of_range():
    with qlib.Context(threads=1) as ctx:
        for bad in (2 ** 31, -(2 ** 31) - 1, 2 ** 64 + 1):
            with pytest.raises(ValueError, match="threads"):
                ctx.threads = bad
            with pytest.raises(ValueError, match="compute"):
                ctx.compute = bad
        assert ctx.threads == 1
        assert ctx.compute == qlib.Compute.AUTO


def test_config_ints_out_of_range():
    with qlib.Config("rtn") as cfg:
        for bad in (2 ** 31, 2 ** 32 + 4, -(2 ** 31) - 1):
            with pytest.raises(ValueError, match="bits"):
                cfg["bits"] = bad
        assert cfg["bits"] == 4
    for bad in (2 ** 32 + 4, 2 ** 64 + 32):
        with pytest.raises(ValueError, match="group_size"):
            qlib.quantize(np.ones((4, 64), np.float32), "rtn", group_size=bad)


def test_enum_ints_out_of_range():
    for bad in (2 ** 32 + 1, 2 ** 64 + 2, -(2 ** 31) - 1):
        with pytest.raises(ValueError):
            qlib.method_name(bad)
        with pytest.raises(ValueError):
            qlib.status_string(bad)
    assert qlib.method_name(2) == "gptq"
    assert qlib.method_name(2 ** 31 - 1) == "unknown"


class BadAddress(qlib.CountingAllocator):
    """Hands out an address no pointer can hold."""

    def alloc(self, size, alignment):
        return 2 ** 64 + super().alloc(size, alignment)


def test_allocator_address_out_of_range():
    with pytest.raises(qlib.NoMemError) as e:
        qlib.Context(allocator=BadAddress())
    assert isinstance(e.value.__cause__, ValueError)


def _properties(cls):
    return sorted(n for n in dir(cls) if isinstance(getattr(cls, n, None), property)
                  and n != "closed")


def test_closed_objects_refuse_every_accessor():
    ctx = qlib.Context(threads=1)
    calib = qlib.Calibration(16, ctx=ctx)
    calib.add(np.ones((4, 16), np.float32))
    t = qlib.quantize(np.ones((4, 64), np.float32), "rtn", ctx=ctx)
    cfg = qlib.Config("gptq")
    objects = [(t, _properties(qlib.Tensor)), (calib, _properties(qlib.Calibration)),
               (cfg, _properties(qlib.Config)), (ctx, _properties(qlib.Context))]
    for obj, props in objects:
        assert "shape" not in props or obj is t
        for p in props:
            getattr(obj, p)                   # open: answers
        obj.close()
        assert obj.closed
        for p in props:
            with pytest.raises(ValueError, match="closed"):
                getattr(obj, p)
    assert "shape" in _properties(qlib.Tensor)
    for call in (lambda: t.matmul(np.ones(64, np.float32)), t.dequantize, t.to_bytes,
                 lambda: t.save("/nonexistent/x"), lambda: np.ones(64, np.float32) @ t):
        with pytest.raises(ValueError, match="closed"):
            call()
