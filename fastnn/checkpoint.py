"""Training checkpoints: resume a killed run and finish bit-identical to an uninterrupted one.

A checkpoint is ``DIR/checkpoint.npz`` (written atomically after every
epoch): the flat parameters, the batch-norm running statistics (if any),
the optimizer state, the state of the
shuffling and dropout random generators, the epoch, the history so far and
the training config, as arrays plus a JSON header, read with
``allow_pickle=False``.
"""

import json
from pathlib import Path

import numpy as np

from . import _npz
from ._atomic import atomic_open
from ._npz import Archive
from .config import TrainConfig
from .errors import ModelFileError
from .train import Callback

FORMAT = "fastnn-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.npz"


def checkpoint_path(directory):
    return Path(directory) / FILENAME


def save(path, net, optimizer, rng, epoch, history, config, stoppers=(), average=None):
    """Write everything needed to continue training after ``epoch``.

    ``stoppers`` are the run's :class:`~fastnn.train.EarlyStopping` callbacks
    (early stopping, keep-best): their progress and best weights so far are
    saved too, so a resumed run stops and restores as the uninterrupted one.
    ``average`` (a :class:`~fastnn.average.WeightAverage`) is saved with its
    step count; the parameters saved are the trained ones even while the
    average is swapped into the network for the epoch's callbacks.
    """
    states = [stopper.state() for stopper in stoppers]
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "epoch": epoch,
        "config": config, "history": history.to_dict(), "optimizer_t": optimizer.t,
        "rng": rng.bit_generator.state, "dropout_rng": net._dropout_rng.bit_generator.state,
        "stoppers": [state for state, _ in states],
    }
    arrays = {"params": net.params.flat, "stats": net.running_stats.flat}
    if average is not None:
        arrays["params"] = average.raw_params()
        header["average"], arrays["average"] = average.state()
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    for i, (_, best) in enumerate(states):
        if best is not None:
            arrays[f"best_{i}"] = best
    for key, value in optimizer.state_dict().items():
        if key != "t":
            arrays[f"opt_{key}"] = value
    with atomic_open(path, "wb") as f:
        _npz.write(f, arrays)


def read_config(path):
    """The training settings (a dict) a checkpoint was made with; ModelFileError if unreadable."""
    from .modelfile import read_header

    path = Path(path)
    with Archive(path, ModelFileError, "fastnn checkpoint") as z:
        header = read_header(path, z)
    if header.get("format") != FORMAT or not isinstance(header.get("config"), dict):
        raise ModelFileError(f"{path}: not a fastnn checkpoint")
    return header["config"]


def load(path, net, optimizer, rng, config, stoppers=(), average=None):
    """Restore a checkpoint into ``net``, ``optimizer``, ``rng`` (and ``average``) in place.

    Returns
    -------
    epoch : int
        The last completed epoch.
    history : dict
        ``History.to_dict()`` of the epochs done.

    Raises
    ------
    ModelFileError
        Not a checkpoint, corrupt, or made with different settings.
    """
    from .modelfile import read_header

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no checkpoint to resume from")
    flat = net.params.flat
    try:
        with Archive(path, ModelFileError, "fastnn checkpoint") as z:
            header = read_header(path, z)
            if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
                raise ModelFileError(f"{path}: not a fastnn checkpoint of version "
                                     f"{FORMAT_VERSION}")
            # before any array: a changed setting (a width, say) changes their shapes too
            _check_settings(path, header, config)
            params = z.array("params", dtype=flat.dtype, shape=flat.shape)
            opt_state = {k[4:]: z.array(k, dtype=flat.dtype, shape=flat.shape)
                         for k in z.names if k.startswith("opt_")}
            stats = net.running_stats.flat
            # checkpoints from before batch normalisation hold no "stats"
            saved_stats = (z.array("stats", dtype=stats.dtype, shape=stats.shape)
                           if "stats" in z.names or stats.size else stats)
            snapshot = (flat.size + stats.size,)
            best = {k: z.array(k, dtype=flat.dtype, shape=snapshot)
                    for k in z.names if k.startswith("best_")}
            averaged = (z.array("average", dtype=flat.dtype, shape=flat.shape)
                        if average is not None and "average" in z.names else None)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable fastnn checkpoint ({exc})") from None
    try:
        optimizer.load_state_dict({"t": header["optimizer_t"], **opt_state})
        rng.bit_generator.state = header["rng"]
        net._dropout_rng.bit_generator.state = header["dropout_rng"]
        epoch = int(header["epoch"])
        saved_stoppers = header.get("stoppers", [])
        for i, (stopper, state) in enumerate(zip(stoppers, saved_stoppers)):
            stopper.resume({k: state[k] for k in ("best", "best_epoch", "wait")},
                           best.get(f"best_{i}"))
        if average is not None:
            if averaged is None:
                raise ValueError("it holds no weight average")
            average.resume(header["average"], averaged)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: checkpoint state does not fit this run ({exc})") from None
    net.params.flat[:] = params
    net.running_stats.flat[:] = saved_stats
    return epoch, header["history"]


def _check_settings(path, header, config):
    """Refuse a checkpoint made with other settings than ``config``, naming them."""
    required = ("epoch", "config", "history", "optimizer_t", "rng", "dropout_rng")
    if any(key not in header for key in required) or not isinstance(header["config"], dict):
        raise ModelFileError(f"{path}: checkpoint header lacks {', '.join(required)}")
    ignore = {"epochs", "patience"}  # training longer than planned is allowed
    # settings added since the checkpoint was written take their defaults
    defaults = TrainConfig().to_dict()
    saved = {k: v for k, v in {**defaults, **header["config"]}.items() if k not in ignore}
    wanted = {k: v for k, v in {**defaults, **config}.items() if k not in ignore}
    if saved != wanted:
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise ModelFileError(f"{path}: the checkpoint was made with other settings "
                             f"({', '.join(diff)}); start a new --checkpoint directory")


class Checkpoint(Callback):
    """Save a checkpoint after every epoch (see :func:`save`)."""

    def __init__(self, directory, net, optimizer, rng, config, stoppers=(), average=None):
        self.path = checkpoint_path(directory)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A run killed while writing leaves its temporary file: clear it away.
        for stale in self.path.parent.glob(f".{FILENAME}.*.tmp"):
            stale.unlink(missing_ok=True)
        self.net, self.optimizer, self.rng, self.config = net, optimizer, rng, config
        self.stoppers = tuple(stoppers)
        self.average = average
        self.history = None

    def on_epoch_end(self, epoch, logs):
        from .train import History

        if self.history is None:
            self.history = History()
        self.history.append(epoch, logs)
        save(self.path, self.net, self.optimizer, self.rng, epoch, self.history, self.config,
             self.stoppers, self.average)
