"""pytest-benchmark suites of the engine's kernels.

Timed with ``pytest bench --benchmark-enable`` (see the README); in CI they
run once each as plain tests (``--benchmark-disable`` in pyproject.toml) and
assert that what they timed computed the right thing.

The training step and the optimizer updates are timed in the steady state:
their optimizer state aged first (:func:`bench.common.age_state`, 1,000
updates with two thirds of the gradient zero), as a few epochs of training
leave it; a fresh state hides what subnormal floats cost on Intel CPUs.
Every record carries the CPU vendor and model and the BLAS kernel
(``extra_info["machine"]``).
"""

import numpy as np
import pytest

import fastnn
from bench.common import (
    AGE_STEPS,
    BATCH_SIZES,
    WIDTHS,
    age_state,
    forward_flops,
    kernel_sets,
    layer_sizes,
    machine_line,
    make_batch,
    make_net,
    step_flops,
    subnormal_share,
)
from bench.textbook import TextbookMLP
from fastnn import _jit, losses
from fastnn.augment import Augmentation
from fastnn.train import blas_threads, make_step


def _record(benchmark, samples, flops):
    benchmark.extra_info["machine"] = machine_line()
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        seconds = stats.stats.median
        benchmark.extra_info["samples_per_s"] = samples / seconds
        benchmark.extra_info["gflops"] = flops / seconds / 1e9


KERNELS = kernel_sets()


def _age(benchmark, net, opt):
    """Age the state fully when timing; 20 updates when the suite runs as plain tests (CI)."""
    age_state(net, opt, steps=20 if getattr(benchmark, "disabled", False) else AGE_STEPS)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_train_step(benchmark, batch, width, kernels):
    """Gather, forward, fused loss, backward and an Adam update on one batch, as fit() runs it.

    Timed with an aged Adam state (the steady state of training).
    """
    X, y = make_batch(batch)
    net, opt = make_net(width, kernels=kernels)
    reference = TextbookMLP(layer_sizes(width), seed=0)
    expected_loss, _ = reference.loss_and_gradients(X, y)
    step, threads = make_step(net, opt, X, y.astype(np.intp), batch)
    idx = np.arange(batch)

    first, _ = step(idx)
    assert first == pytest.approx(expected_loss, rel=1e-4)
    _age(benchmark, net, opt)
    with blas_threads(threads):
        benchmark(step, idx)
    _record(benchmark, batch, step_flops(net.layer_sizes, batch))
    assert np.isfinite(net.params.flat).all()
    assert subnormal_share(opt) == 0
    assert net.grads[0].shape == (784, width)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("augment", ["none", "shift 2 + flip", "mixup 0.2"])
@pytest.mark.parametrize("batch", [16, 128])
def test_train_step_augmented(benchmark, batch, augment, kernels):
    """What shifting, flipping or mixup in the gather costs a step (3x128, a 1,024-image set)."""
    X, y = make_batch(1024)
    net, opt = make_net(128, kernels=kernels)
    aug = {"none": None, "shift 2 + flip": Augmentation(2, True, (28, 28)),
           "mixup 0.2": Augmentation(mixup=0.2)}[augment]
    step, threads = make_step(net, opt, X, y.astype(np.intp), batch, augment=aug)
    idx = np.arange(0, 1024, 1024 // batch)[:batch]
    with blas_threads(threads):
        loss, _ = benchmark(step, idx)
    assert np.isfinite(loss)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batch norm"])
@pytest.mark.parametrize("batch", [16, 128])
def test_train_step_batch_norm(benchmark, batch, batch_norm, kernels):
    """What batch normalisation costs a step of the accuracy recipe's network (3x512).

    With it the step runs in Python (no compiled whole step): the figure
    includes that.
    """
    X, y = make_batch(batch)
    net, opt = make_net(512, kernels=kernels, batch_norm=batch_norm)
    step, threads = make_step(net, opt, X, y.astype(np.intp), batch)
    idx = np.arange(batch)
    with blas_threads(threads):
        loss, _ = benchmark(step, idx)
    assert np.isfinite(loss) and np.isfinite(net.running_stats.flat).all()
    assert len(net.norms) == (3 if batch_norm else 0)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("sam", [None, 0.05], ids=["plain", "sam"])
@pytest.mark.parametrize("batch", [16, 128])
def test_train_step_sam(benchmark, batch, sam, kernels):
    """What sharpness-aware minimisation costs a step of the base recipe's network (3x512).

    Two forward and backward passes and the update outside the compiled
    step: about twice the plain step.
    """
    X, y = make_batch(batch)
    net, opt = make_net(512, kernels=kernels)
    before = net.params.flat.copy()
    step, threads = make_step(net, opt, X, y.astype(np.intp), batch, sam=sam)
    idx = np.arange(batch)
    with blas_threads(threads):
        loss, _ = benchmark(step, idx)
    assert np.isfinite(loss) and not np.array_equal(net.params.flat, before)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_forward(benchmark, batch, width, kernels):
    """Inference: predict_proba on one batch, no backward buffers touched."""
    X, _ = make_batch(batch)
    net, _ = make_net(width, kernels=kernels)
    probs = benchmark(net.predict_proba, X)
    _record(benchmark, batch, forward_flops(net.layer_sizes, batch))
    reference = TextbookMLP(layer_sizes(width), seed=0, dtype=np.float32)
    logits = reference.forward(X)[-1]
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    assert probs.shape == (batch, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", sorted(fastnn.optimizers.OPTIMIZERS))
def test_optimizer_update(benchmark, name, width, kernels):
    """One in-place update of all parameters of the 3-hidden-layer network, state aged.

    Two thirds of the gradient is zero, as in the aging (:func:`age_state`).
    """
    net, opt = make_net(width, optimizer=name, kernels=kernels)
    _age(benchmark, net, opt)
    before = net.params.flat.copy()
    benchmark(opt.step, net.grads)
    n = net.n_params
    _record(benchmark, n, 0)
    benchmark.extra_info["params"] = n
    moved = net.params.flat - before
    assert np.isfinite(moved).all()
    assert subnormal_share(opt) == 0
    # every step moves against the gradient for sgd; the rest move every live entry
    assert np.count_nonzero(moved) > 0.99 * np.count_nonzero(net.grads.flat)
    if name == "sgd":
        assert np.all(moved * net.grads.flat <= 0)


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_softmax_cross_entropy_kernel(benchmark, batch):
    """The fused softmax + cross-entropy + dL/dz kernel."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((batch, 10)) * 3).astype(np.float32)
    y = rng.integers(0, 10, batch)
    z = np.empty_like(logits)
    row_buf = np.empty((batch, 1), np.float32)
    rows = np.arange(batch)

    def kernel():
        np.copyto(z, logits)
        return losses.softmax_cross_entropy_(z, y, z, row_buf, rows)

    loss = benchmark(kernel)
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.log(p[rows, y]).mean(), rel=1e-5)
    p[rows, y] -= 1
    np.testing.assert_allclose(z, p / batch, rtol=1e-4, atol=1e-7)


@pytest.mark.skipif("numba" not in KERNELS, reason='numba not installed (fastnn[fast])')
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_softmax_cross_entropy_fused_kernel(benchmark, batch):
    """The numba row kernel: softmax, loss, number correct and dL/dz in one sweep."""
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((batch, 10)) * 3).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.intp)
    z = np.empty_like(logits)
    kernel = _jit.compiled(losses.get("cross_entropy").fused, "float32")
    settings = fastnn.Network([2, 10], kernels="numpy")._settings  # one-hot targets
    inv_n = np.float32(1 / batch)
    lam, mu = np.float32(1), np.float32(0)  # no mixup

    def run():
        np.copyto(z, logits)
        return kernel(z, y, z, settings, inv_n, lam, mu)

    total, correct = benchmark(run)
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    rows = np.arange(batch)
    assert total / batch == pytest.approx(-np.log(p[rows, y]).mean(), rel=1e-5)
    assert correct == np.count_nonzero(logits.argmax(axis=1) == y)
    p[rows, y] -= 1
    np.testing.assert_allclose(z, p / batch, rtol=1e-4, atol=1e-7)
