"""Tensor.matmul / x @ t against numpy on the dequantized weights."""

import numpy as np
import pytest

from _helpers import layer, qlib

N, K = 80, 192


@pytest.fixture(scope="module")
def t():
    w = layer(np.random.default_rng(3), N, K)
    return qlib.quantize(w, "rtn", bits=4, group_size=64)


@pytest.fixture(scope="module")
def wq(t):
    return t.dequantize().astype(np.float64)


def close(y, ref, tol=2e-2):
    ref = np.asarray(ref)
    scale = max(np.abs(ref).max(), 1e-30)
    assert y.shape == ref.shape
    assert y.dtype == np.float32
    err = np.abs(y - ref).max() / scale
    assert err < tol, err


def test_shapes(t, wq, rng):
    x = rng.standard_normal((5, K)).astype(np.float32)
    close(t.matmul(x), x @ wq.T)
    close(x @ t, x @ wq.T)
    v = x[0]
    close(t.matmul(v), v @ wq.T)
    close(v @ t, v @ wq.T)
    x3 = rng.standard_normal((2, 3, K)).astype(np.float32)
    close(x3 @ t, x3 @ wq.T)
    assert t.matmul(np.zeros((0, K), np.float32)).shape == (0, N)
    with pytest.raises(TypeError):
        t @ x                          # W @ x is not defined; only x @ W^T


def test_f32_compute_matches_dequantized_closely(t, wq, rng):
    x = rng.standard_normal((9, K)).astype(np.float32)
    with qlib.Context(compute="f32") as ctx:
        y = t.matmul(x, ctx=ctx)
    close(y, x @ wq.T, tol=1e-4)


def test_non_contiguous_inputs(t, rng):
    x = rng.standard_normal((6, K)).astype(np.float32)
    ref = t.matmul(x)
    wide = np.zeros((6, K + 40), np.float32)
    wide[:, 17:17 + K] = x
    gaps = np.zeros((12, K), np.float32)
    gaps[::2] = x
    variants = {
        "row stride": wide[:, 17:17 + K],
        "every other row": gaps[::2],
        "fortran": np.asfortranarray(x),
        "column step": np.repeat(x, 2, axis=1)[:, ::2],
        "reversed": x[::-1][::-1],
        "negative stride": x[::-1],
        "float64": x.astype(np.float64),
        "float16 ok": None,
        "big-endian": x.astype(">f4"),
        "list": x.tolist(),
        "read-only": np.frombuffer(x.tobytes(), np.float32).reshape(6, K),
    }
    for name, v in variants.items():
        if v is None:
            continue
        y = t.matmul(v)
        expect = ref[::-1] if name == "negative stride" else ref
        np.testing.assert_array_equal(y, expect, err_msg=name)
    # misaligned float32 data (a view one byte into a buffer) is copied
    raw = np.zeros(6 * K * 4 + 1, np.uint8)
    mis = raw[1:].view(np.float32).reshape(6, K)
    mis[...] = x
    assert not mis.flags.aligned or mis.ctypes.data % 4
    np.testing.assert_array_equal(t.matmul(mis), ref)
    passed, ld = qlib._arrays.rows_view(mis)
    assert passed.ctypes.data % 4 == 0 and passed.flags.aligned and ld == K


def test_float16_input(t, rng):
    x = rng.standard_normal((3, K)).astype(np.float16)
    np.testing.assert_array_equal(t.matmul(x), t.matmul(x.astype(np.float32)))


def test_out_parameter(t, rng):
    x = rng.standard_normal((4, K)).astype(np.float32)
    ref = t.matmul(x)
    out = np.empty((4, N), np.float32)
    assert t.matmul(x, out=out) is out
    np.testing.assert_array_equal(out, ref)
    big = np.zeros((4, N + 8), np.float32)
    r = t.matmul(x, out=big[:, :N])            # strided rows are written in place
    np.testing.assert_array_equal(big[:, :N], ref)
    assert np.all(big[:, N:] == 0)
    assert r.base is big
    with pytest.raises(ValueError):
        t.matmul(x, out=np.empty((4, N + 1), np.float32))
    with pytest.raises(TypeError):
        t.matmul(x, out=np.empty((4, N), np.float64))
    with pytest.raises(ValueError):
        t.matmul(x, out=np.empty((N, 4), np.float32).T)
    both = np.zeros((4, max(N, K)), np.float32)
    both[:, :K] = x
    with pytest.raises(ValueError, match="overlap"):
        t.matmul(both[:, :K], out=both[:, :N])
    out1 = np.empty(N, np.float32)
    t.matmul(x[0], out=out1)
    # one token is a GEMV, which may sum in another (fixed) order than a GEMM row
    np.testing.assert_array_equal(out1, t.matmul(x[0]))
    np.testing.assert_allclose(out1, ref[0], rtol=1e-5, atol=1e-5 * np.abs(ref[0]).max())


def test_dequantize_out(t):
    out = np.empty((N, K), np.float32)
    assert t.dequantize(out=out) is out
    np.testing.assert_array_equal(out, t.dequantize())


def test_nan_input(t):
    x = np.ones((2, K), np.float32)
    x[1, 7] = np.nan
    with pytest.raises(qlib.NumericError):
        t.matmul(x)


def test_thread_count_determinism(t, rng):
    x = rng.standard_normal((17, K)).astype(np.float32)
    outs = []
    for n in (1, 2, 3, 8):
        with qlib.Context(threads=n) as ctx:
            outs.append(t.matmul(x, ctx=ctx))
            outs.append(t.matmul(x[:1], ctx=ctx))
    for a, b in zip(outs[::2], outs[2::2]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(outs[1::2], outs[3::2]):
        np.testing.assert_array_equal(a, b)


def test_isa_against_scalar(t, rng):
    x = rng.standard_normal((7, K)).astype(np.float32)
    with qlib.Context(isa="scalar") as ctx:
        ref = t.matmul(x, ctx=ctx)
    with qlib.Context() as ctx:
        if ctx.isa == "scalar":
            pytest.skip("no SIMD kernels on this CPU/build")
        close(t.matmul(x, ctx=ctx), ref, tol=1e-5)


def test_tensor_outlives_context(rng):
    w = layer(rng, 16, 64)
    with qlib.Context(threads=1) as ctx:
        t = qlib.quantize(w, "rtn", ctx=ctx)
    assert ctx.closed
    close(t.matmul(np.ones(64, np.float32)), np.ones(64) @ t.dequantize().T.astype(np.float64))


def test_closed_tensor(rng):
    t = qlib.quantize(layer(rng, 8, 64), "rtn")
    with t:
        pass
    assert t.closed
    with pytest.raises(ValueError, match="closed"):
        t.matmul(np.ones(64, np.float32))
    with pytest.raises(ValueError, match="closed"):
        t.bits
    assert repr(t) == "<qlib.Tensor closed>"
    t.close()
