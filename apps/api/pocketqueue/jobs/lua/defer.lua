-- defer.lua
-- ARGV: prefix, job_id, now, run_at, wait bound seconds, error json, dead-letter ttl,
--       give up ('1' when no live worker has registered the job's task, else '0')
-- A worker received a queued job whose task it has not registered (an API deployed before
-- its workers, or a worker started with other TASK_MODULES). Celery drops such a message,
-- so the job is handed back: `scheduled` again until `run_at`, when the janitor publishes
-- it for another worker. Only once no live worker has had the task for `wait bound`
-- seconds since the first such hand-back does the job fail (`error`, TaskNotRegistered).
-- Returns 'deferred', 'failed', or the status found (only a queued job is touched).

--- @include "job"

local now = tonumber(ARGV[3])
local status, since, ttl = unpack(redis.call('HMGET', job, 'status', 'unknown_since', 'ttl'))
if status ~= 'queued' then return status or 'missing' end
if not since then
  since = now
  redis.call('HSET', job, 'unknown_since', ARGV[3])
end
if ARGV[8] == '1' and now - tonumber(since) >= tonumber(ARGV[5]) then
  redis.call('HSET', job, 'status', 'failed', 'finished_at', ARGV[3], 'error', ARGV[6])
  finish('queued', 'failed', ARGV[3], tonumber(ARGV[7]))
  return 'failed'
end
unpublish()
redis.call('HSET', job, 'status', 'scheduled', 'run_at', ARGV[4])
move('queued', 'scheduled', ARGV[3])
redis.call('ZADD', key('schedule'), ARGV[4], job_id)
return 'deferred'
