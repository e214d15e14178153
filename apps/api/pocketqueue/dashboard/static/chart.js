// The overview's chart: completed and failed jobs per minute over the last hour, drawn as
// inline SVG sized to its container (so its text stays readable on a phone). Colour is
// never the only cue: the failed line is dashed, and the legend names both lines.

import { svg, replace } from './dom.js';

const HEIGHT = 240;
const MARGIN = { top: 36, right: 16, bottom: 44, left: 52 };
const SERIES = [
  { key: 'completed', label: 'Completed', class: 'series-completed' },
  { key: 'failed', label: 'Failed', class: 'series-failed' },
];

/** An empty <svg id="throughput-chart">; call drawChart(el, history) to fill it. */
export function createChart() {
  return svg('svg', {
    id: 'throughput-chart',
    class: 'chart',
    role: 'img',
    'aria-labelledby': 'throughput-chart-title throughput-chart-desc',
    height: HEIGHT,
  });
}

/** Draw `history` ([{minute, counts}], oldest first) into the chart, at `width` px. */
export function drawChart(el, history, width) {
  const points = (history || []).map((entry) => ({
    minute: new Date(entry.minute),
    completed: Number(entry.counts?.completed) || 0,
    failed: Number(entry.counts?.failed) || 0,
  }));
  const w = Math.max(300, Math.round(width || 640));
  el.setAttribute('width', w);
  el.setAttribute('viewBox', `0 0 ${w} ${HEIGHT}`);
  const plot = { x: MARGIN.left, y: MARGIN.top, w: w - MARGIN.left - MARGIN.right, h: HEIGHT - MARGIN.top - MARGIN.bottom };
  const top = niceMax(Math.max(1, ...points.flatMap((p) => [p.completed, p.failed])));
  const xAt = (i) => plot.x + (points.length > 1 ? (i / (points.length - 1)) * plot.w : plot.w / 2);
  const yAt = (v) => plot.y + plot.h - (v / top) * plot.h;

  replace(el,
    svg('title', { id: 'throughput-chart-title' }, 'Completed and failed jobs per minute, last hour'),
    svg('desc', { id: 'throughput-chart-desc' }, describe(points)),
    yAxis(plot, top, yAt),
    xAxis(plot, points, xAt),
    points.length ? SERIES.map((s) => line(points, s, xAt, yAt)) : noData(plot),
    hoverColumns(points, plot, xAt),
    legend(plot));
}

// The text alternative: totals and the busiest minute, in words.
function describe(points) {
  if (!points.length) return 'No per-minute history is available yet.';
  const total = (key) => points.reduce((sum, p) => sum + p[key], 0);
  const busiest = points.reduce((best, p) => (p.completed + p.failed > best.completed + best.failed ? p : best));
  const peak = busiest.completed + busiest.failed;
  const span = `${points.length} minutes up to ${points.at(-1).minute.toLocaleTimeString()}`;
  const peakText = peak ? ` The busiest minute was ${busiest.minute.toLocaleTimeString()} with ${busiest.completed} completed and ${busiest.failed} failed.` : '';
  return `Over the last ${span}: ${total('completed')} jobs completed and ${total('failed')} failed.${peakText}`;
}

// A round upper bound (1, 2, 5 x 10^n) so the ticks are easy numbers.
function niceMax(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 5, 10].find((m) => m * power >= value);
  return step * power;
}

function yAxis(plot, top, yAt) {
  const ticks = [0, top / 2, top].filter((v, i, all) => all.indexOf(v) === i);
  return svg('g', { class: 'axis y-axis' },
    svg('line', { x1: plot.x, y1: plot.y, x2: plot.x, y2: plot.y + plot.h }),
    ticks.map((v) => svg('g', {},
      svg('line', { class: 'grid', x1: plot.x, x2: plot.x + plot.w, y1: yAt(v), y2: yAt(v) }),
      svg('text', { x: plot.x - 6, y: yAt(v) + 4, 'text-anchor': 'end' }, formatTick(v)))),
    svg('text', {
      class: 'axis-label',
      transform: `translate(14 ${plot.y + plot.h / 2}) rotate(-90)`,
      'text-anchor': 'middle',
    }, 'Jobs per minute'));
}

function formatTick(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function xAxis(plot, points, xAt) {
  // A label every 15 minutes (fewer when narrow), always including the newest minute.
  const every = plot.w < 360 ? 30 : 15;
  const labelled = points.map((p, i) => i).filter((i) => (points.length - 1 - i) % every === 0);
  const hhmm = (d) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return svg('g', { class: 'axis x-axis' },
    svg('line', { x1: plot.x, y1: plot.y + plot.h, x2: plot.x + plot.w, y2: plot.y + plot.h }),
    labelled.map((i) => svg('text', {
      x: xAt(i),
      y: plot.y + plot.h + 16,
      'text-anchor': i === points.length - 1 ? 'end' : 'middle',
    }, hhmm(points[i].minute))),
    svg('text', { class: 'axis-label', x: plot.x + plot.w / 2, y: plot.y + plot.h + 36, 'text-anchor': 'middle' },
      'Time (your time zone)'));
}

function line(points, series, xAt, yAt) {
  const coords = points.map((p, i) => `${xAt(i).toFixed(1)},${yAt(p[series.key]).toFixed(1)}`).join(' ');
  return svg('polyline', { class: `series ${series.class}`, points: coords, 'data-series': series.key });
}

function noData(plot) {
  return svg('text', { class: 'no-data', x: plot.x + plot.w / 2, y: plot.y + plot.h / 2, 'text-anchor': 'middle' },
    'No per-minute history yet');
}

// Invisible columns, one per minute, whose <title> gives the exact counts on hover.
function hoverColumns(points, plot, xAt) {
  const half = points.length > 1 ? plot.w / (points.length - 1) / 2 : plot.w / 2;
  return svg('g', { class: 'hover' }, points.map((p, i) => svg('rect', {
    x: xAt(i) - half, y: plot.y, width: half * 2, height: plot.h,
  }, svg('title', {}, `${p.minute.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${p.completed} completed, ${p.failed} failed`))));
}

function legend(plot) {
  return svg('g', { class: 'legend', transform: `translate(${plot.x} 14)` },
    SERIES.map((s, i) => svg('g', { transform: `translate(${i * 120} 0)` },
      svg('line', { class: `series ${s.class}`, x1: 0, y1: 0, x2: 24, y2: 0 }),
      svg('text', { x: 30, y: 4 }, s.label))));
}
