// #/workers: every live worker (from its heartbeat) and the jobs it runs, with progress
// bars that follow the jobs' events.
//
// A heartbeat is refreshed only every few seconds, so it lags: a job that just started is
// not in it yet, and one that just ended still is. The page therefore merges the last
// heartbeats with what the events said since: a started job is looked up (its record names
// its worker) and shown at once, an ended one is hidden at once. The list is re-read every
// 10 s (and a second after a job starts or ends) for the heartbeats themselves.

import { request, seg } from '../api.js';
import { h, jobHref, plural, replace, timeEl } from '../dom.js';
import { FINAL_STATUSES, follow, throttle } from '../live.js';
import { emptyState, headRow, heading, progressBar, redraw, scrollTable, setProgress } from '../ui.js';

const FALLBACK_MS = 10_000;
const EVENT_GAP_MS = 1_000;

export function render(ctx) {
  ctx.setTitle('Workers');
  const list = h('div', { id: 'workers' }, h('p', { class: 'muted' }, 'Loading workers…'));
  replace(ctx.root, heading('Workers'), list);

  let workers = null; // the last heartbeats read
  const started = new Map(); // job_id -> running job (with `worker`) the heartbeats do not show yet
  const ended = new Set(); // job ids the heartbeats may still show, but that have ended
  const latest = new Map(); // job_id -> {progress, step} from the newest event
  let bars = new Map(); // job_id -> {bar, step} on the page now

  const draw = () => {
    if (!workers) return;
    bars = new Map();
    redraw(list, () => replace(list, workers.length
      ? workers.map((worker) => workerCard(worker, runningOn(worker), bars))
      : emptyState(h('p', {}, 'No worker is running: start one with ', h('code', {}, 'python -m pocketqueue worker'),
        ' (or everything at once with ', h('code', {}, 'python -m pocketqueue up'), ').'))));
  };

  // The jobs a worker runs: its heartbeat's, less those ended since, plus those started since.
  const runningOn = (worker) => {
    const shown = worker.running.filter((job) => !ended.has(job.job_id));
    const known = new Set(shown.map((job) => job.job_id));
    for (const job of started.values()) {
      if (job.worker === worker.name && !known.has(job.job_id)) shown.push(job);
    }
    return shown.map((job) => ({ ...job, ...(latest.get(job.job_id) || {}) }));
  };

  const refresh = async () => {
    ({ workers } = await request('/workers', { signal: ctx.signal }));
    const beating = new Set(workers.flatMap((worker) => worker.running.map((job) => job.job_id)));
    for (const id of started.keys()) if (beating.has(id)) started.delete(id); // caught up
    for (const id of ended) if (!beating.has(id)) { ended.delete(id); latest.delete(id); }
    draw();
  };
  const refresher = throttle(refresh, EVENT_GAP_MS);
  ctx.onCleanup(refresher.cancel);
  refresher.run();
  const timer = setInterval(refresher.run, FALLBACK_MS);
  ctx.onCleanup(() => clearInterval(timer));

  const lookUpStarted = async (id) => {
    try {
      const job = await request(`/status/${seg(id)}`, { signal: ctx.signal });
      if (job.status !== 'processing' || ended.has(id) || !job.worker) return;
      started.set(id, { job_id: id, task: job.task, started_at: job.started_at, progress: job.progress, step: job.step, worker: job.worker });
      draw();
    } catch {
      // Gone already: the next heartbeat read settles it.
    }
  };

  const onEvent = (event) => {
    const id = event.job_id;
    const shown = bars.get(id);
    if (shown) {
      latest.set(id, { progress: event.progress, step: event.step }); // survives a redraw
      setProgress(shown.bar, event.progress);
      shown.step.textContent = event.step || '';
    }
    if (event.type !== 'status') return;
    if (event.status === 'processing') {
      ended.delete(id);
      if (!shown) lookUpStarted(id);
    } else if (FINAL_STATUSES.has(event.status) || event.status === 'retrying' || event.status === 'queued') {
      if (!shown && !started.has(id)) return;
      ended.add(id);
      started.delete(id);
      draw();
      refresher.run();
    }
  };
  const stream = follow('/events', { onEvent });
  ctx.onCleanup(stream.close);
}

function workerCard(worker, running, bars) {
  const stalled = worker.stalled
    ? h('p', { class: 'stalled', 'data-testid': 'worker-stalled' },
      h('strong', {}, 'Stalled: '), worker.stall_reason || 'not doing its share of the work.')
    : null;
  const state = worker.stalled ? 'stalled' : worker.stopping ? 'stopping' : 'ok';
  const headingId = `worker-${cssId(worker.name)}`;
  return h('article', {
    class: `worker worker-${state}`,
    'data-testid': 'worker',
    dataset: { worker: worker.name },
    'aria-labelledby': headingId,
  },
  h('h2', { id: headingId }, worker.name, ' ',
    h('span', { class: `badge badge-${state}`, 'data-testid': 'worker-state' }, state === 'ok' ? 'running' : state)),
  stalled,
  h('dl', { class: 'facts' },
    fact('Host', worker.host),
    fact('PID', String(worker.pid)),
    fact('Concurrency', `${worker.concurrency} (${running.length} busy)`),
    fact('Queues', worker.queues.join(', ') || '—'),
    fact('Tasks', worker.tasks.length ? worker.tasks.join(', ') : '—'),
    fact('Last seen', timeEl(worker.last_seen)),
    fact('Started', timeEl(worker.started_at))),
  runningTable(worker, running, bars));
}

function fact(label, ...value) {
  return [h('dt', {}, label), h('dd', {}, ...value)];
}

// Names may hold any character; ids must not hold spaces.
function cssId(text) {
  return String(text).replace(/[^A-Za-z0-9_-]/g, '_');
}

function runningTable(worker, running, bars) {
  if (!running.length) return h('p', { class: 'muted' }, 'Idle: no job running.');
  const table = h('table', { class: 'running' },
    h('caption', {}, `Running ${plural(running.length, 'job')}`),
    headRow('Job', 'Task', 'Progress', 'Started'),
    h('tbody', {}, running.map((job) => {
      const bar = progressBar(job.progress ?? 0, { 'data-testid': 'progress' });
      const step = h('span', { class: 'step' }, job.step || '');
      bars.set(job.job_id, { bar, step });
      return h('tr', { 'data-job-id': job.job_id },
        h('td', {}, h('a', { href: jobHref(job.job_id), class: 'job-link', title: `Open job ${job.job_id}` }, job.job_id)),
        h('td', { class: 'task' }, job.task),
        h('td', { class: 'progress-cell' }, bar, step),
        h('td', {}, timeEl(job.started_at)));
    })));
  return scrollTable(table, `Jobs running on ${worker.name}`);
}
