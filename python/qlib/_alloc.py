"""Custom allocators: Python objects behind a C qlib_allocator table."""

import ctypes
import ctypes.util
import operator
import threading

from . import _lib


class Allocator:
    """Base of allocators a :class:`Context` can use for all its memory.

    Subclasses implement ``alloc(size, alignment) -> int`` (an address
    aligned to ``alignment``, or 0 when out of memory) and ``free(address)``.
    The library may call them from any thread that uses the context; an
    exception raised by ``alloc`` counts as out of memory and is chained to
    the :class:`NoMemError` the call then raises.
    """

    def alloc(self, size, alignment):
        raise NotImplementedError

    def free(self, address):
        raise NotImplementedError


_libc = None


def _c_library():
    global _libc
    if _libc is None:
        try:
            libc = ctypes.CDLL(None)
            libc.posix_memalign
        except (OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.posix_memalign.restype = ctypes.c_int
        libc.posix_memalign.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t,
                                        ctypes.c_size_t]
        libc.free.restype = None
        libc.free.argtypes = [ctypes.c_void_p]
        _libc = libc
    return _libc


class CountingAllocator(Allocator):
    """posix_memalign/free that counts what the library allocates.

    ``allocs``, ``frees``: calls so far; ``live``: blocks not yet freed;
    ``live_bytes`` and ``peak_bytes``; ``bad_frees``: frees of addresses
    this allocator did not hand out (a library bug). ``fail_at=n`` makes
    the n-th allocation (1-based) and, with ``fail_all=True``, every later
    one return NULL, to exercise out-of-memory paths.
    """

    def __init__(self, fail_at=None, fail_all=False):
        self._libc = _c_library()
        self._lock = threading.Lock()
        self._blocks = {}
        self.allocs = 0
        self.frees = 0
        self.failed = 0
        self.bad_frees = 0
        self.live_bytes = 0
        self.peak_bytes = 0
        self.fail_at = fail_at
        self.fail_all = fail_all

    @property
    def live(self):
        return len(self._blocks)

    def alloc(self, size, alignment):
        with self._lock:
            n = self.allocs + self.failed + 1
            if self.fail_at is not None and (n == self.fail_at or
                                             (self.fail_all and n > self.fail_at)):
                self.failed += 1
                return 0
            p = ctypes.c_void_p()
            align = max(alignment, ctypes.sizeof(ctypes.c_void_p))
            if self._libc.posix_memalign(ctypes.byref(p), align, max(size, 1)) != 0 or not p.value:
                self.failed += 1
                return 0
            self.allocs += 1
            self._blocks[p.value] = size
            self.live_bytes += size
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            return p.value

    def free(self, address):
        with self._lock:
            size = self._blocks.pop(address, None)
            if size is None:
                self.bad_frees += 1
                return
            self.frees += 1
            self.live_bytes -= size
        self._libc.free(address)

    def __repr__(self):
        return ("<qlib.CountingAllocator allocs=%d frees=%d live=%d live_bytes=%d peak_bytes=%d>"
                % (self.allocs, self.frees, self.live, self.live_bytes, self.peak_bytes))


class AllocatorHook:
    """The C table for a Python allocator, and the callbacks it points to.

    It must outlive every object allocated through it: the context, and its
    calibrations and tensors (which free themselves through it), so each of
    them holds a reference."""

    def __init__(self, allocator):
        if not callable(getattr(allocator, "alloc", None)) or \
                not callable(getattr(allocator, "free", None)):
            raise TypeError("allocator must have alloc(size, alignment) and free(address) "
                            "methods")
        self.allocator = allocator
        self.error = None
        hook = self

        limit = 2 ** (8 * ctypes.sizeof(ctypes.c_void_p))

        def c_alloc(user, size, alignment):
            try:
                p = allocator.alloc(size, alignment)
                if p and not 0 < operator.index(p) < limit:
                    raise ValueError("%s.alloc returned %#x, which is not an address"
                                     % (type(allocator).__name__, p))
            except BaseException as e:     # a C caller cannot receive it
                hook.error = e
                return None
            return p or None

        def c_free(user, ptr):
            try:
                allocator.free(ptr)
            except BaseException as e:
                hook.error = e

        self._alloc = _lib.alloc_fn(c_alloc)
        self._free = _lib.free_fn(c_free)
        self.table = _lib.qlib_allocator(ctypes.sizeof(_lib.qlib_allocator), self._alloc,
                                         self._free, None)

    def take_error(self):
        e, self.error = self.error, None
        return e
