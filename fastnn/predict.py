"""Class probabilities for files: images, CSV rows, .npy rows, read as the model's data was.

:func:`predict_files` reads every input the way the model's training data
was read (its :attr:`~fastnn.Network.preprocessing` and the data description
in its file) and returns one result per image or row; :func:`write_csv`
writes them as a CSV table of probabilities.
"""

import csv
import io
import math
from pathlib import Path

import numpy as np

from . import readers
from ._atomic import atomic_write_bytes
from .errors import DataError, FastnnError
from .readers import IMAGE_SUFFIXES


def predict_files(net, paths, class_names=None, data=None):
    """Probabilities of every image, CSV row or .npy row in ``paths``.

    Parameters
    ----------
    net : Network
        With ``net.preprocessing`` (as :func:`fastnn.load_model` sets it).
    paths : sequence of path
        Images (PNG, JPEG, ...), ``.csv`` files or ``.npy`` arrays.
    class_names : sequence of str, optional
    data : dict, optional
        The data description stored with the model (``metadata["data"]``):
        how a CSV's columns are picked and how images are read.

    Returns
    -------
    list of dict
        ``{"input": "file" or "file:row", "inverted": bool, "probabilities": ndarray}``,
        in the order of ``paths`` and their rows.

    Raises
    ------
    FastnnError
        An unreadable input, or one that does not fit the model.
    """
    data = data or {}
    names = list(class_names) if class_names else [str(i) for i in range(net.n_classes)]
    results = []
    for path in paths:
        suffix = Path(path).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            row, inverted = _image(net, path, data)
            results.append({"input": str(path), "inverted": inverted, "x": row})
            continue
        if suffix in (".csv", ".tsv", ".txt"):
            x = readers.read_features_csv(path, net.n_features, data.get("feature_names"))
        elif suffix == ".npy":
            x = _npy_rows(path, net.n_features)
        else:
            raise DataError(f"{path}: not an input fastnn predicts on (an image, a .csv or "
                            "a .npy file)")
        results += [{"input": f"{path}:{i + 1}", "inverted": False, "x": row}
                    for i, row in enumerate(x)]
    if not results:
        raise DataError("no rows to predict on in " + ", ".join(map(str, paths)))
    X = np.stack([np.asarray(r.pop("x")).reshape(-1) for r in results])
    prep = net.preprocessing
    X = prep.apply(X, net.dtype) if prep is not None else np.asarray(X, dtype=net.dtype)
    for r, p in zip(results, net.predict_proba(X)):
        r["probabilities"] = p
        r["top"] = [{"class": names[i], "probability": float(p[i])}
                    for i in np.argsort(p)[::-1]]
    return results


def _image(net, path, data):
    """(pixels, inverted) of an image read as the training data was: an image folder's plain
    grey resize, else the centred, inverted-if-needed reading of
    :func:`fastnn.images.load_image` (MNIST-like)."""
    shape = net.preprocessing.image_shape if net.preprocessing is not None else None
    if data.get("format") == "image_folder" and shape:
        return readers.read_grey(path, shape), False
    from .images import load_image

    side = math.isqrt(net.n_features)
    if side * side != net.n_features or (shape and shape[0] != shape[1]):
        raise FastnnError(f"the model takes {net.n_features} inputs, which is not a square "
                          "image (28x28 = 784, 8x8 = 64)")
    return load_image(path, size=side)


def _npy_rows(path, n_features):
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    if x.dtype.kind not in "biuf" or x.ndim < 1:
        raise DataError(f"{path}: dtype {x.dtype}, shape {x.shape}: not rows of numbers")
    if x.ndim == 1 or math.prod(x.shape) == n_features:
        x = x.reshape(1, -1)
    if math.prod(x.shape[1:]) != n_features:
        raise DataError(f"{path}: rows of {math.prod(x.shape[1:])} values, the model takes "
                        f"{n_features}")
    x = np.asarray(x)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    return x


def write_csv(path, results, class_names):
    """Write ``input,prediction,<one probability column per class>`` atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["input", "prediction", *class_names])
    for r in results:
        writer.writerow([r["input"], r["top"][0]["class"],
                         *(f"{p:.6g}" for p in r["probabilities"])])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
