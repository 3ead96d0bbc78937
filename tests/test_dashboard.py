"""The sweep dashboard: what it reads, and the page itself in headless Chromium."""

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_cli import assert_one_line_error, run

from fastnn import dashboard
from fastnn.report import _read_sweep
from fastnn.sweep.results import Sweep

pytest.importorskip("plotly", reason='the dashboard needs plotly: pip install "fastnn[dashboard]"')

CLASSIC = REPO / "reports" / "sweep_fashion_mnist"
TINY = """\
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  dataset: {value: digits}
  epochs: {value: 3}
  num_layers: {value: 1}
  hidden_size: {values: [8, 32]}
  learning_rate: {values: [0.001, 0.01]}
  optimizer: {values: [adam, sgd]}
"""


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    from fastnn.cli import main

    root = tmp_path_factory.mktemp("sweep")
    (root / "s.yaml").write_text(TINY)
    assert main(["sweep", str(root / "s.yaml"), "--results", str(root / "r"), "--workers",
                 "2"]) == 0
    return root / "r"


def test_reads_a_sweep_as_the_report_does(tiny_sweep):
    data = dashboard.build(dashboard.collect([tiny_sweep]))
    assert len(data["runs"]) == 8 and {r["status"] for r in data["runs"]} == {"finished"}
    assert data["best"] == Sweep(tiny_sweep).best["run_id"]
    _, _, _, _, df, _ = _read_sweep(tiny_sweep)
    best = df.sort_values("metric", ascending=False).iloc[0]["run_id"]
    assert data["best"] == best  # `fastnn report` names the same run
    assert [p["name"] for p in data["params"]] == ["hidden_size", "lr", "optimizer"]
    assert data["model"]["n_test"] == 360 and np.sum(data["model"]["matrix"]) == 360
    assert len(data["model"]["mistakes"]) <= dashboard.MISTAKES
    assert all(len(m["pixels"]) == 64 for m in data["model"]["mistakes"])


def test_importance_agrees_with_itself():
    a = dashboard.build(dashboard.collect([CLASSIC]), with_model=False)["importance"]
    b = dashboard.build(dashboard.collect([CLASSIC]), with_model=False)["importance"]
    assert a == b and a["values"] and "fANOVA" in a["method"]
    assert a["values"][0]["name"] == "weight_decay"  # as Optuna ranks it on this sweep
    assert math.isclose(sum(v["importance"] for v in a["values"]), 1.0, abs_tol=0.01)


def test_axes_follow_the_values():
    runs = [{"config": {"lr": lr, "optimizer": opt, "width": w}, "status": "finished",
             "metric": 0.5} for lr, opt, w in zip(np.logspace(-5, -1, 12), ["adam", "SGD"] * 6,
                                                   [1, 2, 3] * 4)]
    params = {p["name"]: p for p in dashboard.swept_params(runs)}
    assert params["lr"] == {"name": "lr", "kind": "num", "log": True}
    assert params["optimizer"] == {"name": "optimizer", "kind": "cat", "values": ["adam", "sgd"]}
    assert params["width"] == {"name": "width", "kind": "cat", "values": [1, 2, 3]}


def test_runs_in_progress_are_shown_and_the_page_goes_live(tiny_sweep, tmp_path):
    live = tmp_path / "live"
    shutil.copytree(tiny_sweep, live)
    lines = (live / "results.jsonl").read_text().splitlines()
    (live / "results.jsonl").write_text("\n".join(lines[:5]) + "\n")  # 3 runs not recorded yet
    data = dashboard.build(dashboard.collect([live]), live=True, with_model=False)
    statuses = [r["status"] for r in data["runs"]]
    assert statuses.count("finished") == 5 and statuses.count("running") == 3
    assert data["live"] is True
    done = dashboard.build(dashboard.collect([tiny_sweep]), live=True, with_model=False)
    assert done["live"] is False  # complete: nothing to reload for


def test_watch_rewrites_until_the_sweep_is_complete(tiny_sweep, tmp_path):
    out = tmp_path / "d.html"
    data = dashboard.watch([tiny_sweep], out, interval=0.01)
    assert data is not None and not data["live"] and out.exists()


def test_the_page_is_self_contained(tiny_sweep, tmp_path, capsys):
    out = tmp_path / "d.html"
    rc, printed, err = run(["dashboard", str(tiny_sweep), "--out", str(out)], capsys)
    assert rc == 0, err
    assert "8 runs" in printed
    html = out.read_text()
    assert "<script src" not in html and "<link" not in html  # nothing loaded from elsewhere
    blob = html.split("window.FASTNN_DATA = ", 1)[1].split(";</script>", 1)[0]
    assert len(json.loads(blob)["runs"]) == 8


def test_run_folders_and_models_together(tmp_path, capsys):
    for width in (8, 16):
        assert run(["train", "-d", "digits", "-e", "2", "-nhl", "1", "-sz", str(width),
                    "--no-progress", "--run-dir", str(tmp_path / "runs" / f"w{width}"),
                    "--save", str(tmp_path / f"w{width}.npz")], capsys)[0] == 0
    data = dashboard.build(dashboard.collect([tmp_path / "runs", tmp_path / "w8.npz"]))
    assert [r["id"] for r in data["runs"]] == ["runs/w16", "runs/w8", "w8/w8"]  # unique
    assert [p["name"] for p in data["params"]] == ["hidden_size"]
    assert all(len(r["history"]["epoch"]) == 2 for r in data["runs"])
    assert data["model"]["n_test"] == 360


def test_bad_paths_are_one_line(tmp_path, capsys):
    rc, _, err = run(["dashboard", str(tmp_path)], capsys)
    assert rc == 1
    assert_one_line_error(err, "not a sweep results folder, a run folder or a model file")


# -------------------------------------------------------------- in the browser
def _browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                     if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs headless Chromium: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2100",
                "--host-resolver-rules=MAP * ~NOTFOUND"):  # no network
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=opts)


def open_page(browser, path, timeout=30):
    browser.get(Path(path).resolve().as_uri())
    end = time.time() + timeout
    while not browser.execute_script("return document.body && document.body.dataset.ready"):
        assert time.time() < end, "the page never became ready"
        time.sleep(0.05)
    return browser.execute_script("return window.fastnnDashboard.readyAt")


def errors(browser):
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


def _expected_in_range(browser, data, axis, low, high):
    """The runs whose place on ``axis`` (0-1: categories evenly spaced) is in [low, high]."""
    p = data["params"][axis]
    assert p["kind"] == "cat"
    keep = []
    for r in data["runs"]:
        v = r["config"].get(p["name"])
        place = p["values"].index(v.lower() if isinstance(v, str) else v) / (len(p["values"]) - 1)
        assert place == browser.execute_script(
            "return window.fastnnDashboard.axisValue(arguments[0], arguments[1])", axis, r["id"])
        if low <= place <= high:
            keep.append(r["id"])
    return sorted(keep)


def test_the_page_in_chromium(tiny_sweep, tmp_path, browser):
    out = tmp_path / "d.html"
    data = dashboard.write([tiny_sweep], out)
    open_page(browser, out)
    assert errors(browser) == []
    rows = browser.execute_script("return document.querySelectorAll('#runs tbody tr').length")
    assert rows == 8
    # brush the hidden_size axis with the mouse, from below its bottom (width 8) up a third:
    # exactly the runs inside the brushed range remain
    _drag_box(browser, 0, -0.04, 0.33)
    (low, high), = browser.execute_script("return window.fastnnDashboard.brushes()").values()
    shown = browser.execute_script("return window.fastnnDashboard.visibleIds()")
    assert sorted(shown) == _expected_in_range(browser, data, 0, low, high)
    assert len(shown) == 4
    assert browser.execute_script(
        "return document.querySelectorAll('#runs tbody tr').length") == 4
    # pick a run in the table: its curves are drawn next to the best run's
    other = next(r["id"] for r in data["runs"] if r["id"] != data["best"])
    browser.execute_script(
        f"document.querySelector('#runs tbody tr[data-id=\"{other}\"]')?.click()")
    if other not in shown:
        browser.execute_script(f"window.fastnnDashboard.pick({json.dumps(other)})")
    assert sorted(browser.execute_script("return window.fastnnDashboard.curveRuns()")) == \
        sorted([data["best"], other])
    total = browser.execute_script(
        "return document.getElementById('confusion').data[0].z.flat().reduce((a, b) => a + b)")
    assert total == 360
    png = tmp_path / "shot.png"
    browser.save_screenshot(str(png))
    assert _distinct_colours(png) > 50  # not blank
    assert errors(browser) == []


def _drag_box(browser, axis, low, high):
    """Drag a select box with the mouse over axis ``axis`` from height ``low`` to ``high``
    (the axis's 0-1 units), as a user brushes it."""
    from selenium.webdriver.common.action_chains import ActionChains

    x, y0, y1 = browser.execute_script(
        "const gd = document.getElementById('coords'), xa = gd._fullLayout.xaxis, "
        "ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();"
        "return [box.x + xa._offset + xa.l2p(arguments[0]), "
        "box.y + ya._offset + ya.l2p(arguments[1]), box.y + ya._offset + ya.l2p(arguments[2])]",
        axis, low, high)
    actions = ActionChains(browser)
    actions.move_by_offset(x - 15, y0).click_and_hold().move_by_offset(30, y1 - y0).release()
    actions.move_by_offset(-(x + 15), -y1).perform()  # back to the corner
    time.sleep(0.5)


def _distinct_colours(png):
    from PIL import Image

    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB").resize((350, 525))).reshape(-1, 3)
    return len(np.unique(pixels, axis=0))


@pytest.mark.slow
def test_the_900_run_sweep_in_chromium(tmp_path, browser):
    """The classic sweep's page; its screenshot is the README's (written where
    $FASTNN_DASHBOARD_SCREENSHOT says, e.g. docs/dashboard.png)."""
    out = tmp_path / "classic.html"
    dashboard.write([CLASSIC], out)
    assert out.stat().st_size < 10 * 2**20
    open_page(browser, out)
    assert errors(browser) == []
    assert browser.execute_script(
        "return document.querySelectorAll('#runs tbody tr').length") == 900
    _drag_box(browser, 3, -0.04, 0.75)  # weight_decay: keep 0 and 5e-4, drop 0.5
    shown = browser.execute_script("return window.fastnnDashboard.visibleIds()")
    assert 0 < len(shown) < 900
    assert all(r["config"]["weight_decay"] != 0.5 for r in _runs_by_id(CLASSIC, shown))
    png = Path(os.environ.get("FASTNN_DASHBOARD_SCREENSHOT") or tmp_path / "classic.png")
    browser.set_window_size(1400, 1500)
    browser.save_screenshot(str(png))
    assert _distinct_colours(png) > 50


def _runs_by_id(results, ids):
    wanted = set(ids)
    return [r for r in Sweep(results).records if r["run_id"] in wanted]


def test_hyperband_stops_are_marked_on_the_curves(tmp_path, browser):
    results = REPO / "reports" / "sweep_fashion_mnist_bayes_hyperband"
    out = tmp_path / "hb.html"
    data = dashboard.write([results], out)
    stopped = [r["id"] for r in data["runs"] if r["status"] == "stopped"]
    assert stopped  # hyperband stopped most of this sweep's runs early
    open_page(browser, out)
    browser.execute_script(f"window.fastnnDashboard.pick({json.dumps(stopped[0])})")
    names = browser.execute_script(
        "return document.getElementById('curves').data.map((t) => t.name)")
    assert f"{stopped[0]} stopped by hyperband" in names
    assert errors(browser) == []


def test_the_default_page_goes_into_the_results_folder(tiny_sweep, tmp_path, capsys):
    results = tmp_path / "r"
    shutil.copytree(tiny_sweep, results)
    rc, out, err = run(["dashboard", str(results)], capsys)
    assert rc == 0, err
    assert (results / "dashboard.html").is_file() and str(results / "dashboard.html") in out
