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

from . import _blas, _jit, _team, optimizers, settings
from ._jit import call_c, fused
from ._team import barrier, share
from .augment import _gather_augmented_fused, _mix_rows_fused
from .gradnorm import _sum_squares_fused
from .layout import B_START, B_STOP, BUF_START, N_IN, N_OUT, W_START
from .passes import _dropout_fused, _weight_decay_fused

# A team splits the products by columns for layers at least this wide with at
# most width / ratio batch rows a thread (split_by_columns).
COLUMN_SPLIT_WIDTH = 256
COLUMN_SPLIT_RATIO = 8

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
                 clip_norm=None, sam=None, threads=1):
        self.net = net
        self.clip_norm, self.sam = float(clip_norm or 0), float(sam or 0)
        self.clips = self.clip_norm > 0  # the caller must not clip again
        self.augment = augment if augment is not None and augment.active else None
        self.rng = rng
        self.optimizer = optimizer
        self._X, self._y = X, y
        self._batch_size = batch_size
        self._gemm, self._gemv = _blas.gemm(net.dtype.name), _blas.gemv(net.dtype.name)
        self._record = np.zeros(1, settings.step_dtype())
        self._draws = np.zeros((batch_size, 3))
        self._out = np.zeros(4)
        self._yb = np.empty(batch_size, dtype=np.intp)
        self._generation = None
        # a team of threads (fastnn._team) when asked and the step can be split
        splittable = not (self.clip_norm or self.sam)  # they need the whole gradient
        self.threads = int(threads) if splittable else 1
        self.updates = bool(update) and _fusable(net, optimizer, self.threads)
        # the batch, then one row of scratch for mixup a thread
        self._xb = np.empty((batch_size + self.threads) * net.n_features, dtype=net.dtype)
        self._team = None
        self._ctl = _team.control_block(1)
        self._count = np.zeros(1, np.int64)
        self._scalars = np.zeros(3, net.dtype)
        self._idx = np.zeros(batch_size, np.intp)
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
        record["columns"] = self.threads > 1 and split_by_columns(net, self._batch_size,
                                                                  self.threads)
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
                      self._record, self._saved, self._out, self._ctl)
        args = (*self._head, np.zeros(1, np.intp), one, one, one, *self._tail)
        kernels = {"_act_forward": net._act.forward_fused,
                   "_act_backward": net._act.backward_fused, "_loss": net._loss.fused,
                   "_update": update}
        self._generation = net._generation
        self.close()
        if self.threads > 1:
            self._kernel = None
            self._start_team(bufs, state, u, kernels)
        else:
            self._kernel = _jit.specialized(_train_step_fused, args, **kernels)

    def _start_team(self, bufs, state, u, kernels):
        net = self.net
        work = (self._gemm, self._gemv, self._X, self._y, self._idx, self._count,
                self._scalars, self._xb, self._yb, self._draws, net._flat, net._flat_grad,
                net.layout.table(net._capacity), bufs, state, net._settings, u, self._record,
                self._out)
        ctl = _team.control_block(self.threads)
        lead = _jit.specialized(_team.lead, (True, ctl, self.threads, work), _work=_team_step,
                                **kernels)
        loop = _jit.specialized(_team._loop, (1, self.threads, ctl, work), _work=_team_step,
                                **kernels)
        self._team = _team.Team(self.threads, lead, loop, work)

    def close(self):
        """Stop the team's worker threads, if any (idempotent; the step rebuilds them
        when called again)."""
        if self._team is not None:
            self._team.close()
            self._team = None

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
        if self._kernel is None:
            if self._team is None:
                self._bind()
            self._idx[:n] = idx
            self._count[0] = n
            scalars = self._scalars
            scalars[0], scalars[1], scalars[2] = net._inv[n], lam, mu
            self._team.run()
        else:
            self._kernel(*self._head, idx, net._inv[n], lam, mu, *self._tail)
        return out[0] / (n * net._terms_per_row) + penalty, int(out[1])


def split_by_columns(net, batch_size, threads):
    """Whether a team splits the forward and delta products by columns rather than batch rows.

    By columns when the widest layer has at least :data:`COLUMN_SPLIT_WIDTH`
    units and a thread's share of the batch at most 1/:data:`COLUMN_SPLIT_RATIO`
    of that many rows. Measured with a team of 2 (Intel Xeon, OpenBLAS
    SkylakeX, Adam, samples/s by columns over by rows): 3x1024 at batch 64
    1.27x, 128 1.14x, 256 1.05x, 1024 0.97x; 3x512 at 64 1.21x, 256 0.96x;
    3x256 at 16 1.32x, 64 1.17x, 256 0.95x; 3x128 at 16 0.95x, 64 0.95x.
    """
    width = max(layer.n_out for layer in net.layers)
    return width >= COLUMN_SPLIT_WIDTH and batch_size // threads <= width // COLUMN_SPLIT_RATIO


def _fusable(net, optimizer, threads):
    """Whether the optimizer's update can run inside the compiled step (split between a team's
    ``threads`` as the optimizer's own threads would split it)."""
    return (getattr(optimizer, "_fused", None) is not None
            and getattr(optimizer, "kernels", None) == "numba"
            and len(optimizer._targets) == 1 and optimizer._targets[0] is net._flat
            and (optimizer.threads == 1 or net.n_params < optimizers.PARALLEL_MIN_SIZE
                 or threads > 1))


@fused(None)
def _gemm(gemm, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, one):
    """``c = op(a) @ op(b)`` through NumPy's BLAS (:mod:`fastnn._blas`), on raw addresses and
    leading dimensions (so sub-blocks of arrays need no copy)."""
    no, yes = np.int32(_blas.NO_TRANS), np.int32(_blas.TRANS)
    call_c(gemm, (np.int32(_blas.ROW_MAJOR), yes if trans_a else no, yes if trans_b else no,
                  np.int64(m), np.int64(n), np.int64(k), one, a, np.int64(lda), b, np.int64(ldb),
                  one - one, c, np.int64(ldc)))


@fused(None)
def _matmul(gemm, a, b, c, trans_a, trans_b, one):
    """``c = op(a) @ op(b)``; C-contiguous 2-D arrays."""
    m, n = c.shape
    _gemm(gemm, trans_a, trans_b, m, n, a.shape[0] if trans_a else a.shape[1], a.ctypes.data,
          a.shape[1], b.ctypes.data, b.shape[1], c.ctypes.data, n, one)


@fused(None)
def _weight_grad(gemm, a, delta, dW, start, stop, one):
    """Rows ``start:stop`` of ``dW = a.T @ delta`` (the columns ``start:stop`` of ``a``).

    ``dW`` is the whole (n_in, n_out) gradient; for the whole range this is
    the very call ``_matmul(gemm, a, delta, dW, True, False, one)`` makes.
    """
    if stop > start:
        n_in, n_out = dW.shape
        size = a.itemsize
        _gemm(gemm, True, False, stop - start, n_out, a.shape[0], a.ctypes.data + start * size,
              n_in, delta.ctypes.data, n_out, dW.ctypes.data + start * n_out * size, n_out, one)


@fused(None)
def _forward_columns(gemm, a, W, z, start, stop, one):
    """Columns ``start:stop`` of ``z = a @ W``, over every row (a team's share by columns)."""
    if stop > start:
        n_in, n_out = W.shape
        size = W.itemsize
        _gemm(gemm, False, False, a.shape[0], stop - start, n_in, a.ctypes.data, n_in,
              W.ctypes.data + start * size, n_out, z.ctypes.data + start * size, n_out, one)


@fused(None)
def _delta_columns(gemm, delta, W, delta_prev, start, stop, one):
    """Columns ``start:stop`` of ``delta_prev = delta @ W.T`` (rows ``start:stop`` of W)."""
    if stop > start:
        n_in, n_out = W.shape
        size = W.itemsize
        _gemm(gemm, False, True, delta.shape[0], stop - start, n_out, delta.ctypes.data, n_out,
              W.ctypes.data + start * n_out * size, n_out, delta_prev.ctypes.data + start * size,
              n_in, one)


@fused(None)
def _column_sums(gemv, delta, ones, db, one, start, stop):
    """``db[start:stop] = ones @ delta[:, start:stop]``, the matrix-vector product NumPy's
    ``np.dot`` runs (for the whole range)."""
    if stop <= start:
        return
    n, k = delta.shape
    size = delta.itemsize
    call_c(gemv, (np.int32(_blas.ROW_MAJOR), np.int32(_blas.TRANS), np.int64(n),
                  np.int64(stop - start), one, delta.ctypes.data + start * size, np.int64(k),
                  ones.ctypes.data, np.int64(1), one - one, db.ctypes.data + start * size,
                  np.int64(1)))


@fused(None)
def _block(array, table, layer, n, width):
    """Rows ``:n`` of ``layer``'s block of a buffer laid out by the table (empty stays empty)."""
    return _rows(array, table, layer, 0, n, width)


@fused(None)
def _rows(array, table, layer, start, stop, width):
    """Rows ``start:stop`` of ``layer``'s block of a buffer laid out by the table."""
    if array.size == 0:
        return array[:0].reshape((0, width))
    first = table[layer, BUF_START] + start * width
    return array[first:first + (stop - start) * width].reshape((stop - start, width))


@fused(None)
def _gather(X, y, idx, xb, yb, draws, step, lam, mu, start, stop, scratch):
    """Rows ``idx[start:stop]`` of (X, y) into (xb, yb), shifted/flipped and mixed as ``step``
    says; returns the whole batch (x, labels). ``scratch``: one row of this thread's own.

    Mixup blends row i with row i + 1 (the last with the first): a thread
    that holds only part of the batch gathers the row after its part into
    ``scratch`` itself, as that row's own thread gathers it, so the threads
    need not wait for one another.
    """
    n = idx.size
    n_features = X.shape[1]
    for i in range(start, stop):
        yb[i] = y[idx[i]]
    _gather_rows(X, idx, xb, draws, step, start, stop)
    x = xb[:n * n_features].reshape((n, n_features))
    if step.mix:
        if start == 0 and stop == n:
            _mix_rows_fused(x, lam, mu, scratch)
        elif stop > start:
            after = stop % n
            _gather_rows(X, idx[after:after + 1], scratch, draws[after:after + 1], step, 0, 1)
            for i in range(start, stop):
                for j in range(n_features):
                    nxt = x[i + 1, j] if i + 1 < stop else scratch[j]
                    x[i, j] = x[i, j] * lam + nxt * mu
    return x, yb[:n]


@fused(None)
def _gather_rows(X, idx, xb, draws, step, start, stop):
    """Rows ``idx[start:stop]`` of X into rows ``start:stop`` of xb (flat), shifted/flipped."""
    n_features = X.shape[1]
    if step.shift or step.flip:
        _gather_augmented_fused(X, idx[start:stop], xb[start * n_features:], draws[start:stop],
                                step.shift, step.flip != 0, step.height, step.width)
    else:
        for i in range(start, stop):
            row = idx[i]
            for j in range(n_features):
                xb[i * n_features + j] = X[row, j]


@fused(None)
def _forward(gemm, x, flat, table, bufs, s, drop, start, stop, tid, size, ctl, columns):
    """Forward pass (:meth:`Network._forward`) of rows ``start:stop``; returns the logits block.

    Thread ``tid`` of a team of ``size``: rows are independent, so each
    thread runs its own rows through every layer with no barrier; with
    ``columns`` (wide layers, few rows a thread) each product is split by its
    output columns instead, over every row, and the threads meet before and
    after the activation of their own rows.
    """
    z_all, _, mask_all, dropped_all, pre_all, _ = bufs
    m = stop - start
    n = x.shape[0]
    one = s[0].one
    last = table.shape[0] - 1
    a = x if columns else x[start:stop]
    if columns:
        barrier(ctl, tid, size)  # every row gathered
    z = a
    for layer in range(last + 1):
        n_in, n_out = table[layer, N_IN], table[layer, N_OUT]
        W = flat[table[layer, W_START]:table[layer, B_START]].reshape((n_in, n_out))
        b = flat[table[layer, B_START]:table[layer, B_STOP]]
        z = _rows(z_all, table, layer, start, stop, n_out)
        if columns:
            j0, j1 = share(n_out, tid, size)
            _forward_columns(gemm, a, W, _block(z_all, table, layer, n, n_out), j0, j1, one)
            barrier(ctl, tid, size)
        else:
            _matmul(gemm, a, W, z, False, False, one)
        if layer == last:
            for i in range(m):
                for j in range(n_out):
                    z[i, j] += b[j]
        else:
            _act_forward(z, b, _rows(pre_all, table, layer, start, stop, n_out), s)
            a = z
            if drop:
                a = _rows(dropped_all, table, layer, start, stop, n_out)
                _dropout_fused(z, _rows(mask_all, table, layer, start, stop, n_out), a, s)
            if columns:
                barrier(ctl, tid, size)  # the next product reads every row
                a = _block(dropped_all if drop else z_all, table, layer, n, n_out)
    return z


@fused(None)
def _backward(tid, size, ctl, gemm, gemv, x, flat, grad, table, bufs, state, s, u, delta,
              update, columns):
    """Backward pass (:meth:`Network._backward`), each layer's update right after it.

    Thread ``tid`` of a team of ``size`` (one thread: the whole of it) computes
    the rows of each weight gradient it owns (a share of the layer's inputs)
    with its bias columns, the rows of the next delta that are its batch rows,
    and after the barrier that completes that delta (every thread is then done
    reading W) updates the parameters it owns. All threads pass the same
    barriers: one per layer. With ``columns`` the next delta is split by its
    columns (the rows of W the thread owns) over every batch row, and the
    threads meet once more before the activation's backward on their rows.
    """
    _, delta_all, mask_all, dropped_all, pre_all, ones = bufs
    n = x.shape[0]
    start, stop = share(n, tid, size)
    one = s[0].one
    drop = s[0].drop_p != one - one
    decay = s[0].weight_decay != one - one
    for layer in range(table.shape[0] - 1, -1, -1):
        n_in, n_out = table[layer, N_IN], table[layer, N_OUT]
        w0, b0, b1 = table[layer, W_START], table[layer, B_START], table[layer, B_STOP]
        W = flat[w0:b0].reshape((n_in, n_out))
        a_prev = dropped = x
        if layer:
            a_prev = _block(bufs[0], table, layer - 1, n, n_in)
            if drop:
                dropped = _block(dropped_all, table, layer - 1, n, n_in)
        i0, i1 = share(n_in, tid, size)
        j0, j1 = share(n_out, tid, size)
        _weight_grad(gemm, dropped if drop else a_prev, delta,
                     grad[w0:b0].reshape((n_in, n_out)), i0, i1, one)
        _column_sums(gemv, delta, ones, grad[b0:b1], one, j0, j1)
        if decay:
            _weight_decay_fused(grad[w0 + i0 * n_out:w0 + i1 * n_out],
                                flat[w0 + i0 * n_out:w0 + i1 * n_out], s)
        if layer:
            a_own = _rows(bufs[0], table, layer - 1, start, stop, n_in)
            pre = _rows(pre_all, table, layer - 1, start, stop, n_in)
            mask = _rows(mask_all, table, layer - 1, start, stop, n_in) if drop else a_own
            delta_prev = _rows(delta_all, table, layer - 1, start, stop, n_in)
            if columns:
                _delta_columns(gemm, delta, W, _block(delta_all, table, layer - 1, n, n_in), i0,
                               i1, one)
                barrier(ctl, tid, size)
            else:
                _matmul(gemm, delta[start:stop], W, delta_prev, False, True, one)
            # NOTE: without dropout a_own stands in for the unused mask.
            _act_backward(delta_prev, a_own, pre, mask, drop, s)
            barrier(ctl, tid, size)
            delta = _block(delta_all, table, layer - 1, n, n_in)
        if update:
            _update_slice(flat, grad, state, u, w0 + i0 * n_out, w0 + i1 * n_out)
            _update_slice(flat, grad, state, u, b0 + j0, b0 + j1)


@fused(None)
def _update_slice(flat, grad, state, u, start, stop):
    """The optimizer's update of parameters ``start:stop`` (state sliced alike)."""
    s0, s1 = state
    _update(flat[start:stop], grad[start:stop], s0[start:stop] if s0.size else s0,
            s1[start:stop] if s1.size else s1, u)


@fused(None)
def _pass(ctl, gemm, gemv, x, labels, flat, grad, table, bufs, state, s, u, inv_n, lam, mu,
          rec, update, penalty):
    """Forward, loss and (when the loss is finite) backward; returns (sum, correct, finite)."""
    n = x.shape[0]
    logits = _forward(gemm, x, flat, table, bufs, s, s[0].drop_p != s[0].one - s[0].one, 0, n,
                      0, 1, ctl, False)
    k = logits.shape[1]
    delta = logits if rec.in_place else _block(bufs[1], table, table.shape[0] - 1, n, k)
    total, correct = _loss(logits, labels, delta, s, inv_n, lam, mu)
    finite = np.isfinite(total + penalty)
    if finite:
        _backward(0, 1, ctl, gemm, gemv, x, flat, grad, table, bufs, state, s, u, delta,
                  update, False)
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
                      bufs, state, s, u, step, saved, out, ctl):
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
    changed); ``out[3]`` holds the weight-decay penalty on entry. ``ctl``:
    the control block of a team of one (:func:`fastnn._team.control_block`).
    """
    rec = step[0]
    x, labels = _gather(X, y, idx, xb, yb, draws, rec, lam, mu, 0, idx.size,
                        xb[xb.size - X.shape[1]:])
    whole = rec.sam > 0 or rec.clip_norm > 0  # the update needs the whole gradient first
    total, correct, finite = _pass(ctl, gemm, gemv, x, labels, flat, grad, table, bufs[0], state, s,
                                   u, inv_n, lam, mu, rec, rec.update and not whole, out[3])
    out[0] = total
    out[1] = correct
    out[2] = 0.0
    if not finite:
        return
    if rec.sam > 0:
        _sam_perturb(flat, grad, saved, rec.sam)
        total2, _, finite = _pass(ctl, gemm, gemv, x, labels, flat, grad, table, bufs[1], state, s,
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


@fused(None)
def _team_step(tid, size, ctl, gemm, gemv, X, y, idx, count, scalars, xb, yb, draws, flat, grad,
               table, bufs, state, s, u, step, out):
    """Thread ``tid``'s share of one training step run by a team of ``size`` (:mod:`fastnn._team`).

    The step of :func:`_train_step_fused` without SAM and clipping,
    split so that the threads write disjoint memory between barriers: each
    gathers and runs forward on its share of the batch rows (rows are
    independent: no barrier), thread 0 runs the loss over the whole batch
    (as the one-thread step does), and the backward pass splits each weight
    gradient by its rows, each bias gradient by its columns and each delta
    by its batch rows (:func:`_backward`). Every product keeps the operand
    order and the inner dimension of the one-thread step; only the split of
    rows and columns between BLAS calls differs (OpenBLAS's small-matrix
    kernels round some of those differently: the result equals the
    one-thread step's to rounding, and is the same for the same team size).

    Inputs the caller writes before the run: ``idx[:count[0]]`` the batch
    rows, ``scalars`` = (1/n, lam, mu), the dropout masks, ``out[3]`` the
    weight-decay penalty. ``out`` then holds what :func:`_train_step_fused`
    leaves there.
    """
    rec = step[0]
    n = count[0]
    inv_n, lam, mu = scalars[0], scalars[1], scalars[2]
    start, stop = share(n, tid, size)
    n_features = X.shape[1]
    scratch = xb[xb.size - (size - tid) * n_features:xb.size - (size - tid - 1) * n_features]
    x, labels = _gather(X, y, idx[:n], xb, yb, draws, rec, lam, mu, start, stop, scratch)
    drop = s[0].drop_p != s[0].one - s[0].one
    columns = rec.columns != 0
    _forward(gemm, x, flat, table, bufs, s, drop, start, stop, tid, size, ctl, columns)
    barrier(ctl, tid, size)
    last = table.shape[0] - 1
    k = table[last, N_OUT]
    logits = _block(bufs[0], table, last, n, k)
    delta = logits if rec.in_place else _block(bufs[1], table, last, n, k)
    if tid == 0:
        total, correct = _loss(logits, labels, delta, s, inv_n, lam, mu)
        out[0] = total
        out[1] = correct
        out[2] = 0.0
    barrier(ctl, tid, size)
    if not np.isfinite(out[0] + out[3]):
        return
    _backward(tid, size, ctl, gemm, gemv, x, flat, grad, table, bufs, state, s, u, delta,
              rec.update, columns)
    barrier(ctl, tid, size)
    if tid == 0:
        out[2] = 1.0
