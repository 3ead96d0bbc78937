"""pytest-benchmark suites of reading data and of inference against onnxruntime.

Timed with ``pytest bench --benchmark-enable``; in CI they run once as plain
tests and check what they timed. The full-size comparisons, in fresh
processes, are ``python -m bench.csv_load`` and ``python -m bench.inference``.
"""

import numpy as np
import pytest

from bench.common import machine_line
from bench.csv_load import write_csv
from bench.inference import build_model, fastnn_predict, onnx_predict
from fastnn import readers


@pytest.fixture(scope="module")
def csv_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("csv") / "train.csv"
    write_csv(path, data_dir=None, n=5_000)
    return path


def test_read_csv(benchmark, csv_file):
    benchmark.extra_info["machine"] = machine_line()
    raw = benchmark(readers.read, csv_file)
    assert raw.x.shape == (5_000, 784) and raw.x.dtype == np.float32
    assert raw.target == "label" and raw.labels.shape == (5_000,)


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("onnxruntime")
    return build_model(data_dir="/nonexistent")  # random pixels: the speed is the same


@pytest.mark.parametrize("batch", [1, 64, 10_000])
@pytest.mark.parametrize("system", ["fastnn", "onnxruntime"])
def test_inference(benchmark, model, batch, system):
    net, raw, _ = model
    run = fastnn_predict(net) if system == "fastnn" else onnx_predict(net)[0]
    benchmark.extra_info["machine"] = machine_line()
    x = np.ascontiguousarray(raw[:batch])
    proba = benchmark(run, x)
    np.testing.assert_allclose(proba, fastnn_predict(net)(x), atol=1e-5, rtol=0)
