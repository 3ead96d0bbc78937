"""The six optimizers, updating parameters in place.

Every optimizer is built as ``cls(params, *, lr, ...)`` with ``params`` a
list of arrays (views allowed) and updates them in place with
``step(grads)``. Step count ``t`` starts at 1; all state starts at zero.
When ``params`` and ``grads`` are the :class:`~fastnn.network.ParamList`
of a :class:`~fastnn.Network` (they carry ``.flat``), each operation is a
single ufunc call over the flat vector; otherwise it loops over the arrays.

Hyperparameter names are the same everywhere (code, config, CLI, W&B):
``lr``, ``momentum``, ``beta`` (RMSProp decay), ``beta1``, ``beta2``,
``eps``, ``momentum_decay`` (Nadam).
"""

import math
from typing import ClassVar

import numpy as np

from . import _checks
from .errors import ConfigError


def _flat_pairs(params, grads):
    """Return [(param, grad)] to update: one flat pair when both are flat."""
    flat_p = getattr(params, "flat", None)
    flat_g = getattr(grads, "flat", None)
    if flat_p is not None and flat_g is not None and flat_g.shape == flat_p.shape:
        return ((flat_p, flat_g),)
    return tuple(zip(params, grads))


class Optimizer:
    """Base class: binds parameters and allocates state once.

    Subclasses define ``_state_names`` and ``_update(w, g, state, t)``.
    """

    _state_names = ()
    _hyper: ClassVar[dict] = {"lr": {"low": 0, "low_open": True}}

    def __init__(self, params, **hyper):
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
        self.t = 0
        flat = getattr(params, "flat", None)
        self._targets = (flat,) if flat is not None else tuple(params)
        self.state = {
            name: [np.zeros_like(w) for w in self._targets] for name in self._state_names
        }
        self._scratch = [np.empty_like(w) for w in self._targets] if self._needs_scratch else None

    _needs_scratch = False
    name = "optimizer"

    def step(self, grads):
        """Apply one update to the bound parameters in place.

        Parameters
        ----------
        grads : list of ndarray
            Shaped like the bound ``params`` (e.g. ``net.grads`` or the
            result of ``net.gradients``).
        """
        self.t += 1
        pairs = _flat_pairs(self.params, grads)
        if len(pairs) != len(self._targets):
            raise ValueError(f"expected {len(self._targets)} gradient arrays, got {len(pairs)}")
        self._begin_step(self.t)
        for i, (w, g) in enumerate(pairs):
            self._current = i
            state = {name: arrays[i] for name, arrays in self.state.items()}
            scratch = self._scratch[i] if self._scratch is not None else None
            self._update(w, g, state, scratch)

    def _begin_step(self, t):
        """Compute per-step scalars (bias corrections, schedules)."""

    def _update(self, w, g, state, scratch):
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
        self._restore_extra(state)

    def _restore_extra(self, state):
        """Recompute cached scalars that depend on the step count."""

    def __repr__(self):
        args = ", ".join(f"{k}={v:g}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Plain gradient descent: ``w -= lr * g``."""

    name = "sgd"

    def _update(self, w, g, state, scratch):
        np.multiply(g, self.lr, out=scratch)
        w -= scratch

    _needs_scratch = True


class Momentum(Optimizer):
    """Heavy-ball momentum, optionally Nesterov.

    Update, in code order (``u`` starts at zero)::

        u = momentum * u + g
        w -= lr * u                      # nesterov=False
        w -= lr * (g + momentum * u)     # nesterov=True

    The Nesterov form takes the gradient at the current weights, as PyTorch
    and Keras do. It equals the textbook look-ahead rule (gradient taken at
    ``w - lr*momentum*u``) after the change of variable
    ``w_here = w_lookahead - lr*momentum*u``; the two produce the same
    sequence of look-ahead points.
    """

    name = "momentum"
    nesterov = False
    _state_names = ("u",)
    _needs_scratch = True
    _hyper: ClassVar[dict] = {"lr": {"low": 0, "low_open": True}, "momentum": {"low": 0, "high": 1, "high_open": True}}

    def _update(self, w, g, state, scratch):
        u = state["u"]
        u *= self.momentum
        u += g
        if self.nesterov:
            np.multiply(u, self.momentum, out=scratch)
            scratch += g
            scratch *= self.lr
        else:
            np.multiply(u, self.lr, out=scratch)
        w -= scratch


class NAG(Momentum):
    __doc__ = Momentum.__doc__.replace("Heavy-ball momentum, optionally Nesterov.",
                                       "Nesterov accelerated gradient (Momentum with nesterov=True).")
    name = "nag"
    nesterov = True


class RMSProp(Optimizer):
    """RMSProp.

    Update, in code order (``v`` starts at zero)::

        v = beta * v + (1 - beta) * g**2
        w -= lr * g / (sqrt(v) + eps)
    """

    name = "rmsprop"
    _state_names = ("v",)
    _needs_scratch = True
    _hyper: ClassVar[dict] = {
        "lr": {"low": 0, "low_open": True},
        "beta": {"low": 0, "high": 1, "high_open": True},
        "eps": {"low": 0, "low_open": True},
    }

    def _update(self, w, g, state, scratch):
        v = state["v"]
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - self.beta
        v *= self.beta
        v += scratch
        np.sqrt(v, out=scratch)
        scratch += self.eps
        np.divide(g, scratch, out=scratch)
        scratch *= self.lr
        w -= scratch


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected, eps outside the square root.

    Update, in code order (``m``, ``v`` start at zero, ``t`` from 1)::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        w -= lr * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps)

    The bias corrections are applied exactly as written (not folded into
    the step size), so ``eps`` has the same meaning as in PyTorch's Adam.
    """

    name = "adam"
    _state_names = ("m", "v")
    _needs_scratch = True
    _hyper: ClassVar[dict] = {
        "lr": {"low": 0, "low_open": True},
        "beta1": {"low": 0, "high": 1, "high_open": True},
        "beta2": {"low": 0, "high": 1, "high_open": True},
        "eps": {"low": 0, "low_open": True},
    }

    def _begin_step(self, t):
        self._bc1 = 1.0 - self.beta1 ** t
        self._bc2 = 1.0 - self.beta2 ** t

    def _moments(self, g, state, scratch):
        m, v = state["m"], state["v"]
        m *= self.beta1
        np.multiply(g, 1.0 - self.beta1, out=scratch)
        m += scratch
        v *= self.beta2
        np.multiply(g, g, out=scratch)
        scratch *= 1.0 - self.beta2
        v += scratch
        # scratch = sqrt(v / bc2) + eps
        np.sqrt(v, out=scratch)
        scratch *= 1.0 / math.sqrt(self._bc2)
        scratch += self.eps
        return m

    def _update(self, w, g, state, scratch):
        m = self._moments(g, state, scratch)
        np.divide(m, scratch, out=scratch)
        scratch *= self.lr / self._bc1
        w -= scratch


class Nadam(Adam):
    """Nadam (Dozat), with the momentum schedule of PyTorch's NAdam.

    With ``mu_t = beta1 * (1 - 0.5 * 0.96**(t * momentum_decay))`` and
    ``prod_t = mu_1 * ... * mu_t``; update, in code order::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = mu_{t+1} * m / (1 - prod_t * mu_{t+1}) + (1 - mu_t) * g / (1 - prod_t)
        w -= lr * m_hat / (sqrt(v / (1 - beta2**t)) + eps)

    This is the textbook look-ahead Nesterov step applied to Adam: instead
    of evaluating the gradient at the point the next momentum step will
    reach, the next step's momentum coefficient ``mu_{t+1}`` is applied to
    the current ``m`` and the current gradient enters with weight
    ``1 - mu_t``. The default ``momentum_decay`` 0.004 is PyTorch's.
    """

    name = "nadam"
    _hyper: ClassVar[dict] = dict(Adam._hyper, momentum_decay={"low": 0})

    def __init__(self, params, **hyper):
        hyper.setdefault("momentum_decay", 0.004)
        super().__init__(params, **hyper)
        self._mu_product = 1.0
        self._scratch2 = [np.empty_like(w) for w in self._targets]

    def _mu(self, t):
        return self.beta1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))

    def _begin_step(self, t):
        super()._begin_step(t)
        self._mu_t = self._mu(t)
        self._mu_next = self._mu(t + 1)
        self._mu_product *= self._mu_t
        self._coef_m = self._mu_next / (1.0 - self._mu_product * self._mu_next)
        self._coef_g = (1.0 - self._mu_t) / (1.0 - self._mu_product)

    def _restore_extra(self, state):
        self._mu_product = math.prod(self._mu(i) for i in range(1, self.t + 1))

    def _update(self, w, g, state, scratch):
        m = self._moments(g, state, scratch)
        # w -= lr * (coef_m * m + coef_g * g) / denom, as two passes into w.
        extra = self._scratch2[self._current]
        np.divide(m, scratch, out=extra)
        extra *= self.lr * self._coef_m
        w -= extra
        np.divide(g, scratch, out=extra)
        extra *= self.lr * self._coef_g
        w -= extra


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, NAG, RMSProp, Adam, Nadam)}

# Defaults used by the CLI and config when a hyperparameter is not given.
DEFAULTS = {
    "lr": 1e-3,
    "momentum": 0.9,
    "beta": 0.9,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "momentum_decay": 0.004,
}


def get(name, params, **hyper):
    """Build the optimizer called ``name`` bound to ``params``.

    Hyperparameters the optimizer does not use are ignored, so one dict of
    settings (e.g. from the CLI) can build any of them; missing ones take
    :data:`DEFAULTS`.

    Parameters
    ----------
    name : {'sgd', 'momentum', 'nag', 'rmsprop', 'adam', 'nadam'}
        Case-insensitive.
    params : list of ndarray
        Arrays to update in place (e.g. ``net.params``).
    **hyper
        ``lr``, ``momentum``, ``beta``, ``beta1``, ``beta2``, ``eps``,
        ``momentum_decay``.

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
    return cls(params, **used)
