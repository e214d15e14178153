// #/jobs/<id>: one job in full. Its event stream (replayed from the start when opened)
// drives the status, the progress bar and the timeline; each event also re-reads the job
// (at most once a second) for the rest: result, errors, stages, worker.

import { ApiError, request, seg } from '../api.js';
import { batchHref, duration, h, prettyJson, replace, timeEl } from '../dom.js';
import { FINAL_STATUSES, follow, throttle } from '../live.js';
import {
  actionButton, emptyState, headRow, heading, progressBar, redraw, report, scrollTable, setProgress, setStatus, statusBadge,
} from '../ui.js';

const REFETCH_GAP_MS = 1_000;

export function render(ctx) {
  const [jobId] = ctx.params;
  ctx.setTitle(`Job ${jobId}`);
  const badge = statusBadge('', { 'data-testid': 'job-status' });
  badge.textContent = 'loading…';
  const bar = progressBar(0, { 'data-testid': 'job-progress' });
  const step = h('span', { class: 'step', 'data-testid': 'job-step' });
  const actions = h('div', { class: 'actions', 'data-testid': 'job-actions' });
  const outcome = h('p', { class: 'outcome', role: 'status', 'data-testid': 'action-outcome' });
  const summary = h('dl', { class: 'facts', id: 'job-summary' });
  const details = h('div', { id: 'job-details' });
  const timeline = h('ol', { class: 'timeline', id: 'timeline' });
  const timelineEmpty = h('p', { class: 'muted' }, 'Waiting for the job’s events…');

  replace(ctx.root,
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← All jobs')),
    heading(`Job ${jobId}`),
    h('div', { class: 'job-head' },
      h('div', { class: 'job-state' }, badge, h('div', { class: 'progress-line' }, bar, step)),
      actions),
    outcome,
    summary,
    details,
    h('section', { 'aria-labelledby': 'h-timeline' },
      h('h2', { id: 'h-timeline' }, 'Timeline'), timelineEmpty, timeline));

  let job = null;
  let shownActions = '';
  let stream = null;

  const showState = (status, progress, stepText) => {
    setStatus(badge, status);
    setProgress(bar, progress);
    step.textContent = stepText || '';
    renderActions(status);
  };

  // Rebuilt only when the set of allowed actions changes, so focus stays on a button.
  const renderActions = (status) => {
    const wanted = [];
    if (ctx.session.canWrite && !FINAL_STATUSES.has(status)) wanted.push('cancel');
    if (ctx.session.canAdmin && status === 'failed') wanted.push('retry');
    if (wanted.join() === shownActions) return;
    shownActions = wanted.join();
    replace(actions, wanted.map((name) => (name === 'cancel'
      ? actionButton('Cancel job', cancel, { 'data-action': 'cancel', class: 'danger' })
      : actionButton('Retry job', retry, { 'data-action': 'retry' }))));
  };

  // The details are redrawn only when something besides the progress changed, so a
  // reader's text selection or scroll position survives a running job's updates.
  let drawn = '';
  const refetch = async () => {
    job = await request(`/status/${seg(jobId)}`, { signal: ctx.signal });
    showState(job.status, job.progress, job.step);
    const { progress, step, queue_position: place, estimated_start_seconds: eta, ...rest } = job;
    const key = JSON.stringify([rest, job.status === 'queued' ? [place, eta] : null]);
    if (key === drawn) return;
    drawn = key;
    renderSummary(summary, job);
    redraw(details, () => renderDetails(details, job));
  };
  const refetcher = throttle(refetch, REFETCH_GAP_MS);
  ctx.onCleanup(refetcher.cancel);

  const onEvent = (event) => {
    showState(event.status, event.progress, event.step);
    if (event.type === 'status') {
      timelineEmpty.hidden = true;
      timeline.append(timelineEntry(event));
    }
    // Stages, errors, the result and the worker live only in the record: re-read it.
    refetcher.run();
  };

  // (Re)open the job's stream; a reopened one skips what was already shown.
  const listen = () => {
    const after = stream ? stream.lastId() : null;
    stream?.close();
    stream = follow(`/jobs/${seg(jobId)}/events`, {
      onEvent,
      after,
      endsWithJob: true,
      isOver: () => FINAL_STATUSES.has(job?.status),
      onEnd: () => {
        if (!timeline.children.length) timelineEmpty.textContent = 'No events are kept for this job any more (they expire).';
      },
    });
  };
  ctx.onCleanup(() => stream?.close());

  const cancel = async () => {
    const changed = await request(`/cancel/${seg(jobId)}`, { method: 'DELETE' });
    outcome.textContent = `Cancelled: the job is now ${changed.status}.`;
    await afterAction();
  };

  const retry = async () => {
    const changed = await request(`/retry/${seg(jobId)}`, { method: 'POST' });
    outcome.textContent = `Re-driven: the job is ${changed.status} again.`;
    await afterAction();
  };

  const afterAction = async () => {
    await refetch();
    listen(); // a re-driven job has a new life to follow; its old stream had ended
  };

  (async () => {
    try {
      await refetch();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        replace(ctx.root, heading('Job not found'), emptyState(
          h('p', {}, `No job has the id ${jobId}: it never existed, or it finished long enough ago to have expired.`),
          h('p', {}, h('a', { href: '#/jobs' }, 'Find jobs in the listing.'))));
      } else {
        report(error);
      }
      return;
    }
    if (!ctx.signal.aborted) listen();
  })();
}

function fact(label, ...value) {
  return [h('dt', {}, label), h('dd', {}, ...value)];
}

function renderSummary(el, job) {
  const waiting = job.status === 'queued' && job.queue_position != null
    ? fact('Place in line', `${job.queue_position} ahead`,
      job.estimated_start_seconds != null ? ` (starts in about ${duration(job.estimated_start_seconds)})` : '')
    : null;
  replace(el,
    fact('Task', h('span', { 'data-testid': 'job-task' }, job.task)),
    fact('Queue', job.queue || 'default'),
    fact('Priority', job.priority),
    fact('Attempts', h('span', { 'data-testid': 'job-attempts' }, `${job.attempts} (max retries ${job.max_retries})`)),
    fact('Worker', job.worker || '—'),
    fact('Dispatched by', job.dispatched_by || '—'),
    waiting,
    fact('Created', timeEl(job.created_at)),
    job.run_at ? fact('Runs at', timeEl(job.run_at)) : null,
    fact('Started', timeEl(job.started_at)),
    fact('Finished', timeEl(job.finished_at)),
    job.batch ? fact('Batch', h('a', { href: batchHref(job.batch), 'data-testid': 'job-batch' }, job.batch)) : null);
}

function renderDetails(el, job) {
  // Keep open whichever tracebacks the reader had opened.
  const open = new Set([...el.querySelectorAll('details[open]')].map((d) => d.dataset.key));
  const errors = job.attempt_errors?.length ? job.attempt_errors : (job.error ? [job.error] : []);
  replace(el,
    job.stages ? section('Stages', stagesTable(job.stages)) : null,
    errors.length ? section('Errors', errors.map((error, i) => errorDetails(error, i, open))) : null,
    section('Arguments',
      jsonBlock('args', job.args), jsonBlock('kwargs', job.kwargs)),
    section('Result', jsonBlock('result', job.result, 'job-result'),
      job.partial_errors ? jsonBlock('partial errors', job.partial_errors) : null),
    section('Tags', Object.keys(job.tags || {}).length ? jsonBlock('tags', job.tags) : h('p', { class: 'muted' }, 'No tags.')));
}

function section(title, ...content) {
  const id = `h-${title.toLowerCase().replace(/\W+/g, '-')}`;
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...content);
}

function jsonBlock(label, value, testid) {
  return h('figure', { class: 'json' },
    h('figcaption', {}, label),
    h('pre', { 'data-testid': testid || null, tabindex: 0 }, h('code', {}, prettyJson(value))));
}

function errorDetails(error, index, open) {
  const key = `${index}:${error.attempt ?? ''}:${error.type}`;
  const attempt = error.attempt != null ? `Attempt ${error.attempt}: ` : '';
  return h('details', { class: 'error-detail', 'data-testid': 'attempt-error', dataset: { key }, open: open.has(key) },
    h('summary', {}, `${attempt}`, h('strong', {}, error.type), `: ${firstLine(error.message)}`),
    h('p', { class: 'error-message' }, error.message),
    error.traceback ? h('pre', { tabindex: 0 }, h('code', {}, error.traceback)) : h('p', { class: 'muted' }, 'No traceback.'));
}

function firstLine(text) {
  const line = String(text || '').split('\n')[0];
  return line.length > 160 ? `${line.slice(0, 157)}…` : line;
}

function stagesTable(stages) {
  const table = h('table', { id: 'stages-table' },
    h('caption', { class: 'visually-hidden' }, 'Stages of this flow job'),
    headRow('Stage', ['Weight', 'num'], 'Status', ['Attempts', 'num'], 'Started', 'Finished', 'Error'),
    h('tbody', {}, stages.map((stage) => h('tr', { dataset: { stage: stage.name } },
      h('th', { scope: 'row' }, stage.name),
      h('td', { class: 'num' }, `${Number(stage.weight).toFixed(0)}%`),
      h('td', {}, statusBadge(stage.status)),
      h('td', { class: 'num' }, String(stage.attempts ?? 0)),
      h('td', {}, timeEl(stage.started_at, { compact: true })),
      h('td', {}, timeEl(stage.finished_at, { compact: true })),
      h('td', { class: 'error-cell' }, stage.error || '')))));
  return scrollTable(table, 'Stages');
}

function timelineEntry(event) {
  const error = event.error ? ` — ${event.error.type}: ${firstLine(event.error.message)}` : '';
  const attempt = event.attempt ? ` (attempt ${event.attempt})` : '';
  return h('li', { 'data-testid': 'timeline-entry', dataset: { status: event.status } },
    timeEl(event.at), ' ', statusBadge(event.status), `${attempt}${error}`);
}

