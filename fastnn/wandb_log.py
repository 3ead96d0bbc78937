"""Logging training runs to Weights & Biases (the ``wandb`` extra).

wandb is imported lazily, only when a run asks for it. Without an API key
(``WANDB_API_KEY`` or a stored login) the run is logged offline: fastnn
sets ``WANDB_MODE=offline`` *before* importing wandb, because passing
``mode="offline"`` alone still contacts the server at exit.
"""

import os
from pathlib import Path

from .errors import FastnnError
from .train import Callback


def has_credentials():
    """True when a W&B API key is set or stored (``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def import_wandb():
    """Import wandb, choosing offline mode first when there are no credentials.

    Raises
    ------
    FastnnError
        wandb is not installed.
    """
    if not has_credentials():
        os.environ.setdefault("WANDB_MODE", "offline")
    try:
        import wandb
    except ImportError as exc:
        raise FastnnError(
            'W&B logging needs wandb: pip install "fastnn[wandb]"'
        ) from exc
    return wandb


class WandbCallback(Callback):
    """Log each epoch's metrics to an open W&B run."""

    def __init__(self, project, entity=None, config=None, name=None, group=None):
        self._wandb = import_wandb()
        self.run = self._wandb.init(project=project, entity=entity, config=config, name=name,
                                    group=group, reinit="finish_previous")

    def on_epoch_end(self, epoch, logs):
        self.run.log({"epoch": epoch, **logs})

    def finish(self, summary=None):
        """Write summary values and close the run."""
        if summary:
            self.run.summary.update(summary)
        self.run.finish()

    def log_confusion_matrix(self, y_true, y_pred, class_names):
        """Log ``wandb.plot.confusion_matrix`` of a model's predictions."""
        plot = self._wandb.plot.confusion_matrix(
            y_true=[int(v) for v in y_true], preds=[int(v) for v in y_pred],
            class_names=list(class_names))
        self.run.log({"confusion_matrix": plot})


def run_name(config):
    """A readable W&B run name, e.g. ``hl_3_sz_128_bs_16_ac_tanh_o_adam_lr_0.001``."""
    return (f"hl_{config.num_layers}_sz_{config.hidden_size}_bs_{config.batch_size}"
            f"_ac_{config.activation}_o_{config.optimizer}_lr_{config.lr:g}")
