"""The training step compiled whole against the Python step it replaces."""

import gc
import tracemalloc

import numpy as np
import pytest
from conftest import needs_numba

import fastnn
from fastnn import _blas, optimizers
from fastnn.errors import TrainingDivergedError

pytestmark = needs_numba
OPTIMIZERS = list(optimizers.OPTIMIZERS)


def _data(n=300, features=12, classes=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    # intp labels, as fit() hands them to the compiled step
    return (rng.random((n, features), dtype=np.float64).astype(dtype),
            rng.integers(0, classes, n).astype(np.intp))


def _train(compiled, optimizer="adam", epochs=2, batch=32, dtype="float32", fit_kw=None,
           **net_kw):
    X, y = _data(dtype=dtype)
    net = fastnn.Network([12, 16, 8, 4], dtype=dtype, seed=3, kernels="numba", **net_kw)
    opt = optimizers.get(optimizer, net.params, kernels="numba", threads=1)
    if not compiled:
        net.compiled_step = lambda *args, **kwargs: None  # the Python step
    # one thread: a team splits the products and rounds otherwise (test_team.py)
    history = fastnn.fit(net, opt, X, y, epochs=epochs, batch_size=batch, seed=1, threads=1,
                         **(fit_kw or {}))
    return net, opt, history


def _assert_same_run(a, b):
    (net_a, opt_a, hist_a), (net_b, opt_b, hist_b) = a, b
    np.testing.assert_array_equal(net_a.params.flat, net_b.params.flat)
    assert opt_a.t == opt_b.t
    for name in opt_a.state:
        np.testing.assert_array_equal(opt_a.state[name][0], opt_b.state[name][0])
    assert hist_a["loss"] == hist_b["loss"]
    assert hist_a["accuracy"] == hist_b["accuracy"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_compiled_step_equals_the_python_step_bit_for_bit(optimizer, dtype):
    # Same kernels, same BLAS calls, same order: not one bit may differ.
    _assert_same_run(_train(True, optimizer, dtype=dtype), _train(False, optimizer, dtype=dtype))


@pytest.mark.parametrize("activation", ["identity", "sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_compiled_step_with_dropout_and_weight_decay_equals_the_python_step(activation, loss):
    kw = {"activation": activation, "loss": loss, "dropout": 0.25, "weight_decay": 1e-3}
    _assert_same_run(_train(True, "nadam", **kw), _train(False, "nadam", **kw))


def test_short_last_batch_and_clipping_equal_the_python_step():
    # 300 rows at batch 64 leave a last batch of 44; clipping keeps the
    # update in Python (the global norm needs every gradient first).
    kw = {"batch": 64, "fit_kw": {"clip_norm": 0.05}}
    _assert_same_run(_train(True, "momentum", **kw), _train(False, "momentum", **kw))


def test_fit_uses_the_compiled_step_with_numba_kernels_only():
    X, y = _data()
    net = fastnn.Network([12, 16, 4], kernels="numba")
    opt = optimizers.get("adam", net.params, kernels="numba", threads=1)
    step = net.compiled_step(opt, X, y, 32)
    assert step is not None and step.updates
    assert net.compiled_step(opt, X, y, 32, update=False).updates is False
    numpy_net = fastnn.Network([12, 16, 4], kernels="numpy")
    assert numpy_net.compiled_step(opt, X, y, 32) is None
    numpy_opt = optimizers.get("adam", net.params, kernels="numpy")
    assert net.compiled_step(numpy_opt, X, y, 32).updates is False


def _fit_with(cls, compiled, X, y):
    """Parameters after one epoch with optimizer class ``cls`` (lr 0.1), compiled step or not."""
    net = fastnn.Network([12, 16, 4], kernels="numba")
    opt = cls(net.params, lr=0.1, kernels="numba", threads=1)
    if compiled:
        assert net.compiled_step(opt, X, y, 32).updates  # the update runs inside
    else:
        net.compiled_step = lambda *args, **kwargs: None
    fastnn.fit(net, opt, X, y, epochs=1, batch_size=32)
    return net.params.flat.copy()


def test_a_new_optimizer_runs_inside_the_compiled_step_from_its_own_class_only():
    # A subclass declares its record fields and its fused loop; nothing in the
    # step names it, yet the step runs its update and matches the Python step.
    class HalfSGD(optimizers.SGD):
        _fields = ("half_lr",)

        def _update(self, w, g, scratch):
            np.multiply(g, 0.5 * self.lr, out=scratch)
            w -= scratch

        @staticmethod
        @optimizers._update_kernel("half_lr")
        def _fused(w, g, s0, s1, u):
            half_lr = u[0].half_lr
            for i in range(w.size):
                w[i] -= g[i] * half_lr

        def _scalars(self):
            return (0.5 * self.lr,)

    X, y = _data()
    results = [_fit_with(HalfSGD, compiled, X, y) for compiled in (True, False)]
    np.testing.assert_array_equal(results[0], results[1])
    sgd_net = fastnn.Network([12, 16, 4], kernels="numba")
    fastnn.fit(sgd_net, optimizers.get("sgd", sgd_net.params, lr=0.05, kernels="numba"), X, y,
               epochs=1, batch_size=32)
    np.testing.assert_allclose(results[0], sgd_net.params.flat, rtol=1e-6, atol=1e-7)


def test_divergence_stops_before_the_update_as_the_python_step_does():
    runs = []
    for compiled in (True, False):
        with pytest.raises(TrainingDivergedError) as info:
            _diverge(compiled)
        runs.append(info.value)
    assert (runs[0].epoch, runs[0].step) == (runs[1].epoch, runs[1].step)


def _diverge(compiled):
    X, y = _data()
    X *= 50
    net = fastnn.Network([12, 16, 8, 4], activation="identity", kernels="numba", seed=0)
    opt = optimizers.get("sgd", net.params, kernels="numba", lr=1e3)
    if not compiled:
        net.compiled_step = lambda *args, **kwargs: None
    fastnn.fit(net, opt, X, y, epochs=50, batch_size=32)


def test_diverged_step_leaves_parameters_and_step_count_alone():
    X, y = _data()
    net = fastnn.Network([12, 16, 4], kernels="numba")
    opt = optimizers.get("nadam", net.params, kernels="numba", threads=1)
    step = net.compiled_step(opt, X, y, 16)
    step(np.arange(16))
    before, t, mu = net.params.flat.copy(), opt.t, opt._mu_product
    net.params.flat[0] = np.nan  # the next forward pass gives a NaN loss
    before[0] = np.nan
    loss, _ = step(np.arange(16, 32))
    assert not np.isfinite(loss)
    np.testing.assert_array_equal(net.params.flat, before)
    assert (opt.t, opt._mu_product) == (t, mu)


def test_large_networks_on_several_threads_update_in_python():
    X, y = _data(features=800, n=64)
    net = fastnn.Network([800, 700, 4], kernels="numba")  # 563k parameters
    assert net.n_params >= optimizers.PARALLEL_MIN_SIZE
    two = optimizers.get("adam", net.params, kernels="numba", threads=2)
    one = optimizers.get("adam", net.params, kernels="numba", threads=1)
    assert net.compiled_step(two, X, y, 32).updates is False
    assert net.compiled_step(one, X, y, 32).updates is True


def test_read_only_input_compiles_before_the_loop():
    X, y = _data()
    X.flags.writeable = False
    net = fastnn.Network([12, 16, 4], kernels="numba")
    opt = optimizers.get("adam", net.params, kernels="numba")
    fastnn.fit(net, opt, X, y, epochs=1, batch_size=32)
    assert np.isfinite(net.params.flat).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_step_allocates_nothing_in_steady_state(threads):
    # threads=2: the step split between a team (fastnn._team)
    X, y = _data()
    net = fastnn.Network([12, 16, 8, 4], kernels="numba", dropout=0.1, weight_decay=1e-4)
    opt = optimizers.get("adam", net.params, kernels="numba", threads=1)
    step = net.compiled_step(opt, X, y, 32, threads=threads)
    assert step.threads == threads
    idx = np.arange(32)
    try:
        for _ in range(10):
            step(idx)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(200):
            step(idx)
        # numba's dispatcher leaves two small reference cycles per call, which
        # the garbage collector frees (resident memory stays flat over 200k calls)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
    finally:
        step.close()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 4096, grown


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpys_blas_is_found_and_gives_numpys_products(dtype):
    address = _blas.gemm(dtype)
    assert isinstance(address, int) and address
    rng = np.random.default_rng(0)
    a, b = rng.random((9, 7)).astype(dtype), rng.random((7, 5)).astype(dtype)
    found = _blas._library()
    func = _blas._cached(found, "gemm", dtype)
    c = np.empty((9, 5), dtype=dtype)
    func(_blas.ROW_MAJOR, _blas.NO_TRANS, _blas.NO_TRANS, 9, 5, 7, 1.0, a.ctypes.data, 7,
         b.ctypes.data, 5, 0.0, c.ctypes.data, 5)
    np.testing.assert_array_equal(c, np.dot(a, b))


@pytest.mark.parametrize(("kernel", "batch", "expected"), [
    ("skylakex", 16, 1), ("skylakex", 128, 1), ("skylakex", 1024, 2),
    ("haswell", 16, 2), ("", 16, 2)])
def test_compiled_step_blas_threads_follow_the_blas_kernel(monkeypatch, kernel, batch, expected):
    # a step on one thread (no team): one BLAS thread was faster with the
    # SkylakeX kernel below 20M multiply-adds
    monkeypatch.setattr(fastnn.train, "blas_kernel", lambda: kernel)
    monkeypatch.setattr(fastnn.train, "team_threads_for", lambda budget: 1)
    X, y = _data(n=1024, features=784, classes=10)
    net = fastnn.Network([784, 128, 128, 128, 10], kernels="numba")
    opt = optimizers.get("adam", net.params, kernels="numba")
    _, threads = fastnn.train.make_step(net, opt, X, y, batch, threads=2)
    assert threads == expected


def test_a_step_split_between_a_team_calls_blas_on_one_thread(monkeypatch):
    monkeypatch.setattr(fastnn._threads, "available_cpus", lambda: 2)
    X, y = _data(n=256, features=784, classes=10)
    net = fastnn.Network([784, 128, 10], kernels="numba")
    opt = optimizers.get("adam", net.params, kernels="numba")
    step, threads = fastnn.train.make_step(net, opt, X, y, 64, threads=2)
    step.close()
    assert threads == 1


def test_the_blas_kernel_is_named():
    name = fastnn.train.blas_kernel()
    assert isinstance(name, str) and name == name.lower()


def _half_sgd(w, g, s0, s1, u):
    lr = u[0].lr * 0.5
    for i in range(w.size):
        w[i] -= g[i] * lr


def _double_sgd(w, g, s0, s1, u):
    lr = u[0].lr * 2.0
    for i in range(w.size):
        w[i] -= g[i] * lr


_half_sgd.__name__ = _double_sgd.__name__ = "_fused"  # as each class names its kernel


def test_two_optimizers_with_the_same_record_run_their_own_kernels():
    # The compiled programs are cached on disk by name: two update kernels
    # with the same record type (fields ("lr",)) must not share one program.
    X, y = _data()
    results = {}
    for factor, kernel in ((0.5, _half_sgd), (2.0, _double_sgd)):
        cls = type(f"Scaled{kernel.__name__}", (optimizers.SGD,),
                   {"_fused": staticmethod(optimizers._update_kernel("lr")(kernel))})
        for compiled in (True, False):
            results[factor, compiled] = _fit_with(cls, compiled, X, y)
    for factor in (0.5, 2.0):
        np.testing.assert_array_equal(results[factor, True], results[factor, False])
    assert not np.allclose(results[0.5, True], results[2.0, True])
