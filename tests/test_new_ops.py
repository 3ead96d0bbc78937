"""GELU, SiLU, LeakyReLU and AdamW, added through the registries only, work everywhere."""

import json

import numpy as np
import pytest
from conftest import KERNEL_SETS
from sklearn.datasets import load_digits

import fastnn
from fastnn import MLPClassifier, activations, optimizers
from fastnn.cli import main

NEW_ACTIVATIONS = ["gelu", "silu", "leaky_relu"]
QUICK = ["-d", "digits", "-e", "2", "-nhl", "1", "-sz", "16", "--no-progress"]


@pytest.mark.parametrize("name", NEW_ACTIVATIONS)
def test_new_activations_are_registered_and_offered_by_the_cli(name, capsys):
    assert name in activations.REGISTRY
    assert "adamw" in optimizers.OPTIMIZERS
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert name in out and "adamw" in out


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("activation, optimizer", [("gelu", "adamw"), ("silu", "adam"),
                                                   ("leaky_relu", "adamw")])
def test_cli_trains_saves_and_evaluates_with_the_new_ops(activation, optimizer, kernels,
                                                         tmp_path, capsys):
    model = tmp_path / "m.npz"
    rc = main(["train", *QUICK, "-a", activation, "-o", optimizer, "-w_d", "0.01",
               "--kernels", kernels, "--save", str(model)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    net, header = fastnn.load_model(model)
    assert net.activation == activation
    config = header["metadata"]["config"]
    assert config["optimizer"] == optimizer and config["weight_decay"] == 0.01
    # AdamW takes -w_d as its decoupled decay: the network has no L2 penalty
    assert net.weight_decay == (0.0 if optimizer == "adamw" else 0.01)
    rc = main(["evaluate", str(model)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    acc = float(out.split("accuracy ")[1].split()[0])
    assert acc == pytest.approx(header["metadata"]["test_accuracy"], abs=1e-4)


def test_a_sweep_over_the_new_ops_runs(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("""
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  dataset: {value: digits}
  epochs: {value: 1}
  num_layers: {value: 1}
  hidden_size: {value: 16}
  activation: {values: [gelu, silu, leaky_relu]}
  optimizer: {values: [adamw]}
  weight_decay: {value: 0.01}
""")
    rc = main(["sweep", str(spec), "--results", str(tmp_path / "r")])
    assert rc == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").open()]
    assert sorted(r["config"]["activation"] for r in records) == sorted(NEW_ACTIVATIONS)
    assert {r["status"] for r in records} == {"finished"}


@pytest.mark.parametrize("activation, optimizer", [("gelu", "adam"), ("silu", "adamw"),
                                                   ("leaky_relu", "momentum")])
def test_the_estimator_takes_the_new_ops(activation, optimizer):
    X, y = load_digits(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(32,), activation=activation, optimizer=optimizer,
                        learning_rate=0.01, epochs=5, random_state=0, weight_decay=0.01)
    clf.fit(X / 16, y)
    assert clf.score(X / 16, y) > 0.8
    assert clf.network_.activation == activation
    if optimizer == "adamw":
        assert clf.network_.weight_decay == 0 and clf.optimizer_.weight_decay == 0.01


def test_adamw_decays_every_parameter_apart_from_the_gradient():
    # A zero gradient leaves Adam's step at zero: only the decay moves w.
    w = np.full(4, 2.0)
    opt = optimizers.get("adamw", [w], lr=0.1, weight_decay=0.5)
    opt.step([np.zeros(4)])
    np.testing.assert_allclose(w, 2.0 * (1 - 0.1 * 0.5))
