"""quantize(progress=...) and cancellation: reports, exceptions from the
callback, Ctrl-C and other signal handlers, threads."""

import gc
import math
import os
import signal
import sys
import threading

import numpy as np
import pytest

from _helpers import calib_for, layer, qlib, quantize_or_skip
from qlib import _progress

# The stage names the library documents (include/qlib.h, docs/PYTHON.md). A
# new stage is added here and in the docs' list.
STAGES = {"hessian", "gptq", "awq-scale", "awq-clip", "rtn", "pack", "done"}

N, K = 64, 512
GROUP = 32
OPTS = {
    "rtn": dict(bits=4, group_size=GROUP),
    "gptq": dict(bits=4, group_size=GROUP, block_size=128),
    "awq": dict(bits=4, group_size=GROUP, grid=10),
    "llm_int8": dict(),
    "none": dict(bits=32),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    w = layer(rng, N, K)
    calib, _ = calib_for(rng, K, tokens=256)
    yield w, calib
    calib.close()


# An exception escaping the ctypes callback would be printed and lost
# ("Exception ignored on calling ctypes callback function"): none may.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def restored():
    """Signal handlers and the binding's state are as before each test."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGALRM, signal.SIGUSR1)}
    yield
    for s, h in before.items():
        assert signal.getsignal(s) is h, "handler of %s not restored" % s
    assert not _progress._calls and not _progress._Signals.active
    assert _progress._Signals.depth == 0 and _progress._Signals.pending is None


@pytest.fixture
def sigint():
    """Python's own SIGINT handler for the test (a process started in the
    background may have SIGINT ignored)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def recorder():
    reports = []

    def progress(stage, fraction):
        reports.append((stage, fraction, threading.get_ident()))
    return reports, progress


def check_reports(reports):
    assert reports, "no report"
    last = 0.0
    for stage, fraction, ident in reports:
        assert type(stage) is str and stage in STAGES, stage
        assert type(fraction) is float and 0.0 <= fraction <= 1.0, fraction
        assert fraction >= last, (stage, fraction, last)
        assert ident == threading.get_ident()
        last = fraction
    assert reports[-1][:2] == ("done", 1.0)
    assert [r for r in reports if r[0] == "done"] == reports[-1:]


@pytest.mark.parametrize("method", sorted(OPTS))
def test_reports(data, method):
    w, calib = data
    reports, progress = recorder()
    t = quantize_or_skip(w, method, calib=calib, progress=progress, **OPTS[method])
    check_reports(reports)
    stages = [r[0] for r in reports]
    # the units of work include/qlib.h names: GPTQ one report per block of
    # columns, AWQ one per grid point and one per group
    if method == "gptq":
        assert stages.count("gptq") >= math.ceil(K / OPTS["gptq"]["block_size"]), stages
        assert stages[0] == "hessian"
    if method == "awq":
        assert stages.count("awq-scale") >= OPTS["awq"]["grid"], stages
        assert stages.count("awq-clip") >= K // GROUP, stages
    if method == "rtn":
        assert "rtn" in stages
    # reporting changes nothing in the result
    assert t.to_bytes() == qlib.quantize(w, method, calib=calib, **OPTS[method]).to_bytes()


def test_return_value_ignored(data):
    w, calib = data
    seen = []
    t = qlib.quantize(w, "gptq", calib=calib, progress=lambda s, f: seen.append(s) or True,
                      **OPTS["gptq"])
    assert t.shape == (N, K) and seen[-1] == "done"


def test_progress_must_be_callable(data):
    w, calib = data
    with pytest.raises(TypeError, match="progress must be callable"):
        qlib.quantize(w, "rtn", progress=42)


class Stop(Exception):
    pass


def stop_at(where, reports):
    """A progress that raises Stop at the first, a middle or the last report."""
    def progress(stage, fraction):
        reports.append(stage)
        if (where == "first" or (where == "middle" and 0.3 <= fraction < 0.9)
                or (where == "last" and stage == "done")):
            raise Stop("%s at %s %.3f" % (where, stage, fraction))
    return progress


@pytest.mark.parametrize("method, where", [
    ("rtn", "first"), ("rtn", "last"),          # RTN reports once, then "done"
    ("gptq", "first"), ("gptq", "middle"), ("gptq", "last"),
    ("awq", "first"), ("awq", "middle"), ("awq", "last")])
def test_exception_cancels_and_propagates(method, where):
    rng = np.random.default_rng(5)
    w = layer(rng, N, K)
    a = qlib.CountingAllocator()
    with qlib.Context(threads=2, allocator=a) as ctx:
        calib, _ = calib_for(rng, K, tokens=256, ctx=ctx)
        expect = quantize_or_skip(w, method, calib=calib, ctx=ctx, **OPTS[method]).to_bytes()
        gc.collect()
        live = a.live
        reports = []
        progress = stop_at(where, reports)
        with pytest.raises(Stop) as info:
            qlib.quantize(w, method, calib=calib, ctx=ctx, progress=progress, **OPTS[method])
        # the exception raised in progress, with progress in its traceback,
        # and the library's cancellation as what it interrupted
        assert info.value.args[0].startswith(where)
        assert any(tb.tb_frame.f_code is progress.__code__
                   for tb in _tracebacks(info.value.__traceback__))
        if where == "middle":
            assert "done" not in reports and len(reports) > 1
        if where == "first":
            assert len(reports) == 1
        gc.collect()
        assert a.live == live, a            # no tensor, nothing half-made
        n = len(reports)
        # the context works, and without progress nothing is reported
        again = qlib.quantize(w, method, calib=calib, ctx=ctx, **OPTS[method])
        assert again.to_bytes() == expect
        assert len(reports) == n
        calib.close()
    del again, info
    gc.collect()
    assert a.live == 0 and a.bad_frees == 0


def _tracebacks(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


def test_cancelled_error_on_purpose(data):
    w, calib = data

    def progress(stage, fraction):
        if stage == "gptq":
            raise qlib.CancelledError("enough")
    with pytest.raises(qlib.CancelledError) as info:
        qlib.quantize(w, "gptq", calib=calib, progress=progress, **OPTS["gptq"])
    assert info.value.status == qlib.Status.ERR_CANCELLED and info.value.message == "enough"
    # the library's own status maps to the same class
    assert isinstance(qlib._errors.error_for(qlib.ERR_CANCELLED, "f", "m"), qlib.CancelledError)


def test_reentry_from_progress(data):
    """progress may quantize on another context; the busy context refuses."""
    w, calib = data
    inner = []
    with qlib.Context(threads=1) as other, qlib.Context(threads=1) as ctx:
        def progress(stage, fraction):
            if stage == "gptq" and not inner:
                inner.append(qlib.quantize(w, "rtn", ctx=other, progress=lambda s, f: None))
        t = qlib.quantize(w, "gptq", calib=calib, ctx=ctx, progress=progress, **OPTS["gptq"])
        assert t.shape == inner[0].shape == (N, K)

        def same(stage, fraction):
            qlib.quantize(w, "rtn", ctx=ctx)
        with pytest.raises(RuntimeError, match="in use"):
            qlib.quantize(w, "gptq", calib=calib, ctx=ctx, progress=same, **OPTS["gptq"])
        assert qlib.quantize(w, "rtn", ctx=ctx).shape == (N, K)


def test_threads_see_their_own_reports(data):
    """Two threads, two contexts: each call reports to its own progress on
    its own thread; an exception cancels only its own call."""
    w, _ = data
    results = {}
    barrier = threading.Barrier(2)

    def work(name, fail, seed):
        reports = []
        with qlib.Context(threads=1) as ctx:
            c, _ = calib_for(np.random.default_rng(seed), K, tokens=128, ctx=ctx)
            barrier.wait()

            def progress(stage, fraction):
                reports.append((stage, fraction, threading.get_ident()))
                if fail and fraction > 0.5:
                    raise Stop(name)
            try:
                qlib.quantize(w, "gptq", calib=c, ctx=ctx, progress=progress, **OPTS["gptq"])
                results[name] = ("done", reports, threading.get_ident())
            except Stop as e:
                results[name] = (e, reports, threading.get_ident())
            c.close()

    threads = [threading.Thread(target=work, args=("a", False, 1)),
               threading.Thread(target=work, args=("b", True, 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcome, reports, ident = results["a"]
    assert outcome == "done"
    assert all(r[2] == ident for r in reports) and reports[-1][:2] == ("done", 1.0)
    outcome, reports, ident = results["b"]
    assert isinstance(outcome, Stop) and outcome.args == ("b",)
    assert all(r[2] == ident for r in reports) and reports[-1][0] != "done"


# ---------------------------------------------------------------- signals
# A GPTQ layer whose remaining work after the first report is much longer
# than it takes a thread that is already running to send a signal.
BIG = 1536


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(3)
    w = layer(rng, BIG, BIG)
    calib, _ = calib_for(rng, BIG, tokens=256, what=qlib.CALIB_HESSIAN)
    ref = qlib.quantize(w, "gptq", calib=calib).to_bytes()
    yield w, calib, ref
    calib.close()


def signal_at_first_report(send):
    """A progress function that, at the first report, makes a thread call
    send() as soon as the library resumes (the thread runs when the callback
    returns and releases the GIL); the thread and the reports are returned."""
    reports = []
    ready = threading.Event()
    sender = threading.Thread(target=lambda: (ready.wait(), send()))

    def progress(stage, fraction):
        reports.append(stage)
        if len(reports) == 1:
            sender.start()
            ready.set()
    return progress, reports, sender


def test_ctrl_c_cancels(big, sigint):
    """SIGINT while the library computes: KeyboardInterrupt, raised through
    the cancel path (the call stops before its last report), and the context
    works afterwards."""
    w, calib, ref = big
    progress, reports, sender = signal_at_first_report(
        lambda: os.kill(os.getpid(), signal.SIGINT))
    with qlib.Context(threads=2) as ctx:
        with pytest.raises(KeyboardInterrupt):
            try:
                qlib.quantize(w, "gptq", calib=calib, ctx=ctx, progress=progress)
            finally:
                if sender.ident is not None:
                    sender.join()
        assert "done" not in reports, reports
        assert qlib.quantize(w, "gptq", calib=calib, ctx=ctx).to_bytes() == ref


def test_ctrl_c_without_progress(big, sigint):
    """The same without progress=: every quantize listens. The signal is
    sent once the call is under way (its signal handlers wrapped, just
    before the library is called)."""
    w, calib, ref = big
    stop = threading.Event()

    def send_when_under_way():
        while not stop.wait(0.0005):
            if _progress._Signals.depth:
                os.kill(os.getpid(), signal.SIGINT)
                return
    sender = threading.Thread(target=send_when_under_way)
    with qlib.Context(threads=2) as ctx:
        sender.start()
        with pytest.raises(KeyboardInterrupt):
            try:
                qlib.quantize(w, "gptq", calib=calib, ctx=ctx)
            finally:
                stop.set()
                sender.join()
        assert qlib.quantize(w, "gptq", calib=calib, ctx=ctx).to_bytes() == ref


def test_ctrl_c_inside_progress(data, sigint):
    """SIGINT while progress itself runs: KeyboardInterrupt raised in
    progress (as in any Python code), which cancels the call."""
    w, calib = data

    def progress(stage, fraction):
        if stage == "gptq":
            signal.raise_signal(signal.SIGINT)     # delivered before it returns
            for _ in range(1000):                  # the handler runs in here at the latest
                pass
    with pytest.raises(KeyboardInterrupt) as info:
        qlib.quantize(w, "gptq", calib=calib, progress=progress, **OPTS["gptq"])
    assert any(tb.tb_frame.f_code is progress.__code__
               for tb in _tracebacks(info.value.__traceback__))


def test_handler_that_does_not_raise(big):
    """A SIGINT handler that only counts runs during the call and does not
    stop it."""
    w, calib, ref = big
    calls = []
    old = signal.signal(signal.SIGINT, lambda s, f: calls.append(s))
    try:
        progress, reports, sender = signal_at_first_report(
            lambda: os.kill(os.getpid(), signal.SIGINT))
        t = qlib.quantize(w, "gptq", calib=calib, progress=progress)
        sender.join()
        for _ in range(1000):          # a signal sent after the call is handled here
            if calls:
                break
    finally:
        signal.signal(signal.SIGINT, old)
    assert calls == [signal.SIGINT]
    assert reports[-1] == "done" and t.to_bytes() == ref


def test_alarm_handler_exception(big):
    """setitimer's SIGALRM with a handler that raises (a timeout): that
    exception cancels the call and propagates."""
    w, calib, ref = big

    def on_alarm(signum, frame):
        raise TimeoutError("quantize took too long")

    def progress(stage, fraction):
        if stage == "hessian":
            signal.setitimer(signal.ITIMER_REAL, 0.001)
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with pytest.raises(TimeoutError, match="too long"):
            qlib.quantize(w, "gptq", calib=calib, progress=progress)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert qlib.quantize(w, "gptq", calib=calib).to_bytes() == ref


def test_late_signal_frees_the_tensor(data):
    """An exception a handler raised after the last report (kept by the
    wrapper) is raised once the call returns, and the tensor the call made
    is freed."""
    w, calib = data
    a = qlib.CountingAllocator()
    with qlib.Context(threads=1, allocator=a) as ctx:
        gc.collect()
        live = a.live

        def progress(stage, fraction):
            if stage == "done":
                # what _wrapped_handler keeps when a handler raises between
                # the last report and the return
                _progress._Signals.pending = KeyboardInterrupt()
        with pytest.raises(KeyboardInterrupt):
            qlib.quantize(w, "rtn", ctx=ctx, progress=progress)
        gc.collect()
        assert a.live == live, a


def test_handler_captured_during_the_call(data, sigint):
    """A handler read with getsignal during the call (the wrapper) and
    installed again after it still runs the original handler."""
    w, calib = data
    captured = []
    qlib.quantize(w, "rtn", progress=lambda s, f: captured.append(signal.getsignal(signal.SIGINT)))
    assert captured[0] is not signal.default_int_handler        # wrapped during the call
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, captured[0])
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        for _ in range(1000):
            pass
