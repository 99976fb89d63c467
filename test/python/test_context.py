"""qlib.Context, the version functions and qlib.Config."""

import concurrent.futures
import threading

import numpy as np
import pytest

from _helpers import layer, qlib


def test_version():
    assert qlib.version() == qlib.HEADER_VERSION or qlib.version_number() >= 100
    major, minor, patch = (int(p) for p in qlib.version().split("."))
    assert qlib.version_number() == major * 10000 + minor * 100 + patch


def test_library_path():
    import os
    assert os.path.exists(qlib.library_path()) or "/" not in qlib.library_path()


def test_defaults():
    with qlib.Context() as ctx:
        assert ctx.threads >= 1
        assert ctx.isa in ("scalar", "avx2", "avx2-vnni", "avx2-avx512vnni", "avx512", "neon",
                           "neon-dotprod")
        assert ctx.compute == qlib.Compute.AUTO
        assert "qlib.Context" in repr(ctx)
        assert ctx.allocator is None


def test_settings():
    with qlib.Context(threads=1, isa="scalar", compute="f32") as ctx:
        assert ctx.threads == 1
        assert ctx.isa == "scalar"
        assert ctx.compute == qlib.Compute.F32
        ctx.threads = 3
        assert ctx.threads == 3
        ctx.compute = qlib.COMPUTE_AUTO
        assert ctx.compute is qlib.Compute.AUTO
        ctx.isa = None
        assert ctx.isa != ""


def test_bad_settings():
    with qlib.Context() as ctx:
        with pytest.raises(qlib.ArgError) as e:
            ctx.threads = -1
        assert e.value.status == qlib.Status.ERR_ARG
        assert "n_threads=-1" in e.value.message
        with pytest.raises(qlib.UnsupportedError) as e:
            ctx.isa = "vax"
        assert "vax" in e.value.message
        with pytest.raises(ValueError):
            ctx.compute = "fast"
        with pytest.raises(qlib.ArgError):
            ctx.compute = 7
        with pytest.raises(TypeError):
            ctx.threads = 1.5
        with pytest.raises(TypeError):
            ctx.isa = 3
    with pytest.raises(qlib.UnsupportedError):
        qlib.Context(isa="no-such-isa")


def test_close_and_reuse():
    ctx = qlib.Context()
    ctx.close()
    assert ctx.closed
    ctx.close()                       # twice is fine
    with pytest.raises(ValueError, match="closed"):
        ctx.threads
    with pytest.raises(ValueError, match="closed"):
        with ctx:
            pass
    assert repr(ctx) == "<qlib.Context closed>"


def test_default_context_per_thread():
    a = qlib.default_context()
    assert qlib.default_context() is a
    other = []
    t = threading.Thread(target=lambda: other.append(qlib.default_context()))
    t.start()
    t.join()
    assert other[0] is not a


def test_busy_context_raises():
    """A context used from two threads at once raises instead of corrupting."""
    rng = np.random.default_rng(0)
    t = qlib.quantize(layer(rng, 64, 64), "rtn")
    with qlib.Context(threads=1) as ctx:
        ctx._lock.acquire()           # as if another thread were inside a call
        try:
            with pytest.raises(RuntimeError, match="in use"):
                t.matmul(np.ones(64, np.float32), ctx=ctx)
        finally:
            ctx._lock.release()
        t.matmul(np.ones(64, np.float32), ctx=ctx)


def test_parallel_hook_with_executor():
    rng = np.random.default_rng(1)
    w = layer(rng, 256, 256)
    x = rng.standard_normal((8, 256)).astype(np.float32)
    t = qlib.quantize(w, "rtn")
    calls = []
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        def run(task, n):
            calls.append(n)
            list(pool.map(task, range(n)))
        with qlib.Context(threads=4, parallel=run) as ctx:
            y = t.matmul(x, ctx=ctx)
            ctx.set_parallel(None)
            y2 = t.matmul(x, ctx=ctx)
    assert calls, "the lent pool was never used"
    np.testing.assert_array_equal(y, y2)   # bit-identical for any way of splitting


def test_parallel_hook_that_raises():
    rng = np.random.default_rng(2)
    t = qlib.quantize(layer(rng, 256, 256), "rtn")
    x = rng.standard_normal((4, 256)).astype(np.float32)

    def run(task, n):
        task(0)
        raise KeyError("pool broke")
    with qlib.Context(threads=4, parallel=run) as ctx:
        with pytest.raises(KeyError, match="pool broke"):
            t.matmul(x, ctx=ctx)
        ctx.set_parallel(None)
        np.testing.assert_allclose(t.matmul(x, ctx=ctx), x @ t.dequantize().T,
                                   rtol=1e-2, atol=1e-2)


def test_config_defaults_and_options():
    with qlib.Config("gptq") as cfg:
        assert cfg.method == qlib.Method.GPTQ
        d = cfg.as_dict()
        assert qlib.Param.BITS in d and qlib.Param.GPTQ_DAMP in d
        assert qlib.Param.AWQ_GRID not in d
        cfg["bits"] = 3
        assert cfg[qlib.PARAM_BITS] == 3
        cfg.set(qlib.Param.GPTQ_DAMP, 0.05)
        assert cfg.get("gptq_damp") == pytest.approx(0.05)
        with pytest.raises(qlib.ArgError):
            cfg["bits"] = 5
        assert cfg["bits"] == 3                       # unchanged on error
        with pytest.raises(qlib.UnsupportedError):
            cfg["awq_grid"] = 10
        with pytest.raises(TypeError):
            cfg["bits"] = 4.0
        with pytest.raises(ValueError):
            cfg["no_such"] = 1
        assert "gptq" in repr(cfg)
    defaults = qlib.method_defaults("llm_int8")
    assert defaults["bits"] == 8
    assert defaults["outlier_threshold"] == pytest.approx(6.0)
    with pytest.raises(ValueError):
        qlib.Config("zip")
    with pytest.raises(TypeError):
        qlib.Config(2.0)


def test_library_lookup_errors(tmp_path):
    """QLIB_LIBRARY naming a missing file is an error, not a fall-back."""
    import os
    import subprocess
    import sys
    from _helpers import ROOT
    code = ("import sys; sys.path.insert(0, %r); import qlib\n"
            "try:\n    qlib.Context()\nexcept qlib.LibraryNotFoundError as e:\n"
            "    print('refused:', e)\n" % os.path.join(ROOT, "python"))
    env = dict(os.environ, QLIB_LIBRARY=str(tmp_path / "libnothing.so"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("refused: QLIB_LIBRARY=")
