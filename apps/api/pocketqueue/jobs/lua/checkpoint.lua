-- checkpoint.lua
-- ARGV: prefix, job_id, claim token, worker, lease_ms, progress, step, stages (JSON),
--       position (the node to run next; '' once the flow has ended), shared store (JSON;
--       '' to leave the saved one), now
-- A flow job's checkpoint (pocketqueue/pipelines/): its stages, progress, the node to run
-- next and the shared store, written in one step and only while this attempt owns the
-- job, so a retry or a recovery resumes exactly where the last completed node left it,
-- and a stale attempt can never overwrite a newer one's. Renews the lease, as a heartbeat.
-- Returns the job's status ('processing' when written), or 'superseded'.

--- @include "job"

local status, claim, task, attempt = unpack(redis.call('HMGET', job, 'status', 'claim', 'task', 'attempts'))
if not status then return 'missing' end
if status ~= 'processing' then return status end
if claim ~= ARGV[3] then return 'superseded' end
hold_lease(ARGV[4], ARGV[5])
redis.call('HSET', job, 'progress', ARGV[6], 'step', ARGV[7], 'stages', ARGV[8], 'flow_position', ARGV[9])
if ARGV[10] ~= '' then redis.call('HSET', job, 'flow_store', ARGV[10]) end
emit({job = job_id, type = 'progress', status = 'processing', task = task, attempt = attempt or '0',
  progress = ARGV[6], step = ARGV[7], at = ARGV[11]})
return status
