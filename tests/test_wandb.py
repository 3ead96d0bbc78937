"""Weights & Biases logging, offline, with no network: runs are written and nothing hangs."""

import subprocess
import sys
import time

import pytest

from fastnn.cli import main

wandb = pytest.importorskip("wandb")

SPEC = """
method: grid
parameters:
  dataset: {value: digits}
  epochs: {value: 2}
  num_layers: {value: 1}
  hidden_size: {values: [8, 16]}
"""


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    return tmp_path


def _run_dirs(root):
    return sorted(p for p in (root / "wandb").glob("offline-run-*") if p.is_dir())


def test_train_logs_an_offline_run_promptly(offline, capsys):
    start = time.perf_counter()
    rc = main(["train", "-d", "digits", "-e", "2", "-nhl", "1", "-sz", "8", "--no-progress",
               "-wp", "fastnn-test"])
    elapsed = time.perf_counter() - start
    assert rc == 0, capsys.readouterr().err
    runs = _run_dirs(offline)
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    assert elapsed < 120


def test_sweep_logs_every_run_and_the_best_confusion_matrix(offline, tmp_path):
    # In a fresh process, as a user runs it: the workers fork from a parent
    # that has not started W&B yet.
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    proc = subprocess.run([sys.executable, "-m", "fastnn", "sweep", str(spec), "--results",
                           str(tmp_path / "r"), "--workers", "1", "--wandb", "-wp",
                           "fastnn-test"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    runs = _run_dirs(offline)
    assert len(runs) == 3  # two runs and the best run's confusion matrix
    assert sum(bool(list(r.glob("files/media/table/*confusion*"))) for r in runs) == 1


def test_runs_are_opened_without_deprecated_arguments(offline, monkeypatch):
    # a boolean reinit makes wandb print "Using a boolean value for 'reinit' is deprecated"
    from fastnn.wandb_log import WandbCallback

    seen = {}

    def init(**kwargs):
        seen.update(kwargs)
        return object()

    monkeypatch.setattr(wandb, "init", init)
    WandbCallback("fastnn-test")
    assert seen["reinit"] == "finish_previous"
