"""Saving and loading trained networks: ``.npz`` arrays plus a JSON header.

A model file is an uncompressed NumPy ``.npz`` archive holding

- ``header``: a uint8 array of UTF-8 JSON with ``format`` ("fastnn-model"),
  ``format_version``, ``network`` (the :class:`~fastnn.Network` arguments:
  layer sizes, activation, loss, init, weight decay, dtype), ``class_names``
  and free-form ``metadata``;
- ``param_0`` ... ``param_{2L-1}``: ``W1, b1, ..., WL, bL``; with batch
  normalisation (format version 2) then ``gamma, beta`` of each hidden layer
  as further ``param_i``, and ``stats_0`` ... : the running mean and variance
  of each hidden layer (:attr:`Network.running_stats`);
- with standardised inputs (format version 3) ``input_shift`` and
  ``input_scale``: the :class:`~fastnn.preprocessing.Preprocessing` learned
  on the training split (its kind and image shape are in the header's
  ``preprocessing``; pixel scaling needs no arrays).

A file is written with the oldest format version that holds it (1: plain,
2: batch normalisation, 3: standardised inputs), so older fastnn releases
read what they can. Files without a ``preprocessing`` entry (written before
it existed, by training on the built-in image sets) load with pixel scaling.

Files are read with ``allow_pickle=False`` through :class:`fastnn._npz.Archive`,
which checks every member's ``.npy`` header before reading its data;
anything else in the archive, a member that is not an array, a duplicated
member, a missing or mis-shaped array, a wrong dtype, a malformed or
oversized header, or a newer format version is refused with
:class:`ModelFileError`.
"""

import itertools
import json
import math
import zipfile
from pathlib import Path

import numpy as np

from . import _npz
from ._atomic import atomic_open
from ._npz import Archive
from .errors import ConfigError, ModelFileError
from .network import Network
from .preprocessing import Preprocessing

FORMAT = "fastnn-model"
FORMAT_VERSION = 3  # the newest version read and written
MAX_HEADER_BYTES = 1 << 20


def save(net, path, *, class_names=None, metadata=None, preprocessing=None):
    """Write ``net`` to ``path`` atomically (a temporary file, then rename).

    Parameters
    ----------
    net : Network
    path : str or Path
        Usually ending in ``.npz``; the name is used as given.
    class_names : sequence of str, optional
    metadata : dict, optional
        JSON-serialisable extra information (e.g. training config).
    preprocessing : Preprocessing, optional
        What turns raw features into the network's inputs (default: the
        network's own ``preprocessing`` attribute, if set).

    Raises
    ------
    ModelFileError
        The file cannot be written (full disk, no permission); whatever was
        at ``path`` before is left as it was.
    """
    prep = preprocessing if preprocessing is not None else getattr(net, "preprocessing", None)
    if prep is not None and prep.n_features != net.n_features:
        raise ValueError(f"preprocessing of {prep.n_features} features for a network of "
                         f"{net.n_features} inputs")
    arrays = {}
    if prep is not None and prep.kind != "pixels":
        arrays.update(input_shift=prep.shift, input_scale=prep.scale)
    header = {
        "format": FORMAT,
        "format_version": 3 if arrays else 2 if net.batch_norm else 1,
        "network": net.config(),
        "class_names": list(class_names) if class_names is not None else None,
        "metadata": metadata or {},
    }
    if prep is not None:
        header["preprocessing"] = prep.to_header()
        if prep.kind == "pixels":
            header["preprocessing"]["maximum"] = float(1.0 / prep.scale[0])
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    arrays = {"header": blob, **arrays}
    arrays.update({f"param_{i}": p for i, p in enumerate(net.params)})
    arrays.update({f"stats_{i}": s for i, s in enumerate(net.running_stats)})
    try:
        with atomic_open(path, "wb") as f:
            _npz.write(f, arrays)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot save the model ({exc.strerror or exc}); "
                             "a file already there is unchanged") from exc


def load(path):
    """Read a model written by :func:`save`.

    Returns
    -------
    net : Network
        With ``net.preprocessing``, the :class:`Preprocessing` of its inputs.
    header : dict
        The JSON header (``class_names``, ``metadata``, ...).

    Raises
    ------
    ModelFileError
        Not a fastnn model, corrupt, or of an unsupported format version.
    """
    path = Path(path)
    with Archive(path, ModelFileError, "fastnn model file") as archive:
        try:
            return _read(path, archive)
        except ModelFileError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFileError(f"{path}: corrupt model file ({exc})") from exc


def read_header(path, archive):
    """The JSON header of a model or checkpoint archive, as a dict."""
    if "header" not in archive.names:
        raise ModelFileError(f"{path}: not a fastnn file (no header)")
    blob = archive.array("header", dtype=np.uint8, ndim=1, max_bytes=MAX_HEADER_BYTES)
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: header is not a JSON object")
    return header


def _check_declared_size(path, spec):
    """Refuse layer sizes whose parameters could not fit in the file (before allocating)."""
    sizes = spec["layer_sizes"]
    if not isinstance(sizes, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
        return  # Network() names the problem
    n_params = sum(a * b + b for a, b in itertools.pairwise(sizes))
    if n_params * 4 > path.stat().st_size:  # float32 is the smallest dtype a model holds
        raise ModelFileError(f"{path}: layer_sizes {sizes} need {n_params:,} parameters, "
                             "more than the file holds")


def _read(path, archive):
    names = archive.names
    if "header" not in names:
        raise ModelFileError(f"{path}: not a fastnn model file (no header)")
    header = read_header(path, archive)
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a fastnn model file (format is not {FORMAT!r})")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {version} is newer than this fastnn reads "
            f"({FORMAT_VERSION}); upgrade fastnn"
        )
    if version < 1:
        raise ModelFileError(f"{path}: invalid format version {version}")
    spec = header.get("network")
    if not isinstance(spec, dict):
        raise ModelFileError(f"{path}: header has no network description")
    # files written before label smoothing existed lack the key (it defaults to 0)
    allowed = {"layer_sizes", "activation", "loss", "weight_init", "weight_decay", "dtype",
               "dropout", "label_smoothing", "batch_norm"}
    if set(spec) - allowed or "layer_sizes" not in spec:
        raise ModelFileError(f"{path}: network description has unexpected or missing keys")
    _check_declared_size(path, spec)
    try:
        net = Network(**spec, seed=0)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid network description ({exc})") from exc
    if net.batch_norm and version < 2:
        raise ModelFileError(f"{path}: batch normalisation needs format version 2, "
                             f"the file says {version}")
    expected = {f"param_{i}" for i in range(len(net.params))}
    expected |= {f"stats_{i}" for i in range(len(net.running_stats))}
    prep = header.get("preprocessing")
    if isinstance(prep, dict) and prep.get("kind") != "pixels":
        if version < 3:
            raise ModelFileError(f"{path}: standardised inputs need format version 3, the file "
                                 f"says {version}")
        expected |= {"input_shift", "input_scale"}
    if names != expected | {"header"}:
        extra = sorted(names - expected - {"header"})
        missing = sorted(expected - names)
        raise ModelFileError(
            f"{path}: arrays do not match the architecture (missing {missing}, unexpected {extra})"
        )
    for i, target in enumerate(net.params):
        arr = archive.array(f"param_{i}", dtype=target.dtype, shape=target.shape)
        if not np.isfinite(arr).all():
            raise ModelFileError(f"{path}: param_{i} holds NaN or infinite values")
        target[...] = arr
    for i, target in enumerate(net.running_stats):
        arr = archive.array(f"stats_{i}", dtype=target.dtype, shape=target.shape)
        if not np.isfinite(arr).all():
            raise ModelFileError(f"{path}: stats_{i} holds NaN or infinite values")
        if i % 2 and (arr < 0).any():
            raise ModelFileError(f"{path}: stats_{i} (a running variance) holds negative values")
        target[...] = arr
    net.preprocessing = _preprocessing(path, archive, prep, net)
    names_ = header.get("class_names")
    if names_ is not None and (not isinstance(names_, list) or len(names_) != net.n_classes):
        raise ModelFileError(f"{path}: class_names does not match the {net.n_classes} outputs")
    return net, header


def _preprocessing(path, archive, entry, net):
    """The model's input preprocessing; pixel scaling 0-255 when the file names none."""
    side = math.isqrt(net.n_features)
    square = (side, side) if side * side == net.n_features else None
    if entry is None:
        return Preprocessing.pixels(net.n_features, square)
    if not isinstance(entry, dict):
        raise ModelFileError(f"{path}: preprocessing entry is malformed")
    if entry.get("kind") == "pixels":
        top = entry.get("maximum", 255.0)
        if isinstance(top, bool) or not isinstance(top, int | float) or not top > 0:
            raise ModelFileError(f"{path}: preprocessing maximum {top!r} is not a positive number")
        shift, scale = np.zeros(net.n_features), np.full(net.n_features, 1.0 / top)
    else:
        shift, scale = (archive.array(name, dtype=np.float64, shape=(net.n_features,))
                        for name in ("input_shift", "input_scale"))
    return Preprocessing.from_header(entry, shift, scale, path)
