"""torch tensors as inputs, without importing torch in the binding: detached,
brought to the CPU, bfloat16/float16 widened to float32. A small stand-in
with the same methods runs everywhere; the real torch (Debian python3-torch)
runs when it is installed."""

import os
import subprocess
import sys

import numpy as np
import pytest

from _helpers import ROOT, qlib


class _Dtype:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


class _Device:
    def __init__(self, kind):
        self.type = kind


class FakeTensor:
    """What the binding may call on a torch.Tensor, with torch's refusals:
    numpy() on a tensor that requires grad, on another device, or of a dtype
    numpy lacks (bfloat16) raises, as torch does."""

    def __init__(self, values, dtype="float32", device="cpu", requires_grad=False, log=None):
        self._v = np.asarray(values, dtype=np.float32)
        if dtype == "float16":                # holds what float16 can
            self._v = self._v.astype(np.float16).astype(np.float32)
        self.dtype = _Dtype(dtype)
        self.device = _Device(device)
        self.requires_grad = requires_grad
        self.log = [] if log is None else log

    def _copy(self, **kw):
        args = dict(dtype=self.dtype.name, device=self.device.type,
                    requires_grad=self.requires_grad, log=self.log)
        args.update(kw)
        return FakeTensor(self._v, **args)

    def detach(self):
        self.log.append("detach")
        return self._copy(requires_grad=False)

    def cpu(self):
        self.log.append("cpu")
        return self._copy(device="cpu")

    def float(self):
        self.log.append("float")
        return self._copy(dtype="float32")

    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad.")
        if self.device.type != "cpu":
            raise TypeError("can't convert %s device type tensor to numpy" % self.device.type)
        if self.dtype.name == "bfloat16":
            raise TypeError("Got unsupported ScalarType BFloat16")
        self.log.append("numpy")
        return self._v if self.dtype.name == "float32" else self._v.astype(self.dtype.name)


FakeTensor.__module__ = "torch"       # what type(t).__module__ says for a torch.Tensor


def _bf16(a):
    """a rounded to bfloat16 (nearest even), as float32."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def _same(t, u):
    assert t.to_bytes() == u.to_bytes()


def test_fake_tensor_grad_device_bf16(rng):
    w = _bf16(rng.standard_normal((16, 64)).astype(np.float32) * 0.02)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    ref = qlib.quantize(w, bits=4, group_size=32)
    log = []
    ft = FakeTensor(w, dtype="bfloat16", device="cuda", requires_grad=True, log=log)
    t = qlib.quantize(ft, bits=4, group_size=32)
    _same(t, ref)
    assert log == ["detach", "cpu", "float", "numpy"]
    for dtype in ("float16", "float32", "float64"):
        fx = FakeTensor(x, dtype=dtype, requires_grad=True)
        want = t.matmul(x.astype(dtype))
        np.testing.assert_array_equal(t.matmul(fx), want)
        np.testing.assert_array_equal(fx @ t, want)
    c = qlib.Calibration(64)
    c.add(FakeTensor(x, requires_grad=True))
    assert c.tokens == 3


def test_fake_tensor_integer_dtype_refused():
    with pytest.raises(TypeError, match="floating"):
        qlib.quantize(FakeTensor(np.ones((4, 64)), dtype="int32"))


def test_default_method_is_rtn(rng):
    w = rng.standard_normal((8, 64)).astype(np.float32)
    t = qlib.quantize(w)
    assert t.method == qlib.Method.RTN
    d = qlib.method_defaults("rtn")
    assert (t.bits, t.group_size, t.symmetric) == (d["bits"], d["group_size"], d["symmetric"])


def test_import_does_not_import_torch():
    code = ("import sys, numpy as np, qlib\n"
            "qlib.quantize(np.ones((4, 64), np.float32))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_real_torch(rng):
    torch = pytest.importorskip("torch")
    w = rng.standard_normal((32, 128)).astype(np.float32) * 0.02
    x = rng.standard_normal((5, 128)).astype(np.float32)
    lin = torch.nn.Linear(128, 32, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
    assert lin.weight.requires_grad
    ref = qlib.quantize(w)
    _same(qlib.quantize(lin.weight), ref)                         # a Parameter needing grad
    _same(qlib.quantize(torch.from_numpy(w).t().contiguous().t().contiguous()), ref)
    wb = torch.from_numpy(w).to(torch.bfloat16)
    _same(qlib.quantize(wb), qlib.quantize(wb.float().numpy()))
    wh = torch.from_numpy(w).half()
    _same(qlib.quantize(wh), qlib.quantize(wh.float().numpy()))
    xt = torch.from_numpy(x).requires_grad_()
    np.testing.assert_array_equal(xt @ ref, ref.matmul(x))
    np.testing.assert_array_equal(ref.matmul(xt[1]), ref.matmul(x[1]))
    np.testing.assert_array_equal(ref.matmul(xt.to(torch.bfloat16)),
                                  ref.matmul(xt.detach().to(torch.bfloat16).float().numpy()))
    c = qlib.Calibration(128)
    c.add(xt)
    assert c.tokens == 5
    with pytest.raises(TypeError):
        qlib.quantize(torch.ones(4, 64, dtype=torch.int32))
