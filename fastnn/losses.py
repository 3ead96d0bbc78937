"""Softmax output layer fused with its loss.

Both kernels take the output layer's logits ``z`` of shape (n, K) and
integer labels ``y`` of shape (n,), and in one sweep over the buffer turn
the logits into softmax probabilities, compute the mean loss over the
batch and write dL/dz (already divided by n) into ``delta``. They assume
the output activation is softmax: the two pairs supported are
softmax + cross-entropy and softmax + mean squared error.

NOTE: both kernels overwrite ``z``. For cross-entropy ``delta`` may be
the same buffer as ``z`` (the training step does that); for squared error
it must not be, and ``z`` ends holding the probabilities.

The numba kernel set has one row kernel per loss (``*_fused``, compiled by
:mod:`fastnn._jit`) that does all of it in one sweep over each row: max
and arg-max, exponentials, sum, the loss term, the count of correct
predictions and dL/dz. They return ``(sum of the per-row losses, number
correct)``; the caller divides by n.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._jit import fused
from ._subnormal import flush_delta_
from .errors import ConfigError
from .settings import network_dtype

_FUSED_SIG = "UniTuple(float64, 2)(F[:, ::1], intp[::1], F[:, ::1], S[::1], F, F, F)"


@dataclass(frozen=True)
class Loss:
    """One output loss (always after softmax): its NumPy reference and fused kernel.

    ``in_place``: dL/dz may be written over the logits (the training step
    then needs no separate delta buffer). ``terms_per_row``: how many terms
    the fused kernel's sum has per row, 1 or the number of classes (the
    mean divides by n times it).
    """

    name: str
    reference: Callable
    fused: Callable
    in_place: bool
    per_class: bool
    doc: str = ""

    def terms_per_row(self, n_classes):
        """Number of summed terms per row in the fused kernel's total."""
        return n_classes if self.per_class else 1


def smoothed_targets(smoothing, n_classes):
    """(on, off): the target of the true class and of every other class.

    Label smoothing ``eps`` replaces the one-hot target by
    ``q = (1 - eps) * onehot + eps / K``: ``on = 1 - eps + eps/K``,
    ``off = eps/K``; ``eps = 0`` gives (1, 0), the plain one-hot target.
    """
    off = smoothing / n_classes
    return 1.0 - smoothing + off, off


def _partners(y):
    """Labels of each row's mixup partner, the next row (the last row's is the first)."""
    return np.roll(y, -1)


def softmax_(z, row_buf):
    """Overwrite logits ``z`` (n, K) with softmax probabilities.

    ``row_buf`` is a scratch array of shape (n, 1). Returns ``z``.
    """
    np.maximum.reduce(z, axis=1, keepdims=True, out=row_buf)
    z -= row_buf
    np.exp(z, out=z)
    np.add.reduce(z, axis=1, keepdims=True, out=row_buf)
    z /= row_buf
    return z


def softmax_cross_entropy_(z, y, delta, row_buf, rows, on=1.0, off=0.0, lam=1.0, mu=0.0):
    """Fused softmax + cross-entropy (with label smoothing when ``off`` > 0, mixup when ``mu`` > 0).

    Parameters
    ----------
    z : ndarray (n, K)
        Logits; overwritten (scratch for the exponentials).
    y : ndarray (n,), integer
        Class labels.
    delta : ndarray (n, K)
        Receives dL/dz = (p - onehot(y)) / n. May be ``z`` itself.
    row_buf : ndarray (n, 1)
        Scratch.
    rows : ndarray (n,), intp
        ``arange(n)``.
    on, off : float
        Target of the true class and of the others (:func:`smoothed_targets`);
        the defaults are the one-hot target.
    lam, mu : float
        Mixup weights (``lam + mu = 1``): row i's target is ``lam`` times
        its own and ``mu`` times that of the next row (the last row's
        partner is the first), as the rows were mixed
        (:mod:`fastnn.augment`). The defaults (1, 0) are no mixing. (The
        fused kernels count a mixed row as correct when it predicts the
        label with the larger share.)

    Returns
    -------
    float
        mean_i -sum_k q_ik log p_ik (= -log p[i, y_i] for one-hot targets),
        computed from log-sum-exp minus target-weighted logits, so it stays
        finite for any finite logits. dL/dz = (p - q) / n.
    """
    # NOTE: ufunc.reduce instead of np.max/np.sum skips their Python wrappers
    # (a few microseconds a call, which matters at batch 16).
    n = z.shape[0]
    np.maximum.reduce(z, axis=1, keepdims=True, out=row_buf)
    z -= row_buf
    target_sum = float(np.add.reduce(z[rows, y]))  # small (n,) gather
    if mu:
        partners = _partners(y)
        target_sum = lam * target_sum + mu * float(np.add.reduce(z[rows, partners]))
    if off:
        target_sum = (on - off) * target_sum + off * float(np.add.reduce(z, axis=None))
    np.exp(z, out=z)
    np.add.reduce(z, axis=1, keepdims=True, out=row_buf)
    loss = (float(np.add.reduce(np.log(row_buf), axis=None)) - target_sum) / n
    # delta = p / n - q / n, with 1/(n * rowsum) applied in one pass
    row_buf *= n
    np.reciprocal(row_buf, out=row_buf)
    np.multiply(z, row_buf, out=delta)
    if off:
        delta -= off / n
    if mu:
        delta[rows, y] -= lam * (on - off) / n
        delta[rows, partners] -= mu * (on - off) / n
    else:
        delta[rows, y] -= (on - off) / n
    flush_delta_(delta)
    return loss


def softmax_squared_error_(z, y, delta, row_buf, rows, on=1.0, off=0.0, lam=1.0, mu=0.0):
    """Fused softmax + mean squared error, through the full softmax Jacobian.

    Per example the loss is (1/K) * sum_k (p_k - onehot_k)^2. With
    g = dL/dp = (2/K) (p - onehot), the gradient with respect to the logits
    is dL/dz_j = p_j * (g_j - sum_k g_k p_k).

    Parameters are as for :func:`softmax_cross_entropy_`, except that
    ``delta`` must be a separate buffer from ``z``; with label smoothing
    the smoothed (and mixed) target ``q`` takes the place of ``onehot``.
    """
    n, k = z.shape
    softmax_(z, row_buf)
    np.copyto(delta, z)
    if off:
        delta -= off
    if mu:
        delta[rows, y] -= lam * (on - off)
        delta[rows, _partners(y)] -= mu * (on - off)  # p - q
    else:
        delta[rows, y] -= on - off  # p - q
    loss = float(np.vdot(delta, delta)) / (k * n)
    delta *= 2.0 / k  # g
    np.einsum("ij,ij->i", delta, z, out=row_buf[:, 0])  # sum_k g_k p_k
    delta -= row_buf
    delta *= z
    delta *= 1.0 / n
    flush_delta_(delta)
    return loss


@fused(None, inline=True)
def _row_start(z, y, i, lam, mu):
    """Row i's max logit, its label, its mixup partner's label (the next row's; the
    last row's is the first) and whether the arg-max is the label of the larger share."""
    best = 0
    top = z[i, 0]
    for j in range(1, z.shape[1]):
        if z[i, j] > top:
            top = z[i, j]
            best = j
    n = y.shape[0]
    label = y[i]
    partner = y[i + 1] if i + 1 < n else y[0]
    return top, label, partner, best == (partner if mu > lam else label)


@fused(_FUSED_SIG, S=network_dtype)
def _softmax_cross_entropy_fused(z, y, delta, s, inv_n, lam, mu):
    """Row kernel of softmax + cross-entropy (mixup when ``mu`` != 0); ``delta`` may be ``z``.

    Targets ``on``/``off`` and the floor below which dL/dz is stored as zero
    (:func:`fastnn._subnormal.delta_floor`) come from the settings record ``s``.
    """
    on, off, floor = s[0].target_on, s[0].target_off, s[0].delta_floor
    loss = 0.0  # accumulated in float64 whatever the array dtype
    correct = 0
    zero = inv_n - inv_n  # in the array dtype
    off_n = off * inv_n
    label_n = (on - off) * inv_n
    mixed = mu != zero
    n = z.shape[0]
    for i in range(n):
        top, label, partner, hit = _row_start(z, y, i, lam, mu)
        correct += hit
        target = z[i, label] - top  # read before delta (maybe z) is written
        if mixed:
            target = lam * target + mu * (z[i, partner] - top)
        total = zero
        shifted_sum = zero
        for j in range(z.shape[1]):
            shifted = z[i, j] - top
            shifted_sum += shifted
            e = math.exp(shifted)
            delta[i, j] = e
            total += e
        if off != zero:
            target = (on - off) * target + off * shifted_sum
        loss += math.log(total) - target
        scale = inv_n / total
        for j in range(z.shape[1]):
            d = delta[i, j] * scale - off_n
            if abs(d) < floor:
                d = zero
            delta[i, j] = d
        if mixed:
            delta[i, label] -= lam * label_n
            delta[i, partner] -= mu * label_n
        else:
            delta[i, label] -= label_n
    return loss, float(correct)


@fused(_FUSED_SIG, S=network_dtype)
def _softmax_squared_error_fused(z, y, delta, s, inv_n, lam, mu):
    """Row kernel of softmax + squared error (mixup when ``mu`` != 0); ``z`` ends as p.

    Targets ``on``/``off``, ``two_over_k`` and the floor below which dL/dz is
    stored as zero come from the settings record ``s``.
    """
    on, off, floor = s[0].target_on, s[0].target_off, s[0].delta_floor
    two_over_k = s[0].two_over_k
    loss = 0.0
    correct = 0
    zero = inv_n - inv_n  # in the array dtype
    mixed = mu != zero
    n = z.shape[0]
    for i in range(n):
        top, label, partner, hit = _row_start(z, y, i, lam, mu)
        correct += hit
        total = zero
        for j in range(z.shape[1]):
            e = math.exp(z[i, j] - top)
            z[i, j] = e
            total += e
        dot = zero
        for j in range(z.shape[1]):
            p = z[i, j] / total
            z[i, j] = p
            if mixed:  # p - q, q = off + (on - off) * (lam [j == label] + mu [j == partner])
                d = p - off
                if j == label:
                    d -= lam * (on - off)
                if j == partner:
                    d -= mu * (on - off)
            else:
                d = p - on if j == label else p - off  # p - q
            loss += d * d
            d *= two_over_k
            delta[i, j] = d
            dot += d * p
        for j in range(z.shape[1]):
            d = (delta[i, j] - dot) * z[i, j] * inv_n
            if abs(d) < floor:
                d = zero
            delta[i, j] = d
    return loss, float(correct)


REGISTRY = {
    "cross_entropy": Loss("cross_entropy", softmax_cross_entropy_, _softmax_cross_entropy_fused,
                          in_place=True, per_class=False, doc="-log p[y]"),
    "mean_squared_error": Loss("mean_squared_error", softmax_squared_error_,
                               _softmax_squared_error_fused, in_place=False, per_class=True,
                               doc="(1/K) sum_k (p_k - onehot_k)^2"),
}
LOSSES = REGISTRY  # the name older code imports


def canonical_name(name):
    """Return the registry key of a loss name (case-insensitive)."""
    key = str(name).lower()
    if key not in REGISTRY:
        raise ConfigError(f"loss must be one of {', '.join(REGISTRY)}, got {name!r}")
    return key


def get(name):
    """Return the :class:`Loss` registered as ``name`` (case-insensitive)."""
    return REGISTRY[canonical_name(name)]
