"""Saving and loading trained networks: ``.npz`` arrays plus a JSON header.

A model file is an uncompressed NumPy ``.npz`` archive holding

- ``header``: a uint8 array of UTF-8 JSON with ``format`` ("fastnn-model"),
  ``format_version``, ``network`` (the :class:`~fastnn.Network` arguments:
  layer sizes, activation, loss, init, weight decay, dtype), ``class_names``
  and free-form ``metadata``;
- ``param_0`` ... ``param_{2L-1}``: ``W1, b1, ..., WL, bL``.

Files are read with ``allow_pickle=False``; anything else in the archive,
a missing or mis-shaped array, a wrong dtype, a malformed or oversized
header, or a newer format version is refused with :class:`ModelFileError`.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from ._atomic import atomic_open
from .errors import ConfigError, ModelFileError
from .network import Network

FORMAT = "fastnn-model"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20


def save(net, path, *, class_names=None, metadata=None):
    """Write ``net`` to ``path`` atomically (a temporary file, then rename).

    Parameters
    ----------
    net : Network
    path : str or Path
        Usually ending in ``.npz``; the name is used as given.
    class_names : sequence of str, optional
    metadata : dict, optional
        JSON-serialisable extra information (e.g. training config).

    Raises
    ------
    ModelFileError
        The file cannot be written (full disk, no permission); whatever was
        at ``path`` before is left as it was.
    """
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": net.config(),
        "class_names": list(class_names) if class_names is not None else None,
        "metadata": metadata or {},
    }
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    arrays = {"header": blob}
    arrays.update({f"param_{i}": p for i, p in enumerate(net.params)})
    try:
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot save the model ({exc.strerror or exc}); "
                             "a file already there is unchanged") from exc


def load(path):
    """Read a model written by :func:`save`.

    Returns
    -------
    net : Network
    header : dict
        The JSON header (``class_names``, ``metadata``, ...).

    Raises
    ------
    ModelFileError
        Not a fastnn model, corrupt, or of an unsupported format version.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{path}: not a fastnn model file ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path}: not a fastnn model file (a bare .npy array)")
    with archive:
        try:
            return _read(path, archive)
        except ModelFileError:
            raise
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ModelFileError(f"{path}: corrupt model file ({exc})") from exc


def _read(path, archive):
    names = set(archive.files)
    if "header" not in names:
        raise ModelFileError(f"{path}: not a fastnn model file (no header)")
    info = archive.zip.getinfo("header.npy")
    if info.file_size > MAX_HEADER_BYTES + 1024:
        raise ModelFileError(f"{path}: header larger than {MAX_HEADER_BYTES} bytes")
    blob = archive["header"]
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise ModelFileError(f"{path}: header must be a 1-D uint8 array")
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
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
    allowed = {"layer_sizes", "activation", "loss", "weight_init", "weight_decay", "dtype",
               "dropout"}
    if set(spec) - allowed or "layer_sizes" not in spec:
        raise ModelFileError(f"{path}: network description has unexpected or missing keys")
    try:
        net = Network(**spec, seed=0)
    except (ConfigError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: invalid network description ({exc})") from exc
    expected = {f"param_{i}" for i in range(len(net.params))}
    if names != expected | {"header"}:
        extra = sorted(names - expected - {"header"})
        missing = sorted(expected - names)
        raise ModelFileError(
            f"{path}: arrays do not match the architecture (missing {missing}, unexpected {extra})"
        )
    for i, target in enumerate(net.params):
        arr = archive[f"param_{i}"]
        if arr.shape != target.shape:
            raise ModelFileError(f"{path}: param_{i} has shape {arr.shape}, expected {target.shape}")
        if arr.dtype != target.dtype:
            raise ModelFileError(f"{path}: param_{i} has dtype {arr.dtype}, expected {target.dtype}")
        if not np.isfinite(arr).all():
            raise ModelFileError(f"{path}: param_{i} holds NaN or infinite values")
        target[...] = arr
    names_ = header.get("class_names")
    if names_ is not None and (not isinstance(names_, list) or len(names_) != net.n_classes):
        raise ModelFileError(f"{path}: class_names does not match the {net.n_classes} outputs")
    return net, header
