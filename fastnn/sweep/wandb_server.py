"""Sweeps on the Weights & Biases server, and logging the best run there."""

import sys

from .results import best_run, model_path
from .spec import SweepError


def log_best_to_wandb(results_dir, records, spec, wandb_opts, data_dir=None):
    """Log the best run's confusion matrix on the test set as its own W&B run."""
    from .. import evaluation, modelfile
    from ..wandb_log import WandbCallback

    best = best_run(records, spec.metric, spec.goal)
    path = model_path(results_dir, best["run_id"]) if best else None
    if path is None or not path.exists():
        return None
    net, header = modelfile.load(path)
    ds, X_test = evaluation.test_data(net, header, model=str(path), data_dir=data_dir)
    pred = net.predict(X_test)
    run = WandbCallback(wandb_opts["project"], wandb_opts.get("entity"), config=best["config"],
                        name=f"best-{best['run_id']}", group=wandb_opts.get("group"))
    run.log_confusion_matrix(ds.y_test, pred, ds.class_names)
    run.finish({"test_accuracy": best["test_accuracy"], "best_run": best["run_id"]})
    return best["run_id"]


def wandb_sweep(spec, project, entity=None, count=None, train_fn=None):
    """Register the sweep with the W&B server and run an agent on it.

    Needs W&B credentials; other machines join with ``wandb agent``.
    """
    from ..wandb_log import has_credentials, import_wandb

    if not has_credentials():
        raise SweepError("--wandb-sweep needs W&B credentials (wandb login or WANDB_API_KEY); "
                         "without them run the sweep locally (drop --wandb-sweep)")
    wandb = import_wandb()
    raw = dict(spec.raw)
    raw.setdefault("program", "fastnn")
    raw.setdefault("command", ["${env}", sys.executable, "-m", "fastnn", "train", "${args}"])
    sweep_id = wandb.sweep(raw, project=project, entity=entity)
    wandb.agent(sweep_id, function=train_fn, project=project, entity=entity, count=count)
    return sweep_id
