"""The training loop: shuffled mini-batches, callbacks, a History."""

import contextlib
import functools
import math
import time
import warnings

import numpy as np

from . import _checks, _threads, gradnorm
from .augment import Augmentation
from .average import WeightAverage
from .callbacks import (  # noqa: F401 - the names fastnn.train has always offered
    METRICS,
    Callback,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
)
from .errors import TrainingDivergedError
from .network import as_labels

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


def team_threads_for(budget):
    """Threads that split the compiled step (:mod:`fastnn._team`): the whole budget.

    Measured on 2 cores (Intel Xeon, OpenBLAS SkylakeX; reports/team_levers.md,
    ``python -m bench.team_levers``): a team of 2 with one BLAS thread each
    trained 3x128 1.29-1.66x and 3x1024 1.77-1.82x faster than one thread
    at batch 16 to 1024 (3x1024 at 64 and 128, with the products split by
    columns, :func:`fastnn.step.split_by_columns`).
    """
    if budget < 2 or _threads.available_cpus() < 2:
        return 1
    return budget


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


class ClipNorm:
    """Feature: rescale every step's gradient to at most ``max_norm`` (global L2 norm).

    Applied after the weight-decay gradient and before the update (inside
    the compiled step too). ``ClipNorm(0)`` is off.
    """

    def __init__(self, max_norm):
        self.max_norm = float(_checks.number("clip_norm", max_norm, low=0))


class SAM:
    """Feature: sharpness-aware minimisation with radius ``rho`` (Foret et al., 2021).

    Every step takes its gradient at ``w + rho * g / ||g||``, ``g`` the
    batch's gradient at ``w``, on the same batch, so a step costs two
    forward and backward passes. ``SAM(0)`` is off.
    """

    def __init__(self, rho):
        self.rho = float(_checks.number("sam", rho, low=0))


_FEATURES = {ClipNorm: "clip", SAM: "sam", Augmentation: "augment", WeightAverage: "average"}
_LEGACY = {"clip_norm": ClipNorm, "sam": SAM, "augment": None, "average": WeightAverage}


def _features(features, legacy, net, optimizer):
    """The features by kind (clip, sam, augment, average), from ``features`` and old keywords.

    The old ``kernels`` keyword switches ``net`` and ``optimizer`` here.
    """
    found = {}
    kernels = legacy.get("kernels")
    if kernels is not None:
        net.set_kernels(kernels)
        if hasattr(optimizer, "set_kernels"):
            optimizer.set_kernels(kernels)
    for name, value in legacy.items():
        if name not in (*_LEGACY, "shuffle", "kernels"):
            raise TypeError(f"fit() got an unexpected keyword argument {name!r}")
        warnings.warn(f"fit({name}=...) is deprecated: pass features=[...] "
                      "(ClipNorm, SAM, Augmentation, WeightAverage)", DeprecationWarning,
                      stacklevel=3)
        if name in _LEGACY and value is not None and value is not False:
            make = _LEGACY[name]
            features = [*features, make(value) if make and not isinstance(value, make)
                        else value]
    for feature in features:
        if feature is None:  # e.g. features=[config.augmentation(...)] when it is off
            continue
        kind = next((k for cls, k in _FEATURES.items() if isinstance(feature, cls)), None)
        if kind is None:
            raise TypeError(f"not a training feature: {feature!r} (ClipNorm, SAM, "
                            "Augmentation or WeightAverage)")
        if kind in found:
            raise ValueError(f"two {type(feature).__name__} features given")
        found[kind] = feature
    return found


def fit(net, optimizer, X, y, epochs=10, batch_size=64, validation_data=None, seed=0,
        callbacks=(), features=(), threads=None, initial_epoch=0, **legacy):
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
    epochs, batch_size : int >= 1
        The last batch of an epoch holds the remainder.
    validation_data : (X_val, y_val) or None
        Evaluated after every epoch.
    seed : int, None or numpy.random.Generator
        Seed of the shuffling (a fresh permutation every epoch); with the
        network seed it makes the run reproducible bit for bit. A Generator
        is used (and advanced) as is, which is how a resumed run continues.
    callbacks : sequence of Callback
    features : sequence
        What changes the step, composed around it (as optax chains
        transforms): :class:`ClipNorm`, :class:`SAM`,
        :class:`~fastnn.augment.Augmentation` (shift, flip, mixup of every
        training batch as it is gathered), :class:`~fastnn.average.WeightAverage`
        (validation, callbacks and the final network use the averaged
        weights). With the numba kernels all of them run inside the
        compiled step.
    threads : int, optional
        Thread budget (default ``$FASTNN_NUM_THREADS`` or all CPUs).
    initial_epoch : int
        Epochs already done (when resuming): training runs epochs
        ``initial_epoch + 1`` to ``epochs``.
    **legacy
        ``clip_norm``, ``sam``, ``augment``, ``average`` (the features
        above), ``shuffle`` and ``kernels``: deprecated, still honoured.

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
    found = _features(features, legacy, net, optimizer)
    X, y, val = _checked_data(net, X, y, validation_data)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    batch = min(batch_size, X.shape[0])
    n_batches = math.ceil(X.shape[0] / batch)
    callbacks = list(callbacks)
    history = History()
    for cb in callbacks:
        cb.on_train_begin(net, n_batches)
    augment, average, clip, sam = _unpack(found, X.shape[1])
    if average is not None:
        average.start(net)
    run_step, n_threads = _step_and_threads(net, optimizer, X, y, batch, clip, augment, rng,
                                            threads, sam)
    loop = _Loop(net, optimizer, run_step, clip, average, callbacks, history)
    # Overflow on the way to a non-finite loss is reported once, as
    # TrainingDivergedError, not as a stream of RuntimeWarnings.
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                blas_threads(n_threads):
            loop.run(X, y, val, range(initial_epoch + 1, epochs + 1), batch,
                     legacy.get("shuffle", True), rng)
    finally:
        run_step.close()  # a team's worker threads
    if history.epoch and not np.isfinite(net.params.flat).all():
        raise TrainingDivergedError(history.epoch[-1], n_batches, float("nan"))
    if average is not None:
        average.finish()
    for cb in callbacks:
        cb.on_train_end(history)
    return history


def _unpack(found, n_features):
    """(augment, average, clip norm, SAM radius) from the features; None where off."""
    augment, average = found.get("augment"), found.get("average")
    if augment is not None and not augment.active:
        augment = None
    if augment is not None and augment.moves and \
            augment.image_shape[0] * augment.image_shape[1] != n_features:
        raise ValueError(f"augment's image_shape {augment.image_shape} does not match "
                         f"{n_features} features")
    clip = found["clip"].max_norm if "clip" in found else None
    sam = found["sam"].rho if "sam" in found else None
    return augment, average, clip or None, sam or None


def _checked_data(net, X, y, validation_data):
    """X and y (and the validation pair, or None) checked and in the network dtype."""
    X = net._check_X(X)
    check_finite_rows(X)
    y = as_labels(y, X.shape[0], net.n_classes)
    if validation_data is None:
        return X, y, None
    X_val, y_val = validation_data
    X_val = net._check_X(X_val)
    check_finite_rows(X_val, "X_val")
    return X, y, (X_val, as_labels(y_val, X_val.shape[0], net.n_classes))


def clip_gradients_(flat_grad, max_norm, kernels="numpy"):
    """Scale ``flat_grad`` in place so its L2 norm is at most ``max_norm``; return the norm.

    See :func:`fastnn.gradnorm.clip_` (``kernels`` picks how the norm is summed).
    """
    return gradnorm.clip_(flat_grad, max_norm, kernels)


class _Step:
    """What ``fit`` asks of a step besides calling it (:class:`fastnn.step.CompiledStep` too)."""

    updates = False  # the caller clips (if asked) and runs optimizer.step
    threads = 1  # threads the step is split between

    def close(self):
        """Release what the step holds (a team's worker threads); nothing here."""


class _PythonStep(_Step):
    """The training step in Python, the reference: gather, augment, mix, net.train_step_."""

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


class _SharpnessAware(_Step):
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
        norm = gradnorm.l2_norm(grad, net.kernels)
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
    budget = _threads.resolve(threads)
    compiled = net.compiled_step(optimizer, X, y, batch, augment=augment, rng=rng,
                                 clip_norm=clip_norm, sam=sam,
                                 threads=team_threads_for(budget))
    if compiled is not None:  # SAM and clipping run inside it
        if compiled.threads > 1:  # each thread of the team calls BLAS on its own share
            return compiled, 1
        return compiled, compiled_blas_threads_for(net, batch, budget)
    step = _PythonStep(net, X, y, batch, augment, rng)
    if sam:
        step = _SharpnessAware(step, net, sam)
    return step, blas_threads_for(net, batch, budget)


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
    ``step.threads`` is the number of threads the step is split between
    (:mod:`fastnn._team`); ``step.close()`` stops their workers (they also
    stop when the step is garbage-collected).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    inner, n_threads = _step_and_threads(net, optimizer, X, y, batch_size, clip_norm, augment,
                                         rng, threads, sam)

    def step(idx):
        loss, n_correct = inner(idx)
        _update_after(inner, net, optimizer, clip_norm)
        return loss, n_correct

    step.close, step.threads = inner.close, inner.threads
    return step, n_threads


def _update_after(step, net, optimizer, clip_norm):
    """Clip (unless the step did) and update, when the step left its update to the caller."""
    if step.updates:
        return
    if clip_norm and not getattr(step, "clips", False):
        clip_gradients_(net.grads.flat, clip_norm, net.kernels)
    optimizer.step(net.grads)


class _Loop:
    """The epoch loop of :func:`fit`: steps, the update when the step leaves it, callbacks."""

    def __init__(self, net, optimizer, step, clip_norm, average, callbacks, history):
        self.net, self.optimizer, self.step = net, optimizer, step
        self.clip_norm, self.average = clip_norm, average
        self.callbacks, self.history = callbacks, history
        self.batch_cbs = [cb for cb in callbacks
                          if type(cb).on_batch_end is not Callback.on_batch_end]

    def run(self, X, y, val, epoch_range, batch, shuffle, rng):
        n = X.shape[0]
        order = np.arange(n)
        for epoch in epoch_range:
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch)
            start_time = time.perf_counter()
            idx_all = rng.permutation(n) if shuffle else order
            logs = self.epoch(epoch, idx_all, batch)
            average = self.average
            with average.swapped_in() if average is not None else contextlib.nullcontext():
                if val is not None:
                    logs["val_loss"], logs["val_accuracy"] = self.net.evaluate(*val)
                logs["time"] = time.perf_counter() - start_time
                stop = False
                for cb in self.callbacks:  # before recording: a callback may add to the logs
                    stop = bool(cb.on_epoch_end(epoch, logs)) or stop
            self.history.append(epoch, logs)
            if stop:
                break

    def epoch(self, epoch, idx_all, batch):
        """One pass over the batches of ``idx_all``; the epoch's loss and accuracy."""
        net, run_step = self.net, self.step
        n = idx_all.shape[0]
        loss_sum = 0.0
        correct = 0
        for step, start in enumerate(range(0, n, batch), 1):
            idx = idx_all[start:start + batch]
            loss, n_correct = run_step(idx)
            if not math.isfinite(loss):
                raise TrainingDivergedError(epoch, step, loss)
            _update_after(run_step, net, self.optimizer, self.clip_norm)
            if self.average is not None:
                self.average.update()
            loss_sum += loss * idx.shape[0]
            correct += n_correct
            for cb in self.batch_cbs:
                cb.on_batch_end(step, loss)
        return {"loss": loss_sum / n, "accuracy": correct / n}


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
