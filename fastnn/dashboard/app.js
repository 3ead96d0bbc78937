// fastnn dashboard: the runs table, parallel coordinates, importance, learning curves and the
// best model, drawn with plotly.js from window.FASTNN_DATA (written by fastnn.dashboard).
(function () {
  "use strict";
  const D = window.FASTNN_DATA;
  const runs = D.runs;
  const byId = new Map(runs.map((r) => [r.id, r]));
  const RESULTS = ["metric", "val_accuracy", "val_loss", "accuracy", "loss", "test_accuracy",
                   "epochs", "seconds"];
  const state = {
    brushed: null,   // ids inside every brushed axis range, or null when nothing is brushed
    text: "",
    sort: {key: "metric", desc: D.goal !== "minimize"},
    picked: new Set(D.best ? [D.best] : []),
  };

  const norm = (v) => (typeof v === "string" ? v.toLowerCase() : v);
  const fmt = (v, digits) => {
    if (v === null || v === undefined) return "";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(2) : v.toFixed(digits || 4);
  };

  // ------------------------------------------------- parallel coordinates (plotly SVG)
  // Each axis maps its setting to [0, 1]: categories evenly (in order), numbers linearly or,
  // for log axes, by log10. Lines are drawn in a few traces binned by the metric's colour
  // (SVG: quick to draw where WebGL is software-rendered); a box dragged over an axis
  // (select mode) keeps the runs whose value lies in its height on that axis.
  const AXES = D.params.map((p) => ({p: p, label: p.name + (p.log ? " (log)" : "")}));
  AXES.push({p: {name: D.metric, kind: "metric"}, label: D.metric});
  const BINS = 8;
  const COLOURS = ["#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d",
                   "#a0da39", "#fde725"];

  function raw(axis, run) {
    const p = axis.p;
    if (p.kind === "metric") return run.metric === null ? NaN : run.metric;
    const v = norm(run.config[p.name]);
    if (v === null || v === undefined) return NaN;
    if (p.kind === "cat") { const i = p.values.indexOf(v); return i < 0 ? NaN : i; }
    return p.log ? Math.log10(v) : v;
  }

  AXES.forEach((axis) => {
    const values = runs.map((r) => raw(axis, r)).filter(Number.isFinite);
    if (axis.p.kind === "cat") {
      axis.lo = 0; axis.hi = Math.max(1, axis.p.values.length - 1);
    } else {
      axis.lo = values.length ? Math.min(...values) : 0;
      axis.hi = values.length ? Math.max(...values) : 1;
      if (axis.hi === axis.lo) { axis.lo -= 0.5; axis.hi += 0.5; }
    }
  });
  const place = (axis, v) => (v - axis.lo) / (axis.hi - axis.lo);
  const positions = runs.map((r) => AXES.map((a) => place(a, raw(a, r))));
  const brushes = new Map();  // axis index -> [low, high] in the axis's [0, 1] units

  function ticks(axis, j) {
    const p = axis.p, out = [];
    const add = (v, text) => out.push({x: j, y: place(axis, v), text: text, xanchor: "right",
                                       showarrow: false, font: {size: 10}, xshift: -4});
    if (p.kind === "cat") p.values.forEach((v, i) => add(i, fmt(v)));
    else if (p.log) {
      for (let e = Math.ceil(axis.lo); e <= Math.floor(axis.hi); e++) add(e, fmt(Math.pow(10, e)));
    } else {
      for (let i = 0; i <= 4; i++) {
        const v = axis.lo + (i / 4) * (axis.hi - axis.lo);
        add(v, fmt(v, 3));
      }
    }
    return out;
  }

  function coordsFigure() {
    const kept = runs.map((r) => !state.brushed || state.brushed.has(r.id));
    const metric = runs.map((r) => r.metric);
    const finite = metric.filter((v) => v !== null);
    const lo = Math.min(...finite), hi = Math.max(...finite);
    const bin = (v) => {
      if (v === null) return 0;
      const t = hi > lo ? (v - lo) / (hi - lo) : 1;
      return Math.min(BINS - 1, Math.floor((D.goal === "minimize" ? 1 - t : t) * BINS));
    };
    const lines = Array.from({length: BINS + 1}, () => ({x: [], y: []}));
    runs.forEach((r, i) => {
      const target = lines[kept[i] ? 1 + bin(r.metric) : 0];
      AXES.forEach((_, j) => { target.x.push(j); target.y.push(positions[i][j]); });
      target.x.push(null); target.y.push(null);
    });
    const traces = lines.map((l, k) => ({
      type: "scatter", mode: "lines", x: l.x, y: l.y, hoverinfo: "skip", showlegend: false,
      line: {width: 1, color: k === 0 ? "rgba(180,180,180,0.35)" : COLOURS[k - 1]},
      opacity: k === 0 ? 1 : 0.55,
    }));
    const annotations = AXES.flatMap((a, j) => [
      {x: j, y: 1.08, text: `<b>${a.label}</b>`, showarrow: false, font: {size: 11}},
      ...ticks(a, j)]);
    annotations.push({x: -0.65, y: -0.03, showarrow: false, font: {size: 10},
                      xanchor: "left", yanchor: "top",
                      text: `colour: ${D.metric} from ${fmt(lo)} (dark) to ${fmt(hi)} (light)` +
                        (brushes.size ? "; grey: runs outside the boxes" : "")});
    const shapes = AXES.map((_, j) => ({type: "line", x0: j, x1: j, y0: 0, y1: 1,
                                       line: {color: "#444", width: 1}}));
    brushes.forEach((r, j) => shapes.push({type: "rect", x0: j - 0.08, x1: j + 0.08, y0: r[0],
                                           y1: r[1], fillcolor: "rgba(255,140,0,0.25)",
                                           line: {color: "darkorange"}}));
    return {traces: traces, layout: {
      dragmode: "select", selectdirection: "any", hovermode: false,
      xaxis: {visible: false, range: [-0.7, AXES.length - 0.3], fixedrange: true},
      yaxis: {visible: false, range: [-0.1, 1.14], fixedrange: true},
      margin: {l: 10, r: 10, t: 10, b: 10}, annotations: annotations, shapes: shapes,
    }};
  }

  function drawCoords() {
    const f = coordsFigure();
    Plotly.react("coords", f.traces, f.layout, {displaylogo: false, responsive: true,
                                                 modeBarButtonsToRemove: ["lasso2d"]});
  }

  function applyBrushes() {
    if (!brushes.size) state.brushed = null;
    else {
      state.brushed = new Set(runs.filter((r, i) => [...brushes].every(([j, [a, b]]) =>
        positions[i][j] >= a && positions[i][j] <= b)).map((r) => r.id));
    }
    drawCoords();
    drawTable();
  }

  function brush(j, range) {
    if (range) brushes.set(j, [Math.min(...range), Math.max(...range)]); else brushes.delete(j);
    applyBrushes();
  }

  function wireCoords() {
    const gd = document.getElementById("coords");
    gd.on("plotly_selected", (event) => {
      if (!event || !event.range) return;
      const [x0, x1] = event.range.x, [y0, y1] = event.range.y;
      AXES.forEach((_, j) => {
        if (j >= Math.min(x0, x1) - 0.15 && j <= Math.max(x0, x1) + 0.15) {
          brushes.set(j, [Math.max(0, Math.min(y0, y1)), Math.min(1, Math.max(y0, y1))]);
        }
      });
      Plotly.relayout(gd, {selections: []}).then(applyBrushes);
    });
    gd.on("plotly_deselect", () => { brushes.clear(); applyBrushes(); });
  }

  // ---------------------------------------------------------------------- table
  function columns() {
    const cols = [{key: "id", label: "run", text: true}];
    if (D.sources.length > 1) cols.push({key: "sweep", label: "sweep", text: true});
    cols.push({key: "status", label: "status", text: true});
    D.params.forEach((p) => cols.push({key: "config." + p.name, label: p.name, param: p}));
    RESULTS.forEach((k) => cols.push({key: k, label: k === "metric" ? D.metric + " (metric)" : k}));
    return cols;
  }
  const COLS = columns();

  function cell(run, col) {
    return col.key.startsWith("config.") ? run.config[col.key.slice(7)] : run[col.key];
  }

  function visibleRuns() {
    const text = state.text.trim().toLowerCase();
    let rows = runs.filter((r) => !state.brushed || state.brushed.has(r.id));
    if (text) {
      rows = rows.filter((r) => COLS.some((c) => String(fmt(cell(r, c))).toLowerCase()
        .includes(text)));
    }
    const col = COLS.find((c) => c.key === state.sort.key) || COLS[0];
    const sign = state.sort.desc ? -1 : 1;
    return rows.slice().sort((a, b) => {
      const x = cell(a, col), y = cell(b, col);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sign;
    });
  }

  function drawTable() {
    const table = document.getElementById("runs");
    table.tHead.innerHTML = "<tr>" + COLS.map((c) =>
      `<th data-key="${c.key}" class="${c.text ? "text" : ""}">${c.label}` +
      (state.sort.key === c.key ? (state.sort.desc ? " &#9660;" : " &#9650;") : "") +
      "</th>").join("") + "</tr>";
    const rows = visibleRuns();
    table.tBodies[0].innerHTML = rows.map((r) => {
      const cls = [r.id === D.best ? "best" : "", state.picked.has(r.id) ? "picked" : ""];
      return `<tr data-id="${r.id}" class="${cls.join(" ").trim()}">` + COLS.map((c) => {
        const v = cell(r, c);
        const extra = c.key === "status" ? ` status-${v}` : "";
        const title = c.key === "status" && r.error ? ` title="${String(r.error)
          .replace(/"/g, "&quot;")}"` : "";
        return `<td class="${c.text ? "text" : ""}${extra}"${title}>${fmt(v)}</td>`;
      }).join("") + "</tr>";
    }).join("");
    document.getElementById("shown").textContent =
      `(${rows.length} of ${runs.length} shown; the best run is highlighted)`;
  }

  function wireTable() {
    const table = document.getElementById("runs");
    table.tHead.addEventListener("click", (e) => {
      const key = e.target.closest("th") && e.target.closest("th").dataset.key;
      if (!key) return;
      state.sort = {key: key, desc: state.sort.key === key ? !state.sort.desc : true};
      drawTable();
    });
    table.tBodies[0].addEventListener("click", (e) => {
      const tr = e.target.closest("tr");
      if (tr) pick(tr.dataset.id);
    });
    document.getElementById("filter").addEventListener("input", (e) => {
      state.text = e.target.value;
      drawTable();
    });
  }

  function pick(id) {
    if (state.picked.has(id)) state.picked.delete(id); else state.picked.add(id);
    drawTable();
    drawCurves();
  }

  // ------------------------------------------------------------- learning curves
  function drawCurves() {
    const traces = [];
    const palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
                     "#8c564b", "#e377c2"];
    [...state.picked].forEach((id, k) => {
      const r = byId.get(id);
      if (!r) return;
      const h = r.history, color = palette[k % palette.length];
      const line = (key, axis, dash, name) => ({
        x: h.epoch, y: h[key], xaxis: "x", yaxis: axis, mode: "lines+markers",
        name: `${id} ${name}`, line: {color: color, dash: dash}, marker: {size: 4},
        legendgroup: id,
      });
      traces.push(line("loss", "y", "solid", "loss"), line("val_loss", "y", "dash", "val_loss"),
                  line("accuracy", "y2", "solid", "acc"),
                  line("val_accuracy", "y2", "dash", "val_acc"));
      if (r.status === "stopped" && h.epoch.length) {
        const last = h.epoch.length - 1;
        traces.push({x: [h.epoch[last]], y: [h.val_accuracy[last]], xaxis: "x", yaxis: "y2",
                     mode: "markers+text", text: ["stopped"], textposition: "top center",
                     marker: {symbol: "x", size: 12, color: color}, showlegend: false,
                     name: `${id} stopped by hyperband`});
      }
    });
    const layout = {
      grid: {rows: 1, columns: 2, pattern: "independent"},
      xaxis: {title: {text: "epoch"}}, xaxis2: {title: {text: "epoch"}},
      yaxis: {title: {text: "loss"}, type: "log"},
      yaxis2: {title: {text: "accuracy"}, anchor: "x2"},
      margin: {l: 55, r: 10, t: 20, b: 40}, legend: {font: {size: 10}},
    };
    traces.forEach((t) => { if (t.yaxis === "y2") t.xaxis = "x2"; });
    Plotly.react("curves", traces, layout, {responsive: true, displaylogo: false});
  }

  // ---------------------------------------------------------------- importance
  function drawImportance() {
    const imp = D.importance;
    document.getElementById("importance-method").textContent =
      imp.method + (imp.n_runs ? ` (${imp.n_runs} runs)` : "") + (imp.note ? "; " + imp.note : "");
    const values = imp.values.slice().reverse();
    Plotly.newPlot("importance", [{
      type: "bar", orientation: "h", x: values.map((v) => v.importance),
      y: values.map((v) => v.name), text: values.map((v) => (100 * v.importance).toFixed(1) + "%"),
      textposition: "auto", marker: {color: "#1f3b57"},
    }], {margin: {l: 110, r: 10, t: 10, b: 30}, xaxis: {range: [0, 1], tickformat: ".0%"}},
    {responsive: true, displaylogo: false});
  }

  // ---------------------------------------------------------------- best model
  function drawModel() {
    const m = D.model;
    const note = document.getElementById("model-note");
    if (!m || !m.matrix) {
      note.textContent = (m && m.note) || "no model";
      document.querySelector("#model-section .row").hidden = true;
      return;
    }
    document.getElementById("model-run").textContent =
      `(run ${m.run}: ${(100 * m.accuracy).toFixed(2)}% on ${m.n_test} test rows)`;
    const total = m.matrix.flat().reduce((a, b) => a + b, 0);
    note.textContent = `Rows: true class; columns: predicted. The counts sum to ${total}.`;
    Plotly.newPlot("confusion", [{
      type: "heatmap", z: m.matrix, x: m.class_names, y: m.class_names, colorscale: "Blues",
      reversescale: true,
      texttemplate: "%{z}", hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
    }], {margin: {l: 90, r: 10, t: 10, b: 80},
         yaxis: {autorange: "reversed", type: "category", title: {text: "true"}},
         xaxis: {title: {text: "predicted"}, type: "category"}},
    {responsive: true, displaylogo: false});
    const box = document.getElementById("mistakes");
    if (!m.shape) {
      document.getElementById("mistakes-wrap").hidden = true;
      return;
    }
    const [h, w] = m.shape;
    m.mistakes.forEach((x) => {
      const fig = document.createElement("figure");
      const canvas = document.createElement("canvas");
      canvas.width = w; canvas.height = h;
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(w, h);
      x.pixels.forEach((v, i) => { img.data.set([v, v, v, 255], 4 * i); });
      ctx.putImageData(img, 0, 0);
      const cap = document.createElement("figcaption");
      cap.textContent = `${m.class_names[x.true]} \u2192 ${m.class_names[x.pred]} ` +
        `${(100 * x.p).toFixed(0)}%`;
      fig.append(canvas, cap);
      box.append(fig);
    });
  }

  // --------------------------------------------------------------------- page
  function header() {
    document.getElementById("title").textContent = D.title;
    const counts = {};
    runs.forEach((r) => { counts[r.status] = (counts[r.status] || 0) + 1; });
    const parts = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
    document.getElementById("summary").textContent =
      `${runs.length} runs (${parts}); metric ${D.metric} (${D.goal}); best run ` +
      `${D.best || "none"}; written ${D.generated}`;
    if (D.live) {
      const live = document.getElementById("live");
      live.hidden = false;
      live.textContent = `live: ${counts.running || 0} running; this page reloads itself`;
      setTimeout(() => window.location.reload(), 3000);
    }
  }

  const timings = {start: performance.now()};
  const step = (name, fn) => { fn(); timings[name] = performance.now(); };
  step("header", header);
  step("coords", () => { drawCoords(); wireCoords(); });
  step("table", () => { wireTable(); drawTable(); });
  step("importance", drawImportance);
  step("curves", drawCurves);
  step("model", drawModel);
  window.fastnnDashboard = {
    visibleIds: () => visibleRuns().map((r) => r.id),
    brush: brush,
    brushes: () => Object.fromEntries(brushes),
    axisValue: (j, id) => positions[runs.findIndex((r) => r.id === id)][j],
    pick: pick,
    curveRuns: () => [...new Set(document.getElementById("curves").data
      .map((t) => t.legendgroup).filter(Boolean))],
    readyAt: performance.now(),
    timings: timings,
  };
  document.body.dataset.ready = "1";
}());
