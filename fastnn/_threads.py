"""How many threads fastnn may use (stdlib only)."""

import os

from .errors import ConfigError

ENV_VAR = "FASTNN_NUM_THREADS"


def available_cpus():
    """CPUs this process may run on (affinity-aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve(threads=None):
    """The thread budget: ``threads`` if given, else ``$FASTNN_NUM_THREADS``,
    else the number of available CPUs.

    Raises
    ------
    ConfigError
        A value that is not an integer >= 1.
    """
    source = "threads"
    if threads is None:
        env = os.environ.get(ENV_VAR)
        if env is None:
            return available_cpus()
        source = ENV_VAR
        try:
            threads = int(env)
        except ValueError:
            raise ConfigError(f"{ENV_VAR} must be an integer >= 1, got {env!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{source} must be an integer >= 1, got {threads!r}")
    return threads
