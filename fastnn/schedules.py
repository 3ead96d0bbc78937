"""Learning-rate schedules: functions of the 0-based epoch index (stdlib only).

Each schedule maps epoch ``e`` to a learning rate; :class:`LearningRateScheduler`
(in :mod:`fastnn.train`) sets ``optimizer.lr`` from it before every epoch.

- ``constant``: ``lr``
- ``step``: ``lr * decay ** floor(e / step)``
- ``exponential``: ``lr * decay ** e``
- ``cosine``: ``min_lr + (lr - min_lr) * (1 + cos(pi * e / epochs)) / 2``
- warm-up (any of them): for ``e < warmup``, ``lr * (e + 1) / warmup``; after it the
  schedule runs on ``e - warmup`` (cosine over the remaining epochs).
"""

import math

from . import _checks

SCHEDULES = ("constant", "step", "exponential", "cosine")


def make(name, lr, *, epochs=10, decay=0.5, step=5, warmup=0, min_lr=0.0):
    """Return ``schedule(epoch) -> lr`` for the named schedule.

    Raises
    ------
    ConfigError
        Unknown name or out-of-range arguments.
    """
    name = _checks.choice("lr_schedule", name, SCHEDULES)
    _checks.number("lr", lr, low=0, low_open=True)
    _checks.number("lr_decay", decay, low=0, high=1, low_open=True)
    _checks.number("lr_step", step, low=1, integer=True)
    _checks.number("warmup_epochs", warmup, low=0, integer=True)
    _checks.number("min_lr", min_lr, low=0)
    span = max(epochs - warmup, 1)

    def base(e):
        if name == "step":
            return lr * decay ** (e // step)
        if name == "exponential":
            return lr * decay ** e
        if name == "cosine":
            return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * min(e, span) / span)) / 2
        return lr

    def schedule(epoch):
        if epoch < warmup:
            return lr * (epoch + 1) / warmup
        return base(epoch - warmup)

    schedule.name = name
    return schedule
