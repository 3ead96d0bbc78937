"""Inference: fastnn's predict_proba against onnxruntime on the same exported model.

The model is ``fastnn train``'s default network (784-256-256-256-10, ReLU,
float32) with its pixel scaling, trained for one epoch on Fashion-MNIST when
the data is found (else on random pixels: the speed does not depend on the
weights' values). Both sides take raw 0-255 pixels and return probabilities
(fastnn: ``preprocessing.apply`` then ``predict_proba``; onnxruntime: the
exported graph, which scales inside). Batches of 1, 64 and 10,000 rows,
fastnn and onnxruntime interleaved, median time per call::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench.inference \\
        --data-dir ../shared/data/fashion-mnist

Needs ``pip install "fastnn[onnx]"``. With ``--jax`` (JAX installed) JAX's
jitted forward pass of the same weights joins the table.
"""

import argparse
import statistics
import time

import numpy as np

import fastnn
from bench.common import machine_line
from fastnn import onnx_export
from fastnn.preprocessing import Preprocessing

SIZES = [784, 256, 256, 256, 10]


def build_model(data_dir):
    """The default network with pixel scaling; raw test pixels (uint8 as float32)."""
    net = fastnn.Network(SIZES, seed=0)
    prep = Preprocessing.pixels(784, (28, 28))
    try:
        ds = fastnn.datasets.load("fashion_mnist", data_dir=data_dir, download=False)
        X, y = prep.apply(ds.x_train), ds.y_train
        opt = fastnn.optimizers.get("adam", net.params)
        fastnn.fit(net, opt, X, y, epochs=1, batch_size=128)
        raw, source = ds.x_test.reshape(-1, 784).astype(np.float32), "Fashion-MNIST test set"
    except fastnn.DataError:
        raw = np.random.default_rng(0).integers(0, 256, (10_000, 784)).astype(np.float32)
        source = "random pixels"
    net.preprocessing = prep
    return net, raw, source


def fastnn_predict(net):
    prep = net.preprocessing

    def run(x):
        return net.predict_proba(prep.apply(x))

    return run


def onnx_predict(net):
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_export.to_onnx(net).SerializeToString(),
                                providers=["CPUExecutionProvider"])

    def run(x):
        return sess.run([onnx_export.OUTPUT], {onnx_export.INPUT: x})[0]

    return run, sess.get_session_options().intra_op_num_threads


def jax_predict(net):
    import jax
    import jax.numpy as jnp

    weights = [(jnp.asarray(layer.W), jnp.asarray(layer.b)) for layer in net.layers]
    scale = jnp.asarray(net.preprocessing.scale.astype(np.float32))

    @jax.jit
    def forward(x):
        a = x * scale
        for W, b in weights[:-1]:
            a = jax.nn.relu(a @ W + b)
        W, b = weights[-1]
        return jax.nn.softmax(a @ W + b, axis=1)

    def run(x):
        return np.asarray(forward(x).block_until_ready())

    return run


def time_per_call(fn, x, min_seconds=0.3):
    """Median seconds per call over ~min_seconds of calls (after a warm-up call)."""
    fn(x)
    times = []
    end = time.perf_counter() + min_seconds
    while time.perf_counter() < end or len(times) < 5:
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 10_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jax", action="store_true")
    args = parser.parse_args(argv)
    net, raw, source = build_model(args.data_dir)
    ours = fastnn_predict(net)
    theirs, ort_threads = onnx_predict(net)
    systems = {"fastnn": ours, "onnxruntime": theirs}
    if args.jax:
        systems["jax jit"] = jax_predict(net)
    np.testing.assert_allclose(theirs(raw), ours(raw), atol=1e-5, rtol=0)
    print(f"# {machine_line()}")
    print(f"# model {SIZES} ReLU float32 with pixel scaling, inputs from the {source}; "
          f"onnxruntime intra-op threads {ort_threads or 'default'}; median per call, "
          f"{args.rounds} interleaved rounds (best round shown)")
    header = "| batch | " + " | ".join(systems) + " | fastnn speed / onnxruntime |"
    print(header)
    print("|" + "---|" * (len(systems) + 2))
    for batch in args.batches:
        x = np.ascontiguousarray(raw[:batch])
        rounds = [{name: time_per_call(fn, x) for name, fn in systems.items()}
                  for _ in range(args.rounds)]
        best = {name: min(r[name] for r in rounds) for name in systems}
        cells = " | ".join(f"{best[n] * 1e6:,.0f} us" for n in systems)
        print(f"| {batch:,} | {cells} | {best['onnxruntime'] / best['fastnn']:.2f}x |")


if __name__ == "__main__":
    main()
