"""Reading a 60,000 x 785 CSV: fastnn's reader against pandas.read_csv (C engine).

Three readings: ``fastnn.readers.read`` (the CSV to float32 features and
labels), ``pandas.read_csv`` then ``to_numpy(float32)`` of the features, and
``fastnn.datasets.load`` (the reader, the labels encoded, a stratified
test part held out: what training starts from).

Each measurement runs in a fresh process (imports done before the clock
starts), fastnn and pandas interleaved, and reports the wall time and the
peak resident memory the read added (Linux: the peak is reset through
``/proc/self/clear_refs`` just before), against the final float32 array::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench.csv_load \\
        --data-dir ../shared/data/fashion-mnist

The CSV is Fashion-MNIST's training set (label first, then 784 pixels) when
the data is found, else random pixels of the same shape. pandas is only
needed here (``pip install "fastnn[plot]"``), never by fastnn.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import machine_line

_CHILD = r"""
import json, sys, time
import numpy as np
which, path = sys.argv[1], sys.argv[2]
if which == "pandas":
    import pandas as pd
else:
    import sklearn.model_selection  # imported by the split: outside the clock, as pandas
    from fastnn import datasets, readers

def status(key):  # kB
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak resident size (VmHWM) to the current one
base = status("VmRSS:")
start = time.perf_counter()
if which == "fastnn":
    raw = readers.read(path)
    shape, total = raw.x.shape, float(raw.x.sum(dtype=np.float64))
elif which == "load":  # the reader, then the labels encoded and a test part held out
    ds = datasets.load(path)
    shape = (ds.x_train.shape[0] + ds.x_test.shape[0], ds.x_train.shape[1])
    total = float(ds.x_train.sum(dtype=np.float64) + ds.x_test.sum(dtype=np.float64))
else:
    frame = pd.read_csv(path, engine="c")
    x = frame.drop(columns="label").to_numpy(np.float32)
    shape, total = x.shape, float(x.sum(dtype=np.float64))
seconds = time.perf_counter() - start
peak = status("VmHWM:") - base
print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "shape": shape, "sum": total}))
"""


def write_csv(path, data_dir=None, n=60_000):
    """Fashion-MNIST's training set as a CSV (random pixels when not found)."""
    try:
        from fastnn import datasets

        ds = datasets.load("fashion_mnist", data_dir=data_dir, download=False)
        X, y, source = ds.x_train.reshape(len(ds.x_train), -1)[:n], ds.y_train[:n], ds.source
    except Exception:  # noqa: BLE001 - no data here: random pixels of the same shape
        rng = np.random.default_rng(0)
        X, y, source = rng.integers(0, 256, (n, 784)), rng.integers(0, 10, n), "random pixels"
    with open(path, "w") as f:
        f.write("label," + ",".join(f"pixel{i}" for i in range(X.shape[1])) + "\n")
        np.savetxt(f, np.column_stack([y, X]), fmt="%d", delimiter=",")
    return source, X.shape[0]


def run_once(which, path):
    out = subprocess.run([sys.executable, "-c", _CHILD, which, str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=60_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.csv"
        source, n = write_csv(path, args.data_dir, args.rows)
        size = os.path.getsize(path) / 2**20
        runs = {"fastnn": [], "pandas": [], "load": []}
        for _ in range(args.rounds):
            for which, times in runs.items():
                times.append(run_once(which, path))
    first = runs["fastnn"][0]
    assert all(r["shape"] == first["shape"] and r["sum"] == first["sum"]
               for rs in runs.values() for r in rs), "the readers disagree"
    array_mib = first["shape"][0] * first["shape"][1] * 4 / 2**20
    print(f"# {machine_line()}")
    print(f"CSV: {n:,} rows x {first['shape'][1] + 1} columns ({source}), {size:.0f} MiB; "
          f"float32 features {array_mib:.0f} MiB; {args.rounds} interleaved rounds, median")
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    peak = {k: max(r["peak_mib"] for r in v) for k, v in runs.items()}
    names = {"fastnn": "fastnn.readers.read", "pandas": "pandas.read_csv + to_numpy",
             "load": "fastnn.datasets.load (+ test split)"}
    for which in runs:
        print(f"  {names[which]:36s} {med[which]:6.2f} s   peak +{peak[which]:5.0f} MiB "
              f"({peak[which] / array_mib:.2f}x the array)")
    print(f"  time against pandas: read {med['fastnn'] / med['pandas']:.2f}x, "
          f"load {med['load'] / med['pandas']:.2f}x")


if __name__ == "__main__":
    main()
