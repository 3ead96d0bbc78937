"""Model files: round trip, atomic writes, hostile and malformed files."""

import json
import pickle
import zipfile

import numpy as np
import pytest
from conftest import rewrite_npz as _rewrite

import fastnn
from fastnn import modelfile
from fastnn.errors import ModelFileError


@pytest.fixture
def saved(tmp_path):
    net = fastnn.Network([6, 5, 3], activation="tanh", weight_decay=0.01, seed=4)
    path = tmp_path / "m.npz"
    fastnn.save_model(net, path, class_names=["a", "b", "c"], metadata={"note": "x"})
    return net, path


def test_round_trip(saved):
    net, path = saved
    loaded, header = fastnn.load_model(path)
    assert loaded.config() == net.config()
    for a, b in zip(loaded.params, net.params):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert header["class_names"] == ["a", "b", "c"] and header["metadata"] == {"note": "x"}
    X = np.random.default_rng(0).random((4, 6))
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))


def test_save_is_atomic_and_leaves_no_temporary_files(saved, monkeypatch):
    net, path = saved
    before = path.read_bytes()

    def exploding_savez(f, **arrays):
        f.write(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", exploding_savez)
    with pytest.raises(ModelFileError, match=r"cannot save the model \(disk full\)"):
        fastnn.save_model(net, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]


def _header(arrays):
    return json.loads(arrays["header"].tobytes())


def _set_header(arrays, header):
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.pop("param_2"), "missing"),
    (lambda a: a.update(extra=np.zeros(2)), "unexpected"),
    (lambda a: a.update(param_0=np.zeros((5, 6), np.float32)), "shape"),
    (lambda a: a.update(param_0=a["param_0"].astype(np.float64)), "dtype"),
    (lambda a: a.update(param_1=np.full(5, np.nan, np.float32)), "NaN"),
    (lambda a: a.pop("header"), "no header"),
    (lambda a: a.update(header=np.frombuffer(b"{not json", np.uint8)), "not valid JSON"),
    (lambda a: a.update(header=np.zeros(3, np.float32)), "uint8"),
    (lambda a: _set_header(a, {**_header(a), "format_version": 99}), "newer than this fastnn"),
    (lambda a: _set_header(a, {**_header(a), "format": "keras"}), "not a fastnn model"),
    (lambda a: _set_header(a, {**_header(a), "network": {"layer_sizes": [6, -5, 3]}}),
     "invalid network"),
    (lambda a: _set_header(a, {**_header(a), "network": {**_header(a)["network"], "evil": 1}}),
     "unexpected or missing keys"),
    (lambda a: a.update(header=np.frombuffer(b" " * (2 << 20), np.uint8)),
     "member .header. is larger than"),
])
def test_malformed_models_are_refused(saved, mutate, message):
    _, path = saved
    _rewrite(path, mutate)
    with pytest.raises(ModelFileError, match=message):
        fastnn.load_model(path)


def test_object_arrays_are_never_unpickled(saved):
    _, path = saved
    _rewrite(path, lambda a: a.update(param_0=np.array([{"x": 1}], dtype=object)))
    with pytest.raises(ModelFileError):
        fastnn.load_model(path)


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04broken zip"])
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError):
        fastnn.load_model(path)


def test_truncated_model_file(saved):
    _, path = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        fastnn.load_model(path)


def test_bare_npy_and_missing_file(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ModelFileError, match="bare"):
        fastnn.load_model(path)
    with pytest.raises(ModelFileError, match="no such file"):
        fastnn.load_model(tmp_path / "missing.npz")


def test_archive_is_uncompressed_npz(saved):
    _, path = saved
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["header.npy"] + [f"param_{i}.npy" for i in range(4)]
    # a model without batch normalisation is still written as version 1
    assert fastnn.load_model(path)[1]["format_version"] == 1
    assert modelfile.FORMAT_VERSION == 3


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os

    path = tmp_path / "m.npz"
    old = os.umask(0o022)
    try:
        fastnn.save_model(fastnn.Network([3, 2]), path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(("content", "said"), [
    (pickle.dumps({"params": [1, 2]}), "a Python pickle, which fastnn never loads"),
    (b"hello, not a model", "neither an .npz archive nor an .npy array")])
def test_a_file_that_is_no_archive_is_named_without_numpys_unsafe_advice(tmp_path, content,
                                                                          said):
    # NumPy's own message advises loading it "unsafely" with allow_pickle=True
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as err:
        fastnn.load_model(path)
    message = str(err.value)
    assert said in message and str(path) in message and "fastnn model file" in message
    assert "allow_pickle" not in message and "trust" not in message
    with pytest.raises(fastnn.DataError) as err:
        fastnn.datasets._load_keras_npz(path)
    assert said in str(err.value) and "allow_pickle" not in str(err.value)
