"""The user's own data: CSV, .npz (Keras's layout too), .npy (memory-mapped), image folders."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_cli import assert_one_line_error, run

import fastnn
from fastnn import datasets, readers
from fastnn.errors import DataError
from fastnn.preprocessing import Preprocessing

FAST = ["-e", "3", "-nhl", "1", "-sz", "16", "--no-progress"]


def blobs(n=300, n_features=6, n_classes=3, seed=0):
    """Well-separated Gaussian blobs on very different scales (standardising matters)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(0, 4, (n_classes, n_features))
    X = centres[y] + rng.normal(0, 1, (n, n_features))
    X *= np.logspace(-2, 3, n_features)
    return X, y


def write_csv(path, X, labels, names=None, target="species", target_first=False):
    names = names or [f"f{i}" for i in range(X.shape[1])]
    with open(path, "w") as f:
        cols = [target, *names] if target_first else [*names, target]
        f.write(",".join(cols) + "\n")
        for row, label in zip(X, labels):
            cells = [repr(float(v)) for v in row]
            f.write(",".join([str(label), *cells] if target_first else [*cells, str(label)])
                    + "\n")
    return path


@pytest.fixture
def iris_like(tmp_path):
    X, y = blobs()
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    return write_csv(tmp_path / "flowers.csv", X, names), X, y


def test_csv_with_string_labels_trains_evaluates_and_predicts(iris_like, tmp_path, capsys):
    path, _, y = iris_like
    model = tmp_path / "m.npz"
    rc, out, err = run(["train", "-d", str(path), *FAST, "-lr", "0.01", "--save", str(model)],
                       capsys)
    assert rc == 0, err
    assert "243 train / 27 val / 30 test" in out  # 10% held out, then 10% of the rest
    test_acc = float(out.split("test accuracy ")[1].split()[0])
    assert test_acc > 0.9
    net, header = fastnn.load_model(model)
    assert header["class_names"] == ["setosa", "versicolor", "virginica"]
    assert net.preprocessing.kind == "standardize"
    assert header["format_version"] == 3
    data = header["metadata"]["data"]
    assert data["target"] == "species" and data["feature_names"] == [f"f{i}" for i in range(6)]
    # evaluate with no -d: the model's own data, its held-out test part, read the same way
    rc, out, err = run(["evaluate", str(model)], capsys)
    assert rc == 0, err
    assert float(out.split("accuracy ")[1].split()[0]) == pytest.approx(test_acc, abs=1e-4)
    assert "(30 rows)" in out
    # predict on the CSV itself (its label column is ignored), to stdout and --out
    rc, out, err = run(["predict", str(model), str(path), "--top", "1"], capsys)
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 300 and lines[0].startswith(f"{path}:1: ")
    predicted = [line.split(": ")[1].split()[0] for line in lines]
    assert np.mean(np.array(predicted) == np.array(["setosa", "versicolor", "virginica"])[y]) > 0.9
    table = tmp_path / "pred.csv"
    rc, out, err = run(["predict", str(model), str(path), "--out", str(table)], capsys)
    assert rc == 0, err
    rows = table.read_text().splitlines()
    assert rows[0] == "input,prediction,setosa,versicolor,virginica" and len(rows) == 301
    probs = np.array([[float(v) for v in r.split(",")[2:]] for r in rows[1:]])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [r.split(",")[1] for r in rows[1:]] == predicted


def test_predict_picks_the_models_columns_by_name(iris_like, tmp_path, capsys):
    path, X, y = iris_like
    model = tmp_path / "m.npz"
    assert run(["train", "-d", str(path), *FAST, "--save", str(model)], capsys)[0] == 0
    # the same rows with the columns shuffled and the label dropped: the same predictions
    shuffled = write_csv(tmp_path / "cols.csv", X[:, ::-1], ["?"] * len(X),
                         names=[f"f{i}" for i in range(6)][::-1], target="note")
    a = run(["predict", str(model), str(path)], capsys)[1].splitlines()
    b = run(["predict", str(model), str(shuffled)], capsys)[1].splitlines()
    assert [x.split(": ", 1)[1] for x in a] == [x.split(": ", 1)[1] for x in b]
    missing = tmp_path / "missing.csv"
    write_csv(missing, X[:, :5], y, names=[f"f{i}" for i in range(5)])
    rc, _, err = run(["predict", str(model), str(missing)], capsys)
    assert rc == 1
    assert_one_line_error(err, "missing.csv", "feature column(s) f5 are missing")


def test_numeric_labels_first_column_and_target_option(tmp_path, capsys):
    X, y = blobs(n_classes=4)
    path = write_csv(tmp_path / "d.csv", X, y + 10, target="kind", target_first=True)
    split = datasets.prepare(path, target="kind")
    assert split.class_names == ("10", "11", "12", "13")
    assert split.X_train.shape[1] == 6 and split.description["target"] == "kind"
    # without --target the last column would be a feature... and labels would be f5's values
    with pytest.raises(DataError, match="f5"):
        datasets.load(tmp_path / "d.csv", target="f9")


@pytest.mark.parametrize("text, fragments", [
    ("a,b,label\n1,2,x\n3,4\n", ["line 3 has 2 fields, the header has 3"]),
    ("a,b,label\n1,,x\n3,4,y\n", ["line 2, column 'b' (2): empty cell"]),
    ("a,b,label\n1,2,x\n3,z,y\n", ["line 3, column 'b' (2): 'z' is not a number"]),
    ("a,b,label\n1,2,x\n3,nan,y\n", ["line 3, column 'b' (2): nan"]),
    ("a,b,label\n1,2,x\n3,inf,y\n", ["line 3, column 'b' (2): inf"]),
    ("a,b,label\n1,2,x\n3,4,x\n", ["one class only ('x' in every row)"]),
    ("a,b,label\n", ["no data rows after the header"]),
    ("", ["empty file"]),
])
def test_bad_csv_is_one_line_naming_file_line_and_column(tmp_path, capsys, text, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    model = tmp_path / "model.npz"
    rc, _, err = run(["train", "-d", str(path), *FAST, "--save", str(model)], capsys)
    assert rc == 1
    assert_one_line_error(err, "bad.csv", *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]  # nothing written


def test_missing_target_column_is_named(iris_like, capsys):
    path, _, _ = iris_like
    rc, _, err = run(["train", "-d", str(path), "--target", "colour", *FAST], capsys)
    assert rc == 1
    assert_one_line_error(err, "no column named 'colour'", "f0, f1")


def test_keras_npz_layout_uses_its_own_test_part(tmp_path, capsys):
    digits = datasets.load("digits")
    path = tmp_path / "keras.npz"
    np.savez(path, x_train=digits.x_train, y_train=digits.y_train, x_test=digits.x_test,
             y_test=digits.y_test)
    ds = datasets.load(path)
    assert ds.test_part == "file" and ds.kind == "images" and ds.x_test.shape == (360, 8, 8)
    model = tmp_path / "m.npz"
    rc, out, err = run(["train", "-d", str(path), *FAST, "--save", str(model)], capsys)
    assert rc == 0, err
    assert "/ 360 test" in out
    net, header = fastnn.load_model(model)
    assert net.preprocessing.kind == "pixels" and net.preprocessing.image_shape == (8, 8)
    assert header["format_version"] == 1  # pixel scaling needs no arrays
    # the same network on built-in digits (the same images) scores the same
    acc = float(out.split("test accuracy ")[1].split()[0])
    rc, out, err = run(["evaluate", str(model), "-d", "digits"], capsys)
    assert rc == 0 and float(out.split("accuracy ")[1].split()[0]) == pytest.approx(acc, abs=1e-4)


def test_npz_with_X_and_y_and_its_errors(tmp_path):
    X, y = blobs()
    np.savez(tmp_path / "t.npz", X=X, y=y)
    split = datasets.prepare(tmp_path / "t.npz")
    assert split.preprocessing.kind == "standardize"
    # standardisation learned on the training rows only
    np.testing.assert_allclose(split.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(split.X_train.std(axis=0), 1, atol=1e-4)
    assert abs(split.X_test.mean(axis=0)).max() > 1e-3
    np.savez(tmp_path / "u.npz", features=X)
    with pytest.raises(DataError, match="expected arrays X and y"):
        datasets.load(tmp_path / "u.npz")
    np.savez(tmp_path / "v.npz", X=X, y=y[:-1])
    with pytest.raises(DataError, match="300 rows of features but 299 labels"):
        datasets.load(tmp_path / "v.npz")


def test_npy_pair_and_folder(tmp_path):
    X, y = blobs()
    np.save(tmp_path / "X_train.npy", X.astype(np.float32))
    np.save(tmp_path / "y_train.npy", y)
    pair = datasets.load(tmp_path / "X_train.npy")
    folder = datasets.load(tmp_path)
    assert isinstance(pair.x_train, datasets.Rows)  # memory-mapped, rows read on demand
    np.testing.assert_array_equal(np.asarray(pair.x_train), np.asarray(folder.x_train))
    assert pair.x_train.shape == (270, 6) and pair.x_test.shape == (30, 6)
    # a test pair beside them is the test part
    np.save(tmp_path / "X_test.npy", X[:40].astype(np.float32))
    np.save(tmp_path / "y_test.npy", y[:40])
    both = datasets.load(tmp_path / "X_train.npy")
    assert both.test_part == "file" and both.x_test.shape == (40, 6)
    np.save(tmp_path / "feats.npy", X)
    with pytest.raises(DataError, match="no labels file beside it"):
        datasets.load(tmp_path / "feats.npy")
    np.save(tmp_path / "labels_for_feats.npy", y)
    assert datasets.load(tmp_path / "feats.npy", target=tmp_path / "labels_for_feats.npy"
                         ).x_train.shape == (270, 6)


def test_npy_larger_than_the_memory_limit_trains(tmp_path):
    """A float32 .npy larger than what the process may allocate (RLIMIT_DATA) still trains:
    its rows are read from the memory map and the prepared arrays are memory-mapped too."""
    n, d = 120_000, 400  # 192 MB of float32, against 150 MB of headroom
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=(n, d))
    y = rng.integers(0, 3, n)
    for s in range(0, n, 20000):
        block = rng.standard_normal((min(20000, n - s), d)).astype(np.float32)
        block[:, :3] += 4 * np.eye(3, dtype=np.float32)[y[s:s + 20000]]
        X[s:s + 20000] = block
    X.flush()
    del X
    np.save(tmp_path / "y.npy", y)
    script = textwrap.dedent(f"""
        import resource, sys
        import numpy as np
        import sklearn.model_selection  # what training imports lazily, before the limit
        import fastnn.trainer
        from fastnn.cli import main
        with open("/proc/self/status") as f:
            data = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmData:"))
        limit = data + 150 * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        try:  # the control: the array itself cannot be read into memory
            np.load({str(tmp_path / "X.npy")!r})
            sys.exit("the limit does not bite")
        except MemoryError:
            pass
        sys.exit(main(["train", "-d", {str(tmp_path)!r}, "-e", "1", "-nhl", "1", "-sz", "8",
                       "-b", "1024", "-lr", "0.01", "--no-progress", "--kernels", "numpy"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "97200 train / 10800 val / 12000 test" in proc.stdout
    assert float(proc.stdout.split("test accuracy ")[1].split()[0]) > 0.9


def _image_folder(root, split_dirs=True, size=(10, 12)):
    from PIL import Image

    rng = np.random.default_rng(0)
    parts = ("train", "test") if split_dirs else ("",)
    for part in parts:
        for cls, pattern in (("bars", 0), ("stripes", 1)):
            (root / part / cls).mkdir(parents=True)
            for i in range(12 if part != "test" else 4):
                img = rng.integers(0, 60, size).astype(np.uint8)
                if pattern == 0:
                    img[:, ::3] = 250
                else:
                    img[::3, :] = 250
                Image.fromarray(img).save(root / part / cls / f"{i}.png")
    return root


def test_image_folder_with_train_and_test(tmp_path, capsys):
    root = _image_folder(tmp_path / "imgs")
    ds = datasets.load(root)
    assert ds.class_names == ("bars", "stripes") and ds.x_train.shape == (24, 10, 12)
    assert ds.test_part == "file" and ds.x_test.shape == (8, 10, 12)
    resized = datasets.load(root, image_size="5x6")
    assert resized.x_train.shape == (24, 5, 6)
    model = tmp_path / "m.npz"
    rc, out, err = run(["train", "-d", str(root), "-e", "10", "-nhl", "1", "-sz", "8",
                        "-b", "8", "--no-progress", "--save", str(model)], capsys)
    assert rc == 0, err
    assert float(out.split("test accuracy ")[1].split()[0]) == 1.0
    rc, out, err = run(["predict", str(model), str(root / "test" / "stripes" / "0.png")], capsys)
    assert rc == 0, err
    assert out.split(": ")[1].startswith("stripes")


def test_image_folder_without_split_dirs_holds_out_a_test_part(tmp_path):
    root = _image_folder(tmp_path / "flat", split_dirs=False)
    ds = datasets.load(root, test_fraction=0.25)
    assert ds.x_train.shape[0] == 18 and ds.x_test.shape[0] == 6
    assert np.bincount(ds.y_test).tolist() == [3, 3]  # stratified
    with pytest.raises(DataError, match="no images in sub-folders"):
        datasets.load(_empty(tmp_path / "empty"))


def _empty(path):
    (path / "cls").mkdir(parents=True)
    return path


def test_load_returns_the_split_the_cli_trains_on(iris_like, tmp_path, capsys):
    path, _, _ = iris_like
    model = tmp_path / "m.npz"
    assert run(["train", "-d", str(path), *FAST, "--seed", "3", "--save", str(model)],
               capsys)[0] == 0
    net, header = fastnn.load_model(model)
    split = datasets.prepare(path, seed=3)
    assert net.preprocessing == split.preprocessing
    assert header["metadata"]["data"] == split.description
    a = datasets.prepare(path, seed=3)
    np.testing.assert_array_equal(a.X_test, split.X_test)
    np.testing.assert_array_equal(a.y_train, split.y_train)


def test_preprocessing_round_trips_through_the_model_file(tmp_path):
    X, _ = blobs()
    prep = Preprocessing.learn(X)
    net = fastnn.Network([6, 4, 3])
    fastnn.save_model(net, tmp_path / "m.npz", preprocessing=prep)
    loaded, header = fastnn.load_model(tmp_path / "m.npz")
    assert loaded.preprocessing == prep and header["format_version"] == 3
    np.testing.assert_array_equal(prep.apply(X), loaded.preprocessing.apply(X))


def test_csv_reader_matches_numpy_on_a_larger_file(tmp_path):
    X, y = blobs(n=5000, n_features=30)
    path = write_csv(tmp_path / "big.csv", X, y, target="label")
    raw = readers.read(path)
    np.testing.assert_array_equal(raw.x, X.astype(np.float32))
    np.testing.assert_array_equal(raw.labels.astype(int), y)


def test_a_sweep_over_a_csv_reads_it_as_train_does(iris_like, tmp_path, capsys):
    import json

    path, _, _ = iris_like
    spec = tmp_path / "s.yaml"
    spec.write_text(f"method: grid\nmetric: {{name: val_accuracy, goal: maximize}}\n"
                    f"parameters:\n  dataset: {{value: {path}}}\n  target: {{value: species}}\n"
                    "  test_fraction: {value: 0.2}\n  epochs: {value: 2}\n"
                    "  hidden_size: {values: [8, 16]}\n  num_layers: {value: 1}\n")
    rc, out, err = run(["sweep", str(spec), "--results", str(tmp_path / "r"), "--workers", "1",
                        "--seed", "3"], capsys)
    assert rc == 0, err + out
    records = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").open()]
    assert [r["status"] for r in records] == ["finished", "finished"]
    assert {r["n_train"] for r in records} == {216}  # 20% held out, then 10% for validation
    best = json.loads(out.split("config ", 1)[1].splitlines()[0])
    assert best["target"] == "species"
    # each run trains with its own seed (3, 4) on the sweep's split (seed 3): evaluating a
    # run's model must find the same test rows
    assert [r["seed"] for r in records] == [3, 4]
    for record in records:
        model = tmp_path / "r" / "runs" / record["run_id"] / "model.npz"
        net, header = fastnn.load_model(model)
        assert header["class_names"] == ["setosa", "versicolor", "virginica"]
        assert net.preprocessing.kind == "standardize"
        assert header["metadata"]["data"]["split_seed"] == 3
        rc, printed, err = run(["evaluate", str(model)], capsys)
        assert rc == 0, err
        assert float(printed.split("accuracy ")[1].split()[0]) == pytest.approx(
            record["test_accuracy"], abs=1e-4)
