"""Hidden-layer activations as in-place forward/backward pairs.

Each forward overwrites its argument ``z`` (the pre-activation) with the
activation ``a``. Each backward scales the upstream gradient ``delta``
(dL/da on entry, dL/dz on exit) in place, using only the forward *output*
``a``; so no activation needs to keep its input. ``scratch`` is a buffer of
the same shape and dtype that a backward may overwrite.

NOTE: every function here mutates its first argument.
"""

import numpy as np

from .errors import ConfigError


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
