"""asv benchmarks of fastnn's engine (see asv.conf.json and the README).

Each suite times one unit of the engine over the same grid as the
pytest-benchmark suites: batch size x hidden width of a 784-w-w-w-10 ReLU
network in float32. BLAS threads are pinned in asv.conf.json
(``matrix.env_nobuild``) so that runs stay comparable; inside that budget
the training step picks its own BLAS threads as ``fastnn.fit`` does.
Suites of the engine take a ``kernels`` parameter (numba's fused kernels
and the NumPy reference); numba is in the benchmark environment's matrix.

The training step and the optimizer updates run in the steady state: their
optimizer state is aged in ``setup`` (``bench.common.age_state``: 1,000
updates in which two thirds of the gradient turns zero), as a few epochs of
training leave it; a fresh state hides what subnormal floats cost on Intel
CPUs. Record the CPU with its BLAS kernel in the asv machine file (the
README's ``asv machine --cpu "$(python -m bench.common)"``), so that every
result says where it was measured.
"""

import sys
import time
from pathlib import Path

import numpy as np

import fastnn
from fastnn import losses
from fastnn.train import blas_threads, make_step

# asv imports this file from benchmark_dir: the repository root holds bench.common
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import age_state

BATCH_SIZES = [16, 32, 64, 128, 256, 1024]
WIDTHS = [32, 64, 128, 512, 1024]
KERNELS = ["numba", "numpy"]


def _net(width, optimizer="adam", kernels="numpy"):
    net = fastnn.Network([784, width, width, width, 10], seed=0, kernels=kernels)
    return net, fastnn.optimizers.get(optimizer, net.params, kernels=kernels)


def _batch(batch):
    rng = np.random.default_rng(0)
    return rng.random((batch, 784), dtype=np.float32), rng.integers(0, 10, batch)


class TrainStep:
    """Forward, fused loss, backward and an Adam update of one batch."""

    params = (BATCH_SIZES, WIDTHS, KERNELS)
    param_names = ("batch", "width", "kernels")

    def setup(self, batch, width, kernels):
        self.net, self.opt = _net(width, kernels=kernels)
        X, y = _batch(batch)
        # as fit() runs it: compiled whole with the numba kernels
        self.step, self.threads = make_step(self.net, self.opt, X, y.astype(np.intp), batch)
        self.idx = np.arange(batch)
        self._step()  # allocate the buffers (and compile) outside the timing
        age_state(self.net, self.opt)

    def _step(self):
        with blas_threads(self.threads):
            self.step(self.idx)

    def time_step(self, batch, width, kernels):
        self._step()

    def track_samples_per_second(self, batch, width, kernels):
        start = time.perf_counter()
        for _ in range(20):
            self._step()
        return 20 * batch / (time.perf_counter() - start)

    track_samples_per_second.unit = "samples/s"


class Forward:
    """Inference on one batch (predict_proba)."""

    params = (BATCH_SIZES, WIDTHS, KERNELS)
    param_names = ("batch", "width", "kernels")

    def setup(self, batch, width, kernels):
        self.net, _ = _net(width, kernels=kernels)
        self.X, _ = _batch(batch)
        self.net.predict_proba(self.X)

    def time_predict_proba(self, batch, width, kernels):
        self.net.predict_proba(self.X)


class OptimizerUpdate:
    """One in-place update of all parameters of the 3-hidden-layer network."""

    params = (sorted(fastnn.optimizers.OPTIMIZERS), WIDTHS, KERNELS)
    param_names = ("optimizer", "width", "kernels")

    def setup(self, name, width, kernels):
        self.net, self.opt = _net(width, name, kernels)
        age_state(self.net, self.opt)  # leaves the gradient of the steady state in net.grads

    def time_step(self, name, width, kernels):
        self.opt.step(self.net.grads)


class SoftmaxCrossEntropy:
    """The fused softmax + cross-entropy + dL/dz kernel on 10 classes."""

    params = BATCH_SIZES
    param_names = ("batch",)

    def setup(self, batch):
        rng = np.random.default_rng(0)
        self.logits = rng.standard_normal((batch, 10)).astype(np.float32)
        self.z = np.empty_like(self.logits)
        self.y = rng.integers(0, 10, batch)
        self.row_buf = np.empty((batch, 1), np.float32)
        self.rows = np.arange(batch)

    def time_kernel(self, batch):
        np.copyto(self.z, self.logits)
        losses.softmax_cross_entropy_(self.z, self.y, self.z, self.row_buf, self.rows)

