"""Adam's update on one core or on all of them: numba's threading layers measured (#25).

For a parameter count (134,794: 784-128-128-128-10; 2,913,290: 784-1024x3-10)
this times one Adam update, float32, with its arrays out of cache as they
are inside a training step (a 32 MB buffer is written between calls):

- ``serial``: one loop, the shape of fastnn's fused update;
- ``prange``: the same loop split over the cores with ``numba.prange``, in
  the threading layer named by ``--layer`` (``omp``, ``tbb`` or
  ``workqueue``; TBB needs the ``tbb`` wheel and its ``lib`` folder on
  ``LD_LIBRARY_PATH``);

and reports whether two Python threads entering the parallel loop at once
survive (what scikit-learn's threading backends do), in a child process::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench.threading_layers --layer omp
    LD_LIBRARY_PATH=.venv/lib python -m bench.threading_layers --layer tbb

Nothing in fastnn uses prange yet: this is the measurement that decides.
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

SIZES = {"3x128": 134_794, "3x1024": 2_913_290}


def kernels():
    import numba

    def body(w, g, m, v, lr, b1, b2, c1, c2, eps, i):
        gi = g[i]
        m[i] = b1 * m[i] + (1 - b1) * gi
        v[i] = b2 * v[i] + (1 - b2) * gi * gi
        w[i] -= lr * (m[i] * c1) / (np.sqrt(v[i] * c2) + eps)

    inner = numba.njit(inline="always", error_model="numpy")(body)

    @numba.njit(error_model="numpy", cache=False)
    def serial(w, g, m, v, lr, b1, b2, c1, c2, eps):
        for i in range(w.shape[0]):
            inner(w, g, m, v, lr, b1, b2, c1, c2, eps, i)

    @numba.njit(error_model="numpy", parallel=True, cache=False)
    def parallel(w, g, m, v, lr, b1, b2, c1, c2, eps):
        for i in numba.prange(w.shape[0]):
            inner(w, g, m, v, lr, b1, b2, c1, c2, eps, i)

    return serial, parallel


def arrays(n, seed=0):
    rng = np.random.default_rng(seed)
    w, g = rng.standard_normal((2, n), dtype=np.float32)
    m, v = np.zeros(n, np.float32), np.full(n, 1e-4, np.float32)
    return w, g, m, v


def time_update(fn, n, evict, calls=200):
    w, g, m, v = arrays(n)
    f32 = np.float32
    scalars = (f32(1e-3), f32(0.9), f32(0.999), f32(1.5), f32(1.2), f32(1e-8))
    fn(w, g, m, v, *scalars)
    times = []
    for _ in range(calls):
        evict += 1.0  # out of cache, as after a step's products
        start = time.perf_counter()
        fn(w, g, m, v, *scalars)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def two_threads_at_once(layer):
    """Does the layer survive two Python threads in prange at once? (child process)"""
    code = (f"import os; os.environ['NUMBA_THREADING_LAYER'] = {layer!r}\n"
            "import threading, numpy as np\n"
            "from bench.threading_layers import kernels, arrays\n"
            "_, par = kernels()\n"
            "f = np.float32\n"
            "def go():\n"
            "    w, g, m, v = arrays(2_000_000)\n"
            "    for _ in range(50): par(w, g, m, v, f(1e-3), f(.9), f(.999), f(1), f(1), f(1e-8))\n"
            "ts = [threading.Thread(target=go) for _ in range(2)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]; print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False, env=os.environ)
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return "survives" if proc.returncode == 0 else f"fails (exit {proc.returncode}: {tail[:120]})"


def fork_after_use(layer):
    """Does a child forked after the parent ran the parallel loop run it too? (fastnn's
    sweep workers are forked; GNU OpenMP is documented as not fork-safe.)"""
    code = (f"import os; os.environ['NUMBA_THREADING_LAYER'] = {layer!r}\n"
            "import multiprocessing as mp, numpy as np\n"
            "from bench.threading_layers import kernels, arrays\n"
            "_, par = kernels()\n"
            "f = np.float32\n"
            "def go(_=None):\n"
            "    w, g, m, v = arrays(500_000)\n"
            "    for _ in range(20): par(w, g, m, v, f(1e-3), f(.9), f(.999), f(1), f(1), f(1e-8))\n"
            "    return 1\n"
            "go()\n"
            "with mp.get_context('fork').Pool(2) as pool:\n"
            "    print(sum(pool.map(go, range(4))))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=False, env=os.environ)
    except subprocess.TimeoutExpired:
        return "hangs (killed after 120 s)"
    tail = (proc.stderr.strip().splitlines() or [""])[-1]
    return "works" if proc.returncode == 0 else f"fails (exit {proc.returncode}: {tail[:120]})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layer", default="omp", choices=["omp", "tbb", "workqueue"])
    args = parser.parse_args(argv)
    os.environ["NUMBA_THREADING_LAYER"] = args.layer
    start = time.perf_counter()
    import numba

    serial, parallel = kernels()
    evict = np.zeros(8 << 20, np.float32)
    rows = []
    for name, n in SIZES.items():
        one = time_update(serial, n, evict)
        two = time_update(parallel, n, evict)
        rows.append((name, n, one, two))
    layer = numba.threading_layer()
    print(f"# numba {numba.__version__}, threading layer {layer}, {numba.get_num_threads()} "
          f"threads; import+compile {time.perf_counter() - start:.1f} s")
    print("| network | parameters | serial | prange | speed-up |")
    print("|---|---|---|---|---|")
    for name, n, one, two in rows:
        print(f"| {name} | {n:,} | {one:.0f} us | {two:.0f} us | {one / two:.2f}x |")
    print(f"two Python threads in prange at once: {two_threads_at_once(args.layer)}")
    print(f"forked workers after the parent used it: {fork_after_use(args.layer)}")
    # threading is imported so the child's code reads like the parent's
    assert threading


if __name__ == "__main__":
    main()
