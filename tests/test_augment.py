"""Augmentation in the gather: the transform, its two implementations, its plumbing."""

import numpy as np
import pytest
from conftest import needs_numba

import fastnn
from fastnn import _jit, losses, optimizers
from fastnn.augment import Augmentation, _gather_augmented_fused, _mix_rows_fused
from fastnn.errors import ConfigError


def _draws(dy, dx, flip, shift):
    """The uniform draws that make a row shift by (dy, dx) and flip (or not)."""
    span = 2 * shift + 1
    return np.array([[(dy + shift + 0.5) / span, (dx + shift + 0.5) / span,
                      0.25 if flip else 0.75]])


@pytest.mark.parametrize("dy, dx, flip", [(0, 0, False), (1, -2, False), (-2, 1, True),
                                          (0, 0, True), (2, 2, True)])
def test_shift_and_flip_move_pixels_as_documented(dy, dx, flip):
    h, w = 4, 5
    img = np.arange(1, h * w + 1, dtype=np.float32).reshape(h, w)
    src = img[:, ::-1] if flip else img
    expected = np.zeros_like(img)
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                expected[r, c] = src[r - dy, c - dx]
    xb = img.reshape(1, -1).copy()
    Augmentation(2, True, (h, w)).apply_(xb, _draws(dy, dx, flip, 2))
    np.testing.assert_array_equal(xb.reshape(h, w), expected)


def test_without_flip_the_third_draw_is_ignored():
    xb = np.arange(9, dtype=np.float64).reshape(1, 9)
    Augmentation(1, False, (3, 3)).apply_(xb, _draws(0, 0, True, 1))
    np.testing.assert_array_equal(xb, np.arange(9).reshape(1, 9))


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_gather_equals_take_then_apply_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    X = rng.random((50, 6 * 7)).astype(dtype)
    idx = rng.permutation(50)[:20]
    draws = rng.random((20, 3))
    aug = Augmentation(3, True, (6, 7))
    expected = X[idx].copy()
    aug.apply_(expected, draws)
    xb = np.full(20 * 42, np.nan, dtype=dtype)
    _jit.specialized(_gather_augmented_fused, (X, idx, xb, draws, 3, True, 6, 7))(
        X, idx, xb, draws, 3, True, 6, 7)
    np.testing.assert_array_equal(xb.reshape(20, 42), expected)


def _fit(kernels, compiled=True, augment=None, seed=0, X=None, y=None):
    rng = np.random.default_rng(0)
    if X is None:
        X, y = rng.random((200, 36), dtype=np.float32), rng.integers(0, 3, 200)
    net = fastnn.Network([36, 12, 3], kernels=kernels, dropout=0.1, seed=1)
    opt = optimizers.get("adam", net.params, kernels=kernels, threads=1)
    if not compiled:
        net.compiled_step = lambda *args, **kwargs: None
    history = fastnn.fit(net, opt, X, y, epochs=2, batch_size=32, seed=seed, augment=augment,
                         validation_data=(X[:50], y[:50]))
    return net.params.flat.copy(), history


@pytest.mark.usefixtures("kernels")
def test_augmented_training_is_reproducible_and_differs_from_plain():
    aug = Augmentation(2, True, (6, 6))
    first, _ = _fit(None, augment=aug)
    again, _ = _fit(None, augment=aug)
    plain, _ = _fit(None)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, plain)


@needs_numba
@pytest.mark.parametrize("mixup", [0.0, 0.4], ids=["moves", "moves+mixup"])
def test_compiled_and_python_steps_augment_identically(mixup):
    aug = Augmentation(2, True, (6, 6), mixup=mixup)
    compiled, hist_c = _fit("numba", True, aug)
    python, hist_p = _fit("numba", False, aug)
    np.testing.assert_array_equal(compiled, python)
    assert hist_c["val_loss"] == hist_p["val_loss"]


@needs_numba
@pytest.mark.parametrize("mixup", [0.0, 0.4], ids=["moves", "moves+mixup"])
def test_kernel_sets_agree_with_augmentation(mixup):
    aug = Augmentation(1, True, (6, 6), mixup=mixup)
    numba_run, _ = _fit("numba", augment=aug)
    numpy_run, _ = _fit("numpy", augment=aug)
    np.testing.assert_allclose(numba_run, numpy_run, rtol=1e-5, atol=1e-6)


def test_no_op_augmentation_is_the_plain_run():
    same, _ = _fit("numpy", augment=Augmentation(0, False, (6, 6)))
    plain, _ = _fit("numpy")
    np.testing.assert_array_equal(same, plain)


def test_validation_data_is_never_augmented():
    # The last epoch's validation metrics are those of the final weights on
    # the data as given.
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 36), dtype=np.float32), rng.integers(0, 3, 200)
    params, history = _fit("numpy", augment=Augmentation(2, True, (6, 6)), X=X, y=y)
    net = fastnn.Network([36, 12, 3], kernels="numpy", dropout=0.1)
    net.params.flat[...] = params
    loss, accuracy = net.evaluate(X[:50], y[:50])
    assert history["val_loss"][-1] == loss
    assert history["val_accuracy"][-1] == accuracy


@pytest.mark.parametrize("kwargs, message", [
    ({"shift": 6, "image_shape": (6, 6)}, "smaller than the image"),
    ({"shift": -1}, "augment_shift"),
    ({"shift": 1.5}, "augment_shift"),
    ({"image_shape": (6,)}, "image_shape"),
    ({"mixup": -0.1}, "mixup"),
    ({"mixup": float("inf")}, "mixup"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Augmentation(**kwargs)


def test_features_must_match_the_image():
    assert Augmentation.for_features(784) is None  # nothing asked
    assert Augmentation.for_features(784, shift=2).image_shape == (28, 28)
    with pytest.raises(ConfigError, match="not a square"):
        Augmentation.for_features(30, flip=True)
    with pytest.raises(ConfigError, match="does not match"):
        Augmentation.for_features(30, flip=True, image_shape=(5, 5))
    assert Augmentation.for_features(30, flip=True, image_shape=(5, 6)).image_shape == (5, 6)
    with pytest.raises(ValueError, match="does not match"):
        _fit("numpy", augment=Augmentation(1, False, (5, 5)))
    assert Augmentation.for_features(30, mixup=0.2).image_shape == (1, 30)  # no layout needed


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_mixup_blends_each_row_with_the_next_and_both_kernels_agree(dtype, n):
    rng = np.random.default_rng(n)
    x = rng.random((n, 5)).astype(dtype)
    aug = Augmentation(mixup=0.2)
    lam, mu = aug.draw_mix(np.random.default_rng(0), dtype)
    assert lam.dtype == dtype and mu == dtype(1) - lam and 0 <= lam <= 1
    mixed = x.copy()
    aug.mix_(mixed, lam, mu)
    np.testing.assert_allclose(mixed, lam * x + mu * np.roll(x, -1, axis=0), rtol=1e-6)
    if _jit.numba_available():
        fused = x.copy()
        _jit.compiled(_mix_rows_fused, np.dtype(dtype).name)(fused, lam, mu,
                                                             np.empty(5, dtype))
        np.testing.assert_array_equal(fused, mixed)


@pytest.mark.parametrize("loss", ["cross_entropy", "mean_squared_error"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixed_targets_are_the_blend_of_the_two_rows_targets(loss, smoothing):
    """Cross-entropy is linear in the target; squared error's gradient is too (in q)."""
    rng = np.random.default_rng(2)
    n, k = 6, 4
    logits = rng.standard_normal((n, k))
    y = rng.integers(0, k, n)
    y[2] = y[3]  # a row whose partner has the same label
    on, off = losses.smoothed_targets(smoothing, k)
    kernel = losses.get(loss).reference
    rows, buf = np.arange(n), np.empty((n, 1))

    def run(labels, lam=1.0, mu=0.0):
        z, delta = logits.copy(), np.empty_like(logits)
        value = kernel(z, labels, delta, buf, rows, on, off, lam, mu)
        return value, delta

    mixed_loss, mixed_delta = run(y, 0.7, 0.3)
    own_loss, own_delta = run(y)
    next_loss, next_delta = run(np.roll(y, -1))
    np.testing.assert_allclose(mixed_delta, 0.7 * own_delta + 0.3 * next_delta, atol=1e-12)
    if loss == "cross_entropy":
        assert mixed_loss == pytest.approx(0.7 * own_loss + 0.3 * next_loss, rel=1e-12)
