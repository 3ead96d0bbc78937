"""The multilayer perceptron: flat parameters, hand-written forward/backward."""

import itertools

import numpy as np

from . import _checks, _jit, activations, losses
from ._jit import fused
from .errors import ConfigError
from .layers import Dense

WEIGHT_INITS = ("random", "xavier", "he")
RANDOM_INIT_STD = 0.01
_EVAL_CHUNK = 4096


class ParamList(list):
    """A list of array views that also carries the flat array they tile.

    ``flat`` is the contiguous 1-D array that the views cover in order; the
    optimizers update it in one call per operation instead of per array.
    """

    def __init__(self, arrays, flat):
        super().__init__(arrays)
        self.flat = flat


def _views_of(flat, layers, grads=False):
    out = []
    for layer in layers:
        out.extend((layer.dW, layer.db) if grads else (layer.W, layer.b))
    return ParamList(out, flat)


class Network:
    """A fully-connected network with a softmax output layer.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_features, hidden_1, ..., hidden_m, n_classes]``; at least two
        entries, every entry >= 1 and the last >= 2.
    activation : {'identity', 'sigmoid', 'tanh', 'relu'}
        Activation of every hidden layer (case-insensitive). The output
        layer is always softmax.
    loss : {'cross_entropy', 'mean_squared_error'}
        ``cross_entropy`` is -log p[y]; ``mean_squared_error`` is
        (1/K) * sum_k (p_k - onehot_k)^2. Both are averaged over the batch.
    weight_init : {'xavier', 'he', 'random'}
        ``xavier``: Glorot uniform, U(-r, r) with r = sqrt(6/(n_in+n_out)).
        ``he``: normal with std sqrt(2/n_in). ``random``: normal with std
        0.01. Biases start at zero. Case-insensitive.
    weight_decay : float, >= 0
        L2 penalty ``weight_decay/2 * sum_l ||W_l||^2`` on weights (not
        biases), part of :meth:`loss` and :meth:`gradients`.
    dtype : {'float32', 'float64'}
        Dtype of parameters, buffers and all arithmetic.
    seed : int or None
        Seed of the initialisation (and of the dropout masks); the same seed
        gives bit-identical parameters.
    dropout : float in [0, 1)
        Inverted dropout on the output of every hidden layer during
        training: each unit is zeroed with this probability and the rest
        scaled by 1/(1 - dropout). Off in :meth:`predict_proba`,
        :meth:`evaluate` and :meth:`loss` (unless ``training=True``).
    kernels : {'auto', 'numba', 'numpy'}, optional
        Element-wise kernel set (see :meth:`set_kernels`); default
        ``$FASTNN_KERNELS`` or ``auto``: numba when it is installed.

    Attributes
    ----------
    params : list of ndarray
        ``[W1, b1, ..., WL, bL]``, W_l of shape (n_in, n_out), b_l of shape
        (n_out,). Views of one flat array (``params.flat``): write in place.
    grads : list of ndarray
        Views shaped like ``params`` of the flat gradient buffer that the
        training step fills (``grads.flat``).
    """

    def __init__(self, layer_sizes, activation="relu", loss="cross_entropy",
                 weight_init="xavier", weight_decay=0.0, dtype="float32", seed=0, dropout=0.0,
                 kernels=None):
        sizes = list(layer_sizes)
        if len(sizes) < 2:
            raise ConfigError(f"layer_sizes needs at least 2 entries, got {sizes!r}")
        for i, size in enumerate(sizes):
            _checks.number(f"layer_sizes[{i}]", size, low=1, integer=True)
        if sizes[-1] < 2:
            raise ConfigError(f"the output layer needs >= 2 classes, got {sizes[-1]}")
        self.layer_sizes = [int(s) for s in sizes]
        self.activation = activations.canonical_name(activation)
        self.loss_name = losses.canonical_name(loss)
        self.weight_init = _checks.choice("weight_init", weight_init, WEIGHT_INITS)
        self.weight_decay = float(_checks.number("weight_decay", weight_decay, low=0))
        self.dtype = np.dtype(_checks.dtype_name(dtype))
        self.dropout = float(_checks.number("dropout", dropout, low=0, high=1, high_open=True))
        self.seed = seed
        self.reseed_dropout(None if seed is None else [seed, 1])

        n_total = sum(Dense.n_params(i, o) for i, o in itertools.pairwise(sizes))
        self._flat = np.zeros(n_total, dtype=self.dtype)
        self._flat_grad = np.zeros(n_total, dtype=self.dtype)
        self.layers = []
        offset = 0
        for n_in, n_out in itertools.pairwise(self.layer_sizes):
            layer = Dense(self._flat, self._flat_grad, offset, n_in, n_out)
            self.layers.append(layer)
            offset = layer.end
        self.params = _views_of(self._flat, self.layers)
        self.grads = _views_of(self._flat_grad, self.layers, grads=True)
        self._act_forward, self._act_backward = activations.get(self.activation)
        self._loss_kernel = losses.get(self.loss_name)
        self._delta_in_place = self.loss_name == "cross_entropy"
        self._capacity = 0
        self._wd_scratch = None
        self.set_kernels(kernels)
        self.init_weights(seed)

    def set_kernels(self, kernels=None):
        """Choose the element-wise kernels: ``'auto'``, ``'numba'`` or ``'numpy'``.

        ``numpy`` runs every element-wise step as in-place NumPy ufunc calls
        (the reference). ``numba`` runs fused compiled loops instead: bias +
        activation in one pass, dropout mask + activation derivative in one
        pass, softmax + loss + accuracy + dL/dz in one row kernel. None reads
        ``$FASTNN_KERNELS`` (default ``auto``: numba when it imports). The
        kernels are compiled (or loaded from the disk cache) here, never
        inside a training step. Returns ``self``.

        Raises
        ------
        ConfigError
            Unknown name, or ``'numba'`` without numba installed.
        """
        self.kernels = _jit.resolve(kernels)
        if self.kernels == "numba":
            name = self.dtype.name
            forward, backward = activations.FUSED[self.activation]
            self._fused_forward = _jit.compiled(forward, name)
            self._fused_backward = _jit.compiled(backward, name)
            self._fused_loss = _jit.compiled(losses.FUSED[self.loss_name], name)
            # Each cached kernel takes ~0.1 s to load: the weight-decay and
            # dropout kernels are fetched on first use (_optional_kernel).
            self._optional = {}
        # dtype-typed constants for the fused kernels (see activations.py)
        self._half = self.dtype.type(0.5)
        self._one = self.dtype.type(1.0)
        self._two_over_k = self.dtype.type(2.0 / self.n_classes)
        self._wd = self.dtype.type(self.weight_decay)
        self._drop_p = self.dtype.type(self.dropout)
        self._drop_scale = self.dtype.type(1.0 / (1.0 - self.dropout))
        self._terms_per_row = 1 if self.loss_name == "cross_entropy" else self.n_classes
        self._inv = _Reciprocals(self.dtype)
        return self

    # ------------------------------------------------------------------ setup
    @property
    def n_features(self):
        """Number of input features."""
        return self.layer_sizes[0]

    @property
    def n_classes(self):
        """Number of output classes."""
        return self.layer_sizes[-1]

    @property
    def n_params(self):
        """Total number of trainable parameters."""
        return self._flat.size

    def init_weights(self, seed=None):
        """Re-initialise all parameters in place from ``seed``.

        Draws in float64 from ``np.random.default_rng(seed)`` and rounds to
        the network dtype, so float32 and float64 networks with the same
        seed start from the same values up to rounding.
        """
        rng = np.random.default_rng(seed)
        for layer in self.layers:
            n_in, n_out = layer.n_in, layer.n_out
            if self.weight_init == "xavier":
                limit = np.sqrt(6.0 / (n_in + n_out))
                w = rng.uniform(-limit, limit, size=(n_in, n_out))
            elif self.weight_init == "he":
                w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
            else:
                w = rng.standard_normal((n_in, n_out)) * RANDOM_INIT_STD
            layer.W[...] = w
            layer.b[...] = 0

    def reseed_dropout(self, seed):
        """Restart the dropout masks' random stream (e.g. to repeat a mask)."""
        self._dropout_rng = np.random.default_rng(seed)

    def _ensure_capacity(self, n):
        """Allocate batch buffers for at least ``n`` rows (only grows)."""
        if n <= self._capacity:
            return
        for layer in self.layers:
            layer.allocate(n, self.dtype)
        if self.dropout:
            for layer in self.layers[:-1]:
                layer.mask = np.empty((n, layer.n_out), dtype=self.dtype)
                layer.dropped = np.empty((n, layer.n_out), dtype=self.dtype)
        self._row_buf = np.empty((n, 1), dtype=self.dtype)
        self._rows = np.arange(n, dtype=np.intp)
        self._ones = np.ones(n, dtype=self.dtype)
        self._capacity = n

    # ---------------------------------------------------------------- kernels
    def _forward(self, X, n, training=False):
        """Run the forward pass on ``X`` (n rows); return the logits buffer."""
        a = X
        last = len(self.layers) - 1
        drop = training and self.dropout
        fused = self.kernels == "numba"
        for i, layer in enumerate(self.layers):
            if fused and i != last:
                a = layer.product(a, n)
                self._fused_forward(a, layer.b, self._half, self._one)
            else:
                a = layer.forward(a, n)
                if i != last:
                    self._act_forward(a)
            if drop and i != last:
                a = self._drop(layer, a, n)
        return a

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
            self._optional_kernel(_dropout_fused)(a, mask, dropped, self._drop_p,
                                                  self._drop_scale)
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
                self._fused_backward(delta_prev, a_prev, prev.mask[:n] if drop else a_prev,
                                     drop, self._one)
            else:
                if drop:
                    delta_prev *= prev.mask[:n]  # d(dropped)/da = mask
                self._act_backward(delta_prev, a_prev, prev.scratch[:n])
            delta = delta_prev
        layers[0].backward(X, delta, None, self._ones[:n])
        if self.weight_decay:
            self._add_weight_decay_grad()

    def _add_weight_decay_grad(self):
        if self.kernels == "numba":
            axpy = self._optional_kernel(_add_scaled_fused)
            for layer in self.layers:
                axpy(layer.dW.reshape(-1), layer.W.reshape(-1), self._wd)
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

    def train_step_(self, X, y):
        """Forward + backward on one batch; fill ``self.grads`` in place.

        Parameters
        ----------
        X : ndarray (n, n_features), network dtype, C-contiguous
        y : ndarray (n,), intp labels in [0, n_classes)

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
        # Cross-entropy turns the logits buffer itself into dL/dz; squared
        # error needs the probabilities while it writes dL/dz elsewhere.
        delta = z if self._delta_in_place else self.layers[-1].delta[:n]
        loss, n_correct = self._loss_and_delta(z, y, delta, n)
        self._backward(X, n, delta)
        return loss + self._penalty(), n_correct

    def _loss_and_delta(self, z, y, delta, n):
        """Mean loss and number correct of logits ``z`` (n rows); dL/dz into ``delta``."""
        if self.kernels == "numba":
            total, correct = self._fused_loss(z, y, delta, self._inv[n], self._two_over_k)
            # cross-entropy sums one term per row, squared error one per output
            return total / (n * self._terms_per_row), int(correct)
        n_correct = int(np.count_nonzero(z.argmax(axis=1) == y))
        loss = self._loss_kernel(z, y, delta, self._row_buf[:n], self._rows[:n])
        return loss, n_correct

    # ------------------------------------------------------------- public API
    def _check_X(self, X):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X must have shape (n_samples, {self.n_features}), got {X.shape}"
            )
        if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
            raise ValueError(f"X must be real numbers, got dtype {X.dtype}")
        if X.shape[0] == 0:
            raise ValueError("X has no rows")
        # Converting to the network dtype is explicit here; math never mixes dtypes.
        return np.ascontiguousarray(X, dtype=self.dtype)

    def _check_y(self, y, n):
        return as_labels(y, n, self.n_classes)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array_like (n_samples, n_features)
            Converted to the network dtype.

        Returns
        -------
        ndarray (n_samples, n_classes), network dtype
            Softmax probabilities; rows sum to 1.
        """
        X = self._check_X(X)
        n = X.shape[0]
        out = np.empty((n, self.n_classes), dtype=self.dtype)
        self._ensure_capacity(min(max(n, 1), _EVAL_CHUNK))
        for start in range(0, n, self._capacity):
            stop = min(start + self._capacity, n)
            z = self._forward(X[start:stop], stop - start)
            losses.softmax_(z, self._row_buf[: stop - start])
            out[start:stop] = z
        return out

    def predict(self, X):
        """Predicted class indices, ndarray (n_samples,) of intp."""
        return self.predict_proba(X).argmax(axis=1)

    def evaluate(self, X, y):
        """Mean loss (with the weight-decay penalty) and accuracy on a data set.

        Works in chunks, so any number of rows is fine.

        Returns
        -------
        (loss, accuracy) : tuple of float
        """
        X = self._check_X(X)
        n = X.shape[0]
        y = self._check_y(y, n)
        self._ensure_capacity(min(max(n, 1), _EVAL_CHUNK))
        total_loss = 0.0
        correct = 0
        out = self.layers[-1]
        for start in range(0, n, self._capacity):
            stop = min(start + self._capacity, n)
            m = stop - start
            z = self._forward(X[start:stop], m)
            loss, n_correct = self._loss_and_delta(z, y[start:stop], out.delta[:m], m)
            correct += n_correct
            total_loss += m * loss
        return total_loss / n + self._penalty(), correct / n

    def loss(self, X, y, training=False):
        """Mean loss over the batch plus ``weight_decay/2 * sum_l ||W_l||^2``.

        Parameters
        ----------
        X : array_like (n_samples, n_features)
        y : array_like (n_samples,) of int, or one-hot (n_samples, n_classes)
        training : bool
            Apply dropout (drawing new masks) as the training step does;
            only matters when ``dropout > 0``.

        Returns
        -------
        float
        """
        if not (training and self.dropout):
            return self.evaluate(X, y)[0]
        X = self._check_X(X)
        n = X.shape[0]
        y = self._check_y(y, n)
        self._ensure_capacity(n)
        z = self._forward(X, n, training=True)
        return self._loss_and_delta(z, y, self.layers[-1].delta[:n], n)[0] + self._penalty()

    def gradients(self, X, y):
        """Exact gradient of :meth:`loss` with respect to every parameter.

        With ``dropout > 0`` it is the gradient of the training-mode loss
        under freshly drawn masks (``loss(X, y, training=True)`` after the
        same :meth:`reseed_dropout` gives the matching loss).

        Returns
        -------
        list of ndarray
            Fresh arrays shaped like :attr:`params` (``[dW1, db1, ...]``),
            backed by one flat array available as ``.flat``.
        """
        X = self._check_X(X)
        n = X.shape[0]
        y = self._check_y(y, n)
        self.train_step_(X, y)
        flat = self._flat_grad.copy()
        views = []
        offset = 0
        for p in self.params:
            views.append(flat[offset: offset + p.size].reshape(p.shape))
            offset += p.size
        return ParamList(views, flat)

    def config(self):
        """The constructor arguments (without ``seed``) as a JSON-able dict."""
        return {
            "layer_sizes": list(self.layer_sizes),
            "activation": self.activation,
            "loss": self.loss_name,
            "weight_init": self.weight_init,
            "weight_decay": self.weight_decay,
            "dtype": self.dtype.name,
            "dropout": self.dropout,
        }

    def __repr__(self):
        return (f"Network(layer_sizes={self.layer_sizes}, activation={self.activation!r}, "
                f"loss={self.loss_name!r}, dtype={self.dtype.name!r})")


class _Reciprocals(dict):
    """1/n in the network dtype, made once per batch size (``inv[n]``)."""

    def __init__(self, dtype):
        super().__init__()
        self.dtype = dtype

    def __missing__(self, n):
        value = self[n] = self.dtype.type(1.0 / n)
        return value


@fused("void(F[::1], F[::1], F)")
def _add_scaled_fused(dst, src, alpha):
    """dst += src * alpha in one pass (the weight-decay gradient); 1-D views."""
    for i in range(dst.size):
        dst[i] += src[i] * alpha


@fused("void(F[:, ::1], F[:, ::1], F[:, ::1], F, F)")
def _dropout_fused(a, mask, dropped, p, scale):
    """Uniform draws in ``mask`` -> {0, scale}; ``dropped = a * mask``; one pass."""
    zero = p - p
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            m = scale if mask[i, j] >= p else zero
            mask[i, j] = m
            dropped[i, j] = a[i, j] * m


def as_labels(y, n, n_classes):
    """Validate labels and return them as a contiguous intp array of shape (n,).

    Accepts integer labels of shape (n,) or one-hot rows of shape (n, K).

    Raises
    ------
    ValueError
        On a shape mismatch, non-integer labels, or labels outside [0, K).
    """
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape != (n, n_classes):
            raise ValueError(f"one-hot y must have shape ({n}, {n_classes}), got {y.shape}")
        if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
            raise ValueError("2-D y must be one-hot: each row one 1 and the rest 0")
        return np.ascontiguousarray(y.argmax(axis=1), dtype=np.intp)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if y.dtype.kind not in "iu":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.intp)
        else:
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= n_classes):
        bad = int(np.flatnonzero((y < 0) | (y >= n_classes))[0])
        raise ValueError(
            f"labels must be in [0, {n_classes}), got {y[bad]} at index {bad}"
        )
    return np.ascontiguousarray(y, dtype=np.intp)
