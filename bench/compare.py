"""Comparison driver: fastnn (both kernel sets) against textbook NumPy, PyTorch and JAX.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.compare

trains the 784-128-128-128-10 ReLU network (and a 3x1024 one) on
Fashion-MNIST with softmax cross-entropy, interleaving the systems epoch by
epoch in the same time window, and writes ``reports/performance.md``,
``reports/performance.png`` and ``reports/performance.json``. The peers are
benchmark-only dependencies, never fastnn's: ``pip install torch==2.13.0``
(a CPU build) and ``pip install jax==0.10.2 jaxlib==0.10.2 optax==0.2.8``;
a missing peer is skipped with a note.

fastnn is measured as a user runs it: ``fastnn.fit`` picks its own BLAS
thread count and, with the numba kernels, runs each step compiled whole;
once with the numba kernels and once with the NumPy ones.
PyTorch is measured at its best: for every row the fastest of 1 and 2
threads and of its default and fused optimizer implementation. JAX is
measured at its best of a ``jax.jit`` train step (batches gathered by
NumPy) and a whole epoch compiled with ``lax.scan`` (gather, forward,
backward and the optax update in one XLA program; the scan covers the
full batches, the samples/s count what it trained). Each figure is the
median over rounds of samples per second of a shuffled pass over the data,
in the steady state: every system first trains untimed passes until it has
taken at least ``--warmup-steps`` (default 1,000) steps, so that optimizer
state has aged as it does in real training (on Intel CPUs subnormal floats
in an aged state once made fastnn 3-5x slower after a few hundred steps).
The samples/s of each of the first five epochs of 3x128 at batch 16 and
3x1024 at batch 64 are reported too, so that a slowdown over time shows.
"""

import argparse
import functools
import gc
import itertools
import json
import math
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
from bench.common import age_state, blas_info, cpu_info, layer_sizes, step_flops
from bench.textbook import TextbookMLP
from fastnn import _blas, _jit, _team, _threads
from fastnn._atomic import atomic_open, atomic_write_bytes
from fastnn._jit import fused
from fastnn._team import barrier, share
from fastnn.step import _delta_columns, _forward_columns, _matmul, _weight_grad
from fastnn.train import blas_threads, make_step

OPTIMIZERS = ("sgd", "momentum", "nag", "rmsprop", "adam", "nadam")
HYPER = {"lr": 1e-3, "momentum": 0.9, "beta": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
KERNEL_SETS = ("numba", "numpy")
# Targets of "ahead of JAX at every size" (#25): fastnn (numba) / the best of
# JAX's jit step and lax.scan epoch, and the step / its own matrix products,
# by (width, batch).
JAX_TARGETS = {(128, 16): 1.2, (128, 64): 1.2, (128, 256): 1.2, (128, 1024): 1.1,
               (1024, 64): 1.1}
GEMM_RATIO_TARGETS = {(128, 16): 1.6, (128, 64): 1.3, (128, 256): 1.15, (128, 1024): 1.15,
                      (1024, 64): 1.1}
PEER_TARGETS = {batch: JAX_TARGETS[128, batch] for batch in (16, 64, 256, 1024)}
WIDE_TARGET = JAX_TARGETS[1024, 64]
UPDATE_BOUND_TARGET = 1.3
# Array passes of each optimizer's one-pass update: arrays read + arrays written.
UPDATE_ARRAYS = {"sgd": 3, "momentum": 5, "nag": 5, "rmsprop": 5, "adam": 7, "nadam": 7}


# ----------------------------------------------------------------- systems
def fastnn_runner(width, batch, optimizer, X, y, kernels="auto"):
    net = fastnn.Network(layer_sizes(width), seed=0, kernels=kernels)
    opt = fastnn.optimizers.get(optimizer, net.params, kernels=kernels, **HYPER)
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
        for fused_opt in (False, True):
            try:
                run = torch_runner(torch, width, batch, optimizer, threads, fused_opt, X_t, y_t)
            except (RuntimeError, TypeError, ValueError):  # no fused variant of this one
                continue
            out[f"torch {threads}t{' fused' if fused_opt else ''}"] = run
    return out


def jax_runners(jax_mods, width, batch, X, y):
    """The JAX train step under ``jax.jit`` and the epoch under ``lax.scan``.

    Both return (seconds, samples trained) per call.
    """
    jax, jnp, optax = jax_mods
    sizes = layer_sizes(width)
    key = jax.random.PRNGKey(0)
    params = []
    for n_in, n_out in itertools.pairwise(sizes):
        key, sub = jax.random.split(key)
        limit = (6.0 / (n_in + n_out)) ** 0.5
        params.append((jax.random.uniform(sub, (n_in, n_out), jnp.float32, -limit, limit),
                       jnp.zeros(n_out, jnp.float32)))
    tx = optax.adam(HYPER["lr"], b1=HYPER["beta1"], b2=HYPER["beta2"], eps=HYPER["eps"])

    def loss_fn(p, xb, yb):
        a = xb
        for W, b in p[:-1]:
            a = jax.nn.relu(a @ W + b)
        logits = a @ p[-1][0] + p[-1][1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def update(p, state, xb, yb):
        grads = jax.grad(loss_fn)(p, xb, yb)
        updates, state = tx.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    step = jax.jit(update, donate_argnums=(0, 1))

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def scan_epoch(p, state, X_d, y_d, order):
        def body(carry, idx):
            p, state = carry
            return update(p, state, X_d[idx], y_d[idx]), None

        (p, state), _ = jax.lax.scan(body, (p, state), order)
        return p, state

    X_d, y_d = jnp.asarray(X), jnp.asarray(y.astype(np.int32))
    n = X.shape[0]
    n_full = n // batch
    rng = np.random.default_rng(0)
    # NOTE: each variant gets its own copy: donated buffers are deleted.
    copies = [jax.tree_util.tree_map(jnp.copy, params) for _ in range(2)]
    holder = {"step": (copies[0], tx.init(copies[0])), "scan": (copies[1], tx.init(copies[1]))}

    def run_step():
        p, state = holder["step"]
        start = time.perf_counter()
        order = rng.permutation(n)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            p, state = step(p, state, X_d[idx], y_d[idx])
        jax.block_until_ready(p)
        holder["step"] = (p, state)
        return time.perf_counter() - start, n

    def run_scan():
        p, state = holder["scan"]
        start = time.perf_counter()
        order = jnp.asarray(rng.permutation(n)[:n_full * batch].reshape(n_full, batch))
        p, state = scan_epoch(p, state, X_d, y_d, order)
        jax.block_until_ready(p)
        holder["scan"] = (p, state)
        return time.perf_counter() - start, n_full * batch

    return {"jax jit step": run_step, "jax scan epoch": run_scan}


def measure(systems, n_samples, rounds, warmup=1):
    """Interleave the systems round by round; return median samples/s each.

    A system returns seconds per pass over ``n_samples``, or (seconds,
    samples trained). Each first runs ``warmup`` untimed passes (compilation
    and the aging of its optimizer state).
    """
    rates = {}
    for name, run in systems.items():  # warm-up passes (and compilation), not timed
        try:
            for _ in range(warmup):
                run()
            rates[name] = []
        except (RuntimeError, NotImplementedError, TypeError, ValueError) as exc:
            if name.startswith("fastnn") or name == "textbook":
                raise
            print(f"skipping {name}: {exc}", file=sys.stderr)
    for _ in range(rounds):
        for name, rs in rates.items():
            got = systems[name]()
            seconds, samples = got if isinstance(got, tuple) else (got, n_samples)
            rs.append(samples / seconds)
    return {name: statistics.median(rs) for name, rs in rates.items()}


def warmup_passes(n_samples, batch, steps):
    """Passes over ``n_samples`` that take at least ``steps`` steps of ``batch`` (at least one)."""
    return max(1, math.ceil(steps / math.ceil(n_samples / batch)))


def by_epoch(systems, n_samples, epochs):
    """Samples/s of each of the first ``epochs`` passes, interleaved pass by pass.

    Nothing runs before the first pass (compilation that happens inside a
    pass counts in it: JAX compiles in its first).
    """
    rates = {name: [] for name in systems}
    for _ in range(epochs):
        for name, run in systems.items():
            got = run()
            seconds, samples = got if isinstance(got, tuple) else (got, n_samples)
            rates[name].append(samples / seconds)
    return rates


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


def step_vs_products(width, batch, kernels):
    """Seconds per steady-state training step and for its matrix products alone.

    The products run as the step runs them: in sequence with the BLAS
    threads the step gets, or, for a step split between a team of threads,
    on a team of the same size with the same split and barriers
    (:func:`_team_products`).
    """
    net = fastnn.Network(layer_sizes(width), seed=0, kernels=kernels)
    opt = fastnn.optimizers.get("adam", net.params, kernels=kernels, **HYPER)
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

    step, threads = training_step(net, opt, X, y)
    team = None
    if step.threads > 1:
        team = products_team(net, batch, step.threads, acts, Ws, outs, dWs)
        products = team.run
    repeat = max(3, 20000 // batch // max(1, width // 256))
    try:
        with blas_threads(threads):
            step()
            age_state(net, opt)  # the steady state's optimizer state
            products()
            t_step = t_prod = float("inf")
            for _ in range(5):  # interleaved, best of 5
                t_step = min(t_step, _timed(step, repeat))
                t_prod = min(t_prod, _timed(products, repeat))
    finally:
        step.close()
        if team is not None:
            team.close()
    return t_step, t_prod


@fused(None)
def _team_products(tid, size, ctl, gemm, acts, Ws, outs, dWs, columns, one):
    """Thread ``tid``'s share of one step's matrix products, split as the team step splits them.

    ``acts`` the layer inputs (and the logits), ``outs`` stand for the
    deltas; the same BLAS calls and barriers as :func:`fastnn.step._team_step`,
    without the element-wise work, the loss and the update.
    """
    n = acts[0].shape[0]
    start, stop = share(n, tid, size)
    if columns:
        barrier(ctl, tid, size)
    for layer in range(len(Ws)):
        W = Ws[layer]
        n_out = W.shape[1]
        if columns:
            j0, j1 = share(n_out, tid, size)
            _forward_columns(gemm, acts[layer], W, acts[layer + 1], j0, j1, one)
            barrier(ctl, tid, size)
            if layer + 1 < len(Ws):
                barrier(ctl, tid, size)
        else:
            _matmul(gemm, acts[layer][start:stop], W, acts[layer + 1][start:stop], False, False,
                    one)
    barrier(ctl, tid, size)
    barrier(ctl, tid, size)  # the loss
    for layer in range(len(Ws) - 1, -1, -1):
        W = Ws[layer]
        n_in, n_out = W.shape
        i0, i1 = share(n_in, tid, size)
        _weight_grad(gemm, acts[layer], acts[layer + 1], dWs[layer], i0, i1, one)
        if layer:
            if columns:
                _delta_columns(gemm, acts[layer + 1], W, outs[layer], i0, i1, one)
                barrier(ctl, tid, size)
            else:
                _matmul(gemm, acts[layer + 1][start:stop], W, outs[layer][start:stop], False,
                        True, one)
            barrier(ctl, tid, size)
    barrier(ctl, tid, size)


def products_team(net, batch, size, acts, Ws, outs, dWs):
    """A :class:`fastnn._team.Team` whose run is one step's products (:func:`_team_products`)."""
    columns = fastnn.step.split_by_columns(net, batch, size)
    one = net.dtype.type(1)
    args = (_blas.gemm(net.dtype.name), tuple(acts), tuple(Ws), tuple(outs), tuple(dWs),
            columns, one)
    ctl = _team.control_block(size)
    lead = _jit.specialized(_team.lead, (True, ctl, size, args), _work=_team_products)
    loop = _jit.specialized(_team._loop, (1, size, ctl, args), _work=_team_products)
    return _team.Team(size, lead, loop, args)


def training_step(net, opt, X, y):
    """One training step on (X, y) as fit() runs it, and the BLAS threads fit() gives it."""
    y = np.ascontiguousarray(y, dtype=np.intp)
    step, threads = make_step(net, opt, X, y, X.shape[0])
    idx = np.arange(X.shape[0])

    def run():
        return step(idx)

    run.close = step.close
    run.threads = getattr(step, "threads", 1)
    return run, threads


def copy_bandwidth(n):
    """Bytes per second of a plain copy of n float32 (read n, write n), best of 20."""
    src = np.random.default_rng(0).random(n, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src), 3) for _ in range(20))
    return 2 * n * 4 / best


def _numexpr_adam(ne, w, g, m, v, c1, c2, eps, step):
    ne.evaluate("m + (g - m) * c1", out=m)
    ne.evaluate("v + (g * g - v) * c2", out=v)
    ne.evaluate("w - m / (sqrt(v) + eps) * step", out=w)


def update_benchmark(n_params, torch=None):
    """Seconds per update of each optimizer on one flat float32 vector of n_params.

    NumPy passes and numba (1 thread and fastnn's thread split), numexpr's
    Adam and PyTorch's fused Adam when installed, and each optimizer's
    memory-traffic bound: the bytes one pass must read and write over the
    bandwidth of a plain copy of the same size.
    """
    rng = np.random.default_rng(0)
    grad = rng.standard_normal(n_params).astype(np.float32) * 1e-3
    bandwidth = copy_bandwidth(n_params)
    repeat = max(3, 20_000_000 // n_params)
    rows = []
    for name in OPTIMIZERS:
        row = {"optimizer": name, "n_params": n_params,
               "bound": UPDATE_ARRAYS[name] * n_params * 4 / bandwidth}
        variants = [(k, t) for k in KERNEL_SETS for t in (1, _threads.resolve())]
        for kernels, threads in dict.fromkeys(variants):
            try:
                w = np.zeros(n_params, dtype=np.float32)
                opt = fastnn.optimizers.get(name, [w], threads=threads, kernels=kernels, **HYPER)
            except fastnn.ConfigError as exc:  # numba not installed
                print(f"skipping {kernels} updates: {exc}", file=sys.stderr)
                continue
            step = functools.partial(opt.step, [grad])
            step()
            row[f"{kernels} {threads}t"] = min(_timed(step, repeat) for _ in range(5))
        if name == "adam":
            _peer_updates(row, n_params, grad, repeat, torch)
        rows.append(row)
    return {"bandwidth": bandwidth, "rows": rows}


def _peer_updates(row, n_params, grad, repeat, torch):
    try:
        import numexpr as ne
    except ImportError:
        row["notes"] = "numexpr not installed"
    else:
        w, m, v = (np.zeros(n_params, dtype=np.float32) for _ in range(3))
        c = [np.float32(x) for x in (0.1, 0.001, 1e-8, 1e-3)]
        for threads in (1, 2):
            ne.set_num_threads(threads)
            row[f"numexpr {threads}t"] = min(
                _timed(lambda: _numexpr_adam(ne, w, grad, m, v, *c), repeat) for _ in range(5))
    if torch is not None:
        flat = torch.nn.Parameter(torch.zeros(n_params))
        flat.grad = torch.from_numpy(grad.copy())
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fused = torch.optim.Adam([flat], lr=1e-3, fused=True)
            fused.step()
            row[f"torch fused {threads}t"] = min(_timed(fused.step, repeat) for _ in range(5))


def step_memory(width, batch, kernels, steps=200):
    """Net bytes allocated by ``steps`` training steps after warm-up."""
    net = fastnn.Network(layer_sizes(width), seed=0, kernels=kernels)
    opt = fastnn.optimizers.get("adam", net.params, kernels=kernels, **HYPER)
    rng = np.random.default_rng(0)
    X = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    step, _ = training_step(net, opt, X, y)
    for _ in range(10):
        step()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(steps):
        step()
    gc.collect()  # numba's dispatcher leaves small reference cycles the collector frees
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


def default_train_wall(data_dir, kernels):
    cmd = [sys.executable, "-m", "fastnn", "train", "--no-progress", "--kernels", kernels]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()
    return wall, tail, " ".join(cmd[1:])


# ------------------------------------------------------------------ report
def machine():
    vendor, cpu = cpu_info()
    lib, arch, threads = blas_info()
    unset = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v not in os.environ]
    return {
        "cpu": cpu, "vendor": vendor, "cpus": _threads.available_cpus(),
        "python": platform.python_version(),
        "numpy": np.__version__, "blas": lib, "blas_kernel": arch, "blas_threads": threads,
        "openblas_env": ("unset" if len(unset) == 2 else
                         ", ".join(f"{v}={os.environ.get(v)}" for v in
                                   ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))),
    }


def _fmt(x):
    return f"{x / 1000:.1f}k"


def _best(rates, prefix):
    found = {k: v for k, v in rates.items() if k.startswith(prefix)}
    return max(found.items(), key=lambda kv: kv[1]) if found else None


def _peer_cells(row):
    """PyTorch best, JAX best and the best peer of one comparison row."""
    torch_best, jax_best = _best(row["all"], "torch"), _best(row["all"], "jax")
    peers = [b for b in (torch_best, jax_best) if b]
    best = max(peers, key=lambda kv: kv[1]) if peers else None
    cell = (lambda b: f"{_fmt(b[1])} ({b[0]})" if b else "-")
    return cell(torch_best), cell(jax_best), best


def _us(seconds):
    return f"{seconds * 1e6:.0f} us" if seconds < 0.01 else f"{seconds * 1e3:.2f} ms"


def _targets_table(results):
    """The targets of "ahead of JAX at every size" (#25), from the rows measured below."""
    rows = {(128, r["batch"]): r for r in results["adam"]}
    rows[results["wide"]["width"], results["wide"]["batch"]] = results["wide"]
    ratios = {(r.get("width", 128), r["batch"]): r["step"] / r["products"]
              for r in results["gemm_ratio"] if r["kernels"] == "numba"}
    lines = [
        "## Targets: fastnn against JAX, and against its own matrix products",
        "",
        ("fastnn (numba) samples/s over the best of JAX's `jax.jit` step and `lax.scan` "
         "epoch, from the tables below (one interleaved run), and the step over its own matrix "
         "products (the last table)."),
        "",
        "| case | fastnn | JAX best | fastnn / JAX (target) | step / products (target) |",
        "|---|---|---|---|---|",
    ]
    for key, target in JAX_TARGETS.items():
        row = rows.get(key)
        if row is None:
            continue
        jax_best = _best(row["all"], "jax")
        name = f"3x{key[0]}, batch {key[1]}"
        vs_jax = (f"{row['fastnn'] / jax_best[1]:.2f}x ({target}x)" if jax_best else "-")
        ratio = ratios.get(key)
        vs_products = (f"{ratio:.2f}x ({GEMM_RATIO_TARGETS[key]}x)" if ratio else "-")
        lines.append(f"| {name} | {_fmt(row['fastnn'])} | "
                     f"{_fmt(jax_best[1]) if jax_best else '-'} | {vs_jax} | {vs_products} |")
    return lines + [""]


def write_report(results, out_dir, command):
    out_dir.mkdir(parents=True, exist_ok=True)
    m = results["machine"]
    lines = [
        "# Performance: fastnn against textbook NumPy, PyTorch and JAX (CPU)",
        "",
        f"Reproduce: `{command}`",
        "",
        (f"Machine: {m['cpu']} ({m.get('vendor', 'vendor not recorded')}), {m['cpus']} CPUs; "
         f"Python {m['python']}, NumPy {m['numpy']}, "
         f"{m['blas']} with the `{m['blas_kernel']}` kernel (threadpoolctl), OpenBLAS "
         f"environment variables {m['openblas_env']}; numba {results.get('numba') or 'not installed'}, "
         f"PyTorch {results.get('torch') or 'not installed'}, JAX {results.get('jax') or 'not installed'}. "
         f"Data: {results['data']}. Float32, softmax cross-entropy, median samples/s of "
         f"{results['rounds']} interleaved shuffled passes over {results['n_samples']:,} images "
         f"(3x1024: over the first {results['n_wide']:,}), in the steady state: after untimed "
         f"passes that train at least {results.get('warmup_steps', 0):,} steps (at least one "
         "pass), so that the optimizer state has aged. fastnn runs "
         "as `fastnn.fit` runs it, once with each kernel set: with numba the step is compiled "
         f"whole and split between a team of {m['cpus']} threads with one BLAS thread each "
         "(fastnn/_team.py; the products split by batch rows, or by columns for layers of at "
         f"least {fastnn.step.COLUMN_SPLIT_WIDTH} units with at most 1/"
         f"{fastnn.step.COLUMN_SPLIT_RATIO} of their width in rows a thread); the NumPy "
         "kernels run the Python "
         "step, on one BLAS "
         f"thread below {fastnn.train.SINGLE_THREAD_MACS:,} multiply-adds in the largest "
         "product, else all. PyTorch is the fastest "
         "of 1 and 2 threads and of its default and fused optimizer per row; JAX the faster of "
         "a `jax.jit` step and a `lax.scan` epoch. GEMM peak (1024^3 sgemm): "
         f"{results['peak'][1]:.0f} GFLOP/s on 1 thread, {results['peak'][2]:.0f} on 2; float64 "
         f"(dgemm, what the textbook baseline runs on): {results['peak64'][1]:.0f} and "
         f"{results['peak64'][2]:.0f}. This machine is shared and noisy: compare within one run."),
        "",
    ]
    lines += _targets_table(results)
    if results.get("by_epoch"):
        lines += [
            "## Samples/s by epoch: does it slow down as training goes on?",
            "",
            (f"Full passes over the {results['n_samples']:,} images, Adam, timed one by one from "
             "the first (nothing before it; JAX compiles inside its first epoch), the "
             "systems interleaved epoch by epoch."),
            "",
            "| network, batch | system | " + " | ".join(
                f"epoch {i + 1}" for i in range(len(results["by_epoch"][0]["rates"]
                                                    ["fastnn numba"]))) + " | last / first |",
            "|---|---|" + "---|" * (len(results["by_epoch"][0]["rates"]["fastnn numba"]) + 1),
        ]
        for row in results["by_epoch"]:
            for name, rates in row["rates"].items():
                lines.append(f"| 3x{row['width']}, {row['batch']} | {name} | "
                             + " | ".join(_fmt(r) for r in rates)
                             + f" | {rates[-1] / rates[0]:.2f} |")
        lines.append("")
    lines += [
        "## 784-128-128-128-10, Adam",
        "",
        ("| batch | fastnn numba | fastnn numpy | textbook NumPy | PyTorch best | JAX best "
         "| numba / best peer (target) | numba / numpy | fastnn GFLOP/s |"),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["adam"]:
        torch_cell, jax_cell, best = _peer_cells(row)
        ratio = (f"{row['fastnn'] / best[1]:.2f}x ({PEER_TARGETS.get(row['batch'], '-')}x)"
                 if best else "-")
        lines.append(
            f"| {row['batch']} | {_fmt(row['fastnn'])} | {_fmt(row['fastnn_numpy'])} "
            f"| {_fmt(row['textbook'])} | {torch_cell} | {jax_cell} | {ratio} "
            f"| {row['fastnn'] / row['fastnn_numpy']:.2f}x | {row['gflops']:.0f} |")
    w = results["wide"]
    torch_cell, jax_cell, best = _peer_cells(w)
    lines += [
        "",
        f"## 784-1024-1024-1024-10, Adam, batch {w['batch']}",
        "",
        ("| fastnn numba | fastnn numpy | textbook NumPy | PyTorch best | JAX best "
         f"| numba / best peer (target {WIDE_TARGET}x) |"),
        "|---|---|---|---|---|---|",
        (f"| {_fmt(w['fastnn'])} | {_fmt(w['fastnn_numpy'])} | {_fmt(w['textbook'])} "
         f"| {torch_cell} | {jax_cell} | "
         + (f"{w['fastnn'] / best[1]:.2f}x |" if best else "- |")),
        "",
        "## Every optimizer (batch 64): 3x128 and 3x1024",
        "",
        ("| network | optimizer | fastnn numba | fastnn numpy | PyTorch best (setting) "
         "| numba / PyTorch (target >= 1) |"),
        "|---|---|---|---|---|---|",
    ]
    for row in results["optimizers"]:
        torch_best = _best(row["all"], "torch")
        lines.append(
            f"| 3x{row['width']} | {row['optimizer']} | {_fmt(row['fastnn'])} "
            f"| {_fmt(row['fastnn_numpy'])} | "
            + (f"{_fmt(torch_best[1])} ({torch_best[0]}) | {row['fastnn'] / torch_best[1]:.2f}x |"
               if torch_best else "- | - |"))
    lines += [
        "",
        "## Step against its own matrix products (Adam)",
        "",
        ("The matrix products of one step (ten for three hidden layers) timed alone, "
         "interleaved with the step (gather, forward, loss, backward and the Adam update), "
         "best of 5, on the same data. The products run as the step runs them: split between "
         "the same team of threads with the same barriers (numba), or in sequence with the "
         "BLAS threads the step gets (numpy)."),
        "",
        "| network | batch | kernels | step | its matrix products | ratio (target) |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["gemm_ratio"]:
        width = row.get("width", 128)
        target = GEMM_RATIO_TARGETS.get((width, row["batch"]), "-")
        lines.append(f"| 3x{width} | {row['batch']} | {row['kernels']} | {_us(row['step'])} "
                     f"| {_us(row['products'])} | {row['step'] / row['products']:.2f}x "
                     f"({target}x) |")
    for upd in results["updates"]:
        rows = upd["rows"]
        cols = [k for k in rows[-1] if k not in ("optimizer", "n_params", "bound", "notes")]
        cols += [k for r in rows for k in r if k not in cols and k not in
                 ("optimizer", "n_params", "bound", "notes")]
        best_numba = [k for k in cols if k.startswith("numba")]
        lines += [
            "",
            f"## Optimizer updates on {rows[0]['n_params']:,} float32 parameters",
            "",
            (f"Seconds per update of one flat vector (a fresh state: the pytest-benchmark "
             f"suite times aged ones), best of 5. The bound is the bytes one "
             f"pass must read and write (sgd 3 arrays, momentum/nag/rmsprop 5, adam/nadam 7) "
             f"over the bandwidth of a plain copy of the same size "
             f"({upd['bandwidth'] / 1e9:.1f} GB/s read + write)."),
            "",
            "| optimizer | " + " | ".join(cols) + " | bound | best numba / bound "
            f"(target <= {UPDATE_BOUND_TARGET}x) |",
            "|---" * (len(cols) + 3) + "|",
        ]
        for r in rows:
            numba_best = min((r[k] for k in best_numba if k in r), default=None)
            lines.append(f"| {r['optimizer']} | " + " | ".join(
                _us(r[k]) if k in r else "-" for k in cols) + f" | {_us(r['bound'])} | "
                + (f"{numba_best / r['bound']:.2f}x |" if numba_best else "- |"))
        notes = [r["notes"] for r in rows if r.get("notes")]
        if notes:
            lines += ["", "Note: " + "; ".join(notes) + "."]
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
         f"not counted twice) and buffers plus optimizer state of {mem['buffers'] / 2**20:.1f} "
         "MiB."),
    ]
    if results.get("default_run"):
        lines += ["", "## Default `fastnn train` (10 epochs, 3x256, batch 128)", "",
                  "| command | whole command | what it printed last |", "|---|---|---|"]
        for wall, tail, cmd in results["default_run"]:
            lines.append(f"| `{cmd}` | {wall:.1f} s | `{tail}` |")
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
    ax1.plot(batches, [r["fastnn"] for r in rows], "o-", label="fastnn, numba kernels")
    ax1.plot(batches, [r["fastnn_numpy"] for r in rows], "o--", label="fastnn, NumPy kernels")
    ax1.plot(batches, [r["textbook"] for r in rows], "s-", label="textbook NumPy (float64)")
    for prefix, label, style in (("torch", "PyTorch, best setting", "^-"),
                                 ("jax", "JAX, best of jit step / scan epoch", "v-")):
        if _best(rows[0]["all"], prefix):
            ax1.plot(batches, [_best(r["all"], prefix)[1] for r in rows], style, label=label)
    ax1.set(xscale="log", xlabel="batch size", ylabel="samples / s",
            title="784-128-128-128-10, Adam, float32")
    ax1.set_xticks(batches, [str(b) for b in batches])
    ax1.legend()
    ax2.plot(batches, [r["gflops"] for r in rows], "o-", label="fastnn training step (numba)")
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


def _import_peers(args):
    torch = jax_mods = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("PyTorch not installed: skipped (pip install torch==2.13.0)", file=sys.stderr)
    if not args.no_jax:
        try:
            import jax
            import jax.numpy as jnp
            import optax

            jax_mods = (jax, jnp, optax)
        except ImportError:
            print("JAX not installed: skipped (pip install jax==0.10.2 jaxlib==0.10.2 "
                  "optax==0.2.8)", file=sys.stderr)
    return torch, jax_mods


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=54000, help="images per pass")
    parser.add_argument("--wide-samples", type=int, default=8192,
                        help="images per pass for the 3x1024 network")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256, 1024])
    parser.add_argument("--warmup-steps", type=int, default=1000,
                        help="untimed steps each system trains before the timed passes")
    parser.add_argument("--epochs-shown", type=int, default=5,
                        help="epochs timed one by one for the samples/s-by-epoch table")
    parser.add_argument("--by-epoch-only", action="store_true",
                        help="only time the epochs one by one; print them, write no report "
                             "(to compare revisions: run it in a checkout of each)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--no-default-run", action="store_true")
    parser.add_argument("--out-dir", default="reports")
    parser.add_argument("--rewrite", metavar="JSON", default=None,
                        help="only re-render the report from a performance.json")
    args = parser.parse_args(argv)
    if args.rewrite:
        results = json.loads(Path(args.rewrite).read_text())
        for key in ("peak", "peak64"):
            results[key] = {int(k): v for k, v in results[key].items()}
        write_report(results, Path(args.out_dir), results["command"])
        return
    unset = "OPENBLAS_CORETYPE" not in os.environ and "OPENBLAS_L2_SIZE" not in os.environ
    command = ("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " if unset else "") + \
        ".venv/bin/python -m bench.compare " + " ".join(argv if argv is not None else sys.argv[1:])
    if fastnn._jit.resolve("auto") != "numba":
        parser.error('numba is not installed: pip install "fastnn[fast]"')

    X, y, source = load_data(args.data_dir, args.samples)
    X64 = X.astype(np.float64)
    torch, jax_mods = _import_peers(args)
    if torch is not None:
        X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    import numba

    results = {"command": command, "machine": machine(), "data": source,
               "rounds": args.rounds, "warmup_steps": args.warmup_steps,
               "n_samples": len(X), "n_wide": min(args.wide_samples, len(X)),
               "numba": numba.__version__,
               "torch": getattr(torch, "__version__", None),
               "jax": jax_mods[0].__version__ if jax_mods else None,
               "peak": {1: gemm_peak(1), 2: gemm_peak(2)},
               "peak64": {1: gemm_peak(1, np.float64), 2: gemm_peak(2, np.float64)},
               "adam": [], "optimizers": []}

    def compare(width, batch, optimizer, Xs, ys, with_textbook=True, with_jax=True):
        systems = {f"fastnn {k}": fastnn_runner(width, batch, optimizer, Xs, ys, kernels=k)
                   for k in KERNEL_SETS}
        if with_textbook:
            systems["textbook"] = textbook_runner(width, batch, X64[:len(Xs)], ys)
        if torch is not None:
            systems.update(torch_variants(torch, width, batch, optimizer,
                                          X_t[:len(Xs)], y_t[:len(Xs)]))
        if jax_mods is not None and with_jax:
            systems.update(jax_runners(jax_mods, width, batch, Xs, ys))
        rates = measure(systems, len(Xs), args.rounds,
                        warmup_passes(len(Xs), batch, args.warmup_steps))
        row = {"batch": batch, "width": width, "optimizer": optimizer, "all": rates,
               "fastnn": rates["fastnn numba"], "fastnn_numpy": rates["fastnn numpy"],
               "textbook": rates.get("textbook")}
        row["gflops"] = rates["fastnn numba"] / batch * step_flops(layer_sizes(width), batch) / 1e9
        print(json.dumps(row, default=str), flush=True)
        return row

    results["by_epoch"] = []
    for width, batch in ((128, 16), (1024, 64)):
        systems = {f"fastnn {k}": fastnn_runner(width, batch, "adam", X, y, kernels=k)
                   for k in KERNEL_SETS}
        if jax_mods is not None:
            systems["jax scan epoch"] = jax_runners(jax_mods, width, batch, X, y)["jax scan epoch"]
        row = {"width": width, "batch": batch, "rates": by_epoch(systems, len(X),
                                                                 args.epochs_shown)}
        print(json.dumps(row), flush=True)
        results["by_epoch"].append(row)
    if args.by_epoch_only:
        for row in results["by_epoch"]:
            for name, rates in row["rates"].items():
                print(f"3x{row['width']} batch {row['batch']}, {name}: "
                      + ", ".join(_fmt(r) for r in rates))
        return
    for batch in args.batches:
        results["adam"].append(compare(128, batch, "adam", X, y))
    n_wide = results["n_wide"]
    results["wide"] = compare(1024, 64, "adam", X[:n_wide], y[:n_wide])
    for width, Xs, ys in ((128, X, y), (1024, X[:n_wide], y[:n_wide])):
        for name in OPTIMIZERS:
            results["optimizers"].append(compare(width, 64, name, Xs, ys, with_textbook=False,
                                                 with_jax=False))
    results["gemm_ratio"] = []
    for width, batch in GEMM_RATIO_TARGETS:
        for kernels in KERNEL_SETS:
            t_step, t_prod = step_vs_products(width, batch, kernels)
            results["gemm_ratio"].append({"width": width, "batch": batch, "kernels": kernels,
                                          "step": t_step, "products": t_prod})
    results["updates"] = [update_benchmark(n, torch) for n in
                          (fastnn.Network(layer_sizes(128)).n_params,
                           fastnn.Network(layer_sizes(1024)).n_params)]
    print(json.dumps(results["updates"], default=str), flush=True)
    results["memory"] = {"steps": {
        f"3x{w} batch {b}, {k}": step_memory(w, b, k)
        for k in KERNEL_SETS for w, b in ((128, 64), (1024, 256))}}
    peak, buffers = epoch_peak_memory(X, y, 128, 64)
    results["memory"].update(epoch_peak=peak, buffers=buffers, data=X.nbytes)
    if not args.no_default_run:
        results["default_run"] = [default_train_wall(args.data_dir, k) for k in KERNEL_SETS]
    write_report(results, Path(args.out_dir), command)
    print(f"wrote {args.out_dir}/performance.md", file=sys.stderr)


if __name__ == "__main__":
    main()
