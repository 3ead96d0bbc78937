"""The sweep-method comparison reads results files and gets its numbers right."""

import json

from bench import sweep_methods


def _results(path, rows):
    path.mkdir()
    with open(path / "results.jsonl", "w") as f:
        f.writelines(json.dumps({"index": i, "run_id": f"{i:04d}", "status": status,
                                "val_accuracy": val,
                                "test_accuracy": None if val is None else val - 0.01,
                                "wall_time": secs, "config": {}}) + "\n" for i, (status, val, secs) in enumerate(rows))


def test_runs_and_minutes_to_reach_the_target(tmp_path):
    _results(tmp_path / "a", [("finished", 0.80, 60), ("finished", 0.85, 60),
                              ("finished", 0.84, 60)])
    _results(tmp_path / "b", [("stopped", 0.70, 6), ("finished", 0.86, 120),
                              ("failed", None, 1)])
    sweep_methods.main([f"random={tmp_path / 'a'}", f"bayes={tmp_path / 'b'}",
                        "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "sweep_methods.md").read_text()
    assert "Target: the best validation accuracy of `random`, 85.00%" in text
    assert "| random | 3 | 3.0 | 85.00% | 84.00% | 2 | 2.0 | 0 |" in text
    assert "| bayes | 3 | 2.1 | 86.00% | 85.00% | 2 | 2.1 | 1 |" in text
    assert (tmp_path / "out" / "figures" / "sweep_methods.png").stat().st_size > 5000
