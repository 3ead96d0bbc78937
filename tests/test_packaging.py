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


# import name -> distribution name, where they differ
_DISTRIBUTIONS = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml"}


def test_every_package_fastnn_imports_is_declared():
    """Core dependencies and extras name every third-party module the package imports."""
    import ast
    import re
    import sys

    project = _project()
    declared = {re.split(r"[<>=\[ ;]", d)[0].lower()
                for d in [*project["dependencies"],
                          *(d for extra in project["optional-dependencies"].values()
                            for d in extra)]}
    imported = set()
    for path in (REPO / "fastnn").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "fastnn"}
    missing = {m for m in third_party if _DISTRIBUTIONS.get(m, m).lower() not in declared}
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    assert "scikit-learn>=1.6" in project["dependencies"][1]  # validate_data needs 1.6
