"""The numba kernel set against the NumPy reference, and kernel selection."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import needs_numba
from test_kernels import settings_of

import fastnn
from fastnn import _jit, activations, losses, optimizers

DTYPES = [np.float32, np.float64]
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-14}}


def _fused(func, dtype):
    return _jit.compiled(func, np.dtype(dtype).name)


@needs_numba
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(activations.ACTIVATIONS))
def test_fused_activation_matches_the_numpy_pair(name, dtype, use_mask):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((7, 5)) * 3).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    upstream = rng.standard_normal((7, 5)).astype(dtype)
    mask = (rng.random((7, 5)) > 0.3).astype(dtype) * dtype(1 / 0.7)
    act = activations.get(name)
    s = settings_of(dtype)
    fused_forward, fused_backward = (_fused(f, dtype) for f in (act.forward_fused,
                                                                 act.backward_fused))
    expected_a, pre_ref = z + b, np.empty_like(z)
    act.forward(expected_a, pre_ref, np.empty_like(z), s[0])
    a, pre = z.copy(), np.empty_like(z)
    fused_forward(a, b, pre, s)
    np.testing.assert_allclose(a, expected_a, **TOL[dtype])

    expected_delta = upstream * mask if use_mask else upstream.copy()
    act.backward(expected_delta, expected_a, pre_ref, np.empty_like(a), s[0])
    delta = upstream.copy()
    fused_backward(delta, a, pre, mask if use_mask else a, use_mask, s)
    np.testing.assert_allclose(delta, expected_delta, **TOL[dtype])


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_keeps_nan_so_divergence_shows(dtype):
    z = np.array([[np.nan, -1.0, 2.0]], dtype=dtype)
    _fused(activations.get("relu").forward_fused, dtype)(z, np.zeros(3, dtype),
                                                          np.empty((0, 3), dtype),
                                                          settings_of(dtype))
    assert np.isnan(z[0, 0]) and z[0, 1] == 0 and z[0, 2] == 2


@needs_numba
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss, in_place", [  # squared error needs a separate delta
    ("cross_entropy", False), ("cross_entropy", True), ("mean_squared_error", False)])
@pytest.mark.parametrize("mix", [(1.0, 0.0), (0.75, 0.25), (0.25, 0.75)],
                         ids=["plain", "mixup", "mixup-partner"])
def test_fused_loss_matches_the_numpy_kernel(loss, dtype, in_place, smoothing, mix):
    rng = np.random.default_rng(1)
    n, k = 9, 4
    logits = (rng.standard_normal((n, k)) * 2).astype(dtype)
    logits[3] = [1e4, -1e4, 0, 1e4]  # huge logits and a tie for the arg-max
    y = rng.integers(0, k, n).astype(np.intp)
    z = logits.copy()
    delta = np.empty_like(z)
    lam, mu = mix
    counted = np.roll(y, -1) if mu > lam else y  # a mixed row: the larger share's label
    ref_correct = int(np.count_nonzero(z.argmax(axis=1) == counted))
    on, off = losses.smoothed_targets(smoothing, k)
    ref_loss = losses.get(loss).reference(z, y, delta, np.empty((n, 1), dtype), np.arange(n),
                                          on, off, lam, mu)
    net = fastnn.Network([2, k], dtype=np.dtype(dtype).name, label_smoothing=smoothing,
                         kernels="numpy")

    z2 = logits.copy()
    delta2 = z2 if in_place else np.empty_like(z2)
    with np.errstate(over="raise", invalid="raise"):
        total, correct = _fused(losses.get(loss).fused, dtype)(z2, y, delta2, net._settings,
                                                               dtype(1 / n), dtype(lam),
                                                               dtype(mu))
    per_row = 1 if loss == "cross_entropy" else k
    assert total / (n * per_row) == pytest.approx(ref_loss, rel=TOL[dtype]["rtol"])
    assert int(correct) == ref_correct
    np.testing.assert_allclose(delta2, delta, **TOL[dtype])
    if loss == "mean_squared_error":  # both leave the probabilities in z
        np.testing.assert_allclose(z2, z, **TOL[dtype])


def _train(kernels, optimizer, dtype, steps=50, **net_kw):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((steps * 8, 12)).astype(dtype)
    y = rng.integers(0, 4, steps * 8)
    net = fastnn.Network([12, 16, 16, 4], dtype=dtype, seed=0, kernels=kernels, **net_kw)
    opt = optimizers.get(optimizer, net.params, kernels=kernels, lr=1e-2)
    history = fastnn.fit(net, opt, X, y, epochs=1, batch_size=8, seed=0)
    return net, opt, history


@needs_numba
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", list(optimizers.OPTIMIZERS))
def test_fifty_steps_agree_between_kernel_sets(optimizer, dtype):
    extra = {"weight_decay": 1e-3} if optimizer in ("sgd", "adam") else {}
    a, opt_a, hist_a = _train("numpy", optimizer, dtype, **extra)
    b, opt_b, hist_b = _train("numba", optimizer, dtype, **extra)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.abs(a.params.flat).max()
    np.testing.assert_allclose(b.params.flat, a.params.flat, rtol=0, atol=rtol * scale)
    for name in opt_a.state:
        np.testing.assert_allclose(opt_b.state[name][0], opt_a.state[name][0],
                                   rtol=0, atol=rtol * np.abs(opt_a.state[name][0]).max())
    assert hist_b["loss"][0] == pytest.approx(hist_a["loss"][0], rel=rtol)
    assert opt_b.kernels == "numba" and opt_a.kernels == "numpy"


@needs_numba
@pytest.mark.parametrize("activation", list(activations.ACTIVATIONS))
@pytest.mark.parametrize("loss", list(losses.LOSSES))
def test_dropout_and_every_activation_agree_between_kernel_sets(activation, loss):
    kw = {"activation": activation, "loss": loss, "dropout": 0.25}
    a = _train("numpy", "adam", np.float64, steps=20, **kw)[0]
    b = _train("numba", "adam", np.float64, steps=20, **kw)[0]
    np.testing.assert_allclose(b.params.flat, a.params.flat, rtol=0,
                               atol=1e-12 * np.abs(a.params.flat).max())


@pytest.mark.parametrize("kernels", [
    "numpy", pytest.param("numba", marks=needs_numba)])
def test_each_kernel_set_is_bit_reproducible(kernels):
    a = _train(kernels, "nadam", np.float32)[0]
    b = _train(kernels, "nadam", np.float32)[0]
    np.testing.assert_array_equal(a.params.flat, b.params.flat)


@needs_numba
@pytest.mark.parametrize("optimizer", list(optimizers.OPTIMIZERS))
def test_thread_split_is_bit_identical(optimizer):
    size = optimizers.PARALLEL_MIN_SIZE + 1001
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(size).astype(np.float32) for _ in range(3)]
    results = []
    for threads in (1, 2):
        w = np.ones(size, dtype=np.float32)
        opt = optimizers.get(optimizer, [w], threads=threads, kernels="numba", lr=1e-2)
        for g in grads:
            opt.step([g])
        results.append(w)
    np.testing.assert_array_equal(results[0], results[1])


@needs_numba
def test_list_of_views_and_mixed_dtypes_use_the_fused_kernels():
    w32 = np.ones((3, 4), dtype=np.float32)
    w64 = np.ones(5)
    opt = optimizers.get("adam", [w32, w64], kernels="numba", lr=0.1)
    opt.step([np.full((3, 4), 2, np.float32), np.full(5, -2.0)])
    assert opt.kernels == "numba"
    np.testing.assert_allclose(w32, 0.9, rtol=1e-6)
    np.testing.assert_allclose(w64, 1.1)
    assert w32.dtype == np.float32


def test_non_contiguous_params_fall_back_or_are_refused():
    base = np.ones((4, 6))
    view = base[:, ::2]
    assert optimizers.get("sgd", [view], kernels="auto").kernels == "numpy"
    if _jit.numba_available():
        with pytest.raises(fastnn.ConfigError, match="C-contiguous"):
            optimizers.get("sgd", [view], kernels="numba")


def test_kernel_selection(monkeypatch):
    monkeypatch.delenv("FASTNN_KERNELS", raising=False)
    assert _jit.resolve("numpy") == "numpy"
    assert _jit.resolve(None) == ("numba" if _jit.numba_available() else "numpy")
    monkeypatch.setenv("FASTNN_KERNELS", "NumPy")
    assert fastnn.Network([3, 2]).kernels == "numpy"
    monkeypatch.setenv("FASTNN_KERNELS", "fast")
    with pytest.raises(fastnn.ConfigError, match="FASTNN_KERNELS must be one of auto"):
        fastnn.Network([3, 2])
    with pytest.raises(fastnn.ConfigError, match="kernels must be one of"):
        fastnn.Network([3, 2], kernels="cuda")


def test_numba_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(_jit, "numba_available", lambda: False)
    assert _jit.resolve("auto") == "numpy"
    with pytest.raises(fastnn.ConfigError, match=r'pip install "fastnn\[fast\]"'):
        fastnn.Network([3, 2], kernels="numba")


def test_numpy_kernels_never_import_numba():
    code = ("import sys, numpy as np, fastnn; net = fastnn.Network([4, 3, 2], kernels='numpy'); "
            "opt = fastnn.optimizers.get('adam', net.params, kernels='numpy'); "
            "fastnn.fit(net, opt, np.ones((8, 4)), [0, 1] * 4, epochs=1); "
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_numba
def test_unwritable_package_dir_caches_in_the_user_dir(tmp_path):
    # As root nothing is really read-only, so the check fastnn makes is forced.
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    code = ("from fastnn import _jit; _jit._writable = lambda path: False; import fastnn; "
            "net = fastnn.Network([4, 3, 2], kernels='numba'); "
            "fastnn.optimizers.get('adam', net.params, kernels='numba'); "
            "import os; print(os.environ['NUMBA_CACHE_DIR'])")
    for _ in range(2):  # the second process loads what the first one wrote
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True).stdout.strip()
    assert out == str(tmp_path / "cache" / "fastnn" / "numba")
    cached = list((tmp_path / "cache" / "fastnn" / "numba").rglob("*.nbi"))
    assert any("adam" in p.name.lower() for p in cached), cached
    assert any("relu_forward" in p.name for p in cached), cached
