"""qlib.Calibration against numpy."""

import gc

import numpy as np
import pytest

from _helpers import correlated_activations, qlib


def reference_hessian(x):
    x = x.astype(np.float64)
    return 2.0 / x.shape[0] * (x.T @ x)


def test_hessian_and_stats(ctx, rng):
    k = 48
    x = correlated_activations(rng, 300, k)
    with qlib.Calibration(k, ctx=ctx) as c:
        assert c.tokens == 0 and c.k == k and c.what == qlib.CALIB_ALL
        c.add(x[:100])
        c.add(x[100:101][0])          # one token as a 1-D row
        c.add(x[101:])
        assert c.tokens == 300
        h = c.hessian()
        assert h.shape == (k, k) and h.dtype == np.float32
        ref = reference_hessian(x)
        np.testing.assert_allclose(h, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        np.testing.assert_allclose(h, h.T, rtol=0, atol=1e-6 * np.abs(ref).max())
        stats = c.act_stats()
        assert isinstance(stats, qlib.ActStats)
        np.testing.assert_allclose(stats.mean_abs, np.abs(x).mean(0), rtol=1e-5)
        np.testing.assert_array_equal(stats.max_abs, np.abs(x).max(0))
        assert "tokens=300" in repr(c)


def test_non_contiguous_inputs(ctx, rng):
    """Strided rows, transposed, Fortran order, reversed, float64, big-endian
    and 3-D inputs all give the Hessian of the same rows."""
    k = 32
    x = correlated_activations(rng, 64, k)
    ref = reference_hessian(x)
    wide = np.zeros((64, 3 * k), np.float32)
    wide[:, k:2 * k] = x
    every_other = np.zeros((128, k), np.float32)
    every_other[::2] = x
    variants = {
        "row stride": wide[:, k:2 * k],
        "every other row": every_other[::2],
        "fortran": np.asfortranarray(x),
        "transposed view": np.ascontiguousarray(x.T).T,
        "column step": np.repeat(x, 2, axis=1)[:, ::2],
        "reversed rows": x[::-1],
        "float64": x.astype(np.float64),
        "big-endian": x.astype(">f4"),
        "3-D": x.reshape(4, 16, k),
        "list": x.tolist(),
    }
    for name, v in variants.items():
        with qlib.Calibration(k, what=qlib.CALIB_HESSIAN, ctx=ctx) as c:
            c.add(v)
            assert c.tokens == 64, name
            np.testing.assert_allclose(c.hessian(), ref, rtol=1e-4,
                                       atol=1e-4 * np.abs(ref).max(), err_msg=name)


def test_bad_inputs(ctx, rng):
    with qlib.Calibration(16, ctx=ctx) as c:
        with pytest.raises(qlib.ShapeError):
            c.add(np.ones((4, 15), np.float32))
        with pytest.raises(TypeError):
            c.add(np.ones((4, 16), np.int64))
        with pytest.raises(ValueError):
            c.add(np.float32(2))
        bad = np.ones((4, 16), np.float32)
        bad[2, 3] = np.inf
        with pytest.raises(qlib.NumericError):
            c.add(bad)
        assert c.tokens == 0               # nothing of a failed batch is kept
        c.add(np.zeros((0, 16), np.float32))
        assert c.tokens == 0


def test_bad_create(ctx):
    with pytest.raises(qlib.ArgError):
        qlib.Calibration(0, ctx=ctx)
    with pytest.raises(qlib.ArgError):
        qlib.Calibration(8, what=0, ctx=ctx)
    with pytest.raises(qlib.ArgError):
        qlib.Calibration(8, what=8, ctx=ctx)
    with pytest.raises(qlib.ArgError):
        qlib.Calibration(8, what=qlib.CALIB_SAMPLES, max_samples=0, ctx=ctx)


def test_calibration_keeps_context_alive(rng):
    ctx = qlib.Context(threads=1)
    c = qlib.Calibration(8, ctx=ctx)
    del ctx
    gc.collect()
    c.add(rng.standard_normal((5, 8)))      # the context is still there
    assert c.context.threads == 1
    assert c.tokens == 5
    c.close()


def test_closing_context_closes_calibrations(rng):
    ctx = qlib.Context(threads=1)
    c = qlib.Calibration(8, ctx=ctx)
    ctx.close()
    assert c.closed
    with pytest.raises(ValueError, match="closed"):
        c.add(np.ones((1, 8), np.float32))
