"""A trained model as an ONNX graph: preprocessing, layers, batch normalisation, softmax.

:func:`to_onnx` builds the graph of a :class:`~fastnn.Network` for
inference (dropout off, batch normalisation with the running statistics)::

    input (batch, n_features), raw features as the data set holds them
      -> (x - shift) * scale                  the model's stored preprocessing
      -> Gemm(W1, b1) [-> BatchNormalization] -> activation   per hidden layer
      -> Gemm(WL, bL) -> Softmax              output "probabilities" (batch, n_classes)

in the network's dtype (float32 or float64), with the class names in the
model's metadata (``class_names``, JSON). :func:`export` writes it to a
file. Needs the ``onnx`` package (``pip install "fastnn[onnx]"``); running
the graph needs ``onnxruntime`` (the same extra).
"""

import json
import math

import numpy as np

from .activations import REGISTRY, canonical_name
from .batchnorm import EPS
from .errors import FastnnError

OPSET = 17
INPUT, OUTPUT = "input", "probabilities"


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise FastnnError('exporting to ONNX needs the onnx package: pip install '
                          '"fastnn[onnx]"') from exc
    return onnx


class _Graph:
    """Nodes and constant tensors being collected, with fresh names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype = onnx, np.dtype(dtype)
        self.nodes, self.constants, self.count = [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def constant(self, stem, array):
        from onnx import numpy_helper

        name = self.name(stem)
        self.constants.append(numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=self.dtype), name))
        return name

    def node(self, op, inputs, stem=None, **attrs):
        out = self.name(stem or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], **attrs))
        return out


def _activation(g, name, x):
    """Append the nodes of activation ``name`` on ``x``; return the output's name."""
    act = REGISTRY[canonical_name(name)]
    if act.name == "identity":
        return x
    if act.name in ("relu", "tanh", "sigmoid"):
        return g.node({"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}[act.name], [x])
    if act.name == "leaky_relu":
        return g.node("LeakyRelu", [x], alpha=float(act.constants["slope"]))
    if act.name == "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x])], "silu")
    if act.name == "gelu":  # z/2 (1 + erf(z/sqrt 2)): Gelu itself is opset 20
        erf = g.node("Erf", [g.node("Mul", [x, g.constant("c", math.sqrt(0.5))])])
        plus = g.node("Add", [erf, g.constant("one", 1.0)])
        return g.node("Mul", [g.node("Mul", [x, plus]), g.constant("half", 0.5)], "gelu")
    raise FastnnError(f"activation {act.name!r} has no ONNX form yet")


def to_onnx(net, preprocessing=None, class_names=None):
    """The inference graph of ``net`` as an ``onnx.ModelProto`` (checked by onnx.checker).

    Parameters
    ----------
    net : Network
    preprocessing : Preprocessing, optional
        Default: ``net.preprocessing`` (None: the graph takes network inputs).
    class_names : sequence of str, optional
    """
    onnx = _onnx()
    helper = onnx.helper
    prep = preprocessing if preprocessing is not None else net.preprocessing
    g = _Graph(onnx, net.dtype)
    x = INPUT
    if prep is not None:
        if prep.shift.any():
            x = g.node("Sub", [x, g.constant("shift", prep.shift)], "centred")
        x = g.node("Mul", [x, g.constant("scale", prep.scale)], "scaled")
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers):
        x = g.node("Gemm", [x, g.constant(f"W{i + 1}", layer.W), g.constant(f"b{i + 1}", layer.b)],
                   f"z{i + 1}")
        if i == last:
            break
        if net.norms:
            bn = net.norms[i]
            x = g.node("BatchNormalization",
                       [x, g.constant("gamma", bn.gamma), g.constant("beta", bn.beta),
                        g.constant("mean", bn.running_mean), g.constant("var", bn.running_var)],
                       f"bn{i + 1}", epsilon=EPS)
        x = _activation(g, net.activation, x)
    g.nodes.append(helper.make_node("Softmax", [x], [OUTPUT], axis=1))
    elem = helper.np_dtype_to_tensor_dtype(net.dtype)
    graph = helper.make_graph(
        g.nodes, "fastnn",
        [helper.make_tensor_value_info(INPUT, elem, ["batch", net.n_features])],
        [helper.make_tensor_value_info(OUTPUT, elem, ["batch", net.n_classes])],
        initializer=g.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="fastnn")
    model.ir_version = min(model.ir_version, 8)  # readable by older onnxruntime releases
    names = list(class_names) if class_names else [str(i) for i in range(net.n_classes)]
    helper.set_model_props(model, {"class_names": json.dumps(names)})
    onnx.checker.check_model(model, full_check=True)
    return model


def export(net, path, preprocessing=None, class_names=None):
    """Write the ONNX graph of ``net`` (see :func:`to_onnx`) to ``path`` atomically."""
    from ._atomic import atomic_write_bytes

    model = to_onnx(net, preprocessing, class_names)
    atomic_write_bytes(path, model.SerializeToString())
    return path
