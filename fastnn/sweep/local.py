"""The local executor: runs in worker processes, results written by the parent.

The workers are a :class:`concurrent.futures.ProcessPoolExecutor` (fork
start method where there is one, so the data set is shared, not copied)
wrapped in :class:`LocalPool`, which is what the scheduling loop needs of
any executor (the Dask one is :class:`fastnn.sweep.dask_executor.DaskPool`):
``submit(task, done)`` and ``shutdown(kill)``. Each worker reports its pid
when it starts, so that an interrupted sweep can end its workers at once
(``os.kill``), with no private attribute of the standard library.
"""

import contextlib
import dataclasses
import json
import os
import queue
import signal
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from .. import _jit, _threads
from ..config import TrainConfig
from ..errors import TrainingDivergedError
from ..train import Callback
from . import search as searches
from .results import (
    RESULTS_FILE,
    _check_results_dir,
    _drop_torn_tail,
    _json_default,
    _keep_top_models,
    read_results,
    run_folder,
    run_id,
)
from .spec import SweepError

# Worker state: set once per worker process by _init_worker (in the worker).
_WORKER = {}


def _exit_quietly(signum, frame):
    raise SystemExit(128 + signum)


def _init_worker(pids, split, threads, data_desc, wandb_opts, results_dir, kernels="numpy",
                 early=None):
    pids.put(os.getpid())  # for LocalPool.shutdown(kill=True)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    # The parent's SIGTERM handler (fastnn sweep: `kill` stops like Ctrl-C) is
    # inherited through fork, and it raises KeyboardInterrupt, which a
    # worker prints as a traceback. `kill` may reach the whole process group:
    # exit quietly instead (the parent ends the pool itself).
    signal.signal(signal.SIGTERM, _exit_quietly)
    os.environ[_threads.ENV_VAR] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover
        pass
    _WORKER.update(split=split, threads=threads, data=data_desc, wandb=wandb_opts,
                   results_dir=results_dir, kernels=kernels, early=early)


class _Reporter(Callback):
    """Worker side of early termination: report every epoch's metric to the
    parent; at a bracket epoch wait for its verdict (``verdicts[index]`` set
    to +epoch to go on, -epoch to stop)."""

    def __init__(self, index, early):
        self.index = index
        self.metric, self.brackets, self.reports, self.verdicts = early
        self.stopped = False

    def on_epoch_end(self, epoch, logs):
        self.reports.put((self.index, epoch, float(logs[self.metric])))
        if epoch not in self.brackets:
            return False
        while abs(self.verdicts[self.index]) != epoch:
            time.sleep(0.001)
        self.stopped = self.verdicts[self.index] < 0
        return self.stopped


def _run_one(task, worker=None):
    """Train one configuration; return its result record (never raises).

    ``worker`` holds what every run of the sweep shares (the split, threads,
    kernels, W&B options, where models go); default: this worker process's
    state, set by :func:`_init_worker`.
    """
    from .. import runs
    from ..trainer import Trainer

    worker = _WORKER if worker is None else worker
    index, rid, values, seed, extra = task
    split = worker["split"]
    record = {"run_id": rid, "index": index, "config": values, "seed": seed,
              "status": "failed", "pid": os.getpid(), "started": time.time(), **extra}
    start = time.perf_counter()
    wandb_run = files = None
    folder = run_folder(worker["results_dir"], rid)
    try:
        config = dataclasses.replace(TrainConfig(**values), seed=seed).validated()
        trainer = Trainer(config, split, threads=worker["threads"], kernels=worker.get("kernels"))
        files = runs.RunFiles(folder, config, trainer.optimizer,
                              f"sweep run {rid}: {trainer.net!r}, {trainer.optimizer!r}")
        callbacks = [files]
        if worker["wandb"]:
            from ..wandb_log import WandbCallback, run_name

            opts = worker["wandb"]
            wandb_run = WandbCallback(opts["project"], opts.get("entity"),
                                      config=config.to_dict(), name=run_name(config),
                                      group=opts.get("group"))
            callbacks.append(wandb_run)
        reporter = None
        if worker.get("early") is not None:
            reporter = _Reporter(index, worker["early"])
            callbacks.append(reporter)
        trainer.fit(callbacks)
        net, history = trainer.net, trainer.history
        test_loss, test_acc = net.evaluate(split.X_test, split.y_test)
        # the network trained (with keep_best or early stopping, the weights of
        # its best epoch, not of its last): its validation and test scores
        val_loss, val_acc = net.evaluate(split.X_val, split.y_val)
        stopped = reporter is not None and reporter.stopped
        record.update(status="stopped" if stopped else "finished", history=history.to_dict(),
                      n_train=len(split.X_train), n_val=len(split.X_val),
                      val_accuracy=val_acc, val_loss=val_loss,
                      accuracy=history["accuracy"][-1], loss=history["loss"][-1],
                      test_accuracy=test_acc, test_loss=test_loss)
        files.log(f"stopped early by hyperband after epoch {history.epoch[-1]}" if stopped
                  else f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}")
        if not stopped:  # a stopped run is never among the best: no model kept
            trainer.save(folder / runs.MODEL, run_id=rid, test_accuracy=test_acc)
        if wandb_run is not None:
            wandb_run.finish({"test_accuracy": test_acc, "val_accuracy": record["val_accuracy"]})
    except Exception as exc:  # noqa: BLE001 - any failure is recorded; the sweep goes on
        record.update(status="diverged" if isinstance(exc, TrainingDivergedError)
                      else "failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=3))
        if files is not None:
            with contextlib.suppress(OSError):
                files.log(f"{record['status']}: {record['error']}")
        if wandb_run is not None:
            with contextlib.suppress(Exception):
                wandb_run.finish({"status": record["status"]})
    record["wall_time"] = time.perf_counter() - start
    return record


def run_sweep(spec, results_dir, *, dataset=None, data_dir=None, workers=None, seed=0,
              val_fraction=0.1, wandb=None, on_result=None, kernels=None, retry_failed=False,
              scheduler=None):
    """Run (or resume) a sweep; return the list of all run records.

    Parameters
    ----------
    spec : Spec
    results_dir : path
        Holds ``results.jsonl``, ``sweep.json`` and the models of the best runs.
    dataset : str, optional
        Data set of every run unless the spec sets ``dataset`` (one value).
    val_fraction : float
        Share of the training set held out for validation, the same split
        for every run, unless the spec sets ``val_fraction`` (one value).
    workers : int, optional
        Worker processes (default: the available CPUs); BLAS threads are
        divided among them.
    seed : int
        Seed of the random sampling and of the validation split; run i
        trains with seed ``seed + i`` unless ``seed`` is swept.
    wandb : dict, optional
        ``{"project": ..., "entity": ...}`` to log each run to W&B.
    on_result : callable, optional
        Called with each new record as it arrives (for progress output).
    kernels : {'auto', 'numba', 'numpy'}, optional
        Kernel set of every run (default ``$FASTNN_KERNELS`` or ``auto``);
        checked here, before any run starts. Workers load compiled kernels
        from the shared disk cache.
    retry_failed : bool
        Run again the recorded runs whose status is ``failed`` (an error,
        not a divergence); the new record is appended and supersedes the
        old one (see :func:`read_results`).
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://HOST:8786``, ``tls://...``):
        the runs go to its workers instead of local processes (see
        :mod:`fastnn.sweep.dask_executor`); ``workers`` defaults to the
        cluster's worker threads.
    """

    kernels = _jit.resolve(kernels)
    # settings of the data every run shares: one value, which then takes effect
    dataset = _one_value(spec, "dataset", "a sweep trains on one data set") or dataset \
        or "fashion_mnist"
    dtypes = {_one_value(spec, "dtype", "a sweep runs in one dtype")} - {None}
    val_fraction = _one_value(spec, "val_fraction", "every run of a sweep validates on the "
                                                    "same split") or val_fraction
    # how a data file is read, the same for every run
    reading = {name: value for name in ("target", "test_fraction", "image_size")
               if (value := _one_value(spec, name, "every run of a sweep reads the data "
                                                   "the same way")) is not None}
    n_cpus = _threads.available_cpus()
    client = None
    if scheduler is not None:
        from . import dask_executor

        if spec.hyperband is not None:
            raise SweepError("early_terminate is not supported with --scheduler yet: run the "
                             "sweep locally, or drop early_terminate")
        client = dask_executor.connect(scheduler)
        workers = workers or max(1, sum(client.nthreads().values()))
    workers = workers or n_cpus
    try:
        search = searches.make(spec, seed, workers)  # checks what the search needs, first
        return _run(spec, search, results_dir, client, (dataset, reading), data_dir, workers,
                    seed, val_fraction, wandb, on_result, kernels, retry_failed, n_cpus, dtypes)
    finally:
        if client is not None:
            client.close()


def _one_value(spec, name, why):
    """The one value the spec gives setting ``name`` (None when it is not swept)."""
    for p in spec.params:
        if p.name == name:
            if p.distribution not in ("constant", "categorical") or len(p.values) != 1:
                raise SweepError(f"{why}: give {name} one value")
            return p.values[0]
    return None


def _run(spec, search, results_dir, client, data, data_dir, workers, seed, val_fraction,
         wandb, on_result, kernels, retry_failed, n_cpus, dtypes):
    from .. import datasets

    dataset, reading = data
    results_dir = _check_results_dir(results_dir, spec, seed, dataset)
    records = read_results(results_dir)
    recorded = {r["index"]: r for r in records if "index" in r
                and not (retry_failed and r.get("status") == "failed")}
    if all(i in recorded for i in range(search.total)):
        return records

    dtype = dtypes.pop() if dtypes else "float32"
    results_path = results_dir / RESULTS_FILE
    _drop_torn_tail(results_path)
    if client is not None:
        from .dask_executor import DaskPool

        pool = DaskPool(client, (dataset, None if data_dir is None else str(data_dir), dtype,
                                 val_fraction, seed, kernels, wandb, reading), results_dir)
        return _record_all(pool, spec, search, recorded, records, results_dir, workers, dataset,
                           seed, on_result)
    split = datasets.prepare(dataset, data_dir=data_dir, dtype=dtype,
                             val_fraction=val_fraction, seed=seed, **reading)
    workers = min(workers, search.total - len(recorded))
    threads = max(1, n_cpus // workers)

    import multiprocessing as mp

    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    early = stopper = None
    if spec.hyperband is not None:
        from .hyperband import Hyperband

        rule = spec.hyperband  # a fresh copy: the spec may be run more than once
        stopper = Hyperband(rule.brackets, rule.eta, rule.goal)
        stopper.replay(records, spec.metric)
        early = (spec.metric, frozenset(stopper.brackets), ctx.Queue(),
                 ctx.Array("l", search.total, lock=False))
    pool = LocalPool(ctx, workers, (split, threads, dataset, wandb, str(results_dir), kernels,
                                    early))
    return _record_all(pool, spec, search, recorded, records, results_dir, workers, dataset,
                       seed, on_result, stopper, early)


class LocalPool:
    """Worker processes on this machine, as the scheduling loop uses them."""

    def __init__(self, ctx, workers, worker_args):
        self._pids = ctx.Queue()
        self._executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self._pids, *worker_args))

    def submit(self, task, done):
        """Run ``task`` in a worker; ``done(future)`` is called when it ends."""
        self._executor.submit(_run_one, task).add_done_callback(done)

    @staticmethod
    def record(future):
        """The record of a finished run (a worker that died is a SweepError)."""
        try:
            return future.result()
        except BrokenProcessPool:
            raise SweepError("a worker process died (killed, or out of memory?): run the same "
                             "command again to resume the sweep") from None

    def shutdown(self, kill=False):
        """Wait for the workers to finish, or (``kill``) end them now."""
        if kill:
            while True:
                try:
                    pid = self._pids.get_nowait()
                except queue.Empty:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._executor.shutdown(wait=True, cancel_futures=kill)


def _record_all(pool, spec, search, recorded, records, results_dir, workers, dataset, seed,
                on_result, stopper=None, early=None):
    """Run the sweep on ``pool``; append every record to results.jsonl as it arrives."""
    results_path = Path(results_dir) / RESULTS_FILE
    try:
        with open(results_path, "ab") as out:
            for record in _schedule(pool, search, recorded, workers, dataset, seed,
                                    stopper, early):
                line = json.dumps(record, default=_json_default).encode() + b"\n"
                out.write(line)
                out.flush()
                os.fsync(out.fileno())
                records.append(record)
                _keep_top_models(results_dir, records, spec)
                if on_result is not None:
                    on_result(record, len(recorded), search.total)
    except BaseException:
        pool.shutdown(kill=True)
        raise
    pool.shutdown()
    return read_results(results_dir)


def _schedule(pool, search, recorded, workers, dataset, seed, stopper=None, early=None):
    """Keep ``workers`` runs going; yield each record as it arrives (in the parent).

    Runs are proposed in index order; an index already in ``recorded`` is
    skipped (resuming). ``recorded`` is updated as records arrive. With
    early termination, the workers' per-epoch reports are answered here.
    """
    inbox = queue.Queue()
    in_flight = {}  # index -> extra of its proposal
    index = 0
    total = search.total
    while True:
        while len(in_flight) < workers:
            while index < total and index in recorded:
                index += 1
            if index >= total or not search.ready(index, recorded):
                break
            proposal = search.propose(index, recorded, in_flight)
            if proposal is None:  # the space is used up
                total = index
                break
            values, extra = proposal
            values = {**values, "dataset": dataset}
            run_seed = int(values.pop("seed", seed + index))
            task = (index, run_id(index, {**values, "seed": run_seed}), values, run_seed,
                    {k: v for k, v in extra.items() if k != "config"})
            pool.submit(task, inbox.put)
            in_flight[index] = extra
            index += 1
        if not in_flight:
            return
        while True:
            if early is not None:
                _answer_reports(stopper, early)
            try:
                # a timeout keeps Ctrl-C (and the reports) responsive
                record = pool.record(inbox.get(timeout=0.01 if early is not None else 0.2))
                break
            except queue.Empty:
                continue
        in_flight.pop(record["index"], None)
        recorded[record["index"]] = record
        yield record


def _answer_reports(stopper, early):
    """Give every pending bracket report its verdict (see hyperband.py)."""
    _, brackets, reports, verdicts = early
    while True:
        try:
            index, epoch, value = reports.get_nowait()
        except queue.Empty:
            return
        if epoch in brackets:
            verdicts[index] = -epoch if stopper.decide(index, epoch, value) else epoch
