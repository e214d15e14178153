// #/dead-letters: failed jobs (no attempts left), grouped by task and error type, with
// filters, a retry per job and a confirmed "retry all matching" (admin only).

import { request, seg } from '../api.js';
import { h, jobHref, plural, replace, timeEl } from '../dom.js';
import { follow } from '../live.js';
import { actionButton, emptyState, headRow, heading, redraw, report, scrollTable } from '../ui.js';

// One page on open, more on request: each job shown is a whole record (args, every
// attempt's traceback), so 500 at once took 140 ms of the API with a million records
// in Redis (bench/dashboard.py); the page budget is 100 ms.
const PAGE = 100;
const NO_ERROR = '(no error recorded)';

export function render(ctx) {
  ctx.setTitle('Dead letters');
  const admin = ctx.session.canAdmin;
  const taskInput = h('input', { id: 'dl-task', name: 'task', list: 'dl-task-names', autocomplete: 'off', value: ctx.query.get('task') || '' });
  const typeInput = h('input', { id: 'dl-error-type', name: 'error_type', list: 'dl-error-types', autocomplete: 'off', value: ctx.query.get('error_type') || '' });
  const taskList = h('datalist', { id: 'dl-task-names' });
  const typeList = h('datalist', { id: 'dl-error-types' });
  const summary = h('p', { 'data-testid': 'dl-summary', 'aria-live': 'polite' }, 'Loading failed jobs…');
  const outcome = h('div', { class: 'outcome', role: 'status', 'data-testid': 'retry-outcome' });
  const groups = h('div', { id: 'dl-groups' });
  const fresh = h('p', { class: 'warning', hidden: true, 'data-testid': 'dl-new-failures', 'aria-live': 'polite' });
  const dialog = admin ? confirmDialog() : null; // no actions at all for other roles
  const retryMatching = admin
    ? h('button', { type: 'button', 'data-action': 'retry-matching' }, 'Retry all matching')
    : null;

  const filterForm = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter dead letters' },
    h('div', { class: 'field' }, h('label', { for: 'dl-task' }, 'Task (exact name)'), taskInput, taskList),
    h('div', { class: 'field' }, h('label', { for: 'dl-error-type' }, 'Error type (exact)'), typeInput, typeList),
    h('div', { class: 'form-actions' },
      h('button', { type: 'reset', class: 'secondary' }, 'Clear filters'),
      actionButton('Reload', () => load(), { 'data-testid': 'dl-reload', class: 'secondary' }),
      retryMatching));

  replace(ctx.root,
    heading('Dead letters'),
    h('p', { class: 'muted' }, 'Failed jobs: they ran out of attempts (or hit a permanent error). Newest first, grouped by task and error type.'),
    filterForm, summary, fresh, outcome, groups, dialog?.el);

  let jobs = [];
  let total = 0;
  let wanted = PAGE; // how many of the newest to show; "Show more" raises it
  const more = h('button', { type: 'button', class: 'secondary', 'data-testid': 'dl-more', hidden: true }, `Show ${PAGE} more`);
  more.addEventListener('click', () => {
    wanted += PAGE;
    load().catch(report);
  });
  summary.after(more);

  const current = () => ({ task: taskInput.value.trim(), errorType: typeInput.value.trim() });
  const matching = () => {
    const { task, errorType } = current();
    return jobs.filter((job) => (!task || job.task === task) && (!errorType || errorType === errorTypeOf(job)));
  };

  const show = () => {
    const { task, errorType } = current();
    // Keep the filter in the address (without a reload) so it can be shared.
    const params = new URLSearchParams();
    if (task) params.set('task', task);
    if (errorType) params.set('error_type', errorType);
    history.replaceState(null, '', `#/dead-letters${params.toString() ? `?${params}` : ''}`);
    const shown = matching();
    const partial = total > jobs.length;
    more.hidden = !partial;
    summary.textContent = total === 0 ? ''
      : `${plural(total, 'failed job')} in the dead-letter set${partial ? ` (the newest ${jobs.length} are shown)` : ''}`
        + `${task || errorType ? `; ${shown.length} match the filter` : ''}.`;
    if (retryMatching) retryMatching.disabled = shown.length === 0;
    redraw(groups, () => replace(groups, total === 0
      ? emptyState(h('p', {}, 'No failed jobs. Jobs that run out of attempts land here; an admin can then re-drive them.'))
      : shown.length === 0
        ? emptyState(h('p', {}, 'No failed job matches these filters. Clear them to see every failed job.'))
        : groupJobs(shown).map((group) => groupSection(group, admin, retryOne))));
  };

  // Jobs that failed since the list was read: said, not re-rendered under the reader's eyes.
  let newFailures = 0;
  const showFresh = () => {
    fresh.hidden = newFailures === 0;
    if (newFailures) {
      replace(fresh, `${plural(newFailures, 'more job')} failed since this list was loaded. `,
        actionButton('Reload', () => load(), { class: 'secondary', 'data-testid': 'dl-reload-new' }));
    } else {
      fresh.replaceChildren();
    }
  };
  const stream = follow('/events', {
    query: { status: 'failed' },
    onEvent: () => {
      newFailures += 1;
      showFresh();
    },
  });
  ctx.onCleanup(stream.close);

  const load = async () => {
    const page = await loadDeadLetters(ctx.signal, wanted);
    newFailures = 0;
    showFresh();
    jobs = page.jobs;
    total = page.total;
    replace(taskList, unique(jobs.map((j) => j.task)).map((v) => h('option', { value: v })));
    replace(typeList, unique(jobs.map(errorTypeOf)).map((v) => h('option', { value: v })));
    show();
  };

  const retryOne = async (job) => {
    const changed = await request(`/retry/${seg(job.job_id)}`, { method: 'POST' });
    replace(outcome, h('p', {}, `Re-drove job ${job.job_id}: it is ${changed.status} again. `,
      h('a', { href: jobHref(job.job_id) }, 'Follow it.')));
    await load();
  };

  const redriveMatching = async () => {
    const { task, errorType } = current();
    const result = await redrive({ task: task || undefined, error_type: errorType || undefined });
    replace(outcome, outcomeText(result));
    await load();
  };

  retryMatching?.addEventListener('click', async () => {
    // Count from a fresh read: the dialog must say how many the re-drive will touch.
    retryMatching.disabled = true;
    try {
      await load();
    } catch (error) {
      report(error);
      return;
    } finally {
      retryMatching.disabled = matching().length === 0;
    }
    if (!matching().length) return;
    const { task, errorType } = current();
    const count = matching().length;
    const atLeast = total > jobs.length ? 'at least ' : '';
    const what = task || errorType
      ? `Re-drive ${atLeast}${plural(count, 'failed job')}${task ? ` of task ${task}` : ''}${errorType ? ` with error ${errorType}` : ''}?`
      : `Re-drive all ${atLeast}${plural(count, 'failed job')}?`;
    dialog.open(what, redriveMatching);
  });

  taskInput.addEventListener('input', show);
  typeInput.addEventListener('input', show);
  filterForm.addEventListener('submit', (event) => event.preventDefault());
  filterForm.addEventListener('reset', () => setTimeout(show)); // after the browser empties the fields

  load().catch(report);
}

function errorTypeOf(job) {
  return job.error?.type || NO_ERROR;
}

function unique(values) {
  return [...new Set(values)].sort();
}

/** The newest `wanted` failed jobs, a page at a time. */
async function loadDeadLetters(signal, wanted) {
  const jobs = [];
  let total = 0;
  for (let offset = 0; offset < wanted; offset += PAGE) {
    const page = await request('/dead-letter', { query: { offset, limit: PAGE }, signal });
    total = page.total;
    jobs.push(...page.jobs);
    if (page.jobs.length < PAGE || jobs.length >= total) break;
  }
  return { jobs, total };
}

/** Re-drive everything the filter matches, following next_cursor until the API is done. */
async function redrive(filter) {
  const redriven = [];
  const skipped = {};
  let cursor;
  do {
    const body = { ...filter, cursor };
    const answer = await request('/dead-letter/retry', { method: 'POST', body });
    redriven.push(...answer.redriven);
    Object.assign(skipped, answer.skipped);
    cursor = answer.next_cursor || undefined;
  } while (cursor);
  return { redriven, skipped };
}

function outcomeText({ redriven, skipped }) {
  const reasons = Object.entries(skipped);
  return [
    h('p', {}, `Re-drove ${plural(redriven.length, 'job')}; skipped ${reasons.length}.`),
    reasons.length
      ? h('ul', { class: 'skipped' }, reasons.map(([id, why]) => h('li', {}, h('a', { href: jobHref(id) }, id), `: ${why}`)))
      : null,
  ];
}

function groupJobs(jobs) {
  const groups = new Map();
  for (const job of jobs) {
    const key = `${job.task}\u0000${errorTypeOf(job)}`;
    if (!groups.has(key)) groups.set(key, { task: job.task, errorType: errorTypeOf(job), jobs: [] });
    groups.get(key).jobs.push(job);
  }
  return [...groups.values()].sort((a, b) => b.jobs.length - a.jobs.length);
}

function groupSection(group, admin, retryOne) {
  const title = h('h2', {}, h('span', { class: 'task' }, group.task), ' · ', h('span', { class: 'error-type' }, group.errorType), ' ',
    h('span', { class: 'group-count', 'data-testid': 'group-count' }, plural(group.jobs.length, 'job')));
  const table = h('table', { class: 'dl-table' },
    headRow('Job', 'Error', ['Attempts', 'num'], 'Failed', ...(admin ? ['Action'] : [])),
    h('tbody', {}, group.jobs.map((job) => h('tr', { 'data-job-id': job.job_id },
      h('td', {}, h('a', { href: jobHref(job.job_id), class: 'job-link', title: `Open job ${job.job_id}` }, job.job_id)),
      h('td', { class: 'error-cell' }, job.error?.message || ''),
      h('td', { class: 'num' }, String(job.attempts)),
      h('td', {}, timeEl(job.finished_at)),
      admin ? h('td', {}, actionButton('Retry', () => retryOne(job), { 'data-action': 'retry', 'aria-label': `Retry job ${job.job_id}` })) : null))));
  return h('section', { class: 'dl-group', dataset: { task: group.task, errorType: group.errorType } },
    title, scrollTable(table, `${group.task} ${group.errorType}`));
}

/** The in-page confirmation: a modal <dialog> (it keeps focus inside until closed). */
function confirmDialog() {
  const text = h('p', { id: 'retry-dialog-text' });
  const confirm = h('button', { type: 'button', 'data-action': 'confirm' }, 'Re-drive');
  const cancel = h('button', { type: 'button', class: 'secondary', 'data-action': 'cancel-dialog' }, 'Cancel');
  const el = h('dialog', { id: 'retry-dialog', 'aria-labelledby': 'retry-dialog-title', 'aria-describedby': 'retry-dialog-text' },
    h('h2', { id: 'retry-dialog-title' }, 'Re-drive failed jobs'), text,
    h('div', { class: 'form-actions' }, cancel, confirm));
  let onConfirm = null;
  cancel.addEventListener('click', () => el.close());
  confirm.addEventListener('click', async () => {
    confirm.disabled = true;
    try {
      await onConfirm?.();
      el.close();
    } catch (error) {
      el.close();
      report(error);
    } finally {
      confirm.disabled = false;
    }
  });
  return {
    el,
    open(message, action) {
      text.textContent = message;
      onConfirm = action;
      el.showModal();
      cancel.focus(); // the safe choice first: Enter right away does not re-drive anything
    },
  };
}
