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

  // ------------------------------------------------------------ axes of the settings
  function axisValue(p, run) {
    const v = norm(run.config[p.name]);
    if (v === null || v === undefined) return NaN;
    if (p.kind === "cat") {
      const i = p.values.indexOf(v);
      return i < 0 ? NaN : i;
    }
    return p.log ? Math.log10(v) : v;
  }

  function logTicks(lo, hi) {
    const vals = [];
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) vals.push(e);
    return {tickvals: vals, ticktext: vals.map((e) => fmt(Math.pow(10, e)))};
  }

  function dimensions() {
    const dims = D.params.map((p) => {
      const values = runs.map((r) => axisValue(p, r));
      const dim = {label: p.name + (p.log ? " (log)" : ""), values: values};
      if (p.kind === "cat") {
        dim.tickvals = p.values.map((_, i) => i);
        dim.ticktext = p.values.map((v) => fmt(v));
        dim.range = [0, Math.max(1, p.values.length - 1)];
      } else if (p.log) {
        const finite = values.filter(Number.isFinite);
        Object.assign(dim, logTicks(Math.min(...finite), Math.max(...finite)));
      }
      return dim;
    });
    dims.push({label: D.metric, values: runs.map((r) => (r.metric === null ? NaN : r.metric))});
    return dims;
  }

  // the ids inside every constrained axis range, or null when no axis is constrained
  function brushedIds(gd) {
    const dims = gd.data[0].dimensions;
    let active = false;
    const keep = runs.map(() => true);
    dims.forEach((dim) => {
      let ranges = dim.constraintrange;
      if (!ranges || !ranges.length) return;
      if (!Array.isArray(ranges[0])) ranges = [ranges];
      active = true;
      dim.values.forEach((v, i) => {
        if (!ranges.some((r) => v >= Math.min(r[0], r[1]) && v <= Math.max(r[0], r[1]))) {
          keep[i] = false;
        }
      });
    });
    return active ? new Set(runs.filter((_, i) => keep[i]).map((r) => r.id)) : null;
  }

  function drawCoords() {
    const gd = document.getElementById("coords");
    const metric = runs.map((r) => (r.metric === null ? NaN : r.metric));
    const finite = metric.filter(Number.isFinite);
    const trace = {
      type: "parcoords",
      dimensions: dimensions(),
      line: {color: metric.map((v) => (Number.isFinite(v) ? v : Math.min(...finite))),
             colorscale: "Viridis", reversescale: D.goal === "minimize", showscale: true,
             colorbar: {title: {text: D.metric}}},
    };
    Plotly.newPlot(gd, [trace], {margin: {l: 60, r: 80, t: 50, b: 20}},
                   {responsive: true, displaylogo: false});
    gd.on("plotly_restyle", () => {
      state.brushed = brushedIds(gd);
      drawTable();
    });
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
      imp.method + (imp.n_runs ? ` (${imp.n_runs} runs)` : "") + (imp.note ? ": " + imp.note : "");
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
      texttemplate: "%{z}", hovertemplate: "true %{y}, predicted %{x}: %{z}<extra></extra>",
    }], {margin: {l: 90, r: 10, t: 10, b: 80}, yaxis: {autorange: "reversed"},
         xaxis: {title: {text: "predicted"}}}, {responsive: true, displaylogo: false});
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

  header();
  drawCoords();
  wireTable();
  drawTable();
  drawImportance();
  drawCurves();
  drawModel();
  window.fastnnDashboard = {
    visibleIds: () => visibleRuns().map((r) => r.id),
    brush: (dim, range) => Plotly.restyle("coords", {[`dimensions[${dim}].constraintrange`]:
                                                       [range]}),
    pick: pick,
    curveRuns: () => [...new Set(document.getElementById("curves").data
      .map((t) => t.legendgroup).filter(Boolean))],
    readyAt: performance.now(),
  };
  document.body.dataset.ready = "1";
}());
