import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent

try:
    import numba  # noqa: F401
    HAVE_NUMBA = True
except ImportError:
    HAVE_NUMBA = False

needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason='numba not installed (pip install "fastnn[fast]")')
KERNEL_SETS = ["numpy", pytest.param("numba", marks=needs_numba)]


@pytest.fixture(params=KERNEL_SETS)
def kernels(request, monkeypatch):
    """Run the test once per kernel set, through $FASTNN_KERNELS (child processes too)."""
    monkeypatch.setenv("FASTNN_KERNELS", request.param)
    return request.param


@pytest.fixture(autouse=True)
def _runs_elsewhere(monkeypatch, tmp_path_factory):
    """`fastnn train` leaves a run folder: each test's go under its own temporary folder."""
    monkeypatch.setenv("FASTNN_RUNS", str(tmp_path_factory.mktemp("runs")))


SHARED_DATA = Path(os.environ.get("FASTNN_TEST_DATA", REPO.parent / "shared" / "data"))


def find_data(name):
    """A data_dir where ``name`` is found, or None.

    ``../shared/data`` first (what CI has), then wherever ``fastnn data
    --no-download`` would find it (FASTNN_DATA, the Keras cache, Debian's
    /usr/share/datasets, ~/.cache/fastnn), so that a newcomer's ``make test``
    runs the real-data tests on the copy ``make train`` installed.
    """
    from fastnn import datasets

    if (SHARED_DATA / datasets._DIRNAMES[name]).is_dir():
        return SHARED_DATA
    found = datasets.locate(name)
    if found is None:
        return None
    kind, where = found
    return where.parent if kind == "npz" else where["train_images"].parent


def _data_or_skip(name, label, hint):
    found = find_data(name)
    if found is None:
        pytest.skip(f"{label} not found in {SHARED_DATA} nor where `fastnn data --no-download` "
                    f"looks ({hint})")
    return found


@pytest.fixture(scope="session")
def fashion_data():
    """A data_dir holding Fashion-MNIST (skips, saying where it looked, if none)."""
    return _data_or_skip("fashion_mnist", "Fashion-MNIST", "run `make data` or `fastnn data`")


@pytest.fixture(scope="session")
def mnist_data():
    """A data_dir holding MNIST (the 10k-image training subset in ../shared/data/mnist)."""
    return _data_or_skip("mnist", "MNIST", "`fastnn data mnist` downloads it")


@pytest.fixture
def isolated_home(tmp_path, monkeypatch):
    """No data anywhere: HOME, caches and the system dir point into tmp_path."""
    from fastnn import datasets

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(datasets, "SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setattr(datasets, "MIRRORS", {"fashion_mnist": (), "mnist": ()})
    return home


def tiny_problem(n=12, n_features=5, n_classes=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, size=n)
    return X, y


def numeric_gradient(net, X, y, h=1e-5, training=False):
    """Central differences of ``net.loss(X, y, training)`` over every parameter."""
    flat = net.params.flat
    grad = np.empty_like(flat)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = net.loss(X, y, training=training)
        flat[i] = old - h
        minus = net.loss(X, y, training=training)
        flat[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def rewrite_npz(path, mutate):
    """Rewrite an .npz archive with ``mutate(dict of arrays)`` applied."""
    import io

    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    mutate(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
