-- recover.lua
-- ARGV: prefix, job_id, claim token seen, now, error json, message, list, dead-letter ttl
-- A processing job whose lease lapsed: its worker died (SIGKILL, OOM, lost machine). The
-- attempt's error is kept; the job is queued again at once, or fails if no retries are left.

--- @include "job"

local status, attempts, max_retries, claim =
  unpack(redis.call('HMGET', job, 'status', 'attempts', 'max_retries', 'claim'))
if not status then
  redis.call('ZREM', key('index', 'processing'), job_id)
  redis.call('ZREM', key('leases'), job_id)
  return 'missing'
end
if status ~= 'processing' then
  redis.call('ZREM', key('leases'), job_id)  -- a stale deadline: the job moved on
  return status
end
if (claim or '') ~= ARGV[3] then return 'superseded' end
if redis.call('EXISTS', key('lease', job_id)) == 1 then return 'alive' end
drop_lease()
local task, queue = unpack(redis.call('HMGET', job, 'task', 'queue'))
count('', 'recovered\t' .. task .. '\t' .. (queue or ''))
touch('', ARGV[4])
redis.call('HSET', job, 'error', ARGV[5], 'error:' .. attempts, ARGV[5])
redis.call('HDEL', job, 'claim')
if tonumber(attempts) > (tonumber(max_retries) or 0) then
  redis.call('HSET', job, 'status', 'failed', 'finished_at', ARGV[4])
  finish('processing', 'failed', ARGV[4], tonumber(ARGV[8]))
  return 'failed'
end
requeue('processing', ARGV[4], ARGV[7], ARGV[6])
return 'requeued'
