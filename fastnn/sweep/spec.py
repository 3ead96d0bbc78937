"""The W&B sweep file format: parse and validate a sweep into a :class:`Spec`."""

import dataclasses
import math
from pathlib import Path

import numpy as np

from ..config import ALIASES, TrainConfig
from ..errors import ConfigError, FastnnError

METHODS = ("grid", "random", "bayes")
TOP_LEVEL_KEYS = {"method", "metric", "parameters", "run_cap", "name", "description",
                  "program", "command", "project", "entity", "early_terminate"}
# Every distribution of the W&B sweep format, as W&B defines them:
BOUNDED = ("uniform", "int_uniform", "q_uniform", "log_uniform", "log_uniform_values",
           "q_log_uniform", "q_log_uniform_values", "inv_log_uniform", "inv_log_uniform_values")
NORMAL = ("normal", "q_normal", "log_normal", "q_log_normal")
DISTRIBUTIONS = ("constant", "categorical", *BOUNDED, *NORMAL)
# Distributions whose samples are already whole numbers (for integer settings).
_INTEGRAL = ("int_uniform",)
METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
# A sweep chooses on validation data: choosing on the test set would leak it
# into the choice, and the test score would no longer estimate anything.
TEST_METRICS = ("test_accuracy", "test_loss")


class SweepError(FastnnError):
    """A sweep file or results directory is invalid."""


# ------------------------------------------------------------------ spec
@dataclasses.dataclass
class Param:
    """One swept parameter: a list of values or a distribution."""

    name: str
    distribution: str
    values: tuple = ()
    min: float = 0.0
    max: float = 0.0
    q: float = 1.0
    mu: float = 0.0
    sigma: float = 1.0
    probabilities: tuple = ()
    integer: bool = False  # the setting takes whole numbers: samples become ints

    def sample(self, rng):
        """One draw, with W&B's definition of the distribution.

        ``log_uniform``/``inv_log_uniform`` take natural-log bounds;
        ``*_values`` take the bounds themselves; ``inv_log_uniform*`` draw X
        with log(1/X) uniform; the normal family draws N(mu, sigma) (of
        log X for ``log_normal``); ``q_*`` round to a multiple of ``q``.
        """
        d = self.distribution
        if d in ("constant", "categorical"):
            if self.probabilities:
                return self.values[int(rng.choice(len(self.values), p=self.probabilities))]
            return self.values[int(rng.integers(len(self.values)))]
        if d == "int_uniform":
            return int(rng.integers(int(self.min), int(self.max) + 1))
        if d in ("uniform", "q_uniform"):
            value = rng.uniform(self.min, self.max)
        elif d in ("log_uniform", "q_log_uniform"):
            value = math.exp(rng.uniform(self.min, self.max))
        elif d in ("log_uniform_values", "q_log_uniform_values"):
            value = math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        elif d == "inv_log_uniform":
            value = 1.0 / math.exp(rng.uniform(self.min, self.max))
        elif d == "inv_log_uniform_values":
            value = 1.0 / math.exp(rng.uniform(math.log(1.0 / self.max), math.log(1.0 / self.min)))
        elif d in ("normal", "q_normal"):
            value = rng.normal(self.mu, self.sigma)
        else:  # log_normal, q_log_normal
            value = math.exp(rng.normal(self.mu, self.sigma))
        if d.startswith("q_"):
            value = np.round(value / self.q) * self.q
        return int(round(value)) if self.integer else float(value)  # noqa: RUF046 - numpy scalars


@dataclasses.dataclass
class Spec:
    """A validated sweep: method, metric, parameters and run cap."""

    method: str
    metric: str
    goal: str
    params: list
    run_cap: int | None
    raw: dict
    hyperband: object = None  # a hyperband.Hyperband when early_terminate asks for it

    def configs(self, seed=0):
        """The run configurations (dicts of TrainConfig fields), in run order."""
        fixed = {p.name: p.values[0] for p in self.params if p.distribution == "constant"}
        swept = [p for p in self.params if p.distribution != "constant"]
        if self.method == "grid":
            out = [dict(fixed)]
            for p in swept:
                out = [{**c, p.name: v} for c in out for v in p.values]
            return out[: self.run_cap] if self.run_cap else out
        return _distinct_draws(fixed, swept, self.run_cap, np.random.default_rng(seed))

    def space_size(self):
        """How many distinct configurations exist (None: infinitely many)."""
        size = 1
        for p in self.params:
            if p.distribution not in ("constant", "categorical"):
                return None
            size *= len(set(map(repr, p.values)))
        return size


REDRAWS = 1000


def _distinct_draws(fixed, swept, count, rng):
    """``count`` random configurations, none twice: a repeat is drawn again.

    The sequence is prefix-stable (a larger count extends it). It ends early
    when ``REDRAWS`` draws in a row were all repeats: the space is used up.
    """
    out, seen = [], set()
    while len(out) < count:
        for _ in range(REDRAWS):
            config = {**fixed, **{p.name: p.sample(rng) for p in swept}}
            key = repr(sorted(config.items()))
            if key not in seen:
                break
        else:
            return out
        seen.add(key)
        out.append(config)
    return out


def parse_spec(raw, *, where="sweep file"):
    """Validate a sweep dict (as read from YAML) and return a :class:`Spec`.

    Raises
    ------
    SweepError
        Unknown keys, unsupported methods or distributions, parameters that
        are not TrainConfig settings, or values out of range.
    """
    if not isinstance(raw, dict):
        raise SweepError(f"{where}: expected a mapping at the top level")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, unknown)))}; "
                         f"allowed: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    method = raw.get("method")
    if method not in METHODS:
        raise SweepError(f"{where}: method must be one of {', '.join(METHODS)}, got {method!r}")
    metric = raw.get("metric") or {"name": "val_accuracy", "goal": "maximize"}
    if not isinstance(metric, dict) or set(metric) - {"name", "goal", "target"}:
        raise SweepError(f"{where}: metric must be a mapping with name and goal")
    name = metric.get("name", "val_accuracy")
    if name in TEST_METRICS:
        raise SweepError(f"{where}: metric {name}: a sweep must not choose on the test set "
                         "(the choice would leak it into the score); use val_accuracy or "
                         "val_loss")
    if name not in METRICS:
        raise SweepError(f"{where}: metric name must be one of {', '.join(METRICS)}, got {name!r}")
    goal = metric.get("goal", "maximize")
    if goal not in ("maximize", "minimize"):
        raise SweepError(f"{where}: metric goal must be maximize or minimize, got {goal!r}")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (isinstance(run_cap, bool) or not isinstance(run_cap, int)
                                or run_cap < 1):
        raise SweepError(f"{where}: run_cap must be an integer >= 1, got {run_cap!r}")
    if method in ("random", "bayes") and run_cap is None:
        raise SweepError(f"{where}: method {method} needs a run_cap (how many runs)")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepError(f"{where}: parameters must be a non-empty mapping")
    params = [_parse_param(key, value, method, where) for key, value in parameters.items()]
    names = [p.name for p in params]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SweepError(f"{where}: parameter(s) given twice under different names: "
                         f"{', '.join(sorted(dupes))}")
    from . import hyperband

    stopper = hyperband.parse(raw.get("early_terminate"), name, where)
    spec = Spec(method, name, goal, params, run_cap, raw,
                stopper.with_goal(goal) if stopper else None)
    _validate_values(spec, where)
    return spec


def _parse_param(key, value, method, where):
    name = ALIASES.get(key, key)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if name not in fields:
        valid = sorted(fields | set(ALIASES))
        raise SweepError(f"{where}: unknown parameter {key!r}; valid: {', '.join(valid)}")
    if not isinstance(value, dict):
        raise SweepError(f"{where}: parameter {key} must be a mapping (values:, value: or "
                         "min:/max:)")
    extra = set(value) - {"values", "value", "min", "max", "distribution", "q", "probabilities",
                          "mu", "sigma"}
    if extra:
        raise SweepError(f"{where}: parameter {key}: unknown key(s) {', '.join(sorted(map(repr, extra)))}")
    if "value" in value:
        return Param(name, "constant", (_coerce(name, value["value"]),))
    if "values" in value:
        values = value["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}: parameter {key}: values must be a non-empty list")
        probs = _probabilities(key, value.get("probabilities"), len(values), where)
        if probs and method == "grid":
            raise SweepError(f"{where}: parameter {key}: probabilities mean nothing to a grid")
        return Param(name, "categorical", tuple(_coerce(name, v) for v in values),
                     probabilities=probs)
    if "probabilities" in value:
        raise SweepError(f"{where}: parameter {key}: probabilities go with values:")
    dist = value.get("distribution")
    if dist is None:
        dist = "int_uniform" if all(isinstance(value.get(k), int) for k in ("min", "max")) \
            else "uniform"
    if dist not in DISTRIBUTIONS or dist in ("constant", "categorical"):
        raise SweepError(f"{where}: parameter {key}: unknown distribution {dist!r} (known: "
                         f"{', '.join(DISTRIBUTIONS[2:])}; constant and categorical are "
                         "written value: and values:)")
    if method == "grid":
        raise SweepError(f"{where}: parameter {key}: method grid needs values:, not a "
                         f"{dist} distribution")
    q = value.get("q", 1.0)
    if isinstance(q, bool) or not isinstance(q, (int, float)) or q <= 0:
        raise SweepError(f"{where}: parameter {key}: q must be > 0, got {q!r}")
    integer = isinstance(getattr(TrainConfig(), name), int)
    if integer and dist not in _INTEGRAL and not (dist.startswith("q_") and float(q).is_integer()):
        raise SweepError(f"{where}: parameter {key} takes whole numbers: use values:, "
                         f"int_uniform or a q_ distribution with a whole q, not {dist}")
    if dist in NORMAL:
        return _parse_normal(key, name, value, dist, q, integer, where)
    if "mu" in value or "sigma" in value:
        raise SweepError(f"{where}: parameter {key}: mu and sigma go with the normal "
                         f"distributions, not {dist}")
    lo, hi = _coerce(name, value.get("min")), _coerce(name, value.get("max"))
    for label, bound in (("min", lo), ("max", hi)):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise SweepError(f"{where}: parameter {key}: {label} must be a number, got {bound!r}")
    if lo > hi:
        raise SweepError(f"{where}: parameter {key}: min {lo} is larger than max {hi}")
    if dist.endswith("_values") and dist != "int_uniform" and "log" in dist and lo <= 0:
        raise SweepError(f"{where}: parameter {key}: {dist} needs min > 0, got {lo}")
    return Param(name, dist, (), lo, hi, q, integer=integer)


def _parse_normal(key, name, value, dist, q, integer, where):
    if "min" in value or "max" in value:
        raise SweepError(f"{where}: parameter {key}: {dist} takes mu and sigma, not min/max")
    mu, sigma = value.get("mu", 0.0), value.get("sigma", 1.0)
    for label, number in (("mu", mu), ("sigma", sigma)):
        if isinstance(number, bool) or not isinstance(number, (int, float)) \
                or not math.isfinite(number):
            raise SweepError(f"{where}: parameter {key}: {label} must be a number, got {number!r}")
    if sigma <= 0:
        raise SweepError(f"{where}: parameter {key}: sigma must be > 0, got {sigma}")
    return Param(name, dist, (), q=q, mu=float(mu), sigma=float(sigma), integer=integer)


def _probabilities(key, probs, n, where):
    if probs is None:
        return ()
    if not isinstance(probs, list) or len(probs) != n or any(
            isinstance(p, bool) or not isinstance(p, (int, float)) or p < 0 for p in probs):
        raise SweepError(f"{where}: parameter {key}: probabilities must be {n} numbers >= 0, "
                         "one per value")
    if abs(sum(probs) - 1.0) > 1e-6:
        raise SweepError(f"{where}: parameter {key}: probabilities must sum to 1, "
                         f"got {sum(probs):g}")
    return tuple(float(p) / sum(probs) for p in probs)


def _coerce(name, value):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: make numeric settings numbers."""
    default = getattr(TrainConfig(), name)
    if isinstance(value, str) and isinstance(default, (int, float)):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def _validate_values(spec, where):
    """Check every listed value (and distribution bound) against TrainConfig's rules."""
    base = TrainConfig()
    for p in spec.params:
        if p.values:
            candidates = list(p.values)
        elif p.distribution in NORMAL:
            # unbounded: check the centre; a draw out of range is a failed run
            candidates = [math.exp(p.mu) if "log" in p.distribution else p.mu]
        elif p.distribution in ("log_uniform", "q_log_uniform"):
            candidates = [math.exp(p.min), math.exp(p.max)]
        elif p.distribution == "inv_log_uniform":
            candidates = [math.exp(-p.max), math.exp(-p.min)]
        else:
            candidates = [p.min, p.max]
        if p.integer:
            candidates = [int(round(c)) for c in candidates]  # noqa: RUF046
        for v in candidates:
            try:
                dataclasses.replace(base, **{p.name: v}).validated()
            except ConfigError as exc:
                raise SweepError(f"{where}: parameter {p.name}: {exc}") from None


def load_spec(path):
    """Read a sweep YAML file with a safe loader and validate it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SweepError(f"{path}: malformed YAML{at}: {problem}") from None
    return parse_spec(raw, where=str(path))
