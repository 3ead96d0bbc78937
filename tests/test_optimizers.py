"""Each optimizer against its update rule written out independently."""

import numpy as np
import pytest

import fastnn
from fastnn import optimizers

# Every test here runs once per kernel set (numpy, numba).
pytestmark = pytest.mark.usefixtures("kernels")

HYPER = {"lr": 0.01, "momentum": 0.8, "beta": 0.85, "beta1": 0.9, "beta2": 0.99, "eps": 1e-6,
         "weight_decay": 0.05}


def reference(name, w, grads, h=HYPER, momentum_decay=0.004):
    """Apply the rules of the issue text step by step; return the weights after each."""
    w = w.copy()
    u = np.zeros_like(w)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    prod = 1.0
    out = []
    for t, g in enumerate(grads, 1):
        if name == "sgd":
            w = w - h["lr"] * g
        elif name == "momentum":
            u = h["momentum"] * u + g
            w = w - h["lr"] * u
        elif name == "nag":
            u = h["momentum"] * u + g
            w = w - h["lr"] * (g + h["momentum"] * u)
        elif name == "rmsprop":
            v = h["beta"] * v + (1 - h["beta"]) * g ** 2
            w = w - h["lr"] * g / (np.sqrt(v) + h["eps"])
        else:
            if name == "adamw":  # torch.optim.AdamW: decay first, decoupled from g
                w = w * (1 - h["lr"] * h["weight_decay"])
            b1, b2 = h["beta1"], h["beta2"]
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g ** 2
            denom = np.sqrt(v / (1 - b2 ** t)) + h["eps"]
            if name in ("adam", "adamw"):
                w = w - h["lr"] * (m / (1 - b1 ** t)) / denom
            else:
                mu = b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))
                mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
                prod *= mu
                m_hat = mu_next * m / (1 - prod * mu_next) + (1 - mu) * g / (1 - prod)
                w = w - h["lr"] * m_hat / denom
        out.append(w.copy())
    return out


NAMES = ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam", "adamw"]


def test_every_registered_optimizer_is_checked_here():
    assert set(NAMES) == set(optimizers.OPTIMIZERS)


def test_adamw_equals_torch_adamw():
    torch = pytest.importorskip("torch")  # not a dependency: runs where it is installed
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(50)
    grads = [rng.standard_normal(50) for _ in range(20)]
    w = w0.copy()
    opt = optimizers.get("adamw", [w], lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6,
                         weight_decay=0.1)
    tw = torch.tensor(w0.copy(), requires_grad=True)
    topt = torch.optim.AdamW([tw], lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)
    for g in grads:
        opt.step([g])
        tw.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "list"])
@pytest.mark.parametrize("name", NAMES)
def test_steps_match_the_rule(name, flat):
    net = fastnn.Network([3, 4, 2], dtype="float64", seed=0)
    rng = np.random.default_rng(5)
    start = net.params.flat.copy()
    grads_seq = [rng.standard_normal(start.size) for _ in range(6)]
    expected = reference(name, start, grads_seq)
    params = net.params if flat else list(net.params)
    opt = optimizers.get(name, params, **HYPER)
    ids = [id(p) for p in net.params]
    for g, exp in zip(grads_seq, expected):
        views = []
        offset = 0
        for p in net.params:
            views.append(g[offset: offset + p.size].reshape(p.shape))
            offset += p.size
        grads = fastnn.network.ParamList(views, g) if flat else views
        opt.step(grads)
        np.testing.assert_allclose(net.params.flat, exp, rtol=1e-12, atol=1e-14)
    assert [id(p) for p in net.params] == ids
    assert opt.t == len(grads_seq)


@pytest.mark.parametrize("name", NAMES)
def test_float32_state_stays_float32(name):
    net = fastnn.Network([3, 4, 2], dtype="float32", seed=0)
    opt = optimizers.get(name, net.params, **HYPER)
    g = net.gradients(np.ones((2, 3), np.float32), [0, 1])
    opt.step(g)
    assert net.params.flat.dtype == np.float32
    for arrays in opt.state.values():
        assert all(a.dtype == np.float32 for a in arrays)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_a_quadratic(name):
    # f(w) = 0.5 * sum(c * (w - 3)^2), minimum at w = 3.
    w = np.zeros(4)
    c = np.array([1.0, 2.0, 0.5, 1.5])
    lr = {"sgd": 0.2, "momentum": 0.05, "nag": 0.05, "rmsprop": 0.01, "adam": 0.05,
          "nadam": 0.05, "adamw": 0.05}[name]
    opt = optimizers.get(name, [w], lr=lr, weight_decay=1e-3)  # (only AdamW uses it)
    for _ in range(2000):
        opt.step([c * (w - 3)])
    np.testing.assert_allclose(w, 3.0, atol=2e-2)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_continues_identically(name):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(5) for _ in range(6)]
    w1 = np.zeros(5)
    opt1 = optimizers.get(name, [w1], **HYPER)
    for g in grads[:3]:
        opt1.step([g])
    w2 = w1.copy()
    opt2 = optimizers.get(name, [w2], **HYPER)
    opt2.load_state_dict(opt1.state_dict())
    for g in grads[3:]:
        opt1.step([g])
        opt2.step([g])
    np.testing.assert_array_equal(w1, w2)


@pytest.mark.parametrize("bad, message", [
    ({"lr": 0}, "lr must be > 0"),
    ({"lr": -0.1}, "lr must be > 0, got -0.1"),
    ({"momentum": 1.0}, "momentum must be < 1"),
    ({"beta2": -0.1}, "beta2 must be >= 0"),
    ({"eps": 0}, "eps must be > 0"),
    ({"lr": float("nan")}, "lr must be finite"),
    ({"lr": "fast"}, "lr must be a number"),
])
def test_bad_hyperparameters_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        optimizers.get("nadam" if "lr" in bad else "adam" if "beta2" in bad or "eps" in bad
                       else "momentum", [np.zeros(2)], **bad)


def test_unknown_optimizer_and_hyperparameter():
    with pytest.raises(fastnn.ConfigError, match="optimizer must be one of"):
        optimizers.get("adagrad", [np.zeros(2)])
    with pytest.raises(fastnn.ConfigError, match="unknown optimizer hyperparameter"):
        optimizers.get("adam", [np.zeros(2)], learning_rate=0.1)


def test_names_are_case_insensitive():
    assert isinstance(optimizers.get("NAdam", [np.zeros(2)]), optimizers.Nadam)


@pytest.mark.parametrize("name", NAMES)
def test_threaded_update_is_bit_identical(name, monkeypatch):
    monkeypatch.setattr(optimizers, "PARALLEL_MIN_SIZE", 10)
    rng = np.random.default_rng(0)
    start = rng.standard_normal(1001).astype(np.float32)
    grads = [rng.standard_normal(1001).astype(np.float32) for _ in range(4)]
    results = []
    for threads in (1, 3):
        w = start.copy()
        opt = optimizers.get(name, [w], threads=threads, **HYPER)
        for g in grads:
            opt.step([g])
        results.append(w)
    np.testing.assert_array_equal(results[0], results[1])


def test_thread_count_validation(monkeypatch):
    with pytest.raises(fastnn.ConfigError, match="threads must be an integer >= 1, got 0"):
        optimizers.get("adam", [np.zeros(2)], threads=0)
    monkeypatch.setenv("FASTNN_NUM_THREADS", "many")
    with pytest.raises(fastnn.ConfigError, match="FASTNN_NUM_THREADS must be an integer"):
        optimizers.get("adam", [np.zeros(2)])
    monkeypatch.setenv("FASTNN_NUM_THREADS", "3")
    assert optimizers.get("adam", [np.zeros(2)]).threads == 3
