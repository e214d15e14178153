-- cancel.lua
-- ARGV: prefix, job_id, now, request token (new per call)
-- Returns {status before, flat HGETALL after}; status before is 'missing' for a missing job.
-- Safe to replay: a call resent after its reply was lost finds its own token on the
-- record and answers as the first did (the status it cancelled), not "already cancelled".

--- @include "job"

local status, ttl, token, from = unpack(redis.call('HMGET', job, 'status', 'ttl', 'cancel_token', 'cancelled_from'))
if not status then return {'missing', {}} end
if status == 'cancelled' and token == ARGV[4] then return {from, redis.call('HGETALL', job)} end
if active(status) then
  redis.call('HSET', job, 'status', 'cancelled', 'finished_at', ARGV[3], 'cancel_token', ARGV[4], 'cancelled_from', status)
  redis.call('HDEL', job, 'run_at')
  finish(status, 'cancelled', ARGV[3], tonumber(ttl) or 86400)
end
return {status, redis.call('HGETALL', job)}
