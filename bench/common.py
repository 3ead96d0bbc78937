"""Shared helpers of the benchmarks: networks, data, FLOP counts, BLAS info."""

import itertools

import numpy as np

import fastnn

BATCH_SIZES = (16, 32, 64, 128, 256, 1024)
WIDTHS = (32, 64, 128, 512, 1024)
DEPTH = 3  # hidden layers, as in the 784-128-128-128-10 reference network
N_FEATURES, N_CLASSES = 784, 10


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


def step_flops(sizes, batch):
    """Floating-point operations of the matrix products of one training step.

    Forward z = a @ W, backward dW = a.T @ delta and, for every layer but
    the first, delta_prev = delta @ W.T: 2 flops per multiply-add.
    """
    macs = [a * b for a, b in itertools.pairwise(sizes)]
    return 2 * batch * (3 * sum(macs) - macs[0])


def forward_flops(sizes, batch):
    return 2 * batch * sum(a * b for a, b in itertools.pairwise(sizes))


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
