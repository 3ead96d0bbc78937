"""Dense layer: parameters are views into the network's flat arrays."""

import numpy as np


class Dense:
    """A fully-connected layer ``z = a_prev @ W + b``.

    ``W`` (n_in, n_out) and ``b`` (n_out,) are views of the network's flat
    parameter vector, ``dW`` and ``db`` views of its flat gradient vector.
    The layer owns its batch buffers ``z`` (pre-activation, overwritten by
    the activation), ``delta`` (dL/dz) and ``scratch``, each of shape
    (capacity, n_out); a batch of n rows uses their leading n rows.

    NOTE: never rebind ``W``/``b`` (``W = W - u`` would detach the view);
    update them in place.
    """

    def __init__(self, flat_params, flat_grads, offset, n_in, n_out):
        self.n_in = n_in
        self.n_out = n_out
        end_w = offset + n_in * n_out
        end_b = end_w + n_out
        self.W = flat_params[offset:end_w].reshape(n_in, n_out)
        self.b = flat_params[end_w:end_b]
        self.dW = flat_grads[offset:end_w].reshape(n_in, n_out)
        self.db = flat_grads[end_w:end_b]
        self.end = end_b
        self.z = self.delta = self.scratch = None
        self.mask = self.dropped = None  # dropout buffers, allocated by the network

    @staticmethod
    def n_params(n_in, n_out):
        return n_in * n_out + n_out

    def allocate(self, capacity, dtype, z=None, delta=None):
        """(Re)allocate the batch buffers for up to ``capacity`` rows.

        ``z`` and ``delta``, when given, are 1-D blocks of ``capacity *
        n_out`` elements to view instead (the network lays every layer's
        buffers end to end in one array, which the compiled step reads).
        """
        shape = (capacity, self.n_out)
        self.z = np.empty(shape, dtype=dtype) if z is None else z.reshape(shape)
        self.delta = np.empty(shape, dtype=dtype) if delta is None else delta.reshape(shape)
        self.scratch = np.empty(shape, dtype=dtype)

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
