"""Flush to zero: state that decays geometrically never holds subnormal floats.

Optimizer moments and velocities, the weight average and batch-norm running
statistics are multiplied by a factor below one at every step. Where the
gradient (or the statistic) is exactly zero, for input pixels that are zero
in every image or ReLU units that never fire, such a value shrinks towards
zero and, after some hundreds of steps in float32, into the subnormal range
(non-zero and below ``np.finfo(dtype).tiny``, 1.18e-38 in float32 and
2.2e-308 in float64). Intel cores take a slow path for arithmetic on
subnormal operands: an Adam update of 2.9 million parameters went from
1.8 ms to 43 ms on an Intel Xeon once two thirds of ``m`` were subnormal
(AMD cores run them at nearly full speed).

So every such update ends with the same rule in both kernel sets: a new
value whose magnitude is below ``tiny`` is stored as zero. The fused loops
spell it ``if abs(x) < tiny: x = zero`` (a select that vectorises; measured
+4-6% on the Adam loop, ``python -m bench.flush_modes``); the NumPy reference calls
:func:`flush_` after each state update. NaN compares false and is kept, so
divergence still shows. The cost to results: values below ``tiny`` become
exactly zero, where without the rule they would have gone on shrinking.

Training also makes subnormals itself, not by decay, in two places. The
loss's dL/dz: once a network is confident, the softmax probability of a
wrong class falls to 1e-30 and below, and the backward matrix products
multiply such entries by weights and activations into subnormal hidden
deltas and gradients, inside BLAS, where no flush can reach. So both loss
kernels store entries of dL/dz below :func:`delta_floor` (``sqrt(tiny)``,
1.1e-19 in float32) as zero: products of what is kept with any factor
above ``sqrt(tiny)`` stay normal. Such an entry is at most a 1e-17 share
of the batch's gradient for any row that is not already certain, far
below float32 resolution. And the squared gradient of RMSProp, Adam and
Nadam: a gradient below ``sqrt(tiny)`` squares to a subnormal, so it is
squared as zero (:func:`square_`). Measured on an Intel Xeon (OpenBLAS
SkylakeX), RMSProp on 784-1024-1024-1024-10 at batch 64, ten epochs of
8,192 Fashion-MNIST images: without these two rules 5.9k samples/s in the
first epochs and 3.6k from the seventh on (151,045 subnormal gradient
entries after one epoch); with them 6.1-6.7k in every epoch and none.

This was chosen over setting the CPU's flush-to-zero and denormals-are-zero
modes (MXCSR) around fastnn's kernels, which measured the same speed: the
explicit rule needs no compiled helper (the NumPy kernel set runs without
numba), works alike on every CPU architecture, gives the same numbers on
AMD and Intel, and leaves the floating-point mode of the user's own code
and of other libraries' threads alone.
"""

import numpy as np


def tiny(dtype):
    """The smallest normal number of ``dtype``, as a scalar of that dtype."""
    dtype = np.dtype(dtype)
    return dtype.type(np.finfo(dtype).tiny)


def flush_(x, scratch, mask):
    """Set the entries of ``x`` with ``|x| < tiny`` to zero, in place (NumPy reference).

    ``scratch`` (like ``x``) and ``mask`` (bool, the shape of ``x``) are
    overwritten.
    """
    np.abs(x, out=scratch)
    np.less(scratch, np.finfo(x.dtype).tiny, out=mask)
    np.copyto(x, 0, where=mask)



def delta_floor(dtype):
    """The smallest magnitude of dL/dz the loss kernels keep: ``sqrt(tiny)``, in ``dtype``.

    1.1e-19 in float32, 1.5e-154 in float64. A product of a kept entry with
    any factor of at least ``sqrt(tiny)`` (a weight, an activation, an
    activation's derivative) is still a normal number.
    """
    dtype = np.dtype(dtype)
    return dtype.type(np.sqrt(np.finfo(dtype).tiny))


def flush_delta_(delta):
    """Set the entries of dL/dz with ``|d| < delta_floor`` to zero, in place (NumPy reference).

    ``delta`` is small (batch x classes), so a temporary mask costs less
    than keeping scratch buffers for it.
    """
    delta[np.abs(delta) < delta_floor(delta.dtype)] = 0


def square_(g, out, mask):
    """``out = g * g``, with zero where ``|g| < sqrt(tiny)`` (NumPy reference).

    Such a square would be subnormal; the entries are zeroed before the
    multiplication, so no arithmetic runs on them. ``mask`` (bool, the
    shape of ``g``) is overwritten. The fused loops spell it
    ``gs = zero if abs(g) < sqrt(tiny) else g`` before ``gs * gs``.
    """
    np.abs(g, out=out)
    np.less(out, delta_floor(g.dtype), out=mask)  # sqrt(tiny), as for dL/dz
    np.copyto(out, g)
    np.copyto(out, 0, where=mask)
    np.multiply(out, out, out=out)
