"""Tensor.export, qlib.import_tensor and Tensor.fold_input_scales: the arrays
have the shapes and dtypes checkpoints use, decode (with numpy, from the
layouts' descriptions) to the tensor's own weights exactly, and come back."""

import numpy as np
import pytest

from _helpers import HEADER, calib_for, layer, qlib


def as_bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


# ------------------------------------------------ decoders, written here

def decode_ggml(blocks, bits, n, k):
    b = np.asarray(blocks, dtype=np.uint8).reshape(n, k // 32, -1)
    d = b[:, :, :2].copy().view("<f2")[:, :, 0].astype(np.float32)
    if bits == 4:
        qs = b[:, :, 2:].astype(np.int32)
        q = np.concatenate([(qs & 15) - 8, (qs >> 4) - 8], axis=2)
    else:
        q = b[:, :, 2:].view(np.int8).astype(np.int32)
    return (q.astype(np.float32) * d[:, :, None]).reshape(n, k)


def stream(words, count, bits):
    """count values of `bits` bits from a little-endian stream of int32
    words (along the last axis)."""
    w = np.ascontiguousarray(np.asarray(words).astype("<u4"))
    by = w.view(np.uint8).reshape(w.shape[:-1] + (-1,))
    b = np.unpackbits(by, axis=-1, bitorder="little")[..., :count * bits]
    b = b.reshape(b.shape[:-1] + (count, bits)).astype(np.int64)
    return (b << np.arange(bits)).sum(axis=-1)


def decode_gptq(qweight, qzeros, scales, g_idx, bits, n, k):
    q = stream(qweight.T, k, bits)                    # (n, k): column c of qweight
    z = stream(qzeros, n, bits) + 1                   # (G, n)
    g = np.asarray(g_idx)
    s = scales.astype(np.float32)
    return (s[g].T * (q - z[g].T).astype(np.float32)).astype(np.float32)


def decode_awq(qweight, qzeros, scales, group_size, n, k):
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    def cols(words):                                  # (rows, n/8) -> (rows, n)
        w = np.asarray(words).astype("<u4")
        out = np.empty((w.shape[0], n), dtype=np.int64)
        for i in range(8):
            out[:, order[i]::8] = (w >> (4 * i)) & 15
        return out
    q = cols(qweight)                                 # (k, n)
    z = cols(qzeros)                                  # (G, n)
    g = np.arange(k) // group_size if group_size > 0 else np.zeros(k, dtype=int)
    w = (q - z[g]).astype(np.float32) * scales.astype(np.float32)[g]
    return w.T


# ------------------------------------------------------------- tests

@pytest.mark.nolib
def test_layout_enum_and_parts():
    assert [int(v) for v in qlib.Layout] == [1, 2, 3, 4]
    assert qlib.LAYOUT_GPTQ == 3 and qlib.LAYOUT_AWQ_GEMM == 4
    with open(HEADER) as f:
        assert "#define QLIB_LAYOUT_MAX_PARTS %d" % qlib.LAYOUT_MAX_PARTS in f.read()


@pytest.mark.parametrize("bits,group,act,sym", [(4, 128, False, False), (4, 32, True, False),
                                                (8, 64, False, False), (3, 64, True, True),
                                                (2, 32, False, True)])
def test_gptq(rng, bits, group, act, sym):
    n, k = 64, 256
    w = layer(rng, n, k)
    calib, _ = calib_for(rng, k)
    t = qlib.quantize(w, "gptq", bits=bits, group_size=group, act_order=act, symmetric=sym,
                      calib=calib)
    qweight, qzeros, scales, g_idx = t.export("gptq")
    G = k // group
    assert qweight.dtype == np.int32 and qweight.shape == (k * bits // 32, n)
    assert qzeros.dtype == np.int32 and qzeros.shape == (G, n * bits // 32)
    assert scales.dtype == np.float16 and scales.shape == (G, n)
    assert g_idx.dtype == np.int32 and g_idx.shape == (k,)
    assert np.bincount(g_idx).tolist() == [group] * G
    want = t.dequantize()
    assert np.array_equal(as_bits(decode_gptq(qweight, qzeros, scales, g_idx, bits, n, k)),
                          as_bits(want))
    u = qlib.import_tensor("gptq", [qweight, qzeros, scales, g_idx], (n, k), group_size=group)
    assert u.method == qlib.Method.GPTQ and u.bits == bits and u.group_size == group
    assert u.symmetric == sym
    assert (u.permutation is not None) == act
    assert np.array_equal(as_bits(u.dequantize()), as_bits(want))
    for a, b in zip(u.export(qlib.Layout.GPTQ), (qweight, qzeros, scales, g_idx)):
        assert a.tobytes() == b.tobytes()


def test_awq_fold_and_export(rng):
    n, k = 32, 256
    w = layer(rng, n, k)
    calib, x = calib_for(rng, k)
    t = qlib.quantize(w, "awq", bits=4, group_size=64, calib=calib)
    with pytest.raises(qlib.UnsupportedError, match="fold"):
        t.export("awq")
    f, s = t.fold_input_scales()
    is_ = t.input_scales
    assert f.input_scales is None and f.method == qlib.Method.AWQ
    assert s.dtype == np.float32 and np.array_equal(s, np.float32(1) / is_)
    # the folded tensor with x * input_scales multiplies exactly like t with x
    assert np.array_equal(as_bits(f.matmul(x[:5] * is_)), as_bits(t.matmul(x[:5])))
    qweight, qzeros, scales = f.export("awq_gemm")
    assert qweight.shape == (k, n // 8) and qzeros.shape == (k // 64, n // 8)
    assert scales.shape == (k // 64, n)
    want = f.dequantize()
    assert np.array_equal(as_bits(decode_awq(qweight, qzeros, scales, 64, n, k)), as_bits(want))
    u = qlib.import_tensor(qlib.LAYOUT_AWQ_GEMM, [qweight.tobytes(), qzeros, scales], (n, k),
                           group_size=64)
    assert np.array_equal(as_bits(u.dequantize()), as_bits(want))
    assert np.array_equal(as_bits(u.matmul(x[:3])), as_bits(f.matmul(x[:3])))
    with pytest.raises(qlib.StateError):
        u.fold_input_scales()


@pytest.mark.parametrize("bits", [4, 8])
def test_ggml(rng, bits):
    n, k = 8, 96
    t = qlib.quantize(layer(rng, n, k), "rtn", bits=bits, group_size=32, symmetric=True)
    name = "q4_0" if bits == 4 else "q8_0"
    (blocks,) = t.export(name)
    assert blocks.dtype == np.uint8 and blocks.shape == (n, k // 32 * (18 if bits == 4 else 34))
    assert t.export_size(name) == [blocks.nbytes]
    want = t.dequantize()
    assert np.array_equal(as_bits(decode_ggml(blocks, bits, n, k)), as_bits(want))
    u = qlib.import_tensor(name, [bytearray(blocks.tobytes())], (n, k))
    assert u.method == qlib.Method.RTN and u.symmetric and u.group_size == 32
    assert np.array_equal(as_bits(u.dequantize()), as_bits(want))
    x = rng.standard_normal((4, k)).astype(np.float32)
    assert np.array_equal(as_bits(u.matmul(x)), as_bits(t.matmul(x)))


def test_gptq_zero_point_0(rng):
    w = layer(rng, 8, 64)
    w[3, :32] = np.abs(w[3, :32]) + 0.01                        # a group's range starts at 0
    t = qlib.quantize(w, "rtn", bits=4, group_size=32)
    with pytest.raises(qlib.UnsupportedError, match="zero point 0"):
        t.export("gptq")
    assert len(t.export("awq")) == 3                            # AWQ stores zero points as they are


def test_refusals_and_errors(rng):
    n, k = 16, 64
    w = layer(rng, n, k)
    with pytest.raises(qlib.UnsupportedError, match="float tensor"):
        qlib.quantize(w, "none", bits=32).export("gptq")
    t = qlib.quantize(w, "rtn", bits=4, group_size=32)          # asymmetric
    with pytest.raises(qlib.UnsupportedError, match="asymmetric"):
        t.export("q4_0")
    with pytest.raises(ValueError, match="unknown layout"):
        t.export("exl2")
    parts = t.export("gptq")
    with pytest.raises(qlib.FormatError, match="part 2"):
        qlib.import_tensor("gptq", [parts[0], parts[1], parts[2][:1], parts[3]], (n, k),
                           group_size=32)
    bad = parts[2].copy()
    bad[0, 0] = np.float16(np.inf)
    with pytest.raises(qlib.FormatError, match="Inf or NaN"):
        qlib.import_tensor("gptq", [parts[0], parts[1], bad, parts[3]], (n, k), group_size=32)
    g = parts[3].copy()
    g[0] = 7
    with pytest.raises(qlib.FormatError, match="g_idx"):
        qlib.import_tensor("gptq", [parts[0], parts[1], parts[2], g], (n, k), group_size=32)
    with pytest.raises(TypeError, match="group_size"):
        qlib.import_tensor("gptq", parts, (n, k))
    with pytest.raises(ValueError, match="4 parts"):
        qlib.import_tensor("gptq", parts[:3], (n, k), group_size=32)
    with pytest.raises(qlib.ArgError):
        qlib.import_tensor("q4_0", [b"\0" * 36], (2, 32), bits=8)
    # big-endian and strided arrays are taken by value
    u = qlib.import_tensor("gptq", [parts[0].astype(">i4"), parts[1][:, ::1], parts[2],
                                    parts[3]], (n, k), group_size=32)
    assert np.array_equal(as_bits(u.dequantize()), as_bits(t.dequantize()))
