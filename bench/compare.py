"""Comparison driver: fastnn against textbook NumPy and PyTorch on the CPU.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.compare

trains the 784-128-128-128-10 ReLU network (and a 3x1024 one) on
Fashion-MNIST with softmax cross-entropy, interleaving the systems epoch by
epoch in the same time window, and writes ``reports/performance.md``,
``reports/performance.png`` and ``reports/performance.json``. PyTorch is
optional (``pip install torch==2.13.0`` installs a CPU build); without it
only fastnn and the textbook baseline are compared.

fastnn is measured as a user runs it: ``fastnn.fit`` picks its own BLAS
thread count. PyTorch is measured at its best: for every row the fastest of
1 and 2 threads and of its default and fused optimizer implementation.
Each figure is the median over rounds of samples per second of a shuffled
pass over the data.
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

import fastnn
from bench.common import blas_info, layer_sizes, step_flops
from bench.textbook import TextbookMLP
from fastnn import _threads
from fastnn._atomic import atomic_open, atomic_write_bytes
from fastnn.train import blas_threads, blas_threads_for

OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam")
HYPER = {"lr": 1e-3, "momentum": 0.9, "beta": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
# Targets of the performance issue: fastnn / PyTorch at its best (3x128, Adam).
TORCH_TARGETS = {16: 2.0, 32: 1.7, 64: 1.5, 256: 1.3, 1024: 1.2}
WIDE_TARGET = 1.2
TEXTBOOK_TARGET = 3.0
GEMM_RATIO_TARGET = 1.5


# ----------------------------------------------------------------- systems
def fastnn_runner(width, batch, optimizer, X, y):
    net = fastnn.Network(layer_sizes(width), seed=0)
    opt = fastnn.optimizers.get(optimizer, net.params, **HYPER)
    rounds = iter(range(1_000_000))

    def epoch():
        history = fastnn.fit(net, opt, X, y, epochs=1, batch_size=batch, seed=next(rounds))
        return history["time"][0]

    return epoch


def textbook_runner(width, batch, X64, y):
    model = TextbookMLP(layer_sizes(width), seed=0)
    rng = np.random.default_rng(0)

    def epoch():
        start = time.perf_counter()
        order = rng.permutation(len(X64))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            model.train_step(X64[idx], y[idx])
        return time.perf_counter() - start

    return epoch


def torch_optimizer(torch, name, params, fused):
    kw = {"fused": True} if fused else {}
    lr, eps = HYPER["lr"], HYPER["eps"]
    betas = (HYPER["beta1"], HYPER["beta2"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, **kw)
    if name in ("momentum", "nag"):
        return torch.optim.SGD(params, lr=lr, momentum=HYPER["momentum"],
                               nesterov=name == "nag", **kw)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=HYPER["beta"], eps=eps, **kw)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, **kw)
    return torch.optim.NAdam(params, lr=lr, betas=betas, eps=eps, momentum_decay=0.004, **kw)


def torch_runner(torch, width, batch, optimizer, threads, fused, X_t, y_t):
    torch.manual_seed(0)
    sizes = layer_sizes(width)
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch_optimizer(torch, optimizer, model.parameters(), fused)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    n = X_t.shape[0]

    def epoch():
        torch.set_num_threads(threads)
        start = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X_t[idx]), y_t[idx])
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    return epoch


def torch_variants(torch, width, batch, optimizer, X_t, y_t):
    """Every PyTorch setting that 'at its best' takes the fastest of."""
    out = {}
    for threads in (1, 2):
        for fused in (False, True):
            try:
                run = torch_runner(torch, width, batch, optimizer, threads, fused, X_t, y_t)
            except (RuntimeError, TypeError, ValueError):  # no fused variant of this one
                continue
            out[f"torch {threads}t{' fused' if fused else ''}"] = run
    return out


def measure(systems, n_samples, rounds):
    """Interleave the systems round by round; return median samples/s each."""
    times = {}
    for name, run in systems.items():  # warm-up pass, not timed
        try:
            run()
            times[name] = []
        except (RuntimeError, NotImplementedError) as exc:
            if not name.startswith("torch"):
                raise
            print(f"skipping {name}: {exc}", file=sys.stderr)
    for _ in range(rounds):
        for name, ts in times.items():
            ts.append(systems[name]())
    return {name: n_samples / statistics.median(ts) for name, ts in times.items()}


# ------------------------------------------------------------ side figures
def gemm_peak(threads, dtype=np.float32):
    a = np.random.default_rng(0).random((1024, 1024)).astype(dtype)
    b = a.copy()
    c = np.empty_like(a)
    with blas_threads(threads):
        np.matmul(a, b, out=c)
        best = min(_timed(lambda: np.matmul(a, b, out=c)) for _ in range(10))
    return 2 * 1024 ** 3 / best / 1e9


def _timed(fn, repeat=1):
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def step_vs_products(width, batch):
    """Seconds per steady-state training step and for its matrix products alone."""
    net = fastnn.Network(layer_sizes(width), seed=0)
    opt = fastnn.optimizers.get("adam", net.params, **HYPER)
    rng = np.random.default_rng(0)
    X = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    sizes = net.layer_sizes
    acts = [X] + [rng.random((batch, s), dtype=np.float32) for s in sizes[1:]]
    outs = [np.empty_like(a) for a in acts]
    Ws = list(net.params[0::2])
    dWs = [np.empty_like(W) for W in Ws]

    def products():
        for i, W in enumerate(Ws):
            np.matmul(acts[i], W, out=outs[i + 1])
            np.matmul(acts[i].T, acts[i + 1], out=dWs[i])
            if i:
                np.matmul(acts[i + 1], W.T, out=outs[i])

    def step():
        net.train_step_(X, y)
        opt.step(net.grads)

    repeat = max(3, 20000 // batch)
    with blas_threads(blas_threads_for(net, batch, _threads.resolve())):
        step()
        products()
        t_step = min(_timed(step, repeat) for _ in range(5))
        t_prod = min(_timed(products, repeat) for _ in range(5))
    return t_step, t_prod


def fused_update_estimate(torch, width, batch):
    """What a one-pass fused Adam would buy: fastnn's step with PyTorch's fused
    CPU Adam kernel timed on a flat tensor of the same size in its place.

    Returns (fastnn update s, fused update s, fastnn step s, projected step s).
    """
    net = fastnn.Network(layer_sizes(width), seed=0)
    opt = fastnn.optimizers.get("adam", net.params, **HYPER)
    rng = np.random.default_rng(0)
    X = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    net.grads.flat[:] = rng.standard_normal(net.n_params).astype(np.float32)
    flat = torch.nn.Parameter(torch.zeros(net.n_params))
    flat.grad = torch.from_numpy(net.grads.flat.copy())
    repeat = max(5, 20_000_000 // net.n_params)
    with blas_threads(blas_threads_for(net, batch, _threads.resolve())):
        net.train_step_(X, y)
        t_step = min(_timed(lambda: (net.train_step_(X, y), opt.step(net.grads)), repeat // 4 + 1)
                     for _ in range(5))
        t_ours = min(_timed(lambda: opt.step(net.grads), repeat) for _ in range(5))
    best_fused = float("inf")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        fused = torch.optim.Adam([flat], lr=1e-3, fused=True)
        fused.step()
        best_fused = min(best_fused, min(_timed(fused.step, repeat) for _ in range(5)))
    return t_ours, best_fused, t_step, t_step - t_ours + best_fused


def step_memory(width, batch, steps=200):
    """Net bytes allocated by ``steps`` training steps after warm-up."""
    net = fastnn.Network(layer_sizes(width), seed=0)
    opt = fastnn.optimizers.get("adam", net.params, **HYPER)
    rng = np.random.default_rng(0)
    X = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    for _ in range(10):
        net.train_step_(X, y)
        opt.step(net.grads)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(steps):
        net.train_step_(X, y)
        opt.step(net.grads)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename"))


def epoch_peak_memory(X, y, width, batch):
    """Peak bytes traced during one fit() epoch, against data and buffer sizes."""
    net = fastnn.Network(layer_sizes(width), seed=0)
    opt = fastnn.optimizers.get("adam", net.params, **HYPER)
    tracemalloc.start()
    tracemalloc.reset_peak()
    fastnn.fit(net, opt, X, y, epochs=1, batch_size=batch, seed=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    buffers = sum(3 * layer.z.nbytes for layer in net.layers)  # z, delta, scratch
    state = net.params.flat.nbytes * 5  # grads, m, v, scratch (+ params)
    return peak, buffers + state


def default_train_wall(data_dir):
    cmd = [sys.executable, "-m", "fastnn", "train", "--no-progress"]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()
    return wall, tail, " ".join(cmd[1:])


# ------------------------------------------------------------------ report
def machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lib, arch, threads = blas_info()
    unset = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v not in os.environ]
    return {
        "cpu": cpu, "cpus": _threads.available_cpus(), "python": platform.python_version(),
        "numpy": np.__version__, "blas": lib, "blas_kernel": arch, "blas_threads": threads,
        "openblas_env": ("unset" if len(unset) == 2 else
                         ", ".join(f"{v}={os.environ.get(v)}" for v in
                                   ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))),
    }


def _fmt(x):
    return f"{x / 1000:.1f}k"


def write_report(results, out_dir, command):
    out_dir.mkdir(parents=True, exist_ok=True)
    m = results["machine"]
    lines = [
        "# Performance: fastnn against textbook NumPy and PyTorch (CPU)",
        "",
        f"Reproduce: `{command}`",
        "",
        (f"Machine: {m['cpu']}, {m['cpus']} CPUs; Python {m['python']}, NumPy {m['numpy']}, "
        f"{m['blas']} with the `{m['blas_kernel']}` kernel (threadpoolctl), OpenBLAS "
        f"environment variables {m['openblas_env']}; PyTorch {results.get('torch') or 'not installed'}. "
        f"Data: {results['data']}. Float32, softmax cross-entropy, median samples/s of "
        f"{results['rounds']} interleaved shuffled passes over {results['n_samples']:,} images "
        "(3x1024: over the first "
        f"{results['n_wide']:,}). fastnn picks its own BLAS threads (one below "
        f"{fastnn.train.SINGLE_THREAD_MACS:,} multiply-adds in the largest product, else "
        "all); PyTorch is the fastest of 1 and 2 threads and of its default and fused "
        "optimizer per row. GEMM peak (1024^3 sgemm): "
        f"{results['peak'][1]:.0f} GFLOP/s on 1 thread, {results['peak'][2]:.0f} on 2; "
        f"float64 (dgemm, what the textbook baseline runs on): {results['peak64'][1]:.0f} and "
        f"{results['peak64'][2]:.0f}."),
        "",
        "## 784-128-128-128-10, Adam",
        "",
        ("| batch | fastnn | textbook NumPy | PyTorch best (setting) | fastnn/PyTorch (target) "
        "| fastnn/textbook (target 3x) | fastnn GFLOP/s |"),
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["adam"]:
        best = row.get("torch_best")
        torch_cells = (f"{_fmt(best[1])} ({best[0]}) | {row['fastnn'] / best[1]:.2f}x "
                       f"({TORCH_TARGETS.get(row['batch'], '-')}x)") if best else "- | -"
        lines.append(
            f"| {row['batch']} | {_fmt(row['fastnn'])} | {_fmt(row['textbook'])} | {torch_cells} "
            f"| {row['fastnn'] / row['textbook']:.1f}x | {row['gflops']:.0f} |")
    w = results["wide"]
    best = w.get("torch_best")
    lines += [
        "",
        f"## 784-1024-1024-1024-10, Adam, batch {w['batch']}",
        "",
        ("| fastnn | textbook NumPy | PyTorch best (setting) | fastnn/PyTorch (target 1.2x) "
        "| fastnn/textbook |"),
        "|---|---|---|---|---|",
        f"| {_fmt(w['fastnn'])} | {_fmt(w['textbook'])} | "
        + (f"{_fmt(best[1])} ({best[0]}) | {w['fastnn'] / best[1]:.2f}x" if best else "- | -")
        + f" | {w['fastnn'] / w['textbook']:.1f}x |",
        "",
        "## Every optimizer, 3x128, batch 64",
        "",
        "| optimizer | fastnn | PyTorch best (setting) | fastnn/PyTorch (target >= 1) |",
        "|---|---|---|---|",
    ]
    for row in results["optimizers"]:
        best = row.get("torch_best")
        lines.append(f"| {row['optimizer']} | {_fmt(row['fastnn'])} | "
                     + (f"{_fmt(best[1])} ({best[0]}) | {row['fastnn'] / best[1]:.2f}x |"
                        if best else "- | - |"))
    lines += [
        "",
        "## Step against its own matrix products (3x128, Adam; target at most 1.5x)",
        "",
        "| batch | step | its 10 matrix products | ratio |",
        "|---|---|---|---|",
    ]
    for row in results["gemm_ratio"]:
        lines.append(f"| {row['batch']} | {row['step'] * 1e6:.0f} us | {row['products'] * 1e6:.0f} us "
                     f"| {row['step'] / row['products']:.2f}x |")
    if results.get("fused_estimate"):
        lines += [
            "",
            "## What a fused optimizer kernel would buy (Adam)",
            "",
            ("NumPy cannot fuse Adam's element-wise update: it runs as about a dozen "
            "whole-array ufunc passes (one a square root). Timing PyTorch's fused CPU Adam "
            "on a flat tensor of the same size gives what a one-pass kernel costs, and "
            "fastnn's step with it in place of its own update:"),
            "",
            ("| network, batch | fastnn update | fused update | fastnn step | step with fused "
            "update | projected samples/s |"),
            "|---|---|---|---|---|---|",
        ]
        for row in results["fused_estimate"]:
            lines.append(
                f"| 3x{row['width']}, {row['batch']} | {row['ours'] * 1e6:.0f} us "
                f"| {row['fused'] * 1e6:.0f} us | {row['step'] * 1e6:.0f} us "
                f"| {row['projected'] * 1e6:.0f} us | {_fmt(row['batch'] / row['projected'])} |")
    mem = results["memory"]
    lines += [
        "",
        "## Memory",
        "",
        "- Net allocation of 200 steady-state training steps (tracemalloc): "
        + ", ".join(f"{k}: {v:+d} bytes" for k, v in mem["steps"].items()) + ".",
        (f"- Peak traced during one fit() epoch of 3x128 at batch 64: "
        f"{mem['epoch_peak'] / 2**20:.1f} MiB, against data already in memory of "
        f"{mem['data'] / 2**20:.1f} MiB (the float32 images, converted once before training; "
        f"not counted twice) and buffers plus optimizer state of {mem['buffers'] / 2**20:.1f} MiB."),
    ]
    if results.get("default_run"):
        wall, tail, cmd = results["default_run"]
        lines += ["", "## Default `fastnn train`", "",
                  (f"`{cmd}` (10 epochs, 3x256, batch 128): whole command {wall:.1f} s; "
                  f"it printed `{tail}`.")]
    atomic_write_bytes(out_dir / "performance.md", ("\n".join(lines) + "\n").encode())
    atomic_write_bytes(out_dir / "performance.json",
                       json.dumps(results, indent=1, default=str).encode())
    _plot(results, out_dir / "performance.png")


def _plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'fastnn[plot]')", file=sys.stderr)
        return
    rows = results["adam"]
    batches = [r["batch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(batches, [r["fastnn"] for r in rows], "o-", label="fastnn")
    ax1.plot(batches, [r["textbook"] for r in rows], "s-", label="textbook NumPy (float64)")
    if rows[0].get("torch_best"):
        ax1.plot(batches, [r["torch_best"][1] for r in rows], "^-", label="PyTorch, best setting")
    ax1.set(xscale="log", xlabel="batch size", ylabel="samples / s",
            title="784-128-128-128-10, Adam, float32")
    ax1.set_xticks(batches, [str(b) for b in batches])
    ax1.legend()
    ax2.plot(batches, [r["gflops"] for r in rows], "o-", label="fastnn training step")
    ax2.axhline(results["peak"][1], color="gray", ls="--", label="sgemm peak, 1 thread")
    ax2.axhline(results["peak"][2], color="black", ls="--", label="sgemm peak, 2 threads")
    ax2.set(xscale="log", xlabel="batch size", ylabel="GFLOP/s (matrix-product flops)",
            title="fastnn against the measured GEMM peak")
    ax2.set_xticks(batches, [str(b) for b in batches])
    ax2.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


# -------------------------------------------------------------------- main
def load_data(data_dir, n_max):
    try:
        split = fastnn.datasets.prepare("fashion_mnist", data_dir=data_dir, download=False)
        X, y, source = split.X_train, split.y_train, f"Fashion-MNIST ({split.source})"
    except fastnn.DataError:
        rng = np.random.default_rng(0)
        X = rng.random((54000, 784), dtype=np.float32)
        y = rng.integers(0, 10, 54000)
        source = "random images (Fashion-MNIST not found)"
    return np.ascontiguousarray(X[:n_max]), np.ascontiguousarray(y[:n_max]), source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=54000, help="images per pass")
    parser.add_argument("--wide-samples", type=int, default=8192,
                        help="images per pass for the 3x1024 network")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 256, 1024])
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-default-run", action="store_true")
    parser.add_argument("--out-dir", default="reports")
    parser.add_argument("--rewrite", metavar="JSON", default=None,
                        help="only re-render the report from a performance.json")
    args = parser.parse_args(argv)
    if args.rewrite:
        results = json.loads(Path(args.rewrite).read_text())
        for key in ("peak", "peak64"):
            results[key] = {int(k): v for k, v in results[key].items()}
        command = results.get("command", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
                              ".venv/bin/python -m bench.compare --rounds 5")
        write_report(results, Path(args.out_dir), command)
        return
    unset = "OPENBLAS_CORETYPE" not in os.environ and "OPENBLAS_L2_SIZE" not in os.environ
    command = ("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " if unset else "") + \
        ".venv/bin/python -m bench.compare " + " ".join(argv if argv is not None else sys.argv[1:])

    X, y, source = load_data(args.data_dir, args.samples)
    X64 = X.astype(np.float64)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch not installed: comparing fastnn with textbook NumPy only",
                  file=sys.stderr)
    if torch is not None:
        X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    results = {"command": command, "machine": machine(), "data": source,
               "rounds": args.rounds,
               "n_samples": len(X), "n_wide": min(args.wide_samples, len(X)),
               "torch": getattr(torch, "__version__", None),
               "peak": {1: gemm_peak(1), 2: gemm_peak(2)},
               "peak64": {1: gemm_peak(1, np.float64), 2: gemm_peak(2, np.float64)},
               "adam": [], "optimizers": []}

    def compare(width, batch, optimizer, Xs, ys, with_textbook=True):
        systems = {"fastnn": fastnn_runner(width, batch, optimizer, Xs, ys)}
        if with_textbook:
            systems["textbook"] = textbook_runner(width, batch, X64[:len(Xs)], ys)
        if torch is not None:
            systems.update(torch_variants(torch, width, batch, optimizer,
                                          X_t[:len(Xs)], y_t[:len(Xs)]))
        rates = measure(systems, len(Xs), args.rounds)
        row = {"batch": batch, "width": width, "optimizer": optimizer, "all": rates,
               "fastnn": rates["fastnn"], "textbook": rates.get("textbook")}
        torch_rates = {k: v for k, v in rates.items() if k.startswith("torch")}
        if torch_rates:
            row["torch_best"] = max(torch_rates.items(), key=lambda kv: kv[1])
        row["gflops"] = rates["fastnn"] / batch * step_flops(layer_sizes(width), batch) / 1e9
        print(json.dumps({k: v for k, v in row.items() if k != "all"}, default=str), flush=True)
        return row

    for batch in args.batches:
        results["adam"].append(compare(128, batch, "adam", X, y))
    n_wide = results["n_wide"]
    results["wide"] = compare(1024, 64, "adam", X[:n_wide], y[:n_wide])
    for name in OPTIMIZERS:
        results["optimizers"].append(compare(128, 64, name, X, y, with_textbook=False))
    results["gemm_ratio"] = []
    for batch in (b for b in args.batches if b >= 256):
        t_step, t_prod = step_vs_products(128, batch)
        results["gemm_ratio"].append({"batch": batch, "step": t_step, "products": t_prod})
    if torch is not None:
        results["fused_estimate"] = []
        for width, batch in [(128, b) for b in args.batches] + [(1024, 64)]:
            ours, fused, step, projected = fused_update_estimate(torch, width, batch)
            results["fused_estimate"].append({"width": width, "batch": batch, "ours": ours,
                                              "fused": fused, "step": step,
                                              "projected": projected})
    results["memory"] = {
        "steps": {f"3x{w} batch {b}": step_memory(w, b) for w, b in ((128, 64), (1024, 256))},
    }
    peak, buffers = epoch_peak_memory(X, y, 128, 64)
    results["memory"].update(epoch_peak=peak, buffers=buffers, data=X.nbytes)
    if not args.no_default_run:
        results["default_run"] = default_train_wall(args.data_dir)
    write_report(results, Path(args.out_dir), command)
    print(f"wrote {args.out_dir}/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
