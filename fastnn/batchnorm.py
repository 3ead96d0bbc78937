"""Batch normalisation of the hidden layers: forward and backward by hand.

With ``Network(batch_norm=True)`` every hidden layer computes

    z    = a_prev @ W                      (its bias b stays 0: beta replaces it)
    zhat = (z - mean) / sqrt(var + EPS)    (per unit, over the batch's rows)
    y    = gamma * zhat + beta
    a    = activation(y), then dropout

``mean`` and ``var`` (the biased variance, divided by n) are the batch's in
training. In evaluation (``predict``, ``evaluate``, validation) they are the
running statistics, updated after every training step as

    running_mean = (1 - MOMENTUM) * running_mean + MOMENTUM * mean
    running_var  = (1 - MOMENTUM) * running_var  + MOMENTUM * var * n / (n - 1)

(the unbiased batch variance; the same convention and constants as PyTorch's
``BatchNorm1d``), entries below the dtype's smallest normal number flushed to
zero (:mod:`fastnn._subnormal`: a unit whose input is always zero would
otherwise decay its variance into the subnormal range). gamma and beta are
trainable parameters (gamma starts at 1, beta at 0; no weight decay); the running statistics are not: they live in
``Network.running_stats`` and are saved in model files and checkpoints. A
weight average (:mod:`fastnn.average`) averages gamma and beta with the other
parameters but not the running statistics: the averaged weights are evaluated
with the statistics of the trained ones.

Backward, from ``dy = dL/dy`` (already through the activation and dropout):

    dbeta  = sum_rows dy
    dgamma = sum_rows dy * zhat
    dz     = gamma / sqrt(var + EPS) * (dy - dbeta / n - zhat * dgamma / n)

Each step has a NumPy reference (a few in-place ufunc calls on preallocated
buffers) and a fused kernel for the numba set (two passes over the rows in
place of about eight). The activation's own fused kernel adds beta, as it
adds the bias of a layer without normalisation.

NOTE: every function here mutates its first argument.
"""

import math

import numpy as np

from . import _subnormal
from ._jit import fused

EPS = 1e-5
MOMENTUM = 0.1


class BatchNorm:
    """The normalisation of one hidden layer of ``units`` units.

    ``gamma``/``beta`` (and ``dgamma``/``dbeta``) are views of the network's
    flat parameter (gradient) vector, ``running_mean``/``running_var`` views
    of its flat running statistics. The batch buffers (``zhat`` of shape
    (capacity, units); ``mean``, ``var``, ``inv_std``, ``tmp`` of shape
    (units,)) are allocated by the network with its other buffers.
    """

    def __init__(self, flat_params, flat_grads, flat_stats, layout, i):
        gamma, beta = layout.gammas[i], layout.betas[i]
        self.units = gamma.stop - gamma.start
        self.gamma, self.beta = flat_params[gamma], flat_params[beta]
        self.dgamma, self.dbeta = flat_grads[gamma], flat_grads[beta]
        self.running_mean = flat_stats[layout.means[i]]
        self.running_var = flat_stats[layout.vars[i]]
        self.zhat = self.mean = self.var = self.inv_std = self.tmp = self.mask = None

    def allocate(self, capacity, dtype):
        self.zhat = np.empty((capacity, self.units), dtype=dtype)
        self.mean, self.var, self.inv_std, self.tmp = np.empty((4, self.units), dtype=dtype)
        self.mask = np.empty(self.units, dtype=bool)

    def reset(self):
        """gamma = 1, beta = 0; running mean 0 and variance 1."""
        self.gamma[...] = 1
        self.beta[...] = 0
        self.running_mean[...] = 0
        self.running_var[...] = 1

    def update_running_(self, n):
        """Fold the last training batch's (n rows) statistics into the running ones."""
        keep = 1.0 - MOMENTUM
        tmp = self.tmp
        self.running_mean *= keep
        np.multiply(self.mean, MOMENTUM, out=tmp)
        self.running_mean += tmp
        self.running_var *= keep
        np.multiply(self.var, MOMENTUM * n / (n - 1) if n > 1 else MOMENTUM, out=tmp)
        self.running_var += tmp
        _subnormal.flush_(self.running_mean, tmp, self.mask)
        _subnormal.flush_(self.running_var, tmp, self.mask)


# ------------------------------------------------------------ NumPy reference
def normalize_(z, bn, n, scratch):
    """Training: batch statistics into ``bn.mean/var/inv_std``, ``bn.zhat``; ``z = gamma * zhat``.

    ``scratch`` is an (n, units) buffer of the network dtype.
    """
    zhat = bn.zhat[:n]
    inv_n = 1.0 / n
    np.add.reduce(z, axis=0, out=bn.mean)
    bn.mean *= inv_n
    np.subtract(z, bn.mean, out=zhat)
    np.multiply(zhat, zhat, out=scratch)
    np.add.reduce(scratch, axis=0, out=bn.var)
    bn.var *= inv_n
    np.add(bn.var, EPS, out=bn.inv_std)
    np.sqrt(bn.inv_std, out=bn.inv_std)
    np.reciprocal(bn.inv_std, out=bn.inv_std)
    zhat *= bn.inv_std
    np.multiply(zhat, bn.gamma, out=z)
    return z


def normalize_eval_(z, bn):
    """Evaluation: ``z = gamma * (z - running_mean) / sqrt(running_var + EPS)``."""
    scale = bn.tmp
    np.add(bn.running_var, EPS, out=scale)
    np.sqrt(scale, out=scale)
    np.divide(bn.gamma, scale, out=scale)
    z -= bn.running_mean
    z *= scale
    return z


def backward_(dy, bn, n, scratch):
    """Turn ``dy = dL/dy`` (n rows) into dL/dz in place; fill ``bn.dgamma``, ``bn.dbeta``."""
    zhat, tmp = bn.zhat[:n], bn.tmp
    inv_n = 1.0 / n
    np.add.reduce(dy, axis=0, out=bn.dbeta)
    np.multiply(dy, zhat, out=scratch)
    np.add.reduce(scratch, axis=0, out=bn.dgamma)
    np.multiply(bn.dgamma, inv_n, out=tmp)
    np.multiply(zhat, tmp, out=scratch)
    dy -= scratch
    np.multiply(bn.dbeta, inv_n, out=tmp)
    dy -= tmp
    np.multiply(bn.gamma, bn.inv_std, out=tmp)
    dy *= tmp
    return dy


# ------------------------------------------------------------ fused kernels
@fused("void(F[:, ::1], F[:, ::1], F[::1], F[::1], F[::1], F[::1], F, F, F)")
def _normalize_fused(z, zhat, gamma, mean, var, inv_std, inv_n, eps, one):
    """:func:`normalize_` in two passes over the rows (mean; then variance) and one to write."""
    rows, cols = z.shape
    mean[:] = inv_n - inv_n
    var[:] = inv_n - inv_n
    for i in range(rows):
        for j in range(cols):
            mean[j] += z[i, j]
    for j in range(cols):
        mean[j] *= inv_n
    for i in range(rows):
        for j in range(cols):
            d = z[i, j] - mean[j]
            zhat[i, j] = d
            var[j] += d * d
    for j in range(cols):
        var[j] *= inv_n
        inv_std[j] = one / math.sqrt(var[j] + eps)
    for i in range(rows):
        for j in range(cols):
            h = zhat[i, j] * inv_std[j]
            zhat[i, j] = h
            z[i, j] = h * gamma[j]


@fused("void(F[:, ::1], F[::1], F[::1], F[::1], F[::1], F)")
def _normalize_eval_fused(z, gamma, running_mean, running_var, scale, eps):
    """:func:`normalize_eval_`: the per-unit scale once, then one pass."""
    rows, cols = z.shape
    for j in range(cols):
        scale[j] = gamma[j] / math.sqrt(running_var[j] + eps)
    for i in range(rows):
        for j in range(cols):
            z[i, j] = (z[i, j] - running_mean[j]) * scale[j]


@fused("void(F[:, ::1], F[:, ::1], F[::1], F[::1], F[::1], F[::1], F)")
def _backward_fused(dy, zhat, gamma, inv_std, dgamma, dbeta, inv_n):
    """:func:`backward_`: one pass for the two sums, one to write dL/dz."""
    rows, cols = dy.shape
    dgamma[:] = inv_n - inv_n
    dbeta[:] = inv_n - inv_n
    for i in range(rows):
        for j in range(cols):
            d = dy[i, j]
            dbeta[j] += d
            dgamma[j] += d * zhat[i, j]
    for i in range(rows):
        for j in range(cols):
            dy[i, j] = gamma[j] * inv_std[j] * (dy[i, j] - dbeta[j] * inv_n
                                                 - zhat[i, j] * dgamma[j] * inv_n)
