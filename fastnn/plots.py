"""The report's figures (matplotlib, the ``plot`` extra), written atomically as PNG."""

import numpy as np

from ._atomic import atomic_open
from .errors import FastnnError


def fmt(value):
    """A setting as a table or an axis shows it: floats to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import pandas as pd
    except ImportError as exc:
        raise FastnnError('fastnn report needs matplotlib and pandas: pip install "fastnn[plot]"'
                          ) from exc
    return plt, pd


def _save(fig, path):
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)


def plot_parallel(df, path, columns, top=10):
    """Parallel coordinates that answer "which settings do the best runs share".

    Lines are coloured by their rank in validation accuracy (not its value,
    which a few failed runs would squash into one colour), drawn weakest
    first; categorical values are spread a little (seeded jitter) so that
    runs sharing a value do not collapse into one band; the ``top`` runs
    are drawn last, on top, in a highlight colour. The accuracy axis runs
    from the lowest to the highest value drawn on it.

    Returns the values written on the accuracy axis, bottom to top.
    """
    plt, _ = _plt()
    cols = list(columns)
    n = len(df)
    top = min(top, n)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(cols) + 3), 5.5))
    cmap = plt.get_cmap("viridis")
    acc = df["val_accuracy"].to_numpy(dtype=float)
    lo, hi = float(acc.min()), float(acc.max())
    span = hi - lo or 1.0
    rank = acc.argsort().argsort() / max(n - 1, 1)  # 0 = weakest, 1 = best
    positions, spread = {}, {}
    for c in cols:
        values = sorted(df[c].unique(), key=lambda v: (isinstance(v, str), v))
        positions[c] = {v: (i / (len(values) - 1) if len(values) > 1 else 0.5)
                        for i, v in enumerate(values)}
        spread[c] = 0.12 / max(len(values) - 1, 1)
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-1, 1, size=(n, len(cols)))
    order = np.argsort(acc, kind="stable")
    best = set(order[n - top:].tolist())
    for i in order:
        row = df.iloc[i]
        ys = [positions[c][row[c]] + jitter[i, k] * spread[c] for k, c in enumerate(cols)]
        ys.append(min(max((acc[i] - lo) / span, 0.0), 1.0))
        if i in best:
            ax.plot(range(len(cols) + 1), ys, color="crimson", lw=2.0, alpha=0.9, zorder=3)
        else:
            ax.plot(range(len(cols) + 1), ys, color=cmap(rank[i]), lw=0.6,
                    alpha=0.04 + 0.3 * rank[i] ** 2, zorder=2)
    for x, c in enumerate(cols):
        ax.axvline(x, color="0.6", lw=0.8, zorder=1)
        for v, y in positions[c].items():
            ax.text(x, y, f" {fmt(v)}", fontsize=7, va="center", zorder=4,
                    bbox={"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.5})
    x_acc = len(cols)
    ax.axvline(x_acc, color="0.6", lw=0.8, zorder=1)
    labels = [lo + frac * span for frac in (0.0, 0.25, 0.5, 0.75, 1.0)]
    for frac, value in zip((0.0, 0.25, 0.5, 0.75, 1.0), labels):
        ax.text(x_acc, frac, f" {value:.1%}", fontsize=7, va="center", zorder=4)
    ax.set_xticks(range(len(cols) + 1), cols + ["val_accuracy"], rotation=30)
    ax.set_yticks([])
    ax.set_ylim(-0.06, 1.06)
    ax.set_title(f"Hyperparameters of {n} runs against validation accuracy: "
                 f"the best {top} in red")
    ax.plot([], [], color="crimson", lw=2.0, label=f"best {top} runs")
    ax.legend(loc="lower left", fontsize=8)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 100))
    fig.colorbar(sm, ax=ax, label="rank in validation accuracy (percentile)")
    _save(fig, path)
    return labels


def plot_run_order(df, path):
    plt, _ = _plt()
    d = df.sort_values("index")
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(d["index"], d["val_accuracy"], s=12, label="run")
    ax.plot(d["index"], d["val_accuracy"].cummax(), color="C1", label="best so far")
    ax.set(xlabel="run (in the order the sweep drew them)", ylabel="validation accuracy",
           title="Validation accuracy of every run")
    ax.legend()
    _save(fig, path)


def plot_confusion(matrix, class_names, path, title):
    plt, _ = _plt()
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    k = len(class_names)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center",
                    fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, label="share of the true class")
    _save(fig, path)


def plot_curves(histories, path, title):
    plt, _ = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (label, h) in enumerate(histories):
        a1.plot(h["epoch"], h["loss"], color=f"C{i}", ls="--")
        a1.plot(h["epoch"], h["val_loss"], color=f"C{i}", label=label)
        a2.plot(h["epoch"], h["accuracy"], color=f"C{i}", ls="--")
        a2.plot(h["epoch"], h["val_accuracy"], color=f"C{i}", label=label)
    a1.set(xlabel="epoch", ylabel="loss (dashed: train, solid: validation)")
    a2.set(xlabel="epoch", ylabel="accuracy (dashed: train, solid: validation)")
    a2.legend(fontsize=7)
    fig.suptitle(title)
    _save(fig, path)


# --------------------------------------------------------------- training
