"""The Python training step of a Network: forward, loss and backward, the reference.

:class:`Passes` holds the passes :class:`~fastnn.network.Network` runs in
Python: every product through ``np.dot`` with an ``out`` buffer, every
element-wise step through the network's kernel set (the NumPy reference,
or the fused numba loops). The compiled step (:mod:`fastnn.step`) is the
same sequence written as one program; the tests hold the two equal bit for
bit.
"""

import numpy as np

from . import _jit, batchnorm, settings
from ._jit import fused


class Passes:
    """Forward, loss and backward of a :class:`~fastnn.network.Network` (a base class).

    Uses the network's layers, buffers, settings record and kernels; see
    :meth:`train_step_`.
    """

    def _forward(self, X, n, training=False):
        """Run the forward pass on ``X`` (n rows); return the logits buffer."""
        a = X
        last = len(self.layers) - 1
        drop = training and self.dropout
        fused = self.kernels == "numba"
        norms = self.norms
        for i, layer in enumerate(self.layers):
            if norms and i != last:
                a = self._normalized(layer, norms[i], a, n, training)
            elif fused and i != last:
                a = layer.product(a, n)
                self._fused_forward(a, layer.b, layer.pre[:n], self._settings)
            else:
                a = layer.forward(a, n)
                if i != last:
                    self._act.forward(a, layer.pre[:n], layer.scratch[:n], self._settings[0])
            if drop and i != last:
                a = self._drop(layer, a, n)
        return a

    def _normalized(self, layer, bn, a_prev, n, training):
        """Product, batch normalisation (:mod:`fastnn.batchnorm`), + beta, activation."""
        z = layer.product(a_prev, n)
        if self.kernels == "numba":
            if training:
                self._bn_forward(z, bn.zhat[:n], bn.gamma, bn.mean, bn.var, bn.inv_std,
                                 self._inv[n], self._bn_eps, self._one)
            else:
                self._bn_eval(z, bn.gamma, bn.running_mean, bn.running_var, bn.tmp,
                              self._bn_eps)
            self._fused_forward(z, bn.beta, layer.pre[:n], self._settings)
            return z
        if training:
            batchnorm.normalize_(z, bn, n, layer.scratch[:n])
        else:
            batchnorm.normalize_eval_(z, bn)
        z += bn.beta
        return self._act.forward(z, layer.pre[:n], layer.scratch[:n], self._settings[0])

    def _optional_kernel(self, func):
        kernel = self._optional.get(func)
        if kernel is None:
            kernel = self._optional[func] = _jit.compiled(func, self.dtype.name)
        return kernel

    def _drop(self, layer, a, n):
        """Inverted dropout: ``dropped = a * mask``, mask in {0, 1/(1-p)}."""
        mask = layer.mask[:n]
        self._dropout_rng.random(dtype=self.dtype, out=mask)
        dropped = layer.dropped[:n]
        if self.kernels == "numba":
            self._optional_kernel(_dropout_fused)(a, mask, dropped, self._settings)
            return dropped
        np.greater_equal(mask, self.dropout, out=mask)
        mask *= 1.0 / (1.0 - self.dropout)
        np.multiply(a, mask, out=dropped)
        return dropped

    def _backward(self, X, n, delta):
        """Backpropagate dL/dz of the output layer, ``delta`` (n, n_classes)."""
        layers = self.layers
        drop = bool(self.dropout)
        for i in range(len(layers) - 1, 0, -1):
            layer, prev = layers[i], layers[i - 1]
            a_prev = prev.z[:n]
            delta_prev = prev.delta[:n]
            layer.backward(prev.dropped[:n] if drop else a_prev, delta, delta_prev,
                           self._ones[:n])
            if self.kernels == "numba":
                # NOTE: without dropout a_prev stands in for the unused mask.
                self._fused_backward(delta_prev, a_prev, prev.pre[:n],
                                     prev.mask[:n] if drop else a_prev, drop, self._settings)
            else:
                if drop:
                    delta_prev *= prev.mask[:n]  # d(dropped)/da = mask
                self._act.backward(delta_prev, a_prev, prev.pre[:n], prev.scratch[:n],
                                   self._settings[0])
            if self.norms:
                bn = self.norms[i - 1]
                if self.kernels == "numba":
                    self._bn_backward(delta_prev, bn.zhat[:n], bn.gamma, bn.inv_std, bn.dgamma,
                                      bn.dbeta, self._inv[n])
                else:
                    batchnorm.backward_(delta_prev, bn, n, prev.scratch[:n])
            delta = delta_prev
        layers[0].backward(X, delta, None, self._ones[:n])
        if self.norms:
            for layer in layers[:-1]:
                layer.db[...] = 0  # unused: the normalisation removes any bias
        if self.weight_decay:
            self._add_weight_decay_grad()

    def _add_weight_decay_grad(self):
        if self.kernels == "numba":
            decay = self._optional_kernel(_weight_decay_fused)
            for layer in self.layers:
                decay(layer.dW.reshape(-1), layer.W.reshape(-1), self._settings)
            return
        if self._wd_scratch is None:
            self._wd_scratch = np.empty_like(self._flat)
        for layer in self.layers:
            tmp = self._wd_scratch[: layer.W.size].reshape(layer.W.shape)
            np.multiply(layer.W, self.weight_decay, out=tmp)
            layer.dW += tmp

    def _penalty(self):
        if not self.weight_decay:
            return 0.0
        sq = sum(float(np.vdot(layer.W, layer.W)) for layer in self.layers)
        return 0.5 * self.weight_decay * sq

    def train_step_(self, X, y, mix=None):
        """Forward + backward on one batch; fill ``self.grads`` in place.

        Parameters
        ----------
        X : ndarray (n, n_features), network dtype, C-contiguous
        y : ndarray (n,), intp labels in [0, n_classes)
        mix : (lam, mu) or None
            The rows of ``X`` are mixup blends, ``lam`` times row i plus
            ``mu`` times row i + 1 (the last row with the first): the
            targets are blended the same way (:mod:`fastnn.augment`).

        Returns
        -------
        loss : float
            Mean loss of the batch including the weight-decay penalty.
        n_correct : int
            Number of rows whose arg-max prediction equals ``y``.
        """
        n = X.shape[0]
        self._ensure_capacity(n)
        z = self._forward(X, n, training=True)
        for bn in self.norms:
            bn.update_running_(n)
        # Cross-entropy turns the logits buffer itself into dL/dz; squared
        # error needs the probabilities while it writes dL/dz elsewhere.
        delta = z if self._loss.in_place else self.layers[-1].delta[:n]
        loss, n_correct = self._loss_and_delta(z, y, delta, n, *(mix or ()))
        self._backward(X, n, delta)
        return loss + self._penalty(), n_correct

    def _loss_and_delta(self, z, y, delta, n, lam=None, mu=None):
        """Mean loss and number correct of logits ``z`` (n rows); dL/dz into ``delta``.

        ``lam``/``mu`` (network dtype): mixup weights of the targets.
        """
        if lam is None:
            lam, mu = self._no_mix
        if self.kernels == "numba":
            total, correct = self._fused_loss(z, y, delta, self._settings, self._inv[n], lam, mu)
            # cross-entropy sums one term per row, squared error one per output
            return total / (n * self._terms_per_row), int(correct)
        # a mixed row counts as correct when it predicts the label with the larger share
        labels = np.roll(y, -1) if mu > lam else y
        n_correct = int(np.count_nonzero(z.argmax(axis=1) == labels))
        loss = self._loss.reference(z, y, delta, self._row_buf[:n], self._rows[:n],
                                    *self._smoothed, float(lam), float(mu))
        return loss, n_correct


class _Reciprocals(dict):
    """1/n in the network dtype, made once per batch size (``inv[n]``)."""

    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype

    def __missing__(self, n):
        value = self[n] = self.dtype.type(1.0 / n)
        return value


@fused("void(F[::1], F[::1], S[::1])", S=settings.network_dtype)
def _weight_decay_fused(dW, W, s):
    """dW += W * weight_decay in one pass (the L2 penalty's gradient); 1-D views."""
    decay = s[0].weight_decay
    for i in range(dW.size):
        dW[i] += W[i] * decay


@fused("void(F[:, ::1], F[:, ::1], F[:, ::1], S[::1])", S=settings.network_dtype)
def _dropout_fused(a, mask, dropped, s):
    """Uniform draws in ``mask`` -> {0, drop_scale}; ``dropped = a * mask``; one pass."""
    p, scale = s[0].drop_p, s[0].drop_scale
    zero = p - p
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            m = scale if mask[i, j] >= p else zero
            mask[i, j] = m
            dropped[i, j] = a[i, j] * m
