"""The small search behind fastnn train's default configuration.

Trains each candidate for 10 epochs with seeds 0, 1, 2 (seed = network,
shuffling and validation split) on Fashion-MNIST and writes
reports/default_search.md. Run:

    .venv/bin/python bench/search_default.py --data-dir ../shared/data
"""

import argparse
import platform
import statistics
import time

import fastnn
from fastnn._atomic import atomic_write_bytes

CANDIDATES = [
    {"num_layers": 3, "hidden_size": 128, "batch_size": 64, "lr": 1e-3},
    {"num_layers": 3, "hidden_size": 256, "batch_size": 128, "lr": 1e-3},
    {"num_layers": 2, "hidden_size": 512, "batch_size": 128, "lr": 1e-3},
    {"num_layers": 3, "hidden_size": 512, "batch_size": 128, "lr": 5e-4},
]
SEEDS = (0, 1, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="reports/default_search.md")
    args = parser.parse_args()
    splits = {s: fastnn.datasets.prepare("fashion_mnist", data_dir=args.data_dir, seed=s)
              for s in SEEDS}
    rows = []
    for cand in CANDIDATES:
        accs, times = [], []
        for seed in SEEDS:
            split = splits[seed]
            config = fastnn.TrainConfig(seed=seed, **cand)
            net, opt = fastnn.train.build(config, 784, 10)
            start = time.perf_counter()
            fastnn.fit(net, opt, split.X_train, split.y_train, epochs=config.epochs,
                       batch_size=config.batch_size, seed=seed)
            times.append(time.perf_counter() - start)
            accs.append(net.evaluate(split.X_test, split.y_test)[1])
            print(cand, seed, accs[-1], round(times[-1], 1), flush=True)
        rows.append((cand, accs, statistics.median(times)))
    lines = [
        "# Search for the default `fastnn train` configuration",
        "",
        "Fashion-MNIST, 10 epochs, Adam, ReLU, Xavier init, float32; test accuracy on the",
        "10,000 test images for seeds 0, 1, 2 (seed of network, shuffling and validation",
        (f"split). Machine: {platform.machine()}, {platform.python_version()}, numpy "
        f"{__import__('numpy').__version__}."),
        "",
        "Reproduce: `.venv/bin/python bench/search_default.py --data-dir ../shared/data`",
        "",
        "| hidden layers | batch | lr | test acc. seed 0 / 1 / 2 | min | median train time |",
        "|---|---|---|---|---|---|",
    ]
    for cand, accs, med in rows:
        lines.append(
            f"| {cand['num_layers']}x{cand['hidden_size']} | {cand['batch_size']} | {cand['lr']:g} "
            f"| {' / '.join(f'{a:.2%}' for a in accs)} | {min(accs):.2%} | {med:.1f} s |"
        )
    atomic_write_bytes(args.out, ("\n".join(lines) + "\n").encode())


if __name__ == "__main__":
    main()
