"""The library's entry point: settings to a trained model, with its history and checkpoints.

:class:`Trainer` is what ``fastnn train`` runs, and what the sweeps (local
and Dask), the report and the benchmarks run for each configuration: a
script that embeds fastnn gets the same run, resume included::

    from fastnn import TrainConfig, Trainer

    trainer = Trainer(TrainConfig(dataset="digits", epochs=5), checkpoint="ckpt",
                      resume=True)
    history = trainer.fit()
    test_loss, test_accuracy = trainer.evaluate()
    trainer.save("model.npz")

Building a Trainer prepares the data (unless a split is given), builds the
network and optimizer, the callbacks the settings ask for (learning-rate
schedule, early stopping, keep-best) and the weight average, checks that
the disk can hold the checkpoint, and with ``resume`` restores the last
checkpoint: :meth:`fit` then trains the remaining epochs and returns the
history of all of them, ending bit-identical to an uninterrupted run.
"""

import shutil
import time
from pathlib import Path

import numpy as np

from . import checkpoint as checkpoints
from . import datasets, modelfile
from .errors import ConfigError, FastnnError
from .train import SAM, ClipNorm, EarlyStopping, History, build, config_callbacks, fit


class Trainer:
    """One training run of a :class:`~fastnn.config.TrainConfig`.

    Parameters
    ----------
    config : TrainConfig
        Every setting of the run (validated here).
    split : fastnn.datasets.Split, optional
        The data; default: ``datasets.prepare`` of the config's data set,
        validation fraction and seed.
    data_dir : path, optional
        Where to look for (and download) the data set.
    download : bool
        Download a missing built-in data set.
    checkpoint : path, optional
        Directory to save a checkpoint in after every epoch.
    resume : bool
        Continue from the checkpoint in ``checkpoint`` when there is one
        (its settings must be the config's).
    threads : int, optional
        Thread budget (see :func:`fastnn.fit`).
    kernels : {'auto', 'numba', 'numpy'}, optional
        Kernel set (see :meth:`Network.set_kernels`).

    Attributes
    ----------
    net, optimizer, split, config
    initial_epoch : int
        Epochs already done (restored from the checkpoint).
    resumed_from : Path or None
        The checkpoint restored, when one was.

    Raises
    ------
    ConfigError
        Bad settings, or ``resume`` without ``checkpoint``.
    FastnnError
        Not enough disk for the checkpoint; a checkpoint of other settings.
    """

    def __init__(self, config, split=None, *, data_dir=None, download=True, checkpoint=None,
                 resume=False, threads=None, kernels=None):
        self.config = config = config.validated()
        if resume and not checkpoint:
            raise ConfigError("resume needs a checkpoint directory")
        self.split = split or datasets.prepare(
            config.dataset, data_dir=data_dir, dtype=config.dtype,
            val_fraction=config.val_fraction, seed=config.seed, download=download,
            target=config.target, image_size=config.image_size,
            test_fraction=config.test_fraction)
        self.threads = threads
        self.net, self.optimizer = build(config, self.split.X_train.shape[1],
                                         len(self.split.class_names), threads=threads,
                                         kernels=kernels)
        self.net.preprocessing = self.split.preprocessing
        self.callbacks = config_callbacks(config, self.optimizer)
        self.average = config.weight_average()
        self.rng = np.random.default_rng(config.seed)  # the shuffling stream
        self.initial_epoch, self.resumed_from, self._prior = 0, None, None
        self._saver = None
        if checkpoint is not None:
            self.checkpoint_to(checkpoint, resume)

    @property
    def model_bytes(self):
        """About how many bytes a saved model takes (arrays, header, zip overhead)."""
        net = self.net
        return net.params.flat.nbytes + net.running_stats.flat.nbytes + 16 * 1024

    def check_space(self, path, n_bytes=None, what="model"):
        """Raise FastnnError when the disk holding ``path`` lacks room for it."""
        n_bytes = self.model_bytes if n_bytes is None else n_bytes
        free = shutil.disk_usage(Path(path).parent).free
        if free < n_bytes:
            raise FastnnError(f"{what} {path}: needs about {_size(n_bytes)} but only "
                              f"{_size(free)} are free there")

    @property
    def prior_history(self):
        """The history record (``{"epoch": [...], ...}``) of the epochs restored, or None."""
        return self._prior

    def checkpoint_to(self, directory, resume=False):
        """Save a checkpoint in ``directory`` after every epoch; with ``resume``, first restore
        the one there (if any). What the ``checkpoint``/``resume`` arguments do, for a
        caller that chooses the directory once the data is read."""
        path = checkpoints.checkpoint_path(directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        # params, the temporary copy, optimizer state, keep-best and averaged weights
        n_arrays = 2 + len(self.optimizer.state) + len(self.callbacks) + (self.average is not None)
        self.check_space(path, n_arrays * self.model_bytes, "checkpoint")
        stoppers = [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]
        config = self.config.to_dict()
        if resume and path.exists():
            self.initial_epoch, self._prior = checkpoints.load(
                path, self.net, self.optimizer, self.rng, config, stoppers, self.average)
            self.resumed_from = path
        self._saver = checkpoints.Checkpoint(directory, self.net, self.optimizer, self.rng,
                                             config, stoppers, self.average)
        if self._prior:
            self._saver.history = history_from(self._prior)

    def fit(self, callbacks=()):
        """Train the remaining epochs; return the History of every epoch (restored ones too).

        ``callbacks`` run after the settings' own (schedule, early stopping)
        and the checkpoint's. Raises what :func:`fastnn.fit` raises; on
        Ctrl-C (KeyboardInterrupt) the network holds the weights reached.
        """
        config, split = self.config, self.split
        extra = [self._saver] if self._saver is not None else []
        start = time.perf_counter()
        features = [ClipNorm(config.clip_norm), SAM(config.sam or 0),
                    config.augmentation(split.X_train.shape[1]), self.average]
        history = fit(self.net, self.optimizer, split.X_train, split.y_train,
                      epochs=config.epochs, batch_size=config.batch_size,
                      validation_data=(split.X_val, split.y_val), seed=self.rng,
                      callbacks=[*self.callbacks, *extra, *callbacks],
                      features=[f for f in features if f is not None], threads=self.threads,
                      initial_epoch=self.initial_epoch)
        self.seconds = time.perf_counter() - start
        if self._prior:
            history = history_from(self._prior, then=history)
        self.history = history
        return history

    def evaluate(self):
        """(loss, accuracy) of the network on the test split."""
        return self.net.evaluate(self.split.X_test, self.split.y_test)

    def save(self, path, **metadata):
        """Save the model (atomically) with the config, history, class names, the data set's
        description and the preprocessing, so that it can be evaluated and used alone."""
        split = self.split
        meta = {"config": self.config.to_dict(), "dataset": self.config.dataset, **metadata}
        if split.description is not None:
            meta.setdefault("data", split.description)
        if getattr(self, "history", None) is not None:
            meta.setdefault("history", self.history.to_dict())
        modelfile.save(self.net, path, class_names=split.class_names, metadata=meta,
                       preprocessing=split.preprocessing)


def train(config, split=None, callbacks=(), **options):
    """Build a :class:`Trainer`, fit it and return it (``trainer.net``, ``trainer.history``)."""
    trainer = Trainer(config, split, **options)
    trainer.fit(callbacks)
    return trainer


def history_from(record, then=None):
    """A History of a checkpoint's epochs (a record ``{"epoch": [...], key: [...]}``), then ``then``'s."""
    history = History()
    keys = [k for k in record if k != "epoch"]
    for i, epoch in enumerate(record["epoch"]):
        history.append(epoch, {k: record[k][i] for k in keys})
    if then is not None:
        for i, epoch in enumerate(then.epoch):
            history.append(epoch, {k: v[i] for k, v in then.history.items()})
    return history


def _size(n_bytes):
    return f"{n_bytes / 2**20:.1f} MiB" if n_bytes >= 2**20 else f"{n_bytes / 1024:.0f} KiB"
