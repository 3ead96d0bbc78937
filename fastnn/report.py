"""``fastnn report RESULTS_DIR``: tables and figures of a sweep, written beside its results.

matplotlib and pandas are imported here only (the ``plot`` extra). The
report reads ``results.jsonl`` of a sweep, its sweep file (for the metric
and goal that choose the best run) and the saved model of its best run. It
trains nothing unless asked: ``seeds`` re-trains the top configurations
with several seeds, ``compare_loss`` the best one with squared-error loss,
``mnist_dir`` three configurations on MNIST.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from . import datasets, evaluation, metrics, modelfile, sweep
from ._atomic import atomic_write_bytes
from .config import TrainConfig
from .errors import FastnnError
from .plots import _plt, plot_confusion, plot_curves, plot_run_order
from .plots import fmt as _fmt

HYPERPARAMETERS = ("epochs", "num_layers", "hidden_size", "weight_decay", "lr", "optimizer",
                   "batch_size", "weight_init", "activation", "loss")
# Settings that describe the data, not the configuration: never a swept column.
_NOT_SWEPT = ("dataset", "seed", "dtype", "val_fraction")


def runs_frame(records, metric="val_accuracy"):
    """One row per finished run: its settings, results and the sweep's ``metric`` (pandas)."""
    _, pd = _plt()
    finished = [r for r in records if r.get("status") == "finished"]
    keys = list(HYPERPARAMETERS) + sorted({k for r in finished for k in r["config"]}
                                          - set(HYPERPARAMETERS) - set(_NOT_SWEPT))
    rows = []
    for r in finished:
        cfg = r["config"]
        rows.append({**{k: cfg.get(k, getattr(TrainConfig(), k, None)) for k in keys},
                     "run_id": r["run_id"], "index": r["index"],
                     "val_accuracy": r["val_accuracy"], "val_loss": r.get("val_loss"),
                     "test_accuracy": r["test_accuracy"], "wall_time": r["wall_time"],
                     "metric": r.get(metric, r["val_accuracy"])})
    df = pd.DataFrame(rows)
    if len(df):
        for col in ("activation", "weight_init", "optimizer", "loss"):
            df[col] = df[col].astype(str).str.lower()
    return df


_RESULT_COLUMNS = ("run_id", "index", "val_accuracy", "val_loss", "test_accuracy", "wall_time",
                   "metric")


def swept_columns(df):
    """The settings that vary across the runs: the classic ones first, then any other."""
    return [c for c in df.columns if c not in _RESULT_COLUMNS
            and df[c].astype(str).nunique() > 1]


def ranked(df, goal="maximize"):
    """The runs best first by the sweep's metric."""
    return df.sort_values("metric", ascending=goal == "minimize", kind="stable")


def effects(df):
    """Per hyperparameter: per-value count/mean/best, and the share of variance it explains.

    The share is eta squared: between-group variance of validation accuracy
    over total variance, grouping runs by the hyperparameter's value.
    """
    total = ((df["val_accuracy"] - df["val_accuracy"].mean()) ** 2).sum()
    out = {}
    for col in swept_columns(df):
        groups = df.groupby(col)["val_accuracy"]
        table = groups.agg(["count", "mean", "max"]).sort_values("mean", ascending=False)
        between = (groups.count() * (groups.mean() - df["val_accuracy"].mean()) ** 2).sum()
        out[col] = {"table": table, "eta2": float(between / total) if total > 0 else 0.0}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["eta2"]))


def observations(df, eff):
    """Short findings, each computed from the numbers in the tables."""
    notes = []
    ranked = list(eff.items())
    if ranked:
        names = ", ".join(f"{k} ({v['eta2']:.0%})" for k, v in ranked[:3])
        notes.append(f"The hyperparameters that explain most of the variance in validation "
                     f"accuracy are {names}.")
    for col, info in ranked[:6]:
        t = info["table"]
        if len(t) < 2:
            continue
        best, worst = t.index[0], t.index[-1]
        notes.append(f"{col}: {_fmt(best)} has the highest mean validation accuracy "
                     f"({t['mean'].iloc[0]:.2%} over {int(t['count'].iloc[0])} runs), "
                     f"{_fmt(worst)} the lowest ({t['mean'].iloc[-1]:.2%}); the best single run "
                     f"with {col}={_fmt(t['max'].idxmax())} reached {t['max'].max():.2%}.")
    low = df[df["val_accuracy"] < 0.5]
    if len(low):
        common = {c: low[c].value_counts().idxmax() for c in swept_columns(df)}
        share = {c: (low[c] == v).mean() for c, v in common.items()}
        top = sorted(share.items(), key=lambda kv: -kv[1])[:2]
        notes.append(f"{len(low)} of {len(df)} runs stayed below 50% validation accuracy; "
                     + " and ".join(f"{share_:.0%} of them had {c}={_fmt(common[c])}"
                                    for c, share_ in top) + ".")
    return notes


# ----------------------------------------------------------------- figures
def plot_parallel(df, path, top=10):
    """Parallel coordinates of the swept settings (:func:`fastnn.plots.plot_parallel`)."""
    from .plots import plot_parallel as plot

    return plot(df, path, swept_columns(df), top)


def confused_pairs(matrix, class_names, top=5):
    pairs = []
    k = len(class_names)
    for i in range(k):
        for j in range(k):
            if i != j and matrix[i, j]:
                pairs.append((int(matrix[i, j]), class_names[i], class_names[j]))
    return sorted(pairs, reverse=True)[:top]


def train_config(values, dataset, data_dir, seed, split=None):
    """Train one configuration; return (net, history, test accuracy, split, seconds)."""
    from .trainer import train

    config = dataclasses.replace(TrainConfig(**{**values, "dataset": dataset}), seed=seed)
    split = split or datasets.prepare(dataset, data_dir=data_dir, seed=0)
    trainer = train(config, split)
    return trainer.net, trainer.history, trainer.evaluate()[1], split, trainer.seconds


def seed_study(df, records, dataset, data_dir, seeds, top=3, log=None, goal="maximize"):
    """Re-train the ``top`` configurations (by the sweep's metric) with seeds 0..seeds-1.

    A single run's accuracy moves by a few tenths of a point with its seed,
    so the sweep's ranking is partly luck; this measures how much. The
    default configuration of ``fastnn train`` is trained the same way as a
    reference. All runs share one validation split (seed 0).

    Returns
    -------
    list of dict
        One per configuration: ``config``, ``label``, ``sweep_val`` (the
        sweep's single run, None for the default), and the lists ``val``
        and ``test`` of final accuracies, one per seed.
    """
    log = log or (lambda message: None)
    by_id = {r["run_id"]: r for r in records}
    split = datasets.prepare(dataset, data_dir=data_dir, seed=0)
    rows = []
    best = ranked(df, goal).head(top)
    entries = [(by_id[rid]["config"], f"sweep #{rank}", val)
               for rank, (rid, val) in enumerate(zip(best["run_id"], best["val_accuracy"]), 1)]
    default = {k: v for k, v in TrainConfig().to_dict().items() if k in HYPERPARAMETERS}
    entries.append((default, "fastnn train default", None))
    for config, label, sweep_val in entries:
        val, test = [], []
        for seed in range(seeds):
            log(f"seed study: {label}, seed {seed}")
            _, hist, test_acc, _, _ = train_config(config, dataset, data_dir, seed, split=split)
            val.append(hist.to_dict()["val_accuracy"][-1])
            test.append(float(test_acc))
        rows.append({"config": config, "label": label, "sweep_val": sweep_val,
                     "val": val, "test": test})
    return rows


def _seed_study_lines(rows, seeds):
    def stat(xs):
        return f"{np.mean(xs):.2%} ± {np.std(xs):.2%}"

    lines = [f"### Over {seeds} seeds", "",
             (f"The sweep's top {len(rows) - 1} configurations and `fastnn train`'s default, each "
              f"re-trained with seeds 0-{seeds - 1} on the same validation split (mean ± "
              "standard deviation; min-max of test accuracy):"), "",
             "| configuration | sweep val acc | val acc | test acc | test min-max |",
             "|---|---|---|---|---|"]
    for r in rows:
        sweep_val = "" if r["sweep_val"] is None else f"{r['sweep_val']:.2%}"
        lines.append(f"| {r['label']}: {_short(r['config'])} | {sweep_val} | {stat(r['val'])} | "
                     f"{stat(r['test'])} | {min(r['test']):.2%}-{max(r['test']):.2%} |")
    best = max(rows, key=lambda r: np.mean(r["val"]))
    lines += ["", (f"By mean validation accuracy over the seeds the best is {best['label']} "
                   f"(test {np.mean(best['test']):.2%} on average)."), ""]
    return lines


def _short(values):
    """``key=value, ...`` for the settings that describe a configuration."""
    keys = [k for k in HYPERPARAMETERS if k in values]
    keys += sorted(set(values) - set(keys) - {"dataset", "seed"})
    return ", ".join(f"{k}={_fmt(values[k])}" for k in keys)


def choose_mnist_configs(df, records, stronger=None):
    """Three configurations for MNIST, each with the reason it was chosen.

    The best run, the best run with another optimizer/activation pair, and
    either the best run of ``stronger`` (records of a sweep outside the
    classic space, when given) or else the best run with the smallest
    non-zero weight decay.
    """
    by_id = {r["run_id"]: r for r in records}
    ranked = df.sort_values("val_accuracy", ascending=False)
    picks = []
    best = ranked.iloc[0]
    picks.append((by_id[best["run_id"]]["config"],
                  f"the best Fashion-MNIST configuration (validation {best['val_accuracy']:.2%})"))
    seen = {(best["optimizer"], best["activation"])}
    for _, row in ranked.iloc[1:].iterrows():
        key = (row["optimizer"], row["activation"])
        if key in seen:
            continue
        seen.add(key)
        picks.append((by_id[row["run_id"]]["config"],
                      (f"the best run with a different optimizer/activation pair "
                      f"({row['optimizer']}/{row['activation']}, validation "
                      f"{row['val_accuracy']:.2%}), to see whether the ranking carries over")))
        if len(picks) == 2:
            break
    chosen = {json.dumps(c, sort_keys=True) for c, _ in picks}
    if stronger:
        strong = sweep.best_run(stronger)
        picks.append((strong["config"], (
            f"the best run of the sweep outside the classic space (validation "
            f"{strong['val_accuracy']:.2%}, Fashion-MNIST test {strong['test_accuracy']:.2%}): "
            "wider layers regularised by dropout did best on Fashion-MNIST, and the "
            "smaller MNIST training set may need regularisation more")))
        chosen.add(json.dumps(strong["config"], sort_keys=True))
        decayed = ranked[:0]  # the stronger run takes the regularisation pick
    else:
        decayed = ranked[ranked["weight_decay"].astype(float) > 0]
        decayed = decayed[decayed["weight_decay"].astype(float) <= decayed["weight_decay"]
                          .astype(float).min()] if len(decayed) else decayed
    for _, row in decayed.iterrows():
        config = by_id[row["run_id"]]["config"]
        if json.dumps(config, sort_keys=True) not in chosen:
            picks.append((config, (f"the best run with the smallest non-zero weight decay "
                                  f"({row['weight_decay']}, validation "
                                  f"{row['val_accuracy']:.2%}): the MNIST training set is "
                                  "smaller, so regularisation may matter more there")))
            chosen.add(json.dumps(config, sort_keys=True))
            break
    for _, row in ranked.iterrows():  # fill up from the top if the sweep was tiny
        if len(picks) >= 3:
            break
        config = by_id[row["run_id"]]["config"]
        if json.dumps(config, sort_keys=True) not in chosen:
            picks.append((config, f"the next best run (validation {row['val_accuracy']:.2%})"))
            chosen.add(json.dumps(config, sort_keys=True))
    return picks[:3]


# ------------------------------------------------------------------- main
def write_report(results_dir, out_dir=None, data_dir=None, mnist_dir=False, log=None,
                 seeds=0, stronger=None, compare_loss=False):
    """Write ``out_dir/sweep.md`` and its figures from a sweep's results.

    The best run and the ranking follow the sweep's own metric and goal
    (from its ``sweep.json``; validation accuracy, maximised, when there is
    none); the tables show every setting the runs vary. ``out_dir``
    defaults to ``RESULTS_DIR/report``. Nothing is trained unless asked:
    ``seeds`` > 0 adds the seed study (:func:`seed_study`) to section 1,
    ``compare_loss`` section 7 (the best configuration with squared error),
    ``mnist_dir`` (a data directory, or None to search the usual places)
    section 8, three configurations on MNIST. ``log``, if given, is called
    with a line of progress, and with the expected time before any training
    (the library itself prints nothing). ``stronger`` is the results
    directory of a sweep outside the classic search space: it gets section
    9, and its best run becomes one of the MNIST configurations.
    """
    log = log or (lambda message: None)
    _plt()  # fail early, before any training, if matplotlib or pandas is missing
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir / "report"
    records, spec_info, metric, goal, df, dataset = _read_sweep(results_dir)
    strong_records = _read_stronger(stronger, results_dir, dataset)
    _announce_training(df, seeds, compare_loss, mnist_dir is not False, log)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    lines = _header_lines(results_dir, records, df, dataset, spec_info)

    # 1. top runs
    top = ranked(df, goal).head(10)
    lines += _top_lines(top, df, metric, goal)
    best_rec = sweep.best_run(records, metric, goal)
    lines += ["", (f"Best configuration by {metric} (run {best_rec['run_id']}): "
              f"`{json.dumps(best_rec['config'])}`."), ""]
    if seeds:
        lines += _seed_study_lines(seed_study(df, records, dataset, data_dir, seeds, log=log,
                                              goal=goal), seeds)

    # 2. parallel coordinates
    plot_parallel(df, fig_dir / "parallel_coordinates.png")
    lines += ["## 2. Hyperparameters against validation accuracy", "",
              "![parallel coordinates](figures/parallel_coordinates.png)", ""]

    # 3. effects
    lines += _effects_lines(df)

    # 4. run order
    plot_run_order(df, fig_dir / "val_accuracy_by_run.png")
    lines += ["## 4. Validation accuracy in run order", "",
              "![validation accuracy by run](figures/val_accuracy_by_run.png)", ""]

    # 5. confusion matrix of the best model
    section, ds = _confusion_section(results_dir, best_rec, dataset, data_dir, fig_dir, log)
    lines += section

    # 6. learning curves of the best runs
    by_id = {r["run_id"]: r for r in records}
    curves = [(f"#{i + 1} {rid}", by_id[rid]["history"])
              for i, rid in enumerate(top["run_id"].head(5))]
    plot_curves(curves, fig_dir / "learning_curves.png", "Learning curves of the five best runs")
    lines += ["## 6. Learning curves of the best runs", "",
              "![learning curves](figures/learning_curves.png)", ""]

    # 7. cross-entropy against squared error at the best configuration
    if compare_loss:
        lines += _loss_section(best_rec, dataset, data_dir, fig_dir, log)

    # 8. MNIST
    if mnist_dir is not False:
        n_sweep_train = len(ds.x_train) - math.ceil(0.1 * len(ds.x_train))
        lines += _mnist_section(df, records, mnist_dir if mnist_dir else data_dir, log,
                                n_sweep_train, strong_records)

    # 9. outside the classic search space
    if strong_records:
        lines += _stronger_section(stronger, strong_records)
    atomic_write_bytes(out_dir / "sweep.md", ("\n".join(lines) + "\n").encode())
    return out_dir / "sweep.md"


def _header_lines(results_dir, records, df, dataset, spec_info):
    """The report's title, run counts and the sweep file."""
    failed = [r for r in records if r.get("status") != "finished"]
    lines = [f"# Sweep report: {results_dir}", "",
             (f"{len(records)} runs ({len(df)} finished, {len(failed)} failed or diverged) on "
              f"{dataset}; total training time {df['wall_time'].sum() / 3600:.2f} worker-hours. "
              f"Generated by `fastnn report {results_dir}`."), ""]
    if spec_info.get("spec"):
        import yaml

        lines += ["Sweep file (without run_cap):", "", "```yaml",
                  yaml.safe_dump(spec_info["spec"], default_flow_style=None,
                                 sort_keys=False).strip(), "```", ""]
    return lines


def _read_sweep(results_dir):
    """(records, sweep.json, metric, goal, finished-runs frame, data set) of a results dir."""
    read = sweep.results.Sweep(results_dir)  # the dashboard reads it the same way
    records, metric, goal = read.records, read.metric, read.goal
    if not records:
        raise FastnnError(f"{results_dir}: no results.jsonl with runs in it")
    spec_info = read.info
    df = runs_frame(records, metric)
    if not len(df):
        raise FastnnError(f"{results_dir}: no finished runs to report on")
    dataset = records[0]["config"].get("dataset") or "fashion_mnist"
    return records, spec_info, metric, goal, df, dataset


def _read_stronger(stronger, results_dir, dataset):
    """The finished runs of the ``stronger`` sweep (None without one); same data set."""
    if stronger is None:
        return None
    strong_records = [r for r in sweep.read_results(stronger) if r.get("status") == "finished"]
    if not strong_records:
        raise FastnnError(f"{stronger}: no results.jsonl with finished runs in it")
    other = strong_records[0]["config"].get("dataset") or "fashion_mnist"
    if other != dataset:
        raise FastnnError(f"{stronger}: its runs are on {other}, those of {results_dir} "
                          f"on {dataset}")
    return strong_records


def _top_lines(top, df, metric, goal):
    """Section 1's table: the ten best runs with every swept setting."""
    cols = swept_columns(df)
    extra = [] if metric == "val_accuracy" else [metric]
    lines = ["## 1. Top runs", "", f"Ranked by the sweep's metric, {metric} ({goal}).", "",
             "| rank | " + " | ".join(cols + extra) + " | val acc | test acc | time |",
             "|" + "---|" * (len(cols) + len(extra) + 4)]
    for rank, (_, row) in enumerate(top.iterrows(), 1):
        lines.append(f"| {rank} | " + " | ".join(_fmt(row[c]) for c in cols)
                     + "".join(f" | {row['metric']:.4g}" for _ in extra)
                     + f" | {row['val_accuracy']:.2%} | {row['test_accuracy']:.2%} | "
                     f"{row['wall_time']:.1f} s |")
    return lines


def _effects_lines(df):
    """Section 3: each setting's share of the variance and its mean/best per value."""
    eff = effects(df)
    lines = ["## 3. The effect of each hyperparameter", "",
             ("Share of the variance of validation accuracy explained by each hyperparameter "
              "(eta squared), and mean / best validation accuracy per value:"), ""]
    for col, info in eff.items():
        t = info["table"]
        lines.append(f"- **{col}** ({info['eta2']:.0%} of variance): " + "; ".join(
            f"{_fmt(idx)}: mean {r['mean']:.2%}, best {r['max']:.2%} (n={int(r['count'])})"
            for idx, r in t.iterrows()))
    return lines + ["", "Observations:", ""] + [f"- {n}" for n in observations(df, eff)] + [""]


def _confusion_section(results_dir, best_rec, dataset, data_dir, fig_dir, log):
    """Section 5 (the best model's confusion matrix) and the test data set it used."""
    model_path = sweep.results.model_path(results_dir, best_rec["run_id"])
    header = None
    if model_path.exists():
        net, header = modelfile.load(model_path)
        provenance = f"The model of run {best_rec['run_id']}, from `{model_path}`."
    else:
        log(f"retraining the best run {best_rec['run_id']} (its model file is gone)")
        net = train_config(best_rec["config"], dataset, data_dir, best_rec["seed"])[0]
        provenance = (f"`{model_path}` is gone, so run {best_rec['run_id']} was trained again "
                      f"here with its seed; with other BLAS threads or another BLAS kernel "
                      f"than the sweep's worker had, its sums round differently and the "
                      f"accuracy differs from the sweep's {best_rec['test_accuracy']:.2%}.")
    if header is not None:  # the model's own test part, read as its training read it
        ds, X_test = evaluation.test_data(net, header, model=str(model_path), data_dir=data_dir)
    else:
        ds = datasets.load(dataset, data_dir=data_dir)
        X_test = datasets.preprocess(ds.x_test, net.dtype.name)
    pred = net.predict(X_test)
    matrix = metrics.confusion_matrix(ds.y_test, pred, len(ds.class_names))
    acc = metrics.accuracy(ds.y_test, pred)
    plot_confusion(matrix, ds.class_names, fig_dir / "confusion_matrix.png",
                   f"Best model on the {len(X_test):,} test images (accuracy {acc:.2%})")
    lines = ["## 5. Confusion matrix of the best model", "",
              f"{provenance} Test accuracy {acc:.2%}. Counts and row-normalised rates:", "",
              "![confusion matrix](figures/confusion_matrix.png)", "",
              "Most confused pairs (true -> predicted, count):", ""]
    lines += [f"- {a} -> {b}: {n} ({n / max(matrix[ds.class_names.index(a)].sum(), 1):.1%} "
              f"of {a})" for n, a, b in confused_pairs(matrix, list(ds.class_names))]
    lines.append("")
    return lines, ds



def _announce_training(df, seeds, compare_loss, mnist, log):
    """Tell, before any training, what will be trained and about how long it takes."""
    per_run = float(df["wall_time"].median())
    runs = 4 * seeds + 2 * compare_loss  # top 3 + the default, per seed; CE and MSE
    parts = [f"{4 * seeds} seed-study runs"] * bool(seeds) + ["2 loss runs"] * compare_loss
    if mnist:
        parts.append("3 MNIST runs (time depends on the MNIST training set)")
    if parts:
        log(f"training {', '.join(parts)}: about {runs * per_run / 60:.1f} minutes on one "
            f"worker from the sweep's median run time ({per_run:.1f} s)"
            + (", plus the MNIST runs" if mnist else ""))


def _loss_section(best_rec, dataset, data_dir, fig_dir, log):
    log("training the best configuration with cross-entropy and squared error")
    lines = []
    pair = []
    for loss in ("cross_entropy", "mean_squared_error"):
        values = {**best_rec["config"], "loss": loss}
        _, hist, test_acc, _, secs = train_config(values, dataset, data_dir, best_rec["seed"])
        pair.append((loss, hist.to_dict(), test_acc, secs))
    plot_curves([(p[0], p[1]) for p in pair], fig_dir / "ce_vs_mse.png",
                "Cross-entropy against squared error at the best configuration")
    lines += ["## 7. Cross-entropy against squared error", "",
              ("Same configuration, seed and validation split, only the loss differs (trained "
              "here with all BLAS threads, so the cross-entropy run need not repeat the "
              "sweep's single-threaded run bit for bit):"), "",
              "| loss | final val acc | test acc | time |", "|---|---|---|---|"]
    lines += [f"| {p[0]} | {p[1]['val_accuracy'][-1]:.2%} | {p[2]:.2%} | {p[3]:.1f} s |"
              for p in pair]
    lines += ["", "![cross-entropy vs squared error](figures/ce_vs_mse.png)", ""]
    return lines


def _stronger_section(results_dir, records):
    sdf = runs_frame(records).sort_values("val_accuracy", ascending=False)
    keys = sorted({k for r in records for k in r["config"]} - {"dataset"})
    varied = [k for k in keys if len({json.dumps(r["config"].get(k)) for r in records}) > 1]
    fixed = {k: records[0]["config"][k] for k in keys if k not in varied}
    by_id = {r["run_id"]: r for r in records}
    lines = ["## 9. Outside the classic search space", "",
             (f"{len(records)} runs of the sweep in `{results_dir}`, reported apart from the "
              f"classic search space above. Fixed: {_short(fixed)}."), "",
             "| rank | " + " | ".join(varied) + " | val acc | test acc | time |",
             "|" + "---|" * (len(varied) + 4)]
    for rank, (_, row) in enumerate(sdf.iterrows(), 1):
        config = by_id[row["run_id"]]["config"]
        lines.append(f"| {rank} | " + " | ".join(str(config.get(k)) for k in varied)
                     + f" | {row['val_accuracy']:.2%} | {row['test_accuracy']:.2%} | "
                     f"{row['wall_time']:.1f} s |")
    lines.append("")
    return lines


def _mnist_section(df, records, data_dir, log, n_sweep_train, stronger=None):
    try:
        ds = datasets.load("mnist", data_dir=data_dir)
    except FastnnError as exc:
        return ["## 8. MNIST", "", f"Skipped: {exc}", ""]
    split = datasets.prepare("mnist", data_dir=data_dir, seed=0)
    subset = len(ds.x_train) < 60000
    # The findings hold for a number of optimizer steps: keep it, so a smaller
    # training set gets proportionally more epochs (at most 10x).
    scale = min(10, max(1, round(n_sweep_train / len(split.X_train))))
    lines = ["## 8. Do the findings carry over to MNIST?", "",
             f"Training images: {len(ds.x_train):,}"
             + (" (a subset: this machine has only a 10,000-image MNIST training set; with "
                "the full 60,000 the same command uses them)" if subset else "")
             + f", {len(split.X_val):,} of them held out for validation; "
             f"tested on the official {len(ds.x_test):,}-image MNIST test set. Each "
             f"configuration keeps its settings but trains {scale}x the epochs, so that it "
             f"takes as many optimizer steps on {len(split.X_train):,} images as it did on "
             f"{n_sweep_train:,}.", "",
             "| configuration | why | epochs | MNIST test acc | time |", "|---|---|---|---|---|"]
    for values, why in choose_mnist_configs(df, records, stronger):
        values = {**values, "dataset": "mnist",
                  "epochs": int(values.get("epochs", TrainConfig.epochs)) * scale}
        log(f"training on MNIST: {values}")
        _, _, test_acc, _, secs = train_config(values, "mnist", data_dir, 0, split=split)
        short = _short({k: v for k, v in values.items() if k != "epochs"})
        lines.append(f"| {short} | {why} | {values['epochs']} | {test_acc:.2%} | "
                     f"{secs:.1f} s |")
    lines.append("")
    return lines
