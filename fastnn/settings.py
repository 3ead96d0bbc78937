"""The typed records that carry a network's settings into compiled code.

A fused kernel that needs a setting (the dropout rate, the weight decay, a
constant of the activation) reads it by name from one record, a NumPy
structured array of one element that :class:`~fastnn.Network` builds in
one place (``Network._refresh``) and rewrites in place whenever a setting
changes: the Python step, the fused kernels and the compiled step all read
the same memory, so none of them can hold a stale copy. The records of the
optimizers are built the same way (:func:`fastnn.optimizers.record_dtype`).

Every float field has the network dtype, so a kernel's arithmetic stays in
that dtype (a Python float would make numba compute in float64).
"""

import functools

import numpy as np

# name -> what it holds; the fields of the network record beside the
# constants that the activations declare (activations.Activation.constants)
NETWORK_FIELDS = {
    "one": "1",
    "half": "1/2",
    "two_over_k": "2/K, the squared-error factor",
    "weight_decay": "L2 factor on the weights",
    "drop_p": "dropout probability",
    "drop_scale": "1/(1 - dropout)",
    "target_on": "target of the true class (label smoothing)",
    "target_off": "target of every other class",
    "delta_floor": "dL/dz below it is stored as 0 (fastnn._subnormal)",
    "tiny": "smallest normal number: decaying state below it is flushed",
}

# the compiled step's own record (CompiledStep._bind): how it runs, not what it learns
STEP_FIELDS = {
    "capacity": "rows the network's buffers hold (the layout's block size)",
    "update": "1: the optimizer's update runs inside the step",
    "in_place": "1: the loss writes dL/dz over the logits",
    "shift": "augmentation: largest shift in pixels",
    "flip": "augmentation: 1 to flip half the images left-right",
    "height": "image height (augmentation)",
    "width": "image width (augmentation)",
    "mix": "1: mixup blends the rows and targets",
    "clip_norm": "clip the gradient to this global L2 norm before the update (0: off)",
    "sam": "sharpness-aware minimisation radius rho (0: off)",
    "columns": "1: a team splits the forward and delta products by columns (else batch rows)",
}
_FLOAT_STEP_FIELDS = ("clip_norm", "sam")  # float64; the others int64


@functools.cache
def network_dtype(dtype_name):
    """The structured dtype of a network's settings record for ``dtype_name`` floats."""
    from .activations import CONSTANTS

    names = [*NETWORK_FIELDS, *CONSTANTS]
    return np.dtype([(name, dtype_name) for name in names], align=True)


@functools.cache
def step_dtype():
    """The structured dtype of the compiled step's record."""
    return np.dtype([(name, np.float64 if name in _FLOAT_STEP_FIELDS else np.int64)
                     for name in STEP_FIELDS], align=True)
