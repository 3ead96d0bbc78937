"""In-place kernels against plain, allocating NumPy references."""

import math

import numpy as np
import pytest

import fastnn
from fastnn import activations, losses

_erf = np.vectorize(math.erf)
_sig = lambda z: 1.0 / (1.0 + np.exp(-z))
_pdf = lambda z: np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
# plain, allocating references in float64: f(z) and f'(z)
REFERENCE = {
    "identity": (lambda z: z, np.ones_like),
    "sigmoid": (_sig, lambda z: _sig(z) * (1 - _sig(z))),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(z.dtype)),
    "leaky_relu": (lambda z: np.where(z > 0, z, 0.01 * z), lambda z: np.where(z > 0, 1, 0.01)),
    "gelu": (lambda z: z / 2 * (1 + _erf(z / math.sqrt(2))),
             lambda z: (1 + _erf(z / math.sqrt(2))) / 2 + z * _pdf(z)),
    "silu": (lambda z: z * _sig(z), lambda z: _sig(z) * (1 + z * (1 - _sig(z)))),
}


def settings_of(dtype):
    """A network's settings record in ``dtype`` (what the kernels read)."""
    return fastnn.Network([2, 2], dtype=np.dtype(dtype).name, kernels="numpy")._settings


def test_every_registered_activation_has_a_reference_here():
    assert set(REFERENCE) == set(activations.REGISTRY)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(REFERENCE))
def test_activation_forward_backward_match_reference(name, dtype):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 5)).astype(dtype) * 3
    upstream = rng.standard_normal((6, 5)).astype(dtype)
    ref_f, ref_d = REFERENCE[name]
    z64 = z.astype(np.float64)
    act = activations.get(name)
    s = settings_of(dtype)[0]
    a, pre, scratch = z.copy(), np.empty_like(z), np.empty_like(z)
    out = act.forward(a, pre, scratch, s)
    assert out is a and a.dtype == dtype
    np.testing.assert_allclose(a, ref_f(z64), rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 1e-14)
    delta = upstream.copy()
    act.backward(delta, a, pre, scratch, s)
    assert delta.dtype == dtype
    np.testing.assert_allclose(delta, upstream * ref_d(z64), rtol=1e-5, atol=1e-6)


def test_activation_names_are_case_insensitive_and_checked():
    assert activations.canonical_name("ReLU") == "relu"
    assert activations.canonical_name("logistic") == "sigmoid"  # scikit-learn's name
    with pytest.raises(ValueError, match="activation must be one of"):
        activations.get("swish")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_does_not_overflow_for_large_negative_inputs(dtype):
    z = np.array([[-1e4, -800.0, 0.0, 800.0, 1e4]], dtype=dtype)
    with np.errstate(all="raise"):
        activations.get("sigmoid").forward(z, None, None, None)
    np.testing.assert_allclose(z, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-30)


def _reference_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _run(kernel, z, y, separate_delta=True):
    n = z.shape[0]
    delta = np.empty_like(z) if separate_delta else z
    loss = kernel(z, y, delta, np.empty((n, 1), z.dtype), np.arange(n))
    return loss, delta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_matches_reference(dtype):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((8, 4)) * 2
    y = rng.integers(0, 4, 8)
    p = _reference_softmax(logits)
    ref_loss = -np.log(p[np.arange(8), y]).mean()
    ref_delta = (p - np.eye(4)[y]) / 8
    for separate in (True, False):
        z = logits.astype(dtype)
        loss, delta = _run(losses.softmax_cross_entropy_, z, y, separate)
        assert delta.dtype == dtype
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        np.testing.assert_allclose(delta, ref_delta, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_squared_error_matches_reference(dtype):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((8, 4))
    y = rng.integers(0, 4, 8)
    p = _reference_softmax(logits)
    t = np.eye(4)[y]
    ref_loss = ((p - t) ** 2).sum(axis=1).mean() / 4
    g = 2 * (p - t) / 4
    # Full Jacobian: J[i] = diag(p_i) - p_i p_i^T
    ref_delta = np.stack([(np.diag(pi) - np.outer(pi, pi)) @ gi for pi, gi in zip(p, g)]) / 8
    loss, delta = _run(losses.softmax_squared_error_, logits.astype(dtype), y)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    np.testing.assert_allclose(delta, ref_delta, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kernel", [losses.softmax_cross_entropy_, losses.softmax_squared_error_])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_stay_finite_for_huge_logits(kernel, dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype=dtype)
    y = np.array([1, 2])
    with np.errstate(over="raise", invalid="raise"):
        loss, delta = _run(kernel, z, y)
    assert np.isfinite(loss) and np.isfinite(delta).all()
    if kernel is losses.softmax_cross_entropy_:
        assert loss == pytest.approx(1e4, rel=1e-6)  # row 0: -log p = 2e4, row 1: 0
