// #/ Overview: jobs per status, queue depth, the last hour's throughput, the oldest wait,
// workers online. Live: any job event triggers a refresh (at most one a second), and a
// 10 s timer refreshes anyway in case the event stream is down.

import { request } from '../api.js';
import { duration, h, plural, replace } from '../dom.js';
import { createChart, drawChart } from '../chart.js';
import { follow, throttle } from '../live.js';
import { emptyState, headRow, heading, redraw, scrollTable } from '../ui.js';

export const STATUSES = ['scheduled', 'queued', 'processing', 'retrying', 'completed', 'partial', 'failed', 'cancelled'];
const PRIORITIES = ['high', 'normal', 'low'];
const FALLBACK_MS = 10_000;
const EVENT_GAP_MS = 1_000;

export function render(ctx) {
  ctx.setTitle('Overview');
  const tiles = h('div', { class: 'tiles', id: 'status-counts' },
    STATUSES.map((status) => h('a', {
      class: `tile status-${status}`,
      href: `#/jobs?status=${status}`,
      'data-testid': `count-${status}`,
    }, h('span', { class: 'count' }, '–'), h('span', { class: 'label' }, status))));
  const workersTile = h('a', { class: 'tile', href: '#/workers', 'data-testid': 'workers-online' },
    h('span', { class: 'count' }, '–'), h('span', { class: 'label' }, 'workers online'));
  const oldestTile = h('div', { class: 'tile', 'data-testid': 'oldest-waiting' },
    h('span', { class: 'count' }, '–'), h('span', { class: 'label' }, 'oldest waiting job'));
  const deadTile = h('a', { class: 'tile', href: '#/dead-letters', 'data-testid': 'dead-letters' },
    h('span', { class: 'count' }, '–'), h('span', { class: 'label' }, 'dead letters'));
  const chart = createChart();
  const chartBox = h('div', { class: 'chart-box' }, chart);
  const depth = h('div', { id: 'queue-depth' });
  const recent = h('div', { id: 'recent-throughput' });
  const stalled = h('p', { class: 'warning', hidden: true, 'data-testid': 'stalled-workers' });

  replace(ctx.root,
    heading('Overview'),
    h('section', { 'aria-labelledby': 'h-statuses' },
      h('h2', { id: 'h-statuses' }, 'Jobs by status'), tiles),
    h('section', { 'aria-labelledby': 'h-health' },
      h('h2', { id: 'h-health' }, 'Workers and waiting'),
      h('div', { class: 'tiles' }, workersTile, oldestTile, deadTile), stalled),
    h('section', { 'aria-labelledby': 'h-chart' },
      h('h2', { id: 'h-chart' }, 'Completed and failed per minute, last hour'), chartBox, recent),
    h('section', { 'aria-labelledby': 'h-depth' },
      h('h2', { id: 'h-depth' }, 'Queue depth'), depth));

  let history = [];
  let drawnWidth = 0;
  const redraw = () => {
    drawnWidth = chartBox.clientWidth;
    drawChart(chart, history, drawnWidth);
  };
  redraw();
  // Redraw at the new width when the window (or phone) turns or resizes. The box's width
  // does not depend on the chart's (CSS), so drawing cannot trigger another resize.
  const resize = new ResizeObserver(() => {
    if (chartBox.clientWidth !== drawnWidth) redraw();
  });
  resize.observe(chartBox);
  ctx.onCleanup(() => resize.disconnect());

  const refresh = async () => {
    const [stats, workers] = await Promise.all([
      request('/stats', { query: { history_minutes: 60 }, signal: ctx.signal }),
      request('/workers', { signal: ctx.signal }),
    ]);
    fillCounts(tiles, stats.statuses || {});
    setCount(deadTile, stats.dead_letters ?? 0);
    fillOldest(oldestTile, stats.queues || []);
    fillWorkers(workersTile, stalled, workers.workers || []);
    redraw(depth, () => replace(depth, depthTable(stats.queues || [])));
    replace(recent, recentThroughput(stats.throughput || []));
    history = stats.history || [];
    redraw();
  };

  const refresher = throttle(refresh, EVENT_GAP_MS);
  ctx.onCleanup(refresher.cancel);
  refresher.run();
  const timer = setInterval(refresher.run, FALLBACK_MS);
  ctx.onCleanup(() => clearInterval(timer));
  const stream = follow('/events', { onEvent: () => refresher.run() });
  ctx.onCleanup(stream.close);
}

function setCount(tile, value) {
  tile.querySelector('.count').textContent = String(value);
}

function fillCounts(tiles, statuses) {
  for (const status of STATUSES) {
    setCount(tiles.querySelector(`[data-testid="count-${status}"]`), statuses[status] ?? 0);
  }
}

function fillOldest(tile, queues) {
  const waits = queues.map((q) => q.oldest_waiting_seconds).filter((s) => s !== null && s !== undefined);
  const oldest = waits.length ? Math.max(...waits) : null;
  setCount(tile, oldest === null ? 'none' : duration(oldest));
  tile.querySelector('.label').textContent = oldest === null ? 'no job is waiting' : 'oldest waiting job';
}

function fillWorkers(tile, stalledNote, workers) {
  setCount(tile, workers.length);
  tile.querySelector('.label').textContent = workers.length === 1 ? 'worker online' : 'workers online';
  const stalled = workers.filter((w) => w.stalled);
  stalledNote.hidden = stalled.length === 0;
  stalledNote.textContent = stalled.length
    ? `Warning: ${plural(stalled.length, 'worker')} stalled (${stalled.map((w) => w.name).join(', ')}). See Workers.`
    : '';
  if (!workers.length) {
    stalledNote.hidden = false;
    stalledNote.textContent = 'No worker is running: start one with python -m pocketqueue worker';
  }
}

function depthTable(queues) {
  if (!queues.length) return emptyState(h('p', {}, 'No queue has had a job yet.'));
  const table = h('table', { id: 'depth-table' },
    h('caption', {}, 'Queued jobs per queue and priority'),
    headRow('Queue', ...PRIORITIES.map((p) => [`${p[0].toUpperCase()}${p.slice(1)}`, 'num']), ['Waiting', 'num'], 'Oldest wait'),
    h('tbody', {}, queues.map((q) => h('tr', { dataset: { queue: q.name } },
      h('th', { scope: 'row' }, q.name),
      PRIORITIES.map((p) => h('td', { class: 'num', dataset: { priority: p } }, String(q.depth?.[p] ?? 0))),
      h('td', { class: 'num' }, String(q.waiting ?? 0)),
      h('td', {}, q.oldest_waiting_seconds == null ? '—' : duration(q.oldest_waiting_seconds))))));
  const first = queues[0];
  const delayed = h('p', { class: 'muted' },
    `Across all queues: ${first.scheduled ?? 0} scheduled (delayed) and ${first.retrying ?? 0} waiting to retry.`);
  return [scrollTable(table, 'Queue depth'), delayed];
}

function recentThroughput(windows) {
  if (!windows.length) return null;
  return h('ul', { class: 'inline-list' }, windows.map((w) => h('li', {},
    `Last ${w.minutes} min: ${w.finished?.completed ?? 0} completed, ${w.finished?.failed ?? 0} failed`
    + ` (${(w.per_minute?.completed ?? 0).toFixed(1)}/min completed)`)));
}
