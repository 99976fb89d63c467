"""Round trips through bytes, files, borrowed buffers, mmap and pickle."""

import copy
import os
import pickle

import numpy as np
import pytest

from _helpers import METHOD_OPTIONS, calib_for, layer, qlib


@pytest.fixture(scope="module")
def tensors():
    rng = np.random.default_rng(11)
    w = layer(rng, 40, 128)
    calib, _ = calib_for(rng, 128)
    out = {}
    for method, opts in sorted(METHOD_OPTIONS.items()):
        try:
            out[method] = qlib.quantize(w, method, calib=calib, **opts)
        except qlib.UnsupportedError:
            pass
    out["rtn3"] = qlib.quantize(w, "rtn", bits=3, group_size=64, symmetric=True)
    calib.close()
    return out


def same(a, b):
    assert a.shape == b.shape
    assert (a.method, a.bits, a.group_size, a.symmetric) == (b.method, b.bits, b.group_size,
                                                             b.symmetric)
    assert a.nbytes == b.nbytes
    assert a.quant_error == b.quant_error
    np.testing.assert_array_equal(a.dequantize(), b.dequantize())
    x = np.random.default_rng(0).standard_normal((3, a.shape[1])).astype(np.float32)
    np.testing.assert_array_equal(a.matmul(x), b.matmul(x))
    for attr in ("input_scales", "permutation"):
        va, vb = getattr(a, attr), getattr(b, attr)
        assert (va is None) == (vb is None)
        if va is not None:
            np.testing.assert_array_equal(va, vb)


def test_bytes(tensors):
    for t in tensors.values():
        blob = t.to_bytes()
        assert isinstance(blob, bytes) and len(blob) == t.serialized_size
        same(t, qlib.from_bytes(blob))
        same(t, qlib.from_bytes(bytearray(blob)))
        same(t, qlib.from_bytes(memoryview(blob)))
        same(t, qlib.from_bytes(np.frombuffer(blob, np.uint8)))


def test_borrow(tensors):
    for t in tensors.values():
        blob = t.to_bytes()
        # aligned: used in place, and kept alive by the tensor
        raw = np.zeros(len(blob) + 128, np.uint8)
        off = (-raw.ctypes.data) % 64
        aligned = raw[off:off + len(blob)]
        aligned[...] = np.frombuffer(blob, np.uint8)
        b = qlib.from_bytes(aligned, borrow=True)
        del raw, aligned
        same(t, b)
        # misaligned: copied to an aligned buffer the tensor keeps
        buf = np.zeros(len(blob) + 64 + 1, np.uint8)
        start = ((-buf.ctypes.data) % 64) + 1
        mis = buf[start:start + len(blob)]
        mis[...] = np.frombuffer(blob, np.uint8)
        c = qlib.from_bytes(mis, borrow=True)
        del buf, mis
        same(t, c)
        same(t, qlib.from_bytes(blob, borrow=True))


def test_borrow_needs_alignment_in_c(tensors):
    """The C check itself: a misaligned borrowed buffer is ERR_ARG."""
    import ctypes
    from qlib import _lib
    t = tensors["rtn"]
    blob = t.to_bytes()
    buf = np.zeros(len(blob) + 65, np.uint8)
    start = ((-buf.ctypes.data) % 64) + 1
    buf[start:start + len(blob)] = np.frombuffer(blob, np.uint8)
    out = _lib.tensor_p()
    with qlib.Context(threads=1) as ctx:
        st = _lib.lib().qlib_tensor_deserialize(ctx._handle(), buf.ctypes.data + start, len(blob),
                                                qlib.LOAD_BORROW, ctypes.byref(out))
    assert st == qlib.ERR_ARG and not out
    assert "align" in qlib.last_error()


def test_file(tensors, tmp_path):
    for name, t in tensors.items():
        path = tmp_path / ("%s.qt" % name)
        t.save(path)
        assert os.path.getsize(path) == t.serialized_size
        same(t, qlib.load(path))
        same(t, qlib.load(str(path), mmap=True))
        with open(path, "rb") as f:
            assert f.read() == t.to_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted("%s.qt" % n for n in tensors)  # no temp files


def test_mmap_tensor_outlives_names(tensors, tmp_path):
    import gc
    t = tensors["rtn"]
    path = tmp_path / "m.qt"
    t.save(path)
    m = qlib.load(path, mmap=True)
    gc.collect()
    os.unlink(path)            # the mapping stays valid
    same(t, m)
    m.close()


def test_serialize_into(tensors):
    t = tensors["rtn"]
    buf = bytearray(t.serialized_size + 10)
    n = t.serialize_into(buf)
    assert n == t.serialized_size and bytes(buf[:n]) == t.to_bytes()
    with pytest.raises(qlib.ArgError):
        t.serialize_into(bytearray(n - 1))
    with pytest.raises(TypeError):
        t.serialize_into(bytes(n))


def test_pickle_and_copy(tensors):
    for t in tensors.values():
        same(t, pickle.loads(pickle.dumps(t)))
        assert copy.copy(t) is t and copy.deepcopy(t) is t


def test_corrupt_blobs(tensors):
    blob = bytearray(tensors["rtn"].to_bytes())
    for cut in (0, 1, 8, len(blob) // 2, len(blob) - 1):
        with pytest.raises((qlib.FormatError, qlib.ArgError)):
            qlib.from_bytes(bytes(blob[:cut]))
    rng = np.random.default_rng(5)
    for _ in range(50):
        bad = bytearray(blob)
        i = int(rng.integers(len(bad)))
        bad[i] ^= 1 << int(rng.integers(8))
        with pytest.raises(qlib.FormatError):
            qlib.from_bytes(bytes(bad))
    with pytest.raises(qlib.ArgError):
        from qlib import _lib
        import ctypes
        out = _lib.tensor_p()
        with qlib.Context(threads=1) as ctx:
            from qlib._errors import check
            check(_lib.lib().qlib_tensor_deserialize(ctx._handle(), bytes(blob), len(blob), 0x80,
                                                     ctypes.byref(out)))


def test_empty_file(tmp_path):
    p = tmp_path / "empty.qt"
    p.write_bytes(b"")
    with pytest.raises(qlib.FormatError):
        qlib.load(p)
    with pytest.raises(qlib.FormatError):
        qlib.load(p, mmap=True)


def test_save_to_missing_dir(tensors, tmp_path):
    with pytest.raises(qlib.QlibIOError):
        tensors["rtn"].save(tmp_path / "no" / "such" / "dir.qt")
