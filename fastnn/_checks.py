"""Small validators shared by constructors and the config (stdlib only)."""

import math
import numbers

from .errors import ConfigError

DTYPES = ("float32", "float64")


def number(name, value, *, low=None, high=None, low_open=False, high_open=False,
           integer=False):
    """Return ``value`` if it is a finite number in range, else raise ConfigError.

    ``low``/``high`` are inclusive bounds unless ``low_open``/``high_open``.
    """
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {what}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ConfigError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def choice(name, value, choices):
    """Return the lower-cased ``value`` if it is one of ``choices``."""
    key = str(value).lower()
    if key not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return key


def dtype_name(value):
    """Normalise a dtype spec to ``'float32'`` or ``'float64'``."""
    import numpy as np

    try:
        name = np.dtype(value).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ConfigError(f"dtype must be float32 or float64, got {value!r}")
    return name


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def flag(name, value):
    """A boolean setting: True/False, 0/1, or one of the words true/false, yes/no, on/off.

    Raises
    ------
    ConfigError
        Anything else.
    """
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{name} must be true or false, got {value!r}")
