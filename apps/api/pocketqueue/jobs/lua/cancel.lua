-- cancel.lua
-- ARGV: prefix, job_id, now
-- Returns {status before, flat HGETALL after}; status before is 'missing' for a missing job.

--- @include "job"

local status, ttl = unpack(redis.call('HMGET', job, 'status', 'ttl'))
if not status then return {'missing', {}} end
if ACTIVE[status] then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', ARGV[3])
  redis.call('HDEL', job, 'run_at')
  finish(status, 'cancelled', ARGV[3], tonumber(ttl) or 86400)
end
return {status, redis.call('HGETALL', job)}
