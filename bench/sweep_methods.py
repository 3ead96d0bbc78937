"""Compare sweep methods: best validation accuracy so far against runs and worker-minutes.

    .venv/bin/python -m bench.sweep_methods \\
        random=reports/sweep_fashion_mnist bayes=reports/sweep_fashion_mnist_bayes \\
        "bayes + hyperband=reports/sweep_fashion_mnist_bayes_hyperband" \
        --notes reports/sweep_methods_notes.md

reads the ``results.jsonl`` of finished sweeps (nothing is trained) and
writes ``reports/sweep_methods.md`` and ``reports/figures/sweep_methods.png``.
Runs are taken in the order they were recorded; worker-minutes add up each
run's wall time, so they count compute, whatever the number of workers.
"""

import argparse
import sys
from pathlib import Path

from fastnn import sweep
from fastnn._atomic import atomic_open, atomic_write_bytes


def curve(results_dir, metric="val_accuracy"):
    """(runs, worker-minutes, best so far, records) in the order the runs were recorded."""
    records = sweep.read_results(results_dir)
    best, runs, minutes, bests = float("-inf"), [], [], []
    spent = 0.0
    for i, record in enumerate(records, 1):
        spent += record.get("wall_time", 0.0) / 60
        value = record.get(metric)
        if record.get("status") == "finished" and value is not None:
            best = max(best, value)
        runs.append(i)
        minutes.append(spent)
        bests.append(best)
    return runs, minutes, bests, records


def first_reaching(runs, minutes, bests, target):
    for n, m, b in zip(runs, minutes, bests):
        if b >= target:
            return n, m
    return None, None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", metavar="NAME=DIR")
    parser.add_argument("--target-from", default=None, metavar="NAME",
                        help="the sweep whose best validation accuracy is the target "
                             "(default: the first)")
    parser.add_argument("--out", default="reports")
    parser.add_argument("--notes", default=None, metavar="FILE",
                        help="a Markdown file appended to the report (how the sweeps were run)")
    args = parser.parse_args(argv)
    sweeps = {}
    for item in args.sweeps:
        name, _, where = item.partition("=")
        if not where or not (Path(where) / sweep.RESULTS_FILE).is_file():
            parser.error(f"{item}: expected NAME=DIR with DIR/{sweep.RESULTS_FILE}")
        sweeps[name] = curve(where)
    target_name = args.target_from or next(iter(sweeps))
    target = sweeps[target_name][2][-1]
    out = Path(args.out)
    command = " ".join(f'"{a}"' if " " in a else a for a in args.sweeps)
    if args.notes:
        command += f" --notes {args.notes}"
    lines = [
        "# Sweep methods on the classic Fashion-MNIST space",
        "",
        (f"Reproduce: `.venv/bin/python -m bench.sweep_methods {command}` (reads the results; "
         "the sweeps themselves: the commands below)."),
        "",
        (f"Target: the best validation accuracy of `{target_name}`, {target:.2%}. "
         "Worker-minutes add up the wall time of every run (compute, whatever the number of "
         "workers)."),
        "",
        ("| method | runs | worker-minutes | best val_accuracy | its test accuracy "
         "| runs to reach the target | worker-minutes to reach it | stopped early |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (runs, minutes, bests, records) in sweeps.items():
        n, m = first_reaching(runs, minutes, bests, target)
        best = sweep.best_run(records)
        stopped = sum(r.get("status") == "stopped" for r in records)
        lines.append(
            f"| {name} | {runs[-1]} | {minutes[-1]:.1f} | {bests[-1]:.2%} "
            f"| {best['test_accuracy']:.2%} | {n if n else 'not reached'} "
            f"| {f'{m:.1f}' if m else '-'} | {stopped} |")
    lines += ["", "![best so far](figures/sweep_methods.png)", ""]
    if args.notes:
        lines += [Path(args.notes).read_text().rstrip(), ""]
    _plot(sweeps, target, out / "figures" / "sweep_methods.png")
    atomic_write_bytes(out / "sweep_methods.md", ("\n".join(lines) + "\n").encode())
    print(f"wrote {out / 'sweep_methods.md'}", file=sys.stderr)


def _plot(sweeps, target, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, (runs, minutes, bests, _) in sweeps.items():
        ax1.plot(runs, bests, label=name)
        ax2.plot(minutes, bests, label=name)
    for ax, xlabel in ((ax1, "runs"), (ax2, "worker-minutes")):
        ax.axhline(target, color="gray", ls="--", lw=0.8)
        ax.set(xlabel=xlabel, ylabel="best validation accuracy so far",
               ylim=(max(0.8, target - 0.04), target + 0.01))
        ax.legend()
    ax1.set_xscale("log")
    ax2.set_xscale("log")
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


if __name__ == "__main__":
    main()
