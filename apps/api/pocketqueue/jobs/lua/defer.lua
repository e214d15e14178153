-- defer.lua
-- ARGV: prefix, job_id, now, run_at, wait bound seconds, error json, dead-letter ttl,
--       give up: '1' (no live worker has registered the job's task), '0' (one has), or '?'
--       (not looked yet: answer 'ask' instead of deciding, once the bound has passed)
-- A worker received a queued job whose task it has not registered (an API deployed before
-- its workers, or a worker started with other TASK_MODULES). Celery drops such a message,
-- so the job is handed back: `scheduled` again until `run_at`, when the janitor publishes
-- it for another worker. Only once no live worker has had the task for `wait bound`
-- seconds since the first such hand-back does the job fail (`error`, TaskNotRegistered).
-- Returns 'deferred', 'failed', 'ask', or the status found (only a queued job is touched).
-- Looking for a live worker with the task costs a scan of the workers' keys, so the
-- caller does it only when asked, once the bound has passed.

--- @include "job"

local now = tonumber(ARGV[3])
local status, since, ttl = unpack(redis.call('HMGET', job, 'status', 'unknown_since', 'ttl'))
if status ~= 'queued' then return status or 'missing' end
if not since then
  since = now
  redis.call('HSET', job, 'unknown_since', ARGV[3])
end
local bound_passed = now - tonumber(since) >= tonumber(ARGV[5])
if bound_passed and ARGV[8] == '?' then return 'ask' end
if bound_passed and ARGV[8] == '1' then
  redis.call('HSET', job, 'status', 'failed', 'finished_at', ARGV[3], 'error', ARGV[6])
  finish('queued', 'failed', ARGV[3], tonumber(ARGV[7]))
  return 'failed'
end
unpublish()
redis.call('HSET', job, 'status', 'scheduled', 'run_at', ARGV[4])
move('queued', 'scheduled', ARGV[3])
redis.call('ZADD', key('schedule'), ARGV[4], job_id)
return 'deferred'
