"""Hyperparameter sweeps: W&B sweep files run locally in worker processes.

A sweep file uses the Weights & Biases sweep format, so the same YAML works
with ``wandb sweep``::

    method: random            # grid, random or bayes (Optuna's TPE, run locally)
    metric: {name: val_accuracy, goal: maximize}
    run_cap: 120
    parameters:
      epochs: {values: [5, 10]}
      learning_rate: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}
      loss: {value: cross_entropy}

Parameter names are :class:`~fastnn.config.TrainConfig` fields or the
command-line long names (``learning_rate`` for ``lr``, ``epsilon`` for
``eps``). Every run is one JSON line in ``RESULTS_DIR/results.jsonl``,
written by the parent process when the run ends (so lines never interleave)
and flushed; re-running the same sweep skips the runs already recorded.

The package has one module per concern: :mod:`.spec` (the file format),
:mod:`.search` (grid, random, bayes), :mod:`.hyperband` (early termination),
:mod:`.results` (the results log), :mod:`.local` (worker processes and the
scheduling loop), :mod:`.dask_executor` (a Dask cluster) and
:mod:`.wandb_server` (the W&B server). A new search or executor is one new
module.
"""

from .local import run_sweep
from .results import RESULTS_FILE, SPEC_FILE, TOP_MODELS, best_run, read_results, run_id
from .spec import (
    ALIASES,
    DISTRIBUTIONS,
    METHODS,
    METRICS,
    Param,
    Spec,
    SweepError,
    load_spec,
    parse_spec,
)
from .wandb_server import log_best_to_wandb, wandb_sweep

__all__ = [
    "ALIASES", "DISTRIBUTIONS", "METHODS", "METRICS", "RESULTS_FILE", "SPEC_FILE", "TOP_MODELS",
    "Param", "Spec", "SweepError", "best_run", "load_spec", "log_best_to_wandb", "parse_spec",
    "read_results", "run_id", "run_sweep", "wandb_sweep",
]
