"""The base class of every optimizer: parameters, state, records and the two kernel sets.

The rules themselves, and the registry the CLI, config files and the
compiled step read, are in :mod:`fastnn.optimizers`.
"""

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from . import _checks, _jit, _subnormal, _threads
from ._jit import fused
from .errors import ConfigError

# Below this many elements, handing half an array to another thread costs
# more than it saves (a thread hand-off was measured at about 45 us here).
PARALLEL_MIN_SIZE = 1 << 19


_UPDATE_SIG = "void(F[::1], F[::1], F[::1], F[::1], U[::1])"


@functools.cache
def record_dtype(fields, dtype_name):
    """The structured dtype of an optimizer's per-step record: ``fields`` then ``tiny``.

    ``fields`` are names of scalars in the float dtype, or ``(name, numpy
    type)`` pairs. Every fused update is ``update(w, g, s0, s1, u)`` and
    reads its scalars from ``u[0]`` by name.
    """
    pairs = [f if isinstance(f, tuple) else (f, dtype_name) for f in fields]
    return np.dtype([*pairs, ("tiny", dtype_name)], align=True)


def _update_kernel(*fields):
    """Mark an update loop ``(w, g, s0, s1, u)`` whose record holds ``fields``."""
    return fused(_UPDATE_SIG, U=functools.partial(record_dtype, fields))


def _flat_pairs(params, grads):
    """Return [(param, grad)] to update: one flat pair when both are flat."""
    flat_p = getattr(params, "flat", None)
    flat_g = getattr(grads, "flat", None)
    if flat_p is not None and flat_g is not None and flat_g.shape == flat_p.shape:
        return ((flat_p, flat_g),)
    return tuple(zip(params, grads))


class Optimizer:
    """Base class: binds parameters and allocates state and scratch once.

    Subclasses set ``name``, ``_hyper`` (hyperparameter -> range rule),
    ``_state_names``, ``_n_scratch`` and define
    ``_update(w, g, *state, *scratch)``, an element-wise in-place update
    (NumPy kernels), plus ``_begin_step(t)`` for per-step scalars. For the
    numba kernels they set ``_fused``, a loop ``(w, g, s0, s1, u)`` over
    the parameters, the gradient and up to two state arrays (empty ones
    stand in for missing state), which reads its scalars by name from the
    typed record ``u``; ``_fields`` names them and ``_scalars()`` gives
    their values for the current step (``tiny`` is appended). The NumPy
    ``_update`` of an optimizer with state gets a bool ``mask`` after its
    scratch buffers, for :func:`fastnn._subnormal.flush_`.
    """

    name = "optimizer"
    decoupled_decay = False  # True: takes the weight_decay setting itself (AdamW)
    _hyper: ClassVar[dict] = {"lr": {"low": 0, "low_open": True}}
    _state_names: ClassVar[tuple] = ()
    _n_scratch = 1
    _fused = None
    _fields: ClassVar[tuple] = ()

    def __init__(self, params, *, threads=None, kernels=None, **hyper):
        if not isinstance(params, (list, tuple)) or not params:
            raise ConfigError("params must be a non-empty list of arrays")
        for i, p in enumerate(params):
            if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
                raise ConfigError(f"params[{i}] must be a float ndarray")
            if not p.flags.writeable:
                raise ConfigError(f"params[{i}] must be writable")
        self.params = params
        for name, rule in self._hyper.items():
            setattr(self, name, float(_checks.number(name, hyper.pop(name), **rule)))
        if hyper:
            raise ConfigError(f"unknown hyperparameter(s) for {self.name}: {', '.join(hyper)}")
        self.threads = _threads.resolve(threads)
        self.t = 0
        flat = getattr(params, "flat", None)
        self._targets = (flat,) if flat is not None else tuple(params)
        self.state = {
            name: [np.zeros_like(w) for w in self._targets] for name in self._state_names
        }
        self._pool = None
        # the smallest normal number of each target's dtype: state below it is flushed
        self._tiny = [_subnormal.tiny(w.dtype) for w in self._targets]
        # one typed record of each step's scalars per target, made once: the
        # compiled training step keeps a reference to it
        self._records = [np.zeros(1, record_dtype(self._fields, w.dtype.name))
                         for w in self._targets]
        self.set_kernels(kernels)

    def __setattr__(self, name, value):
        # A hyperparameter set after construction is checked as the
        # constructor checks it; every step reads it afresh (no cached copy).
        rule = type(self)._hyper.get(name)
        if rule is not None:
            value = float(_checks.number(name, value, **rule))
        super().__setattr__(name, value)

    def set_kernels(self, kernels=None):
        """Switch kernel set (``'auto'``, ``'numba'``, ``'numpy'`` or None for the default).

        The state is kept, so training can switch mid-way. The numba kernels
        need C-contiguous float32/float64 parameters; with ``'auto'`` other
        parameters fall back to the NumPy kernels.

        Raises
        ------
        ConfigError
            Unknown name, numba missing, or parameters numba cannot update.
        """
        chosen = _jit.resolve(kernels)
        if chosen == "numba":
            unsupported = [i for i, w in enumerate(self._targets)
                           if not w.flags.c_contiguous or _jit.kernel_dtype(w.dtype) is None]
            if unsupported and str(kernels or "auto").lower() == "numba":
                raise ConfigError(f"kernels='numba' needs C-contiguous float32/float64 "
                                  f"parameters; params[{unsupported[0]}] is not")
            if unsupported:
                chosen = "numpy"
        self.kernels = chosen
        if chosen == "numba":
            self._compiled = [_jit.compiled(self._fused, _jit.kernel_dtype(w.dtype))
                              for w in self._targets]
            self._buffers = [(self._kernel_arrays(i), []) for i in range(len(self._targets))]
        else:
            self._compiled = None
            self._buffers = [
                ([self.state[name][i] for name in self._state_names],
                 [np.empty_like(w) for _ in range(self._n_scratch)]
                 + ([np.empty(w.shape, dtype=bool)] if self._state_names else []))  # flush mask
                for i, w in enumerate(self._targets)
            ]
        return self

    def _kernel_arrays(self, i):
        """``(w, s0, s1)`` of target ``i`` as 1-D arrays, empty ones for missing state."""
        w = self._targets[i]
        state = [self.state[name][i].reshape(-1) for name in self._state_names]
        empty = np.empty(0, dtype=w.dtype)
        return (w.reshape(-1), *(state + [empty, empty])[:2])

    def record(self, i=0):
        """The typed record (one-element structured array) the fused update reads.

        Filled by :meth:`step` (and by the compiled training step's caller)
        with this step's scalars, from the live hyperparameters.
        """
        return self._records[i]

    def _fill_records(self):
        scalars = self._scalars()
        for record, tiny in zip(self._records, self._tiny):
            record[0] = (*scalars, tiny)

    def step(self, grads):
        """Apply one update to the bound parameters in place.

        Parameters
        ----------
        grads : list of ndarray
            Shaped like the bound ``params`` (e.g. ``net.grads`` or the
            result of ``net.gradients``).
        """
        pairs = _flat_pairs(self.params, grads)
        if len(pairs) != len(self._targets):
            raise ValueError(f"expected {len(self._targets)} gradient arrays, got {len(pairs)}")
        self.t += 1
        self._begin_step(self.t)
        if self._compiled is not None:
            self._fill_records()
            for (_, g), (arrays, _), kernel, record in zip(pairs, self._buffers, self._compiled,
                                                           self._records):
                g = np.ascontiguousarray(g.reshape(-1))
                w, s0, s1 = arrays
                if self.threads > 1 and w.size >= PARALLEL_MIN_SIZE:
                    self._parallel(kernel, (w, g, s0, s1), (record,))
                else:
                    kernel(w, g, s0, s1, record)
            return
        for (w, g), (state, scratch) in zip(pairs, self._buffers):
            if self.threads > 1 and w.size >= PARALLEL_MIN_SIZE:
                self._parallel(self._update, (w, g, *state, *scratch), ())
            else:
                self._update(w, g, *state, *scratch)

    def _parallel(self, update, arrays, scalars):
        """Run an element-wise ``update`` on ``self.threads`` contiguous parts at once."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="fastnn-opt")
        size = arrays[0].size
        bounds = np.linspace(0, size, self.threads + 1).astype(int)
        parts = [[a.reshape(-1)[lo:hi] if a.size else a for a in arrays]
                 for lo, hi in itertools.pairwise(bounds)]
        futures = [self._pool.submit(update, *part, *scalars) for part in parts[1:]]
        update(*parts[0], *scalars)
        for future in futures:
            future.result()

    def _advance(self):
        """Count one step and fill its record (for the compiled step)."""
        self.t += 1
        self._begin_step(self.t)
        self._fill_records()

    def _retreat(self):
        """Undo :meth:`_advance` when the compiled step did not update (divergence)."""
        self.t -= 1
        self._restore_extra()

    def _begin_step(self, t):
        """Compute per-step scalars (bias corrections, schedules)."""

    def _update(self, w, g, *buffers):
        raise NotImplementedError

    def _scalars(self):
        """The values of ``_fields`` for this step, in that order."""
        raise NotImplementedError

    def hyperparameters(self):
        """The hyperparameters as a dict (name -> float)."""
        return {name: getattr(self, name) for name in self._hyper}

    def state_dict(self):
        """Arrays and step count needed to resume; arrays are copies."""
        out = {"t": self.t}
        for name, arrays in self.state.items():
            for i, arr in enumerate(arrays):
                out[f"{name}_{i}"] = arr.copy()
        return out

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (shapes must match)."""
        for name, arrays in self.state.items():
            for i, arr in enumerate(arrays):
                src = np.asarray(state[f"{name}_{i}"])
                if src.shape != arr.shape:
                    raise ValueError(f"state {name}_{i} has shape {src.shape}, expected {arr.shape}")
                arr[...] = src
        self.t = int(state["t"])
        self._restore_extra()

    def _restore_extra(self):
        """Recompute cached scalars that depend on the step count."""

    def __repr__(self):
        args = ", ".join(f"{k}={v:g}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"
