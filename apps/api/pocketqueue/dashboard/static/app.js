// The dashboard's entry point: read the session, then route hash URLs (#/jobs?status=failed)
// to views. Each view renders into a fresh <section>, and whatever it opened (event
// streams, timers, requests) is closed when the user moves on.

import { ApiError, goToLogin, makeSession, request } from './api.js';
import { h, refreshRelativeTimes, replace } from './dom.js';
import { clearNotices, focusKey, report } from './ui.js';
import * as overview from './views/overview.js';
import * as jobs from './views/jobs.js';
import * as job from './views/job.js';
import * as deadLetters from './views/dead-letters.js';
import * as workers from './views/workers.js';
import * as schedules from './views/schedules.js';
import * as batches from './views/batches.js';

const ROUTES = [
  { pattern: /^\/$/, nav: 'overview', view: overview },
  { pattern: /^\/jobs$/, nav: 'jobs', view: jobs },
  { pattern: /^\/jobs\/(.+)$/, nav: 'jobs', view: job },
  { pattern: /^\/dead-letters$/, nav: 'dead-letters', view: deadLetters },
  { pattern: /^\/workers$/, nav: 'workers', view: workers },
  { pattern: /^\/schedules$/, nav: 'schedules', view: schedules },
  { pattern: /^\/batches$/, nav: 'batches', view: batches },
  { pattern: /^\/batches\/(.+)$/, nav: 'batches', view: batches },
];

const RELATIVE_TIME_REFRESH_MS = 10_000;

let session = null;
let current = null; // {path, controller, cleanups}
let routedOnce = false;

/** "#/jobs?status=failed" -> {path: "/jobs", query: URLSearchParams}. */
function parseHash() {
  const raw = window.location.hash.replace(/^#/, '') || '/';
  const at = raw.indexOf('?');
  const path = (at < 0 ? raw : raw.slice(0, at)) || '/';
  const query = new URLSearchParams(at < 0 ? '' : raw.slice(at + 1));
  return { path: path.startsWith('/') ? path : `/${path}`, query };
}

function leaveCurrent() {
  if (!current) return;
  current.controller.abort();
  for (const cleanup of current.cleanups) {
    try {
      cleanup();
    } catch (error) {
      report(error);
    }
  }
}

function route() {
  const { path, query } = parseHash();
  const samePage = current?.path === path;
  const main = document.getElementById('view');
  // Same page, other query (a filter applied, the next page): keep focus where it was.
  const focused = samePage && main.contains(document.activeElement) ? focusKey(document.activeElement) : null;
  leaveCurrent();
  if (!samePage) clearNotices();

  const section = h('section', { class: 'view' });
  replace(main, section);
  const controller = new AbortController();
  const cleanups = [];
  current = { path, controller, cleanups };

  const match = ROUTES.map((r) => ({ r, m: path.match(r.pattern) })).find(({ m }) => m);
  markNav(match?.r.nav);
  if (!match) {
    document.title = 'Not found · PocketQueue';
    replace(section, h('h1', { tabindex: -1 }, 'No such page'),
      h('p', {}, 'This address is not a dashboard page. ', h('a', { href: '#/' }, 'Go to the overview.')));
    return;
  }
  const params = match.m.slice(1).map((part) => safeDecode(part));
  const ctx = {
    root: section,
    params,
    query,
    session,
    signal: controller.signal,
    onCleanup: (fn) => cleanups.push(fn),
    setTitle: (title) => { document.title = `${title} · PocketQueue`; },
  };
  // Views build their heading and form at once (so focus can move there) and load after.
  try {
    Promise.resolve(match.r.view.render(ctx)).catch(report);
  } catch (error) {
    report(error);
  }
  // A new page: move focus to its heading, as a full page load would. The same page with
  // another query: back to the same control, else to the heading.
  if (samePage) {
    const again = focused && section.querySelector(focused);
    (again || section.querySelector('h1'))?.focus();
  } else if (routedOnce) {
    section.querySelector('h1')?.focus();
  }
  routedOnce = true;
}

function safeDecode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

function markNav(active) {
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function showSession() {
  const who = document.getElementById('who');
  who.textContent = `${session.name} (${session.role})`;
  const logout = document.getElementById('logout-form');
  // Only a keyed API has sessions to end; an open one has nothing to log out of.
  if (session.auth === 'key') logout.hidden = false;
  else logout.remove();
}

// The skip link's #view would otherwise be read as a route.
function wireSkipLink() {
  document.getElementById('skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    document.getElementById('view').focus();
  });
}

async function start() {
  wireSkipLink();
  try {
    session = makeSession(await request('/dashboard/session'));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      goToLogin();
      return;
    }
    replace(document.getElementById('view'),
      h('h1', {}, 'The dashboard could not start'),
      h('p', { role: 'alert' }, `Reading your session failed: ${error.message} Reload the page to try again.`));
    return;
  }
  showSession();
  window.addEventListener('hashchange', route);
  setInterval(() => refreshRelativeTimes(), RELATIVE_TIME_REFRESH_MS);
  route();
}

start();
