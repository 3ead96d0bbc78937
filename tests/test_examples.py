"""The scripts in examples/ run and learn."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("script, pattern", [
    ("custom_loop.py", r"epoch 15: test loss [\d.]+  test accuracy (0\.\d+)"),
    ("own_arrays.py", r"test accuracy (0\.\d+)"),
    ("sklearn_pipeline.py", r"best .*: accuracy (0\.\d+)"),
])
def test_example_runs(script, pattern):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    match = re.search(pattern, proc.stdout)
    assert match, proc.stdout
    assert float(match.group(1)) > 0.9
