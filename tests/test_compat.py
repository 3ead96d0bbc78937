"""Files written before the single-source engine (main at 47b8f8f) still load and resume.

Written with the NumPy kernels by
``fastnn train -d digits -e 2 -nhl 1 -sz 16 --checkpoint ck --save model.npz``.
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn.cli import main

OLD = Path(__file__).parent / "data" / "written_by_47b8f8f"
ARGS = ["train", "-d", "digits", "-e", "2", "-nhl", "1", "-sz", "16", "--no-progress"]


def test_an_old_model_file_loads_and_evaluates_as_it_did():
    net, header = fastnn.load_model(OLD / "model.npz")
    assert net.layer_sizes == [64, 16, 10] and net.activation == "relu"
    split = fastnn.datasets.prepare("digits")
    _, accuracy = net.evaluate(split.X_test, split.y_test)
    assert accuracy == pytest.approx(header["metadata"]["test_accuracy"], abs=1e-4)


def test_an_old_checkpoint_resumes(tmp_path, capsys):
    ck = tmp_path / "ck"
    ck.mkdir()
    shutil.copy(OLD / "checkpoint.npz", ck / "checkpoint.npz")
    model = tmp_path / "model.npz"
    rc = main([*ARGS, "--checkpoint", str(ck), "--resume", "--save", str(model)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "resuming after epoch 2" in out
    resumed, header = fastnn.load_model(model)
    old, _ = fastnn.load_model(OLD / "model.npz")
    np.testing.assert_array_equal(resumed.params.flat, old.params.flat)
    assert header["metadata"]["history"]["epoch"] == [1, 2]
