// #/jobs?status=failed&task=x: the job listing with every filter the API has, a page at a
// time (newest first). Live: rows follow their job's events, and a job that newly matches
// the filters shows up at the top of the first page when its first status event arrives.

import { request, seg } from '../api.js';
import { h, isoToLocalInput, jobHref, localInputToIso, replace, timeEl } from '../dom.js';
import { follow } from '../live.js';
import {
  emptyState, headRow, heading, progressBar, report, scrollTable, setProgress, setStatus, statusBadge,
} from '../ui.js';
import { STATUSES } from './overview.js';

const PAGE_SIZE = 50;
const MAX_PARALLEL_LOOKUPS = 4;
const MAX_WAITING_LOOKUPS = 200;
const TAG_PATTERN = '[A-Za-z0-9_.\\-]{1,64}:.{1,128}';

/** The filters in the hash's query (the address is the state: it can be bookmarked and shared). */
function readFilters(query) {
  return {
    statuses: query.getAll('status').filter((s) => STATUSES.includes(s)),
    task: query.get('task') || '',
    tags: query.getAll('tag').filter(Boolean),
    q: query.get('q') || '',
    createdAfter: query.get('created_after') || '',
    createdBefore: query.get('created_before') || '',
    cursor: query.get('cursor') || '',
  };
}

function hasFilters(f) {
  return Boolean(f.statuses.length || f.task || f.tags.length || f.q || f.createdAfter || f.createdBefore);
}

/** The hash for a set of filters (and page). */
function filtersHash(f, cursor = '') {
  const params = new URLSearchParams();
  for (const s of f.statuses) params.append('status', s);
  if (f.task) params.set('task', f.task);
  for (const t of f.tags) params.append('tag', t);
  if (f.q) params.set('q', f.q);
  if (f.createdAfter) params.set('created_after', f.createdAfter);
  if (f.createdBefore) params.set('created_before', f.createdBefore);
  if (cursor) params.set('cursor', cursor);
  const search = params.toString();
  return search ? `#/jobs?${search}` : '#/jobs';
}

export function render(ctx) {
  ctx.setTitle('Jobs');
  const filters = readFilters(ctx.query);
  const tbody = h('tbody');
  const table = h('table', { id: 'jobs-table', hidden: true },
    h('caption', { class: 'visually-hidden' }, 'Jobs, newest first'),
    headRow('Task', 'Status', 'Progress', 'Created', 'Job'),
    tbody);
  const empty = h('div', { hidden: true }, emptyMessage(filters, ctx.session));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const summary = h('p', { class: 'muted', 'aria-live': 'polite' }, 'Loading jobs…');

  replace(ctx.root,
    heading('Jobs'),
    filterForm(filters),
    summary,
    scrollTable(table, 'Jobs'),
    empty,
    pager);
  fillTaskNames(ctx);

  const rows = new Map(); // job_id -> {tr, badge, bar, step}
  let nextCursor = null;

  let loaded = false;
  const showRowsOrEmpty = () => {
    if (!loaded) return;
    table.hidden = rows.size === 0;
    empty.hidden = rows.size !== 0;
    summary.textContent = rows.size
      ? `${rows.size} job${rows.size === 1 ? '' : 's'}${filters.cursor ? ' on this page' : ''}, newest first.`
        + `${filters.cursor ? '' : ' New matching jobs appear at the top;'} rows update live.`
      : '';
  };

  const addRow = (job, { top = false } = {}) => {
    const row = jobRow(job);
    rows.set(job.job_id, row);
    if (!top) {
      tbody.append(row.tr);
    } else {
      // Keep newest-first order: before the first row created earlier than this job.
      const created = Date.parse(job.created_at);
      const later = [...tbody.rows].find((tr) => Number(tr.dataset.created) < created);
      if (later) tbody.insertBefore(row.tr, later);
      else tbody.append(row.tr);
      row.tr.classList.add('new-row');
    }
    showRowsOrEmpty();
  };

  const load = async () => {
    const page = await request('/jobs', {
      query: {
        status: filters.statuses,
        task: filters.task,
        tag: filters.tags,
        q: filters.q,
        created_after: filters.createdAfter,
        created_before: filters.createdBefore,
        limit: PAGE_SIZE,
        cursor: filters.cursor,
      },
      signal: ctx.signal,
    });
    for (const job of page.jobs) addRow(job);
    nextCursor = page.next_cursor;
    loaded = true;
    showRowsOrEmpty();
    replace(pager,
      filters.cursor ? h('a', { href: filtersHash(filters), class: 'button', 'data-testid': 'first-page' }, 'First page') : null,
      nextCursor ? h('a', { href: filtersHash(filters, nextCursor), class: 'button', 'data-testid': 'next-page' }, 'Next page') : null);
  };

  // Jobs not on the page, looked up already and never to be shown: their task, tags, key
  // or creation time do not match (none of those change), or they belong on a later page.
  const rejected = new Set();
  // Look-ups wait in line, a few at a time: a burst of new jobs must not become a burst
  // of requests. A job dropped from a full line is looked up on its next status event.
  const lookups = new Set();
  const line = [];
  let inFlight = 0;

  const considerNewJob = (event) => {
    const id = event.job_id;
    if (filters.cursor || rejected.has(id) || lookups.has(id)) return; // only the first page grows
    if (filters.task && event.task !== filters.task) return;
    if (filters.statuses.length && !filters.statuses.includes(event.status)) return;
    if (line.length >= MAX_WAITING_LOOKUPS) return;
    lookups.add(id);
    line.push(id);
    pump();
  };

  const pump = () => {
    while (inFlight < MAX_PARALLEL_LOOKUPS && line.length && !ctx.signal.aborted) {
      const id = line.shift();
      inFlight += 1;
      lookUp(id).finally(() => {
        inFlight -= 1;
        lookups.delete(id);
        pump();
      });
    }
  };

  const lookUp = async (id) => {
    let job;
    try {
      job = await request(`/status/${seg(id)}`, { signal: ctx.signal });
    } catch {
      return; // expired or gone meanwhile, or the page was left: nothing to show
    }
    if (rows.has(id)) return;
    const verdict = matches(job, filters);
    // Older than every row while more pages exist: it belongs on a later page.
    const oldest = tbody.rows.length ? Number(tbody.rows[tbody.rows.length - 1].dataset.created) : Infinity;
    const belongsLater = Boolean(nextCursor) && Date.parse(job.created_at) < oldest;
    if (verdict === 'never' || belongsLater) rejected.add(id);
    else if (verdict === 'yes') addRow(job, { top: true });
  };

  const onEvent = (event) => {
    const row = rows.get(event.job_id);
    if (row) {
      updateRow(row, event);
    } else if (event.type === 'status') {
      considerNewJob(event);
    }
  };

  // Open the stream first and hold its events until the page is in: an event that comes
  // while the page loads then still updates its row.
  let held = [];
  const stream = follow('/events', {
    query: { task: filters.task },
    onEvent: (event) => (held ? held.push(event) : onEvent(event)),
  });
  ctx.onCleanup(stream.close);
  load().then(() => {
    const waiting = held;
    held = null;
    waiting.forEach(onEvent);
  }, (error) => {
    held = null; // live updates carry on: matching jobs still appear
    summary.textContent = '';
    report(error);
  });
}

/** Whether a job matches the filters: 'yes', 'not-now' (its status does not), 'never'. */
function matches(job, f) {
  if (f.task && job.task !== f.task) return 'never';
  for (const tag of f.tags) {
    const at = tag.indexOf(':');
    if ((job.tags || {})[tag.slice(0, at)] !== tag.slice(at + 1)) return 'never';
  }
  if (f.q && !(job.job_id.startsWith(f.q) || job.idempotency_key === f.q || job.unique_key === f.q)) return 'never';
  const created = Date.parse(job.created_at);
  if (f.createdAfter && !(created > Date.parse(f.createdAfter))) return 'never';
  if (f.createdBefore && !(created < Date.parse(f.createdBefore))) return 'never';
  if (f.statuses.length && !f.statuses.includes(job.status)) return 'not-now';
  return 'yes';
}

/** When the job last changed as far as its record says (epoch seconds). */
function lastChange(job) {
  return Math.max(...[job.created_at, job.started_at, job.finished_at].map((t) => (t ? Date.parse(t) / 1000 : 0)));
}

function jobRow(job) {
  const badge = statusBadge(job.status);
  const bar = progressBar(job.progress, { 'data-testid': 'progress' });
  const step = h('span', { class: 'step' }, job.step || '');
  const tr = h('tr', { 'data-job-id': job.job_id, dataset: { created: String(Date.parse(job.created_at)) } },
    h('td', { class: 'task' }, job.task),
    h('td', {}, badge),
    h('td', { class: 'progress-cell' }, bar, step),
    h('td', {}, timeEl(job.created_at)),
    h('td', {}, h('a', { href: jobHref(job.job_id), class: 'job-link', title: `Open job ${job.job_id}` }, job.job_id)));
  return { tr, badge, bar, step, seenAt: lastChange(job) };
}

function updateRow(row, event) {
  // An event older than the record the row was drawn from (it came while the page loaded)
  // must not take the row back in time.
  if (event.at && event.at + 0.001 < row.seenAt) return;
  row.seenAt = Math.max(row.seenAt, event.at || 0);
  if (event.status) setStatus(row.badge, event.status);
  setProgress(row.bar, event.progress);
  row.step.textContent = event.step || '';
}

function filterForm(f) {
  const form = h('form', { id: 'job-filters', class: 'filters', role: 'search', 'aria-label': 'Filter jobs' },
    h('fieldset', { class: 'statuses' },
      h('legend', {}, 'Status'),
      STATUSES.map((s) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'status', value: s, id: `filter-status-${s}`, checked: f.statuses.includes(s) }),
        ` ${s}`))),
    field('Task', h('input', { id: 'filter-task', name: 'task', value: f.task, list: 'task-names', autocomplete: 'off' }),
      h('datalist', { id: 'task-names' })),
    field('Tag (name:value)', h('input', {
      id: 'filter-tag', name: 'tag', value: f.tags[0] || '', pattern: TAG_PATTERN, placeholder: 'book_id:42',
      title: 'A tag as name:value, e.g. book_id:42',
    })),
    field('Job id, id prefix or key', h('input', { id: 'filter-q', name: 'q', value: f.q, type: 'search' })),
    field('Created after', h('input', { id: 'filter-created-after', name: 'created_after', type: 'datetime-local', value: isoToLocalInput(f.createdAfter) })),
    field('Created before', h('input', { id: 'filter-created-before', name: 'created_before', type: 'datetime-local', value: isoToLocalInput(f.createdBefore) })),
    h('div', { class: 'form-actions' },
      h('button', { type: 'submit', id: 'apply-filters' }, 'Apply filters'),
      h('a', { href: '#/jobs', class: 'button secondary' }, 'Clear filters')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const tag = String(data.get('tag') || '').trim();
    const next = {
      statuses: data.getAll('status').map(String),
      task: String(data.get('task') || '').trim(),
      tags: tag ? [tag] : [],
      q: String(data.get('q') || '').trim(),
      // The API needs a zone: the viewer's own, written as an offset.
      createdAfter: localInputToIso(String(data.get('created_after') || '')),
      createdBefore: localInputToIso(String(data.get('created_before') || '')),
    };
    const hash = filtersHash(next);
    if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
    else window.location.hash = hash;
  });
  return form;
}

function field(label, input, ...extra) {
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, ...extra);
}

async function fillTaskNames(ctx) {
  try {
    const { tasks } = await request('/tasks', { signal: ctx.signal });
    const list = ctx.root.querySelector('#task-names');
    if (list) replace(list, tasks.map((task) => h('option', { value: task })));
  } catch {
    // Suggestions only: the field works without them.
  }
}

function emptyMessage(filters, session) {
  if (filters.cursor) {
    return emptyState(h('p', {}, 'No more jobs on this page. ', h('a', { href: filtersHash(filters) }, 'Back to the first page.')));
  }
  if (hasFilters(filters)) {
    return emptyState(h('p', {}, 'No job matches these filters. Widen them, or ',
      h('a', { href: '#/jobs' }, 'clear them'), '. Matching jobs will appear here as they are dispatched.'));
  }
  const auth = session.auth === 'key' ? " -H 'Authorization: Bearer YOUR_KEY'" : '';
  const curl = `curl -X POST ${window.location.origin}/api/queue/dispatch -H 'Content-Type: application/json'${auth}`
    + ` -d '{"task": "pocketqueue.debug", "kwargs": {"sleep": 5, "steps": 5}}'`;
  return emptyState(h('p', {}, 'No jobs yet. Dispatch one:'), h('pre', {}, h('code', {}, curl)),
    h('p', {}, 'It will appear here as soon as it is queued.'));
}
