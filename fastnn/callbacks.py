"""Training callbacks and the History of a run (Keras's names and hooks)."""

import math

import numpy as np

from . import _checks

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "time")


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
