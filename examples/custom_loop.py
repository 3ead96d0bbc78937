"""A training loop of your own: Network + optimizer, no fastnn.fit.

Run: python examples/custom_loop.py
"""

import numpy as np

import fastnn

data = fastnn.datasets.load("digits")  # 8x8 digits, always available offline
X = fastnn.datasets.preprocess(data.x_train)  # (n, 64) float32 in [0, 1]
y = data.y_train.astype(np.intp)
X_test = fastnn.datasets.preprocess(data.x_test)

net = fastnn.Network([64, 64, 10], activation="tanh", seed=0)
opt = fastnn.optimizers.get("nadam", net.params, lr=3e-3)
rng = np.random.default_rng(0)

for epoch in range(1, 16):
    order = rng.permutation(len(X))
    for start in range(0, len(X), 32):
        idx = order[start:start + 32]
        grads = net.gradients(X[idx], y[idx])  # exact gradient of net.loss on the batch
        opt.step(grads)  # updates net.params in place
    if epoch % 5 == 0:
        loss, acc = net.evaluate(X_test, data.y_test)
        print(f"epoch {epoch}: test loss {loss:.3f}  test accuracy {acc:.3f}")
