// Live updates: EventSource streams of job events, and a throttle so that a burst of
// events becomes at most one re-fetch per interval.

import { buildUrl, request } from './api.js';
import { report, showError } from './ui.js';

export const FINAL_STATUSES = new Set(['completed', 'partial', 'failed', 'cancelled']);
const RETRY_AFTER_FAILURE_MS = 10_000;

/** A stream entry id ("1700000000000-3") as a pair that orders as Redis orders them. */
export function entryKey(id) {
  const [ms, seq] = String(id).split('-');
  return [Number(ms) || 0, Number(seq) || 0];
}

/** Whether entry id `a` comes after `b` (b may be null: everything comes after nothing). */
export function isAfter(a, b) {
  if (!b) return true;
  const [am, as] = entryKey(a);
  const [bm, bs] = entryKey(b);
  return am > bm || (am === bm && as > bs);
}

/**
 * Follow an event stream: onEvent(data, id) for every `status` and `progress` event.
 * - after: skip events up to this id (a reopened stream replays from the start).
 * - endsWithJob: a job's stream ends after its final status; don't let the browser
 *   reconnect then. Nor when it ends while isOver() says the job has finished (a job
 *   whose events have expired has an empty stream). onEnd() is called then.
 * The browser reconnects by itself (with Last-Event-ID) when a stream drops. If the server
 * refuses the stream (401, 429...), the EventSource is closed for good: then check the
 * session (a 401 goes to the login page) and try again later.
 * Returns {close(), lastId()}.
 */
export function follow(path, { query, onEvent, after = null, endsWithJob = false, isOver = () => false, onEnd = () => {} }) {
  let source = null;
  let lastId = after;
  let lastFinal = false;
  let retryTimer = null;
  let closed = false;

  const handle = (message) => {
    if (message.lastEventId && !isAfter(message.lastEventId, lastId)) return; // seen already
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return; // not ours to show
    }
    lastId = message.lastEventId || lastId;
    lastFinal = data.type === 'status' && FINAL_STATUSES.has(data.status);
    onEvent(data, message.lastEventId);
  };

  const open = () => {
    source = new EventSource(buildUrl(path, query));
    source.addEventListener('status', handle);
    source.addEventListener('progress', handle);
    source.addEventListener('error', () => {
      if (closed) return;
      if (endsWithJob && (lastFinal || isOver())) {
        close();
        onEnd();
        return;
      }
      if (source.readyState === EventSource.CLOSED) refused();
    });
  };

  const refused = () => {
    source = null;
    // The session call answers 401 when the cookie is no longer valid (it then leaves the page).
    request('/dashboard/session').then(
      () => showError('Live updates were refused by the API; retrying in 10 s.'),
      (error) => showError(`Live updates stopped: ${error.message}`),
    );
    retryTimer = setTimeout(() => {
      if (!closed) open();
    }, RETRY_AFTER_FAILURE_MS);
  };

  const close = () => {
    closed = true;
    clearTimeout(retryTimer);
    if (source) source.close();
    source = null;
  };

  open();
  return { close, lastId: () => lastId };
}

/**
 * Wrap an async `task` so that run() calls it at most once per `gapMs`: calls in between
 * are merged into one trailing call, and two runs never overlap.
 * Returns {run(), cancel()}.
 */
export function throttle(task, gapMs) {
  let last = 0;
  let timer = null;
  let running = false;
  let again = false;
  let cancelled = false;

  const fire = async () => {
    timer = null;
    running = true;
    last = Date.now();
    try {
      await task();
    } catch (error) {
      report(error); // a failed refresh is shown, never left as an unhandled rejection
    } finally {
      running = false;
      if (again && !cancelled) {
        again = false;
        run();
      }
    }
  };

  const run = () => {
    if (cancelled) return;
    if (running) {
      again = true;
      return;
    }
    if (timer) return;
    timer = setTimeout(fire, Math.max(0, last + gapMs - Date.now()));
  };

  const cancel = () => {
    cancelled = true;
    clearTimeout(timer);
  };

  return { run, cancel };
}
