"""Hyperparameter sweeps: W&B sweep files run locally in worker processes.

A sweep file uses the Weights & Biases sweep format, so the same YAML works
with ``wandb sweep``::

    method: random            # grid or random (bayes needs the W&B server)
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
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from . import _atomic, _jit, _threads
from .config import TrainConfig
from .errors import ConfigError, FastnnError

METHODS = ("grid", "random")
TOP_LEVEL_KEYS = {"method", "metric", "parameters", "run_cap", "name", "description",
                  "program", "command", "project", "entity", "early_terminate"}
ALIASES = {"learning_rate": "lr", "epsilon": "eps"}
DISTRIBUTIONS = ("constant", "categorical", "uniform", "int_uniform", "q_uniform",
                 "log_uniform", "log_uniform_values", "q_log_uniform_values",
                 "normal", "q_normal", "log_normal", "q_log_normal")
SUPPORTED = ("constant", "categorical", "uniform", "int_uniform", "q_uniform",
             "log_uniform", "log_uniform_values", "q_log_uniform_values")
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "accuracy", "loss")
RESULTS_FILE = "results.jsonl"
SPEC_FILE = "sweep.json"
TOP_MODELS = 3


class SweepError(FastnnError):
    """A sweep file or results directory is invalid."""


# ------------------------------------------------------------------ spec
@dataclasses.dataclass
class Param:
    """One swept parameter: a list of values or a distribution."""

    name: str
    distribution: str
    values: tuple = ()
    min: float = 0.0
    max: float = 0.0
    q: float = 1.0

    def sample(self, rng):
        d = self.distribution
        if d in ("constant", "categorical"):
            return self.values[int(rng.integers(len(self.values)))]
        if d == "int_uniform":
            return int(rng.integers(int(self.min), int(self.max) + 1))
        if d == "uniform":
            return float(rng.uniform(self.min, self.max))
        if d == "q_uniform":
            return float(np.round(rng.uniform(self.min, self.max) / self.q) * self.q)
        if d == "log_uniform":  # W&B: min and max are natural logs
            return float(math.exp(rng.uniform(self.min, self.max)))
        value = math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        if d == "q_log_uniform_values":
            value = float(np.round(value / self.q) * self.q)
        return float(value)


@dataclasses.dataclass
class Spec:
    """A validated sweep: method, metric, parameters and run cap."""

    method: str
    metric: str
    goal: str
    params: list
    run_cap: int | None
    raw: dict

    def configs(self, seed=0):
        """The run configurations (dicts of TrainConfig fields), in run order."""
        fixed = {p.name: p.values[0] for p in self.params if p.distribution == "constant"}
        swept = [p for p in self.params if p.distribution != "constant"]
        if self.method == "grid":
            out = [dict(fixed)]
            for p in swept:
                out = [{**c, p.name: v} for c in out for v in p.values]
            return out[: self.run_cap] if self.run_cap else out
        rng = np.random.default_rng(seed)
        return [{**fixed, **{p.name: p.sample(rng) for p in swept}} for _ in range(self.run_cap)]


def parse_spec(raw, *, where="sweep file"):
    """Validate a sweep dict (as read from YAML) and return a :class:`Spec`.

    Raises
    ------
    SweepError
        Unknown keys, unsupported methods or distributions, parameters that
        are not TrainConfig settings, or values out of range.
    """
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: expected a mapping at the top level")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}; "
                         f"allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    method = raw.get("method")
    if method == "bayes":
        raise SweepError(f"{where}: method 'bayes' needs the W&B server: run it with "
                         "--wandb-sweep (W&B credentials required), or use method: random")
    if method not in METHODS:
        raise SweepError(f"{where}: method must be one of grid, random (bayes: see "
                         f"--wandb-sweep), got {method!r}")
    metric = raw.get("metric") or {"name": "val_accuracy", "goal": "maximize"}
    if not isinstance(metric, dict) or set(metric) - {"name", "goal", "target"}:
        raise SweepError(f"{where}: metric must be a mapping with name and goal")
    name = metric.get("name", "val_accuracy")
    if name not in METRICS:
        raise SweepError(f"{where}: metric name must be one of {', '.join(METRICS)}, got {name!r}")
    goal = metric.get("goal", "maximize")
    if goal not in ("maximize", "minimize"):
        raise SweepError(f"{where}: metric goal must be maximize or minimize, got {goal!r}")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int)
                                or run_cap < 1):
        raise SweepError(f"{where}: run_cap must be an integer >= 1, got {run_cap!r}")
    if method == "random" and run_cap is None:
        raise SweepError(f"{where}: method random needs a run_cap (how many runs)")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{where}: parameters must be a non-empty mapping")
    params = [_parse_param(key, value, method, where) for key, value in parameters.items()]
    names = [p.name for p in params]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SweepError(f"{where}: parameter(s) given twice under different names: "
                         f"{', '.join(sorted(dupes))}")
    spec = Spec(method, name, goal, params, run_cap, raw)
    _validate_values(spec, where)
    return spec


def _parse_param(key, value, method, where):
    name = ALIASES.get(key, key)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        valid = sorted(fields | set(ALIASES))
        raise SweepError(f"{where}: unknown parameter {key!r}; valid: {', '.join(valid)}")
    if not isinstance(value, dict):
        raise SweepError(f"{where}: parameter {key} must be a mapping (values:, value: or "
                         "min:/max:)")
    extra = set(value) - {"values", "value", "min", "max", "distribution", "q", "probabilities"}
    if extra:
        raise SweepError(f"{where}: parameter {key}: unknown key(s) {', '.join(sorted(map(repr, extra)))}")
    if "value" in value:
        return Param(name, "constant", (_coerce(name, value["value"]),))
    if "values" in value:
        values = value["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: parameter {key}: values must be a non-empty list")
        if "probabilities" in value:
            raise SweepError(f"{where}: parameter {key}: probabilities are not supported")
        return Param(name, "categorical", tuple(_coerce(name, v) for v in values))
    dist = value.get("distribution")
    if dist is None:
        dist = "int_uniform" if all(isinstance(value.get(k), int) for k in ("min", "max")) \
            else "uniform"
    if dist not in DISTRIBUTIONS:
        raise SweepError(f"{where}: parameter {key}: unknown distribution {dist!r}")
    if dist not in SUPPORTED:
        raise SweepError(f"{where}: parameter {key}: distribution {dist} is not supported "
                         f"locally (supported: {', '.join(SUPPORTED)})")
    if method == "grid":
        raise SweepError(f"{where}: parameter {key}: method grid needs values:, not a "
                         f"{dist} distribution")
    lo, hi = _coerce(name, value.get("min")), _coerce(name, value.get("max"))
    for label, bound in (("min", lo), ("max", hi)):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise SweepError(f"{where}: parameter {key}: {label} must be a number, got {bound!r}")
    if lo > hi:
        raise SweepError(f"{where}: parameter {key}: min {lo} is larger than max {hi}")
    if dist in ("log_uniform_values", "q_log_uniform_values") and lo <= 0:
        raise SweepError(f"{where}: parameter {key}: {dist} needs min > 0, got {lo}")
    q = value.get("q", 1.0)
    if isinstance(q, bool) or not isinstance(q, (int, float)) or q <= 0:
        raise SweepError(f"{where}: parameter {key}: q must be > 0, got {q!r}")
    return Param(name, dist, (), lo, hi, q)


def _coerce(name, value):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: make numeric settings numbers."""
    default = getattr(TrainConfig(), name)
    if isinstance(value, str) and isinstance(default, (int, float)):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def _validate_values(spec, where):
    """Check every listed value (and distribution bound) against TrainConfig's rules."""
    base = TrainConfig()
    for p in spec.params:
        candidates = list(p.values) if p.values else [p.min, p.max]
        if p.distribution == "int_uniform":
            candidates = [int(p.min), int(p.max)]
        for v in candidates:
            try:
                dataclasses.replace(base, **{p.name: v}).validated()
            except ConfigError as exc:
                raise SweepError(f"{where}: parameter {p.name}: {exc}") from None


def load_spec(path):
    """Read a sweep YAML file with a safe loader and validate it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepError(f"{path}: malformed YAML{at}: {problem}") from None
    return parse_spec(raw, where=str(path))


# ------------------------------------------------------------------- runs
def run_id(index, config):
    digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    return f"{index:04d}-{digest[:8]}"


def read_results(results_dir):
    """All run records of a results directory; a torn last line is skipped with a warning."""
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
    return records


def _objective(record, metric, goal):
    value = record.get(metric)
    if value is None or not math.isfinite(value):
        return -math.inf
    return value if goal == "maximize" else -value


# Worker state: set once per worker process by _init_worker.
_WORKER = {}


def _init_worker(split, threads, data_desc, wandb_opts, results_dir, kernels="numpy"):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    os.environ[_threads.ENV_VAR] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        pass
    _WORKER.update(split=split, threads=threads, data=data_desc, wandb=wandb_opts,
                   results_dir=results_dir, kernels=kernels)


def _run_one(task):
    """Train one configuration; return its result record (never raises)."""
    from . import modelfile
    from .train import train_config

    index, rid, values, seed = task
    split = _WORKER["split"]
    record = {"run_id": rid, "index": index, "config": values, "seed": seed,
              "status": "failed", "pid": os.getpid(), "started": time.time()}
    start = time.perf_counter()
    wandb_run = None
    try:
        config = dataclasses.replace(TrainConfig(**values), seed=seed).validated()
        callbacks = []
        if _WORKER["wandb"]:
            from .wandb_log import WandbCallback, run_name

            opts = _WORKER["wandb"]
            wandb_run = WandbCallback(opts["project"], opts.get("entity"),
                                      config=config.to_dict(), name=run_name(config),
                                      group=opts.get("group"))
            callbacks.append(wandb_run)
        net, _, history = train_config(config, split, callbacks=callbacks,
                                       threads=_WORKER["threads"],
                                       kernels=_WORKER.get("kernels"))
        test_loss, test_acc = net.evaluate(split.X_test, split.y_test)
        record.update(status="finished", history=history.to_dict(),
                      val_accuracy=history["val_accuracy"][-1], val_loss=history["val_loss"][-1],
                      accuracy=history["accuracy"][-1], loss=history["loss"][-1],
                      test_accuracy=test_acc, test_loss=test_loss)
        model_dir = Path(_WORKER["results_dir"]) / "models"
        model_dir.mkdir(exist_ok=True)
        modelfile.save(net, model_dir / f"{rid}.npz", class_names=split.class_names,
                       metadata={"config": config.to_dict(), "run_id": rid,
                                 "test_accuracy": test_acc})
        if wandb_run is not None:
            wandb_run.finish({"test_accuracy": test_acc, "val_accuracy": record["val_accuracy"]})
    except Exception as exc:  # noqa: BLE001 - any failure is recorded; the sweep goes on
        record.update(status="diverged" if type(exc).__name__ == "TrainingDivergedError"
                      else "failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=3))
        if wandb_run is not None:
            with contextlib.suppress(Exception):
                wandb_run.finish({"status": record["status"]})
    record["wall_time"] = time.perf_counter() - start
    return record


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


def run_sweep(spec, results_dir, *, dataset=None, data_dir=None, workers=None, seed=0,
              val_fraction=0.1, wandb=None, on_result=None, kernels=None):
    """Run (or resume) a sweep; return the list of all run records.

    Parameters
    ----------
    spec : Spec
    results_dir : path
        Holds ``results.jsonl``, ``sweep.json`` and the models of the best runs.
    dataset : str, optional
        Data set of every run unless the spec sets ``dataset`` (one value).
    workers : int, optional
        Worker processes (default: the available CPUs); BLAS threads are
        divided among them.
    seed : int
        Seed of the random sampling and of the validation split; run i
        trains with seed ``seed + i`` unless ``seed`` is swept.
    wandb : dict, optional
        ``{"project": ..., "entity": ...}`` to log each run to W&B.
    on_result : callable, optional
        Called with each new record as it arrives (for progress output).
    kernels : {'auto', 'numba', 'numpy'}, optional
        Kernel set of every run (default ``$FASTNN_KERNELS`` or ``auto``);
        checked here, before any run starts. Workers load compiled kernels
        from the shared disk cache.
    """
    from . import datasets

    kernels = _jit.resolve(kernels)
    datasets_in_spec = {p.values[0] for p in spec.params if p.name == "dataset"}
    if any(p.name == "dataset" and len(p.values) != 1 for p in spec.params):
        raise SweepError("a sweep trains on one data set: give dataset one value")
    dataset = (datasets_in_spec.pop() if datasets_in_spec else dataset) or "fashion_mnist"
    configs = spec.configs(seed)
    tasks = []
    for i, values in enumerate(configs):
        values = {**values, "dataset": dataset}
        run_seed = int(values.pop("seed", seed + i))
        tasks.append((i, run_id(i, {**values, "seed": run_seed}), values, run_seed))
    results_dir = _check_results_dir(results_dir, spec, seed, dataset)
    done = {r["run_id"] for r in read_results(results_dir)}
    todo = [t for t in tasks if t[1] not in done]
    records = read_results(results_dir)
    if not todo:
        return records

    dtypes = {t[2].get("dtype", "float32") for t in todo}
    if len(dtypes) > 1:
        raise SweepError("a sweep runs in one dtype: give dtype one value")
    split = datasets.prepare(dataset, data_dir=data_dir, dtype=dtypes.pop(),
                             val_fraction=val_fraction, seed=seed)
    n_cpus = _threads.available_cpus()
    workers = min(workers or n_cpus, len(todo))
    threads = max(1, n_cpus // workers)
    results_path = results_dir / RESULTS_FILE
    _drop_torn_tail(results_path)

    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    pool = ctx.Pool(workers, initializer=_init_worker,
                    initargs=(split, threads, dataset, wandb, str(results_dir), kernels))
    try:
        with open(results_path, "ab") as out:
            for record in pool.imap_unordered(_run_one, todo):
                line = json.dumps(record, default=_json_default).encode() + b"\n"
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
                records.append(record)
                _keep_top_models(results_dir, records, spec)
                if on_result is not None:
                    on_result(record, len(records), len(tasks))
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    return records


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
    for path in (Path(results_dir) / "models").glob("*.npz"):
        # NOTE: a model whose record has not arrived yet belongs to a run
        # another worker just finished: leave it until its record is in.
        if path.stem in recorded and path.stem not in keep:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def log_best_to_wandb(results_dir, records, spec, wandb_opts, data_dir=None):
    """Log the best run's confusion matrix on the test set as its own W&B run."""
    from . import datasets, modelfile
    from .wandb_log import WandbCallback

    best = best_run(records, spec.metric, spec.goal)
    path = Path(results_dir) / "models" / f"{best['run_id']}.npz" if best else None
    if path is None or not path.exists():
        return None
    net, _ = modelfile.load(path)
    ds = datasets.load(best["config"]["dataset"], data_dir=data_dir)
    pred = net.predict(datasets.preprocess(ds.x_test, net.dtype.name))
    run = WandbCallback(wandb_opts["project"], wandb_opts.get("entity"), config=best["config"],
                        name=f"best-{best['run_id']}", group=wandb_opts.get("group"))
    run.log_confusion_matrix(ds.y_test, pred, ds.class_names)
    run.finish({"test_accuracy": best["test_accuracy"], "best_run": best["run_id"]})
    return best["run_id"]


def best_run(records, metric="val_accuracy", goal="maximize"):
    """The finished record with the best metric, or None."""
    finished = [r for r in records if r.get("status") == "finished"]
    if not finished:
        return None
    return max(finished, key=lambda r: _objective(r, metric, goal))


def wandb_sweep(spec, project, entity=None, count=None, train_fn=None):
    """Register the sweep with the W&B server and run an agent on it.

    Needs W&B credentials; other machines join with ``wandb agent``.
    """
    from .wandb_log import has_credentials, import_wandb

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
