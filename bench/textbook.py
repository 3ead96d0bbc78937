"""The textbook NumPy MLP: the baseline fastnn is measured against.

Written the way course notes write it: float64, a fresh array for every
intermediate, separate weight and bias arrays, bias gradients by summing,
softmax and cross-entropy as separate steps, and a plain-NumPy Adam that
allocates its temporaries. Same maths as fastnn (same initialisation from
the same seed), so it doubles as an unfused reference in the benchmarks.
"""

import itertools

import numpy as np


class TextbookMLP:
    """ReLU hidden layers, softmax + cross-entropy, Adam; float64 by default."""

    def __init__(self, layer_sizes, seed=0, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 dtype=np.float64):
        rng = np.random.default_rng(seed)
        self.W, self.b = [], []
        for n_in, n_out in itertools.pairwise(layer_sizes):
            limit = np.sqrt(6.0 / (n_in + n_out))  # Xavier uniform, as fastnn draws it
            self.W.append(rng.uniform(-limit, limit, size=(n_in, n_out)).astype(dtype))
            self.b.append(np.zeros(n_out, dtype=dtype))
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in self.W + self.b]
        self.v = [np.zeros_like(p) for p in self.W + self.b]
        self.t = 0
        self.dtype = dtype

    def forward(self, X):
        activations = [X]
        a = X
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = a @ W + b
            a = np.maximum(z, 0) if i < len(self.W) - 1 else z
            activations.append(a)
        return activations

    def loss_and_gradients(self, X, y):
        """Mean cross-entropy and gradients [dW1..dWL, db1..dbL]."""
        X = X.astype(self.dtype)
        n = X.shape[0]
        acts = self.forward(X)
        logits = acts[-1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        probs = exp / exp.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(probs[np.arange(n), y]))
        onehot = np.zeros_like(probs)
        onehot[np.arange(n), y] = 1
        delta = (probs - onehot) / n
        dW, db = [None] * len(self.W), [None] * len(self.W)
        for i in range(len(self.W) - 1, -1, -1):
            dW[i] = acts[i].T @ delta
            db[i] = delta.sum(axis=0)
            if i > 0:
                delta = (delta @ self.W[i].T) * (acts[i] > 0)
        return loss, dW + db

    def train_step(self, X, y):
        loss, grads = self.loss_and_gradients(X, y)
        self.t += 1
        params = self.W + self.b
        for i, (p, g) in enumerate(zip(params, grads)):
            self.m[i] = self.beta1 * self.m[i] + (1 - self.beta1) * g
            self.v[i] = self.beta2 * self.v[i] + (1 - self.beta2) * g ** 2
            m_hat = self.m[i] / (1 - self.beta1 ** self.t)
            v_hat = self.v[i] / (1 - self.beta2 ** self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return loss
