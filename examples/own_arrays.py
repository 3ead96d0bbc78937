"""Train on your own NumPy arrays (here: a CSV written on the fly from scikit-learn's digits).

Run: python examples/own_arrays.py [data.csv]   (last column: integer label)
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn

if len(sys.argv) > 1:
    path = Path(sys.argv[1])
else:  # make a CSV to read: 64 pixel columns and a label column
    X, y = load_digits(return_X_y=True)
    path = Path(tempfile.mkdtemp()) / "digits.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%g")

table = np.loadtxt(path, delimiter=",")
X = (table[:, :-1] / table[:, :-1].max()).astype(np.float32)  # scale features to [0, 1]
y = table[:, -1].astype(np.intp)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y,
                                                    random_state=0)
n_classes = int(y.max()) + 1

net = fastnn.Network([X.shape[1], 128, 64, n_classes], activation="relu", seed=0)
opt = fastnn.optimizers.get("adam", net.params, lr=1e-3)
history = fastnn.fit(net, opt, X_train, y_train, epochs=30, batch_size=32,
                     validation_data=(X_test, y_test), seed=0,
                     callbacks=[fastnn.EarlyStopping(patience=5)])
print(f"{len(history.epoch)} epochs; test accuracy {net.evaluate(X_test, y_test)[1]:.3f}")
fastnn.save_model(net, Path(tempfile.mkdtemp()) / "model.npz")
