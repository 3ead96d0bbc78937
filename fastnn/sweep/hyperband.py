"""Hyperband early termination, with the semantics of W&B's sweeps.

``early_terminate: {type: hyperband, min_iter: 1, eta: 3}`` (or ``max_iter``
and ``s``) puts brackets at epochs ``min_iter * eta**k`` (or
``max_iter / eta**k`` for k = 1..s). When a run finishes a bracket epoch,
its metric is compared with the same epoch's metric of every run that has
reached that bracket so far (the run itself included): if it is not among
the best ``ceil(n / eta)`` of those ``n``, the run stops after that epoch.
Epochs are the iterations. The decision is made in the sweep's parent
process from the metrics the workers report after every epoch; a stopped run
is recorded with ``"status": "stopped"``, its history and its last metrics.
"""

import math

from .spec import SweepError

PER_EPOCH = ("val_accuracy", "val_loss", "accuracy", "loss")


def parse(raw, metric, where):
    """Validate an ``early_terminate`` mapping; return a :class:`Hyperband` or None."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("type") != "hyperband":
        raise SweepError(f"{where}: early_terminate must be {{type: hyperband, ...}}")
    extra = set(raw) - {"type", "min_iter", "max_iter", "eta", "s", "strict"}
    if extra:
        raise SweepError(f"{where}: early_terminate: unknown key(s) "
                         f"{', '.join(sorted(map(repr, extra)))}")
    if metric not in PER_EPOCH:
        raise SweepError(f"{where}: hyperband needs a metric measured every epoch "
                         f"({', '.join(PER_EPOCH)}), not {metric}")
    eta = raw.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta <= 1:
        raise SweepError(f"{where}: early_terminate: eta must be a number > 1, got {eta!r}")

    def whole(name, low):
        value = raw.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise SweepError(f"{where}: early_terminate: {name} must be an integer >= {low}, "
                             f"got {value!r}")
        return value

    min_iter, max_iter, s = whole("min_iter", 1), whole("max_iter", 1), whole("s", 1)
    if (min_iter is None) == (max_iter is None):
        raise SweepError(f"{where}: early_terminate: give min_iter or max_iter (with s)")
    if max_iter is not None:
        if s is None:
            raise SweepError(f"{where}: early_terminate: max_iter needs s (how many brackets)")
        brackets = {max(1, round(max_iter / eta ** k)) for k in range(1, s + 1)}
    else:
        brackets = {round(min_iter * eta ** k) for k in range(s if s is not None else 64)}
    return Hyperband(sorted(b for b in brackets if b < 10**6), eta)


class Hyperband:
    """The stopping rule: ``brackets`` (epochs) and ``eta``.

    Attributes
    ----------
    seen : dict of int -> dict of int -> float
        bracket epoch -> run index -> the run's metric at that epoch.
    """

    def __init__(self, brackets, eta, goal="maximize"):
        self.brackets, self.eta, self.goal = list(brackets), eta, goal
        self.seen = {b: {} for b in self.brackets}

    def with_goal(self, goal):
        self.goal = goal
        return self

    def replay(self, records, metric):
        """Learn the bracket metrics of recorded runs (when a sweep resumes)."""
        for record in records:
            history = record.get("history") or {}
            epochs, values = history.get("epoch", []), history.get(metric, [])
            for epoch, value in zip(epochs, values):
                if epoch in self.seen:
                    self.seen[epoch][record["index"]] = value

    def decide(self, index, epoch, value):
        """Record run ``index``'s metric at ``epoch``; return True if it must stop."""
        if epoch not in self.seen:
            return False
        at = self.seen[epoch]
        at[index] = value
        score = self._score(value)
        scores = sorted((self._score(v) for v in at.values()), reverse=True)
        keep = math.ceil(len(scores) / self.eta)
        return score < scores[keep - 1]

    def _score(self, value):
        if value is None or not math.isfinite(value):
            return -math.inf
        return value if self.goal == "maximize" else -value
