"""Run folders: what one training run leaves on disk, for ``fastnn train`` and every sweep run.

A run folder holds

- ``config.yaml``: the resolved settings (the keys of a sweep's parameters;
  ``fastnn train --config`` reads it back);
- ``metrics.csv``: one row per epoch, Keras ``CSVLogger``'s columns
  ``epoch, loss, accuracy, val_loss, val_accuracy`` then ``lr`` and
  ``seconds``;
- ``log.txt``: what the run printed;
- ``model.npz``: the final model (a sweep keeps it for its best runs only);
- ``checkpoint.npz``: the last epoch's checkpoint (``fastnn train`` only),
  which ``fastnn train --resume RUN_DIR`` continues from.

Every file is written atomically.
"""

import csv
import datetime
import io
import os
import re
from pathlib import Path

from . import checkpoint
from ._atomic import atomic_write_bytes
from .callbacks import Callback
from .config import ALIASES, TrainConfig
from .errors import ConfigError

CONFIG, METRICS, LOG, MODEL = "config.yaml", "metrics.csv", "log.txt", "model.npz"
CHECKPOINT = checkpoint.FILENAME
COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")
DEFAULT_ROOT = "runs"


def new_run_dir(dataset, root=None):
    """Create and return a fresh folder ``ROOT/<data set>-<date>-<time>[-n]``.

    ``root`` defaults to ``$FASTNN_RUNS`` or ``runs``. The folder is made
    with an exclusive ``mkdir``: two runs started in the same second (or in
    two processes) get two folders.
    """
    root = Path(root or os.environ.get("FASTNN_RUNS") or DEFAULT_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(dataset)).stem)[:40] or "run"
    base = f"{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    for n in range(1, 10_000):
        path = root / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"{root}: cannot find a free run folder name for {base}")


def write_config(run_dir, config):
    """Write ``config.yaml`` (the resolved settings) into ``run_dir``."""
    atomic_write_bytes(Path(run_dir) / CONFIG, config_yaml(config).encode("utf-8"))


def config_yaml(config):
    """The settings as YAML, in TrainConfig's field order (what ``--print-config`` prints)."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False, default_flow_style=False)


def read_settings(path):
    """The settings in a YAML file (``--config``), as a dict of TrainConfig field names.

    Keys are those of a sweep's parameters (``learning_rate`` and
    ``epsilon`` are accepted for ``lr`` and ``eps``). A value may be written
    plainly or, as in a sweep file, as ``{value: ...}``.

    Raises
    ------
    ConfigError
        Not readable, not a mapping, or an unknown key.
    """
    import yaml

    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file "
                          f"({str(exc).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of setting: value")
    fields = TrainConfig.__dataclass_fields__
    out = {}
    for key, value in values.items():
        name = ALIASES.get(key, key)
        if name not in fields:
            raise ConfigError(f"{path}: unknown setting {key!r}; valid: "
                              f"{', '.join(sorted(set(fields) | set(ALIASES)))}")
        if isinstance(value, dict) and set(value) == {"value"}:
            value = value["value"]
        out[name] = value
    return out


def stored_config(path):
    """The settings a run was made with: a run folder's ``config.yaml``, else those in its
    checkpoint (``path`` a run folder, a checkpoint folder or a checkpoint file).

    Returns
    -------
    (TrainConfig, run_dir)

    Raises
    ------
    ConfigError
        Nothing to resume there.
    """
    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    if (run_dir / CONFIG).is_file():
        return TrainConfig.from_dict(read_settings(run_dir / CONFIG)).validated(), run_dir
    ckpt = path if path.is_file() else checkpoint.checkpoint_path(run_dir)
    if not ckpt.is_file():
        raise ConfigError(f"--resume {path}: neither a run folder ({CONFIG}) nor a checkpoint")
    return TrainConfig.from_dict(checkpoint.read_config(ckpt)).validated(), run_dir


def epoch_line(epoch, epochs, logs):
    """The line ``fastnn train`` prints (and a run's log.txt holds) after an epoch."""
    line = (f"epoch {epoch:>{len(str(epochs))}}/{epochs}  "
            f"loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}")
    if "val_loss" in logs:
        line += f"  val_loss {logs['val_loss']:.4f}  val_acc {logs['val_accuracy']:.4f}"
    if "lr" in logs:
        line += f"  lr {logs['lr']:.3g}"
    return line + f"  ({logs['time']:.1f}s)"


class RunFiles(Callback):
    """A run folder written as a run goes, for runs that print nothing (a sweep's): the
    settings now, ``metrics.csv`` and a line of ``log.txt`` after every epoch."""

    def __init__(self, run_dir, config, optimizer, title):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_config(self.run_dir, config)
        self.epochs = config.epochs
        self.metrics = MetricsLog(self.run_dir / METRICS, optimizer)
        atomic_write_bytes(self.run_dir / LOG, (title + "\n").encode("utf-8"))

    def log(self, line):
        with open(self.run_dir / LOG, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def on_epoch_end(self, epoch, logs):
        self.metrics.on_epoch_end(epoch, logs)
        self.log(epoch_line(epoch, self.epochs, logs))
        return False


class MetricsLog(Callback):
    """Write ``metrics.csv`` after every epoch (the whole file, atomically).

    ``prior`` holds the rows of epochs done before a resume, ``optimizer``
    gives the learning rate when the logs have none.
    """

    def __init__(self, path, optimizer, prior=None):
        self.path, self.optimizer = Path(path), optimizer
        self.rows = []
        if prior:
            for i, epoch in enumerate(prior["epoch"]):
                self.rows.append(self._row(epoch, {k: v[i] for k, v in prior.items()}))

    def _row(self, epoch, logs):
        lr = logs.get("lr", getattr(self.optimizer, "lr", ""))
        return [epoch, *(logs.get(k, "") for k in COLUMNS[1:5]), lr, logs.get("time", "")]

    def on_epoch_end(self, epoch, logs):
        self.rows.append(self._row(epoch, logs))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buf.getvalue().encode("utf-8"))
        return False


class Tee(io.TextIOBase):
    """A text stream writing to ``out`` and appending to a log file."""

    def __init__(self, out, log_path):
        self.out = out
        self.log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, text):
        self.out.write(text)
        self.log.write(text)
        return len(text)

    def flush(self):
        self.out.flush()
        self.log.flush()

    def close(self):
        self.log.close()
