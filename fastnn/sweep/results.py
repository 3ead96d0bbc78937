"""The results log of a sweep: one JSON line per run, written by one process only.

``RESULTS_DIR/results.jsonl`` holds every run record; ``sweep.json`` marks
which sweep the directory belongs to; ``runs/RUN_ID/`` is each run's folder,
as ``fastnn train`` leaves one (:mod:`fastnn.runs`: config.yaml, metrics.csv,
log.txt), with ``model.npz`` kept for the best few runs. (Sweeps written
before run folders existed kept those models in ``models/RUN_ID.npz``.)
"""

import contextlib
import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from .. import _atomic
from .spec import SweepError

RESULTS_FILE = "results.jsonl"
RUNS_DIR = "runs"


def run_folder(results_dir, run_id):
    """The folder of run ``run_id`` of the sweep in ``results_dir``."""
    return Path(results_dir) / RUNS_DIR / run_id


def model_path(results_dir, run_id):
    """Where the model of run ``run_id`` is (or would be) kept."""
    from ..runs import MODEL

    path = run_folder(results_dir, run_id) / MODEL
    legacy = Path(results_dir) / "models" / f"{run_id}.npz"
    return legacy if legacy.exists() and not path.exists() else path
SPEC_FILE = "sweep.json"
TOP_MODELS = 3


def run_id(index, config):
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return f"{index:04d}-{digest[:8]}"


def read_results(results_dir):
    """The run records of a results directory, one per run, in the order they were written.

    results.jsonl is an append log: a run retried with ``retry_failed``
    appends a second line for its index, and the last line of a run is the
    one returned (at the place of its first). A torn last line is skipped
    with a warning.
    """
    path = Path(results_dir) / RESULTS_FILE
    if not path.exists():
        return []
    records = []
    lines = path.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            warnings.warn(f"{path}: skipping unreadable line {i + 1} (a run cut off mid-write)",
                          stacklevel=2)
    latest = {r["index"]: r for r in records if isinstance(r, dict) and "index" in r}
    out, placed = [], set()
    for r in records:
        index = r.get("index") if isinstance(r, dict) else None
        if index is None:
            out.append(r)
        elif index not in placed:
            placed.add(index)
            out.append(latest[index])
    return out


def _objective(record, metric, goal):
    value = record.get(metric)
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if goal == "maximize" else -value


def _check_results_dir(results_dir, spec, seed, dataset_key):
    """Create the results dir, or make sure it belongs to this same sweep."""
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"{results_dir}: cannot create the results directory "
                         f"({exc.strerror or exc})") from None
    if not os.access(results_dir, os.W_OK):
        raise SweepError(f"{results_dir}: directory is not writable")
    # run_cap is left out: raising it extends a random sweep (the draws are a
    # prefix-stable sequence), lowering it stops early.
    identity = {"spec": {k: v for k, v in spec.raw.items() if k != "run_cap"}, "seed": seed,
                "data": dataset_key}
    marker = results_dir / SPEC_FILE
    if marker.exists():
        try:
            stored = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SweepError(f"{marker}: unreadable ({exc})") from None
        if stored != json.loads(json.dumps(identity, default=str)):
            raise SweepError(f"{results_dir} holds results of a different sweep (spec, seed or "
                             "data differ); use another --results directory")
    else:
        _atomic.atomic_write_bytes(marker, json.dumps(identity, default=str, indent=1).encode())
    return results_dir


def _drop_torn_tail(path):
    """Cut a last line that a killed sweep left half-written, so the next
    record does not get glued onto it (that run is simply run again)."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _keep_top_models(results_dir, records, spec):
    """Delete saved models of runs outside the current top few."""
    finished = [r for r in records if r.get("status") == "finished"]
    finished.sort(key=lambda r: _objective(r, spec.metric, spec.goal), reverse=True)
    keep = {r["run_id"] for r in finished[:TOP_MODELS]}
    recorded = {r["run_id"] for r in records}
    from ..runs import MODEL

    kept = [(p.parent.name, p) for p in (Path(results_dir) / RUNS_DIR).glob(f"*/{MODEL}")]
    kept += [(p.stem, p) for p in (Path(results_dir) / "models").glob("*.npz")]
    for rid, path in kept:
        # NOTE: a model whose record has not arrived yet belongs to a run
        # another worker just finished: leave it until its record is in.
        if rid in recorded and rid not in keep:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class Sweep:
    """One reading of a sweep's results folder, shared by ``fastnn report`` and the dashboard
    (so both name the same best run).

    Attributes
    ----------
    path : Path
    records : list of dict
        :func:`read_results`.
    info : dict
        ``sweep.json`` (empty if absent); ``spec`` its sweep file as run.
    seed : int or None
    metric, goal : str
        The sweep's metric and goal (default ``val_accuracy``, maximise).
    best : dict or None
        :func:`best_run` by that metric.
    """

    def __init__(self, results_dir):
        self.path = Path(results_dir)
        self.records = read_results(self.path)
        marker = self.path / SPEC_FILE
        self.info = info = json.loads(marker.read_text()) if marker.exists() else {}
        self.spec = info.get("spec") or {}
        self.seed = info.get("seed")
        metric = self.spec.get("metric") or {}
        self.metric = metric.get("name", "val_accuracy")
        self.goal = metric.get("goal", "maximize")
        self.best = best_run(self.records, self.metric, self.goal)


def best_run(records, metric="val_accuracy", goal="maximize"):
    """The finished record with the best metric, or None."""
    finished = [r for r in records if r.get("status") == "finished"]
    if not finished:
        return None
    return max(finished, key=lambda r: _objective(r, metric, goal))
