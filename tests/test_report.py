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
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ["parallel_coordinates.png", "val_accuracy_by_run.png", "confusion_matrix.png",
           "learning_curves.png", "ce_vs_mse.png"]


@pytest.fixture(scope="module")
def sweep_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    spec_path = tmp / "spec.yaml"
    spec_path.write_text(SPEC)
    results = tmp / "results"
    sweep.run_sweep(sweep.load_spec(spec_path), results, workers=2)
    return results


def test_report_writes_every_figure_and_the_right_numbers(sweep_results, tmp_path, capsys,
                                                          shared_data):
    out = tmp_path / "reports"
    rc = main(["report", str(sweep_results), "--out", str(out), "--mnist-dir", str(shared_data)])
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


def test_report_without_results_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no results.jsonl" in err[0]
