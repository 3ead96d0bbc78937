"""The accuracy study's driver, run small: its command lines, a run, the report."""

import json
import shlex

import pytest

from bench import accuracy
from fastnn import TrainConfig
from fastnn.cli import build_parser


@pytest.mark.parametrize("values, dataset", [
    (accuracy.RECIPE, "fashion_mnist"),
    ({**accuracy.RECIPE, **accuracy.MNIST_CHANGES}, "mnist"),
    (accuracy.CLASSIC, "fashion_mnist"),
    *(({**accuracy.RECIPE, **change}, "fashion_mnist")
      for change in [*accuracy.ABLATIONS.values(), *accuracy.VARIANTS.values()]),
])
def test_printed_command_trains_exactly_the_run(values, dataset):
    argv = shlex.split(accuracy.command(values, dataset, 2))[1:]  # drop "fastnn"
    args = build_parser().parse_args(argv)

    expected = TrainConfig(**{**values, "dataset": dataset, "seed": 2}).validated()
    assert TrainConfig.from_args(args) == expected


def test_study_plan_holds_seeds_ablations_mnist_and_classic():
    keys = [run[0] for run in accuracy.planned()]
    assert len(keys) == len(set(keys))
    assert {k.split("/")[0] for k in keys} == {"recipe", "mnist", "mnist + weight average",
                                                "classic", *accuracy.ABLATIONS,
                                                *accuracy.VARIANTS}
    for name, change in accuracy.ABLATIONS.items():
        assert any(accuracy.RECIPE.get(k, getattr(accuracy.TrainConfig, k)) != v
                   for k, v in change.items()), name


def test_a_small_study_trains_records_and_reports(tmp_path, monkeypatch):
    small = {"num_layers": 1, "hidden_size": 16, "epochs": 2, "batch_size": 64,
             "augment_shift": 1, "augment_flip": True, "label_smoothing": 0.1, "mixup": 0.2,
             "keep_best": True}
    monkeypatch.setattr(accuracy, "RECIPE", small)
    monkeypatch.setattr(accuracy, "MNIST_CHANGES", {"augment_flip": False, "augment_shift": 1,
                                                    "epochs": 2})
    monkeypatch.setattr(accuracy, "CLASSIC", {"num_layers": 1, "hidden_size": 8, "epochs": 1})
    monkeypatch.setattr(accuracy, "SEEDS", (0, 1))
    monkeypatch.setattr(accuracy, "ABLATIONS", {"no flips": {"augment_flip": False}})
    monkeypatch.setattr(accuracy, "VARIANTS", {"wider": {"hidden_size": 24}})
    real_planned = accuracy.planned
    # digits stand in for both data sets (always available, 8x8 images)
    monkeypatch.setattr(accuracy, "planned", lambda: [
        (key, group, "digits", values, seed) for key, group, _, values, seed in real_planned()])
    accuracy.run_study(None, tmp_path, set(), parallel=1, budget=1)
    records = [json.loads(line) for line in (tmp_path / "accuracy.jsonl").read_text().split("\n")
               if line]
    assert len(records) == 2 + 2 + 2 + 2 + 2 + 1
    assert all(0 <= r["test_accuracy"] <= 1 and r["best_epoch"] >= 1 for r in records)
    accuracy.run_study(None, tmp_path, set(), parallel=1, budget=1)  # resumes: nothing to do
    assert len((tmp_path / "accuracy.jsonl").read_text().splitlines()) == len(records)
    monkeypatch.setattr(accuracy, "headline", lambda records: "recipe")
    accuracy.write_report(tmp_path, "python -m bench.accuracy")
    text = (tmp_path / "accuracy.md").read_text()
    assert "## Ablation" in text and "no flips" in text and "| mean |" in text
    assert "## Larger variants" in text and "-sz 24" in text
    assert "## Confusion matrix" in text and (tmp_path / "figures" / "accuracy_confusion.png").is_file()
    # a variant as the headline recipe: it opens the report, the base recipe follows
    monkeypatch.setattr(accuracy, "headline", lambda records: "wider")
    accuracy.write_report(tmp_path, "python -m bench.accuracy")
    text = (tmp_path / "accuracy.md").read_text()
    first, base = text.index("-sz 24"), text.index("-sz 16")
    assert first < base and "## The base recipe over seeds" in text
    assert "## Larger variants" not in text  # the only variant is the headline
    monkeypatch.setattr(accuracy, "RECIPE", {**small, "epochs": 1})  # a changed recipe
    assert "recipe/0" not in accuracy.read_records(tmp_path / "accuracy.jsonl")  # retrains


def test_the_headline_is_the_best_complete_candidate_by_validation(monkeypatch):
    monkeypatch.setattr(accuracy, "SEEDS", (0, 1))
    monkeypatch.setattr(accuracy, "ABLATIONS", {"no x": {"dropout": 0.0}, "+ y": {"sam": 0.05}})
    monkeypatch.setattr(accuracy, "VARIANTS", {"wider": {"hidden_size": 1024}})

    def records(scores):
        return {f"{name}/{seed}": {"key": f"{name}/{seed}", "seed": seed, "val_accuracy": v}
                for name, values in scores.items() for seed, v in enumerate(values)}

    # a removal is never a candidate; a candidate needs every seed
    assert accuracy.headline(records({"recipe": [0.90, 0.90], "no x": [0.99, 0.99],
                                      "+ y": [0.92, 0.91], "wider": [0.95]})) == "+ y"
    assert accuracy.headline(records({"recipe": [0.90, 0.90], "+ y": [0.88, 0.91],
                                      "wider": [0.95, 0.90]})) == "wider"
    assert accuracy.headline({}) == "recipe"
    assert accuracy.candidates()["+ y"] == {**accuracy.RECIPE, "sam": 0.05}
