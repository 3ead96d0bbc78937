"""The compiled step split between a team of threads (fastnn._team) against the step on one."""

import multiprocessing
import threading

import numpy as np
import pytest
from conftest import needs_numba

import fastnn
from fastnn import _jit, _team, optimizers
from fastnn._jit import fused
from fastnn._team import barrier
from fastnn.train import blas_threads

pytestmark = needs_numba


def _data(n=300, features=36, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, features), dtype=np.float32),
            rng.integers(0, classes, n).astype(np.intp))


def _run(threads, optimizer="adam", batch=32, epochs=2, fit_kw=None, **net_kw):
    X, y = _data()
    net = fastnn.Network([36, 24, 16, 4], seed=3, kernels="numba", **net_kw)
    opt = optimizers.get(optimizer, net.params, kernels="numba", threads=1)
    history = fastnn.fit(net, opt, X, y, epochs=epochs, batch_size=batch, seed=1,
                         threads=threads, **(fit_kw or {}))
    return net, opt, history


def _team_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fastnn-team")]


@pytest.mark.parametrize("optimizer", list(optimizers.OPTIMIZERS))
def test_a_team_of_two_trains_as_one_thread_does_to_rounding(optimizer):
    one, two = _run(1, optimizer), _run(2, optimizer)
    np.testing.assert_allclose(two[0].params.flat, one[0].params.flat, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(two[2]["loss"], one[2]["loss"], rtol=1e-5)
    assert two[1].t == one[1].t


@pytest.mark.parametrize("threads", [2, 3])
def test_a_team_gives_the_same_bits_every_time_for_the_same_size(threads):
    # three threads on a two-core machine: oversubscribed, still correct
    kw = {"dropout": 0.2, "weight_decay": 1e-3, "activation": "tanh"}
    a, b = _run(threads, "nadam", **kw), _run(threads, "nadam", **kw)
    np.testing.assert_array_equal(a[0].params.flat, b[0].params.flat)
    assert a[2]["loss"] == b[2]["loss"]
    one = _run(1, "nadam", **kw)
    np.testing.assert_allclose(a[0].params.flat, one[0].params.flat, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_products_split_by_columns_train_as_one_thread_does(monkeypatch, dropout):
    # wide layers with few rows a thread split each product by its columns
    import fastnn.step

    monkeypatch.setattr(fastnn.step, "COLUMN_SPLIT_WIDTH", 1)
    monkeypatch.setattr(fastnn.step, "COLUMN_SPLIT_RATIO", 1)
    seen = []
    original = fastnn.step.CompiledStep._bind

    def spy(self):
        original(self)
        seen.append(int(self._record[0]["columns"]))

    monkeypatch.setattr(fastnn.step.CompiledStep, "_bind", spy)
    kw = {"dropout": dropout, "weight_decay": 1e-3}
    one, two = _run(1, "adam", **kw), _run(2, "adam", **kw)
    assert seen == [0, 1]
    np.testing.assert_allclose(two[0].params.flat, one[0].params.flat, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(two[2]["loss"], one[2]["loss"], rtol=1e-5)
    again = _run(2, "adam", **kw)
    np.testing.assert_array_equal(again[0].params.flat, two[0].params.flat)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_short_last_batch_augmentation_and_mixup_split_as_well(threads, mixup):
    X, y = _data(features=64)
    results = []
    for size in (1, threads):
        net = fastnn.Network([64, 16, 4], seed=0, kernels="numba")
        opt = optimizers.get("momentum", net.params, kernels="numba", threads=1)
        aug = fastnn.augment.Augmentation(shift=1, flip=True, image_shape=(8, 8), mixup=mixup)
        history = fastnn.fit(net, opt, X, y, epochs=2, batch_size=64, seed=2, threads=size,
                             features=[aug])
        results.append((net.params.flat.copy(), history["loss"]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5)


def test_fit_splits_the_step_only_when_it_can(monkeypatch):
    made = []
    original = fastnn.Network.compiled_step

    def spy(self, *args, **kwargs):
        step = original(self, *args, **kwargs)
        made.append(step.threads)
        return step

    monkeypatch.setattr(fastnn.Network, "compiled_step", spy)
    _run(2)
    _run(1)
    _run(2, fit_kw={"clip_norm": 0.1})  # the global norm: one thread
    _run(2, fit_kw={"features": [fastnn.augment.Augmentation(mixup=0.2)]})
    assert made == [2, 1, 1, 2]


def test_fit_stops_its_workers():
    before = len(_team_threads())
    _run(2)
    assert len(_team_threads()) == before


def test_a_non_finite_loss_in_a_team_changes_nothing():
    X, y = _data()
    X[:] = np.inf
    net = fastnn.Network([36, 24, 4], seed=0, kernels="numba")
    opt = optimizers.get("adam", net.params, kernels="numba", threads=1)
    step = net.compiled_step(opt, X, y, 32, threads=2)
    before = net.params.flat.copy()
    try:
        with blas_threads(1):
            loss, _ = step(np.arange(32))
    finally:
        step.close()
    assert not np.isfinite(loss)
    np.testing.assert_array_equal(net.params.flat, before)
    assert opt.t == 0


def test_settings_changed_between_steps_reach_every_thread():
    X, y = _data()
    results = []
    for threads in (1, 2):
        net = fastnn.Network([36, 24, 4], seed=0, kernels="numba")
        opt = optimizers.get("sgd", net.params, kernels="numba", threads=1)
        step = net.compiled_step(opt, X, y, 32, threads=threads)
        with blas_threads(1):
            step(np.arange(32))
            net.weight_decay = 0.5
            step(np.arange(32, 64))
        step.close()
        results.append(net.params.flat.copy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-7)
    # and the change mattered
    net = fastnn.Network([36, 24, 4], seed=0, kernels="numba")
    opt = optimizers.get("sgd", net.params, kernels="numba", threads=1)
    step = net.compiled_step(opt, X, y, 32, threads=2)
    with blas_threads(1):
        step(np.arange(32))
        step(np.arange(32, 64))
    step.close()
    assert not np.allclose(net.params.flat, results[1])


@fused(None)
def _count_work(tid, size, ctl, hits, order):
    """Each thread counts its runs; after a barrier thread 0 checks every thread has run."""
    hits[tid] += 1
    barrier(ctl, tid, size)
    if tid == 0:
        total = 0
        for i in range(size):
            total += hits[i]
        order[0] = total


def _count_team(size):
    hits, order = np.zeros(size, np.int64), np.zeros(1, np.int64)
    args = (hits, order)
    ctl = _team.control_block(size)
    lead = _jit.specialized(_team.lead, (True, ctl, size, args), _work=_count_work)
    loop = _jit.specialized(_team._loop, (1, size, ctl, args), _work=_count_work)
    return _team.Team(size, lead, loop, args), hits, order


def test_every_run_waits_for_every_thread_and_workers_wake_from_sleep():
    team, hits, order = _count_team(3)
    try:
        for run in range(1, 201):
            team.run()
            assert order[0] == 3 * run  # the barrier saw every thread's count
        # idle long enough for the workers to go to sleep, then run again
        for _ in range(3):
            threading.Event().wait(0.3)
            team.run()
        np.testing.assert_array_equal(hits, [203, 203, 203])
    finally:
        team.close()
    assert not any(t.is_alive() for t in team._threads)


def _child_runs(team, hits, queue):
    team.run()
    queue.put(int(hits.sum()))


def test_a_forked_child_starts_its_own_workers():
    team, hits, _ = _count_team(2)
    try:
        team.run()
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_runs, args=(team, hits, queue))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        assert queue.get(timeout=5) == 4  # two runs on each of two threads
    finally:
        team.close()
