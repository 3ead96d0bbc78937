"""The gradient's global L2 norm, for clipping and sharpness-aware minimisation.

``||g|| = sqrt(sum_i g_i^2)`` over the whole flat gradient. The NumPy
reference is ``np.vdot`` (BLAS ``?dot``, accumulating in the array dtype);
the fused kernel accumulates in float64 in one pass. The Python step with
the numba kernels and the compiled step both use the fused kernel, so their
norms, and so their clipped or perturbed weights, are equal bit for bit.
"""

import math

import numpy as np

from . import _jit
from ._jit import fused


@fused("float64(F[::1])")
def _sum_squares_fused(g):
    """sum_i g_i^2, accumulated in float64; 1-D."""
    total = 0.0
    for i in range(g.size):
        total += float(g[i]) * float(g[i])
    return total


def l2_norm(flat, kernels="numpy"):
    """The L2 norm of the 1-D array ``flat`` as a Python float, by the ``kernels`` set."""
    if kernels == "numba":
        return math.sqrt(_jit.compiled(_sum_squares_fused, flat.dtype.name)(flat))
    return math.sqrt(float(np.vdot(flat, flat)))


def clip_(flat, max_norm, kernels="numpy"):
    """Scale ``flat`` in place so its L2 norm is at most ``max_norm``; return the norm before.

    The factor ``max_norm / norm`` is computed in float64 and applied in
    the array dtype.
    """
    norm = l2_norm(flat, kernels)
    if norm > max_norm:
        flat *= flat.dtype.type(max_norm / norm)
    return norm
