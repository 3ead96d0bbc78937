"""Sweeps on a Dask cluster (started on 127.0.0.1 only), with a worker killed mid-run."""

import json
import os
import signal

import pytest

from fastnn import sweep
from fastnn.cli import main

distributed = pytest.importorskip("distributed")

SPEC = """
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  dataset: {value: digits}
  epochs: {value: 40}
  num_layers: {value: 1}
  hidden_size: {values: [8, 16, 24]}
  learning_rate: {values: [0.001, 0.01]}
"""


@pytest.fixture
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None,
                                  silence_logs=50) as local:
        yield local


def test_dask_sweep_survives_a_killed_worker_and_records_every_run_once(tmp_path, cluster):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    client = distributed.Client(cluster.scheduler_address, set_as_default=False)
    pids = list(client.run(os.getpid).values())
    client.close()
    killed = []

    def kill_one(record, done, total):
        if not killed:  # the worker that did not just finish is in the middle of a run
            victim = next(pid for pid in pids if pid != record["pid"])
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    records = sweep.run_sweep(sweep.load_spec(path), tmp_path / "r",
                              scheduler=cluster.scheduler_address, on_result=kill_one)
    assert killed
    indices = sorted(r["index"] for r in records)
    assert indices == list(range(6))  # every run once
    lines = (tmp_path / "r" / sweep.RESULTS_FILE).read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(x)["status"] == "finished" for x in lines)
    best = sweep.best_run(records)
    assert (tmp_path / "r" / "runs" / best["run_id"] / "model.npz").is_file()  # sent back
    assert (tmp_path / "r" / "runs" / best["run_id"] / "metrics.csv").is_file()


def test_bayes_and_resume_on_dask(tmp_path, cluster):
    path = tmp_path / "spec.yaml"
    path.write_text("method: bayes\nrun_cap: 4\nparameters:\n  dataset: {value: digits}\n"
                    "  epochs: {value: 2}\n  num_layers: {value: 1}\n"
                    "  learning_rate: {distribution: log_uniform_values, min: 1.0e-4, "
                    "max: 1.0e-1}\n")
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"),
                 "--scheduler", cluster.scheduler_address]) == 0
    assert len(sweep.read_results(tmp_path / "r")) == 4
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"),
                 "--scheduler", cluster.scheduler_address]) == 0
    assert len(sweep.read_results(tmp_path / "r")) == 4  # nothing run twice


def test_unreachable_scheduler_and_hyperband_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    rc = main(["sweep", str(path), "--results", str(tmp_path / "r"),
               "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "cannot reach the Dask scheduler" in err[0]
    path.write_text(SPEC + "early_terminate: {type: hyperband, min_iter: 1}\n")
    rc = main(["sweep", str(path), "--results", str(tmp_path / "r"),
               "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "not supported with --scheduler" in err[-1]


def test_tls_addresses_take_dasks_security_configuration():
    import dask

    from fastnn.sweep import dask_executor

    with pytest.raises(sweep.SweepError, match="needs Dask's TLS settings"):
        dask_executor.connect("tls://127.0.0.1:9", timeout=2)
    files = {"distributed.comm.tls.ca-file": "/nonexistent/ca.pem",
             "distributed.comm.tls.client.cert": "/nonexistent/client.pem",
             "distributed.comm.tls.client.key": "/nonexistent/client.key"}
    with dask.config.set(files), pytest.raises(sweep.SweepError,
                                               match="TLS settings do not load"):
        dask_executor.connect("tls://127.0.0.1:9", timeout=2)
    with pytest.raises(sweep.SweepError, match="must be tcp://HOST:PORT"):
        dask_executor.connect("http://127.0.0.1:8786")
