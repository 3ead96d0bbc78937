"""fastnn report on a small sweep: every figure and the numbers in its tables."""

import json

import pytest

from fastnn import sweep
from fastnn.cli import main

SPEC = """
method: grid
parameters:
  dataset: {value: digits}
  epochs: {value: 2}
  num_layers: {value: 1}
  hidden_size: {values: [8, 16]}
  optimizer: {values: [adam, sgd]}
  learning_rate: {value: 0.01}
"""
STRONGER_SPEC = """
method: grid
parameters:
  dataset: {value: digits}
  epochs: {value: 3}
  num_layers: {value: 1}
  hidden_size: {value: 32}
  dropout: {values: [0.1, 0.2]}
  lr_schedule: {value: cosine}
  learning_rate: {value: 0.01}
"""
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ["parallel_coordinates.png", "val_accuracy_by_run.png", "confusion_matrix.png",
           "learning_curves.png", "ce_vs_mse.png"]


def _run_spec(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("sweep")
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(text)
    results = tmp / "results"
    sweep.run_sweep(sweep.load_spec(spec_path), results, workers=2)
    return results


@pytest.fixture(scope="module")
def sweep_results(tmp_path_factory):
    return _run_spec(tmp_path_factory, SPEC)


def test_report_writes_every_figure_and_the_right_numbers(sweep_results, tmp_path, capsys,
                                                          mnist_data):
    out = tmp_path / "reports"
    rc = main(["report", str(sweep_results), "--out", str(out), "--mnist-dir", str(mnist_data),
               "--seeds", "3", "--compare-loss"])
    assert rc == 0, capsys.readouterr().err
    for name in FIGURES:
        data = (out / "figures" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    text = (out / "sweep.md").read_text()
    records = [json.loads(x) for x in (sweep_results / "results.jsonl").read_text().splitlines()]
    best = max(records, key=lambda r: r["val_accuracy"])
    # the top row of the table is the best run, with its accuracies
    top_row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert f"{best['val_accuracy']:.2%}" in top_row and f"{best['test_accuracy']:.2%}" in top_row
    assert best["run_id"] in text
    for section in ("## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "## 6.", "## 7.", "## 8."):
        assert section in text
    assert "Most confused pairs" in text
    assert "| cross_entropy |" in text and "| mean_squared_error |" in text
    assert "10,000-image MNIST training set" in text  # says it is the subset
    assert text.count("MNIST test") >= 1
    assert "### Over 3 seeds" in text and "| fastnn train default: " in text


@pytest.fixture(scope="module")
def stronger_results(tmp_path_factory):
    return _run_spec(tmp_path_factory, STRONGER_SPEC)


def test_report_stronger_sweep_gets_section_9_and_an_mnist_pick(sweep_results, stronger_results,
                                                                 tmp_path, capsys, mnist_data):
    out = tmp_path / "reports"
    rc = main(["report", str(sweep_results), "--out", str(out), "--mnist-dir", str(mnist_data),
               "--seeds", "0", "--stronger", str(stronger_results)])
    assert rc == 0, capsys.readouterr().err
    text = (out / "sweep.md").read_text()
    assert "## 9. Outside the classic search space" in text
    assert "### Over" not in text  # --seeds 0 skips the seed study
    strong = [json.loads(x) for x in
              (stronger_results / "results.jsonl").read_text().splitlines()]
    best = max(strong, key=lambda r: r["val_accuracy"])
    section9 = text.split("## 9.")[1]
    top_row = next(line for line in section9.splitlines() if line.startswith("| 1 |"))
    assert f"| {best['config']['dropout']} |" in top_row
    assert f"{best['val_accuracy']:.2%}" in top_row and f"{best['test_accuracy']:.2%}" in top_row
    mnist = text.split("## 8.")[1].split("## 9.")[0]
    rows = [line for line in mnist.splitlines() if line.startswith("| ") and "dropout=" in line]
    assert len(rows) == 1 and "outside the classic space" in rows[0]
    assert f"dropout={best['config']['dropout']}" in rows[0]
    # the pick keeps the stronger run's schedule; epochs are scaled like the others
    assert "lr_schedule=cosine" in rows[0]


def test_seed_study_numbers_are_the_runs_it_reports(sweep_results, tmp_path):
    from fastnn import report

    records = sweep.read_results(sweep_results)
    df = report.runs_frame(records)
    rows = report.seed_study(df, records, "digits", None, seeds=2, top=1)
    assert [r["label"] for r in rows] == ["sweep #1", "fastnn train default"]
    best = max(records, key=lambda r: r["val_accuracy"])
    assert rows[0]["config"] == best["config"] and rows[0]["sweep_val"] == best["val_accuracy"]
    assert rows[1]["sweep_val"] is None and rows[1]["config"]["hidden_size"] == 256
    for r in rows:
        assert len(r["val"]) == len(r["test"]) == 2
        assert all(0.0 <= x <= 1.0 for x in r["val"] + r["test"])
    # each number is a real run: seed 1 of the best configuration, trained again
    _, hist, test_acc, _, _ = report.train_config(best["config"], "digits", None, 1)
    assert rows[0]["test"][1] == pytest.approx(float(test_acc), abs=0)
    assert rows[0]["val"][1] == hist.to_dict()["val_accuracy"][-1]
    text = "\n".join(report._seed_study_lines(rows, 2))
    assert "fastnn train default" in text and "Over 2 seeds" in text and "top 1 " in text
    mean = sum(rows[0]["test"]) / 2
    assert f"{mean:.2%} ±" in text


def test_report_rejects_negative_seeds(sweep_results, tmp_path, capsys):
    assert main(["report", str(sweep_results), "--out", str(tmp_path), "--seeds", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seeds" in err[0]
    assert not (tmp_path / "sweep.md").exists()


def test_report_no_mnist_with_mnist_is_a_one_line_usage_error(sweep_results, tmp_path, capsys):
    assert main(["report", str(sweep_results), "--out", str(tmp_path / "r"), "--no-mnist",
                 "--mnist"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-mnist contradicts --mnist" in err[0]
    assert not (tmp_path / "r").exists()


def test_report_stronger_without_results_is_a_one_line_error(sweep_results, tmp_path, capsys):
    assert main(["report", str(sweep_results), "--out", str(tmp_path / "r"), "--no-mnist",
                 "--stronger", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results.jsonl" in err[0]


def test_report_stronger_on_another_data_set_is_refused(sweep_results, stronger_results,
                                                         tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    lines = (stronger_results / "results.jsonl").read_text().splitlines()
    records = [json.loads(x) for x in lines]
    for r in records:
        r["config"]["dataset"] = "mnist"
    (other / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert main(["report", str(sweep_results), "--out", str(tmp_path / "r"), "--no-mnist",
                 "--stronger", str(other)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mnist" in err[0] and "digits" in err[0]
    assert not (tmp_path / "r" / "sweep.md").exists()


def test_report_says_where_the_confusion_matrix_model_comes_from(sweep_results, tmp_path,
                                                                  capsys):
    import shutil

    best = sweep.best_run(sweep.read_results(sweep_results))
    kept, gone = tmp_path / "kept", tmp_path / "gone"
    shutil.copytree(sweep_results, kept)
    shutil.copytree(sweep_results, gone, ignore=shutil.ignore_patterns("model.npz"))
    texts = {}
    for name in ("kept", "gone"):
        out = tmp_path / f"out-{name}"
        assert main(["report", str(tmp_path / name), "--out", str(out), "--no-mnist",
                     "--seeds", "0"]) == 0, capsys.readouterr().err
        texts[name] = (out / "sweep.md").read_text().split("## 5.")[1].split("## 6.")[0]
    assert f"The model of run {best['run_id']}, from" in texts["kept"]
    assert "trained again" not in texts["kept"]
    assert f"run {best['run_id']} was trained again" in texts["gone"]
    assert f"{best['test_accuracy']:.2%}" in texts["gone"]


def test_report_without_results_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results.jsonl" in err[0]


VAL_LOSS_SPEC = """
method: grid
metric: {name: val_loss, goal: minimize}
parameters:
  dataset: {value: digits}
  epochs: {value: 2}
  num_layers: {value: 1}
  hidden_size: {value: 8}
  dropout: {values: [0.0, 0.3]}
  learning_rate: {values: [0.0018611728721136588, 0.3]}
"""


@pytest.fixture(scope="module")
def val_loss_results(tmp_path_factory):
    return _run_spec(tmp_path_factory, VAL_LOSS_SPEC)


def test_report_follows_the_sweeps_metric_and_shows_every_swept_setting(val_loss_results,
                                                                          capsys):
    records = sweep.read_results(val_loss_results)
    best_loss = min(records, key=lambda r: r["val_loss"])
    best_acc = max(records, key=lambda r: r["val_accuracy"])
    assert best_loss["run_id"] != best_acc["run_id"] or len(records) == 1
    rc = main(["report", str(val_loss_results)])  # no flags: trains nothing
    out = capsys.readouterr().out
    assert rc == 0
    assert "training" not in out  # nothing trained, nothing announced
    text = (val_loss_results / "report" / "sweep.md").read_text()  # beside the results
    assert f"Best configuration by val_loss (run {best_loss['run_id']})" in text
    assert "Ranked by the sweep's metric, val_loss (minimize)." in text
    header = next(line for line in text.splitlines() if line.startswith("| rank |"))
    assert "| dropout |" in header and "| lr |" in header and "| val_loss |" in header
    top_row = next(line for line in text.splitlines() if line.startswith("| 1 |"))
    assert f"{best_loss['val_loss']:.4g}" in top_row
    assert "0.001861 |" in text and "0.0018611728721136588" not in text.split("```")[-1]
    for section in ("## 7.", "## 8.", "### Over"):
        assert section not in text


def test_report_announces_how_long_the_training_it_was_asked_for_takes(val_loss_results,
                                                                        tmp_path, capsys):
    rc = main(["report", str(val_loss_results), "--out", str(tmp_path), "--seeds", "1",
               "--compare-loss"])
    out = capsys.readouterr().out
    assert rc == 0
    first = out.splitlines()[0]
    assert first.startswith("training 4 seed-study runs, 2 loss runs: about ")
    assert "minutes on one worker from the sweep's median run time" in first


def test_the_accuracy_axis_covers_every_value_drawn(sweep_results, tmp_path):
    from fastnn import report

    df = report.runs_frame(sweep.read_results(sweep_results))
    df["val_accuracy"] = [0.243, 0.347, 0.392, 0.9][:len(df)]
    labels = report.plot_parallel(df, tmp_path / "p.png")
    assert labels[0] <= df["val_accuracy"].min() and labels[-1] >= df["val_accuracy"].max()
