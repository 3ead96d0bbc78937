"""Exceptions raised by fastnn.

Every error fastnn raises on purpose derives from :class:`FastnnError`, so a
script can catch them all at once. Invalid hyperparameters raise
:class:`ValueError` (or :class:`ConfigError`, which is both).
"""


class FastnnError(Exception):
    """Base class of fastnn's own errors."""


class ConfigError(FastnnError, ValueError):
    """A hyperparameter or option is out of range or unknown."""


class DataError(FastnnError):
    """A data set cannot be found, read or validated."""


class DataNotFoundError(DataError, FileNotFoundError):
    """No copy of a data set was found and none could be downloaded."""


class ModelFileError(FastnnError):
    """A model file is not a valid fastnn model, or does not fit the data."""


class TrainingDivergedError(FastnnError, FloatingPointError):
    """The training loss became NaN or infinite.

    Attributes
    ----------
    epoch : int
        1-based epoch in which it happened.
    step : int
        1-based step (mini-batch) within that epoch.
    loss : float
        The non-finite loss value.
    """

    def __init__(self, epoch, step, loss):
        self.epoch = epoch
        self.step = step
        self.loss = loss
        super().__init__(
            f"training diverged: loss became {loss} at epoch {epoch}, step {step}; "
            "try a lower learning rate"
        )
