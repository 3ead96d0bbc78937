"""What the package says about itself: one version, a license file that exists, true docs."""

import importlib.metadata

import pytest
from conftest import REPO

import fastnn
import fastnn.sweep

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def _project():
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_version_is_written_once():
    project = _project()
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("fastnn") == fastnn.__version__


def test_the_declared_license_ships_as_a_file():
    assert _project()["license"]["text"] == "MIT"
    assert (REPO / "LICENSE").read_text().startswith("MIT License")


def test_the_sweep_docs_do_not_say_bayes_needs_a_server():
    assert "bayes needs the W&B server" not in fastnn.sweep.__doc__
