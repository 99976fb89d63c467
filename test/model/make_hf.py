#!/usr/bin/env python3
"""Writes a Hugging Face Llama directory from a llama2.c checkpoint (legacy
format), with numpy only, independently of qlib-llama:

    make_hf.py CHECKPOINT OUTDIR [--dtype f32|f16|bf16] [--shards N]

config.json as transformers' LlamaConfig, and model.safetensors (or N shards
and model.safetensors.index.json). wq and wk are stored in HF's rotary order:
transformers rotates the pairs (i, i + head_size/2) of each head where
llama2.c rotates (2i, 2i + 1), so each head's rows are permuted, the rows
(2i, 2i + 1) becoming i and head_size/2 + i (as the conversion scripts of
llama2.c and transformers describe)."""
import argparse
import json
import os
import struct

import numpy as np


def read_checkpoint(path):
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    w = np.frombuffer(raw, dtype="<f4", offset=28)
    head = dim // heads
    kv_dim = head * kv_heads
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        a = w[pos:pos + n].reshape(shape)
        pos += n
        return a

    t = {}
    t["emb"] = take(vocab, dim)
    t["rms_att"] = take(layers, dim)
    t["wq"] = take(layers, dim, dim)
    t["wk"] = take(layers, kv_dim, dim)
    t["wv"] = take(layers, kv_dim, dim)
    t["wo"] = take(layers, dim, dim)
    t["rms_ffn"] = take(layers, dim)
    t["w1"] = take(layers, hidden, dim)
    t["w2"] = take(layers, dim, hidden)
    t["w3"] = take(layers, hidden, dim)
    t["rms_final"] = take(dim)
    take(seq_len * head // 2)   # freq_cis_real
    take(seq_len * head // 2)   # freq_cis_imag
    if not shared:
        t["wcls"] = take(vocab, dim)
    assert pos == w.size, "checkpoint size does not match its header"
    cfg = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
               vocab=vocab, seq_len=seq_len, shared=shared)
    return cfg, t


def to_hf_rotary(w, heads):
    """Rows (h, 2i + half) of llama2.c -> (h, half, i) of HF."""
    rows, cols = w.shape
    head = rows // heads
    return w.reshape(heads, head // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def encode(a, dtype):
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dtype == "f32":
        return "F32", a.astype("<f4").tobytes()
    if dtype == "f16":
        return "F16", a.astype("<f2").tobytes()
    # bfloat16: the high half of the float32 bits, rounded to nearest even
    bits = a.view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return "BF16", bits.astype("<u2").tobytes()


def write_safetensors(path, tensors, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors:
        tag, data = encode(a, dtype)
        header[name] = {"dtype": tag, "shape": list(a.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("outdir")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--shards", type=int, default=1)
    args = ap.parse_args()
    c, t = read_checkpoint(args.checkpoint)
    tensors = [("model.embed_tokens.weight", t["emb"])]
    for l in range(c["layers"]):
        p = "model.layers.%d." % l
        tensors += [
            (p + "input_layernorm.weight", t["rms_att"][l]),
            (p + "self_attn.q_proj.weight", to_hf_rotary(t["wq"][l], c["heads"])),
            (p + "self_attn.k_proj.weight", to_hf_rotary(t["wk"][l], c["kv_heads"])),
            (p + "self_attn.v_proj.weight", t["wv"][l]),
            (p + "self_attn.o_proj.weight", t["wo"][l]),
            (p + "post_attention_layernorm.weight", t["rms_ffn"][l]),
            (p + "mlp.gate_proj.weight", t["w1"][l]),
            (p + "mlp.down_proj.weight", t["w2"][l]),
            (p + "mlp.up_proj.weight", t["w3"][l]),
        ]
    tensors.append(("model.norm.weight", t["rms_final"]))
    if not c["shared"]:
        tensors.append(("lm_head.weight", t["wcls"]))
    os.makedirs(args.outdir, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c["dim"], "intermediate_size": c["hidden"],
        "num_hidden_layers": c["layers"], "num_attention_heads": c["heads"],
        "num_key_value_heads": c["kv_heads"], "vocab_size": c["vocab"],
        "max_position_embeddings": c["seq_len"], "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": c["shared"], "rope_scaling": None,
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[args.dtype],
        "bos_token_id": 1, "eos_token_id": 2,
    }
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if args.shards <= 1:
        write_safetensors(os.path.join(args.outdir, "model.safetensors"), tensors, args.dtype)
    else:
        per = -(-len(tensors) // args.shards)
        weight_map = {}
        for s in range(args.shards):
            name = "model-%05d-of-%05d.safetensors" % (s + 1, args.shards)
            part = tensors[s * per:(s + 1) * per]
            write_safetensors(os.path.join(args.outdir, name), part, args.dtype)
            weight_map.update({n: name for n, _ in part})
        with open(os.path.join(args.outdir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=2)
    print("wrote %s: %d tensors, %s, %d shard(s)" % (args.outdir, len(tensors), args.dtype,
                                                     max(args.shards, 1)))


if __name__ == "__main__":
    main()
