"""Training checkpoints: resume a killed run and finish bit-identical to an uninterrupted one.

A checkpoint is ``DIR/checkpoint.npz`` (written atomically after every
epoch): the flat parameters, the optimizer state, the state of the
shuffling and dropout random generators, the epoch, the history so far and
the training config, as arrays plus a JSON header, read with
``allow_pickle=False``.
"""

import json
from pathlib import Path

import numpy as np

from ._atomic import atomic_open
from .errors import ModelFileError
from .train import Callback

FORMAT = "fastnn-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.npz"


def checkpoint_path(directory):
    return Path(directory) / FILENAME


def save(path, net, optimizer, rng, epoch, history, config):
    """Write everything needed to continue training after ``epoch``."""
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "epoch": epoch,
        "config": config, "history": history.to_dict(), "optimizer_t": optimizer.t,
        "rng": rng.bit_generator.state, "dropout_rng": net._dropout_rng.bit_generator.state,
    }
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8),
              "params": net.params.flat}
    for key, value in optimizer.state_dict().items():
        if key != "t":
            arrays[f"opt_{key}"] = value
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path, net, optimizer, rng, config):
    """Restore a checkpoint into ``net``, ``optimizer`` and ``rng`` (in place).

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
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(z["header"].tobytes().decode())
            params = z["params"]
            opt_state = {k[4:]: z[k] for k in z.files if k.startswith("opt_")}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no checkpoint to resume from") from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable fastnn checkpoint ({exc})") from None
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: not a fastnn checkpoint of version {FORMAT_VERSION}")
    ignore = {"epochs", "patience"}  # training longer than planned is allowed
    saved = {k: v for k, v in header["config"].items() if k not in ignore}
    wanted = {k: v for k, v in config.items() if k not in ignore}
    if saved != wanted:
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        raise ModelFileError(f"{path}: the checkpoint was made with other settings "
                             f"({', '.join(diff)}); start a new --checkpoint directory")
    if params.shape != net.params.flat.shape or params.dtype != net.params.flat.dtype:
        raise ModelFileError(f"{path}: parameters do not match the network")
    net.params.flat[:] = params
    optimizer.load_state_dict({"t": header["optimizer_t"], **opt_state})
    rng.bit_generator.state = header["rng"]
    net._dropout_rng.bit_generator.state = header["dropout_rng"]
    return int(header["epoch"]), header["history"]


class Checkpoint(Callback):
    """Save a checkpoint after every epoch (see :func:`save`)."""

    def __init__(self, directory, net, optimizer, rng, config):
        self.path = checkpoint_path(directory)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A run killed while writing leaves its temporary file: clear it away.
        for stale in self.path.parent.glob(f".{FILENAME}.*.tmp"):
            stale.unlink(missing_ok=True)
        self.net, self.optimizer, self.rng, self.config = net, optimizer, rng, config
        self.history = None

    def on_epoch_end(self, epoch, logs):
        from .train import History

        if self.history is None:
            self.history = History()
        self.history.append(epoch, logs)
        save(self.path, self.net, self.optimizer, self.rng, epoch, self.history, self.config)
