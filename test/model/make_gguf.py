#!/usr/bin/env python3
"""GGUF files and Hugging Face directories for the tests, written with numpy
only, independently of qlib-llama.

  make_gguf.py checkpoint CKPT TOKENIZER OUT.gguf --proj f32|f16|q8_0|q4_0 [--dequantized F32.gguf]
      stories260K (a llama2.c checkpoint and tokenizer.bin) as a GGUF file
      whose projections are stored in the given type (a projection whose row
      length is not a multiple of 32 stays F32; with f16 the embedding is F16
      too, the norms F32 as always); --dequantized also writes
      the same model with every projection replaced by the F32 values its
      blocks decode to.
  make_gguf.py synthetic OUT --dim D --layers L --hidden H --vocab V --heads N
               [--kv-heads N] [--seq-len T] [--format gguf|hf] [--seed S]
      a Llama with random weights (scaled like a trained model's: rows of
      norm about 1), streamed tensor by tensor so that memory stays small.

GGUF layout (v3, little-endian): "GGUF", version, tensor count, key count,
keys, tensor infos, padding to 32, data. Q8_0 and Q4_0 blocks are made as
ggml's reference quantizers make them (q8_0, q4_0 below): Q8_0 fp16 d =
absmax/127, int8 q = round(x/d); Q4_0 d = m/-8 where m is the weight of
largest magnitude, q = min(15, trunc(x/d + 8.5)), nibbles: low = weights
0..15, high = 16..31; x = d (q - 8)."""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_hf import read_checkpoint, to_hf_rotary, encode  # noqa: E402

F32, F16, Q4_0, Q8_0 = 0, 1, 2, 8
ALIGN = 32


def q8_0(x):
    """ggml's reference Q8_0 quantizer (quantize_row_q8_0_ref, as its source
    describes it): per block d = absmax / 127 in fp32, id = 1/d (0 when d is
    0), q = x * id rounded half away from zero; d stored as fp16."""
    b = x.reshape(-1, 32).astype(np.float32)
    d = np.abs(b).max(axis=1) / np.float32(127.0)
    inv = np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, np.float32(1.0)), np.float32(0.0))
    v = b * inv[:, None].astype(np.float32)
    q = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)
    d16 = d.astype(np.float16)
    out = np.zeros((b.shape[0], 34), np.uint8)
    out[:, 0:2] = d16.view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q.view(np.uint8)
    deq = d16.astype(np.float32)[:, None] * q.astype(np.float32)
    return out.tobytes(), deq.reshape(x.shape)


def q4_0(x):
    """ggml's reference Q4_0 quantizer (quantize_row_q4_0_ref, the one
    llama.cpp's quantize uses without an importance matrix, as its source
    describes it): per block of 32, m is the weight of largest magnitude
    (the first such), d = m / -8 in fp32, id = 1/d (0 when d is 0),
    q = min(15, int(x * id + 8.5)) truncated toward zero; d stored as fp16;
    the low nibbles hold weights 0..15, the high nibbles 16..31."""
    b = x.reshape(-1, 32).astype(np.float32)
    idx = np.abs(b).argmax(axis=1)
    d = b[np.arange(b.shape[0]), idx] / np.float32(-8.0)
    inv = np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, np.float32(1.0)), np.float32(0.0))
    v = b * inv[:, None].astype(np.float32) + np.float32(8.5)
    q = np.minimum(15, np.trunc(v)).astype(np.int32)
    assert q.min() >= 0
    q = q.astype(np.uint8)
    d16 = d.astype(np.float16)
    out = np.zeros((b.shape[0], 18), np.uint8)
    out[:, 0:2] = d16.view(np.uint8).reshape(-1, 2)
    out[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    deq = d16.astype(np.float32)[:, None] * (q.astype(np.float32) - 8.0)
    return out.tobytes(), deq.reshape(x.shape)


def tensor_bytes(a, ggml_type):
    """bytes as stored, and the fp32 values they decode to"""
    a = np.ascontiguousarray(a, np.float32)
    if ggml_type == F32:
        return a.astype("<f4").tobytes(), a
    if ggml_type == F16:
        h = a.astype("<f2")
        return h.tobytes(), h.astype(np.float32)
    if ggml_type == Q8_0:
        return q8_0(a)
    return q4_0(a)


def row_bytes(cols, ggml_type):
    return {F32: 4 * cols, F16: 2 * cols, Q8_0: cols // 32 * 34, Q4_0: cols // 32 * 18}[ggml_type]


class GGUF:
    """Keys first, then declare tensors (name, rows, cols, type), then write
    their bytes in order."""

    def __init__(self):
        self.kv = []
        self.tensors = []

    def key(self, name, kind, value):
        self.kv.append((name, kind, value))

    def tensor(self, name, rows, cols, ggml_type):
        self.tensors.append((name, rows, cols, ggml_type))

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def _value(self, kind, v):
        if kind == "u32":
            return struct.pack("<I", 4) + struct.pack("<I", v)
        if kind == "f32":
            return struct.pack("<I", 6) + struct.pack("<f", v)
        if kind == "bool":
            return struct.pack("<I", 7) + struct.pack("<B", 1 if v else 0)
        if kind == "str":
            return struct.pack("<I", 8) + self._str(v)
        if kind == "arr_str":
            return struct.pack("<IIQ", 9, 8, len(v)) + b"".join(self._str(s) for s in v)
        if kind == "arr_f32":
            return struct.pack("<IIQ", 9, 6, len(v)) + np.asarray(v, "<f4").tobytes()
        if kind == "arr_i32":
            return struct.pack("<IIQ", 9, 5, len(v)) + np.asarray(v, "<i4").tobytes()
        raise ValueError(kind)

    def start(self, f):
        head = b"GGUF" + struct.pack("<IQQ", 3, len(self.tensors), len(self.kv))
        for name, kind, v in self.kv:
            head += self._str(name) + self._value(kind, v)
        off = 0
        for name, rows, cols, t in self.tensors:
            dims = [cols] if rows == 1 else [cols, rows]
            head += self._str(name) + struct.pack("<I", len(dims)) + b"".join(
                struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", t, off)
            off += row_bytes(cols, t) * rows
            off += (ALIGN - off % ALIGN) % ALIGN
        head += b"\0" * ((ALIGN - len(head) % ALIGN) % ALIGN)
        f.write(head)

    @staticmethod
    def write_data(f, data):
        f.write(data)
        f.write(b"\0" * ((ALIGN - len(data) % ALIGN) % ALIGN))


def llama_keys(g, c, name):
    g.key("general.architecture", "str", "llama")
    g.key("general.name", "str", name)
    for k, v in [("context_length", c["seq_len"]), ("embedding_length", c["dim"]),
                 ("block_count", c["layers"]), ("feed_forward_length", c["hidden"]),
                 ("rope.dimension_count", c["dim"] // c["heads"]),
                 ("attention.head_count", c["heads"]), ("attention.head_count_kv", c["kv_heads"])]:
        g.key("llama." + k, "u32", v)
    g.key("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5)


def read_tokenizer(path, vocab):
    raw = open(path, "rb").read()
    off, pieces, scores = 4, [], []
    for _ in range(vocab):
        s, n = struct.unpack("<fI", raw[off:off + 8])
        pieces.append(raw[off + 8:off + 8 + n].decode("utf-8"))
        scores.append(s)
        off += 8 + n
    return pieces, scores


def vocab_keys(g, pieces, scores):
    tokens, types = [], []
    for i, p in enumerate(pieces):
        if i == 0:
            tokens.append("<unk>"); types.append(2)
        elif i in (1, 2):
            tokens.append("<s>" if i == 1 else "</s>"); types.append(3)
        elif len(p) == 6 and p.startswith("<0x") and p.endswith(">"):
            tokens.append(p); types.append(6)
        else:
            tokens.append(p.replace(" ", "\u2581")); types.append(1)
    g.key("tokenizer.ggml.model", "str", "llama")
    g.key("tokenizer.ggml.tokens", "arr_str", tokens)
    g.key("tokenizer.ggml.scores", "arr_f32", scores)
    g.key("tokenizer.ggml.token_type", "arr_i32", types)
    g.key("tokenizer.ggml.bos_token_id", "u32", 1)
    g.key("tokenizer.ggml.eos_token_id", "u32", 2)
    g.key("tokenizer.ggml.unknown_token_id", "u32", 0)


def checkpoint(args):
    c, t = read_checkpoint(args.checkpoint)
    pieces, scores = read_tokenizer(args.tokenizer, c["vocab"])
    ptype = {"f32": F32, "f16": F16, "q8_0": Q8_0, "q4_0": Q4_0}[args.proj]
    names = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
             "w1": "ffn_gate", "w2": "ffn_down", "w3": "ffn_up"}
    big = F16 if ptype == F16 else F32   # F16 files keep the embedding in F16 too
    plan = [("token_embd.weight", t["emb"], big), ("output_norm.weight", t["rms_final"], F32)]
    if not c["shared"]:
        plan.append(("output.weight", t["wcls"], big))
    for l in range(c["layers"]):
        plan.append(("blk.%d.attn_norm.weight" % l, t["rms_att"][l], F32))
        plan.append(("blk.%d.ffn_norm.weight" % l, t["rms_ffn"][l], F32))
        for k, n in names.items():
            w = t[k][l]
            ty = ptype if (w.shape[1] % 32 == 0 or ptype == F16) else F32
            plan.append(("blk.%d.%s.weight" % (l, n), w, ty))
    outs = [(args.out, False)] + ([(args.dequantized, True)] if args.dequantized else [])
    for path, deq in outs:
        g = GGUF()
        llama_keys(g, c, "stories260K")
        g.key("general.file_type", "u32", {F32: 0, F16: 1, Q4_0: 2, Q8_0: 7}[ptype] if not deq else 0)
        vocab_keys(g, pieces, scores)
        for name, a, ty in plan:
            rows, cols = (1, a.shape[0]) if a.ndim == 1 else a.shape
            g.tensor(name, rows, cols, F32 if deq else ty)
        with open(path, "wb") as f:
            g.start(f)
            for name, a, ty in plan:
                data, values = tensor_bytes(a, ty)
                g.write_data(f, tensor_bytes(values, F32)[0] if deq else data)
    kept = sum(1 for _, a, ty in plan if ty == F32 and a.ndim == 2 and ptype != F32) - 1 - (not c["shared"])
    print("wrote %s (%s projections, %d kept F32)%s" % (args.out, args.proj, max(kept, 0),
          " and %s (their F32 decoding)" % args.dequantized if args.dequantized else ""))


def synthetic(args):
    rng = np.random.default_rng(args.seed)
    d, h, L, v = args.dim, args.hidden, args.layers, args.vocab
    heads, kv_heads = args.heads, args.kv_heads or args.heads
    kv = d // heads * kv_heads
    c = dict(dim=d, hidden=h, layers=L, heads=heads, kv_heads=kv_heads, vocab=v, seq_len=args.seq_len,
             shared=False)
    shapes = [("emb", (v, d)), ("norm", (d,)), ("cls", (v, d))]
    for l in range(L):
        shapes += [("att_norm", (d,)), ("wq", (d, d)), ("wk", (kv, d)), ("wv", (kv, d)), ("wo", (d, d)),
                   ("ffn_norm", (d,)), ("w1", (h, d)), ("w2", (d, h)), ("w3", (h, d))]

    def make(shape):
        if len(shape) == 1:
            return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        return (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])).astype(np.float32)

    gg = {"emb": "token_embd.weight", "norm": "output_norm.weight", "cls": "output.weight"}
    hf = {"emb": "model.embed_tokens.weight", "norm": "model.norm.weight", "cls": "lm_head.weight"}
    layer_gg = {"att_norm": "attn_norm", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v",
                "wo": "attn_output", "ffn_norm": "ffn_norm", "w1": "ffn_gate", "w2": "ffn_down",
                "w3": "ffn_up"}
    layer_hf = {"att_norm": "input_layernorm", "wq": "self_attn.q_proj", "wk": "self_attn.k_proj",
                "wv": "self_attn.v_proj", "wo": "self_attn.o_proj",
                "ffn_norm": "post_attention_layernorm", "w1": "mlp.gate_proj",
                "w2": "mlp.down_proj", "w3": "mlp.up_proj"}
    names, l = [], -1
    for key, shape in shapes:
        if key == "att_norm":
            l += 1
        if key in gg:
            names.append(hf[key] if args.format == "hf" else gg[key])
        elif args.format == "hf":
            names.append("model.layers.%d.%s.weight" % (l, layer_hf[key]))
        else:
            names.append("blk.%d.%s.weight" % (l, layer_gg[key]))
    total = sum(int(np.prod(s)) for _, s in shapes)
    if args.format == "gguf":
        g = GGUF()
        llama_keys(g, c, "synthetic")
        g.key("general.file_type", "u32", 0)
        pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
        pieces += ["\u2581t%d" % i for i in range(v - len(pieces))]
        types = [2, 3, 3] + [6] * 256 + [1] * (v - 259)
        g.key("tokenizer.ggml.model", "str", "llama")
        g.key("tokenizer.ggml.tokens", "arr_str", pieces)
        g.key("tokenizer.ggml.scores", "arr_f32", [-float(i) for i in range(v)])
        g.key("tokenizer.ggml.token_type", "arr_i32", types)
        for name, (_, shape) in zip(names, shapes):
            rows, cols = (1, shape[0]) if len(shape) == 1 else shape
            g.tensor(name, rows, cols, F32)
        with open(args.out, "wb") as f:
            g.start(f)
            for _, shape in shapes:
                g.write_data(f, make(shape).astype("<f4").tobytes())
    else:
        os.makedirs(args.out, exist_ok=True)
        header, off = {"__metadata__": {"format": "pt"}}, 0
        for name, (_, shape) in zip(names, shapes):
            n = int(np.prod(shape)) * 4
            header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
        text = json.dumps(header).encode()
        text += b" " * ((8 - len(text) % 8) % 8)
        with open(os.path.join(args.out, "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            for key, shape in shapes:
                a = make(shape)
                if key in ("wq", "wk"):
                    a = to_hf_rotary(a, heads if key == "wq" else kv_heads)
                f.write(encode(a, "f32")[1])
        config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
                  "intermediate_size": h, "num_hidden_layers": L, "num_attention_heads": heads,
                  "num_key_value_heads": kv_heads, "vocab_size": v,
                  "max_position_embeddings": args.seq_len, "rms_norm_eps": 1e-5,
                  "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
                  "torch_dtype": "float32"}
        with open(os.path.join(args.out, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
    print("wrote %s: %d parameters, %.2f GB fp32" % (args.out, total, total * 4 / 1e9))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("checkpoint")
    a.add_argument("checkpoint")
    a.add_argument("tokenizer")
    a.add_argument("out")
    a.add_argument("--proj", choices=["f32", "f16", "q8_0", "q4_0"], default="f32")
    a.add_argument("--dequantized")
    s = sub.add_parser("synthetic")
    s.add_argument("out")
    s.add_argument("--dim", type=int, default=1024)
    s.add_argument("--layers", type=int, default=12)
    s.add_argument("--hidden", type=int, default=2816)
    s.add_argument("--vocab", type=int, default=32000)
    s.add_argument("--heads", type=int, default=16)
    s.add_argument("--kv-heads", type=int, default=0)
    s.add_argument("--seq-len", type=int, default=512)
    s.add_argument("--format", choices=["gguf", "hf"], default="gguf")
    s.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    (checkpoint if args.cmd == "checkpoint" else synthetic)(args)


if __name__ == "__main__":
    main()
