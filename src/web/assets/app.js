// The Conduit dashboard: a small single-page app over the public API
// (POST /api/v1/{Stat,ListPods,Version,Tap} with JSON bodies, forwarded by
// the server that serves this file). Pages: the mesh overview, one
// deployment, the pod list and a live tap. No framework, no build step.
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

// ---- DOM ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined));
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

function showError(message) {
  const el = document.getElementById('error');
  el.textContent = message;
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

async function api(call, body, signal) {
  const rsp = await fetch(`/api/v1/${call}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body || {}),
    signal,
  });
  if (!rsp.ok) {
    const text = (await rsp.text()).trim();
    throw new Error(`${call} failed (${rsp.status}): ${text || rsp.statusText}`);
  }
  return rsp.json();
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
const NUMERIC_HEADERS = new Set([...STAT_HEADERS, 'Latency']);

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
// page is left.
function every(signal, refresh) {
  const tick = async () => {
    if (signal.aborted) return;
    try {
      await refresh();
      clearError();
    } catch (e) {
      if (!signal.aborted) showError(e.message);
    }
    if (!signal.aborted) setTimeout(tick, REFRESH_MS);
  };
  tick();
}

function byName(a, b) {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

// ---- pages ----

function overviewPage(signal) {
  const totals = cards('totals');
  const overview = table('overview', ['Deployment', ...STAT_HEADERS, 'Trend'], 'No deployments yet.');
  const updated = h('span', { class: 'muted' });
  render(
    h('div', { class: 'toolbar' }, h('h1', {}, 'Mesh overview'), updated, windowPicker()),
    totals,
    h('section', {}, h('h2', {}, 'Deployments'), overview),
  );
  every(signal, async () => {
    const [rows, mesh, pods] = await Promise.all([
      statWithTrend(signal, 'TARGET_DEPLOY'),
      stat(signal, 'MESH', {}, true),
      api('ListPods', {}, signal),
    ]);
    totals.set(mesh.get(''));
    // Deployments with pods but no traffic in the window are listed too.
    for (const pod of pods.pods || []) {
      if (pod.deployment && !rows.has(pod.deployment)) {
        rows.set(pod.deployment, { name: pod.deployment, rate: null, success: null, p50: null, p99: null, series: [] });
      }
    }
    rows.delete('');
    const end = newestTimestamp(rows);
    overview.fill(
      [...rows.values()].sort(byName).map((row) =>
        h(
          'tr',
          { 'data-deployment': row.name, 'data-rate': row.rate ?? 0 },
          h('td', {}, deploymentLink(row.name)),
          statCells(row),
          h('td', { class: 'trend' }, sparkline(row.series, end)),
        ),
      ),
    );
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  });
}

function deploymentPage(signal, ns, dep) {
  const name = `${ns}/${dep}`;
  const summary = cards('deployment-summary');
  const trend = h('div', { class: 'big-trend' });
  const pods = table('deployment-pods', ['Pod', ...STAT_HEADERS, 'Status', 'Last report'], 'No pods.');
  const callers = table('callers', ['Caller', ...STAT_HEADERS], 'No callers in this window.');
  const callees = table('callees', ['Callee', ...STAT_HEADERS], 'No callees in this window.');
  render(
    h(
      'div',
      { class: 'toolbar' },
      h('h1', {}, h('span', { class: 'muted' }, 'deployment '), name),
      link(`/tap?deployment=${encodeURIComponent(name)}`, 'Tap it →'),
      windowPicker(),
    ),
    h('div', { class: 'summary-row' }, summary, trend),
    h('section', {}, h('h2', {}, 'Pods'), pods),
    h('div', { class: 'two-col' }, h('section', {}, h('h2', {}, 'Callers'), callers), h('section', {}, h('h2', {}, 'Callees'), callees)),
  );
  const peerRow = (row) => h('tr', { 'data-deployment': row.name }, h('td', {}, deploymentLink(row.name)), statCells(row));
  every(signal, async () => {
    const [own, podStats, inbound, outbound, list] = await Promise.all([
      statWithTrend(signal, 'TARGET_DEPLOY', { targetDeploy: name }),
      stat(signal, 'TARGET_POD', { targetDeploy: name }, true),
      stat(signal, 'SOURCE_DEPLOY', { targetDeploy: name }, true),
      stat(signal, 'TARGET_DEPLOY', { sourceDeploy: name }, true),
      api('ListPods', {}, signal),
    ]);
    const row = own.get(name);
    summary.set(row);
    trend.replaceChildren(sparkline(row ? row.series : [], newestTimestamp(own), 360, 72));
    const members = (list.pods || []).filter((p) => p.deployment === name).sort(byName);
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
          (e) => (e.name === 'AbortError' ? finish('Stopped.', false) : finish(e.message, true)),
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

// Streams one tap: JSON lines, one event per line, newest row on top.
async function runTap(request, signal, events, status) {
  status.textContent = 'Waiting for the first event…';
  const rsp = await fetch('/api/v1/Tap', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(request),
    signal,
  });
  if (!rsp.ok) throw new Error(`Tap failed (${rsp.status}): ${(await rsp.text()).trim()}`);
  const tbody = events.tBodies[0];
  tbody.replaceChildren();
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
      const row = tapRow(JSON.parse(line));
      if (!row) continue;
      tbody.prepend(row);
      while (tbody.rows.length > MAX_TAP_ROWS) tbody.lastElementChild.remove();
      count += 1;
    }
    status.textContent = `${count} events (Stop to end the tap)`;
  }
  return `Tap ended after ${count} events.`;
}

// ---- routing ----

const ROUTES = [
  [/^\/$/, 'overview', overviewPage],
  [/^\/deployments\/([^/]+)\/([^/]+)\/?$/, 'overview', deploymentPage],
  [/^\/pods\/?$/, 'pods', podsPage],
  [/^\/tap\/?$/, 'tap', tapPage],
];

function render(...children) {
  document.getElementById('app').replaceChildren(...children);
}

function route() {
  if (current) current.abort();
  current = new AbortController();
  clearError();
  for (const [pattern, nav, page] of ROUTES) {
    const m = location.pathname.match(pattern);
    if (!m) continue;
    document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('active', a.dataset.nav === nav));
    document.body.dataset.page = page.name.replace(/Page$/, '');
    page(current.signal, ...m.slice(1).map(decodeURIComponent));
    return;
  }
  render(h('h1', {}, 'Not found'), h('p', {}, link('/', 'Back to the overview')));
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
  api('Version', {}).then(
    (v) => {
      document.getElementById('version').textContent = `Conduit ${v.releaseVersion} (built ${v.buildDate})`;
    },
    () => {},
  );
});
