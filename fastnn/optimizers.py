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

import math
from typing import ClassVar

import numpy as np

from . import _checks, _jit, _subnormal
from ._jit import fused
from .errors import ConfigError
from .optimizer import (  # noqa: F401 - the names fastnn.optimizers has always offered
    _UPDATE_SIG,
    PARALLEL_MIN_SIZE,
    Optimizer,
    _update_kernel,
    record_dtype,
)


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


def _mean_square_(g, v, one_minus_beta, scratch, mask):
    """``v = beta * v + (1 - beta) * g**2`` in place, flushed (NumPy kernels); scratch overwritten."""
    _subnormal.square_(g, scratch, mask)
    scratch -= v
    scratch *= one_minus_beta
    v += scratch
    _subnormal.flush_(v, scratch, mask)


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
        _mean_square_(g, v, 1.0 - self.beta, scratch, mask)
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


@fused(None, inline=True)
def _adam_moments(gi, mi, vi, one_minus_beta1, one_minus_beta2, root, tiny):
    """New (m, v) of one element: Adam's moment rules with both flushes (fastnn._subnormal)."""
    zero = tiny - tiny
    gs = zero if abs(gi) < root else gi  # a gradient below sqrt(tiny) squares to a subnormal
    mi = mi + (gi - mi) * one_minus_beta1
    vi = vi + (gs * gs - vi) * one_minus_beta2
    if abs(mi) < tiny:  # flush to zero
        mi = zero
    if abs(vi) < tiny:
        vi = zero
    return mi, vi


def _adam_step(wi, gi, mi, denom, c1, c2):  # bound per class (Adam, Nadam): the last line
    raise TypeError("bound by the optimizer class")


def _adam_loop(w, g, m, v, u):
    """The Adam family's loop: the moments of each element, then the class's step on w.

    ``c1`` and ``c2`` are the two scalars of the class's last line.
    """
    one_minus_beta1, one_minus_beta2 = u[0].one_minus_beta1, u[0].one_minus_beta2
    eps_scaled, c1, c2, tiny = u[0].eps_scaled, u[0].c1, u[0].c2, u[0].tiny
    root = np.sqrt(tiny)
    for i in range(w.size):
        gi = g[i]
        mi, vi = _adam_moments(gi, m[i], v[i], one_minus_beta1, one_minus_beta2, root, tiny)
        m[i] = mi
        v[i] = vi
        w[i] = _adam_step(w[i], gi, mi, np.sqrt(vi) + eps_scaled, c1, c2)


_ADAM_FIELDS = ("one_minus_beta1", "one_minus_beta2", "eps_scaled", "c1", "c2")


def _adam_family(name, last_line):
    """``_adam_loop`` with the class's ``last_line`` bound: a fused update (record ``_ADAM_FIELDS``)."""
    loop = _jit.bind(_adam_loop, name, _adam_step=last_line)
    return staticmethod(_update_kernel(*_ADAM_FIELDS)(loop))


@fused(None, inline=True)
def _adam_last_line(wi, gi, mi, denom, step, keep):
    """Adam's (and AdamW's) last line: c1 is the step size, c2 AdamW's shrink factor."""
    return wi * keep - mi / denom * step


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
        _mean_square_(g, v, 1.0 - self.beta2, scratch, mask)
        np.sqrt(v, out=scratch)
        scratch += self.eps * self._sqrt_bc2

    def _update(self, w, g, m, v, scratch, mask):
        self._moments(g, m, v, scratch, mask)
        np.divide(m, scratch, out=scratch)
        scratch *= self.lr * self._sqrt_bc2 / self._bc1
        w -= scratch

    # c1: the step size; c2: the factor AdamW shrinks the weights by first (exactly 1 here)
    _fields = _ADAM_FIELDS
    _fused = _adam_family("_adam_fused", _adam_last_line)

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


@fused(None, inline=True)
def _nadam_last_line(wi, gi, mi, denom, coef_m, coef_g):
    """Nadam's last line: w -= (coef_m m + coef_g g) / denom, as two subtractions."""
    wi = wi - mi / denom * coef_m
    return wi - gi / denom * coef_g


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

    _fields = _ADAM_FIELDS  # c1, c2: the coefficients of m and of g
    _fused = _adam_family("_nadam_fused", _nadam_last_line)

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
