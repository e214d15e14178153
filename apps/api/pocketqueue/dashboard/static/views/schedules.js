// #/schedules: the periodic jobs declared in code, when they run next and last ran, and
// (admin) pause, resume and trigger-now.

import { request, seg } from '../api.js';
import { duration, h, jobHref, replace, timeEl } from '../dom.js';
import { actionButton, emptyState, headRow, heading, redraw, report, scrollTable } from '../ui.js';

const REFRESH_MS = 10_000;

export function render(ctx) {
  ctx.setTitle('Schedules');
  const admin = ctx.session.canAdmin;
  const outcome = h('div', { class: 'outcome', role: 'status', 'data-testid': 'schedule-outcome' });
  const body = h('div', { id: 'schedules' }, h('p', { class: 'muted' }, 'Loading schedules…'));
  replace(ctx.root, heading('Schedules'),
    h('p', { class: 'muted' }, 'Periodic jobs are declared in code; the worker that leads fires them.'),
    outcome, body);

  let drawn = '';
  const load = async () => {
    const { schedules } = await request('/schedules', { signal: ctx.signal });
    const key = JSON.stringify(schedules);
    if (key === drawn) return; // unchanged: leave the page (and the reader's focus) alone
    drawn = key;
    redraw(body, () => replace(body, schedules.length
      ? scrollTable(h('table', { id: 'schedules-table' },
        h('caption', { class: 'visually-hidden' }, 'Schedules'),
        headRow('Name', 'Task', 'Cadence', 'State', 'Next run', 'Last run', 'Last job', ...(admin ? ['Actions'] : [])),
        h('tbody', {}, schedules.map((s) => scheduleRow(s, admin, act)))), 'Schedules')
      : emptyState(h('p', {}, 'No schedule is declared. Declare one in your task module '
        + '(see the README, "Schedules"); it shows up here once the API has loaded that module.'))));
  };

  const act = async (schedule, action) => {
    const answer = await request(`/schedules/${seg(schedule.name)}/${action}`, { method: 'POST' });
    if (action === 'trigger') {
      replace(outcome, h('p', {}, `Triggered ${schedule.name}: job `,
        h('a', { href: jobHref(answer.job_id) }, answer.job_id), ' is queued.'));
    } else {
      replace(outcome, h('p', {}, `${schedule.name} is ${answer.paused ? 'paused' : 'running again'}.`));
    }
    await load();
  };

  load().catch(report);
  const timer = setInterval(() => load().catch(report), REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
}

function cadence(s) {
  if (s.cron) return `cron ${s.cron} (${s.timezone})`;
  if (s.every) return `every ${duration(s.every)}`;
  return '—';
}

function scheduleRow(s, admin, act) {
  const actions = admin ? h('td', { class: 'actions' },
    s.paused
      ? actionButton('Resume', () => act(s, 'resume'), { 'data-action': 'resume', 'aria-label': `Resume ${s.name}` })
      : actionButton('Pause', () => act(s, 'pause'), { 'data-action': 'pause', 'aria-label': `Pause ${s.name}`, class: 'secondary' }),
    actionButton('Trigger now', () => act(s, 'trigger'), { 'data-action': 'trigger', 'aria-label': `Trigger now: ${s.name}` })) : null;
  return h('tr', { dataset: { schedule: s.name } },
    h('th', { scope: 'row' }, s.name),
    h('td', { class: 'task' }, s.task),
    h('td', {}, cadence(s), s.catch_up ? h('span', { class: 'muted' }, ` · catch up: ${s.catch_up}`) : null),
    h('td', {}, h('span', { class: `badge ${s.paused ? 'badge-paused' : 'badge-ok'}`, 'data-testid': 'schedule-state' },
      s.paused ? 'paused' : 'active')),
    h('td', {}, s.paused ? h('span', { class: 'muted' }, 'paused') : timeEl(s.next_run_at)),
    h('td', {}, timeEl(s.last_fired_at || s.last_slot_at)),
    h('td', {}, s.last_job_id ? h('a', { href: jobHref(s.last_job_id), class: 'job-link' }, s.last_job_id) : '—'),
    actions);
}
