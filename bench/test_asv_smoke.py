"""Run every asv benchmark once on a corner of its grid, as a plain test."""

import json
from pathlib import Path

import pytest

from bench.asv import benchmarks

SUITES = [benchmarks.TrainStep, benchmarks.Forward, benchmarks.OptimizerUpdate,
          benchmarks.SoftmaxCrossEntropy]


def _corners(suite):
    params = suite.params if isinstance(suite.params, tuple) else (suite.params,)
    firsts = tuple(p[0] for p in params)
    lasts = tuple(p[-1] for p in params)
    return [firsts, lasts]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.__name__)
def test_suite_runs(suite):
    for args in _corners(suite):
        bench = suite()
        bench.setup(*args)
        methods = [m for m in dir(bench) if m.startswith(("time_", "track_"))]
        assert methods
        for name in methods:
            result = getattr(bench, name)(*args)  # asv passes the parameters
            if name.startswith("track_"):
                assert result > 0


def test_asv_config_points_at_the_suites():
    conf = json.loads((Path(__file__).parent.parent / "asv.conf.json").read_text())
    assert conf["benchmark_dir"] == "bench/asv"
    assert (Path(__file__).parent / "asv" / "__init__.py").is_file()
    assert "pip wheel --no-deps" in conf["build_command"][0]
    assert "OPENBLAS_NUM_THREADS" in conf["matrix"]["env_nobuild"]
