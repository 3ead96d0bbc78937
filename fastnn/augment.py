"""Data augmentation in the mini-batch gather: random shifts, horizontal flips, mixup.

Each training image (a row of ``X``, an ``image_shape`` raster in row-major
order) is, independently and afresh every time it is drawn into a batch:

1. mirrored left-right with probability 1/2 (when ``flip``), then
2. translated by ``dy`` rows and ``dx`` columns, each uniform in
   ``[-shift, shift]``; pixels moved in from outside the image are 0.

So ``out[r, c] = src[r - dy, c - dx]`` (0 outside), ``src`` the image or its
mirror. Three uniform draws per row decide it (``dy``, ``dx``, flip); they
come from the training loop's seeded generator into a preallocated buffer,
so a run is reproducible from its seed, a resumed run continues the same
stream, and a step allocates nothing. Validation and test data are never
augmented.

Mixup (``mixup`` = alpha > 0) then blends each row of the batch with the
next one (the last with the first; the rows are already in random order):
``x_i = lam * x_i + mu * x_(i+1)`` with ``lam`` drawn once per batch from
Beta(alpha, alpha) after the rows' draws, and ``mu = 1 - lam``; the loss
blends the two rows' targets with the same weights
(:func:`fastnn.losses.softmax_cross_entropy_`), and the training accuracy
counts a row as correct when it predicts the label with the larger share.

Two implementations give the same result bit for bit (the transform only
copies values; the blend is one multiply-add per value in the same order):
:meth:`Augmentation.apply_` and :meth:`Augmentation.mix_` on a gathered
batch (NumPy, the reference) and :func:`_gather_augmented_fused` and
:func:`_mix_rows_fused`, which run inside the compiled training step.
"""

import math

import numpy as np

from . import _checks
from ._jit import fused
from .errors import ConfigError


class Augmentation:
    """Random shifts of up to ``shift`` pixels and, with ``flip``, left-right mirrors.

    Parameters
    ----------
    shift : int >= 0
        Largest translation in pixels along each axis.
    flip : bool
        Mirror each image left-right with probability 1/2 (for clothes, not
        for digits).
    image_shape : (height, width)
        How a row of features is laid out; ``height * width`` must equal
        the number of features.
    mixup : float >= 0
        Mixup's alpha (0: off): blend each row with the next, weights from
        Beta(alpha, alpha); needs no image layout.

    Raises
    ------
    ConfigError
        A negative or non-integer shift, a shift not smaller than the image,
        a shape that does not match the features, or a negative alpha.
    """

    def __init__(self, shift=0, flip=False, image_shape=(28, 28), mixup=0.0):
        self.shift = int(_checks.number("augment_shift", shift, low=0, integer=True))
        self.flip = bool(flip)
        self.mixup = float(_checks.number("mixup", mixup, low=0))
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ConfigError(f"image_shape must be (height, width), got {image_shape!r}")
        if self.shift >= min(shape):
            raise ConfigError(f"augment_shift must be smaller than the image "
                              f"({shape[0]}x{shape[1]}), got {self.shift}")
        self.image_shape = shape
        self._tmp = np.empty(0)
        self._scratch = np.empty(0)

    @classmethod
    def for_features(cls, n_features, shift=0, flip=False, image_shape=None, mixup=0.0):
        """An Augmentation for rows of ``n_features``, or None when it would do nothing.

        ``image_shape`` None means a square image (``n_features`` must be a
        perfect square then) when shifting or flipping, and any layout
        with mixup alone.
        """
        if not shift and not flip and not mixup:
            return None
        if image_shape is None and not shift and not flip:
            image_shape = (1, n_features)
        if image_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features:
                raise ConfigError(f"augmentation needs image_shape for {n_features} features "
                                  f"(not a square image)")
            image_shape = (side, side)
        aug = cls(shift, flip, image_shape, mixup)
        if aug.image_shape[0] * aug.image_shape[1] != n_features:
            raise ConfigError(f"image_shape {aug.image_shape} does not match {n_features} "
                              f"features")
        return aug

    @property
    def active(self):
        """Whether it changes anything."""
        return bool(self.shift or self.flip or self.mixup)

    @property
    def moves(self):
        """Whether it shifts or flips (and so draws per row)."""
        return bool(self.shift or self.flip)

    def draw(self, rng, out):
        """Fill ``out`` (rows, 3) float64 with the uniform draws of one batch."""
        rng.random(dtype=np.float64, out=out)

    def draw_mix(self, rng, dtype):
        """Mixup's weights of one batch, ``(lam, mu)`` in ``dtype``: one Beta draw."""
        lam = np.dtype(dtype).type(rng.beta(self.mixup, self.mixup))
        return lam, np.dtype(dtype).type(1) - lam

    def mix_(self, xb, lam, mu):
        """Blend each row of ``xb`` in place with the next: ``lam * x_i + mu * x_(i+1)`` (reference)."""
        if self._scratch.shape != xb.shape or self._scratch.dtype != xb.dtype:
            self._scratch = np.empty_like(xb)
        scratch = self._scratch
        np.multiply(xb[1:], mu, out=scratch[:-1])
        np.multiply(xb[0], mu, out=scratch[-1])
        xb *= lam
        xb += scratch

    def apply_(self, xb, draws):
        """Transform each row of ``xb`` in place as ``draws`` (rows, 3) say (reference)."""
        h, w = self.image_shape
        if self._tmp.shape != (h, w) or self._tmp.dtype != xb.dtype:
            self._tmp = np.empty((h, w), dtype=xb.dtype)
        tmp = self._tmp
        span = 2 * self.shift + 1
        for i in range(xb.shape[0]):
            dy = int(draws[i, 0] * span) - self.shift
            dx = int(draws[i, 1] * span) - self.shift
            img = xb[i].reshape(h, w)
            src = img[:, ::-1] if self.flip and draws[i, 2] < 0.5 else img
            tmp[...] = 0
            tmp[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                src[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
            img[...] = tmp


@fused(None)
def _gather_augmented_fused(X, idx, xb, draws, shift, flip, height, width):
    """Gather rows ``idx`` of X into xb (flat) and shift/flip them, in one pass."""
    n_features = X.shape[1]
    span = 2 * shift + 1
    for i in range(idx.size):
        row = idx[i]
        dy = int(draws[i, 0] * span) - shift
        dx = int(draws[i, 1] * span) - shift
        mirror = flip and draws[i, 2] < 0.5
        base = i * n_features
        for r in range(height):
            sr = r - dy
            for c in range(width):
                sc = c - dx
                if 0 <= sr < height and 0 <= sc < width:
                    if mirror:
                        sc = width - 1 - sc
                    xb[base + r * width + c] = X[row, sr * width + sc]
                else:
                    xb[base + r * width + c] = 0


@fused("void(F[:, ::1], F, F, F[::1])")
def _mix_rows_fused(x, lam, mu, first):
    """Augmentation.mix_ in one pass: ``x_i = lam * x_i + mu * x_(i+1)``, ``first`` a scratch row."""
    n, m = x.shape
    for j in range(m):
        first[j] = x[0, j]
    for i in range(n):
        for j in range(m):
            nxt = x[i + 1, j] if i + 1 < n else first[j]
            x[i, j] = x[i, j] * lam + nxt * mu
