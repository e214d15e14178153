-- promote.lua
-- ARGV: prefix, job_id, now, message, list
-- Publishes a scheduled or retrying job that is due. Returns 'ok', 'not_due', or the
-- status it found (the job was cancelled, or another worker published it first).

--- @include "job"

local status = redis.call('HGET', job, 'status')
if status ~= 'scheduled' and status ~= 'retrying' then
  redis.call('ZREM', key('schedule'), job_id)
  return status or 'missing'
end
local due = redis.call('ZSCORE', key('schedule'), job_id)
-- Due by the Redis server's clock, not the janitor's: a worker whose clock runs ahead
-- must not publish a delayed job early.
if not due or tonumber(due) > server_time() then return 'not_due' end
redis.call('HDEL', job, 'run_at')
redis.call('ZREM', key('schedule'), job_id)
requeue(status, ARGV[3], ARGV[5], ARGV[4])
return 'ok'
