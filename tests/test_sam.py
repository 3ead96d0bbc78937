"""Sharpness-aware minimisation: the gradient at the perturbed weights, on the same batch."""

import numpy as np
import pytest
from conftest import needs_numba

import fastnn
from fastnn import optimizers, train
from fastnn.augment import Augmentation
from fastnn.errors import TrainingDivergedError
from fastnn.train import make_step


def _problem(n=40, features=16, classes=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.random((n, features)).astype(dtype), rng.integers(0, classes, n).astype(np.intp))


def _sam_only(net, X, y, batch, rho):
    """The step fit runs with ``sam=rho``, without the optimizer's update."""
    opt = optimizers.get("sgd", net.params, kernels=net.kernels, threads=1)
    step = net.compiled_step(opt, X, y, batch, update=False, rng=np.random.default_rng(0),
                             sam=rho)
    if step is None:  # the Python step, with SAM around it
        step, _ = train._step_and_threads(net, opt, X, y, batch, None, None,
                                          np.random.default_rng(0), 1, rho)
    assert not step.updates
    return step


def _net(kernels, dtype="float64", **kw):
    return fastnn.Network([16, 12, 10, 4], dtype=dtype, seed=5, kernels=kernels, **kw)


@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
def test_a_step_descends_along_the_gradient_at_the_perturbed_weights(kernels, loss):
    rho, lr = 0.3, 0.1
    X, y = _problem()
    idx = np.arange(0, 40, 2)
    net = _net(kernels, loss=loss, weight_decay=1e-2)
    w0 = net.params.flat.copy()
    # by hand: g at w, then the gradient at w + rho g/|g|, then plain SGD with it
    ref = _net(kernels, loss=loss, weight_decay=1e-2)
    ref.train_step_(X[idx], y[idx])
    g = ref.grads.flat.copy()
    ref.params.flat[:] = w0 + rho * g / np.linalg.norm(g)
    ref.train_step_(X[idx], y[idx])
    expected = w0 - lr * ref.grads.flat

    opt = optimizers.get("sgd", net.params, lr=lr, kernels=kernels, threads=1)
    step, _ = make_step(net, opt, X, y, len(idx), sam=rho, threads=1)
    loss_value, _ = step(idx)
    np.testing.assert_allclose(net.params.flat, expected, rtol=0, atol=1e-14)
    # the loss reported is the one at the weights being trained, w
    first = _net(kernels, loss=loss, weight_decay=1e-2)
    assert loss_value == pytest.approx(first.train_step_(X[idx], y[idx])[0], abs=1e-14)


def test_the_weights_come_back_exactly(kernels):
    X, y = _problem(dtype=np.float32)
    net = _net(kernels, dtype="float32", dropout=0.2)
    w0 = net.params.flat.copy()
    step = _sam_only(net, X, y, 16, 0.5)
    step(np.arange(16))
    np.testing.assert_array_equal(net.params.flat, w0)  # restored from a copy, not subtracted


def test_batch_norm_statistics_move_once_per_step(kernels):
    X, y = _problem()
    idx = np.arange(24)
    net = _net(kernels, batch_norm=True)
    ref = _net(kernels, batch_norm=True)
    ref.train_step_(X[idx], y[idx])  # one pass at w: what the statistics should see
    step = _sam_only(net, X, y, len(idx), 0.2)
    step(idx)
    np.testing.assert_array_equal(net.running_stats.flat, ref.running_stats.flat)


def test_sam_changes_training_and_is_reproducible(kernels):
    X, y = _problem(n=120)

    def run(sam):
        net = _net(kernels)
        opt = optimizers.get("adam", net.params, kernels=kernels, threads=1)
        fastnn.fit(net, opt, X, y, epochs=3, batch_size=16, seed=2, sam=sam)
        return net.params.flat

    np.testing.assert_array_equal(run(0.05), run(0.05))
    np.testing.assert_array_equal(run(0), run(None))  # 0 is off
    assert not np.array_equal(run(0.05), run(None))


def test_a_non_finite_loss_at_the_perturbed_weights_stops_before_the_update(kernels):
    X, y = _problem()
    net = _net(kernels)
    w0 = net.params.flat.copy()
    opt = optimizers.get("adam", net.params, kernels=kernels, threads=1)
    with pytest.raises(TrainingDivergedError):
        fastnn.fit(net, opt, X, y, epochs=1, batch_size=40, sam=1e300)
    np.testing.assert_array_equal(net.params.flat, w0)
    assert opt.t == 0


def test_a_negative_radius_is_refused():
    X, y = _problem()
    net = _net("numpy")
    opt = optimizers.get("sgd", net.params)
    with pytest.raises(ValueError, match="sam must be >= 0"):
        fastnn.fit(net, opt, X, y, epochs=1, sam=-0.1)


def _augmented_run(compiled, dtype, clip_norm=None):
    rng = np.random.default_rng(0)
    X = rng.random((90, 36)).astype(dtype)
    y = rng.integers(0, 4, 90).astype(np.intp)
    net = fastnn.Network([36, 20, 12, 4], dtype=dtype, seed=3, kernels="numba", dropout=0.2,
                         weight_decay=1e-3)
    if not compiled:
        net.compiled_step = lambda *args, **kwargs: None  # the Python step, the reference
    opt = optimizers.get("nadam", net.params, kernels="numba", threads=1)
    aug = Augmentation(shift=1, flip=True, image_shape=(6, 6), mixup=0.4)
    history = fastnn.fit(net, opt, X, y, epochs=2, batch_size=32, seed=1, augment=aug, sam=0.1,
                         clip_norm=clip_norm)
    return net.params.flat, history["loss"]


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip_norm", [None, 0.5])
def test_compiled_and_python_steps_agree_bit_for_bit(dtype, clip_norm):
    # The second pass reuses the batch as gathered, shifted, flipped and mixed.
    a_params, a_loss = _augmented_run(True, dtype, clip_norm)
    b_params, b_loss = _augmented_run(False, dtype, clip_norm)
    np.testing.assert_array_equal(a_params, b_params)
    assert a_loss == b_loss


def test_estimator_and_sweep_accept_it(tmp_path):
    from fastnn import sweep
    from fastnn.estimator import MLPClassifier

    X, y = _problem(n=60, dtype=np.float32)
    clf = MLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0, sam=0.05).fit(X, y)
    plain = MLPClassifier(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(X, y)
    assert clf.get_params()["sam"] == 0.05
    assert not np.array_equal(clf.network_.params.flat, plain.network_.params.flat)
    spec = sweep.spec.parse_spec({"method": "grid", "parameters": {"sam": {"values": [0.0, 0.05]}}})
    assert [config["sam"] for config in spec.configs()] == [0.0, 0.05]
