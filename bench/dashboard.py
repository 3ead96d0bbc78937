"""The dashboard's size and time to an interactive page, and the charting libraries weighed.

For a sweep results folder (default: the 900-run classic sweep) this writes

- fastnn's dashboard (plotly.js, every view), and
- a Vega-Lite candidate of the same 900 runs (vega, vega-lite and vega-embed
  inline, bundled by ``vl-convert-python``): the parallel coordinates as
  Vega-Lite draws them (a fold of the normalised settings, coloured by the
  metric) with an interval brush on the metric axis,

opens each from ``file://`` in headless Chromium (network off) a few times
and reports the file size and the time from navigation to the page's
charts being drawn and wired (``document.body.dataset.ready``), median::

    python -m bench.dashboard reports/sweep_fashion_mnist --synthetic 10000

``--synthetic N`` also times fastnn's dashboard of an N-run synthetic sweep.
Needs plotly, selenium, Chromium and chromedriver; ``--vega`` needs altair
and vl-convert-python.
"""

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine_line
from fastnn import dashboard


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2100",
                "--host-resolver-rules=MAP * ~NOTFOUND"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def time_to_ready(path, rounds):
    """Milliseconds from navigation start to ``document.body.dataset.ready``: the first load
    in a fresh browser, and the median of the ``rounds`` loads after it (the browser has
    compiled the scripts by then)."""
    browser = chromium()
    try:
        first = _load(browser, path)
        later = statistics.median(_load(browser, path) for _ in range(rounds))
    finally:
        browser.quit()
    return first, later


def _load(browser, path):
    browser.get("about:blank")
    browser.get(Path(path).resolve().as_uri())
    end = time.time() + 120
    while not browser.execute_script("return document.body && document.body.dataset.ready"):
        if time.time() > end:
            raise RuntimeError(f"{path} never became ready")
        time.sleep(0.01)
    return browser.execute_script("return window.readyAt || window.fastnnDashboard.readyAt")


def vega_page(data, path):
    """A Vega-Lite page of the runs' parallel coordinates (the candidate)."""
    import vl_convert

    rows = []
    for r in data["runs"]:
        row = {"id": r["id"], "metric": r["metric"]}
        for p in data["params"]:
            v = r["config"].get(p["name"])
            row[p["name"]] = str(v).lower() if p["kind"] == "cat" else v
        rows.append(row)
    names = [p["name"] for p in data["params"]] + ["metric"]
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": rows}, "width": 1100, "height": 320,
        "transform": [{"window": [{"op": "count", "as": "line"}]},
                      {"fold": names},
                      {"calculate": "toString(datum.value)", "as": "label"}],
        "params": [{"name": "brush", "select": {"type": "interval", "encodings": ["y"]}}],
        "mark": {"type": "line", "opacity": 0.4},
        "encoding": {"x": {"field": "key", "type": "nominal", "sort": names},
                     "y": {"field": "label", "type": "nominal", "sort": "ascending"},
                     "color": {"field": "metric", "type": "quantitative"},
                     "detail": {"field": "line", "type": "nominal"}},
    }
    script = vl_convert.javascript_bundle()
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body><div id='vis'>"
            "</div><script>" + script.replace("</script", "<\\/script") + "</script><script>"
            "vegaEmbed('#vis', " + json.dumps(spec) + ", {renderer: 'svg'}).then(() => {"
            "window.readyAt = performance.now(); document.body.dataset.ready = '1'; });"
            "</script></body></html>")
    Path(path).write_text(page)


def synthetic_sweep(folder, n, seed=0):
    """A results folder of ``n`` finished runs with random settings and curves."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    opts = {"optimizer": ["sgd", "momentum", "nag", "rmsprop", "adam", "nadam"],
            "activation": ["sigmoid", "tanh", "relu"], "hidden_size": [32, 64, 128],
            "num_layers": [3, 4, 5], "batch_size": [16, 32, 64]}
    with open(folder / "results.jsonl", "w") as f:
        for i in range(n):
            config = {k: rng.choice(v) for k, v in opts.items()}
            config["lr"] = 10 ** rng.uniform(-5, -1)
            config["weight_decay"] = 10 ** rng.uniform(-6, -1)
            acc = [min(0.95, 0.5 + 0.04 * e + rng.uniform(-0.05, 0.05)) for e in range(10)]
            history = {"epoch": list(range(1, 11)), "accuracy": acc,
                       "val_accuracy": [a - 0.01 for a in acc],
                       "loss": [1.5 - a for a in acc], "val_loss": [1.55 - a for a in acc]}
            f.write(json.dumps({"run_id": f"{i:05d}", "index": i, "config": config,
                                "status": "finished", "history": history,
                                "val_accuracy": acc[-1] - 0.01, "val_loss": 1.55 - acc[-1],
                                "accuracy": acc[-1], "loss": 1.5 - acc[-1],
                                "test_accuracy": acc[-1] - 0.02, "wall_time": 10.0}) + "\n")
    spec = {"method": "random", "run_cap": n, "metric": {"name": "val_accuracy",
                                                         "goal": "maximize"},
            "parameters": {"lr": {"distribution": "log_uniform_values", "min": 1e-5,
                                  "max": 0.1},
                           "weight_decay": {"distribution": "log_uniform_values",
                                            "min": 1e-6, "max": 0.1}}}
    (folder / "sweep.json").write_text(json.dumps({"spec": spec, "seed": 0}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="?", default="reports/sweep_fashion_mnist")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vega", action="store_true", help="also the Vega-Lite candidate")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        data = dashboard.write([args.results], tmp / "plotly.html")
        written = time.perf_counter() - start
        n = len(data["runs"])
        rows.append((f"fastnn dashboard (plotly.js), {n} runs", tmp / "plotly.html",
                     written))
        if args.vega:
            vega_page(data, tmp / "vega.html")
            rows.append((f"Vega-Lite parallel coordinates only, {n} runs",
                         tmp / "vega.html", None))
        if args.synthetic:
            synthetic_sweep(tmp / "synthetic", args.synthetic)
            start = time.perf_counter()
            dashboard.write([tmp / "synthetic"], tmp / "synthetic.html")
            rows.append((f"fastnn dashboard (plotly.js), {args.synthetic} synthetic runs",
                         tmp / "synthetic.html", time.perf_counter() - start))
        print(f"# {machine_line()}; headless Chromium, file://, network off")
        print("| page | size | interactive: first load (fresh browser) | later loads "
              f"(median of {args.rounds}) | time to write |")
        print("|---|---|---|---|---|")
        for name, path, seconds in rows:
            first, later = time_to_ready(path, args.rounds)
            print(f"| {name} | {path.stat().st_size / 2**20:.1f} MiB | {first / 1000:.2f} s "
                  f"| {later / 1000:.2f} s | {'' if seconds is None else f'{seconds:.1f} s'} |")


if __name__ == "__main__":
    main()
