"""Crash safety: kill and resume, hostile files, concurrent sweeps."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import checkpoint, datasets, sweep
from fastnn.errors import DataError, ModelFileError

TRAIN = [sys.executable, "-m", "fastnn", "train", "-d", "digits", "-e", "60", "-b", "8",
         "-nhl", "2", "-sz", "32", "-o", "nadam", "--dropout", "0.1", "--no-progress",
         "--threads", "1"]


def _checkpoint_epoch(directory):
    try:
        with np.load(checkpoint.checkpoint_path(directory), allow_pickle=False) as z:
            return json.loads(z["header"].tobytes())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


# shifts, flips, mixup, label smoothing, keep-best and the weight average: the
# augmentation draws, the best weights so far and the average must survive
# the kill too
ACCURACY_OPTIONS = ["--augment-shift", "1", "--augment-flip", "--label-smoothing", "0.1",
                    "--keep-best", "--ema", "0.99", "--mixup", "0.2"]


@pytest.mark.parametrize("options", [[], ACCURACY_OPTIONS, [*ACCURACY_OPTIONS, "--batch-norm"],
                                     [*ACCURACY_OPTIONS, "--sam", "0.05"]],
                         ids=["plain", "accuracy-options", "batch-norm", "sam"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, kernels, options):
    train = [*TRAIN, *options]
    reference = tmp_path / "reference.npz"
    subprocess.run([*train, "--save", str(reference)], check=True, capture_output=True)

    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([*train, "--checkpoint", str(ckpt)], stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _checkpoint_epoch(ckpt) < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _checkpoint_epoch(ckpt)
    assert 5 <= killed_at < 60, "the kill must land mid-training"

    resumed = tmp_path / "resumed.npz"
    out = subprocess.run([*train, "--checkpoint", str(ckpt), "--resume", "--save",
                          str(resumed)], check=True, capture_output=True, text=True).stdout
    assert f"resuming after epoch {killed_at}" in out
    a, header_a = fastnn.load_model(reference)
    b, header_b = fastnn.load_model(resumed)
    np.testing.assert_array_equal(a.params.flat, b.params.flat)
    np.testing.assert_array_equal(a.running_stats.flat, b.running_stats.flat)
    hist_a, hist_b = header_a["metadata"]["history"], header_b["metadata"]["history"]
    for key in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy"):
        assert hist_a[key] == hist_b[key], key  # every epoch's metrics, exactly


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    from fastnn.cli import main

    ckpt = str(tmp_path / "c")
    assert main(["train", "-d", "digits", "-e", "2", "--checkpoint", ckpt, "--no-progress"]) == 0
    capsys.readouterr()
    rc = main(["train", "-d", "digits", "-e", "3", "-lr", "0.1", "--checkpoint", ckpt,
               "--resume", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "other settings (lr)" in err[0]


def test_resume_with_another_width_names_the_setting_not_an_array_shape(tmp_path, capsys):
    from fastnn.cli import main

    ckpt = str(tmp_path / "c")
    assert main(["train", "-d", "digits", "-e", "1", "-sz", "16", "--checkpoint", ckpt,
                 "--no-progress"]) == 0
    capsys.readouterr()
    rc = main(["train", "-d", "digits", "-e", "2", "-sz", "32", "--checkpoint", ckpt,
               "--resume", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1, err
    assert "other settings (hidden_size)" in err[0] and "shape" not in err[0]


# ------------------------------------------------------------- hostile bytes
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), gz=st.booleans())
def test_idx_reader_raises_only_data_errors(tmp_path, data, gz):
    import gzip

    path = tmp_path / "random.idx"
    path.write_bytes(gzip.compress(data) if gz else data)
    try:
        datasets.read_idx(path, 3)
    except DataError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
       cut=st.integers(0, 20_000))
def test_mutated_idx_files_raise_only_data_errors(tmp_path, flips, cut):
    good = tmp_path / "good.gz"
    if not good.exists():
        datasets.write_idx(good, np.arange(30 * 28 * 28, dtype=np.uint8).reshape(30, 28, 28))
    data = bytearray(good.read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    path = tmp_path / "mutated.gz"
    path.write_bytes(bytes(data[:cut]) if cut < len(data) else bytes(data))
    try:
        out = datasets.read_idx(path, 3)
        assert out.dtype == np.uint8 and out.ndim == 3
    except DataError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300))
def test_sweep_loader_raises_only_sweep_errors(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        sweep.load_spec(path)
    except sweep.SweepError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), min_size=1,
                      max_size=6))
def test_mutated_model_files_raise_only_model_errors(tmp_path, flips):
    path = tmp_path / "m.npz"
    if not path.exists():
        fastnn.save_model(fastnn.Network([6, 5, 3], seed=0), path)
    data = bytearray(path.read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    try:
        net, _ = fastnn.load_model(bad)
        assert np.isfinite(net.params.flat).all()
    except ModelFileError:
        pass


# ----------------------------------------------------------------- sweeps
MANY = """
method: grid
parameters:
  dataset: {value: digits}
  epochs: {value: 1}
  num_layers: {value: 1}
  hidden_size: {values: [4, 5, 6, 7, 8, 9, 10, 11]}
  batch_size: {values: [32, 64]}
  learning_rate: {values: [0.001, 0.003, 0.01, 0.03]}
"""


def test_many_workers_write_every_run_exactly_once(tmp_path):
    spec_path = tmp_path / "many.yaml"
    spec_path.write_text(MANY)
    results = tmp_path / "r"
    records = sweep.run_sweep(sweep.load_spec(spec_path), results, workers=8)
    lines = (results / "results.jsonl").read_text().splitlines()
    assert len(lines) == 64 == len(records)
    ids = [json.loads(line)["run_id"] for line in lines]  # every line parses
    assert len(set(ids)) == 64
    assert {json.loads(line)["status"] for line in lines} == {"finished"}


def test_sweep_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path):
    spec_path = tmp_path / "many.yaml"
    spec_path.write_text(MANY)
    results = tmp_path / "r"
    cmd = [sys.executable, "-m", "fastnn", "sweep", str(spec_path), "--results", str(results),
           "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    path = results / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and len(path.read_bytes().splitlines()) >= 10:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # parent and workers, mid-sweep
    proc.wait()
    before = [json.loads(line)["run_id"] for line in path.read_text().splitlines()
              if line.strip()]
    assert 10 <= len(before) < 64
    subprocess.run(cmd, check=True, capture_output=True)
    after = [json.loads(line)["run_id"] for line in path.read_text().splitlines()]
    assert len(after) == len(set(after)) == 64
    assert after[:len(before)] == before


def test_unusable_results_directory_fails_before_training(tmp_path, capsys):
    from fastnn.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spec_path = tmp_path / "many.yaml"
    spec_path.write_text(MANY)
    with pytest.raises(sweep.SweepError, match="cannot create the results directory"):
        sweep.run_sweep(sweep.load_spec(spec_path), blocker / "results", workers=1)
    assert main(["sweep", str(spec_path), "--results", str(blocker / "results")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the results directory" in err[-1]
    assert blocker.read_text() == "not a directory"


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_200_epochs_hold_constant_memory(kernels):
    data = datasets.load("digits")
    X = datasets.preprocess(data.x_train)
    net = fastnn.Network([64, 64, 64, 10], seed=0)
    opt = fastnn.optimizers.get("adam", net.params)

    class Sampler(fastnn.Callback):
        def __init__(self):
            self.rss = []

        def on_epoch_end(self, epoch, logs):
            self.rss.append(_rss_bytes())

    sampler = Sampler()
    fastnn.fit(net, opt, X, data.y_train, epochs=200, batch_size=32,
               validation_data=(X[:200], data.y_train[:200]), callbacks=[sampler])
    settled = np.array(sampler.rss[10:])  # after warm-up
    growth = settled[-20:].mean() - settled[:20].mean()
    assert growth < 1 << 20, f"RSS grew by {growth / 2**20:.2f} MiB over 190 epochs"


def test_squared_error_loss_trains():
    data = datasets.load("digits")
    X = datasets.preprocess(data.x_train)
    net = fastnn.Network([64, 64, 10], loss="mean_squared_error", seed=0)
    history = fastnn.fit(net, fastnn.optimizers.get("adam", net.params, lr=3e-3), X,
                         data.y_train, epochs=15, batch_size=32)
    assert history["loss"][-1] < history["loss"][0] / 3
    assert net.evaluate(datasets.preprocess(data.x_test), data.y_test)[1] > 0.9


def test_checkpoint_carries_early_stopping_progress_and_best_weights(tmp_path):
    net = fastnn.Network([4, 3, 2], seed=0)
    opt = fastnn.optimizers.get("adam", net.params)
    rng = np.random.default_rng(0)
    stopper = fastnn.EarlyStopping(monitor="val_accuracy", patience=5)
    stopper.on_train_begin(net, 1)
    stopper.on_epoch_end(1, {"val_accuracy": 0.7})
    best = net.params.flat.copy()
    net.params.flat[:] += 1  # later epochs move on and score worse
    stopper.on_epoch_end(2, {"val_accuracy": 0.6})
    history = fastnn.train.History()
    checkpoint.save(tmp_path / "c.npz", net, opt, rng, 2, history, {"x": 1}, [stopper])

    fresh = fastnn.EarlyStopping(monitor="val_accuracy", patience=5)
    net2 = fastnn.Network([4, 3, 2], seed=1)
    checkpoint.load(tmp_path / "c.npz", net2, fastnn.optimizers.get("adam", net2.params),
                    np.random.default_rng(1), {"x": 1}, [fresh])
    fresh.on_train_begin(net2, 1)
    assert (fresh.best, fresh.best_epoch, fresh.wait) == (0.7, 1, 1)
    fresh.on_train_end(None)
    np.testing.assert_array_equal(net2.params.flat, best)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_sweep_prints_one_line_and_no_worker_traceback(tmp_path, signum):
    # Ctrl-C reaches the whole process group; the pool then ends its workers
    # with SIGTERM, which must not surface as tracebacks.
    spec_path = tmp_path / "many.yaml"
    spec_path.write_text(MANY)
    results = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "sweep", str(spec_path),
                             "--results", str(results), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    path = results / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (path.exists() and path.read_bytes().count(b"\n") >= 3):
        time.sleep(0.02)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted:")
