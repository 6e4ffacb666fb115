/* Surge operator page: polls gradio_api/surge/status and draws it (relative URL: works under a stage path). */
"use strict";

(function () {
  const REFRESH_MS = 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#ec4899", "#14b8a6", "#84cc16"];

  let lastOk = 0;
  const cards = new Map();

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 1) return Math.round(value * 1000) + " ms";
    if (value < 60) return value.toFixed(value < 10 ? 2 : 1) + " s";
    return Math.floor(value / 60) + " min " + Math.round(value % 60) + " s";
  }

  function ago(epochS, nowS) {
    const s = Math.max(0, nowS - epochS);
    return s < 1 ? "just now" : seconds(s) + " ago";
  }

  function setMetric(node, value, text) {
    node.dataset.value = value === null || value === undefined ? "" : String(value);
    node.textContent = text;
  }

  function meter(node, used, max) {
    const fraction = max ? Math.min(1, used / max) : 0;
    node.firstElementChild.style.width = fraction * 100 + "%";
    node.classList.toggle("hot", fraction >= 0.7 && fraction < 1);
    node.classList.toggle("full", fraction >= 1);
  }

  // ---- per-function cards ------------------------------------------------------------------------

  function metric(label, key) {
    const value = el("dd", { "data-metric": key, text: "–" });
    return { node: el("div", {}, el("dt", { text: label }), value), value: value };
  }

  function makeCard(fn) {
    const tags = el("div", { class: "tags" });
    if (fn.concurrency_id !== fn.api_name) tags.append(el("span", { class: "tag", text: "group " + fn.concurrency_id }));
    if (fn.batch) tags.append(el("span", { class: "tag", text: "batched ≤ " + fn.max_batch_size }));
    if (fn.generator) tags.append(el("span", { class: "tag", text: "streams" }));
    const metrics = {
      waiting: metric("Waiting", "waiting"),
      running: metric("Running batches", "running"),
      workers: metric("Live workers", "workers"),
      eta: metric("ETA for a new arrival", "eta"),
      avg: metric("Average batch", "avg"),
      batches: metric("Batches run", "batches"),
    };
    const chart = svg("svg", { class: "batches", viewBox: "0 0 300 56", role: "img", "aria-label": "recent batches" });
    const last = el("div", { class: "hint", "data-metric": "last-batch", text: "no batch yet" });
    const failure = el("p", { class: "failed", "data-metric": "cannot-start" });
    failure.hidden = true;
    const node = el(
      "section",
      { class: "card", "data-fn": fn.api_name },
      el("header", {}, el("h3", { text: fn.api_name }), tags),
      el("dl", { class: "metrics" }, ...Object.values(metrics).map((m) => m.node)),
      failure,
      el("div", { class: "label hint", text: "Recent batches (height: duration, label: jobs)" }),
      chart,
      last,
    );
    return { node: node, metrics: metrics, chart: chart, last: last, failure: failure };
  }

  function drawBatches(chart, batches) {
    chart.replaceChildren();
    chart.dataset.count = String(batches.length);
    const total = Math.max(200, Math.round(chart.clientWidth || 300));
    chart.setAttribute("viewBox", "0 0 " + total + " 56");
    if (!batches.length) return;
    const slots = 20;
    const width = Math.min(28, total / slots);
    const longest = Math.max(...batches.map((b) => b.duration_s), 1e-3);
    batches.slice(-slots).forEach((batch, i) => {
      const height = Math.max(2, (batch.duration_s / longest) * 40);
      const rect = svg("rect", { x: i * width + 1, y: 56 - height, width: width - 2, height: height, rx: 1.5 });
      if (batch.failed) rect.setAttribute("class", "failed");
      const title = svg("title", {});
      title.textContent = batch.size + " job(s), " + seconds(batch.duration_s) + (batch.failed ? ", " + batch.failed + " failed" : "");
      rect.append(title);
      chart.append(rect);
      const label = svg("text", { x: i * width + width / 2, y: 56 - height - 2, "text-anchor": "middle", "font-size": "9" });
      label.textContent = String(batch.size);
      chart.append(label);
    });
  }

  function updateCard(card, fn, now) {
    const m = card.metrics;
    setMetric(m.waiting.value, fn.waiting, String(fn.waiting));
    const limit = fn.concurrency_limit;
    setMetric(m.running.value, fn.running, limit === null ? "no limit" : fn.running + " / " + limit);
    const slots = fn.workers.reduce((sum, w) => sum + w.slots, 0);
    const live = fn.workers.length + (fn.workers.length ? " (" + slots + " slot" + (slots === 1 ? "" : "s") + ")" : "");
    setMetric(m.workers.value, fn.workers.length, fn.cannot_start ? live + ": cannot start" : live);
    m.workers.value.title = fn.cannot_start || fn.workers.map((w) => w.worker_id).join("\n");
    m.workers.value.classList.toggle("failed", Boolean(fn.cannot_start));
    card.failure.hidden = !fn.cannot_start;
    card.failure.textContent = fn.cannot_start || "";
    setMetric(m.eta.value, fn.eta_new_s, fn.eta_new_s === null ? "unknown yet" : seconds(fn.eta_new_s));
    const size = fn.avg_batch_size === null ? "" : " × " + fn.avg_batch_size.toFixed(1) + " jobs";
    setMetric(m.avg.value, fn.avg_batch_s, fn.avg_batch_s === null ? "–" : seconds(fn.avg_batch_s) + size);
    setMetric(m.batches.value, fn.batches, String(fn.batches));
    drawBatches(card.chart, fn.recent_batches);
    const latest = fn.recent_batches[fn.recent_batches.length - 1];
    card.last.textContent = latest
      ? "Last: " + latest.size + " job(s) in " + seconds(latest.duration_s) + ", " + ago(latest.finished_at, now)
      : "no batch yet";
  }

  // ---- depth plot --------------------------------------------------------------------------------

  function drawPlot(snapshot) {
    const plot = document.getElementById("depth-plot");
    const width = Math.max(200, Math.round(plot.clientWidth || 600));
    const height = 160;
    const pad = { left: 30, right: 8, top: 8, bottom: 18 };
    plot.setAttribute("viewBox", "0 0 " + width + " " + height);
    plot.replaceChildren();
    const now = snapshot.generated_at;
    const start = now - snapshot.history_s;
    const points = snapshot.depth_history;
    const groups = Array.from(new Set(points.flatMap((p) => Object.keys(p.groups)))).sort();
    const peak = Math.max(0, ...points.map((p) => p.waiting));
    const top = Math.max(4, Math.ceil(peak * 1.15));
    plot.dataset.peak = String(peak);
    plot.dataset.points = String(points.length);
    const x = (t) => pad.left + ((t - start) / snapshot.history_s) * (width - pad.left - pad.right);
    const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
    plot.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0) }));
    if (snapshot.max_size && snapshot.max_size <= top) {
      plot.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: y(snapshot.max_size), y2: y(snapshot.max_size), "stroke-dasharray": "3 3" }));
    }
    const label = (text, lx, ly, anchor) => {
      const node = svg("text", { x: lx, y: ly, "text-anchor": anchor || "start" });
      node.textContent = text;
      plot.append(node);
    };
    label(String(top), pad.left - 4, y(top) + 4, "end");
    label("0", pad.left - 4, y(0) + 4, "end");
    label("-" + Math.round(snapshot.history_s / 60) + " min", pad.left, height - 4);
    label("now", width - pad.right, height - 4, "end");
    if (points.length) {
      const line = points.map((p) => x(p.t).toFixed(1) + "," + y(p.waiting).toFixed(1));
      const first = x(points[0].t).toFixed(1);
      const last = x(points[points.length - 1].t).toFixed(1);
      plot.append(svg("path", { class: "area", d: "M" + first + "," + y(0) + " L" + line.join(" L") + " L" + last + "," + y(0) + " Z" }));
      plot.append(svg("path", { class: "line", d: "M" + line.join(" L") }));
      if (groups.length > 1) {
        groups.forEach((group, i) => {
          const path = points.map((p) => x(p.t).toFixed(1) + "," + y(p.groups[group] || 0).toFixed(1));
          plot.append(svg("path", { class: "group-line", d: "M" + path.join(" L"), stroke: COLORS[i % COLORS.length] }));
        });
      }
    }
    const legend = document.getElementById("plot-legend");
    const key = (color, text) => {
      const swatch = el("i", {});
      swatch.style.background = color;
      return el("span", {}, swatch, text);
    };
    legend.replaceChildren(key("var(--accent)", "all waiting jobs"));
    if (groups.length > 1) groups.forEach((group, i) => legend.append(key(COLORS[i % COLORS.length], group)));
    document.getElementById("plot-caption").textContent =
      "last " + Math.round(snapshot.history_s / 60) + " min, a sample every " + snapshot.sample_every_s + " s";
  }

  // ---- page --------------------------------------------------------------------------------------

  function render(snapshot) {
    document.title = "Queue status · " + snapshot.title;
    document.getElementById("title").textContent = "Queue status · " + snapshot.title;
    const max = snapshot.max_size;
    setMetric(document.getElementById("app-waiting"), snapshot.waiting, String(snapshot.waiting));
    document.getElementById("app-max").textContent = max === null ? "no max_size" : "of max_size " + max;
    meter(document.getElementById("app-meter"), snapshot.waiting, max);
    const groups = new Map();
    for (const fn of snapshot.functions) groups.set(fn.concurrency_id, fn);
    let running = 0;
    let limits = 0;
    let unlimited = 0;
    for (const fn of groups.values()) {
      if (fn.concurrency_limit === null) unlimited += 1;
      else {
        running += fn.running || 0;
        limits += fn.concurrency_limit;
      }
    }
    setMetric(document.getElementById("app-running"), running, String(running));
    document.getElementById("app-running-sub").textContent =
      "of " + limits + " allowed" + (unlimited ? " (+" + unlimited + " unlimited group" + (unlimited > 1 ? "s" : "") + ")" : "");
    const workers = snapshot.functions.reduce((sum, fn) => sum + fn.workers.length, 0);
    const slots = snapshot.functions.reduce((sum, fn) => sum + fn.workers.reduce((s, w) => s + w.slots, 0), 0);
    setMetric(document.getElementById("app-workers"), workers, String(workers));
    document.getElementById("app-slots").textContent = slots + " slot" + (slots === 1 ? "" : "s");
    const recent = snapshot.functions.flatMap((fn) => fn.recent_batches).filter((b) => snapshot.generated_at - b.finished_at <= 60);
    const done = recent.reduce((sum, b) => sum + b.size, 0);
    setMetric(document.getElementById("app-rate"), done, String(done));
    drawPlot(snapshot);
    const list = document.getElementById("functions");
    for (const fn of snapshot.functions) {
      let card = cards.get(fn.api_name);
      if (!card) {
        card = makeCard(fn);
        cards.set(fn.api_name, card);
        list.append(card.node);
      }
      updateCard(card, fn, snapshot.generated_at);
    }
  }

  function showFreshness() {
    const box = document.getElementById("updated");
    const text = document.getElementById("updated-text");
    if (!lastOk) return;
    const age = (Date.now() - lastOk) / 1000;
    box.classList.toggle("stale", age > 5);
    text.textContent = age > 5 ? "stale: updated " + Math.round(age) + " s ago" : "live";
  }

  async function refresh() {
    try {
      const response = await fetch("gradio_api/surge/status", { cache: "no-store" });
      if (!response.ok) throw new Error("status " + response.status);
      render(await response.json());
      lastOk = Date.now();
      document.body.dataset.ready = "true";
    } catch (error) {
      document.getElementById("updated-text").textContent = "cannot reach the server";
      document.getElementById("updated").classList.add("stale");
    }
    showFreshness();
    setTimeout(refresh, REFRESH_MS);
  }

  setInterval(showFreshness, 1000);
  refresh();
})();
