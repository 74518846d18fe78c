// The Conduit dashboard: a small single-page app over the public API
// (POST /api/v1/<Call> with JSON bodies, forwarded by the server that
// serves this file). Pages: the mesh overview (namespaces and deployments),
// one namespace, one deployment (charts, latency distribution, routes,
// pods, callers and callees), the topology graph, the pod list, a live tap
// and live top. No framework, no build step.
'use strict';

// How often live pages query again: the proxies report every few seconds,
// so refreshing faster shows nothing new.
const REFRESH_MS = 5000;
// A pod whose proxy has not reported for this long is flagged: three
// report intervals of the original proxy.
const STALE_AFTER_S = 30;
// Tap rows kept on screen; older ones are dropped so a busy tap cannot
// grow the page without bound.
const MAX_TAP_ROWS = 500;
// Top keeps at most this many (source, destination, method, path) rows and
// this many requests waiting for their response: a busy tap cannot grow
// the page without bound.
const MAX_TOP_ROWS = 300;
const MAX_TOP_PENDING = 5000;
// Top redraws its table at most this often.
const TOP_REDRAW_MS = 1000;

// The windows Stat knows, and how each one's trend line is drawn: the time
// series of a window (10 s steps up to a minute, then 1 min, then 5 min).
// A 10 s window is a single step, so its trend shows the last minute.
const WINDOWS = {
  TEN_SEC: { label: '10s', series: 'ONE_MIN', spanMs: 50000 },
  ONE_MIN: { label: '1m', series: 'ONE_MIN', spanMs: 50000 },
  TEN_MIN: { label: '10m', series: 'TEN_MIN', spanMs: 540000 },
  ONE_HOUR: { label: '1h', series: 'ONE_HOUR', spanMs: 3300000 },
};

const GROUP_KEY = {
  TARGET_DEPLOY: 'targetDeploy',
  TARGET_POD: 'targetPod',
  SOURCE_DEPLOY: 'sourceDeploy',
  SOURCE_POD: 'sourcePod',
  MESH: null,
};

let chosenWindow = WINDOWS[localStorage.getItem('window')] ? localStorage.getItem('window') : 'ONE_MIN';
let current = null; // the AbortController of the page on screen
let partialNote = null; // a `conduit-partial` header seen by this refresh

// ---- DOM ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function link(href, text) {
  return h('a', { href, 'data-link': true }, text);
}

function deploymentHref(name) {
  const [ns, dep] = name.split('/');
  return `/deployments/${encodeURIComponent(ns)}/${encodeURIComponent(dep)}`;
}

function deploymentLink(name) {
  return name ? link(deploymentHref(name), name) : h('span', { class: 'muted' }, 'outside the mesh');
}

function showError(e) {
  const el = document.getElementById('error');
  const message = typeof e === 'string' ? e : e.message;
  el.replaceChildren();
  if (e && e.down) {
    el.dataset.state = 'api-down';
    el.append(
      h('strong', {}, 'The public API is not answering. '),
      message,
      h('div', { class: 'muted' }, `Retrying every ${REFRESH_MS / 1000} s; check that public-api and telemetry are running.`),
    );
  } else {
    el.dataset.state = 'error';
    el.append(message);
  }
  el.hidden = false;
}

function clearError() {
  document.getElementById('error').hidden = true;
}

// ---- formatting ----

const dash = '—';

function fmtRate(v) {
  if (v === null || v === undefined) return dash;
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M rps`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k rps`;
  return `${v < 10 ? v.toFixed(2) : v.toFixed(1)} rps`;
}

function fmtSuccess(v) {
  return v === null || v === undefined ? dash : `${(v * 100).toFixed(2)}%`;
}

function successClass(v) {
  if (v === null || v === undefined) return '';
  return v >= 0.99 ? 'good' : v >= 0.95 ? 'warn' : 'bad';
}

function fmtMs(v) {
  return v === null || v === undefined ? dash : `${v} ms`;
}

function fmtMeshed(m) {
  return m ? `${m.meshed}/${m.total}` : dash;
}

function meshedClass(m) {
  return !m ? '' : m.meshed === m.total ? 'good' : m.meshed ? 'warn' : 'bad';
}

function fmtTime(ms, withSeconds) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, '0');
  return withSeconds ? `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}` : `${p(d.getHours())}:${p(d.getMinutes())}`;
}

// A latency in ms for axes and marks.
function fmtAxisMs(v) {
  if (v >= 1000) return `${+(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s`;
  if (v >= 10) return `${Math.round(v)} ms`;
  return `${+v.toFixed(v >= 1 ? 1 : 2)} ms`;
}

// A proto3 JSON Duration ("1.500s") in seconds.
function seconds(d) {
  return d ? parseFloat(d) : null;
}

function fmtAgo(s) {
  if (s === null) return 'never';
  if (s < 1) return 'just now';
  if (s < 90) return `${Math.round(s)}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  return `${Math.round(s / 3600)}h ago`;
}

function fmtLatency(s) {
  if (s === null) return '';
  const ms = s * 1000;
  return ms < 1 ? `${Math.round(ms * 1000)}µs` : ms < 100 ? `${ms.toFixed(1)}ms` : `${Math.round(ms)}ms`;
}

// ---- the API ----

// An answer the public API could not give: `down` when the API (or what it
// needs) is not answering, rather than refusing the request.
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
    this.down = status === 0 || status === 502 || status === 503 || status === 504;
  }
}

async function api(call, body, signal) {
  let rsp;
  try {
    rsp = await fetch(`/api/v1/${call}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body || {}),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(`the dashboard server is not answering (${e.message})`, 0);
  }
  if (!rsp.ok) {
    const text = (await rsp.text()).trim();
    throw new ApiError(`${call} failed (${rsp.status}): ${text || rsp.statusText}`, rsp.status);
  }
  const partial = rsp.headers.get('conduit-partial');
  if (partial) partialNote = partial;
  return rsp.json();
}

function showPartial(note) {
  const el = document.getElementById('partial');
  if (!el) return;
  el.hidden = !note;
  if (note) el.textContent = `Partial answer: ${note}. The figures on this page leave out what those replicas saw.`;
}

// Stat rows keyed by group: {name, rate, success, p50, p99, series}.
async function stat(signal, groupBy, filterBy, summarize) {
  const metrics = summarize ? ['REQUEST_RATE', 'SUCCESS_RATE', 'LATENCY'] : ['REQUEST_RATE'];
  const window = summarize ? chosenWindow : WINDOWS[chosenWindow].series;
  const rsp = await api('Stat', { metrics, window, groupBy, filterBy: filterBy || {}, summarize }, signal);
  const rows = new Map();
  for (const s of rsp.metrics || []) {
    const key = GROUP_KEY[groupBy] ? (s.metadata || {})[GROUP_KEY[groupBy]] || '' : '';
    if (!rows.has(key)) rows.set(key, { name: key, rate: null, success: null, p50: null, p99: null, series: [] });
    const row = rows.get(key);
    const points = s.datapoints || [];
    const last = points.length ? points[points.length - 1].value || {} : {};
    if (s.name === 'REQUEST_RATE') {
      row.rate = last.gauge ?? null;
      row.series = points.map((p) => [Number(p.timestampMs), (p.value || {}).gauge ?? 0]);
    } else if (s.name === 'SUCCESS_RATE') {
      row.success = last.gauge ?? null;
    } else if (s.name === 'LATENCY') {
      for (const v of (last.histogram || {}).values || []) {
        if (v.label === 'P50') row.p50 = Number(v.value);
        if (v.label === 'P99') row.p99 = Number(v.value);
      }
    }
  }
  return rows;
}

// The time series of one group over the chosen window: request rate,
// success rate and P50/P95/P99, each as [[timestampMs, value]].
async function statSeries(signal, groupBy, filterBy) {
  const rsp = await api(
    'Stat',
    { metrics: ['REQUEST_RATE', 'SUCCESS_RATE', 'LATENCY'], window: WINDOWS[chosenWindow].series, groupBy, filterBy, summarize: false },
    signal,
  );
  const out = { rate: [], success: [], p50: [], p95: [], p99: [] };
  for (const s of rsp.metrics || []) {
    for (const p of s.datapoints || []) {
      const t = Number(p.timestampMs);
      const v = p.value || {};
      if (s.name === 'REQUEST_RATE' && v.gauge !== undefined) out.rate.push([t, v.gauge]);
      else if (s.name === 'SUCCESS_RATE' && v.gauge !== undefined) out.success.push([t, v.gauge]);
      else if (s.name === 'LATENCY') {
        for (const hv of (v.histogram || {}).values || []) {
          const key = { P50: 'p50', P95: 'p95', P99: 'p99' }[hv.label];
          if (key) out[key].push([t, Number(hv.value)]);
        }
      }
    }
  }
  return out;
}

// Summaries and trends of one grouping, merged by group.
async function statWithTrend(signal, groupBy, filterBy) {
  const [summary, series] = await Promise.all([
    stat(signal, groupBy, filterBy, true),
    stat(signal, groupBy, filterBy, false),
  ]);
  for (const [key, row] of summary) row.series = (series.get(key) || { series: [] }).series;
  return summary;
}

// ---- charts ----

// An inline SVG line of request rate over the trend span ending at `endMs`
// (the newest point of the answer, i.e. the server's clock).
function sparkline(points, endMs, width = 120, height = 28) {
  const el = svg('svg', {
    class: 'sparkline',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'data-points': points.length,
  });
  if (!points.length) {
    el.classList.add('empty');
    return el;
  }
  const span = WINDOWS[chosenWindow].spanMs;
  // Headroom above the highest point, so a steady rate is not drawn as the
  // chart's top edge.
  const max = Math.max(...points.map((p) => p[1]), 1e-9) * 1.25;
  const pad = 2;
  const x = (t) => pad + ((t - (endMs - span)) / span) * (width - 2 * pad);
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  let xy = points.map(([t, v]) => [Math.max(pad, x(t)), y(v)]);
  // One point is a level, not a trend: draw it across the span.
  if (xy.length === 1) xy = [[pad, xy[0][1]], [width - pad, xy[0][1]]];
  const line = xy.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join('');
  const first = xy[0][0].toFixed(1);
  const lastX = xy[xy.length - 1][0].toFixed(1);
  el.append(svg('path', { class: 'area', d: `${line}L${lastX},${height - pad}L${first},${height - pad}Z` }));
  el.append(svg('path', { class: 'line', d: line }));
  const title = svg('title');
  title.textContent = `request rate, last ${WINDOWS[chosenWindow].label === '10s' ? '1m' : WINDOWS[chosenWindow].label}: ${points.map((p) => p[1].toFixed(2)).join(', ')} rps`;
  el.append(title);
  return el;
}

// "Nice" tick steps (1, 2, 2.5, 5 × 10^k) for an axis up to `max`.
function niceStep(range, ticks) {
  const raw = range / Math.max(1, ticks);
  const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

// A time-series chart: axes with units, a line per series, and on hover a
// guide with every series' value at the nearest step.
//   opts: {id, title, unit, fmt, series: [{name, cls, points}], endMs,
//          spanMs, lo, hi}
function timeChart(opts) {
  const W = 380, H = 170, L = 58, R = 12, T = 10, B = 26;
  const wrap = h('div', { class: 'chart', id: opts.id, 'data-unit': opts.unit });
  const tip = h('div', { class: 'chart-tip', hidden: true });
  const el = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': opts.title });
  const all = opts.series.flatMap((s) => s.points);
  const t1 = opts.endMs;
  const t0 = t1 - opts.spanMs;
  let lo = opts.lo ?? 0;
  let hi = opts.hi ?? Math.max(...all.map((p) => p[1]), 0);
  if (opts.hi === undefined) {
    const step = niceStep(hi || 1, 4);
    hi = Math.max(step, Math.ceil((hi * 1.1) / step) * step);
  }
  if (hi <= lo) hi = lo + 1;
  const x = (t) => L + ((t - t0) / (t1 - t0 || 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  // Axes.
  const yAxis = svg('g', { class: 'axis y' });
  const yStep = niceStep(hi - lo, 4);
  for (let v = Math.ceil(lo / yStep) * yStep; v <= hi + 1e-9; v += yStep) {
    yAxis.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    const label = svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' });
    label.textContent = opts.fmt(v);
    yAxis.append(label);
  }
  const xAxis = svg('g', { class: 'axis x' });
  xAxis.append(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const spanS = opts.spanMs / 1000;
  const xStepMs = (spanS <= 120 ? 10 : spanS <= 900 ? 120 : 600) * 1000;
  for (let t = Math.ceil(t0 / xStepMs) * xStepMs; t <= t1; t += xStepMs) {
    xAxis.append(svg('line', { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 4 }));
    const label = svg('text', { x: x(t), y: H - 8, 'text-anchor': 'middle' });
    label.textContent = fmtTime(t, spanS <= 900);
    xAxis.append(label);
  }
  el.append(yAxis, xAxis);
  // Lines.
  for (const s of opts.series) {
    if (!s.points.length) continue;
    let pts = s.points.map(([t, v]) => [Math.max(L, x(t)), y(Math.min(hi, Math.max(lo, v)))]);
    if (pts.length === 1) pts = [[L, pts[0][1]], [W - R, pts[0][1]]];
    const d = pts.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join('');
    el.append(svg('path', { class: `line ${s.cls}`, d, 'data-series': s.name, 'data-points': s.points.length }));
  }
  if (!all.length) {
    const none = svg('text', { x: (L + W - R) / 2, y: H / 2, 'text-anchor': 'middle', class: 'none' });
    none.textContent = 'no data in this window';
    el.append(none);
  }
  // Hover: the nearest step's values.
  const times = [...new Set(all.map((p) => p[0]))].sort((a, b) => a - b);
  const guide = svg('line', { class: 'guide', y1: T, y2: H - B, x1: -10, x2: -10 });
  const overlay = svg('rect', { class: 'overlay', x: L, y: T, width: W - L - R, height: H - T - B });
  el.append(guide, overlay);
  overlay.addEventListener('mousemove', (e) => {
    if (!times.length) return;
    const box = el.getBoundingClientRect();
    const at = t0 + (((e.clientX - box.left) * (W / box.width) - L) / (W - L - R)) * (t1 - t0);
    const t = times.reduce((best, c) => (Math.abs(c - at) < Math.abs(best - at) ? c : best), times[0]);
    guide.setAttribute('x1', x(t));
    guide.setAttribute('x2', x(t));
    const lines = opts.series
      .map((s) => [s, s.points.find((p) => p[0] === t)])
      .filter(([, p]) => p)
      .map(([s, p]) => h('div', {}, h('span', { class: `swatch ${s.cls}` }), `${s.name}: ${opts.fmt(p[1], true)}`));
    tip.replaceChildren(h('div', { class: 'muted' }, fmtTime(t, true)), ...lines);
    tip.hidden = false;
    tip.style.left = `${Math.min(box.width - 150, (x(t) / W) * box.width + 10)}px`;
  });
  overlay.addEventListener('mouseleave', () => {
    tip.hidden = true;
    guide.setAttribute('x1', -10);
    guide.setAttribute('x2', -10);
  });
  const legend = h(
    'div',
    { class: 'legend' },
    opts.series.length > 1 ? opts.series.map((s) => h('span', {}, h('span', { class: `swatch ${s.cls}` }), s.name)) : null,
  );
  wrap.append(h('div', { class: 'chart-title' }, opts.title, h('span', { class: 'muted' }, ` (${opts.unit})`)), legend, el, tip);
  return wrap;
}

function rateTick(v, exact) {
  return exact ? fmtRate(v) : `${+v.toFixed(v < 1 ? 2 : v < 10 ? 1 : 0)} rps`;
}

function successTick(v, exact) {
  return exact ? fmtSuccess(v) : `${+(v * 100).toFixed(1)}%`;
}

function msTick(v, exact) {
  return exact ? `${v} ms` : fmtAxisMs(v);
}

// The three charts of one group's series.
function goldenCharts(series, endMs) {
  const spanMs = WINDOWS[chosenWindow].spanMs;
  const minSuccess = Math.min(1, ...series.success.map((p) => p[1]));
  return [
    timeChart({ id: 'chart-rate', title: 'Request rate', unit: 'rps', fmt: rateTick, endMs, spanMs, series: [{ name: 'requests', cls: 's1', points: series.rate }] }),
    timeChart({
      id: 'chart-success',
      title: 'Success rate',
      unit: '%',
      fmt: successTick,
      endMs,
      spanMs,
      lo: Math.max(0, Math.floor((minSuccess - 0.005) * 20) / 20),
      hi: 1,
      series: [{ name: 'success', cls: 's2', points: series.success }],
    }),
    timeChart({
      id: 'chart-latency',
      title: 'Latency',
      unit: 'ms',
      fmt: msTick,
      endMs,
      spanMs,
      series: [
        { name: 'P50', cls: 's1', points: series.p50 },
        { name: 'P95', cls: 's3', points: series.p95 },
        { name: 'P99', cls: 's4', points: series.p99 },
      ],
    }),
  ];
}

function newestTimestamp(rows) {
  let end = 0;
  for (const row of rows.values()) for (const [t] of row.series) end = Math.max(end, t);
  return end || Date.now();
}

// ---- shared pieces ----

function windowPicker() {
  return h(
    'div',
    { class: 'window-picker', role: 'group', 'aria-label': 'Time window' },
    Object.entries(WINDOWS).map(([key, w]) =>
      h(
        'button',
        {
          type: 'button',
          'data-window': key,
          class: key === chosenWindow ? 'active' : null,
          onclick: () => {
            chosenWindow = key;
            localStorage.setItem('window', key);
            route();
          },
        },
        w.label,
      ),
    ),
  );
}

function statCells(row) {
  return [
    h('td', { class: 'num', 'data-metric': 'rate' }, fmtRate(row.rate)),
    h('td', { class: `num ${successClass(row.success)}`, 'data-metric': 'success' }, fmtSuccess(row.success)),
    h('td', { class: 'num', 'data-metric': 'p50' }, fmtMs(row.p50)),
    h('td', { class: 'num', 'data-metric': 'p99' }, fmtMs(row.p99)),
  ];
}

const STAT_HEADERS = ['Request rate', 'Success rate', 'P50', 'P99'];
const NUMERIC_HEADERS = new Set([...STAT_HEADERS, 'Latency', 'Meshed', 'Deployments']);
function addNumericHeaders(list) {
  for (const t of list) NUMERIC_HEADERS.add(t);
}

function table(id, headers, emptyText) {
  const tbody = h('tbody');
  const el = h(
    'table',
    { id, class: 'data' },
    h('thead', {}, h('tr', {}, headers.map((t) => h('th', { class: NUMERIC_HEADERS.has(t) ? 'num' : null }, t)))),
    tbody,
  );
  el.fill = (rows) => {
    tbody.replaceChildren(...rows);
    if (!rows.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: headers.length }, emptyText)));
  };
  return el;
}

function card(metric, label) {
  const value = h('div', { class: 'value' }, dash);
  const el = h('div', { class: 'card', 'data-metric': metric }, h('div', { class: 'label' }, label), value);
  el.set = (text, cls) => {
    value.textContent = text;
    value.className = `value ${cls || ''}`;
  };
  return el;
}

function cards(id) {
  const c = {
    rate: card('rate', 'Request rate'),
    success: card('success', 'Success rate'),
    p50: card('p50', 'P50 latency'),
    p99: card('p99', 'P99 latency'),
  };
  const el = h('section', { id, class: 'cards' }, Object.values(c));
  el.set = (row) => {
    row = row || {};
    c.rate.set(fmtRate(row.rate));
    c.success.set(fmtSuccess(row.success), successClass(row.success));
    c.p50.set(fmtMs(row.p50));
    c.p99.set(fmtMs(row.p99));
  };
  return el;
}

// Runs `refresh` now and again REFRESH_MS after each run ends, until the
// page is left (or `refresh` returns 'stop'). A partial answer seen by a
// run is said above the page until a run sees none.
function every(signal, refresh) {
  const tick = async () => {
    if (signal.aborted) return;
    partialNote = null;
    let stop = false;
    try {
      stop = (await refresh()) === 'stop';
      if (!signal.aborted) {
        clearError();
        showPartial(partialNote);
        // When the first page showed its figures (page-load benchmarks
        // read it).
        if (!performance.getEntriesByName('conduit:first-render').length) performance.mark('conduit:first-render');
      }
    } catch (e) {
      if (!signal.aborted && e.name !== 'AbortError') showError(e);
    }
    if (!signal.aborted && !stop) setTimeout(tick, REFRESH_MS);
  };
  tick();
}

// The not-found state, inside the layout: what was asked for, why it is
// not there, and where to go instead.
function notFound(what, why, links) {
  document.body.dataset.page = 'not-found';
  render(
    h(
      'section',
      { id: 'not-found', class: 'not-found' },
      h('h1', {}, what),
      h('p', {}, why),
      h('p', {}, links.map((l, i) => [i ? ' · ' : null, l])),
    ),
  );
}

function byName(a, b) {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

// ---- pages ----

// The rows of a grouping with the pods' MESHED counts joined in; groups
// with pods but no traffic in the window are listed too.
function withMeshed(rows, meshed) {
  for (const key of meshed.keys()) {
    if (!rows.has(key)) rows.set(key, { name: key, rate: null, success: null, p50: null, p99: null, series: [] });
  }
  rows.delete('');
  for (const row of rows.values()) row.meshed = meshed.get(row.name) || null;
  return rows;
}

// Deployment rows gathered by namespace: how many, and their request-rate
// trends added up step by step.
function byNamespace(rows) {
  const out = new Map();
  for (const row of rows.values()) {
    const ns = row.name.split('/')[0];
    if (!out.has(ns)) out.set(ns, { name: ns, rate: null, success: null, ok: 0, deployments: 0, series: new Map() });
    const n = out.get(ns);
    n.deployments += 1;
    if (row.rate !== null) {
      n.rate = (n.rate || 0) + row.rate;
      if (row.success !== null) {
        n.ok += row.rate * row.success;
        n.weighted = (n.weighted || 0) + row.rate;
      }
    }
    for (const [t, v] of row.series) n.series.set(t, (n.series.get(t) || 0) + v);
  }
  for (const n of out.values()) {
    n.success = n.weighted ? n.ok / n.weighted : null;
    n.series = [...n.series.entries()].sort((a, b) => a[0] - b[0]);
  }
  return out;
}

function meshedCell(m) {
  return h('td', { class: `num ${meshedClass(m)}`, 'data-metric': 'meshed' }, fmtMeshed(m));
}

function deploymentRows(rows, end) {
  return [...rows.values()].sort(byName).map((row) =>
    h(
      'tr',
      { 'data-deployment': row.name, 'data-rate': row.rate ?? 0 },
      h('td', {}, deploymentLink(row.name)),
      meshedCell(row.meshed),
      statCells(row),
      h('td', { class: 'trend' }, sparkline(row.series, end)),
    ),
  );
}

// StatSummary rows (namespaces or deployments) by `namespace` or
// `namespace/name`: MESHED and the golden metrics as `conduit stat` shows
// them.
async function summaryRows(signal, resource, namespace) {
  const rsp = await api('StatSummary', { resource, namespace: namespace || '', window: chosenWindow }, signal);
  const out = new Map();
  for (const r of rsp.rows || []) {
    const key = resource === 'namespaces' ? r.name || r.namespace : `${r.namespace}/${r.name}`;
    out.set(key, {
      name: key,
      meshed: { meshed: r.meshedPods || 0, total: r.totalPods || 0 },
      rate: r.requestRate ?? null,
      success: r.successRate ?? null,
      p50: r.p50LatencyMs ?? null,
      p99: r.p99LatencyMs ?? null,
    });
  }
  return out;
}

function overviewPage(signal) {
  const totals = cards('totals');
  const namespaces = table('namespaces', ['Namespace', 'Meshed', 'Deployments', ...STAT_HEADERS, 'Trend'], 'No namespaces yet.');
  const overview = table('overview', ['Deployment', 'Meshed', ...STAT_HEADERS, 'Trend'], 'No deployments yet.');
  const updated = h('span', { class: 'muted' });
  render(
    h('div', { class: 'toolbar' }, h('h1', {}, 'Mesh overview'), updated, windowPicker()),
    totals,
    h('section', {}, h('h2', {}, 'Namespaces'), namespaces),
    h('section', {}, h('h2', {}, 'Deployments'), overview),
  );
  every(signal, async () => {
    const [rows, mesh, nsRows, deployRows] = await Promise.all([
      statWithTrend(signal, 'TARGET_DEPLOY'),
      stat(signal, 'MESH', {}, true),
      summaryRows(signal, 'namespaces'),
      summaryRows(signal, 'deployments'),
    ]);
    totals.set(mesh.get(''));
    withMeshed(rows, new Map([...deployRows].map(([k, r]) => [k, r.meshed])));
    const end = newestTimestamp(rows);
    const trends = byNamespace(rows);
    namespaces.fill(
      [...nsRows.values()].sort(byName).map((n) =>
        h(
          'tr',
          { 'data-namespace': n.name },
          h('td', {}, link(`/namespaces/${encodeURIComponent(n.name)}`, n.name)),
          meshedCell(n.meshed),
          h('td', { class: 'num' }, String((trends.get(n.name) || { deployments: 0 }).deployments)),
          statCells(n),
          h('td', { class: 'trend' }, sparkline((trends.get(n.name) || { series: [] }).series, end)),
        ),
      ),
    );
    overview.fill(deploymentRows(rows, end));
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  });
}

function namespacePage(signal, ns) {
  const deployments = table('namespace-deployments', ['Deployment', 'Meshed', ...STAT_HEADERS, 'Trend'], 'No deployments.');
  const pods = table('namespace-pods', ['Pod', 'Deployment', 'Status', 'Last report'], 'No pods.');
  const page = [
    h('div', { class: 'toolbar' }, h('h1', {}, h('span', { class: 'muted' }, 'namespace '), ns), windowPicker()),
    h('section', {}, h('h2', {}, 'Deployments'), deployments),
    h('section', {}, h('h2', {}, 'Pods'), pods),
  ];
  let shown = false;
  render(h('p', { class: 'muted' }, `Loading namespace ${ns}…`));
  every(signal, async () => {
    const [rows, list, summary] = await Promise.all([
      statWithTrend(signal, 'TARGET_DEPLOY'),
      api('ListPods', {}, signal),
      summaryRows(signal, 'deployments', ns),
    ]);
    const members = (list.pods || []).filter((p) => p.name.split('/')[0] === ns).sort(byName);
    for (const key of [...rows.keys()]) if (key.split('/')[0] !== ns) rows.delete(key);
    withMeshed(rows, new Map([...summary].filter(([k]) => k.split('/')[0] === ns).map(([k, r]) => [k, r.meshed])));
    if (!rows.size && !members.length) {
      const known = [...new Set((list.pods || []).map((p) => p.name.split('/')[0]))].sort();
      notFound(`No namespace ${ns}`, `No pod of the mesh runs in namespace ${ns} and no traffic to it was seen.`, [
        link('/', 'Back to the overview'),
        ...known.map((k) => link(`/namespaces/${encodeURIComponent(k)}`, k)),
      ]);
      return 'stop';
    }
    if (!shown) {
      render(...page);
      shown = true;
    }
    deployments.fill(deploymentRows(rows, newestTimestamp(rows)));
    pods.fill(members.map(podRow));
    return null;
  });
}

function podRow(p) {
  const since = p.added ? seconds(p.sinceLastReport) : null;
  return h(
    'tr',
    { 'data-pod': p.name, 'data-fresh': String(isFresh(p)), class: freshClass(p) },
    h('td', {}, p.name),
    h('td', {}, p.deployment ? deploymentLink(p.deployment) : h('span', { class: 'muted' }, dash)),
    h('td', {}, p.status),
    h('td', { class: 'freshness' }, h('span', { class: 'dot' }), fmtAgo(since)),
  );
}

// ---- latency distribution ----

// Bins for the store's fine buckets: log-spaced between the smallest and
// largest latency seen, so a millisecond mode and a second-long tail both
// show.
const LATENCY_BINS = 48;

function latencyBins(buckets, lo, hi) {
  const a = Math.log(Math.max(lo, 0.05));
  const b = Math.log(Math.max(hi, lo * 1.5, 0.1));
  const bins = Array.from({ length: LATENCY_BINS }, (_, i) => ({
    lower: Math.exp(a + ((b - a) * i) / LATENCY_BINS),
    upper: Math.exp(a + ((b - a) * (i + 1)) / LATENCY_BINS),
    count: 0,
  }));
  for (const bk of buckets) {
    const mid = (bk.lowerMs + bk.upperMs) / 2;
    const i = Math.min(LATENCY_BINS - 1, Math.max(0, Math.floor(((Math.log(mid) - a) / (b - a)) * LATENCY_BINS)));
    bins[i].count += Number(bk.count);
  }
  return { bins, a, b };
}

// A histogram of the window's latencies (log scale), P50/P95/P99 marked,
// and a heatmap of the same bins per step.
function latencyDistribution(dist, onPrometheus) {
  const wrap = h('div', { id: 'latency-distribution', class: 'distribution' });
  if (!dist.exact) {
    wrap.dataset.exact = 'false';
    wrap.append(
      h(
        'p',
        { class: 'note' },
        'Stat comes from Prometheus here: its percentiles are bucket-interpolated (histogram_quantile inside the ' +
          "proxies' response_latency_ms buckets), and no exact histogram is kept to draw.",
      ),
    );
    return wrap;
  }
  wrap.dataset.exact = 'true';
  const buckets = dist.buckets || [];
  if (!buckets.length) {
    wrap.append(h('p', { class: 'muted' }, 'No responses in this window.'));
    return wrap;
  }
  // A little room either side, so the extreme bins are drawn whole.
  const lo = Math.min(...buckets.map((bk) => bk.lowerMs)) / 1.1;
  const hi = Math.max(...buckets.map((bk) => bk.upperMs)) * 1.1;
  const { bins, a, b } = latencyBins(buckets, lo, hi);
  const W = 760, H = 190, L = 58, R = 12, T = 18, B = 26;
  const x = (ms) => L + ((Math.log(Math.max(ms, 1e-3)) - a) / (b - a)) * (W - L - R);
  const maxCount = Math.max(...bins.map((bn) => bn.count), 1);
  const total = Number(dist.count) || 1;
  const y = (c) => T + (1 - c / maxCount) * (H - T - B);
  const el = svg('svg', { id: 'latency-histogram', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'Latency distribution' });
  const yAxis = svg('g', { class: 'axis y' });
  const yStep = niceStep((maxCount / total) * 100, 4);
  for (let v = 0; v <= (maxCount / total) * 100 + 1e-9; v += yStep) {
    const py = y((v / 100) * total);
    yAxis.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: py, y2: py }));
    const label = svg('text', { x: L - 6, y: py + 4, 'text-anchor': 'end' });
    label.textContent = `${+v.toFixed(1)}%`;
    yAxis.append(label);
  }
  const xAxis = svg('g', { class: 'axis x' });
  xAxis.append(svg('line', { x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (let decade = Math.pow(10, Math.floor(Math.log10(lo))); decade <= hi * 10; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = decade * m;
      if (v < lo || v > hi) continue;
      xAxis.append(svg('line', { x1: x(v), x2: x(v), y1: H - B, y2: H - B + 4 }));
      const label = svg('text', { x: x(v), y: H - 8, 'text-anchor': 'middle' });
      label.textContent = fmtAxisMs(v);
      xAxis.append(label);
    }
  }
  el.append(yAxis, xAxis);
  for (const bn of bins) {
    if (!bn.count) continue;
    const bar = svg('rect', {
      class: 'bar',
      x: x(bn.lower),
      y: y(bn.count),
      width: Math.max(1, x(bn.upper) - x(bn.lower) - 1),
      height: H - B - y(bn.count),
      'data-lower': bn.lower.toFixed(3),
      'data-upper': bn.upper.toFixed(3),
      'data-count': bn.count,
    });
    const title = svg('title');
    title.textContent = `${fmtAxisMs(bn.lower)}–${fmtAxisMs(bn.upper)}: ${bn.count} responses (${((bn.count / total) * 100).toFixed(1)}%)`;
    bar.append(title);
    el.append(bar);
  }
  for (const [label, v, cls] of [['P50', dist.p50Ms, 's1'], ['P95', dist.p95Ms, 's3'], ['P99', dist.p99Ms, 's4']]) {
    const ms = Number(v);
    if (!ms) continue;
    const mark = svg('g', { class: `mark ${cls}`, 'data-mark': label, 'data-ms': ms });
    mark.append(svg('line', { x1: x(ms), x2: x(ms), y1: T - 4, y2: H - B }));
    const right = x(ms) > W - 110;
    const text = svg('text', {
      x: x(ms) + (right ? -3 : 3),
      y: T + (label === 'P50' ? 0 : label === 'P95' ? 12 : 24),
      'text-anchor': right ? 'end' : 'start',
    });
    text.textContent = `${label} ${ms} ms`;
    mark.append(text);
    el.append(mark);
  }
  // The heatmap: one column per step, one row per bin, shaded by the
  // step's share of responses in it.
  const slots = dist.slots || [];
  const HW = 760, HH = 150;
  const heat = svg('svg', { id: 'latency-heatmap', viewBox: `0 0 ${HW} ${HH}`, width: HW, height: HH, role: 'img', 'aria-label': 'Latency over time' });
  const cw = (HW - L - R) / Math.max(1, slots.length);
  const ch = (HH - 8 - B) / LATENCY_BINS;
  const slotBins = slots.map((slot) => latencyBins(slot.buckets || [], lo, hi).bins);
  // Shade by each cell's share of its step, relative to the largest share.
  const maxShare = Math.max(
    1e-9,
    ...slotBins.flatMap((sb, i) => sb.map((bn) => bn.count / (Number(slots[i].count) || 1))),
  );
  slots.forEach((slot, i) => {
    const sb = slotBins[i];
    const n = Number(slot.count) || 0;
    sb.forEach((bn, j) => {
      if (!bn.count) return;
      const cell = svg('rect', {
        class: 'cell',
        x: L + i * cw,
        y: 8 + (LATENCY_BINS - 1 - j) * ch,
        width: cw - 1,
        height: ch + 0.5,
        'fill-opacity': (0.08 + 0.92 * (bn.count / (n || 1) / maxShare)).toFixed(2),
      });
      const title = svg('title');
      title.textContent = `${fmtTime(Number(slot.endMs), true)}, ${fmtAxisMs(bn.lower)}–${fmtAxisMs(bn.upper)}: ${bn.count} of ${n}`;
      cell.append(title);
      heat.append(cell);
    });
  });
  const hy = svg('g', { class: 'axis y' });
  for (const [v, j] of [[lo, 0], [Math.sqrt(lo * hi), LATENCY_BINS / 2], [hi, LATENCY_BINS]]) {
    const label = svg('text', { x: L - 6, y: 8 + (LATENCY_BINS - j) * ch + 4, 'text-anchor': 'end' });
    label.textContent = fmtAxisMs(v);
    hy.append(label);
  }
  const hx = svg('g', { class: 'axis x' });
  slots.forEach((slot, i) => {
    if (slots.length > 6 && i % Math.ceil(slots.length / 6)) return;
    const label = svg('text', { x: L + (i + 0.5) * cw, y: HH - 8, 'text-anchor': 'middle' });
    label.textContent = fmtTime(Number(slot.endMs), WINDOWS[chosenWindow].spanMs <= 900000);
    hx.append(label);
  });
  heat.append(hy, hx);
  wrap.append(
    h('div', { class: 'chart-title' }, `${dist.count} responses in the last ${WINDOWS[chosenWindow].label}, log scale (ms); exact to under 1%`),
    el,
    h('div', { class: 'chart-title' }, 'Over time (each column one step; darker: a larger share of its responses)'),
    heat,
  );
  if (onPrometheus) wrap.append(h('p', { class: 'note' }, 'Stat figures are bucket-interpolated by Prometheus.'));
  return wrap;
}

function deploymentPage(signal, ns, dep) {
  const name = `${ns}/${dep}`;
  const summary = cards('deployment-summary');
  const trend = h('div', { class: 'big-trend' });
  const charts = h('div', { id: 'golden-charts', class: 'charts' });
  const distribution = h('div', {});
  const routes = table('routes', ['Route', ...ROUTE_HEADERS], 'No routes in this window.');
  const routesNote = h('span', { class: 'muted', id: 'routes-note' });
  const pods = table('deployment-pods', ['Pod', ...STAT_HEADERS, 'Status', 'Last report'], 'No pods.');
  const callers = table('callers', ['Caller', ...STAT_HEADERS], 'No callers in this window.');
  const callees = table('callees', ['Callee', ...STAT_HEADERS], 'No callees in this window.');
  const page = [
    h(
      'div',
      { class: 'toolbar' },
      h('h1', {}, h('span', { class: 'muted' }, 'deployment '), name),
      link(`/namespaces/${encodeURIComponent(ns)}`, `namespace ${ns}`),
      link(`/tap?deployment=${encodeURIComponent(name)}`, 'Tap it →'),
      link(`/top?deployment=${encodeURIComponent(name)}`, 'Top →'),
      windowPicker(),
    ),
    h('div', { class: 'summary-row' }, summary, trend),
    h('section', {}, h('h2', {}, 'Golden metrics'), charts),
    h('section', {}, h('h2', {}, 'Latency distribution'), distribution),
    h('section', {}, h('h2', {}, 'Routes ', routesNote), routes),
    h('section', {}, h('h2', {}, 'Pods'), pods),
    h('div', { class: 'two-col' }, h('section', {}, h('h2', {}, 'Callers'), callers), h('section', {}, h('h2', {}, 'Callees'), callees)),
  ];
  const peerRow = (row) => h('tr', { 'data-deployment': row.name }, h('td', {}, deploymentLink(row.name)), statCells(row));
  let shown = false;
  render(h('p', { class: 'muted' }, `Loading deployment ${name}…`));
  every(signal, async () => {
    const [own, podStats, inbound, outbound, list, series, dist, rts] = await Promise.all([
      statWithTrend(signal, 'TARGET_DEPLOY', { targetDeploy: name }),
      stat(signal, 'TARGET_POD', { targetDeploy: name }, true),
      stat(signal, 'SOURCE_DEPLOY', { targetDeploy: name }, true),
      stat(signal, 'TARGET_DEPLOY', { sourceDeploy: name }, true),
      api('ListPods', {}, signal),
      statSeries(signal, 'TARGET_DEPLOY', { targetDeploy: name }),
      api('LatencyDistribution', { deployment: name, window: chosenWindow }, signal),
      routesOf(signal, name),
    ]);
    const row = own.get(name);
    const members = (list.pods || []).filter((p) => p.deployment === name).sort(byName);
    if (!row && !members.length) {
      const known = [...new Set((list.pods || []).map((p) => p.deployment).filter(Boolean))].sort();
      notFound(`No deployment ${name}`, `No pod of the mesh belongs to deployment ${name} and no traffic to it was seen in the last ${WINDOWS[chosenWindow].label}.`, [
        link('/', 'Back to the overview'),
        ...known.filter((k) => k.startsWith(`${ns}/`)).map((k) => link(deploymentHref(k), k)),
      ]);
      return 'stop';
    }
    if (!shown) {
      render(...page);
      shown = true;
    }
    summary.set(row);
    trend.replaceChildren(sparkline(row ? row.series : [], newestTimestamp(own), 360, 72));
    const end = Math.max(0, ...['rate', 'success', 'p50'].flatMap((k) => series[k].map((p) => p[0]))) || Date.now();
    charts.replaceChildren(...goldenCharts(series, end));
    distribution.replaceChildren(latencyDistribution(dist));
    fillRoutes(routes, routesNote, rts);
    pods.fill(
      members.map((p) => {
        const s = podStats.get(p.name) || {};
        const since = p.added ? seconds(p.sinceLastReport) : null;
        return h(
          'tr',
          { 'data-pod': p.name, class: freshClass(p) },
          h('td', {}, p.name.split('/')[1] || p.name),
          statCells(s),
          h('td', {}, p.status),
          h('td', { 'data-fresh': String(isFresh(p)) }, fmtAgo(since)),
        );
      }),
    );
    callers.fill([...inbound.values()].sort(byName).map(peerRow));
    callees.fill([...outbound.values()].sort(byName).map(peerRow));
    return null;
  });
}

// ---- routes ----

const ROUTE_HEADERS = ['Request rate', 'Success rate', 'P50', 'P95', 'P99'];
addNumericHeaders(ROUTE_HEADERS);

// The deployment's routes, or {unavailable: why} when the public API
// cannot give them (the rest of the page still shows).
async function routesOf(signal, deployment) {
  try {
    return await api('Routes', { deployment, window: chosenWindow }, signal);
  } catch (e) {
    if (e.down || e.name === 'AbortError') throw e;
    return { unavailable: e.message };
  }
}

function fillRoutes(routes, note, rsp) {
  if (rsp.unavailable) {
    note.textContent = `(unavailable: ${rsp.unavailable})`;
    routes.fill([]);
    return;
  }
  note.textContent = rsp.templated ? '(from the route templates telemetry was given)' : '(observed paths)';
  routes.fill(
    (rsp.routes || [])
      .slice()
      .sort((a, b) => (a.route < b.route ? -1 : a.route > b.route ? 1 : 0))
      .map((r) =>
        h(
          'tr',
          { 'data-route': r.route },
          h('td', { class: 'mono' }, r.route),
          h('td', { class: 'num', 'data-metric': 'rate' }, fmtRate(r.requestRate)),
          h('td', { class: `num ${successClass(r.successRate)}`, 'data-metric': 'success' }, fmtSuccess(r.successRate)),
          h('td', { class: 'num', 'data-metric': 'p50' }, fmtMs(r.p50LatencyMs)),
          h('td', { class: 'num', 'data-metric': 'p95' }, fmtMs(r.p95LatencyMs)),
          h('td', { class: 'num', 'data-metric': 'p99' }, fmtMs(r.p99LatencyMs)),
        ),
      ),
  );
}

// ---- topology ----

// Node positions by the node set and edges alone: a node's column is its
// longest path from a root (a node nobody in the mesh calls), its row its
// place by name within the column, so refreshes draw the same picture.
function layoutGraph(nodes, edges) {
  const depth = new Map(nodes.map((n) => [n, 0]));
  // Longest-path layering, bounded by the node count (a cycle stops it).
  for (let round = 0; round < nodes.length; round += 1) {
    let changed = false;
    for (const e of edges) {
      const d = (depth.get(e.src) || 0) + 1;
      if (e.src !== e.dst && d > (depth.get(e.dst) || 0) && d < nodes.length) {
        depth.set(e.dst, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  const columns = new Map();
  for (const n of [...nodes].sort()) {
    const d = depth.get(n);
    if (!columns.has(d)) columns.set(d, []);
    columns.get(d).push(n);
  }
  const pos = new Map();
  const maxRows = Math.max(1, ...[...columns.values()].map((c) => c.length));
  for (const [d, col] of columns) {
    col.forEach((n, i) => pos.set(n, { x: 90 + d * 210, y: 40 + (i + (maxRows - col.length) / 2) * 80 }));
  }
  return { pos, width: 180 + Math.max(0, ...columns.keys()) * 210, height: 40 + maxRows * 80 };
}

function topologyPage(signal) {
  const holder = h('div', { id: 'topology', class: 'graph' });
  const note = h('span', { class: 'muted' });
  render(
    h('div', { class: 'toolbar' }, h('h1', {}, 'Topology'), note, windowPicker()),
    h('p', { class: 'muted' }, 'Deployments and who calls whom: edge width is request rate, colour the success rate. Click a deployment to open it.'),
    holder,
  );
  every(signal, async () => {
    const [rsp, list] = await Promise.all([
      api('Edges', { resource: 'deployments', namespace: '', window: chosenWindow }, signal),
      api('ListPods', {}, signal),
    ]);
    const edges = (rsp.edges || []).filter((e) => e.src && e.dst);
    const rates = new Map();
    for (const e of edges) rates.set(e.dst, (rates.get(e.dst) || 0) + (e.requestRate || 0));
    const nodes = [...new Set([...(list.pods || []).map((p) => p.deployment).filter(Boolean), ...edges.flatMap((e) => [e.src, e.dst])])];
    const { pos, width, height } = layoutGraph(nodes, edges);
    const el = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': 'Topology' });
    const defs = svg('defs');
    for (const cls of ['good', 'warn', 'bad', 'none']) {
      const marker = svg('marker', { id: `arrow-${cls}`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 11, markerHeight: 11, markerUnits: 'userSpaceOnUse', orient: 'auto-start-reverse' });
      marker.append(svg('path', { d: 'M0,0L10,5L0,10z', class: `arrow ${cls}` }));
      defs.append(marker);
    }
    el.append(defs);
    const maxRate = Math.max(...edges.map((e) => e.requestRate || 0), 1e-9);
    for (const e of [...edges].sort((a, b) => (a.src + a.dst < b.src + b.dst ? -1 : 1))) {
      const a = pos.get(e.src);
      const b = pos.get(e.dst);
      const cls = successClass(e.successRate) || 'none';
      const x1 = a.x + 75, x2 = b.x - 77;
      const mx = (x1 + x2) / 2;
      const path = svg('path', {
        class: `edge ${cls}`,
        d: `M${x1},${a.y} C${mx},${a.y} ${mx},${b.y} ${x2},${b.y}`,
        'stroke-width': (1.5 + 6 * Math.sqrt((e.requestRate || 0) / maxRate)).toFixed(1),
        'marker-end': `url(#arrow-${cls})`,
        'data-src': e.src,
        'data-dst': e.dst,
        'data-rate': e.requestRate || 0,
      });
      const title = svg('title');
      title.textContent = `${e.src} → ${e.dst}: ${fmtRate(e.requestRate)}, ${fmtSuccess(e.successRate)} success, P99 ${fmtMs(e.p99LatencyMs)}`;
      path.append(title);
      el.append(path);
    }
    for (const n of [...nodes].sort()) {
      const p = pos.get(n);
      const g = svg('g', { class: 'node', 'data-node': n, transform: `translate(${p.x - 75},${p.y - 24})`, tabindex: 0 });
      g.append(svg('rect', { width: 150, height: 48, rx: 8 }));
      const t1 = svg('text', { x: 75, y: 20, 'text-anchor': 'middle', class: 'name' });
      t1.textContent = n;
      const t2 = svg('text', { x: 75, y: 37, 'text-anchor': 'middle', class: 'rate' });
      t2.textContent = rates.has(n) ? `${fmtRate(rates.get(n))} in` : 'no mesh callers';
      g.append(t1, t2);
      g.addEventListener('click', () => navigate(deploymentHref(n)));
      el.append(g);
    }
    holder.replaceChildren(el);
    note.textContent = `${nodes.length} deployments, ${edges.length} edges`;
  });
}

function isFresh(pod) {
  return Boolean(pod.added) && seconds(pod.sinceLastReport) < STALE_AFTER_S;
}

function freshClass(pod) {
  return isFresh(pod) ? null : 'stale';
}

function podsPage(signal) {
  const counts = h('span', { class: 'muted' });
  const pods = table('pods', ['Pod', 'Deployment', 'Status', 'Pod IP', 'Last report'], 'No pods in the mesh.');
  render(h('div', { class: 'toolbar' }, h('h1', {}, 'Pods'), counts), pods);
  every(signal, async () => {
    const list = ((await api('ListPods', {}, signal)).pods || []).sort(byName);
    const fresh = list.filter(isFresh).length;
    counts.textContent = `${list.length} pods, ${fresh} reported in the last ${STALE_AFTER_S}s`;
    pods.fill(
      list.map((p) => {
        const since = p.added ? seconds(p.sinceLastReport) : null;
        return h(
          'tr',
          { 'data-pod': p.name, 'data-fresh': String(isFresh(p)), class: freshClass(p) },
          h('td', {}, p.name),
          h('td', {}, p.deployment ? deploymentLink(p.deployment) : h('span', { class: 'muted' }, dash)),
          h('td', {}, p.status),
          h('td', { class: 'mono' }, p.podIP || dash),
          h('td', { class: 'freshness' }, h('span', { class: 'dot' }), fmtAgo(since)),
        );
      }),
    );
  });
}

// ---- tap ----

function ipText(ip) {
  if (!ip) return '?';
  if (ip.ipv4 !== undefined) {
    const n = Number(ip.ipv4) >>> 0;
    return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
  }
  if (ip.ipv6) {
    const halves = [BigInt(ip.ipv6.first || 0), BigInt(ip.ipv6.last || 0)];
    const hextets = halves.flatMap((b) => [48n, 32n, 16n, 0n].map((s) => ((b >> s) & 0xffffn).toString(16)));
    // The URL parser writes IPv6 in its canonical, compressed form.
    return new URL(`http://[${hextets.join(':')}]/`).hostname;
  }
  return '?';
}

function addrText(a) {
  return a ? `${ipText(a.ip)}:${a.port || 0}` : '?';
}

const GRPC_CODES = [
  'OK', 'Cancelled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists',
  'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange',
  'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated',
];

function methodText(m) {
  return m ? m.registered || m.unregistered || '' : '';
}

// One tap event as the CLI prints it: req, rsp or end, with the fields that
// event carries.
function tapRow(event) {
  const http = event.http || {};
  const src = addrText(event.source);
  const dst = addrText(event.target);
  let kind, init;
  const cells = { method: '', authority: '', path: '', status: '', latency: '' };
  if (http.requestInit) {
    kind = 'req';
    init = http.requestInit;
    cells.method = methodText(init.method);
    cells.authority = init.authority || '';
    cells.path = init.path || '';
  } else if (http.responseInit) {
    kind = 'rsp';
    init = http.responseInit;
    cells.status = String(init.httpStatus ?? '');
    cells.latency = fmtLatency(seconds(init.sinceRequestInit));
  } else if (http.responseEnd) {
    kind = 'end';
    init = http.responseEnd;
    const code = init.grpcStatus ?? 0;
    cells.status = `grpc ${GRPC_CODES[code] || code} · ${init.responseBytes ?? 0} B`;
    // As the CLI's `duration`: from the response's start to its end.
    cells.latency = fmtLatency(seconds(init.sinceResponseInit));
  } else {
    return null;
  }
  const id = init.id ? `${init.id.base || 0}:${init.id.stream || 0}` : '';
  return h(
    'tr',
    { 'data-kind': kind, class: `tap-${kind}` },
    h('td', {}, h('span', { class: `badge ${kind}` }, kind)),
    h('td', { class: 'mono' }, id),
    h('td', { class: 'mono' }, src),
    h('td', { class: 'mono' }, dst),
    h('td', {}, cells.method),
    h('td', {}, cells.authority),
    h('td', { class: 'mono path' }, cells.path),
    h('td', {}, cells.status),
    h('td', { class: 'num' }, cells.latency),
  );
}

function tapPage(signal) {
  const params = new URLSearchParams(location.search);
  const kind = h('select', { id: 'tap-kind', name: 'kind' }, h('option', { value: 'deployment' }, 'deployment'), h('option', { value: 'pod' }, 'pod'));
  if (params.has('pod')) kind.value = 'pod';
  const target = h('input', {
    id: 'tap-target',
    name: 'target',
    required: true,
    placeholder: 'namespace/name',
    list: 'tap-targets',
    value: params.get('deployment') || params.get('pod') || '',
  });
  const targets = h('datalist', { id: 'tap-targets' });
  const path = h('input', { id: 'tap-path', name: 'path', placeholder: '/ (any)' });
  const method = h(
    'select',
    { id: 'tap-method', name: 'method' },
    h('option', { value: '' }, 'any'),
    ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'].map((m) => h('option', { value: m }, m)),
  );
  const maxRps = h('input', { id: 'tap-max-rps', name: 'maxRps', type: 'number', min: '0.1', step: '0.1', value: '5' });
  const start = h('button', { id: 'tap-start', type: 'submit' }, 'Start');
  const stop = h('button', { id: 'tap-stop', type: 'button', disabled: true }, 'Stop');
  const status = h('span', { id: 'tap-status', class: 'muted' }, 'Pick a deployment or pod and start.');
  const events = table('tap-events', ['', 'ID', 'Source', 'Destination', 'Method', 'Authority', 'Path', 'Status', 'Latency'], 'No events yet.');
  events.fill([]);
  let tap = null; // the running tap's AbortController
  const finish = (text, failed) => {
    tap = null;
    start.disabled = false;
    stop.disabled = true;
    status.textContent = text;
    status.className = failed ? 'bad' : 'muted';
  };
  stop.addEventListener('click', () => tap && tap.abort());
  signal.addEventListener('abort', () => tap && tap.abort());
  const form = h(
    'form',
    {
      id: 'tap-form',
      class: 'tap-form',
      onsubmit: (e) => {
        e.preventDefault();
        const request = { [kind.value]: target.value.trim(), maxRps: Number(maxRps.value) || 1 };
        if (path.value.trim()) request.path = path.value.trim();
        if (method.value) request.method = method.value;
        tap = new AbortController();
        start.disabled = true;
        stop.disabled = false;
        events.fill([]);
        runTap(request, tap.signal, events, status).then(
          (text) => finish(text, false),
          (e) => (e.name === 'AbortError' ? finish(signal.aborted ? '' : 'Stopped.', false) : finish(e.message, true)),
        );
      },
    },
    h('label', {}, 'Target', h('span', { class: 'inline' }, kind, target)),
    h('label', {}, 'Path prefix', path),
    h('label', {}, 'Method', method),
    h('label', {}, 'Max rps', maxRps),
    h('div', { class: 'buttons' }, start, stop),
    targets,
  );
  render(h('div', { class: 'toolbar' }, h('h1', {}, 'Live tap'), status), form, events);
  // Opened with a target (`/tap?deployment=ns/name`, as the deployment
  // page links it): start at once.
  if (target.value) form.requestSubmit();
  api('ListPods', {}, signal).then(
    (list) => {
      const names = new Set();
      for (const p of list.pods || []) {
        if (p.deployment) names.add(p.deployment);
        names.add(p.name);
      }
      targets.replaceChildren(...[...names].sort().map((n) => h('option', { value: n })));
    },
    () => {},
  );
}

// Longest line a tap stream may buffer before its newline: an event is a
// few hundred bytes, so a longer line is not one.
const MAX_TAP_LINE = 64 * 1024;

// Streams one tap (JSON lines, one event per line), calling `onEvent` for
// each and `onChunk` after each chunk read; the number of events.
async function streamTap(request, signal, onEvent, onChunk) {
  let rsp;
  try {
    rsp = await fetch('/api/v1/Tap', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(request),
      signal,
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(`the dashboard server is not answering (${e.message})`, 0);
  }
  if (!rsp.ok) throw new ApiError(`Tap failed (${rsp.status}): ${(await rsp.text()).trim()}`, rsp.status);
  let count = 0;
  const reader = rsp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += value;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline).trim();
      buffered = buffered.slice(newline + 1);
      if (!line) continue;
      onEvent(JSON.parse(line));
      count += 1;
    }
    if (buffered.length > MAX_TAP_LINE) throw new Error(`Tap sent a line over ${MAX_TAP_LINE} bytes`);
    onChunk(count);
  }
  return count;
}

// Streams one tap into the events table, newest row on top.
async function runTap(request, signal, events, status) {
  status.textContent = 'Waiting for the first event…';
  const tbody = events.tBodies[0];
  let cleared = false;
  const count = await streamTap(
    request,
    signal,
    (event) => {
      if (!cleared) {
        tbody.replaceChildren();
        cleared = true;
      }
      const row = tapRow(event);
      if (!row) return;
      tbody.prepend(row);
      while (tbody.rows.length > MAX_TAP_ROWS) tbody.lastElementChild.remove();
    },
    (n) => {
      status.textContent = `${n} events (Stop to end the tap)`;
    },
  );
  return `Tap ended after ${count} events.`;
}

// ---- top ----

// Live top, as `conduit top` shows it: the requests a tap sees, grouped by
// source, destination, method and path, with their count, best, worst and
// last latency and success rate, busiest first.
async function topPage(signal) {
  const params = new URLSearchParams(location.search);
  const target = params.get('deployment') || params.get('pod') || '';
  const kind = params.has('pod') ? 'pod' : 'deployment';
  const status = h('span', { id: 'top-status', class: 'muted' });
  const rows = table('top', ['Source', 'Destination', 'Method', 'Path', 'Count', 'Best', 'Worst', 'Last', 'Success rate'], 'No requests yet.');
  rows.fill([]);
  const form = h(
    'form',
    {
      id: 'top-form',
      class: 'tap-form',
      onsubmit: (e) => {
        e.preventDefault();
        const value = e.target.elements.target.value.trim();
        if (value) navigate(`/top?${e.target.elements.kind.value}=${encodeURIComponent(value)}`);
      },
    },
    h(
      'label',
      {},
      'Target',
      h(
        'span',
        { class: 'inline' },
        h('select', { name: 'kind' }, h('option', { value: 'deployment', selected: kind === 'deployment' }, 'deployment'), h('option', { value: 'pod', selected: kind === 'pod' }, 'pod')),
        h('input', { name: 'target', value: target, placeholder: 'namespace/name', required: true }),
      ),
    ),
    h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Start')),
  );
  render(h('div', { class: 'toolbar' }, h('h1', {}, 'Top'), status), form, rows);
  if (!target) {
    status.textContent = 'Pick a deployment or pod.';
    return;
  }
  const groups = new Map(); // key -> row
  let dropped = 0; // requests of kinds past MAX_TOP_ROWS, not shown
  const pending = new Map(); // request id -> key
  let dirty = false;
  const redraw = () => {
    if (!dirty) return;
    dirty = false;
    const sorted = [...groups.values()].sort((a, b) => b.count - a.count || (a.key < b.key ? -1 : 1));
    rows.fill(
      sorted.map((g) =>
        h(
          'tr',
          { 'data-path': g.path, 'data-count': g.count, 'data-source': g.source, 'data-destination': g.destination },
          h('td', { class: 'mono' }, g.source),
          h('td', { class: 'mono' }, g.destination),
          h('td', {}, g.method),
          h('td', { class: 'mono path' }, g.path),
          h('td', { class: 'num' }, String(g.count)),
          h('td', { class: 'num' }, fmtLatency(g.best)),
          h('td', { class: 'num' }, fmtLatency(g.worst)),
          h('td', { class: 'num' }, fmtLatency(g.last)),
          h('td', { class: `num ${successClass(g.done ? g.ok / g.done : null)}` }, g.done ? fmtSuccess(g.ok / g.done) : dash),
        ),
      ),
    );
  };
  const timer = setInterval(redraw, TOP_REDRAW_MS);
  signal.addEventListener('abort', () => clearInterval(timer));
  const idOf = (init) => (init && init.id ? `${init.id.base || 0}:${init.id.stream || 0}` : '');
  const onEvent = (event) => {
    const http = event.http || {};
    if (http.requestInit) {
      const init = http.requestInit;
      const source = podOf(ipText((event.source || {}).ip));
      const destination = podOf(ipText((event.target || {}).ip));
      const method = methodText(init.method);
      const path = init.path || '';
      const key = `${source} ${destination} ${method} ${path}`;
      if (!groups.has(key)) {
        if (groups.size >= MAX_TOP_ROWS) {
          dropped += 1;
          return;
        }
        groups.set(key, { key, source, destination, method, path, count: 0, best: null, worst: null, last: null, ok: 0, done: 0 });
      }
      groups.get(key).count += 1;
      if (pending.size >= MAX_TOP_PENDING) pending.delete(pending.keys().next().value);
      pending.set(idOf(init), key);
      dirty = true;
    } else if (http.responseInit) {
      const init = http.responseInit;
      const key = pending.get(idOf(init));
      pending.delete(idOf(init));
      const g = key && groups.get(key);
      if (!g) return;
      const s = seconds(init.sinceRequestInit);
      g.last = s;
      g.best = g.best === null ? s : Math.min(g.best, s);
      g.worst = g.worst === null ? s : Math.max(g.worst, s);
      g.done += 1;
      if ((init.httpStatus || 0) < 500) g.ok += 1;
      dirty = true;
    }
  };
  // Pods by IP, so rows name pods as the rest of the app does; an IP no
  // pod owns stays an IP. Read before the tap starts, so one request's
  // rows never split between an IP and a name.
  const pods = new Map();
  const podOf = (ip) => pods.get(ip) || ip;
  status.textContent = `Waiting for requests to ${target}…`;
  try {
    for (const p of (await api('ListPods', {}, signal)).pods || []) if (p.podIP) pods.set(p.podIP, p.name);
  } catch (_) {
    // Without the pod list the rows show IPs.
  }
  if (signal.aborted) return;
  streamTap({ [kind]: target, maxRps: 100 }, signal, onEvent, (n) => {
    status.textContent = `${n} events from ${target}`;
    if (dropped) status.textContent += ` (${dropped} requests of further kinds not shown: the table holds ${MAX_TOP_ROWS} rows)`;
  }).then(
    () => {
      redraw();
      status.textContent = `Tap of ${target} ended.`;
    },
    (e) => {
      if (e.name !== 'AbortError') showError(e);
    },
  );
}

// ---- routing ----

const ROUTES = [
  [/^\/$/, 'overview', overviewPage],
  [/^\/namespaces\/([^/]+)\/?$/, 'overview', namespacePage],
  [/^\/deployments\/([^/]+)\/([^/]+)\/?$/, 'overview', deploymentPage],
  [/^\/topology\/?$/, 'topology', topologyPage],
  [/^\/pods\/?$/, 'pods', podsPage],
  [/^\/tap\/?$/, 'tap', tapPage],
  [/^\/top\/?$/, 'top', topPage],
];

function render(...children) {
  document.getElementById('app').replaceChildren(...children);
}

function route() {
  if (current) current.abort();
  current = new AbortController();
  clearError();
  showPartial(null);
  for (const [pattern, nav, page] of ROUTES) {
    const m = location.pathname.match(pattern);
    if (!m) continue;
    document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', a.dataset.nav === nav));
    document.body.dataset.page = page.name.replace(/Page$/, '');
    page(current.signal, ...m.slice(1).map(decodeURIComponent));
    return;
  }
  document.querySelectorAll('nav a').forEach((a) => a.classList.remove('active'));
  notFound('Page not found', `The dashboard has no page at ${location.pathname}.`, [
    link('/', 'The mesh overview'),
    link('/topology', 'Topology'),
    link('/pods', 'Pods'),
    link('/tap', 'Tap'),
  ]);
}

// The control plane's parts as the public API sees them, in the footer;
// checked again every REFRESH_MS.
async function health() {
  const el = document.getElementById('health');
  try {
    const rsp = await api('Health', {});
    el.replaceChildren(
      ...(rsp.components || []).map((c) =>
        h('span', { class: `health ${c.healthy ? 'good' : 'bad'}`, title: c.message || '', 'data-component': c.name }, h('span', { class: 'dot' }), c.name),
      ),
    );
  } catch (e) {
    el.replaceChildren(h('span', { class: 'health bad' }, h('span', { class: 'dot' }), 'public API unreachable'));
  }
  setTimeout(health, REFRESH_MS);
}

function navigate(href) {
  history.pushState(null, '', href);
  route();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a[data-link]');
  if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute('href'));
});
window.addEventListener('popstate', route);

document.addEventListener('DOMContentLoaded', () => {
  route();
  const uuid = document.body.dataset.uuid;
  if (uuid) document.getElementById('install-id').textContent = `install ${uuid}`;
  health();
  api('Version', {}).then(
    (v) => {
      document.getElementById('version').textContent = `Conduit ${v.releaseVersion} (built ${v.buildDate})`;
    },
    () => {},
  );
});
