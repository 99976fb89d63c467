"""The clipping search (clip_grid), AWQ with GPTQ rounding (awq_rounding) and
qlib.quantize_shared through the binding."""

import numpy as np
import pytest

from _helpers import correlated_activations, layer, qlib

K = 128


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    ws = [layer(rng, n, K) for n in (48, 32, 16)]
    # calibration and held-out tokens of one distribution (one mixing matrix)
    x_all = correlated_activations(rng, 640, K)
    x, held = x_all[:512], x_all[512:]
    calib = qlib.Calibration(K, max_samples=128)
    calib.add(x)
    yield ws, calib, x, held
    calib.close()


def output_error(t, w, x):
    y = x.astype(np.float64) @ w.T.astype(np.float64)
    yh = x.astype(np.float64) @ t.dequantize().T.astype(np.float64)
    return float(np.sum((y - yh) ** 2) / np.sum(y ** 2))


def test_defaults_and_ranges():
    for m in ("rtn", "gptq", "awq"):
        d = qlib.method_defaults(m)
        assert d["clip_grid"] == 0 and d["max_shrink"] == 0.5
    assert qlib.method_defaults("awq")["awq_rounding"] == 0
    assert "clip_grid" not in qlib.method_defaults("llm_int8")
    with qlib.Config("gptq") as c:
        c["clip_grid"] = 20
        assert c[qlib.PARAM_CLIP_GRID] == 20
        with pytest.raises(qlib.ArgError):
            c["clip_grid"] = 1001
        with pytest.raises(qlib.ArgError):
            c["clip_grid"] = -1
        with pytest.raises(qlib.UnsupportedError):
            c["awq_rounding"] = 1
    with qlib.Config("awq") as c:
        with pytest.raises(qlib.ArgError):
            c["awq_rounding"] = 2


def test_clip_grid(data):
    ws, calib, _, held = data
    w = ws[0]
    plain = qlib.quantize(w, "gptq", calib=calib, bits=3, group_size=32)
    off = qlib.quantize(w, "gptq", calib=calib, bits=3, group_size=32, clip_grid=1)
    on = qlib.quantize(w, "gptq", calib=calib, bits=3, group_size=32, clip_grid=20)
    assert off.to_bytes() == plain.to_bytes()
    assert on.to_bytes() != plain.to_bytes()
    # the search lowers the calibration's Hessian-weighted error here
    assert on.quant_error < plain.quant_error
    r_plain = qlib.quantize(w, "rtn", bits=3, group_size=32)
    r_on = qlib.quantize(w, "rtn", bits=3, group_size=32, clip_grid=20)
    r_act = qlib.quantize(w, "rtn", bits=3, group_size=32, clip_grid=20, calib=calib)
    # RTN's search minimises the squared weight error: never above plain RTN's
    assert r_on.quant_error <= r_plain.quant_error
    assert r_act.to_bytes() != r_on.to_bytes()
    with pytest.raises(TypeError):
        qlib.quantize(w, "llm_int8", clip_grid=20)


def test_awq_rounding(data):
    ws, calib, _, held = data
    w = ws[0]
    t = qlib.quantize(w, "awq", calib=calib, bits=3, group_size=32, awq_rounding="gptq",
                      clip_grid=20)
    assert t.method == qlib.Method.AWQ and t.input_scales is not None
    same = qlib.quantize(w, "awq", calib=calib, bits=3, group_size=32, awq_rounding=1,
                         clip_grid=20)
    assert same.to_bytes() == t.to_bytes()
    rtn = qlib.quantize(w, "awq", calib=calib, bits=3, group_size=32, awq_rounding="rtn")
    assert output_error(t, w, held) < output_error(rtn, w, held)
    with pytest.raises(ValueError):
        qlib.quantize(w, "awq", calib=calib, awq_rounding="nearest")
    no_h = qlib.Calibration(K, what=qlib.CALIB_ACT_STATS | qlib.CALIB_SAMPLES, max_samples=64)
    no_h.add(data[2])
    with pytest.raises(qlib.StateError) as e:
        qlib.quantize(w, "awq", calib=no_h, awq_rounding="gptq")
    assert "HESSIAN" in e.value.message
    no_h.close()


def test_awq_scales(data):
    ws, calib, _, _ = data
    w = ws[0]
    assert qlib.method_defaults("awq")["awq_scales"] == 0
    with qlib.Config("awq") as c:
        c["awq_scales"] = 2
        assert c[qlib.PARAM_AWQ_SCALES] == 2
        with pytest.raises(qlib.ArgError):
            c["awq_scales"] = 3
    with pytest.raises(TypeError):
        qlib.quantize(w, "rtn", awq_scales="duo")
    with pytest.raises(ValueError):
        qlib.quantize(w, "awq", calib=calib, awq_scales="auto")
    t = {name: qlib.quantize(w, "awq", calib=calib, bits=3, group_size=32, awq_scales=name)
         for name in ("act", "duo", "both")}
    assert qlib.quantize(w, "awq", calib=calib, bits=3, group_size=32).to_bytes() \
        == t["act"].to_bytes()
    assert qlib.quantize(w, "awq", calib=calib, bits=3, group_size=32,
                         awq_scales=1).to_bytes() == t["duo"].to_bytes()
    assert t["duo"].to_bytes() != t["act"].to_bytes()
    # both families searched: the tensor is one family's, bit for bit
    assert t["both"].to_bytes() in (t["act"].to_bytes(), t["duo"].to_bytes())


def test_shared_gptq_equals_separate(data):
    ws, calib, _, _ = data
    with qlib.Config("gptq") as cfg:
        cfg["bits"] = 4
        cfg["group_size"] = 32
        cfg["clip_grid"] = 10
        cfg["gptq_act_order"] = 1
        ts = qlib.quantize_shared(ws, cfg, calib)
    assert [t.shape for t in ts] == [w.shape for w in ws]
    for t, w in zip(ts, ws):
        one = qlib.quantize(w, "gptq", calib=calib, bits=4, group_size=32, clip_grid=10,
                            act_order=True)
        assert t.to_bytes() == one.to_bytes()


def test_shared_awq_one_set_of_scales(data):
    ws, calib, _, _ = data
    for rounding in (0, 1):
        with qlib.Config("awq") as cfg:
            cfg["bits"] = 4
            cfg["group_size"] = 32
            cfg["awq_rounding"] = rounding
            ts = qlib.quantize_shared(ws, cfg, calib)
        assert len(ts) == 3
        for t in ts[1:]:
            assert np.array_equal(t.input_scales, ts[0].input_scales)
    # a method name stands for its defaults; one matrix is quantize's tensor
    (t,) = qlib.quantize_shared([ws[1]], "awq", calib)
    assert t.to_bytes() == qlib.quantize(ws[1], "awq", calib=calib).to_bytes()


def test_shared_refusals(data):
    ws, calib, _, _ = data
    with pytest.raises(ValueError):
        qlib.quantize_shared([], "rtn")
    with pytest.raises(qlib.ShapeError):
        qlib.quantize_shared([ws[0], ws[0][:, :64]], "rtn")
    bad = ws[1].copy()
    bad[3, 5] = np.nan
    with pytest.raises(qlib.NumericError) as e:
        qlib.quantize_shared([ws[0], bad], "rtn")
    assert "w[1]" in e.value.message
    with pytest.raises(qlib.StateError):
        qlib.quantize_shared(ws, "gptq")
    other = qlib.Calibration(64, max_samples=16)
    other.add(np.ones((4, 64), dtype=np.float32))
    with pytest.raises(qlib.ShapeError):
        qlib.quantize_shared(ws, "gptq", other)
    other.close()
