"""Hidden-layer activations, each registered once with its two kernel sets.

An :class:`Activation` holds the NumPy reference and the fused (numba)
kernels of one activation side by side; :data:`REGISTRY` is the one list
of them. The CLI's choices, config validation, the model file's names and
the compiled training step's dispatch all come from it.

NumPy reference (``forward(z, pre, scratch, s)``, ``backward(delta, a,
pre, scratch, s)``): the forward overwrites the pre-activation ``z`` with
the activation ``a``; the backward scales the upstream gradient ``delta``
(dL/da on entry, dL/dz on exit) in place. Most activations need only the
forward *output* ``a`` for that; one that ``needs_input`` (GELU, SiLU)
gets ``pre``, a buffer into which its forward copies ``z``, and its
backward may overwrite ``pre`` as scratch. ``scratch`` is a buffer of the
same shape and dtype, ``s`` the network's settings record
(:mod:`fastnn.settings`), read for the activation's ``constants``.

Fused pair (``@fused``, compiled by :mod:`fastnn._jit`): the forward adds
the bias and applies the activation in one pass over ``z`` (writing
``pre`` when it needs its input); the backward applies the dropout mask
(when ``use_mask``) and the derivative to ``delta`` in one pass. Arrays
are C-contiguous (n, units); every constant is read from the settings
record in the array dtype, so float32 math stays float32.

Adding an activation is one :func:`register` call (see docs/design.md).

NOTE: every kernel here mutates its first argument.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _jit
from ._jit import fused
from .errors import ConfigError
from .settings import network_dtype

_FORWARD_SIG = "void(F[:, ::1], F[::1], F[:, ::1], S[::1])"
_BACKWARD_SIG = "void(F[:, ::1], F[:, ::1], F[:, ::1], F[:, ::1], boolean, S[::1])"


@dataclass(frozen=True)
class Activation:
    """One activation: its NumPy reference and fused kernels, declared together.

    ``constants`` maps names to values the kernels read from the settings
    record (in the network dtype); ``needs_input`` asks the network for a
    ``pre`` buffer holding the pre-activation for the backward pass.
    """

    name: str
    forward: Callable
    backward: Callable
    constants_of: Callable
    value: Callable
    slope: Callable
    needs_input: bool = False
    constants: dict = field(default_factory=dict)
    doc: str = ""

    def __post_init__(self):
        # the fused pair: the two loops below with this activation's formulas bound in
        forward = _jit.bind(_forward_loop, f"_{self.name}_forward_fused",
                            _constants=self.constants_of, _value=self.value)
        backward = _jit.bind(_backward_loop, f"_{self.name}_backward_fused",
                             _constants=self.constants_of, _slope=self.slope)
        object.__setattr__(self, "forward_fused", forward)
        object.__setattr__(self, "backward_fused", backward)


def _value(v, k):  # bound per activation (Activation.value, .slope, .constants_of)
    raise TypeError("bound by Activation")


_slope = _constants = _value


@fused(_FORWARD_SIG, S=network_dtype)
def _forward_loop(z, b, pre, s):
    """z = act(z + b) in one pass, keeping z + b in ``pre`` when it is not empty."""
    k = _constants(s[0])  # read once, before the loop (a loop-invariant tuple)
    keep = pre.shape[0] != 0
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            v = z[i, j] + b[j]
            if keep:
                pre[i, j] = v
            z[i, j] = _value(v, k)


@fused(_BACKWARD_SIG, S=network_dtype)
def _backward_loop(delta, a, pre, mask, use_mask, s):
    """delta = act'(z) * (delta * mask if use_mask) in one pass; z from ``pre`` when kept."""
    k = _constants(s[0])
    keep = pre.shape[0] != 0
    for i in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            d = delta[i, j] * mask[i, j] if use_mask else delta[i, j]
            delta[i, j] = _slope(d, a[i, j], pre[i, j] if keep else a[i, j], k)


REGISTRY = {}
CONSTANTS = {}  # every activation's constants (fields of the settings record)


def register(activation):
    """Add ``activation`` to :data:`REGISTRY` (its constants to :data:`CONSTANTS`)."""
    for name, value in activation.constants.items():
        if CONSTANTS.setdefault(name, value) != value:
            raise ValueError(f"constant {name!r} already has another value")
    REGISTRY[activation.name] = activation
    return activation


# ------------------------------------------------------------------ identity
def _identity_forward(z, pre, scratch, s):
    return z


def _identity_backward(delta, a, pre, scratch, s):
    return delta


@fused(None, inline=True)
def _basic_constants(c):
    """(half, one, zero) in the network dtype, from the settings record ``c``."""
    return c.half, c.one, c.one - c.one


@fused(None, inline=True)
def _identity_value(v, k):
    return v


@fused(None, inline=True)
def _identity_slope(d, a, v, k):
    return d


# ------------------------------------------------------------------- sigmoid
def _sigmoid_forward(z, pre, scratch, s):
    # sigmoid(z) = (1 + tanh(z/2)) / 2: never overflows, unlike 1/(1+exp(-z)),
    # and costs the same three passes.
    z *= 0.5
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5
    return z


def _sigmoid_backward(delta, a, pre, scratch, s):
    # delta *= a * (1 - a)
    np.subtract(1.0, a, out=scratch)
    scratch *= a
    delta *= scratch
    return delta


@fused(None, inline=True)
def _sigmoid(v, half, one):
    """sigmoid(v) = (1 + tanh(v/2)) / 2 of one value (the fused kernels' form)."""
    return (math.tanh(v * half) + one) * half


@fused(None, inline=True)
def _sigmoid_value(v, k):
    half, one, _ = k
    return _sigmoid(v, half, one)


@fused(None, inline=True)
def _sigmoid_slope(d, a, v, k):
    _, one, _ = k
    return d * ((one - a) * a)


# ---------------------------------------------------------------------- tanh
def _tanh_forward(z, pre, scratch, s):
    return np.tanh(z, out=z)


def _tanh_backward(delta, a, pre, scratch, s):
    # delta *= 1 - a*a
    np.multiply(a, a, out=scratch)
    np.subtract(1.0, scratch, out=scratch)
    delta *= scratch
    return delta


@fused(None, inline=True)
def _tanh_value(v, k):
    return math.tanh(v)


@fused(None, inline=True)
def _tanh_slope(d, a, v, k):
    _, one, _ = k
    return d * (one - a * a)


# ---------------------------------------------------------------------- relu
def _relu_forward(z, pre, scratch, s):
    return np.maximum(z, 0.0, out=z)


def _relu_backward(delta, a, pre, scratch, s):
    # a > 0 exactly where z > 0, so sign(a) is the 0/1 mask of the derivative.
    np.sign(a, out=scratch)
    delta *= scratch
    return delta


@fused(None, inline=True)
def _relu_value(v, k):
    _, _, zero = k
    # NaN stays NaN, as in np.maximum (max(v, zero) would not promise that)
    return zero if v < zero else v  # noqa: FURB136


@fused(None, inline=True)
def _relu_slope(d, a, v, k):
    _, _, zero = k
    return zero if a == zero else d  # a is >= 0 (or NaN)


# ---------------------------------------------------------------- leaky_relu
# leaky_relu(z) = z for z > 0, slope * z otherwise (slope 0.01, PyTorch's
# default). The slope is positive, so a > 0 exactly where z > 0: the
# derivative (1 there, slope elsewhere, z = 0 included as in PyTorch)
# comes from the output.
def _leaky_relu_forward(z, pre, scratch, s):
    np.multiply(z, s["slope"], out=scratch)
    return np.maximum(z, scratch, out=z)  # max(z, slope*z), NaN kept


def _leaky_relu_backward(delta, a, pre, scratch, s):
    slope = s["slope"]
    np.greater(a, 0, out=scratch)  # 1 where a > 0, else 0
    scratch *= 1 - slope
    scratch += slope
    delta *= scratch
    return delta


@fused(None, inline=True)
def _leaky_relu_constants(c):
    return c.slope, c.one - c.one


@fused(None, inline=True)
def _leaky_relu_value(v, k):
    slope, zero = k
    return v * slope if v < zero else v  # NaN stays NaN


@fused(None, inline=True)
def _leaky_relu_slope(d, a, v, k):
    slope, zero = k
    return d if a > zero else d * slope


# ---------------------------------------------------------------------- gelu
# gelu(z) = z * Phi(z) = z/2 * (1 + erf(z / sqrt(2))), the exact form
# (PyTorch's nn.GELU() default); gelu'(z) = Phi(z) + z * phi(z) with
# phi(z) = exp(-z^2/2) / sqrt(2 pi). The derivative needs z: needs_input.
def _erf(x, out):
    from scipy.special import erf  # scipy comes with scikit-learn

    return erf(x, out=out)


def _gelu_forward(z, pre, scratch, s):
    np.copyto(pre, z)
    z *= s["gelu_scale"]
    _erf(z, out=z)
    z += 1.0
    z *= pre
    z *= 0.5
    return z


def _gelu_backward(delta, a, pre, scratch, s):
    # NOTE: overwrites pre (the forward's input) as scratch.
    np.multiply(pre, pre, out=scratch)
    scratch *= -0.5
    np.exp(scratch, out=scratch)
    scratch *= s["gelu_norm"]
    scratch *= pre  # z * phi(z)
    pre *= s["gelu_scale"]
    _erf(pre, out=pre)
    pre += 1.0
    pre *= 0.5  # Phi(z)
    pre += scratch
    delta *= pre
    return delta


@fused(None, inline=True)
def _gelu_constants(c):
    return c.half, c.one, c.gelu_scale, c.gelu_norm


@fused(None, inline=True)
def _gelu_value(v, k):
    half, one, scale, _ = k
    return (one + math.erf(v * scale)) * v * half


@fused(None, inline=True)
def _gelu_slope(d, a, v, k):
    half, one, scale, norm = k
    cdf = (one + math.erf(v * scale)) * half
    return d * (cdf + v * (math.exp(-(v * v) * half) * norm))


# ---------------------------------------------------------------------- silu
# silu(z) = z * sigmoid(z) (also called swish); with s = sigmoid(z) and
# a = z * s, silu'(z) = s * (1 + z * (1 - s)) = s + a * (1 - s).
def _silu_forward(z, pre, scratch, s):
    np.copyto(pre, z)
    _sigmoid_forward(z, None, None, s)
    z *= pre
    return z


def _silu_backward(delta, a, pre, scratch, s):
    # NOTE: overwrites pre (the forward's input) as scratch.
    np.copyto(scratch, pre)
    _sigmoid_forward(scratch, None, None, s)  # s
    np.subtract(1.0, scratch, out=pre)
    pre *= a
    pre += scratch
    delta *= pre
    return delta


@fused(None, inline=True)
def _silu_value(v, k):
    half, one, _ = k
    return _sigmoid(v, half, one) * v


@fused(None, inline=True)
def _silu_slope(d, a, v, k):
    half, one, _ = k
    sig = _sigmoid(v, half, one)
    return d * (sig + a * (one - sig))


register(Activation("identity", _identity_forward, _identity_backward,
                    _basic_constants, _identity_value, _identity_slope, doc="a = z"))
register(Activation("sigmoid", _sigmoid_forward, _sigmoid_backward,
                    _basic_constants, _sigmoid_value, _sigmoid_slope, doc="1 / (1 + exp(-z))"))
register(Activation("tanh", _tanh_forward, _tanh_backward,
                    _basic_constants, _tanh_value, _tanh_slope, doc="tanh(z)"))
register(Activation("relu", _relu_forward, _relu_backward,
                    _basic_constants, _relu_value, _relu_slope, doc="max(z, 0)"))
register(Activation("leaky_relu", _leaky_relu_forward, _leaky_relu_backward,
                    _leaky_relu_constants, _leaky_relu_value, _leaky_relu_slope,
                    constants={"slope": 0.01}, doc="max(z, 0.01 z)"))
register(Activation("gelu", _gelu_forward, _gelu_backward,
                    _gelu_constants, _gelu_value, _gelu_slope, needs_input=True,
                    constants={"gelu_scale": math.sqrt(0.5), "gelu_norm": 1 / math.sqrt(2 * math.pi)},
                    doc="z/2 (1 + erf(z/sqrt(2))), exact"))
register(Activation("silu", _silu_forward, _silu_backward,
                    _basic_constants, _silu_value, _silu_slope, needs_input=True,
                    doc="z sigmoid(z)"))

ACTIVATIONS = REGISTRY  # the name older code imports


# Other names of registered activations: scikit-learn calls sigmoid "logistic".
ALIASES = {"logistic": "sigmoid"}


def canonical_name(name):
    """Return the registry key for an activation name (case-insensitive; aliases too).

    Raises
    ------
    ConfigError
        If the name is not registered.
    """
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise ConfigError(
            f"activation must be one of {', '.join(REGISTRY)}, got {name!r}"
        )
    return key


def get(name):
    """Return the :class:`Activation` registered as ``name`` (case-insensitive)."""
    return REGISTRY[canonical_name(name)]
