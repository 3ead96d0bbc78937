"""Short real runs on Fashion-MNIST and MNIST (../shared/data, else where fastnn finds them)."""

import pytest

import fastnn

# Every test here runs once per kernel set (numpy, numba).
pytestmark = pytest.mark.usefixtures("kernels")


@pytest.mark.slow
def test_two_epochs_reach_84_percent(fashion_data):
    split = fastnn.datasets.prepare("fashion_mnist", data_dir=fashion_data, seed=0)
    assert split.X_train.shape == (54000, 784) and split.X_val.shape == (6000, 784)
    config = fastnn.TrainConfig(epochs=2, seed=0)
    net, opt = fastnn.train.build(config, 784, 10)
    history = fastnn.fit(net, opt, split.X_train, split.y_train, epochs=2, batch_size=128,
                         validation_data=(split.X_val, split.y_val), seed=0)
    _, test_acc = net.evaluate(split.X_test, split.y_test)
    assert history["val_accuracy"][-1] > 0.84
    assert test_acc > 0.84


@pytest.mark.slow
def test_mnist_subset_trains(mnist_data):
    split = fastnn.datasets.prepare("mnist", data_dir=mnist_data, seed=0)
    net, opt = fastnn.train.build(fastnn.TrainConfig(dataset="mnist"), 784, 10)
    fastnn.fit(net, opt, split.X_train, split.y_train, epochs=3, batch_size=64, seed=0)
    assert net.evaluate(split.X_test, split.y_test)[1] > 0.92
