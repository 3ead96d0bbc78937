"""The optimizers (:data:`OPTIMIZERS`, the registry), updating parameters in place.

Every optimizer is built as ``cls(params, *, lr, ..., threads=None)`` with
``params`` a list of arrays (views allowed) and updates them in place with
``step(grads)``. Step count ``t`` starts at 1; all state starts at zero and
is allocated once, with the scratch buffers, at construction.

When ``params`` and ``grads`` are the :class:`~fastnn.network.ParamList` of
a :class:`~fastnn.Network` (they carry ``.flat``), each operation is one
ufunc call over the whole flat vector; otherwise it loops over the arrays.
Arrays of at least :data:`PARALLEL_MIN_SIZE` elements are split into
contiguous parts updated by ``threads`` threads at once (NumPy releases the
GIL inside ufunc loops); the update is element-wise, so the result is the
same bit for bit whatever the thread count.

Two kernel sets (``kernels=``, see :func:`fastnn._jit.resolve`): ``numpy``
runs each update as a few in-place ufunc passes through scratch buffers
(the reference); ``numba`` runs it as one compiled loop (``*_fused``
below, beside each rule) that reads ``w``, ``g`` and the state once and
writes ``w`` and the state once, with no scratch buffer. Both compute the
same expressions in the same order; results agree to rounding.

State never holds subnormal floats (:mod:`fastnn._subnormal`): in both
kernel sets a new velocity or moment below the dtype's smallest normal
number (1.18e-38 in float32) is stored as zero, because Intel cores run
arithmetic on subnormals many times slower and a zero gradient makes a
state decay into that range within a few hundred steps. For the same
reason the squared gradient of RMSProp, Adam and Nadam is taken as zero
where the gradient is below ``sqrt(tiny)`` (its square would be subnormal).

Hyperparameter names are the same everywhere (code, config, CLI, W&B):
``lr``, ``momentum``, ``beta`` (RMSProp decay), ``beta1``, ``beta2``,
``eps``, ``momentum_decay`` (Nadam).
"""

import functools
import itertools
import math
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
        # the smallest normal number of each target's dtype: state below it is flushed
        self._tiny = [_subnormal.tiny(w.dtype) for w in self._targets]
        # one typed record of this step's scalars per target dtype
        self._records = [np.zeros(1, record_dtype(self._fields, w.dtype.name))
                         for w in self._targets]
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


class SGD(Optimizer):
    """Plain gradient descent: ``w -= lr * g``."""

    name = "sgd"
    _fields = ("lr",)

    def _update(self, w, g, scratch):
        np.multiply(g, self.lr, out=scratch)
        w -= scratch

    @staticmethod
    @_update_kernel(*_fields)
    def _fused(w, g, s0, s1, u):
        lr = u[0].lr
        for i in range(w.size):
            w[i] -= g[i] * lr

    def _scalars(self):
        return (self.lr,)


class Momentum(Optimizer):
    """Heavy-ball momentum, optionally Nesterov.

    Update, in code order (``u`` starts at zero)::

        u = momentum * u + g
        w -= lr * u                      # nesterov=False
        w -= lr * (g + momentum * u)     # nesterov=True

    The Nesterov form takes the gradient at the current weights, as PyTorch
    and Keras do. It is the textbook look-ahead rule (gradient taken at
    ``w - lr*momentum*u``) rewritten for the look-ahead point: with
    ``w_ahead = w - lr*momentum*u`` tracked instead of ``w``, both produce
    the same sequence of points.
    """

    name = "momentum"
    nesterov = False
    _hyper: ClassVar[dict] = {
        "lr": {"low": 0, "low_open": True},
        "momentum": {"low": 0, "high": 1, "high_open": True},
    }
    _state_names = ("u",)

    def _update(self, w, g, u, scratch, mask):
        u *= self.momentum
        u += g
        _subnormal.flush_(u, scratch, mask)
        if self.nesterov:
            np.multiply(u, self.momentum, out=scratch)
            scratch += g
            scratch *= self.lr
        else:
            np.multiply(u, self.lr, out=scratch)
        w -= scratch

    _fields = ("momentum", "lr", ("nesterov", np.bool_))

    @staticmethod
    @_update_kernel(*_fields)
    def _fused(w, g, u, s1, rec):
        momentum, lr, nesterov, tiny = rec[0].momentum, rec[0].lr, rec[0].nesterov, rec[0].tiny
        zero = tiny - tiny
        for i in range(w.size):
            ui = u[i] * momentum + g[i]
            if abs(ui) < tiny:  # flush to zero (fastnn._subnormal)
                ui = zero
            u[i] = ui
            if nesterov:
                w[i] -= (ui * momentum + g[i]) * lr
            else:
                w[i] -= ui * lr

    def _scalars(self):
        return (self.momentum, self.lr, self.nesterov)


class NAG(Momentum):
    """Nesterov accelerated gradient: Momentum with ``nesterov=True``.

    Update, in code order (``u`` starts at zero)::

        u = momentum * u + g
        w -= lr * (g + momentum * u)

    The gradient is taken at the current weights, as in PyTorch and Keras.
    The textbook look-ahead form evaluates it at ``w - lr*momentum*u``;
    substituting ``w_ahead = w - lr*momentum*u`` turns that rule into this
    one, so the two produce the same sequence of look-ahead points.
    """

    name = "nag"
    nesterov = True


class RMSProp(Optimizer):
    """RMSProp.

    Update, in code order (``v`` starts at zero)::

        v = beta * v + (1 - beta) * g**2
        w -= lr * g / (sqrt(v) + eps)
    """

    name = "rmsprop"
    _hyper: ClassVar[dict] = {
        "lr": {"low": 0, "low_open": True},
        "beta": {"low": 0, "high": 1, "high_open": True},
        "eps": {"low": 0, "low_open": True},
    }
    _state_names = ("v",)

    def _update(self, w, g, v, scratch, mask):
        _subnormal.square_(g, scratch, mask)
        scratch -= v
        scratch *= 1.0 - self.beta
        v += scratch  # v = beta*v + (1-beta)*g^2
        _subnormal.flush_(v, scratch, mask)
        np.sqrt(v, out=scratch)
        scratch += self.eps
        np.divide(g, scratch, out=scratch)
        scratch *= self.lr
        w -= scratch

    _fields = ("one_minus_beta", "eps", "lr")

    @staticmethod
    @_update_kernel(*_fields)
    def _fused(w, g, v, s1, u):
        one_minus_beta, eps, lr, tiny = u[0].one_minus_beta, u[0].eps, u[0].lr, u[0].tiny
        zero = tiny - tiny
        root = np.sqrt(tiny)  # a gradient below it squares to a subnormal
        for i in range(w.size):
            gi = g[i]
            gs = zero if abs(gi) < root else gi  # (fastnn._subnormal.square_)
            vi = v[i] + (gs * gs - v[i]) * one_minus_beta
            if abs(vi) < tiny:  # flush to zero (fastnn._subnormal)
                vi = zero
            v[i] = vi
            w[i] -= gi / (np.sqrt(vi) + eps) * lr

    def _scalars(self):
        return (1.0 - self.beta, self.eps, self.lr)


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected, eps outside the square root.

    Update, in code order (``m``, ``v`` start at zero, ``t`` from 1)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        w -= lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    Implemented as ``w -= (lr * sqrt(bc2) / bc1) * m / (sqrt(v) + eps * sqrt(bc2))``
    with ``bc1 = 1 - beta1**t`` and ``bc2 = 1 - beta2**t``: the same value
    (multiply numerator and denominator by sqrt(bc2)) in one array pass
    fewer. ``eps`` keeps the meaning it has in PyTorch's Adam: it is added to
    the bias-corrected root, not the eps-hat form that adds it to the raw
    root.
    """

    name = "adam"
    _hyper: ClassVar[dict] = {
        "lr": {"low": 0, "low_open": True},
        "beta1": {"low": 0, "high": 1, "high_open": True},
        "beta2": {"low": 0, "high": 1, "high_open": True},
        "eps": {"low": 0, "low_open": True},
    }
    _state_names = ("m", "v")

    def _begin_step(self, t):
        self._bc1 = 1.0 - self.beta1 ** t
        self._sqrt_bc2 = math.sqrt(1.0 - self.beta2 ** t)

    def _moments(self, g, m, v, scratch, mask):
        """Update (and flush) m and v in place; leave sqrt(v) + eps*sqrt(bc2) in ``scratch``."""
        np.subtract(g, m, out=scratch)
        scratch *= 1.0 - self.beta1
        m += scratch  # m = beta1*m + (1-beta1)*g
        _subnormal.flush_(m, scratch, mask)
        _subnormal.square_(g, scratch, mask)
        scratch -= v
        scratch *= 1.0 - self.beta2
        v += scratch  # v = beta2*v + (1-beta2)*g^2
        _subnormal.flush_(v, scratch, mask)
        np.sqrt(v, out=scratch)
        scratch += self.eps * self._sqrt_bc2

    def _update(self, w, g, m, v, scratch, mask):
        self._moments(g, m, v, scratch, mask)
        np.divide(m, scratch, out=scratch)
        scratch *= self.lr * self._sqrt_bc2 / self._bc1
        w -= scratch

    # keep: the factor AdamW shrinks the weights by first (exactly 1 here)
    _fields = ("one_minus_beta1", "one_minus_beta2", "eps_scaled", "step", "keep")

    @staticmethod
    @_update_kernel(*_fields)
    def _fused(w, g, m, v, u):
        one_minus_beta1, one_minus_beta2 = u[0].one_minus_beta1, u[0].one_minus_beta2
        eps_scaled, step, keep, tiny = u[0].eps_scaled, u[0].step, u[0].keep, u[0].tiny
        zero = tiny - tiny
        root = np.sqrt(tiny)  # a gradient below it squares to a subnormal
        for i in range(w.size):
            gi = g[i]
            gs = zero if abs(gi) < root else gi  # (fastnn._subnormal.square_)
            mi = m[i] + (gi - m[i]) * one_minus_beta1
            vi = v[i] + (gs * gs - v[i]) * one_minus_beta2
            if abs(mi) < tiny:  # flush to zero (fastnn._subnormal)
                mi = zero
            if abs(vi) < tiny:
                vi = zero
            m[i] = mi
            v[i] = vi
            w[i] = w[i] * keep - mi / (np.sqrt(vi) + eps_scaled) * step

    def _scalars(self):
        return (1.0 - self.beta1, 1.0 - self.beta2, self.eps * self._sqrt_bc2,
                self.lr * self._sqrt_bc2 / self._bc1, self._keep())

    def _keep(self):
        return 1.0


class AdamW(Adam):
    """AdamW (Loshchilov & Hutter): Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    Update, in code order (``m``, ``v`` start at zero, ``t`` from 1)::

        w *= 1 - lr * weight_decay
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        w -= lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    with the last line computed as in :class:`Adam`. The decay shrinks every
    bound parameter, biases included, as PyTorch's AdamW does with
    ``model.parameters()``; it is not part of the loss or the gradient.
    Built from settings (the CLI, config files, sweeps), ``weight_decay``
    goes to this decay and the network gets no L2 penalty (see
    :func:`fastnn.train.build`). Default ``weight_decay`` 0.01, PyTorch's.
    """

    name = "adamw"
    _hyper: ClassVar[dict] = dict(Adam._hyper, weight_decay={"low": 0})
    decoupled_decay = True

    def _update(self, w, g, m, v, scratch, mask):
        w *= self._keep()
        super()._update(w, g, m, v, scratch, mask)

    def _keep(self):
        return 1.0 - self.lr * self.weight_decay


class Nadam(Adam):
    """Nadam (Dozat), with the momentum schedule of PyTorch's NAdam.

    With ``mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))`` and
    ``prod_t = mu_1 * ... * mu_t``; update, in code order::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = mu_{t+1} * m / (1 - prod_t * mu_{t+1}) + (1 - mu_t) * g / (1 - prod_t)
        w -= lr * m_hat / (sqrt(v / (1 - beta2**t)) + eps)

    This is the look-ahead Nesterov step applied to Adam: instead of
    evaluating the gradient at the point the next momentum step will reach,
    the next step's momentum coefficient ``mu_{t+1}`` is applied to the
    current ``m`` while the current gradient enters with weight ``1 - mu_t``.
    The default ``momentum_decay`` 0.004 is PyTorch's.
    """

    name = "nadam"
    _hyper: ClassVar[dict] = dict(Adam._hyper, momentum_decay={"low": 0})
    _n_scratch = 2

    def __init__(self, params, *, threads=None, kernels=None, **hyper):
        hyper.setdefault("momentum_decay", 0.004)
        super().__init__(params, threads=threads, kernels=kernels, **hyper)
        self._mu_product = 1.0

    def _mu(self, t):
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _begin_step(self, t):
        super()._begin_step(t)
        mu_t, mu_next = self._mu(t), self._mu(t + 1)
        self._mu_product *= mu_t
        # sqrt(bc2) because _moments leaves sqrt(bc2) * (sqrt(v/bc2) + eps).
        self._coef_m = self.lr * self._sqrt_bc2 * mu_next / (1.0 - self._mu_product * mu_next)
        self._coef_g = self.lr * self._sqrt_bc2 * (1.0 - mu_t) / (1.0 - self._mu_product)

    def _restore_extra(self):
        self._mu_product = math.prod(self._mu(i) for i in range(1, self.t + 1))

    def _update(self, w, g, m, v, scratch, extra, mask):
        self._moments(g, m, v, scratch, mask)
        # w -= (coef_m * m + coef_g * g) / denom, as two passes into w.
        np.divide(m, scratch, out=extra)
        extra *= self._coef_m
        w -= extra
        np.divide(g, scratch, out=extra)
        extra *= self._coef_g
        w -= extra

    _fields = ("one_minus_beta1", "one_minus_beta2", "eps_scaled", "coef_m", "coef_g")

    @staticmethod
    @_update_kernel(*_fields)
    def _fused(w, g, m, v, u):
        one_minus_beta1, one_minus_beta2 = u[0].one_minus_beta1, u[0].one_minus_beta2
        eps_scaled, coef_m, coef_g, tiny = u[0].eps_scaled, u[0].coef_m, u[0].coef_g, u[0].tiny
        zero = tiny - tiny
        root = np.sqrt(tiny)  # a gradient below it squares to a subnormal
        for i in range(w.size):
            gi = g[i]
            gs = zero if abs(gi) < root else gi  # (fastnn._subnormal.square_)
            mi = m[i] + (gi - m[i]) * one_minus_beta1
            vi = v[i] + (gs * gs - v[i]) * one_minus_beta2
            if abs(mi) < tiny:  # flush to zero (fastnn._subnormal)
                mi = zero
            if abs(vi) < tiny:
                vi = zero
            m[i] = mi
            v[i] = vi
            denom = np.sqrt(vi) + eps_scaled
            wi = w[i] - mi / denom * coef_m
            w[i] = wi - gi / denom * coef_g

    def _scalars(self):
        return (1.0 - self.beta1, 1.0 - self.beta2, self.eps * self._sqrt_bc2,
                self._coef_m, self._coef_g)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, NAG, RMSProp, Adam, Nadam, AdamW)}

# Defaults used by the CLI and config when a hyperparameter is not given.
DEFAULTS = {
    "lr": 1e-3,
    "momentum": 0.9,
    "beta": 0.9,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "momentum_decay": 0.004,
    "weight_decay": 0.01,  # AdamW's decoupled decay (PyTorch's default)
}


def route_weight_decay(name, weight_decay):
    """Where a run's ``weight_decay`` setting goes, for optimizer ``name``.

    Returns ``(network_weight_decay, optimizer_hyper)``: for an optimizer
    with decoupled decay (AdamW) the optimizer takes it and the network's
    L2 penalty is 0; for every other optimizer the network's L2 penalty
    takes it. So ``-w_d`` always means "the weight decay of this run".
    """
    cls = OPTIMIZERS[_checks.choice("optimizer", name, tuple(OPTIMIZERS))]
    if cls.decoupled_decay:
        return 0.0, {"weight_decay": weight_decay}
    return weight_decay, {}


def get(name, params, threads=None, kernels=None, **hyper):
    """Build the optimizer called ``name`` bound to ``params``.

    Hyperparameters the optimizer does not use are ignored, so one dict of
    settings (e.g. from the CLI) can build any of them; missing ones take
    :data:`DEFAULTS`.

    Parameters
    ----------
    name : {'sgd', 'momentum', 'nag', 'rmsprop', 'adam', 'nadam', 'adamw'}
        Case-insensitive.
    params : list of ndarray
        Arrays to update in place (e.g. ``net.params``).
    threads : int, optional
        Threads for updates of large arrays; default ``$FASTNN_NUM_THREADS``
        or the number of available CPUs.
    kernels : {'auto', 'numba', 'numpy'}, optional
        Kernel set; default ``$FASTNN_KERNELS`` or ``auto`` (numba when it
        is installed).
    **hyper
        ``lr``, ``momentum``, ``beta``, ``beta1``, ``beta2``, ``eps``,
        ``momentum_decay``, ``weight_decay`` (AdamW's decoupled decay).

    Raises
    ------
    ConfigError
        Unknown optimizer or hyperparameter name, or a value out of range.
    """
    key = _checks.choice("optimizer", name, tuple(OPTIMIZERS))
    cls = OPTIMIZERS[key]
    unknown = set(hyper) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown optimizer hyperparameter(s): {', '.join(sorted(unknown))}")
    used = {k: hyper.get(k, DEFAULTS[k]) for k in cls._hyper}
    return cls(params, threads=threads, kernels=kernels, **used)
