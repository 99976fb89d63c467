"""Helpers shared by the binding's tests."""

import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if os.path.join(ROOT, "python") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "python"))

import qlib  # noqa: E402

HEADER = os.path.join(ROOT, "include", "qlib.h")

# Options that let every method run on a small layer.
METHOD_OPTIONS = {
    "none": dict(bits=32),
    "rtn": dict(bits=4, group_size=32),
    "gptq": dict(bits=4, group_size=32),
    "awq": dict(bits=4, group_size=32),
    "llm_int8": dict(),
}


def correlated_activations(rng, tokens, k, outliers=2):
    """Token rows with correlated channels and a few large outlier channels,
    like a transformer layer's inputs."""
    mix = rng.standard_normal((k, k)).astype(np.float32) / np.sqrt(k)
    x = rng.standard_normal((tokens, k)).astype(np.float32) @ (np.eye(k, dtype=np.float32) + mix)
    x[:, :outliers] *= 20.0
    return np.ascontiguousarray(x, dtype=np.float32)


def layer(rng, n, k):
    """A weight matrix with heavy-ish tails."""
    return (rng.standard_t(5, size=(n, k)) * 0.02).astype(np.float32)


def quantize_or_skip(w, method, **kw):
    """qlib.quantize, skipping the test when this build lacks the method."""
    try:
        return qlib.quantize(w, method, **kw)
    except qlib.UnsupportedError as e:
        pytest.skip("%s: %s" % (method, e.message))


def calib_for(rng, k, tokens=256, ctx=None, what=qlib.CALIB_ALL):
    c = qlib.Calibration(k, what=what, max_samples=128, ctx=ctx)
    x = correlated_activations(rng, tokens, k)
    c.add(x)
    return c, x
