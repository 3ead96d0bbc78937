"""Dense layer: parameters are views into the network's flat arrays."""

import numpy as np


class Dense:
    """A fully-connected layer ``z = a_prev @ W + b``.

    ``W`` (n_in, n_out) and ``b`` (n_out,) are views of the network's flat
    parameter vector, ``dW`` and ``db`` views of its flat gradient vector,
    at the offsets of the network's :class:`~fastnn.layout.Layout`. The
    batch buffers ``z`` (pre-activation, overwritten by the activation),
    ``delta`` (dL/dz) and ``scratch``, each of shape (capacity, n_out), and
    for a hidden layer the dropout buffers ``mask``/``dropped`` and the
    activation input ``pre`` (empty unless the activation needs it) are
    views the network sets from its layout (:meth:`Network._ensure_capacity
    <fastnn.Network._ensure_capacity>`); a batch of n rows uses their
    leading n rows.

    NOTE: never rebind ``W``/``b`` (``W = W - u`` would detach the view);
    update them in place.
    """

    def __init__(self, flat_params, flat_grads, layout, i):
        self.n_in, self.n_out = layout.sizes[i], layout.sizes[i + 1]
        w, b = layout.weights[i], layout.biases[i]
        self.W = flat_params[w].reshape(self.n_in, self.n_out)
        self.b = flat_params[b]
        self.dW = flat_grads[w].reshape(self.n_in, self.n_out)
        self.db = flat_grads[b]
        self.z = self.delta = self.scratch = None
        self.mask = self.dropped = self.pre = None

    def forward(self, a_prev, n):
        """Return ``z[:n] = a_prev @ W + b`` (a_prev has n rows)."""
        z = self.product(a_prev, n)
        z += self.b
        return z

    def product(self, a_prev, n):
        """Return ``z[:n] = a_prev @ W``: the bias is left to a fused kernel."""
        z = self.z[:n]
        # NOTE: np.dot(a, b, out) calls the same BLAS routine as np.matmul(out=)
        # with about half its Python overhead (0.9 vs 1.7 us a call here),
        # which counts at batch 16. ``out`` must be C-contiguous, of the
        # result dtype, and must not overlap the operands (ours never do).
        np.dot(a_prev, self.W, z)
        return z

    def backward(self, a_prev, delta, delta_prev, ones):
        """Fill dW, db from dL/dz ``delta``; write dL/da_prev into ``delta_prev``.

        ``ones`` is a vector of n ones: ``db = ones @ delta`` runs as a BLAS
        matrix-vector product, 2-3.5x faster here than summing over axis 0.
        ``delta_prev`` may be None for the first layer (no input gradient).
        """
        np.dot(a_prev.T, delta, self.dW)
        np.dot(ones, delta, self.db)
        if delta_prev is not None:
            np.dot(delta, self.W.T, delta_prev)
