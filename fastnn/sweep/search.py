"""Searches: which configuration run i of a sweep trains.

A search proposes runs one index at a time. ``grid`` and ``random`` know
every proposal in advance. ``bayes`` (Optuna's TPE sampler, imported only
here and only for it) proposes run i from what the earlier runs scored.

Every proposal is a deterministic function of the sweep seed, the index and
the recorded runs before it, so a killed sweep that resumes proposes the
same runs again. For bayes with W workers, run i is proposed from the
results of runs 0..i-W (the executor waits for them: :meth:`Search.ready`)
while runs i-W+1..i-1 count as pending (Optuna's constant-liar setting keeps
parallel proposals apart): the same seed and worker count give the same
sequence of proposals whatever the timing.
"""

import math

from .spec import NORMAL, SweepError

INSTALL_HINT = 'pip install "fastnn[bayes]"'
# Bayes re-asks TPE (with the next seed) this many times when it proposes a
# configuration that was already run, then draws at random (Optuna's
# RandomSampler, seeded) up to RANDOM_DRAWS times; only then does the space
# count as used up.
RETRIES = 20
RANDOM_DRAWS = 1000


class Search:
    """Base class: ``total`` runs; ``propose(i, ...)`` the values of run i."""

    def __init__(self, spec, seed, workers):
        self.spec, self.seed, self.workers = spec, seed, workers

    @property
    def total(self):
        return len(self._configs)

    def ready(self, index, records):
        """Whether run ``index`` can be proposed now (``records``: index -> record)."""
        return True

    def propose(self, index, records, pending):
        """``(values, extra)`` of run ``index``, or None when the space is used up.

        ``pending`` maps the indices of runs under way to their tasks'
        ``extra``; ``extra`` is stored in the run's record.
        """
        if index >= len(self._configs):
            return None
        return self._configs[index], {}


class GridSearch(Search):
    """Every combination of the ``values`` lists, in order."""

    def __init__(self, spec, seed, workers):
        super().__init__(spec, seed, workers)
        self._configs = spec.configs(seed)


class RandomSearch(GridSearch):
    """``run_cap`` seeded draws, none repeated (see :meth:`Spec.configs`)."""


class BayesSearch(Search):
    """Optuna's TPE sampler, asked and told from the sweep's parent process.

    W&B's distributions map onto Optuna's: ``values`` -> categorical;
    ``uniform``/``int_uniform``/``q_uniform`` -> a float or int range (with
    a step for ``q_``); the log-uniform family -> a log-scaled range, which
    ``q_log_uniform*`` round after sampling. Optuna keeps the unrounded
    value (the record's ``proposal``); the run trains with the rounded one.
    The normal family (unbounded) and ``probabilities`` cannot be expressed
    and are refused. Failed and diverged runs are told as failures; a run
    that hyperband stopped is told its metric at the epoch it stopped.
    """

    def __init__(self, spec, seed, workers):
        super().__init__(spec, seed, workers)
        try:
            import optuna
        except ImportError:
            raise SweepError(f"method bayes needs Optuna: {INSTALL_HINT}") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self._fixed = {p.name: p.values[0] for p in spec.params if p.distribution == "constant"}
        self._swept = [p for p in spec.params if p.distribution != "constant"]
        self._dists = {p.name: _optuna_distribution(optuna, p) for p in self._swept}

    @property
    def total(self):
        return self.spec.run_cap

    def ready(self, index, records):
        return all(i in records for i in range(index - self.workers + 1))

    def propose(self, index, records, pending):
        if index >= self.spec.run_cap:
            return None
        # NOTE: only runs before this one, so that a resumed sweep (which may
        # hold later records) makes the same proposal as the first pass did.
        seen = {_key(r["config"]) for i, r in records.items() if i < index}
        seen |= {_key(extra["config"]) for i, extra in pending.items() if i < index}
        for attempt in range(RETRIES):
            params = self._ask(index, attempt, records, pending)
            values = {**self._fixed, **{p.name: _finish(p, params[p.name]) for p in self._swept}}
            if _key(values) not in seen:
                return values, {"proposal": params, "config": values}
        # TPE keeps returning to what it has run (a small or well-explored
        # space): take an unexplored configuration at random instead.
        sampler = self._optuna.samplers.RandomSampler(seed=self.seed * 1_000_003 + index)
        study = self._optuna.create_study(sampler=sampler)
        for _ in range(RANDOM_DRAWS):
            params = study.ask(self._dists).params
            values = {**self._fixed, **{p.name: _finish(p, params[p.name]) for p in self._swept}}
            if _key(values) not in seen:
                return values, {"proposal": params, "config": values, "random": True}
        return None

    def _ask(self, index, attempt, records, pending):
        optuna = self._optuna
        from optuna.trial import TrialState, create_trial

        direction = "maximize" if self.spec.goal == "maximize" else "minimize"
        sampler = optuna.samplers.TPESampler(seed=(self.seed * 1_000_003 + index) * 31 + attempt,
                                             constant_liar=True)
        study = optuna.create_study(direction=direction, sampler=sampler)
        horizon = index - self.workers  # runs 0..horizon are told; later ones are pending
        for i in sorted(records):
            record = records[i]
            params = record.get("proposal")
            if i >= index or params is None:
                continue
            if i > horizon:
                state, value = TrialState.RUNNING, None
            else:
                value = record.get(self.spec.metric)
                # a run stopped by hyperband is told its metric where it stopped
                ok = record.get("status") in ("finished", "stopped") and value is not None \
                    and math.isfinite(value)
                state = TrialState.COMPLETE if ok else TrialState.FAIL
                value = value if ok else None
            study.add_trial(create_trial(params=params, distributions=self._dists, state=state,
                                         value=value))
        for i, extra in sorted(pending.items()):
            if i < index and i not in records:
                study.add_trial(create_trial(params=extra["proposal"], distributions=self._dists,
                                             state=TrialState.RUNNING))
        return study.ask(self._dists).params


def _key(values):
    """What makes two configurations the same run (the executor adds dataset and seed)."""
    return repr(sorted((k, v) for k, v in values.items() if k not in ("dataset", "seed")))


def _finish(param, value):
    """The value a run trains with: rounded for q_ distributions, int for int settings."""
    if param.distribution.startswith("q_log"):
        value = round(value / param.q) * param.q
    if param.integer:
        return int(round(value))  # noqa: RUF046 - numpy scalars
    return float(value) if isinstance(value, float) else value


def _optuna_distribution(optuna, p):
    d = optuna.distributions
    if p.distribution == "categorical":
        if p.probabilities:
            raise SweepError(f"parameter {p.name}: probabilities cannot be expressed for method "
                             "bayes (TPE chooses the values); drop them or use method random")
        return d.CategoricalDistribution(list(p.values))
    if p.distribution in NORMAL:
        raise SweepError(f"parameter {p.name}: the {p.distribution} distribution has no bounds, "
                         "which method bayes (TPE) needs; use uniform or log_uniform_values")
    lo, hi = p.min, p.max
    if p.distribution in ("log_uniform", "q_log_uniform"):
        lo, hi = math.exp(p.min), math.exp(p.max)
    elif p.distribution == "inv_log_uniform":
        lo, hi = math.exp(-p.max), math.exp(-p.min)
    if p.distribution == "int_uniform":
        return d.IntDistribution(int(lo), int(hi))
    if p.distribution == "q_uniform":
        if p.integer:
            return d.IntDistribution(int(lo), int(hi), step=int(p.q))
        steps = math.floor((hi - lo) / p.q + 1e-9)
        return d.FloatDistribution(lo, lo + steps * p.q, step=p.q)
    if p.distribution == "uniform":
        return d.FloatDistribution(lo, hi)
    return d.FloatDistribution(lo, hi, log=True)  # the log-uniform family


SEARCHES = {"grid": GridSearch, "random": RandomSearch, "bayes": BayesSearch}


def make(spec, seed, workers):
    """The search of ``spec.method``."""
    return SEARCHES[spec.method](spec, seed, workers)
