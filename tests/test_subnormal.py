"""State that decays geometrically never holds a subnormal float (fastnn._subnormal).

Each test trains on data whose first features turn zero in every row, so
the weights fed by them get a gradient of exactly zero and their optimizer
state decays by a constant factor at every step, through the subnormal
range; every step is checked, since an unflushed value would pass through
that range and then underflow to zero anyway.
"""

import numpy as np
import pytest
from conftest import needs_numba

import fastnn
from fastnn import _subnormal, optimizers
from fastnn.average import WeightAverage
from fastnn.train import make_step

KERNELS = [pytest.param("numba", marks=needs_numba), "numpy"]
STATEFUL = [name for name, cls in optimizers.OPTIMIZERS.items() if cls._state_names]
# Fast decay (factor 0.5 a step), so that float64 state reaches its
# subnormal range (below 2.2e-308) within about 1,100 steps.
FAST_DECAY = {"lr": 1e-2, "momentum": 0.5, "beta": 0.5, "beta1": 0.5, "beta2": 0.5}
STEPS = {"float32": 200, "float64": 1100}
N_ZEROED = 4  # features 0..3 become zero in every row


def _subnormals(a):
    return int(np.count_nonzero((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))


def _age(optimizer, kernels, dtype, steps, compiled=True, **hyper):
    """Train (8-6-3, batch 16) a few steps on all features, then ``steps`` with some zeroed.

    Returns the network, the optimizer and the most subnormal entries any
    state array held after any step.
    """
    rng = np.random.default_rng(0)
    X = (rng.random((64, 8)) + 0.5).astype(dtype)
    y = rng.integers(0, 3, 64).astype(np.intp)
    # tanh: no unit is dead, so every weight has had a non-zero gradient
    net = fastnn.Network([8, 6, 3], activation="tanh", dtype=dtype, seed=0, kernels=kernels)
    opt = optimizers.get(optimizer, net.params, kernels=kernels, threads=1, **hyper)
    if not compiled:
        net.compiled_step = lambda *args, **kwargs: None  # the Python step
    step, _ = make_step(net, opt, X, y, 16, threads=1)  # bit for bit: no team (test_team.py)
    idx = np.arange(16)
    for _ in range(3):
        step(idx)
    states = [s[0] for s in opt.state.values()]
    # the state of W1's rows fed by the features about to be zeroed is non-zero now
    assert all(np.count_nonzero(s[:N_ZEROED * 6]) == N_ZEROED * 6 for s in states)
    X[:, :N_ZEROED] = 0  # step() gathers from X: from now on their gradient is exactly 0
    worst = 0
    for _ in range(steps):
        step(idx)
        worst = max([worst] + [_subnormals(s) for s in states])
    return net, opt, worst


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("optimizer", STATEFUL)
def test_optimizer_state_never_holds_a_subnormal(optimizer, kernels, dtype):
    net, opt, worst = _age(optimizer, kernels, dtype, STEPS[dtype], **FAST_DECAY)
    assert worst == 0
    # ... and the decayed entries were flushed to zero, not left to shrink
    for s in opt.state.values():
        assert not np.any(s[0][:N_ZEROED * 6])
        assert s[0].dtype == net.dtype  # no upcasting by the flush
    assert np.isfinite(net.params.flat).all()


@pytest.mark.parametrize("kernels", KERNELS)
def test_adam_with_its_default_betas_never_holds_a_subnormal(kernels):
    # m decays by beta1 = 0.9 a step: below 1.18e-38 after about 800 steps
    _, opt, worst = _age("adam", kernels, "float32", 1000)
    assert worst == 0
    assert not np.any(opt.state["m"][0][:N_ZEROED * 6])


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", STATEFUL)
def test_flushing_keeps_the_compiled_step_equal_to_the_python_step(optimizer, dtype):
    steps = STEPS[dtype]
    net_c, opt_c, _ = _age(optimizer, "numba", dtype, steps, compiled=True, **FAST_DECAY)
    net_p, opt_p, _ = _age(optimizer, "numba", dtype, steps, compiled=False, **FAST_DECAY)
    np.testing.assert_array_equal(net_c.params.flat, net_p.params.flat)
    for name in opt_c.state:
        np.testing.assert_array_equal(opt_c.state[name][0], opt_p.state[name][0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_kernel_sets_flush_the_same_entries(dtype):
    _, opt_numba, _ = _age("adam", "numba" if fastnn._jit.numba_available() else "numpy",
                           dtype, STEPS[dtype], **FAST_DECAY)
    _, opt_numpy, _ = _age("adam", "numpy", dtype, STEPS[dtype], **FAST_DECAY)
    for name in ("m", "v"):
        np.testing.assert_array_equal(opt_numba.state[name][0] == 0,
                                      opt_numpy.state[name][0] == 0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernels", KERNELS)
def test_weight_average_never_holds_a_subnormal(kernels, dtype):
    net = fastnn.Network([8, 6, 3], dtype=dtype, seed=0, kernels=kernels)
    average = WeightAverage(0.5, kernels=kernels)
    average.start(net)
    flat = net.params.flat
    for _ in range(20):
        average.update()
    flat[:10] = 0  # the average of these decays by 0.5 a step towards 0
    worst = 0
    for _ in range(STEPS[dtype]):
        average.update()
        worst = max(worst, _subnormals(average.average))
    assert worst == 0
    assert not np.any(average.average[:10]) and np.all(average.average[10:] == flat[10:])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernels", KERNELS)
def test_batch_norm_running_statistics_never_hold_a_subnormal(kernels, dtype):
    # all-zero input: every hidden unit's batch mean and variance are 0, so
    # the running variance decays by 0.9 a step from 1
    net = fastnn.Network([5, 4, 3], dtype=dtype, seed=0, kernels=kernels, batch_norm=True)
    opt = optimizers.get("sgd", net.params, kernels=kernels)
    X = np.zeros((8, 5), dtype=dtype)
    y = np.arange(8, dtype=np.intp) % 3
    step, _ = make_step(net, opt, X, y, 8)
    idx = np.arange(8)
    worst = 0
    for _ in range({"float32": 1000, "float64": 6800}[dtype]):
        step(idx)
        worst = max(worst, _subnormals(net.running_stats.flat))
    assert worst == 0
    assert not np.any(net.norms[0].running_var)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flush_keeps_nan_infinity_and_normal_numbers(dtype):
    tiny = np.finfo(dtype).tiny
    x = np.array([np.nan, np.inf, -np.inf, tiny, -tiny, tiny / 2, -tiny / 4, 0.0, -1.5],
                 dtype=dtype)
    _subnormal.flush_(x, np.empty_like(x), np.empty(x.shape, dtype=bool))
    assert np.isnan(x[0]) and x[1] == np.inf and x[2] == -np.inf
    np.testing.assert_array_equal(x[3:], np.array([tiny, -tiny, 0, 0, 0, -1.5], dtype=dtype))
    assert _subnormal.tiny(dtype) == tiny and _subnormal.tiny(dtype).dtype == dtype


# A logit gap that makes dL/dz of the wrong classes subnormal. Cross-entropy:
# p itself, exp(-95) = 5.5e-42 in float32 (tiny 1.18e-38), exp(-720) =
# 1.9e-313 in float64 (tiny 2.2e-308). Squared error: its dL/dz goes as p**2.
CONFIDENT_GAP = {("cross_entropy", "float32"): 95.0, ("cross_entropy", "float64"): 720.0,
                 ("mean_squared_error", "float32"): 47.5,
                 ("mean_squared_error", "float64"): 360.0}


@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernels", KERNELS)
def test_a_confident_network_makes_no_subnormal_gradient(kernels, dtype, compiled, loss):
    # the output bias makes class 0 win by the gap: the wrong classes'
    # probabilities, their dL/dz and the gradient of their bias would be subnormal
    net = fastnn.Network([4, 3], loss=loss, dtype=dtype, seed=0, kernels=kernels)
    net.params[0][...] = 0
    net.params[1][...] = [CONFIDENT_GAP[loss, dtype], 0, 0]
    if not compiled:
        net.compiled_step = lambda *args, **kwargs: None  # the Python step
    opt = optimizers.get("sgd", net.params, kernels=kernels, lr=1e-3)
    X = np.ones((8, 4), dtype=dtype)
    y = np.zeros(8, dtype=np.intp)
    step, _ = make_step(net, opt, X, y, 8)
    step(np.arange(8))
    assert _subnormals(net.grads.flat) == 0
    assert not np.any(net.grads[1][1:])  # flushed to zero, not left subnormal


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flush_delta_keeps_nan_and_what_is_above_the_floor(dtype):
    floor = _subnormal.delta_floor(dtype)
    assert floor.dtype == dtype and floor * floor >= np.finfo(dtype).tiny
    x = np.array([[np.nan, floor, floor / 8], [-np.finfo(dtype).tiny, 0.0, -1.5]], dtype=dtype)
    _subnormal.flush_delta_(x)
    assert np.isnan(x[0, 0])
    np.testing.assert_array_equal(x.ravel()[1:], np.array([floor, 0, 0, 0, -1.5], dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("optimizer", ["rmsprop", "adam", "nadam"])
def test_a_gradient_whose_square_is_subnormal_squares_to_zero(optimizer, kernels, dtype):
    tiny = np.finfo(dtype).tiny
    w = np.ones(4, dtype=dtype)
    g = np.array([np.sqrt(tiny) / 2, np.sqrt(tiny), 1e-3, np.nan], dtype=dtype)
    opt = optimizers.get(optimizer, [w], kernels=kernels, threads=1, **FAST_DECAY)
    v = opt.state["v"][0]
    v[...] = 2 * tiny
    opt.step([g])
    # v = v + (g*g - v) / 2: with g*g taken as 0 where it would be subnormal
    # (unflushed it would be 1.125 * tiny); normal squares and NaN go through
    assert v[0] == tiny
    assert v[1] == 1.5 * tiny  # sqrt(tiny)**2 == tiny: kept
    assert v[2] == pytest.approx(0.5e-6, rel=1e-5) and np.isnan(v[3])
