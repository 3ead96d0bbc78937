"""What is done to raw features before the network sees them, learned on the training split.

Pixel data (images, and any uint8 features) is scaled to [0, 1]; tabular
features are standardised (mean 0, standard deviation 1; a constant
feature is centred only). A model file stores its :class:`Preprocessing`,
so that ``evaluate``, ``predict``, the estimator and the ONNX export apply
exactly what training applied.
"""

import numpy as np

from .errors import ModelFileError

KINDS = ("pixels", "standardize")
CHUNK_ROWS = 8192  # rows converted at once: a few MB of float64 at most


class Preprocessing:
    """``x -> (x - shift) * scale`` per feature (flattened), in the network's dtype.

    Parameters
    ----------
    kind : {'pixels', 'standardize'}
    shift, scale : array-like (n_features,)
    image_shape : tuple (height, width), optional
        The shape of one input when the features are an image.
    """

    def __init__(self, kind, shift, scale, image_shape=None):
        if kind not in KINDS:
            raise ValueError(f"preprocessing kind must be one of {', '.join(KINDS)}, got {kind!r}")
        self.kind = kind
        self.shift = np.ascontiguousarray(shift, dtype=np.float64).reshape(-1)
        self.scale = np.ascontiguousarray(scale, dtype=np.float64).reshape(-1)
        if self.shift.shape != self.scale.shape:
            raise ValueError("shift and scale differ in length")
        self.image_shape = tuple(image_shape) if image_shape else None

    @property
    def n_features(self):
        return self.shift.shape[0]

    @classmethod
    def pixels(cls, n_features, image_shape=None, maximum=255.0):
        """Scale pixel values ``0..maximum`` to [0, 1] (the built-in data sets: 0-255)."""
        return cls("pixels", np.zeros(n_features), np.full(n_features, 1.0 / maximum),
                   image_shape)

    @classmethod
    def learn(cls, x, kind=None):
        """Learn from the training features ``x`` (n, ...): pixels for images and uint8 data,
        standardisation for the rest. Reads ``x`` in chunks (it may be memory-mapped)."""
        image_shape = tuple(x.shape[1:]) if x.ndim == 3 else None
        n_features = int(np.prod(x.shape[1:]))
        kind = kind or ("pixels" if image_shape or x.dtype == np.uint8 else "standardize")
        if kind == "pixels":
            if x.dtype == np.uint8:
                top = 255.0
            else:
                top = max((float(np.max(x[s:s + CHUNK_ROWS]))
                           for s in range(0, x.shape[0], CHUNK_ROWS)), default=1.0)
            return cls.pixels(n_features, image_shape, top if top > 0 else 1.0)
        mean, std = _mean_std(x)
        std[std == 0] = 1.0
        return cls("standardize", mean, 1.0 / std, image_shape)

    def apply(self, x, dtype="float32", out=None):
        """The network's inputs for raw features ``x`` (n, ...): a new array (or ``out``).

        Raises ValueError when ``x`` has a different number of features.
        """
        dtype = np.dtype(dtype)
        n = x.shape[0]
        n_features = int(np.prod(x.shape[1:]))
        if n_features != self.n_features:
            raise ValueError(f"the data has {n_features} features per row, the model takes "
                             f"{self.n_features}")
        out = np.empty((n, n_features), dtype=dtype) if out is None else out
        shift, scale = self.shift.astype(dtype), self.scale.astype(dtype)
        centre = self.kind != "pixels" or shift.any()
        for start in range(0, n, CHUNK_ROWS):
            block = out[start:start + CHUNK_ROWS]
            rows = np.asarray(x[start:start + CHUNK_ROWS]).reshape(block.shape[0], -1)
            if centre:  # (x - shift) * scale, the same rounding as the ONNX graph's Sub, Mul
                np.subtract(rows, shift, out=block, casting="unsafe")
                block *= scale
            else:  # one pass: x * scale
                np.multiply(rows, scale, out=block, casting="unsafe")
        return out

    def to_header(self):
        """The JSON part (the vectors go into the model file as arrays)."""
        return {"kind": self.kind, "image_shape": list(self.image_shape) if self.image_shape
                else None}

    @classmethod
    def from_header(cls, header, shift, scale, path="model"):
        """Rebuild from a model file's header entry and arrays (ModelFileError if malformed)."""
        if not isinstance(header, dict) or header.get("kind") not in KINDS:
            raise ModelFileError(f"{path}: preprocessing entry is malformed")
        shape = header.get("image_shape")
        if shape is not None and (not isinstance(shape, list) or len(shape) != 2
                                  or int(np.prod(shape)) != shift.shape[0]):
            raise ModelFileError(f"{path}: preprocessing image_shape {shape} does not match "
                                 f"{shift.shape[0]} features")
        if not (np.isfinite(shift).all() and np.isfinite(scale).all()):
            raise ModelFileError(f"{path}: preprocessing holds NaN or infinite values")
        return cls(header["kind"], shift, scale, shape)

    def __eq__(self, other):
        return (isinstance(other, Preprocessing) and self.kind == other.kind
                and self.image_shape == other.image_shape
                and np.array_equal(self.shift, other.shift)
                and np.array_equal(self.scale, other.scale))

    def __repr__(self):
        shape = f", image {self.image_shape[0]}x{self.image_shape[1]}" if self.image_shape else ""
        return f"Preprocessing({self.kind}, {self.n_features} features{shape})"


def _mean_std(x):
    """Per-feature mean and standard deviation in float64, two passes over row chunks."""
    n = x.shape[0]
    total = np.zeros(int(np.prod(x.shape[1:])))
    for start in range(0, n, CHUNK_ROWS):
        total += np.asarray(x[start:start + CHUNK_ROWS]).reshape(-1, total.size).sum(
            axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros_like(mean)
    for start in range(0, n, CHUNK_ROWS):
        # a new array: x itself (perhaps a read-only map) is never written
        block = np.subtract(np.asarray(x[start:start + CHUNK_ROWS]).reshape(-1, mean.size),
                            mean, dtype=np.float64)
        squares += np.einsum("ij,ij->j", block, block)
    return mean, np.sqrt(squares / n)
