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
SHARED_DATA = Path(os.environ.get("FASTNN_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """The IDX files beside the repository (../shared/data), as CI has them."""
    if not (SHARED_DATA / "fashion-mnist").is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    return SHARED_DATA


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
