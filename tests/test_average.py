"""The exponential moving average of the weights (fastnn.average)."""

import numpy as np
import pytest
from conftest import tiny_problem

import fastnn
from fastnn import TrainConfig, optimizers
from fastnn.average import WeightAverage, _ema_fused, ema_
from fastnn.errors import ConfigError
from fastnn.train import config_callbacks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_kernel_matches_the_numpy_reference_bit_for_bit(dtype):
    pytest.importorskip("numba")
    from fastnn import _jit

    rng = np.random.default_rng(0)
    average = rng.standard_normal(1003).astype(dtype)
    flat = rng.standard_normal(1003).astype(dtype)
    average[::7] = np.finfo(dtype).tiny * 1.5  # some entries cross into the subnormal range
    flat[::7] = 0
    expected = average.copy()
    ema_(expected, flat, dtype(0.5), np.empty_like(flat), np.empty(flat.shape, dtype=bool))
    tiny = dtype(np.finfo(dtype).tiny)
    _jit.compiled(_ema_fused, np.dtype(dtype).name)(average, flat, dtype(0.5), tiny)
    np.testing.assert_array_equal(average, expected)
    assert average.dtype == dtype
    assert np.all(average[::7] == 0)  # 0.75 tiny: flushed


@pytest.mark.parametrize("decay", [0, 1, -0.5, 1.5, "0.9", float("nan")])
def test_decay_outside_the_open_unit_interval_is_refused(decay):
    with pytest.raises(ConfigError, match="ema_decay"):
        WeightAverage(decay)
    if decay != 0:  # 0 is "off" in a config
        with pytest.raises(ConfigError, match="ema_decay"):
            TrainConfig(ema_decay=decay).validated()


def _problem():
    X, y = tiny_problem(n=120, n_features=6, n_classes=3, dtype=np.float32)
    Xv, yv = tiny_problem(n=60, n_features=6, n_classes=3, seed=5, dtype=np.float32)
    return X, y, Xv, yv


def _train(average, epochs=4, callbacks=(), **kw):
    X, y, Xv, yv = _problem()
    net = fastnn.Network([6, 8, 3], seed=0, dropout=0.1)
    opt = optimizers.get("adam", net.params, lr=0.05)
    history = fastnn.fit(net, opt, X, y, epochs=epochs, batch_size=16, validation_data=(Xv, yv),
                         average=average, callbacks=callbacks, **kw)
    return net, opt, history


@pytest.mark.usefixtures("kernels")
def test_the_average_follows_the_rule_and_ends_in_the_network():
    """Replaying the rule step by step over the trained weights gives fit's average."""
    X, y, _, _ = _problem()
    net = fastnn.Network([6, 8, 3], seed=0, dropout=0.1)
    opt = optimizers.get("adam", net.params, lr=0.05)
    expected = net.params.flat.astype(np.float64)
    seen = []

    class Replay(fastnn.Callback):
        def on_batch_end(self, step, loss):
            seen.append(net.params.flat.copy())

    average = WeightAverage(0.9)
    fastnn.fit(net, opt, X, y, epochs=3, batch_size=16, average=average, callbacks=[Replay()])
    for t, w in enumerate(seen, 1):
        d = min(0.9, (1 + t) / (10 + t))
        expected += (1 - d) * (w - expected)
    assert average.count == len(seen) == 3 * 8
    np.testing.assert_allclose(net.params.flat, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(net.params.flat, average.average)
    assert not np.array_equal(net.params.flat, seen[-1])  # not the last trained weights


@pytest.mark.usefixtures("kernels")
def test_validation_and_keep_best_see_the_averaged_weights():
    X, y, Xv, yv = _problem()
    config = TrainConfig(epochs=8, keep_best=True).validated()
    net = fastnn.Network([6, 8, 3], seed=0)
    opt = optimizers.get("adam", net.params, lr=0.05)
    recorded = []

    class Record(fastnn.Callback):
        def on_epoch_end(self, epoch, logs):
            recorded.append((net.params.flat.copy(), logs["val_accuracy"], logs["val_loss"]))

    history = fastnn.fit(net, opt, X, y, epochs=8, batch_size=16, validation_data=(Xv, yv),
                         average=0.95, callbacks=[*config_callbacks(config, opt), Record()])
    for params, val_acc, val_loss in recorded:  # the logged metrics are those of the average
        probe = fastnn.Network([6, 8, 3])
        probe.params.flat[:] = params
        assert probe.evaluate(Xv, yv) == (val_loss, val_acc)
    best = int(np.argmax(history["val_accuracy"]))
    np.testing.assert_array_equal(net.params.flat, recorded[best][0])


def test_off_by_default_and_without_effect_on_training():
    net_a, _, hist_a = _train(None)
    net_b, _, hist_b = _train(0.99)
    assert hist_a["loss"] == hist_b["loss"]  # training itself runs on the same weights
    assert not np.array_equal(net_a.params.flat, net_b.params.flat)


def test_continued_training_goes_on_from_the_trained_weights():
    """Two fit calls sharing an average equal one call of the summed epochs."""
    whole, _, _ = _train(WeightAverage(0.9), epochs=4, seed=np.random.default_rng(3))
    X, y, Xv, yv = _problem()
    net = fastnn.Network([6, 8, 3], seed=0, dropout=0.1)
    opt = optimizers.get("adam", net.params, lr=0.05)
    average, rng = WeightAverage(0.9), np.random.default_rng(3)
    for _ in range(2):
        fastnn.fit(net, opt, X, y, epochs=2, batch_size=16, validation_data=(Xv, yv),
                   average=average, seed=rng)
    np.testing.assert_array_equal(net.params.flat, whole.params.flat)


@pytest.mark.usefixtures("kernels")
def test_both_average_kernels_give_the_same_network():
    pytest.importorskip("numba")
    a, _, _ = _train(WeightAverage(0.9, kernels="numba"))
    b, _, _ = _train(WeightAverage(0.9, kernels="numpy"))
    np.testing.assert_array_equal(a.params.flat, b.params.flat)


def test_estimator_and_config_take_ema_decay():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    clf = fastnn.MLPClassifier(hidden_layer_sizes=(32,), epochs=5, random_state=0,
                               ema_decay=0.99).fit(X / 16, y)
    assert clf._average.count == 5 * int(np.ceil(len(X) / 64))
    np.testing.assert_array_equal(clf.network_.params.flat, clf._average.average)
    assert clf.score(X / 16, y) > 0.5
    clf.partial_fit(X / 16, y)
    assert clf._average.count == 6 * int(np.ceil(len(X) / 64))
    assert TrainConfig(ema_decay=0.999).weight_average().decay == 0.999
    assert TrainConfig().weight_average() is None
