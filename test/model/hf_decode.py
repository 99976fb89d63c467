#!/usr/bin/env python3
"""An independent decoder of GPTQ (v1) and AWQ (gemm) Hugging Face checkpoints,
written from the formats' rules (docs/FORMATS.md, AutoGPTQ / AutoAWQ), used to
check what `qlib-llama quantize --format gptq|awq` writes.

    hf_decode.py QUANTIZED_DIR REFERENCE.safetensors

QUANTIZED_DIR holds config.json (quantization_config) and model.safetensors.
Every projection stored as NAME.qweight / .qzeros / .scales (/ .g_idx) is
decoded to fp32 and compared, bit for bit, with NAME.weight of REFERENCE (qlib's
dequantized weights, e.g. `qlib-llama convert --model QUANTIZED_DIR --format hf
--type f32`); every other tensor (fp16) is compared after widening to fp32.

GPTQ v1: the codes of output column c, in input order, are one little-endian
bit stream down column c of qweight (int32 [K*bits/32, N]); qzeros (int32
[G, N*bits/32]) holds zero - 1 as a bit stream along each row; scales fp16
[G, N]; g_idx int32 [K] the group of each input row;
W[c, r] = scales[g, c] * (q[r, c] - (qzeros[g, c] + 1)), g = g_idx[r].
AWQ gemm: qweight int32 [K, N/8], word (r, j) holds output columns
8j + (0, 2, 4, 6, 1, 3, 5, 7)[i] in bits 4i .. 4i+3; qzeros int32 [G, N/8]
the same way; scales fp16 [G, N]; W[c, r] = (q - z) * s, group r // group_size.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": None, "I32": "<i4"}


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out


def bit_stream(words, count, bits):
    """count fields of `bits` bits from each row of little-endian int32 words."""
    rows = words.shape[0]
    b = np.unpackbits(np.ascontiguousarray(words).astype("<i4").view(np.uint8).reshape(rows, -1),
                      axis=1, bitorder="little")
    b = b[:, :count * bits].reshape(rows, count, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(axis=2)


def gptq_weight(t, base, bits, k, n):
    qw, qz, sc, gi = (t[base + s] for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
    assert qw.dtype == np.int32 and qw.shape == (k * bits // 32, n), (base, qw.shape)
    assert qz.dtype == np.int32 and qz.shape[1] == n * bits // 32, (base, qz.shape)
    assert sc.dtype == np.float16 and sc.shape == (qz.shape[0], n), (base, sc.shape)
    assert gi.dtype == np.int32 and gi.shape == (k,), (base, gi.shape)
    q = bit_stream(qw.T, k, bits)                   # [n, k]: column c's codes in input order
    z = bit_stream(qz, n, bits) + 1                 # [G, n]
    s = sc.astype(np.float32)
    g = gi.astype(np.int64)
    assert g.min() >= 0 and g.max() < qz.shape[0], base
    return (s[g, :].T * (q - z[g, :].T).astype(np.float32)).astype(np.float32)


AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def awq_unpack(words, n):
    out = np.zeros((words.shape[0], n), np.int64)
    w = words.astype(np.int64) & 0xFFFFFFFF
    for i, col in enumerate(AWQ_ORDER):
        out[:, col::8] = (w >> (4 * i)) & 15
    return out


def awq_weight(t, base, group, k, n):
    qw, qz, sc = (t[base + s] for s in (".qweight", ".qzeros", ".scales"))
    assert qw.dtype == np.int32 and qw.shape == (k, n // 8), (base, qw.shape)
    assert qz.dtype == np.int32 and qz.shape[1] == n // 8, (base, qz.shape)
    assert sc.dtype == np.float16 and sc.shape == (qz.shape[0], n), (base, sc.shape)
    q = awq_unpack(qw, n)                           # [k, n]
    z = awq_unpack(qz, n)                           # [G, n]
    g = np.arange(k) // group if group > 0 else np.zeros(k, np.int64)
    return ((q - z[g, :]).astype(np.float32) * sc.astype(np.float32)[g, :]).T.astype(np.float32)


def main():
    qdir, ref_path = sys.argv[1], sys.argv[2]
    cfg = json.load(open(qdir + "/config.json"))
    qc = cfg["quantization_config"]
    method = qc["quant_method"]
    assert method in ("gptq", "awq"), method
    if method == "gptq":
        assert qc.get("checkpoint_format", "gptq") == "gptq" and isinstance(qc["desc_act"], bool)
        assert isinstance(qc["sym"], bool)
    else:
        assert qc["version"] == "gemm" and isinstance(qc["zero_point"], bool)
        assert qc["w_bit"] == qc["bits"] and qc["q_group_size"] == qc["group_size"]
    bits, group = qc["bits"], qc["group_size"]
    t = load(qdir + "/model.safetensors")
    ref = load(ref_path)
    packed = sorted(name[:-len(".qweight")] for name in t if name.endswith(".qweight"))
    plain = [name for name in t if not any(name.startswith(b + ".") for b in packed)]
    assert packed, "no packed projection"
    for base in packed:
        want = ref[base + ".weight"]
        n, k = want.shape
        got = gptq_weight(t, base, bits, k, n) if method == "gptq" else awq_weight(t, base, group, k, n)
        if got.shape != want.shape or not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            bad = np.argwhere(got != want)
            raise SystemExit("%s: decoded weights differ from qlib's at %d places, first %s: %r vs %r"
                             % (base, len(bad), bad[0].tolist(), got[tuple(bad[0])], want[tuple(bad[0])]))
    for name in plain:
        assert t[name].dtype == np.float16, name
        want = ref[name]
        if not np.array_equal(t[name].astype(np.float32), want):
            raise SystemExit("%s: differs from qlib's" % name)
    if method == "gptq":
        inblock = qc.get("modules_in_block_to_quantize")
        if inblock:
            names = {b.split(".", 3)[3] for b in packed}
            assert names == set(inblock[0]), (names, inblock)
    print("%s %d-bit g%d: %d projections decoded exactly (%s), %d tensors in fp16 equal"
          % (method.upper(), bits, group, len(packed),
             ", ".join(sorted({b.split(".", 3)[3] for b in packed})), len(plain)))


if __name__ == "__main__":
    main()
