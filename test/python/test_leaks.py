"""Handles are freed once, by close() or by the garbage collector: no leak
over many create/destroy cycles, seen both from Python (tracemalloc) and
from C (an allocator hook counting alloc/free pairs)."""

import gc
import os
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

from _helpers import METHOD_OPTIONS, ROOT, layer, qlib

CYCLES = 10_000


def one_cycle(w, x, allocator, explicit, method="rtn", threads=1):
    """Every kind of handle made and destroyed once."""
    ctx = qlib.Context(threads=threads, allocator=allocator)
    calib = qlib.Calibration(w.shape[1], max_samples=16, ctx=ctx)
    calib.add(x)
    opts = METHOD_OPTIONS[method]
    t = qlib.quantize(w, method, ctx=ctx, calib=calib, **opts)
    u = qlib.from_bytes(t.to_bytes(), ctx=ctx)
    y = u.matmul(x, ctx=ctx)
    cfg = qlib.Config("gptq")
    if explicit:
        for h in (cfg, u, t, calib, ctx):
            h.close()
    return y


def test_allocator_pairs_over_many_cycles():
    rng = np.random.default_rng(0)
    w = layer(rng, 8, 64)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    a = qlib.CountingAllocator()
    for i in range(CYCLES):
        one_cycle(w, x, a, explicit=i % 2 == 0)
    gc.collect()
    assert a.allocs > 4 * CYCLES
    assert a.live == 0 and a.live_bytes == 0, a
    assert a.allocs == a.frees and a.bad_frees == 0, a


def test_tracemalloc_flat_over_many_cycles():
    rng = np.random.default_rng(1)
    w = layer(rng, 8, 64)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    for i in range(200):                       # warm caches (ctypes, numpy)
        one_cycle(w, x, None, explicit=i % 2 == 0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(CYCLES):
            one_cycle(w, x, None, explicit=i % 2 == 0)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 64 * 1024, after.compare_to(before, "lineno")[:10]


def test_context_cycles_with_thread_pools():
    """Contexts that own a pool of threads (the default thread count)."""
    a = qlib.CountingAllocator()
    for _ in range(2000):
        with qlib.Context(threads=2, allocator=a):
            pass
    assert a.live == 0 and a.allocs == a.frees and a.bad_frees == 0


def test_gc_frees_everything():
    rng = np.random.default_rng(2)
    w = layer(rng, 8, 64)
    a = qlib.CountingAllocator()
    ctx = qlib.Context(threads=1, allocator=a)
    calib = qlib.Calibration(64, ctx=ctx)
    t = qlib.quantize(w, "rtn", ctx=ctx)
    del ctx                 # calib and t keep what they need alive
    gc.collect()
    calib.add(rng.standard_normal((3, 64)))
    t.matmul(np.ones(64, np.float32))
    assert a.live > 0
    del calib
    gc.collect()
    assert a.live > 0       # the tensor still holds its memory
    del t
    gc.collect()
    assert a.live == 0 and a.bad_frees == 0


def test_close_then_gc_frees_once():
    a = qlib.CountingAllocator()
    ctx = qlib.Context(threads=1, allocator=a)
    t = qlib.quantize(layer(np.random.default_rng(3), 8, 64), "rtn", ctx=ctx)
    t.close()
    t.close()
    ctx.close()
    del t, ctx
    gc.collect()
    assert a.live == 0 and a.bad_frees == 0 and a.allocs == a.frees


@pytest.mark.parametrize("method", sorted(METHOD_OPTIONS))
@pytest.mark.parametrize("threads", [1, 2])
def test_out_of_memory_everywhere(method, threads):
    """Failing each allocation of a cycle in turn: each failure is a
    NoMemError and nothing leaks."""
    rng = np.random.default_rng(4)
    w = layer(rng, 8, 64)
    x = rng.standard_normal((24, 64)).astype(np.float32)
    probe = qlib.CountingAllocator()
    try:
        one_cycle(w, x, probe, explicit=True, method=method, threads=threads)
    except qlib.UnsupportedError as e:
        pytest.skip("%s: %s" % (method, e.message))
    gc.collect()
    assert probe.live == 0 and probe.bad_frees == 0, probe
    for i in range(1, probe.allocs + 1):
        a = qlib.CountingAllocator(fail_at=i)
        try:
            one_cycle(w, x, a, explicit=True, method=method, threads=threads)
        except qlib.NoMemError:
            pass
        gc.collect()
        assert a.failed == 1, i
        assert a.live == 0 and a.bad_frees == 0, (i, a)


def test_interpreter_exit_with_live_handles():
    """Handles still alive at exit are destroyed in a safe order (tensors and
    calibrations before their context, allocator callbacks last)."""
    code = textwrap.dedent("""
        import sys
        sys.path.insert(0, %r)
        import numpy as np, qlib
        a = qlib.CountingAllocator()
        ctx = qlib.Context(threads=2, allocator=a)
        calib = qlib.Calibration(64, ctx=ctx)
        calib.add(np.ones((4, 64), np.float32))
        ts = [qlib.quantize(np.ones((8, 64), np.float32) * i, "rtn", ctx=ctx) for i in range(1, 4)]
        cycle = [ctx, calib, ts]
        cycle.append(cycle)
        import atexit
        atexit.register(lambda: None)
        print("ok")
    """ % os.path.join(ROOT, "python"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
    assert "Exception" not in r.stderr and "Error" not in r.stderr, r.stderr
