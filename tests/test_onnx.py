"""ONNX export: the graph passes onnx.checker and onnxruntime gives fastnn's probabilities."""

import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, run
from test_user_data import blobs, write_csv

import fastnn
from fastnn import activations, datasets, onnx_export

onnx = pytest.importorskip("onnx", reason='needs the onnx extra: pip install "fastnn[onnx]"')
ort = pytest.importorskip("onnxruntime", reason='needs onnxruntime: pip install "fastnn[onnx]"')


def session(path_or_model):
    data = path_or_model if isinstance(path_or_model, str | bytes) else \
        path_or_model.SerializeToString()
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def onnx_proba(sess, X):
    return sess.run([onnx_export.OUTPUT], {onnx_export.INPUT: X})[0]


@pytest.mark.slow
def test_fashion_mnist_model_with_batch_norm_matches_onnxruntime(fashion_data, tmp_path, capsys):
    """Exported through the CLI; raw 0-255 pixels in, probabilities equal to 1e-5."""
    model, out = tmp_path / "m.npz", tmp_path / "m.onnx"
    rc, _, err = run(["train", "--data-dir", str(fashion_data), "-e", "1", "-nhl", "2", "-sz",
                      "64", "--batch-norm", "-a", "gelu", "--no-progress", "--save", str(model)],
                     capsys)
    assert rc == 0, err
    rc, printed, err = run(["export", str(model), str(out)], capsys)
    assert rc == 0, err and "ONNX opset" in printed
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    net, header = fastnn.load_model(model)
    ds = datasets.load("fashion_mnist", data_dir=fashion_data)
    raw = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float32)  # the graph scales
    ours = net.predict_proba(net.preprocessing.apply(ds.x_test))
    theirs = onnx_proba(session(str(out)), raw)
    assert theirs.shape == (10_000, 10)
    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
    assert (theirs.argmax(1) == ours.argmax(1)).mean() > 0.999
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["class_names"]) == header["class_names"]


@pytest.mark.parametrize("activation", list(activations.REGISTRY))
def test_every_activation_exports(activation):
    X, y = blobs(n=120)
    prep = fastnn.preprocessing.Preprocessing.learn(X)
    net = fastnn.Network([6, 8, 7, 3], activation=activation, seed=1)
    opt = fastnn.optimizers.get("adam", net.params, lr=0.01)
    fastnn.fit(net, opt, prep.apply(X), y, epochs=3, batch_size=16)
    model = onnx_export.to_onnx(net, prep)
    ours = net.predict_proba(prep.apply(X))
    np.testing.assert_allclose(onnx_proba(session(model), X.astype(np.float32)), ours,
                               atol=1e-5, rtol=0)


def test_standardised_csv_model_round_trip(tmp_path, capsys):
    X, y = blobs()
    path = write_csv(tmp_path / "d.csv", X, y)
    model, out = tmp_path / "m.npz", tmp_path / "m.onnx"
    assert run(["train", "-d", str(path), "-e", "3", "-nhl", "1", "-sz", "16", "--no-progress",
                "--save", str(model)], capsys)[0] == 0
    assert run(["export", str(model), str(out)], capsys)[0] == 0
    net, _ = fastnn.load_model(model)
    np.testing.assert_allclose(onnx_proba(session(str(out)), X.astype(np.float32)),
                               net.predict_proba(net.preprocessing.apply(X)), atol=1e-5, rtol=0)


def test_export_errors_are_one_line(tmp_path, capsys):
    rc, _, err = run(["export", str(tmp_path / "none.npz"), str(tmp_path / "x.onnx")], capsys)
    assert rc == 1
    assert_one_line_error(err, "none.npz: no such file")
    assert not (tmp_path / "x.onnx").exists()
