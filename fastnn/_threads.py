"""How many threads fastnn may use (the stdlib, and threadpoolctl when asked)."""

import os

from .errors import ConfigError

ENV_VAR = "FASTNN_NUM_THREADS"


def available_cpus():
    """CPUs this process may run on (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def blas_limit():
    """The threads NumPy's BLAS may use now (a ``threadpool_limits`` in force lowers it),
    or None when threadpoolctl cannot tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    counts = [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return min(counts) if counts else None


def resolve(threads=None):
    """The thread budget: ``threads`` if given, else ``$FASTNN_NUM_THREADS``,
    else the number of available CPUs, but no more than BLAS is allowed now
    (inside ``threadpoolctl.threadpool_limits(1)``, as a joblib worker of
    ``GridSearchCV(n_jobs=2)`` runs, that is 1).

    Raises
    ------
    ConfigError
        A value that is not an integer >= 1.
    """
    source = "threads"
    if threads is None:
        env = os.environ.get(ENV_VAR)
        if env is None:
            cpus, limit = available_cpus(), blas_limit()
            return min(cpus, limit) if limit else cpus
        source = ENV_VAR
        try:
            threads = int(env)
        except ValueError:
            raise ConfigError(f"{ENV_VAR} must be an integer >= 1, got {env!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{source} must be an integer >= 1, got {threads!r}")
    return threads
