"""``fastnn.MLPClassifier``: the engine as a scikit-learn classifier.

Works in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``; passes
scikit-learn's own estimator checks (``tests/test_estimator.py``). Importing
this module imports scikit-learn, so ``import fastnn`` loads it lazily.
"""

import re

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import optimizers
from .augment import Augmentation
from .average import WeightAverage
from .errors import ConfigError
from .network import Network
from .train import SAM, Callback, EarlyStopping, fit

# The engine's names of settings -> this estimator's parameters, for error messages.
_PARAMETER_OF = {"lr": "learning_rate", "eps": "epsilon", "drop_p": "dropout",
                 "loss": "loss", "weight_decay": "weight_decay", "threads": "n_jobs",
                 "max_norm": "clip_norm", "rho": "sam", "decay": "ema_decay"}
_HINTS = {"learning_rate": " (fastnn's learning_rate is the step size, scikit-learn's "
                           "learning_rate_init; schedules are not parameters here)"}

# Checks of scikit-learn that cannot pass, with the reason (used by the tests as
# parametrize_with_checks(expected_failed_checks=...)).
EXPECTED_FAILED_CHECKS = {}


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multilayer perceptron classifier trained by fastnn's NumPy engine.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(128, 128)
        Width of each hidden layer.
    activation : str, default='relu'
        A name in :data:`fastnn.activations.REGISTRY`: ``identity``,
        ``sigmoid`` (``logistic``, as scikit-learn calls it), ``tanh``,
        ``relu``, ``leaky_relu``, ``gelu``, ``silu``.
    loss : {'cross_entropy', 'mean_squared_error'}, default='cross_entropy'
    optimizer : str, default='adam'
        A name in :data:`fastnn.optimizers.OPTIMIZERS`: ``sgd``, ``momentum``,
        ``nag``, ``rmsprop``, ``adam``, ``nadam``, ``adamw`` (whose
        decoupled decay takes ``weight_decay``, see
        :func:`fastnn.optimizers.route_weight_decay`).
    learning_rate : float, default=1e-3
    momentum, beta, beta1, beta2, epsilon : float
        Optimizer hyperparameters (see :mod:`fastnn.optimizers`); each
        optimizer uses the ones it needs.
    weight_decay : float, default=0.0
        L2 penalty on weights; with ``adamw`` its decoupled decay instead.
    weight_init : {'xavier', 'he', 'random'}, default='xavier'
    batch_size : int, default=64
        Capped at the number of samples.
    epochs : int, default=100
        Passes over the data in :meth:`fit` (at most, with early stopping).
    dtype : {'float32', 'float64'}, default='float32'
    random_state : int or None, default=None
        Seed of initialisation, shuffling and the validation split; None
        draws a fresh seed at every fit.
    validation_fraction : float, default=0.1
        Stratified share of the training data held out when
        ``early_stopping`` is on.
    early_stopping : bool, default=False
        Stop when the validation loss has not improved for 10 epochs and
        restore the best weights.
    verbose : bool, default=False
        Print one line per epoch.
    kernels : {'auto', 'numba', 'numpy'} or None, default=None
        Element-wise kernel set (see :meth:`fastnn.Network.set_kernels`);
        None reads ``$FASTNN_KERNELS`` (default ``auto``).
    dropout : float, default=0.0
        Dropout probability on hidden layers during training.
    label_smoothing : float, default=0.0
        Train against ``(1 - eps) * onehot + eps / K`` targets.
    augment_shift : int, default=0
        Shift each training image by up to this many pixels, afresh every
        epoch (:mod:`fastnn.augment`); needs image rows.
    augment_flip : bool, default=False
        Mirror training images left-right at random.
    image_shape : (height, width) or None, default=None
        Layout of a row as an image for augmentation; None means square.
    mixup : float, default=0.0
        Mixup's alpha (0: off): blend pairs of training rows and their
        targets with weights from Beta(alpha, alpha) (:mod:`fastnn.augment`).
    ema_decay : float, default=0.0
        Keep an exponential moving average of the weights with this decay
        (:mod:`fastnn.average`; 0 is off): early stopping and the fitted
        network use the averaged weights.
    batch_norm : bool, default=False
        Batch normalisation of every hidden layer (:mod:`fastnn.batchnorm`);
        predictions use the running statistics.
    sam : float, default=0.0
        Sharpness-aware minimisation's radius rho (0: off): every step takes
        its gradient at ``w + rho * g / ||g||`` (:func:`fastnn.train.fit`);
        a step costs two passes.
    warm_start : bool, default=False
        A :meth:`fit` after the first continues from the fitted weights and
        optimizer state (same classes and features) instead of starting anew.
    n_jobs : int or None, default=None
        Thread budget (:func:`fastnn.fit`'s ``threads``); None uses the CPUs
        available, never more BLAS threads than an enclosing
        ``threadpoolctl.threadpool_limits`` (a joblib worker's) allows.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        Class labels (any sortable values, strings too).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    network_ : Network
        The trained network.
    history_ : History
        Metrics of the last :meth:`fit` (or of all :meth:`partial_fit` epochs).
    n_iter_ : int
        Epochs run by the last :meth:`fit` (all :meth:`partial_fit` calls).
    loss_curve_ : list of float
        Training loss of each of those epochs; ``loss_`` the last one,
        ``best_loss_`` the lowest (None with ``early_stopping``, as in
        scikit-learn).
    validation_scores_ : list of float or None
        Validation accuracy of each epoch with ``early_stopping``, else None;
        ``best_validation_score_`` the highest.
    t_ : int
        Training samples seen by the optimizer (rows times epochs).
    coefs_, intercepts_ : list of ndarray
        ``W`` (n_in, n_out) and ``b`` of each layer: views of the network's
        parameters.
    n_layers_ : int
        Layers including input and output.
    n_outputs_ : int
        Output units: one per class (two for a binary problem, where
        scikit-learn's MLPClassifier has one logistic unit).
    out_activation_ : str
        ``'softmax'``.
    preprocessing_ : Preprocessing or None
        Set by :meth:`from_model` when the model stores one: applied to ``X``
        before the network.
    """

    def __init__(self, hidden_layer_sizes=(128, 128), activation="relu", loss="cross_entropy",
                 optimizer="adam", learning_rate=1e-3, momentum=0.9, beta=0.9, beta1=0.9,
                 beta2=0.999, epsilon=1e-8, weight_decay=0.0, weight_init="xavier",
                 batch_size=64, epochs=100, dtype="float32", random_state=None,
                 validation_fraction=0.1, early_stopping=False, verbose=False, kernels=None,
                 dropout=0.0, label_smoothing=0.0, augment_shift=0, augment_flip=False,
                 image_shape=None, mixup=0.0, ema_decay=0.0, batch_norm=False, sam=0.0,
                 warm_start=False, n_jobs=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.beta = beta
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.weight_init = weight_init
        self.batch_size = batch_size
        self.epochs = epochs
        self.dtype = dtype
        self.random_state = random_state
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.verbose = verbose
        self.kernels = kernels
        self.dropout = dropout
        self.label_smoothing = label_smoothing
        self.augment_shift = augment_shift
        self.augment_flip = augment_flip
        self.image_shape = image_shape
        self.mixup = mixup
        self.ema_decay = ema_decay
        self.batch_norm = batch_norm
        self.sam = sam
        self.warm_start = warm_start
        self.n_jobs = n_jobs

    # ------------------------------------------------------------- sklearn
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Without a seed every fit draws a new one; with one, fits repeat bit for bit.
        tags.non_deterministic = self.random_state is None
        # The engine is NumPy: arrays of other Array API namespaces are not accepted.
        tags.array_api_support = False
        return tags

    # --------------------------------------------------------------- fitting
    def _seed(self):
        if self.random_state is None:
            return int(np.random.default_rng().integers(2**31))
        if isinstance(self.random_state, np.random.RandomState):
            return int(self.random_state.randint(2**31))
        return int(self.random_state)

    def _build(self, n_features, seed):
        try:
            self._build_network(n_features, seed)
        except ConfigError as exc:
            raise _as_parameter_error(exc) from None

    def _build_network(self, n_features, seed):
        sizes = [n_features, *[int(h) for h in np.atleast_1d(self.hidden_layer_sizes)],
                 len(self.classes_)]
        l2, decoupled = optimizers.route_weight_decay(self.optimizer, self.weight_decay)
        self.network_ = Network(sizes, activation=self.activation, loss=self.loss,
                                weight_init=self.weight_init, weight_decay=l2,
                                dtype=self.dtype, seed=seed, kernels=self.kernels,
                                dropout=self.dropout, label_smoothing=self.label_smoothing,
                                batch_norm=self.batch_norm)
        self._augment = Augmentation.for_features(n_features, self.augment_shift,
                                                  self.augment_flip, self.image_shape,
                                                  self.mixup)
        self._average = WeightAverage(self.ema_decay) if self.ema_decay else None
        self.optimizer_ = optimizers.get(
            self.optimizer, self.network_.params, kernels=self.kernels, threads=self.n_jobs,
            lr=self.learning_rate,
            momentum=self.momentum, beta=self.beta, beta1=self.beta1, beta2=self.beta2,
            eps=self.epsilon, **decoupled)

    def _validate(self, X, y, reset):
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        return X, y

    def _encode(self, y):
        encoded = np.searchsorted(self.classes_, y)
        encoded = np.clip(encoded, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[encoded], y):
            unseen = np.setdiff1d(y, self.classes_)
            raise ValueError(f"y contains labels not in classes_: {unseen[:5].tolist()}")
        return encoded

    def fit(self, X, y):
        """Train from scratch on X (n_samples, n_features) and labels y (n_samples,).

        Returns
        -------
        self
        """
        warm = self.warm_start and hasattr(self, "network_")
        X, y = self._validate(X, y, reset=not warm)
        classes = np.unique(y)
        if warm and not np.isin(classes, self.classes_).all():
            raise ValueError("warm_start: y holds classes the fitted estimator does not have: "
                             f"{np.setdiff1d(classes, self.classes_)[:5].tolist()}")
        if not warm:
            self.classes_ = classes
        if len(self.classes_) < 2:
            raise ValueError(f"MLPClassifier needs samples of at least 2 classes; got 1 class "
                             f"({self.classes_[0]!r})")
        seed = self._seed()
        if not warm:
            self._build(X.shape[1], seed)
        encoded = self._encode(y)
        validation = None
        callbacks = []
        if self.early_stopping:
            X, encoded, validation = self._split(X, encoded, seed)
            callbacks.append(EarlyStopping(patience=10, restore_best_weights=True))
        if self.verbose:
            callbacks.append(_Verbose())
        try:
            self.history_ = fit(self.network_, self.optimizer_, X, encoded, epochs=self.epochs,
                                batch_size=min(self.batch_size, X.shape[0]),
                                validation_data=validation, seed=seed, callbacks=callbacks,
                                features=self._features(), threads=self.n_jobs)
        except ConfigError as exc:
            raise _as_parameter_error(exc) from None
        self._seed_, self._epochs_done = seed, len(self.history_.epoch)
        self._record_fit((getattr(self, "t_", 0) if warm else 0) + X.shape[0] * self._epochs_done)
        return self

    def _record_fit(self, samples_seen):
        """The attributes scikit-learn's MLPClassifier users read, from ``history_``."""
        history = self.history_
        self.n_iter_ = len(history.epoch)
        self.loss_curve_ = [float(v) for v in history["loss"]]
        self.loss_ = self.loss_curve_[-1]
        self.t_ = samples_seen
        if self.early_stopping and "val_accuracy" in history.history:
            self.validation_scores_ = [float(v) for v in history["val_accuracy"]]
            self.best_validation_score_ = max(self.validation_scores_)
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_)
        self.n_layers_ = len(self.network_.layer_sizes)
        self.n_outputs_ = self.network_.n_classes
        self.out_activation_ = "softmax"

    @property
    def coefs_(self):
        check_is_fitted(self, "network_")
        return [layer.W for layer in self.network_.layers]

    @property
    def intercepts_(self):
        check_is_fitted(self, "network_")
        return [layer.b for layer in self.network_.layers]

    def _features(self):
        """The training features :func:`fastnn.fit` composes around the step."""
        features = [self._augment, self._average, SAM(self.sam or 0)]
        return [f for f in features if f is not None]

    def _split(self, X, y, seed):
        from sklearn.model_selection import train_test_split

        counts = np.bincount(y, minlength=len(self.classes_))
        n_val = int(np.ceil(self.validation_fraction * len(y)))
        stratify = y if counts.min() >= 2 and n_val >= len(self.classes_) else None
        X_tr, X_val, y_tr, y_val = train_test_split(
            X, y, test_size=self.validation_fraction, stratify=stratify, random_state=seed)
        return X_tr, y_tr, (X_val, y_val)

    def partial_fit(self, X, y, classes=None):
        """Train one epoch on (X, y), continuing from the current weights.

        ``classes`` (all labels that will ever appear) is required on the
        first call.

        Returns
        -------
        self
        """
        first = not hasattr(self, "network_")
        X, y = self._validate(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            self.classes_ = np.unique(classes)
            if len(self.classes_) < 2:
                raise ValueError("MLPClassifier needs at least 2 classes")
            self._seed_ = self._seed()
            self._build(X.shape[1], self._seed_)
            self._epochs_done = 0
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError("classes differs from the classes of the first partial_fit call")
        history = fit(self.network_, self.optimizer_, X, self._encode(y), epochs=1,
                      batch_size=min(self.batch_size, X.shape[0]),
                      seed=self._seed_ + self._epochs_done, features=self._features(),
                      threads=self.n_jobs)
        self._epochs_done += 1
        if first or not hasattr(self, "history_"):
            self.history_ = history
        else:
            self.history_.append(self._epochs_done, history.last())
        self._record_fit(getattr(self, "t_", 0) + X.shape[0])
        return self

    # ------------------------------------------------------------ prediction
    def predict_proba(self, X):
        """Class probabilities, ndarray (n_samples, n_classes) of float64."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        prep = getattr(self, "preprocessing_", None)
        if prep is not None:
            X = prep.apply(X, self.network_.dtype)
        proba = self.network_.predict_proba(X).astype(np.float64)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba` (``-inf`` where a probability is 0)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    @classmethod
    def from_model(cls, path):
        """A fitted estimator around a model file written by fastnn (``fastnn train``, a sweep,
        :func:`fastnn.save_model`).

        ``predict`` takes the raw features the model was trained on (its stored
        preprocessing is applied) and returns its class names (or 0..K-1).
        """
        from . import modelfile

        net, header = modelfile.load(path)
        config = (header.get("metadata") or {}).get("config") or {}
        spec = net.config()
        est = cls(hidden_layer_sizes=tuple(spec["layer_sizes"][1:-1]),
                  activation=spec["activation"], loss=spec["loss"],
                  weight_init=spec["weight_init"], dtype=spec["dtype"],
                  dropout=spec.get("dropout", 0.0), batch_norm=spec.get("batch_norm", False),
                  label_smoothing=spec.get("label_smoothing", 0.0),
                  **{k: config[c] for k, c in (("optimizer", "optimizer"),
                                               ("learning_rate", "lr"), ("epochs", "epochs"),
                                               ("batch_size", "batch_size"),
                                               ("weight_decay", "weight_decay"))
                     if c in config})
        names = header.get("class_names")
        est.classes_ = np.array(names) if names else np.arange(net.n_classes)
        est.n_features_in_ = net.n_features
        est._build(net.n_features, int(config.get("seed", 0)))
        est.network_.params.flat[...] = net.params.flat
        est.network_.running_stats.flat[...] = net.running_stats.flat
        est.preprocessing_ = net.preprocessing
        est._seed_, est._epochs_done = int(config.get("seed", 0)), 0
        history = (header.get("metadata") or {}).get("history")
        if isinstance(history, dict) and history.get("loss"):
            est.loss_curve_ = [float(v) for v in history["loss"]]
            est.n_iter_, est.loss_ = len(est.loss_curve_), est.loss_curve_[-1]
        est.n_layers_, est.n_outputs_ = len(net.layer_sizes), net.n_classes
        est.out_activation_ = "softmax"
        return est

    def predict(self, X):
        """Predicted labels, ndarray (n_samples,) holding values of ``classes_``."""
        proba = self.predict_proba(X)  # first: raises NotFittedError before fit
        return self.classes_[proba.argmax(axis=1)]

    # --------------------------------------------------------------- pickling
    def __getstate__(self):
        # The network's parameters are views of one flat array and the
        # optimizer updates those views: store arrays, rebuild the links.
        state = self.__dict__.copy()
        if "network_" in state:
            net = state.pop("network_")
            opt = state.pop("optimizer_")
            state["_network_state"] = (net.config(), net.snapshot(), opt.state_dict())
        return state

    def __setstate__(self, state):
        saved = state.pop("_network_state", None)
        self.__dict__.update(state)
        if saved is not None:
            config, flat, opt_state = saved
            self._build(config["layer_sizes"][0], 0)
            self.network_.restore(flat)
            self.optimizer_.load_state_dict(opt_state)


def _as_parameter_error(exc):
    """A ConfigError about an engine setting, reworded to name the estimator's parameter."""
    message = str(exc)
    match = re.match(r"(\w+) ", message)
    if match:
        name = _PARAMETER_OF.get(match.group(1), match.group(1))
        message = name + message[match.end(1):] + _HINTS.get(name, "")
    return ConfigError(f"MLPClassifier: {message}")


class _Verbose(Callback):
    """Print one line per epoch (the estimator's verbose=True)."""

    def on_epoch_end(self, epoch, logs):
        print(f"epoch {epoch}: " + "  ".join(f"{k} {v:.4f}" for k, v in logs.items()))
