"""The Dask executor: every run a Dask task, on ``dask worker`` processes anywhere.

``fastnn sweep SPEC --scheduler tcp://HOST:8786`` submits each run to a Dask
scheduler that the user started (``dask scheduler`` on one machine, ``dask
worker tcp://HOST:8786 --nthreads 1 --nworkers N`` on each). The sweep's
parent process stays the only writer of ``results.jsonl`` and of the kept
models: a worker sends its record back with the model's bytes (so no shared
file system is needed). Each worker loads the data set once, from its own
machine (``--data-dir`` as given, then ``FASTNN_DATA`` and the rest of the
search order of ``fastnn train``). A worker killed in the middle of a run:
Dask runs the task again on another worker (up to its ``allowed-failures``),
and the run is recorded once, when a result comes back. Every task has a
unique key (``pure=False``), so identical configurations never merge.

A Dask scheduler runs whatever code its clients send: keep it on a private
network, or use ``tls://`` addresses, which take Dask's own security
configuration (``distributed.comm.tls.*`` in the Dask config).
"""

import shutil
import tempfile
import uuid
from pathlib import Path

from .._atomic import atomic_write_bytes
from .results import run_folder
from .spec import SweepError

INSTALL_HINT = 'pip install "fastnn[dask]"'


def connect(address, timeout=10):
    """A ``distributed.Client`` of the scheduler at ``address``.

    Raises
    ------
    SweepError
        Dask's distributed is not installed (the message names the extra), or
        the scheduler cannot be reached.
    """
    try:
        from distributed import Client
        from distributed.security import Security
    except ImportError:
        raise SweepError(f"--scheduler needs Dask's distributed: {INSTALL_HINT}") from None
    scheme, _, rest = str(address).partition("://")
    if scheme not in ("tcp", "tls") or not rest:
        raise SweepError(f"--scheduler must be tcp://HOST:PORT or tls://HOST:PORT, got {address!r}")
    kwargs = {}
    if scheme == "tls":
        # Dask's own security settings (distributed.comm.tls.* in the Dask config)
        try:
            security = Security()
            context = security.get_connection_args("client").get("ssl_context")
        except (OSError, ValueError, TypeError) as exc:
            raise SweepError(f"{address}: Dask's TLS settings do not load ({exc})") from None
        if context is None:
            raise SweepError(f"{address}: tls:// needs Dask's TLS settings (distributed.comm.tls."
                             "ca-file, client.cert and client.key in the Dask config)")
        kwargs["security"] = security
    _probe(address, rest, timeout)
    try:
        return Client(address, timeout=timeout, set_as_default=False, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is one message
        raise SweepError(f"cannot reach the Dask scheduler at {address} ({exc})") from None


def _probe(address, host_port, timeout):
    """Fail fast (and quietly) when nothing listens at the address."""
    import socket

    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise SweepError(f"cannot reach the Dask scheduler at {address} ({exc})") from None


class DaskPool:
    """What the scheduler loop needs of a process pool, on a Dask cluster."""

    def __init__(self, client, worker_args, results_dir):
        self.client, self.worker_args = client, worker_args
        self.results_dir = results_dir
        self.futures = set()

    def submit(self, task, done):
        """Run ``task`` on the cluster; ``done(record)`` is called when it ends."""
        future = self.client.submit(_dask_run, task, self.worker_args,
                                    key=f"fastnn-run-{task[1]}-{uuid.uuid4().hex}", pure=False)
        self.futures.add(future)
        future.add_done_callback(lambda f: done(self._record(f, task)))

    @staticmethod
    def record(record):
        """The record as :meth:`submit` delivered it (already one)."""
        return record

    def _record(self, future, task):
        self.futures.discard(future)
        try:
            record, files = future.result()
        except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the run is recorded failed
            index, rid, values, seed, extra = task
            return {"run_id": rid, "index": index, "config": values, "seed": seed,
                    "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                    "wall_time": 0.0, **extra}
        folder = run_folder(self.results_dir, record["run_id"])
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            atomic_write_bytes(folder / name, data)
        return record

    def shutdown(self, kill=False):
        """Close the client; with ``kill``, cancel the runs still queued or running first."""
        if kill:
            for future in list(self.futures):
                future.cancel()
        self.client.close()


# What every run on this Dask worker process shares, loaded once (see _dask_run).
_STATE = {}


def _dask_run(task, worker_args):
    """Run one task on a Dask worker; return (record, {file name: bytes} of its run folder)."""
    from .. import datasets
    from . import local

    dataset, data_dir, dtype, val_fraction, seed, kernels, wandb, reading = worker_args
    key = (dataset, data_dir, dtype, val_fraction, seed, tuple(sorted(reading.items())))
    if _STATE.get("dask_key") != key:  # load the data once per worker process
        split = datasets.prepare(dataset, data_dir=data_dir if data_dir and
                                 Path(data_dir).exists() else None, dtype=dtype,
                                 val_fraction=val_fraction, seed=seed, download=False,
                                 **reading)
        scratch = tempfile.mkdtemp(prefix="fastnn-dask-")
        _STATE.update(split=split, threads=1, data=dataset, wandb=wandb,
                      results_dir=scratch, kernels=kernels, early=None, dask_key=key)
    record = local._run_one(task, _STATE)
    folder = run_folder(_STATE["results_dir"], record["run_id"])
    files = {}
    if folder.is_dir():
        for path in folder.iterdir():
            files[path.name] = path.read_bytes()
        shutil.rmtree(folder, ignore_errors=True)
    return record, files
