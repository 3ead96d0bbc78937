"""fastnn: fully-connected networks with hand-written NumPy forward/backward passes.

Public API::

    net = fastnn.Network([784, 128, 128, 10], activation="relu")
    opt = fastnn.optimizers.get("adam", net.params, lr=1e-3)
    history = fastnn.fit(net, opt, X_train, y_train, epochs=10, batch_size=64,
                         validation_data=(X_val, y_val), seed=0)
    fastnn.save_model(net, "model.npz"); net, header = fastnn.load_model("model.npz")
"""

from . import datasets, metrics, optimizers, schedules
from .average import WeightAverage
from .config import TrainConfig
from .errors import (
    ConfigError,
    DataError,
    DataNotFoundError,
    FastnnError,
    ModelFileError,
    TrainingDivergedError,
)
from .modelfile import load as load_model
from .modelfile import save as save_model
from .network import Network
from .train import (
    Callback,
    EarlyStopping,
    History,
    LearningRateScheduler,
    ModelCheckpoint,
    fit,
)
from .trainer import Trainer


def __getattr__(name):
    # The scikit-learn estimator imports scikit-learn: load it on first use.
    if name == "MLPClassifier":
        from .estimator import MLPClassifier

        return MLPClassifier
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "Callback", "ConfigError", "DataError", "DataNotFoundError", "EarlyStopping",
    "FastnnError", "History", "LearningRateScheduler", "MLPClassifier", "ModelCheckpoint",
    "ModelFileError", "Network", "TrainConfig", "Trainer", "TrainingDivergedError", "WeightAverage", "__version__",
    "datasets", "fit", "load_model", "metrics", "optimizers", "save_model", "schedules",
]
