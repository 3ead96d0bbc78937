"""The training loop: shuffled mini-batches, callbacks, a History."""

import contextlib
import functools
import math
import time

import numpy as np

from . import _checks, _threads
from .average import WeightAverage
from .errors import TrainingDivergedError
from .network import as_labels

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "time")

# Below this many multiply-adds in the largest layer's product (batch x
# n_in x n_out), one BLAS thread trains faster than two: measured on the
# 2-core development machine (bench/compare.py --threads-sweep), where the
# cross-over lay between 1.6M and 3.2M for every width from 32 to 1024.
SINGLE_THREAD_MACS = 2_500_000
# The same threshold for the compiled step, by the OpenBLAS kernel
# threadpoolctl reports (lower case); kernels not listed give the compiled
# step the whole budget. With no Python between its products two threads pay
# off even at batch 16 with the Haswell kernel on AMD EPYC; with the SkylakeX
# kernel on an Intel Xeon one thread was faster up to 3x128 at batch 128
# (two threads: 0.84x at 1.6M multiply-adds, 0.80x at 6.4M, 0.95x at 12.8M,
# 1.19x at 25.7M; measured with Fashion-MNIST and Adam, 2 cores).
COMPILED_SINGLE_THREAD_MACS = {"skylakex": 20_000_000}


def _largest_product(net, batch_size):
    return batch_size * max(layer.n_in * layer.n_out for layer in net.layers)


def blas_threads_for(net, batch_size, budget):
    """BLAS threads for training ``net`` at ``batch_size`` within ``budget`` (Python step)."""
    return 1 if _largest_product(net, batch_size) < SINGLE_THREAD_MACS else budget


@functools.cache
def blas_kernel():
    """NumPy's BLAS kernel as threadpoolctl names it, lower case ('' if unknown)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return ""
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return str(pool.get("architecture") or "").lower()
    return ""


def compiled_blas_threads_for(net, batch_size, budget):
    """BLAS threads for the compiled step (:data:`COMPILED_SINGLE_THREAD_MACS`)."""
    limit = COMPILED_SINGLE_THREAD_MACS.get(blas_kernel(), 0)
    return 1 if _largest_product(net, batch_size) < limit else budget


@contextlib.contextmanager
def blas_threads(n):
    """Limit BLAS to ``n`` threads inside the block (no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(n, user_api="blas"):
        yield


class History:
    """Per-epoch metrics of a :func:`fit` call.

    Attributes
    ----------
    epoch : list of int
        1-based epoch numbers that completed.
    history : dict of str -> list of float
        ``loss`` and ``accuracy`` (running means over the epoch's batches,
        loss including the weight-decay penalty), ``val_loss`` and
        ``val_accuracy`` (after the epoch, on the validation data; absent
        without validation data) and ``time`` (seconds per epoch).
    """

    def __init__(self):
        self.epoch = []
        self.history = {}

    def append(self, epoch, logs):
        """Record the metrics ``logs`` (a dict) of one finished epoch."""
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def __len__(self):
        return len(self.epoch)

    def last(self):
        """Metrics of the last epoch as a dict (empty before the first)."""
        return {k: v[-1] for k, v in self.history.items()}

    def to_dict(self):
        """A JSON-able copy: ``{"epoch": [...], "loss": [...], ...}``."""
        return {"epoch": list(self.epoch), **{k: list(v) for k, v in self.history.items()}}

    def to_dataframe(self):
        """The metrics as a pandas DataFrame indexed by epoch (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError('History.to_dataframe needs pandas: pip install "fastnn[plot]"'
                              ) from exc
        return pd.DataFrame(self.history, index=pd.Index(self.epoch, name="epoch"))

    def plot(self, path=None):
        """Plot loss and accuracy curves (train and validation) with matplotlib.

        Returns the figure; with ``path`` it is also saved there as PNG.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError('History.plot needs matplotlib: pip install "fastnn[plot]"'
                              ) from exc
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, metric in zip(axes, ("loss", "accuracy")):
            for key, style in ((metric, "--"), (f"val_{metric}", "-")):
                if key in self.history:
                    ax.plot(self.epoch, self.history[key], style, label=key)
            ax.set(xlabel="epoch", ylabel=metric)
            ax.legend()
        fig.tight_layout()
        if path is not None:
            from ._atomic import atomic_open

            with atomic_open(path, "wb") as f:
                fig.savefig(f, format="png")
        return fig

    def __repr__(self):
        return f"History(epochs={len(self.epoch)}, last={self.last()})"


class Callback:
    """Base class of training callbacks; override what you need.

    ``on_epoch_end`` may return True to stop training after that epoch.
    ``on_batch_end`` is only called when a subclass overrides it.
    """

    def on_train_begin(self, net, n_batches):
        """Called once before the first epoch with the batches per epoch."""

    def on_epoch_begin(self, epoch):
        """Called before each epoch (1-based)."""

    def on_batch_end(self, step, loss):
        """Called after each optimizer step (1-based step within the epoch)."""

    def on_epoch_end(self, epoch, logs):
        """Called after each epoch with its metrics; return True to stop."""

    def on_train_end(self, history):
        """Called once after the last epoch."""


def check_finite_rows(X, name="X", chunk=4096):
    """Raise ValueError naming the first row of ``X`` with a NaN or infinity.

    Works in chunks of rows so the check never allocates more than a few MB.
    """
    for start in range(0, X.shape[0], chunk):
        block = X[start:start + chunk]
        finite = np.isfinite(block).all(axis=tuple(range(1, X.ndim)))
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{name} has a NaN or infinite value in row {row}")


def fit(net, optimizer, X, y, epochs=10, batch_size=64, validation_data=None, seed=0,
        shuffle=True, callbacks=(), threads=None, clip_norm=None, initial_epoch=0,
        kernels=None, augment=None, average=None, sam=None):
    """Train ``net`` with ``optimizer`` on mini-batches of (X, y).

    Parameters
    ----------
    net : Network
        Trained in place.
    optimizer : Optimizer
        Bound to ``net.params`` (see :func:`fastnn.optimizers.get`).
    X : array_like (n_samples, n_features)
        Converted once to the network dtype (a copy unless it already is).
    y : array_like (n_samples,) int, or one-hot (n_samples, n_classes)
    epochs : int >= 1
    batch_size : int >= 1
        The last batch of an epoch holds the remainder.
    validation_data : (X_val, y_val) or None
        Evaluated after every epoch.
    seed : int, None or numpy.random.Generator
        Seed of the shuffling; with the network seed it makes the run
        reproducible bit for bit. A Generator is used (and advanced) as is,
        which is how a resumed run continues the same sequence.
    shuffle : bool
        Draw a fresh permutation every epoch.
    callbacks : sequence of Callback
    threads : int, optional
        Thread budget (default ``$FASTNN_NUM_THREADS`` or the available
        CPUs). The compiled step (numba kernels) gives BLAS the whole
        budget; the Python step trains small layers on one BLAS thread,
        which was measured to be faster there (:func:`blas_threads_for`).
    clip_norm : float, optional
        Rescale the gradient of every step to at most this L2 norm.
    initial_epoch : int
        Epochs already done (when resuming): training runs epochs
        ``initial_epoch + 1`` to ``epochs``.
    kernels : {'auto', 'numba', 'numpy'}, optional
        Switch ``net`` and ``optimizer`` to this kernel set first (see
        :meth:`Network.set_kernels`); None keeps the sets they were built
        with.
    augment : fastnn.augment.Augmentation, optional
        Shift, flip and mix up every training batch as it is gathered
        (never the validation data), from draws of the shuffling generator.
    average : float or fastnn.average.WeightAverage, optional
        Keep an exponential moving average of the weights with this decay
        (or this average, e.g. a resumed one): validation metrics, the
        callbacks' ``on_epoch_end`` (early stopping, keep-best) and the
        network after training use the averaged weights.
    sam : float, optional
        Sharpness-aware minimisation with this radius (rho; None or 0:
        off): every step takes its gradient at ``w + rho * g / ||g||``,
        ``g`` the batch's gradient at ``w``, on the same batch, so a step
        costs two forward and backward passes (Foret et al., 2021).

    Returns
    -------
    History

    Raises
    ------
    ValueError
        Bad shapes, labels, or non-finite inputs (naming the row).
    TrainingDivergedError
        The loss became NaN or infinite; parameters are left as they were
        after the step that produced it.
    """
    _checks.number("epochs", epochs, low=1, integer=True)
    _checks.number("batch_size", batch_size, low=1, integer=True)
    if clip_norm is not None:
        _checks.number("clip_norm", clip_norm, low=0)
    if sam is not None:
        _checks.number("sam", sam, low=0)
    if kernels is not None:
        net.set_kernels(kernels)
        if hasattr(optimizer, "set_kernels"):
            optimizer.set_kernels(kernels)
    X = net._check_X(X)
    check_finite_rows(X)
    n = X.shape[0]
    y = as_labels(y, n, net.n_classes)
    X_val = y_val = None
    if validation_data is not None:
        X_val, y_val = validation_data
        X_val = net._check_X(X_val)
        check_finite_rows(X_val, "X_val")
        y_val = as_labels(y_val, X_val.shape[0], net.n_classes)

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    batch = min(batch_size, n)
    n_batches = math.ceil(n / batch)
    callbacks = list(callbacks)
    history = History()
    for cb in callbacks:
        cb.on_train_begin(net, n_batches)

    # With the numba kernels a step is one compiled call (gather, forward,
    # backward and, without clipping, the update); net.train_step_ is the
    # same step in Python, the reference.
    if augment is not None and not augment.active:
        augment = None
    if augment is not None and augment.moves and \
            augment.image_shape[0] * augment.image_shape[1] != X.shape[1]:
        raise ValueError(f"augment's image_shape {augment.image_shape} does not match "
                         f"{X.shape[1]} features")
    if average is not None and not isinstance(average, WeightAverage):
        average = WeightAverage(average)
    if average is not None:
        average.start(net)
    run_step, n_threads = _step_and_threads(net, optimizer, X, y, batch, clip_norm, augment, rng,
                                            threads, sam)
    # Overflow on the way to a non-finite loss is reported once, as
    # TrainingDivergedError, not as a stream of RuntimeWarnings.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), blas_threads(n_threads):
        _epochs(net, optimizer, X, y, X_val, y_val, range(initial_epoch + 1, epochs + 1),
                batch, shuffle, rng, callbacks, history, clip_norm, run_step, average)
    if history.epoch and not np.isfinite(net.params.flat).all():
        raise TrainingDivergedError(history.epoch[-1], n_batches, float("nan"))
    if average is not None:
        average.finish()
    for cb in callbacks:
        cb.on_train_end(history)
    return history


class EarlyStopping(Callback):
    """Stop when a monitored metric stops improving; optionally restore the best weights.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs, ``val_loss`` by default (needs validation data).
    patience : int
        Epochs without improvement before stopping.
    min_delta : float
        Smallest change that counts as an improvement.
    restore_best_weights : bool
        At the end, copy back the parameters (and any batch-norm running
        statistics) of the best epoch.
    prefer_later : bool
        A later epoch that ties the best score exactly becomes the best
        one; keep-best uses it, as a tie on the validation
        set is no evidence against the longer-trained weights.

    Attributes
    ----------
    best_epoch, stopped_epoch : int
        1-based; ``stopped_epoch`` is 0 if training ran to the end.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0,
                 restore_best_weights=True, prefer_later=False):
        _checks.number("patience", patience, low=1, integer=True)
        self.prefer_later = bool(prefer_later)
        self.monitor = monitor
        self.patience = patience
        self.min_delta = min_delta
        self.restore_best_weights = restore_best_weights
        self.sign = -1.0 if "loss" in monitor else 1.0  # maximise accuracies

    def on_train_begin(self, net, n_batches):
        self.net = net
        self.best = -math.inf
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.wait = 0
        self.best_params = None
        if getattr(self, "_resumed", None) is not None:
            state, best_params = self._resumed
            self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], \
                state["wait"]
            self.best_params = None if best_params is None else np.array(best_params)
            self._resumed = None

    def state(self):
        """(progress as a JSON-able dict, the best weights so far or None): for checkpoints."""
        return ({"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait},
                self.best_params)

    def resume(self, state, best_params):
        """Continue from :meth:`state` of an interrupted run when training begins again."""
        self._resumed = (state, best_params)

    def on_epoch_end(self, epoch, logs):
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping monitors {self.monitor!r}, which is not among the "
                             f"epoch metrics {sorted(logs)} (val_* needs validation_data)")
        score = self.sign * logs[self.monitor]
        better = score > self.best + self.min_delta or (self.prefer_later and score == self.best)
        if better:
            self.best, self.best_epoch, self.wait = score, epoch, 0
            if self.restore_best_weights:
                # the parameters and any batch-norm running statistics
                self.best_params = self.net.snapshot(self.best_params)
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, history):
        if self.restore_best_weights and self.best_params is not None:
            self.net.restore(self.best_params)


class ModelCheckpoint(Callback):
    """Save the model after every epoch that improves ``monitor`` (atomically).

    Parameters
    ----------
    path : str or Path
        Model file to (over)write; see :func:`fastnn.save_model`.
    monitor : str
        Epoch metric to watch, ``val_loss`` by default.
    save_best_only : bool
        If False, save after every epoch.
    class_names : sequence of str, optional
    """

    def __init__(self, path, monitor="val_loss", save_best_only=True, class_names=None):
        self.path = path
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.class_names = class_names
        self.sign = -1.0 if "loss" in monitor else 1.0

    def on_train_begin(self, net, n_batches):
        self.net = net
        self.best = -math.inf

    def on_epoch_end(self, epoch, logs):
        from .modelfile import save

        score = self.sign * logs.get(self.monitor, math.nan)
        if not self.save_best_only or score > self.best:
            self.best = max(self.best, score)
            save(self.net, self.path, class_names=self.class_names,
                 metadata={"epoch": epoch, **{k: float(v) for k, v in logs.items()}})


class LearningRateScheduler(Callback):
    """Set ``optimizer.lr = schedule(epoch - 1)`` before every epoch.

    ``schedule`` maps the 0-based epoch to a learning rate; see
    :func:`fastnn.schedules.make` for step, exponential and cosine schedules
    with warm-up. The rate used is recorded in the epoch logs as ``lr``.
    """

    def __init__(self, optimizer, schedule):
        self.optimizer = optimizer
        self.schedule = schedule

    def on_epoch_begin(self, epoch):
        self.optimizer.lr = float(self.schedule(epoch - 1))

    def on_epoch_end(self, epoch, logs):
        logs["lr"] = self.optimizer.lr


def _l2_norm(flat):
    return math.sqrt(float(np.vdot(flat, flat)))


def clip_gradients_(flat_grad, max_norm):
    """Scale ``flat_grad`` in place so its L2 norm is at most ``max_norm``; return the norm."""
    norm = _l2_norm(flat_grad)
    if norm > max_norm:
        flat_grad *= max_norm / norm
    return norm


class _PythonStep:
    """The training step in Python, the reference: gather, augment, mix, net.train_step_."""

    updates = False  # the caller clips (if asked) and runs optimizer.step

    def __init__(self, net, X, y, batch, augment, rng):
        self.net, self.X, self.y, self.augment, self.rng = net, X, y, augment, rng
        self.xb = np.empty((batch, net.n_features), dtype=net.dtype)
        self.yb = np.empty(batch, dtype=np.intp)
        self.draws = np.empty((batch, 3))  # augmentation: three uniform draws per row
        self._mix = None  # the last batch's mixup weights, for again()

    def __call__(self, idx):
        m = idx.shape[0]
        xm, ym = self.xb[:m], self.yb[:m]
        np.take(self.X, idx, axis=0, out=xm, mode="clip")
        np.take(self.y, idx, out=ym, mode="clip")
        mix = None
        if self.augment is not None:
            if self.augment.moves:
                self.augment.draw(self.rng, self.draws[:m])
                self.augment.apply_(xm, self.draws[:m])
            if self.augment.mixup:
                mix = self.augment.draw_mix(self.rng, self.net.dtype)
                self.augment.mix_(xm, *mix)
        self._mix = mix
        return self.net.train_step_(xm, ym, mix)

    def again(self, idx):
        """Forward and backward once more on the last call's batch, as gathered and mixed."""
        m = idx.shape[0]
        return self.net.train_step_(self.xb[:m], self.yb[:m], self._mix)


class _SharpnessAware:
    """Sharpness-aware minimisation (SAM) around a step that does not update.

    Each call computes the gradient ``g`` at the weights ``w`` (the inner
    step), moves to ``w + rho * g / ||g||`` (the L2 norm over every
    parameter), computes the gradient there on the same batch (the same
    rows, shifts, flips and mixup weights; fresh dropout masks) and moves
    back to ``w`` exactly (a saved copy): the caller's optimizer then
    steps with that second gradient. Batch-norm running statistics are
    updated by the first pass only. Returns the first pass's loss and
    accuracy, those of the weights being trained, or the second pass's loss
    when that is not finite (so that training stops before the update, the
    weights back at ``w``). A zero gradient leaves ``w`` where it is for the
    second pass.
    """

    updates = False

    def __init__(self, inner, net, rho):
        self.inner, self.net = inner, net
        self.rho = float(rho)
        self._saved = np.empty_like(net._flat)
        self._stats = np.empty_like(net._stats)

    def __call__(self, idx):
        net = self.net
        loss, n_correct = self.inner(idx)
        if not math.isfinite(loss):
            return loss, n_correct
        flat, grad = net._flat, net._flat_grad
        norm = _l2_norm(grad)
        np.copyto(self._saved, flat)
        np.copyto(self._stats, net._stats)
        if norm > 0:  # flat = w + rho/|g| * g, w kept in _saved
            np.multiply(grad, net.dtype.type(self.rho / norm), out=flat)
            flat += self._saved
        perturbed_loss, _ = self.inner.again(idx)
        np.copyto(flat, self._saved)
        np.copyto(net._stats, self._stats)
        if not math.isfinite(perturbed_loss):
            return perturbed_loss, n_correct  # the loop stops before the update
        return loss, n_correct


def _step_and_threads(net, optimizer, X, y, batch, clip_norm, augment, rng, threads,
                       sam=None):
    """The step ``fit`` runs (compiled with numba, else Python) and its BLAS threads.

    The compiled step runs its products back to back, so BLAS keeps its
    threads busy and two pay off even at batch 16 with OpenBLAS's Haswell
    kernel (measured, bench/compare.py), though not with its SkylakeX one:
    it follows :func:`compiled_blas_threads_for`. The Python step, with gaps
    between its products, follows :func:`blas_threads_for`.
    """
    compiled = net.compiled_step(optimizer, X, y, batch, update=not (clip_norm or sam),
                                 augment=augment, rng=rng)
    budget = _threads.resolve(threads)
    if compiled is not None:
        step, n_threads = compiled, compiled_blas_threads_for(net, batch, budget)
    else:
        step = _PythonStep(net, X, y, batch, augment, rng)
        n_threads = blas_threads_for(net, batch, budget)
    if sam:
        step = _SharpnessAware(step, net, sam)
    return step, n_threads


def make_step(net, optimizer, X, y, batch_size, *, clip_norm=None, augment=None, rng=None,
              threads=None, sam=None):
    """One training step on rows ``idx`` of (X, y), exactly as :func:`fit` runs it.

    For benchmarks and custom loops. ``X`` must already be in the network
    dtype and C-contiguous, ``y`` intp labels. Returns ``(step, n_threads)``:
    ``step(idx)`` gathers (and augments) the rows, runs forward, loss,
    backward and the optimizer's update, and returns ``(loss, n_correct)``;
    run it inside ``blas_threads(n_threads)``, the BLAS threads ``fit``
    would use. With the numba kernels the step is compiled whole
    (:meth:`Network.compiled_step`), else it is the Python step.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    inner, n_threads = _step_and_threads(net, optimizer, X, y, batch_size, clip_norm, augment,
                                         rng, threads, sam)

    def step(idx):
        loss, n_correct = inner(idx)
        if not inner.updates:
            if clip_norm:
                clip_gradients_(net.grads.flat, clip_norm)
            optimizer.step(net.grads)
        return loss, n_correct

    return step, n_threads


def _epochs(net, optimizer, X, y, X_val, y_val, epoch_range, batch, shuffle, rng, callbacks,
            history, clip_norm, run_step, average=None):
    n = X.shape[0]
    order = np.arange(n)
    batch_cbs = [cb for cb in callbacks if type(cb).on_batch_end is not Callback.on_batch_end]
    grads = net.grads
    for epoch in epoch_range:
        for cb in callbacks:
            cb.on_epoch_begin(epoch)
        start_time = time.perf_counter()
        idx_all = rng.permutation(n) if shuffle else order
        loss_sum = 0.0
        correct = 0
        for step, start in enumerate(range(0, n, batch), 1):
            idx = idx_all[start:start + batch]
            m = idx.shape[0]
            loss, n_correct = run_step(idx)
            if not math.isfinite(loss):
                raise TrainingDivergedError(epoch, step, loss)
            if not run_step.updates:
                if clip_norm:
                    clip_gradients_(grads.flat, clip_norm)
                optimizer.step(grads)
            if average is not None:
                average.update()
            loss_sum += loss * m
            correct += n_correct
            for cb in batch_cbs:
                cb.on_batch_end(step, loss)
        logs = {"loss": loss_sum / n, "accuracy": correct / n}
        with average.swapped_in() if average is not None else contextlib.nullcontext():
            if X_val is not None:
                logs["val_loss"], logs["val_accuracy"] = net.evaluate(X_val, y_val)
            logs["time"] = time.perf_counter() - start_time
            stop = False
            for cb in callbacks:  # before recording: a callback may add to the logs
                stop = bool(cb.on_epoch_end(epoch, logs)) or stop
        history.append(epoch, logs)
        if stop:
            break


def build(config, n_features, n_classes, threads=None, kernels=None):
    """Build the Network and optimizer that a TrainConfig describes.

    ``threads`` is passed to the optimizer (see :func:`fastnn.optimizers.get`),
    ``kernels`` to both (see :meth:`Network.set_kernels`).

    Returns
    -------
    (Network, Optimizer)
    """
    from . import optimizers
    from .network import Network

    config = config.validated()
    l2, decoupled = optimizers.route_weight_decay(config.optimizer, config.weight_decay)
    net = Network(config.layer_sizes(n_features, n_classes), activation=config.activation,
                  loss=config.loss, weight_init=config.weight_init,
                  weight_decay=l2, dtype=config.dtype, seed=config.seed,
                  dropout=config.dropout, kernels=kernels,
                  label_smoothing=config.label_smoothing, batch_norm=config.batch_norm)
    opt = optimizers.get(config.optimizer, net.params, threads=threads, kernels=kernels,
                         **config.optimizer_hyper(), **decoupled)
    return net, opt


def config_callbacks(config, optimizer):
    """Callbacks a TrainConfig asks for: its learning-rate schedule and early stopping."""
    callbacks = []
    schedule = config.schedule()
    if schedule is not None:
        callbacks.append(LearningRateScheduler(optimizer, schedule))
    if config.patience:
        callbacks.append(EarlyStopping(patience=config.patience, restore_best_weights=True))
    if config.keep_best:
        # never stops; at the end restores the epoch of best validation accuracy
        callbacks.append(EarlyStopping(monitor="val_accuracy", patience=config.epochs + 1,
                                       restore_best_weights=True, prefer_later=True))
    return callbacks


def train_config(config, split, callbacks=(), threads=None, kernels=None):
    """Build and train what ``config`` describes on a :class:`~fastnn.datasets.Split`.

    Returns
    -------
    (Network, Optimizer, History)
    """
    config = config.validated()
    net, opt = build(config, split.X_train.shape[1], len(split.class_names), threads=threads,
                     kernels=kernels)
    history = fit(net, opt, split.X_train, split.y_train, epochs=config.epochs,
                  batch_size=config.batch_size, validation_data=(split.X_val, split.y_val),
                  seed=config.seed, callbacks=[*config_callbacks(config, opt), *callbacks],
                  threads=threads, clip_norm=config.clip_norm or None,
                  augment=config.augmentation(split.X_train.shape[1]),
                  average=config.weight_average(), sam=config.sam)
    return net, opt, history
