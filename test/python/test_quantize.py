"""Every method through the binding: metadata, dequantized weights, matmul."""

import numpy as np
import pytest

from _helpers import METHOD_OPTIONS, calib_for, correlated_activations, layer, qlib, \
    quantize_or_skip

N, K = 96, 256


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(42)
    w = layer(rng, N, K)
    calib, x = calib_for(rng, K, tokens=512)
    yield w, calib, x
    calib.close()


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_every_method(data, method):
    w, calib, x = data
    opts = METHOD_OPTIONS[method]
    t = quantize_or_skip(w, method, calib=calib, **opts)
    assert t.shape == (N, K)
    assert t.method == qlib.Method[method.upper()]
    assert t.bits == opts.get("bits", 8 if method == "llm_int8" else t.bits)
    assert t.nbytes > 0
    assert t.bits_per_weight == pytest.approx(t.nbytes * 8 / (N * K))
    if method == "none":
        assert t.bits_per_weight >= 32
        assert t.quant_error == 0
    else:
        assert t.bits_per_weight < 16
        assert 0 < t.quant_error < 0.05, t.quant_error
    if method == "awq":
        s = t.input_scales
        assert s.shape == (K,) and s.dtype == np.float32 and np.all(s > 0)
    else:
        assert t.input_scales is None
    if method == "llm_int8":
        assert t.outlier_threshold > 0
    else:
        assert t.outlier_threshold == 0
    p = t.permutation
    if p is not None:
        assert sorted(p.tolist()) == list(range(K))
    wq = t.dequantize()
    assert wq.shape == (N, K) and wq.dtype == np.float32
    rel = np.linalg.norm(wq - w) ** 2 / np.linalg.norm(w) ** 2
    # GPTQ trades weight error for output error on the calibration tokens
    assert rel < (0.25 if method == "gptq" else 0.05), rel
    # matmul vs numpy on the dequantized weights
    xs = correlated_activations(np.random.default_rng(7), 33, K, outliers=0)
    y = t.matmul(xs)
    ref = xs.astype(np.float64) @ wq.astype(np.float64).T
    err = np.abs(y - ref).max() / np.abs(ref).max()
    assert err < 2e-2, err
    assert repr(t).startswith("<qlib.Tensor %dx%d %s" % (N, K, method))


def test_rtn_error_bound(rng):
    """Asymmetric RTN: every weight within half a step of its group's grid;
    the grid spans the group's range extended to include 0, its step rounded
    up to fp16 (relative error <= 2^-10)."""
    bits, g = 4, 32
    w = layer(rng, 16, 128)
    t = qlib.quantize(w, "rtn", bits=bits, group_size=g)
    assert (t.bits, t.group_size, t.symmetric) == (bits, g, False)
    wq = t.dequantize()
    groups = w.reshape(16, -1, g)
    lo, hi = np.minimum(groups.min(-1), 0), np.maximum(groups.max(-1), 0)
    step = (hi - lo) / (2 ** bits - 1)
    bound = step[..., None] * (0.5 + 2 ** -9) + 1e-7
    assert np.all(np.abs(wq.reshape(16, -1, g) - groups) <= bound)


def test_int8_per_channel_and_symmetric(rng):
    w = layer(rng, 16, 128)
    t = qlib.quantize(w, "rtn", bits=8, group_size=0, symmetric=True)
    assert (t.bits, t.group_size, t.symmetric) == (8, 0, True)
    wq = t.dequantize()
    step = np.abs(w).max(1, keepdims=True) / 127
    assert np.all(np.abs(wq - w) <= step * 0.51 + 1e-7)


def test_per_tensor_group(rng):
    w = layer(rng, 16, 64)
    t = qlib.quantize(w, "rtn", bits=8, group_size=-1)
    assert t.group_size == -1
    step = (max(w.max(), 0) - min(w.min(), 0)) / 255
    assert np.abs(t.dequantize() - w).max() <= step * 0.51 + 1e-7


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_bits_shrink_storage(rng, bits):
    w = layer(rng, 64, 256)
    t = qlib.quantize(w, "rtn", bits=bits, group_size=64)
    assert t.bits == bits
    assert bits <= t.bits_per_weight < bits + 2


def test_fp16(rng):
    w = layer(rng, 8, 64)
    t = qlib.quantize(w, "none", bits=16)
    np.testing.assert_array_equal(t.dequantize(), w.astype(np.float16).astype(np.float32))


def test_defaults_come_from_the_library(rng):
    w = layer(rng, 8, 256)
    t = qlib.quantize(w, "rtn")
    d = qlib.method_defaults("rtn")
    assert t.bits == d["bits"] and t.group_size == d["group_size"]


def test_gptq_options(data):
    w, calib, x = data
    t = quantize_or_skip(w, "gptq", calib=calib, bits=4, group_size=32, act_order=True,
                         static_groups=True, damp=0.05, block_size=64)
    p = t.permutation
    assert p is not None and sorted(p.tolist()) == list(range(K))
    plain = quantize_or_skip(w, "gptq", calib=calib, bits=4, group_size=32, act_order=False)
    assert plain.permutation is None
    rtn = qlib.quantize(w, "rtn", bits=4, group_size=32)
    # GPTQ minimises the output error on the calibration tokens
    out = lambda tt: np.linalg.norm(x @ (tt.dequantize() - w).T)
    assert out(plain) < out(rtn)


def output_error(t, w, x):
    d = (t.dequantize() - w).astype(np.float64)
    return np.linalg.norm(x @ d.T) ** 2 / np.linalg.norm(x @ w.T.astype(np.float64)) ** 2


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_calibrated_methods_beat_rtn(data, method):
    """On the calibration tokens, GPTQ and AWQ have a smaller output error
    than plain rounding at the same bits and group size."""
    w, calib, x = data
    t = quantize_or_skip(w, method, calib=calib, bits=4, group_size=32)
    rtn = qlib.quantize(w, "rtn", bits=4, group_size=32)
    assert output_error(t, w, x) < output_error(rtn, w, x)


def test_gptq_quant_error_is_the_hessian_ratio(data):
    """quant_error = tr(dW H dW^T) / tr(W H W^T) with the calibration's H."""
    w, calib, x = data
    t = quantize_or_skip(w, "gptq", calib=calib, bits=4, group_size=32)
    h = calib.hessian().astype(np.float64)
    d = (t.dequantize() - w).astype(np.float64)
    w64 = w.astype(np.float64)
    ratio = np.trace(d @ h @ d.T) / np.trace(w64 @ h @ w64.T)
    assert t.quant_error == pytest.approx(ratio, rel=1e-3)
    rtn = qlib.quantize(w, "rtn", bits=4, group_size=32)
    d = (rtn.dequantize() - w).astype(np.float64)
    assert rtn.quant_error == pytest.approx(np.sum(d * d) / np.sum(w64 * w64), rel=1e-3)


def test_gptq_needs_a_hessian(rng):
    w = layer(rng, 16, 64)
    with qlib.Calibration(64, what=qlib.CALIB_ACT_STATS) as c:
        c.add(rng.standard_normal((32, 64)))
        try:
            with pytest.raises(qlib.StateError):
                qlib.quantize(w, "gptq", calib=c)
        except qlib.UnsupportedError as e:
            pytest.skip(e.message)


def test_awq_options(data):
    w, calib, x = data
    t = quantize_or_skip(w, "awq", calib=calib, bits=4, group_size=32, grid=10, clip=False,
                         max_shrink=0.3)
    assert t.input_scales is not None


def test_llm_int8_outliers(data):
    w, calib, x = data
    t = quantize_or_skip(w, "llm_int8", outlier_threshold=3.0)
    assert t.outlier_threshold == pytest.approx(3.0)
    y = t.matmul(x[:16])                  # x has large outlier channels
    ref = x[:16].astype(np.float64) @ t.dequantize().astype(np.float64).T
    assert np.abs(y - ref).max() / np.abs(ref).max() < 2e-2


def test_option_checks(rng):
    w = layer(rng, 8, 64)
    with pytest.raises(qlib.ArgError):
        qlib.quantize(w, "rtn", bits=5)
    with pytest.raises(qlib.ArgError):
        qlib.quantize(w, "rtn", group_size=48)
    with pytest.raises(TypeError, match="grid"):
        qlib.quantize(w, "rtn", grid=10)
    with pytest.raises(TypeError, match="outlier_threshold"):
        qlib.quantize(w, "gptq", outlier_threshold=6.0)
    with pytest.raises(TypeError):
        qlib.quantize(w, "rtn", bits="4")
    t = qlib.quantize(w, qlib.Method.RTN, bits=np.int64(8))
    assert t.bits == 8
    assert qlib.quantize(w, qlib.METHOD_RTN).method == qlib.Method.RTN
    assert qlib.quantize(w, "RTN").method == qlib.Method.RTN


def test_strided_weights(rng):
    w = layer(rng, 16, 64)
    big = np.zeros((16, 100), np.float32)
    big[:, 10:74] = w
    a = qlib.quantize(w, "rtn", bits=4, group_size=32).dequantize()
    for v in (big[:, 10:74], np.asfortranarray(w), w.astype(np.float64), w[::-1][::-1]):
        np.testing.assert_array_equal(qlib.quantize(v, "rtn", bits=4, group_size=32).dequantize(),
                                      a)


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
def test_method_defaults_are_quantize_keywords(data, method):
    w, calib, x = data
    defaults = qlib.method_defaults(method)
    assert "bits" in defaults
    t = quantize_or_skip(w, method, calib=calib, **defaults)
    assert t.bits == defaults["bits"]
    if "group_size" in defaults:
        assert t.group_size == defaults["group_size"]
