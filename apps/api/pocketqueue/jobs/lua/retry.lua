-- retry.lua
-- ARGV: prefix, job_id, claim token, now, run_at, error field, error json
-- A failed attempt with retries left: 'retrying', in the schedule until run_at.

--- @include "job"

local status, claim = unpack(redis.call('HMGET', job, 'status', 'claim'))
if not status then return 'missing' end
if status ~= 'processing' then return status end
if claim ~= ARGV[3] then return 'superseded' end
redis.call('HSET', job, 'status', 'retrying', 'run_at', ARGV[5], 'error', ARGV[7], ARGV[6], ARGV[7])
drop_lease()
move('processing', 'retrying', ARGV[4])
redis.call('ZADD', key('schedule'), ARGV[5], job_id)
return 'ok'
