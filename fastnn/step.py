"""The training step compiled whole, derived from the Python step and the registries.

:meth:`Network.compiled_step <fastnn.Network.compiled_step>` builds a
:class:`CompiledStep`: one compiled call per batch that gathers the rows,
runs forward, loss and backward and the optimizer's update. It is the
Python step (:meth:`Network.train_step_ <fastnn.Network.train_step_>`
with the numba kernels) written as one program:

- the same fused kernels, chosen from the same registries: the network's
  activation (``activations.REGISTRY``), its loss (``losses.REGISTRY``)
  and the optimizer's ``_fused`` update are bound into the program by
  name (:func:`fastnn._jit.specialized`): no code table, no dispatch at
  run time, one cached program per combination;
- the offsets of every parameter and buffer from the network's
  :class:`~fastnn.layout.Layout` (:meth:`~fastnn.layout.Layout.table`);
- the settings from the network's settings record and the optimizer's
  record (:mod:`fastnn.settings`), the same memory the Python step reads,
  so a setting changed between steps acts in both at once;
- every product through the BLAS call NumPy makes for it
  (:mod:`fastnn._blas`), so the results equal the Python step's with the
  numba kernels bit for bit (tested).

Equations, per layer l = 1..L, for a batch of n rows ``x``:

    forward   z_l = a_{l-1} @ W_l + b_l;  a_l = act(z_l)  (l < L), dropped by mask_l
    loss      p = softmax(z_L);  delta_L = dL/dz_L  (the loss kernel)
    backward  dW_l = a_{l-1}^T @ delta_l;  db_l = 1^T delta_l
              delta_{l-1} = (delta_l @ W_l^T) * mask_{l-1} * act'(z_{l-1})
              dW_l += weight_decay * W_l
    update    the optimizer's rule on [W_l, b_l] as soon as their gradient is
              complete (while it is in cache): the same arithmetic as one pass
              over the flat vector, since every rule is element-wise.

With sharpness-aware minimisation (``sam`` = rho > 0) the gradient g at w
moves the weights to ``w + rho * g / ||g||``, a second forward and backward
there (fresh dropout masks) gives the gradient the update uses, and w is
restored; with ``clip_norm`` = c > 0 the gradient is scaled by
``c / ||g||`` when its norm is above c. Both need the whole gradient first,
so the update then runs after the backward pass, over the flat vector, as
:func:`fastnn.train.fit` does it around the Python step
(:class:`fastnn.train._SharpnessAware`, :func:`fastnn.gradnorm.clip_`).
"""

import math

import numpy as np

from . import _blas, _jit, optimizers, settings
from ._jit import call_c, fused
from .augment import _gather_augmented_fused, _mix_rows_fused
from .gradnorm import _sum_squares_fused
from .layout import B_START, B_STOP, BUF_START, N_IN, N_OUT, W_START
from .passes import _dropout_fused, _weight_decay_fused


# The kernels the step calls by these names are bound per network, from the
# registries (CompiledStep._bind): these stand-ins are never called.
def _act_forward(z, b, pre, s):
    raise TypeError("bound by CompiledStep")


_act_backward = _loss = _update = _act_forward


@fused(optimizers._UPDATE_SIG, U=lambda name: optimizers.record_dtype((), name))
def _no_update(w, g, s0, s1, u):
    """The update bound when the caller updates (``update=False``): nothing."""


class CompiledStep:
    """A training step compiled whole (see :meth:`Network.compiled_step`).

    Call it with the row indices of a batch; it returns ``(loss, n_correct)``
    as :meth:`Network.train_step_` does, with ``net.grads`` filled, and
    with the optimizer's update applied when :attr:`updates` is true
    (otherwise the caller runs ``optimizer.step``). When the loss is not
    finite nothing is updated and the optimizer's step count is left as it
    was, as in the Python loop, which stops before the update.
    """

    def __init__(self, net, optimizer, X, y, batch_size, update, augment=None, rng=None,
                 clip_norm=None, sam=None):
        self.net = net
        self.clip_norm, self.sam = float(clip_norm or 0), float(sam or 0)
        self.clips = self.clip_norm > 0  # the caller must not clip again
        self.augment = augment if augment is not None and augment.active else None
        self.rng = rng
        self.optimizer = optimizer
        self.updates = bool(update) and _fusable(net, optimizer)
        self._X, self._y = X, y
        self._batch_size = batch_size
        self._gemm, self._gemv = _blas.gemm(net.dtype.name), _blas.gemv(net.dtype.name)
        self._record = np.zeros(1, settings.step_dtype())
        self._draws = np.zeros((batch_size, 3))
        self._out = np.zeros(4)
        # the batch, then one row of scratch for mixup
        self._xb = np.empty((batch_size + 1) * net.n_features, dtype=net.dtype)
        self._yb = np.empty(batch_size, dtype=np.intp)
        self._generation = None
        self._bind()

    def _bind(self):
        """Take buffers, offsets and kernels from the network as it is now."""
        net, opt = self.net, self.optimizer
        net._ensure_capacity(self._batch_size)
        aug = self.augment
        record = self._record[0]
        record["capacity"] = net._capacity
        record["update"] = self.updates
        record["in_place"] = net._loss.in_place
        record["clip_norm"], record["sam"] = self.clip_norm, self.sam
        if aug is not None:
            record["shift"], record["flip"] = aug.shift, aug.flip
            record["height"], record["width"] = aug.image_shape
            record["mix"] = bool(aug.mixup)
        empty = np.empty(0, dtype=net.dtype)
        if self.updates:
            state = [opt.state[name][0] for name in opt._state_names]
            update, u = type(opt)._fused, opt.record()
        else:
            state, update = [], _no_update
            u = np.zeros(1, optimizers.record_dtype((), net.dtype.name))
        state = tuple((state + [empty, empty])[:2])
        bufs = (net._z_all, net._delta_all, net._mask_all, net._dropped_all, net._pre_all,
                net._ones)
        self._hidden_masks = [layer.mask for layer in net.layers[:-1]] if net.dropout else []
        # SAM's second pass draws its own dropout masks, before the call
        masks2 = np.empty(net._mask_all.size if self.sam else 0, dtype=net.dtype)
        if self.sam:
            self._hidden_masks += [net.layout.block(masks2, i, net._capacity)
                                   for i in range(len(self._hidden_masks))]
        bufs2 = (*bufs[:2], masks2 if masks2.size else net._mask_all, *bufs[3:])
        self._saved = np.empty(net._flat.size if self.sam else 0, dtype=net.dtype)
        one = net.dtype.type(1)
        # the kernel's arguments before and after (idx, inv_n, lam, mu)
        self._head = (self._gemm, self._gemv, self._X, self._y)
        self._tail = (self._xb, self._yb, self._draws, net._flat, net._flat_grad,
                      net.layout.table(net._capacity), (bufs, bufs2), state, net._settings, u,
                      self._record, self._saved, self._out)
        args = (*self._head, np.zeros(1, np.intp), one, one, one, *self._tail)
        self._kernel = _jit.specialized(
            _train_step_fused, args, _act_forward=net._act.forward_fused,
            _act_backward=net._act.backward_fused, _loss=net._loss.fused, _update=update)
        self._generation = net._generation

    def __call__(self, idx):
        net, opt = self.net, self.optimizer
        if self.updates:
            opt._advance()
        lam, mu = net._no_mix
        if self.augment is not None:
            if self.augment.moves:
                self.augment.draw(self.rng, self._draws[:idx.shape[0]])
            if self.augment.mixup:
                lam, mu = self.augment.draw_mix(self.rng, net.dtype)
        loss, n_correct = self._run(idx, lam, mu)
        if self.updates and not self._out[2]:
            opt._retreat()
        return loss, n_correct

    def again(self, idx):
        """Forward and backward once more on the batch of the last call (``net.grads`` filled).

        The same rows, shifted and flipped as they were; fresh dropout
        masks. For a step that updates (:attr:`updates`) this would update
        again: it is meant for steps built with ``update=False``, as
        sharpness-aware minimisation uses them (:func:`fastnn.train.fit`'s
        ``sam``).
        """
        return self._run(idx, *self._last_mix)

    def _run(self, idx, lam, mu):
        net, out = self.net, self._out
        if net._generation != self._generation:
            self._bind()  # a setting changed kernels or buffers since the last call
        n = idx.shape[0]
        rng = net._dropout_rng
        for mask in self._hidden_masks:
            rng.random(dtype=net.dtype, out=mask[:n])
        penalty = net._penalty()
        out[3] = penalty
        self._last_mix = (lam, mu)
        self._kernel(*self._head, idx, net._inv[n], lam, mu, *self._tail)
        return out[0] / (n * net._terms_per_row) + penalty, int(out[1])


def _fusable(net, optimizer):
    """Whether the optimizer's update can run inside the compiled step."""
    return (getattr(optimizer, "_fused", None) is not None
            and getattr(optimizer, "kernels", None) == "numba"
            and len(optimizer._targets) == 1 and optimizer._targets[0] is net._flat
            and (optimizer.threads == 1 or net.n_params < optimizers.PARALLEL_MIN_SIZE))


@fused(None)
def _matmul(gemm, a, b, c, trans_a, trans_b, one):
    """``c = op(a) @ op(b)`` through NumPy's BLAS (:mod:`fastnn._blas`); C-contiguous 2-D."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    order = np.int32(_blas.ROW_MAJOR)
    no, yes = np.int32(_blas.NO_TRANS), np.int32(_blas.TRANS)
    call_c(gemm, (order, yes if trans_a else no, yes if trans_b else no, np.int64(m),
                  np.int64(n), np.int64(k), one, a.ctypes.data, np.int64(a.shape[1]),
                  b.ctypes.data, np.int64(b.shape[1]), one - one, c.ctypes.data, np.int64(n)))


@fused(None)
def _column_sums(gemv, delta, ones, db, one):
    """``db = ones @ delta`` as the matrix-vector product NumPy's ``np.dot`` runs."""
    n, k = delta.shape
    call_c(gemv, (np.int32(_blas.ROW_MAJOR), np.int32(_blas.TRANS), np.int64(n), np.int64(k),
                  one, delta.ctypes.data, np.int64(k), ones.ctypes.data, np.int64(1), one - one,
                  db.ctypes.data, np.int64(1)))


@fused(None)
def _block(array, table, layer, n, width):
    """Rows ``:n`` of ``layer``'s block of a buffer laid out by the table (empty stays empty)."""
    if array.size == 0:
        return array[:0].reshape((0, width))
    start = table[layer, BUF_START]
    return array[start:start + n * width].reshape((n, width))


@fused(None)
def _gather(X, y, idx, xb, yb, draws, step, lam, mu):
    """Rows ``idx`` of (X, y) into (xb, yb), shifted/flipped and mixed as ``step`` says."""
    n = idx.size
    n_features = X.shape[1]
    for i in range(n):
        yb[i] = y[idx[i]]
    if step.shift or step.flip:
        _gather_augmented_fused(X, idx, xb, draws, step.shift, step.flip != 0, step.height,
                                step.width)
    else:
        for i in range(n):
            row = idx[i]
            for j in range(n_features):
                xb[i * n_features + j] = X[row, j]
    x = xb[:n * n_features].reshape((n, n_features))
    if step.mix:
        _mix_rows_fused(x, lam, mu, xb[xb.size - n_features:])
    return x, yb[:n]


@fused(None)
def _forward(gemm, x, flat, table, bufs, s, drop):
    """Forward pass (:meth:`Network._forward`); returns the logits block."""
    z_all, _, mask_all, dropped_all, pre_all, _ = bufs
    n = x.shape[0]
    one = s[0].one
    last = table.shape[0] - 1
    a = x
    z = x
    for layer in range(last + 1):
        n_in, n_out = table[layer, N_IN], table[layer, N_OUT]
        W = flat[table[layer, W_START]:table[layer, B_START]].reshape((n_in, n_out))
        b = flat[table[layer, B_START]:table[layer, B_STOP]]
        z = _block(z_all, table, layer, n, n_out)
        _matmul(gemm, a, W, z, False, False, one)
        if layer == last:
            for i in range(n):
                for j in range(n_out):
                    z[i, j] += b[j]
        else:
            _act_forward(z, b, _block(pre_all, table, layer, n, n_out), s)
            a = z
            if drop:
                a = _block(dropped_all, table, layer, n, n_out)
                _dropout_fused(z, _block(mask_all, table, layer, n, n_out), a, s)
    return z


@fused(None)
def _backward(gemm, gemv, x, flat, grad, table, bufs, state, s, u, delta, update):
    """Backward pass (:meth:`Network._backward`), each layer's update right after it."""
    _, delta_all, mask_all, dropped_all, pre_all, ones = bufs
    n = x.shape[0]
    one = s[0].one
    drop = s[0].drop_p != one - one
    decay = s[0].weight_decay != one - one
    for layer in range(table.shape[0] - 1, -1, -1):
        n_in, n_out = table[layer, N_IN], table[layer, N_OUT]
        w0, b0, b1 = table[layer, W_START], table[layer, B_START], table[layer, B_STOP]
        W = flat[w0:b0].reshape((n_in, n_out))
        a_prev = pre = mask = dropped = x
        if layer:
            a_prev = _block(bufs[0], table, layer - 1, n, n_in)
            pre = _block(pre_all, table, layer - 1, n, n_in)
            if drop:
                mask = _block(mask_all, table, layer - 1, n, n_in)
                dropped = _block(dropped_all, table, layer - 1, n, n_in)
        _matmul(gemm, dropped if drop else a_prev, delta, grad[w0:b0].reshape((n_in, n_out)),
                True, False, one)
        _column_sums(gemv, delta, ones, grad[b0:b1], one)
        if layer:
            delta_prev = _block(delta_all, table, layer - 1, n, n_in)
            _matmul(gemm, delta, W, delta_prev, False, True, one)
            # NOTE: without dropout a_prev stands in for the unused mask.
            _act_backward(delta_prev, a_prev, pre, mask if drop else a_prev, drop, s)
            delta = delta_prev
        if decay:
            _weight_decay_fused(grad[w0:b0], flat[w0:b0], s)
        if update:
            _update_slice(flat, grad, state, u, w0, b1)


@fused(None)
def _update_slice(flat, grad, state, u, start, stop):
    """The optimizer's update of parameters ``start:stop`` (state sliced alike)."""
    s0, s1 = state
    _update(flat[start:stop], grad[start:stop], s0[start:stop] if s0.size else s0,
            s1[start:stop] if s1.size else s1, u)


@fused(None)
def _pass(gemm, gemv, x, labels, flat, grad, table, bufs, state, s, u, inv_n, lam, mu, rec,
          update, penalty):
    """Forward, loss and (when the loss is finite) backward; returns (sum, correct, finite)."""
    logits = _forward(gemm, x, flat, table, bufs, s, s[0].drop_p != s[0].one - s[0].one)
    n, k = logits.shape
    delta = logits if rec.in_place else _block(bufs[1], table, table.shape[0] - 1, n, k)
    total, correct = _loss(logits, labels, delta, s, inv_n, lam, mu)
    finite = np.isfinite(total + penalty)
    if finite:
        _backward(gemm, gemv, x, flat, grad, table, bufs, state, s, u, delta, update)
    return total, correct, finite


@fused(None)
def _as_dtype(value, like):
    """``value`` (float64) rounded to the dtype of array ``like``, as NumPy casts a scalar."""
    out = np.empty(1, like.dtype)
    out[0] = value
    return out[0]


@fused(None)
def _sam_perturb(flat, grad, saved, rho):
    """Save w; move to ``w + rho * g / ||g||`` (left at w when g is zero)."""
    for i in range(flat.size):
        saved[i] = flat[i]
    norm = math.sqrt(_sum_squares_fused(grad))
    if norm > 0:
        scale = _as_dtype(rho / norm, flat)
        for i in range(flat.size):
            flat[i] = grad[i] * scale + saved[i]


@fused(None)
def _train_step_fused(gemm, gemv, X, y, idx, inv_n, lam, mu, xb, yb, draws, flat, grad, table,
                      bufs, state, s, u, step, saved, out):
    """One whole training step in one compiled call; reads like the Python step.

    Gather rows ``idx`` of (X, y) (augmented and mixed as the step record
    ``step`` says, from ``draws``, ``lam`` and ``mu`` drawn by the caller);
    forward; softmax + loss into dL/dz (in place over the logits when the
    loss allows); backward with the weight-decay gradient; SAM's second
    pass and clipping when the record asks; the optimizer's update when
    ``step.update`` (layer by layer during the backward pass when neither
    SAM nor clipping needs the whole gradient first). Dropout masks hold
    uniform draws on entry, in ``bufs[0]`` for the first pass and
    ``bufs[1]`` for SAM's second (drawn by the caller from the network's
    generator, so both steps see the same masks).

    ``out`` receives (summed loss, number correct, 1.0 if the step ran
    backward and the update, 0.0 if a loss was not finite and nothing was
    changed); ``out[3]`` holds the weight-decay penalty on entry.
    """
    rec = step[0]
    x, labels = _gather(X, y, idx, xb, yb, draws, rec, lam, mu)
    whole = rec.sam > 0 or rec.clip_norm > 0  # the update needs the whole gradient first
    total, correct, finite = _pass(gemm, gemv, x, labels, flat, grad, table, bufs[0], state, s,
                                   u, inv_n, lam, mu, rec, rec.update and not whole, out[3])
    out[0] = total
    out[1] = correct
    out[2] = 0.0
    if not finite:
        return
    if rec.sam > 0:
        _sam_perturb(flat, grad, saved, rec.sam)
        total2, _, finite = _pass(gemm, gemv, x, labels, flat, grad, table, bufs[1], state, s,
                                  u, inv_n, lam, mu, rec, False, out[3])
        for i in range(flat.size):
            flat[i] = saved[i]
        if not finite:
            out[0] = total2  # the loop stops before the update, at w
            return
    if rec.clip_norm > 0:
        norm = math.sqrt(_sum_squares_fused(grad))
        if norm > rec.clip_norm:
            scale = _as_dtype(rec.clip_norm / norm, grad)
            for i in range(grad.size):
                grad[i] *= scale
    if rec.update and whole:
        _update_slice(flat, grad, state, u, 0, flat.size)
    out[2] = 1.0
