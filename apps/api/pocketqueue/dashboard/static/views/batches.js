// #/batches and #/batches/<id>: look a batch up by id; its state, counts, done/total
// progress, its jobs and its callback job. Live while running: the batch is re-read when
// one of its jobs changes status (at most once a second).

import { ApiError, request, seg } from '../api.js';
import { batchHref, h, jobHref, plural, replace, timeEl } from '../dom.js';
import { follow, throttle } from '../live.js';
import { emptyState, heading, redraw, report, statusBadge } from '../ui.js';

const EVENT_GAP_MS = 1_000;

export function render(ctx) {
  const [batchId] = ctx.params;
  ctx.setTitle(batchId ? `Batch ${batchId}` : 'Batch lookup');
  const input = h('input', { id: 'batch-id', name: 'batch_id', required: true, value: batchId || '', autocomplete: 'off' });
  const form = h('form', { class: 'filters lookup', role: 'search', 'aria-label': 'Look up a batch', id: 'batch-lookup' },
    h('div', { class: 'field' }, h('label', { for: 'batch-id' }, 'Batch id'), input),
    h('div', { class: 'form-actions' }, h('button', { type: 'submit', id: 'batch-lookup-submit' }, 'Look up')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const id = input.value.trim();
    if (id) window.location.hash = batchHref(id);
  });
  const body = h('div', { id: 'batch' });
  replace(ctx.root, heading(batchId ? `Batch ${batchId}` : 'Batch lookup'), form, body);

  if (!batchId) {
    replace(body, emptyState(h('p', {}, 'Enter the batch_id that POST /api/queue/batches returned, or open a batch from one of its jobs.')));
    return;
  }

  let batch = null;
  let members = new Set();
  let stream = null;
  const load = async () => {
    batch = await request(`/batches/${seg(batchId)}`, { signal: ctx.signal });
    members = new Set(batch.jobs);
    redraw(body, () => replace(body, batchDetails(batch)));
    if (settled(batch)) stream?.close();
  };
  const refresher = throttle(load, EVENT_GAP_MS);
  ctx.onCleanup(refresher.cancel);
  ctx.onCleanup(() => stream?.close());

  // Re-read on its jobs' status changes; once they have all ended, on any status event
  // until the callback job shows up (its id is not known before it is dispatched).
  const onEvent = (event) => {
    if (event.type !== 'status') return;
    if (members.has(event.job_id) || batch.state !== 'running') refresher.run();
  };

  load().then(() => {
    if (!settled(batch) && !ctx.signal.aborted) stream = follow('/events', { onEvent });
  }, (error) => {
    if (error instanceof ApiError && error.status === 404) {
      replace(body, emptyState(h('p', {}, `No batch has the id ${batchId}. Check the id; a finished batch expires with its jobs.`)));
    } else {
      report(error);
    }
  });
}

/** Nothing more will change: it failed (no callback then), or it completed and its callback is known. */
function settled(batch) {
  return batch.state === 'failed' || (batch.state === 'completed' && (!batch.on_complete || Boolean(batch.on_complete_job)));
}

function batchDetails(batch) {
  const counts = Object.entries(batch.counts || {});
  return [
    h('dl', { class: 'facts' },
      h('dt', {}, 'State'), h('dd', {}, statusBadge(batch.state, { 'data-testid': 'batch-state' })),
      h('dt', {}, 'Done'), h('dd', {},
        h('progress', { max: batch.total || 1, value: batch.done, 'data-testid': 'batch-progress', 'aria-label': `${batch.done} of ${batch.total} jobs done` }),
        ` ${batch.done} of ${plural(batch.total, 'job')} ended`),
      h('dt', {}, 'Policy'), h('dd', {}, batch.policy),
      h('dt', {}, 'Created'), h('dd', {}, timeEl(batch.created_at)),
      h('dt', {}, 'Finished'), h('dd', {}, timeEl(batch.finished_at)),
      h('dt', {}, 'Callback'), h('dd', {}, batch.on_complete
        ? [batch.on_complete, ' → ', batch.on_complete_job
          ? h('a', { href: jobHref(batch.on_complete_job), 'data-testid': 'batch-callback' }, batch.on_complete_job)
          : h('span', { class: 'muted' }, 'not dispatched yet')]
        : h('span', { class: 'muted' }, 'none'))),
    h('h2', {}, 'Counts'),
    counts.length
      ? h('ul', { class: 'inline-list', 'data-testid': 'batch-counts' }, counts.map(([status, n]) => h('li', { dataset: { status } }, statusBadge(status), ` ${n}`)))
      : h('p', { class: 'muted' }, 'No job has ended yet.'),
    h('h2', {}, `Jobs (${batch.jobs.length})`),
    h('ol', { class: 'job-list', 'data-testid': 'batch-jobs' },
      batch.jobs.map((id) => h('li', {}, h('a', { href: jobHref(id), class: 'job-link' }, id)))),
  ];
}
