"""Hidden-layer activations as in-place forward/backward pairs.

Each forward overwrites its argument ``z`` (the pre-activation) with the
activation ``a``. Each backward scales the upstream gradient ``delta``
(dL/da on entry, dL/dz on exit) in place, using only the forward *output*
``a``; so no activation needs to keep its input. ``scratch`` is a buffer of
the same shape and dtype that a backward may overwrite.

Each activation also has a fused pair for the numba kernel set (marked
``@fused``, compiled by :mod:`fastnn._jit`): the forward adds the bias and
applies the activation in one pass over ``z``; the backward applies the
dropout mask (when ``use_mask``) and the derivative to ``delta`` in one
pass, with no scratch buffer. Arrays are C-contiguous (n, units); the
scalars ``half``/``one`` come in already in the array dtype, so float32
math stays float32 (a Python literal would make numba compute in float64).

NOTE: every function here mutates its first argument.
"""

import math

import numpy as np

from ._jit import fused
from .errors import ConfigError

_FORWARD_SIG = "void(F[:, ::1], F[::1], F, F)"
_BACKWARD_SIG = "void(F[:, ::1], F[:, ::1], F[:, ::1], boolean, F)"


def _identity_forward(z):
    return z


def _identity_backward(delta, a, scratch):
    return delta


def _sigmoid_forward(z):
    # sigmoid(z) = (1 + tanh(z/2)) / 2: never overflows, unlike 1/(1+exp(-z)),
    # and costs the same three passes.
    z *= 0.5
    np.tanh(z, out=z)
    z += 1.0
    z *= 0.5
    return z


def _sigmoid_backward(delta, a, scratch):
    # delta *= a * (1 - a)
    np.subtract(1.0, a, out=scratch)
    scratch *= a
    delta *= scratch
    return delta


def _tanh_forward(z):
    return np.tanh(z, out=z)


def _tanh_backward(delta, a, scratch):
    # delta *= 1 - a*a
    np.multiply(a, a, out=scratch)
    np.subtract(1.0, scratch, out=scratch)
    delta *= scratch
    return delta


def _relu_forward(z):
    return np.maximum(z, 0.0, out=z)


def _relu_backward(delta, a, scratch):
    # a > 0 exactly where z > 0, so sign(a) is the 0/1 mask of the derivative.
    np.sign(a, out=scratch)
    delta *= scratch
    return delta


# ------------------------------------------------- fused kernels (numba set)
# Forward: z = act(z + b) in one pass (replaces `z += b` and the forward above).
# Backward: delta *= mask (if use_mask), then *= act'(a), in one pass.

@fused(_FORWARD_SIG)
def _identity_forward_fused(z, b, half, one):
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] += b[j]


@fused(_BACKWARD_SIG)
def _identity_backward_fused(delta, a, mask, use_mask, one):
    if use_mask:
        for i in range(delta.shape[0]):
            for j in range(delta.shape[1]):
                delta[i, j] *= mask[i, j]


@fused(_FORWARD_SIG)
def _sigmoid_forward_fused(z, b, half, one):
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] = (math.tanh((z[i, j] + b[j]) * half) + one) * half


@fused(_BACKWARD_SIG)
def _sigmoid_backward_fused(delta, a, mask, use_mask, one):
    for i in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            d = delta[i, j] * mask[i, j] if use_mask else delta[i, j]
            delta[i, j] = d * ((one - a[i, j]) * a[i, j])


@fused(_FORWARD_SIG)
def _tanh_forward_fused(z, b, half, one):
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[i, j] = math.tanh(z[i, j] + b[j])


@fused(_BACKWARD_SIG)
def _tanh_backward_fused(delta, a, mask, use_mask, one):
    for i in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            d = delta[i, j] * mask[i, j] if use_mask else delta[i, j]
            delta[i, j] = d * (one - a[i, j] * a[i, j])


@fused(_FORWARD_SIG)
def _relu_forward_fused(z, b, half, one):
    zero = one - one
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            v = z[i, j] + b[j]
            # NaN stays NaN, as in np.maximum (max(v, zero) would not promise that)
            z[i, j] = zero if v < zero else v  # noqa: FURB136


@fused(_BACKWARD_SIG)
def _relu_backward_fused(delta, a, mask, use_mask, one):
    zero = one - one
    for i in range(delta.shape[0]):
        for j in range(delta.shape[1]):
            d = delta[i, j] * mask[i, j] if use_mask else delta[i, j]
            delta[i, j] = zero if a[i, j] == zero else d  # a is >= 0 (or NaN)


FUSED = {
    "identity": (_identity_forward_fused, _identity_backward_fused),
    "sigmoid": (_sigmoid_forward_fused, _sigmoid_backward_fused),
    "tanh": (_tanh_forward_fused, _tanh_backward_fused),
    "relu": (_relu_forward_fused, _relu_backward_fused),
}


ACTIVATIONS = {
    "identity": (_identity_forward, _identity_backward),
    "sigmoid": (_sigmoid_forward, _sigmoid_backward),
    "tanh": (_tanh_forward, _tanh_backward),
    "relu": (_relu_forward, _relu_backward),
}


def canonical_name(name):
    """Return the registry key for an activation name (case-insensitive).

    Raises
    ------
    ValueError
        If the name is not one of ``identity``, ``sigmoid``, ``tanh``, ``relu``.
    """
    key = str(name).lower()
    if key not in ACTIVATIONS:
        raise ConfigError(
            f"activation must be one of {', '.join(ACTIVATIONS)}, got {name!r}"
        )
    return key


def get(name):
    """Return the ``(forward, backward)`` pair of the named activation."""
    return ACTIVATIONS[canonical_name(name)]
