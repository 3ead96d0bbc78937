"""The multilayer perceptron: flat parameters, hand-written forward/backward."""

import itertools

import numpy as np

from . import _blas, _checks, _jit, _subnormal, activations, batchnorm, losses, optimizers
from ._jit import call_c, fused
from .activations import (
    _identity_backward_fused,
    _identity_forward_fused,
    _relu_backward_fused,
    _relu_forward_fused,
    _sigmoid_backward_fused,
    _sigmoid_forward_fused,
    _tanh_backward_fused,
    _tanh_forward_fused,
)
from .augment import _gather_augmented_fused, _mix_rows_fused
from .batchnorm import BatchNorm
from .errors import ConfigError
from .layers import Dense
from .losses import _softmax_cross_entropy_fused, _softmax_squared_error_fused

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


def _views_of(flat, layers, norms, grads=False):
    out = []
    for layer in layers:
        out.extend((layer.dW, layer.db) if grads else (layer.W, layer.b))
    for bn in norms:
        out.extend((bn.dgamma, bn.dbeta) if grads else (bn.gamma, bn.beta))
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
    label_smoothing : float in [0, 1)
        Train against ``(1 - eps) * onehot + eps / K`` instead of the one-hot
        target (both losses); part of :meth:`loss`, :meth:`gradients` and
        the reported losses, not of the predictions.
    batch_norm : bool
        Normalise every hidden layer's pre-activation over the batch, then
        scale and shift it by trainable ``gamma``/``beta``
        (:mod:`fastnn.batchnorm`); evaluation uses running statistics. The
        hidden layers' biases are then unused (their gradient is zero).
        The training step runs in Python (no compiled whole step).

    Attributes
    ----------
    params : list of ndarray
        ``[W1, b1, ..., WL, bL]``, W_l of shape (n_in, n_out), b_l of shape
        (n_out,), then with ``batch_norm`` ``[gamma1, beta1, ...]`` of each
        hidden layer. Views of one flat array (``params.flat``): write in
        place.
    grads : list of ndarray
        Views shaped like ``params`` of the flat gradient buffer that the
        training step fills (``grads.flat``).
    running_stats : list of ndarray
        With ``batch_norm``, ``[running_mean1, running_var1, ...]`` of each
        hidden layer, views of one flat array (``running_stats.flat``) that
        every training step updates; empty otherwise.
    """

    def __init__(self, layer_sizes, activation="relu", loss="cross_entropy",
                 weight_init="xavier", weight_decay=0.0, dtype="float32", seed=0, dropout=0.0,
                 kernels=None, label_smoothing=0.0, batch_norm=False):
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
        self.label_smoothing = float(_checks.number("label_smoothing", label_smoothing, low=0,
                                                    high=1, high_open=True))
        self.batch_norm = _checks.flag("batch_norm", batch_norm)
        self.seed = seed
        self.reseed_dropout(None if seed is None else [seed, 1])

        hidden = self.layer_sizes[1:-1] if self.batch_norm else []
        n_total = sum(Dense.n_params(i, o) for i, o in itertools.pairwise(sizes))
        n_total += 2 * sum(hidden)
        self._flat = np.zeros(n_total, dtype=self.dtype)
        self._flat_grad = np.zeros(n_total, dtype=self.dtype)
        self._stats = np.zeros(2 * sum(hidden), dtype=self.dtype)
        self.layers = []
        offset = 0
        for n_in, n_out in itertools.pairwise(self.layer_sizes):
            layer = Dense(self._flat, self._flat_grad, offset, n_in, n_out)
            self.layers.append(layer)
            offset = layer.end
        self.norms = []  # one BatchNorm per hidden layer, with batch_norm
        stats_offset = 0
        for units in hidden:
            bn = BatchNorm(self._flat, self._flat_grad, self._stats, offset, stats_offset, units)
            self.norms.append(bn)
            offset, stats_offset = bn.end, bn.stats_end
        self.params = _views_of(self._flat, self.layers, self.norms)
        self.grads = _views_of(self._flat_grad, self.layers, self.norms, grads=True)
        self.running_stats = ParamList(
            [a for bn in self.norms for a in (bn.running_mean, bn.running_var)], self._stats)
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
            if self.norms:
                self._bn_forward = _jit.compiled(batchnorm._normalize_fused, name)
                self._bn_eval = _jit.compiled(batchnorm._normalize_eval_fused, name)
                self._bn_backward = _jit.compiled(batchnorm._backward_fused, name)
        self._bn_eps = self.dtype.type(batchnorm.EPS)
        # dtype-typed constants for the fused kernels (see activations.py)
        self._half = self.dtype.type(0.5)
        self._one = self.dtype.type(1.0)
        self._two_over_k = self.dtype.type(2.0 / self.n_classes)
        self._delta_floor = _subnormal.delta_floor(self.dtype)  # dL/dz below it is stored as 0
        self._wd = self.dtype.type(self.weight_decay)
        self._drop_p = self.dtype.type(self.dropout)
        self._drop_scale = self.dtype.type(1.0 / (1.0 - self.dropout))
        self._terms_per_row = 1 if self.loss_name == "cross_entropy" else self.n_classes
        on, off = losses.smoothed_targets(self.label_smoothing, self.n_classes)
        self._target_on, self._target_off = self.dtype.type(on), self.dtype.type(off)
        self._smoothed = (on, off)  # Python floats for the NumPy kernels
        self._inv = _Reciprocals(self.dtype)
        self._no_mix = (self._one, self.dtype.type(0.0))  # mixup weights (lam, mu) of no mixing
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
        for bn in self.norms:
            bn.reset()

    def snapshot(self, out=None):
        """The parameters, then the running statistics, in one 1-D array.

        Written into ``out`` (of that size and the network dtype) when given;
        :meth:`restore` puts it back. Without batch normalisation it is a
        copy of ``params.flat``.
        """
        n = self._flat.size
        if out is None:
            out = np.empty(n + self._stats.size, dtype=self.dtype)
        out[:n] = self._flat
        out[n:] = self._stats
        return out

    def restore(self, snapshot):
        """Set the parameters and running statistics from :meth:`snapshot`'s array."""
        n = self._flat.size
        self._flat[:] = snapshot[:n]
        self._stats[:] = snapshot[n:]

    def reseed_dropout(self, seed):
        """Restart the dropout masks' random stream (e.g. to repeat a mask)."""
        self._dropout_rng = np.random.default_rng(seed)

    def _ensure_capacity(self, n):
        """Allocate batch buffers for at least ``n`` rows (only grows)."""
        if n <= self._capacity:
            return
        # Every layer's z (and delta) rows lie end to end in one array, the
        # dropout buffers of the hidden layers in two more: the compiled step
        # (_train_step_fused) takes the blocks and finds each layer in them.
        widths = [layer.n_out for layer in self.layers]
        self._z_all = np.empty(n * sum(widths), dtype=self.dtype)
        self._delta_all = np.empty_like(self._z_all)
        n_hidden = n * sum(widths[:-1]) if self.dropout else 0
        self._mask_all = np.empty(n_hidden, dtype=self.dtype)
        self._dropped_all = np.empty(n_hidden, dtype=self.dtype)
        start = hidden = 0
        for i, layer in enumerate(self.layers):
            size = n * layer.n_out
            layer.allocate(n, self.dtype, self._z_all[start:start + size],
                           self._delta_all[start:start + size])
            start += size
            if self.dropout and i != len(self.layers) - 1:
                shape = (n, layer.n_out)
                layer.mask = self._mask_all[hidden:hidden + size].reshape(shape)
                layer.dropped = self._dropped_all[hidden:hidden + size].reshape(shape)
                hidden += size
        for bn in self.norms:
            bn.allocate(n, self.dtype)
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
        norms = self.norms
        for i, layer in enumerate(self.layers):
            if norms and i != last:
                a = self._normalized(layer, norms[i], a, n, training)
            elif fused and i != last:
                a = layer.product(a, n)
                self._fused_forward(a, layer.b, self._half, self._one)
            else:
                a = layer.forward(a, n)
                if i != last:
                    self._act_forward(a)
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
            self._fused_forward(z, bn.beta, self._half, self._one)
            return z
        if training:
            batchnorm.normalize_(z, bn, n, layer.scratch[:n])
        else:
            batchnorm.normalize_eval_(z, bn)
        z += bn.beta
        return self._act_forward(z)

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
        delta = z if self._delta_in_place else self.layers[-1].delta[:n]
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
            total, correct = self._fused_loss(z, y, delta, self._inv[n], self._two_over_k,
                                              self._target_on, self._target_off, lam, mu,
                                              self._delta_floor)
            # cross-entropy sums one term per row, squared error one per output
            return total / (n * self._terms_per_row), int(correct)
        # a mixed row counts as correct when it predicts the label with the larger share
        labels = np.roll(y, -1) if mu > lam else y
        n_correct = int(np.count_nonzero(z.argmax(axis=1) == labels))
        loss = self._loss_kernel(z, y, delta, self._row_buf[:n], self._rows[:n], *self._smoothed,
                                 float(lam), float(mu))
        return loss, n_correct

    def compiled_step(self, optimizer, X, y, batch_size, update=True, augment=None, rng=None):
        """The whole training step as one compiled call, or None where it does not apply.

        Returns a :class:`CompiledStep` for the numba kernel set (None with
        the NumPy kernels, with batch normalisation, without numba, or
        without access to NumPy's BLAS). It gathers a batch of rows of ``X``/``y`` (already validated: the
        network dtype, C-contiguous; intp labels), runs forward, loss and
        backward, and, when ``update`` is true and ``optimizer`` is one of
        the six built-in optimizers bound to this network's parameters with
        the numba kernels, the optimizer's update too. With an ``augment``
        (:class:`~fastnn.augment.Augmentation`) each batch is shifted and
        flipped as it is gathered, from draws of ``rng``. Compiles (or
        loads from the disk cache) here, for the types of ``X`` and ``y``.
        """
        if self.kernels != "numba" or _jit.kernel_dtype(self.dtype) is None or self.norms:
            return None
        gemm, gemv = _blas.gemm(self.dtype.name), _blas.gemv(self.dtype.name)
        if gemm is None or gemv is None:
            return None
        return CompiledStep(self, optimizer, X, y, batch_size, update, gemm, gemv, augment, rng)

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
            Apply dropout (drawing new masks) and batch normalisation with
            the batch's statistics, as the training step does (the running
            statistics are left as they are); only matters with ``dropout
            > 0`` or ``batch_norm``.

        Returns
        -------
        float
        """
        if not (training and (self.dropout or self.norms)):
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
        same :meth:`reseed_dropout` gives the matching loss); with
        ``batch_norm`` too (it normalises with the batch's statistics and,
        like a training step, updates the running ones).

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
            "label_smoothing": self.label_smoothing,
            # only when on, so that older readers still load other models
            **({"batch_norm": True} if self.batch_norm else {}),
        }

    def __repr__(self):
        return (f"Network(layer_sizes={self.layer_sizes}, activation={self.activation!r}, "
                f"loss={self.loss_name!r}, dtype={self.dtype.name!r}"
                + (", batch_norm=True)" if self.batch_norm else ")"))


class CompiledStep:
    """A training step compiled whole (see :meth:`Network.compiled_step`).

    Call it with the row indices of a batch; it returns ``(loss, n_correct)``
    as :meth:`Network.train_step_` does, with ``net.grads`` filled, and
    with the optimizer's update applied when :attr:`updates` is true
    (otherwise the caller runs ``optimizer.step``). When the loss is not
    finite nothing is updated and the optimizer's step count is left as it
    was, as in the Python loop, which stops before the update.
    """

    def __init__(self, net, optimizer, X, y, batch_size, update, gemm, gemv, augment=None,
                 rng=None):
        self.net = net
        self.augment = augment if augment is not None and augment.active else None
        self.rng = rng
        self.optimizer = optimizer
        net._ensure_capacity(batch_size)
        code = getattr(type(optimizer), "_step_code", None)
        fusable = (update and code is not None
                   and type(optimizer)._fused is _UPDATE_KERNELS[code]
                   and getattr(optimizer, "kernels", None) == "numba"
                   and len(optimizer._targets) == 1 and optimizer._targets[0] is net._flat
                   and (optimizer.threads == 1
                        or net.n_params < optimizers.PARALLEL_MIN_SIZE))
        self.updates = bool(fusable)
        empty = np.empty(0, dtype=net.dtype)
        state = [optimizer.state[name][0] for name in optimizer._state_names] if fusable else []
        state = (state + [empty, empty])[:2]
        self._codes = np.array([_ACTIVATION_CODES[net.activation], _LOSS_CODES[net.loss_name],
                                code if fusable else _NO_UPDATE, bool(net.dropout),
                                bool(net.weight_decay), net._capacity, 0, 0, 0, 0, 0],
                               dtype=np.int64)
        if self.augment is not None:
            aug = self.augment
            self._codes[_C_SHIFT:_C_MIX + 1] = (aug.shift, aug.flip, *aug.image_shape,
                                                 bool(aug.mixup))
        self._draws = np.zeros((batch_size, 3))
        self._consts = np.zeros(_F_UPDATE + 5, dtype=net.dtype)
        self._consts[:_F_INV_N] = (net._half, net._one, net._two_over_k, net._wd, net._drop_p,
                                   net._drop_scale, net._target_on, net._target_off)
        self._consts[_F_LAM] = 1  # no mixup: lam = 1, mu = 0
        self._consts[_F_TINY] = _subnormal.tiny(net.dtype)  # optimizer state below it is flushed
        self._consts[_F_DELTA_FLOOR] = net._delta_floor  # dL/dz below it is stored as 0
        self._out = np.zeros(4)
        # the batch, then one row of scratch for mixup
        self._xb = np.empty((batch_size + 1) * net.n_features, dtype=net.dtype)
        self._yb = np.empty(batch_size, dtype=np.intp)
        self._sizes = np.array(net.layer_sizes, dtype=np.intp)
        self._hidden_masks = [layer.mask for layer in net.layers[:-1]] if net.dropout else []
        # the kernel's arguments before and after the batch's row indices
        self._head = (gemm, gemv, X, y)
        self._tail = (self._xb, self._yb, net._flat, net._flat_grad, self._sizes, net._z_all,
                      net._delta_all, net._mask_all, net._dropped_all, net._ones, *state,
                      self._codes, self._consts, self._out, self._draws)
        self._kernel = _jit.compiled_for(_train_step_fused, (*self._head, np.zeros(1, np.intp),
                                                              *self._tail))

    def __call__(self, idx):
        net, consts, out = self.net, self._consts, self._out
        n = idx.shape[0]
        consts[_F_INV_N] = net._inv[n]
        if self.updates:
            scalars = self.optimizer._advance()
            consts[_F_UPDATE:_F_UPDATE + len(scalars)] = scalars
        if self.augment is not None:
            if self.augment.moves:
                self.augment.draw(self.rng, self._draws[:n])
            if self.augment.mixup:
                consts[_F_LAM], consts[_F_MU] = self.augment.draw_mix(self.rng, net.dtype)
        loss, n_correct = self._run(idx)
        if self.updates and not out[2]:
            self.optimizer._retreat()
        return loss, n_correct

    def again(self, idx):
        """Forward and backward once more on the batch of the last call (``net.grads`` filled).

        The same rows, shifted, flipped and mixed as they were; fresh
        dropout masks. For a step that updates (:attr:`updates`) this
        would update again: it is meant for steps built with
        ``update=False``, as sharpness-aware minimisation uses them
        (:func:`fastnn.train.fit`'s ``sam``).
        """
        return self._run(idx)

    def _run(self, idx):
        net, out = self.net, self._out
        n = idx.shape[0]
        rng = net._dropout_rng
        for mask in self._hidden_masks:
            rng.random(dtype=net.dtype, out=mask[:n])
        penalty = net._penalty()
        out[3] = penalty
        self._kernel(*self._head, idx, *self._tail)
        return out[0] / (n * net._terms_per_row) + penalty, int(out[1])


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


# ------------------------------------------------ the compiled training step
# Codes the compiled step dispatches on (one compiled program serves every
# network: a code branch costs nothing next to a pass over an array).
_ACTIVATION_CODES = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3}
_LOSS_CODES = {"cross_entropy": 0, "mean_squared_error": 1}
# The fused update of each optimizer, by its ``_step_code``.
_sgd_fused = optimizers.SGD._fused
_momentum_fused = optimizers.Momentum._fused
_rmsprop_fused = optimizers.RMSProp._fused
_adam_fused = optimizers.Adam._fused
_nadam_fused = optimizers.Nadam._fused
_UPDATE_KERNELS = (_sgd_fused, _momentum_fused, _rmsprop_fused, _adam_fused, _nadam_fused)
# Layout of the small arrays the step reads its settings from.
(_C_ACT, _C_LOSS, _C_UPDATE, _C_DROP, _C_DECAY, _C_CAPACITY, _C_SHIFT, _C_FLIP, _C_HEIGHT,
 _C_WIDTH, _C_MIX) = range(11)
(_F_HALF, _F_ONE, _F_TWO_OVER_K, _F_DECAY, _F_DROP_P, _F_DROP_SCALE, _F_ON, _F_OFF,
 _F_INV_N, _F_LAM, _F_MU, _F_TINY, _F_DELTA_FLOOR) = range(13)
_F_UPDATE = 13  # the optimizer's scalars follow (at most five)
_NO_UPDATE = -1


@fused(None)
def _matmul(gemm, a, b, c, trans_a, trans_b, one):
    """``c = op(a) @ op(b)`` through NumPy's BLAS (:mod:`fastnn._blas`); C-contiguous 2-D."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    order = np.int32(_blas.ROW_MAJOR)
    no, yes = np.int32(_blas.NO_TRANS), np.int32(_blas.TRANS)
    call_c(gemm, (order, yes if trans_a else no, yes if trans_b else no, np.int64(m),
                  np.int64(n), np.int64(k), one, a.ctypes.data, np.int64(a.shape[1]),
                  b.ctypes.data, np.int64(b.shape[1]), one - one, c.ctypes.data, np.int64(n)))


@fused(None)
def _column_sums(gemv, delta, ones, db, one):
    """``db = ones @ delta`` as the matrix-vector product NumPy's ``np.dot`` runs."""
    n, k = delta.shape
    call_c(gemv, (np.int32(_blas.ROW_MAJOR), np.int32(_blas.TRANS), np.int64(n), np.int64(k),
                  one, delta.ctypes.data, np.int64(k), ones.ctypes.data, np.int64(1), one - one,
                  db.ctypes.data, np.int64(1)))


@fused(None)
def _train_step_fused(gemm, gemv, X, y, idx, xb, yb, flat, grad, sizes, z_all, delta_all,
                      mask_all, dropped_all, ones, state0, state1, codes, consts, out, draws):
    """One whole training step in one compiled call; reads like the Python step.

    Gather rows ``idx`` of (X, y) into (xb, yb); forward (product, then
    bias + activation + dropout, :meth:`Network._forward`); softmax + loss
    (:meth:`Network._loss_and_delta`); backward (:meth:`Network._backward`)
    with the weight-decay gradient; then, unless ``codes[_C_UPDATE]`` is
    ``_NO_UPDATE``, the optimizer's fused update of each layer as soon as
    its gradient is complete (while it is still in cache), which is the
    same arithmetic as one pass over the flat vector. Dropout masks hold
    uniform draws on entry (drawn by the caller from the network's NumPy
    generator, so both steps see the same masks); so does ``draws``, when
    the batch is augmented in the gather (:mod:`fastnn.augment`). With
    mixup the gathered rows are blended (weights ``consts[_F_LAM]``,
    ``consts[_F_MU]``, drawn by the caller) and so are the loss's targets.

    ``out`` receives (summed loss, number correct, 1.0 if the step ran
    backward and the update, 0.0 if the loss was not finite and nothing
    was changed). Every product is the BLAS call NumPy makes for it, so
    results equal the Python step's with the numba kernels bit for bit.
    """
    n = idx.size
    n_features = X.shape[1]
    act = codes[_C_ACT]
    update = codes[_C_UPDATE]
    drop = codes[_C_DROP] != 0
    capacity = codes[_C_CAPACITY]
    half, one = consts[_F_HALF], consts[_F_ONE]
    zero = one - one
    for i in range(n):
        yb[i] = y[idx[i]]
    if codes[_C_SHIFT] or codes[_C_FLIP]:
        _gather_augmented_fused(X, idx, xb, draws, codes[_C_SHIFT], codes[_C_FLIP] != 0,
                                codes[_C_HEIGHT], codes[_C_WIDTH])
    else:
        for i in range(n):
            row = idx[i]
            for j in range(n_features):
                xb[i * n_features + j] = X[row, j]
    x = xb[:n * n_features].reshape((n, n_features))
    if codes[_C_MIX]:
        _mix_rows_fused(x, consts[_F_LAM], consts[_F_MU], xb[xb.size - n_features:])
    labels = yb[:n]
    n_layers = sizes.size - 1

    # forward
    a = x
    p_start = z_start = h_start = 0
    for layer in range(n_layers):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        w_end = p_start + n_in * n_out
        W = flat[p_start:w_end].reshape((n_in, n_out))
        b = flat[w_end:w_end + n_out]
        z = z_all[z_start:z_start + n * n_out].reshape((n, n_out))
        _matmul(gemm, a, W, z, False, False, one)
        if layer == n_layers - 1:
            for i in range(n):
                for j in range(n_out):
                    z[i, j] += b[j]
        else:
            if act == 0:
                _identity_forward_fused(z, b, half, one)
            elif act == 1:
                _sigmoid_forward_fused(z, b, half, one)
            elif act == 2:
                _tanh_forward_fused(z, b, half, one)
            else:
                _relu_forward_fused(z, b, half, one)
            a = z
            if drop:
                mask = mask_all[h_start:h_start + n * n_out].reshape((n, n_out))
                a = dropped_all[h_start:h_start + n * n_out].reshape((n, n_out))
                _dropout_fused(z, mask, a, consts[_F_DROP_P], consts[_F_DROP_SCALE])
                h_start += capacity * n_out
        p_start = w_end + n_out
        z_start += capacity * n_out

    # softmax + loss; cross-entropy turns the logits into dL/dz in place
    n_out = sizes[n_layers]
    z_start -= capacity * n_out
    logits = z_all[z_start:z_start + n * n_out].reshape((n, n_out))
    delta = logits
    if codes[_C_LOSS] == 0:
        total, correct = _softmax_cross_entropy_fused(logits, labels, delta, consts[_F_INV_N],
                                                      consts[_F_TWO_OVER_K], consts[_F_ON],
                                                      consts[_F_OFF], consts[_F_LAM],
                                                      consts[_F_MU], consts[_F_DELTA_FLOOR])
    else:
        delta = delta_all[z_start:z_start + n * n_out].reshape((n, n_out))
        total, correct = _softmax_squared_error_fused(logits, labels, delta, consts[_F_INV_N],
                                                      consts[_F_TWO_OVER_K], consts[_F_ON],
                                                      consts[_F_OFF], consts[_F_LAM],
                                                      consts[_F_MU], consts[_F_DELTA_FLOOR])
    out[0] = total
    out[1] = correct
    out[2] = 0.0
    if not np.isfinite(total + out[3]):  # out[3]: the weight-decay penalty, from the caller
        return

    # backward, layer by layer from the top, each layer's update right after
    ups = consts[_F_UPDATE:]
    tiny = consts[_F_TINY]
    for layer in range(n_layers - 1, -1, -1):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        p_start -= n_in * n_out + n_out
        w_end = p_start + n_in * n_out
        W = flat[p_start:w_end].reshape((n_in, n_out))
        dW = grad[p_start:w_end].reshape((n_in, n_out))
        a_prev = mask = dropped = x
        if layer:
            z_start -= capacity * n_in
            a_prev = z_all[z_start:z_start + n * n_in].reshape((n, n_in))
            if drop:
                h_start -= capacity * n_in
                mask = mask_all[h_start:h_start + n * n_in].reshape((n, n_in))
                dropped = dropped_all[h_start:h_start + n * n_in].reshape((n, n_in))
        _matmul(gemm, dropped if drop else a_prev, delta, dW, True, False, one)
        _column_sums(gemv, delta, ones, grad[w_end:w_end + n_out], one)
        if layer:
            delta_prev = delta_all[z_start:z_start + n * n_in].reshape((n, n_in))
            _matmul(gemm, delta, W, delta_prev, False, True, one)
            if act == 0:
                _identity_backward_fused(delta_prev, a_prev, mask if drop else a_prev, drop, one)
            elif act == 1:
                _sigmoid_backward_fused(delta_prev, a_prev, mask if drop else a_prev, drop, one)
            elif act == 2:
                _tanh_backward_fused(delta_prev, a_prev, mask if drop else a_prev, drop, one)
            else:
                _relu_backward_fused(delta_prev, a_prev, mask if drop else a_prev, drop, one)
            delta = delta_prev
        if codes[_C_DECAY]:
            _add_scaled_fused(grad[p_start:w_end], flat[p_start:w_end], consts[_F_DECAY])
        if update == _NO_UPDATE:
            continue
        end = w_end + n_out
        w, g = flat[p_start:end], grad[p_start:end]
        if update == 0:
            _sgd_fused(w, g, ups[0])
        elif update == 1:
            _momentum_fused(w, g, state0[p_start:end], ups[0], ups[1], ups[2] != zero, tiny)
        elif update == 2:
            _rmsprop_fused(w, g, state0[p_start:end], ups[0], ups[1], ups[2], tiny)
        elif update == 3:
            _adam_fused(w, g, state0[p_start:end], state1[p_start:end], ups[0], ups[1], ups[2],
                        ups[3], tiny)
        else:
            _nadam_fused(w, g, state0[p_start:end], state1[p_start:end], ups[0], ups[1],
                         ups[2], ups[3], ups[4], tiny)
    out[2] = 1.0


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
