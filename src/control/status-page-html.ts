/**
 * The status page itself: one HTML document with its style and script inline, so the
 * relay serves it from memory and the browser loads nothing from anywhere else. The
 * Content-Security-Policy pins the two inline blocks by hash and allows only this
 * origin's /status.json and /events, so the page cannot fetch from the network even
 * if a view carried markup (it is rendered with textContent, never innerHTML).
 *
 * The throughput chart is an SVG path drawn by the script: vega + vega-lite would add
 * ~760 KB to serve, and vega compiles its expressions with `new Function`, which the
 * policy (no 'unsafe-eval') forbids.
 */
import { createHash } from 'node:crypto';

const STYLE = String.raw`
:root { --bg: #fff; --fg: #1d232b; --muted: #6a7480; --line: #dde1e6; --head: #f3f5f7;
  --ok: #1a7f37; --bad: #c62828; --warn: #a15c00; --up: #2f6fd6; --down: #d9822b; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15181c; --fg: #e3e6ea; --muted: #8d96a0; --line: #2c3238; --head: #1d2126;
    --ok: #4ac26b; --bad: #ff6b6b; --warn: #e3a33a; --up: #6ea2ff; --down: #f0a050; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 8px 14px 20px; background: var(--bg); color: var(--fg);
  font: 13px/1.35 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 14px;
  border-bottom: 1px solid var(--line); padding-bottom: 6px; }
h1 { font-size: 16px; margin: 0; }
h2 { font-size: 13px; margin: 14px 0 4px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
h2 .note { text-transform: none; letter-spacing: 0; font-weight: normal; margin-left: 6px; }
.muted, .note { color: var(--muted); }
.badge { display: inline-block; padding: 0 6px; border: 1px solid var(--line); border-radius: 3px; }
.badge.on { color: var(--ok); border-color: var(--ok); }
.badge.off { color: var(--muted); }
#features { display: inline-flex; flex-wrap: wrap; gap: 4px; }
#state { margin-left: auto; font-weight: 600; }
#state.live { color: var(--ok); }
#state.down { color: var(--bad); }
#state.stale { color: var(--warn); }
#problem { color: var(--bad); margin: 4px 0; }
#problem:empty { display: none; }
body.disconnected main { opacity: .55; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(430px, 1fr)); gap: 0 24px; }
.totals { display: flex; flex-wrap: wrap; gap: 4px 22px; margin: 8px 0 0; }
.totals div { display: flex; flex-direction: column; }
.totals b { font-size: 16px; font-variant-numeric: tabular-nums; }
.totals span { color: var(--muted); font-size: 11px; text-transform: uppercase; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 2px 8px 2px 0; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: var(--head); font-weight: 600; font-size: 12px; padding-left: 4px; }
td:first-child { padding-left: 4px; }
td.n, th.n { text-align: right; }
td.empty { color: var(--muted); font-style: italic; }
td.code { font-family: ui-monospace, monospace; color: var(--bad); }
td.msg { white-space: normal; }
td.warn { color: var(--warn); }
td.bad { color: var(--bad); }
.mono { font-family: ui-monospace, monospace; font-size: 12px; }
#chart { width: 100%; height: 130px; display: block; }
#chart .grid-line { stroke: var(--line); stroke-width: 1; }
#chart text { fill: var(--muted); font-size: 10px; }
#chart path { fill: none; stroke-width: 1.6; stroke-linejoin: round; }
#chart path.up, .key.up { stroke: var(--up); color: var(--up); }
#chart path.down, .key.down { stroke: var(--down); color: var(--down); }
.legend { display: flex; gap: 18px; font-variant-numeric: tabular-nums; }
`;

const SCRIPT = String.raw`
'use strict';
(function () {
  var HISTORY_MS = 120000;
  var STALE_MS = 5000;
  var RETRY_MS = 3000;
  var SVG = 'http://www.w3.org/2000/svg';
  var source = null;
  var lastView = null;
  var lastViewAt = 0;
  var connected = false;
  var retryTimer = null;
  // Byte totals of successive views, on the relay's clock, for the throughput chart.
  var samples = [];

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function scaled(n, step, units) {
    var i = 0;
    while (Math.abs(n) >= step && i < units.length - 1) { n /= step; i++; }
    var digits = i === 0 ? 0 : Math.abs(n) < 10 ? 2 : Math.abs(n) < 100 ? 1 : 0;
    return n.toFixed(digits) + ' ' + units[i];
  }
  function fmtBytes(n) { return typeof n === 'number' ? scaled(n, 1000, ['B', 'kB', 'MB', 'GB', 'TB']) : '–'; }
  function fmtRate(bytesPerS) {
    return typeof bytesPerS === 'number' ? scaled(bytesPerS * 8, 1000, ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s', 'Tbit/s']) : '–';
  }
  function fmtMs(ms) {
    if (typeof ms !== 'number') return '–';
    return (ms < 10 ? ms.toFixed(1) : Math.round(ms).toString()) + ' ms';
  }
  function fmtAge(ms) {
    var s = Math.floor(ms / 1000);
    if (s < 1) return Math.round(ms) + ' ms';
    if (s < 60) return s + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + (s % 60) + ' s';
    var h = Math.floor(m / 60);
    if (h < 48) return h + ' h ' + (m % 60) + ' min';
    return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
  }
  function fmtCount(n) { return typeof n === 'number' ? n.toLocaleString('en-US') : '–'; }
  function fmtClock(unixMs) {
    var d = new Date(unixMs);
    function two(x) { return (x < 10 ? '0' : '') + x; }
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  // cells: [text, className?, column name?]
  function fillTable(id, rows, emptyText, rowKey) {
    var body = $(id);
    var width = body.parentNode.querySelectorAll('th').length;
    var trs = rows.map(function (row) {
      var tr = el('tr');
      if (rowKey) tr.setAttribute(rowKey[0], row.key);
      row.cells.forEach(function (c) {
        var td = el('td', c[1] || '', c[0]);
        if (c[2]) td.setAttribute('data-col', c[2]);
        if (c[3]) td.title = c[3];
        tr.appendChild(td);
      });
      return tr;
    });
    if (trs.length === 0) {
      var td = el('td', 'empty', emptyText);
      td.colSpan = width;
      var tr = el('tr');
      tr.appendChild(td);
      trs = [tr];
    }
    body.replaceChildren.apply(body, trs);
  }

  function badge(name, on) {
    return el('span', 'badge ' + (on ? 'on' : 'off'), name + (on ? ' on' : ' off'));
  }

  function render(v) {
    lastView = v;
    lastViewAt = Date.now();
    record(v);
    $('problem').textContent = '';
    $('uptime').textContent = 'up ' + fmtAge(v.at - v.startedAt);
    $('features').replaceChildren(
      badge('early SYN', v.features.earlySyn), badge('pool', v.features.pool), badge('Turbo-Start', v.features.turbo),
      el('span', 'badge', 'log ' + v.logLevel));

    var rate = currentRate();
    $('t-open').textContent = fmtCount(v.open);
    $('t-closed').textContent = fmtCount(v.closed);
    $('t-failed').textContent = fmtCount(v.failed);
    $('t-bytes-up').textContent = fmtBytes(v.bytes.up);
    $('t-bytes-down').textContent = fmtBytes(v.bytes.down);
    $('t-rate-up').textContent = fmtRate(rate && rate.up);
    $('t-rate-down').textContent = fmtRate(rate && rate.down);
    $('k-up').textContent = '▲ up (to servers) ' + fmtRate(rate && rate.up);
    $('k-down').textContent = '▼ down (to clients) ' + fmtRate(rate && rate.down);
    drawChart();

    fillTable('peers', v.peers.map(function (p) {
      var pool = p.pool;
      return { key: p.name, cells: [
        [p.name, '', 'name'], [p.endpoint, 'mono', 'endpoint'],
        [pool.enabled ? String(pool.size) : 'off', 'n', 'pool', 'ready pooled connections now'],
        [pool.enabled ? pool.low + ' / ' + pool.high : '–', 'n', 'watermarks'],
        [fmtCount(pool.takes), 'n', 'takes'], [fmtCount(pool.misses), 'n', 'misses'],
        [fmtCount(pool.stale), 'n', 'stale'], [fmtCount(pool.refillFailures), pool.refillFailures > 0 ? 'n warn' : 'n', 'refill-failures'],
        [fmtMs(p.rttMs), 'n', 'rtt'], [typeof p.cwnd === 'number' ? String(p.cwnd) : '–', 'n', 'cwnd'],
        [p.turbo, 'muted', 'turbo'],
      ] };
    }), 'no peers: every route goes direct', ['data-peer']);

    fillTable('routes', v.routes.map(function (r) {
      return { key: r.cidr, cells: [[r.cidr, 'mono', 'cidr'], [r.via, '', 'via']] };
    }), 'no routes: every target goes direct', ['data-route']);
    $('listeners').textContent = v.listeners.length ? v.listeners.join('   ') : 'none';

    fillTable('workers', v.workers.map(function (w) {
      return { key: String(w.index), cells: [
        [String(w.index), 'n', 'index'], [String(w.threadId), 'n muted', 'thread'],
        [w.alive ? 'alive' : 'replacing', w.alive ? '' : 'bad', 'alive'],
        [fmtCount(w.open), 'n', 'open'], [fmtCount(w.accepted), 'n', 'accepted'],
        [fmtMs(w.loopLagMs), w.loopLagMs >= 50 ? 'n warn' : 'n', 'loop-lag'],
      ] };
    }), 'no workers', ['data-worker']);

    var conns = v.connections.slice().sort(function (a, b) { return b.ageMs - a.ageMs; });
    $('conn-note').textContent = v.open > conns.length ? v.open + ' open, the ' + conns.length + ' longest-lived shown' : '';
    fillTable('connections', conns.map(function (c) {
      return { key: String(c.id), cells: [
        [c.client, 'mono', 'client'], [c.target, 'mono', 'target'], [c.via, '', 'via'],
        [c.kind, 'muted', 'kind'], [String(c.worker), 'n muted', 'worker'],
        [fmtAge(c.ageMs), 'n', 'age'], [fmtBytes(c.up), 'n', 'up'], [fmtBytes(c.down), 'n', 'down'],
      ] };
    }), 'no open connections', ['data-connection']);

    var errors = v.recentErrors.slice().sort(function (a, b) { return b.at - a.at; });
    fillTable('errors', errors.map(function (e) {
      return { key: e.code, cells: [
        [fmtClock(e.at), 'muted', 'at'], [e.code, 'code', 'code'], [e.message, 'msg', 'message'], [String(e.worker), 'n muted', 'worker'],
      ] };
    }), 'no errors since start', ['data-code']);
    showState();
  }

  function record(v) {
    var last = samples[samples.length - 1];
    // A restarted relay (or a worker lost with its open connections) moves the totals back: start over.
    if (last && (v.startedAt !== last.startedAt || v.bytes.up < last.up || v.bytes.down < last.down)) samples = [];
    last = samples[samples.length - 1];
    if (last && v.at <= last.at) return;
    samples.push({ at: v.at, startedAt: v.startedAt, up: v.bytes.up, down: v.bytes.down });
    while (samples.length > 2 && samples[0].at < v.at - HISTORY_MS - 5000) samples.shift();
  }

  // bytes/s between successive views; a gap longer than STALE_MS (a reconnect) is left blank.
  function rates() {
    var out = [];
    for (var i = 1; i < samples.length; i++) {
      var a = samples[i - 1], b = samples[i], dt = (b.at - a.at) / 1000;
      out.push({ at: b.at, gap: b.at - a.at > STALE_MS, up: (b.up - a.up) / dt, down: (b.down - a.down) / dt });
    }
    return out;
  }
  function currentRate() {
    var r = rates();
    var last = r[r.length - 1];
    return last && !last.gap ? last : null;
  }

  function niceCeil(x) {
    if (!(x > 0)) return 1000;
    var p = Math.pow(10, Math.floor(Math.log10(x)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= x) return steps[i] * p;
    return 10 * p;
  }

  function drawChart() {
    var svg = $('chart');
    // Drawn at the size it is shown, so the labels are not stretched.
    var W = Math.round(svg.getBoundingClientRect().width) || 600, H = 130, left = 70, right = 6, top = 8, bottom = 16;
    svg.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    var r = rates();
    var now = samples.length ? samples[samples.length - 1].at : 0;
    var from = now - HISTORY_MS;
    var shown = r.filter(function (p) { return p.at >= from; });
    var max = niceCeil(shown.reduce(function (m, p) { return Math.max(m, p.gap ? 0 : Math.max(p.up, p.down)); }, 0));
    function x(at) { return left + (at - from) / HISTORY_MS * (W - left - right); }
    function y(v) { return top + (1 - v / max) * (H - top - bottom); }
    var nodes = [];
    [0, 0.5, 1].forEach(function (f) {
      var line = document.createElementNS(SVG, 'line');
      line.setAttribute('class', 'grid-line');
      line.setAttribute('x1', left); line.setAttribute('x2', W - right);
      line.setAttribute('y1', y(max * f)); line.setAttribute('y2', y(max * f));
      var label = document.createElementNS(SVG, 'text');
      label.setAttribute('x', left - 6); label.setAttribute('y', y(max * f) + 3);
      label.setAttribute('text-anchor', 'end');
      label.textContent = fmtRate(max * f);
      nodes.push(line, label);
    });
    [['−2 min', from, 'start'], ['−1 min', from + HISTORY_MS / 2, 'middle'], ['now', now, 'end']].forEach(function (t) {
      var label = document.createElementNS(SVG, 'text');
      label.setAttribute('x', x(t[1])); label.setAttribute('y', H - 3);
      label.setAttribute('text-anchor', t[2]);
      label.textContent = t[0];
      nodes.push(label);
    });
    ['up', 'down'].forEach(function (dir) {
      var d = '';
      var pen = 'M';
      shown.forEach(function (p) {
        if (p.gap) { pen = 'M'; return; }
        d += pen + x(p.at).toFixed(1) + ',' + y(p[dir]).toFixed(1) + ' ';
        pen = 'L';
      });
      var path = document.createElementNS(SVG, 'path');
      path.setAttribute('class', dir);
      path.setAttribute('d', d.trim());
      path.setAttribute('data-points', String(shown.filter(function (p) { return !p.gap; }).length));
      nodes.push(path);
    });
    svg.replaceChildren.apply(svg, nodes);
  }

  function showState() {
    var state = $('state');
    var stamp = lastViewAt ? 'last update ' + fmtClock(lastViewAt) : 'no data yet';
    if (!connected) {
      state.className = 'down';
      state.textContent = 'disconnected, retrying… (' + stamp + ')';
    } else if (lastViewAt && Date.now() - lastViewAt > STALE_MS) {
      state.className = 'stale';
      state.textContent = 'live, but no update for ' + fmtAge(Date.now() - lastViewAt) + ' (' + stamp + ')';
    } else {
      state.className = 'live';
      state.textContent = 'live · ' + stamp;
    }
    document.body.classList.toggle('disconnected', !connected);
  }

  function connect() {
    retryTimer = null;
    source = new EventSource('events');
    source.addEventListener('open', function () { connected = true; showState(); });
    source.addEventListener('view', function (e) {
      connected = true;
      try { render(JSON.parse(e.data)); } catch (err) { $('problem').textContent = 'could not show a view: ' + err; }
    });
    source.addEventListener('unavailable', function (e) {
      var message = 'unknown';
      try { message = JSON.parse(e.data).message; } catch (err) { /* keep 'unknown' */ }
      $('problem').textContent = 'the relay could not give a view: ' + message;
    });
    source.addEventListener('error', function () {
      connected = false;
      showState();
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (a 503 at the
      // client limit, or a relay that answered with something else); retry here, and
      // meanwhile show the numbers once from /status.json.
      if (source.readyState === EventSource.CLOSED && retryTimer === null) {
        source.close();
        retryTimer = setTimeout(function () { poll(); connect(); }, RETRY_MS);
      }
    });
  }

  function poll() {
    fetch('status.json', { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(render)
      .catch(function () { /* the stream's state already says disconnected */ });
  }

  window.addEventListener('resize', drawChart);
  poll();
  connect();
  setInterval(function () {
    showState();
    if (lastView) $('uptime').textContent = 'up ' + fmtAge(lastView.at - lastView.startedAt);
  }, 1000);
})();
`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
}

/** Only this document's two inline blocks run; only this origin is fetched. */
export const STATUS_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tcpsplit status</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body class="disconnected">
<header>
  <h1>tcpsplit</h1>
  <span id="uptime" class="muted"></span>
  <span id="features"></span>
  <span id="state" class="down">connecting…</span>
</header>
<noscript><p>This page needs JavaScript; <a href="status.json">/status.json</a> has the same numbers.</p></noscript>
<p id="problem"></p>
<main>
  <div class="totals">
    <div><b id="t-open">–</b><span>open</span></div>
    <div><b id="t-closed">–</b><span>closed</span></div>
    <div><b id="t-failed">–</b><span>failed</span></div>
    <div><b id="t-bytes-up">–</b><span>bytes up</span></div>
    <div><b id="t-bytes-down">–</b><span>bytes down</span></div>
    <div><b id="t-rate-up">–</b><span>up now</span></div>
    <div><b id="t-rate-down">–</b><span>down now</span></div>
  </div>
  <h2>Throughput <span class="note">last 2 minutes</span></h2>
  <div class="legend"><span id="k-up" class="key up"></span><span id="k-down" class="key down"></span></div>
  <svg id="chart" viewBox="0 0 600 130" role="img" aria-label="throughput, last 2 minutes"></svg>

  <h2>Peers</h2>
  <table><thead><tr>
    <th>peer</th><th>endpoint</th><th class="n">pool</th><th class="n">low / high</th><th class="n">takes</th>
    <th class="n">misses</th><th class="n">stale</th><th class="n">refill fail</th><th class="n">RTT</th>
    <th class="n">cwnd</th><th>Turbo-Start</th>
  </tr></thead><tbody id="peers"></tbody></table>

  <div class="grid">
    <section>
      <h2>Routes</h2>
      <table><thead><tr><th>destination</th><th>via</th></tr></thead><tbody id="routes"></tbody></table>
      <p class="note">listeners: <span id="listeners" class="mono"></span></p>
    </section>
    <section>
      <h2>Workers</h2>
      <table><thead><tr>
        <th class="n">#</th><th class="n">thread</th><th>state</th><th class="n">open</th><th class="n">accepted</th><th class="n">loop lag</th>
      </tr></thead><tbody id="workers"></tbody></table>
    </section>
  </div>

  <h2>Active connections <span id="conn-note" class="note"></span></h2>
  <table><thead><tr>
    <th>client</th><th>target</th><th>via</th><th>kind</th><th class="n">worker</th><th class="n">age</th><th class="n">up</th><th class="n">down</th>
  </tr></thead><tbody id="connections"></tbody></table>

  <h2>Recent errors <span class="note">newest first</span></h2>
  <table><thead><tr><th>time</th><th>code</th><th>message</th><th class="n">worker</th></tr></thead><tbody id="errors"></tbody></table>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
