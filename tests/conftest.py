import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
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
