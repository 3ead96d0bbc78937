"""Run folders, config files and resuming a run by its folder."""

import csv
import os

import numpy as np
import pytest
import yaml
from test_cli import QUICK, assert_one_line_error, run

import fastnn
from fastnn import runs


def test_every_train_leaves_a_run_folder(capsys):
    root = os.environ["FASTNN_RUNS"]
    rc, out, err = run(["train", *QUICK], capsys)
    assert rc == 0, err
    (folder,) = [p for p in os.scandir(root)]
    names = set(os.listdir(folder.path))
    assert names == {"config.yaml", "metrics.csv", "log.txt", "model.npz", "checkpoint.npz"}
    with open(os.path.join(folder.path, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr",
                             "seconds"]
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[0]["lr"]) == 1e-3
    with open(os.path.join(folder.path, "log.txt")) as f:
        assert f.read() == out  # the log is what was printed
    with open(os.path.join(folder.path, "config.yaml")) as f:
        config = yaml.safe_load(f)
    assert config["dataset"] == "digits" and config["hidden_size"] == 16
    _, header = fastnn.load_model(os.path.join(folder.path, "model.npz"))
    assert header["metadata"]["test_accuracy"] == pytest.approx(
        float(out.split("test accuracy ")[1].split()[0]), abs=1e-4)
    # a second run never lands in the same folder, even in the same second
    assert run(["train", *QUICK], capsys)[0] == 0
    assert len(os.listdir(root)) == 2


def test_run_dir_and_an_occupied_one(tmp_path, capsys):
    rc, _, err = run(["train", *QUICK, "--run-dir", str(tmp_path / "mine")], capsys)
    assert rc == 0, err
    assert (tmp_path / "mine" / "model.npz").is_file()
    rc, _, err = run(["train", *QUICK, "--run-dir", str(tmp_path / "mine")], capsys)
    assert rc == 2
    assert_one_line_error(err, "already holds a run", f"--resume {tmp_path / 'mine'}")


def test_print_config_round_trips_through_config(tmp_path, capsys):
    rc, printed, err = run(["train", "-d", "digits", "-sz", "24", "-lr", "0.003",
                            "--dropout", "0.1", "--print-config"], capsys)
    assert rc == 0, err
    assert not os.listdir(os.environ["FASTNN_RUNS"])  # nothing trained, nothing written
    path = tmp_path / "my.yaml"
    path.write_text(printed)
    rc, again, err = run(["train", "--config", str(path), "--print-config"], capsys)
    assert rc == 0 and again == printed
    # flags given on the command line win over the file
    rc, changed, _ = run(["train", "--config", str(path), "-sz", "32", "--print-config"],
                         capsys)
    values = yaml.safe_load(changed)
    assert values["hidden_size"] == 32 and values["lr"] == 0.003 and values["dropout"] == 0.1


def test_config_file_takes_sweep_names_and_refuses_unknown_keys(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 0.01\nepsilon: {value: 1.0e-6}\nnum_layers: 2\n")
    rc, out, _ = run(["train", "--config", str(path), "--print-config"], capsys)
    values = yaml.safe_load(out)
    assert rc == 0 and values["lr"] == 0.01 and values["eps"] == 1e-6 and values["num_layers"] == 2
    path.write_text("hiden_size: 3\n")
    rc, _, err = run(["train", "--config", str(path)], capsys)
    assert rc == 2
    assert_one_line_error(err, "c.yaml: unknown setting 'hiden_size'")
    path.write_text("lr: -1\n")
    rc, _, err = run(["train", "--config", str(path)], capsys)
    assert rc == 2
    assert_one_line_error(err, "lr must be > 0")


def test_resume_a_run_folder_with_its_own_settings(tmp_path, capsys):
    folder = tmp_path / "r"
    common = ["train", "-d", "digits", "-nhl", "1", "-sz", "16", "--no-progress", "--seed", "4"]
    assert run([*common, "-e", "2", "--run-dir", str(folder)], capsys)[0] == 0
    # continue for two more epochs typing nothing but the folder and the new length
    rc, out, err = run(["train", "--resume", str(folder), "-e", "4", "--no-progress"], capsys)
    assert rc == 0, err
    assert "resuming after epoch 2" in out and "epoch 4/4" in out
    with open(folder / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    # the same as four epochs at once
    straight = tmp_path / "s"
    assert run([*common, "-e", "4", "--run-dir", str(straight)], capsys)[0] == 0
    a, _ = fastnn.load_model(folder / "model.npz")
    b, _ = fastnn.load_model(straight / "model.npz")
    np.testing.assert_array_equal(a.params.flat, b.params.flat)


def test_resume_names_every_flag_that_differs(tmp_path, capsys):
    folder = tmp_path / "r"
    assert run(["train", *QUICK, "--run-dir", str(folder)], capsys)[0] == 0
    before = (folder / "model.npz").read_bytes()
    rc, _, err = run(["train", "--resume", str(folder), "-sz", "64", "-a", "tanh",
                      "-nhl", "1"], capsys)
    assert rc == 2
    assert_one_line_error(err, "hidden_size 64 (the run: 16)",
                          "activation 'tanh' (the run: 'relu')")
    assert "num_layers" not in err  # given, but the same as the run's
    assert (folder / "model.npz").read_bytes() == before  # nothing overwritten


def test_resume_from_a_checkpoint_file(tmp_path, capsys):
    ckpt_dir = tmp_path / "ck"
    assert run(["train", *QUICK, "--checkpoint", str(ckpt_dir)], capsys)[0] == 0
    rc, out, err = run(["train", "--resume", str(ckpt_dir / "checkpoint.npz"), "-e", "3",
                        "--no-progress"], capsys)
    assert rc == 0, err
    assert "resuming after epoch 2" in out
    assert runs.stored_config(ckpt_dir)[0].hidden_size == 16


def test_resume_of_nothing_is_one_line(tmp_path, capsys):
    rc, _, err = run(["train", "--resume", str(tmp_path)], capsys)
    assert rc == 2
    assert_one_line_error(err, "neither a run folder (config.yaml) nor a checkpoint")
