"""A setting changed after construction acts at once, the same in every kernel set, or raises."""

import numpy as np
import pytest
from conftest import KERNEL_SETS

import fastnn
from fastnn import optimizers
from fastnn.errors import ConfigError

X = np.random.default_rng(0).random((96, 6)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, 3, 96).astype(np.intp)
BASE = {"activation": "tanh", "loss": "cross_entropy", "weight_init": "xavier",
        "weight_decay": 0.0, "dropout": 0.0, "label_smoothing": 0.0}
# every Network setting that can change: (constructor name, attribute, new value)
CHANGES = [("activation", "activation", "gelu"), ("activation", "activation", "leaky_relu"),
           ("loss", "loss_name", "mean_squared_error"), ("weight_decay", "weight_decay", 0.3),
           ("dropout", "dropout", 0.25), ("label_smoothing", "label_smoothing", 0.2)]


def _fit(net, compiled=True, optimizer="adam", epochs=2, callbacks=()):
    opt = optimizers.get(optimizer, net.params, lr=0.01, threads=1, kernels=net.kernels)
    if not compiled:
        net.compiled_step = lambda *args, **kwargs: None
    fastnn.fit(net, opt, X, Y, epochs=epochs, batch_size=16, seed=2, callbacks=callbacks)
    return net.params.flat.copy()


def _net(kernels, **kw):
    return fastnn.Network([6, 8, 3], seed=4, kernels=kernels, **{**BASE, **kw})


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("arg, attr, value", CHANGES, ids=[c[2] if c[0] == "activation"
                                                           else c[0] for c in CHANGES])
def test_a_network_setting_changed_after_construction_acts_as_if_built_with_it(
        kernels, arg, attr, value):
    changed = _net(kernels)
    setattr(changed, attr, value)
    built = _net(kernels, **{arg: value})
    assert getattr(changed, attr) == getattr(built, attr)
    assert changed.settings().keys() == built.settings().keys()
    assert all(changed.settings()[k] == built.settings()[k] for k in built.settings())
    np.testing.assert_array_equal(_fit(changed), _fit(built))


def test_weight_init_changed_after_construction_is_used_by_the_next_init():
    changed = _net("numpy")
    changed.weight_init = "he"
    changed.init_weights(4)
    np.testing.assert_array_equal(changed.params.flat, _net("numpy", weight_init="he").params.flat)


@pytest.mark.parametrize("attr, value", [("dtype", "float64"), ("layer_sizes", [6, 4, 3]),
                                         ("batch_norm", True), ("seed", 1)])
def test_settings_that_shape_the_memory_raise_when_set(attr, value):
    net = _net("numpy")
    with pytest.raises(ConfigError, match=f"{attr} is fixed"):
        setattr(net, attr, value)


@pytest.mark.parametrize("attr, value, message", [
    ("activation", "swish", "activation must be one of"), ("weight_decay", -1, ">= 0"),
    ("dropout", 1.0, "< 1"), ("label_smoothing", float("nan"), "finite")])
def test_a_bad_value_set_later_is_refused_and_the_old_one_kept(attr, value, message):
    net = _net("numpy")
    before = getattr(net, attr)
    with pytest.raises(ValueError, match=message):
        setattr(net, attr, value)
    assert getattr(net, attr) == before


@pytest.mark.parametrize("kernels", KERNEL_SETS[1:])
def test_settings_changed_between_epochs_reach_the_compiled_step(kernels):
    # A callback changes the activation, weight decay and dropout after epoch
    # 1; the compiled step must follow exactly as the Python step does.
    class Change(fastnn.train.Callback):
        def __init__(self, net):
            self.net = net

        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.net.activation = "silu"
                self.net.weight_decay = 0.1
                self.net.dropout = 0.2

    runs = []
    for compiled in (True, False):
        net = _net(kernels)
        runs.append(_fit(net, compiled, epochs=3, callbacks=[Change(net)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], _fit(_net(kernels), epochs=3))


def _hyper_changes():
    out = []
    for name, cls in optimizers.OPTIMIZERS.items():
        for hyper in cls._hyper:
            out.append((name, hyper))
    return out


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("name, hyper", _hyper_changes())
def test_an_optimizer_setting_changed_after_construction_acts_as_if_built_with_it(
        kernels, name, hyper):
    new = {"lr": 0.03, "momentum": 0.5, "beta": 0.7, "beta1": 0.6, "beta2": 0.9, "eps": 1e-3,
           "momentum_decay": 0.01, "weight_decay": 0.2}[hyper]
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(10).astype(np.float32) for _ in range(4)]
    results = []
    for later in (True, False):
        w = np.ones(10, np.float32)
        opt = optimizers.get(name, [w], kernels=kernels, **({} if later else {hyper: new}))
        if later:
            setattr(opt, hyper, new)
        for g in grads:
            opt.step([g])
        results.append(w)
    np.testing.assert_array_equal(results[0], results[1])


def test_an_optimizer_setting_set_later_is_checked():
    opt = optimizers.get("adam", [np.zeros(3)])
    with pytest.raises(ValueError, match="lr must be > 0"):
        opt.lr = -0.1
    assert opt.lr == optimizers.DEFAULTS["lr"]
