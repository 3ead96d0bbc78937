"""The multilayer perceptron: flat parameters, hand-written forward/backward."""

import contextlib

import numpy as np

from . import _blas, _checks, _jit, _subnormal, activations, batchnorm, losses, settings
from .batchnorm import BatchNorm
from .errors import ConfigError
from .layers import Dense
from .layout import Layout
from .passes import Passes, _Reciprocals

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


def _fixed(name, getter, doc):
    """A read-only property: setting it raises ConfigError (it shapes the memory)."""
    def set_(self, value):
        raise ConfigError(f"{name} is fixed when a Network is built; build a new Network")

    return property(getter, set_, doc=doc + " Fixed at construction.")


class Network(Passes):
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
    preprocessing : fastnn.preprocessing.Preprocessing or None
        What turns raw features into this network's inputs, when known (set
        by :func:`fastnn.load_model` and :class:`fastnn.Trainer`; saved with
        the model). The network's own methods take inputs already
        preprocessed.
    """

    preprocessing = None

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
        self._dtype = np.dtype(_checks.dtype_name(dtype))
        self._layout = Layout(sizes, _checks.flag("batch_norm", batch_norm))
        self._settings = np.zeros(1, dtype=settings.network_dtype(self._dtype.name))
        self._capacity = 0
        self._generation = 0  # counts changes of kernels or buffers (CompiledStep rebinds)
        self._values = {}
        self._seed = seed
        self.reseed_dropout(None if seed is None else [seed, 1])
        with self._batch_setting():
            self.activation = activation
            self.loss_name = loss
            self.weight_init = weight_init
            self.weight_decay = weight_decay
            self.dropout = dropout
            self.label_smoothing = label_smoothing

        layout = self._layout
        self._flat = np.zeros(layout.n_params, dtype=self._dtype)
        self._flat_grad = np.zeros(layout.n_params, dtype=self._dtype)
        self._stats = np.zeros(layout.n_stats, dtype=self._dtype)
        self.layers = [Dense(self._flat, self._flat_grad, layout, i)
                       for i in range(layout.n_layers)]
        self.norms = [BatchNorm(self._flat, self._flat_grad, self._stats, layout, i)
                      for i in range(len(layout.gammas))]
        self.params = ParamList(layout.views(self._flat), self._flat)
        self.grads = ParamList(layout.views(self._flat_grad), self._flat_grad)
        self.running_stats = ParamList(layout.stat_views(self._stats), self._stats)
        self._wd_scratch = None
        self.set_kernels(kernels)
        self.init_weights(seed)

    # --------------------------------------------------------------- settings
    # Every setting is validated when set and refreshes the settings record
    # (fastnn.settings) in place, which every kernel set and the compiled
    # step read: a setting changed after construction acts at the next step.
    def _setting(name, check, doc):
        def get(self):
            return self._values[name]

        def set_(self, value):
            self._values[name] = check(value)
            if not getattr(self, "_deferred", False):
                self._refresh()

        return property(get, set_, doc=doc)

    activation = _setting("activation", activations.canonical_name,
                          "Activation of every hidden layer (a name in ``activations.REGISTRY``).")
    loss_name = _setting("loss_name", losses.canonical_name,
                         "Output loss (a name in ``losses.REGISTRY``).")
    weight_init = _setting("weight_init", lambda v: _checks.choice("weight_init", v, WEIGHT_INITS),
                           "Initialisation used by :meth:`init_weights`.")
    weight_decay = _setting("weight_decay",
                            lambda v: float(_checks.number("weight_decay", v, low=0)),
                            "L2 factor on the weights (>= 0).")
    dropout = _setting("dropout", lambda v: float(_checks.number(
        "dropout", v, low=0, high=1, high_open=True)), "Dropout probability in [0, 1).")
    label_smoothing = _setting("label_smoothing", lambda v: float(_checks.number(
        "label_smoothing", v, low=0, high=1, high_open=True)), "Label smoothing in [0, 1).")
    del _setting

    @contextlib.contextmanager
    def _batch_setting(self):
        """Set several settings, refreshing once at the end."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False
        self._refresh()

    dtype = _fixed("dtype", lambda self: self._dtype,
                   "Dtype of parameters, buffers and all arithmetic.")
    layer_sizes = _fixed("layer_sizes", lambda self: list(self._layout.sizes),
                         "``[n_features, hidden..., n_classes]`` (a copy).")
    batch_norm = _fixed("batch_norm", lambda self: bool(self._layout.gammas),
                        "Whether the hidden layers are batch-normalised.")
    seed = _fixed("seed", lambda self: self._seed,
                  "The seed the network was built with (to draw again: :meth:`init_weights` "
                  "and :meth:`reseed_dropout`).")
    kernels = property(lambda self: self._kernels, lambda self, value: self.set_kernels(value),
                       doc="The kernel set, ``'numba'`` or ``'numpy'``; setting it calls "
                           ":meth:`set_kernels`.")

    def _refresh(self):
        """Rebuild everything derived from the settings; the one place that does."""
        act, loss = activations.get(self.activation), losses.get(self.loss_name)
        dtype, k = self._dtype, self.n_classes
        on, off = losses.smoothed_targets(self.label_smoothing, k)
        values = {"one": 1.0, "half": 0.5, "two_over_k": 2.0 / k,
                  "weight_decay": self.weight_decay, "drop_p": self.dropout,
                  "drop_scale": 1.0 / (1.0 - self.dropout), "target_on": on, "target_off": off,
                  "delta_floor": _subnormal.delta_floor(dtype), "tiny": _subnormal.tiny(dtype),
                  **activations.CONSTANTS}
        self._settings[0] = tuple(values[name] for name in self._settings.dtype.names)
        self._smoothed = (on, off)  # Python floats for the NumPy loss kernels
        self._terms_per_row = loss.terms_per_row(k)
        self._one = dtype.type(1.0)
        self._no_mix = (self._one, dtype.type(0.0))  # mixup weights (lam, mu) of no mixing
        self._bn_eps = dtype.type(batchnorm.EPS)
        self._inv = _Reciprocals(dtype)
        buffers = (bool(self.dropout), act.needs_input)
        if buffers != getattr(self, "_buffer_kinds", buffers):
            self._capacity = 0  # buffers change: allocated again at the next batch
        self._buffer_kinds = buffers
        self._act, self._loss = act, loss
        if getattr(self, "_kernels", None) == "numba":
            self._compile_kernels()
        self._generation += 1

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
        self._kernels = _jit.resolve(kernels)
        self._refresh()
        return self

    def _compile_kernels(self):
        name = self._dtype.name
        self._fused_forward = _jit.compiled(self._act.forward_fused, name)
        self._fused_backward = _jit.compiled(self._act.backward_fused, name)
        self._fused_loss = _jit.compiled(self._loss.fused, name)
        # Each cached kernel takes ~0.1 s to load: the weight-decay and
        # dropout kernels are fetched on first use (_optional_kernel).
        self._optional = {}
        if self._layout.gammas:
            self._bn_forward = _jit.compiled(batchnorm._normalize_fused, name)
            self._bn_eval = _jit.compiled(batchnorm._normalize_eval_fused, name)
            self._bn_backward = _jit.compiled(batchnorm._backward_fused, name)

    def settings(self):
        """The settings record the kernels read, as a dict (name -> value in the dtype)."""
        return {name: self._settings[name][0] for name in self._settings.dtype.names}

    # ------------------------------------------------------------------ setup
    @property
    def layout(self):
        """The :class:`~fastnn.layout.Layout` of parameters and buffers."""
        return self._layout

    @property
    def n_features(self):
        """Number of input features."""
        return self._layout.sizes[0]

    @property
    def n_classes(self):
        """Number of output classes."""
        return self._layout.sizes[-1]

    @property
    def n_params(self):
        """Total number of trainable parameters."""
        return self._layout.n_params

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
        """Allocate batch buffers for at least ``n`` rows (only grows), as the layout says."""
        if n <= self._capacity:
            return
        layout, dtype = self._layout, self._dtype
        drop, keep_input = self._buffer_kinds
        self._z_all = np.empty(layout.buffer_size(n), dtype=dtype)
        self._delta_all = np.empty_like(self._z_all)
        hidden = layout.buffer_size(n, hidden_only=True)
        self._mask_all = np.empty(hidden if drop else 0, dtype=dtype)
        self._dropped_all = np.empty_like(self._mask_all)
        self._pre_all = np.empty(hidden if keep_input else 0, dtype=dtype)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            layer.z = layout.block(self._z_all, i, n)
            layer.delta = layout.block(self._delta_all, i, n)
            layer.scratch = np.empty((n, layer.n_out), dtype=dtype)
            # per-hidden-layer buffers; empty where unused (the kernels ignore them)
            layer.mask, layer.dropped, layer.pre = (
                layout.block(a, i, n) if a.size and i != last
                else np.empty((0, layer.n_out), dtype=dtype)
                for a in (self._mask_all, self._dropped_all, self._pre_all))
        for bn in self.norms:
            bn.allocate(n, dtype)
        self._row_buf = np.empty((n, 1), dtype=dtype)
        self._rows = np.arange(n, dtype=np.intp)
        self._ones = np.ones(n, dtype=dtype)
        self._capacity = n
        self._generation += 1

    def compiled_step(self, optimizer, X, y, batch_size, update=True, augment=None, rng=None,
                      clip_norm=None, sam=None, threads=1):
        """The whole training step as one compiled call, or None where it does not apply.

        Returns a :class:`CompiledStep` for the numba kernel set (None with
        the NumPy kernels, with batch normalisation, without numba, or
        without access to NumPy's BLAS). It gathers a batch of rows of ``X``/``y`` (already validated: the
        network dtype, C-contiguous; intp labels), runs forward, loss and
        backward, and, when ``update`` is true and ``optimizer`` is one of
        the six built-in optimizers bound to this network's parameters with
        the numba kernels, the optimizer's update too. With an ``augment``
        (:class:`~fastnn.augment.Augmentation`) each batch is shifted and
        flipped as it is gathered, from draws of ``rng``. ``clip_norm`` and
        ``sam`` run gradient clipping and sharpness-aware minimisation
        inside the step (as :func:`fastnn.fit` does them around the Python
        step). ``threads`` > 1 splits each step between that many threads
        (:mod:`fastnn._team`; not with SAM or clipping, which then run
        on one): run it with one BLAS thread, and call its ``close()`` when
        done. Compiles (or loads from the disk cache) here, for the types of
        ``X`` and ``y``.
        """
        if self.kernels != "numba" or _jit.kernel_dtype(self.dtype) is None or self.norms:
            return None
        if _blas.gemm(self.dtype.name) is None or _blas.gemv(self.dtype.name) is None:
            return None
        from .step import CompiledStep

        return CompiledStep(self, optimizer, X, y, batch_size, update, augment, rng, clip_norm,
                            sam, threads)

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
        return ParamList(self._layout.views(flat), flat)

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
