"""Central-difference gradient check of Network.loss against Network.gradients."""

import numpy as np
import pytest
from conftest import numeric_gradient, tiny_problem

import fastnn
from fastnn import activations

# Every test here runs once per kernel set (numpy, numba).
pytestmark = pytest.mark.usefixtures("kernels")

ACTIVATIONS = list(activations.REGISTRY)
LOSSES = ["cross_entropy", "mean_squared_error"]
DEPTHS = {"no_hidden": [5, 3], "one_hidden": [5, 4, 3], "three_hidden": [5, 6, 4, 5, 3]}


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_central_difference(activation, loss, weight_decay, depth):
    X, y = tiny_problem(n=7)
    net = fastnn.Network(DEPTHS[depth], activation=activation, loss=loss,
                         weight_init="xavier", weight_decay=weight_decay, dtype="float64", seed=3)
    # Non-zero biases so that every term of the gradient is exercised.
    rng = np.random.default_rng(1)
    for b in net.params[1::2]:
        b[...] = rng.normal(0, 0.3, size=b.shape)
    analytic = net.gradients(X, y).flat
    numeric = numeric_gradient(net, X, y)
    scale = np.maximum(np.abs(numeric), np.abs(analytic)).max()
    assert scale > 1e-4  # the check is not vacuous
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("loss", LOSSES)
def test_label_smoothing_gradient_matches_central_difference(loss):
    X, y = tiny_problem(n=7)
    net = fastnn.Network(DEPTHS["one_hidden"], activation="tanh", loss=loss, dtype="float64",
                         seed=3, label_smoothing=0.2)
    analytic = net.gradients(X, y).flat
    numeric = numeric_gradient(net, X, y)
    scale = np.maximum(np.abs(numeric), np.abs(analytic)).max()
    assert scale > 1e-4
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7 * scale)


@pytest.mark.parametrize("loss", LOSSES)
def test_label_smoothing_loss_is_the_smoothed_target_formula(loss):
    X, y = tiny_problem(n=7)
    eps, k = 0.3, 3
    net = fastnn.Network([5, 4, 3], loss=loss, dtype="float64", label_smoothing=eps)
    p = net.predict_proba(X)
    q = np.full((7, k), eps / k)
    q[np.arange(7), y] += 1 - eps
    expected = (-(q * np.log(p)).sum(axis=1).mean() if loss == "cross_entropy"
                else ((p - q) ** 2).mean())
    assert net.loss(X, y) == pytest.approx(expected, rel=1e-12)


def test_gradients_are_fresh_arrays_shaped_like_params():
    X, y = tiny_problem()
    net = fastnn.Network([5, 4, 3], dtype="float64")
    g1 = net.gradients(X, y)
    assert [g.shape for g in g1] == [p.shape for p in net.params]
    before = g1.flat.copy()
    net.gradients(X[:3], y[:3])
    np.testing.assert_array_equal(g1.flat, before)  # not overwritten by the next call


def test_one_hot_labels_give_the_same_loss_and_gradient():
    X, y = tiny_problem()
    net = fastnn.Network([5, 4, 3], dtype="float64")
    onehot = np.eye(3)[y]
    assert net.loss(X, onehot) == net.loss(X, y)
    np.testing.assert_array_equal(net.gradients(X, onehot).flat, net.gradients(X, y).flat)


def test_weight_decay_term_is_half_l2_of_weights_only():
    X, y = tiny_problem()
    plain = fastnn.Network([5, 4, 3], dtype="float64", seed=2)
    decayed = fastnn.Network([5, 4, 3], dtype="float64", seed=2, weight_decay=0.3)
    for b in decayed.params[1::2]:
        b += 5.0  # biases must not be penalised
    for b in plain.params[1::2]:
        b += 5.0
    expected = 0.15 * sum(float((W ** 2).sum()) for W in plain.params[0::2])
    assert decayed.loss(X, y) - plain.loss(X, y) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dropout_gradient_with_a_fixed_mask(activation):
    X, y = tiny_problem(n=9)
    net = fastnn.Network([5, 6, 4, 3], activation=activation, dtype="float64", seed=2,
                         dropout=0.4)
    rng = np.random.default_rng(1)
    for b in net.params[1::2]:  # no exact zeros into ReLU when a whole row is dropped
        b[...] = rng.normal(0, 0.3, size=b.shape)
    net.reseed_dropout(7)
    analytic = net.gradients(X, y).flat
    flat = net.params.flat
    numeric = np.empty_like(flat)
    h = 1e-5
    for i in range(flat.size):
        old = flat[i]
        values = []
        for delta in (h, -h):
            flat[i] = old + delta
            net.reseed_dropout(7)  # the same masks as the gradient saw
            values.append(net.loss(X, y, training=True))
        flat[i] = old
        numeric[i] = (values[0] - values[1]) / (2 * h)
    scale = np.abs(numeric).max()
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7 * scale)
    # Some units really were dropped, and prediction does not drop any.
    assert (net.layers[0].mask[:9] == 0).any()
    np.testing.assert_array_equal(net.predict_proba(X), net.predict_proba(X))
