"""IDX reading, data-path resolution, downloading, preprocessing."""

import gzip
import hashlib
import struct

import numpy as np
import pytest

from fastnn import datasets
from fastnn.errors import DataError, DataNotFoundError


def make_set(directory, n_train=20, n_test=10, gz=True, size=4, seed=0):
    """Write a small valid IDX data set; return the arrays written."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for key, arr in arrays.items():
        datasets.write_idx(directory / (datasets.FILES[key] + (".gz" if gz else "")), arr)
    return arrays


def raw_idx(magic, dims, payload):
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    datasets.write_idx(path, arr)
    out = datasets.read_idx(path, 3)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == np.uint8 and out.flags.writeable


@pytest.mark.parametrize("content, message", [
    (raw_idx(2049, (4,), bytes(4)), "wrong IDX magic number 2049"),
    (raw_idx(0x0D03, (1, 2, 2), bytes(16)), "wrong IDX magic number"),
    (raw_idx(2051, (3, 2, 2), bytes(10)), "truncated|more than"),
    (raw_idx(2051, (1, 2, 2), bytes(5)), "trailing bytes"),
    (b"\x00\x00", "too short"),
    (raw_idx(2051, (1,), b""), "truncated IDX header"),
])
@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_rejects_bad_files(tmp_path, content, message, gz):
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match=message):
        datasets.read_idx(path, 3)


def test_header_claiming_billions_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.gz"
    path.write_bytes(gzip.compress(raw_idx(2051, (4_000_000_000, 28, 28), bytes(100))))
    with pytest.raises(DataError, match="more than the .*-byte file can hold"):
        datasets.read_idx(path, 3)


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_gzip_is_a_data_error(tmp_path, damage):
    data = gzip.compress(raw_idx(2051, (50, 28, 28), bytes(range(256)) * 153 + bytes(8)))
    data = data[: len(data) // 2] if damage == "truncate" else data[:20] + b"garbage!" + data[28:]
    path = tmp_path / "x.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match="cannot read|truncated"):
        datasets.read_idx(path, 3)


def test_load_from_data_dir_and_validation(tmp_path, isolated_home):
    arrays = make_set(tmp_path / "d" / "fashion-mnist")
    ds = datasets.load("fashion_mnist", data_dir=tmp_path / "d")
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10
    # the directory itself works too
    assert datasets.load("fashion_mnist", data_dir=tmp_path / "d" / "fashion-mnist").source.endswith(
        "fashion-mnist")


def test_count_mismatch_and_label_range_are_data_errors(tmp_path, isolated_home):
    d = tmp_path / "d"
    make_set(d)
    datasets.write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="20 images but 19 labels"):
        datasets.load("mnist", data_dir=d)
    datasets.write_idx(d / "train-labels-idx1-ubyte.gz", np.full(20, 12, np.uint8))
    with pytest.raises(DataError, match="label 12 out of range 0-9"):
        datasets.load("mnist", data_dir=d)


def test_search_order(tmp_path, isolated_home, monkeypatch):
    places = {
        "explicit": tmp_path / "explicit" / "fashion-mnist",
        "env": tmp_path / "env" / "fashion-mnist",
        "keras": isolated_home / ".keras" / "datasets" / "fashion-mnist",
        "system": tmp_path / "system" / "fashion-mnist",
        "cache": isolated_home / ".cache" / "fastnn" / "fashion-mnist",
    }
    for i, where in enumerate(places.values()):
        make_set(where, n_train=11 + i)  # train size tells which was read
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "env"))
    expected_sizes = iter([11, 12, 13, 14, 15])
    for name, where in places.items():
        ds = datasets.load("fashion_mnist", data_dir=tmp_path / "explicit")
        assert len(ds.x_train) == next(expected_sizes), name
        for f in where.iterdir():
            f.unlink()
        if name == "env":
            monkeypatch.delenv("FASTNN_DATA")
    with pytest.raises(DataNotFoundError):
        datasets.load("fashion_mnist", data_dir=tmp_path / "explicit")


def test_keras_mnist_npz_is_read_without_pickle(isolated_home):
    keras = isolated_home / ".keras" / "datasets"
    keras.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(keras / "mnist.npz", x_train=rng.integers(0, 256, (8, 28, 28), dtype=np.uint8),
             y_train=np.arange(8, dtype=np.uint8), x_test=np.zeros((3, 28, 28), np.uint8),
             y_test=np.arange(3, dtype=np.uint8))
    ds = datasets.load("mnist")
    assert ds.x_train.shape == (8, 28, 28) and ds.source.endswith("mnist.npz")


def test_not_found_message_lists_places_and_how_to_get_it(isolated_home, tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        datasets.load("fashion_mnist", data_dir=tmp_path / "nowhere")
    msg = str(info.value)
    assert "\n" not in msg
    assert str(tmp_path / "nowhere") in msg and ".cache/fastnn" in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def _mirror(tmp_path, monkeypatch, name="mnist", tamper=None):
    """A file:// mirror holding a valid set, with SHA256 patched to match."""
    mirror = tmp_path / "mirror"
    make_set(mirror, size=28)
    digests = {}
    for key, stem in datasets.FILES.items():
        digests[key] = (hashlib.sha256((mirror / (stem + ".gz")).read_bytes()).hexdigest(),)
    if tamper:
        path = mirror / (datasets.FILES[tamper] + ".gz")
        path.write_bytes(path.read_bytes() + b"x")
    monkeypatch.setitem(datasets.MIRRORS, name, ("file:///nonexistent/", mirror.as_uri() + "/"))
    monkeypatch.setitem(datasets.SHA256, name, digests)
    return mirror


def test_download_verifies_and_caches(tmp_path, isolated_home, monkeypatch):
    _mirror(tmp_path, monkeypatch)
    ds = datasets.load("mnist")
    assert ds.x_train.shape == (20, 28, 28)
    assert (isolated_home / ".cache" / "fastnn" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    # Once cached, it is found without downloading again.
    monkeypatch.setitem(datasets.MIRRORS, "mnist", ())
    assert datasets.load("mnist", download=False).x_train.shape == (20, 28, 28)


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, isolated_home, monkeypatch):
    _mirror(tmp_path, monkeypatch, tamper="train_labels")
    with pytest.raises(DataError, match="SHA-256"):
        datasets.load("mnist")
    cache = isolated_home / ".cache" / "fastnn" / "mnist"
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]


def test_no_download_and_no_network(isolated_home):
    with pytest.raises(DataNotFoundError, match="not found"):
        datasets.load("mnist", download=False)
    with pytest.raises(DataNotFoundError, match="not found"):
        datasets.load("mnist")  # MIRRORS is empty in isolated_home: nothing answers


def test_preprocess_and_split():
    images = np.arange(30 * 4, dtype=np.uint8).reshape(30, 2, 2)
    X = datasets.preprocess(images, "float32")
    assert X.shape == (30, 4) and X.dtype == np.float32
    assert X.max() <= 1.0 and X[0, 1] == np.float32(1 / 255)
    y = np.arange(30) % 3
    X_tr, X_val, _, y_val = datasets.train_val_split(X, y, 0.2, seed=0)
    assert len(X_tr) == 24 and len(X_val) == 6 and np.bincount(y_val).tolist() == [2, 2, 2]


def test_digits_is_always_available():
    ds = datasets.load("digits")
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (8, 8)
    assert ds.x_train.max() == 255
    assert len(ds.x_train) + len(ds.x_test) == 1797


def test_real_fashion_mnist_files(fashion_data):
    ds = datasets.load("fashion_mnist", data_dir=fashion_data)
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10


def test_real_mnist_files(mnist_data):
    mn = datasets.load("mnist", data_dir=mnist_data)
    # ../shared/data holds a 10,000-image training subset; a full copy has 60,000
    assert mn.x_test.shape == (10000, 28, 28) and mn.x_train.shape[0] in (10000, 60000)


def test_real_data_tests_find_what_the_product_finds(tmp_path, isolated_home, monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "no-shared-data")
    assert conftest.find_data("fashion_mnist") is None
    # Debian's package layout: /usr/share/datasets/fashion-mnist/*.gz
    system = tmp_path / "system" / "fashion-mnist"
    make_set(system, gz=True)
    found = conftest.find_data("fashion_mnist")
    assert found == system
    assert datasets.load("fashion_mnist", data_dir=found).x_train.shape == (20, 4, 4)
