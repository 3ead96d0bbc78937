"""The team benchmarks' own code, run once as plain tests (bench/compare.py, bench/team_levers.py)."""

import numpy as np
import pytest

import fastnn
from bench import compare, team_levers
from bench.common import layer_sizes

pytestmark = pytest.mark.skipif(not fastnn._jit.numba_available(),
                                reason='numba not installed (fastnn[fast])')


@pytest.mark.parametrize("columns_width", [10 ** 9, 0])
def test_the_teams_products_are_the_steps_products(monkeypatch, columns_width):
    # the products the step/products ratio divides by: computed for real, by rows or columns
    monkeypatch.setattr(fastnn.step, "COLUMN_SPLIT_WIDTH", columns_width)
    net = fastnn.Network([20, 12, 8, 4], seed=0, kernels="numba")
    rng = np.random.default_rng(0)
    batch = 10
    acts = [rng.random((batch, s), dtype=np.float32) for s in net.layer_sizes]
    outs = [np.zeros_like(a) for a in acts]
    Ws = [np.ascontiguousarray(W) for W in net.params[0::2]]
    dWs = [np.zeros_like(W) for W in Ws]
    inputs = [a.copy() for a in acts]
    team = compare.products_team(net, batch, 2, acts, Ws, outs, dWs)
    try:
        team.run()
    finally:
        team.close()
    chain = [inputs[0]]
    for W in Ws:  # the forward products overwrite each layer's input with the chain
        chain.append(chain[-1] @ W)
    for i, W in enumerate(Ws):
        np.testing.assert_allclose(acts[i + 1], chain[i + 1], rtol=1e-5)
        np.testing.assert_allclose(dWs[i], chain[i].T @ chain[i + 1], rtol=1e-4)
        if i:
            np.testing.assert_allclose(outs[i], chain[i + 1] @ W.T, rtol=1e-4)


def test_step_vs_products_times_the_team_step():
    step_s, products_s = compare.step_vs_products(16, 16, "numba")
    assert 0 < products_s and 0 < step_s


@pytest.mark.parametrize("way", team_levers.WAYS)
def test_team_levers_trains_each_way(way):
    rng = np.random.default_rng(0)
    X = rng.random((64, 784), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    assert team_levers.rate(16, 16, X, y, way, 0) > 0
    assert len(layer_sizes(16)) == 5


def test_profile_wide_measures_the_team_step(monkeypatch):
    from bench import profile_wide

    monkeypatch.setattr(profile_wide, "WIDTH", 16)
    monkeypatch.setattr(profile_wide, "_best", lambda fn, repeat, rounds=5: (fn(), 1.0)[1])
    rng = np.random.default_rng(0)
    X = rng.random((128, 784), dtype=np.float32)
    y = rng.integers(0, 10, 128).astype(np.intp)
    found = profile_wide.fastnn_steps(X, y)
    assert len(found) == 3 and all(v >= 0 for v in found.values())
