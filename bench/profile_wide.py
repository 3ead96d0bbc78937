"""Where the 3x1024 step's time goes, next to JAX's: the profile behind the target not reached.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python -m bench.profile_wide

784-1024-1024-1024-10, Adam, float32, batch 64, random data, best of 5:

- fastnn's compiled step split between a team of 2 (as ``fit`` runs it),
  with and without the optimizer's update, and with 48 MB of other memory
  written between steps (what the update's traffic does to the products'
  caches);
- JAX's step under ``lax.scan`` (gather, gradient, optax Adam in one XLA
  program) with and without the update (JAX optional: skipped when it does
  not import).
"""

import functools
import itertools
import time

import numpy as np

import fastnn
from bench.common import layer_sizes, machine_line
from bench.compare import HYPER
from fastnn.train import blas_threads

BATCH, WIDTH, ROWS = 64, 1024, 4096


def _best(fn, repeat, rounds=5):
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def fastnn_steps(X, y):
    """Seconds per team step: with the update, without it, and with 48 MB written between."""
    out = {}
    big = np.zeros(12_000_000, np.float32)
    idx = np.arange(BATCH)
    for update in (True, False):
        net = fastnn.Network(layer_sizes(WIDTH), seed=0, kernels="numba")
        opt = fastnn.optimizers.get("adam", net.params, kernels="numba", **HYPER)
        step = net.compiled_step(opt, X, y, BATCH, threads=2, update=update)
        run = functools.partial(step, idx)

        def dirtied(run=run):
            run()
            big.fill(1.0)

        try:
            with blas_threads(1):
                out[f"fastnn team step, update {'inside' if update else 'off'}"] = _best(run, 20)
                if not update:
                    flush = _best(lambda: big.fill(1.0), 20)
                    out["fastnn team step, update off, + 48 MB written between steps "
                        "(minus the writing)"] = _best(dirtied, 20) - flush
        finally:
            step.close()
    return out


def jax_steps(X, y):
    """Seconds per JAX step in a lax.scan epoch: with optax Adam, and the gradient alone."""
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        return {}
    rng = np.random.default_rng(0)
    sizes = layer_sizes(WIDTH)
    params = [(jnp.asarray(rng.standard_normal((i, o), dtype=np.float32) * 0.03),
               jnp.zeros(o, jnp.float32)) for i, o in itertools.pairwise(sizes)]
    X_d, y_d = jnp.asarray(X), jnp.asarray(y.astype(np.int32))
    tx = optax.adam(HYPER["lr"])

    def loss_fn(p, xb, yb):
        a = xb
        for W, b in p[:-1]:
            a = jax.nn.relu(a @ W + b)
        return optax.softmax_cross_entropy_with_integer_labels(a @ p[-1][0] + p[-1][1],
                                                               yb).mean()

    def adam(p, s, xb, yb):
        updates, s = tx.update(jax.grad(loss_fn)(p, xb, yb), s, p)
        return optax.apply_updates(p, updates), s

    def gradient_only(p, s, xb, yb):  # the gradient summed into s, so it is not dropped
        return p, jax.tree_util.tree_map(lambda a, g: a + g, s, jax.grad(loss_fn)(p, xb, yb))

    @functools.partial(jax.jit, static_argnums=0)
    def scan(f, p, s, order):
        return jax.lax.scan(lambda c, i: (f(*c, X_d[i], y_d[i]), None), (p, s), order)[0]

    order = jnp.asarray(rng.permutation(ROWS).reshape(-1, BATCH))
    out = {}
    for name, f, s in (("JAX scan step, optax Adam", adam, tx.init(params)),
                       ("JAX scan step, gradient only", gradient_only,
                        jax.tree_util.tree_map(jnp.zeros_like, params))):
        out[name] = _best(lambda f=f, s=s: jax.block_until_ready(scan(f, params, s, order)),
                          1) / order.shape[0]
    return out


def main():
    rng = np.random.default_rng(0)
    X = rng.random((ROWS, 784), dtype=np.float32)
    y = rng.integers(0, 10, ROWS).astype(np.intp)
    print(machine_line())
    for name, seconds in {**fastnn_steps(X, y), **jax_steps(X, y)}.items():
        print(f"{name}: {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
