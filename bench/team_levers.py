"""What splitting the compiled step between a team of threads is worth, piece by piece.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.team_levers \
        --data-dir ../shared/data

trains with ``fastnn.fit`` (Adam, float32, Fashion-MNIST or random images)
in three ways, interleaved pass by pass, after two untimed passes each:
the step on one thread (``threads=1``: BLAS on one or two threads as
``fit`` chooses for it), the step split between a team of 2 with its
products split by batch rows, and the same team with the forward and delta
products split by columns (``fastnn.step.split_by_columns`` picks between
the last two). Prints the best samples/s of ``--rounds`` passes each.
"""

import argparse

import numpy as np

import fastnn
import fastnn.step
from bench.common import layer_sizes, machine_line
from bench.compare import HYPER, load_data

CASES = ((128, 16, 16384), (128, 64, 16384), (128, 256, 16384), (128, 1024, 16384),
         (1024, 64, 4096), (1024, 128, 8192))
WAYS = ("one thread", "team, rows", "team, columns")


def rate(width, batch, X, y, way, seed):
    """Samples/s of one pass of ``fit`` trained the given way (the network aged by 2 passes)."""
    fastnn.step.COLUMN_SPLIT_WIDTH = 0 if way == "team, columns" else 10 ** 9
    fastnn.step.COLUMN_SPLIT_RATIO = 1
    net = fastnn.Network(layer_sizes(width), seed=0, kernels="numba")
    opt = fastnn.optimizers.get("adam", net.params, kernels="numba", **HYPER)
    threads = 1 if way == "one thread" else 2
    history = fastnn.fit(net, opt, X, y, epochs=3, batch_size=batch, seed=seed, threads=threads)
    return len(X) / history["time"][-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    width_default = (fastnn.step.COLUMN_SPLIT_WIDTH, fastnn.step.COLUMN_SPLIT_RATIO)
    X, y, source = load_data(args.data_dir, max(n for _, _, n in CASES))
    print(machine_line())
    print(f"data: {source}; samples/s, best of {args.rounds} (each the third pass of a fit)")
    print("| case | " + " | ".join(WAYS) + " | fit's choice |")
    print("|---|" + "---|" * (len(WAYS) + 1))
    for width, batch, n in CASES:
        Xs, ys = X[:n], y[:n]
        best = dict.fromkeys(WAYS, 0.0)
        for seed in range(args.rounds):
            for way in WAYS:
                best[way] = max(best[way], rate(width, batch, Xs, ys, way, seed))
        fastnn.step.COLUMN_SPLIT_WIDTH, fastnn.step.COLUMN_SPLIT_RATIO = width_default
        chosen = ("columns" if fastnn.step.split_by_columns(
            fastnn.Network(layer_sizes(width)), batch, 2) else "rows")
        print(f"| 3x{width}, batch {batch} | "
              + " | ".join(f"{best[w]:,.0f}" for w in WAYS) + f" | {chosen} |", flush=True)
    fastnn.step.COLUMN_SPLIT_WIDTH, fastnn.step.COLUMN_SPLIT_RATIO = width_default


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
