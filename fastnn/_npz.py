"""Reading ``.npz`` archives that may have been tampered with.

``np.load(allow_pickle=False)`` refuses pickled arrays, but an ``NpzFile``
hands back the raw bytes of a member that lacks the ``.npy`` magic, reads
duplicate member names silently, and allocates whatever shape a member's
header declares before it reads the data. :class:`Archive` closes those
gaps: it refuses duplicate and path-like member names, reads each member's
``.npy`` header first and checks the declared dtype, shape and size against
what the caller expects and against the bytes the member holds, and only
then reads the array. Every problem is one ``error_cls`` exception naming
the file and the member.
"""

import io
import math
import zipfile
import zlib

import numpy as np

# What reading a damaged zip member can raise: zipfile's own errors, an
# unsupported compression method (NotImplementedError), an "encrypted" flag
# (RuntimeError), broken deflate data (zlib.error), and NumPy's header parser.
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, TypeError,
                SyntaxError, NotImplementedError, RuntimeError, zlib.error)


class Archive:
    """A validated view of an ``.npz`` file (use as a context manager).

    Parameters
    ----------
    path : Path
    error_cls : type of Exception
        Raised, with the path and member named, for anything malformed.
    what : str
        What the file should be, for messages ("fastnn model file").
    """

    def __init__(self, path, error_cls, what):
        self.path, self.error, self.what = path, error_cls, what
        try:
            self._npz = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise error_cls(f"{path}: no such file") from None
        except IsADirectoryError:
            raise error_cls(f"{path}: is a directory, not a {what}") from None
        except _READ_ERRORS as exc:
            raise error_cls(f"{path}: not a {what} ({load_error_reason(path, exc)})") from None
        if not isinstance(self._npz, np.lib.npyio.NpzFile):
            raise error_cls(f"{path}: not a {what} (a bare .npy array)")
        try:
            members = self._npz.zip.namelist()
        except (OSError, ValueError, zipfile.BadZipFile) as exc:  # pragma: no cover
            self.close()
            raise error_cls(f"{path}: not a {what} ({exc})") from None
        for name in members:
            if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".npy"):
                self.close()
                raise error_cls(f"{path}: unexpected member {name!r} (not a {what})")
        if len(set(members)) != len(members):
            dup = next(n for n in members if members.count(n) > 1)
            self.close()
            raise error_cls(f"{path}: member {dup!r} appears more than once")
        self.names = {name[:-4] for name in members}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._npz.close()

    def _fail(self, name, problem):
        return self.error(f"{self.path}: member {name!r} {problem}")

    def array(self, name, *, dtype=None, shape=None, ndim=None, max_bytes=None):
        """Read member ``name`` after checking its declared header.

        ``dtype``/``shape``/``ndim`` are what the caller expects (None: any);
        ``max_bytes`` caps the declared size.

        Raises
        ------
        error_cls
            Missing member, not an ``.npy`` array, object (pickled) dtype,
            unexpected dtype or shape, a declared size larger than the member
            or than ``max_bytes``, or data that cannot be read.
        """
        if name not in self.names:
            raise self.error(f"{self.path}: member {name!r} is missing")
        info = self._npz.zip.getinfo(name + ".npy")
        try:
            with self._npz.zip.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    got_shape, _, got_dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    got_shape, _, got_dtype = np.lib.format.read_array_header_2_0(f)
                header_len = f.tell()
        except _READ_ERRORS as exc:
            raise self._fail(name, f"is not a readable .npy array ({exc})") from None
        if got_dtype.hasobject:
            raise self._fail(name, "holds Python objects (pickled data is never loaded)")
        if dtype is not None and got_dtype != np.dtype(dtype):
            raise self._fail(name, f"has dtype {got_dtype}, expected {np.dtype(dtype)}")
        if shape is not None and tuple(got_shape) != tuple(shape):
            raise self._fail(name, f"has shape {tuple(got_shape)}, expected {tuple(shape)}")
        if ndim is not None and len(got_shape) != ndim:
            raise self._fail(name, f"has {len(got_shape)} dimensions, expected {ndim}")
        declared = math.prod(got_shape) * got_dtype.itemsize
        if declared > info.file_size - header_len:
            raise self._fail(name, f"declares {declared} bytes of data but holds "
                                   f"{max(info.file_size - header_len, 0)}")
        if max_bytes is not None and declared > max_bytes:
            raise self._fail(name, f"is larger than {max_bytes} bytes")
        try:
            arr = self._npz[name]
        except _READ_ERRORS as exc:
            raise self._fail(name, f"cannot be read ({exc})") from None
        if not isinstance(arr, np.ndarray):  # pragma: no cover - the header check comes first
            raise self._fail(name, "is not an .npy array")
        return arr


def load_error_reason(path, exc):
    """Why ``np.load`` refused ``path``, in fastnn's words.

    For a file that is neither a zip archive nor an ``.npy`` array NumPy
    falls back to pickle and, with ``allow_pickle=False``, advises loading it
    "unsafely": fastnn never does, so it names what the file is instead.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError:
        return str(exc)
    if head.startswith((b"PK", b"\x93NUMPY")):
        return str(exc)
    if head[:1] == b"\x80":
        return "a Python pickle, which fastnn never loads"
    return "neither an .npz archive nor an .npy array"


def write(f, arrays):
    """Write ``arrays`` (name -> ndarray) to the open binary file ``f`` as an ``.npz``.

    The archive is built in memory first: ``np.savez`` interrupted half-way
    (Ctrl-C, or a sweep worker ended by SIGTERM) leaves its zip object
    unclosed, and if that object wrote to ``f``, which the caller closes on
    the way out, its clean-up at garbage collection printed an "Exception
    ignored ... seek of closed file" traceback.
    """
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    f.write(buffer.getbuffer())
