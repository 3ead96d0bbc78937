"""The accuracy study (issue 13): the recipe over seeds, its ablation, MNIST, the confusion matrix.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.accuracy \\
        --data-dir ../shared/data

trains every run of the study that ``reports/accuracy.jsonl`` does not hold
yet (so an interrupted study resumes), then writes ``reports/accuracy.md``
and its figure from the records. Each run is what ``fastnn train`` does with
the same settings and ``--seed``: the validation split is drawn with the
run's seed, the model kept is the epoch of best validation accuracy
(``--keep-best``), and test data enters no decision. The recipe's seeds run
one at a time on the whole thread budget (their wall time is the recipe's
training time); the other runs go two at a time on one thread each
(``--parallel 2``), which trains as much per minute on two cores.
``--only recipe,mnist`` restricts what is trained; ``--report-only``
trains nothing.
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from fastnn import TrainConfig, datasets
from fastnn._atomic import atomic_write_bytes

SEEDS = (0, 1, 2)

# The recipe: the configuration with the best mean validation accuracy over
# seeds 0-2 of everything this study trained (see reports/accuracy.md). It is
# the best recipe before this study too (reports/sweep.md, section 9), now with
# the epoch of best validation accuracy kept.
RECIPE = {"num_layers": 3, "hidden_size": 512, "dropout": 0.1, "optimizer": "adam", "lr": 1e-3,
          "batch_size": 128, "epochs": 30, "lr_schedule": "cosine", "warmup_epochs": 1,
          "weight_init": "xavier", "activation": "relu", "keep_best": True}
# The best run of the search (sweeps/fashion_mnist_accuracy.yaml), run over
# seeds 0-2 as the recipe is: it lost to the recipe on mean validation accuracy.
SEARCH_BEST = {
    "num_layers": 3, "hidden_size": 1024, "dropout": 0.1, "optimizer": "adam", "lr": 2e-3,
    "weight_decay": 5e-5, "batch_size": 128, "epochs": 40, "lr_schedule": "cosine",
    "warmup_epochs": 2, "weight_init": "xavier", "activation": "relu", "label_smoothing": 0.1,
    "augment_flip": True, "keep_best": True,
}
# Ablation rows: the recipe with one setting changed; "no ..." removes a piece
# of the recipe, "+ ..." adds one of the new options to it.
ABLATIONS = {
    "no dropout": {"dropout": 0.0},
    "no cosine schedule": {"lr_schedule": "constant", "warmup_epochs": 0},
    "+ label smoothing 0.1": {"label_smoothing": 0.1},
    "+ flips": {"augment_flip": True},
    "+ shifts of 1 pixel": {"augment_shift": 1},
}
# MNIST from its 10,000-image subset: shifts of up to 2 pixels (worth 1.6
# points on MNIST from 9,000 images in the measurements, while on
# Fashion-MNIST they gained nothing here); no flips (a mirrored digit is
# another glyph, or none); 6x the epochs, so that 9,000 images get as many
# steps as 54,000 do in the recipe.
MNIST_CHANGES = {"augment_shift": 2, "augment_flip": False, "epochs": RECIPE["epochs"] * 6}
# The search's best carried to MNIST the same way.
SEARCH_MNIST = {**SEARCH_BEST, "augment_shift": 2, "augment_flip": False,
                "epochs": SEARCH_BEST["epochs"] * 6}
# The classic study's best configuration (reports/sweep.md, section 5).
CLASSIC = {"num_layers": 3, "hidden_size": 128, "optimizer": "adam", "lr": 1e-3,
           "batch_size": 32, "epochs": 10, "weight_init": "xavier", "activation": "relu"}

FLAG = {  # TrainConfig field -> fastnn train flag
    "num_layers": "-nhl", "hidden_size": "-sz", "dropout": "--dropout", "optimizer": "-o",
    "lr": "-lr", "batch_size": "-b", "epochs": "-e", "lr_schedule": "--lr-schedule",
    "warmup_epochs": "--warmup-epochs", "weight_init": "-w_i", "activation": "-a",
    "label_smoothing": "--label-smoothing", "augment_shift": "--augment-shift",
    "augment_flip": "--augment-flip", "keep_best": "--keep-best", "weight_decay": "-w_d",
}


def command(values, dataset, seed):
    """The ``fastnn train`` command line of a run."""
    parts = ["fastnn train"] + ([f"-d {dataset}"] if dataset != "fashion_mnist" else [])
    for key, value in values.items():
        if isinstance(value, bool):
            if value:
                parts.append(FLAG[key])
        elif value != getattr(TrainConfig, key):
            parts.append(f"{FLAG[key]} {value:g}" if isinstance(value, float)
                         else f"{FLAG[key]} {value}")
    parts.append(f"--seed {seed}")
    return " ".join(parts)


def planned():
    """Every run of the study, most wanted first: (key, group, dataset, values, seed)."""
    runs = [(f"recipe/{s}", "recipe", "fashion_mnist", RECIPE, s) for s in SEEDS]
    runs += [(f"mnist/{s}", "mnist", "mnist", {**RECIPE, **MNIST_CHANGES}, s) for s in SEEDS]
    runs.append(("classic/0", "classic", "fashion_mnist", CLASSIC, 0))
    for name, change in ABLATIONS.items():
        runs += [(f"{name}/{s}", "ablation", "fashion_mnist", {**RECIPE, **change}, s)
                 for s in SEEDS]
    runs += [(f"search best/{s}", "search", "fashion_mnist", SEARCH_BEST, s) for s in SEEDS]
    runs += [(f"search best mnist/{s}", "search", "mnist", SEARCH_MNIST, s) for s in SEEDS]
    return runs


def train_one(key, dataset, values, seed, data_dir, threads, model_dir):
    """Train one run as ``fastnn train`` would; return its record (and save its model)."""
    from fastnn import metrics, modelfile, train

    os.environ["FASTNN_NUM_THREADS"] = str(threads)
    config = TrainConfig(**{**values, "dataset": dataset, "seed": seed}).validated()
    split = datasets.prepare(dataset, data_dir=data_dir, seed=seed)
    start = time.perf_counter()
    net, _, history = train.train_config(config, split, threads=threads)
    wall = time.perf_counter() - start
    val_loss, val_acc = net.evaluate(split.X_val, split.y_val)
    test_loss, test_acc = net.evaluate(split.X_test, split.y_test)
    predicted = net.predict(split.X_test)
    matrix = metrics.confusion_matrix(split.y_test, predicted, net.n_classes)
    path = Path(model_dir) / (key.replace("/", "-").replace(" ", "_") + ".npz")
    modelfile.save(net, path, class_names=split.class_names,
                   metadata={"config": config.to_dict(), "test_accuracy": test_acc})
    best_epoch = int(np.argmax(history["val_accuracy"])) + 1
    return {"key": key, "dataset": dataset, "seed": seed, "values": values,
            "threads": threads, "wall_time": wall, "val_accuracy": val_acc,
            "test_accuracy": test_acc, "test_loss": test_loss, "val_loss": val_loss,
            "best_epoch": best_epoch, "epochs": len(history.epoch),
            "confusion": matrix.tolist(), "class_names": list(split.class_names),
            "command": command(values, dataset, seed)}


def read_records(path):
    records = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                records[record["key"]] = record
    return records


def append_record(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_study(data_dir, out_dir, only, parallel, budget):
    out_dir = Path(out_dir)
    path = out_dir / "accuracy.jsonl"
    model_dir = out_dir / "accuracy_models"
    model_dir.mkdir(parents=True, exist_ok=True)
    done = read_records(path)
    todo = [r for r in planned() if r[0] not in done and (not only or r[1] in only)]
    alone = [r for r in todo if r[1] == "recipe"]
    paired = [r for r in todo if r[1] != "recipe"]
    for key, _, dataset, values, seed in alone:
        print(f"training {key} on {budget} threads", flush=True)
        record = train_one(key, dataset, values, seed, data_dir, budget, model_dir)
        append_record(path, record)
        print(f"  {key}: val {record['val_accuracy']:.4f} test {record['test_accuracy']:.4f} "
              f"({record['wall_time']:.0f} s)", flush=True)
    if paired:
        with ProcessPoolExecutor(parallel) as pool:
            futures = {pool.submit(train_one, key, dataset, values, seed, data_dir,
                                   max(1, budget // parallel), model_dir): key
                       for key, _, dataset, values, seed in paired}
            for future in futures:
                record = future.result()
                append_record(path, record)
                print(f"  {record['key']}: val {record['val_accuracy']:.4f} "
                      f"test {record['test_accuracy']:.4f} ({record['wall_time']:.0f} s)",
                      flush=True)


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def _pct(x):
    return f"{100 * x:.2f}%"


def _rows(records, name):
    return [records[f"{name}/{s}"] for s in SEEDS if f"{name}/{s}" in records]


def _seed_table(rows, with_epochs=True):
    lines = ["| seed | validation | test | best epoch | training time |",
             "|---|---|---|---|---|"]
    for r in rows:
        threads = f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"
        lines.append(f"| {r['seed']} | {_pct(r['val_accuracy'])} | {_pct(r['test_accuracy'])} | "
                     f"{r['best_epoch']}/{r['epochs']} | {r['wall_time'] / 60:.1f} min "
                     f"({threads}) |")
    if rows:
        lines.append(f"| mean | {_pct(_mean([r['val_accuracy'] for r in rows]))} | "
                     f"{_pct(_mean([r['test_accuracy'] for r in rows]))} | | "
                     f"{_mean([r['wall_time'] for r in rows]) / 60:.1f} min |")
    return lines


def write_report(out_dir, argv_line):
    out_dir = Path(out_dir)
    records = read_records(out_dir / "accuracy.jsonl")
    lines = ["# Accuracy beyond the classic study", ""]
    recipe = _rows(records, "recipe")
    lines += ["The Fashion-MNIST recipe (seed 0; seeds 1 and 2 below):", "", "```sh",
              command(RECIPE, "fashion_mnist", 0), "```", "",
              ("The MNIST recipe, trained on the 10,000-image subset in `../shared/data/mnist` "
               "(1,000 of them held out for validation):"), "", "```sh",
              command({**RECIPE, **MNIST_CHANGES}, "mnist", 0), "```", "",
              (f"Reproduce every number here: `{argv_line}` (it resumes from "
               "`reports/accuracy.jsonl`; delete that file to train everything again). "
               "Runs other than the recipe's seeds trained two at a time on one thread each."),
              ""]
    lines += ["## The recipe over seeds (Fashion-MNIST)", "",
              ("Validation: the 6,000 training images held out with the run's seed; the weights "
               "kept are those of the epoch of best validation accuracy. Test: the official "
               "10,000 test images, used for nothing but these tables."), "",
              *_seed_table(recipe)]
    lines += ["", "## Ablation", "",
              ("Mean over seeds 0-2, each run as the recipe's with only the named setting "
               "changed: `no ...` removes a piece of the recipe, `+ ...` adds one of the new "
               "options to it. A piece earns its place when it raises the mean validation "
               "accuracy. `search's best` is the best run of the search (below) trained over "
               "the same seeds: `" + command(SEARCH_BEST, "fashion_mnist", 0) + "`."),
              "", "| run | seeds | mean validation | mean test | validation against the recipe |",
              "|---|---|---|---|---|"]
    base = _mean([r["val_accuracy"] for r in recipe])
    lines.append(f"| recipe | {len(recipe)} | {_pct(base)} | "
                 f"{_pct(_mean([r['test_accuracy'] for r in recipe]))} | |")
    for name, key in [*((n, n) for n in ABLATIONS), ("search's best", "search best")]:
        rows = _rows(records, key)
        if not rows:
            continue
        val = _mean([r["val_accuracy"] for r in rows])
        lines.append(f"| {name} | {len(rows)} | {_pct(val)} | "
                     f"{_pct(_mean([r['test_accuracy'] for r in rows]))} | "
                     f"{100 * (val - base):+.2f} points |")
    lines += ["", "## MNIST carry-over", "",
              ("Changed for MNIST: shifts of up to "
               f"{MNIST_CHANGES['augment_shift']} pixels (in the issue's measurements shifts "
               "were worth 1.6 points on MNIST from 9,000 images, while on Fashion-MNIST they "
               "gained nothing, as in the ablation here); no flips (a mirrored digit is another "
               f"glyph, or none); and {MNIST_CHANGES['epochs']} epochs instead of "
               f"{RECIPE['epochs']}, so that the 9,000 training images get as many optimizer "
               "steps as Fashion-MNIST's 54,000."), "", "The recipe:", "",
              *_seed_table(_rows(records, "mnist"))]
    search_mnist = _rows(records, "search best mnist")
    if search_mnist:
        lines += ["", "The search's best, changed the same way (`"
                  + command(SEARCH_MNIST, "mnist", 0) + "`):", "", *_seed_table(search_mnist)]
    classic = records.get("classic/0")
    if recipe and classic:
        best = max(recipe, key=lambda r: r["val_accuracy"])
        lines += _confusion_section(best, classic, out_dir)
    lines += _search_section(out_dir / SEARCH)
    notes = out_dir / "accuracy_notes.md"  # what the numbers say, written by hand
    if notes.is_file():
        lines += ["", notes.read_text().rstrip()]
    atomic_write_bytes(out_dir / "accuracy.md", ("\n".join(lines) + "\n").encode())


SEARCH = "sweep_fashion_mnist_accuracy"  # results of sweeps/fashion_mnist_accuracy.yaml
SWEPT = ("num_layers", "hidden_size", "dropout", "label_smoothing", "augment_shift",
         "augment_flip", "lr", "weight_decay")


def _search_section(results_dir):
    from fastnn import sweep

    if not (results_dir / sweep.RESULTS_FILE).is_file():
        return []
    records = sweep.read_results(results_dir)
    minutes = sum(r.get("wall_time", 0.0) for r in records) / 60
    finished = [r for r in records if r.get("status") == "finished"]
    stopped = [r for r in records if r.get("status") == "stopped"]
    lines = ["", "## The search", "",
             (f"`fastnn sweep sweeps/fashion_mnist_accuracy.yaml --workers 2` (local bayes, "
             f"Optuna's TPE, with hyperband early termination; results in "
             f"`reports/{results_dir.name}/`): {len(records)} runs, {len(finished)} trained to "
             f"the end and {len(stopped)} stopped by hyperband, "
             f"{minutes:.0f} worker-minutes (each worker on one thread). Best validation "
             "accuracy first:"), "",
             "| run | " + " | ".join(SWEPT) + " | epochs | best validation | test |",
             "|---|" + "---|" * (len(SWEPT) + 3)]
    def best_val(record):
        return max(record.get("history", {}).get("val_accuracy", [0.0]))

    for r in sorted(records, key=best_val, reverse=True)[:8]:
        config = r["config"]
        cells = [str(config.get(k)) for k in SWEPT]
        epochs = len(r.get("history", {}).get("val_accuracy", []))
        test = r.get("test_accuracy")
        lines.append(f"| {r['index']} | " + " | ".join(cells) +
                     f" | {epochs} | {_pct(best_val(r))} | "
                     f"{_pct(test) if test is not None else '-'} |")
    return lines


def _confusion_section(best, classic, out_dir):
    from fastnn import report

    names = best["class_names"]
    new, old = np.array(best["confusion"]), np.array(classic["confusion"])
    figures = out_dir / "figures"
    figures.mkdir(exist_ok=True)
    report.plot_confusion(new, names, figures / "accuracy_confusion.png",
                          f"recipe, seed {best['seed']} (test {_pct(best['test_accuracy'])})")
    lines = ["", "## Confusion matrix: the recipe against the classic study's best", "",
             (f"The recipe's run with the best validation accuracy (seed {best['seed']}) "
             f"against the classic study's best configuration retrained here "
             f"(`{classic['command']}`, test {_pct(classic['test_accuracy'])}). Per class: "
             "share of its test images classified correctly."), "",
             "![confusion matrix](figures/accuracy_confusion.png)", "",
             "| class | classic | recipe | change |", "|---|---|---|---|"]
    for i, name in enumerate(names):
        a, b = old[i, i] / old[i].sum(), new[i, i] / new[i].sum()
        lines.append(f"| {name} | {_pct(a)} | {_pct(b)} | {100 * (b - a):+.1f} points |")
    lines += ["", ("Most confused pairs of the recipe (true -> predicted, count; classic in "
              "brackets):"), ""]
    for count, true, pred in report.confused_pairs(new, names):
        i, j = names.index(true), names.index(pred)
        lines.append(f"- {true} -> {pred}: {count} ({old[i, j]})")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out-dir", default="reports")
    parser.add_argument("--only", default="", help="comma-separated groups: recipe, ablation, "
                        "mnist, classic")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    from fastnn import _threads

    budget = _threads.resolve(args.threads)
    if not args.report_only:
        only = {g for g in args.only.split(",") if g}
        run_study(args.data_dir, args.out_dir, only, args.parallel, budget)
    line = ("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.accuracy "
            "--data-dir ../shared/data")
    write_report(args.out_dir, line)
    print(f"wrote {Path(args.out_dir) / 'accuracy.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
