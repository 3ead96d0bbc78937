"""Label smoothing, keep-best and the settings plumbing of the accuracy options."""

import numpy as np
import pytest
from conftest import tiny_problem

import fastnn
from fastnn import TrainConfig, optimizers
from fastnn.errors import ConfigError
from fastnn.train import config_callbacks


@pytest.mark.parametrize("value, expected", [(True, True), ("false", False), ("Yes", True),
                                             (0, False), (1, True), (np.bool_(True), True)])
def test_flags_accept_booleans_and_words(value, expected):
    assert TrainConfig(augment_flip=value).validated().augment_flip is expected


@pytest.mark.parametrize("value", ["maybe", 2, 0.5, None])
def test_flags_refuse_anything_else(value):
    with pytest.raises(ConfigError, match="augment_flip must be true or false"):
        TrainConfig(augment_flip=value).validated()


def test_sweep_style_dict_reaches_the_new_settings():
    config = TrainConfig.from_dict({"label_smoothing": 0.1, "augment_shift": 2,
                                    "augment_flip": "true", "keep_best": True}).validated()
    assert config.augmentation(784).image_shape == (28, 28)
    assert config.augmentation(784).flip is True
    assert TrainConfig().augmentation(784) is None
    assert TrainConfig(mixup=0.2).validated().augmentation(10).mixup == 0.2
    with pytest.raises(ConfigError, match="mixup must be >= 0"):
        TrainConfig(mixup=-1).validated()


@pytest.mark.usefixtures("kernels")
def test_keep_best_ends_on_the_epoch_of_best_validation_accuracy():
    X, y = tiny_problem(n=120, n_features=6, n_classes=3, dtype=np.float32)
    Xv, yv = tiny_problem(n=60, n_features=6, n_classes=3, seed=5, dtype=np.float32)
    config = TrainConfig(epochs=12, keep_best=True, lr=0.05).validated()
    net = fastnn.Network([6, 8, 3], seed=0)
    opt = optimizers.get("adam", net.params, lr=0.05)
    history = fastnn.fit(net, opt, X, y, epochs=12, batch_size=16, validation_data=(Xv, yv),
                         callbacks=config_callbacks(config, opt))
    assert net.evaluate(Xv, yv)[1] == max(history["val_accuracy"])


def test_label_smoothing_survives_save_and_load(tmp_path):
    net = fastnn.Network([4, 3, 2], label_smoothing=0.05)
    fastnn.save_model(net, tmp_path / "m.npz")
    loaded, _ = fastnn.load_model(tmp_path / "m.npz")
    assert loaded.label_smoothing == 0.05


def test_estimator_takes_the_accuracy_options():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    clf = fastnn.MLPClassifier(hidden_layer_sizes=(32,), epochs=15, random_state=0,
                               augment_shift=1, augment_flip=False, label_smoothing=0.1,
                               dropout=0.1, mixup=0.2)
    clf.fit(X / 16, y)
    assert clf._augment.mixup == 0.2
    assert clf.network_.label_smoothing == 0.1 and clf.network_.dropout == 0.1
    assert clf.score(X / 16, y) > 0.5
    bad = fastnn.MLPClassifier(epochs=1, augment_flip=True)
    with pytest.raises(ConfigError, match="not a square"):
        bad.fit(X[:, :60], y)


def test_keep_best_takes_the_later_of_tied_epochs():
    from fastnn.train import EarlyStopping

    net = fastnn.Network([2, 2])
    for prefer_later, expected in ((False, 2), (True, 4)):
        stopper = EarlyStopping(monitor="val_accuracy", patience=10, prefer_later=prefer_later)
        stopper.on_train_begin(net, 1)
        for epoch, acc in enumerate([0.5, 0.9, 0.8, 0.9, 0.85], 1):
            stopper.on_epoch_end(epoch, {"val_accuracy": acc})
        assert stopper.best_epoch == expected and stopper.best == 0.9
    assert config_callbacks(TrainConfig(keep_best=True), None)[-1].prefer_later
