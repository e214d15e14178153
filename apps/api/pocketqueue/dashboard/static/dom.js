// Small DOM and formatting helpers shared by every view.
// Everything that comes from the API goes into the page as text nodes or attribute
// values (never as HTML), so a job's args or error message can never inject markup.

/**
 * Create an element: h('a', {href: '#/', class: 'x', dataset: {jobId: id}}, 'text', child).
 * Attributes set to null, undefined or false are left out; true gives an empty attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Append children (strings become text nodes; null/false are skipped; arrays are flattened). */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Create an SVG element with attributes (same rules as h). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') el.setAttribute('class', value);
    else el.setAttribute(name, String(value));
  }
  return append(el, children);
}

/** Pretty JSON for <pre> blocks. */
export function prettyJson(value) {
  return JSON.stringify(value, null, 2) ?? 'null';
}

/** A Date from an ISO string (or epoch seconds); null when missing or unreadable. */
export function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  const date = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The viewer's local date and time. */
export function localTime(date) {
  return date.toLocaleString();
}

/** "5 s ago", "3 min ago", "in 2 h": short, no trailing periods. */
export function relativeTime(date, now = Date.now()) {
  const seconds = Math.round((date.getTime() - now) / 1000);
  const size = Math.abs(seconds);
  if (size < 5) return 'just now';
  const amount = size < 60 ? `${size} s`
    : size < 3600 ? `${Math.round(size / 60)} min`
      : size < 86400 ? `${Math.round(size / 3600)} h`
        : `${Math.round(size / 86400)} d`;
  return seconds < 0 ? `${amount} ago` : `in ${amount}`;
}

/** A duration in seconds as "42 s", "3 min 5 s", "2 h 4 min". */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  const minutes = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${minutes ? ` ${minutes} min` : ''}`;
}

/**
 * A <time> showing the relative time, with the absolute local time as its title and,
 * unless `compact`, also written out beside it (so it is readable without a mouse).
 * The relative text is refreshed by refreshRelativeTimes().
 */
export function timeEl(value, { compact = false } = {}) {
  const date = toDate(value);
  if (!date) return h('span', { class: 'muted' }, '—');
  const local = localTime(date);
  const time = h('time', { datetime: date.toISOString(), title: local, dataset: { relative: '' } },
    relativeTime(date));
  if (compact) return time;
  return h('span', { class: 'when' }, time, h('span', { class: 'abs' }, local));
}

/** Refresh every relative time on the page (called by a slow timer). */
export function refreshRelativeTimes(root = document) {
  const now = Date.now();
  for (const time of root.querySelectorAll('time[data-relative]')) {
    const date = toDate(time.getAttribute('datetime'));
    if (date) time.textContent = relativeTime(date, now);
  }
}

/**
 * An ISO 8601 time with the viewer's UTC offset (e.g. 2024-05-01T10:00:00+02:00) from a
 * datetime-local value, which has no zone: the API needs one to know which 10:00 is meant.
 */
export function localInputToIso(value) {
  if (!value) return '';
  const date = new Date(value); // a datetime-local string is read as local time
  if (Number.isNaN(date.getTime())) return '';
  const pad = (n) => String(Math.abs(Math.trunc(n))).padStart(2, '0');
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
    + `${sign}${pad(offset / 60)}:${pad(offset % 60)}`;
}

/** The datetime-local value (viewer's zone) for an ISO time, to fill a form from the URL. */
export function isoToLocalInput(value) {
  const date = toDate(value);
  if (!date) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
    + `T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** "1 job", "3 jobs". */
export function plural(count, word, many = `${word}s`) {
  return `${count} ${count === 1 ? word : many}`;
}

/** A hash link to a job's page. */
export function jobHref(jobId) {
  return `#/jobs/${encodeURIComponent(jobId)}`;
}

/** A hash link to a batch's page. */
export function batchHref(batchId) {
  return `#/batches/${encodeURIComponent(batchId)}`;
}
