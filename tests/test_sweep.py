"""Sweep files, the local sweep driver and resuming."""

import json

import pytest

from fastnn import sweep
from fastnn.cli import main

TINY = """
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  dataset: {value: digits}
  epochs: {value: 2}
  num_layers: {value: 1}
  hidden_size: {values: [8, 16]}
  learning_rate: {values: [1e-3, 0.01]}
"""


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_expands_in_order(tmp_path):
    spec = sweep.load_spec(write(tmp_path, TINY))
    configs = spec.configs()
    assert len(configs) == 4
    assert configs[0] == {"dataset": "digits", "epochs": 2, "num_layers": 1, "hidden_size": 8,
                          "lr": 0.001}
    assert {c["lr"] for c in configs} == {0.001, 0.01}  # "1e-3" read as a number


def test_random_sampling_is_seeded_and_within_bounds(tmp_path):
    spec = sweep.parse_spec({
        "method": "random", "run_cap": 50,
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
                       "hidden_size": {"distribution": "int_uniform", "min": 8, "max": 64},
                       "momentum": {"distribution": "q_uniform", "min": 0.5, "max": 0.9,
                                    "q": 0.1},
                       "activation": {"values": ["relu", "tanh"]}}})
    a, b = spec.configs(seed=1), spec.configs(seed=1)
    assert a == b and len(a) == 50 and a != spec.configs(seed=2)
    assert all(1e-4 <= c["lr"] <= 1e-1 for c in a)
    assert all(8 <= c["hidden_size"] <= 64 and isinstance(c["hidden_size"], int) for c in a)
    assert all(abs(c["momentum"] * 10 - round(c["momentum"] * 10)) < 1e-9 for c in a)


@pytest.mark.parametrize("text, message", [
    ("method: grid\nparameters: {epochs: {values: [1, 2]]}", "malformed YAML at line"),
    ("method: bayes\nparameters: {epochs: {values: [1]}}", "method bayes needs a run_cap"),
    ("method: hyperband\nparameters: {epochs: {values: [1]}}", "method must be one of"),
    ("method: grid\nparameters: {colour: {values: [1]}}", "unknown parameter 'colour'"),
    ("method: grid\nfoo: 1\nparameters: {epochs: {values: [1]}}", "unknown key"),
    ("method: grid\nparameters: {epochs: {values: [0, 5]}}", "epochs must be >= 1, got 0"),
    ("method: grid\nparameters: {learning_rate: {values: [-0.1]}}", "lr must be > 0"),
    ("method: grid\nparameters: {optimizer: {values: [adagrad]}}", "optimizer must be one of"),
    ("method: random\nparameters: {epochs: {values: [1]}}", "needs a run_cap"),
    ("method: grid\nparameters: {lr: {min: 0.1, max: 0.2}}", "grid needs values"),
    ("method: random\nrun_cap: 3\nparameters: {lr: {distribution: normal, mu: 0, min: 1}}",
     "takes mu and sigma, not min/max"),
    ("method: random\nrun_cap: 3\nparameters: {lr: {distribution: normal, mu: 0.1, sigma: 0}}",
     "sigma must be > 0"),
    ("method: random\nrun_cap: 3\nparameters: {lr: {distribution: uniform, min: 0.1, max: 1, mu: 1}}",
     "mu and sigma go with the normal"),
    ("method: random\nrun_cap: 3\nparameters: {lr: {distribution: gamma, min: 1, max: 2}}",
     "unknown distribution 'gamma'"),
    ("method: random\nrun_cap: 3\nparameters: {hidden_size: {distribution: normal, mu: 64}}",
     "takes whole numbers"),
    ("method: random\nrun_cap: 3\nparameters: {activation: {values: [relu, tanh], probabilities: [0.5, 0.6]}}",
     "probabilities must sum to 1"),
    ("method: random\nrun_cap: 3\nparameters: {activation: {values: [relu, tanh], probabilities: [1]}}",
     "probabilities must be 2 numbers"),
    ("method: grid\nparameters: {activation: {values: [relu, tanh], probabilities: [0.5, 0.5]}}",
     "mean nothing to a grid"),
    ("method: random\nrun_cap: 3\nparameters: {lr: {distribution: log_uniform_values, min: 0, max: 1}}",
     "needs min > 0"),
    ("method: grid\nparameters: {lr: {values: [0.1]}, learning_rate: {values: [0.2]}}",
     "given twice"),
    ("- just\n- a list", "mapping at the top level"),
])
def test_bad_sweep_files(tmp_path, text, message):
    with pytest.raises(sweep.SweepError, match=message):
        sweep.load_spec(write(tmp_path, text))


def test_yaml_is_loaded_safely(tmp_path):
    evil = "method: grid\nparameters: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(sweep.SweepError, match="malformed YAML"):
        sweep.load_spec(write(tmp_path, evil))


def test_tiny_sweep_runs_records_and_resumes(tmp_path, capsys):
    spec_path = write(tmp_path, TINY)
    results = tmp_path / "results"
    rc = main(["sweep", str(spec_path), "--results", str(results), "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = (results / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4
    records = [json.loads(line) for line in lines]
    assert {r["status"] for r in records} == {"finished"}
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3]
    for r in records:
        assert len(r["history"]["val_accuracy"]) == 2
        assert 0 <= r["test_accuracy"] <= 1 and r["wall_time"] > 0
    assert len(list((results / "runs").glob("*/model.npz"))) == 3  # the top 3 are kept
    # every run leaves a folder like fastnn train's
    for r in records:
        folder = results / "runs" / r["run_id"]
        assert {p.name for p in folder.iterdir()} >= {"config.yaml", "metrics.csv", "log.txt"}
        rows = (folder / "metrics.csv").read_text().splitlines()
        assert rows[0] == "epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds"
        assert len(rows) == 3 and "test accuracy" in (folder / "log.txt").read_text()
    assert "best:" in out
    # progress shows validation scores; the test score only with the final choice
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert len(progress) == 4 and all("val_acc" in line for line in progress)
    assert not any("test" in line for line in progress)
    # Re-running the same command finds everything done: nothing is added.
    assert main(["sweep", str(spec_path), "--results", str(results)]) == 0
    assert len((results / "results.jsonl").read_text().splitlines()) == 4


def test_a_swept_val_fraction_sets_the_split_of_every_run(tmp_path):
    spec = sweep.load_spec(write(tmp_path, TINY.replace("  epochs: {value: 2}",
                                                        "  epochs: {value: 1}\n"
                                                        "  val_fraction: {value: 0.5}")))
    records = sweep.run_sweep(spec, tmp_path / "r", workers=1, val_fraction=0.1)
    # digits: 1,437 training images, half of them held out (not --val-fraction's tenth)
    assert {(r["n_train"], r["n_val"]) for r in records} == {(718, 719)}


@pytest.mark.parametrize("values", ["{values: [0.2, 0.5]}",
                                    "{distribution: uniform, min: 0.1, max: 0.3}"])
def test_more_than_one_val_fraction_is_refused(tmp_path, values):
    text = TINY.replace("method: grid", "method: random\nrun_cap: 2") + \
        f"  val_fraction: {values}\n"
    with pytest.raises(sweep.SweepError, match="validates on the same split: give val_fraction "
                                               "one value"):
        sweep.run_sweep(sweep.load_spec(write(tmp_path, text)), tmp_path / "r", workers=1)


def test_resume_runs_only_what_is_missing(tmp_path):
    spec = sweep.load_spec(write(tmp_path, TINY))
    results = tmp_path / "r"
    sweep.run_sweep(spec, results, workers=1)
    path = results / "results.jsonl"
    lines = path.read_text().splitlines()
    kept = [json.loads(x)["run_id"] for x in lines[:2]]
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])  # torn last line
    with pytest.warns(UserWarning, match="unreadable line 3"):
        records = sweep.run_sweep(spec, results, workers=2)
    ids = [r["run_id"] for r in records]
    assert len(ids) == len(set(ids)) == 4
    assert ids[:2] == kept
    # the torn fragment was cut, not glued to the next record: every line parses
    on_disk = [json.loads(line)["run_id"] for line in path.read_text().splitlines()]
    assert on_disk == ids


def test_results_dir_of_another_sweep_is_refused(tmp_path):
    results = tmp_path / "r"
    sweep.run_sweep(sweep.load_spec(write(tmp_path, TINY)), results, workers=1)
    other = sweep.load_spec(write(tmp_path, TINY.replace("epochs: {value: 2}",
                                                         "epochs: {value: 3}"), "b.yaml"))
    with pytest.raises(sweep.SweepError, match="different sweep"):
        sweep.run_sweep(other, results, workers=1)


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    text = TINY.replace("learning_rate: {values: [1e-3, 0.01]}",
                        "learning_rate: {values: [1e-3, 1e30]}\n  optimizer: {value: sgd}")
    records = sweep.run_sweep(sweep.load_spec(write(tmp_path, text)), tmp_path / "r", workers=2)
    statuses = sorted(r["status"] for r in records)
    assert statuses == ["diverged", "diverged", "finished", "finished"]
    bad = next(r for r in records if r["status"] == "diverged")
    assert "lower learning rate" in bad["error"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    spec_path = write(tmp_path, "method: bayes\nparameters: {epochs: {values: [1]}}")
    assert main(["sweep", str(spec_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "method bayes needs a run_cap" in err[0]
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_wandb_sweep_without_credentials_fails_fast(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    rc = main(["sweep", str(write(tmp_path, TINY)), "--wandb-sweep"])
    assert rc == 1
    assert "needs W&B credentials" in capsys.readouterr().err


def test_shipped_sweep_file_is_valid():
    from pathlib import Path

    spec = sweep.load_spec(Path(__file__).parent.parent / "sweeps" / "fashion_mnist.yaml")
    assert spec.method == "random" and spec.run_cap >= 1
    grid = 1
    for p in spec.params:
        grid *= len(p.values)
    assert grid == 11664


@pytest.mark.parametrize("name, runs", [("fashion_mnist_refine", 108),
                                        ("fashion_mnist_stronger", 6)])
def test_shipped_grid_files_are_valid(name, runs):
    from pathlib import Path

    spec = sweep.load_spec(Path(__file__).parent.parent / "sweeps" / f"{name}.yaml")
    assert spec.method == "grid" and len(spec.configs(seed=0)) == runs


@pytest.mark.parametrize("name, brackets", [("fashion_mnist_bayes", None),
                                            ("fashion_mnist_bayes_hyperband", [1, 3, 9])])
def test_shipped_bayes_files_search_the_classic_space(name, brackets):
    from pathlib import Path

    sweeps = Path(__file__).parent.parent / "sweeps"
    spec = sweep.load_spec(sweeps / f"{name}.yaml")
    classic = sweep.load_spec(sweeps / "fashion_mnist.yaml")
    assert spec.method == "bayes" and spec.run_cap == 150
    assert [(p.name, p.values) for p in spec.params] == \
        [(p.name, p.values) for p in classic.params]
    got = spec.hyperband.brackets[:3] if spec.hyperband else None
    assert got == brackets


@pytest.mark.parametrize("text", ["?", "method: grid\nparameters: {epochs: {1: 2}}",
                                  "method: grid\nparameters: {null: {values: [1]}}"])
def test_non_string_keys_are_sweep_errors(tmp_path, text):
    with pytest.raises(sweep.SweepError, match="unknown"):
        sweep.load_spec(write(tmp_path, text))


def test_retry_failed_runs_a_failed_run_again_and_its_new_record_wins(tmp_path, capsys):
    spec_path = write(tmp_path, TINY)
    results = tmp_path / "r"
    sweep.run_sweep(sweep.load_spec(spec_path), results, workers=2)
    # make run 1 look as if it had crashed
    path = results / sweep.RESULTS_FILE
    lines = path.read_text().splitlines()
    records = [json.loads(x) for x in lines]
    crashed = next(r for r in records if r["index"] == 1)
    crashed.update(status="failed", error="MemoryError: simulated")
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert main(["sweep", str(spec_path), "--results", str(results)]) == 0
    by_index = {r["index"]: r for r in sweep.read_results(results)}
    assert by_index[1]["status"] == "failed"  # not retried by default
    capsys.readouterr()
    assert main(["sweep", str(spec_path), "--results", str(results), "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "[4/4]" in out and "1 failed" not in out
    after = sweep.read_results(results)
    assert [r["index"] for r in after] == [r["index"] for r in records]  # one per run
    assert next(r for r in after if r["index"] == 1)["status"] == "finished"
    assert len(path.read_text().splitlines()) == 5  # the log keeps both lines


def test_a_kept_best_epoch_is_what_the_record_scores(tmp_path):
    # keep_best ends with the weights of the best validation epoch: the record's
    # validation score is theirs (the search is told it), not the last epoch's
    spec = sweep.parse_spec({"method": "grid", "parameters": {
        "dataset": {"value": "digits"}, "epochs": {"value": 6}, "num_layers": {"value": 1},
        "hidden_size": {"value": 8}, "lr": {"value": 0.3}, "optimizer": {"value": "sgd"},
        "keep_best": {"values": [True, False]}}})
    results = tmp_path / "r"
    sweep.run_sweep(spec, results, workers=1)
    records = {r["config"]["keep_best"]: r for r in sweep.read_results(results)}
    kept, last = records[True], records[False]
    assert kept["val_accuracy"] == pytest.approx(max(kept["history"]["val_accuracy"]))
    assert last["val_accuracy"] == pytest.approx(last["history"]["val_accuracy"][-1])
