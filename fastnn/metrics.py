"""Classification metrics (NumPy only)."""

import numpy as np


def accuracy(y_true, y_pred):
    """Fraction of equal entries of two label arrays of shape (n,)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"label arrays must have equal 1-D shapes, got {y_true.shape} and {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.count_nonzero(y_true == y_pred)) / y_true.size


def confusion_matrix(y_true, y_pred, n_classes):
    """Counts ``C[i, j]`` of samples of true class i predicted as class j.

    Returns
    -------
    ndarray (n_classes, n_classes) of int64
    """
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def format_confusion_matrix(matrix, class_names):
    """Render a confusion matrix as an aligned text table (rows: true class)."""
    names = [str(c) for c in class_names]
    width = max(max(len(str(int(v))) for v in matrix.ravel()), 4)
    label_w = max(len(n) for n in names)
    short = [n[:width] for n in names]
    lines = [" " * (label_w + 2) + " ".join(s.rjust(width) for s in short) + "   (columns: predicted)"]
    for name, row in zip(names, matrix):
        lines.append(name.rjust(label_w) + "  " + " ".join(str(int(v)).rjust(width) for v in row))
    return "\n".join(lines)
