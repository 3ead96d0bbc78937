"""Import hygiene: a light `import fastnn`, and an engine of NumPy + stdlib only."""

import ast
import subprocess
import sys
from pathlib import Path

import fastnn

ENGINE = ["network", "layers", "activations", "losses", "optimizers", "_checks", "errors",
          "_jit", "_threads", "_blas", "_subnormal", "augment", "batchnorm", "layout",
          "settings", "step", "gradnorm", "optimizer", "passes", "_team"]
PACKAGE = Path(fastnn.__file__).parent


def test_import_fastnn_loads_no_optional_or_heavy_package():
    code = ("import sys, fastnn; heavy = ['wandb', 'matplotlib', 'pandas', 'sklearn', 'tqdm', "
            "'torch', 'tensorflow', 'keras', 'jax', 'numba', 'llvmlite', 'optuna', 'dask', "
            "'distributed']; "
            "print(','.join(m for m in heavy if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == ""


def test_engine_modules_import_only_numpy_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    for name in ENGINE:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: must stay inside the engine
                    assert (node.module or "").split(".")[0] in ENGINE + [""], (name, node.module)
                    continue
                roots = [node.module.split(".")[0]]
            else:
                continue
            # lazily: numba (see below); threadpoolctl only tells where NumPy's BLAS is
            # and how many threads it may use; GELU's NumPy reference: scipy's erf
            extra = {"_jit": {"numba", "llvmlite"}, "_blas": {"threadpoolctl"},
                     "_threads": {"threadpoolctl"}, "activations": {"scipy"}}.get(name, set())
            assert set(roots) <= allowed | extra, f"{name}.py imports {roots}"


def test_numba_is_imported_only_by_jit_and_only_inside_functions():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(n.split(".")[0] in ("numba", "llvmlite") for n in names):
                assert path.name == "_jit.py", path.name
                assert id(node) not in top_level, "numba must be imported lazily"


def test_no_autodiff_package_anywhere():
    banned = ("torch", "jax", "autograd", "tensorflow", "keras")
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                assert not any(n.split(".")[0] in banned for n in names), path.name
