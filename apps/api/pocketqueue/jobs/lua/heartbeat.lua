-- heartbeat.lua
-- ARGV: prefix, job_id, claim token, lease_ms, progress ('' to leave it), step ('' to leave it), worker
-- Renews the lease (and records progress) only while this attempt still owns the job.
-- SET, not PEXPIRE: a lease that lapsed (Redis unreachable for a while, a stalled
-- process) is recreated. Returns the job's status, or 'superseded' when a newer attempt
-- owns the job, so a worker learns within one heartbeat that the job is no longer its own.

--- @include "job"

local status, claim = unpack(redis.call('HMGET', job, 'status', 'claim'))
if not status then return 'missing' end
if status ~= 'processing' then return status end
if claim ~= ARGV[3] then return 'superseded' end
hold_lease(ARGV[7], ARGV[4])
local progress, step, task, attempt = unpack(redis.call('HMGET', job, 'progress', 'step', 'task', 'attempts'))
local changed = false
if ARGV[5] ~= '' and ARGV[5] ~= progress then
  redis.call('HSET', job, 'progress', ARGV[5])
  progress, changed = ARGV[5], true
end
if ARGV[6] ~= '' and ARGV[6] ~= step then
  redis.call('HSET', job, 'step', ARGV[6])
  step, changed = ARGV[6], true
end
if changed then  -- an event only for a change: a heartbeat that only renews the lease is silent
  emit({job = job_id, type = 'progress', status = 'processing', task = task, attempt = attempt or '0',
    progress = progress or '0', step = step or '', at = string.format('%.6f', server_time())})
end
return status
