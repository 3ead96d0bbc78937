"""Data sets: the built-in ones (Fashion-MNIST, MNIST, digits) and the user's own files.

:func:`load` returns the raw features and labels of a built-in data set or of
a file or folder (CSV, .npz, .npy, images in class folders: see
:mod:`fastnn.readers`), holding out a stratified test part when the data has
none; :func:`prepare` splits off the validation set and applies the
preprocessing learned on the training split (:mod:`fastnn.preprocessing`):
what ``fastnn train`` trains on. Nothing is scaled or split behind your back.

Where the IDX files of ``fashion_mnist`` and ``mnist`` are looked for, in
order (``<name-dir>`` is ``fashion-mnist`` or ``mnist``; files may be
gzipped or not):

1. the ``data_dir`` argument (``--data-dir`` on the command line):
   ``<data_dir>/<name-dir>/``, then ``<data_dir>/`` itself;
2. the ``FASTNN_DATA`` environment variable, the same way;
3. the Keras cache, ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``
   (``<name-dir>/``; for MNIST first Keras's own ``mnist.npz``);
4. ``/usr/share/datasets/<name-dir>/`` (Debian's ``dataset-fashion-mnist``);
5. ``~/.cache/fastnn/<name-dir>/`` (or under ``$XDG_CACHE_HOME``), downloading the
   files there from the official mirrors, checked against their SHA-256
   digests, when ``download=True`` and nothing was found before.
"""

import dataclasses
import gzip
import hashlib
import math
import os
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from . import _npz, readers
from ._atomic import atomic_write_bytes
from .errors import DataError, DataNotFoundError
from .preprocessing import Preprocessing

NAMES = ("fashion_mnist", "mnist", "digits")

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGIT_CLASSES = tuple(str(i) for i in range(10))

_DIRNAMES = {"fashion_mnist": "fashion-mnist", "mnist": "mnist"}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

MIRRORS = {
    "fashion_mnist": (
        "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
}

# SHA-256 of the upstream .gz files. Two sets are published for
# Fashion-MNIST (the files were re-compressed upstream once); either is
# accepted. Local files are not checksummed: repackaged copies (e.g.
# Debian's) are byte-identical once decompressed but not as .gz, so they are
# validated by their IDX structure instead.
SHA256 = {
    "fashion_mnist": {
        "train_images": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                         "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"),
        "train_labels": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                         "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"),
        "test_images": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                        "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"),
        "test_labels": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                        "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"),
    },
    "mnist": {
        "train_images": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",),
        "train_labels": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",),
        "test_images": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
        "test_labels": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",),
    },
}

SYSTEM_DIR = Path("/usr/share/datasets")  # where Debian's dataset-* packages install
_IDX_UBYTE = 0x08
# Deflate cannot compress better than about 1032:1, so a .gz of c bytes
# holds at most this many times c bytes: a header that claims more is a lie
# we can catch before allocating.
_MAX_GZIP_RATIO = 1032
DOWNLOAD_TIMEOUT_S = 30


@dataclasses.dataclass
class Dataset:
    """Raw features and labels of a data set.

    Attributes
    ----------
    name : str
        The built-in name, or the file or folder as given.
    x_train, x_test : ndarray or Rows
        Images ``(n, h, w)`` (built-in: uint8 pixel values 0-255, light
        object on dark background) or a table ``(n, features)``. Features
        read from ``.npy`` files stay memory-mapped (:class:`Rows` when a
        part of them was held out).
    y_train, y_test : ndarray (n,) of int
        Indices into ``class_names``.
    class_names : tuple of str
    source : str
        Where the data was read from.
    kind : {'images', 'table'}
    feature_names : tuple of str or None
        A CSV's feature columns.
    target : str or None
        A CSV's label column.
    test_part : str
        ``"file"`` (the data's own test part) or ``"held out 10%, seed 0"``.
    format : str
        ``"builtin"`` or the reader's (``"csv"``, ``"npz"``, ``"npy"``, ``"image_folder"``).
    split_seed : int or None
        The seed the test part was held out with (None: the data's own test part).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: str
    kind: str = "images"
    feature_names: tuple = None
    target: str = None
    test_part: str = "file"
    format: str = "builtin"
    split_seed: int = None

    def describe(self):
        """What a model file records about the data it was trained on (JSON-ready)."""
        shape = list(self.x_train.shape[1:])
        return {"name": self.name, "source": self.source, "kind": self.kind,
                "shape": shape, "n_features": int(math.prod(shape)),
                "feature_names": list(self.feature_names) if self.feature_names else None,
                "target": self.target, "test_part": self.test_part, "format": self.format,
                "split_seed": self.split_seed,
                "n_train": int(self.x_train.shape[0]), "n_test": int(self.x_test.shape[0])}


@dataclasses.dataclass
class Split:
    """Preprocessed arrays ready for training (see :func:`prepare`).

    ``preprocessing`` is what was applied (learned on ``X_train``'s rows);
    ``description`` is :meth:`Dataset.describe` of the data set. The arrays
    of a data set too large for memory are memory-mapped scratch files.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: str
    preprocessing: Preprocessing = None
    description: dict = None


class Rows:
    """Rows ``index`` of a (memory-mapped) array, read only when sliced.

    Behaves as a read-only array of ``len(index)`` rows for what
    :func:`prepare` and :class:`~fastnn.preprocessing.Preprocessing` need:
    ``shape``, ``dtype``, ``ndim``, ``len`` and slicing by rows.
    ``np.asarray(rows)`` reads them all.
    """

    def __init__(self, array, index):
        self.array, self.index = array, np.sort(np.asarray(index, dtype=np.intp))

    shape = property(lambda self: (self.index.shape[0], *self.array.shape[1:]))
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)

    def __len__(self):
        return self.index.shape[0]

    def __getitem__(self, key):
        return self.array[self.index[key]]

    def __array__(self, dtype=None, copy=None):
        out = self.array[self.index]
        return out if dtype is None else out.astype(dtype)


# ------------------------------------------------------------------ IDX files
def _open(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return (gzip.open(path, "rb") if gz else open(path, "rb")), gz


def read_idx(path, ndim):
    """Read an unsigned-byte IDX file (optionally gzipped) of ``ndim`` dimensions.

    Parameters
    ----------
    path : str or Path
    ndim : int
        3 for images (magic number 2051), 1 for labels (2049).

    Returns
    -------
    ndarray of uint8, shape given by the header

    Raises
    ------
    DataError
        Unreadable file, corrupt or truncated gzip data, wrong magic number,
        sizes that disagree with the file, or trailing bytes.
    """
    path = Path(path)
    try:
        size_on_disk = path.stat().st_size
        f, gz = _open(path)
        with f:
            head = f.read(4)
            expected_magic = (_IDX_UBYTE << 8) | ndim
            if len(head) < 4:
                raise DataError(f"{path}: file too short for an IDX header")
            magic = struct.unpack(">I", head)[0]
            if magic != expected_magic:
                raise DataError(
                    f"{path}: wrong IDX magic number {magic} (expected {expected_magic}: "
                    f"unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
                )
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            count = math.prod(dims)
            header = 4 + 4 * ndim
            limit = size_on_disk * _MAX_GZIP_RATIO if gz else size_on_disk - header
            if count > limit:
                raise DataError(
                    f"{path}: header claims {dims} = {count} bytes, more than the "
                    f"{size_on_disk}-byte file can hold"
                )
            buf = bytearray(count)
            got = f.readinto(buf)
            if got != count:
                raise DataError(f"{path}: truncated: header claims {count} data bytes, found {got}")
            if f.read(1):
                raise DataError(f"{path}: trailing bytes after the {count} data bytes")
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    return np.frombuffer(buf, dtype=np.uint8).reshape(dims)


def write_idx(path, array):
    """Write a uint8 array as an IDX file (gzipped if ``path`` ends in .gz).

    Written to a temporary file in the same directory and renamed into place.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    head = struct.pack(">I", (_IDX_UBYTE << 8) | array.ndim)
    head += struct.pack(f">{array.ndim}I", *array.shape)
    data = head + array.tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)


# ------------------------------------------------------------- finding files
def _find_file(directory, stem):
    for candidate in (directory / (stem + ".gz"), directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _idx_set(directory):
    """Paths of the four IDX files in ``directory``, or None if any is missing."""
    found = {key: _find_file(directory, stem) for key, stem in FILES.items()}
    return found if all(found.values()) else None


def cache_dir():
    """fastnn's own data cache: ``$XDG_CACHE_HOME/fastnn`` or ``~/.cache/fastnn``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastnn"


def _keras_dir():
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def search_path(name, data_dir=None):
    """Directories searched for ``name``'s IDX files, in order (see module doc)."""
    sub = _DIRNAMES[name]
    dirs = []
    for given in (data_dir, os.environ.get("FASTNN_DATA") or None):
        if given is not None:
            dirs += [Path(given) / sub, Path(given)]
    dirs += [root / sub for root in (_keras_dir(), SYSTEM_DIR, cache_dir())]
    return dirs


def locate(name, data_dir=None):
    """Find a local copy of ``name``; return (kind, where) or None.

    ``kind`` is ``"idx"`` with a dict of the four paths, or ``"npz"`` with
    the path of Keras's ``mnist.npz``.
    """
    for directory in search_path(name, data_dir):
        keras_npz = directory.parent / "mnist.npz"
        if name == "mnist" and directory == _keras_dir() / "mnist" and keras_npz.is_file():
            return "npz", keras_npz
        files = _idx_set(directory)
        if files:
            return "idx", files
    return None


def fetch(name, dest=None):
    """Download ``name``'s four IDX files into ``dest`` (default the cache).

    Each file is fetched from the first mirror in :data:`MIRRORS` that
    answers, checked against :data:`SHA256`, and renamed into place only if
    it matches.

    Returns
    -------
    dict of str -> Path

    Raises
    ------
    DataNotFoundError
        No mirror answered (e.g. no network).
    DataError
        A file did not match its checksum.
    """
    dest = Path(dest) if dest is not None else cache_dir() / _DIRNAMES[name]
    dest.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, stem in FILES.items():
        target = dest / (stem + ".gz")
        if not target.is_file():
            _download_one(name, key, stem + ".gz", target)
        paths[key] = target
    return paths


def _download_one(name, key, filename, target):
    errors = []
    for base in MIRRORS[name]:
        url = base + filename
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                data = resp.read()
        except (OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest not in SHA256[name][key]:
            raise DataError(f"{url}: SHA-256 {digest} does not match the published checksum")
        atomic_write_bytes(target, data)
        return
    raise DataNotFoundError("download failed: " + "; ".join(errors))


def _not_found_message(name, data_dir, extra=""):
    places = ", ".join(str(d) for d in search_path(name, data_dir))
    how = "apt-get install dataset-fashion-mnist, or " if name == "fashion_mnist" else ""
    return (f"{name} data not found (looked in {places}){extra}; to get it: {how}"
            f"put the four IDX files ({', '.join(FILES.values())}, optionally .gz) in a "
            "directory and pass --data-dir DIR or set FASTNN_DATA=DIR")


# -------------------------------------------------------------------- loading
def load(name, data_dir=None, download=True, *, target=None, image_size=None,
         test_fraction=0.1, seed=0):
    """Load a data set's raw features and labels: a built-in name, or a file or folder.

    Parameters
    ----------
    name : str or Path
        ``fashion_mnist``, ``mnist`` or ``digits`` (``digits`` is
        scikit-learn's embedded 8x8 set, 1,797 images, always available
        offline, split 80/20 stratified with a fixed seed and scaled from
        0-16 to 0-255); or a CSV, .npz or .npy file, a folder of .npy files
        or a folder of images in class sub-folders (:mod:`fastnn.readers`).
    data_dir : str or Path, optional
        Where a built-in set is looked for first (see the module docstring).
    download : bool
        Download a built-in set to the cache when no local copy is found.
    target : str, optional
        A CSV's label column (default ``label``, ``target`` or ``class``,
        else the last); for a .npy file of features, its labels file.
    image_size : str or (int, int), optional
        ``"HxW"`` the images of a folder are resized to (default: the size
        of the first image).
    test_fraction : float
        Share held out as the test part (stratified, drawn with ``seed``)
        when a file has no test part of its own.
    seed : int

    Returns
    -------
    Dataset

    Raises
    ------
    DataNotFoundError
        No copy of a built-in set found (the message lists where fastnn
        looked) and none could be downloaded.
    DataError
        A file that is missing, corrupt or not a data set.
    """
    key = str(name).lower().replace("-", "_")
    if key not in NAMES:
        path = Path(name)
        if not path.exists() and not path.suffix and len(path.parts) == 1:
            raise DataError(f"dataset must be one of {', '.join(NAMES)} or a data file or "
                            f"folder; there is no file {str(name)!r}")
        return _load_file(path, target, image_size, test_fraction, seed)
    if key == "digits":
        return _load_digits()
    found = locate(key, data_dir)
    if found is None:
        if not download:
            raise DataNotFoundError(_not_found_message(key, data_dir))
        try:
            found = ("idx", fetch(key))
        except DataNotFoundError as exc:
            raise DataNotFoundError(_not_found_message(key, data_dir, f"; {exc}")) from exc
    kind, where = found
    if kind == "npz":
        arrays = _load_keras_npz(where)
        source = str(where)
    else:
        arrays = {k: read_idx(p, 3 if k.endswith("images") else 1) for k, p in where.items()}
        source = str(where["train_images"].parent)
    class_names = FASHION_CLASSES if key == "fashion_mnist" else DIGIT_CLASSES
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{source}: {split} arrays have shapes {images.shape} and {labels.shape}")
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{source}: {split} set has {images.shape[0]} images but {labels.shape[0]} labels"
            )
        if labels.size and labels.max() >= len(class_names):
            raise DataError(
                f"{source}: {split} label {int(labels.max())} out of range 0-{len(class_names) - 1}"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{source}: train and test images differ in size")
    return Dataset(key, arrays["train_images"], arrays["train_labels"],
                   arrays["test_images"], arrays["test_labels"], class_names, source)


def split_seed_of(metadata):
    """The seed a model's test part was held out with, from its file's metadata: the one
    recorded with its data (a sweep's runs train with their own seeds but share the sweep's
    split), else its run's seed, else 0."""
    data = metadata.get("data") if isinstance(metadata.get("data"), dict) else {}
    config = metadata.get("config") if isinstance(metadata.get("config"), dict) else {}
    for seed in (data.get("split_seed"), config.get("seed")):
        if isinstance(seed, int) and not isinstance(seed, bool):
            return seed
    return 0


def _load_file(path, target, image_size, test_fraction, seed):
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    raw = readers.read(path, target, readers.parse_image_size(image_size))
    values, y = _encode_labels(raw.labels, path)
    names = tuple(_class_name(v) for v in values)
    if raw.x_test is not None:
        _, y_test = _encode_labels(raw.labels_test, path, values)
        x_train, x_test, part = raw.x, raw.x_test, "file"
    else:
        train, test = _stratified(y, test_fraction, seed, path, names, "test")
        if isinstance(raw.x, np.memmap):
            (x_train, y), (x_test, y_test) = _rows(raw.x, y, train), _rows(raw.x, y, test)
        else:  # the arrays were read for us: no copy of the training rows
            x_train, y, x_test, y_test = _hold_out(raw.x, y, test)
        part = f"held out {test_fraction:.0%}, seed {seed}"
    return Dataset(str(path), x_train, y, x_test, y_test, names, raw.source, raw.kind,
                   tuple(raw.feature_names) if raw.feature_names else None, raw.target, part,
                   raw.format, None if raw.x_test is not None else seed)


def _encode_labels(labels, path, values=None):
    """(sorted class values, indices) of labels; with ``values``, indices into those."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "US":
        labels = np.char.strip(labels.astype(str))
        numeric = None
        with np.errstate(all="ignore"):
            try:
                numeric = labels.astype(np.float64)
            except ValueError:
                pass
        if numeric is not None and np.isfinite(numeric).all():
            labels = numeric
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            bad = int(np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))[0])
            raise DataError(f"{path}: label {labels[bad]} (row {bad + 1}) is not a class: "
                            "labels must be integers or names")
        labels = labels.astype(np.int64)
    if values is None:
        values = np.unique(labels)
        if values.shape[0] < 2:
            raise DataError(f"{path}: one class only ({_class_name(values[0])!r} in every row): "
                            "a classifier needs at least two")
        return values, np.searchsorted(values, labels).astype(np.intp)
    if labels.dtype.kind != values.dtype.kind and not (
            labels.dtype.kind in "iu" and values.dtype.kind in "iu"):
        raise DataError(f"{path}: the test labels are {'names' if labels.dtype.kind == 'U' else 'numbers'}"
                        " but the training labels are not")
    idx = np.searchsorted(values, labels)
    idx[idx == values.shape[0]] = 0
    unknown = values[idx] != labels
    if unknown.any():
        raise DataError(f"{path}: test label {_class_name(labels[unknown][0])!r} is not a class "
                        "of the training part")
    return values, idx.astype(np.intp)


def _class_name(value):
    return str(value.item() if hasattr(value, "item") else value)


def _stratified(y, fraction, seed, path, names, what):
    """(kept, held-out) row indices: a stratified ``fraction`` of ``y``, drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(names))
    if counts.min() < 2:
        raise DataError(f"{path}: class {names[int(np.argmin(counts))]!r} has "
                        f"{int(counts.min())} row(s): too few to hold out a stratified {what} "
                        "part")
    try:
        return train_test_split(np.arange(y.shape[0]), test_size=fraction, stratify=y,
                                random_state=seed)
    except ValueError as exc:
        raise DataError(f"{path}: cannot hold out {fraction:.0%} as the {what} part ({exc})"
                        ) from None


def _hold_out(x, y, test, chunk=8192):
    """(x_train, y_train, x_test, y_test): rows ``test`` copied out, the others moved up
    in place (in file order), so that holding out a part costs no copy of the rest."""
    test = np.sort(test)
    keep = np.ones(y.shape[0], dtype=bool)
    keep[test] = False
    train = np.flatnonzero(keep)
    x_test, y_test = x[test], y[test]
    for start in range(0, train.shape[0], chunk):
        rows = train[start:start + chunk]  # rows >= their new places: nothing read is lost
        x[start:start + rows.shape[0]] = x[rows]
    return x[:train.shape[0]], y[train], x_test, y_test


def _rows(x, y, index):
    """Rows ``index`` of (x, y): copied from an array, a :class:`Rows` view of a memory map."""
    if isinstance(x, np.memmap | Rows):
        index = np.sort(index)  # rows in file order; y is in x's row order (x.index is sorted)
        view = Rows(x.array, x.index[index]) if isinstance(x, Rows) else Rows(x, index)
        return view, y[index]
    return x[index], y[index]


def _load_keras_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {
                "train_images": z["x_train"], "train_labels": z["y_train"],
                "test_images": z["x_test"], "test_labels": z["y_test"],
            }
    except (OSError, ValueError, KeyError, zlib.error) as exc:
        raise DataError(f"{path}: not a readable Keras mnist.npz "
                        f"({_npz.load_error_reason(path, exc)})") from exc
    for key, arr in out.items():
        if arr.dtype != np.uint8:
            raise DataError(f"{path}: {key} has dtype {arr.dtype}, expected uint8")
    return out


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=0.2, stratify=labels, random_state=0
    )
    return Dataset("digits", x_tr, y_tr, x_te, y_te, DIGIT_CLASSES, "sklearn.datasets.load_digits")


# -------------------------------------------------------------- preprocessing
def preprocess(images, dtype="float32"):
    """Flatten images and scale 0-255 to [0, 1] (the built-in sets' preprocessing).

    Parameters
    ----------
    images : ndarray (n, h, w) of uint8
    dtype : {'float32', 'float64'}

    Returns
    -------
    ndarray (n, h*w) of ``dtype`` (a new array)
    """
    images = np.asarray(images)
    return Preprocessing.pixels(math.prod(images.shape[1:])).apply(images, dtype)


def train_val_split(X, y, val_fraction=0.1, seed=0):
    """Stratified split off a validation set.

    Returns
    -------
    X_train, X_val, y_train, y_val
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=val_fraction, stratify=y, random_state=seed)


def prepare(name, data_dir=None, dtype="float32", val_fraction=0.1, seed=0, download=True, *,
            target=None, image_size=None, test_fraction=0.1, preprocessing=None):
    """Load, split and preprocess: the arrays a training run needs.

    The validation set is a stratified ``val_fraction`` of the training
    part, drawn with ``seed``; the test part is the data's own (the official
    one of a built-in set) or held out by :func:`load`. The preprocessing is
    learned on the remaining training rows (or the one given) and applied
    to all three. ``target``, ``image_size`` and ``test_fraction`` are
    :func:`load`'s. A data set whose float arrays would not fit in memory
    (read from ``.npy`` files) is converted chunk by chunk into
    memory-mapped scratch files, which disappear with the arrays.

    Returns
    -------
    Split
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    ds = load(name, data_dir=data_dir, download=download, target=target,
              image_size=image_size, test_fraction=test_fraction, seed=seed)
    keep, val = _stratified(np.asarray(ds.y_train), val_fraction, seed, ds.name,
                            ds.class_names, "validation")
    x_tr, y_tr = _rows(ds.x_train, ds.y_train, keep)
    x_val, y_val = _rows(ds.x_train, ds.y_train, val)
    prep = preprocessing or Preprocessing.learn(x_tr)
    parts = [_prepared(prep, x, dtype, ds.name) for x in (x_tr, x_val, ds.x_test)]
    labels = [np.asarray(v, dtype=np.intp) for v in (y_tr, y_val, ds.y_test)]
    return Split(parts[0], labels[0], parts[1], labels[1], parts[2], labels[2],
                 ds.class_names, ds.source, prep, ds.describe())


def _prepared(prep, x, dtype, name):
    """``prep`` applied to ``x``: in memory when it fits, else in a scratch memory map."""
    n_bytes = x.shape[0] * prep.n_features * np.dtype(dtype).itemsize
    out = None
    if isinstance(x, np.memmap | Rows) and 2 * n_bytes > memory_budget():
        out = _scratch((x.shape[0], prep.n_features), dtype)
    try:
        out = prep.apply(x, dtype, out=out)
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from None
    for start in range(0, out.shape[0], 8192):
        finite = np.isfinite(out[start:start + 8192]).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise DataError(f"{name}: a NaN or infinite feature in row {row + 1} of a part")
    return out


def memory_budget():
    """Bytes this process can still allocate: available memory, within its RLIMIT_DATA/AS."""
    budget = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    budget = int(line.split()[1]) * 1024
    except OSError:
        pass
    if budget is None:
        try:
            budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            budget = 1 << 62
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return budget
    used = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    for limit in (resource.RLIMIT_DATA, resource.RLIMIT_AS):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY:
            budget = min(budget, max(soft - used, 0))
    return budget


def _scratch(shape, dtype):
    """A zero-filled array backed by a temporary file that is already unlinked.

    The file lives in ``$FASTNN_SCRATCH`` or the system's temporary directory
    while the array does (and no longer, even if the process is killed).
    """
    fd, path = tempfile.mkstemp(prefix="fastnn-", suffix=".npy",
                                dir=os.environ.get("FASTNN_SCRATCH") or None)
    os.close(fd)
    try:
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    finally:
        os.unlink(path)
