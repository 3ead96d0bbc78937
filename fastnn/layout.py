"""Where a network's parameters and batch buffers live: described once.

A :class:`Layout` is worked out from the layer sizes alone and is the one
place that knows the offsets. The flat parameter vector holds, in order,
``W1, b1, W2, b2, ..., WL, bL`` (W_l row-major, shape (n_in, n_out)) and
then, with batch normalisation, ``gamma1, beta1, ..., gamma_{L-1},
beta_{L-1}`` of the hidden layers; the gradient vector has the same
layout. The batch buffers put every layer's rows end to end: layer l's
pre-activation ``z`` (and its dL/dz, ``delta``) is the block of
``capacity * n_out`` elements starting at ``capacity * (n_1 + ... +
n_{l-1})``; the per-hidden-layer buffers (dropout masks, dropped
activations, the activation inputs kept for GELU and SiLU) use the same
offsets in arrays that stop after the last hidden layer.

The layers' views (:class:`~fastnn.layers.Dense`,
:class:`~fastnn.batchnorm.BatchNorm`), the network's buffers,
:meth:`Network.gradients <fastnn.Network.gradients>` and the compiled
training step (through :meth:`Layout.table`) all take their offsets here.
"""

import itertools

import numpy as np

# columns of Layout.table: one row per layer
N_IN, N_OUT, W_START, B_START, B_STOP, BUF_START = range(6)


class Layout:
    """Offsets of one network's parameters and batch buffers.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_features, hidden_1, ..., n_classes]``.
    batch_norm : bool
        Whether each hidden layer has ``gamma`` and ``beta`` (and running
        statistics).
    """

    def __init__(self, layer_sizes, batch_norm=False):
        self.sizes = tuple(int(s) for s in layer_sizes)
        self.weights, self.biases = [], []
        offset = 0
        for n_in, n_out in itertools.pairwise(self.sizes):
            self.weights.append(slice(offset, offset + n_in * n_out))
            offset += n_in * n_out
            self.biases.append(slice(offset, offset + n_out))
            offset += n_out
        self.n_dense = offset
        self.gammas, self.betas, self.means, self.vars = [], [], [], []
        stats = 0
        for units in (self.sizes[1:-1] if batch_norm else ()):
            self.gammas.append(slice(offset, offset + units))
            self.betas.append(slice(offset + units, offset + 2 * units))
            self.means.append(slice(stats, stats + units))
            self.vars.append(slice(stats + units, stats + 2 * units))
            offset += 2 * units
            stats += 2 * units
        self.n_params = offset
        self.n_stats = stats
        self.widths = self.sizes[1:]

    @property
    def n_layers(self):
        """Number of dense layers (hidden layers plus the output layer)."""
        return len(self.widths)

    def shapes(self):
        """Shapes of :meth:`views` in order: ``(n_in, n_out), (n_out,)`` per layer, then BN."""
        out = []
        for n_in, n_out in itertools.pairwise(self.sizes):
            out.extend(((n_in, n_out), (n_out,)))
        for g in self.gammas:
            out.extend(((g.stop - g.start,),) * 2)
        return out

    def views(self, flat):
        """``[W1, b1, ..., WL, bL, gamma1, beta1, ...]`` as views of ``flat``."""
        out = []
        for w, b, (n_in, n_out) in zip(self.weights, self.biases,
                                       itertools.pairwise(self.sizes)):
            out.extend((flat[w].reshape(n_in, n_out), flat[b]))
        for g, b in zip(self.gammas, self.betas):
            out.extend((flat[g], flat[b]))
        return out

    def stat_views(self, stats):
        """``[running_mean1, running_var1, ...]`` as views of the statistics array."""
        return [a for m, v in zip(self.means, self.vars) for a in (stats[m], stats[v])]

    def buffer_start(self, layer, capacity):
        """First element of ``layer``'s block in the batch buffers of ``capacity`` rows."""
        return capacity * sum(self.widths[:layer])

    def buffer_size(self, capacity, hidden_only=False):
        """Elements of the per-layer (or per-hidden-layer) buffers for ``capacity`` rows."""
        return capacity * sum(self.widths[:-1] if hidden_only else self.widths)

    def block(self, array, layer, capacity):
        """Layer ``layer``'s (capacity, n_out) block of a buffer laid out here."""
        start = self.buffer_start(layer, capacity)
        width = self.widths[layer]
        return array[start:start + capacity * width].reshape(capacity, width)

    def table(self, capacity):
        """One row per layer: ``n_in, n_out, W start, b start, b stop, buffer start``.

        The compiled training step reads its offsets from this table (the
        column indices are this module's ``N_IN`` ... ``BUF_START``).
        """
        rows = [(n_in, n_out, w.start, b.start, b.stop, self.buffer_start(i, capacity))
                for i, (w, b, (n_in, n_out)) in enumerate(zip(
                    self.weights, self.biases, itertools.pairwise(self.sizes)))]
        return np.array(rows, dtype=np.intp)
