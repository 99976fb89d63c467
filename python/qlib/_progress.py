"""Progress reports and cancellation of long calls (qlib_ctx_set_progress).

:func:`run` makes one C call that reports progress (qlib_quantize, and any
later call that reports) with a progress callback installed on the context
for the duration of that call only, and removed afterwards (before the
context is released to other threads). The callback does three things:

- calls the caller's ``progress(stage, fraction)``, if one was given;
- stops the call (returns nonzero, so the library returns
  QLIB_ERR_CANCELLED) when ``progress`` raised, and :func:`run` raises that
  exception once the library has returned;
- stops the call when a signal handler raised (Ctrl-C: KeyboardInterrupt),
  and :func:`run` raises that exception.

Why the signal handlers are wrapped: ctypes releases the GIL for the whole C
call, and CPython runs Python signal handlers only on the main thread when it
executes bytecode there. During a C call the only bytecode the main thread
runs is this callback, so a pending SIGINT is handled on the callback's first
instruction, before any ``try`` in it can catch the KeyboardInterrupt; ctypes
would then print "Exception ignored on calling ctypes callback function" and
the interrupt would be lost. So for a call made on the main thread, every
signal that has a Python handler gets, for the call's duration, a wrapper
that runs the original handler at the same moment and keeps what it raises
instead of letting it escape; the callback sees it and cancels. A handler
that does not raise (one that only counts, or asyncio's) behaves exactly as
before. While the caller's ``progress`` runs, exceptions from handlers
propagate through it as in any Python code (so a slow ``progress`` is
interruptible too). The original handlers are back in place before
:func:`run` returns or raises; a handler the caller installs meanwhile is
kept.

Threads: the C callback is one ctypes function for the whole process; each
call is found by the ``user`` token it passes, so calls on different
contexts in different threads each see their own ``progress``. Python runs
signal handlers on the main thread only: Ctrl-C cancels a call made on the
main thread; a call on another thread runs on (its ``progress`` may raise to
stop it, e.g. when an Event set by the main thread is set).
"""

import itertools
import signal
import threading

try:                 # the C functions under signal's wrappers, which convert
    import _signal   # to enums: 50x faster, and this runs on every call
except ImportError:  # pragma: no cover (other Pythons)
    _signal = signal

from . import _lib
from ._enums import Status


class _Call:
    """One call under way."""

    __slots__ = ("progress", "exc", "deferring")

    def __init__(self, progress, deferring):
        self.progress = progress
        self.exc = None             # what progress or a signal handler raised
        self.deferring = deferring  # on the main thread, with handlers wrapped


_calls = {}                         # token -> _Call, for every call under way
_tokens = itertools.count(1)


class _Signals:
    """The wrapped signal handlers: main-thread state only."""

    depth = 0                       # main-thread calls under way (nested through progress)
    active = set()                  # the signals wrapped now
    saved = {}                      # signum -> the handler the wrapper stands in for (kept:
                                    # a wrapper re-installed later still finds it)
    pending = None                  # what a wrapped handler raised, not yet taken
    in_progress = False             # the caller's progress function is running


_SIGNALS = sorted(int(s) for s in signal.valid_signals())


def _wrapped_handler(signum, frame):
    old = _Signals.saved.get(signum)
    if not callable(old):
        return
    if _Signals.depth == 0 or _Signals.in_progress:
        old(signum, frame)          # raises where it runs, as without the wrapper
        return
    try:
        old(signum, frame)
    except BaseException as e:      # KeyboardInterrupt included
        if _Signals.pending is None:
            _Signals.pending = e


def _take_pending():
    e, _Signals.pending = _Signals.pending, None
    return e


def _wrap_signals():
    """Starts one call: wraps the Python signal handlers when on the main
    thread. Returns None when this call does not defer what they raise,
    else what _unwrap_signals needs."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if _Signals.depth == 0:
        try:
            for signum in _SIGNALS:
                h = _signal.getsignal(signum)
                if callable(h) and h is not _wrapped_handler:
                    _Signals.saved[signum] = h
                    _Signals.active.add(signum)
                    _signal.signal(signum, _wrapped_handler)
        except (ValueError, OSError):   # not the main interpreter
            _restore_signals()
            return None
    _Signals.depth += 1
    # a call made from inside a progress function defers again during its C call
    was, _Signals.in_progress = _Signals.in_progress, False
    return (was,)


def _restore_signals():
    for signum in list(_Signals.active):
        if _signal.getsignal(signum) is _wrapped_handler:
            _signal.signal(signum, _Signals.saved[signum])
        _Signals.active.discard(signum)


def _unwrap_signals(state):
    """Ends one call that _wrap_signals started; returns what a handler
    raised meanwhile that no report took, to be raised after the call (for
    the outermost call; an inner one leaves it to the next report)."""
    _Signals.in_progress = state[0]
    _Signals.depth -= 1
    if _Signals.depth:
        return None
    _restore_signals()
    return _take_pending()


def _on_progress(user, stage, fraction):
    """The qlib_progress_fn of every call: nonzero stops the call."""
    call = _calls.get(user)
    if call is None:
        return 1
    if call.exc is None and call.deferring:
        call.exc = _take_pending()
    if call.exc is not None:
        return 1
    if call.progress is None:
        return 0
    was = _Signals.in_progress
    try:
        if call.deferring:
            _Signals.in_progress = True
        call.progress(stage.decode("ascii", "replace") if stage else "", fraction)
    except BaseException as e:
        call.exc = e
    finally:
        if call.deferring:
            _Signals.in_progress = was
    return 0 if call.exc is None else 1


_c_callback = _lib.progress_fn(_on_progress)
_c_none = _lib.progress_fn()


def check_progress(progress):
    if progress is not None and not callable(progress):
        raise TypeError("progress must be callable or None, got %s" % type(progress).__name__)


def run(ctx, function, args, progress=None, result=None):
    """Calls the C function(ctx handle, *args), which reports progress, with
    ctx marked busy; raises on failure.

    progress: None or ``progress(stage: str, fraction: float)``, called on
    this thread at every report; its return value is ignored, and an
    exception it raises stops the call and is raised here. result: called
    after a successful call, it returns the object that owns what the call
    made (a Tensor, or a list of them); run returns it. If an exception is raised although the
    call succeeded (a signal handler that raised after the last report), that
    object is closed first.
    """
    check_progress(progress)
    L = _lib.lib()
    c = ctx._enter()
    try:
        token = next(_tokens)
        call = _Call(progress, False)
        _calls[token] = call
        try:
            ctx._raise_if(L.qlib_ctx_set_progress(c, _c_callback, token),
                          "qlib_ctx_set_progress")
            wrapped = _wrap_signals()
            call.deferring = wrapped is not None
            try:
                try:
                    status = getattr(L, function)(c, *args)
                finally:
                    L.qlib_ctx_set_progress(c, _c_none, None)
            finally:
                if wrapped is not None:
                    late = _unwrap_signals(wrapped)
                    if call.exc is None:
                        call.exc = late
        finally:
            del _calls[token]
        exc, call.exc = call.exc, None
        if exc is None:
            ctx._raise_if(status, function)
            return result() if result is not None else None
        try:
            made = result() if status == Status.OK and result is not None else None
            for obj in made if isinstance(made, list) else [made] if made is not None else []:
                obj.close()
            # what the allocator or a lent thread pool raised, or another
            # failure, is consumed here and becomes the __context__
            ctx._raise_if(Status.OK if status == Status.ERR_CANCELLED else status, function)
        except BaseException:
            raise exc
        raise exc
    finally:
        exc = None
        ctx._leave()
