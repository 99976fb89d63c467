"""qlib.Calibration: what GPTQ and AWQ learn from a layer's input activations."""

import collections
import ctypes

import numpy as np

from . import _arrays, _lib
from ._context import _Handle, c_int_arg, resolve
from ._enums import Calib
from ._errors import check

ActStats = collections.namedtuple("ActStats", "mean_abs max_abs")


class Calibration(_Handle):
    """A qlib_calib for a layer with k input features.

    ``what``: a combination of CALIB_HESSIAN (GPTQ), CALIB_ACT_STATS and
    CALIB_SAMPLES (AWQ); CALIB_ALL by default. ``max_samples``: token rows
    kept in the reservoir for CALIB_SAMPLES. The calibration uses ``ctx``
    (this thread's default context when None) and keeps it alive; closing
    that context closes the calibration too.
    """

    _kind = "Calibration"

    def __init__(self, k, what=Calib.ALL, max_samples=512, ctx=None):
        ctx = resolve(ctx)
        k = c_int_arg(k, "k", "size_t")
        what = c_int_arg(what, "what", "unsigned")
        max_samples = c_int_arg(max_samples, "max_samples", "size_t")
        out = _lib.calib_p()
        p = ctx._enter()
        try:
            st = _lib.lib().qlib_calib_create(p, k, what, max_samples, ctypes.byref(out))
            ctx._raise_if(st, "qlib_calib_create")
        finally:
            ctx._leave()
        # The finalizer holds ctx: the C context outlives the C calibration.
        self._own(out, _lib.lib().qlib_calib_destroy, ctx)
        self._ctx = ctx
        self._k = k
        self._what = Calib(what) if what in Calib._value2member_map_ else what
        self._max_samples = max_samples
        ctx._calibs.add(self)

    @property
    def context(self):
        self._handle()
        return self._ctx

    @property
    def k(self):
        """Input features per token."""
        self._handle()
        return self._k

    @property
    def what(self):
        self._handle()
        return self._what

    @property
    def max_samples(self):
        self._handle()
        return self._max_samples

    @property
    def tokens(self):
        """Token rows seen so far."""
        return _lib.lib().qlib_calib_tokens(self._handle())

    def add(self, x):
        """Streams token rows: x of shape (k,), (n_tokens, k) or (..., k);
        any floating dtype (see docs/PYTHON.md), any strides. NumericError on
        NaN/Inf (nothing of this batch is kept)."""
        p = self._handle()
        x2, _ = _arrays.token_rows(x, "x", self._k)
        x2, ld = _arrays.rows_view(x2)
        n = x2.shape[0]
        if n == 0:
            return
        ctx = self._ctx
        ctx._enter()
        try:
            st = _lib.lib().qlib_calib_add(p, _arrays.fptr(x2), n, ld)
            ctx._raise_if(st, "qlib_calib_add")
        finally:
            ctx._leave()

    def act_stats(self):
        """ActStats(mean_abs, max_abs): per-channel mean |x| and max |x| (k
        float32 each). StateError without CALIB_ACT_STATS or before any token."""
        p = self._handle()
        mean = np.empty(self._k, dtype=np.float32)
        mx = np.empty(self._k, dtype=np.float32)
        st = _lib.lib().qlib_calib_act_stats(p, _arrays.fptr(mean), _arrays.fptr(mx))
        check(st, "qlib_calib_act_stats")
        return ActStats(mean, mx)

    def hessian(self):
        """H = 2/n * sum x x^T as a (k, k) float32 array. StateError without
        CALIB_HESSIAN or before any token."""
        p = self._handle()
        h = np.empty((self._k, self._k), dtype=np.float32)
        st = _lib.lib().qlib_calib_hessian(p, _arrays.fptr(h), self._k)
        check(st, "qlib_calib_hessian")
        return h

    def close(self):
        """Frees the calibration now (not while another thread uses it or its
        context: RuntimeError). Closing twice does nothing."""
        if self._ptr is None:
            return
        ctx = self._ctx
        ctx._enter_for_close()
        try:
            super().close()
        finally:
            ctx._leave()

    def __repr__(self):
        if self._ptr is None:
            return "<qlib.Calibration closed>"
        return "<qlib.Calibration k=%d what=%s tokens=%d>" % (self._k, self._what, self.tokens)
