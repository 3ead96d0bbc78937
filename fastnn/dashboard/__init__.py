"""An offline, interactive dashboard of sweeps and runs in one self-contained HTML file.

:func:`collect` reads sweep results folders (through the same
:class:`fastnn.sweep.results.Sweep` that ``fastnn report`` reads, so both name
the same best run), ``fastnn train`` run folders and model files;
:func:`build` turns them into the page's data (runs, swept settings, the
parameter importance, the best model's confusion matrix and most confident
mistakes); :func:`write` writes the page: plotly.js, the app (``app.js``),
its style and the data, all inline, so it opens from disk with the network
off. ``fastnn dashboard PATH... --out FILE.html`` runs these, and ``--watch``
rewrites the file while a sweep runs (the page reloads itself).

Charts are plotly.js (from the ``plotly`` package: ``pip install
"fastnn[dashboard]"``); parameter importance is Optuna's fANOVA.
"""

import csv
import datetime
import json
import math
import time
from pathlib import Path

import numpy as np

from .. import runs as runs_
from ..errors import FastnnError
from ..sweep.results import RESULTS_FILE, RUNS_DIR, SPEC_FILE

HERE = Path(__file__).parent
STATUSES = ("finished", "stopped", "running", "failed", "diverged")
METRICS = runs_.COLUMNS[1:5]  # loss, accuracy, val_loss, val_accuracy
MISTAKES = 24  # most confident mistakes shown
# fANOVA's cost grows with the square of a tree's leaves (about the runs): beyond this many
# finished runs, a fixed random sample of them (measured: 900 runs ~2 s, 2,000 runs 91 s).
IMPORTANCE_RUNS = 1000
# Settings that describe the data or the run, not the configuration: never a swept axis.
NOT_SWEPT = {"dataset", "seed", "dtype", "val_fraction", "target", "test_fraction",
             "image_size"}
IMPORTANCE_METHOD = ("fANOVA (Optuna's FanovaImportanceEvaluator, seed 0): the share of the "
                     "metric's variance, over the finished runs, that each setting explains "
                     "alone, from a random forest fitted to the runs")


def _plotly_js():
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise FastnnError('the dashboard needs plotly: pip install "fastnn[dashboard]"') from exc
    return get_plotlyjs()


# ------------------------------------------------------------------ reading
class Source:
    """Runs read from one path, with where they came from."""

    def __init__(self, name, runs, metric="val_accuracy", goal="maximize", spec=None,
                 best=None, complete=True):
        self.name, self.runs, self.metric, self.goal = name, runs, metric, goal
        self.spec, self.best, self.complete = spec or {}, best, complete


def collect(paths):
    """Read every path: a sweep results folder, a run folder, or a model file.

    Raises FastnnError for a path that is none of them.
    """
    sources = []
    for path in map(Path, paths):
        if (path / RESULTS_FILE).exists() or (path / SPEC_FILE).exists():
            sources.append(_read_sweep(path))
        elif (path / runs_.CONFIG).exists() or (path / runs_.METRICS).exists():
            sources.append(Source(path.name, [_run_folder(path, path.name)]))
        elif path.is_file() and path.suffix == ".npz":
            sources.append(Source(path.stem, [_model_file(path)]))
        elif path.is_dir() and any((p / runs_.CONFIG).exists() for p in path.iterdir()):
            runs = [_run_folder(p, p.name) for p in sorted(path.iterdir())
                    if (p / runs_.CONFIG).exists()]
            sources.append(Source(path.name, runs))
        else:
            raise FastnnError(f"{path}: not a sweep results folder, a run folder or a model "
                              "file")
    return sources


def _read_sweep(path):
    from ..sweep.results import Sweep, model_path, run_folder

    sweep = Sweep(path)
    runs = []
    recorded = set()
    for r in sweep.records:
        recorded.add(r["run_id"])
        history = r.get("history") or {}
        status = r.get("status", "failed")
        run = _run(r["run_id"], path.name, status, r.get("config") or {}, history,
                   {k: r.get(k) for k in ("val_accuracy", "val_loss", "accuracy", "loss",
                                         "test_accuracy", "test_loss")},
                   r.get("wall_time"), r.get("error"))
        run["metric"] = _finite(r.get(sweep.metric))
        run["model"] = str(model_path(path, r["run_id"]))
        runs.append(run)
    # runs in progress: a folder with metrics but no record yet
    folders = sorted((path / RUNS_DIR).glob(f"*/{runs_.CONFIG}"))
    for config in folders:
        rid = config.parent.name
        if rid not in recorded:
            run = _run_folder(run_folder(path, rid), rid, status="running", source=path.name)
            runs.append(run)
    total = _planned_runs(sweep)
    complete = total is not None and sum(r["status"] != "running" for r in runs) >= total
    return Source(path.name, runs, sweep.metric, sweep.goal, sweep.spec,
                  sweep.best["run_id"] if sweep.best else None, complete)


def _planned_runs(sweep):
    spec = sweep.spec
    if not spec:
        return None
    if spec.get("method") == "grid":
        total = 1
        for p in (spec.get("parameters") or {}).values():
            total *= len(p["values"]) if isinstance(p, dict) and "values" in p else 1
        return total
    return spec.get("run_cap")


def _run_folder(path, rid, status=None, source=None):
    """A ``fastnn train`` (or sweep) run folder: config.yaml, metrics.csv, model.npz."""
    import yaml

    config = {}
    if (path / runs_.CONFIG).exists():
        config = yaml.safe_load((path / runs_.CONFIG).read_text()) or {}
    history = {"epoch": []}
    if (path / runs_.METRICS).exists():
        with open(path / runs_.METRICS, newline="") as f:
            for row in csv.DictReader(f):
                history["epoch"].append(int(row["epoch"]))
                for key in METRICS:
                    history.setdefault(key, []).append(_number(row.get(key)))
    model = path / runs_.MODEL
    if status is None:
        status = "finished" if model.exists() else "running"
    last = {k: (history.get(k) or [None])[-1] for k in METRICS}
    test = {}
    if model.exists():
        test = _model_scores(model)
    run = _run(rid, source or path.name, status, config, history, {**last, **test}, None, None)
    run["metric"] = run["val_accuracy"]
    run["model"] = str(model)
    return run


def _model_file(path):
    from .. import modelfile

    _, header = modelfile.load(path)
    meta = header.get("metadata") or {}
    history = meta.get("history") or {"epoch": []}
    last = {k: (history.get(k) or [None])[-1] for k in METRICS}
    run = _run(path.stem, path.stem, "finished", meta.get("config") or {}, history,
               {**last, "test_accuracy": meta.get("test_accuracy")}, None, None)
    run["metric"] = run["val_accuracy"]
    run["model"] = str(path)
    return run


def _model_scores(path):
    from .. import modelfile

    try:
        _, header = modelfile.load(path)
    except FastnnError:
        return {}
    return {"test_accuracy": (header.get("metadata") or {}).get("test_accuracy")}


def _run(rid, source, status, config, history, scores, seconds, error):
    epochs = list(history.get("epoch") or [])
    return {
        "id": rid, "sweep": source, "status": status if status in STATUSES else "failed",
        "config": {k: v for k, v in config.items()},
        "history": {"epoch": epochs,
                    **{k: [_finite(v) for v in history.get(k) or []] for k in METRICS}},
        **{k: _finite(scores.get(k)) for k in (*METRICS, "test_accuracy")},
        "epochs": epochs[-1] if epochs else 0, "seconds": _finite(seconds),
        "error": error,
    }


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _finite(value):
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return float(f"{value:.6g}") if math.isfinite(value) else None


# ----------------------------------------------------------------- building
def swept_params(runs, spec=None):
    """The settings that vary across the runs, each with its axis: categorical (names, or
    a few numbers in order) or numeric (log when the values span 100x or more, all > 0)."""
    spec_params = (spec or {}).get("parameters") or {}
    names = []
    for run in runs:
        for key in run["config"]:
            if key not in names and key not in NOT_SWEPT:
                names.append(key)
    params = []
    for name in names:
        values = [_norm(r["config"].get(name)) for r in runs]
        distinct = sorted({v for v in values if v is not None}, key=_order)
        if len(distinct) < 2:
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
        dist = str((spec_params.get(name) or spec_params.get(_alias(name)) or {})
                   .get("distribution", ""))
        if numeric and (len(distinct) > 8 or "uniform" in dist or "normal" in dist):
            log = min(distinct) > 0 and ("log" in dist or max(distinct) / min(distinct) >= 100)
            params.append({"name": name, "kind": "num", "log": bool(log)})
        else:
            params.append({"name": name, "kind": "cat", "values": distinct})
    return params


def _alias(name):
    return {"lr": "learning_rate", "eps": "epsilon"}.get(name, name)


def _norm(value):
    return value.lower() if isinstance(value, str) else value


def _order(value):
    return (0, value, "") if isinstance(value, int | float) and not isinstance(value, bool) \
        else (1, 0, str(value))


def importance(runs, params, goal="maximize"):
    """Each swept setting's fANOVA importance for the metric (Optuna), or the reason there
    is none. The same runs always give the same numbers (the forest's seed is fixed)."""
    finished = [r for r in runs if r["status"] == "finished" and r["metric"] is not None]
    if len(finished) < 4 or not params:
        return {"method": IMPORTANCE_METHOD, "values": [],
                "note": "too few finished runs or no swept settings"}
    try:
        import optuna
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
        )
    except ImportError:
        return {"method": IMPORTANCE_METHOD, "values": [],
                "note": 'needs Optuna: pip install "fastnn[dashboard]"'}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_finished = len(finished)
    if n_finished > IMPORTANCE_RUNS:
        keep = np.random.default_rng(0).choice(n_finished, IMPORTANCE_RUNS, replace=False)
        finished = [finished[i] for i in sorted(keep)]
    distributions = {}
    for p in params:
        if p["kind"] == "cat":
            distributions[p["name"]] = CategoricalDistribution([str(v) for v in p["values"]])
        else:
            values = [float(r["config"][p["name"]]) for r in finished
                      if r["config"].get(p["name"]) is not None]
            distributions[p["name"]] = FloatDistribution(min(values), max(values) or 1.0,
                                                         log=p["log"])
    study = optuna.create_study(direction=goal if goal in ("maximize", "minimize")
                                else "maximize")
    for run in finished:
        values = {}
        for p in params:
            v = _norm(run["config"].get(p["name"]))
            if v is None:
                break
            values[p["name"]] = str(v) if p["kind"] == "cat" else float(v)
        else:
            study.add_trial(optuna.trial.create_trial(params=values,
                                                      distributions=distributions,
                                                      value=run["metric"]))
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    ranked = optuna.importance.get_param_importances(study, evaluator=evaluator)
    note = (f"a fixed random sample of {len(finished)} of the {n_finished} finished runs"
            if n_finished > len(finished) else None)
    return {"method": IMPORTANCE_METHOD, "n_runs": len(study.trials), "note": note,
            "values": [{"name": k, "importance": round(float(v), 4)} for k, v in ranked.items()]}


def best_model(run, data_dir=None):
    """The confusion matrix and the most confident mistakes of the run's model on its test
    set, or ``{"note": why not}``."""
    from .. import evaluation, metrics, modelfile

    if run is None or not run.get("model") or not Path(run["model"]).exists():
        return {"note": "the best run's model file is not there"}
    try:
        net, header = modelfile.load(run["model"])
        ds, X = evaluation.test_data(net, header, model=run["model"], data_dir=data_dir,
                                     download=False)
    except (FastnnError, ValueError, OSError) as exc:
        return {"note": f"no test data for the best model ({exc})"}
    proba = net.predict_proba(X)
    pred = proba.argmax(axis=1)
    y = np.asarray(ds.y_test)
    matrix = metrics.confusion_matrix(y, pred, net.n_classes)
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:MISTAKES]
    images = ds.kind == "images"
    mistakes = [{"index": int(i), "true": int(y[i]), "pred": int(pred[i]),
                 "p": round(float(proba[i, pred[i]]), 4),
                 "pixels": np.asarray(ds.x_test[i]).astype(np.uint8).ravel().tolist()
                 if images else None} for i in order]
    return {"run": run["id"], "class_names": list(ds.class_names),
            "matrix": matrix.tolist(), "n_test": len(y),
            "accuracy": round(float((pred == y).mean()), 6),
            "shape": list(ds.x_test.shape[1:]) if images else None, "mistakes": mistakes}


def build(sources, data_dir=None, live=False, with_model=True):
    """The page's data (a JSON-ready dict) for ``sources`` (see :func:`collect`)."""
    runs = [r for s in sources for r in s.runs]
    if not runs:
        raise FastnnError("no runs to show")
    if len(sources) > 1:  # run ids repeat across sweeps: name each by its sweep too
        for s in sources:
            for r in s.runs:
                r["id"] = f"{s.name}/{r['id']}"
    first = sources[0]
    spec = first.spec if len(sources) == 1 else {}
    params = swept_params(runs, spec)
    metric, goal = first.metric, first.goal
    best_id = first.best if len(sources) == 1 else None  # else: the best over all of them
    if best_id is None:
        ranked = [r for r in runs if r["status"] == "finished" and r["metric"] is not None]
        if ranked:
            pick = max if goal == "maximize" else min
            best_id = pick(ranked, key=lambda r: r["metric"])["id"]
    best = next((r for r in runs if r["id"] == best_id), None)
    running = any(r["status"] == "running" for r in runs) or not all(s.complete for s in sources)
    model = best_model(best, data_dir) if with_model else {"note": "not asked for"}
    for r in runs:  # where the files are is this machine's business, not the page's
        r.pop("model", None)
    return {
        "title": " + ".join(s.name for s in sources),
        "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "live": bool(live and running), "metric": metric, "goal": goal,
        "sources": [s.name for s in sources], "params": params, "runs": runs,
        "best": best_id, "importance": importance(runs, params, goal), "model": model,
    }


def render(data):
    """The self-contained HTML page of ``data`` (a string)."""
    page = (HERE / "page.html").read_text(encoding="utf-8")
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = data["title"].replace("&", "&amp;").replace("<", "&lt;")
    return (page.replace("{{TITLE}}", title)
            .replace("{{STYLE}}", (HERE / "style.css").read_text(encoding="utf-8"))
            .replace("{{PLOTLY}}", _plotly_js().replace("</script", "<\\/script"))
            .replace("{{DATA}}", blob)
            .replace("{{APP}}", (HERE / "app.js").read_text(encoding="utf-8")))


def write(paths, out, data_dir=None, live=False):
    """Read ``paths``, build the page and write it to ``out`` atomically; return the data."""
    from .._atomic import atomic_write_bytes

    data = build(collect(paths), data_dir=data_dir, live=live)
    atomic_write_bytes(out, render(data).encode("utf-8"))
    return data


def watch(paths, out, data_dir=None, interval=2.0, log=None, stop=None):
    """Rewrite ``out`` whenever a results file changes, until every sweep is complete (or
    ``stop()`` says so); the page reloads itself meanwhile."""
    seen = None
    while True:
        stamp = _stamp(paths)
        if stamp != seen:
            seen = stamp
            data = write(paths, out, data_dir, live=True)
            if log:
                log(f"{out}: {len(data['runs'])} runs, "
                    f"{sum(r['status'] == 'running' for r in data['runs'])} running")
            if not data["live"]:
                return data
        if stop is not None and stop():
            return None
        time.sleep(interval)


def _stamp(paths):
    """Modification times of everything a dashboard reads under ``paths``."""
    stamp = []
    for path in map(Path, paths):
        files = [path] if path.is_file() else [*path.glob("*.jsonl"), *path.glob("*.json"),
                                               *path.glob("*/metrics.csv"),
                                               *path.glob("runs/*/metrics.csv")]
        stamp += [(str(f), f.stat().st_mtime_ns) for f in files if f.exists()]
    return sorted(stamp)
