"""A saved model's test data: its own data set's test part, read as its training read it.

:func:`test_data` is what ``fastnn evaluate``, the dashboard, the sweep report
and the W&B logger evaluate a model file on: the data set recorded in the
model (or another one named), with the model's target column, test fraction,
image size and the seed its test part was held out with, preprocessed with
the model's own preprocessing; a data set that does not fit the model (other
feature count, other classes) is a :class:`~fastnn.errors.FastnnError`, never
a silently meaningless accuracy.
"""

import math

from . import datasets
from .errors import ConfigError, FastnnError
from .preprocessing import Preprocessing


def test_data(net, header, *, model="model", dataset=None, data_dir=None, download=True,
              target=None, test_fraction=None, seed=None):
    """``(Dataset, X_test)``: the test part and the network's inputs for it.

    Parameters
    ----------
    net, header
        What :func:`fastnn.load_model` returned.
    model : str
        The model's name in messages (its path).
    dataset : str, optional
        Another data set to test on (default: the model's own, else fashion_mnist).
    target, test_fraction, seed : optional
        Override how the data file is read (default: as the model's training read it;
        for another data set: its defaults).

    Raises
    ------
    FastnnError
        No such data, or data that does not fit the model.
    """
    meta = header.get("metadata") or {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    trained_on = meta.get("dataset")
    name = dataset or trained_on or "fashion_mnist"
    own = trained_on is not None and _same_data(name, trained_on)

    def setting(key, given, default):
        return given if given is not None else config.get(key, default) if own else default

    shape = net.preprocessing.image_shape if net.preprocessing is not None else None
    size = setting("image_size", None, None) or (f"{shape[0]}x{shape[1]}" if shape else None)
    ds = datasets.load(name, data_dir=data_dir, download=download,
                       target=setting("target", target, None), image_size=size,
                       test_fraction=setting("test_fraction", test_fraction, 0.1),
                       seed=seed if seed is not None
                       else datasets.split_seed_of(meta) if own else 0)
    n_features = math.prod(ds.x_test.shape[1:])
    hint = f" (it was trained on {trained_on})" if trained_on and not own else ""
    if n_features != net.n_features:
        what = "images have {} pixels" if ds.kind == "images" else "rows have {} features"
        raise FastnnError(f"{model}: model takes {net.n_features} inputs but {ds.name} "
                          f"{what.format(n_features)}{hint}")
    if net.n_classes != len(ds.class_names):
        raise FastnnError(f"{model}: model has {net.n_classes} outputs but {ds.name} has "
                          f"{len(ds.class_names)} classes{hint}")
    classes = header.get("class_names")
    if classes and list(classes) != list(ds.class_names):
        raise FastnnError(
            f"{model}: the model's classes ({', '.join(classes[:3])}, ...) are not "
            f"{ds.name}'s ({', '.join(ds.class_names[:3])}, ...)"
            + (f"; it was trained on {trained_on}" if hint else ""))
    prep = net.preprocessing if net.preprocessing is not None else \
        Preprocessing.pixels(net.n_features)
    return ds, prep.apply(ds.x_test, net.dtype)


def _same_data(name, trained_on):
    from .config import _dataset

    try:
        return _dataset(name) == _dataset(trained_on)
    except ConfigError:
        return False
