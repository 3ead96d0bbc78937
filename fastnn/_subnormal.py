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
