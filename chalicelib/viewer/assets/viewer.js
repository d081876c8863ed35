// IoT Playground run viewer: recent runs, and a run's readings as live SVG charts.
// Plain browser JavaScript, no library and no build step. Every URL is relative to
// the page's <base href>, which the API sets to wherever it is served from.
"use strict";

(() => {
  const POLL_MS = 2000;
  const RUNS_REFRESH_MS = 10000;
  // A running run's stats are folded afresh by each call (up to 5000 readings read): not
  // on every poll.
  const STATS_REFRESH_MS = 10000;
  const PAGE_LIMIT = 1000;
  // Each poll re-reads a few seconds back: readings of one instant may be stored out of order.
  const OVERLAP_MS = 5000;
  const MAX_POINTS_PER_SERIES = 5000;
  const DOTS_UP_TO = 150;
  const TYPE_ORDER = ["temperature", "humidity", "pressure"];
  const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed",
    "#0891b2", "#db2777", "#65a30d", "#475569", "#ea580c"];
  const SVG_NS = "http://www.w3.org/2000/svg";

  const byId = (id) => document.getElementById(id);

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }

  function svgElement(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function apiUrl(path, params = {}) {
    const url = new URL(path, document.baseURI);
    for (const [name, value] of Object.entries(params)) url.searchParams.set(name, String(value));
    return url;
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new Error((body && body.message) || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function say(text) {
    byId("message").textContent = text || "";
  }

  function clock(epochMs) {
    return new Date(epochMs).toLocaleTimeString([], { hour12: false });
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString([], { hour12: false }) : "–";
  }

  function freshState(runId) {
    return {
      runId,
      generation: (state ? state.generation : 0) + 1,
      run: null,
      seen: new Map(), // reading key -> epoch ms, pruned behind the cursor
      series: new Map(), // type -> Map(sensorId -> [[epoch ms, value], ...])
      colors: new Map(), // sensorId -> colour, stable for the run
      cursor: null, // newest reading time seen
      count: 0,
      statsAt: 0, // when the stats were last asked for (epoch ms)
      timer: null,
    };
  }

  let state = null;
  state = freshState(null);

  // ---- recent runs ------------------------------------------------------

  async function loadRuns() {
    try {
      const page = await getJson(apiUrl("api/runs", { limit: 20 }));
      renderRuns(page.items || []);
    } catch (error) {
      say(`Could not list runs: ${error.message}`);
    }
  }

  function renderRuns(runs) {
    const list = byId("runs");
    list.replaceChildren();
    for (const run of runs) {
      const item = element("li", { "data-run-id": run.runId });
      if (run.runId === state.runId) item.className = "selected";
      const link = element("a", { href: "?" + new URLSearchParams({ runId: run.runId }) },
        element("span", { class: `status ${run.status}` }, run.status), " ",
        element("span", { class: "run-id" }, run.runId.slice(0, 8)), " ", run.username,
        element("span", { class: "run-when" },
          `${when(run.startedAt)} · ${run.params.sensorIds.length} sensor(s)`));
      link.addEventListener("click", (event) => {
        event.preventDefault();
        selectRun(run.runId, true);
      });
      item.append(link);
      list.append(item);
    }
    if (!runs.length) list.append(element("li", { class: "hint" }, "No runs yet."));
  }

  // ---- the selected run -------------------------------------------------

  function selectRun(runId, pushHistory) {
    if (state.timer) clearTimeout(state.timer);
    state = freshState(runId);
    if (pushHistory) history.pushState(null, "", "?" + new URLSearchParams({ runId }));
    for (const item of byId("runs").children) {
      item.classList.toggle("selected", item.dataset.runId === runId);
    }
    byId("charts").replaceChildren();
    byId("stats").hidden = true;
    byId("stats-table").tBodies[0].replaceChildren();
    byId("run-meta").hidden = true;
    byId("run-hint").hidden = Boolean(runId);
    byId("run-title").textContent = runId ? `Run ${runId}` : "Select a run";
    say("");
    if (runId) refresh();
  }

  function schedule() {
    state.timer = setTimeout(refresh, POLL_MS);
  }

  async function refresh() {
    const generation = state.generation;
    try {
      // Status first: readings read after a run has ended are all of its readings.
      const run = await getJson(apiUrl(`api/runs/${encodeURIComponent(state.runId)}`));
      if (generation !== state.generation) return;
      state.run = run;
      renderRun(run);
      await loadReadings(generation);
      if (generation !== state.generation) return;
      renderCharts();
      if (run.status !== "RUNNING" || Date.now() - state.statsAt >= STATS_REFRESH_MS) {
        state.statsAt = Date.now();
        const stats = await getJson(apiUrl(`api/runs/${encodeURIComponent(state.runId)}/stats`));
        if (generation !== state.generation) return;
        renderStats(stats);
      }
      say("");
      if (run.status === "RUNNING") schedule();
    } catch (error) {
      if (generation !== state.generation) return;
      if (error.status === 404) {
        say(`Run ${state.runId} was not found.`);
        return;
      }
      say(`Update failed (${error.message}); retrying.`);
      schedule();
    }
  }

  function renderRun(run) {
    byId("run-meta").hidden = false;
    const status = byId("run-status");
    status.textContent = run.status;
    status.className = `status ${run.status}`;
    byId("run-live").hidden = run.status !== "RUNNING";
    byId("run-user").textContent = run.username;
    byId("run-started").textContent = when(run.startedAt);
    byId("run-finished").textContent = run.finishedAt ? when(run.finishedAt) : "–";
    byId("run-timing").textContent = `${run.duration} s, a round every ${run.interval} s`;
    byId("run-sensors").textContent = run.params.sensorIds.join(", ");
    if (run.errorMessage) say(run.errorMessage);
  }

  async function loadReadings(generation) {
    const from = state.cursor === null ? null : state.cursor - OVERLAP_MS;
    let nextKey = null;
    do {
      const params = { runId: state.runId, order: "asc", limit: PAGE_LIMIT };
      if (from !== null) params.from = from;
      if (nextKey) params.nextKey = nextKey;
      const page = await getJson(apiUrl("api/sensors/data", params));
      if (generation !== state.generation) return;
      for (const reading of page.items) addReading(reading);
      nextKey = page.nextKey;
    } while (nextKey);
    if (state.cursor !== null) {
      for (const [key, at] of state.seen) if (at < state.cursor - 2 * OVERLAP_MS) state.seen.delete(key);
    }
    byId("reading-count").textContent = String(state.count);
  }

  function addReading(reading) {
    const at = Date.parse(reading.timestamp);
    const key = `${reading.sensorId}|${reading.type}|${reading.timestamp}|${reading.reading}`;
    if (Number.isNaN(at) || state.seen.has(key)) return;
    if (state.cursor !== null && at < state.cursor - 2 * OVERLAP_MS) return; // already pruned: seen before
    state.seen.set(key, at);
    state.count += 1;
    state.cursor = state.cursor === null ? at : Math.max(state.cursor, at);
    if (!state.series.has(reading.type)) state.series.set(reading.type, new Map());
    const sensors = state.series.get(reading.type);
    if (!sensors.has(reading.sensorId)) sensors.set(reading.sensorId, []);
    if (!state.colors.has(reading.sensorId)) {
      state.colors.set(reading.sensorId, COLORS[state.colors.size % COLORS.length]);
    }
    const points = sensors.get(reading.sensorId);
    let index = points.length;
    while (index > 0 && points[index - 1][0] > at) index -= 1;
    points.splice(index, 0, [at, reading.reading]);
    if (points.length > MAX_POINTS_PER_SERIES) points.shift();
  }

  // ---- statistics (GET /api/runs/{id}/stats) --------------------------------

  function figure(value) {
    if (value === null || value === undefined) return "–";
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }

  function renderStats(stats) {
    const percent = stats.completeness === null ? "–" : `${(stats.completeness * 100).toFixed(1)} %`;
    byId("stats-totals").textContent =
      `${stats.readings} reading(s) from ${stats.sensors} of ${stats.declaredSensors} sensor(s); ` +
      `${stats.received} of ${stats.expected} expected sensor rounds (${percent}); ` +
      `min ${figure(stats.min)}, max ${figure(stats.max)}, mean ${figure(stats.mean)}`;
    const note = byId("stats-note");
    note.textContent = stats.complete ? "" : "(partial: " + stats.note + ")";
    const body = byId("stats-table").tBodies[0];
    body.replaceChildren(...stats.series.map((series) => {
      const row = element("tr", { "data-sensor-id": series.sensorId, "data-type": series.type });
      for (const cell of [series.sensorId, series.type, series.count, figure(series.min), figure(series.max),
        figure(series.mean), figure(series.lastValue), when(series.lastTimestamp), figure(series.largestGapMs)]) {
        row.append(element("td", {}, String(cell)));
      }
      return row;
    }));
    const table = byId("stats-table");
    table.dataset.readings = String(stats.readings);
    table.dataset.complete = String(stats.complete);
    byId("stats").hidden = false;
  }

  // ---- charts -----------------------------------------------------------

  function orderedTypes() {
    const rank = (type) => {
      const index = TYPE_ORDER.indexOf(type);
      return index < 0 ? TYPE_ORDER.length : index;
    };
    return [...state.series.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  }

  function renderCharts() {
    const container = byId("charts");
    for (const type of orderedTypes()) {
      let figure = container.querySelector(`figure[data-type="${CSS.escape(type)}"]`);
      if (!figure) {
        figure = element("figure", { class: "chart", "data-type": type });
        container.append(figure);
      }
      drawChart(figure, type, state.series.get(type));
    }
  }

  function label(value, span) {
    return span < 10 ? value.toFixed(2) : value.toFixed(1);
  }

  function drawChart(figure, type, sensors) {
    const width = 640, height = 240, left = 52, right = 14, top = 10, bottom = 26;
    let tMin = Infinity, tMax = -Infinity, vMin = Infinity, vMax = -Infinity, total = 0;
    for (const points of sensors.values()) {
      total += points.length;
      for (const [at, value] of points) {
        tMin = Math.min(tMin, at); tMax = Math.max(tMax, at);
        vMin = Math.min(vMin, value); vMax = Math.max(vMax, value);
      }
    }
    if (tMin === tMax) { tMin -= 1000; tMax += 1000; }
    if (vMin === vMax) { vMin -= 1; vMax += 1; } else {
      const pad = (vMax - vMin) * 0.08;
      vMin -= pad; vMax += pad;
    }
    const x = (at) => left + ((at - tMin) / (tMax - tMin)) * (width - left - right);
    const y = (value) => top + ((vMax - value) / (vMax - vMin)) * (height - top - bottom);

    const svg = svgElement("svg", {
      class: "plot", viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `${type} readings per sensor`,
    });
    for (let i = 0; i <= 4; i += 1) {
      const value = vMin + ((vMax - vMin) * i) / 4;
      svg.append(svgElement("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), stroke: "#eef0f4" }));
      svg.append(svgElement("text", { x: left - 6, y: y(value) + 3, "text-anchor": "end", class: "axis" },
        label(value, vMax - vMin)));
    }
    // Short spans get tenths of seconds, so that no two ticks read the same.
    const tick = (at) => (tMax - tMin < 20000 ? `${clock(at)}.${Math.floor((at % 1000) / 100)}` : clock(at));
    let previous = "";
    for (let i = 0; i <= 3; i += 1) {
      const at = tMin + ((tMax - tMin) * i) / 3;
      const text = tick(at);
      if (text === previous) continue;
      previous = text;
      const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";
      svg.append(svgElement("text", { x: x(at), y: height - 8, "text-anchor": anchor, class: "axis" }, text));
    }
    svg.append(svgElement("line", { x1: left, x2: left, y1: top, y2: height - bottom, stroke: "#c9ced8" }));
    svg.append(svgElement("line", {
      x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, stroke: "#c9ced8",
    }));

    const legend = element("ul", { class: "legend" });
    for (const sensorId of [...sensors.keys()].sort()) {
      const points = sensors.get(sensorId);
      const colour = state.colors.get(sensorId);
      const series = svgElement("g", { "data-sensor-id": sensorId });
      series.append(svgElement("polyline", {
        points: points.map(([at, value]) => `${x(at).toFixed(1)},${y(value).toFixed(1)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 1.6, "stroke-linejoin": "round",
      }));
      if (points.length <= DOTS_UP_TO) {
        for (const [at, value] of points) {
          series.append(svgElement("circle", { cx: x(at).toFixed(1), cy: y(value).toFixed(1), r: 2.2, fill: colour }));
        }
      }
      svg.append(series);
      const swatch = svgElement("svg", { width: 10, height: 10, "aria-hidden": "true" });
      swatch.append(svgElement("rect", { width: 10, height: 10, rx: 2, fill: colour }));
      const latest = points[points.length - 1][1];
      legend.append(element("li", {}, swatch, sensorId, " ",
        element("span", { class: "latest" }, `${latest} (${points.length})`)));
    }

    figure.dataset.points = String(total);
    figure.replaceChildren(
      element("figcaption", {}, type, " ", element("span", {}, `· ${sensors.size} sensor(s) · ${total} reading(s)`)),
      svg,
      legend,
    );
  }

  // ---- start --------------------------------------------------------------

  window.addEventListener("popstate", () => {
    selectRun(new URLSearchParams(location.search).get("runId"), false);
  });
  loadRuns();
  setInterval(loadRuns, RUNS_REFRESH_MS);
  selectRun(new URLSearchParams(location.search).get("runId"), false);
})();
