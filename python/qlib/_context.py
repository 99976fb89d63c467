"""qlib.Context: threads, kernels, compute mode and allocator."""

import ctypes
import operator
import threading
import weakref

from . import _lib
from ._alloc import AllocatorHook
from ._enums import Compute
from ._errors import error_for


def _destroy(fn, ptr, *keepalive):
    """Finalizer body: frees one handle; keepalive holds what must outlive it."""
    fn(ptr)


class _Handle:
    """Owns one C handle: freed once, by close(), by leaving a with block,
    or when the object is garbage-collected (or at interpreter exit)."""

    _kind = "handle"
    _ptr = None

    def _own(self, ptr, destroy, *keepalive):
        self._ptr = ptr
        self._finalizer = weakref.finalize(self, _destroy, destroy, ptr, *keepalive)

    def close(self):
        """Frees the C object now. Further use raises ValueError; closing
        twice does nothing."""
        fin = getattr(self, "_finalizer", None)
        self._ptr = None
        if fin is not None:
            fin()

    @property
    def closed(self):
        return self._ptr is None

    def _handle(self):
        p = self._ptr
        if p is None:
            raise ValueError("operation on a closed qlib.%s" % self._kind)
        return p

    def __enter__(self):
        self._handle()
        return self

    def __reduce__(self):
        raise TypeError("cannot pickle a qlib.%s" % self._kind)

    def __exit__(self, *exc):
        self.close()
        return False


class Context(_Handle):
    """A qlib_ctx: a thread pool, a kernel table, a compute mode, an allocator
    and a scratch buffer.

    ``threads``: 0 = all online CPUs (the default), 1 = the calling thread
    only. ``isa``: "scalar", "avx2", "avx2-vnni", "avx2-avx512vnni", "avx512",
    "neon", "neon-dotprod"; None keeps the best one (or the environment variable
    QLIB_ISA). ``compute``:
    :class:`Compute` or "auto"/"f32". ``allocator``: an object with
    ``alloc(size, alignment)`` and ``free(address)`` (see
    :class:`CountingAllocator`) through which all memory of this context, and
    of the calibrations and tensors made with it, is allocated. ``parallel``:
    see :meth:`set_parallel`.

    A context serves one thread at a time: a call that finds it busy in
    another thread raises RuntimeError instead of corrupting it.
    """

    _kind = "Context"

    def __init__(self, threads=None, isa=None, compute=None, allocator=None, parallel=None):
        self._lock = threading.Lock()
        self._calibs = weakref.WeakSet()
        self._parallel = None
        self._pending = None
        self._alloc_hook = AllocatorHook(allocator) if allocator is not None else None
        L = _lib.lib()
        out = _lib.ctx_p()
        if self._alloc_hook is None:
            st = L.qlib_ctx_create(ctypes.byref(out))
        else:
            st = L.qlib_ctx_create_with_allocator(ctypes.byref(self._alloc_hook.table),
                                                  ctypes.byref(out))
        self._raise_if(st, "qlib_ctx_create")
        self._own(out, L.qlib_ctx_destroy, self._alloc_hook)
        try:
            if threads is not None:
                self.threads = threads
            if isa is not None:
                self.isa = isa
            if compute is not None:
                self.compute = compute
            if parallel is not None:
                self.set_parallel(parallel)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ internals
    def _enter(self):
        """The C handle, with this context marked busy; pair with _leave()."""
        p = self._handle()
        if not self._lock.acquire(False):
            raise RuntimeError(
                "qlib.Context is in use by another thread (or re-entered from a callback); "
                "a context serves one thread at a time: give each thread its own")
        if self._ptr is None:        # closed while we waited
            self._lock.release()
            self._handle()
        return p

    def _leave(self):
        self._lock.release()

    def _enter_for_close(self):
        if not self._lock.acquire(False):
            raise RuntimeError("qlib: cannot close an object while another thread uses its "
                               "context")

    def _raise_if(self, status, function):
        """Raises for a failed call, or for an exception a Python callback
        (allocator, parallel) raised during a successful one."""
        hook_err = self._alloc_hook.take_error() if self._alloc_hook else None
        pending, self._pending = self._pending, None
        cause = pending or hook_err
        if status != 0:
            e = error_for(status, function)
            if cause is not None:
                raise e from cause
            raise e
        if cause is not None:
            raise cause

    def _call(self, function, *args):
        """Calls a C function taking this context first; raises on failure."""
        p = self._enter()
        try:
            st = getattr(_lib.lib(), function)(p, *args)
            self._raise_if(st, function)
        finally:
            self._leave()

    def _keepalive(self):
        """What objects allocated through this context must keep alive."""
        return self._alloc_hook

    # ------------------------------------------------------------ properties
    @property
    def isa(self):
        """The kernels in use ("scalar", "avx2", "neon", ...). Settable; None
        selects the best available."""
        return _lib.lib().qlib_ctx_isa(self._handle()).decode()

    @isa.setter
    def isa(self, name):
        if name is not None and not isinstance(name, str):
            raise TypeError("isa must be a str or None")
        self._call("qlib_ctx_set_isa", None if name is None else name.encode())

    @property
    def threads(self):
        """The effective thread count. Settable: 0 = all online CPUs."""
        return _lib.lib().qlib_ctx_threads(self._handle())

    @threads.setter
    def threads(self, n):
        self._call("qlib_ctx_set_threads", c_int_arg(n, "threads"))

    @property
    def compute(self):
        """The :class:`Compute` mode. Settable (a Compute or "auto"/"f32")."""
        return Compute(_lib.lib().qlib_ctx_compute(self._handle()))

    @compute.setter
    def compute(self, mode):
        if isinstance(mode, str):
            try:
                mode = Compute[mode.upper()]
            except KeyError:
                raise ValueError("compute must be one of %s, got %r"
                                 % ([m.name.lower() for m in Compute], mode)) from None
        self._call("qlib_ctx_set_compute", c_int_arg(mode, "compute"))

    @property
    def allocator(self):
        """The Python allocator given at creation, or None (malloc/free)."""
        self._handle()
        return self._alloc_hook.allocator if self._alloc_hook else None

    def set_parallel(self, run):
        """Lends a thread pool: ``run(task, n_tasks)`` must call ``task(i)``
        once for every i in range(n_tasks), on any threads, and return when
        all calls have returned; ``task`` releases the GIL while it runs.
        For example, with a concurrent.futures.ThreadPoolExecutor ``pool``:
        ``ctx.set_parallel(lambda task, n: list(pool.map(task, range(n))))``.
        None returns to the built-in pool. If run raises, the tasks it never
        started run on the calling thread and the exception is raised after
        the qlib call returns."""
        if run is None:
            self._call("qlib_ctx_set_parallel", None)
            self._parallel = None
            return
        if not callable(run):
            raise TypeError("run must be callable or None")
        ctx_ref = weakref.ref(self)

        def c_run(user, task, arg, n_tasks):
            started = bytearray(n_tasks)

            def one(i):
                started[i] = 1
                task(arg, i)
            try:
                run(one, n_tasks)
            except BaseException as e:
                for i in range(n_tasks):
                    if not started[i]:
                        task(arg, i)
                ctx = ctx_ref()
                if ctx is not None and ctx._pending is None:
                    ctx._pending = e

        c_fn = _lib.run_fn(c_run)
        table = _lib.qlib_parallel(ctypes.sizeof(_lib.qlib_parallel), c_fn, None)
        self._call("qlib_ctx_set_parallel", ctypes.byref(table))
        self._parallel = (run, c_fn, table)

    def close(self):
        """Destroys the context, after closing the calibrations made with it
        (the C library requires a context to outlive its calibrations).
        Tensors are independent of the context and stay usable."""
        if self._ptr is None:
            return
        for c in list(self._calibs):
            c.close()
        self._enter_for_close()
        try:
            super().close()
        finally:
            self._lock.release()

    def __repr__(self):
        if self._ptr is None:
            return "<qlib.Context closed>"
        return "<qlib.Context isa=%s threads=%d compute=%s%s>" % (
            self.isa, self.threads, self.compute.name.lower(),
            " allocator=%s" % type(self.allocator).__name__ if self._alloc_hook else "")


_C_TYPES = {"int": ctypes.c_int, "unsigned": ctypes.c_uint, "size_t": ctypes.c_size_t}


def c_range(ctype):
    """[lo, hi) of the C integer type named ctype ("int", "unsigned", "size_t")."""
    bits = 8 * ctypes.sizeof(_C_TYPES[ctype])
    return (-(2 ** (bits - 1)), 2 ** (bits - 1)) if ctype == "int" else (0, 2 ** bits)


def c_int_arg(v, name, ctype="int"):
    """v as a Python int that the C type ctype holds exactly. ctypes would
    keep only the low bits of a larger one (k=2**64 + 64 would become 64),
    so an out-of-range value raises ValueError naming the argument."""
    v = _int_arg(v, name)
    lo, hi = c_range(ctype)
    if not lo <= v < hi:
        raise ValueError("%s=%d is out of range: a C %s holds %d to %d"
                         % (name, v, ctype, lo, hi - 1))
    return v


def _int_arg(v, name):
    if type(v).__name__ == "bool_":           # numpy.bool_ has no __index__
        return int(bool(v))
    if isinstance(v, float):
        raise TypeError("%s must be an integer, got %r" % (name, v))
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError("%s must be an integer, got %s" % (name, type(v).__name__)) from None


_default = threading.local()


def default_context():
    """This thread's default Context (made on first use), used wherever a
    ctx argument is None."""
    ctx = getattr(_default, "ctx", None)
    if ctx is None or ctx.closed:
        ctx = _default.ctx = Context()
    return ctx


def resolve(ctx):
    if ctx is None:
        return default_context()
    if not isinstance(ctx, Context):
        raise TypeError("ctx must be a qlib.Context or None, got %s" % type(ctx).__name__)
    return ctx
