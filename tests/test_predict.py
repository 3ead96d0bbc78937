"""fastnn predict: image files in, top classes out."""

import json

import numpy as np
import pytest

import fastnn
from fastnn.cli import main

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def fashion_model(tmp_path_factory, fashion_data):
    split = fastnn.datasets.prepare("fashion_mnist", data_dir=fashion_data)
    net = fastnn.trainer.train(fastnn.TrainConfig(epochs=2), split).net
    path = tmp_path_factory.mktemp("model") / "fashion.npz"
    fastnn.save_model(net, path, class_names=split.class_names)
    ds = fastnn.datasets.load("fashion_mnist", data_dir=fashion_data)
    return path, net, ds


def _correct_examples(net, ds, count=3):
    pred = net.predict(fastnn.datasets.preprocess(ds.x_test[:200]))
    idx = np.flatnonzero(pred == ds.y_test[:200])
    return idx[:count]


def test_test_images_as_png_are_classified_as_their_label(fashion_model, tmp_path, capsys):
    path, net, ds = fashion_model
    files, labels = [], []
    for i in _correct_examples(net, ds):
        f = tmp_path / f"img{i}.png"
        Image.fromarray(ds.x_test[i]).save(f)
        files.append(str(f))
        labels.append(ds.class_names[ds.y_test[i]])
    # a dark-on-light, larger version of the first one: inverted and scaled back
    big = tmp_path / "photo.png"
    Image.fromarray(255 - ds.x_test[_correct_examples(net, ds)[0]]).resize(
        (112, 112), Image.Resampling.NEAREST).save(big)
    rc = main(["predict", str(path), *files, str(big), "--json"])
    assert rc == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["top"][0]["class"] for r in results] == labels + [labels[0]]
    assert [r["inverted"] for r in results] == [False] * len(files) + [True]
    assert all(len(r["top"]) == 3 for r in results)
    rc = main(["predict", str(path), str(big)])
    text = capsys.readouterr().out
    assert rc == 0 and labels[0] in text and "inverted" in text


def test_bad_images_and_models_give_one_line_errors(fashion_model, tmp_path, capsys):
    path, _, _ = fashion_model
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    odd_model = tmp_path / "odd.npz"
    fastnn.save_model(fastnn.Network([60, 8, 10]), odd_model)
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(good)
    cases = [
        ([str(path), str(not_image)], "not a readable PNG/JPEG image"),
        ([str(path), str(tmp_path / "missing.png")], "no such file"),
        ([str(odd_model), str(good)], "takes 60 inputs, which is not a square image"),
        ([str(not_image), str(good)], "not a fastnn model file"),
    ]
    for args, fragment in cases:
        assert main(["predict", *args]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and fragment in err[0], err


def test_a_digits_model_reads_images_at_its_8x8_size(tmp_path, capsys):
    split = fastnn.datasets.prepare("digits")
    net = fastnn.trainer.train(fastnn.TrainConfig(dataset="digits", epochs=20), split).net
    path = tmp_path / "digits.npz"
    fastnn.save_model(net, path, class_names=split.class_names)
    ds = fastnn.datasets.load("digits")
    files, labels = [], []
    for i in _correct_examples(net, ds):
        f = tmp_path / f"digit{i}.png"  # drawn 4x larger than the 8x8 originals
        Image.fromarray(ds.x_test[i]).resize((32, 32), Image.Resampling.NEAREST).save(f)
        files.append(str(f))
        labels.append(ds.class_names[ds.y_test[i]])
    assert main(["predict", str(path), *files, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["top"][0]["class"] for r in results] == labels
