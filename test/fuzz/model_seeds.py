#!/usr/bin/env python3
"""Seeds for the model tool's fuzz targets fuzz_llama_gguf and fuzz_llama_hf
(test/fuzz/corpus/<target>/model-*): tiny valid Llama models as GGUF (F32,
F16, Q8_0, Q4_0 tensors, with a vocabulary) and as Hugging Face directories
(config.json + model.safetensors, f32/bf16, tied or not; GPTQ and AWQ
checkpoints), and damaged variants of each. Run from the repository root with /usr/bin/python3."""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, "test/model")
from make_gguf import GGUF, F32, F16, Q8_0, Q4_0, tensor_bytes  # noqa: E402
from make_hf import encode, to_hf_rotary  # noqa: E402

ROOT = "test/fuzz/corpus"
rng = np.random.default_rng(7)


def out(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model-" + name), "wb") as f:
        f.write(data)


def tiny(dim, hidden, layers=1, heads=2, kv=1, vocab=260):
    shapes = {"emb": (vocab, dim), "norm": (dim,)}
    t = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    hs = dim // heads
    for l in range(layers):
        for k, s in [("wq", (dim, dim)), ("wk", (hs * kv, dim)), ("wv", (hs * kv, dim)),
                     ("wo", (dim, dim)), ("w1", (hidden, dim)), ("w2", (dim, hidden)),
                     ("w3", (hidden, dim)), ("att", (dim,)), ("ffn", (dim,))]:
            t["%s%d" % (k, l)] = (rng.standard_normal(s) * 0.3).astype(np.float32)
    return t


def gguf_bytes(dim, hidden, wtype, etype=F32, vocab_keys=True, extra=None, layers=1):
    heads, kv, vocab = 2, 1, 260
    t = tiny(dim, hidden, layers, heads, kv, vocab)
    g = GGUF()
    g.key("general.architecture", "str", "llama")
    for k, v in [("context_length", 8), ("embedding_length", dim), ("block_count", layers),
                 ("feed_forward_length", hidden), ("attention.head_count", heads),
                 ("attention.head_count_kv", kv)]:
        g.key("llama." + k, "u32", v)
    g.key("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5)
    if vocab_keys:
        pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581ok"]
        g.key("tokenizer.ggml.model", "str", "llama")
        g.key("tokenizer.ggml.tokens", "arr_str", pieces)
        g.key("tokenizer.ggml.scores", "arr_f32", [0.0] * vocab)
        g.key("tokenizer.ggml.token_type", "arr_i32", [2, 3, 3] + [6] * 256 + [1])
    for k, kind, v in extra or []:
        g.key(k, kind, v)
    plan = [("token_embd.weight", t["emb"], etype), ("output_norm.weight", t["norm"], F32)]
    names = [("wq", "attn_q"), ("wk", "attn_k"), ("wv", "attn_v"), ("wo", "attn_output"),
             ("w1", "ffn_gate"), ("w2", "ffn_down"), ("w3", "ffn_up")]
    for l in range(layers):
        plan += [("blk.%d.attn_norm.weight" % l, t["att%d" % l], F32),
                 ("blk.%d.ffn_norm.weight" % l, t["ffn%d" % l], F32)]
        plan += [("blk.%d.%s.weight" % (l, n), t["%s%d" % (k, l)], wtype) for k, n in names]
    for name, a, ty in plan:
        rows, cols = (1, a.shape[0]) if a.ndim == 1 else a.shape
        g.tensor(name, rows, cols, ty)
    import io
    f = io.BytesIO()
    g.start(f)
    for _, a, ty in plan:
        g.write_data(f, tensor_bytes(a, ty)[0])
    return f.getvalue()


def gguf_seeds():
    T = "fuzz_llama_gguf"
    f32 = gguf_bytes(8, 16, F32)
    out(T, "gguf-f32", f32)
    out(T, "gguf-f16", gguf_bytes(8, 16, F16, F16))
    out(T, "gguf-q8_0", gguf_bytes(32, 32, Q8_0, F16))
    out(T, "gguf-q4_0", gguf_bytes(32, 64, Q4_0, F16))
    out(T, "gguf-no-vocab", gguf_bytes(8, 16, F32, vocab_keys=False))
    out(T, "gguf-2-layers", gguf_bytes(8, 16, F32, layers=2))
    out(T, "gguf-align-64", gguf_bytes(8, 16, F32, extra=[("general.alignment", "u32", 64)]))
    out(T, "gguf-rope-scaling", gguf_bytes(8, 16, F32, extra=[("llama.rope.scaling.type", "str", "yarn")]))
    out(T, "gguf-truncated", f32[:len(f32) // 2])
    out(T, "gguf-header-only", f32[:24])
    out(T, "gguf-version-1", f32[:4] + struct.pack("<I", 1) + f32[8:])
    out(T, "gguf-big-endian", f32[:4] + struct.pack(">I", 3) + f32[8:])
    out(T, "gguf-huge-counts", f32[:8] + struct.pack("<QQ", 1 << 62, 1 << 62) + f32[24:])
    # a key holding an array of arrays, and a bool that is 2
    g = GGUF()
    g.key("general.architecture", "str", "llama")
    nested = struct.pack("<IIQ", 9, 9, 2) + (struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)) * 2
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 2) + GGUF._str("general.architecture") + \
        struct.pack("<I", 8) + GGUF._str("llama") + GGUF._str("x.nested") + nested
    out(T, "gguf-nested-array", head)
    out(T, "gguf-bad-bool", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + GGUF._str("x.b") + struct.pack("<IB", 7, 2))
    # a tensor of a type this reader does not know (Q4_K, 12), and a misaligned offset
    def one_tensor(ty, off):
        return b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + GGUF._str("t") + struct.pack("<IQIQ", 1, 256, ty, off) \
            + b"\0" * (32 - (4 + 4 + 16 + 9 + 4 + 8 + 4 + 8) % 32) + b"\1" * 1024
    out(T, "gguf-unknown-type", one_tensor(12, 0))
    out(T, "gguf-misaligned", one_tensor(0, 4))


def st_bytes(tensors, dtype="f32", header_extra=None):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        tag, data = encode(a, dtype)
        header[name] = {"dtype": tag, "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header.update(header_extra or {})
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def hf_seed(name, config, weights):
    c = json.dumps(config).encode() if isinstance(config, dict) else config
    out("fuzz_llama_hf", name, struct.pack("<H", len(c)) + c + weights)


def hf_seeds():
    dim, hidden, heads, kv, vocab = 8, 16, 2, 1, 12
    t = tiny(dim, hidden, 1, heads, kv, vocab)
    tensors = [("model.embed_tokens.weight", t["emb"]), ("model.norm.weight", t["norm"]),
               ("model.layers.0.input_layernorm.weight", t["att0"]),
               ("model.layers.0.post_attention_layernorm.weight", t["ffn0"]),
               ("model.layers.0.self_attn.q_proj.weight", to_hf_rotary(t["wq0"], heads)),
               ("model.layers.0.self_attn.k_proj.weight", to_hf_rotary(t["wk0"], kv)),
               ("model.layers.0.self_attn.v_proj.weight", t["wv0"]),
               ("model.layers.0.self_attn.o_proj.weight", t["wo0"]),
               ("model.layers.0.mlp.gate_proj.weight", t["w10"]),
               ("model.layers.0.mlp.down_proj.weight", t["w20"]),
               ("model.layers.0.mlp.up_proj.weight", t["w30"])]
    config = {"model_type": "llama", "hidden_size": dim, "intermediate_size": hidden,
              "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv,
              "vocab_size": vocab, "max_position_embeddings": 8, "rms_norm_eps": 1e-5,
              "tie_word_embeddings": True, "hidden_act": "silu"}
    good = st_bytes(tensors)
    hf_seed("hf-f32-tied", config, good)
    hf_seed("hf-bf16-untied", dict(config, tie_word_embeddings=False),
            st_bytes(tensors + [("lm_head.weight", t["emb"])], "bf16"))
    hf_seed("hf-f16", config, st_bytes(tensors, "f16"))
    hf_seed("hf-rope-scaling", dict(config, rope_scaling={"type": "linear", "factor": 2.0}), good)
    hf_seed("hf-head-dim", dict(config, head_dim=8), good)
    hf_seed("hf-not-json", b"{\"model_type\": ", good)
    hf_seed("hf-missing-tensor", config, st_bytes(tensors[:-1]))
    hf_seed("hf-bad-offsets", config, st_bytes(tensors, header_extra={
        "x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}))
    hf_seed("hf-bad-dtype", config, st_bytes(tensors, header_extra={
        "x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 1]}}))
    hf_seed("hf-huge-header", config, struct.pack("<Q", 1 << 60) + good[8:])
    hf_seed("hf-truncated", config, good[:len(good) - 40])
    hf_seed("hf-wrong-shape", dict(config, intermediate_size=24), good)


def pack_bits(codes, bits):
    """rows of codes -> rows of little-endian int32 words holding them as one bit stream"""
    rows, n = codes.shape
    b = ((codes[:, :, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(rows, n * bits)
    return np.packbits(b, axis=1, bitorder="little").view("<i4")


AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def pack_awq(codes):
    """rows of 4-bit codes -> int32 words of 8 columns in AWQ's order"""
    rows, n = codes.shape
    w = np.zeros((rows, n // 8), np.uint32)
    for i, col in enumerate(AWQ_ORDER):
        w |= (codes[:, col::8].astype(np.uint32) & 15) << np.uint32(4 * i)
    return w.view("<i4")


def hf_quant_seeds():
    """GPTQ v1 and AWQ gemm checkpoints of a tiny model (every projection packed),
    written from the formats' rules, and damaged variants."""
    r = np.random.default_rng(11)
    dim, hidden, heads, kv, vocab, bits, group = 32, 64, 2, 1, 12, 4, 32
    hs = dim // heads
    shapes = {"q_proj": (dim, dim), "k_proj": (hs * kv, dim), "v_proj": (hs * kv, dim),
              "o_proj": (dim, dim), "gate_proj": (hidden, dim), "down_proj": (dim, hidden),
              "up_proj": (hidden, dim)}
    base = {"model_type": "llama", "hidden_size": dim, "intermediate_size": hidden,
            "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv,
            "vocab_size": vocab, "max_position_embeddings": 8, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": True, "hidden_act": "silu"}
    floats = [("model.embed_tokens.weight", r.standard_normal((vocab, dim)).astype(np.float32)),
              ("model.norm.weight", np.ones(dim, np.float32)),
              ("model.layers.0.input_layernorm.weight", np.ones(dim, np.float32)),
              ("model.layers.0.post_attention_layernorm.weight", np.ones(dim, np.float32))]

    def gptq_parts(name, n, k, act_order=False):
        g = (k + group - 1) // group
        q = r.integers(0, 16, (n, k))                       # codes, one row per output column
        z = r.integers(0, 15, (g, n))                       # stored zero - 1, never 15
        gidx = np.arange(k) // group
        if act_order:
            gidx = r.permutation(gidx)
        return [(name + ".qweight", pack_bits(q, bits).T.copy()),
                (name + ".qzeros", pack_bits(z, bits)),
                (name + ".scales", (r.random((g, n)) * 0.01 + 0.001).astype(np.float16)),
                (name + ".g_idx", gidx.astype("<i4"))]

    def awq_parts(name, n, k):
        g = k // group
        return [(name + ".qweight", pack_awq(r.integers(0, 16, (k, n)))),
                (name + ".qzeros", pack_awq(r.integers(0, 16, (g, n)))),
                (name + ".scales", (r.random((g, n)) * 0.01 + 0.001).astype(np.float16))]

    def st(tensors):
        header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
        for name, a in tensors:
            tag = {"float32": "F32", "float16": "F16", "int32": "I32"}[a.dtype.name]
            data = np.ascontiguousarray(a).tobytes()
            header[name] = {"dtype": tag, "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
            blobs.append(data)
            off += len(data)
        text = json.dumps(header).encode()
        return struct.pack("<Q", len(text)) + text + b"".join(blobs)

    def model(kind, act_order=False, plain=()):
        t = list(floats)
        for p, (n, k) in shapes.items():
            name = "model.layers.0.%s.%s" % ("self_attn" if p.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp", p)
            if p in plain:
                t.append((name + ".weight", (r.standard_normal((n, k)) * 0.1).astype(np.float32)))
            elif kind == "gptq":
                t += gptq_parts(name, n, k, act_order)
            else:
                t += awq_parts(name, n, k)
        return t

    gq = {"quant_method": "gptq", "bits": bits, "group_size": group, "desc_act": False, "sym": False,
          "checkpoint_format": "gptq"}
    aq = {"quant_method": "awq", "version": "gemm", "zero_point": True, "w_bit": bits, "q_group_size": group}
    gptq = st(model("gptq"))
    hf_seed("hf-gptq4", dict(base, quantization_config=gq), gptq)
    hf_seed("hf-gptq4-act-order", dict(base, quantization_config=dict(gq, desc_act=True)),
            st(model("gptq", act_order=True)))
    hf_seed("hf-gptq4-down-fp", dict(base, quantization_config=gq), st(model("gptq", plain=("down_proj",))))
    hf_seed("hf-awq4", dict(base, quantization_config=aq), st(model("awq")))
    # quantize_config.json (the fuzz target writes the config there too): top-level settings
    hf_seed("hf-gptq4-quantize-config", dict(base, **gq), gptq)
    hf_seed("hf-gptq-v2", dict(base, quantization_config=dict(gq, checkpoint_format="gptq_v2")), gptq)
    hf_seed("hf-gptq-3bit-mismatch", dict(base, quantization_config=dict(gq, bits=3)), gptq)
    hf_seed("hf-gptq-group-64", dict(base, quantization_config=dict(gq, group_size=64)), gptq)
    hf_seed("hf-awq-version", dict(base, quantization_config=dict(aq, version="gemv")), st(model("awq")))
    hf_seed("hf-quant-unknown", dict(base, quantization_config={"quant_method": "bitsandbytes",
                                                               "bits": 4, "group_size": 32}), gptq)
    bad = model("gptq")
    bad[7] = (bad[7][0], np.full_like(bad[7][1], 99))      # q_proj.g_idx out of range
    hf_seed("hf-gptq-bad-gidx", dict(base, quantization_config=gq), st(bad))
    bad = model("gptq")
    bad[6] = (bad[6][0], np.full_like(bad[6][1], np.float16(np.inf)))   # q_proj.scales Inf
    hf_seed("hf-gptq-inf-scale", dict(base, quantization_config=gq), st(bad))


gguf_seeds()
hf_seeds()
hf_quant_seeds()
print("seeds written under", ROOT)
