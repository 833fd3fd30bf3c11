// The logagg dashboard. Reads the API of the server that served it, and
// nothing else (its Content-Security-Policy allows connections to this
// origin only).
//
// Costs are bounded: the chart keeps WINDOW_MS of samples, the tail its
// newest TAIL_MAX events, the topic table shows TOPIC_ROWS_MAX rows, and a
// partial SSE message may not grow past SSE_BUFFER_MAX. While nothing
// happens it asks the server for /stats and /health once per POLL_MS (every
// HIDDEN_POLL_MS while the tab is hidden); /topics and /metrics only after
// the counters moved.
'use strict';

const POLL_MS = 2000;
const HIDDEN_POLL_MS = 30000;
const WINDOW_MS = 5 * 60 * 1000;
const TAIL_MAX = 200;
const TOPIC_ROWS_MAX = 500;
const SSE_BUFFER_MAX = 1 << 20;
const TAIL_FLUSH_MS = 250;
const TOKEN_KEY = 'logagg.token';

const $ = (id) => document.getElementById(id);
const numberFormat = new Intl.NumberFormat();
const fmt = (n) => numberFormat.format(n);

// ---- Requests and the bearer token ----------------------------------------

/** Thrown when the server wants a (different) token; the dialog is open. */
class NeedToken extends Error {}

let token = sessionStorage.getItem(TOKEN_KEY);
const tokenWaiters = [];

/**
 * fetch() on this origin with the token, if any. A 401 (no token, or one the
 * server does not know) or 403 (a token without the read scope: every
 * request of the page needs it) opens the dialog.
 */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  const sent = token;
  if (sent) headers.set('Authorization', 'Bearer ' + sent);
  const response = await fetch(path, { ...init, headers, cache: 'no-store' });
  if (response.status === 401 || response.status === 403) {
    askForToken(!sent ? 'Enter a bearer token with the read scope.'
                : response.status === 403 ? 'That token cannot read: ' + (await problem(response))
                : 'The server refused that token: ' + (await problem(response)));
    throw new NeedToken('the server needs a token');
  }
  return response;
}

/** The one-line reason of an error answer (problem+json or not). */
async function problem(response) {
  const text = await response.text().catch(() => '');
  try {
    const doc = JSON.parse(text);
    return doc.detail || doc.title || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`.trim();
  }
}

async function getJson(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(`${path}: ${await problem(response)}`);
  return response.json();
}

function askForToken(reason) {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  setStatus('token', 'needs a token');
  $('token-reason').textContent = reason;
  const dialog = $('token-dialog');
  if (!dialog.open) dialog.showModal();
  $('token-input').focus();
}

/** Resolves once a token has been entered. */
const tokenEntered = () => new Promise((resolve) => tokenWaiters.push(resolve));

$('token-form').addEventListener('submit', () => {
  token = $('token-input').value.trim();
  $('token-input').value = '';
  sessionStorage.setItem(TOKEN_KEY, token);
  for (const resolve of tokenWaiters.splice(0)) resolve();
});

// The header button forgets the token in use, or reopens the dialog when it
// was dismissed (Escape) without one.
function updateTokenButton() {
  const button = $('token-button');
  button.hidden = !token && !tokenWaiters.length;
  button.textContent = token ? 'Forget token' : 'Enter token';
}
$('token-dialog').addEventListener('close', updateTokenButton);
$('token-button').addEventListener('click', () => {
  askForToken(token ? 'Token forgotten. Enter a bearer token with the read scope.'
                    : 'Enter a bearer token with the read scope.');
});
updateTokenButton();

// ---- Status line -------------------------------------------------------------

function setStatus(state, text) {
  const status = $('status');
  status.dataset.state = state;
  status.textContent = text;
}

// ---- Polling: totals, rates, topics, latency ------------------------------------

/** Counter samples, oldest first, at most WINDOW_MS old. */
const samples = [];
let lastStats = null;
let lastTopicsSeq = -1;
let lastMetricsReceived = -1;
let previousHistogram = null;
let pollTimer = 0;
let polling = false;

async function poll() {
  clearTimeout(pollTimer);
  if (polling) return;
  polling = true;
  try {
    const stats = await getJson('/stats');
    record(stats);
    renderTotals(stats);
    await Promise.all([
      renderHealth(),
      stats.last_seq !== lastTopicsSeq ? refreshTopics(stats.last_seq) : null,
      stats.received !== lastMetricsReceived ? refreshMetrics(stats.received) : null,
    ]);
    setStatus('live', 'live');
    $('updated').textContent = new Date().toLocaleTimeString();
  } catch (error) {
    if (error instanceof NeedToken) {
      polling = false;
      await tokenEntered();
      return poll();
    }
    setStatus('error', 'server unreachable, retrying: ' + error.message);
  }
  polling = false;
  const hidden = document.visibilityState === 'hidden';
  pollTimer = setTimeout(poll, hidden ? HIDDEN_POLL_MS : POLL_MS);
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') poll();
});

function record(stats) {
  const now = Date.now();
  samples.push({ t: now, received: stats.received, duplicates: stats.duplicate_dropped });
  while (samples.length > 2 && samples[0].t < now - WINDOW_MS) samples.shift();
  lastStats = stats;
  drawChart(now);
}

/** Events per second between successive samples; none across a counter reset. */
function rates() {
  const points = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const seconds = (b.t - a.t) / 1000;
    if (seconds <= 0 || b.received < a.received || b.duplicates < a.duplicates) continue;
    points.push({
      t: b.t,
      ingest: (b.received - a.received) / seconds,
      duplicate: (b.duplicates - a.duplicates) / seconds,
    });
  }
  return points;
}

function drawChart(now) {
  const points = rates();
  const peak = Math.max(1, ...points.map((p) => p.ingest));
  const x = (t) => (600 * (t - (now - WINDOW_MS)) / WINDOW_MS).toFixed(1);
  const y = (v) => (159 - 158 * v / peak).toFixed(1);
  const line = (key) => points.map((p) => `${x(p.t)},${y(p[key])}`).join(' ');
  $('ingest-line').setAttribute('points', line('ingest'));
  $('duplicate-line').setAttribute('points', line('duplicate'));
  $('chart').dataset.points = points.length;
  $('chart-max').textContent = `${fmt(Math.round(peak))}/s`;
  const latest = points[points.length - 1];
  if (latest) {
    $('ingest-rate').textContent = fmt(Math.round(latest.ingest));
    $('duplicate-rate').textContent = fmt(Math.round(latest.duplicate));
    $('chart-summary').textContent =
      `Now ${fmt(Math.round(latest.ingest))} events/s received, ` +
      `${fmt(Math.round(latest.duplicate))}/s duplicates; peak ${fmt(Math.round(peak))}/s ` +
      `over the last ${Math.round((now - points[0].t) / 60000) || '<1'} min.`;
  }
}

function setNumber(id, value) {
  const element = $(id);
  element.dataset.value = value;
  element.textContent = fmt(value);
}

function renderTotals(stats) {
  setNumber('received', stats.received);
  setNumber('unique', stats.unique_processed);
  setNumber('duplicates', stats.duplicate_dropped);
  setNumber('conflicts', stats.conflicts);
  setNumber('queue', stats.queue_depth_events);
  setNumber('topic-count', stats.topics.length);
  setNumber('subscribers', stats.subscribers);
  const share = stats.received ? (100 * stats.duplicate_dropped / stats.received).toFixed(1) : '0.0';
  $('duplicate-share').textContent = `${share}% of received`;
  $('queue-capacity').textContent = `of ${fmt(stats.queue_capacity_events)} events`;
  $('last-seq').textContent = `newest seq ${fmt(stats.last_seq)}`;
  $('delivered').textContent = `${fmt(stats.events_delivered)} delivered`;
  $('uptime').textContent = 'up ' + duration(stats.uptime_seconds);
}

async function renderHealth() {
  const health = $('health');
  const response = await api('/health');
  health.dataset.ok = response.ok;
  health.textContent = response.ok ? 'ok' : await problem(response);
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400);
  const h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60);
  const s = seconds % 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m) return `${m}m ${String(s).padStart(2, '0')}s`;
  return `${s}s`;
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function seconds(s) {
  const ms = s * 1000;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 100 ? 1 : 0)} ms`;
  return `${s.toFixed(2)} s`;
}

// /metrics is Prometheus text: the commit histogram's cumulative buckets, its
// sum and count, and the store size. Latency is shown for the commits since
// the previous read (since the start for the first), so it is recent.
async function refreshMetrics(received) {
  const response = await api('/metrics');
  if (!response.ok) {
    $('commit-latency-note').textContent = $('store-size').textContent = await problem(response);
    return;
  }
  const histogram = { buckets: [], sum: 0, count: 0 };
  for (const line of (await response.text()).split('\n')) {
    let match;
    if ((match = /^logagg_commit_duration_seconds_bucket\{le="([^"]+)"\} (\S+)/.exec(line))) {
      histogram.buckets.push({ le: Number(match[1]), count: Number(match[2]) });
    } else if ((match = /^logagg_commit_duration_seconds_(sum|count) (\S+)/.exec(line))) {
      histogram[match[1]] = Number(match[2]);
    } else if ((match = /^logagg_store_size_bytes (\S+)/.exec(line))) {
      $('store-size').textContent = bytes(Number(match[1]));
    }
  }
  const base = previousHistogram && previousHistogram.count <= histogram.count ? previousHistogram : null;
  const commits = histogram.count - (base ? base.count : 0);
  if (commits > 0) {
    const mean = (histogram.sum - (base ? base.sum : 0)) / commits;
    // The smallest bucket bound holding 99% of the new commits.
    const rank = Math.ceil(0.99 * commits);
    const p99 = histogram.buckets.find((b, i) => b.count - (base ? base.buckets[i].count : 0) >= rank);
    $('commit-latency').textContent = seconds(mean);
    $('commit-latency-note').textContent =
      `mean; p99 ≤ ${p99 && isFinite(p99.le) ? seconds(p99.le) : '∞'}, ` +
      `${fmt(commits)} commit${commits === 1 ? '' : 's'} ${base ? 'just now' : 'since start'}`;
  }
  previousHistogram = histogram;
  lastMetricsReceived = received;
}

// ---- Topics table --------------------------------------------------------------

let topics = [];
const sort = { key: 'topic', descending: false };

async function refreshTopics(lastSeq) {
  topics = (await getJson('/topics')).topics;
  lastTopicsSeq = lastSeq;
  renderTopics();
}

function renderTopics() {
  const filter = $('topic-filter').value.trim().toLowerCase();
  const shown = topics.filter((t) => t.topic.toLowerCase().includes(filter));
  const { key, descending } = sort;
  shown.sort((a, b) => {
    const order = key === 'topic' ? a.topic.localeCompare(b.topic) : a[key] - b[key];
    return descending ? -order : order;
  });
  const rows = shown.slice(0, TOPIC_ROWS_MAX).map((t) => {
    const row = document.createElement('tr');
    for (const [value, numeric] of [[t.topic, false], [fmt(t.events), true], [fmt(t.last_seq), true]]) {
      const cell = document.createElement('td');
      cell.textContent = value;
      if (numeric) cell.className = 'num';
      row.append(cell);
    }
    return row;
  });
  $('topic-table').tBodies[0].replaceChildren(...rows);
  $('topic-note').textContent =
    !topics.length ? 'No topics yet: publish an event.'
    : shown.length > TOPIC_ROWS_MAX ? `Showing ${fmt(TOPIC_ROWS_MAX)} of ${fmt(shown.length)} matching topics; filter to narrow.`
    : `${fmt(shown.length)} of ${fmt(topics.length)} topics.`;
}

$('topic-filter').addEventListener('input', renderTopics);
for (const button of document.querySelectorAll('#topic-table th button')) {
  button.addEventListener('click', () => {
    const key = button.dataset.key;
    sort.descending = sort.key === key ? !sort.descending : key !== 'topic';
    sort.key = key;
    for (const th of document.querySelectorAll('#topic-table th')) {
      const sorted = th.querySelector('button').dataset.key === key;
      th.setAttribute('aria-sort', sorted ? (sort.descending ? 'descending' : 'ascending') : 'none');
    }
    renderTopics();
  });
}

// ---- Lookup ---------------------------------------------------------------------

$('lookup-form').addEventListener('submit', async (submit) => {
  submit.preventDefault();
  const topic = $('lookup-topic').value.trim();
  const id = $('lookup-id').value;
  const result = $('lookup-result');
  const show = (outcome, headline, json) => {
    result.dataset.outcome = outcome;
    const line = document.createElement('p');
    line.textContent = headline;
    const parts = [line];
    if (json !== undefined) {
      const pre = document.createElement('pre');
      pre.textContent = JSON.stringify(json, null, 2);
      parts.push(pre);
    }
    result.replaceChildren(...parts);
  };
  result.dataset.outcome = 'pending';
  result.textContent = 'Looking up…';
  try {
    const response = await api(`/events/${encodeURIComponent(topic)}/${encodeURIComponent(id)}`);
    if (response.ok) {
      const event = await response.json();
      show('found', `Processed: stored as seq ${fmt(event.seq)}, received ${event.received_at}.`, event);
    } else if (response.status === 404) {
      show('missing', `Not found: no event "${id}" in topic "${topic}" has been stored. ` +
        'If its publisher never got a 200, it should publish it again (a duplicate is dropped safely).');
    } else {
      show('error', `The lookup failed: ${await problem(response)}`);
    }
  } catch (error) {
    show('error', error instanceof NeedToken ? 'The server needs a token; enter it and look up again.'
                                            : `The lookup failed: ${error.message}`);
  }
});

// ---- Live tail ----------------------------------------------------------------------

// /subscribe is read with fetch() rather than EventSource, which cannot send
// an Authorization header. Messages are parsed here (the server ends lines
// with \n) and kept as raw text: only the rows drawn are parsed.

const tail = {
  controller: null,
  pending: [],     // [{id, data}] not yet drawn, newest last, at most TAIL_MAX
  paused: false,
  missed: 0,       // arrived while paused
  received: 0,     // since Follow
  flushTimer: 0,
};

function followTail() {
  if (tail.controller) tail.controller.abort();
  const controller = new AbortController();
  tail.controller = controller;
  tail.received = 0;
  runTail($('tail-pattern').value.trim(), controller.signal);
}

async function runTail(pattern, signal) {
  let from = 'now';
  let backoff = 1000;
  const status = (text) => { if (!signal.aborted) $('tail-status').textContent = text; };
  while (!signal.aborted) {
    try {
      const query = `topic=${encodeURIComponent(pattern)}&from=${from}`;
      const response = await api(`/subscribe?${query}`, { signal, headers: { Accept: 'text/event-stream' } });
      if (!response.ok) {
        const reason = await problem(response);
        // A bad pattern stays bad; overload and shutdown pass.
        if (response.status < 500 && response.status !== 429) return status(`Cannot follow: ${reason}`);
        throw new Error(reason);
      }
      status(`Following ${pattern}`);
      backoff = 1000;
      await readEvents(response.body, (id, data) => {
        from = id;
        receive(id, data);
      });
      status('The stream ended; reconnecting…');
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof NeedToken) {
        status('Waiting for a token…');
        await tokenEntered();
        continue;
      }
      status(`Disconnected (${error.message}); retrying in ${backoff / 1000} s…`);
    }
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 30000);
  }
}

/** Calls onMessage(id, data) for each SSE message of a response body. */
async function readEvents(body, onMessage) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let start = 0;
    let end;
    while ((end = buffer.indexOf('\n\n', start)) >= 0) {
      let id = '';
      const data = [];
      for (const line of buffer.slice(start, end).split('\n')) {
        if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
        else if (line.startsWith('id:')) id = line.slice(line[3] === ' ' ? 4 : 3);
      }
      if (data.length) onMessage(id, data.join('\n'));
      start = end + 2;
    }
    buffer = buffer.slice(start);
    if (buffer.length > SSE_BUFFER_MAX) throw new Error('an event over 1 MiB');
  }
}

function receive(id, data) {
  tail.received++;
  tail.pending.push({ id, data });
  // Trim in bulk, so a fast stream costs O(1) per event.
  if (tail.pending.length > 2 * TAIL_MAX) tail.pending.splice(0, tail.pending.length - TAIL_MAX);
  if (tail.paused) {
    tail.missed++;
    updatePauseLabel();
  } else if (!tail.flushTimer) {
    tail.flushTimer = setTimeout(flushTail, TAIL_FLUSH_MS);
  }
}

/** Draws the pending events on top of the list, keeping TAIL_MAX rows. */
function flushTail() {
  tail.flushTimer = 0;
  const fresh = tail.pending.splice(0).slice(-TAIL_MAX);
  const rows = document.createDocumentFragment();
  for (let i = fresh.length - 1; i >= 0; i--) rows.append(tailRow(fresh[i]));
  const list = $('tail-list');
  list.prepend(rows);
  while (list.children.length > TAIL_MAX) list.lastElementChild.remove();
  list.dataset.count = tail.received;
}

function tailRow({ id, data }) {
  const item = document.createElement('li');
  const details = document.createElement('details');
  const summary = document.createElement('summary');
  let event;
  try { event = JSON.parse(data); } catch { event = null; }
  const parts = event
    ? [['seq', `#${id}`], ['topic', event.topic], ['id', event.event_id], ['source', event.source], ['time', event.timestamp]]
    : [['seq', `#${id}`], ['id', data.slice(0, 80)]];
  for (const [kind, text] of parts) {
    const span = document.createElement('span');
    span.className = kind;
    span.textContent = text;
    summary.append(span, ' ');
  }
  details.append(summary);
  // The full JSON is rendered when first opened.
  details.addEventListener('toggle', () => {
    if (!details.open || details.querySelector('pre')) return;
    const pre = document.createElement('pre');
    pre.textContent = event ? JSON.stringify(event, null, 2) : data;
    details.append(pre);
  }, { once: false });
  item.append(details);
  return item;
}

function updatePauseLabel() {
  $('tail-pause').textContent = tail.paused ? `Resume${tail.missed ? ` (${fmt(tail.missed)} new)` : ''}` : 'Pause';
}

$('tail-form').addEventListener('submit', (submit) => {
  submit.preventDefault();
  clearTail();
  followTail();
});

$('tail-pause').addEventListener('click', () => {
  tail.paused = !tail.paused;
  tail.missed = 0;
  $('tail-pause').setAttribute('aria-pressed', tail.paused);
  updatePauseLabel();
  if (!tail.paused) flushTail();
});

function clearTail() {
  tail.pending.length = 0;
  $('tail-list').replaceChildren();
}
$('tail-clear').addEventListener('click', clearTail);

// ---- Start ------------------------------------------------------------------------------

renderTopics();
poll();
followTail();
