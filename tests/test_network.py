"""Network construction, dtypes, buffers, fit() and reproducibility."""

import tracemalloc

import numpy as np
import pytest
from conftest import tiny_problem

import fastnn

# Every test here runs once per kernel set (numpy, numba).
pytestmark = pytest.mark.usefixtures("kernels")


def test_params_layout_and_views():
    net = fastnn.Network([784, 128, 128, 10])
    shapes = [p.shape for p in net.params]
    assert shapes == [(784, 128), (128,), (128, 128), (128,), (128, 10), (10,)]
    assert net.params.flat.size == net.n_params == sum(int(np.prod(s)) for s in shapes)
    for p in net.params:
        assert np.shares_memory(p, net.params.flat)
    net.params[0][0, 0] = 42.0  # writable in place and seen through the flat array
    assert net.params.flat[0] == 42.0


@pytest.mark.parametrize("init", ["xavier", "he", "random", "Xavier"])
def test_init_is_reproducible_and_biases_are_zero(init):
    a = fastnn.Network([20, 30, 5], weight_init=init, seed=7)
    b = fastnn.Network([20, 30, 5], weight_init=init, seed=7)
    c = fastnn.Network([20, 30, 5], weight_init=init, seed=8)
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    assert not np.array_equal(a.params.flat, c.params.flat)
    assert all((bias == 0).all() for bias in a.params[1::2])


def test_init_scales():
    xav = fastnn.Network([300, 200, 10], weight_init="xavier", seed=0).params[0]
    limit = np.sqrt(6 / 500)
    assert np.abs(xav).max() <= limit and np.abs(xav).max() > 0.95 * limit
    he = fastnn.Network([300, 200, 10], weight_init="he", seed=0).params[0]
    assert he.std() == pytest.approx(np.sqrt(2 / 300), rel=0.05)
    rnd = fastnn.Network([300, 200, 10], weight_init="random", seed=0).params[0]
    assert rnd.std() == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_end_to_end_without_upcasting(dtype):
    X, y = tiny_problem(n=40, dtype=np.float64)  # float64 input is converted once
    net = fastnn.Network([5, 8, 3], dtype=dtype, seed=0)
    opt = fastnn.optimizers.get("adam", net.params)
    fastnn.fit(net, opt, X, y, epochs=2, batch_size=16, validation_data=(X, y))
    assert net.params.flat.dtype == dtype
    assert net.grads.flat.dtype == dtype
    assert all(layer.z.dtype == dtype and layer.delta.dtype == dtype for layer in net.layers)
    assert net.predict_proba(X).dtype == dtype
    assert net.gradients(X, y).flat.dtype == dtype
    assert net.predict(X).shape == (40,)


def test_predict_proba_rows_sum_to_one_and_predict_is_argmax():
    X, y = tiny_problem(n=5000, n_features=5)  # more rows than one evaluation chunk
    net = fastnn.Network([5, 8, 3], dtype="float64", seed=1)
    p = net.predict_proba(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(net.predict(X), p.argmax(axis=1))
    loss, acc = net.evaluate(X, y)
    assert loss == pytest.approx(-np.log(p[np.arange(5000), y]).mean(), rel=1e-10)
    assert acc == pytest.approx((p.argmax(axis=1) == y).mean())


@pytest.mark.parametrize("kwargs, message", [
    ({"layer_sizes": [5]}, "at least 2"),
    ({"layer_sizes": [5, 0, 3]}, r"layer_sizes\[1\] must be >= 1"),
    ({"layer_sizes": [5, 1]}, ">= 2 classes"),
    ({"activation": "swish"}, "activation must be one of"),
    ({"loss": "hinge"}, "loss must be one of"),
    ({"weight_init": "zeros"}, "weight_init must be one of"),
    ({"weight_decay": -1}, "weight_decay must be >= 0"),
    ({"dtype": "float16"}, "dtype must be float32 or float64"),
])
def test_bad_constructor_arguments(kwargs, message):
    args = {"layer_sizes": [5, 4, 3], **kwargs}
    with pytest.raises(fastnn.ConfigError, match=message):
        fastnn.Network(**args)


def test_bad_inputs_to_fit_are_rejected_with_the_row():
    X, y = tiny_problem(n=20)
    net = fastnn.Network([5, 4, 3], dtype="float64")
    opt = fastnn.optimizers.get("sgd", net.params)
    X[13, 2] = np.nan
    with pytest.raises(ValueError, match="row 13"):
        fastnn.fit(net, opt, X, y)
    X[13, 2] = 0
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\), got 7 at index 4"):
        fastnn.fit(net, opt, X, np.where(np.arange(20) == 4, 7, y))
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 5\)"):
        fastnn.fit(net, opt, X[:, :4], y)
    with pytest.raises(ValueError, match=r"y must have shape \(20,\)"):
        fastnn.fit(net, opt, X, y[:5])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fastnn.fit(net, opt, X, y, batch_size=0)


def _train(seed, dtype="float32"):
    X, _ = tiny_problem(n=200, n_features=6, n_classes=4, seed=0)
    y = X[:, :4].argmax(axis=1)  # a learnable rule
    net = fastnn.Network([6, 16, 16, 4], dtype=dtype, seed=seed)
    opt = fastnn.optimizers.get("nadam", net.params, lr=0.01)
    history = fastnn.fit(net, opt, X, y, epochs=5, batch_size=32, validation_data=(X, y),
                         seed=seed)
    return net, history


def test_fit_is_reproducible_bit_for_bit_from_the_seed():
    a, ha = _train(seed=3)
    b, hb = _train(seed=3)
    c, _ = _train(seed=4)
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    assert ha.history["loss"] == hb.history["loss"]
    assert not np.array_equal(a.params.flat, c.params.flat)


def test_fit_learns_and_history_has_every_epoch():
    _, history = _train(seed=0)
    assert history.epoch == [1, 2, 3, 4, 5]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "time"}
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.8  # 4 classes: chance is 0.25


def test_divergence_raises_with_epoch_and_step():
    X, y = tiny_problem(n=64)
    X *= 1e3
    net = fastnn.Network([5, 32, 3], dtype="float32", seed=0)
    opt = fastnn.optimizers.get("sgd", net.params, lr=1e3)
    with pytest.raises(fastnn.TrainingDivergedError) as info:
        fastnn.fit(net, opt, X, y, epochs=50, batch_size=8)
    assert info.value.epoch >= 1 and info.value.step >= 1
    assert "lower learning rate" in str(info.value)


def test_callback_can_stop_training():
    class StopAfterTwo(fastnn.Callback):
        def on_epoch_end(self, epoch, logs):
            return epoch == 2

    X, y = tiny_problem(n=30)
    net = fastnn.Network([5, 4, 3])
    history = fastnn.fit(net, fastnn.optimizers.get("adam", net.params), X, y, epochs=10,
                         callbacks=[StopAfterTwo()])
    assert history.epoch == [1, 2]


def test_training_step_does_not_allocate_after_warm_up():
    rng = np.random.default_rng(0)
    X = rng.random((64, 784), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    net = fastnn.Network([784, 128, 128, 10], seed=0)
    opt = fastnn.optimizers.get("adam", net.params)
    for _ in range(5):
        net.train_step_(X, y)
        opt.step(net.grads)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(50):
        net.train_step_(X, y)
        opt.step(net.grads)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert grown < 4096, f"training steps grew memory by {grown} bytes"
