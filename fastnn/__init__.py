"""fastnn: fully-connected networks with hand-written NumPy forward/backward passes.

Public API::

    net = fastnn.Network([784, 128, 128, 10], activation="relu")
    opt = fastnn.optimizers.get("adam", net.params, lr=1e-3)
    history = fastnn.fit(net, opt, X_train, y_train, epochs=10, batch_size=64,
                         validation_data=(X_val, y_val), seed=0)
    fastnn.save_model(net, "model.npz"); net, header = fastnn.load_model("model.npz")
"""

from . import datasets, metrics, optimizers
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
from .train import Callback, History, fit

__version__ = "0.1.0"

__all__ = [
    "Callback",
    "ConfigError",
    "DataError",
    "DataNotFoundError",
    "FastnnError",
    "History",
    "ModelFileError",
    "Network",
    "TrainConfig",
    "TrainingDivergedError",
    "__version__",
    "datasets",
    "fit",
    "load_model",
    "metrics",
    "optimizers",
    "save_model",
]
