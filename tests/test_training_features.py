"""Schedules, early stopping, checkpoints, clipping and History conveniences."""

import math

import numpy as np
import pytest
from conftest import tiny_problem

import fastnn
from fastnn import schedules
from fastnn.train import clip_gradients_

# Every test here runs once per kernel set (numpy, numba).
pytestmark = pytest.mark.usefixtures("kernels")


@pytest.mark.parametrize("name, kwargs, formula", [
    ("constant", {}, lambda e: 0.1),
    ("step", {"decay": 0.5, "step": 3}, lambda e: 0.1 * 0.5 ** (e // 3)),
    ("exponential", {"decay": 0.9}, lambda e: 0.1 * 0.9 ** e),
    ("cosine", {"min_lr": 0.01}, lambda e: 0.01 + 0.09 * (1 + math.cos(math.pi * e / 10)) / 2),
])
def test_schedule_follows_its_formula(name, kwargs, formula):
    schedule = schedules.make(name, 0.1, epochs=10, **kwargs)
    for e in range(10):
        assert schedule(e) == pytest.approx(formula(e), rel=1e-12)


def test_warmup_then_cosine():
    schedule = schedules.make("cosine", 0.1, epochs=12, warmup=2)
    assert [schedule(0), schedule(1)] == pytest.approx([0.05, 0.1])
    # after the warm-up, cosine over the remaining 10 epochs
    assert schedule(2) == pytest.approx(0.1)
    assert schedule(7) == pytest.approx(0.05)
    assert schedule(11) == pytest.approx(0.1 * (1 + math.cos(math.pi * 9 / 10)) / 2)


def test_bad_schedule_settings():
    with pytest.raises(fastnn.ConfigError, match="lr_schedule must be one of"):
        schedules.make("linear", 0.1)
    with pytest.raises(fastnn.ConfigError, match="lr_decay must be <= 1"):
        schedules.make("step", 0.1, decay=2)


def test_scheduler_sets_the_optimizer_rate_every_epoch():
    X, y = tiny_problem(n=40)
    net = fastnn.Network([5, 4, 3])
    opt = fastnn.optimizers.get("sgd", net.params, lr=0.1)
    sched = fastnn.LearningRateScheduler(opt, schedules.make("step", 0.1, decay=0.5, step=1))
    history = fastnn.fit(net, opt, X, y, epochs=4, callbacks=[sched])
    assert history["lr"] == pytest.approx([0.1, 0.05, 0.025, 0.0125])


def _learnable(n=300, seed=0):
    X, _ = tiny_problem(n=n, n_features=6, n_classes=3, seed=seed)
    return X, X[:, :3].argmax(axis=1)


def test_early_stopping_stops_and_restores_the_best_weights():
    X, y = _learnable()
    X_val, y_val = _learnable(seed=1)
    y_val = (y_val + 1) % 3  # a validation set it can only get worse on

    class Snapshot(fastnn.Callback):
        def on_train_begin(self, net, n_batches):
            self.net, self.params = net, {}

        def on_epoch_end(self, epoch, logs):
            self.params[epoch] = self.net.params.flat.copy()

    net = fastnn.Network([6, 16, 3], seed=0)
    stopper = fastnn.EarlyStopping(patience=2)
    snap = Snapshot()
    history = fastnn.fit(net, fastnn.optimizers.get("adam", net.params, lr=0.01), X, y,
                         epochs=50, validation_data=(X_val, y_val), callbacks=[snap, stopper])
    assert stopper.stopped_epoch == len(history.epoch) < 50
    best = int(np.argmin(history["val_loss"])) + 1
    assert stopper.best_epoch == best
    np.testing.assert_array_equal(net.params.flat, snap.params[best])


def test_early_stopping_needs_validation_data():
    X, y = _learnable()
    net = fastnn.Network([6, 4, 3])
    with pytest.raises(ValueError, match="val_loss"):
        fastnn.fit(net, fastnn.optimizers.get("adam", net.params), X, y, epochs=2,
                   callbacks=[fastnn.EarlyStopping()])


def test_checkpoint_saves_the_best_epoch(tmp_path):
    X, y = _learnable()
    X_val, y_val = _learnable(seed=1)
    net = fastnn.Network([6, 16, 3], seed=0)
    path = tmp_path / "best.npz"
    history = fastnn.fit(net, fastnn.optimizers.get("adam", net.params, lr=0.01), X, y,
                         epochs=6, validation_data=(X_val, y_val),
                         callbacks=[fastnn.ModelCheckpoint(path)])
    _, header = fastnn.load_model(path)
    best = int(np.argmin(history["val_loss"])) + 1
    assert header["metadata"]["epoch"] == best
    assert header["metadata"]["val_loss"] == pytest.approx(min(history["val_loss"]))


def test_clipping_bounds_the_gradient_norm():
    g = np.array([3.0, 4.0], dtype=np.float32)
    assert clip_gradients_(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-6)
    g = np.array([0.3, 0.4])
    clip_gradients_(g, 1.0)
    np.testing.assert_array_equal(g, [0.3, 0.4])  # under the bound: untouched


def test_fit_with_clipping_and_dropout_trains():
    X, y = _learnable()
    net = fastnn.Network([6, 32, 3], seed=0, dropout=0.2)
    history = fastnn.fit(net, fastnn.optimizers.get("adam", net.params, lr=0.01), X, y,
                         epochs=15, clip_norm=1.0, validation_data=(X, y))
    assert history["val_accuracy"][-1] > 0.85


def test_history_dataframe_and_plot(tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    X, y = _learnable()
    net = fastnn.Network([6, 8, 3])
    history = fastnn.fit(net, fastnn.optimizers.get("adam", net.params), X, y, epochs=3,
                         validation_data=(X, y))
    frame = history.to_dataframe()
    assert list(frame.index) == [1, 2, 3] and frame["val_loss"].tolist() == history["val_loss"]
    history.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_cli_schedule_and_lr_column(capsys):
    from fastnn.cli import main

    rc = main(["train", "-d", "digits", "-e", "3", "-nhl", "1", "-sz", "16", "--no-progress",
               "--lr-schedule", "step", "--lr-step", "1", "--lr-decay", "0.5", "-lr", "0.01"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "lr 0.01 " in out and "lr 0.005 " in out and "lr 0.0025 " in out


def test_features_compose_and_the_old_keywords_still_work_with_a_warning():
    rng = np.random.default_rng(0)
    X = rng.random((64, 4))
    y = rng.integers(0, 3, 64)

    def run(**kw):
        net = fastnn.Network([4, 6, 3], seed=1, kernels="numpy")
        opt = fastnn.optimizers.get("adam", net.params, kernels="numpy", lr=0.01)
        fastnn.fit(net, opt, X, y, epochs=2, batch_size=16, **kw)
        return net.params.flat.copy()

    new = run(features=[fastnn.train.ClipNorm(0.1), fastnn.train.SAM(0.05)])
    with pytest.warns(DeprecationWarning, match="features="):
        old = run(clip_norm=0.1, sam=0.05)
    np.testing.assert_array_equal(new, old)
    assert not np.array_equal(new, run())
    with pytest.raises(ValueError, match="two ClipNorm"):
        run(features=[fastnn.train.ClipNorm(1), fastnn.train.ClipNorm(2)])
    with pytest.raises(TypeError, match="not a training feature"):
        run(features=[0.5])
    with pytest.raises(TypeError, match="unexpected keyword"):
        run(clipnorm=1.0)
