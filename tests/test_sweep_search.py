"""W&B distributions, searches without repeats, and local bayes (Optuna's TPE)."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastnn import sweep
from fastnn.cli import main

optuna = pytest.importorskip("optuna")


def spec_of(params, method="random", run_cap=4000, **extra):
    # A continuous companion keeps draws distinct, so that the no-repeat rule
    # does not reshape a discrete distribution under test.
    if method == "random":
        params = {"beta2": {"distribution": "uniform", "min": 0.9, "max": 0.999}, **params}
    return sweep.parse_spec({"method": method, "run_cap": run_cap, "parameters": params, **extra})


def draws(spec, name):
    return np.array([c[name] for c in spec.configs(seed=3)], dtype=float)


# Each distribution: where its samples must lie and the moments a fixed seed must show.
def test_normal_family_has_the_right_moments():
    x = draws(spec_of({"momentum": {"distribution": "normal", "mu": 0.5, "sigma": 0.1}}),
              "momentum")
    assert abs(x.mean() - 0.5) < 4 * 0.1 / math.sqrt(len(x))
    assert abs(x.std() - 0.1) < 0.01
    x = draws(spec_of({"lr": {"distribution": "log_normal", "mu": -5, "sigma": 0.5}}), "lr")
    assert (x > 0).all()
    assert abs(np.log(x).mean() + 5) < 4 * 0.5 / math.sqrt(len(x))
    assert abs(np.log(x).std() - 0.5) < 0.05


def test_quantised_normals_are_multiples_of_q_and_whole_for_integer_settings():
    x = draws(spec_of({"momentum": {"distribution": "q_normal", "mu": 0.5, "sigma": 0.1,
                                    "q": 0.05}}), "momentum")
    assert np.allclose(np.round(x / 0.05) * 0.05, x)
    assert abs(x.mean() - 0.5) < 0.01
    spec = spec_of({"hidden_size": {"distribution": "q_log_normal", "mu": math.log(64),
                                    "sigma": 0.3, "q": 8}})
    sizes = [c["hidden_size"] for c in spec.configs(seed=1)]
    assert all(isinstance(h, int) and h % 8 == 0 for h in sizes)
    assert abs(np.median(sizes) - 64) <= 8


@pytest.mark.parametrize("dist, lo, hi", [
    ("inv_log_uniform_values", 1e-4, 1e-1),
    ("inv_log_uniform", math.log(10), math.log(1e4)),  # log(1/X) in [min, max]
])
def test_inverse_log_uniform(dist, lo, hi):
    x = draws(spec_of({"lr": {"distribution": dist, "min": lo, "max": hi}}), "lr")
    if dist == "inv_log_uniform":
        lo, hi = math.exp(-hi), math.exp(-lo)
    assert (x >= lo * (1 - 1e-12)).all() and (x <= hi * (1 + 1e-12)).all()
    # log X is uniform on [log lo, log hi]: mean in the middle, variance (range^2)/12
    logs = np.log(x)
    width = math.log(hi) - math.log(lo)
    assert abs(logs.mean() - (math.log(lo) + width / 2)) < 4 * width / math.sqrt(12 * len(x))
    assert abs(logs.var() - width ** 2 / 12) < 0.05 * width ** 2 / 12


def test_probabilities_weight_the_values():
    spec = spec_of({"activation": {"values": ["relu", "tanh", "sigmoid"],
                                   "probabilities": [0.7, 0.2, 0.1]},
                    "lr": {"distribution": "uniform", "min": 1e-4, "max": 1e-2}})
    acts = [c["activation"] for c in spec.configs(seed=0)]
    for name, p in (("relu", 0.7), ("tanh", 0.2), ("sigmoid", 0.1)):
        share = acts.count(name) / len(acts)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(acts)), (name, share)


def test_random_never_repeats_a_configuration_and_stops_when_the_space_is_used_up():
    spec = sweep.parse_spec({"method": "random", "run_cap": 10, "parameters": {
        "activation": {"values": ["relu", "tanh"]}, "batch_size": {"values": [16, 32, 64]}}})
    configs = spec.configs(seed=0)
    assert len(configs) == 6 == spec.space_size()
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 6


def test_random_sequence_is_prefix_stable():
    spec = spec_of({"lr": {"distribution": "uniform", "min": 1e-4, "max": 1e-2}}, run_cap=5)
    longer = spec_of({"lr": {"distribution": "uniform", "min": 1e-4, "max": 1e-2}}, run_cap=9)
    assert longer.configs(seed=2)[:5] == spec.configs(seed=2)


# ------------------------------------------------------------------- bayes
BAYES = """
method: bayes
metric: {name: val_accuracy, goal: maximize}
run_cap: RUNS
parameters:
  dataset: {value: digits}
  epochs: {value: 2}
  num_layers: {value: 1}
  hidden_size: {distribution: q_uniform, min: 8, max: 64, q: 8}
  learning_rate: {distribution: log_uniform_values, min: 1.0e-4, max: 3.0e-2}
  activation: {values: [relu, tanh]}
  momentum: {distribution: q_log_uniform_values, min: 0.5, max: 0.95, q: 0.05}
"""


def _bayes(tmp_path, runs, name="bayes.yaml"):
    path = tmp_path / name
    path.write_text(BAYES.replace("RUNS", str(runs)))
    return path


def _sequence(results):
    records = sweep.read_results(results)
    return [(r["index"], json.dumps(r["config"], sort_keys=True)) for r in
            sorted(records, key=lambda r: r["index"])]


def test_bayes_maps_distributions_and_is_seeded(tmp_path):
    spec = sweep.load_spec(_bayes(tmp_path, 14))
    a = sweep.run_sweep(spec, tmp_path / "a", workers=1, seed=5)
    b = sweep.run_sweep(spec, tmp_path / "b", workers=1, seed=5)
    assert _sequence(tmp_path / "a") == _sequence(tmp_path / "b")
    assert len(a) == len(b) == 14
    for r in a:
        c = r["config"]
        assert isinstance(c["hidden_size"], int) and c["hidden_size"] % 8 == 0
        assert 8 <= c["hidden_size"] <= 64 and 1e-4 <= c["lr"] <= 3e-2
        assert c["momentum"] == pytest.approx(round(c["momentum"] / 0.05) * 0.05)
        assert set(r["proposal"]) == {"hidden_size", "lr", "activation", "momentum"}
    assert len({json.dumps(r["config"], sort_keys=True) for r in a}) == 14  # no repeats
    other = sweep.run_sweep(spec, tmp_path / "c", workers=1, seed=6)
    assert _sequence(tmp_path / "c") != _sequence(tmp_path / "a")
    assert len(other) == 14


def test_bayes_refuses_what_tpe_cannot_express(tmp_path):
    for param, fragment in (
            ("{distribution: normal, mu: 0.01, sigma: 0.001}", "has no bounds"),
            ("{values: [0.001, 0.01], probabilities: [0.5, 0.5]}", "probabilities cannot")):
        path = tmp_path / "b.yaml"
        path.write_text("method: bayes\nrun_cap: 3\nparameters:\n  dataset: {value: digits}\n"
                        f"  learning_rate: {param}\n")
        with pytest.raises(sweep.SweepError, match=fragment):
            sweep.run_sweep(sweep.load_spec(path), tmp_path / "r", workers=1)


def test_bayes_with_two_workers_repeats_its_proposals(tmp_path):
    spec = sweep.load_spec(_bayes(tmp_path, 8))
    sweep.run_sweep(spec, tmp_path / "a", workers=2, seed=1)
    sweep.run_sweep(spec, tmp_path / "b", workers=2, seed=1)
    assert _sequence(tmp_path / "a") == _sequence(tmp_path / "b")


def test_bayes_resumes_after_sigkill_with_the_same_proposals(tmp_path):
    path = _bayes(tmp_path, 12)
    reference = tmp_path / "reference"
    assert main(["sweep", str(path), "--results", str(reference), "--workers", "2"]) == 0
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fastnn", "sweep", str(path), "--results", str(killed),
           "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(sweep.read_results(killed)) >= 5:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(sweep.read_results(killed))
    assert 5 <= done < 12, "the kill must land mid-sweep"
    assert main(["sweep", str(path), "--results", str(killed), "--workers", "2"]) == 0
    assert _sequence(killed) == _sequence(reference)
    assert len(sweep.read_results(killed)) == 12  # every run recorded exactly once


# --------------------------------------------------------------- hyperband
def test_hyperband_brackets_follow_min_iter_eta_and_max_iter_s():
    spec = spec_of({"lr": {"values": [0.1]}}, method="grid",
                   early_terminate={"type": "hyperband", "min_iter": 2, "eta": 3, "s": 3})
    assert spec.hyperband.brackets == [2, 6, 18]
    spec = spec_of({"lr": {"values": [0.1]}}, method="grid",
                   early_terminate={"type": "hyperband", "max_iter": 27, "eta": 3, "s": 2})
    assert spec.hyperband.brackets == [3, 9]


@pytest.mark.parametrize("early, message", [
    ({"type": "envelope"}, "must be {type: hyperband"),
    ({"type": "hyperband"}, "give min_iter or max_iter"),
    ({"type": "hyperband", "max_iter": 9}, "max_iter needs s"),
    ({"type": "hyperband", "min_iter": 1, "eta": 1}, "eta must be a number > 1"),
    ({"type": "hyperband", "min_iter": 0}, "min_iter must be an integer >= 1"),
    ({"type": "hyperband", "min_iter": 1, "bracket": 2}, "unknown key"),
])
def test_bad_early_terminate(early, message):
    with pytest.raises(sweep.SweepError, match=message):
        spec_of({"lr": {"values": [0.1]}}, method="grid", early_terminate=early)


@pytest.mark.parametrize("name", ["test_accuracy", "test_loss"])
def test_a_test_set_metric_is_refused(name):
    with pytest.raises(sweep.SweepError, match=f"metric {name}: a sweep must not choose on "
                                               "the test set"):
        spec_of({"lr": {"values": [0.1]}}, method="grid",
                metric={"name": name, "goal": "maximize"})


def test_hyperband_stops_the_worse_runs_at_each_bracket_exactly():
    from fastnn.sweep.hyperband import Hyperband

    rule = Hyperband([1, 3, 9], eta=3, goal="maximize")
    # run 0 is alone at epoch 1: top ceil(1/3) = 1 of 1 -> goes on
    assert rule.decide(0, 1, 0.50) is False
    assert rule.decide(0, 2, 0.10) is False  # not a bracket: never stopped
    # run 1 better than run 0 -> top 1 of 2 -> goes on; run 2 worst of 3 -> stops
    assert rule.decide(1, 1, 0.60) is False
    assert rule.decide(2, 1, 0.55) is True
    # four runs at epoch 1: the top ceil(4/3) = 2 go on
    assert rule.decide(3, 1, 0.52) is True  # 0.60, 0.55 are the top 2 of 4
    assert rule.decide(4, 1, 0.70) is False  # top 2 of 5: 0.70, 0.60
    # epoch 3: the first run there always goes on; then only the best third
    assert rule.decide(1, 3, 0.80) is False
    assert rule.decide(4, 3, 0.79) is True
    # a NaN metric counts as the worst
    assert rule.decide(5, 1, float("nan")) is True
    low = Hyperband([1], eta=2, goal="minimize")
    assert low.decide(0, 1, 0.9) is False and low.decide(1, 1, 0.3) is False
    assert low.decide(2, 1, 0.95) is True  # a loss: larger is worse


HYPERBAND = """
method: grid
metric: {name: val_accuracy, goal: maximize}
early_terminate: {type: hyperband, min_iter: 1, eta: 2, s: 2}
parameters:
  dataset: {value: digits}
  epochs: {value: 4}
  num_layers: {value: 1}
  hidden_size: {value: 16}
  optimizer: {value: sgd}
  learning_rate: {values: [0.3, 1.0e-5, 0.1, 3.0e-6, 0.03, 1.0e-6]}
"""


def test_hyperband_sweep_stops_runs_after_their_bracket_and_resume_keeps_them(tmp_path,
                                                                              capsys):
    path = tmp_path / "hb.yaml"
    path.write_text(HYPERBAND)
    results = tmp_path / "r"
    assert main(["sweep", str(path), "--results", str(results), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "hyperband: runs in the worse part of each bracket stop after epochs 1, 2" in out
    records = sorted(sweep.read_results(results), key=lambda r: r["index"])
    assert len(records) == 6
    stopped = [r for r in records if r["status"] == "stopped"]
    assert stopped, "tiny learning rates must be stopped"
    assert any(r["config"]["lr"] < 1e-4 for r in stopped)
    for r in stopped:
        assert r["history"]["epoch"][-1] in (1, 2)  # ended right after a bracket
        assert r["val_accuracy"] == r["history"]["val_accuracy"][-1]
    finished = [r for r in records if r["status"] == "finished"]
    assert all(r["history"]["epoch"][-1] == 4 for r in finished)
    assert records[0]["status"] == "finished"  # the first run is alone at its brackets
    # the brackets decide from what reached them: check every stop against the rule
    from fastnn.sweep.hyperband import Hyperband

    rule = Hyperband([1, 2], eta=2)
    for r in records:
        verdicts = [rule.decide(r["index"], e, v) for e, v in
                    zip(r["history"]["epoch"], r["history"]["val_accuracy"]) if e in (1, 2)]
        assert (r["status"] == "stopped") == any(verdicts), r["index"]
    assert main(["sweep", str(path), "--results", str(results), "--workers", "1"]) == 0
    assert len(sweep.read_results(results)) == 6  # stopped runs are not run again


def test_log_uniform_bounds_are_natural_logs_not_values():
    # min/max of log_uniform are logs: -9 and -2 mean lr in [1.2e-4, 0.135]
    spec = spec_of({"lr": {"distribution": "log_uniform", "min": -9, "max": -2}})
    lrs = draws(spec, "lr")
    assert lrs.min() >= math.exp(-9) and lrs.max() <= math.exp(-2)


def test_bayes_runs_every_configuration_of_a_small_space_once_then_says_so(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text("method: bayes\nrun_cap: 6\nparameters:\n  dataset: {value: digits}\n"
                    "  epochs: {value: 1}\n  num_layers: {value: 1}\n"
                    "  activation: {values: [relu, tanh]}\n  hidden_size: {values: [8, 16]}\n")
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    records = sweep.read_results(tmp_path / "r")
    assert len(records) == 4
    assert len({json.dumps(r["config"], sort_keys=True) for r in records}) == 4
    assert "ran out of new configurations after 4 runs" in out
