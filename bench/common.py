"""Shared helpers of the benchmarks: networks, data, aged optimizer state, FLOP counts, machine."""

import itertools
import os
import platform
from pathlib import Path

import numpy as np

import fastnn

BATCH_SIZES = (16, 32, 64, 128, 256, 1024)
WIDTHS = (32, 64, 128, 512, 1024)
DEPTH = 3  # hidden layers, as in the 784-128-128-128-10 reference network
N_FEATURES, N_CLASSES = 784, 10
# Steady state: the optimizer state after AGE_STEPS updates in which a
# growing share of the gradient is exactly zero (pixels that are zero in
# every image, units that stop firing). The entries stop during the first
# DYING_STEPS updates, so at the end they have gone 700-1,000 updates
# without a gradient: with a factor 0.9 a step that is where an unflushed
# float32 state passes through the subnormal range (below 1.18e-38).
AGE_STEPS = 1000
DYING_STEPS = 300
DEAD_SHARE = 2 / 3  # the issue that found the slowdown saw 67-95% of Adam's m subnormal


def layer_sizes(width, depth=DEPTH):
    return [N_FEATURES] + [width] * depth + [N_CLASSES]


def make_batch(batch, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.random((batch, N_FEATURES), dtype=np.float64).astype(dtype)
    y = rng.integers(0, N_CLASSES, batch)
    return X, y


def kernel_sets():
    """The kernel sets this installation can run: numpy always, numba when it imports."""
    return ["numpy", "numba"] if fastnn._jit.numba_available() else ["numpy"]


def make_net(width, optimizer="adam", seed=0, dtype="float32", threads=None, kernels=None,
             **network):
    net = fastnn.Network(layer_sizes(width), activation="relu", seed=seed, dtype=dtype,
                         kernels=kernels, **network)
    opt = fastnn.optimizers.get(optimizer, net.params, threads=threads, kernels=kernels)
    return net, opt


def age_state(net, opt, steps=AGE_STEPS, dead_share=DEAD_SHARE, seed=0):
    """Age ``opt``'s state as ``steps`` updates with partly zero gradients do; keep the weights.

    Three updates with a gradient of size 1e-3 everywhere, then ``steps``
    more in which a ``dead_share`` of the entries, one after another over the
    first :data:`DYING_STEPS`, get exactly zero: from then on their state
    decays by its factor (beta1, momentum, ...) at every update. The
    optimizer's own kernels run the updates, so the state ends as the
    engine leaves it (flushed or not). The parameters are put back
    afterwards, so the benchmark's network is the one it built;
    ``net.grads`` is left holding the last gradient (the dead share zero),
    for benchmarks of the update.
    """
    rng = np.random.default_rng(seed)
    saved = net.params.flat.copy()
    grads = net.grads.flat
    grads[:] = rng.standard_normal(grads.size).astype(grads.dtype) * grads.dtype.type(1e-3)
    dying = rng.permutation(grads.size)[:int(dead_share * grads.size)]
    bounds = np.linspace(0, dying.size, min(DYING_STEPS, steps) + 1).astype(int)
    if opt.state:  # nothing to age for plain SGD
        for _ in range(3):
            opt.step(net.grads)
        for k in range(steps):
            if k + 1 < bounds.size:
                grads[dying[bounds[k]:bounds[k + 1]]] = 0
            opt.step(net.grads)
    grads[dying] = 0
    net.params.flat[:] = saved


def subnormal_share(opt):
    """The share of the optimizer's state entries that are subnormal (0 when flushed)."""
    arrays = [a for arrays in opt.state.values() for a in arrays]
    total = sum(a.size for a in arrays)
    bad = sum(int(np.count_nonzero((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))
              for a in arrays)
    return bad / total if total else 0.0


def step_flops(sizes, batch):
    """Floating-point operations of the matrix products of one training step.

    Forward z = a @ W, backward dW = a.T @ delta and, for every layer but
    the first, delta_prev = delta @ W.T: 2 flops per multiply-add.
    """
    macs = [a * b for a, b in itertools.pairwise(sizes)]
    return 2 * batch * (3 * sum(macs) - macs[0])


def forward_flops(sizes, batch):
    return 2 * batch * sum(a * b for a, b in itertools.pairwise(sizes))


def cpu_info():
    """(vendor, model) of the CPU, e.g. ('GenuineIntel', 'Intel(R) Xeon(R) Processor')."""
    vendor, model = "unknown", platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "vendor_id" and vendor == "unknown":
                vendor = value.strip()
            elif key.strip() == "model name":
                model = value.strip()
                break
    except OSError:
        pass
    return vendor, model


def blas_info():
    """(library, kernel architecture, threads) as threadpoolctl reports them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ("unknown", "unknown", 0)
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return (pool.get("internal_api"), pool.get("architecture"), pool.get("num_threads"))
    return ("none", "none", 0)


def cpu_field():
    """The CPU's model and vendor and the BLAS kernel (what asv records as the CPU)."""
    vendor, model = cpu_info()
    lib, arch, _ = blas_info()
    return f"{model} ({vendor}), {lib} {arch} kernel"


def machine_line():
    """:func:`cpu_field`, then the BLAS threads and the OpenBLAS environment variables."""
    env = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
           if v in os.environ]
    return (f"{cpu_field()}, {blas_info()[2]} BLAS threads, OpenBLAS env "
            + (", ".join(env) if env else "unset"))


if __name__ == "__main__":
    print(cpu_field())
