"""The command line, end to end through main(argv)."""

import subprocess
import sys

import numpy as np
import pytest
from test_datasets import make_set

import fastnn
from fastnn import datasets
from fastnn.cli import main

QUICK = ["-d", "digits", "-e", "2", "-nhl", "1", "-sz", "16", "--no-progress"]


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def assert_one_line_error(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_train_save_evaluate_on_digits(tmp_path, capsys):
    model = tmp_path / "out" / "model.npz"
    rc, out, err = run(["train", *QUICK, "--save", str(model)], capsys)
    assert rc == 0, err
    assert "epoch 1/2" in out and "epoch 2/2" in out and "val_acc" in out
    assert "test accuracy" in out
    net, header = fastnn.load_model(model)
    assert net.layer_sizes == [64, 16, 10]
    assert header["metadata"]["config"]["epochs"] == 2
    rc, out, err = run(["evaluate", str(model), "-d", "digits"], capsys)
    assert rc == 0, err
    acc = float(out.split("accuracy ")[1].split()[0])
    assert acc == pytest.approx(header["metadata"]["test_accuracy"], abs=1e-4)
    assert "(columns: predicted)" in out and len(out.strip().splitlines()) == 12


def test_batch_norm_model_trains_saves_and_evaluates(tmp_path, capsys):
    model = tmp_path / "bn.npz"
    rc, out, err = run(["train", *QUICK, "--batch-norm", "--save", str(model)], capsys)
    assert rc == 0, err
    assert "batch_norm=True" in out
    net, header = fastnn.load_model(model)
    assert net.batch_norm and header["metadata"]["config"]["batch_norm"] is True
    rc, out, err = run(["evaluate", str(model), "-d", "digits"], capsys)
    assert rc == 0, err
    acc = float(out.split("accuracy ")[1].split()[0])
    assert acc == pytest.approx(header["metadata"]["test_accuracy"], abs=1e-4)


def test_assignment_flags_are_accepted(capsys):
    rc, out, err = run(["train", "-d", "digits", "-e", "1", "-b", "32", "-l", "mean_squared_error",
                        "-o", "nag", "-lr", "0.05", "-m", "0.8", "-beta", "0.9", "-beta1", "0.8",
                        "-beta2", "0.99", "-eps", "1e-6", "-w_d", "0.0005", "-w_i", "Xavier",
                        "-nhl", "2", "-sz", "8", "-a", "ReLU", "-wp", "", "--seed", "1",
                        "--dtype", "float64", "--no-progress"], capsys)
    assert rc == 0, err
    assert "NAG(lr=0.05, momentum=0.8)" in out and "float64" in out


def test_key_value_form_and_bare_flags_mean_train(capsys):
    rc, out, err = run(["--dataset=digits", "--epochs=1", "--learning_rate=0.01",
                        "--num_layers=1", "--hidden_size=8", "--no-progress"], capsys)
    assert rc == 0, err
    assert "epoch 1/1" in out


def test_same_seed_same_result(tmp_path, capsys, kernels):
    paths = [tmp_path / "a.npz", tmp_path / "b.npz"]
    for p in paths:
        assert run(["train", *QUICK, "--save", str(p)], capsys)[0] == 0
    a, _ = fastnn.load_model(paths[0])
    b, _ = fastnn.load_model(paths[1])
    np.testing.assert_array_equal(a.params.flat, b.params.flat)


@pytest.mark.parametrize("args, fragment", [
    (["-o", "adagrad"], "optimizer must be one of"),
    (["-a", "swish"], "activation must be one of"),
    (["-l", "hinge"], "loss must be one of"),
    (["-w_i", "zeros"], "weight_init must be one of"),
    (["-lr", "0"], "lr must be > 0, got 0.0"),
    (["-lr", "-0.1"], "lr must be > 0, got -0.1"),
    (["-b", "0"], "batch_size must be >= 1, got 0"),
    (["-e", "-2"], "epochs must be >= 1, got -2"),
    (["-nhl", "0"], "num_layers must be >= 1, got 0"),
    (["-sz", "0"], "hidden_size must be >= 1, got 0"),
    (["-e", "ten"], "invalid int value: 'ten'"),
    (["--dtype", "float16"], "dtype must be float32 or float64"),
    (["-d", "cifar"], "dataset must be one of"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--augment-flip=maybe"], "must be true or false, got 'maybe'"),
    (["--label-smoothing", "1"], "label_smoothing must be < 1"),
    (["--augment-shift", "-1"], "augment_shift must be >= 0"),
    (["--mixup", "-1"], "mixup must be >= 0"),
    (["--ema", "1.5"], "ema_decay must be < 1"),
    (["--ema", "-0.5"], "ema_decay must be >= 0"),
    (["--batch-norm=often"], "must be true or false, got 'often'"),
    (["--sam", "-0.05"], "sam must be >= 0"),
])
def test_bad_settings_exit_2_with_one_line(args, fragment, capsys):
    rc, out, err = run(["train", "-d", "digits", *args], capsys)
    assert rc == 2
    assert_one_line_error(err, fragment)
    assert "epoch" not in out  # refused before training


def _bad_data(tmp_path, kind):
    d = tmp_path / "data" / "fashion-mnist"
    make_set(d, size=28)
    images = d / "train-images-idx3-ubyte.gz"
    if kind == "truncated gz":
        images.write_bytes(images.read_bytes()[:200])
    elif kind == "corrupt gz":
        data = bytearray(images.read_bytes())
        data[30:60] = b"\xff" * 30
        images.write_bytes(bytes(data))
    elif kind == "wrong magic":
        datasets.write_idx(images, np.zeros((20, 28), np.uint8))
    elif kind == "count mismatch":
        datasets.write_idx(d / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    elif kind == "labels out of range":
        datasets.write_idx(d / "train-labels-idx1-ubyte.gz", np.full(20, 10, np.uint8))
    return tmp_path / "data"


@pytest.mark.parametrize("kind, fragment", [
    ("truncated gz", "cannot read"),
    ("corrupt gz", "cannot read"),
    ("wrong magic", "wrong IDX magic number"),
    ("count mismatch", "20 images but 7 labels"),
    ("labels out of range", "label 10 out of range"),
])
def test_bad_data_files_exit_1_with_one_line(tmp_path, isolated_home, kind, fragment, capsys):
    data = _bad_data(tmp_path, kind)
    rc, _, err = run(["train", "--data-dir", str(data), "-e", "1", "--no-progress"], capsys)
    assert rc == 1
    assert_one_line_error(err, fragment, "fashion-mnist")


def test_data_not_found_lists_places(tmp_path, isolated_home, capsys):
    rc, _, err = run(["train", "--data-dir", str(tmp_path / "nothing"), "--no-progress"], capsys)
    assert rc == 1
    assert_one_line_error(err, "fashion_mnist data not found", str(tmp_path / "nothing"),
                          "apt-get install dataset-fashion-mnist", "--data-dir")


def test_divergence_exit_3_and_keeps_the_saved_model(tmp_path, capsys, kernels):
    model = tmp_path / "model.npz"
    model.write_bytes(b"precious")
    rc, _, err = run(["train", "-d", "digits", "-o", "sgd", "-lr", "1e3", "-e", "3",
                        "--no-progress", "--save", str(model)], capsys)
    assert rc == 3
    assert_one_line_error(err, "diverged", "epoch 1, step", "lower learning rate")
    assert model.read_bytes() == b"precious"


@pytest.mark.parametrize("content, fragment", [
    (b"not a model", "not a fastnn model file"),
    (None, "no such file"),
])
def test_evaluate_bad_model_file(tmp_path, content, fragment, capsys):
    path = tmp_path / "m.npz"
    if content is not None:
        path.write_bytes(content)
    rc, _, err = run(["evaluate", str(path), "-d", "digits"], capsys)
    assert rc == 1
    assert_one_line_error(err, fragment)


def test_evaluate_corrupt_model(tmp_path, capsys):
    path = tmp_path / "m.npz"
    fastnn.save_model(fastnn.Network([64, 4, 10]), path)
    path.write_bytes(path.read_bytes()[:-40])
    rc, _, err = run(["evaluate", str(path), "-d", "digits"], capsys)
    assert rc == 1
    assert_one_line_error(err, str(path))


def test_evaluate_model_with_other_input_size(tmp_path, capsys):
    path = tmp_path / "m.npz"
    fastnn.save_model(fastnn.Network([784, 4, 10]), path)
    rc, _, err = run(["evaluate", str(path), "-d", "digits"], capsys)
    assert rc == 1
    assert_one_line_error(err, "model takes 784 inputs but digits images have 64 pixels")


def test_evaluate_uses_the_data_set_the_model_was_trained_on(tmp_path, isolated_home, capsys,
                                                            kernels):
    model = tmp_path / "digits.npz"
    assert run(["train", *QUICK, "--save", str(model)], capsys)[0] == 0
    rc, out, err = run(["evaluate", str(model), "--no-download"], capsys)  # no -d
    assert rc == 0, err
    assert "digits test set (360 images): accuracy" in out


def test_evaluate_refuses_a_test_set_of_other_classes(tmp_path, mnist_data, capsys):
    path = tmp_path / "fashion.npz"
    fastnn.save_model(fastnn.Network([784, 4, 10]), path,
                      class_names=datasets.FASHION_CLASSES,
                      metadata={"dataset": "fashion_mnist"})
    rc, out, err = run(["evaluate", str(path), "-d", "mnist", "--data-dir", str(mnist_data)],
                       capsys)
    assert rc == 1 and "accuracy" not in out
    assert_one_line_error(err, "the model's classes (T-shirt/top, Trouser, Pullover, ...) are "
                          "not mnist's (0, 1, 2, ...); it was trained on fashion_mnist")


def test_unwritable_save_path_fails_before_training(tmp_path, capsys):
    target = tmp_path / "dir"
    target.mkdir()
    rc, out, err = run(["train", *QUICK, "--save", str(target)], capsys)
    assert rc == 1
    assert "epoch" not in out
    assert_one_line_error(err, "is a directory")


def test_no_command_prints_help(capsys):
    rc, out, _ = run([], capsys)
    assert rc == 2 and "train" in out and "evaluate" in out


def test_python_dash_m_and_version():
    proc = subprocess.run([sys.executable, "-m", "fastnn", "--version"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastnn {fastnn.__version__}"


def test_top_level_help_says_what_fastnn_is_and_lists_every_command(capsys):
    from fastnn.cli import COMMANDS

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "fastnn trains fully-connected neural networks" in out
    assert "``" not in out  # no reStructuredText markup on a terminal
    examples = out.split("examples:")[1]
    for command in COMMANDS:
        assert f"fastnn {command} " in examples, command


def test_train_header_names_the_kernel_set(capsys, kernels):
    rc, out, _ = run(["train", "-d", "digits", "-e", "1", "-nhl", "1", "-sz", "8",
                      "--no-progress"], capsys)
    assert rc == 0
    assert f"; {kernels} kernels" in out.splitlines()[0]


def test_bad_kernels_flag_exits_2(capsys):
    rc, _, err = run(["train", "-d", "digits", "--kernels", "cuda"], capsys)
    assert rc == 2
    assert_one_line_error(err, "kernels must be one of auto, numba, numpy")


def test_accuracy_options_train_and_land_in_the_model_file(tmp_path, capsys):
    model = tmp_path / "model.npz"
    rc, _, err = run(["train", *QUICK, "--augment-shift", "1", "--augment-flip",
                        "--label-smoothing", "0.1", "--keep-best", "--save", str(model)], capsys)
    assert rc == 0, err
    net, header = fastnn.load_model(model)
    assert net.label_smoothing == 0.1
    config = header["metadata"]["config"]
    assert (config["augment_shift"], config["augment_flip"], config["keep_best"]) == (1, True, True)
    rc, _, err = run(["train", *QUICK, "--augment_flip=false", "--keep_best=no"], capsys)
    assert rc == 0, err


def test_shift_as_large_as_the_image_is_one_line(capsys):
    rc, _, err = run(["train", *QUICK, "--augment-shift", "8"], capsys)  # digits are 8x8
    assert rc == 2
    assert_one_line_error(err, "augment_shift must be smaller than the image (8x8)")


@pytest.mark.parametrize(("argv", "hint"), [
    (["fit"], "(did you mean 'fastnn train'? see fastnn --help)"),
    (["trian", "-e", "1"], "(did you mean 'fastnn train'? see fastnn --help)"),
    (["frobnicate"], "(see fastnn --help)"),
    (["train", "--no-such-flag"], "(see fastnn train --help)")])
def test_a_usage_error_points_at_help_that_exists(capsys, argv, hint):
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert_one_line_error(err, hint)
    assert f"fastnn {argv[0]} --help" not in err or argv[0] == "train"


def test_a_closed_pipe_ends_quietly(tmp_path):
    # `fastnn train ... | head -1`: the reader leaves after the first line
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "train", "-d", "digits", "-e", "40",
                             "-nhl", "1", "-sz", "16", "--no-progress", "--kernels", "numpy"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    first = proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert first.startswith(b"fastnn")
    assert proc.returncode == 141
    assert err == b""


def test_sigterm_during_train_saves_the_partial_model_as_ctrl_c_does(tmp_path):
    import signal

    save = tmp_path / "model.npz"
    proc = subprocess.Popen([sys.executable, "-m", "fastnn", "train", "-d", "digits", "-e", "500",
                             "-nhl", "1", "-sz", "16", "--no-progress", "--kernels", "numpy",
                             "--save", str(save)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    for line in proc.stdout:
        if line.startswith(b"epoch"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    partial = tmp_path / "model.interrupted.npz"
    assert partial.is_file() and not save.exists()
    assert b"partial model saved" in err and b"Traceback" not in err
    _, header = fastnn.load_model(partial)
    assert header["metadata"]["interrupted"] is True
