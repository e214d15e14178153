// Pieces of page every view uses: the message area, status labels, progress bars,
// empty states and scrollable tables.

import { h } from './dom.js';

const MAX_MESSAGES = 5;

function messageArea() {
  return document.getElementById('messages');
}

/**
 * Show a message the user can dismiss. Errors use role="alert" (read out at once);
 * notices use role="status". The same text is not stacked twice (a refresh that keeps
 * failing would otherwise fill the page).
 */
function showMessage(text, kind) {
  const area = messageArea();
  if (!area) return null;
  for (const old of area.querySelectorAll('.message')) {
    if (old.dataset.text === text) old.remove();
  }
  const message = h('div', {
    class: `message ${kind}`,
    role: kind === 'error' ? 'alert' : 'status',
    dataset: { text },
  },
  h('p', {}, text),
  h('button', { type: 'button', class: 'dismiss', 'data-testid': 'dismiss', 'aria-label': 'Dismiss message' }, '×'));
  message.querySelector('button').addEventListener('click', () => message.remove());
  area.append(message);
  const all = area.querySelectorAll('.message');
  for (let i = 0; i < all.length - MAX_MESSAGES; i += 1) all[i].remove();
  return message;
}

export function showError(text) {
  return showMessage(text, 'error');
}

export function showNotice(text) {
  return showMessage(text, 'notice');
}

/** Remove every message (when the user moves to another page, old notices are stale). */
export function clearNotices() {
  for (const old of messageArea()?.querySelectorAll('.message.notice') || []) old.remove();
}

/** Show what went wrong, unless it was only a request cut short by leaving the page. */
export function report(error) {
  if (error?.name === 'AbortError') return;
  showError(error?.detail || error?.message || String(error));
}

/** A status as text with a colour: the word is always there, the colour only helps. */
export function statusBadge(status, attrs = {}) {
  return h('span', { ...attrs, class: `status status-${status || 'unknown'}` }, status || 'unknown');
}

/** Set a badge made by statusBadge to another status. */
export function setStatus(el, status) {
  el.className = `status status-${status || 'unknown'}`;
  el.textContent = status || 'unknown';
}

/** A 0-100 progress bar with its value as an accessible label. */
export function progressBar(value, attrs = {}) {
  const n = clampPercent(value);
  return h('progress', { max: 100, value: n, 'aria-label': `${n}% done`, ...attrs }, `${n}%`);
}

export function setProgress(bar, value) {
  const n = clampPercent(value);
  bar.value = n;
  bar.textContent = `${n}%`;
  bar.setAttribute('aria-label', `${n}% done`);
}

function clampPercent(value) {
  const n = Math.round(Number(value) || 0);
  return Math.min(100, Math.max(0, n));
}

/** An empty state: what is (not) here, and what to do next. */
export function emptyState(...children) {
  return h('div', { class: 'empty' }, ...children);
}

/** A table inside a box that scrolls sideways on narrow screens. */
export function scrollTable(table, label) {
  // Focusable and labelled so keyboard users can scroll it too.
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': label }, table);
}

/** A header row; a name may be [text, class] (e.g. ['Waiting', 'num']). */
export function headRow(...names) {
  return h('thead', {}, h('tr', {}, names.map((name) => {
    const [text, cls] = Array.isArray(name) ? name : [name, null];
    return h('th', { scope: 'col', class: cls }, text);
  })));
}

/** A button that runs an async action, disabled while it runs (no double submits). */
export function actionButton(label, action, attrs = {}) {
  const button = h('button', { type: 'button', ...attrs }, label);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      report(error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

/** A view's heading, focusable so a route change can move focus to it. */
export function heading(text) {
  return h('h1', { tabindex: -1 }, text);
}

/**
 * Run `draw` (which rebuilds part of the page) and put keyboard focus back on the same
 * control in the new content: a periodic refresh must not throw a keyboard user back to
 * the top of the page.
 */
export function redraw(container, draw) {
  const active = document.activeElement;
  const key = active && active !== container && container.contains(active) ? focusKey(active) : null;
  draw();
  if (key) container.querySelector(key)?.focus();
}

const ROW_KEYS = ['data-job-id', 'data-schedule', 'data-worker', 'data-queue', 'data-stage'];
const OWN_KEYS = ['data-action', 'data-testid', 'href', 'aria-label', 'id'];

/** A selector for the same control after a rebuild: its row's key, and its own (or null). */
export function focusKey(el) {
  const row = el.parentElement?.closest(ROW_KEYS.map((name) => `[${name}]`).join(','));
  const rowName = row && ROW_KEYS.find((name) => row.hasAttribute(name));
  const ownName = OWN_KEYS.find((name) => el.hasAttribute(name));
  if (!ownName) return null;
  const own = `${el.localName}[${ownName}="${CSS.escape(el.getAttribute(ownName))}"]`;
  return rowName ? `[${rowName}="${CSS.escape(row.getAttribute(rowName))}"] ${own}` : own;
}
