"""The user's own data files -> raw features and labels.

:func:`read` recognises, by what ``path`` is:

- a ``.csv`` (or ``.tsv``) file with a header row: numeric feature columns and
  one label column (``target``; default a column named ``label``, ``target``
  or ``class``, else the last);
- a ``.npz`` archive with ``X`` and ``y`` (and optionally ``X_test`` and
  ``y_test``), or Keras's layout ``x_train``, ``y_train``, ``x_test``,
  ``y_test``;
- a ``.npy`` file of features, its labels beside it (``X.npy`` -> ``y.npy``,
  ``x_train.npy`` -> ``y_train.npy``, ``features.npy`` -> ``labels.npy``) or
  named by ``target``; or a folder holding such files (``X.npy`` and
  ``y.npy``, or ``x_train.npy``, ``y_train.npy`` and optionally
  ``x_test.npy``, ``y_test.npy``). Features are memory-mapped, not read;
- a folder of images with one sub-folder per class (torchvision's
  ``ImageFolder``, Keras's ``image_dataset_from_directory``), optionally
  inside ``train/`` and ``test/``; images become grey and are resized to
  ``image_size`` (default: the size of the first image).

Labels may be integers or strings; they become indices into the sorted
class names. Every problem is one :class:`~fastnn.errors.DataError` naming
the file (for a CSV the line and the column too).
"""

import csv
import math
import warnings
import zipfile
from pathlib import Path

import numpy as np

from . import _npz
from .errors import DataError

LABEL_NAMES = ("label", "target", "class")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_LABEL_FILES = {"X": "y", "x": "y", "features": "labels", "inputs": "targets"}


class Raw:
    """What a file holds: features, labels (as read), an optional test part, a description.

    ``x_test`` is None when the file has no test part. ``kind`` is
    ``"images"`` (features ``(n, h, w)``) or ``"table"`` (``(n, d)``);
    ``format`` is ``"csv"``, ``"npz"``, ``"npy"`` or ``"image_folder"``.
    """

    def __init__(self, x, labels, x_test=None, labels_test=None, *, kind, source, format,
                 feature_names=None, target=None):
        self.x, self.labels, self.x_test, self.labels_test = x, labels, x_test, labels_test
        self.kind, self.source, self.format = kind, str(source), format
        self.feature_names, self.target = feature_names, target


def read(path, target=None, image_size=None):
    """Read a CSV file, .npz, .npy (pair or folder) or image folder (see the module doc).

    Returns
    -------
    Raw

    Raises
    ------
    DataError
        A missing or unreadable file, or one whose contents are not a data set.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    suffix = path.suffix.lower()
    if path.is_dir():
        if any(path.glob("*.npy")):
            return read_npy_folder(path)
        return read_image_folder(path, image_size)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_csv(path, target)
    if suffix == ".npz":
        return read_npz(path)
    if suffix == ".npy":
        return read_npy(path, target)
    raise DataError(f"{path}: not a data set fastnn reads (a .csv, .npz or .npy file, a folder "
                    "of .npy files, or a folder of images in one sub-folder per class)")


# ------------------------------------------------------------------------ CSV
def read_csv(path, target=None):
    """A CSV file with a header row: numeric features and one label column."""
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, delimiter=delimiter), None)
            if not header or not any(h.strip() for h in header):
                raise DataError(f"{path}: empty file (expected a header row of column names)")
            header = [h.strip() for h in header]
            t = _target_column(path, header, target)
            data = _loadtxt(f, delimiter)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
                        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data is None or data.shape[1] != len(header):
        # not all numbers, or the wrong number of fields: find the first bad line and say so
        x, labels = _read_with_text_labels(path, header, t, delimiter)
    else:
        labels = data[:, t].copy()
        # a view when the labels are the first or last column: no copy of the features here
        x = data[:, 1:] if t == 0 else data[:, :-1] if t == len(header) - 1 \
            else np.delete(data, t, axis=1)
    if x.shape[0] == 0:
        raise DataError(f"{path}: no data rows after the header")
    names = [h for i, h in enumerate(header) if i != t]
    _check_finite_table(path, x, names)
    return Raw(x, labels, kind="table", source=path, format="csv", feature_names=names,
               target=header[t])


def _target_column(path, header, target):
    if target is not None:
        if target not in header:
            raise DataError(f"{path}: no column named {target!r} for --target (columns: "
                            f"{_shorten(header)})")
        return header.index(target)
    lower = [h.lower() for h in header]
    for name in LABEL_NAMES:
        if name in lower:
            return lower.index(name)
    if len(header) < 2:
        raise DataError(f"{path}: one column only: a CSV needs feature columns and a label column")
    return len(header) - 1


def _loadtxt(f, delimiter, usecols=None, dtype=np.float32):
    """NumPy's C parser over the rest of ``f``; None when a field is not a number or rows differ."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            return np.loadtxt(f, delimiter=delimiter, dtype=dtype, comments=None,
                              quotechar='"', ndmin=2, usecols=usecols)
    except ValueError:
        return None


def _read_with_text_labels(path, header, t, delimiter):
    """Features as numbers and labels as text, or a DataError naming the first bad field.

    Used when the fast parse failed: either the labels are words (fine) or a
    line is bad (an error that names its line and column).
    """
    features = [i for i in range(len(header)) if i != t]
    labels = _scan(path, header, features, t, delimiter)
    return _parse_columns(path, features, delimiter), np.array(labels)


def _scan(path, header, features, t, delimiter):
    """Check every line in Python: the labels (column ``t``), or a DataError naming the first
    bad field. Slow, so only run when NumPy's parser refused the file."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = csv.reader(f, delimiter=delimiter)
        next(rows)
        labels = []
        for line, row in enumerate(rows, start=2):
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                raise DataError(f"{path}: line {line} has {len(row)} fields, the header has "
                                f"{len(header)} (a ragged row)")
            for i in features:
                cell = row[i].strip()
                if not cell:
                    raise DataError(f"{path}: line {line}, column {header[i]!r} ({i + 1}): "
                                    "empty cell")
                try:
                    float(cell)
                except ValueError:
                    raise DataError(
                        f"{path}: line {line}, column {header[i]!r} ({i + 1}): {cell[:40]!r} is "
                        "not a number (feature columns must be numeric; --target names the "
                        "label column)") from None
            if t is not None:
                if not row[t].strip():
                    raise DataError(f"{path}: line {line}, column {header[t]!r} ({t + 1}): "
                                    "empty label")
                labels.append(row[t].strip())
    return labels


def _parse_columns(path, columns, delimiter):
    with open(path, newline="", encoding="utf-8-sig") as f:
        next(f)
        x = _loadtxt(f, delimiter, usecols=columns)
    if x is None:  # pragma: no cover - every field was checked by _scan
        raise DataError(f"{path}: cannot parse the feature columns")
    return x


def read_features_csv(path, n_features, feature_names=None):
    """The feature columns of a CSV file to predict on, as float32 rows.

    With ``feature_names`` (a model trained on a CSV) the columns are picked
    by name, in that order, and any others (the label) are ignored;
    without, the file holds ``n_features`` numeric columns, plus perhaps a
    label column named ``label``, ``target`` or ``class``.
    """
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = [h.strip() for h in next(csv.reader(f, delimiter=delimiter), [])]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if feature_names:
        missing = [name for name in feature_names if name not in header]
        if missing:
            raise DataError(f"{path}: the model's feature column(s) {_shorten(missing, 4)} are "
                            "missing")
        columns = [header.index(name) for name in feature_names]
    else:
        columns = [i for i, h in enumerate(header) if h.lower() not in LABEL_NAMES]
    if len(columns) != n_features:
        raise DataError(f"{path}: {len(columns)} feature columns, the model takes {n_features}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        next(f)
        x = _loadtxt(f, delimiter, usecols=columns)
    if x is None:
        _scan(path, header, columns, None, delimiter)
        x = _parse_columns(path, columns, delimiter)
    _check_finite_table(path, x, [header[i] for i in columns])
    return x


def _check_finite_table(path, x, names, first_line=2, chunk=8192):
    for start in range(0, x.shape[0], chunk):
        bad = ~np.isfinite(x[start:start + chunk])
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise DataError(f"{path}: line {start + row + first_line}, column {names[col]!r} "
                            f"({col + 1}): {x[start + row, col]} (NaN and infinity are not data)")


def _shorten(names, n=8):
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


# ------------------------------------------------------------------ npz / npy
def read_npz(path):
    """An .npz with X, y (optionally X_test, y_test) or Keras's x_train, y_train, x_test, y_test."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            for layout in (("X", "y", "X_test", "y_test"),
                           ("x_train", "y_train", "x_test", "y_test")):
                if {layout[0], layout[1]} <= names:
                    arrays = [z[k] if k in names else None for k in layout]
                    break
            else:
                raise DataError(f"{path}: expected arrays X and y (or Keras's x_train, y_train, "
                                f"x_test, y_test); found {', '.join(sorted(names)) or 'none'}")
    except DataError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz ({_npz.load_error_reason(path, exc)})"
                        ) from None
    x, y, x_test, y_test = arrays
    if (x_test is None) != (y_test is None):
        raise DataError(f"{path}: a test part needs both features and labels")
    return _arrays(path, x, y, x_test, y_test, "npz")


def read_npy(path, target=None):
    """Features in ``path`` (memory-mapped) and labels beside it, or in ``target``."""
    path = Path(path)
    labels = Path(target) if target else _label_file(path)
    if labels is None or not labels.is_file():
        raise DataError(f"{path}: no labels file beside it (expected {labels.name if labels else 'y.npy'}; "
                        "name one with --target LABELS.npy)")
    test = _sibling(path, "train", "test")
    test_labels = _sibling(labels, "train", "test")
    if test is not None and test.is_file() and test_labels is not None and test_labels.is_file():
        return _arrays(path, _npy(path), _npy(labels), _npy(test), _npy(test_labels), "npy")
    return _arrays(path, _npy(path), _npy(labels), None, None, "npy")


def read_npy_folder(path):
    """A folder with X.npy and y.npy, or x_train.npy, y_train.npy (and x_test.npy, y_test.npy)."""
    path = Path(path)
    for features in ("X.npy", "x.npy", "x_train.npy", "X_train.npy", "features.npy"):
        if (path / features).is_file():
            return read_npy(path / features)
    raise DataError(f"{path}: a folder of .npy files needs X.npy and y.npy (or x_train.npy "
                    "and y_train.npy)")


def _label_file(path):
    stem, rest = path.stem, ""
    if "_" in stem:
        stem, rest = stem.split("_", 1)
        rest = "_" + rest
    name = _LABEL_FILES.get(stem)
    return path.with_name(name + rest + ".npy") if name else None


def _sibling(path, old, new):
    return path.with_name(path.name.replace(old, new)) if old in path.stem else None


def _npy(path):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


def _arrays(path, x, y, x_test, y_test, format):
    """Check the arrays of an .npz or .npy set and say whether they are images or a table."""
    parts = [("", x, y)] + ([("test ", x_test, y_test)] if x_test is not None else [])
    for what, xa, ya in parts:
        if xa.dtype.kind not in "biuf":
            raise DataError(f"{path}: {what}features have dtype {xa.dtype}, not numbers")
        if xa.ndim == 4 and xa.shape[-1] in (1, 3, 4):
            pass  # (n, h, w, channels): made grey when read
        elif xa.ndim not in (2, 3):
            raise DataError(f"{path}: {what}features have shape {xa.shape}; expected (n, "
                            "features) or images (n, height, width[, channels])")
        if ya.ndim != 1 or ya.dtype.kind not in "biufU":
            raise DataError(f"{path}: {what}labels must be one integer or string per row, got "
                            f"shape {ya.shape} dtype {ya.dtype}")
        if xa.shape[0] != ya.shape[0]:
            raise DataError(f"{path}: {xa.shape[0]} {what}rows of features but {ya.shape[0]} "
                            "labels")
        if xa.shape[0] == 0:
            raise DataError(f"{path}: no {what}rows")
    if x_test is not None and x.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: train features {x.shape[1:]} and test features "
                        f"{x_test.shape[1:]} differ in shape")
    x, x_test = _grey(x), _grey(x_test)
    kind = "images" if x.ndim == 3 else "table"
    return Raw(x, np.asarray(y), x_test, None if y_test is None else np.asarray(y_test),
               kind=kind, source=path, format=format)


def _grey(x):
    """(n, h, w, c) images as (n, h, w): the channels' mean (ITU-R 601 weights for RGB)."""
    if x is None or x.ndim != 4:
        return x
    if x.shape[-1] == 1:
        return x[..., 0]
    weights = np.array([0.299, 0.587, 0.114])
    grey = np.tensordot(np.asarray(x[..., :3], dtype=np.float32), weights, axes=([3], [0]))
    return np.rint(grey).astype(x.dtype) if x.dtype.kind in "iu" else grey.astype(x.dtype)


# ---------------------------------------------------------------- image folders
def read_image_folder(path, image_size=None):
    """A folder of images, one sub-folder per class (optionally inside train/ and test/)."""
    path = Path(path)
    if (path / "train").is_dir():
        x, labels, size = _class_folders(path / "train", image_size)
        test = path / "test"
        if test.is_dir():
            x_test, labels_test, _ = _class_folders(test, size)
            return Raw(x, labels, x_test, labels_test, kind="images", source=path, format="image_folder")
        return Raw(x, labels, kind="images", source=path, format="image_folder")
    x, labels, _ = _class_folders(path, image_size)
    return Raw(x, labels, kind="images", source=path, format="image_folder")


def _class_folders(root, image_size):
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, d.name) for d in classes for f in sorted(d.iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{root}: no images in sub-folders (expected one sub-folder of "
                        "PNG/JPEG images per class)")
    images = None
    for i, (file, _) in enumerate(files):
        grey = read_grey(file, image_size)
        if images is None:
            image_size = grey.shape
            images = np.empty((len(files), *image_size), dtype=np.uint8)
        images[i] = grey
    return images, np.array([label for _, label in files]), tuple(image_size)


def read_grey(path, size=None):
    """An image file as a grey uint8 array, resized to ``size`` (height, width) if given:
    how an image folder is read, for training and for predicting alike."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise DataError(f'{path}: reading images needs Pillow: pip install "fastnn[image]"'
                        ) from exc
    try:
        with Image.open(path) as im:
            grey = im.convert("L")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    if size is not None and (grey.height, grey.width) != tuple(size):
        grey = grey.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(grey, dtype=np.uint8)


def parse_image_size(text):
    """``"28x28"`` (or ``"28"``) -> (28, 28); None stays None."""
    if text is None or isinstance(text, tuple):
        return text
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1 or math.prod(size) > 4096 * 4096:
        raise DataError(f"image size must be HxW (e.g. 28x28), got {text!r}")
    return size
