#!/usr/bin/env python3
"""Quantize one linear layer with GPTQ from Python and check the result.

    python3 examples/python/quickstart.py        (from the repository root,
                                                  after `make`)

Makes a layer's weights W (N x K, like nn.Linear.weight) and correlated
calibration activations X with a few outlier channels, quantizes W to 4 bits
with GPTQ (and with plain round-to-nearest for comparison), then compares
qlib's matmul on held-out tokens with numpy's fp32 result.
"""

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, os.pardir, "python"))

import qlib  # noqa: E402

N, K = 1024, 1024          # output features, input features
TOKENS, HELD_OUT = 2048, 64


def activations(rng, mix, n):
    """Token rows whose channels are correlated through `mix`, with a few
    channels much larger than the rest (as in real transformer layers)."""
    x = rng.standard_normal((n, K)).astype(np.float32) @ mix
    x[:, :8] *= 10.0
    return x


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    rng = np.random.default_rng(0)
    w = (rng.standard_t(5, size=(N, K)) * 0.02).astype(np.float32)
    mix = (np.eye(K) + rng.standard_normal((K, K)) / np.sqrt(K)).astype(np.float32)
    x_calib = activations(rng, mix, TOKENS)
    x_test = activations(rng, mix, HELD_OUT)
    y_ref = x_test @ w.T                                  # numpy, fp32

    print("qlib %s (%s), kernels: %s, threads: %d"
          % (qlib.version(), qlib.library_path(), qlib.default_context().isa,
             qlib.default_context().threads))
    print("layer %d x %d, %d calibration tokens, %d held-out tokens\n" % (N, K, TOKENS, HELD_OUT))

    with qlib.Calibration(K, what=qlib.CALIB_HESSIAN) as calib:
        for batch in np.array_split(x_calib, 8):          # streamed, as from a model
            calib.add(batch)

        runs = [("rtn", dict(bits=4, group_size=128)),
                ("gptq", dict(bits=4, group_size=128, act_order=True, calib=calib))]
        print("%-6s %5s %6s %9s %10s %10s %10s %9s" % ("method", "bits", "group", "bits/w",
                                                    "size KiB", "weight err", "output err",
                                                    "time s"))
        for method, opts in runs:
            t0 = time.perf_counter()
            try:
                t = qlib.quantize(w, method, **opts)
            except qlib.UnsupportedError as e:
                print("%-6s not available in this build: %s" % (method, e.message))
                continue
            seconds = time.perf_counter() - t0
            w_hat = t.dequantize()
            y = x_test @ t                                # qlib matmul: x · Ŵᵀ
            y_deq = x_test @ w_hat.T                      # numpy on Ŵ
            print("%-6s %5d %6d %9.3f %10.1f %10.4f %10.4f %9.3f"
                  % (method, t.bits, t.group_size, t.bits_per_weight, t.nbytes / 1024,
                     rel(w_hat, w), rel(y, y_ref), seconds))
            with qlib.Context(compute="f32") as f32:
                y32 = t.matmul(x_test, ctx=f32)           # fp32 arithmetic, no int8 x
            print("       qlib matmul vs numpy on Ŵ: relative diff %.1e (int8 activations), "
                  "%.1e (compute=f32)" % (rel(y, y_deq), rel(y32, y_deq)))
    print("\nweight err = ||Ŵ - W|| / ||W||; output err = ||x Ŵᵀ - x Wᵀ|| / ||x Wᵀ|| "
          "on held-out tokens")


if __name__ == "__main__":
    main()
