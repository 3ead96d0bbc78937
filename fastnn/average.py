"""An exponential moving average (EMA) of the weights, for evaluation and the saved model.

After every optimizer step ``t`` (1-based) the average ``a`` of the flat
parameters ``w`` moves towards them::

    d_t = min(decay, (1 + t) / (10 + t))
    a  += (1 - d_t) * (w - a)

The warm-up ``(1 + t) / (10 + t)`` lets the average follow the fast early
changes instead of remembering the initial weights for ``1 / (1 - decay)``
steps. Training itself runs on ``w``; validation, early stopping,
keep-best, the end of :func:`fastnn.fit` and so the saved model use ``a``.

An entry of the average whose magnitude falls below the dtype's smallest
normal number is stored as zero (:mod:`fastnn._subnormal`: Intel cores are
many times slower on subnormal floats). Two kernels give the same result
bit for bit: in-place NumPy passes (the reference) and one fused loop
(numba).
"""

import contextlib

import numpy as np

from . import _checks, _jit, _subnormal
from ._jit import fused


class WeightAverage:
    """The EMA of a network's parameters (see the module docstring).

    Parameters
    ----------
    decay : float in (0, 1)
        Weight of the old average at each step once warmed up; 0.999
        averages over roughly the last thousand steps.
    kernels : {'auto', 'numba', 'numpy'}, optional
        None follows the network's kernel set.

    Attributes
    ----------
    average : ndarray or None
        The averaged flat parameters (None before training starts).
    count : int
        Steps averaged so far.

    Raises
    ------
    ConfigError
        ``decay`` outside (0, 1).
    """

    def __init__(self, decay, kernels=None):
        self.decay = float(_checks.number("ema_decay", decay, low=0, high=1, low_open=True,
                                          high_open=True))
        self.kernels = kernels
        self.average = None
        self.count = 0
        self._flat = self._saved = self._kernel = None
        self._swapped = False
        self._trained = None

    def start(self, net):
        """Follow ``net``'s parameters: a fresh average of them, or continue this one.

        Continuing after :meth:`finish` (another ``fit`` or ``partial_fit``
        call) puts the trained weights back in the network first, so
        training goes on from them and not from their average.
        """
        flat = net.params.flat
        if self.average is None or self.average.shape != flat.shape \
                or self.average.dtype != flat.dtype:
            self.average, self.count, self._trained = flat.copy(), 0, None
        elif self._trained is not None:
            np.copyto(flat, self._trained)
        self._flat = flat
        self._saved = np.empty_like(flat)  # the raw weights while the average is swapped in
        self._mask = np.empty(flat.shape, dtype=bool)  # scratch of the NumPy flush
        self._tiny = _subnormal.tiny(flat.dtype)
        kernels = self.kernels if self.kernels is not None else net.kernels
        self._kernel = None
        if _jit.resolve(kernels) == "numba" and _jit.kernel_dtype(flat.dtype):
            self._kernel = _jit.compiled(_ema_fused, _jit.kernel_dtype(flat.dtype))

    def update(self):
        """Average in the parameters after one optimizer step."""
        self.count += 1
        t = self.count
        rate = self._flat.dtype.type(1.0 - min(self.decay, (1.0 + t) / (10.0 + t)))
        if self._kernel is not None:
            self._kernel(self.average, self._flat, rate, self._tiny)
        else:
            ema_(self.average, self._flat, rate, self._saved, self._mask)

    @contextlib.contextmanager
    def swapped_in(self):
        """Inside the block the network holds the average; its own weights come back after."""
        np.copyto(self._saved, self._flat)
        np.copyto(self._flat, self.average)
        self._swapped = True
        try:
            yield
        finally:
            np.copyto(self._flat, self._saved)
            self._swapped = False

    def raw_params(self):
        """The trained (not averaged) parameters, also while the average is swapped in."""
        return self._saved if self._swapped else self._flat

    def finish(self):
        """Leave the average in the network (the end of training); keep the trained weights."""
        self._trained = self._flat.copy()
        np.copyto(self._flat, self.average)

    def state(self):
        """(JSON-able progress, the average): for checkpoints."""
        return {"decay": self.decay, "count": self.count}, self.average

    def resume(self, state, average):
        """Continue an interrupted run's average (call before training starts)."""
        self.count = int(state["count"])
        self.average = np.array(average)

    def __repr__(self):
        return f"WeightAverage(decay={self.decay}, steps={self.count})"


def ema_(average, flat, rate, scratch, mask):
    """``average += rate * (flat - average)``, then flushed, in place (NumPy reference).

    ``scratch`` (like ``average``) and ``mask`` (bool) are overwritten.
    """
    np.subtract(flat, average, out=scratch)
    scratch *= rate
    average += scratch
    _subnormal.flush_(average, scratch, mask)


@fused("void(F[::1], F[::1], F, F)")
def _ema_fused(average, flat, rate, tiny):
    # ema_'s passes in one
    zero = tiny - tiny
    for i in range(average.size):
        ai = average[i] + (flat[i] - average[i]) * rate
        if abs(ai) < tiny:  # flush to zero (fastnn._subnormal)
            ai = zero
        average[i] = ai
