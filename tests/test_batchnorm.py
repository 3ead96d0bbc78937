"""Batch normalisation (fastnn.batchnorm): gradients, kernels, running statistics, files."""

import json
import pickle

import numpy as np
import pytest
from conftest import HAVE_NUMBA, KERNEL_SETS, numeric_gradient, rewrite_npz, tiny_problem

import fastnn
from fastnn import batchnorm, checkpoint, optimizers
from fastnn.errors import ModelFileError
from fastnn.network import Network
from fastnn.train import EarlyStopping, History

ACTIVATIONS = ["identity", "sigmoid", "tanh", "relu"]
LOSSES = ["cross_entropy", "mean_squared_error"]


def _net(kernels="numpy", dtype="float64", sizes=(7, 6, 5, 3), **kw):
    net = Network(list(sizes), dtype=dtype, seed=1, batch_norm=True, kernels=kernels, **kw)
    rng = np.random.default_rng(7)
    for bn in net.norms:  # away from gamma = 1, beta = 0, so that both gradients count
        bn.gamma[:] = rng.uniform(0.5, 1.5, bn.units)
        bn.beta[:] = rng.normal(0, 0.3, bn.units)
    return net


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_matches_finite_differences_in_float64(kernels, activation, loss):
    net = _net(kernels, activation=activation, loss=loss, weight_decay=0.01,
               label_smoothing=0.1)
    X, y = tiny_problem(n=9, n_features=7, seed=2)
    analytic = net.gradients(X, y).flat
    numeric = numeric_gradient(net, X, y, h=1e-6, training=True)
    scale = np.abs(numeric).max()
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=1e-7 * scale)
    # the hidden layers' biases are unused: the loss does not depend on them
    grads = net.gradients(X, y)
    for i, layer in enumerate(net.layers[:-1]):
        assert grads[2 * i + 1].shape == layer.b.shape
        np.testing.assert_array_equal(grads[2 * i + 1], 0)


def test_training_forward_normalises_each_unit_over_the_batch():
    net = _net()
    X, _ = tiny_problem(n=50, n_features=7, seed=3)
    bn, layer = net.norms[0], net.layers[0]
    net._ensure_capacity(50)
    z = X @ layer.W
    out = batchnorm.normalize_(z.copy(), bn, 50, np.empty_like(z))
    normalised = out / bn.gamma
    np.testing.assert_allclose(normalised.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(normalised.var(axis=0), z.var(axis=0) / (z.var(axis=0) + 1e-5),
                               rtol=1e-10)
    np.testing.assert_allclose(bn.mean, z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.var, z.var(axis=0), rtol=1e-12)


def _reference_predict(net, X):
    """Evaluation written out independently: running statistics, + beta, ReLU, softmax."""
    a = X
    for layer, bn in zip(net.layers[:-1], net.norms):
        z = a @ layer.W
        z = bn.gamma * (z - bn.running_mean) / np.sqrt(bn.running_var + 1e-5) + bn.beta
        a = np.maximum(z, 0)
    z = a @ net.layers[-1].W + net.layers[-1].b
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("kernels", KERNEL_SETS)
def test_running_statistics_follow_the_rule_and_evaluation_uses_them(kernels):
    net = _net(kernels)
    X, y = tiny_problem(n=20, n_features=7, seed=4)
    z = X @ net.layers[0].W
    net.train_step_(X, y)
    bn = net.norms[0]
    np.testing.assert_allclose(bn.running_mean, 0.1 * z.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * z.var(axis=0, ddof=1), rtol=1e-12)
    for _ in range(3):
        net.train_step_(X, y)
    np.testing.assert_allclose(net.predict_proba(X), _reference_predict(net, X), rtol=1e-12)
    # the training-mode loss does not move the running statistics
    before = net.running_stats.flat.copy()
    net.loss(X, y, training=True)
    np.testing.assert_array_equal(net.running_stats.flat, before)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-13)])
def test_fused_kernels_agree_with_the_numpy_reference(dtype, tol):
    X, y = tiny_problem(n=33, n_features=20, n_classes=4, dtype=dtype)
    results = {}
    for kernels in ("numpy", "numba"):
        net = _net(kernels, dtype, sizes=(20, 16, 12, 4), dropout=0.2)
        net.reseed_dropout(5)
        grads = net.gradients(X, y).flat
        assert grads.dtype == dtype and net.running_stats.flat.dtype == dtype
        results[kernels] = (grads, net.running_stats.flat.copy(), net.predict_proba(X),
                            net.loss(X, y, training=True))
    for a, b in zip(results["numpy"], results["numba"]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_layout_of_parameters_and_statistics():
    net = Network([4, 6, 5, 3], batch_norm=True)
    plain = Network([4, 6, 5, 3])
    assert net.n_params == plain.n_params + 2 * (6 + 5)
    assert [p.shape for p in net.params[-4:]] == [(6,), (6,), (5,), (5,)]
    np.testing.assert_array_equal(net.params[-4], 1)  # gamma starts at 1, beta at 0
    np.testing.assert_array_equal(net.params[-3], 0)
    assert [s.shape for s in net.running_stats] == [(6,), (6,), (5,), (5,)]
    assert plain.running_stats == [] and plain.running_stats.flat.size == 0
    assert net.compiled_step(optimizers.get("adam", net.params), None, None, 8) is None
    assert "batch_norm" not in plain.config() and net.config()["batch_norm"] is True


def _trained(kernels="numpy"):
    X, y = tiny_problem(n=64, n_features=6, n_classes=3, dtype=np.float32)
    net = Network([6, 8, 3], seed=0, batch_norm=True, dropout=0.1, kernels=kernels)
    opt = optimizers.get("adam", net.params, lr=0.05, kernels=kernels)
    fastnn.fit(net, opt, X, y, epochs=3, batch_size=16)
    return net, X, y


def test_model_file_round_trip_keeps_the_running_statistics(tmp_path):
    net, X, _ = _trained()
    path = tmp_path / "bn.npz"
    fastnn.save_model(net, path)
    loaded, header = fastnn.load_model(path)
    assert header["format_version"] == 2 and loaded.batch_norm
    np.testing.assert_array_equal(loaded.running_stats.flat, net.running_stats.flat)
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    plain = tmp_path / "plain.npz"
    fastnn.save_model(Network([6, 8, 3]), plain)
    assert fastnn.load_model(plain)[1]["format_version"] == 1  # older readers still read it


def _with_header(arrays, **changes):
    header = json.loads(arrays["header"].tobytes())
    arrays["header"] = np.frombuffer(json.dumps({**header, **changes}).encode(), np.uint8)


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.pop("stats_1"), "missing"),
    (lambda a: a.update(stats_1=-np.ones(8, np.float32)), "negative"),
    (lambda a: a.update(stats_0=np.full(8, np.inf, np.float32)), "NaN or infinite"),
    (lambda a: a.update(stats_0=np.zeros(7, np.float32)), "shape"),
    (lambda a: _with_header(a, format_version=1), "needs format version 2"),
])
def test_malformed_batch_norm_models_are_refused(tmp_path, mutate, message):
    net, _, _ = _trained()
    path = tmp_path / "bn.npz"
    fastnn.save_model(net, path)
    rewrite_npz(path, mutate)
    with pytest.raises(ModelFileError, match=message):
        fastnn.load_model(path)


def test_keep_best_restores_the_running_statistics_of_the_best_epoch():
    X, y = tiny_problem(n=64, n_features=6, n_classes=3, dtype=np.float32)
    net = Network([6, 8, 3], seed=0, batch_norm=True)
    opt = optimizers.get("adam", net.params, lr=0.05)
    stopper = EarlyStopping(monitor="loss", patience=100,
                            restore_best_weights=True)
    snapshots = {}

    class Record(fastnn.train.Callback):
        def on_epoch_end(self, epoch, logs):
            snapshots[epoch] = (logs["loss"], net.snapshot())

    fastnn.fit(net, opt, X, y, epochs=5, batch_size=16, callbacks=[Record(), stopper])
    best = min(snapshots, key=lambda e: snapshots[e][0])
    np.testing.assert_array_equal(net.snapshot(), snapshots[best][1])


def test_checkpoint_saves_and_restores_the_running_statistics(tmp_path):
    net, _, _ = _trained()
    opt = optimizers.get("adam", net.params)
    rng = np.random.default_rng(0)
    path = tmp_path / "c.npz"
    history = History()
    history.append(1, {"loss": 1.0})
    config = fastnn.TrainConfig(batch_norm=True).to_dict()
    checkpoint.save(path, net, opt, rng, 1, history, config)
    fresh = Network([6, 8, 3], seed=5, batch_norm=True, dropout=0.1)
    checkpoint.load(path, fresh, optimizers.get("adam", fresh.params), rng, config)
    np.testing.assert_array_equal(fresh.snapshot(), net.snapshot())


def test_estimator_takes_batch_norm_and_pickles_the_statistics():
    X, y = tiny_problem(n=90, n_features=6, n_classes=3, dtype=np.float32)
    clf = fastnn.MLPClassifier(hidden_layer_sizes=(8,), batch_norm=True, epochs=3,
                               random_state=0).fit(X, y)
    assert clf.network_.batch_norm
    assert np.any(clf.network_.running_stats.flat != np.repeat([0, 1], 8))  # trained
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_config_builds_the_network_and_the_flag_reads_words():
    config = fastnn.TrainConfig.from_dict({"batch_norm": "yes"}).validated()
    assert config.batch_norm is True
    net, _ = fastnn.train.build(config, 6, 3)
    assert net.batch_norm and len(net.norms) == config.num_layers


def test_a_checkpoint_from_before_batch_norm_still_resumes(tmp_path):
    net = Network([6, 8, 3], seed=0)
    opt = optimizers.get("adam", net.params)
    rng = np.random.default_rng(0)
    path = tmp_path / "old.npz"
    config = fastnn.TrainConfig().to_dict()
    checkpoint.save(path, net, opt, rng, 1, History(), config)
    # as an older fastnn wrote it: no batch_norm setting and no statistics
    def older(arrays):
        del arrays["stats"]
        header = json.loads(arrays["header"].tobytes())
        del header["config"]["batch_norm"]
        _with_header(arrays, config=header["config"])

    rewrite_npz(path, older)
    fresh = Network([6, 8, 3], seed=3)
    assert checkpoint.load(path, fresh, optimizers.get("adam", fresh.params), rng, config)[0] == 1
    np.testing.assert_array_equal(fresh.params.flat, net.params.flat)
    with pytest.raises(ModelFileError, match="batch_norm"):
        checkpoint.load(path, fresh, optimizers.get("adam", fresh.params), rng,
                        {**config, "batch_norm": True})


def test_sweep_files_take_the_batch_norm_key():
    from fastnn.sweep.spec import SweepError, parse_spec

    spec = parse_spec({"method": "grid", "parameters": {"batch_norm": {"values": [True, False]},
                                                         "epochs": {"value": 1}}})
    assert [c["batch_norm"] for c in spec.configs()] == [True, False]
    with pytest.raises(SweepError, match="batch_norm"):
        parse_spec({"method": "grid", "parameters": {"batch_norm": {"values": ["often"]}}})
